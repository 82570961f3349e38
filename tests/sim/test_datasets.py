"""Datasets: built-ins, the deterministic split, quantization, a user .npz. The malformed .npz
files and their exact one-line errors are in the corpus (tests/corpus/, tests/test_corpus.py)."""

import numpy as np
import pytest

from sigprop_fpga.compiler.spec import parse_spec
from sigprop_fpga.sim.datasets import load_dataset, quantize_inputs
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
