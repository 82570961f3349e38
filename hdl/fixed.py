"""Fixed-point shapes and narrowing for the datapath, modelled on the draft Amaranth RFC.

Amaranth 0.5 has no fixed-point type (the RFC is a draft), so the project keeps this small one.
Names follow the RFC: :class:`SQ` is a signed, :class:`UQ` an unsigned ``Q<int>.<frac>`` shape
(``int_bits`` of :class:`SQ` counts the sign bit, as :class:`~sigprop_fpga.compiler.spec.QFormat`
does). Both are shape-castable (``Signal(SQ(1, 7))`` is an 8-bit signed signal holding the raw
integer ``v``, meaning ``v / 2**frac``).

Narrowing is always explicit and names its rounding; every narrowing also saturates and returns
an overflow flag, so that hardware counters and the golden model count the same events:

* :func:`round_shift` -- drop ``k`` fraction bits: ``"nearest"`` (half to even), ``"truncate"``
  (floor) or ``"stochastic"`` (add the low ``k`` bits of an LFSR draw, then floor);
* :func:`saturate` -- clamp to a format's range;
* :func:`narrow` -- both, from ``from_frac`` fraction bits to a format.

These are the twins of :func:`sigprop_fpga.compiler.fixed.shift_round`, ``saturate`` and ``narrow``.
All are combinational expression builders.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Mux, Shape, ShapeCastable, Value, signed, unsigned

from ..compiler.spec import QFormat

__all__ = ["SQ", "UQ", "round_shift", "saturate", "narrow", "mul_const", "ROUNDINGS"]

ROUNDINGS = ("nearest", "truncate", "stochastic")


class _Q(ShapeCastable):
    _signed = True

    def __init__(self, int_bits: int, frac_bits: int):
        if not isinstance(int_bits, int) or isinstance(int_bits, bool):
            raise TypeError(f"Integer bits must be an integer, not {int_bits!r}")
        if not isinstance(frac_bits, int) or isinstance(frac_bits, bool):
            raise TypeError(f"Fraction bits must be an integer, not {frac_bits!r}")
        if frac_bits < 0:
            raise ValueError(f"Fraction bits must be non-negative, not {frac_bits}")
        if int_bits < (1 if self._signed else 0) or int_bits + frac_bits < 1:
            raise ValueError(f"{type(self).__name__}({int_bits}, {frac_bits}) has no room for a value"
                             + (" (the sign bit counts as an integer bit)" if self._signed else ""))
        self.int_bits = int_bits
        self.frac_bits = frac_bits

    @property
    def width(self) -> int:
        return self.int_bits + self.frac_bits

    @property
    def min_int(self) -> int:
        return -(1 << (self.width - 1)) if self._signed else 0

    @property
    def max_int(self) -> int:
        return (1 << (self.width - (1 if self._signed else 0))) - 1

    def as_shape(self) -> Shape:
        return signed(self.width) if self._signed else unsigned(self.width)

    def __call__(self, target):
        return target

    def const(self, init):
        if init is None:
            init = 0
        if isinstance(init, float):
            init = round(init * (1 << self.frac_bits))
        if not isinstance(init, int):
            raise TypeError(f"{self!r} constants are raw integers or floats, not {init!r}")
        if not self.min_int <= init <= self.max_int:
            raise ValueError(f"{init} is outside the range of {self!r}")
        return Const(init, self.as_shape())

    def from_bits(self, raw):
        return raw if not self._signed or raw < (1 << (self.width - 1)) else raw - (1 << self.width)

    def __eq__(self, other):
        return type(self) is type(other) and (self.int_bits, self.frac_bits) == (other.int_bits, other.frac_bits)

    def __hash__(self):
        return hash((type(self), self.int_bits, self.frac_bits))

    def __repr__(self):
        return f"{type(self).__name__}({self.int_bits}, {self.frac_bits})"


class SQ(_Q):
    """Signed fixed-point shape ``Q<int_bits>.<frac_bits>`` (``int_bits`` includes the sign).

    Parameters
    ----------
    int_bits : int
        Integer bits, at least 1 (the sign).
    frac_bits : int
        Fraction bits, at least 0.

    Members
    -------
    width, min_int, max_int : int
        Total width and the raw integer range.

    Raises
    ------
    TypeError
        If a bit count is not an integer.
    ValueError
        If a bit count is out of range.
    """

    _signed = True

    @classmethod
    def from_qformat(cls, q: QFormat) -> "SQ":
        """The shape of a spec :class:`QFormat`."""
        if not isinstance(q, QFormat):
            raise TypeError(f"Expected a QFormat, not {q!r}")
        return cls(q.int_bits, q.frac_bits)


class UQ(_Q):
    """Unsigned fixed-point shape ``UQ<int_bits>.<frac_bits>`` (e.g. probabilities ``UQ1.16``).

    Parameters, members and exceptions as :class:`SQ`; ``int_bits`` may be 0.
    """

    _signed = False


class SQRange(SQ):
    """:class:`SQ` whose values stay within ``[min_int, max_int]``, narrower than the format's own
    range (hard-tanh's ``[-1, +1]`` in a ``Q2.x`` activation); :func:`saturate` and :func:`narrow`
    clamp to those bounds."""

    def __init__(self, int_bits: int, frac_bits: int, min_int: int, max_int: int):
        super().__init__(int_bits, frac_bits)
        full = SQ(int_bits, frac_bits)
        if not full.min_int <= min_int <= max_int <= full.max_int:
            raise ValueError(f"Bounds [{min_int}, {max_int}] outside {full!r}")
        self._bounds = (min_int, max_int)

    @property
    def min_int(self) -> int:
        return self._bounds[0]

    @property
    def max_int(self) -> int:
        return self._bounds[1]

    def __eq__(self, other):
        return isinstance(other, SQRange) and super().__eq__(other) and self._bounds == other._bounds

    def __hash__(self):
        return hash((SQRange, self.int_bits, self.frac_bits, self._bounds))


def _fmt(q) -> _Q:
    if isinstance(q, _Q):
        return q
    if isinstance(q, QFormat):
        full = SQ.from_qformat(q)
        if (q.min_int, q.max_int) != (full.min_int, full.max_int):
            return SQRange(q.int_bits, q.frac_bits, q.min_int, q.max_int)
        return full
    raise TypeError(f"Expected an SQ, UQ or QFormat, not {q!r}")


def _asr(v, k: int) -> Value:
    """``v >> k`` of a signed ``v`` (``k >= 1``) in ``len(v) - k`` bits (at least the sign), not
    in ``len(v)``: the bits above would be copies of the sign, and every adder or saturation
    after it would carry them."""
    v = Value.cast(v)
    return v[k:].as_signed() if k < len(v) else v[-1:].as_signed()


def round_shift(v, k: int, mode: str = "nearest", draw=None) -> Value:
    """``v / 2**k`` rounded to an integer (``k <= 0``: an exact left shift).

    Parameters
    ----------
    v : value-like
        Signed or unsigned integer expression.
    k : int
        Fraction bits dropped.
    mode : ``"nearest"`` | ``"truncate"`` | ``"stochastic"``
        Half to even, floor, or floor after adding the low ``k`` bits of ``draw``.
    draw : value-like
        The LFSR draw for ``"stochastic"``.

    Returns
    -------
    Value
        Signed result, one bit wider than needed so the rounding increment cannot overflow.
    """
    if not isinstance(k, int) or isinstance(k, bool):
        raise TypeError(f"Shift amount must be an integer, not {k!r}")
    if mode not in ROUNDINGS:
        raise ValueError(f"Rounding mode must be one of {', '.join(ROUNDINGS)}, not {mode!r}")
    v = Value.cast(v)
    if not v.shape().signed:
        v = Cat(v, Const(0, 1)).as_signed()
    if k <= 0:
        return (v << (-k)).as_signed()
    if mode == "truncate":
        return _asr(v, k)
    if mode == "stochastic":
        if draw is None:
            raise ValueError("Stochastic rounding needs an LFSR draw")
        r = Value.cast(draw)[:k]
        return _asr(v + r, k)
    q, up = round_nearest_parts(v, k)
    return (q + up).as_signed()


def round_nearest_parts(v, k: int) -> tuple[Value, Value]:
    """``(q, up)`` with ``round_shift(v, k, "nearest") == q + up``: the floor ``v >> k`` and the
    rounding increment (half to even), apart, so that a later adder can take the increment as
    its carry (``sub_rounded``) instead of an incrementer of its own."""
    v = Value.cast(v)
    if not v.shape().signed:
        v = Cat(v, Const(0, 1)).as_signed()
    if k <= 0:
        return (v << (-k)).as_signed(), Const(0, 1)
    q = _asr(v, k)
    # v mod 2**k (a k wider than v: v's bits, then copies of its sign)
    rem = v.as_unsigned()[:k] if v.shape().width >= k else Cat(v.as_unsigned(), v[-1].replicate(k - v.shape().width))
    # up = rem > half | (rem == half & q odd), as bit tests (a LUT tree, not two comparators'
    # carry chains ahead of the increment's)
    below = rem[:k - 1].any() if k > 1 else Const(0, 1)
    up = rem[k - 1] & (below | q[0])
    return q, up


def rounded_step(v, k: int) -> Value:
    """``round_shift(v, k, "nearest")`` encoded for :func:`sub_rounded`: ``Cat(~up, ~q)`` of
    :func:`round_nearest_parts` (the value ``-2 * (q + up) - 1 + up``, signed), so that no
    incrementer adds ``up`` before the subtraction."""
    q, up = round_nearest_parts(v, k)
    return Cat(~up, ~q).as_signed()


def sub_rounded(old, step) -> Value:
    """``old - round_shift(v, k, "nearest")`` from ``step = rounded_step(v, k)`` (sign-extended
    or not): one adder, the rounding increment as its carry: ``(2 old + 1 + step) >> 1`` is
    ``(2 (old - q) - up) >> 1 = old - q - up``. Signed, one bit wider than ``old`` or ``q``."""
    old = Value.cast(old)
    if not old.shape().signed:
        old = Cat(old, Const(0, 1)).as_signed()
    total = Cat(Const(1, 1), old).as_signed() + Value.cast(step).as_signed()
    return total[1:].as_signed()


def saturate(v, q) -> tuple[Value, Value]:
    """Clamp ``v`` to the range of ``q``; returns ``(value, overflowed)``.

    Parameters
    ----------
    v : value-like
    q : SQ, UQ or QFormat

    Returns
    -------
    (Value, Value)
        The clamped value with shape ``q`` and a 1-bit flag set when clamping happened.
    """
    q = _fmt(q)
    v = Value.cast(v)
    shape = q.as_shape()
    n, w = len(v), q.width
    if n > w and (q.min_int, q.max_int) == ((-(1 << (w - 1)), (1 << (w - 1)) - 1) if shape.signed else (0, (1 << w) - 1)):
        # the full range of ``w`` bits: out of range iff the bits above it are not all copies of
        # the sign (signed) or not all zero (unsigned), reductions instead of comparators
        sign = v[-1] if v.shape().signed else Const(0, 1)
        top = v.as_unsigned()[w - 1:] if shape.signed else v.as_unsigned()[w:]
        fits = (top.all() | ~top.any()) if (shape.signed and v.shape().signed) else ~top.any()
        lo, hi = sign & ~fits, ~sign & ~fits
    else:
        lo = v < q.min_int
        hi = v > q.max_int
    if len(v) <= q.width:
        low = v
    else:
        low = v.as_unsigned()[:q.width]
        if shape.signed:
            low = low.as_signed()
    out = Mux(lo, Const(q.min_int, shape), Mux(hi, Const(q.max_int, shape), low))
    return out, lo | hi


def narrow(v, from_frac: int, q, mode: str = "nearest", draw=None) -> tuple[Value, Value]:
    """Round from ``from_frac`` fraction bits to ``q``'s and saturate: ``(value, overflowed)``.

    A signed value rounded to nearest into a signed format decides the saturation from the bits
    of the truncated quotient alongside the rounding increment (reductions beside the carry
    chain), so only one multiplexer level follows the increment's adder.
    """
    q = _fmt(q)
    k = from_frac - q.frac_bits
    v = Value.cast(v)
    w = q.width
    shape = q.as_shape()
    if (mode == "nearest" and k > 0 and v.shape().signed and shape.signed and len(v) - k > w
            and (q.min_int, q.max_int) == (-(1 << (w - 1)), (1 << (w - 1)) - 1)):
        qv = (v >> k).as_unsigned()                       # the truncated quotient's bits
        rem = v.as_unsigned()[:k]
        below = rem[:k - 1].any() if k > 1 else Const(0, 1)
        up = rem[k - 1] & (below | qv[0])
        top, low = qv[w - 1:], qv[:w - 1]
        sign = qv[-1]
        fits = top.all() | ~top.any()                     # qv in range
        is_max = ~top.any() & low.all()                   # qv == max: + up overflows
        is_below_min = qv[w:].all() & ~qv[w - 1] & low.all()     # qv == min - 1: + up is min
        fits_r = (fits & ~(is_max & up)) | (is_below_min & up)
        lo, hi = sign & ~fits_r, ~sign & ~fits_r
        r = (qv[:w] + up)[:w].as_signed()                 # the low bits of the rounded quotient
        out = Mux(lo, Const(q.min_int, shape), Mux(hi, Const(q.max_int, shape), r))
        return out, lo | hi
    return saturate(round_shift(v, k, mode, draw), q)


def mul_const(x, k: int) -> Value:
    """``x * k`` for a constant ``k >= 0``, as shifts and adds.

    Synthesis maps a ``*`` onto a DSP block even for an address computation (``row * stride``);
    the DSP blocks belong to the lanes, and ``hardware.dsp_budget`` counts only them.
    """
    if not isinstance(k, int) or isinstance(k, bool) or k < 0:
        raise ValueError(f"Constant factor must be a non-negative integer, not {k!r}")
    x = Value.cast(x)
    terms = [x << i for i in range(k.bit_length()) if (k >> i) & 1]
    if not terms:
        return Const(0, 1)
    total = terms[0]
    for t_ in terms[1:]:
        total = total + t_
    return total


__all__ += ["round_nearest_parts", "rounded_step", "sub_rounded", "round_shift_halved", "uge_const", "saturate_or_zero", "inside", "fit_bits"]


def round_shift_halved(v, k: int) -> Value:
    """``round_shift(v - 2**(k - 1), k, "nearest")`` for a ``v`` that already carries the rounding
    half (an accumulator started from it): the floor, its low bit cleared on a tie, so no
    incrementer follows the accumulator; ``k <= 0``: ``v << -k``."""
    v = Value.cast(v)
    if k <= 0:
        return (v << (-k)).as_signed()
    q = _asr(v, k)
    tie = v.as_unsigned()[:k] == 0
    return Cat(q[0] & ~tie, q[1:]).as_signed()


def uge_const(v, k: int) -> Value:
    """``v >= k`` for an unsigned ``v`` and a constant ``k``, as gates (no carry chain)."""
    v = Value.cast(v).as_unsigned()
    if k <= 0:
        return Const(1, 1)
    if k >= 1 << len(v):
        return Const(0, 1)
    res = Const(1, 1)
    for i in range(len(v)):
        res = (v[i] & res) if (k >> i) & 1 else (v[i] | res)
    return res


def saturate_or_zero(v, q, zero) -> tuple[Value, Value]:
    """:func:`saturate` ``(v, q)`` to a signed format ``q``, forced to 0 by ``zero``, one LUT per
    bit (no multiplexer levels); returns ``(value, overflowed)``, the flag whatever ``zero``."""
    q = _fmt(q)
    if not q.as_shape().signed:
        raise TypeError(f"Saturation forced to zero needs a signed format, not {q!r}")
    v = Value.cast(v)
    w = q.width
    if v.shape().signed and (q.min_int, q.max_int) == (-(1 << (w - 1)), (1 << (w - 1)) - 1):
        # out of range when the bits from w - 1 up differ (the sign tells which way): no comparator
        if len(v) <= w:
            v, lo, hi = v.as_signed(), Const(0, 1), Const(0, 1)
            v = Cat(v, v[-1].replicate(w - len(v))).as_signed() if len(v) < w else v
        else:
            top, neg = v[w - 1:], v[-1]
            lo, hi = neg & ~top.all(), ~neg & top.any()
    else:
        lo, hi = v < q.min_int, v > q.max_int
    bits = [~zero & ~lo & (hi | v[i]) for i in range(w - 1)]
    bits.append(~zero & (lo | (~hi & v[w - 1])))
    return Cat(*bits).as_signed(), lo | hi


def inside(v, q) -> Value:
    """``q.min_int < v < q.max_int``, the hard-tanh derivative mask (``sim.golden._inside``); a
    value exactly ``q``'s width needs no comparator: it is neither bound."""
    q = _fmt(q)
    v = Value.cast(v)
    if len(v) == q.width and v.shape().signed and (q.min_int, q.max_int) == (-(1 << (q.width - 1)),
                                                                            (1 << (q.width - 1)) - 1):
        return (v != q.min_int) & (v != q.max_int)
    return (v > q.min_int) & (v < q.max_int)


def fit_bits(v, w: int) -> Value:
    """``v`` as exactly ``w`` raw bits: sign-extended (zero-extended if unsigned), or cut."""
    v = Value.cast(v)
    if len(v) >= w:
        return v.as_unsigned()[:w]
    pad = v[-1].replicate(w - len(v)) if v.shape().signed else Const(0, w - len(v))
    return Cat(v.as_unsigned(), pad)
