"""``tune``: a grid scored on a validation split carved from the training split."""

import numpy as np

from sigprop_fpga.cli import main
from sigprop_fpga.sim.datasets import load_network
from sigprop_fpga.sim.tune import _validation_split, default_grid, tune


def test_validation_split_is_carved_from_the_training_split():
    spec, data, net = load_network("examples/iris.yaml")
    fit = _validation_split(data, 0)
    assert len(fit.y_train) + len(fit.y_test) == len(data.y_train)
    assert set(np.unique(fit.y_test)) == set(np.unique(data.y_train))       # stratified
    rows = {tuple(r) for r in data.x_train.tolist()}
    assert all(tuple(r) in rows for r in fit.x_test.tolist())               # never the test split


def test_tune_grid_best_and_lines(tmp_path, capsys):
    spec, data, net = load_network("examples/iris.yaml")
    grid = default_grid(net)
    assert grid["lr_shift"][0] == "auto" and "unit" not in grid["scaling"]
    r = tune(spec, net, model="golden", epochs=2, grid={"lr_shift": ["auto", 3], "logit_shift": [2],
                                                         "scaling": ["minmax"]}, jobs=2)
    assert len(r["points"]) == 2 and r["best"] in r["points"]
    assert 0 <= r["test"]["best"] <= 1 and r["yaml"][1].startswith("learning: {lr_shift: ")
    net_file = tmp_path / "iris.yaml"
    net_file.write_text("dataset: {source: iris}\nnetwork: {layers: [6]}\nlearning: {epochs: 2}\n")
    assert main(["tune", str(net_file), "--epochs", "1", "-j", "2", "-q", "--json", str(tmp_path / "t.json")]) == 0
    out = capsys.readouterr().out
    assert "best on the validation split" in out and "put in the network file:" in out
    assert (tmp_path / "t.json").is_file()
