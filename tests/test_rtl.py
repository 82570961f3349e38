"""The whole generated design in Verilator (through cocotb) against the golden model, bit for bit.

Networks that differ in depth (1-3 hidden layers), widths the lanes do not divide, both losses,
both rounding modes and both readouts; and a planted one-LSB difference the checker must catch.
"""

import pytest

from sigprop_fpga.rtl import simulate_rtl

NETWORKS = {
    "iris_q2_activation": """
name: iris_q2_activation
dataset: {source: iris}
network: {layers: [{units: 6, precision: {activation: Q2.6}}, 5]}
hardware: {lanes: [2, 3]}
""",
    "iris_weight_only": """
name: iris_weight_only
dataset: {source: iris}
network: {layers: [6, 5]}
precision: {weight: Q3.9}
hardware: {lanes: [2, 3]}
""",
    "iris_2layer_ce": """
name: iris_2layer_ce
dataset: {source: iris}
network: {layers: [6, 5]}
learning: {lr_shift: 5}
hardware: {lanes: [2, 3]}
""",
    "wine_1layer_l2": """
name: wine_1layer_l2
dataset: {source: wine}
network: {layers: [7]}
learning: {loss: l2, lr_shift: 6}
hardware: {lanes: 3}
""",
    "iris_3layer_head": """
name: iris_3layer_head
dataset: {source: iris}
network: {layers: [5, 4, 4], readout: head}
learning: {lr_shift: 5}
hardware: {lanes: [2, 3, 3]}
""",
    "iris_2layer_stochastic": """
name: iris_2layer_stochastic
dataset: {source: iris}
network: {layers: [6, 6]}
learning: {lr_shift: 7}
precision: {rounding: stochastic, weight: Q3.13}
hardware: {lanes: [4, 5]}
""",
    "cancer_1layer_head_stochastic": """
name: cancer_1layer_head_stochastic
dataset: {source: breast_cancer}
network: {layers: [9], readout: head}
learning: {lr_shift: 7, push: false}
precision: {rounding: stochastic}
hardware: {lanes: 4}
""",
}


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    # shared by the xdist workers: builds are keyed by content and locked
    return tmp_path_factory.getbasetemp().parent / "design-verilator-cache"


def _file(tmp_path, name):
    f = tmp_path / f"{name}.yaml"
    f.write_text(NETWORKS[name])
    return f


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_bit_exact(name, tmp_path, cache):
    r = simulate_rtl(_file(tmp_path, name), epochs=2, samples=60, check_every=15, build_root=cache, progress=False)
    assert r["first_mismatch"] is None, r["first_mismatch"]
    assert r["bit_exact"] is True and r["failed"] == 0
    assert r["samples"] == 120 and r["checks"] >= 2 * (60 // 15)
    assert r["test_accuracy"] == r["golden_test_accuracy"]
    assert r["cycles_per_sample"] == pytest.approx(r["estimated_cycles_per_sample"], abs=4)


def test_planted_difference_is_caught(tmp_path, cache):
    """A golden model altered by one LSB (weight [0, 0] of stage 0, after the first sample) must fail,
    and the report must name the stage, the signal, the index, the expected and the actual value."""
    r = simulate_rtl(_file(tmp_path, "iris_2layer_ce"), epochs=1, samples=20, check_every=1, build_root=cache,
                     progress=False, plant=(0, "W", 0, 0))
    mm = r["first_mismatch"]
    assert r["bit_exact"] is False and r["failed"] == 1
    assert mm["stage"] == 0 and mm["signal"] == "W" and mm["index"] == [0, 0]
    # found at the first full-state check: after the samples already in the pipeline drained
    assert mm["expected"] - mm["actual"] == 1 and 1 <= mm["sample"] <= 1 + 3
