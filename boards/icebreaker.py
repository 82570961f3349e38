"""iCEBreaker (Lattice iCE40UP5K-SG48, 12 MHz oscillator, FTDI USB-UART)."""

from amaranth_boards.icebreaker import ICEBreakerPlatform

from . import register
from .pll import ICE40Pll
from .targets import BoardTarget

ICEBREAKER = register(BoardTarget(
    name="icebreaker",
    platform_cls=ICEBreakerPlatform,
    device="iCE40UP5K",
    family="ice40",
    clock_in_mhz=12.0,
    clock_resource="clk12",
    # 5280 logic cells (LUT4 + DFF each), 8 SB_MAC16, 30 EBR of 4 kbit, 4 SPRAM of 256 kbit.
    resources={"lut": 5280, "ff": 5280, "dsp": 8, "bram": 30, "spram": 4, "io": 39, "pll": 1},
    bram_bits=4096,
    spram_bits=256 * 1024,
    cell_kinds={
        "ICESTORM_LC": "lut",
        "ICESTORM_DSP": "dsp",
        "ICESTORM_RAM": "bram",
        "ICESTORM_SPRAM": "spram",
        "SB_IO": "io",
        "ICESTORM_PLL": "pll",
    },
    pll=ICE40Pll(),
    uart_resource="uart",
    leds=(("led_g", 0), ("led_r", 0)),
    # the first constraint of clock_mhz: max. Over-constraining hurt here: the serial digits top
    # reached 24.93 MHz constrained at 39.75 but 25.39 at 24.75, and 27.35 at 30 but 27.64 at 27
    probe_mhz=32.0,
    synth_opts="-dsp",            # the lanes' multipliers on the SB_MAC16s, not in logic cells
    notes="SB_PLL40_PAD on the clk12 pad (pin 35); 16..275 MHz, or 12 MHz without PLL",
))
