"""Helpers for cocotb 2.x benches run by :mod:`sigprop_fpga.sim.verilator`.

Imported *inside* the simulator (cocotb must be running). The point of these
helpers is speed: a Python wake-up costs about as much as hundreds of
Verilator cycles, so benches should not touch every clock edge from Python.

* :func:`start_clock` starts cocotb's C-level (``impl="gpi"``) clock, which
  toggles the clock without entering Python, and remembers its period.
* :func:`clock_cycles` waits ``n`` rising edges with three Python wake-ups in
  total (a :class:`~cocotb.triggers.Timer` across the middle), unlike
  :class:`cocotb.triggers.ClockCycles`, which in cocotb 2.1 resumes Python on
  every edge.
* :func:`wait_until` waits on edges/changes of the watched signal itself.
* :class:`Stream` with :func:`send` / :func:`recv`: valid/ready/payload
  handshakes (Amaranth ``lib.stream`` ports ``<name>__valid`` ...), two wake-ups
  per transfer, none while the stream is idle.
* :class:`Stopwatch`: simulated cycles, wall time and cycles per second.
* :func:`load_config` / :func:`write_results`: JSON in and out, through the
  files named by ``SIGPROP_TB_CONFIG`` and ``SIGPROP_TB_RESULTS``.

Timing conventions: all times are in simulator steps (``unit="step"``), since
Amaranth's Verilog has no ``timescale``. Handshakes are sampled in the
read-only phase after a rising edge (the settled values of that cycle) and new
values are written right after a rising edge; the Verilator runner sets
``COCOTB_TRUST_INERTIAL_WRITES=1``, so such writes never race with the flops
sampling that same edge.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import (
    ClockCycles,
    First,
    ReadOnly,
    RisingEdge,
    Timer,
    ValueChange,
)

__all__ = [
    "CONFIG_ENV",
    "RESULTS_ENV",
    "Stopwatch",
    "Stream",
    "WaitTimeout",
    "clock_cycles",
    "clock_period",
    "cycle_count",
    "load_config",
    "read_int",
    "recv",
    "reset",
    "send",
    "start_clock",
    "wait_until",
    "write_int",
    "write_results",
]

CONFIG_ENV = "SIGPROP_TB_CONFIG"
RESULTS_ENV = "SIGPROP_TB_RESULTS"

#: Clock period (in steps) of each clock started with :func:`start_clock`,
#: keyed by the handle's path.
_PERIODS: dict[str, int] = {}
#: Sim time (steps) of the first rising edge of each clock.
_STARTS: dict[str, int] = {}


class WaitTimeout(AssertionError):
    """A wait exceeded its cycle budget (an ``AssertionError``, so the test fails)."""


# --------------------------------------------------------------------------
# configuration and results
# --------------------------------------------------------------------------

def load_config() -> dict[str, Any]:
    """Return the bench configuration (``{}`` when ``SIGPROP_TB_CONFIG`` is unset)."""
    path = os.environ.get(CONFIG_ENV)
    if not path:
        return {}
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def write_results(key: str, data: Any) -> None:
    """Store ``data`` under ``key`` in the run's results JSON (atomic rewrite).

    Several tests of one run may each write their own key; the caller of
    :func:`sigprop_fpga.sim.verilator.run` gets the merged mapping as
    ``RunResult.data``. Call it before a failing assertion if the data should
    survive the failure. Without ``SIGPROP_TB_RESULTS`` it does nothing.
    """
    path = os.environ.get(RESULTS_ENV)
    if not path:
        return
    merged: dict[str, Any] = {}
    try:
        with open(path, encoding="utf-8") as fh:
            merged = json.load(fh)
    except (OSError, ValueError):
        pass
    merged[key] = data
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tb_results.", suffix=".tmp", dir=folder)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(merged, fh)
    os.replace(tmp, path)


# --------------------------------------------------------------------------
# values
# --------------------------------------------------------------------------

def read_int(signal, signed: bool = False) -> int:
    """Read a signal as a Python int (raises on X/Z bits)."""
    value = signal.value
    if not hasattr(value, "to_unsigned"):  # 1-bit signals give a Logic
        return int(value)
    return value.to_signed() if signed else value.to_unsigned()


def write_int(signal, value: int) -> None:
    """Write an int (negative values wrap to the signal's width)."""
    signal.value = int(value) & ((1 << len(signal)) - 1)


# --------------------------------------------------------------------------
# clock and time
# --------------------------------------------------------------------------

def start_clock(clk, period: int = 10) -> Clock:
    """Start a free-running clock on ``clk`` with ``period`` steps (even, >= 2).

    The clock rises at the current time and every ``period`` steps after it.
    It uses cocotb's GPI (C++) clock when ``COCOTB_TRUST_INERTIAL_WRITES`` is
    set, which the Verilator runner does.
    """
    if period < 2 or period % 2:
        raise ValueError(f"clock period must be an even number of steps >= 2, got {period}")
    clock = Clock(clk, period, unit="step")
    clock.start(start_high=True)
    _PERIODS[clk._path] = period
    _STARTS[clk._path] = get_sim_time("step")
    return clock


def clock_period(clk) -> int:
    """Period in steps of a clock started with :func:`start_clock`."""
    try:
        return _PERIODS[clk._path]
    except KeyError:
        raise RuntimeError(f"{clk._path} was not started with start_clock()") from None


def cycle_count(clk) -> int:
    """Number of rising edges of ``clk`` since :func:`start_clock` (sim-time based)."""
    return (get_sim_time("step") - _STARTS[clk._path]) // clock_period(clk)


async def clock_cycles(clk, n: int) -> None:
    """Wait for the ``n``-th next rising edge of ``clk`` (like ``ClockCycles(clk, n)``).

    Three Python wake-ups whatever ``n``: the next rising edge, a
    :class:`Timer` to the middle of the last cycle, and the last rising edge.
    Verilator runs free in between. Falls back to :class:`ClockCycles` for
    clocks not started with :func:`start_clock`.
    """
    if n <= 0:
        return
    period = _PERIODS.get(clk._path)
    if period is None:
        await ClockCycles(clk, n)
        return
    edge = RisingEdge(clk)
    await edge
    if n > 1:
        # From a rising edge, (n - 1.5) periods lands mid-cycle before edge n.
        await Timer((n - 1) * period - period // 2, unit="step")
        await edge


async def reset(clk, rst, cycles: int = 2, active_high: bool = True) -> None:
    """Hold ``rst`` active for ``cycles`` rising edges, release it after an edge."""
    rst.value = 1 if active_high else 0
    await clock_cycles(clk, cycles)
    rst.value = 0 if active_high else 1


def _matches(signal, value: int | None) -> bool:
    try:
        current = int(signal.value)
    except ValueError:  # X/Z bits
        return False
    return current != 0 if value is None else current == value


async def wait_until(signal, value: int | None = 1, timeout_cycles: int | None = None,
                     clk=None) -> int:
    """Wait until ``signal`` equals ``value`` (or is non-zero if ``value`` is None).

    Waits on the signal's own :class:`RisingEdge` (1-bit signal, value 1) or
    :class:`ValueChange`, so Python does not run while the signal is stable.
    Returns immediately if the condition already holds.

    Parameters
    ----------
    timeout_cycles : int, optional
        Fail with :class:`WaitTimeout` after this many clock periods; needs
        ``clk`` (a clock started with :func:`start_clock`).

    Returns
    -------
    int
        Elapsed sim time in steps.
    """
    start = get_sim_time("step")
    if _matches(signal, value):
        return 0
    deadline = None
    if timeout_cycles is not None:
        if clk is None:
            raise ValueError("timeout_cycles needs clk")
        deadline = start + timeout_cycles * clock_period(clk)
    trigger = RisingEdge(signal) if (len(signal) == 1 and value in (1, None)) \
        else ValueChange(signal)
    while True:
        if deadline is None:
            await trigger
        else:
            left = deadline - get_sim_time("step")
            if left <= 0:
                raise WaitTimeout(f"{signal._path} did not become {value} within "
                                  f"{timeout_cycles} cycles")
            fired = await First(trigger, Timer(left, unit="step"))
            if fired is not trigger:
                raise WaitTimeout(f"{signal._path} did not become {value} within "
                                  f"{timeout_cycles} cycles")
        if _matches(signal, value):
            return get_sim_time("step") - start


# --------------------------------------------------------------------------
# valid/ready streams
# --------------------------------------------------------------------------

@dataclass
class Stream:
    """A valid/ready/payload stream of the DUT, sampled on ``clk``.

    Use :meth:`of` for Amaranth ``lib.stream`` ports, whose Verilog names are
    ``<name>__valid``, ``<name>__ready`` and ``<name>__payload``.
    """

    clk: Any
    valid: Any
    ready: Any
    payload: Any
    signed: bool = False
    stats: dict[str, int] = field(default_factory=lambda: {"transfers": 0, "stall_waits": 0})

    @classmethod
    def of(cls, dut, name: str, clk=None, signed: bool = False) -> "Stream":
        """The stream port ``name`` of ``dut`` (clock ``dut.clk`` by default)."""
        return cls(clk if clk is not None else dut.clk, getattr(dut, f"{name}__valid"),
                   getattr(dut, f"{name}__ready"), getattr(dut, f"{name}__payload"),
                   signed=signed)

    def idle(self, source: bool) -> None:
        """Drive the stream idle from the source side (valid=0) or sink side (ready=0)."""
        (self.valid if source else self.ready).value = 0


async def send(stream: Stream, values: Iterable[int], *,
               timeout_cycles: int | None = None) -> int:
    """Drive ``values`` into a DUT sink stream, one transfer per handshake.

    Call right after a rising edge (e.g. after :func:`reset`). Returns after
    the edge that accepted the last value, with ``valid`` low again.

    While ``ready`` is low it waits on ``ready``'s own rising edge, so a
    stalled sink costs no wake-ups per cycle.

    Returns
    -------
    int
        Number of values sent.
    """
    count = 0
    edge = RisingEdge(stream.clk)
    for value in values:
        write_int(stream.payload, value)
        stream.valid.value = 1
        await ReadOnly()
        while not stream.ready.value:
            stream.stats["stall_waits"] += 1
            await wait_until(stream.ready, 1, timeout_cycles, stream.clk)
            await ReadOnly()
            if stream.ready.value:
                break
        await edge  # the transfer happens at this edge
        count += 1
    stream.valid.value = 0
    stream.stats["transfers"] += count
    return count


async def recv(stream: Stream, n: int, *, timeout_cycles: int | None = None,
               ready_probability: float = 1.0, rng: random.Random | None = None) -> list[int]:
    """Receive ``n`` payloads from a DUT source stream.

    With ``ready_probability`` < 1 the sink applies random backpressure
    (``ready`` drawn each cycle from ``rng``), which costs a wake-up per cycle.
    With the default (always ready), an idle source (valid low) costs no
    wake-ups: it waits on ``valid``'s rising edge.

    Call right after a rising edge. Returns after the edge of the last
    transfer, with ``ready`` low.
    """
    out: list[int] = []
    edge = RisingEdge(stream.clk)
    rng = rng or random.Random(0)
    always = ready_probability >= 1.0
    stream.ready.value = 1
    while len(out) < n:
        if not always:
            stream.ready.value = int(rng.random() < ready_probability)
        await ReadOnly()
        if stream.valid.value and stream.ready.value:
            out.append(read_int(stream.payload, stream.signed))
            await edge
            continue
        if always and not stream.valid.value:
            await wait_until(stream.valid, 1, timeout_cycles, stream.clk)
            await ReadOnly()
            if stream.valid.value:
                out.append(read_int(stream.payload, stream.signed))
        await edge
    stream.ready.value = 0
    stream.stats["transfers"] += len(out)
    return out


class Stopwatch:
    """Wall time and simulated cycles between :meth:`start` and :meth:`stop`."""

    def __init__(self, clk) -> None:
        self.clk = clk
        self.wall_s = 0.0
        self.cycles = 0

    def start(self) -> "Stopwatch":
        self._t0 = time.perf_counter()
        self._s0 = get_sim_time("step")
        return self

    def stop(self) -> dict[str, float]:
        self.wall_s = time.perf_counter() - self._t0
        self.cycles = (get_sim_time("step") - self._s0) // clock_period(self.clk)
        return self.report()

    def report(self) -> dict[str, float]:
        return {"cycles": self.cycles, "wall_s": self.wall_s,
                "sim_cycles_per_second": self.cycles / self.wall_s if self.wall_s else 0.0}

