"""The ECP5 cell models (sim/cells/ecp5_models.v) on their own, against Python references.

The netlist rung (``sigprop-fpga sim --netlist ecp5``) simulates Yosys's MULT18X18D and DP16KD
cells with these models; here each mode the netlists use (the combinational multiplier; x18,
x36 pseudo dual port, x9/x18 and x2 block RAMs) and the modes the models claim beyond them
(input/pipeline/output registers with clock enables and reset; write-through, read-before-
write, output register, chip select, asynchronous reset, x1/x4) runs on random stimulus in
Verilator, and every output after every clock edge equals the reference of
``tests/sim/ecp5_models_tb.py``. A reference with one rule broken must fail.
"""

import random
from pathlib import Path

import pytest

pytest.importorskip("cocotb_tools.runner")

from sigprop_fpga.rtl import ECP5_MODELS  # noqa: E402
from sigprop_fpga.sim import verilator as V  # noqa: E402

TB_DIR = Path(__file__).parent
TOP = "ecp5_models_top"


@pytest.fixture(scope="module")
def models_build(tmp_path_factory):
    rng = random.Random(7)
    init = rng.getrandbits(640)
    params = {"INIT0": f"320'h{init & ((1 << 320) - 1):080x}", "INIT1": f"320'h{init >> 320:080x}"}
    info = V.build(TB_DIR / f"{TOP}.v", TOP, tmp_path_factory.mktemp("ecp5-models"), params=params,
                   extra_sources=[ECP5_MODELS])
    return info, init


def _run(models_build, tmp_path, **config):
    info, init = models_build
    return V.run(info, "ecp5_models_tb", test_dir=TB_DIR, run_dir=tmp_path,
                 config={"cycles": 3000, "seed": 1, "init": str(init), **config})


def test_models_match_references(models_build, tmp_path):
    r = _run(models_build, tmp_path)
    assert r.failed == 0, "; ".join(t.message for t in r.tests)
    assert r.data["models"]["cycles"] == 3000


@pytest.mark.parametrize("plant, cell", [("unsigned", "MULT18X18D"), ("read_new", "DP16KD")])
def test_a_broken_reference_fails(models_build, tmp_path, plant, cell):
    r = _run(models_build, tmp_path, plant=plant, cycles=400)
    assert r.failed == 1
    assert cell in r.tests[0].message
