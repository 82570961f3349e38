"""The lane array: ``P`` multipliers with registered products and an adder tree."""

from __future__ import annotations

from amaranth.hdl import Module, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["MacLanes"]


class MacLanes(wiring.Component):
    """``P`` signed multipliers, one per lane, each followed by a product register (so that
    synthesis can map ``a * b`` plus its output register onto one DSP block, e.g. an iCE40
    ``SB_MAC16`` or an ECP5 ``MULT18X18D``), and an adder tree over the registered products.

    The stage drives the operands of every lane each cycle from its memory banks (lanes across
    ``i`` for dot products, across ``j`` for the per-unit phases) and accumulates ``total`` or the
    per-lane ``prod``.

    Parameters
    ----------
    lanes : int
        Number of multipliers ``P``, at least 1.
    a_width, b_width : int
        Widths of the signed operands.

    Members
    -------
    a : In(ArrayLayout(signed(a_width), lanes))
    b : In(ArrayLayout(signed(b_width), lanes))
    prod : Out(ArrayLayout(signed(a_width + b_width), lanes))
        ``a[p] * b[p]`` of the previous cycle.
    total : Out(signed(a_width + b_width + ceil(log2(lanes + 1))))
        ``sum(prod)`` (combinational from the product registers).

    Latency and throughput
    ----------------------
    One cycle to ``prod`` and ``total``; ``lanes`` products every cycle.
    """

    def __init__(self, lanes: int, a_width: int, b_width: int):
        self._MustUse__silence = True      # no "never used" warning if an argument check fails
        for name, v in (("Lanes", lanes), ("Operand width", a_width), ("Operand width", b_width)):
            if not isinstance(v, int) or isinstance(v, bool):
                raise TypeError(f"{name} must be an integer, not {v!r}")
            if v < 1:
                raise ValueError(f"{name} must be at least 1, not {v}")
        self.lanes, self.a_width, self.b_width = lanes, a_width, b_width
        pw = a_width + b_width
        super().__init__({
            "a": In(data.ArrayLayout(signed(a_width), lanes)),
            "b": In(data.ArrayLayout(signed(b_width), lanes)),
            "prod": Out(data.ArrayLayout(signed(pw), lanes)),
            "total": Out(signed(pw + max(1, lanes.bit_length()))),
        })
        self._MustUse__silence = False

    def elaborate(self, platform):
        m = Module()
        for p in range(self.lanes):
            m.d.sync += self.prod[p].eq(self.a[p] * self.b[p])
        m.d.comb += self.total.eq(sum(self.prod[p] for p in range(self.lanes)))
        return m
