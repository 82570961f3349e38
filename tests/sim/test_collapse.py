"""Collapse detection: a run at chance, or one class taking the predictions, is named in one line."""

import numpy as np
import pytest

from sigprop_fpga.cli import main
from sigprop_fpga.sim.collapse import collapse_check


def test_collapse_check_rules():
    y = np.arange(100) % 4
    assert not collapse_check(y, y, 4)["collapsed"]
    one = collapse_check(np.zeros(100, dtype=int), y, 4)
    assert one["collapsed"] and one["top_class"] == 0 and one["top_share"] == 1.0
    assert "collapsed" in one["warning"] and "tune" in one["warning"]
    chance = collapse_check((y + 1) % 4, y, 4)          # spread over the classes, always wrong
    assert chance["collapsed"] and "within 0.02 of chance" in chance["warning"]
    # a data set of one dominant class: predicting it is not learning, a run above that share is
    skew = np.array([0] * 95 + [1] * 5)
    assert collapse_check(np.zeros(100, dtype=int), skew, 2)["collapsed"]
    assert not collapse_check(skew, skew, 2)["collapsed"]
    with pytest.raises(ValueError, match="as many predictions as labels"):
        collapse_check([0, 1], [0], 2)


def test_train_warns_on_a_collapsed_run_and_not_on_the_default(tmp_path, capsys):
    bad = tmp_path / "collapse.yaml"
    bad.write_text("dataset: {source: digits}\nlearning: {lr_shift: 0, epochs: 2}\n")
    assert main(["train", str(bad), "--model", "golden", "-q", "--json", str(tmp_path / "bad.json")]) == 0
    err = capsys.readouterr().err
    assert err.count("collapsed") == 1 and "sigprop-fpga tune" in err
    assert '"collapsed": true' in (tmp_path / "bad.json").read_text()
    good = tmp_path / "default.yaml"
    good.write_text("dataset: {source: digits}\nlearning: {epochs: 2}\n")
    assert main(["train", str(good), "--model", "golden", "-q"]) == 0
    assert "collapsed" not in capsys.readouterr().err
