"""Golden-model arithmetic against hand-computed cases and a slow Python-integer reference."""

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from sigprop_fpga.compiler.spec import QFormat
from sigprop_fpga.compiler.fixed import (EXP2_TABLE, LFSR_TAPS, LOG2E_Q16, Lfsr, narrow, saturate, shift_round,
                                    softmax_fixed)


def test_round_nearest_ties_to_even():
    v = np.array([2, 6, 10, -2, -6, -10, 5, 7, -5, -7, 0, 3])   # quarters
    assert shift_round(v, 2).tolist() == [0, 2, 2, 0, -2, -2, 1, 2, -1, -2, 0, 1]


def test_round_truncate_is_floor():
    assert shift_round(np.array([7, -5, -4, 3]), 2, "truncate").tolist() == [1, -2, -1, 0]


def test_round_stochastic_adds_low_draw_bits():
    v = np.full(4, 5)                                      # 1.25
    draws = np.array([0b100, 0b101, 0b110, 0b111])         # low two bits 0, 1, 2, 3
    assert shift_round(v, 2, "stochastic", draws).tolist() == [1, 1, 1, 2]


def test_left_shift_is_exact():
    assert shift_round(np.array([3, -3]), -4).tolist() == [48, -48]


def test_saturate_counts():
    v, n = saturate(np.array([-200, -128, 127, 300, 0]), QFormat(1, 7))
    assert v.tolist() == [-128, -128, 127, 127, 0] and n == 2


def test_narrow_rounds_then_saturates():
    # Q4.12 products with 19 fraction bits -> Q1.7: 0.5 + half an LSB ties to even (64), 3.0 saturates
    v, n = narrow(np.array([(64 << 12) + (1 << 11), (65 << 12) + (1 << 11), 3 << 19]), 19, QFormat(1, 7))
    assert v.tolist() == [64, 66, 127] and n == 1


def _slow_round(v: int, k: int) -> int:
    q, r = divmod(v, 1 << k)          # Python's floor division
    half = 1 << (k - 1)
    return q + (1 if r > half or (r == half and q % 2) else 0)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-(1 << 40), 1 << 40), min_size=1, max_size=20), st.integers(1, 24))
def test_nearest_matches_slow_reference(vals, k):
    assert shift_round(np.array(vals), k).tolist() == [_slow_round(v, k) for v in vals]


def test_lfsr_sequence_by_hand():
    g = Lfsr(1)
    assert [int(x) for x in g.take(5)] == [0x00000001, 0x80200003, 0xC0300002, 0x60180001, 0xB02C0003]
    assert LFSR_TAPS == 0x80200003


def test_lfsr_bulk_equals_sequential():
    seq, s = [], 0xACE1
    for _ in range(7000):
        seq.append(s)
        s = Lfsr.step(s)
    g = Lfsr(0xACE1)
    got = np.concatenate([g.take(n) for n in (1, 999, 3, 4000, 1997)])
    assert got.tolist() == seq


def test_lfsr_rejects_zero_seed():
    with pytest.raises(ValueError):
        Lfsr(0)


def test_exp2_table():
    assert EXP2_TABLE[0] == 65536 and len(EXP2_TABLE) == 64
    assert EXP2_TABLE[32] == round(65536 / math.sqrt(2))
    assert LOG2E_Q16 == 94548


def test_softmax_by_hand():
    p, e = softmax_fixed(np.array([0, 0]), 0)
    assert e.tolist() == [65536, 65536] and p.tolist() == [32768, 32768]
    # s = [1.0, 0] with 4 fraction bits: v = 16 * 94548 = 1512768 (20 fraction bits):
    # integer part 1, top six fraction bits 28 -> e1 = 48393 >> 1 = 24196;
    # r = floor(2^32 / 89732) = 47864; p = (e * r) >> 16
    p, e = softmax_fixed(np.array([16, 0]), 4)
    assert e.tolist() == [65536, 24196] and p.tolist() == [47864, 17671]


def test_softmax_far_logits_underflow_to_zero():
    p, e = softmax_fixed(np.array([0, -(100 << 8)]), 8)
    assert e.tolist() == [65536, 0] and p.tolist() == [65536, 0]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-(1 << 14), 1 << 14), min_size=2, max_size=16))
def test_softmax_close_to_float(s):
    s = np.array(s)
    p, _ = softmax_fixed(s, 10)
    x = s / 1024.0
    ref = np.exp(x - x.max())
    ref /= ref.sum()
    # the 6-bit exponent table is accurate to 2^-6 relative, the products truncate
    assert np.all(np.abs(p / 65536.0 - ref) <= 0.012 * ref + 2 ** -15 * len(s))
    assert p.sum() <= 65536
