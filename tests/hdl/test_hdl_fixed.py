"""hdl.fixed narrowing against compiler.fixed: rounding ties (half to even), truncation, saturation."""

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.sim import Simulator

from sigprop_fpga.compiler.spec import QFormat
from sigprop_fpga.hdl.fixed import SQ, UQ, narrow, round_shift, saturate
from sigprop_fpga.hdl.fixed import fit_bits, inside, round_shift_halved, saturate_or_zero, uge_const
from sigprop_fpga.compiler import fixed as gf


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


def _every_value(shape):
    if shape.signed:
        return range(-(1 << (shape.width - 1)), 1 << (shape.width - 1))
    return range(1 << shape.width)


def _run_comb(inputs, outputs, rows):
    """Drive ``inputs`` with each row of values; the outputs read back, one tuple per row."""
    m = Module()
    sigs = [Signal.like(o) if isinstance(o, Signal) else Signal(o.shape()) for o in outputs]
    m.d.comb += [s.eq(o) for s, o in zip(sigs, outputs)]
    got = []

    async def bench(ctx):
        for row in rows:
            for sig, x in zip(inputs, row):
                ctx.set(sig, x)
            got.append(tuple(ctx.get(s) for s in sigs))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    return got


@pytest.mark.parametrize("width,k", [(8, 1), (8, 3), (10, 5), (6, 6), (7, 0), (7, -2)])
def test_round_shift_halved_is_nearest_even_of_the_value_without_its_half(width, k):
    """Every value of an accumulator that started from the rounding half: the golden nearest-even
    shift of the value without it (ties both ways, odd and even quotients)."""
    v = Signal(signed(width))
    vals = list(_every_value(v.shape()))
    got = _run_comb([v], [round_shift_halved(v, k)], [(x,) for x in vals])
    half = (1 << (k - 1)) if k > 0 else 0
    want = gf.shift_round(np.array(vals) - half, k, "nearest")
    assert [g[0] for g in got] == [int(w) for w in want]


@pytest.mark.parametrize("width", [1, 3, 5])
def test_uge_const_every_value_and_constant(width):
    v = Signal(width)
    consts = range(-1, (1 << width) + 2)
    outs = [uge_const(v, k) for k in consts]
    vals = list(_every_value(v.shape()))
    got = _run_comb([v], outs, [(x,) for x in vals])
    assert got == [tuple(int(x >= k) for k in consts) for x in vals]


@pytest.mark.parametrize("v_shape", [signed(7), signed(4), signed(3), signed(2), unsigned(5), unsigned(4)])
@pytest.mark.parametrize("q", [SQ(2, 2), QFormat(1, 2), SQ(1, 2)])
def test_saturate_or_zero_every_value(v_shape, q):
    """The golden saturation of every input (the flag exactly on the clamped ones), or 0 with
    ``zero`` (the flag unchanged); signed formats only."""
    if not v_shape.signed and v_shape.width < q.width:
        pytest.skip("an unsigned operand narrower than the format is not a use")
    v, zero = Signal(v_shape), Signal()
    out, ovf = saturate_or_zero(v, q, zero)
    vals = list(_every_value(v_shape))
    got = _run_comb([v, zero], [out, ovf], [(x, z) for z in (0, 1) for x in vals])
    sat, _ = gf.saturate(np.array(vals), q if isinstance(q, QFormat) else QFormat(q.int_bits, q.frac_bits))
    flags = [int(not q.min_int <= x <= q.max_int) for x in vals]
    assert got == [(0 if z else int(s), f) for z in (0, 1) for s, f in zip(sat, flags)]
    with pytest.raises(TypeError, match="signed format"):
        saturate_or_zero(v, UQ(2, 2), zero)


@pytest.mark.parametrize("v_shape", [signed(4), signed(6), unsigned(4)])
def test_inside_is_the_golden_hard_tanh_mask(v_shape):
    from sigprop_fpga.sim.golden import _inside
    q = QFormat(1, 3)
    v = Signal(v_shape)
    vals = list(_every_value(v_shape))
    got = _run_comb([v], [inside(v, q)], [(x,) for x in vals])
    assert [g[0] for g in got] == [int(b) for b in _inside(np.array(vals), q)]


@pytest.mark.parametrize("v_shape,w", [(signed(4), 6), (unsigned(4), 6), (signed(6), 4), (signed(5), 5)])
def test_fit_bits_extends_or_cuts(v_shape, w):
    v = Signal(v_shape)
    vals = list(_every_value(v_shape))
    got = _run_comb([v], [fit_bits(v, w)], [(x,) for x in vals])
    assert [g[0] for g in got] == [x & ((1 << w) - 1) for x in vals]


@pytest.mark.parametrize("width,k,old_width", [(9, 3, 6), (8, 1, 5), (7, 0, 6), (6, 6, 4), (5, 7, 4), (8, -1, 5)])
def test_sub_rounded_is_old_minus_the_nearest_even_shift(width, k, old_width):
    """Every value and old word: ``sub_rounded(old, rounded_step(v, k))`` is ``old`` minus the
    golden nearest-even shift of ``v`` (ties both ways, the step sign-extended into a wider
    register as the write-back's is)."""
    from sigprop_fpga.hdl.fixed import rounded_step, sub_rounded
    v, old = Signal(signed(width)), Signal(signed(old_width))
    step = rounded_step(v, k)
    wide = fit_bits(step, len(step) + 3).as_signed()
    m_vals = [(x, o) for x in _every_value(v.shape()) for o in _every_value(old.shape())]
    got = _run_comb([v, old], [sub_rounded(old, wide)], m_vals)
    want = [o - int(gf.shift_round(np.array([x]), k, "nearest")[0]) for x, o in m_vals]
    assert [g[0] for g in got] == want
