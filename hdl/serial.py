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
    act    P activation lanes (>= 17 bits)     x (two halves: the next sample streams in), h_l, t_l,
                                               the logits s, the exponentials e, the probabilities p
                                               (as -(p mod 2^15), what GRAD multiplies by)

A W bank is written with M's write data (lane ``p`` for bank ``p``): the lanes' outputs or the state
port's word, one multiplexer for both memories.

The datapath (one issue per cycle): S0 addresses; S1 the memories' data, the operand multiplexers
(their selects decoded a cycle ahead and registered) and one ``*`` per lane (16-bit A, so an iCE40
SB_MAC16 holds the product register and, but in lane 0 whose product the softmax also uses, the
32-bit accumulator); S2 accumulate per lane (the start value carries the rounding half of the
result's narrowing; in FWD lane 0 starts a row from its bias, read with the row's first issue); S3
an adder tree over the lanes (dot products, narrowed once: h, t; the logits registered, written and
compared for the argmax at S4), or one output unit per lane, ``sat(base - round_even(acc >> k))``:
a weight, bias or table step (base the old value, read late at S2/S3) or a delta (base 0), its
result registered and written a cycle later (S4, S5 for a bias or table word). Phases of a
training sample, per layer ``l`` (``C`` classes; ``terms`` 1 at layer 0 and for ``l2``, else 3 with
push and 2 without)::

    FWD   rows j: t_j (layer 0: f(R[c][j]), no products; else f(W t_in + b)), then h_j = f(W x + b)
          -> act (and t -> T_l[c], but in the last layer)                     n (1 + ci) / 2 n ci
    READ  s_k = T_l[k] . h for all k: prediction (last layer), m, max(s)      C cn
    COPY  T_L[c] <- t, then TH: s_c = t . h (the last layer only)             2 cn + 4
    SMAX  p = softmax(s) (:func:`sigprop_fpga.compiler.fixed.softmax_fixed`) on lane 0: y_k from
          8-bit pieces of d_k, e_k from the table, one restoring division, p_k  (npc + 2) C + 27
    GRAD  per chunk of P units: -sum_k (p_k - y_k) T[k] as 15-bit products plus one 2^15 correction
          product per class with beta != 0 (c, and any k with p_k >= 1/2), then g = (1 - p_c) h
          (two products) held a cycle: d_h, d_tc = g f'(t), g f'(T[m]) -> M    cn (C + 4 + n_x)
    TAB   R[c] -= d_tc >> s, R[m] -= d_tm >> s (layer 0): lanes x 2^fa        4 cn_0
    UPD   W -= (d_h x + d_tc t_in + d_tm Tin[m]) >> s, lane-wise read-modify-write  n ci terms
    BIAS  b -= (d_h + d_tc + d_tm) >> s, P units at a time through the lanes  cn per(terms)
    COMMIT the layer's saturation counts added to its counters in M           6

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
from ..compiler.rule import Q_BITS as _Q_BITS, softmax_pieces, update_terms as _terms
from ..compiler.statemap import counter_names, readback_map
from .engine import engine_members
from .fixed import mul_const, round_shift

__all__ = ["SerialEngine", "SerialLayout", "check_serial_support"]

# phase codes carried down the lane pipeline
_FWD, _READ, _TH, _GRAD, _UPD, _VEC = 1, 2, 3, 4, 5, 6
_NKINDS = 5          # counter words per layer in M: weight, bias, error, table saturations, cycles


def _bits(n: int) -> int:
    return max(1, int(n).bit_length())


def _pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


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
        self.wdepth = max(off, 2)
        cnm = max(self.cn)
        # M: biases (by chunks), the table R, the deltas of one layer, the counters
        regs = [(f"b{l}", self.cn[l]) for l in range(L)]
        regs += [("R", C * self.cn[0]), ("dh", cnm), ("dtc", cnm), ("dtm", cnm), ("cnt", _NKINDS * L),
                 ("tab", len(EXP2_TABLE))]
        mb, self.mdepth = _place(regs)
        self.bbase = [mb[f"b{l}"] for l in range(L)]
        self.rbase, self.dh, self.dtc, self.dtm, self.cbase = mb["R"], mb["dh"], mb["dtc"], mb["dtm"], mb["cnt"]
        self.tab = mb["tab"]
        # cache: T of every layer
        cb_, self.cdepth = _place([(f"T{l}", C * self.cn[l]) for l in range(L)])
        self.tbase = [cb_[f"T{l}"] for l in range(L)]
        # act: x (two halves), h_l and t_l, y/e (shared), s, p, the exponent table
        regs = [("x0", self.ci[0]), ("x1", self.ci[0]), ("s", C), ("e", C), ("p", C)]
        regs += [(f"h{l}", self.cn[l]) for l in range(L)] + [(f"t{l}", self.cn[l]) for l in range(L)]
        ab, self.adepth = _place(regs)
        self.xbase = [ab["x0"], ab["x1"]]
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
        ``rb_data`` is the entry at ``rb_addr`` :attr:`rb_latency` (two) cycles later; with ``wb_en`` the entry is
        written (counters are read only). ``Tin`` of layer ``l`` aliases ``T`` of layer ``l - 1``.
    idle : Out(1)
        No sample in flight or waiting and no prediction waiting.
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
                            + (npc + 2) C + 27                                  softmax
                            + cn_l (C + 4 + n_x,l) + (l = 0: 4 cn_0 + 5;  else: 5 [cn_l < 2])
                            + n_l ci_l terms_l + 2 + cn_l per + 7 - per + s_last + 6 ]
        inference = 2 + sum_l [ n_l ci_l + [l > 0] + 5 [l < L - 1 or cn_l < 5] ] + C cn_L + 4

    ``n_x,l`` in {0, 1, 2} is the number of classes ``k != c`` with ``p_k >= 1/2`` at layer ``l``.
    ``examples/digits.yaml`` with ``P = 4``: 3,019 cycles per training sample (3,051 at most),
    860 per inference; the multiplications alone take 10,624 / 4 = 2,656 (MAC utilization 0.88).

    Not supported (``ValueError`` at construction): ``readout: head``, ``rounding: stochastic``,
    per-layer activation, weight, bias or error formats that differ, an input format other than
    the activation format, bias or table formats other than the weight format.
    """

    #: Cycles from a readback request (``rb_addr``) to its ``rb_data``.
    rb_latency = 2

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
        m = Module()
        net, P, Y = self.net, self.P, self.layout
        L, C = net.depth, net.n_classes
        spec = net.spec.learning
        ce = spec.loss == "class_ce"
        push = ce and spec.push
        pr = net.prec(0)
        qa, qw, qe = pr.activation, pr.weight, pr.error
        wa, fa, fw, fe = qa.width, qa.frac_bits, qw.frac_bits, qe.frac_bits
        kW = fe + fa - fw + spec.lr_shift        # weight step: u has fe + fa fraction bits
        kB = fa                                  # 2^kB scales a bias or table step to a weight step
        kG = P_FRAC + fa - fe                    # the error narrowing
        bsh = fa                                 # the bias aligned to a product (fw + fa - fb)
        sp = softmax_pieces(net)
        dc, npc, ysh = sp.clamp, sp.pieces, sp.y_shift
        cb = _bits(C - 1)
        PB = max(1, (P - 1).bit_length())        # bits of a lane index

        # ---- widths ----
        wl2 = wa + 1 + max(0, fe - fa)
        wm = max(qw.width, qe.width, 0 if ce else wl2)      # an M lane
        # A is 16 bits for 16-bit formats: the DSP block then holds the product and the accumulator
        wA = max(16, qw.width, qe.width, wm)
        wB = max(wa + 2, 9, kB + 2)
        nmax, cimax, cnmax = max(Y.n), max(Y.ci), max(Y.cn)
        terms_max = max(_terms(net, l) for l in range(L))
        # the largest |sum| a lane accumulates, by phase (the DSP block's accumulator is 32 bits)
        hw_, ha_ = 1 << (qw.width - 1), 1 << (wa - 1)
        bound = max(hw_ * ha_ * cimax + (1 << (wm - 1 + fa)) + (1 << fw), hw_ << kB, ha_ * ha_ * cnmax,
                    (1 << (P_FRAC - 1)) * (4 * ha_) * (C + 3) + (1 << max(kG, 0)),
                    (1 << (wA - 1)) * (2 * ha_) * terms_max + (1 << max(kW, 0)),
                    (1 << (wm - 1)) * (1 << kB) * terms_max + (1 << max(kW, 0)))
        wr = bound.bit_length() + 1
        # the adder tree sums dot products only (FWD, READ, TH): its width is theirs, the bias added
        dotb = (1 << fw) + (1 << (wm - 1 + fa)) + P * max(hw_ * ha_ * cimax, ha_ * ha_ * cnmax)
        wt = min(wr + _bits(P), dotb.bit_length() + 1)
        s_w = 2 * wa + _bits(nmax) + 2
        MW = -(-max(P * wm, 32) // wm) * wm
        AW = -(-max(P * wa, s_w, P_FRAC + 2) // wa) * wa
        ML, AL = MW // wm, AW // wa
        same_fmt = qe.width == qw.width          # a saturation depends on the width only

        # ---- memories ----
        wimg, mimg, aimg = self._images(wm)
        wrd, wwr = [], []
        for p in range(P):
            mem = Memory(shape=signed(qw.width), depth=Y.wdepth, init=wimg[p], attrs=BLOCK_RAM)
            m.submodules[f"w{p}"] = mem
            wrd.append(mem.read_port())
            wwr.append(mem.write_port())
        mmem = m.submodules.mmem = Memory(shape=unsigned(MW), depth=Y.mdepth, init=mimg, attrs=BLOCK_RAM)
        mrd, mwr = mmem.read_port(), mmem.write_port(granularity=wm)
        cmem = m.submodules.cache = Memory(shape=unsigned(P * wa), depth=Y.cdepth, init=[], attrs=BLOCK_RAM)
        crd, cwr = cmem.read_port(), cmem.write_port(granularity=wa)
        amem = m.submodules.act = Memory(shape=unsigned(AW), depth=Y.adepth, init=aimg, attrs=BLOCK_RAM)
        ard, awr = amem.read_port(), amem.write_port(granularity=wa)
        W_l = [wrd[p].data for p in range(P)]
        M_l = [mrd.data[p * wm:(p + 1) * wm].as_signed() for p in range(ML)]
        C_l = [crd.data[p * wa:(p + 1) * wa].as_signed() for p in range(P)]
        A_l = [ard.data[p * wa:(p + 1) * wa].as_signed() for p in range(P)]

        # ---- per-layer constants (indexed by the current layer) ----
        lay = Signal(range(max(2, L)))

        def lut(vals, sel=None):
            sel = lay if sel is None else sel
            if all(v == vals[0] for v in vals):
                return Const(int(vals[0]), unsigned(_bits(max(vals[0], 1))))
            return Array(Const(int(v), unsigned(_bits(max(max(vals), 1)))) for v in vals)[sel]

        cls = Signal(range(max(2, C)), name="cls")
        train = Signal(name="train")
        mreg = Signal(range(max(2, C)), name="mreg")
        cur = Signal()                           # the x half of the current sample
        L_ci, L_cn, L_n = lut(Y.ci), lut(Y.cn), lut(Y.n)
        L_terms = lut([_terms(net, l) for l in range(L)])
        L_first, L_last = lay == 0, lay == L - 1
        L_wbase, L_bbase, L_tbase = lut(Y.wbase), lut(Y.bbase), lut(Y.tbase)
        L_hout, L_ttout = lut(Y.hbase), lut(Y.ttbase)
        L_tprev = lut([Y.tbase[l - 1] if l else 0 for l in range(L)])
        xin = Signal(range(Y.adepth))            # the layer input x: the sample's half, or h_(l-1)
        ttin = lut([Y.ttbase[l - 1] if l else 0 for l in range(L)])
        m.d.comb += xin.eq(Mux(L_first, Mux(cur, Y.xbase[1], Y.xbase[0]), lut([Y.hbase[l - 1] if l else 0
                                                                               for l in range(L)])))
        # rows: T_l[c] (cache, within T_l), T_(l-1)[m] (Tin_l[m]), R[c], R[m] (within R)
        rowc = Signal(range(C * cnmax + 1))
        rowm = Signal(range(C * cnmax + 1))
        m.d.comb += [rowc.eq(Array(mul_const(cls, Y.cn[l]) for l in range(L))[lay]),
                     rowm.eq(Array(mul_const(mreg, Y.cn[l - 1] if l else Y.cn[0]) for l in range(L))[lay])]
        # a row plus a chunk index (< that row's cn): an OR when every cn is a power of two
        pow2_rows = all(c & (c - 1) == 0 for c in Y.cn)

        def radd(row, i):
            if pow2_rows:
                return row | Value.cast(i)[:max(1, (max(Y.cn) - 1).bit_length())]
            return row + i

        # ---- S0: the issue (combinational, from the FSM) ----
        i_v, i_ph, i_sub = Signal(name="i_v"), Signal(3, name="i_ph"), Signal(2, name="i_sub")
        i_first, i_last = Signal(name="i_first"), Signal(name="i_last")
        i_idx = Signal(range(max(2, C, cnmax) + 1), name="i_idx")
        i_lane = Signal(range(max(2, P)), name="i_lane")
        i_isc, i_ism = Signal(name="i_isc"), Signal(name="i_ism")
        i_d, i_neg = Signal(2, name="i_d"), Signal(name="i_neg")
        # GRAD: the kind of A, B's shift, zero and source
        i_ak = Signal(3, name="i_ak")
        i_bs = Signal(2, name="i_bs")
        i_bz = Signal(name="i_bz")
        i_bc = Signal(name="i_bc")

        def stage(name, srcs):
            out = []
            for s in srcs:
                r = Signal.like(s, name=f"{s.name}_{name}")
                m.d.sync += r.eq(s)
                out.append(r)
            return out
        # S1 operands and product, S2 accumulate, S3 results (S4 for VEC), S4 writes of FWD
        v1, ph1, sub1, first1, last1, idx1, lane1, isc1, ism1, d1, neg1 = stage(
            "s1", [i_v, i_ph, i_sub, i_first, i_last, i_idx, i_lane, i_isc, i_ism, i_d, i_neg])
        ak1, bs1_ = stage("s1", [i_ak, i_bs])
        v2, ph2, sub2, first2, last2, idx2, lane2 = stage("s2", [v1, ph1, sub1, first1, last1, idx1, lane1])
        v3, ph3, sub3, last3, idx3, lane3 = stage("s3", [v2, ph2, sub2, last2, idx2, lane2])
        v4, ph4, sub4, last4, idx4, lane4 = stage("s4", [v3, ph3, sub3, last3, idx3, lane3])

        # ---- read ports ----
        w_ra, w_re = Signal.like(wrd[0].addr, name="w_ra"), Signal(name="w_re")
        c_ra, c_re = Signal.like(crd.addr, name="c_ra"), Signal(name="c_re")
        a_ra, a_re = Signal.like(ard.addr, name="a_ra"), Signal(name="a_re")
        m_ra, m_re = Signal.like(mrd.addr, name="m_ra"), Signal(name="m_re")
        for p in range(P):
            m.d.comb += [wrd[p].addr.eq(w_ra), wrd[p].en.eq(w_re)]
        m.d.comb += [crd.addr.eq(c_ra), crd.en.eq(c_re), ard.addr.eq(a_ra), ard.en.eq(a_re),
                     mrd.addr.eq(m_ra), mrd.en.eq(m_re)]
        # write ports (the deserializer takes the act port in cycles the datapath leaves free)
        a_we = Signal(name="a_we")
        a_addr = Signal.like(awr.addr, name="a_addr")
        a_lanes = Signal(AL, name="a_lanes")
        a_data = Signal(AW, name="a_data")
        m_we = Signal(name="m_we")
        m_addr = Signal.like(mwr.addr, name="m_addr")
        m_lanes = Signal(ML, name="m_lanes")
        m_data = Signal(MW, name="m_data")
        c_we = Signal(name="c_we")
        c_addr = Signal.like(cwr.addr, name="c_addr")
        c_lanes = Signal(P, name="c_lanes")
        c_data = Signal(P * wa, name="c_data")
        m.d.comb += [mwr.addr.eq(m_addr), mwr.data.eq(m_data), mwr.en.eq(Mux(m_we, m_lanes, 0)),
                     cwr.addr.eq(c_addr), cwr.data.eq(c_data), cwr.en.eq(Mux(c_we, c_lanes, 0))]
        # the written values, one narrow select each: act a word (s, y, e, p) or one lane (h, t, x);
        # M the lanes' outputs, a 32-bit counter, or one lane (an l2 delta, the state port); the cache
        # a copied word or one lane
        a_word = Signal(max(s_w, P_FRAC + 1), name="a_word")
        a_isword = Signal(name="a_isword")
        a_lane = Signal(wa, name="a_lane")
        m_isout = Signal(name="m_isout")
        m_iscnt = Signal(name="m_iscnt")
        m_cnt = Signal(32, name="m_cnt")
        m_lane = Signal(wm, name="m_lane")
        c_iscopy, c_lane = Signal(name="c_iscopy"), Signal(wa, name="c_lane")

        def rep(v, w, n):
            return Cat(*([_fit(v, w)] * n))

        # ---- S1: operands, one multiplier per lane (the product registered) ----
        # GRAD works on the 15 low bits of p (exact in a 16-bit operand): -err_k = -(p_k mod 2^15)
        # - 2^15 beta_k with beta_k = (p_k >> 15) - 2 y_k; the classes with beta != 0 (c, and at most
        # two others with p >= 1/2) get one more product, 2^14 (2 |beta_c|) T or -2^15 beta T
        pcn = Signal(signed(16))                 # -(p_c mod 2^15)
        bcc = Signal(2)                          # |beta_c| = 2 - (p_c >> 15)
        kx = [Signal(range(max(2, C)), name=f"kx{i}") for i in range(2)]
        bx = [Signal(name=f"bx{i}") for i in range(2)]          # beta - 1 of the other classes
        nx = Signal(2)
        rb_active = Signal()
        rkind = Signal(3)                        # 0 W, 1 M lane, 2 cache, 3 counter register, 4 M counter
        rb_lane1 = Signal(range(max(4, ML)))
        # the sources (the multipliers' A at S1, the state port, the output unit's base at S3/S4):
        # 0 W, 1 cache, 2 M, 3 zero (GRAD's base), decoded a cycle ahead and registered, so no
        # control logic sits between the block RAMs' data and the lanes
        src_sel, src_nxt = Signal(2, name="src_sel"), Signal(2, name="src_nxt")
        with m.If(rb_active):
            m.d.comb += src_nxt.eq(Mux(rkind == 2, 1, Mux(rkind == 0, 0, 2)))
        with m.Elif(v2 & (ph2 == _UPD)):
            m.d.comb += src_nxt.eq(0)
        with m.Elif(v2 & (ph2 == _GRAD)):
            m.d.comb += src_nxt.eq(3)
        with m.Elif((i_v & (i_ph == _VEC)) | (v3 & (ph3 == _VEC))):
            m.d.comb += src_nxt.eq(2)
        with m.Elif(i_v & ((i_ph == _READ) | (i_ph == _TH))):
            m.d.comb += src_nxt.eq(1)
        m.d.sync += src_sel.eq(src_nxt)
        src = []
        for p in range(P):
            s = Signal(signed(wA), name=f"src{p}")
            with m.Switch(src_sel):
                with m.Case(0):
                    m.d.comb += s.eq(W_l[p])
                with m.Case(1):
                    m.d.comb += s.eq(C_l[p])
                with m.Case(2):
                    m.d.comb += s.eq(M_l[p])
            src.append(s)
        # one lane of an M word at S1: a row's bias (FWD), a row's delta (UPD)
        sel = Signal(signed(wm))
        m.d.comb += sel.eq(Array(M_l[:P])[lane1] if P > 1 else M_l[0])
        # one lane of the sources (the state port)
        rsel = Signal(signed(wA))
        m.d.comb += rsel.eq(Array(src)[rb_lane1[:PB]] if P > 1 else src[0])
        # the broadcast operand: UPD's deltas (their M word read with every issue, so no registers
        # hold them; d_tm = -g m_m is g m_m times -Tin[m], the negation on B), GRAD's -errors
        scalar = Signal(signed(wA))
        with m.If(ph1 == _GRAD):
            with m.Switch(ak1):
                with m.Case(0):
                    m.d.comb += scalar.eq(ard.data[:16].as_signed())     # -(p_k mod 2^15), as stored
                with m.Case(1):
                    m.d.comb += scalar.eq(1 << (P_FRAC - 2))
                with m.Case(2):
                    m.d.comb += scalar.eq(-(1 << (P_FRAC - 1)))
                with m.Case(3):
                    m.d.comb += scalar.eq(pcn)
        with m.Else():
            m.d.comb += scalar.eq(sel)
        # B's controls, decoded at S0 and registered: the cache (else act), zero, the VEC constant
        b_c1, b_z1, b_k1 = Signal(name="b_c1"), Signal(name="b_z1"), Signal(name="b_k1")
        m.d.sync += [b_c1.eq(((i_ph == _GRAD) & i_bc) | ((i_ph == _UPD) & (i_d == 2))),
                     b_z1.eq(((i_ph == _FWD) & (i_sub == 2)) | ((i_ph == _GRAD) & i_bz)),
                     b_k1.eq(i_ph == _VEC)]
        b_n1 = Signal(name="b_n1")               # the cache negated (UPD's d_tm term)
        m.d.sync += b_n1.eq((i_ph == _UPD) & (i_d == 2))
        bsh1 = bs1_
        bk = Signal(signed(wB))                  # VEC's constant, +-2^kB (0 otherwise)
        m.d.comb += bk.eq(Mux(b_k1 & ~b_z1, Mux(neg1, -(1 << kB), 1 << kB), 0))
        sm_v = Signal()
        sm_a, sm_b = Signal(unsigned(P_FRAC), name="sm_a"), Signal(unsigned(8), name="sm_b")
        bcast = (ph1 == _GRAD) | (ph1 == _UPD)
        prod = []
        for p in range(P):
            ma, mb = Signal(signed(wA), name=f"ma{p}"), Signal(signed(wB), name=f"mb{p}")
            m.d.comb += ma.eq(Mux(bcast, scalar, src[p]))
            bsrc = Signal(signed(wB), name=f"bsrc{p}")
            m.d.comb += bsrc.eq(Mux(b_z1 | b_k1, 0, Mux(b_c1, Mux(b_n1, -C_l[p], C_l[p]), A_l[p])))   # 0: zero, VEC
            bshd = Signal(signed(wB), name=f"bshd{p}")
            m.d.comb += bshd.eq(Mux(bsh1[1], bsrc << 2, Mux(bsh1[0], bsrc << 1, bsrc)))
            m.d.comb += mb.eq(bshd | bk)
            if p == 0:
                with m.If(sm_v):
                    m.d.comb += [ma.eq(sm_a), mb.eq(sm_b)]
            pr_ = Signal(signed(wA + wB), name=f"prod{p}", reset_less=True)
            m.d.sync += pr_.eq(ma * mb)
            prod.append(pr_)

        def inside(v):                           # a wa-bit value: neither bound (no comparator)
            v = Value.cast(v)
            if len(v) == wa and v.shape().signed and (qa.min_int, qa.max_int) == (-ha_, ha_ - 1):
                return (v != qa.min_int) & (v != qa.max_int)
            return (v > qa.min_int) & (v < qa.max_int)
        # GRAD's masks: f'(t) at k == c, f'(T[m]) at k == m (sum steps), f'(h) at the first g step
        mt_n, mm_n, mt_c, mm_c, mh = (Signal(P, name=nm) for nm in ("mt_n", "mm_n", "mt_c", "mm_c", "mh"))
        with m.If(v1 & (ph1 == _GRAD)):
            with m.If((sub1 == 0) & isc1):
                m.d.sync += mt_n.eq(Cat(*(inside(C_l[p]) for p in range(P))))
            with m.If((sub1 == 0) & ism1):
                m.d.sync += mm_n.eq(Cat(*(inside(C_l[p]) for p in range(P))))
            with m.If(ak1 == 3):
                m.d.sync += [mh.eq(Cat(*(inside(A_l[p]) for p in range(P)))), mt_c.eq(mt_n), mm_c.eq(mm_n)]

        # ---- S2: accumulate; late reads (W for UPD, M for the FWD bias and the VEC target) ----
        half_w = (1 << (kW - 1)) if kW > 0 else 0
        half_g = (1 << (kG - 1)) if kG > 0 else 0
        racc = [Signal(signed(wr), name=f"racc{p}", reset_less=True) for p in range(P)]
        start = Signal(signed(wr))
        m.d.comb += start.eq(Mux(ph2 == _GRAD, half_g, Mux((ph2 == _UPD) | (ph2 == _VEC), half_w, 0)))
        # FWD: lane 0 starts a row from its bias (read with the row's first issue, held from S1),
        # lane 1 (or 0 too, with one lane) from the rounding half (fw + fa fraction bits narrowed to fa)
        half_f = 1 << (fw - 1) if fw > 0 else 0
        bias_r = Signal(signed(wm), name="bias_r")
        with m.If(v1 & first1 & (ph1 == _FWD)):
            m.d.sync += bias_r.eq(sel)
        starts = [Signal(signed(wr), name=f"start{p}") for p in range(min(P, 2))]
        m.d.comb += starts[0].eq(Mux(ph2 == _FWD, (bias_r << bsh) + (half_f if P == 1 else 0), start))
        if P > 1:
            m.d.comb += starts[1].eq(Mux(ph2 == _FWD, half_f, start))
        with m.If(v2):
            for p in range(P):
                m.d.sync += racc[p].eq(Mux(first2, starts[p] if p < 2 else start, racc[p]) + prod[p])
        tree = Signal(signed(wt))
        m.d.comb += tree.eq(sum(racc))
        wptr = Signal(range(Y.wdepth + 1))       # UPD: the W word read at S2, written at S3
        waddr3 = Signal.like(wptr)
        taddr4 = Signal.like(m_ra)
        upd3, vec4 = Signal(name="upd3"), Signal(name="vec4")
        m.d.sync += [upd3.eq(0), vec4.eq(0)]
        late_m = Signal()
        late_maddr = Signal.like(m_ra)
        late_w = Signal()
        m.d.comb += late_w.eq(v2 & last2 & (ph2 == _UPD))
        with m.If(late_w):
            m.d.sync += [waddr3.eq(wptr), wptr.eq(wptr + 1), upd3.eq(1)]
        # VEC: the target is read at S3 (the chunk's sums stay in racc a cycle longer), its address
        # decoded at S2 and registered
        late_m3, late_ma3 = Signal(name="late_m3"), Signal.like(m_ra, name="late_ma3")
        m.d.sync += [late_m3.eq(v2 & last2 & (ph2 == _VEC)),
                     late_ma3.eq(Mux(sub2 == 0, L_bbase | idx2, Y.rbase | radd(Mux(sub2 == 1, rowc, rowm), idx2)))]
        with m.If(late_m3):
            m.d.comb += [late_m.eq(1), late_maddr.eq(late_ma3)]
            m.d.sync += [taddr4.eq(late_ma3), vec4.eq(1)]
        with m.If(late_w):
            m.d.comb += [w_ra.eq(wptr), w_re.eq(1)]
        with m.If(late_m):
            m.d.comb += [m_ra.eq(late_maddr), m_re.eq(1)]

        # ---- S3 (S4 for VEC): results ----
        best, bestm = Signal(signed(s_w), name="best"), Signal(signed(s_w), name="bestm")
        pred = Signal(range(max(2, C)))
        have_m = Signal()
        hv4, thold = Signal(signed(wa), name="hv4"), Signal(signed(wa), name="thold")
        pend_w = Signal(_bits(max(Y.n[l] * Y.ni[l] for l in range(L))) + 1)
        pend_b = Signal(_bits(nmax) + 1)
        pend_e = Signal(_bits(2 * nmax) + 1)
        pend_t = Signal(_bits(2 * Y.n[0]) + 1)
        flags, fkind = Signal(P, name="flags"), Signal(2, name="fkind")    # saturation flags, counted a cycle later
        fpend = Signal()                         # flags were registered (whatever their value)
        m.d.sync += [flags.eq(0), fpend.eq(0)]
        # FWD: h or t = f(sum + b), the bias and the rounding half in the sum (lane 0's and 1's starts)
        with m.If(v3 & last3 & (ph3 == _FWD)):
            m.d.sync += hv4.eq(_sat_zero(_rshift_even(tree, fw), qa, Const(0, 1))[0])
        with m.If(v4 & last4 & (ph4 == _FWD)):
            m.d.comb += [a_we.eq(1), a_addr.eq(Mux(sub4 == 0, L_hout, L_ttout) | idx4), a_lanes.eq(1 << lane4),
                         a_lane.eq(hv4)]
            with m.If(sub4 != 0):
                m.d.sync += thold.eq(hv4)
                with m.If(~L_last):
                    m.d.comb += [c_we.eq(1), c_addr.eq(L_tbase | radd(rowc, idx4)), c_lanes.eq(1 << lane4),
                                 c_lane.eq(hv4)]
            if not ce:
                with m.If((sub4 == 0) & train):
                    diff = hv4 - thold
                    dl2 = (diff << (fe - fa)) if fe >= fa else round_shift(diff, fa - fe, "nearest")
                    m.d.comb += [m_we.eq(1), m_addr.eq(Y.dh | idx4), m_lanes.eq(1 << lane4),
                                 m_lane.eq(Mux(inside(hv4), dl2, 0))]
        # READ, TH: the logits; best is max(s) for the softmax (the prediction is kept in pred)
        # (the sum registered: compared and written at S4)
        s4 = Signal(signed(s_w), name="s4", reset_less=True)
        m.d.sync += s4.eq(tree)
        with m.If(v4 & last4 & (ph4 == _READ)):
            with m.If((idx4 == 0) | (s4 > best)):
                m.d.sync += [best.eq(s4), pred.eq(idx4)]
            with m.If((idx4 != cls) & (~have_m | (s4 > bestm))):
                m.d.sync += [bestm.eq(s4), mreg.eq(idx4), have_m.eq(1)]
            if ce:
                with m.If(train):
                    m.d.comb += [a_we.eq(1), a_addr.eq(Y.sbase | idx4), a_lanes.eq((1 << AL) - 1),
                                 a_isword.eq(1), a_word.eq(s4)]
        with m.If(v4 & last4 & (ph4 == _TH)):
            m.d.comb += [a_we.eq(1), a_addr.eq(Y.sbase | cls), a_lanes.eq((1 << AL) - 1), a_isword.eq(1), a_word.eq(s4)]
            m.d.sync += best.eq(Mux(s4 > bestm, s4, bestm))
        # one output unit per lane: sat(base - round(racc >> k)): W, b, R (base the old value, k = kW),
        # or a delta (base 0, k = kG; GRAD accumulated minus the sum), masked by f'
        grad3 = v3 & last3 & (ph3 == _GRAD)
        isG = Signal()
        m.d.comb += isG.eq(ph3 == _GRAD)
        mk = Signal(P)
        m.d.comb += mk.eq(Mux(sub3 == 0, mh, Mux(sub3 == 1, mt_c, mm_c)))
        outs, ovfs = [], []
        for p in range(P):
            if kG == kW:
                q = _rshift_even(racc[p], kW)
            else:
                q = Mux(isG, _rshift_even(racc[p], kG), _rshift_even(racc[p], kW))
            # the base: the old weight (UPD, read at S2), the old bias or table word (VEC, read at
            # S3), or 0 (GRAD)
            diff = Signal(signed(max(wA, len(q)) + 1), name=f"udiff{p}")
            m.d.comb += diff.eq(src[p] - q)
            zero = isG & ~mk[p]
            if same_fmt:
                ov, oo = _sat_zero(diff, qw, zero)
            else:
                v1_, o1_ = _sat_zero(diff, qw, zero)
                v2_, o2_ = _sat_zero(diff, qe, zero)
                ov, oo = Mux(isG, v2_, v1_), Mux(isG, o2_, o1_)
            o = Signal(signed(wm), name=f"out{p}", reset_less=True)     # written a cycle later
            m.d.sync += o.eq(ov)
            outs.append(o)
            ovfs.append(oo)
        # (a VEC target's address stays in taddr4 until the next chunk's target is read, at S5 or later)
        grad4, upd4, vec5 = Signal(name="grad4"), Signal(name="upd4"), Signal(name="vec5")
        waddr4 = Signal.like(waddr3, name="waddr4")
        m.d.sync += [grad4.eq(grad3), upd4.eq(upd3), vec5.eq(vec4), waddr4.eq(waddr3)]
        with m.If(grad4):
            m.d.comb += [m_we.eq(1), m_addr.eq(Mux(sub4 == 0, Y.dh, Mux(sub4 == 1, Y.dtc, Y.dtm)) | idx4),
                         m_lanes.eq((1 << P) - 1), m_isout.eq(1)]
        with m.If(grad3):
            with m.If(sub3 != 2):
                m.d.sync += [flags.eq(Cat(*ovfs)), fkind.eq(2), fpend.eq(1)]
        w_we, w_waddr, w_wlane = Signal(name="w_we"), Signal.like(waddr3, name="w_waddr"), Signal(P, name="w_wlane")
        m.d.comb += [w_we.eq(upd4), w_waddr.eq(waddr4), w_wlane.eq((1 << P) - 1)]
        for p in range(P):     # bank p takes M's lane p (the lane's output, or the state port's word)
            m.d.comb += [wwr[p].addr.eq(w_waddr), wwr[p].data.eq(m_data[p * wm:p * wm + qw.width]),
                         wwr[p].en.eq(w_we & w_wlane[p])]
        with m.If(upd4):
            m.d.comb += m_isout.eq(1)
        with m.If(upd3):
            m.d.sync += [flags.eq(Cat(*ovfs)), fkind.eq(0), fpend.eq(1)]
        with m.If(vec5):
            m.d.comb += [m_we.eq(1), m_addr.eq(taddr4), m_lanes.eq((1 << P) - 1), m_isout.eq(1)]
        with m.If(vec4):
            m.d.sync += [flags.eq(Cat(*ovfs)), fkind.eq(Mux(sub4 == 0, 1, 3)), fpend.eq(1)]
        cnt = Signal(range(P + 1))
        m.d.comb += cnt.eq(sum(flags[p] for p in range(P)))
        with m.Switch(fkind):
            with m.Case(0):
                m.d.sync += pend_w.eq(pend_w + cnt)
            with m.Case(1):
                m.d.sync += pend_b.eq(pend_b + cnt)
            with m.Case(2):
                m.d.sync += pend_e.eq(pend_e + cnt)
            with m.Case(3):
                m.d.sync += pend_t.eq(pend_t + cnt)

        # ---- the softmax (its products on lane 0; sacc is also the divider's remainder) ----
        xt_in, pt_in = Signal(name="xt_in"), Signal(name="pt_in")
        XT = npc + 3
        xt, pt, e16r = Signal(XT, name="xt"), Signal(4, name="pt"), Signal(3, name="e16r")
        e16_in = Signal()
        m.d.sync += [xt.eq(Cat(xt_in, xt[:-1])), pt.eq(Cat(pt_in, pt[:-1])), e16r.eq(Cat(e16_in, e16r[:-1]))]
        smp, smf, sminit = Signal(name="smp"), Signal(name="smf"), Signal(name="sminit")
        sm_first, sm_pmode = Signal(name="sm_first"), Signal(name="sm_pmode")
        m.d.sync += [smp.eq(sm_v), smf.eq(sm_first), sminit.eq(sm_first & sm_pmode)]
        sacc = Signal(max(27, _bits(C << (P_FRAC + 1)) + 2))
        sm_total = Signal(_bits(C << P_FRAC) + 1)
        sm_r = Signal(_Q_BITS)
        sm_bit = Signal(range(_Q_BITS + 1))
        ks, kw = Signal(range(C + 1), name="ks"), Signal(range(C + 1), name="kw")
        ipr = Signal(5)
        e_rd = ard.data[:P_FRAC + 1]
        with m.If(smp):
            m.d.sync += sacc.eq(Mux(smf, Mux(sminit & sm_r[0], e_rd, 0), sacc >> 8) + (prod[0].as_unsigned()[:26] << 1))
        # pass 1: y_k = floor((max(s) - s_k) log2(e) 2^-(f + 10)), d clamped, npc 8-bit pieces
        dval = Signal(s_w + 1)
        m.d.comb += dval.eq(best - ard.data[:s_w].as_signed())
        dcl = Signal(8 * npc)

        def y_of(dv):                            # the pieces' arithmetic: (sacc, y) for a d
            acc = 0
            for i in range(npc):
                acc = (0 if i == 0 else acc >> 8) + ((LOG2E_Q16 // 4) * ((dv >> 8 * i) & 255) << 1)
            return acc, acc >> ysh
        dtop = (1 << s_w) - 1                    # d < 2^s_w: both logits are s_w-bit
        # no clamp needed when every d fits the pieces, y stays in range, and y (monotonic in d)
        # already reaches e = 0 at the clamp
        if (s_w <= 8 * npc and y_of(dtop)[0] < (1 << len(sacc)) and y_of(dtop)[1] < (1 << 16)
                and y_of(dc)[1] >> EXP2_FRAC_BITS >= P_FRAC + 1):
            m.d.comb += dcl.eq(dval)
        else:
            m.d.comb += dcl.eq(Mux(dval >= dc, dc, dval))
        for i in range(npc):
            with m.If(xt[i]):
                m.d.comb += [sm_v.eq(1), sm_first.eq(i == 0), sm_a.eq(LOG2E_Q16 // 4), sm_b.eq(dcl[8 * i:8 * i + 8])]
        # then e_k = table[y_k mod 64] >> (y_k / 64) (0 from 17): the table is in M, read while the
        # next logits come from act
        yv = Signal(16)
        m.d.comb += yv.eq(sacc >> ysh)
        with m.If(xt[npc + 1]):
            m.d.comb += [m_ra.eq(Y.tab | yv[:EXP2_FRAC_BITS]), m_re.eq(1)]
            m.d.sync += ipr.eq(Mux(_uge(yv[EXP2_FRAC_BITS:], P_FRAC + 1), P_FRAC + 1,
                                   yv[EXP2_FRAC_BITS:EXP2_FRAC_BITS + 5]))
        eval_ = Signal(P_FRAC + 1)
        m.d.comb += eval_.eq(Mux(_uge(ipr, P_FRAC + 1), 0, mrd.data[:P_FRAC + 1] >> ipr))
        with m.If(xt[npc + 2]):
            m.d.comb += [a_we.eq(1), a_addr.eq(Y.ebase | kw), a_lanes.eq((1 << AL) - 1), a_isword.eq(1),
                         a_word.eq(eval_)]
            m.d.sync += [sm_total.eq(sm_total + eval_), kw.eq(kw + 1)]
        # the p pass: p = e r >> 16 = ((r & 1) e + 2 (r >> 1) e) >> 16 over the bytes of e; e = 1.0: p = r
        with m.If(pt[0] & sm_pmode):
            m.d.comb += [e16_in.eq(e_rd[P_FRAC]), sm_v.eq(1), sm_first.eq(1), sm_a.eq(sm_r[1:]), sm_b.eq(e_rd[:8])]
        with m.If(pt[1] & sm_pmode):
            m.d.comb += [sm_v.eq(1), sm_a.eq(sm_r[1:]), sm_b.eq(e_rd[8:16])]
        pval = Signal(P_FRAC + 1)
        m.d.comb += pval.eq(Mux(e16r[2], sm_r, sacc >> 8))
        pneg = Signal(signed(16))                # -(p mod 2^15): what GRAD multiplies by
        m.d.comb += pneg.eq(-pval[:P_FRAC - 1])
        with m.If(pt[3] & sm_pmode):
            m.d.comb += [a_we.eq(1), a_addr.eq(Y.pbase | kw), a_lanes.eq((1 << AL) - 1), a_isword.eq(1),
                         a_word.eq(pneg)]
            m.d.sync += kw.eq(kw + 1)
            with m.If(kw == cls):
                m.d.sync += [pcn.eq(pneg), bcc.eq(2 - pval[P_FRAC - 1:])]
            with m.Elif(pval[P_FRAC - 1:] != 0):
                m.d.sync += [Array(kx)[nx[0]].eq(kw), Array(bx)[nx[0]].eq(pval[P_FRAC - 1:] == 2), nx.eq(nx + 1)]

        # ---- the deserializer (fills the other x half while a sample runs) ----
        label, ltrain, full = Signal(cb, name="label"), Signal(name="ltrain"), Signal(name="full")
        nin = Y.ni[0]
        idx = Signal(range(nin + 1))
        iq, ir = Signal(range(Y.ci[0] + 1), name="iq"), Signal(range(max(2, P)), name="ir")
        wbuf, take = Signal(name="wbuf"), Signal(name="take")
        win = net.spec.precision.input.width
        des_we = Signal()
        # a feature is written at once when the datapath leaves the act port free, else held a
        # cycle or more (ready then drops): ready comes from registers only
        hv, hdata = Signal(name="des_hv"), Signal(win, name="des_hdata")
        des_data = Signal(win)
        m.d.comb += [self.i.ready.eq(~full & ~hv), des_data.eq(Mux(hv, hdata, self.i.payload.data[:win]))]
        with m.If(hv):
            with m.If(~a_we):
                m.d.comb += des_we.eq(1)
                m.d.sync += hv.eq(0)
        with m.If(des_we):
            with m.If(ir == P - 1):
                m.d.sync += [ir.eq(0), iq.eq(iq + 1)]
            with m.Else():
                m.d.sync += ir.eq(ir + 1)
        with m.If(self.i.valid & self.i.ready):
            with m.If(idx == nin):       # every feature is written (none is held)
                m.d.sync += [label.eq(self.i.payload.data), ltrain.eq(self.i.payload.train), full.eq(1), idx.eq(0),
                             iq.eq(0), ir.eq(0)]
            with m.Else():
                m.d.sync += idx.eq(idx + 1)
                with m.If(a_we):
                    m.d.sync += [hv.eq(1), hdata.eq(self.i.payload.data[:win])]
                with m.Else():
                    m.d.comb += des_we.eq(1)
        with m.If(take):
            m.d.sync += [full.eq(0), cur.eq(wbuf), wbuf.eq(~wbuf), cls.eq(label), train.eq(ltrain)]
        lane_v = Signal(wa)
        m.d.comb += [lane_v.eq(Mux(des_we, des_data, a_lane)),
                     a_data.eq(Mux(a_isword & ~des_we, _fit(a_word, AW), rep(lane_v, wa, AL))),
                     m_data.eq(Mux(m_isout, Cat(*(_fit(o, wm) for o in outs)),
                                   Mux(m_iscnt, _fit(m_cnt, MW), rep(m_lane, wm, ML)))),
                     c_data.eq(Mux(c_iscopy, ard.data[:P * wa], rep(c_lane, wa, P)))]
        m.d.comb += [awr.addr.eq(Mux(des_we, Mux(wbuf, Y.xbase[1], Y.xbase[0]) | iq, a_addr)),
                     awr.data.eq(a_data),
                     awr.en.eq(Mux(des_we, 1 << ir, Mux(a_we, a_lanes, 0)))]

        # ---- the sequencer ----
        ca = Signal(range(max(2, nmax, C, cnmax)), name="ca")          # rows, classes, chunks
        cb_ = Signal(range(max(2, cimax)), name="cb")                   # input chunks, the t/h pass
        cc = Signal(range(max(cimax, cnmax, C + 3, 4)), name="cc")      # chunks, GRAD steps, UPD terms
        jq, jr = Signal(range(cnmax + 1), name="jq"), Signal(range(max(2, P)), name="jr")
        wrow = Signal(range(Y.wdepth + 1))
        gp = Signal(range(C * cnmax + 1))
        slot = Signal(range(8))
        cp1, cpa1 = Signal(name="cp1"), Signal.like(crd.addr, name="cpa1")
        m.d.sync += cp1.eq(0)
        with m.If(cp1):
            m.d.comb += [c_we.eq(1), c_addr.eq(cpa1), c_lanes.eq((1 << P) - 1), c_iscopy.eq(1)]
        pipe_busy = Signal()
        m.d.comb += pipe_busy.eq(v1 | v2 | v3 | v4 | upd3 | vec4 | grad4 | upd4 | vec5 | fpend | cp1)
        lmax = max(sum(ph.values()) for ph in serial_cycles(net, P, 2)["layers"])
        lcyc = Signal(range(2 * lmax + 16))      # a layer's cycles (the FSM never stalls in a layer)
        m.d.sync += lcyc.eq(lcyc + 1)
        cmt = Signal(range(8))
        pred_valid = Signal()
        m.d.comb += self.o.valid.eq(pred_valid)
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += pred_valid.eq(0)
        pats = [_vec_slots(_terms(net, l)) for l in range(L)]

        def next_layer():
            with m.If(L_last):
                m.next = "FIN"
            with m.Else():
                m.d.sync += lay.eq(lay + 1)
                m.next = "FWD_INIT"

        def drain_then(name, go):
            with m.State(name):
                with m.If(~pipe_busy):
                    go()

        def go_upd():
            m.d.sync += [ca.eq(0), cb_.eq(0), cc.eq(0), jq.eq(0), jr.eq(0), wptr.eq(L_wbase)]
            m.next = "UPD"

        def go_smax():
            m.d.sync += [ks.eq(0), kw.eq(0), sm_total.eq(0), slot.eq(0)]
            m.next = "SM_Y"

        # how long a phase waits before the next: 0, until the last issue left S1 (1) or S2 (2),
        # or until the pipeline is empty (3), or until it left S3 (4) -- what the next phase reads or
        # shares decides
        def wait_then(name, level, go):
            with m.State(name):
                done = {1: ~v1, 2: ~v1 & ~v2, 3: ~pipe_busy, 4: ~v1 & ~v2 & ~v3}[level]
                with m.If(done):
                    go()
        fwd_nodrain = lut([int(Y.cn[l] >= 5) for l in range(L)])

        with m.FSM() as fsm:
            with m.State("IDLE"):
                m.d.comb += rb_active.eq(self.rb_en)
                with m.If(full & ~self.rb_en):
                    m.d.comb += take.eq(1)
                    m.d.sync += [lay.eq(0), ca.eq(0), cb_.eq(0), cc.eq(0), jq.eq(0), jr.eq(0), wrow.eq(Y.wbase[0]),
                                 lcyc.eq(1), have_m.eq(0)]
                    m.next = "FWD"
            # -------------------------------------------------------------- FWD
            with m.State("FWD_INIT"):
                m.d.sync += [ca.eq(0), cb_.eq(0), cc.eq(0), jq.eq(0), jr.eq(0), wrow.eq(L_wbase), lcyc.eq(1),
                             have_m.eq(0)]
                m.next = "FWD"
            def after_fwd(drained):
                m.d.sync += [ca.eq(0), cc.eq(0), gp.eq(0)]
                with m.If(train):
                    if ce:
                        m.next = "READ"
                    else:
                        with m.If(L_last):
                            m.next = "READ"
                        with m.Else():
                            if drained:
                                go_upd()
                            else:
                                m.next = "FWD_D"
                with m.Else():
                    with m.If(L_last):
                        m.next = "READ"
                    with m.Else():
                        if drained:      # the next layer's lookups change under in-flight writes
                            m.d.sync += lay.eq(lay + 1)
                            m.next = "FWD_INIT"
                        else:
                            m.next = "FWD_D"
            with m.State("FWD"):
                is_t = train & (cb_ == 0)
                t0 = is_t & L_first
                m.d.comb += [i_idx.eq(jq), i_lane.eq(jr), i_first.eq(cc == 0), i_ph.eq(_FWD)]
                with m.If(cc == 0):      # the bias, or (layer 0's target pass, no products) R[c][j]
                    m.d.comb += [m_ra.eq(Mux(t0, Y.rbase | radd(rowc, jq), L_bbase | jq)), m_re.eq(1)]
                with m.If(t0):
                    m.d.comb += [i_v.eq(1), i_sub.eq(2), i_last.eq(1)]
                with m.Else():
                    m.d.comb += [i_v.eq(1), i_sub.eq(Mux(is_t, 1, 0)), i_last.eq(cc == L_ci - 1),
                                 w_ra.eq(wrow + cc), w_re.eq(1),
                                 a_ra.eq(Mux(is_t, ttin, xin) | cc), a_re.eq(1)]
                with m.If(t0 | (cc == L_ci - 1)):
                    m.d.sync += cc.eq(0)
                    with m.If(is_t):
                        m.d.sync += cb_.eq(1)
                    with m.Else():
                        m.d.sync += [cb_.eq(0), wrow.eq(wrow + L_ci)]
                        with m.If(jr == P - 1):
                            m.d.sync += [jr.eq(0), jq.eq(jq + 1)]
                        with m.Else():
                            m.d.sync += jr.eq(jr + 1)
                        with m.If(ca == L_n - 1):
                            m.d.sync += ca.eq(0)
                            with m.If(fwd_nodrain):      # READ reads the last h chunk 5 cycles on
                                after_fwd(False)
                            with m.Else():
                                m.next = "FWD_D"
                        with m.Else():
                            m.d.sync += ca.eq(ca + 1)
                with m.Else():
                    m.d.sync += cc.eq(cc + 1)

            drain_then("FWD_D", lambda: after_fwd(True))
            # -------------------------------------------------------------- READ
            with m.State("READ"):
                m.d.comb += [i_v.eq(1), i_ph.eq(_READ), i_first.eq(cc == 0), i_last.eq(cc == L_cn - 1),
                             i_idx.eq(ca), c_ra.eq(L_tbase | gp), c_re.eq(1), a_ra.eq(L_hout | cc), a_re.eq(1)]
                m.d.sync += gp.eq(gp + 1)
                with m.If(cc == L_cn - 1):
                    m.d.sync += cc.eq(0)
                    with m.If(ca == C - 1):
                        m.d.sync += ca.eq(0)
                        with m.If(train):
                            with m.If(L_last):
                                m.next = "COPY"
                            with m.Else():
                                m.next = "READ_SM"
                        with m.Else():
                            m.next = "READ_FIN"
                    with m.Else():
                        m.d.sync += ca.eq(ca + 1)
                with m.Else():
                    m.d.sync += cc.eq(cc + 1)

            wait_then("READ_SM", 2, go_smax)     # max(s) settles at S4
            wait_then("READ_FIN", 4, lambda: setattr(m, "next", "FIN"))
            # -------------------------------------------------------------- COPY, TH (the last layer)
            with m.State("COPY"):
                m.d.comb += [a_ra.eq(L_ttout | cc), a_re.eq(1)]
                m.d.sync += [cp1.eq(1), cpa1.eq(L_tbase | radd(rowc, cc))]
                with m.If(cc == L_cn - 1):
                    m.d.sync += cc.eq(0)
                    m.next = "TH" if (ce and Y.cn[-1] >= 2) else "COPY_W"
                with m.Else():
                    m.d.sync += cc.eq(cc + 1)
            with m.State("COPY_W"):
                with m.If(~cp1):
                    if ce:
                        m.next = "TH"
                    else:
                        go_upd()
            with m.State("TH"):
                m.d.comb += [i_v.eq(1), i_ph.eq(_TH), i_first.eq(cc == 0), i_last.eq(cc == L_cn - 1),
                             c_ra.eq(L_tbase | radd(rowc, cc)), c_re.eq(1), a_ra.eq(L_hout | cc), a_re.eq(1)]
                with m.If(cc == L_cn - 1):
                    m.d.sync += cc.eq(0)
                    m.next = "TH_D"
                with m.Else():
                    m.d.sync += cc.eq(cc + 1)
            wait_then("TH_D", 4, go_smax)        # s_c lands at S4
            # -------------------------------------------------------------- SMAX
            with m.State("SM_Y"):
                with m.If((slot == 0) & ~_uge(ks, C)):
                    m.d.comb += [xt_in.eq(1), a_ra.eq(Y.sbase | ks), a_re.eq(1)]
                    m.d.sync += ks.eq(ks + 1)
                m.d.sync += slot.eq(Mux(slot == npc - 1, 0, slot + 1))
                with m.If(kw == C):
                    m.d.sync += [sacc.eq(1 << (RECIP_BITS - _Q_BITS)), sm_r.eq(0), sm_bit.eq(_Q_BITS)]
                    m.next = "SM_DIV"
            with m.State("SM_DIV"):
                r2 = Signal.like(sacc)
                m.d.comb += r2.eq(sacc << 1)
                with m.If(sm_bit == 0):
                    m.d.sync += [ks.eq(0), kw.eq(0), slot.eq(0), nx.eq(0)]
                    m.next = "SM_P"
                with m.Else():
                    m.d.sync += sm_bit.eq(sm_bit - 1)
                    with m.If(r2 >= sm_total):
                        m.d.sync += [sacc.eq(r2 - sm_total), sm_r.eq(Cat(Const(1, 1), sm_r[:-1]))]
                    with m.Else():
                        m.d.sync += [sacc.eq(r2), sm_r.eq(Cat(Const(0, 1), sm_r[:-1]))]
            with m.State("SM_P"):
                m.d.comb += sm_pmode.eq(1)
                with m.If((slot == 0) & ~_uge(ks, C)):
                    m.d.comb += [pt_in.eq(1), a_ra.eq(Y.ebase | ks), a_re.eq(1)]
                    m.d.sync += ks.eq(ks + 1)
                m.d.sync += slot.eq(~slot[0])
                with m.If(kw == C):
                    m.d.sync += [ca.eq(0), cc.eq(0), gp.eq(0)]
                    m.next = "GRAD"
            # -------------------------------------------------------------- GRAD
            cx = Signal()                        # GRAD: the correction product of class cc is next
            with m.State("GRAD"):
                k = cc
                is_c = k == cls
                is_x = [(nx > i) & (k == kx[i]) for i in range(2)]
                corr = is_c | is_x[0] | is_x[1]
                gend = C + (2 if push else 1)    # g_main, g_corr (-> d_tc)[, g_zero (-> g m_m)]
                m.d.comb += [i_v.eq(1), i_ph.eq(_GRAD), i_idx.eq(ca)]
                with m.If(~_uge(k, C)):
                    with m.If(~cx):               # -(p_k mod 2^15) T[k]
                        m.d.comb += [i_sub.eq(0), i_ak.eq(0), i_bc.eq(1), i_first.eq(k == 0),
                                     i_last.eq((k == C - 1) & ~corr), i_isc.eq(is_c), i_ism.eq(k == mreg),
                                     a_ra.eq(Y.pbase | k), a_re.eq(1), c_ra.eq(L_tbase | gp), c_re.eq(1)]
                        with m.If(corr):
                            m.d.sync += cx.eq(1)
                        with m.Else():
                            m.d.sync += [cc.eq(cc + 1), gp.eq(gp + L_cn)]
                    with m.Else():                # the correction, on the held T[k] chunk
                        m.d.comb += [i_sub.eq(0), i_ak.eq(Mux(is_c, 1, 2)), i_bc.eq(1), i_last.eq(k == C - 1),
                                     i_bs.eq(Mux(is_c, bcc, Mux(is_x[0], bx[0], bx[1]))),
                                     i_bz.eq(is_c & (bcc == 0))]
                        m.d.sync += [cx.eq(0), cc.eq(cc + 1), gp.eq(gp + L_cn)]
                with m.Elif(k == C):              # g: -(p_c mod 2^15) h, then 2^14 (2 |beta_c|) h
                    m.d.comb += [i_sub.eq(1), i_ak.eq(3), i_first.eq(1), a_ra.eq(L_hout | ca), a_re.eq(1)]
                    m.d.sync += cc.eq(cc + 1)
                with m.Elif(k == C + 1):
                    m.d.comb += [i_sub.eq(1), i_ak.eq(1), i_bs.eq(bcc), i_bz.eq(bcc == 0), i_last.eq(1)]
                    m.d.sync += cc.eq(cc + 1)
                with m.Else():                    # the same sum once more (A = 0): g m_m
                    m.d.comb += [i_sub.eq(2), i_ak.eq(4), i_bz.eq(1), i_last.eq(1)]
                with m.If(k == gend):
                    m.d.sync += [cc.eq(0), gp.eq(ca + 1)]
                    with m.If(ca == L_cn - 1):
                        m.d.sync += ca.eq(0)
                        with m.If(L_first):
                            m.next = "GRAD_D"
                        with m.Elif(lut([int(Y.cn[l] >= 2) for l in range(L)])):
                            go_upd()             # UPD starts on chunk 0's deltas, written long ago
                        with m.Else():
                            m.next = "GRAD_U"
                    with m.Else():
                        m.d.sync += ca.eq(ca + 1)

            def go_tab():
                m.d.sync += [ca.eq(0), cb_.eq(0), cc.eq(0), slot.eq(0)]
                m.next = "TAB"
            # TAB reads d_tc of chunk 0 (written a cycle after S3): without push, with one chunk, the
            # last issue writes it
            wait_then("GRAD_D", 2 if (push or Y.cn[0] >= 2) else 4, go_tab)
            wait_then("GRAD_U", 3, go_upd)       # TAB's operands come through the sources at S1
            # -------------------------------------------------------------- TAB (layer 0)
            with m.State("TAB"):
                with m.If(slot == 0):
                    m.d.comb += [i_v.eq(1), i_ph.eq(_VEC), i_sub.eq(Mux(cb_ == 0, 1, 2)), i_first.eq(1),
                                 i_last.eq(1), i_idx.eq(ca), i_neg.eq(cb_ == 1),
                                 m_ra.eq(Mux(cb_ == 0, Y.dtc, Y.dtm) | ca), m_re.eq(1)]
                m.d.sync += slot.eq(~slot[0])
                with m.If(slot == 1):
                    with m.If(ca == Y.cn[0] - 1):
                        m.d.sync += ca.eq(0)
                        with m.If((cb_ == 1) if push else Const(1)):
                            m.next = "TAB_D"
                        with m.Else():
                            m.d.sync += cb_.eq(1)
                    with m.Else():
                        m.d.sync += ca.eq(ca + 1)
            wait_then("TAB_D", 2, go_upd)        # the last R word is read late, at S3
            # -------------------------------------------------------------- UPD
            with m.State("UPD"):
                d = cc
                m.d.comb += [i_v.eq(1), i_ph.eq(_UPD), i_first.eq(d == 0), i_last.eq(d == L_terms - 1),
                             i_d.eq(d), i_lane.eq(jr),
                             m_ra.eq(Mux(d == 0, Y.dh, Mux(d == 1, Y.dtc, Y.dtm)) | jq), m_re.eq(1)]
                with m.If(d == 2):
                    m.d.comb += [c_ra.eq(L_tprev | radd(rowm, cb_)), c_re.eq(1)]
                with m.Else():
                    m.d.comb += [a_ra.eq(Mux(d == 0, xin, ttin) | cb_), a_re.eq(1)]
                with m.If(d == L_terms - 1):
                    m.d.sync += cc.eq(0)
                    with m.If(cb_ == L_ci - 1):
                        m.d.sync += cb_.eq(0)
                        with m.If(jr == P - 1):
                            m.d.sync += [jr.eq(0), jq.eq(jq + 1)]
                        with m.Else():
                            m.d.sync += jr.eq(jr + 1)
                        with m.If(ca == L_n - 1):
                            m.d.sync += ca.eq(0)
                            m.next = "UPD_D"
                        with m.Else():
                            m.d.sync += ca.eq(ca + 1)
                    with m.Else():
                        m.d.sync += cb_.eq(cb_ + 1)
                with m.Else():
                    m.d.sync += cc.eq(cc + 1)

            def after_upd():
                m.d.sync += [ca.eq(0), slot.eq(0)]
                m.next = "BIAS"
            wait_then("UPD_D", 1, after_upd)     # BIAS's operands come through the sources at S1
            # -------------------------------------------------------------- BIAS
            with m.State("BIAS"):
                per = lut([pp for pp, _ in pats])
                with m.Switch(lay):
                    for l in range(L):
                        pp, sl = pats[l]
                        with m.Case(l):
                            for ti, s_ in enumerate(sl):
                                with m.If(slot == s_):
                                    m.d.comb += [i_v.eq(1), i_ph.eq(_VEC), i_sub.eq(0), i_first.eq(ti == 0),
                                                 i_last.eq(ti == len(sl) - 1), i_idx.eq(ca), i_neg.eq(ti == 2),
                                                 m_ra.eq((Y.dh, Y.dtc, Y.dtm)[ti] | ca), m_re.eq(1)]
                with m.If(slot == per - 1):
                    m.d.sync += slot.eq(0)
                    with m.If(ca == L_cn - 1):
                        m.d.sync += ca.eq(0)
                        m.next = "BIAS_D"
                    with m.Else():
                        m.d.sync += ca.eq(ca + 1)
                with m.Else():
                    m.d.sync += slot.eq(slot + 1)

            def after_bias():
                m.d.sync += cmt.eq(0)
                m.next = "COMMIT"
            drain_then("BIAS_D", after_bias)
            # -------------------------------------------------------------- COMMIT: counters += pending
            with m.State("COMMIT"):
                cw = Signal.like(m_ra)
                m.d.comb += cw.eq(Y.cbase | (mul_const(lay, _NKINDS) + cmt))
                nl32 = -(-32 // wm)
                with m.If(~_uge(cmt, 4)):
                    m.d.comb += [m_ra.eq(cw), m_re.eq(1)]
                with m.If(cmt != 0):
                    pend = Array([Const(0, 1), pend_w, pend_b, pend_e, pend_t, Const(0, 1)])[cmt]
                    val = Signal(32)
                    m.d.comb += val.eq(Mux(cmt == 5, lcyc, mrd.data[:32] + pend))
                    m.d.comb += [m_we.eq(1), m_addr.eq(cw - 1), m_lanes.eq((1 << nl32) - 1),
                                 m_iscnt.eq(1), m_cnt.eq(val)]
                m.d.sync += cmt.eq(cmt + 1)
                with m.If(cmt == 5):
                    m.d.sync += [pend_w.eq(0), pend_b.eq(0), pend_e.eq(0), pend_t.eq(0)]
                    next_layer()
            # -------------------------------------------------------------- FIN
            with m.State("FIN"):
                with m.If(~pred_valid):
                    m.d.sync += [pred_valid.eq(1), self.o.payload.eq(pred)]
                    with m.If(train):
                        m.d.sync += self.samples.eq(self.samples + 1)
                    with m.Else():
                        m.d.sync += self.inferences.eq(self.inferences + 1)
                    m.next = "IDLE"

        self._fsm = fsm                          # (tests and benches: the phase of each cycle)
        busy = Signal()
        m.d.comb += busy.eq(full | (idx != 0) | pred_valid | pipe_busy | ~fsm.ongoing("IDLE"))
        m.d.comb += self.idle.eq(~busy)
        with m.If(busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)

        # ---- the state port (idle only): decode, read a cycle, select the lane, register ----
        f = self.map["fields"]

        def field(name):
            return self.rb_addr[f[name]["lsb"]:f[name]["lsb"] + f[name]["width"]]
        rs, rm, rk, rw = field("stage"), field("mem"), field("bank"), field("word")
        rlane = Signal(range(max(4, ML)))
        raddr = Signal(range(max(Y.wdepth, Y.mdepth, Y.cdepth) + 1))
        if P & (P - 1) == 0:
            bq, br = rw >> (PB if P > 1 else 0), (rw[:PB] if P > 1 else Const(0, 1))
        else:
            bq = Array(Const(v // P, range(nmax // P + 2)) for v in range(nmax + 1))[rw]
            br = Array(Const(v % P, range(max(2, P))) for v in range(nmax + 1))[rw]
        rs_l = Signal(range(max(2, L)))
        m.d.comb += rs_l.eq(Mux(~_uge(rs, L), rs, 0))
        cmap = []
        for name in self.counters:
            if name in ("cycles", "samples", "inferences"):
                cmap.append((3, ("cycles", "samples", "inferences").index(name)))
                continue
            base, l_ = name.rsplit("_", 1)
            kind = {"sat_weight": 0, "sat_bias": 1, "sat_error": 2, "sat_table": 3, "stage_cycles": 4}[base]
            cmap.append((4, Y.cword(int(l_), kind)))
        with m.If(rs == L):
            with m.Switch(rw):
                for k, (kd, v) in enumerate(cmap):
                    with m.Case(k):
                        m.d.comb += [rkind.eq(kd), raddr.eq(v if kd == 4 else 0), rlane.eq(v if kd == 3 else 0)]
                with m.Default():
                    m.d.comb += rkind.eq(5)
        with m.Else():
            with m.Switch(rm):
                with m.Case(0):
                    m.d.comb += [rkind.eq(0), raddr.eq(lut(Y.wbase, rs_l) + rw), rlane.eq(rk)]
                with m.Case(1):
                    m.d.comb += [rkind.eq(1), raddr.eq(lut(Y.bbase, rs_l) | bq), rlane.eq(br)]
                with m.Case(2):
                    m.d.comb += [rkind.eq(2), raddr.eq(lut(Y.tbase, rs_l) | rw), rlane.eq(rk)]
                with m.Case(3):
                    tp = lut([Y.tbase[l - 1] if l else 0 for l in range(L)], rs_l)
                    m.d.comb += [rkind.eq(2), raddr.eq(tp | rw), rlane.eq(rk)]
                with m.Case(4):
                    m.d.comb += [rkind.eq(1), raddr.eq(Y.rbase | rw), rlane.eq(rk)]
                with m.Default():
                    m.d.comb += rkind.eq(5)
        with m.If(rb_active):
            m.d.comb += [w_ra.eq(raddr), w_re.eq(1), c_ra.eq(raddr), c_re.eq(1), m_ra.eq(raddr), m_re.eq(1)]
            with m.If(self.wb_en):
                m.d.comb += m_lane.eq(self.wb_data)      # the W banks' data too
                with m.Switch(rkind):
                    with m.Case(0):
                        m.d.comb += [w_we.eq(1), w_waddr.eq(raddr), w_wlane.eq(1 << rk)]
                    with m.Case(1):
                        m.d.comb += [m_we.eq(1), m_addr.eq(raddr), m_lanes.eq(1 << rlane)]
                    with m.Case(2):
                        m.d.comb += [c_we.eq(1), c_addr.eq(raddr), c_lanes.eq(1 << rk),
                                     c_lane.eq(self.wb_data)]
        m.d.sync += rb_lane1.eq(rlane)
        # the result, an AND-OR of one-hot selects registered with the address (a cache lane is
        # already sign-extended in src)
        rb_oh = Signal(5)
        m.d.sync += rb_oh.eq(Cat(~_uge(rkind, 3), (rkind == 3) & (rlane == 0), (rkind == 3) & (rlane == 1),
                                 (rkind == 3) & (rlane == 2), rkind == 4))
        out = Signal(signed(32))
        srcs_ = [rsel, self.cycles, self.samples, self.inferences, mrd.data[:32]]
        m.d.comb += out.eq(Cat(*[Cat(*(rb_oh[k] & Value.cast(v).as_signed()[min(i, len(v) - 1)]
                                       for k, v in enumerate(srcs_))).any() for i in range(32)]))
        m.d.sync += self.rb_data.eq(out)
        return m


def _rshift_even(v, k):
    """Nearest-even ``v / 2^k`` of a ``v`` that has ``2^(k - 1)`` added already (``k > 0``);
    ``v << -k`` for ``k <= 0``."""
    if k <= 0:
        return (v << (-k)).as_signed()
    q = v >> k
    tie = v.as_unsigned()[:k] == 0
    return Cat(q[0] & ~tie, q[1:]).as_signed()


def _uge(v, k: int):
    """``v >= k`` for an unsigned ``v`` and a constant ``k``, as gates (no carry chain)."""
    v = Value.cast(v).as_unsigned()
    if k <= 0:
        return Const(1, 1)
    if k >= 1 << len(v):
        return Const(0, 1)
    res = Const(1, 1)
    for i in range(len(v)):
        res = (v[i] & res) if (k >> i) & 1 else (v[i] | res)
    return res


def _sat_zero(v, q, zero):
    """``saturate(v, q)`` forced to 0 by ``zero`` (one LUT per bit); returns ``(value, overflowed)``."""
    v = Value.cast(v)
    w = q.width
    if v.shape().signed and (q.min_int, q.max_int) == (-(1 << (w - 1)), (1 << (w - 1)) - 1):
        # out of range when the bits from w - 1 up differ (the sign tells which way): no comparator
        if len(v) <= w:
            v, lo, hi = v.as_signed(), Const(0, 1), Const(0, 1)
            v = Cat(v, v[-1].replicate(w - len(v))).as_signed() if len(v) < w else v
        else:
            top, neg = v[w - 1:], v[-1]
            lo, hi = neg & ~top.all(), ~neg & top.any()
    else:
        lo, hi = v < q.min_int, v > q.max_int
    bits = [~zero & ~lo & (hi | v[i]) for i in range(w - 1)]
    bits.append(~zero & (lo | (~hi & v[w - 1])))
    return Cat(*bits).as_signed(), lo | hi


def _fit(v, w: int):
    """``v`` as exactly ``w`` raw bits: sign-extended (or zero-extended if unsigned), or cut."""
    v = Value.cast(v)
    if len(v) >= w:
        return v.as_unsigned()[:w]
    pad = v[-1].replicate(w - len(v)) if v.shape().signed else Const(0, w - len(v))
    return Cat(v.as_unsigned(), pad)
