"""The default network trained on the simulated board top by the real host client, end to end.

    .venv/bin/python bench/board_sim.py [--network examples/digits.yaml] [--epochs 1]
                                        [--engine both|pipelined|serial] [--lanes 4] [--json OUT]

For each engine (the pipelined one the ULX3S-85F build holds, the serial one the iCEBreaker
build holds), :func:`sigprop_fpga.rtl.simulate_board` builds the board top (engine, on-chip
dataset, UART host link) in Verilator, starts ``sigprop-fpga run --port <pty>`` on a
pseudo-terminal bridged to the UART pins, garbles two request frames and puts junk on the line,
and the client trains the stored samples, reads every weight, bias, table entry, cache and
counter back over the UART and compares them and every epoch's scores with the golden model.
Prints a table and writes JSON (``build/bench/board_sim.json``); exit code 1 unless every run is
bit exact.
"""

import argparse
import sys
import time

from sigprop_fpga.io import format_table, write_json
from sigprop_fpga.rtl import simulate_board


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--network", default="examples/digits.yaml")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--engine", choices=("both", "pipelined", "serial"), default="both")
    ap.add_argument("--lanes", type=int, default=4, help="the serial engine's lanes (the iCEBreaker build's: 4)")
    ap.add_argument("--samples", type=int, default=None, help="training samples stored on chip (default all)")
    ap.add_argument("--json", default="build/bench/board_sim.json")
    args = ap.parse_args(argv)
    engines = ["pipelined", "serial"] if args.engine == "both" else [args.engine]
    runs, rows = [], []
    for engine in engines:
        t0 = time.perf_counter()
        r = simulate_board(args.network, epochs=args.epochs, samples=args.samples, garble_frames=[3, 9],
                           junk_after=[5, 11], serial_lanes=args.lanes if engine == "serial" else None,
                           timeout_s=3000)
        r["engine"], r["wall_seconds"] = engine, time.perf_counter() - t0
        runs.append(r)
        rows.append([engine, r.get("samples"), r.get("bit_exact"), r.get("test_accuracy"), r.get("golden_test_accuracy"),
                     (r.get("link_stats") or {}).get("garbled"), (r.get("link") or {}).get("retries"),
                     r.get("client_returncode"), round(r["wall_seconds"], 1)])
    print(format_table(["engine", "samples trained", "bit exact", "test accuracy", "golden", "garbled frames",
                        "client retries", "client exit", "wall s"], rows))
    write_json(args.json, {"bench": "board_sim", "network": args.network, "epochs": args.epochs, "runs": runs})
    ok = all(r.get("bit_exact") is True and r.get("client_returncode") == 0 and not r.get("bench_failed")
             for r in runs)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
