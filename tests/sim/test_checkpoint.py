"""Checkpoints (sim/checkpoint.py): training split by a save and a load equals training in one go,
bit for bit, for the golden and the float model; a file that does not fit is refused in one line."""

import dataclasses
import json
import zipfile

import numpy as np
import pytest

from sigprop_fpga.cli import main
from sigprop_fpga.compiler.network import lfsr_seed
from sigprop_fpga.sim import checkpoint as ckm
from sigprop_fpga.sim.datasets import load_network
from sigprop_fpga.sim.train import train_sigprop

NEAREST = """
name: ck_nearest
dataset: {source: iris}
network: {layers: [6, 5]}
learning: {lr_shift: 5}
hardware: {lanes: [2, 3]}
"""
STOCHASTIC_HEAD = """
name: ck_stochastic_head
dataset: {source: iris}
network: {layers: [6, 5], readout: head}
learning: {lr_shift: 7}
precision: {rounding: stochastic, weight: Q3.13}
hardware: {lanes: [2, 3]}
"""
OTHER_WIDTHS = NEAREST.replace("[6, 5]", "[6, 4]").replace("ck_nearest", "ck_other")


def _net(tmp_path, text, name="net.yaml", samples=30):
    f = tmp_path / name
    f.write_text(text)
    spec, data, net = load_network(f)
    data = dataclasses.replace(data, x_train=data.x_train[:samples], y_train=data.y_train[:samples])
    return f, data, net


def _arrays(state: dict) -> dict:
    out = {}
    for k in ("W", "b", "T", "Tin"):
        for l, a in enumerate(state[k]):
            if a is not None:
                out[f"{k}{l}"] = np.asarray(a)
    out["R"] = np.asarray(state["R"])
    if state.get("head") is not None:
        out["head_W"], out["head_b"] = np.asarray(state["head"]["W"]), np.asarray(state["head"]["b"])
    return out


def _assert_equal_states(a: dict, b: dict):
    aa, bb = _arrays(a), _arrays(b)
    assert aa.keys() == bb.keys()
    for k in aa:
        assert aa[k].dtype == bb[k].dtype and np.array_equal(aa[k], bb[k]), k


@pytest.mark.parametrize("text", [NEAREST, STOCHASTIC_HEAD], ids=["nearest", "stochastic_head"])
def test_golden_split_by_checkpoint_equals_one_run(text, tmp_path):
    """4 epochs in one go == 1 epoch, save, load, 3 epochs: every array, the LFSR positions and
    the summed counters."""
    _, data, net = _net(tmp_path, text)
    _, whole = train_sigprop("golden", net, data, 4)
    _, first = train_sigprop("golden", net, data, 1)
    path = ckm.save(tmp_path / "k1.npz", ckm.from_model(net, first, samples=len(data.y_train), epochs=1))
    prior = ckm.load(path, net)
    _, rest = train_sigprop("golden", net, data, 3, init=prior)
    _assert_equal_states(whole.state(), rest.state())
    assert rest.lfsr_states() == whole.lfsr_states()
    final = ckm.from_model(net, rest, prior=prior, samples=3 * len(data.y_train), epochs=3)
    assert final.meta["counters"] == {k: int(v) for k, v in whole.counters.items()}
    assert final.samples_seen == 4 * len(data.y_train)
    assert [h["epochs"] for h in final.meta["history"]] == [1, 3]
    # the file round-trips the final state too
    again = ckm.load(ckm.save(tmp_path / "k4.npz", final), net)
    _assert_equal_states(again.raw, whole.state())
    assert again.lfsr == whole.lfsr_states()


def test_stochastic_rounding_needs_the_lfsr_positions(tmp_path):
    """Without the LFSR positions (the LFSRs back at their seeds) the stochastic model diverges:
    the positions are state, and the test above would catch a checkpoint that lost them."""
    _, data, net = _net(tmp_path, STOCHASTIC_HEAD)
    _, whole = train_sigprop("golden", net, data, 2)
    _, first = train_sigprop("golden", net, data, 1)
    ck = ckm.from_model(net, first, samples=len(data.y_train), epochs=1)
    seeds = [lfsr_seed(net.spec.precision.lfsr_seed, u) for u in range(net.depth + 1)]
    assert ck.lfsr != seeds
    _, rest = train_sigprop("golden", net, data, 1, init=dataclasses.replace(ck, lfsr=None))
    assert any(not np.array_equal(a, b) for a, b in zip(rest.W, whole.W))


def test_float_split_by_checkpoint_equals_one_run(tmp_path):
    _, data, net = _net(tmp_path, STOCHASTIC_HEAD)
    _, whole = train_sigprop("float", net, data, 3)
    _, first = train_sigprop("float", net, data, 1)
    path = ckm.save(tmp_path / "f.npz", ckm.from_model(net, first, samples=len(data.y_train), epochs=1))
    ck = ckm.load(path, net)
    assert ck.lfsr is None and ck.meta["model"] == "float"
    _, rest = train_sigprop("float", net, data, 2, init=ck)
    _assert_equal_states(whole.state(), rest.state())
    # its raw integers are the reals rounded to each format; the golden model starts from them
    q = ckm.array_formats(net)["W0"]
    assert np.array_equal(ck.raw["W"][0], np.clip(np.rint(ck.real["W"][0] * q.scale), q.min_int, q.max_int))
    g = ckm.golden_model(net, ck)
    assert np.array_equal(g.W[0], ck.raw["W"][0]) and g.counters["samples"] == 0


def test_golden_checkpoint_reals_are_raw_over_scale(tmp_path):
    _, data, net = _net(tmp_path, NEAREST)
    _, g = train_sigprop("golden", net, data, 1)
    ck = ckm.load(ckm.save(tmp_path / "g.npz", ckm.from_model(net, g, samples=30, epochs=1)), net)
    for name, q in ckm.array_formats(net).items():
        with np.load(tmp_path / "g.npz") as z:
            assert z[f"raw_{name}"].dtype == np.int64 and z[name].dtype == np.float64
            assert np.array_equal(z[name], z[f"raw_{name}"] / q.scale), name
    # the float model continues from the same values in real units
    m = ckm.float_model(net, ck)
    assert np.array_equal(m.W[1], g.W[1] / ckm.array_formats(net)["W1"].scale)
    meta = ck.meta
    assert meta["format"] == ckm.FORMAT and meta["version"] == ckm.VERSION and meta["model"] == "golden"
    assert meta["network"]["name"] == "ck_nearest" and len(meta["network"]["sha256"]) == 64
    assert meta["fingerprint"]["layer widths"] == [6, 5] and meta["seed"] == net.spec.learning.seed


def _rewrite(src, dst, **changes):
    """Copy the checkpoint ``src`` to ``dst`` with some arrays replaced (or removed: ``None``)."""
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    for k, v in changes.items():
        if v is None:
            arrays.pop(k)
        else:
            arrays[k] = v
    np.savez(dst, **arrays)
    return dst


@pytest.fixture
def saved(tmp_path):
    f, data, net = _net(tmp_path, NEAREST)
    _, g = train_sigprop("golden", net, data, 1)
    return ckm.save(tmp_path / "good.npz", ckm.from_model(net, g, samples=30, epochs=1)), net


def _refusal(path, net) -> str:
    with pytest.raises(ckm.CheckpointError) as e:
        ckm.load(path, net)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(path))
    return msg


def test_refusals_name_the_file_and_what_differs(saved, tmp_path):
    good, net = saved
    _, _, other = _net(tmp_path, OTHER_WIDTHS, "other.yaml")
    msg = _refusal(good, other)
    assert "'ck_nearest'" in msg and "layer widths [6, 5]" in msg and "has [6, 4]" in msg
    assert "no such file" in _refusal(tmp_path / "absent.npz", net)
    (tmp_path / "text.npz").write_text("not a zip")
    assert "numpy.load" in _refusal(tmp_path / "text.npz", net)
    np.savez(tmp_path / "data.npz", x_train=np.zeros((2, 2)))
    assert "meta" in _refusal(tmp_path / "data.npz", net)
    with np.load(good) as z:
        meta = json.loads(str(z["meta"][()]))
        w0 = z["raw_W0"].copy()
    newer = _rewrite(good, tmp_path / "newer.npz", meta=np.array(json.dumps({**meta, "version": 99})))
    assert "layout 1, got 99" in _refusal(newer, net)
    w0[1, 2] += 1
    edited = _rewrite(good, tmp_path / "edited.npz", raw_W0=w0)
    assert "raw_W0" in _refusal(edited, net) and "[1, 2]" in _refusal(edited, net)
    big = np.full_like(w0, 1 << 20)
    assert "raw_W0: expected integers of Q" in _refusal(_rewrite(good, tmp_path / "big.npz", raw_W0=big), net)
    assert "T1: array is missing" in _refusal(_rewrite(good, tmp_path / "noT.npz", T1=None), net)
    assert "shape" in _refusal(_rewrite(good, tmp_path / "shape.npz", R=np.zeros((2, 2))), net)
    assert "non-zero" in _refusal(_rewrite(good, tmp_path / "lfsr0.npz", lfsr=np.zeros(3, dtype=np.int64)), net)


def test_save_is_atomic_and_overwrites(saved, tmp_path):
    good, net = saved
    ck = ckm.load(good, net)
    out = tmp_path / "sub" / "ck.npz"
    ckm.save(out, ck)
    ckm.save(out, ck)
    assert zipfile.is_zipfile(out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["ck.npz"]


def test_cli_train_save_and_init(tmp_path, capsys):
    f, _, _ = _net(tmp_path, NEAREST)
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    assert main(["train", str(f), "--epochs", "1", "-q", "--save-weights", str(a)]) == 0
    assert main(["train", str(f), "--epochs", "1", "-q", "--model", "float", "--init-weights", str(a),
                 "--save-weights", str(b)]) == 0
    assert "saved weights" in capsys.readouterr().out
    ck = ckm.load(b, load_network(f)[2])
    assert [h["model"] for h in ck.meta["history"]] == ["golden", "float"]
    other = tmp_path / "other.yaml"
    other.write_text(OTHER_WIDTHS)
    capsys.readouterr()
    assert main(["train", str(other), "--epochs", "1", "-q", "--init-weights", str(a)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(a) in err and "layer widths" in err
    assert main(["train", str(f), "--rule", "bp", "--model", "float", "-q", "--save-weights", str(b)]) == 2
    assert "rule bp" in capsys.readouterr().err


def test_hardware_without_lfsr_writes_refuses_moved_lfsrs(tmp_path):
    """A board's LFSRs restart at their seeds: a stochastic checkpoint whose LFSRs moved is refused
    for it (one line), a nearest-rounding one or one still at the seeds is accepted."""
    _, data, net = _net(tmp_path, STOCHASTIC_HEAD)
    fresh = ckm.from_model(net, train_sigprop("golden", net, data, 1)[1].__class__(net))
    ckm.check_lfsr_at_seeds(net, fresh, "fresh.npz")
    moved = ckm.from_model(net, train_sigprop("golden", net, data, 1)[1], samples=30)
    with pytest.raises(ckm.CheckpointError, match=r"^moved.npz: lfsr: .*after 30 training samples"):
        ckm.check_lfsr_at_seeds(net, moved, "moved.npz")
    _, data, net = _net(tmp_path, NEAREST, "nearest.yaml")
    ckm.check_lfsr_at_seeds(net, ckm.from_model(net, train_sigprop("golden", net, data, 1)[1]), "n.npz")
