"""Formal: the dataset feeder (hdl/feeder.py) addresses its memories only inside them (its sample
index, feature address and prediction index stay in range) and keeps the valid/ready rules on
the stream into the engine, whatever the engine and the host do (any ``start``, ``epochs``,
``evaluate``, ``hold``, ``ready``, predictions).

Bounded: a tiny data set (2 + 1 samples of 1 feature), so a sample is 7 cycles and an epoch with
its test sample about 21: the depth covers the end of two epochs, where the indices reach their
ends.
"""

import numpy as np
import pytest
from amaranth.hdl import Assume, Fragment, Module, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from sigprop_fpga.hdl.feeder import DatasetFeeder

from formal_harness import MemoryPorts, StreamRule

pytestmark = pytest.mark.formal
DEPTH = 50
MAX_EPOCHS = 2


def tiny_feeder(cls=DatasetFeeder):
    x_train = np.array([[1], [-2]])
    x_test = np.array([[3]])
    return cls(x_train, np.array([0, 1]), x_test, np.array([1]), in_width=4, n_classes=2, max_epochs=MAX_EPOCHS)


class FeederHarness(wiring.Component):
    start: In(1)
    epochs: In(2)
    evaluate: In(1)
    hold: In(1)
    o_ready: In(1)
    pred_valid: In(1)
    pred_payload: In(1)
    curve_addr: In(1)

    def __init__(self, feeder):
        self.feeder = feeder
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        f = self.feeder
        with MemoryPorts() as ports:
            m.submodules.feeder = Fragment.get(f, platform)
        m.d.comb += [f.start.eq(self.start), f.epochs.eq(self.epochs), f.evaluate.eq(self.evaluate),
                     f.hold.eq(self.hold), f.o.ready.eq(self.o_ready), f.pred.valid.eq(self.pred_valid),
                     f.pred.payload.eq(self.pred_payload), f.curve_addr.eq(self.curve_addr)]
        # the environment: no reset, epochs within the curve, predictions at least two cycles
        # apart (the engine's contract) and never more than were sent
        last_pred = Signal()
        m.d.sync += last_pred.eq(self.pred_valid)
        m.d.comb += [Assume(~ResetSignal()), Assume(self.epochs <= MAX_EPOCHS),
                     Assume(~(self.pred_valid & last_pred)), Assume(~self.pred_valid | (f.received < f.sent))]
        m.d.comb += ports.in_range_asserts()
        m.d.comb += StreamRule(m, f.o, "o").asserts
        assert len(ports.read) >= 3
        return m


def test_feeder_indices_in_range_and_stream_rules(sby):
    assert sby(FeederHarness(tiny_feeder()), mode="bmc", depth=DEPTH) == "PASS", sby.failed


def test_planted_out_of_range_read_is_found(sby, monkeypatch):
    """The feeder as it was: its label memory addressed straight from the sample index, which
    reaches ``n_samples`` at an epoch's end. The proof must fail."""
    import sigprop_fpga.hdl.feeder as feeder_mod
    monkeypatch.setattr(feeder_mod, "read_in_range", lambda port, addr, en=1, first=None: [port.addr.eq(addr)])
    assert sby(FeederHarness(tiny_feeder()), mode="bmc", depth=DEPTH) == "FAIL"
    assert sby.failed and all("formal_harness.py" in f for f in sby.failed)     # the in-range asserts


class HoldDropsValid(DatasetFeeder):
    """A planted bug: ``hold`` withdraws a beat on offer."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        with m.If(self.hold):
            m.d.comb += self.o.valid.eq(0)
        return m


def test_planted_withdrawn_beat_is_found(sby):
    assert sby(FeederHarness(tiny_feeder(HoldDropsValid)), mode="bmc", depth=DEPTH) == "FAIL"
