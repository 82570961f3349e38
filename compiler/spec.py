"""The network file: YAML in, a validated, typed :class:`NetworkSpec` out.

Every error is a :class:`SpecError` whose message is one line naming the file, the line, the key
and what was expected, e.g.::

    examples/bad.yaml:7: network.layers[1].units: expected a positive integer, got -3

The loader walks PyYAML's node tree (not the constructed objects) so that every value keeps its
line. Aliases are refused (they are never needed in a network file and are the vector of YAML
"billion laughs" bombs); so are unknown keys, duplicate keys and non-UTF-8 files.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "SpecError", "QFormat", "LayerPrecision", "LayerSpec", "DatasetSpec", "LearningSpec",
    "PrecisionSpec", "HardwareSpec", "NetworkSpec", "load_spec", "parse_spec", "parse_qformat",
    "BUILTIN_DATASETS", "BOARDS", "MAX_CLOCK",
]

BUILTIN_DATASETS = ("digits", "iris", "wine", "breast_cancer")
BOARDS = ("icebreaker", "ulx3s-85f")
ACTIVATIONS = ("hardtanh",)
READOUTS = ("nearest_target", "head")
LOSSES = ("class_ce", "l2")
RULES = ("sigprop",)
ROUNDINGS = ("nearest", "stochastic")
SCALINGS = ("minmax", "minmax01", "unit")
MAX_FILE_BYTES = 1 << 20
MAX_UNITS = 4096
MAX_LAYERS = 16
MAX_DEPTH = 16
#: ``hardware.clock_mhz: max``: the highest clock the board meets timing at, found by building.
MAX_CLOCK = "max"
CLOCK_EXPECTED = "a number of MHz in [1.0, 500.0] or max"


class SpecError(ValueError):
    """A bad network file. ``str(err)`` is the one-line message for the user."""

    def __init__(self, file: str, line: int | None, key: str, expected: str):
        expected = " ".join(str(expected).split())   # always one line
        self.file, self.line, self.key, self.expected = file, line, key, expected
        where = f"{file}:{line}" if line is not None else file
        super().__init__(f"{where}: {key}: {expected}" if key else f"{where}: {expected}")


# ---------------------------------------------------------------------------------------------
# Fixed-point formats


@dataclass(frozen=True)
class QFormat:
    """A signed two's complement fixed-point format ``Q<int>.<frac>``.

    ``int_bits`` counts the sign bit, so ``Q1.7`` is 8 bits wide and spans ``[-1, 1 - 2^-7]``
    and ``Q4.12`` is 16 bits wide and spans ``[-8, 8 - 2^-12]``.
    """

    int_bits: int
    frac_bits: int

    def __post_init__(self):
        if not isinstance(self.int_bits, int) or not isinstance(self.frac_bits, int):
            raise TypeError("QFormat bits must be integers")
        if self.int_bits < 1:
            raise ValueError(f"Q{self.int_bits}.{self.frac_bits}: at least the sign bit is needed")
        if self.frac_bits < 0:
            raise ValueError(f"Q{self.int_bits}.{self.frac_bits}: negative fraction bits")
        if self.width > 32:
            raise ValueError(f"Q{self.int_bits}.{self.frac_bits}: wider than 32 bits")

    @property
    def width(self) -> int:
        return self.int_bits + self.frac_bits

    @property
    def min_int(self) -> int:
        return -(1 << (self.width - 1))

    @property
    def max_int(self) -> int:
        return (1 << (self.width - 1)) - 1

    @property
    def scale(self) -> float:
        return float(1 << self.frac_bits)

    def __str__(self) -> str:
        return f"Q{self.int_bits}.{self.frac_bits}"


_Q_RE = re.compile(r"^Q(\d{1,2})\.(\d{1,2})$")


def parse_qformat(text: Any) -> QFormat:
    """Parse ``"Q4.12"``; raise ``ValueError`` with what was expected."""
    if not isinstance(text, str) or not _Q_RE.match(text):
        raise ValueError(f"expected a signed fixed-point format like Q4.12, got {text!r}")
    m = _Q_RE.match(text)
    i, f = int(m.group(1)), int(m.group(2))
    if i < 1:
        raise ValueError(f"expected at least 1 integer bit (the sign) in {text}")
    if i + f < 2 or i + f > 32:
        raise ValueError(f"expected a total width of 2 to 32 bits, {text} has {i + f}")
    return QFormat(i, f)


# ---------------------------------------------------------------------------------------------
# The typed spec


@dataclass(frozen=True)
class DatasetSpec:
    source: str                 # a built-in name, or "npz"
    path: Path | None           # resolved .npz path for source == "npz"
    test_fraction: float = 0.3
    seed: int = 0
    scaling: str = "minmax"     # built-ins: per-feature min-max of the training split to [-1, 1]


@dataclass(frozen=True)
class LayerPrecision:
    """The formats one layer's datapath narrows to.

    ``accumulator`` is the width of the dot-product accumulator in bits, or ``None`` for auto
    (wide enough that no dot product of this layer can overflow).
    """

    activation: QFormat
    weight: QFormat
    bias: QFormat
    error: QFormat
    accumulator: int | None


@dataclass(frozen=True)
class LayerSpec:
    units: int
    activation: str
    precision: LayerPrecision
    lanes: int | None           # None: allocated by the compiler
    lr_shift: int | None = None  # None: learning.lr_shift


@dataclass(frozen=True)
class LearningSpec:
    rule: str = "sigprop"
    loss: str = "class_ce"
    lr_shift: int | str = "auto"    # "auto": per layer, from its input's norm (Network.lr_shift)
    logit_shift: int = 2
    push: bool = True
    epochs: int = 20
    seed: int = 0


@dataclass(frozen=True)
class PrecisionSpec:
    input: QFormat
    table: QFormat              # the first-layer target table R
    rounding: str
    lfsr_seed: int


@dataclass(frozen=True)
class HardwareSpec:
    lanes: Any = "auto"         # "auto" | int | tuple of ints (one per layer)
    dsp_budget: int = 8
    # the sync clock (MHz), on every board without an entry in board_clocks; "max": the highest
    # the board's PLL makes at which timing is met (boards/clocksearch.py), found by building
    clock_mhz: float | str = MAX_CLOCK
    board_clocks: tuple[tuple[str, float | str], ...] = ()   # (board, MHz or "max"): ``clock_mhz: {board: MHz}``

    def clock_for(self, board: str) -> float | str:
        """The ``sync`` clock (MHz) the network runs at on ``board``, or ``"max"``."""
        return dict(self.board_clocks).get(board, self.clock_mhz)

    def fixed_clock_for(self, board: str) -> float | None:
        """The ``sync`` clock (MHz) on ``board`` when the file fixes it; ``None`` for ``max``
        (known only after the build, from its report)."""
        clock = self.clock_for(board)
        return None if clock == MAX_CLOCK else float(clock)


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    file: str
    dataset: DatasetSpec
    layers: tuple[LayerSpec, ...]
    readout: str
    learning: LearningSpec
    precision: PrecisionSpec
    hardware: HardwareSpec
    board: str

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(layer.units for layer in self.layers)

    def with_epochs(self, epochs: int) -> "NetworkSpec":
        return replace(self, learning=replace(self.learning, epochs=epochs))


DEFAULT_PRECISION = {
    "input": "Q1.7",
    "activation": "Q1.7",
    "weight": "Q4.12",
    "bias": "Q4.12",
    "table": "Q4.12",
    "error": "Q2.14",
    "accumulator": "auto",
    "rounding": "nearest",
    "lfsr_seed": 0xACE1,
}


# ---------------------------------------------------------------------------------------------
# YAML nodes with lines


@dataclass
class _Node:
    value: Any                  # dict[str, _Node] | list[_Node] | scalar
    line: int                   # 1-based
    keys: dict = field(default_factory=dict)   # mapping: key -> line of the key


_YAML_TAG = "tag:yaml.org,2002:"
_PLAIN_TAGS = {_YAML_TAG + t for t in ("null", "bool", "int", "float", "str")}
# scalars PyYAML would turn into dates or special markers: kept as the text that was written
_TEXT_TAGS = {_YAML_TAG + t for t in ("timestamp", "merge", "value")}
_COLLECTION_TAGS = {yaml.MappingNode: _YAML_TAG + "map", yaml.SequenceNode: _YAML_TAG + "seq"}


def _tag_name(tag: str) -> str:
    return "!!" + tag[len(_YAML_TAG):] if tag.startswith(_YAML_TAG) else tag


class _TooDeep(Exception):
    def __init__(self, line: int):
        self.line = line


class _AliasNode(yaml.Node):
    """Where an alias was used (PyYAML would hand back the anchored node itself, and its line)."""

    id = "alias"


class _Composer(yaml.SafeLoader):
    """PyYAML composes nodes recursively: stop long before Python's recursion limit. Aliases
    are kept as :class:`_AliasNode` so that the error names the alias's line, not the anchor's."""

    _depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            event = self.peek_event()
            if self._depth > 4 * MAX_DEPTH:
                raise _TooDeep(event.start_mark.line + 1)
            node = super().compose_node(parent, index)
            if isinstance(event, yaml.AliasEvent):
                return _AliasNode(node.tag, node, event.start_mark, event.end_mark)
            return node
        finally:
            self._depth -= 1


class _Reader:
    def __init__(self, file: str):
        self.file = file

    def fail(self, line, key, expected) -> SpecError:
        return SpecError(self.file, line, key, expected)

    def load(self, text: str) -> _Node:
        try:
            return self._load(text)
        except RecursionError:
            raise self.fail(None, "", f"expected at most {MAX_DEPTH} levels of nesting") from None

    def _load(self, text: str) -> _Node:
        try:
            node = yaml.compose(text, Loader=_Composer)
        except _TooDeep as e:
            raise self.fail(e.line, "", f"expected at most {MAX_DEPTH} levels of nesting") from None
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            line = mark.line + 1 if mark is not None else None
            problem = (e.problem or e.context or "malformed YAML").strip()
            if e.context and e.context.startswith("expected ") and e.problem:
                # the composer: "expected a single document in the stream", "but found another document"
                raise self.fail(line, "", f"{e.context}, {e.problem.removeprefix('but ')}") from None
            raise self.fail(line, "", f"expected valid YAML, {problem}") from None
        except yaml.reader.ReaderError as e:
            line = text[: e.position].count("\n") + 1
            char = e.character if isinstance(e.character, int) else ord(e.character)
            raise self.fail(line, "", f"expected printable text, got the control character 0x{char:02x}") from None
        except yaml.YAMLError as e:
            raise self.fail(None, "", f"expected valid YAML ({type(e).__name__})") from None
        if node is None:
            raise self.fail(None, "", "expected a network description, the file is empty")
        return self._convert(node, set(), "", 0)

    def _convert(self, node, seen: set, path: str, depth: int) -> _Node:
        line = node.start_mark.line + 1
        if depth > MAX_DEPTH:
            raise self.fail(line, path, f"expected at most {MAX_DEPTH} levels of nesting")
        if isinstance(node, _AliasNode) or id(node) in seen:
            raise self.fail(line, path or "<top>", "YAML aliases are not allowed in a network file")
        seen.add(id(node))
        if node.tag not in _PLAIN_TAGS | _TEXT_TAGS and node.tag != _COLLECTION_TAGS.get(type(node)):
            raise self.fail(line, path or "<top>", f"YAML tags are not allowed in a network file, got {_tag_name(node.tag)}")
        if isinstance(node, yaml.MappingNode):
            out, keys = {}, {}
            for k, v in node.value:
                kline = k.start_mark.line + 1
                if isinstance(k, _AliasNode):
                    raise self.fail(kline, path or "<top>", "YAML aliases are not allowed in a network file")
                if not isinstance(k, yaml.ScalarNode) or k.tag != "tag:yaml.org,2002:str":
                    if isinstance(k, yaml.ScalarNode) and k.tag == "tag:yaml.org,2002:merge":
                        raise self.fail(kline, path or "<top>", "YAML merge keys (<<) are not allowed")
                    raise self.fail(kline, path or "<top>", "expected string keys")
                name = k.value
                sub = f"{path}.{name}" if path else name
                if name in out:
                    raise self.fail(kline, sub, "duplicate key")
                out[name] = self._convert(v, seen, sub, depth + 1)
                keys[name] = kline
            return _Node(out, line, keys)
        if isinstance(node, yaml.SequenceNode):
            return _Node([self._convert(v, seen, f"{path}[{i}]", depth + 1) for i, v in enumerate(node.value)], line)
        if node.tag in _TEXT_TAGS:
            return _Node(node.value, line)
        try:
            value = yaml.SafeLoader(" ").construct_object(node)  # type: ignore[arg-type]
        except yaml.YAMLError:
            raise self.fail(line, path, f"expected a plain value, got {node.value!r}") from None
        return _Node(value, line)


def _type_name(v: Any) -> str:
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, list):
        return "a list"
    if v is None:
        return "nothing"
    if isinstance(v, bool):
        return f"{str(v).lower()}"
    text = repr(v)
    if len(text) > 80:      # a whole line of the file is no help in a one-line message
        text = f"{text[:60]}... ({len(v) if isinstance(v, (str, bytes)) else len(text)} characters)"
    return text


class _Validator:
    def __init__(self, reader: _Reader, base_dir: Path):
        self.r = reader
        self.base = base_dir

    # -- helpers --
    def mapping(self, node: _Node, path: str, allowed: tuple[str, ...]) -> dict[str, _Node]:
        if not isinstance(node.value, dict):
            raise self.r.fail(node.line, path or "<top>", f"expected a mapping, got {_type_name(node.value)}")
        for k in node.value:
            if k not in allowed:
                raise self.r.fail(node.keys[k], f"{path}.{k}" if path else k,
                                  f"unknown key, expected one of: {', '.join(allowed)}")
        return node.value

    def integer(self, node: _Node, path: str, lo: int, hi: int) -> int:
        v = node.value
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise self.r.fail(node.line, path, f"expected an integer from {lo} to {hi}, got {_type_name(v)}")
        return v

    def number(self, node: _Node, path: str, lo: float, hi: float, open_lo=False, open_hi=False) -> float:
        v = node.value
        ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
        if ok:
            ok = (v > lo if open_lo else v >= lo) and (v < hi if open_hi else v <= hi)
        if not ok:
            lb, hb = ("(" if open_lo else "["), (")" if open_hi else "]")
            raise self.r.fail(node.line, path, f"expected a number in {lb}{lo}, {hi}{hb}, got {_type_name(v)}")
        return float(v)

    def choice(self, node: _Node, path: str, options: tuple[str, ...]) -> str:
        if not isinstance(node.value, str) or node.value not in options:
            raise self.r.fail(node.line, path, f"expected one of {', '.join(options)}, got {_type_name(node.value)}")
        return node.value

    def boolean(self, node: _Node, path: str) -> bool:
        if not isinstance(node.value, bool):
            raise self.r.fail(node.line, path, f"expected true or false, got {_type_name(node.value)}")
        return node.value

    def qformat(self, node: _Node, path: str) -> QFormat:
        try:
            return parse_qformat(node.value)
        except ValueError as e:
            raise self.r.fail(node.line, path, str(e)) from None

    # -- sections --
    def spec(self, root: _Node) -> NetworkSpec:
        top = self.mapping(root, "", ("name", "dataset", "network", "learning", "precision", "hardware", "board"))
        if "dataset" not in top:
            raise self.r.fail(root.line, "dataset", "required key is missing (expected a mapping with source)")
        name = "network"
        if "name" in top:
            n = top["name"]
            if not isinstance(n.value, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]{0,63}", n.value):
                raise self.r.fail(n.line, "name", "expected an identifier (letters, digits, _ or -; "
                                  f"at most 64; not starting with a digit), got {_type_name(n.value)}")
            name = n.value
        dataset = self.dataset(top["dataset"])
        learning = self.learning(top.get("learning"))
        precision, defaults = self.precision(top.get("precision"))
        net = top.get("network")
        netmap = self.mapping(net, "network", ("layers", "activation", "readout")) if net else {}
        activation = "hardtanh"
        if "activation" in netmap:
            activation = self.choice(netmap["activation"], "network.activation", ACTIVATIONS)
        readout = "nearest_target"
        if "readout" in netmap:
            readout = self.choice(netmap["readout"], "network.readout", READOUTS)
        layers = self.layers(netmap.get("layers"), activation, defaults)
        hardware = self.hardware(top.get("hardware"), len(layers))
        if hardware.lanes != "auto" and isinstance(hardware.lanes, tuple):
            layers = tuple(replace(l, lanes=l.lanes or n) for l, n in zip(layers, hardware.lanes))
        elif isinstance(hardware.lanes, int):
            layers = tuple(replace(l, lanes=l.lanes or hardware.lanes) for l in layers)
        board = "icebreaker"
        if "board" in top:
            board = self.choice(top["board"], "board", BOARDS)
        return NetworkSpec(name, self.r.file, dataset, layers, readout, learning, precision, hardware, board)

    def dataset(self, node: _Node) -> DatasetSpec:
        d = self.mapping(node, "dataset", ("source", "test_fraction", "seed", "scaling"))
        if "source" not in d:
            raise self.r.fail(node.line, "dataset.source", "required key is missing (expected "
                              f"{', '.join(BUILTIN_DATASETS)} or a path to an .npz file)")
        s = d["source"]
        if not isinstance(s.value, str) or not s.value:
            raise self.r.fail(s.line, "dataset.source", f"expected {', '.join(BUILTIN_DATASETS)} "
                              f"or a path to an .npz file, got {_type_name(s.value)}")
        if s.value in BUILTIN_DATASETS:
            source, path = s.value, None
        elif s.value.endswith(".npz"):
            path = Path(s.value)
            if not path.is_absolute():
                path = self.base / path
            if not path.is_file():
                raise self.r.fail(s.line, "dataset.source", f"expected an existing .npz file, {path} not found")
            source = "npz"
        else:
            raise self.r.fail(s.line, "dataset.source", f"expected {', '.join(BUILTIN_DATASETS)} "
                              f"or a path ending in .npz, got {s.value!r}")
        tf = 0.3
        if "test_fraction" in d:
            tf = self.number(d["test_fraction"], "dataset.test_fraction", 0.0, 1.0, True, True)
        seed = self.integer(d["seed"], "dataset.seed", 0, 2**32 - 1) if "seed" in d else 0
        scaling = self.choice(d["scaling"], "dataset.scaling", SCALINGS) if "scaling" in d else "minmax"
        return DatasetSpec(source, path, tf, seed, scaling)

    def learning(self, node: _Node | None) -> LearningSpec:
        if node is None:
            return LearningSpec()
        d = self.mapping(node, "learning", ("rule", "loss", "lr_shift", "logit_shift", "push", "epochs", "seed"))
        kw = {}
        if "rule" in d:
            kw["rule"] = self.choice(d["rule"], "learning.rule", RULES)
        if "loss" in d:
            kw["loss"] = self.choice(d["loss"], "learning.loss", LOSSES)
        if "lr_shift" in d:
            if d["lr_shift"].value == "auto":
                kw["lr_shift"] = "auto"
            elif isinstance(d["lr_shift"].value, str):
                raise self.r.fail(d["lr_shift"].line, "learning.lr_shift",
                                  f"expected auto or an integer from 0 to 16, got {d['lr_shift'].value!r}")
            else:
                kw["lr_shift"] = self.integer(d["lr_shift"], "learning.lr_shift", 0, 16)
        if "logit_shift" in d:
            kw["logit_shift"] = self.integer(d["logit_shift"], "learning.logit_shift", 0, 8)
        if "push" in d:
            kw["push"] = self.boolean(d["push"], "learning.push")
        if "epochs" in d:
            kw["epochs"] = self.integer(d["epochs"], "learning.epochs", 1, 10000)
        if "seed" in d:
            kw["seed"] = self.integer(d["seed"], "learning.seed", 0, 2**32 - 1)
        return LearningSpec(**kw)

    _LAYER_FORMATS = ("activation", "weight", "bias", "error", "accumulator")

    def layer_precision(self, node: _Node, path: str, base: LayerPrecision) -> LayerPrecision:
        d = self.mapping(node, path, self._LAYER_FORMATS)
        kw = {}
        for k in ("activation", "weight", "bias", "error"):
            if k in d:
                kw[k] = self.qformat(d[k], f"{path}.{k}")
        if "weight" in kw and "bias" not in kw and base.bias.frac_bits > kw["weight"].frac_bits:
            kw["bias"] = kw["weight"]       # the inherited bias would not fit the layer's weights
        if "accumulator" in d:
            kw["accumulator"] = self.accumulator(d["accumulator"], f"{path}.accumulator")
        return replace(base, **kw)

    def accumulator(self, node: _Node, path: str) -> int | None:
        v = node.value
        if v == "auto":
            return None
        if isinstance(v, str):
            try:
                q = parse_qformat(v)
            except ValueError:
                q = None
            if q is not None:
                return q.width
        if isinstance(v, int) and not isinstance(v, bool) and 8 <= v <= 64:
            return v
        raise self.r.fail(node.line, path, f"expected auto, a width in bits from 8 to 64, or a Q format, got {_type_name(v)}")

    def precision(self, node: _Node | None) -> tuple[PrecisionSpec, LayerPrecision]:
        d = self.mapping(node, "precision", tuple(DEFAULT_PRECISION)) if node is not None else {}

        def q(key, follows=None):
            """The written format, else the one ``key`` follows when that is written (the bias and
            the table hold weights: they follow the weight), else the default."""
            if key in d:
                return self.qformat(d[key], f"precision.{key}")
            if follows is not None and follows in d:
                return q(follows)
            return parse_qformat(DEFAULT_PRECISION[key])

        acc = self.accumulator(d["accumulator"], "precision.accumulator") if "accumulator" in d else None
        rounding = self.choice(d["rounding"], "precision.rounding", ROUNDINGS) if "rounding" in d else "nearest"
        lfsr_seed = DEFAULT_PRECISION["lfsr_seed"]
        if "lfsr_seed" in d:
            lfsr_seed = self.integer(d["lfsr_seed"], "precision.lfsr_seed", 1, 2**32 - 1)
        layer = LayerPrecision(q("activation"), q("weight"), q("bias", "weight"), q("error"), acc)
        self.check_layer_formats(layer, d, "precision")
        return PrecisionSpec(q("input"), q("table", "weight"), rounding, lfsr_seed), layer

    def check_layer_formats(self, p: LayerPrecision, d: dict, path: str):
        # The datapath relies on these relations; say which key breaks them.
        # any activation format works: hard-tanh clamps to [-1, +1] within it (compiler.rule.activation_range)
        if p.weight.frac_bits < p.activation.frac_bits:
            n = d.get("weight")
            raise self.r.fail(n.line if n else None, f"{path}.weight",
                              f"expected at least as many fraction bits as the activation ({p.activation}), got {p.weight}")
        if p.bias.frac_bits > p.weight.frac_bits:
            n = d.get("bias")
            raise self.r.fail(n.line if n else None, f"{path}.bias",
                              f"expected at most as many fraction bits as the weight ({p.weight}), got {p.bias}")
        if p.error.int_bits < 2:
            n = d.get("error")
            raise self.r.fail(n.line if n else None, f"{path}.error",
                              f"expected at least 2 integer bits (errors span [-2, 2]), got {p.error}")

    def layers(self, node: _Node | None, activation: str, base: LayerPrecision) -> tuple[LayerSpec, ...]:
        if node is None:
            return tuple(LayerSpec(32, activation, base, None) for _ in range(2))
        if not isinstance(node.value, list) or not node.value:
            raise self.r.fail(node.line, "network.layers", f"expected a non-empty list of hidden widths, got {'an empty list' if node.value == [] else _type_name(node.value)}")
        if len(node.value) > MAX_LAYERS:
            raise self.r.fail(node.line, "network.layers", f"expected at most {MAX_LAYERS} hidden layers, got {len(node.value)}")
        out = []
        for i, item in enumerate(node.value):
            path = f"network.layers[{i}]"
            if isinstance(item.value, dict):
                d = self.mapping(item, path, ("units", "activation", "precision", "lanes", "lr_shift"))
                if "units" not in d:
                    raise self.r.fail(item.line, f"{path}.units", "required key is missing (expected a positive integer)")
                units = self.units(d["units"], f"{path}.units")
                act = self.choice(d["activation"], f"{path}.activation", ACTIVATIONS) if "activation" in d else activation
                prec = base
                if "precision" in d:
                    prec = self.layer_precision(d["precision"], f"{path}.precision", base)
                    self.check_layer_formats(prec, d["precision"].value, f"{path}.precision")
                lanes = self.integer(d["lanes"], f"{path}.lanes", 1, 1024) if "lanes" in d else None
                shift = self.integer(d["lr_shift"], f"{path}.lr_shift", 0, 16) if "lr_shift" in d else None
                out.append(LayerSpec(units, act, prec, lanes, shift))
            else:
                out.append(LayerSpec(self.units(item, path), activation, base, None))
        return tuple(out)

    def clock(self, node: _Node, path: str) -> float | str:
        """A clock: a number of MHz in [1, 500], or ``max``."""
        if node.value == MAX_CLOCK:
            return MAX_CLOCK
        v = node.value
        ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) and 1.0 <= v <= 500.0
        if not ok:
            raise self.r.fail(node.line, path, f"expected {CLOCK_EXPECTED}, got {_type_name(v)}")
        return float(v)

    def units(self, node: _Node, path: str) -> int:
        v = node.value
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_UNITS:
            raise self.r.fail(node.line, path, f"expected a positive integer width of at most {MAX_UNITS}, got {_type_name(v)}")
        return v

    def hardware(self, node: _Node | None, n_layers: int) -> HardwareSpec:
        if node is None:
            return HardwareSpec()
        d = self.mapping(node, "hardware", ("lanes", "dsp_budget", "clock_mhz"))
        kw: dict[str, Any] = {}
        if "lanes" in d:
            n = d["lanes"]
            if n.value == "auto":
                kw["lanes"] = "auto"
            elif isinstance(n.value, list):
                if len(n.value) != n_layers:
                    raise self.r.fail(n.line, "hardware.lanes", f"expected one lane count per hidden layer ({n_layers}), got {len(n.value)}")
                kw["lanes"] = tuple(self.integer(x, f"hardware.lanes[{i}]", 1, 1024) for i, x in enumerate(n.value))
            elif isinstance(n.value, int) and not isinstance(n.value, bool):
                kw["lanes"] = self.integer(n, "hardware.lanes", 1, 1024)
            else:
                raise self.r.fail(n.line, "hardware.lanes", f"expected auto, a positive integer or a list per layer, got {_type_name(n.value)}")
        if "dsp_budget" in d:
            kw["dsp_budget"] = self.integer(d["dsp_budget"], "hardware.dsp_budget", 1, 4096)
        if "clock_mhz" in d:
            node = d["clock_mhz"]
            if isinstance(node.value, dict):      # one clock per board: {icebreaker: 24, ulx3s-85f: max}
                clocks = self.mapping(node, "hardware.clock_mhz", BOARDS)
                if not clocks:
                    raise self.r.fail(node.line, "hardware.clock_mhz", f"expected {CLOCK_EXPECTED} or a mapping of board to either, got an empty mapping")
                kw["board_clocks"] = tuple((b, self.clock(v, f"hardware.clock_mhz.{b}")) for b, v in clocks.items())
            else:
                kw["clock_mhz"] = self.clock(node, "hardware.clock_mhz")
        return HardwareSpec(**kw)


def parse_spec(text: str | bytes, file: str = "<string>", base_dir: Path | None = None) -> NetworkSpec:
    """Validate a network description given as text. Raises :class:`SpecError`."""
    reader = _Reader(file)
    if isinstance(text, bytes):
        if len(text) > MAX_FILE_BYTES:
            raise reader.fail(None, "", f"expected a network file of at most {MAX_FILE_BYTES} bytes, got {len(text)}")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            line = text[: e.start].count(b"\n") + 1
            raise reader.fail(line, "", f"expected UTF-8 text, got byte 0x{text[e.start]:02x}") from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise reader.fail(line, "", "expected text, got a NUL byte")
    root = reader.load(text)
    return _Validator(reader, base_dir if base_dir is not None else Path.cwd()).spec(root)


def load_spec(path: str | Path) -> NetworkSpec:
    """Read and validate a network file. Raises :class:`SpecError` (also for unreadable files)."""
    path = Path(path)
    try:
        data = path.read_bytes() if path.stat().st_size <= MAX_FILE_BYTES else None
    except FileNotFoundError:
        raise SpecError(str(path), None, "", "expected an existing network file, not found") from None
    except IsADirectoryError:
        raise SpecError(str(path), None, "", "expected a network file, got a directory") from None
    except OSError as e:
        raise SpecError(str(path), None, "", f"expected a readable file ({e.strerror})") from None
    if data is None:
        raise SpecError(str(path), None, "", f"expected a network file of at most {MAX_FILE_BYTES} bytes")
    return parse_spec(data, str(path), path.resolve().parent)
