"""Performance of the on-chip trainer against the DSP limit and this machine's CPU, in one run.

    .venv/bin/python bench/perf.py [--networks examples/*.yaml] [--boards icebreaker ulx3s-85f]
                                   [--samples 256] [--build default|all|none] [--no-build] [-j 1]

For every network and board, printed as tables and written to ``build/bench/perf.json`` (plus
``build/bench/perf_utilization.png`` and ``build/bench/perf_samples_per_second.png``):

* **cycles per training sample, measured in Verilator** (per network for the pipelined engine,
  and per board for a serial engine): the generated trainer (the engine behind
  the on-chip dataset feeder, :func:`sigprop_fpga.rtl.trainer_verilog`) trains the first
  ``--samples`` training samples, bit-exact against the golden model (the ``tb_trainer`` bench of
  ``sigprop-fpga sim``, here without a test split, so the engine's counters at the end hold a
  training sample). Steady state = (cycle of the last training prediction - cycle of the
  prediction after the first ``2 x depth`` samples) / the samples between: the pipeline is full.
  The engine's own ``cycles`` counter over the run (which includes the pipeline fill) and its
  per-stage ``stage_cycles`` counters are reported beside it;
* the ideal ``MACs per sample / DSPs used`` (the lanes, :mod:`sigprop_fpga.compiler.estimate`) and
  the **MAC utilization** = ideal / measured;
* the **pipeline**: the measured cycles between samples against the sum of the stage cycles (no
  layer overlap) and the slowest stage: speed-up = sum / between, and between / slowest;
* the **built clock** (``sigprop-fpga build``'s flow, :func:`sigprop_fpga.boards.flow.
  build_network`, same output folder ``build/<name>-<board>``: cached and stamped, an unchanged
  input is not rebuilt; ``clock_mhz: max`` searches the highest PLL clock that meets timing) and
  training samples/s **at that clock** (measured cycles), the rate the bitstream trains at;
  **fmax** beside it as the worst of ``--seeds`` nextpnr seeds (the build's own seed and seeds
  2, 3, ...: the same netlist placed and routed again at the same constraint,
  :func:`sigprop_fpga.boards.build.seed_fmax`, cached in the build folder). A network the
  pre-synthesis fit check refuses is reported as "does not fit" with the check's numbers;
* the **physical limit**: every DSP block of the device busy at the built clock,
  ``DSPs_device x clock / MACs per sample`` samples/s, the fraction of it reached, and the same
  for the DSPs the design uses (the place-and-route count, which can exceed the lanes when Yosys
  maps other multiplications to DSP blocks; with the lanes it would equal the MAC utilization);
* the **CPU**: the float reference (:class:`sigprop_fpga.sim.reference.FloatSigProp`, per-sample
  streaming SigProp, the algorithm the chip runs) and the NumPy-vectorised batch SigProp
  reference (:func:`sigprop_fpga.sim.baselines.train_sigprop_batch`, Adam, batch 32), timed in
  this run on one core (BLAS on one thread; median of ``--repeats``, before this bench's
  simulations and builds load the machine; the load average is recorded); the headline is board samples/s at the built
  clock / CPU samples/s;
* the **learning-rule cost model** (:func:`sigprop_fpga.compiler.rules.rule_costs`, analytic):
  SigProp as built against backprop and DFA datapaths on the same lanes.

Builds and the time budget (2 cores): ``--build default`` (the default) synthesises, places and
routes only the default network (``examples/digits.yaml``) on each board it fits; every other
network/board pair reports its cached build when that build's inputs are unchanged, and fmax as
missing ("not built") otherwise; ``--build all`` builds every pair that fits; ``--build none`` /
``--no-build`` builds nothing. Why: one ECP5-85F place and route of the board top takes about 4
minutes on this machine even for iris (digits 4.5 to 6 min, digits-wide longer), so the four
other networks would add 16+ minutes to the run, past the 20-minute budget. Measured with the
defaults on 2 cores shared with other jobs (load average 2 to 3), after the datapath changed (so
every Verilator model and the digits ULX3S bitstream were rebuilt; the venv already made): 9.3
minutes in all: the CPU runs 8 s, five Verilator models built (30 to 55 s each) and simulated 4
min, the digits ULX3S build 4.8 min, the fit checks and the cache checks of the other builds 20 s.
Each board gets the engine ``build`` chooses (:func:`sigprop_fpga.boards.flow.prepare_network`):
the pipelined one where it fits, else the serial one (one lane array for every layer; the
iCEBreaker's), whose cycles are measured in a Verilator run of their own and shown per board.
The digits iCEBreaker build (about 3 minutes) is one of the default builds, and the serial
engines add one Verilator model each (digits and iris on the iCEBreaker: 1.7 min); with both
digits builds cached the bench took 7.6 minutes. A repeat run with nothing changed reuses the
Verilator models (``build/cache/verilator``) and the bitstreams and spends its time elaborating,
simulating and on the CPU runs. ``-j N`` runs N builds at once (default 1: each tool is single-threaded and the
machine is shared).

Exit code 0; 1 when a Verilator run failed or differed from the golden model, or a build failed
(the other networks are still measured and the failure is listed under "Notes").
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from sigprop_fpga.hdl.engines import get_engine
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_NETWORK = ROOT / "examples" / "digits.yaml"
BOARDS = ("icebreaker", "ulx3s-85f")
BUILD_MODES = ("default", "all", "none")
RULE_LABELS = {"sigprop": "SigProp (as built)", "backprop": "backprop", "dfa": "DFA"}


# ------------------------------------------------------------------------------------------------
# pure computations (tests/test_bench_perf.py)
# ------------------------------------------------------------------------------------------------

def steady_state(times, depth: int) -> dict:
    """Cycles between consecutive training predictions once the pipeline is full.

    ``times`` are the cycles of the training predictions in order. The first ``2 * depth`` gaps
    (the pipeline filling) are skipped when there are more gaps than that. Returns the mean
    (``cycles_per_sample``, exact: span / gaps), ``median``, ``min``, ``max`` of the gaps and
    ``gaps`` (how many were measured)."""
    times = [int(t) for t in times]
    if len(times) < 2:
        raise ValueError(f"need at least 2 training predictions, got {len(times)}")
    gaps = [b - a for a, b in zip(times, times[1:])]
    skip = 2 * depth if len(gaps) > 2 * depth else 0
    steady = gaps[skip:]
    return {"cycles_per_sample": (times[-1] - times[skip]) / len(steady),
            "median": float(statistics.median(steady)), "min": min(steady), "max": max(steady),
            "gaps": len(steady), "skipped": skip}


def mac_utilization(macs_per_sample: float, dsps: int, cycles_per_sample: float) -> tuple[float, float]:
    """``(ideal cycles, utilization)``: ideal = MACs / DSPs, utilization = ideal / measured."""
    ideal = macs_per_sample / dsps
    return ideal, ideal / cycles_per_sample


def pipeline_figures(between: float, stage_cycles) -> dict:
    """Cycles between samples against the stages: ``sum`` (no overlap), ``slowest``,
    ``speedup`` = sum / between, ``between_over_slowest``."""
    total, slowest = sum(stage_cycles), max(stage_cycles)
    return {"stage_cycles": list(stage_cycles), "sum": total, "slowest": slowest,
            "between": between, "speedup": total / between, "between_over_slowest": between / slowest}


def board_figures(*, macs_per_sample: float, cycles_per_sample: float, clock_mhz: float | None,
                  dsps_used: int, device_dsps: int, cpu: dict | None = None) -> dict:
    """Samples/s at the built clock ``clock_mhz`` (the bitstream's PLL output, not fmax) and the
    physical limits (all of the device's DSPs, or all of the used ones, busy at that clock:
    ``DSPs x clock / MACs``), the fractions reached, and the ratio to each CPU rate in ``cpu``
    (name -> samples/s). Everything is ``None`` without a built clock."""
    out = {"samples_per_second": None, "device_dsps": device_dsps, "dsps_used": dsps_used,
           "device_limit": None, "fraction_of_device_limit": None,
           "used_dsp_limit": None, "fraction_of_used_dsp_limit": None, "over_cpu": {}}
    if not clock_mhz:
        return out
    hz = clock_mhz * 1e6
    sps = hz / cycles_per_sample
    device = device_dsps * hz / macs_per_sample
    used = dsps_used * hz / macs_per_sample
    out.update(samples_per_second=sps, device_limit=device, fraction_of_device_limit=sps / device,
               used_dsp_limit=used, fraction_of_used_dsp_limit=sps / used,
               over_cpu={k: sps / v for k, v in (cpu or {}).items() if v})
    return out


def worst_fmax(seed_runs: list) -> dict:
    """fmax over nextpnr seeds (:func:`sigprop_fpga.boards.build.seed_fmax`'s results): ``worst``
    (the figure quoted; ``None`` if a seed has none), ``best``, ``seeds`` (seed -> fmax) and
    ``timing_met_all`` (every seed met the built clock)."""
    fm = [r["fmax_mhz"] for r in seed_runs]
    ok = bool(fm) and all(f is not None for f in fm)
    return {"worst": min(fm) if ok else None, "best": max(fm) if ok else None,
            "seeds": {int(r["seed"]): r["fmax_mhz"] for r in seed_runs},
            "timing_met_all": bool(seed_runs) and all(r["timing_met"] for r in seed_runs)}


def fit_numbers(estimated: dict, available: dict) -> dict:
    """Per kind: ``needed``, ``available``, ``fraction`` (needed / available; ``None`` when the
    device has none)."""
    return {k: {"needed": int(v), "available": int(available.get(k, 0)),
                "fraction": (v / available[k]) if available.get(k) else None}
            for k, v in estimated.items()}


def attach_rtl(n_out: dict, rtl: dict) -> dict:
    """Add the Verilator measurement ``rtl`` to a network entry: ``mac_utilization`` (of the
    lanes) and ``pipeline`` (the engine's stage counters, or the estimate without them)."""
    n_out["rtl"] = rtl
    measured = len(rtl.get("stage_cycles") or []) == len(n_out["estimated_stage_cycles"])
    stages = rtl["stage_cycles"] if measured else n_out["estimated_stage_cycles"]
    cycles = rtl.get("cycles_per_sample")
    if cycles is None:                  # the RTL run failed: no measured figures
        n_out["mac_utilization"] = None
        n_out["pipeline"] = {"stage_cycles": list(stages), "sum": sum(stages), "slowest": max(stages),
                             "between": None, "speedup": None, "between_over_slowest": None}
    else:
        _, n_out["mac_utilization"] = mac_utilization(n_out["macs_per_sample"], n_out["dsps_used"], cycles)
        n_out["pipeline"] = pipeline_figures(cycles, stages)
    n_out["pipeline"]["stage_cycles_source"] = "engine counters" if measured else "estimate"
    return n_out


def attach_boards(n_out: dict, board_results: list) -> dict:
    """Add the board results (:func:`build_one`) to a network entry, each with its ``figures``
    (:func:`board_figures` at the measured cycles, against both CPU rates)."""
    cpu = {k: n_out["cpu"][k] for k in ("float_per_sample", "float_batched")}
    n_out["boards"] = []
    for b in board_results:
        # the limit of the DSPs the design uses: the place-and-route count when built (it can
        # exceed the lanes: Yosys maps other multiplications to DSP blocks too), else the lanes
        b["dsps_used_source"] = "place and route" if b.get("dsp_used_pnr") else "lanes"
        if b.get("engine") == "serial":     # the board's own datapath, measured apart
            cycles = (b.get("rtl") or {}).get("cycles_per_sample")
            lanes_used = b["lanes"]
            b["mac_utilization"] = mac_utilization(n_out["macs_per_sample"], lanes_used, cycles)[1] if cycles else None
        else:
            cycles = n_out["rtl"].get("cycles_per_sample")
            lanes_used = n_out["dsps_used"]
            b["mac_utilization"] = n_out["mac_utilization"]
        b["cycles_per_sample"] = cycles
        b["figures"] = board_figures(macs_per_sample=n_out["macs_per_sample"], cycles_per_sample=cycles,
                                     clock_mhz=b.get("built_mhz") if cycles else None,
                                     dsps_used=b.get("dsp_used_pnr") or lanes_used,
                                     device_dsps=b["device_dsps"], cpu=cpu)
        if not b.get("built_mhz") and b["status"] == "not built":
            b["note"] = "no up-to-date build; run with --build all (or sigprop-fpga build)"
        n_out["boards"].append(b)
    return n_out


def flat_rows(nets_out: list) -> list:
    """One flat record per network and board (perf.json ``rows``)."""
    return [{"network": n["name"], "board": b["board"], "status": b["status"],
             "engine": b.get("engine"), "lanes": b.get("lanes"),
             "cycles_per_sample": b.get("cycles_per_sample", n["rtl"].get("cycles_per_sample")),
             "ideal_cycles_per_sample": (n["macs_per_sample"] / b["lanes"] if b.get("engine") == "serial"
                                         else n["ideal_cycles_per_sample"]),
             "mac_utilization": b.get("mac_utilization", n["mac_utilization"]),
             "stage_cycles_sum": n["pipeline"]["sum"], "slowest_stage": n["pipeline"]["slowest"],
             "pipeline_speedup": n["pipeline"]["speedup"],
             "between_over_slowest": n["pipeline"]["between_over_slowest"],
             "built_mhz": b.get("built_mhz"), "fmax_mhz": b.get("fmax_mhz"), "fmax_seeds": b.get("fmax_seeds"),
             "timing_met": b.get("timing_met"), **b["figures"],
             "cpu_float_per_sample": n["cpu"]["float_per_sample"], "cpu_float_batched": n["cpu"]["float_batched"]}
            for n in nets_out for b in n["boards"]]


def _fit_text(fit: dict) -> str:
    over = [f"{k} {v['needed']:,}/{v['available']:,}" + ("" if v["fraction"] is None else f" ({v['fraction']:.0%})")
            for k, v in fit.items() if (v["fraction"] is None and v["needed"] > 0) or (v["fraction"] or 0) > 1]
    return "does not fit: " + ", ".join(over)


def _opt(v, scale=1.0):
    return "-" if v is None else v * scale


def _fmax_text(b: dict) -> str:
    """The worst fmax over the seeds and how many seeds, e.g. ``31.02 (3 seeds)``."""
    seeds = b.get("fmax_seeds") or {}
    if b.get("fmax_mhz") is None:
        return "-"
    return f"{b['fmax_mhz']:.2f} ({len(seeds)} seed{'s' if len(seeds) != 1 else ''})"


def format_tables(result: dict) -> str:
    """The printed report: cycles and pipeline, boards and limits, CPU, learning-rule costs."""
    from sigprop_fpga.io import format_table

    out = []
    rows = []
    for n in result["networks"]:
        r, p = n["rtl"], n["pipeline"]
        rows.append([n["name"], "-".join(map(str, [n["n_inputs"], *n["widths"]])), "+".join(map(str, n["lanes"])),
                     n["macs_per_sample"], n["ideal_cycles_per_sample"],
                     "RTL FAILED" if r.get("cycles_per_sample") is None else r["cycles_per_sample"],
                     _opt(n["mac_utilization"]), "+".join(f"{c:,}" for c in p["stage_cycles"]), p["sum"], p["slowest"],
                     _opt(p["between_over_slowest"]), _opt(p["speedup"])])
    out.append(f"Cycles per training sample, Verilator (steady state over {result['samples']} samples, "
               "bit-exact with the golden model)")
    out.append(format_table(["network", "shape", "lanes", "MACs/sample", "ideal cyc", "measured cyc",
                             "MAC util", "stage cyc", "sum", "slowest", "between/slowest", "pipeline speed-up"],
                            rows))
    rows = []
    for n in result["networks"]:
        for b in n["boards"]:
            f = b["figures"]
            if b["status"] == "does not fit":
                rows.append([n["name"], b["board"], _fit_text(b["fit"]) if b.get("fit") else "does not fit",
                             "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-"])
                continue
            timing = "-" if b.get("timing_met") is None else ("met" if b["timing_met"] else "NOT met")
            engine = f"serial x{b['lanes']}" if b.get("engine") == "serial" else "pipelined"
            rows.append([n["name"], b["board"], b["status"], engine, _opt(b.get("cycles_per_sample")),
                         _opt(b.get("mac_utilization")), _opt(b.get("built_mhz")), _fmax_text(b), timing,
                         _opt(f["samples_per_second"]), f"{f['dsps_used']}/{f['device_dsps']}",
                         _opt(f["device_limit"]), _opt(f["fraction_of_device_limit"]),
                         _opt(f["fraction_of_used_dsp_limit"]),
                         _opt(f["over_cpu"].get("float_per_sample")), _opt(f["over_cpu"].get("float_batched"))])
    out += ["", "Boards: the engine each board builds (pipelined: the cycles above; serial xP: one lane array "
            "of P lanes, measured in Verilator apart), samples/s at the built clock (measured cycles), fmax as the "
            "worst of the nextpnr seeds (seeds in brackets), the DSP limit (all the device's DSPs busy at the built "
            "clock)"]
    out.append(format_table(["network", "board", "status", "engine", "cycles", "MAC util", "built MHz",
                             "fmax MHz (worst)", "timing",
                             "samples/s", "DSPs used/device",
                             "device limit /s", "of device limit", "of used-DSP limit", "x CPU float",
                             "x CPU batched"], rows))
    rows = [[n["name"], n["cpu"]["float_per_sample"], n["cpu"]["float_batched"],
             n["cpu"]["float_batched"] / n["cpu"]["float_per_sample"]] for n in result["networks"]]
    out += ["", f"CPU, one core of this machine (BLAS on 1 thread, median of {result['repeats']}): "
            "float reference per sample (streaming SigProp), batch SigProp reference (NumPy, batch 32)"]
    out.append(format_table(["network", "per-sample samples/s", "batched samples/s", "batched/per-sample"], rows))
    rows = []
    for n in result["networks"]:
        for rule in ("sigprop", "backprop", "dfa"):
            c = n["rules"][rule]
            rows.append([n["name"], RULE_LABELS[rule], c["cycles_per_sample"], c["stored_activation_bits"],
                         c["feedback_weight_bits"], c["weight_reads"], c["weight_writes"], c["weight_transport"],
                         "yes" if c["layers_overlap"] else "no"])
    out += ["", "Learning-rule cost model (analytic, same lanes)"]
    out.append(format_table(["network", "rule", "cycles/sample", "stored act bits", "feedback w bits",
                             "w reads", "w writes", "transposed reads", "layers overlap"], rows))
    notes = [f"{n['name']}: Verilator: {n['rtl']['error'][:300]}" for n in result["networks"] if n["rtl"].get("error")]
    notes += [f"{n['name']}/{b['board']}: Verilator (serial): {b['rtl']['error'][:300]}" for n in result["networks"]
              for b in n["boards"] if (b.get("rtl") or {}).get("error")]
    notes += [f"{n['name']}/{b['board']}: " + "; ".join(b["problems"])[:300] for n in result["networks"]
              for b in n["boards"] if b["status"] == "does not fit" and b.get("problems")]
    notes += [f"{n['name']}/{b['board']}: {b.get('error') or b.get('note')}"[:300] for n in result["networks"]
              for b in n["boards"] if b.get("error") or b.get("note")]
    if notes:
        out += ["", "Notes"] + [f"- {t}" for t in notes]
    return "\n".join(out)


# ------------------------------------------------------------------------------------------------
# measurements
# ------------------------------------------------------------------------------------------------

def _load(network):
    from sigprop_fpga.sim.datasets import load_network
    return load_network(network)


def measure_cpu(spec, data, net, repeats: int, min_samples: int = 5000) -> dict:
    """Samples/s of the float reference per sample and of the batch reference, median of
    ``repeats`` interleaved runs of at least ``min_samples`` samples each, on one core: BLAS is
    limited to one thread (with two threads on a shared 2-core machine OpenBLAS slowed the batch
    reference 5 to 20 times whenever another job held a core)."""
    from threadpoolctl import threadpool_limits

    from sigprop_fpga.sim import baselines
    from sigprop_fpga.sim.reference import FloatSigProp

    with threadpool_limits(limits=1):
        out = _measure_cpu(spec, data, net, repeats, min_samples, FloatSigProp, baselines)
    out["blas_threads"] = 1
    return out


def _measure_cpu(spec, data, net, repeats, min_samples, FloatSigProp, baselines) -> dict:

    xtr, xte = data.float_inputs()
    ytr = data.y_train
    n = max(min_samples, len(ytr))
    epochs = math.ceil(min_samples / len(ytr))
    acts = {layer.activation for layer in spec.layers}
    kw = {"activation": acts.pop()} if len(acts) == 1 else {}
    rates = {"float_per_sample": [], "float_batched": []}
    for _ in range(repeats):
        eng = FloatSigProp(net)
        t0 = time.perf_counter()
        for i in range(n):
            eng.train_sample(xtr[i % len(ytr)], int(ytr[i % len(ytr)]))
        rates["float_per_sample"].append(n / (time.perf_counter() - t0))
        r = baselines.train_sigprop_batch(xtr, ytr, xte, data.y_test, hidden=spec.widths, epochs=epochs,
                                          seed=spec.learning.seed, n_classes=data.n_classes, **kw)
        rates["float_batched"].append(r.samples / r.seconds)
    out = {k: statistics.median(v) for k, v in rates.items()}
    out.update(all=rates, per_sample_samples=n, batched_samples=epochs * len(ytr), batch_size=32)
    return out


def measure_rtl(network, spec, data, net, engine, lanes, samples: int, build_root: Path,
                timeout_s: float = 900) -> dict:
    """Train the first ``samples`` training samples in Verilator (no test split) on ``engine`` (a
    :class:`sigprop_fpga.hdl.engines.Engine`) with ``lanes``; steady-state cycles between training
    predictions, and the engine's counters after the last one."""
    from sigprop_fpga.compiler.statemap import counter_names
    from sigprop_fpga.sim import verilator as vl
    from sigprop_fpga.rtl import BENCH_DIR, TOP, trainer_verilog
    from sigprop_fpga.toolchain import apply_verilator_env

    n = min(samples, len(data.y_train), 2000)       # the bench keeps the first 2000 prediction cycles
    if n < 2 * net.depth + 2:
        raise ValueError(f"{spec.name}: need at least {2 * net.depth + 2} samples for a steady state, got {n}")
    apply_verilator_env()
    est_cycles, map_lanes = engine.cycles(net, lanes).per_sample, list(engine.stage_lanes(net, lanes))
    t0 = time.perf_counter()
    text = trainer_verilog(net, data, engine, lanes, n, 0, 1)
    convert_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="sigprop-perf-") as tmp:
        vpath = Path(tmp) / f"{TOP}.v"
        vpath.write_text(text)
        info = vl.build(vpath, TOP, build_root)
    config = {"network": str(Path(network).resolve()), "lanes": map_lanes, "epochs": 1, "n_train": n,
              "n_test": 0, "check_every": 0, "cycles_per_sample": est_cycles,
              "rb_latency": engine.readback_latency}
    build_root.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="sigprop-perf-run-", dir=build_root))
    r = vl.run(info, "tb_trainer", test_dir=BENCH_DIR, config=config, run_dir=run_dir, timeout_s=timeout_s)
    d = (r.data or {}).get("trainer")
    if d is None or not d.get("bit_exact") or r.failed:
        raise RuntimeError(f"{spec.name}: the RTL run failed or differs from the golden model: "
                           f"{(d or {}).get('first_mismatch') or (d or {}).get('error') or r.messages}; "
                           f"log {r.log_file}")
    import shutil
    shutil.rmtree(run_dir, ignore_errors=True)
    st = steady_state(d["train_prediction_cycles"], net.depth)
    counters = d["rtl_counters"]
    names = counter_names(net)
    return {**st, "samples": n, "bit_exact": True, "sim_cycles": d["cycles"],
            "engine_cycles_counter": counters["cycles"], "engine_samples_counter": counters["samples"],
            "engine_cycles_per_sample": counters["cycles"] / counters["samples"],
            "stage_cycles": [counters[f"stage_cycles_{l}"] for l in range(net.depth) if f"stage_cycles_{l}" in names],
            "verilator_version": info.verilator_version, "build_cached": info.cached,
            "build_seconds": info.build_time_s, "convert_seconds": convert_s, "sim_wall_seconds": d["wall_seconds"],
            "sim_cycles_per_second": d["sim_cycles_per_second"]}


def plan_board(network: str, board: str):
    """What ``build`` decides for ``network`` on ``board`` (engine, lanes, stored samples, the
    fit-checked estimate): :func:`sigprop_fpga.boards.flow.prepare_network`; raises ``FitError``."""
    from sigprop_fpga.boards.flow import prepare_network
    return prepare_network(network, board)


class _NotCached(Exception):
    pass


def _refuse_step(*_args, **_kw):
    raise _NotCached()


def build_one(network: str, board: str, run_flow: bool, quiet: bool = False, seeds: int = 3) -> dict:
    """Fit check, then the build flow (``run_flow``) or only its cache (a build whose inputs are
    unchanged), then fmax over ``seeds`` nextpnr seeds (the build's and the next ones; only the
    cached ones without ``run_flow``); never raises for a refusal or a tool failure, the status
    says what happened."""
    from unittest import mock

    from sigprop_fpga.boards import get_target
    from sigprop_fpga.boards import build as board_build
    from sigprop_fpga.boards.build import seed_fmax
    from sigprop_fpga.boards.fit import FitError
    from sigprop_fpga.boards.flow import build_network

    t0 = time.perf_counter()
    target = get_target(board)
    base = {"network": Path(network).stem, "board": board, "device": target.device,
            "device_dsps": target.available("dsp")}
    try:
        d = plan_board(network, board)
    except FitError as e:       # the fit check build_network makes, with its numbers
        return {**base, "status": "does not fit", "problems": e.problems, "seconds": time.perf_counter() - t0}
    spec, est = d.spec, d.estimate
    base.update(network=spec.name, engine=d.plan.engine.name, lanes=d.plan.lanes_json,
                fit=fit_numbers(est, {k: target.available(k) for k in est}))

    def progress(line):
        if not quiet:
            print(f"  build {spec.name}/{board}: {line}", file=sys.stderr, flush=True)

    try:
        if run_flow:
            report = build_network(network, board, progress=progress)
        else:
            with mock.patch.object(board_build, "_run_step", _refuse_step):
                report = build_network(network, board)
    except FitError as e:
        return {**base, "status": "does not fit", "problems": e.problems, "seconds": time.perf_counter() - t0}
    except _NotCached:
        return {**base, "status": "not built", "seconds": time.perf_counter() - t0}
    except Exception as e:              # a tool failure (BuildError) or an elaboration error
        return {**base, "status": "build failed", "error": f"{type(e).__name__}: {' '.join(str(e).split())[:600]}",
                "seconds": time.perf_counter() - t0}
    keep = ("timing_met", "clock_mhz", "clock_search", "resources", "bitstream", "bitstream_sha256", "out_dir",
            "steps", "seconds", "skipped")
    res = report.get("resources", {})
    out = {**base, "status": "cached" if report.get("skipped") else "built",
           "dsp_used_pnr": (res.get("dsp") or {}).get("used"), **{k: report.get(k) for k in keep},
           "built_mhz": report["clock_mhz"]["achieved"], "fmax_build_seed": report.get("fmax_mhz")}
    first = int(report.get("seed", 1))
    want = [first + i for i in range(max(1, seeds))]
    try:
        if run_flow:
            runs = seed_fmax(report["out_dir"], want, progress=progress)
        else:
            runs = []
            for s in want:          # only what is cached: each seed is a place and route
                with mock.patch.object(board_build, "_run_step", _refuse_step):
                    try:
                        runs += seed_fmax(report["out_dir"], [s])
                    except _NotCached:
                        pass
    except Exception as e:              # a failed seed run: the build's own fmax stays
        runs = [{"seed": first, "fmax_mhz": report.get("fmax_mhz"), "timing_met": report.get("timing_met")}]
        out["note"] = f"seed runs failed: {type(e).__name__}: {' '.join(str(e).split())[:300]}"
    w = worst_fmax(runs)
    out.update(fmax_mhz=w["worst"], fmax_seeds=w["seeds"], timing_met_all_seeds=w["timing_met_all"],
               wall_seconds=time.perf_counter() - t0)
    return out


# ------------------------------------------------------------------------------------------------
# plots
# ------------------------------------------------------------------------------------------------

def write_plots(result: dict, out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    nets = result["networks"]
    boards = result["boards"]
    names = [n["name"] for n in nets]
    x = list(range(len(nets)))
    w = 0.8 / max(len(boards), 1)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    files = []

    def board_of(n, b):
        return next(e for e in n["boards"] if e["board"] == b)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), dpi=110)
    for j, b in enumerate(boards):
        xs = [i - 0.4 + w * (j + 0.5) for i in x]
        fits = [board_of(n, b)["status"] != "does not fit" for n in nets]
        util = [board_of(n, b).get("mac_utilization", n["mac_utilization"]) or 0 for n in nets]
        c = colors[j % len(colors)]
        for xx, u, f in zip(xs, util, fits):
            ax1.bar(xx, u, width=w, color=c if f else "none", edgecolor=c, hatch=None if f else "//")
            if not f or not u:
                ax1.text(xx, 0.03, "does not fit" if not f else "RTL failed", rotation=90, ha="center", va="bottom",
                         fontsize=7, bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
        frac = [board_of(n, b)["figures"]["fraction_of_device_limit"] for n in nets]
        ax2.bar(xs, [f or 0 for f in frac], width=w, color=colors[j % len(colors)], label=b)
        for xx, f, n in zip(xs, frac, nets):
            if f is None:
                ax2.text(xx, 0, board_of(n, b)["status"], rotation=90, ha="center", va="bottom", fontsize=7)
    ax1.axhline(0.85, color="grey", lw=0.8, ls="--")
    ax1.text(-0.55, 0.86, "0.85 (issue 6 target)", ha="left", va="bottom", fontsize=7, color="grey")
    ax1.set_ylim(0, 1.25)
    fr = [e["figures"]["fraction_of_device_limit"] or 0 for n in nets for e in n["boards"]]
    ax2.set_ylim(0, max(fr + [0.04]) * 1.3)
    ax1.set_ylabel("MAC utilization (ideal / measured cycles)")
    ax1.set_title("MAC utilization of the DSPs used", fontsize=10)
    ax2.set_ylabel("fraction of the device's DSP limit at the built clock")
    ax2.set_title("all the device's DSPs busy = 1", fontsize=10)
    handles = [Patch(color=colors[j % len(colors)], label=b) for j, b in enumerate(boards)]
    for ax in (ax1, ax2):
        ax.set_xlim(-0.6, len(nets) - 0.4)
        ax.set_xticks(x, names, rotation=20, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(handles=handles, fontsize=8, loc="upper right")
    fig.tight_layout()
    files.append(_save(fig, out_dir / "perf_utilization.png"))

    cpu = [n["cpu"]["float_per_sample"] for n in nets]
    bat = [n["cpu"]["float_batched"] for n in nets]
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=110)
    for j, b in enumerate(boards):
        xs = [i - 0.4 + w * (j + 0.5) for i in x]
        for xx, n in zip(xs, nets):
            e = board_of(n, b)
            f = e["figures"]
            if f["samples_per_second"]:
                ax.bar(xx, f["samples_per_second"], width=w, color=colors[j % len(colors)])
                ax.hlines(f["device_limit"], xx - w / 2, xx + w / 2, color="k", lw=2)
            else:
                ax.text(xx, min(cpu + bat) / 15, e["status"], rotation=90, ha="center", va="bottom", fontsize=7)
    ax.plot(x, cpu, "v", color="tab:red", label="CPU float, per sample")
    ax.plot(x, bat, "^", color="tab:purple", label="CPU float, batched (32)")
    handles = [Patch(color=colors[j % len(colors)], label=f"{b} at the built clock") for j, b in enumerate(boards)]
    handles += [plt.Line2D([], [], color="k", lw=2, label="physical limit (all device DSPs at the built clock)")]
    handles += ax.get_legend_handles_labels()[0]
    ax.set_yscale("log")
    vals = [v for n in nets for e in n["boards"] for v in (e["figures"]["samples_per_second"],
                                                         e["figures"]["device_limit"]) if v] + cpu + bat
    ax.set_ylim(min(vals) / 20, max(vals) * 3)
    ax.set_ylabel("training samples / s")
    ax.set_xlim(-0.6, len(nets) - 0.4)
    ax.set_xticks(x, names, rotation=20, ha="right", fontsize=8)
    ax.grid(axis="y", alpha=0.3, which="both")
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set_title("training samples/s at the built clock (measured cycles) against the physical limit and the CPU",
                 fontsize=10)
    files.append(_save(fig, out_dir / "perf_samples_per_second.png"))
    return files


def _save(fig, path: Path) -> str:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)
    return str(path)


# ------------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------------

def _is_default(network: str) -> bool:
    return Path(network).resolve() == DEFAULT_NETWORK


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--networks", nargs="+", metavar="YAML", help="default: every examples/*.yaml")
    ap.add_argument("--boards", nargs="+", choices=BOARDS, default=list(BOARDS))
    ap.add_argument("--samples", type=int, default=256, help="training samples simulated per network (default 256)")
    ap.add_argument("--repeats", type=int, default=3, help="CPU timing repeats (median)")
    ap.add_argument("--build", choices=BUILD_MODES, default="default",
                    help="default: build only examples/digits.yaml, use cached builds for the rest; "
                         "all: build everything that fits; none: cached builds only")
    ap.add_argument("--no-build", action="store_true", help="same as --build none")
    ap.add_argument("-j", "--jobs", type=int, default=1, help="builds at once (default 1)")
    ap.add_argument("--seeds", type=int, default=3,
                    help="nextpnr seeds per build for fmax (the worst is quoted; default 3)")
    ap.add_argument("--json", default="build/bench/perf.json")
    ap.add_argument("--plots", default="build/bench", help="folder of the PNGs")
    ap.add_argument("--build-root", default="build/cache/verilator", help="Verilator model cache")
    args = ap.parse_args(argv)
    if args.samples < 2:
        ap.error("--samples must be at least 2")
    if args.seeds < 1:
        ap.error("--seeds must be at least 1")
    mode = "none" if args.no_build else args.build
    networks = args.networks or [os.path.relpath(p) for p in sorted(glob.glob(str(ROOT / "examples" / "*.yaml")))]
    if not networks:
        ap.error("no network files (run from the repository root or pass --networks)")

    from tqdm import tqdm

    from sigprop_fpga.compiler.estimate import allocate_lanes, estimate
    from sigprop_fpga.compiler.rules import rule_costs
    from sigprop_fpga.io import write_json

    t_start = time.perf_counter()
    load0 = os.getloadavg()
    loaded = {}
    nets_out = []
    # 1. analytic figures and the CPU (before any simulation or build loads the machine)
    for network in tqdm(networks, desc="CPU float reference", unit="net"):
        spec, data, net = _load(network)
        lanes = allocate_lanes(net)
        est = estimate(net, lanes)
        loaded[network] = (spec, data, net, lanes, est)
        nets_out.append({"name": spec.name, "file": network, "n_inputs": net.n_inputs, "widths": list(spec.widths),
                         "n_classes": net.n_classes, "lanes": list(lanes), "dsps_used": est.total_lanes,
                         "macs_per_sample": est.macs_per_sample,
                         "ideal_cycles_per_sample": est.ideal_cycles_per_sample,
                         "estimated_cycles_per_sample": est.cycles_per_sample,
                         "estimated_stage_cycles": [s.cycles for s in est.stages],
                         "rules": rule_costs(net, lanes), "cpu": measure_cpu(spec, data, net, args.repeats)})
    # 2. cycles in Verilator
    failed = False
    for network, n_out in zip(tqdm(networks, desc="Verilator (build + train)", unit="net"), nets_out):
        spec, data, net, lanes, est = loaded[network]
        try:
            r = measure_rtl(network, spec, data, net, get_engine("pipelined"), lanes, args.samples,
                            Path(args.build_root))
        except Exception as e:          # reported, and the exit code says so; the other networks go on
            failed = True
            r = {"error": f"{type(e).__name__}: {' '.join(str(e).split())[:800]}", "cycles_per_sample": None}
            tqdm.write(f"  {spec.name}: the Verilator measurement FAILED: {r['error']}")
            attach_rtl(n_out, r)
            continue
        attach_rtl(n_out, r)
        stages = n_out["pipeline"]["stage_cycles"]
        how = "cached" if r["build_cached"] else f"built in {r['build_seconds']:.0f} s"
        tqdm.write(f"  {spec.name}: {r['cycles_per_sample']:,.1f} cycles/sample "
                   f"(ideal {est.ideal_cycles_per_sample:,.1f}, stages {stages}), Verilator model {how}")
    # 2b. the serial datapaths the boards choose (one Verilator run per network and lane count)
    from sigprop_fpga.boards.fit import FitError
    serial = {}
    for network in networks:
        for board in args.boards:
            try:
                d = plan_board(network, board)
            except FitError:
                continue
            if not d.plan.engine.overlaps_layers:
                serial.setdefault((network, d.plan.engine.name, d.plan.lanes), []).append(board)
    serial_rtl = {}
    for (network, name, P), on in tqdm(list(serial.items()), desc="Verilator, serial engines", unit="net"):
        spec, data, net, _lanes, _est = loaded[network]
        try:
            r = measure_rtl(network, spec, data, net, get_engine(name), P, args.samples, Path(args.build_root))
            tqdm.write(f"  {spec.name} (serial engine, {P} lanes, for {', '.join(on)}): "
                       f"{r['cycles_per_sample']:,.1f} cycles/sample")
        except Exception as e:
            failed = True
            r = {"error": f"{type(e).__name__}: {' '.join(str(e).split())[:800]}", "cycles_per_sample": None}
            tqdm.write(f"  {spec.name} (serial, {P} lanes): the Verilator measurement FAILED: {r['error']}")
        serial_rtl[(network, P)] = r
    # 3. builds (default network first, then the smaller designs first)
    tasks = [(network, board) for network in networks for board in args.boards]
    tasks.sort(key=lambda t: (not _is_default(t[0]), loaded[t[0]][4].macs_per_sample, t[1]))
    run_flow = {t: mode == "all" or (mode == "default" and _is_default(t[0])) for t in tasks}
    results = {}
    bar = tqdm(total=len(tasks), desc="fit check + place and route", unit="build")
    if args.jobs > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as ex:
            futs = {ex.submit(build_one, n, b, run_flow[(n, b)], seeds=args.seeds): (n, b) for n, b in tasks}
            for f in as_completed(futs):
                results[futs[f]] = f.result()
                bar.update(1)
    else:
        for n, b in tasks:
            bar.set_postfix_str(f"{Path(n).stem}/{b}")
            results[(n, b)] = build_one(n, b, run_flow[(n, b)], seeds=args.seeds)
            bar.update(1)
    bar.close()

    for n_out, network in zip(nets_out, networks):
        for board in args.boards:
            b = results[(network, board)]
            if b.get("engine") == "serial":
                b["rtl"] = serial_rtl.get((network, b["lanes"]), {"error": "not measured", "cycles_per_sample": None})
        attach_boards(n_out, [results[(network, board)] for board in args.boards])
    result = {"bench": "perf", "argv": sys.argv[1:] if argv is None else list(argv), "samples": args.samples, "repeats": args.repeats, "build_mode": mode,
              "seeds": args.seeds,
              "boards": list(args.boards), "default_network": os.path.relpath(DEFAULT_NETWORK),
              "host": {"cpu_count": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
                       "loadavg_start": load0, "loadavg_end": os.getloadavg()},
              "networks": nets_out}
    result["rows"] = flat_rows(nets_out)
    result["plots"] = write_plots(result, Path(args.plots))
    result["wall_seconds"] = time.perf_counter() - t_start
    print(format_tables(result))
    print(f"\nwall time {result['wall_seconds'] / 60:.1f} min; builds: --build {mode}; "
          f"wrote {args.json} and {', '.join(result['plots'])}")
    write_json(args.json, result)
    failed = failed or any(b["status"] == "build failed" for n in nets_out for b in n["boards"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
