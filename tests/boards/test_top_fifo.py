"""The board core's FIFO with registered level flags (``_FlagFIFO``) is Amaranth's
SyncFIFOBuffered cycle for cycle: every port and the level equal in every cycle, under random
writes and reads (full, empty, both at once)."""

import random

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.sim import Simulator

from sigprop_fpga.boards.top import _FlagFIFO


@pytest.mark.parametrize("depth, p_write, p_read", [(3, 0.5, 0.5), (5, 0.7, 0.3), (8, 0.3, 0.7),
                                                    (9, 0.6, 0.6), (17, 0.9, 0.5)])
def test_flag_fifo_equals_sync_fifo_buffered_every_cycle(depth, p_write, p_read):
    rng = random.Random(depth)
    m = Module()
    m.submodules.ref = ref = SyncFIFOBuffered(width=8, depth=depth)
    m.submodules.dut = dut = _FlagFIFO(width=8, depth=depth)
    w_en, r_en, w_data = Signal(), Signal(), Signal(8)
    for f in (ref, dut):
        m.d.comb += [f.w_en.eq(w_en), f.r_en.eq(r_en), f.w_data.eq(w_data)]
    bad, seen = [], {"full": 0, "empty": 0, "data": 0}

    async def bench(ctx):
        for t in range(3000):
            # phases: filling, draining, mixed (so both ends are reached)
            phase = (t // 300) % 3
            pw = (0.95, 0.05, p_write)[phase]
            pr = (0.05, 0.95, p_read)[phase]
            ctx.set(w_en, rng.random() < pw)
            ctx.set(r_en, rng.random() < pr)
            ctx.set(w_data, rng.randrange(256))
            a = [ctx.get(x) for x in (ref.w_rdy, ref.r_rdy, ref.level, ref.w_level, ref.r_level)]
            b = [ctx.get(x) for x in (dut.w_rdy, dut.r_rdy, dut.level, dut.w_level, dut.r_level)]
            if a[1]:
                a.append(ctx.get(ref.r_data))
                b.append(ctx.get(dut.r_data))
                seen["data"] += 1
            seen["full"] += not a[0]
            seen["empty"] += a[2] == 0
            if a != b:
                bad.append((t, a, b))
            await ctx.tick()

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert not bad, bad[:3]
    assert seen["full"] > 20 and seen["empty"] > 20 and seen["data"] > 500


def test_flag_fifo_depth_check():
    with pytest.raises(ValueError, match="depth must be an integer of at least 3, not 2"):
        _FlagFIFO(width=8, depth=2)
