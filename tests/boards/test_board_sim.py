"""The board top in Verilator, trained by the real host client (``sigprop-fpga run``) through a
pseudo-terminal bridged to its UART pins, with garbled frames and junk on the line: the autonomous
mode (the chip trains on what it stores) and the stream mode (the host sends every sample, more
than the chip stores). Both use the same design, built once."""

import pytest

from sigprop_fpga.hostlink import Cmd
from sigprop_fpga.rtl import simulate_board

NET = """
name: iris_board
dataset: {source: iris}
network: {layers: [6, 5]}
learning: {lr_shift: 5}
hardware: {lanes: [2, 3]}
"""

CHIP_TRAIN = 60          # of iris's 105 training samples; the stream mode sends all of them


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """The network file and the Verilator build cache shared by the tests of this module."""
    f = tmp_path_factory.mktemp("board") / "net.yaml"
    f.write_text(NET)
    return f, tmp_path_factory.getbasetemp().parent / "design-verilator-cache"


def test_host_client_trains_the_simulated_board_bit_exact(board):
    f, cache = board
    r = simulate_board(f, epochs=2, samples=CHIP_TRAIN, garble_frames=[3, 10], junk_after=[5, 12],
                       build_root=cache, progress=False)
    assert r["client_returncode"] == 0 and r["bench_failed"] == 0
    assert r["mode"] == "autonomous" and r["bit_exact"] is True and r["first_mismatch"] is None
    assert r["curve"] == r["golden_curve"] and r["test_accuracy"] == r["golden_test_accuracy"]
    assert r["samples"] == 2 * CHIP_TRAIN
    # the two corrupted frames were answered BAD_CRC and resent; the junk was ignored
    assert r["link_stats"]["garbled"] == 2 and r["link_stats"]["junk"] == 2
    assert r["link"].get("not_executed") == 2 and r["link"].get("retries") == 2


def test_host_streams_more_than_the_chip_stores_bit_exact(board):
    f, cache = board
    # 8 samples in flight are more than the engine holds: the first SEND_SAMPLE stalls, the BUSY reply
    # says how many bytes were taken, the client reads the predictions, resends the rest and keeps
    # no more in flight than the engine took. Frames 0-8 set the run up, then SEND_SAMPLE and
    # READ_RESULTS take turns (a garbled frame's resend is a frame too).
    r = simulate_board(f, epochs=2, samples=CHIP_TRAIN, garble_frames=[11, 15], junk_after=[10, 17],
                       build_root=cache, progress=False, stream=True,
                       stream_window=8)
    assert r["client_returncode"] == 0 and r["bench_failed"] == 0
    assert r["mode"] == "stream" and r["bit_exact"] is True and r["first_mismatch"] is None
    assert (r["chip_n_train"], r["n_train"], r["n_test"]) == (CHIP_TRAIN, 105, 45)
    assert r["samples"] == 2 * 105 and r["predictions"] == 2 * 150
    assert r["counters"]["samples"] == 2 * 105 and r["counters"]["inferences"] == 2 * 45
    assert r["curve"] == r["golden_curve"] and r["train_curve"] == r["golden_train_curve"]
    assert r["link_stats"]["garbled_cmds"] == [Cmd.SEND_SAMPLE, Cmd.READ_RESULTS]
    assert r["link_stats"]["junk"] == 2
    assert r["link"].get("not_executed") == 2 and r["link"].get("retries") == 2
    assert r["busy_replies"] == 1 and r["link"]["busy"] == 1 and 1 <= r["window"] < 8


def test_host_client_trains_the_serial_engine_board_bit_exact(board):
    """The iCEBreaker's board top: the serial engine (2 lanes) behind the same host link; the
    client reads its lanes from the ENGINE register and checks every weight at the end."""
    f, cache = board
    r = simulate_board(f, epochs=1, samples=40, garble_frames=[4], junk_after=[6], build_root=cache,
                       progress=False, serial_lanes=2)
    assert r["client_returncode"] == 0 and r["bench_failed"] == 0
    assert r["mode"] == "autonomous" and r["bit_exact"] is True and r["first_mismatch"] is None
    assert r["curve"] == r["golden_curve"] and r["samples"] == 40
    assert r["link_stats"]["garbled"] == 1 and r["link_stats"]["junk"] == 1
