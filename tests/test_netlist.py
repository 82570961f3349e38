"""The netlist rung: the design synthesized by a board family's Yosys flow, simulated in
Verilator with the family's cell models, against the golden model, bit for bit.

``examples/iris.yaml`` on its first 60 training samples (and the 45 test samples): the serial
engine through ``synth_ice40 -dsp`` (SB_MAC16, SB_RAM40_4K from Yosys's models) and the
pipelined engine through ``synth_ecp5`` (MULT18X18D and DP16KD from ``sim/cells/ecp5_models.v``);
and a planted difference in the netlist (one inverted write-data bit of a weight bank) that
the bench must catch. Synthesis is cached by content under the session's shared folder, so the
planted run reuses the first run's netlist.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from sigprop_fpga.rtl import NETLIST_FAMILIES, NetlistError, _family_synth_opts, netlist_cell_models, \
    simulate_rtl, synthesize_netlist

IRIS = Path(__file__).resolve().parent.parent / "examples" / "iris.yaml"
SAMPLES = 60


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    # shared by the xdist workers: netlists and builds are keyed by content and locked
    return tmp_path_factory.getbasetemp().parent / "netlist-verilator-cache"


def _sim(cache, family, engine, **kw):
    return simulate_rtl(IRIS, samples=SAMPLES, netlist=family, engine=engine, build_root=cache,
                        progress=False, **kw)


def _invert_write_bit(text: str, instance: str, port: str) -> str:
    """``text`` with the last (least significant) bit of ``instance``'s ``port`` concatenation
    inverted: the cell writes that bit flipped."""
    start = text.index(f") {instance}  (")
    m = re.compile(rf"\.{port}\(\{{(.*?)\}}\)", re.S).search(text, start)
    bits = m.group(1).split(",")
    bits[-1] = f" ~{bits[-1].strip()} "
    return text[:m.start(1)] + ",".join(bits) + text[m.end(1):]


def test_ice40_serial_netlist_is_bit_exact(cache):
    r = _sim(cache, "ice40", "serial")
    assert r["netlist"] == "ice40"
    assert r["first_mismatch"] is None
    assert r["bit_exact"] is True
    assert r["samples"] == SAMPLES and r["checks"] >= 1
    # the hard blocks are in the netlist, simulated by Yosys's models
    assert r["netlist_cells"]["SB_MAC16"] > 0 and r["netlist_cells"]["SB_RAM40_4K"] > 0


def test_planted_netlist_difference_is_caught(cache):
    """The LSB of every word the serial engine writes into weight bank 0, inverted in the netlist."""
    r = _sim(cache, "ice40", "serial", edit_netlist=lambda t: _invert_write_bit(t, r"\engine.w0.0.0", "WDATA"))
    assert r["bit_exact"] is False
    mm = r["first_mismatch"]
    # the full-state check after the epoch (60 training + 45 test samples) finds the weights off
    assert mm is not None and mm["signal"] == "W" and mm["sample"] <= SAMPLES + 45


@pytest.mark.slow
def test_ecp5_pipelined_netlist_is_bit_exact(cache):
    r = _sim(cache, "ecp5", "pipelined")
    assert r["netlist"] == "ecp5"
    assert r["first_mismatch"] is None
    assert r["bit_exact"] is True
    assert r["samples"] == SAMPLES and r["checks"] >= 1
    assert r["netlist_cells"]["MULT18X18D"] > 0 and r["netlist_cells"]["DP16KD"] > 0


@pytest.mark.slow
def test_ecp5_lanes_are_registered_mult18x18d(cache):
    """The ECP5 netlist (the one the bit-exact run above simulates) holds the lanes as
    MULT18X18D with input and output registers (hdl.mac.MacLanes under the ecp5 family), not
    Yosys's combinational mapping: every multiplier's A, B and output registers are clocked."""
    from sigprop_fpga.rtl import trainer_rtlil
    from sigprop_fpga.hdl.engines import get_engine
    from sigprop_fpga.sim.datasets import load_network
    spec, data, net = load_network(IRIS)
    eng = get_engine("pipelined")
    lanes = eng.lane_choices(net)[0]
    text = trainer_rtlil(net, data, eng, lanes, SAMPLES, len(data.y_test), 1, family="ecp5")
    generic = trainer_rtlil(net, data, eng, lanes, SAMPLES, len(data.y_test), 1)
    assert "MULT18X18D" in text and "MULT18X18D" not in generic
    nl = synthesize_netlist(text, "ecp5", cache_root=cache / "netlist")
    assert nl.cells["MULT18X18D"] == sum(lanes)
    for reg in ("REG_INPUTA_CLK", "REG_INPUTB_CLK", "REG_OUTPUT_CLK"):
        assert nl.text.count(f'.{reg}("CLK0")') == sum(lanes), reg


def test_family_options_are_the_boards():
    assert _family_synth_opts("ice40") == "-dsp"
    assert _family_synth_opts("ecp5") == ""
    for family in NETLIST_FAMILIES:
        assert all(p.is_file() for p in netlist_cell_models(family))


def test_bad_arguments_are_refused():
    with pytest.raises(TypeError, match="rtlil_text"):
        synthesize_netlist(b"module", "ice40")
    with pytest.raises(ValueError, match="ecp5, ice40"):
        synthesize_netlist("", "xilinx")
    with pytest.raises(ValueError, match="netlist must be one of"):
        simulate_rtl(IRIS, samples=1, netlist="gowin")
    with pytest.raises(ValueError, match="edit_netlist"):
        simulate_rtl(IRIS, samples=1, edit_netlist=str.upper)


WIRE = "module \\sigprop_trainer\n  wire input 1 \\a\n  wire output 2 \\y\n  connect \\y \\a\nend\n"


def test_synthesis_is_cached_and_failures_name_yosys(tmp_path):
    first = synthesize_netlist(WIRE, "ice40", cache_root=tmp_path)
    again = synthesize_netlist(WIRE, "ice40", cache_root=tmp_path)
    assert (first.cached, again.cached) == (False, True)
    assert again.text == first.text and "module sigprop_trainer" in first.text
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".lock")) == [first.path.parent.name]
    with pytest.raises(NetlistError, match=r"(?s)synth_ice40 failed.*sigprop_trainer' not found"):
        synthesize_netlist(WIRE.replace("sigprop_trainer", "other"), "ice40", cache_root=tmp_path)


def test_cli_refuses_an_unknown_family():
    p = subprocess.run([sys.executable, "-m", "sigprop_fpga", "sim", str(IRIS), "--netlist", "xilinx"],
                       capture_output=True, text=True)
    assert p.returncode == 2
    assert "--netlist" in p.stderr and "ecp5, ice40" in p.stderr
