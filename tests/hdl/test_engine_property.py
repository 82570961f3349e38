"""Property test: small random networks and formats, whole engine in the Amaranth simulator,
bit for bit against the golden model.

``make test`` runs a fixed small set (derandomized, :data:`FIXED_EXAMPLES` draws plus every
``@example``); ``pytest --hypothesis-profile=explore tests/hdl/test_engine_property.py`` draws
hundreds of new networks (the profile's ``max_examples``, tests/conftest.py). Each failing draw
found that way is stored below as an ``@example``.
"""

import numpy as np
from hypothesis import HealthCheck, example, given, settings, strategies as st

from sigprop_fpga.compiler.spec import parse_spec
from sigprop_fpga.hdl.simulate import simulate
from sigprop_fpga.sim.datasets import load_dataset
from sigprop_fpga.sim.golden import GoldenSigProp
from sigprop_fpga.compiler.network import Network


@st.composite
def networks(draw):
    depth = draw(st.integers(1, 3))
    widths = [draw(st.integers(2, 7)) for _ in range(depth)]
    lanes = [draw(st.integers(1, 4)) for _ in range(depth)]
    loss = draw(st.sampled_from(["class_ce", "l2"]))
    readout = draw(st.sampled_from(["nearest_target", "head"]))
    rounding = draw(st.sampled_from(["nearest", "stochastic"]))
    push = draw(st.booleans())
    weight = draw(st.sampled_from(["Q4.12", "Q3.13", "Q5.11", "Q3.9"]))
    act = draw(st.sampled_from(["Q1.7", "Q1.6", "Q1.5"]))
    lr = draw(st.integers(3, 8))
    seed = draw(st.integers(0, 1000))
    return f"""
dataset: {{source: iris, seed: {seed % 7}}}
network: {{layers: {widths}, readout: {readout}}}
learning: {{loss: {loss}, lr_shift: {lr}, push: {str(push).lower()}, seed: {seed}}}
precision: {{weight: {weight}, bias: {weight}, activation: {act}, rounding: {rounding}}}
hardware: {{lanes: {lanes}}}
"""


#: Draws per run in the default (deterministic) profile; the explore profile's own count otherwise.
FIXED_EXAMPLES = 6
_EXPLORE = not settings.default.derandomize


@settings(max_examples=settings.default.max_examples if _EXPLORE else FIXED_EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(networks())
def test_random_networks_bit_exact(text):
    spec = parse_spec(text)
    data = load_dataset(spec)
    net = Network(spec, data.n_inputs, data.n_classes)
    n = 24
    train = np.arange(n) % 5 != 4                      # every fifth sample is inference only
    g = GoldenSigProp(net)
    want = [g.train_sample(data.x_train[i], int(data.y_train[i])) if train[i] else g.infer(data.x_train[i])
            for i in range(n)]
    r = simulate(net, data.x_train[:n], data.y_train[:n], train=train,
                 lanes=tuple(l.lanes for l in spec.layers))
    assert list(r["pred"]) == want
    st, gs = r["state"], g.state()
    for l in range(net.depth):
        for k in ("W", "b", "T"):
            assert np.array_equal(st[k][l], gs[k][l]), (k, l)
        if l > 0:
            assert np.array_equal(st["Tin"][l], gs["Tin"][l]), ("Tin", l)
    assert np.array_equal(st["R"], gs["R"])
    if gs["head"] is not None:
        assert np.array_equal(st["head"]["W"], gs["head"]["W"]) and np.array_equal(st["head"]["b"], gs["head"]["b"])
    for k, v in gs["counters"].items():
        assert st["counters"][k] == v, k
