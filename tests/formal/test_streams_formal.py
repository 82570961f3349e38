"""Formal: the stream between two stages (hdl/stage.py ``StageHandOver``) keeps the valid/ready
rules and passes a sample's beat only after its last entry landed, and the two ends of the hop
agree on every transfer. Proved for all time (k-induction) for any producer that keeps the rules
itself and writes a sample's entries before its beat, and any consumer.

(The stream into the engine is the dataset feeder's, proved in test_feeder_formal.py; the host
link's ``sample`` stream withdraws an offer after ``timeout`` cycles by its contract, so the rule
does not hold there by design.)
"""

import pytest
from amaranth.hdl import Assert, Assume, Fragment, Module, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from sigprop_fpga.hdl.stage import StageHandOver, StageLinkSignature

from formal_harness import StreamRule

pytestmark = pytest.mark.formal


class HandOverHarness(wiring.Component):
    def __init__(self, hop):
        self.hop = hop
        link = hop.i.signature.flip()          # the producer's side
        super().__init__({"src": In(link), "o_ready": In(1)})

    def elaborate(self, platform):
        m = Module()
        hop = self.hop
        m.submodules.hop = Fragment.get(hop, platform)
        i, o = hop.i, hop.o
        m.d.comb += [i.sample.valid.eq(self.src.sample.valid), i.sample.payload.eq(self.src.sample.payload),
                     i.we.eq(self.src.we), i.sig.eq(self.src.sig), i.idx.eq(self.src.idx), i.data.eq(self.src.data),
                     o.sample.ready.eq(self.o_ready)]
        # the producer: keeps the rules, writes no entry while its sample's beat is on offer
        m.d.comb += [Assume(~ResetSignal()), Assume(~(i.we & i.sample.valid))]
        m.d.comb += StreamRule(m, i.sample, "src").assumes
        # the hop: keeps the rules, one transfer out for each in, the beat after the entries
        we_seen = Signal()
        m.d.sync += we_seen.eq(i.we)
        m.d.comb += StreamRule(m, o.sample, "o").asserts
        m.d.comb += [Assert((o.sample.valid & o.sample.ready) == (i.sample.valid & i.sample.ready)),
                     Assert(~o.sample.valid | ~o.we & ~hop.busy)]
        return m


def _hop(cls=StageHandOver):
    return cls(StageLinkSignature(n_classes=3, entries=5, width=8))


def test_stage_hand_over_keeps_the_rules(sby):
    assert sby(HandOverHarness(_hop()), mode="prove", depth=4) == "PASS", sby.failed


class EagerHandOver(StageHandOver):
    """A planted bug: the beat passes while the last entries are still on their way."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        m.d.comb += [self.o.sample.valid.eq(self.i.sample.valid), self.i.sample.ready.eq(self.o.sample.ready)]
        return m


class ZeroLabelHandOver(StageHandOver):
    """A planted bug: while the consumer is not ready the beat on offer shows label 0."""

    def elaborate(self, platform):
        m = super().elaborate(platform)
        with m.If(~self.o.sample.ready):
            m.d.comb += self.o.sample.payload.label.eq(0)
        return m


@pytest.mark.parametrize("cls", [EagerHandOver, ZeroLabelHandOver])
def test_planted_hand_over_bugs_are_found(sby, cls):
    assert sby(HandOverHarness(_hop(cls)), mode="prove", depth=4) == "FAIL"
