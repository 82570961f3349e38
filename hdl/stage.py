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

Every issuing phase costs ``STAGE_LATENCY + 1`` (5) more cycles to drain the pipeline (S0 issue
-> S1 memory read and lane multiplexers -> registered operand sources -> operand multiplexers and
registers -> product register -> adder tree register -> S2 accumulate), one more where the
finished dot product is narrowed or compared at S3 (READ, TH, HLOG), two in FWD (h and t are
narrowed at S3 and written at S4), one less in GRAD (the update's first reads of the delta FIFOs
come after their last pushes). The delta FIFOs are filled at S3 and W, b, R and the head are
written back at S4 (landing a cycle later through registered write ports) without a longer
drain: nothing reads those words sooner (``no_drain`` below lists the phases that need no drain
at all). The engine is idle only once the S4 writes and the saturation
counts landed (``pipe_busy``). ``Tin[c] <- t_in`` is written during ``FWD``. An inference sample
runs ``FWD`` (``h`` only) and, in the last stage, ``READ`` or ``HLOG``.

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
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..compiler.fixed import P_FRAC
from ..compiler.network import Network
from ..compiler.network import lfsr_seed
from ..compiler.statemap import MEM_IDS, stage_memories
from .fixed import mul_const as _mulk, narrow, round_shift, saturate
from .lfsr import Lfsr
from . import BLOCK_RAM
from .mac import STAGE_LATENCY, MacLanes
from .softmax import Softmax

__all__ = ["LayerStage", "sample_layout", "ctrl_layout"]


# phase codes carried down the pipeline
_FWD, _TGT, _READ, _TH, _GRAD, _UPD, _TAB, _HLOG, _HUPD = range(1, 10)


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
    i : In(stream.Signature(ctrl_layout(C)))
        The label and mode of the sample whose input is in the write half of the input memory.
        Taken only when the stage is idle and its own output has been passed on.
    in_we, in_sig, in_idx, in_data : In
        Write entry ``in_idx`` of the layer input (``in_sig`` 0) or of its target ``t_in``
        (``in_sig`` 1, layers ``>= 1``) into the write half of the double-buffered input
        memory (P-lane words, read a chunk per cycle); the halves swap when ``i`` is taken.
    o : Out(stream.Signature(ctrl_layout(C)))
        Label and mode for the next stage (absent in the last stage); valid from the end of
        ``FWD`` (and, at layer 0, once every ``t`` entry went out) until taken.
    out_we, out_sig, out_idx, out_data : Out
        ``h[j]`` (``out_sig`` 0) and ``t[j]`` (1) for the next stage's input memory, one entry a
        cycle, as ``FWD`` produces them.
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
    rb_en, rb_mem, rb_bank, rb_addr : In
        Readback request (only while idle and not fed): memory id :data:`MEM_IDS`, bank, word.
    rb_data : Out(signed(32))
        The word, valid three cycles after the request (the block RAM's read, a register after
        the bank multiplexer, a register after the memory multiplexer).
    wb_en, wb_data : In
        With ``rb_en`` (idle only): write ``wb_data`` (its low bits, the memory's format) to the
        word ``rb_mem``/``rb_bank``/``rb_addr`` addresses: loads a checkpoint (weights, biases,
        the table, the caches) before training resumes.

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
            "i": In(stream.Signature(ctrl_layout(self.C))),
            "in_we": In(1), "in_sig": In(1), "in_idx": In(range(max(2, self.n_in))),
            "in_data": In(signed(net.in_format(l).width)),
            "done": Out(1), "done_train": Out(1), "busy": Out(1), "pipe_busy": Out(1), "last_cycles": Out(32),
            "sat_weight": Out(32), "sat_bias": Out(32), "sat_error": Out(32), "sat_table": Out(32),
            "rb_en": In(1), "rb_mem": In(3), "rb_bank": In(_bits(lanes - 1)), "rb_addr": In(self.addr_bits),
            "rb_data": Out(signed(32)), "wb_en": In(1), "wb_data": In(signed(32)),
        }
        if not self.last:
            sig["o"] = Out(stream.Signature(ctrl_layout(self.C)))
            sig.update({"out_we": Out(1), "out_sig": Out(1), "out_idx": Out(range(max(2, self.n))),
                        "out_data": Out(signed(p.activation.width))})
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
        # W, R and the head's are banked (one memory per lane). The caches T (and Tin) and the
        # bias b are never read in the same cycle, so they share one memory of P-lane words
        # (one block RAM instead of one per bank and per memory): "virtual" ports below stand
        # for the logical banks and the glue after the address logic multiplexes them.
        # Every write reaches its block RAM a cycle after the logic that makes it (registered
        # address, data and enable: the saturating adders and the checkpoint multiplexer do not
        # share a cycle with the route to the memory). Nothing reads a word in the cycle after
        # its write: see hdl.relax_read_collisions.
        rd, wr, mem_w = {}, {}, {}
        write_ports = []
        packed = [nm for nm in ("T", "Tin", "b") if nm in self.mems]
        for name, (banks, depth, q, _, _) in self.mems.items():
            rd[name], wr[name] = [], []
            mem_w[name] = q.width
            if name in packed:
                for bk in range(banks):
                    rd[name].append(_VPort(q.width, f"{name}{bk}_r"))
                    wr[name].append(_VPort(q.width, f"{name}{bk}_w"))
                continue
            img = self.initial_image(name)
            for bk in range(banks):
                mem = Memory(shape=signed(q.width), depth=depth, init=img[bk], attrs=BLOCK_RAM)
                m.submodules[f"{name}_{bk}"] = mem
                rd[name].append(mem.read_port())
                if name == "R" and self.cn < 2:
                    # a one-chunk table row is read by the next sample's first FWD issue in the
                    # cycle a registered write of the previous TAB would land: written directly
                    wr[name].append(mem.write_port())
                    continue
                wr[name].append(_VPort(q.width, f"{name}{bk}_w"))
                write_ports.append((wr[name][-1], mem.write_port()))
        wl = max(self.mems[nm][2].width for nm in packed if nm != "b")
        nl = max(P, -(-self.mems["b"][2].width // wl),
                 -(-(P_FRAC + 1) // wl) if (self.class_ce or self.head) else 1)   # b, exp table words
        pbase, off = {}, 0
        for nm in packed:
            pbase[nm] = off
            off += self.mems[nm][1]
        if self.class_ce or self.head:     # the softmax's exp table, read while the caches idle
            from ..compiler.fixed import EXP2_TABLE
            pbase["tab"] = off
            off += len(EXP2_TABLE)
        pimg = [0] * off
        if "tab" in pbase:
            for k, v in enumerate(EXP2_TABLE):
                pimg[pbase["tab"] + k] = int(v)
        for nm in packed:
            img = self.initial_image(nm)
            banks, depth, q = self.mems[nm][:3]
            for bk in range(banks):
                for wd in range(depth):
                    v = img[bk][wd] & ((1 << q.width) - 1)
                    pimg[pbase[nm] + wd] |= v << (bk * wl)
        cmem = m.submodules.cache = Memory(shape=unsigned(nl * wl), depth=off, init=pimg, attrs=BLOCK_RAM)
        crd, cwr = cmem.read_port(), cmem.write_port(granularity=wl)
        for nm in packed:
            for bk, vp in enumerate(rd[nm]):
                m.d.comb += vp.data.eq(crd.data[bk * wl:bk * wl + mem_w[nm]])

        # ---- vectors ----
        def vec(name, count, width):
            return [Signal(signed(width), name=f"{name}{k}", reset_less=True) for k in range(count)]

        # the input memory: [half][x | t_in][chunk] words of P lanes, double buffered
        Sx = 2 if l > 0 else 1
        wi = qin.width
        imem = m.submodules.inmem = Memory(shape=unsigned(P * wi), depth=2 * Sx * ci, init=[], attrs=BLOCK_RAM)
        ird, iwr = imem.read_port(), imem.write_port(granularity=wi)
        wbuf = Signal()
        iq, ir = _divmod_const(self.in_idx, P, n_in)
        m.d.comb += iwr.addr.eq(Mux(wbuf, Sx * ci, 0) + (Mux(self.in_sig, ci, 0) if l > 0 else 0) + iq)
        for k in range(P):
            m.d.comb += [iwr.data[k * wi:(k + 1) * wi].eq(self.in_data), iwr.en[k].eq(self.in_we & (ir == k))]
        ilane = [Signal(signed(wi), name=f"in{k}") for k in range(P)]
        m.d.comb += [ilane[k].eq(ird.data[k * wi:(k + 1) * wi]) for k in range(P)]
        h = vec("h", cn * P, qa.width)
        t = vec("t", cn * P, qa.width)
        ew = qe.width + 1
        # class_ce: the deltas are produced a chunk at a time (GRAD) and consumed in order (UPD rows,
        # TAB chunks), so they live in chunk FIFOs: push at the tail, read and rotate at the head;
        # no index muxes. dq[name][q][pp] is entry (q-th chunk from the head, lane pp).
        dq = None
        if self.class_ce:
            # dh: d_h (the error format); dg: g_t with its two masks, d_tc = mt ? g_t : 0 and
            # d_tm = mm ? -g_t : 0 (one stored g_t instead of two deltas)
            fifo_w = {"dh": signed(qe.width), "dg": unsigned(qe.width + 2)}
            dq = {nm: [[Signal(fifo_w[nm], name=f"{nm}{q}_{pp}", reset_less=True) for pp in range(P)] for q in range(cn)]
                  for nm in fifo_w}
            d_h = d_tc = d_tm = None
        else:          # l2: d_h = (h - t) << (fe - fa), masked
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

        h_l, t_l = lanes_of(h, cn), lanes_of(t, cn)
        if not self.class_ce:
            d_h_a, d_tc_a, d_tm_a = Array(d_h), Array(d_tc), Array(d_tm)

        # one shift enable and one tail mux per FIFO (so every register is a plain enabled flop)
        f_shift, f_push, f_val = {}, {}, {}
        if self.class_ce:
            for nm in dq:
                f_shift[nm], f_push[nm] = Signal(name=f"{nm}_shift"), Signal(name=f"{nm}_push")
                f_val[nm] = [Signal(fifo_w[nm], name=f"{nm}_in{pp}") for pp in range(P)]
                with m.If(f_shift[nm]):
                    for q in range(cn - 1):
                        m.d.sync += [dq[nm][q][pp].eq(dq[nm][q + 1][pp]) for pp in range(P)]
                    m.d.sync += [dq[nm][cn - 1][pp].eq(Mux(f_push[nm], f_val[nm][pp], dq[nm][0][pp]))
                                 for pp in range(P)]

        def dg_split(v):
            """(d_tc, d_tm) of a packed dg entry."""
            gt = v[:qe.width].as_signed()
            return Mux(v[qe.width], gt, 0), Mux(v[qe.width + 1], -gt, 0)

        # the FIFOs' shift and push enables are registered flags, decided a cycle ahead (below:
        # GRAD's pushes and TAB's rotations at S3 from S2, UPD's rotations at S1 from S0): each
        # enables some 400 flip-flops, so no decoding may sit in front of it
        fifo_flags = {nm: [] for nm in dq} if self.class_ce else {}
        push_flag = {}

        def fifo_flag(name, cond, *fifos, push=False):
            r = Signal(name=name)
            m.d.sync += r.eq(cond)
            for nm in fifos:
                fifo_flags[nm].append(r)
                if push:
                    push_flag[nm] = r
            return r

        def fifo_push(nm, vals):
            """The entries pushed when ``nm``'s push flag is set (chosen where the flag's phase is)."""
            m.d.comb += [f_val[nm][pp].eq(vals[pp]) for pp in range(P)]
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
        acc = Signal(signed(max(acc_w, s_w) + 1), reset_less=True)
        err_w = P_FRAC + 2
        A = max(qw.width, qa.width, err_w, ew)
        B = max(qin.width, qa.width)
        prod_w = A + B
        lacc_w = prod_w + _bits(C + 1) + 1
        uacc_w = prod_w + 3

        # ---- softmax and class logits ----
        s = [Signal(signed(s_w), name=f"s{k}", reset_less=True) for k in range(C)]
        s_a = Array(s)
        need_sm = self.class_ce or self.head
        if need_sm:
            from ..compiler.estimate import softmax_fracs, softmax_groups
            G_sm, pb = softmax_groups(net, l, P), B - 1
            sm = m.submodules.softmax = Softmax(C, s_w, fracs=softmax_fracs(net, l),
                                                groups=G_sm, group_shift=P * pb, ext_table=True,
                                                mul_latency=STAGE_LATENCY)
            MBB = len(sm.mul_b)
            m.d.comb += sm.tab_data.eq(crd.data[:len(sm.tab_data)])
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
        # p_k - y_k for one class a cycle: k = c1 in GRAD (cls at its last step), b1 in HUPD
        esel = Signal(signed(err_w))
        pr_a = Array(pr)

        # ---- pipeline control ----
        cmax = max(n, C + 1, ci + 1, cn + 1, 3, terms + 1)
        ca, cb_, cc, cd = (Signal(range(cmax + 1), name=nm) for nm in ("ca", "cb", "cc", "cd"))
        v0, ph0 = Signal(), Signal(4)
        v1, ph1, a1, b1, c1, d1 = Signal(), Signal(4), Signal.like(ca), Signal.like(ca), Signal.like(ca), Signal.like(ca)
        v2, ph2, a2, b2, c2, d2 = Signal(), Signal(4), Signal.like(ca), Signal.like(ca), Signal.like(ca), Signal.like(ca)
        def late(target, value, cycles=STAGE_LATENCY):
            """``target`` <= ``value`` ``cycles`` (:data:`STAGE_LATENCY`) cycles later: S1 values
            meet the products at S2."""
            for _ in range(cycles - 1):
                mid = Signal.like(target, name=f"{target.name}_d")
                m.d.sync += mid.eq(value)
                value = mid
            m.d.sync += target.eq(value)

        m.d.sync += [v1.eq(v0), ph1.eq(ph0), a1.eq(ca), b1.eq(cb_), c1.eq(cc), d1.eq(cd)]
        for x2, x1 in ((v2, v1), (ph2, ph1), (a2, a1), (b2, b1), (c2, c1), (d2, d1)):
            late(x2, x1)
        # an issue is in flight until its products reach S2
        v_inflight, vd = v1, v1
        for k in range(STAGE_LATENCY - 1):
            nxt_v = Signal(name=f"v1_d{k}")
            m.d.sync += nxt_v.eq(vd)
            # GRAD -> UPD: the next issue may start while the last one is a cycle short of S2.
            # UPD's first issue reads only the dh FIFO's head (pushed at the S3 of the second to
            # last GRAD issue), its second the dg FIFO's (pushed at the last one's S3): both land
            # before the S1 that reads them.
            v_early = v_inflight
            vd, v_inflight = nxt_v, v_inflight | nxt_v
        rb_active = Signal()
        ck_go, ck_mem, ck_bank = Signal(), Signal.like(self.rb_mem), Signal.like(self.rb_bank)
        ck_addr, ck_data = Signal.like(self.rb_addr), Signal.like(self.wb_data)

        # ---- S0: addresses ----
        rrow = Mux((ph0 == _TAB) & (cb_ == 1), mreg, cls)
        # layer 0 reads its target row R[c] during FWD, one chunk per cycle (tq), into t at S1
        tq, tq1, tq2, tv0, tv1, tv2 = (Signal(range(cn + 1)), Signal(range(cn + 1)), Signal(range(cn + 1)),
                                       Signal(), Signal(), Signal())
        m.d.sync += [tq1.eq(tq), tv1.eq(tv0), tq2.eq(tq1), tv2.eq(tv1)]
        raddr = Mux(ph0 == _TAB, _mulk(rrow, cn) + cc, _mulk(cls, cn) + tq)
        for name in rd:
            for bk, port in enumerate(rd[name]):
                if name == "W":
                    a = _mulk(cb_, ci) + cc
                elif name == "b":
                    a = cb_
                elif name == "T":
                    a = Mux(ph0 == _GRAD, _mulk(cc, cn) + cb_, _mulk(cb_, cn) + cc)
                elif name == "Tin":
                    a = _mulk(mreg, ci) + cc
                elif name == "R":
                    a = raddr
                elif name == "head_W":
                    a = _mulk(cb_, cn) + cc
                else:
                    a = cb_
                m.d.comb += port.addr.eq(Mux(rb_active, self.rb_addr, a))
        # the packed cache memory: which logical memory its read port serves this cycle
        sel_b = Mux(rb_active, self.rb_mem == MEM_IDS["b"], (ph0 == _FWD) | ((ph0 == _UPD) & (cc == ci)))
        sel_tin = Mux(rb_active, self.rb_mem == MEM_IDS["Tin"], (ph0 == _UPD) & (cc != ci)) if l > 0 else Const(0)
        caddr = Signal.like(crd.addr)
        m.d.comb += crd.addr.eq(Mux(sm.tab_en, pbase["tab"] + sm.tab_addr, caddr) if need_sm else caddr)
        m.d.comb += caddr.eq(Mux(sel_b, pbase["b"] + rd["b"][0].addr,
                                    Mux(sel_tin, pbase.get("Tin", 0) + rd["Tin"][0].addr if l > 0 else 0,
                                        rd["T"][0].addr)))
        wen_b = wr["b"][0].en
        wen_t = Cat(*(vp.en for vp in wr["T"])).any()     # any lane (a checkpoint writes one)
        m.d.sync += cwr.addr.eq(Mux(wen_b, pbase["b"] + wr["b"][0].addr,
                                    Mux(wen_t, wr["T"][0].addr,
                                        pbase.get("Tin", 0) + wr["Tin"][0].addr if l > 0 else 0)))
        for k in range(nl):
            if k < P:
                alt = Mux(wen_t, wr["T"][k].data, wr["Tin"][k].data) if l > 0 else wr["T"][k].data
                m.d.sync += cwr.data[k * wl:(k + 1) * wl].eq(alt)
            en = wen_b | (wr["T"][k].en if k < P else 0) | (wr["Tin"][k].en if (l > 0 and k < P) else 0)
            m.d.sync += cwr.en[k].eq(en)
        with m.If(wen_b):
            m.d.sync += cwr.data.eq(wr["b"][0].data)

        raddr1, raddr2 = Signal(range(C * cn + 1)), Signal(range(C * cn + 1))
        m.d.sync += raddr1.eq(raddr)
        late(raddr2, raddr1)
        # h and t are read a chunk at a time through one index mux each (chunk c1, or b1 in GRAD),
        # registered for S2; T[c] <- t is written from that read during TH (S1)
        hidx1 = Signal.like(c1, name="hidx1")           # chosen at S0: one multiplexer less at S1
        m.d.sync += hidx1.eq(Mux(ph0 == _GRAD, cb_, cc))
        hch = [Signal(signed(qa.width), name=f"hch{pp}") for pp in range(P)]
        tch = [Signal(signed(qa.width), name=f"tch{pp}") for pp in range(P)]
        hch2 = [Signal(signed(qa.width), name=f"hch2_{pp}", reset_less=True) for pp in range(P)]
        tch2 = [Signal(signed(qa.width), name=f"tch2_{pp}", reset_less=True) for pp in range(P)]
        for pp in range(P):
            m.d.comb += [hch[pp].eq(h_l[pp][hidx1]), tch[pp].eq(t_l[pp][hidx1])]
            late(hch2[pp], hch[pp])
            late(tch2[pp], tch[pp])
        # cache writes: T[c] <- t during TH, Tin[c] <- t_in during the first row of FWD, both a
        # cycle after S1 from registers (the lane multiplexers, or the input memory's clock-to-out,
        # and the cache's write port do not share a cycle at speed; nothing reads them sooner)
        t_we, t_addr = Signal(), Signal(range(max(2, C * cn)))
        t_data = [Signal(signed(qa.width), name=f"t_wdata{pp}", reset_less=True) for pp in range(P)]
        m.d.sync += [t_we.eq(v1 & (ph1 == _TH)), t_addr.eq(_mulk(cls, cn) + c1)]
        m.d.sync += [t_data[pp].eq(tch[pp]) for pp in range(P)]
        if l > 0:
            i_we, i_addr = Signal(), Signal(range(max(2, C * ci)))
            i_data = [Signal(signed(qin.width), name=f"tin_wdata{pp}", reset_less=True) for pp in range(P)]
            m.d.sync += [i_we.eq(v1 & (ph1 == _FWD) & (a1 == 1) & (b1 == 0)), i_addr.eq(_mulk(cls, ci) + c1)]
            m.d.sync += [i_data[pp].eq(ilane[pp]) for pp in range(P)]
        for pp in range(P):
            m.d.comb += [wr["T"][pp].addr.eq(t_addr), wr["T"][pp].data.eq(t_data[pp]), wr["T"][pp].en.eq(t_we)]
            if l > 0:    # Tin[c] <- t_in from the input memory's read data in row 0 of the t pass
                m.d.comb += [wr["Tin"][pp].addr.eq(i_addr), wr["Tin"][pp].data.eq(i_data[pp]),
                             wr["Tin"][pp].en.eq(i_we)]
        # input memory reads: the x / t_in chunk of FWD (signal ca) and of UPD (term cd)
        region = Mux(ph0 == _UPD, cd, ca)[0] if l > 0 else 0
        m.d.comb += ird.addr.eq(Mux(wbuf, 0, Sx * ci) + _mulk(region, ci) + cc)

        # ---- S1: operands and one multiplier per lane ----
        mac = m.submodules.mac = MacLanes(P, A, B)
        prod = [mac.prod[pp] for pp in range(P)]
        Wq2 = [Signal(signed(qw.width), name=f"wq{pp}", reset_less=True) for pp in range(P)]
        Tq2 = [Signal(signed(qa.width), name=f"tq{pp}", reset_less=True) for pp in range(P)]
        Rq2 = [Signal(signed(qt.width), name=f"rq{pp}", reset_less=True) for pp in range(P)] if l == 0 else None
        hWq2 = [Signal(signed(qw.width), name=f"hwq{pp}", reset_less=True) for pp in range(P)] if self.head else None
        bq2, hbq2 = Signal(signed(qb.width), reset_less=True), Signal(signed(qb.width), reset_less=True)
        ub2 = Signal(signed(ew + 2), reset_less=True)
        dk2, dk2_ovf = Signal(signed(qe.width)), Signal()
        # the class of the error term, chosen at S0 and registered (S1 then only indexes p)
        eidx, eidx_c = Signal(range(max(2, C)), name="eidx1"), Signal(name="eidx1_is_c")
        eidx0 = Mux(ph0 == _GRAD, Mux(cc == C, cls, cc), cb_)
        m.d.sync += [eidx.eq(eidx0), eidx_c.eq(eidx0 == cls)]
        m.d.comb += esel.eq(pr_a[eidx] - Mux(eidx_c, 1 << P_FRAC, 0))
        dk, dk_ovf = narrow(esel, P_FRAC, qe)
        if self.class_ce:
            # the row's lane in the head chunk; the FIFOs rotate after the last row of a chunk
            jl = Signal(range(P))
            heads = {nm: Array(dq[nm][0]) for nm in dq}
            d1h = heads["dh"][jl]
            d1tc, d1tm = dg_split(heads["dg"][jl])
            dsel = Mux(d1 == 0, d1h, Mux(d1 == 1, d1tc, d1tm))
            ub_terms = [d1h, d1tc, d1tm] if terms > 1 else [d1h]
            jl_next = Signal.like(jl, name="jl_next")   # jl at the S1 of the issue now at S0
            m.d.comb += jl_next.eq(jl)
            with m.If(v1 & (ph1 == _UPD)):
                with m.If(c1 == ci):
                    with m.If((jl == P - 1) | (b1 == n - 1)):
                        m.d.comb += jl_next.eq(0)
                    with m.Else():
                        m.d.comb += jl_next.eq(jl + 1)
            with m.Else():
                m.d.comb += jl_next.eq(0)
            m.d.sync += jl.eq(jl_next)
            # both FIFOs rotate at the S1 of a row's bias step when the row ends a chunk
            fifo_flag("fifo_rot1", v0 & (ph0 == _UPD) & (cc == ci) & ((jl_next == P - 1) | (cb_ == n - 1)),
                      "dh", "dg")
            fifo_flag("push_dh3", v2 & (ph2 == _GRAD) & (c2 == C - 1), "dh", push=True)
            fifo_flag("push_dg3", v2 & (ph2 == _GRAD) & (c2 == C), "dg", push=True)
            if l == 0:
                fifo_flag("tab_rot3", v2 & (ph2 == _TAB), "dg")
            for nm in dq:
                m.d.comb += [f_shift[nm].eq(Cat(*fifo_flags[nm]).any()), f_push[nm].eq(push_flag[nm])]
        else:
            dsel = Mux(d1 == 0, d_h_a[b1], Mux(d1 == 1, d_tc_a[b1], d_tm_a[b1]))
            ub_terms = [d_h_a[b1], d_tc_a[b1], d_tm_a[b1]] if terms > 1 else [d_h_a[b1]]
        # the bias step's sum of the terms: the terms registered at S1, added at S1b
        ub_regs = []
        for k, v in enumerate(ub_terms):
            r = Signal(Value.cast(v).shape(), name=f"ub_term{k}", reset_less=True)
            m.d.sync += r.eq(v)
            ub_regs.append(r)
        ub_sel = sum(ub_regs[1:], ub_regs[0])
        # S1 picks each operand's source (the same for every lane); the sources are registered
        # and, a cycle later (S1b), a multiplexer with that registered choice feeds MacLanes'
        # operand registers: no block RAM read, lane multiplexer or error term shares a cycle
        # with the operand multiplexer
        ZERO, A_W, A_T, A_TCH, A_ERR, A_D, A_HW, A_DK, A_SM = range(9)
        B_IN, B_HCH, B_T, B_TIN, B_SM = range(1, 6)
        asel, bsel = Signal(range(A_SM + 1)), Signal(range(B_SM + 1))
        with m.Switch(ph1):
            with m.Case(_FWD):
                m.d.comb += [asel.eq(A_W), bsel.eq(B_IN)]
            with m.Case(_READ):
                m.d.comb += [asel.eq(A_T), bsel.eq(B_HCH)]
            with m.Case(_TH):
                m.d.comb += [asel.eq(A_TCH), bsel.eq(B_HCH)]
            with m.Case(_GRAD):
                m.d.comb += [asel.eq(A_ERR), bsel.eq(Mux(c1 == C, B_HCH, B_T))]
            with m.Case(_UPD):
                m.d.comb += [asel.eq(A_D), bsel.eq(Mux(d1 == 2, B_TIN, B_IN) if l > 0 else B_IN)]
            if self.head:
                with m.Case(_HLOG):
                    m.d.comb += [asel.eq(A_HW), bsel.eq(B_HCH)]
                with m.Case(_HUPD):
                    m.d.comb += [asel.eq(A_DK), bsel.eq(B_HCH)]
        if need_sm:       # the softmax's products e_k q on the idle lanes
            with m.If(sm.mul_en):
                m.d.comb += [asel.eq(A_SM), bsel.eq(B_SM)]

        def src(v, name):
            """``v`` registered: an operand source at S1b."""
            r = Signal(Value.cast(v).shape(), name=name, reset_less=True)
            m.d.sync += r.eq(v)
            return r
        asel_b, bsel_b = src(asel, "asel_b"), src(bsel, "bsel_b")
        shared_a = {A_ERR: src(esel, "esel_b"), A_D: src(dsel, "dsel_b")}
        if self.head:
            shared_a[A_DK] = src(dk, "dk_b")
        if need_sm:
            shared_a[A_SM] = src(sm.mul_a, "sm_a_b")
        for pp in range(P):
            srcs_a = {A_W: src(rd["W"][pp].data, f"w_b{pp}"), A_T: src(rd["T"][pp].data, f"t_b{pp}"),
                      A_TCH: src(tch[pp], f"tch_b{pp}"), **shared_a}
            srcs_b = {B_IN: src(ilane[pp], f"in_b{pp}"), B_HCH: src(hch[pp], f"hch_b{pp}"), B_T: srcs_a[A_T]}
            if l > 0:
                srcs_b[B_TIN] = src(rd["Tin"][pp].data, f"tin_b{pp}")
            if self.head:
                srcs_a[A_HW] = src(rd["head_W"][pp].data, f"hw_b{pp}")
            if need_sm:
                # q in (B - 1)-bit pieces, lane pp's piece of group mul_g (0 beyond q's width)
                piece = Signal(pb, name=f"smb{pp}")
                with m.Switch(sm.mul_g):
                    for gi in range(G_sm):
                        if (gi * P + pp) * pb < MBB:
                            with m.Case(gi):
                                m.d.comb += piece.eq((sm.mul_b >> ((gi * P + pp) * pb))[:pb])
                srcs_b[B_SM] = src(piece, f"sm_b_b{pp}")
            ma, mb = mac.a[pp], mac.b[pp]
            with m.Switch(asel_b):
                for code, v in srcs_a.items():
                    with m.Case(code):
                        m.d.comb += ma.eq(v)
            with m.Switch(bsel_b):
                for code, v in srcs_b.items():
                    with m.Case(code):
                        m.d.comb += mb.eq(v)
            late(Wq2[pp], rd["W"][pp].data)
            late(Tq2[pp], rd["T"][pp].data)
            if l == 0:
                late(Rq2[pp], rd["R"][pp].data)
                # TGT: t = narrow(R[c]) from the read data registered first (the block RAM's
                # clock-to-out and a narrowing do not fit one cycle at speed)
                r_row = Signal(signed(qt.width), name=f"rrow{pp}", reset_less=True)
                m.d.sync += r_row.eq(rd["R"][pp].data)
                with m.If(tv2):
                    m.d.sync += t_l[pp][tq2].eq(narrow(r_row, ft, qa)[0])
            if self.head:
                late(hWq2[pp], rd["head_W"][pp].data)
        for x2, x1 in ((bq2, rd["b"][0].data), (dk2, dk), (dk2_ovf, dk_ovf)):
            late(x2, x1)
        late(ub2, ub_sel, STAGE_LATENCY - 1)           # from S1b
        if self.head:
            late(hbq2, rd["head_b"][0].data)

        # ---- S2: accumulate ----
        tree = mac.total
        if need_sm:
            from .softmax import E_BITS
            m.d.comb += sm.mul_p.eq(sum(prod[pp].as_unsigned()[:E_BITS + pb] << (pp * pb)
                                        for pp in range(min(P, math.ceil(MBB / pb)))))
        acc_n = Signal.like(acc)
        acc_fwd = Signal.like(acc, name="acc_fwd")
        sat_w, sat_b, sat_e, sat_t = (Signal(32, name=nm) for nm in ("sat_w", "sat_b", "sat_e", "sat_t"))
        sat_wh, sat_bh, sat_eh = (Signal(32, name=nm) for nm in ("sat_wh", "sat_bh", "sat_eh"))
        m.d.comb += [self.sat_weight.eq(sat_w), self.sat_bias.eq(sat_b), self.sat_error.eq(sat_e),
                     self.sat_table.eq(sat_t)]
        if self.head:
            m.d.comb += [self.sat_weight_head.eq(sat_wh), self.sat_bias_head.eq(sat_bh),
                         self.sat_error_head.eq(sat_eh)]
        # one accumulator per lane for GRAD (sum over classes) and UPD (sum over terms), one adder
        racc = [Signal(signed(max(lacc_w, uacc_w)), name=f"racc{pp}", reset_less=True) for pp in range(P)]
        rzero = Mux(ph2 == _GRAD, (c2 == 0) | (c2 == C), d2 == 0)
        rsum = [Signal(signed(max(lacc_w, uacc_w) + 1), name=f"rsum{pp}") for pp in range(P)]
        for pp in range(P):
            m.d.comb += rsum[pp].eq(Mux(rzero, 0, racc[pp]) + prod[pp])
            m.d.sync += racc[pp].eq(rsum[pp])
        # the dot-product accumulator: one adder, its start value by phase (bias or 0)
        acc_base = Signal.like(acc)
        m.d.comb += [acc_base.eq(Mux(c2 == 0, 0, acc)), acc_n.eq(acc_base + tree)]
        maskm = [Signal(name=f"maskm{pp}") for pp in range(P)]

        def popcount(flags):
            return sum(f.as_unsigned() for f in flags) if flags else 0

        def lane_valid(pp, idx, count):
            return (_mulk(idx, P) + pp) < count

        def argmax_update(k):
            with m.If((k == 0) | (acc > best)):
                m.d.sync += [best.eq(acc), pred.eq(k)]
            with m.If((k != cls) & (~have_m | (acc > bestm))):
                m.d.sync += [bestm.eq(acc), mreg.eq(k), have_m.eq(1)]

        with m.If(v2):
            with m.Switch(ph2):
                with m.Case(_FWD):
                    m.d.comb += acc_base.eq(Mux(c2 == 0, bq2 << bsh, acc))
                    m.d.sync += [acc.eq(acc_n), acc_fwd.eq(acc_n)]
                with m.Case(_READ, _TH):
                    m.d.sync += acc.eq(acc_n)
                if self.head:
                    with m.Case(_HLOG):
                        m.d.comb += acc_base.eq(Mux(c2 == 0, hbq2 << hbsh, acc))
                        m.d.sync += acc.eq(acc_n)

        # ---- S3: the finished sums (the accumulator registers) narrowed, compared or written back:
        # h, t, the logits and the argmax; the deltas into their FIFOs; W, b, R and the head ----
        v3, ph3, a3, b3, c3, d3 = Signal(), Signal(4), Signal.like(ca), Signal.like(ca), Signal.like(ca), Signal.like(ca)
        m.d.sync += [v3.eq(v2), ph3.eq(ph2), a3.eq(a2), b3.eq(b2), c3.eq(c2), d3.eq(d2)]

        def s3(x2):
            """The S2 value one cycle later, alongside ``racc`` (the lanes' finished sums)."""
            if x2 is None:
                return None
            if isinstance(x2, list):
                return [s3(x) for x in x2]
            x3 = Signal.like(x2, name=f"{x2.name}_s3")
            m.d.sync += x3.eq(x2)
            return x3
        Wq3, Tq3, Rq3, hWq3, hch3, tch3 = s3(Wq2), s3(Tq2), s3(Rq2), s3(hWq2), s3(hch2), s3(tch2)
        bq3, hbq3, ub3, dk3, dk3_ovf, raddr3 = s3(bq2), s3(hbq2), s3(ub2), s3(dk2), s3(dk2_ovf), s3(raddr2)
        # FWD's sums are narrowed from a copy of the accumulator that only FWD updates (acc also
        # feeds the logits, the argmax and itself, and is placed for them)
        hv3 = narrow(acc_fwd, fw + fin, qa)[0]
        # h[j] and t[j] land at S4 from registers (the narrowing is a carry chain of its own)
        hv4, hwe4, twe4, b4 = Signal.like(hv3), Signal(), Signal(), Signal.like(b3)
        m.d.sync += [hv4.eq(hv3), b4.eq(b3), hwe4.eq(0), twe4.eq(0)]
        with m.If(hwe4):
            m.d.sync += h_a[b4].eq(hv4)
        with m.If(twe4):
            m.d.sync += t_a[b4].eq(hv4)

        # S4 registers: the rounded step of each lane (W, R, the head's W) and of the bias, the
        # old values, where and whether to write; saturation flags for the counters
        # (widths: those of the rounded expressions themselves, so nothing is cut before saturating)
        shW, shB, shR, shHW = fe + fin - fw + s_shift, fe - fb + s_shift, fe - ft + s_shift, fe + fa - fw + s_shift
        # the steps are subtracted at S4 with rounding to nearest (half to even is odd-symmetric:
        # round(-x) = -round(x), so the negation is not a carry chain of its own at S3), added
        # as rounded negations otherwise (floor-based roundings are not symmetric)
        sub = mode == "nearest"

        def step(x, k, draw):
            """The rounded ``-x >> k`` (or ``x >> k`` when the step is subtracted)."""
            return round_shift(x, k) if sub else round_shift(-x, k, mode, draw)

        def apply_step(old, st):
            return old - st if sub else old + st
        lane_steps = [step(racc[0], shW, draws[0])]
        bias_steps = [step(ub3, shB, draws[0])]
        if l == 0 and self.class_ce:
            dtc0, dtm0 = dg_split(dq["dg"][0][0])
            lane_steps.append(step(Mux(b3 == 0, dtc0, dtm0), shR, draws[0]))
        if self.head:
            lane_steps.append(step(racc[0], shHW, hdraws[0]))
            bias_steps.append(step(dk3, shB, hdraws[0]))
        step4 = [Signal(signed(max(len(v) for v in lane_steps)), name=f"step4_{pp}", reset_less=True)
                 for pp in range(P)]
        old4 = [Signal(signed(max(qw.width, qt.width)), name=f"old4_{pp}", reset_less=True) for pp in range(P)]
        lane4 = [Signal(name=f"lane4_{pp}") for pp in range(P)]
        bstep4 = Signal(signed(max(len(v) for v in bias_steps)), reset_less=True)
        bold4 = Signal(signed(qb.width), reset_less=True)
        wgo4, bgo4, tgo4, hgo4, hbgo4, eovf4 = (Signal(name=nm) for nm in ("wgo4", "bgo4", "tgo4", "hgo4", "hbgo4", "eovf4"))
        waddr4, baddr4 = Signal(16), Signal(16)
        taddr4 = Signal.like(raddr3)
        eflags4 = Signal(P)
        m.d.sync += [wgo4.eq(0), bgo4.eq(0), tgo4.eq(0), hgo4.eq(0), hbgo4.eq(0), eflags4.eq(0)]
        with m.If(v3):
            with m.Switch(ph3):
                with m.Case(_FWD):
                    with m.If(c3 == ci - 1):
                        with m.If(a3 == 0):
                            m.d.sync += hwe4.eq(1)
                        with m.Else():
                            m.d.sync += twe4.eq(1)
                with m.Case(_READ):
                    with m.If(c3 == cn - 1):
                        m.d.sync += s_a[b3].eq(acc)
                        argmax_update(b3)
                with m.Case(_TH):
                    with m.If(c3 == cn - 1):
                        m.d.sync += s_a[cls].eq(acc)
                if self.class_ce:
                    with m.Case(_GRAD):
                        ovfs, vh, vtc = [], [], []
                        for pp in range(P):
                            with m.If(c3 == mreg):
                                m.d.sync += maskm[pp].eq(inside(Tq3[pp]))
                            # one narrowing per lane: g_h at step C - 1, g_t at step C
                            gh, gh_ovf = narrow(racc[pp], P_FRAC + fa, qe)
                            ovf = Signal(name=f"eovf{pp}")
                            vh.append(Mux(inside(hch3[pp]), gh, 0))
                            mm = maskm[pp] if self.push else Const(0, 1)
                            vtc.append(Cat(gh, inside(tch3[pp]), mm))
                            with m.If((c3 == C - 1) | (c3 == C)):
                                m.d.comb += ovf.eq(gh_ovf & lane_valid(pp, b3, n))
                            ovfs.append(ovf)
                        with m.If(c3 == C - 1):
                            fifo_push("dh", vh)
                        with m.If(c3 == C):
                            fifo_push("dg", vtc)
                        m.d.sync += eflags4.eq(Cat(*ovfs))
                with m.Case(_UPD):
                    for pp in range(P):
                        m.d.sync += [step4[pp].eq(step(racc[pp], shW, draws[pp])),
                                     old4[pp].eq(Wq3[pp])]
                    m.d.sync += [bstep4.eq(step(ub3, shB, draws[0])), bold4.eq(bq3),
                                 wgo4.eq((c3 < ci) & (d3 == terms - 1)), bgo4.eq(c3 == ci),
                                 waddr4.eq(_mulk(b3, ci) + c3), baddr4.eq(b3)]
                    if stoch:
                        m.d.comb += lf.advance.eq(Mux(c3 == ci, 1, Mux(d3 == terms - 1, chunk_count(c3, ci, n_in), 0)))
                if l == 0 and self.class_ce:
                    with m.Case(_TAB):            # the dg FIFO rotates (tab_rot3)
                        for pp in range(P):
                            dtc_h, dtm_h = dg_split(dq["dg"][0][pp])
                            dv = Mux(b3 == 0, dtc_h, dtm_h)
                            m.d.sync += [step4[pp].eq(step(dv, shR, draws[pp])), old4[pp].eq(Rq3[pp]),
                                         lane4[pp].eq(lane_valid(pp, c3, n))]
                        m.d.sync += [tgo4.eq(1), taddr4.eq(raddr3)]
                        if stoch:
                            m.d.comb += lf.advance.eq(chunk_count(c3, cn, n))
                if self.head:
                    with m.Case(_HLOG):
                        with m.If(c3 == cn - 1):
                            m.d.sync += s_a[b3].eq(acc)
                            with m.If((b3 == 0) | (acc > best)):
                                m.d.sync += [best.eq(acc), pred.eq(b3)]
                    with m.Case(_HUPD):
                        for pp in range(P):
                            # HUPD's lane sums are single products (rzero at every d == 0)
                            m.d.sync += [step4[pp].eq(step(racc[pp], shHW, hdraws[pp])),
                                         old4[pp].eq(hWq3[pp])]
                        m.d.sync += [bstep4.eq(step(dk3, shB, hdraws[0])), bold4.eq(hbq3),
                                     hgo4.eq(c3 < cn), hbgo4.eq(c3 == cn), waddr4.eq(_mulk(b3, cn) + c3), baddr4.eq(b3),
                                     eovf4.eq(dk3_ovf)]
                        if stoch:
                            m.d.comb += lfh.advance.eq(Mux(c3 == cn, 1, chunk_count(c3, cn, n)))

        # ---- S4: add the rounded steps, saturate, write back; count saturations a cycle later ----
        wflags, bflag, tflags, hflags, hbflag, heflag = Signal(P), Signal(), Signal(P), Signal(P), Signal(), Signal()
        for pp in range(P):
            wn, wovf = saturate(apply_step(old4[pp], step4[pp]), qw)
            m.d.comb += [wr["W"][pp].addr.eq(waddr4), wr["W"][pp].data.eq(wn), wr["W"][pp].en.eq(wgo4)]
            m.d.sync += wflags[pp].eq(wovf & wgo4)
            if l == 0 and self.class_ce:
                rn, rovf = saturate(apply_step(old4[pp], step4[pp]), qt)
                m.d.comb += [wr["R"][pp].addr.eq(taddr4), wr["R"][pp].data.eq(rn), wr["R"][pp].en.eq(tgo4)]
                m.d.sync += tflags[pp].eq(rovf & lane4[pp] & tgo4)
            if self.head:
                m.d.comb += [wr["head_W"][pp].addr.eq(waddr4), wr["head_W"][pp].data.eq(wn),
                             wr["head_W"][pp].en.eq(hgo4)]
                m.d.sync += hflags[pp].eq(wovf & hgo4)
        bn, bovf = saturate(apply_step(bold4, bstep4), qb)
        m.d.comb += [wr["b"][0].addr.eq(baddr4), wr["b"][0].data.eq(bn), wr["b"][0].en.eq(bgo4)]
        m.d.sync += bflag.eq(bovf & bgo4)
        if self.head:
            m.d.comb += [wr["head_b"][0].addr.eq(baddr4), wr["head_b"][0].data.eq(bn),
                         wr["head_b"][0].en.eq(hbgo4)]
            m.d.sync += [hbflag.eq(bovf & hbgo4), heflag.eq(eovf4 & hbgo4)]
        m.d.sync += [sat_w.eq(sat_w + popcount(list(wflags))), sat_b.eq(sat_b + bflag),
                     sat_t.eq(sat_t + popcount(list(tflags))), sat_e.eq(sat_e + popcount(list(eflags4))),
                     sat_wh.eq(sat_wh + popcount(list(hflags))), sat_bh.eq(sat_bh + hbflag),
                     sat_eh.eq(sat_eh + heflag)]
        # writes or counts still on their way (the engine is idle only without them)
        for vp, port in write_ports:
            m.d.sync += [port.addr.eq(vp.addr), port.data.eq(vp.data), port.en.eq(vp.en)]
        mem_writes = Cat(cwr.en.any(), *(port.en for _, port in write_ports)).any()
        m.d.comb += self.pipe_busy.eq(mem_writes | ck_go | v_inflight | v2 | v3 | wgo4 | bgo4 | tgo4 | hgo4 | hbgo4 |
                                      wflags.any() | bflag | tflags.any() | eflags4.any() | hflags.any() |
                                      hbflag | heflag)

        # ---- the FSM: issue phases ----
        cyc = Signal(32)
        out_pending = Signal()
        pred_valid = Signal()
        m.d.comb += self.busy.eq(0)
        if not self.last:
            o = self.o.payload
            t_done = Signal()
            m.d.comb += self.o.valid.eq(out_pending & t_done)
            m.d.comb += [o.label.eq(cls), o.train.eq(train)]
            # h[j] and t[j] to the next stage as FWD narrows them (S2, the last chunk of a row)
            hw_go = v3 & (ph3 == _FWD) & (c3 == ci - 1)
            m.d.comb += [self.out_we.eq(hw_go), self.out_sig.eq(a3 if l > 0 else 0), self.out_idx.eq(b3),
                         self.out_data.eq(hv3)]
            if l == 0:
                # layer 0's t = f(R[c]) lands a chunk a cycle at the start of FWD; its entries go
                # out one at a time in cycles without an h write (the hand-over waits for them)
                tj = Signal(range(n + 1))
                m.d.comb += t_done.eq((tj == n) | ~train)
                with m.If(~hw_go & train & (tq == cn) & ~tv1 & ~tv2 & (tj < n) & self.busy):
                    m.d.comb += [self.out_we.eq(1), self.out_sig.eq(1), self.out_idx.eq(tj),
                                 self.out_data.eq(Array(t)[tj])]
                    m.d.sync += tj.eq(tj + 1)
                with m.If(self.i.valid & self.i.ready):
                    m.d.sync += tj.eq(0)
            else:
                m.d.comb += t_done.eq(1)
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

        if not self.last:
            # hand the sample over once the last row of FWD reached S3 (its h / t entry went out)
            last_pass = Mux(train, 1, 0) if l > 0 else 0
            with m.If(v3 & (ph3 == _FWD) & (a3 == last_pass) & (b3 == n - 1) & (c3 == ci - 1)):
                m.d.sync += out_pending.eq(1)

        def after_tgt():
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

        # Phases that need no drain before the next: nothing the next one reads at S0/S1 is
        # written later by this one, and S2/S3 stay in issue order. FWD -> READ when the last chunk
        # of h is read at least DRAIN + 2 issues into READ, after the last h entry landed (S4; the
        # t pass of a layer >= 1 ends FWD after the h pass anyway); READ -> TH (TH reads h, t and
        # T[c], READ writes only s and the argmax), UPD -> TAB (TAB reads R and the FIFO head it
        # rotates itself; UPD's rotations are at S1, its writes go to W and b).
        no_drain = {}
        if keep["READ"] and cn >= STAGE_LATENCY + 3:
            to_read = (train & Const(int(self.class_ce or (self.last and not self.head)))) | \
                (~train & Const(int(self.last and not self.head)))
            no_drain["FWD"] = (to_read, "READ")
        if keep["READ"] and keep["TH"]:
            no_drain["READ"] = (train, "TH")
        if keep["UPD"] and keep["TAB"]:
            no_drain["UPD"] = (Const(1), "TAB")

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [rb_active.eq(self.rb_en),
                             self.i.ready.eq(~out_pending & ~self.rb_en)]
                with m.If(self.i.valid & self.i.ready):
                    ip = self.i.payload
                    m.d.sync += wbuf.eq(~wbuf)
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
                        if name in no_drain:
                            with m.If(no_drain[name][0]):
                                m.next = no_drain[name][1]
                            with m.Else():
                                m.next = f"W_{name}"
                        else:
                            m.next = f"W_{name}"
                with m.State(f"W_{name}"):
                    m.d.comb += self.busy.eq(1)
                    # phases with S3 results (s, the argmax) wait for them too, FWD for its S4
                    # writes of h and t
                    done = (~v_early if name == "GRAD" else ~v_inflight) & \
                        (~v2 if name in ("FWD", "READ", "TH", "HLOG") else 1)
                    with m.If(done & (~v3 if name == "FWD" else 1)):
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

        # ---- checkpoint writes (idle only; after every other driver of the write ports, so it
        # wins), decoded from registers: a write lands a cycle after the request, like every
        # other write, and the host's request decoding stays off the memories' write paths
        m.d.sync += [ck_go.eq(rb_active & self.wb_en), ck_mem.eq(self.rb_mem), ck_bank.eq(self.rb_bank),
                     ck_addr.eq(self.rb_addr), ck_data.eq(self.wb_data)]
        for name in wr:
            for bk, port in enumerate(wr[name]):
                # every bank takes the address (the packed cache reads bank 0's), one bank writes
                with m.If(ck_go & (ck_mem == MEM_IDS[name])):
                    m.d.comb += [port.addr.eq(ck_addr), port.data.eq(ck_data[:len(port.data)]),
                                 port.en.eq(ck_bank == bk)]

        # ---- readback ----
        # the bank's word of every memory registered (a block RAM's clock-to-out without output
        # register is most of a cycle at speed), then the memory's
        rb_mem1, rb_bank1, rb_mem2 = Signal(3), Signal.like(self.rb_bank), Signal(3)
        m.d.sync += [rb_mem1.eq(self.rb_mem), rb_bank1.eq(self.rb_bank), rb_mem2.eq(rb_mem1)]
        for name in rd:
            word = Signal(signed(32), name=f"rb_{name}", reset_less=True)
            with m.Switch(rb_bank1):
                for bk, port in enumerate(rd[name]):
                    with m.Case(bk):
                        m.d.sync += word.eq(port.data)
            with m.If(rb_mem2 == MEM_IDS[name]):
                m.d.sync += self.rb_data.eq(word)
        return m
