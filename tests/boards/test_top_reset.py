"""The board top's restart: registered again per group of flip-flops, every flip-flop restarted
in the same cycle (one cycle after the control), and the copies in variants Yosys cannot merge."""

from amaranth.hdl import ClockDomain, Elaboratable, Module, Signal
from amaranth.sim import Simulator

from sigprop_fpga.boards.top import _CopiedReset


class _Counters(Elaboratable):
    """Counters in a parent and two children (three fragments), 40 bits each."""

    def __init__(self, n=3):
        self.counts = [Signal(40, name=f"count{k}", init=k) for k in range(n)]

    def elaborate(self, platform):
        m = Module()
        for k, c in enumerate(self.counts):
            sub = Module() if k else m
            sub.d.sync += c.eq(c + 1)
            if k:
                m.submodules[f"child{k}"] = sub
        return m


def test_every_flip_flop_restarts_one_cycle_after_the_control_in_the_same_cycle():
    restart = Signal()
    dut = _Counters()
    ins = _CopiedReset(restart)
    ins.group_bits = 40                         # a copy per counter
    top = Module()
    top.submodules.dut = ins(dut)
    seen = []

    async def bench(ctx):
        await ctx.tick().repeat(5)
        ctx.set(restart, 1)
        await ctx.tick()
        ctx.set(restart, 0)
        for _ in range(3):
            seen.append([ctx.get(c) for c in dut.counts])
            await ctx.tick()

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    # the cycle after the control: still counting; then all at their initial values at once
    assert seen[0] == [6, 7, 8]
    assert seen[1] == [0, 1, 2]
    assert seen[2] == [1, 2, 3]


def test_the_copies_come_in_six_variants():
    assert len(set(_CopiedReset.VARIANTS)) == 6


def test_every_variant_is_inactive_after_the_domain_reset():
    """Six fragments, one variant each: the domain reset restarts all of them, and they all count
    from the cycle after it, like flip-flops without the copies."""
    restart = Signal()
    dut = _Counters(6)
    top = Module()
    top.domains.sync = cd = ClockDomain()
    top.submodules.dut = _CopiedReset(restart)(dut)
    seen = []

    async def bench(ctx):
        await ctx.tick().repeat(4)
        ctx.set(cd.rst, 1)
        await ctx.delay(3e-6)                   # three clock periods (a tick would raise)
        ctx.set(cd.rst, 0)
        for _ in range(3):
            await ctx.tick()
            seen.append([ctx.get(c) for c in dut.counts])

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [[k + i + 1 for k in range(6)] for i in range(3)]
