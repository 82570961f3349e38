"""``sigprop-fpga run``: train on a board over its UART and compare with the golden model.

The board trains from its on-chip dataset (autonomous mode) while the host only polls; then the
host holds the feeder, reads every weight, bias, table entry, cache entry and counter back
through the host link and compares them, and the per-epoch scores, with the golden model run
through exactly the same samples.
"""

from __future__ import annotations

import os
import select
import sys
import time

__all__ = ["SerialPort", "run_on_board", "RunError", "PortError"]


class RunError(RuntimeError):
    """The board did not answer as a SigProp board top should (one line)."""


class PortError(RunError):
    """The serial port cannot be used (a bad argument)."""


class SerialPort:
    """A raw serial port (or pseudo-terminal) with a read timeout, from the standard library.

    Implements the host link's transport: ``read(n)`` returns at most ``n`` bytes, ``b""`` after
    ``timeout`` seconds without data; ``write(data)``; ``reset_input_buffer()``.
    """

    def __init__(self, path: str, baud: int = 115200, timeout: float = 2.0):
        import termios
        import tty

        self.path, self.timeout = path, timeout
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        except OSError as e:
            raise PortError(f"{path}: cannot open the serial port ({e.strerror})") from None
        try:
            tty.setraw(self.fd)
            attrs = termios.tcgetattr(self.fd)
            speed = getattr(termios, f"B{baud}", None)
            if speed is None:
                raise PortError(f"{path}: unsupported baud rate {baud}")
            attrs[4] = attrs[5] = speed
            termios.tcsetattr(self.fd, termios.TCSANOW, attrs)
        except termios.error:
            pass   # a pseudo-terminal may refuse speeds; bytes flow all the same

    def read(self, n: int) -> bytes:
        ready, _, _ = select.select([self.fd], [], [], self.timeout)
        if not ready:
            return b""
        return os.read(self.fd, n)

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            k = os.write(self.fd, view)
            view = view[k:]
        return len(data)

    def reset_input_buffer(self) -> None:
        while select.select([self.fd], [], [], 0)[0]:
            if not os.read(self.fd, 4096):
                break

    def close(self) -> None:
        os.close(self.fd)


def _runs(reqs):
    """Group ``[(key, addr)]`` into runs of consecutive addresses: ``[(addr, [keys])]``."""
    runs = []
    for key, a in sorted(reqs, key=lambda r: r[1]):
        if runs and runs[-1][0] + len(runs[-1][1]) == a:
            runs[-1][1].append(key)
        else:
            runs.append((a, [key]))
    return runs


def run_on_board(network, transport, *, epochs: int | None = None, progress: bool = True,
                 poll_s: float = 0.05, deadline_s: float = 3600.0) -> dict:
    """Train ``network`` on the board behind ``transport``; returns the comparison report."""
    from ..compiler.estimate import allocate_lanes
    from ..compiler.spec import load_spec
    from ..hostlink import HostLinkClient, HostLinkError
    from ..sim.compare import compare_state, golden_feeder_run, readback_requests
    from ..sim.datasets import load_dataset
    from ..sim.params import Network, check_network
    from .top import BOARD_ID, REGISTERS

    R = {name: i for i, name in enumerate(REGISTERS)}
    spec = load_spec(network)
    data = load_dataset(spec)
    net = Network(spec, data.n_inputs, data.n_classes)
    check_network(net)
    lanes = allocate_lanes(net)
    epochs = spec.learning.epochs if epochs is None else epochs
    client = HostLinkClient(transport, retries=3)
    t0 = time.perf_counter()
    try:
        client.ping()
        ident = client.read_reg(R["ID"])
        if ident != BOARD_ID:
            raise RunError(f"the device is not a SigProp board top (ID 0x{ident:08x}, expected 0x{BOARD_ID:08x})")
        n_train, n_test = client.read_reg(R["N_TRAIN"]), client.read_reg(R["N_TEST"])
        if n_train == 0:
            raise RunError("the board stores no training samples; rebuild it with build --samples N")
        if progress:
            print(f"run: {spec.name}: training {n_train} on-chip samples x {epochs} epochs, "
                  f"evaluating {n_test} after each", file=sys.stderr, flush=True)
        client.write_reg(R["CONTROL"], (epochs << 16) | 0b011)        # evaluate, start
        seen = 0
        while True:
            status = client.read_reg(R["STATUS"])
            epoch = status >> 16
            if progress and epoch > seen:
                print(f"run: epoch {epoch}/{epochs} done", file=sys.stderr, flush=True)
                seen = epoch
            if status & 0b10 and not status & 0b1:
                break
            if time.perf_counter() - t0 > deadline_s:
                raise RunError(f"training did not finish within {deadline_s:.0f} s")
            time.sleep(poll_s)
        curve = []
        for e in range(epochs):
            client.write_reg(R["CURVE_ADDR"], e)
            curve.append((client.read_reg(R["CURVE_TRAIN"]), client.read_reg(R["CURVE_TEST"])))
        client.write_reg(R["CONTROL"], (epochs << 16) | 0b110)        # hold for the readback
        while not client.read_reg(R["STATUS"]) & 0b100:
            time.sleep(poll_s)
        reqs = readback_requests(net, lanes)
        words = {}
        for start, keys in _runs(reqs):
            values = client.read_mem(0, start, len(keys), signed=True)
            words.update(zip(keys, values))
        client.write_reg(R["CONTROL"], (epochs << 16) | 0b010)
    except HostLinkError as e:
        raise RunError(f"host link: {e}") from None
    wall = time.perf_counter() - t0
    golden, scores = golden_feeder_run(net, data, n_train, n_test, epochs)
    mismatch = None
    for e, (got, want) in enumerate(zip(curve, scores)):
        if tuple(got) != tuple(want):
            mismatch = {"sample": (e + 1) * n_train, "epoch": e, "stage": None, "signal": "epoch score",
                        "index": None, "expected": list(want), "actual": list(got)}
            break
    if mismatch is None:
        mismatch = compare_state(net, lanes, words, golden, epochs * n_train)
    return {
        "name": spec.name, "engine": "board", "bit_exact": mismatch is None, "first_mismatch": mismatch,
        "epochs": epochs, "n_train": n_train, "n_test": n_test, "samples": epochs * n_train,
        "curve": [t / n_test if n_test else None for _, t in curve],
        "train_curve": [c / n_train for c, _ in curve],
        "golden_curve": [t / n_test if n_test else None for _, t in scores],
        "test_accuracy": curve[-1][1] / n_test if n_test else None,
        "golden_test_accuracy": scores[-1][1] / n_test if n_test else None,
        "counters": {k[1]: v for k, v in words.items() if k[0] == "counter"},
        "link": dict(client.stats), "wall_seconds": wall,
    }
