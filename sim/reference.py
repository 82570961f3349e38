"""Float reference (NumPy float64) of per-sample streaming SigProp, DESIGN.md §2.

The same algorithm as the golden model, without rounding: exact hard-tanh, exact softmax.
Structured line for line like :mod:`.golden` so the two can be read side by side.

Per layer ``l`` and sample ``(x, c)``:

* forward both signals through the same weights: ``h = f(W h_in + b)``, ``t = f(W t_in + b)``
  (layer 0: ``t = f(R[c])``, the learned target table);
* readout before any cache write: ``pred = argmax_k h_L . T_L[k]`` (or the head);
* cache writes: ``T[c] <- t`` and, for ``l >= 1``, ``Tin[c] <- t_in`` (the layer's own copy);
* ``class_ce``: ``s_k = 2^-a h . T[k]``, ``p = softmax(s)``, ``m = argmax_{k != c} s_k``;
  ``g_h = sum_k (p_k - y_k) T[k]``, ``g_tc = (p_c - 1) h``, ``g_tm = (1 - p_c) h``
  (the ``2^-a`` of the true gradient is folded into the learning rate, as in DESIGN.md);
  ``delta = g * f'`` per signal; ``W -= eta (d_h x^T + d_tc t_in^T + d_tm Tin[m]^T)``,
  ``b -= eta (d_h + d_tc + d_tm)``; layer 0 sends the target side to ``R[c]``, ``R[m]``;
* ``l2``: ``d_h = (h - t) * f'(h)``, ``W -= eta d_h x^T``, ``b -= eta d_h``.
"""

from __future__ import annotations

import numpy as np

from ..compiler.network import Network, init_params

__all__ = ["FloatSigProp", "softmax", "class_ce_grads"]


def softmax(s: np.ndarray) -> np.ndarray:
    e = np.exp(s - s.max())
    return e / e.sum()


def _f(z):
    return np.clip(z, -1.0, 1.0)


def _df(v):
    """Hard-tanh derivative as a mask, from a pre-activation or a cached output."""
    return (np.abs(v) < 1.0).astype(np.float64)


def class_ce_grads(h, T, c: int, logit_scale: float):
    """Loss pieces of ``class_ce`` for one layer: ``(p, g_h, g_tc, m)``.

    ``s = logit_scale * T h``, ``p = softmax(s)``, ``L = -log p_c``. ``g_h`` and ``g_tc`` are
    ``dL/dh`` and ``dL/dT[c]`` divided by ``logit_scale`` (DESIGN.md folds that factor into the
    learning rate); ``m`` is the hardest wrong class.
    """
    s = logit_scale * (T @ h)
    p = softmax(s)
    y = np.zeros_like(p)
    y[c] = 1.0
    s_wrong = s.copy()
    s_wrong[c] = -np.inf
    return p, (p - y) @ T, (p[c] - 1.0) * h, int(np.argmax(s_wrong))


class FloatSigProp:
    """Per-sample SigProp in float64, online SGD with ``eta_l = 2^-lr_shift`` per layer
    (:meth:`~sigprop_fpga.compiler.network.Network.lr_shift`)."""

    def __init__(self, net: Network, params: dict | None = None):
        self.net = net
        p = params if params is not None else init_params(net)
        s = net.spec
        self.etas = [2.0 ** -net.lr_shift(l) for l in range(net.depth)]
        self.logit_scale = 2.0 ** -s.learning.logit_shift
        self.W = [layer["W"].astype(np.float64).copy() for layer in p["layers"]]
        self.b = [layer["b"].astype(np.float64).copy() for layer in p["layers"]]
        self.R = p["R"].astype(np.float64).copy()
        C = net.n_classes
        self.T = [np.zeros((C, net.units(l))) for l in range(net.depth)]
        self.Tin = [None] + [np.zeros((C, net.fan_in(l))) for l in range(1, net.depth)]
        self.head = None if p["head"] is None else {k: v.copy() for k, v in p["head"].items()}

    # -- one layer of training --
    def _layer(self, l: int, x, t_in, c: int):
        W, b, T, eta = self.W[l], self.b[l], self.T[l], self.etas[l]
        z = W @ x + b
        h = _f(z)
        if l == 0:
            zt = self.R[c]
        else:
            zt = W @ t_in + b
        t = _f(zt)
        T[c] = t
        if l > 0:
            self.Tin[l][c] = t_in
        spec = self.net.spec.learning
        if spec.loss == "l2":
            d_h = (h - t) * _df(z)
            W -= eta * np.outer(d_h, x)
            b -= eta * d_h
            return h, t
        p, g_h, g_tc, m = class_ce_grads(h, T, c, self.logit_scale)
        d_h = g_h * _df(z)
        d_tc = g_tc * _df(zt)
        W -= eta * np.outer(d_h, x)
        b -= eta * d_h
        if l == 0:
            self.R[c] -= eta * d_tc
        else:
            W -= eta * np.outer(d_tc, t_in)
            b -= eta * d_tc
        if spec.push:
            d_tm = -g_tc * _df(T[m])
            if l == 0:
                self.R[m] -= eta * d_tm
            else:
                W -= eta * np.outer(d_tm, self.Tin[l][m])
                b -= eta * d_tm
        return h, t

    def _readout(self, h) -> int:
        if self.head is not None:
            return int(np.argmax(self.head["W"] @ h + self.head["b"]))
        return int(np.argmax(self.T[-1] @ h))

    def _train_head(self, h, c):
        o = self.head["W"] @ h + self.head["b"]
        p = softmax(o)
        p[c] -= 1.0
        eta = self.etas[-1]
        self.head["W"] -= eta * np.outer(p, h)
        self.head["b"] -= eta * p

    def train_sample(self, x: np.ndarray, c: int) -> int:
        """Train on one sample; returns the prediction made before learning from it."""
        h, t = x, None
        pred = None
        for l in range(self.net.depth):
            if l == self.net.depth - 1 and self.head is None:
                # readout at the last layer, before its cache write
                hl = _f(self.W[l] @ h + self.b[l])
                pred = int(np.argmax(self.T[l] @ hl))
            h, t = self._layer(l, h, t, c)
        if self.head is not None:
            pred = self._readout(h)
            self._train_head(h, c)
        return pred

    def forward(self, x: np.ndarray) -> np.ndarray:
        h = x
        for W, b in zip(self.W, self.b):
            h = _f(W @ h + b)
        return h

    def predict(self, X: np.ndarray) -> np.ndarray:
        H = X
        for W, b in zip(self.W, self.b):
            H = _f(H @ W.T + b)
        if self.head is not None:
            return np.argmax(H @ self.head["W"].T + self.head["b"], axis=1)
        return np.argmax(H @ self.T[-1].T, axis=1)

    def state(self) -> dict:
        return {"W": self.W, "b": self.b, "R": self.R, "T": self.T, "Tin": self.Tin, "head": self.head}

    def load_state(self, state: dict) -> None:
        """Continue from ``state`` (shaped as :meth:`state`, real-valued): weights, biases, the
        target table, the head and the class-target caches."""
        net = self.net
        self.W = [np.array(state["W"][l], dtype=np.float64) for l in range(net.depth)]
        self.b = [np.array(state["b"][l], dtype=np.float64) for l in range(net.depth)]
        self.T = [np.array(state["T"][l], dtype=np.float64) for l in range(net.depth)]
        self.Tin = [None] + [np.array(state["Tin"][l], dtype=np.float64) for l in range(1, net.depth)]
        self.R = np.array(state["R"], dtype=np.float64)
        head = state.get("head")
        self.head = None if head is None else {k: np.array(head[k], dtype=np.float64) for k in ("W", "b")}
