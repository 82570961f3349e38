"""Reading the hardware's state and comparing it with the golden model, shared by the Verilator
bench and the board client: the same addresses, the same first-mismatch report."""

from __future__ import annotations

import numpy as np

from ..compiler.statemap import stage_memories, unpack_state
from .golden import GoldenSigProp

__all__ = ["compare_state", "first_difference", "golden_feeder_run"]


def first_difference(net, state: dict, golden: GoldenSigProp, sample: int) -> dict | None:
    """The first difference between a read-back ``state`` (shaped as :meth:`GoldenSigProp.state`,
    e.g. :func:`..compiler.statemap.unpack_state`'s) and the golden state, or ``None``.

    Every memory of :func:`..compiler.statemap.stage_memories` (``W``, ``b``, ``T``, ``Tin``,
    ``R``, the head's) and every golden counter the hardware has is compared. The report names
    the sample, stage, signal, index, expected and actual value.
    """
    gs = golden.state()
    rule = str(getattr(golden, "rule", "sigprop"))
    for l in range(net.depth):
        for name, (_, _, _, _, shape) in stage_memories(net, l, 1, rule).items():
            want_arr, got_arr = _array(gs, l, name), _array(state, l, name)
            if got_arr is None or np.shape(got_arr) != tuple(shape):
                return {"sample": sample, "stage": l, "signal": name, "index": None,
                        "expected": list(shape), "actual": None if got_arr is None else list(np.shape(got_arr))}
            for idx in np.ndindex(*shape):
                want, got = int(want_arr[idx]), int(got_arr[idx])
                if got != want:
                    return {"sample": sample, "stage": l, "signal": name, "index": [int(i) for i in idx],
                            "expected": want, "actual": got}
    got_counters = state.get("counters") or {}
    for name, want in gs["counters"].items():
        got = got_counters.get(name)
        if got is not None and got != want:
            return {"sample": sample, "stage": None, "signal": f"counter {name}", "index": None,
                    "expected": int(want), "actual": int(got)}
    return None


def _array(state: dict, l: int, name: str):
    if name in ("W", "b", "T", "Tin"):
        return state[name][l]
    if name == "R":
        return state["R"]
    return None if state.get("head") is None else state["head"][name[5:]]


def compare_state(net, lanes, words: dict, golden: GoldenSigProp, sample: int) -> dict | None:
    """The first difference between read-back ``words`` (keyed as
    :func:`..compiler.statemap.readback_requests` keys them) and the golden state, or ``None``:
    :func:`first_difference` of the unpacked words, the one comparison of ``sim``, ``run`` and
    ``compile --measure``.
    """
    return first_difference(net, unpack_state(net, lanes, words, str(getattr(golden, "rule", "sigprop"))),
                            golden, sample)


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
