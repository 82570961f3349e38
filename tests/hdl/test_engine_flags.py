"""The engine's deserializer flags (``idx == n_in``, ``idx != 0``, kept with idx's writes)
equal the compares they replace in every cycle (Amaranth simulation with gaps and
back-pressure)."""

from pathlib import Path

from sigprop_fpga.compiler.network import Network
from sigprop_fpga.compiler.spec import load_spec
from sigprop_fpga.hdl.simulate import simulate
from sigprop_fpga.sim.datasets import load_dataset

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_deserializer_flags_equal_their_compares_every_cycle():
    spec = load_spec(EXAMPLES / "iris.yaml")
    data = load_dataset(spec)
    net = Network(spec, data.n_inputs, data.n_classes)
    seen = {"cycles": 0, "nz": 0, "last": 0}

    def monitor(dut):
        n_in = net.n_inputs

        async def process(ctx):
            async for _, _, idx, last, nz in ctx.tick().sample(dut._idx, dut._idx_last, dut._idx_nz):
                seen["cycles"] += 1
                seen["nz"] += nz
                seen["last"] += last
                if last != int(idx == n_in) or nz != int(idx != 0):
                    # at once: a wrong flag can keep the engine busy for ever
                    raise AssertionError(f"cycle {seen['cycles']}: idx {idx}, idx_last {last}, idx_nz {nz}")
        return process

    n = 5
    r = simulate(net, data.x_train[:n], data.y_train[:n], gap=3, ready_every=4, monitors=[monitor])
    assert len(r["pred"]) == n
    assert seen["cycles"] > 100 and seen["nz"] >= net.n_inputs * n and seen["last"] >= n
