"""The dfa engine behind the engine interface (no simulator): registration, refusals, memories,
the cycle model's terms."""

import pytest

from sigprop_fpga.compiler.estimate import dfa_cycles
from sigprop_fpga.compiler.network import Network
from sigprop_fpga.compiler.spec import parse_spec
from sigprop_fpga.hdl.dfa import DfaEngine
from sigprop_fpga.hdl.engines import EngineUnsupported, engine_for_rule, get_engine
from sigprop_fpga.sim.datasets import load_dataset

IRIS = """
name: t
dataset: {source: iris}
network: {layers: [7, 5]}
"""


def _net(text):
    spec = parse_spec(text)
    data = load_dataset(spec)
    return Network(spec, data.n_inputs, data.n_classes)


def test_registered_for_its_rule():
    eng = get_engine("dfa")
    assert eng.rule == "dfa" and engine_for_rule("dfa") is eng
    assert engine_for_rule("sigprop").rule == "sigprop"
    with pytest.raises(ValueError, match="builds the sigprop rule"):
        engine_for_rule("dfa", "serial")
    assert engine_for_rule("bp").name == "bp"
    assert engine_for_rule("fa").name == "fa"
    with pytest.raises(ValueError, match="no engine builds the bp-adam rule"):
        engine_for_rule("bp-adam")


def test_refuses_stochastic_rounding():
    net = _net(IRIS + "precision: {rounding: stochastic}\n")
    with pytest.raises(EngineUnsupported, match="rounds to nearest only"):
        get_engine("dfa").check(net)


def test_argument_checks():
    net = _net(IRIS)
    with pytest.raises(TypeError, match="Network"):
        DfaEngine("net")
    with pytest.raises(ValueError, match="at least 1"):
        DfaEngine(net, 0)
    with pytest.raises(TypeError, match="integer"):
        DfaEngine(net, 2.5)
    with pytest.raises(ValueError, match="one lane count"):
        DfaEngine(net, (2, 3))


@pytest.mark.parametrize("rule", ["dfa", "bp"])
def test_memories_hold_weights_activations_and_feedback(rule):
    """P weight banks per layer and the output layer, one bias memory each, the stored activations
    (the input twice: double buffered), two delta memories, and for DFA the sign matrices (C x n
    bits a layer); backprop has none."""
    net, P = _net(IRIS), 3
    mems = get_engine(rule).memories(net, P)
    weight_words = sum(d for d, w in mems if w == 16 and d in (7 * 2, 5 * 3, 3 * 2))
    assert weight_words == P * (7 * 2 + 5 * 3 + 3 * 2)
    signs = [(d, w) for d, w in mems if w == P]
    want = [(3 * 3, P), (2 * 3, P)] if rule == "dfa" else []            # ceil(n / P) * C words of P bits
    assert sorted(signs) == sorted(want)
    assert (2 * 2, P * 8) in mems                                       # x_0: two halves of ceil(4 / 3)
    assert [m for m in mems if m == (3, P * 16)] == [(3, P * 16)] * 2   # the deltas, ceil(7 / 3) words


def test_cycle_model_terms():
    net = _net(IRIS)
    c = dfa_cycles(net, 3)
    # forward 7*2 + 5*3, logits 3*2, two updates of the same sizes and the output's, gradients 3*3, 3*2
    assert c["phases"]["forward"] == 7 * 2 + 6 + 5 * 3 + 6
    assert c["phases"]["update"] == 3 * 2 + 5 + 7 * 2 + 5 + 5 * 3 + 5
    assert c["phases"]["gradient"] == 3 * 3 + 3 + 3 * 2 + 3
    assert c["train"] == sum(c["phases"].values()) and c["inference"] < c["train"]
    # backprop's gradient is the transposed pass: rows above x ceil(n / P) words, + 6 to drain
    b = dfa_cycles(net, 3, "bp")
    assert b["phases"]["gradient"] == 5 * 3 + 6 + 3 * 2 + 6
    assert b["train"] - c["train"] == b["phases"]["gradient"] - c["phases"]["gradient"]
