"""Design-independent board build: Amaranth platform -> yosys -> nextpnr -> pack.

:func:`build` elaborates a top Elaboratable for a :class:`BoardTarget`, adds
the ``sync`` clock domain at ``clock_mhz`` (through the board PLL when
needed, see :class:`~sigprop_fpga.boards.pll.BoardClock`), and runs the three
steps of Amaranth's build plan itself (one progress line per step, one log
file per step). Figures come from nextpnr's machine-readable ``--report``
JSON (``utilization`` and ``fmax``), never from its log.

Output folder contract
----------------------
Everything is built in a hidden temporary folder next to ``out_dir``
(``.<out>.tmp-<pid>-<token>``) and moved into place only when the build
succeeded, so an interrupted or failed build leaves the previous good build
untouched and no temporary folder behind. ``out_dir`` then holds the
Amaranth products (``<name>.il``, ``<name>.json``, ``<name>.bin``/``.bit``...),
``nextpnr-report.json``, the step logs ``<step>.log``, ``report.json`` (the
dict :func:`build` returns) and ``build.json`` (a stamp with the hash of all
inputs: the generated RTLIL/constraints/scripts, tool versions, seed,
clock). A re-run whose inputs hash the same and whose bitstream still matches
its sha256 is skipped (``report["skipped"] is True``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from amaranth.hdl import ClockDomain, Elaboratable, Module

from sigprop_fpga.toolchain import amaranth_tool_env, toolchain_versions

from . import get_target
from .fit import merge_resources, resource_table, utilization_from_report
from ..hdl import relax_read_collisions
from .pll import BoardClock
from .targets import BoardTarget

__all__ = ["BuildError", "BoardTop", "build", "format_report", "input_hash", "read_report", "STEP_NAMES",
           "NEXTPNR_REPORT", "REPORT_FILE", "STAMP_FILE", "SEEDS_FILE", "seed_fmax"]

NEXTPNR_REPORT = "nextpnr-report.json"
REPORT_FILE = "report.json"
STAMP_FILE = "build.json"
#: :func:`seed_fmax`'s cache inside a build folder.
SEEDS_FILE = "seeds.json"
#: Bump when the meaning of the stamp or of the build changes.
_FLOW_VERSION = 3

#: Amaranth tool name -> step name shown in progress and used for the log file.
STEP_NAMES = {
    "yosys": "synthesis",
    "nextpnr-ice40": "place and route",
    "nextpnr-ecp5": "place and route",
    "icepack": "packing",
    "ecppack": "packing",
}
_LOG_NAMES = {"synthesis": "synth", "place and route": "pnr", "packing": "pack"}


class BuildError(RuntimeError):
    """A build step failed; the message names the step and ends with its log tail."""


class BoardTop(Elaboratable):
    """Wrap ``top`` with the board clock: ``sync`` at the PLL output (or the oscillator)."""

    def __init__(self, top: Elaboratable, target: BoardTarget, settings):
        self.top = top
        self.target = target
        self.settings = settings

    def elaborate(self, platform):
        m = Module()
        if self.settings is not None:
            m.domains.sync = ClockDomain("sync")
        m.submodules.board_clock = BoardClock(self.target, self.settings)
        m.submodules.top = self.top
        if self.target.setup is not None:
            self.target.setup(platform, m)
        return m


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _tool_versions() -> dict[str, str | None]:
    """Installed versions of the pinned toolchain (part of the stamp and of the report)."""
    return toolchain_versions()


def input_hash(files: Mapping[str, Any], meta: Mapping[str, Any]) -> str:
    """sha256 over the build plan's files (name and content) and ``meta`` (JSON)."""
    h = hashlib.sha256()
    for name in sorted(files):
        content = files[name]
        data = content.encode() if isinstance(content, str) else bytes(content)
        h.update(name.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
    h.update(json.dumps(meta, sort_keys=True, default=str).encode())
    return h.hexdigest()


def read_report(out_dir: str | os.PathLike) -> dict | None:
    """The ``report.json`` of a finished build, or ``None``."""
    try:
        return json.loads((Path(out_dir) / REPORT_FILE).read_text())
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------------
# atomic output folder
# ----------------------------------------------------------------------------

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (Linux ``renameat2``); ``False`` if unsupported."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return rc == 0


def _install(tmp: Path, out_dir: Path) -> None:
    """Move the finished ``tmp`` to ``out_dir``, replacing an older build."""
    if not out_dir.exists():
        os.rename(tmp, out_dir)
        return
    if _exchange(tmp, out_dir):          # tmp now holds the old build
        shutil.rmtree(tmp, ignore_errors=True)
        return
    old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}-{secrets.token_hex(4)}")
    os.rename(out_dir, old)
    os.rename(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cleanup_stale(out_dir: Path) -> None:
    """Remove temp folders of dead builds; restore an old build a crash left aside."""
    parent = out_dir.parent
    if not parent.is_dir():
        return
    olds = []
    for entry in parent.iterdir():
        for kind in ("tmp", "old"):
            prefix = f".{out_dir.name}.{kind}-"
            if not entry.name.startswith(prefix):
                continue
            try:
                pid = int(entry.name[len(prefix):].split("-", 1)[0])
            except ValueError:
                continue
            if pid != os.getpid() and _pid_alive(pid):
                continue
            if kind == "old":
                olds.append(entry)
            else:
                shutil.rmtree(entry, ignore_errors=True)
    for old in olds:
        if not out_dir.exists():
            os.rename(old, out_dir)
        else:
            shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------
# steps
# ----------------------------------------------------------------------------

def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _run_step(argv: list[str], cwd: Path, env: Mapping[str, str], log: Path, step: str) -> None:
    tool = argv[0]
    var = tool.upper().replace("-", "_")
    exe = env.get(var) or shutil.which(tool)
    if exe is None:
        raise BuildError(f"{step}: tool {tool!r} not found (set ${var} or install yowasp)")
    with open(log, "wb") as fh:
        proc = subprocess.run([exe, *argv[1:]], cwd=cwd, env=dict(env), stdout=fh,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        tail, name = _tail(log), log.name
        if not tail.strip():        # yosys -q -l: the messages are in its report file
            reports = sorted(Path(cwd).glob("*.rpt"), key=lambda p: p.stat().st_mtime)
            if reports:
                tail, name = _tail(reports[-1]), reports[-1].name
        raise BuildError(f"{step} failed ({tool} exited with {proc.returncode}); "
                         f"last lines of {name}:\n{tail}")


def _timing(report: Mapping, achieved_mhz: float) -> tuple[float | None, bool, dict]:
    """``(fmax_mhz, timing_met, clocks)`` from nextpnr's ``fmax`` section.

    ``fmax_mhz`` is that of the clock constrained nearest ``achieved_mhz``
    (the ``sync`` clock); ``timing_met`` requires every constrained clock to
    pass.
    """
    clocks = {name: {"achieved_mhz": float(v["achieved"]), "constraint_mhz": float(v["constraint"])}
              for name, v in report.get("fmax", {}).items()}
    if not clocks:
        return None, True, clocks
    main = min(clocks, key=lambda c: abs(clocks[c]["constraint_mhz"] - achieved_mhz))
    met = all(c["achieved_mhz"] >= c["constraint_mhz"] for c in clocks.values())
    return clocks[main]["achieved_mhz"], met, clocks


def build(top: Elaboratable, target: BoardTarget | str, out_dir: str | os.PathLike, *,
          clock_mhz: float | None = None, name: str = "top", seed: int = 1,
          progress: Callable[[str], None] | None = None,
          estimated: Mapping[str, int] | None = None,
          add_clock: bool = True, force: bool = False,
          stamp_extra: Mapping[str, Any] | None = None, allow_timing_fail: bool = False) -> dict:
    """Build ``top`` for ``target`` into ``out_dir`` and return the report.

    Parameters
    ----------
    top : Elaboratable
        The design. It uses the ``sync`` domain, which :func:`build` creates
        at ``clock_mhz`` (``add_clock=False`` if ``top`` makes its own), and
        requests its pins (UART, LEDs) from the platform.
    target : BoardTarget or str
        Board, e.g. ``"icebreaker"``.
    out_dir : path
        Final output folder (replaced atomically on success).
    clock_mhz : float, optional
        Requested ``sync`` frequency; default the board oscillator (no PLL).
    name : str
        Top-level name (file stem of the products).
    seed : int
        nextpnr ``--seed``; same inputs and seed give the same bitstream.
    progress : callable, optional
        Called with one line of text per step start and end.
    estimated : mapping, optional
        Pre-synthesis estimates per kind, shown beside the results in
        ``report["resources"]``.
    add_clock : bool
        Wrap ``top`` with :class:`BoardTop` (PLL + reset). Default ``True``.
    force : bool
        Rebuild even when ``build.json`` says the output is up to date.
    stamp_extra : mapping, optional
        More inputs for the stamp (e.g. the network file's hash).
    allow_timing_fail : bool
        Pass ``--timing-allow-fail`` to nextpnr, so a build that misses its clock still
        produces a bitstream and a report (``timing_met`` false); the ``clock_mhz: max``
        search (:mod:`.clocksearch`) uses it.

    Returns
    -------
    dict
        ``board``, ``device``, ``family``, ``name``, ``bitstream`` (absolute
        path), ``bitstream_sha256``, ``bitstream_bytes``, ``clock_mhz``
        (``{"requested", "achieved"}``), ``pll`` (settings or ``None``),
        ``fmax_mhz``, ``timing_met``, ``clocks`` (per nextpnr clock:
        ``achieved_mhz``, ``constraint_mhz``), ``resources`` (per kind:
        ``used``, ``available`` and ``estimated`` if given), ``cells`` (raw
        nextpnr utilization of used cell types), ``seed``, ``steps`` (name,
        seconds), ``seconds``, ``input_sha256``, ``tools``, ``out_dir``,
        ``skipped``.

    Raises
    ------
    BuildError
        If a tool fails (the previous build in ``out_dir`` stays intact).
    ValueError
        If ``clock_mhz`` is out of the board's PLL range.
    """
    t0 = time.monotonic()
    target = get_target(target)
    out_dir = Path(out_dir).absolute()
    say = progress or (lambda _msg: None)
    env = {**os.environ, **amaranth_tool_env()}

    requested = float(clock_mhz) if clock_mhz is not None else target.clock_in_mhz
    settings = target.plan_clock(requested)
    achieved = target.clock_in_mhz if settings is None else settings.output_mhz

    say(f"elaborating {name} for {target.name} ({target.device}) at {achieved:g} MHz"
        + (f" (requested {requested:g})" if abs(achieved - requested) > 1e-9 else ""))
    design = BoardTop(top, target, settings) if add_clock else top
    platform = target.platform()
    # the env is only read by the build script / our runner; keep os.environ clean.
    allow = " --timing-allow-fail" if allow_timing_fail else ""
    plan = platform.prepare(design, name=name, synth_opts=target.synth_opts,
                            nextpnr_opts=f"--seed {int(seed)} --report {NEXTPNR_REPORT}{allow} "
                                         f"{target.nextpnr_opts}".strip())
    il = f"{name}.il"
    if il in plan.files:        # no read-first emulation on the block RAMs (hdl.relax_read_collisions)
        plan.files[il] = relax_read_collisions(plan.files[il])
    meta = {"flow": _FLOW_VERSION, "board": target.name, "seed": int(seed),
            "clock_mhz": requested, "tools": _tool_versions(), "extra": dict(stamp_extra or {})}
    digest = input_hash(plan.files, meta)

    _cleanup_stale(out_dir)
    if not force:
        cached = _up_to_date(out_dir, digest)
        if cached is not None:
            say(f"up to date: {out_dir} (inputs unchanged, sha256 {cached['bitstream_sha256'][:12]})")
            cached = dict(cached, skipped=True)
            if estimated is not None:
                cached["resources"] = merge_resources(
                    {k: {kk: vv for kk, vv in v.items() if kk != "estimated"}
                     for k, v in cached["resources"].items()}, estimated)
            return cached

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        plan.extract(tmp)
        commands = json.loads((tmp / f"build_{name}.json").read_text())["commands"]
        commands = [c for c in commands if c and c[0] in STEP_NAMES]
        steps = []
        for i, argv in enumerate(commands, 1):
            step = STEP_NAMES[argv[0]]
            say(f"[{i}/{len(commands)}] {step} ({argv[0]}) ...")
            s0 = time.monotonic()
            _run_step(argv, tmp, env, tmp / f"{_LOG_NAMES[step]}.log", step)
            dt = time.monotonic() - s0
            steps.append({"step": step, "tool": argv[0], "seconds": round(dt, 3)})
            say(f"[{i}/{len(commands)}] {step} done in {dt:.1f} s")

        pnr = json.loads((tmp / NEXTPNR_REPORT).read_text())
        bit_name = f"{name}.{target.bitstream_ext}"
        bit_tmp = tmp / bit_name
        if not bit_tmp.is_file():
            raise BuildError(f"packing produced no {bit_name}")
        fmax, met, clocks = _timing(pnr, achieved)
        used = utilization_from_report(pnr, target)
        report = {
            "board": target.name,
            "device": target.device,
            "family": target.family,
            "name": name,
            "bitstream": str(out_dir / bit_name),
            "bitstream_sha256": _sha256_file(bit_tmp),
            "bitstream_bytes": bit_tmp.stat().st_size,
            "clock_mhz": {"requested": requested, "achieved": achieved},
            "pll": settings.to_json() if settings is not None else None,
            "fmax_mhz": fmax,
            "timing_met": met,
            "clocks": clocks,
            "resources": merge_resources(used, estimated),
            "cells": {cell: v for cell, v in sorted(pnr.get("utilization", {}).items())
                      if v.get("used")},
            "seed": int(seed),
            "steps": steps,
            "seconds": round(time.monotonic() - t0, 3),
            "input_sha256": digest,
            "tools": meta["tools"],
            "out_dir": str(out_dir),
            "nextpnr_report": str(out_dir / NEXTPNR_REPORT),
            "skipped": False,
        }
        (tmp / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
        (tmp / STAMP_FILE).write_text(json.dumps(
            {"input_sha256": digest, "meta": meta, "bitstream": bit_name,
             "bitstream_sha256": report["bitstream_sha256"]}, indent=2, default=str) + "\n")
        _install(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(f"bitstream {report['bitstream']} ({report['bitstream_bytes']} bytes), fmax "
        f"{fmax if fmax is None else round(fmax, 2)} MHz at {achieved:g} MHz: "
        f"timing {'met' if met else 'FAILED'} ({report['seconds']:.1f} s)")
    return report


def _with_seed(argv: list[str], seed: int, report: str, outputs: Mapping[str, str]) -> list[str]:
    """The nextpnr command ``argv`` with ``--seed seed``, ``--report report``, the output files
    renamed by ``outputs`` (option -> file) and ``--timing-allow-fail``."""
    out, i = [], 0
    while i < len(argv):
        a = argv[i]
        if a in ("--seed", "--report") or a in outputs:
            out += [a, str(seed) if a == "--seed" else report if a == "--report" else outputs[a]]
            i += 2
            continue
        out.append(a)
        i += 1
    if "--seed" not in out:
        out += ["--seed", str(seed)]
    if "--report" not in out:
        out += ["--report", report]
    if "--timing-allow-fail" not in out:
        out.append("--timing-allow-fail")
    return out


def seed_fmax(out_dir: str | os.PathLike, seeds, *,
              progress: Callable[[str], None] | None = None) -> list[dict]:
    """Place and route a finished build's netlist again with other nextpnr ``seeds`` (same
    constraint, same options) and read each fmax; the bitstream in ``out_dir`` is not touched.

    Synthesis does not depend on the seed, so only nextpnr runs (in a temporary folder). Results
    are cached in ``out_dir/seeds.json`` under the build's ``input_sha256``.

    Parameters
    ----------
    out_dir : path
        A folder :func:`build` finished (``report.json``, ``build_<name>.json``, the netlist).
    seeds : iterable of int
        nextpnr seeds; the build's own seed is answered from its report.
    progress : callable, optional

    Returns
    -------
    list of dict
        Per seed, in the order given: ``seed``, ``fmax_mhz``, ``timing_met``, ``cached``.

    Raises
    ------
    BuildError
        If ``out_dir`` holds no finished build or nextpnr fails.
    """
    out_dir = Path(out_dir).absolute()
    report = read_report(out_dir)
    if report is None:
        raise BuildError(f"{out_dir}: no finished build ({REPORT_FILE} missing)")
    seeds = [int(s) for s in seeds]
    say = progress or (lambda _msg: None)
    cache_path = out_dir / SEEDS_FILE
    try:
        cache = json.loads(cache_path.read_text())
        if cache.get("input_sha256") != report["input_sha256"]:
            cache = {}
    except (OSError, ValueError):
        cache = {}
    runs = dict(cache.get("seeds", {}))
    runs.setdefault(str(report["seed"]), {"fmax_mhz": report["fmax_mhz"], "timing_met": report["timing_met"]})
    achieved = report["clock_mhz"]["achieved"]
    name = report["name"]
    env = {**os.environ, **amaranth_tool_env()}
    results = []
    for seed in seeds:
        if str(seed) in runs:
            results.append({"seed": seed, **runs[str(seed)], "cached": True})
            continue
        commands = json.loads((out_dir / f"build_{name}.json").read_text())["commands"]
        pnr = next((c for c in commands if c and STEP_NAMES.get(c[0]) == "place and route"), None)
        if pnr is None:
            raise BuildError(f"{out_dir}: no place-and-route command in build_{name}.json")
        tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            tmp.mkdir(parents=True)
            for f in out_dir.iterdir():         # the netlist and the constraints nextpnr reads
                if f.is_file() and f.suffix in (".json", ".pcf", ".lpf", ".sdc", ".py"):
                    shutil.copy2(f, tmp / f.name)
            argv = _with_seed(pnr, seed, f"seed-{seed}.json",
                              {"--asc": f"seed-{seed}.asc", "--textcfg": f"seed-{seed}.config",
                               "--log": f"seed-{seed}.tim"})
            say(f"place and route with seed {seed} ...")
            s0 = time.monotonic()
            _run_step(argv, tmp, env, tmp / f"pnr-seed-{seed}.log", "place and route")
            fmax, met, _ = _timing(json.loads((tmp / f"seed-{seed}.json").read_text()), achieved)
            say(f"seed {seed}: fmax {fmax} MHz ({time.monotonic() - s0:.0f} s)")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        runs[str(seed)] = {"fmax_mhz": fmax, "timing_met": met}
        results.append({"seed": seed, "fmax_mhz": fmax, "timing_met": met, "cached": False})
        fd, part = tempfile.mkstemp(prefix=f".{SEEDS_FILE}.", dir=out_dir)
        with os.fdopen(fd, "w") as fh:
            json.dump({"input_sha256": report["input_sha256"], "seeds": runs}, fh, indent=2)
        os.replace(part, cache_path)
    return results


def _up_to_date(out_dir: Path, digest: str) -> dict | None:
    """The stored report if ``out_dir`` was built from the same inputs and is intact."""
    try:
        stamp = json.loads((out_dir / STAMP_FILE).read_text())
    except (OSError, ValueError):
        return None
    report = read_report(out_dir)
    if report is None or stamp.get("input_sha256") != digest:
        return None
    bit = out_dir / str(stamp.get("bitstream", ""))
    if not bit.is_file() or _sha256_file(bit) != stamp.get("bitstream_sha256"):
        return None
    return report


def _mhz(value) -> str:
    """A requested clock: a number of MHz, or ``max``."""
    return value if isinstance(value, str) else f"{value:g}"


def format_report(report: Mapping) -> str:
    """Human-readable summary of a :func:`build` report: header, timing, resource table."""

    clk = report["clock_mhz"]
    fmax = report.get("fmax_mhz")
    lines = [
        f"board     {report['board']} ({report['device']})",
        f"bitstream {report['bitstream']}",
        f"sha256    {report['bitstream_sha256']}",
        f"clock     {clk['achieved']:g} MHz (requested {_mhz(clk['requested'])})"
        + (f" via {report['pll']['primitive']}" if report.get("pll") else ""),
        f"fmax      {'-' if fmax is None else f'{fmax:.2f}'} MHz: timing "
        f"{'met' if report['timing_met'] else 'NOT met'}",
        *([f"search    " + ", ".join(f"{a['clock_mhz']:.4f} MHz: fmax {a['fmax_mhz']:.2f} "
                                     f"({'met' if a['timing_met'] else 'not met'})"
                                     for a in report["clock_search"]["attempts"])
           + f" (seed {report['clock_search']['seed']})"] if report.get("clock_search") else []),
        f"time      {report['seconds']:.1f} s"
        + (" (up to date, not rebuilt)" if report.get("skipped") else ""),
        "",
        resource_table(report["resources"]),
    ]
    return "\n".join(lines)
