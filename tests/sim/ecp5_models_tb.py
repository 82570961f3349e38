"""cocotb bench for the ECP5 cell models (``sim/cells/ecp5_models.v``) against Python references.

Run by :func:`sigprop_fpga.sim.verilator.run` from ``tests/sim/test_ecp5_models.py`` (not
collected by pytest). The DUT is ``tests/sim/ecp5_models_top.v``: two MULT18X18D (no registers;
input, pipeline and output registers with their own clock enables and reset) and five DP16KD
(x18, x36 pseudo dual port, x9/x18, x2/x2 with an output register and chip select, x1/x4) on
shared random stimulus. Every cycle the bench drives new inputs after the falling edge, checks
the combinational multiplier, and after the rising edge checks every registered output against
the references below, which follow TN1264/TN1267 and Yosys's memlib layout, written
independently of the Verilog (a read of bits the other port writes in the same cycle, undefined
in the silicon, returns them inverted in both).

Configuration (``SIGPROP_TB_CONFIG``): ``cycles``, ``seed``, ``init`` (the 640 bits of
INITVAL_00/01 as an int), ``plant`` (optional name of a reference rule to break, to prove the
bench can fail).
"""

from __future__ import annotations

import random

import cocotb
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from sigprop_fpga.sim.cocotb_util import load_config, start_clock, write_results

M18 = (1 << 18) - 1
M36 = (1 << 36) - 1


def _operand(value: int, signed: int) -> int:
    return value - (1 << 18) if signed and value >> 17 else value


def product(a: int, b: int, sa: int, sb: int) -> tuple[int, int]:
    """MULT18X18D: the 36-bit product and SIGNEDP."""
    return (_operand(a, sa) * _operand(b, sb)) & M36, sa | sb


class MultRef:
    """Input registers (CE0), pipeline register (CE1), output register (CE0, sync reset RST1)."""

    def __init__(self):
        self.a = self.b = self.sa = self.sb = 0
        self.pipe = (0, 0)
        self.out = (0, 0)

    def edge(self, s):
        pipe_d = product(self.a, self.b, self.sa, self.sb)
        if s["rst1"]:
            self.out = (0, 0)
        elif s["ce0"]:
            self.out = self.pipe
        if s["ce1"]:
            self.pipe = pipe_d
        if s["ce0"]:
            self.a, self.b, self.sa, self.sb = s["a"], s["b"], s["sa"], s["sb"]


def _slot(width: int, ad: int) -> tuple[int, int]:
    """(18-bit word, bit offset) of an x1/x2/x4/x9 access: halves by AD[3], then nibbles..."""
    off = 9 * (ad >> 3 & 1)
    off += {9: 0, 4: 4 * (ad >> 2 & 1), 2: 2 * (ad >> 1 & 3), 1: ad & 7}[width]
    return ad >> 4 & 1023, off


class BramRef:
    """DP16KD: 1024 x 18-bit words, per-port width, write mode, output register, chip select."""

    def __init__(self, init: int, wa: int, wb: int, wma="NORMAL", wmb="NORMAL", outreg_b=False,
                 csb=0, async_reset=False):
        self.mem = [(init >> (20 * i)) & M18 for i in range(1024)]
        self.width = {"a": wa, "b": wb}
        self.mode = {"a": wma, "b": wmb}
        self.outreg_b = outreg_b
        self.csb = csb
        self.latch = {"a": 0, "b": 0}
        self.outreg = 0
        self.async_reset = async_reset

    def _read(self, width: int, ad: int, mem) -> int:
        if width == 36:
            w = (ad >> 5) * 2
            return mem[w] | mem[w + 1] << 18
        if width == 18:
            return mem[ad >> 4 & 1023]
        word, off = _slot(width, ad)
        return mem[word] >> off & ((1 << width) - 1)

    def _writes(self, port: str, s) -> list[tuple[int, int, int]]:
        """(word, mask, data) of the port's write this edge."""
        width, ad = self.width[port], s[f"{port}_ad"]
        di = s[f"{port}_di"]
        if width == 36:
            w = (ad >> 5) * 2
            full = s["a_di"] | s["b_di"] << 18
            be = [0x1FF if ad >> i & 1 else 0 for i in range(4)]
            return [(w, be[0] | be[1] << 9, full & M18), (w + 1, be[2] | be[3] << 9, full >> 18)]
        if width == 18:
            return [(ad >> 4 & 1023, (0x1FF if ad & 1 else 0) | (0x3FE00 if ad & 2 else 0), di)]
        word, off = _slot(width, ad)
        mask = ((1 << width) - 1) << off
        return [(word, mask, (di << off) & mask)]

    def selected(self, port, s):
        return s[f"{port}_ce"] and (port == "a" or s["b_cs"] == self.csb)

    def writes_on(self, port, s):
        if not (self.selected(port, s) and s[f"{port}_we"]):
            return False
        return not (port == "b" and self.width["a"] == 36)      # x36: port B only reads

    def edge(self, s, plant=None):
        old = list(self.mem)
        pending = {p: self._writes(p, s) if self.writes_on(p, s) else [] for p in ("a", "b")}
        new = list(old)
        for p in ("a", "b"):
            for word, mask, data in pending[p]:
                new[word] = (new[word] & ~mask) | (data & mask)
        outreg_d = self.latch["b"]
        for p in ("a", "b"):
            if s[f"{p}_rst"]:
                self.latch[p] = 0
                continue
            if not self.selected(p, s):
                continue
            writing = bool(pending[p])
            mode = self.mode[p]
            if writing and mode == "NORMAL":
                continue
            # Bits the other port writes this edge read inverted (undefined in the silicon); a
            # port's own write-through sees its data.
            view = list(old)
            for word, mask, _ in pending["b" if p == "a" else "a"]:
                view[word] ^= mask
            if writing and mode == "WRITETHROUGH":
                for word, mask, data in pending[p]:
                    view[word] = (view[word] & ~mask) | (data & mask)
            if plant == "read_new" and writing:
                view = new
            width = 36 if self.width["a"] == 36 and p == "b" else self.width[p]
            self.latch[p] = self._read(width, s[f"{p}_ad"], view)
        if s["b_rst"]:
            self.outreg = 0
        elif s["b_oce"]:
            self.outreg = outreg_d
        self.mem = new

    def outputs(self) -> tuple[int, int]:
        b = self.outreg if self.outreg_b else self.latch["b"]
        if self.width["b"] == 36:
            return b & M18, b >> 18
        return self.latch["a"] & M18, b & M18


def _stimulus(rng: random.Random) -> dict:
    s = {"a": rng.getrandbits(18), "b": rng.getrandbits(18), "sa": rng.getrandbits(1),
         "sb": rng.getrandbits(1), "ce0": int(rng.random() < 0.8), "ce1": int(rng.random() < 0.8),
         "rst0": 0, "rst1": int(rng.random() < 0.05)}
    for p in ("a", "b"):
        s[f"{p}_ce"] = int(rng.random() < 0.9)
        s[f"{p}_oce"] = int(rng.random() < 0.8)
        s[f"{p}_we"] = int(rng.random() < 0.5)
        s[f"{p}_rst"] = int(rng.random() < 0.03)
        s[f"{p}_ad"] = rng.randrange(64)        # 4 words of 18 bits: reads often meet writes
        s[f"{p}_di"] = rng.getrandbits(18)
    s["b_cs"] = rng.choice([0b101, 0b101, 0b101, 0b001])
    if rng.random() < 0.3:                      # corner operands
        s["a"] = rng.choice([0, 1 << 17, M18, (1 << 17) - 1])
    return s


@cocotb.test()
async def models_match_references(dut):
    cfg = load_config()
    rng = random.Random(cfg["seed"])
    plant = cfg.get("plant")
    init = int(cfg["init"])
    mult = MultRef()
    rams = {
        "r18": BramRef(init, 18, 18, "READBEFOREWRITE", "WRITETHROUGH"),
        "r36": BramRef(init, 36, 36),
        "r9": BramRef(init, 9, 18),
        "r2": BramRef(init, 2, 2, "READBEFOREWRITE", outreg_b=True, csb=0b101, async_reset=True),
        "r1": BramRef(init, 1, 4, wmb="WRITETHROUGH"),
    }
    start_clock(dut.clk, 10)
    checked = 0
    for cycle in range(cfg["cycles"]):
        await FallingEdge(dut.clk)
        s = _stimulus(rng)
        for name, value in s.items():
            getattr(dut, name).value = value
        await ReadOnly()
        want = product(s["a"], s["b"], s["sa"], s["sb"])
        if plant == "unsigned":
            want = product(s["a"], s["b"], 0, 0)
        got = (int(dut.p_comb.value), int(dut.signedp_comb.value))
        assert got == want, f"cycle {cycle}: combinational MULT18X18D {got} != {want} for {s}"
        await RisingEdge(dut.clk)
        mult.edge(s)
        for ram in rams.values():
            ram.edge(s, plant)
        await ReadOnly()
        got = (int(dut.p_reg.value), int(dut.signedp_reg.value))
        assert got == mult.out, f"cycle {cycle}: registered MULT18X18D {got} != {mult.out}"
        for name, ram in rams.items():
            got = (int(getattr(dut, f"{name}_a").value), int(getattr(dut, f"{name}_b").value))
            want = ram.outputs()
            assert got == want, f"cycle {cycle}: DP16KD {name} (DOA, DOB) {got} != {want} after {s}"
        checked += 1
    write_results("models", {"cycles": checked})
