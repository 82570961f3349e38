"""The board top in Verilator, trained by the real host client (``sigprop-fpga run``) through a
pseudo-terminal bridged to its UART pins, with garbled frames and junk on the line."""

from sigprop_fpga.sim.rtl import simulate_board

NET = """
name: iris_board
dataset: {source: iris}
network: {layers: [6, 5]}
learning: {lr_shift: 5}
hardware: {lanes: [2, 3]}
"""


def test_host_client_trains_the_simulated_board_bit_exact(tmp_path, tmp_path_factory):
    f = tmp_path / "net.yaml"
    f.write_text(NET)
    cache = tmp_path_factory.getbasetemp().parent / "design-verilator-cache"
    r = simulate_board(f, epochs=2, garble_frames=[3, 10], junk_after=[5, 12], build_root=cache, progress=False)
    assert r["client_returncode"] == 0 and r["bench_failed"] == 0
    assert r["bit_exact"] is True and r["first_mismatch"] is None
    assert r["curve"] == r["golden_curve"] and r["test_accuracy"] == r["golden_test_accuracy"]
    assert r["samples"] == 2 * 105
    # the two corrupted frames were answered BAD_CRC and resent; the junk was ignored
    assert r["link_stats"]["garbled"] == 2 and r["link_stats"]["junk"] == 2
    assert r["link"].get("not_executed") == 2 and r["link"].get("retries") == 2
