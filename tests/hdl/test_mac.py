"""The lane array: registered products and their sum, signed extremes included."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from sigprop_fpga.compiler.timing import mul_latency, stage_latency, tree_latency, tree_levels
from sigprop_fpga.hdl.mac import MacLanes, tree_registers


@pytest.mark.parametrize("latency", [1, 2, 3])
@pytest.mark.parametrize("lanes,aw,bw", [(1, 16, 8), (3, 18, 8), (4, 17, 9)])
def test_mac_lanes(lanes, aw, bw, latency):
    dut = MacLanes(lanes, aw, bw, latency=latency)
    rng = np.random.default_rng(lanes)
    alo, ahi, blo, bhi = -(1 << (aw - 1)), (1 << (aw - 1)) - 1, -(1 << (bw - 1)), (1 << (bw - 1)) - 1
    vecs = [(np.full(lanes, alo), np.full(lanes, blo)), (np.full(lanes, ahi), np.full(lanes, blo))]
    vecs += [(rng.integers(alo, ahi + 1, lanes), rng.integers(blo, bhi + 1, lanes)) for _ in range(50)]
    got = []

    async def bench(ctx):
        for a, b in vecs:
            for p in range(lanes):
                ctx.set(dut.a[p], int(a[p]))
                ctx.set(dut.b[p], int(b[p]))
            await ctx.tick()
            got.append(([ctx.get(dut.prod[p]) for p in range(lanes)], ctx.get(dut.total)))
        for _ in range(latency - 1):
            await ctx.tick()
            got.append(([ctx.get(dut.prod[p]) for p in range(lanes)], ctx.get(dut.total)))
        del got[:latency - 1]          # the products of the operands of `latency` cycles before

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    for (a, b), (prods, total) in zip(vecs, got):
        want = [int(x) * int(y) for x, y in zip(a, b)]
        assert prods == want and total == sum(want)


def test_mac_arguments():
    with pytest.raises(TypeError):
        MacLanes(2.0, 8, 8)
    with pytest.raises(ValueError):
        MacLanes(0, 8, 8)
    with pytest.raises(ValueError, match="Latency must be at least 1, not 0"):
        MacLanes(2, 8, 8, latency=0)
    with pytest.raises(TypeError, match="Latency must be an integer, not 4.0"):
        MacLanes(2, 8, 8, latency=4.0)
    with pytest.raises(ValueError, match="Sum width must be from 1 to 16, not 17"):
        MacLanes(2, 8, 8, sum_width=17)
    with pytest.raises(TypeError):
        MacLanes(2, 8, 8, sum_width=8.0)
    with pytest.raises(ValueError, match="Latency with fabric operand registers must be at least 4, not 3"):
        MacLanes(2, 8, 8, latency=3, fabric_operands=True)
    with pytest.raises(TypeError, match="Fabric operands must be a bool, not 1"):
        MacLanes(2, 8, 8, latency=4, fabric_operands=1)


@pytest.mark.parametrize("lanes,latency", [(1, 4), (8, 4), (9, 5), (96, 6)])
def test_mac_lanes_fabric_operands(lanes, latency):
    """With fabric operand registers, ``prod`` and ``total`` come ``latency`` cycles after their
    operands (one of them the fabric's, the tree one cycle shorter), extremes included."""
    aw, bw = 18, 8
    dut = MacLanes(lanes, aw, bw, latency=latency, fabric_operands=True)
    rng = np.random.default_rng(lanes + 7 * latency)
    alo, ahi, blo, bhi = -(1 << (aw - 1)), (1 << (aw - 1)) - 1, -(1 << (bw - 1)), (1 << (bw - 1)) - 1
    vecs = [(np.full(lanes, alo), np.full(lanes, blo)), (np.full(lanes, ahi), np.full(lanes, blo))]
    vecs += [(rng.integers(alo, ahi + 1, lanes), rng.integers(blo, bhi + 1, lanes)) for _ in range(30)]
    got = _run_lanes(dut, vecs, latency)
    assert len(got) == len(vecs)
    for (a, b), (prods, total) in zip(vecs, got):
        want = [int(x) * int(y) for x, y in zip(a, b)]
        assert prods == want and total == sum(want)


@pytest.mark.parametrize("latency", [1, 3])
def test_mac_lanes_sum_of_narrow_products(latency):
    """With ``sum_width``, ``total`` sums the products' low bits as signed values: the whole
    products while they fit (operands of 16 by 8 bits on 18 by 8 lanes), and only their low bits
    otherwise (the per-lane products stay whole)."""
    lanes, sw = 3, 24
    dut = MacLanes(lanes, 18, 8, latency=latency, sum_width=sw)
    rng = np.random.default_rng(5)
    vecs = [(np.full(lanes, -(1 << 15)), np.full(lanes, -128)), (np.full(lanes, (1 << 17) - 1), np.full(lanes, -128))]
    vecs += [(rng.integers(-(1 << 15), 1 << 15, lanes), rng.integers(-128, 128, lanes)) for _ in range(30)]
    got = []

    async def bench(ctx):
        for a, b in vecs + [vecs[-1]] * (latency - 1):
            for p in range(lanes):
                ctx.set(dut.a[p], int(a[p]))
                ctx.set(dut.b[p], int(b[p]))
            await ctx.tick()
            got.append(([ctx.get(dut.prod[p]) for p in range(lanes)], ctx.get(dut.total)))
        del got[:latency - 1]

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()

    def low(v):
        v &= (1 << sw) - 1
        return v - (1 << sw) if v >> (sw - 1) else v

    for (a, b), (prods, total) in zip(vecs, got):
        want = [int(x) * int(y) for x, y in zip(a, b)]
        assert prods == want and total == sum(low(w) for w in want)
    assert len(dut.total) == sw + 2


def _run_lanes(dut, vecs, latency):
    """``(prod, total)`` of every operand pair in ``vecs``, read ``latency`` cycles after it was
    driven (the operands change every cycle: a wrong latency reads a neighbour's sums)."""
    lanes, got = dut.lanes, []

    async def bench(ctx):
        for a, b in vecs + [vecs[-1]] * (latency - 1):
            for p in range(lanes):
                ctx.set(dut.a[p], int(a[p]))
                ctx.set(dut.b[p], int(b[p]))
            await ctx.tick()
            got.append(([ctx.get(dut.prod[p]) for p in range(lanes)], ctx.get(dut.total)))
        del got[:latency - 1]

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got


@pytest.mark.parametrize("lanes,latency", [(9, 4), (16, 4), (24, 5), (96, 6), (2, 5), (5, 6)])
def test_mac_lanes_pipelined_tree(lanes, latency):
    """A tree with registers between its levels: ``prod`` and ``total`` both ``latency`` cycles
    after their operands, for power-of-two and other lane counts (an odd sum passed on at some
    level), more tree cycles than levels included; extremes and random operands."""
    aw, bw = 18, 8
    dut = MacLanes(lanes, aw, bw, latency=latency)
    rng = np.random.default_rng(lanes + 100 * latency)
    alo, ahi, blo, bhi = -(1 << (aw - 1)), (1 << (aw - 1)) - 1, -(1 << (bw - 1)), (1 << (bw - 1)) - 1
    vecs = [(np.full(lanes, alo), np.full(lanes, blo)), (np.full(lanes, ahi), np.full(lanes, blo)),
            (np.full(lanes, alo), np.full(lanes, bhi))]
    vecs += [(rng.integers(alo, ahi + 1, lanes), rng.integers(blo, bhi + 1, lanes)) for _ in range(40)]
    got = _run_lanes(dut, vecs, latency)
    assert len(got) == len(vecs)
    for (a, b), (prods, total) in zip(vecs, got):
        want = [int(x) * int(y) for x, y in zip(a, b)]
        assert prods == want and total == sum(want)


def test_tree_latency_by_lanes():
    """The stage's lanes get a fabric operand register and a tree register per three levels:
    up to 8 lanes latency 4 (STAGE_LATENCY 5), 9-64 one more cycle, 65-512 two."""
    assert [tree_levels(n) for n in (1, 2, 3, 8, 9, 16, 96)] == [0, 1, 2, 3, 4, 4, 7]
    assert [tree_latency(n) for n in (1, 4, 8, 9, 16, 64, 65, 96, 512, 513)] == [1, 1, 1, 2, 2, 2, 3, 3, 3, 4]
    assert mul_latency(8) == 4 and stage_latency(8) == 5
    assert mul_latency(16) == 5 and stage_latency(96) == 7
    assert tree_registers(7, 3) == [3, 5, 7] and tree_registers(4, 2) == [2, 4] and tree_registers(1, 3) == [0, 0, 1]
