"""Golden models of bp, fa and dfa: a step worked out by hand, determinism, agreement with their
float references."""

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from sigprop_fpga.compiler.fixed import softmax_fixed
from sigprop_fpga.compiler.network import Network
from sigprop_fpga.compiler.rule import Rule, feedback_shape, feedback_shift, init_rule_params
from sigprop_fpga.compiler.spec import load_spec, parse_spec
from sigprop_fpga.sim.datasets import load_dataset
from sigprop_fpga.sim.golden_rules import GoldenRule
from sigprop_fpga.sim.reference_rules import FloatRule
from sigprop_fpga.sim.train import train_sigprop

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RULES = ("bp", "fa", "dfa")


def _net(text_or_path):
    spec = load_spec(text_or_path) if isinstance(text_or_path, Path) else parse_spec(text_or_path)
    data = load_dataset(spec)
    return Network(spec, data.n_inputs, data.n_classes), data


TINY = """
name: tiny
dataset: {source: iris}
network: {layers: [3, 2]}
learning: {lr_shift: 3, epochs: 1}
"""


def _rnd(v: Fraction) -> int:
    """Round half to even, then as the golden model saturates (never reached here)."""
    return round(v)


@pytest.mark.parametrize("rule", RULES)
def test_one_step_by_hand(rule):
    """A 4-3-2-3 network, one sample: every number of the step from first principles (fractions,
    round half to even), against the golden model's integers."""
    net, _ = _net(TINY)
    rng = np.random.default_rng(5)
    params = init_rule_params(net, rule)
    W_int = [rng.integers(-3000, 3000, size=(net.units(l), net.fan_in(l))) for l in range(2)]
    Wo_int = rng.integers(-3000, 3000, size=(3, 2))
    params["layers"] = [{"W": w / 4096.0, "b": np.array([0.25] * len(w))} for w in W_int]
    params["out"] = {"W": Wo_int / 4096.0, "b": np.array([0.0, 0.125, -0.125])}
    g = GoldenRule(net, rule, params)
    x, c = np.array([100, -50, 127, -128]), 1
    eta = [Fraction(1, 8), Fraction(1, 8)]
    # forward in real numbers, each activation rounded to Q1.7
    xs, hs = [], []
    h = [Fraction(int(v), 128) for v in x]
    for l in range(2):
        xs.append(h)
        out = []
        for j in range(net.units(l)):
            z = sum(Fraction(int(W_int[l][j, i]), 4096) * h[i] for i in range(len(h))) + Fraction(1, 4)
            out.append(min(max(Fraction(_rnd(z * 128)), Fraction(-128)), Fraction(127)) / 128)
        h = out
        hs.append(h)
    o_int = [sum(int(Wo_int[k, j]) * int(h[j] * 128) for j in range(2)) + int(b * 4096) * 128
             for k, b in enumerate([0.0, 0.125, -0.125])]
    prob, _ = softmax_fixed(np.array(o_int), 12 + 7)
    e = [Fraction(_rnd(Fraction(int(p) - (65536 if k == c else 0), 65536) * 16384), 16384) for k, p in enumerate(prob)]
    pred = g.train_sample(x, c)
    assert pred == int(np.argmax(o_int))

    def step(w_real, d, xin, lr):   # the updated weight, rounded to Q4.12
        return _rnd((w_real - lr * d * xin) * 4096)

    Wo = [[Fraction(int(v), 4096) for v in row] for row in Wo_int]
    for k in range(3):
        for j in range(2):
            assert g.W_out[k, j] == step(Wo[k][j], e[k], hs[1][j], eta[1])
    d_next, W_above = e, Wo
    for l in (1, 0):
        n = net.units(l)
        mask = [1 if -1 < v < Fraction(127, 128) else 0 for v in hs[l]]
        if rule == "bp":
            gsum = [sum(W_above[k][j] * d_next[k] for k in range(len(d_next))) for j in range(n)]
        else:
            src = e if rule == "dfa" else d_next
            S = g.S[l]
            gsum = [sum(int(S[k, j]) * src[k] for k in range(len(src))) * Fraction(1, 2 ** feedback_shift(net, l))
                    for j in range(n)]
        d = [Fraction(_rnd(v * 16384), 16384) * m for v, m in zip(gsum, mask)]
        Wl = [[Fraction(int(v), 4096) for v in row] for row in W_int[l]]
        for j in range(n):
            for i in range(len(xs[l])):
                assert g.W[l][j, i] == step(Wl[j][i], d[j], xs[l][i], eta[l]), (rule, l, j, i)
            assert g.b[l][j] == _rnd((Fraction(1, 4) - eta[l] * d[j]) * 4096)
        d_next, W_above = d, Wl
    assert any(v != 0 for v in d_next), "the step must reach layer 0 for the check to mean anything"


def test_feedback_shapes_and_signs():
    net, _ = _net(TINY)
    assert feedback_shape(net, "dfa", 0) == (3, 3) and feedback_shape(net, "dfa", 1) == (3, 2)
    assert feedback_shape(net, "fa", 0) == (2, 3) and feedback_shape(net, "fa", 1) == (3, 2)
    assert feedback_shape(net, "bp", 0) is None
    p = init_rule_params(net, "dfa")
    assert set(np.unique(p["signs"][0])) <= {-1, 1}
    # the hidden layers are SigProp's: the rules start from the same weights
    from sigprop_fpga.compiler.network import init_params
    assert np.array_equal(p["layers"][0]["W"], init_params(net)["layers"][0]["W"])


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
def test_deterministic(rounding):
    net, data = _net(TINY.replace("epochs: 1}", f"epochs: 1}}\nprecision: {{rounding: {rounding}}}"))
    states = []
    for _ in range(2):
        g = GoldenRule(net, "bp")
        preds = [g.train_sample(data.x_train[i], int(data.y_train[i])) for i in range(60)]
        states.append((preds, [w.copy() for w in g.W], g.W_out.copy(), dict(g.counters)))
    assert states[0][0] == states[1][0] and states[0][3] == states[1][3]
    assert all(np.array_equal(a, b) for a, b in zip(states[0][1], states[1][1]))
    assert np.array_equal(states[0][2], states[1][2])


SMALL_DIGITS = """
name: small
dataset: {source: digits}
network: {layers: [24, 16]}
learning: {lr_shift: 6, epochs: 4}
"""


@pytest.fixture(scope="module")
def small_digits():
    return _net(SMALL_DIGITS)


@pytest.mark.parametrize("rule", RULES)
def test_golden_follows_float(small_digits, rule):
    """Digits 64-24-16-10, 4 epochs: the golden model's test accuracy within one point of its float
    reference, their test predictions agreeing on 95% of the samples, and both learning."""
    net, data = small_digits
    rg, g = train_sigprop("golden", net, data, rule=rule)
    rf, f = train_sigprop("float", net, data, rule=rule)
    assert rg.rule == rule == rf.rule
    assert abs(rg.test_accuracy - rf.test_accuracy) <= 0.01
    assert rg.test_accuracy > 0.85
    _, xte = data.float_inputs()
    assert np.mean(g.predict(data.x_test) == f.predict(xte)) >= 0.95


def test_rule_models_refuse_sigprop(small_digits):
    net, _ = small_digits
    with pytest.raises(ValueError, match="GoldenSigProp"):
        GoldenRule(net, Rule.SIGPROP)
    with pytest.raises(ValueError):
        FloatRule(net, "nope")
