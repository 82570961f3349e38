"""The analytic schedule: formulas, lane allocation, and its honesty (the RTL tests measure it)."""

import math

import pytest

from sigprop_fpga.compiler.estimate import (allocate_lanes, estimate, softmax_cycles, stage_cycles,
                                            stage_inference_cycles, stage_macs, stage_phases)
from sigprop_fpga.compiler.spec import parse_spec
from sigprop_fpga.compiler.timing import STAGE_LATENCY, softmax_latency
from sigprop_fpga.compiler.network import Network


def _net(text, n_inputs=64, n_classes=10):
    return Network(parse_spec(text), n_inputs, n_classes)


DIGITS = "dataset: {source: digits}\nnetwork: {layers: [32, 32]}\nhardware: {dsp_budget: 8}\n"


def test_phase_formulas_digits():
    net = _net(DIGITS)
    p0 = stage_phases(net, 0, 4)
    # drain 6 (read, operand sources, fabric operand registers, operand registers, product, adder
    # tree), 7 where the dot product is narrowed or compared at S3; forward -> logits -> cache and
    # update -> table without one
    assert p0 == {"overhead": 2, "forward": 32 * 16, "logits": 10 * 8, "cache": 8 + 7,
                  "softmax": softmax_cycles(10), "gradient": 11 * 8 + 5, "update": 32 * (16 + 1),
                  "table": 2 * 8 + 6}
    p1 = stage_phases(net, 1, 4)
    assert p1["forward"] == 2 * 32 * 8 and p1["update"] == 32 * (3 * 8 + 1) + 6 and "table" not in p1
    assert softmax_cycles(10) == softmax_latency(10, 1, STAGE_LATENCY) + 1 == 1 + 2 * 10 + 3 + 25 + 8   # max tree of 4 levels
    assert stage_cycles(net, 0, 4) == sum(p0.values()) == 1325
    assert stage_cycles(net, 1, 4) == 1565


def test_digits_within_ten_percent_of_ideal():
    """Samples leave at the slowest stage's rate, within 10% of its ideal ``ceil(MACs / lanes)``;
    a faster stage has slack (digits' layer 0: 1,325 of an ideal 1,200 with drains of 6 cycles)."""
    net = _net(DIGITS)
    est = estimate(net)
    assert [s.lanes for s in est.stages] == [4, 4]
    for s in est.stages:
        ideal = math.ceil(s.macs / s.lanes)
        assert ideal <= s.cycles, (s.index, s.cycles, ideal)
    slowest = max(est.stages, key=lambda s: s.cycles)
    assert slowest.cycles <= 1.10 * math.ceil(slowest.macs / slowest.lanes)
    assert est.cycles_per_sample == max(s.cycles for s in est.stages)
    assert est.sequential_cycles == sum(s.cycles for s in est.stages)


def test_allocation_balances_and_explicit_wins():
    net = _net("dataset: {source: digits}\nnetwork: {layers: [64, 16]}\nhardware: {dsp_budget: 10}\n")
    lanes = allocate_lanes(net)
    assert sum(lanes) == 10 and lanes[0] > lanes[1]
    # moving a lane from the slowest stage to another never helps
    best = max(stage_cycles(net, l, lanes[l]) for l in range(2))
    for a, b in ((0, 1), (1, 0)):
        if lanes[a] > 1:
            moved = list(lanes)
            moved[a] -= 1
            moved[b] += 1
            assert max(stage_cycles(net, l, moved[l]) for l in range(2)) >= best
    net = _net("dataset: {source: digits}\nnetwork: {layers: [{units: 64, lanes: 3}, 16]}\n"
               "hardware: {dsp_budget: 10}\n")
    assert allocate_lanes(net)[0] == 3 and sum(allocate_lanes(net)) == 10
    net = _net("dataset: {source: digits}\nnetwork: {layers: [64, 16]}\nhardware: {lanes: [5, 7]}\n")
    assert allocate_lanes(net) == (5, 7)


def test_variants_have_their_phases():
    l2 = _net("dataset: {source: wine}\nnetwork: {layers: [20, 16]}\nlearning: {loss: l2}\n", 13, 3)
    assert "softmax" not in stage_phases(l2, 0, 2) and "logits" not in stage_phases(l2, 0, 2)
    assert "logits" in stage_phases(l2, 1, 2)           # the readout of the last stage
    head = _net("dataset: {source: iris}\nnetwork: {layers: [8], readout: head}\n", 4, 3)
    ph = stage_phases(head, 0, 2)
    assert ph["head"] == (3 * 4 + 7) + softmax_cycles(3, 2) + (3 * 5 + 6)   # q in 3 pieces on 2 lanes
    nopush = _net("dataset: {source: iris}\nnetwork: {layers: [8, 6]}\nlearning: {push: false}\n", 4, 3)
    assert stage_phases(nopush, 1, 2)["update"] == 6 * (2 * 4 + 1) + 6
    assert stage_phases(nopush, 0, 2)["table"] == 4 + 6
    assert stage_inference_cycles(nopush, 1, 2) == 2 + 6 * 4 + 8 + 3 * 3 + 7   # h lands at S4
    tr, inf = stage_macs(nopush, 0)
    assert inf == 8 * 4 and tr > inf


def test_phase_formulas_with_a_pipelined_adder_tree():
    """A stage of 16 lanes has a tree of 4 levels, two cycles (compiler.timing): every drain is
    one cycle longer than with 4 lanes, the softmax's multiplier answers a cycle later (two
    requests: two cycles), and FORWARD runs into LOGITS without a drain from cn = drain + 2 = 9
    (6 + 3: hdl/stage.py's no_drain) on, not from 8 as with 4 lanes."""
    from sigprop_fpga.compiler.timing import stage_drain, stage_latency
    assert (stage_latency(8), stage_latency(16), stage_drain(16), stage_drain(96)) == (5, 6, 7, 8)
    wide = _net("dataset: {source: digits}\nnetwork: {layers: [144, 144]}\n")
    p0 = stage_phases(wide, 0, 16)          # ci = 4, cn = 9 = drain + 2: no drain before LOGITS
    assert p0 == {"overhead": 2, "forward": 144 * 4, "logits": 10 * 9, "cache": 9 + 8,
                  "softmax": softmax_cycles(10, 1, 6), "gradient": 11 * 9 + 6, "update": 144 * (4 + 1),
                  "table": 2 * 9 + 7}
    assert softmax_cycles(10, 1, 6) == softmax_cycles(10) + 2
    assert stage_inference_cycles(wide, 1, 16) == 2 + 144 * 9 + 10 * 9 + 7 + 1     # forward -> logits, no drain
    wide = _net("dataset: {source: digits}\nnetwork: {layers: [128, 128]}\n")
    assert stage_phases(wide, 0, 16)["forward"] == 128 * 4 + 7 + 2      # cn = 8 < drain + 2
    p1 = stage_phases(wide, 1, 96)          # 96 lanes (three tree cycles): cn = 2 < drain + 2
    assert p1["forward"] == 2 * 128 * 2 + 8 + 2 and p1["update"] == 128 * (3 * 2 + 1) + 8
