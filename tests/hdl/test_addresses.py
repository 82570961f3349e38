"""Every memory read and write stays inside its memory, in both engines.

A read past the end returns whatever the simulator or the FPGA makes of it (Verilog: X): the
design must not depend on one, so none may happen. Every read and write port the engine
creates is watched on every cycle of a short training run with inference samples, a gap and
back-pressure, and of the readback at its end.
"""

import numpy as np
import pytest
from amaranth.lib import memory

from sigprop_fpga.hdl.engines import get_engine
from sigprop_fpga.hdl.simulate import simulate
from sigprop_fpga.sim.datasets import load_network

from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def out_of_range_accesses(monkeypatch, path, engine, n=5, **kw):
    """``[(memory name, port kind, address, depth, cycle)]`` of every enabled access past the end."""
    ports = []
    real_read, real_write = memory.Memory.read_port, memory.Memory.write_port

    def read_port(self, *args, **kwargs):
        port = real_read(self, *args, **kwargs)
        ports.append(("read", self, port))
        return port

    def write_port(self, *args, **kwargs):
        port = real_write(self, *args, **kwargs)
        ports.append(("write", self, port))
        return port

    monkeypatch.setattr(memory.Memory, "read_port", read_port)
    monkeypatch.setattr(memory.Memory, "write_port", write_port)
    bad = []

    def monitor(dut):
        watched = [(kind, mem, port) for kind, mem, port in ports if port.domain != "comb"]
        exprs = [x for kind, _, port in watched for x in (port.en.any() if kind == "write" else port.en, port.addr)]

        async def process(ctx):
            cycle = 0
            async for _, _, *vals in ctx.tick().sample(*exprs):
                for k, (kind, mem, port) in enumerate(watched):
                    en, addr = vals[2 * k], vals[2 * k + 1]
                    if en and addr >= mem.depth:
                        bad.append((port.addr.name, kind, int(addr), mem.depth, cycle))
                cycle += 1
        return process

    spec, data, net = load_network(path)
    eng = get_engine(engine)
    lanes = eng.lane_choices(net)[0]
    train = np.arange(n) % 4 != 3
    r = simulate(net, data.x_train[:n], data.y_train[:n], train=train, lanes=lanes,
                 engine_cls=eng.component_cls, monitors=[monitor], **kw)
    assert len(r["pred"]) == n and ports
    return bad, len(ports)


@pytest.mark.parametrize("engine, example", [("pipelined", "iris.yaml"), ("pipelined", "breast-cancer-head.yaml"),
                                             ("pipelined", "wine-l2.yaml"), ("serial", "iris.yaml")])
def test_every_access_in_range(monkeypatch, engine, example):
    bad, n_ports = out_of_range_accesses(monkeypatch, EXAMPLES / example, engine, gap=3, ready_every=5)
    assert n_ports >= 4
    assert not bad, f"{len(bad)} accesses past the end, the first: {bad[:5]}"
