"""The golden model: the hardware's integer arithmetic, bit for bit, one sample at a time.

This is the oracle of the verification ladder (DESIGN.md §3). It is a plain sequential loop; the
hardware pipelines layers, which DESIGN.md §2 shows cannot change any bit. Structure and names
follow :mod:`.reference` (the float model); what differs is only where numbers narrow:

========================  =========================================  =====================
quantity                  computed as                                narrowing
========================  =========================================  =====================
``acc = W x + b``         products ``fw + fi`` fraction bits, bias   exact (auto width)
                          shifted up to match
``h = f(acc)``            hard-tanh = saturate to the activation Q   nearest, saturate
``t`` (layer 0)           ``f(R[c])``                                nearest, saturate
``f'``                    ``h`` (or cached ``t``) strictly inside     --
                          the activation range
``s_k = 2^-a h.T[k]``     ``2 fa + a`` fraction bits                 exact (a shift)
``p = softmax(s)``        :func:`.fixed.softmax_fixed`, UQ0.16        truncate
``g_h``                   ``sum_k (p_k - y_k) T[k]``                  nearest, saturate to
                                                                     the error Q
``g_tc, g_tm``            ``(p_c - 1) h``, ``-(that)``                nearest, saturate
``W, b, R`` update        ``u = d_h x + d_tc t_in + d_tm Tin[m]``     ``precision.rounding``
                          ``W -= u >> (fe + fi - fw + lr_shift)``     then saturate
========================  =========================================  =====================

Stochastic rounding draws come from one LFSR per layer (and one for the head), consumed in
row-major order over the augmented matrix ``[W | b]``, then the ``R`` rows ``c`` and ``m``.
Every saturation is counted, per layer and per variable.
"""

from __future__ import annotations

import numpy as np

from ..compiler.fixed import P_FRAC, Lfsr, narrow, saturate, shift_round, softmax_fixed
from ..compiler.network import Network, init_params, lfsr_seed, quantize_inputs, quantize_params
from ..compiler.rule import activation_range, step_shifts

__all__ = ["GoldenSigProp"]


def _inside(v, q) -> np.ndarray:
    """Hard-tanh derivative mask from an activation value: 1 strictly inside its bounds
    (:func:`~sigprop_fpga.compiler.rule.activation_range`)."""
    q = activation_range(q)
    return ((v > q.min_int) & (v < q.max_int)).astype(np.int64)


class GoldenSigProp:
    """Bit-exact integer model of the SigProp datapath (one sample at a time)."""

    def __init__(self, net: Network, params: dict | None = None):
        self.net = net
        spec = net.spec
        q = quantize_params(net, params if params is not None else init_params(net))
        self.W = [layer["W"].copy() for layer in q["layers"]]
        self.b = [layer["b"].copy() for layer in q["layers"]]
        self.R = q["R"].copy()
        C = net.n_classes
        self.T = [np.zeros((C, net.units(l)), dtype=np.int64) for l in range(net.depth)]
        self.Tin = [None] + [np.zeros((C, net.fan_in(l)), dtype=np.int64) for l in range(1, net.depth)]
        self.head = q["head"]
        self.rounding = spec.precision.rounding
        n_units = net.depth + 1
        self.lfsr = [Lfsr(lfsr_seed(spec.precision.lfsr_seed, u)) for u in range(n_units)]
        self.counters = {"samples": 0, "inferences": 0}
        for l in range(net.depth):
            for var in ("weight", "bias", "error"):
                self.counters[f"sat_{var}_{l}"] = 0
        self.counters["sat_table_0"] = 0
        if self.head is not None:
            self.counters["sat_weight_head"] = self.counters["sat_bias_head"] = self.counters["sat_error_head"] = 0

    def updates_per_sample(self) -> dict:
        """How many values each saturation counter watches per training sample (for rates)."""
        net, spec = self.net, self.net.spec.learning
        ce = spec.loss == "class_ce"
        out = {}
        for l in range(net.depth):
            n, n_in = net.units(l), net.fan_in(l)
            out[f"sat_weight_{l}"] = n * n_in
            out[f"sat_bias_{l}"] = n
            out[f"sat_error_{l}"] = 2 * n if ce else 0
        out["sat_table_0"] = (2 if spec.push else 1) * net.units(0) if ce else 0
        if self.head is not None:
            n = net.units(net.depth - 1)
            out["sat_weight_head"], out["sat_bias_head"], out["sat_error_head"] = net.n_classes * n, net.n_classes, net.n_classes
        return out

    # -- arithmetic pieces (also used by the hardware unit tests) --
    def forward_acc(self, l: int, x: np.ndarray) -> np.ndarray:
        """``W x + b`` with ``fw + fi`` fraction bits (exact)."""
        p, fi = self.net.prec(l), self.net.in_format(l).frac_bits
        return self.W[l] @ x + (self.b[l] << (p.weight.frac_bits + fi - p.bias.frac_bits))

    def activate(self, l: int, acc: np.ndarray) -> np.ndarray:
        p, fi = self.net.prec(l), self.net.in_format(l).frac_bits
        return narrow(acc, p.weight.frac_bits + fi, activation_range(p.activation))[0]

    def _draws(self, unit: int, n: int):
        return self.lfsr[unit].take(n) if self.rounding == "stochastic" else None

    def _update(self, l: int, W, b, u, ub, w_shift: int, b_shift: int, unit: int, tag: str):
        """``W -= round(u >> w_shift)``, ``b -= round(ub >> b_shift)`` (the shifts of
        :func:`~sigprop_fpga.compiler.rule.step_shifts`): one draw per entry of ``[W | b]``."""
        p = self.net.prec(l)
        n, n_in = W.shape
        draws = self._draws(unit, n * (n_in + 1))
        dw = db = None
        if draws is not None:
            draws = draws.reshape(n, n_in + 1)
            dw, db = draws[:, :n_in], draws[:, n_in]
        # rounding the negated value keeps stochastic rounding unbiased for the subtraction
        W_new, nw = saturate(W + shift_round(-u, w_shift, self.rounding, dw), p.weight)
        b_new, nb = saturate(b + shift_round(-ub, b_shift, self.rounding, db), p.bias)
        W[...] = W_new
        b[...] = b_new
        self.counters[f"sat_weight_{tag}"] += nw
        self.counters[f"sat_bias_{tag}"] += nb

    def _error(self, v, frac: int, l_tag: str, q) -> np.ndarray:
        e, n = narrow(v, frac, q)
        self.counters[f"sat_error_{l_tag}"] += n
        return e

    # -- one layer of training --
    def _layer(self, l: int, x, t_in, c: int):
        net, spec = self.net, self.net.spec.learning
        p = net.prec(l)
        qa, qe, fa, fe = p.activation, p.error, p.activation.frac_bits, p.error.frac_bits
        fi = net.in_format(l).frac_bits
        k = step_shifts(net, l)
        T = self.T[l]
        h = self.activate(l, self.forward_acc(l, x))
        if l == 0:
            t = narrow(self.R[c], net.spec.precision.table.frac_bits, activation_range(qa))[0]
        else:
            t = self.activate(l, self.forward_acc(l, t_in))
        T[c] = t
        if l > 0:
            self.Tin[l][c] = t_in
        mask_h = _inside(h, qa)
        if spec.loss == "l2":
            d_h = ((h - t) << (fe - fa) if fe >= fa else shift_round(h - t, fa - fe)) * mask_h
            self._update(l, self.W[l], self.b[l], np.outer(d_h, x), d_h, k.weight, k.bias, l, str(l))
            return h, t
        s = T @ h                                    # 2 fa + logit_shift fraction bits
        prob, _ = softmax_fixed(s, 2 * fa + spec.logit_shift)
        err = prob.copy()
        err[c] -= 1 << P_FRAC                        # p - y, P_FRAC fraction bits
        d_h = self._error(err @ T, P_FRAC + fa, str(l), qe) * mask_h
        g_tc = self._error((prob[c] - (1 << P_FRAC)) * h, P_FRAC + fa, str(l), qe)
        d_tc = g_tc * _inside(t, qa)
        if spec.push:
            s_wrong = s.copy()
            s_wrong[c] = np.iinfo(np.int64).min
            m = int(np.argmax(s_wrong))
            d_tm = -g_tc * _inside(T[m], qa)
        else:
            m, d_tm = None, np.zeros_like(d_tc)
        if l == 0:
            self._update(l, self.W[l], self.b[l], np.outer(d_h, x), d_h, k.weight, k.bias, l, "0")
            self._update_table(c, m, d_tc, d_tm)
        else:
            t_m = self.Tin[l][m] if m is not None else np.zeros_like(t_in)
            u = np.outer(d_h, x) + np.outer(d_tc, t_in) + np.outer(d_tm, t_m)
            self._update(l, self.W[l], self.b[l], u, d_h + d_tc + d_tm, k.weight, k.bias, l, str(l))
        return h, t

    def _update_table(self, c: int, m: int | None, d_tc, d_tm):
        """``R[c] -= round(d_tc >> ...)`` then ``R[m]``; one draw per entry, in that order."""
        q, k = self.net.spec.precision.table, step_shifts(self.net, 0).table
        rows = [(c, d_tc)] + ([(m, d_tm)] if m is not None else [])
        for row, d in rows:
            draws = self._draws(0, len(d))
            self.R[row], n = saturate(self.R[row] + shift_round(-d, k, self.rounding, draws), q)
            self.counters["sat_table_0"] += n

    def _head_logits(self, h):
        p = self.net.prec(self.net.depth - 1)
        fa = p.activation.frac_bits
        return self.head["W"] @ h + (self.head["b"] << (p.weight.frac_bits + fa - p.bias.frac_bits))

    def _train_head(self, h, c: int):
        L = self.net.depth - 1
        p = self.net.prec(L)
        fa, fw, fe = p.activation.frac_bits, p.weight.frac_bits, p.error.frac_bits
        prob, _ = softmax_fixed(self._head_logits(h), fw + fa)
        err = prob.copy()
        err[c] -= 1 << P_FRAC
        d = self._error(err, P_FRAC, "head", p.error)
        k = step_shifts(self.net, L)
        self._update(L, self.head["W"], self.head["b"], np.outer(d, h), d, k.head_weight, k.bias, self.net.depth, "head")

    # -- samples --
    def train_sample(self, x: np.ndarray, c: int) -> int:
        """Train on one sample (int inputs); returns the prediction made before learning from it."""
        h, t, pred = np.asarray(x, dtype=np.int64), None, None
        last = self.net.depth - 1
        for l in range(self.net.depth):
            if l == last and self.head is None:
                hl = self.activate(l, self.forward_acc(l, h))
                pred = int(np.argmax(self.T[l] @ hl))
            h, t = self._layer(l, h, t, c)
        if self.head is not None:
            pred = int(np.argmax(self._head_logits(h)))
            self._train_head(h, c)
        self.counters["samples"] += 1
        return pred

    def forward(self, x: np.ndarray) -> np.ndarray:
        h = np.asarray(x, dtype=np.int64)
        for l in range(self.net.depth):
            h = self.activate(l, self.forward_acc(l, h))
        return h

    def infer(self, x: np.ndarray) -> int:
        h = self.forward(x)
        self.counters["inferences"] += 1
        if self.head is not None:
            return int(np.argmax(self._head_logits(h)))
        return int(np.argmax(self.T[-1] @ h))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Batch inference (no counters); same arithmetic as :meth:`infer`."""
        H = np.asarray(X, dtype=np.int64)
        for l in range(self.net.depth):
            p, fi = self.net.prec(l), self.net.in_format(l).frac_bits
            acc = H @ self.W[l].T + (self.b[l] << (p.weight.frac_bits + fi - p.bias.frac_bits))
            H = narrow(acc, p.weight.frac_bits + fi, activation_range(p.activation))[0]
        if self.head is not None:
            p = self.net.prec(self.net.depth - 1)
            fa = p.activation.frac_bits
            o = H @ self.head["W"].T + (self.head["b"] << (p.weight.frac_bits + fa - p.bias.frac_bits))
            return np.argmax(o, axis=1)
        return np.argmax(H @ self.T[-1].T, axis=1)

    def state(self) -> dict:
        return {"W": self.W, "b": self.b, "R": self.R, "T": self.T, "Tin": self.Tin, "head": self.head,
                "counters": dict(self.counters)}

    def lfsr_states(self) -> list[int]:
        """Each unit's LFSR position (the state its next draw returns): layers, then the head."""
        return [lf.peek() for lf in self.lfsr]

    def load_state(self, state: dict, lfsr: list[int] | None = None) -> None:
        """Continue from ``state`` (shaped as :meth:`state`: ``W``, ``b``, ``T``, ``Tin``, ``R``,
        ``head``, raw integers) and, if given, the LFSR positions ``lfsr`` (:meth:`lfsr_states`);
        otherwise the LFSRs stay where they are. Counters are left as they are (a fresh model's
        are zero, as the hardware's are after configuration: they count this run)."""
        net = self.net
        self.W = [np.array(state["W"][l], dtype=np.int64) for l in range(net.depth)]
        self.b = [np.array(state["b"][l], dtype=np.int64) for l in range(net.depth)]
        self.T = [np.array(state["T"][l], dtype=np.int64) for l in range(net.depth)]
        self.Tin = [None] + [np.array(state["Tin"][l], dtype=np.int64) for l in range(1, net.depth)]
        self.R = np.array(state["R"], dtype=np.int64)
        head = state.get("head")
        self.head = None if head is None else {k: np.array(head[k], dtype=np.int64) for k in ("W", "b")}
        if lfsr is not None:
            if len(lfsr) != len(self.lfsr):
                raise ValueError(f"lfsr: expected {len(self.lfsr)} LFSR states, got {len(lfsr)}")
            for lf, s in zip(self.lfsr, lfsr):
                lf.restart(int(s))
