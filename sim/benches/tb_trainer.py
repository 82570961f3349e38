"""cocotb bench: the whole generated design in Verilator against the golden model, bit for bit.

Run by :func:`sigprop_fpga.rtl.simulate_rtl` (not collected by pytest). The DUT is
:class:`sigprop_fpga.hdl.trainer.Trainer`: the bench sets ``epochs``, pulses ``start`` and lets
Verilator run free; Python wakes once per prediction (a sample boundary), steps the golden model
through the same sample, and compares. Every ``check_every`` training samples (and at every
epoch end and at the end) it holds the feeder, lets the pipeline drain, reads every weight, bias,
table, cache and counter through the readback port and compares them all. The first difference
stops the run and is reported with its sample, stage, signal, index, expected and actual value.

Configuration (``SIGPROP_TB_CONFIG``): ``network`` (path), ``lanes``, ``epochs``, ``n_train``,
``n_test``, ``check_every`` (0: epoch ends only), ``plant`` (optional ``[stage, mem, index...]``
altered by one LSB in the golden model after the first sample, to prove the checker catches it),
``init_weights`` (optional checkpoint: written through the state port after reset, read back and
compared, and the golden model starts from it), ``save_weights`` (optional path: the final
read-back state is written there as a checkpoint, with ``engine``).
"""

import time

import cocotb
import numpy as np
from cocotb.triggers import First, ReadOnly, RisingEdge, Timer
from cocotb.simtime import get_sim_time

from sigprop_fpga.compiler.statemap import counter_names, readback_requests
from sigprop_fpga.sim import checkpoint
from sigprop_fpga.sim.compare import compare_state
from sigprop_fpga.sim.cocotb_util import load_config, read_int, reset, start_clock, write_results
from sigprop_fpga.sim.datasets import load_network
from sigprop_fpga.sim.golden import GoldenSigProp
from sigprop_fpga.sim.golden_rules import GoldenRule

PERIOD = 10


class Mismatch(AssertionError):
    def __init__(self, info: dict):
        self.info = info
        super().__init__(", ".join(f"{k} {v}" for k, v in info.items()))


async def _readback(dut, reqs, latency: int) -> dict:
    """Read every request through the readback port (call in a writable phase; returns in one).

    An address presented after edge ``t`` is answered after edge ``t + latency`` (the engine's
    ``rb_latency``).
    """
    words = {}
    dut.rb_en.value = 1
    pending = []
    for key, a in reqs + [(None, 0)] * latency:
        await RisingEdge(dut.clk)
        dut.rb_addr.value = a
        await ReadOnly()
        pending.append(key)
        if len(pending) == latency + 1:
            k = pending.pop(0)
            if k is not None:
                words[k] = read_int(dut.rb_data, signed=True)
    await RisingEdge(dut.clk)
    dut.rb_en.value = 0
    return words


async def _load_checkpoint(dut, net, lanes, prior, reqs, latency: int, golden) -> int:
    """Write ``prior`` through the state port (one entry a cycle, the engine idle after reset),
    read the whole state back and compare it with the golden model started from the same file;
    returns the entries written."""
    writes = checkpoint.state_writes(net, lanes, prior)
    dut.rb_en.value = 1
    dut.wb_en.value = 1
    for a, v in writes:
        dut.rb_addr.value = a
        dut.wb_data.value = v
        await RisingEdge(dut.clk)
    dut.wb_en.value = 0
    dut.rb_en.value = 0
    await RisingEdge(dut.clk)
    words = await _readback(dut, reqs, latency)
    # the counters count this run (zero after reset), as the golden model's do
    mismatch = compare_state(net, lanes, words, golden, 0)
    if mismatch is not None:
        mismatch["signal"] = f"checkpoint load: {mismatch['signal']}"
        raise Mismatch(mismatch)
    return len(writes)


@cocotb.test()
async def train_and_compare(dut):
    """Train in Verilator; every prediction and (every K samples) all state equal the golden model."""
    cfg = load_config()
    spec, data, net = load_network(cfg["network"])
    lanes = tuple(cfg["lanes"])
    epochs, n_train, n_test = cfg["epochs"], cfg["n_train"], cfg["n_test"]
    check_every = cfg.get("check_every", 0)
    rule = cfg.get("rule", "sigprop")
    prior = checkpoint.load(cfg["init_weights"], net) if cfg.get("init_weights") else None
    if rule != "sigprop":
        golden = GoldenRule(net, rule)
    else:
        golden = checkpoint.golden_model(net, prior) if prior is not None else GoldenSigProp(net)
    reqs = readback_requests(net, lanes, rule)
    order = [(i, True) for i in range(n_train)] + [(n_train + i, False) for i in range(n_test)]
    X = np.concatenate([data.x_train[:n_train], data.x_test[:n_test]])
    Y = np.concatenate([data.y_train[:n_train], data.y_test[:n_test]])
    per_epoch = len(order)
    total = epochs * per_epoch

    start_clock(dut.clk, PERIOD)
    dut.start.value = 0
    dut.hold.value = 0
    dut.rb_en.value = 0
    dut.rb_addr.value = 0
    dut.wb_en.value = 0
    dut.wb_data.value = 0
    dut.epochs.value = epochs
    dut.evaluate.value = 1
    await reset(dut.clk, dut.rst, 3)
    loaded = None
    if prior is not None:
        try:
            loaded = await _load_checkpoint(dut, net, lanes, prior, reqs, cfg["rb_latency"], golden)
        except Mismatch as e:
            write_results("trainer", {"first_mismatch": e.info, "bit_exact": False, "samples": 0})
            raise
    dut.start.value = 1
    await RisingEdge(dut.clk)
    dut.start.value = 0

    t0_wall, t0_sim = time.perf_counter(), get_sim_time("step")
    result = {"samples": epochs * n_train, "epochs": epochs, "n_train": n_train, "n_test": n_test,
              "first_mismatch": None, "checks": 0, "check_marks": [], "checkpoint_writes": loaded}
    train_times, curve, train_curve = [], [], []
    test_predictions = []             # the last epoch's, for the collapse check
    correct_test = correct_train = 0
    trained = 0
    timeout = 50 * (max(cfg.get("cycles_per_sample", 1000), 1000))
    received = 0

    def process():
        """Check the prediction on the taps (call in the read-only phase of its cycle)."""
        nonlocal received, trained, correct_test, correct_train
        idx = read_int(dut.tap_index)
        pred = read_int(dut.tap_pred)
        if idx != received:
            raise Mismatch({"sample": received, "stage": None, "signal": "prediction index", "index": None,
                            "expected": received, "actual": idx})
        s, train = order[received % per_epoch]
        epoch = received // per_epoch
        if train:
            want = golden.train_sample(X[s], int(Y[s]))
            train_times.append(get_sim_time("step") // PERIOD)
            trained += 1
            correct_train += int(pred == Y[s])
            if "plant" in cfg and trained == 1:
                st, mem, *ix = cfg["plant"]
                {"W": golden.W, "b": golden.b, "T": getattr(golden, "T", None)}[mem][st][tuple(ix)] += 1
        else:
            want = golden.infer(X[s])
            correct_test += int(pred == Y[s])
            if epoch == epochs - 1:
                test_predictions.append(int(pred))
        if pred != want:
            raise Mismatch({"sample": int(received), "epoch": int(epoch), "stage": net.depth - 1,
                            "signal": "prediction", "index": int(s), "expected": int(want), "actual": int(pred)})
        received += 1
        if received % per_epoch == 0:
            curve.append(correct_test / max(n_test, 1))
            train_curve.append(correct_train / max(n_train, 1))
            correct_test = correct_train = 0

    async def next_prediction():
        """Sleep until the next prediction (Verilator runs free), check it, return writable."""
        fired = await First(RisingEdge(dut.tap_valid), Timer(timeout * PERIOD, unit="step"))
        if not isinstance(fired, RisingEdge):
            raise Mismatch({"sample": received, "stage": None, "signal": "timeout", "index": None,
                            "expected": f"a prediction within {timeout} cycles", "actual": None})
        await ReadOnly()
        process()
        await RisingEdge(dut.clk)

    async def check_state():
        """Hold the feeder, drain the pipeline (checking its predictions), read back, compare."""
        dut.hold.value = 1
        while True:
            await ReadOnly()
            if dut.tap_valid.value and read_int(dut.tap_index) == received:
                process()
            sent = read_int(dut.sent)
            if dut.idle.value and received == sent:
                break
            await RisingEdge(dut.clk)
        await RisingEdge(dut.clk)
        # the training predictions before this readback: the gap after the last of them holds
        # the readback (and, at an epoch's end, the test split), the others are the pipeline's
        result["check_marks"].append(len(train_times))
        words = await _readback(dut, reqs, cfg["rb_latency"])
        mismatch = compare_state(net, lanes, words, golden, received)
        if mismatch is not None:
            raise Mismatch(mismatch)
        result["checks"] += 1
        dut.hold.value = 0
        # the sample streamed last (the feeder runs ahead of the predictions) went through every
        # stage last: if it trained, the stages' cycle counters hold a training sample's cycles
        if sent and (sent - 1) % per_epoch < n_train and ("counter", "sample_cycles") in words:
            result["sample_cycles"] = int(words[("counter", "sample_cycles")])
        if sent and (sent - 1) % per_epoch < n_train and ("counter", "stage_cycles_0") in words:
            result["stage_cycles"] = [int(words[("counter", f"stage_cycles_{l}")]) for l in range(net.depth)]
        return words

    try:
        words = None
        while received < total:
            await next_prediction()
            in_epoch = received % per_epoch
            if (check_every and in_epoch and in_epoch <= n_train and in_epoch % check_every == 0) \
                    or in_epoch == 0:
                words = await check_state()

        result["rtl_counters"] = {name: int(words[("counter", name)]) for name in counter_names(net, rule)}
        if cfg.get("save_weights"):
            # the RTL's state as read back; the LFSR positions (not on the state port) are the
            # golden twin's, equal to the RTL's as every draw so far gave equal weights
            result["saved_weights"] = str(checkpoint.save_readback(
                cfg["save_weights"], net, lanes, words, golden, prior=prior, samples=epochs * n_train,
                epochs=epochs, model="rtl", command=f"sim --engine {cfg.get('engine', 'pipelined')}"))
    except Mismatch as e:
        result["first_mismatch"] = e.info
        result["bit_exact"] = False
        write_results("trainer", result)
        raise
    except Exception as e:
        result["error"] = f"{type(e).__name__}: {e}"
        result["bit_exact"] = False
        write_results("trainer", result)
        raise
    wall = time.perf_counter() - t0_wall
    sim_cycles = (get_sim_time("step") - t0_sim) // PERIOD
    gaps = np.diff(np.array(train_times))
    steady = gaps[min(len(gaps) - 1, 2 * net.depth):] if len(gaps) > 2 * net.depth else gaps
    result.update({
        "bit_exact": True,
        "cycles": int(sim_cycles),
        "train_prediction_cycles": [int(t) for t in train_times[:2000]],
        "cycles_per_sample": float(np.median(steady)) if len(steady) else None,
        "wall_seconds": wall,
        "sim_cycles_per_second": sim_cycles / wall if wall else 0.0,
        "curve": curve, "train_curve": train_curve, "test_predictions": test_predictions,
        "test_accuracy": curve[-1] if curve else None,
        "train_accuracy_online": train_curve[-1] if train_curve else None,
        "golden_test_accuracy": float(np.mean(golden.predict(data.x_test[:n_test]) == data.y_test[:n_test])),
        "counters": {k: int(v) for k, v in golden.counters.items()},
        "updates_per_sample": golden.updates_per_sample(),
        # the engine's stage_cycles counters hold the latest sample's, which may be an inference
        # one (the feeder streams ahead); per-stage training cycles are measured in tests/hdl
        "last_sample_stage_cycles": [int(result["rtl_counters"][f"stage_cycles_{l}"]) for l in range(net.depth)
                                     if f"stage_cycles_{l}" in result["rtl_counters"]],
    })
    write_results("trainer", result)
