"""cocotb bench: the power-up value of a register without an initial value (X_UNIQUE_ARGS)."""

import cocotb
from cocotb.triggers import Timer

from sigprop_fpga.sim.cocotb_util import read_int, write_results


@cocotb.test()
async def power_up(dut):
    await Timer(1, unit="step")
    write_results("xinit", {"q": read_int(dut.q)})
