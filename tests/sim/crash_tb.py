"""cocotb bench that kills the simulator mid-test (for the missing-results-file path)."""

import os

import cocotb
from cocotb.triggers import Timer


@cocotb.test()
async def crash(dut):
    await Timer(10, unit="step")
    os._exit(3)
