"""Accuracy on real data with the default settings: float, golden and the backprop baseline.

    .venv/bin/python bench/make_images.py            # build/data/digits28.npz (784 inputs)
    .venv/bin/python bench/real_data.py [--epochs 10] [--json build/bench/real_data.json]

For data sets of different widths (wine 13 inputs, breast cancer 30, digits 64, digits28 784),
a network file that names only the data set and the hidden widths (every other setting the
default: ``lr_shift: auto``, ``logit_shift: 2``, ``scaling: minmax``) trains the float reference,
the golden model (the hardware's arithmetic) and the float backprop baseline (Adam, batch 32, the
same widths and split) for the same epochs, in parallel over the machine's cores. Prints a table
and writes JSON; the README quotes it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sigprop_fpga import load                      # noqa: E402
from sigprop_fpga.io import format_table, write_json   # noqa: E402

SETS = {"wine": ("wine", [32, 32]), "breast_cancer": ("breast_cancer", [32, 32]), "digits": ("digits", [32, 32]),
        "digits28": (str(ROOT / "build" / "data" / "digits28.npz"), [256, 256])}


def _run(job):
    name, source, widths, model, rule, epochs, folder = job
    path = Path(folder) / f"{name}.yaml"
    path.write_text(f"name: {name}\ndataset: {{source: {source}}}\nnetwork: {{layers: {widths}}}\n"
                    f"learning: {{epochs: {epochs}}}\nboard: ulx3s-85f\n")
    d = load(path)
    r = d.train(model=model, rule=rule, epochs=epochs).to_json()
    return {"data": name, "inputs": d.net.n_inputs, "widths": widths, "model": model, "rule": rule,
            "lr_shifts": [d.net.lr_shift(l) for l in range(d.net.depth)], "test_accuracy": r["test_accuracy"],
            "curve": r["curve"], "collapsed": r.get("collapsed", False)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    ap.add_argument("-j", "--jobs", type=int, default=2)
    ap.add_argument("--json", default="build/bench/real_data.json")
    args = ap.parse_args(argv)
    if "digits28" in args.sets and not Path(SETS["digits28"][0]).is_file():
        print("build/data/digits28.npz is missing: run bench/make_images.py first", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        jobs = [(s, *SETS[s], model, rule, args.epochs, tmp) for s in args.sets
                for model, rule in (("golden", "sigprop"), ("float", "sigprop"), ("float", "bp"))]
        jobs.sort(key=lambda j: j[0] != "digits28")          # the long ones first
        with ProcessPoolExecutor(args.jobs) as ex:
            rows = list(ex.map(_run, jobs))
    table = []
    for s in args.sets:
        got = {(r["model"], r["rule"]): r for r in rows if r["data"] == s}
        g, f, bp = got[("golden", "sigprop")], got[("float", "sigprop")], got[("float", "bp")]
        table.append([s, g["inputs"], "-".join(map(str, g["widths"])), " ".join(map(str, g["lr_shifts"])),
                      f["test_accuracy"], g["test_accuracy"], bp["test_accuracy"],
                      round(100 * (g["test_accuracy"] - bp["test_accuracy"]), 1)])
    print(format_table(["data", "inputs", "hidden", "lr_shift (auto)", "SigProp float", "SigProp golden",
                        "backprop float", "golden - bp (points)"], table))
    write_json(args.json, {"epochs": args.epochs, "runs": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
