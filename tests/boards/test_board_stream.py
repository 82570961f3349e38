"""``run --stream`` (the host streams the samples) against a Python model of the board top over the
in-process transport: flow control (BUSY, resend the rest), garbled frames, the precise first
mismatch, refusals and exit codes. The same client against the board top in Verilator is in
``test_board_sim.py``."""

import struct

import numpy as np
import pytest

from sigprop_fpga.boards import run as board_run
from sigprop_fpga.boards.run import RunError, sample_bytes, stream_on_board
from sigprop_fpga.boards.top import BOARD_ID, REGISTERS
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
    SEND_SAMPLE that brings more stalls and is answered BUSY with the bytes taken. ``faults`` maps
    a request frame index to ``"badcrc"`` (answered BAD_CRC, not executed). ``flip`` is the
    index of a prediction sent back wrong; ``corrupt`` the readback address that reads wrong.
    """

    def __init__(self, net, lanes, chip_train=20, chip_test=10, capacity=2, max_payload=256, flip=None,
                 corrupt=None):
        self.net, self.lanes = net, lanes
        self.golden = GoldenSigProp(net)
        self.bps = net.n_inputs + 1
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
            values = {"ID": BOARD_ID, "STATUS": 0b100, "SAMPLES": c["samples"], "INFERENCES": c["inferences"],
                      "N_TRAIN": self.chip[0], "N_TEST": self.chip[1], "CONTROL": self.control}
            return Status.OK, struct.pack("<I", values.get(REGISTERS[p[0]], 0))
        if cmd == Cmd.WRITE_REG:
            if p[0] == R["CONTROL"]:
                self.control = struct.unpack_from("<I", p, 1)[0]
            return Status.OK, b""
        if cmd == Cmd.READ_MEM:
            _, addr, count = struct.unpack_from("<BIH", p)
            words = self.state_words()
            return Status.OK, b"".join((words.get(a, 0) & 0xFFFFFFFF).to_bytes(4, "little")
                                       for a in range(addr, addr + count))
        if cmd == Cmd.SEND_SAMPLE:
            assert not self.control & 0b100, "a sample sent while the feeder is held"
            for k, b in enumerate(p):
                if len(self.results) >= self.capacity:
                    return Status.BUSY, struct.pack("<H", k)
                self.partial.append(b)
                if len(self.partial) == self.bps:
                    x = np.frombuffer(bytes(self.partial[:-1]), dtype=np.int8).astype(np.int64)
                    label = self.partial[-1]
                    if label & 0x80:
                        pred = self.golden.train_sample(x, label & 0x7F)
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
    model.faults = {13: "badcrc", 31: "badcrc"}
    r = stream_on_board(net_file, link, progress=False, window=4)
    assert r["mode"] == "stream" and r["bit_exact"] is True and r["first_mismatch"] is None
    assert (r["n_train"], r["n_test"]) == (105, 45) and (r["chip_n_train"], r["chip_n_test"]) == (20, 10)
    assert r["samples"] == 2 * 105 and r["predictions"] == model.predictions == 2 * 150
    assert r["curve"] == r["golden_curve"] and r["train_curve"] == r["golden_train_curve"]
    # the engine held 2: the first frame of 4 samples stalled, BUSY said how much was taken, the rest
    # was sent again, and the window shrank to what the engine holds
    assert r["busy_replies"] == 1 and r["window"] == 2 and r["link"]["busy"] == 1
    assert r["link"]["not_executed"] == 2 and r["link"]["retries"] == 2
    # frames 0-8 set up (PING, ID, ENGINE, ...), then SEND_SAMPLE / READ_RESULTS take turns: one of each was garbled and resent
    assert [f for f in model.frames if f[1] == Status.BAD_CRC] == [(Cmd.SEND_SAMPLE, Status.BAD_CRC),
                                                                   (Cmd.READ_RESULTS, Status.BAD_CRC)]
    assert model.frames[9] == (Cmd.SEND_SAMPLE, Status.BUSY)
    assert model.control == 0 and r["counters"]["samples"] == 210 and r["counters"]["inferences"] == 90


def test_stream_only_the_first_samples(net_file):
    model, link, _ = _board(net_file, capacity=3)
    r = stream_on_board(net_file, link, epochs=1, samples=7, progress=False)
    assert r["bit_exact"] and r["samples"] == 7 and model.predictions == 7 + 45
    assert r["busy_replies"] == 0 and r["window"] == 3          # the default window: depth + 1


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


def test_stream_refuses_a_board_that_already_trained(net_file):
    model, link, data = _board(net_file)
    model.golden.train_sample(data.x_train[0], int(data.y_train[0]))
    with pytest.raises(RunError, match="already run 1 training and 0 inference samples"):
        stream_on_board(net_file, link, progress=False)


def test_sample_bytes_are_twos_complement_features_then_the_label(net_file):
    spec = load_spec(net_file)
    data = load_dataset(spec)
    net = Network(spec, data.n_inputs, data.n_classes)
    b = sample_bytes(net, [[-1, 0, 127, -128]], [2], True) + sample_bytes(net, [[1, 2, 3, 4]], [1], False)
    assert b == bytes([0xFF, 0, 0x7F, 0x80, 0x82, 1, 2, 3, 4, 1])


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


def test_cli_stream_refuses_inputs_wider_than_a_byte(net_file, monkeypatch, capsys):
    net_file.write_text(NET + "precision: {input: Q2.8}\n")
    model, link, _ = _board(net_file)
    assert _cli(monkeypatch, model, link, str(net_file), "--stream") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "input format Q2.8 is 10 bits" in err[0]
    assert model.frames == []                                       # refused before touching the board


def test_cli_bad_port_is_one_line_exit_2(net_file, capsys):
    assert main(["run", str(net_file), "--port", "/nonexistent/tty", "--stream"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot open the serial port" in err[0]
