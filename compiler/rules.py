"""Learning-rule cost model: what forward-only learning buys in hardware (analytic).

For the same network and the same lanes per layer, three datapaths that train one sample at a
time with plain SGD:

``sigprop`` (as built)
    The compiler's own estimate (:mod:`.estimate`): layers pipeline, so the cycles between
    samples are the slowest stage's. No activation outlives its layer's work on a sample; each
    stage keeps a double-buffered input (``h`` and ``t``) and its class-target caches.
``backprop``
    Forward through all layers and the output layer, then the backward pass
    ``delta_{l-1} = (W_l^T delta_l) * f'`` (the transposed read of ``W_l``: weight transport),
    then the updates. Sample ``n + 1`` cannot enter layer ``l`` before sample ``n``'s backward
    pass has updated it, so nothing overlaps: the cycles are the sum. Every layer's input and
    derivative mask are stored from the forward pass until the backward pass uses them.
``dfa`` (direct feedback alignment)
    Forward through all layers; the output error is projected to every layer through fixed
    random matrices ``B_l`` (``C x n_l``, extra memory); the layers then update in parallel.
    Activations are stored until the error arrives; no overlap across samples.

Cycles use the same lane model as the estimator: a dot-product pass of ``rows x cols`` on ``P``
lanes takes ``rows * ceil(cols / P)`` cycles, an update ``rows * (ceil(cols / P) + 1)``.
"""

from __future__ import annotations

import math

from .network import Network
from .estimate import allocate_lanes, estimate

__all__ = ["rule_costs", "RULES"]

RULES = ("sigprop", "backprop", "dfa")


def _pass(rows: int, cols: int, P: int) -> int:
    return rows * math.ceil(cols / P)


def rule_costs(net: Network, lanes: tuple[int, ...] | None = None) -> dict:
    """Per rule: ``cycles_per_sample``, ``stored_activation_bits`` (kept from the forward pass
    for a later learning step), ``buffer_bits`` (stage working buffers), ``feedback_weight_bits``,
    ``weight_reads``/``weight_writes`` per sample (words), ``weight_transport`` (transposed reads),
    ``layers_overlap`` (whether consecutive samples overlap in different layers)."""
    lanes = allocate_lanes(net) if lanes is None else tuple(lanes)
    est = estimate(net, lanes)
    C, L = net.n_classes, net.depth
    widths_in = [net.in_format(l).width for l in range(L)]
    act_w = [net.prec(l).activation.width for l in range(L)]
    wq = [net.prec(l).weight.width for l in range(L)]
    n_in = [net.fan_in(l) for l in range(L)]
    n = [net.units(l) for l in range(L)]
    weights = sum(a * b for a, b in zip(n_in, n))
    out_w = C * n[-1]
    P_out = lanes[-1]

    sig_reads = sum((1 if l == 0 else 2) * n[l] * n_in[l] + n[l] * n_in[l] for l in range(L))
    sigprop = {
        "cycles_per_sample": est.cycles_per_sample,
        "sequential_cycles": est.sequential_cycles,
        "stored_activation_bits": 0,
        "buffer_bits": sum(2 * (1 if l == 0 else 2) * n_in[l] * widths_in[l] for l in range(L)),
        "feedback_weight_bits": 0,
        "weight_reads": sig_reads,
        "weight_writes": weights,
        "weight_transport": 0,
        "layers_overlap": True,
    }

    fwd = sum(_pass(n[l], n_in[l], lanes[l]) for l in range(L)) + _pass(C, n[-1], P_out)
    upd = sum(n[l] * (math.ceil(n_in[l] / lanes[l]) + 1) for l in range(L)) + C * (math.ceil(n[-1] / P_out) + 1)
    bwd = _pass(n[-1], C, P_out) + sum(_pass(n_in[l], n[l], lanes[l]) for l in range(1, L))
    stored = sum(n_in[l] * widths_in[l] + n[l] for l in range(L)) + n[-1] * act_w[-1]   # inputs, masks
    backprop = {
        "cycles_per_sample": fwd + bwd + upd,
        "sequential_cycles": fwd + bwd + upd,
        "stored_activation_bits": stored,
        "buffer_bits": 0,
        "feedback_weight_bits": 0,
        "weight_reads": 2 * (weights + out_w) + (weights - n_in[0] * n[0]) + out_w,
        "weight_writes": weights + out_w,
        "weight_transport": (weights - n_in[0] * n[0]) + out_w,
        "layers_overlap": False,
    }

    proj = [_pass(n[l], C, lanes[l]) for l in range(L)]
    upd_l = [n[l] * (math.ceil(n_in[l] / lanes[l]) + 1) for l in range(L)]
    out_upd = C * (math.ceil(n[-1] / P_out) + 1)
    dfa_cycles = fwd + max([p + u for p, u in zip(proj, upd_l)] + [out_upd])
    dfa = {
        "cycles_per_sample": dfa_cycles,
        "sequential_cycles": fwd + sum(proj) + sum(upd_l) + out_upd,
        "stored_activation_bits": stored,
        "buffer_bits": 0,
        "feedback_weight_bits": sum(C * n[l] * wq[l] for l in range(L)),
        "weight_reads": 2 * (weights + out_w),
        "weight_writes": weights + out_w,
        "weight_transport": 0,
        "layers_overlap": False,
    }
    return {"lanes": list(lanes), "sigprop": sigprop, "backprop": backprop, "dfa": dfa}
