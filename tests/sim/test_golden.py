"""The golden model: agreement with the float reference, determinism, counters, accuracy."""

from pathlib import Path

import numpy as np
import pytest

from sigprop_fpga.compiler.spec import load_spec, parse_spec
from sigprop_fpga.sim.datasets import load_dataset
from sigprop_fpga.sim.golden import GoldenSigProp
from sigprop_fpga.compiler.network import Network
from sigprop_fpga.sim.reference import FloatSigProp
from sigprop_fpga.sim.train import train_sigprop

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _net(path_or_text):
    spec = load_spec(path_or_text) if isinstance(path_or_text, Path) else parse_spec(path_or_text)
    data = load_dataset(spec)
    return Network(spec, data.n_inputs, data.n_classes), data


@pytest.fixture(scope="module")
def digits():
    return _net(EXAMPLES / "digits.yaml")


def test_first_sample_agrees_with_float_to_the_lsb(digits):
    net, data = digits
    g, f = GoldenSigProp(net), FloatSigProp(net)
    xf, _ = data.float_inputs()
    assert g.train_sample(data.x_train[0], data.y_train[0]) == f.train_sample(xf[0], data.y_train[0])
    lsb = 2.0 ** -12
    for l in range(net.depth):
        assert np.abs(g.W[l] * lsb - f.W[l]).max() <= 2 * lsb
    assert np.abs(g.R * lsb - f.R).max() <= 2 * lsb


def test_one_epoch_agrees_with_float(digits):
    net, data = digits
    g, f = GoldenSigProp(net), FloatSigProp(net)
    xf, xtf = data.float_inputs()
    agree = 0
    for i in range(len(data.y_train)):
        c = int(data.y_train[i])
        agree += g.train_sample(data.x_train[i], c) == f.train_sample(xf[i], c)
    assert agree / len(data.y_train) >= 0.95
    for l in range(net.depth):
        assert np.linalg.norm(g.W[l] / 4096 - f.W[l]) / np.linalg.norm(f.W[l]) < 0.3
    assert np.mean(g.predict(data.x_test) == f.predict(xtf)) >= 0.95


def test_default_network_accuracy(digits):
    """examples/digits.yaml, seed 0, 20 epochs (the README's 3-seed figures come from bench/)."""
    net, data = digits
    rg, _ = train_sigprop("golden", net, data)
    rf, _ = train_sigprop("float", net, data)
    assert rg.test_accuracy >= 0.965 and rf.test_accuracy >= 0.965
    assert len(rg.curve) == 20 and rg.samples == 20 * len(data.y_train)


def test_deterministic():
    net, data = _net("dataset: {source: iris}\nnetwork: {layers: [6, 5]}\nprecision: {rounding: stochastic}\n")
    runs = []
    for _ in range(2):
        g = GoldenSigProp(net)
        preds = [g.train_sample(x, int(c)) for x, c in zip(data.x_train, data.y_train)]
        runs.append((preds, [w.copy() for w in g.W], g.R.copy(), g.lfsr[0].state))
    assert runs[0][0] == runs[1][0]
    assert all(np.array_equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))
    assert np.array_equal(runs[0][2], runs[1][2]) and runs[0][3] == runs[1][3]


def test_stochastic_rounding_changes_results_and_consumes_one_draw_per_entry():
    text = "dataset: {source: iris}\nnetwork: {layers: [6, 5]}\nprecision: {rounding: %s}\n"
    net_s, data = _net(text % "stochastic")
    net_n, _ = _net(text % "nearest")
    gs, gn = GoldenSigProp(net_s), GoldenSigProp(net_n)
    before = [l._pos + 0 for l in gs.lfsr]
    gs.train_sample(data.x_train[0], int(data.y_train[0]))
    gn.train_sample(data.x_train[0], int(data.y_train[0]))
    # layer 0: [W|b] is 6 x (4+1), then R rows c and m (6 each); layer 1: 5 x (6+1)
    assert gs.lfsr[0]._pos - before[0] == 6 * 5 + 2 * 6
    assert gs.lfsr[1]._pos - before[1] == 5 * 7
    for x, c in zip(data.x_train[1:40], data.y_train[1:40]):
        gs.train_sample(x, int(c))
        gn.train_sample(x, int(c))
    assert not np.array_equal(gs.W[0], gn.W[0])


def test_saturation_is_counted():
    # tiny weights and a huge learning rate drive the weights into the rails
    net, data = _net("dataset: {source: iris}\nnetwork: {layers: [4]}\nlearning: {lr_shift: 0}\n"
                     "precision: {weight: Q2.12, bias: Q2.12}\n")
    g = GoldenSigProp(net)
    for x, c in zip(data.x_train[:50], data.y_train[:50]):
        g.train_sample(x, int(c))
    assert g.counters["sat_weight_0"] > 0
    assert np.all(g.W[0] <= 2 ** 13 - 1) and np.all(g.W[0] >= -(2 ** 13))


@pytest.mark.parametrize("name", ["iris.yaml", "wine-l2.yaml", "breast-cancer-head.yaml"])
def test_examples_learn(name):
    net, data = _net(EXAMPLES / name)
    r, _ = train_sigprop("golden", net, data, epochs=5)
    chance = 1.0 / data.n_classes
    assert r.test_accuracy > chance + 0.3
