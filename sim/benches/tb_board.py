"""cocotb bench: the board top in Verilator, driven by the real host client over its UART pins.

The DUT is :class:`sigprop_fpga.boards.top.SigPropBoardCore`, clocked at the board's frequency.
The bench opens a pseudo-terminal, starts ``sigprop-fpga run --port <pty>`` as a separate process,
and plays the UART line with cocotbext-uart (an independent model of the line): bytes the client
writes to the pty go out on ``uart_rx`` through a ``UartSource`` at the host's baud rate, bytes a
``UartSink`` samples from ``uart_tx`` go back to the pty.

Simulated time stands still while the host has the turn (every request answered, nothing on the
line, nothing from the client yet): the bench then waits for the client in wall time, so the
simulated board sees a host that answers at once, and the board's CLOCK register (which the
client reads to time the training phase) counts only what the line and the chip do. While a
reply is due or bytes are on the line, Verilator runs on.

To prove the link recovers, the bench can flip a bit in the CRC of chosen request frames (the
device must answer BAD_CRC and the client resend) and insert junk bytes (without the sync byte)
between frames.

Configuration (``SIGPROP_TB_CONFIG``): ``network``, ``epochs``, ``clock_hz``, ``baud``,
``client_json``, ``client_args`` (more arguments for ``run``, e.g. ``["--stream"]``),
``garble_frames`` (indices of request frames whose CRC is corrupted), ``garble_every`` (corrupt
every N-th request frame too), ``junk_after`` (indices of frames after which junk is sent),
``runs`` (run the client that many times on the same board: each restarts it), ``timeout_s``. The stats name the command of each garbled frame (``garbled_cmds``) and the
simulated seconds (``sim_seconds``).
"""

import os
import select
import subprocess
import sys
import time
import tty

import cocotb
from cocotb.triggers import Timer
from cocotb.utils import get_sim_steps, get_sim_time
from cocotbext.uart import UartSink, UartSource

from sigprop_fpga.sim.cocotb_util import load_config, reset, start_clock, write_results

SYNC_REQUEST, SYNC_REPLY = 0xA5, 0x5A
JUNK = (0x00, 0x13, 0xFF, 0x5A, 0x42)


class FrameTracker:
    """Finds frame boundaries in a byte stream (SYNC, CMD, LEN lo, LEN hi, payload, CRC)."""

    def __init__(self, sync: int = SYNC_REQUEST):
        self.sync = sync
        self.index = -1          # frame number of the current byte
        self.left = 0            # bytes left in the current frame
        self.header = []
        self.cmd = None          # command byte of the current frame
        self.done = 0            # complete frames

    @property
    def between(self) -> bool:
        """No frame is in progress."""
        return self.left == 0 and not self.header

    def feed(self, b: int) -> tuple[int, bool]:
        """Returns (frame index, this byte is the frame's last)."""
        if self.between:
            if b != self.sync:
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
        if self.left == 0:
            self.done += 1
        return (self.index, self.left == 0)


@cocotb.test()
async def host_client_over_uart(dut):
    """The host client trains the board top over the UART; the result must be bit-exact."""
    cfg = load_config()
    clock_hz, baud = cfg["clock_hz"], cfg["baud"]
    period = max(2, 2 * round(get_sim_steps(1e12 / clock_hz / 2, "ps", round_mode="round")))
    garble = set(cfg.get("garble_frames", []))
    every = int(cfg.get("garble_every") or 0)
    junk_after = set(cfg.get("junk_after", []))
    start_clock(dut.clk, period)
    dut.uart_rx.value = 1
    await reset(dut.clk, dut.rst, 3)
    source = UartSource(dut.uart_rx, baud=baud, bits=8, stop_bits=1)
    sink = UartSink(dut.uart_tx, baud=baud, bits=8, stop_bits=1)
    step = max(1, round(10 * clock_hz / baud)) * period        # about a byte on the line

    master, slave = os.openpty()
    tty.setraw(master)                                         # raw bytes, no echo, both ways
    tty.setraw(slave)
    os.set_blocking(master, False)
    cmd = [sys.executable, "-m", "sigprop_fpga", "run", cfg["network"], "--port", os.ttyname(slave),
           "--baud", str(baud), "--epochs", str(cfg["epochs"]), "--timeout", str(cfg.get("reply_timeout_s", 60)),
           "--poll", "0", "--json", cfg["client_json"], "-q", *cfg.get("client_args", [])]
    stats = {"host_bytes": 0, "device_bytes": 0, "garbled": 0, "garbled_cmds": [], "junk": 0,
             "host_waits": 0, "runs": 0}
    requests, replies = FrameTracker(SYNC_REQUEST), FrameTracker(SYNC_REPLY)
    t_start = get_sim_time("ps")
    deadline = time.monotonic() + cfg.get("timeout_s", 600)
    outs = []
    for _ in range(int(cfg.get("runs", 1))):       # later runs: the same board, trained already
        client = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        await _serve(client, master, source, sink, requests, replies, stats, garble, every, junk_after,
                     step, deadline)
        out, err = client.communicate()
        outs.append((client.returncode, out, err))
        stats["runs"] += 1
        if client.returncode != 0:
            break
    returncode, out, err = outs[-1]
    stats["returncodes"] = [o[0] for o in outs]
    stats["sim_seconds"] = (get_sim_time("ps") - t_start) * 1e-12
    os.close(master)
    os.close(slave)
    result = {"returncode": returncode, "stderr": err.decode(errors="replace")[-2000:],
              "stdout": out.decode(errors="replace")[-2000:], "stats": stats}
    write_results("board", result)
    assert returncode == 0, result["stderr"] or result["stdout"]


async def _serve(client, master, source, sink, requests, replies, stats, garble, every, junk_after, step,
                 deadline):
    """Carry bytes between the client's pty and the UART line until the client exits."""
    while client.poll() is None:
        if time.monotonic() > deadline:
            client.kill()
            raise AssertionError("the client did not finish in time")
        if not sink.empty():
            out = bytes(sink.read_nowait())
            for v in out:
                replies.feed(v)
            stats["device_bytes"] += len(out)
            os.write(master, out)
        try:
            data = os.read(master, 4096)
        except BlockingIOError:
            data = b""
        for v in data:
            frame, last = requests.feed(v)
            stats["host_bytes"] += 1
            if last and (frame in garble or (every and frame % every == every - 1)):
                v ^= 0x01                            # corrupt the CRC's high byte
                stats["garbled"] += 1
                stats["garbled_cmds"].append(requests.cmd)
            source.write_nowait([v])
            if last and frame in junk_after:
                source.write_nowait(JUNK)
                stats["junk"] += 1
        if data:
            continue
        host_turn = (source.idle() and sink.empty() and sink.idle() and requests.between and replies.between
                     and requests.done == replies.done)
        if host_turn:
            # the host has the turn: simulated time stands still until the client writes (a host
            # that waits on a timer of its own, e.g. after a lost reply, gets time after 0.2 s)
            stats["host_waits"] += 1
            if select.select([master], [], [], 0.2)[0]:
                continue
        await Timer(step, unit="step")
