"""The learning-rule cost model: structural facts that must hold for any network."""

import pytest

from sigprop_fpga.compiler.estimate import estimate
from sigprop_fpga.compiler.rules import rule_costs
from sigprop_fpga.compiler.spec import parse_spec
from sigprop_fpga.compiler.network import Network


@pytest.mark.parametrize("widths,lanes", [([32, 32], [4, 4]), ([128, 128], [6, 26]), ([12, 10, 10], [2, 3, 3])])
def test_rule_costs(widths, lanes):
    spec = parse_spec(f"dataset: {{source: iris}}\nnetwork: {{layers: {widths}}}\nhardware: {{lanes: {lanes}}}\n")
    net = Network(spec, 64, 10)
    r = rule_costs(net)
    s, bp, dfa = r["sigprop"], r["backprop"], r["dfa"]
    assert r["lanes"] == lanes
    assert s["cycles_per_sample"] == estimate(net).cycles_per_sample
    assert s["cycles_per_sample"] < s["sequential_cycles"]          # layers overlap
    assert s["stored_activation_bits"] == 0 and s["weight_transport"] == 0 and s["feedback_weight_bits"] == 0
    assert bp["weight_transport"] > 0 and bp["stored_activation_bits"] > 0 and not bp["layers_overlap"]
    assert dfa["feedback_weight_bits"] == sum(10 * w * 16 for w in widths)
    # backprop's extra transposed pass makes it slower than DFA on the same lanes
    assert bp["cycles_per_sample"] > dfa["cycles_per_sample"]
