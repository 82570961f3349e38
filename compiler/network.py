"""The resolved network: the spec plus what the data fixes (input width, classes), and the
seeded initial parameters every engine starts from."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .spec import LayerPrecision, NetworkSpec, QFormat, SpecError

__all__ = ["Network", "init_params", "check_network", "quantize_inputs", "quantize_params", "lfsr_seed"]


@dataclass(frozen=True)
class Network:
    """A spec bound to its data: ``n_inputs`` and ``n_classes`` come from the dataset."""

    spec: NetworkSpec
    n_inputs: int
    n_classes: int
    #: Mean squared norm of a training input, ``E ||x||^2`` in real units (the data decides it;
    #: ``None``: ``n_inputs / 4``, inputs spread over [-1, 1]). Sets layer 0's ``lr_shift: auto``.
    input_power: float | None = None

    @property
    def depth(self) -> int:
        return len(self.spec.layers)

    def fan_in(self, l: int) -> int:
        return self.n_inputs if l == 0 else self.spec.layers[l - 1].units

    def units(self, l: int) -> int:
        return self.spec.layers[l].units

    def prec(self, l: int) -> LayerPrecision:
        return self.spec.layers[l].precision

    def lr_shift(self, l: int) -> int:
        """Layer ``l``'s step ``eta_l = 2^-lr_shift``: its own ``lr_shift``, else the network's,
        else (``auto``) :meth:`auto_lr_shift`."""
        own = self.spec.layers[l].lr_shift
        if own is not None:
            return own
        s = self.spec.learning.lr_shift
        return self.auto_lr_shift(l) if s == "auto" else s

    def auto_lr_shift(self, l: int) -> int:
        """``round(log2(E ||x_l||^2))``, clamped to 0..16: the step follows the squared norm of
        the layer's input (normalized LMS), so a layer's outputs move about as far per sample
        whatever its width and scaling. Layer 0 takes the data's :attr:`input_power`; a hidden
        layer's input is a hard-tanh vector whose entries sit mostly at the rails, ``||h||^2``
        about its width. Measured (bench/tune_defaults.py, float and golden): digits (64 inputs,
        6 and 5), the 784-input digits28 (9 and 8), iris, wine, breast cancer."""
        if l == 0:
            power = self.input_power if self.input_power is not None else self.n_inputs / 4
        else:
            power = self.fan_in(l)
        return int(min(16, max(0, round(math.log2(max(power, 1.0))))))

    def in_format(self, l: int) -> QFormat:
        """Format of layer ``l``'s input (the data for layer 0, else the previous activation)."""
        return self.spec.precision.input if l == 0 else self.prec(l - 1).activation

    def acc_width(self, l: int) -> int:
        """Accumulator width: the spec's, or auto (no dot product of this layer can overflow).

        A dot product of ``n`` terms of ``w``-bit weights and ``a``-bit inputs plus a bias
        aligned to it needs ``w + a`` bits per product and ``ceil(log2(n + 1))`` guard bits
        (the bias counts as one more term after alignment).
        """
        p = self.prec(l)
        auto = self.auto_acc_width(l)
        return auto if p.accumulator is None else max(p.accumulator, auto)

    def auto_acc_width(self, l: int) -> int:
        p = self.prec(l)
        n = self.fan_in(l) + 1
        return p.weight.width + self.in_format(l).width + max(1, (n - 1).bit_length())


def check_network(net: Network) -> None:
    """What only the data can decide: an explicit accumulator must not be narrower than a dot
    product of its layer needs (the datapath never lets a dot product overflow)."""
    for l in range(net.depth):
        acc = net.prec(l).accumulator
        if acc is not None and acc < net.auto_acc_width(l):
            raise SpecError(net.spec.file, None, f"layer {l} accumulator",
                            f"expected at least {net.auto_acc_width(l)} bits for {net.fan_in(l)} inputs "
                            f"({net.prec(l).weight} weights x {net.in_format(l)} inputs), got {acc}; use auto")


def init_params(net: Network) -> dict:
    """Seeded float initial parameters: ``W_l`` uniform in ``±1/sqrt(fan_in)``, zero biases, the
    target table ``R`` uniform in ``[-1, 1)``, and (readout ``head``) a zero head."""
    rng = np.random.default_rng(net.spec.learning.seed)
    layers = []
    for l in range(net.depth):
        n_in, n = net.fan_in(l), net.units(l)
        bound = 1.0 / np.sqrt(n_in)
        layers.append({"W": rng.uniform(-bound, bound, size=(n, n_in)), "b": np.zeros(n)})
    R = rng.uniform(-1.0, 1.0, size=(net.n_classes, net.units(0)))
    head = None
    if net.spec.readout == "head":
        n_last = net.units(net.depth - 1)
        head = {"W": np.zeros((net.n_classes, n_last)), "b": np.zeros(net.n_classes)}
    return {"layers": layers, "R": R, "head": head}


def quantize_inputs(x: np.ndarray, q: QFormat) -> np.ndarray:
    """Round a float array to ``q`` (nearest, ties to even) with saturation; returns int64."""
    v = np.rint(np.asarray(x, dtype=np.float64) * q.scale)
    return np.clip(v, q.min_int, q.max_int).astype(np.int64)


def lfsr_seed(base: int, unit: int) -> int:
    """The LFSR seed of layer ``unit`` (the head is unit ``depth``); never zero."""
    s = (base ^ (0x9E3779B9 * (unit + 1))) & 0xFFFFFFFF
    return s or 1


def quantize_params(net: Network, params: dict) -> dict:
    """Round float parameters to their formats (nearest, saturate)."""
    out = {"layers": []}
    for l, layer in enumerate(params["layers"]):
        p = net.prec(l)
        out["layers"].append({"W": quantize_inputs(layer["W"], p.weight), "b": quantize_inputs(layer["b"], p.bias)})
    out["R"] = quantize_inputs(params["R"], net.spec.precision.table)
    if params["head"] is not None:
        p = net.prec(net.depth - 1)
        out["head"] = {"W": quantize_inputs(params["head"]["W"], p.weight),
                       "b": quantize_inputs(params["head"]["b"], p.bias)}
    else:
        out["head"] = None
    return out
