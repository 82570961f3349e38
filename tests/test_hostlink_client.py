"""Host side of the host link: CRC, frame encode/decode, and the client against a Python device
model over the in-process transport, with injected faults (garbled and lost replies, BUSY)."""

import struct

import pytest
from hypothesis import given, settings, strategies as st

from sigprop_fpga.hostlink import (
    Cmd, DeviceError, HostLinkClient, HostLinkError, LinkTimeout, LoopbackTransport, ReplyError, Status, crc16,
    decode_frame, decode_reply, encode_frame, encode_reply, ident_payload, parse_ident,
    read_reply)


def test_crc16_check_value():
    assert crc16(b"123456789") == 0x29B1
    assert crc16(b"") == 0xFFFF


def test_encode_frame_layout():
    f = encode_frame(Cmd.WRITE_REG, b"\x01\x02")
    assert f[:4] == bytes([0xA5, 0x04, 0x02, 0x00]) and f[4:6] == b"\x01\x02"
    assert f[6:] == struct.pack("<H", crc16(f[1:6]))
    assert encode_reply(Status.OK) == bytes([0x5A, 0, 0, 0]) + struct.pack("<H", crc16(b"\0\0\0"))


@given(st.integers(0, 255), st.binary(max_size=300))
def test_reply_roundtrip_and_every_single_bit_flip_detected(status, payload):
    frame = encode_reply(status, payload)
    got_status, got = decode_reply(frame)
    assert int(got_status) == status and got == payload
    for i in range(1, len(frame)):          # (flipping the sync byte is "not a frame" too)
        bad = bytearray(frame)
        bad[i] ^= 1 << (i % 8)
        with pytest.raises(ReplyError):
            decode_reply(bytes(bad))


def test_decode_reply_errors_are_precise():
    with pytest.raises(ReplyError, match="shorter than the 6-byte minimum"):
        decode_reply(b"\x5a\x00")
    with pytest.raises(ReplyError, match="not sync 0x5a"):
        decode_reply(encode_frame(Cmd.PING))
    with pytest.raises(ReplyError, match="LEN=0 needs 6"):
        decode_reply(encode_reply(0) + b"x")


class Model:
    """Python model of the device (same contract as hdl/hostlink.py) plus fault injection."""

    def __init__(self, regions, max_payload=32, n_regs=4):
        self.regions = regions
        self.max_payload = max_payload
        self.mems = [[0] * d for _, d, _ in regions]
        self.regs = [0] * n_regs
        self.samples = bytearray()
        self.results = bytearray()
        self.faults = []          # per frame: None, "garble", "drop", "badcrc", "busy"
        self.frames = 0
        self.buf = bytearray()

    def __call__(self, link):
        self.buf += link.device_read(1 << 20)
        while len(self.buf) >= 6:
            start = self.buf.find(0xA5)
            if start < 0:
                self.buf.clear()
                return
            del self.buf[:start]
            n = self.buf[2] | self.buf[3] << 8
            if len(self.buf) < 6 + n:
                return
            frame, self.buf = bytes(self.buf[:6 + n]), self.buf[6 + n:]
            fault = self.faults.pop(0) if self.faults else None
            self.frames += 1
            if fault == "badcrc":
                link.device_write(encode_reply(Status.BAD_CRC))
                continue
            status, payload = self.execute(*decode_frame(frame), fault)
            reply = bytearray(encode_reply(status, payload))
            if fault == "garble":
                reply[-1] ^= 0x80
            if fault != "drop":
                link.device_write(bytes(reply))

    def execute(self, cmd, p, fault):
        if cmd == Cmd.PING:
            return Status.OK, ident_payload(self.regions, self.max_payload, len(self.regs), 32)
        if cmd in (Cmd.WRITE_MEM, Cmd.READ_MEM):
            region, addr, count = struct.unpack_from("<BIH", p)
            _, depth, width = self.regions[region]
            bpw = (width + 7) // 8
            if addr + count > depth:
                return Status.OUT_OF_RANGE, b""
            if cmd == Cmd.READ_MEM:
                return Status.OK, b"".join(w.to_bytes(bpw, "little")
                                           for w in self.mems[region][addr:addr + count])
            for k in range(count):
                self.mems[region][addr + k] = int.from_bytes(p[7 + bpw * k:7 + bpw * (k + 1)],
                                                             "little")
            return Status.OK, b""
        if cmd == Cmd.WRITE_REG:
            self.regs[p[0]] = struct.unpack_from("<I", p, 1)[0]
            return Status.OK, b""
        if cmd == Cmd.READ_REG:
            if p[0] >= len(self.regs):
                return Status.OUT_OF_RANGE, b""
            return Status.OK, struct.pack("<I", self.regs[p[0]])
        if cmd == Cmd.SEND_SAMPLE:
            if fault == "busy":
                self.samples += p[:3]
                return Status.BUSY, struct.pack("<H", 3)
            if fault == "stall":
                return Status.BUSY, struct.pack("<H", 0)
            self.samples += p
            return Status.OK, b""
        if cmd == Cmd.READ_RESULTS:
            (n,) = struct.unpack("<H", p)
            out, self.results = bytes(self.results[:min(n, 5)]), self.results[min(n, 5):]
            return Status.OK, out
        return Status.UNKNOWN_COMMAND, b""


REGIONS = [("w", 100, 16), ("t", 10, 12), ("f", 7, 3)]


def make(**kw):
    model = Model(REGIONS, **kw)
    link = LoopbackTransport(timeout=0.05, on_write=model)
    return model, HostLinkClient(link, retries=3)


def test_client_ping_and_memory_roundtrip_in_chunks():
    model, c = make()
    ident = c.ping()
    assert ident.regions == ((100, 16), (10, 12), (7, 3)) and ident.max_payload == 32
    words = [(i * 2654435761) & 0xFFFF for i in range(70)]
    c.write_mem(0, 20, words)
    assert model.mems[0][20:90] == words
    assert model.frames > 4                        # 70 words in chunks of (32 - 7) // 2
    assert c.read_mem(0, 20, 70) == words
    c.write_mem(1, 0, [-1, 5])
    assert c.read_mem(1, 0, 2, signed=True) == [-1, 5]
    assert c.read_mem(1, 0, 1) == [0xFFF]
    with pytest.raises(ValueError, match="leaves region 2 of depth 7"):
        c.write_mem(2, 6, [1, 2])
    with pytest.raises(ValueError, match="region 3 does not exist"):
        c.read_mem(3, 0, 1)


def test_client_registers_and_out_of_range_is_not_retried():
    model, c = make()
    c.write_reg(1, 0xDEADBEEF)
    assert c.read_reg(1) == 0xDEADBEEF
    with pytest.raises(DeviceError, match="OUT_OF_RANGE") as e:
        c.read_reg(9)
    assert e.value.status == Status.OUT_OF_RANGE and c.stats["retries"] == 0


def test_client_retries_garbled_and_lost_replies_of_idempotent_commands():
    model, c = make()
    c.ping()
    model.faults = ["garble", "drop", "badcrc", None]
    c.write_mem(0, 0, [1, 2, 3])
    assert model.mems[0][:3] == [1, 2, 3] and c.stats["retries"] == 3
    model.faults = ["garble"] * 4
    with pytest.raises(ReplyError):
        c.read_reg(0)


def test_client_send_sample_busy_resends_rest_and_lost_reply_raises():
    model, c = make()
    c.ping()
    model.faults = ["busy"]
    c.send_sample(bytes(range(10)))
    assert bytes(model.samples) == bytes(range(10))
    model.faults = ["drop"]
    with pytest.raises(LinkTimeout):
        c.send_sample(b"xyz")          # not idempotent: never resent blindly


def test_client_offer_sample_returns_what_was_taken():
    model, c = make()
    c.ping()
    assert c.offer_sample(b"abcdef") == 6
    model.faults = ["busy"]
    assert c.offer_sample(b"ghijkl") == 3 and c.stats["busy"] == 1
    model.faults = ["badcrc"]                  # not executed: resent at once, all taken
    assert c.offer_sample(b"ghijkl") == 6 and c.stats["not_executed"] == 1
    assert bytes(model.samples) == b"abcdefghighijkl"
    with pytest.raises(ValueError, match="at most 32 bytes"):
        c.offer_sample(bytes(33))


def test_client_send_sample_resends_the_rest_after_each_busy_and_calls_on_busy():
    model, c = make()
    c.ping()
    data = bytes(range(80))                    # three frames of at most 32 bytes
    model.faults = ["busy", None, "stall", "busy", "stall", "stall", None]
    seen = []
    assert c.send_sample(data, on_busy=seen.append) == 5
    assert bytes(model.samples) == data        # nothing lost, nothing twice
    assert seen == [3, 0, 3, 0, 0] and c.stats["busy"] == 5
    # BUSY replies that take bytes never give up; more than `retries` in a row taking none do
    model.faults = ["busy"] * 8
    c.send_sample(bytes(40))
    model.faults = ["stall"] * 4
    with pytest.raises(DeviceError, match="BUSY to SEND_SAMPLE .4 times in a row, 0 of 5 bytes taken"):
        c.send_sample(bytes(5))


def test_client_poll_results_is_one_request():
    model, c = make()
    model.results += bytes(range(12))
    frames = model.frames
    assert c.poll_results(12) == bytes(range(5))   # the model answers at most 5 at a time
    assert model.frames == frames + 2              # PING (first use), one READ_RESULTS
    assert c.poll_results(0) == b"" and model.frames == frames + 2


def test_client_read_results_polls():
    model, c = make()
    model.results += bytes(range(12))
    assert c.read_results(12) == bytes(range(12))
    with pytest.raises(LinkTimeout, match="0 of 1 bytes"):
        c.read_results(1, max_polls=2)


def test_read_reply_skips_noise_and_times_out():
    link = LoopbackTransport(timeout=0.01)
    link.device_write(b"\x00\xff" + encode_reply(Status.BUSY, b"\x01\x00"))
    assert read_reply(link) == (Status.BUSY, b"\x01\x00")
    link.device_write(encode_reply(0, b"abc")[:5])
    with pytest.raises(LinkTimeout, match="cut short"):
        read_reply(link)
    with pytest.raises(LinkTimeout, match="no reply"):
        read_reply(link)


def test_parse_ident_rejects_other_devices():
    with pytest.raises(ReplyError, match="not a sigprop-fpga host link"):
        parse_ident(b"HELLO WORLD")
    ok = ident_payload(REGIONS, 64, 4, 32)
    assert parse_ident(ok).regions == ((100, 16), (10, 12), (7, 3))


def test_the_client_speaks_over_a_pyserial_url_port():
    """``run --port`` opens anything pyserial opens: over ``loop://`` every request comes back as
    the "reply", which starts with the request sync byte, so the client reports a missing reply."""
    from sigprop_fpga.boards.run import PortError, open_port

    port = open_port("loop://", 3_000_000, timeout=0.05)
    try:
        assert port.baudrate == 3_000_000
        client = HostLinkClient(port, retries=0)
        with pytest.raises(HostLinkError):
            client.ping()
    finally:
        port.close()
    with pytest.raises(PortError, match=r"^nosuch://x: cannot open the serial port"):
        open_port("nosuch://x")
