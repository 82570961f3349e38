"""One hidden layer of the SigProp datapath: a lane array, its memories and its training FSM.

The stage is the hardware twin of :meth:`sigprop_fpga.sim.golden.GoldenSigProp._layer` (and, in
the last stage with ``readout: head``, of ``_head_logits``/``_train_head``). Phases of a
training sample, in order, named as :class:`sigprop_fpga.compiler.rule.Phase` and the estimator
(the FSM states are these words in capitals; ``P`` lanes, ``ci = ceil(n_in/P)``, ``cn = ceil(n/P)``)::

    FORWARD      h = f(W x + b) [, t = f(W t_in + b)]  lanes across i, adder tree   S n ci
                 t = f(R[c]) (layer 0) read alongside, one chunk per cycle
    LOGITS       s_k = T[k] . h (pre-write caches)     lanes across j              C cn
                 -> prediction (last stage) and m = argmax_{k != c} s_k
    CACHE        s_c = t . h, T[c] <- t                                             cn
    SOFTMAX      prob = softmax(s)                     :class:`.softmax.Softmax`
    GRADIENT     g_h = narrow(sum_k err_k T[k]), g_t   lanes across j              (C + 1) cn
    UPDATE       W <- sat(W + round(-u >> s)), b       read-modify-write chunks    n (terms ci + 1)
    TABLE        R[c], R[m] <- sat(R + round(-d >> s)) layer 0                     rows cn
    HEAD_LOGITS, HEAD_SOFTMAX, HEAD_UPDATE             the head (last stage)       C cn, -, C (cn + 1)

``IDLE`` (taking a sample) and ``FIN`` (finishing it) are the ``overhead``. Every issuing phase
costs ``stage_drain(P)`` (:mod:`sigprop_fpga.compiler.timing`: 6 up to 8 lanes, one more per three
adder-tree levels beyond three) more cycles in its ``W_<PHASE>`` state to drain the pipeline (S0
issue -> S1 memory read and lane multiplexers -> registered operand sources -> operand
multiplexers -> fabric operand registers -> operand registers -> product register -> adder tree registers -> S2 accumulate), one more
where the finished dot product is narrowed or compared at S3 (LOGITS, CACHE, HEAD_LOGITS), two in
FORWARD (h and t are narrowed at S3 and written at S4), one less in GRADIENT (the update's first
reads of the delta FIFOs come after their last pushes). The delta FIFOs are filled at S3 and W,
b, R and the head are written back at S4 (landing a cycle later through registered write ports)
without a longer drain: nothing reads those words sooner (``no_drain`` in ``_Datapath._fsm``
lists the phases that need no drain at all). The engine is idle only once the S4 writes and the
saturation counts landed (``pipe_busy``). ``Tin[c] <- t_in`` is written during ``FORWARD``. An
inference sample runs ``FORWARD`` (``h`` only) and, in the last stage, ``LOGITS`` or
``HEAD_LOGITS``.

The elaboration (:class:`_Datapath`) has one method per phase, each holding that phase's logic at
every pipeline stage; the lane array, the addresses, the FSM and the host's state port are shared.

Stochastic rounding: the stage's :class:`.lfsr.Lfsr` (and the head's) hands lane ``p`` the
``p``-th next draw and advances by the number of real entries written that cycle (padding lanes
beyond a width take none), so the draws follow the golden model's row-major order over
``[W | b]``, then the ``R`` rows ``c`` and ``m``.
"""

from __future__ import annotations

import math

import numpy as np
from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory, ReadPort
from amaranth.lib.wiring import In, Out

from ..compiler.estimate import softmax_groups
from ..compiler.fixed import EXP2_TABLE, P_FRAC
from ..compiler.rule import E_BITS, activation_range, softmax_fracs, step_shifts, update_terms
from ..compiler.network import Network, lfsr_seed
from ..compiler.statemap import MEM_IDS, pow2_depth, stage_memories
from .fixed import (inside, mul_const as _mulk, narrow, round_nearest_parts, round_shift, round_shift_halved,
                    rounded_step, saturate, sub_rounded)
from .lfsr import Lfsr
from . import BLOCK_RAM
from ..compiler.timing import mul_latency, stage_latency
from .mac import MacLanes, family_of
from .memports import read_whole
from .softmax import Softmax

__all__ = ["LayerStage", "StageLinkSignature", "StatePortSignature", "StageHandOver", "sample_layout", "ctrl_layout"]


# phase codes carried down the pipeline with each issue (0: no issue)
_FORWARD, _LOGITS, _CACHE, _GRADIENT, _UPDATE, _TABLE, _HEAD_LOGITS, _HEAD_UPDATE = 1, 3, 4, 5, 6, 7, 8, 9
# the lanes' operand sources: a (weights, caches, err, the deltas, the softmax's e_k) and b (the
# layer input, h, the caches, the softmax's q)
_A_W, _A_T, _A_T_CHUNK, _A_ERR, _A_D, _A_HEAD_W, _A_D_HEAD, _A_SM = range(1, 9)
_B_IN, _B_H_CHUNK, _B_T, _B_TIN, _B_SM = range(1, 6)


# the issue phases (the FSM's states that issue; the trackers' coefficients are given per phase)
_ISSUE_PHASES = ("FORWARD", "LOGITS", "CACHE", "GRADIENT", "UPDATE", "TABLE", "HEAD_LOGITS", "HEAD_UPDATE")


#: Delta FIFOs of at least this many chunks are rings in a memory (:meth:`_Datapath._delta_ring`)
#: rather than chunks of flip-flops, except on the iCE40 (no distributed RAM).
FIFO_RING_CHUNKS = 4


class _VPort:
    """A logical memory bank's port (addr, data, en) kept apart until it is packed."""

    def __init__(self, width: int, name: str):
        self.addr = Signal(16, name=f"{name}_addr")
        self.data = Signal(signed(width), name=f"{name}_data")
        self.en = Signal(name=f"{name}_en")


def _bits(n: int) -> int:
    return max(1, (n).bit_length())


def ctrl_layout(n_classes: int) -> data.StructLayout:
    """Payload of the streams between stages: the label and the mode. The vectors themselves go
    through the consumer's input memory (``in_*`` ports), written entry by entry."""
    return data.StructLayout({"label": unsigned(_bits(n_classes - 1)), "train": unsigned(1)})


def _divmod_const(j, P: int, count: int):
    """``(j // P, j % P)`` for ``0 <= j < count``: bit slices for a power of two, else a table."""
    if P & (P - 1) == 0:
        k = P.bit_length() - 1
        return j >> k, (j[:k] if k else Const(0, 1))
    return (Array(Const(v // P, range(max(2, count // P + 1))) for v in range(count))[j],
            Array(Const(v % P, range(max(2, P))) for v in range(count))[j])


def sample_layout(n: int, width: int, n_classes: int, with_t: bool) -> data.StructLayout:
    """Payload between stages: a layer input ``x`` (and its target ``t``), the label, the mode."""
    fields = {"x": data.ArrayLayout(signed(width), n)}
    if with_t:
        fields["t"] = data.ArrayLayout(signed(width), n)
    fields["label"] = unsigned(_bits(n_classes - 1))
    fields["train"] = unsigned(1)
    return data.StructLayout(fields)


class StageLinkSignature(wiring.Signature):
    """The hand-over from one stage to the next, the producing side (the consumer's is flipped).

    Parameters
    ----------
    n_classes : int
    entries : int
        Entries of the vector handed over (the producer's units, the consumer's fan-in).
    width : int
        Width of an entry (the producer's activation, the consumer's input format).

    Members
    -------
    sample : Out(stream.Signature(ctrl_layout(n_classes)))
        One beat per sample, its label and mode, valid once every entry of the sample went out.
    we, sig, idx, data : Out
        Write entry ``idx`` of ``h`` (``sig`` 0) or of ``t`` (``sig`` 1) into the consumer's
        input memory, one entry a cycle, before the sample's beat.
    """

    def __init__(self, n_classes: int, entries: int, width: int):
        self.n_classes, self.entries, self.width = n_classes, entries, width
        super().__init__({
            "sample": Out(stream.Signature(ctrl_layout(n_classes))),
            "we": Out(1), "sig": Out(1), "idx": Out(range(max(2, entries))), "data": Out(signed(width)),
        })


class StatePortSignature(wiring.Signature):
    """A stage's state port, the host's side: readback and checkpoint writes, idle only.

    Parameters
    ----------
    bank_width, addr_width : int
        Bits of the bank and of the word address.

    Members
    -------
    en : Out(1)
        A request (only while the stage is idle and not fed; it stops the stage taking samples).
    mem, bank, addr : Out
        The word: memory id :data:`MEM_IDS`, bank, word.
    r_data : In(signed(32))
        The word, valid three cycles after the request (the block RAM's read, a register after
        the bank multiplexer, a register after the memory multiplexer).
    w_en, w_data : Out
        With ``en``: write ``w_data`` (its low bits, the memory's format) to the word.
    """

    def __init__(self, bank_width: int, addr_width: int):
        self.bank_width, self.addr_width = bank_width, addr_width
        super().__init__({
            "en": Out(1), "mem": Out(3), "bank": Out(bank_width), "addr": Out(addr_width),
            "r_data": In(signed(32)), "w_en": Out(1), "w_data": Out(signed(32)),
        })


class StageHandOver(wiring.Component):
    """The registered hop between two stages (a register by each stage: they sit apart on a large
    device).

    Members
    -------
    i : In(StageLinkSignature)
        From the producing stage.
    o : Out(StageLinkSignature)
        To the consuming stage.
    busy : Out(1)
        An entry is on its way.

    Latency and throughput
    ----------------------
    An entry lands in the consumer's input memory two cycles after it left; the sample's beat
    passes only once the last entry has landed (in steady state the consumer is the slower stage
    and the producer's sample waits for it, so this costs no cycle per sample).
    """

    def __init__(self, link: StageLinkSignature):
        super().__init__({"i": In(link), "o": Out(link), "busy": Out(1)})

    def elaborate(self, platform):
        m = Module()
        i, o = self.i, self.o
        we1, we = Signal(name="we1"), Signal(name="we")
        sig1, idx1, data1 = Signal.like(i.sig), Signal.like(i.idx), Signal.like(i.data)
        m.d.sync += [we1.eq(i.we), sig1.eq(i.sig), idx1.eq(i.idx), data1.eq(i.data)]
        m.d.sync += [we.eq(we1), o.sig.eq(sig1), o.idx.eq(idx1), o.data.eq(data1)]
        m.d.comb += [o.we.eq(we), o.sample.valid.eq(i.sample.valid & ~we & ~we1),
                     i.sample.ready.eq(o.sample.ready & ~we & ~we1), o.sample.payload.eq(i.sample.payload),
                     self.busy.eq(we | we1)]
        return m


class LayerStage(wiring.Component):
    """A pipelined SigProp layer with ``lanes`` multipliers.

    Parameters
    ----------
    net : Network
        The resolved network.
    layer : int
        Which hidden layer this stage computes.
    lanes : int
        Multipliers (lanes) of the stage, ``>= 1``; need not divide the widths.
    params : dict
        Quantised initial parameters, :func:`sigprop_fpga.compiler.network.quantize_params`;
        an optional ``"lfsr"`` entry (one state per unit, layers then the head) starts the
        stochastic-rounding LFSRs there instead of at their seeds (a checkpoint's positions).

    Members
    -------
    i : In(StageLinkSignature(C, n_in, input width))
        The layer input ``x`` (``sig`` 0) and its target ``t_in`` (``sig`` 1, layers ``>= 1``),
        written entry by entry into the write half of the double-buffered input memory (P-lane
        words, read a chunk per cycle); then the sample's label and mode (``i.sample``), taken
        only when the stage is idle and its own output has been passed on; the halves swap then.
    o : Out(StageLinkSignature(C, n, activation width))
        ``h[j]`` (``sig`` 0) and ``t[j]`` (1) for the next stage, one entry a cycle as
        ``FORWARD`` produces them, then the sample's beat (absent in the last stage), valid from
        the end of ``FORWARD`` (and, at layer 0, once every ``t`` entry went out) until taken.
    pred : Out(stream.Signature(unsigned))
        The prediction (last stage only), made before learning from the sample.
    done, done_train : Out(1)
        One-cycle strobes when a sample (a training sample) finishes in this stage.
    busy : Out(1)
    pipe_busy : Out(1)
        A write or a saturation count of a finished phase is still in the pipeline.
    last_cycles : Out(32)
        Cycles the last sample took, from its acceptance to its ``FIN`` cycle inclusive.
    sat_weight, sat_bias, sat_error, sat_table : Out(32)
        Saturation counters, as the golden model's ``sat_*_<layer>``.
    sat_weight_head, sat_bias_head, sat_error_head : Out(32)
        The head's (last stage with a head only).
    state : In(StatePortSignature(bank bits, word bits))
        Readback and checkpoint writes (weights, biases, the table, the caches), idle only; the
        word is on ``state.r_data`` three cycles after the request.

    Latency and throughput
    ----------------------
    One sample at a time; the cycles per sample are those of
    :func:`sigprop_fpga.compiler.estimate.stage_phases` (summed), which this FSM follows exactly.
    """

    def __init__(self, net: Network, layer: int, lanes: int, params: dict):
        self._MustUse__silence = True      # no "never used" warning if an argument check fails
        if not isinstance(net, Network):
            raise TypeError(f"Network must be a Network, not {net!r}")
        if not isinstance(layer, int) or isinstance(layer, bool):
            raise TypeError(f"Layer must be an integer, not {layer!r}")
        if not 0 <= layer < net.depth:
            raise ValueError(f"Layer must be from 0 to {net.depth - 1}, not {layer}")
        if not isinstance(lanes, int) or isinstance(lanes, bool):
            raise TypeError(f"Lanes must be an integer, not {lanes!r}")
        if lanes < 1:
            raise ValueError(f"Lanes must be at least 1, not {lanes}")
        if not isinstance(params, dict) or "layers" not in params:
            raise TypeError("Params must be the dict of quantize_params(net, ...)")
        self.net, self.l, self.P, self.params = net, layer, lanes, params
        l = layer
        self.n_in, self.n, self.C = net.fan_in(l), net.units(l), net.n_classes
        self.ci, self.cn = math.ceil(self.n_in / lanes), math.ceil(self.n / lanes)
        self.last = l == net.depth - 1
        self.head = self.last and net.spec.readout == "head"
        self.class_ce = net.spec.learning.loss == "class_ce"
        self.push = net.spec.learning.push and self.class_ce
        p = net.prec(l)
        fin, fa, fw, fb, fe = net.in_format(l).frac_bits, p.activation.frac_bits, p.weight.frac_bits, \
            p.bias.frac_bits, p.error.frac_bits
        if fw + fin < fb or fw + fa < fb:
            raise ValueError(f"Layer {l}: bias format {p.bias} has more fraction bits than a product")
        self.mems = stage_memories(net, l, lanes)
        ws = {}
        for name, (banks, depth, q, _, _) in self.mems.items():
            ws[name] = q.width
        self.addr_bits = _bits(max(d for _, d, _, _, _ in self.mems.values()) - 1)
        cb = _bits(self.C - 1)
        sig = {
            "i": In(StageLinkSignature(self.C, self.n_in, net.in_format(l).width)),
            "done": Out(1), "done_train": Out(1), "busy": Out(1), "pipe_busy": Out(1), "last_cycles": Out(32),
            "sat_weight": Out(32), "sat_bias": Out(32), "sat_error": Out(32), "sat_table": Out(32),
            "state": In(StatePortSignature(_bits(lanes - 1), self.addr_bits)),
        }
        if not self.last:
            sig["o"] = Out(StageLinkSignature(self.C, self.n, p.activation.width))
        else:
            sig["pred"] = Out(stream.Signature(unsigned(cb)))
        if self.head:
            sig.update({"sat_weight_head": Out(32), "sat_bias_head": Out(32), "sat_error_head": Out(32)})
        super().__init__(sig)
        self._MustUse__silence = False

    # the memory images the stage starts from
    def initial_image(self, name: str) -> list[list[int]]:
        banks, depth, q, where, shape = self.mems[name]
        img = [[0] * depth for _ in range(banks)]
        l = self.l
        src = {"W": lambda: self.params["layers"][l]["W"], "b": lambda: self.params["layers"][l]["b"],
               "R": lambda: self.params["R"], "head_W": lambda: self.params["head"]["W"],
               "head_b": lambda: self.params["head"]["b"]}.get(name)
        if src is None:
            return img
        arr = np.asarray(src(), dtype=np.int64)
        for idx in np.ndindex(*shape):
            bank, word = where(*idx)
            img[bank][word] = int(arr[idx])
        return img

    def elaborate(self, platform):
        m = Module()
        self.family = family_of(platform)      # the h / t chunk memories' kind (_vectors)
        self._dp = _Datapath(self)             # kept for the tests' flag checks
        self._dp.elaborate(m)
        return m


class _Slot:
    """An issue at one pipeline stage: whether there is one, its phase code and its counters.

    The counters, by phase: ``sig`` the signal ``FORWARD`` multiplies by ``W`` (0: ``h``, 1: ``t``);
    ``row`` the unit ``j`` (``FORWARD``, ``UPDATE``, ``HEAD_UPDATE``), the class ``k``
    (``LOGITS``, ``HEAD_LOGITS``), the chunk of ``j`` (``GRADIENT``) or the table row (``TABLE``:
    0 for ``c``, 1 for ``m``); ``col`` the chunk of the dot product (``GRADIENT``: the class,
    ``C`` for ``g_t``; ``UPDATE``, ``HEAD_UPDATE``: ``ci``/``cn`` for the bias step); ``term``
    the update term (0: the ``h`` side, 1: the own class, 2: the class ``m``).
    """

    def __init__(self, stage: int, counter_shape):
        self.stage = stage
        self.valid = Signal(name=f"valid{stage}")
        self.phase = Signal(4, name=f"phase{stage}")
        self.sig, self.row, self.col, self.term = (Signal(counter_shape, name=f"{nm}{stage}")
                                                   for nm in ("sig", "row", "col", "term"))
        self._src, self._flags = None, {}
        # S0 only: one registered flag per phase code, set with ``phase`` (``_Datapath._goto``)
        self.phase_flags = {}

    def fields(self):
        return (self.valid, self.phase, self.sig, self.row, self.col, self.term)

    def follow(self, m, src: "_Slot", cycles: int):
        """This slot's fields are ``src``'s ``cycles`` cycles later: its conditions
        (:meth:`flag`) are decided at ``src`` and registered along, in module ``m`` (one outside
        every ``m.If`` of the datapath: the flags are asked for inside them)."""
        self._src = (m, src, cycles)

    def flag(self, name: str, cond):
        """``cond(slot)`` of this slot's issue; for a slot that follows an earlier one, decided
        there and carried in registers (a flip-flop, not a compare, in front of the enables it
        drives; the same value cycle for cycle)."""
        if self._src is None:
            return cond(self)
        if name not in self._flags:
            m, src, cycles = self._src
            v = src.flag(name, cond)
            for i in range(cycles):
                r = Signal(name=f"{name}{self.stage}" + (f"_d{i}" if i < cycles - 1 else ""))
                m.d.sync += r.eq(v)
                v = r
            self._flags[name] = v
        return self._flags[name]

    def at(self, code):
        """This stage holds an issue of phase ``code``."""
        if code in self.phase_flags:     # S0: a flip-flop, not a compare of phase
            return self.phase_flags[code]
        return self.flag(f"at{code}_", lambda s: s.valid & (s.phase == code))

    def col_is(self, value: int):
        """The issue's ``col`` counter is ``value`` (a constant)."""
        return self.flag(f"col{value}_", lambda s: s.col == value)


class _Datapath:
    """One elaboration of a :class:`LayerStage`: the signals and memories it shares between the
    phases, and one method per phase of the learning rule (see the table at the top).

    Pipeline stages of an issue: ``S0`` (the FSM issues it; read addresses), ``S1`` (memory read
    data, lane multiplexers; the operand sources are chosen), ``S1b`` (operand multiplexers and
    registers), the products and the adder tree, ``S2`` (accumulate), ``S3`` (the finished sums
    narrowed, compared or turned into rounded steps), ``S4`` (saturate, write back).
    """

    def __init__(self, stage: LayerStage):
        self.st = stage
        net, l = stage.net, stage.l
        self.net, self.l, self.P, self.C, self.n, self.n_in = net, l, stage.P, stage.C, stage.n, stage.n_in
        self.ci, self.cn = stage.ci, stage.cn
        self.lat = stage_latency(self.P)       # S1 -> S2, the adder tree's registers included
        self.last, self.head, self.class_ce, self.push = stage.last, stage.head, stage.class_ce, stage.push
        self.table = l == 0 and self.class_ce          # layer 0 learns the target table R
        self.need_sm = self.class_ce or self.head
        p = net.prec(l)
        self.qa, self.qw, self.qb, self.qe, self.qt = p.activation, p.weight, p.bias, p.error, \
            net.spec.precision.table
        self.qin = net.in_format(l)
        self.q_act = activation_range(self.qa)     # hard-tanh's bounds in the activation format
        self.fin, self.fa, self.fw, self.fb, self.fe, self.ft = (q.frac_bits for q in (
            self.qin, self.qa, self.qw, self.qb, self.qe, self.qt))
        self.shifts = step_shifts(net, l)
        self.terms = update_terms(net, l)
        self.mode = net.spec.precision.rounding
        self.stoch = self.mode == "stochastic"
        # the steps are subtracted at S4 with rounding to nearest (half to even is odd-symmetric:
        # round(-x) = -round(x), so the negation is not a carry chain of its own at S3), added
        # as rounded negations otherwise (floor-based roundings are not symmetric)
        self.sub = self.mode == "nearest"
        self.operand_sel = {}    # phase code -> (operand a, operand b) of the lanes
        self.shared_a = {}       # operand a sources shared by every lane (err, the deltas, ...)
        self.logit_index = {}    # phase code -> the logit its dot products fill

    def elaborate(self, m):
        self._memories(m)
        self._vectors(m)
        self._widths()
        self._softmax_unit(m)
        self._rounding(m)
        self._registers()
        self._pipeline(m)
        self._addresses(m)
        self._chunks(m)
        self._lanes(m)
        self._accumulators(m)
        # the learning rule, phase by phase
        self._forward(m)
        self._logits(m)
        self._cache(m)
        self._softmax(m)
        self._gradient(m)
        self._update(m)
        self._table(m)
        self._head(m)
        self._fifo_enables(m)
        self._logit_registers(m)
        self._operand_mux(m)
        self._saturation_counters(m)
        self._hand_over(m)
        self._fsm(m)
        self._checkpoint(m)
        self._readback(m)

    # ---- helpers ----
    def _late(self, m, target, value, cycles=None):
        """``target`` <= ``value`` ``cycles`` (default ``self.lat``, the stage's
        :func:`~sigprop_fpga.compiler.timing.stage_latency`) cycles later: S1 values meet the
        products at S2."""
        cycles = self.lat if cycles is None else cycles
        for _ in range(cycles - 1):
            mid = Signal.like(target, name=f"{target.name}_d")
            m.d.sync += mid.eq(value)
            value = mid
        m.d.sync += target.eq(value)

    def _s3(self, m, x2):
        """The S2 value one cycle later, alongside ``lane_acc`` (the lanes' finished sums)."""
        if x2 is None:
            return None
        if isinstance(x2, list):
            return [self._s3(m, x) for x in x2]
        x3 = Signal.like(x2, name=f"{x2.name}_s3")
        m.d.sync += x3.eq(x2)
        return x3

    def _src(self, m, v, name):
        """``v`` registered: an operand source at S1b."""
        r = Signal(Value.cast(v).shape(), name=name, reset_less=True)
        m.d.sync += r.eq(v)
        return r

    def _inside(self, v):
        """``f'(v)`` of the hard-tanh: ``v`` strictly inside the activation's range (two
        equalities when the range is the format's own)."""
        return inside(v, self.q_act)

    def _lane_valid(self, pp, idx, count):
        """Lane ``pp`` of chunk ``idx`` (``0 <= idx < ceil(count / P)``) holds one of ``count``
        entries: only the last chunk may be short, so a lane's answer is a compare of ``idx``
        with a constant (no ``idx * P + pp`` adder per lane)."""
        chunks = -(-count // self.P)
        if pp < count - (chunks - 1) * self.P:
            return Const(1, 1)
        return idx < chunks - 1

    def _fit(self, v, width):
        """A lane accumulator's value cut to ``width`` signed bits (a phase's sums fit them)."""
        return v if len(v) <= width else v[:width].as_signed()

    def _chunk_count(self, idx, chunks, total):
        """Entries in chunk ``idx`` of ``chunks`` over ``total`` (the last may be short)."""
        return Mux(idx == chunks - 1, total - (chunks - 1) * self.P, self.P)

    def _step(self, x, k, draw):
        """The rounded ``-x >> k``, or, when the step is subtracted, ``x >> k`` rounded to
        nearest as the complement of :func:`.fixed.rounded_step`'s encoding: ``Cat(up, q)``, the
        floor and the increment apart (the increment is the carry of the subtraction at S4, no
        incrementer at S3; the complement is taken in the adder's LUTs at S4, not at S3)."""
        return ~rounded_step(x, k) if self.sub else round_shift(-x, k, self.mode, draw)

    def _apply_step(self, old, st):
        return sub_rounded(old, ~st) if self.sub else old + st

    def _g_t_split(self, v):
        """``(d_tc, d_tm)`` of a packed ``g_t`` FIFO entry: ``g_t`` and its two masks."""
        qe = self.qe
        gt = v[:qe.width].as_signed()
        return Mux(v[qe.width], gt, 0), Mux(v[qe.width + 1], -gt, 0)

    def _operands(self, code, a, b):
        """The lanes multiply operand ``a`` by operand ``b`` (``_A_*``, ``_B_*``) in phase ``code``."""
        self.operand_sel[code] = (a, b)

    def _logit(self, code, k, readout=False):
        """Phase ``code``'s finished dot product (at S3) is the logit ``s[k]`` (``k``: ``"row"``,
        the issue's row, or a signal that holds over the sample); with ``readout``, the
        prediction is the running ``argmax_k s_k``."""
        self.logit_index[code] = (k, readout)

    def _logit_registers(self, m):
        """``s[k] <- acc`` (and the prediction's running argmax) at S3 once a dot product is
        complete: one case per phase, so that each of these is a single enabled register."""
        s3, acc, last = self.s3, self.acc, self.cn - 1
        # s[k]'s write enable: at S3, from flags that travel with the issue (a phase's last
        # chunk, the row is k) and c == k (registered: c holds over the sample), so that the
        # enable is one LUT of flip-flops, not the compares of the issue's counters
        done = {code: s3.flag(f"lg_last{code}_", lambda s, code=code: s.at(code) & s.col_is(last))
                for code in self.logit_index}
        self.c_is = {}
        for k in range(self.C):
            terms = []
            for code, (kk, _) in self.logit_index.items():
                if isinstance(kk, str):
                    terms.append(done[code] & s3.flag(f"row{k}_", lambda s, k=k: s.row == k))
                else:
                    is_k = Signal(name=f"c_is{k}")
                    m.d.sync += is_k.eq(kk == k)
                    self.c_is[k] = is_k
                    terms.append(done[code] & is_k)
            with m.If(Cat(*terms).any()):
                m.d.sync += self.s[k].eq(acc)
        # the argmaxes compare a copy of the finished sum (acc_cmp, loaded with acc in the
        # readout phases) that drives nothing else: acc itself fans out to every logit
        # register, the softmax and the adder; "row 0" and "row != c" are decided at S1
        readouts = [code for code, (_, readout) in self.logit_index.items() if readout]
        with m.If(Cat(*(self.s2.at(code) for code in readouts)).any() if readouts else 0):
            m.d.sync += self.acc_cmp.eq(self.acc_n)
            if self.acc_cmp_m is not None:      # m's copy, stored complemented (kept apart)
                m.d.sync += self.acc_cmp_m.eq(~self.acc_n)
        for code, (k, readout) in sorted(self.logit_index.items()):
            if readout:
                first = s3.flag("row0_", lambda s: s.row == 0) if isinstance(k, str) else (k == 0)
                k = s3.row if isinstance(k, str) else k
                # the phase's last chunk at S3: one flip-flop beside the compare's carry
                with m.If(done[code] & (first | (self.acc_cmp > self.best_s))):
                    m.d.sync += [self.best_s.eq(self.acc_cmp), self.pred.eq(k)]

    def _fifo_flag(self, m, name, cond, *fifos, push=False):
        """A registered shift (or push) enable of the delta FIFOs ``fifos``, decided a cycle ahead."""
        r = Signal(name=name)
        m.d.sync += r.eq(cond)
        for nm in fifos:
            self.fifo_flags[nm].append(r)
            self.fifo_conds[nm].append(cond)
            if push:
                self.push_flag[nm] = r
        return r

    def _fifo_head_entry(self, m, nm, lane_index, lane_step):
        """Entry ``lane_index`` of FIFO ``nm``'s head chunk. With two chunks or more it is a
        register loaded a cycle ahead from the head the FIFO will have (the next chunk's entry
        when it shifts) at the lane ``lane_index`` will hold, kept one-hot in a register of the
        FIFO's own (``lane_step``: the statements that advance it; the FIFOs' copies differ
        in polarity, so that Yosys keeps them apart): an AND-OR multiplexer from flip-flops,
        each select bit reaching one FIFO's entries. A one-chunk FIFO's head takes its pushes,
        which are not known a cycle ahead: the multiplexer of the head itself. (The next
        chunk's multiplexer beside the head's costs about a LUT4 per lane and bit, 1,600 at 96
        lanes; the head's ``P``-way multiplexer behind ``lane_index`` instead was the fill
        example's worst path, 22 ns estimated at 96 lanes.)"""
        P = self.P
        if self.cn < 2:
            return Array(self.fifo_head[nm])[lane_index]
        now, after = self.fifo_next[nm]
        inv = len(self.head_entry) % 2
        oh_r = Signal(P, name=f"{nm}_lane_oh", init=((1 << P) - 1) ^ 1 if inv else 1)
        oh = ~oh_r if inv else oh_r
        lane_step(lambda v: oh_r.eq(~v if inv else v), oh)
        w = self.fifo_w[nm].width

        def pick(entries):
            terms = [e.as_unsigned() & oh[k].replicate(w) for k, e in enumerate(entries)]
            while len(terms) > 1:       # a balanced OR tree
                terms = [terms[i] | terms[i + 1] if i + 1 < len(terms) else terms[i]
                         for i in range(0, len(terms), 2)]
            return terms[0]
        r = Signal(self.fifo_w[nm], name=f"{nm}_head", reset_less=True)
        m.d.sync += r.eq(Mux(self.fifo_shift[nm], pick(after), pick(now)))
        self.head_entry[nm] = r
        return r

    def _fifo_push(self, m, nm, vals):
        """The entries pushed when ``nm``'s push flag is set (chosen where the flag's phase is)."""
        m.d.comb += [self.fifo_in[nm][pp].eq(vals[pp]) for pp in range(self.P)]

    def _count(self, m, fwd_train):
        """Nested issue counters (outer first: ``sig``, ``row``, ``col``, ``term``) that count
        while ``s0.valid``. Whether each is at its last value is a flag registered with it
        (``lim_last``), beside that flag for 0 (``lim_first``) and its ``limit - 2`` (``lim_pre``,
        the value before the last), so no FSM state decode and no compare sits in front of the
        counters' enables or the FSM's "last issue". UPDATE's bias step (``col == ci``, the last
        ``col``) has one term (``upd_short``).

        The limits of a phase are loaded in every cycle without an issue and with the last
        issue of a phase, from the next issue phase's (``nxt_*``, registered from the one-hot
        state: :meth:`_next_limits`); idle loads FORWARD's, for the sample on offer
        (``fwd_train`` its mode). A phase that goes on to the next without a drain has at
        least two issues (FORWARD at least ``STAGE_LATENCY + 3`` chunks, LOGITS two classes,
        UPDATE a bias step beside a chunk), so ``nxt_*`` is already the next phase's in its
        last issue. "Last issue" itself is a flip-flop (``last_issue``) registered from the
        flags' next values. Returns it."""
        s0 = self.s0
        regs = list(s0.fields()[2:])
        # per counter: at its last value; that flag for 0; limit - 2
        self.lim_last = [Signal(name=f"last_{r.name}") for r in regs]
        self.lim_first = [Signal(name=f"last0_{r.name}") for r in regs]
        self.lim_pre = [Signal.like(r, name=f"pre_{r.name}") for r in regs]
        self.upd_short = Signal(name="upd_short")
        cur = self.lim_last + self.lim_first + self.lim_pre + [self.upd_short]
        self.nxt = [Signal.like(r, name=f"nxt_{r.name}") for r in cur]
        done = Signal(name="last_issue")
        lasts = list(self.lim_last)
        # the term at its last value or UPDATE's bias step, in one flip-flop registered beside
        # the flags it combines (they are registered from their next values in every cycle)
        self.last_term_eff = lasts[3] = Signal(name="last_term_eff")
        self.cnt_lasts = lasts        # the trackers (_track) step with the counters
        with m.If(s0.valid):
            for i in range(3, -1, -1):
                cond = Const(1)
                for c in lasts[i + 1:]:
                    cond = cond & c
                with m.If(cond):
                    with m.If(lasts[i]):
                        m.d.sync += regs[i].eq(0)
                    with m.Else():
                        m.d.sync += regs[i].eq(regs[i] + 1)
        # the flags' next values: FORWARD's when idle, the next phase's with a load, else the
        # count's (a counter that steps: at its last value from 0, or from limit - 2)
        load = self.cnt_load = ~s0.valid | done
        nxt = self.nxt
        fwd = self._limit_values("FORWARD", fwd_train)
        new, counted_all = [], []
        for j, r in enumerate(cur):
            counted = r
            if j < 4:
                step = Const(1)
                for c in lasts[j + 1:]:
                    step = step & c
                counted = Mux(step, Mux(lasts[j], self.lim_first[j], regs[j] == self.lim_pre[j]), r)
            counted_all.append(counted)
            v = Signal.like(r, name=f"{r.name}_next")
            m.d.comb += v.eq(Mux(self.idle, fwd[j], Mux(load, nxt[j], counted)))
            new.append(v)
        m.d.sync += [r.eq(v) for r, v in zip(cur, new)]
        m.d.sync += self.last_term_eff.eq(new[3] | (new[12] & new[2]))
        # last_issue's next value: the choice of new's, made of whole flags (the AND of the
        # counters' choices is the choice of their ANDs: every counter's flag takes the same
        # branch); the next phase's from a register of its own (_next_limits)
        self.nxt_done = Signal(name="nxt_last_issue")
        counted_done = Signal(name="counted_last_issue")
        m.d.comb += counted_done.eq(self._one_issue(counted_all))
        done_next = Mux(self.idle, self._one_issue(fwd), Mux(load, self.nxt_done, counted_done))
        m.d.sync += done.eq(done_next)
        # the trackers' copy (_track), reset-less so that Yosys keeps it apart (it differs from
        # last_issue only in the cycle after a reset, when no issue is at S0 and the trackers
        # load anyway): their loads do not share last_issue's fan-out
        self.last_issue_t = Signal(name="last_issue_t", reset_less=True)
        m.d.sync += self.last_issue_t.eq(done_next)
        self.last_issue = done
        return done

    def _tracker(self, name, width, coeffs, starts):
        """A register that holds ``sum_i coeffs[phase][i] * counter_i`` (mod ``2 ** width``;
        counters ``sig, row, col, term``) of the issue at S0 plus the phase's start value, in
        every cycle with an issue: a read address from a flip-flop, not from a multiplier and an
        adder after the counters. ``coeffs`` and ``starts`` by issue phase name (``starts``: its
        value at the phase's first issue, every counter 0, the same in either mode); the steps
        are made by :meth:`_track`."""
        reg = Signal(width, name=name, reset_less=True)
        self.trackers.append((reg, coeffs, starts))
        return reg

    def _track(self, m):
        """The trackers' values (:meth:`_tracker`), loaded and stepped as :meth:`_count` loads
        and steps the counters' flags. With an issue at S0 the innermost counter not at its last
        value steps, the ones inside it wrap to 0: a tracker adds that move's change of its
        sum, a constant of the phase per moving counter, from registers (``<name>_d<j>``)
        selected by the ``lim_last`` flags. In every cycle without an issue and with a phase's
        last issue it loads the next issue phase's start, and its step registers that phase's
        steps, from registers of the next phase's values (``<name>_nx``, from the one-hot state
        as ``nxt_*``; IDLE and FIN: FORWARD's): no FSM decision sits in front of a tracker."""
        lasts, load = self.cnt_lasts, ~self.s0.valid | self.last_issue_t
        for f in self.after_count:
            f()
        lims = {name: [[int(v) for v in limits(tr)] for tr in (0, 1)]
                for name, (_, limits) in self.issue_of.items()}

        def next_reg(name, w, per_phase):
            """A register of ``per_phase[the issue phase after the current state]``."""
            fwd = per_phase["FORWARD"]
            init = fwd if isinstance(fwd, int) else fwd.value if isinstance(fwd, Const) else 0
            r = Signal(w, name=f"{name}_nx", init=init % (1 << w), reset_less=False)
            acc = Const(0, w)
            for state, flag in self._states.items():
                nx = ["FORWARD" if state in ("IDLE", "FIN") else self._next_issue(state, tr) for tr in (0, 1)]
                if nx[0] is None and nx[1] is None:
                    continue
                nx = [v if v is not None else nx[1 - k] for k, v in enumerate(nx)]
                x = per_phase[nx[0]] if nx[0] == nx[1] else Mux(self.train, per_phase[nx[1]], per_phase[nx[0]])
                acc = acc | Mux(flag, x, 0)
            m.d.sync += r.eq(acc)
            return r

        for reg, coeffs, starts in self.trackers:
            w = len(reg)
            steps = {}         # name -> [change when counter j moves (inner ones wrap)]
            for name, per_tr in lims.items():
                cf = coeffs.get(name, (0, 0, 0, 0))
                if cf[3] != 0:
                    raise ValueError("A tracker's term coefficient must be 0 (UPDATE's bias step "
                                     "ends the term early)")
                if any(cf[i] and per_tr[0][i] != per_tr[1][i] for i in range(1, 4)):
                    raise ValueError(f"{name}: a tracked counter's limit depends on the mode")
                lim = per_tr[1]
                steps[name] = [(cf[j] - sum(cf[i] * (lim[i] - 1) for i in range(j + 1, 4))) % (1 << w)
                               for j in range(4)]
            dvals = []
            for j in range(4):
                vals = {v[j] for v in steps.values()}
                if len(vals) == 1:
                    dvals.append(Const(vals.pop(), w))
                    continue
                d = Signal(w, name=f"{reg.name}_d{j}", reset_less=True)
                d_nx = next_reg(d.name, w, {name: v[j] for name, v in steps.items()})
                with m.If(load):
                    m.d.sync += d.eq(d_nx)
                dvals.append(d)
            delta = dvals[0]
            for j in range(1, 4):
                delta = Mux(lasts[j], delta, dvals[j])
            start = next_reg(reg.name, w, {name: starts[name] for name in lims})
            m.d.sync += reg.eq(Mux(load, start, reg + delta))

    def _next_limits(self, m, fwd_train):
        """``nxt_*``: the limits of the issue phase after the current state, registered from the
        one-hot state flags and the sample's mode (``fwd_train``, the sample on offer, for IDLE:
        FORWARD's next)."""
        vals = []
        for name, flag in self._states.items():
            tr_sig = fwd_train if name == "IDLE" else self.train
            per_tr = [self._next_issue("FORWARD" if name == "IDLE" else name, tr) for tr in (0, 1)]
            per_tr = [None if y is None else self._limit_values(y, tr) for tr, y in enumerate(per_tr)]
            if per_tr[0] is None and per_tr[1] is None:
                continue
            per_tr = [v if v is not None else per_tr[1 - k] for k, v in enumerate(per_tr)]
            vals.append((flag, tr_sig, per_tr))
        for j, r in enumerate(self.nxt):
            acc = Const(0, len(r))
            for flag, tr_sig, (v0, v1) in vals:
                x = v0[j] if v0[j] == v1[j] else Mux(tr_sig, v1[j], v0[j])
                acc = acc | Mux(flag, x, 0)
            m.d.sync += r.eq(acc)
        # "the next phase has one issue" (last_issue of its flags), per state a constant
        acc = Const(0, 1)
        for flag, tr_sig, (v0, v1) in vals:
            d0, d1 = (self._one_issue(v) for v in (v0, v1))
            acc = acc | (flag & (d0 if d0 == d1 else Mux(tr_sig, d1, d0)))
        m.d.sync += self.nxt_done.eq(acc)

    @staticmethod
    def _one_issue(v):
        """``last_issue`` of the counters' flags ``v`` (the order of ``nxt_*``)."""
        return v[0] & v[1] & v[2] & (v[3] | (v[12] & v[2]))

    def _goto(self, m, name):
        """Go to state ``name`` (its one-hot flag set, the current state's cleared); the issue
        slot's phase and valid bit follow in :meth:`_issue_slot`. Every counter is 0 here."""
        cur = self._cur
        if name != cur:
            m.d.sync += [self._state(cur).eq(0), self._state(name).eq(1)]
            if "IDLE" in (cur, name):
                m.d.sync += [self.idle_rb.eq(int(name == "IDLE")), self.idle_rb_n.eq(int(name != "IDLE"))]

    def _issue_slot(self, m, enter, last_issue):
        """S0's valid bit, phase and phase flags, registered from the FSM's transitions into the
        issue phases (``enter``: phase name -> conditions, each a state flag and its decision:
        a sum of products, not the FSM's chain of state blocks) and from ``last_issue`` (an
        issue phase ends with its last issue): the same values, cycle for cycle, as decoding the
        state (S0 is decoded from flip-flops, not from the FSM state)."""
        s0 = self.s0
        into = {name: Cat(*conds).any() for name, conds in enter.items() if conds}
        stay = ~last_issue
        m.d.sync += s0.valid.eq(Cat(*into.values()).any() | (s0.valid & stay))
        bits = []
        for b in range(len(s0.phase)):
            terms = [cond for name, cond in into.items() if (self.issue_of[name][0] >> b) & 1]
            bits.append(Cat(*terms).any() | (s0.phase[b] & stay) if terms else s0.phase[b] & stay)
        m.d.sync += s0.phase.eq(Cat(*bits))
        for name, (code, _) in self.issue_of.items():
            flag = s0.phase_flags[code]
            m.d.sync += flag.eq(into.get(name, Const(0)) | (flag & stay))

    def _state(self, name):
        """The one-hot flag of FSM state ``name`` (``idle`` for IDLE)."""
        if name not in self._states:
            self._states[name] = Signal(name=f"st_{name}")
        return self._states[name]

    def _next_issue(self, name, tr):
        """The issue phase that follows state ``name`` when the sample's mode is ``tr`` (``None``:
        FIN or IDLE come first, and IDLE loads FORWARD's limits itself)."""
        first = True
        while first or name not in self.issue_of:
            first = False
            if name in ("IDLE", "FIN"):
                return None
            if name in ("SOFTMAX", "W_SOFTMAX"):
                return "GRADIENT"
            if name in ("HEAD_SOFTMAX", "W_HEAD_SOFTMAX"):
                return "HEAD_UPDATE"
            name = self._after_name(name[2:] if name.startswith("W_") else name, tr)
        return name

    def _limit_values(self, name, tr):
        """The counters' flags for issue phase ``name``: at the last value, that flag for 0,
        ``limit - 2``, UPDATE's short bias step (the order of ``nxt_*``)."""
        lims = self.issue_of[name][1](tr)
        if isinstance(tr, int):
            lims = [int(v) for v in lims]
            return [int(v == 1) for v in lims] + [int(v == 1) for v in lims] + [v - 2 for v in lims] + \
                [int(name == "UPDATE")]
        lims = [Value.cast(v) for v in lims]
        return [v == 1 for v in lims] + [v == 1 for v in lims] + [v - 2 for v in lims] + [int(name == "UPDATE")]

    # ---- memories ----
    def _memories(self, m):
        """W, R and the head's are banked (one memory per lane). The caches T (and Tin) and the
        bias b are never read in the same cycle, so they share one memory of P-lane words (one
        block RAM instead of one per bank and per memory): "virtual" ports stand for the logical
        banks and the glue after the address logic multiplexes them.

        Every write reaches its block RAM a cycle after the logic that makes it (registered
        address, data and enable: the saturating adders and the checkpoint multiplexer do not
        share a cycle with the route to the memory). Nothing reads a word in the cycle after its
        write: see hdl.relax_read_collisions."""
        st, P = self.st, self.P
        rd, wr, mem_w = {}, {}, {}
        self.write_ports = []
        packed = [nm for nm in ("T", "Tin", "b") if nm in st.mems]
        for name, (banks, depth, q, _, _) in st.mems.items():
            rd[name], wr[name] = [], []
            mem_w[name] = q.width
            if name in packed:
                for bk in range(banks):
                    rd[name].append(_VPort(q.width, f"{name}{bk}_r"))
                    wr[name].append(_VPort(q.width, f"{name}{bk}_w"))
                continue
            img = st.initial_image(name)
            for bk in range(banks):
                mem = Memory(shape=signed(q.width), depth=pow2_depth(depth), init=img[bk], attrs=BLOCK_RAM)
                m.submodules[f"{name}_{bk}"] = mem
                rd[name].append(mem.read_port())
                if name == "R" and self.cn < 2:
                    # a one-chunk table row is read by the next sample's first FORWARD issue in
                    # the cycle a registered write of the previous TABLE would land: written directly
                    wr[name].append(mem.write_port())
                    continue
                wr[name].append(_VPort(q.width, f"{name}{bk}_w"))
                self.write_ports.append((wr[name][-1], mem.write_port()))
        wl = max(st.mems[nm][2].width for nm in packed if nm != "b")
        nl = max(P, -(-st.mems["b"][2].width // wl),
                 -(-(P_FRAC + 1) // wl) if self.need_sm else 1)   # b, exp table words
        pbase, off = {}, 0
        for nm in packed:
            pbase[nm] = off
            off += st.mems[nm][1]
        if self.need_sm:     # the softmax's exp table, read while the caches idle
            pbase["tab"] = off
            off += len(EXP2_TABLE)
        pimg = [0] * off
        if "tab" in pbase:
            for k, v in enumerate(EXP2_TABLE):
                pimg[pbase["tab"] + k] = int(v)
        for nm in packed:
            img = st.initial_image(nm)
            banks, depth, q = st.mems[nm][:3]
            for bk in range(banks):
                for wd in range(depth):
                    v = img[bk][wd] & ((1 << q.width) - 1)
                    pimg[pbase[nm] + wd] |= v << (bk * wl)
        cmem = m.submodules.cache = Memory(shape=unsigned(nl * wl), depth=pow2_depth(off), init=pimg, attrs=BLOCK_RAM)
        self.crd, self.cwr = cmem.read_port(), cmem.write_port(granularity=wl)
        for nm in packed:
            for bk, vp in enumerate(rd[nm]):
                m.d.comb += vp.data.eq(self.crd.data[bk * wl:bk * wl + mem_w[nm]])
        self.rd, self.wr, self.pbase, self.wl, self.nl = rd, wr, pbase, wl, nl

    # ---- vectors ----
    def _vectors(self, m):
        """The input memory, ``h`` and ``t``, and the deltas (FIFOs of chunks with class_ce)."""
        st, P, l, cn, ci, qa, qe = self.st, self.P, self.l, self.cn, self.ci, self.qa, self.qe

        def vec(name, count, width):
            return [Signal(signed(width), name=f"{name}{k}", reset_less=True) for k in range(count)]

        # the input memory: [half][x | t_in][chunk] words of P lanes, double buffered
        self.Sx = Sx = 2 if l > 0 else 1
        wi = self.qin.width
        imem = m.submodules.inmem = Memory(shape=unsigned(P * wi), depth=pow2_depth(2 * Sx * ci), init=[], attrs=BLOCK_RAM)
        self.ird, iwr = imem.read_port(), imem.write_port(granularity=wi)
        self.write_half = Signal(name="write_half")
        iq, ir = _divmod_const(st.i.idx, P, self.n_in)
        m.d.comb += iwr.addr.eq(Mux(self.write_half, Sx * ci, 0) + (Mux(st.i.sig, ci, 0) if l > 0 else 0) + iq)
        for k in range(P):
            m.d.comb += [iwr.data[k * wi:(k + 1) * wi].eq(st.i.data), iwr.en[k].eq(st.i.we & (ir == k))]
        self.x_lane = [Signal(signed(wi), name=f"in{k}") for k in range(P)]
        m.d.comb += [self.x_lane[k].eq(self.ird.data[k * wi:(k + 1) * wi]) for k in range(P)]
        self.h = h = vec("h", cn * P, qa.width)
        self.t = t = vec("t", cn * P, qa.width)
        # h in a distributed memory of P-entry chunks (read a chunk a cycle, written an entry at a
        # time) instead of flip-flops and a cn-way multiplexer per lane, where the chunks are
        # many; the memory's read is synchronous (the address at S0), so a read must come a cycle
        # after the write it needs, not in the cycle after it as from flip-flops: FORWARD's last
        # h writes meet LOGITS' reads of the last chunk without a drain only when cn reaches
        # self.lat + 3 (_fsm's no_drain), one cycle short there; class_ce only (the l2
        # deltas read every entry of h at once)
        # (the ECP5's LUT RAM; elsewhere flip-flops, "logic": the iCE40 has no distributed RAM,
        # and a generic or simulated design names no family)
        small = {"ram_style": "distributed" if getattr(st, "family", None) == "ecp5" else "logic"}
        self.h_mem = None
        if self.class_ce and cn >= 4 and cn != self.lat + 3:
            hm = m.submodules.hmem = Memory(shape=unsigned(P * qa.width), depth=pow2_depth(cn), init=[], attrs=small)
            self.h_mem = (hm.read_port(), hm.write_port(granularity=qa.width))
        # layer 0's t likewise (written a chunk at a time from R[c] early in FORWARD, read long
        # after): a synchronous port for the chunks, an asynchronous one for the entries handed
        # over one at a time (t_a[idx]: the word's lane, a P-way multiplexer, not a cn P-way one)
        self.t_mem = None
        if l == 0 and self.class_ce and cn >= 4:
            tm = m.submodules.tmem = Memory(shape=unsigned(P * qa.width), depth=pow2_depth(cn), init=[], attrs=small)
            self.t_mem = (tm.read_port(), tm.write_port(), tm.read_port(domain="comb"))
        ew = qe.width + 1
        self.delta_fifo = None
        if self.class_ce:
            # the deltas are produced a chunk at a time (GRADIENT) and consumed in order (UPDATE
            # rows, TABLE chunks), so they live in chunk FIFOs: push at the tail, read and rotate
            # at the head; no index muxes. delta_fifo[name][q][pp] is entry (q-th chunk from the
            # head, lane pp). "d_h": d_h (the error format); "g_t": g_t with its two masks,
            # d_tc = mask_t ? g_t : 0 and d_tm = mask_m ? -g_t : 0 (one stored g_t for two deltas)
            self.fifo_w = {"d_h": signed(qe.width), "g_t": unsigned(qe.width + 2)}
            # a ring in a memory where the chunks are many (not on the iCE40: no LUT RAM there)
            self.fifo_ring = cn >= FIFO_RING_CHUNKS and getattr(st, "family", None) != "ice40"
            self.delta_fifo = {nm: [[Signal(w, name=f"{nm}{q}_{pp}", reset_less=True) for pp in range(P)]
                                    for q in range(cn)] for nm, w in self.fifo_w.items()} if not self.fifo_ring else {}
            self.fifo_head, self.fifo_next = {}, {}
        else:          # l2: d_h = (h - t) << (fe - fa), masked
            fe, fa = self.fe, self.fa
            d_h = []
            for j in range(cn * P):
                diff = h[j] - t[j]
                v = diff << (fe - fa) if fe >= fa else round_shift(diff, fa - fe)
                ew = max(ew, len(v) + 1)
            for j in range(cn * P):
                diff = h[j] - t[j]
                v = diff << (fe - fa) if fe >= fa else round_shift(diff, fa - fe)
                dj = Signal(signed(ew), name=f"dh{j}")
                m.d.comb += dj.eq(Mux(self._inside(h[j]), v, 0))
                d_h.append(dj)
            d_tc = d_tm = [Const(0, signed(ew))] * (cn * P)
            self.d_h_a, self.d_tc_a, self.d_tm_a = Array(d_h), Array(d_tc), Array(d_tm)
        self.ew = ew

        def lanes_of(v, count):
            return [Array(v[q * P + pp] for q in range(count)) for pp in range(P)]

        self.h_l, self.t_l = lanes_of(h, cn), lanes_of(t, cn)
        self.h_a, self.t_a = Array(h), Array(t)
        if self.t_mem is not None:
            self.t_a = _EntryReader(m, self.t_mem[2], P, self.n, qa.width)
        # the FIFOs' shift and push enables are registered flags, decided a cycle ahead
        # (GRADIENT's pushes and TABLE's rotations at S3 from S2, UPDATE's rotations at S1 from
        # S0): no decoding may sit in front of them
        self.fifo_shift, self.fifo_push, self.fifo_in = {}, {}, {}
        self.fifo_flags = {nm: [] for nm in self.fifo_w} if self.class_ce else {}
        self.fifo_conds = {nm: [] for nm in self.fifo_flags}     # the flags' conditions, a cycle ahead
        self.ring_addr, self.push_flag = {}, {}
        if self.class_ce:
            for nm in self.fifo_w:
                self.fifo_shift[nm], self.fifo_push[nm] = Signal(name=f"{nm}_shift"), Signal(name=f"{nm}_push")
                self.fifo_in[nm] = [Signal(self.fifo_w[nm], name=f"{nm}_in{pp}") for pp in range(P)]
                if self.fifo_ring:
                    self._delta_ring(m, nm, small)
                else:
                    self._delta_shift_register(m, nm)

    def _delta_shift_register(self, m, nm):
        """Delta FIFO ``nm`` as ``cn`` chunks of flip-flops that shift towards the head (one
        shift enable and one tail multiplexer: every register a plain enabled flip-flop).
        The head comes back to the tail only where it is read again after UPDATE (``g_t`` by
        TABLE): elsewhere the tail takes the push value, rotating or not (the next sample's
        GRADIENT pushes every chunk anew), and no multiplexer."""
        P, cn, dq = self.P, self.cn, self.delta_fifo[nm]
        with m.If(self.fifo_shift[nm]):
            for q in range(cn - 1):
                m.d.sync += [dq[q][pp].eq(dq[q + 1][pp]) for pp in range(P)]
            if nm == "g_t" and self.table:
                m.d.sync += [dq[cn - 1][pp].eq(Mux(self.fifo_push[nm], self.fifo_in[nm][pp], dq[0][pp]))
                             for pp in range(P)]
            else:
                m.d.sync += [dq[cn - 1][pp].eq(self.fifo_in[nm][pp]) for pp in range(P)]
        self.fifo_head[nm] = dq[0]
        self.fifo_next[nm] = (dq[0], dq[1]) if cn > 1 else None

    def _delta_ring(self, m, nm, attrs):
        """Delta FIFO ``nm`` as a ring of ``cn`` chunks in a memory (the ECP5's LUT RAM: one
        chunk of flip-flops, the head, instead of ``cn``; two with the chunk after it, which
        the preloaded head lanes read). ``ptr`` is the head's slot: a shift advances it (the old head's slot
        becomes the tail's: a rotation needs no write), a push writes its chunk there as it
        advances. Unlike the shift register, a rotation without a push keeps the old head as
        the tail for every FIFO, which is the same wherever the tail is read (``g_t`` by
        TABLE) and unread elsewhere (GRADIENT pushes every chunk anew before UPDATE reads it).

        The head (and the chunk after it) are read synchronously into flip-flops at
        registered addresses: ``ring_addr`` is ``ptr`` one cycle on, counted from the shift
        flags' conditions a cycle before the flags (:meth:`_ring_addresses`), so the address
        pins see a route from a flip-flop and no decision. With ``cn`` at least 3 neither read
        is of the slot written in its cycle (that is ``ptr``; the reads are of ``ptr`` and
        ``ptr + 1`` one cycle on, and ``ptr`` moves on whenever a chunk is written)."""
        P, cn, w = self.P, self.cn, self.fifo_w[nm].width
        assert cn >= 3
        mem = Memory(shape=unsigned(P * w), depth=pow2_depth(cn), init=[], attrs=attrs)
        m.submodules[f"{nm}_ring"] = mem
        # ptr, and the read addresses: ptr (and ptr + 1) of the next cycle, registered
        ptr = Signal(range(cn), name=f"{nm}_ptr")
        addr = [Signal(range(cn), name=f"{nm}_ring_addr{k}", init=k) for k in range(2)]
        wr = mem.write_port()
        m.d.comb += [wr.addr.eq(ptr), wr.data.eq(Cat(*self.fifo_in[nm])), wr.en.eq(self.fifo_push[nm])]
        m.d.sync += ptr.eq(addr[0])
        chunks = []
        for k in range(2):              # the head, and the next chunk for the preloaded head lanes
            port = mem.read_port(transparent_for=())
            m.d.comb += port.addr.eq(addr[k])
            chunks.append([port.data[pp * w:(pp + 1) * w].as_signed() if self.fifo_w[nm].signed
                           else port.data[pp * w:(pp + 1) * w] for pp in range(P)])
        self.ring_addr[nm] = addr
        self.fifo_head[nm] = chunks[0]
        self.fifo_next[nm] = tuple(chunks)

    def _ring_addresses(self, m):
        """Each ring's read addresses advance (mod ``cn``) in the cycle its shift flag is set
        from its condition: they lead ``ptr`` by a cycle."""
        cn = self.cn
        for nm, addr in self.ring_addr.items():
            step = Cat(*self.fifo_conds[nm]).any()
            for a in addr:
                m.d.sync += a.eq(Mux(step, Mux(a == cn - 1, 0, a + 1), a))

    def _widths(self):
        """Accumulators wide enough that no dot product overflows; the lanes' operand widths."""
        P, C, n, n_in = self.P, self.C, self.n, self.n_in
        qw, qa, qb, qin = self.qw, self.qa, self.qb, self.qin
        self.bsh = self.fw + self.fin - self.fb
        acc_w = max(qw.width + qin.width, qb.width + self.bsh) + _bits(n_in + 1) + 1
        logit_w = 2 * qa.width + _bits(n) + 1
        self.hbsh = self.fw + self.fa - self.fb
        hlog_w = max(qw.width + qa.width, qb.width + self.hbsh) + _bits(n + 1) + 1
        self.s_w = max(logit_w, hlog_w if self.head else 0)
        self.acc_w = max(acc_w, self.s_w) + 1
        self.err_w = P_FRAC + 2
        self.A = max(qw.width, qa.width, self.err_w, self.ew)
        self.B = max(qin.width, qa.width)
        # the lane accumulators hold GRADIENT's sums over the classes (err_k T[k][j], then
        # err_c h[j]), UPDATE's over its terms (d x) and HEAD_UPDATE's single products (d_k h[j]):
        # each as wide as its bound from the operands' widths (a signed value of magnitude at
        # most M takes M.bit_length() + 1 bits), not as the widest product of any phase
        def sbits(bound):
            return bound.bit_length() + 1

        self.upd_w = sbits(self.terms << (self.ew - 1 + qin.width - 1))
        self.head_w = sbits(1 << (self.qe.width - 1 + qa.width - 1))
        # GRADIENT's sums start from the rounding half of their narrowing (round_shift_halved:
        # no incrementer after the lane accumulator)
        self.g_shift = P_FRAC + self.fa - self.qe.frac_bits
        self.g_half = 1 << (self.g_shift - 1) if self.g_shift > 0 else 0
        grad_w = sbits((C << (self.err_w - 1 + qa.width - 1)) + self.g_half) if self.class_ce else 1
        self.lane_acc_w = max(grad_w, self.upd_w, self.head_w if self.head else 1)

    # ---- the softmax, the rounding draws, the sample's registers ----
    def _softmax_unit(self, m):
        """The class logits ``s``, and ``prob = softmax(s)`` (class_ce, or the head's)."""
        C, s_w = self.C, self.s_w
        self.s = [Signal(signed(s_w), name=f"s{k}", reset_less=True) for k in range(C)]
        self.s_a = Array(self.s)
        if self.need_sm:
            self.G_sm, self.pb = softmax_groups(self.net, self.l, self.P), self.B - 1
            sm = self.sm = m.submodules.softmax = Softmax(C, s_w, fracs=softmax_fracs(self.net, self.l),
                                                          groups=self.G_sm, group_shift=self.P * self.pb,
                                                          ext_table=True, mul_latency=self.lat)
            m.d.comb += sm.tab_data.eq(self.crd.data[:len(sm.tab_data)])
            for k in range(C):
                m.d.comb += sm.s[k].eq(self.s[k])
            self.prob = [sm.p[k] for k in range(C)]
        else:
            self.prob = [Const(0, 17)] * C

    def _rounding(self, m):
        """The stage's LFSR (and the head's): lane ``p`` takes the ``p``-th next draw."""
        spec, P = self.net.spec.precision, self.P
        self.draws = self.head_draws = [Const(0, 32)] * P
        # params["lfsr"] (a checkpoint's LFSR positions, one per unit) replaces the seeds
        start = self.st.params.get("lfsr") or [lfsr_seed(spec.lfsr_seed, u) for u in range(self.net.depth + 1)]
        if self.stoch:
            self.lfsr = m.submodules.lfsr = Lfsr(int(start[self.l]), P)
            self.draws = [self.lfsr.draws[pp] for pp in range(P)]
            if self.head:
                self.lfsr_head = m.submodules.lfsr_head = Lfsr(int(start[self.net.depth]), P)
                self.head_draws = [self.lfsr_head.draws[pp] for pp in range(P)]

    def _registers(self):
        """The sample's label and mode, and what the logits decide: the prediction and ``m``."""
        C, s_w = self.C, self.s_w
        self.c = Signal(range(C), name="c")                  # the label
        self.train = Signal(name="train")
        self.m_class = Signal(range(C), name="m_class")      # m = argmax_{k != c} s_k
        self.pred = Signal(range(C), name="pred")
        self.best_s = Signal(signed(s_w), name="best_s")
        # the best wrong class's logit, stored complemented like m's copy of the sum (below)
        self.best_wrong_n = Signal(signed(s_w), name="best_wrong_n", init=-1)
        self.have_m = Signal(name="have_m")
        self.acc_cmp_m = None
        # err_k = prob_k - y_k for one class a cycle: k = col1 in GRADIENT (c at its last step),
        # row1 in HEAD_UPDATE
        self.err = Signal(signed(self.err_w), name="err")

    # ---- pipeline control ----
    def _pipeline(self, m):
        """The issue counters (S0) and their copies down the pipeline (S1, S2, S3)."""
        n, C, ci, cn, terms = self.n, self.C, self.ci, self.cn, self.terms
        cmax = max(n, C + 1, ci + 1, cn + 1, 3, terms + 1)
        s0 = self.s0 = _Slot(0, range(cmax + 1))
        # valid & (phase == code) at S0, one flip-flop per phase code registered with phase
        # (_goto): the address and index multiplexers start from it, not from a compare
        s0.phase_flags = {code: Signal(name=f"s0_at{code}") for code in
                          (_FORWARD, _LOGITS, _CACHE, _GRADIENT, _UPDATE, _TABLE, _HEAD_LOGITS, _HEAD_UPDATE)}
        s1 = self.s1 = _Slot(1, range(cmax + 1))
        s2 = self.s2 = _Slot(2, range(cmax + 1))
        m.d.sync += [x1.eq(x0) for x1, x0 in zip(s1.fields(), s0.fields())]
        for x2, x1 in zip(s2.fields(), s1.fields()):
            self._late(m, x2, x1)
        # an issue is in flight until its products reach S2
        v_inflight, vd = s1.valid, s1.valid
        for k in range(self.lat - 1):
            nxt_v = Signal(name=f"valid1_d{k}")
            m.d.sync += nxt_v.eq(vd)
            # GRADIENT -> UPDATE: the next issue may start while the last one is a cycle short
            # of S2. UPDATE's first issue reads only the d_h FIFO's head (pushed at the S3 of the
            # second to last GRADIENT issue), its second the g_t FIFO's (pushed at the last
            # one's S3): both land before the S1 that reads them.
            self.v_early = v_inflight
            vd, v_inflight = nxt_v, v_inflight | nxt_v
        self.v_inflight = v_inflight
        s3 = self.s3 = _Slot(3, range(cmax + 1))
        m.d.sync += [x3.eq(x2) for x3, x2 in zip(s3.fields(), s2.fields())]
        # the slots' flags are made where they are first asked for, often inside an m.If: their
        # registers go to a module of their own, so that they update every cycle
        flags = m.submodules.slot_flags = Module()
        s2.follow(flags, s1, self.lat)
        s3.follow(flags, s2, 1)
        st = self.st
        self.rb_active = Signal(name="rb_active")
        # the FSM's state decodes that fan out (:meth:`_goto`): idle (st.busy, the host's port,
        # the sample handshake)
        self.idle = Signal(init=1, name="idle")
        # a copy of idle for the host's port (its address multiplexers in front of the block
        # RAMs): idle itself fans out to busy, the cycle counter and the sample handshake
        self.idle_rb = Signal(init=1, name="idle_rb")
        # its complement, a second copy Yosys keeps apart: the banked memories' address
        # multiplexers take idle_rb's, the packed cache's and R's this one's (rb_active_n)
        self.idle_rb_n = Signal(init=0, name="idle_rb_n")
        self.rb_active_n = Signal(name="rb_active_n")
        self.ck_go = Signal(name="ck_go")
        self.trackers, self.after_count = [], []
        self.ck_addr, self.ck_data = Signal.like(st.state.addr), Signal.like(st.state.w_data)

    # ---- S0: addresses ----
    def _addresses(self, m):
        """The read address of every memory, by phase, and the packed cache's port glue."""
        st, l, ci, cn, s0 = self.st, self.l, self.ci, self.cn, self.s0
        rd, wr, crd, cwr, pbase, wl = self.rd, self.wr, self.crd, self.cwr, self.pbase, self.wl
        ph0, row, col, term = s0.phase, s0.row, s0.col, s0.term
        # every memory is a power of two deep (pow2_depth): every address is inside it
        # TABLE updates R[c] (row 0), then R[m]
        # layer 0 reads its target row R[c] during FORWARD, one chunk per cycle (target_chunk),
        # into t at S1
        self.target_chunk = [Signal(range(cn + 1), name=f"target_chunk{k}") for k in range(3)]
        self.target_valid = [Signal(name=f"target_valid{k}") for k in range(3)]
        tq, tv = self.target_chunk, self.target_valid
        m.d.sync += [tq[1].eq(tq[0]), tv[1].eq(tv[0]), tq[2].eq(tq[1]), tv[2].eq(tv[1])]
        # the target row's address c * cn + tq0 in a register of its own, loaded with c and
        # stepped with tq0 (:meth:`_fsm`): R's read address from a flip-flop in FORWARD. TABLE
        # reads R late (below), from a copy of c * cn or m * cn (registered: c and m hold long
        # before TABLE) plus col
        self.raddr_f = Signal(range(self.C * cn + 1), name="raddr_f")
        base_c, base_m = (Signal(range(self.C * cn + 1), name=nm) for nm in ("raddr_base_c", "raddr_base_m"))
        m.d.sync += [base_c.eq(_mulk(self.c, cn)), base_m.eq(_mulk(self.m_class, cn))]
        self.raddr_t = Signal(range(self.C * cn + 1), name="raddr_t")
        m.d.comb += self.raddr_t.eq(Mux(row == 1, base_m, base_c) + col)
        # late reads: a read-modify-write phase that multiplies nothing from W (UPDATE), R
        # (TABLE) or the head's W (HEAD_UPDATE) reads the old words at S2 - 1 from a delayed copy
        # of the S0 address (one register of the read data per lane then holds them for S3,
        # instead of a delay line of self.lat + 1 words per lane); nothing else reads those
        # memories until the phase drained (no FORWARD or HEAD_LOGITS issue overlaps it)
        late_code = {"W": _UPDATE, "R": _TABLE, "head_W": _HEAD_UPDATE}
        self.late_read = {}
        for name in rd:
            if name in late_code:
                a0 = self.raddr_t if name == "R" else _mulk(row, ci) + col if name == "W" else _mulk(row, cn) + col
                a1, f1 = Signal(len(Value.cast(a0)), name=f"{name}_late1"), Signal(name=f"{name}_late_f1")
                aL, fL = Signal.like(a1, name=f"{name}_late"), Signal(name=f"{name}_late_f")
                m.d.sync += [a1.eq(a0), f1.eq(s0.at(late_code[name]))]
                self._late(m, aL, a1, self.lat - 1)
                self._late(m, fL, f1, self.lat - 1)
                self.late_read[name] = (aL, fL)
        a_issue = {}     # a memory's address for the issue (the host's port aside), bank 0
        for name in rd:
            for bk, port in enumerate(rd[name]):
                if name == "W":
                    a = _mulk(row, ci) + col
                elif name == "b":
                    a = row
                elif name == "T":          # GRADIENT reads T[k] across j, the others along j
                    a = Mux(s0.at(_GRADIENT), _mulk(col, cn) + row, _mulk(row, cn) + col)
                elif name == "Tin":        # UPDATE's third term: Tin[m]
                    a = _mulk(self.m_class, ci) + col
                elif name == "R":
                    a = self.raddr_f
                elif name == "head_W":
                    a = _mulk(row, cn) + col
                else:
                    a = row
                if name in self.late_read:
                    a = Mux(self.late_read[name][1], self.late_read[name][0], a)
                if bk == 0:
                    a_issue[name] = a
                a = Mux(self.rb_active if name == "W" else self.rb_active_n, st.state.addr, a)
                # the packed cache's logical ports (_VPort) carry only the address
                m.d.comb += read_whole(port, a) if isinstance(port, ReadPort) else port.addr.eq(a)
        # the packed cache memory: which logical memory its read port serves this cycle. The
        # region offsets are added to the issue's and to the host's address apart, before the
        # choice between them (the adders start from registers, beside the selects)
        # the issue's address in the packed cache from two trackers (_tracker), one flip-flop
        # each per bit: b's (its offset + row: FORWARD, UPDATE's bias step) and the caches'
        # (T along j or, GRADIENT, across the classes; UPDATE: Tin[m]). Which one: a LUT of the
        # phase flags and "col == ci" (lim_last, UPDATE's bias step)
        aw = len(crd.addr)
        names = _ISSUE_PHASES
        cf_tt = {nm: (0, 1, cn, 0) if nm == "GRADIENT" else (0, 0, 1, 0) if nm == "UPDATE" and l > 0
                 else (0, cn, 1, 0) for nm in names}
        st_tt = {nm: Const(0, aw) for nm in names}
        if l > 0:
            st_tt["UPDATE"] = (pbase["Tin"] + _mulk(self.m_class, ci))[:aw]
        self.c_trk_tt = self._tracker("c_trk_tt", aw, cf_tt, st_tt)
        self.c_trk_b = self._tracker("c_trk_b", aw, {nm: (0, 1, 0, 0) for nm in names},
                                     {nm: Const(pbase["b"] % (1 << aw), aw) for nm in names})
        self.c_sel_b = Signal(name="c_sel_b")

        def sel_b():         # after _count: lim_last
            m.d.comb += self.c_sel_b.eq(s0.at(_FORWARD) | (s0.at(_UPDATE) & self.lim_last[2]))
        self.after_count.append(sel_b)
        self.c_issue = Signal(aw, name="c_issue")
        m.d.comb += self.c_issue.eq(Mux(self.c_sel_b, self.c_trk_b, self.c_trk_tt))
        rb_b, rb_tin = st.state.mem == MEM_IDS["b"], st.state.mem == MEM_IDS["Tin"] if l > 0 else Const(0)

        def packed(a_b, a_tin, a_t, s_b, s_tin):
            a_b, a_tin, a_t = (Value.cast(v)[:16] for v in (a_b, a_tin, a_t))
            return Mux(s_b, pbase["b"] + a_b, Mux(s_tin, pbase.get("Tin", 0) + a_tin if l > 0 else 0, a_t))
        caddr = Signal.like(crd.addr, name="caddr")
        m.d.comb += read_whole(crd, Mux(self.sm.tab_en, pbase["tab"] + self.sm.tab_addr, caddr) if self.need_sm
                               else caddr)
        m.d.comb += caddr.eq(Mux(self.rb_active_n,
                                 packed(st.state.addr, st.state.addr, st.state.addr, rb_b, rb_tin),
                                 self.c_issue))
        wen_b = wr["b"][0].en
        wen_t = Cat(*(vp.en for vp in wr["T"])).any()     # any lane (a checkpoint writes one)
        m.d.sync += cwr.addr.eq(Mux(wen_b, pbase["b"] + wr["b"][0].addr,
                                    Mux(wen_t, wr["T"][0].addr,
                                        pbase.get("Tin", 0) + wr["Tin"][0].addr if l > 0 else 0)))
        for k in range(self.nl):
            if k < self.P:
                alt = Mux(wen_t, wr["T"][k].data, wr["Tin"][k].data) if l > 0 else wr["T"][k].data
                m.d.sync += cwr.data[k * wl:(k + 1) * wl].eq(alt)
            en = wen_b | (wr["T"][k].en if k < self.P else 0) | (wr["Tin"][k].en if (l > 0 and k < self.P) else 0)
            m.d.sync += cwr.en[k].eq(en)
        with m.If(wen_b):
            m.d.sync += cwr.data.eq(wr["b"][0].data)
        raddr1, self.raddr2 = Signal(range(self.C * cn + 1), name="raddr1"), Signal(range(self.C * cn + 1), name="raddr2")
        m.d.sync += raddr1.eq(self.raddr_t)        # TABLE's write address (S4)
        self._late(m, self.raddr2, raddr1)
        # input memory reads: the x / t_in chunk of FORWARD (signal sig) and of UPDATE (term)
        region = Mux(s0.at(_UPDATE), term, s0.sig)[0] if l > 0 else 0
        m.d.comb += read_whole(self.ird, Mux(self.write_half, 0, self.Sx * ci) + _mulk(region, ci) + col)

    def _chunks(self, m):
        """h and t are read a chunk at a time through one index mux each (chunk col1, or row1 in
        GRADIENT), registered for S2."""
        P, qa = self.P, self.qa
        hidx1 = Signal.like(self.s1.col, name="hidx1")           # chosen at S0: one multiplexer less at S1
        # the chunk at S0 (GRADIENT: row, else col) in a register of its own (_tracker): the
        # memories' address and the one-hot copies' decoders start from flip-flops
        names = _ISSUE_PHASES
        hidx0 = self.hidx0 = self._tracker("hidx0", len(self.s0.col),
                                           {nm: (0, 1, 0, 0) if nm == "GRADIENT" else (0, 0, 1, 0) for nm in names},
                                           {nm: Const(0, len(self.s0.col)) for nm in names})
        m.d.sync += hidx1.eq(hidx0)
        self.h_chunk = [Signal(signed(qa.width), name=f"h_chunk{pp}") for pp in range(P)]
        self.t_chunk = [Signal(signed(qa.width), name=f"t_chunk{pp}") for pp in range(P)]
        # GRADIENT needs only f'(h) and f'(t) of the chunk at S3: one register of the entry, then
        # its hard-tanh derivative bit delayed (not the entry)
        self.h_inside3 = [Signal(name=f"h_inside3_{pp}") for pp in range(P)]
        self.t_inside3 = [Signal(name=f"t_inside3_{pp}") for pp in range(P)]
        for mem in (self.h_mem, self.t_mem):       # the chunk's address at S0, its word at S1
            if mem is not None:
                m.d.comb += read_whole(mem[0], hidx0)

        self.hidx1 = hidx1
        # a vector kept in flip-flops is read through a one-hot copy of hidx1 per lane (an
        # AND-OR multiplexer; no decoder of hidx1 reaching every lane): the copies differ in
        # polarity and reset (four variants), so that Yosys keeps them apart. A reset-less copy
        # differs from hidx1 only in the cycle after a reset, when no issue is at S1
        oh_next = Cat(*(hidx0 == i for i in range(self.cn)))
        oh_lane = []
        if self.h_mem is None or self.t_mem is None:
            for pp in range(P):
                inv, rst = (pp // 2) % 2, pp % 2
                r = Signal(self.cn, name=f"hidx_oh{pp}", init=((1 << self.cn) - 1) ^ 1 if inv else 1,
                           reset_less=not rst)
                m.d.sync += r.eq(~oh_next if inv else oh_next)
                oh_lane.append(~r if inv else r)

        def lane(mem, vec, pp):
            if mem is not None:
                return mem[0].data[pp * qa.width:(pp + 1) * qa.width].as_signed()
            terms = [Value.cast(vec[pp][q]).as_unsigned() & oh_lane[pp][q].replicate(qa.width)
                     for q in range(self.cn)]
            while len(terms) > 1:       # a balanced OR tree
                terms = [terms[i] | terms[i + 1] if i + 1 < len(terms) else terms[i]
                         for i in range(0, len(terms), 2)]
            return terms[0].as_signed()

        for pp in range(P):
            m.d.comb += [self.h_chunk[pp].eq(lane(self.h_mem, self.h_l, pp)),
                         self.t_chunk[pp].eq(lane(self.t_mem, self.t_l, pp))]
            for v, out in ((self.h_chunk[pp], self.h_inside3[pp]), (self.t_chunk[pp], self.t_inside3[pp])):
                r = Signal.like(v, name=f"{v.name}_r", reset_less=True)
                m.d.sync += r.eq(v)
                self._late(m, out, self._inside(r))

    # ---- S1: operands and one multiplier per lane ----
    def _lanes(self, m):
        """The lane array (:class:`.mac.MacLanes`), and the read data each write-back needs as
        its old value at S3 (``read3[name]``, a lane's word of ``W``, ``T``, ``R``, ``head_W``;
        one word of ``b``, ``head_b``)."""
        P, rd = self.P, self.rd
        # the adder tree sums the dot products' products (W x, T h, t h, W_head h), narrower than
        # the lanes' widest (err T in GRADIENT, which takes the per-lane products)
        qw, qa, qin = self.qw, self.qa, self.qin
        sum_w = max(qw.width + qin.width, 2 * qa.width, qw.width + qa.width if self.head else 0)
        self.mac = m.submodules.mac = MacLanes(P, self.A, self.B, latency=mul_latency(P), fabric_operands=True,
                                                     sum_width=min(sum_w, self.A + self.B))
        self.prod = [self.mac.prod[pp] for pp in range(P)]
        self.read2, self.read3 = {}, {}
        for name in ("W", "T", "R", "head_W", "b", "head_b"):
            if name not in rd:
                continue
            ports = rd[name]
            if name in self.late_read or name == "T":
                # read late (UPDATE, TABLE, HEAD_UPDATE): the read data at S2 registered for S3;
                # T: GRADIENT's f'(T[m]) bit at S3 from the data registered at S2 (T is read at S0)
                regs = [Signal(signed(len(port.data)), name=f"{name}_read_r{pp}", reset_less=True) for pp, port in enumerate(ports)]
                m.d.sync += [r.eq(port.data) for r, port in zip(regs, ports)]
                if name == "T":
                    flags = [Signal(name=f"T_inside3_{pp}") for pp in range(P)]
                    for f, r in zip(flags, regs):
                        self._late(m, f, self._inside(r))
                    self.read3["T_inside"] = flags
                else:
                    self.read3[name] = regs
                continue
            regs = [Signal(signed(len(port.data)), name=f"{name}_read2_{pp}", reset_less=True)
                    for pp, port in enumerate(ports)]
            for r, port in zip(regs, ports):
                self._late(m, r, port.data)
            self.read2[name] = regs
            self.read3[name] = self._s3(m, regs)
        if self.need_sm:       # the softmax's products e_k q ride on the idle lanes
            pb, MBB = self.pb, len(self.sm.mul_b)
            m.d.comb += self.sm.mul_p.eq(sum(self.prod[pp].as_unsigned()[:E_BITS + pb] << (pp * pb)
                                             for pp in range(min(P, math.ceil(MBB / pb)))))

    # ---- S2: accumulate ----
    def _accumulators(self, m):
        """The dot-product accumulator ``acc`` (one adder; its start value by phase: the bias or
        0) and one accumulator per lane, ``lane_acc``, for GRADIENT (a sum over the classes) and
        UPDATE (a sum over the terms)."""
        P, C, s2 = self.P, self.C, self.s2
        self.acc = acc = Signal(signed(self.acc_w), name="acc", reset_less=True)
        self.acc_n = Signal.like(acc, name="acc_n")
        self.lane_acc = [Signal(signed(self.lane_acc_w), name=f"lane_acc{pp}", reset_less=True) for pp in range(P)]
        lane_start = s2.flag("lane_start", lambda s: Mux(s.phase == _GRADIENT, (s.col == 0) | (s.col == C), s.term == 0))
        lane_sum = [Signal(signed(self.lane_acc_w + 1), name=f"lane_sum{pp}") for pp in range(P)]
        start = Const(0)
        if self.class_ce and self.g_half:        # GRADIENT's sums start from the rounding half
            start = Mux(s2.flag("grad_start", lambda s: s.phase == _GRADIENT), self.g_half, 0)
        for pp in range(P):
            m.d.comb += lane_sum[pp].eq(Mux(lane_start, start, self.lane_acc[pp]) + self.prod[pp])
            m.d.sync += self.lane_acc[pp].eq(lane_sum[pp])
        self.acc_base = Signal.like(acc, name="acc_base")
        m.d.comb += [self.acc_base.eq(Mux(s2.col_is(0), 0, acc)), self.acc_n.eq(self.acc_base + self.mac.total)]

    def _accumulate(self, m, code, start=None):
        """At S2 of phase ``code``: ``acc`` takes the adder tree's sum (from ``start`` at the
        first chunk of a dot product, else 0)."""
        with m.If(self.s2.at(code)):
            if start is not None:
                m.d.comb += self.acc_base.eq(Mux(self.s2.col_is(0), start, self.acc))
            m.d.sync += self.acc.eq(self.acc_n)

    # ---- the phases ----
    def _forward(self, m):
        """FORWARD: ``h = f(W x + b)`` and (layers >= 1, training) ``t = f(W t_in + b)``, a row
        ``j`` at a time across the input chunks; layer 0 reads ``t = f(R[c])`` alongside, and
        ``Tin[c] <- t_in`` is written during the first row of the ``t`` pass."""
        P, l, ci, qa, qin = self.P, self.l, self.ci, self.qa, self.qin
        s1, s2, s3 = self.s1, self.s2, self.s3
        self._operands(_FORWARD, _A_W, _B_IN)
        if l > 0:    # Tin[c] <- t_in from the input memory's read data in row 0 of the t pass
            i_we, i_addr = Signal(name="tin_we"), Signal(range(max(2, self.C * ci)), name="tin_addr")
            i_data = [Signal(signed(qin.width), name=f"tin_wdata{pp}", reset_less=True) for pp in range(P)]
            m.d.sync += [i_we.eq(s1.at(_FORWARD) & (s1.sig == 1) & (s1.row == 0)),
                         i_addr.eq(_mulk(self.c, ci) + s1.col)]
            m.d.sync += [i_data[pp].eq(self.x_lane[pp]) for pp in range(P)]
            for pp in range(P):
                m.d.comb += [self.wr["Tin"][pp].addr.eq(i_addr), self.wr["Tin"][pp].data.eq(i_data[pp]),
                             self.wr["Tin"][pp].en.eq(i_we)]
        if l == 0:
            # t = narrow(R[c]) from the read data registered first (the block RAM's clock-to-out
            # and a narrowing do not fit one cycle at speed)
            tq2, tv2 = self.target_chunk[2], self.target_valid[2]
            t_new = []
            for pp in range(P):
                r_row = Signal(signed(self.qt.width), name=f"rrow{pp}", reset_less=True)
                m.d.sync += r_row.eq(self.rd["R"][pp].data)
                t_new.append(narrow(r_row, self.ft, self.q_act)[0])
                if self.t_mem is None:
                    with m.If(tv2):
                        m.d.sync += self.t_l[pp][tq2].eq(t_new[pp])
            if self.t_mem is not None:       # the chunk's word, written in the same cycle
                twr = self.t_mem[1]
                m.d.comb += [twr.addr.eq(tq2), twr.en.eq(tv2), twr.data.eq(Cat(*t_new))]
        # S2: the sum starts from the bias; FORWARD's sums are narrowed from a copy of the
        # accumulator that only FORWARD updates (acc also feeds the logits, the argmax and
        # itself, and is placed for them)
        acc_fwd = Signal.like(self.acc, name="acc_fwd")
        with m.If(s2.at(_FORWARD)):
            m.d.comb += self.acc_base.eq(Mux(s2.col_is(0), self.read2["b"][0] << self.bsh, self.acc))
            m.d.sync += [self.acc.eq(self.acc_n), acc_fwd.eq(self.acc_n)]
        # S3: narrowed; h[j] and t[j] land at S4 from registers (the narrowing is a carry chain
        # of its own)
        self.h_new = hv3 = narrow(acc_fwd, self.fw + self.fin, self.q_act)[0]
        hv4, hwe4, twe4, row4 = Signal.like(hv3, name="h_new4"), Signal(name="h_we4"), Signal(name="t_we4"), \
            Signal.like(s3.row, name="row4")
        m.d.sync += [hv4.eq(hv3), row4.eq(s3.row), hwe4.eq(0), twe4.eq(0)]
        if self.h_mem is not None:       # entry row4 of h: its chunk's word, its lane's granule
            hwr = self.h_mem[1]
            hq, hr = _divmod_const(row4, P, self.n)
            m.d.comb += [hwr.addr.eq(hq), hwr.data.eq(Cat(*([hv4] * P)))]
            m.d.comb += [hwr.en[k].eq(hwe4 & (hr == k)) for k in range(P)]
        else:
            with m.If(hwe4):
                m.d.sync += self.h_a[row4].eq(hv4)
        if l > 0:      # layer 0's t comes from R[c] only (its FORWARD has no t pass)
            with m.If(twe4):
                m.d.sync += self.t_a[row4].eq(hv4)
        with m.If(s3.at(_FORWARD)):
            with m.If(s3.col_is(ci - 1)):
                with m.If(s3.sig == 0):
                    m.d.sync += hwe4.eq(1)
                with m.Else():
                    m.d.sync += twe4.eq(1)

    def _logits(self, m):
        """LOGITS: ``s_k = T[k] . h`` on the pre-write caches, lanes across ``j``; the prediction
        (last stage) and ``m = argmax_{k != c} s_k``."""
        s3 = self.s3
        self._operands(_LOGITS, _A_T, _B_H_CHUNK)
        self._accumulate(m, _LOGITS)
        self._logit(_LOGITS, "row", readout=True)
        # m's compare on acc_cmp (the sum's copy, _logit_registers); k != c decided at S1 (c
        # holds over the sample)
        self.acc_cmp = Signal.like(self.acc, name="acc_cmp", reset_less=True)
        # m's compare has a copy of its own (acc_cmp's complement, so that Yosys keeps it
        # apart): each copy drives one compare and one register, placed beside them
        self.acc_cmp_m = Signal.like(self.acc, name="acc_cmp_m", reset_less=True)
        # LOGITS' last chunk of a row k != c at S3: one flag carried with the issue. Both sides
        # complemented: s > best is ~s < ~best, and the copy loads the best with no inverter
        m_try = s3.flag("m_try_", lambda s: s.at(_LOGITS) & s.col_is(self.cn - 1) & (s.row != self.c))
        with m.If(m_try & (~self.have_m | (self.acc_cmp_m < self.best_wrong_n))):
            m.d.sync += [self.best_wrong_n.eq(self.acc_cmp_m), self.m_class.eq(s3.row), self.have_m.eq(1)]

    def _cache(self, m):
        """CACHE: ``s_c = t . h`` and ``T[c] <- t``."""
        P, s1, s3 = self.P, self.s1, self.s3
        self._operands(_CACHE, _A_T_CHUNK, _B_H_CHUNK)
        # T[c] <- t from the chunk read at S1, a cycle later from registers (the lane
        # multiplexers and the cache's write port do not share a cycle at speed; nothing reads
        # it sooner)
        t_we, t_addr = Signal(name="t_we"), Signal(range(max(2, self.C * self.cn)), name="t_addr")
        t_data = [Signal(signed(self.qa.width), name=f"t_wdata{pp}", reset_less=True) for pp in range(P)]
        m.d.sync += [t_we.eq(s1.at(_CACHE)), t_addr.eq(_mulk(self.c, self.cn) + s1.col)]
        m.d.sync += [t_data[pp].eq(self.t_chunk[pp]) for pp in range(P)]
        for pp in range(P):
            m.d.comb += [self.wr["T"][pp].addr.eq(t_addr), self.wr["T"][pp].data.eq(t_data[pp]),
                         self.wr["T"][pp].en.eq(t_we)]
        self._accumulate(m, _CACHE)
        self._logit(_CACHE, self.c)

    def _softmax(self, m):
        """SOFTMAX: ``prob = softmax(s)`` (:class:`.softmax.Softmax`, its products on the idle
        lanes); then ``err_k = prob_k - y_k`` for one class a cycle: the class is chosen at S0
        and registered, S1 only indexes ``prob``."""
        s0, C = self.s0, self.C
        self.err_class, self.err_is_c = Signal(range(max(2, C)), name="err_class"), Signal(name="err_is_c")
        grad, col_c = s0.at(_GRADIENT), s0.col == C
        err_class0 = Mux(grad, Mux(col_c, self.c, s0.col), s0.row)
        # err_class0 == c, its compares side by side (not behind the class multiplexer)
        m.d.sync += [self.err_class.eq(err_class0),
                     self.err_is_c.eq(Mux(grad, col_c | (s0.col == self.c), s0.row == self.c))]
        # prob_c - 1 registered (c holds over the sample, prob from the softmax's done on, a
        # cycle before the first issue's S0): err is a multiplexer of registers, no subtraction
        # in front of the lanes' shared operand register
        self.prob_c_m = Signal(signed(self.err_w), name="prob_c_m", reset_less=True)
        m.d.sync += self.prob_c_m.eq(Array(self.prob)[self.c] - (1 << P_FRAC))
        # prob_k itself is picked at S0 from a tracker of the class (GRADIENT: col, else row;
        # GRADIENT's g_t step, col == C, takes prob_c - 1 whatever it picks) and registered: no
        # class multiplexer between err_class and the lanes' shared operand register either
        names = _ISSUE_PHASES
        w = len(s0.col)
        self.ecls0 = self._tracker("ecls0", w, {nm: (0, 0, 1, 0) if nm == "GRADIENT" else (0, 1, 0, 0) for nm in names},
                                   {nm: Const(0, w) for nm in names})
        self.prob_sel = Signal(signed(self.err_w), name="prob_sel", reset_less=True)
        m.d.sync += self.prob_sel.eq(Array(self.prob + [0] * ((1 << w) - C))[self.ecls0])
        m.d.comb += self.err.eq(Mux(self.err_is_c, self.prob_c_m, self.prob_sel))
        if self.head:         # the head's delta d_k = narrow(err_k), with it at S2 and S3
            self.d_head, d_ovf = narrow(self.err, P_FRAC, self.qe)
            d2, d2_ovf = Signal(signed(self.qe.width), name="d_head2"), Signal(name="d_head2_ovf")
            self._late(m, d2, self.d_head)
            self._late(m, d2_ovf, d_ovf)
            self.d_head3, self.d_head3_ovf = self._s3(m, d2), self._s3(m, d2_ovf)

    def _gradient(self, m):
        """GRADIENT (class_ce): per chunk of ``j``, ``g_h = sum_k err_k T[k]`` (steps ``0 .. C-1``)
        and ``g_t = err_c h`` (step ``C``), lanes across ``j``; narrowed to the error format,
        masked (``d_h = g_h f'(h)``; ``g_t`` with the masks ``f'(t)`` and ``f'(T[m])``) and
        pushed into the delta FIFOs at S3."""
        self.err_flags4 = eflags4 = Signal(self.P, name="err_flags4")   # error saturations, counted at S4
        m.d.sync += eflags4.eq(0)
        P, C, qe, s1, s2, s3 = self.P, self.C, self.qe, self.s1, self.s2, self.s3
        self._operands(_GRADIENT, _A_ERR, Mux(s1.col == C, _B_H_CHUNK, _B_T))
        self.shared_a[_A_ERR] = self.err
        if not self.class_ce:
            return
        self._fifo_flag(m, "push_d_h3", s2.at(_GRADIENT) & s2.col_is(C - 1), "d_h", push=True)
        self._fifo_flag(m, "push_g_t3", s2.at(_GRADIENT) & s2.col_is(C), "g_t", push=True)
        mask_m = [Signal(name=f"mask_m{pp}") for pp in range(P)]        # f'(T[m]), lane pp
        T3_in, h_in3, t_in3 = self.read3["T_inside"], self.h_inside3, self.t_inside3
        with m.If(s3.at(_GRADIENT)):
            ovfs, d_h, g_t = [], [], []
            for pp in range(P):
                with m.If(s3.col == self.m_class):
                    m.d.sync += mask_m[pp].eq(T3_in[pp])
                # one narrowing per lane: g_h at step C - 1, g_t at step C (the sums started from
                # the rounding half: a floor, its low bit cleared on a tie, then saturated)
                if self.g_half:
                    g, g_ovf = saturate(round_shift_halved(self.lane_acc[pp], self.g_shift), qe)
                else:
                    g, g_ovf = narrow(self.lane_acc[pp], P_FRAC + self.fa, qe)
                ovf = Signal(name=f"err_ovf{pp}")
                d_h.append(Mux(h_in3[pp], g, 0))
                mm = mask_m[pp] if self.push else Const(0, 1)
                g_t.append(Cat(g, t_in3[pp], mm))
                with m.If(s3.col_is(C - 1) | s3.col_is(C)):
                    m.d.comb += ovf.eq(g_ovf & self._lane_valid(pp, s3.row, self.n))
                ovfs.append(ovf)
            m.d.sync += eflags4.eq(Cat(*ovfs))
        # the entries offered every cycle: only the push flags (decided at S2) take them
        self._fifo_push(m, "d_h", d_h)
        self._fifo_push(m, "g_t", g_t)

    def _update(self, m):
        """UPDATE: ``W <- sat(W + round(-u >> s))`` a row ``j`` at a time, ``u`` summed over the
        terms (``d_h x``; ``d_tc t_in``, ``d_tm Tin[m]`` at layers >= 1) in the lane
        accumulators, then the bias step ``b <- sat(b + round(-(d_h + d_tc + d_tm) >> s))``:
        read-modify-write chunks, the rounded step at S3, saturated and written at S4."""
        P, n, ci, l, s0, s1, s3 = self.P, self.n, self.ci, self.l, self.s0, self.s1, self.s3
        if self.class_ce:
            # the row's lane in the head chunk; the FIFOs rotate after the last row of a chunk
            lane_index = Signal(range(P), name="lane_index")
            # lane_index a cycle ahead (the lane of the issue at S0), counted from S0's issue
            # in a register of its own: the heads' lane multiplexers start from flip-flops
            lane_nx = Signal(range(P), name="lane_nx")
            upd0, row_end0 = s0.at(_UPDATE), s0.col == ci

            def lane_step(assign, nx):
                # lane_nx's next value (the lane of the next cycle's issue at S0) into a register:
                # ``assign(v)`` the statement that loads ``v``, ``nx`` its value now (one-hot
                # for the heads' copies, binary for lane_nx)
                one_hot = nx is not lane_nx
                first = Const(1, P) if one_hot else Const(0, len(lane_nx))
                last = nx[P - 1] if one_hot else lane_nx == P - 1
                step = Cat(nx[P - 1], nx[:P - 1]) if one_hot else (lane_nx + 1)[:len(lane_nx)]
                with m.If(upd0):
                    with m.If(row_end0):
                        with m.If(last | (s0.row == n - 1)):
                            m.d.sync += assign(first)
                        with m.Else():
                            m.d.sync += assign(step)
                with m.Else():
                    m.d.sync += assign(first)
            lane_step(lane_nx.eq, lane_nx)
            m.d.sync += lane_index.eq(lane_nx)
            self.lane_index, self.lane_nx = lane_index, lane_nx
            self.head_entry = {}
            heads = {nm: self._fifo_head_entry(m, nm, lane_index, lane_step) for nm in self.fifo_w}
            d_h = heads["d_h"]
            d_tc, d_tm = self._g_t_split(heads["g_t"])
            delta = Mux(s1.term == 0, d_h, Mux(s1.term == 1, d_tc, d_tm))
            bias_terms = [d_h, d_tc, d_tm] if self.terms > 1 else [d_h]
            # both FIFOs rotate at the S1 of a row's bias step when the row ends a chunk
            self._fifo_flag(m, "fifo_rot1", s0.at(_UPDATE) & (s0.col == ci) &
                            ((lane_nx == P - 1) | (s0.row == n - 1)), "d_h", "g_t")
        else:
            j = s1.row
            delta = Mux(s1.term == 0, self.d_h_a[j], Mux(s1.term == 1, self.d_tc_a[j], self.d_tm_a[j]))
            bias_terms = [self.d_h_a[j], self.d_tc_a[j], self.d_tm_a[j]] if self.terms > 1 else [self.d_h_a[j]]
        self.shared_a[_A_D] = delta
        self._operands(_UPDATE, _A_D, Mux(s1.term == 2, _B_TIN, _B_IN) if l > 0 else _B_IN)
        # the bias step's sum of the terms: the terms registered at S1, added at S1b
        regs = []
        for k, v in enumerate(bias_terms):
            r = Signal(Value.cast(v).shape(), name=f"bias_term{k}", reset_less=True)
            m.d.sync += r.eq(v)
            regs.append(r)
        bias_delta2 = Signal(signed(self.ew + 2), name="bias_delta2", reset_less=True)
        self._late(m, bias_delta2, sum(regs[1:], regs[0]), self.lat - 1)           # from S1b
        self.bias_delta3 = self._s3(m, bias_delta2)
        self._write_back_registers(m)
        wb = self.wb
        with m.If(s3.at(_UPDATE)):
            for pp in range(P):
                m.d.sync += [wb.step[pp].eq(self._step(self._fit(self.lane_acc[pp], self.upd_w), self.shW,
                                                       self.draws[pp])),
                             wb.old[pp].eq(self.read3["W"][pp])]
            m.d.sync += [wb.b_step.eq(self._step(self.bias_delta3, self.shB, self.draws[0])),
                         wb.b_old.eq(self.read3["b"][0]),
                         wb.w_go.eq(~s3.col_is(ci) & (s3.term == self.terms - 1)), wb.b_go.eq(s3.col_is(ci)),
                         wb.w_addr.eq(_mulk(s3.row, ci) + s3.col), wb.b_addr.eq(s3.row)]
            if self.stoch:
                m.d.comb += self.lfsr.advance.eq(Mux(s3.col == ci, 1, Mux(s3.term == self.terms - 1,
                                                                          self._chunk_count(s3.col, ci, self.n_in), 0)))
        # S4: add the rounded steps, saturate, write back; count saturations a cycle later
        self.w_new = []
        for pp in range(P):
            wn, wovf = saturate(self._apply_step(wb.old[pp], wb.step[pp]), self.qw)
            self.w_new.append((wn, wovf))
            m.d.comb += [self.wr["W"][pp].addr.eq(wb.w_addr), self.wr["W"][pp].data.eq(wn),
                         self.wr["W"][pp].en.eq(wb.w_go)]
            m.d.sync += wb.w_flags[pp].eq(wovf & wb.w_go)
        self.b_new = bn, bovf = saturate(self._apply_step(wb.b_old, wb.b_step), self.qb)
        m.d.comb += [self.wr["b"][0].addr.eq(wb.b_addr), self.wr["b"][0].data.eq(bn), self.wr["b"][0].en.eq(wb.b_go)]
        m.d.sync += wb.b_flag.eq(bovf & wb.b_go)

    def _write_back_registers(self, m):
        """The S4 registers UPDATE, TABLE and HEAD_UPDATE share: the rounded step of each lane
        (W, R, the head's W) and of the bias, the old values, where and whether to write;
        saturation flags for the counters (widths: those of the rounded expressions themselves,
        so nothing is cut before saturating)."""
        k = self.shifts
        self.shW, self.shB, self.shR, self.shHW = k.weight, k.bias, k.table, k.head_weight
        lane_steps = [self._step(self._fit(self.lane_acc[0], self.upd_w), self.shW, self.draws[0])]
        bias_steps = [self._step(self.bias_delta3, self.shB, self.draws[0])]
        if self.table:
            lane_steps.append(self._table_step(self.fifo_head["g_t"][0], self.s3.row == 0, self.draws[0]))
        if self.head:
            lane_steps.append(self._step(self._fit(self.lane_acc[0], self.head_w), self.shHW, self.head_draws[0]))
            bias_steps.append(self._step(self.d_head3, self.shB, self.head_draws[0]))
        self.wb = wb = _WriteBack(self.P, max(len(v) for v in lane_steps), max(self.qw.width, self.qt.width),
                                  max(len(v) for v in bias_steps), self.qb.width, len(self.raddr2))
        m.d.sync += [wb.w_go.eq(0), wb.b_go.eq(0), wb.r_go.eq(0), wb.hw_go.eq(0), wb.hb_go.eq(0)]

    def _table(self, m):
        """TABLE (layer 0, class_ce): ``R[c] <- sat(R[c] + round(-d_tc >> s))``, then ``R[m]`` with
        ``d_tm``, a chunk a cycle from the head of the ``g_t`` FIFO (which rotates)."""
        if not self.table:
            return
        P, s2, s3, wb = self.P, self.s2, self.s3, self.wb
        self._fifo_flag(m, "table_rot3", s2.at(_TABLE), "g_t")
        table_addr3 = self._s3(m, self.raddr2)
        row_c = s3.flag("row0_", lambda s: s.row == 0)        # R[c] (else R[m])
        with m.If(s3.at(_TABLE)):
            for pp in range(P):
                m.d.sync += [wb.step[pp].eq(self._table_step(self.fifo_head["g_t"][pp], row_c, self.draws[pp])),
                             wb.old[pp].eq(self.read3["R"][pp]), wb.lane_valid[pp].eq(self._lane_valid(pp, s3.col, self.n))]
            m.d.sync += [wb.r_go.eq(1), wb.r_addr.eq(table_addr3)]
            if self.stoch:
                m.d.comb += self.lfsr.advance.eq(self._chunk_count(s3.col, self.cn, self.n))
        same = (self.qt.width, self.qt.min_int, self.qt.max_int) == (self.qw.width, self.qw.min_int, self.qw.max_int)
        for pp in range(P):
            # R's words take UPDATE's saturating adders when the formats are the same
            rn, rovf = self.w_new[pp] if same else saturate(self._apply_step(wb.old[pp], wb.step[pp]), self.qt)
            m.d.comb += [self.wr["R"][pp].addr.eq(wb.r_addr), self.wr["R"][pp].data.eq(rn),
                         self.wr["R"][pp].en.eq(wb.r_go)]
            m.d.sync += wb.r_flags[pp].eq(rovf & wb.lane_valid[pp] & wb.r_go)

    def _table_step(self, v, row_c, draw):
        """TABLE's step from a packed ``g_t`` entry ``v``: ``d_tc`` (``row_c``) or ``d_tm = -g_t``
        (masked). Subtracted to nearest, ``old - round(-g_t >> s)`` is ``old + round(g_t >> s)``
        (half to even is odd-symmetric): :func:`.fixed.rounded_step`'s encoding with the floor
        and the increment not inverted, so no negation of ``g_t`` precedes the rounding."""
        if not self.sub:
            d_tc, d_tm = self._g_t_split(v)
            return self._step(Mux(row_c, d_tc, d_tm), self.shR, draw)
        qe = self.qe
        q, up = round_nearest_parts(v[:qe.width].as_signed(), self.shR)
        # complemented as _step's: old - round(g_t) from Cat(up, q), old + round(g_t) from its
        # complement, old itself from ~0
        return Mux(row_c, Mux(v[qe.width], Cat(up, q).as_signed(), -1),
                   Mux(v[qe.width + 1], Cat(~up, ~q).as_signed(), -1))

    def _head(self, m):
        """The linear head (last stage, ``readout: head``): HEAD_LOGITS ``s_k = W_head[k] . h +
        b_head[k]`` and the prediction; HEAD_SOFTMAX (in the FSM); HEAD_UPDATE ``W_head[k] <-
        sat(W_head[k] + round(-d_k h >> s))``, then ``b_head[k]``, with ``d = narrow(err)``."""
        if not self.head:
            return
        P, cn, s3, wb = self.P, self.cn, self.s3, self.wb
        self._operands(_HEAD_LOGITS, _A_HEAD_W, _B_H_CHUNK)
        self._operands(_HEAD_UPDATE, _A_D_HEAD, _B_H_CHUNK)
        self.shared_a[_A_D_HEAD] = self.d_head
        self._accumulate(m, _HEAD_LOGITS, start=self.read2["head_b"][0] << self.hbsh)
        self._logit(_HEAD_LOGITS, "row", readout=True)
        with m.If(s3.at(_HEAD_UPDATE)):
            for pp in range(P):
                # HEAD_UPDATE's lane sums are single products (lane_start at every term 0)
                m.d.sync += [wb.step[pp].eq(self._step(self._fit(self.lane_acc[pp], self.head_w), self.shHW,
                                                       self.head_draws[pp])),
                             wb.old[pp].eq(self.read3["head_W"][pp])]
            m.d.sync += [wb.b_step.eq(self._step(self.d_head3, self.shB, self.head_draws[0])),
                         wb.b_old.eq(self.read3["head_b"][0]),
                         wb.hw_go.eq(~s3.col_is(cn)), wb.hb_go.eq(s3.col_is(cn)), wb.w_addr.eq(_mulk(s3.row, cn) + s3.col),
                         wb.b_addr.eq(s3.row), wb.err_ovf.eq(self.d_head3_ovf)]
            if self.stoch:
                m.d.comb += self.lfsr_head.advance.eq(Mux(s3.col == cn, 1, self._chunk_count(s3.col, cn, self.n)))
        # S4: the head's words take UPDATE's saturating adders (the same formats)
        for pp in range(P):
            wn, wovf = self.w_new[pp]
            m.d.comb += [self.wr["head_W"][pp].addr.eq(wb.w_addr), self.wr["head_W"][pp].data.eq(wn),
                         self.wr["head_W"][pp].en.eq(wb.hw_go)]
            m.d.sync += wb.hw_flags[pp].eq(wovf & wb.hw_go)
        bn, bovf = self.b_new
        m.d.comb += [self.wr["head_b"][0].addr.eq(wb.b_addr), self.wr["head_b"][0].data.eq(bn),
                     self.wr["head_b"][0].en.eq(wb.hb_go)]
        m.d.sync += [wb.hb_flag.eq(bovf & wb.hb_go), wb.he_flag.eq(wb.err_ovf & wb.hb_go)]

    def _fifo_enables(self, m):
        """Each delta FIFO shifts when any of its flags is set, and pushes with its push flag."""
        for nm in self.fifo_shift:
            m.d.comb += [self.fifo_shift[nm].eq(Cat(*self.fifo_flags[nm]).any()),
                         self.fifo_push[nm].eq(self.push_flag[nm])]
        self._ring_addresses(m)

    def _operand_mux(self, m):
        """S1 picks each operand's source by phase (the same for every lane); the sources are
        registered and, a cycle later (S1b), a multiplexer with that registered choice feeds
        MacLanes' operand registers: no block RAM read, lane multiplexer or error term shares a
        cycle with the operand multiplexer."""
        P, l, rd, mac = self.P, self.l, self.rd, self.mac
        asel, bsel = Signal(range(_A_SM + 1), name="a_sel"), Signal(range(_B_SM + 1), name="b_sel")
        with m.Switch(self.s1.phase):
            for code, (a, b) in sorted(self.operand_sel.items()):
                with m.Case(code):
                    m.d.comb += [asel.eq(a), bsel.eq(b)]
        if self.need_sm:       # the softmax's products e_k q on the idle lanes
            with m.If(self.sm.mul_en):
                m.d.comb += [asel.eq(_A_SM), bsel.eq(_B_SM)]
        asel_b, bsel_b = self._src(m, asel, "a_sel_b"), self._src(m, bsel, "b_sel_b")
        shared_a = {code: self._src(m, v, f"shared{code}_b") for code, v in self.shared_a.items()}
        if self.need_sm:
            shared_a[_A_SM] = self._src(m, self.sm.mul_a, "sm_a_b")
        # the sources every lane shares (err, the deltas, e_k) are chosen once, so that a lane's
        # multiplexer has one input for all of them: S1b is the shared choice, then the lanes'
        shared = Signal(signed(self.A), name="shared_a")
        with m.Switch(asel_b):
            for code, v in shared_a.items():
                with m.Case(code):
                    m.d.comb += shared.eq(v)
        for pp in range(P):
            srcs_a = {_A_W: self._src(m, rd["W"][pp].data, f"w_b{pp}"), _A_T: self._src(m, rd["T"][pp].data, f"t_b{pp}"),
                      _A_T_CHUNK: self._src(m, self.t_chunk[pp], f"t_chunk_b{pp}")}
            if shared_a:
                srcs_a[tuple(shared_a)] = shared
            srcs_b = {_B_IN: self._src(m, self.x_lane[pp], f"in_b{pp}"),
                      _B_H_CHUNK: self._src(m, self.h_chunk[pp], f"h_chunk_b{pp}"), _B_T: srcs_a[_A_T]}
            if l > 0 and len(rd["Tin"][pp].data) == len(rd["T"][pp].data):
                # T and Tin are the same bits of the packed cache's read word: one input
                del srcs_b[_B_T]
                srcs_b[(_B_T, _B_TIN)] = srcs_a[_A_T]
            elif l > 0:
                srcs_b[_B_TIN] = self._src(m, rd["Tin"][pp].data, f"tin_b{pp}")
            if self.head:
                srcs_a[_A_HEAD_W] = self._src(m, rd["head_W"][pp].data, f"hw_b{pp}")
            if self.need_sm:
                # q in (B - 1)-bit pieces, lane pp's piece of group mul_g (0 beyond q's width)
                pb, MBB, sm = self.pb, len(self.sm.mul_b), self.sm
                piece = Signal(pb, name=f"smb{pp}")
                with m.Switch(sm.mul_g):
                    for gi in range(self.G_sm):
                        if (gi * P + pp) * pb < MBB:
                            with m.Case(gi):
                                m.d.comb += piece.eq((sm.mul_b >> ((gi * P + pp) * pb))[:pb])
                srcs_b[_B_SM] = self._src(m, piece, f"sm_b_b{pp}")
            for sel, srcs, operand in ((asel_b, srcs_a, mac.a[pp]), (bsel_b, srcs_b, mac.b[pp])):
                with m.Switch(sel):
                    for code, v in srcs.items():
                        with m.Case(*(code if isinstance(code, tuple) else (code,))):
                            m.d.comb += operand.eq(v)

    def _saturation_counters(self, m):
        """The saturation counts (a cycle after each S4 write), and ``pipe_busy``: writes or
        counts still on their way (the engine is idle only without them)."""
        st, wb = self.st, self.wb

        busy = []

        def popcount(flags, name=None):
            # a wide set of flags (more than 8 lanes) is counted over cycles: registered counts
            # of groups of 8 flags, then of 4 counts, and so on; ``busy`` says whether a count
            # is still on its way (a level's registers hold a non-zero sum exactly when the level
            # before did a cycle earlier)
            if not flags:
                return 0
            vals = [f.as_unsigned() for f in flags]
            if len(vals) <= 8:
                return sum(vals)
            any_in = Signal(name=f"{name}_busy0")
            m.d.comb += any_in.eq(Cat(*flags).any())
            group, lvl = 8, 0
            while len(vals) > group:
                nxt = []
                for k in range(0, len(vals), group):
                    part = vals[k:k + group]
                    top = sum(2 ** len(v) - 1 for v in part)
                    r = Signal(range(top + 1), name=f"{name}_cnt{lvl}_{k // group}")
                    m.d.sync += r.eq(sum(part))
                    nxt.append(r)
                b = Signal(name=f"{name}_busy{lvl + 1}")
                m.d.sync += b.eq(any_in)
                busy.append(b)
                vals, any_in, group, lvl = nxt, b, 4, lvl + 1
            return sum(vals)

        sat_w, sat_b, sat_e, sat_t = (Signal(32, name=nm) for nm in ("sat_w", "sat_b", "sat_e", "sat_t"))
        sat_wh, sat_bh, sat_eh = (Signal(32, name=nm) for nm in ("sat_wh", "sat_bh", "sat_eh"))
        m.d.comb += [st.sat_weight.eq(sat_w), st.sat_bias.eq(sat_b), st.sat_error.eq(sat_e), st.sat_table.eq(sat_t)]
        if self.head:
            m.d.comb += [st.sat_weight_head.eq(sat_wh), st.sat_bias_head.eq(sat_bh), st.sat_error_head.eq(sat_eh)]
        m.d.sync += [sat_w.eq(sat_w + popcount(list(wb.w_flags), "sat_w")), sat_b.eq(sat_b + wb.b_flag),
                     sat_t.eq(sat_t + popcount(list(wb.r_flags), "sat_t")),
                     sat_e.eq(sat_e + popcount(list(self.err_flags4), "sat_e")),
                     sat_wh.eq(sat_wh + popcount(list(wb.hw_flags), "sat_wh")), sat_bh.eq(sat_bh + wb.hb_flag),
                     sat_eh.eq(sat_eh + wb.he_flag)]
        for vp, port in self.write_ports:
            m.d.sync += [port.addr.eq(vp.addr), port.data.eq(vp.data), port.en.eq(vp.en)]
        mem_writes = Cat(self.cwr.en.any(), *(port.en for _, port in self.write_ports)).any()
        m.d.comb += st.pipe_busy.eq(mem_writes | self.ck_go | self.v_inflight | self.s2.valid | self.s3.valid |
                                    wb.w_go | wb.b_go | wb.r_go | wb.hw_go | wb.hb_go |
                                    wb.w_flags.any() | wb.b_flag | wb.r_flags.any() | self.err_flags4.any() |
                                    wb.hw_flags.any() | wb.hb_flag | wb.he_flag | Cat(*busy).any())

    # ---- the hand-over, the FSM ----
    def _hand_over(self, m):
        """``h[j]`` and ``t[j]`` to the next stage as FORWARD narrows them (S3, the last chunk of
        a row), the label and mode once the last row went out; the prediction (last stage)."""
        st, l, n, s3 = self.st, self.l, self.n, self.s3
        self.cycles = Signal(32, name="cycles")
        self.out_pending = Signal(name="out_pending")
        self.pred_valid = Signal(name="pred_valid")
        m.d.comb += st.busy.eq(~self.idle)
        if self.last:
            m.d.comb += [st.pred.valid.eq(self.pred_valid)]
            with m.If(st.pred.valid & st.pred.ready):
                m.d.sync += self.pred_valid.eq(0)
            return
        o = st.o.sample.payload
        t_done = Signal(name="t_done")
        m.d.comb += st.o.sample.valid.eq(self.out_pending & t_done)
        m.d.comb += [o.label.eq(self.c), o.train.eq(self.train)]
        h_out = s3.at(_FORWARD) & s3.col_is(self.ci - 1)
        m.d.comb += [st.o.we.eq(h_out), st.o.sig.eq(s3.sig if l > 0 else 0), st.o.idx.eq(s3.row),
                     st.o.data.eq(self.h_new)]
        if l == 0:
            # layer 0's t = f(R[c]) lands a chunk a cycle at the start of FORWARD; its entries go
            # out one at a time in cycles without an h write (the hand-over waits for them)
            # t_full (t_index == n) is registered: the next stage's sample handshake starts
            # from flip-flops
            t_index = Signal(range(n + 1), name="t_out_index")
            t_full = Signal(name="t_out_full")
            tq, tv = self.target_chunk, self.target_valid
            m.d.comb += t_done.eq(t_full | ~self.train)
            # the entry's read is addressed outside the send condition (the memory's address
            # and read stay off the condition's path; only the data multiplexer is behind it)
            t_word = Signal(signed(self.qa.width), name="t_out_word")
            m.d.comb += t_word.eq(self.t_a[t_index])
            with m.If(~h_out & self.train & (tq[0] == self.cn) & ~tv[1] & ~tv[2] & ~t_full & st.busy):
                m.d.comb += [st.o.we.eq(1), st.o.sig.eq(1), st.o.idx.eq(t_index), st.o.data.eq(t_word)]
                m.d.sync += [t_index.eq(t_index + 1), t_full.eq(t_index == n - 1)]
            with m.If(st.i.sample.valid & st.i.sample.ready):
                m.d.sync += [t_index.eq(0), t_full.eq(0)]
        else:
            m.d.comb += t_done.eq(1)
        with m.If(st.o.sample.valid & st.o.sample.ready):
            m.d.sync += self.out_pending.eq(0)
        # hand the sample over once the last row of FORWARD reached S3 (its h / t entry went out)
        last_pass = Mux(self.train, 1, 0) if l > 0 else 0
        with m.If(s3.at(_FORWARD) & (s3.sig == last_pass) & (s3.row == n - 1) & (s3.col == self.ci - 1)):
            m.d.sync += self.out_pending.eq(1)

    def _after_name(self, state, train):
        """The state that follows issue phase ``state`` once it drained, for the sample's mode
        ``train`` (0 or 1)."""
        last_nt = self.last and not self.head
        if state == "FORWARD":
            if train:
                return "LOGITS" if self.class_ce or last_nt else "CACHE"
            return "LOGITS" if last_nt else "HEAD_LOGITS" if self.head else "FIN"
        if state in ("LOGITS", "HEAD_LOGITS"):
            if train:
                return "CACHE" if state == "LOGITS" else "HEAD_SOFTMAX"
            return "FIN"
        if state == "CACHE":
            return "SOFTMAX" if self.class_ce else "UPDATE"
        if state == "GRADIENT":
            return "UPDATE"
        if state == "UPDATE" and self.table:
            return "TABLE"
        if state in ("UPDATE", "TABLE"):
            return "HEAD_LOGITS" if self.head else "FIN"
        return "FIN"                        # HEAD_UPDATE

    def _after(self, m, state):
        """Go to the state that follows issue phase ``state`` once it drained."""
        names = [self._after_name(state, tr) for tr in (0, 1)]
        if names[0] == names[1]:
            self._goto(m, names[0])
            return
        with m.If(self.train):
            self._goto(m, names[1])
        with m.Else():
            self._goto(m, names[0])

    def _drained(self, m, names):
        """Per issue phase, its drain condition in ``W_<phase>`` (no issue left in the pipeline:
        before S2, GRADIENT a cycle earlier; phases with S3 results not at S2 either, FORWARD not
        at S3 either, for its S4 writes), each a flip-flop registered a cycle ahead (an issue's
        valid bit moves one pipeline stage a cycle, so the stages are empty the next cycle when
        S0 and every stage but the last are now). ``drain_exact`` pairs each flag with the
        condition it replaces (the flag test compares them)."""
        s0, s2, s3 = self.s0, self.s2, self.s3
        exact = {"GRADIENT": ~self.v_early, "inflight": ~self.v_inflight,
                 "s2": ~self.v_inflight & ~s2.valid, "s3": ~self.v_inflight & ~s2.valid & ~s3.valid}
        ahead = {"inflight": ~s0.valid & ~self.v_early, "s2": ~s0.valid & ~self.v_inflight,
                 "s3": ~s0.valid & ~self.v_inflight & ~s2.valid}
        flags = {"GRADIENT": exact["GRADIENT"]}
        for k, v in ahead.items():
            flags[k] = Signal(name=f"drained_{k}", init=1)
            m.d.sync += flags[k].eq(v)
        self.drain_exact = {k: (flags[k], exact[k]) for k in ahead}
        kind = {name: "GRADIENT" if name == "GRADIENT" else "s3" if name == "FORWARD" else
                "s2" if name in ("LOGITS", "CACHE", "HEAD_LOGITS") else "inflight" for name in names}
        return {name: flags[k] for name, k in kind.items()}

    def _fsm(self, m):
        """Each issue phase counts its issues (``_Slot`` counters: sig, row, col, term), then
        waits in ``W_<phase>`` for the pipeline to drain before ``_after`` picks the next."""
        st, l, P, C, n, ci, cn = self.st, self.l, self.P, self.C, self.n, self.ci, self.cn
        s0, s2, s3, train = self.s0, self.s2, self.s3, self.train
        S = 2 if l > 0 else 1
        last_nt = self.last and not self.head
        keep = {"FORWARD": True, "LOGITS": self.class_ce or last_nt, "CACHE": True, "GRADIENT": self.class_ce,
                "UPDATE": True, "TABLE": self.table, "HEAD_LOGITS": self.head, "HEAD_UPDATE": self.head}
        # each phase's counter limits (sig, row, col, term), as a function of the sample's mode;
        # UPDATE's bias step (col == ci) has one term (_count)
        issues = [(name, code, limits) for name, code, limits in (
            ("FORWARD", _FORWARD, lambda tr: (((S if tr else 1) if isinstance(tr, int) else Mux(tr, S, 1)) if S > 1 else 1,
                                                n, ci, 1)),
            ("LOGITS", _LOGITS, lambda tr: (1, C, cn, 1)),
            ("CACHE", _CACHE, lambda tr: (1, 1, cn, 1)),
            ("GRADIENT", _GRADIENT, lambda tr: (1, cn, C + 1, 1)),
            ("UPDATE", _UPDATE, lambda tr: (1, n, ci + 1, self.terms)),
            ("TABLE", _TABLE, lambda tr: (1, 2 if self.push else 1, cn, 1)),
            ("HEAD_LOGITS", _HEAD_LOGITS, lambda tr: (1, C, cn, 1)),
            ("HEAD_UPDATE", _HEAD_UPDATE, lambda tr: (1, C, cn + 1, 1)),
        ) if keep[name]]
        self.issue_of = {name: (code, limits) for name, code, limits in issues}
        last_issue = self._count(m, st.i.sample.payload.train)
        # Phases that need no drain before the next: nothing the next one reads at S0/S1 is
        # written later by this one, and S2/S3 stay in issue order. FORWARD -> LOGITS when the
        # last chunk of h is read at least DRAIN + 2 issues into LOGITS, after the last h entry
        # landed (S4; the t pass of a layer >= 1 ends FORWARD after the h pass anyway); LOGITS ->
        # CACHE (CACHE reads h, t and T[c], LOGITS writes only s and the argmax), UPDATE -> TABLE
        # (TABLE reads R and the FIFO head it rotates itself; UPDATE's rotations are at S1, its
        # writes go to W and b).
        no_drain = {}
        if keep["LOGITS"] and cn >= self.lat + 3:
            to_logits = (train & Const(int(self.class_ce or last_nt))) | (~train & Const(int(last_nt)))
            no_drain["FORWARD"] = (to_logits, "LOGITS")
        if keep["LOGITS"] and keep["CACHE"]:
            no_drain["LOGITS"] = (train, "CACHE")
        if keep["UPDATE"] and keep["TABLE"]:
            no_drain["UPDATE"] = (Const(1), "TABLE")

        tq, tv = self.target_chunk, self.target_valid
        m.d.comb += [self.rb_active.eq(self.idle_rb & st.state.en), self.rb_active_n.eq(~self.idle_rb_n & st.state.en),
                     st.i.sample.ready.eq(self.idle & ~self.out_pending & ~st.state.en)]
        drained = self._drained(m, [name for name, _, _ in issues])
        # one-hot: a flip-flop per state (self.idle for IDLE), set and cleared by _goto
        self._states = {"IDLE": self.idle}

        def state(name):
            self._cur = name
            return m.If(self._state(name))

        # the transitions into each issue phase, for the issue slot's registers (_issue_slot)
        enter = {name: [] for name, _, _ in issues}
        accept = st.i.sample.valid & st.i.sample.ready
        enter["FORWARD"].append(accept)
        for name, _, _ in issues:
            if name in no_drain:
                enter[no_drain[name][1]].append(self._state(name) & last_issue & no_drain[name][0])
            nxt = [self._after_name(name, tr) for tr in (0, 1)]
            for tr, y in enumerate(nxt):
                if y in enter:
                    mode = Const(1) if nxt[0] == nxt[1] else train if tr else ~train
                    if nxt[0] != nxt[1] or tr == 0:
                        enter[y].append(self._state(f"W_{name}") & drained[name] & mode)
        for name, after, present in (("SOFTMAX", "GRADIENT", self.class_ce),
                                     ("HEAD_SOFTMAX", "HEAD_UPDATE", self.head)):
            if present:
                enter[after].append(self._state(f"W_{name}") & self.sm.done)
        self._issue_slot(m, enter, last_issue)
        with state("IDLE"):
            # FORWARD's counter flags are loaded every idle cycle (for the sample on offer,
            # _count): the sample handshake stays out of their enables
            with m.If(accept):
                ip = st.i.sample.payload
                m.d.sync += self.write_half.eq(~self.write_half)
                # the issue counters are 0 here: every phase ends as they all wrap
                m.d.sync += [self.c.eq(ip.label), train.eq(ip.train), self.have_m.eq(0),
                             tq[0].eq(0), self.raddr_f.eq(_mulk(ip.label, cn))]
                self._goto(m, "FORWARD")
        for name, code, limits in issues:
            with state(name):
                if name == "FORWARD" and l == 0:     # the target row R[c], a chunk a cycle
                    with m.If(tq[0] < cn):
                        m.d.comb += tv[0].eq(1)
                        m.d.sync += [tq[0].eq(tq[0] + 1), self.raddr_f.eq(self.raddr_f + 1)]
                with m.If(last_issue):
                    if name in no_drain:
                        with m.If(no_drain[name][0]):
                            self._goto(m, no_drain[name][1])
                        with m.Else():
                            self._goto(m, f"W_{name}")
                    else:
                        self._goto(m, f"W_{name}")
            with state(f"W_{name}"):
                # phases with S3 results (s, the argmax) wait for them too, FORWARD for its
                # S4 writes of h and t
                with m.If(drained[name]):
                    self._after(m, name)
        for name, after, present in (("SOFTMAX", "GRADIENT", self.class_ce),
                                     ("HEAD_SOFTMAX", "HEAD_UPDATE", self.head)):
            if not present:
                continue
            with state(name):
                self._goto(m, f"W_{name}")
            with state(f"W_{name}"):
                with m.If(self.sm.done):
                    self._goto(m, after)
        with state("FIN"):
            ok = ~self.pred_valid if self.last else Const(1)
            with m.If(ok):
                if self.last:
                    m.d.sync += [self.pred_valid.eq(1), st.pred.payload.eq(self.pred)]
                m.d.comb += [st.done.eq(1), st.done_train.eq(train)]
                m.d.sync += st.last_cycles.eq(self.cycles + 1)
                self._goto(m, "IDLE")
        self._next_limits(m, st.i.sample.payload.train)
        self._track(m)
        if self.need_sm:          # the softmax's start and its logit scale: one-hot flags
            sm_start = Cat(*(self._state(nm) for nm in ("SOFTMAX", "HEAD_SOFTMAX") if nm in self._states)).any()
            sm_frac = Cat(*(self._state(nm) for nm in ("HEAD_SOFTMAX", "W_HEAD_SOFTMAX")
                            if nm in self._states)).any()
            m.d.comb += [self.sm.start.eq(sm_start), self.sm.frac_sel.eq(sm_frac)]
        # the sample's cycle count: 1 in the cycle that takes the sample, counted while busy;
        # loaded with 1 in every idle cycle (read only at FIN), so no handshake decides its
        # enable
        m.d.sync += self.cycles.eq(Mux(self.idle, 1, self.cycles + 1))

    # ---- the host's port: checkpoint writes and readback ----
    def _checkpoint(self, m):
        """Checkpoint writes (idle only; after every other driver of the write ports, so it
        wins), decoded from registers: a write lands a cycle after the request, like every other
        write, and the host's request decoding stays off the memories' write paths."""
        st = self.st
        m.d.sync += [self.ck_go.eq(self.rb_active & st.state.w_en), self.ck_addr.eq(st.state.addr),
                     self.ck_data.eq(st.state.w_data)]
        ck_cache = Signal(name="ck_cache")      # a checkpoint write into the packed cache
        cache_names = [name for name in self.wr if name in self.pbase]
        if cache_names:
            m.d.sync += ck_cache.eq(self.rb_active & st.state.w_en &
                                    Cat(*(st.state.mem == MEM_IDS[name] for name in cache_names)).any())
        cache_ck = []
        for name in self.wr:
            # the memory and its bank decoded with the request, into one flag each
            hit = Signal(name=f"ck_hit_{name}")
            m.d.sync += hit.eq(self.rb_active & st.state.w_en & (st.state.mem == MEM_IDS[name]))
            banks = Signal(len(self.wr[name]), name=f"ck_banks_{name}")
            m.d.sync += banks.eq(Cat(*(st.state.bank == bk for bk in range(len(self.wr[name])))))
            if name in self.pbase:
                cache_ck.append((name, hit, banks))
                continue
            for bk, port in enumerate(self.wr[name]):
                # every bank takes the address (the packed cache reads bank 0's), one bank writes
                with m.If(hit):
                    m.d.comb += [port.addr.eq(self.ck_addr), port.data.eq(self.ck_data[:len(port.data)]),
                                 port.en.eq(banks[bk])]
        self._checkpoint_cache(m, ck_cache, cache_ck)

    def _checkpoint_cache(self, m, ck_cache, cache_ck):
        """A checkpoint write of T, Tin or b goes into the packed cache's write registers
        directly, beside the phases' writes (one multiplexer, selected by the flag ``ck_cache``,
        in front of them), not through the logical ports: the checkpoint's decoding stays off
        the phases' enables and data. The same address, data and enables as the phases' glue
        would make of it (:meth:`_addresses`); no phase writes while the host's port is."""
        if not cache_ck:
            return
        cwr, pbase, wl, P, st = self.cwr, self.pbase, self.wl, self.P, self.st
        # the write's address registered with the request (its region's offset added to the
        # host's address there): the hit flags select nothing in front of the write address
        addr = Signal.like(cwr.addr, name="ck_c_addr")
        base = Const(0, 16)
        for name, _, _ in cache_ck:
            if name != "T":
                base = Mux(st.state.mem == MEM_IDS[name], pbase[name], base)
        m.d.sync += addr.eq(base + st.state.addr[:16])
        data = Signal.like(cwr.data, name="ck_c_data")
        en = Signal.like(cwr.en, name="ck_c_en")
        m.d.comb += data.eq(cwr.data)
        for name, hit, banks in cache_ck:
            width = len(self.wr[name][0].data)
            word = self.ck_data[:width].as_signed()
            with m.If(hit):
                if name == "b":
                    m.d.comb += [data.eq(word), en.eq(banks[0].replicate(len(en)))]
                else:
                    m.d.comb += en.eq(Cat(banks, Const(0, len(en) - len(banks))))
                    m.d.comb += [data[k * wl:(k + 1) * wl].eq(word) for k in range(min(P, len(banks)))]
        with m.If(ck_cache):
            m.d.sync += [cwr.addr.eq(addr), cwr.data.eq(data), cwr.en.eq(en)]

    def _readback(self, m):
        """The bank's word of every memory registered (a block RAM's clock-to-out without output
        register is most of a cycle at speed), then the memory's."""
        st = self.st
        rb_mem1, rb_bank1 = Signal(3, name="rb_mem1"), Signal.like(st.state.bank, name="rb_bank1")
        m.d.sync += [rb_mem1.eq(st.state.mem), rb_bank1.eq(st.state.bank)]
        # the memory's word is picked by a flag per memory (decoded a cycle ahead) in an AND-OR
        # tree, not a chain of compares; no memory of this stage: r_data holds
        words, sels = [], []
        for name in self.rd:
            word = Signal(signed(32), name=f"rb_{name}", reset_less=True)
            with m.Switch(rb_bank1):
                for bk, port in enumerate(self.rd[name]):
                    with m.Case(bk):
                        m.d.sync += word.eq(port.data)
            sel = Signal(name=f"rb_sel_{name}")
            m.d.sync += sel.eq(rb_mem1 == MEM_IDS[name])
            words.append(word)
            sels.append(sel)
        picked = 0
        for word, sel in zip(words, sels):
            picked = picked | (word & sel.replicate(32))
        with m.If(Cat(*sels).any()):
            m.d.sync += st.state.r_data.eq(picked)


class _EntryReader:
    """Entry ``idx`` of a vector kept in a memory of ``P``-entry words, read through an
    asynchronous read port (``reader[idx]``, once: it drives the port's address)."""

    def __init__(self, m, port, P: int, count: int, width: int):
        self.m, self.port, self.P, self.count, self.width = m, port, P, count, width
        self.used = False

    def __getitem__(self, idx):
        if self.used:
            raise RuntimeError("One entry reader drives one read port's address")
        self.used = True
        q, r = _divmod_const(idx, self.P, self.count)
        self.m.d.comb += self.port.addr.eq(q)
        w = self.width
        return Array(self.port.data[k * w:(k + 1) * w].as_signed() for k in range(self.P))[r]


class _WriteBack:
    """The S4 registers of the write-backs (UPDATE, TABLE, HEAD_UPDATE) and their saturation
    flags, counted a cycle later."""

    def __init__(self, P, step_w, old_w, b_step_w, b_old_w, r_addr_w):
        self.step = [Signal(signed(step_w), name=f"step4_{pp}", reset_less=True) for pp in range(P)]
        self.old = [Signal(signed(old_w), name=f"old4_{pp}", reset_less=True) for pp in range(P)]
        self.lane_valid = [Signal(name=f"lane_valid4_{pp}") for pp in range(P)]
        self.b_step = Signal(signed(b_step_w), name="b_step4", reset_less=True)
        self.b_old = Signal(signed(b_old_w), name="b_old4", reset_less=True)
        self.w_go, self.b_go, self.r_go, self.hw_go, self.hb_go, self.err_ovf = (
            Signal(name=f"{nm}4") for nm in ("w_go", "b_go", "r_go", "hw_go", "hb_go", "err_ovf"))
        self.w_addr, self.b_addr = Signal(16, name="w_addr4"), Signal(16, name="b_addr4")
        self.r_addr = Signal(r_addr_w, name="r_addr4")
        self.w_flags, self.r_flags, self.hw_flags = (Signal(P, name=nm) for nm in ("w_flags", "r_flags", "hw_flags"))
        self.b_flag, self.hb_flag, self.he_flag = (Signal(name=nm) for nm in ("b_flag", "hb_flag", "he_flag"))
