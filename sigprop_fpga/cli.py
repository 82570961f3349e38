"""``sigprop-fpga``: the command line.

Every user error (bad network file, bad dataset, bad argument) is one line on stderr and exit
code 2; a missing tool is exit code 1.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from .api import MODELS, RULES, load
from .boards.build import BuildError, format_report
from .boards.fit import FitError
from .boards import board_names
from .boards.flow import engine_choices
from .boards.run import DEFAULT_BAUD, RunError, RunUsageError
from .compiler.spec import SpecError
from .hdl.engines import ENGINES, EngineUnsupported
from .io import format_table, write_json
from .program import ProgramError, ProgramUsageError, program
from .report import load_builds, make_report, saturation_warnings
from .rtl import NETLIST_FAMILIES, NetlistError
from .sim.verilator import VerilatorError
from .sweep import BACKENDS, SweepError, load_sweep, results_table, run_sweep, write_results
from .toolchain import doctor_main

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # one line, exit 2 (argparse's default prints the whole usage first)
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)

    def _check_value(self, action, value):
        # the same words on every Python version (their argparse quotes the choices differently)
        if action.choices is not None and value not in action.choices:
            raise argparse.ArgumentError(action, f"expected one of {', '.join(map(str, action.choices))}, got {value!r}")


class UsageError(Exception):
    """A bad command-line value discovered after parsing; exit 2 with one line."""


def _int_at_least(low: int, what: str):
    """An argparse type: an integer ``>= low``, with a one-line message naming ``what``."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"expected a {what} integer, got {v}")
        return v

    return parse


_positive_int = _int_at_least(1, "positive")
_nonnegative_int = _int_at_least(0, "non-negative")


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not 0 < v < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return v


def _nonnegative_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text!r}") from None
    if not 0 <= v < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text}")
    return v


def _writable(text: str, folder: bool) -> str:
    """An output path that can be written, checked before any work is done."""
    path = Path(text)
    if folder and path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"expected a folder to write into, {text} is a file")
    if not folder and path.is_dir():
        raise argparse.ArgumentTypeError(f"expected a file to write, {text} is a folder")
    parent = path if folder else path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"expected a path in a writable folder, {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"expected a path in a writable folder, {parent} is not writable")
    return text


def _out_file(text: str) -> str:
    return _writable(text, folder=False)


def _out_dir(text: str) -> str:
    return _writable(text, folder=True)


# ---------------------------------------------------------------------------------------------


def cmd_check(args) -> int:
    d = load(args.network)
    r = d.check(board=args.board).to_json()
    spec, net, e = d.spec, d.net, r["estimate"]
    rows = []
    for s in e["stages"]:
        p = net.prec(s["index"])
        rows.append([s["index"], f"{s['n_in']}->{s['units']}", str(net.in_format(s["index"])), str(p.weight),
                     str(p.activation), net.lr_shift(s["index"]), s["acc_width"], s["lanes"], s["macs"],
                     s["weight_bits"] + s["cache_bits"] + s["table_bits"], s["cycles"]])
    print(f"{spec.name}: {r['dataset']}, {r['n_inputs']} inputs, {r['n_classes']} classes, "
          f"{r['n_train']} train / {r['n_test']} test samples; loss {spec.learning.loss}, "
          f"readout {spec.readout}, rounding {spec.precision.rounding}, board {r['board_plan']['board']}")
    print(format_table(["stage", "widths", "input", "weight", "act", "lr_shift", "acc bits", "lanes", "MACs/sample",
                        "memory bits", "cycles/sample"], rows))
    print(f"MACs per training sample {e['macs_per_sample']:,} (inference {e['inference_macs_per_sample']:,}); "
          f"cycles per sample {e['cycles_per_sample']:,} pipelined, {e['sequential_cycles']:,} sequential; "
          f"ideal {e['ideal_cycles_per_sample']:,.0f} on {e['total_lanes']} lanes; "
          + (f"{e['train_samples_per_second']:,.0f} samples/s at {e['clock_mhz']:g} MHz" if e["clock_mhz"]
             else "samples/s at the clock `build` finds (clock_mhz: max)"))
    print(_board_plan_text(r["board_plan"]))
    if args.json:
        write_json(args.json, r)
    return 0


def _board_plan_text(b: dict) -> str:
    """What ``build`` would make for the board: one line."""
    if not b["fits"]:
        return f"board {b['board']}: does not fit: " + "; ".join(b["problems"])
    use = ", ".join(f"{k} {v:,}/{b['available'][k]:,}" for k, v in b["estimate"].items())
    return (f"board {b['board']}: {b['why']}; {b['cycles_per_sample']:,} cycles per training sample "
            f"(MAC utilization {b['mac_utilization']:.3f}); estimate {use}; "
            f"{b['samples_on_chip']['train']} training + {b['samples_on_chip']['test']} test samples stored on chip")


def cmd_train(args) -> int:
    d = load(args.network)
    try:
        out = d.train(model=args.model, rule=args.rule, epochs=args.epochs, progress=not args.quiet,
                      init_weights=args.init_weights, save_weights=args.save_weights).to_json()
    except ValueError as e:
        raise UsageError(str(e)) from None
    if out.get("counters"):
        for w in saturation_warnings(out["counters"], out.get("updates_per_sample"), out["samples"]):
            print(f"sigprop-fpga train: warning: {w}", file=sys.stderr)
    if out.get("collapse_warning"):
        print(f"sigprop-fpga train: warning: {out['collapse_warning']}", file=sys.stderr)
    print(format_table(["model", "rule", "epochs", "train acc", "test acc", "samples/s"],
                       [[out["model"], out["rule"], out["epochs"], out["train_accuracy"], out["test_accuracy"],
                         out["samples_per_second"]]]))
    if out.get("saved_weights"):
        print(f"saved weights: {out['saved_weights']} ({out['samples_seen']:,} training samples since the "
              f"seeded initial weights)")
    if args.json:
        write_json(args.json, out)
    return 0


def cmd_tune(args) -> int:
    d = load(args.network)
    r = d.tune(model=args.model, epochs=args.epochs, jobs=args.jobs, progress=not args.quiet).to_json()
    rows = sorted(r["points"], key=lambda p: -p["accuracy"])
    print(format_table(["lr_shift", "per layer", "logit_shift", "scaling", "validation acc", "collapsed"],
                       [[p["lr_shift"], " ".join(map(str, p["lr_shifts"])), p["logit_shift"], p["scaling"],
                         p["accuracy"], "yes" if p["collapsed"] else ""] for p in rows]))
    b, t = r["best"], r["test"]
    print(f"best on the validation split ({r['validation_fraction']:.0%} of the training split, {r['epochs']} epochs, "
          f"{r['model']}): lr_shift {b['lr_shift']}, logit_shift {b['logit_shift']}, scaling {b['scaling']}; "
          f"test accuracy after {t['epochs']} epochs {t['best']:.4f} (the file's settings: {t['file']:.4f})")
    print("put in the network file:\n  " + "\n  ".join(r["yaml"]))
    if args.json:
        write_json(args.json, r)
    return 0


def cmd_compile(args) -> int:
    out = Path(args.out) if args.out else Path("build") / Path(args.network).stem
    man = load(args.network).compile(out, engine=args.engine).to_json()
    print(f"wrote {out / man['files']['verilog']}, {out / man['files']['rtlil']}, {out / 'manifest.json'}")
    per = man.get("stages") or man.get("layers")
    print(f"{man['engine']} engine ({man['engine_choice']}), lanes {man['lanes']}; cycles per sample "
          f"{man['cycles_per_sample']:,} ({'stages' if 'stages' in man else 'layers'} "
          f"{[s['cycles_per_sample'] for s in per]}); {man['macs_per_sample']:,} MACs per sample; "
          f"compiled in {man['compile_seconds']:.1f} s")
    return 0


def sim_table(r: dict) -> str:
    """The ``sim`` summary table of a :func:`..rtl.simulate_rtl` report: the RTL's measured
    cycles, the golden model's accuracy (it has no cycles), and the cycle model's estimate on a
    row of its own, labelled as one."""
    est = r.get("estimated_cycles_per_sample")
    ideal = r.get("ideal_cycles_per_sample")
    rows = [[f"RTL (Verilator, {r['engine']})", r.get("test_accuracy"), r.get("cycles_per_sample"), "measured",
             ideal, r.get("mac_utilization")],
            ["golden model", r.get("golden_test_accuracy"), "", "", "", ""],
            ["cycle model", "", est, "estimate", ideal, ideal / est if ideal and est else None]]
    return format_table(["model", "test accuracy", "cycles/sample", "cycles from", "ideal", "MAC utilization"],
                        [[c if c is not None else "" for c in row] for row in rows])


#: ``sim --rule``: the rules some registered engine builds.
SIM_RULES = tuple(dict.fromkeys(e.rule for e in ENGINES.values()))


def cmd_sim(args) -> int:
    d = load(args.network)
    try:
        r = d.simulate(engine=args.engine, lanes=args.lanes, epochs=args.epochs, samples=args.samples,
                       check_every=args.check_every, waves=args.waves, progress=not args.quiet,
                       netlist=args.netlist, init_weights=args.init_weights,
                       save_weights=args.save_weights, rule=args.rule).to_json()
    except (VerilatorError, NetlistError) as e:
        raise UsageError(" ".join(str(e).split())[:400]) from None
    except EngineUnsupported as e:
        engine = args.engine if args.rule == "sigprop" else args.rule
        raise UsageError(f"{args.network}: the {engine} engine cannot build this network: {e}") from None
    except ValueError as e:
        if isinstance(e, SpecError):
            raise
        raise UsageError(f"{args.network}: {e}") from None
    mm = r.get("first_mismatch")
    print(sim_table(r))
    if r.get("netlist"):
        print(f"simulated: the {r['netlist']} netlist ({sum(r['netlist_cells'].values()):,} cells: "
              + ", ".join(f"{n} {c:,}" for c, n in sorted(((c, n) for n, c in r["netlist_cells"].items()),
                                                          reverse=True))
              + f"), synthesized in {r['synth_seconds']:.1f} s{' (cached)' if r['synth_cached'] else ''}")
    if mm:
        print("MISMATCH: " + ", ".join(f"{k} {v}" for k, v in mm.items()), file=sys.stderr)
        if args.save_weights:
            print(f"sigprop-fpga sim: {args.save_weights} not written: the run was not bit exact", file=sys.stderr)
    else:
        print(f"bit exact: {r['bit_exact']} ({r['samples']:,} training samples, {r['checks']} full-state checks, "
              f"every prediction compared); {r['cycles']:,} cycles simulated at "
              f"{r['sim_cycles_per_second']:,.0f} cycles/s; Verilator {r['verilator_version']}")
        if args.waves:
            print(f"waves: {args.waves}")
        if r.get("saved_weights"):
            print(f"saved weights: {r['saved_weights']} (the RTL's state read back; {r['samples_seen']:,} training "
                  f"samples since the seeded initial weights)")
    if r.get("counters"):
        for w in saturation_warnings(r["counters"], r.get("updates_per_sample"), r.get("samples", 0)):
            print(f"sigprop-fpga sim: warning: {w}", file=sys.stderr)
    if r.get("collapse_warning"):
        print(f"sigprop-fpga sim: warning: {r['collapse_warning']}", file=sys.stderr)
    if args.json:
        write_json(args.json, r)
    return 0 if r["bit_exact"] else 1


def cmd_build(args) -> int:
    def progress(line):
        if not args.quiet:
            print(f"build: {line}", file=sys.stderr, flush=True)

    try:
        r = load(args.network).build(args.board, args.out, engine=args.engine, samples=args.samples,
                                     autostart_epochs=args.autostart, progress=progress, rule=args.rule).to_json()
    except FitError as e:
        raise UsageError(f"{args.network}: does not fit: " + "; ".join(e.problems)) from None
    except ValueError as e:         # an engine that trains another rule than --rule
        if isinstance(e, SpecError):
            raise
        raise UsageError(f"{args.network}: {e}") from None
    except BuildError as e:
        print(f"sigprop-fpga build: {' '.join(str(e).split())[:600]}", file=sys.stderr)
        return 1
    print(format_report(r))
    sps = r.get("train_samples_per_second")
    print(f"rule {r['rule']}, engine {r['engine']}, lanes {r['lanes']}; cycles per sample {r['cycles_per_sample']:,}; "
          + (f"{sps:,.0f} training samples/s at the built clock {r['clock_mhz']['achieved']:g} MHz"
             if sps else "clock unknown"))
    if args.json:
        write_json(args.json, r)
    return 0 if r.get("timing_met") else 1


def cmd_run(args) -> int:
    for opt, value in (("--samples", args.samples), ("--window", args.window)):
        if value is not None and not args.stream:
            raise UsageError(f"{opt} is an option of the stream mode; it needs --stream")
    if args.sim == (args.port is not None):
        raise UsageError("run needs --port PORT (a board) or --sim (the board simulated in Verilator), not "
                         + ("both" if args.sim else "neither"))
    if not args.sim and (args.board or args.garble_every or args.rule):
        raise UsageError("--board, --garble-every and --rule are options of --sim (a real board says which rule "
                         "it trains)")
    design = load(args.network)
    try:
        r = design.run(port=args.port, baud=args.baud, epochs=args.epochs, stream=args.stream,
                       samples=args.samples, window=args.window, timeout=args.timeout,
                       progress=not args.quiet, poll=args.poll, sim=args.sim, board=args.board,
                       garble_every=args.garble_every or 0, init_weights=args.init_weights,
                       save_weights=args.save_weights, rule=args.rule).to_json()
    except (RunUsageError, FitError, ValueError) as e:
        raise UsageError(str(e).splitlines()[0]) from None
    except RunError as e:
        print(f"sigprop-fpga run: {e}", file=sys.stderr)
        return 1
    except VerilatorError as e:
        print(f"sigprop-fpga run --sim: {str(e).splitlines()[0]}", file=sys.stderr)
        return 1
    if args.sim and r.get("client_returncode") != 0:
        print(f"sigprop-fpga run --sim: the client failed: {(r.get('link_stats') or {})}", file=sys.stderr)
        return 1
    engine = "board (host-streamed)" if args.stream else "board"
    print(format_table(["engine", "test accuracy", "train accuracy (online)"],
                       [[engine, r["test_accuracy"], r["train_curve"][-1]],
                        ["golden model", r["golden_test_accuracy"], r.get("golden_train_curve", [""])[-1]]]))
    if r["first_mismatch"]:
        print("MISMATCH: " + ", ".join(f"{k} {v}" for k, v in r["first_mismatch"].items()), file=sys.stderr)
    elif args.stream:
        print(f"bit exact: True ({r['samples']:,} training samples streamed from the host, "
              f"{r['predictions']:,} predictions compared; weights, caches and counters read back and compared)")
    else:
        print(f"bit exact: True ({r['samples']:,} training samples on the board; weights, caches and counters "
              f"read back and compared)")
    if r.get("samples_per_second"):
        limit = r.get("link_samples_per_second")
        print(f"{r['samples_per_second']:,.0f} training samples/s" + (" (training and test split)"
              if r.get("samples_per_second_includes_test") else "")
              + (f"; the link at {r['baud']:,.0f} baud carries {r['link_bytes_per_sample']:.1f} bytes a sample: "
                 f"{limit:,.0f}/s at most" if limit else "")
              + (f"; the engine {r['engine_samples_per_second']:,.0f}/s" if r.get("engine_samples_per_second") else ""))
    if args.json:
        write_json(args.json, r)
    return 0 if r["bit_exact"] else 1


def cmd_program(args) -> int:
    try:
        r = program(args.bitstream, args.board, flash=args.flash, cable_index=args.cable_index, loader=args.loader,
                    dry_run=args.dry_run)
    except ProgramUsageError as e:
        raise UsageError(str(e)) from None
    except ProgramError as e:
        print(f"sigprop-fpga program: {e}", file=sys.stderr)
        return 1
    if args.dry_run:
        print(shlex.join(r["command"]))
        return 0
    if r["output"].strip() and not args.quiet:
        print(r["output"].rstrip(), file=sys.stderr)
    print(f"programmed {r['board']} ({r['memory']}) with {r['bitstream']} (sha256 {r['sha256'][:12]}) "
          f"in {r['seconds']:.1f} s")
    return 0


def cmd_report(args) -> int:
    try:
        path = make_report(args.folder)
    except ValueError as e:
        raise UsageError(str(e)) from None
    for b in load_builds(args.folder):     # the builds' tables, the last one last
        try:
            print(format_report(b) + "\n")
        except (KeyError, TypeError):
            continue                       # a build.json of another layout: the page has it
    print(path)
    return 0


def cmd_sweep(args) -> int:
    if args.address and args.backend != "ray":
        raise UsageError("--address is an option of --backend ray")
    try:
        sweep = load_sweep(args.sweep)
        out = Path(args.out) if args.out else Path("build") / f"sweep-{Path(args.sweep).stem}"
        if not args.quiet:
            print(f"sweep {args.sweep}: {len(sweep.points)} points x {', '.join(sweep.steps)} on "
                  f"{args.backend}", file=sys.stderr)
        r = run_sweep(sweep, backend=args.backend, jobs=args.jobs, address=args.address, cache=args.cache,
                      use_cache=not args.no_cache, progress=not args.quiet)
    except SweepError as e:
        raise UsageError(str(e)) from None
    plots = write_results(r, sweep, out, args.json)
    print(results_table(r))
    failed = sum(1 for p in r["points"] if p.get("error"))
    print(f"{len(r['points'])} points: {r['ran']} steps run, {r['cached']} from the cache ({args.cache}); "
          f"{failed} failed; results in {out}" + (f", plots {', '.join(p.name for p in plots)}" if plots else ""))
    return 1 if failed else 0


def cmd_doctor(args) -> int:
    return doctor_main(["--json", args.json] if args.json else [])


# ---------------------------------------------------------------------------------------------


def _weights_options(p) -> None:
    """``--init-weights`` and ``--save-weights``: checkpoints (:mod:`.sim.checkpoint`)."""
    p.add_argument("--init-weights", metavar="FILE.npz",
                   help="start from this checkpoint (weights, biases, target table, class-target caches, LFSR "
                        "positions) instead of the seeded initial weights; it must be of a network of the same "
                        "shapes and formats")
    p.add_argument("--save-weights", metavar="FILE.npz", type=_out_file,
                   help="write the trained state as a checkpoint (real values and raw integers, plus metadata)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="sigprop-fpga", description="Compile networks into forward-only SigProp training hardware.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    c = sub.add_parser("check", help="validate a network file and print its per-layer estimate")
    c.add_argument("network", help="network file (YAML)")
    c.add_argument("--board", choices=board_names(), help="the board to plan for (default: the network file's)")
    c.add_argument("--json", metavar="OUT", type=_out_file, help="also write the spec and estimate as JSON")
    c.set_defaults(func=cmd_check)

    t = sub.add_parser("train", help="train in software: the float reference or the bit-exact golden model")
    t.add_argument("network", help="network file (YAML)")
    t.add_argument("--model", choices=MODELS, default="golden",
                   help="float: the float64 reference; golden (default): the bit-exact integer model of the "
                        "hardware")
    t.add_argument("--rule", choices=RULES, default="sigprop",
                   help="learning rule: sigprop (default), bp, fa, dfa (per-sample SGD, float or golden); the batch "
                        "baselines sigprop-batch and bp-adam run in float")
    t.add_argument("--epochs", type=_positive_int, help="override learning.epochs")
    _weights_options(t)
    t.add_argument("--json", metavar="OUT", type=_out_file, help="write the report as JSON")
    t.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    tu = sub.add_parser("tune", help="grid over lr_shift, logit_shift and the scaling on a validation split")
    tu.add_argument("network", help="network file (YAML)")
    tu.add_argument("--model", choices=MODELS, default="golden", help="the model to tune (default golden)")
    tu.add_argument("--epochs", type=_positive_int, help="epochs per grid point (default: the file's, at most 5)")
    tu.add_argument("-j", "--jobs", type=_positive_int, help="processes (default: the machine's cores)")
    tu.add_argument("--json", metavar="OUT", type=_out_file, help="write the grid and the best point as JSON")
    tu.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    tu.set_defaults(func=cmd_tune)

    co = sub.add_parser("compile", help="compile a network file to Verilog, RTLIL and a manifest")
    co.add_argument("network", help="network file (YAML)")
    co.add_argument("-o", "--out", metavar="DIR", type=_out_dir, help="output folder (default: build/<network file name>)")
    co.add_argument("--engine", choices=engine_choices(), default="pipelined",
                    help="the engine to emit (default pipelined); auto: what build makes for the network file's "
                         "board. The manifest's engine says which")
    co.set_defaults(func=cmd_compile)

    s = sub.add_parser("sim", help="train the generated design cycle-accurately in Verilator against the golden model")
    s.add_argument("network", help="network file (YAML)")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--samples", type=_positive_int, help="train on the first N training samples (one epoch)")
    s.add_argument("--epochs", type=_positive_int, help="epochs (default: the network file's, or 1 with --samples)")
    s.add_argument("--check-every", type=_nonnegative_int, default=0, metavar="K",
                   help="compare all weights, caches and counters every K samples (always at each epoch end)")
    s.add_argument("--engine", choices=engine_choices()[1:], default="pipelined",
                   help="pipelined (default): a stage per layer; serial: one lane array walks the layers "
                        "(what build uses on small devices)")
    s.add_argument("--lanes", type=_positive_int, help="the serial, dfa and bp engines' lanes (default 4)")
    s.add_argument("--rule", choices=SIM_RULES, default="sigprop",
                   help="the learning rule's datapath: sigprop (default, --engine picks its engine), dfa or bp "
                        "(their engines), against that rule's golden model")
    s.add_argument("--netlist", choices=NETLIST_FAMILIES,
                   help="simulate the netlist this family's Yosys flow (as build runs it) maps the design to, "
                        "with the family's cell models, instead of the generated Verilog")
    s.add_argument("--waves", metavar="FILE.fst", type=_out_file, help="write an FST trace of the run")
    _weights_options(s)
    s.add_argument("--json", metavar="OUT", type=_out_file, help="write the report as JSON")
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(func=cmd_sim)

    b = sub.add_parser("build", help="fit check, synthesis, place and route: a bitstream for a board")
    b.add_argument("network", help="network file (YAML)")
    b.add_argument("--board", choices=("icebreaker", "ulx3s-85f"), help="default: the network file's board")
    b.add_argument("-o", "--out", metavar="DIR", type=_out_dir, help="output folder (default: build/<name>-<board>)")
    b.add_argument("--samples", type=_nonnegative_int,
                   help="dataset samples stored on chip (default: as many as the free block RAM holds)")
    b.add_argument("--autostart", type=_nonnegative_int, default=0, metavar="EPOCHS",
                   help="train this many epochs by itself after configuration (autonomous mode)")
    b.add_argument("--engine", choices=engine_choices(), default="auto",
                   help="pipelined: a stage per layer; serial: one lane array walks the layers (small "
                        "devices); auto (default): pipelined where it fits, else serial (for --rule bp or dfa: "
                        "that rule's engine)")
    b.add_argument("--rule", choices=SIM_RULES, default=None,
                   help="the learning rule the bitstream trains: sigprop, or bp / dfa on their engines (default: "
                        "the network file's learning.rule); built into build/<name>-<board>-<rule>")
    b.add_argument("--json", metavar="OUT", type=_out_file, help="write the report as JSON")
    b.add_argument("-q", "--quiet", action="store_true")
    b.set_defaults(func=cmd_build)

    rn = sub.add_parser("run", help="train on a board over its UART and compare with the golden model",
                        description="Train on a board over its UART, then read its whole state back and compare "
                                    "it with the golden model. By default the board trains from its on-chip "
                                    "dataset by itself (autonomous mode); with --stream the host sends every "
                                    "sample (the whole dataset the network file names, not only what the chip "
                                    "stores) and compares every prediction too.")
    rn.add_argument("network", help="network file (YAML) the board was built from")
    rn.add_argument("--port",
                    help="the board's serial port: anything pyserial opens (/dev/ttyUSB1, COM3, a pty, "
                         "loop://, socket://HOST:PORT, rfc2217://HOST:PORT)")
    rn.add_argument("--baud", type=_positive_int,
                    help=f"the link's rate, the one the bitstream was built for (build's report: baud; default "
                         f"{DEFAULT_BAUD:,}; with --sim the board's)")
    rn.add_argument("--stream", action="store_true",
                    help="host-streamed mode: send each epoch's training samples, then the test split, over "
                         "the link (SEND_SAMPLE), read every prediction back (READ_RESULTS) and score train "
                         "and test accuracy per epoch on the host (the board is restarted first: no reconfiguration needed). "
                         "Default: autonomous mode, the chip trains on the dataset it stores")
    rn.add_argument("--samples", type=_positive_int, metavar="N",
                    help="with --stream: stream only the first N training samples each epoch (default: all)")
    rn.add_argument("--window", type=_positive_int, metavar="N",
                    help="with --stream: samples in flight before the host reads their predictions (default: what "
                         "the board's sample and result FIFOs hold)")
    rn.add_argument("--epochs", type=_positive_int, help="default: the network file's")
    rn.add_argument("--timeout", type=_positive_float, default=2.0, help="seconds to wait for a reply")
    rn.add_argument("--poll", type=_nonnegative_float, default=0.05, metavar="SECONDS",
                    help="seconds between status polls while the chip trains by itself (default 0.05)")
    rn.add_argument("--sim", action="store_true",
                    help="no board: the top build makes for --board, simulated in Verilator at the board's clock "
                         "and --baud, driven by this client through a pseudo-terminal")
    rn.add_argument("--board", choices=board_names(), help="with --sim: the board (default: the network file's)")
    rn.add_argument("--rule", choices=SIM_RULES, default=None,
                    help="with --sim: the learning rule of the simulated board top (default: the file's "
                         "learning.rule), compared with that rule's golden model")
    rn.add_argument("--garble-every", type=_positive_int, metavar="N",
                    help="with --sim: corrupt the CRC of every N-th request frame on the simulated line (the "
                         "board answers BAD_CRC, the client resends; the run must stay bit exact)")
    _weights_options(rn)
    rn.add_argument("--json", metavar="OUT", type=_out_file)
    rn.add_argument("-q", "--quiet", action="store_true")
    rn.set_defaults(func=cmd_run)

    pg = sub.add_parser("program", help="load a bitstream onto a board with openFPGALoader",
                        description="Load a bitstream (or the one a build folder holds) onto a board with the "
                                    "openFPGALoader of the pinned openfpgaloader package. The iCEBreaker is written "
                                    "through its SPI flash; the ULX3S is loaded into SRAM (--flash: its flash).")
    pg.add_argument("bitstream", metavar="BITSTREAM_OR_BUILD_DIR",
                    help="a .bin (iCEBreaker) or .bit (ULX3S) file, or a folder `sigprop-fpga build` wrote")
    pg.add_argument("--board", choices=("icebreaker", "ulx3s-85f"),
                    help="the board (default: the build folder's; needed with a bitstream file)")
    pg.add_argument("--flash", action="store_true", help="ULX3S: write the SPI flash instead of the SRAM")
    pg.add_argument("--cable-index", type=_nonnegative_int, metavar="N",
                    help="which of several connected cables (openFPGALoader --cable-index)")
    pg.add_argument("--loader", metavar="PATH", help="another openFPGALoader binary than the pinned package's")
    pg.add_argument("--dry-run", action="store_true", help="print the openFPGALoader command and exit")
    pg.add_argument("-q", "--quiet", action="store_true", help="do not echo openFPGALoader's output")
    pg.set_defaults(func=cmd_program)

    r = sub.add_parser("report", help="turn a check/train/sim/build folder into one Markdown page with plots")
    r.add_argument("folder")
    r.set_defaults(func=cmd_report)

    sw = sub.add_parser("sweep", help="run check/train/sim/build over a grid of network-file values",
                        description="Run the steps of a sweep file (base network file, grid of dotted keys, "
                                    "steps, options) on every point of its grid, locally or on a Ray cluster, "
                                    "with a content-addressed cache so an interrupted sweep resumes.")
    sw.add_argument("sweep", help="sweep file (YAML)")
    sw.add_argument("--backend", choices=BACKENDS, default="local",
                    help="local (default): a process pool on this machine; ray: Ray tasks (pip install "
                         "'sigprop-fpga[ray]')")
    sw.add_argument("--address", help="with --backend ray: a running cluster (auto, HOST:6379 or "
                                      "ray://HOST:10001); default: start a local one for the run")
    sw.add_argument("-j", "--jobs", type=_positive_int, help="points at once (default: the machine's cores)")
    sw.add_argument("-o", "--out", metavar="DIR", type=_out_dir,
                    help="one folder per point, sweep.json and the plots (default: build/sweep-<file name>)")
    sw.add_argument("--json", metavar="OUT", type=_out_file, help="also write every point's results as JSON")
    sw.add_argument("--cache", metavar="DIR", type=_out_dir, default="build/sweep-cache",
                    help="the cache of finished steps (default build/sweep-cache)")
    sw.add_argument("--no-cache", action="store_true", help="run every point afresh")
    sw.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    sw.set_defaults(func=cmd_sweep)

    d = sub.add_parser("doctor", help="find every tool the flow needs and print its version")
    d.add_argument("--json", metavar="OUT", type=_out_file)
    d.set_defaults(func=cmd_doctor)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except SpecError as e:
        print(f"sigprop-fpga {args.command}: {e}", file=sys.stderr)
        return 2
    except UsageError as e:
        print(f"sigprop-fpga {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sigprop-fpga {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
