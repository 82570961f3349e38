"""Which paths hold an ECP5 build back: nextpnr's critical path, and every failing class at once.

    .venv/bin/python bench/ecp5_paths.py BUILD_DIR [--period 8.0] [--top 40] [--trace REGEX ...]
                                                   [--from REGEX]

``BUILD_DIR`` is the folder of an ECP5 ``sigprop-fpga build`` (``-o``), or one attempt of its clock
search (``<out>.clock-search/<MHz>MHz``). Two views:

1. **nextpnr's critical path** (``nextpnr-report.json``): its routing hops with the arrival time
   at each, the routes of zero delay inside a carry chain left out. nextpnr reports one path per
   clock, the worst; placement moves it by about +-5 MHz from build to build.
2. **A rough static timing estimate of the synthesized netlist** (``<name>.json``, Yosys's, before
   placement) to see every class of failing endpoints at once, not only the worst: the arrival
   time at each flip-flop, block RAM and multiplier input, from each cell's delay (LUT4 0.24 ns,
   PFUMX/L6MUX21 0.2 ns, a carry step 0.05 ns; clock to out: flip-flop 0.52 ns, DP16KD without
   its output register 5.83 ns as nextpnr times it, MULT18X18D 0.74 ns) plus a route estimated from the net's fan-out
   (``0.9 + 0.35 log2(fan-out)`` ns). Endpoints later than ``--period`` are grouped by their
   start and end register (names without bit indices) and listed worst first with their count.
   The figures rank classes; they are not nextpnr's (routes are guessed, about 1.2x pessimistic
   on this design), and Yosys's LUT names follow ABC's sharing, not the source.

``--trace REGEX`` prints the LUT levels of the worst path into the endpoint whose cell and port
match (``--from`` restricts its start register), e.g. ``--trace 'stage1\\.last_col'``.
~2 s for the digits build.
"""

import argparse
import collections
import json
import math
import re
import sys
from pathlib import Path

_OUT = {"LUT4": "Z", "PFUMX": "Z", "L6MUX21": "Z"}
_START = {"TRELLIS_FF": 0.52, "DP16KD": 5.83, "MULT18X18D": 0.74, "TRELLIS_IO": 0.0, "EHXPLLL": 0.0}
_ENDS = ("TRELLIS_FF", "DP16KD", "MULT18X18D")


def _fail(msg: str):
    print(f"ecp5_paths: {msg}", file=sys.stderr)
    sys.exit(2)


def critical_path(report: dict) -> list[str]:
    """Lines of nextpnr's critical path(s) between clocked registers (``report``: its JSON)."""
    lines = [f"fmax: " + ", ".join(f"{clk} {v['achieved']:.2f} MHz (constraint {v['constraint']:.2f})"
                                  for clk, v in report.get("fmax", {}).items())]
    for path in report.get("critical_paths", []):
        if "async" in path["from"] + path["to"]:
            continue
        t = 0.0
        for step in path["path"]:
            t += step["delay"]
            if step["type"] != "routing" or step["delay"] <= 0:
                continue
            lines.append(f"  {t:6.2f} ns  +{step['delay']:.2f} route  {step['from'].get('cell', '?')[:70]}"
                         f" -> {step['to'].get('cell', '?')[:70]}")
        lines.append(f"  {t:6.2f} ns  total")
    return lines


class RoughTiming:
    """Arrival times over a Yosys ECP5 netlist (the top module of ``netlist``, a JSON dict)."""

    def __init__(self, netlist: dict):
        tops = [v for v in netlist.get("modules", {}).values() if v.get("attributes", {}).get("top")]
        if len(tops) != 1:
            raise ValueError("the netlist has no single top module (is it a Yosys JSON of a build?)")
        top = tops[0]
        self.cells = top["cells"]
        self.name = {}
        for n, v in top["netnames"].items():
            for b in v["bits"]:
                if isinstance(b, int) and (b not in self.name or n.count("$") < self.name[b].count("$")):
                    self.name[b] = n
        self.driver, self.fanout = {}, collections.Counter()
        for cn, c in self.cells.items():
            for port, bits in c["connections"].items():
                out = c.get("port_directions", {}).get(port) == "output"
                for b in bits:
                    if isinstance(b, int):
                        if out:
                            self.driver[b] = (cn, port)
                        else:
                            self.fanout[b] += 1
        self._memo = {}

    def _route(self, b) -> float:
        return 0.9 + 0.35 * math.log2(max(1, self.fanout.get(b, 1)))

    def _inputs(self, c):
        for port, bits in c["connections"].items():
            if c["port_directions"].get(port) == "input":
                for b in bits:
                    if isinstance(b, int):
                        yield port, b

    def arrival(self, b) -> tuple[float, str | None]:
        """(arrival time at net bit ``b``'s driver output, the start cell)."""
        stack = [b]
        while stack:                      # iterative: carry chains are deep
            x = stack[-1]
            if x in self._memo:
                stack.pop()
                continue
            if x not in self.driver:
                self._memo[x] = (0.0, None)
                stack.pop()
                continue
            cn, port = self.driver[x]
            c = self.cells[cn]
            if c["type"] in _START:
                self._memo[x] = (_START[c["type"]], cn)
                stack.pop()
                continue
            todo = [ib for _, ib in self._inputs(c) if ib not in self._memo]
            if todo:
                stack.extend(todo)
                continue
            best = (0.0, None)
            for ip, ib in self._inputs(c):
                a, s = self._memo[ib]
                if c["type"] == "CCU2C":
                    d = 0.05 if (ip == "CIN" and port == "COUT") else 0.25 if ip == "CIN" else 0.45
                    rt = 0.0 if ip == "CIN" else self._route(ib)
                else:
                    d = 0.24 if c["type"] == "LUT4" else 0.2
                    mux_in = c["type"] in ("PFUMX", "L6MUX21") and ip not in ("SD", "C0")
                    rt = 0.15 if mux_in else self._route(ib)
                if a + rt + d > best[0]:
                    best = (a + rt + d, s)
            self._memo[x] = best
            stack.pop()
        return self._memo[b]

    def endpoints(self) -> list[tuple[float, str, str, str | None, int]]:
        """(arrival, cell, port, start cell, net bit) of every register, block RAM and
        multiplier input, latest first."""
        out = []
        for cn, c in self.cells.items():
            if c["type"] not in _ENDS:
                continue
            for port, b in self._inputs(c):
                if port.startswith("CLK"):
                    continue
                a, s = self.arrival(b)
                out.append((a + self._route(b), cn, port, s, b))
        return sorted(out, key=lambda e: -e[0])

    def trace(self, b) -> list[str]:
        """The LUT levels of the latest path into net bit ``b``, first level first."""
        lines = []
        while b in self.driver:
            cn, _ = self.driver[b]
            c = self.cells[cn]
            lines.append(f"  {self.arrival(b)[0]:6.2f} ns  fan-out {self.fanout.get(b, 0):4d}  {c['type']:10s} "
                         f"{self.name.get(b, '?')[:90]}")
            if c["type"] in _START:
                break
            b = max((ib for _, ib in self._inputs(c)), key=lambda ib: self.arrival(ib)[0], default=None)
        return lines[::-1]


def _short(n):
    n = re.sub(r"^top\.core\.", "", n or "?")
    n = re.sub(r"(_TRELLIS_FF_Q.*|_LUT4.*|\$\d+.*|\.\d+\.\d+$)", "", n)
    return re.sub(r"\d+$", "#", n)


def classes(ends, period: float, top: int) -> list[str]:
    """The failing endpoints grouped by (start, end, D or enable), worst first."""
    fail = [e for e in ends if e[0] > period]
    lines = [f"{len(fail)} of {len(ends)} endpoints estimated later than {period} ns"]
    count, worst = collections.Counter(), {}
    for a, cn, port, s, _ in fail:
        k = (_short(s), _short(cn), port if port in ("CE", "LSR") else "D")
        count[k] += 1
        worst[k] = max(worst.get(k, 0.0), a)
    for k in sorted(count, key=lambda k: (-worst[k], -count[k]))[:top]:
        lines.append(f"  {worst[k]:6.2f} ns {count[k]:5d}  {k[0]:45s} -> {k[1]} .{k[2]}")
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build_dir", type=Path)
    ap.add_argument("--period", type=float, default=8.0, help="ns (default 8.0: 125 MHz)")
    ap.add_argument("--top", type=int, default=40, help="classes listed (default 40)")
    ap.add_argument("--trace", action="append", default=[], help="regex of an endpoint's cell.port")
    ap.add_argument("--from", dest="start", default=None, help="regex of the traced path's start cell")
    args = ap.parse_args(argv)
    if args.period <= 0 or args.top < 0:
        _fail(f"--period must be positive and --top non-negative, not {args.period} and {args.top}")
    d = args.build_dir
    if not d.is_dir():
        _fail(f"{d}: no such build folder")
    report = d / "nextpnr-report.json"
    if report.is_file():
        print("\n".join(critical_path(json.loads(report.read_text()))))
    else:
        print(f"({report} not found: no nextpnr report; place and route did not run)")
    nets = [p for p in d.glob("*.json") if p.name not in ("nextpnr-report.json", "report.json", "build.json")
            and not p.name.startswith("build_")]
    if len(nets) != 1:
        _fail(f"{d}: expected one Yosys netlist <name>.json, found {[p.name for p in nets] or 'none'}")
    try:
        rt = RoughTiming(json.loads(nets[0].read_text()))
    except (ValueError, KeyError) as e:
        _fail(f"{nets[0]}: {e}")
    ends = rt.endpoints()
    print("\n".join(classes(ends, args.period, args.top)))
    for pat in args.trace:
        cand = [e for e in ends if re.search(pat, f"{e[1]}.{e[2]}")
                and (args.start is None or re.search(args.start, e[3] or ""))]
        if not cand:
            print(f"--trace {pat}: no endpoint matches")
            continue
        a, cn, port, _, b = cand[0]
        print(f"--- {cn}.{port}: {a:.2f} ns")
        print("\n".join(rt.trace(b)))


if __name__ == "__main__":
    main()
