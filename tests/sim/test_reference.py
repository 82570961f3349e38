"""The float reference: its gradients against central finite differences."""

import numpy as np
import pytest

from sigprop_fpga.sim.reference import class_ce_grads, softmax


def _loss(h, T, c, scale):
    return -np.log(softmax(scale * (T @ h))[c])


def _numeric(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        up = f()
        x[i] = old - eps
        down = f()
        x[i] = old
        g[i] = (up - down) / (2 * eps)
    return g


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("a", [0, 2])
def test_class_ce_gradients(seed, a):
    rng = np.random.default_rng(seed)
    C, n = 5, 7
    T = rng.uniform(-1, 1, (C, n))
    h = rng.uniform(-1, 1, n)
    c = int(rng.integers(C))
    scale = 2.0 ** -a
    p, g_h, g_tc, m = class_ce_grads(h, T, c, scale)
    assert np.allclose(p, softmax(scale * (T @ h)))
    num_h = _numeric(lambda: _loss(h, T, c, scale), h)
    assert np.allclose(scale * g_h, num_h, rtol=1e-6, atol=1e-9)
    row = T[c]
    num_t = _numeric(lambda: _loss(h, T, c, scale), row)
    assert np.allclose(scale * g_tc, num_t, rtol=1e-6, atol=1e-9)
    s = T @ h
    assert m != c and s[m] == max(s[k] for k in range(C) if k != c)


def test_weight_gradient_through_h_path():
    """The h-side update -eta d_h x^T is eta 2^a times -dL/dW (targets held fixed)."""
    rng = np.random.default_rng(3)
    n_in, n, C, a = 6, 5, 4, 2
    W = rng.uniform(-0.2, 0.2, (n, n_in))      # small: every pre-activation inside (-1, 1)
    b = np.zeros(n)
    x = rng.uniform(-1, 1, n_in)
    T = rng.uniform(-1, 1, (C, n))
    c = 1

    def loss():
        return _loss(np.clip(W @ x + b, -1, 1), T, c, 2.0 ** -a)

    z = W @ x + b
    assert np.all(np.abs(z) < 1)
    _, g_h, _, _ = class_ce_grads(np.clip(z, -1, 1), T, c, 2.0 ** -a)
    analytic = 2.0 ** -a * np.outer(g_h * (np.abs(z) < 1), x)
    assert np.allclose(analytic, _numeric(loss, W), rtol=1e-6, atol=1e-9)
