"""PLL divider search (like ``icepll`` / ``ecppll``) and the ``sync`` clock domain.

:class:`ICE40Pll` models ``SB_PLL40_PAD`` in SIMPLE feedback mode (the search
of IceStorm's ``icepll``); :class:`ECP5Pll` models ``EHXPLLL`` with CLKOP
feedback (the search of prjtrellis' ``ecppll``). Both return
:class:`PllSettings`: the dividers, the primitive's parameters and the
frequency actually achieved.

:class:`BoardClock` is the Elaboratable that creates the ``sync`` domain of a
board top: the oscillator, through the PLL when ``clock_mhz`` differs from the
oscillator, with reset held until the PLL locks (plus a short power-on delay,
which iCE40 block RAMs need), and the clock constraint on the PLL output.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from amaranth.hdl import (ClockDomain, ClockSignal, Const, Elaboratable, Instance, Module,
                          Signal)
from amaranth.lib import io
from amaranth.lib.cdc import ResetSynchronizer

__all__ = ["PllSettings", "PllFamily", "ICE40Pll", "ECP5Pll", "BoardClock"]

#: Relative error within which most requests are met (ECP5's 3.125 MHz minimum PFD
#: leaves gaps, e.g. 48 MHz from 25 MHz is at best 46.875 MHz).
PLL_TOLERANCE = 0.01


@dataclasses.dataclass(frozen=True)
class PllSettings:
    """One PLL configuration.

    Attributes
    ----------
    primitive : str
        ``"SB_PLL40_PAD"`` or ``"EHXPLLL"``.
    input_mhz, output_mhz, requested_mhz : float
        Oscillator, achieved output and requested output frequencies.
    vco_mhz, pfd_mhz : float
        VCO and phase-detector frequencies (within the family's legal range).
    params : dict
        Primitive parameters (Instance ``p_`` names without the prefix).
    """

    primitive: str
    input_mhz: float
    requested_mhz: float
    output_mhz: float
    vco_mhz: float
    pfd_mhz: float
    params: dict

    @property
    def error(self) -> float:
        """Relative error of the achieved frequency."""
        return abs(self.output_mhz - self.requested_mhz) / self.requested_mhz

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


class PllFamily:
    """Base class: legal ranges, divider search and instantiation of one PLL primitive."""

    primitive: str = ""
    out_min: float = 0.0
    out_max: float = 0.0
    vco_min: float = 0.0
    vco_max: float = 0.0
    pfd_min: float = 0.0
    pfd_max: float = 0.0

    def search(self, f_in: float, f_out: float) -> PllSettings | None:   # pragma: no cover
        raise NotImplementedError

    def outputs(self, f_in: float) -> list[float]:     # pragma: no cover
        """Every output frequency (MHz) a legal setting makes from ``f_in``, ascending, each once.

        Each value is computed with the same expression as :meth:`search`, so
        ``plan(f_in, f).output_mhz`` equals ``f`` to within 1e-9 MHz for every ``f`` returned
        (values that differ by rounding only, from different dividers, are listed once).
        """
        raise NotImplementedError

    def plan(self, f_in: float, f_out: float, *,
             tolerance: float | None = None) -> PllSettings:
        """Closest legal setting for ``f_out`` MHz from an ``f_in`` MHz reference.

        The achieved frequency (``.output_mhz``) may differ from ``f_out``;
        it is what the timing constraint and the reports use.

        Raises
        ------
        ValueError
            If ``f_out`` is outside the PLL output range, or ``tolerance``
            (relative) is given and the closest setting is farther than that.
        """
        if not (self.out_min <= f_out <= self.out_max):
            raise ValueError(
                f"clock_mhz={f_out:g} is outside the {self.primitive} output range "
                f"{self.out_min:g}..{self.out_max:g} MHz (or use the {f_in:g} MHz board clock)")
        best = self.search(f_in, f_out)
        if best is None or (tolerance is not None and best.error > tolerance):
            got = f" (closest {best.output_mhz:.4f} MHz)" if best else ""
            within = f" within {tolerance:.1%}" if tolerance is not None else ""
            raise ValueError(f"{self.primitive} cannot make {f_out:g} MHz from {f_in:g} MHz"
                             f"{within}{got}")
        return best

    def instantiate(self, m: Module, settings: PllSettings, clk_pin: Any,
                    clk_in: Signal | None, clk_out: Signal, lock: Signal) -> None:  # pragma: no cover
        raise NotImplementedError

    #: ``True`` if the primitive takes the package pin itself (``SB_PLL40_PAD``),
    #: ``False`` if it takes a buffered clock (``EHXPLLL``).
    takes_pad: bool = False


class ICE40Pll(PllFamily):
    """iCE40 ``SB_PLL40_PAD`` (LP/HX/UltraPlus), SIMPLE feedback, as ``icepll`` computes it.

    Ranges (iCE40 sysCLOCK PLL design guide, as in icepll): reference
    10..133 MHz, PFD 10..133 MHz, VCO 533..1066 MHz, output 16..275 MHz;
    ``DIVR`` 0..15, ``DIVF`` 0..127, ``DIVQ`` 1..6;
    ``f_out = f_in * (DIVF+1) / ((DIVR+1) * 2**DIVQ)``.
    """

    primitive = "SB_PLL40_PAD"
    out_min, out_max = 16.0, 275.0
    vco_min, vco_max = 533.0, 1066.0
    pfd_min, pfd_max = 10.0, 133.0
    takes_pad = True

    @staticmethod
    def filter_range(f_pfd: float) -> int:
        """``FILTER_RANGE`` for a PFD frequency (icepll's table)."""
        for bound, value in ((17, 1), (26, 2), (44, 3), (66, 4), (101, 5)):
            if f_pfd < bound:
                return value
        return 6

    def search(self, f_in: float, f_out: float) -> PllSettings | None:
        best: tuple[float, int, int, int] | None = None
        for divr in range(16):
            f_pfd = f_in / (divr + 1)
            if not (self.pfd_min <= f_pfd <= self.pfd_max):
                continue
            for divf in range(128):
                f_vco = f_pfd * (divf + 1)
                if not (self.vco_min <= f_vco <= self.vco_max):
                    continue
                for divq in range(1, 7):
                    out = f_vco / 2 ** divq
                    if not (self.out_min <= out <= self.out_max):
                        continue
                    # icepll keeps the first best (strict <): lowest DIVR, DIVF.
                    if best is None or abs(out - f_out) < abs(best[0] - f_out):
                        best = (out, divr, divf, divq)
        if best is None:
            return None
        out, divr, divf, divq = best
        f_pfd = f_in / (divr + 1)
        return PllSettings(
            primitive=self.primitive, input_mhz=f_in, requested_mhz=f_out, output_mhz=out,
            vco_mhz=f_pfd * (divf + 1), pfd_mhz=f_pfd,
            params={"FEEDBACK_PATH": "SIMPLE", "PLLOUT_SELECT": "GENCLK",
                    "DIVR": divr, "DIVF": divf, "DIVQ": divq,
                    "FILTER_RANGE": self.filter_range(f_pfd)})

    def outputs(self, f_in: float) -> list[float]:
        out: dict[float, float] = {}
        for divr in range(16):
            f_pfd = f_in / (divr + 1)
            if not (self.pfd_min <= f_pfd <= self.pfd_max):
                continue
            for divf in range(128):
                f_vco = f_pfd * (divf + 1)
                if not (self.vco_min <= f_vco <= self.vco_max):
                    continue
                for divq in range(1, 7):
                    f = f_vco / 2 ** divq
                    if self.out_min <= f <= self.out_max:
                        out.setdefault(round(f, 9), f)
        return sorted(out.values())

    def instantiate(self, m, settings, clk_pin, clk_in, clk_out, lock):
        p = settings.params
        m.submodules.pll = Instance(
            "SB_PLL40_PAD",
            p_FEEDBACK_PATH=p["FEEDBACK_PATH"], p_PLLOUT_SELECT=p["PLLOUT_SELECT"],
            p_DIVR=Const(p["DIVR"], 4), p_DIVF=Const(p["DIVF"], 7),
            p_DIVQ=Const(p["DIVQ"], 3), p_FILTER_RANGE=Const(p["FILTER_RANGE"], 3),
            i_RESETB=Const(1), i_BYPASS=Const(0),
            io_PACKAGEPIN=clk_pin,
            o_PLLOUTGLOBAL=clk_out, o_LOCK=lock)


class ECP5Pll(PllFamily):
    """ECP5 ``EHXPLLL`` with CLKOP feedback, as ``ecppll`` computes it.

    Ranges (as in ecppll): reference 8..400 MHz, PFD 3.125..400 MHz, VCO
    400..800 MHz, output 10..400 MHz; ``CLKI_DIV`` 1..128, ``CLKFB_DIV``
    1..80, ``CLKOP_DIV`` 1..128; ``f_out = f_in / CLKI_DIV * CLKFB_DIV`` and
    ``f_vco = f_out * CLKOP_DIV``. Among equally close outputs the VCO nearest
    600 MHz wins (ecppll's tie-break).
    """

    primitive = "EHXPLLL"
    out_min, out_max = 10.0, 400.0
    vco_min, vco_max = 400.0, 800.0
    pfd_min, pfd_max = 3.125, 400.0

    def search(self, f_in: float, f_out: float) -> PllSettings | None:
        best: tuple[float, float, int, int, int] | None = None
        for clki_div in range(1, 129):
            f_pfd = f_in / clki_div
            if not (self.pfd_min <= f_pfd <= self.pfd_max):
                continue
            for clkfb_div in range(1, 81):
                out = f_pfd * clkfb_div
                if not (self.out_min <= out <= self.out_max):
                    continue
                for clkop_div in range(1, 129):
                    f_vco = out * clkop_div
                    if not (self.vco_min <= f_vco <= self.vco_max):
                        continue
                    err = abs(out - f_out)
                    if best is None or err < abs(best[0] - f_out) - 1e-12 or (
                            abs(err - abs(best[0] - f_out)) <= 1e-12
                            and abs(f_vco - 600) < abs(best[1] - 600)):
                        best = (out, f_vco, clki_div, clkfb_div, clkop_div)
        if best is None:
            return None
        out, f_vco, clki_div, clkfb_div, clkop_div = best
        return PllSettings(
            primitive=self.primitive, input_mhz=f_in, requested_mhz=f_out, output_mhz=out,
            vco_mhz=f_vco, pfd_mhz=f_in / clki_div,
            params={"CLKI_DIV": clki_div, "CLKFB_DIV": clkfb_div, "CLKOP_DIV": clkop_div,
                    "CLKOP_CPHASE": clkop_div - 1, "CLKOP_FPHASE": 0,
                    "FEEDBK_PATH": "CLKOP"})

    def outputs(self, f_in: float) -> list[float]:
        out: dict[float, float] = {}
        for clki_div in range(1, 129):
            f_pfd = f_in / clki_div
            if not (self.pfd_min <= f_pfd <= self.pfd_max):
                continue
            for clkfb_div in range(1, 81):
                f = f_pfd * clkfb_div
                if not (self.out_min <= f <= self.out_max):
                    continue
                # some CLKOP_DIV in 1..128 puts the VCO (f * CLKOP_DIV) in range
                lo = max(1, math.ceil(self.vco_min / f - 1e-9))
                if lo <= 128 and f * lo <= self.vco_max:
                    out.setdefault(round(f, 9), f)
        return sorted(out.values())

    def instantiate(self, m, settings, clk_pin, clk_in, clk_out, lock):
        p = settings.params
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=f"{settings.input_mhz:g}",
            a_FREQUENCY_PIN_CLKOP=f"{settings.output_mhz:.6f}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8",
            a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA",
            p_CLKOP_ENABLE="ENABLED", p_CLKI_DIV=p["CLKI_DIV"], p_CLKOP_DIV=p["CLKOP_DIV"],
            p_CLKOP_CPHASE=p["CLKOP_CPHASE"], p_CLKOP_FPHASE=p["CLKOP_FPHASE"],
            p_FEEDBK_PATH=p["FEEDBK_PATH"], p_CLKFB_DIV=p["CLKFB_DIV"],
            i_RST=Const(0), i_STDBY=Const(0), i_CLKI=clk_in, i_CLKFB=clk_out,
            i_PHASESEL0=Const(0), i_PHASESEL1=Const(0), i_PHASEDIR=Const(1),
            i_PHASESTEP=Const(1), i_PHASELOADREG=Const(1), i_PLLWAKESYNC=Const(0),
            i_ENCLKOP=Const(0),
            o_CLKOP=clk_out, o_LOCK=lock)


class BoardClock(Elaboratable):
    """Drive the clock and reset of the ``sync`` domain of a board top at ``clock_mhz``.

    With ``settings=None`` (``clock_mhz`` equals the oscillator) this does
    nothing and the platform's own default domain is used. Otherwise it
    instantiates the PLL, drives the ``domain`` clock from its output, holds
    the domain in reset until the PLL has locked for ``por_us`` microseconds
    and adds a clock constraint at the achieved frequency on the PLL output.

    The domain itself must be *defined by the parent* (Amaranth 0.6 drops
    domains defined in a sibling): ``m.domains.sync = ClockDomain("sync")``
    next to ``m.submodules.clock = BoardClock(...)``, as
    :class:`~sigprop_fpga.boards.build.BoardTop` does when ``settings`` is
    not ``None``.

    Attributes
    ----------
    clk : Signal
        The PLL output (the ``sync`` clock), for constraints and debugging.
    locked : Signal
        The PLL lock output.
    """

    def __init__(self, target, settings: PllSettings | None, *, domain: str = "sync",
                 por_us: float = 15.0):
        self.target = target
        self.domain = domain
        self.settings = settings
        self.por_us = por_us
        self.clk = Signal(name="pll_clk", attrs={"keep": 1})
        self.locked = Signal(name="pll_locked")

    def elaborate(self, platform):
        m = Module()
        if self.settings is None:
            return m
        s = self.settings
        pll = self.target.pll
        clk_io = platform.request(self.target.clock_resource, 0, dir="-")
        clk_in = None
        if not pll.takes_pad:
            m.submodules.clk_buf = clk_buf = io.Buffer("i", clk_io)
            clk_in = clk_buf.i
        pll.instantiate(m, s, clk_io.io if pll.takes_pad else None, clk_in, self.clk, self.locked)
        platform.add_clock_constraint(self.clk, s.output_mhz * 1e6)

        # Hold sync in reset until the PLL has been locked for por_us.
        delay = max(1, math.ceil(self.por_us * s.output_mhz))
        m.domains.por = ClockDomain("por", reset_less=True, local=True)
        m.d.comb += ClockSignal("por").eq(self.clk)
        timer = Signal(range(delay + 1))
        ready = Signal()
        with m.If(~self.locked):
            m.d.por += [timer.eq(0), ready.eq(0)]
        with m.Elif(timer == delay):
            m.d.por += ready.eq(1)
        with m.Else():
            m.d.por += timer.eq(timer + 1)

        m.d.comb += ClockSignal(self.domain).eq(self.clk)
        m.submodules.reset_sync = ResetSynchronizer(~ready, domain=self.domain)
        return m
