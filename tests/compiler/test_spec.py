"""The network file: every key, the defaults, and a corpus of malformed files with their exact
one-line errors."""

import subprocess
import sys
from pathlib import Path

import pytest

from sigprop_fpga.compiler.spec import QFormat, SpecError, load_spec, parse_qformat, parse_spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# name: (file text, the exact message)
MALFORMED = {
    "empty": ('',
        'net.yaml: expected a network description, the file is empty'),
    "not_mapping": ('- 1\n- 2\n',
        'net.yaml:1: <top>: expected a mapping, got a list'),
    "unknown_top": ('dataset: {source: digits}\nmodel: 3\n',
        'net.yaml:2: model: unknown key, expected one of: name, dataset, network, learning, precision, hardware, board'),
    "missing_dataset": ('name: x\n',
        'net.yaml:1: dataset: required key is missing (expected a mapping with source)'),
    "missing_source": ('dataset:\n  seed: 1\n',
        'net.yaml:2: dataset.source: required key is missing (expected digits, iris, wine, breast_cancer or a path to an .npz file)'),
    "bad_source": ('dataset:\n  source: mnist\n',
        "net.yaml:2: dataset.source: expected digits, iris, wine, breast_cancer or a path ending in .npz, got 'mnist'"),
    "npz_missing": ('dataset:\n  source: nothere.npz\n',
        'net.yaml:2: dataset.source: expected an existing .npz file, {base}/nothere.npz not found'),
    "test_fraction": ('dataset:\n  source: digits\n  test_fraction: 1.5\n',
        'net.yaml:3: dataset.test_fraction: expected a number in (0.0, 1.0), got 1.5'),
    "layers_empty": ('dataset: {source: digits}\nnetwork:\n  layers: []\n',
        'net.yaml:3: network.layers: expected a non-empty list of hidden widths, got an empty list'),
    "layers_negative": ('dataset: {source: digits}\nnetwork:\n  layers: [32, -3]\n',
        'net.yaml:3: network.layers[1]: expected a positive integer width of at most 4096, got -3'),
    "layers_zero": ('dataset: {source: digits}\nnetwork:\n  layers: [0]\n',
        'net.yaml:3: network.layers[0]: expected a positive integer width of at most 4096, got 0'),
    "layers_float": ('dataset: {source: digits}\nnetwork:\n  layers: [12.5]\n',
        'net.yaml:3: network.layers[0]: expected a positive integer width of at most 4096, got 12.5'),
    "layer_unknown_key": ('dataset: {source: digits}\nnetwork:\n  layers:\n    - {units: 8, width: 3}\n',
        'net.yaml:4: network.layers[0].width: unknown key, expected one of: units, activation, precision, lanes'),
    "layer_no_units": ('dataset: {source: digits}\nnetwork:\n  layers:\n    - {lanes: 2}\n',
        'net.yaml:4: network.layers[0].units: required key is missing (expected a positive integer)'),
    "activation": ('dataset: {source: digits}\nnetwork:\n  activation: relu\n',
        "net.yaml:3: network.activation: expected one of hardtanh, got 'relu'"),
    "readout": ('dataset: {source: digits}\nnetwork:\n  readout: argmax\n',
        "net.yaml:3: network.readout: expected one of nearest_target, head, got 'argmax'"),
    "loss": ('dataset: {source: digits}\nlearning:\n  loss: mse\n',
        "net.yaml:3: learning.loss: expected one of class_ce, l2, got 'mse'"),
    "lr_shift_neg": ('dataset: {source: digits}\nlearning:\n  lr_shift: -1\n',
        'net.yaml:3: learning.lr_shift: expected an integer from 0 to 16, got -1'),
    "lr_shift_str": ('dataset: {source: digits}\nlearning:\n  lr_shift: fast\n',
        "net.yaml:3: learning.lr_shift: expected an integer from 0 to 16, got 'fast'"),
    "epochs_bool": ('dataset: {source: digits}\nlearning:\n  epochs: yes\n',
        'net.yaml:3: learning.epochs: expected an integer from 1 to 10000, got true'),
    "qformat_bad": ('dataset: {source: digits}\nprecision:\n  weight: Q4\n',
        "net.yaml:3: precision.weight: expected a signed fixed-point format like Q4.12, got 'Q4'"),
    "qformat_wide": ('dataset: {source: digits}\nprecision:\n  weight: Q20.20\n',
        'net.yaml:3: precision.weight: expected a total width of 2 to 32 bits, Q20.20 has 40'),
    "qformat_zero_int": ('dataset: {source: digits}\nprecision:\n  input: Q0.8\n',
        'net.yaml:3: precision.input: expected at least 1 integer bit (the sign) in Q0.8'),
    "activation_q": ('dataset: {source: digits}\nprecision:\n  activation: Q2.6\n',
        'net.yaml:3: precision.activation: expected a Q1.x format (hard-tanh output spans [-1, 1)), got Q2.6'),
    "rounding": ('dataset: {source: digits}\nprecision:\n  rounding: up\n',
        "net.yaml:3: precision.rounding: expected one of nearest, stochastic, got 'up'"),
    "lanes_list_len": ('dataset: {source: digits}\nnetwork: {layers: [8, 8]}\nhardware:\n  lanes: [1, 2, 3]\n',
        'net.yaml:4: hardware.lanes: expected one lane count per hidden layer (2), got 3'),
    "lanes_zero": ('dataset: {source: digits}\nhardware:\n  lanes: 0\n',
        'net.yaml:3: hardware.lanes: expected an integer from 1 to 1024, got 0'),
    "board": ('dataset: {source: digits}\nboard: arty\n',
        "net.yaml:2: board: expected one of icebreaker, ulx3s-85f, got 'arty'"),
    "duplicate_key": ('dataset: {source: digits}\ndataset: {source: iris}\n',
        'net.yaml:2: dataset: duplicate key'),
    "yaml_syntax": ('dataset: {source: digits\nnetwork: [\n',
        "net.yaml:2: expected valid YAML, expected ',' or '}', but got ':'"),
    "alias_bomb": ('a: &a [1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n',
        'net.yaml:1: b[0]: YAML aliases are not allowed in a network file'),
    "merge_key": ('base: &b {source: digits}\ndataset:\n  <<: *b\n',
        'net.yaml:3: dataset: YAML merge keys (<<) are not allowed'),
    "name_bad": ('name: 3digits\ndataset: {source: digits}\n',
        "net.yaml:1: name: expected an identifier (letters, digits, _ or -; at most 64; not starting with a digit), got '3digits'"),
    "clock": ('dataset: {source: digits}\nhardware:\n  clock_mhz: 0\n',
        'net.yaml:3: hardware.clock_mhz: expected a number in [1.0, 500.0], got 0'),
    "bias_frac": ('dataset: {source: digits}\nprecision:\n  bias: Q2.14\n',
        'net.yaml:3: precision.bias: expected at most as many fraction bits as the weight (Q4.12), got Q2.14'),
    "error_int": ('dataset: {source: digits}\nprecision:\n  error: Q1.15\n',
        'net.yaml:3: precision.error: expected at least 2 integer bits (errors span [-2, 2]), got Q1.15'),
    "layer_precision_unknown": ('dataset: {source: digits}\nnetwork:\n  layers:\n    - {units: 8, precision: {weights: Q4.12}}\n',
        'net.yaml:4: network.layers[0].precision.weights: unknown key, expected one of: activation, weight, bias, error, accumulator'),
    "accumulator": ('dataset: {source: digits}\nprecision:\n  accumulator: huge\n',
        "net.yaml:3: precision.accumulator: expected auto, a width in bits from 8 to 64, or a Q format, got 'huge'"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_message(name, tmp_path):
    text, message = MALFORMED[name]
    with pytest.raises(SpecError) as err:
        parse_spec(text, "net.yaml", tmp_path)
    assert str(err.value) == message.replace("{base}", str(tmp_path))
    assert "\n" not in str(err.value)


def test_non_utf8_and_nul(tmp_path):
    with pytest.raises(SpecError, match=r"^net.yaml:2: expected UTF-8 text, got byte 0xe9$"):
        parse_spec(b"dataset: {source: digits}\nname: caf\xe9\n", "net.yaml")
    with pytest.raises(SpecError, match=r"^net.yaml:1: expected text, got a NUL byte$"):
        parse_spec(b"dataset:\x00", "net.yaml")


def test_file_errors(tmp_path):
    with pytest.raises(SpecError, match="expected an existing network file, not found"):
        load_spec(tmp_path / "missing.yaml")
    with pytest.raises(SpecError, match="expected a network file, got a directory"):
        load_spec(tmp_path)
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (2 << 20))
    with pytest.raises(SpecError, match="at most 1048576 bytes"):
        load_spec(big)


def test_defaults():
    s = parse_spec("dataset: {source: iris}\n")
    assert s.name == "network" and s.board == "icebreaker" and s.readout == "nearest_target"
    assert s.widths == (32, 32)
    L = s.learning
    assert (L.rule, L.loss, L.lr_shift, L.logit_shift, L.push, L.epochs, L.seed) == ("sigprop", "class_ce", 6, 2, True, 20, 0)
    p = s.layers[0].precision
    assert (str(p.activation), str(p.weight), str(p.bias), str(p.error), p.accumulator) == ("Q1.7", "Q4.12", "Q4.12", "Q2.14", None)
    assert str(s.precision.input) == "Q1.7" and str(s.precision.table) == "Q4.12" and s.precision.rounding == "nearest"
    assert (s.hardware.lanes, s.hardware.dsp_budget, s.hardware.clock_mhz) == ("auto", 8, 24.0)
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


def test_cli_bad_file_one_line_exit_2(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("dataset: {source: digits}\nnetwork:\n  layers: [32, -3]\n")
    r = subprocess.run([sys.executable, "-m", "sigprop_fpga", "check", str(f)], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr == f"sigprop-fpga check: {f}:3: network.layers[1]: expected a positive integer width of at most 4096, got -3\n"
    assert "Traceback" not in r.stderr and r.stdout == ""


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_through_cli(name, tmp_path, capsys):
    from sigprop_fpga.cli import main

    text, message = MALFORMED[name]
    f = tmp_path / "net.yaml"
    f.write_text(text)
    assert main(["check", str(f)]) == 2
    err = capsys.readouterr().err
    expected = message.replace("{base}", str(tmp_path)).replace("net.yaml", str(f), 1)
    assert err == f"sigprop-fpga check: {expected}\n"
