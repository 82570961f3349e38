"""The Python API: the README's example runs as written, a design loads from any folder, and the
engine ``compile`` emits is the one its manifest names."""

import json
import os
import re
from pathlib import Path

import pytest

import sigprop_fpga as sf

ROOT = Path(__file__).resolve().parents[1]


def test_readme_example_runs(monkeypatch, tmp_path, capsys):
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Python API\n.*?```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(ROOT)
    # the example writes under build/; keep the repository clean by sending build/ to tmp_path
    block = block.replace('"build/', f'"{tmp_path}/')
    exec(compile(block, "README.md (Python API)", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[1] == "serial"                       # iris on the iCEBreaker: the serial engine
    assert out[1].startswith("golden test accuracy ")
    assert out[2].split()[0] == "serial"
    assert (tmp_path / "api-example" / "flow" / "iris.v").is_file()
    man = json.loads((tmp_path / "api-example" / "serial" / "manifest.json").read_text())
    assert man["engine"] == "serial" and man["lanes"] == 4


def test_load_from_another_folder(monkeypatch, tmp_path):
    """A network file whose data set is a relative .npz loads the same from any working folder."""
    import numpy as np

    rng = np.random.default_rng(0)
    folder = tmp_path / "project"
    (folder / "data").mkdir(parents=True)
    x, y = rng.uniform(0, 1, (60, 5)), np.arange(60) % 3
    np.savez(folder / "data" / "toy.npz", x_train=x[:45], y_train=y[:45], x_test=x[45:], y_test=y[45:])
    (folder / "net.yaml").write_text("name: toy\ndataset: {source: data/toy.npz}\nnetwork: {layers: [6]}\n")
    monkeypatch.chdir(folder)
    here = sf.load("net.yaml").check().to_json()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    there = sf.load(folder / "net.yaml").check().to_json()
    assert here["estimate"] == there["estimate"] and (here["n_train"], there["n_inputs"]) == (45, 5)
    d = sf.load(os.path.relpath(ROOT / "examples" / "digits.yaml", elsewhere))
    assert d.check().cycles_per_sample == 1565


@pytest.mark.parametrize("engine,cycles", [("serial", 3021), ("pipelined", 1565)])
def test_compile_engine_named_in_the_manifest(tmp_path, engine, cycles):
    r = sf.load(ROOT / "examples" / "digits.yaml").compile(tmp_path, engine=engine)
    man = json.loads((tmp_path / "manifest.json").read_text())
    assert man["engine"] == r.engine == engine and man["cycles_per_sample"] == cycles
    assert man["readback_latency"] == man["memory_map"]["latency"]
    assert (tmp_path / r.files["verilog"]).stat().st_size > 0


def test_train_rejects_a_hardware_engine_name():
    d = sf.load(ROOT / "examples" / "iris.yaml")
    with pytest.raises(ValueError, match="model must be one of float, golden"):
        d.train(model="pipelined")
