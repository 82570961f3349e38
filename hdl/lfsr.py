"""The LFSR of stochastic rounding: the hardware twin of :class:`sigprop_fpga.compiler.fixed.Lfsr`."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..compiler.fixed import LFSR_TAPS

__all__ = ["Lfsr", "lfsr_step"]


def lfsr_step(s):
    """One Galois step of a 32-bit state (an Amaranth expression): ``(s >> 1) ^ (TAPS if s & 1)``."""
    return (s >> 1) ^ Mux(s[0], LFSR_TAPS, 0)


class Lfsr(wiring.Component):
    """A 32-bit Galois LFSR that hands out up to ``lanes`` consecutive draws per cycle.

    The golden model's generator returns its state, then steps; this one exposes the next
    ``lanes`` draws at once (``draws[p]`` is the state stepped ``p`` times) and, at the clock edge,
    steps by ``advance`` (``0..lanes``): the lanes that consumed a draw this cycle.

    Parameters
    ----------
    seed : int
        Non-zero 32-bit initial state (:func:`sigprop_fpga.sim.golden.lfsr_seed`).
    lanes : int
        Draws per cycle, at least 1.

    Members
    -------
    draws : Out(ArrayLayout(32, lanes))
        The next ``lanes`` draws (combinational from the state).
    advance : In(range(lanes + 1))
        How many draws were consumed this cycle.

    Latency and throughput
    ----------------------
    Draws are valid in the same cycle; any number up to ``lanes`` per cycle.
    """

    def __init__(self, seed: int, lanes: int = 1):
        self._MustUse__silence = True      # no "never used" warning if an argument check fails
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise TypeError(f"Seed must be an integer, not {seed!r}")
        if not 0 < seed < (1 << 32):
            raise ValueError(f"Seed must be a non-zero 32-bit integer, not {seed}")
        if not isinstance(lanes, int) or isinstance(lanes, bool):
            raise TypeError(f"Lanes must be an integer, not {lanes!r}")
        if lanes < 1:
            raise ValueError(f"Lanes must be at least 1, not {lanes}")
        self.seed, self.lanes = seed, lanes
        super().__init__({"draws": Out(data.ArrayLayout(32, lanes)), "advance": In(range(lanes + 1))})
        self._MustUse__silence = False

    def elaborate(self, platform):
        m = Module()
        state = Signal(32, init=self.seed)
        chain = [state]
        for _ in range(self.lanes):
            nxt = Signal(32)
            m.d.comb += nxt.eq(lfsr_step(chain[-1]))
            chain.append(nxt)
        for p in range(self.lanes):
            m.d.comb += self.draws[p].eq(chain[p])
        with m.Switch(self.advance):
            for k in range(1, self.lanes + 1):
                with m.Case(k):
                    m.d.sync += state.eq(chain[k])
        return m
