"""Training samples per second of the golden model and the float reference, measured side by
side in one run (interleaved repeats, median), on the same network and samples.

    .venv/bin/python bench/train_speed.py [examples/digits.yaml] [--samples 2000] [--repeats 3]
"""

import argparse
import statistics
import time

from sigprop_fpga.io import format_table, write_json
from sigprop_fpga.sim.datasets import load_network
from sigprop_fpga.sim.train import make_model


def _rate(kind, net, data, n):
    eng = make_model(kind, net)
    x = data.float_inputs()[0] if kind == "float" else data.x_train
    y = data.y_train
    t0 = time.perf_counter()
    for i in range(n):
        eng.train_sample(x[i % len(y)], int(y[i % len(y)]))
    return n / (time.perf_counter() - t0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("network", nargs="?", default="examples/digits.yaml")
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default="build/bench/train_speed.json")
    args = ap.parse_args(argv)
    spec, data, net = load_network(args.network)
    rates = {"float": [], "golden": []}
    for _ in range(args.repeats):
        for kind in rates:
            rates[kind].append(_rate(kind, net, data, args.samples))
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(format_table(["engine", "samples/s (median)", "min", "max"],
                       [[k, med[k], min(v), max(v)] for k, v in rates.items()]))
    print(f"golden / float: {med['golden'] / med['float']:.3f}")
    write_json(args.json, {"network": spec.name, "samples": args.samples, "repeats": args.repeats,
                           "samples_per_second": med, "all": rates, "golden_over_float": med["golden"] / med["float"]})


if __name__ == "__main__":
    main()
