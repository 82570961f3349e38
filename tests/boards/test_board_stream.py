"""``run --stream`` (the host streams the samples) against a Python model of the board top over the
in-process transport: flow control (BUSY, resend the rest), garbled frames, the precise first
mismatch, refusals and exit codes. The same client against the board top in Verilator is in
``test_board_sim.py``."""

import struct

import numpy as np
import pytest

from sigprop_fpga.boards import run as board_run
from sigprop_fpga.boards.run import RunError, sample_bytes, stream_on_board
from sigprop_fpga.boards.top import BOARD_ID, REGISTERS, RESULT_FIFO, SAMPLE_FIFO
from sigprop_fpga.cli import main
from sigprop_fpga.compiler.estimate import allocate_lanes
from sigprop_fpga.compiler.spec import load_spec
from sigprop_fpga.compiler.statemap import readback_fields, readback_requests, state_writes
from sigprop_fpga.hostlink import (Cmd, LoopbackTransport, Status, decode_frame, encode_reply,
                                   ident_payload)
from sigprop_fpga.sim.datasets import load_dataset
from sigprop_fpga.sim.golden import GoldenSigProp
from sigprop_fpga.compiler.network import Network

NET = """
name: iris_stream
dataset: {source: iris}
network: {layers: [6, 5]}
learning: {lr_shift: 5, epochs: 2}
hardware: {lanes: [2, 3]}
"""

R = {name: i for i, name in enumerate(REGISTERS)}


class BoardModel:
    """The board top's host-link contract in Python, the engine replaced by the golden model.

    The engine holds at most ``capacity`` samples whose prediction has not been read; a
    SEND_SAMPLE that brings more stalls and is answered BUSY with the bytes taken. RESTART starts
    the golden model afresh; the state the host writes then must be its initial state (checked
    when the next sample arrives). ``faults`` maps
    a request frame index to ``"badcrc"`` (answered BAD_CRC, not executed). ``flip`` is the
    index of a prediction sent back wrong; ``corrupt`` the readback address that reads wrong.
    """

    def __init__(self, net, lanes, chip_train=20, chip_test=10, capacity=2, max_payload=256, flip=None,
                 corrupt=None):
        self.net, self.lanes = net, lanes
        self.golden = GoldenSigProp(net)
        self.fb = (net.spec.precision.input.width + 7) // 8
        self.bps = net.n_inputs * self.fb + 1
        self.clock = 0
        self.restarts = 0
        self.written = {}
        self.state_checked = False
        self.chip = (chip_train, chip_test)
        self.capacity, self.max_payload = capacity, max_payload
        self.flip, self.corrupt = flip, corrupt
        self.regions = [("state", 1 << sum(f["width"] for f in readback_fields(net, lanes).values()), 32)]
        self.control = 0
        self.partial = bytearray()
        self.results = bytearray()
        self.predictions = 0
        self.faults = {}
        self.frames = []            # (cmd, status) of every request
        self.buf = bytearray()

    def __call__(self, link):
        self.buf += link.device_read(1 << 20)
        while True:
            start = self.buf.find(0xA5)
            if start < 0:
                self.buf.clear()
                return
            del self.buf[:start]
            if len(self.buf) < 6 or len(self.buf) < 6 + (self.buf[2] | self.buf[3] << 8):
                return
            n = self.buf[2] | self.buf[3] << 8
            frame, self.buf = bytes(self.buf[:6 + n]), self.buf[6 + n:]
            cmd, payload = decode_frame(frame)
            if self.faults.pop(len(self.frames), None) == "badcrc":
                status, reply = Status.BAD_CRC, b""
            else:
                status, reply = self.execute(cmd, payload)
            self.frames.append((cmd, status))
            link.device_write(encode_reply(status, reply))

    def state_words(self):
        words = dict(state_writes(self.net, self.lanes, self.golden.state()))
        for key, a in readback_requests(self.net, self.lanes):
            if key[0] == "counter":
                words[a] = self.golden.counters.get(key[1], 0)
        if self.corrupt is not None:
            words[self.corrupt] += 1
        return words

    def execute(self, cmd, p):
        if cmd == Cmd.PING:
            return Status.OK, ident_payload(self.regions, self.max_payload, len(REGISTERS), 32)
        if cmd == Cmd.READ_REG:
            c = self.golden.counters
            self.clock += 1000                    # the CLOCK register: 256 000 cycles a register read
            values = {"ID": BOARD_ID, "STATUS": 0b100, "SAMPLES": c["samples"], "INFERENCES": c["inferences"],
                      "N_TRAIN": self.chip[0], "N_TEST": self.chip[1], "CONTROL": self.control,
                      "CLOCK": self.clock, "CLOCK_HZ": 24_000_000,
                      "LINK": 8 | (self.fb << 8) | (SAMPLE_FIFO << 16), "RESULT_FIFO": RESULT_FIFO}
            return Status.OK, struct.pack("<I", values.get(REGISTERS[p[0]], 0))
        if cmd == Cmd.WRITE_REG:
            if p[0] == R["CONTROL"]:
                self.control = struct.unpack_from("<I", p, 1)[0]
            if p[0] == R["RESTART"]:
                self.golden = GoldenSigProp(self.net)
                self.results.clear()
                self.partial.clear()
                self.written = {}
                self.state_checked = False
                self.restarts += 1
                self.control = 0
            return Status.OK, b""
        if cmd == Cmd.WRITE_MEM:
            assert self.control & 0b100, "a state write while the feeder is not held"
            _, addr, count = struct.unpack_from("<BIH", p)
            for k in range(count):
                v = int.from_bytes(p[7 + 4 * k:11 + 4 * k], "little")
                self.written[addr + k] = v - (1 << 32) if v >> 31 else v
            return Status.OK, b""
        if cmd == Cmd.READ_MEM:
            _, addr, count = struct.unpack_from("<BIH", p)
            words = self.state_words()
            return Status.OK, b"".join((words.get(a, 0) & 0xFFFFFFFF).to_bytes(4, "little")
                                       for a in range(addr, addr + count))
        if cmd == Cmd.SEND_SAMPLE:
            assert not self.control & 0b100, "a sample sent while the feeder is held"
            if not self.state_checked:
                assert self.restarts and self.written == dict(state_writes(self.net, self.lanes,
                                                                            GoldenSigProp(self.net).state())), \
                    "samples before a restart and the initial state written"
                self.state_checked = True
            for k, b in enumerate(p):
                if len(self.results) >= self.capacity:
                    return Status.BUSY, struct.pack("<H", k)
                self.partial.append(b)
                if len(self.partial) == self.bps:
                    x = np.frombuffer(bytes(self.partial[:-1]), dtype=np.int8 if self.fb == 1 else "<i2")
                    x = x.astype(np.int64)
                    label = self.partial[-1]
                    if not self.control & 0b1000:
                        pred = self.golden.train_sample(x, label)
                    else:
                        pred = self.golden.infer(x)
                    if self.predictions == self.flip:
                        pred ^= 1
                    self.predictions += 1
                    self.results.append(pred)
                    self.partial.clear()
            return Status.OK, b""
        if cmd == Cmd.READ_RESULTS:
            (n,) = struct.unpack("<H", p)
            out, self.results = bytes(self.results[:n]), self.results[n:]
            return Status.OK, out
        return Status.UNKNOWN_COMMAND, b""


@pytest.fixture()
def net_file(tmp_path):
    f = tmp_path / "net.yaml"
    f.write_text(NET)
    return f


def _board(net_file, **kw):
    spec = load_spec(net_file)
    data = load_dataset(spec)
    net = Network(spec, data.n_inputs, data.n_classes)
    model = BoardModel(net, allocate_lanes(net), **kw)
    return model, LoopbackTransport(timeout=0.05, on_write=model), data


def test_stream_trains_more_than_the_chip_stores_bit_exact_through_busy_and_bad_crc(net_file):
    model, link, data = _board(net_file, capacity=2)
    model.faults = {41: "badcrc", 47: "badcrc"}
    r = stream_on_board(net_file, link, progress=False, window=4)
    assert r["mode"] == "stream" and r["bit_exact"] is True and r["first_mismatch"] is None
    assert (r["n_train"], r["n_test"]) == (105, 45) and (r["chip_n_train"], r["chip_n_test"]) == (20, 10)
    assert r["samples"] == 2 * 105 and r["predictions"] == model.predictions == 2 * 150
    assert r["curve"] == r["golden_curve"] and r["train_curve"] == r["golden_train_curve"]
    # the engine held 2 of the window's 4: BUSY said how much was taken and the rest was sent again
    assert r["busy_replies"] >= 1 and r["link"]["busy"] == r["busy_replies"]
    assert r["link"]["not_executed"] == 2 and r["link"]["retries"] == 2
    # the run restarted the board (RESTART, the initial state written), then SEND_SAMPLE and
    # READ_RESULTS take turns: one of each was garbled and resent
    assert model.restarts == 1
    assert [f[0] for f in model.frames if f[1] == Status.BAD_CRC] == [Cmd.SEND_SAMPLE, Cmd.READ_RESULTS]
    assert model.control == 0 and r["counters"]["samples"] == 210 and r["counters"]["inferences"] == 90


def test_stream_default_window_is_what_the_fifos_hold_and_frames_carry_many_samples(net_file):
    model, link, _ = _board(net_file, capacity=RESULT_FIFO, max_payload=512)
    r = stream_on_board(net_file, link, epochs=1, samples=70, progress=False)
    assert r["bit_exact"] and r["samples"] == 70 and model.predictions == 70 + 45
    assert r["busy_replies"] == 0 and r["window"] == SAMPLE_FIFO // 5      # 4 features + the label
    sends = [f for f in model.frames if f[0] == Cmd.SEND_SAMPLE]
    assert len(sends) == 2                 # 70 training samples (350 bytes) in one frame, 45 test in one
    # the training phase by the board's clock: CLOCK read before and after (256 000 cycles a read in
    # the model), at CLOCK_HZ
    assert r["train_cycles"] == 1000 * 256 and r["samples_per_second"] == 70 / (256_000 / 24e6)
    assert r["link_bytes_per_sample"] > 5


def test_stream_restarts_a_board_that_already_trained(net_file):
    model, link, data = _board(net_file)
    model.golden.train_sample(data.x_train[0], int(data.y_train[0]))
    model.restarts = 0
    r = stream_on_board(net_file, link, epochs=1, samples=10, progress=False)
    assert r["bit_exact"] and model.restarts == 1 and r["counters"]["samples"] == 10


def test_stream_reports_the_first_differing_prediction(net_file):
    model, link, data = _board(net_file, flip=150 + 37)           # epoch 1, training sample 37
    r = stream_on_board(net_file, link, progress=False)
    mm = r["first_mismatch"]
    assert r["bit_exact"] is False
    assert {k: mm[k] for k in ("sample", "epoch", "split", "index", "signal")} == \
        {"sample": 187, "epoch": 1, "split": "train", "index": 37, "signal": "prediction"}
    assert mm["actual"] == mm["expected"] ^ 1 and mm["label"] == int(data.y_train[37])


def test_stream_reports_the_first_differing_state_entry(net_file):
    spec = load_spec(net_file)
    data = load_dataset(spec)
    net = Network(spec, data.n_inputs, data.n_classes)
    lanes = allocate_lanes(net)
    first = readback_requests(net, lanes)[0]                        # stage 0, W, bank 0, word 0
    model, link, _ = _board(net_file, corrupt=first[1])
    r = stream_on_board(net_file, link, epochs=1, samples=5, progress=False)
    mm = r["first_mismatch"]
    assert r["bit_exact"] is False and (mm["stage"], mm["signal"], mm["sample"]) == (0, "W", 5)
    assert mm["actual"] == mm["expected"] + 1


def test_sample_bytes_are_twos_complement_features_then_the_label(net_file):
    spec = load_spec(net_file)
    data = load_dataset(spec)
    net = Network(spec, data.n_inputs, data.n_classes)
    b = sample_bytes(net, [[-1, 0, 127, -128]], [2]) + sample_bytes(net, [[1, 2, 3, 4]], [1])
    assert b == bytes([0xFF, 0, 0x7F, 0x80, 2, 1, 2, 3, 4, 1])


def test_sample_bytes_wide_inputs_take_two_bytes_little_endian_and_labels_a_whole_byte(net_file):
    net_file.write_text(NET + "precision: {input: Q2.10}\n")
    spec = load_spec(net_file)
    data = load_dataset(spec)
    net = Network(spec, data.n_inputs, data.n_classes)
    b = sample_bytes(net, [[-1, 0x123, 2047, -2048]], [255])
    assert b == bytes([0xFF, 0xFF, 0x23, 0x01, 0xFF, 0x07, 0x00, 0xF8, 255])


def test_stream_wide_inputs_bit_exact(net_file):
    net_file.write_text(NET + "precision: {input: Q2.10}\n")
    model, link, _ = _board(net_file, capacity=RESULT_FIFO)
    r = stream_on_board(net_file, link, epochs=1, samples=20, progress=False)
    assert r["bit_exact"] and r["bytes_per_sample"] == 9 and model.predictions == 20 + 45


def _cli(monkeypatch, model, link, *args):
    monkeypatch.setattr(board_run, "open_port", lambda *a, **k: link)
    return main(["run", *args, "--port", "/dev/ttyFAKE", "-q"])


def test_cli_stream_bit_exact_and_mismatch_exit_codes(net_file, monkeypatch, capsys, tmp_path):
    model, link, _ = _board(net_file)
    assert _cli(monkeypatch, model, link, str(net_file), "--stream", "--epochs", "1",
                "--json", str(tmp_path / "r.json")) == 0
    out = capsys.readouterr()
    assert "board (host-streamed)" in out.out and "bit exact: True (105 training samples streamed" in out.out
    assert (tmp_path / "r.json").is_file()
    model, link, _ = _board(net_file, flip=3)
    assert _cli(monkeypatch, model, link, str(net_file), "--stream", "--epochs", "1") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("MISMATCH: sample 3, epoch 0, split train, index 3, ")


def test_cli_stream_refuses_inputs_wider_than_two_bytes(net_file, monkeypatch, capsys):
    net_file.write_text(NET + "precision: {input: Q2.16}\n")
    model, link, _ = _board(net_file)
    assert _cli(monkeypatch, model, link, str(net_file), "--stream") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "input format Q2.16 is 18 bits" in err[0]
    assert model.frames == []                                       # refused before touching the board


def test_cli_bad_port_is_one_line_exit_2(net_file, capsys):
    assert main(["run", str(net_file), "--port", "/nonexistent/tty", "--stream"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot open the serial port" in err[0]


@pytest.mark.parametrize("args,msg", [([], "run needs --port PORT (a board) or --sim"),
                                      (["--port", "loop://", "--sim"], "not both"),
                                      (["--port", "loop://", "--board", "icebreaker"], "options of --sim"),
                                      (["--port", "loop://", "--garble-every", "3"], "options of --sim")])
def test_cli_run_port_or_sim_one_line_exit_2(net_file, capsys, args, msg):
    assert main(["run", str(net_file), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and msg in err[0]
