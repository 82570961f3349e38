"""Datasets: the scikit-learn built-ins or a user ``.npz``, split, scaled and quantized.

Every training engine (float, golden, RTL) sees the same integer inputs: features are scaled to
``[-1, 1]`` and quantized to ``precision.input`` with round-to-nearest-even and saturation; the
float reference trains on ``x_int / 2^frac`` so that all rungs of the ladder see the same vectors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..compiler.network import Network, check_network, quantize_inputs
from ..compiler.spec import DatasetSpec, NetworkSpec, QFormat, SpecError, load_spec

__all__ = ["Dataset", "DatasetError", "load_dataset", "load_network", "input_power", "quantize_inputs"]


class DatasetError(SpecError):
    """A malformed dataset; one line naming the file, the array and what was expected."""


@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: np.ndarray     # int64 (N, n_in), in the input Q format
    y_train: np.ndarray     # int64 (N,)
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    input_format: QFormat

    @property
    def n_inputs(self) -> int:
        return self.x_train.shape[1]

    def float_inputs(self) -> tuple[np.ndarray, np.ndarray]:
        s = self.input_format.scale
        return self.x_train / s, self.x_test / s


def _builtin(name: str):
    from sklearn import datasets as skd

    loader = {"digits": skd.load_digits, "iris": skd.load_iris, "wine": skd.load_wine,
              "breast_cancer": skd.load_breast_cancer}[name]
    b = loader()
    return np.asarray(b.data, dtype=np.float64), np.asarray(b.target, dtype=np.int64)


def _stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified split: per class, a seeded permutation; returns sorted index arrays."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(len(idx))]
        n_test = int(round(len(idx) * test_fraction))
        n_test = min(max(n_test, 1 if len(idx) > 1 else 0), len(idx) - 1)
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    tr, te = np.concatenate(train), np.concatenate(test)
    # a fixed interleaving of classes, so training sees them mixed from the first sample
    return tr[rng.permutation(len(tr))], te[rng.permutation(len(te))]


def _check_npz(path: Path) -> tuple[np.ndarray, ...]:
    f = str(path)
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any unreadable archive is the same user error
        raise DatasetError(f, None, "", f"expected an .npz archive readable by numpy.load ({type(e).__name__})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise DatasetError(f, None, "", "expected an .npz archive of named arrays (numpy.savez), got a single .npy array")
    with z:
        arrays = {}
        for key in ("x_train", "y_train", "x_test", "y_test"):
            if key not in z.files:
                raise DatasetError(f, None, key, f"array is missing (expected x_train, y_train, x_test, y_test; found {', '.join(z.files) or 'none'})")
            try:
                arrays[key] = z[key]
            except ValueError as e:
                if "allow_pickle" in str(e):
                    raise DatasetError(f, None, key, "expected a numeric array, got an object array") from None
                raise DatasetError(f, None, key, f"expected an array numpy can read ({type(e).__name__})") from None
            except Exception as e:  # noqa: BLE001 - a corrupt or truncated member, or a header that lies
                raise DatasetError(f, None, key, f"expected an array numpy can read ({type(e).__name__})") from None
    xtr, ytr, xte, yte = (arrays[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    for key, x in (("x_train", xtr), ("x_test", xte)):
        if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
            raise DatasetError(f, None, key, f"expected a non-empty 2-D array (samples, features), got shape {x.shape}")
        if not (np.issubdtype(x.dtype, np.number) and not np.iscomplexobj(x)):
            raise DatasetError(f, None, key, f"expected real numbers, got dtype {x.dtype}")
        if not np.all(np.isfinite(x)):
            bad = np.argwhere(~np.isfinite(x))[0]
            raise DatasetError(f, None, key, f"expected finite values, got {x[tuple(bad)]} at [{bad[0]}, {bad[1]}]")
    if xtr.shape[1] != xte.shape[1]:
        raise DatasetError(f, None, "x_test", f"expected {xtr.shape[1]} features like x_train, got {xte.shape[1]}")
    for key, y, x in (("y_train", ytr, xtr), ("y_test", yte, xte)):
        if y.ndim != 1:
            raise DatasetError(f, None, key, f"expected a 1-D array of labels, got shape {y.shape}")
        if len(y) != len(x):
            xk = "x" + key[1:]
            raise DatasetError(f, None, key, f"expected {len(x)} labels (one per row of {xk}), got {len(y)}")
        if not np.issubdtype(y.dtype, np.integer):
            if not np.issubdtype(y.dtype, np.floating):
                raise DatasetError(f, None, key, f"expected integer class labels, got dtype {y.dtype}")
            bad = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
            if len(bad):
                raise DatasetError(f, None, key, f"expected integer class labels, got {y[bad[0]].item()} at [{bad[0]}]")
        # before the cast to int64, so that a huge label cannot wrap around
        bad = np.flatnonzero((y < 0) | (y > 255))
        if len(bad):
            raise DatasetError(f, None, key, f"expected class labels from 0 to 255, got {y[bad[0]].item()} at [{bad[0]}]")
    ytr, yte = ytr.astype(np.int64), yte.astype(np.int64)
    n_classes = int(ytr.max()) + 1
    if n_classes < 2:
        raise DatasetError(f, None, "y_train", "expected at least 2 classes, every label is 0")
    missing = sorted(set(range(n_classes)) - set(np.unique(ytr).tolist()))
    if missing:
        raise DatasetError(f, None, "y_train", f"expected every class 0..{n_classes - 1} in the training set, class {missing[0]} is absent")
    bad = np.flatnonzero(yte >= n_classes)
    if len(bad):
        raise DatasetError(f, None, "y_test", f"expected the training set's classes 0..{n_classes - 1}, got {yte[bad[0]]} at [{bad[0]}]")
    return xtr.astype(np.float64), ytr, xte.astype(np.float64), yte, n_classes


def _scale(x_train: np.ndarray, x_test: np.ndarray, scaling: str) -> tuple[np.ndarray, np.ndarray]:
    if scaling == "unit":
        return x_train, x_test
    lo, hi = x_train.min(axis=0), x_train.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    if scaling == "minmax01":       # a feature constant in training is 0: no signal, no step
        f = lambda x: np.clip((x - lo) / span, 0.0, 1.0)  # noqa: E731
    else:
        f = lambda x: np.clip(2.0 * (x - lo) / span - 1.0, -1.0, 1.0)  # noqa: E731
    return f(x_train), f(x_test)


def load_dataset(spec: NetworkSpec) -> Dataset:
    """The dataset of a network spec, split, scaled and quantized to ``precision.input``."""
    d: DatasetSpec = spec.dataset
    q = spec.precision.input
    if d.source == "npz":
        xtr, ytr, xte, yte, n_classes = _check_npz(d.path)
        name = d.path.stem
    else:
        x, y = _builtin(d.source)
        tr, te = _stratified_split(y, d.test_fraction, d.seed)
        xtr, ytr, xte, yte = x[tr], y[tr], x[te], y[te]
        n_classes = int(y.max()) + 1
        name = d.source
    xtr, xte = _scale(xtr, xte, d.scaling)
    return Dataset(name, quantize_inputs(xtr, q), ytr, quantize_inputs(xte, q), yte, n_classes, q)


def input_power(data: Dataset) -> float:
    """``E ||x||^2`` over the training split, in real units of the quantized inputs."""
    x = data.x_train.astype(np.float64) / data.input_format.scale
    return float(np.mean(np.sum(x * x, axis=1)))


def load_network(network) -> tuple:
    """``(spec, data, net)`` of a network file: the spec, its data set and the resolved network,
    checked (:class:`~sigprop_fpga.compiler.spec.SpecError` or
    :class:`DatasetError` on bad input). The one place a network file
    is loaded; :func:`sigprop_fpga.load` wraps it."""
    spec = load_spec(network)
    data = load_dataset(spec)
    net = Network(spec, data.n_inputs, data.n_classes, input_power(data))
    check_network(net)
    return spec, data, net
