"""``sigprop-fpga tune``: a grid over the learning settings, scored on a validation split.

The grid is ``learning.lr_shift`` (``auto`` and integers around the per-layer shifts ``auto`` gives)
× ``learning.logit_shift`` × ``dataset.scaling``. Each point trains the golden model (or the float
reference) on the training split minus a validation split carved from it (stratified, seeded;
the test split is never looked at while choosing), in parallel over the machine's cores. The best
point (highest validation accuracy; the file's own settings stay unless a change beats them by
more than the validation noise, two standard errors of the accuracy; ties to the smaller change) is then
trained on the whole training split and scored on the test split beside the file's own settings,
so the report says what the change buys.
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from tqdm import tqdm

from ..compiler.network import Network
from ..compiler.spec import SCALINGS, NetworkSpec
from .datasets import Dataset, input_power, load_dataset
from .train import train_sigprop

__all__ = ["tune", "default_grid", "VALIDATION_FRACTION"]

#: Share of the training split held out for validation.
VALIDATION_FRACTION = 0.2


def _with(spec: NetworkSpec, lr_shift, logit_shift: int, scaling: str) -> NetworkSpec:
    return dataclasses.replace(
        spec, learning=dataclasses.replace(spec.learning, lr_shift=lr_shift, logit_shift=logit_shift),
        dataset=dataclasses.replace(spec.dataset, scaling=scaling))


def _validation_split(data: Dataset, seed: int) -> tuple[Dataset, Dataset]:
    """(training minus validation, training as train and validation as test), stratified."""
    rng = np.random.default_rng(seed)
    fit, val = [], []
    for c in np.unique(data.y_train):
        idx = np.flatnonzero(data.y_train == c)
        idx = idx[rng.permutation(len(idx))]
        k = min(max(1, int(round(len(idx) * VALIDATION_FRACTION))), len(idx) - 1) if len(idx) > 1 else 0
        val.append(idx[:k])
        fit.append(idx[k:])
    fit, val = np.sort(np.concatenate(fit)), np.sort(np.concatenate(val))
    return dataclasses.replace(data, x_train=data.x_train[fit], y_train=data.y_train[fit],
                               x_test=data.x_train[val], y_test=data.y_train[val])


def default_grid(net: Network) -> dict:
    """``lr_shift``: ``auto`` and the integers from one below the smallest to one above the
    largest per-layer shift ``auto`` gives; ``logit_shift``: 1 to 3; every scaling but ``unit``
    (which takes the data as it is)."""
    auto = [net.auto_lr_shift(l) for l in range(net.depth)]
    shifts = ["auto"] + list(range(max(0, min(auto) - 1), min(16, max(auto) + 1) + 1))
    return {"lr_shift": shifts, "logit_shift": [1, 2, 3], "scaling": [s for s in SCALINGS if s != "unit"]}


def _score(args) -> dict:
    spec, model, epochs, validate = args
    data = load_dataset(spec)
    fit = _validation_split(data, spec.dataset.seed) if validate else data
    net = Network(spec, data.n_inputs, data.n_classes, input_power(fit))
    r, _ = train_sigprop(model, net, fit, epochs)
    return {"lr_shift": spec.learning.lr_shift, "logit_shift": spec.learning.logit_shift,
            "scaling": spec.dataset.scaling, "lr_shifts": [net.lr_shift(l) for l in range(net.depth)],
            "accuracy": r.test_accuracy, "collapsed": r.collapsed, "n_validation": len(fit.y_test)}


def tune(spec: NetworkSpec, net: Network, *, model: str = "golden", epochs: int | None = None,
         grid: dict | None = None, jobs: int | None = None, progress: bool = False) -> dict:
    """Score every grid point on the validation split; train the best and the file's own settings
    on the training split and score both on the test split. Returns the JSON report."""
    grid = grid or default_grid(net)
    epochs = epochs or min(spec.learning.epochs, 5)
    points = [_with(spec, a, b, c) for a in grid["lr_shift"] for b in grid["logit_shift"] for c in grid["scaling"]]
    jobs = jobs or os.cpu_count() or 1
    rows = []
    with ProcessPoolExecutor(jobs) as ex:
        it = ex.map(_score, [(p, model, epochs, True) for p in points])
        if progress:
            it = tqdm(it, total=len(points), unit="point", desc=f"tune {model}", leave=False)
        rows = list(it)
    own = (spec.learning.lr_shift, spec.learning.logit_shift, spec.dataset.scaling)

    def change(r):      # grid order breaks ties: fewer settings changed first
        return sum(a != b for a, b in zip((r["lr_shift"], r["logit_shift"], r["scaling"]), own))

    # the file's own point stays unless a change beats it by more than the validation noise: two
    # standard errors of an accuracy on the validation split (a few samples of a small split
    # decide between the points near the top; measured on digits, 250 validation samples)
    top = max(rows, key=lambda r: (r["accuracy"], -change(r)))
    mine = next((r for r in rows if change(r) == 0), None)
    n_val = rows[0]["n_validation"]
    noise = 2.0 * float(np.sqrt(max(top["accuracy"] * (1 - top["accuracy"]), 1e-12) / n_val))
    best = mine if mine is not None and top["accuracy"] - mine["accuracy"] <= noise else top
    final = {}
    with ProcessPoolExecutor(min(jobs, 2)) as ex:
        runs = {"best": _with(spec, best["lr_shift"], best["logit_shift"], best["scaling"]), "file": spec}
        for name, r in zip(runs, ex.map(_score, [(s, model, spec.learning.epochs, False) for s in runs.values()])):
            final[name] = r
    return {"network": spec.file, "model": model, "epochs": epochs, "validation_fraction": VALIDATION_FRACTION,
            "grid": grid, "points": rows, "best": best, "noise": noise,
            "test": {"best": final["best"]["accuracy"], "file": final["file"]["accuracy"],
                     "epochs": spec.learning.epochs},
            "yaml": _yaml_lines(best, spec)}


def _yaml_lines(best: dict, spec: NetworkSpec) -> list[str]:
    """The lines to put in the network file for the best point."""
    return [f"dataset: {{scaling: {best['scaling']}}}",
            f"learning: {{lr_shift: {best['lr_shift']}, logit_shift: {best['logit_shift']}}}"]
