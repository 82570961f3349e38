"""The engine interface: what every SigProp training engine tells the rest of the toolchain.

An engine is one way to lay the learning rule out in hardware. :class:`Engine` is the protocol;
:data:`ENGINES` holds the registered implementations by name, and every consumer (``check``,
``compile``, ``sim``, ``build``, ``run``, ``report``, the benches and the LUT calibration) reaches
an engine only through it, so adding an engine is one :func:`register` call:

=============  ============================================  =============================
name           component                                     lanes
=============  ============================================  =============================
``pipelined``  :class:`.engine.SigPropEngine`: a stage per   a tuple, one count per stage
               layer, layers overlap (DESIGN.md §2)
``serial``     :class:`.serial.SerialEngine`: one lane       one count for every layer
               array walks the layers, vectors in block RAM
``dfa``        :class:`.dfa.DfaEngine`: direct feedback      one count for every layer
               alignment (``rule = "dfa"``), one lane array
``bp``         :class:`.backprop.BackpropEngine`: backprop   one count for every layer
               (``rule = "bp"``), the dfa engine's lanes
``fa``         :class:`.dfa.FaEngine`: feedback alignment    one count for every layer
               (``rule = "fa"``), the dfa engine's adders
               carrying ``d_{l+1}`` back through signs
=============  ============================================  =============================

An engine names the learning rule it builds (:attr:`Engine.rule`); ``sim --rule`` picks the
engine of that rule.

Every engine answers the same sample stream and the same readback map
(:func:`sigprop_fpga.compiler.statemap.readback_map`), so the golden comparison, the host link and
the board tops work with any of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from amaranth.hdl import Fragment, Shape
from amaranth.hdl._mem import MemoryInstance

from ..compiler.estimate import (allocate_lanes, dfa_cycles, dfa_macs, estimate, serial_cycles, serial_macs,
                                 stage_inference_cycles)
from ..compiler.network import Network
from ..compiler.rule import Phase
from ..compiler.statemap import physical_memories
from .backprop import BackpropEngine
from .dfa import DfaEngine, FaEngine, check_dfa_support
from .engine import SigPropEngine
from .serial import SerialEngine, check_serial_support

__all__ = ["Engine", "EngineCycles", "EngineUnsupported", "ENGINES", "register", "get_engine",
           "PipelinedEngine", "SerialLaneEngine", "DfaLaneEngine", "BackpropLaneEngine", "FaLaneEngine", "design_memories", "engine_for_rule"]


def design_memories(design) -> list[tuple[int, int, int, int]]:
    """(depth, width, read ports, write granule) of every block memory of ``design`` (an
    Elaboratable), found by elaborating it: the memories exactly as the synthesis receives them,
    but for those marked ``ram_style`` ``distributed`` or ``logic`` (LUT RAM or flip-flops, no
    block RAM: the stage's h and t chunks). The write granule is the bits one write enable covers (the width for
    a memory written whole or never)."""
    def walk(frag):
        for sub, _name, _loc in frag.subfragments:
            if isinstance(sub, MemoryInstance) and sub._attrs.get("ram_style") in ("distributed", "logic"):
                continue
            if isinstance(sub, MemoryInstance):
                width = Shape.cast(sub._data.shape).width
                granule = min([p._granularity for p in sub._write_ports] + [width])
                yield sub._data.depth, width, len(sub._read_ports), granule
            else:
                yield from walk(sub)
    return list(walk(Fragment.get(design, None)))


class EngineUnsupported(ValueError):
    """The engine cannot build this network; the message says why, in one line."""


@dataclass(frozen=True)
class EngineCycles:
    """Cycles of one training sample on an engine, from its cycle model (exact: the hardware
    tests compare every sample).

    Attributes
    ----------
    per_sample : int
        Cycles between training samples in steady state (the slowest stage when layers overlap).
    sequential : int
        Cycles of one sample through every layer, one after the other.
    macs : int
        Multiply-accumulates per training sample (padding excluded).
    ideal : float
        ``macs / lanes``: cycles if every lane multiplied in every cycle.
    stages : tuple of dict
        Per stage of the pipeline, or per layer for an engine that walks the layers, cycles per
        :class:`Phase`.
    inference : tuple of int
        Cycles of an inference sample, per stage (one entry for an engine that walks the layers).
    """

    per_sample: int
    sequential: int
    macs: int
    ideal: float
    stages: tuple = field(default_factory=tuple)
    inference: tuple = field(default_factory=tuple)

    @property
    def mac_utilization(self) -> float:
        return self.ideal / self.per_sample

    def to_json(self) -> dict:
        return {"cycles_per_sample": self.per_sample, "sequential_cycles": self.sequential,
                "macs_per_sample": self.macs, "ideal_cycles_per_sample": self.ideal,
                "mac_utilization": self.mac_utilization,
                "phases": [{str(k): v for k, v in st.items()} for st in self.stages]}


class Engine:
    """The protocol of a training engine (subclass it and :func:`register` an instance).

    Attributes
    ----------
    name : str
        The ``--engine`` name.
    component_cls : type
        The Amaranth component, called as ``component_cls(net, lanes, params)``.
    overlaps_layers : bool
        Whether layers work on consecutive samples at once (stages), so that the cycles between
        samples are the slowest stage's rather than the sum.
    lut_headroom : float
        ``build`` takes the most lanes whose estimated logic stays under this fraction of the
        device (placement and timing need room), else the fewest that fit.
    """

    name: str = ""
    #: The learning rule the engine builds (:class:`~sigprop_fpga.compiler.rule.Rule` value).
    rule: str = "sigprop"
    component_cls: type = None
    overlaps_layers: bool = False
    lut_headroom: float = 1.0

    @property
    def readback_latency(self) -> int:
        """Cycles from ``rb_addr`` to its ``rb_data``."""
        return self.component_cls.rb_latency

    def check(self, net: Network) -> None:
        """Raise :class:`EngineUnsupported` when the engine cannot build ``net``."""

    def supports(self, net: Network) -> bool:
        try:
            self.check(net)
        except EngineUnsupported:
            return False
        return True

    def lane_choices(self, net: Network, dsp_available: int | None = None):
        """Lane allocations to try, best first (``dsp_available``: the device's multipliers)."""
        raise NotImplementedError

    def stage_lanes(self, net: Network, lanes) -> tuple[int, ...]:
        """Lanes per stage as the readback map sees them."""
        raise NotImplementedError

    def lanes_json(self, lanes):
        """``lanes`` as reports write it."""
        return list(lanes)

    def cycles(self, net: Network, lanes) -> EngineCycles:
        raise NotImplementedError

    def memories(self, net: Network, lanes) -> list[tuple[int, int]]:
        """``(depth, width)`` of every memory the engine instantiates."""
        return [(d, w) for d, w, _, _ in self.block_memories(net, lanes)]

    def block_memories(self, net: Network, lanes) -> list[tuple[int, int, int, int]]:
        """``(depth, width, read ports, write granule)`` of every memory the engine instantiates,
        what the block RAM count depends on (:func:`design_memories`); by default found by
        elaborating the engine."""
        return design_memories(self.component(net, lanes))

    def lut_features(self, net: Network, lanes) -> dict:
        """What the board top's logic grows with around this engine (the LUT model's features)."""
        raise NotImplementedError

    #: Per device family, coefficients of :meth:`lut_features` fitted on board tops by
    #: ``bench/calibrate_luts.py`` (logic cells as nextpnr counts them).
    lut_model: dict = {}

    def dsp(self, net: Network, lanes) -> int:
        """Multipliers: every one is a lane."""
        return sum(self.stage_lanes(net, lanes))

    def component(self, net: Network, lanes=None, params: dict | None = None):
        """The engine's Amaranth component."""
        return self.component_cls(net, lanes, params)

    def describe(self, net: Network, lanes) -> str:
        return f"{self.name} engine, lanes {self.lanes_json(lanes)}"


class PipelinedEngine(Engine):
    """A :class:`~.stage.LayerStage` per layer; layers work on consecutive samples at once."""

    name = "pipelined"
    component_cls = SigPropEngine
    overlaps_layers = True
    lut_model = {
        "ice40": {"const": 4895.0, "stages": 1526.0, "lanes": 168.2, "vector_bits": 3.128},
        "ecp5": {"const": 6123.0, "stages": 614.1, "lanes": 291.7, "vector_bits": 1.595},
    }

    def lane_choices(self, net, dsp_available=None):
        return [allocate_lanes(net)]

    def stage_lanes(self, net, lanes):
        return tuple(lanes)

    def cycles(self, net, lanes):
        e = estimate(net, tuple(lanes))
        return EngineCycles(e.cycles_per_sample, e.sequential_cycles, e.macs_per_sample,
                            e.ideal_cycles_per_sample, tuple(s.phases for s in e.stages),
                            tuple(stage_inference_cycles(net, l, lanes[l]) for l in range(net.depth)))

    def block_memories(self, net, lanes):
        # from the state map, without elaborating the stages (the lane search asks for many)
        return [(d, w, 1, g) for l in range(net.depth) for d, w, g in physical_memories(net, l, lanes[l])]

    def lut_features(self, net, lanes):
        """A constant (host link, feeder, clock), the stages (control, softmax, counters), the lanes
        (operand multiplexers, rounding and saturation per lane) and the bits each stage holds in
        flip-flops (h, t, the delta FIFOs, the logits)."""
        bits = 0
        for l in range(net.depth):
            P = lanes[l]
            p = net.prec(l)
            entries = -(-net.units(l) // P) * P
            bits += 2 * entries * p.activation.width
            if net.spec.learning.loss == "class_ce":
                bits += entries * (2 * p.error.width + 2)
            bits += net.n_classes * (2 * p.activation.width + 8)
        return {"const": 1, "stages": net.depth, "lanes": sum(lanes), "vector_bits": bits}


class SerialLaneEngine(Engine):
    """One lane array for every layer (:class:`~.serial.SerialEngine`): the small-FPGA engine."""

    name = "serial"
    component_cls = SerialEngine
    #: Measured: the digits iCEBreaker top on 4 lanes packs into 4,795 of 5,280 cells (90.8%) and
    #: places and routes at 26 to 28 MHz over three seeds; on 2 lanes with the dataset in the
    #: SPRAMs it packs 4,982 (94.4%; estimated 5,127, 97.1%, DATASET_RAM_LUT being the larger
    #: over 2 and 4 lanes) and places and routes at 28.8 MHz.
    lut_headroom = 0.98
    lut_model = {"ice40": {"const": 3420.7, "width_lanes": 14.06}}
    #: Lanes when neither the network file nor a board says.
    default_lanes = 4

    def check(self, net):
        try:
            check_serial_support(net)
        except ValueError as e:
            raise EngineUnsupported(str(e)) from None

    def lane_choices(self, net, dsp_available=None):
        fixed = [layer.lanes for layer in net.spec.layers]
        if fixed and all(f is not None and f == fixed[0] for f in fixed):
            return [fixed[0]]
        if dsp_available is None:
            return [self.default_lanes]
        return list(range(max(1, min(net.spec.hardware.dsp_budget, dsp_available)), 0, -1))

    def stage_lanes(self, net, lanes):
        return (int(lanes),) * net.depth

    def lanes_json(self, lanes):
        return int(lanes)

    def cycles(self, net, lanes):
        sc = serial_cycles(net, int(lanes))
        macs = serial_macs(net)[0]
        return EngineCycles(sc["train"], sc["train"], macs, macs / int(lanes), tuple(sc["layers"]),
                            (sc["inference"],))

    def dsp(self, net, lanes):
        return int(lanes)

    def lut_features(self, net, lanes):
        """A constant (host link, feeder, clock, the sequencer) and the lanes times the weight and
        activation widths (operand multiplexers, rounding and saturation per lane, as wide as the
        words). The examples it is fitted on all have 16-bit weights and 8-bit activations."""
        p = net.prec(0)
        return {"const": 1, "width_lanes": int(lanes) * (p.weight.width + p.activation.width)}

    def describe(self, net, lanes):
        return f"serial engine, {int(lanes)} lanes"


#: DSP blocks of the dfa and bp engines' softmax, beside the lanes: its 17 x 18-bit product takes
#: two (two MULT18X18D, two SB_MAC16 in the digits netlists, bench/rules.py).
SOFTMAX_DSP = 2


class DfaLaneEngine(Engine):
    """Direct feedback alignment on one lane array (:class:`~.dfa.DfaEngine`)."""

    name = "dfa"
    rule = "dfa"
    component_cls = DfaEngine
    #: Fitted on board tops packed by nextpnr (``bench/calibrate_luts.py --engine dfa --networks
    #: examples/digits.yaml examples/iris.yaml --lanes 8 2``): ECP5 digits 10,353 / 7,381 and iris
    #: 9,100 / 5,649 TRELLIS_COMB at 8 / 2 lanes (residuals +-120); iCE40 digits 10,873 / 7,728
    #: ICESTORM_LC at 8 / 2 lanes give its constant and lanes, its classes coefficient is the
    #: ECP5 fit's (the iris iCE40 tops were not packed). The bp and fa engines share the model
    #: (README, "Learning rules on the chip": their placed builds against it).
    lut_model = {"ecp5": {"const": 4058.6, "lanes": 535.25, "classes": 213.2},
                 "ice40": {"const": 4547.7, "lanes": 524.2, "classes": 213.2}}
    #: Lanes when neither the network file nor a board says.
    default_lanes = 4

    def check(self, net):
        try:
            check_dfa_support(net)
        except ValueError as e:
            raise EngineUnsupported(str(e)) from None

    def lane_choices(self, net, dsp_available=None):
        """The file's lane count if every layer names the same, else on a device as many lanes as
        ``hardware.dsp_budget`` (what SigProp's engines get from the same budget: equal lanes for
        the comparison), fewer where the device's multipliers run out beside the softmax's
        (:data:`SOFTMAX_DSP`), down to 1."""
        fixed = [layer.lanes for layer in net.spec.layers]
        if fixed and all(f is not None and f == fixed[0] for f in fixed):
            return [fixed[0]]
        if dsp_available is None:
            return [self.default_lanes]
        return list(range(max(1, min(net.spec.hardware.dsp_budget, dsp_available - SOFTMAX_DSP)), 0, -1))

    def stage_lanes(self, net, lanes):
        return (int(lanes),) * net.depth

    def lanes_json(self, lanes):
        return int(lanes)

    def cycles(self, net, lanes):
        dc = dfa_cycles(net, int(lanes), self.rule)
        macs = dfa_macs(net, self.rule)
        return EngineCycles(dc["train"], dc["train"], macs, macs / int(lanes), (dc["phases"],), (dc["inference"],))

    def dsp(self, net, lanes):
        return int(lanes) + SOFTMAX_DSP

    def lut_features(self, net, lanes):
        """A constant (host link, feeder, sequencer), the lanes (operand multiplexers, update
        rounding and saturation per lane, the feedback adders) and the classes (the softmax's
        logits and probabilities, the output error registers)."""
        return {"const": 1, "lanes": int(lanes), "classes": net.n_classes}

    def describe(self, net, lanes):
        return f"{self.name} engine, {int(lanes)} lane{'' if int(lanes) == 1 else 's'}"


class BackpropLaneEngine(DfaLaneEngine):
    """Backprop on the dfa engine's lane array (:class:`~.backprop.BackpropEngine`)."""

    name = "bp"
    rule = "bp"
    component_cls = BackpropEngine


class FaLaneEngine(DfaLaneEngine):
    """Feedback alignment on the dfa engine's lane array and adders (:class:`~.dfa.FaEngine`)."""

    name = "fa"
    rule = "fa"
    component_cls = FaEngine


def engine_for_rule(rule: str, engine: str | None = None) -> "Engine":
    """The engine that builds ``rule``: ``engine`` if given (it must build that rule), else the
    first registered one that does."""
    rule = str(rule)
    if engine is not None:
        eng = get_engine(engine)
        if eng.rule != rule:
            raise ValueError(f"engine {engine} builds the {eng.rule} rule, not {rule}")
        return eng
    for eng in ENGINES.values():
        if eng.rule == rule:
            return eng
    have = sorted({e.rule for e in ENGINES.values()})
    raise ValueError(f"no engine builds the {rule} rule yet; engines exist for {', '.join(have)}")


#: The registered engines by name, in the order ``--engine auto`` tries them.
ENGINES: dict[str, Engine] = {}


def register(engine: Engine) -> Engine:
    if not engine.name or engine.name == "auto":
        raise ValueError(f"an engine needs a name other than 'auto', got {engine.name!r}")
    ENGINES[engine.name] = engine
    return engine


def get_engine(name: str) -> Engine:
    try:
        return ENGINES[name]
    except KeyError:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {name!r}") from None


register(PipelinedEngine())
register(SerialLaneEngine())
register(DfaLaneEngine())
register(BackpropLaneEngine())
register(FaLaneEngine())
