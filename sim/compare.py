"""Reading the hardware's state and comparing it with the golden model, shared by the Verilator
bench and the board client: the same addresses, the same first-mismatch report."""

from __future__ import annotations

import numpy as np

from ..compiler.statemap import stage_memories
from .golden import GoldenSigProp

__all__ = ["compare_state", "golden_feeder_run"]


def compare_state(net, lanes, words: dict, golden: GoldenSigProp, sample: int) -> dict | None:
    """The first difference between read-back ``words`` and the golden state, or ``None``.

    The report names the sample, stage, signal, index, expected and actual value.
    """
    gs = golden.state()
    for l in range(net.depth):
        for name, (_, _, _, where, shape) in stage_memories(net, l, lanes[l]).items():
            if name in ("W", "b", "T", "Tin"):
                ref = gs[name][l]
            elif name == "R":
                ref = gs["R"]
            else:
                ref = gs["head"][name[5:]]
            for idx in np.ndindex(*shape):
                bank, word = where(*idx)
                got = words[(l, name, bank, word)]
                want = int(ref[idx])
                if got != want:
                    return {"sample": sample, "stage": l, "signal": name, "index": [int(i) for i in idx],
                            "expected": want, "actual": int(got)}
    for name, want in gs["counters"].items():
        got = words.get(("counter", name))
        if got is not None and got != want:
            return {"sample": sample, "stage": None, "signal": f"counter {name}", "index": None,
                    "expected": int(want), "actual": int(got)}
    return None


def golden_feeder_run(net, data, n_train: int, n_test: int, epochs: int, golden=None, on_epoch=None):
    """Run the golden model through exactly what :class:`..hdl.feeder.DatasetFeeder` streams:
    per epoch the first ``n_train`` training samples (learning), then the first ``n_test`` test
    samples (inference). Returns the golden model and ``[(train_correct, test_correct)]``."""
    g = golden if golden is not None else GoldenSigProp(net)
    scores = []
    for e in range(epochs):
        tc = sum(int(g.train_sample(data.x_train[i], int(data.y_train[i])) == data.y_train[i])
                 for i in range(n_train))
        vc = sum(int(g.infer(data.x_test[i]) == data.y_test[i]) for i in range(n_test))
        scores.append((tc, vc))
        if on_epoch is not None:
            on_epoch(e, tc, vc)
    return g, scores
