"""A time-multiplexed SigProp engine: one lane array for every layer, every vector in block RAM.

:class:`SerialEngine` is a drop-in replacement for :class:`.engine.SigPropEngine` (the same ports,
the same readback/writeback address map) built to fit a small FPGA: instead of one pipelined
:class:`.stage.LayerStage` per layer, one datapath of ``P`` lanes walks the layers one after the
other, and every weight, bias, table, cache, activation, delta and softmax vector lives in block
RAM; flip-flops hold only scalars, counters and pipeline registers. It follows
:meth:`sigprop_fpga.sim.golden.GoldenSigProp._layer` bit for bit.

Memories (``P`` lanes; ``ci = ceil(n_in / P)``, ``cn = ceil(n / P)`` per layer; every region starts
at a multiple of its size rounded to a power of two, so an address is ``base | index``)::

    W[p]   one bank per lane, weight width     W_l[j][i] at bank i % P, word Wb_l + j ci + i // P
    M      P lanes of 16 bits (the widest of   b_l (chunks of P units), R (R[k][j] at lane j % P,
           weight, bias, error)                word k cn_0 + j // P), the deltas of the current layer
                                               by chunks (d_h, d_tc, g m_m), the saturation and
                                               per-layer cycle counters (32 bits), the 64-entry
                                               exponent table
    cache  P activation lanes                  T_l[k][j] at lane j % P, word Tb_l + k cn + j // P
    act    P activation lanes (>= 17 bits)     h_l, t_l, the logits s, the exponentials e, the
                                               probabilities prob (as -(prob mod 2^15), what GRADIENT
                                               multiplies by)
    xmem   P activation lanes                  x, two halves: the next sample streams into the other
                                               (its own write port: the features never wait)

A W bank is written with M's write data (lane ``p`` for bank ``p``): the lanes' outputs or the state
port's word, one multiplexer for both memories.

The datapath (one issue per cycle): S0 addresses; S1 the memories' data, the operand multiplexers
(their selects decoded a cycle ahead and registered) and one ``*`` per lane (16-bit A, so an iCE40
SB_MAC16 holds the product register and, but in lane 0 whose product the softmax also uses, the
32-bit accumulator); S2 accumulate per lane (the start value carries the rounding half of the
result's narrowing; in FORWARD lane 0 starts a row from its bias, read with the row's first issue);
S3 an adder tree over the lanes (dot products, narrowed once: h, t; the logits registered, written
and compared for the argmax at S4), or one output unit per lane, ``sat(base - round_even(acc >> k))``:
a weight, bias or table step (base the old value, read late at S2/S3) or a delta (base 0), its
result registered and written a cycle later (S4, S5 for a bias or table word). Phases of a
training sample, per layer ``l`` (``C`` classes; ``terms`` 1 at layer 0 and for ``l2``, else 3 with
push and 2 without), named as :func:`serial_cycles` names them; each has one method of
:class:`SerialEngine` and FSM states of its name::

    forward   FORWARD_INIT, FORWARD: rows j: t_j (layer 0: f(R[c][j]), no products; else
              f(W t_in + b)), then h_j = f(W x + b) -> act (and t -> T_l[c], but in the last
              layer)                                                        n (1 + ci) / 2 n ci
    logits    LOGITS: s_k = T_l[k] . h for all k: prediction (last layer), m, max(s)    C cn
    cache     CACHE_COPY: T_L[c] <- t, then CACHE: s_c = t . h (the last layer only)  2 cn + 4
    softmax   prob = softmax(s) (:func:`sigprop_fpga.compiler.fixed.softmax_fixed`) on lane 0:
              SOFTMAX_Y: y_k from 8-bit pieces of d_k, e_k from the table; SOFTMAX_DIV: one
              restoring division; SOFTMAX_P: prob_k                              (npc + 2) C + 28
    gradient  GRADIENT, per chunk of P units: -sum_k err_k T[k] as 15-bit products plus one 2^15
              correction product per class with beta != 0 (c, and any k with prob_k >= 1/2),
              then g = (1 - prob_c) h (two products) held a cycle: d_h, d_tc = g f'(t),
              g f'(T[m]) -> M                                                     cn (C + 4 + n_x)
    table     TABLE: R[c] -= d_tc >> s, R[m] -= d_tm >> s (layer 0): lanes x 2^fa      4 cn_0
    update    UPDATE: W -= (d_h x + d_tc t_in + d_tm Tin[m]) >> s, lane-wise read-modify-write
                                                                                    n ci terms
    bias      BIAS: b -= (d_h + d_tc + d_tm) >> s, P units at a time through the lanes
                                                                                  cn per(terms)
    commit    COMMIT: the layer's saturation counts added to its counters in M           6

The waits between phases (until the pipeline has drained far enough) are states named after the
phase they end: ``FORWARD_DRAIN``, ``LOGITS_SETTLE``, ``CACHE_SETTLE``, ``GRADIENT_TO_TABLE``...;
``IDLE`` and ``FIN`` (the prediction out) are the overhead, ``next_layer`` the step from COMMIT to
FORWARD_INIT.

:func:`serial_cycles` gives each phase's cycles (waits included); ``n_x`` (0, rarely 1 or 2) is the
number of classes ``k != c`` with ``p_k >= 1/2`` at that layer, the only data-dependent cost.

Only ``Tin_l`` differs from the stages: the golden model writes ``T_(l-1)[c] <- t_(l-1)`` and
``Tin_l[c] <- t_(l-1)`` at every training sample (and neither on inference), so the two caches hold
the same values at all times; this engine stores them once and maps ``Tin_l`` reads and writes of
the state port onto ``T_(l-1)`` (a checkpoint whose ``Tin_l`` differs from ``T_(l-1)`` cannot be
represented: the later write wins).
"""

from __future__ import annotations

import math

import numpy as np
from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory

from ..compiler.fixed import EXP2_FRAC_BITS, EXP2_TABLE, LOG2E_Q16, P_FRAC, RECIP_BITS
from ..compiler.network import quantize_params
from ..compiler.network import Network, init_params
from . import BLOCK_RAM
from ..compiler.estimate import serial_cycles, serial_macs, vec_slots as _vec_slots
from ..compiler.rule import step_shifts, Q_BITS as _Q_BITS, softmax_pieces, update_terms as _terms
from ..compiler.statemap import counter_names, readback_map
from .engine import engine_members
from .fixed import mul_const, round_shift
from .memports import power_up_flag, read_in_range, read_whole
from .fixed import fit_bits, inside, round_shift_halved, saturate_or_zero, uge_const

__all__ = ["SerialEngine", "SerialLayout", "check_serial_support"]

# phase codes carried down the lane pipeline (BIAS_TABLE: one M word per chunk, a bias or R row)
_FORWARD, _LOGITS, _CACHE, _GRADIENT, _UPDATE, _BIAS_TABLE = 1, 2, 3, 4, 5, 6
_NKINDS = 5          # counter words per layer in M: weight, bias, error, table saturations, cycles


def _bits(n: int) -> int:
    return max(1, int(n).bit_length())


def _pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


#: Depth granularity of a block RAM at its deepest 16-bit-wide configuration (iCE40 SB_RAM40_4K
#: 256 x 16; the ECP5's DP16KD, 1024 x 18, is a multiple of it).
_BLOCK_DEPTH = 256


def _pow2_if_free(depth: int) -> int:
    """``depth`` rounded up to a power of two when that takes no more block RAM (the same number
    of 256-word blocks): every address of the port's width is then inside the memory, so its read
    enable needs no ``addr < depth`` comparison (:func:`.memports.read_in_range`), a carry chain
    that was the iCEBreaker's critical path (into the read enable of every M block)."""
    p = _pow2(depth)
    return p if -(-p // _BLOCK_DEPTH) == -(-depth // _BLOCK_DEPTH) else depth


def _place(regions: list) -> tuple[dict, int]:
    """Place ``(name, words)`` regions, each at a multiple of its size rounded up to a power of
    two, so that ``base + index`` is ``base | index`` (wiring, no adder)."""
    out, off = {}, 0
    for name, size in sorted(regions, key=lambda r: -_pow2(r[1])):
        al = _pow2(size)
        off = -(-off // al) * al
        out[name] = off
        off += al if size else 0
    return out, max(off, 2)


class SerialLayout:
    """Where everything lives in the :class:`SerialEngine` memories (plain integers).

    Regions start at multiples of their (power-of-two rounded) sizes, so an address is the
    region's base ORed with the index; inside a region the order is the readback map's
    (``T``: ``k cn + j // P``, ``R``: ``k cn_0 + j // P``).
    """

    def __init__(self, net: Network, P: int):
        L, C = net.depth, net.n_classes
        self.P, self.L, self.C = P, L, C
        self.ni = [net.fan_in(l) for l in range(L)]
        self.n = [net.units(l) for l in range(L)]
        self.ci = [math.ceil(v / P) for v in self.ni]
        self.cn = [math.ceil(v / P) for v in self.n]
        # W banks: layers back to back (the readback word is wbase + j ci + i // P)
        self.wbase, off = [], 0
        for l in range(L):
            self.wbase.append(off)
            off += self.n[l] * self.ci[l]
        self.wdepth = _pow2_if_free(max(off, 2))
        cnm = max(self.cn)
        # M: biases (by chunks), the table R, the deltas of one layer, the counters
        regs = [(f"b{l}", self.cn[l]) for l in range(L)]
        regs += [("R", C * self.cn[0]), ("dh", cnm), ("dtc", cnm), ("dtm", cnm), ("cnt", _NKINDS * L),
                 ("tab", len(EXP2_TABLE))]
        mb, self.mdepth = _place(regs)
        self.mdepth = _pow2_if_free(self.mdepth)
        self.bbase = [mb[f"b{l}"] for l in range(L)]
        self.rbase, self.dh, self.dtc, self.dtm, self.cbase = mb["R"], mb["dh"], mb["dtc"], mb["dtm"], mb["cnt"]
        self.tab = mb["tab"]
        # cache: T of every layer
        cb_, self.cdepth = _place([(f"T{l}", C * self.cn[l]) for l in range(L)])
        self.cdepth = _pow2_if_free(self.cdepth)
        self.tbase = [cb_[f"T{l}"] for l in range(L)]
        # xmem: x, two halves (the next sample streams into the other half); its own memory, so
        # the deserializer never waits for the datapath's act writes
        self.x_bits = max(0, (self.ci[0] - 1).bit_length())
        self.xdepth = 2 << self.x_bits
        # act: h_l and t_l, y/e (shared), s, p
        regs = [("s", C), ("e", C), ("p", C)]
        regs += [(f"h{l}", self.cn[l]) for l in range(L)] + [(f"t{l}", self.cn[l]) for l in range(L)]
        ab, self.adepth = _place(regs)
        self.adepth = _pow2_if_free(self.adepth)
        self.hbase = [ab[f"h{l}"] for l in range(L)]
        self.ttbase = [ab[f"t{l}"] for l in range(L)]
        self.sbase, self.ebase, self.pbase = ab["s"], ab["e"], ab["p"]

    def cword(self, l: int, kind: int) -> int:
        return self.cbase + _NKINDS * l + kind


def check_serial_support(net: Network) -> None:
    """Raise ``ValueError`` (one line) for what :class:`SerialEngine` does not implement."""
    spec = net.spec
    if spec.readout != "nearest_target":
        raise ValueError(f"SerialEngine supports readout nearest_target only, not {spec.readout!r}")
    if spec.precision.rounding != "nearest":
        raise ValueError(f"SerialEngine supports rounding nearest only, not {spec.precision.rounding!r}")
    p0 = net.prec(0)
    key = lambda p: (p.activation, p.weight, p.bias, p.error)    # noqa: E731
    for l in range(1, net.depth):
        if key(net.prec(l)) != key(p0):
            raise ValueError(f"SerialEngine needs the same activation, weight, bias and error formats in every "
                             f"layer; layer {l} differs from layer 0")
    if spec.precision.input != p0.activation:
        raise ValueError(f"SerialEngine needs the input format equal to the activation format, got input "
                         f"{spec.precision.input} and activation {p0.activation}")
    if p0.bias != p0.weight or spec.precision.table != p0.weight:
        raise ValueError(f"SerialEngine needs the bias and table formats equal to the weight format, got weight "
                         f"{p0.weight}, bias {p0.bias}, table {spec.precision.table}")
    if spec.learning.loss not in ("class_ce", "l2"):
        raise ValueError(f"SerialEngine supports losses class_ce and l2, not {spec.learning.loss!r}")
    if p0.activation.int_bits != 1:
        raise ValueError(f"SerialEngine supports Q1.x activations only (its lane units clamp to the format's own "
                         f"range), got {p0.activation}")
    if p0.activation.width < 2:
        raise ValueError("SerialEngine needs activations at least 2 bits wide")


class SerialEngine(wiring.Component):
    """The SigProp training engine for one network on one time-multiplexed lane array.

    A drop-in replacement for :class:`.engine.SigPropEngine`: the same members and the same
    readback/writeback map (:func:`.engine.readback_map` with ``P`` lanes in every stage), so
    :func:`.simulate.read_state`, :func:`.simulate.write_state` and the host link work unchanged.

    Parameters
    ----------
    net : Network
        The resolved network (spec plus data shape).
    lanes : int, optional
        ``P``, the number of lanes (multipliers) shared by all layers, at least 1; default 4.
    params : dict, optional
        Quantised initial parameters; default ``quantize_params(net, init_params(net))``.

    Members
    -------
    i : In(stream.Signature(StructLayout({"data": unsigned(w), "train": 1})))
        A sample is ``n_in`` beats of features (raw two's complement in the input format),
        then one beat with the label in ``data`` and ``train`` (1: learn, 0: infer only). The
        next sample is taken in while the current one is processed.
    o : Out(stream.Signature(unsigned(ceil(log2 C))))
        One prediction per sample, in sample order (for training samples, made before learning).
    rb_en, rb_addr, rb_data, wb_en, wb_data
        The state port, as :class:`.engine.SigPropEngine`'s: honour it only while ``idle``;
        ``rb_data`` is the entry at ``rb_addr`` :attr:`rb_latency` (three) cycles later; with ``wb_en`` the entry is
        written a cycle later (counters are read only); the request is registered
        before it is decoded. ``Tin`` of layer ``l`` aliases ``T`` of layer ``l - 1``.
    idle : Out(1)
        No sample in flight or waiting and no prediction waiting; registered (from the cycle
        after the last busy one).
    cycles, samples, inferences : Out(32)
        Busy cycles, trained samples, inference samples.

    Latency and throughput
    ----------------------
    One sample at a time, one layer at a time; the next sample's features stream in meanwhile.
    :func:`serial_cycles` gives the cycles between predictions, which the tests check sample by
    sample. For ``class_ce`` with push (``npc = ceil(bits(d_clamp) / 8)``, 3 for Q1.7; ``t_0 = 1``,
    ``t_l = ci_l`` after; ``per`` and ``s`` the BIAS issue pattern of ``terms_l``, :func:`_vec_slots`;
    ``[x]`` is 1 if ``x`` holds)::

        train = 2 + sum_l [ [l > 0] + n_l (t_l + ci_l) + 5 [cn_l < 5] + C cn_l
                            + (last: 2 cn_L + 4 + 2 [cn_L < 2];  else: 3)
                            + (npc + 2) C + 28                                  softmax
                            + cn_l (C + 4 + n_x,l) + (l = 0: 4 cn_0 + 5;  else: 5 [cn_l < 2])
                            + n_l ci_l terms_l + 2 + cn_l per + 7 - per + s_last + 6 ]
        inference = 2 + sum_l [ n_l ci_l + [l > 0] + 5 [l < L - 1 or cn_l < 5] ] + C cn_L + 4

    ``n_x,l`` in {0, 1, 2} is the number of classes ``k != c`` with ``p_k >= 1/2`` at layer ``l``.
    ``examples/digits.yaml`` with ``P = 4``: 3,021 cycles per training sample (3,053 at most),
    860 per inference; the multiplications alone take 10,624 / 4 = 2,656 (MAC utilization 0.88).

    Not supported (``ValueError`` at construction): ``readout: head``, ``rounding: stochastic``,
    per-layer activation, weight, bias or error formats that differ, an input format other than
    the activation format, bias or table formats other than the weight format.

    Private copies, measured on ``examples/digits.yaml`` with ``P = 4`` (``synth_ice40 -dsp``):

    * multipliers, not :class:`.mac.MacLanes`: its reset product register misses the SB_MAC16 (+102 LUT4, +191 FFs);
    * softmax, not :class:`.softmax.Softmax`: s, e, p in 1,061 FFs, 88 cycles a layer to these 77 (+22 a sample).
    """

    #: Cycles from a readback request (``rb_addr``) to its ``rb_data``.
    rb_latency = 3

    def __init__(self, net: Network, lanes=None, params: dict | None = None):
        self._MustUse__silence = True      # no "never used" warning if an argument check fails
        if not isinstance(net, Network):
            raise TypeError(f"Network must be a Network, not {net!r}")
        P = 4 if lanes is None else lanes
        if not isinstance(P, int) or isinstance(P, bool):
            raise TypeError(f"Lanes must be one integer (shared by all layers), not {lanes!r}")
        if P < 1:
            raise ValueError(f"Lanes must be at least 1, not {P}")
        check_serial_support(net)
        self.net, self.P = net, P
        self.lanes = (P,) * net.depth
        self.params = params if params is not None else quantize_params(net, init_params(net))
        self.map = readback_map(net, self.lanes, self.rb_latency)
        self.counters = counter_names(net)
        self.layout = SerialLayout(net, P)
        self.in_width, members = engine_members(net, self.map)
        super().__init__(members)
        self._MustUse__silence = False

    # ------------------------------------------------------------------------------------------
    def _images(self, wm):
        """Initial contents of the W banks, M and act."""
        net, Y, P = self.net, self.layout, self.P
        wimg = [[0] * Y.wdepth for _ in range(P)]
        for l in range(net.depth):
            W = np.asarray(self.params["layers"][l]["W"], dtype=np.int64)
            ci = Y.ci[l]
            for j in range(Y.n[l]):
                for i in range(Y.ni[l]):
                    wimg[i % P][Y.wbase[l] + j * ci + i // P] = int(W[j, i])
        mimg = [0] * Y.mdepth
        mask = (1 << wm) - 1

        def put(word, lane, v):
            mimg[word] |= (int(v) & mask) << (lane * wm)
        for l in range(net.depth):
            b = np.asarray(self.params["layers"][l]["b"], dtype=np.int64)
            for j in range(Y.n[l]):
                put(Y.bbase[l] + j // P, j % P, b[j])
        R = np.asarray(self.params["R"], dtype=np.int64)
        for k in range(Y.C):
            for j in range(Y.n[0]):
                put(Y.rbase + k * Y.cn[0] + j // P, j % P, R[k, j])
        aimg = [0] * Y.adepth
        for k, v in enumerate(EXP2_TABLE):
            mimg[Y.tab + k] = int(v)
        return wimg, mimg, aimg

    def elaborate(self, platform):
        """The memories, the lane pipeline (S0 to S4), what each phase does with its results, the
        softmax, the deserializer, then the sequencer (one FSM method per phase) and the state port.

        The order matters: where several parts drive one port (``m_ra``, ``a_we``, ...), the part
        built later wins, so the state port overrides the phases and the phases the pipeline."""
        m = Module()
        self._c = _Context()
        self._formats()
        self._memories(m)
        self._layer_constants(m)
        self._issue(m)
        self._ports(m)
        self._operands(m)
        self._products(m)
        self._accumulate(m)
        self._forward_result(m)
        self._logits_result(m)
        self._output_units(m)
        self._output_writes(m)
        self._saturation_counts(m)
        self._softmax_exp(m)
        self._softmax_prob(m)
        self._deserializer(m)
        self._sequencer(m)
        self._state_port_decode(m)
        self._state_port(m)
        return m

    # ------------------------------------------------------------------ formats, memories, constants
    def _formats(self):
        """The formats, shifts and widths of the datapath (integers, on the context)."""
        c, net, P, Y = self._c, self.net, self.P, self.layout
        c.L, c.C = L, C = net.depth, net.n_classes
        learning = net.spec.learning
        c.ce = learning.loss == "class_ce"
        c.push = c.ce and learning.push
        pr = net.prec(0)
        c.qa, c.qw, c.qe = qa, qw, qe = pr.activation, pr.weight, pr.error
        c.wa, c.fa, c.fw, c.fe = wa, fa, fw, fe = qa.width, qa.frac_bits, qw.frac_bits, qe.frac_bits
        # a weight step: u has fe + fa fraction bits; the step shift may differ per layer
        c.step_shifts = tuple(step_shifts(net, l).weight for l in range(net.depth))
        c.step_shift = kW = max(c.step_shifts)
        c.vec_scale = kB = fa                    # 2^kB scales a bias or table step to a weight step
        c.err_shift = kG = P_FRAC + fa - fe      # the error narrowing
        c.bias_align = fa                        # the bias aligned to a product (fw + fa - fb)
        pieces = softmax_pieces(net)             # the clamp is compiler.rule.exp_clamp's
        c.d_clamp, c.n_pieces, c.y_shift = pieces.clamp, pieces.pieces, pieces.y_shift
        c.lane_bits = max(1, (P - 1).bit_length())
        wl2 = wa + 1 + max(0, fe - fa)
        c.m_lane_w = wm = max(qw.width, qe.width, 0 if c.ce else wl2)     # an M lane
        # A is 16 bits for 16-bit formats: the DSP block then holds the product and the accumulator
        c.a_w = wA = max(16, qw.width, qe.width, wm)
        c.b_w = max(wa + 2, 9, kB + 2)
        c.nmax, c.cimax, c.cnmax = nmax, cimax, cnmax = max(Y.n), max(Y.ci), max(Y.cn)
        terms_max = max(_terms(net, l) for l in range(L))
        # the largest |sum| a lane accumulates, by phase (the DSP block's accumulator is 32 bits)
        hw_, ha_ = 1 << (qw.width - 1), 1 << (wa - 1)
        bound = max(hw_ * ha_ * cimax + (1 << (wm - 1 + fa)) + (1 << fw), hw_ << kB, ha_ * ha_ * cnmax,
                    (1 << (P_FRAC - 1)) * (4 * ha_) * (C + 3) + (1 << max(kG, 0)),
                    (1 << (wA - 1)) * (2 * ha_) * terms_max + (1 << max(kW, 0)),
                    (1 << (wm - 1)) * (1 << kB) * terms_max + (1 << max(kW, 0)))
        c.acc_w = wr = bound.bit_length() + 1
        # the adder tree sums dot products only (FORWARD, LOGITS, CACHE): its width is theirs, the bias added
        dotb = (1 << fw) + (1 << (wm - 1 + fa)) + P * max(hw_ * ha_ * cimax, ha_ * ha_ * cnmax)
        c.tree_w = min(wr + _bits(P), dotb.bit_length() + 1)
        c.logit_w = s_w = 2 * wa + _bits(nmax) + 2
        c.m_word_w = MW = -(-max(P * wm, 32) // wm) * wm
        c.act_word_w = AW = -(-max(P * wa, s_w, P_FRAC + 2) // wa) * wa
        c.m_word_lanes, c.act_word_lanes = MW // wm, AW // wa
        c.same_width = qe.width == qw.width     # a saturation depends on the width only

    def _memories(self, m):
        """The W banks, M, the cache and act, and their read data split into lanes."""
        c, P, Y = self._c, self.P, self.layout
        wimg, mimg, aimg = self._images(c.m_lane_w)
        c.w_read, c.w_write = [], []
        for p in range(P):
            mem = Memory(shape=signed(c.qw.width), depth=Y.wdepth, init=wimg[p], attrs=BLOCK_RAM)
            m.submodules[f"w{p}"] = mem
            c.w_read.append(mem.read_port())
            c.w_write.append(mem.write_port())
        mmem = m.submodules.mmem = Memory(shape=unsigned(c.m_word_w), depth=Y.mdepth, init=mimg, attrs=BLOCK_RAM)
        c.m_read, c.m_write = mmem.read_port(), mmem.write_port(granularity=c.m_lane_w)
        cmem = m.submodules.cache = Memory(shape=unsigned(P * c.wa), depth=Y.cdepth, init=[], attrs=BLOCK_RAM)
        c.c_read, c.c_write = cmem.read_port(), cmem.write_port(granularity=c.wa)
        amem = m.submodules.act = Memory(shape=unsigned(c.act_word_w), depth=Y.adepth, init=aimg, attrs=BLOCK_RAM)
        c.a_read, c.a_write = amem.read_port(), amem.write_port(granularity=c.wa)
        wa, wm = c.wa, c.m_lane_w
        c.W_data = [c.w_read[p].data for p in range(P)]
        c.M_data = [c.m_read.data[p * wm:(p + 1) * wm].as_signed() for p in range(c.m_word_lanes)]
        c.C_data = [c.c_read.data[p * wa:(p + 1) * wa].as_signed() for p in range(P)]
        xmem = m.submodules.xmem = Memory(shape=unsigned(P * wa), depth=Y.xdepth, init=[], attrs=BLOCK_RAM)
        c.x_read, c.x_write = xmem.read_port(), xmem.write_port(granularity=wa)
        # act's lanes, or x's (layer 0's input: x_sel1, decoded at S0)
        c.x_sel1 = Signal(name="x_sel1")
        c.A_data = []
        for p in range(P):
            a = Signal(signed(wa), name=f"a_data{p}")
            m.d.comb += a.eq(Mux(c.x_sel1, c.x_read.data[p * wa:(p + 1) * wa], c.a_read.data[p * wa:(p + 1) * wa]))
            c.A_data.append(a)

    def _per_layer(self, vals, sel=None):
        """A constant per layer, selected by the current layer (or by ``sel``)."""
        sel = self._c.layer if sel is None else sel
        if all(v == vals[0] for v in vals):
            return Const(int(vals[0]), unsigned(_bits(max(vals[0], 1))))
        return Array(Const(int(v), unsigned(_bits(max(max(vals), 1)))) for v in vals)[sel]

    def _layer_constants(self, m):
        """The sample's registers (class, train, the x half), the current layer and its constants."""
        c, net, Y, L, C = self._c, self.net, self.layout, self._c.L, self._c.C
        c.layer = Signal(range(max(2, L)), name="layer")
        lut = self._per_layer
        c.own_class = Signal(range(max(2, C)), name="own_class")          # c, the label
        c.train = Signal(name="train")
        c.m_class = Signal(range(max(2, C)), name="m_class")              # m, the hardest wrong class
        c.x_half = Signal(name="x_half")         # the x half of the current sample
        c.L_ci, c.L_cn, c.L_n = lut(Y.ci), lut(Y.cn), lut(Y.n)
        c.L_terms = lut([_terms(net, l) for l in range(L)])
        c.L_first, c.L_last = c.layer == 0, c.layer == L - 1
        c.L_wbase, c.L_bbase, c.L_tbase = lut(Y.wbase), lut(Y.bbase), lut(Y.tbase)
        c.L_hout, c.L_ttout = lut(Y.hbase), lut(Y.ttbase)
        c.L_tprev = lut([Y.tbase[l - 1] if l else 0 for l in range(L)])
        # the layer input x: h_(l-1) in act, or (layer 0) the sample's half of xmem, read at the
        # same chunk index (:meth:`_ports`) and chosen at S1 (``x_sel1``)
        c.x_in = lut([Y.hbase[l - 1] if l else 0 for l in range(L)])
        c.t_in = lut([Y.ttbase[l - 1] if l else 0 for l in range(L)])
        # rows: T_l[c] (cache, within T_l), T_(l-1)[m] (Tin_l[m]), R[c], R[m] (within R)
        c.row_c = Signal(range(C * c.cnmax + 1), name="row_c")
        c.row_m = Signal(range(C * c.cnmax + 1), name="row_m")
        m.d.comb += [c.row_c.eq(Array(mul_const(c.own_class, Y.cn[l]) for l in range(L))[c.layer]),
                     c.row_m.eq(Array(mul_const(c.m_class, Y.cn[l - 1] if l else Y.cn[0]) for l in range(L))[c.layer])]
        # a row plus a chunk index (< that row's cn): an OR when every cn is a power of two
        c.pow2_rows = all(n & (n - 1) == 0 for n in Y.cn)

    def _row_plus(self, row, i):
        """``row + i`` for a chunk index ``i`` below the row's ``cn`` (an OR if every ``cn`` is a power of two)."""
        if self._c.pow2_rows:
            return row | Value.cast(i)[:max(1, (max(self.layout.cn) - 1).bit_length())]
        return row + i

    # ------------------------------------------------------------------ the lane pipeline
    def _issue(self, m):
        """S0, the issue (combinational, from the FSM), and its tags registered down to S4."""
        c, P, C = self._c, self.P, self._c.C
        c.issue = _Tags(
            valid=Signal(name="i_valid"), phase=Signal(3, name="i_phase"), sub=Signal(2, name="i_sub"),
            first=Signal(name="i_first"), last=Signal(name="i_last"),
            index=Signal(range(max(2, C, c.cnmax) + 1), name="i_index"),
            lane=Signal(range(max(2, P)), name="i_lane"),
            is_c=Signal(name="i_is_c"), is_m=Signal(name="i_is_m"),
            term=Signal(2, name="i_term"), neg=Signal(name="i_neg"),
            # GRADIENT: the kind of A, and B's shift, zero and source (the cache, else act)
            a_kind=Signal(3, name="i_a_kind"), b_shift=Signal(2, name="i_b_shift"),
            b_zero=Signal(name="i_b_zero"), b_cache=Signal(name="i_b_cache"))
        # S1 operands and product, S2 accumulate, S3 results (S4 for BIAS and TABLE), S4 writes of FORWARD
        c.s1 = self._delay(m, c.issue, "s1", ("valid", "phase", "sub", "first", "last", "index", "lane", "is_c",
                                             "is_m", "term", "neg", "a_kind", "b_shift"))
        c.s2 = self._delay(m, c.s1, "s2", ("valid", "phase", "sub", "first", "last", "index", "lane"))
        c.s3 = self._delay(m, c.s2, "s3", ("valid", "phase", "sub", "last", "index", "lane"))
        c.s4 = self._delay(m, c.s3, "s4", ("valid", "phase", "sub", "last", "index", "lane"))

    @staticmethod
    def _delay(m, tags, stage, names):
        """The ``names`` of ``tags`` registered once, as the tags of ``stage``."""
        out = {}
        for name in names:
            s = getattr(tags, name)
            r = Signal.like(s, name=f"{stage}_{name}")
            m.d.sync += r.eq(s)
            out[name] = r
        return _Tags(**out)

    def _ports(self, m):
        """The memories' read addresses and write enables, lanes and data, each driven from one place."""
        c, P = self._c, self.P
        c.w_ra, c.w_re = Signal.like(c.w_read[0].addr, name="w_ra"), Signal(name="w_re")
        c.c_ra, c.c_re = Signal.like(c.c_read.addr, name="c_ra"), Signal(name="c_re")
        c.a_ra, c.a_re = Signal.like(c.a_read.addr, name="a_ra"), Signal(name="a_re")
        c.m_ra, c.m_re = Signal.like(c.m_read.addr, name="m_ra"), Signal(name="m_re")
        # every read register holds a word from the first edge on: every port reads in the first
        # cycle, at the address the idle engine presents after a reset (0: no phase and no request
        # drives one), so no power-up multiplexer sits on the address paths
        first = power_up_flag(m)
        for p in range(P):
            m.d.comb += read_in_range(c.w_read[p], c.w_ra, c.w_re | first)
        m.d.comb += [*read_in_range(c.c_read, c.c_ra, c.c_re | first), *read_in_range(c.a_read, c.a_ra, c.a_re | first),
                     *read_in_range(c.m_read, c.m_ra, c.m_re | first)]
        # xmem: the chunk index of act's address, in the current sample's half; read every cycle
        # (nothing waits on a held x word)
        m.d.comb += read_whole(c.x_read, Cat(c.a_ra[:self.layout.x_bits], c.x_half))
        # write ports (the deserializer takes the act port in cycles the datapath leaves free)
        c.a_we = Signal(name="a_we")
        c.a_addr = Signal.like(c.a_write.addr, name="a_addr")
        c.a_lanes = Signal(c.act_word_lanes, name="a_lanes")
        c.a_data = Signal(c.act_word_w, name="a_data")
        c.m_we = Signal(name="m_we")
        c.m_addr = Signal.like(c.m_write.addr, name="m_addr")
        c.m_lanes = Signal(c.m_word_lanes, name="m_lanes")
        c.m_data = Signal(c.m_word_w, name="m_data")
        c.c_we = Signal(name="c_we")
        c.c_addr = Signal.like(c.c_write.addr, name="c_addr")
        c.c_lanes = Signal(P, name="c_lanes")
        c.c_data = Signal(P * c.wa, name="c_data")
        m.d.comb += [c.m_write.addr.eq(c.m_addr), c.m_write.data.eq(c.m_data),
                     c.m_write.en.eq(Mux(c.m_we, c.m_lanes, 0)),
                     c.c_write.addr.eq(c.c_addr), c.c_write.data.eq(c.c_data),
                     c.c_write.en.eq(Mux(c.c_we, c.c_lanes, 0))]
        # the written values, one narrow select each: act a word (s, y, e, p) or one lane (h, t, x);
        # M the lanes' outputs, a 32-bit counter, or one lane (an l2 delta, the state port); the cache
        # a copied word or one lane
        c.a_word = Signal(max(c.logit_w, P_FRAC + 1), name="a_word")
        c.a_isword = Signal(name="a_isword")
        c.a_lane = Signal(c.wa, name="a_lane")
        c.m_isout = Signal(name="m_isout")
        c.m_iscnt = Signal(name="m_iscnt")
        c.m_cnt = Signal(32, name="m_cnt")
        c.m_lane = Signal(c.m_lane_w, name="m_lane")
        c.c_iscopy, c.c_lane = Signal(name="c_iscopy"), Signal(c.wa, name="c_lane")

    def _operands(self, m):
        """S1: the lanes' A sources and the broadcast operand (their selects decoded at S0 and
        registered, so no control logic sits between the block RAMs' data and the lanes), and B's
        controls."""
        c, P, C = self._c, self.P, self._c.C
        i, s1, s2, s3 = c.issue, c.s1, c.s2, c.s3
        # GRADIENT works on the 15 low bits of p (exact in a 16-bit operand): -err_k = -(p_k mod 2^15)
        # - 2^15 beta_k with beta_k = (p_k >> 15) - 2 y_k; the classes with beta != 0 (c, and at most
        # two others with p >= 1/2) get one more product, 2^14 (2 |beta_c|) T or -2^15 beta T
        c.neg_err_c = Signal(signed(16), name="neg_err_c")     # -(p_c mod 2^15)
        c.beta_c = Signal(2, name="beta_c")                     # |beta_c| = 2 - (p_c >> 15)
        c.corr_class = [Signal(range(max(2, C)), name=f"corr_class{n}") for n in range(2)]
        c.corr_beta = [Signal(name=f"corr_beta{n}") for n in range(2)]     # beta - 1 of the other classes
        c.n_corr = Signal(2, name="n_corr")
        # the state port's request, registered (decoded) a cycle after the host presents it
        c.rb_active = Signal(name="rb_active")
        m.d.sync += c.rb_active.eq(0)            # (IDLE sets it, :meth:`_idle`)
        c.rb_kind = Signal(3, name="rb_kind")    # 0 W, 1 M lane, 2 cache, 3 counter register, 4 M counter
        c.rb_we, c.rb_wdata = Signal(name="rb_we"), Signal.like(self.wb_data, name="rb_wdata")
        c.rb_lane_s1 = Signal(range(max(4, c.m_word_lanes)), name="rb_lane_s1")
        # the sources (the multipliers' A at S1, the state port, the output unit's base at S3/S4):
        # 0 W, 1 cache, 2 M, 3 zero (GRADIENT's base)
        src_sel, src_next = Signal(2, name="src_sel"), Signal(2, name="src_next")
        with m.If(c.rb_active):
            m.d.comb += src_next.eq(Mux(c.rb_kind == 2, 1, Mux(c.rb_kind == 0, 0, 2)))
        with m.Elif(s2.valid & (s2.phase == _UPDATE)):
            m.d.comb += src_next.eq(0)
        with m.Elif(s2.valid & (s2.phase == _GRADIENT)):
            m.d.comb += src_next.eq(3)
        with m.Elif((i.valid & (i.phase == _BIAS_TABLE)) | (s3.valid & (s3.phase == _BIAS_TABLE))):
            m.d.comb += src_next.eq(2)
        with m.Elif(i.valid & ((i.phase == _LOGITS) | (i.phase == _CACHE))):
            m.d.comb += src_next.eq(1)
        m.d.sync += src_sel.eq(src_next)
        # the output unit's base, W (held, :meth:`_accumulate`), M or 0 (never the cache): its own
        # select, a LUT per bit
        c.base_w, c.base_m = Signal(name="base_w"), Signal(name="base_m")
        m.d.sync += [c.base_w.eq(src_next == 0), c.base_m.eq(src_next == 2)]
        c.src = []
        for p in range(P):
            s = Signal(signed(c.a_w), name=f"src{p}")
            with m.Switch(src_sel):
                with m.Case(0):
                    m.d.comb += s.eq(c.W_data[p])
                with m.Case(1):
                    m.d.comb += s.eq(c.C_data[p])
                with m.Case(2):
                    m.d.comb += s.eq(c.M_data[p])
            c.src.append(s)
        # one lane of an M word at S1: a row's bias (FORWARD), a row's delta (UPDATE)
        c.m_lane_s1 = Signal(signed(c.m_lane_w), name="m_lane_s1")
        m.d.comb += c.m_lane_s1.eq(Array(c.M_data[:P])[s1.lane] if P > 1 else c.M_data[0])
        # one lane of the sources (the state port)
        c.rb_src = Signal(signed(c.a_w), name="rb_src")
        m.d.comb += c.rb_src.eq(Array(c.src)[c.rb_lane_s1[:c.lane_bits]] if P > 1 else c.src[0])
        # the broadcast operand: UPDATE's deltas (their M word read with every issue, so no registers
        # hold them; d_tm = -g m_m is g m_m times -Tin[m], the negation on B), GRADIENT's -errors
        c.scalar = Signal(signed(c.a_w), name="scalar")
        with m.If(s1.phase == _GRADIENT):
            with m.Switch(s1.a_kind):
                with m.Case(0):
                    m.d.comb += c.scalar.eq(c.a_read.data[:16].as_signed())     # -(p_k mod 2^15), as stored
                with m.Case(1):
                    m.d.comb += c.scalar.eq(1 << (P_FRAC - 2))
                with m.Case(2):
                    m.d.comb += c.scalar.eq(-(1 << (P_FRAC - 1)))
                with m.Case(3):
                    m.d.comb += c.scalar.eq(c.neg_err_c)
        with m.Else():
            m.d.comb += c.scalar.eq(c.m_lane_s1)
        # B's controls, decoded at S0 and registered: the cache (else act), zero, the BIAS/TABLE constant
        c.b_cache1, c.b_zero1, c.b_const1 = Signal(name="b_cache1"), Signal(name="b_zero1"), Signal(name="b_const1")
        m.d.sync += [c.b_cache1.eq(((i.phase == _GRADIENT) & i.b_cache) | ((i.phase == _UPDATE) & (i.term == 2))),
                     c.b_zero1.eq(((i.phase == _FORWARD) & (i.sub == 2)) | ((i.phase == _GRADIENT) & i.b_zero)),
                     c.b_const1.eq(i.phase == _BIAS_TABLE)]
        c.b_neg1 = Signal(name="b_neg1")         # the cache negated (UPDATE's d_tm term)
        m.d.sync += c.b_neg1.eq((i.phase == _UPDATE) & (i.term == 2))
        m.d.sync += c.x_sel1.eq(c.L_first & (((i.phase == _FORWARD) & (i.sub == 0)) | ((i.phase == _UPDATE) & (i.term == 0))))
        c.b_const = Signal(signed(c.b_w), name="b_const")      # BIAS/TABLE's constant, +-2^kB (0 otherwise)
        kB = c.vec_scale
        m.d.comb += c.b_const.eq(Mux(c.b_const1 & ~c.b_zero1, Mux(s1.neg, -(1 << kB), 1 << kB), 0))

    def _products(self, m):
        """S1: one multiplier per lane, the product registered (lane 0's also the softmax's), and
        GRADIENT's masks f'(t), f'(T[m]), f'(h)."""
        c, P = self._c, self.P
        s1 = c.s1
        c.sm_valid = Signal(name="sm_valid")
        c.sm_a, c.sm_b = Signal(unsigned(P_FRAC), name="sm_a"), Signal(unsigned(8), name="sm_b")
        broadcast = (s1.phase == _GRADIENT) | (s1.phase == _UPDATE)
        c.prod = []
        for p in range(P):
            ma, mb = Signal(signed(c.a_w), name=f"ma{p}"), Signal(signed(c.b_w), name=f"mb{p}")
            m.d.comb += ma.eq(Mux(broadcast, c.scalar, c.src[p]))
            b_src = Signal(signed(c.b_w), name=f"b_src{p}")
            m.d.comb += b_src.eq(Mux(c.b_zero1 | c.b_const1, 0,
                                     Mux(c.b_cache1, Mux(c.b_neg1, -c.C_data[p], c.C_data[p]), c.A_data[p])))
            b_shifted = Signal(signed(c.b_w), name=f"b_shifted{p}")
            m.d.comb += b_shifted.eq(Mux(s1.b_shift[1], b_src << 2, Mux(s1.b_shift[0], b_src << 1, b_src)))
            m.d.comb += mb.eq(b_shifted | c.b_const)
            if p == 0:
                with m.If(c.sm_valid):
                    m.d.comb += [ma.eq(c.sm_a), mb.eq(c.sm_b)]
            product = Signal(signed(c.a_w + c.b_w), name=f"prod{p}", reset_less=True)
            m.d.sync += product.eq(ma * mb)
            c.prod.append(product)
        # GRADIENT's masks: f'(t) at k == c, f'(T[m]) at k == m (sum steps), f'(h) at the first g step
        names = ("mask_t_next", "mask_tm_next", "mask_t", "mask_tm", "mask_h")
        c.mask_t_next, c.mask_tm_next, c.mask_t, c.mask_tm, c.mask_h = (Signal(P, name=n) for n in names)
        qa = c.qa
        with m.If(s1.valid & (s1.phase == _GRADIENT)):
            with m.If((s1.sub == 0) & s1.is_c):
                m.d.sync += c.mask_t_next.eq(Cat(*(inside(c.C_data[p], qa) for p in range(P))))
            with m.If((s1.sub == 0) & s1.is_m):
                m.d.sync += c.mask_tm_next.eq(Cat(*(inside(c.C_data[p], qa) for p in range(P))))
            with m.If(s1.a_kind == 3):
                m.d.sync += [c.mask_h.eq(Cat(*(inside(c.A_data[p], qa) for p in range(P)))),
                             c.mask_t.eq(c.mask_t_next), c.mask_tm.eq(c.mask_tm_next)]

    def _accumulate(self, m):
        """S2: accumulate per lane (the start value carries the rounding half), the adder tree, and
        the late reads: the W word of UPDATE (at S1, held at S2), the M word of BIAS and TABLE (at S3)."""
        c, P, Y = self._c, self.P, self.layout
        s1, s2 = c.s1, c.s2
        kG, fw = c.err_shift, c.fw
        half_w = self._per_layer([(1 << (k - 1)) if k > 0 else 0 for k in c.step_shifts])
        half_g = (1 << (kG - 1)) if kG > 0 else 0
        c.acc = [Signal(signed(c.acc_w), name=f"acc{p}", reset_less=True) for p in range(P)]
        start = Signal(signed(c.acc_w), name="start")
        m.d.comb += start.eq(Mux(s2.phase == _GRADIENT, half_g,
                                 Mux((s2.phase == _UPDATE) | (s2.phase == _BIAS_TABLE), half_w, 0)))
        # FORWARD: lane 0 starts a row from its bias (read with the row's first issue, held from S1),
        # lane 1 (or 0 too, with one lane) from the rounding half (fw + fa fraction bits narrowed to fa)
        half_f = 1 << (fw - 1) if fw > 0 else 0
        bias = Signal(signed(c.m_lane_w), name="bias")
        with m.If(s1.valid & s1.first & (s1.phase == _FORWARD)):
            m.d.sync += bias.eq(c.m_lane_s1)
        starts = [Signal(signed(c.acc_w), name=f"start{p}") for p in range(min(P, 2))]
        m.d.comb += starts[0].eq(Mux(s2.phase == _FORWARD, (bias << c.bias_align) + (half_f if P == 1 else 0), start))
        if P > 1:
            m.d.comb += starts[1].eq(Mux(s2.phase == _FORWARD, half_f, start))
        with m.If(s2.valid):
            for p in range(P):
                m.d.sync += c.acc[p].eq(Mux(s2.first, starts[p] if p < 2 else start, c.acc[p]) + c.prod[p])
        c.tree = Signal(signed(c.tree_w), name="tree")
        m.d.comb += c.tree.eq(sum(c.acc))
        c.w_ptr = Signal(range(Y.wdepth + 1), name="w_ptr")     # UPDATE: the W word read at S1, written at S4
        c.w_addr3 = Signal.like(c.w_ptr, name="w_addr3")
        c.vec_addr4 = Signal.like(c.m_ra, name="vec_addr4")
        c.upd3, c.vec4 = Signal(name="upd3"), Signal(name="vec4")
        m.d.sync += [c.upd3.eq(0), c.vec4.eq(0)]
        late_m = Signal(name="late_m")
        late_m_addr = Signal.like(c.m_ra, name="late_m_addr")
        # UPDATE reads the row's W word at S1 and holds its lanes in flip-flops at S2, so the output
        # unit's base at S3 comes from registers, not through the W banks' block multiplexers
        # (a W bank is several 256-word block RAMs deep)
        late_w = Signal(name="late_w")
        m.d.comb += late_w.eq(s1.valid & s1.last & (s1.phase == _UPDATE))
        w_addr2, upd2 = Signal.like(c.w_ptr, name="w_addr2"), Signal(name="upd2")
        c.upd2 = upd2
        m.d.sync += upd2.eq(0)
        with m.If(late_w):
            m.d.sync += [w_addr2.eq(c.w_ptr), c.w_ptr.eq(c.w_ptr + 1), upd2.eq(1)]
        with m.If(upd2):
            m.d.sync += [c.w_addr3.eq(w_addr2), c.upd3.eq(1)]
        c.w_base = [Signal(signed(c.qw.width), name=f"w_base{p}") for p in range(P)]
        m.d.sync += [c.w_base[p].eq(c.W_data[p]) for p in range(P)]
        # BIAS and TABLE: the target is read at S3 (the chunk's sums stay in acc a cycle longer), its
        # address decoded at S2 and registered
        late_m3, late_m_addr3 = Signal(name="late_m3"), Signal.like(c.m_ra, name="late_m_addr3")
        c.late_m3 = late_m3
        m.d.sync += [late_m3.eq(s2.valid & s2.last & (s2.phase == _BIAS_TABLE)),
                     late_m_addr3.eq(Mux(s2.sub == 0, c.L_bbase | s2.index,
                                         Y.rbase | self._row_plus(Mux(s2.sub == 1, c.row_c, c.row_m), s2.index)))]
        with m.If(late_m3):
            m.d.comb += [late_m.eq(1), late_m_addr.eq(late_m_addr3)]
            m.d.sync += [c.vec_addr4.eq(late_m_addr3), c.vec4.eq(1)]
        with m.If(late_w):
            m.d.comb += [c.w_ra.eq(c.w_ptr), c.w_re.eq(1)]
        with m.If(late_m):
            m.d.comb += [c.m_ra.eq(late_m_addr), c.m_re.eq(1)]

    # ------------------------------------------------------------------ S3 and S4: results
    def _forward_result(self, m):
        """FORWARD at S3/S4: h or t = f(sum + b) (the bias and the rounding half are the lanes'
        starts) -> act, t -> T_l[c] but in the last layer; ``l2``: the delta h - t -> M."""
        c, Y, ce = self._c, self.layout, self._c.ce
        s3, s4 = c.s3, c.s4
        c.act4 = Signal(signed(c.wa), name="act4")      # h_j or t_j, written at S4
        c.t_held = Signal(signed(c.wa), name="t_held")
        with m.If(s3.valid & s3.last & (s3.phase == _FORWARD)):
            m.d.sync += c.act4.eq(saturate_or_zero(round_shift_halved(c.tree, c.fw), c.qa, Const(0, 1))[0])
        with m.If(s4.valid & s4.last & (s4.phase == _FORWARD)):
            m.d.comb += [c.a_we.eq(1), c.a_addr.eq(Mux(s4.sub == 0, c.L_hout, c.L_ttout) | s4.index),
                         c.a_lanes.eq(1 << s4.lane), c.a_lane.eq(c.act4)]
            with m.If(s4.sub != 0):
                m.d.sync += c.t_held.eq(c.act4)
                with m.If(~c.L_last):
                    m.d.comb += [c.c_we.eq(1), c.c_addr.eq(c.L_tbase | self._row_plus(c.row_c, s4.index)),
                                 c.c_lanes.eq(1 << s4.lane), c.c_lane.eq(c.act4)]
            if not ce:
                with m.If((s4.sub == 0) & c.train):
                    fa, fe = c.fa, c.fe
                    diff = c.act4 - c.t_held
                    d_l2 = (diff << (fe - fa)) if fe >= fa else round_shift(diff, fa - fe, "nearest")
                    m.d.comb += [c.m_we.eq(1), c.m_addr.eq(Y.dh | s4.index), c.m_lanes.eq(1 << s4.lane),
                                 c.m_lane.eq(Mux(inside(c.act4, c.qa), d_l2, 0))]

    def _logits_result(self, m):
        """LOGITS and CACHE at S4: the logit s_k registered, compared (the prediction, m and
        max(s) for the softmax) and written to act."""
        c, Y, C = self._c, self.layout, self._c.C
        s4 = c.s4
        c.s_max = Signal(signed(c.logit_w), name="s_max")
        c.s_max_wrong = Signal(signed(c.logit_w), name="s_max_wrong")      # max over k != c: s_m
        c.prediction = Signal(range(max(2, C)), name="prediction")
        c.have_m = Signal(name="have_m")
        logit = Signal(signed(c.logit_w), name="logit", reset_less=True)
        m.d.sync += logit.eq(c.tree)
        all_lanes = (1 << c.act_word_lanes) - 1
        with m.If(s4.valid & s4.last & (s4.phase == _LOGITS)):
            with m.If((s4.index == 0) | (logit > c.s_max)):
                m.d.sync += [c.s_max.eq(logit), c.prediction.eq(s4.index)]
            with m.If((s4.index != c.own_class) & (~c.have_m | (logit > c.s_max_wrong))):
                m.d.sync += [c.s_max_wrong.eq(logit), c.m_class.eq(s4.index), c.have_m.eq(1)]
            if c.ce:
                with m.If(c.train):
                    m.d.comb += [c.a_we.eq(1), c.a_addr.eq(Y.sbase | s4.index), c.a_lanes.eq(all_lanes),
                                 c.a_isword.eq(1), c.a_word.eq(logit)]
        with m.If(s4.valid & s4.last & (s4.phase == _CACHE)):       # s_c = t . h, the last layer
            m.d.comb += [c.a_we.eq(1), c.a_addr.eq(Y.sbase | c.own_class), c.a_lanes.eq(all_lanes),
                         c.a_isword.eq(1), c.a_word.eq(logit)]
            m.d.sync += c.s_max.eq(Mux(logit > c.s_max_wrong, logit, c.s_max_wrong))

    def _output_units(self, m):
        """One output unit per lane at S3: ``sat(base - round(acc >> k))``, a weight, bias or table
        step (base the old value, ``k`` the step shift) or a delta (base 0, the error shift;
        GRADIENT accumulated minus the sum), masked by f'; registered, written a cycle later."""
        c, P = self._c, self.P
        s3 = c.s3
        kG = c.err_shift
        is_grad = Signal(name="is_grad")          # s3.phase == _GRADIENT, decoded at S2
        m.d.sync += is_grad.eq(c.s2.phase == _GRADIENT)
        mask = Signal(P, name="mask")
        m.d.comb += mask.eq(Mux(s3.sub == 0, c.mask_h, Mux(s3.sub == 1, c.mask_t, c.mask_tm)))
        c.outs, c.overflows = [], []
        for p in range(P):
            # round(acc >> k) is round_shift_halved: the floor, its low bit cleared on a tie (the
            # k low bits zero); the shift is chosen by phase (and layer) for the floor and the tie.
            # Both differences are made, base - floor and base - (floor with its low bit cleared),
            # and the tie chooses: the tie's zero detect runs beside the carry chains, not in front
            # of them (a carry-select: +1 LUT level after the chains, -3 before them; ~37 LCs a
            # lane; the iCEBreaker's critical path without it, acc -> out, 35.7 ns)
            def floor_tie(k, acc=c.acc[p]):
                if k <= 0:
                    return (acc << (-k)).as_signed(), Const(0, 1)
                return acc >> k, acc.as_unsigned()[:k] == 0
            shifts = sorted(set(c.step_shifts))
            if len(shifts) == 1:        # one step shift: the layer does not enter the rounding
                q_step, tie_step = floor_tie(shifts[0])
            else:
                q_step = Array(floor_tie(k)[0] for k in c.step_shifts)[c.layer]
                tie_step = Array(floor_tie(k)[1] for k in c.step_shifts)[c.layer]
            if shifts == [kG]:
                q, tie = q_step, tie_step
            else:
                q = Mux(is_grad, floor_tie(kG)[0], q_step)
                tie = Mux(is_grad, floor_tie(kG)[1], tie_step)
            q_even = Cat(Const(0, 1), q[1:]).as_signed()
            # the base: the old weight (UPDATE, read at S2), the old bias or table word (BIAS, TABLE,
            # read at S3), or 0 (GRADIENT)
            base = Signal(signed(c.a_w), name=f"out_base{p}")
            m.d.comb += base.eq(Mux(c.base_m, c.M_data[p], Mux(c.base_w, c.w_base[p], 0)))
            dw = max(c.a_w, len(q)) + 1
            diff_floor, diff_even = Signal(signed(dw), name=f"out_diff{p}"), Signal(signed(dw), name=f"out_diff_even{p}")
            m.d.comb += [diff_floor.eq(base - q), diff_even.eq(base - q_even)]
            diff = Mux(tie, diff_even, diff_floor)
            zero = is_grad & ~mask[p]
            if c.same_width:
                value, overflow = saturate_or_zero(diff, c.qw, zero)
            else:
                v_w, o_w = saturate_or_zero(diff, c.qw, zero)
                v_e, o_e = saturate_or_zero(diff, c.qe, zero)
                value, overflow = Mux(is_grad, v_e, v_w), Mux(is_grad, o_e, o_w)
            out = Signal(signed(c.m_lane_w), name=f"out{p}", reset_less=True)     # written a cycle later
            m.d.sync += out.eq(value)
            c.outs.append(out)
            c.overflows.append(overflow)

    def _output_writes(self, m):
        """The output units' words written: deltas (GRADIENT) and BIAS/TABLE words to M, weights
        (UPDATE) to the W banks; their saturation flags registered for the counters."""
        c, P, Y = self._c, self.P, self.layout
        s3, s4 = c.s3, c.s4
        c.flags, c.flag_kind = Signal(P, name="flags"), Signal(2, name="flag_kind")   # counted a cycle later
        c.flags_pending = Signal(name="flags_pending")     # flags were registered (whatever their value)
        m.d.sync += [c.flags.eq(0), c.flags_pending.eq(0)]
        grad3 = s3.valid & s3.last & (s3.phase == _GRADIENT)
        # (a BIAS/TABLE target's address stays in vec_addr4 until the next chunk's target is read)
        c.grad4, c.upd4, c.vec5 = Signal(name="grad4"), Signal(name="upd4"), Signal(name="vec5")
        w_addr4 = Signal.like(c.w_addr3, name="w_addr4")
        m.d.sync += [c.grad4.eq(grad3), c.upd4.eq(c.upd3), c.vec5.eq(c.vec4), w_addr4.eq(c.w_addr3)]
        with m.If(c.grad4):
            m.d.comb += [c.m_we.eq(1), c.m_addr.eq(Mux(s4.sub == 0, Y.dh, Mux(s4.sub == 1, Y.dtc, Y.dtm)) | s4.index),
                         c.m_lanes.eq((1 << P) - 1), c.m_isout.eq(1)]
        with m.If(grad3):
            with m.If(s3.sub != 2):
                m.d.sync += [c.flags.eq(Cat(*c.overflows)), c.flag_kind.eq(2), c.flags_pending.eq(1)]
        c.w_we, c.w_waddr = Signal(name="w_we"), Signal.like(c.w_addr3, name="w_waddr")
        c.w_wlane = Signal(P, name="w_wlane")
        m.d.comb += [c.w_we.eq(c.upd4), c.w_waddr.eq(w_addr4), c.w_wlane.eq((1 << P) - 1)]
        for p in range(P):     # bank p takes lane p's output (UPDATE), else the state port's word
            m.d.comb += [c.w_write[p].addr.eq(c.w_waddr),
                         c.w_write[p].data.eq(Mux(c.upd4, c.outs[p], c.rb_wdata[:c.qw.width])),
                         c.w_write[p].en.eq(c.w_we & c.w_wlane[p])]
        with m.If(c.upd4):
            m.d.comb += c.m_isout.eq(1)
        with m.If(c.upd3):
            m.d.sync += [c.flags.eq(Cat(*c.overflows)), c.flag_kind.eq(0), c.flags_pending.eq(1)]
        with m.If(c.vec5):
            m.d.comb += [c.m_we.eq(1), c.m_addr.eq(c.vec_addr4), c.m_lanes.eq((1 << P) - 1), c.m_isout.eq(1)]
        with m.If(c.vec4):
            m.d.sync += [c.flags.eq(Cat(*c.overflows)), c.flag_kind.eq(Mux(s4.sub == 0, 1, 3)), c.flags_pending.eq(1)]

    def _saturation_counts(self, m):
        """The saturations of the current layer, pending until COMMIT adds them to its counters."""
        c, P, Y, L = self._c, self.P, self.layout, self._c.L
        c.pending_weight = Signal(_bits(max(Y.n[l] * Y.ni[l] for l in range(L))) + 1, name="pending_weight")
        c.pending_bias = Signal(_bits(c.nmax) + 1, name="pending_bias")
        c.pending_error = Signal(_bits(2 * c.nmax) + 1, name="pending_error")
        c.pending_table = Signal(_bits(2 * Y.n[0]) + 1, name="pending_table")
        count = Signal(range(P + 1), name="flag_count")
        m.d.comb += count.eq(sum(c.flags[p] for p in range(P)))
        with m.Switch(c.flag_kind):
            for kind, pending in enumerate((c.pending_weight, c.pending_bias, c.pending_error, c.pending_table)):
                with m.Case(kind):
                    m.d.sync += pending.eq(pending + count)

    # ------------------------------------------------------------------ the softmax datapath (lane 0)
    def _softmax_exp(self, m):
        """SOFTMAX_Y: y_k = floor((max(s) - s_k) log2(e) 2^-(f + 10)) from 8-bit pieces of the clamped
        d_k on lane 0, then e_k = table[y_k mod 64] >> (y_k / 64) (0 from 17) -> act, summed."""
        c, Y = self._c, self.layout
        npc, ysh, s_w = c.n_pieces, c.y_shift, c.logit_w
        all_lanes = (1 << c.act_word_lanes) - 1
        c.y_issue, c.p_issue = Signal(name="y_issue"), Signal(name="p_issue")
        c.y_pipe = Signal(npc + 4, name="y_pipe")
        c.p_pipe, c.e_one_pipe = Signal(4, name="p_pipe"), Signal(3, name="e_one_pipe")
        c.e_one_in = Signal(name="e_one_in")     # e = 1.0: p = r
        m.d.sync += [c.y_pipe.eq(Cat(c.y_issue, c.y_pipe[:-1])), c.p_pipe.eq(Cat(c.p_issue, c.p_pipe[:-1])),
                     c.e_one_pipe.eq(Cat(c.e_one_in, c.e_one_pipe[:-1]))]
        product_v, product_first = Signal(name="sm_prod_v"), Signal(name="sm_prod_first")
        product_init = Signal(name="sm_prod_init")
        c.sm_first, c.sm_p_mode = Signal(name="sm_first"), Signal(name="sm_p_mode")
        m.d.sync += [product_v.eq(c.sm_valid), product_first.eq(c.sm_first), product_init.eq(c.sm_first & c.sm_p_mode)]
        # the products' sum, also the divider's remainder
        c.sm_acc = Signal(max(27, _bits(c.C << (P_FRAC + 1)) + 2), name="sm_acc")
        c.e_total = Signal(_bits(c.C << P_FRAC) + 1, name="e_total")
        c.recip = Signal(_Q_BITS, name="recip")          # r = floor(2^32 / total)
        c.div_bit = Signal(range(_Q_BITS + 1), name="div_bit")
        c.k_read, c.k_write = Signal(range(c.C + 1), name="k_read"), Signal(range(c.C + 1), name="k_write")
        e_shift = Signal(5, name="e_shift")
        c.e_read = c.a_read.data[:P_FRAC + 1]
        with m.If(product_v):
            m.d.sync += c.sm_acc.eq(Mux(product_first, Mux(product_init & c.recip[0], c.e_read, 0), c.sm_acc >> 8)
                                    + (c.prod[0].as_unsigned()[:26] << 1))
        d = Signal(s_w + 1, name="d")
        m.d.comb += d.eq(c.s_max - c.a_read.data[:s_w].as_signed())
        d_clamped = Signal(8 * npc, name="d_clamped")
        # (max(s) - s_k, clamped) registered as s_k arrives: the pieces start a cycle later, so no
        # subtraction sits between act's data and lane 0's multiplier
        d_held = Signal(8 * npc, name="d_held")
        with m.If(c.y_pipe[0]):
            m.d.sync += d_held.eq(d_clamped)

        def y_of(dv):                            # the pieces' arithmetic: (sm_acc, y) for a d
            acc = 0
            for n in range(npc):
                acc = (0 if n == 0 else acc >> 8) + ((LOG2E_Q16 // 4) * ((dv >> 8 * n) & 255) << 1)
            return acc, acc >> ysh
        d_top = (1 << s_w) - 1                   # d < 2^s_w: both logits are s_w-bit
        # no clamp needed when every d fits the pieces, y stays in range, and y (monotonic in d)
        # already reaches e = 0 at the clamp
        if (s_w <= 8 * npc and y_of(d_top)[0] < (1 << len(c.sm_acc)) and y_of(d_top)[1] < (1 << 16)
                and y_of(c.d_clamp)[1] >> EXP2_FRAC_BITS >= P_FRAC + 1):
            m.d.comb += d_clamped.eq(d)
        else:
            m.d.comb += d_clamped.eq(Mux(d >= c.d_clamp, c.d_clamp, d))
        for n in range(npc):
            with m.If(c.y_pipe[n + 1]):
                m.d.comb += [c.sm_valid.eq(1), c.sm_first.eq(n == 0), c.sm_a.eq(LOG2E_Q16 // 4),
                             c.sm_b.eq(d_held[8 * n:8 * n + 8])]
        # the table is in M, read while the next logits come from act
        y = Signal(16, name="y")
        m.d.comb += y.eq(c.sm_acc >> ysh)
        with m.If(c.y_pipe[npc + 2]):
            m.d.comb += [c.m_ra.eq(Y.tab | y[:EXP2_FRAC_BITS]), c.m_re.eq(1)]
            m.d.sync += e_shift.eq(Mux(uge_const(y[EXP2_FRAC_BITS:], P_FRAC + 1), P_FRAC + 1,
                                       y[EXP2_FRAC_BITS:EXP2_FRAC_BITS + 5]))
        e = Signal(P_FRAC + 1, name="e")
        m.d.comb += e.eq(Mux(uge_const(e_shift, P_FRAC + 1), 0, c.m_read.data[:P_FRAC + 1] >> e_shift))
        with m.If(c.y_pipe[npc + 3]):
            m.d.comb += [c.a_we.eq(1), c.a_addr.eq(Y.ebase | c.k_write), c.a_lanes.eq(all_lanes),
                         c.a_isword.eq(1), c.a_word.eq(e)]
            m.d.sync += [c.e_total.eq(c.e_total + e), c.k_write.eq(c.k_write + 1)]

    def _softmax_prob(self, m):
        """SOFTMAX_P: p_k = e_k r >> 16 = ((r & 1) e + 2 (r >> 1) e) >> 16 over the bytes of e
        (e = 1.0: p = r) -> act as -(p mod 2^15); c's and the corrections' beta kept."""
        c, Y = self._c, self.layout
        e_read = c.e_read
        with m.If(c.p_pipe[0] & c.sm_p_mode):
            m.d.comb += [c.e_one_in.eq(e_read[P_FRAC]), c.sm_valid.eq(1), c.sm_first.eq(1),
                         c.sm_a.eq(c.recip[1:]), c.sm_b.eq(e_read[:8])]
        with m.If(c.p_pipe[1] & c.sm_p_mode):
            m.d.comb += [c.sm_valid.eq(1), c.sm_a.eq(c.recip[1:]), c.sm_b.eq(e_read[8:16])]
        prob = Signal(P_FRAC + 1, name="prob")
        m.d.comb += prob.eq(Mux(c.e_one_pipe[2], c.recip, c.sm_acc >> 8))
        neg_err = Signal(signed(16), name="neg_err")     # -(p mod 2^15): what GRADIENT multiplies by
        m.d.comb += neg_err.eq(-prob[:P_FRAC - 1])
        with m.If(c.p_pipe[3] & c.sm_p_mode):
            m.d.comb += [c.a_we.eq(1), c.a_addr.eq(Y.pbase | c.k_write), c.a_lanes.eq((1 << c.act_word_lanes) - 1),
                         c.a_isword.eq(1), c.a_word.eq(neg_err)]
            m.d.sync += c.k_write.eq(c.k_write + 1)
            with m.If(c.k_write == c.own_class):
                m.d.sync += [c.neg_err_c.eq(neg_err), c.beta_c.eq(2 - prob[P_FRAC - 1:])]
            with m.Elif(prob[P_FRAC - 1:] != 0):
                m.d.sync += [Array(c.corr_class)[c.n_corr[0]].eq(c.k_write),
                             Array(c.corr_beta)[c.n_corr[0]].eq(prob[P_FRAC - 1:] == 2), c.n_corr.eq(c.n_corr + 1)]

    # ------------------------------------------------------------------ the deserializer
    def _deserializer(self, m):
        """Fills the other x half of xmem while a sample runs (a feature a cycle, written a cycle
        after it is taken); the write data of act, M and the cache."""
        c, P, Y = self._c, self.P, self.layout
        c.next_label, c.next_train = Signal(_bits(c.C - 1), name="next_label"), Signal(name="next_train")
        c.next_full = Signal(name="next_full")   # a whole sample waits
        n_in = Y.ni[0]
        c.feature = Signal(range(n_in + 1), name="feature")
        x_word, x_lane = Signal(range(Y.ci[0] + 1), name="x_word"), Signal(range(max(2, P)), name="x_lane")
        c.next_half, c.take = Signal(name="next_half"), Signal(name="take")
        win = self.net.spec.precision.input.width
        wa, wm = c.wa, c.m_lane_w
        # the feature taken in the cycle before, and where it goes: xmem's inputs are registers
        x_lanes = Signal(P, name="x_lanes")
        x_addr = Signal.like(c.x_write.addr, name="x_addr")
        x_data = Signal(win, name="x_data")
        m.d.comb += self.i.ready.eq(~c.next_full)
        m.d.sync += x_lanes.eq(0)
        with m.If(self.i.valid & self.i.ready):
            with m.If(c.feature == n_in):        # the label
                m.d.sync += [c.next_label.eq(self.i.payload.data), c.next_train.eq(self.i.payload.train),
                             c.next_full.eq(1), c.feature.eq(0), x_word.eq(0), x_lane.eq(0)]
            with m.Else():
                m.d.sync += [c.feature.eq(c.feature + 1), x_lanes.eq(1 << x_lane), x_data.eq(self.i.payload.data[:win]),
                             x_addr.eq(Cat(x_word[:Y.x_bits], c.next_half))]
                with m.If(x_lane == P - 1):
                    m.d.sync += [x_lane.eq(0), x_word.eq(x_word + 1)]
                with m.Else():
                    m.d.sync += x_lane.eq(x_lane + 1)
        m.d.comb += [c.x_write.addr.eq(x_addr), c.x_write.data.eq(_replicate(x_data, wa, P)), c.x_write.en.eq(x_lanes)]
        with m.If(c.take):
            m.d.sync += [c.next_full.eq(0), c.x_half.eq(c.next_half), c.next_half.eq(~c.next_half),
                         c.own_class.eq(c.next_label), c.train.eq(c.next_train)]
        m.d.comb += [c.a_data.eq(Mux(c.a_isword, fit_bits(c.a_word, c.act_word_w),
                                     _replicate(c.a_lane, wa, c.act_word_lanes))),
                     c.m_data.eq(Mux(c.m_isout, Cat(*(fit_bits(o, wm) for o in c.outs)),
                                     Mux(c.m_iscnt, fit_bits(c.m_cnt, c.m_word_w),
                                         _replicate(c.m_lane, wm, c.m_word_lanes)))),
                     c.c_data.eq(Mux(c.c_iscopy, c.a_read.data[:P * wa], _replicate(c.c_lane, wa, P)))]
        m.d.comb += [c.a_write.addr.eq(c.a_addr), c.a_write.data.eq(c.a_data),
                     c.a_write.en.eq(Mux(c.a_we, c.a_lanes, 0))]

    # ------------------------------------------------------------------ the sequencer
    def _sequencer(self, m):
        """The counters the phases walk with, and the FSM: one method per phase of the rule."""
        c, net, P, Y, L, C = self._c, self.net, self.P, self.layout, self._c.L, self._c.C
        # the phases' counters (each phase names what they hold)
        c.outer = Signal(range(max(2, c.nmax, C, c.cnmax)), name="outer")       # rows, classes, chunks
        c.middle = Signal(range(max(2, c.cimax)), name="middle")     # input chunks, the t/h pass, c/m
        c.inner = Signal(range(max(c.cimax, c.cnmax, C + 3, 4)), name="inner")   # chunks, GRADIENT steps, UPDATE terms
        c.unit_chunk = Signal(range(c.cnmax + 1), name="unit_chunk")      # unit j = unit_chunk P + lane_index
        c.lane_index = Signal(range(max(2, P)), name="lane_index")
        self._counter_flags()
        c.w_row = Signal(range(Y.wdepth + 1), name="w_row")
        c.t_word = Signal(range(C * c.cnmax + 1), name="t_word")
        c.slot = Signal(range(8), name="slot")
        c.copy_we, c.copy_addr = Signal(name="copy_we"), Signal.like(c.c_read.addr, name="copy_addr")
        m.d.sync += c.copy_we.eq(0)
        with m.If(c.copy_we):
            m.d.comb += [c.c_we.eq(1), c.c_addr.eq(c.copy_addr), c.c_lanes.eq((1 << P) - 1), c.c_iscopy.eq(1)]
        c.pipe_busy = Signal(name="pipe_busy")
        s1, s2, s3, s4 = c.s1, c.s2, c.s3, c.s4
        # pipe_busy = s1.valid | copy_we | (s2, s3, s4, upd3, vec4, grad4, upd4, vec5, flags_pending): the
        # last nine in one flip-flop, registered from their own next values (each a register a stage
        # earlier, or set by one: grad4 <- s3 in GRADIENT, flags_pending <- grad3, upd3 or vec4), so the
        # waits' decisions read three flip-flops, not an 11-input OR (the iCEBreaker's engine path:
        # s2.valid -> pipe_busy -> a wait's next state -> t_word's enable, 33.5 ns at seed 2)
        c.pipe_rest = Signal(name="pipe_rest")
        m.d.sync += c.pipe_rest.eq(s1.valid | s2.valid | s3.valid | c.upd2 | c.late_m3 | c.upd3 | c.vec4)
        m.d.comb += c.pipe_busy.eq(s1.valid | c.copy_we | c.pipe_rest)
        lmax = max(sum(ph.values()) for ph in serial_cycles(net, P, 2)["layers"])
        c.layer_cycles = Signal(range(2 * lmax + 16), name="layer_cycles")     # the FSM never stalls in a layer
        m.d.sync += c.layer_cycles.eq(c.layer_cycles + 1)
        c.commit_step = Signal(range(8), name="commit_step")
        c.pred_valid = Signal(name="pred_valid")
        m.d.comb += self.o.valid.eq(c.pred_valid)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += c.pred_valid.eq(0)
        c.bias_slots = [_vec_slots(_terms(net, l)) for l in range(L)]
        c.k_is_c, c.k_is_m = Signal(name="k_is_c"), Signal(name="k_is_m")       # GRADIENT's class k is c, m
        c.k_is_corr = [Signal(name=f"k_is_corr{n}") for n in range(2)]          # ... a correction class
        c.forward_no_drain = self._per_layer([int(Y.cn[l] >= 5) for l in range(L)])
        with m.FSM() as fsm:
            self._idle(m)
            self._forward(m)
            self._logits(m)
            self._cache(m)
            self._softmax(m)
            self._gradient(m)
            self._table(m)
            self._update(m)
            self._bias(m)
            self._commit(m)
            self._finish(m)
        self._counter_updates(m)
        self._fsm = fsm                          # (tests and benches: the phase of each cycle)
        # One-hot: Yosys re-encodes the state register (fsm pass), so a state's decode is one flip-flop
        # and the read addresses, enables and counter updates each phase drives lose ~2 LUT levels
        # (the iCEBreaker's critical paths, FSM -> act/M read addresses, were 10 levels binary).
        # Amaranth gives no public handle on the state signal; its reset state stays IDLE (a
        # synchronous reset follows power-up on every board, :mod:`~sigprop_fpga.boards.pll`).
        state = getattr(fsm, "_data", {}).get("signal")
        if state is not None:
            state.attrs["fsm_encoding"] = "one-hot"
        busy = Signal(name="busy")
        m.d.comb += busy.eq(c.next_full | (c.feature != 0) | c.pred_valid | c.pipe_busy | ~fsm.ongoing("IDLE"))
        # registered: idle a cycle after the last busy cycle (no FSM decode in front of the board's
        # status register); a sample is never taken while the state port is used (:meth:`_idle`)
        m.d.sync += self.idle.eq(~busy)
        with m.If(busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)

    # ------------------------------------------------------------------ counters and their flags
    def _counter_flags(self):
        """The registered compares of the phases' counters (:meth:`_flag`): each phase's decisions
        (a counter at its last value, a class step) read one flip-flop, not a comparator against a
        per-layer constant, so the counters' enables and the FSM's next state are a LUT level or two
        (the iCEBreaker's critical paths were those compares in series, about 10 levels)."""
        c, Y, net, L, C, P = self._c, self.layout, self.net, self._c.L, self._c.C, self.P
        c.counter_flags, c.strobes = {}, {}
        ci, cn, n = list(Y.ci), list(Y.cn), list(Y.n)
        terms = [_terms(net, l) for l in range(L)]
        k_end = C + (2 if c.push else 1)
        f = self._flag
        c.f_inner = dict(zero=f(c.inner, [0] * L, "inner_zero"), ci_last=f(c.inner, [v - 1 for v in ci], "inner_ci_last"),
                         cn_last=f(c.inner, [v - 1 for v in cn], "inner_cn_last"),
                         terms_last=f(c.inner, [v - 1 for v in terms], "inner_terms_last"),
                         one=f(c.inner, [1] * L, "inner_one"), two=f(c.inner, [2] * L, "inner_two"),
                         k_cls_last=f(c.inner, [C - 1] * L, "k_cls_last"), k_ge_c=f(c.inner, [C] * L, "k_ge_c", ge=True),
                         k_c=f(c.inner, [C] * L, "k_c"), k_c1=f(c.inner, [C + 1] * L, "k_c1"),
                         k_end=f(c.inner, [k_end] * L, "k_end"))
        c.f_outer = dict(n_last=f(c.outer, [v - 1 for v in n], "outer_n_last"),
                         cls_last=f(c.outer, [C - 1] * L, "outer_cls_last"),
                         cn_last=f(c.outer, [v - 1 for v in cn], "outer_cn_last"))
        c.f_middle = dict(zero=f(c.middle, [0] * L, "middle_zero"), ci_last=f(c.middle, [v - 1 for v in ci], "middle_ci_last"))
        c.f_lane = dict(last=f(c.lane_index, [P - 1] * L, "lane_last"))

    def _flag(self, counter, values, name, ge=False):
        """A flip-flop that is ``counter == values[layer]`` (``>=`` if ``ge``) at all times.

        It holds while every write of ``counter`` is :meth:`_inc`, :meth:`_zero` or :meth:`_load`
        (:meth:`_counter_updates` sets it from the counter's current value, in parallel with the
        counter), and the counters are zeroed after each change of the layer (FORWARD_INIT, IDLE)
        before a flag is read."""
        c = self._c
        flag = Signal(name=name)
        c.counter_flags.setdefault(id(counter), []).append((flag, list(values), ge))
        return flag

    def _flag_value(self, counter, values, ge, delta=0, const=None, layer=None):
        """``counter + delta`` (or the constant ``const``) compared with ``values`` of the layer."""
        def cmp(v):
            if const is not None:
                return Const(int(const >= v if ge else const == v), 1)
            if ge:
                return uge_const(counter, v - delta)
            if v - delta < 0 or v - delta >= 1 << len(counter):
                return Const(0, 1)
            return counter == v - delta
        if layer is not None:
            return cmp(values[layer])
        if all(v == values[0] for v in values):
            return cmp(values[0])
        return Array(cmp(v) for v in values)[self._c.layer]

    def _strobes(self, counter):
        """The counter's write strobes (comb): zero with layer 0 next, zero, one, increment."""
        c = self._c
        if id(counter) not in c.strobes:
            c.strobes[id(counter)] = (counter, *(Signal(name=f"{counter.name}_{op}") for op in ("zero0", "zero", "one", "inc")))
        return c.strobes[id(counter)][1:]

    def _inc(self, m, counter):
        """``counter += 1`` this cycle, with its flags."""
        m.d.comb += self._strobes(counter)[3].eq(1)

    def _load(self, m, counter, value: int, layer=None):
        """``counter = value`` (0 or 1) this cycle, with its flags; ``layer=0``: the layer becomes 0
        with the same edge."""
        z0, z, one, _ = self._strobes(counter)
        if value not in (0, 1) or (layer not in (None, 0)) or (value == 1 and layer is not None):
            raise ValueError(f"a counter loads 0 or 1 (layer 0 or the current), not {value!r} at {layer!r}")
        m.d.comb += (one if value else z0 if layer == 0 else z).eq(1)

    def _zero(self, m, *counters, layer=None):
        """``counter = 0`` this cycle for each of ``counters``, with their flags."""
        for ctr in counters:
            self._load(m, ctr, 0, layer)

    def _counter_updates(self, m):
        """Each counter and its flags from its strobes, in one place: a zero wins over a one and an
        increment (a phase's last step and the next phase's start in one cycle zero the counter)."""
        c = self._c
        for ctr, z0, z, one, inc in c.strobes.values():
            flags = c.counter_flags.get(id(ctr), [])
            with m.If(z0):
                m.d.sync += [ctr.eq(0), *(f.eq(self._flag_value(ctr, v, ge, const=0, layer=0)) for f, v, ge in flags)]
            with m.Elif(z):
                m.d.sync += [ctr.eq(0), *(f.eq(self._flag_value(ctr, v, ge, const=0)) for f, v, ge in flags)]
            with m.Elif(one):
                m.d.sync += [ctr.eq(1), *(f.eq(self._flag_value(ctr, v, ge, const=1)) for f, v, ge in flags)]
            with m.Elif(inc):
                m.d.sync += [ctr.eq(ctr + 1), *(f.eq(self._flag_value(ctr, v, ge, delta=1)) for f, v, ge in flags)]

    def _class_flags(self, k):
        """The assignments (sync) of GRADIENT's class flags for the class index ``k`` it moves to."""
        c = self._c
        return [c.k_is_c.eq(k == c.own_class), c.k_is_m.eq(k == c.m_class),
                *((c.k_is_corr[n].eq((c.n_corr > n) & (k == c.corr_class[n]))) for n in range(2))]

    def _wait_then(self, m, name, level, go):
        """State ``name`` waits, then ``go()``: until the last issue left S1 (1) or S2 (2), until
        the pipeline is empty (3), or until it left S3 (4) -- what the next phase reads or shares
        decides."""
        c = self._c
        s1, s2, s3 = c.s1.valid, c.s2.valid, c.s3.valid
        with m.State(name):
            done = {1: ~s1, 2: ~s1 & ~s2, 3: ~c.pipe_busy, 4: ~s1 & ~s2 & ~s3}[level]
            with m.If(done):
                go()

    def _next_layer(self, m):
        c = self._c
        with m.If(c.L_last):
            m.next = "FIN"
        with m.Else():
            m.d.sync += c.layer.eq(c.layer + 1)
            m.next = "FORWARD_INIT"

    def _go_update(self, m):
        c = self._c
        self._zero(m, c.outer, c.middle, c.inner, c.unit_chunk, c.lane_index)
        m.d.sync += [c.w_ptr.eq(c.L_wbase)]
        m.next = "UPDATE"

    def _go_softmax(self, m):
        c = self._c
        m.d.sync += [c.k_read.eq(0), c.k_write.eq(0), c.e_total.eq(0), c.slot.eq(0)]
        m.next = "SOFTMAX_Y"

    def _idle(self, m):
        """Overhead: take the waiting sample (the state port is served only here)."""
        c, Y = self._c, self.layout
        with m.State("IDLE"):
            m.d.sync += c.rb_active.eq(self.rb_en)     # IDLE holds while rb_en: served next cycle
            with m.If(c.next_full & ~self.rb_en):
                m.d.comb += c.take.eq(1)
                self._zero(m, c.outer, c.middle, c.inner, c.unit_chunk, c.lane_index, layer=0)
                m.d.sync += [c.layer.eq(0), c.w_row.eq(Y.wbase[0]), c.layer_cycles.eq(1), c.have_m.eq(0)]
                m.next = "FORWARD"

    def _forward(self, m):
        """FORWARD, rows j: t_j (layer 0: f(R[c][j]), no products; else f(W t_in + b)), then
        h_j = f(W x + b); lane ``lane_index`` of word ``unit_chunk`` takes unit j."""
        c, Y = self._c, self.layout
        row, t_pass, chunk = c.outer, c.middle, c.inner      # t_pass: 0 the t pass (training), 1 the h pass
        i = c.issue
        with m.State("FORWARD_INIT"):
            self._zero(m, row, t_pass, chunk, c.unit_chunk, c.lane_index)
            m.d.sync += [c.w_row.eq(c.L_wbase), c.layer_cycles.eq(1), c.have_m.eq(0)]
            m.next = "FORWARD"
        with m.State("FORWARD"):
            fi, fo = c.f_inner, c.f_outer
            is_t = c.train & c.f_middle["zero"]
            t0 = is_t & c.L_first
            m.d.comb += [i.index.eq(c.unit_chunk), i.lane.eq(c.lane_index), i.first.eq(fi["zero"]),
                         i.phase.eq(_FORWARD)]
            with m.If(fi["zero"]):      # the bias, or (layer 0's target pass, no products) R[c][j]
                r_c = Y.rbase | self._row_plus(c.row_c, c.unit_chunk)
                m.d.comb += [c.m_ra.eq(Mux(t0, r_c, c.L_bbase | c.unit_chunk)), c.m_re.eq(1)]
            with m.If(t0):
                m.d.comb += [i.valid.eq(1), i.sub.eq(2), i.last.eq(1)]
            with m.Else():
                m.d.comb += [i.valid.eq(1), i.sub.eq(Mux(is_t, 1, 0)), i.last.eq(fi["ci_last"]),
                             c.w_ra.eq(c.w_row + chunk), c.w_re.eq(1),
                             c.a_ra.eq(Mux(is_t, c.t_in, c.x_in) | chunk), c.a_re.eq(1)]
            with m.If(t0 | fi["ci_last"]):
                self._zero(m, chunk)
                with m.If(is_t):
                    self._load(m, t_pass, 1)
                with m.Else():
                    self._zero(m, t_pass)
                    m.d.sync += [c.w_row.eq(c.w_row + c.L_ci)]
                    with m.If(c.f_lane["last"]):
                        self._zero(m, c.lane_index)
                        self._inc(m, c.unit_chunk)
                    with m.Else():
                        self._inc(m, c.lane_index)
                    with m.If(fo["n_last"]):
                        self._zero(m, row)
                        with m.If(c.forward_no_drain):      # LOGITS reads the last h chunk 5 cycles on
                            self._after_forward(m, False)
                        with m.Else():
                            m.next = "FORWARD_DRAIN"
                    with m.Else():
                        self._inc(m, row)
            with m.Else():
                self._inc(m, chunk)
        self._wait_then(m, "FORWARD_DRAIN", 3, lambda: self._after_forward(m, True))

    def _after_forward(self, m, drained):
        """Training: LOGITS (``l2``: UPDATE but in the last layer); inference: the next layer, or
        LOGITS of the last."""
        c = self._c
        self._zero(m, c.outer, c.inner)
        m.d.sync += [c.t_word.eq(0)]
        with m.If(c.train):
            if c.ce:
                m.next = "LOGITS"
            else:
                with m.If(c.L_last):
                    m.next = "LOGITS"
                with m.Else():
                    if drained:
                        self._go_update(m)
                    else:
                        m.next = "FORWARD_DRAIN"
        with m.Else():
            with m.If(c.L_last):
                m.next = "LOGITS"
            with m.Else():
                if drained:      # the next layer's lookups change under in-flight writes
                    m.d.sync += c.layer.eq(c.layer + 1)
                    m.next = "FORWARD_INIT"
                else:
                    m.next = "FORWARD_DRAIN"

    def _logits(self, m):
        """LOGITS: s_k = T_l[k] . h for every class k, a chunk per issue (the prediction, m and
        max(s) at S4)."""
        c, i = self._c, self._c.issue
        k, chunk = c.outer, c.inner
        with m.State("LOGITS"):
            last = c.f_inner["cn_last"]
            m.d.comb += [i.valid.eq(1), i.phase.eq(_LOGITS), i.first.eq(c.f_inner["zero"]), i.last.eq(last),
                         i.index.eq(k), c.c_ra.eq(c.L_tbase | c.t_word), c.c_re.eq(1),
                         c.a_ra.eq(c.L_hout | chunk), c.a_re.eq(1)]
            m.d.sync += c.t_word.eq(c.t_word + 1)
            with m.If(last):
                self._zero(m, chunk)
                with m.If(c.f_outer["cls_last"]):
                    self._zero(m, k)
                    with m.If(c.train):
                        with m.If(c.L_last):
                            m.next = "CACHE_COPY"
                        with m.Else():
                            m.next = "LOGITS_SETTLE"
                    with m.Else():
                        m.next = "LOGITS_DRAIN"
                with m.Else():
                    self._inc(m, k)
            with m.Else():
                self._inc(m, chunk)
        self._wait_then(m, "LOGITS_SETTLE", 2, lambda: self._go_softmax(m))     # max(s) settles at S4
        self._wait_then(m, "LOGITS_DRAIN", 4, lambda: setattr(m, "next", "FIN"))

    def _cache(self, m):
        """CACHE (the last layer): T_L[c] <- t, a chunk a cycle; then (``class_ce``) s_c = t . h."""
        c, Y, i = self._c, self.layout, self._c.issue
        chunk = c.inner
        with m.State("CACHE_COPY"):
            m.d.comb += [c.a_ra.eq(c.L_ttout | chunk), c.a_re.eq(1)]
            m.d.sync += [c.copy_we.eq(1), c.copy_addr.eq(c.L_tbase | self._row_plus(c.row_c, chunk))]
            with m.If(c.f_inner["cn_last"]):
                self._zero(m, chunk)
                m.next = "CACHE" if (c.ce and Y.cn[-1] >= 2) else "CACHE_COPY_WAIT"
            with m.Else():
                self._inc(m, chunk)
        with m.State("CACHE_COPY_WAIT"):
            with m.If(~c.copy_we):
                if c.ce:
                    m.next = "CACHE"
                else:
                    self._go_update(m)
        with m.State("CACHE"):
            last = c.f_inner["cn_last"]
            m.d.comb += [i.valid.eq(1), i.phase.eq(_CACHE), i.first.eq(c.f_inner["zero"]), i.last.eq(last),
                         c.c_ra.eq(c.L_tbase | self._row_plus(c.row_c, chunk)), c.c_re.eq(1),
                         c.a_ra.eq(c.L_hout | chunk), c.a_re.eq(1)]
            with m.If(last):
                self._zero(m, chunk)
                m.next = "CACHE_SETTLE"
            with m.Else():
                self._inc(m, chunk)
        self._wait_then(m, "CACHE_SETTLE", 4, lambda: self._go_softmax(m))     # s_c lands at S4

    def _softmax(self, m):
        """SOFTMAX_Y (y and e of every class), SOFTMAX_DIV (r = floor(2^32 / sum e), restoring),
        SOFTMAX_P (p of every class): :func:`sigprop_fpga.compiler.fixed.softmax_fixed` on lane 0."""
        c, Y, C = self._c, self.layout, self._c.C
        with m.State("SOFTMAX_Y"):
            with m.If((c.slot == 0) & ~uge_const(c.k_read, C)):
                m.d.comb += [c.y_issue.eq(1), c.a_ra.eq(Y.sbase | c.k_read), c.a_re.eq(1)]
                m.d.sync += c.k_read.eq(c.k_read + 1)
            m.d.sync += c.slot.eq(Mux(c.slot == c.n_pieces - 1, 0, c.slot + 1))
            with m.If(c.k_write == C):
                m.d.sync += [c.sm_acc.eq(1 << (RECIP_BITS - _Q_BITS)), c.recip.eq(0), c.div_bit.eq(_Q_BITS)]
                m.next = "SOFTMAX_DIV"
        with m.State("SOFTMAX_DIV"):
            r2 = Signal.like(c.sm_acc, name="remainder2")
            m.d.comb += r2.eq(c.sm_acc << 1)
            with m.If(c.div_bit == 0):
                m.d.sync += [c.k_read.eq(0), c.k_write.eq(0), c.slot.eq(0), c.n_corr.eq(0)]
                m.next = "SOFTMAX_P"
            with m.Else():
                m.d.sync += c.div_bit.eq(c.div_bit - 1)
                with m.If(r2 >= c.e_total):
                    m.d.sync += [c.sm_acc.eq(r2 - c.e_total), c.recip.eq(Cat(Const(1, 1), c.recip[:-1]))]
                with m.Else():
                    m.d.sync += [c.sm_acc.eq(r2), c.recip.eq(Cat(Const(0, 1), c.recip[:-1]))]
        with m.State("SOFTMAX_P"):
            m.d.comb += c.sm_p_mode.eq(1)
            with m.If((c.slot == 0) & ~uge_const(c.k_read, C)):
                m.d.comb += [c.p_issue.eq(1), c.a_ra.eq(Y.ebase | c.k_read), c.a_re.eq(1)]
                m.d.sync += c.k_read.eq(c.k_read + 1)
            m.d.sync += c.slot.eq(~c.slot[0])
            with m.If(c.k_write == C):
                self._zero(m, c.outer, c.inner)
                m.d.sync += [c.t_word.eq(0), *self._class_flags(0)]
                m.next = "GRADIENT"

    def _gradient(self, m):
        """GRADIENT, per chunk of P units: -sum_k err_k T[k] as 15-bit products plus one 2^15
        correction product per class with beta != 0 (c, and any k with p_k >= 1/2), then
        g = (1 - p_c) h (two products) held a cycle: d_h, d_tc = g f'(t), g f'(T[m]) -> M."""
        c, Y, L, C, i = self._c, self.layout, self._c.L, self._c.C, self._c.issue
        chunk, k = c.outer, c.inner
        f = c.f_inner
        corr_next = Signal(name="corr_next")     # the correction product of class k is next
        k_inc, k_zero = Signal(name="grad_k_inc"), Signal(name="grad_k_zero")
        with m.State("GRADIENT"):
            # whether class k is c, m or a correction: registered with k (no comparator in front
            # of the decisions below), as are k's own compares (:meth:`_counter_flags`)
            is_c, is_corr = c.k_is_c, c.k_is_corr
            corr = is_c | is_corr[0] | is_corr[1]
            with m.If(k_zero):
                self._zero(m, k)
                m.d.sync += [*self._class_flags(0)]
            with m.Elif(k_inc):
                self._inc(m, k)
                m.d.sync += [*self._class_flags(k + 1)]
            with m.Else():
                m.d.sync += self._class_flags(k)
            m.d.comb += [i.valid.eq(1), i.phase.eq(_GRADIENT), i.index.eq(chunk)]
            with m.If(~f["k_ge_c"]):
                with m.If(~corr_next):           # -(p_k mod 2^15) T[k]
                    m.d.comb += [i.sub.eq(0), i.a_kind.eq(0), i.b_cache.eq(1), i.first.eq(f["zero"]),
                                 i.last.eq(f["k_cls_last"] & ~corr), i.is_c.eq(is_c), i.is_m.eq(c.k_is_m),
                                 c.a_ra.eq(Y.pbase | k), c.a_re.eq(1), c.c_ra.eq(c.L_tbase | c.t_word), c.c_re.eq(1)]
                    with m.If(corr):
                        m.d.sync += corr_next.eq(1)
                    with m.Else():
                        m.d.comb += k_inc.eq(1)
                        m.d.sync += c.t_word.eq(c.t_word + c.L_cn)
                with m.Else():                   # the correction, on the held T[k] chunk
                    m.d.comb += [i.sub.eq(0), i.a_kind.eq(Mux(is_c, 1, 2)), i.b_cache.eq(1), i.last.eq(f["k_cls_last"]),
                                 i.b_shift.eq(Mux(is_c, c.beta_c, Mux(is_corr[0], c.corr_beta[0], c.corr_beta[1]))),
                                 i.b_zero.eq(is_c & (c.beta_c == 0))]
                    m.d.comb += k_inc.eq(1)
                    m.d.sync += [corr_next.eq(0), c.t_word.eq(c.t_word + c.L_cn)]
            with m.Elif(f["k_c"]):               # g: -(p_c mod 2^15) h, then 2^14 (2 |beta_c|) h
                m.d.comb += [i.sub.eq(1), i.a_kind.eq(3), i.first.eq(1), c.a_ra.eq(c.L_hout | chunk), c.a_re.eq(1),
                             k_inc.eq(1)]
            with m.Elif(f["k_c1"]):
                m.d.comb += [i.sub.eq(1), i.a_kind.eq(1), i.b_shift.eq(c.beta_c), i.b_zero.eq(c.beta_c == 0),
                             i.last.eq(1), k_inc.eq(1)]
            with m.Else():                       # the same sum once more (A = 0): g m_m
                m.d.comb += [i.sub.eq(2), i.a_kind.eq(4), i.b_zero.eq(1), i.last.eq(1)]
            with m.If(f["k_end"]):               # g_main, g_corr (-> d_tc)[, g_zero (-> g m_m)]
                m.d.comb += k_zero.eq(1)
                m.d.sync += c.t_word.eq(chunk + 1)
                with m.If(c.f_outer["cn_last"]):
                    self._zero(m, chunk)
                    with m.If(c.L_first):
                        m.next = "GRADIENT_TO_TABLE"
                    with m.Elif(self._per_layer([int(Y.cn[l] >= 2) for l in range(L)])):
                        self._go_update(m)       # UPDATE starts on chunk 0's deltas, written long ago
                    with m.Else():
                        m.next = "GRADIENT_TO_UPDATE"
                with m.Else():
                    self._inc(m, chunk)

        def go_table():
            self._zero(m, c.outer, c.middle, c.inner)
            m.d.sync += [c.slot.eq(0)]
            m.next = "TABLE"
        # TABLE reads d_tc of chunk 0 (written a cycle after S3): without push, with one chunk, the
        # last issue writes it
        self._wait_then(m, "GRADIENT_TO_TABLE", 2 if (c.push or Y.cn[0] >= 2) else 4, go_table)
        self._wait_then(m, "GRADIENT_TO_UPDATE", 3, lambda: self._go_update(m))   # operands through the sources at S1

    def _table(self, m):
        """TABLE (layer 0): R[c] -= d_tc >> s, R[m] -= d_tm >> s, a chunk every other cycle (the
        delta word times 2^fa through the lanes)."""
        c, Y, i = self._c, self.layout, self._c.issue
        chunk, row_m = c.outer, c.middle         # row_m: 0 R[c], 1 R[m]
        with m.State("TABLE"):
            r_c = c.f_middle["zero"]             # (TABLE runs in layer 0: its cn is L_cn)
            with m.If(c.slot == 0):
                m.d.comb += [i.valid.eq(1), i.phase.eq(_BIAS_TABLE), i.sub.eq(Mux(r_c, 1, 2)), i.first.eq(1),
                             i.last.eq(1), i.index.eq(chunk), i.neg.eq(~r_c),
                             c.m_ra.eq(Mux(r_c, Y.dtc, Y.dtm) | chunk), c.m_re.eq(1)]
            m.d.sync += c.slot.eq(~c.slot[0])
            with m.If(c.slot == 1):
                with m.If(c.f_outer["cn_last"]):
                    self._zero(m, chunk)
                    with m.If(~r_c if c.push else Const(1)):
                        m.next = "TABLE_DRAIN"
                    with m.Else():
                        self._load(m, row_m, 1)
                with m.Else():
                    self._inc(m, chunk)
        self._wait_then(m, "TABLE_DRAIN", 2, lambda: self._go_update(m))    # the last R word is read late, at S3

    def _update(self, m):
        """UPDATE: W -= (d_h x + d_tc t_in + d_tm Tin[m]) >> s, one term a cycle, lane-wise
        read-modify-write of the W word of row j (unit j at lane ``lane_index`` of ``unit_chunk``)."""
        c, Y, P, i = self._c, self.layout, self.P, self._c.issue
        row, chunk, term = c.outer, c.middle, c.inner
        with m.State("UPDATE"):
            t0, t1, t2 = c.f_inner["zero"], c.f_inner["one"], c.f_inner["two"]
            m.d.comb += [i.valid.eq(1), i.phase.eq(_UPDATE), i.first.eq(t0), i.last.eq(c.f_inner["terms_last"]),
                         i.term.eq(term), i.lane.eq(c.lane_index),
                         c.m_ra.eq(Mux(t0, Y.dh, Mux(t1, Y.dtc, Y.dtm)) | c.unit_chunk), c.m_re.eq(1)]
            with m.If(t2):
                m.d.comb += [c.c_ra.eq(c.L_tprev | self._row_plus(c.row_m, chunk)), c.c_re.eq(1)]
            with m.Else():
                m.d.comb += [c.a_ra.eq(Mux(t0, c.x_in, c.t_in) | chunk), c.a_re.eq(1)]
            with m.If(c.f_inner["terms_last"]):
                self._zero(m, term)
                with m.If(c.f_middle["ci_last"]):
                    self._zero(m, chunk)
                    with m.If(c.f_lane["last"]):
                        self._zero(m, c.lane_index)
                        self._inc(m, c.unit_chunk)
                    with m.Else():
                        self._inc(m, c.lane_index)
                    with m.If(c.f_outer["n_last"]):
                        self._zero(m, row)
                        m.next = "UPDATE_DRAIN"
                    with m.Else():
                        self._inc(m, row)
                with m.Else():
                    self._inc(m, chunk)
            with m.Else():
                self._inc(m, term)

        def go_bias():
            self._zero(m, c.outer)
            m.d.sync += [c.slot.eq(0)]
            m.next = "BIAS"
        self._wait_then(m, "UPDATE_DRAIN", 1, go_bias)     # BIAS's operands come through the sources at S1

    def _bias(self, m):
        """BIAS: b -= (d_h + d_tc + d_tm) >> s, P units at a time through the lanes, in the issue
        slots of :func:`_vec_slots`."""
        c, Y, L, i = self._c, self.layout, self._c.L, self._c.issue
        chunk = c.outer
        with m.State("BIAS"):
            period = self._per_layer([per for per, _ in c.bias_slots])
            with m.Switch(c.layer):
                for l in range(L):
                    _, slots = c.bias_slots[l]
                    with m.Case(l):
                        for term, slot in enumerate(slots):
                            with m.If(c.slot == slot):
                                m.d.comb += [i.valid.eq(1), i.phase.eq(_BIAS_TABLE), i.sub.eq(0),
                                             i.first.eq(term == 0), i.last.eq(term == len(slots) - 1),
                                             i.index.eq(chunk), i.neg.eq(term == 2),
                                             c.m_ra.eq((Y.dh, Y.dtc, Y.dtm)[term] | chunk), c.m_re.eq(1)]
            with m.If(c.slot == period - 1):
                m.d.sync += c.slot.eq(0)
                with m.If(c.f_outer["cn_last"]):
                    self._zero(m, chunk)
                    m.next = "BIAS_DRAIN"
                with m.Else():
                    self._inc(m, chunk)
            with m.Else():
                m.d.sync += c.slot.eq(c.slot + 1)

        def go_commit():
            m.d.sync += c.commit_step.eq(0)
            m.next = "COMMIT"
        self._wait_then(m, "BIAS_DRAIN", 3, go_commit)

    def _commit(self, m):
        """COMMIT: the layer's saturation counts added to its counters in M, its cycles written."""
        c, Y = self._c, self.layout
        step = c.commit_step
        with m.State("COMMIT"):
            word = Signal.like(c.m_ra, name="counter_word")
            m.d.comb += word.eq(Y.cbase | (mul_const(c.layer, _NKINDS) + step))
            n_lanes32 = -(-32 // c.m_lane_w)
            with m.If(~uge_const(step, 4)):
                m.d.comb += [c.m_ra.eq(word), c.m_re.eq(1)]
            # step s writes word s - 1 (read in step s - 1) plus its pending count: both
            # registered in step s - 1, so no selector sits in front of the 32-bit adder
            prev_word = Signal.like(word, name="counter_prev_word")
            pending = Signal(32, name="counter_pending")
            last = Signal(name="counter_last")         # step 5: the layer's cycles
            m.d.sync += [prev_word.eq(word), last.eq(step == 4),
                         pending.eq(Array([c.pending_weight, c.pending_bias, c.pending_error, c.pending_table,
                                           Const(0, 1), Const(0, 1), Const(0, 1), Const(0, 1)])[step[:3]])]
            with m.If(step != 0):
                value = Signal(32, name="counter_value")
                m.d.comb += value.eq(Mux(last, c.layer_cycles, c.m_read.data[:32] + pending))
                m.d.comb += [c.m_we.eq(1), c.m_addr.eq(prev_word), c.m_lanes.eq((1 << n_lanes32) - 1),
                             c.m_iscnt.eq(1), c.m_cnt.eq(value)]
            m.d.sync += step.eq(step + 1)
            with m.If(step == 5):
                m.d.sync += [c.pending_weight.eq(0), c.pending_bias.eq(0), c.pending_error.eq(0),
                             c.pending_table.eq(0)]
                self._next_layer(m)

    def _finish(self, m):
        """Overhead: the prediction out, the sample counted."""
        c = self._c
        with m.State("FIN"):
            with m.If(~c.pred_valid):
                m.d.sync += [c.pred_valid.eq(1), self.o.payload.eq(c.prediction)]
                with m.If(c.train):
                    m.d.sync += self.samples.eq(self.samples + 1)
                with m.Else():
                    m.d.sync += self.inferences.eq(self.inferences + 1)
                m.next = "IDLE"

    # ------------------------------------------------------------------ the state port
    def _state_port_decode(self, m):
        """The state port's address decoded (idle only): ``rb_kind`` (0 W, 1 M lane, 2 cache,
        3 counter register, 4 M counter, 5 none), ``rb_word`` and ``rb_lane``."""
        c, P, Y, L = self._c, self.P, self.layout, self._c.L
        f = self.map["fields"]

        def field(name):
            return self.rb_addr[f[name]["lsb"]:f[name]["lsb"] + f[name]["width"]]
        stage, mem, bank, word = field("stage"), field("mem"), field("bank"), field("word")
        c.rb_bank = Signal.like(bank, name="rb_bank")
        c.rb_lane = Signal(range(max(4, c.m_word_lanes)), name="rb_lane")
        c.rb_word = Signal(range(max(Y.wdepth, Y.mdepth, Y.cdepth) + 1), name="rb_word")
        kind_n, addr_n, lane_n = (Signal.like(c.rb_kind, name="rb_kind_next"), Signal.like(c.rb_word, name="rb_word_next"),
                                  Signal.like(c.rb_lane, name="rb_lane_next"))
        m.d.sync += [c.rb_kind.eq(kind_n), c.rb_word.eq(addr_n), c.rb_lane.eq(lane_n), c.rb_bank.eq(bank),
                     c.rb_we.eq(self.wb_en), c.rb_wdata.eq(self.wb_data)]
        if P & (P - 1) == 0:             # a bias: unit ``word`` at lane word % P of chunk word // P
            bias_chunk = word >> (c.lane_bits if P > 1 else 0)
            bias_lane = word[:c.lane_bits] if P > 1 else Const(0, 1)
        else:
            bias_chunk = Array(Const(v // P, range(c.nmax // P + 2)) for v in range(c.nmax + 1))[word]
            bias_lane = Array(Const(v % P, range(max(2, P))) for v in range(c.nmax + 1))[word]
        layer = Signal(range(max(2, L)), name="rb_layer")
        m.d.comb += layer.eq(Mux(~uge_const(stage, L), stage, 0))
        counter_map = []                 # (kind, counter register or M word) by counter index
        for name in self.counters:
            if name in ("cycles", "samples", "inferences"):
                counter_map.append((3, ("cycles", "samples", "inferences").index(name)))
                continue
            base, l_ = name.rsplit("_", 1)
            kind = {"sat_weight": 0, "sat_bias": 1, "sat_error": 2, "sat_table": 3, "stage_cycles": 4}[base]
            counter_map.append((4, Y.cword(int(l_), kind)))
        kind, addr, lane, lut = kind_n, addr_n, lane_n, self._per_layer
        with m.If(stage == L):
            with m.Switch(word):
                for k, (kd, v) in enumerate(counter_map):
                    with m.Case(k):
                        m.d.comb += [kind.eq(kd), addr.eq(v if kd == 4 else 0), lane.eq(v if kd == 3 else 0)]
                with m.Default():
                    m.d.comb += kind.eq(5)
        with m.Else():
            with m.Switch(mem):
                with m.Case(0):
                    m.d.comb += [kind.eq(0), addr.eq(lut(Y.wbase, layer) + word), lane.eq(bank)]
                with m.Case(1):
                    m.d.comb += [kind.eq(1), addr.eq(lut(Y.bbase, layer) | bias_chunk), lane.eq(bias_lane)]
                with m.Case(2):
                    m.d.comb += [kind.eq(2), addr.eq(lut(Y.tbase, layer) | word), lane.eq(bank)]
                with m.Case(3):          # Tin_l aliases T_(l-1)
                    t_prev = lut([Y.tbase[l - 1] if l else 0 for l in range(L)], layer)
                    m.d.comb += [kind.eq(2), addr.eq(t_prev | word), lane.eq(bank)]
                with m.Case(4):
                    m.d.comb += [kind.eq(1), addr.eq(Y.rbase | word), lane.eq(bank)]
                with m.Default():
                    m.d.comb += kind.eq(5)

    def _state_port(self, m):
        """The state port's read (a cycle, then the lane selected and registered) and write."""
        c = self._c
        kind, addr, bank = c.rb_kind, c.rb_word, c.rb_bank
        with m.If(c.rb_active):
            m.d.comb += [c.w_ra.eq(addr), c.w_re.eq(1), c.c_ra.eq(addr), c.c_re.eq(1), c.m_ra.eq(addr),
                         c.m_re.eq(1)]
            with m.If(c.rb_we):
                m.d.comb += c.m_lane.eq(c.rb_wdata)      # the W banks' data too
                with m.Switch(kind):
                    with m.Case(0):
                        m.d.comb += [c.w_we.eq(1), c.w_waddr.eq(addr), c.w_wlane.eq(1 << bank)]
                    with m.Case(1):
                        m.d.comb += [c.m_we.eq(1), c.m_addr.eq(addr), c.m_lanes.eq(1 << c.rb_lane)]
                    with m.Case(2):
                        m.d.comb += [c.c_we.eq(1), c.c_addr.eq(addr), c.c_lanes.eq(1 << bank),
                                     c.c_lane.eq(c.rb_wdata)]
        m.d.sync += c.rb_lane_s1.eq(c.rb_lane)
        # the result, an AND-OR of one-hot selects registered with the address (a cache lane is
        # already sign-extended in src)
        rb_onehot = Signal(5, name="rb_onehot")
        lane = c.rb_lane
        m.d.sync += rb_onehot.eq(Cat(~uge_const(kind, 3), (kind == 3) & (lane == 0), (kind == 3) & (lane == 1),
                                     (kind == 3) & (lane == 2), kind == 4))
        out = Signal(signed(32), name="rb_out")
        sources = [c.rb_src, self.cycles, self.samples, self.inferences, c.m_read.data[:32]]
        m.d.comb += out.eq(Cat(*[Cat(*(rb_onehot[k] & Value.cast(v).as_signed()[min(i, len(v) - 1)]
                                       for k, v in enumerate(sources))).any() for i in range(32)]))
        m.d.sync += self.rb_data.eq(out)


class _Context:
    """What the phases of :meth:`SerialEngine.elaborate` share, set as the datapath is built: the
    formats (integers), the memories' ports (``w_``, ``m_``, ``c_``, ``a_`` for the W banks, M, the
    cache and act: ``ra``/``re`` read, ``we``/``addr``/``lanes``/``data`` write), the issue and its
    tags at ``s1`` to ``s4``, the current layer's constants (``L_``), and the registers."""


class _Tags:
    """An issue's tags at one pipeline stage (S0 the issue, S1 to S4 its registered copies)."""

    def __init__(self, **signals):
        self.__dict__.update(signals)


def _replicate(v, w: int, n: int):
    """``n`` copies of ``v`` as ``w`` raw bits each (a word of ``n`` lanes)."""
    return Cat(*([fit_bits(v, w)] * n))
