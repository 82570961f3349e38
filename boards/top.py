"""The board top: the engine, the on-chip dataset (autonomous mode) and the UART host link.

Host link registers (32 bit; see :mod:`sigprop_fpga.hdl.hostlink` for the frame format):

=====  ===============  =================================================================
index  name             meaning
=====  ===============  =================================================================
0      CONTROL (w)      bit 0: start the feeder (a pulse), bit 1: evaluate the test split
                        after each epoch, bit 2: hold (no new sample; needed for readback
                        and state writes), bit 3: host samples are inference (else
                        training), bits 16-31: epochs
1      STATUS           bit 0 feeder busy, bit 1 done, bit 2 engine idle, bits 16-31 epoch
2      SENT             samples the feeder streamed since start (*)
3      RECEIVED         predictions the feeder scored since start (*)
4      TRAIN_CORRECT    correct (pre-update) predictions of the epoch in progress (*)
5      TEST_CORRECT     correct test predictions of the epoch in progress (*)
6      CYCLES           engine busy cycles (*)
7      SAMPLES          trained samples
8      INFERENCES       inference samples
9      CURVE_ADDR (w)   epoch whose score CURVE_TRAIN / CURVE_TEST show
10     CURVE_TRAIN      correct training predictions of that epoch
11     CURVE_TEST       correct test predictions of that epoch
12     N_TRAIN          training samples stored on chip
13     N_TEST           test samples stored on chip
14     ID               0x53500003 ("SP", layout version 3)
15     ENGINE           bits 0-23 the engine: 0 pipelined (the lanes per stage are the
                        compiler's, ``allocate_lanes``), else the lane count of the one
                        lane array (serial, dfa, bp); bits 24-31 the learning rule it
                        trains, its index in ``compiler.rule.RULE_NAMES`` (0 sigprop)
16     CLOCK            free-running clock cycles / 256 since configuration (wraps after
                        2**40 cycles: 4.4 hours at 70 MHz)
17     RESTART (w)      any write: reset the engine (counters, pipeline), the feeder, the
                        sample and result FIFOs and CONTROL, as after configuration; the
                        memories keep their contents (the host writes the initial state)
18     CLOCK_HZ         the ``sync`` clock the design was built for, in Hz
19     LINK             bits 0-7 UART divisor, bits 8-15 bytes per feature in stream mode,
                        bits 16-31 the sample FIFO's bytes
20     RESULT_FIFO      the result FIFO's entries
21     DATA_BYTES       bytes of the uploadable dataset RAM (0: the dataset is in block RAM)
22     DATA_FILL        words of the dataset RAM written in order from 0 (a write: start the
                        upload afresh, 0 words)
23     DATA_CRC         CRC-16/CCITT-FALSE of those words' bytes (low byte first)
=====  ===============  =================================================================

(*) Diagnostic counters, read as 0 in a board top built without them (``counters=False``; by
default a board top with the dataset RAM, the iCE40UP5K's, where they would cost about 150 of
its 5,280 logic cells: the counters and their inputs of the register read multiplexer). The host
client reads none of them.

With a dataset RAM (``dataset="ram"``: the iCEBreaker's SPRAMs) memory region 1 (``dataset``,
64 Ki x 16) is the RAM, written by the host with the stream mode's sample bytes (training
samples, then test samples), and N_TRAIN / N_TEST are written by the host too; the feeder
trains from it. DATA_FILL and DATA_CRC make the upload resumable: the host checks the CRC of
what it sent up to DATA_FILL and goes on from there.

Memory region 0 (``state``) is the engine's state (set ``hold`` and wait for ``idle`` first):
weights, biases, target table, caches and counters, laid out as in the manifest's ``readback``
map. Reads return any entry; writes load weights, biases, the table and the caches (a checkpoint)
and are ignored for counters and unused addresses.

Stream mode: SEND_SAMPLE bytes go through the sample FIFO (:data:`SAMPLE_FIFO` bytes, two frames
of :data:`LINK_PAYLOAD`: while the engine drains one frame the next arrives) to the engine when
the feeder is not busy: per feature ``ceil(input width / 8)`` bytes (two's complement, little
endian; up to 16 bits), then one label byte (0..255). CONTROL bit 3 says whether the samples
train or only infer. Each sample's prediction (one byte) waits in the result FIFO
(:data:`RESULT_FIFO` entries) for READ_RESULTS, so the engine never waits for the host while the
host keeps no more samples in flight than the FIFOs hold.

The LEDs show: LED 0 training in progress, LED 1 done; with more LEDs, the last epoch's test
accuracy as a bar (one LED per eighth).
"""

from amaranth.hdl import (Cat, ClockDomain, ClockSignal, Const, DomainRenamer, Elaboratable, Mux, Module,
                          ResetInserter, ResetSignal, Signal)
from amaranth.hdl._ast import Switch
from amaranth.lib import io, wiring
from amaranth.lib import memory
from amaranth.lib.fifo import FIFOInterface, SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..compiler.rule import RULE_NAMES
from ..hdl.engine import SigPropEngine
from ..hdl.dataram import DATA_WORDS, DataRAM, RamFeeder
from ..hdl.feeder import DatasetFeeder
from ..hdl.hostlink import UARTHostLink, crc16_byte, gt_const
from ..hdl.uart import uart_divisor

__all__ = ["SigPropBoardCore", "SigPropBoardTop", "REGISTERS", "BOARD_ID", "LINK_PAYLOAD", "SAMPLE_FIFO",
           "RESULT_FIFO", "link_memories", "feature_bytes", "DEFAULT_BAUD", "LINK_RATES", "choose_baud",
           "baud_clock_mhz"]

REGISTERS = ("CONTROL", "STATUS", "SENT", "RECEIVED", "TRAIN_CORRECT", "TEST_CORRECT", "CYCLES", "SAMPLES",
             "INFERENCES", "CURVE_ADDR", "CURVE_TRAIN", "CURVE_TEST", "N_TRAIN", "N_TEST", "ID", "ENGINE",
             "CLOCK", "RESTART", "CLOCK_HZ", "LINK", "RESULT_FIFO", "DATA_BYTES", "DATA_FILL", "DATA_CRC")
BOARD_ID = 0x53500003

#: The host link's largest frame payload (bytes): its frame buffer, one iCE40 block RAM.
LINK_PAYLOAD = 512
#: The sample FIFO between the host link and the engine: two frames (double buffered).
SAMPLE_FIFO = 2 * LINK_PAYLOAD
#: The result FIFO: predictions waiting for READ_RESULTS.
RESULT_FIFO = 512
#: The link's default rate: 3 Mbaud (the ULX3S's FT231X's top rate; the iCEBreaker's FT2232H
#: goes beyond). :func:`~sigprop_fpga.hdl.uart.uart_divisor` checks the clock's error budget.
DEFAULT_BAUD = 3_000_000
#: The rates the board tops try, fastest first: the FTDI chips' (FT231X, FT2232H) exact rates
#: ``3 MHz / n`` down to 1 Mbaud, then the classic ones.
LINK_RATES = (3_000_000, 2_000_000, 1_500_000, 1_000_000, 921_600, 500_000, 230_400, 115_200)


def choose_baud(clock_hz: float, rates=LINK_RATES) -> int:
    """The fastest of ``rates`` a ``clock_hz`` UART divisor reaches within the error budget
    (:func:`~sigprop_fpga.hdl.uart.uart_divisor`): 3 Mbaud at 24 MHz (8 cycles a bit, exact) and
    at 70 MHz (23, +1.4%); 1.5 Mbaud at 25 MHz (17, -2.0%). Raises ValueError when none does."""
    for baud in rates:
        try:
            uart_divisor(clock_hz, baud)
            return baud
        except ValueError:
            continue
    raise ValueError(f"no UART rate of {', '.join(map(str, rates))} fits a {clock_hz / 1e6:g} MHz clock")


def baud_clock_mhz(requested_mhz: float, baud: int = DEFAULT_BAUD) -> float:
    """The clock nearest ``requested_mhz`` (not above it) that is a whole multiple of ``baud``:
    what a baud-rate-aware PLL choice would ask for (e.g. 69 MHz for 70 at 3 Mbaud, divisor 23
    exact). Not used by the build: the clock is the network file's."""
    n = int(requested_mhz * 1e6 // baud)
    if n < 4:
        raise ValueError(f"{requested_mhz:g} MHz is below 4 clock cycles a bit at {baud} baud")
    return n * baud / 1e6


#: A CLOCK register tick: this many clock cycles.
CLOCK_TICK = 256


class _CopiedReset(ResetInserter):
    """:class:`~amaranth.hdl.ResetInserter` whose control is registered again for every group of
    at most ``group_bits`` flip-flops, so no one net (the OR of the domain reset and the control,
    a LUT) fans out to the thousands of flip-flops of the engine: each copy's OR reaches a part.

    Every flip-flop sees the control one cycle late, all of them in the same cycle. Yosys merges
    identical flip-flops, so the copies are made different where it cannot look: six variants,
    active high (initial value 0) or low (initial value 1), taking the control, the control
    while the domain reset is low (0 while it is high), or holding while the domain reset is
    high. They differ only while the domain reset is high, when every flip-flop they reach is
    reset anyway; the cycle after it they are all inactive (the control is a register the domain
    reset clears). In a reset-less domain (the board's own clock, no PLL) the domain reset reads 0
    and the variants are alike. One instance hands the variants out in turn; instances share them.
    """

    group_bits = 384
    VARIANTS = [(inv, kind) for kind in ("plain", "masked", "hold") for inv in (0, 1)]

    def __init__(self, controls):
        super().__init__(controls)
        self._next = 0

    def _copy(self, fragment, domain):
        inv, kind = self.VARIANTS[self._next % len(self.VARIANTS)]
        self._next += 1
        copy = Signal(name=f"restart_copy_{kind}{inv}", reset_less=True, init=inv)
        ctl, rst = self.controls[domain], ResetSignal(domain, allow_reset_less=True)
        active = copy ^ inv if inv else copy
        source = {"plain": ctl, "masked": ctl & ~rst, "hold": Mux(rst, active, ctl)}[kind]
        fragment.add_statements(domain, copy.eq(~source if inv else source))
        return ~copy if inv else copy

    def _insert_control(self, fragment, domain, lhs_masks):
        groups, bits = [[]], 0
        for signal, start, stop in lhs_masks.chunks():
            if signal.reset_less:
                continue
            width = (len(signal) if stop is None else stop) - start
            if bits and bits + width > self.group_bits:
                groups.append([])
                bits = 0
            bits += width
            if start == 0 and stop is None:
                groups[-1].append(signal.eq(Const(signal.init, signal.shape())))
            else:
                groups[-1].append(signal[start:stop].eq(Const(signal.init, signal.shape())[start:stop]))
        for stmts in groups:
            if stmts:
                fragment.add_statements(domain, Switch(self._copy(fragment, domain), [(1, stmts, None)],
                                                       src_loc=self.src_loc))


class _ResetTree:
    """The domain reset as a registered, replicated tree: every flip-flop of the board core resets
    from a *leaf*, a register of its own group of at most :attr:`group_bits` flip-flops, instead
    of one synchronizer output (and one OR with the restart) fanned out to all of them.

    The domain reset ``rst_in`` goes through a chain of three reset-less registers, ``r0 <=
    rst_in``, ``r1 <= r0``, ``r2 <= r1`` (initial value 1: asserted from configuration); a leaf
    is ``r2 | g(r1, r0, rst_in)`` registered once more (or, for a restart group,
    ``restart | r2 | g(r1, r0)``), so every flip-flop sees the domain reset four cycles after
    ``rst_in``, for as many cycles as ``rst_in`` is high, and all of them leave it in the same
    cycle; the restart reaches its flip-flops one cycle after the control, as with
    :class:`_CopiedReset`. ``g`` is a different function for every leaf (a truth table with
    ``g(0, ...) = 0``), alone or inverted (an active-low leaf, initial value 0): Yosys merges
    identical flip-flops, and it cannot see that ``g`` only adds cycles *before* ``r2`` rises
    (the chain's taps are the reset's later values), so a leaf may assert up to three cycles
    early but never releases early or late. 2 x 128 plain and 2 x 8 restart variants; further
    leaves reuse them (and Yosys merges them).

    Parameters
    ----------
    rst_in : Signal
        The domain reset, from outside the renamed core (:class:`SigPropBoardCore` reads its
        ``sync`` domain's reset).

    Members
    -------
    chain : list of Signal
        ``r0``, ``r1``, ``r2``; :meth:`chain_statements` drives them.
    leaves : list of (Signal, Value, bool)
        Every leaf made: the register, the value it is registered from, whether it is inverted.

    Latency and throughput
    ----------------------
    Domain reset to flip-flop: 4 cycles (today's 0 plus the chain and the leaf); restart: 1 cycle.
    Costs per leaf one flip-flop and one LUT (four or five inputs); three flip-flops for the chain.
    """

    group_bits = 384

    def __init__(self, rst_in):
        if not isinstance(rst_in, Signal):
            raise TypeError(f"rst_in must be a Signal, not {rst_in!r}")
        self.rst_in = rst_in
        self.chain = [Signal(name=f"reset_tree_r{k}", init=1, reset_less=True) for k in range(3)]
        self.leaves = []
        self.claimed = {}
        self._made = {}                 # control key -> leaves made
        self._open = {}                 # control key -> (leaf value, bits)

    def chain_statements(self):
        r0, r1, r2 = self.chain
        return [r0.eq(self.rst_in), r1.eq(r0), r2.eq(r1)]

    @staticmethod
    def _table(inputs, code):
        """The OR of the minterms ``1 .. 2**len(inputs) - 1`` whose bit is set in ``code``."""
        value = Const(0, 1)
        for minterm in range(1, 1 << len(inputs)):
            if code >> (minterm - 1) & 1:
                term = Const(1, 1)
                for k, x in enumerate(inputs):
                    term = term & (x if minterm >> k & 1 else ~x)
                value = value | term
        return value

    def _new_leaf(self, fragment, domain, ctl):
        key = None if ctl is None else id(ctl)
        n = self._made.get(key, 0)
        self._made[key] = n + 1
        r0, r1, r2 = self.chain
        inputs = (r1, r0, self.rst_in) if ctl is None else (r1, r0)
        n_funcs = 1 << ((1 << len(inputs)) - 1)
        inv, code = n & 1, (n >> 1) % n_funcs
        source = r2 | self._table(inputs, code)
        if ctl is not None:
            source = ctl | source
        name = f"reset_leaf{'_restart' if ctl is not None else ''}{n}{'_n' if inv else ''}"
        leaf = Signal(name=name, reset_less=True, init=1 - inv)
        fragment.add_statements(domain, leaf.eq(~source if inv else source))
        self.leaves.append((leaf, source, bool(inv)))
        return ~leaf if inv else leaf

    def leaf(self, fragment, domain, ctl, width):
        """The leaf for ``width`` more flip-flops (a new one when the open one is full)."""
        key = None if ctl is None else id(ctl)
        value, bits = self._open.get(key, (None, 0))
        if value is None or (bits and bits + width > self.group_bits):
            value, bits = self._new_leaf(fragment, domain, ctl), 0
        self._open[key] = (value, bits + width)
        return value


class _TreeReset(ResetInserter):
    """Resets every resettable flip-flop of what it wraps from a :class:`_ResetTree` leaf: with a
    ``restart`` control, the leaf also carries the restart (one cycle late, like
    :class:`_CopiedReset`). A ``restart`` instance claims the fragments it transforms; a plain
    instance around them leaves those alone, so no flip-flop gets two leaves.

    Parameters
    ----------
    tree : _ResetTree
    restart : Signal or None
        The restart control (a register), or None for the domain reset alone.
    domain : str
        The domain of the flip-flops (before any renaming).
    """

    def __init__(self, tree, restart=None, domain="sync"):
        if not isinstance(tree, _ResetTree):
            raise TypeError(f"tree must be a _ResetTree, not {tree!r}")
        super().__init__({domain: Const(0, 1) if restart is None else restart})
        self.tree, self.restart = tree, restart

    def on_fragment(self, fragment):
        if id(fragment) in self.tree.claimed:
            return fragment
        new = super().on_fragment(fragment)
        if self.restart is not None:
            self.tree.claimed[id(new)] = new
        return new

    def _insert_control(self, fragment, domain, lhs_masks):
        groups = {}
        for signal, start, stop in lhs_masks.chunks():
            if signal.reset_less:
                continue
            width = (len(signal) if stop is None else stop) - start
            leaf = self.tree.leaf(fragment, domain, self.restart, width)
            if start == 0 and stop is None:
                stmt = signal.eq(Const(signal.init, signal.shape()))
            else:
                stmt = signal[start:stop].eq(Const(signal.init, signal.shape())[start:stop])
            groups.setdefault(id(leaf), (leaf, []))[1].append(stmt)
        for leaf, stmts in groups.values():
            fragment.add_statements(domain, Switch(leaf, [(1, stmts, None)], src_loc=self.src_loc))


class _FlagFIFO(Elaboratable, FIFOInterface):
    """:class:`~amaranth.lib.fifo.SyncFIFOBuffered` cycle for cycle (the same ports, ``level``,
    block RAM and output register), with its inner level's compares as registered flags kept
    with the level's writes, and the level's ``+ 1`` / ``- 1`` computed from the register beside
    the decision: a write or read decision reaches the level's flip-flops through one
    multiplexer, not through ``level != 0`` and a carry chain (the link's state machine drives
    the sample FIFO's write, the link's reply the result FIFO's read).

    Parameters
    ----------
    width : int
        Bits an entry.
    depth : int
        Entries (at least 3): ``depth - 1`` in a memory, one in the output register.

    Members
    -------
    w_data, w_en, w_rdy, r_data, r_en, r_rdy, level, w_level, r_level
        As :class:`~amaranth.lib.fifo.SyncFIFOBuffered`.

    Latency and throughput
    ----------------------
    An entry written in cycle ``t`` is readable (``r_rdy``) in cycle ``t + 2`` (empty FIFO), as
    :class:`~amaranth.lib.fifo.SyncFIFOBuffered`; one write and one read a cycle.
    """

    def __init__(self, *, width: int, depth: int):
        if not isinstance(depth, int) or depth < 3:
            raise ValueError(f"depth must be an integer of at least 3, not {depth!r}")
        super().__init__(width=width, depth=depth)
        self.level = Signal(range(depth + 1))
        self.inner_level = Signal(range(depth), name="inner_level")
        self.inner_empty = Signal(init=1)          # inner_level == 0
        self.inner_full = Signal()                  # inner_level == depth - 1

    def elaborate(self, platform):
        m = Module()
        inner_depth = self.depth - 1
        lvl, empty, full = self.inner_level, self.inner_empty, self.inner_full
        m.d.comb += [self.w_rdy.eq(~full), self.w_level.eq(self.level), self.r_level.eq(self.level),
                     self.level.eq(lvl + self.r_rdy)]
        do_write = self.w_rdy & self.w_en
        do_inner_read = ~empty & (~self.r_rdy | self.r_en)
        m.submodules.storage = storage = memory.Memory(shape=self.width, depth=inner_depth, init=[])
        w_port, r_port = storage.write_port(), storage.read_port(domain="sync")
        produce, consume = Signal(range(inner_depth)), Signal(range(inner_depth))

        def incr(v):                                # amaranth.lib.fifo's
            return v + 1 if inner_depth == 1 << len(v) else Mux(v == inner_depth - 1, 0, v + 1)
        m.d.comb += [w_port.addr.eq(produce), w_port.data.eq(self.w_data), w_port.en.eq(do_write),
                     r_port.addr.eq(consume), self.r_data.eq(r_port.data), r_port.en.eq(do_inner_read)]
        with m.If(do_write):
            m.d.sync += produce.eq(incr(produce))
        with m.If(do_inner_read):
            m.d.sync += consume.eq(incr(consume))
        up, down = Signal.like(lvl, name="inner_up"), Signal.like(lvl, name="inner_down")
        m.d.comb += [up.eq(lvl + 1), down.eq(lvl - 1)]
        with m.If(do_write & ~do_inner_read):
            m.d.sync += [lvl.eq(up), empty.eq(0), full.eq(lvl == inner_depth - 1)]
        with m.If(do_inner_read & ~do_write):
            m.d.sync += [lvl.eq(down), empty.eq(lvl == 1), full.eq(0)]
        with m.If(do_inner_read):
            m.d.sync += self.r_rdy.eq(1)
        with m.Elif(self.r_en):
            m.d.sync += self.r_rdy.eq(0)
        return m


def link_memories() -> list[tuple[int, int, int]]:
    """(depth, width, read ports) of the host link's memories: the frame buffer and the two FIFOs
    (a :class:`~amaranth.lib.fifo.SyncFIFOBuffered` of depth ``d`` keeps ``d - 1`` in memory)."""
    return [(LINK_PAYLOAD, 8, 1), (SAMPLE_FIFO - 1, 8, 1), (RESULT_FIFO - 1, 8, 1)]


def feature_bytes(input_width: int) -> int:
    """Bytes a feature of ``input_width`` bits takes in stream mode (1 or 2)."""
    return (input_width + 7) // 8


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
        Epochs the chip trains by itself after configuration (0: wait for the host).
    engine_cls : type
        The engine: :class:`~sigprop_fpga.hdl.engine.SigPropEngine` (a pipelined stage per
        layer, the default), :class:`~sigprop_fpga.hdl.serial.SerialEngine` (one lane array
        for every layer, for small devices), or the engine of another learning rule
        (:class:`~sigprop_fpga.hdl.dfa.DfaEngine`, :class:`~sigprop_fpga.hdl.backprop.BackpropEngine`);
        all have the same ports, and the readback map of the rule they train.
    clock_hz : int
        The clock the design is built for (the CLOCK_HZ register; 0: unknown).
    dataset : str
        ``"rom"``: the first ``n_train`` / ``n_test`` samples in block RAM, filled at build time;
        ``"ram"``: a 64 Ki x 16 RAM the host uploads (:class:`~sigprop_fpga.hdl.dataram.DataRAM`).
    ram_primitive : bool
        With ``dataset="ram"``: the iCE40UP5K's SB_SPRAM256KA (a bitstream), else a memory model.
    counters : bool, optional
        Whether SENT, RECEIVED, TRAIN_CORRECT, TEST_CORRECT and CYCLES are readable (else they
        read 0 and synthesis drops the counters behind them). Default: without a dataset RAM.
    bram_regs : bool
        Block RAM read data into flip-flops before any logic (the ECP5's DP16KD has a 5.8 ns
        clock-to-out): an output register after the result FIFO (one entry more, a prediction
        reaches READ_RESULTS a cycle later), the link's ``registered_reads``, and STATUS
        registered before the register read, the feeder's per-bank-group address copies
        (``addr_copies``), and the sample and result FIFOs with registered level flags
        (:class:`_FlagFIFO`, cycle for cycle a :class:`~amaranth.lib.fifo.SyncFIFOBuffered`).
        Default True; :class:`SigPropBoardTop` leaves them out on the iCE40 (1.2 ns clock-to-out,
        and its logic cells are nearly all used).
    reset_tree : bool
        Every flip-flop resets from a registered copy of the domain reset, one per group of at most
        384 (:class:`_ResetTree`), not from the domain reset itself (one net to every flip-flop's
        reset pin): the core leaves reset 4 cycles after the domain reset is released, all in the
        same cycle, after as many cycles in reset. Default True; :class:`SigPropBoardTop` leaves it
        out on the iCE40 (a flip-flop and a LUT a leaf, 30 MHz there).

    Members
    -------
    uart_rx : In(1), uart_tx : Out(1)
        The UART pins (idle high).
    leds : Out(8)
        LED 0 training, LED 1 done, LEDs 2-7 the last epoch's test accuracy as a bar.

    Latency and throughput
    ----------------------
    The engine's. The host link is half duplex at ``clock / divisor`` baud; in stream mode the
    sample and result FIFOs decouple the engine from it, so the engine trains at its own rate
    or the link's (``baud / 10 / bytes per sample`` and frame overhead), whichever is lower.
    A SEND_SAMPLE frame's bytes move from the frame buffer into the sample FIFO at one byte per
    two cycles after its CRC checked out.
    """

    def __init__(self, net, data, *, divisor: int, lanes=None, n_train=None, n_test=None,
                 autostart_epochs: int = 0, max_epochs: int = 255, engine_cls=SigPropEngine,
                 clock_hz: int = 0, dataset: str = "rom", ram_primitive: bool = False, counters=None,
                 bram_regs: bool = True, reset_tree: bool = True):
        if not isinstance(bram_regs, bool):
            raise TypeError(f"bram_regs must be a bool, not {bram_regs!r}")
        if not isinstance(reset_tree, bool):
            raise TypeError(f"reset_tree must be a bool, not {reset_tree!r}")
        self.bram_regs = bram_regs
        self.reset_tree = reset_tree
        if dataset not in ("rom", "ram"):
            raise ValueError(f"dataset must be 'rom' or 'ram', not {dataset!r}")
        if counters is not None and not isinstance(counters, bool):
            raise TypeError(f"counters must be a bool or None, not {counters!r}")
        self.counters = dataset == "rom" if counters is None else counters
        if dataset == "ram" and autostart_epochs:
            raise ValueError("a dataset RAM is empty after configuration: no autostart")
        self.dataset = dataset
        self.net, self.data = net, data
        self.n_train = len(data.y_train) if n_train is None else n_train
        self.n_test = len(data.y_test) if n_test is None else n_test
        self.divisor = divisor
        self.clock_hz = int(clock_hz)
        self.autostart_epochs = autostart_epochs
        self.engine = engine_cls(net, lanes)
        self.feature_bytes = feature_bytes(net.spec.precision.input.width)
        regions = [("state", 1 << self.engine.map["addr_width"], 32)]
        if dataset == "rom":
            self.feeder = DatasetFeeder(data.x_train[:self.n_train], data.y_train[:self.n_train],
                                        data.x_test[:self.n_test], data.y_test[:self.n_test],
                                        in_width=self.engine.in_width, n_classes=net.n_classes,
                                        max_epochs=max_epochs, addr_copies=bram_regs)
        else:
            self.feeder = RamFeeder(n_in=net.n_inputs, feature_bytes=self.feature_bytes,
                                    in_width=self.engine.in_width, n_classes=net.n_classes, max_epochs=max_epochs)
            self.ram = DataRAM(ram_primitive)
            regions.append(("dataset", DATA_WORDS, 16))
        self.link = UARTHostLink(divisor, regions, n_regs=len(REGISTERS), max_payload=LINK_PAYLOAD,
                                 registered_reads=bram_regs)
        super().__init__({"uart_rx": In(1, init=1), "uart_tx": Out(1, init=1), "leds": Out(8)})

    def _host_samples(self, m, e, f, link, restart, infer):
        """The stream mode's path: link -> sample FIFO -> bytes assembled into features and the
        label -> engine; engine -> result FIFO -> link. The feeder has the engine while busy."""
        fifo = _FlagFIFO if self.bram_regs else SyncFIFOBuffered
        m.submodules.sample_fifo = sfifo = self._restart_ins(restart)(fifo(width=8, depth=SAMPLE_FIFO))
        m.submodules.result_fifo = rfifo = self._restart_ins(restart)(fifo(width=8, depth=RESULT_FIFO))
        # the FIFO's room as a register beside its level (the level compare behind `w_rdy` fed
        # the link's state machine, timer and pointer): it is conservative for a cycle after a
        # read, never optimistic (a write this cycle needs two free entries for the next)
        room = Signal()
        m.d.sync += room.eq(Mux(sfifo.w_en, sfifo.level < SAMPLE_FIFO - 1, sfifo.level < SAMPLE_FIFO))
        m.d.comb += [sfifo.w_data.eq(link.sample.payload), sfifo.w_en.eq(link.sample.valid & room),
                     link.sample.ready.eq(room)]
        # the result FIFO's block RAM read data go straight into a register (`res_q`, one more
        # entry) ahead of the link, not through the link's frame-buffer write multiplexer: a
        # DP16KD's clock-to-out (5.8 ns on the ECP5) leaves no time for logic at 125 MHz
        res_v = Signal()
        if self.bram_regs:
            res_q = Signal(8, reset_less=True)
            res_fetch = ~res_v | link.result.ready
            m.d.comb += [rfifo.r_en.eq(res_fetch), link.result.valid.eq(res_v), link.result.payload.eq(res_q)]
            with m.If(rfifo.r_rdy & res_fetch):
                m.d.sync += [res_q.eq(rfifo.r_data), res_v.eq(1)]
            with m.Elif(link.result.ready):
                m.d.sync += res_v.eq(0)
        else:
            m.d.comb += [link.result.valid.eq(rfifo.r_rdy), link.result.payload.eq(rfifo.r_data),
                         rfifo.r_en.eq(link.result.ready)]
        fb = self.feature_bytes
        beat = Signal(range(self.net.n_inputs + 1))
        sub = Signal(range(fb))                     # byte of the feature
        acc = Signal(8 * (fb - 1) or 1)             # its earlier bytes
        # the feeder's ready and predictions need no multiplexer: it offers a sample (SEND) and
        # scores a prediction (`pred.valid & busy`) only while busy
        m.d.comb += [f.o.ready.eq(e.i.ready), f.pred.valid.eq(e.o.valid), f.pred.payload.eq(e.o.payload)]
        with m.If(f.busy):
            m.d.comb += [e.i.payload.eq(f.o.payload), e.i.valid.eq(f.o.valid), e.o.ready.eq(1)]
        with m.Else():
            label_beat = beat == self.net.n_inputs
            last_byte = label_beat | (sub == fb - 1)
            taken = Signal()
            m.d.comb += [e.i.payload.train.eq(~infer),
                         e.i.payload.data.eq(Cat(acc, sfifo.r_data) if fb > 1 else sfifo.r_data),
                         rfifo.w_data.eq(e.o.payload), rfifo.w_en.eq(e.o.valid), e.o.ready.eq(rfifo.w_rdy)]
            with m.If(label_beat):
                m.d.comb += e.i.payload.data.eq(sfifo.r_data)
            with m.If(last_byte):
                m.d.comb += [e.i.valid.eq(sfifo.r_rdy), sfifo.r_en.eq(e.i.ready),
                             taken.eq(sfifo.r_rdy & e.i.ready)]
            with m.Else():                          # a low byte of a wide feature: into acc
                m.d.comb += [sfifo.r_en.eq(1), taken.eq(sfifo.r_rdy)]
            with m.If(taken):
                if fb > 1:
                    m.d.sync += acc.eq(Cat(acc[8:], sfifo.r_data))
                with m.If(last_byte):
                    m.d.sync += [sub.eq(0), beat.eq(Mux(label_beat, 0, beat + 1))]
                with m.Else():
                    m.d.sync += sub.eq(sub + 1)
        # in the cycle the FIFOs and the engine restart (their restart is registered once more)
        restart_d = Signal()
        m.d.sync += restart_d.eq(restart)
        with m.If(restart_d):
            m.d.sync += [beat.eq(0), sub.eq(0), res_v.eq(0)]

    def _dataset_ram(self, m, f, link, reg):
        """Region 1: the dataset RAM, shared by the host's writes and reads (feeder idle) and the
        feeder; the upload's bookkeeping (DATA_FILL, DATA_CRC). Returns (fill, crc); a region 1
        read's data are valid (``self._ram_valid``) two cycles after ``r_en``."""
        m.submodules.ram = ram = self.ram
        bus = link.bus
        data_region = bus.region == 1
        m.d.comb += [ram.addr.eq(Mux(f.busy, f.mem_addr, bus.addr[:16])), ram.w_data.eq(bus.w_data[:16]),
                     ram.w_en.eq(bus.w_en & data_region & ~f.busy), f.mem_data.eq(ram.r_data)]
        pend = Signal(2)
        m.d.sync += pend.eq(Cat(bus.r_en & data_region & ~f.busy, pend[0]))
        fill, crc = Signal(17), Signal(16, init=0xFFFF)
        with m.If(ram.w_en & (bus.addr == fill)):
            m.d.sync += [fill.eq(fill + 1), crc.eq(crc16_byte(crc16_byte(crc, bus.w_data[:8]), bus.w_data[8:16]))]
        with m.If(reg.w_en & (reg.index == REGISTERS.index("DATA_FILL"))):
            m.d.sync += [fill.eq(0), crc.eq(0xFFFF)]
        self._ram_valid = pend[1]
        return fill, crc

    def elaborate(self, platform):
        if not self.reset_tree:
            self._restart_ins = _CopiedReset
            return self._elaborate_core()
        # the core in a reset-less domain on the same clock: its flip-flops reset from the leaves
        # of a replicated tree (_ResetTree), not from the domain reset
        m = Module()
        m.domains.core = ClockDomain("core", reset_less=True, local=True)
        rst_in = Signal(name="reset_in")
        m.d.comb += [ClockSignal("core").eq(ClockSignal("sync")),
                     rst_in.eq(ResetSignal("sync", allow_reset_less=True))]
        self._tree = tree = _ResetTree(rst_in)
        m.d.core += tree.chain_statements()
        self._restart_ins = lambda restart: _TreeReset(tree, restart)
        m.submodules.glue = DomainRenamer({"sync": "core"})(_TreeReset(tree)(self._elaborate_core()))
        return m

    def _elaborate_core(self):
        m = Module()
        restart = Signal()
        m.submodules.engine = self._restart_ins(restart)(self.engine)
        m.submodules.feeder = self._restart_ins(restart)(self.feeder)
        m.submodules.link = link = self.link
        e, f = self.engine, self.feeder

        # registers
        ctrl_evaluate, ctrl_hold, ctrl_infer = Signal(), Signal(), Signal()
        epochs = Signal(16)
        start = Signal()
        curve_addr = Signal(16)
        clock = Signal(40)
        if self.dataset == "ram":
            n_train, n_test = Signal(16), Signal(16)
            m.d.comb += [f.n_train.eq(n_train), f.n_test.eq(n_test)]
        else:
            n_train, n_test = self.n_train, self.n_test
        auto = Signal(init=1 if self.autostart_epochs else 0)
        m.d.comb += [f.epochs.eq(epochs), f.evaluate.eq(ctrl_evaluate), f.hold.eq(ctrl_hold), f.start.eq(start),
                     f.curve_addr.eq(curve_addr)]
        m.d.sync += [start.eq(0), restart.eq(0), clock.eq(clock + 1)]
        self._host_samples(m, e, f, link, restart, ctrl_infer)
        if self.autostart_epochs:
            with m.If(auto):
                m.d.sync += [auto.eq(0), start.eq(1), epochs.eq(self.autostart_epochs), ctrl_evaluate.eq(1)]
        reg = link.reg
        # the register index decoded one-hot into registers (the index is set long before a
        # write or a read: the request's first payload byte): the writes' enables and the read's
        # AND-OR start from flip-flops
        pick = [Signal(name=f"reg_pick{k}") for k in range(len(REGISTERS))]
        m.d.sync += [p.eq(reg.index == k) for k, p in enumerate(pick)]
        with m.If(reg.w_en):
            if True:                                # one If per register: one-hot
                with m.If(pick[REGISTERS.index("CONTROL")]):
                    m.d.sync += [start.eq(reg.w_data[0]), ctrl_evaluate.eq(reg.w_data[1]),
                                 ctrl_hold.eq(reg.w_data[2]), ctrl_infer.eq(reg.w_data[3]),
                                 epochs.eq(reg.w_data[16:32])]
                with m.If(pick[REGISTERS.index("CURVE_ADDR")]):
                    m.d.sync += curve_addr.eq(reg.w_data)
                with m.If(pick[REGISTERS.index("RESTART")]):
                    m.d.sync += [restart.eq(1), start.eq(0), ctrl_evaluate.eq(0), ctrl_hold.eq(0),
                                 ctrl_infer.eq(0), epochs.eq(0), curve_addr.eq(0)]
                if self.dataset == "ram":
                    with m.If(pick[REGISTERS.index("N_TRAIN")]):
                        m.d.sync += n_train.eq(reg.w_data)
                    with m.If(pick[REGISTERS.index("N_TEST")]):
                        m.d.sync += n_test.eq(reg.w_data)
        link_info = self.divisor | (self.feature_bytes << 8) | (SAMPLE_FIFO << 16)
        fill, fill_crc = self._dataset_ram(m, f, link, reg) if self.dataset == "ram" else (0, 0)
        # the engine's idle (an AND of the stages' conditions) and the feeder's status go through
        # a register before the read's AND-OR: a host polls STATUS frames apart, a cycle is nothing
        status = (f.epoch << 16) | (e.idle << 2) | (f.done << 1) | f.busy
        if self.bram_regs:
            status_q = Signal(32)
            m.d.sync += status_q.eq(status)
            status = status_q
        values = {
            "CONTROL": (epochs << 16) | (ctrl_infer << 3) | (ctrl_hold << 2) | (ctrl_evaluate << 1),
            "STATUS": status,
            "SENT": f.sent, "RECEIVED": f.received, "TRAIN_CORRECT": f.train_correct,
            "TEST_CORRECT": f.test_correct, "CYCLES": e.cycles, "SAMPLES": e.samples, "INFERENCES": e.inferences,
            "CURVE_ADDR": curve_addr, "CURVE_TRAIN": f.curve_data[:32], "CURVE_TEST": f.curve_data[32:],
            "N_TRAIN": n_train, "N_TEST": n_test, "ID": BOARD_ID,
            "ENGINE": (0 if isinstance(e, SigPropEngine) else getattr(e, "P", 0))
                      | (RULE_NAMES.index(str(getattr(e, "rule", "sigprop"))) << 24),
            "CLOCK": clock[8:40], "RESTART": 0, "CLOCK_HZ": self.clock_hz, "LINK": link_info,
            "RESULT_FIFO": RESULT_FIFO, "DATA_BYTES": 2 * DATA_WORDS if self.dataset == "ram" else 0,
            "DATA_FILL": fill, "DATA_CRC": fill_crc,
        }
        if not self.counters:
            values.update(SENT=0, RECEIVED=0, TRAIN_CORRECT=0, TEST_CORRECT=0, CYCLES=0)
        # the register read: the index decoded one-hot into registers first, then an AND-OR of
        # the values into r_data (the port samples r_data two cycles after the index settles)
        r_data = Signal(32)
        read = Const(0, 32)
        for k, name in enumerate(REGISTERS):
            read = read | Mux(pick[k], values[name], 0)
        m.d.sync += r_data.eq(read)
        m.d.comb += reg.r_data.eq(r_data)

        # memory region 0: the engine's state port, read data rb_latency cycles after r_en
        # (the bus holds the address until r_valid), writes at once. rb_data is the engine's own
        # output register; it is used as is (the link registers it again in `word`)
        bus = link.bus
        pend = Signal(e.rb_latency)
        state = bus.region == 0
        ram_valid = self._ram_valid if self.dataset == "ram" else 0
        ram_data = self.ram.r_data if self.dataset == "ram" else 0
        m.d.comb += [e.rb_en.eq(ctrl_hold), e.rb_addr.eq(bus.addr), bus.r_data.eq(Mux(ram_valid, ram_data, e.rb_data)),
                     bus.r_valid.eq(pend[-1] | ram_valid), e.wb_en.eq(ctrl_hold & bus.w_en & state), e.wb_data.eq(bus.w_data)]
        m.d.sync += pend.eq((pend << 1) | (bus.r_en & state))

        # pins and LEDs
        m.d.comb += [link.rx.eq(self.uart_rx), self.uart_tx.eq(link.tx),
                     self.leds[0].eq(f.busy), self.leds[1].eq(f.done)]
        # the last epoch's test accuracy as a bar: comparisons with constants as plain logic
        # (``>=`` would be a carry chain each, ~100 logic cells for the six on the iCE40), on the
        # score's bits that can be set (at most n_test)
        score = f.last_test_correct[:max(1, (max(self.n_test, 1) + 1).bit_length())]
        if self.dataset == "ram":          # the host sets N_TEST: the RAM feeder's 16-bit scores
            score = f.last_test_correct[:16]
        for k in range(6):
            thresh = (k + 1) * self.n_test // 7
            m.d.comb += self.leds[2 + k].eq(f.done & gt_const(score, thresh - 1))
        return m


class SigPropBoardTop(Elaboratable):
    """:class:`SigPropBoardCore` on a board's UART and LEDs.

    Parameters
    ----------
    net, data :
    target : BoardTarget
    clock_hz : float
        The ``sync`` frequency (sets the UART divisor).
    baud : int
        The host's rate (default :func:`choose_baud`: 3 Mbaud where the clock allows); the
        divisor's error budget is checked (:func:`~sigprop_fpga.hdl.uart.uart_divisor`, ValueError).
    lanes, n_train, n_test, autostart_epochs, engine_cls, dataset :
        As :class:`SigPropBoardCore` (a ``"ram"`` dataset in the SB_SPRAM256KA primitives; the
        block RAM registers, ``bram_regs``, on every family but the iCE40).
    """

    def __init__(self, net, data, target, clock_hz: float, *, baud: int | None = None, lanes=None,
                 n_train=None, n_test=None, autostart_epochs: int = 0, engine_cls=SigPropEngine,
                 dataset: str = "rom"):
        self.baud = choose_baud(clock_hz) if baud is None else baud
        divisor, _ = uart_divisor(clock_hz, self.baud)
        self.target = target
        self.core = SigPropBoardCore(net, data, divisor=divisor, lanes=lanes, n_train=n_train,
                                     n_test=n_test, autostart_epochs=autostart_epochs,
                                     engine_cls=engine_cls, clock_hz=round(clock_hz), dataset=dataset,
                                     ram_primitive=dataset == "ram", bram_regs=target.family != "ice40",
                                     reset_tree=target.family != "ice40")

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
