"""Fixed-point arithmetic of the datapath, in NumPy integers: the golden model's primitives.

Every function here has a hardware twin in ``hdl/``; the component tests compare the two. All
values are int64 arrays holding two's complement integers; a value ``v`` in ``Q<i>.<f>`` means
``v / 2^f``.

Rounding modes (every narrowing names one):

``nearest``
    Round half to even (convergent rounding), as IEEE 754 default. Symmetric: ``r(-v) = -r(v)``.
``truncate``
    Floor (drop the low bits of the two's complement value).
``stochastic``
    ``floor((v + r) / 2^k)`` with ``r`` the low ``k`` bits of an LFSR state, one draw per value.
"""

from __future__ import annotations

import math

import numpy as np

from .spec import QFormat

__all__ = [
    "shift_round", "saturate", "narrow", "Lfsr", "LFSR_TAPS", "EXP2_FRAC_BITS", "EXP2_TABLE",
    "LOG2E_Q16", "softmax_fixed", "RECIP_BITS", "P_FRAC",
]


def shift_round(v, k: int, mode: str = "nearest", draws=None) -> np.ndarray:
    """``v / 2^k`` rounded to an integer; ``k <= 0`` is an exact left shift.

    Parameters
    ----------
    v : array of int
    k : int
        Number of fraction bits dropped.
    mode : "nearest" | "truncate" | "stochastic"
    draws : array of uint, same shape as ``v``
        LFSR states for ``stochastic``; the low ``k`` bits are added before the floor.
    """
    v = np.asarray(v, dtype=np.int64)
    if k <= 0:
        return v << (-k)
    if mode == "truncate":
        return v >> k
    if mode == "stochastic":
        if draws is None:
            raise ValueError("stochastic rounding needs LFSR draws")
        r = np.asarray(draws, dtype=np.int64) & ((1 << k) - 1)
        return (v + r) >> k
    if mode != "nearest":
        raise ValueError(f"unknown rounding mode {mode!r}")
    q = v >> k
    rem = v & ((1 << k) - 1)
    half = 1 << (k - 1)
    up = (rem > half) | ((rem == half) & ((q & 1) == 1))
    return q + up.astype(np.int64)


def saturate(v, q: QFormat) -> tuple[np.ndarray, int]:
    """Clamp to the range of ``q``; returns the clamped values and the number clamped."""
    v = np.asarray(v, dtype=np.int64)
    lo, hi = q.min_int, q.max_int
    n = int(np.count_nonzero((v < lo) | (v > hi)))
    return np.clip(v, lo, hi), n


def narrow(v, from_frac: int, q: QFormat, mode: str = "nearest", draws=None) -> tuple[np.ndarray, int]:
    """Round from ``from_frac`` fraction bits to ``q`` and saturate; returns (values, saturations)."""
    return saturate(shift_round(v, from_frac - q.frac_bits, mode, draws), q)


# ---------------------------------------------------------------------------------------------
# LFSR for stochastic rounding

LFSR_TAPS = 0x80200003  # x^32 + x^22 + x^2 + x + 1, maximal length, Galois (right-shift) form


class Lfsr:
    """A 32-bit Galois LFSR. A draw returns the current state, then steps once.

    Step: ``s = (s >> 1) ^ (TAPS if s & 1 else 0)``. The hardware steps a chain of these per
    lane, so ``P`` lanes consume ``P`` consecutive draws per cycle in the same order.

    ``take(n)`` returns the next ``n`` draws as an array. It is vectorised: draws are produced
    ``block`` at a time by stepping ``lanes`` interleaved generators, each started at a
    jump-ahead state, which yields exactly the sequential sequence.
    """

    def __init__(self, seed: int):
        seed &= 0xFFFFFFFF
        if seed == 0:
            raise ValueError("an LFSR seed must be non-zero")
        self.state = seed
        self._buf = np.zeros(0, dtype=np.int64)
        self._pos = 0

    @staticmethod
    def step(s: int) -> int:
        return (s >> 1) ^ (LFSR_TAPS if s & 1 else 0)

    @staticmethod
    def _step_vec(s: np.ndarray) -> np.ndarray:
        return (s >> 1) ^ ((-(s & 1)) & LFSR_TAPS)

    @staticmethod
    def _jump_matrix(n: int) -> list[int]:
        """Columns of the GF(2) matrix that advances a state by ``n`` steps."""
        cols = [1 << b for b in range(32)]
        out = []
        for c in cols:
            s = c
            for _ in range(n):
                s = Lfsr.step(s)
            out.append(s)
        return out

    _JUMP_CACHE: dict[int, list[int]] = {}

    def _refill(self, need: int):
        lanes = 256
        per_lane = max(64, -(-need // lanes))
        jm = self._JUMP_CACHE.get(per_lane)
        if jm is None:
            jm = self._JUMP_CACHE[per_lane] = self._jump_matrix(per_lane)
        starts = np.empty(lanes, dtype=np.int64)
        s = self.state
        for p in range(lanes):
            starts[p] = s
            t = 0
            for b in range(32):
                if (s >> b) & 1:
                    t ^= jm[b]
            s = t
        self.state = s  # state after lanes * per_lane steps
        out = np.empty((per_lane, lanes), dtype=np.int64)
        cur = starts
        for i in range(per_lane):
            out[i] = cur
            cur = self._step_vec(cur)
        rest = self._buf[self._pos:]
        self._buf = np.concatenate([rest, out.T.reshape(-1)])
        self._pos = 0

    def peek(self) -> int:
        """The state the next draw returns (the LFSR's position, for a checkpoint)."""
        return int(self._buf[self._pos]) if self._pos < len(self._buf) else self.state

    def restart(self, state: int) -> None:
        """Continue from ``state`` (a :meth:`peek` value): the next draw returns it."""
        state &= 0xFFFFFFFF
        if state == 0:
            raise ValueError("an LFSR state must be non-zero")
        self.state = state
        self._buf = np.zeros(0, dtype=np.int64)
        self._pos = 0

    def take(self, n: int) -> np.ndarray:
        if len(self._buf) - self._pos < n:
            self._refill(n - (len(self._buf) - self._pos))
        out = self._buf[self._pos:self._pos + n]
        self._pos += n
        return out


# ---------------------------------------------------------------------------------------------
# Softmax in base 2

EXP2_FRAC_BITS = 6            # the table resolves 2^-(j / 64)
P_FRAC = 16                   # probabilities are UQ0.16 (1.0 = 65536)
EXP2_TABLE = np.array([round(2.0 ** (P_FRAC - j / (1 << EXP2_FRAC_BITS))) for j in range(1 << EXP2_FRAC_BITS)],
                      dtype=np.int64)   # UQ1.16, entry 0 is 65536
LOG2E_Q16 = round(math.log2(math.e) * (1 << 16))   # 94548: log2(e) in UQ2.16
RECIP_BITS = 32               # r = floor(2^32 / sum): one division per softmax


def softmax_fixed(s, frac: int) -> tuple[np.ndarray, np.ndarray]:
    """The hardware softmax of integer logits ``s`` with ``frac`` fraction bits.

    ``d_k = max(s) - s_k``; ``v_k = d_k * LOG2E_Q16`` (``frac + 16`` fraction bits);
    ``e_k = EXP2_TABLE[top 6 fraction bits of v_k] >> int(v_k)`` (0 once the shift reaches 17);
    ``r = floor(2^32 / sum e)``; ``p_k = (e_k * r) >> 16`` (truncate). Returns ``(p, e)``,
    ``p`` in UQ0.16.
    """
    s = np.asarray(s, dtype=np.int64)
    d = s.max() - s
    v = d * LOG2E_Q16
    f = frac + 16
    ip = v >> f
    j = (v >> (f - EXP2_FRAC_BITS)) & ((1 << EXP2_FRAC_BITS) - 1) if f >= EXP2_FRAC_BITS else \
        (v << (EXP2_FRAC_BITS - f)) & ((1 << EXP2_FRAC_BITS) - 1)
    e = np.where(ip >= P_FRAC + 1, 0, EXP2_TABLE[j] >> np.minimum(ip, P_FRAC + 1))
    total = int(e.sum())
    r = (1 << RECIP_BITS) // total
    p = (e * r) >> (RECIP_BITS - P_FRAC)
    return p, e
