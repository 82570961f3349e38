"""The command line: outputs and JSON reports. Its one-line errors with exit code 2 are the
corpus in tests/corpus/ (tests/test_corpus.py)."""

import json
from pathlib import Path

import pytest

from sigprop_fpga.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_check_json(tmp_path, capsys):
    out = tmp_path / "check.json"
    assert main(["check", str(EXAMPLES / "digits.yaml"), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "MACs per training sample" in text and "64->32" in text
    d = json.loads(out.read_text())
    assert d["n_inputs"] == 64 and d["n_classes"] == 10 and d["widths"] == [32, 32]
    est = d["estimate"]
    assert est["total_lanes"] == 8 and est["cycles_per_sample"] == max(s["cycles"] for s in est["stages"])
    assert d["spec"]["layers"][0]["precision"]["weight"] == "Q4.12"
    # what build would make for the file's board (the iCEBreaker: the serial engine)
    plan = d["board_plan"]
    assert plan["board"] == "icebreaker" and plan["fits"] and plan["engine"] == "serial"
    assert plan["estimate"]["dsp"] == plan["lanes"] and plan["estimate"]["bram"] <= 30
    assert f"board icebreaker: the pipelined engine does not fit: serial engine, {plan['lanes']} lanes" in text


def test_check_for_another_board(tmp_path, capsys):
    """``check --board`` plans for that board instead of the network file's; an unknown board
    is a one-line usage error (exit code 2)."""
    out = tmp_path / "check.json"
    assert main(["check", str(EXAMPLES / "digits.yaml"), "--board", "ulx3s-85f", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    plan = json.loads(out.read_text())["board_plan"]
    assert plan["board"] == "ulx3s-85f" and plan["fits"] and plan["engine"] == "pipelined"
    assert "board ulx3s-85f: " in text and "board icebreaker" not in text
    with pytest.raises(SystemExit) as e:
        main(["check", str(EXAMPLES / "digits.yaml"), "--board", "nexys"])
    assert e.value.code == 2 and "--board: expected one of icebreaker, ulx3s-85f, got 'nexys'" in capsys.readouterr().err


def test_serial_engine_refusals_are_one_line(capsys):
    """The serial engine refuses what it does not support with one line and exit code 2."""
    assert main(["sim", str(EXAMPLES / "breast-cancer-head.yaml"), "--engine", "serial", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "breast-cancer-head.yaml" in err and "readout nearest_target only, not 'head'" in err
    assert main(["sim", str(EXAMPLES / "digits.yaml"), "--lanes", "2", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "lanes is set by the network file" in err
    assert main(["build", str(EXAMPLES / "digits.yaml"), "--board", "ulx3s-85f", "--engine", "serial", "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no LUT model for the ecp5 family" in err



@pytest.mark.parametrize("model", ["float", "golden"])
def test_train_json(tmp_path, model):
    out = tmp_path / "r.json"
    assert main(["train", str(EXAMPLES / "iris.yaml"), "--model", model, "--epochs", "2", "-q",
                 "--json", str(out)]) == 0
    d = json.loads(out.read_text())
    for key in ("model", "rule", "test_accuracy", "train_accuracy", "epochs", "samples_per_second", "curve"):
        assert key in d
    assert d["model"] == model and d["rule"] == "sigprop" and d["epochs"] == 2 and len(d["curve"]) == 2
    assert d["samples_per_second"] > 0


@pytest.mark.parametrize("rule,model", [("bp", "golden"), ("fa", "float"), ("dfa", "golden"),
                                        ("sigprop-batch", "float"), ("bp-adam", "float")])
def test_train_baselines(tmp_path, rule, model):
    out = tmp_path / "r.json"
    assert main(["train", str(EXAMPLES / "iris.yaml"), "--model", model, "--rule", rule, "--epochs", "3",
                 "-q", "--json", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["rule"] == rule and d["model"] == model
    assert len(d["curve"]) == 3 and 0 <= d["test_accuracy"] <= 1


def test_sim_table_labels_the_estimate():
    """The golden model has no cycles: the estimate sits on a row of its own, labelled as one, and
    the RTL's cycles are labelled measured."""
    from sigprop_fpga.cli import sim_table
    r = {"engine": "pipelined", "test_accuracy": 0.9, "golden_test_accuracy": 0.9, "cycles_per_sample": 1561.0,
         "ideal_cycles_per_sample": 1400.0, "mac_utilization": 1400 / 1561, "estimated_cycles_per_sample": 1560}
    lines = sim_table(r).splitlines()
    rows = {ln.split("  ")[0].strip(): ln for ln in lines[2:]}
    assert set(rows) == {"RTL (Verilator, pipelined)", "golden model", "cycle model"}
    assert "1,561" in rows["RTL (Verilator, pipelined)"] and "measured" in rows["RTL (Verilator, pipelined)"]
    assert "1,560" in rows["cycle model"] and "estimate" in rows["cycle model"]
    assert "1,56" not in rows["golden model"] and "estimate" not in rows["golden model"]
