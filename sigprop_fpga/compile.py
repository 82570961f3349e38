"""``sigprop-fpga compile NET.yaml -o DIR``: the network file to Verilog, RTLIL and a manifest.

:func:`compile_network` writes ``DIR/<name>.v`` (:mod:`amaranth.back.verilog`), ``DIR/<name>.il``
(:mod:`amaranth.back.rtlil`) and ``DIR/manifest.json``: the top-level ports, the number formats,
the readback memory map, lanes per stage, estimated cycles per stage (per phase) and per sample,
and MACs per sample. Every file is written to a temporary name and renamed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from amaranth.back import rtlil, verilog
from amaranth.hdl import Shape
from amaranth.lib import data, wiring

from .boards import get_target
from .boards.fit import FitError
from .boards.flow import plan_engine, prepare_network
from .compiler.estimate import stage_macs
from .compiler.spec import SpecError
from .hdl.engines import Engine, EngineUnsupported, get_engine
from .hdl.simulate import simulate
from .io import write_atomic, write_json
from .sim.datasets import load_network
from .sim.compare import first_difference
from .sim.golden import GoldenSigProp

__all__ = ["compile_network", "build_engine", "manifest", "measure", "compile_main", "check_buildable"]


def check_buildable(net) -> None:
    """Refuse what the hardware does not implement, as a one-line :class:`SpecError`."""
    spec = net.spec
    for l in range(net.depth):
        p = net.prec(l)
        if p.weight.frac_bits + net.in_format(l).frac_bits < p.bias.frac_bits:
            raise SpecError(spec.file, None, f"network.layers[{l}].precision.bias",
                            f"expected at most {p.weight.frac_bits + net.in_format(l).frac_bits} fraction bits "
                            f"(weight + input), got {p.bias}")


def choose_engine(net, engine: str = "auto", loaded: tuple | None = None) -> tuple[Engine, object, str]:
    """``(engine, lanes, why)``: what ``build`` makes for the network file's board (``auto``:
    :func:`..boards.flow.plan_engine`; with ``loaded``, ``(spec, data, net)``, also the dataset's
    place, :func:`..boards.flow.prepare_network`: a dataset RAM costs lanes), or the named engine
    with its preferred lanes."""
    check_buildable(net)
    spec = net.spec
    if engine == "auto":
        try:
            if loaded is not None:
                plan = prepare_network(None, spec.board, loaded=loaded).plan
            else:
                plan = plan_engine(net, get_target(spec.board), "auto")
        except FitError as e:
            raise SpecError(spec.file, None, "board", f"no engine fits {spec.board}: " + "; ".join(e.problems)) \
                from None
        return plan.engine, plan.lanes, plan.why
    eng = get_engine(engine)
    try:
        eng.check(net)
    except EngineUnsupported as e:
        raise SpecError(spec.file, None, "engine", f"the {eng.name} engine cannot build this network: {e}") from None
    lanes = eng.lane_choices(net)[0]
    return eng, lanes, eng.describe(net, lanes)


def build_engine(net, engine: str = "pipelined"):
    """The engine's Amaranth component for ``net`` (``engine`` as :func:`choose_engine`)."""
    eng, lanes, _ = choose_engine(net, engine)
    return eng.component(net, lanes)


def _ports(engine) -> list[dict]:
    out = []
    for path, member in engine.signature.members.flatten():
        if member.is_port:
            name = "__".join(str(p) for p in path)
            shape = member.shape
            try:
                s = Shape.cast(shape)
                width, signed = s.width, s.signed
            except TypeError:
                width, signed = None, None
            port = {"name": name, "dir": "in" if member.flow == wiring.In else "out", "width": width, "signed": signed}
            if isinstance(shape, data.StructLayout):
                port["fields"] = {f: {"offset": fld.offset, "width": fld.width} for f, fld in shape}
            out.append(port)
    return out


def _multipliers(net, dsp: int) -> dict:
    """Hardware multipliers: one per lane and nothing else. The softmax units borrow their
    stage's idle lanes for ``e_k q`` and compute ``d log2(e)`` with adders, so the DSP blocks
    are the lanes (measured with ``synth_ice40 -dsp``: 8 SB_MAC16 for digits' 4 + 4 lanes)."""
    units = sum(1 for l in range(net.depth)
                if net.spec.learning.loss == "class_ce" or (l == net.depth - 1 and net.spec.readout == "head"))
    return {"lanes": dsp, "softmax_units": units, "dsp_blocks_ice40": dsp,
            "note": "hardware.dsp_budget covers every multiplier: the softmax runs on the lanes"}


def manifest(net, eng: Engine, lanes, component, files: dict, seconds: float, why: str = "") -> dict:
    """The manifest of ``component`` (``eng``'s, with ``lanes``)."""
    cyc = eng.cycles(net, lanes)
    stage_lanes = eng.stage_lanes(net, lanes)
    spec = net.spec
    formats = {"input": str(spec.precision.input), "table": str(spec.precision.table),
               "probability": "UQ1.16", "rounding": spec.precision.rounding, "layers": []}
    for l in range(net.depth):
        p = net.prec(l)
        formats["layers"].append({"activation": str(p.activation), "weight": str(p.weight), "bias": str(p.bias),
                                  "error": str(p.error), "accumulator_bits": net.acc_width(l)})
    stages = []
    for l, phases in enumerate(cyc.stages):
        macs = stage_macs(net, l)[0]
        cycles = sum(phases.values())
        stages.append({"index": l, "lanes": stage_lanes[l], "cycles_per_sample": cycles,
                       "phases": {str(k): v for k, v in phases.items()}, "macs_per_sample": macs,
                       "ceil_macs_over_lanes": -(-macs // stage_lanes[l]),
                       "mac_utilization": macs / (stage_lanes[l] * cycles)})
        if len(cyc.inference) == len(cyc.stages):
            stages[-1]["inference_cycles"] = cyc.inference[l]
    return {
        "name": spec.name, "top": "top", "files": files, "compile_seconds": round(seconds, 3),
        "engine": eng.name, "engine_choice": why,
        "network": {"n_inputs": net.n_inputs, "widths": list(spec.widths), "n_classes": net.n_classes,
                    "loss": spec.learning.loss, "readout": spec.readout, "push": spec.learning.push,
                    "lr_shift": spec.learning.lr_shift, "logit_shift": spec.learning.logit_shift,
                    "lr_shifts": [net.lr_shift(l) for l in range(net.depth)]},
        "clock": {"domain": "sync", "mhz": spec.hardware.clock_for(spec.board)},   # a number or "max"
        "ports": _ports(component),
        "stream_in": {"beats": net.n_inputs + 1,
                      "format": f"{net.n_inputs} feature beats (data = raw {spec.precision.input} bits), then one "
                                "label beat (data = class, train = 1 to learn, 0 to infer)"},
        "stream_out": "one prediction (class index) per sample, in order",
        "formats": formats,
        "memory_map": component.map,
        "readback_latency": eng.readback_latency,      # cycles from rb_addr to its rb_data
        "lanes": eng.lanes_json(lanes),
        "multipliers": _multipliers(net, eng.dsp(net, lanes)),
        "estimate": cyc.to_json(),
        "stages" if eng.overlaps_layers else "layers": stages,
        "cycles_source": "estimate: the engine's cycle model (compiler/estimate.py); compile --measure adds the "
                         "simulated cycles under 'measured'",
        "cycles_per_sample": cyc.per_sample,
        "estimated_cycles_between_samples": cyc.per_sample,
        "sequential_cycles": cyc.sequential,
        "macs_per_sample": cyc.macs,
        "inference_macs_per_sample": sum(stage_macs(net, l)[1] for l in range(net.depth)),
    }


def measure(net, dataset, eng: Engine, lanes, n_samples: int) -> dict:
    """Train ``n_samples`` training-split samples on the Amaranth simulation of the engine and the
    golden model; returns the measured cycles per stage and between samples, and bit-exactness:
    every prediction, then every memory and counter read back, compared by
    :func:`..sim.compare.first_difference` (the comparison of ``sim`` and ``run``), whose report
    is ``first_mismatch``."""
    n = min(n_samples, len(dataset.y_train))
    X, y = dataset.x_train[:n], dataset.y_train[:n]
    g = GoldenSigProp(net)
    want = [g.train_sample(X[i], int(y[i])) for i in range(n)]
    r = simulate(net, X, y, lanes=lanes, engine_cls=eng.component_cls)
    mismatch = None
    if list(r["pred"]) != want:
        i = next(i for i, (a, b) in enumerate(zip(r["pred"], want)) if a != b)
        mismatch = {"sample": i, "stage": None, "signal": "prediction", "index": None,
                    "expected": int(want[i]), "actual": int(r["pred"][i])}
    else:       # the comparison sim and run make: every memory and counter
        mismatch = first_difference(net, r["state"], g, n)
    exact = mismatch is None
    gaps = np.diff(r["pred_cycle"]).tolist()
    return {"samples": n, "bit_exact": exact, "first_mismatch": mismatch,
            "stage_cycles": [max(c) if c else None for c in r["stage_cycles"]],
            "cycles_between_samples": int(np.median(gaps)) if gaps else None,
            "engine": "amaranth.sim"}


def compile_network(spec_path, out_dir, measure_samples: int = 0, engine: str = "pipelined",
                    loaded: tuple | None = None) -> dict:
    """Compile a network file; returns the manifest (also written to ``out_dir/manifest.json``).

    ``engine``: a registered engine's name, or ``auto`` for what ``build`` makes for the network
    file's board (:func:`choose_engine`); the manifest's ``engine`` says which.

    ``measure_samples > 0`` also simulates that many training samples (Amaranth simulator) and
    records the measured cycles per stage and between samples, and bit-exactness against the
    golden model, under ``"measured"``.

    Raises
    ------
    SpecError
        A bad network file, or one the hardware cannot build (one line).
    """
    t0 = time.monotonic()
    spec, data, net = loaded if loaded is not None else load_network(spec_path)
    eng, lanes, why = choose_engine(net, engine, (spec, data, net))
    component = eng.component(net, lanes)
    out = Path(out_dir)
    il = rtlil.convert(component, name="top")
    try:    # elaborate once: Yosys turns the same RTLIL into Verilog, as verilog.convert does
        v = verilog._convert_rtlil_text(il)
    except AttributeError:      # pragma: no cover - a future Amaranth without the helper
        v = verilog.convert(eng.component(net, lanes), name="top")
    files = {"verilog": f"{spec.name}.v", "rtlil": f"{spec.name}.il", "manifest": "manifest.json"}
    write_atomic(out / files["rtlil"], il)
    write_atomic(out / files["verilog"], v)
    man = manifest(net, eng, lanes, component, files, time.monotonic() - t0, why)
    if measure_samples:
        man["measured"] = measure(net, data, eng, lanes, measure_samples)
    write_json(out / files["manifest"], man)
    return man


def compile_main(args_list=None) -> int:
    ap = argparse.ArgumentParser(prog="sigprop-fpga compile", description="compile a network file to Verilog")
    ap.add_argument("spec", help="network file (YAML)")
    ap.add_argument("-o", "--out", default="build", help="output directory (default: build)")
    ap.add_argument("--engine", default="pipelined", help="pipelined, serial or auto (default: pipelined)")
    ap.add_argument("--measure", type=int, default=0, metavar="N",
                    help="also simulate N training samples and record the measured cycles in the manifest")
    args = ap.parse_args(args_list)
    if args.measure < 0:
        print("error: --measure: expected a non-negative number of samples", file=sys.stderr)
        return 2
    try:
        man = compile_network(args.spec, args.out, args.measure, engine=args.engine)
    except SpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {Path(args.out) / man['files']['verilog']}, {man['files']['rtlil']}, manifest.json; "
          f"lanes {man['lanes']}, {man['cycles_per_sample']} cycles/sample (estimate) "
          f"({man['engine']} engine), {man['macs_per_sample']} MACs/sample, "
          f"{man['compile_seconds']} s")
    if "measured" in man:
        ms = man["measured"]
        print(f"measured on {ms['samples']} samples: stages {ms['stage_cycles']}, "
              f"{ms['cycles_between_samples']} cycles between samples, bit exact: {ms['bit_exact']}")
    return 0 if man.get("measured", {}).get("bit_exact", True) else 1
