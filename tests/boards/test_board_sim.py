"""The board top in Verilator, trained by the real host client (``sigprop-fpga run``) through a
pseudo-terminal whose bytes cocotbext-uart plays on its UART pins at 3 Mbaud, with garbled frames
and junk on the line: the autonomous mode (the chip trains on what it stores, twice: the second
run restarts the trained board), the stream mode (the host sends every sample, more than the
chip stores, at the link's rate) and the serial engine. The pipelined tests share one design."""

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


def test_host_client_trains_the_simulated_board_twice_bit_exact(board):
    """Two runs on one configured board: the second restarts it (RESTART and the initial state
    written over the link) and is bit exact again."""
    f, cache = board
    r = simulate_board(f, epochs=2, samples=CHIP_TRAIN, garble_frames=[3, 10], junk_after=[5, 12],
                       build_root=cache, progress=False, runs=2)
    assert r["client_returncode"] == 0 and r["bench_failed"] == 0
    assert r["link_stats"]["returncodes"] == [0, 0]
    assert r["mode"] == "autonomous" and r["bit_exact"] is True and r["first_mismatch"] is None
    assert r["curve"] == r["golden_curve"] and r["test_accuracy"] == r["golden_test_accuracy"]
    assert r["samples"] == 2 * CHIP_TRAIN and r["counters"]["samples"] == 2 * CHIP_TRAIN
    assert r["baud"] == 3_000_000 and r["divisor"] == 8 and r["clock_hz"] == 24e6
    # the two corrupted frames (both in the first run) were answered BAD_CRC and resent; the junk was ignored
    assert r["link_stats"]["garbled"] == 2 and r["link_stats"]["junk"] == 2


def test_host_streams_at_the_link_rate_bit_exact_through_garbled_frames(board):
    f, cache = board
    r = simulate_board(f, epochs=1, samples=CHIP_TRAIN, garble_every=3, junk_after=[20],
                       build_root=cache, progress=False, stream=True)
    assert r["client_returncode"] == 0 and r["bench_failed"] == 0
    assert r["mode"] == "stream" and r["bit_exact"] is True and r["first_mismatch"] is None
    assert (r["chip_n_train"], r["n_train"], r["n_test"]) == (CHIP_TRAIN, 105, 45)
    assert r["samples"] == 105 and r["predictions"] == 150
    assert r["counters"]["samples"] == 105 and r["counters"]["inferences"] == 45
    assert r["curve"] == r["golden_curve"] and r["train_curve"] == r["golden_train_curve"]
    stats = r["link_stats"]
    assert stats["garbled"] >= 3, stats
    assert Cmd.SEND_SAMPLE in stats["garbled_cmds"] and Cmd.READ_RESULTS in stats["garbled_cmds"], stats
    assert r["link"]["not_executed"] == stats["garbled"] and r["busy_replies"] == 0
    # the training phase by the board's clock: at least 80% of what the link (or the engine) allows
    # (the resent frames count in link_bytes_per_sample)
    limit = min(r["engine_samples_per_second"], r["baud_achieved"] / 10 / r["link_bytes_per_sample"])
    assert r["samples_per_second"] >= 0.8 * limit


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


def test_host_uploads_the_dataset_into_the_ram_and_the_chip_trains_from_it(board):
    """The iCEBreaker's SPRAM dataset (modelled with the SPRAMs' shape and timing): the first run
    uploads every sample over the link (CRC-checked frames, one garbled and resent), the chip
    trains from it; the second run finds the upload complete (DATA_FILL and DATA_CRC match),
    sends nothing, restarts the board and trains again, bit exact both times."""
    f, cache = board
    r = simulate_board(f, epochs=2, serial_lanes=2, dataset="ram", garble_frames=[20], build_root=cache,
                       progress=False, runs=2)
    assert r["client_returncode"] == 0 and r["link_stats"]["returncodes"] == [0, 0]
    assert r["mode"] == "autonomous" and r["bit_exact"] is True and r["first_mismatch"] is None
    assert r["on_chip_samples"] == 150 and (r["n_train"], r["n_test"]) == (105, 45)
    assert r["curve"] == r["golden_curve"] and r["samples"] == 210
    assert r["upload"]["words"] == 375 and r["upload"]["resumed_at"] == 375
    assert r["link_stats"]["garbled"] == 1 and r["link_stats"]["garbled_cmds"] == [Cmd.WRITE_MEM]


@pytest.mark.slow
def test_host_streams_wide_inputs_bit_exact(tmp_path_factory):
    """Inputs of 10 bits go as two bytes a feature, assembled on the chip before the engine."""
    f = tmp_path_factory.mktemp("wide") / "net.yaml"
    f.write_text(NET + "precision: {input: Q2.10}\n")
    cache = tmp_path_factory.getbasetemp().parent / "design-verilator-cache"
    r = simulate_board(f, epochs=1, samples=10, build_root=cache, progress=False, stream=True, stream_samples=40)
    assert r["client_returncode"] == 0 and r["bench_failed"] == 0
    assert r["mode"] == "stream" and r["bit_exact"] is True and r["first_mismatch"] is None
    assert r["bytes_per_sample"] == 9 and r["samples"] == 40 and r["predictions"] == 40 + 45


def test_board_continues_from_a_checkpoint_and_saves_its_state(board, tmp_path):
    """``run --init-weights``: the client writes a golden checkpoint into the board through the
    restart, the board trains on from it bit exact, and ``--save-weights`` writes the board's
    state read back, equal to the golden model continuing from the same checkpoint."""
    import numpy as np

    import sigprop_fpga as sf
    from sigprop_fpga.sim import checkpoint
    from sigprop_fpga.sim.compare import golden_feeder_run

    f, cache = board
    design = sf.load(f)
    first, after = tmp_path / "first.npz", tmp_path / "after.npz"
    design.train(model="golden", epochs=1, save_weights=first)
    r = simulate_board(f, epochs=1, samples=CHIP_TRAIN, build_root=cache, progress=False,
                       init_weights=first, save_weights=after)
    assert r["client_returncode"] == 0 and r["bench_failed"] == 0
    assert r["bit_exact"] is True and r["first_mismatch"] is None
    assert r["saved_weights"] == str(after.resolve())
    prior = checkpoint.load(first, design.net)
    golden, _ = golden_feeder_run(design.net, design.data, CHIP_TRAIN, len(design.data.y_test), 1,
                                  golden=checkpoint.golden_model(design.net, prior))
    saved, want = checkpoint.load(after, design.net).raw, golden.state()
    for key in ("W", "b", "T"):
        for l, (got, exp) in enumerate(zip(saved[key], want[key])):
            np.testing.assert_array_equal(got, exp, err_msg=f"{key}{l}")
    # the board trained on from the checkpoint: its weights moved
    assert any((np.asarray(a) != np.asarray(b)).any() for a, b in zip(saved["W"], prior.raw["W"]))
