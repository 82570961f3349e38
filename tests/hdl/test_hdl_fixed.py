"""hdl.fixed narrowing against compiler.fixed: rounding ties (half to even), truncation, saturation."""

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.sim import Simulator

from sigprop_fpga.compiler.spec import QFormat
from sigprop_fpga.hdl.fixed import SQ, UQ, narrow, round_shift, saturate
from sigprop_fpga.sim import fixed as gf


@pytest.mark.parametrize("width,from_frac,q,mode", [
    (16, 12, QFormat(1, 7), "nearest"),       # weight-like to activation
    (12, 7, QFormat(1, 7), "nearest"),        # k = 0: saturation only
    (20, 23, QFormat(2, 14), "nearest"),      # error narrowing
    (14, 9, QFormat(2, 3), "truncate"),
    (10, 4, QFormat(4, 6), "nearest"),        # k < 0: exact left shift, then saturate
])
def test_narrow_matches_golden(width, from_frac, q, mode):
    rng = np.random.default_rng(width)
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    k = from_frac - q.frac_bits
    vals = list(rng.integers(lo, hi + 1, size=300)) + [lo, hi, 0, -1, 1]
    if k > 0:   # exact ties both sides of zero, odd and even quotients
        vals += [(2 * j + 1) << (k - 1) for j in range(-6, 6)]
        vals += [((2 * j + 1) << (k - 1)) + d for j in range(-3, 3) for d in (-1, 1)]
    vals = [int(v) for v in vals if lo <= v <= hi]
    v = Signal(signed(width))
    out, ovf = narrow(v, from_frac, q, mode)
    o, f = Signal(signed(q.width)), Signal()
    m = Module()
    m.d.comb += [o.eq(out), f.eq(ovf)]
    got = []

    async def bench(ctx):
        for x in vals:
            ctx.set(v, x)
            got.append((ctx.get(o), ctx.get(f)))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    want, _ = gf.narrow(np.array(vals), from_frac, q, mode)
    sat = (gf.shift_round(np.array(vals), k, mode) != want)
    assert [g[0] for g in got] == [int(w) for w in want]
    assert [bool(g[1]) for g in got] == [bool(s) for s in sat]


def test_stochastic_round_shift():
    rng = np.random.default_rng(1)
    vals = [int(x) for x in rng.integers(-5000, 5000, size=200)]
    draws = [int(x) for x in rng.integers(0, 1 << 32, size=200)]
    v, d = Signal(signed(14)), Signal(32)
    o = Signal(signed(14))
    m = Module()
    m.d.comb += o.eq(round_shift(v, 5, "stochastic", d))
    got = []

    async def bench(ctx):
        for x, r in zip(vals, draws):
            ctx.set(v, x)
            ctx.set(d, r)
            got.append(ctx.get(o))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert got == [int(x) for x in gf.shift_round(np.array(vals), 5, "stochastic", np.array(draws))]


def test_shapes():
    assert SQ(1, 7).as_shape() == signed(8) and SQ(1, 7).min_int == -128 and SQ(1, 7).max_int == 127
    assert UQ(1, 16).as_shape() == unsigned(17) and UQ(1, 16).max_int == (1 << 17) - 1
    assert SQ.from_qformat(QFormat(4, 12)) == SQ(4, 12)
    assert SQ(1, 7).const(0.5).value == 64
    s = Signal(SQ(2, 14))
    assert s.shape() == signed(16) and len(s) == 16   # a raw view: values are the integers
    with pytest.raises(TypeError):
        SQ(1.0, 7)
    with pytest.raises(ValueError):
        SQ(0, 7)
    with pytest.raises(ValueError):
        SQ(1, -1)
    with pytest.raises(ValueError):
        SQ(1, 7).const(200)
    with pytest.raises(ValueError):
        round_shift(Signal(8), 2, "up")
    with pytest.raises(TypeError):
        saturate(Signal(8), "Q1.7")


@pytest.mark.parametrize("k", [0, 1, 3, 6, 10, 13, 64, 100])
def test_mul_const_equals_product_and_maps_no_multiplier(k):
    from amaranth.back import rtlil
    from amaranth.hdl import Module, Signal
    from sigprop_fpga.hdl.fixed import mul_const
    x = Signal(7)
    y = Signal(16)
    m = Module()
    m.d.comb += y.eq(mul_const(x, k))
    assert "$mul" not in rtlil.convert(m, ports=[x, y])     # nothing for synthesis to put on a DSP
    got = []

    async def bench(ctx):
        for v in range(128):
            ctx.set(x, v)
            got.append(ctx.get(y))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert got == [v * k for v in range(128)]
    with pytest.raises(ValueError, match="Constant factor must be a non-negative integer, not -1"):
        mul_const(x, -1)


@pytest.mark.parametrize("v_shape", [signed(7), unsigned(7), signed(4), unsigned(4), signed(3), unsigned(3)])
@pytest.mark.parametrize("q", [SQ(2, 2), UQ(2, 2), QFormat(1, 2)])
def test_saturate_every_value(v_shape, q):
    """``saturate`` (reductions where the format is a full bit range, comparators otherwise)
    clamps every input of every operand shape to the format's range and flags exactly the
    clamped ones."""
    v = Signal(v_shape)
    out, ovf = saturate(v, q)
    lo_i, hi_i = q.min_int, q.max_int
    o, f = Signal(signed(q.width) if lo_i < 0 else unsigned(q.width)), Signal()
    m = Module()
    m.d.comb += [o.eq(out), f.eq(ovf)]
    vals = range(-(1 << (v_shape.width - 1)), 1 << (v_shape.width - 1)) if v_shape.signed else range(1 << v_shape.width)
    got = []

    async def bench(ctx):
        for x in vals:
            ctx.set(v, x)
            got.append((ctx.get(o), ctx.get(f)))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert got == [(min(max(x, lo_i), hi_i), int(not lo_i <= x <= hi_i)) for x in vals]


@pytest.mark.parametrize("v_width,from_frac,q", [(9, 3, QFormat(1, 2)), (10, 4, QFormat(2, 2)), (8, 1, QFormat(1, 4)),
                                                 (7, 6, QFormat(1, 0)), (12, 8, QFormat(2, 3))])
def test_narrow_every_value(v_width, from_frac, q):
    """Every input of a narrowing to nearest (the saturation decided beside the rounding adder):
    ties both ways, the increment across the top (max + 1) and up to the bottom (min - 1 + 1)."""
    vals = list(range(-(1 << (v_width - 1)), 1 << (v_width - 1)))
    v = Signal(signed(v_width))
    out, ovf = narrow(v, from_frac, q)
    o, f = Signal(signed(q.width)), Signal()
    m = Module()
    m.d.comb += [o.eq(out), f.eq(ovf)]
    got = []

    async def bench(ctx):
        for x in vals:
            ctx.set(v, x)
            got.append((ctx.get(o), ctx.get(f)))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    want, _ = gf.narrow(np.array(vals), from_frac, q, "nearest")
    sat = gf.shift_round(np.array(vals), from_frac - q.frac_bits, "nearest") != want
    assert got == [(int(a), int(b)) for a, b in zip(want, sat)]
