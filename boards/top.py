"""The board top: the engine, the on-chip dataset (autonomous mode) and the UART host link.

Host link registers (32 bit; see :mod:`sigprop_fpga.hdl.hostlink` for the frame format):

=====  ===============  =================================================================
index  name             meaning
=====  ===============  =================================================================
0      CONTROL (w)      bit 0: start the feeder (a pulse), bit 1: evaluate the test split
                        after each epoch, bit 2: hold (no new sample; needed for readback),
                        bits 16-31: epochs
1      STATUS           bit 0 feeder busy, bit 1 done, bit 2 engine idle, bits 16-31 epoch
2      SENT             samples the feeder streamed since start
3      RECEIVED         predictions the feeder scored since start
4      TRAIN_CORRECT    correct (pre-update) predictions of the epoch in progress
5      TEST_CORRECT     correct test predictions of the epoch in progress
6      CYCLES           engine busy cycles
7      SAMPLES          trained samples
8      INFERENCES       inference samples
9      CURVE_ADDR (w)   epoch whose score CURVE_TRAIN / CURVE_TEST show
10     CURVE_TRAIN      correct training predictions of that epoch
11     CURVE_TEST       correct test predictions of that epoch
12     N_TRAIN          training samples stored on chip
13     N_TEST           test samples stored on chip
14     ID               0x53500002 ("SP", layout version 2)
15     ENGINE           the engine: 0 pipelined (the lanes per stage are the compiler's,
                        ``allocate_lanes``), else the serial engine's lane count
=====  ===============  =================================================================

Memory region 0 (``state``) is the engine's state (set ``hold`` and wait for ``idle`` first):
weights, biases, target table, caches and counters, laid out as in the manifest's ``readback``
map. Reads return any entry; writes load weights, biases, the table and the caches (a checkpoint)
and are ignored for counters and unused addresses. SEND_SAMPLE bytes go to the engine when the feeder is not busy: one
byte per feature (two's complement), then one label byte whose bit 7 selects training; each
sample's prediction comes back as one byte through READ_RESULTS.

The LEDs show: LED 0 training in progress, LED 1 done; with more LEDs, the last epoch's test
accuracy as a bar (one LED per eighth).
"""

from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In, Out

from ..hdl.engine import SigPropEngine
from ..hdl.feeder import DatasetFeeder
from ..hdl.hostlink import UARTHostLink

__all__ = ["SigPropBoardCore", "SigPropBoardTop", "REGISTERS", "BOARD_ID", "HOST_BAUD"]

REGISTERS = ("CONTROL", "STATUS", "SENT", "RECEIVED", "TRAIN_CORRECT", "TEST_CORRECT", "CYCLES", "SAMPLES",
             "INFERENCES", "CURVE_ADDR", "CURVE_TRAIN", "CURVE_TEST", "N_TRAIN", "N_TEST", "ID", "ENGINE")
BOARD_ID = 0x53500002


class SigPropBoardCore(wiring.Component):
    """The trainer with its host link: everything of the board top but the pins.

    Parameters
    ----------
    net, data :
        The network and its dataset (the first ``n_train`` / ``n_test`` samples are stored).
    divisor : int
        UART clock cycles per bit.
    lanes : tuple of int or int, optional
        The engine's lanes (per stage for :class:`~sigprop_fpga.hdl.engine.SigPropEngine`, one
        count for :class:`~sigprop_fpga.hdl.serial.SerialEngine`).
    autostart_epochs : int
    engine_cls : type
        The engine: :class:`~sigprop_fpga.hdl.engine.SigPropEngine` (a pipelined stage per
        layer, the default) or :class:`~sigprop_fpga.hdl.serial.SerialEngine` (one lane array
        for every layer, for small devices); both have the same ports and state map.
        Epochs the chip trains by itself after configuration (0: wait for the host).

    Members
    -------
    uart_rx : In(1), uart_tx : Out(1)
        The UART pins (idle high).
    leds : Out(8)
        LED 0 training, LED 1 done, LEDs 2-7 the last epoch's test accuracy as a bar.

    Latency and throughput
    ----------------------
    The engine's; the host link is half duplex at ``clock / divisor`` baud.
    """

    def __init__(self, net, data, *, divisor: int, lanes=None, n_train=None, n_test=None,
                 autostart_epochs: int = 0, max_epochs: int = 255, engine_cls=SigPropEngine):
        self.net, self.data = net, data
        self.n_train = len(data.y_train) if n_train is None else n_train
        self.n_test = len(data.y_test) if n_test is None else n_test
        self.divisor = divisor
        self.autostart_epochs = autostart_epochs
        self.engine = engine_cls(net, lanes)
        self.feeder = DatasetFeeder(data.x_train[:self.n_train], data.y_train[:self.n_train],
                                    data.x_test[:self.n_test], data.y_test[:self.n_test],
                                    in_width=self.engine.in_width, n_classes=net.n_classes, max_epochs=max_epochs)
        self.link = UARTHostLink(divisor, [("state", 1 << self.engine.map["addr_width"], 32)],
                                 n_regs=len(REGISTERS), max_payload=256)
        super().__init__({"uart_rx": In(1, init=1), "uart_tx": Out(1, init=1), "leds": Out(8)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = e = self.engine
        m.submodules.feeder = f = self.feeder
        m.submodules.link = link = self.link

        # engine input: the feeder while it runs, else the host's sample bytes
        host = link.sample
        beat = Signal(range(self.net.n_inputs + 1))
        with m.If(f.busy):
            m.d.comb += [e.i.payload.eq(f.o.payload), e.i.valid.eq(f.o.valid), f.o.ready.eq(e.i.ready),
                         f.pred.valid.eq(e.o.valid), f.pred.payload.eq(e.o.payload), e.o.ready.eq(1)]
        with m.Else():
            label_beat = beat == self.net.n_inputs
            m.d.comb += [e.i.valid.eq(host.valid), host.ready.eq(e.i.ready),
                         e.i.payload.data.eq(host.payload[:7]), e.i.payload.train.eq(0)]
            with m.If(~label_beat):
                m.d.comb += e.i.payload.data.eq(host.payload)
            with m.Else():
                m.d.comb += e.i.payload.train.eq(host.payload[7])
            with m.If(host.valid & host.ready):
                m.d.sync += beat.eq(0 if self.net.n_inputs == 0 else beat + 1)
                with m.If(label_beat):
                    m.d.sync += beat.eq(0)
            m.d.comb += [link.result.valid.eq(e.o.valid), link.result.payload.eq(e.o.payload),
                         e.o.ready.eq(link.result.ready)]

        # registers
        ctrl_evaluate, ctrl_hold = Signal(), Signal()
        epochs = Signal(16)
        start = Signal()
        curve_addr = Signal(16)
        auto = Signal(init=1 if self.autostart_epochs else 0)
        m.d.comb += [f.epochs.eq(epochs), f.evaluate.eq(ctrl_evaluate), f.hold.eq(ctrl_hold), f.start.eq(start),
                     f.curve_addr.eq(curve_addr)]
        m.d.sync += start.eq(0)
        if self.autostart_epochs:
            with m.If(auto):
                m.d.sync += [auto.eq(0), start.eq(1), epochs.eq(self.autostart_epochs), ctrl_evaluate.eq(1)]
        reg = link.reg
        with m.If(reg.w_en):
            with m.Switch(reg.index):
                with m.Case(REGISTERS.index("CONTROL")):
                    m.d.sync += [start.eq(reg.w_data[0]), ctrl_evaluate.eq(reg.w_data[1]),
                                 ctrl_hold.eq(reg.w_data[2]), epochs.eq(reg.w_data[16:32])]
                with m.Case(REGISTERS.index("CURVE_ADDR")):
                    m.d.sync += curve_addr.eq(reg.w_data)
        values = {
            "CONTROL": (epochs << 16) | (ctrl_hold << 2) | (ctrl_evaluate << 1),
            "STATUS": (f.epoch << 16) | (e.idle << 2) | (f.done << 1) | f.busy,
            "SENT": f.sent, "RECEIVED": f.received, "TRAIN_CORRECT": f.train_correct,
            "TEST_CORRECT": f.test_correct, "CYCLES": e.cycles, "SAMPLES": e.samples, "INFERENCES": e.inferences,
            "CURVE_ADDR": curve_addr, "CURVE_TRAIN": f.curve_data[:32], "CURVE_TEST": f.curve_data[32:],
            "N_TRAIN": self.n_train, "N_TEST": self.n_test, "ID": BOARD_ID,
            "ENGINE": getattr(e, "P", 0) if not isinstance(e, SigPropEngine) else 0,
        }
        r_data = Signal(32)
        with m.Switch(reg.index):
            for k, name in enumerate(REGISTERS):
                with m.Case(k):
                    m.d.sync += r_data.eq(values[name])
        m.d.comb += reg.r_data.eq(r_data)

        # memory region 0: the engine's state port, read data rb_latency cycles after r_en
        # (the bus holds the address until r_valid), writes at once. rb_data is the engine's own
        # output register; it is used as is (the link registers it again in `word`)
        bus = link.bus
        pend = Signal(e.rb_latency)
        m.d.comb += [e.rb_en.eq(ctrl_hold), e.rb_addr.eq(bus.addr), bus.r_data.eq(e.rb_data),
                     bus.r_valid.eq(pend[-1]), e.wb_en.eq(ctrl_hold & bus.w_en), e.wb_data.eq(bus.w_data)]
        m.d.sync += pend.eq((pend << 1) | bus.r_en)

        # pins and LEDs
        m.d.comb += [link.rx.eq(self.uart_rx), self.uart_tx.eq(link.tx),
                     self.leds[0].eq(f.busy), self.leds[1].eq(f.done)]
        for k in range(6):                 # the last epoch's test accuracy as a bar
            thresh = (k + 1) * self.n_test // 7
            m.d.comb += self.leds[2 + k].eq(f.done & (f.last_test_correct >= thresh))
        return m


#: The host link's baud rate (the UART divisor is ``round(clock / HOST_BAUD)``).
HOST_BAUD = 115200


class SigPropBoardTop(Elaboratable):
    """:class:`SigPropBoardCore` on a board's UART and LEDs.

    Parameters
    ----------
    net, data :
    target : BoardTarget
    clock_hz : float
        The ``sync`` frequency (sets the UART divisor).
    baud : int
    lanes, n_train, n_test, autostart_epochs, engine_cls :
        As :class:`SigPropBoardCore`.
    """

    def __init__(self, net, data, target, clock_hz: float, *, baud: int = HOST_BAUD, lanes=None,
                 n_train=None, n_test=None, autostart_epochs: int = 0, engine_cls=SigPropEngine):
        if baud <= 0 or clock_hz / baud < 4:
            raise ValueError(f"the UART needs at least 4 clock cycles per bit, {clock_hz:.0f} Hz / {baud} baud")
        self.target = target
        self.core = SigPropBoardCore(net, data, divisor=round(clock_hz / baud), lanes=lanes, n_train=n_train,
                                     n_test=n_test, autostart_epochs=autostart_epochs,
                                     engine_cls=engine_cls)

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        uart = platform.request(self.target.uart_resource, 0, dir="-")
        m.submodules.uart_rx = rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = tx = io.Buffer("o", uart.tx)
        m.d.comb += [core.uart_rx.eq(rx.i), tx.o.eq(core.uart_tx)]
        for k, (name, number) in enumerate(self.target.leds[:8]):
            m.submodules[f"led_{name}_{number}"] = b = io.Buffer("o", platform.request(name, number, dir="-"))
            m.d.comb += b.o.eq(core.leds[k])
        return m
