"""HostLink in the Amaranth simulator, at the byte-stream level and once at the UART pins.

The test top puts real ``amaranth.lib.memory.Memory`` regions and a register file on the ports;
every bus write is logged, so "nothing written" is checked on the bus, not only in the memories.
"""

import random
import struct

import pytest
from amaranth import Array, Elaboratable, Module, Signal
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator
from hypothesis import HealthCheck, example, given, settings, strategies as st

from sigprop_fpga.hdl.hostlink import HostLink, UARTHostLink, crc16_byte
from sigprop_fpga.hostlink import (Cmd, ReplyError, Status, crc16, decode_frame, decode_reply,
                                   encode_frame, ident_payload, parse_ident)

REGIONS = [("weights", 32, 16), ("table", 8, 12), ("flags", 5, 3)]
MAXP = 32
TIMEOUT = 40
NREGS = 4


class Top(Elaboratable):
    """HostLink (or UARTHostLink) + memories + register file."""

    def __init__(self, pins=False, divisor=4, timeout=TIMEOUT, registered_reads=True):
        kw = dict(max_payload=MAXP, timeout=timeout, n_regs=NREGS, reg_width=20,
                  registered_reads=registered_reads)
        self.dut = UARTHostLink(divisor, REGIONS, **kw) if pins else HostLink(REGIONS, **kw)
        self.mems = [Memory(shape=w, depth=d, init=[(7 * i + k) % (1 << w) for i in range(d)])
                     for k, (_, d, w) in enumerate(REGIONS)]
        self.regs = [Signal(20, name=f"reg{i}") for i in range(NREGS)]

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        bus = dut.bus
        r_region = Signal.like(bus.region)
        r_valid = Signal()
        datas = []
        for k, mem in enumerate(self.mems):
            m.submodules[f"mem{k}"] = mem
            w, r = mem.write_port(), mem.read_port()
            m.d.comb += [w.addr.eq(bus.addr), r.addr.eq(bus.addr), w.data.eq(bus.w_data),
                         w.en.eq(bus.w_en & (bus.region == k))]
            datas.append(r.data)
        m.d.sync += [r_valid.eq(bus.r_en), r_region.eq(bus.region)]
        m.d.comb += [bus.r_valid.eq(r_valid), bus.r_data.eq(Array(datas)[r_region])]
        regs = Array(self.regs)
        m.d.comb += dut.reg.r_data.eq(regs[dut.reg.index])
        with m.If(dut.reg.w_en):
            m.d.sync += regs[dut.reg.index].eq(dut.reg.w_data)
        return m


def split_replies(data):
    """Cut the device's byte output into reply frames (they are back to back)."""
    out, i = [], 0
    while i < len(data):
        assert data[i] == 0x5A, f"reply does not start with sync at {i}: {bytes(data).hex()}"
        n = data[i + 2] | data[i + 3] << 8
        out.append(decode_reply(bytes(data[i:i + 6 + n])))
        i += 6 + n
    return out


def run(top, script, *, sample_ready=None, results=b"", pins=False, divisor=4):
    """Run ``script(ctx, io)``; returns (replies, bus writes, sample bytes, memories, regs)."""
    dut = top.dut
    tx_bytes, writes, samples = [], [], []
    results = list(results)
    mem_state = []

    class IO:
        async def send(self, ctx, data, gap=0):
            for b in bytes(data):
                if pins:
                    for bit in [0] + [(b >> i) & 1 for i in range(8)] + [1]:
                        ctx.set(dut.rx, bit)
                        await ctx.tick().repeat(divisor)
                else:
                    ctx.set(dut.rx.payload, b)
                    ctx.set(dut.rx.valid, 1)
                    await ctx.tick().until(dut.rx.ready)
                    ctx.set(dut.rx.valid, 0)
                if gap:
                    await ctx.tick().repeat(gap)

        async def idle(self, ctx, span):
            """Tick until the device has sent nothing for ``span`` cycles in a row (a reply
            byte comes out at most 10 cycles after the previous one)."""
            while True:
                before = len(tx_bytes)
                await ctx.tick().repeat(span)
                if len(tx_bytes) == before:
                    return

        def count(self):
            """Complete replies so far (a reply still coming out is not counted)."""
            n, i = 0, 0
            while i + 4 <= len(tx_bytes):
                i += 6 + (tx_bytes[i + 2] | tx_bytes[i + 3] << 8)
                n += i <= len(tx_bytes)
            return n

        async def replies(self, ctx, n, limit=20000):
            """Wait until ``n`` replies in total have come out."""
            for _ in range(limit):
                try:
                    if len(split_replies(tx_bytes)) >= n:
                        return split_replies(tx_bytes)
                except (AssertionError, IndexError, Exception):
                    pass
                await ctx.tick().repeat(8)
            raise AssertionError(f"only {tx_bytes} after {limit * 8} cycles")

    io = IO()

    async def bench(ctx):
        await script(ctx, io)
        await ctx.tick().repeat(4)
        for mem in top.mems:
            mem_state.append([ctx.get(mem.data[i]) for i in range(mem.depth)])
        mem_state.append([ctx.get(r) for r in top.regs])

    async def collector(ctx):
        if pins:
            # sample the tx pin mid-bit
            while True:
                while ctx.get(dut.tx):
                    await ctx.tick()
                await ctx.tick().repeat(divisor // 2)
                b = 0
                for i in range(8):
                    await ctx.tick().repeat(divisor)
                    b |= ctx.get(dut.tx) << i
                await ctx.tick().repeat(divisor)
                assert ctx.get(dut.tx) == 1, "stop bit"
                tx_bytes.append(b)
        else:
            ctx.set(dut.tx.ready, 1)
            async for _, _, valid, payload in ctx.tick().sample(dut.tx.valid, dut.tx.payload):
                if valid:
                    tx_bytes.append(payload)

    async def bus_monitor(ctx):
        bus = dut.bus
        async for _, _, w_en, region, addr, data in ctx.tick().sample(
                bus.w_en, bus.region, bus.addr, bus.w_data):
            if w_en:
                writes.append((region, addr, data))

    async def sample_sink(ctx):
        n = 0
        async for _, _, valid, ready, payload in ctx.tick().sample(
                dut.sample.valid, dut.sample.ready, dut.sample.payload):
            if valid and ready:
                samples.append(payload)
            n += 1
            ctx.set(dut.sample.ready, 1 if sample_ready is None else sample_ready(n, samples))

    async def result_source(ctx):
        while results:
            ctx.set(dut.result.payload, results[0])
            ctx.set(dut.result.valid, 1)
            await ctx.tick().until(dut.result.ready)
            results.pop(0)
        ctx.set(dut.result.valid, 0)

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    for proc in (collector, bus_monitor, sample_sink, result_source):
        sim.add_testbench(proc, background=True)
    sim.run()
    return split_replies(tx_bytes), writes, samples, mem_state


def initial_mems():
    return [[(7 * i + k) % (1 << w) for i in range(d)] for k, (_, d, w) in enumerate(REGIONS)]


def wm(region, addr, words, width=None):
    if width is None:
        width = (REGIONS[region][2] + 7) // 8 if region < len(REGIONS) else 2
    bpw = width
    return encode_frame(Cmd.WRITE_MEM, struct.pack("<BIH", region, addr, len(words))
                        + b"".join(w.to_bytes(bpw, "little") for w in words))


def rm(region, addr, count):
    return encode_frame(Cmd.READ_MEM, struct.pack("<BIH", region, addr, count))


PING = encode_frame(Cmd.PING)
IDENT = ident_payload(REGIONS, MAXP, NREGS, 20)


# --------------------------------------------------------------------------------------------

def test_crc16_hardware_matches_python():
    from amaranth.sim import Simulator as S
    crc, byte = Signal(16), Signal(8)
    out = Signal(16)
    m = Module()
    m.d.comb += out.eq(crc16_byte(crc, byte))
    rnd = random.Random(1)

    async def bench(ctx):
        for _ in range(300):
            c, b = rnd.randrange(1 << 16), rnd.randrange(256)
            ctx.set(crc, c)
            ctx.set(byte, b)
            assert ctx.get(out) == crc16(bytes([b]), c)

    sim = S(m)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("registered_reads", [True, False])
def test_ping_write_read_registers_and_errors(registered_reads):
    new = [0xBEEF, 0x1234, 0xFFFF]

    async def script(ctx, io):
        await io.send(ctx, PING)
        await io.send(ctx, wm(0, 29, new))
        await io.send(ctx, rm(0, 28, 4))
        await io.send(ctx, wm(1, 0, [0xABC, 0x123]))
        await io.send(ctx, rm(1, 0, 3))
        await io.send(ctx, wm(2, 4, [5]))                       # 3-bit region, last word
        await io.send(ctx, rm(2, 3, 2))
        await io.send(ctx, encode_frame(Cmd.WRITE_REG, struct.pack("<BI", 2, 0xFFFFFFFF)))
        await io.send(ctx, encode_frame(Cmd.READ_REG, struct.pack("<B", 2)))
        await io.send(ctx, encode_frame(Cmd.READ_REG, struct.pack("<B", 4)))   # out of range
        await io.send(ctx, encode_frame(0x7E, b"xyz"))                         # unknown command
        await io.send(ctx, encode_frame(Cmd.PING, b"\x00"))                    # bad length
        await io.send(ctx, bytes([0xA5, 1, 0xFF, 0]))                          # LEN > max
        await io.send(ctx, b"\x00" * 3 + PING)
        await io.replies(ctx, 14)

    replies, writes, _, mems = run(Top(registered_reads=registered_reads), script)
    exp = initial_mems()
    exp[0][29:32] = new
    exp[1][0:2] = [0xABC, 0x123]
    exp[2][4] = 5
    assert [s for s, _ in replies] == [Status.OK] * 9 + [
        Status.OUT_OF_RANGE, Status.UNKNOWN_COMMAND, Status.BAD_LENGTH, Status.BAD_LENGTH,
        Status.OK]
    assert replies[0][1] == IDENT and parse_ident(IDENT).regions == ((32, 16), (8, 12), (5, 3))
    assert replies[2][1] == struct.pack("<4H", exp[0][28], *new)
    assert replies[4][1] == struct.pack("<3H", 0xABC, 0x123, exp[1][2])
    assert replies[6][1] == bytes([exp[2][3], 5])
    assert replies[8][1] == struct.pack("<I", 0xFFFFF)       # 20-bit register
    assert mems[:3] == exp and mems[3][2] == 0xFFFFF
    assert writes == [(0, 29, 0xBEEF), (0, 30, 0x1234), (0, 31, 0xFFFF),
                      (1, 0, 0xABC), (1, 1, 0x123), (2, 4, 5)]


def test_out_of_range_and_bad_length_write_nothing():
    frames = [
        wm(0, 30, [1, 2, 3]),                   # runs past the end
        wm(0, 32, [1]),                          # starts at the end
        wm(0, 0xFFFFFFFF, [1, 2]),               # would wrap around in 32 bits
        wm(3, 0, [1]),                           # no such region
        wm(255, 0, [1]),
        wm(1, 0, [1, 2], width=1),               # wrong bytes per word -> bad length
        encode_frame(Cmd.WRITE_MEM, struct.pack("<BIH", 0, 0, 3) + b"\x01\x00"),   # short
        encode_frame(Cmd.WRITE_MEM, b"\x00\x00\x00"),                              # < header
        rm(0, 31, 2), rm(5, 0, 1), rm(0, 0, 17),  # past end, no region, > max_payload
        encode_frame(Cmd.WRITE_REG, struct.pack("<BI", NREGS, 1)),
        encode_frame(Cmd.WRITE_REG, struct.pack("<BH", 0, 1)),
    ]

    async def script(ctx, io):
        for f in frames:
            await io.send(ctx, f)
        await io.send(ctx, PING)
        await io.replies(ctx, len(frames) + 1)

    replies, writes, _, mems = run(Top(), script)
    O, L = Status.OUT_OF_RANGE, Status.BAD_LENGTH
    assert [s for s, _ in replies] == [O, O, O, O, O, L, L, L, O, O, L, O, L, Status.OK]
    assert writes == []
    assert mems[:3] == initial_mems() and mems[3] == [0] * NREGS


def test_bad_crc_then_resync_and_truncated_frame_times_out():
    bad = bytearray(wm(0, 0, [0x5555]))
    bad[-1] ^= 0x40
    flipped = bytearray(wm(0, 1, [0x7777]))
    flipped[7] ^= 0x01                            # address byte garbled: caught by the CRC

    async def script(ctx, io):
        await io.send(ctx, bad)
        await io.send(ctx, flipped)
        await io.send(ctx, wm(0, 2, [0x1111]))
        await io.send(ctx, wm(0, 3, [0x2222])[:7])            # truncated
        await io.replies(ctx, 4)                              # ... times out by itself
        await io.send(ctx, wm(0, 4, [0x3333]))
        await io.send(ctx, wm(0, 5, [0x4444]), gap=TIMEOUT // 2)   # slow but within timeout
        await io.replies(ctx, 6)

    replies, writes, _, mems = run(Top(), script)
    assert [s for s, _ in replies] == [Status.BAD_CRC, Status.BAD_CRC, Status.OK,
                                       Status.TIMEOUT, Status.OK, Status.OK]
    assert writes == [(0, 2, 0x1111), (0, 4, 0x3333), (0, 5, 0x4444)]


@pytest.mark.parametrize("registered_reads", [True, False])
def test_send_sample_and_read_results_with_flow_control(registered_reads):
    data = bytes(range(1, 21))

    async def script(ctx, io):
        await io.send(ctx, encode_frame(Cmd.SEND_SAMPLE, data))
        await io.send(ctx, encode_frame(Cmd.READ_RESULTS, struct.pack("<H", 3)))
        await io.send(ctx, encode_frame(Cmd.READ_RESULTS, struct.pack("<H", 10)))  # only 2 left
        await io.send(ctx, encode_frame(Cmd.READ_RESULTS, struct.pack("<H", 33)))  # > max
        await io.replies(ctx, 4)

    replies, _, samples, _ = run(Top(registered_reads=registered_reads), script,
                                 sample_ready=lambda n, got: n % 3 == 0,
                                 results=b"\x10\x20\x30\x40\x50")
    assert [s for s, _ in replies] == [Status.OK, Status.OK, Status.OK, Status.BAD_LENGTH]
    assert bytes(samples) == data
    assert replies[1][1] == b"\x10\x20\x30" and replies[2][1] == b"\x40\x50"


def test_send_sample_stall_replies_busy_with_count():
    async def script(ctx, io):
        await io.send(ctx, encode_frame(Cmd.SEND_SAMPLE, b"abcdefgh"))
        await io.replies(ctx, 1)

    replies, _, samples, _ = run(Top(), script, sample_ready=lambda n, got: len(got) < 3)
    assert replies[0] == (Status.BUSY, struct.pack("<H", 3))
    assert bytes(samples) == b"abc"


def test_pins_end_to_end_through_uart():
    """Bit-banged rx pin, sampled tx pin, divisor 4: ping, write, read back, garbled frame."""
    bad = bytearray(wm(1, 2, [0x0F0]))
    bad[9] ^= 0x10

    async def script(ctx, io):
        # half duplex: the host waits for each reply before the next frame
        for k, frame in enumerate([PING, wm(1, 2, [0x0F0, 0xF0F]), bad, rm(1, 1, 3)]):
            await io.send(ctx, frame)
            await io.replies(ctx, k + 1)

    replies, writes, _, mems = run(Top(pins=True, timeout=200), script, pins=True)
    exp = initial_mems()
    assert [s for s, _ in replies] == [Status.OK, Status.OK, Status.BAD_CRC, Status.OK]
    assert replies[0][1] == IDENT
    assert replies[3][1] == struct.pack("<3H", exp[1][1], 0x0F0, 0xF0F)
    assert writes == [(1, 2, 0x0F0), (1, 3, 0xF0F)]


def test_hostlink_parameters_checked():
    with pytest.raises(ValueError, match="max_payload must be an int in 16..65535, not 8"):
        HostLink(REGIONS, max_payload=8)
    with pytest.raises(ValueError, match="region 'a': width must be an int in 1..32, not 33"):
        HostLink([("a", 4, 33)])
    with pytest.raises(ValueError, match="1..255 memory regions, not 0"):
        HostLink([])
    with pytest.raises(ValueError, match="unique"):
        HostLink([("a", 4, 8), ("a", 4, 8)])
    with pytest.raises(TypeError, match="registered_reads must be a bool, not 1"):
        HostLink(REGIONS, registered_reads=1)


# --------------------------------------------------------------------------------------------
# Fuzzing: random bytes, truncations and bit flips of valid frames

def _write_frames():
    return st.builds(lambda a, ws: wm(0, a, ws), st.integers(0, 28),
                     st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=4))


def _valid_frames():
    return st.one_of(
        st.just(PING),
        _write_frames(),
        st.builds(lambda a, n: rm(1, a, n), st.integers(0, 4), st.integers(1, 4)),
        st.builds(lambda i, v: encode_frame(Cmd.WRITE_REG, struct.pack("<BI", i, v)),
                  st.integers(0, NREGS - 1), st.integers(0, 0xFFFFF)),
    )


@st.composite
def _garbage(draw):
    kind = draw(st.sampled_from(["random", "truncate", "flip", "sync+random"]))
    if kind == "random":
        return draw(st.binary(min_size=1, max_size=24))
    if kind == "flip":                       # mostly WRITE_MEM: the frames that could do harm
        frame = bytearray(draw(st.one_of(_write_frames(), _write_frames(), _valid_frames())))
        for _ in range(draw(st.integers(1, 3))):
            i = draw(st.integers(0, 1 << 20)) % len(frame)       # spread over the frame
            frame[i] ^= 1 << draw(st.integers(0, 7))
        return bytes(frame)
    frame = draw(_valid_frames())
    if kind == "truncate":
        return frame[:draw(st.integers(1, len(frame) - 1))]
    return b"\xa5" + draw(st.binary(min_size=0, max_size=12))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.booleans(), _valid_frames(), _garbage()), min_size=1, max_size=3))
@example(steps=[(False, PING, PING)])      # garbage that is a whole PING: a long reply (CI, stop 11)
def test_fuzz_decoder_answers_resyncs_and_writes_only_what_was_asked(steps):
    """Each step: garbage, an idle gap longer than the timeout, then (maybe) a valid frame.

    The device must answer every garbage chunk that contained a sync byte with well-formed
    replies, answer the valid frame with OK, and a final PING with OK; the bus must see exactly
    the writes of the valid frames that reached it intact (a flipped frame that stays valid
    after flips counts as asked, it is a legitimate frame).
    """
    expected_writes = []
    exp = initial_mems()
    regs = [0] * NREGS

    def apply(frame):
        try:
            cmd, payload = decode_frame(frame)
        except ReplyError:
            return
        if cmd == Cmd.WRITE_MEM and len(payload) >= 7:
            region, addr, count = struct.unpack_from("<BIH", payload)
            if region == 0 and len(payload) == 7 + 2 * count and addr + count <= 32:
                for k in range(count):
                    w = struct.unpack_from("<H", payload, 7 + 2 * k)[0]
                    expected_writes.append((0, addr + k, w))
                    exp[0][addr + k] = w
        if cmd == Cmd.WRITE_REG and len(payload) == 5 and payload[0] < NREGS:
            regs[payload[0]] = struct.unpack_from("<I", payload, 1)[0] & 0xFFFFF

    async def script(ctx, io):
        seen = 0
        for send_valid, frame, junk in steps:
            await io.send(ctx, junk)
            await io.idle(ctx, TIMEOUT + 150)            # idle: any started frame times out
            now = io.count()
            if 0xA5 in junk:                              # every started frame is answered
                assert 1 <= now - seen <= junk.count(0xA5), (junk.hex(), now - seen)
            else:
                assert now == seen, junk.hex()            # bytes outside frames are dropped
            if junk[:1] == b"\xa5":
                apply(junk)                               # (a double flip may restore a frame)
            seen = now
            if send_valid:
                await io.send(ctx, frame)
                apply(frame)
                replies = await io.replies(ctx, seen + 1)
                assert replies[-1][0] == Status.OK, frame.hex()
                seen += 1
        await io.send(ctx, PING)
        await io.replies(ctx, seen + 1)

    replies, writes, _, mems = run(Top(), script)
    assert all(isinstance(s, Status) for s, _ in replies)
    assert replies[-1] == (Status.OK, IDENT)                          # resynchronised
    assert writes == expected_writes                                  # nothing unasked
    assert mems[:3] == exp and mems[3] == regs


def test_host_client_against_simulated_hostlink():
    """The host client library (sigprop_fpga.hostlink) drives the simulated HostLink through the
    in-process transport: the simulator runs in a thread and plays the byte streams."""
    import threading
    from sigprop_fpga.hostlink import HostLinkClient, LoopbackTransport

    top = Top()
    dut = top.dut
    link = LoopbackTransport(timeout=10.0)
    stop = threading.Event()
    errors = []

    async def device(ctx):
        ctx.set(dut.tx.ready, 1)
        pending = b""
        while not stop.is_set():
            if not pending:
                pending = link.device_read(64)
            if pending and not ctx.get(dut.rx.valid):
                ctx.set(dut.rx.payload, pending[0])
                ctx.set(dut.rx.valid, 1)
            rx_taken = ctx.get(dut.rx.valid) and ctx.get(dut.rx.ready)
            tx_byte = ctx.get(dut.tx.payload) if ctx.get(dut.tx.valid) else None
            await ctx.tick()
            if rx_taken:
                pending = pending[1:]
                ctx.set(dut.rx.valid, 0)
            if tx_byte is not None:
                link.device_write(bytes([tx_byte]))

    async def results(ctx):
        for b in b"RESULT":
            ctx.set(dut.result.payload, b)
            ctx.set(dut.result.valid, 1)
            await ctx.tick().until(dut.result.ready)
        ctx.set(dut.result.valid, 0)

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(device)
    sim.add_testbench(results, background=True)
    samples = []

    async def sink(ctx):
        ctx.set(dut.sample.ready, 1)
        async for _, _, v, p in ctx.tick().sample(dut.sample.valid, dut.sample.payload):
            if v:
                samples.append(p)
    sim.add_testbench(sink, background=True)

    def run_sim():
        try:
            sim.run()
        except BaseException as exc:      # surface simulator failures in the main thread
            errors.append(exc)
            stop.set()

    thread = threading.Thread(target=run_sim, daemon=True)
    thread.start()
    try:
        c = HostLinkClient(link)
        assert c.ping().regions == ((32, 16), (8, 12), (5, 3))
        words = [(0x9E37 * i) & 0xFFFF for i in range(32)]
        c.write_mem(0, 0, words)                       # 32 words: two chunks of max_payload
        assert c.read_mem(0, 0, 32) == words
        c.write_mem(1, 3, [-2, 7])
        assert c.read_mem(1, 3, 2, signed=True) == [-2, 7]
        c.write_reg(3, 0x12345)
        assert c.read_reg(3) == 0x12345
        c.send_sample(bytes(range(40)))
        assert c.read_results(6) == b"RESULT"
        link.write(b"\xa5\x02\x05")                    # garbage: a truncated frame
        import time
        time.sleep(0.2)                                # (the device times out meanwhile)
        assert c.read_reg(3) == 0x12345                # the stale TIMEOUT reply is dropped
        assert c.stats["retries"] == 0
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not errors, errors
    assert bytes(samples) == bytes(range(40))


# --------------------------------------------------------------------------------------------
# Small-logic details: constant comparisons, high address bits, bit-serial CRC timing

def test_gt_const_matches_python():
    from sigprop_fpga.hdl.hostlink import _gt_const
    from amaranth.sim import Simulator as S
    for width in (1, 3, 5):
        x = Signal(width)
        ks = [-1, 0, 1, (1 << width) - 2, (1 << width) - 1, 1 << width] + list(range(1 << width))
        outs = [(k, Signal(name=f"gt_{width}_{i}")) for i, k in enumerate(ks)]
        m = Module()
        m.d.comb += [o.eq(_gt_const(x, k)) for k, o in outs]

        async def bench(ctx, x=x, width=width, outs=outs):
            for v in range(1 << width):
                ctx.set(x, v)
                for k, o in outs:
                    assert ctx.get(o) == (v > k), (width, v, k)

        sim = S(m)
        sim.add_testbench(bench)
        sim.run()


def test_high_address_bits_are_out_of_range():
    """Only the address bits a region can use are kept; any higher bit set (in any of the four
    address bytes) makes the command OUT_OF_RANGE, for reads and writes, without a bus cycle."""
    frames = [wm(0, 1 << k, [1]) for k in (6, 8, 15, 16, 23, 24, 31)]
    frames += [rm(1, (1 << k) + 1, 1) for k in (8, 16, 24, 31)]

    async def script(ctx, io):
        for f in frames:
            await io.send(ctx, f)
        await io.send(ctx, wm(0, 31, [0x4242]))                   # the last word is fine
        await io.replies(ctx, len(frames) + 1)

    replies, writes, _, _ = run(Top(), script)
    assert [s for s, _ in replies] == [Status.OUT_OF_RANGE] * len(frames) + [Status.OK]
    assert writes == [(0, 31, 0x4242)]


def test_bit_serial_crc_timing():
    """A request byte is taken 8 cycles after it is offered (its CRC bits first; the sync byte
    and the CRC bytes at once; the first payload byte a cycle later, after the length's check); reply bytes are offered 10 cycles apart (11 from the buffer),
    so behind a UART (10 * divisor >= 40 cycles a byte) they go out back to back."""
    top = Top()
    dut = top.dut
    frame = encode_frame(Cmd.READ_REG, b"\x01")
    taken, offered = [], []

    async def bench(ctx):
        ctx.set(dut.tx.ready, 1)
        cycle = 0
        for b in frame:
            ctx.set(dut.rx.payload, b)
            ctx.set(dut.rx.valid, 1)
            start = cycle
            while True:
                ready = ctx.get(dut.rx.ready)
                await ctx.tick()
                cycle += 1
                if ready:
                    break
            taken.append(cycle - start)
            ctx.set(dut.rx.valid, 0)
        for _ in range(200):
            if ctx.get(dut.tx.valid):
                offered.append((cycle, ctx.get(dut.tx.payload)))
            await ctx.tick()
            cycle += 1

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    # sync, CMD, LEN lo/hi, index (a cycle later: LEN_CHECK), CRC
    assert taken == [1, 9, 9, 9, 10, 1, 1]
    reply = bytes(p for _, p in offered)
    assert decode_reply(reply) == (Status.OK, struct.pack("<I", 0))
    gaps = [b[0] - a[0] for a, b in zip(offered, offered[1:])]
    assert gaps == [1, 10, 10, 11, 11, 11, 11, 10, 1]    # sync, header, payload, CRC
