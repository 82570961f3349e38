"""The direct feedback alignment (DFA) training engine: one lane array walks the layers forward,
the output layer's error goes straight back to every hidden layer through fixed random sign
matrices, and each layer updates from the activations it stored on the way forward.

It (and :class:`FaEngine`, feedback alignment) follows ``GoldenRule`` (``rule="dfa"``) bit for bit and
answers the same ports and readback map as the SigProp engines (:func:`..engine.engine_members`,
:func:`sigprop_fpga.compiler.statemap.readback_map` with ``rule="dfa"``), so the feeder, the
Verilator bench and the golden comparison work unchanged.

Memories (``P`` lanes; per layer ``ci = ceil(n_in / P)``, ``cn = ceil(n / P)``; the output layer is
layer ``L`` with ``C`` rows)::

    W_l[p]   one bank per lane, weight width   W_l[j][i] at bank i % P, word j ci + i // P
    b_l      one word per unit                 b_l[j] at word j
    x_v      P activation lanes                the stored activations: x_0 the input, x_v = h_{v-1};
                                               x_v[i] at lane i % P, word i // P (kept from the
                                               forward pass for the updates and the masks)
    S_l      P bits                            the feedback signs: word q C + k holds
                                               S_l[k][q P + p] < 0 at bit p (C n_l bits a layer)
    d[0..1]  P error lanes                     the deltas d_l in d[l % 2], d_l[j] at lane j % P, word j // P

The feedback matrices are signs: an entry is ``±2^-k_l``
(:func:`sigprop_fpga.compiler.rule.feedback_shift`), so ``g = S^T e`` is a sum of ``C`` additions
or subtractions per unit and needs no multiplier; ``C n_l`` bits per layer.

Datapath: a sweep issues one word per cycle over ``rows x ci`` (S0 the addresses; S1 the read
data and the lanes' operands; S2-S4 :class:`.mac.MacLanes` with latency 3; S3 the late reads of a
read-modify-write (the weight word, the bias); S4 the products or the adder tree's total; S5 the
narrowed activation or the logit). Phases of a training sample, named as
:func:`sigprop_fpga.compiler.estimate.dfa_cycles` names them:

=============  ==============================================================  ==================
phase          does                                                            issue cycles
=============  ==============================================================  ==================
``forward``    per layer: ``h_j = f(W x + b)`` into ``x_{l+1}``                ``n ci``
``logits``     ``o_k = W_out h_L + b``; the prediction ``argmax o``            ``C cn_L``
``softmax``    :class:`.softmax.Softmax` on ``o``; then ``e = prob - y``       ``softmax_latency(C)``
``gradient``   per hidden layer: ``g = S^T e`` on ``P`` units at a time,     ``C cn`` (fa:
               ``d = narrow(g) f'(h)`` into ``d[l % 2]`` (fa: ``S^T d_{l+1}``)  ``rows_{l+1} cn``)
``update``     per layer: ``W -= round(d x^T >> s)``, ``b -= round(d >> s)``,  ``rows ci``
               lane-wise read-modify-write
=============  ==============================================================  ==================

The learning phases run from the top: the gradient of layer ``L-1``, the output layer's update,
the gradient of ``L-2``, the update of ``L-1``, ..., the update of layer 0 (the order backprop
needs, :mod:`.backprop`; for DFA any order gives the same bits).

Each phase ends when its pipeline has drained (a few cycles,
:func:`sigprop_fpga.compiler.estimate.dfa_cycles` counts them exactly). An inference sample runs
``forward`` and ``logits`` only. Nothing overlaps across samples: a sample is taken once the
previous one has finished, and the input memory is not double buffered (loading costs
``n_in + 1`` cycles a sample).
"""

from __future__ import annotations

import math

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory

from ..compiler.fixed import P_FRAC
from ..compiler.network import Network
from ..compiler.rule import (Rule, activation_range, feedback_shift, init_rule_params, out_shifts,
                             quantize_rule_params, step_shifts)
from ..compiler.statemap import MEM_IDS, counter_names, readback_map
from ..compiler.timing import MUL_LATENCY
from . import BLOCK_RAM
from .engine import engine_members
from .fixed import fit_bits, inside, narrow, round_shift, saturate
from .mac import MacLanes
from .memports import power_up_flag, read_in_range
from .softmax import Softmax

__all__ = ["DfaEngine", "FaEngine", "check_dfa_support"]


def check_dfa_support(net: Network) -> None:
    """Raise ``ValueError`` (one line) for what the DFA engine does not build."""
    if net.spec.precision.rounding != "nearest":
        raise ValueError(f"the dfa engine rounds to nearest only, the network asks for "
                         f"{net.spec.precision.rounding} rounding")
    for l in range(net.depth):
        p = net.prec(l)
        if p.weight.frac_bits + net.in_format(l).frac_bits < p.bias.frac_bits:
            raise ValueError(f"layer {l}: the dfa engine needs bias fraction bits <= weight + input fraction bits")


class _Layer:
    """The constants of one weight layer (``L`` is the output layer)."""

    def __init__(self, net: Network, l: int, P: int):
        L = net.depth
        last = net.prec(L - 1)
        p = net.prec(l) if l < L else last
        self.rows = net.units(l) if l < L else net.n_classes
        self.cols = net.fan_in(l) if l < L else net.units(L - 1)
        self.ci = math.ceil(self.cols / P)
        self.qw, self.qb, self.qe = p.weight, p.bias, p.error
        self.fi = net.in_format(l).frac_bits if l < L else last.activation.frac_bits
        self.align = p.weight.frac_bits + self.fi - p.bias.frac_bits
        k = step_shifts(net, l) if l < L else out_shifts(net)
        self.w_shift, self.b_shift = k.weight, k.bias
        self.qa = activation_range(p.activation) if l < L else None
        self.acc_w = p.weight.width + (net.in_format(l).width if l < L else last.activation.width) \
            + max(1, (self.cols + 1).bit_length()) + 2


class DfaEngine(wiring.Component):
    """The DFA training engine for one network (see the module docstring for the datapath).

    Parameters
    ----------
    net : Network
    lanes : int, optional
        Lanes ``P`` of the one lane array (default 4).
    params : dict, optional
        Float parameters as :func:`sigprop_fpga.compiler.rule.init_rule_params` returns them for
        ``dfa`` (the default); rounded to their formats here, as the golden model rounds them.

    Members
    -------
    The SigProp engines' (:class:`.engine.SigPropEngine`): ``i`` (``n_in`` feature beats, then the
    label beat with ``train``), ``o`` (one prediction a sample, made before learning), ``rb_en``,
    ``rb_addr``, ``rb_data``, ``wb_en``, ``wb_data`` (the ``dfa`` readback map: ``W``, ``b`` per
    layer, the output layer as ``head_W``, ``head_b`` of the last; counters of
    :func:`sigprop_fpga.compiler.statemap.counter_names` ``(net, "dfa")``), ``idle``, ``cycles``,
    ``samples``, ``inferences``.

    Latency and throughput
    ----------------------
    A training sample takes :func:`sigprop_fpga.compiler.estimate.dfa_cycles` ``(net, P)["train"]``
    cycles from its label beat to its prediction, plus ``n_in + 1`` beats to load it; an inference
    sample ``["inference"]``. ``rb_data`` answers :attr:`rb_latency` (2) cycles after ``rb_addr``.
    """

    rb_latency = 2
    rule = Rule.DFA

    def __init__(self, net: Network, lanes=None, params: dict | None = None):
        self._MustUse__silence = True      # no "never used" warning if an argument check fails
        if not isinstance(net, Network):
            raise TypeError(f"Network must be a Network, not {net!r}")
        lanes = 4 if lanes is None else lanes
        if isinstance(lanes, (tuple, list)):
            if len(set(lanes)) != 1:
                raise ValueError(f"The dfa engine has one lane array: expected one lane count, got {list(lanes)}")
            lanes = lanes[0]
        if not isinstance(lanes, int) or isinstance(lanes, bool):
            raise TypeError(f"Lane count must be an integer, not {lanes!r}")
        if lanes < 1:
            raise ValueError(f"Lane count must be at least 1, not {lanes}")
        check_dfa_support(net)
        self.net, self.P = net, lanes
        self.lanes = (lanes,) * net.depth
        self.params = quantize_rule_params(net, params if params is not None else init_rule_params(net, self.rule))
        self.map = readback_map(net, self.lanes, self.rb_latency, self.rule)
        self.counters = counter_names(net, self.rule)
        self.layers = [_Layer(net, l, lanes) for l in range(net.depth + 1)]
        self.in_width, members = engine_members(net, self.map)
        super().__init__(members)
        self._MustUse__silence = False

    # -- memories ----------------------------------------------------------------------------
    def _vector_formats(self):
        net = self.net
        return [net.spec.precision.input] + [net.prec(l).activation for l in range(net.depth)]

    def _memories(self, m, c):
        net, P, L = self.net, self.P, self.net.depth
        c.W, c.b = [], []
        for l, lay in enumerate(self.layers):
            W = self.params["layers"][l]["W"] if l < L else self.params["out"]["W"]
            b = self.params["layers"][l]["b"] if l < L else self.params["out"]["b"]
            banks = []
            for p in range(P):
                img = [int(W[j, q * P + p]) if q * P + p < lay.cols else 0 for j in range(lay.rows) for q in range(lay.ci)]
                mem = m.submodules[f"w{l}_{p}"] = Memory(shape=signed(lay.qw.width), depth=lay.rows * lay.ci,
                                                         init=img, attrs=BLOCK_RAM)
                banks.append((mem.read_port(), mem.write_port()))
            c.W.append(banks)
            mem = m.submodules[f"b{l}"] = Memory(shape=signed(lay.qb.width), depth=lay.rows,
                                                 init=[int(v) for v in b], attrs=BLOCK_RAM)
            c.b.append((mem.read_port(), mem.write_port()))
        c.wa = max(q.width for q in self._vector_formats())
        c.x = []
        for v in range(L + 1):
            n = net.n_inputs if v == 0 else net.units(v - 1)
            halves = 2 if v == 0 else 1         # the input is double buffered: the next sample loads
            mem = m.submodules[f"x{v}"] = Memory(shape=unsigned(P * c.wa), depth=halves * math.ceil(n / P),
                                                 init=[], attrs=BLOCK_RAM)
            c.x.append((mem.read_port(), mem.write_port(granularity=c.wa)))
        c.we = max(net.prec(l).error.width for l in range(L))
        # the deltas, two memories: a gradient phase writes d_l to d[l % 2] while the update above
        # it (backprop: the gradient itself) reads d_{l+1} from the other
        c.d = []
        for i in range(2 if L > 1 else 1):
            dmem = m.submodules[f"d{i}"] = Memory(shape=unsigned(P * c.we), init=[], attrs=BLOCK_RAM,
                                                  depth=max(math.ceil(net.units(l) / P) for l in range(L)))
            c.d.append((dmem.read_port(), dmem.write_port()))
        self._feedback_memories(m, c)

    def _feedback_rows(self, l: int) -> int:
        """Rows ``K_l`` of layer ``l``'s sign matrix: the error it carries back (DFA: the ``C``
        classes of the output error)."""
        return self.net.n_classes

    def _feedback_from_output(self, l: int) -> bool:
        """Whether layer ``l``'s feedback carries the output error ``e`` (else ``d_{l+1}``)."""
        return True

    def _feedback_memories(self, m, c):
        """The sign matrices ``S_l``: word ``q K_l + k`` holds ``S_l[k][q P + p] < 0`` at bit ``p``."""
        net, P, L = self.net, self.P, self.net.depth
        c.S = []
        for l in range(L):
            S = self.params["signs"][l]
            n, K = net.units(l), self._feedback_rows(l)
            img = [sum(1 << p for p in range(P) if q * P + p < n and S[k, q * P + p] < 0)
                   for q in range(math.ceil(n / P)) for k in range(K)]
            mem = m.submodules[f"s{l}"] = Memory(shape=unsigned(P), depth=len(img), init=img, attrs=BLOCK_RAM)
            c.S.append(mem.read_port())

    def _lane_b_width(self, c) -> int:
        """The lanes' second operand: an activation (forward, updates)."""
        return c.wa

    def _d_data(self, c, parity):
        """The read data of the delta memory ``parity`` selects."""
        return c.d[0][0].data if len(c.d) == 1 else Mux(parity, c.d[1][0].data, c.d[0][0].data)

    def _d_write(self, m, c, parity, cond, addr, data):
        """Write ``data`` to word ``addr`` of the delta memory ``parity`` selects, when ``cond``."""
        for i, (_, wp) in enumerate(c.d):
            with m.If(cond & ((parity == i) if len(c.d) > 1 else 1)):
                m.d.comb += [wp.addr.eq(addr), wp.data.eq(data), wp.en.eq(1)]

    def elaborate(self, platform):
        m = Module()
        net, P, L, C = self.net, self.P, self.net.depth, self.net.n_classes

        class Ctx:
            pass

        c = Ctx()
        self._memories(m, c)
        c.first = power_up_flag(m)
        c.layer = Signal(range(L + 1))
        c.label = Signal(range(max(2, C)))
        c.train = Signal()
        c.pred = Signal(range(max(2, C)))
        c.e = Array(Signal(signed(c.we), name=f"e{k}") for k in range(C))
        c.sat = {v: [Signal(32, name=f"sat_{v}_{t}") for t in range(L + 1)] for v in ("weight", "bias", "error")}
        c.sample_cycles = Signal(32)
        a_w = max(max(lay.qw.width for lay in self.layers), c.we)
        m.submodules.lanes = c.mac = MacLanes(P, a_w, self._lane_b_width(c), MUL_LATENCY)
        c.o_w = self.layers[L].acc_w
        c.o = [Signal(signed(c.o_w), name=f"o{k}") for k in range(C)]
        fa = net.prec(L - 1).activation.frac_bits
        m.submodules.softmax = c.sm = Softmax(C, c.o_w, fracs=(net.prec(L - 1).weight.frac_bits + fa,))
        for k in range(C):
            m.d.comb += c.sm.s[k].eq(c.o[k])
        self._sweep(m, c)
        self._gradient(m, c)
        self._sequence(m, c)
        self._ports(m, c)
        self._readback(m, c)
        return m

    # -- the sweep: forward, logits and update ------------------------------------------------
    def _sweep(self, m, c):
        """Rows x ci issues, S0 to S5 (module docstring): dot products (``c.upd`` low) or the
        lane-wise read-modify-write of an update (``c.upd`` high) of layer ``c.layer``."""
        net, P, L = self.net, self.P, self.net.depth
        lays = self.layers
        c.upd = Signal()
        c.issuing = Signal()
        row = Signal(range(max(lay.rows for lay in lays) + 1))
        col = Signal(range(max(lay.ci for lay in lays) + 1))
        waddr = Signal(range(max(lay.rows * lay.ci for lay in lays) + 1))
        rbank, rword = Signal(range(P)), Signal(range(max(lay.rows for lay in lays) // P + 2))
        c.sweep_start = Signal()
        rows_n = Array(Const(lay.rows - 1) for lay in lays)[c.layer]
        ci_n = Array(Const(lay.ci - 1) for lay in lays)[c.layer]
        with m.If(c.sweep_start):
            m.d.sync += [c.issuing.eq(1), row.eq(0), col.eq(0), waddr.eq(0), rbank.eq(0), rword.eq(0)]
        with m.Elif(c.issuing):
            m.d.sync += [waddr.eq(waddr + 1), col.eq(col + 1)]
            with m.If(col == ci_n):
                m.d.sync += [col.eq(0), row.eq(row + 1)]
                m.d.sync += [rbank.eq(Mux(rbank == P - 1, 0, rbank + 1)), rword.eq(rword + (rbank == P - 1))]
                with m.If(row == rows_n):
                    m.d.sync += c.issuing.eq(0)
        # the tag pipeline: what each issue is, stage by stage (index s: the issue of s cycles ago)
        fields = {"valid": 1, "first": 1, "last": 1, "row": len(row), "rbank": len(rbank), "rword": len(rword),
                  "waddr": len(waddr), "col": len(col), "d": c.we}
        tags = [{k: Signal(w if k != "d" else signed(w), name=f"s{s}_{k}") for k, w in fields.items()}
                for s in range(5)]
        t0 = tags[0]
        m.d.comb += [t0["valid"].eq(c.issuing), t0["first"].eq(col == 0), t0["last"].eq(col == ci_n),
                     t0["row"].eq(row), t0["rbank"].eq(rbank), t0["rword"].eq(rword), t0["waddr"].eq(waddr),
                     t0["col"].eq(col)]
        for s in range(1, 5):
            for k in fields:
                if k == "d" and s == 2:
                    continue
                m.d.sync += tags[s][k].eq(tags[s - 1][k])
        c.sweep_busy = tags[1]["valid"] | tags[2]["valid"] | tags[3]["valid"] | tags[4]["valid"]
        c.x_data = [Array(c.x[v][0].data[p * c.wa:(p + 1) * c.wa].as_signed() for v in range(L + 1))
                    for p in range(P)]
        # S0: reads; the input vector of the layer at word col, its weights at waddr (dot products)
        c.sweep_x_addr, c.sweep_row_word = col, rword
        for l, lay in enumerate(lays):
            for p in range(P):
                rp = c.W[l][p][0]
                late = tags[3]["waddr"]
                m.d.comb += read_in_range(rp, Mux(self.rb_en, self._rb_word, Mux(c.upd, late, waddr)), 1, c.first)
            m.d.comb += read_in_range(c.b[l][0], Mux(self.rb_en, self._rb_word, tags[3]["row"]), 1, c.first)
        # S1: operands
        t1 = tags[1]
        d_lanes = Array(self._d_data(c, c.layer[0])[p * c.we:(p + 1) * c.we].as_signed() for p in range(P))
        dval = Signal(signed(c.we))
        m.d.comb += dval.eq(Mux(c.layer == L, c.e[t1["row"]], d_lanes[t1["rbank"]]))
        m.d.sync += tags[2]["d"].eq(dval)
        w_now = [Array(c.W[l][p][0].data for l in range(L + 1))[c.layer] for p in range(P)]
        for p in range(P):
            m.d.comb += [c.mac.a[p].eq(Mux(c.upd, dval, w_now[p])), c.mac.b[p].eq(c.x_data[p][c.layer])]
        # S4: the results
        t4 = tags[4]
        acc = Signal(signed(max(lay.acc_w for lay in lays)))
        c.dot, c.dot_row, c.dot_valid = Signal.like(acc), Signal.like(row), Signal()
        c.dot_rbank, c.dot_rword = Signal.like(rbank), Signal.like(rword)
        m.d.sync += c.dot_valid.eq(0)
        b_now = Array(c.b[l][0].data for l in range(L + 1))[c.layer]
        with m.If(t4["valid"] & ~c.upd):
            acc_new = Mux(t4["first"], 0, acc) + c.mac.total
            m.d.sync += acc.eq(acc_new)
            with m.If(t4["last"]):
                with m.Switch(c.layer):
                    for l, lay in enumerate(lays):
                        with m.Case(l):
                            m.d.sync += c.dot.eq(acc_new + (b_now << lay.align))
                m.d.sync += [c.dot_valid.eq(1), c.dot_row.eq(t4["row"]), c.dot_rbank.eq(t4["rbank"]),
                             c.dot_rword.eq(t4["rword"])]
        self._update_writes(m, c, t4, w_now, b_now)
        self._finish_dot(m, c)

    def _update_writes(self, m, c, t4, w_now, b_now):
        """S4 of an update: ``W = sat(W + round(-d x >> s))`` per lane, the bias at a row's end."""
        P = self.P
        for l, lay in enumerate(self.layers):
            flags = []
            for p in range(P):
                new, ovf = saturate(w_now[p] + round_shift(-c.mac.prod[p], lay.w_shift), lay.qw)
                wp = c.W[l][p][1]
                with m.If(t4["valid"] & c.upd & (c.layer == l)):
                    m.d.comb += [wp.addr.eq(t4["waddr"]), wp.data.eq(new), wp.en.eq(1)]
                flags.append(ovf & (t4["col"] * P + p < lay.cols))
            new_b, ovf_b = saturate(b_now + round_shift(-t4["d"], lay.b_shift), lay.qb)
            bp = c.b[l][1]
            with m.If(t4["valid"] & c.upd & (c.layer == l)):
                m.d.sync += c.sat["weight"][l].eq(c.sat["weight"][l] + sum(flags))
                with m.If(t4["last"]):
                    m.d.comb += [bp.addr.eq(t4["row"]), bp.data.eq(new_b), bp.en.eq(1)]
                    m.d.sync += c.sat["bias"][l].eq(c.sat["bias"][l] + ovf_b)

    def _finish_dot(self, m, c):
        """S5: a hidden unit's ``h = f(dot)`` into the next vector; a logit, and the argmax."""
        L = self.net.depth
        c.best = Signal.like(c.dot)
        for l, lay in enumerate(self.layers[:L]):
            h, _ = narrow(c.dot, lay.qw.frac_bits + lay.fi, lay.qa)
            wp = c.x[l + 1][1]
            with m.If(c.dot_valid & (c.layer == l)):
                m.d.comb += [wp.addr.eq(c.dot_rword), wp.data.eq(fit_bits(h, c.wa).replicate(self.P)),
                             wp.en.eq(Const(1, self.P) << c.dot_rbank)]
        with m.If(c.dot_valid & (c.layer == L)):
            with m.Switch(c.dot_row):
                for k in range(self.net.n_classes):
                    with m.Case(k):
                        m.d.sync += c.o[k].eq(c.dot)
            with m.If((c.dot_row == 0) | (c.dot > c.best)):
                m.d.sync += [c.best.eq(c.dot), c.pred.eq(c.dot_row)]

    # -- gradient: g = S^T e (fa: S^T d_{l+1}), d = narrow(g) f'(h) ---------------------------
    def _gradient(self, m, c):
        """``d_l = narrow(S_l^T src) f'(h_l)`` for ``l = c.layer``, ``P`` units at a time: S0 the
        sign word ``q K_l + k`` (and, when the source is ``d_{l+1}``, its word ``k // P``); S1
        ``src_k`` added to or subtracted from each lane's sum (``src``: the output error ``e`` or
        ``d_{l+1}``, :meth:`_feedback_from_output`); at a group's last ``k`` the sums are held with
        ``h_l``; S2 narrowed, masked and written to ``d[l % 2]``. ``K_l cn_l + 3`` cycles."""
        net, P, L = self.net, self.P, self.net.depth
        K = [self._feedback_rows(l) for l in range(L)]
        c.grad_start, c.grading = Signal(), Signal()
        q = Signal(range(max(math.ceil(net.units(l) / P) for l in range(L)) + 1))
        k = Signal(range(max(K) + 1))
        kbank, kword = Signal(range(P)), Signal(range(max(K) // P + 2))
        saddr = Signal(range(max(math.ceil(net.units(l) / P) * K[l] for l in range(L)) + 1))
        cn_n = Array(Const(math.ceil(net.units(min(l, L - 1)) / P) - 1) for l in range(L + 1))[c.layer]
        k_n = Array(Const(K[min(l, L - 1)] - 1) for l in range(L + 1))[c.layer]
        with m.If(c.grad_start):
            m.d.sync += [c.grading.eq(1), q.eq(0), k.eq(0), kbank.eq(0), kword.eq(0), saddr.eq(0)]
        with m.Elif(c.grading):
            m.d.sync += [saddr.eq(saddr + 1), k.eq(k + 1), kbank.eq(Mux(kbank == P - 1, 0, kbank + 1)),
                         kword.eq(kword + (kbank == P - 1))]
            with m.If(k == k_n):
                m.d.sync += [k.eq(0), kbank.eq(0), kword.eq(0), q.eq(q + 1)]
                with m.If(q == cn_n):
                    m.d.sync += c.grading.eq(0)
        for l in range(L):
            m.d.comb += read_in_range(c.S[l], saddr, 1, c.first)
        c.grad_d_addr = kword
        # S1: accumulate per lane
        v1, k1, q1, last1, kbank1 = Signal(), Signal.like(k), Signal.like(q), Signal(), Signal.like(kbank)
        m.d.sync += [v1.eq(c.grading), k1.eq(k), q1.eq(q), last1.eq(k == k_n), kbank1.eq(kbank)]
        s_bits = Array(c.S[l].data for l in range(L))[c.layer]
        acc_w = c.we + max(1, max(K).bit_length()) + 1
        acc = [Signal(signed(acc_w), name=f"g_acc{p}") for p in range(P)]
        gsum = [Signal(signed(acc_w), name=f"g_sum{p}") for p in range(P)]
        hreg = [Signal(signed(c.wa), name=f"g_h{p}") for p in range(P)]
        gv, gq = Signal(), Signal.like(q)
        src = Signal(signed(c.we))
        if all(self._feedback_from_output(l) for l in range(L)):
            m.d.comb += src.eq(c.e[k1])
        else:        # d_{l+1} from the delta memory the layer above wrote, d[(l + 1) % 2]
            d_lanes = Array(self._d_data(c, ~c.layer[0])[p * c.we:(p + 1) * c.we].as_signed() for p in range(P))
            m.d.comb += src.eq(Mux(c.layer == L - 1, c.e[k1], d_lanes[kbank1]))
        m.d.sync += gv.eq(0)
        with m.If(v1):
            for p in range(P):
                nxt = Mux(k1 == 0, 0, acc[p]) + Mux(s_bits[p], -src, src)
                m.d.sync += acc[p].eq(nxt)
                with m.If(last1):
                    m.d.sync += [gsum[p].eq(nxt), hreg[p].eq(c.x_data[p][c.layer + 1])]
            with m.If(last1):
                m.d.sync += [gv.eq(1), gq.eq(q1)]
        c.grad_busy = v1 | gv
        # S2: narrow, mask, write the deltas
        c.grad_x_addr = q
        for l in range(L):
            qe, qa = net.prec(l).error, activation_range(net.prec(l).activation)
            fe_src = net.prec(L - 1 if self._feedback_from_output(l) else l + 1).error.frac_bits
            flags, words = [], []
            for p in range(P):
                g, ovf = narrow(gsum[p], fe_src + feedback_shift(net, l), qe)
                words.append(fit_bits(Mux(inside(hreg[p], qa), g, 0), c.we))
                flags.append(ovf & (gq * P + p < net.units(l)))
            self._d_write(m, c, c.layer[0], gv & (c.layer == l), gq, Cat(*words))
            with m.If(gv & (c.layer == l)):
                m.d.sync += c.sat["error"][l].eq(c.sat["error"][l] + sum(flags))

    # -- the sample's sequence ----------------------------------------------------------------
    def _loader(self, m, c):
        """The next sample's beats into the half of ``x_0`` the datapath is not reading; ``full``
        once its label beat is in, until the sequencer ``take`` s it (and swaps the halves)."""
        net, P = self.net, self.P
        n_in, ci0 = net.n_inputs, math.ceil(net.n_inputs / P)
        win = net.spec.precision.input.width
        c.full, c.take, c.cur = Signal(), Signal(), Signal()
        c.next_label, c.next_train = Signal.like(c.label), Signal()
        idx = c.load_idx = Signal(range(n_in + 1))
        lane, word = Signal(range(P)), Signal(range(ci0 + 1))
        xw = c.x[0][1]
        m.d.comb += self.i.ready.eq(~c.full & ~self.rb_en)
        with m.If(c.take):
            m.d.sync += c.full.eq(0)
        with m.If(self.i.valid & self.i.ready):
            with m.If(idx == n_in):
                m.d.sync += [c.next_label.eq(self.i.payload.data), c.next_train.eq(self.i.payload.train),
                             c.full.eq(1), idx.eq(0), lane.eq(0), word.eq(0)]
            with m.Else():
                m.d.comb += [xw.addr.eq(word + Mux(c.cur, 0, ci0)), xw.en.eq(Const(1, P) << lane),
                             xw.data.eq(fit_bits(self.i.payload.data[:win].as_signed(), c.wa).replicate(P))]
                m.d.sync += [idx.eq(idx + 1), lane.eq(Mux(lane == P - 1, 0, lane + 1)),
                             word.eq(word + (lane == P - 1))]

    def _sequence(self, m, c):
        net, P, L, C = self.net, self.P, self.net.depth, self.net.n_classes
        self._loader(m, c)
        sweep_drained = ~c.issuing & ~c.sweep_busy & ~c.dot_valid
        with m.FSM(name="phase") as fsm:
            with m.State("WAIT"):
                with m.If(c.full & ~self.rb_en):
                    m.d.sync += [c.label.eq(c.next_label), c.train.eq(c.next_train), c.cur.eq(~c.cur),
                                 c.layer.eq(0), c.upd.eq(0)]
                    m.d.comb += [c.take.eq(1), c.sweep_start.eq(1)]
                    m.next = "FORWARD"
            with m.State("FORWARD"):
                with m.If(sweep_drained):
                    m.d.sync += c.layer.eq(c.layer + 1)
                    m.d.comb += c.sweep_start.eq(1)
                    with m.If(c.layer == L - 1):
                        m.next = "LOGITS"
            with m.State("LOGITS"):
                with m.If(sweep_drained):
                    with m.If(c.train):
                        m.d.comb += c.sm.start.eq(1)
                        m.next = "SOFTMAX"
                    with m.Else():
                        m.next = "DONE"
            with m.State("SOFTMAX"):
                with m.If(c.sm.done):
                    qe = net.prec(L - 1).error
                    flags = []
                    for k in range(C):
                        err = Cat(c.sm.p[k], Const(0, 1)).as_signed() - Mux(c.label == k, 1 << P_FRAC, 0)
                        v, ovf = narrow(err, P_FRAC, qe)
                        m.d.sync += c.e[k].eq(v)
                        flags.append(ovf)
                    m.d.sync += [c.sat["error"][L].eq(c.sat["error"][L] + sum(flags)), c.upd.eq(1),
                                 c.layer.eq(L - 1)]
                    m.d.comb += c.grad_start.eq(1)
                    m.next = "GRADIENT"
            # from the top: d_{L-1}, update the output layer, d_{L-2}, update layer L-1, ..., d_0,
            # update layer 1, update layer 0 (backprop needs each gradient before the update
            # above it changes the weights it reads; DFA takes the same order)
            with m.State("GRADIENT"):
                with m.If(~c.grading & ~c.grad_busy):
                    m.d.sync += c.layer.eq(c.layer + 1)
                    m.d.comb += c.sweep_start.eq(1)
                    m.next = "UPDATE"
            with m.State("UPDATE"):
                with m.If(sweep_drained):
                    with m.If(c.layer == 0):
                        m.next = "DONE"
                    with m.Elif(c.layer == 1):
                        m.d.sync += c.layer.eq(0)
                        m.d.comb += c.sweep_start.eq(1)
                    with m.Else():
                        m.d.sync += c.layer.eq(c.layer - 2)
                        m.d.comb += c.grad_start.eq(1)
                        m.next = "GRADIENT"
            with m.State("DONE"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(c.pred)]
                with m.If(self.o.ready):
                    with m.If(c.train):
                        m.d.sync += self.samples.eq(self.samples + 1)
                    with m.Else():
                        m.d.sync += self.inferences.eq(self.inferences + 1)
                    m.next = "WAIT"
            c.waiting = fsm.ongoing("WAIT")
            c.done_state = fsm.ongoing("DONE")
        # the deltas: read at the sweep's S0 (row word) during an update, or as the gradient asks
        for rp, _ in c.d:
            m.d.comb += read_in_range(rp, Mux(c.grading, getattr(c, "grad_d_addr", 0), c.sweep_row_word), 1, c.first)
        # the stored activations: the sweep's column word, or GRADIENT's group (its h for the mask)
        ci0 = math.ceil(net.n_inputs / P)
        m.d.comb += read_in_range(c.x[0][0], c.sweep_x_addr + Mux(c.cur, ci0, 0), 1, c.first)
        for v in range(1, L + 1):
            m.d.comb += read_in_range(c.x[v][0], Mux(c.grading | c.grad_busy, c.grad_x_addr, c.sweep_x_addr), 1,
                                      c.first)

    # -- ports, counters ----------------------------------------------------------------------
    def _ports(self, m, c):
        busy = ~(c.waiting & ~c.full & (c.load_idx == 0))
        m.d.comb += self.idle.eq(~busy)
        with m.If(busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        timing = Signal(32)
        m.d.sync += timing.eq(Mux(c.take, 2, timing + 1))     # the take cycle counts: 1, then 2 after it
        with m.If(c.done_state & self.o.ready & c.train):
            m.d.sync += c.sample_cycles.eq(timing)

    def _readback(self, m, c):
        net, P, L = self.net, self.P, self.net.depth
        f = self.map["fields"]

        def field(name):
            return self.rb_addr[f[name]["lsb"]:f[name]["lsb"] + f[name]["width"]]

        stage, mem, bank = field("stage"), field("mem"), field("bank")
        values = {"cycles": self.cycles, "samples": self.samples, "inferences": self.inferences,
                  "sample_cycles": c.sample_cycles}
        for t in range(L + 1):
            tag = "out" if t == L else str(t)
            for v in ("weight", "bias", "error"):
                values[f"sat_{v}_{tag}"] = c.sat[v][t]
        # writes (checkpoints) through the same decode, while idle
        for l, lay in enumerate(self.layers):
            st, (mw, mb) = (L - 1, (MEM_IDS["head_W"], MEM_IDS["head_b"])) if l == L else (l, (MEM_IDS["W"], MEM_IDS["b"]))
            hit = self.rb_en & self.wb_en & (stage == st)
            for p in range(P):
                wp = c.W[l][p][1]
                with m.If(hit & (mem == mw) & (bank == p)):
                    m.d.comb += [wp.addr.eq(self._rb_word), wp.data.eq(self.wb_data[:lay.qw.width]), wp.en.eq(1)]
            with m.If(hit & (mem == mb)):
                m.d.comb += [c.b[l][1].addr.eq(self._rb_word), c.b[l][1].data.eq(self.wb_data[:lay.qb.width]),
                             c.b[l][1].en.eq(1)]
        # reads: the ports answer a cycle after the address, then one register
        stage_d, mem_d, bank_d = Signal.like(stage), Signal.like(mem), Signal.like(bank)
        cnt_d = Signal(signed(32))
        m.d.sync += [stage_d.eq(stage), mem_d.eq(mem), bank_d.eq(bank)]
        with m.Switch(self._rb_word):
            for k, name in enumerate(self.counters):
                with m.Case(k):
                    m.d.sync += cnt_d.eq(values[name])
        out = Signal(signed(32))
        with m.If(stage_d == L):
            m.d.comb += out.eq(cnt_d)
        for l in range(L + 1):
            st, (mw, mb) = (L - 1, (MEM_IDS["head_W"], MEM_IDS["head_b"])) if l == L else (l, (MEM_IDS["W"], MEM_IDS["b"]))
            for p in range(P):
                with m.If((stage_d == st) & (mem_d == mw) & (bank_d == p)):
                    m.d.comb += out.eq(c.W[l][p][0].data)
            with m.If((stage_d == st) & (mem_d == mb)):
                m.d.comb += out.eq(c.b[l][0].data)
        m.d.sync += self.rb_data.eq(out)

    @property
    def _rb_word(self):
        f = self.map["fields"]["word"]
        return self.rb_addr[f["lsb"]:f["lsb"] + f["width"]]


class FaEngine(DfaEngine):
    """The feedback alignment (FA) training engine: the DFA engine with the error sent back layer
    by layer, ``g_l = S_l^T d_{l+1}`` (``S_l`` a fixed random sign matrix the shape of
    ``W_{l+1}``, entries ``±2^-k_l``; the output error ``e`` for the last hidden layer), as
    :class:`sigprop_fpga.sim.golden_rules.GoldenRule` (``rule="fa"``) computes it bit for bit.

    Backprop's backward pass with the sign matrices read where backprop reads ``W_{l+1}``, on
    DFA's adders (no multiplier): ``d_{l+1}[k]`` comes from the delta memory the gradient above
    wrote (word ``k // P``, lane ``k % P``), one ``k`` a cycle. The sign memory of layer ``l``
    holds ``rows_{l+1} n_l`` bits (DFA's ``C n_l``); a gradient takes ``rows_{l+1} cn_l + 3``
    cycles (:func:`sigprop_fpga.compiler.estimate.dfa_cycles` with ``rule="fa"``).

    Parameters, members, latency and throughput: as :class:`DfaEngine`.
    """

    rule = Rule.FA

    def _feedback_rows(self, l: int) -> int:
        return self.net.n_classes if l == self.net.depth - 1 else self.net.units(l + 1)

    def _feedback_from_output(self, l: int) -> bool:
        return l == self.net.depth - 1
