"""Accuracy of the default network across seeds: float reference, golden model, and the
baselines (backprop, feedback alignment, direct feedback alignment, the batch SigProp reference)
on the same network and data. Prints a table and writes JSON.

    .venv/bin/python bench/accuracy.py [examples/digits.yaml] [--seeds 0 1 2] [--json build/bench/accuracy.json]
"""

import argparse
import dataclasses
import statistics
import sys
from pathlib import Path

from sigprop_fpga.compiler.spec import load_spec
from sigprop_fpga.io import format_table, write_json
from sigprop_fpga.sim import baselines
from sigprop_fpga.sim.datasets import input_power, load_dataset
from sigprop_fpga.compiler.network import Network
from sigprop_fpga.sim.train import train_sigprop

BASELINES = [("backprop (Adam, batch 32)", baselines.train_backprop),
             ("feedback alignment (SGD)", baselines.train_feedback_alignment),
             ("direct feedback alignment (SGD)", baselines.train_direct_feedback_alignment),
             ("SigProp batch reference v14 (Adam, batch 32)", baselines.train_sigprop_batch)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("network", nargs="?", default="examples/digits.yaml")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--json", default="build/bench/accuracy.json")
    args = ap.parse_args(argv)
    spec0 = load_spec(args.network)
    results = {}
    for seed in args.seeds:
        spec = dataclasses.replace(spec0, learning=dataclasses.replace(spec0.learning, seed=seed))
        data = load_dataset(spec)
        net = Network(spec, data.n_inputs, data.n_classes, input_power(data))
        for kind in ("float", "golden"):
            r, _ = train_sigprop(kind, net, data)
            results.setdefault(f"streaming SigProp, {kind}", []).append(r.test_accuracy)
            print(f"seed {seed} {kind}: {r.test_accuracy:.4f}", file=sys.stderr)
        xtr, xte = data.float_inputs()
        for name, fn in BASELINES:
            r = fn(xtr, data.y_train, xte, data.y_test, hidden=spec.widths, epochs=spec.learning.epochs,
                   seed=seed, n_classes=data.n_classes)
            results.setdefault(name, []).append(float(r.test_accuracy))
            print(f"seed {seed} {name}: {r.test_accuracy:.4f}", file=sys.stderr)
    rows = [[k, statistics.mean(v), min(v), max(v)] for k, v in results.items()]
    gap = statistics.mean(results["streaming SigProp, golden"]) - statistics.mean(results["streaming SigProp, float"])
    print(f"{spec0.name}: {spec0.widths}, {spec0.learning.epochs} epochs, seeds {args.seeds}")
    print(format_table(["method", "mean test acc", "min", "max"], rows))
    print(f"golden - float: {gap:+.4f}")
    write_json(args.json, {"network": spec0.name, "file": args.network, "seeds": args.seeds,
                           "test_accuracy": results, "golden_minus_float": gap})


if __name__ == "__main__":
    main()
