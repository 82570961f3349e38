"""PLL divider search for iCE40 (icepll) and ECP5 (ecppll), and the board registry."""

import itertools

import pytest

from sigprop_fpga.boards import BOARDS, board_names, get_target
from sigprop_fpga.boards.pll import ECP5Pll, ICE40Pll

ICE40_FREQS = [16, 20, 24, 25, 30, 33.333, 36, 40, 48, 50, 60, 64, 75, 80, 100, 120, 150, 200, 275]
ECP5_FREQS = [10, 12, 16, 20, 30, 33.333, 40, 48, 50, 60, 65, 75, 80, 100, 125, 133.33, 150,
              200, 250, 400]


def _ice40_outputs(f_in):
    """Every legal SB_PLL40 SIMPLE output, by a straight enumeration (independent of search)."""
    outs = set()
    for divr, divf, divq in itertools.product(range(16), range(128), range(1, 7)):
        pfd = f_in / (divr + 1)
        vco = pfd * (divf + 1)
        out = vco / 2 ** divq
        if 10 <= pfd <= 133 and 533 <= vco <= 1066 and 16 <= out <= 275:
            outs.add(out)
    return outs


def _ecp5_outputs(f_in):
    outs = set()
    for ci, fb, op in itertools.product(range(1, 129), range(1, 81), range(1, 129)):
        pfd = f_in / ci
        out = pfd * fb
        vco = out * op
        if 3.125 <= pfd <= 400 and 10 <= out <= 400 and 400 <= vco <= 800:
            outs.add(out)
    return outs


@pytest.fixture(scope="module")
def ice40_outputs():
    return _ice40_outputs(12.0)


@pytest.fixture(scope="module")
def ecp5_outputs():
    return _ecp5_outputs(25.0)


def test_registry_has_both_boards():
    assert {"icebreaker", "ulx3s-85f"} <= set(board_names())
    assert get_target("icebreaker") is BOARDS["icebreaker"]
    assert get_target(BOARDS["ulx3s-85f"]) is BOARDS["ulx3s-85f"]
    with pytest.raises(KeyError, match="known boards: .*icebreaker"):
        get_target("nexys")


def test_device_resources():
    ice = get_target("icebreaker")
    assert (ice.device, ice.clock_in_mhz) == ("iCE40UP5K", 12.0)
    assert {k: ice.available(k) for k in ("lut", "dsp", "bram", "spram")} == \
        {"lut": 5280, "dsp": 8, "bram": 30, "spram": 4}
    assert ice.bram_bits == 4096 and ice.spram_bits == 256 * 1024
    ecp = get_target("ulx3s-85f")
    assert (ecp.device, ecp.clock_in_mhz) == ("LFE5U-85F", 25.0)
    assert {k: ecp.available(k) for k in ("lut", "dsp", "bram", "spram")} == \
        {"lut": 83640, "dsp": 156, "bram": 208, "spram": 0}
    assert ecp.kind_of("MULT18X18D") == "dsp" and ecp.kind_of("DP16KD") == "bram"
    assert ice.kind_of("ICESTORM_SPRAM") == "spram" and ice.kind_of("SB_I2C") is None


def test_icepll_known_vector():
    # `icepll -i 12 -o 48`: DIVR=0 DIVF=63 DIVQ=4 FILTER_RANGE=1, VCO 768 MHz.
    s = ICE40Pll().plan(12, 48)
    assert s.params == {"FEEDBACK_PATH": "SIMPLE", "PLLOUT_SELECT": "GENCLK",
                        "DIVR": 0, "DIVF": 63, "DIVQ": 4, "FILTER_RANGE": 1}
    assert (s.output_mhz, s.vco_mhz) == (48.0, 768.0)


def test_ecppll_known_vector():
    # `ecppll -i 25 -o 50`: CLKI_DIV=1 CLKFB_DIV=2 CLKOP_DIV=12, VCO 600 MHz.
    s = ECP5Pll().plan(25, 50)
    assert (s.params["CLKI_DIV"], s.params["CLKFB_DIV"], s.params["CLKOP_DIV"]) == (1, 2, 12)
    assert (s.output_mhz, s.vco_mhz) == (50.0, 600.0)


@pytest.mark.parametrize("f", ICE40_FREQS)
def test_ice40_pll(f, ice40_outputs):
    s = get_target("icebreaker").plan_clock(f)
    p = s.params
    assert s.output_mhz == pytest.approx(12 * (p["DIVF"] + 1) / ((p["DIVR"] + 1) * 2 ** p["DIVQ"]))
    assert s.vco_mhz == pytest.approx(12 / (p["DIVR"] + 1) * (p["DIVF"] + 1))
    assert 533 <= s.vco_mhz <= 1066 and 10 <= s.pfd_mhz <= 133
    assert 0 <= p["DIVR"] <= 15 and 0 <= p["DIVF"] <= 127 and 1 <= p["DIVQ"] <= 6
    assert p["FILTER_RANGE"] == ICE40Pll.filter_range(s.pfd_mhz)
    best = min(abs(o - f) for o in ice40_outputs)
    assert abs(s.output_mhz - f) == pytest.approx(best, abs=1e-9)   # the closest possible
    # Within 1% unless the device cannot do better (275 MHz: 12 MHz steps of VCO/2).
    assert s.error <= 0.01 or best / f > 0.01


@pytest.mark.parametrize("f", ECP5_FREQS)
def test_ecp5_pll(f, ecp5_outputs):
    s = get_target("ulx3s-85f").plan_clock(f)
    p = s.params
    assert s.output_mhz == pytest.approx(25 / p["CLKI_DIV"] * p["CLKFB_DIV"])
    assert s.vco_mhz == pytest.approx(s.output_mhz * p["CLKOP_DIV"])
    assert 400 <= s.vco_mhz <= 800 and 3.125 <= s.pfd_mhz <= 400
    assert 1 <= p["CLKI_DIV"] <= 128 and 1 <= p["CLKFB_DIV"] <= 80 and 1 <= p["CLKOP_DIV"] <= 128
    assert p["CLKOP_CPHASE"] == p["CLKOP_DIV"] - 1
    best = min(abs(o - f) for o in ecp5_outputs)
    assert abs(s.output_mhz - f) == pytest.approx(best, abs=1e-9)
    # Within 1% unless the device cannot do better (e.g. 48 MHz: PFD >= 3.125 MHz).
    assert s.error <= 0.01 or best / f > 0.01


def test_oscillator_frequency_needs_no_pll():
    assert get_target("icebreaker").plan_clock(12) is None
    assert get_target("ulx3s-85f").plan_clock(25.0) is None
    assert get_target("icebreaker").achieved_mhz(12) == 12.0
    assert get_target("icebreaker").achieved_mhz(50) == 50.25


@pytest.mark.parametrize("board,f", [("icebreaker", 10), ("icebreaker", 300),
                                     ("ulx3s-85f", 5), ("ulx3s-85f", 450)])
def test_out_of_range(board, f):
    with pytest.raises(ValueError, match="outside the .* output range"):
        get_target(board).plan_clock(f)


def test_tolerance_is_optional():
    with pytest.raises(ValueError, match="within 1.0%.*closest 46.875"):
        ECP5Pll().plan(25, 48, tolerance=0.01)
    assert ECP5Pll().plan(25, 48).output_mhz == 46.875
