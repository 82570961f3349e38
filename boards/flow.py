"""``sigprop-fpga build``: a network file to a bitstream, with a fit check before synthesis.

Steps: load and check the network, estimate the board resources of the whole top (engine, on-chip
dataset, host link) and refuse a design that cannot fit (with the numbers and a hint), then
synthesis, place and route and packing through :func:`.build.build` (atomic, stamped, skipped
when nothing changed), and a report with the estimate beside the result.
"""

from __future__ import annotations

import math
from pathlib import Path

__all__ = ["estimate_resources", "build_network", "dataset_capacity", "board_memories", "bram_blocks",
           "lut_features", "LUT_MODEL"]

LINK_PAYLOAD = 256          # SigPropBoardCore's host link frame buffer (bytes)
MAX_EPOCHS = 255            # SigPropBoardCore's feeder: the learning-curve memory's depth

# Block RAM configurations (depth, width) the synthesis maps a memory onto. Every memory of the
# design carries ``ram_style = "block"`` (hdl.BLOCK_RAM), so yosys' memory_libmap takes the
# cheapest tiling of these and nothing goes to distributed RAM.
_BRAM_CONFIGS = {
    # iCE40 SB_RAM40_4K: one read and one write port
    "ice40": ((256, 16), (512, 8), (1024, 4), (2048, 2)),
    # ECP5 DP16KD: true dual port up to 18 bits; 36 bits as a pseudo dual port (1 read, 1 write)
    "ecp5": ((1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1)),
}


def _mem_blocks(depth: int, width: int, family: str, read_ports: int = 1) -> int:
    """Block RAMs of a ``depth x width`` memory with ``read_ports`` read ports (and at most one
    write port): the cheapest tiling over the family's configurations; an iCE40 block has one
    read port, so each further read port costs a copy."""
    if depth <= 0 or width <= 0:
        return 0
    configs = _BRAM_CONFIGS[family]
    if family == "ecp5" and read_ports == 1:
        configs = configs + ((512, 36),)
    blocks = min(math.ceil(width / w) * math.ceil(depth / d) for d, w in configs)
    return blocks * (read_ports if family == "ice40" else 1)


def engine_memories(net, lanes) -> list[tuple[int, int]]:
    """(depth, width) of every memory of the engine as instantiated (banks of W and R, each
    stage's packed cache and input memory): :func:`sigprop_fpga.hdl.stage.physical_memories`."""
    from ..hdl.stage import physical_memories

    out = []
    for l in range(net.depth):
        out += physical_memories(net, l, lanes[l])
    return out


def board_memories(net, lanes, n_samples: int) -> list[tuple[int, int, int]]:
    """(depth, width, read ports) of every memory of the board top: the engine's, the feeder's
    dataset (features; labels, read by the sequencer and the scorer) and learning curve, and the
    host link's frame buffer."""
    out = [(d, w, 1) for d, w in engine_memories(net, lanes)]
    if n_samples > 0:     # without a stored sample the feeder never runs: no memory of its own
        out += _dataset_memories(net, n_samples) + [(MAX_EPOCHS, 64, 1)]
    out.append((LINK_PAYLOAD, 8, 1))
    return out


def _dataset_memories(net, n_samples: int) -> list[tuple[int, int, int]]:
    """The feeder's feature ROM banks and its label memory (two read ports)."""
    from ..hdl.feeder import ROM_BANK_DEPTH
    cb = max(1, (net.n_classes - 1).bit_length())
    in_width = max(net.spec.precision.input.width, cb)
    words = max(1, n_samples * net.n_inputs)
    banks = [(min(ROM_BANK_DEPTH, words - lo), in_width, 1) for lo in range(0, words, ROM_BANK_DEPTH)]
    return banks + [(max(1, n_samples), cb, 2)]


def bram_blocks(net, lanes, n_samples: int, family: str) -> int:
    """Block RAMs of the board top with ``n_samples`` stored samples."""
    return sum(_mem_blocks(d, w, family, r) for d, w, r in board_memories(net, lanes, n_samples))


def dataset_capacity(net, target, lanes, bram_left: int | None = None) -> int:
    """How many samples (features + label) fit the block RAM of ``target`` beside the rest of the
    board top (``bram_left``: blocks free for the dataset, else computed)."""
    base = bram_blocks(net, lanes, 0, target.family) - _dataset_blocks(net, 0, target.family)
    if bram_left is None:
        bram_left = target.available("bram") - base
    if bram_left <= 0:
        return 0
    # count the dataset's blocks the way estimate_resources does, so a capacity never fails the
    # fit check: bisect on the (monotone) block count
    lo, hi = 0, bram_left * target.bram_bits // (net.n_inputs + 1) + 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _dataset_blocks(net, mid, target.family) <= bram_left:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _dataset_blocks(net, n_samples: int, family: str) -> int:
    """Blocks the stored samples add (features, labels and the learning curve, none for 0)."""
    if n_samples <= 0:
        return 0
    return _mem_blocks(MAX_EPOCHS, 64, family) + sum(_mem_blocks(d, w, family, r) for d, w, r in _dataset_memories(net, n_samples))


#: LUT model per family: logic cells as nextpnr counts them (iCE40 ``ICESTORM_LC``, ECP5
#: ``TRELLIS_COMB``) against :func:`lut_features`, fitted by ``bench/calibrate_luts.py``.
#: Refit whenever the datapath changes (tests/boards/lut_calibration.json holds the measurements
#: the test checks the model against: every example within 10%).
LUT_MODEL = {
    "ice40": {"const": 4895.0, "stages": 1526.0, "lanes": 168.2, "vector_bits": 3.128},
    "ecp5": {"const": 6123.0, "stages": 614.1, "lanes": 291.7, "vector_bits": 1.595},
}


def lut_features(net, lanes, n_samples: int) -> dict:
    """What the logic of the board top grows with: a constant (host link, feeder, clock), the
    stages (control, softmax, counters), the lanes (operand multiplexers, rounding and saturation
    per lane) and the bits each stage holds in flip-flops (h, t, the delta FIFOs, the logits)."""
    import math
    bits = 0
    for l in range(net.depth):
        P = lanes[l]
        p = net.prec(l)
        entries = math.ceil(net.units(l) / P) * P
        bits += 2 * entries * p.activation.width
        if net.spec.learning.loss == "class_ce":
            bits += entries * (2 * p.error.width + 2)
        bits += net.n_classes * (2 * p.activation.width + 8)
    return {"const": 1, "stages": net.depth, "lanes": sum(lanes), "vector_bits": bits}


def estimate_resources(net, lanes, n_samples: int, family: str) -> dict:
    """Pre-synthesis estimate of the board top: ``lut``, ``dsp``, ``bram``.

    DSP: one per lane (every multiplier is a lane; the softmax runs on its stage's lanes).
    Block RAM: every memory of the board top (:func:`board_memories`), each the cheapest tiling
    of the family's block configurations (exact: the memories are forced to block RAM).
    LUT: the linear model :data:`LUT_MODEL` of :func:`lut_features`, calibrated per family on the
    example networks by ``bench/calibrate_luts.py``.
    """
    bram = bram_blocks(net, lanes, n_samples, family)
    dsp = sum(lanes)
    coef = LUT_MODEL[family]
    lut = sum(coef[k] * v for k, v in lut_features(net, lanes, n_samples).items())
    return {"lut": int(round(lut)), "dsp": int(dsp), "bram": int(bram)}


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
