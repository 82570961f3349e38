"""The command line: outputs, JSON reports, and one-line errors with exit code 2."""

import fnmatch
import json
import subprocess
import sys
from pathlib import Path

import pytest

from sigprop_fpga.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _run(*args):
    return subprocess.run([sys.executable, "-m", "sigprop_fpga", *args], capture_output=True, text=True)


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


@pytest.mark.parametrize("engine", ["float", "golden"])
def test_train_json(tmp_path, engine):
    out = tmp_path / "r.json"
    assert main(["train", str(EXAMPLES / "iris.yaml"), "--engine", engine, "--epochs", "2", "-q",
                 "--json", str(out)]) == 0
    d = json.loads(out.read_text())
    for key in ("engine", "rule", "test_accuracy", "train_accuracy", "epochs", "samples_per_second", "curve"):
        assert key in d
    assert d["engine"] == engine and d["rule"] == "sigprop" and d["epochs"] == 2 and len(d["curve"]) == 2
    assert d["samples_per_second"] > 0


@pytest.mark.parametrize("rule", ["bp", "fa", "dfa", "sigprop-batch"])
def test_train_baselines(tmp_path, rule):
    out = tmp_path / "r.json"
    assert main(["train", str(EXAMPLES / "iris.yaml"), "--engine", "float", "--rule", rule, "--epochs", "3",
                 "-q", "--json", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["rule"].startswith(rule.replace("-", "_")) or d["rule"] == rule
    assert len(d["curve"]) == 3 and 0 <= d["test_accuracy"] <= 1


@pytest.mark.parametrize("args,message", [
    (["train", "EX/iris.yaml", "--epochs", "0"],
     "sigprop-fpga train: error: argument --epochs: expected a positive integer, got 0"),
    (["train", "EX/iris.yaml", "--engine", "rtl"],
     "sigprop-fpga train: error: argument --engine: invalid choice: 'rtl' (choose from *float*, *golden*)"),
    (["train", "EX/iris.yaml", "--rule", "bp", "--engine", "golden"],
     "sigprop-fpga train: error: --rule bp runs on the float engine only (got --engine golden)"),
    (["check", "EX/nothere.yaml"], "sigprop-fpga check: EX/nothere.yaml: expected an existing network file, not found"),
    (["frobnicate"], None),
    ([], "sigprop-fpga: error: the following arguments are required: command"),
])
def test_cli_errors_one_line_exit_2(args, message):
    args = [a.replace("EX", str(EXAMPLES)) for a in args]
    r = _run(*args)
    assert r.returncode == 2
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    if message is not None:
        # '*' stands for the quotes that differ between Python versions' argparse
        assert fnmatch.fnmatchcase(lines[0], message.replace("EX", str(EXAMPLES)).replace("[", "[[]"))


def test_accumulator_narrower_than_a_dot_product_is_refused(tmp_path, capsys):
    f = tmp_path / "acc.yaml"
    f.write_text("dataset: {source: iris}\nprecision: {accumulator: 20}\n")
    assert main(["check", str(f)]) == 2
    assert capsys.readouterr().err == (f"sigprop-fpga check: {f}: layer 0 accumulator: expected at least 27 bits "
                                       "for 4 inputs (Q4.12 weights x Q1.7 inputs), got 20; use auto\n")
