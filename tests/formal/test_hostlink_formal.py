"""Formal: the host link (hdl/hostlink.py) writes nothing, to the memory bus or to a register,
unless the frame it has just taken, whatever bytes arrived, is a well-formed WRITE_MEM or
WRITE_REG frame whose CRC checks out and whose region, address, count and register index are in
bounds; and the write carries that frame's address and data.

The reference is independent of the decoder: a window of the last bytes the decoder took at its
byte interface (``rx``), a CRC-16/CCITT-FALSE written out bit by bit here, and the wire contract's
field layout. The link is half duplex (it takes no byte while it executes), so at a write the
frame's last byte is the newest in the window.

Bounded (BMC): one 8-bit region of two words, one 8-bit register, ``max_payload`` 16 and
``timeout`` 2, a byte always on offer. A byte that goes through the bit-serial CRC is taken 9
cycles after it is offered, so a WRITE_REG frame (11 bytes) is in after 75 cycles at the least
and its write comes at cycle 83 (where the planted CRC bug fails): depth 90 covers every byte
sequence of 90 cycles, i.e. WRITE_REG frames that start within the first few bytes. A WRITE_MEM
frame of one word (14 bytes) needs about 102 cycles: its branch of the property is written but
beyond the depth kept for run time (the proof takes minutes already).
"""

import pytest
from amaranth.hdl import Assert, Assume, C, Cat, Fragment, Module, Mux, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from sigprop_fpga.hdl.hostlink import HostLink
from sigprop_fpga.hostlink import Cmd

# minutes per proof (8 min for the property, 2 to 5 for each planted bug on a loaded 2-core machine):
# `make test-slow` runs them, `make test` leaves them out to stay under 20 minutes
pytestmark = [pytest.mark.formal, pytest.mark.slow]

REGIONS = [("mem", 2, 8)]
DEPTH = 90
EARLIEST = 74                    # no WRITE_REG frame can have been taken before this step
WINDOW = 15                      # the longest frame that may write: WRITE_MEM of two words


def crc16(m, byte_values, name):
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, MSB first) of ``byte_values``, bit by bit;
    each byte's CRC is a signal of its own (the expression would otherwise grow as a tree)."""
    crc = C(0xFFFF, 16)
    for n, b in enumerate(byte_values):
        for i in reversed(range(8)):
            fb = crc[15] ^ b[i]
            crc = Cat(C(0, 1), crc[:15]) ^ Mux(fb, C(0x1021, 16), C(0, 16))
        s = Signal(16, name=f"{name}_crc{n}")
        m.d.comb += s.eq(crc)
        crc = s
    return crc


class LinkHarness(wiring.Component):
    rx_valid: In(1)
    rx_data: In(8)
    tx_ready: In(1)
    bus_r_valid: In(1)
    bus_r_data: In(8)
    reg_r_data: In(8)
    sample_ready: In(1)
    result_valid: In(1)
    result_data: In(8)

    def __init__(self, link):
        self.link = link
        super().__init__()

    def frame(self, m, window, length, cmd):
        """(well formed, bytes) for a frame of ``length`` bytes that ends with the newest byte."""
        f = [window[length - 1 - k] for k in range(length)]
        ok = ((f[0] == 0xA5) & (f[1] == cmd) & (Cat(f[2], f[3]) == length - 6)
              & (crc16(m, f[1:length - 2], f"f{length}") == Cat(f[length - 2], f[length - 1])))
        return ok, f

    def elaborate(self, platform):
        m = Module()
        link = self.link
        m.submodules.link = Fragment.get(link, platform)
        m.d.comb += [link.rx.valid.eq(self.rx_valid), link.rx.payload.eq(self.rx_data),
                     link.tx.ready.eq(self.tx_ready), link.bus.r_valid.eq(self.bus_r_valid),
                     link.bus.r_data.eq(self.bus_r_data), link.reg.r_data.eq(self.reg_r_data),
                     link.sample.ready.eq(self.sample_ready), link.result.valid.eq(self.result_valid),
                     link.result.payload.eq(self.result_data)]
        # the byte source keeps a byte on offer until it is taken (a UART receiver does)
        held, held_data = Signal(), Signal(8)
        m.d.sync += [held.eq(self.rx_valid & ~link.rx.ready), held_data.eq(self.rx_data)]
        m.d.comb += [Assume(~ResetSignal()), Assume(~held | self.rx_valid & (self.rx_data == held_data))]
        # a byte is always on offer (any byte: the data is free), and the reply side never
        # stalls: what arrives, not when, is what the property is about, and it keeps the
        # search small
        m.d.comb += [Assume(self.rx_valid), Assume(self.tx_ready), Assume(self.bus_r_valid),
                     Assume(self.sample_ready), Assume(~self.result_valid)]
        # the window: the bytes taken, newest first
        window = [Signal(8, name=f"w{k}") for k in range(WINDOW)]
        with m.If(link.rx.valid & link.rx.ready):
            m.d.sync += [window[0].eq(link.rx.payload)] + [window[k].eq(window[k - 1]) for k in range(1, WINDOW)]
        # WRITE_REG: A5 04 05 00 | index, value u32 | CRC
        reg_ok, f = self.frame(m, window, 11, Cmd.WRITE_REG)
        reg_ok = reg_ok & (f[4] < link.n_regs) & (link.reg.index == f[4]) & (link.reg.w_data == f[5])
        # WRITE_MEM: A5 02 LEN | region, addr u32, count u16, count words | CRC
        mem_ok = C(0, 1)
        depth = REGIONS[0][1]
        for count in (1, 2):
            ok, f = self.frame(m, window, 13 + count, Cmd.WRITE_MEM)
            addr = Cat(*f[5:9])
            in_bounds = (f[4] == 0) & (Cat(f[9], f[10]) == count) & (addr + count <= depth)
            # the word written: its address is addr + k for the k-th word of the frame
            k = link.bus.addr - addr[:len(link.bus.addr)]
            data_ok = Mux(k == 0, link.bus.w_data == f[11], link.bus.w_data == f[min(12, 10 + count)])
            mem_ok = mem_ok | ok & in_bounds & (link.bus.addr >= addr) & (k < count) & data_ok
        m.d.comb += [Assert(~link.reg.w_en | reg_ok), Assert(~link.bus.w_en | mem_ok),
                     Assert(~link.bus.w_en | (link.bus.addr < depth) & (link.bus.region == 0))]
        return m


def tiny_link(cls=HostLink):
    return cls(REGIONS, max_payload=16, timeout=2, n_regs=1, reg_width=8)


def test_no_write_before_crc_and_bounds(sby):
    assert sby(LinkHarness(tiny_link()), mode="bmc", depth=DEPTH, presat=False) == "PASS", sby.failed


class HighCrcOnly(HostLink):
    """A planted bug: the CRC's low byte is not compared (only the high one)."""

    def _receive(self, m, e):
        super()._receive(m, e)
        m.d.sync += e.crc_lo_ok.eq(1)


class NoChecks(HostLink):
    """A planted bug: EXEC never answers early, so out-of-range and badly sized frames execute."""

    def _checks(self, m, e):
        super()._checks(m, e)
        m.d.sync += e.check_reply.eq(0)


@pytest.mark.parametrize("cls", [HighCrcOnly, NoChecks])
def test_planted_link_bugs_are_found(sby, cls):
    # the search for a failure may skip the steps before a frame can have arrived
    assert sby(LinkHarness(tiny_link(cls)), mode="bmc", depth=DEPTH, presat=False, skip=EARLIEST) == "FAIL"
