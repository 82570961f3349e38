"""The compiler: Verilog, RTLIL and manifest from a network file; Verilator lint of the result."""

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from sigprop_fpga.compile import compile_main, compile_network
from sigprop_fpga.compiler.spec import SpecError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
WAIVERS = ROOT / "hdl" / "verilator_waivers.vlt"


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    out = tmp_path_factory.mktemp("digits")
    t0 = time.monotonic()
    man = compile_network(EXAMPLES / "digits.yaml", out)
    return out, man, time.monotonic() - t0


def test_compile_writes_files_and_manifest(digits):
    out, man, seconds = digits
    assert seconds < 30
    v = (out / "digits.v").read_text()
    assert "module top(" in v and "endmodule" in v
    assert (out / "digits.il").read_text().startswith("attribute") or "module \\top" in (out / "digits.il").read_text()
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["name"] == "digits" and on_disk == json.loads(json.dumps(man))
    assert man["lanes"] == [4, 4] and sum(man["lanes"]) <= 8
    assert man["cycles_per_sample"] == max(s["cycles_per_sample"] for s in man["stages"])
    assert man["macs_per_sample"] == sum(s["macs_per_sample"] for s in man["stages"])
    names = {p["name"] for p in man["ports"]}
    dirs = {p["name"]: p["dir"] for p in man["ports"]}
    assert dirs["i__valid"] == "in" and dirs["i__ready"] == "out" and dirs["rb_addr"] == "in" and dirs["rb_data"] == "out"
    payload = next(p for p in man["ports"] if p["name"] == "i__payload")
    assert payload["fields"]["data"] == {"offset": 0, "width": 8} and payload["fields"]["train"]["offset"] == 8
    for p in ("i__valid", "i__ready", "i__payload", "o__valid", "o__ready", "o__payload", "rb_en", "rb_addr",
              "rb_data", "idle", "cycles", "samples", "inferences"):
        assert p in names, p
    regions = {(r["stage"], r["mem"]) for r in man["memory_map"]["regions"]}
    assert {(0, "W"), (0, "b"), (0, "T"), (0, "R"), (1, "W"), (1, "Tin")} <= regions
    assert "sat_table_0" in man["memory_map"]["counters"]["names"]
    assert man["readback_latency"] == 4                     # bank and memory muxes, stage mux, each registered
    # forward runs into the logits without a pipeline drain (cn = 8 >= DRAIN + 1)
    assert [s["phases"]["forward"] for s in man["stages"]] == [32 * 16, 2 * 32 * 8]


def test_verilator_lint_clean(digits):
    out, _, _ = digits
    try:
        from sigprop_fpga.toolchain import apply_verilator_env
        apply_verilator_env()
    except Exception as e:  # pragma: no cover - the toolchain is a project dependency
        pytest.skip(f"no Verilator: {e}")
    if shutil.which("verilator") is None:
        pytest.skip("no verilator on PATH")
    r = subprocess.run(["verilator", "--lint-only", "-Wall", str(WAIVERS), str(out / "digits.v"),
                        "--top-module", "top"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "%Warning" not in r.stderr and "%Error" not in r.stderr, r.stderr[:2000]


def test_bad_spec_is_one_line_spec_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: {source: iris}\nnetwork: {layers: [-3]}\n")
    with pytest.raises(SpecError) as e:
        compile_network(bad, tmp_path / "out")
    assert "\n" not in str(e.value) and "bad.yaml:2" in str(e.value)
    assert not (tmp_path / "out").exists()
    assert compile_main([str(bad), "-o", str(tmp_path / "out")]) == 2


def test_unbuildable_bias_format_refused_clearly(tmp_path):
    net = tmp_path / "fine_bias.yaml"
    net.write_text("dataset: {source: iris}\nnetwork: {layers: [{units: 4, precision: {bias: Q2.20}}]}\n")
    with pytest.raises(SpecError, match=r"network.layers\[0\].precision.bias: expected at most"):
        compile_network(net, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_compile_measure_records_cycles(tmp_path, capsys):
    """``--measure N`` simulates N samples: measured stage cycles equal the estimate, samples leave
    at the slowest stage's rate, and the run is bit exact against the golden model."""
    assert compile_main([str(EXAMPLES / "iris.yaml"), "-o", str(tmp_path), "--measure", "6"]) == 0
    man = json.loads((tmp_path / "manifest.json").read_text())
    ms = man["measured"]
    assert ms["bit_exact"] is True and ms["samples"] == 6
    assert ms["stage_cycles"] == [s["cycles_per_sample"] for s in man["stages"]]
    assert ms["cycles_between_samples"] == man["estimated_cycles_between_samples"] == man["cycles_per_sample"]
    assert ms["first_mismatch"] is None
    assert "cycles_between_samples" not in man and man["cycles_source"].startswith("estimate")
    out = capsys.readouterr().out
    assert "bit exact: True" in out and "cycles/sample (estimate)" in out
    assert compile_main([str(EXAMPLES / "iris.yaml"), "-o", str(tmp_path), "--measure", "-1"]) == 2


@pytest.mark.parametrize("signal, stage, index", [("Tin", 1, (0, 0)), ("R", 0, (1, 2)), ("head_W", 0, (1, 3))])
def test_measure_compares_every_memory(monkeypatch, signal, stage, index):
    """``--measure`` reports ``bit_exact`` from the comparison ``sim`` makes: a read-back state
    that differs in any memory (here ``Tin``, ``R`` and the head's weights, which it once skipped)
    is not bit exact, and the report names it."""
    import sigprop_fpga.compile as compile_mod
    from sigprop_fpga.hdl.engines import get_engine
    from sigprop_fpga.sim.datasets import load_network

    real = compile_mod.simulate

    def planted(*args, **kwargs):
        r = real(*args, **kwargs)
        st = r["state"]
        arr = st[signal][stage] if signal == "Tin" else st["R"] if signal == "R" else st["head"]["W"]
        arr[index] += 1
        return r

    monkeypatch.setattr(compile_mod, "simulate", planted)
    path = EXAMPLES / ("breast-cancer-head.yaml" if signal == "head_W" else "iris.yaml")
    spec, data, net = load_network(path)
    eng = get_engine("pipelined")
    ms = compile_mod.measure(net, data, eng, eng.lane_choices(net)[0], 3)
    assert ms["bit_exact"] is False
    mm = ms["first_mismatch"]
    assert (mm["stage"], mm["signal"], mm["index"]) == (stage, signal, list(index))
    assert mm["actual"] - mm["expected"] == 1
