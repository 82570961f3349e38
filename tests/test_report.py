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


def _sim_report(engine, lanes, hw_lanes, stage_cycles=None):
    r = {"name": "iris", "engine": engine, "lanes": lanes, "bit_exact": True, "samples": 105, "epochs": 1,
         "test_accuracy": 0.9, "train_accuracy_online": 0.8, "curve": [0.9], "cycles_per_sample": 134.0,
         "ideal_cycles_per_sample": 100.0, "mac_utilization": 0.75, "first_mismatch": None, "cycles": 20000,
         "sim_cycles_per_second": 1e6, "verilator_version": "5", "estimate": {"engine": engine, "lanes": hw_lanes}}
    if stage_cycles:
        r["stage_cycles"] = stage_cycles
    return r


def test_report_lanes_and_measured_stage_cycles(tmp_path, monkeypatch):
    """The serial engine's one array of 4 lanes reads "4 (one array)", not "4+4"; the stage table
    and chart put the RTL's measured cycles beside the estimates."""
    import sigprop_fpga.report as report
    assert main(["check", "examples/iris.yaml", "--json", str(tmp_path / "check.json")]) == 0
    est = json.loads((tmp_path / "check.json").read_text())["estimate"]["stages"]
    measured = [s["cycles"] + 1 for s in est]        # distinguishable from the estimate
    (tmp_path / "sim.json").write_text(json.dumps(_sim_report("pipelined", [2, 3, 3], [2, 3, 3], measured)))
    (tmp_path / "sim-serial.json").write_text(json.dumps(_sim_report("serial", [4, 4, 4], 4)))
    plotted = {}
    real = report._plot_stages

    def spy(d, stages, m):
        plotted["measured"] = m
        return real(d, stages, m)

    monkeypatch.setattr(report, "_plot_stages", spy)
    md = make_report(tmp_path).read_text()
    rows = [ln for ln in md.splitlines() if ln.startswith("| serial") or ln.startswith("| pipelined")]
    assert any("| 4 (one array) |" in ln for ln in rows if ln.startswith("| serial")), rows
    assert not any("4+4" in ln for ln in rows)
    assert any("| 2+3+3 |" in ln for ln in rows if ln.startswith("| pipelined"))
    assert plotted["measured"] == measured
    assert "measured (RTL) cycles/sample" in md
    stage_rows = [ln for ln in md.split("## Stages")[1].split("##")[0].splitlines() if ln.startswith("| 0")]
    assert stage_rows and stage_rows[0].rstrip(" |").endswith(str(measured[0]))
