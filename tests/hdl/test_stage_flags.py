"""The pipelined stage's registered control flags equal the compares they replace, in every
cycle they are read (Amaranth simulation of whole engines: training and inference samples,
gaps and back-pressure)."""

from pathlib import Path

import numpy as np
import pytest

from sigprop_fpga.compiler.network import Network
from sigprop_fpga.compiler.spec import load_spec, parse_spec
from sigprop_fpga.hdl.simulate import simulate
from sigprop_fpga.sim.datasets import load_dataset

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

HEAD = """
dataset: {source: breast_cancer}
network: {layers: [{units: 5, lanes: 4}, {units: 3, lanes: 2}], readout: head}
learning: {lr_shift: 2, push: false}
precision: {error: Q2.10}
"""

RING = """
dataset: {source: iris}
network: {layers: [8, 12]}
hardware: {lanes: [2, 3]}
"""

ONE_CHUNK = """
dataset: {source: iris}
network: {layers: [4, 3]}
hardware: {lanes: [4, 4]}
"""


def _net(text=None, example=None):
    spec = load_spec(EXAMPLES / f"{example}.yaml") if example else parse_spec(text)
    data = load_dataset(spec)
    return Network(spec, data.n_inputs, data.n_classes), data


@pytest.mark.parametrize("which", ["iris", "HEAD", "ONE_CHUNK"])
def test_counter_flags_equal_their_compares_every_cycle(which):
    """With an issue at S0 (the cycles the FSM and the counters read them): ``last_issue`` is
    the compare of every counter with its phase's limit (UPDATE's bias step: one term), each
    ``lim_last`` its counter's compare with ``limit - 1``; ``c_is<k>`` (the CACHE logit's
    enable) is ``c == k`` whenever an issue is at S3; the drain flags (registered a cycle ahead)
    equal the pipeline's valid bits' conditions in every cycle, and the host port's copies of
    ``idle`` (``idle_rb``, and ``idle_rb_n`` complemented) equal it."""
    net, data = _net(example="iris") if which == "iris" else _net(globals()[which])
    seen, bad = {"valid": 0, "s3": 0, "drain": 0}, []

    def monitor(dut):
        dps = [st._dp for st in dut.stages]
        watch = []
        for dp in dps:
            s0, s3 = dp.s0, dp.s3
            regs = list(s0.fields()[2:])
            c_is = dp.c_is
            drains = [x for pair in dp.drain_exact.values() for x in pair]
            drains += [dp.idle, dp.idle_rb, dp.idle, ~dp.idle_rb_n]
            watch.append((dp, [s0.valid, s0.phase, dp.train, dp.c, s3.valid, dp.last_issue, *regs,
                               *dp.lim_last, *c_is.values(), *drains], sorted(c_is)))
        exprs = [x for _, w, _ in watch for x in w]

        async def process(ctx):
            async for _, _, *vals in ctx.tick().sample(*exprs):
                at = 0
                for dp, w, ks in watch:
                    v = vals[at:at + len(w)]
                    at += len(w)
                    valid, phase, train, c, v3, last_issue = v[:6]
                    regs, lasts = v[6:10], v[10:14]
                    cis, drains = v[14:14 + len(ks)], v[14 + len(ks):]
                    seen["drain"] += 1
                    if any(f != e for f, e in zip(drains[0::2], drains[1::2])) and len(bad) < 5:
                        bad.append(("drained", list(dp.drain_exact), drains))
                    if v3:
                        seen["s3"] += 1
                        for k, f in zip(ks, cis):
                            if f != int(c == k) and len(bad) < 5:
                                bad.append(("c_is", k, c, f))
                    if not valid:
                        continue
                    seen["valid"] += 1
                    name = next(nm for nm, (code, _) in dp.issue_of.items() if code == phase)
                    lims = [int(x) for x in dp._limit_values(name, int(train))[8:12]]
                    lims = [x + 2 for x in lims]
                    want = [int(r == lim - 1) for r, lim in zip(regs, lims)]
                    if want != list(lasts) and len(bad) < 5:
                        bad.append(("lim_last", name, regs, lims, lasts))
                    short = name == "UPDATE" and regs[2] == lims[2] - 1
                    want_done = int(all(want[:3]) and (want[3] or short))
                    if want_done != last_issue and len(bad) < 5:
                        bad.append(("last_issue", name, regs, lims, last_issue))
        return process

    n = 6
    train = np.arange(n) % 3 != 2
    r = simulate(net, data.x_train[:n], data.y_train[:n], train=train, gap=3, ready_every=4, monitors=[monitor])
    assert len(r["pred"]) == n and seen["valid"] > 200 and seen["s3"] > 200
    assert not bad, bad



@pytest.mark.parametrize("which", ["iris", "HEAD", "RING"])
def test_delta_fifo_head_registers_equal_the_lane_multiplexer(which):
    """UPDATE reads the delta FIFOs' head entry of its row's lane from registers loaded a cycle
    ahead (one-hot lane copies, the FIFO's shift looked ahead): in every cycle with an UPDATE
    issue at S1 each equals the head chunk's entry ``lane_index``, and ``lane_nx`` is the next
    cycle's ``lane_index`` in every cycle."""
    net, data = _net(example="iris") if which == "iris" else _net(globals()[which])
    seen, bad = {"read": 0, "cycles": 0}, []

    def monitor(dut):
        watch = []
        for dp in (st._dp for st in dut.stages):
            if not getattr(dp, "head_entry", None):
                continue
            names = sorted(dp.head_entry)
            heads = [x for nm in names for x in dp.fifo_head[nm]]
            watch.append((dp, names, [dp.s1.valid, dp.s1.phase, dp.lane_index, dp.lane_nx,
                                      *(dp.head_entry[nm] for nm in names), *heads]))
        assert watch, "no stage with registered FIFO heads"
        # the FIFOs as rings in a memory (iris: 6, 4 and 4 chunks; RING: 4 and 4) and as chunks
        # of flip-flops (HEAD: 2 chunks)
        assert all(dp.fifo_ring == (which != "HEAD") for dp, _, _ in watch)
        exprs = [x for _, _, w in watch for x in w]
        prev_nx = [None] * len(watch)

        async def process(ctx):
            async for _, _, *vals in ctx.tick().sample(*exprs):
                at = 0
                for wi, (dp, names, w) in enumerate(watch):
                    v = vals[at:at + len(w)]
                    at += len(w)
                    valid, phase, lane, lane_nx = v[:4]
                    regs, heads = v[4:4 + len(names)], v[4 + len(names):]
                    seen["cycles"] += 1
                    if prev_nx[wi] is not None and prev_nx[wi] != lane and len(bad) < 5:
                        bad.append(("lane_nx", prev_nx[wi], lane))
                    prev_nx[wi] = lane_nx
                    if not (valid and phase == dp.issue_of["UPDATE"][0]):
                        continue
                    seen["read"] += 1
                    for k, nm in enumerate(names):
                        want = heads[k * dp.P + lane]
                        if regs[k] != want and len(bad) < 5:
                            bad.append((nm, lane, regs[k], want))
        return process

    n = 6
    train = np.arange(n) % 3 != 2
    simulate(net, data.x_train[:n], data.y_train[:n], train=train, gap=3, ready_every=4, monitors=[monitor])
    assert seen["read"] > 50
    assert not bad, bad


@pytest.mark.parametrize("which", ["iris", "HEAD"])
def test_chunk_reads_through_one_hot_copies_equal_the_index_multiplexer(which):
    """``h`` and ``t`` kept in flip-flops are read a chunk at a time through one-hot copies of
    ``hidx1`` (one per lane, four variants): in every cycle with an issue at S1 each lane's
    ``h_chunk`` / ``t_chunk`` equals entry ``hidx1`` of its lane's vector (0 beyond the last
    chunk, as the index multiplexer gives)."""
    net, data = _net(example="iris") if which == "iris" else _net(globals()[which])
    seen, bad = {"read": 0}, []

    def monitor(dut):
        watch = []
        for dp in (st._dp for st in dut.stages):
            pairs = [(nm, dp.h_chunk if nm == "h" else dp.t_chunk, dp.h_l if nm == "h" else dp.t_l)
                     for nm, mem in (("h", dp.h_mem), ("t", dp.t_mem)) if mem is None]
            if not pairs:
                continue
            sigs = [dp.s1.valid, dp.hidx1]
            for _, chunk, lanes in pairs:
                for pp in range(dp.P):
                    sigs += [chunk[pp], *(lanes[pp][q] for q in range(dp.cn))]
            watch.append((dp, pairs, sigs))
        assert watch, "no stage keeps h or t in flip-flops"
        exprs = [x for _, _, w in watch for x in w]

        async def process(ctx):
            async for _, _, *vals in ctx.tick().sample(*exprs):
                at = 0
                for dp, pairs, w in watch:
                    v = vals[at:at + len(w)]
                    at += len(w)
                    valid, idx, rest = v[0], v[1], v[2:]
                    if not valid:
                        continue
                    seen["read"] += 1
                    for k, (nm, _, _) in enumerate(pairs):
                        for pp in range(dp.P):
                            base = (k * dp.P + pp) * (dp.cn + 1)
                            got, entries = rest[base], rest[base + 1:base + 1 + dp.cn]
                            want = entries[idx] if idx < dp.cn else 0
                            if got != want and len(bad) < 5:
                                bad.append((nm, pp, idx, got, want))
        return process

    n = 6
    train = np.arange(n) % 3 != 2
    simulate(net, data.x_train[:n], data.y_train[:n], train=train, gap=3, ready_every=4, monitors=[monitor])
    assert seen["read"] > 200
    assert not bad, bad


def _cache_address(dp, phase, row, col, m_class):
    """The packed cache's issue address as the multiply-add formula gives it (before the
    trackers): b's region at FORWARD and UPDATE's bias step, Tin[m] in UPDATE (layers >= 1), T
    across the classes in GRADIENT, T along j otherwise."""
    from sigprop_fpga.hdl import stage as hs
    ci, cn, pb = dp.ci, dp.cn, dp.pbase
    if phase == hs._FORWARD or (phase == hs._UPDATE and col == ci):
        a = pb["b"] + row
    elif phase == hs._UPDATE and dp.l > 0:
        a = pb["Tin"] + m_class * ci + col
    elif phase == hs._GRADIENT:
        a = col * cn + row
    else:
        a = row * cn + col
    return a & ((1 << len(dp.c_issue)) - 1)


@pytest.mark.parametrize("which", ["iris", "HEAD", "ONE_CHUNK"])
def test_s0_trackers_and_phase_flags_equal_their_formulas(which):
    """The S0 phase flags equal ``valid & (phase == code)`` in every cycle; with an issue at S0
    the packed cache's issue address (two trackers and their select) equals the multiply-add
    formula of the counters, and ``hidx0`` (the chunk index tracker) the chunk (GRADIENT: row,
    else col); with an issue at S1 in GRADIENT or HEAD_UPDATE, ``err`` (from the registered
    ``prob_c - 1``) equals ``prob[err_class] - (err_is_c << P_FRAC)``; layer 0's target row
    address register ``raddr_f`` equals ``c * cn + tq0`` in every cycle, and TABLE's late read
    address ``raddr_t`` its row's (``c``, then ``m``) ``* cn + col``; ``last_term_eff`` is
    ``last_term | (upd_short & last_col)`` and ``last_issue_t`` (the trackers' copy) is
    ``last_issue`` in every cycle."""
    from sigprop_fpga.compiler.fixed import P_FRAC
    from sigprop_fpga.hdl import stage as hs
    net, data = _net(example="iris") if which == "iris" else _net(globals()[which])
    seen, bad = {"s0": 0, "err": 0, "R": 0}, []

    def monitor(dut):
        watch = []
        for dp in (st._dp for st in dut.stages):
            s0, s1 = dp.s0, dp.s1
            codes = sorted(s0.phase_flags)
            sigs = [s0.valid, s0.phase, s0.row, s0.col, dp.m_class, dp.c_issue, dp.hidx0,
                    *(s0.phase_flags[c] for c in codes), s1.valid, s1.phase, dp.err_class, dp.err_is_c,
                    dp.err, *dp.prob, dp.c, dp.target_chunk[0], dp.raddr_f, dp.raddr_t,
                    dp.last_term_eff, dp.lim_last[3] | (dp.upd_short & dp.lim_last[2]),
                    dp.last_issue_t, dp.last_issue]
            watch.append((dp, codes, sigs))
        exprs = [x for _, _, w in watch for x in w]

        async def process(ctx):
            async for _, _, *vals in ctx.tick().sample(*exprs):
                at = 0
                for dp, codes, w in watch:
                    v = vals[at:at + len(w)]
                    at += len(w)
                    valid, phase, row, col, m_class, c_issue, hidx0 = v[:7]
                    flags = v[7:7 + len(codes)]
                    v1, ph1, ecls, eis_c, err = v[7 + len(codes):12 + len(codes)]
                    prob = v[12 + len(codes):12 + len(codes) + dp.C]
                    c, tq0, raddr_f, raddr_t, eff, eff_want, li_t, li = v[12 + len(codes) + dp.C:]
                    if li_t != li and len(bad) < 5:
                        bad.append(("last_issue_t", li_t, li))
                    if eff != eff_want and len(bad) < 5:
                        bad.append(("last_term_eff", eff, eff_want))
                    if dp.table:
                        seen["R"] += 1
                        if raddr_f != c * dp.cn + tq0 and len(bad) < 5:
                            bad.append(("raddr_f", c, tq0, raddr_f))
                        if valid and phase == hs._TABLE:
                            want = (m_class if row == 1 else c) * dp.cn + col
                            if raddr_t != want and len(bad) < 5:
                                bad.append(("raddr_t", row, col, c, m_class, raddr_t))
                    for c, f in zip(codes, flags):
                        if f != int(valid and phase == c) and len(bad) < 5:
                            bad.append(("phase flag", c, valid, phase, f))
                    if valid:
                        seen["s0"] += 1
                        want = _cache_address(dp, phase, row, col, m_class)
                        if c_issue != want and len(bad) < 5:
                            bad.append(("cache address", dp.l, phase, row, col, c_issue, want))
                        want = row if phase == hs._GRADIENT else col
                        if hidx0 != want and len(bad) < 5:
                            bad.append(("hidx0", dp.l, phase, row, col, hidx0))
                    if dp.need_sm and v1 and ph1 in (hs._GRADIENT, hs._HEAD_UPDATE):
                        seen["err"] += 1
                        w_ = dp.err_w
                        want = (prob[ecls] - (eis_c << P_FRAC)) & ((1 << w_) - 1)
                        want -= (want >> (w_ - 1)) << w_
                        if err != want and len(bad) < 5:
                            bad.append(("err", dp.l, ph1, ecls, eis_c, err, want))
        return process

    n = 6
    train = np.arange(n) % 3 != 2
    simulate(net, data.x_train[:n], data.y_train[:n], train=train, gap=3, ready_every=4, monitors=[monitor])
    assert seen["s0"] > 200 and seen["err"] > 20 and seen["R"] > 200, seen
    assert not bad, bad
