"""An on-chip dataset and epoch sequencer in front of the engine: the chip trains by itself.

Used by the cycle-accurate simulation (the testbench starts it and lets Verilator run free) and
by the boards' autonomous mode (the same memories, filled at build time).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

import numpy as np

from . import BLOCK_RAM

__all__ = ["DatasetFeeder", "ROM_BANK_DEPTH", "curve_count_width"]

#: Words per bank of the feature ROM (a power of two).
ROM_BANK_BITS = 13
ROM_BANK_DEPTH = 1 << ROM_BANK_BITS


def curve_count_width(n_samples: int) -> int:
    """Bits of one score in the learning-curve memory (a count of at most ``n_samples``); the
    memory's words are two of them (train, test)."""
    return max(1, int(n_samples).bit_length())


def _bits(n: int) -> int:
    return max(1, int(n).bit_length())


class DatasetFeeder(wiring.Component):
    """Streams a stored dataset into the engine, epoch after epoch, and scores its predictions.

    Each epoch streams every training sample (``train = 1``) and then, when ``evaluate`` is
    set, every test sample (``train = 0``, inference only). A sample is ``n_in`` feature beats
    then one label beat, the beat format of :class:`.engine.SigPropEngine`'s input.

    Parameters
    ----------
    x_train, x_test : 2-D int arrays
        Features as two's complement integers of ``in_width`` bits.
    y_train, y_test : 1-D int arrays
        Labels in ``[0, n_classes)``.
    in_width : int
        Width of the beat's ``data`` field (the engine's ``in_width``).
    n_classes : int
    max_epochs : int
        Depth of the per-epoch score memory (``curve``) and the width of ``epochs``.

    Members
    -------
    o : Out(stream.Signature(StructLayout({"data": unsigned(in_width), "train": 1})))
        To the engine's sample input.
    pred : In(stream.Signature(unsigned(ceil(log2 n_classes))))
        From the engine's prediction output; always ready.
    start : In(1)
        A one-cycle pulse starts ``epochs`` epochs (ignored while ``busy``).
    epochs : In(range(max_epochs + 1))
    evaluate : In(1)
        Stream the test split after each epoch's training.
    hold : In(1)
        While high, no new sample starts (the one in progress completes); for readback pauses.
    busy, done : Out(1)
        ``done`` stays high from the last prediction of the last epoch until the next ``start``.
    epoch : Out(16)
        Epochs completed.
    sent, received : Out(32)
        Samples streamed out, predictions received since ``start``.
    train_correct, test_correct : Out(32)
        Correct predictions of the epoch in progress (training: made before learning).
    last_train_correct, last_test_correct : Out(32)
        The same, of the last finished epoch.
    curve_addr : In(range(max_epochs)), curve_data : Out(2 x 32)
        Per finished epoch ``(train_correct, test_correct)``, read one cycle after the address
        (stored in ``2 curve_count_width(n_train + n_test)`` bits a word).
    tap_valid : Out(1), tap_pred, tap_label : Out, tap_index : Out(32)
        A copy of every prediction with its label and sample number, for the testbench.

    Latency and throughput
    ----------------------
    Three cycles per beat (address, read and bank select, registered beat), so ``3 (n_in + 1)``
    cycles per sample; it limits the rate only if every stage is faster than that (the examples'
    slowest stages take 6 to 20 times longer). The engine's input buffer lets the next sample
    load while stage 0 works.
    """

    def __init__(self, x_train, y_train, x_test, y_test, *, in_width: int, n_classes: int, max_epochs: int = 64):
        x_train, x_test = np.asarray(x_train), np.asarray(x_test)
        y_train, y_test = np.asarray(y_train), np.asarray(y_test)
        if x_train.ndim != 2 or x_test.ndim != 2 or x_train.shape[1] != x_test.shape[1]:
            raise ValueError(f"Features must be 2-D with the same width, not {x_train.shape} and {x_test.shape}")
        if len(y_train) != len(x_train) or len(y_test) != len(x_test):
            raise ValueError("Expected one label per sample")
        if not isinstance(in_width, int) or in_width < 1:
            raise ValueError(f"in_width must be a positive integer, not {in_width!r}")
        if not isinstance(n_classes, int) or n_classes < 2:
            raise ValueError(f"n_classes must be an integer of at least 2, not {n_classes!r}")
        if not isinstance(max_epochs, int) or max_epochs < 1:
            raise ValueError(f"max_epochs must be a positive integer, not {max_epochs!r}")
        for y in (y_train, y_test):
            if len(y) and (y.min() < 0 or y.max() >= n_classes):
                raise ValueError(f"Labels must be in [0, {n_classes})")
        self.n_in = x_train.shape[1]
        self.n_train, self.n_test = len(y_train), len(y_test)
        self.in_width, self.n_classes, self.max_epochs = in_width, n_classes, max_epochs
        mask = (1 << in_width) - 1
        x = np.concatenate([x_train, x_test]).astype(np.int64) & mask
        self._x_init = [int(v) for v in x.reshape(-1)]
        self._y_init = [int(v) for v in np.concatenate([y_train, y_test])]
        cb = _bits(n_classes - 1)
        super().__init__({
            "o": Out(stream.Signature(data.StructLayout({"data": unsigned(in_width), "train": unsigned(1)}))),
            "pred": In(stream.Signature(unsigned(cb))),
            "start": In(1), "epochs": In(range(max_epochs + 1)), "evaluate": In(1), "hold": In(1),
            "busy": Out(1), "done": Out(1), "epoch": Out(16),
            "sent": Out(32), "received": Out(32),
            "train_correct": Out(32), "test_correct": Out(32),
            "last_train_correct": Out(32), "last_test_correct": Out(32),
            "curve_addr": In(range(max_epochs)), "curve_data": Out(64),
            "tap_valid": Out(1), "tap_pred": Out(cb), "tap_label": Out(cb), "tap_index": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        n_in, n_all = self.n_in, self.n_train + self.n_test
        cb = _bits(self.n_classes - 1)
        # the features: ROM banks of at most ROM_BANK_DEPTH words (a deeper ROM is partly mapped
        # to logic by yosys, so its block RAM count would not be predictable), read through one
        # address; the data of the bank the address named a cycle before, as a read port
        words = max(1, n_all * n_in)
        x_addr, x_data = Signal(range(max(2, words))), Signal(self.in_width)
        n_banks = -(-words // ROM_BANK_DEPTH)
        bank1 = Signal(range(max(2, n_banks)))
        m.d.sync += bank1.eq(x_addr >> ROM_BANK_BITS)
        for k in range(n_banks):
            lo, hi = k * ROM_BANK_DEPTH, min(words, (k + 1) * ROM_BANK_DEPTH)
            bank = memory.Memory(shape=unsigned(self.in_width), depth=hi - lo, init=self._x_init[lo:hi],
                                 attrs=BLOCK_RAM)
            m.submodules[f"xmem{k}"] = bank
            rp = bank.read_port()
            m.d.comb += rp.addr.eq(x_addr[:ROM_BANK_BITS])
            with m.If(bank1 == k):
                m.d.comb += x_data.eq(rp.data)
        m.submodules.ymem = ymem = memory.Memory(shape=unsigned(cb), depth=max(1, n_all), init=self._y_init,
                                                 attrs=BLOCK_RAM)
        # the curve holds each score in cw bits (a count of at most n_all), zero-extended on read
        cw = curve_count_width(n_all)
        m.submodules.curve = curve = memory.Memory(shape=unsigned(2 * cw), depth=self.max_epochs, init=[],
                                                   attrs=BLOCK_RAM)
        y_rd, lab_rd = ymem.read_port(), ymem.read_port()
        c_wr, c_rd = curve.write_port(), curve.read_port()
        # the scores count at most n_all: registers of cw bits, zero-extended on the ports
        train_correct_q, test_correct_q = Signal(cw), Signal(cw)
        last_train_correct_q, last_test_correct_q = Signal(cw), Signal(cw)
        m.d.comb += [self.train_correct.eq(train_correct_q), self.test_correct.eq(test_correct_q),
                     self.last_train_correct.eq(last_train_correct_q), self.last_test_correct.eq(last_test_correct_q)]

        epochs = Signal.like(self.epochs)
        evaluate = Signal()
        per_epoch = Signal(range(n_all + 1))       # samples streamed per epoch
        # sender
        sample = Signal(range(n_all + 1))
        beat = Signal(range(n_in + 1))
        # the beat leaves from a register: a block RAM's clock-to-out, the bank multiplexer and
        # the engine's input memory do not share a cycle at speed
        beat_q = Signal(self.in_width)
        m.d.sync += beat_q.eq(Mux(beat == n_in, y_rd.data, x_data))
        addr = Signal(range(max(2, n_all * n_in + 1)))
        # the feature and label memories are addressed straight from registers (their address
        # lines fan out to every bank across the device), so their data follow addr and sample
        m.d.comb += [x_addr.eq(addr), y_rd.addr.eq(sample)]
        sent_in_epoch = Signal(range(n_all + 1))
        epochs_sent = Signal(range(self.max_epochs + 1))
        # receiver
        got_in_epoch = Signal(range(n_all + 1))

        m.d.comb += [c_rd.addr.eq(self.curve_addr),
                     self.curve_data.eq(Cat(c_rd.data[:cw], Const(0, 32 - cw), c_rd.data[cw:]))]

        train_phase = Signal()
        m.d.comb += train_phase.eq(sample < self.n_train)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [epochs.eq(self.epochs), evaluate.eq(self.evaluate), self.done.eq(0),
                                 self.busy.eq(self.epochs != 0), self.done.eq(self.epochs == 0),
                                 self.epoch.eq(0), self.sent.eq(0), self.received.eq(0),
                                 train_correct_q.eq(0), test_correct_q.eq(0),
                                 sample.eq(0), beat.eq(0), addr.eq(0), sent_in_epoch.eq(0), epochs_sent.eq(0),
                                 got_in_epoch.eq(0)]
                    with m.If(self.evaluate):
                        m.d.sync += per_epoch.eq(n_all)
                    with m.Else():
                        m.d.sync += per_epoch.eq(self.n_train)
                    with m.If(self.epochs != 0):
                        m.next = "NEXT"
            with m.State("NEXT"):
                # start a sample, or the next epoch, or finish sending
                with m.If(sent_in_epoch == per_epoch):
                    m.d.sync += [sent_in_epoch.eq(0), sample.eq(0), addr.eq(0), epochs_sent.eq(epochs_sent + 1)]
                    with m.If(epochs_sent + 1 == epochs):
                        m.next = "DRAIN"
                with m.Elif(~self.hold):
                    m.d.sync += beat.eq(0)
                    m.next = "READ"
            with m.State("READ"):         # the memories read addr / sample (always addressed)
                m.next = "LOAD"
            with m.State("LOAD"):         # the word reaches beat_q (read, bank select, register)
                m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += [self.o.payload.data.eq(beat_q), self.o.payload.train.eq(train_phase)]
                m.d.comb += self.o.valid.eq(1)
                with m.If(self.o.ready):
                    with m.If(beat == n_in):
                        m.d.sync += [sample.eq(sample + 1), sent_in_epoch.eq(sent_in_epoch + 1),
                                     self.sent.eq(self.sent + 1)]
                        m.next = "NEXT"
                    with m.Else():
                        m.d.sync += [beat.eq(beat + 1), addr.eq(addr + 1)]
                        m.next = "READ"
            with m.State("DRAIN"):
                with m.If(~self.busy):
                    m.next = "IDLE"

        # receiver: predictions arrive in sample order
        rsample = Signal(range(n_all + 1))
        curve_we, curve_at = Signal(), Signal.like(self.epoch)
        m.d.sync += curve_we.eq(0)
        m.d.comb += [self.pred.ready.eq(1), lab_rd.addr.eq(rsample)]
        # the label of the sample in flight is read ahead: lab_rd.data is ymem[rsample] one cycle
        # after rsample settles, and a prediction never arrives in the cycle after the previous one
        label = Signal(cb)
        m.d.comb += label.eq(lab_rd.data)
        rtrain = Signal()
        m.d.comb += rtrain.eq(rsample < self.n_train)
        m.d.comb += [self.tap_valid.eq(self.pred.valid & self.busy), self.tap_pred.eq(self.pred.payload),
                     self.tap_label.eq(label), self.tap_index.eq(self.received)]
        with m.If(self.pred.valid & self.busy):
            correct = self.pred.payload == label
            m.d.sync += self.received.eq(self.received + 1)
            with m.If(rtrain):
                m.d.sync += train_correct_q.eq(train_correct_q + correct)
            with m.Else():
                m.d.sync += test_correct_q.eq(test_correct_q + correct)
            with m.If(got_in_epoch + 1 == per_epoch):
                m.d.sync += [curve_we.eq(1), curve_at.eq(self.epoch)]
                m.d.sync += [got_in_epoch.eq(0), rsample.eq(0), self.epoch.eq(self.epoch + 1),
                             train_correct_q.eq(0), test_correct_q.eq(0),
                             last_train_correct_q.eq(train_correct_q + (correct & rtrain)),
                             last_test_correct_q.eq(test_correct_q + (correct & ~rtrain))]
                with m.If(self.epoch + 1 == epochs):
                    m.d.sync += [self.busy.eq(0), self.done.eq(1)]
            with m.Else():
                m.d.sync += [got_in_epoch.eq(got_in_epoch + 1), rsample.eq(rsample + 1)]
        with m.If(self.start & ~self.busy):
            m.d.sync += rsample.eq(0)
        # the epoch's scores go to the curve a cycle after they settle in last_*_correct (the label
        # read, the compare and the count do not also fit the memory's write in one cycle)
        m.d.comb += [c_wr.addr.eq(curve_at), c_wr.en.eq(curve_we),
                     c_wr.data.eq(Cat(last_train_correct_q, last_test_correct_q))]
        return m
