"""The lane array: ``P`` multipliers with registered products and an adder tree."""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..compiler.timing import MUL_LATENCY, STAGE_LATENCY

__all__ = ["MacLanes", "MUL_LATENCY", "STAGE_LATENCY"]


class MacLanes(wiring.Component):
    """``P`` signed multipliers, one per lane, with operand registers (``latency`` 2) and a product register (so that
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
    latency : int
        1: product register only; 2: operand registers as well, so the operand multiplexers and
        the multiplier do not share a cycle; 3 (:data:`MUL_LATENCY`): and ``total`` registered
        after the adder tree, ``prod`` delayed to match.

    Members
    -------
    a : In(ArrayLayout(signed(a_width), lanes))
    b : In(ArrayLayout(signed(b_width), lanes))
    prod : Out(ArrayLayout(signed(a_width + b_width), lanes))
        ``a[p] * b[p]`` of ``latency`` cycles before.
    total : Out(signed(a_width + b_width + ceil(log2(lanes + 1))))
        ``sum(prod)``: combinational from the product registers (``latency`` 1, 2) or registered (3).

    Latency and throughput
    ----------------------
    ``latency`` cycles to ``prod`` and ``total``; ``lanes`` products every cycle.
    """

    def __init__(self, lanes: int, a_width: int, b_width: int, latency: int = MUL_LATENCY):
        self._MustUse__silence = True      # no "never used" warning if an argument check fails
        for name, v in (("Lanes", lanes), ("Operand width", a_width), ("Operand width", b_width)):
            if not isinstance(v, int) or isinstance(v, bool):
                raise TypeError(f"{name} must be an integer, not {v!r}")
            if v < 1:
                raise ValueError(f"{name} must be at least 1, not {v}")
        if latency not in (1, 2, 3):
            raise ValueError(f"Latency must be 1, 2 or 3, not {latency!r}")
        self.lanes, self.a_width, self.b_width, self.latency = lanes, a_width, b_width, latency
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
        products = []
        for p in range(self.lanes):
            a, b = self.a[p], self.b[p]
            if self.latency >= 2:
                a, b = Signal.like(a, name=f"a_reg{p}", reset_less=True), Signal.like(b, name=f"b_reg{p}", reset_less=True)
                m.d.sync += [a.eq(self.a[p]), b.eq(self.b[p])]
            if self.latency == 3:
                p1 = Signal.like(self.prod[p], name=f"p_reg{p}", reset_less=True)
                m.d.sync += [p1.eq(a * b), self.prod[p].eq(p1)]
                products.append(p1)
            else:
                m.d.sync += self.prod[p].eq(a * b)
        if self.latency == 3:
            m.d.sync += self.total.eq(sum(products))
        else:
            m.d.comb += self.total.eq(sum(self.prod[p] for p in range(self.lanes)))
        return m
