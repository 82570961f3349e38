"""The backprop training engine: the DFA engine's lane array, memories and sweeps
(:class:`.dfa.DfaEngine`), with the gradient phase replaced by the true backward pass
``g_l = W_{l+1}^T d_{l+1}`` through the weights as they were before this sample's update.

It follows :class:`sigprop_fpga.sim.golden_rules.GoldenRule` (``rule="bp"``) bit for bit.

The transposed read, efficiently: ``W_{l+1}`` is banked by column (``W[j][i]`` in bank ``i % P``,
word ``j ci + i // P``), so one word of every bank, ``W[j][q P .. q P + P - 1]``, is the ``P``
weights that connect unit ``j`` above to the group ``q`` of ``P`` units below. The backward pass
walks ``q`` outer and ``j`` inner, each lane accumulating ``W[j][q P + p] d[j]`` for its own unit
below: ``rows ci`` cycles with every lane busy, the same count and the same memories as the
forward pass, no second (transposed) copy of the weights. The lanes multiply a weight by a delta
here, so their second operand is as wide as an error (16 bits by default) where the DFA engine's
is an activation's.

Order of a training sample's learning phases (shared with DFA): the gradient of layer ``L-1``
(through ``W_out``), the output layer's update, the gradient of ``L-2`` (through ``W_{L-1}``), the
update of ``L-1``, ..., the update of layer 0: each gradient reads its weights before the update
that changes them. Deltas alternate between two memories (``d_l`` in ``d[l % 2]``).

Cycles: :func:`sigprop_fpga.compiler.estimate.dfa_cycles` with ``rule="bp"``: a gradient takes
``rows_{l+1} cn_l + 6`` cycles (DFA's ``C cn_l + 3``).
"""

from __future__ import annotations

import math

from amaranth.hdl import Array, Cat, Const, Mux, Signal, signed

from ..compiler.rule import Rule, activation_range
from .dfa import DfaEngine, check_dfa_support
from .fixed import fit_bits, inside, narrow

__all__ = ["BackpropEngine", "check_backprop_support"]


def check_backprop_support(net) -> None:
    """Raise ``ValueError`` (one line) for what the backprop engine does not build (as DFA's)."""
    check_dfa_support(net)


class BackpropEngine(DfaEngine):
    """The backprop training engine for one network (see the module docstring).

    Parameters, members, latency and throughput: as :class:`.dfa.DfaEngine`, with ``rule="bp"``
    (readback map, counters, golden model) and the gradient phase above.
    """

    rule = Rule.BP

    def _feedback_memories(self, m, c):
        """None: backprop sends the error back through the forward weights."""

    def _lane_b_width(self, c) -> int:
        return max(c.wa, c.we)

    def _gradient(self, m, c):
        """``d_l = narrow(W_{l+1}^T d_{l+1}) f'(h_l)`` for ``l = c.layer``: S0 the weight word
        ``j ci + q`` of every bank and ``d_{l+1}[j]``; S1 the lanes' operands; S4 the products,
        accumulated per lane over ``j``; at a group's last ``j`` the sums are held and ``h_l`` read;
        S5 narrowed, masked and written to ``d[l % 2]``."""
        net, P, L = self.net, self.P, self.net.depth
        lays = self.layers
        above = [lays[min(l + 1, L)] for l in range(L + 1)]
        c.grad_start, c.grading = Signal(), Signal()
        rows_n = Array(Const(a.rows - 1) for a in above)[c.layer]
        ci_n = Array(Const(a.ci - 1) for a in above)[c.layer]
        ci_v = Array(Const(a.ci) for a in above)[c.layer]
        q = Signal(range(max(a.ci for a in above) + 1))
        j = Signal(range(max(a.rows for a in above) + 1))
        waddr = Signal(range(max(a.rows * a.ci for a in above) + 1))
        jbank, jword = Signal(range(P)), Signal(range(max(a.rows for a in above) // P + 2))
        with m.If(c.grad_start):
            m.d.sync += [c.grading.eq(1), q.eq(0), j.eq(0), waddr.eq(0), jbank.eq(0), jword.eq(0)]
        with m.Elif(c.grading):
            m.d.sync += [j.eq(j + 1), waddr.eq(waddr + ci_v), jbank.eq(Mux(jbank == P - 1, 0, jbank + 1)),
                         jword.eq(jword + (jbank == P - 1))]
            with m.If(j == rows_n):
                m.d.sync += [j.eq(0), jbank.eq(0), jword.eq(0), q.eq(q + 1), waddr.eq(q + 1)]
                with m.If(q == ci_n):
                    m.d.sync += c.grading.eq(0)
        fields = {"valid": 1, "first": 1, "last": 1, "q": len(q), "j": len(j), "jbank": len(jbank)}
        tags = [{k: Signal(w, name=f"b{s}_{k}") for k, w in fields.items()} for s in range(5)]
        m.d.comb += [tags[0]["valid"].eq(c.grading), tags[0]["first"].eq(j == 0), tags[0]["last"].eq(j == rows_n),
                     tags[0]["q"].eq(q), tags[0]["j"].eq(j), tags[0]["jbank"].eq(jbank)]
        for s in range(1, 5):
            for k in fields:
                m.d.sync += tags[s][k].eq(tags[s - 1][k])
        gv = Signal()
        c.grad_busy = gv | tags[1]["valid"] | tags[2]["valid"] | tags[3]["valid"] | tags[4]["valid"]
        # S0: the weights of the layer above (overriding the sweep's addresses), d_{l+1}[j]
        with m.If(c.grading):
            for l in range(L + 1):
                for p in range(P):
                    m.d.comb += [c.W[l][p][0].addr.eq(waddr), c.W[l][p][0].en.eq(1)]
        c.grad_d_addr = jword
        # S1: operands, while the phase runs (the sweep is idle)
        t1 = tags[1]
        d_lanes = Array(self._d_data(c, ~c.layer[0])[p * c.we:(p + 1) * c.we].as_signed() for p in range(P))
        delta = Signal(signed(c.we))
        m.d.comb += delta.eq(Mux(c.layer == L - 1, c.e[t1["j"]], d_lanes[t1["jbank"]]))
        w_above = [Array(c.W[l][p][0].data for l in range(L + 1))[c.layer + 1] for p in range(P)]
        with m.If(c.grading | c.grad_busy):
            for p in range(P):
                m.d.comb += [c.mac.a[p].eq(w_above[p]), c.mac.b[p].eq(delta)]
        # S4: accumulate per lane; a group's sums held with its h_l read
        t4 = tags[4]
        acc_w = len(c.mac.prod[0]) + max(1, max(a.rows for a in above).bit_length()) + 1
        acc = [Signal(signed(acc_w), name=f"bp_acc{p}") for p in range(P)]
        gsum = [Signal(signed(acc_w), name=f"bp_sum{p}") for p in range(P)]
        gq = Signal.like(q)
        c.grad_x_addr = t4["q"]
        m.d.sync += gv.eq(0)
        with m.If(t4["valid"]):
            for p in range(P):
                nxt = Mux(t4["first"], 0, acc[p]) + c.mac.prod[p]
                m.d.sync += acc[p].eq(nxt)
                with m.If(t4["last"]):
                    m.d.sync += gsum[p].eq(nxt)
            with m.If(t4["last"]):
                m.d.sync += [gv.eq(1), gq.eq(t4["q"])]
        # S5: narrow, mask with f'(h_l), write d_l
        for l in range(L):
            a = above[l]
            qe, qa = net.prec(l).error, activation_range(net.prec(l).activation)
            flags, words = [], []
            for p in range(P):
                g, ovf = narrow(gsum[p], a.qw.frac_bits + a.qe.frac_bits, qe)
                words.append(fit_bits(Mux(inside(c.x_data[p][l + 1], qa), g, 0), c.we))
                flags.append(ovf & (gq * P + p < net.units(l)))
            self._d_write(m, c, c.layer[0], gv & (c.layer == l), gq, Cat(*words))
            with m.If(gv & (c.layer == l)):
                m.d.sync += c.sat["error"][l].eq(c.sat["error"][l] + sum(flags))


def backprop_gradient_cycles(net, P: int) -> list[int]:
    """Cycles of each hidden layer's gradient phase (``rows_{l+1} cn_l + 6``)."""
    L = net.depth
    rows = [net.units(l + 1) if l + 1 < L else net.n_classes for l in range(L)]
    return [rows[l] * math.ceil(net.units(l) / P) + 6 for l in range(L)]
