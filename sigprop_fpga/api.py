"""The Python API: a network file as a design object whose methods are the toolchain's steps.

::

    import sigprop_fpga as sf

    d = sf.load("examples/digits.yaml")
    d.check().to_json()["estimate"]["cycles_per_sample"]
    d.train(model="golden").test_accuracy
    d.compile("build/digits", engine="serial")          # Verilog, RTLIL and a manifest
    d.simulate(samples=100).bit_exact                   # Verilator against the golden model
    d.build("ulx3s-85f")                                # a bitstream
    d.flow("build/digits-flow", steps=("check", "plan", "elaborate", "verilog"))

Every method returns a :class:`Result` (``to_json()`` gives what the command line's ``--json``
writes); the command line (:mod:`.cli`) is a thin layer over these methods. :meth:`Design.flow`
runs named steps in order and saves each step's artefact, as FINN's build steps do:

=============  ==============================================  ========================
step           does                                            artefact
=============  ==============================================  ========================
``load``       the network file, its data, the resolved net    ``load.json``
``check``      the estimate per stage and the board plan       ``check.json``
``plan``       the engine and lanes ``build`` would take       ``plan.json``
``elaborate``  the engine's Amaranth component to RTLIL        ``<name>.il``
``verilog``    RTLIL to Verilog                                ``<name>.v``
``simulate``   Verilator against the golden model              ``sim.json``
``synthesize`` synthesis, place and route, packing             ``build.json``, bitstream
``report``     one Markdown page with plots                    ``report.md``
=============  ==============================================  ========================
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from amaranth.back import rtlil, verilog

from .boards.fit import FitError
from .boards.flow import build_network, prepare_network
from .boards import run as board_run
from .boards.run import DEFAULT_BAUD, run_on_board, stream_on_board
from .compile import choose_engine, compile_network
from .compiler.estimate import estimate
from .compiler.rule import RULE_NAMES
from .io import write_atomic, write_json
from .sim.datasets import load_network
from .report import make_report
from .rtl import simulate_rtl
from .sim import baselines, checkpoint
from .sim.train import train_sigprop
from .sim.tune import tune

__all__ = ["load", "Design", "Result", "CheckResult", "TrainResult", "CompileResult", "SimResult",
           "BuildResult", "RunResult", "STEPS", "MODELS", "RULES"]

#: ``train(model=...)``: the float reference or the bit-exact golden model (not a hardware engine).
MODELS = ("float", "golden")
#: ``train(rule=...)``: a streaming rule with float and golden models (:data:`RULE_NAMES`: SigProp,
#: bp, fa, dfa), or a float batch baseline for the same network (``sigprop-batch``, ``bp-adam``).
RULES = RULE_NAMES + ("sigprop-batch", "bp-adam")
_BASELINES = {"bp-adam": "train_backprop", "sigprop-batch": "train_sigprop_batch"}


@dataclasses.dataclass
class Result:
    """What a step returns: its JSON record (``to_json()``), plus typed accessors in subclasses."""

    data: dict

    def to_json(self) -> dict:
        return self.data

    def __getitem__(self, key):
        return self.data[key]


class CheckResult(Result):
    @property
    def cycles_per_sample(self) -> int:
        return self.data["estimate"]["cycles_per_sample"]

    @property
    def fits(self) -> bool:
        return bool(self.data["board_plan"]["fits"])


class TrainResult(Result):
    @property
    def test_accuracy(self) -> float:
        return self.data["test_accuracy"]

    @property
    def train_accuracy(self) -> float:
        return self.data["train_accuracy"]


class CompileResult(Result):
    @property
    def engine(self) -> str:
        return self.data["engine"]

    @property
    def files(self) -> dict:
        return self.data["files"]


class SimResult(Result):
    @property
    def bit_exact(self) -> bool:
        return bool(self.data.get("bit_exact"))

    @property
    def cycles_per_sample(self) -> int | None:
        return self.data.get("cycles_per_sample")


class BuildResult(Result):
    @property
    def timing_met(self) -> bool:
        return bool(self.data.get("timing_met"))

    @property
    def bitstream(self) -> str | None:
        return self.data.get("bitstream")


class RunResult(Result):
    @property
    def bit_exact(self) -> bool:
        return bool(self.data.get("bit_exact"))


def load(network: str | Path) -> "Design":
    """Load a network file (YAML) and its data set; raises
    :class:`~sigprop_fpga.compiler.spec.SpecError` or
    :class:`~sigprop_fpga.sim.datasets.DatasetError` with one line naming the file and key."""
    return Design(network)


class Design:
    """A network file bound to its data: ``spec``, ``data`` and the resolved ``net``.

    Relative paths inside the network file (a ``.npz`` data set) are resolved against the file's
    folder, so a design loads the same from any working directory.
    """

    def __init__(self, network: str | Path):
        self.path = Path(network)
        self.spec, self.data, self.net = load_network(self.path)
        self._loaded = (self.spec, self.data, self.net)

    def __repr__(self) -> str:
        return (f"Design({str(self.path)!r}: {self.data.n_inputs}-{'-'.join(map(str, self.spec.widths))}"
                f"-{self.data.n_classes}, board {self.spec.board})")

    # -- steps ----------------------------------------------------------------------------------
    def plan(self, board: str | None = None, engine: str = "auto", rule: str | None = None):
        """What ``build`` makes for ``board`` (default: the network file's) and ``rule`` (default:
        the file's ``learning.rule``): a :class:`~sigprop_fpga.boards.flow.BoardDesign` (raises
        :class:`~sigprop_fpga.boards.fit.FitError` when nothing fits)."""
        return prepare_network(self.path, board, engine=engine, loaded=self._loaded, rule=rule)

    def _board_plan(self, board: str) -> dict:
        try:
            d = self.plan(board)
        except FitError as e:
            return {"board": board, "fits": False, "problems": e.problems}
        c = d.plan.cycles(d.net)
        return {"board": board, "fits": True, "engine": d.plan.engine.name, "lanes": d.plan.lanes_json,
                "why": d.plan.why, **c.to_json(), "estimate": d.estimate,
                "available": {k: d.target.available(k) for k in d.estimate},
                "samples_on_chip": {"train": d.n_train, "test": d.n_test}}

    def check(self, board: str | None = None) -> CheckResult:
        """The pipelined estimate per stage and what ``build`` makes for ``board``."""
        spec, data = self.spec, self.data
        return CheckResult({"name": spec.name, "file": spec.file, "dataset": data.name,
                            "n_inputs": data.n_inputs, "n_classes": data.n_classes,
                            "n_train": len(data.y_train), "n_test": len(data.y_test),
                            "widths": list(spec.widths), "spec": _spec_json(spec),
                            "lr_shifts": [self.net.lr_shift(l) for l in range(self.net.depth)],
                            "estimate": estimate(self.net).to_json(),
                            "board_plan": self._board_plan(board or spec.board)})

    def train(self, model: str = "golden", rule: str = "sigprop", epochs: int | None = None,
              progress: bool = False, init_weights: str | Path | None = None,
              save_weights: str | Path | None = None) -> TrainResult:
        """Train in software: ``model`` ``float`` (the reference) or ``golden`` (the bit-exact
        integer model) of ``rule``: ``sigprop``, ``bp``, ``fa``, ``dfa`` (per-sample SGD, an output
        layer for the last three); the batch baselines ``sigprop-batch`` and ``bp-adam`` run in float only.
        ``init_weights``: a checkpoint (:mod:`.sim.checkpoint`) to continue from (the golden model
        takes its raw integers and LFSR positions, the float model its real values; SigProp only);
        ``save_weights``: write the trained state there as a checkpoint."""
        if model not in MODELS:
            raise ValueError(f"model must be one of {', '.join(MODELS)}, not {model!r}")
        if rule not in RULES:
            raise ValueError(f"rule must be one of {', '.join(RULES)}, not {rule!r}")
        epochs = epochs or self.spec.learning.epochs
        if rule != "sigprop" and (init_weights is not None or save_weights is not None):
            raise ValueError(f"checkpoints (init_weights, save_weights) hold the SigProp datapath's state; "
                             f"rule {rule} has none")
        if rule in RULE_NAMES:
            prior = checkpoint.load(init_weights, self.net) if init_weights is not None else None
            report, eng = train_sigprop(model, self.net, self.data, epochs, progress=progress, init=prior, rule=rule)
            out = report.to_json()
            out["name"] = self.spec.name
            out["init_weights"] = str(init_weights) if init_weights is not None else None
            out["samples_seen"] = (prior.samples_seen if prior else 0) + report.samples
            if save_weights is not None:
                ck = checkpoint.from_model(self.net, eng, prior=prior, samples=report.samples, epochs=epochs,
                                           command=f"train --model {model}")
                out["saved_weights"] = str(checkpoint.save(save_weights, ck))
        else:
            if model != "float":
                raise ValueError(f"rule {rule} runs on the float model only (got model {model})")
            out = _train_baseline(rule, self.spec, self.data, epochs, progress)
        out["network"] = self.spec.name
        out["file"] = self.spec.file
        return TrainResult(out)

    def compile(self, out: str | Path, engine: str = "pipelined", measure: int = 0) -> CompileResult:
        """Verilog, RTLIL and ``manifest.json`` in ``out``; ``engine`` a registered engine or
        ``auto`` (what ``build`` makes for the network file's board)."""
        return CompileResult(compile_network(self.path, out, measure, engine=engine, loaded=self._loaded))

    def simulate(self, engine: str = "pipelined", lanes: int | None = None, epochs: int | None = None,
                 samples: int | None = None, check_every: int = 0, waves: str | Path | None = None,
                 progress: bool = False, netlist: str | None = None, init_weights: str | Path | None = None,
                 save_weights: str | Path | None = None, rule: str = "sigprop") -> SimResult:
        """The generated design in Verilator, every prediction (and the full state every
        ``check_every`` samples and after each epoch) compared with the golden model.
        ``netlist="ecp5"`` or ``"ice40"``: the netlist that family's Yosys flow maps the design
        to, simulated with the family's cell models, instead of the generated Verilog.
        ``init_weights``: start the RTL (through its state port) and the golden model from a
        checkpoint; ``save_weights``: write the RTL's final state, read back, as a checkpoint.
        ``rule``: ``sigprop`` or a rule with an engine (``dfa``, ``bp``): that rule's datapath against
        its golden model (``engine`` stays at its default)."""
        if samples is not None and epochs is None:
            epochs = 1
        return SimResult(simulate_rtl(self.path, epochs=epochs, samples=samples, check_every=check_every,
                                      waves=waves, progress=progress, engine=engine, lanes=lanes,
                                      loaded=self._loaded, netlist=netlist, init_weights=init_weights,
                                      save_weights=save_weights, rule=rule))

    def build(self, board: str | None = None, out: str | Path | None = None, engine: str = "auto",
              samples: int | None = None, autostart_epochs: int = 0, seed: int = 1, progress=None,
              rule: str | None = None) -> BuildResult:
        """Fit check, synthesis, place and route: a bitstream for ``board`` training ``rule``
        (default: the file's ``learning.rule``; ``bp``, ``dfa``: their engines)."""
        return BuildResult(build_network(self.path, board, out, progress=progress, seed=seed, samples=samples,
                                         autostart_epochs=autostart_epochs, engine=engine, loaded=self._loaded,
                                         rule=rule))

    def run(self, port: str | None = None, baud: int | None = None, epochs: int | None = None,
            stream: bool = False, samples: int | None = None, window: int | None = None,
            timeout: float = 2.0, progress: bool = False, poll: float = 0.05, sim: bool = False,
            board: str | None = None, garble_every: int = 0, init_weights: str | Path | None = None,
            save_weights: str | Path | None = None, rule: str | None = None) -> RunResult:
        """Train on the board at ``port`` (anything pyserial opens; autonomous, or ``stream`` from
        the host) and compare its whole state with the golden model. With ``sim`` the board is the
        top ``build`` makes for ``board`` simulated in Verilator, driven by the same client through
        a pseudo-terminal at the board's clock and ``baud`` (``garble_every``: corrupt the CRC of
        every so many request frames). ``init_weights``: the board starts from that checkpoint
        (:mod:`.sim.checkpoint`; with stochastic rounding only one whose LFSRs are at their seeds);
        ``save_weights``: after a bit-exact run, the board's state read back as a checkpoint.
        ``rule``: with ``sim``, the learning rule of the simulated board top (default: the file's);
        a real board says which rule it trains (its ENGINE register) and is compared with that
        rule's golden model."""
        weights = {"init_weights": init_weights, "save_weights": save_weights}
        if init_weights is not None:
            checkpoint.load(init_weights, self.net)        # a wrong file is refused before any work
        if sim:
            from .rtl import simulate_board
            if port is not None:
                raise ValueError("a simulated board has no port; give either port or sim=True")
            r = simulate_board(self.path, board=board or self.spec.board, baud=baud, epochs=epochs or
                               self.spec.learning.epochs, stream=stream, stream_samples=samples,
                               stream_window=window, garble_every=garble_every, progress=progress,
                               timeout_s=7200, rule=rule, **weights)
            return RunResult(r)
        if port is None:
            raise ValueError("run needs a port (or sim=True)")
        transport = board_run.open_port(port, baud or DEFAULT_BAUD, timeout=timeout)   # (looked up at call time)
        try:
            if stream:
                r = stream_on_board(self.path, transport, epochs=epochs, samples=samples, window=window,
                                    progress=progress, poll_s=poll, **weights)
            else:
                r = run_on_board(self.path, transport, epochs=epochs, progress=progress, poll_s=poll, **weights)
        finally:
            transport.close()
        return RunResult(r)

    def tune(self, model: str = "golden", epochs: int | None = None, jobs: int | None = None,
             progress: bool = False) -> Result:
        """A grid over ``lr_shift`` x ``logit_shift`` x the scaling, scored on a validation split
        carved from the training split (:func:`~sigprop_fpga.sim.tune.tune`)."""
        if model not in MODELS:
            raise ValueError(f"model must be one of {', '.join(MODELS)}, not {model!r}")
        return Result(tune(self.spec, self.net, model=model, epochs=epochs, jobs=jobs, progress=progress))

    @staticmethod
    def report(folder: str | Path) -> Path:
        """``folder/report.md`` (and its plots) from the JSON files the steps wrote there."""
        return make_report(folder)

    # -- the flow as named steps -----------------------------------------------------------------
    def flow(self, out: str | Path, steps=("load", "check", "plan", "elaborate", "verilog"), *,
             board: str | None = None, engine: str = "auto", progress=None, **options) -> dict:
        """Run ``steps`` (names of :data:`STEPS`) in order, saving each step's artefact in ``out``;
        returns ``{step: artefact path}``. ``options`` go to the steps that take them
        (``samples``, ``epochs``, ``check_every`` for ``simulate``; ``seed`` for ``synthesize``)."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        ctx = {"board": board or self.spec.board, "engine": engine, "progress": progress, **options}
        done = {}
        for name in steps:
            if name not in STEPS:
                raise ValueError(f"unknown step {name!r}; expected one of {', '.join(STEPS)}")
            if progress:
                progress(f"step {name}")
            done[name] = str(STEPS[name](self, out, ctx))
        return done


def _spec_json(spec) -> dict:
    def fix(o):
        if isinstance(o, dict):
            if set(o) == {"int_bits", "frac_bits"}:
                return f"Q{o['int_bits']}.{o['frac_bits']}"
            return {k: fix(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [fix(v) for v in o]
        if isinstance(o, Path):
            return str(o)
        return o

    return fix(dataclasses.asdict(spec))


def _train_baseline(rule: str, spec, data, epochs: int, progress: bool) -> dict:
    fn = getattr(baselines, _BASELINES[rule])
    xtr, xte = data.float_inputs()
    if progress:
        print(f"train float {rule}: {epochs} epochs ...", file=sys.stderr)
    r = fn(xtr, data.y_train, xte, data.y_test, hidden=spec.widths, epochs=epochs,
           seed=spec.learning.seed, n_classes=data.n_classes)
    return {"model": "float", "rule": rule, "epochs": epochs,
            "samples": r.samples, "test_accuracy": float(r.test_accuracy),
            "train_accuracy": float(r.train_accuracy), "curve": [float(c) for c in r.curve],
            "seconds": r.seconds, "samples_per_second": r.samples / r.seconds if r.seconds else 0.0}


# ---------------------------------------------------------------------------------------------
# Named steps: step(design, out_dir, ctx) -> the artefact's path (ctx carries what a step leaves
# for the next one)

def _step_load(d: Design, out: Path, ctx: dict) -> Path:
    p = out / "load.json"
    write_json(p, {"file": d.spec.file, "spec": _spec_json(d.spec), "dataset": d.data.name,
                   "n_inputs": d.data.n_inputs, "n_classes": d.data.n_classes,
                   "n_train": len(d.data.y_train), "n_test": len(d.data.y_test)})
    return p


def _step_check(d: Design, out: Path, ctx: dict) -> Path:
    p = out / "check.json"
    write_json(p, d.check(ctx["board"]).to_json())
    return p


def _step_plan(d: Design, out: Path, ctx: dict) -> Path:
    eng, lanes, why = choose_engine(d.net, ctx["engine"]) if ctx["engine"] != "auto" else (None, None, None)
    if eng is None:
        bd = d.plan(ctx["board"])
        eng, lanes, why = bd.plan.engine, bd.plan.lanes, bd.plan.why
    ctx["plan"] = (eng, lanes)
    p = out / "plan.json"
    write_json(p, {"board": ctx["board"], "engine": eng.name, "lanes": eng.lanes_json(lanes), "why": why,
                   "readback_latency": eng.readback_latency, **eng.cycles(d.net, lanes).to_json()})
    return p


def _step_elaborate(d: Design, out: Path, ctx: dict) -> Path:
    if "plan" not in ctx:
        _step_plan(d, out, ctx)
    eng, lanes = ctx["plan"]
    ctx["rtlil"] = rtlil.convert(eng.component(d.net, lanes), name="top")
    p = out / f"{d.spec.name}.il"
    write_atomic(p, ctx["rtlil"])
    return p


def _step_verilog(d: Design, out: Path, ctx: dict) -> Path:
    if "rtlil" not in ctx:
        _step_elaborate(d, out, ctx)
    p = out / f"{d.spec.name}.v"
    write_atomic(p, verilog._convert_rtlil_text(ctx["rtlil"]))
    return p


def _step_simulate(d: Design, out: Path, ctx: dict) -> Path:
    eng = ctx["plan"][0].name if "plan" in ctx else ("pipelined" if ctx["engine"] == "auto" else ctx["engine"])
    lanes = ctx["plan"][1] if "plan" in ctx and isinstance(ctx["plan"][1], int) else None
    r = d.simulate(engine=eng, lanes=lanes, epochs=ctx.get("epochs"), samples=ctx.get("samples"),
                   check_every=ctx.get("check_every", 0), progress=bool(ctx.get("progress")))
    p = out / "sim.json"
    write_json(p, r.to_json())
    return p


def _step_synthesize(d: Design, out: Path, ctx: dict) -> Path:
    r = d.build(ctx["board"], out / "bitstream", engine=ctx["engine"], seed=ctx.get("seed", 1),
                progress=ctx.get("progress"))
    p = out / "build.json"
    write_json(p, r.to_json())
    return p


def _step_report(d: Design, out: Path, ctx: dict) -> Path:
    return d.report(out)


#: The flow's named steps, in their order (:meth:`Design.flow`).
STEPS = {"load": _step_load, "check": _step_check, "plan": _step_plan, "elaborate": _step_elaborate,
         "verilog": _step_verilog, "simulate": _step_simulate, "synthesize": _step_synthesize,
         "report": _step_report}

