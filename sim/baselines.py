"""Float64 NumPy reference learners for comparing learning rules on one MLP.

Rung 1 of the verification ladder (DESIGN.md §3): the baselines a user compares the streaming
SigProp datapath against, on the same network and the same data.

* :func:`train_backprop` -- backprop, softmax cross-entropy, minibatch Adam.
* :func:`train_feedback_alignment` -- feedback alignment (Lillicrap et al. 2016): the backward
  pass uses fixed random matrices ``B_l`` (shape of ``W_l^T``) instead of ``W_l^T``.
* :func:`train_direct_feedback_alignment` -- direct feedback alignment (Nøkland 2016): the output
  error ``e`` is sent straight to every hidden layer through fixed random ``B_l`` (``C x H_l``).
* :func:`train_sigprop_batch` -- the SigProp authors' batch reference (DESIGN.md §1): learned
  label-to-first-hidden target projection, shared weights for ``h`` and ``t``, B x B local loss
  per layer (``v9`` or ``v14``), Adam per layer, detached linear readout.

Conventions: a layer is a pair ``(W, b)`` with ``W`` of shape ``(n_out, n_in)`` (so the layer
computes ``W h + b``; with samples as rows, ``Z = H @ W.T + b``). Losses are means over the batch.
All randomness (initialisation, feedback matrices, shuffling) comes from one
``numpy.random.default_rng(seed)``, drawn in that order, so every learner starts from the same
initial weights for the same seed and sizes.

The analytic gradient functions (:func:`backprop_grads`, :func:`feedback_alignment_grads`,
:func:`direct_feedback_alignment_grads`, :func:`sigprop_local_loss`,
:func:`sigprop_layer_grads`, :func:`softmax_cross_entropy`) are public so tests can check them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

__all__ = [
    "ACTIVATIONS",
    "Adam",
    "TrainResult",
    "accuracy",
    "backprop_grads",
    "direct_feedback_alignment_grads",
    "feedback_alignment_grads",
    "init_feedback_dfa",
    "init_feedback_fa",
    "init_layers",
    "mlp_forward",
    "one_hot",
    "predict",
    "sigprop_layer_grads",
    "sigprop_local_loss",
    "softmax",
    "softmax_cross_entropy",
    "train_backprop",
    "train_direct_feedback_alignment",
    "train_feedback_alignment",
    "train_sigprop_batch",
]

Layer = tuple[np.ndarray, np.ndarray]


# --------------------------------------------------------------------------------------------
# Activations, initialisation, small helpers
# --------------------------------------------------------------------------------------------

def _hardtanh(z: np.ndarray) -> np.ndarray:
    return np.clip(z, -1.0, 1.0)


def _hardtanh_d(z: np.ndarray) -> np.ndarray:
    return (np.abs(z) < 1.0).astype(np.float64)


def _tanh_d(z: np.ndarray) -> np.ndarray:
    return 1.0 - np.tanh(z) ** 2


def _relu(z: np.ndarray) -> np.ndarray:
    return np.maximum(z, 0.0)


def _relu_d(z: np.ndarray) -> np.ndarray:
    return (z > 0.0).astype(np.float64)


#: name -> (f, f'), both taking the pre-activation ``z``.
ACTIVATIONS: dict[str, tuple[Callable[[np.ndarray], np.ndarray],
                             Callable[[np.ndarray], np.ndarray]]] = {
    "hardtanh": (_hardtanh, _hardtanh_d),
    "tanh": (np.tanh, _tanh_d),
    "relu": (_relu, _relu_d),
}


def _act(activation: str):
    try:
        return ACTIVATIONS[activation]
    except KeyError:
        raise ValueError(f"unknown activation {activation!r}; "
                         f"choose one of {sorted(ACTIVATIONS)}") from None


def init_layers(rng: np.random.Generator, sizes: Sequence[int]) -> list[Layer]:
    """Layers for ``sizes = [n_in, h_1, ..., n_out]``.

    ``W_l ~ U(-1/sqrt(fan_in), +1/sqrt(fan_in))`` with shape ``(sizes[l+1], sizes[l])``,
    biases zero. Draws from ``rng`` in layer order.
    """
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        bound = 1.0 / np.sqrt(n_in)
        W = rng.uniform(-bound, bound, size=(n_out, n_in))
        layers.append((W, np.zeros(n_out)))
    return layers


def init_feedback_fa(rng: np.random.Generator, sizes: Sequence[int]) -> list[np.ndarray]:
    """Fixed random feedback matrices for feedback alignment.

    Returns ``B`` with ``len(sizes) - 2`` entries: ``B[i]`` replaces ``W^T`` of layer ``i + 1``
    (the layers whose error is sent further back; layer 0 needs none), shape
    ``(sizes[i+1], sizes[i+2])`` and drawn like that layer's forward weights,
    ``U(-1/sqrt(fan_in), +1/sqrt(fan_in))`` with ``fan_in = sizes[i+1]``.
    """
    fb = []
    for n_in, n_out in zip(sizes[1:-1], sizes[2:]):
        bound = 1.0 / np.sqrt(n_in)
        fb.append(rng.uniform(-bound, bound, size=(n_in, n_out)))
    return fb


def init_feedback_dfa(rng: np.random.Generator, sizes: Sequence[int]) -> list[np.ndarray]:
    """Fixed random direct-feedback matrices: ``B[l]`` of shape ``(C, H_l)`` per hidden layer.

    Drawn ``U(-1/sqrt(H_l), +1/sqrt(H_l))``, the scale of a forward layer ``H_l -> C`` (the
    matrix that would sit in ``B[l]``'s place if layer ``l`` fed the output directly).
    """
    C = sizes[-1]
    fb = []
    for h in sizes[1:-1]:
        bound = 1.0 / np.sqrt(h)
        fb.append(rng.uniform(-bound, bound, size=(C, h)))
    return fb


def one_hot(y: np.ndarray, n_classes: int) -> np.ndarray:
    out = np.zeros((len(y), n_classes))
    out[np.arange(len(y)), y] = 1.0
    return out


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def softmax_cross_entropy(logits: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of rows of ``logits`` and its gradient w.r.t. ``logits``.

    ``target`` is either integer class indices ``(B,)`` or a ``(B, K)`` matrix of row
    distributions (soft targets). Returns ``(loss, dlogits)``.
    """
    B = logits.shape[0]
    logp = _log_softmax(logits)
    if target.ndim == 1:
        q = np.zeros_like(logits)
        q[np.arange(B), target] = 1.0
    else:
        q = target
    loss = -float(np.sum(q * logp)) / B
    return loss, (np.exp(logp) - q) / B


def accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    """Fraction of ``pred == y``."""
    pred = np.asarray(pred)
    y = np.asarray(y)
    return float(np.mean(pred == y)) if len(y) else 0.0


# --------------------------------------------------------------------------------------------
# The MLP: hidden layers f(W h + b), then a linear (softmax) output layer
# --------------------------------------------------------------------------------------------

def mlp_forward(layers: Sequence[Layer], x: np.ndarray, activation: str = "hardtanh"
                ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Forward pass. Returns ``(hs, zs)``: ``hs[0] = x``, ``hs[l+1] = f(zs[l])`` for hidden
    layers, and ``zs[-1]`` the output logits (the last layer is linear, ``len(hs) == len(zs)``).
    """
    f, _ = _act(activation)
    hs = [x]
    zs = []
    h = x
    for i, (W, b) in enumerate(layers):
        z = h @ W.T + b
        zs.append(z)
        if i < len(layers) - 1:
            h = f(z)
            hs.append(h)
    return hs, zs


def predict(layers: Sequence[Layer], x: np.ndarray, activation: str = "hardtanh") -> np.ndarray:
    """Argmax of the output logits."""
    _, zs = mlp_forward(layers, x, activation)
    return np.argmax(zs[-1], axis=1)


def _backward(layers, x, y, activation, send_back) -> tuple[float, list[Layer]]:
    """Shared backward pass. ``send_back(i, delta_out, e)`` returns the gradient w.r.t. the
    output of hidden layer ``i`` (0-based), given ``delta_out`` (the delta of layer ``i + 1``)
    and the output error ``e``."""
    _, fd = _act(activation)
    hs, zs = mlp_forward(layers, x, activation)
    loss, e = softmax_cross_entropy(zs[-1], y)
    L = len(layers)
    grads: list[Layer] = [None] * L  # type: ignore[list-item]
    delta = e
    for i in range(L - 1, -1, -1):
        grads[i] = (delta.T @ hs[i], delta.sum(axis=0))
        if i > 0:
            delta = send_back(i - 1, delta, e) * fd(zs[i - 1])
    return loss, grads


def backprop_grads(layers: Sequence[Layer], x: np.ndarray, y: np.ndarray,
                   activation: str = "hardtanh") -> tuple[float, list[Layer]]:
    """Loss (mean softmax CE) and its exact gradient ``[(dW, db), ...]`` for every layer."""
    return _backward(layers, x, y, activation,
                     lambda i, delta, e: delta @ layers[i + 1][0])


def feedback_alignment_grads(layers: Sequence[Layer], feedback: Sequence[np.ndarray],
                             x: np.ndarray, y: np.ndarray, activation: str = "hardtanh"
                             ) -> tuple[float, list[Layer]]:
    """Feedback-alignment pseudo-gradient: as backprop, but the error of layer ``i + 1`` reaches
    hidden layer ``i`` through ``feedback[i]`` (shape of ``W_{i+1}^T``) instead of
    ``W_{i+1}^T``. With ``feedback[i] = layers[i+1][0].T`` this is exactly backprop."""
    return _backward(layers, x, y, activation,
                     lambda i, delta, e: delta @ feedback[i].T)


def direct_feedback_alignment_grads(layers: Sequence[Layer], feedback: Sequence[np.ndarray],
                                    x: np.ndarray, y: np.ndarray,
                                    activation: str = "hardtanh"
                                    ) -> tuple[float, list[Layer]]:
    """Direct feedback alignment: hidden layer ``i`` receives ``e @ feedback[i]``
    (``feedback[i]`` of shape ``(C, H_i)``), ``e`` the output error (softmax minus one-hot,
    over the batch size). The output layer gets its true gradient."""
    return _backward(layers, x, y, activation,
                     lambda i, delta, e: e @ feedback[i])


# --------------------------------------------------------------------------------------------
# Optimisers
# --------------------------------------------------------------------------------------------

class Adam:
    """Adam (Kingma & Ba) over a list of arrays, updated in place; PyTorch's defaults."""

    def __init__(self, params: Sequence[np.ndarray], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.lr, self.b1, self.b2, self.eps = lr, betas[0], betas[1], eps
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray]) -> None:
        self.t += 1
        c1 = 1.0 - self.b1 ** self.t
        c2 = 1.0 - self.b2 ** self.t
        for p, g, m, v in zip(params, grads, self.m, self.v):
            m *= self.b1
            m += (1.0 - self.b1) * g
            v *= self.b2
            v += (1.0 - self.b2) * g * g
            p -= self.lr * (m / c1) / (np.sqrt(v / c2) + self.eps)


def _flat(layers: Sequence[Layer]) -> list[np.ndarray]:
    return [a for layer in layers for a in layer]


def _sgd(params: Sequence[np.ndarray], grads: Sequence[np.ndarray], lr: float) -> None:
    for p, g in zip(params, grads):
        p -= lr * g


# --------------------------------------------------------------------------------------------
# Results and the shared training loop
# --------------------------------------------------------------------------------------------

@dataclass
class TrainResult:
    rule: str
    train_accuracy: float
    test_accuracy: float
    curve: list[float]                 # test accuracy after each epoch
    weights: list[Layer]               # hidden layers + output layer, (W, b) each
    seconds: float                     # wall time of training only (no evaluation)
    samples: int                       # training samples processed
    extra: dict = field(default_factory=dict)   # rule-specific state (e.g. SigProp's projection)


def _prepare(x_train, y_train, x_test, y_test, n_classes):
    x_train = np.asarray(x_train, dtype=np.float64)
    x_test = np.asarray(x_test, dtype=np.float64)
    y_train = np.asarray(y_train, dtype=np.int64)
    y_test = np.asarray(y_test, dtype=np.int64)
    if n_classes is None:
        n_classes = int(max(y_train.max(), y_test.max() if len(y_test) else 0)) + 1
    return x_train, y_train, x_test, y_test, n_classes


def _run(rule, x_train, y_train, x_test, y_test, layers, activation, epochs, batch_size,
         rng, step, extra=None) -> TrainResult:
    """Epoch loop: shuffle with ``rng``, call ``step(xb, yb)`` per minibatch, record test
    accuracy per epoch. Only the ``step`` calls (and shuffling) are timed."""
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    N = len(x_train)
    curve = []
    seconds = 0.0
    for _ in range(epochs):
        t0 = time.perf_counter()
        order = rng.permutation(N)
        for s in range(0, N, batch_size):
            idx = order[s:s + batch_size]
            step(x_train[idx], y_train[idx])
        seconds += time.perf_counter() - t0
        curve.append(accuracy(predict(layers, x_test, activation), y_test))
    return TrainResult(
        rule=rule,
        train_accuracy=accuracy(predict(layers, x_train, activation), y_train),
        test_accuracy=accuracy(predict(layers, x_test, activation), y_test),
        curve=curve,
        weights=[(W.copy(), b.copy()) for W, b in layers],
        seconds=seconds,
        samples=epochs * N,
        extra=extra or {},
    )


# --------------------------------------------------------------------------------------------
# Learners
# --------------------------------------------------------------------------------------------

def train_backprop(x_train, y_train, x_test, y_test, hidden: Sequence[int] = (128, 128),
                   epochs: int = 20, lr: float = 1e-3, seed: int = 0,
                   activation: str = "hardtanh", batch_size: int = 32,
                   n_classes: int | None = None) -> TrainResult:
    """Backprop with softmax cross-entropy, minibatch Adam, reshuffled every epoch."""
    x_train, y_train, x_test, y_test, C = _prepare(x_train, y_train, x_test, y_test, n_classes)
    _act(activation)
    rng = np.random.default_rng(seed)
    layers = init_layers(rng, [x_train.shape[1], *hidden, C])
    params = _flat(layers)
    opt = Adam(params, lr)

    def step(xb, yb):
        _, grads = backprop_grads(layers, xb, yb, activation)
        opt.step(params, _flat(grads))

    return _run("backprop", x_train, y_train, x_test, y_test, layers, activation, epochs,
                batch_size, rng, step)


def train_feedback_alignment(x_train, y_train, x_test, y_test,
                             hidden: Sequence[int] = (128, 128), epochs: int = 20,
                             lr: float = 2.0 ** -5, seed: int = 0,
                             activation: str = "hardtanh", batch_size: int = 1,
                             n_classes: int | None = None) -> TrainResult:
    """Feedback alignment (Lillicrap et al. 2016), plain SGD; per-sample by default.

    The feedback matrices are drawn from the seeded rng right after the initial weights and
    returned in ``extra['feedback']``."""
    x_train, y_train, x_test, y_test, C = _prepare(x_train, y_train, x_test, y_test, n_classes)
    _act(activation)
    rng = np.random.default_rng(seed)
    sizes = [x_train.shape[1], *hidden, C]
    layers = init_layers(rng, sizes)
    feedback = init_feedback_fa(rng, sizes)
    params = _flat(layers)

    def step(xb, yb):
        _, grads = feedback_alignment_grads(layers, feedback, xb, yb, activation)
        _sgd(params, _flat(grads), lr)

    return _run("feedback_alignment", x_train, y_train, x_test, y_test, layers, activation,
                epochs, batch_size, rng, step, extra={"feedback": feedback})


def train_direct_feedback_alignment(x_train, y_train, x_test, y_test,
                                    hidden: Sequence[int] = (128, 128), epochs: int = 20,
                                    lr: float = 2.0 ** -5, seed: int = 0,
                                    activation: str = "hardtanh", batch_size: int = 1,
                                    n_classes: int | None = None) -> TrainResult:
    """Direct feedback alignment (Nøkland 2016), plain SGD; per-sample by default.

    The feedback matrices (``C x H_l``) are drawn right after the initial weights and returned
    in ``extra['feedback']``."""
    x_train, y_train, x_test, y_test, C = _prepare(x_train, y_train, x_test, y_test, n_classes)
    _act(activation)
    rng = np.random.default_rng(seed)
    sizes = [x_train.shape[1], *hidden, C]
    layers = init_layers(rng, sizes)
    feedback = init_feedback_dfa(rng, sizes)
    params = _flat(layers)

    def step(xb, yb):
        _, grads = direct_feedback_alignment_grads(layers, feedback, xb, yb, activation)
        _sgd(params, _flat(grads), lr)

    return _run("direct_feedback_alignment", x_train, y_train, x_test, y_test, layers,
                activation, epochs, batch_size, rng, step, extra={"feedback": feedback})


# --------------------------------------------------------------------------------------------
# SigProp, the authors' batch reference
# --------------------------------------------------------------------------------------------

SIGPROP_LOSSES = ("v9", "v14")


def sigprop_local_loss(H: np.ndarray, T: np.ndarray, y: np.ndarray, loss: str = "v14"
                       ) -> tuple[float, np.ndarray, np.ndarray]:
    """The B x B local loss of one layer and its gradients ``(L, dL/dH, dL/dT)``.

    Logits ``Y = H T^T``; column ``j`` is a positive for row ``i`` when ``y_j == y_i``.

    * ``'v9'`` (``v9_input_target_max_all``): soft-target CE of each row against the uniform
      distribution over its positive columns.
    * ``'v14'`` (``v14_input_target_max_rand``): CE of each row against its first positive
      column.

    Both are means over the rows. The library's ``v9`` multiplies by a 0/1 mask instead of a
    normalised distribution (each row's loss weighted by its number of positives); here the
    target is normalised, as DESIGN.md §1 describes it.

    When every target is a function of its label alone (as in :func:`train_sigprop_batch`),
    same-class columns of ``Y`` are identical and ``v9`` and ``v14`` give the same loss and the
    same weight gradients; they differ only for per-sample targets.
    """
    y = np.asarray(y)
    pos = y[:, None] == y[None, :]
    Y = H @ T.T
    if loss == "v9":
        target = pos / pos.sum(axis=1, keepdims=True)
    elif loss == "v14":
        target = np.argmax(pos, axis=1)          # first True in each row
    else:
        raise ValueError(f"unknown SigProp loss {loss!r}; choose one of {SIGPROP_LOSSES}")
    L, G = softmax_cross_entropy(Y, target)
    return L, G @ T, G.T @ H


def sigprop_layer_grads(layer: Layer, h_in: np.ndarray, t_in: np.ndarray, y: np.ndarray,
                        activation: str = "hardtanh", loss: str = "v14",
                        target_layer: Layer | None = None):
    """One SigProp layer: forward both signals, local loss, gradients.

    ``h = f(W h_in + b)``; ``t = f(W t_in + b)``, or ``t = f(S t_in + b_S)`` when
    ``target_layer = (S, b_S)`` is given (layer 1, ``t_in`` the one-hot labels). The inputs are
    treated as constants (detached). The gradient of the local loss flows through both ``h``
    and ``t``.

    Returns ``(L, (dW, db), target_grads, h, t)``: ``(dW, db)`` sums both paths when the
    weights are shared; with ``target_layer`` the ``t`` path goes to ``target_grads = (dS,
    db_S)`` instead (``None`` otherwise).
    """
    f, fd = _act(activation)
    W, b = layer
    zh = h_in @ W.T + b
    Wt, bt = target_layer if target_layer is not None else layer
    zt = t_in @ Wt.T + bt
    h, t = f(zh), f(zt)
    L, gH, gT = sigprop_local_loss(h, t, y, loss)
    dh = gH * fd(zh)
    dt = gT * fd(zt)
    dW = dh.T @ h_in
    db = dh.sum(axis=0)
    dWt = dt.T @ t_in
    dbt = dt.sum(axis=0)
    if target_layer is None:
        return L, (dW + dWt, db + dbt), None, h, t
    return L, (dW, db), (dWt, dbt), h, t


def train_sigprop_batch(x_train, y_train, x_test, y_test, hidden: Sequence[int] = (128, 128),
                        epochs: int = 20, lr: float = 5e-4, seed: int = 0,
                        activation: str = "hardtanh", batch_size: int = 32,
                        loss: str = "v14", n_classes: int | None = None) -> TrainResult:
    """The SigProp authors' batch reference (DESIGN.md §1), label to first hidden layer.

    ``t_1 = f(S c + b_S)`` with a learned projection ``S`` (``H_1 x C``); ``h_1 = f(W_1 x +
    b_1)``; for ``l >= 2`` both signals go through the same ``W_l``. Each hidden layer is
    trained on its own local loss (:func:`sigprop_local_loss`) with its own Adam, and updated
    before the next layer runs (the signals it passes on were computed before the update, as in
    the library). The output is a linear classifier on the detached last hidden layer, trained
    with softmax CE on the label; prediction is its argmax.

    ``weights`` holds the hidden layers and the classifier; ``extra['projection']`` holds
    ``(S, b_S)``; ``extra['initial_projection']`` the projection before training.
    """
    if loss not in SIGPROP_LOSSES:
        raise ValueError(f"unknown SigProp loss {loss!r}; choose one of {SIGPROP_LOSSES}")
    if not hidden:
        raise ValueError("SigProp needs at least one hidden layer")
    x_train, y_train, x_test, y_test, C = _prepare(x_train, y_train, x_test, y_test, n_classes)
    _act(activation)
    rng = np.random.default_rng(seed)
    layers = init_layers(rng, [x_train.shape[1], *hidden, C])
    (projection,) = init_layers(rng, [C, hidden[0]])
    hidden_layers, head = layers[:-1], layers[-1]
    opts = [Adam(list(layer), lr) for layer in hidden_layers]
    proj_opt = Adam(list(projection), lr)
    head_opt = Adam(list(head), lr)
    initial_projection = (projection[0].copy(), projection[1].copy())

    def step(xb, yb):
        h, t = xb, one_hot(yb, C)
        for i, layer in enumerate(hidden_layers):
            _, grads, tgrads, h, t = sigprop_layer_grads(
                layer, h, t, yb, activation, loss,
                target_layer=projection if i == 0 else None)
            opts[i].step(layer, grads)
            if tgrads is not None:
                proj_opt.step(projection, tgrads)
        _, e = softmax_cross_entropy(h @ head[0].T + head[1], yb)
        head_opt.step(head, (e.T @ h, e.sum(axis=0)))

    return _run(f"sigprop_batch_{loss}", x_train, y_train, x_test, y_test, layers, activation,
                epochs, batch_size, rng, step,
                extra={"projection": projection, "initial_projection": initial_projection})
