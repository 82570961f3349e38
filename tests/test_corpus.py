"""The malformed-input corpus (tests/corpus/): every hostile network file, dataset and command line
gets exactly its one-line message on stderr and exit code 2, never a traceback.

``tests/corpus/expected.yaml`` lists the cases: a file of the corpus (run as ``sigprop-fpga check
<file>``) or a command line (``args``), and the exact line. The cases run through the CLI's
``main`` in this process (fast); a few also run as a real ``python -m sigprop_fpga`` process.
"""

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

from sigprop_fpga.cli import main

CORPUS = Path(__file__).resolve().parent / "corpus"
CASES = yaml.safe_load((CORPUS / "expected.yaml").read_text())
SUPPORT = {"expected.yaml", "make_npz.py", "ok.yaml"}    # the index, the .npz writer, a valid network


def _args(case: str) -> list[str]:
    return CASES[case].get("args", ["check", case])


def _expected(case: str) -> str:
    return CASES[case]["message"].replace("{here}", str(CORPUS))


@pytest.mark.parametrize("case", sorted(CASES))
def test_case(case, monkeypatch, capsys):
    monkeypatch.chdir(CORPUS)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)    # e.g. numpy's invalid casts would print a second line
        try:
            code = main(_args(case))
        except SystemExit as e:       # argparse
            code = e.code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.endswith("\n")
    assert err[:-1] == _expected(case)


@pytest.mark.parametrize("case", ["yaml-nul-byte.yaml", "net-layers-negative.yaml", "npz-y-train-huge.yaml",
                                  "cli-unknown-command", "cli-run-timeout-negative"])
def test_case_in_a_process(case):
    r = subprocess.run([sys.executable, "-m", "sigprop_fpga", *_args(case)], cwd=CORPUS, capture_output=True,
                       text=True, timeout=120)
    assert "Traceback" not in r.stdout + r.stderr
    assert (r.returncode, r.stdout, r.stderr) == (2, "", _expected(case) + "\n")


def test_every_corpus_file_is_a_case():
    files = {p.name for p in CORPUS.iterdir() if p.is_file()} - SUPPORT
    npz = {f for f in files if f.endswith(".npz")}
    used = {a for case in CASES for a in _args(case)}
    assert files - npz - used == set(), "corpus files without a case in expected.yaml"
    texts = [(CORPUS / f).read_bytes() for f in files if f.endswith(".yaml")]
    pointed = {f for f in npz if any(f.encode() in t for t in texts)}
    assert npz - pointed == set(), ".npz files no corpus network file points at"
    assert len(CASES) >= 40


def test_npz_files_are_what_make_npz_writes(tmp_path):
    subprocess.run([sys.executable, str(CORPUS / "make_npz.py"), str(tmp_path)], check=True, capture_output=True)
    written = sorted(p.name for p in tmp_path.glob("*.npz"))
    assert written == sorted(p.name for p in CORPUS.glob("*.npz"))
    for name in written:
        assert (tmp_path / name).read_bytes() == (CORPUS / name).read_bytes(), name


def test_ok_is_valid(monkeypatch, capsys):
    # the cli-* cases fail because of their arguments only
    monkeypatch.chdir(CORPUS)
    assert main(["check", "ok.yaml"]) == 0
    assert "ok: iris" in capsys.readouterr().out
