"""The dataset feeder against a model consumer in the Amaranth simulator."""

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from sigprop_fpga.hdl.feeder import DatasetFeeder

C = 3


class Consumer(wiring.Component):
    """Takes a sample (n_in beats + label), waits ``delay`` cycles, predicts: the label when
    training, ``(label + 1) % C`` otherwise; records the features' sum for checking."""

    def __init__(self, n_in, delay):
        self.n_in, self.delay = n_in, delay
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({"data": unsigned(8), "train": unsigned(1)}))),
            "o": Out(stream.Signature(unsigned(2))),
            "xsum": Out(16),
        })

    def elaborate(self, platform):
        m = Module()
        k = Signal(range(self.n_in + 1))
        wait = Signal(range(self.delay + 1))
        acc = Signal(16)
        with m.FSM():
            with m.State("RX"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    with m.If(k == self.n_in):
                        lab = self.i.payload.data[:2]
                        m.d.sync += [self.o.payload.eq(lab + ~self.i.payload.train), k.eq(0),
                                     wait.eq(self.delay), self.xsum.eq(acc), acc.eq(0)]
                        with m.If(~self.i.payload.train & (lab == C - 1)):
                            m.d.sync += self.o.payload.eq(0)
                        m.next = "WAIT"
                    with m.Else():
                        m.d.sync += [k.eq(k + 1), acc.eq(acc + self.i.payload.data)]
            with m.State("WAIT"):
                with m.If(wait == 0):
                    m.next = "TX"
                with m.Else():
                    m.d.sync += wait.eq(wait - 1)
            with m.State("TX"):
                m.d.comb += self.o.valid.eq(1)
                with m.If(self.o.ready):
                    m.next = "RX"
        return m


@pytest.mark.parametrize("evaluate", [True, False])
def test_feeder_epochs_scores_and_taps(evaluate):
    rng = np.random.default_rng(0)
    n_in = 3
    xtr, xte = rng.integers(-128, 128, (7, n_in)), rng.integers(-128, 128, (4, n_in))
    ytr, yte = rng.integers(0, C, 7), rng.integers(0, C, 4)
    m = Module()
    m.submodules.feeder = f = DatasetFeeder(xtr, ytr, xte, yte, in_width=8, n_classes=C, max_epochs=4)
    m.submodules.cons = c = Consumer(n_in, delay=5)
    wiring.connect(m, f.o, c.i)
    wiring.connect(m, c.o, f.pred)
    taps, sums = [], []

    async def bench(ctx):
        ctx.set(f.epochs, 3)
        ctx.set(f.evaluate, evaluate)
        ctx.set(f.start, 1)
        await ctx.tick()
        ctx.set(f.start, 0)
        for _ in range(5000):
            await ctx.tick()
            if ctx.get(f.tap_valid):
                taps.append((ctx.get(f.tap_index), ctx.get(f.tap_pred), ctx.get(f.tap_label)))
            if ctx.get(f.done):
                break
        assert ctx.get(f.done) and not ctx.get(f.busy)
        per = 11 if evaluate else 7
        assert ctx.get(f.epoch) == 3 and ctx.get(f.sent) == 3 * per and ctx.get(f.received) == 3 * per
        for e in range(3):
            ctx.set(f.curve_addr, e)
            await ctx.tick().repeat(2)
            word = ctx.get(f.curve_data)
            assert word & 0xFFFFFFFF == 7 and word >> 32 == 0
        assert ctx.get(f.last_train_correct) == 7 and ctx.get(f.last_test_correct) == 0

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    per = 11 if evaluate else 7
    labels = list(ytr) + (list(yte) if evaluate else [])
    assert [t[0] for t in taps] == list(range(3 * per))
    assert [t[2] for t in taps] == labels * 3


def test_feeder_hold_stops_new_samples():
    xtr, ytr = np.zeros((5, 2), dtype=int), np.array([0, 1, 2, 0, 1])
    m = Module()
    m.submodules.feeder = f = DatasetFeeder(xtr, ytr, xtr[:1], ytr[:1], in_width=8, n_classes=C)
    m.submodules.cons = c = Consumer(2, delay=3)
    wiring.connect(m, f.o, c.i)
    wiring.connect(m, c.o, f.pred)

    async def bench(ctx):
        ctx.set(f.epochs, 1)
        ctx.set(f.start, 1)
        await ctx.tick()
        ctx.set(f.start, 0)
        ctx.set(f.hold, 1)
        await ctx.tick().repeat(200)
        assert ctx.get(f.sent) <= 1 and ctx.get(f.busy)
        ctx.set(f.hold, 0)
        await ctx.tick().repeat(400)
        assert ctx.get(f.done) and ctx.get(f.sent) == 5 and ctx.get(f.train_correct) == 0  # reset after epoch

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_feeder_argument_checks():
    x, y = np.zeros((2, 2), dtype=int), np.array([0, 1])
    with pytest.raises(ValueError, match="Labels must be in"):
        DatasetFeeder(x, np.array([0, 5]), x, y, in_width=8, n_classes=2)
    with pytest.raises(ValueError, match="one label per sample"):
        DatasetFeeder(x, y[:1], x, y, in_width=8, n_classes=2)


@pytest.mark.parametrize("bank_bits, addr_copies", [(4, False), (2, False), (4, True), (2, True)])
def test_feature_rom_banks_stream_every_word_in_order(monkeypatch, bank_bits, addr_copies):
    """The feature ROM is split in banks (so its block RAM count is predictable); with 16-word
    banks, 7 samples of 5 features span 3 banks (one group of the registered bank multiplexer),
    with 4-word banks 9 banks (three groups), and the beats must be the words in order. With
    ``addr_copies`` every group's address copy equals the address's low bits in every cycle
    (two epochs: the copies return to 0 with the address)."""
    import sigprop_fpga.hdl.feeder as feeder
    monkeypatch.setattr(feeder, "ROM_BANK_BITS", bank_bits)
    monkeypatch.setattr(feeder, "ROM_BANK_DEPTH", 1 << bank_bits)
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, size=(7, 5))
    y = rng.integers(0, C, size=7)
    dut = DatasetFeeder(x, y, x[:0], y[:0], in_width=8, n_classes=C, max_epochs=2, addr_copies=addr_copies)
    beats, copies_seen, copies_bad = [], [0], []

    async def watch(ctx):
        while True:
            await ctx.tick()
            addr = ctx.get(dut._x_addr) & ((1 << bank_bits) - 1)
            for k, c in enumerate(dut._x_addr_copies):
                copies_seen[0] += 1
                if ctx.get(c) != addr:
                    copies_bad.append((k, ctx.get(c), addr))

    async def bench(ctx):
        ctx.set(dut.epochs, 2)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.pred.valid, 0)
        k = 0
        for _ in range(800):
            if ctx.get(dut.o.valid):
                beats.append(ctx.get(dut.o.payload.data))
                k += 1
                if k % 6 == 0:              # the label beat: answer with a prediction
                    await ctx.tick()
                    ctx.set(dut.pred.valid, 1)
                    ctx.set(dut.pred.payload, 0)
                    while not ctx.get(dut.pred.ready):
                        await ctx.tick()
                    await ctx.tick()
                    ctx.set(dut.pred.valid, 0)
                    continue
            await ctx.tick()
            if len(beats) == 2 * 7 * 6:
                break

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.add_testbench(watch, background=True)
    sim.run()
    want = [int(v) for row, lab in zip(x, y) for v in list(row) + [lab]]
    assert beats == want + want
    assert not copies_bad
    groups = -(-(-(-7 * 5 // (1 << bank_bits))) // 4)
    assert len(dut._x_addr_copies) == (groups if addr_copies else 0)
    assert copies_seen[0] >= 250 * len(dut._x_addr_copies)
