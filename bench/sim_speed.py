"""Simulated cycles per second: Verilator (through cocotb) against the Amaranth simulator, on the
same design and the same training samples, measured side by side in one run.

    .venv/bin/python bench/sim_speed.py [examples/digits.yaml] [--samples 60]

Both runs train the same first N samples of the default network from the same initial weights
and must agree with the golden model; the cycle counts come from the simulators (exact).
"""

import argparse
import time

import numpy as np

from sigprop_fpga.compiler.estimate import allocate_lanes
from sigprop_fpga.hdl.simulate import simulate
from sigprop_fpga.io import format_table, write_json
from sigprop_fpga.sim.datasets import load_network
from sigprop_fpga.sim.golden import GoldenSigProp
from sigprop_fpga.rtl import simulate_rtl


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("network", nargs="?", default="examples/digits.yaml")
    ap.add_argument("--samples", type=int, default=60)
    ap.add_argument("--json", default="build/bench/sim_speed.json")
    args = ap.parse_args(argv)
    spec, data, net = load_network(args.network)
    n = args.samples

    t0 = time.perf_counter()
    r_am = simulate(net, data.x_train[:n], data.y_train[:n], lanes=allocate_lanes(net))
    am_wall = time.perf_counter() - t0
    g = GoldenSigProp(net)
    want = [g.train_sample(data.x_train[i], int(data.y_train[i])) for i in range(n)]
    assert list(r_am["pred"]) == want, "Amaranth simulation disagrees with the golden model"
    am_cps = r_am["cycles"] / am_wall

    # Verilator: warm the build cache first so only simulation is timed
    simulate_rtl(args.network, epochs=1, samples=1, progress=False)
    r_vl = simulate_rtl(args.network, epochs=1, samples=n, progress=False)
    assert r_vl["bit_exact"], r_vl["first_mismatch"]
    vl_cps = r_vl["sim_cycles_per_second"]
    rows = [["Amaranth simulator (pysim)", r_am["cycles"], am_wall, am_cps],
            ["Verilator via cocotb", r_vl["cycles"], r_vl["wall_seconds"], vl_cps]]
    print(f"{spec.name}: {n} training samples" + (", then the test split in Verilator" if r_vl["n_test"] else ""))
    print(format_table(["simulator", "cycles", "wall s", "cycles/s"], rows))
    print(f"Verilator / Amaranth: {vl_cps / am_cps:.1f}x")
    write_json(args.json, {"network": spec.name, "samples": n, "amaranth_cycles_per_second": am_cps,
                           "verilator_cycles_per_second": vl_cps, "ratio": vl_cps / am_cps,
                           "amaranth_cycles": r_am["cycles"], "verilator_cycles": r_vl["cycles"],
                           "verilator_version": r_vl["verilator_version"]})


if __name__ == "__main__":
    main()
