"""``sigprop-fpga build``: a network file to a bitstream, with a fit check before synthesis.

Steps: load and check the network, estimate the board resources of the whole top (engine, on-chip
dataset, host link) and refuse a design that cannot fit (with the numbers and a hint), then
synthesis, place and route and packing through :func:`.build.build` (atomic, stamped, skipped
when nothing changed), and a report with the estimate beside the result.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..compiler.spec import SpecError
from ..hdl.engines import ENGINES, Engine, EngineUnsupported, engine_for_rule, get_engine
from ..hdl.feeder import ROM_BANK_DEPTH, curve_count_width
from ..sim.datasets import load_network
from . import get_target
from .build import build
from ..toolchain import apply_amaranth_tool_env
from .fit import FitError, fit_check
from ..hdl.dataram import DATA_WORDS, SPRAM_BLOCKS
from .clocksearch import search_clock
from .top import DEFAULT_BAUD, SigPropBoardTop, choose_baud, feature_bytes, link_memories

__all__ = ["estimate_resources", "build_network", "dataset_capacity", "board_memories", "bram_blocks",
           "engine_choices", "EnginePlan", "plan_engine", "BoardDesign", "prepare_network",
           "split_stored"]


def engine_choices() -> tuple[str, ...]:
    """``--engine`` values: every registered engine (:data:`sigprop_fpga.hdl.engines.ENGINES`) and
    ``auto``, the first registered engine that supports the network and fits the device."""
    return ("auto",) + tuple(ENGINES)

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


def _mem_blocks(depth: int, width: int, family: str, read_ports: int = 1, granule: int | None = None) -> int:
    """Block RAMs of a ``depth x width`` memory with ``read_ports`` read ports (and at most one
    write port) whose write enables each cover ``granule`` bits (default: written whole): the
    cheapest tiling over the family's configurations; an iCE40 block has one read port, so each
    further read port costs a copy, and a bit-wise write mask, so the granule costs nothing."""
    if depth <= 0 or width <= 0:
        return 0
    configs = _BRAM_CONFIGS[family]
    if family == "ecp5" and read_ports == 1:
        configs = configs + ((512, 36),)
    if family == "ecp5":
        configs = tuple((d, _ecp5_data_bits(w, width if granule is None else granule, width)) for d, w in configs)
    blocks = min(math.ceil(width / w) * math.ceil(depth / d) for d, w in configs if w > 0)
    return blocks * (read_ports if family == "ice40" else 1)


def _ecp5_data_bits(port: int, granule: int, width: int) -> int:
    """Data bits a DP16KD port ``port`` bits wide holds of a memory ``width`` bits wide whose write
    enables cover ``granule`` bits each. The 9-, 18- and 36-bit ports have one byte enable per 9
    bits and yosys gives every write-enable group byte lanes of its own: 8-bit groups in a 36-bit
    port hold 32 bits (measured: a 512 x 768 memory written 8 bits at a time takes 24 DP16KD, written
    whole 22). The narrower ports have no byte enable: a group must cover the port."""
    if granule >= width:
        return port
    if port < 9:
        return port if granule >= port else 0
    lanes = port // 9
    if granule <= 9:
        return lanes * (9 // granule) * granule
    per_group = -(-granule // 9)
    return (lanes // per_group) * granule if lanes >= per_group else port


def ram_memories(net) -> list[tuple[int, int, int, int]]:
    """The memories of :class:`~sigprop_fpga.hdl.dataram.RamFeeder` as
    :func:`board_memories` lists them: the learning curve (its label queue is flip-flops; the
    dataset itself is in SPRAM)."""
    return [(MAX_EPOCHS, 32, 1, 32)]


def ram_capacity(net) -> int:
    """Samples the dataset RAM (four SPRAMs, 128 KiB) holds in the stream format."""
    return 2 * DATA_WORDS // (net.n_inputs * feature_bytes(net.spec.precision.input.width) + 1)


def board_memories(engine: Engine, net, lanes, n_samples: int) -> list[tuple[int, int, int, int]]:
    """(depth, width, read ports, write granule) of every memory of the board top: the engine's
    (:meth:`~sigprop_fpga.hdl.engines.Engine.block_memories`), the feeder's dataset (features;
    labels, read by the sequencer and the scorer) and learning curve, and the host link's frame
    buffer and sample and result FIFOs (all written whole)."""
    out = list(engine.block_memories(net, lanes))
    if n_samples > 0:     # without a stored sample the feeder never runs: no memory of its own
        out += _whole(_dataset_memories(net, n_samples) + [(MAX_EPOCHS, 2 * curve_count_width(n_samples), 1)])
    out += _whole(link_memories())
    return out


def _whole(memories) -> list[tuple[int, int, int, int]]:
    """(depth, width, read ports) memories written whole, with their write granule (the width)."""
    return [(d, w, r, w) for d, w, r in memories]


def _dataset_memories(net, n_samples: int) -> list[tuple[int, int, int]]:
    """The feeder's feature ROM banks and its label memory (two read ports)."""
    cb = max(1, (net.n_classes - 1).bit_length())
    in_width = max(net.spec.precision.input.width, cb)
    words = max(1, n_samples * net.n_inputs)
    banks = [(min(ROM_BANK_DEPTH, words - lo), in_width, 1) for lo in range(0, words, ROM_BANK_DEPTH)]
    return banks + [(max(1, n_samples), cb, 2)]


def bram_blocks(engine: Engine, net, lanes, n_samples: int, family: str) -> int:
    """Block RAMs of the board top with ``n_samples`` stored samples."""
    return sum(_mem_blocks(d, w, family, r, g) for d, w, r, g in board_memories(engine, net, lanes, n_samples))


def dataset_capacity(engine: Engine, net, target, lanes, bram_left: int | None = None) -> int:
    """How many samples (features + label) fit the block RAM of ``target`` beside the rest of the
    board top (``bram_left``: blocks free for the dataset, else computed)."""
    base = bram_blocks(engine, net, lanes, 0, target.family) - _dataset_blocks(net, 0, target.family)
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


#: Logic cells the uploadable dataset (``dataset="ram"``) adds to a board top, per family, beyond
#: what the engine's ``lut_model`` (fitted on board tops with the dataset in block RAM) counts: the
#: RAM feeder instead of the ROM one, the four SPRAMs' read multiplexer, the upload's DATA_FILL
#: and DATA_CRC, the N_TRAIN / N_TEST registers and the link's second region. Measured with
#: nextpnr --pack-only on examples/digits.yaml's iCEBreaker top (serial engine): packed logic cells
#: minus the model's estimate, the larger over 2 and 4 lanes (README, "Fitting the iCEBreaker";
#: re-measured after the timing work: 4 lanes 5,801, 2 lanes 4,982 packed).
DATASET_RAM_LUT = {"ice40": 1031}


def estimate_resources(engine: Engine, net, lanes, n_samples: int, family: str, dataset: str = "rom") -> dict:
    """Pre-synthesis estimate of the board top around ``engine``: ``lut``, ``dsp``, ``bram``.

    DSP: one per lane (every multiplier is a lane; the softmax runs on its stage's lanes).
    Block RAM: every memory of the board top (:func:`board_memories`), each the cheapest tiling
    of the family's block configurations (exact: the memories are forced to block RAM).
    LUT: the engine's linear model (:attr:`~sigprop_fpga.hdl.engines.Engine.lut_model` of
    :meth:`~sigprop_fpga.hdl.engines.Engine.lut_features`), calibrated per family on the example
    networks' board tops by ``bench/calibrate_luts.py``; with ``dataset="ram"`` (the uploadable
    dataset in SPRAM) plus :data:`DATASET_RAM_LUT` and the RAM feeder's block RAM, and ``spram``.
    """
    if dataset not in ("rom", "ram"):
        raise ValueError(f"dataset must be 'rom' or 'ram', not {dataset!r}")
    coef = engine.lut_model.get(family)
    if coef is None:
        raise FitError([f"the {engine.name} engine has no LUT model for the {family} family yet "
                        f"(bench/calibrate_luts.py --engine {engine.name} fits one)"])
    lut = sum(coef[k] * v for k, v in engine.lut_features(net, lanes).items())
    if dataset == "ram":
        if family not in DATASET_RAM_LUT:
            raise FitError([f"no uploadable dataset RAM on the {family} family"])
        return {"lut": int(round(lut + DATASET_RAM_LUT[family])), "dsp": int(engine.dsp(net, lanes)),
                "bram": int(bram_blocks(engine, net, lanes, 0, family))
                + sum(_mem_blocks(d, w, family, r, g) for d, w, r, g in ram_memories(net)),
                "spram": SPRAM_BLOCKS}
    return {"lut": int(round(lut)), "dsp": int(engine.dsp(net, lanes)),
            "bram": int(bram_blocks(engine, net, lanes, n_samples, family))}


class EnginePlan:
    """The engine a build uses: ``engine`` (an :class:`~sigprop_fpga.hdl.engines.Engine`),
    ``lanes`` (in the engine's form), ``estimate`` (the board top's resources with no stored
    sample) and ``why`` (one line: why this engine)."""

    def __init__(self, engine: Engine, lanes, estimate, why):
        self.engine, self.lanes, self.estimate, self.why = engine, lanes, estimate, why

    @property
    def lanes_json(self):
        return self.engine.lanes_json(self.lanes)

    def cycles(self, net):
        return self.engine.cycles(net, self.lanes)


def _plan_one(engine: Engine, net, target, dataset: str = "rom") -> tuple[EnginePlan | None, list[str]]:
    """The lanes ``engine`` takes on ``target``: the most whose logic stays under the engine's
    headroom, else the fewest that fit; ``(None, problems)`` when nothing fits. ``dataset``: the
    board top's (``"ram"`` costs logic, :data:`DATASET_RAM_LUT`)."""
    engine.check(net)
    if target.family not in engine.lut_model:
        return None, [f"the {engine.name} engine has no LUT model for the {target.family} family yet "
                      f"(bench/calibrate_luts.py --engine {engine.name} fits one)"]
    fitting, last = [], []
    choices = engine.lane_choices(net, target.available("dsp"))
    for lanes in choices:
        est = estimate_resources(engine, net, lanes, 0, target.family, dataset)
        last = fit_check(est, target)
        if not last:
            fitting.append((lanes, est))
            if est["lut"] <= engine.lut_headroom * target.available("lut"):
                break
    if not fitting:
        if len(choices) == 1:
            return None, last
        return None, [f"{engine.describe(net, choices[-1])} (the fewest lanes): " + "; ".join(last)]
    lanes, est = fitting[-1]
    return EnginePlan(engine, lanes, est, engine.describe(net, lanes)), []


def plan_engine(net, target, engine: str = "auto", dataset: str = "rom", rule: str | None = None) -> EnginePlan:
    """Choose the engine and its lanes for ``target``.

    A named engine: its lanes (:meth:`~sigprop_fpga.hdl.engines.Engine.lane_choices`; the most
    that fit with the engine's LUT headroom). ``auto``: the first registered engine of the
    learning rule (``rule``, default the network file's ``learning.rule``) that supports the
    network and fits (logic, DSPs and block RAM without stored samples). ``dataset``: the
    board top's dataset, ``"rom"`` (block RAM) or ``"ram"`` (the uploadable SPRAM dataset, whose
    logic counts too).

    Raises
    ------
    FitError
        When the chosen (or, for ``auto``, every) engine cannot fit or does not support the
        network; the problems name the numbers and a hint.
    ValueError
        For an unknown engine, or a named engine that trains another rule than ``rule``.
    """
    if engine != "auto":
        eng = get_engine(engine) if rule is None else engine_for_rule(rule, engine)
        try:
            plan, problems = _plan_one(eng, net, target, dataset)
        except EngineUnsupported as e:
            raise FitError([f"the {eng.name} engine cannot build this network: {e}"]) from None
        if plan is None:
            raise FitError(problems)
        return plan
    rule = net.spec.learning.rule if rule is None else engine_for_rule(rule).rule     # (a known rule)
    problems, passed = [], []
    for eng in ENGINES.values():
        if target.family not in eng.lut_model or eng.rule != rule:
            continue      # not a candidate on this family (no LUT model), or another learning rule
        try:
            plan, bad = _plan_one(eng, net, target, dataset)
        except EngineUnsupported as e:
            problems.append(f"the {eng.name} engine cannot build this network: {e}")
            passed.append(f"the {eng.name} engine cannot build the network")
            continue
        if plan is not None:
            if passed:
                plan.why = f"{'; '.join(passed)}: {plan.why}"
            return plan
        problems += bad
        passed.append(f"the {eng.name} engine does not fit")
    if not problems:
        raise FitError([f"no engine of the {rule} rule has a LUT model for the {target.family} family yet "
                        f"(bench/calibrate_luts.py fits one)"])
    raise FitError(problems)


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
    ``samples``, ``estimate`` (the fit-checked resources), ``clock_mhz`` / ``achieved_mhz``
    (``"max"`` / ``None`` for ``clock_mhz: max``: the build finds the clock), ``baud`` (the host
    link's rate at the fixed clock, :func:`~.top.choose_baud`; ``None`` until the clock is known)
    and ``dataset`` (``"rom"``: the stored samples in block RAM; ``"ram"``: the iCE40UP5K's
    SPRAMs, uploaded by ``run``, where the block RAM left over holds fewer samples than the SPRAMs);
    :meth:`top` elaborates nothing yet and returns the board top."""

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def top(self, clock_mhz: float | None = None):
        """The board top for a ``sync`` clock of ``clock_mhz`` MHz (it sets the UART divisor and
        the link's rate, :func:`~.top.choose_baud`).

        Default: the clock the network file fixes; for ``clock_mhz: max``, where only the build
        finds the clock, the board oscillator (RTL for simulation or inspection)."""
        if clock_mhz is None:
            clock_mhz = self.achieved_mhz if self.achieved_mhz is not None else self.target.clock_in_mhz
        return SigPropBoardTop(self.net, self.data, self.target, clock_mhz * 1e6, baud=choose_baud(clock_mhz * 1e6),
                               dataset=self.dataset, lanes=self.plan.lanes,
                               n_train=self.n_train, n_test=self.n_test, autostart_epochs=self.autostart_epochs,
                               engine_cls=self.plan.engine.component_cls)


def prepare_network(network, board: str | None = None, *, samples: int | None = None, autostart_epochs: int = 0,
                    engine: str = "auto", loaded: tuple | None = None, rule: str | None = None) -> BoardDesign:
    """Load ``network`` (or take ``loaded``, :func:`load_network`'s result), choose the engine
    of the learning rule ``rule`` (default the file's; :func:`plan_engine`), size the on-chip
    dataset and run the fit check (raises :class:`~sigprop_fpga.boards.fit.FitError` with the
    numbers)."""
    spec, data, net = loaded if loaded is not None else load_network(network)
    try:
        target = get_target(board or spec.board)
    except KeyError as e:
        raise SpecError(spec.file, None, "board", str(e.args[0])) from None
    n_total = len(data.y_train) + len(data.y_test)

    def stored(plan):
        """(dataset, samples) of the board top around ``plan``: the block RAM left over, or the
        SPRAMs (the host uploads the dataset there) when they hold more."""
        if samples is not None:
            return "rom", samples
        n = min(n_total, dataset_capacity(plan.engine, net, target, plan.lanes))
        if (n < n_total and not autostart_epochs and target.available("spram") >= SPRAM_BLOCKS
                and target.family in DATASET_RAM_LUT
                and net.spec.precision.input.width <= 16 and net.n_classes <= 256
                and ram_capacity(net) > n):
            return "ram", min(n_total, ram_capacity(net))
        return "rom", n

    plan = plan_engine(net, target, engine, rule=rule)
    dataset, n_stored = stored(plan)
    if dataset == "ram":
        # the uploadable dataset's logic counts too: plan again with it (fewer lanes if need be)
        # (with fewer lanes the block RAM may hold the dataset after all); when even that does
        # not fit, the dataset stays in the block RAM left over
        try:
            plan = plan_engine(net, target, engine, dataset="ram", rule=rule)
            dataset, n_stored = stored(plan)
        except FitError:
            dataset, n_stored = "rom", min(n_total, dataset_capacity(plan.engine, net, target, plan.lanes))
    n_train, n_test = split_stored(n_stored, len(data.y_train), len(data.y_test))
    est = estimate_resources(plan.engine, net, plan.lanes, 0 if dataset == "ram" else n_train + n_test,
                             target.family, dataset)
    problems = fit_check(est, target)
    if problems:
        raise FitError(problems)
    clock_mhz = spec.hardware.clock_for(target.name)
    fixed = spec.hardware.fixed_clock_for(target.name)
    try:
        achieved = None if fixed is None else target.achieved_mhz(fixed)
    except ValueError as e:          # a clock the board's PLL cannot make
        raise SpecError(spec.file, None, "hardware.clock_mhz", f"{e} on {target.name}") from None
    try:
        baud = None if achieved is None else choose_baud(achieved * 1e6)
    except ValueError as e:
        raise SpecError(spec.file, None, "hardware.clock_mhz", f"the host link on {target.name}: {e}") from None
    return BoardDesign(spec=spec, data=data, net=net, target=target, plan=plan, n_train=n_train, n_test=n_test,
                       dataset=dataset,
                       samples=n_stored, estimate=est, clock_mhz=clock_mhz, achieved_mhz=achieved, baud=baud,
                       autostart_epochs=autostart_epochs)


def build_network(network, board: str | None = None, out_dir=None, *, progress=None, seed: int = 1,
                  samples: int | None = None, autostart_epochs: int = 0, engine: str = "auto",
                  loaded: tuple | None = None, rule: str | None = None) -> dict:
    """Build the bitstream of ``network`` for ``board``; returns the report (see ``build --json``).
    ``engine``: one of :func:`engine_choices` (:func:`plan_engine`); ``rule``: the learning rule
    (default the file's ``learning.rule``), whose engine ``auto`` picks. The default folder is
    ``build/<name>-<board>``, ``build/<name>-<board>-<rule>`` for a rule other than SigProp."""
    d = prepare_network(network, board, samples=samples, autostart_epochs=autostart_epochs, engine=engine,
                        loaded=loaded, rule=rule)
    plan, target = d.plan, d.target
    if progress:
        progress(f"engine: {plan.why}; {d.n_train} training and {d.n_test} test samples stored on chip")
    apply_amaranth_tool_env()
    trains = plan.engine.rule
    out_dir = Path(out_dir) if out_dir else Path("build") / (f"{d.spec.name}-{target.name}"
                                                             + ("" if trains == "sigprop" else f"-{trains}"))
    common = dict(name=d.spec.name, seed=seed, progress=progress, estimated=d.estimate,
                  stamp_extra={"network": Path(network).read_text(), "samples": d.samples,
                               "autostart": autostart_epochs, "engine": plan.engine.name})
    if d.achieved_mhz is None:       # clock_mhz: max
        report = search_clock(d.top, target, out_dir, baud=DEFAULT_BAUD, **common)   # 3 Mbaud within budget
    else:
        report = build(d.top(), target, out_dir, clock_mhz=d.clock_mhz, **common)
    c = plan.cycles(d.net)
    cps = c.per_sample
    fmax = report.get("fmax_mhz")
    built = report["clock_mhz"]["achieved"]
    report.update({
        "network": str(network), "rule": plan.engine.rule, "engine": plan.engine.name, "lanes": plan.lanes_json,
        "baud": choose_baud(built * 1e6),
        "dataset_on_chip": {"train": d.n_train, "test": d.n_test},
        "cycles_per_sample": cps,
        # at the clock the bitstream runs at (its PLL), not at fmax
        "train_samples_per_second": built * 1e6 / cps,
        "train_samples_per_second_at_fmax": (fmax * 1e6 / cps) if fmax else None,
        "macs_per_sample": c.macs,
        "mac_utilization": c.mac_utilization,
    })
    return report
