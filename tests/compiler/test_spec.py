"""The network file: every key and the defaults. The malformed files and their exact one-line
errors are the corpus in tests/corpus/ (tests/test_corpus.py)."""

from pathlib import Path

import re

import pytest

from sigprop_fpga.compiler.spec import QFormat, SpecError, load_spec, parse_qformat, parse_spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_oversized_file(tmp_path):
    # (too big to keep in the corpus)
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (2 << 20))
    with pytest.raises(SpecError, match=r"big.yaml: expected a network file of at most 1048576 bytes$"):
        load_spec(big)


def test_defaults():
    s = parse_spec("dataset: {source: iris}\n")
    assert s.name == "network" and s.board == "icebreaker" and s.readout == "nearest_target"
    assert s.widths == (32, 32)
    L = s.learning
    assert (L.rule, L.loss, L.lr_shift, L.logit_shift, L.push, L.epochs, L.seed) == ("sigprop", "class_ce", "auto", 2, True, 20, 0)
    p = s.layers[0].precision
    assert (str(p.activation), str(p.weight), str(p.bias), str(p.error), p.accumulator) == ("Q1.7", "Q4.12", "Q4.12", "Q2.14", None)
    assert str(s.precision.input) == "Q1.7" and str(s.precision.table) == "Q4.12" and s.precision.rounding == "nearest"
    assert (s.hardware.lanes, s.hardware.dsp_budget, s.hardware.clock_mhz) == ("auto", 8, "max")
    assert s.dataset.test_fraction == 0.3 and s.dataset.seed == 0 and s.dataset.scaling == "minmax"


def test_every_key():
    s = parse_spec("""
name: every-key
dataset: {source: wine, test_fraction: 0.25, seed: 3, scaling: unit}
network:
  layers: [7, {units: 5, activation: hardtanh, lanes: 2, precision: {weight: Q3.13, bias: Q3.13, activation: Q1.5, error: Q3.13, accumulator: 40}}]
  activation: hardtanh
  readout: head
learning: {rule: sigprop, loss: l2, lr_shift: 9, logit_shift: 3, push: false, epochs: 4, seed: 11}
precision: {input: Q1.6, activation: Q1.7, weight: Q5.11, bias: Q4.10, table: Q3.12, error: Q2.13, accumulator: Q12.20, rounding: stochastic, lfsr_seed: 77}
hardware: {lanes: [3, 1], dsp_budget: 6, clock_mhz: 30.5}
board: ulx3s-85f
""")
    assert s.name == "every-key" and s.board == "ulx3s-85f" and s.readout == "head"
    assert (s.dataset.source, s.dataset.test_fraction, s.dataset.seed, s.dataset.scaling) == ("wine", 0.25, 3, "unit")
    assert s.learning == type(s.learning)("sigprop", "l2", 9, 3, False, 4, 11)
    l0, l1 = s.layers
    assert (l0.units, l0.lanes, str(l0.precision.weight), str(l0.precision.bias), l0.precision.accumulator) == (7, 3, "Q5.11", "Q4.10", 32)
    # per-layer overrides win over the network-wide precision, and per-layer lanes over the list
    assert (l1.units, l1.lanes, str(l1.precision.weight), str(l1.precision.activation), str(l1.precision.error),
            l1.precision.accumulator) == (5, 2, "Q3.13", "Q1.5", "Q3.13", 40)
    assert (str(s.precision.input), str(s.precision.table), s.precision.rounding, s.precision.lfsr_seed) == ("Q1.6", "Q3.12", "stochastic", 77)
    assert (s.hardware.lanes, s.hardware.dsp_budget, s.hardware.clock_mhz) == ((3, 1), 6, 30.5)


def test_npz_path_relative_to_file(tmp_path):
    import numpy as np

    (tmp_path / "d").mkdir()
    np.savez(tmp_path / "d" / "data.npz", x_train=np.zeros((4, 2)), y_train=np.array([0, 1, 0, 1]),
             x_test=np.zeros((2, 2)), y_test=np.array([0, 1]))
    f = tmp_path / "net.yaml"
    f.write_text("dataset: {source: d/data.npz}\n")
    s = load_spec(f)
    assert s.dataset.source == "npz" and s.dataset.path == tmp_path / "d" / "data.npz"


@pytest.mark.parametrize("text,expected", [("Q1.7", (1, 7)), ("Q4.12", (4, 12)), ("Q16.16", (16, 16)), ("Q2.0", (2, 0))])
def test_qformat(text, expected):
    q = parse_qformat(text)
    assert (q.int_bits, q.frac_bits) == expected
    assert q.width == sum(expected) and q.min_int == -(1 << (q.width - 1)) and q.max_int == (1 << (q.width - 1)) - 1


def test_qformat_ranges():
    assert QFormat(1, 7).min_int == -128 and QFormat(1, 7).max_int == 127
    with pytest.raises(ValueError):
        QFormat(0, 8)
    with pytest.raises(ValueError):
        QFormat(20, 20)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_examples_load(path):
    spec = load_spec(path)
    assert spec.file == str(path)


def test_clock_per_board():
    s = parse_spec("dataset: {source: iris}\nnetwork: {layers: [8]}\n"
                   "hardware: {clock_mhz: {icebreaker: 24, ulx3s-85f: 75}}\nboard: ulx3s-85f\n")
    assert (s.hardware.clock_for("ulx3s-85f"), s.hardware.clock_for("icebreaker")) == (75.0, 24.0)
    s = parse_spec("dataset: {source: iris}\nnetwork: {layers: [8]}\nhardware: {clock_mhz: {ulx3s-85f: 50}}\n")
    assert s.hardware.clock_for("icebreaker") == "max"         # boards without an entry: the default
    s = parse_spec("dataset: {source: iris}\nnetwork: {layers: [8]}\nhardware: {clock_mhz: 30}\n")
    assert s.hardware.clock_for("ulx3s-85f") == s.hardware.clock_for("icebreaker") == 30.0
    with pytest.raises(SpecError, match=r"<string>:3: hardware.clock_mhz.de10: unknown key, expected one of: icebreaker, ulx3s-85f"):
        parse_spec("dataset: {source: iris}\nnetwork: {layers: [8]}\nhardware: {clock_mhz: {de10: 50}}\n")
    with pytest.raises(SpecError, match=r"<string>:3: hardware.clock_mhz.icebreaker: expected a number of MHz in "
                                        r"\[1.0, 500.0\] or max, got 'fast'$"):
        parse_spec("dataset: {source: iris}\nnetwork: {layers: [8]}\nhardware: {clock_mhz: {icebreaker: fast}}\n")


def test_clock_max():
    """``clock_mhz: max`` (the default), alone or per board, beside numbers; bad values named."""
    base = "dataset: {source: iris}\nnetwork: {layers: [8]}\n"
    s = parse_spec(base)
    assert s.hardware.clock_for("icebreaker") == s.hardware.clock_for("ulx3s-85f") == "max"
    assert s.hardware.fixed_clock_for("icebreaker") is None
    s = parse_spec(base + "hardware: {clock_mhz: max}\n")
    assert s.hardware.clock_mhz == "max" and s.hardware.fixed_clock_for("ulx3s-85f") is None
    s = parse_spec(base + "hardware: {clock_mhz: {icebreaker: max, ulx3s-85f: 70}}\n")
    assert (s.hardware.clock_for("icebreaker"), s.hardware.clock_for("ulx3s-85f")) == ("max", 70.0)
    assert s.hardware.fixed_clock_for("ulx3s-85f") == 70.0
    s = parse_spec(base + "hardware: {clock_mhz: 30}\n")
    assert s.hardware.fixed_clock_for("icebreaker") == 30.0
    for bad, shown in (("MAX", "'MAX'"), ("maximum", "'maximum'"), ("0.5", "0.5"), ("501", "501"),
                       (".inf", "inf"), ("true", "true"), ("[max]", "a list"), ("null", "nothing")):
        with pytest.raises(SpecError, match=r"^<string>:3: hardware.clock_mhz: expected a number of MHz in "
                                            r"\[1.0, 500.0\] or max, got " + re.escape(shown) + "$"):
            parse_spec(base + f"hardware: {{clock_mhz: {bad}}}\n")
    with pytest.raises(SpecError, match=r"hardware.clock_mhz: expected a number of MHz in \[1.0, 500.0\] or max "
                                        r"or a mapping of board to either, got an empty mapping"):
        parse_spec(base + "hardware: {clock_mhz: {}}\n")


@pytest.mark.parametrize("weight", ["Q3.9", "Q4.10", "Q5.11", "Q3.13"])
def test_formats_left_out_follow_the_weight(weight):
    """Only ``precision.weight`` written: the bias and the table (which hold weights) follow it, so
    nothing is refused for a key the user did not write."""
    s = parse_spec(f"dataset: {{source: iris}}\nprecision: {{weight: {weight}}}\n")
    p = s.layers[0].precision
    assert str(p.weight) == str(p.bias) == str(s.precision.table) == weight
    # a layer's own weight takes the bias along when the inherited one would not fit it
    s = parse_spec(f"dataset: {{source: iris}}\nnetwork: {{layers: [4, {{units: 3, precision: {{weight: {weight}}}}}]}}\n"
                   "precision: {weight: Q2.14, bias: Q2.14}\n")
    assert str(s.layers[1].precision.bias) == weight and str(s.layers[0].precision.bias) == "Q2.14"
