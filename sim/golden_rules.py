"""Golden models of backprop, feedback alignment and direct feedback alignment: the integer
arithmetic of their datapaths, bit for bit, one sample at a time (per-sample SGD).

The same conventions as SigProp's golden model (:mod:`.golden`, whose arithmetic pieces this
class inherits: :meth:`forward_acc`, :meth:`activate`, the LFSR draws and the rounded, saturated
update), and the same names as the float twin (:mod:`.reference_rules`):

========================  =========================================  =====================
quantity                  computed as                                narrowing
========================  =========================================  =====================
``h_l = f(W_l x_l + b)``  as SigProp's forward                       nearest, saturate
``o = W_out h_L + b``     ``fw + fa`` fraction bits                  exact
``pred``                  ``argmax o`` (before any update)           --
``prob = softmax(o)``     :func:`~..compiler.fixed.softmax_fixed`    truncate
``e = prob - y``          ``P_FRAC`` fraction bits to the error Q    nearest, saturate
``g_L`` (last hidden)     bp: ``W_out^T e``; fa, dfa: ``S^T e``      nearest, saturate
``g_l``                   bp: ``W_{l+1}^T d_{l+1}``; fa:             nearest, saturate
                          ``S_l^T d_{l+1}``; dfa: ``S_l^T e``
``d_l = g_l f'(h_l)``     mask: ``h_l`` strictly inside its bounds   --
``W, b`` update           ``W -= round(d x^T >> shift)``             ``precision.rounding``
                          (:func:`~..compiler.rule.step_shifts`,      then saturate
                          :func:`~..compiler.rule.out_shifts`)
========================  =========================================  =====================

``S_l`` holds signs (``±1``); its entries mean ``±2^-k_l`` (:func:`~..compiler.rule.feedback_shift`),
so ``S^T e`` has ``fe + k_l`` fraction bits before it narrows to the error format: a feedback
product is an add or a subtract. Backprop's ``W^T d`` has ``fw + fe``. Backprop uses the weights
as they were before this sample's update (the datapath reads each weight once, updating it and
accumulating the error it sends back in the same pass).

Stochastic rounding: one LFSR per layer and one for the output layer (the unit the SigProp head
uses), one draw per entry of ``[W | b]`` in row-major order. Saturations are counted per layer
and variable (``sat_weight_l``, ``sat_bias_l``, ``sat_error_l``, and ``..._out``).
"""

from __future__ import annotations

import numpy as np

from ..compiler.fixed import P_FRAC, Lfsr, narrow, softmax_fixed
from ..compiler.network import Network, lfsr_seed
from ..compiler.rule import Rule, activation_range, feedback_shift, init_rule_params, out_shifts, quantize_rule_params, step_shifts
from .golden import GoldenSigProp, _inside

__all__ = ["GoldenRule"]


class GoldenRule(GoldenSigProp):
    """Bit-exact integer model of the backprop, FA and DFA datapaths (one sample at a time).

    Parameters
    ----------
    net : Network
        The resolved network: its hidden layers, formats, ``lr_shift`` and rounding.
    rule : Rule or str
        ``bp``, ``fa`` or ``dfa``.
    params : dict, optional
        Float parameters as :func:`~..compiler.rule.init_rule_params` returns them (the default).

    Members
    -------
    W, b : list of int64 arrays
        Hidden layers, in their weight and bias formats.
    W_out, b_out : int64 arrays
        The output layer, in the last hidden layer's weight and bias formats.
    S : list of int8 arrays or None
        The fixed feedback signs per hidden layer (``None`` for backprop).
    counters : dict
        ``samples`` and the saturation counts.
    """

    def __init__(self, net: Network, rule: Rule | str, params: dict | None = None):
        rule = Rule(rule)
        if rule == Rule.SIGPROP:
            raise ValueError("GoldenRule models bp, fa and dfa; SigProp's golden model is GoldenSigProp")
        self.net, self.rule = net, rule
        spec = net.spec
        q = quantize_rule_params(net, params if params is not None else init_rule_params(net, rule))
        self.W = [layer["W"].copy() for layer in q["layers"]]
        self.b = [layer["b"].copy() for layer in q["layers"]]
        self.W_out, self.b_out = q["out"]["W"].copy(), q["out"]["b"].copy()
        self.S = q["signs"]
        self.head = None
        self.rounding = spec.precision.rounding
        self.lfsr = [Lfsr(lfsr_seed(spec.precision.lfsr_seed, u)) for u in range(net.depth + 1)]
        self.counters = {"samples": 0, "inferences": 0}
        for tag in [str(l) for l in range(net.depth)] + ["out"]:
            for var in ("weight", "bias", "error"):
                self.counters[f"sat_{var}_{tag}"] = 0

    def updates_per_sample(self) -> dict:
        """How many values each saturation counter watches per training sample (for rates)."""
        net, out = self.net, {}
        for l in range(net.depth):
            out[f"sat_weight_{l}"] = net.units(l) * net.fan_in(l)
            out[f"sat_bias_{l}"] = net.units(l)
            out[f"sat_error_{l}"] = net.units(l)
        n = net.units(net.depth - 1)
        out["sat_weight_out"], out["sat_bias_out"], out["sat_error_out"] = net.n_classes * n, net.n_classes, net.n_classes
        return out

    # -- arithmetic pieces (also what a datapath's unit tests compare with) --
    def out_logits(self, h) -> np.ndarray:
        """``o = W_out h_L + b_out`` with ``fw + fa`` fraction bits (exact)."""
        p = self.net.prec(self.net.depth - 1)
        fa, fw = p.activation.frac_bits, p.weight.frac_bits
        return self.W_out @ h + (self.b_out << (fw + fa - p.bias.frac_bits))

    def out_error(self, o, c: int) -> np.ndarray:
        """``e = softmax(o) - y`` narrowed to the error format (counted in ``sat_error_out``)."""
        p = self.net.prec(self.net.depth - 1)
        prob, _ = softmax_fixed(o, p.weight.frac_bits + p.activation.frac_bits)
        err = prob.copy()
        err[c] -= 1 << P_FRAC
        return self._error(err, P_FRAC, "out", p.error)

    def feedback(self, l: int, d_next, W_next) -> np.ndarray:
        """``g_l``, the error that reaches hidden layer ``l`` from ``d_next`` (the output error
        ``e`` for DFA and for the last hidden layer; ``d_{l+1}`` otherwise), narrowed to the
        layer's error format. ``W_next``: the weights above ``l`` before this sample's update."""
        net = self.net
        qe = net.prec(l).error
        above = l + 1 if l + 1 < net.depth else l       # the output layer takes layer L-1's formats
        from_out = self.rule == Rule.DFA or l + 1 == net.depth
        fe_src = net.prec(net.depth - 1 if from_out else l + 1).error.frac_bits
        if self.rule == Rule.BP:
            return self._error(W_next.T @ d_next, net.prec(above).weight.frac_bits + fe_src, str(l), qe)
        return self._error(self.S[l].T @ d_next, fe_src + feedback_shift(net, l), str(l), qe)

    # -- samples --
    def train_sample(self, x: np.ndarray, c: int) -> int:
        """Train on one sample (int inputs); returns the prediction made before learning from it."""
        net = self.net
        L = net.depth
        xs, hs = [], []
        h = np.asarray(x, dtype=np.int64)
        for l in range(L):
            xs.append(h)
            h = self.activate(l, self.forward_acc(l, h))
            hs.append(h)
        o = self.out_logits(h)
        pred = int(np.argmax(o))
        e = self.out_error(o, c)
        W_old = [w.copy() for w in self.W] if self.rule == Rule.BP else None
        W_out_old = self.W_out.copy() if self.rule == Rule.BP else None
        k = out_shifts(net)
        self._update(L - 1, self.W_out, self.b_out, np.outer(e, h), e, k.weight, k.bias, L, "out")
        d_next, W_next = e, W_out_old
        for l in range(L - 1, -1, -1):
            src = e if self.rule == Rule.DFA else d_next
            d = self.feedback(l, src, W_next) * _inside(hs[l], net.prec(l).activation)
            s = step_shifts(net, l)
            self._update(l, self.W[l], self.b[l], np.outer(d, xs[l]), d, s.weight, s.bias, l, str(l))
            d_next = d
            W_next = W_old[l] if W_old is not None else None
        self.counters["samples"] += 1
        return pred

    def infer(self, x: np.ndarray) -> int:
        """Inference on one sample (counted in ``inferences``): ``argmax o``."""
        self.counters["inferences"] += 1
        return int(self.predict(np.asarray(x, dtype=np.int64)[None, :])[0])

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Batch inference (no counters); same arithmetic as :meth:`train_sample`'s forward pass."""
        H = np.asarray(X, dtype=np.int64)
        for l in range(self.net.depth):
            p, fi = self.net.prec(l), self.net.in_format(l).frac_bits
            acc = H @ self.W[l].T + (self.b[l] << (p.weight.frac_bits + fi - p.bias.frac_bits))
            H = narrow(acc, p.weight.frac_bits + fi, activation_range(p.activation))[0]
        p = self.net.prec(self.net.depth - 1)
        o = H @ self.W_out.T + (self.b_out << (p.weight.frac_bits + p.activation.frac_bits - p.bias.frac_bits))
        return np.argmax(o, axis=1)

    def state(self) -> dict:
        """The state in the shape the readback map unpacks to: the output layer as ``head``."""
        return {"W": self.W, "b": self.b, "head": {"W": self.W_out, "b": self.b_out}, "S": self.S,
                "counters": dict(self.counters)}
