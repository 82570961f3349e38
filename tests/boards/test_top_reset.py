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


# --- the domain reset as a replicated tree (_ResetTree, _TreeReset) --------------------------

import random

import pytest
from amaranth.hdl import ClockSignal, DomainRenamer, ResetSignal

from sigprop_fpga.boards.top import _ResetTree, _TreeReset


class _TreeTop(Elaboratable):
    """``_Counters`` in a reset-less domain ``core``: ``n_plain`` counters on the domain reset's
    leaves, the rest (in a child wrapped by a restart instance) on the restart's leaves too."""

    def __init__(self, n_plain=3, n_restart=3, group_bits=40):
        self.plain, self.restarted = _Counters(n_plain), _Counters(n_restart)
        self.restart = Signal()
        self.rst_in = Signal()
        self.tree = _ResetTree(self.rst_in)
        self.tree.group_bits = group_bits

    def elaborate(self, platform):
        m = Module()
        m.domains.core = ClockDomain("core", reset_less=True, local=True)
        m.d.comb += [ClockSignal("core").eq(ClockSignal("sync")),
                     self.rst_in.eq(ResetSignal("sync"))]
        m.d.core += self.tree.chain_statements()
        body = Module()
        body.submodules.plain = self.plain
        body.submodules.restarted = _TreeReset(self.tree, self.restart)(self.restarted)
        m.submodules.body = DomainRenamer({"sync": "core"})(_TreeReset(self.tree)(body))
        return m


def _run_tree(top, rst_wave, restart_wave):
    """Per cycle: (rst_in, restart, the counters, the leaves' active values)."""
    cd = ClockDomain("sync")
    m = Module()
    m.domains.sync = cd
    m.submodules.top = top
    seen = []

    async def bench(ctx):
        for r, x in zip(rst_wave, restart_wave):
            ctx.set(cd.rst, r)
            ctx.set(top.restart, x)
            await ctx.delay(0.25e-6)            # before the edge: the values of this cycle
            leaves = [ctx.get(leaf) ^ inv for leaf, _, inv in top.tree.leaves]
            seen.append((r, x, [ctx.get(c) for c in top.plain.counts + top.restarted.counts], leaves))
            await ctx.delay(0.75e-6)

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return seen


def test_tree_resets_every_flip_flop_four_cycles_late_all_in_the_same_cycle():
    top = _TreeTop()
    rst = [1] * 3 + [0] * 12 + [1] * 2 + [0] * 10
    seen = _run_tree(top, rst, [0] * len(rst))
    assert len(top.tree.leaves) == 6            # a leaf per 40-bit counter
    counts = [s[2] for s in seen]
    # high in cycles 0-2, the leaves in 4-6 (and from configuration): every counter at its
    # initial value through cycle 7, counting after
    assert counts[7] == [0, 1, 2, 0, 1, 2]
    assert counts[8] == [1, 2, 3, 1, 2, 3]
    # a 2-cycle pulse in cycles 15-16: the leaves high in 19-20, counting through cycle 19, at
    # the initial values in 20 and 21, counting from 22
    assert counts[19] == [c + 12 for c in counts[7]]
    assert counts[20] == counts[21] == counts[7]
    assert counts[22] == counts[8]


def test_restart_leaves_restart_one_cycle_after_the_control():
    top = _TreeTop()
    restart = [0] * 12 + [1] + [0] * 6
    seen = _run_tree(top, [1] * 2 + [0] * 17, restart)
    counts = [s[2] for s in seen]
    # the control in cycle 12, the leaf in 13: the restarted counters at their initial values in
    # 14, counting from 15; the plain ones go on
    assert counts[13] == [c + 7 for c in counts[6]]
    assert counts[14] == [c + 8 for c in counts[6][:3]] + [0, 1, 2]
    assert counts[15] == [c + 9 for c in counts[6][:3]] + [1, 2, 3]


@pytest.mark.parametrize("seed", range(3))
def test_every_leaf_is_the_reset_it_replaces_or_asserts_early_on_random_resets(seed):
    """Each leaf, every cycle: the domain reset 4 cycles ago (or the restart 1 cycle ago, for a
    restart leaf), or high early: in a cycle before that reset (within 3) -- never released early
    or late. 40 leaves of 6 bits: many variants."""
    rng = random.Random(seed)
    top = _TreeTop(n_plain=20, n_restart=20, group_bits=6)
    n = 400
    rst = [1, 1] + [int(rng.random() < 0.15) for _ in range(n - 2)]
    restart = [int(rng.random() < 0.1) for _ in range(n)]
    seen = _run_tree(top, rst, restart)
    is_restart = ["restart" in leaf.name for leaf, _, _ in top.tree.leaves]
    assert sum(is_restart) > 8 and sum(not r for r in is_restart) > 8
    for k, restart_leaf in enumerate(is_restart):
        for t in range(5, n - 4):
            base = rst[t - 4] | (restart[t - 1] if restart_leaf else 0)
            leaf = seen[t][3][k]
            soon = any(rst[u - 4] for u in range(t, t + 4))
            assert leaf == base or (leaf and soon), (k, t, leaf, base)
    # the leaves are distinct variants (Yosys cannot merge them): different registered functions
    names = {(leaf.name) for leaf, _, _ in top.tree.leaves}
    assert len(names) == len(top.tree.leaves)


def test_tree_variants_are_distinct_functions():
    """The leaves' registered functions (as truth tables over the chain, the domain reset and the
    restart) all differ, up to 256 plain and 16 restart leaves, and every one is 1 where the
    chain's last tap is: otherwise Yosys would merge leaves back into one net, or a leaf could
    release early."""
    from amaranth.hdl._ir import Fragment
    rst_in, restart = Signal(), Signal()
    tree = _ResetTree(rst_in)
    frag = Fragment()
    for _ in range(256):
        tree._new_leaf(frag, "sync", None)
    for _ in range(16):
        tree._new_leaf(frag, "sync", restart)
    outs = [Signal(name=f"o{k}") for k in range(len(tree.leaves))]
    m = Module()
    m.d.comb += [o.eq(~src if inv else src) for o, (_, src, inv) in zip(outs, tree.leaves)]
    inputs = tree.chain + [rst_in, restart]
    tables = [[] for _ in outs]

    async def bench(ctx):
        for v in range(1 << len(inputs)):
            for k, x in enumerate(inputs):
                ctx.set(x, v >> k & 1)
            for t, o in zip(tables, outs):
                t.append(ctx.get(o))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert len({tuple(t) for t in tables}) == len(tables)
    r2 = 2
    for t, (_, _, inv) in zip(tables, tree.leaves):
        assert all(t[v] == (0 if inv else 1) for v in range(len(t)) if v >> r2 & 1)
