"""Amaranth components of the SigProp training datapath."""

import re

#: Attributes of every memory the datapath instantiates: block RAM, never distributed RAM or
#: flip-flops, so the pre-synthesis block RAM count (:mod:`sigprop_fpga.boards.flow`) is exact
#: and small memories do not spend LUTs (yosys ``memory_libmap`` honours ``ram_style``).
BLOCK_RAM = {"ram_style": "block"}


def relax_read_collisions(rtlil_text: str) -> str:
    """The RTLIL of a design with every memory read port marked ``COLLISION_X_MASK`` (the data
    read in a cycle that also writes the same word is undefined) instead of read-first.

    Neither block RAM family guarantees read-first across two ports, so yosys would emulate it
    with an address comparator, a bypass multiplexer and delay registers on every memory (about
    600 LUT4 and 680 flip-flops on the digits engine for the iCE40) and put them on the
    memory-to-multiplier path. The datapath never uses such a read: weights, biases and table
    rows are read before they are rewritten (the read-modify-write pipeline writes a word
    ``MUL_LATENCY + 1`` cycles after its last read, and no word is read again in that sample),
    the caches are written in phases that read other regions or discard the read, the input
    memory is double buffered, and the host reads nothing it writes in the same cycle. The
    simulated netlists (Amaranth, Verilator) keep the read-first semantics; synthesis gets this.
    """
    def relax(cell):
        # an asynchronous read port (CLK_ENABLE 0) has no cycle to collide in: left as it is
        if re.search(r"parameter \\CLK_ENABLE 0\b", cell.group(0)):
            return cell.group(0)
        return re.sub(r"(parameter \\COLLISION_X_MASK )(\d+)'[01]+",
                      lambda mo: f"{mo.group(1)}{mo.group(2)}'{'1' * int(mo.group(2))}", cell.group(0))

    return re.sub(r"cell \$memrd_v2 .*?\n\s*end\b", relax, rtlil_text, flags=re.S)
