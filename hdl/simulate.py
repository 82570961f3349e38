"""Run a :class:`.engine.SigPropEngine` in the Amaranth simulator on integer samples.

Used by the hardware tests and by benchmarks: feeds the sample stream, collects predictions with
their cycle stamps, and reads every memory and counter back through the readback port at the end
(the same path a host uses on the board).
"""

from __future__ import annotations

import time

import numpy as np
from amaranth.sim import Simulator

from ..compiler.network import Network
from ..compiler.statemap import readback_requests, state_writes, unpack_state
from .engine import SigPropEngine

__all__ = ["simulate", "read_state", "write_state"]


async def read_state(ctx, dut: SigPropEngine) -> dict:
    """Read all memories and counters through the readback port (the engine must be idle)."""
    reqs = readback_requests(dut.net, dut.lanes)
    words = {}
    ctx.set(dut.rb_en, 1)
    # a request presented before edge e is answered after edge e + rb_latency - 1
    pending = []
    for key, a in reqs + [(None, 0)] * (dut.rb_latency - 1):
        ctx.set(dut.rb_addr, a)
        await ctx.tick()
        pending.append(key)
        if len(pending) == dut.rb_latency:
            k = pending.pop(0)
            if k is not None:
                words[k] = ctx.get(dut.rb_data)
    ctx.set(dut.rb_en, 0)
    return unpack_state(dut.net, dut.lanes, words)


async def write_state(ctx, dut: SigPropEngine, state: dict):
    """Load ``state`` (shaped as :meth:`GoldenSigProp.state`) through the state port, one entry a
    cycle (the engine must be idle)."""
    ctx.set(dut.rb_en, 1)
    ctx.set(dut.wb_en, 1)
    for a, v in state_writes(dut.net, dut.lanes, state):
        ctx.set(dut.rb_addr, a)
        ctx.set(dut.wb_data, v)
        await ctx.tick()
    ctx.set(dut.wb_en, 0)
    ctx.set(dut.rb_en, 0)


def simulate(net: Network, X, y, train=True, lanes=None, params=None, gap: int = 0, ready_every: int = 1,
             checkpoint: dict | None = None, engine_cls=SigPropEngine, monitors=()) -> dict:
    """Stream samples through the engine; returns predictions, timing and the final state.

    Parameters
    ----------
    X : array (N, n_in) of int
        Quantised inputs.
    y : array (N,) of int
        Labels.
    train : bool or array of bool
        Train on (or only infer) each sample.
    gap : int
        Idle cycles the host leaves between samples (0: back to back).
    ready_every : int
        The prediction sink is ready one cycle in ``ready_every`` (1: always; back-pressure test).
    checkpoint : dict, optional
        A state to load through the state port before the first sample (:func:`write_state`).
    engine_cls : type
        Any engine with the :class:`.engine.SigPropEngine` interface (e.g.
        :class:`.serial.SerialEngine`); ``stage_cycles`` is collected from its ``stages``, if any.
    monitors : sequence of callables
        Each ``monitor(dut)``, called once the design is elaborated, returns an async process
        (``async def process(ctx)``) that runs beside the feeder and the sink in the background
        (a property checker, e.g. of memory addresses).

    Returns
    -------
    dict
        ``pred`` (N,), ``pred_cycle`` (cycle of each prediction), ``stage_cycles`` (per stage, the
        cycles of each sample), ``state`` (as :meth:`GoldenSigProp.state`, read back), ``cycles``,
        ``setup_seconds`` (elaborating the design and preparing the simulator).
    """
    X = np.asarray(X, dtype=np.int64)
    y = np.asarray(y, dtype=np.int64)
    N = len(y)
    train = np.broadcast_to(np.asarray(train, dtype=bool), (N,))
    dut = engine_cls(net, lanes, params)
    stages = getattr(dut, "stages", [])
    win = net.spec.precision.input.width
    mask = (1 << dut.in_width) - 1
    out = {"pred": [], "pred_cycle": [], "stage_cycles": [[] for _ in range(net.depth)]}
    clock = {"t": 0}
    loaded = {"done": checkpoint is None}

    async def feeder(ctx):
        if checkpoint is not None:
            await write_state(ctx, dut, checkpoint)
            loaded["done"] = True
        for n in range(N):
            beats = [(int(v) & ((1 << win) - 1), 0) for v in X[n]] + [(int(y[n]), int(train[n]))]
            for d, tr in beats:
                ctx.set(dut.i.payload.data, d & mask)
                ctx.set(dut.i.payload.train, tr)
                ctx.set(dut.i.valid, 1)
                while True:
                    r = ctx.get(dut.i.ready)
                    await ctx.tick()
                    if r:
                        break
            ctx.set(dut.i.valid, 0)
            for _ in range(gap):
                await ctx.tick()

    async def sink(ctx):
        while not loaded["done"]:
            await ctx.tick()
        while len(out["pred"]) < N:
            ready = clock["t"] % ready_every == 0
            ctx.set(dut.o.ready, ready)
            if ready and ctx.get(dut.o.valid):
                out["pred"].append(ctx.get(dut.o.payload))
                out["pred_cycle"].append(clock["t"])
            done = [ctx.get(st.done) for st in stages]
            await ctx.tick()
            for l, st in enumerate(stages):
                if done[l]:
                    out["stage_cycles"][l].append(ctx.get(st.last_cycles))
            clock["t"] += 1
        ctx.set(dut.o.ready, 0)
        while not ctx.get(dut.idle):
            await ctx.tick()
        out["state"] = await read_state(ctx, dut)

    t0 = time.perf_counter()
    sim = Simulator(dut)                # elaborates the design and compiles it for pysim
    out["setup_seconds"] = time.perf_counter() - t0
    sim.add_clock(1e-6)
    sim.add_testbench(feeder)
    sim.add_testbench(sink)
    for monitor in monitors:
        sim.add_process(monitor(dut))
    sim.run()
    out["pred"] = np.array(out["pred"], dtype=np.int64)
    out["cycles"] = clock["t"]
    out["dut"] = dut
    return out
