"""The time-multiplexed engine (:class:`sigprop_fpga.hdl.serial.SerialEngine`) against the golden
model, bit for bit, in the Amaranth simulator.

Every prediction, every weight, bias, table and cache entry and every counter is compared; the
state is read back through the engine's state port (:func:`sigprop_fpga.hdl.simulate.read_state`,
the host's path on the board), and a checkpoint is written through it
(:func:`sigprop_fpga.hdl.simulate.write_state`).
"""

import copy
from pathlib import Path

import numpy as np
import pytest

from sigprop_fpga.compiler.spec import load_spec, parse_spec
from sigprop_fpga.compiler.estimate import serial_cycles, serial_macs
from sigprop_fpga.hdl.serial import SerialEngine
from sigprop_fpga.hdl.simulate import simulate
from sigprop_fpga.sim.datasets import load_dataset
from sigprop_fpga.compiler.fixed import P_FRAC, narrow, softmax_fixed
from sigprop_fpga.sim.golden import GoldenSigProp
from sigprop_fpga.compiler.network import Network

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _net(text=None, example=None):
    spec = load_spec(EXAMPLES / f"{example}.yaml") if example else parse_spec(text)
    data = load_dataset(spec)
    return Network(spec, data.n_inputs, data.n_classes), data


def _first_mismatch(hw, gd, name):
    hw, gd = np.asarray(hw), np.asarray(gd)
    assert hw.shape == gd.shape, name
    bad = np.argwhere(hw != gd)
    assert bad.size == 0, \
        f"{name}: first mismatch at {tuple(bad[0])}: hw {hw[tuple(bad[0])]} golden {gd[tuple(bad[0])]}"


def compare_state(net, st, g, before=None):
    gs = g.state()
    for l in range(net.depth):
        for k in ("W", "b", "T"):
            _first_mismatch(st[k][l], gs[k][l], f"{k}[{l}]")
        if l > 0:
            _first_mismatch(st["Tin"][l], gs["Tin"][l], f"Tin[{l}]")
    _first_mismatch(st["R"], gs["R"], "R")
    before = before or {}
    for k, v in gs["counters"].items():          # counters are not loaded by a checkpoint
        assert st["counters"][k] == v - before.get(k, 0), f"counter {k}: hw {st['counters'][k]} golden {v}"
    for l in range(1, net.depth):                # the hardware has a table counter per layer; only layer 0 has R
        assert st["counters"][f"sat_table_{l}"] == 0


def corrections(g, x, c):
    """Per layer, how many classes ``k != c`` reach ``p_k >= 1/2`` in the golden model's softmax
    for this sample (computed before it trains on it): the engine's one data-dependent cost."""
    net = g.net
    out, h, t = [], np.asarray(x, dtype=np.int64), None
    for l in range(net.depth):
        p = net.prec(l)
        hl = g.activate(l, g.forward_acc(l, h))
        if l == 0:
            tl = narrow(g.R[c], net.spec.precision.table.frac_bits, p.activation)[0]
        else:
            tl = g.activate(l, g.forward_acc(l, t))
        T = g.T[l].copy()
        T[c] = tl
        prob, _ = softmax_fixed(T @ hl, 2 * p.activation.frac_bits + net.spec.learning.logit_shift)
        out.append(sum(int(prob[k] >= 1 << (P_FRAC - 1)) for k in range(net.n_classes) if k != c))
        h, t = hl, tl
    return out


def run_and_compare(net, data, n, train=True, lanes=None, **kw):
    """Simulate ``n`` samples; predictions and the final state must equal the golden model's, and
    (with the input always ready) the cycles between predictions :func:`serial_cycles`'."""
    X, y = data.x_train[:n], data.y_train[:n]
    train = np.broadcast_to(np.asarray(train, dtype=bool), (n,))
    P = 4 if lanes is None else lanes
    g = GoldenSigProp(net)
    want, cycles = [], []
    for i in range(n):
        if train[i]:
            corr = corrections(g, X[i], int(y[i])) if net.spec.learning.loss == "class_ce" else 0
            cycles.append(serial_cycles(net, P, corr)["train"])
            want.append(g.train_sample(X[i], int(y[i])))
        else:
            cycles.append(serial_cycles(net, P)["inference"])
            want.append(g.infer(X[i]))
    r = simulate(net, X, y, train=train, lanes=lanes, engine_cls=SerialEngine, **kw)
    mism = np.flatnonzero(r["pred"] != np.array(want))
    assert mism.size == 0, \
        f"first prediction mismatch at sample {mism[0]}: hw {r['pred'][mism[0]]} golden {want[mism[0]]}"
    compare_state(net, r["state"], g)
    if not kw:      # a sample's cycles, when its features had the previous sample's time to stream in
        gaps = np.diff(r["pred_cycle"])
        ok = [i for i in range(n - 1) if cycles[i] >= 2 * (net.n_inputs + 1)]
        assert [gaps[i] for i in ok] == [cycles[i + 1] for i in ok], (list(gaps), cycles[1:])
    r["expected_cycles"] = cycles
    return r, g


def test_iris_training_then_inference_bit_exact():
    """examples/iris.yaml (three hidden layers, widths the 4 lanes do not divide): 30 training
    samples, then inference; the cycles per sample are serial_cycles' exactly."""
    net, data = _net(example="iris")
    n = 34
    train = np.arange(n) < 30
    r, g = run_and_compare(net, data, n, train=train)
    assert g.counters["samples"] == 30 and g.counters["inferences"] == 4


def test_digits_default_network_bit_exact_and_utilization():
    """examples/digits.yaml (64-32-32, 10 classes), an inference sample among training samples;
    MAC utilization (ideal MACs / P over measured cycles) at least 0.85."""
    net, data = _net(example="digits")
    train = np.array([1, 1, 0, 1, 1, 1], dtype=bool)
    r, g = run_and_compare(net, data, len(train), train=train)
    macs = serial_macs(net)[0]
    assert macs == 10624
    est = serial_cycles(net, 4)
    assert macs / 4 / est["train_max"] >= 0.85, est       # even with a correction in every layer
    assert all(c <= est["train_max"] for c in r["expected_cycles"])


WINE_L2 = """
name: wine_l2_uniform
dataset: {source: wine}
network: {layers: [20, 16]}
learning: {loss: l2, lr_shift: 6}
"""


def test_wine_l2_bit_exact():
    """The l2 loss (delta rule through the h path, no softmax), nearest-target readout."""
    net, data = _net(WINE_L2)
    train = np.ones(30, dtype=bool)
    train[[4, 17]] = False
    run_and_compare(net, data, 30, train=train)


NO_PUSH = """
name: no_push
dataset: {source: iris}
network: {layers: [7, 5, 6]}
learning: {lr_shift: 3, push: false}
"""


def test_class_ce_without_push_three_lanes():
    """push: false (no hardest-wrong-class term) on 3 lanes (not a power of two)."""
    net, data = _net(NO_PUSH)
    train = np.ones(30, dtype=bool)
    train[5] = False
    run_and_compare(net, data, 30, train=train, lanes=3)


NO_PUSH_ONE_CHUNK = """
name: no_push_one_chunk
dataset: {source: iris}
network: {layers: [3, 5]}
learning: {lr_shift: 3, push: false}
"""


def test_class_ce_without_push_layer0_in_one_chunk():
    """push: false with layer 0 in one chunk of lanes: TAB reads the d_tc that GRAD's last issue
    writes."""
    net, data = _net(NO_PUSH_ONE_CHUNK)
    train = np.ones(12, dtype=bool)
    train[5] = False
    run_and_compare(net, data, 12, train=train)


# narrow formats and a big learning rate: every saturation counter fires
STRESS = """
name: stress
dataset: {source: iris}
network: {layers: [7, 5, 4]}
learning: {lr_shift: 0, logit_shift: 0}
precision: {weight: Q1.8, bias: Q1.8, table: Q1.8, error: Q2.4, activation: Q1.5, input: Q1.5}
"""


@pytest.mark.parametrize("n,lanes", [(3, 3), (30, 2)])
def test_stress_saturation(n, lanes):
    """Everything saturates (so a short run too: saturation can hide a wrong value); lanes 3, 2."""
    net, data = _net(STRESS)
    train = np.ones(n, dtype=bool)
    if n > 10:
        train[[7, 20]] = False
    r, g = run_and_compare(net, data, n, train=train, lanes=lanes)
    if n > 10:
        c = g.counters
        assert all(c[f"sat_weight_{l}"] > 0 and c[f"sat_bias_{l}"] > 0 for l in range(net.depth)), c
        assert c["sat_table_0"] > 0, c


def test_output_back_pressure_and_input_gaps():
    """The prediction sink ready one cycle in three, idle cycles between input samples."""
    net, data = _net(NO_PUSH)
    run_and_compare(net, data, 8, ready_every=3, gap=5)


def test_checkpoint_written_through_the_state_port_resumes_bit_exact():
    """Weights, biases, the table and the caches loaded through the state port (as the host
    link's WRITE_MEM does) continue training exactly where the golden model left off."""
    net, data = _net(example="iris")
    X, y = data.x_train, data.y_train
    g = GoldenSigProp(net)
    for i in range(40):
        g.train_sample(X[i], int(y[i]))
    ckpt = copy.deepcopy(g.state())              # the golden model trains on in place
    before = dict(ckpt["counters"])
    assert all(np.any(np.asarray(t) != 0) for t in ckpt["T"])
    want = [g.train_sample(X[i], int(y[i])) for i in range(40, 52)]
    r = simulate(net, X[40:52], y[40:52], checkpoint=ckpt, engine_cls=SerialEngine)
    assert list(r["pred"]) == want
    compare_state(net, r["state"], g, before)


def test_readback_map_and_members_are_the_stage_engines():
    """The same members and the same address map as SigPropEngine with P lanes per stage."""
    from sigprop_fpga.compiler.statemap import counter_names, readback_map
    from sigprop_fpga.hdl.engine import SigPropEngine
    net, _ = _net(example="digits")
    ser, ref = SerialEngine(net, 4), SigPropEngine(net, (4, 4))
    for obj in (ser, ref, *ref.stages):           # only their interfaces are compared
        obj._MustUse__silence = True
    same = lambda mp: {k: v for k, v in mp.items() if k != "latency"}      # noqa: E731
    assert same(ser.map) == same(readback_map(net, (4, 4), 0)) == same(ref.map)
    assert (ser.map["latency"], ref.map["latency"]) == (ser.rb_latency, ref.rb_latency)
    assert ser.counters == counter_names(net) and ser.lanes == (4, 4)
    assert set(ser.signature.members) == set(ref.signature.members)
    for name in ser.signature.members:
        assert ser.signature.members[name] == ref.signature.members[name], name


@pytest.mark.parametrize("text,match", [
    ("name: h\ndataset: {source: iris}\nnetwork: {layers: [6], readout: head}\n", "readout nearest_target only"),
    ("name: s\ndataset: {source: iris}\nnetwork: {layers: [6]}\nprecision: {rounding: stochastic}\n",
     "rounding nearest only"),
    ("name: p\ndataset: {source: iris}\nnetwork: {layers: [6, {units: 5, precision: {weight: Q3.13}}]}\n",
     "same activation, weight, bias and error formats in every layer; layer 1 differs"),
    ("name: i\ndataset: {source: iris}\nnetwork: {layers: [6]}\nprecision: {input: Q2.6}\n",
     "input format equal to the activation format"),
    ("name: b\ndataset: {source: iris}\nnetwork: {layers: [6]}\nprecision: {bias: Q8.8}\n",
     "bias and table formats equal to the weight format"),
])
def test_unsupported_configurations_are_refused(text, match):
    net, _ = _net(text)
    with pytest.raises(ValueError, match=match):
        SerialEngine(net)


def test_argument_checks():
    net, _ = _net(example="iris")
    with pytest.raises(TypeError, match="one integer"):
        SerialEngine(net, (2, 3, 3))
    with pytest.raises(ValueError, match="at least 1"):
        SerialEngine(net, 0)
    with pytest.raises(TypeError, match="Network"):
        SerialEngine("iris")
    with pytest.raises(ValueError, match="same activation"):
        SerialEngine(_net(example="wine-l2")[0])     # its second layer has Q3.13 weights


def test_every_multiplier_is_a_lane():
    """One ``$mul`` per lane and no other (the softmax borrows lane 0), so DSP blocks = P."""
    from amaranth.back import rtlil
    net, _ = _net(example="digits")
    for P in (2, 4):
        text = rtlil.convert(SerialEngine(net, P), name="top")
        assert text.count("cell $mul ") == P


def test_fsm_states_are_named_by_the_rule_phases():
    """One vocabulary: every FSM state but the overhead (IDLE, FIN) is a :class:`Phase` name or a
    phase name and a suffix (FORWARD_DRAIN, SOFTMAX_Y...), and every phase of ``serial_cycles``
    but ``next_layer`` has states of its name."""
    from amaranth.hdl import Fragment
    from sigprop_fpga.compiler.rule import Phase
    net, _ = _net(example="iris")
    eng = SerialEngine(net, 4)
    Fragment.get(eng, None)
    states = set(eng._fsm.encoding)
    names = {p.name for p in Phase}
    assert {"IDLE", "FIN"} <= states
    for s in states - {"IDLE", "FIN"}:
        assert any(s == n or s.startswith(n + "_") for n in names), s
    phases = {str(k) for ph in serial_cycles(net, 4)["layers"] for k in ph} - {"next_layer"}
    for p in phases:
        assert any(s == Phase(p).name or s.startswith(Phase(p).name + "_") for s in states), p


def test_a_step_shift_per_layer_bit_exact():
    """Layers with their own ``lr_shift`` (as ``lr_shift: auto`` gives them): the serial engine
    selects each layer's step shift, bit exact with the golden model."""
    net, data = _net("dataset: {source: iris}\nnetwork: {layers: [{units: 6, lr_shift: 3}, "
                     "{units: 5, lr_shift: 6}, {units: 4, lr_shift: 8}]}\n")
    assert [net.lr_shift(l) for l in range(3)] == [3, 6, 8]
    run_and_compare(net, data, 30)


@pytest.mark.parametrize("weight", ["Q4.10", "Q3.13"])
def test_only_the_weight_format_written(weight):
    """A file that sets only ``precision.weight`` builds on the serial engine (bias and table
    follow the weight, as the engine needs) and is bit exact with the golden model."""
    net, data = _net(f"dataset: {{source: iris}}\nnetwork: {{layers: [6, 5]}}\nprecision: {{weight: {weight}}}\n")
    assert net.prec(0).bias == net.prec(0).weight == net.spec.precision.table
    run_and_compare(net, data, 30)


@pytest.mark.parametrize("which,lanes", [("iris", 2), ("NO_PUSH", 3), ("WINE_L2", 2)])
def test_counter_flags_equal_their_compares_every_cycle(which, lanes):
    """The sequencer's registered flags (:meth:`SerialEngine._counter_flags`: a counter at a
    per-layer value, set beside each write of the counter) equal the compare they replace in
    every cycle a phase can read them: all but IDLE and FORWARD_INIT, where the counters are
    zeroed after a change of layer; and ``pipe_busy`` (most of it registered from next values)
    equals the OR of the pipeline's valid bits in every cycle. Training and inference samples,
    a gap and back-pressure."""
    net, data = _net(example=which) if which == "iris" else _net(globals()[which])
    seen, bad = {"cycles": 0, "flags": 0}, []

    def monitor(dut):
        c, fsm = dut._c, dut._fsm
        skip = {fsm.encoding["IDLE"], fsm.encoding["FORWARD_INIT"]}
        counters = {id(ctr): ctr for ctr, *_ in c.strobes.values()}
        watched = [(counters[k], flag, vals, ge) for k, fl in c.counter_flags.items() for flag, vals, ge in fl]
        seen["flags"] = len(watched)
        s1, s2, s3, s4 = c.s1, c.s2, c.s3, c.s4
        busy = (s1.valid | s2.valid | s3.valid | s4.valid | c.upd3 | c.vec4 | c.grad4 | c.upd4 | c.vec5
                | c.flags_pending | c.copy_we)
        exprs = [fsm.state, c.layer, busy, c.pipe_busy, *(x for ctr, flag, _, _ in watched for x in (ctr, flag))]

        async def process(ctx):
            started = False
            async for _, _, state, layer, busy_or, pipe_busy, *vals in ctx.tick().sample(*exprs):
                if busy_or != pipe_busy and len(bad) < 5:        # pipe_rest, registered, is exact
                    bad.append(("pipe_busy", fsm.decoding[state], busy_or, pipe_busy))
                started = started or state == fsm.encoding["FORWARD"]
                if not started or state in skip:
                    continue
                seen["cycles"] += 1
                for k, (ctr, flag, values, ge) in enumerate(watched):
                    v, f = vals[2 * k], vals[2 * k + 1]
                    want = int(v >= values[layer]) if ge else int(v == values[layer])
                    if f != want and len(bad) < 5:
                        bad.append((flag.name, fsm.decoding[state], layer, v, f))
        return process

    n = 6
    train = np.arange(n) % 3 != 2
    r = simulate(net, data.x_train[:n], data.y_train[:n], train=train, lanes=lanes, engine_cls=SerialEngine,
                 gap=3, ready_every=4, monitors=[monitor])
    assert len(r["pred"]) == n and seen["flags"] >= 10 and seen["cycles"] > 1000
    assert not bad, bad
