"""A dataset the host uploads at run time: a 64 Ki x 16 single-port RAM (the iCE40UP5K's four
SB_SPRAM256KA) and the feeder that trains the chip's epochs from it.

The RAM holds the stream mode's bytes (:func:`sigprop_fpga.boards.run.sample_bytes`): per sample
``ceil(input width / 8)`` little-endian bytes a feature, then the label byte; the training samples
first, then the test samples; two bytes a word, the lower address in the low byte.
"""

from amaranth.hdl import Array, Cat, ClockSignal, Const, Instance, Module, Mux, Signal, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["DataRAM", "RamFeeder", "LabelQueue", "DATA_WORDS", "SPRAM_BLOCKS"]

#: Words of the dataset RAM (16 bits each): four SB_SPRAM256KA of 16 Ki words.
DATA_WORDS = 1 << 16
SPRAM_BLOCKS = 4


class DataRAM(wiring.Component):
    """64 Ki x 16 single-port RAM: one address for reads and writes.

    Parameters
    ----------
    primitive : bool
        True: four ``SB_SPRAM256KA`` (iCE40UP5K; for the bitstream). False: an Amaranth memory of
        the same shape and timing (for simulation).

    Members
    -------
    addr : In(16)
    w_data : In(16)
    w_en : In(1)
        Write ``w_data`` at ``addr`` in this cycle.
    r_data : Out(16)
        The word at the ``addr`` of the cycle before (a registered read).

    Latency and throughput
    ----------------------
    One access a cycle; read data one cycle after the address.
    """

    def __init__(self, primitive: bool = False):
        self.primitive = bool(primitive)
        super().__init__({"addr": In(16), "w_data": In(16), "w_en": In(1), "r_data": Out(16)})

    def elaborate(self, platform):
        m = Module()
        if not self.primitive:
            m.submodules.mem = mem = memory.Memory(shape=unsigned(16), depth=DATA_WORDS, init=[])
            wp, rp = mem.write_port(), mem.read_port(transparent_for=())
            m.d.comb += [wp.addr.eq(self.addr), wp.data.eq(self.w_data), wp.en.eq(self.w_en),
                         rp.addr.eq(self.addr), rp.en.eq(1), self.r_data.eq(rp.data)]
            return m
        bank_q = Signal(2)
        m.d.sync += bank_q.eq(self.addr[14:16])
        outs = []
        for k in range(SPRAM_BLOCKS):
            dout = Signal(16, name=f"spram{k}_dout")
            sel = self.addr[14:16] == k
            m.submodules[f"spram{k}"] = Instance(
                "SB_SPRAM256KA",
                i_ADDRESS=self.addr[:14], i_DATAIN=self.w_data, i_MASKWREN=Const(0b1111, 4),
                i_WREN=self.w_en & sel, i_CHIPSELECT=Const(1, 1), i_CLOCK=ClockSignal("sync"),
                i_STANDBY=Const(0, 1), i_SLEEP=Const(0, 1), i_POWEROFF=Const(1, 1), o_DATAOUT=dout)
            outs.append(dout)
        m.d.comb += self.r_data.eq(Mux(bank_q[1], Mux(bank_q[0], outs[3], outs[2]),
                                       Mux(bank_q[0], outs[1], outs[0])))
        return m


#: Labels in flight between the RAM feeder's sender and its scorer. The feeder sends a sample in
#: ``(2 feature_bytes + 1) n_in`` cycles, slower than either engine takes one, so the engine
#: holds a few samples at the most; a full queue only holds the sender back (8: ~70 logic cells
#: fewer than 16 on the iCE40).
LABEL_QUEUE = 8


def _bits(n: int) -> int:
    return max(1, int(n).bit_length())


class LabelQueue(wiring.Component):
    """A first-in first-out queue of ``depth`` labels in flip-flops (no memory: a few entries).

    Members
    -------
    w_data : In(width), w_en : In(1), w_rdy : Out(1)
        Push ``w_data`` when ``w_en`` (ignored while full: ``w_rdy`` low).
    r_data : Out(width), r_en : In(1), r_rdy : Out(1)
        The oldest label (valid while ``r_rdy``); ``r_en`` pops it.

    Latency and throughput
    ----------------------
    A pushed label can be read the cycle after; one push and one pop a cycle.
    """

    def __init__(self, width: int, depth: int = 16):
        if depth < 2 or depth & (depth - 1):
            raise ValueError(f"depth must be a power of two >= 2, not {depth!r}")
        self.depth = depth
        super().__init__({"w_data": In(width), "w_en": In(1), "w_rdy": Out(1),
                          "r_data": Out(width), "r_en": In(1), "r_rdy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        q = Array(Signal(len(self.w_data), name=f"label{i}") for i in range(self.depth))
        k = self.depth.bit_length() - 1
        wp, rp, count = Signal(k), Signal(k), Signal(k + 1)
        push = self.w_en & self.w_rdy
        pop = self.r_en & self.r_rdy
        m.d.comb += [self.w_rdy.eq(count != self.depth), self.r_rdy.eq(count != 0), self.r_data.eq(q[rp])]
        with m.If(push):
            m.d.sync += [q[wp].eq(self.w_data), wp.eq(wp + 1)]
        with m.If(pop):
            m.d.sync += rp.eq(rp + 1)
        m.d.sync += count.eq(count + push - pop)
        return m


class RamFeeder(wiring.Component):
    """Streams the dataset in a :class:`DataRAM` into the engine, epoch after epoch, and scores
    its predictions: :class:`~.feeder.DatasetFeeder`'s ports and behaviour, with the split sizes
    set at run time (``n_train``, ``n_test``) instead of built in.

    Parameters
    ----------
    n_in : int
        Features a sample.
    feature_bytes : int
        Bytes a feature (1 or 2).
    in_width : int
        Width of the beat's ``data`` field (the engine's ``in_width``).
    n_classes : int
    max_epochs : int

    Members
    -------
    o, pred, start, epochs, evaluate, hold, busy, done, epoch, sent, received, train_correct,
    test_correct, last_train_correct, last_test_correct, curve_addr, curve_data
        As :class:`~.feeder.DatasetFeeder` (the curve's scores are 16 bits each).
    n_train, n_test : In(16)
        Samples of each split in the RAM (training first); read at ``start``.
    mem_addr : Out(16), mem_data : In(16)
        The RAM's read port (data a cycle after the address); the feeder drives the address
        only while busy.

    Latency and throughput
    ----------------------
    Two cycles a byte (address, data) and one to send a beat: ``(2 feature_bytes + 1) n_in + 3``
    cycles a sample, if the engine takes each beat at once. A prediction is scored two cycles
    after it arrives. Labels travel to the scorer through a :data:`LABEL_QUEUE`-entry
    :class:`LabelQueue` (the engine holds fewer samples than that; a full queue holds the sender).
    """

    def __init__(self, *, n_in: int, feature_bytes: int, in_width: int, n_classes: int, max_epochs: int = 255):
        if feature_bytes not in (1, 2):
            raise ValueError(f"feature_bytes must be 1 or 2, not {feature_bytes!r}")
        self.n_in, self.fb, self.in_width = n_in, feature_bytes, in_width
        self.n_classes, self.max_epochs = n_classes, max_epochs
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
            "n_train": In(16), "n_test": In(16), "mem_addr": Out(16), "mem_data": In(16),
        })

    def elaborate(self, platform):
        m = Module()
        cb = _bits(self.n_classes - 1)
        m.submodules.labels = labels = LabelQueue(cb, LABEL_QUEUE)
        m.submodules.curve = curve = memory.Memory(shape=unsigned(32), depth=self.max_epochs, init=[])
        c_wr, c_rd = curve.write_port(), curve.read_port()
        m.d.comb += [c_rd.addr.eq(self.curve_addr),
                     self.curve_data.eq(Cat(c_rd.data[:16], Const(0, 16), c_rd.data[16:], Const(0, 16)))]
        n_train, per_epoch = Signal(16), Signal(17)
        epochs = Signal.like(self.epochs)         # the epochs asked for, minus one (the last epoch's number)
        # samples streamed / scored since start: at most max_epochs * per_epoch (< 2**17)
        sent, received = Signal(_bits(self.max_epochs * ((1 << 17) - 1))), Signal(_bits(self.max_epochs * ((1 << 17) - 1)))
        m.d.comb += [self.sent.eq(sent), self.received.eq(received)]
        self._sender(m, labels, n_train, per_epoch, epochs, sent)
        self._receiver(m, labels, n_train, per_epoch, epochs, c_wr, received)
        return m

    def _sender(self, m, labels, n_train, per_epoch, epochs, sent):
        n_in, fb = self.n_in, self.fb
        ptr = Signal(17)                            # byte address
        sent_in_epoch = Signal(17)
        # sent_in_epoch < n_train, kept as a flag (an equality per sample instead of a carry chain)
        s_train = Signal()
        epochs_sent = Signal(range(self.max_epochs + 1))
        beat = Signal(range(n_in + 1))
        sub = Signal(range(fb))
        acc = Signal(16)
        byte = Mux(ptr[0], self.mem_data[8:], self.mem_data[:8])
        # sent_in_epoch + 1 == n_train registered from sent_in_epoch (a sample's label is sent
        # 2 feature_bytes n_in + 2 cycles or more after the one before)
        s_train_end = Signal()
        m.d.sync += s_train_end.eq(sent_in_epoch + 1 == n_train)
        # sent_in_epoch == per_epoch (the epoch sent), a flag set beside each write of sent_in_epoch
        # (the next sample's decision reads a flip-flop, not a 17-bit comparator: the iCEBreaker's
        # critical path was that compare through NEXT into ptr's enable, 31.2 ns)
        s_epoch_end, epoch_done = Signal(), Signal()
        m.d.sync += s_epoch_end.eq(sent_in_epoch + 1 == per_epoch)
        m.d.comb += self.mem_addr.eq(ptr[1:])
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [epochs.eq(self.epochs - 1), self.busy.eq(self.epochs != 0),
                                 self.done.eq(self.epochs == 0), self.epoch.eq(0), sent.eq(0),
                                 n_train.eq(self.n_train), per_epoch.eq(self.n_train + Mux(self.evaluate, self.n_test, 0)),
                                 s_train.eq(self.n_train != 0), ptr.eq(0), sent_in_epoch.eq(0), epochs_sent.eq(0),
                                 epoch_done.eq((self.n_train == 0) & (~self.evaluate | (self.n_test == 0)))]
                    with m.If(self.epochs != 0):
                        m.next = "NEXT"
            with m.State("NEXT"):
                with m.If(epoch_done):
                    m.d.sync += [sent_in_epoch.eq(0), epoch_done.eq(per_epoch == 0), s_train.eq(n_train != 0),
                                 ptr.eq(0), epochs_sent.eq(epochs_sent + 1)]
                    with m.If(epochs_sent == epochs):
                        m.next = "DRAIN"
                with m.Elif(~self.hold):
                    m.d.sync += [beat.eq(0), sub.eq(0)]
                    m.next = "ADDR"
            with m.State("ADDR"):                   # the RAM reads the word of ptr
                m.next = "BYTE"
            with m.State("BYTE"):
                m.d.sync += [acc.eq(Cat(acc[8:], byte)), ptr.eq(ptr + 1)]
                with m.If((beat == n_in) | (sub == fb - 1)):
                    m.d.sync += sub.eq(0)
                    m.next = "SEND"
                with m.Else():
                    m.d.sync += sub.eq(sub + 1)
                    m.next = "ADDR"
            with m.State("SEND"):
                is_label = beat == n_in
                value = Mux(is_label, acc[8:], acc[16 - 8 * fb:])     # the newest byte is acc[8:]
                m.d.comb += [self.o.payload.data.eq(value), self.o.payload.train.eq(s_train),
                             self.o.valid.eq(~is_label | labels.w_rdy)]
                with m.If(self.o.valid & self.o.ready):
                    with m.If(is_label):
                        m.d.comb += [labels.w_en.eq(1), labels.w_data.eq(value)]
                        m.d.sync += [sent_in_epoch.eq(sent_in_epoch + 1), epoch_done.eq(s_epoch_end), sent.eq(sent + 1),
                                     s_train.eq(s_train & ~s_train_end)]
                        m.next = "NEXT"
                    with m.Else():
                        m.d.sync += beat.eq(beat + 1)
                        m.next = "ADDR"
            with m.State("DRAIN"):
                with m.If(~self.busy):
                    m.next = "IDLE"

    def _receiver(self, m, labels, n_train, per_epoch, epochs, c_wr, received):
        rsample = Signal(17)
        r_train = Signal()                          # rsample < n_train, as a flag (see _sender)
        tc, vc = Signal(16), Signal(16)
        ltc, lvc = Signal(16), Signal(16)
        m.d.comb += [self.train_correct.eq(tc), self.test_correct.eq(vc),
                     self.last_train_correct.eq(ltc), self.last_test_correct.eq(lvc)]
        got = Signal()
        m.d.comb += [got.eq(self.pred.valid & self.busy), self.pred.ready.eq(1),
                     labels.r_en.eq(got)]
        p_hit, p_correct, p_train, p_last, p_final = Signal(), Signal(), Signal(), Signal(), Signal()
        # rsample's compares registered from rsample itself (the carry chains do not sit in front
        # of the scorer's registers): predictions come at least 3 n_in cycles apart (the sender's
        # rate), so they have settled when the next one arrives
        r_last, r_train_end, r_next = Signal(), Signal(), Signal.like(rsample)
        m.d.sync += [r_next.eq(rsample + 1), r_last.eq(rsample + 1 == per_epoch), r_train_end.eq(rsample + 1 == n_train)]
        m.d.sync += [p_hit.eq(got), p_correct.eq(self.pred.payload == labels.r_data),
                     p_train.eq(r_train), p_last.eq(r_last), p_final.eq(self.epoch == epochs)]
        with m.If(got):
            m.d.sync += [rsample.eq(Mux(r_last, 0, r_next)),
                         r_train.eq(Mux(r_last, n_train != 0, r_train & ~r_train_end))]
        curve_we, curve_at = Signal(), Signal.like(self.epoch)
        m.d.sync += curve_we.eq(0)
        # the scores after this prediction: one incrementer each, shared by the epoch's last
        # prediction (into the curve) and the others
        tc_next, vc_next = tc + (p_correct & p_train), vc + (p_correct & ~p_train)
        with m.If(p_hit):
            m.d.sync += received.eq(received + 1)
            with m.If(p_last):
                m.d.sync += [curve_we.eq(1), curve_at.eq(self.epoch), self.epoch.eq(self.epoch + 1),
                             tc.eq(0), vc.eq(0), ltc.eq(tc_next), lvc.eq(vc_next)]
                with m.If(p_final):
                    m.d.sync += [self.busy.eq(0), self.done.eq(1)]
            with m.Else():
                m.d.sync += [tc.eq(tc_next), vc.eq(vc_next)]
        with m.If(self.start & ~self.busy):
            m.d.sync += [rsample.eq(0), r_train.eq(self.n_train != 0), received.eq(0), tc.eq(0), vc.eq(0)]
        m.d.comb += [c_wr.addr.eq(curve_at), c_wr.en.eq(curve_we), c_wr.data.eq(Cat(ltc, lvc))]
