"""One hidden layer of the SigProp datapath: a lane array, its memories and its training FSM.

The stage is the hardware twin of :meth:`sigprop_fpga.sim.golden.GoldenSigProp._layer` (and, in
the last stage with ``readout: head``, of ``_head_logits``/``_train_head``). Phases of a
training sample, in order (``P`` lanes, ``ci = ceil(n_in/P)``, ``cn = ceil(n/P)``)::

    FWD   h = f(W x + b) [, t = f(W t_in + b)]  lanes across i, adder tree   S n ci
          t = f(R[c]) (layer 0) read alongside, one chunk per cycle
    READ  s_k = T[k] . h (pre-write caches)     lanes across j              C cn
          -> prediction (last stage) and m = argmax_{k != c} s_k
    TH    s_c = t . h, T[c] <- t                                             cn
    SMAX  p = softmax(s)                        :class:`.softmax.Softmax`
    GRAD  g_h = narrow(sum_k err_k T[k]), g_tc  lanes across j              (C + 1) cn
    UPD   W <- sat(W + round(-u >> s)), b       read-modify-write chunks    n (terms ci + 1)
    TAB   R[c], R[m] <- sat(R + round(-d >> s)) layer 0                     rows cn
    HLOG, HSMAX, HUPD                           the head (last stage)        C cn, -, C (cn + 1)

Every issuing phase costs 2 more cycles to drain the pipeline (issue -> memory read -> registered
product -> accumulate/write). ``Tin[c] <- t_in`` is written during ``FWD``. An inference sample
runs ``FWD`` (``h`` only) and, in the last stage, ``READ`` or ``HLOG``.

Stochastic rounding: the stage's :class:`.lfsr.Lfsr` (and the head's) hands lane ``p`` the
``p``-th next draw and advances by the number of real entries written that cycle (padding lanes
beyond a width take none), so the draws follow the golden model's row-major order over
``[W | b]``, then the ``R`` rows ``c`` and ``m``.
"""

from __future__ import annotations

import math

import numpy as np
from amaranth.hdl import Array, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..sim.fixed import P_FRAC
from ..sim.params import Network
from ..sim.golden import lfsr_seed
from .fixed import narrow, round_shift, saturate
from .lfsr import Lfsr
from .mac import MacLanes
from .softmax import Softmax

__all__ = ["LayerStage", "sample_layout", "MEM_IDS", "stage_memories"]

MEM_IDS = {"W": 0, "b": 1, "T": 2, "Tin": 3, "R": 4, "head_W": 5, "head_b": 6}

# phase codes carried down the pipeline
_FWD, _TGT, _READ, _TH, _GRAD, _UPD, _TAB, _HLOG, _HUPD = range(1, 10)


def _bits(n: int) -> int:
    return max(1, (n).bit_length())


def sample_layout(n: int, width: int, n_classes: int, with_t: bool) -> data.StructLayout:
    """Payload between stages: a layer input ``x`` (and its target ``t``), the label, the mode."""
    fields = {"x": data.ArrayLayout(signed(width), n)}
    if with_t:
        fields["t"] = data.ArrayLayout(signed(width), n)
    fields["label"] = unsigned(_bits(n_classes - 1))
    fields["train"] = unsigned(1)
    return data.StructLayout(fields)


def stage_memories(net: Network, l: int, lanes: int) -> dict:
    """``{name: (banks, depth, QFormat, (row, col) -> (bank, word))}`` of stage ``l``'s memories."""
    n_in, n, C = net.fan_in(l), net.units(l), net.n_classes
    P = lanes
    ci, cn = math.ceil(n_in / P), math.ceil(n / P)
    p = net.prec(l)
    mems = {
        "W": (P, n * ci, p.weight, lambda j, i: (i % P, j * ci + i // P), (n, n_in)),
        "b": (1, n, p.bias, lambda j, _i=0: (0, j), (n,)),
        "T": (P, C * cn, p.activation, lambda k, j: (j % P, k * cn + j // P), (C, n)),
    }
    if l > 0:
        mems["Tin"] = (P, C * ci, net.in_format(l), lambda k, i: (i % P, k * ci + i // P), (C, n_in))
    else:
        mems["R"] = (P, C * cn, net.spec.precision.table, lambda k, j: (j % P, k * cn + j // P), (C, n))
    if l == net.depth - 1 and net.spec.readout == "head":
        mems["head_W"] = (P, C * cn, p.weight, lambda k, j: (j % P, k * cn + j // P), (C, n))
        mems["head_b"] = (1, C, p.bias, lambda k, _j=0: (0, k), (C,))
    return mems


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
        Quantised initial parameters, :func:`sigprop_fpga.sim.golden.quantize_params`.

    Members
    -------
    i : In(stream.Signature(sample_layout(n_in, ...)))
        The layer input, label and mode. Taken only when the stage is idle and its own output
        has been passed on (a double buffer with the upstream's output registers).
    o : Out(stream.Signature(sample_layout(n, ...)))
        ``h``, ``t``, label and mode for the next stage (absent in the last stage); valid from
        the end of ``FWD`` until taken.
    pred : Out(stream.Signature(unsigned))
        The prediction (last stage only), made before learning from the sample.
    done, done_train : Out(1)
        One-cycle strobes when a sample (a training sample) finishes in this stage.
    busy : Out(1)
    last_cycles : Out(32)
        Cycles the last sample took, from its acceptance to its ``FIN`` cycle inclusive.
    sat_weight, sat_bias, sat_error, sat_table : Out(32)
        Saturation counters, as the golden model's ``sat_*_<layer>``.
    sat_weight_head, sat_bias_head, sat_error_head : Out(32)
        The head's (last stage with a head only).
    rb_en, rb_mem, rb_bank, rb_addr : In
        Readback request (only while idle and not fed): memory id :data:`MEM_IDS`, bank, word.
    rb_data : Out(signed(32))
        The word, valid one cycle after the request.

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
            "i": In(stream.Signature(sample_layout(self.n_in, net.in_format(l).width, self.C, l > 0))),
            "done": Out(1), "done_train": Out(1), "busy": Out(1), "last_cycles": Out(32),
            "sat_weight": Out(32), "sat_bias": Out(32), "sat_error": Out(32), "sat_table": Out(32),
            "rb_en": In(1), "rb_mem": In(3), "rb_bank": In(_bits(lanes - 1)), "rb_addr": In(self.addr_bits),
            "rb_data": Out(signed(32)),
        }
        if not self.last:
            sig["o"] = Out(stream.Signature(sample_layout(self.n, p.activation.width, self.C, True)))
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
        net, l, P, C, n, n_in = self.net, self.l, self.P, self.C, self.n, self.n_in
        ci, cn = self.ci, self.cn
        spec = net.spec.learning
        p = net.prec(l)
        qa, qw, qb, qe, qt = p.activation, p.weight, p.bias, p.error, net.spec.precision.table
        qin = net.in_format(l)
        fin, fa, fw, fb, fe, ft = qin.frac_bits, qa.frac_bits, qw.frac_bits, qb.frac_bits, qe.frac_bits, qt.frac_bits
        s_shift = spec.lr_shift
        terms = 1 if (l == 0 or not self.class_ce) else (3 if self.push else 2)

        # ---- memories ----
        rd, wr, mem_w = {}, {}, {}
        for name, (banks, depth, q, _, _) in self.mems.items():
            img = self.initial_image(name)
            rd[name], wr[name] = [], []
            for bk in range(banks):
                mem = Memory(shape=signed(q.width), depth=depth, init=img[bk])
                m.submodules[f"{name}_{bk}"] = mem
                rd[name].append(mem.read_port())
                wr[name].append(mem.write_port())
            mem_w[name] = q.width

        # ---- vectors ----
        def vec(name, count, width):
            return [Signal(signed(width), name=f"{name}{k}") for k in range(count)]

        x = vec("x", ci * P, qin.width)
        tin = vec("tin", ci * P, qin.width) if l > 0 else None
        h = vec("h", cn * P, qa.width)
        t = vec("t", cn * P, qa.width)
        ew = qe.width + 1
        d_h = vec("dh", cn * P, ew) if self.class_ce else None
        d_tc = vec("dtc", cn * P, ew) if self.class_ce else None
        d_tm = vec("dtm", cn * P, ew) if self.class_ce else None
        if not self.class_ce:          # l2: d_h = (h - t) << (fe - fa), masked
            d_h = []
            for j in range(cn * P):
                diff = h[j] - t[j]
                v = diff << (fe - fa) if fe >= fa else round_shift(diff, fa - fe)
                ew = max(ew, len(v) + 1)
            for j in range(cn * P):
                diff = h[j] - t[j]
                v = diff << (fe - fa) if fe >= fa else round_shift(diff, fa - fe)
                dj = Signal(signed(ew), name=f"dh{j}")
                m.d.comb += dj.eq(Mux((h[j] > qa.min_int) & (h[j] < qa.max_int), v, 0))
                d_h.append(dj)
            d_tc = d_tm = [Const(0, signed(ew))] * (cn * P)

        def lanes_of(v, count):
            return [Array(v[q * P + pp] for q in range(count)) for pp in range(P)]

        x_l = lanes_of(x, ci)
        tin_l = lanes_of(tin, ci) if tin is not None else None
        h_l, t_l = lanes_of(h, cn), lanes_of(t, cn)
        dh_l, dtc_l, dtm_l = lanes_of(d_h, cn), lanes_of(d_tc, cn), lanes_of(d_tm, cn)
        d_h_a, d_tc_a, d_tm_a = Array(d_h), Array(d_tc), Array(d_tm)
        h_a, t_a = Array(h), Array(t)

        def inside(v):
            return (v > qa.min_int) & (v < qa.max_int)

        # ---- widths ----
        bsh = fw + fin - fb
        acc_w = max(qw.width + qin.width, qb.width + bsh) + _bits(n_in + 1) + 1
        logit_w = 2 * qa.width + _bits(n) + 1
        hbsh = fw + fa - fb
        hlog_w = max(qw.width + qa.width, qb.width + hbsh) + _bits(n + 1) + 1
        s_w = max(logit_w, hlog_w if self.head else 0)
        acc = Signal(signed(max(acc_w, s_w) + 1))
        err_w = P_FRAC + 2
        A = max(qw.width, qa.width, err_w, ew)
        B = max(qin.width, qa.width)
        prod_w = A + B
        lacc_w = prod_w + _bits(C + 1) + 1
        uacc_w = prod_w + 3

        # ---- softmax and class logits ----
        s = [Signal(signed(s_w), name=f"s{k}") for k in range(C)]
        s_a = Array(s)
        need_sm = self.class_ce or self.head
        if need_sm:
            sm = m.submodules.softmax = Softmax(C, s_w, fracs=(2 * fa + spec.logit_shift, fw + fa))
            for k in range(C):
                m.d.comb += sm.s[k].eq(s[k])
            pr = [sm.p[k] for k in range(C)]
        else:
            pr = [Const(0, 17)] * C
        mode = net.spec.precision.rounding
        stoch = mode == "stochastic"
        zero_draws = [Const(0, 32)] * P
        if stoch:
            lf = m.submodules.lfsr = Lfsr(lfsr_seed(net.spec.precision.lfsr_seed, l), P)
            draws = [lf.draws[pp] for pp in range(P)]
            if self.head:
                lfh = m.submodules.lfsr_head = Lfsr(lfsr_seed(net.spec.precision.lfsr_seed, net.depth), P)
                hdraws = [lfh.draws[pp] for pp in range(P)]
        else:
            draws = hdraws = zero_draws

        def chunk_count(idx, chunks, total):
            """Entries in chunk ``idx`` of ``chunks`` over ``total`` (the last may be short)."""
            return Mux(idx == chunks - 1, total - (chunks - 1) * P, P)

        cls = Signal(range(C))
        train = Signal()
        mreg = Signal(range(C))
        pred = Signal(range(C))
        best = Signal(signed(s_w))
        bestm = Signal(signed(s_w))
        have_m = Signal()
        errs = Array(Signal(signed(err_w), name=f"err{k}") for k in range(C))
        for k in range(C):
            m.d.comb += errs[k].eq(pr[k] - Mux(cls == k, 1 << P_FRAC, 0))
        pc_err = Signal(signed(err_w))
        m.d.comb += pc_err.eq(Array(pr)[cls] - (1 << P_FRAC))

        # ---- pipeline control ----
        cmax = max(n, C + 1, ci + 1, cn + 1, 3, terms + 1)
        ca, cb_, cc, cd = (Signal(range(cmax + 1), name=nm) for nm in ("ca", "cb", "cc", "cd"))
        v0, ph0 = Signal(), Signal(4)
        v1, ph1, a1, b1, c1, d1 = Signal(), Signal(4), Signal.like(ca), Signal.like(ca), Signal.like(ca), Signal.like(ca)
        v2, ph2, a2, b2, c2, d2 = Signal(), Signal(4), Signal.like(ca), Signal.like(ca), Signal.like(ca), Signal.like(ca)
        m.d.sync += [v1.eq(v0), ph1.eq(ph0), a1.eq(ca), b1.eq(cb_), c1.eq(cc), d1.eq(cd),
                     v2.eq(v1), ph2.eq(ph1), a2.eq(a1), b2.eq(b1), c2.eq(c1), d2.eq(d1)]
        rb_active = Signal()

        # ---- S0: addresses ----
        rrow = Mux((ph0 == _TAB) & (cb_ == 1), mreg, cls)
        # layer 0 reads its target row R[c] during FWD, one chunk per cycle (tq), into t at S1
        tq, tq1, tv0, tv1 = Signal(range(cn + 1)), Signal(range(cn + 1)), Signal(), Signal()
        m.d.sync += [tq1.eq(tq), tv1.eq(tv0)]
        raddr = Mux(ph0 == _TAB, rrow * cn + cc, cls * cn + tq)
        for name in rd:
            for bk, port in enumerate(rd[name]):
                if name == "W":
                    a = cb_ * ci + cc
                elif name == "b":
                    a = cb_
                elif name == "T":
                    a = Mux(ph0 == _GRAD, cc * cn + cb_, cb_ * cn + cc)
                elif name == "Tin":
                    a = mreg * ci + cc
                elif name == "R":
                    a = raddr
                elif name == "head_W":
                    a = cb_ * cn + cc
                else:
                    a = cb_
                m.d.comb += port.addr.eq(Mux(rb_active, self.rb_addr, a))
        raddr1, raddr2 = Signal(range(C * cn + 1)), Signal(range(C * cn + 1))
        m.d.sync += [raddr1.eq(raddr), raddr2.eq(raddr1)]
        # cache writes: T[c] <- t during TH, Tin[c] <- t_in during the first row of FWD
        for pp in range(P):
            m.d.comb += [wr["T"][pp].addr.eq(cls * cn + cc), wr["T"][pp].data.eq(t_l[pp][cc]),
                         wr["T"][pp].en.eq(v0 & (ph0 == _TH))]
            if l > 0:
                m.d.comb += [wr["Tin"][pp].addr.eq(cls * ci + cc), wr["Tin"][pp].data.eq(tin_l[pp][cc]),
                             wr["Tin"][pp].en.eq(v0 & (ph0 == _FWD) & (ca == 0) & (cb_ == 0) & train)]

        # ---- S1: operands and one multiplier per lane ----
        mac = m.submodules.mac = MacLanes(P, A, B)
        prod = [mac.prod[pp] for pp in range(P)]
        Wq2 = [Signal(signed(qw.width), name=f"wq{pp}") for pp in range(P)]
        Tq2 = [Signal(signed(qa.width), name=f"tq{pp}") for pp in range(P)]
        Rq2 = [Signal(signed(qt.width), name=f"rq{pp}") for pp in range(P)] if l == 0 else None
        hWq2 = [Signal(signed(qw.width), name=f"hwq{pp}") for pp in range(P)] if self.head else None
        bq2, hbq2 = Signal(signed(qb.width)), Signal(signed(qb.width))
        ub2 = Signal(signed(ew + 2))
        dk2, dk2_ovf = Signal(signed(qe.width)), Signal()
        dk, dk_ovf = narrow(errs[b1], P_FRAC, qe)
        dsel = Mux(d1 == 0, d_h_a[b1], Mux(d1 == 1, d_tc_a[b1], d_tm_a[b1]))
        for pp in range(P):
            ma, mb = mac.a[pp], mac.b[pp]
            with m.Switch(ph1):
                with m.Case(_FWD):
                    m.d.comb += [ma.eq(rd["W"][pp].data),
                                 mb.eq(Mux(a1 == 0, x_l[pp][c1], tin_l[pp][c1]) if l > 0 else x_l[pp][c1])]
                with m.Case(_READ):
                    m.d.comb += [ma.eq(rd["T"][pp].data), mb.eq(h_l[pp][c1])]
                with m.Case(_TH):
                    m.d.comb += [ma.eq(t_l[pp][c1]), mb.eq(h_l[pp][c1])]
                with m.Case(_GRAD):
                    with m.If(c1 == C):
                        m.d.comb += [ma.eq(pc_err), mb.eq(h_l[pp][b1])]
                    with m.Else():
                        m.d.comb += [ma.eq(errs[c1]), mb.eq(rd["T"][pp].data)]
                with m.Case(_UPD):
                    m.d.comb += ma.eq(dsel)
                    if l > 0:
                        m.d.comb += mb.eq(Mux(d1 == 0, x_l[pp][c1], Mux(d1 == 1, tin_l[pp][c1], rd["Tin"][pp].data)))
                    else:
                        m.d.comb += mb.eq(x_l[pp][c1])
                if self.head:
                    with m.Case(_HLOG):
                        m.d.comb += [ma.eq(rd["head_W"][pp].data), mb.eq(h_l[pp][c1])]
                    with m.Case(_HUPD):
                        m.d.comb += [ma.eq(dk), mb.eq(h_l[pp][c1])]
            m.d.sync += [Wq2[pp].eq(rd["W"][pp].data), Tq2[pp].eq(rd["T"][pp].data)]
            if l == 0:
                m.d.sync += Rq2[pp].eq(rd["R"][pp].data)
                # TGT: t = narrow(R[c]) straight from the read data
                with m.If(tv1):
                    m.d.sync += t_l[pp][tq1].eq(narrow(rd["R"][pp].data, ft, qa)[0])
            if self.head:
                m.d.sync += hWq2[pp].eq(rd["head_W"][pp].data)
        m.d.sync += [bq2.eq(rd["b"][0].data), ub2.eq(d_h_a[b1] + d_tc_a[b1] + d_tm_a[b1] if terms > 1 else d_h_a[b1]),
                     dk2.eq(dk), dk2_ovf.eq(dk_ovf)]
        if self.head:
            m.d.sync += hbq2.eq(rd["head_b"][0].data)

        # ---- S2: accumulate, narrow, write back ----
        tree = mac.total
        acc_n = Signal.like(acc)
        sat_w, sat_b, sat_e, sat_t = (Signal(32, name=nm) for nm in ("sat_w", "sat_b", "sat_e", "sat_t"))
        sat_wh, sat_bh, sat_eh = (Signal(32, name=nm) for nm in ("sat_wh", "sat_bh", "sat_eh"))
        m.d.comb += [self.sat_weight.eq(sat_w), self.sat_bias.eq(sat_b), self.sat_error.eq(sat_e),
                     self.sat_table.eq(sat_t)]
        if self.head:
            m.d.comb += [self.sat_weight_head.eq(sat_wh), self.sat_bias_head.eq(sat_bh),
                         self.sat_error_head.eq(sat_eh)]
        lacc = [Signal(signed(lacc_w), name=f"lacc{pp}") for pp in range(P)]
        uacc = [Signal(signed(uacc_w), name=f"uacc{pp}") for pp in range(P)]
        maskm = [Signal(name=f"maskm{pp}") for pp in range(P)]

        def popcount(flags):
            return sum(f.as_unsigned() for f in flags) if flags else 0

        def lane_valid(pp, idx, count):
            return (idx * P + pp) < count

        def argmax_update(k):
            with m.If((k == 0) | (acc_n > best)):
                m.d.sync += [best.eq(acc_n), pred.eq(k)]
            with m.If((k != cls) & (~have_m | (acc_n > bestm))):
                m.d.sync += [bestm.eq(acc_n), mreg.eq(k), have_m.eq(1)]

        with m.If(v2):
            with m.Switch(ph2):
                with m.Case(_FWD):
                    m.d.comb += acc_n.eq(Mux(c2 == 0, bq2 << bsh, acc) + tree)
                    m.d.sync += acc.eq(acc_n)
                    with m.If(c2 == ci - 1):
                        hv = narrow(acc_n, fw + fin, qa)[0]
                        with m.If(a2 == 0):
                            m.d.sync += h_a[b2].eq(hv)
                        with m.Else():
                            m.d.sync += t_a[b2].eq(hv)
                with m.Case(_READ):
                    m.d.comb += acc_n.eq(Mux(c2 == 0, 0, acc) + tree)
                    m.d.sync += acc.eq(acc_n)
                    with m.If(c2 == cn - 1):
                        m.d.sync += s_a[b2].eq(acc_n)
                        argmax_update(b2)
                with m.Case(_TH):
                    m.d.comb += acc_n.eq(Mux(c2 == 0, 0, acc) + tree)
                    m.d.sync += acc.eq(acc_n)
                    with m.If(c2 == cn - 1):
                        m.d.sync += s_a[cls].eq(acc_n)
                if self.class_ce:
                    with m.Case(_GRAD):
                        ovfs = []
                        for pp in range(P):
                            ln = lacc[pp] + prod[pp]
                            with m.If(c2 == 0):
                                m.d.sync += lacc[pp].eq(prod[pp])
                            with m.Else():
                                m.d.sync += lacc[pp].eq(ln)
                            with m.If(c2 == mreg):
                                m.d.sync += maskm[pp].eq(inside(Tq2[pp]))
                            gh, gh_ovf = narrow(Mux(c2 == 0, prod[pp], ln), P_FRAC + fa, qe)
                            gt, gt_ovf = narrow(prod[pp], P_FRAC + fa, qe)
                            ovf = Signal(name=f"eovf{pp}")
                            with m.If(c2 == C - 1):
                                m.d.sync += dh_l[pp][b2].eq(Mux(inside(h_l[pp][b2]), gh, 0))
                                m.d.comb += ovf.eq(gh_ovf & lane_valid(pp, b2, n))
                            with m.If(c2 == C):
                                mm = maskm[pp] if self.push else 0
                                m.d.sync += [dtc_l[pp][b2].eq(Mux(inside(t_l[pp][b2]), gt, 0)),
                                             dtm_l[pp][b2].eq(Mux(mm, -gt, 0))]
                                m.d.comb += ovf.eq(gt_ovf & lane_valid(pp, b2, n))
                            ovfs.append(ovf)
                        m.d.sync += sat_e.eq(sat_e + popcount(ovfs))
                with m.Case(_UPD):
                    wovf, shW, shB = [], fe + fin - fw + s_shift, fe - fb + s_shift
                    for pp in range(P):
                        un = Mux(d2 == 0, 0, uacc[pp]) + prod[pp]
                        m.d.sync += uacc[pp].eq(un)
                        wn, ovf = saturate(Wq2[pp] + round_shift(-un, shW, mode, draws[pp]), qw)
                        go = (c2 < ci) & (d2 == terms - 1)
                        m.d.comb += [wr["W"][pp].addr.eq(b2 * ci + c2), wr["W"][pp].data.eq(wn),
                                     wr["W"][pp].en.eq(go)]
                        wovf.append(ovf & go)
                    bn, bovf = saturate(bq2 + round_shift(-ub2, shB, mode, draws[0]), qb)
                    bgo = c2 == ci
                    if stoch:
                        m.d.comb += lf.advance.eq(Mux(bgo, 1, Mux(d2 == terms - 1, chunk_count(c2, ci, n_in), 0)))
                    m.d.comb += [wr["b"][0].addr.eq(b2), wr["b"][0].data.eq(bn), wr["b"][0].en.eq(bgo)]
                    m.d.sync += [sat_w.eq(sat_w + popcount(wovf)), sat_b.eq(sat_b + (bovf & bgo))]
                if l == 0 and self.class_ce:
                    with m.Case(_TAB):
                        tovf, shR = [], fe - ft + s_shift
                        for pp in range(P):
                            dv = Mux(b2 == 0, dtc_l[pp][c2], dtm_l[pp][c2])
                            rn, ovf = saturate(Rq2[pp] + round_shift(-dv, shR, mode, draws[pp]), qt)
                            m.d.comb += [wr["R"][pp].addr.eq(raddr2), wr["R"][pp].data.eq(rn), wr["R"][pp].en.eq(1)]
                            tovf.append(ovf & lane_valid(pp, c2, n))
                        m.d.sync += sat_t.eq(sat_t + popcount(tovf))
                        if stoch:
                            m.d.comb += lf.advance.eq(chunk_count(c2, cn, n))
                if self.head:
                    with m.Case(_HLOG):
                        m.d.comb += acc_n.eq(Mux(c2 == 0, hbq2 << hbsh, acc) + tree)
                        m.d.sync += acc.eq(acc_n)
                        with m.If(c2 == cn - 1):
                            m.d.sync += s_a[b2].eq(acc_n)
                            with m.If((b2 == 0) | (acc_n > best)):
                                m.d.sync += [best.eq(acc_n), pred.eq(b2)]
                    with m.Case(_HUPD):
                        hovf, shHW, shHB = [], fe + fa - fw + s_shift, fe - fb + s_shift
                        for pp in range(P):
                            wn, ovf = saturate(hWq2[pp] + round_shift(-prod[pp], shHW, mode, hdraws[pp]), qw)
                            go = c2 < cn
                            m.d.comb += [wr["head_W"][pp].addr.eq(b2 * cn + c2), wr["head_W"][pp].data.eq(wn),
                                         wr["head_W"][pp].en.eq(go)]
                            hovf.append(ovf & go)
                        bn, bovf = saturate(hbq2 + round_shift(-dk2, shHB, mode, hdraws[0]), qb)
                        bgo = c2 == cn
                        if stoch:
                            m.d.comb += lfh.advance.eq(Mux(bgo, 1, chunk_count(c2, cn, n)))
                        m.d.comb += [wr["head_b"][0].addr.eq(b2), wr["head_b"][0].data.eq(bn),
                                     wr["head_b"][0].en.eq(bgo)]
                        m.d.sync += [sat_wh.eq(sat_wh + popcount(hovf)), sat_bh.eq(sat_bh + (bovf & bgo)),
                                     sat_eh.eq(sat_eh + (dk2_ovf & bgo))]

        # ---- the FSM: issue phases ----
        cyc = Signal(32)
        out_pending = Signal()
        pred_valid = Signal()
        m.d.comb += self.busy.eq(0)
        if not self.last:
            o = self.o.payload
            m.d.comb += self.o.valid.eq(out_pending)
            for j in range(n):
                m.d.comb += [o.x[j].eq(h[j]), o.t[j].eq(t[j])]
            m.d.comb += [o.label.eq(cls), o.train.eq(train)]
            with m.If(self.o.valid & self.o.ready):
                m.d.sync += out_pending.eq(0)
        else:
            m.d.comb += [self.pred.valid.eq(pred_valid)]
            with m.If(self.pred.valid & self.pred.ready):
                m.d.sync += pred_valid.eq(0)

        def counters(limits):
            """Nested counters (outer first); returns the 'this is the last issue' condition."""
            regs = [ca, cb_, cc, cd]
            lasts = [r == (lim - 1) for r, lim in zip(regs, limits)]
            for i in range(3, -1, -1):
                inner_all_last = lasts[i + 1:] if i < 3 else []
                cond = Const(1)
                for c in inner_all_last:
                    cond = cond & c
                with m.If(cond):
                    with m.If(lasts[i]):
                        m.d.sync += regs[i].eq(0)
                    with m.Else():
                        m.d.sync += regs[i].eq(regs[i] + 1)
            done = Const(1)
            for c in lasts:
                done = done & c
            return done

        def after_fwd():
            after_tgt()

        def after_tgt():
            if not self.last:
                m.d.sync += out_pending.eq(1)
            with m.If(train):
                if self.class_ce or (self.last and not self.head):
                    m.next = "READ"
                else:
                    m.next = "TH"
            with m.Else():
                if self.last and not self.head:
                    m.next = "READ"
                elif self.head:
                    m.next = "HLOG"
                else:
                    m.next = "FIN"

        def after_read():
            with m.If(train):
                m.next = "TH"
            with m.Else():
                m.next = "FIN"

        def after_upd():
            if l == 0 and self.class_ce:
                m.next = "TAB"
            else:
                after_tab()

        def after_tab():
            m.next = "HLOG" if self.head else "FIN"

        def after_hlog():
            with m.If(train):
                m.next = "HSMAX"
            with m.Else():
                m.next = "FIN"

        S = 2 if l > 0 else 1
        phases = [
            ("FWD", _FWD, (Mux(train, S, 1) if S > 1 else 1, n, ci, 1), after_fwd),
            ("READ", _READ, (1, C, cn, 1), after_read),
            ("TH", _TH, (1, 1, cn, 1), lambda: setattr(m, "next", "SMAX" if self.class_ce else "UPD")),
            ("GRAD", _GRAD, (1, cn, C + 1, 1), lambda: setattr(m, "next", "UPD")),
            ("UPD", _UPD, (1, n, ci + 1, Mux(cc == ci, 1, terms)), after_upd),
            ("TAB", _TAB, (1, 2 if self.push else 1, cn, 1), after_tab),
            ("HLOG", _HLOG, (1, C, cn, 1), after_hlog),
            ("HUPD", _HUPD, (1, C, cn + 1, 1), lambda: setattr(m, "next", "FIN")),
        ]

        keep = {"FWD": True, "READ": self.class_ce or (self.last and not self.head),
                "TH": True, "GRAD": self.class_ce, "UPD": True, "TAB": l == 0 and self.class_ce,
                "HLOG": self.head, "HUPD": self.head}
        phases = [ph for ph in phases if keep[ph[0]]]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [rb_active.eq(self.rb_en),
                             self.i.ready.eq(~out_pending & ~self.rb_en)]
                with m.If(self.i.valid & self.i.ready):
                    ip = self.i.payload
                    m.d.sync += [x[k].eq(ip.x[k]) for k in range(n_in)]
                    if l > 0:
                        m.d.sync += [tin[k].eq(ip.t[k]) for k in range(n_in)]
                    m.d.sync += [cls.eq(ip.label), train.eq(ip.train), have_m.eq(0), cyc.eq(1), tq.eq(0),
                                 ca.eq(0), cb_.eq(0), cc.eq(0), cd.eq(0)]
                    m.next = "FWD"
            for name, code, limits, nxt in phases:
                with m.State(name):
                    m.d.comb += [v0.eq(1), ph0.eq(code), self.busy.eq(1)]
                    if name == "FWD" and l == 0:
                        with m.If(tq < cn):
                            m.d.comb += tv0.eq(1)
                            m.d.sync += tq.eq(tq + 1)
                    with m.If(counters(limits)):
                        m.next = f"W_{name}"
                with m.State(f"W_{name}"):
                    m.d.comb += self.busy.eq(1)
                    with m.If(~v1):
                        nxt()
            if self.class_ce:
                with m.State("SMAX"):
                    m.d.comb += [sm.start.eq(1), sm.frac_sel.eq(0), self.busy.eq(1)]
                    m.next = "W_SMAX"
                with m.State("W_SMAX"):
                    m.d.comb += [sm.frac_sel.eq(0), self.busy.eq(1)]
                    with m.If(sm.done):
                        m.next = "GRAD"
            if self.head:
                with m.State("HSMAX"):
                    m.d.comb += [sm.start.eq(1), sm.frac_sel.eq(1), self.busy.eq(1)]
                    m.next = "W_HSMAX"
                with m.State("W_HSMAX"):
                    m.d.comb += [sm.frac_sel.eq(1), self.busy.eq(1)]
                    with m.If(sm.done):
                        m.next = "HUPD"
            with m.State("FIN"):
                m.d.comb += self.busy.eq(1)
                ok = ~pred_valid if self.last else Const(1)
                with m.If(ok):
                    if self.last:
                        m.d.sync += [pred_valid.eq(1), self.pred.payload.eq(pred)]
                    m.d.comb += [self.done.eq(1), self.done_train.eq(train)]
                    m.d.sync += self.last_cycles.eq(cyc + 1)
                    m.next = "IDLE"
        with m.If(self.busy):
            m.d.sync += cyc.eq(cyc + 1)

        # ---- readback ----
        rb_mem1, rb_bank1 = Signal(3), Signal.like(self.rb_bank)
        m.d.sync += [rb_mem1.eq(self.rb_mem), rb_bank1.eq(self.rb_bank)]
        for name in rd:
            for bk, port in enumerate(rd[name]):
                with m.If((rb_mem1 == MEM_IDS[name]) & (rb_bank1 == bk)):
                    m.d.comb += self.rb_data.eq(port.data)
        return m
