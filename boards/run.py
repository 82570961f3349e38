"""``sigprop-fpga run``: train on a board over its UART and compare with the golden model.

Two modes:

- **autonomous** (:func:`run_on_board`): the board trains from its on-chip dataset while the
  host only polls, then the per-epoch scores are read from the chip;
- **stream** (:func:`stream_on_board`): the host sends every sample itself over SEND_SAMPLE (the
  whole dataset the network file names, however much of it the chip stores) and reads each
  prediction back with READ_RESULTS, so it scores train and test accuracy per epoch itself and
  compares every prediction with the golden model's.

Either way the host then holds the feeder, reads every weight, bias, table entry, cache entry and
counter back through the host link and compares them with the golden model run through exactly
the same samples.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from tqdm import tqdm

from ..compiler.rule import RULE_NAMES
from ..compiler.statemap import readback_requests, state_writes
from ..hdl.engines import get_engine
from ..hostlink import HostLinkClient, HostLinkError, crc16
from ..sim import checkpoint
from ..sim.compare import compare_state, golden_feeder_run
from ..sim.golden import GoldenSigProp
from ..sim.golden_rules import GoldenRule
from ..sim.datasets import load_network
from .top import BOARD_ID, CLOCK_TICK, DEFAULT_BAUD, REGISTERS, feature_bytes

__all__ = ["open_port", "DEFAULT_BAUD", "CountingTransport", "restart_board", "link_info", "upload_dataset", "run_on_board", "stream_on_board", "sample_bytes", "RunError", "RunUsageError",
           "PortError"]


class RunError(RuntimeError):
    """The board did not answer as a SigProp board top should (one line)."""


class RunUsageError(RunError):
    """A bad argument: the port, or a network the chosen mode cannot run (one line)."""


class PortError(RunUsageError):
    """The serial port cannot be used (a bad argument)."""


def open_port(port: str, baud: int = DEFAULT_BAUD, timeout: float = 2.0):
    """Open ``port`` with pyserial (:func:`serial.serial_for_url`): a device (``/dev/ttyUSB1``,
    ``COM3``), a pseudo-terminal, or any URL pyserial opens (``loop://``, ``socket://HOST:PORT``,
    ``rfc2217://...``), 8N1 at ``baud`` with a read timeout of ``timeout`` seconds.

    The returned ``serial.Serial`` is the host link's transport as it is (``read``, ``write``,
    ``reset_input_buffer``, ``close``). Raises :class:`PortError` (one line) when pyserial cannot
    open or configure it.
    """
    import serial

    if isinstance(baud, bool) or not isinstance(baud, int) or baud <= 0:
        raise PortError(f"--baud must be a positive integer, not {baud!r}")
    try:
        return serial.serial_for_url(port, baudrate=baud, timeout=timeout, write_timeout=max(timeout, 10.0))
    except (serial.SerialException, ValueError, OSError) as e:
        inner = e.__context__ if isinstance(e.__context__, OSError) else e    # pyserial wraps the OS's error
        msg = (getattr(inner, "strerror", None) or str(e).splitlines()[0]) if str(e) else type(e).__name__
        raise PortError(f"{port}: cannot open the serial port ({msg})") from None


def _runs(reqs):
    """Group ``[(key, addr)]`` into runs of consecutive addresses: ``[(addr, [keys])]``."""
    runs = []
    for key, a in sorted(reqs, key=lambda r: r[1]):
        if runs and runs[-1][0] + len(runs[-1][1]) == a:
            runs[-1][1].append(key)
        else:
            runs.append((a, [key]))
    return runs


class CountingTransport:
    """A transport that counts the bytes through it both ways (``written``, ``read``): the
    bytes on the wire, frame overhead, retries and all."""

    def __init__(self, transport):
        self.transport = transport
        self.written = self.read_bytes = 0

    def read(self, n):
        data = self.transport.read(n)
        self.read_bytes += len(data)
        return data

    def write(self, data):
        self.written += len(data)
        return self.transport.write(data)

    def reset_input_buffer(self):
        reset = getattr(self.transport, "reset_input_buffer", None)
        if reset is not None:
            reset()

    @property
    def total(self):
        return self.written + self.read_bytes


def _load(network):
    """The network file, its data, the resolved network and the pipelined engine's lanes (a board
    top of the serial engine tells its own through the ENGINE register)."""
    spec, data, net = load_network(network)
    return spec, data, net, get_engine("pipelined").lane_choices(net)[0]


def _registers():
    return {name: i for i, name in enumerate(REGISTERS)}


def _identify(client, R, net, lanes):
    """PING, check the ID register (a SigProp board top of this layout), and return the engine's
    lanes per stage and the learning rule it trains (the ENGINE register): ``lanes`` (the
    compiler's) for the pipelined engine, ``(P,) * depth`` for an engine of one lane array of ``P``
    lanes (serial, dfa, bp)."""
    client.ping()
    ident = client.read_reg(R["ID"])
    if ident != BOARD_ID:
        raise RunError(f"the device is not a SigProp board top of this version (ID 0x{ident:08x}, expected "
                       f"0x{BOARD_ID:08x}); rebuild the bitstream with this sigprop-fpga")
    word = client.read_reg(R["ENGINE"])
    P, code = word & 0xFFFFFF, word >> 24
    if code >= len(RULE_NAMES):
        raise RunError(f"the board trains learning rule number {code}, which this sigprop-fpga does not know "
                       f"({', '.join(RULE_NAMES)}); rebuild the bitstream with this sigprop-fpga")
    return (tuple(lanes) if P == 0 else (P,) * net.depth), RULE_NAMES[code]


def link_info(client, R) -> dict:
    """What the board top says about its clock and link: ``clock_hz``, ``divisor``, ``baud``
    (``clock_hz / divisor``), ``feature_bytes``, ``sample_fifo`` (bytes), ``result_fifo``."""
    clock_hz = client.read_reg(R["CLOCK_HZ"])
    info = client.read_reg(R["LINK"])
    divisor = info & 0xFF
    return {"clock_hz": clock_hz, "divisor": divisor, "baud": clock_hz / divisor if divisor else None,
            "feature_bytes": (info >> 8) & 0xFF, "sample_fifo": info >> 16,
            "result_fifo": client.read_reg(R["RESULT_FIFO"])}


def _clock(client, R) -> int:
    """The board's CLOCK register (clock cycles / :data:`CLOCK_TICK`)."""
    return client.read_reg(R["CLOCK"])


def _cycles(t0: int, t1: int) -> int:
    """Clock cycles between two CLOCK readings (modulo the register's wrap)."""
    return ((t1 - t0) % (1 << 32)) * CLOCK_TICK


def _hold_idle(client, R, control: int, poll_s: float, deadline: float) -> None:
    client.write_reg(R["CONTROL"], control | 0b100)
    while not client.read_reg(R["STATUS"]) & 0b100:
        if time.perf_counter() > deadline:
            raise RunError("the engine did not go idle")
        time.sleep(poll_s)


def _read_state(client, R, net, lanes, control: int, poll_s: float, deadline: float, rule: str = "sigprop") -> dict:
    """Hold the feeder (``control`` plus the hold bit), wait for the engine to go idle, read every
    readback entry of ``rule``'s map (``{key: value}``, as
    :func:`..compiler.statemap.readback_requests`), release."""

    _hold_idle(client, R, control, poll_s, deadline)
    words = {}
    for start, keys in _runs(readback_requests(net, lanes, rule)):
        values = client.read_mem(0, start, len(keys), signed=True)
        words.update(zip(keys, values))
    client.write_reg(R["CONTROL"], control)
    return words


def restart_board(client, R, net, lanes, state: dict, poll_s: float = 0.0, deadline_s: float = 600.0,
                  rule: str = "sigprop") -> int:
    """Restart the board without reconfiguring it: RESTART (engine, feeder, FIFOs and counters as
    after configuration), then ``state`` (the golden model's ``state()``: weights, biases,
    table, caches; for another ``rule``, its weights and biases) written through the state port.
    Returns the words written."""
    client.write_reg(R["RESTART"], 1)
    _hold_idle(client, R, 0, poll_s, time.perf_counter() + deadline_s)
    writes = sorted(state_writes(net, lanes, state, rule))
    n = 0
    for start, values in _runs([(v, a) for a, v in writes]):
        client.write_mem(0, start, values)
        n += len(values)
    client.write_reg(R["CONTROL"], 0)
    return n


def upload_dataset(client, R, net, data, capacity_bytes: int, progress: bool = False) -> dict:
    """Upload the dataset (training samples, then test samples, in the stream format) into the
    board's dataset RAM (region 1) and set N_TRAIN / N_TEST; as many samples as fit, the test
    split shortened first (:func:`..boards.flow.split_stored`).

    Resumable: the board counts the words written in order from 0 (DATA_FILL) and their CRC
    (DATA_CRC); when the CRC of the host's first DATA_FILL words matches, the upload goes on from
    there (an interrupted run, or the same data set again: nothing to send), else it starts
    afresh. Every frame is CRC checked and resent on an error; at the end DATA_FILL and DATA_CRC
    must match the whole upload. Returns ``n_train``, ``n_test``, ``words``, ``resumed_at``."""
    from .flow import split_stored

    bps = net.n_inputs * feature_bytes(net.spec.precision.input.width) + 1
    n_train, n_test = split_stored(min(capacity_bytes // bps, len(data.y_train) + len(data.y_test)),
                                   len(data.y_train), len(data.y_test))
    blob = (sample_bytes(net, data.x_train[:n_train], data.y_train[:n_train])
            + sample_bytes(net, data.x_test[:n_test], data.y_test[:n_test]))
    if len(blob) % 2:
        blob += b"\0"
    words = np.frombuffer(blob, dtype="<u2").astype(np.int64).tolist()
    fill, crc = client.read_reg(R["DATA_FILL"]), client.read_reg(R["DATA_CRC"])
    resumed = fill if fill <= len(words) and crc16(blob[:2 * fill]) == crc else 0
    if not resumed:
        client.write_reg(R["DATA_FILL"], 0)
    if progress:
        print(f"run: uploading {n_train} + {n_test} samples ({2 * (len(words) - resumed):,} bytes"
              + (f", resuming at word {resumed:,}" if resumed else "") + ") into the dataset RAM",
              file=sys.stderr, flush=True)
    chunk = 4096
    for start in range(resumed, len(words), chunk):
        client.write_mem(1, start, words[start:start + chunk])
    fill, crc = client.read_reg(R["DATA_FILL"]), client.read_reg(R["DATA_CRC"])
    if fill != len(words) or crc != crc16(blob):
        raise RunError(f"the dataset upload ended at word {fill} of {len(words)} with CRC 0x{crc:04x}, "
                       f"expected 0x{crc16(blob):04x}")
    client.write_reg(R["N_TRAIN"], n_train)
    client.write_reg(R["N_TEST"], n_test)
    return {"n_train": n_train, "n_test": n_test, "words": len(words), "resumed_at": resumed}


def _start(net, init_weights, rule: str = "sigprop", save_weights=None):
    """The golden model the board starts from (a checkpoint or the network's initial state; the
    golden model of the ``rule`` the board trains) and the checkpoint, refused when the board could
    not continue it (its LFSRs restart at seeds)."""
    if rule != "sigprop":
        if init_weights is not None or save_weights is not None:
            raise RunUsageError(f"checkpoints hold SigProp's state; the board trains {rule}, which takes none "
                                f"(--init-weights, --save-weights)")
        return GoldenRule(net, rule), None
    if init_weights is None:
        return GoldenSigProp(net), None
    prior = checkpoint.load(init_weights, net)
    checkpoint.check_lfsr_at_seeds(net, prior, init_weights, "a board")
    return checkpoint.golden_model(net, prior), prior


def _save(report: dict, init_weights, save_weights, net, lanes, words, golden, prior, epochs: int,
          command: str) -> None:
    """After a bit-exact run, the board's state read back as a checkpoint (``saved_weights``)."""
    report["init_weights"] = str(init_weights) if init_weights is not None else None
    report["saved_weights"] = None
    if save_weights is not None and report["bit_exact"]:
        report["saved_weights"] = str(checkpoint.save_readback(
            save_weights, net, lanes, words, golden, prior=prior, samples=report["samples"], epochs=epochs,
            model="board", command=command))


def run_on_board(network, transport, *, epochs: int | None = None, progress: bool = True,
                 poll_s: float = 0.05, deadline_s: float = 3600.0, init_weights=None,
                 save_weights=None) -> dict:
    """Train ``network`` on the board behind ``transport`` in autonomous mode (the on-chip dataset);
    returns the comparison report. The board is restarted first (RESTART and the initial state
    written: the network's, or the checkpoint ``init_weights``), so it need not be freshly
    configured. ``save_weights``: after a bit-exact run, the state read back as a checkpoint."""

    R = _registers()
    spec, data, net, lanes = _load(network)
    epochs = spec.learning.epochs if epochs is None else epochs
    client = HostLinkClient(transport, retries=3)
    t0 = time.perf_counter()
    try:
        lanes, rule = _identify(client, R, net, lanes)
        start, prior = _start(net, init_weights, rule, save_weights)
        link = link_info(client, R)
        restart_board(client, R, net, lanes, start.state(), poll_s, deadline_s, rule)
        upload = None
        capacity = client.read_reg(R["DATA_BYTES"])
        if capacity:                                  # a dataset RAM: upload the data set
            c_up = _clock(client, R)
            upload = upload_dataset(client, R, net, data, capacity, progress)
            upload["seconds"] = _cycles(c_up, _clock(client, R)) / link["clock_hz"] if link["clock_hz"] else None
        n_train, n_test = client.read_reg(R["N_TRAIN"]), client.read_reg(R["N_TEST"])
        if n_train == 0:
            raise RunError("the board stores no training samples; rebuild it with build --samples N")
        if progress:
            print(f"run: {spec.name}: training {n_train} on-chip samples x {epochs} epochs, "
                  f"evaluating {n_test} after each", file=sys.stderr, flush=True)
        c0 = _clock(client, R)
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
        cycles = _cycles(c0, _clock(client, R))
        curve = []
        for e in range(epochs):
            client.write_reg(R["CURVE_ADDR"], e)
            curve.append((client.read_reg(R["CURVE_TRAIN"]), client.read_reg(R["CURVE_TEST"])))
        words = _read_state(client, R, net, lanes, (epochs << 16) | 0b010, poll_s, t0 + deadline_s, rule)
    except HostLinkError as e:
        raise RunError(f"host link: {e}") from None
    wall = time.perf_counter() - t0
    golden, scores = golden_feeder_run(net, data, n_train, n_test, epochs, golden=start)
    mismatch = None
    for e, (got, want) in enumerate(zip(curve, scores)):
        if tuple(got) != tuple(want):
            mismatch = {"sample": (e + 1) * n_train, "epoch": e, "stage": None, "signal": "epoch score",
                        "index": None, "expected": list(want), "actual": list(got)}
            break
    if mismatch is None:
        mismatch = compare_state(net, lanes, words, golden, epochs * n_train)
    seconds = cycles / link["clock_hz"] if link["clock_hz"] else None
    report = {
        "name": spec.name, "engine": "board", "rule": rule, "mode": "autonomous", "bit_exact": mismatch is None,
        "first_mismatch": mismatch,
        "epochs": epochs, "n_train": n_train, "n_test": n_test, "samples": epochs * n_train,
        "on_chip_samples": n_train + n_test,
        "curve": [t / n_test if n_test else None for _, t in curve],
        "train_curve": [c / n_train for c, _ in curve],
        "golden_curve": [t / n_test if n_test else None for _, t in scores],
        "test_accuracy": curve[-1][1] / n_test if n_test else None,
        "golden_test_accuracy": scores[-1][1] / n_test if n_test and scores else None,
        "counters": {k[1]: v for k, v in words.items() if k[0] == "counter"},
        "clock_hz": link["clock_hz"], "baud": link["baud"], "divisor": link["divisor"],
        # the chip trains and evaluates the test split after each epoch by itself: the time is both
        "train_and_test_cycles": cycles, "train_and_test_seconds": seconds,
        "samples_per_second": epochs * n_train / seconds if seconds else None,
        "samples_per_second_includes_test": True, "upload": upload,
        "link": dict(client.stats), "wall_seconds": wall,
    }
    _save(report, init_weights, save_weights, net, lanes, words, golden, prior, epochs, "run")
    return report


# -- stream mode ---------------------------------------------------------------------------------

def sample_bytes(net, x, y) -> bytes:
    """The SEND_SAMPLE bytes of samples ``x`` (rows of integer features in the input format) with
    labels ``y``: per sample ``ceil(width / 8)`` two's complement bytes per feature (little endian),
    then the label byte. Raises :class:`RunUsageError` for inputs wider than 16 bits or more than
    256 classes."""
    width = net.spec.precision.input.width
    if width > 16:
        raise RunUsageError(f"stream mode sends at most two bytes per feature, but the input format "
                            f"{net.spec.precision.input} is {width} bits; use an input of at most 16 bits "
                            f"or the autonomous mode")
    if net.n_classes > 256:
        raise RunUsageError(f"stream mode sends the label in a byte, but the network has {net.n_classes} classes")
    fb = feature_bytes(width)
    x = np.asarray(x, dtype=np.int64).reshape(len(y), net.n_inputs)
    feats = np.stack([(x >> (8 * k)) & 0xFF for k in range(fb)], axis=2).reshape(len(y), net.n_inputs * fb)
    label = np.asarray(y, dtype=np.int64)[:, None]
    return np.concatenate([feats, label], axis=1).astype(np.uint8).tobytes()


class _Streamer:
    """Sends a block of samples over SEND_SAMPLE and collects their predictions with READ_RESULTS.

    The host keeps at most ``window`` samples in flight (sent, prediction not read): the board's
    sample FIFO holds their bytes and its result FIFO their predictions, so neither the link nor
    the engine waits for the other. Frames carry ``max_payload`` bytes (many samples, or a part
    of one); after each frame the host reads the predictions of the samples of the frames before
    it (done by then unless the engine is slower than the link), so a frame arrives while the
    engine works through the one before. A BUSY reply (the sample FIFO stayed full for the
    device's timeout) says how many bytes were taken; the rest is sent again.
    """

    def __init__(self, client, bytes_per_sample: int, window: int, max_empty_polls: int = 50):
        self.client, self.bps = client, bytes_per_sample
        self.window, self.max_empty_polls = max(1, window), max_empty_polls
        self.busy = 0

    def _poll(self, ask, got, n):
        try:
            return self.client.poll_results(ask)
        except HostLinkError as e:
            raise RunError(f"host link: reading the prediction of sample {got} of {n}: {e}") from None

    def _send(self, chunk, first, n):
        try:
            return self.client.offer_sample(chunk)
        except HostLinkError as e:
            raise RunError(f"host link: sending sample {first} of {n}: {e}") from None

    def run(self, blob: bytes, on_results):
        bps = self.bps
        n = len(blob) // bps
        max_payload = self.client.ident.max_payload
        pos = got = 0
        empty = stuck = 0
        ends = []                      # samples complete after each frame sent
        while got < n:
            limit = min(len(blob), (got + self.window) * bps)
            if pos < limit:
                end = min(limit, pos + max_payload)
                taken = self._send(blob[pos:end], pos // bps, n)
                pos += taken
                self.busy += pos < end
                stuck = 0 if taken else stuck + 1
                if stuck > self.max_empty_polls:
                    raise RunError(f"the board took no byte of sample {pos // bps} of {n} "
                                   f"after {stuck} BUSY replies")
                ends.append(pos // bps)
                ask = (ends[-2] if len(ends) > 1 else 0) - got       # the frames before this one
                if pos < end:                                        # stalled: read what is there
                    ask = pos // bps - got
                elif ask <= 0:
                    if pos < min(len(blob), (got + self.window) * bps):
                        continue                                     # nothing done yet: send on
                    ask = pos // bps - got
            else:
                ask = pos // bps - got
            if ask <= 0:
                continue
            res = self._poll(ask, got, n)
            if not res:
                empty += 1
                if empty > self.max_empty_polls:
                    raise RunError(f"no prediction for sample {got} of {n} after {empty} polls")
                continue
            empty = 0
            on_results(got, res)
            got += len(res)


def stream_on_board(network, transport, *, epochs: int | None = None, samples: int | None = None,
                    progress: bool = True, window: int | None = None, poll_s: float = 0.05,
                    deadline_s: float = 3600.0, init_weights=None, save_weights=None) -> dict:
    """Train ``network`` on the board behind ``transport`` with samples streamed from the host.

    The board is restarted first (RESTART, then the golden model's initial state written), so it
    trains from the same start as the golden model without being reconfigured. Per epoch the host
    sends the training split (the first ``samples`` of it, default all: the whole dataset the
    network file names, not only what the chip stores) for learning, then the test split for
    inference, in the dataset's fixed order (the order of the golden model and the on-chip
    feeder; no reshuffling between epochs). Every prediction is compared with the golden
    model's; at the end the host reads the whole state back and compares it too. Returns the
    comparison report; ``first_mismatch`` names the first differing prediction (``signal``
    ``"prediction"``, with ``epoch``, ``split``, ``index`` in the split and ``sample``, the
    position in the stream) or the first differing state entry.

    The training phase is timed by the board's own clock (the CLOCK register, read before the
    first training sample is sent and after its last prediction arrived): ``samples_per_second``
    is training samples per second of it at the clock the board was built for; the bytes through
    ``transport`` in it give ``link_bytes_per_sample``.
    """

    R = _registers()
    spec, data, net, lanes = _load(network)
    epochs = spec.learning.epochs if epochs is None else epochs
    n_train = len(data.y_train) if samples is None else min(samples, len(data.y_train))
    n_test = len(data.y_test)
    train_blob = sample_bytes(net, data.x_train[:n_train], data.y_train[:n_train])
    test_blob = sample_bytes(net, data.x_test, data.y_test)
    bps = len(train_blob) // n_train if n_train else len(test_blob) // max(n_test, 1)
    labels = np.concatenate([data.y_train[:n_train], data.y_test]).astype(np.int64)
    wire = CountingTransport(transport)
    client = HostLinkClient(wire, retries=3)
    t0 = time.perf_counter()
    try:
        lanes, rule = _identify(client, R, net, lanes)
        golden, prior = _start(net, init_weights, rule, save_weights)
        link = link_info(client, R)
        if link["feature_bytes"] != feature_bytes(net.spec.precision.input.width):
            raise RunError(f"the board takes {link['feature_bytes']} bytes per feature, the network file's "
                           f"input format {net.spec.precision.input} needs "
                           f"{feature_bytes(net.spec.precision.input.width)}; was it built from this file?")
        chip_train, chip_test = client.read_reg(R["N_TRAIN"]), client.read_reg(R["N_TEST"])
        restart_board(client, R, net, lanes, golden.state(), 0.0, deadline_s, rule)
    except HostLinkError as e:
        raise RunError(f"host link: {e}") from None
    if window is None:             # what the FIFOs hold: the engine never waits for the host
        window = max(1, min(link["result_fifo"] - 1, link["sample_fifo"] // bps))
    if progress:
        print(f"run: {spec.name}: streaming {n_train} training samples x {epochs} epochs from the host at "
              f"{link['baud']:,.0f} baud, evaluating {n_test} after each (the chip stores {chip_train} / "
              f"{chip_test})", file=sys.stderr, flush=True)
    bar = None
    if progress:
        bar = tqdm(total=epochs * (n_train + n_test), unit="sample", desc="stream", leave=False)

    streamer = _Streamer(client, bps, window)
    scores, golden_scores = [], []
    mismatch = None
    train_cycles = train_bytes = 0
    for e in range(epochs):
        want = np.array([golden.train_sample(data.x_train[i], int(data.y_train[i])) for i in range(n_train)]
                        + [golden.infer(data.x_test[i]) for i in range(n_test)], dtype=np.int64)
        got = np.empty(n_train + n_test, dtype=np.int64)

        def on_results(first, res, got=got):
            got[first:first + len(res)] = np.frombuffer(res, dtype=np.uint8)
            if bar is not None:
                bar.update(len(res))

        try:
            client.write_reg(R["CONTROL"], 0)                        # host samples train
            c0, b0 = _clock(client, R), wire.total
            streamer.run(train_blob, on_results)
            c1 = _clock(client, R)
            train_cycles += _cycles(c0, c1)
            train_bytes += wire.total - b0
            client.write_reg(R["CONTROL"], 0b1000)                   # host samples infer
            streamer.run(test_blob, lambda first, res: on_results(n_train + first, res))
        except HostLinkError as err:
            raise RunError(f"host link: {err}") from None
        hits = got == labels
        scores.append((int(hits[:n_train].sum()), int(hits[n_train:].sum())))
        golden_scores.append((int((want[:n_train] == labels[:n_train]).sum()),
                              int((want[n_train:] == labels[n_train:]).sum())))
        if mismatch is None and (got != want).any():
            k = int(np.flatnonzero(got != want)[0])
            split, index = ("train", k) if k < n_train else ("test", k - n_train)
            mismatch = {"sample": e * (n_train + n_test) + k, "epoch": e, "split": split, "index": index,
                        "stage": None, "signal": "prediction", "label": int(labels[k]),
                        "expected": int(want[k]), "actual": int(got[k])}
        if bar is not None:
            bar.write(f"run: epoch {e + 1}/{epochs}: train {scores[-1][0]}/{n_train}, test {scores[-1][1]}/{n_test}"
                      + ("" if scores[-1] == golden_scores[-1] else f" (golden model: {golden_scores[-1][0]}, "
                                                                   f"{golden_scores[-1][1]})"), file=sys.stderr)
            bar.set_postfix(epoch=e + 1, train=f"{scores[-1][0] / max(n_train, 1):.4f}",
                            test=f"{scores[-1][1] / n_test:.4f}" if n_test else "-")
    if bar is not None:
        bar.close()
    stream_wall = time.perf_counter() - t0
    try:
        words = _read_state(client, R, net, lanes, 0, poll_s, t0 + deadline_s, rule)
    except HostLinkError as e:
        raise RunError(f"host link: {e}") from None
    wall = time.perf_counter() - t0
    if mismatch is None:
        mismatch = compare_state(net, lanes, words, golden, epochs * n_train)
    predictions = epochs * (n_train + n_test)
    trained = epochs * n_train
    seconds = train_cycles / link["clock_hz"] if link["clock_hz"] else None
    lbps = train_bytes / trained if trained else None
    report = {
        "name": spec.name, "engine": "board", "rule": rule, "mode": "stream", "bit_exact": mismatch is None,
        "first_mismatch": mismatch,
        "epochs": epochs, "n_train": n_train, "n_test": n_test, "samples": trained,
        "predictions": predictions, "chip_n_train": chip_train, "chip_n_test": chip_test,
        "on_chip_samples": chip_train + chip_test,
        "curve": [t / n_test if n_test else None for _, t in scores],
        "train_curve": [c / n_train if n_train else None for c, _ in scores],
        "golden_curve": [t / n_test if n_test else None for _, t in golden_scores],
        "golden_train_curve": [c / n_train if n_train else None for c, _ in golden_scores],
        "test_accuracy": scores[-1][1] / n_test if n_test and scores else None,
        "golden_test_accuracy": golden_scores[-1][1] / n_test if n_test and golden_scores else None,
        "counters": {k[1]: v for k, v in words.items() if k[0] == "counter"},
        "clock_hz": link["clock_hz"], "baud": link["baud"], "divisor": link["divisor"],
        "bytes_per_sample": bps, "train_cycles": train_cycles, "train_seconds": seconds,
        "samples_per_second": trained / seconds if seconds else None,
        "link_bytes_per_sample": lbps,
        "link_samples_per_second": link["baud"] / 10 / lbps if lbps and link["baud"] else None,
        "link": dict(client.stats), "busy_replies": streamer.busy, "window": streamer.window,
        "predictions_per_second_wall": predictions / stream_wall if stream_wall > 0 else None,
        "wall_seconds": wall,
    }
    _save(report, init_weights, save_weights, net, lanes, words, golden, prior, epochs, "run --stream")
    return report
