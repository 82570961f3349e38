"""Analytic schedule of the datapath: MACs, lanes, cycles and memory per stage.

One stage per hidden layer (the head, when present, is folded into the last stage). A stage with
``P`` lanes (one multiplier each; ``ci = ceil(n_in/P)``, ``cn = ceil(n/P)``) walks these phases
for every training sample, exactly as :class:`sigprop_fpga.hdl.stage.LayerStage` does (the
hardware tests measure the real counts and require equality). Every issuing phase has ``DRAIN``
(:func:`~.timing.stage_drain` of the lanes: ``STAGE_LATENCY + 1`` = 6 up to 8 lanes, one more per
three adder-tree levels beyond three) more cycles to drain its pipeline (memory read, operand
source, fabric operand, operand, product and adder-tree registers, accumulate), one more where a finished sum is compared (S3) and two more in
``forward`` (narrowed at S3, written at S4); a phase whose successor reads nothing it writes skips
its drain:

=========  ===================================================  ==============================
phase      work                                                 cycles
=========  ===================================================  ==============================
overhead   accept the sample, finish                            ``2``
forward    ``h = f(W x + b)``, and ``t = f(W t_in + b)`` for     ``signals * n * ci + DRAIN + 2``
           ``l >= 1``; meanwhile ``Tin[c] <- t_in``, and        (no drain before ``logits``
           ``t = f(R[c])`` at layer 0 (one chunk a cycle)       when ``cn >= DRAIN + 2``)
logits     ``s_k = T[k] . h`` on the pre-write caches: the       ``C * cn``
           readout (last stage) and ``m``; ``class_ce``, or
           the readout alone for ``l2``
cache      ``T[c] <- t`` and ``s_c = t . h``                     ``cn + DRAIN + 1``
softmax    :class:`sigprop_fpga.hdl.softmax.Softmax` on the lanes ``2 G C + ceil(log2 C) + 31``
gradient   ``g_h = sum_k (p_k - y_k) T[k]``, ``g_t = e_c h``    ``(C + 1) * cn + DRAIN - 1``
update     ``W -= (d_h x + d_tc t_in + d_tm Tin[m]) >> s``, b    ``n * (terms * ci + 1) + DRAIN``
           (``terms`` = 3, 2 without push, 1 at layer 0/``l2``)  (no drain before ``table``)
table      ``R[c], R[m] -= d >> s`` (layer 0, ``class_ce``)      ``rows * cn + DRAIN``
head       logits ``C cn + DRAIN + 1``, softmax, update          (the sum)
           ``C (cn + 1) + DRAIN``
=========  ===================================================  ==============================

Layers pipeline (DESIGN.md §2), so the cycles between samples are the slowest stage's.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .network import Network
from .rule import Phase, forward_signals, mul_b_bits, softmax_fracs, softmax_pieces, update_terms, Q_BITS
from .timing import SERIAL_DRAIN, STAGE_LATENCY, softmax_latency, stage_drain, stage_latency

__all__ = ["StageEstimate", "Estimate", "estimate", "allocate_lanes", "stage_phases", "stage_cycles", "stage_macs",
           "stage_inference_cycles", "softmax_cycles", "softmax_groups", "softmax_fracs",
           "serial_cycles", "serial_macs", "vec_slots", "dfa_cycles", "dfa_macs"]


@dataclass(frozen=True)
class StageEstimate:
    index: int
    n_in: int
    units: int
    lanes: int
    macs: int                   # multiply-accumulates per training sample
    inference_macs: int
    cycles: int                 # estimated cycles per training sample
    phases: dict
    weight_bits: int
    cache_bits: int             # class-target caches T (and the layer's own copy Tin)
    table_bits: int             # the target table R (layer 0)
    acc_width: int


@dataclass(frozen=True)
class Estimate:
    stages: tuple[StageEstimate, ...]
    total_lanes: int
    macs_per_sample: int
    inference_macs_per_sample: int
    cycles_per_sample: int      # pipelined: the slowest stage
    sequential_cycles: int      # the sum of stages (no layer pipelining)
    ideal_cycles_per_sample: float   # MACs / total lanes
    memory_bits: int
    clock_mhz: float | None     # None: ``clock_mhz: max``, known only from the build

    @property
    def train_samples_per_second(self) -> float | None:
        """At the file's fixed clock; ``None`` for ``clock_mhz: max`` (the build's report has it)."""
        return None if self.clock_mhz is None else self.clock_mhz * 1e6 / self.cycles_per_sample

    def to_json(self) -> dict:
        d = asdict(self)
        d["train_samples_per_second"] = self.train_samples_per_second
        d["mac_utilization"] = self.ideal_cycles_per_sample / self.cycles_per_sample
        return d


OVERHEAD = 2                    # the accept cycle and the finish cycle


def softmax_cycles(C: int, groups: int = 1, latency: int = STAGE_LATENCY) -> int:
    """The softmax phase: one start cycle plus the unit's latency
    (:func:`sigprop_fpga.hdl.softmax.softmax_latency` on the lanes' multiplier latency, the
    stage's ``latency``: :func:`~.timing.stage_latency` of its lanes), ``groups`` lane cycles per
    product (``d log2 e``, ``e_k q``; :func:`softmax_groups`)."""
    return 1 + softmax_latency(C, groups, latency)


def softmax_groups(net: Network, l: int, lanes: int) -> int:
    """Lane cycles per softmax product in stage ``l``: the second operand (``q``, 17 bits, or the
    clamped ``d``, :func:`sigprop_fpga.hdl.softmax.mul_b_bits`) is cut into pieces of ``B - 1``
    bits (``B`` the lanes' narrow operand, the wider of the layer's input and activation
    widths), ``lanes`` pieces per cycle. The softmax has no multiplier of its own."""
    B = max(net.in_format(l).width, net.prec(l).activation.width)
    pieces = math.ceil(mul_b_bits(softmax_fracs(net, l)) / (B - 1))
    return math.ceil(pieces / lanes)


def stage_phases(net: Network, l: int, lanes: int) -> dict:
    """Cycles of each phase of stage ``l`` with ``lanes`` lanes, per training sample."""
    n_in, n, C = net.fan_in(l), net.units(l), net.n_classes
    P = lanes
    DRAIN, lat = stage_drain(P), stage_latency(P)
    ci, cn = math.ceil(n_in / P), math.ceil(n / P)
    last = l == net.depth - 1
    learning = net.spec.learning
    ce = learning.loss == "class_ce"
    ph = {"overhead": OVERHEAD, "forward": forward_signals(l) * n * ci + DRAIN + 2}
    # logits -> cache and update -> table follow without a drain, forward -> logits too when the
    # last chunk of h is read DRAIN + 2 issues in (hdl/stage.py, ``no_drain``): h lands at S4
    if ce or (last and net.spec.readout == "nearest_target"):
        ph["logits"] = C * cn
        if cn >= DRAIN + 2:
            ph["forward"] -= DRAIN + 2
    ph["cache"] = cn + DRAIN + 1
    if ce:
        ph["softmax"] = softmax_cycles(C, softmax_groups(net, l, P), lat)
        ph["gradient"] = (C + 1) * cn + DRAIN - 1     # update starts a cycle before the drain ends
    ph["update"] = n * (update_terms(net, l) * ci + 1) + (0 if (l == 0 and ce) else DRAIN)
    if l == 0 and ce:
        ph["table"] = (2 if learning.push else 1) * cn + DRAIN
    if last and net.spec.readout == "head":
        ph["head"] = (C * cn + DRAIN + 1) + softmax_cycles(C, softmax_groups(net, l, P), lat) + (C * (cn + 1) + DRAIN)
    return ph


def stage_inference_cycles(net: Network, l: int, lanes: int) -> int:
    """Cycles of an inference sample in stage ``l``."""
    n_in, n, C = net.fan_in(l), net.units(l), net.n_classes
    ci, cn = math.ceil(n_in / lanes), math.ceil(n / lanes)
    DRAIN = stage_drain(lanes)
    cyc = OVERHEAD + n * ci + DRAIN + 2      # h only: an inference needs no target
    if l == net.depth - 1:
        cyc += C * cn + DRAIN + 1
        if net.spec.readout == "nearest_target" and cn >= DRAIN + 2:
            cyc -= DRAIN + 2                 # forward -> logits without a drain
    return cyc


def stage_cycles(net: Network, l: int, lanes: int) -> int:
    return sum(stage_phases(net, l, lanes).values())


def stage_macs(net: Network, l: int) -> tuple[int, int]:
    """(training, inference) multiplications the stage's lanes do per sample (padding excluded)."""
    n_in, n, C = net.fan_in(l), net.units(l), net.n_classes
    last = l == net.depth - 1
    ce = net.spec.learning.loss == "class_ce"
    infer = n * n_in
    train = forward_signals(l) * n * n_in + update_terms(net, l) * n * n_in
    if ce:
        train += C * n + n + (C + 1) * n    # logits (with the readout), s_c, g_h and g_tc
    elif last and net.spec.readout == "nearest_target":
        train += C * n + n
    if last and net.spec.readout == "nearest_target":
        infer += C * n
    if last and net.spec.readout == "head":
        train += 2 * C * n
        infer += C * n
    return train, infer


def allocate_lanes(net: Network) -> tuple[int, ...]:
    """Lanes per stage: explicit counts win; ``auto`` balances ``dsp_budget`` so that the
    slowest stage is as fast as possible (greedy: give the next lane to the slowest stage).

    The lanes are the engine's only multipliers (each softmax borrows its stage's lanes for
    ``e_k q`` and computes ``d log2(e)`` with adders), so ``sum(lanes) <= dsp_budget`` counts
    every DSP block."""
    hw = net.spec.hardware
    fixed = [layer.lanes for layer in net.spec.layers]
    lanes = [f if f is not None else 1 for f in fixed]
    free = [i for i, f in enumerate(fixed) if f is None]
    budget = hw.dsp_budget - sum(lanes)
    while budget > 0 and free:
        cyc = {i: stage_cycles(net, i, lanes[i]) for i in free}
        slowest = max(free, key=lambda i: (cyc[i], -i))
        if lanes[slowest] >= max(net.fan_in(slowest), net.units(slowest)):
            free.remove(slowest)
            continue
        lanes[slowest] += 1
        budget -= 1
    return tuple(lanes)


def estimate(net: Network, lanes: tuple[int, ...] | None = None) -> Estimate:
    lanes = allocate_lanes(net) if lanes is None else lanes
    stages = []
    C = net.n_classes
    for l in range(net.depth):
        n_in, n = net.fan_in(l), net.units(l)
        p = net.prec(l)
        tr, inf = stage_macs(net, l)
        ph = stage_phases(net, l, lanes[l])
        weight_bits = n * n_in * p.weight.width + n * p.bias.width
        if l == net.depth - 1 and net.spec.readout == "head":
            weight_bits += C * n * p.weight.width + C * p.bias.width
        cache_bits = C * n * p.activation.width + (C * n_in * net.in_format(l).width if l > 0 else 0)
        table_bits = C * n * net.spec.precision.table.width if l == 0 else 0
        stages.append(StageEstimate(l, n_in, n, lanes[l], tr, inf, sum(ph.values()), ph,
                                    weight_bits, cache_bits, table_bits, net.acc_width(l)))
    total_lanes = sum(lanes)
    macs = sum(s.macs for s in stages)
    return Estimate(
        stages=tuple(stages), total_lanes=total_lanes, macs_per_sample=macs,
        inference_macs_per_sample=sum(s.inference_macs for s in stages),
        cycles_per_sample=max(s.cycles for s in stages),
        sequential_cycles=sum(s.cycles for s in stages),
        ideal_cycles_per_sample=macs / total_lanes,
        memory_bits=sum(s.weight_bits + s.cache_bits + s.table_bits for s in stages),
        clock_mhz=net.spec.hardware.fixed_clock_for(net.spec.board),
    )


# ---------------------------------------------------------------------------------------------
# The serial engine (:class:`sigprop_fpga.hdl.serial.SerialEngine`): one lane array, layer by layer

def vec_slots(nt: int) -> tuple[int, tuple[int, ...]]:
    """A period and the issue slots of a chunk of ``nt`` single-issue terms whose target word is
    read from M three cycles after the last term's issue, in a slot no issue of any chunk uses."""
    for per in range(nt, nt + 8):
        for mask in range(1 << per):
            slots = tuple(s for s in range(per) if (mask >> s) & 1)
            if len(slots) != nt:
                continue
            # the target is read 3 cycles after the last issue (no issue may use that M cycle) and
            # updated a cycle later, before the next chunk's first product replaces the sums
            if (slots[-1] + 3) % per not in slots and per >= slots[-1] - slots[0] + 2:
                return per, slots
    raise AssertionError("no slot pattern")


def serial_macs(net: Network) -> tuple[int, int]:
    """(training, inference) multiplications per sample of the golden arithmetic (no padding):
    the same count as :func:`sigprop_fpga.compiler.estimate.stage_macs` summed over the layers."""
    tr = sum(stage_macs(net, l)[0] for l in range(net.depth))
    inf = sum(stage_macs(net, l)[1] for l in range(net.depth))
    return tr, inf


def serial_cycles(net: Network, P: int = 4, corrections=0) -> dict:
    """Cycles of a training and of an inference sample of :class:`sigprop_fpga.hdl.serial.SerialEngine`, phase by phase;
    the FSM takes exactly these (the tests compare every sample).

    ``corrections`` (an int, or one per layer): how many classes ``k != c`` had ``p_k >= 1/2`` at
    that layer (0, 1, or 2 when two classes tie at exactly 1/2); each costs one more GRAD product
    per chunk, the only data-dependent term. Returns ``train``, ``inference``, ``layers`` (the
    training phases per layer), and ``train_min`` / ``train_max`` over the corrections.
    """
    ni = [net.fan_in(l) for l in range(net.depth)]
    units = [net.units(l) for l in range(net.depth)]
    cis, cns = [math.ceil(v / P) for v in ni], [math.ceil(v / P) for v in units]
    spec = net.spec.learning
    ce = spec.loss == "class_ce"
    push = ce and spec.push
    C, L = net.n_classes, net.depth
    if isinstance(corrections, int):
        corrections = [corrections] * L
    npc = softmax_pieces(net).pieces
    out = {"layers": []}

    def train_cycles(corr):
        total, phases = 2, []                       # the accept (IDLE) and FIN cycles
        for l in range(L):
            ci, cn, n = cis[l], cns[l], units[l]
            last = l == L - 1
            ph = {}
            if l:
                ph[Phase.NEXT_LAYER] = 1
            ph[Phase.FORWARD] = n * ((1 if l == 0 else ci) + ci)
            if ce or last:
                if cn < 5:
                    ph[Phase.FORWARD] += SERIAL_DRAIN
                ph[Phase.LOGITS] = C * cn
            elif not ce:
                ph[Phase.FORWARD] += SERIAL_DRAIN
            if last:
                ph[Phase.CACHE] = cn + (2 if (cn < 2 or not ce) else 0)
                if ce:
                    ph[Phase.CACHE] += cn + 4             # s_c = t . h, then s settles
            elif ce:
                ph[Phase.LOGITS] += 3                   # max(s) settles
            if ce:
                ph[Phase.SOFTMAX] = (C * npc + 6) + (Q_BITS + 1) + (2 * C + 4)
                ph[Phase.GRADIENT] = cn * (C + 1 + corr[l] + (3 if push else 2))
                if l == 0:
                    ph[Phase.GRADIENT] += 3 + (1 if cn < 2 and not push else 0)
                    ph[Phase.TABLE] = 2 * cn * (2 if push else 1) + 2
                elif cn < 2:
                    ph[Phase.GRADIENT] += SERIAL_DRAIN
            terms = update_terms(net, l)
            ph[Phase.UPDATE] = n * ci * terms + 2
            per, slots = vec_slots(terms)
            ph[Phase.BIAS] = cn * per + 7 - per + slots[-1]
            ph[Phase.COMMIT] = 6
            phases.append(ph)
            total += sum(ph.values())
        return total, phases

    out["train"], out["layers"] = train_cycles(corrections)
    out["train_min"] = train_cycles([0] * L)[0]
    out["train_max"] = train_cycles([2] * L)[0]
    inf = 2
    for l in range(L):
        ci, cn, n = cis[l], cns[l], units[l]
        inf += n * ci + (1 if l else 0)
        if l < L - 1 or cn < 5:
            inf += SERIAL_DRAIN
    inf += C * cns[-1] + 4
    out["inference"] = inf
    return out


def dfa_cycles(net: Network, P: int = 4, rule: str = "dfa") -> dict:
    """Cycles of a sample of :class:`sigprop_fpga.hdl.dfa.DfaEngine` (``rule`` ``"bp"``:
    :class:`sigprop_fpga.hdl.backprop.BackpropEngine`; ``"fa"``: :class:`sigprop_fpga.hdl.dfa.FaEngine`,
    whose gradient takes ``rows_{l+1} cn + 3``) with ``P`` lanes, phase by
    phase, from the cycle it is taken to the cycle its prediction leaves (the FSM takes
    exactly these; the Verilator bench measures them).

    A sweep of ``rows x ci`` issues takes ``rows ci`` cycles plus its drain: 6 for dot products
    (the lanes' latency, the accumulation, the narrowing a cycle later), 5 for an update; a
    gradient ``C cn + 3`` (backprop: ``rows_{l+1} cn + 6``, the transposed pass); the softmax :func:`~.timing.softmax_latency` ``(C)``; 2 to take the
    sample (its input is already loaded: the input memory is double buffered) and to hand the
    prediction over. ``train`` is also the cycles between training samples when they come
    back to back (the feeder's ``3 (n_in + 1)`` beats load in the meantime). Returns ``train``, ``inference`` and ``phases`` (a training sample's cycles
    per :class:`~.rule.Phase`, summed over the layers).
    """
    C, L = net.n_classes, net.depth
    ci = [math.ceil(net.fan_in(l) / P) for l in range(L)]
    cn = [math.ceil(net.units(l) / P) for l in range(L)]
    n = [net.units(l) for l in range(L)]
    forward = sum(n[l] * ci[l] + 6 for l in range(L))
    logits = C * cn[-1] + 6
    softmax = softmax_latency(C)
    update = C * cn[-1] + 5 + sum(n[l] * ci[l] + 5 for l in range(L))
    if str(rule) == "bp":
        rows = [n[l + 1] if l + 1 < L else C for l in range(L)]
        gradient = sum(rows[l] * cn[l] + 6 for l in range(L))
    else:       # dfa: S^T e, C rows; fa: S^T d_{l+1}, the rows of the weights above
        rows = [n[l + 1] if str(rule) == "fa" and l + 1 < L else C for l in range(L)]
        gradient = sum(rows[l] * cn[l] + 3 for l in range(L))
    phases = {Phase.FORWARD: forward, Phase.LOGITS: logits, Phase.SOFTMAX: softmax, Phase.GRADIENT: gradient,
              Phase.UPDATE: update, Phase.OVERHEAD: 2}
    return {"train": sum(phases.values()), "inference": forward + logits + 2, "phases": phases}


def dfa_macs(net: Network, rule: str = "dfa") -> int:
    """Multiplies of a DFA training sample: forward and update of every layer and the output
    layer (the feedback ``S^T e`` is additions only); backprop (``rule="bp"``) adds the
    transposed pass through every weight layer but the first."""
    L, C = net.depth, net.n_classes
    w = sum(net.units(l) * net.fan_in(l) for l in range(L)) + C * net.units(L - 1)
    back = w - net.units(0) * net.fan_in(0) if str(rule) == "bp" else 0
    return 2 * w + back
