"""``clock_mhz: max``: the PLL choice and the search, without nextpnr (a fake build whose fmax is
a function of the constrained clock)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sigprop_fpga.boards import clocksearch, get_target
from sigprop_fpga.boards.clocksearch import (BAUD_ERROR_BUDGET, baud_error, choose_clock,
                                             clock_candidates, search_clock)


def test_baud_error():
    assert baud_error(12.0, 115200) == pytest.approx(abs(12e6 / 104 - 115200) / 115200)   # 0.16%
    assert baud_error(30.0, 3_000_000) == 0.0                                          # divisor 10
    assert baud_error(31.5, 3_000_000) == pytest.approx(abs(31.5e6 / 10 - 3e6) / 3e6)  # 5%: round(10.5) = 10
    assert baud_error(10.0, 3_000_000) == float("inf")                                 # divisor 3 < 4
    with pytest.raises(TypeError, match="baud must be an int, got float"):
        baud_error(12.0, 115200.0)
    with pytest.raises(ValueError, match="must be positive"):
        baud_error(0.0, 115200)


@pytest.mark.parametrize("board", ["icebreaker", "ulx3s-85f"])
def test_candidates_are_what_the_pll_makes(board):
    t = get_target(board)
    cands = clock_candidates(t, baud=115200)
    assert cands == sorted(cands) and len(set(cands)) == len(cands)
    assert t.clock_in_mhz in cands                       # the oscillator without a PLL
    for f in cands:
        if f != t.clock_in_mhz:
            assert t.plan_clock(f).output_mhz == pytest.approx(f, abs=1e-9)
        assert baud_error(f, 115200) <= BAUD_ERROR_BUDGET
    # a fast link rules out clocks whose divisor rounds far (iCE40: 31.5 MHz / 3 Mbaud = 10.5)
    fast = clock_candidates(t, baud=3_000_000)
    assert all(baud_error(f, 3_000_000) <= BAUD_ERROR_BUDGET for f in fast)
    assert len(fast) < len(cands)


def test_choose_clock():
    ice = get_target("icebreaker")            # 12 MHz * (DIVF+1) / 2^DIVQ: 0.375 MHz steps near 30
    assert choose_clock(ice, 31.3, baud=115200) == 31.125
    assert choose_clock(ice, 31.125, baud=115200) == 31.125          # at most fmax, equal allowed
    assert choose_clock(ice, 31.3, baud=115200, below=31.125) == 30.75
    assert choose_clock(ice, 31.3, baud=3_000_000) == 30.375   # 30.75, 31.125 miss 3 Mbaud by 2.5%, 3.75%
    assert choose_clock(ice, 11.0, baud=115200) is None                # nothing at or below 11 MHz
    ecp = get_target("ulx3s-85f")
    f = choose_clock(ecp, 127.3, baud=115200)
    assert f <= 127.3 and not [g for g in clock_candidates(ecp, baud=115200) if f < g <= 127.3]
    for bad in (0, -1.0, None, "31", True):
        with pytest.raises(ValueError, match="fmax_mhz must be a positive number"):
            choose_clock(ice, bad, baud=115200)


class FakeBuild:
    """Stands in for :func:`boards.build.build`: writes a bitstream and a report; fmax is
    ``fmax(clock)``."""

    def __init__(self, fmax):
        self.fmax = fmax
        self.calls = []

    def __call__(self, top, target, out_dir, *, clock_mhz, allow_timing_fail, progress=None, seed=1, **kw):
        assert allow_timing_fail is True
        self.calls.append(clock_mhz)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "top.bin").write_bytes(f"{top}@{clock_mhz}".encode())
        (out_dir / "nextpnr-report.json").write_text("{}")
        fmax = self.fmax(clock_mhz)
        report = {"clock_mhz": {"requested": clock_mhz, "achieved": clock_mhz}, "fmax_mhz": fmax,
                  "timing_met": fmax >= clock_mhz, "bitstream_sha256": f"h{clock_mhz}", "seed": seed,
                  "out_dir": str(out_dir), "bitstream": str(out_dir / "top.bin"),
                  "nextpnr_report": str(out_dir / "nextpnr-report.json")}
        (out_dir / "report.json").write_text(json.dumps(report))
        return report


def _search(monkeypatch, tmp_path, fmax, board="icebreaker", baud=115200, **kw):
    fake = FakeBuild(fmax)
    monkeypatch.setattr(clocksearch, "build", fake)
    r = search_clock(lambda mhz: f"top{mhz}", board, tmp_path / "out", baud=baud, **kw)
    return r, fake


def test_search_probe_then_below_fmax(monkeypatch, tmp_path):
    """Probe at 32 (31.875 from the PLL; fmax 31.3), rebuild at the highest clock <= 31.3: met, done."""
    r, fake = _search(monkeypatch, tmp_path, lambda c: 31.3 if c > 31.5 else 31.2)
    assert len(fake.calls) == 2 and fake.calls[1] == 31.125
    assert fake.calls[0] == choose_clock("icebreaker", 32.0, baud=115200) == 31.875
    assert r["clock_mhz"] == {"requested": "max", "achieved": 31.125} and r["timing_met"]
    s = r["clock_search"]
    assert s["chosen_mhz"] == 31.125 and s["probe_mhz"] == 32.0 and s["seed"] == 1
    assert [a["fmax_mhz"] for a in s["attempts"]] == [31.3, 31.2]
    out = tmp_path / "out"
    assert r["out_dir"] == str(out) and r["bitstream"] == str(out / "top.bin")
    assert (out / "top.bin").read_bytes() == b"top31.125@31.125"          # the chosen attempt's
    assert json.loads((out / "report.json").read_text())["clock_search"] == s


def test_search_iterates_down_until_met(monkeypatch, tmp_path):
    # the placement gets worse each time: 31.3 at the probe, then 0.5 MHz below each clock tried
    r, fake = _search(monkeypatch, tmp_path, lambda c: 31.3 if c > 31.5 else c - 0.5 if c > 29.9 else 30.1)
    # 29.625 meets with fmax 30.1: one try at 30.0 (fmax 29.5, not met) keeps 29.625
    assert fake.calls[1:] == [31.125, 30.375, 29.625, 30.0]
    assert r["clock_search"]["chosen_mhz"] == 29.625 and r["timing_met"]
    assert (tmp_path / "out" / "top.bin").read_bytes() == b"top29.625@29.625"


def test_search_keeps_a_probe_that_met(monkeypatch, tmp_path):
    """The probe meets timing with fmax above it, the higher clock fails and nothing between the
    two is left: the probe's build is the answer."""
    r, fake = _search(monkeypatch, tmp_path, lambda c: 26.1 if c < 25.6 else 25.8, probe_mhz=25.5)
    assert fake.calls == [25.5, 25.875]
    assert r["clock_search"]["chosen_mhz"] == 25.5 and r["timing_met"]
    assert [a["timing_met"] for a in r["clock_search"]["attempts"]] == [True, False]


def test_search_gives_up_after_max_attempts(monkeypatch, tmp_path):
    r, fake = _search(monkeypatch, tmp_path, lambda c: c - 1.0, max_attempts=3)
    assert len(fake.calls) == 3 and not r["timing_met"]
    assert r["clock_search"]["chosen_mhz"] == fake.calls[-1]


def test_search_is_deterministic(monkeypatch, tmp_path):
    f = lambda c: 31.3 if c > 31.5 else c - 0.3 if c > 30.5 else 30.6
    r1, fake1 = _search(monkeypatch, tmp_path / "a", f)
    r2, fake2 = _search(monkeypatch, tmp_path / "b", f)
    assert fake1.calls == fake2.calls
    assert r1["clock_search"]["attempts"] == [
        dict(a, out_dir=a["out_dir"].replace(str(tmp_path / "b"), str(tmp_path / "a")))
        for a in r2["clock_search"]["attempts"]]


def test_search_argument_checks(monkeypatch, tmp_path):
    with pytest.raises(TypeError, match="max_attempts must be an int"):
        search_clock(lambda mhz: None, "icebreaker", tmp_path, baud=115200, max_attempts=2.0)
    with pytest.raises(ValueError, match="max_attempts must be at least 1"):
        search_clock(lambda mhz: None, "icebreaker", tmp_path, baud=115200, max_attempts=0)
    from sigprop_fpga.boards.build import BuildError
    with pytest.raises(BuildError, match="no icebreaker clock at or below 5 MHz"):
        search_clock(lambda mhz: None, "icebreaker", tmp_path, baud=115200, probe_mhz=5)


def _ulx3s_fmax(chase_fmax):
    """The ULX3S search of main's digits build (150 -> 77.69, 75 -> 74.01, 71.875 -> 83.55), with
    ``chase_fmax`` at any other clock."""
    return lambda c: {150.0: 77.69, 75.0: 74.01, 71.875: 83.55}.get(c, chase_fmax)


def test_search_tries_once_above_the_first_met(monkeypatch, tmp_path):
    """71.875 MHz meets with fmax 83.55: one more build at the highest 3 Mbaud clock at most 83.55
    (83.33), above the 75 MHz that failed; it meets too (fmax 88.0) and is kept; its fmax leaves
    room again but the search tries only once."""
    r, fake = _search(monkeypatch, tmp_path, _ulx3s_fmax(88.0), board="ulx3s-85f", baud=3_000_000)
    chase = choose_clock("ulx3s-85f", 83.55, baud=3_000_000)
    assert chase == pytest.approx(83.3333333, abs=1e-6) and baud_error(chase, 3_000_000) <= BAUD_ERROR_BUDGET
    assert fake.calls == [150.0, 75.0, 71.875, chase]
    s = r["clock_search"]
    assert s["chosen_mhz"] == chase and r["timing_met"] and r["clock_mhz"]["achieved"] == chase
    assert [a["timing_met"] for a in s["attempts"]] == [False, False, True, True]
    assert (tmp_path / "out" / "top.bin").read_bytes() == f"top{chase}@{chase}".encode()


def test_search_keeps_the_first_met_when_the_tries_above_fail(monkeypatch, tmp_path):
    """The try above (83.33) and the one halfway back (79.17) both fail: 71.875 stays."""
    r, fake = _search(monkeypatch, tmp_path, _ulx3s_fmax(77.0), board="ulx3s-85f", baud=3_000_000)
    assert fake.calls[:3] == [150.0, 75.0, 71.875] and len(fake.calls) == 5
    assert fake.calls[3] == pytest.approx(83.3333333, abs=1e-6)
    assert fake.calls[4] == pytest.approx(79.1666667, abs=1e-6)
    assert r["clock_search"]["chosen_mhz"] == 71.875 and r["timing_met"]
    assert r["bitstream_sha256"] == "h71.875"
    assert (tmp_path / "out" / "top.bin").read_bytes() == b"top71.875@71.875"


def test_search_tries_halfway_when_the_try_above_fails(monkeypatch, tmp_path):
    """Main's digits on the ULX3S: 150 -> 78.05, 75 -> 87.63 (met), 87.5 -> 77.93 (not met); then
    once halfway in the 3 Mbaud candidates strictly between 75 and 87.5 (the lower middle of 78.125
    ... 85.714: 81.25), which meets and is kept; the search ends there."""
    fmax = {150.0: 78.05, 75.0: 87.63, 87.5: 77.93}
    r, fake = _search(monkeypatch, tmp_path, lambda c: fmax.get(c, 84.0), board="ulx3s-85f", baud=3_000_000)
    assert fake.calls == [150.0, 75.0, 87.5, 81.25]
    s = r["clock_search"]
    assert s["chosen_mhz"] == 81.25 and r["timing_met"]
    assert [a["timing_met"] for a in s["attempts"]] == [False, True, False, True]
    assert (tmp_path / "out" / "top.bin").read_bytes() == b"top81.25@81.25"


def test_search_tries_no_clock_twice(monkeypatch, tmp_path):
    """The first met attempt's fmax reaches only clocks already tried (75 failed): no more builds."""
    r, fake = _search(monkeypatch, tmp_path, lambda c: {150.0: 77.69, 75.0: 74.01}.get(c, 75.2),
                      board="ulx3s-85f", baud=3_000_000)
    assert fake.calls == [150.0, 75.0, 71.875]
    assert r["clock_search"]["chosen_mhz"] == 71.875


def test_search_try_above_counts_against_max_attempts(monkeypatch, tmp_path):
    r, fake = _search(monkeypatch, tmp_path, _ulx3s_fmax(88.0), board="ulx3s-85f", baud=3_000_000,
                      max_attempts=3)
    assert fake.calls == [150.0, 75.0, 71.875] and r["clock_search"]["chosen_mhz"] == 71.875
