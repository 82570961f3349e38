"""``sigprop-fpga build``: a network file to a bitstream, with a fit check before synthesis.

Steps: load and check the network, estimate the board resources of the whole top (engine, on-chip
dataset, host link) and refuse a design that cannot fit (with the numbers and a hint), then
synthesis, place and route and packing through :func:`.build.build` (atomic, stamped, skipped
when nothing changed), and a report with the estimate beside the result.
"""

from __future__ import annotations

import math
from pathlib import Path

__all__ = ["estimate_resources", "build_network", "dataset_capacity"]

# Host link + UART + board glue, measured with synth_ice40 (860 LUT4, 1 EBR): see hdl/hostlink.py.
LINK_LUT, LINK_BRAM = 860, 1


def _mem_blocks(depth: int, width: int, family: str) -> int:
    """Block RAMs for a ``depth x width`` memory: iCE40 EBR is 4 kbit (256x16 .. 2048x2),
    ECP5 DP16KD is 18 kbit (1024x18 .. 16384x1)."""
    if depth <= 0 or width <= 0:
        return 0
    if family == "ice40":
        for d, w in ((256, 16), (512, 8), (1024, 4), (2048, 2)):
            if width <= w or w == 16:
                return math.ceil(width / w) * math.ceil(depth / d)
    for d, w in ((1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1)):
        if width <= w or w == 18:
            return math.ceil(width / w) * math.ceil(depth / d)
    raise AssertionError("unreachable")


def engine_memories(net, lanes) -> list[tuple[int, int]]:
    """(depth, width) of every memory of the engine as instantiated (banks of W and R, each
    stage's packed cache and input memory): :func:`sigprop_fpga.hdl.stage.physical_memories`."""
    from ..hdl.stage import physical_memories

    out = []
    for l in range(net.depth):
        out += physical_memories(net, l, lanes[l])
    return out


def dataset_capacity(net, target, lanes, bram_left: int | None = None) -> int:
    """How many samples (features + label) the free block RAM of ``target`` can hold."""
    if bram_left is None:
        used = sum(_mem_blocks(d, w, target.family) for d, w in engine_memories(net, lanes)) + LINK_BRAM
        bram_left = target.available("bram") - used
    if bram_left <= 0:
        return 0
    # the feeder keeps one byte per feature and one per label, in two memories; count them the
    # way estimate_resources does, so a capacity never fails the fit check
    n = bram_left * target.bram_bits // (8 * (net.n_inputs + 1))
    while n > 0 and _dataset_blocks(net, n, target.family) > bram_left:
        n -= 1
    return n


def _dataset_blocks(net, n_samples: int, family: str) -> int:
    return _mem_blocks(n_samples * net.n_inputs, 8, family) + _mem_blocks(n_samples, 8, family)


def estimate_resources(net, lanes, n_samples: int, family: str) -> dict:
    """Pre-synthesis estimate of the board top: ``lut``, ``dsp``, ``bram``.

    DSP: one per lane (the softmax units run on their stage's lanes). Block RAM: every memory the
    engine instantiates (:func:`engine_memories`), the dataset, the host link's frame buffer.
    LUT: a linear model of the datapath (per stage, per lane, per vector entry still held in
    flip-flops: h, t and the delta FIFOs) plus the host link, calibrated on digits (4 + 4 lanes:
    10,102 LUT4 for the engine with ``synth_ice40 -dsp``).
    """
    mems = engine_memories(net, lanes)
    bram = sum(_mem_blocks(d, w, family) for d, w in mems) + LINK_BRAM
    bram += _dataset_blocks(net, n_samples, family)
    dsp = sum(lanes)
    vec = sum(4 * net.units(l) for l in range(net.depth))     # entries held in flip-flops per stage
    lut = 2700 * net.depth + 350 * sum(lanes) + 8 * vec + LINK_LUT
    return {"lut": int(lut), "dsp": int(dsp), "bram": int(bram)}


def build_network(network, board: str | None = None, out_dir=None, *, progress=None, seed: int = 1,
                  samples: int | None = None, autostart_epochs: int = 0) -> dict:
    """Build the bitstream of ``network`` for ``board``; returns the report (see ``build --json``)."""
    from ..compiler.estimate import allocate_lanes, estimate
    from ..compiler.spec import SpecError, load_spec
    from ..sim.datasets import load_dataset
    from ..sim.params import Network, check_network
    from ..toolchain import apply_amaranth_tool_env
    from . import get_target
    from .build import build
    from .fit import FitError, fit_check
    from .top import SigPropBoardTop

    spec = load_spec(network)
    data = load_dataset(spec)
    net = Network(spec, data.n_inputs, data.n_classes)
    check_network(net)
    try:
        target = get_target(board or spec.board)
    except KeyError as e:
        raise SpecError(spec.file, None, "board", str(e.args[0])) from None
    lanes = allocate_lanes(net)
    n_total = len(data.y_train) + len(data.y_test)
    if samples is None:
        cap = dataset_capacity(net, target, lanes)
        samples = min(n_total, cap)
    n_train = min(len(data.y_train), samples)
    n_test = min(len(data.y_test), max(0, samples - n_train))
    est = estimate_resources(net, lanes, n_train + n_test, target.family)
    problems = fit_check(est, target)
    if problems:
        raise FitError(problems)
    apply_amaranth_tool_env()
    clock_mhz = spec.hardware.clock_mhz
    achieved = target.achieved_mhz(clock_mhz)
    top = SigPropBoardTop(net, data, target, achieved * 1e6, lanes=lanes, n_train=n_train, n_test=n_test,
                          autostart_epochs=autostart_epochs)
    out_dir = Path(out_dir) if out_dir else Path("build") / f"{spec.name}-{target.name}"
    report = build(top, target, out_dir, clock_mhz=clock_mhz, name=spec.name, seed=seed, progress=progress,
                   estimated=est, stamp_extra={"network": Path(network).read_text(), "samples": samples,
                                               "autostart": autostart_epochs})
    e = estimate(net, lanes)
    fmax = report.get("fmax_mhz")
    report.update({
        "network": str(network), "lanes": list(lanes), "dataset_on_chip": {"train": n_train, "test": n_test},
        "cycles_per_sample": e.cycles_per_sample,
        "train_samples_per_second": (fmax * 1e6 / e.cycles_per_sample) if fmax else None,
        "train_samples_per_second_at_clock": achieved * 1e6 / e.cycles_per_sample,
        "macs_per_sample": e.macs_per_sample,
    })
    return report
