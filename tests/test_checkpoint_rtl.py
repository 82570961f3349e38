"""Checkpoints through the RTL: ``sim --save-weights`` writes the state read back from Verilator,
``sim --init-weights`` writes it in through the state port, and the golden model started from the
same file continues bit exact with the RTL (and with an uninterrupted run)."""

import dataclasses

import numpy as np
import pytest

from sigprop_fpga.cli import main
from sigprop_fpga.compiler.network import lfsr_seed
from sigprop_fpga.rtl import simulate_rtl
from sigprop_fpga.sim import checkpoint as ckm
from sigprop_fpga.sim.datasets import load_network
from sigprop_fpga.sim.train import train_sigprop

# the same text (so the same Verilog and the same cached build) as tests/test_rtl.py's networks
NETWORKS = {
    "iris_2layer_ce": """
name: iris_2layer_ce
dataset: {source: iris}
network: {layers: [6, 5]}
learning: {lr_shift: 5}
hardware: {lanes: [2, 3]}
""",
    "iris_2layer_stochastic": """
name: iris_2layer_stochastic
dataset: {source: iris}
network: {layers: [6, 6]}
learning: {lr_shift: 7}
precision: {rounding: stochastic, weight: Q3.13}
hardware: {lanes: [4, 5]}
""",
}
SAMPLES, EPOCHS = 60, 2


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    return tmp_path_factory.getbasetemp().parent / "design-verilator-cache"


def _flat(ck):
    out = {f"{k}{l}": a for k in ("W", "b", "T", "Tin") for l, a in enumerate(ck.raw[k]) if a is not None}
    out["R"] = ck.raw["R"]
    return out


def _assert_same(a, b):
    fa, fb = _flat(a), _flat(b)
    assert fa.keys() == fb.keys()
    for k in fa:
        assert np.array_equal(fa[k], fb[k]), k
    assert a.lfsr == b.lfsr


# the stochastic network's second run elaborates its LFSRs at the checkpoint's positions: a second
# Verilator build (about 100 s on a loaded machine), so it runs with `make test-slow`
@pytest.mark.parametrize("name", ["iris_2layer_ce",
                                  pytest.param("iris_2layer_stochastic", marks=pytest.mark.slow)])
def test_sim_checkpoint_continues_bit_exact(name, tmp_path, cache):
    f = tmp_path / f"{name}.yaml"
    f.write_text(NETWORKS[name])
    spec, data, net = load_network(f)
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    r1 = simulate_rtl(f, epochs=EPOCHS, samples=SAMPLES, build_root=cache, progress=False, save_weights=a)
    assert r1["bit_exact"] is True and r1["saved_weights"] == str(a)
    ck_a = ckm.load(a, net)
    assert ck_a.meta["model"] == "rtl" and ck_a.samples_seen == EPOCHS * SAMPLES
    assert ck_a.meta["counters"]["samples"] == EPOCHS * SAMPLES          # the RTL's own counter
    if spec.precision.rounding == "stochastic":      # the LFSRs moved: the second run must set them
        assert ck_a.lfsr[:net.depth] != [lfsr_seed(spec.precision.lfsr_seed, u) for u in range(net.depth)]
    r2 = simulate_rtl(f, epochs=EPOCHS, samples=SAMPLES, build_root=cache, progress=False, init_weights=a,
                      save_weights=b)
    assert r2["first_mismatch"] is None, r2["first_mismatch"]
    assert r2["bit_exact"] is True and r2["checkpoint_writes"] > 0 and r2["samples_seen"] == 2 * EPOCHS * SAMPLES
    ck_b = ckm.load(b, net)
    # the golden model from the RTL's checkpoint over the same samples == the RTL from it
    part = dataclasses.replace(data, x_train=data.x_train[:SAMPLES], y_train=data.y_train[:SAMPLES])
    _, g = train_sigprop("golden", net, part, EPOCHS, init=ck_a)
    _assert_same(ckm.from_model(net, g), ck_b)
    # ... == one uninterrupted run of both halves
    _, whole = train_sigprop("golden", net, part, 2 * EPOCHS)
    _assert_same(ckm.from_model(net, whole), ck_b)
    assert ck_b.meta["counters"]["samples"] == whole.counters["samples"]
    assert ck_b.meta["counters"]["sat_weight_0"] == whole.counters["sat_weight_0"]
    if spec.precision.rounding != "stochastic":
        # a run that is not bit exact (a golden weight planted one LSB off) saves nothing
        c = tmp_path / "c.npz"
        r3 = simulate_rtl(f, epochs=EPOCHS, samples=SAMPLES, build_root=cache, progress=False, init_weights=a,
                          save_weights=c, plant=(0, "W", 0, 0))
        assert r3["bit_exact"] is False and r3["saved_weights"] is None and not c.exists()


def test_sim_refuses_another_networks_checkpoint_before_building(tmp_path, capsys):
    f = tmp_path / "net.yaml"
    f.write_text(NETWORKS["iris_2layer_ce"])
    other = tmp_path / "other.yaml"
    other.write_text(NETWORKS["iris_2layer_stochastic"])
    _, data, net = load_network(other)
    _, g = train_sigprop("golden", net, data, 1)
    ck = ckm.save(tmp_path / "other.npz", ckm.from_model(net, g))
    assert main(["sim", str(f), "--samples", "5", "-q", "--init-weights", str(ck)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(ck) in err and "'iris_2layer_stochastic'" in err
