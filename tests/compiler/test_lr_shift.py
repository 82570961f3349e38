"""``learning.lr_shift: auto``: a step per layer that follows its input's squared norm."""

import math

import pytest

from sigprop_fpga.compiler.network import Network
from sigprop_fpga.compiler.rule import step_shifts
from sigprop_fpga.compiler.spec import SpecError, parse_spec
from sigprop_fpga.sim.datasets import load_network


def _net(text, n_in=64, power=None):
    return Network(parse_spec(text), n_in, 10, power)


def test_auto_follows_the_input_norm_and_the_fan_in():
    net = _net("dataset: {source: digits}\nnetwork: {layers: [256, 32]}\n", 784, 493.0)
    assert net.spec.learning.lr_shift == "auto"
    assert [net.lr_shift(l) for l in range(2)] == [round(math.log2(493)), 8]
    assert _net("dataset: {source: digits}\n", 64).lr_shift(0) == 4          # no data: n_inputs / 4


def test_an_integer_is_every_layers_and_a_layer_can_override_it():
    net = _net("dataset: {source: digits}\nnetwork: {layers: [16, {units: 8, lr_shift: 3}]}\n"
               "learning: {lr_shift: 7}\n")
    assert [net.lr_shift(l) for l in range(2)] == [7, 3]
    k0, k1 = step_shifts(net, 0), step_shifts(net, 1)
    assert k0.weight - k1.weight == 4 and k0.bias - k1.bias == 4 and k1.table is None


def test_the_data_sets_the_first_layers_shift():
    spec, data, net = load_network("examples/iris.yaml")
    assert net.input_power is not None and net.input_power > 0
    assert net.auto_lr_shift(0) == min(16, max(0, round(math.log2(max(net.input_power, 1)))))


@pytest.mark.parametrize("value", ["fast", "7", -1, 17, 2.5])
def test_bad_lr_shift_is_one_line(value):
    with pytest.raises(SpecError, match="learning.lr_shift"):
        parse_spec(f"dataset: {{source: digits}}\nlearning: {{lr_shift: {value!r}}}\n".replace("'", '"'))
