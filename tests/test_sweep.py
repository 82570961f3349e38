"""``sigprop-fpga sweep``: grid points validated up front, the same results from the local pool and
Ray, a cache that resumes an interrupted sweep, one-line errors for bad sweep files, the plots."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sigprop_fpga.cli import main
from sigprop_fpga.sweep import (WALL_CLOCK_KEYS, SweepError, load_sweep, plot_results, run_sweep, step_key,
                                strip_wall_clock)
from sigprop_fpga.sweep import _pareto

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
IRIS = EXAMPLES / "iris.yaml"


def _sweep_file(tmp_path: Path, body: str, name: str = "sweep.yaml") -> Path:
    p = tmp_path / name
    p.write_text(body.replace("@IRIS@", str(IRIS)))
    return p


FOUR_POINTS = """\
base: @IRIS@
grid:
  learning.seed: [0, 1]
  hardware.lanes: [2, 4]
steps: [check, train]
options:
  train: {model: golden, epochs: 2}
"""


def _run(tmp_path, sweep, *extra, name="out"):
    js = tmp_path / f"{name}.json"
    rc = main(["sweep", str(sweep), "-q", "-o", str(tmp_path / name), "--json", str(js),
               "--cache", str(tmp_path / "cache"), *extra])
    return rc, json.loads(js.read_text()) if js.exists() else None


def test_local_and_ray_give_the_same_results(tmp_path, capsys):
    """4 points (learning.seed x hardware.lanes; check and train, --no-cache): the local pool and a
    local Ray instance give identical results apart from wall-clock fields; one row per point."""
    pytest.importorskip("ray")
    sweep = _sweep_file(tmp_path, FOUR_POINTS)
    rc, local = _run(tmp_path, sweep, "--no-cache", "-j", "2", name="local")
    assert rc == 0
    table = capsys.readouterr().out.splitlines()
    rows = [line for line in table if line[:1].isdigit() and "ok" in line]
    assert len(rows) == 4
    # a local Ray instance for the run: ray.init() took 4.8 s here, this sweep 13 s in all (the
    # local pool 8 s) on an idle 2-core machine; this test took 18 s lightly loaded, 78 s loaded 12-fold
    rc, ray = _run(tmp_path, sweep, "--no-cache", "--backend", "ray", "-j", "2", name="ray")
    assert rc == 0, capsys.readouterr().err
    assert "8 steps run, 0 from the cache" in capsys.readouterr().out
    assert [p["params"] for p in local["points"]] == [
        {"learning.seed": s, "hardware.lanes": n} for s in (0, 1) for n in (2, 4)]
    assert strip_wall_clock(local) == strip_wall_clock(ray)
    # what is compared: everything but the wall-clock fields, which do differ between runs
    assert local["points"][0]["train"]["seconds"] != ray["points"][0]["train"]["seconds"]
    assert {"seconds", "samples_per_second"} <= WALL_CLOCK_KEYS
    # the points differ where they should: seeds change training, lanes change the estimate
    p = local["points"]
    assert p[0]["train"]["curve"] != p[2]["train"]["curve"] and p[0]["train"]["curve"] == p[1]["train"]["curve"]
    assert p[0]["check"]["estimate"]["cycles_per_sample"] != p[1]["check"]["estimate"]["cycles_per_sample"]
    # one folder per point: its network file and each step's JSON
    d = tmp_path / "local" / "001-seed=0_lanes=4"
    assert "lanes: 4" in (d / "network.yaml").read_text()
    assert json.loads((d / "train.json").read_text()) == p[1]["train"]


def test_the_cache_skips_finished_steps_and_no_cache_reruns(tmp_path, capsys):
    sweep = _sweep_file(tmp_path, FOUR_POINTS)
    assert _run(tmp_path, sweep, "-j", "1")[0] == 0
    assert "8 steps run, 0 from the cache" in capsys.readouterr().out
    rc, again = _run(tmp_path, sweep, "-j", "1", name="again")
    assert rc == 0 and "0 steps run, 8 from the cache" in capsys.readouterr().out
    assert again["points"] == json.loads((tmp_path / "out.json").read_text())["points"]
    assert _run(tmp_path, sweep, "-j", "1", "--no-cache")[0] == 0
    assert "8 steps run, 0 from the cache" in capsys.readouterr().out
    # a changed step option is a new key; the unchanged check step still comes from the cache
    sweep.write_text(FOUR_POINTS.replace("@IRIS@", str(IRIS)).replace("epochs: 2", "epochs: 1"))
    assert _run(tmp_path, sweep, "-j", "1")[0] == 0
    assert "4 steps run, 4 from the cache" in capsys.readouterr().out


def test_step_key_covers_network_step_options_and_data():
    k = step_key("name: a\n", "train", {"epochs": 2})
    assert k == step_key("name: a\n", "train", {"epochs": 2})
    others = {step_key("name: b\n", "train", {"epochs": 2}), step_key("name: a\n", "check", {"epochs": 2}),
              step_key("name: a\n", "train", {"epochs": 3}),
              step_key("name: a\n", "train", {"epochs": 2}, {"/d.npz": "00"})}
    assert k not in others and len(others) == 4
    with pytest.raises(ValueError, match="step must be one of"):
        step_key("", "synthesize", {})


def test_interrupted_sweep_resumes_with_the_points_left(tmp_path):
    """Ctrl-C (SIGINT to the command) after some points finished: exit 130, no half-written
    result; started again, only the points that did not finish run."""
    sweep = _sweep_file(tmp_path, """\
base: @IRIS@
grid:
  learning.seed: [0, 1, 2, 3, 4, 5, 6, 7]
steps: [train]
options:
  train: {model: golden, epochs: 6}
""")
    cache = tmp_path / "cache"
    cmd = [sys.executable, "-m", "sigprop_fpga.cli", "sweep", str(sweep), "-q", "-j", "2", "--cache", str(cache),
           "-o", str(tmp_path / "out")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            # Python's Ctrl-C handler even when the tests run in the background
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not list(cache.glob("*/result.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "sigprop-fpga sweep: interrupted"
    finished = {p.parent.name: p.stat().st_mtime_ns for p in cache.glob("*/result.json")}
    assert 1 <= len(finished) < 8, "the signal came after every point had finished: nothing to resume"
    for p in cache.glob("*/result.json"):
        json.loads(p.read_text())          # whole results only
    assert not (tmp_path / "out" / "sweep.json").exists()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{8 - len(finished)} steps run, {len(finished)} from the cache" in done.stdout
    after = {p.parent.name: p.stat().st_mtime_ns for p in cache.glob("*/result.json")}
    assert len(after) == 8 and all(after[k] == v for k, v in finished.items())   # not run again


def test_a_failed_point_is_recorded_and_the_sweep_goes_on(tmp_path, capsys):
    sweep = _sweep_file(tmp_path, """\
base: @IRIS@
grid:
  train.rule: [sigprop, bp-adam]      # bp-adam runs in float only: with the golden model it fails
steps: [train]
options:
  train: {model: golden, epochs: 1}
""")
    rc, r = _run(tmp_path, sweep, "-j", "1")
    assert rc == 1
    ok, bad = r["points"]
    assert "error" not in ok and ok["train"]["test_accuracy"] > 0
    assert bad["error"] == {"step": "train", "type": "ValueError",
                            "message": "rule bp-adam runs on the float model only (got model golden)"}
    assert "train" not in bad
    assert "train failed: ValueError" in capsys.readouterr().out
    assert json.loads((tmp_path / "out" / "001-rule=bp-adam" / "error.json").read_text())["step"] == "train"
    # a failure is not cached: the next run tries it again
    rc, _ = _run(tmp_path, sweep, "-j", "1")
    assert rc == 1 and "1 steps run, 1 from the cache" in capsys.readouterr().out


BAD = {
    "unknown dotted key": ("grid:\n  learning.sead: [0, 1]\n",
                           ":3: point 0 (learning.sead=0): learning.sead: unknown key, expected one of"),
    "bad value": ("grid:\n  learning.seed: [0]\n  hardware.lanes: [2, 0]\n",
                  ":4: point 1 (learning.seed=0, hardware.lanes=0): hardware.lanes: expected an integer from 1"),
    "bad format": ("grid:\n  precision.weight: [Q4.12, Q40.1]\n",
                   "point 1 (precision.weight=Q40.1): precision.weight: expected a total width of 2 to 32 bits"),
    "through a value": ("grid:\n  board.x: [1]\n", ":3: grid.board.x: point 0 (board.x=1): board is a string in "
                                                   "iris.yaml, not a mapping"),
    "empty grid": ("grid: {}\n", ":2: grid: expected at least one dotted key with a list of values, got an "
                                 "empty grid"),
    "grid values not a list": ("grid:\n  learning.seed: 3\n", ":3: grid.learning.seed: expected a non-empty list"),
    "unknown step": ("grid:\n  learning.seed: [0]\nsteps: [check, synth]\n",
                     "steps: unknown step 'synth', expected one of: check, train, sim, build"),
    "unknown option": ("grid:\n  learning.seed: [0]\noptions:\n  train: {epoch: 3}\n",
                       ":5: options.train: unknown option 'epoch' of the train step, expected one of: model, "
                       "rule, epochs"),
    "bad option value": ("grid:\n  build.seed: [1, -2]\nsteps: [build]\n",
                         "grid.build.seed: build.seed: expected an integer of at least 0, got -2"),
    "option of a step not run": ("grid:\n  learning.seed: [0]\noptions:\n  sim: {samples: 3}\n",
                                 "options.sim: the sim step is not in steps"),
    "unknown top key": ("grid:\n  learning.seed: [0]\nstep: [train]\n", "step: unknown key, expected one of"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_sweep_files_are_one_line_and_exit_2(tmp_path, capsys, case):
    body, expected = BAD[case]
    if "steps:" not in body and "step:" not in body:
        body += "steps: [train]\n"
    sweep = _sweep_file(tmp_path, "base: @IRIS@\n" + body)
    assert main(["sweep", str(sweep), "-q", "--cache", str(tmp_path / "cache"), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"sigprop-fpga sweep: error: {sweep}") and expected in err, err
    assert not (tmp_path / "cache").exists() and not (tmp_path / "o").exists()   # nothing ran


@pytest.mark.parametrize("body, expected", [
    ("grid:\n  learning.seed: [0]\nsteps: [train]\n", ": base: required key is missing"),
    ("base: nowhere.yaml\ngrid:\n  learning.seed: [0]\nsteps: [train]\n",
     ":1: base: expected an existing network file"),
    ("base: @IRIS@\ngrid:\n  learning.seed: [0]\n", "steps: required key is missing"),
    ("- 1\n", "expected a mapping with base, grid and steps, got a list"),
    ("base: [\n", "expected YAML"),
])
def test_bad_sweep_file_structure(tmp_path, capsys, body, expected):
    sweep = _sweep_file(tmp_path, body)
    assert main(["sweep", str(sweep), "-q", "--cache", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(sweep) in err and expected in err, err
    with pytest.raises(SweepError):
        load_sweep(sweep)
    assert main(["sweep", str(tmp_path / "missing.yaml"), "-q"]) == 2
    assert "expected an existing sweep file, not found" in capsys.readouterr().err


def test_points_are_deterministic_yaml_and_validated(tmp_path):
    sweep = _sweep_file(tmp_path, FOUR_POINTS)
    a, b = load_sweep(sweep), load_sweep(sweep)
    assert [p.network for p in a.points] == [p.network for p in b.points]
    assert len(a.points) == 4 and a.points[3].params == {"learning.seed": 1, "hardware.lanes": 4}
    assert a.points[3].options == {"check": {}, "train": {"model": "golden", "epochs": 2}}
    with pytest.raises(TypeError, match="sweep must be a Sweep"):
        run_sweep("sweep.yaml")
    with pytest.raises(ValueError, match="backend must be one of local, ray"):
        run_sweep(a, backend="slurm")
    with pytest.raises(ValueError, match="jobs must be a positive integer"):
        run_sweep(a, jobs=0)


def test_pareto_front():
    pts = [(100, 0.9), (200, 0.95), (150, 0.85), (300, 0.95), (50, 0.5)]
    assert _pareto(pts, x_smaller_better=True) == [(50, 0.5), (100, 0.9), (200, 0.95)]
    assert _pareto(pts, x_smaller_better=False) == [(300, 0.95)]


def test_plots_from_build_results(tmp_path):
    """Accuracy against LUTs and samples/s per board, and fmax over seeds, from build records."""
    points = []
    for board in ("icebreaker", "ulx3s-85f"):
        for lanes in (2, 4):
            for seed in (1, 2):
                points.append({"params": {"board": board, "hardware.lanes": lanes, "build.seed": seed},
                               "train": {"test_accuracy": 0.8 + 0.01 * lanes},
                               "build": {"board": board, "fmax_mhz": 20.0 + seed + lanes,
                                         "train_samples_per_second": 1000.0 * lanes,
                                         "resources": {"lut": {"used": 1000 * lanes}}}})
    written = plot_results({"points": points}, tmp_path)
    assert [p.name for p in written] == ["sweep-accuracy-luts.png", "sweep-accuracy-throughput.png",
                                         "sweep-fmax-seeds.png"]
    assert all(p.stat().st_size > 5000 for p in written)
    assert plot_results({"points": [{"params": {}, "train": {"test_accuracy": 0.9}}]}, tmp_path / "none") == []


def test_points_that_share_a_step_share_its_run(tmp_path, capsys):
    """train.epochs does not change check: two points, one check run, both points hold its result."""
    sweep = _sweep_file(tmp_path, "base: @IRIS@\ngrid:\n  train.epochs: [1, 2]\nsteps: [check, train]\n")
    rc, r = _run(tmp_path, sweep, "-j", "2")
    assert rc == 0 and "3 steps run, 0 from the cache" in capsys.readouterr().out
    a, b = r["points"]
    assert a["check"] == b["check"] and (a["train"]["epochs"], b["train"]["epochs"]) == (1, 2)


def test_build_step_wiring_with_a_stand_in_build(tmp_path, capsys, monkeypatch):
    """The build step (place and route replaced by a stand-in, in this process): its folder under
    the cache's builds/, the bitstream copied into the point's folder, the plots written; a code
    change keeps the build folder, --no-cache empties it."""
    import sigprop_fpga.sweep as sweep_mod
    from sigprop_fpga.api import BuildResult

    calls = []

    def fake_build(self, board=None, out=None, seed=1, **kw):
        out = Path(out)
        calls.append((out, (out / "top.bin").exists()))
        out.mkdir(parents=True, exist_ok=True)
        (out / "top.bin").write_bytes(bytes([seed]) * 64)
        lanes = self.spec.hardware.lanes
        return BuildResult({"board": self.spec.board, "engine": "serial", "fmax_mhz": 20.0 + seed + lanes,
                                     "train_samples_per_second": 1000.0 * lanes, "bitstream": str(out / "top.bin"),
                                     "resources": {"lut": {"used": 1000 * lanes}}})

    monkeypatch.setattr(sweep_mod.Design, "build", fake_build)
    sweep = _sweep_file(tmp_path, "base: @IRIS@\ngrid:\n  hardware.lanes: [2, 4]\n  build.seed: [1, 2]\n"
                                  "steps: [train, build]\noptions:\n  train: {epochs: 1}\n")
    rc, r = _run(tmp_path, sweep, "-j", "1")
    assert rc == 0, capsys.readouterr().err
    assert "6 steps run" in capsys.readouterr().out          # 2 trains (seeds share them) + 4 builds
    assert all(out.parent == tmp_path / "cache" / "builds" and not existed for out, existed in calls)
    assert (tmp_path / "out" / "003-lanes=4_seed=2" / "top.bin").read_bytes() == bytes([2]) * 64
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == [
        "sweep-accuracy-luts.png", "sweep-accuracy-throughput.png", "sweep-fmax-seeds.png"]
    assert r["points"][3]["build"]["fmax_mhz"] == 26.0
    # a new code digest: new entries, the same build folders (the build's own stamp decides)
    calls.clear()
    monkeypatch.setattr(sweep_mod, "_code_digest", lambda: "changed")
    assert _run(tmp_path, sweep, "-j", "1")[0] == 0
    assert len(calls) == 4 and all(existed for _, existed in calls)
    calls.clear()
    assert _run(tmp_path, sweep, "-j", "1", "--no-cache")[0] == 0
    assert len(calls) == 4 and not any(existed for _, existed in calls)
