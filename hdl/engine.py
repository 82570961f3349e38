"""The top level: a chain of :class:`.stage.LayerStage` s with a sample stream in, predictions out,
and a control/readback port."""

from __future__ import annotations


from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..compiler.estimate import allocate_lanes
from ..compiler.network import Network, init_params, quantize_params
from ..compiler.statemap import counter_names, readback_map
from .stage import LayerStage, StageHandOver

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
            # a's narrowed h/t entry lands in b's input memory two cycles later; b takes the
            # sample only once the last write has landed
            hop = m.submodules[f"hand{k}"] = StageHandOver(a.o.signature)
            wiring.connect(m, a.o, hop.i)
            wiring.connect(m, hop.o, b.i)
            hand_over = hand_over | hop.busy
        last = self.stages[-1]
        wiring.connect(m, last.pred, wiring.flipped(self.o))

        # deserializer: n_in feature beats straight into stage 0's input memory, then the label beat
        label, train, full = Signal(last.pred.payload.shape()), Signal(), Signal()
        idx = Signal(range(n_in + 1))
        # idx == n_in and idx != 0 as flags kept with idx's writes (the beat's handshake and the
        # engine's idle, read by the board's STATUS and CYCLES, start from flip-flops)
        idx_last, idx_nz = Signal(init=n_in == 0), Signal()
        self._idx, self._idx_last, self._idx_nz = idx, idx_last, idx_nz
        s0 = self.stages[0]
        m.d.comb += [self.i.ready.eq(~full), s0.i.sample.valid.eq(full), s0.i.sample.payload.label.eq(label),
                     s0.i.sample.payload.train.eq(train)]
        with m.If(s0.i.sample.valid & s0.i.sample.ready):
            m.d.sync += full.eq(0)
        # a feature lands in stage 0's input memory a cycle after its beat (registered: the
        # beat's source is far from the memory); the label beat comes a cycle later at the
        # earliest and the stage takes the sample a cycle after that, so the write is in before
        # the input memory's halves swap
        f_we = Signal()
        m.d.sync += f_we.eq(0)
        m.d.comb += [s0.i.we.eq(f_we), s0.i.sig.eq(0)]
        with m.If(self.i.valid & self.i.ready):
            with m.If(idx_last):
                m.d.sync += [label.eq(self.i.payload.data), train.eq(self.i.payload.train), full.eq(1), idx.eq(0),
                             idx_last.eq(n_in == 0), idx_nz.eq(0)]
            with m.Else():
                m.d.sync += [f_we.eq(1), s0.i.idx.eq(idx), s0.i.data.eq(self.i.payload.data[:win])]
                m.d.sync += [idx.eq(idx + 1), idx_last.eq(idx == n_in - 1), idx_nz.eq(1)]

        # counters
        busy = Signal()
        m.d.comb += busy.eq(full | idx_nz | self.o.valid)
        for st in self.stages:
            busy = busy | st.busy
            if hasattr(st, "o"):
                busy = busy | st.o.sample.valid
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
        hosts = []
        for l, st in enumerate(self.stages):
            # the host's side of the stage's state port: the decoded address, writes to stage l only
            host = st.state.signature.flip().create(path=(f"state{l}",))
            m.d.comb += [host.en.eq(self.rb_en), host.mem.eq(field("mem")), host.bank.eq(field("bank")),
                         host.addr.eq(field("word")), host.w_en.eq(self.wb_en & (stage_sel == l)),
                         host.w_data.eq(self.wb_data)]
            wiring.connect(m, host, st.state)
            hosts.append(host)
        # the stages answer three cycles after the request (their read data is registered twice).
        # The counters (stable while idle, when readback is honoured) are selected a cycle early
        # into their own register, and the stage select is one-hot by then: the last level is
        # a small AND-OR, not the counter multiplexer behind the stage multiplexer
        sel, word = stage_sel, field("word")
        for k in range(2):
            sel_d, word_d = Signal.like(stage_sel), Signal.like(field("word"))
            m.d.sync += [sel_d.eq(sel), word_d.eq(word)]
            if k == 1:      # the counter's number, one-hot a cycle before the counter is picked
                pick = [Signal(name=f"rb_counter{j}", reset_less=True) for j in range(len(self.counters))]
                m.d.sync += [p.eq(word == j) for j, p in enumerate(pick)]
            sel, word = sel_d, word_d
        counter = Signal(signed(32), reset_less=True)
        acc = Const(0, signed(32))
        for j, name in enumerate(self.counters):
            acc = acc | Mux(pick[j], values[name], 0)
        m.d.sync += counter.eq(acc)
        onehot = [Signal(name=f"rb_sel{l}") for l in range(net.depth + 1)]
        m.d.sync += [o.eq(sel == l) for l, o in enumerate(onehot)]
        out = Signal(signed(32))
        terms = [Mux(onehot[l], host.r_data, 0) for l, host in enumerate(hosts)]
        terms.append(Mux(onehot[net.depth], counter, 0))
        acc = terms[0]
        for t in terms[1:]:
            acc = acc | t
        m.d.comb += out.eq(acc)
        # written every cycle: no reset (the engine's restart would otherwise fan out to it)
        rb_data = Signal(signed(32), reset_less=True)
        m.d.sync += rb_data.eq(out)
        m.d.comb += self.rb_data.eq(rb_data)
        return m
