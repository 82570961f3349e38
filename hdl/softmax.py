"""The base-2 softmax unit: the hardware twin of :func:`sigprop_fpga.sim.fixed.softmax_fixed`."""

from __future__ import annotations

from amaranth.hdl import Array, Module, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..sim.fixed import EXP2_FRAC_BITS, EXP2_TABLE, LOG2E_Q16, P_FRAC, RECIP_BITS
from .fixed import UQ

__all__ = ["Softmax", "softmax_latency"]

# the quotient floor(2^32 / sum) is at most 2^16 because sum >= 2^16 (the max logit's e is 2^16)
_Q_BITS = RECIP_BITS - P_FRAC + 1


def softmax_latency(n: int) -> int:
    """Cycles from ``start`` to ``done`` for ``n`` logits (``done`` is high in the last one)."""
    return 3 * n + _Q_BITS + 2


class Softmax(wiring.Component):
    """Fixed-point softmax of ``n`` logits with a base-2 exponential table and one division.

    ``d_k = max(s) - s_k``; ``v_k = d_k * LOG2E_Q16``; ``e_k = EXP2_TABLE[6 fraction bits of v_k]
    >> int(v_k)`` (0 from a shift of 17); ``r = floor(2^32 / sum e)`` by a restoring divider;
    ``p_k = (e_k r) >> 16``. One multiplier is shared by the exp and the product phase.

    Parameters
    ----------
    n : int
        Number of logits (classes), at least 1.
    width : int
        Width of the signed logits.
    fracs : tuple of int
        Fraction bits of the logits; ``frac_sel`` picks one per run (a stage softmaxes its
        class logits and, with a head, the head logits, which differ in scale).

    Members
    -------
    start : In(1)
        Pulse to start; ``s`` and ``frac_sel`` are sampled over the run and must stay stable.
    frac_sel : In(range(len(fracs)))
    s : In(ArrayLayout(signed(width), n))
    busy : Out(1)
    done : Out(1)
        High for one cycle when ``p`` is valid; ``p`` then holds until the next ``start``.
    p : Out(ArrayLayout(UQ(1, 16), n))
        Probabilities, ``P_FRAC`` fraction bits.

    Latency and throughput
    ----------------------
    :func:`softmax_latency` ``(n) = 3 n + 19`` cycles from ``start`` to ``done``; one run at a time.
    """

    def __init__(self, n: int, width: int, fracs=(16,)):
        self._MustUse__silence = True      # no "never used" warning if an argument check fails
        if not isinstance(n, int) or isinstance(n, bool):
            raise TypeError(f"Number of logits must be an integer, not {n!r}")
        if n < 1:
            raise ValueError(f"Number of logits must be at least 1, not {n}")
        if not isinstance(width, int) or isinstance(width, bool):
            raise TypeError(f"Logit width must be an integer, not {width!r}")
        if width < 2:
            raise ValueError(f"Logit width must be at least 2, not {width}")
        fracs = tuple(fracs)
        if not fracs or any(not isinstance(f, int) or isinstance(f, bool) or f < 0 for f in fracs):
            raise ValueError(f"Fraction bits must be a non-empty tuple of non-negative integers, not {fracs!r}")
        self.n, self.width, self.fracs = n, width, fracs
        super().__init__({
            "start": In(1),
            "frac_sel": In(range(max(2, len(fracs)))),
            "s": In(data.ArrayLayout(signed(width), n)),
            "busy": Out(1),
            "done": Out(1),
            "p": Out(data.ArrayLayout(UQ(1, P_FRAC), n)),
        })
        self._MustUse__silence = False

    def elaborate(self, platform):
        m = Module()
        n, w = self.n, self.width
        s = Array(self.s[k] for k in range(n))
        k = Signal(range(n + 1))
        mx = Signal(signed(w))
        d = Signal(unsigned(w + 1))
        emax = (1 << P_FRAC)
        e = Array(Signal(range(emax + 1), name=f"e{i}") for i in range(n))
        total = Signal(range(n * emax + 1))
        rem = Signal(range(2 * n * emax + 1))
        q = Signal(_Q_BITS)
        bit = Signal(range(_Q_BITS + 1))
        p = Array(self.p[i] for i in range(n))
        table = Array(int(x) for x in EXP2_TABLE)

        # the shared multiplier
        ma = Signal(unsigned(max(w + 1, P_FRAC + 1)))
        mb = Signal(unsigned(max(LOG2E_Q16.bit_length(), _Q_BITS)))
        prod = Signal(len(ma) + len(mb))
        m.d.comb += prod.eq(ma * mb)

        # exp from the product v = d * log2(e)
        ip = Signal(len(prod))
        j6 = Signal(EXP2_FRAC_BITS)
        for i, f in enumerate(self.fracs):
            ff = f + 16
            with m.If(self.frac_sel == i):
                m.d.comb += ip.eq(prod >> ff)
                if ff >= EXP2_FRAC_BITS:
                    m.d.comb += j6.eq(prod >> (ff - EXP2_FRAC_BITS))
                else:
                    m.d.comb += j6.eq(prod << (EXP2_FRAC_BITS - ff))
        ex = Signal(range(emax + 1))
        m.d.comb += ex.eq(((ip >= P_FRAC + 1) == 0) * (table[j6] >> ip[:5]))

        m.d.comb += self.busy.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [k.eq(1), mx.eq(s[0]), total.eq(0)]
                    m.next = "MAX"
            with m.State("MAX"):
                m.d.comb += self.busy.eq(1)
                with m.If(k == n):
                    m.d.sync += k.eq(0)
                    m.next = "EXP"
                with m.Else():
                    with m.If(s[k] > mx):
                        m.d.sync += mx.eq(s[k])
                    m.d.sync += k.eq(k + 1)
            with m.State("EXP"):
                m.d.comb += [self.busy.eq(1), d.eq(mx - s[k]), ma.eq(d), mb.eq(LOG2E_Q16)]
                m.d.sync += [e[k].eq(ex), total.eq(total + ex), k.eq(k + 1)]
                with m.If(k == n - 1):
                    m.d.sync += [k.eq(0), rem.eq(1 << (RECIP_BITS - _Q_BITS)), q.eq(0), bit.eq(_Q_BITS)]
                    m.next = "DIV"
            with m.State("DIV"):
                m.d.comb += self.busy.eq(1)
                r2 = rem << 1
                with m.If(bit == 0):
                    m.next = "MUL"
                with m.Else():
                    m.d.sync += bit.eq(bit - 1)
                    with m.If(r2 >= total):
                        m.d.sync += [rem.eq(r2 - total), q.eq((q << 1) | 1)]
                    with m.Else():
                        m.d.sync += [rem.eq(r2), q.eq(q << 1)]
            with m.State("MUL"):
                m.d.comb += [self.busy.eq(1), ma.eq(e[k]), mb.eq(q)]
                m.d.sync += [p[k].eq(prod >> (RECIP_BITS - P_FRAC)), k.eq(k + 1)]
                with m.If(k == n - 1):
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += [self.done.eq(1)]
                m.next = "IDLE"
        return m
