"""The self-driving trainer: the engine behind the on-chip dataset feeder.

This is the design the cycle-accurate simulation builds (and the core of the boards'
autonomous mode): the host (or the testbench) sets ``epochs``, pulses ``start`` and lets the
clock run; predictions appear on the taps at sample boundaries; the state is read back through
the engine's readback port while ``hold`` keeps new samples out.
"""

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .engine import SigPropEngine
from .feeder import DatasetFeeder

__all__ = ["Trainer"]


class Trainer(wiring.Component):
    """:class:`.engine.SigPropEngine` fed by a :class:`.feeder.DatasetFeeder`.

    Parameters
    ----------
    net : Network
    data : Dataset
        Its integer splits fill the feeder's memories (``n_train`` / ``n_test`` limit them).
    lanes : tuple of int or int, optional
        Per stage (:class:`.engine.SigPropEngine`), or one count (:class:`.serial.SerialEngine`).
    n_train, n_test : int, optional
        Use only the first samples of each split.
    max_epochs : int
    engine_cls : type
        The engine (default :class:`.engine.SigPropEngine`; or :class:`.serial.SerialEngine`).

    Members
    -------
    The feeder's controls and status (``start``, ``epochs``, ``evaluate``, ``hold``, ``busy``,
    ``done``, ``epoch``, ``sent``, ``received``, ``train_correct``, ``test_correct``,
    ``curve_addr``, ``curve_data``, ``tap_*``) and the engine's state port and counters
    (``rb_en``, ``rb_addr``, ``rb_data``, ``wb_en``, ``wb_data``, ``idle``, ``cycles``, ``samples``,
    ``inferences``): with ``rb_en`` and ``wb_en`` while idle, ``wb_data`` is written to the entry at
    ``rb_addr`` (a checkpoint loaded before ``start``).

    Latency and throughput
    ----------------------
    Those of the engine: for the pipelined engine a training sample every slowest-stage cycles.
    """

    def __init__(self, net, data, lanes=None, *, n_train=None, n_test=None, max_epochs: int = 64, params=None,
                 engine_cls=SigPropEngine):
        n_train = len(data.y_train) if n_train is None else n_train
        n_test = len(data.y_test) if n_test is None else n_test
        self.engine = engine_cls(net, lanes, params)
        self.feeder = DatasetFeeder(data.x_train[:n_train], data.y_train[:n_train], data.x_test[:n_test],
                                    data.y_test[:n_test], in_width=self.engine.in_width, n_classes=net.n_classes,
                                    max_epochs=max_epochs)
        self.net, self.lanes, self.map = net, self.engine.lanes, self.engine.map
        self.n_train, self.n_test = n_train, n_test
        members = {}
        for name, member in self.feeder.signature.members.items():
            if name not in ("o", "pred"):
                members[name] = member
        for name in ("rb_en", "rb_addr", "rb_data", "wb_en", "wb_data", "idle", "cycles", "samples", "inferences"):
            members[name] = self.engine.signature.members[name]
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = e = self.engine
        m.submodules.feeder = f = self.feeder
        wiring.connect(m, f.o, e.i)
        wiring.connect(m, e.o, f.pred)
        for name, member in self.signature.members.items():
            inner = getattr(f, name) if name in f.signature.members else getattr(e, name)
            if member.flow == In:
                m.d.comb += inner.eq(getattr(self, name))
            else:
                m.d.comb += getattr(self, name).eq(inner)
        return m
