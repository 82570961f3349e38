"""Tests for sim/baselines.py: analytic gradients against central differences, the
FA/DFA-reduce-to-backprop identities, and every learner on sklearn digits."""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from sigprop_fpga.sim import baselines as bl

FD_EPS = 1e-6
FD_TOL = 1e-6


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------

def numeric_grad(fun, arr, eps=FD_EPS):
    """Central-difference gradient of the scalar ``fun()`` w.r.t. ``arr`` (perturbed in place)."""
    g = np.zeros_like(arr)
    flat, gflat = arr.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = fun()
        flat[i] = old - eps
        down = fun()
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return g


def rel_err(a, b):
    a, b = np.ravel(a), np.ravel(b)
    return np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b), 1e-300)


def tiny_problem(seed, sizes=(5, 4, 3, 3), batch=8):
    rng = np.random.default_rng(seed)
    layers = bl.init_layers(rng, sizes)
    # non-zero biases so their gradients are exercised in a generic point
    layers = [(W, rng.normal(0, 0.3, size=b.shape)) for W, b in layers]
    x = rng.uniform(-1, 1, size=(batch, sizes[0]))
    y = np.arange(batch) % sizes[-1]
    rng.shuffle(y)
    return rng, layers, x, y


@pytest.fixture(scope="module", autouse=True)
def single_blas_thread():
    """The matrices are tiny: multithreaded BLAS only adds contention (measured 0.3 s -> 12 s
    for a backprop run on a loaded 2-core machine)."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    x = d.data / 16.0 * 2.0 - 1.0
    xtr, xte, ytr, yte = train_test_split(x, d.target, test_size=0.3, random_state=0,
                                          stratify=d.target)
    return xtr, ytr, xte, yte


# ------------------------------------------------------------------------------------------
# building blocks
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(bl.ACTIVATIONS))
def test_activation_derivatives(name):
    f, fd = bl.ACTIVATIONS[name]
    # stay away from the kinks of hardtanh (+-1) and relu (0)
    z = np.array([-2.3, -1.4, -0.7, -0.2, 0.3, 0.6, 0.9, 1.2, 3.0])
    num = (f(z + 1e-6) - f(z - 1e-6)) / 2e-6
    assert np.allclose(fd(z), num, rtol=1e-6, atol=1e-8)


def test_hardtanh_values():
    f, fd = bl.ACTIVATIONS["hardtanh"]
    z = np.array([-3.0, -0.5, 0.0, 0.5, 3.0])
    assert np.array_equal(f(z), [-1.0, -0.5, 0.0, 0.5, 1.0])
    assert np.array_equal(fd(z), [0.0, 1.0, 1.0, 1.0, 0.0])


def test_init_layers_shapes_bounds_determinism():
    sizes = [64, 32, 16, 10]
    a = bl.init_layers(np.random.default_rng(3), sizes)
    b = bl.init_layers(np.random.default_rng(3), sizes)
    assert len(a) == 3
    for (W, bias), n_in, n_out, (W2, b2) in zip(a, sizes[:-1], sizes[1:], b):
        assert W.shape == (n_out, n_in) and bias.shape == (n_out,)
        assert W.dtype == np.float64
        assert np.all(np.abs(W) <= 1 / np.sqrt(n_in))
        assert np.abs(W).max() > 0.8 / np.sqrt(n_in)  # really spans the range
        assert not np.any(bias)
        assert np.array_equal(W, W2) and np.array_equal(bias, b2)


def test_accuracy_and_softmax_ce():
    assert bl.accuracy(np.array([1, 2, 3, 4]), np.array([1, 2, 0, 4])) == 0.75
    rng = np.random.default_rng(0)
    z = rng.normal(size=(6, 4))
    y = np.array([0, 1, 2, 3, 0, 1])
    loss, g = bl.softmax_cross_entropy(z, y)
    num = numeric_grad(lambda: bl.softmax_cross_entropy(z, y)[0], z)
    assert rel_err(g, num) < FD_TOL
    # soft targets given as a one-hot matrix are the same loss
    loss2, g2 = bl.softmax_cross_entropy(z, bl.one_hot(y, 4))
    assert np.isclose(loss, loss2) and np.allclose(g, g2)


# ------------------------------------------------------------------------------------------
# backprop, FA, DFA gradients
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1])
def test_backprop_gradient_matches_finite_differences(seed):
    _, layers, x, y = tiny_problem(seed)
    _, grads = bl.backprop_grads(layers, x, y, "tanh")
    for (W, b), (dW, db) in zip(layers, grads):
        for p, g in ((W, dW), (b, db)):
            num = numeric_grad(lambda: bl.backprop_grads(layers, x, y, "tanh")[0], p)
            assert rel_err(g, num) < FD_TOL


@pytest.mark.parametrize("activation", ["tanh", "hardtanh", "relu"])
def test_fa_with_transposed_weights_is_backprop(activation):
    _, layers, x, y = tiny_problem(2, sizes=(6, 5, 4, 4, 3), batch=9)
    feedback = [W.T.copy() for W, _ in layers[1:]]
    lb, gb = bl.backprop_grads(layers, x, y, activation)
    lf, gf = bl.feedback_alignment_grads(layers, feedback, x, y, activation)
    assert lb == lf
    for (a, b), (c, d) in zip(gb, gf):
        assert np.allclose(a, c, rtol=1e-13, atol=1e-15)
        assert np.allclose(b, d, rtol=1e-13, atol=1e-15)


def test_fa_random_feedback_shapes_and_output_layer():
    rng, layers, x, y = tiny_problem(4, sizes=(6, 5, 4, 3))
    feedback = bl.init_feedback_fa(rng, [6, 5, 4, 3])
    assert [B.shape for B in feedback] == [W.T.shape for W, _ in layers[1:]]
    _, gb = bl.backprop_grads(layers, x, y, "tanh")
    _, gf = bl.feedback_alignment_grads(layers, feedback, x, y, "tanh")
    # the output layer always gets its true gradient; hidden layers get something else
    assert np.allclose(gb[-1][0], gf[-1][0]) and np.allclose(gb[-1][1], gf[-1][1])
    assert not np.allclose(gb[0][0], gf[0][0])


def test_dfa_shapes_and_reduction_to_backprop():
    sizes = [6, 5, 4, 3]
    rng, layers, x, y = tiny_problem(5, sizes=sizes)
    feedback = bl.init_feedback_dfa(rng, sizes)
    assert [B.shape for B in feedback] == [(3, 5), (3, 4)]
    for B, h in zip(feedback, sizes[1:-1]):
        assert np.all(np.abs(B) <= 1 / np.sqrt(h))
    loss, gd = bl.direct_feedback_alignment_grads(layers, feedback, x, y, "tanh")
    lb, gb = bl.backprop_grads(layers, x, y, "tanh")
    assert loss == lb
    assert [(a.shape, b.shape) for a, b in gd] == [(W.shape, b.shape) for W, b in layers]
    assert np.allclose(gb[-1][0], gd[-1][0])
    # the last hidden layer with B = W_out gets exactly the backprop gradient
    fb = [feedback[0], layers[-1][0].copy()]
    _, gd2 = bl.direct_feedback_alignment_grads(layers, fb, x, y, "tanh")
    assert np.allclose(gb[-2][0], gd2[-2][0], rtol=1e-13, atol=1e-15)
    assert not np.allclose(gb[0][0], gd2[0][0])
    # deterministic: the same rng seed gives the same feedback and the same pseudo-gradient
    fb_again = bl.init_feedback_dfa(tiny_problem(5, sizes=sizes)[0], sizes)
    assert all(np.array_equal(a, b) for a, b in zip(feedback, fb_again))
    _, gd3 = bl.direct_feedback_alignment_grads(layers, fb_again, x, y, "tanh")
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(gd, gd3))


def test_dfa_feedback_ignores_weights_of_later_layers():
    """DFA's hidden-layer signal depends on the output error only, not on W_{l+1}."""
    sizes = [6, 5, 4, 3]
    rng, layers, x, y = tiny_problem(6, sizes=sizes)
    fb = bl.init_feedback_dfa(rng, sizes)
    _, g1 = bl.direct_feedback_alignment_grads(layers, fb, x, y, "tanh")
    hs, zs = bl.mlp_forward(layers, x, "tanh")
    _, e = bl.softmax_cross_entropy(zs[-1], y)
    delta0 = (e @ fb[0]) * bl.ACTIVATIONS["tanh"][1](zs[0])
    assert np.allclose(g1[0][0], delta0.T @ x) and np.allclose(g1[0][1], delta0.sum(0))


# ------------------------------------------------------------------------------------------
# SigProp batch reference gradients
# ------------------------------------------------------------------------------------------

def sigprop_inputs(seed, n_in=5, n_out=4, batch=8, classes=3):
    rng = np.random.default_rng(seed)
    (W, b), = bl.init_layers(rng, [n_in, n_out])
    W *= 2.0
    b = rng.normal(0, 0.3, size=n_out)
    h_in = rng.uniform(-1, 1, size=(batch, n_in))
    t_in = rng.uniform(-1, 1, size=(batch, n_in))
    y = np.arange(batch) % classes
    rng.shuffle(y)
    return rng, (W, b), h_in, t_in, y


@pytest.mark.parametrize("loss", ["v9", "v14"])
def test_sigprop_local_loss_gradient(loss):
    rng = np.random.default_rng(7)
    H = rng.normal(size=(8, 4))
    T = rng.normal(size=(8, 4))
    y = np.array([0, 1, 2, 0, 1, 2, 0, 0])
    _, dH, dT = bl.sigprop_local_loss(H, T, y, loss)
    assert rel_err(dH, numeric_grad(lambda: bl.sigprop_local_loss(H, T, y, loss)[0], H)) < FD_TOL
    assert rel_err(dT, numeric_grad(lambda: bl.sigprop_local_loss(H, T, y, loss)[0], T)) < FD_TOL


def test_sigprop_local_loss_values():
    """v14 is CE against the first same-class column; v9 against the uniform positives."""
    rng = np.random.default_rng(8)
    H, T = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    y = np.array([1, 0, 1, 1, 0])
    logp = np.log(bl.softmax(H @ T.T))
    first = np.array([0, 1, 0, 0, 1])
    assert np.isclose(bl.sigprop_local_loss(H, T, y, "v14")[0], -logp[np.arange(5), first].mean())
    pos = (y[:, None] == y[None, :])
    v9 = -np.mean([logp[i, pos[i]].mean() for i in range(5)])
    assert np.isclose(bl.sigprop_local_loss(H, T, y, "v9")[0], v9)
    with pytest.raises(ValueError):
        bl.sigprop_local_loss(H, T, y, "v7")


@pytest.mark.parametrize("loss", ["v9", "v14"])
def test_sigprop_shared_layer_gradient_through_both_signals(loss):
    _, (W, b), h_in, t_in, y = sigprop_inputs(11)

    def L():
        return bl.sigprop_layer_grads((W, b), h_in, t_in, y, "tanh", loss)[0]

    _, (dW, db), tgrads, h, t = bl.sigprop_layer_grads((W, b), h_in, t_in, y, "tanh", loss)
    assert tgrads is None
    assert np.allclose(h, np.tanh(h_in @ W.T + b)) and np.allclose(t, np.tanh(t_in @ W.T + b))
    assert rel_err(dW, numeric_grad(L, W)) < FD_TOL
    assert rel_err(db, numeric_grad(L, b)) < FD_TOL
    # both paths matter: the h path alone is a different (wrong) gradient
    f, fd = bl.ACTIVATIONS["tanh"]
    zh = h_in @ W.T + b
    _, gH, _ = bl.sigprop_local_loss(f(zh), t, y, loss)
    dW_h_only = (gH * fd(zh)).T @ h_in
    assert rel_err(dW, dW_h_only) > 1e-2


@pytest.mark.parametrize("loss", ["v9", "v14"])
def test_sigprop_first_layer_and_target_projection_gradient(loss):
    rng, (W, b), x, _, y = sigprop_inputs(12, n_in=6, n_out=5, batch=9, classes=3)
    (S, bS), = bl.init_layers(rng, [3, 5])
    S *= 3.0
    bS = rng.normal(0, 0.3, size=5)
    c = bl.one_hot(y, 3)

    def L():
        return bl.sigprop_layer_grads((W, b), x, c, y, "tanh", loss, target_layer=(S, bS))[0]

    _, (dW, db), (dS, dbS), h, t = bl.sigprop_layer_grads((W, b), x, c, y, "tanh", loss,
                                                          target_layer=(S, bS))
    assert np.allclose(t, np.tanh(S[:, y].T + bS))   # t_1 = f(S c)
    for p, g in ((W, dW), (b, db), (S, dS), (bS, dbS)):
        assert rel_err(g, numeric_grad(L, p)) < FD_TOL


def test_v9_and_v14_coincide_when_targets_depend_on_the_label_only():
    """With t a function of the label alone (as in train_sigprop_batch), same-class target
    columns are identical (and so are their logits), so the uniform-over-positives (v9) and
    first-positive (v14) losses have the same value and give the same weight gradients."""
    rng, (W, b), h_in, _, y = sigprop_inputs(13)
    per_class = rng.uniform(-1, 1, size=(3, h_in.shape[1]))
    t_in = per_class[y]
    out = {loss: bl.sigprop_layer_grads((W, b), h_in, t_in, y, "tanh", loss)
           for loss in ("v9", "v14")}
    assert np.isclose(out["v9"][0], out["v14"][0], rtol=1e-12)
    assert np.allclose(out["v9"][1][0], out["v14"][1][0], rtol=1e-12, atol=1e-14)
    # ...whereas generic (per-sample) targets give different gradients
    _, _, _, t_generic, _ = sigprop_inputs(13)
    g9 = bl.sigprop_layer_grads((W, b), h_in, t_generic, y, "tanh", "v9")[1][0]
    g14 = bl.sigprop_layer_grads((W, b), h_in, t_generic, y, "tanh", "v14")[1][0]
    assert not np.allclose(g9, g14)


# ------------------------------------------------------------------------------------------
# learners on digits
# ------------------------------------------------------------------------------------------

LEARNERS = {
    # name: (function, kwargs, epochs, threshold). Measured test accuracy on digits [32, 32],
    # seed 0: BP 0.956, FA 0.974, DFA 0.969, SigProp v9/v14 0.889 after 10 epochs.
    "backprop": (bl.train_backprop, {}, 10, 0.85),
    "feedback_alignment": (bl.train_feedback_alignment, {}, 10, 0.94),
    "direct_feedback_alignment": (bl.train_direct_feedback_alignment, {}, 10, 0.94),
    "sigprop_batch_v9": (bl.train_sigprop_batch, {"loss": "v9"}, 10, 0.86),
    "sigprop_batch_v14": (bl.train_sigprop_batch, {"loss": "v14"}, 10, 0.86),
}


@pytest.fixture(scope="module")
def digits_runs(digits):
    xtr, ytr, xte, yte = digits
    runs = {}
    for name, (fn, kw, epochs, _) in LEARNERS.items():
        runs[name] = [fn(xtr, ytr, xte, yte, hidden=[32, 32], epochs=epochs, seed=0, **kw)
                      for _ in range(2)]
    return runs


@pytest.mark.parametrize("name", list(LEARNERS))
def test_learner_on_digits(name, digits, digits_runs):
    xtr, ytr, xte, yte = digits
    _, _, epochs, threshold = LEARNERS[name]
    r, r2 = digits_runs[name]
    assert r.rule == name
    assert r.test_accuracy >= threshold, (name, r.test_accuracy)
    assert r.train_accuracy >= threshold
    assert len(r.curve) == epochs and r.curve[-1] == r.test_accuracy
    assert r.samples == epochs * len(xtr)
    assert r.seconds > 0
    assert [(W.shape, b.shape) for W, b in r.weights] == \
        [((32, 64), (32,)), ((32, 32), (32,)), ((10, 32), (10,))]
    # deterministic: same seed => identical weights and curve
    assert r.curve == r2.curve
    for (W, b), (W2, b2) in zip(r.weights, r2.weights):
        assert np.array_equal(W, W2) and np.array_equal(b, b2)
    assert np.array_equal(bl.predict(r.weights, xte), bl.predict(r2.weights, xte))


def test_sigprop_projection_is_learned(digits_runs):
    r = digits_runs["sigprop_batch_v14"][0]
    S, bS = r.extra["projection"]
    S0, _ = r.extra["initial_projection"]
    assert S.shape == (32, 10) and bS.shape == (32,)
    assert not np.allclose(S, S0)


def test_all_learners_share_the_initialisation(digits):
    """epochs=0 returns the untouched initial network: init_layers(default_rng(seed), sizes)."""
    xtr, ytr, xte, yte = digits
    init = bl.init_layers(np.random.default_rng(5), [64, 16, 12, 10])
    for fn, kw, _, _ in LEARNERS.values():
        r = fn(xtr, ytr, xte, yte, hidden=[16, 12], epochs=0, seed=5, **kw)
        assert r.samples == 0 and r.curve == []
        for (W, b), (W0, b0) in zip(r.weights, init):
            assert np.array_equal(W, W0) and np.array_equal(b, b0)


def test_different_seeds_differ(digits):
    xtr, ytr, xte, yte = digits
    sub = slice(0, 200)
    a = bl.train_feedback_alignment(xtr[sub], ytr[sub], xte, yte, hidden=[8], epochs=1, seed=0)
    b = bl.train_feedback_alignment(xtr[sub], ytr[sub], xte, yte, hidden=[8], epochs=1, seed=1)
    assert not np.allclose(a.weights[0][0], b.weights[0][0])


def test_minibatch_fa_and_other_activations_learn(digits):
    xtr, ytr, xte, yte = digits
    r = bl.train_feedback_alignment(xtr, ytr, xte, yte, hidden=[32], epochs=5, seed=0,
                                    batch_size=16, lr=0.25, activation="tanh")
    assert r.test_accuracy > 0.85, r.test_accuracy
    r = bl.train_backprop(xtr, ytr, xte, yte, hidden=[32], epochs=5, seed=0,
                          activation="relu", lr=3e-3)
    assert r.test_accuracy > 0.85, r.test_accuracy


def test_bad_arguments(digits):
    xtr, ytr, xte, yte = digits
    with pytest.raises(ValueError):
        bl.train_backprop(xtr, ytr, xte, yte, hidden=[4], epochs=1, activation="sigmoid")
    with pytest.raises(ValueError):
        bl.train_sigprop_batch(xtr, ytr, xte, yte, hidden=[4], epochs=1, loss="v7")
    with pytest.raises(ValueError):
        bl.train_direct_feedback_alignment(xtr, ytr, xte, yte, hidden=[4], epochs=1,
                                           batch_size=0)
