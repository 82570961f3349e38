"""Reading the hardware's state and comparing it with the golden model, shared by the Verilator
bench and the board client: the same addresses, the same first-mismatch report."""

from __future__ import annotations

import numpy as np

from .golden import GoldenSigProp

__all__ = ["readback_requests", "state_writes", "compare_state", "golden_feeder_run"]


def readback_requests(net, lanes) -> list[tuple[tuple, int]]:
    """``[(key, address)]`` of every memory word and counter in the engine's readback space;
    ``key`` is ``(stage, memory, bank, word)`` or ``("counter", name)``."""
    from ..hdl.engine import counter_names, readback_map
    from ..hdl.stage import MEM_IDS, stage_memories

    f = readback_map(net, lanes)["fields"]

    def addr(stage, mem_id, bank, word):
        return (stage << f["stage"]["lsb"]) | (mem_id << f["mem"]["lsb"]) | (bank << f["bank"]["lsb"]) | word

    reqs = []
    for l in range(net.depth):
        for name, (banks, depth, _, _, _) in stage_memories(net, l, lanes[l]).items():
            for bank in range(banks):
                for word in range(depth):
                    reqs.append(((l, name, bank, word), addr(l, MEM_IDS[name], bank, word)))
    for k, name in enumerate(counter_names(net)):
        reqs.append((("counter", name), addr(net.depth, 0, 0, k)))
    return reqs


def state_writes(net, lanes, state: dict) -> list[tuple[int, int]]:
    """``[(address, value)]`` that load ``state`` (shaped as :meth:`GoldenSigProp.state`: ``W``,
    ``b``, ``T``, ``Tin``, ``R``, ``head``) into the engine's memories through its state port: a
    checkpoint. Counters are not written. Values are the entries' two's complement integers."""
    from ..hdl.engine import readback_map
    from ..hdl.stage import MEM_IDS, stage_memories

    f = readback_map(net, lanes)["fields"]
    out = []
    for l in range(net.depth):
        for name, (_, _, _, where, shape) in stage_memories(net, l, lanes[l]).items():
            if name in ("W", "b", "T", "Tin"):
                ref = state[name][l]
            elif name == "R":
                ref = state["R"]
            else:
                ref = state["head"][name[5:]]
            ref = np.asarray(ref, dtype=np.int64)
            for idx in np.ndindex(*shape):
                bank, word = where(*idx)
                a = (l << f["stage"]["lsb"]) | (MEM_IDS[name] << f["mem"]["lsb"]) | (bank << f["bank"]["lsb"]) | word
                out.append((a, int(ref[idx])))
    return out


def compare_state(net, lanes, words: dict, golden: GoldenSigProp, sample: int) -> dict | None:
    """The first difference between read-back ``words`` and the golden state, or ``None``.

    The report names the sample, stage, signal, index, expected and actual value.
    """
    from ..hdl.stage import stage_memories

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
