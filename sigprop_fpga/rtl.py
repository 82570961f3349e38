"""``sigprop-fpga sim``: the generated design, cycle-accurate in Verilator, against the golden model.

Compiles :class:`..hdl.trainer.Trainer` (the engine behind the on-chip dataset feeder) to
Verilog, builds it with Verilator (cached by a hash of the Verilog and the options, so a second
run does not rebuild), and runs the cocotb bench ``sim/benches/tb_trainer.py``, which trains and
evaluates while comparing every prediction, and all state every ``check_every`` samples, with
the golden model.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from amaranth.back import verilog

from .sim.datasets import load_network
from .boards.top import SigPropBoardCore
from .hdl.engines import Engine, get_engine
from .hdl.trainer import Trainer
from .sim import verilator as vl
from .sim.collapse import collapse_check
from .toolchain import apply_verilator_env

__all__ = ["simulate_rtl", "simulate_board", "BENCH_DIR", "trainer_verilog"]

BENCH_DIR = vl.BENCH_DIR
TOP = "sigprop_trainer"


def _say(progress, msg):
    if progress:
        print(f"sim: {msg}", file=sys.stderr, flush=True)


def trainer_verilog(net, data, engine: Engine, lanes, n_train, n_test, max_epochs) -> str:
    """Verilog of the :class:`..hdl.trainer.Trainer` around ``engine`` with ``lanes``."""
    top = Trainer(net, data, lanes, n_train=n_train, n_test=n_test, max_epochs=max_epochs,
                  engine_cls=engine.component_cls)
    return verilog.convert(top, name=TOP, emit_src=False)


def simulate_rtl(network: str | Path, *, epochs: int | None = None, samples: int | None = None,
                 check_every: int = 0, waves: str | Path | None = None, build_root: str | Path | None = None,
                 progress: bool = True, plant=None, timeout_s: float | None = None,
                 engine: str = "pipelined", lanes: int | None = None, loaded: tuple | None = None,
                 x_seed: int | None = None) -> dict:
    """Train ``network`` in Verilator and compare with the golden model; returns the report.

    ``samples`` limits training to the first ``samples`` training samples (one epoch unless
    ``epochs`` is given); ``epochs`` defaults to the network file's. The test split is evaluated
    after every epoch. ``engine``: a registered engine's name (:mod:`..hdl.engines`), ``lanes``
    its lane count where the engine takes one number (the serial engine; default 4), else the
    network file's. ``loaded``: :func:`..boards.flow.load_network`'s result, to skip loading.
    ``x_seed``: build with :data:`..sim.verilator.X_UNIQUE_ARGS` and start every register that
    has no initial value (and every X the design assigns) from values drawn with this seed,
    instead of Verilator's fixed choice.
    """
    spec, data, net = loaded if loaded is not None else load_network(network)
    eng = get_engine(engine)
    eng.check(net)
    choices = eng.lane_choices(net)
    if lanes is not None:
        if len(choices) != 1 or not isinstance(choices[0], int):
            raise ValueError(f"lanes is set by the network file for the {eng.name} engine")
        choices = [int(lanes)]
    hw_lanes = choices[0]
    lanes = eng.stage_lanes(net, hw_lanes)
    cyc = eng.cycles(net, hw_lanes)
    n_train = len(data.y_train) if samples is None else min(samples, len(data.y_train))
    n_test = len(data.y_test)
    if epochs is None:
        epochs = 1 if samples is not None else spec.learning.epochs
    apply_verilator_env()
    build_root = Path(build_root) if build_root else Path("build") / "cache" / "verilator"

    t0 = time.perf_counter()
    _say(progress, f"{spec.name}: elaborating the design ({eng.describe(net, hw_lanes)})")
    text = trainer_verilog(net, data, eng, hw_lanes, n_train, n_test, max(epochs, 1))
    t_convert = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="sigprop-sim-") as tmp:
        vpath = Path(tmp) / f"{TOP}.v"
        vpath.write_text(text)
        _say(progress, "building with Verilator (cached by the hash of the Verilog and options)")
        info = vl.build(vpath, TOP, build_root, waves=waves is not None,
                        extra_args=vl.X_UNIQUE_ARGS if x_seed is not None else ())
    _say(progress, f"build {'cached' if info.cached else f'took {info.build_time_s:.1f} s'}; "
         f"training {n_train} samples x {epochs} epochs, evaluating {n_test} after each")
    config = {"network": str(Path(network).resolve()), "lanes": list(lanes), "epochs": epochs,
              "n_train": n_train, "n_test": n_test, "check_every": check_every,
              "cycles_per_sample": cyc.per_sample, "rb_latency": eng.readback_latency}
    if plant is not None:
        config["plant"] = list(plant)
    run_dir = Path(tempfile.mkdtemp(prefix="sigprop-run-", dir=build_root))
    r = vl.run(info, "tb_trainer", test_dir=BENCH_DIR, config=config, run_dir=run_dir,
               waves_file=str(Path(waves).resolve()) if waves else None, timeout_s=timeout_s,
               plusargs=vl.x_random_plusargs(x_seed) if x_seed is not None else ())
    data_out = (r.data or {}).get("trainer")
    if data_out is None:
        raise vl.SimulationError(f"the bench wrote no results; see {r.log_file}: "
                                 + "; ".join(r.messages)[:500])
    out = {"name": spec.name, "network": str(network), "model": "rtl", "rule": "sigprop", "engine": eng.name,
           "simulator": "verilator", "verilator_version": info.verilator_version,
           "lanes": list(lanes), "convert_seconds": t_convert, "build_seconds": info.build_time_s,
           "build_cached": info.cached, "passed": r.passed, "failed": r.failed, "log": str(r.log_file),
           "x_seed": x_seed}
    out.update(data_out)
    out.setdefault("bit_exact", False)
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
    if waves:
        out["waves"] = str(waves)
    if out["bit_exact"] and r.failed == 0:
        shutil.rmtree(run_dir, ignore_errors=True)   # keep the logs only of a failed run
        out["log"] = None
    return out


def simulate_board(network: str | Path, *, epochs: int = 1, samples: int | None = None, divisor: int = 8,
                   garble_frames=(), junk_after=(), build_root: str | Path | None = None,
                   progress: bool = True, timeout_s: float = 1200, stream: bool = False,
                   stream_samples: int | None = None, stream_window: int | None = None,
                   serial_lanes: int | None = None) -> dict:
    """The board top in Verilator, trained by the real host client (``sigprop-fpga run``) through a
    pseudo-terminal bridged to its UART pins; returns the client's report plus the link stats.

    ``samples`` is how many training samples the chip stores (default all). With ``stream`` the
    client runs ``run --stream`` (the host sends the samples: all the training samples of the
    dataset, or the first ``stream_samples``, whatever the chip stores; ``stream_window`` samples
    in flight). With ``serial_lanes`` the board top holds the serial engine
    (:class:`..hdl.serial.SerialEngine`, as ``build`` makes for the iCEBreaker) with that many lanes;
    the client learns it from the ENGINE register."""
    spec, data, net = load_network(network)
    n_train = len(data.y_train) if samples is None else min(samples, len(data.y_train))
    apply_verilator_env()
    build_root = Path(build_root) if build_root else Path("build") / "cache" / "verilator"
    _say(progress, f"{spec.name}: elaborating the board top (UART divisor {divisor})")
    eng = get_engine("pipelined" if serial_lanes is None else "serial")
    lanes = eng.lane_choices(net)[0] if serial_lanes is None else serial_lanes
    core = SigPropBoardCore(net, data, divisor=divisor, lanes=lanes, n_train=n_train, engine_cls=eng.component_cls)
    text = verilog.convert(core, name="sigprop_board", emit_src=False)
    with tempfile.TemporaryDirectory(prefix="sigprop-board-") as tmp:
        vpath = Path(tmp) / "sigprop_board.v"
        vpath.write_text(text)
        _say(progress, "building with Verilator")
        info = vl.build(vpath, "sigprop_board", build_root)
    run_dir = Path(tempfile.mkdtemp(prefix="sigprop-board-run-", dir=build_root)).resolve()   # the client runs elsewhere
    client_json = run_dir / "client.json"
    config = {"network": str(Path(network).resolve()), "epochs": epochs, "divisor": divisor,
              "client_json": str(client_json), "garble_frames": list(garble_frames),
              "junk_after": list(junk_after), "timeout_s": timeout_s,
              "client_args": (["--stream"] + (["--samples", str(stream_samples)] if stream_samples else [])
                              + (["--window", str(stream_window)] if stream_window else []) if stream else [])}
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
    out.update({"link_stats": bench.get("stats"), "client_returncode": bench.get("returncode"),
                "bench_passed": r.passed, "bench_failed": r.failed, "verilator_version": info.verilator_version})
    return out
