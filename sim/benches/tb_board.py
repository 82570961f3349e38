"""cocotb bench: the board top in Verilator, driven by the real host client over its UART pins.

The DUT is :class:`sigprop_fpga.boards.top.SigPropBoardCore`. The bench opens a pseudo-terminal,
starts ``sigprop-fpga run --port <pty>`` as a separate process, and plays the UART: bytes the
client writes to the pty are shifted into ``uart_rx`` bit by bit, and bits sampled from
``uart_tx`` go back to the pty. Between bytes Verilator runs free. To prove the link recovers,
the bench can flip a bit in the CRC of chosen request frames (the device must answer BAD_CRC and
the client resend) and insert junk bytes (without the sync byte) between frames.

Configuration (``SIGPROP_TB_CONFIG``): ``network``, ``epochs``, ``divisor``, ``client_json``,
``client_args`` (more arguments for ``run``, e.g. ``["--stream"]``), ``garble_frames`` (indices of
request frames whose CRC is corrupted), ``junk_after`` (indices of frames after which junk is
sent), ``timeout_s``. The stats name the command of each garbled frame (``garbled_cmds``).
"""

import os
import subprocess
import sys
import time

import cocotb
from cocotb.triggers import FallingEdge, RisingEdge, Timer

from sigprop_fpga.sim.cocotb_util import load_config, read_int, reset, start_clock, write_results

PERIOD = 10
SYNC = 0xA5


class FrameTracker:
    """Finds request frame boundaries in the host's byte stream (SYNC, CMD, LEN lo, LEN hi, ...)."""

    def __init__(self):
        self.index = -1          # frame number of the current byte
        self.left = 0            # bytes left in the current frame
        self.header = []
        self.cmd = None          # command byte of the current frame

    def feed(self, b: int) -> tuple[int, bool]:
        """Returns (frame index, this byte is the frame's last)."""
        if self.left == 0 and not self.header:
            if b != SYNC:
                return (-1, False)
            self.index += 1
            self.header = [b]
            return (self.index, False)
        if self.header and len(self.header) < 4:
            self.header.append(b)
            if len(self.header) == 4:
                self.cmd = self.header[1]
                self.left = self.header[2] | (self.header[3] << 8)
                self.left += 2             # payload and CRC
                self.header = []
            return (self.index, False)
        self.left -= 1
        return (self.index, self.left == 0)


@cocotb.test()
async def host_client_over_uart(dut):
    """The host client trains the board top over the UART; the result must be bit-exact."""
    cfg = load_config()
    bit = cfg["divisor"] * PERIOD
    garble = set(cfg.get("garble_frames", []))
    junk_after = set(cfg.get("junk_after", []))
    start_clock(dut.clk, PERIOD)
    dut.uart_rx.value = 1
    await reset(dut.clk, dut.rst, 3)

    master, slave = os.openpty()
    os.set_blocking(master, False)
    cmd = [sys.executable, "-m", "sigprop_fpga", "run", cfg["network"], "--port", os.ttyname(slave),
           "--epochs", str(cfg["epochs"]), "--timeout", str(cfg.get("reply_timeout_s", 60)), "--json",
           cfg["client_json"], "-q", *cfg.get("client_args", [])]
    client = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    to_host = bytearray()
    stats = {"host_bytes": 0, "device_bytes": 0, "garbled": 0, "garbled_cmds": [], "junk": 0}

    async def device_to_host():
        while True:
            await FallingEdge(dut.uart_tx)          # start bit
            await Timer(bit + bit // 2, unit="step")
            v = 0
            for k in range(8):
                v |= read_int(dut.uart_tx) << k
                await Timer(bit, unit="step")
            to_host.append(v)
            stats["device_bytes"] += 1

    async def send_byte(v: int):
        for level in [0] + [(v >> k) & 1 for k in range(8)] + [1]:
            dut.uart_rx.value = level
            await Timer(bit, unit="step")

    cocotb.start_soon(device_to_host())
    tracker = FrameTracker()
    deadline = time.monotonic() + cfg.get("timeout_s", 600)
    while client.poll() is None:
        if to_host:
            os.write(master, bytes(to_host))
            to_host.clear()
        try:
            data = os.read(master, 4096)
        except BlockingIOError:
            data = b""
        if not data:
            await Timer(500 * PERIOD, unit="step")      # let the design run; poll the pty again
            if time.monotonic() > deadline:
                client.kill()
                raise AssertionError("the client did not finish in time")
            continue
        for v in data:
            frame, last = tracker.feed(v)
            stats["host_bytes"] += 1
            if last and frame in garble:
                v ^= 0x01                            # corrupt the CRC's high byte
                stats["garbled"] += 1
                stats["garbled_cmds"].append(tracker.cmd)
            await send_byte(v)
            if last and frame in junk_after:
                for j in (0x00, 0x13, 0xFF, 0x5A, 0x42):
                    await send_byte(j)
                stats["junk"] += 1
    out, err = client.communicate()
    os.close(master)
    os.close(slave)
    result = {"returncode": client.returncode, "stderr": err.decode(errors="replace")[-2000:],
              "stdout": out.decode(errors="replace")[-2000:], "stats": stats}
    write_results("board", result)
    assert client.returncode == 0, result["stderr"] or result["stdout"]
