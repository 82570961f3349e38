"""Training driver shared by the CLI, the benches and the tests: epochs, progress, curves."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

from tqdm import tqdm

from .checkpoint import Checkpoint, float_model, golden_model
from .collapse import collapse_check
from .datasets import Dataset
from .golden import GoldenSigProp
from .golden_rules import GoldenRule
from ..compiler.network import Network
from ..compiler.rule import Rule
from .reference import FloatSigProp
from .reference_rules import FloatRule

__all__ = ["TrainReport", "train_sigprop", "make_model", "MODELS"]

#: The software models of the learning rule: the float64 reference and the bit-exact golden model.
MODELS = ("float", "golden")


@dataclass
class TrainReport:
    model: str
    rule: str
    epochs: int
    samples: int
    test_accuracy: float
    train_accuracy: float
    curve: list = field(default_factory=list)          # test accuracy after each epoch
    train_curve: list = field(default_factory=list)    # online (prequential) accuracy per epoch
    seconds: float = 0.0
    samples_per_second: float = 0.0
    counters: dict = field(default_factory=dict)
    updates_per_sample: dict = field(default_factory=dict)
    collapsed: bool = False             # sim.collapse.collapse_check on the test split
    collapse_warning: str | None = None

    def to_json(self) -> dict:
        return asdict(self)


def make_model(kind: str, net: Network, params: dict | None = None, rule: Rule | str = Rule.SIGPROP):
    """The ``float`` reference or the ``golden`` model of ``net`` trained by ``rule``
    (:class:`~sigprop_fpga.compiler.rule.Rule`: SigProp, or bp, fa, dfa with an output layer)."""
    rule = Rule(rule)
    if kind == "float":
        return FloatSigProp(net, params) if rule == Rule.SIGPROP else FloatRule(net, rule, params)
    if kind == "golden":
        return GoldenSigProp(net, params) if rule == Rule.SIGPROP else GoldenRule(net, rule, params)
    raise ValueError(f"unknown model {kind!r}, expected float or golden")


def train_sigprop(kind: str, net: Network, data: Dataset, epochs: int | None = None,
                  progress: bool = False, params: dict | None = None, model=None,
                  init: Checkpoint | None = None, rule: Rule | str = Rule.SIGPROP) -> tuple[TrainReport, object]:
    """Train the ``float`` or ``golden`` model of ``rule`` (SigProp by default) for ``epochs``
    passes over the training set in its fixed order (``model``: one already made, to continue;
    ``init``: a checkpoint to start from, :mod:`.checkpoint`, SigProp only); returns the report and
    the trained model."""
    rule = Rule(rule)
    epochs = net.spec.learning.epochs if epochs is None else epochs
    if init is not None and (model is not None or params is not None):
        raise ValueError("give one of model, params and init")
    if init is not None and rule != Rule.SIGPROP:
        raise ValueError(f"checkpoints hold SigProp's state, not {rule}'s")
    if init is not None:
        eng = golden_model(net, init) if kind == "golden" else float_model(net, init) if kind == "float" else None
        if eng is None:
            raise ValueError(f"unknown model {kind!r}, expected float or golden")
    else:
        eng = model if model is not None else make_model(kind, net, params, rule)
    if kind == "float":
        xtr, xte = data.float_inputs()
    else:
        xtr, xte = data.x_train, data.x_test
    ytr, yte = data.y_train, data.y_test
    curve, train_curve = [], []
    bar = None
    if progress:

        bar = tqdm(total=epochs * len(ytr), unit="sample", desc=f"train {kind} {rule}", leave=False)
    t0 = time.perf_counter()
    train_time = 0.0
    for epoch in range(epochs):
        e0 = time.perf_counter()
        correct = 0
        for i in range(len(ytr)):
            correct += eng.train_sample(xtr[i], int(ytr[i])) == ytr[i]
            if bar is not None and (i & 63) == 63:
                bar.update(64)
        train_time += time.perf_counter() - e0
        if bar is not None:
            bar.update(len(ytr) - (len(ytr) // 64) * 64)
        train_curve.append(correct / len(ytr))
        test_pred = eng.predict(xte)
        acc = float(np.mean(test_pred == yte))
        curve.append(acc)
        if bar is not None:
            bar.set_postfix(epoch=epoch + 1, test=f"{acc:.4f}")
    if bar is not None:
        bar.close()
    n = epochs * len(ytr)
    collapse = collapse_check(test_pred, yte, net.n_classes, net.spec.file or "NET.yaml")
    report = TrainReport(
        model=kind, rule=rule.value, epochs=epochs, samples=n,
        test_accuracy=curve[-1], train_accuracy=float(np.mean(eng.predict(xtr) == ytr)),
        curve=curve, train_curve=train_curve, seconds=time.perf_counter() - t0,
        samples_per_second=n / train_time if train_time > 0 else 0.0,
        counters=dict(getattr(eng, "counters", {})),
        updates_per_sample=eng.updates_per_sample() if hasattr(eng, "updates_per_sample") else {},
        collapsed=collapse["collapsed"], collapse_warning=collapse["warning"],
    )
    return report, eng
