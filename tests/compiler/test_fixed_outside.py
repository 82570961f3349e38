"""The golden arithmetic (compiler/fixed.py) against an independent fixed-point library.

apytypes (pinned in the test extra) rounds and saturates fixed-point values in its own C++ code:
``TIES_EVEN`` is our ``nearest``, ``TO_NEG`` our ``truncate`` (floor), ``SAT`` our saturation.
Stochastic rounding with given draws is ``floor((v + r) / 2^k)`` with ``r`` the draw's low ``k``
bits: apytypes adds the draw as a fixed-point number of the same LSB and floors. Formats and
values are drawn by Hypothesis (derandomized in ``make test``; ``--hypothesis-profile=explore``
draws new ones).
"""

import numpy as np
from apytypes import APyFixed, OverflowMode, QuantizationMode
from hypothesis import given, settings, strategies as st

from sigprop_fpga.compiler.fixed import narrow, saturate, shift_round
from sigprop_fpga.compiler.spec import QFormat

QUANT = {"nearest": QuantizationMode.TIES_EVEN, "truncate": QuantizationMode.TO_NEG}


def fx(v: int, int_bits: int, frac_bits: int) -> APyFixed:
    """``v`` (an integer with ``frac_bits`` fraction bits) as an apytypes value."""
    bits = int_bits + frac_bits
    return APyFixed(int(v) & ((1 << bits) - 1), int_bits=int_bits, frac_bits=frac_bits)


def as_int(x: APyFixed) -> int:
    """The two's complement integer of ``x`` (its value times ``2^frac_bits``)."""
    b = x.to_bits()
    return b - (1 << x.bits) if b >> (x.bits - 1) else b


def with_ties(vs, int_bits, frac_bits, k):
    """``vs`` plus, for each, the value halfway between its two neighbours after dropping ``k``
    bits (random draws rarely hit an exact tie), those inside the format."""
    if k < 1:
        return vs
    lo, hi = -(1 << (int_bits + frac_bits - 1)), (1 << (int_bits + frac_bits - 1)) - 1
    ties = [((v >> k) << k) | (1 << (k - 1)) for v in vs]
    return vs + [t for t in ties if lo <= t <= hi]


@st.composite
def formats(draw, max_int=24, max_frac=24):
    return draw(st.integers(1, max_int)), draw(st.integers(0, max_frac))


@st.composite
def values(draw, fmt, n=(1, 16)):
    int_bits, frac_bits = fmt
    lo, hi = -(1 << (int_bits + frac_bits - 1)), (1 << (int_bits + frac_bits - 1)) - 1
    return draw(st.lists(st.integers(lo, hi), min_size=n[0], max_size=n[1]))


@settings(max_examples=300)
@given(st.data(), formats(), st.integers(0, 24), st.sampled_from(sorted(QUANT)))
def test_shift_round_matches(data, src, dst_frac, mode):
    """Dropping (or adding) fraction bits: the same integers as apytypes' quantization."""
    k = src[1] - dst_frac
    vs = with_ties(data.draw(values(src)), *src, k)
    got = shift_round(np.array(vs, dtype=np.int64), k, mode)
    for v, g in zip(vs, got.tolist()):
        want = as_int(fx(v, *src).cast(int_bits=src[0] + 1, frac_bits=dst_frac, quantization=QUANT[mode],
                                       overflow=OverflowMode.WRAP))
        assert g == want, (v, src, dst_frac, mode)


@settings(max_examples=300)
@given(st.data(), formats(max_int=30, max_frac=16), formats(max_int=16, max_frac=16))
def test_saturate_matches(data, src, dst):
    """Clamping to a narrower format at the same LSB: the values and the count clamped."""
    q = QFormat(*dst)
    vs = data.draw(values((src[0], dst[1])))
    got, n = saturate(np.array(vs, dtype=np.int64), q)
    want = [as_int(fx(v, src[0], dst[1]).cast(int_bits=q.int_bits, frac_bits=q.frac_bits,
                                                 overflow=OverflowMode.SAT)) for v in vs]
    assert got.tolist() == want
    assert n == sum(1 for v, w in zip(vs, want) if v != w)


@settings(max_examples=300)
@given(st.data(), formats(), formats(max_int=12, max_frac=20), st.sampled_from(sorted(QUANT)))
def test_narrow_matches(data, src, dst, mode):
    """Round then saturate, as apytypes' cast with a quantization and ``SAT``; the saturation
    count is the number of rounded values outside the format."""
    q = QFormat(*dst)
    vs = with_ties(data.draw(values(src)), *src, src[1] - q.frac_bits)
    got, n = narrow(np.array(vs, dtype=np.int64), src[1], q, mode)
    want = [as_int(fx(v, *src).cast(int_bits=q.int_bits, frac_bits=q.frac_bits, quantization=QUANT[mode],
                                    overflow=OverflowMode.SAT)) for v in vs]
    assert got.tolist() == want, (src, dst, mode)
    rounded = [as_int(fx(v, *src).cast(int_bits=src[0] + 1, frac_bits=q.frac_bits, quantization=QUANT[mode],
                                       overflow=OverflowMode.WRAP)) for v in vs]
    assert n == sum(1 for r in rounded if not q.min_int <= r <= q.max_int)


@settings(max_examples=300)
@given(st.data(), formats(), st.integers(1, 20))
def test_stochastic_with_draws_matches(data, src, k):
    """``floor((v + r) / 2^k)`` with ``r`` the low ``k`` bits of each 32-bit draw: apytypes adds
    the draw as a number of the same LSB, exactly, and floors."""
    vs = data.draw(values(src))
    draws = data.draw(st.lists(st.integers(0, (1 << 32) - 1), min_size=len(vs), max_size=len(vs)))
    f = src[1]
    got = shift_round(np.array(vs, dtype=np.int64), k, "stochastic", np.array(draws, dtype=np.int64))
    for v, r, g in zip(vs, draws, got.tolist()):
        low = APyFixed(r & ((1 << k) - 1), int_bits=k + 1 - f, frac_bits=f)   # the draw, unsigned
        s = fx(v, *src) + low                                              # exact: apytypes widens
        want = as_int(s.cast(int_bits=src[0] + 2 + k, frac_bits=f - k, quantization=QuantizationMode.TO_NEG,
                             overflow=OverflowMode.WRAP))
        assert g == want, (v, r, k, src)


@settings(max_examples=100)
@given(st.data(), formats(max_int=16, max_frac=16), st.integers(1, 8))
def test_stochastic_is_unbiased_over_every_draw(data, src, k):
    """Over the ``2^k`` possible low draw bits, the rounded values sum to ``v`` exactly (Hermite's
    identity): stochastic rounding is unbiased, the property the update relies on."""
    vs = data.draw(values(src, n=(1, 4)))
    r = np.arange(1 << k, dtype=np.int64)
    for v in vs:
        assert int(shift_round(np.full(1 << k, v, dtype=np.int64), k, "stochastic", r).sum()) == v
