"""Learning rules side by side on one network: SigProp, backprop (bp), feedback alignment (fa) and
direct feedback alignment (dfa), each as golden model and float reference, and as a datapath
(SigProp: the pipelined and the serial engine; dfa, bp and fa: their engines).

Per rule: test accuracy (golden, bit exact with the RTL; float beside it; mean over seeds), cycles
per training sample (the engines' exact cycle models, which the Verilator benches confirm sample
by sample), memory bits by kind (weights, stored activations, feedback matrices, caches and
buffers); with ``--synth`` the engine alone synthesized by the family's Yosys flow (LUT, FF, DSP,
BRAM cells; no placement, no clock); with ``--build`` the whole board top (engine, on-chip
dataset, host link) placed and routed for each board as ``sigprop-fpga build NET --board B
--rule R --engine E`` makes it (``hardware.clock_mhz: max``: the clock search), cached per
network, rule and board by the build's own stamp in ``build/<name>-<board>[-<rule>]`` (a re-run
builds nothing): built clock, fmax, LUT/FF/DSP/BRAM as nextpnr reports them, the lanes the build
chose and samples/s at the built clock; a rule that does not fit a board gets the fit check's
numbers instead. Samples per joule: the open toolchain has no power model (nextpnr reports none,
and neither board's documentation gives one for a design), so none is given.

    .venv/bin/python bench/rules.py [examples/digits.yaml] [--seeds 0 1 2] [--lanes 8] \
        [--synth ecp5 ice40] [--build ulx3s-85f icebreaker] \
        [--json build/bench/rules.json] [--png build/bench/rules.png]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import sys
from pathlib import Path

from amaranth.back import rtlil

from sigprop_fpga.compiler.estimate import allocate_lanes
from sigprop_fpga.compiler.network import Network
from sigprop_fpga.compiler.rule import RULE_NAMES
from sigprop_fpga.compiler.spec import load_spec
from sigprop_fpga.compiler.statemap import stage_memories
from sigprop_fpga.hdl.engines import get_engine
from sigprop_fpga.io import format_table, write_json
from sigprop_fpga.rtl import TOP, synthesize_netlist
from sigprop_fpga.sim.datasets import input_power, load_dataset
from sigprop_fpga.sim.train import train_sigprop

#: (row label, rule, engine name or None)
ROWS = [("sigprop, pipelined engine", "sigprop", "pipelined"), ("sigprop, serial engine", "sigprop", "serial"),
        ("dfa, dfa engine", "dfa", "dfa"), ("bp, bp engine", "bp", "bp"), ("fa, fa engine", "fa", "fa")]

#: Netlist cells counted per family: (LUTs, flip-flops, DSP, block RAM) cell-name prefixes.
CELLS = {"ecp5": {"lut": ("LUT4",), "carry": ("CCU2C",), "ff": ("TRELLIS_FF",), "dsp": ("MULT18X18D",),
                  "bram": ("DP16KD",), "lutram": ("TRELLIS_DPR16X4",)},
         "ice40": {"lut": ("SB_LUT4",), "carry": ("SB_CARRY",), "ff": ("SB_DFF",), "dsp": ("SB_MAC16",),
                   "bram": ("SB_RAM40_4K",), "lutram": ()}}
BOARD_OF = {"ecp5": "ulx3s-85f", "ice40": "icebreaker"}


def memory_bits(net: Network, rule: str, engine: str | None, lanes) -> dict:
    """Bits the datapath keeps, by kind, as the state the rule needs (no padding to lanes):
    ``weights`` (everything learned), ``stored_activations`` (kept from the forward pass for a
    later learning step), ``feedback`` (fixed random matrices), ``caches_buffers`` (SigProp's
    class-target caches and input double buffers; the dfa engine's input double buffer and its
    deltas); ``physical`` is what the engine's memories hold, padded to lanes."""
    L, C = net.depth, net.n_classes
    if rule == "sigprop":
        w = c = 0
        for l in range(L):
            for name, (_, _, q, _, shape) in stage_memories(net, l, 1).items():
                bits = math.prod(shape) * q.width
                if name in ("T", "Tin"):
                    c += bits
                else:
                    w += bits
        c += sum(2 * (1 if l == 0 else 2) * net.fan_in(l) * net.in_format(l).width for l in range(L))
        out = {"weights": w, "stored_activations": 0, "feedback": 0, "caches_buffers": c}
    elif rule in ("dfa", "bp", "fa"):
        w = sum(net.units(l) * (net.fan_in(l) * net.prec(l).weight.width + net.prec(l).bias.width) for l in range(L))
        last = net.prec(L - 1)
        w += C * (net.units(L - 1) * last.weight.width + last.bias.width)
        stored = sum(net.fan_in(l) * net.in_format(l).width for l in range(L)) + net.units(L - 1) * last.activation.width
        fb = {"dfa": sum(C * net.units(l) for l in range(L)), "bp": 0,
              "fa": sum((C if l == L - 1 else net.units(l + 1)) * net.units(l) for l in range(L))}[rule]
        deltas = (2 if L > 1 else 1) * max(net.units(l) * net.prec(l).error.width for l in range(L))
        buf = net.n_inputs * net.spec.precision.input.width + deltas
        out = {"weights": w, "stored_activations": stored, "feedback": fb, "caches_buffers": buf}
    else:
        raise ValueError(f"unknown rule {rule!r}")
    out["physical"] = sum(d * wd for d, wd in get_engine(engine).memories(net, lanes)) if engine else None
    return out


def synth_cells(net: Network, engine: str, lanes, family: str) -> dict:
    """The engine alone (its ports as the top's), mapped by ``family``'s Yosys flow; cell counts."""
    eng = get_engine(engine)
    text = rtlil.convert(eng.component(net, lanes), name=TOP, emit_src=False)
    nl = synthesize_netlist(text, family, progress=True)
    out = {}
    for kind, prefixes in CELLS[family].items():
        out[kind] = sum(n for cell, n in nl.cells.items() if any(cell.startswith(p) for p in prefixes))
    out["synth_seconds"] = nl.synth_seconds
    return out


def board_build(network: str, rule: str, engine: str, board: str) -> dict:
    """The board top of ``rule`` on ``engine`` for ``board``, built (or found up to date) as
    ``sigprop-fpga build`` builds it; a design that does not fit gives the fit check's problems."""
    from sigprop_fpga.boards.build import BuildError
    from sigprop_fpga.boards.fit import FitError
    from sigprop_fpga.boards.flow import build_network

    try:
        r = build_network(network, board, rule=rule, engine=engine,
                          progress=lambda line: print(f"build {board} {rule}/{engine}: {line}", file=sys.stderr,
                                                      flush=True))
    except FitError as e:
        return {"built": False, "problems": e.problems}
    except BuildError as e:
        return {"built": False, "problems": [" ".join(str(e).split())[:300]]}
    res = r["resources"]
    search = r.get("clock_search") or {}
    return {"built": True, "engine": r["engine"], "lanes": r["lanes"], "built_clock_mhz": r["clock_mhz"]["achieved"],
            "fmax_mhz": r.get("fmax_mhz"), "timing_met": r.get("timing_met"),
            **{k: res.get(k, {}).get("used") for k in ("lut", "ff", "dsp", "bram")},
            "lut_estimated": res.get("lut", {}).get("estimated"),
            "cycles_per_sample": r["cycles_per_sample"], "samples_per_second": r["train_samples_per_second"],
            "dataset_on_chip": r["dataset_on_chip"], "bitstream_sha256": r["bitstream_sha256"],
            "clock_attempts": [(a["clock_mhz"], a["fmax_mhz"], a["timing_met"]) for a in search.get("attempts", [])],
            "out_dir": r["out_dir"], "skipped": r.get("skipped")}


def reference_build(network: str, rule: str, engine: str, board: str, folder: str) -> dict:
    """A finished build of the same network file, engine and board made elsewhere (``folder``,
    e.g. ``make demo``'s on a fresh clone): its report's clock, fmax and resources, the lanes and
    cycles the build plan gives; refused unless its stamp names this network text and engine."""
    import json

    from sigprop_fpga.boards.flow import prepare_network

    folder = Path(folder)
    stamp = json.loads((folder / "build.json").read_text())
    rep = json.loads((folder / "report.json").read_text())
    extra = stamp["meta"]["extra"]
    if extra.get("network") != Path(network).read_text() or extra.get("engine") != engine \
            or stamp["meta"]["board"] != board:
        raise SystemExit(f"{folder}: not a build of {network} on the {engine} engine for {board}")
    d = prepare_network(network, board, rule=rule, engine=engine)
    cyc = d.plan.cycles(d.net).per_sample
    built = rep["clock_mhz"]["achieved"]
    res = rep["resources"]
    return {"built": True, "source": str(folder), "engine": engine, "lanes": d.plan.lanes_json,
            "built_clock_mhz": built, "fmax_mhz": rep.get("fmax_mhz"), "timing_met": rep.get("timing_met"),
            **{k: res.get(k, {}).get("used") for k in ("lut", "ff", "dsp", "bram")},
            "lut_estimated": res.get("lut", {}).get("estimated"), "cycles_per_sample": cyc,
            "samples_per_second": built * 1e6 / cyc, "bitstream_sha256": rep["bitstream_sha256"],
            "clock_attempts": [(a["clock_mhz"], a["fmax_mhz"], a["timing_met"])
                               for a in (rep.get("clock_search") or {}).get("attempts", [])],
            "out_dir": str(folder), "tools": stamp["meta"]["tools"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("network", nargs="?", default="examples/digits.yaml")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--lanes", type=int, default=8, help="lanes of the serial and dfa engines (default 8)")
    ap.add_argument("--synth", nargs="*", default=[], choices=sorted(CELLS), help="families to synthesize for")
    ap.add_argument("--build", nargs="*", default=[], choices=sorted(BOARD_OF.values()),
                    help="boards to place and route every rule's board top for (minutes a build; cached)")
    ap.add_argument("--reference", nargs="*", default=[], metavar="ENGINE:BOARD=DIR",
                    help="take that row's placed build from a finished build folder of the same network "
                         "file made elsewhere (e.g. make demo's), instead of building it here")
    ap.add_argument("--skip", nargs="*", default=[], metavar="ENGINE:BOARD",
                    help="leave that row's placed build out (recorded as not built, with the reason)")
    ap.add_argument("--json", default="build/bench/rules.json")
    ap.add_argument("--png", default="build/bench/rules.png")
    args = ap.parse_args(argv)
    refs = {}
    for item in args.reference:
        key, sep, folder = item.partition("=")
        engine, colon, board = key.partition(":")
        if not sep or not colon or board not in args.build:
            ap.error(f"--reference {item}: expected ENGINE:BOARD=DIR with BOARD one of --build")
        refs[(engine, board)] = folder
    spec0 = load_spec(args.network)
    acc = {}
    for seed in args.seeds:
        spec = dataclasses.replace(spec0, learning=dataclasses.replace(spec0.learning, seed=seed))
        data = load_dataset(spec)
        net = Network(spec, data.n_inputs, data.n_classes, input_power(data))
        for rule in RULE_NAMES:
            for kind in ("float", "golden"):
                r, _ = train_sigprop(kind, net, data, rule=rule)
                acc.setdefault((rule, kind), []).append(r.test_accuracy)
                print(f"seed {seed} {rule} {kind}: {r.test_accuracy:.4f}", file=sys.stderr)
    data = load_dataset(spec0)
    net = Network(spec0, data.n_inputs, data.n_classes, input_power(data))
    pipe_lanes = allocate_lanes(net)
    rows = []
    for label, rule, engine in ROWS:
        lanes = pipe_lanes if engine in ("pipelined", None) else args.lanes
        row = {"label": label, "rule": rule, "engine": engine,
               "lanes": list(lanes) if isinstance(lanes, tuple) else lanes,
               "test_accuracy_golden": statistics.mean(acc[(rule, "golden")]),
               "test_accuracy_float": statistics.mean(acc[(rule, "float")]),
               "test_accuracy_golden_per_seed": acc[(rule, "golden")]}
        cyc = get_engine(engine).cycles(net, lanes)
        row.update(cycles_per_sample=cyc.per_sample, cycles_source="exact cycle model (Verilator-checked)",
                   multipliers=get_engine(engine).dsp(net, lanes))
        row["memory_bits"] = memory_bits(net, rule, engine, lanes)
        row["samples_per_joule"] = None
        row["synth"] = {}
        for fam in args.synth:
            try:
                row["synth"][fam] = synth_cells(net, engine, lanes, fam)
            except Exception as e:          # a failed synthesis is a result to report, not a crash
                row["synth"][fam] = {"error": " ".join(str(e).split())[:300]}
        row["builds"] = {}
        for board in args.build:
            if f"{engine}:{board}" in args.skip:
                row["builds"][board] = {"built": False, "problems": ["not built in this run (--skip)"]}
            elif (engine, board) in refs:
                row["builds"][board] = reference_build(args.network, rule, engine, board, refs[(engine, board)])
            else:
                row["builds"][board] = board_build(args.network, rule, engine, board)
        rows.append(row)
    table = [[r["label"], r["test_accuracy_golden"], r["test_accuracy_float"], r["cycles_per_sample"],
              r["memory_bits"]["weights"], r["memory_bits"]["stored_activations"], r["memory_bits"]["feedback"],
              r["memory_bits"]["caches_buffers"]] + [r["synth"].get(f, {}).get(k) for f in args.synth
                                                     for k in ("lut", "ff", "dsp", "bram")] for r in rows]
    head = ["rule / datapath", "golden acc", "float acc", "cycles/sample", "weight bits", "stored act bits",
            "feedback bits", "cache+buffer bits"] + [f"{f} {k}" for f in args.synth for k in ("LUT", "FF", "DSP", "BRAM")]
    print(f"{spec0.name}: {spec0.widths}, {spec0.learning.epochs} epochs, seeds {args.seeds}, "
          f"pipelined lanes {list(pipe_lanes)}, serial/dfa/bp/fa lanes {args.lanes}")
    print(format_table(head, table))
    if args.build:
        print(format_table(["rule / datapath", "board", "lanes", "built MHz", "fmax", "LUT", "FF", "DSP", "BRAM",
                            "cycles/sample", "samples/s (built clock)"], build_table(rows, args.build)))
    write_json(args.json, {"network": spec0.name, "file": args.network, "seeds": args.seeds,
                           "widths": list(spec0.widths), "epochs": spec0.learning.epochs,
                           "power_model": None,
                           "power_model_note": "no power model in the open toolchain (nextpnr, icestorm, "
                                               "trellis): samples per joule not given",
                           "rows": rows})
    _plot(rows, args.png, spec0.name)


def build_table(rows, boards) -> list[list]:
    """One line per rule and board: the placed build's figures, or why there is none."""
    out = []
    for r in rows:
        for board in boards:
            b = r["builds"][board]
            if b["built"]:
                out.append([r["label"], board, b["lanes"], b["built_clock_mhz"], round(b["fmax_mhz"], 2), b["lut"],
                            b["ff"], b["dsp"], b["bram"], b["cycles_per_sample"], round(b["samples_per_second"])])
            else:
                out.append([r["label"], board, "", "", "", "", "", "", "", "", "not built: " + "; ".join(b["problems"])])
    return out


def _plot(rows, path, name):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r["label"] for r in rows]
    boards = sorted({b for r in rows for b in r.get("builds", {})})
    fig, ax = plt.subplots(1, 3 + len(boards), figsize=(15 + 4 * len(boards), 4.5))
    ax[0].barh(labels, [r["test_accuracy_golden"] for r in rows], color="tab:blue", label="golden")
    ax[0].scatter([r["test_accuracy_float"] for r in rows], labels, color="k", zorder=3, label="float")
    ax[0].set_xlim(min(r["test_accuracy_float"] for r in rows) - 0.05, 1.0)
    ax[0].set_title("test accuracy")
    ax[0].legend(loc="lower left")
    ax[1].barh(labels, [r["cycles_per_sample"] for r in rows], color="tab:green")
    ax[1].set_title("cycles per training sample (bench lanes)")
    left = [0] * len(rows)
    for kind, col in (("weights", "tab:blue"), ("stored_activations", "tab:red"), ("feedback", "tab:orange"),
                      ("caches_buffers", "tab:purple")):
        v = [r["memory_bits"][kind] / 1000 for r in rows]
        ax[2].barh(labels, v, left=left, color=col, label=kind.replace("_", " "))
        left = [a + b for a, b in zip(left, v)]
    ax[2].set_title("memory (kbit)")
    ax[2].legend(loc="lower right", fontsize=8)
    for i, board in enumerate(boards):
        b = [r["builds"][board] for r in rows]
        v = [x["samples_per_second"] if x["built"] else 0 for x in b]
        ax[3 + i].barh(labels, v, color="tab:cyan")
        for y, x in enumerate(b):
            ax[3 + i].text(v[y], y, f" {x['built_clock_mhz']:g} MHz" if x["built"] else " not built", va="center",
                           fontsize=8)
        ax[3 + i].set_xlim(0, max(v + [1]) * 1.4)
        ax[3 + i].set_title(f"{board}: training samples/s at the built clock")
    for a in ax[1:]:
        a.set_yticklabels([])
    fig.suptitle(f"{name}: learning rules on the same network")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(path).with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)


if __name__ == "__main__":
    main()
