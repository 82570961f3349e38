"""An on-chip dataset and epoch sequencer in front of the engine: the chip trains by itself.

Used by the cycle-accurate simulation (the testbench starts it and lets Verilator run free) and
by the boards' autonomous mode (the same memories, filled at build time).
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

import numpy as np

from . import BLOCK_RAM
from .memports import read_in_range

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
    addr_copies : bool
        With more than one feature ROM bank: each group of four banks takes its address from a
        register of its own (a 13-bit counter beside the address, equal to its low bits in every
        cycle) instead of one register fanned out to every bank's address pins across the device
        (the ECP5's 125 MHz critical path). ``ceil(banks / 4)`` x 13 flip-flops and their
        incrementers; default False (the iCE40's logic cells are nearly all used).

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
        Per finished epoch ``(train_correct, test_correct)``, read two cycles after the address
        (stored in ``2 curve_count_width(n_train + n_test)`` bits a word; the block RAM's read
        data go straight into a register, not through the register file's read multiplexer).
    tap_valid : Out(1), tap_pred, tap_label : Out, tap_index : Out(32)
        A copy of every prediction with its label and sample number, for the testbench.

    Latency and throughput
    ----------------------
    Three cycles per beat (READ: the word, read from the address a cycle ahead, into the bank
    group registers; LOAD: group select into the beat register; SEND), so ``3 (n_in + 1)``
    cycles per sample; it limits the rate only if every stage is faster than that (the examples'
    slowest stages take 6 to 20 times longer). The engine's input buffer lets the next sample
    load while stage 0 works. A prediction is scored over two cycles: ``tap_*`` show it in its
    own cycle, ``received`` and the scores count it a cycle later, and ``busy`` / ``done`` change
    two cycles after the last one (the engine never sends predictions in consecutive cycles).
    """

    def __init__(self, x_train, y_train, x_test, y_test, *, in_width: int, n_classes: int, max_epochs: int = 64,
                 addr_copies: bool = False):
        if not isinstance(addr_copies, bool):
            raise TypeError(f"addr_copies must be a bool, not {addr_copies!r}")
        self.addr_copies = addr_copies
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
        # address; bank1 is the bank the address named a cycle before (the one rp.data is from)
        words = max(1, n_all * n_in)
        x_addr = Signal(range(max(2, words)))
        n_banks = -(-words // ROM_BANK_DEPTH)
        # (the free-running registers here are reset_less: written every cycle before they are
        # used, they need neither the domain reset nor the restart's fan-out)
        bank1 = Signal(range(max(2, n_banks)), reset_less=True)
        m.d.sync += bank1.eq(x_addr >> ROM_BANK_BITS)
        # the bank multiplexer is split in two registered halves (a block RAM's clock-to-out and
        # the routing from banks spread over the device leave no time for more than a 4:1 mux):
        # x_grp[g] is bank 4g..4g+3's word, x_sel the group, both free running; the word is read
        # a cycle early (see `addr` below) so the second half fits the LOAD cycle as before
        n_groups = -(-n_banks // 4)
        x_grp = [Signal(self.in_width, name=f"x_grp{g}", reset_less=True) for g in range(n_groups)]
        x_sel = Signal(range(max(2, n_groups)), reset_less=True)
        m.d.sync += x_sel.eq(bank1 >> 2)
        # addr_copies: a copy of addr[:BITS] per group of four banks (a counter written like addr,
        # equal in every cycle; its own feedback keeps Yosys from merging the copies)
        copies = [Signal(ROM_BANK_BITS, name=f"x_addr_g{g}")
                  for g in range(n_groups * (self.addr_copies and n_banks > 1))]
        self._x_addr, self._x_addr_copies = x_addr, copies
        x_bank = []
        for k in range(n_banks):
            lo, hi = k * ROM_BANK_DEPTH, min(words, (k + 1) * ROM_BANK_DEPTH)
            bank = memory.Memory(shape=unsigned(self.in_width), depth=hi - lo, init=self._x_init[lo:hi],
                                 attrs=BLOCK_RAM)
            m.submodules[f"xmem{k}"] = bank
            rp = bank.read_port()
            m.d.comb += read_in_range(rp, (copies[k // 4] if copies else x_addr[:ROM_BANK_BITS])
                                      if n_banks > 1 else x_addr)
            x_bank.append(rp.data)
        for g in range(n_groups):
            group = x_bank[4 * g:4 * g + 4]
            m.d.sync += x_grp[g].eq(group[0] if len(group) == 1 else Array(group)[bank1[:2]])
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
        # the engine's input memory do not share a cycle at speed. The label and "label beat"
        # are registered too (free running, like x_grp), so beat_q is a 5:1 mux of registers.
        beat_q = Signal(self.in_width)
        y_q, is_label = Signal(cb, reset_less=True), Signal(reset_less=True)
        m.d.sync += [y_q.eq(y_rd.data), is_label.eq(beat == n_in)]
        x_word = x_grp[0] if n_groups == 1 else Array(x_grp)[x_sel]
        addr = Signal(range(max(2, n_all * n_in + 1)))
        # the feature and label memories are addressed straight from registers (their address
        # lines fan out to every bank across the device), so their data follow addr and sample.
        # addr moves on at the end of READ (not of SEND): the memories read the beat's word in
        # the cycle before READ (NEXT or the previous SEND) and again in READ, so x_grp holds it
        # in READ and LOAD and beat_q takes it at the end of LOAD, as when it was read in READ
        m.d.comb += [x_addr.eq(addr), *read_in_range(y_rd, sample)]    # both reach their end: not read
        sent_in_epoch = Signal(range(n_all + 1))
        epochs_sent = Signal(range(self.max_epochs + 1))

        curve_q = Signal(2 * cw, reset_less=True)
        m.d.sync += curve_q.eq(c_rd.data)
        m.d.comb += [c_rd.addr.eq(self.curve_addr),
                     self.curve_data.eq(Cat(curve_q[:cw], Const(0, 32 - cw), curve_q[cw:]))]

        train_phase = Signal()
        m.d.comb += train_phase.eq(sample < self.n_train)
        # registered decisions beside the counters (NEXT and SEND decide from flip-flops, not
        # from compares): `epoch_end` is sent_in_epoch == per_epoch, kept with the counter's
        # writes; `sie_last` (sent_in_epoch == per_epoch - 1) is free running, current in SEND
        # (the counter last moved at least three cycles before)
        epoch_end, sie_last = Signal(), Signal(reset_less=True)
        beat_last = Signal()            # beat == n_in, kept with beat's writes
        per_epoch_m1 = Mux(evaluate, n_all - 1, self.n_train - 1)
        m.d.sync += sie_last.eq(sent_in_epoch == per_epoch_m1)

        # one-hot states (a flip-flop each: the decisions below start from flip-flops, not from
        # a decoded state number); `goto` clears the current state's and sets the next one's
        st = {n: Signal(name=f"st_{n.lower()}", init=n == "IDLE") for n in ("IDLE", "NEXT", "READ", "LOAD", "SEND",
                                                                          "DRAIN")}

        def goto(cur, nxt):
            m.d.sync += [st[cur].eq(0), st[nxt].eq(1)]

        with m.If(st["IDLE"]):
            with m.If(self.start):
                m.d.sync += [epochs.eq(self.epochs), evaluate.eq(self.evaluate), self.done.eq(0),
                             self.busy.eq(self.epochs != 0), self.done.eq(self.epochs == 0),
                             self.epoch.eq(0), self.sent.eq(0), self.received.eq(0),
                             train_correct_q.eq(0), test_correct_q.eq(0),
                             sample.eq(0), beat.eq(0), addr.eq(0), sent_in_epoch.eq(0), epochs_sent.eq(0),
                             *(c.eq(0) for c in copies)]
                with m.If(self.evaluate):
                    m.d.sync += [per_epoch.eq(n_all), epoch_end.eq(n_all == 0)]
                with m.Else():
                    m.d.sync += [per_epoch.eq(self.n_train), epoch_end.eq(self.n_train == 0)]
                with m.If(self.epochs != 0):
                    goto("IDLE", "NEXT")
        with m.If(st["NEXT"]):
            # start a sample, or the next epoch, or finish sending
            with m.If(epoch_end):
                m.d.sync += [sent_in_epoch.eq(0), sample.eq(0), addr.eq(0), epochs_sent.eq(epochs_sent + 1),
                             epoch_end.eq(per_epoch == 0), *(c.eq(0) for c in copies)]
                with m.If(epochs_sent + 1 == epochs):
                    goto("NEXT", "DRAIN")
            with m.Elif(~self.hold):
                m.d.sync += [beat.eq(0), beat_last.eq(n_in == 0)]
                goto("NEXT", "READ")
        with m.If(st["READ"]):         # the word (read from addr / sample) reaches x_grp, y_q
            with m.If(~beat_last):
                m.d.sync += [addr.eq(addr + 1), *(c.eq(c + 1) for c in copies)]
            goto("READ", "LOAD")
        with m.If(st["LOAD"]):         # ... and beat_q (group select, register)
            m.d.sync += beat_q.eq(Mux(is_label, y_q, x_word))
            goto("LOAD", "SEND")
        with m.If(st["SEND"]):
            m.d.comb += [self.o.payload.data.eq(beat_q), self.o.payload.train.eq(train_phase)]
            m.d.comb += self.o.valid.eq(1)
            with m.If(self.o.ready):
                with m.If(is_label):           # beat == n_in (registered in LOAD)
                    m.d.sync += [sample.eq(sample + 1), sent_in_epoch.eq(sent_in_epoch + 1),
                                 self.sent.eq(self.sent + 1), epoch_end.eq(sie_last)]
                    goto("SEND", "NEXT")
                with m.Else():
                    m.d.sync += [beat.eq(beat + 1), beat_last.eq(beat == n_in - 1)]
                    goto("SEND", "READ")
        with m.If(st["DRAIN"]):
            with m.If(~self.busy):
                goto("DRAIN", "IDLE")

        # receiver: predictions arrive in sample order; rsample is the prediction's number in the
        # epoch (it starts at 0 with every epoch, like the sender's sample)
        rsample = Signal(range(n_all + 1))
        curve_we, curve_at = Signal(), Signal.like(self.epoch)
        m.d.sync += curve_we.eq(0)
        m.d.comb += [self.pred.ready.eq(1), *read_in_range(lab_rd, rsample)]
        # the label of the sample in flight is read ahead: lab_rd.data is ymem[rsample] one cycle
        # after rsample settles, and a prediction never arrives in the cycle after the previous one
        label = Signal(cb)
        m.d.comb += label.eq(lab_rd.data)
        rtrain = Signal()
        m.d.comb += rtrain.eq(rsample < self.n_train)

        def eq_const(x, k):
            return x == k if 0 <= k < 1 << len(x) else Const(0)
        # the epoch's last prediction: a comparison with a constant (per_epoch is n_all or
        # n_train), no adder
        r_last = Mux(evaluate, eq_const(rsample, n_all - 1), eq_const(rsample, self.n_train - 1))
        got = Signal()
        m.d.comb += got.eq(self.pred.valid & self.busy)
        m.d.comb += [self.tap_valid.eq(got), self.tap_pred.eq(self.pred.payload),
                     self.tap_label.eq(label), self.tap_index.eq(self.received)]
        # Scoring is two cycles, each from registers (the label's block RAM read, the compare,
        # the counters' carry chains and their wide enables do not fit one cycle at speed):
        # the prediction's cycle registers what it needs (free running) and moves rsample on
        # (the label read ahead needs it at once); the next cycle counts. Predictions are at
        # least two cycles apart, so the counts are current when the next one arrives.
        p_hit, p_correct, p_train, p_last, p_final = Signal(), Signal(), Signal(), Signal(), Signal()
        m.d.sync += [p_hit.eq(got), p_correct.eq(self.pred.payload == label), p_train.eq(rtrain),
                     p_last.eq(r_last), p_final.eq(self.epoch + 1 == epochs)]
        with m.If(got):
            m.d.sync += rsample.eq(Mux(r_last, 0, rsample + 1))
        with m.If(p_hit):
            m.d.sync += self.received.eq(self.received + 1)
            with m.If(p_last):
                m.d.sync += [curve_we.eq(1), curve_at.eq(self.epoch)]
                m.d.sync += [self.epoch.eq(self.epoch + 1), train_correct_q.eq(0), test_correct_q.eq(0),
                             last_train_correct_q.eq(train_correct_q + (p_correct & p_train)),
                             last_test_correct_q.eq(test_correct_q + (p_correct & ~p_train))]
                with m.If(p_final):
                    m.d.sync += [self.busy.eq(0), self.done.eq(1)]
            with m.Elif(p_train):
                m.d.sync += train_correct_q.eq(train_correct_q + p_correct)
            with m.Else():
                m.d.sync += test_correct_q.eq(test_correct_q + p_correct)
        with m.If(self.start & ~self.busy):
            m.d.sync += rsample.eq(0)
        # the epoch's scores go to the curve a cycle after they settle in last_*_correct (the label
        # read, the compare and the count do not also fit the memory's write in one cycle)
        m.d.comb += [c_wr.addr.eq(curve_at), c_wr.en.eq(curve_we),
                     c_wr.data.eq(Cat(last_train_correct_q, last_test_correct_q))]
        return m
