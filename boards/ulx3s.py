"""ULX3S-85F (Lattice ECP5 LFE5U-85F-6BG381C, 25 MHz oscillator, FTDI USB-UART)."""

from amaranth_boards.ulx3s import ULX3S_85F_Platform

from . import register
from .pll import ECP5Pll
from .targets import BoardTarget


def _setup(platform, m):
    """Nothing to tie off: ``uart_tx_enable`` (L3) is only needed for FTDI bit-bang modes."""


ULX3S_85F = register(BoardTarget(
    name="ulx3s-85f",
    platform_cls=ULX3S_85F_Platform,
    device="LFE5U-85F",
    family="ecp5",
    clock_in_mhz=25.0,
    clock_resource="clk25",
    # nextpnr-ecp5 reports LUT4s as TRELLIS_COMB, flip-flops as TRELLIS_FF, the 18x18
    # multipliers as MULT18X18D and the 18 kbit block RAMs as DP16KD.
    resources={"lut": 83640, "ff": 83640, "dsp": 156, "bram": 208, "io": 365, "pll": 4},
    bram_bits=18 * 1024,
    cell_kinds={
        "TRELLIS_COMB": "lut",
        "TRELLIS_FF": "ff",
        "MULT18X18D": "dsp",
        "DP16KD": "bram",
        "TRELLIS_IO": "io",
        "EHXPLLL": "pll",
    },
    pll=ECP5Pll(),
    uart_resource="uart",
    leds=tuple(("led", i) for i in range(8)),
    # router1 stalled for over 20 minutes on the digits engine (about 40k arcs left, no
    # progress); router2 handles the congestion around the multipliers and block RAMs. The
    # block RAMs and multipliers sit in columns across the die and most of every critical path
    # is routing; a placer timing weight of 40 (default 10) placed the digits board top at 87.5
    # MHz instead of 76.9 (75 MHz constraint, seed 1; on earlier, slower netlists it helped or
    # hurt by up to 5 MHz either way).
    nextpnr_opts="--router router2 --placer-heap-timingweight 40",
    probe_mhz=150.0,             # the pipelined digits engine reached 76-88 MHz, the goal is 125
    notes="EHXPLLL from clk25 (G2); 10..400 MHz, or 25 MHz without PLL",
    setup=_setup,
    bitstream_ext="bit",
))
