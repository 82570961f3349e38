"""Board targets: what the build flow needs to know about one board.

A :class:`BoardTarget` ties together

* the amaranth-boards platform class (pins, device, package, speed grade);
* the device's resources for the fit check, in the canonical *kinds* of
  :mod:`sigprop_fpga.boards.fit` (``lut``, ``ff``, ``dsp``, ``bram``,
  ``spram``, ...), and the mapping from nextpnr's cell type names
  (``ICESTORM_LC``, ``MULT18X18D``, ...) to those kinds;
* the board clock (frequency, resource name), the UART and LED resources;
* a PLL family (:class:`~sigprop_fpga.boards.pll.PllFamily`) that computes
  divider settings for a requested ``clock_mhz`` and instantiates the PLL.

Adding a board is one small module that builds a :class:`BoardTarget` and
calls :func:`sigprop_fpga.boards.register`; see ``boards/icebreaker.py``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

from .pll import PllFamily, PllSettings

__all__ = ["BoardTarget"]


@dataclasses.dataclass(frozen=True)
class BoardTarget:
    """Everything the board flow knows about one board.

    Attributes
    ----------
    name : str
        Board name used on the command line, e.g. ``"icebreaker"``.
    platform_cls : type
        amaranth-boards platform class, e.g. ``ICEBreakerPlatform``.
    device : str
        Device name as in the platform (``"iCE40UP5K"``, ``"LFE5U-85F"``).
    family : str
        nextpnr family: ``"ice40"`` or ``"ecp5"``.
    clock_in_mhz : float
        Frequency of the board oscillator.
    clock_resource : str
        Name of the oscillator resource (``"clk12"``, ``"clk25"``).
    resources : mapping of str to int
        Available units per kind (``lut``, ``ff``, ``dsp``, ``bram``,
        ``spram``, ``io``, ``pll``); a kind missing here is not on the device.
    bram_bits : int
        Bits in one block RAM (4096 for iCE40 EBR, 18432 for ECP5 DP16KD).
    cell_kinds : mapping of str to str
        nextpnr cell type (a key of the report's ``utilization``) -> kind.
    pll : PllFamily
        The PLL primitive and its legal ranges.
    uart_resource : str
        Name of the USB-UART resource (``platform.request(uart_resource, 0)``).
    leds : tuple of (str, int)
        LED resources ``(name, number)``, most useful first.
    spram_bits : int
        Bits in one single-port RAM block (0 when the device has none).
    notes : str
        Free text shown in reports.
    setup : callable, optional
        ``setup(platform, module)`` called by the board top to tie off
        board-specific pins (e.g. ULX3S ``uart_tx_enable``).
    bitstream_ext : str
    nextpnr_opts : str
        Extra nextpnr options for this family (e.g. the router).
    synth_opts : str
        Extra options of the family's ``synth_*`` Yosys command (e.g. ``-dsp`` on the iCE40,
        whose synthesis otherwise builds every multiplier from logic cells).
        Suffix of the packed bitstream Amaranth writes (``"bin"`` for
        icepack, ``"bit"`` for ecppack).
    probe_mhz : float
        The first constraint of the ``clock_mhz: max`` search (:mod:`.clocksearch`): above what
        designs reach on the device, so nextpnr's placer works for speed; the search then
        settles below the fmax it reports.
    """

    name: str
    platform_cls: type
    device: str
    family: str
    clock_in_mhz: float
    clock_resource: str
    resources: Mapping[str, int]
    bram_bits: int
    cell_kinds: Mapping[str, str]
    pll: PllFamily
    uart_resource: str = "uart"
    leds: tuple[tuple[str, int], ...] = (("led", 0),)
    spram_bits: int = 0
    notes: str = ""
    setup: Callable[[Any, Any], None] | None = None
    bitstream_ext: str = "bin"
    nextpnr_opts: str = ""
    synth_opts: str = ""
    probe_mhz: float = 100.0

    # ------------------------------------------------------------------
    def platform(self):
        """Return a fresh platform instance (a platform can be built only once)."""
        return self.platform_cls()

    def plan_clock(self, clock_mhz: float) -> PllSettings | None:
        """PLL settings for ``clock_mhz``; ``None`` when the oscillator is used directly.

        Raises
        ------
        ValueError
            If no legal PLL setting is within 1% of ``clock_mhz`` (the message
            gives the legal output range).
        """
        if abs(clock_mhz - self.clock_in_mhz) <= 1e-9 * self.clock_in_mhz:
            return None
        return self.pll.plan(self.clock_in_mhz, clock_mhz)

    def achieved_mhz(self, clock_mhz: float) -> float:
        """The frequency the board will actually run at for a requested ``clock_mhz``."""
        settings = self.plan_clock(clock_mhz)
        return self.clock_in_mhz if settings is None else settings.output_mhz

    def kind_of(self, cell_type: str) -> str | None:
        """Kind of a nextpnr cell type (``None`` when it is not tracked)."""
        return self.cell_kinds.get(cell_type)

    def available(self, kind: str) -> int:
        """Units of ``kind`` on the device (0 if the device has none)."""
        return int(self.resources.get(kind, 0))

    def summary(self) -> dict:
        """JSON-friendly description (for reports)."""
        return {
            "board": self.name,
            "device": self.device,
            "family": self.family,
            "clock_in_mhz": self.clock_in_mhz,
            "resources": dict(self.resources),
            "bram_bits": self.bram_bits,
            "spram_bits": self.spram_bits,
            "pll": self.pll.primitive,
        }
