"""The top level: a chain of :class:`.stage.LayerStage` s with a sample stream in, predictions out,
and a control/readback port."""

from __future__ import annotations


from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..compiler.network import quantize_params
from ..compiler.estimate import allocate_lanes
from ..compiler.network import Network, init_params
from ..compiler.statemap import counter_names, readback_map
from .stage import LayerStage

__all__ = ["SigPropEngine", "engine_members"]


def _bits(n: int) -> int:
    return max(1, int(n).bit_length())


def engine_members(net: Network, rb_map: dict) -> tuple[int, dict]:
    """``(input beat width, signature members)`` shared by every engine of ``net``
    (:class:`SigPropEngine`, :class:`.serial.SerialEngine`) with the readback map ``rb_map``."""
    cb = _bits(net.n_classes - 1)
    in_width = max(net.spec.precision.input.width, cb)
    return in_width, {
        "i": In(stream.Signature(data.StructLayout({"data": unsigned(in_width), "train": unsigned(1)}))),
        "o": Out(stream.Signature(unsigned(cb))),
        "rb_en": In(1),
        "rb_addr": In(rb_map["addr_width"]),
        "rb_data": Out(signed(32)),
        "wb_en": In(1), "wb_data": In(signed(32)),
        "idle": Out(1),
        "cycles": Out(32), "samples": Out(32), "inferences": Out(32),
    }


class SigPropEngine(wiring.Component):
    """The SigProp training engine for one network.

    Parameters
    ----------
    net : Network
        The resolved network (spec plus data shape).
    lanes : tuple of int, optional
        Lanes per stage; default :func:`sigprop_fpga.compiler.estimate.allocate_lanes`.
    params : dict, optional
        Quantised initial parameters; default ``quantize_params(net, init_params(net))``.

    Members
    -------
    i : In(stream.Signature(StructLayout({"data": unsigned(w), "train": 1})))
        A sample is ``n_in`` beats of features (raw two's complement in the input format),
        then one beat with the label in ``data`` and ``train`` (1: learn, 0: infer only).
    o : Out(stream.Signature(unsigned(ceil(log2 C))))
        One prediction per sample, in sample order (for training samples, made before learning).
    rb_en : In(1)
        Readback enable; honour it only while ``idle``: it stops the stages taking samples.
    rb_addr : In(readback_map(...)["addr_width"])
    rb_data : Out(signed(32))
        The entry at ``rb_addr``, :attr:`rb_latency` (4) cycles after it is presented (the
        block RAM read, the stage's bank and memory multiplexers and the engine's stage
        multiplexer, each followed by a register).
    wb_en : In(1), wb_data : In(signed(32))
        With ``rb_en`` (idle only): write ``wb_data`` to the memory entry at ``rb_addr``
        (its low bits, in the entry's format) in the same cycle. Counters are read only.
    idle : Out(1)
        No sample in flight and no prediction waiting.
    cycles, samples, inferences : Out(32)
        Busy cycles, trained samples, inference samples.

    Latency and throughput
    ----------------------
    Stages run concurrently, each on its own sample; a training sample costs the slowest stage's
    cycles (:func:`sigprop_fpga.compiler.estimate.estimate`) plus two for the hand-over. The
    first prediction appears after the sum of the stages' forward phases and the last stage.
    """

    #: Cycles from a readback request (``rb_addr``) to its ``rb_data``.
    rb_latency = 4

    def __init__(self, net: Network, lanes=None, params: dict | None = None):
        self._MustUse__silence = True      # no "never used" warning if an argument check fails
        if not isinstance(net, Network):
            raise TypeError(f"Network must be a Network, not {net!r}")
        if lanes is None:
            lanes = allocate_lanes(net)
        lanes = tuple(lanes)
        if len(lanes) != net.depth:
            raise ValueError(f"Expected {net.depth} lane counts (one per hidden layer), got {len(lanes)}")
        for v in lanes:
            if not isinstance(v, int) or isinstance(v, bool):
                raise TypeError(f"Lane counts must be integers, not {v!r}")
            if v < 1:
                raise ValueError(f"Lane counts must be at least 1, not {v}")
        self.net, self.lanes = net, lanes
        self.params = params if params is not None else quantize_params(net, init_params(net))
        self.map = readback_map(net, lanes, self.rb_latency)
        self.counters = counter_names(net)
        self.stages = [LayerStage(net, l, lanes[l], self.params) for l in range(net.depth)]
        self.in_width, members = engine_members(net, self.map)
        super().__init__(members)
        self._MustUse__silence = False

    def elaborate(self, platform):
        m = Module()
        net = self.net
        n_in = net.n_inputs
        win = net.spec.precision.input.width
        for l, st in enumerate(self.stages):
            m.submodules[f"stage{l}"] = st
        hand_over = 0
        for k, (a, b) in enumerate(zip(self.stages, self.stages[1:])):
            # the hand-over is registered twice (a register by each stage: they sit apart on a
            # large device): a's narrowed h/t entry lands in b's input memory two cycles later;
            # b takes the sample only once the last write has landed (in steady state b is the
            # slower stage and a's sample waits for it, so this costs no cycle per sample)
            we1, we = Signal(name=f"hand{k}_we1"), Signal(name=f"hand{k}_we")
            sig1, idx1, data1 = Signal.like(a.out_sig), Signal.like(a.out_idx), Signal.like(a.out_data)
            m.d.sync += [we1.eq(a.out_we), sig1.eq(a.out_sig), idx1.eq(a.out_idx), data1.eq(a.out_data)]
            m.d.sync += [we.eq(we1), b.in_sig.eq(sig1), b.in_idx.eq(idx1), b.in_data.eq(data1)]
            m.d.comb += [b.in_we.eq(we), b.i.valid.eq(a.o.valid & ~we & ~we1),
                         a.o.ready.eq(b.i.ready & ~we & ~we1), b.i.payload.eq(a.o.payload)]
            hand_over = hand_over | we | we1
        last = self.stages[-1]
        wiring.connect(m, last.pred, wiring.flipped(self.o))

        # deserializer: n_in feature beats straight into stage 0's input memory, then the label beat
        label, train, full = Signal(last.pred.payload.shape()), Signal(), Signal()
        idx = Signal(range(n_in + 1))
        s0 = self.stages[0]
        m.d.comb += [self.i.ready.eq(~full), s0.i.valid.eq(full), s0.i.payload.label.eq(label),
                     s0.i.payload.train.eq(train)]
        with m.If(s0.i.valid & s0.i.ready):
            m.d.sync += full.eq(0)
        # a feature lands in stage 0's input memory a cycle after its beat (registered: the
        # beat's source is far from the memory); the label beat comes a cycle later at the
        # earliest and the stage takes the sample a cycle after that, so the write is in before
        # the input memory's halves swap
        f_we = Signal()
        m.d.sync += f_we.eq(0)
        m.d.comb += [s0.in_we.eq(f_we), s0.in_sig.eq(0)]
        with m.If(self.i.valid & self.i.ready):
            with m.If(idx == n_in):
                m.d.sync += [label.eq(self.i.payload.data), train.eq(self.i.payload.train), full.eq(1), idx.eq(0)]
            with m.Else():
                m.d.sync += [f_we.eq(1), s0.in_idx.eq(idx), s0.in_data.eq(self.i.payload.data[:win])]
                m.d.sync += idx.eq(idx + 1)

        # counters
        busy = Signal()
        m.d.comb += busy.eq(full | (idx != 0) | self.o.valid)
        for st in self.stages:
            busy = busy | st.busy
            if hasattr(st, "o"):
                busy = busy | st.o.valid
        pipe = hand_over
        for st in self.stages:
            pipe = pipe | st.pipe_busy
        m.d.comb += self.idle.eq(~busy & ~pipe)
        with m.If(busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        with m.If(last.done):
            with m.If(last.done_train):
                m.d.sync += self.samples.eq(self.samples + 1)
            with m.Else():
                m.d.sync += self.inferences.eq(self.inferences + 1)
        values = {"cycles": self.cycles, "samples": self.samples, "inferences": self.inferences}
        for l, st in enumerate(self.stages):
            for v in ("weight", "bias", "error", "table"):
                values[f"sat_{v}_{l}"] = getattr(st, f"sat_{v}")
            values[f"stage_cycles_{l}"] = st.last_cycles
        if net.spec.readout == "head":
            for v in ("weight", "bias", "error"):
                values[f"sat_{v}_head"] = getattr(last, f"sat_{v}_head")

        # readback: decode, stage read one cycle, register
        f = self.map["fields"]

        def field(name):
            return self.rb_addr[f[name]["lsb"]:f[name]["lsb"] + f[name]["width"]]

        stage_sel = field("stage")
        for l, st in enumerate(self.stages):
            m.d.comb += [st.rb_en.eq(self.rb_en), st.rb_mem.eq(field("mem")),
                         st.rb_bank.eq(field("bank")), st.rb_addr.eq(field("word")),
                         st.wb_en.eq(self.wb_en & (stage_sel == l)), st.wb_data.eq(self.wb_data)]
        # the stages answer three cycles after the request (their read data is registered twice)
        sel, word = stage_sel, field("word")
        for _ in range(3):
            sel_d, word_d = Signal.like(stage_sel), Signal.like(field("word"))
            m.d.sync += [sel_d.eq(sel), word_d.eq(word)]
            sel, word = sel_d, word_d
        out = Signal(signed(32))
        with m.Switch(sel):
            for l, st in enumerate(self.stages):
                with m.Case(l):
                    m.d.comb += out.eq(st.rb_data)
            with m.Case(net.depth):
                with m.Switch(word):
                    for k, name in enumerate(self.counters):
                        with m.Case(k):
                            m.d.comb += out.eq(values[name])
        m.d.sync += self.rb_data.eq(out)
        return m
