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
    return bad, ports


@pytest.mark.parametrize("engine, example", [("pipelined", "iris.yaml"), ("pipelined", "breast-cancer-head.yaml"),
                                             ("pipelined", "wine-l2.yaml"), ("serial", "iris.yaml")])
def test_every_access_in_range(monkeypatch, engine, example):
    bad, ports = out_of_range_accesses(monkeypatch, EXAMPLES / example, engine, gap=3, ready_every=5)
    assert len(ports) >= 4
    assert not bad, f"{len(bad)} accesses past the end, the first: {bad[:5]}"
    if engine == "pipelined":
        # the stage's memories are a power of two deep (read_whole: no range guard on the
        # address path), so no address its ports can hold lies past the end
        depths = sorted({mem.depth for _, mem, _ in ports})
        assert all(d & (d - 1) == 0 for d in depths), depths


def test_pow2_depth_and_read_whole_arguments():
    from amaranth.hdl import Signal
    from sigprop_fpga.compiler.statemap import pow2_depth
    from sigprop_fpga.hdl.memports import read_whole
    assert [pow2_depth(d) for d in (1, 2, 3, 5, 8, 1000, 1025)] == [1, 2, 4, 8, 8, 1024, 2048]
    for bad in (0, -4, True, 2.0):
        with pytest.raises(ValueError, match="Memory depth"):
            pow2_depth(bad)
    port = memory.Memory(shape=8, depth=8, init=[]).read_port()
    addr = Signal(10)
    stmts = read_whole(port, addr)
    assert len(stmts) == 2 and len(port.addr) == 3
    with pytest.raises(ValueError, match="power of two, not 6"):
        read_whole(memory.Memory(shape=8, depth=6, init=[]).read_port(), addr)
    with pytest.raises(TypeError, match="synchronous"):
        read_whole(memory.Memory(shape=8, depth=8, init=[]).read_port(domain="comb"), addr)
