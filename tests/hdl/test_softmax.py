"""The softmax unit against compiler.fixed.softmax_fixed: random vectors, ties, extremes."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from sigprop_fpga.hdl.softmax import Softmax, softmax_latency
from sigprop_fpga.compiler.fixed import softmax_fixed


def _vectors(rng, n, width):
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    vs = [np.zeros(n, dtype=np.int64), np.full(n, hi), np.full(n, lo)]
    v = np.full(n, lo); v[n // 2] = hi; vs.append(v)           # one dominant, others at -max
    v = np.full(n, hi); v[0] = lo; vs.append(v)
    for _ in range(40):
        vs.append(rng.integers(lo, hi + 1, size=n))
    for _ in range(20):                                        # small spreads: ties and near ties
        base = int(rng.integers(lo // 2, hi // 2))
        vs.append(base + rng.integers(-3, 4, size=n) * int(rng.integers(1, 200)))
    return vs


@pytest.mark.parametrize("mul_latency", [1, 2, 3])
@pytest.mark.parametrize("n,width,frac", [(3, 20, 16), (10, 22, 16), (2, 18, 19), (1, 12, 8)])
def test_softmax_matches_golden(n, width, frac, mul_latency):
    rng = np.random.default_rng(n * 1000 + width)
    dut = Softmax(n, width, fracs=(frac, frac + 3), mul_latency=mul_latency)
    vecs = _vectors(rng, n, width)
    results = []

    async def bench(ctx):
        for sel in (0, 1):
            for v in vecs[: (len(vecs) if sel == 0 else 10)]:
                ctx.set(dut.frac_sel, sel)
                for k in range(n):
                    ctx.set(dut.s[k], int(v[k]))
                ctx.set(dut.start, 1)
                await ctx.tick()
                ctx.set(dut.start, 0)
                cycles = 1
                while not ctx.get(dut.done):
                    await ctx.tick()
                    cycles += 1
                p = [ctx.get(dut.p[k]) for k in range(n)]
                results.append((v, sel, p, cycles))
                await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    for v, sel, p, cycles in results:
        want, _ = softmax_fixed(v, frac + 3 * sel)
        assert p == [int(x) for x in want], (v, sel)
        assert cycles == softmax_latency(n, mul_latency=mul_latency)


@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_softmax_arguments():
    with pytest.raises(TypeError):
        Softmax(2.0, 10)
    with pytest.raises(ValueError):
        Softmax(0, 10)
    with pytest.raises(ValueError, match="Multiplier latency must be an integer of at least 1, not 0"):
        Softmax(3, 10, mul_latency=0)
    with pytest.raises(ValueError):
        Softmax(3, 10, fracs=(-1,))
