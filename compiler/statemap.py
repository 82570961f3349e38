"""The engines' state map: every memory a stage holds, its layout in banks and words, the counters,
and the readback address that reaches each entry.

One map for every engine (the serial engine stores the same entries elsewhere but answers the
same addresses), the golden model's comparison (:mod:`sigprop_fpga.sim.compare`), the host link
and the manifest.
"""

from __future__ import annotations

import math

import numpy as np

from .fixed import EXP2_TABLE, P_FRAC
from .network import Network
from .rule import uses_softmax

__all__ = ["MEM_IDS", "stage_memories", "physical_memories", "pow2_depth", "counter_names", "readback_fields", "readback_address",
           "readback_map", "readback_requests", "state_writes", "unpack_state"]

#: Memory ids of the readback address's ``mem`` field.
MEM_IDS = {"W": 0, "b": 1, "T": 2, "Tin": 3, "R": 4, "head_W": 5, "head_b": 6}


def stage_memories(net: Network, l: int, lanes: int, rule: str = "sigprop") -> dict:
    """``{name: (banks, depth, QFormat, (row, col) -> (bank, word))}`` of stage ``l``'s memories.

    ``rule`` other than ``sigprop`` (bp, fa, dfa): the layer's ``W`` and ``b``, and at the last
    layer the output layer as ``head_W``, ``head_b`` (no caches, no table)."""
    n_in, n, C = net.fan_in(l), net.units(l), net.n_classes
    P = lanes
    ci, cn = math.ceil(n_in / P), math.ceil(n / P)
    p = net.prec(l)
    if str(rule) != "sigprop":
        mems = {
            "W": (P, n * ci, p.weight, lambda j, i: (i % P, j * ci + i // P), (n, n_in)),
            "b": (1, n, p.bias, lambda j, _i=0: (0, j), (n,)),
        }
        if l == net.depth - 1:
            mems["head_W"] = (P, C * cn, p.weight, lambda k, j: (j % P, k * cn + j // P), (C, n))
            mems["head_b"] = (1, C, p.bias, lambda k, _j=0: (0, k), (C,))
        return mems
    mems = {
        "W": (P, n * ci, p.weight, lambda j, i: (i % P, j * ci + i // P), (n, n_in)),
        "b": (1, n, p.bias, lambda j, _i=0: (0, j), (n,)),
        "T": (P, C * cn, p.activation, lambda k, j: (j % P, k * cn + j // P), (C, n)),
    }
    if l > 0:
        mems["Tin"] = (P, C * ci, net.in_format(l), lambda k, i: (i % P, k * ci + i // P), (C, n_in))
    else:
        mems["R"] = (P, C * cn, net.spec.precision.table, lambda k, j: (j % P, k * cn + j // P), (C, n))
    if l == net.depth - 1 and net.spec.readout == "head":
        mems["head_W"] = (P, C * cn, p.weight, lambda k, j: (j % P, k * cn + j // P), (C, n))
        mems["head_b"] = (1, C, p.bias, lambda k, _j=0: (0, k), (C,))
    return mems


def pow2_depth(depth: int) -> int:
    """The depth a memory of ``depth`` words is instantiated with: the next power of two, so that
    every address its read port can hold lies inside it (no range check sits between the address
    logic and the block RAM). Below a block RAM's 512 to 2048 words this costs no block RAM."""
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
        raise ValueError(f"Memory depth must be a positive integer, not {depth!r}")
    return 1 << (depth - 1).bit_length()


def physical_memories(net: Network, l: int, lanes: int) -> list[tuple[int, int, int]]:
    """``(depth, width, write granule)`` of each memory stage ``l`` instantiates: one per bank of
    ``W``, ``R`` and the head's (written whole); the packed cache (``T``, ``Tin``, ``b`` and, with
    a softmax, its exp table) of ``P``-lane words, written an entry at a time; the double-buffered
    input memory (``x``, ``t_in``), written an input at a time."""
    mems = stage_memories(net, l, lanes)
    out = []
    for name, (banks, depth, q, _, _) in mems.items():
        if name not in ("T", "Tin", "b"):
            out += [(pow2_depth(depth), q.width, q.width)] * banks
    P, n_in = lanes, net.fan_in(l)
    ci = math.ceil(n_in / P)
    sm = uses_softmax(net, l)
    wl = max(mems[nm][2].width for nm in ("T", "Tin") if nm in mems)
    nl = max(P, -(-mems["b"][2].width // wl), -(-(P_FRAC + 1) // wl) if sm else 1)
    depth = sum(mems[nm][1] for nm in ("T", "Tin", "b") if nm in mems) + (len(EXP2_TABLE) if sm else 0)
    out.append((pow2_depth(depth), nl * wl, wl))
    wi = net.in_format(l).width
    out.append((pow2_depth(2 * (2 if l > 0 else 1) * ci), P * wi, wi))
    return out


def _bits(n: int) -> int:
    return max(1, int(n).bit_length())


def counter_names(net: Network, rule: str = "sigprop") -> list[str]:
    """Counters in readback order: ``cycles``, ``samples``, ``inferences``, the golden model's
    ``sat_*`` names, then ``stage_cycles_<l>`` (cycles of the last sample in stage ``l``; the
    rules other than SigProp, which do not overlap layers: ``sample_cycles``)."""
    names = ["cycles", "samples", "inferences"]
    if str(rule) != "sigprop":
        for tag in [str(l) for l in range(net.depth)] + ["out"]:
            names += [f"sat_{v}_{tag}" for v in ("weight", "bias", "error")]
        return names + ["sample_cycles"]
    for l in range(net.depth):
        names += [f"sat_{v}_{l}" for v in ("weight", "bias", "error", "table")]
    if net.spec.readout == "head":
        names += ["sat_weight_head", "sat_bias_head", "sat_error_head"]
    names += [f"stage_cycles_{l}" for l in range(net.depth)]
    return names


def readback_fields(net: Network, lanes, rule: str = "sigprop") -> dict:
    """The readback address's fields, ``{name: {"lsb", "width"}}``:
    ``addr = stage << s | mem << m | bank << b | word``."""
    mems = [stage_memories(net, l, lanes[l], rule) for l in range(net.depth)]
    word_bits = max(_bits(max(d for _, d, _, _, _ in ms.values()) - 1) for ms in mems)
    word_bits = max(word_bits, _bits(len(counter_names(net, rule)) - 1))
    bank_bits = _bits(max(lanes) - 1)
    layout = {"word": (0, word_bits), "bank": (word_bits, bank_bits), "mem": (word_bits + bank_bits, 3),
              "stage": (word_bits + bank_bits + 3, _bits(net.depth))}
    return {k: {"lsb": v[0], "width": v[1]} for k, v in layout.items()}


def readback_address(fields: dict, stage: int, mem: int, bank: int, word: int) -> int:
    """The address of one entry (``mem`` a :data:`MEM_IDS` value; counters: ``stage = depth``)."""
    return ((stage << fields["stage"]["lsb"]) | (mem << fields["mem"]["lsb"])
            | (bank << fields["bank"]["lsb"]) | word)


def readback_map(net: Network, lanes, latency: int, rule: str = "sigprop") -> dict:
    """The readback address map of an engine with ``lanes`` per stage, for the manifest and the
    host: :func:`readback_fields`, the regions, the counters, and ``latency``, the engine's
    cycles from ``rb_addr`` to its ``rb_data``.

    ``stage == depth`` selects the counters (``word`` = index in :func:`counter_names`).
    Entry ``(row, col)`` of a banked memory lives in ``bank = col % P``,
    ``word = row * ceil(cols / P) + col // P``; ``b``, ``head_b`` are one bank indexed by row.
    """
    fields = readback_fields(net, lanes, rule)
    regions = []
    for l in range(net.depth):
        P = lanes[l]
        for name, (banks, depth, q, _, shape) in stage_memories(net, l, P, rule).items():
            cols = shape[1] if len(shape) > 1 else 1
            regions.append({"stage": l, "mem": name, "mem_id": MEM_IDS[name], "banks": banks, "depth": depth,
                            "format": str(q), "rows": shape[0], "cols": cols,
                            "entry": "bank = col % P, word = row * ceil(cols / P) + col // P"
                            if banks > 1 else "bank = 0, word = row", "lanes": P})
    return {"fields": fields, "addr_width": sum(f["width"] for f in fields.values()),
            "data_width": 32, "latency": latency, "regions": regions,
            "counters": {"stage": net.depth, "names": counter_names(net, rule)}, "rule": str(rule)}


def _state_array(state: dict, l: int, name: str):
    """The golden-shaped array of memory ``name`` of stage ``l`` in ``state``."""
    if name in ("W", "b", "T", "Tin"):
        return state[name][l]
    if name == "R":
        return state["R"]
    return state["head"][name[5:]]


def readback_requests(net: Network, lanes, rule: str = "sigprop") -> list[tuple[tuple, int]]:
    """``[(key, address)]`` of every memory word and counter in the engine's readback space;
    ``key`` is ``(stage, memory, bank, word)`` or ``("counter", name)``."""
    f = readback_fields(net, lanes, rule)
    reqs = []
    for l in range(net.depth):
        for name, (banks, depth, _, _, _) in stage_memories(net, l, lanes[l], rule).items():
            for bank in range(banks):
                for word in range(depth):
                    reqs.append(((l, name, bank, word), readback_address(f, l, MEM_IDS[name], bank, word)))
    for k, name in enumerate(counter_names(net, rule)):
        reqs.append((("counter", name), readback_address(f, net.depth, 0, 0, k)))
    return reqs


def state_writes(net: Network, lanes, state: dict, rule: str = "sigprop") -> list[tuple[int, int]]:
    """``[(address, value)]`` that load ``state`` (shaped as the golden model's ``state()``: ``W``,
    ``b``, ``T``, ``Tin``, ``R``, ``head``) into the engine's memories through its state port: a
    checkpoint, or the initial state of an engine of another ``rule`` (its map, ``W``, ``b`` and
    ``head``). Counters are not written. Values are the entries' two's complement integers."""
    f = readback_fields(net, lanes, rule)
    out = []
    for l in range(net.depth):
        for name, (_, _, _, where, shape) in stage_memories(net, l, lanes[l], rule).items():
            ref = np.asarray(_state_array(state, l, name), dtype=np.int64)
            for idx in np.ndindex(*shape):
                bank, word = where(*idx)
                out.append((readback_address(f, l, MEM_IDS[name], bank, word), int(ref[idx])))
    return out


def unpack_state(net: Network, lanes, words: dict, rule: str = "sigprop") -> dict:
    """Golden-shaped arrays (and ``counters``) from read-back ``words``, keyed as
    :func:`readback_requests` keys them."""
    state = {"W": [], "b": [], "T": [], "Tin": [None] * net.depth, "R": None, "head": None}
    for l in range(net.depth):
        arrs = {}
        for name, (_, _, _, where, shape) in stage_memories(net, l, lanes[l], rule).items():
            a = np.zeros(shape, dtype=np.int64)
            for idx in np.ndindex(*shape):
                a[idx] = words[(l, name) + where(*idx)]
            arrs[name] = a
        state["W"].append(arrs["W"])
        state["b"].append(arrs["b"])
        state["T"].append(arrs.get("T"))
        if "Tin" in arrs:
            state["Tin"][l] = arrs["Tin"]
        elif "R" in arrs:
            state["R"] = arrs["R"]
        if "head_W" in arrs:
            state["head"] = {"W": arrs["head_W"], "b": arrs["head_b"]}
    state["counters"] = {k[1]: v for k, v in words.items() if k[0] == "counter"}
    return state
