"""``report``: a Markdown page with plots from a run folder, and saturation warnings."""

import json

import pytest

from sigprop_fpga.cli import main
from sigprop_fpga.report import make_report, saturation_warnings


def test_report_from_check_and_train(tmp_path, capsys):
    ex = "examples/iris.yaml"
    assert main(["check", ex, "--json", str(tmp_path / "check.json")]) == 0
    for model in ("float", "golden"):
        assert main(["train", ex, "--model", model, "--epochs", "2", "-q",
                     "--json", str(tmp_path / f"train-{model}.json")]) == 0
    assert main(["report", str(tmp_path)]) == 0
    md = (tmp_path / "report.md").read_text()
    assert md.startswith("# iris") and "## Accuracy" in md and "## Stages" in md and "## Saturation" in md
    golden = json.loads((tmp_path / "train-golden.json").read_text())
    assert f"{golden['test_accuracy']:.4f}" in md
    for png in ("accuracy.png", "stage_cycles.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_of_empty_folder_is_a_usage_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expected at least one of check.json" in err


def test_report_bad_json(tmp_path):
    (tmp_path / "sim.json").write_text("{not json")
    with pytest.raises(ValueError, match="sim.json: expected a JSON report"):
        make_report(tmp_path)


def test_saturation_warning_threshold():
    per = {"sat_weight_1": 100, "sat_error_0": 20}
    assert saturation_warnings({"sat_weight_1": 10, "sat_error_0": 2}, per, 10) == []   # exactly 1%: no warning
    w = saturation_warnings({"sat_weight_1": 11, "sat_error_0": 0}, per, 10)
    assert w == ["stage 1: weight saturated on 1.1% of its updates (11 of 1,000)"]
