"""Latencies of the datapath's building blocks, in cycles: the numbers the estimator schedules
with and the components are built to (their tests measure them)."""

from __future__ import annotations

from .rule import Q_BITS

__all__ = ["MUL_LATENCY", "STAGE_LATENCY", "DRAIN", "SERIAL_DRAIN", "TREE_LEVELS_PER_CYCLE", "tree_levels", "tree_latency",
           "mul_latency", "stage_latency", "stage_drain", "max_levels", "softmax_latency"]

#: Cycles from operands to product in the datapath: operand registers, the product register
#: (absorbed by an ECP5 ``MULT18X18D`` / iCE40 ``SB_MAC16``) and a register after the adder tree
#: (the products are delayed alongside); the memory read, the operand multiplexers, the
#: multiplier and the adder tree are then each a cycle of their own
#: (:class:`sigprop_fpga.hdl.mac.MacLanes`).
MUL_LATENCY = 3

#: Cycles from an issue's memory read data (S1) to its products in the pipelined layer stage
#: (:class:`sigprop_fpga.hdl.stage.LayerStage`): every operand source (block RAM read data, lane
#: multiplexers, error terms) is registered first, then the operand multiplexer ends in a fabric
#: register (``MacLanes(fabric_operands=True)``), then :data:`MUL_LATENCY`. The block RAMs have
#: no output register and the ECP5 routes from a block RAM or a multiplexer to a DSP column are
#: long (nextpnr on the digits board at 85.7 MHz: 10.6 ns of routes in the 11.9 ns path from the
#: multiplexer's select through its three LUT levels into a ``MULT18X18D``'s input register), so
#: read, multiplexer and the route to the multiplier get a cycle each.
STAGE_LATENCY = MUL_LATENCY + 2

#: Pipeline drain of the layer stage after each issuing phase: read, sources, operands, product,
#: tree (+1 after the phases whose dot products are narrowed or compared a cycle later).
DRAIN = STAGE_LATENCY + 1

#: Pipeline drain of the serial engine (:class:`sigprop_fpga.hdl.serial.SerialEngine`, the
#: iCEBreaker's) after a phase whose successor reads what it writes: read, operand sources,
#: operand registers, product, sum. It has no fabric operand register (the pipelined stage's
#: :data:`DRAIN` is one cycle longer); :func:`~.estimate.serial_cycles` counts with it.
SERIAL_DRAIN = MUL_LATENCY + 2

#: Adder levels of :class:`sigprop_fpga.hdl.mac.MacLanes`'s tree per cycle in the pipelined
#: layer stage. Measured on the ECP5 (Yosys netlist of ``MacLanes(96, 18, 8)``,
#: ``bench/ecp5_paths.py``, ~1.2x pessimistic against nextpnr): three levels of two-input
#: carry-chain adders from the ``MULT18X18D``'s output register, 7.8 ns; the same three levels
#: merged by Yosys into one multi-operand adder (carry-save LUT levels, then a carry chain: what
#: it does to a plain sum), 13.1 ns. Up to 8 lanes the tree stays one cycle, as always.
TREE_LEVELS_PER_CYCLE = 3


def tree_levels(lanes: int) -> int:
    """Levels of the adder tree over ``lanes`` products (``ceil(log2 lanes)``, pairs summed at
    each level, an odd one passed on)."""
    return (lanes - 1).bit_length()


def tree_latency(lanes: int) -> int:
    """Cycles of the pipelined layer stage's adder tree over ``lanes`` products, from the
    product registers to ``total``: one cycle per :data:`TREE_LEVELS_PER_CYCLE` levels, at
    least one (1 for up to 8 lanes, 2 up to 64, 3 up to 512)."""
    return max(1, -(-tree_levels(lanes) // TREE_LEVELS_PER_CYCLE))


def mul_latency(lanes: int) -> int:
    """Cycles from operands to ``total`` (and ``prod``) of the pipelined stage's lanes:
    :data:`MUL_LATENCY`, the fabric operand register and the tree's extra registers
    (:func:`tree_latency`)."""
    return MUL_LATENCY + tree_latency(lanes)


def stage_latency(lanes: int) -> int:
    """:data:`STAGE_LATENCY` (5 up to 8 lanes) of a pipelined layer stage with ``lanes`` lanes: cycles from an
    issue's read data (S1) to its sums (S2), the adder tree's registers included
    (:func:`mul_latency`)."""
    return mul_latency(lanes) + 1


def stage_drain(lanes: int) -> int:
    """:data:`DRAIN` of a pipelined layer stage with ``lanes`` lanes (:func:`stage_latency` + 1)."""
    return stage_latency(lanes) + 1


def max_levels(n: int) -> int:
    """Levels of the registered max tree over ``n`` logits (``ceil(log2 n)``)."""
    return (n - 1).bit_length()


def softmax_latency(n: int, groups: int = 1, mul_latency: int = MUL_LATENCY) -> int:
    """Cycles of :class:`sigprop_fpga.hdl.softmax.Softmax` from ``start`` to ``done`` for ``n``
    logits (``done`` is high in the last one), when each product (``d_k log2 e`` and ``e_k q``)
    takes ``groups`` multiplier cycles (1 with the internal multiplier) and answers
    ``mul_latency`` cycles after its request."""
    return 2 * groups * n + max(max_levels(n) - 1, 0) + Q_BITS + 8 + 2 * (mul_latency - 1)
