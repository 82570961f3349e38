"""The learning rule's vocabulary: the phases of a training sample and the quantities derived from
the network that more than one model or engine needs.

The golden model (:mod:`sigprop_fpga.sim.golden`), both engines (:mod:`sigprop_fpga.hdl.stage`,
:mod:`sigprop_fpga.hdl.serial`) and the estimator (:mod:`.estimate`) take these from here; none
works them out again. Everything is plain Python on a resolved :class:`.network.Network`.

Names follow the golden model: ``prob`` (the softmax), ``err`` (``prob - y``), ``m`` (the hardest
wrong class), ``d_h``, ``d_tc``, ``d_tm`` (the deltas of the h side, the own class's target and
``m``'s target).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from .fixed import LOG2E_Q16, P_FRAC, RECIP_BITS
import numpy as np

from .network import Network, init_params, quantize_inputs
from .spec import QFormat

__all__ = ["Rule", "RULE_NAMES", "feedback_shape", "feedback_shift", "out_shifts", "init_rule_params", "quantize_rule_params", "Phase", "ActivationRange", "activation_range", "StepShifts", "step_shifts", "update_terms", "forward_signals", "uses_softmax",
           "logit_frac", "softmax_fracs", "Q_BITS", "E_BITS", "exp_clamp", "mul_b_bits", "SoftmaxPieces",
           "softmax_pieces"]


class Rule(str, enum.Enum):
    """The learning rules the project models (float and golden) and, where an engine exists, builds.

    ``SIGPROP`` is the forward-only rule of DESIGN.md §2; the others train the same hidden layers
    plus a linear output layer (``C`` classes, one base-2 softmax, cross-entropy) and differ only in
    how the output error reaches a hidden layer ``l``:

    ``BP`` (backprop)
        ``g_l = W_{l+1}^T d_{l+1}`` with the weights as they were before this sample's update.
    ``FA`` (feedback alignment)
        ``g_l = B_l^T d_{l+1}``, ``B_l`` a fixed random sign matrix the shape of ``W_{l+1}``
        scaled by ``2^-feedback_shift``.
    ``DFA`` (direct feedback alignment)
        ``g_l = B_l^T e``, ``e`` the output error and ``B_l`` a fixed random ``C x n_l`` sign
        matrix scaled by ``2^-feedback_shift``.

    Then ``d_l = g_l f'(h_l)`` and ``W_l -= eta_l d_l x_l^T`` for every layer, one sample at a time.
    """

    SIGPROP = "sigprop"
    BP = "bp"
    FA = "fa"
    DFA = "dfa"

    def __str__(self) -> str:
        return self.value


#: The rule names, in the order tables list them.
RULE_NAMES = tuple(r.value for r in Rule)


def feedback_shape(net: Network, rule: Rule | str, l: int) -> tuple[int, int] | None:
    """Shape of hidden layer ``l``'s fixed feedback matrix ``B_l`` (rows: the error it carries):
    ``(C, n_l)`` for DFA, ``(n_{l+1}, n_l)`` for FA (``C`` rows at the last hidden layer), ``None``
    for the rules that have none."""
    rule = Rule(rule)
    if rule == Rule.DFA:
        return (net.n_classes, net.units(l))
    if rule == Rule.FA:
        rows = net.n_classes if l == net.depth - 1 else net.units(l + 1)
        return (rows, net.units(l))
    return None


def feedback_shift(net: Network, l: int) -> int:
    """``k_l``: a feedback entry is ``±2^-k_l``, about the rms of a forward weight drawn uniform
    in ``±1/sqrt(n_l)`` (``1/sqrt(3 n_l)``): ``k_l = round(log2(3 n_l) / 2)``. A sign and a shift:
    the feedback needs one bit per entry and no multiplier."""
    return max(0, round(math.log2(3 * net.units(l)) / 2))


@dataclass(frozen=True)
class OutShifts:
    """Right shifts of the output layer's update (the last hidden layer's formats and
    ``lr_shift``): ``weight`` for ``u = e h_L`` (``fe + fa`` fraction bits), ``bias`` for ``e``."""

    weight: int
    bias: int


def out_shifts(net: Network) -> OutShifts:
    L = net.depth - 1
    p, s = net.prec(L), net.lr_shift(L)
    fe = p.error.frac_bits
    return OutShifts(weight=fe + p.activation.frac_bits - p.weight.frac_bits + s, bias=fe - p.bias.frac_bits + s)


def init_rule_params(net: Network, rule: Rule | str) -> dict:
    """Seeded float initial parameters of ``rule``: the hidden layers of
    :func:`.network.init_params` (the same for every rule, so SigProp and the others start from
    the same weights), then, from ``default_rng((seed, 1))``, the output layer ``W_out`` uniform in
    ``±1/sqrt(n_L)`` (zero bias) and the feedback signs ``S_l`` in ``{-1, +1}`` (int8) for each
    hidden layer in order (:func:`feedback_shape`)."""
    rule = Rule(rule)
    p = init_params(net)
    rng = np.random.default_rng((net.spec.learning.seed, 1))
    n_last = net.units(net.depth - 1)
    bound = 1.0 / math.sqrt(n_last)
    out = {"W": rng.uniform(-bound, bound, size=(net.n_classes, n_last)), "b": np.zeros(net.n_classes)}
    signs = []
    for l in range(net.depth):
        shape = feedback_shape(net, rule, l)
        signs.append(None if shape is None else (1 - 2 * rng.integers(0, 2, size=shape)).astype(np.int8))
    return {"layers": p["layers"], "out": out, "signs": signs}


def quantize_rule_params(net: Network, params: dict) -> dict:
    """:func:`init_rule_params`'s floats rounded to their formats (nearest, saturate): hidden
    layers to their own, the output layer to the last hidden layer's; signs as int64."""
    last = net.prec(net.depth - 1)
    return {"layers": [{"W": quantize_inputs(layer["W"], net.prec(l).weight),
                        "b": quantize_inputs(layer["b"], net.prec(l).bias)} for l, layer in enumerate(params["layers"])],
            "out": {"W": quantize_inputs(params["out"]["W"], last.weight),
                    "b": quantize_inputs(params["out"]["b"], last.bias)},
            "signs": [None if s is None else np.asarray(s, dtype=np.int64) for s in params["signs"]]}


class Phase(str, enum.Enum):
    """The phases of a training sample, in the order a layer walks them.

    The estimator's cycle keys, the engines' FSM states and the benches' phase names are these
    words (a :class:`Phase` compares and hashes equal to its value, so ``cycles["forward"]`` and
    ``cycles[Phase.FORWARD]`` are the same entry).
    """

    #: Accept a sample and finish it.
    OVERHEAD = "overhead"
    #: Serial engine only: switch the lane array to the next layer.
    NEXT_LAYER = "next_layer"
    #: ``h = f(W x + b)`` and ``t = f(W t_in + b)`` (layer 0: ``t = f(R[c])``).
    FORWARD = "forward"
    #: ``s_k = 2^-a h . T[k]`` on the pre-write caches: the readout and ``m``.
    LOGITS = "logits"
    #: ``T[c] <- t`` and ``s_c = t . h``.
    CACHE = "cache"
    #: ``prob = softmax(s)`` in base 2 (:func:`.fixed.softmax_fixed`).
    SOFTMAX = "softmax"
    #: ``g_h = sum_k err_k T[k]``, ``g_tc = err_c h``; the deltas ``d = g f'``.
    GRADIENT = "gradient"
    #: ``W -= (d_h x + d_tc t_in + d_tm Tin[m]) >> s`` (and ``b`` where the engine folds it in).
    UPDATE = "update"
    #: Serial engine only: ``b -= (d_h + d_tc + d_tm) >> s`` as a phase of its own.
    BIAS = "bias"
    #: Layer 0: ``R[c], R[m] -= d >> s``.
    TABLE = "table"
    #: The linear head of ``readout: head``: its logits, softmax and update.
    HEAD = "head"
    #: Serial engine only: the layer's saturation counts added to its counters.
    COMMIT = "commit"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class ActivationRange(QFormat):
    """An activation format with hard-tanh's bounds: ``[-1, +1]`` within the format's range.

    A ``Q1.x`` format holds ``[-1, 1 - 2^-x]``, its own range; a format with more integer bits
    (``Q2.6``) holds ``+1`` exactly and clamps there, not at its own limits. ``min_int`` and
    ``max_int`` are the bounds every narrowing to an activation saturates to, and the derivative
    mask is 1 strictly between them.
    """

    @property
    def min_int(self) -> int:
        return max(-(1 << (self.width - 1)), -(1 << self.frac_bits))

    @property
    def max_int(self) -> int:
        return min((1 << (self.width - 1)) - 1, 1 << self.frac_bits)


def activation_range(q: QFormat) -> QFormat:
    """The bounds hard-tanh clamps an activation of format ``q`` to (:class:`ActivationRange`);
    ``q`` itself for a ``Q1.x`` format, whose range they are."""
    return q if q.int_bits == 1 else ActivationRange(q.int_bits, q.frac_bits)


def forward_signals(l: int) -> int:
    """Signals layer ``l`` multiplies by ``W`` in :attr:`Phase.FORWARD`: ``h`` only at layer 0 (its
    target comes from the table ``R``), ``h`` and ``t`` above."""
    return 1 if l == 0 else 2


def update_terms(net: Network, l: int) -> int:
    """Outer products summed into layer ``l``'s weight update: ``d_h x``, then ``d_tc t_in`` and
    (with the push) ``d_tm Tin[m]``. Layer 0 sends its target side to the table instead, and
    ``l2`` learns through the h path alone."""
    if l == 0 or net.spec.learning.loss == "l2":
        return 1
    return 3 if net.spec.learning.push else 2


def uses_softmax(net: Network, l: int) -> bool:
    """Whether stage ``l`` runs a softmax (``class_ce``, or the last stage's linear head)."""
    return net.spec.learning.loss == "class_ce" or (l == net.depth - 1 and net.spec.readout == "head")


@dataclass(frozen=True)
class StepShifts:
    """Right shifts from an update's raw product to its variable's step (the layer's
    ``eta = 2^-lr_shift``, :meth:`.network.Network.lr_shift`, folded in): ``W -= round(u >> weight)`` and so on, before saturation.

    Attributes
    ----------
    weight : int
        ``u = d x`` has ``fe + fin`` fraction bits: ``fe + fin - fw + lr_shift``.
    bias : int
        ``d`` has ``fe``: ``fe - fb + lr_shift``.
    table : int or None
        Layer 0 only: ``fe - ft + lr_shift``.
    head_weight : int or None
        The last layer's head (``readout: head``): ``u = d h`` has ``fe + fa``.
    """

    weight: int
    bias: int
    table: int | None
    head_weight: int | None


def step_shifts(net: Network, l: int) -> StepShifts:
    p, s = net.prec(l), net.lr_shift(l)
    fe = p.error.frac_bits
    table = fe - net.spec.precision.table.frac_bits + s if l == 0 else None
    head = None
    if l == net.depth - 1 and net.spec.readout == "head":
        head = fe + p.activation.frac_bits - p.weight.frac_bits + s
    return StepShifts(weight=fe + net.in_format(l).frac_bits - p.weight.frac_bits + s,
                      bias=fe - p.bias.frac_bits + s, table=table, head_weight=head)


# ---------------------------------------------------------------------------------------------
# The softmax (one definition for the golden model's softmax_fixed and both engines' units)

#: Bits of the quotient ``floor(2^32 / sum e)``: at most ``2^16`` because ``sum >= 2^16`` (the
#: largest logit's ``e`` is ``2^16``).
Q_BITS = RECIP_BITS - P_FRAC + 1
#: Bits of an exponential ``e_k <= 2^16``.
E_BITS = P_FRAC + 1


def logit_frac(net: Network, l: int) -> int:
    """Fraction bits of layer ``l``'s class logits ``s_k = 2^-a h . T[k]``: ``2 fa + a``."""
    return 2 * net.prec(l).activation.frac_bits + net.spec.learning.logit_shift


def softmax_fracs(net: Network, l: int) -> tuple[int, ...]:
    """Fraction bits of the logits stage ``l`` softmaxes: its class logits, and the head's."""
    f0 = logit_frac(net, l)
    if l == net.depth - 1 and net.spec.readout == "head":
        p = net.prec(l)
        return (f0, p.weight.frac_bits + p.activation.frac_bits)
    return (f0,)


def exp_clamp(fracs) -> int:
    """The smallest ``d`` whose exponent ``(d log2 e) >> (f + 16)`` reaches 17 (so ``e = 0``) for
    every fraction count ``f`` in ``fracs``: clamping ``d`` there changes no ``e`` and bounds the
    multiplier operand to ``exp_clamp(fracs).bit_length()`` bits."""
    return max(-(-((P_FRAC + 1) << (f + 16)) // LOG2E_Q16) for f in fracs)


def mul_b_bits(fracs) -> int:
    """Width of the softmax multiplier's second operand: ``q`` or the clamped ``d``."""
    return max(Q_BITS, exp_clamp(fracs).bit_length())


@dataclass(frozen=True)
class SoftmaxPieces:
    """The serial engine's softmax on one lane: ``d`` cut into 8-bit pieces.

    Attributes
    ----------
    frac : int
        Fraction bits of the logits (:func:`logit_frac`).
    clamp : int
        :func:`exp_clamp` of ``frac``.
    pieces : int
        8-bit pieces of the clamped ``d``.
    y_shift : int
        The right shift that gives ``y = d log2 e`` from the pieces' sum.
    """

    frac: int
    clamp: int
    pieces: int
    y_shift: int


def softmax_pieces(net: Network, l: int = 0) -> SoftmaxPieces:
    f = logit_frac(net, l)
    dc = max(1, exp_clamp((f,)))
    npc = math.ceil(dc.bit_length() / 8)
    return SoftmaxPieces(frac=f, clamp=dc, pieces=npc, y_shift=f + 9 - 8 * (npc - 1))
