"""The pure arithmetic of bench/perf.py: steady state, MAC utilization, the pipeline, the DSP limit
and its fractions, the CPU ratios, the fit numbers, and the printed table (no simulation, no build)."""

import importlib.util
import math
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "bench" / "perf.py"
_spec = importlib.util.spec_from_file_location("bench_perf", _PATH)
perf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(perf)


def test_steady_state_skips_the_fill_and_averages_exactly():
    # depth 1: the first 2 gaps (100, 90) are the fill; then 110, 100, 100, 100, 101
    times = [0, 100, 190, 300, 400, 500, 600, 701]
    s = perf.steady_state(times, depth=1)
    assert s["skipped"] == 2 and s["gaps"] == 5
    assert s["cycles_per_sample"] == (701 - 190) / 5 == 102.2
    assert (s["median"], s["min"], s["max"]) == (100, 100, 110)


def test_steady_state_short_runs():
    s = perf.steady_state([10, 30, 60], depth=2)          # 2 gaps, not more than 4: nothing skipped
    assert s["skipped"] == 0 and s["cycles_per_sample"] == 25
    with pytest.raises(ValueError):
        perf.steady_state([5], depth=1)


def test_mac_utilization():
    ideal, util = perf.mac_utilization(10624, 8, 1553)
    assert ideal == 1328
    assert util == pytest.approx(1328 / 1553)
    assert perf.mac_utilization(1000, 4, 250) == (250, 1.0)


def test_pipeline_figures():
    p = perf.pipeline_figures(1553, [1315, 1553])
    assert (p["sum"], p["slowest"]) == (2868, 1553)
    assert p["speedup"] == pytest.approx(2868 / 1553)
    assert p["between_over_slowest"] == 1
    p = perf.pipeline_figures(330, [100, 300, 200])
    assert p["speedup"] == pytest.approx(600 / 330) and p["between_over_slowest"] == pytest.approx(1.1)


def test_board_figures_limits_and_ratios():
    f = perf.board_figures(macs_per_sample=1000, cycles_per_sample=500, clock_mhz=50, dsps_used=4,
                           device_dsps=100, cpu={"float_per_sample": 1000, "float_batched": 20000})
    assert f["samples_per_second"] == pytest.approx(1e5)          # 50e6 / 500
    assert f["device_limit"] == pytest.approx(5e6)                # 100 * 50e6 / 1000
    assert f["fraction_of_device_limit"] == pytest.approx(0.02)
    assert f["used_dsp_limit"] == pytest.approx(2e5)              # 4 * 50e6 / 1000
    assert f["fraction_of_used_dsp_limit"] == pytest.approx(0.5)
    assert f["over_cpu"] == {"float_per_sample": pytest.approx(100), "float_batched": pytest.approx(5)}


@pytest.mark.parametrize("macs,cycles,fmax,dsps,device", [(10624, 1553, 36.9, 8, 156), (1452, 293, 40.27, 8, 8),
                                                          (103936, 3539, 30.0, 32, 156)])
def test_used_dsp_fraction_is_the_mac_utilization(macs, cycles, fmax, dsps, device):
    f = perf.board_figures(macs_per_sample=macs, cycles_per_sample=cycles, clock_mhz=fmax, dsps_used=dsps,
                           device_dsps=device)
    _, util = perf.mac_utilization(macs, dsps, cycles)
    assert f["fraction_of_used_dsp_limit"] == pytest.approx(util)
    assert f["fraction_of_device_limit"] == pytest.approx(util * dsps / device)
    assert f["samples_per_second"] == pytest.approx(fmax * 1e6 / cycles)


def test_board_figures_without_a_built_clock():
    f = perf.board_figures(macs_per_sample=1000, cycles_per_sample=500, clock_mhz=None, dsps_used=4,
                           device_dsps=8, cpu={"float_per_sample": 1000})
    assert f["samples_per_second"] is None and f["device_limit"] is None and f["over_cpu"] == {}
    assert f["device_dsps"] == 8


def test_worst_fmax_over_seeds():
    w = perf.worst_fmax([{"seed": 1, "fmax_mhz": 31.4, "timing_met": True},
                         {"seed": 2, "fmax_mhz": 30.2, "timing_met": True},
                         {"seed": 3, "fmax_mhz": 30.9, "timing_met": False}])
    assert (w["worst"], w["best"], w["seeds"], w["timing_met_all"]) == (30.2, 31.4, {1: 31.4, 2: 30.2, 3: 30.9}, False)
    w = perf.worst_fmax([{"seed": 1, "fmax_mhz": None, "timing_met": True}])
    assert w["worst"] is None and w["timing_met_all"]
    assert perf.worst_fmax([])["worst"] is None and not perf.worst_fmax([])["timing_met_all"]


def test_fit_numbers():
    fit = perf.fit_numbers({"lut": 11108, "dsp": 8, "bram": 30, "spram": 1}, {"lut": 5280, "dsp": 8, "bram": 30})
    assert fit["lut"] == {"needed": 11108, "available": 5280, "fraction": pytest.approx(11108 / 5280)}
    assert fit["dsp"]["fraction"] == 1.0 and fit["spram"]["fraction"] is None
    assert perf._fit_text(fit) == "does not fit: lut 11,108/5,280 (210%), spram 1/0"


def _network():
    n = {"name": "toy", "file": "toy.yaml", "n_inputs": 64, "widths": [32, 32], "n_classes": 10, "lanes": [4, 4],
         "dsps_used": 8, "macs_per_sample": 10000, "ideal_cycles_per_sample": 1250.0,
         "estimated_cycles_per_sample": 1600, "estimated_stage_cycles": [1300, 1600],
         "cpu": {"float_per_sample": 5000.0, "float_batched": 40000.0},
         "rules": {r: {"cycles_per_sample": c, "stored_activation_bits": a, "feedback_weight_bits": fb,
                       "weight_reads": 11, "weight_writes": 7, "weight_transport": t, "layers_overlap": r == "sigprop"}
                   for r, c, a, fb, t in (("sigprop", 1600, 0, 0, 0), ("backprop", 2100, 1088, 0, 1344),
                                          ("dfa", 1490, 1088, 10240, 0))}}
    perf.attach_rtl(n, {"cycles_per_sample": 1562.5, "stage_cycles": [1300, 1560]})
    fit = perf.fit_numbers({"lut": 11108, "dsp": 8, "bram": 30}, {"lut": 5280, "dsp": 8, "bram": 30})
    perf.attach_boards(n, [
        {"board": "icebreaker", "status": "does not fit", "fit": fit, "device_dsps": 8},
        # built at 50 MHz; fmax 53.1 is the worst of 3 seeds: the samples/s are at 50
        {"board": "ulx3s-85f", "status": "built", "built_mhz": 50.0, "fmax_mhz": 53.1,
         "fmax_seeds": {1: 55.0, 2: 53.1, 3: 54.2}, "timing_met": True, "device_dsps": 156, "dsp_used_pnr": 10}])
    return n


def test_attach_uses_measured_stages_and_pnr_dsps():
    n = _network()
    assert n["mac_utilization"] == pytest.approx(1250 / 1562.5) == pytest.approx(0.8)
    assert n["pipeline"]["stage_cycles_source"] == "engine counters"
    assert n["pipeline"]["sum"] == 2860 and n["pipeline"]["slowest"] == 1560
    ice, ecp = n["boards"]
    assert ice["figures"]["samples_per_second"] is None
    f = ecp["figures"]
    assert f["samples_per_second"] == pytest.approx(32000)              # 50e6 / 1562.5
    assert f["device_limit"] == pytest.approx(780000)                   # 156 * 50e6 / 10000
    assert f["used_dsp_limit"] == pytest.approx(50000)                  # 10 DSPs after place and route
    assert f["fraction_of_used_dsp_limit"] == pytest.approx(0.64)
    assert f["over_cpu"]["float_per_sample"] == pytest.approx(6.4)
    assert ecp["dsps_used_source"] == "place and route"
    rows = perf.flat_rows([n])
    assert [r["board"] for r in rows] == ["icebreaker", "ulx3s-85f"]
    assert rows[1]["fraction_of_device_limit"] == pytest.approx(32000 / 780000)
    n2 = perf.attach_rtl(dict(n), {"cycles_per_sample": 1600, "stage_cycles": []})
    assert n2["pipeline"]["stage_cycles_source"] == "estimate" and n2["pipeline"]["slowest"] == 1600


def test_table_shows_the_figures():
    n = _network()
    text = perf.format_tables({"samples": 256, "repeats": 3, "host": {"cpu_count": 2}, "networks": [n]})
    lines = text.splitlines()
    cyc = next(line for line in lines if line.startswith("toy ") and "64-32-32" in line)
    for want in ("4+4", "10,000", "1,250", "1,562", "0.8", "1,300+1,560", "2,860", "1,560", "1.002", "1.83"):
        assert want in cyc.split(), (want, cyc)
    ice = next(line for line in lines if line.startswith("toy ") and "icebreaker" in line)
    assert "does not fit: lut 11,108/5,280 (210%)" in ice
    ecp = next(line for line in lines if line.startswith("toy ") and "ulx3s-85f" in line)
    for want in ("built", "50", "53.10", "(3", "seeds)", "met", "32,000", "10/156", "780,000", "0.04103", "0.64",
                 "6.4", "0.8"):
        assert want in ecp.split(), (want, ecp)
    cpu = next(line for line in lines if line.startswith("toy ") and "40,000" in line)
    assert cpu.split()[1:] == ["5,000", "40,000", "8"]
    bp = next(line for line in lines if line.startswith("toy ") and "backprop" in line)
    assert bp.split()[2:] == ["2,100", "1,088", "0", "11", "7", "1,344", "no"]


def test_plots_are_written(tmp_path):
    files = perf.write_plots({"boards": ["icebreaker", "ulx3s-85f"], "networks": [_network()]}, tmp_path)
    assert [Path(f).name for f in files] == ["perf_utilization.png", "perf_samples_per_second.png"]
    for f in files:
        assert Path(f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not math.isnan(_network()["mac_utilization"])


def test_a_failed_rtl_run_is_reported_not_computed():
    n = _network()
    perf.attach_rtl(n, {"error": "RuntimeError: differs", "cycles_per_sample": None})
    perf.attach_boards(n, n["boards"])
    assert n["mac_utilization"] is None and n["pipeline"]["speedup"] is None and n["pipeline"]["sum"] == 2900  # the estimate
    assert all(b["figures"]["samples_per_second"] is None for b in n["boards"])
    text = perf.format_tables({"samples": 256, "repeats": 3, "host": {"cpu_count": 2}, "networks": [n]})
    assert "RTL FAILED" in text and "toy: Verilator: RuntimeError: differs" in text
