"""The DFA and backprop datapaths (hdl/dfa.py, hdl/backprop.py) in Verilator against their golden
models (GoldenRule), bit for bit: every prediction, the whole state every K samples, the cycles
between samples."""

import pytest

from sigprop_fpga.rtl import simulate_rtl

NETWORKS = {
    # widths the lanes do not divide, three hidden layers, a 4-input layer on 3 lanes
    "iris_dfa": """
name: iris_dfa
dataset: {source: iris}
network: {layers: [7, 5, 4]}
learning: {lr_shift: 4}
hardware: {lanes: 3}
""",
    # narrow formats: under bp weights and errors saturate, so the counters are compared for real
    # (measured: dfa's smaller feedback keeps this network inside its ranges)
    "wine_dfa_saturating": """
name: wine_dfa_saturating
dataset: {source: wine}
network: {layers: [{units: 9, precision: {error: Q2.6}}, 6]}
learning: {lr_shift: 1}
precision: {weight: Q2.6, bias: Q2.6, activation: Q2.6}
hardware: {lanes: 4}
""",
}


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    return tmp_path_factory.getbasetemp().parent / "design-verilator-cache"


def _file(tmp_path, name):
    f = tmp_path / f"{name}.yaml"
    f.write_text(NETWORKS[name])
    return f


def _check(r, samples, epochs, every, rule="dfa"):
    assert r["first_mismatch"] is None, r["first_mismatch"]
    assert r["bit_exact"] is True and r["failed"] == 0 and r["rule"] == rule and r["engine"] == rule
    assert r["samples"] == samples * epochs and r["checks"] >= epochs * (samples // every)
    assert r["test_accuracy"] == r["golden_test_accuracy"]
    # every gap between two training predictions but those after a readback equals the cycle model
    t, marks = r["train_prediction_cycles"], set(r["check_marks"])
    clean = [t[i + 1] - t[i] for i in range(len(t) - 1) if i + 1 not in marks]
    assert len(clean) > samples // 2
    assert set(clean) == {r["estimated_cycles_per_sample"]}, sorted(set(clean))
    assert r["sample_cycles"] == r["estimated_cycles_per_sample"]


@pytest.mark.parametrize("rule", ["dfa", "bp", "fa"])
def test_bit_exact_iris(rule, tmp_path, cache):
    r = simulate_rtl(_file(tmp_path, "iris_dfa"), epochs=2, samples=60, check_every=15, build_root=cache,
                     progress=False, rule=rule)
    _check(r, 60, 2, 15, rule)


def test_dfa_planted_difference_is_caught(tmp_path, cache):
    """One LSB planted in the golden model's layer-1 weight [2, 3] after the first sample: the first
    full-state check names it (the same build as the test above). The check comes once the samples
    already streamed have drained: the one training and the one loaded in the input's other half."""
    r = simulate_rtl(_file(tmp_path, "iris_dfa"), epochs=2, samples=60, check_every=1, build_root=cache,
                     progress=False, rule="dfa", plant=(1, "W", 2, 3))
    mm = r["first_mismatch"]
    assert r["bit_exact"] is False and r["failed"] == 1
    assert mm["stage"] == 1 and mm["signal"] == "W" and mm["index"] == [2, 3] and 1 <= mm["sample"] <= 3
    assert abs(mm["expected"] - mm["actual"]) == 1


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["dfa", "bp", "fa"])
def test_bit_exact_saturating(rule, tmp_path, cache):
    r = simulate_rtl(_file(tmp_path, "wine_dfa_saturating"), epochs=2, samples=80, check_every=20,
                     build_root=cache, progress=False, rule=rule)
    _check(r, 80, 2, 20, rule)
    if rule == "bp":
        sat = {k: v for k, v in r["rtl_counters"].items() if k.startswith("sat_")}
        assert sat["sat_weight_0"] > 0 and sat["sat_error_0"] > 0, sat


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_dfa_bit_exact_from_random_power_up(seed, tmp_path, cache):
    r = simulate_rtl(_file(tmp_path, "iris_dfa"), epochs=1, samples=40, check_every=10, build_root=cache,
                     progress=False, rule="dfa", x_seed=seed)
    assert r["first_mismatch"] is None and r["bit_exact"] is True and r["x_seed"] == seed
