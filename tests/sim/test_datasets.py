"""Datasets: built-ins, the deterministic split, quantization, and malformed .npz files."""

import numpy as np
import pytest

from sigprop_fpga.compiler.spec import parse_spec
from sigprop_fpga.sim.datasets import DatasetError, load_dataset, quantize_inputs
from sigprop_fpga.compiler.spec import QFormat


@pytest.mark.parametrize("name,n_in,classes", [("digits", 64, 10), ("iris", 4, 3), ("wine", 13, 3),
                                               ("breast_cancer", 30, 2)])
def test_builtins(name, n_in, classes):
    d = load_dataset(parse_spec(f"dataset: {{source: {name}}}\n"))
    assert d.n_inputs == n_in and d.n_classes == classes
    assert d.x_train.dtype == np.int64 and d.x_train.min() >= -128 and d.x_train.max() <= 127
    n = len(d.y_train) + len(d.y_test)
    assert abs(len(d.y_test) / n - 0.3) < 0.02
    # stratified: every class in both splits in about the same proportion
    for c in range(classes):
        assert abs(np.mean(d.y_train == c) - np.mean(d.y_test == c)) < 0.05


def test_split_is_deterministic_and_seeded():
    a = load_dataset(parse_spec("dataset: {source: iris, seed: 1}\n"))
    b = load_dataset(parse_spec("dataset: {source: iris, seed: 1}\n"))
    c = load_dataset(parse_spec("dataset: {source: iris, seed: 2}\n"))
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.x_train, c.x_train)


def test_quantize_ties_and_saturation():
    q = QFormat(1, 7)
    assert quantize_inputs(np.array([0.5 / 128, 1.5 / 128, 2.0, -2.0, -1.0]), q).tolist() == [0, 2, 127, -128, -128]


def _npz(tmp_path, **arrays):
    base = dict(x_train=np.random.default_rng(0).uniform(size=(6, 3)), y_train=np.array([0, 1, 2, 0, 1, 2]),
                x_test=np.zeros((2, 3)), y_test=np.array([0, 1]))
    base.update(arrays)
    base = {k: v for k, v in base.items() if v is not None}
    p = tmp_path / "d.npz"
    np.savez(p, **base)
    return parse_spec(f"dataset: {{source: {p}}}\n")


def test_npz_ok(tmp_path):
    d = load_dataset(_npz(tmp_path))
    assert d.n_inputs == 3 and d.n_classes == 3 and len(d.y_train) == 6


@pytest.mark.parametrize("arrays,message", [
    (dict(y_test=None), "y_test: array is missing (expected x_train, y_train, x_test, y_test; found x_train, y_train, x_test)"),
    (dict(x_train=np.zeros(6)), "x_train: expected a non-empty 2-D array (samples, features), got shape (6,)"),
    (dict(x_test=np.zeros((2, 4))), "x_test: expected 3 features like x_train, got 4"),
    (dict(x_test=np.array([[0, np.nan, 0], [0, 0, 0]])), "x_test: expected finite values, got nan at [0, 1]"),
    (dict(y_train=np.array([0, 1, 2, 0, 1])), "y_train: expected 6 labels (one per row of x_train), got 5"),
    (dict(y_train=np.array([0, 1, 2, 0, 1, -1])), "y_train: expected labels in [0, classes), got -1"),
    (dict(y_train=np.array([0, 1, 3, 0, 1, 3])), "y_train: expected every class 0..3 in the training set, class 2 is absent"),
    (dict(y_train=np.array([0, 1, 2, 0, 1, 2.5])), "y_train: expected integer class labels, got dtype float64"),
    (dict(y_test=np.zeros((2, 1), dtype=int)), "y_test: expected a 1-D array of labels, got shape (2, 1)"),
    (dict(x_train=np.array([["a"] * 3] * 6)), "x_train: expected real numbers, got dtype <U1"),
])
def test_npz_malformed(tmp_path, arrays, message):
    spec = _npz(tmp_path, **arrays)
    with pytest.raises(DatasetError) as err:
        load_dataset(spec)
    assert str(err.value) == f"{tmp_path / 'd.npz'}: {message}"


def test_npz_not_an_archive(tmp_path):
    p = tmp_path / "d.npz"
    p.write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match=r"d.npz: expected an .npz archive readable by numpy.load"):
        load_dataset(parse_spec(f"dataset: {{source: {p}}}\n"))
