"""Simulated cycles per second: Verilator (through cocotb) against the Amaranth simulator, on the
same design, the same samples and the same readback, measured side by side in one run.

    .venv/bin/python bench/sim_speed.py [examples/digits.yaml] [--samples 60]

Both sides train the first N training samples from the same initial weights, then infer the
whole test split, then read the full state back through the readback port; both must agree with
the golden model. Each side's build is timed on its own and reported beside its run:

- Amaranth: the build is elaborating the design and preparing the simulator (``Simulator(dut)``);
  the run is the simulation, readback included.
- Verilator: the build is elaborating the design to Verilog plus Verilator's C++ build, made in a
  fresh cache folder (never a cached build); the run is the simulation, readback included.

Cycles per second divide each simulator's own cycle count by its run's wall time; the totals add
the build.
"""

import argparse
import tempfile
import time

import numpy as np

from sigprop_fpga.compiler.estimate import allocate_lanes
from sigprop_fpga.hdl.simulate import simulate
from sigprop_fpga.io import format_table, write_json
from sigprop_fpga.sim.datasets import load_network
from sigprop_fpga.sim.golden import GoldenSigProp
from sigprop_fpga.rtl import simulate_rtl


def amaranth_side(net, data, n: int) -> dict:
    """N training samples, the test split (inference), the readback, in the Amaranth simulator."""
    X = np.concatenate([data.x_train[:n], data.x_test])
    y = np.concatenate([data.y_train[:n], data.y_test])
    train = np.arange(len(y)) < n
    t0 = time.perf_counter()
    r = simulate(net, X, y, train=train, lanes=allocate_lanes(net))
    total = time.perf_counter() - t0
    g = GoldenSigProp(net)
    want = [g.train_sample(X[i], int(y[i])) if train[i] else g.infer(X[i]) for i in range(len(y))]
    assert list(r["pred"]) == want, "Amaranth simulation disagrees with the golden model"
    run = total - r["setup_seconds"]
    return {"build_seconds": r["setup_seconds"], "run_seconds": run, "cycles": r["cycles"],
            "cycles_per_second": r["cycles"] / run, "total_seconds": total}


def verilator_side(path: str, n: int) -> dict:
    """The same in Verilator: a build in a fresh cache folder, then the run."""
    with tempfile.TemporaryDirectory(prefix="sim-speed-") as cache:
        t0 = time.perf_counter()
        r = simulate_rtl(path, epochs=1, samples=n, progress=False, build_root=cache)
        total = time.perf_counter() - t0
    assert r["bit_exact"], r["first_mismatch"]
    assert not r["build_cached"]
    build = r["convert_seconds"] + r["build_seconds"]
    return {"build_seconds": build, "convert_seconds": r["convert_seconds"],
            "verilator_build_seconds": r["build_seconds"], "run_seconds": r["wall_seconds"],
            "cycles": r["cycles"], "cycles_per_second": r["sim_cycles_per_second"], "total_seconds": total,
            "n_test": r["n_test"], "verilator_version": r["verilator_version"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("network", nargs="?", default="examples/digits.yaml")
    ap.add_argument("--samples", type=int, default=60)
    ap.add_argument("--json", default="build/bench/sim_speed.json")
    args = ap.parse_args(argv)
    spec, data, net = load_network(args.network)
    n = args.samples
    am = amaranth_side(net, data, n)
    vl = verilator_side(args.network, n)
    rows = [[name, s["build_seconds"], s["cycles"], s["run_seconds"], s["cycles_per_second"], s["total_seconds"]]
            for name, s in (("Amaranth simulator (pysim)", am), ("Verilator via cocotb", vl))]
    print(f"{spec.name}: {n} training samples, the {vl['n_test']} test samples, one readback")
    print(format_table(["simulator", "build s", "cycles", "run s", "cycles/s", "total s"], rows))
    print(f"Verilator build: {vl['convert_seconds']:.1f} s to Verilog + {vl['verilator_build_seconds']:.1f} s "
          f"Verilator/C++; run speed Verilator / Amaranth: {vl['cycles_per_second'] / am['cycles_per_second']:.1f}x; "
          f"total Verilator / Amaranth: {vl['total_seconds'] / am['total_seconds']:.2f}x")
    write_json(args.json, {"network": spec.name, "samples": n, "n_test": vl["n_test"], "amaranth": am,
                           "verilator": vl, "run_speed_ratio": vl["cycles_per_second"] / am["cycles_per_second"],
                           "total_time_ratio": vl["total_seconds"] / am["total_seconds"],
                           "verilator_version": vl["verilator_version"]})


if __name__ == "__main__":
    main()
