"""``sigprop-fpga report DIR``: one Markdown page from the JSON files a run left in ``DIR``.

Reads whichever of these exist (each is written by the command named):

=====================  ==========================================
``check.json``         ``check --json``: the spec and the estimate
``train-float.json``   ``train --model float --json``
``train-golden.json``  ``train --model golden --json``
``sim.json``           ``sim --json``: the RTL run in Verilator
``sim-serial.json``    ``sim --engine serial --json``: the serial datapath's run
``manifest.json``      ``compile``: lanes, stages, memory map
``build.json``         ``build --json``: resources, timing, bitstream
``build-*.json``       more builds (one per board), in name order
=====================  ==========================================

and writes ``report.md`` with ``accuracy.png`` (test accuracy per epoch of float, golden and
RTL on one chart) and ``stage_cycles.png`` (cycles per stage, estimated and measured).
"""

from __future__ import annotations

import json
from pathlib import Path

from .io import write_atomic

__all__ = ["make_report", "load_builds", "saturation_warnings", "SATURATION_WARN_FRACTION"]

SATURATION_WARN_FRACTION = 0.01


def _load(d: Path, name: str):
    p = d / name
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{p}: expected a JSON report, {e}") from None


def _md_table(headers, rows) -> str:
    def cell(c):
        if isinstance(c, float):
            return f"{c:.4f}" if abs(c) < 1000 else f"{c:,.0f}"
        if isinstance(c, int) and not isinstance(c, bool):
            return f"{c:,}"
        return str(c)

    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def saturation_warnings(counters: dict, updates_per_sample: dict | None, samples: int) -> list[str]:
    """Warnings for every stage and variable that saturated on more than 1% of its updates.

    ``counters`` holds ``sat_<variable>_<stage>`` counts; ``updates_per_sample`` maps the same
    keys to how many values of that variable narrow per training sample.
    """
    out = []
    if not samples or not updates_per_sample:
        return out
    for key, n in sorted(counters.items()):
        if not key.startswith("sat_") or key not in updates_per_sample:
            continue
        total = updates_per_sample[key] * samples
        if total and n / total > SATURATION_WARN_FRACTION:
            _, var, stage = key.split("_", 2)
            out.append(f"stage {stage}: {var} saturated on {n / total:.1%} of its updates ({n:,} of {total:,})")
    return out


def _save(fig, path: Path) -> str:
    """Write a figure as PNG through a temporary name; returns the file name."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png")
    plt.close(fig)
    tmp.replace(path)
    return path.name


def _plot_accuracy(d: Path, curves: dict) -> str | None:
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
    for label, curve in curves.items():
        ax.plot(range(1, len(curve) + 1), curve, marker="o", markersize=3, label=label)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, d / "accuracy.png")


def _lanes_label(r: dict) -> str:
    """The lanes of a ``sim`` report as built: one number for an engine with one lane array (the
    serial engine's ``estimate.lanes``), else the lanes of each stage joined by ``+``."""
    hw = (r.get("estimate") or {}).get("lanes")
    if isinstance(hw, int):
        return f"{hw} (one array)"
    return "+".join(map(str, hw if isinstance(hw, list) else r.get("lanes", [])))


def _measured_stage_cycles(sim: dict | None, n_stages: int) -> list | None:
    """The RTL's cycles per training sample of each stage (``stage_cycles`` of a pipelined ``sim``
    report: the stages' counters read at a check after a training sample), if it has them."""
    if not sim or sim.get("engine", "pipelined") != "pipelined":
        return None
    measured = sim.get("stage_cycles")
    return measured if measured and len(measured) == n_stages else None


def _plot_stages(d: Path, stages: list, measured: list | None) -> str | None:
    if not stages:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=110)
    idx = list(range(len(stages)))
    w = 0.38 if measured else 0.6
    ax.bar([i - (w / 2 if measured else 0) for i in idx], [s["cycles"] for s in stages], width=w, label="estimated")
    if measured:
        ax.bar([i + w / 2 for i in idx], measured, width=w, label="measured (RTL)")
    ax.set_xticks(idx, [f"stage {i}\n{s['n_in']}->{s['units']}, {s['lanes']} lanes" for i, s in enumerate(stages)])
    ax.set_ylabel("cycles per training sample")
    ax.legend()
    return _save(fig, d / "stage_cycles.png")


def _clock_search_lines(search) -> list[str]:
    """The ``clock_mhz: max`` search of a build report, one sentence (none without a search)."""
    if not search:
        return []
    tries = "; ".join(f"{a['clock_mhz']:.4f} MHz: fmax {a['fmax_mhz']:.2f}, "
                      f"{'met' if a['timing_met'] else 'not met'}" for a in search["attempts"])
    return [f"Clock `max`: built at {search['chosen_mhz']:.4f} MHz after {len(search['attempts'])} builds "
            f"(seed {search['seed']}; probe {search['probe_mhz']:g} MHz; {tries}); host link "
            f"{search['baud']} baud off by {search['baud_error']:.2%} (budget {search['baud_error_budget']:.0%}).", ""]


def load_builds(d: str | Path) -> list[dict]:
    """The ``build.json`` and ``build-*.json`` reports in ``d`` (that order, then by name)."""
    d = Path(d)
    return [b for b in [_load(d, "build.json")] + [_load(d, p.name) for p in sorted(d.glob("build-*.json"))] if b]


def make_report(d: str | Path) -> Path:
    """Write ``DIR/report.md`` (and its PNGs); raises ``ValueError`` if ``DIR`` holds no report."""
    d = Path(d)
    if not d.is_dir():
        raise ValueError(f"{d}: expected a folder written by check, train, sim, compile or build")
    check, manifest = _load(d, "check.json"), _load(d, "manifest.json")
    trains = {k: _load(d, f"train-{k}.json") for k in ("float", "golden")}
    sim, build = _load(d, "sim.json"), _load(d, "build.json")
    sim_serial = _load(d, "sim-serial.json")
    builds = load_builds(d)
    build = builds[0] if builds else None
    if not any([check, manifest, sim, sim_serial, build, *trains.values()]):
        raise ValueError(f"{d}: expected at least one of check.json, train-float.json, train-golden.json, "
                         "sim.json, manifest.json, build.json")
    name = (check or manifest or sim or build or next(t for t in trains.values() if t)).get("name") \
        or (next((t for t in trains.values() if t), {}) or {}).get("network", d.name)
    lines = [f"# {name}", ""]

    # accuracy
    rows, curves = [], {}
    for kind, t in trains.items():
        if t:
            rows.append([f"{kind} ({t.get('rule', 'sigprop')})", t["epochs"], t["train_accuracy"], t["test_accuracy"],
                         t.get("samples_per_second", 0.0)])
            curves[kind] = t["curve"]
    if sim:
        rows.append(["RTL (Verilator)", sim.get("epochs", ""), sim.get("train_accuracy_online", ""),
                     sim.get("test_accuracy", ""), "(simulated)"])
        if sim.get("curve"):
            curves["RTL"] = sim["curve"]
    if rows:
        lines += ["## Accuracy", "", _md_table(["model", "epochs", "train accuracy", "test accuracy", "samples/s"], rows), ""]
        png = _plot_accuracy(d, curves)
        if png:
            lines += [f"![test accuracy per epoch]({png})", ""]
    sims = [r for r in (sim, sim_serial) if r]
    if sims:
        lines += ["## Cycle-accurate simulation", "",
                  _md_table(["engine", "lanes", "bit exact", "samples", "test accuracy", "cycles/sample", "ideal",
                             "MAC utilization", "first mismatch"],
                            [[r.get("engine", "pipelined"), _lanes_label(r),
                              r.get("bit_exact"), r.get("samples"), r.get("test_accuracy"),
                              r.get("cycles_per_sample"), r.get("ideal_cycles_per_sample"), r.get("mac_utilization"),
                              json.dumps(r.get("first_mismatch"))] for r in sims]), ""]
        lines += [f"Verilator {r.get('verilator_version')} ({r.get('engine', 'pipelined')}): {r.get('cycles', 0):,} "
                  f"cycles at {r.get('sim_cycles_per_second', 0):,.0f} cycles/s." for r in sims]
        lines += ["", "The RTL row's train accuracy is the online (pre-update) accuracy of the last epoch; "
                  "the serial datapath (`sim-serial.json`) is the one the iCEBreaker build holds.", ""]

    # stages
    est = (manifest or {}).get("estimate") or (check or {}).get("estimate")
    if est:
        measured = _measured_stage_cycles(sim, len(est["stages"]))
        rows = []
        for i, s in enumerate(est["stages"]):
            r = [i, f"{s['n_in']}->{s['units']}", s["lanes"], s["macs"], s["cycles"]]
            if measured:
                r.append(measured[i])
            rows.append(r)
        hdr = ["stage", "widths", "lanes", "MACs/sample", "est. cycles/sample"] + \
            (["measured (RTL) cycles/sample"] if measured else [])
        lines += ["## Stages", "", _md_table(hdr, rows), "",
                  f"Pipelined cycles per sample (slowest stage): {est['cycles_per_sample']:,}; "
                  f"sequential: {est['sequential_cycles']:,}; ideal on {est['total_lanes']} lanes: "
                  f"{est['ideal_cycles_per_sample']:,.0f}.", ""]
        png = _plot_stages(d, est["stages"], measured)
        if png:
            lines += [f"![cycles per stage]({png})", ""]

    # saturation
    counters = (sim or {}).get("counters") or (trains["golden"] or {}).get("counters")
    if counters:
        sat = {k: v for k, v in counters.items() if k.startswith("sat_")}
        if sat:
            lines += ["## Saturation", "", _md_table(["counter", "events"], sorted(sat.items())), ""]
        warns = saturation_warnings(counters, (sim or trains["golden"] or {}).get("updates_per_sample"),
                                    (sim or trains["golden"] or {}).get("samples", 0))
        lines += [f"**Warning:** {w}" for w in warns] + ([""] if warns else [])

    # collapse (sim.collapse.collapse_check, in each run's JSON)
    runs = [("float", trains["float"]), ("golden", trains["golden"]), ("RTL", sim), ("RTL serial", sim_serial)]
    collapsed = [(k, r["collapse_warning"]) for k, r in runs if r and r.get("collapsed")]
    if collapsed:
        lines += ["## Collapse", ""] + [f"**Warning ({k}):** {w}" for k, w in collapsed] + [""]

    # builds
    for build in builds:
        res = build.get("resources", {})
        rows = [[k, v.get("estimated", ""), v.get("used", ""), v.get("available", "")] for k, v in res.items()]
        clk = build.get("clock_mhz")
        if isinstance(clk, dict):
            clk = clk.get("achieved")
        sps = build.get("train_samples_per_second")
        engine = build.get("engine")
        lanes = build.get("lanes")
        how = ("" if engine is None else
               f" The {engine} engine, lanes {lanes}" + (" (one lane array for every layer)." if engine == "serial"
                                                         else " per stage."))
        lines += [f"## Build: {build.get('board')}", "",
                  f"Board {build.get('board')} ({build.get('device')}), clock {clk} MHz, "
                  f"fmax {build.get('fmax_mhz') or 0:.1f} MHz, timing {'met' if build.get('timing_met') else 'NOT met'}.{how}", "",
                  *_clock_search_lines(build.get("clock_search")),
                  _md_table(["resource", "estimated", "used", "available"], rows), "",
                  f"{build.get('cycles_per_sample', 0):,} cycles per training sample: "
                  + (f"{sps:,.0f} training samples/s at the built clock ({clk:g} MHz)." if sps and clk
                     else "clock unknown."), "",
                  f"Bitstream `{build.get('bitstream')}`, sha256 `{build.get('bitstream_sha256')}`.", ""]
    out = d / "report.md"
    write_atomic(out, "\n".join(lines))
    return out
