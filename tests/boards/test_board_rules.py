"""Board tops of the other learning rules (dfa, bp, fa): the build plan takes the rule's engine,
a rule that cannot fit a board is refused in one line with its numbers, and the board top trains
bit exact against that rule's golden model through the real host client (Verilator)."""

import pytest

from sigprop_fpga.boards import get_target
from sigprop_fpga.boards.fit import FitError
from sigprop_fpga.boards.flow import estimate_resources, plan_engine, prepare_network
from sigprop_fpga.cli import main
from sigprop_fpga.compiler.rule import RULE_NAMES
from sigprop_fpga.hdl.engines import get_engine
from sigprop_fpga.rtl import simulate_board
from sigprop_fpga.sim.datasets import load_network

DIGITS = "examples/digits.yaml"

NET = """
name: iris_rules_board
dataset: {source: iris}
network: {layers: [6, 5]}
learning: {lr_shift: 5}
hardware: {dsp_budget: 3}          # clock_mhz: max (the default): the sim runs at the oscillator
board: ulx3s-85f
"""


@pytest.mark.parametrize("rule", ["dfa", "bp", "fa"])
def test_build_plan_takes_the_rules_engine(rule):
    d = prepare_network(DIGITS, "ulx3s-85f", rule=rule)
    assert d.plan.engine.name == rule and d.plan.engine.rule == rule
    # as many lanes as the file's DSP budget (SigProp's pipelined engine gets the same 8)
    assert d.plan.lanes == 8 and d.estimate["dsp"] == 8 + 2
    # the default stays SigProp's pipelined engine
    assert prepare_network(DIGITS, "ulx3s-85f").plan.engine.name == "pipelined"


def test_a_named_engine_of_another_rule_is_refused():
    _, _, net = load_network(DIGITS)
    with pytest.raises(ValueError, match="engine serial builds the sigprop rule, not dfa"):
        plan_engine(net, get_target("ulx3s-85f"), "serial", rule="dfa")


def test_lut_model_follows_the_calibration():
    """The dfa engine's model against the board tops bench/calibrate_luts.py packed (nextpnr
    TRELLIS_COMB, ICESTORM_LC): digits at 8 and 2 lanes."""
    _, _, net = load_network(DIGITS)
    eng = get_engine("dfa")
    for family, lanes, packed in (("ecp5", 8, 10353), ("ecp5", 2, 7381), ("ice40", 8, 10873), ("ice40", 2, 7728)):
        lut = estimate_resources(eng, net, lanes, 0, family)["lut"]
        assert abs(lut / packed - 1) < 0.03, (family, lanes, lut, packed)


@pytest.mark.parametrize("rule", ["dfa", "bp"])
def test_icebreaker_refuses_in_one_line_with_the_numbers(rule, capsys):
    code = main(["build", DIGITS, "--board", "icebreaker", "--rule", rule])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    # one lane (the fewest) needs 28 of the 30 block RAMs but about 7,200 of the 5,280 logic cells
    assert f"does not fit: {rule} engine, 1 lane (the fewest lanes): LUT4: needs 7" in err
    assert "iCE40UP5K on icebreaker has 5280" in err and "block RAM" not in err


def test_run_rule_needs_sim(capsys):
    assert main(["run", DIGITS, "--port", "loop://", "--rule", "dfa"]) == 2
    assert "--rule are options of --sim" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["dfa", "fa"])
def test_board_top_trains_bit_exact_against_the_rules_golden_model(rule, tmp_path_factory):
    """The board top the build makes for the ULX3S around the rule's engine, trained by the host
    client over the simulated UART: every epoch's scores, the weights and the counters read back
    equal the rule's golden model; the ENGINE register told the client the rule."""
    f = tmp_path_factory.mktemp("rules-board") / "net.yaml"
    f.write_text(NET)
    cache = tmp_path_factory.getbasetemp().parent / "design-verilator-cache"
    r = simulate_board(f, board="ulx3s-85f", rule=rule, epochs=2, samples=60, build_root=cache, progress=False)
    assert r["client_returncode"] == 0 and r["bench_failed"] == 0
    assert r["board_engine"] == rule and r["rule"] == rule and RULE_NAMES.index(rule) > 0
    assert r["bit_exact"] is True and r["first_mismatch"] is None
    assert r["curve"] == r["golden_curve"] and r["counters"]["samples"] == r["samples"] > 0
