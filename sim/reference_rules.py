"""Float references (NumPy float64) of per-sample backprop, feedback alignment and direct feedback
alignment, the algorithms their golden models (:mod:`.golden_rules`) compute in integers.

Structured line for line like :class:`.golden_rules.GoldenRule`; what differs is only the
rounding: exact hard-tanh, exact softmax, no saturation. Per sample ``(x, c)``:

* forward ``h_l = f(W_l x_l + b_l)``, ``o = W_out h_L + b_out``, ``pred = argmax o``;
* ``e = softmax(o) - y``; ``W_out -= eta_L e h_L^T``, ``b_out -= eta_L e``;
* from the last hidden layer down: ``g_l`` is ``W_{l+1}^T d_{l+1}`` (bp, weights before this
  sample's update), ``2^-k_l S_l^T d_{l+1}`` (fa) or ``2^-k_l S_l^T e`` (dfa), with ``d_{L+1} = e``
  and ``W_{L+1} = W_out``; ``d_l = g_l f'(z_l)``; ``W_l -= eta_l d_l x_l^T``, ``b_l -= eta_l d_l``.

``eta_l = 2^-lr_shift(l)`` (the output layer takes the last hidden layer's), as in SigProp.
"""

from __future__ import annotations

import numpy as np

from ..compiler.network import Network
from ..compiler.rule import Rule, feedback_shift, init_rule_params
from .reference import _df, _f, softmax

__all__ = ["FloatRule"]


class FloatRule:
    """Per-sample bp, fa or dfa in float64 (see the module docstring).

    Parameters
    ----------
    net : Network
    rule : Rule or str
        ``bp``, ``fa`` or ``dfa``.
    params : dict, optional
        As :func:`~..compiler.rule.init_rule_params` returns them (the default).
    """

    def __init__(self, net: Network, rule: Rule | str, params: dict | None = None):
        rule = Rule(rule)
        if rule == Rule.SIGPROP:
            raise ValueError("FloatRule models bp, fa and dfa; SigProp's float model is FloatSigProp")
        self.net, self.rule = net, rule
        p = params if params is not None else init_rule_params(net, rule)
        self.etas = [2.0 ** -net.lr_shift(l) for l in range(net.depth)]
        self.W = [layer["W"].astype(np.float64).copy() for layer in p["layers"]]
        self.b = [layer["b"].astype(np.float64).copy() for layer in p["layers"]]
        self.W_out = p["out"]["W"].astype(np.float64).copy()
        self.b_out = p["out"]["b"].astype(np.float64).copy()
        self.B = [None if s is None else s.astype(np.float64) * 2.0 ** -feedback_shift(net, l)
                  for l, s in enumerate(p["signs"])]

    def feedback(self, l: int, d_next, W_next) -> np.ndarray:
        """``g_l`` from ``d_next`` (``e`` for dfa and the last hidden layer, else ``d_{l+1}``)."""
        if self.rule == Rule.BP:
            return W_next.T @ d_next
        return self.B[l].T @ d_next

    def train_sample(self, x: np.ndarray, c: int) -> int:
        """Train on one sample; returns the prediction made before learning from it."""
        L = self.net.depth
        xs, zs = [], []
        h = np.asarray(x, dtype=np.float64)
        for l in range(L):
            xs.append(h)
            z = self.W[l] @ h + self.b[l]
            zs.append(z)
            h = _f(z)
        o = self.W_out @ h + self.b_out
        pred = int(np.argmax(o))
        e = softmax(o)
        e[c] -= 1.0
        W_old = [w.copy() for w in self.W] if self.rule == Rule.BP else None
        W_next = self.W_out.copy() if self.rule == Rule.BP else None
        eta = self.etas[-1]
        self.W_out -= eta * np.outer(e, h)
        self.b_out -= eta * e
        d_next = e
        for l in range(L - 1, -1, -1):
            src = e if self.rule == Rule.DFA else d_next
            d = self.feedback(l, src, W_next) * _df(zs[l])
            self.W[l] -= self.etas[l] * np.outer(d, xs[l])
            self.b[l] -= self.etas[l] * d
            d_next = d
            W_next = W_old[l] if W_old is not None else None
        return pred

    def forward(self, x: np.ndarray) -> np.ndarray:
        h = np.asarray(x, dtype=np.float64)
        for W, b in zip(self.W, self.b):
            h = _f(W @ h + b)
        return h

    def predict(self, X: np.ndarray) -> np.ndarray:
        H = np.asarray(X, dtype=np.float64)
        for W, b in zip(self.W, self.b):
            H = _f(H @ W.T + b)
        return np.argmax(H @ self.W_out.T + self.b_out, axis=1)

    def state(self) -> dict:
        return {"W": self.W, "b": self.b, "W_out": self.W_out, "b_out": self.b_out, "B": self.B}
