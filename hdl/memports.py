"""Driving memory read ports so that every read stays inside its memory and every read register
holds a defined value from the first clock edge on.

A read past a memory's end returns an X in Verilog (and whatever the block RAM's address decoder
makes of it on the chip); Amaranth 0.5 also gives a synchronous read port's data register no
initial value (``INIT_VALUE`` is undefined in its RTLIL, see ``amaranth/back/rtlil.py``). A port
driven by :func:`read_in_range` is enabled only while its address lies inside the memory (out of
range it keeps the word it last read, which the datapath then ignores), and reads word 0 in the
first cycle after power-up, so its register never holds an undefined value after the first edge.

A memory whose depth is a power of two (:func:`sigprop_fpga.compiler.statemap.pow2_depth`) has no
address outside it: :func:`read_whole` drives its port with no comparator and no power-up
multiplexer between the address logic and the block RAM (on the ECP5 that comparison and its
enable fan-out were the stage engine's critical path).
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, Value

__all__ = ["power_up_flag", "read_in_range", "read_whole"]


def power_up_flag(m: Module, name: str = "power_up") -> Signal:
    """A signal high in the first cycle after power-up (and after a reset), low from then on."""
    first = Signal(init=1, name=name)
    m.d.sync += first.eq(0)
    return first


def read_in_range(port, addr, en=1, first=None) -> list:
    """The statements (comb domain) that drive synchronous read ``port`` with ``addr``.

    Parameters
    ----------
    port : amaranth.lib.memory.ReadPort
        A synchronous read port (its ``memory`` gives the depth).
    addr : Value
        The address the datapath asks for (any width: compared in full, not truncated).
    en : Value or int
        The datapath's read enable.
    first : Signal, optional
        :func:`power_up_flag`: while high the port reads word 0.

    Returns
    -------
    list of Assign
        ``port.addr`` and ``port.en``: enabled when ``en`` and ``addr < depth``, or ``first``.
    """
    if port.domain == "comb":
        raise TypeError("read_in_range drives a synchronous read port, not an asynchronous one")
    depth = port.memory.depth
    addr = Value.cast(addr)
    inside = addr < depth if (1 << len(addr)) > depth else Const(1)
    if first is None:
        return [port.addr.eq(addr), port.en.eq(en & inside)]
    return [port.addr.eq(Mux(first, 0, addr)), port.en.eq(first | (en & inside))]


def read_whole(port, addr, en=1) -> list:
    """The statements (comb domain) that drive synchronous read ``port`` of a memory whose depth
    is a power of two with ``addr`` (its low bits: every value is a word of the memory).

    Parameters
    ----------
    port : amaranth.lib.memory.ReadPort
        A synchronous read port of a memory ``2**k`` words deep.
    addr : Value
        The address the datapath asks for; bits above ``k`` are dropped (the datapath ignores the
        word read for an address past its data, as with :func:`read_in_range`).
    en : Value or int
        The read enable. With ``en`` 1 (the default) the read register holds a defined word from
        the first clock edge on, as long as ``addr`` comes from reset registers.

    Returns
    -------
    list of Assign
        ``port.addr`` and ``port.en``.
    """
    if port.domain == "comb":
        raise TypeError("read_whole drives a synchronous read port, not an asynchronous one")
    depth = port.memory.depth
    if depth & (depth - 1):
        raise ValueError(f"read_whole needs a memory whose depth is a power of two, not {depth}")
    return [port.addr.eq(Value.cast(addr)[:len(port.addr)]), port.en.eq(en)]
