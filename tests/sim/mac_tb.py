"""cocotb bench for the streaming multiply-accumulate of tests/sim/test_verilator.py.

Run by :func:`sigprop_fpga.sim.verilator.run` (not collected by pytest). The
DUT has an Amaranth ``lib.stream`` input ``i`` (payload struct ``a``: bits
0-7, ``b``: bits 8-15, ``last``: bit 16; ``a``/``b`` signed) and output ``o``
(signed accumulator, one value per vector, emitted with the vector's last
element).

Configuration (``SIGPROP_TB_CONFIG``):

* ``stream_mac``: ``vectors`` (list of ``[a_list, b_list]``), ``expected``
  (list of ints, from the NumPy model), ``width`` (of ``a``/``b``),
  ``ready_probability``, ``seed``.
* ``free_run``: ``free_cycles`` (fast wait), ``slow_cycles`` (cocotb's
  per-edge ``ClockCycles``, for comparison).
"""

from __future__ import annotations

import random
import time

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge

from sigprop_fpga.sim.cocotb_util import (
    Stopwatch,
    Stream,
    clock_cycles,
    load_config,
    recv,
    reset,
    send,
    start_clock,
    write_results,
)

PERIOD = 10


def _pack(a: int, b: int, last: bool, width: int) -> int:
    mask = (1 << width) - 1
    return (a & mask) | ((b & mask) << width) | (int(last) << (2 * width))


async def _start(dut) -> tuple[Stream, Stream]:
    src = Stream.of(dut, "i")
    sink = Stream.of(dut, "o", signed=True)
    src.idle(source=True)
    sink.idle(source=False)
    start_clock(dut.clk, PERIOD)
    await reset(dut.clk, dut.rst, 3)
    return src, sink


@cocotb.test()
async def stream_mac(dut):
    """Stream every vector through the MAC; every output must equal the NumPy model."""
    cfg = load_config()
    width = cfg.get("width", 8)
    vectors = cfg["vectors"]
    expected = cfg["expected"]
    beats = [_pack(a, b, k == len(av) - 1, width)
             for av, bv in vectors for k, (a, b) in enumerate(zip(av, bv))]
    src, sink = await _start(dut)

    watch = Stopwatch(dut.clk).start()
    sender = cocotb.start_soon(send(src, beats, timeout_cycles=1000))
    got = await recv(sink, len(expected), timeout_cycles=1000,
                     ready_probability=cfg.get("ready_probability", 1.0),
                     rng=random.Random(cfg.get("seed", 0)))
    await sender
    perf = watch.stop()

    mismatches = [k for k, (e, g) in enumerate(zip(expected, got)) if e != g]
    write_results("stream_mac", {"outputs": got, "beats": len(beats), "mismatches": len(mismatches),
                                 "stall_waits": src.stats["stall_waits"], **perf})
    assert len(got) == len(expected), f"got {len(got)} outputs, expected {len(expected)}"
    if mismatches:
        k = mismatches[0]
        raise AssertionError(f"first mismatch at vector {k}: expected {expected[k]}, "
                             f"got {got[k]} ({len(mismatches)} mismatches)")


@cocotb.test()
async def free_run(dut):
    """Let Verilator run free with the datapath busy; measure simulated cycles per second."""
    cfg = load_config()
    src, sink = await _start(dut)
    # Keep the MAC busy: a one-element vector every cycle, output always taken.
    src.payload.value = _pack(3, -2, True, cfg.get("width", 8))
    src.valid.value = 1
    sink.ready.value = 1

    fast = Stopwatch(dut.clk).start()
    await clock_cycles(dut.clk, cfg.get("free_cycles", 1_000_000))
    fast_report = fast.stop()

    slow = Stopwatch(dut.clk).start()
    await ClockCycles(dut.clk, cfg.get("slow_cycles", 100_000))
    slow_report = slow.stop()

    t0 = time.perf_counter()
    await clock_cycles(dut.clk, 1)
    one = time.perf_counter() - t0
    out = int(sink.payload.value.to_signed())
    write_results("free_run", {"fast": fast_report, "slow_clockcycles": slow_report,
                               "last_output": out, "one_cycle_wall_s": one})
    assert out == -6, f"free-running output {out} != 3 * -2"


@cocotb.test()
async def helpers(dut):
    """clock_cycles waits exactly n edges; wait_until succeeds and times out."""
    from cocotb.simtime import get_sim_time
    from cocotb.triggers import Timer

    from sigprop_fpga.sim.cocotb_util import WaitTimeout, wait_until

    src, sink = await _start(dut)
    clk = dut.clk
    for n in (1, 2, 7, 1000):
        t0 = get_sim_time("step")
        await clock_cycles(clk, n)
        assert get_sim_time("step") - t0 == n * PERIOD, n
    await Timer(3, unit="step")  # off the edge: the next edge counts as the first
    t0 = get_sim_time("step")
    await clock_cycles(clk, 5)
    assert get_sim_time("step") - t0 == 5 * PERIOD - 3

    sink.ready.value = 0
    try:
        await wait_until(dut.o__valid, 1, timeout_cycles=20, clk=clk)
    except WaitTimeout:
        pass
    else:
        raise AssertionError("wait_until did not time out")
    await RisingEdge(clk)  # the timeout left us at an arbitrary time: re-align
    t0 = get_sim_time("step")
    await send(src, [_pack(2, 5, True, 8)])
    waited = await wait_until(dut.o__valid, 1, timeout_cycles=10, clk=clk)
    assert 0 <= waited <= 3 * PERIOD, waited
    assert (await recv(sink, 1, timeout_cycles=5)) == [10]
    write_results("helpers", {"ok": True})
