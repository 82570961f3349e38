"""The board tops trained on their simulated boards by the real host client, end to end.

    .venv/bin/python bench/board_sim.py [--network examples/digits.yaml] [--epochs 1]
                                        [--board both|icebreaker|ulx3s-85f] [--mode both|autonomous|stream]
                                        [--samples 300] [--garble-every 10] [--json OUT]

For each board, :func:`sigprop_fpga.rtl.simulate_board` builds the top ``build`` makes for it
(engine, on-chip dataset, UART host link at the board's clock and rate) in Verilator, starts
``sigprop-fpga run --port <pty>`` on a pseudo-terminal whose bytes cocotbext-uart plays on the
UART pins, corrupts the CRC of every N-th request frame and puts junk on the line, and the client
trains (autonomous: the samples the chip stores; stream: the first ``--samples`` training samples
sent by the host, then the test split), reads every weight, bias, table entry, cache and counter
back and compares them and every score or prediction with the golden model. The training phase is
timed by the board's own clock (its CLOCK register). Prints a table and writes JSON
(``build/bench/board_sim.json``); exit code 1 unless every run is bit exact.
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
    ap.add_argument("--board", choices=("both", "icebreaker", "ulx3s-85f"), default="both")
    ap.add_argument("--mode", choices=("both", "autonomous", "stream"), default="both")
    ap.add_argument("--samples", type=int, default=300, help="stream mode: training samples the host sends")
    ap.add_argument("--garble-every", type=int, default=10, help="corrupt every N-th request frame's CRC (0: none)")
    ap.add_argument("--json", default="build/bench/board_sim.json")
    args = ap.parse_args(argv)
    boards = ["icebreaker", "ulx3s-85f"] if args.board == "both" else [args.board]
    modes = ["autonomous", "stream"] if args.mode == "both" else [args.mode]
    runs, rows = [], []
    for board in boards:
        for mode in modes:
            t0 = time.perf_counter()
            r = simulate_board(args.network, board=board, epochs=args.epochs, stream=mode == "stream",
                               stream_samples=args.samples if mode == "stream" else None,
                               garble_every=args.garble_every, junk_after=[5, 11], timeout_s=3000)
            r["wall_seconds"] = time.perf_counter() - t0
            runs.append(r)
            limit = r.get("link_samples_per_second")
            rows.append([board, mode, r.get("board_engine"), r.get("samples"), r.get("on_chip_samples"),
                         r.get("bit_exact"), r.get("baud"), _f(r.get("samples_per_second")),
                         _f(r.get("engine_samples_per_second")), _f(limit), r.get("link_bytes_per_sample"),
                         (r.get("link_stats") or {}).get("garbled"), (r.get("link") or {}).get("retries"),
                         round(r["wall_seconds"], 1)])
    print(format_table(["board", "mode", "engine", "samples trained", "on chip", "bit exact", "baud",
                        "samples/s", "engine /s", "link limit /s", "link B/sample", "garbled", "retries",
                        "wall s"], rows))
    write_json(args.json, {"bench": "board_sim", "network": args.network, "epochs": args.epochs, "runs": runs})
    ok = all(r.get("bit_exact") is True and r.get("client_returncode") == 0 and not r.get("bench_failed")
             for r in runs)
    return 0 if ok else 1


def _f(v):
    return None if v is None else round(v)


if __name__ == "__main__":
    sys.exit(main())
