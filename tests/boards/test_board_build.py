"""End-to-end board builds (yosys, nextpnr, icepack/ecppack from yowasp) of a small real design.

The design blinks an LED from a counter and echoes bytes received on the board's USB-UART
(a real 8N1 receiver and transmitter at 115200 baud), clocked through the board PLL.
"""

import hashlib
import importlib
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from amaranth.hdl import Cat, Elaboratable, Module, Signal
from amaranth.lib import io

from sigprop_fpga.boards import get_target
from sigprop_fpga.boards.build import BuildError, build

build_mod = importlib.import_module("sigprop_fpga.boards.build")

BAUD = 115200


class UartEchoBlinky(Elaboratable):
    """LED 0 blinks at ~1 Hz; every byte received on the UART is sent back (8N1)."""

    def __init__(self, target, clk_mhz, blink_bit=None):
        self.target = target
        self.divisor = round(clk_mhz * 1e6 / BAUD)
        self.blink_bit = blink_bit

    def elaborate(self, platform):
        m = Module()
        m.submodules.led = led = io.Buffer("o", platform.request(*self.target.leds[0], dir="-"))
        uart_pins = platform.request(self.target.uart_resource, 0, dir="-")
        m.submodules.uart_rx = uart_rx = io.Buffer("i", uart_pins.rx)
        m.submodules.uart_tx = uart_tx = io.Buffer("o", uart_pins.tx)
        div = self.divisor

        counter = Signal(28)
        m.d.sync += counter.eq(counter + 1)
        bit = self.blink_bit or max(1, (div * BAUD).bit_length() - 1)
        m.d.comb += led.o.eq(counter[bit])

        # Receiver: 2-flop synchroniser, sample mid-bit.
        rx = Signal(init=1)
        rx_meta = Signal(init=1)
        m.d.sync += [rx_meta.eq(uart_rx.i), rx.eq(rx_meta)]
        rx_timer = Signal(range(div * 3 // 2 + 1))
        rx_bits = Signal(range(10))
        rx_shift = Signal(8)
        rx_data = Signal(8)
        rx_valid = Signal()
        m.d.sync += rx_valid.eq(0)
        with m.FSM(name="rx_fsm"):
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += [rx_timer.eq(div * 3 // 2 - 1), rx_bits.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(rx_timer != 0):
                    m.d.sync += rx_timer.eq(rx_timer - 1)
                with m.Else():
                    m.d.sync += [rx_timer.eq(div - 1), rx_bits.eq(rx_bits + 1)]
                    with m.If(rx_bits == 8):
                        with m.If(rx):               # valid stop bit
                            m.d.sync += [rx_data.eq(rx_shift), rx_valid.eq(1)]
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += rx_shift.eq(Cat(rx_shift[1:], rx))

        # Transmitter: start bit, 8 data bits, stop bit.
        tx_timer = Signal(range(div))
        tx_shift = Signal(10, init=0x3FF)
        tx_bits = Signal(range(11))
        m.d.comb += uart_tx.o.eq(tx_shift[0])
        with m.If(tx_bits == 0):
            with m.If(rx_valid):
                m.d.sync += [tx_shift.eq(rx_data.shift_left(1) | (1 << 9)),
                             tx_bits.eq(10), tx_timer.eq(div - 1)]
        with m.Elif(tx_timer != 0):
            m.d.sync += tx_timer.eq(tx_timer - 1)
        with m.Else():
            m.d.sync += [tx_shift.eq((tx_shift >> 1) | (1 << 9)), tx_bits.eq(tx_bits - 1),
                         tx_timer.eq(div - 1)]
        return m


CASES = {
    # board: (requested clock, expected achieved)
    "icebreaker": (40.0, 39.75),        # not exact: icepll gives 12 * 53 / 16
    "ulx3s-85f": (60.0, 60.0),
}


def _design(board, blink_bit=None):
    target = get_target(board)
    return UartEchoBlinky(target, target.achieved_mhz(CASES[board][0]), blink_bit)


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _leftovers(out_dir):
    return sorted(p.name for p in Path(out_dir).parent.iterdir()
                  if p.name.startswith(f".{Path(out_dir).name}."))


def _snapshot(out_dir):
    return {p.name: _sha(p) for p in Path(out_dir).iterdir() if p.is_file()}


class _LazyBuilds(dict):
    """board -> (out_dir, report, progress lines), built on first use (one per xdist worker)."""

    def __init__(self, root):
        super().__init__()
        self.root = root

    def __missing__(self, board):
        lines = []
        report = build(_design(board), board, self.root / board, clock_mhz=CASES[board][0],
                       name="echo", progress=lines.append,
                       estimated={"LUT": 150, "DSP": 0, "EBR": 0})
        self[board] = (self.root / board, report, lines)
        return self[board]


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """One build per board, shared by the checks below."""
    return _LazyBuilds(tmp_path_factory.mktemp("boards"))


@pytest.mark.parametrize("board", list(CASES))
def test_report_fields(board, builds):
    out_dir, r, lines = builds[board]
    target = get_target(board)
    requested, achieved = CASES[board]
    assert r["board"] == board and r["device"] == target.device
    assert r["clock_mhz"] == {"requested": requested, "achieved": achieved}
    assert r["pll"]["output_mhz"] == achieved
    assert r["fmax_mhz"] > requested and r["timing_met"] is True
    # the sync clock is constrained at the PLL output frequency
    (clock,) = r["clocks"].values()
    assert clock["constraint_mhz"] == pytest.approx(achieved, rel=1e-4)
    bit = Path(r["bitstream"])
    assert bit.parent == out_dir and bit.suffix == "." + target.bitstream_ext
    assert r["bitstream_sha256"] == _sha(bit) and r["bitstream_bytes"] == bit.stat().st_size
    for kind in ("lut", "dsp", "bram"):
        res = r["resources"][kind]
        assert 0 <= res["used"] <= res["available"] == target.available(kind)
    assert 30 < r["resources"]["lut"]["used"] < 400
    assert r["resources"]["lut"]["estimated"] == 150
    assert r["resources"]["pll"]["used"] == 1
    assert r["resources"]["io"]["used"] >= 3                 # clock, LED, UART rx/tx
    assert [s["step"] for s in r["steps"]] == ["synthesis", "place and route", "packing"]
    assert r["seconds"] > 0 and r["skipped"] is False
    # progress: a start and an end line per step
    for step in ("synthesis", "place and route", "packing"):
        assert sum(step in line for line in lines) == 2
    # files on disk: the report as returned, the stamp, nextpnr's JSON report, step logs
    assert json.loads((out_dir / "report.json").read_text()) == r
    stamp = json.loads((out_dir / "build.json").read_text())
    assert stamp["input_sha256"] == r["input_sha256"]
    pnr = json.loads((out_dir / "nextpnr-report.json").read_text())
    assert {"utilization", "fmax"} <= set(pnr)
    assert {"synth.log", "pnr.log", "pack.log"} <= {p.name for p in out_dir.iterdir()}
    assert _leftovers(out_dir) == []


@pytest.mark.parametrize("board", list(CASES))
def test_rerun_is_skipped_and_change_rebuilds(board, builds, tmp_path):
    out_dir, first, _ = builds[board]
    lines = []
    again = build(_design(board), board, out_dir, clock_mhz=CASES[board][0], name="echo",
                  progress=lines.append)
    assert again["skipped"] is True and any("up to date" in line for line in lines)
    assert again["bitstream_sha256"] == first["bitstream_sha256"]
    # a different design (or seed, or clock) is stale: rebuilt elsewhere to keep `builds` intact
    changed = build(_design(board, blink_bit=5), board, tmp_path / "c",
                    clock_mhz=CASES[board][0], name="echo")
    assert changed["input_sha256"] != first["input_sha256"]
    assert changed["bitstream_sha256"] != first["bitstream_sha256"]


def test_two_builds_same_bitstream(builds, tmp_path):
    """Determinism: a forced rebuild in another folder gives the same bitstream hash."""
    board = "icebreaker"
    _, first, _ = builds[board]
    second = build(_design(board), board, tmp_path / "again", clock_mhz=CASES[board][0],
                   name="echo", force=True)
    assert second["skipped"] is False
    assert second["bitstream_sha256"] == first["bitstream_sha256"]
    assert second["input_sha256"] == first["input_sha256"]


def test_ecp5_two_builds_same_bitstream(builds, tmp_path):
    board = "ulx3s-85f"
    _, first, _ = builds[board]
    second = build(_design(board), board, tmp_path / "again", clock_mhz=CASES[board][0],
                   name="echo", force=True)
    assert second["bitstream_sha256"] == first["bitstream_sha256"]


def _copy_build(src, dst):
    import shutil
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("exc", [BuildError("boom"), KeyboardInterrupt()])
def test_failed_build_keeps_previous(builds, tmp_path, monkeypatch, exc):
    """A step failing (or Ctrl-C) mid-build leaves the previous build intact and no temp dir."""
    out_dir = _copy_build(builds["icebreaker"][0], tmp_path / "prev")
    before = _snapshot(out_dir)
    real_run = build_mod._run_step
    seen = []

    def failing(argv, cwd, env, log, step):
        seen.append(step)
        if step == "place and route":
            assert Path(cwd).name.startswith(".prev.tmp-") and Path(cwd).is_dir()
            raise exc
        return real_run(argv, cwd, env, log, step)

    monkeypatch.setattr(build_mod, "_run_step", failing)
    with pytest.raises(type(exc)):
        # blink_bit changes the inputs, so this is a real rebuild, not a skip
        build(_design("icebreaker", blink_bit=7), "icebreaker", out_dir,
              clock_mhz=CASES["icebreaker"][0], name="echo")
    assert seen == ["synthesis", "place and route"]
    assert _snapshot(out_dir) == before
    assert _leftovers(out_dir) == []


def test_sigint_during_place_and_route(builds, tmp_path, monkeypatch):
    """A real SIGINT delivered while the place-and-route step runs: previous build intact, temp
    dir removed."""
    out_dir = _copy_build(builds["icebreaker"][0], tmp_path / "prev")
    before = _snapshot(out_dir)
    real_run = build_mod._run_step

    started = []
    # the step's tool starts 3 s late (nextpnr alone takes under a second on this design, too
    # close to the signal), so the Ctrl-C surely lands while the step's child runs
    slow = tmp_path / "slow-nextpnr"
    slow.write_text('#!/bin/sh\nsleep 3\nexec "$SLOW_REAL_TOOL" "$@"\n')
    slow.chmod(0o755)

    def interrupted(argv, cwd, env, log, step):
        if step == "place and route":
            var = argv[0].upper().replace("-", "_")
            env = {**env, var: str(slow), "SLOW_REAL_TOOL": env.get(var) or argv[0]}
            # Ctrl-C 0.5 s into the step, from another thread
            timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
            timer.start()
            started.append(time.monotonic())
        return real_run(argv, cwd, env, log, step)

    monkeypatch.setattr(build_mod, "_run_step", interrupted)
    # Python's Ctrl-C handler, also when a shell started the tests in the background (SIGINT
    # ignored from the start: Python then installs none and the signal would be lost)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            build(_design("icebreaker", blink_bit=7), "icebreaker", out_dir,
                  clock_mhz=CASES["icebreaker"][0], name="echo")
    finally:
        signal.signal(signal.SIGINT, previous)
    assert started and time.monotonic() - started[0] >= 0.5
    assert _snapshot(out_dir) == before
    assert _leftovers(out_dir) == []
    # and the next run notices the stale output and rebuilds it
    monkeypatch.setattr(build_mod, "_run_step", real_run)
    r = build(_design("icebreaker", blink_bit=7), "icebreaker", out_dir,
              clock_mhz=CASES["icebreaker"][0], name="echo")
    assert r["skipped"] is False and _sha(out_dir / "echo.bin") == r["bitstream_sha256"]
    assert _leftovers(out_dir) == []


def test_stale_temp_dirs_of_dead_builds_are_removed(builds, tmp_path):
    out_dir = _copy_build(builds["icebreaker"][0], tmp_path / "prev")
    dead = tmp_path / ".prev.tmp-999999999-dead"       # pid that cannot exist
    dead.mkdir()
    (dead / "echo.asc").write_text("half written")
    r = build(_design("icebreaker"), "icebreaker", out_dir, clock_mhz=CASES["icebreaker"][0],
              name="echo")
    assert r["skipped"] is True
    assert not dead.exists()


def test_tampered_bitstream_is_rebuilt(builds, tmp_path):
    out_dir = _copy_build(builds["icebreaker"][0], tmp_path / "prev")
    good = builds["icebreaker"][1]["bitstream_sha256"]
    (out_dir / "echo.bin").write_bytes(b"\0" * 16)
    r = build(_design("icebreaker"), "icebreaker", out_dir, clock_mhz=CASES["icebreaker"][0],
              name="echo")
    assert r["skipped"] is False and r["bitstream_sha256"] == good == _sha(out_dir / "echo.bin")


def test_oscillator_clock_without_pll(tmp_path):
    r = build(UartEchoBlinky(get_target("icebreaker"), 12.0), "icebreaker", tmp_path / "osc",
              name="echo")
    assert r["pll"] is None and r["clock_mhz"] == {"requested": 12.0, "achieved": 12.0}
    assert r["resources"]["pll"] == {"used": 0, "available": 1}
    assert r["timing_met"] and r["fmax_mhz"] > 12.0
    (clock,) = r["clocks"].values()
    assert clock["constraint_mhz"] == pytest.approx(12.0, rel=1e-4)


def test_failing_tool_reports_log_tail(tmp_path, monkeypatch):
    """A tool exiting non-zero raises BuildError naming the step, with the log tail."""
    monkeypatch.setenv("NEXTPNR_ICE40", "/bin/false")
    monkeypatch.setattr(build_mod, "amaranth_tool_env",
                        lambda: {k: v for k, v in _real_env().items() if k != "NEXTPNR_ICE40"})
    with pytest.raises(BuildError, match="place and route failed"):
        build(UartEchoBlinky(get_target("icebreaker"), 12.0), "icebreaker", tmp_path / "x",
              name="echo")
    assert not (tmp_path / "x").exists() and _leftovers(tmp_path / "x") == []


def test_failing_synthesis_reports_the_yosys_report_tail(tmp_path, monkeypatch):
    """Yosys runs with -q -l <name>.rpt: its error is in the report, and the BuildError shows it."""
    fake = tmp_path / "fake-yosys"
    fake.write_text("#!/bin/sh\necho 'ERROR: Assert failed in rtlil.cc:3091.' > echo.rpt\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(build_mod, "amaranth_tool_env",
                        lambda: {**{k: v for k, v in _real_env().items()}, "YOSYS": str(fake)})
    with pytest.raises(BuildError, match=r"synthesis failed .*echo\.rpt:\nERROR: Assert failed in rtlil\.cc:3091"):
        build(UartEchoBlinky(get_target("icebreaker"), 12.0), "icebreaker", tmp_path / "x", name="echo")
    assert not (tmp_path / "x").exists()


def _real_env():
    from sigprop_fpga.toolchain import amaranth_tool_env
    return amaranth_tool_env()


@pytest.mark.slow      # another nextpnr run of the iCEBreaker top (minutes): make test-slow
def test_seed_fmax_reroutes_the_netlist_with_other_seeds(builds):
    """fmax over seeds (the bench's): the build's seed from its report, another seed by nextpnr
    alone on the same netlist and constraint, cached; the bitstream is untouched."""
    from sigprop_fpga.boards.build import SEEDS_FILE, seed_fmax

    out_dir, r, _ = builds["icebreaker"]
    before = _snapshot(out_dir)
    runs = seed_fmax(out_dir, [1, 2])
    assert [x["seed"] for x in runs] == [1, 2]
    assert runs[0] == {"seed": 1, "fmax_mhz": r["fmax_mhz"], "timing_met": r["timing_met"], "cached": True}
    assert runs[1]["cached"] is False and runs[1]["fmax_mhz"] > 0 and runs[1]["timing_met"] in (True, False)
    again = seed_fmax(out_dir, [2])
    assert again == [dict(runs[1], cached=True)]
    after = _snapshot(out_dir)
    assert {k: v for k, v in after.items() if k != SEEDS_FILE} == before and SEEDS_FILE in after
    assert _leftovers(out_dir) == []
    with pytest.raises(BuildError, match="no finished build"):
        seed_fmax(out_dir.parent / "nothing-here", [1])
