"""Host side of the host link: frames, CRC, replies, and a client with retries.

The wire contract is described in :mod:`sigprop_fpga.hdl.hostlink`; this module holds its constants
(the hardware imports them from here, so the two sides cannot drift apart).

Request frame (host -> device)::

    0xA5 | CMD | LEN lo | LEN hi | PAYLOAD (LEN bytes) | CRC lo | CRC hi

Reply frame (device -> host)::

    0x5A | STATUS | LEN lo | LEN hi | PAYLOAD (LEN bytes) | CRC lo | CRC hi

CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor) over CMD/STATUS, LEN and
PAYLOAD. Multi-byte integers are little endian.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import struct
import threading
import time
from typing import Protocol, Sequence

__all__ = [
    "SYNC_REQUEST", "SYNC_REPLY", "PROTOCOL_VERSION", "MAGIC", "Cmd", "Status",
    "crc16", "encode_frame", "encode_reply", "decode_frame", "decode_reply", "read_reply",
    "ident_payload", "Ident", "parse_ident", "bytes_per_word",
    "HostLinkError", "LinkTimeout", "ReplyError", "DeviceError",
    "Transport", "LoopbackTransport", "HostLinkClient",
]

SYNC_REQUEST = 0xA5
SYNC_REPLY = 0x5A
PROTOCOL_VERSION = 1
MAGIC = b"SPFG"


class Cmd(enum.IntEnum):
    """Request commands (the CMD byte)."""
    PING = 0x01          #: payload: none. Reply: the identification block (:func:`ident_payload`).
    WRITE_MEM = 0x02     #: region u8, addr u32, count u16, count words. Reply: none.
    READ_MEM = 0x03      #: region u8, addr u32, count u16. Reply: count words.
    WRITE_REG = 0x04     #: index u8, value u32. Reply: none.
    READ_REG = 0x05      #: index u8. Reply: value u32.
    SEND_SAMPLE = 0x06   #: bytes for the ``sample`` stream. Reply: none (BUSY: u16 bytes taken).
    READ_RESULTS = 0x07  #: n u16. Reply: up to n bytes from the ``result`` stream.


class Status(enum.IntEnum):
    """Reply status codes (the STATUS byte)."""
    OK = 0x00
    BAD_CRC = 0x01         #: the frame's CRC did not match; nothing was executed
    BAD_LENGTH = 0x02      #: LEN > max_payload, or LEN does not fit the command's arguments
    UNKNOWN_COMMAND = 0x03
    OUT_OF_RANGE = 0x04    #: region, address + count, or register index outside its memory
    BUSY = 0x05            #: the datapath did not answer / accept within the timeout
    TIMEOUT = 0x06         #: the frame stopped arriving (inter-byte timeout); nothing executed


#: Status codes that mean "the frame was not executed", so resending it is always safe.
NOT_EXECUTED = frozenset({Status.BAD_CRC, Status.BAD_LENGTH, Status.TIMEOUT})


def crc16(data, crc=0xFFFF):
    """CRC-16/CCITT-FALSE of ``data`` (``crc16(b"123456789") == 0x29B1``)."""
    for byte in bytes(data):
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def _frame(sync, code, payload):
    payload = bytes(payload)
    if not 0 <= code <= 0xFF:
        raise ValueError(f"command/status byte must be 0..255, not {code}")
    if len(payload) > 0xFFFF:
        raise ValueError(f"payload of {len(payload)} bytes is longer than 65535")
    body = bytes([code]) + struct.pack("<H", len(payload)) + payload
    return bytes([sync]) + body + struct.pack("<H", crc16(body))


def encode_frame(cmd, payload=b""):
    """Encode a request frame (host -> device)."""
    return _frame(SYNC_REQUEST, int(cmd), payload)


def encode_reply(status, payload=b""):
    """Encode a reply frame (device -> host); used by models and tests."""
    return _frame(SYNC_REPLY, int(status), payload)


class HostLinkError(Exception):
    """Base class of host-link errors."""


class LinkTimeout(HostLinkError):
    """The device did not send (all of) a reply in time."""


class ReplyError(HostLinkError):
    """A reply arrived garbled (bad sync, bad CRC, or wrong length)."""


class DeviceError(HostLinkError):
    """The device answered with a non-OK status."""

    def __init__(self, status, payload=b"", what=""):
        self.status = Status(status) if status in Status._value2member_map_ else status
        self.payload = bytes(payload)
        name = self.status.name if isinstance(self.status, Status) else f"0x{status:02x}"
        super().__init__(f"device replied {name}" + (f" to {what}" if what else ""))


def _decode(frame, sync):
    frame = bytes(frame)
    if len(frame) < 6:
        raise ReplyError(f"frame of {len(frame)} bytes is shorter than the 6-byte minimum")
    if frame[0] != sync:
        raise ReplyError(f"frame starts with 0x{frame[0]:02x}, not sync 0x{sync:02x}")
    (length,) = struct.unpack_from("<H", frame, 2)
    if len(frame) != 6 + length:
        raise ReplyError(f"frame has {len(frame)} bytes, LEN={length} needs {6 + length}")
    body = frame[1:4 + length]
    (crc,) = struct.unpack_from("<H", frame, 4 + length)
    if crc16(body) != crc:
        raise ReplyError(f"frame CRC 0x{crc:04x} does not match 0x{crc16(body):04x}")
    return frame[1], frame[4:4 + length]


def decode_frame(frame):
    """Decode a request frame into ``(cmd, payload)``; raises :class:`ReplyError`."""
    return _decode(frame, SYNC_REQUEST)


def decode_reply(frame):
    """Decode a reply frame into ``(status, payload)``; raises :class:`ReplyError`.

    ``status`` is a :class:`Status` when the code is known, else the raw int.
    """
    status, payload = _decode(frame, SYNC_REPLY)
    return (Status(status) if status in Status._value2member_map_ else status), payload


def read_reply(transport, max_skip=1 << 16):
    """Read one reply from ``transport``: skip to the sync byte, then read and check it.

    Raises :class:`LinkTimeout` on a short read, :class:`ReplyError` on a garbled reply.
    """
    skipped = 0
    while True:
        b = transport.read(1)
        if not b:
            raise LinkTimeout("no reply from the device")
        if b[0] == SYNC_REPLY:
            break
        skipped += 1
        if skipped > max_skip:
            raise ReplyError(f"no sync byte in {max_skip} bytes")
    head = _read_exact(transport, 3)
    (length,) = struct.unpack_from("<H", head, 1)
    rest = _read_exact(transport, length + 2)
    return decode_reply(bytes([SYNC_REPLY]) + head + rest)


def _read_exact(transport, n):
    data = b""
    while len(data) < n:
        chunk = transport.read(n - len(data))
        if not chunk:
            raise LinkTimeout(f"reply cut short: {len(data)} of {n} bytes")
        data += chunk
    return data


def bytes_per_word(width):
    """Bytes one word of ``width`` bits takes on the wire (little endian)."""
    return (width + 7) // 8


def ident_payload(regions, max_payload, n_regs, reg_width):
    """The PING reply payload of a device with these parameters.

    ``MAGIC`` (4) | version u8 | max_payload u16 | n_regs u8 | reg_width u8 | n_regions u8 |
    per region: depth u32, width u8.
    """
    out = MAGIC + struct.pack("<BHBBB", PROTOCOL_VERSION, max_payload, n_regs, reg_width,
                              len(regions))
    for _name, depth, width in regions:
        out += struct.pack("<IB", depth, width)
    return out


@dataclasses.dataclass(frozen=True)
class Ident:
    """What a device tells about itself in the PING reply."""
    version: int
    max_payload: int
    n_regs: int
    reg_width: int
    regions: tuple  # of (depth, width)


def parse_ident(payload):
    """Parse a PING reply payload into an :class:`Ident`; raises :class:`ReplyError`."""
    payload = bytes(payload)
    if len(payload) < 10 or payload[:4] != MAGIC:
        raise ReplyError(f"not a sigprop-fpga host link (ident {payload[:10].hex()})")
    version, max_payload, n_regs, reg_width, n = struct.unpack_from("<BHBBB", payload, 4)
    if len(payload) != 10 + 5 * n:
        raise ReplyError(f"ident of {len(payload)} bytes, {n} regions need {10 + 5 * n}")
    regions = tuple(struct.unpack_from("<IB", payload, 10 + 5 * i) for i in range(n))
    return Ident(version, max_payload, n_regs, reg_width, regions)


class Transport(Protocol):
    """A byte pipe: a pyserial ``Serial`` (with a read timeout; ``serial.serial_for_url`` opens
    devices, ``loop://``, ``socket://`` and more) fits as it is.

    ``read(n)`` returns up to ``n`` bytes, fewer (possibly none) when the timeout passes.
    """

    def read(self, n: int) -> bytes: ...

    def write(self, data: bytes) -> int | None: ...


class LoopbackTransport:
    """An in-process transport: the host end of a pair of byte queues.

    The device end (a simulation or a model) calls :meth:`device_read` / :meth:`device_write`.
    ``read`` waits up to ``timeout`` seconds for the first byte. ``on_write``, if given, is called
    with each block the host writes (e.g. a Python device model that answers synchronously).
    """

    def __init__(self, timeout=1.0, on_write=None):
        self.timeout = timeout
        self.on_write = on_write
        self._to_device = collections.deque()
        self._to_host = collections.deque()
        self._cv = threading.Condition()

    # host end
    def write(self, data):
        data = bytes(data)
        with self._cv:
            self._to_device.extend(data)
            self._cv.notify_all()
        if self.on_write is not None:
            self.on_write(self)
        return len(data)

    def read(self, n):
        deadline = time.monotonic() + self.timeout
        with self._cv:
            while not self._to_host:
                left = deadline - time.monotonic()
                if left <= 0:
                    return b""
                self._cv.wait(left)
            return bytes(self._to_host.popleft() for _ in range(min(n, len(self._to_host))))

    def reset_input_buffer(self):
        with self._cv:
            self._to_host.clear()

    def close(self):
        """Nothing to release (a pyserial port's ``close``, for the same calls)."""

    # device end
    def device_read(self, n=1):
        """Up to ``n`` bytes the host wrote (no waiting)."""
        with self._cv:
            return bytes(self._to_device.popleft() for _ in range(min(n, len(self._to_device))))

    def device_write(self, data):
        with self._cv:
            self._to_host.extend(bytes(data))
            self._cv.notify_all()

    def device_pending(self):
        with self._cv:
            return len(self._to_device)


class HostLinkClient:
    """Client for the host link over any :class:`Transport`.

    Parameters
    ----------
    transport : Transport
        ``read(n)`` / ``write(b)`` byte pipe (pyserial ``Serial`` with a timeout, or
        :class:`LoopbackTransport`).
    retries : int
        How many times a frame is resent after a failure where resending is safe: always after a
        reply saying the frame was not executed (BAD_CRC, BAD_LENGTH, TIMEOUT); after a lost or
        garbled reply only for idempotent commands (ping, read/write of memory and registers).
    resync_delay : float
        Seconds to wait after a failure so the device's inter-byte timeout ends any frame it is
        still collecting; the input buffer is then drained before resending.

    Notes
    -----
    Replies carry no tag, so a request is matched to the next reply. Before each request the
    input buffer is emptied (``reset_input_buffer``, when the transport has it: pyserial and
    :class:`LoopbackTransport` do) so a late error reply to line noise is not taken for it.
    """

    def __init__(self, transport, retries=3, resync_delay=0.0):
        self.transport = transport
        self.retries = int(retries)
        self.resync_delay = float(resync_delay)
        self.ident = None
        self.stats = collections.Counter()

    # -- plumbing -----------------------------------------------------------------------------
    def _drain(self):
        if self.resync_delay:
            time.sleep(self.resync_delay)
        reset = getattr(self.transport, "reset_input_buffer", None)
        if reset is not None:
            reset()
        else:
            while self.transport.read(256):
                pass

    def transact(self, cmd, payload=b"", idempotent=True, what=""):
        """Send one frame and return the OK reply's payload; retry where safe."""
        frame = encode_frame(cmd, payload)
        last = None
        reset = getattr(self.transport, "reset_input_buffer", None)
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats["retries"] += 1
                self._drain()
            elif reset is not None:
                reset()          # stale replies (e.g. to line noise) must not answer this frame
            self.transport.write(frame)
            try:
                status, reply = read_reply(self.transport)
            except HostLinkError as exc:
                last = exc
                self.stats["bad_replies"] += 1
                if idempotent:
                    continue
                raise
            if status == Status.OK:
                return reply
            last = DeviceError(status, reply, what or Cmd(cmd).name)
            if status in NOT_EXECUTED:
                self.stats["not_executed"] += 1
                continue
            raise last
        raise last

    def _word_size(self, region):
        if self.ident is None:
            self.ping()
        if not 0 <= region < len(self.ident.regions):
            raise ValueError(f"region {region} does not exist "
                             f"(device has {len(self.ident.regions)})")
        return self.ident.regions[region]

    # -- commands -----------------------------------------------------------------------------
    def ping(self):
        """Identify the device; returns (and caches) its :class:`Ident`."""
        self.ident = parse_ident(self.transact(Cmd.PING))
        if self.ident.version != PROTOCOL_VERSION:
            raise HostLinkError(f"device speaks protocol {self.ident.version}, "
                                f"this client {PROTOCOL_VERSION}")
        return self.ident

    def _chunk_words(self, region):
        depth, width = self._word_size(region)
        bpw = bytes_per_word(width)
        return depth, width, bpw, max(1, (self.ident.max_payload - 7) // bpw)

    def write_mem(self, region, addr, words):
        """Write ``words`` (ints, masked to the region width) at ``addr``, in chunks."""
        depth, width, bpw, per = self._chunk_words(region)
        words = [int(w) for w in words]
        if addr < 0 or addr + len(words) > depth:
            raise ValueError(f"write of {len(words)} words at {addr} leaves region {region} "
                             f"of depth {depth}")
        mask = (1 << width) - 1
        for i in range(0, len(words), per):
            chunk = words[i:i + per]
            data = b"".join((w & mask).to_bytes(bpw, "little") for w in chunk)
            self.transact(Cmd.WRITE_MEM,
                          struct.pack("<BIH", region, addr + i, len(chunk)) + data)

    def read_mem(self, region, addr, count, signed=False):
        """Read ``count`` words from ``addr``; two's complement decoded if ``signed``."""
        depth, width, bpw, _ = self._chunk_words(region)
        per = max(1, self.ident.max_payload // bpw)
        out = []
        for i in range(0, count, per):
            n = min(per, count - i)
            data = self.transact(Cmd.READ_MEM, struct.pack("<BIH", region, addr + i, n))
            if len(data) != n * bpw:
                raise ReplyError(f"READ_MEM gave {len(data)} bytes, expected {n * bpw}")
            for k in range(n):
                w = int.from_bytes(data[k * bpw:(k + 1) * bpw], "little") & ((1 << width) - 1)
                if signed and w >> (width - 1):
                    w -= 1 << width
                out.append(w)
        return out

    def write_reg(self, index, value):
        self.transact(Cmd.WRITE_REG, struct.pack("<BI", index, value & 0xFFFFFFFF))

    def read_reg(self, index):
        data = self.transact(Cmd.READ_REG, struct.pack("<B", index))
        if len(data) != 4:
            raise ReplyError(f"READ_REG gave {len(data)} bytes, expected 4")
        return struct.unpack("<I", data)[0]

    def offer_sample(self, chunk):
        """One SEND_SAMPLE frame (at most ``max_payload`` bytes); returns how many bytes the
        ``sample`` stream took: all of them after an OK reply, the count a BUSY reply carries
        (the stream stalled; the rest was not taken and must be sent again).

        A frame the device did not execute (BAD_CRC, ...) is resent by :meth:`transact`; a lost
        or garbled reply is not (the bytes may have been taken), it raises.
        """
        if self.ident is None:
            self.ping()
        chunk = bytes(chunk)
        if len(chunk) > self.ident.max_payload:
            raise ValueError(f"a SEND_SAMPLE frame holds at most {self.ident.max_payload} bytes, "
                             f"not {len(chunk)}")
        try:
            self.transact(Cmd.SEND_SAMPLE, chunk, idempotent=False)
        except DeviceError as exc:
            if exc.status != Status.BUSY or len(exc.payload) != 2:
                raise
            (taken,) = struct.unpack("<H", exc.payload)
            if taken > len(chunk):
                raise ReplyError(f"BUSY reply says {taken} bytes were taken of {len(chunk)} sent") \
                    from None
            self.stats["busy"] += 1
            return taken
        return len(chunk)

    def send_sample(self, data, on_busy=None):
        """Forward ``data`` to the device's ``sample`` stream, in chunks of ``max_payload``.

        A BUSY reply says how many bytes the stream took; the rest is resent. ``on_busy(taken)``,
        if given, is called after each BUSY reply before the rest is resent (e.g. to read the
        results that back the stream up). More than ``retries`` BUSY replies in a row that took
        no byte raise the BUSY :class:`DeviceError`. A lost reply is not retried (the bytes may
        have been taken), it raises. Returns the number of BUSY replies.
        """
        if self.ident is None:
            self.ping()
        data = bytes(data)
        pos, stalls, busy = 0, 0, 0
        while pos < len(data):
            chunk = data[pos:pos + self.ident.max_payload]
            taken = self.offer_sample(chunk)
            pos += taken
            if taken == len(chunk):
                stalls = 0
                continue
            busy += 1
            stalls = 0 if taken else stalls + 1
            if stalls > self.retries:
                raise DeviceError(Status.BUSY, struct.pack("<H", 0),
                                  f"SEND_SAMPLE ({stalls} times in a row, {pos} of {len(data)} bytes taken)")
            if on_busy is not None:
                on_busy(taken)
        return busy

    def poll_results(self, n):
        """One READ_RESULTS: up to ``min(n, max_payload)`` bytes of the device's ``result``
        stream, those that arrived before a gap of the device's timeout (possibly none)."""
        if self.ident is None:
            self.ping()
        want = min(int(n), self.ident.max_payload)
        if want <= 0:
            return b""
        got = self.transact(Cmd.READ_RESULTS, struct.pack("<H", want), idempotent=False)
        if len(got) > want:
            raise ReplyError(f"READ_RESULTS gave {len(got)} bytes, asked for {want}")
        return got

    def read_results(self, n, max_polls=None):
        """Read ``n`` bytes from the device's ``result`` stream (polling until they are there)."""
        out = b""
        polls = 0
        while len(out) < n:
            got = self.poll_results(n - len(out))
            out += got
            polls += 0 if got else 1
            if max_polls is not None and polls > max_polls:
                raise LinkTimeout(f"read_results: {len(out)} of {n} bytes")
        return out
