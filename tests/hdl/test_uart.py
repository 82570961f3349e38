"""UART tx/rx in the Amaranth simulator: loopback, exact throughput, framing errors, glitches."""

import random

import pytest
from amaranth import Elaboratable, Fragment, Module
from amaranth.sim import Simulator

from sigprop_fpga.hdl.uart import UARTRx, UARTTx


class _Loop(Elaboratable):
    def __init__(self, divisor):
        self.tx = UARTTx(divisor)
        self.rx = UARTRx(divisor)

    def elaborate(self, platform):
        m = Module()
        m.submodules.tx = self.tx
        m.submodules.rx = self.rx
        m.d.comb += self.rx.rx.eq(self.tx.tx)
        return m


@pytest.mark.parametrize("divisor", [4, 5, 7, 16])
def test_uart_loopback_random_bytes(divisor):
    rnd = random.Random(divisor)
    data = [0x00, 0xFF, 0x55, 0xAA] + [rnd.randrange(256) for _ in range(40)]
    dut = _Loop(divisor)
    got, errors, sent_at = [], [], []

    async def producer(ctx):
        cycle = 0
        for b in data:
            ctx.set(dut.tx.data.payload, b)
            ctx.set(dut.tx.data.valid, 1)
            while True:
                ready = ctx.get(dut.tx.data.ready)
                await ctx.tick()
                cycle += 1
                if ready:
                    break
            sent_at.append(cycle)
        ctx.set(dut.tx.data.valid, 0)

    async def consumer(ctx):
        ctx.set(dut.rx.data.ready, 1)
        async for _, _, valid, payload, fe, ov in ctx.tick().sample(
                dut.rx.data.valid, dut.rx.data.payload, dut.rx.frame_error, dut.rx.overrun):
            if fe or ov:
                errors.append(len(got))
            if valid:
                got.append(payload)
            if len(got) == len(data):
                break

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()
    assert got == data
    assert errors == []
    gaps = {b - a for a, b in zip(sent_at[1:], sent_at[2:])}
    assert gaps == {10 * divisor}, "back-to-back bytes must take exactly 10 bit times"


def _play_bits(ctx, pin, divisor, bits):
    async def go():
        for b in bits:
            ctx.set(pin, b)
            for _ in range(divisor):
                await ctx.tick()
    return go()


def _frame(byte, stop=1):
    return [0] + [(byte >> i) & 1 for i in range(8)] + [stop]


@pytest.mark.parametrize("divisor", [4, 9])
def test_uart_rx_framing_error_and_recovery(divisor):
    dut = UARTRx(divisor)
    got, ferr = [], []

    async def bench(ctx):
        ctx.set(dut.rx, 1)
        for _ in range(3 * divisor):
            await ctx.tick()
        await _play_bits(ctx, dut.rx, divisor, _frame(0x3C))
        await _play_bits(ctx, dut.rx, divisor, _frame(0x81, stop=0) + [0, 0, 1, 1])  # bad stop
        await _play_bits(ctx, dut.rx, divisor, _frame(0xC3) + [1])
        # a glitch shorter than half a bit is not a start bit
        ctx.set(dut.rx, 0)
        await ctx.tick()
        ctx.set(dut.rx, 1)
        for _ in range(4 * divisor):
            await ctx.tick()
        await _play_bits(ctx, dut.rx, divisor, _frame(0x5A) + [1, 1])

    async def monitor(ctx):
        ctx.set(dut.data.ready, 1)
        async for _, _, valid, payload, fe in ctx.tick().sample(
                dut.data.valid, dut.data.payload, dut.frame_error):
            if valid:
                got.append(payload)
            if fe:
                ferr.append(len(got))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.add_testbench(monitor, background=True)
    sim.run()
    assert got == [0x3C, 0xC3, 0x5A]
    assert ferr == [1]


def test_uart_rx_overrun_keeps_first_byte():
    d = 4
    dut = UARTRx(d)
    pulses = []

    async def bench(ctx):
        ctx.set(dut.data.ready, 0)
        await _play_bits(ctx, dut.rx, d, [1, 1] + _frame(0x11) + _frame(0x22) + [1, 1])
        assert ctx.get(dut.data.valid) and ctx.get(dut.data.payload) == 0x11
        ctx.set(dut.data.ready, 1)
        await ctx.tick()
        assert not ctx.get(dut.data.valid)

    async def monitor(ctx):
        async for _, _, ov in ctx.tick().sample(dut.overrun):
            if ov:
                pulses.append(1)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.add_testbench(monitor, background=True)
    sim.run()
    assert pulses == [1]


@pytest.mark.parametrize("cls", [UARTRx, UARTTx])
def test_uart_divisor_checked(cls):
    with pytest.raises(ValueError, match="at least 4 clock cycles per bit, not 3"):
        cls(3)
    with pytest.raises(TypeError, match="must be an int"):
        cls(4.0)
    with pytest.raises(TypeError, match="must be an int"):
        cls(True)
    dut = cls(4)
    assert dut.divisor == 4
    Fragment.get(dut, None)


def test_uart_divisor_error_budget_and_the_board_rates():
    from sigprop_fpga.boards.top import baud_clock_mhz, choose_baud
    from sigprop_fpga.hdl.uart import uart_divisor

    assert uart_divisor(24e6, 3_000_000) == (8, 0.0)                 # iCEBreaker: exact
    d, err = uart_divisor(70e6, 3_000_000)                           # ULX3S at 70 MHz: +1.45%
    assert d == 23 and abs(err - (70e6 / 23 / 3e6 - 1)) < 1e-12 and 0.014 < err < 0.015
    with pytest.raises(ValueError, match=r"divisor 8 gives 3125000 baud, \+4.17% off"):
        uart_divisor(25e6, 3_000_000)
    with pytest.raises(ValueError, match="at least 4 clock cycles per bit"):
        uart_divisor(10e6, 3_000_000)
    with pytest.raises(TypeError):
        uart_divisor(24e6, 3e6)
    assert (choose_baud(24e6), choose_baud(70e6), choose_baud(25e6)) == (3_000_000, 3_000_000, 1_500_000)
    assert choose_baud(33e6) == 3_000_000 and choose_baud(12.5e6) == 500_000
    assert baud_clock_mhz(70) == 69 and baud_clock_mhz(24) == 24
