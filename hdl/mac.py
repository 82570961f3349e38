"""The lane array: ``P`` multipliers with registered products and an adder tree."""

from __future__ import annotations

from amaranth.hdl import ClockSignal, Const, Instance, Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..compiler.timing import MUL_LATENCY, STAGE_LATENCY, tree_levels

__all__ = ["FamilyHint", "MacLanes", "MUL_LATENCY", "STAGE_LATENCY", "family_of", "tree_registers"]

#: Operand width of the ECP5's MULT18X18D.
ECP5_MULT_WIDTH = 18


class FamilyHint:
    """A stand-in platform for :func:`amaranth.back.rtlil.convert` that only names the FPGA
    family (the attribute Amaranth's vendor platforms carry): components that instantiate family
    primitives (:class:`MacLanes`) elaborate them exactly as for a board build, e.g. for the
    netlist rung of the verification ladder.

    Parameters
    ----------
    family : str
        ``"ecp5"`` or ``"ice40"``.
    """

    def __init__(self, family: str):
        if not isinstance(family, str):
            raise TypeError(f"FPGA family must be a string, not {family!r}")
        self.family = family


def family_of(platform) -> str | None:
    """The FPGA family of ``platform`` (an Amaranth vendor platform or :class:`FamilyHint`), or
    ``None`` for simulation and generic synthesis."""
    family = getattr(platform, "family", None)
    return family if isinstance(family, str) else None


def tree_registers(levels: int, cycles: int) -> list[int]:
    """After which levels of an adder tree of ``levels`` levels its ``cycles`` registers go
    (the last after the last level, the levels spread as evenly as they go, the earlier
    cycles taking the extra level; with more cycles than levels, the extra registers delay the
    sum at the end, level ``levels`` repeated)."""
    return [min(levels, -(-levels * i // cycles)) if cycles <= levels else max(0, levels - cycles + i)
            for i in range(1, cycles + 1)]


class MacLanes(wiring.Component):
    """``P`` signed multipliers, one per lane, with operand registers (``latency`` 2) and a product register (so that
    synthesis can map ``a * b`` plus its output register onto one DSP block, e.g. an iCE40
    ``SB_MAC16`` or an ECP5 ``MULT18X18D``), and an adder tree over the registered products,
    pipelined for ``latency`` above 3.

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
        after the adder tree, ``prod`` delayed to match; ``3 + k``: the tree (``ceil(log2
        lanes)`` levels of pairwise adders, an odd operand passed on to the next level) takes
        ``k + 1`` cycles, a register after every few levels (:func:`tree_registers`: e.g. 96
        lanes, 7 levels, latency 5: after levels 3, 5 and 7), ``prod`` delayed to match; with
        ``fabric_operands``, one of the ``latency`` cycles is the fabric's operand register and
        the tree gets one fewer. The pipelined stage uses
        :func:`sigprop_fpga.compiler.timing.mul_latency` of its lanes (with fabric operands).
    fabric_operands : bool
        Register both operands once more in the fabric ahead of the operand registers (one more
        cycle of ``latency``, at least 4): the operand multiplexers then end in a flip-flop that
        placement keeps beside them, and the route to the multiplier column is a cycle of its
        own (on the ECP5 the multiplexers' routes to a ``MULT18X18D``'s input registers were
        10.6 of an 11.9 ns critical path, nextpnr on the digits board).
    sum_width : int or None
        The adder tree sums each product's low ``sum_width`` bits as a signed value (default
        ``a_width + b_width``, the whole product): for a user whose sums (``total``) only ever
        take narrower products than the widest operands make (dot products of 16 by 8 bits on
        lanes whose per-lane products, ``prod``, go to 26 bits).

    Members
    -------
    a : In(ArrayLayout(signed(a_width), lanes))
    b : In(ArrayLayout(signed(b_width), lanes))
    prod : Out(ArrayLayout(signed(a_width + b_width), lanes))
        ``a[p] * b[p]`` of ``latency`` cycles before.
    total : Out(signed(sum_width + ceil(log2(lanes + 1))))
        ``sum(prod)``: combinational from the product registers (``latency`` 1, 2) or registered
        (3 and above).

    Latency and throughput
    ----------------------
    ``latency`` cycles to ``prod`` and ``total``; ``lanes`` products every cycle. The adder
    tree's critical path is the levels between two of its registers (3 for up to 8 lanes at
    ``latency`` 3), not ``ceil(log2 lanes)``.

    Notes
    -----
    Elaborated for an ECP5 platform (:func:`family_of` is ``"ecp5"``) with ``latency`` 3 or more and both
    operands at most 18 bits wide, each lane is a ``MULT18X18D`` instance with its input registers
    (the operand registers) and its output register (the product register) on: Yosys maps a ``*``
    on this family onto a combinational ``MULT18X18D`` and leaves the registers in the fabric, so
    the multiplier's 4 ns or so would share a cycle with the routes to and from it. Everywhere
    else (Verilator, the golden comparison, the iCE40) the generic description above is
    elaborated; the two are the same function cycle by cycle, which the netlist rung
    (``sim --netlist ecp5``, ``sim/cells/ecp5_models.v``) checks.
    """

    def __init__(self, lanes: int, a_width: int, b_width: int, latency: int = MUL_LATENCY,
                 sum_width: int | None = None, fabric_operands: bool = False):
        self._MustUse__silence = True      # no "never used" warning if an argument check fails
        for name, v in (("Lanes", lanes), ("Operand width", a_width), ("Operand width", b_width)):
            if not isinstance(v, int) or isinstance(v, bool):
                raise TypeError(f"{name} must be an integer, not {v!r}")
            if v < 1:
                raise ValueError(f"{name} must be at least 1, not {v}")
        if not isinstance(latency, int) or isinstance(latency, bool):
            raise TypeError(f"Latency must be an integer, not {latency!r}")
        if latency < 1:
            raise ValueError(f"Latency must be at least 1, not {latency}")
        if not isinstance(fabric_operands, bool):
            raise TypeError(f"Fabric operands must be a bool, not {fabric_operands!r}")
        if fabric_operands and latency < MUL_LATENCY + 1:
            raise ValueError(f"Latency with fabric operand registers must be at least {MUL_LATENCY + 1}, "
                             f"not {latency}")
        pw = a_width + b_width
        if sum_width is None:
            sum_width = pw
        if not isinstance(sum_width, int) or isinstance(sum_width, bool):
            raise TypeError(f"Sum width must be an integer, not {sum_width!r}")
        if not 1 <= sum_width <= pw:
            raise ValueError(f"Sum width must be from 1 to {pw}, not {sum_width}")
        self.lanes, self.a_width, self.b_width, self.latency = lanes, a_width, b_width, latency
        self.sum_width, self.fabric_operands = sum_width, fabric_operands
        super().__init__({
            "a": In(data.ArrayLayout(signed(a_width), lanes)),
            "b": In(data.ArrayLayout(signed(b_width), lanes)),
            "prod": Out(data.ArrayLayout(signed(pw), lanes)),
            "total": Out(signed(sum_width + max(1, lanes.bit_length()))),
        })
        self._MustUse__silence = False

    def _operands(self, m, p):
        """Lane ``p``'s operands, through the fabric registers if there are any."""
        a, b = self.a[p].as_signed(), self.b[p].as_signed()
        if self.fabric_operands:
            a = self._delayed(m, a, 1, f"a_fab{p}")
            b = self._delayed(m, b, 1, f"b_fab{p}")
        return a, b

    def _mult18x18d(self, m, p):
        """Lane ``p`` as a fully registered MULT18X18D; returns its product register's value."""
        pw, W = self.a_width + self.b_width, ECP5_MULT_WIDTH
        a, b = self._operands(m, p)
        a18, b18 = Signal(signed(W), name=f"mul_a{p}"), Signal(signed(W), name=f"mul_b{p}")
        prod36 = Signal(2 * W, name=f"mul_p{p}")
        m.d.comb += [a18.eq(a), b18.eq(b)]
        ports = {f"i_A{k}": a18[k] for k in range(W)}
        ports.update({f"i_B{k}": b18[k] for k in range(W)})
        ports.update({f"o_P{k}": prod36[k] for k in range(2 * W)})
        # C, the shift-in operands (cascade pins, no route from the fabric) and CLK1..3 stay
        # unconnected, as in Yosys's own MULT18X18D mapping
        ports.update(i_CLK0=ClockSignal(), i_CE0=Const(1, 1), i_RST0=Const(0, 1))
        m.submodules[f"mult{p}"] = Instance(
            "MULT18X18D",
            p_REG_INPUTA_CLK="CLK0", p_REG_INPUTB_CLK="CLK0", p_REG_OUTPUT_CLK="CLK0",
            p_REG_INPUTA_CE="CE0", p_REG_INPUTB_CE="CE0", p_REG_OUTPUT_CE="CE0",
            p_REG_INPUTA_RST="RST0", p_REG_INPUTB_RST="RST0", p_REG_OUTPUT_RST="RST0",
            p_GSR="DISABLED", p_RESETMODE="SYNC", p_SOURCEB_MODE="B_SHIFT", p_MULT_BYPASS="DISABLED",
            i_SIGNEDA=Const(1, 1), i_SIGNEDB=Const(1, 1), i_SOURCEA=Const(0, 1), i_SOURCEB=Const(0, 1),
            **ports)
        return prod36[:pw].as_signed()

    @staticmethod
    def _delayed(m, v, cycles, name):
        """``v`` through ``cycles`` registers."""
        for i in range(cycles):
            r = Signal.like(v, name=f"{name}_{i}", reset_less=True)
            m.d.sync += r.eq(v)
            v = r
        return v

    def _tree(self, m, values, cycles):
        """The sum of ``values`` over ``cycles`` cycles: pairwise levels, registered after the
        levels :func:`tree_registers` names; the last register is the caller's (``total``)."""
        levels = tree_levels(len(values))
        regs = tree_registers(levels, cycles)[:-1]
        count = [0]

        def level(values):
            # each sum a two-input carry-chain adder, not one multi-operand sum of the cycle's
            # levels (Yosys's alumacc merges an adder into the next when that is its only user,
            # and maps the merged sum as carry-save LUT levels: 13.1 ns for three levels on the
            # ECP5 instead of 7.8): a one-bit register of its low bit (kept, drives nothing) is
            # a second user
            out = []
            for k in range(0, len(values), 2):
                if k + 1 == len(values):
                    out.append(values[k])
                    continue
                v = values[k] + values[k + 1]
                w = Signal(signed(len(v)), name=f"tree_sum{count[0]}")
                tap = Signal(name=f"tree_tap{count[0]}", attrs={"keep": 1}, reset_less=True)
                count[0] += 1
                m.d.comb += w.eq(v)
                m.d.sync += tap.eq(w[0])
                out.append(w)
            return out

        for i, after in enumerate(regs):
            done = tree_registers(levels, cycles)[i - 1] if i else 0
            for lv in range(done, after):
                values = level(values)
            stage = []
            for k, v in enumerate(values):
                r = Signal(signed(len(v)), name=f"tree{after}_{i}_{k}", reset_less=True)
                m.d.sync += r.eq(v)
                stage.append(r)
            values = stage
        while len(values) > 1:
            values = level(values)
        return values[0]

    def elaborate(self, platform):
        m = Module()
        products = []
        primitive = (family_of(platform) == "ecp5" and self.latency >= 3
                     and max(self.a_width, self.b_width) <= ECP5_MULT_WIDTH)
        tree = self.latency - 2 - self.fabric_operands      # the tree's cycles (latency >= 3)
        for p in range(self.lanes):
            if primitive:
                p1 = Signal.like(self.prod[p], name=f"p_reg{p}")
                m.d.comb += p1.eq(self._mult18x18d(m, p))
                m.d.sync += self.prod[p].eq(self._delayed(m, p1, tree - 1, f"p_d{p}"))
                products.append(p1)
                continue
            a, b = self._operands(m, p)
            if self.latency >= 2:
                a_in, b_in = a, b
                a, b = Signal.like(a, name=f"a_reg{p}", reset_less=True), Signal.like(b, name=f"b_reg{p}", reset_less=True)
                m.d.sync += [a.eq(a_in), b.eq(b_in)]
            if self.latency >= 3:
                p1 = Signal.like(self.prod[p], name=f"p_reg{p}", reset_less=True)
                m.d.sync += [p1.eq(a * b), self.prod[p].eq(self._delayed(m, p1, tree - 1, f"p_d{p}"))]
                products.append(p1)
            else:
                m.d.sync += self.prod[p].eq(a * b)
        sw = self.sum_width

        def cut(v):
            return v if sw == len(v) else v[:sw].as_signed()

        if self.latency >= 3:
            m.d.sync += self.total.eq(self._tree(m, [cut(p) for p in products], tree))
        else:
            m.d.comb += self.total.eq(sum(cut(self.prod[p]) for p in range(self.lanes)))
        return m
