"""Fuzzing the spec loader: whatever the bytes, the answer is a spec or a one-line SpecError."""

import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from sigprop_fpga.compiler.spec import SpecError, parse_spec

KEYS = ["name", "dataset", "network", "learning", "precision", "hardware", "board", "source", "layers",
        "units", "lanes", "weight", "activation", "rounding", "epochs", "lr_shift", "readout", "loss", "x"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["digits", "iris", "Q4.12", "Q1.7", "auto", "head",
                                                           "stochastic", "l2", "icebreaker", "x.npz"]))
trees = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)),
                     max_leaves=20)


def _check(text):
    try:
        parse_spec(text, "fuzz.yaml")
    except SpecError as e:
        msg = str(e)
        assert msg.startswith("fuzz.yaml") and "\n" not in msg
    except RecursionError:
        raise AssertionError("recursion") from None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(KEYS), trees, max_size=7))
def test_structured_documents(doc):
    _check(yaml.safe_dump(doc))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes(data):
    _check(data)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("{}[]:,-&*!|>'\"#%@` \n\tabcQ0123456789.")), max_size=120))
def test_yaml_punctuation(text):
    _check(text)


def test_deep_nesting_is_an_error_not_a_crash():
    _check("dataset: " + "[" * 5000 + "]" * 5000 + "\n")
