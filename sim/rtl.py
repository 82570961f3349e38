"""``sigprop-fpga sim``: the generated design, cycle-accurate in Verilator, against the golden model.

Compiles :class:`..hdl.trainer.Trainer` (the engine behind the on-chip dataset feeder) to
Verilog, builds it with Verilator (cached by a hash of the Verilog and the options, so a second
run does not rebuild), and runs the cocotb bench ``sim/benches/tb_trainer.py``, which trains and
evaluates while comparing every prediction, and all state every ``check_every`` samples, with
the golden model.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

__all__ = ["simulate_rtl", "BENCH_DIR", "trainer_verilog"]

BENCH_DIR = Path(__file__).resolve().parent / "benches"
TOP = "sigprop_trainer"


def _say(progress, msg):
    if progress:
        print(f"sim: {msg}", file=sys.stderr, flush=True)


def trainer_verilog(net, data, lanes, n_train, n_test, max_epochs, engine_cls=None) -> str:
    """Verilog of the :class:`..hdl.trainer.Trainer`; ``lanes`` one int selects the serial engine."""
    from amaranth.back import verilog

    from ..hdl.engine import SigPropEngine
    from ..hdl.serial import SerialEngine
    from ..hdl.trainer import Trainer

    if engine_cls is None:
        engine_cls = SerialEngine if isinstance(lanes, int) else SigPropEngine
    top = Trainer(net, data, lanes, n_train=n_train, n_test=n_test, max_epochs=max_epochs, engine_cls=engine_cls)
    return verilog.convert(top, name=TOP, emit_src=False)


def simulate_rtl(network: str | Path, *, epochs: int | None = None, samples: int | None = None,
                 check_every: int = 0, waves: str | Path | None = None, build_root: str | Path | None = None,
                 progress: bool = True, plant=None, timeout_s: float | None = None,
                 engine: str = "pipelined", lanes: int | None = None) -> dict:
    """Train ``network`` in Verilator and compare with the golden model; returns the report.

    ``samples`` limits training to the first ``samples`` training samples (one epoch unless
    ``epochs`` is given); ``epochs`` defaults to the network file's. The test split is evaluated
    after every epoch. ``engine``: ``pipelined`` (a stage per layer, the compiler's lanes) or
    ``serial`` (:class:`..hdl.serial.SerialEngine` with ``lanes`` lanes, default 4).
    """
    from ..compiler.estimate import allocate_lanes, estimate
    from ..compiler.spec import load_spec
    from ..hdl.engine import SigPropEngine
    from ..hdl.serial import SerialEngine
    from ..toolchain import apply_verilator_env
    from . import verilator as vl
    from .datasets import load_dataset
    from .params import Network, check_network

    spec = load_spec(network)
    data = load_dataset(spec)
    net = Network(spec, data.n_inputs, data.n_classes)
    check_network(net)
    if engine not in ("pipelined", "serial"):
        raise ValueError(f"engine must be pipelined or serial, not {engine!r}")
    if engine == "serial":
        from ..hdl.serial import _check_supported, serial_cycles, serial_macs
        _check_supported(net)
        P = 4 if lanes is None else int(lanes)
        hw_lanes, lanes = P, (P,) * net.depth
        sc = serial_cycles(net, P)["train"]
        est_cycles, est_ideal, est_stages = sc, serial_macs(net)[0] / P, [sc]
    else:
        if lanes is not None:
            raise ValueError("lanes is set by the network file for the pipelined engine")
        lanes = hw_lanes = allocate_lanes(net)
        est = estimate(net, lanes)
        est_cycles, est_ideal = est.cycles_per_sample, est.ideal_cycles_per_sample
        est_stages = [s.cycles for s in est.stages]
    n_train = len(data.y_train) if samples is None else min(samples, len(data.y_train))
    n_test = len(data.y_test)
    if epochs is None:
        epochs = 1 if samples is not None else spec.learning.epochs
    apply_verilator_env()
    build_root = Path(build_root) if build_root else Path("build") / "cache" / "verilator"

    t0 = time.perf_counter()
    _say(progress, f"{spec.name}: elaborating the design ("
         + (f"serial engine, {hw_lanes} lanes)" if engine == "serial" else f"{net.depth} stages, lanes {list(lanes)})"))
    text = trainer_verilog(net, data, hw_lanes, n_train, n_test, max(epochs, 1))
    t_convert = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="sigprop-sim-") as tmp:
        vpath = Path(tmp) / f"{TOP}.v"
        vpath.write_text(text)
        _say(progress, "building with Verilator (cached by the hash of the Verilog and options)")
        info = vl.build(vpath, TOP, build_root, waves=waves is not None)
    _say(progress, f"build {'cached' if info.cached else f'took {info.build_time_s:.1f} s'}; "
         f"training {n_train} samples x {epochs} epochs, evaluating {n_test} after each")
    config = {"network": str(Path(network).resolve()), "lanes": list(lanes), "epochs": epochs,
              "n_train": n_train, "n_test": n_test, "check_every": check_every,
              "cycles_per_sample": est_cycles,
              "rb_latency": (SerialEngine if engine == "serial" else SigPropEngine).rb_latency}
    if plant is not None:
        config["plant"] = list(plant)
    run_dir = Path(tempfile.mkdtemp(prefix="sigprop-run-", dir=build_root))
    r = vl.run(info, "tb_trainer", test_dir=BENCH_DIR, config=config, run_dir=run_dir,
               waves_file=str(Path(waves).resolve()) if waves else None, timeout_s=timeout_s)
    data_out = (r.data or {}).get("trainer")
    if data_out is None:
        raise vl.SimulationError(f"the bench wrote no results; see {r.log_file}: "
                                 + "; ".join(r.messages)[:500])
    out = {"name": spec.name, "network": str(network), "engine": "rtl", "rule": "sigprop", "datapath": engine,
           "simulator": "verilator", "verilator_version": info.verilator_version,
           "lanes": list(lanes), "convert_seconds": t_convert, "build_seconds": info.build_time_s,
           "build_cached": info.cached, "passed": r.passed, "failed": r.failed, "log": str(r.log_file)}
    out.update(data_out)
    out.setdefault("bit_exact", False)
    out["ideal_cycles_per_sample"] = est_ideal
    out["estimated_cycles_per_sample"] = est_cycles
    out["estimated_stage_cycles"] = est_stages
    cps = out.get("cycles_per_sample")
    out["mac_utilization"] = est_ideal / cps if cps else None
    if engine == "serial":
        out["macs_per_sample"] = serial_macs(net)[0]
        out["estimate"] = {"datapath": "serial", "lanes": hw_lanes, "train_cycles": sc,
                           "train_cycles_max": serial_cycles(net, hw_lanes)["train_max"]}
    else:
        out["macs_per_sample"] = est.macs_per_sample
        out["estimate"] = est.to_json()
    if waves:
        out["waves"] = str(waves)
    if out["bit_exact"] and r.failed == 0:
        import shutil

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
    import json

    from amaranth.back import verilog

    from ..boards.top import SigPropBoardCore
    from ..compiler.estimate import allocate_lanes
    from ..compiler.spec import load_spec
    from ..toolchain import apply_verilator_env
    from . import verilator as vl
    from .datasets import load_dataset
    from .params import Network, check_network

    spec = load_spec(network)
    data = load_dataset(spec)
    net = Network(spec, data.n_inputs, data.n_classes)
    check_network(net)
    n_train = len(data.y_train) if samples is None else min(samples, len(data.y_train))
    apply_verilator_env()
    build_root = Path(build_root) if build_root else Path("build") / "cache" / "verilator"
    _say(progress, f"{spec.name}: elaborating the board top (UART divisor {divisor})")
    if serial_lanes is None:
        core = SigPropBoardCore(net, data, divisor=divisor, lanes=allocate_lanes(net), n_train=n_train)
    else:
        from ..hdl.serial import SerialEngine
        core = SigPropBoardCore(net, data, divisor=divisor, lanes=serial_lanes, n_train=n_train,
                                engine_cls=SerialEngine)
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
