"""8N1 UART receiver and transmitter with byte streams.

Both sides run from the ``sync`` clock domain. The bit period is a whole number of clock cycles,
``divisor = round(f_clk / baud)`` (for example 12 MHz / 115200 baud -> 104, an error of 0.16%).
A frame is one start bit (0), eight data bits least significant first, and one stop bit (1);
the line idles high.

Bytes enter and leave as :class:`amaranth.lib.stream.Signature` ``(8)`` streams (valid, ready,
payload), so the host-link decoder (:mod:`sigprop_fpga.hdl.hostlink`) sits between them.
"""

from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UARTRx", "UARTTx", "check_divisor", "uart_divisor", "MIN_DIVISOR", "MAX_BAUD_ERROR"]

#: The smallest divisor accepted: the receiver needs a half-bit wait of at least two cycles.
MIN_DIVISOR = 4


def check_divisor(divisor):
    """Return ``divisor`` if it is an integer >= :data:`MIN_DIVISOR`, else raise.

    Raises
    ------
    TypeError
        If ``divisor`` is not an ``int`` (``bool`` is refused too).
    ValueError
        If ``divisor < MIN_DIVISOR``.
    """
    if isinstance(divisor, bool) or not isinstance(divisor, int):
        raise TypeError(f"UART divisor must be an int (clock cycles per bit), "
                        f"not {divisor!r}")
    if divisor < MIN_DIVISOR:
        raise ValueError(f"UART divisor must be at least {MIN_DIVISOR} clock cycles per bit, "
                         f"not {divisor}")
    return divisor


#: The largest relative error between ``clock / divisor`` and the host's baud rate accepted.
#: The receiver finds the start edge to within ``1 + 2`` cycles (synchroniser) and samples
#: mid-bit, so the last (stop) bit is sampled ``9.5 * err`` bit periods off the middle plus the
#: edge's uncertainty; at 2% and 8 cycles per bit that is ``0.19 + 3/8 = 0.57`` of a half bit,
#: with margin for the host side's own error (FTDI chips: < 0.5% at 3 Mbaud).
MAX_BAUD_ERROR = 0.02


def uart_divisor(clock_hz, baud, max_error=MAX_BAUD_ERROR):
    """The UART divisor (clock cycles per bit) for ``baud`` at ``clock_hz``, error budget checked.

    Parameters
    ----------
    clock_hz : float
        The ``sync`` clock the design is built for (the PLL's achieved frequency).
    baud : int
        The host's rate.
    max_error : float
        Largest accepted ``|clock_hz / divisor - baud| / baud``.

    Returns
    -------
    (int, float)
        ``divisor = round(clock_hz / baud)`` and its relative rate error. For example 24 MHz at
        3 Mbaud: 8, exactly; 70 MHz at 3 Mbaud: 23, +1.4% (3.043 Mbaud).

    Raises
    ------
    TypeError
        If ``baud`` is not an ``int`` or ``clock_hz`` not a number.
    ValueError
        If the divisor is below :data:`MIN_DIVISOR` or the error exceeds ``max_error``.
    """
    if isinstance(baud, bool) or not isinstance(baud, int):
        raise TypeError(f"baud must be an int, not {baud!r}")
    if isinstance(clock_hz, bool) or not isinstance(clock_hz, (int, float)):
        raise TypeError(f"clock_hz must be a number, not {clock_hz!r}")
    if baud <= 0 or clock_hz <= 0:
        raise ValueError(f"baud and clock must be positive, not {baud} baud at {clock_hz} Hz")
    divisor = max(1, round(clock_hz / baud))
    if divisor < MIN_DIVISOR:
        raise ValueError(f"{baud} baud needs at least {MIN_DIVISOR} clock cycles per bit; "
                         f"{clock_hz / 1e6:g} MHz gives {clock_hz / baud:.2f}")
    error = clock_hz / divisor / baud - 1
    if abs(error) > max_error:
        raise ValueError(f"{baud} baud at {clock_hz / 1e6:g} MHz: divisor {divisor} gives "
                         f"{clock_hz / divisor:.0f} baud, {100 * error:+.2f}% off (the budget is "
                         f"{100 * max_error:g}%); choose a clock that is closer to a multiple of "
                         f"the baud rate")
    return divisor, error


def _checked(component, divisor):
    try:
        return check_divisor(divisor)
    except (TypeError, ValueError):
        component._MustUse__silence = True     # no "created but never used" warning on refusal
        raise


class UARTTx(wiring.Component):
    """8N1 UART transmitter.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least :data:`MIN_DIVISOR`.

    Members
    -------
    data : ``In(stream.Signature(8))``
        Bytes to send. A byte is taken when ``data.valid & data.ready``.
    tx : ``Out(1, init=1)``
        Serial output, driven straight from a flip-flop (glitch free), idles high.
    busy : ``Out(1)``
        High while a frame is on the line.

    Latency and throughput
    ----------------------
    The start bit appears on ``tx`` one cycle after the byte is accepted. ``data.ready`` rises in the
    last cycle of the stop bit, so back-to-back bytes run at exactly ``10 * divisor`` cycles per
    byte with no idle gap.
    """

    def __init__(self, divisor):
        self.divisor = _checked(self, divisor)
        super().__init__({
            "data": In(stream.Signature(8)),
            "tx": Out(1, init=1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        shreg = Signal(10, init=0x3FF)       # bit 0 is on the line; ones shift in from the top
        left = Signal(range(11))            # bits of the frame still to finish, current included
        count = Signal(range(d))
        count_zero = Signal(init=1)         # count == 0, a register: `last` enables the whole
                                            # shift register and takes the byte (ready)
        # left == 0, left == 1 and `last` (ready) as registers beside the counters: the
        # handshake leaves a flip-flop (it feeds the host link's state machine and CRC)
        idle, left_one, last = Signal(init=1), Signal(), Signal(init=1)
        m.d.comb += [
            self.tx.eq(shreg[0]),
            self.data.ready.eq(last),
            self.busy.eq(~idle),
        ]
        with m.If(self.data.valid & last):
            m.d.sync += [
                shreg.eq(Cat(C(0, 1), self.data.payload, C(1, 1))),
                left.eq(10),
                count.eq(d - 1),
                count_zero.eq(0),           # d >= MIN_DIVISOR > 1
                idle.eq(0), left_one.eq(0), last.eq(0),
            ]
        with m.Elif(~idle):
            with m.If(count_zero):
                m.d.sync += [
                    shreg.eq(Cat(shreg[1:], C(1, 1))),
                    left.eq(left - 1),
                    count.eq(d - 1),
                    count_zero.eq(0),
                    idle.eq(left_one), left_one.eq(left == 2), last.eq(left_one),
                ]
            with m.Else():
                m.d.sync += [count.eq(count - 1), count_zero.eq(count == 1),
                             last.eq(left_one & (count == 1))]
        return m


class UARTRx(wiring.Component):
    """8N1 UART receiver with a two-flop synchroniser and mid-bit sampling.

    The falling edge of the start bit is looked for on the synchronised line; the start bit is
    checked again half a bit later (a shorter low glitch is ignored) and every further bit is
    sampled one bit period after the previous sample, i.e. in the middle of the bit. A stop bit
    sampled low is a framing error: the byte is dropped, ``frame_error`` pulses, and the receiver
    waits for the line to go high again (a break condition gives one error, not a stream of zeros).

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least :data:`MIN_DIVISOR`.

    Members
    -------
    rx : ``In(1, init=1)``
        Serial input (asynchronous; synchronised inside).
    data : ``Out(stream.Signature(8))``
        Received bytes. ``valid`` stays high (payload stable) until ``ready``.
    frame_error : ``Out(1)``
        One-cycle pulse: a stop bit was sampled low, the byte was dropped.
    overrun : ``Out(1)``
        One-cycle pulse: a byte completed while the previous one was still not taken; the new
        byte was dropped (the held byte is kept, as the stream rules require).

    Latency and throughput
    ----------------------
    ``data.valid`` rises ``2 + divisor // 2 + 9 * divisor`` cycles (sync + half bit + 9 bits,
    give or take one cycle) after the falling edge of the start bit, i.e. in the middle of the stop
    bit. The receiver hunts for the next start bit from there, so it accepts back-to-back frames
    and transmitter clocks up to about 4% off. One byte per ``10 * divisor`` cycles; the consumer
    has ``10 * divisor`` cycles to take each byte before an overrun.
    """

    def __init__(self, divisor):
        self.divisor = _checked(self, divisor)
        super().__init__({
            "rx": In(1, init=1),
            "data": Out(stream.Signature(8)),
            "frame_error": Out(1),
            "overrun": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        rx = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, rx, init=1)

        count = Signal(range(d))
        bit = Signal(range(8))
        shreg = Signal(8)

        with m.If(self.data.ready):
            m.d.sync += self.data.valid.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += count.eq(d // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(count == 0):
                    with m.If(~rx):
                        m.d.sync += [count.eq(d - 1), bit.eq(0)]
                        m.next = "DATA"
                    with m.Else():
                        m.next = "IDLE"            # glitch, not a start bit
                with m.Else():
                    m.d.sync += count.eq(count - 1)
            with m.State("DATA"):
                with m.If(count == 0):
                    m.d.sync += [shreg.eq(Cat(shreg[1:], rx)), count.eq(d - 1)]
                    m.d.sync += bit.eq(bit + 1)
                    with m.If(bit == 7):
                        m.next = "STOP"
                with m.Else():
                    m.d.sync += count.eq(count - 1)
            with m.State("STOP"):
                with m.If(count == 0):
                    with m.If(rx):
                        with m.If(self.data.valid & ~self.data.ready):
                            m.d.comb += self.overrun.eq(1)
                        with m.Else():
                            m.d.sync += [self.data.valid.eq(1), self.data.payload.eq(shreg)]
                        m.next = "IDLE"
                    with m.Else():
                        m.d.comb += self.frame_error.eq(1)
                        m.next = "BREAK"
                with m.Else():
                    m.d.sync += count.eq(count - 1)
            with m.State("BREAK"):
                with m.If(rx):
                    m.next = "IDLE"
        return m
