"""``sigprop-fpga build``: a network file to a bitstream, with a fit check before synthesis.

Steps: load and check the network, estimate the board resources of the whole top (engine, on-chip
dataset, host link) and refuse a design that cannot fit (with the numbers and a hint), then
synthesis, place and route and packing through :func:`.build.build` (atomic, stamped, skipped
when nothing changed), and a report with the estimate beside the result.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..hdl.feeder import curve_count_width

__all__ = ["estimate_resources", "build_network", "dataset_capacity", "board_memories", "bram_blocks",
           "lut_features", "LUT_MODEL", "SERIAL_LUT_MODEL", "ENGINES", "EnginePlan", "plan_engine",
           "design_memories", "BoardDesign", "prepare_network", "split_stored"]

#: ``build --engine``: ``pipelined`` (a stage per layer, :class:`~sigprop_fpga.hdl.engine.SigPropEngine`),
#: ``serial`` (one lane array for every layer, :class:`~sigprop_fpga.hdl.serial.SerialEngine`), or
#: ``auto``: the pipelined engine where it fits the device, else the serial one.
ENGINES = ("auto", "pipelined", "serial")

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
    stage's packed cache and input memory): :func:`sigprop_fpga.hdl.stage.physical_memories`;
    for the serial engine (``lanes`` one int) those of the elaborated design."""
    from ..hdl.stage import physical_memories

    if isinstance(lanes, int):
        from ..hdl.serial import SerialEngine
        return [(d, w) for d, w, _ in design_memories(SerialEngine(net, lanes))]
    out = []
    for l in range(net.depth):
        out += physical_memories(net, l, lanes[l])
    return out


def design_memories(design) -> list[tuple[int, int, int]]:
    """(depth, width, read ports) of every memory of ``design`` (an Elaboratable), found by
    elaborating it: the memories exactly as the synthesis receives them."""
    from amaranth.hdl import Fragment, Shape
    from amaranth.hdl._mem import MemoryInstance

    def walk(frag):
        for sub, _name, _loc in frag.subfragments:
            if isinstance(sub, MemoryInstance):
                yield sub._data.depth, Shape.cast(sub._data.shape).width, len(sub._read_ports)
            else:
                yield from walk(sub)
    return list(walk(Fragment.get(design, None)))


def board_memories(net, lanes, n_samples: int) -> list[tuple[int, int, int]]:
    """(depth, width, read ports) of every memory of the board top: the engine's, the feeder's
    dataset (features; labels, read by the sequencer and the scorer) and learning curve, and the
    host link's frame buffer. ``lanes``: per stage (pipelined engine) or one int (serial)."""
    out = [(d, w, 1) for d, w in engine_memories(net, lanes)]
    if n_samples > 0:     # without a stored sample the feeder never runs: no memory of its own
        out += _dataset_memories(net, n_samples) + [(MAX_EPOCHS, 2 * curve_count_width(n_samples), 1)]
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
    return _mem_blocks(MAX_EPOCHS, 2 * curve_count_width(n_samples), family) + sum(_mem_blocks(d, w, family, r) for d, w, r in _dataset_memories(net, n_samples))


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


#: LUT model of the board top around :class:`~sigprop_fpga.hdl.serial.SerialEngine` (``lanes`` one
#: int), against :func:`serial_lut_features`; fitted by ``bench/calibrate_luts.py --engine serial``.
SERIAL_LUT_MODEL = {
    "ice40": {"const": 3420.7, "width_lanes": 14.06},
}
#: The serial engine's lanes (``hardware.lanes: auto``) are the most whose estimated logic stays
#: under this fraction of the device (placement and timing need the room), else the fewest that fit.
#: Measured: the digits iCEBreaker top on 4 lanes packs into 4,795 of 5,280 cells (90.8%) and
#: places and routes at 26 to 28 MHz over three seeds.
SERIAL_LUT_HEADROOM = 0.92


def serial_lut_features(net, lanes: int, n_samples: int) -> dict:
    """What the logic of the serial board top grows with: a constant (host link, feeder, clock,
    the sequencer) and the lanes times the weight and activation widths (operand multiplexers,
    rounding and saturation per lane, as wide as the words). The examples it is fitted on all
    have 16-bit weights and 8-bit activations."""
    p = net.prec(0)
    return {"const": 1, "width_lanes": lanes * (p.weight.width + p.activation.width)}


def estimate_resources(net, lanes, n_samples: int, family: str) -> dict:
    """Pre-synthesis estimate of the board top: ``lut``, ``dsp``, ``bram``.

    ``lanes``: per stage (the pipelined engine) or one int (the serial engine).
    DSP: one per lane (every multiplier is a lane; the softmax runs on its stage's lanes).
    Block RAM: every memory of the board top (:func:`board_memories`), each the cheapest tiling
    of the family's block configurations (exact: the memories are forced to block RAM).
    LUT: the linear model :data:`LUT_MODEL` of :func:`lut_features` (:data:`SERIAL_LUT_MODEL` of
    :func:`serial_lut_features`), calibrated per family on the example networks by
    ``bench/calibrate_luts.py``.
    """
    bram = bram_blocks(net, lanes, n_samples, family)
    if isinstance(lanes, int):
        dsp = lanes
        coef = SERIAL_LUT_MODEL.get(family)
        if coef is None:
            raise ValueError(f"no LUT model of the serial engine for the {family} family")
        feats = serial_lut_features(net, lanes, n_samples)
    else:
        dsp = sum(lanes)
        coef = LUT_MODEL[family]
        feats = lut_features(net, lanes, n_samples)
    lut = sum(coef[k] * v for k, v in feats.items())
    return {"lut": int(round(lut)), "dsp": int(dsp), "bram": int(bram)}


class EnginePlan:
    """The engine a build uses: ``engine`` (``pipelined`` or ``serial``), ``lanes`` (a tuple per
    stage, or one int), ``estimate`` (the board top's resources with no stored sample),
    ``engine_cls`` and ``why`` (one line: why this engine)."""

    def __init__(self, engine, lanes, estimate, why):
        from ..hdl.engine import SigPropEngine
        from ..hdl.serial import SerialEngine
        self.engine, self.lanes, self.estimate, self.why = engine, lanes, estimate, why
        self.engine_cls = SerialEngine if engine == "serial" else SigPropEngine

    def cycles(self, net) -> dict:
        """``cycles_per_sample``, ``sequential_cycles``, ``macs_per_sample``, ``ideal_cycles``."""
        if self.engine == "serial":
            from ..hdl.serial import serial_cycles, serial_macs
            macs = serial_macs(net)[0]
            c = serial_cycles(net, self.lanes)["train"]
            return {"cycles_per_sample": c, "sequential_cycles": c, "macs_per_sample": macs,
                    "ideal_cycles": macs / self.lanes}
        from ..compiler.estimate import estimate
        e = estimate(net, self.lanes)
        return {"cycles_per_sample": e.cycles_per_sample, "sequential_cycles": e.sequential_cycles,
                "macs_per_sample": e.macs_per_sample, "ideal_cycles": e.ideal_cycles_per_sample}


def plan_engine(net, target, engine: str = "auto") -> EnginePlan:
    """Choose the engine and its lanes for ``target``.

    ``pipelined``: the compiler's lanes (:func:`~sigprop_fpga.compiler.estimate.allocate_lanes`).
    ``serial``: ``hardware.lanes`` when it is one number, else the most lanes (at most the DSP
    budget and the device's DSPs) whose estimate fits with :data:`SERIAL_LUT_HEADROOM` (else the
    fewest that fit at all). ``auto``: pipelined if it fits (logic,
    DSPs and block RAM without stored samples), else serial.

    Raises
    ------
    FitError
        When the chosen (or, for ``auto``, either) engine cannot fit or, for ``serial``, does not
        support the network; the problems name the numbers and a hint.
    ValueError
        For an unknown engine.
    """
    from ..compiler.estimate import allocate_lanes
    from ..hdl.serial import _check_supported
    from .fit import FitError, fit_check

    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    problems = []
    if engine in ("auto", "pipelined"):
        lanes = allocate_lanes(net)
        est = estimate_resources(net, lanes, 0, target.family)
        problems = fit_check(est, target)
        if not problems:
            return EnginePlan("pipelined", lanes, est, "a pipelined stage per layer fits the device")
        if engine == "pipelined":
            raise FitError(problems)
        if target.family not in SERIAL_LUT_MODEL:
            raise FitError(problems)
    if target.family not in SERIAL_LUT_MODEL:        # engine == "serial"
        raise FitError([f"the serial engine has no LUT model for the {target.family} family yet "
                        f"(bench/calibrate_luts.py --engine serial fits one); use --engine pipelined"])
    try:
        _check_supported(net)
    except ValueError as e:
        if engine == "serial":
            raise FitError([f"the serial engine cannot build this network: {e}"]) from None
        raise FitError(problems + [f"the serial engine (one lane array for all layers) cannot help: {e}"]) from None
    hw = net.spec.hardware
    fixed = [layer.lanes for layer in net.spec.layers]
    explicit = fixed[0] if fixed and all(f is not None and f == fixed[0] for f in fixed) else None
    if explicit is not None:
        choices = [explicit]
    else:
        choices = range(max(1, min(hw.dsp_budget, target.available("dsp"))), 0, -1)
    last = None
    why = "the pipelined engine does not fit: serial engine" if problems else "serial engine"
    fitting = []
    for P in choices:
        est = estimate_resources(net, P, 0, target.family)
        bad = fit_check(est, target)
        if not bad:
            fitting.append((P, est))
            # leave the placer room: take the most lanes whose logic stays under SERIAL_LUT_HEADROOM
            if est["lut"] <= SERIAL_LUT_HEADROOM * target.available("lut"):
                return EnginePlan("serial", P, est, f"{why}, {P} lanes")
        last = bad
    if fitting:
        P, est = fitting[-1]
        return EnginePlan("serial", P, est, f"{why}, {P} lanes")
    raise FitError(problems + [f"serial engine with {choices[-1]} lane{'s' if choices[-1] > 1 else ''}: "
                               + "; ".join(last)])


def split_stored(samples: int, n_train: int, n_test: int) -> tuple[int, int]:
    """How many training and test samples ``samples`` stored samples hold: all of them when they
    fit, else the dataset's train/test proportion (so the autonomous mode still has a test split
    to score), at least one training sample."""
    samples = max(0, min(int(samples), n_train + n_test))
    if samples >= n_train + n_test:
        return n_train, n_test
    test = min(n_test, round(samples * n_test / (n_train + n_test)))
    if samples - test < 1:
        test = max(0, samples - 1)
    train = min(n_train, samples - test)
    return train, min(n_test, samples - train)


class BoardDesign:
    """Everything :func:`build_network` decides before synthesis: ``spec``, ``data``, ``net``,
    ``target``, ``plan`` (:class:`EnginePlan`), ``n_train`` / ``n_test`` (stored on chip),
    ``samples``, ``estimate`` (the fit-checked resources) and ``clock_mhz`` / ``achieved_mhz``;
    :meth:`top` elaborates nothing yet and returns the board top."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def top(self):
        from .top import SigPropBoardTop
        return SigPropBoardTop(self.net, self.data, self.target, self.achieved_mhz * 1e6, lanes=self.plan.lanes,
                               n_train=self.n_train, n_test=self.n_test, autostart_epochs=self.autostart_epochs,
                               engine_cls=self.plan.engine_cls)


def prepare_network(network, board: str | None = None, *, samples: int | None = None, autostart_epochs: int = 0,
                    engine: str = "auto") -> BoardDesign:
    """Load ``network``, choose the engine (:func:`plan_engine`), size the on-chip dataset and
    run the fit check (raises :class:`~sigprop_fpga.boards.fit.FitError` with the numbers)."""
    from ..compiler.spec import SpecError, load_spec
    from ..sim.datasets import load_dataset
    from ..sim.params import Network, check_network
    from . import get_target
    from .fit import FitError, fit_check

    spec = load_spec(network)
    data = load_dataset(spec)
    net = Network(spec, data.n_inputs, data.n_classes)
    check_network(net)
    try:
        target = get_target(board or spec.board)
    except KeyError as e:
        raise SpecError(spec.file, None, "board", str(e.args[0])) from None
    plan = plan_engine(net, target, engine)
    n_total = len(data.y_train) + len(data.y_test)
    if samples is None:
        samples = min(n_total, dataset_capacity(net, target, plan.lanes))
    n_train, n_test = split_stored(samples, len(data.y_train), len(data.y_test))
    est = estimate_resources(net, plan.lanes, n_train + n_test, target.family)
    problems = fit_check(est, target)
    if problems:
        raise FitError(problems)
    clock_mhz = spec.hardware.clock_for(target.name)
    return BoardDesign(spec=spec, data=data, net=net, target=target, plan=plan, n_train=n_train, n_test=n_test,
                       samples=samples, estimate=est, clock_mhz=clock_mhz, achieved_mhz=target.achieved_mhz(clock_mhz),
                       autostart_epochs=autostart_epochs)


def build_network(network, board: str | None = None, out_dir=None, *, progress=None, seed: int = 1,
                  samples: int | None = None, autostart_epochs: int = 0, engine: str = "auto") -> dict:
    """Build the bitstream of ``network`` for ``board``; returns the report (see ``build --json``).
    ``engine``: one of :data:`ENGINES` (:func:`plan_engine`)."""
    from ..toolchain import apply_amaranth_tool_env
    from .build import build

    d = prepare_network(network, board, samples=samples, autostart_epochs=autostart_epochs, engine=engine)
    plan, target = d.plan, d.target
    if progress:
        progress(f"engine: {plan.why}; {d.n_train} training and {d.n_test} test samples stored on chip")
    apply_amaranth_tool_env()
    out_dir = Path(out_dir) if out_dir else Path("build") / f"{d.spec.name}-{target.name}"
    report = build(d.top(), target, out_dir, clock_mhz=d.clock_mhz, name=d.spec.name, seed=seed, progress=progress,
                   estimated=d.estimate, stamp_extra={"network": Path(network).read_text(), "samples": d.samples,
                                                      "autostart": autostart_epochs, "engine": plan.engine})
    c = plan.cycles(d.net)
    cps = c["cycles_per_sample"]
    fmax = report.get("fmax_mhz")
    report.update({
        "network": str(network), "engine": plan.engine,
        "lanes": plan.lanes if isinstance(plan.lanes, int) else list(plan.lanes),
        "dataset_on_chip": {"train": d.n_train, "test": d.n_test},
        "cycles_per_sample": cps,
        "train_samples_per_second": (fmax * 1e6 / cps) if fmax else None,
        "train_samples_per_second_at_clock": d.achieved_mhz * 1e6 / cps,
        "macs_per_sample": c["macs_per_sample"],
        "mac_utilization": c["ideal_cycles"] / cps,
    })
    return report
