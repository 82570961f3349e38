"""The hardware LFSR replays compiler.fixed.Lfsr draw for draw, whatever the draws per cycle."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from sigprop_fpga.hdl.lfsr import Lfsr
from sigprop_fpga.compiler.fixed import Lfsr as GoldenLfsr
from sigprop_fpga.compiler.network import lfsr_seed


@pytest.mark.parametrize("lanes", [1, 3, 4])
def test_lfsr_sequence(lanes):
    seed = lfsr_seed(0xACE1, lanes)
    dut = Lfsr(seed, lanes)
    rng = np.random.default_rng(lanes)
    steps = [int(x) for x in rng.integers(0, lanes + 1, size=400)]
    got = []

    async def bench(ctx):
        for k in steps:
            got.extend(ctx.get(dut.draws[p]) for p in range(k))
            ctx.set(dut.advance, k)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    want = GoldenLfsr(seed).take(len(got))
    assert got == [int(x) for x in want]
    assert len(set(got)) == len(got)


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_lfsr_arguments():
    with pytest.raises(ValueError):
        Lfsr(0)
    with pytest.raises(TypeError):
        Lfsr(1, lanes=1.5)
    with pytest.raises(ValueError):
        Lfsr(1, lanes=0)
