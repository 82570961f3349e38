"""Write the corpus's malformed dataset files: ``python tests/corpus/make_npz.py [FOLDER]``.

Each ``npz-<case>.npz`` sits beside the network file ``npz-<case>.yaml`` that points at it. The
archives are written byte for byte reproducibly (fixed member dates, no compression), so
``tests/test_corpus.py`` checks that the committed files are exactly what this script writes.
"""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

# A well-formed dataset (3 features, 3 classes); each case changes one thing.
BASE = {
    "x_train": np.round(np.random.default_rng(0).uniform(-1, 1, size=(6, 3)), 3),
    "y_train": np.array([0, 1, 2, 0, 1, 2]),
    "x_test": np.zeros((2, 3)),
    "y_test": np.array([0, 1]),
}


def npy(a: np.ndarray) -> bytes:
    a = np.asarray(a)
    if a.dtype.kind == "i":
        a = a.astype("<i8")     # the same bytes on every platform
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, allow_pickle=False)
    return buf.getvalue()


def header(descr: str, shape: tuple, data: bytes) -> bytes:
    """A .npy member with the given header, followed by ``data`` (whatever the header says)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue() + data


def archive(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


def npz(**changes) -> bytes:
    """The base dataset with ``changes`` (None drops an array), as an .npz archive."""
    arrays = {**BASE, **changes}
    return archive({f"{k}.npy": npy(v) for k, v in arrays.items() if v is not None})


def members(**changes) -> dict[str, bytes]:
    return {f"{k}.npy": changes.get(k, npy(v)) for k, v in BASE.items()}


def bad_crc() -> bytes:
    """A valid archive with the last byte of x_train's data flipped: the member's CRC-32 fails."""
    data = bytearray(npz())
    member = npy(BASE["x_train"])
    data[data.index(member) + len(member) - 1] ^= 0xFF
    return bytes(data)


CASES = {
    # not an .npz archive at all
    "not-an-archive": lambda: b"x_train,y_train\n0.5,1\n",
    "empty-file": lambda: b"",
    "single-npy": lambda: npy(BASE["x_train"]),
    "truncated": lambda: npz()[:400],
    "bad-crc": bad_crc,
    # x_train's header promises 1000 rows, the member holds two
    "short-array": lambda: archive(members(x_train=header("<f8", (1000, 3), np.zeros(6).tobytes()))),
    # missing arrays
    "missing-y-test": lambda: npz(y_test=None),
    "no-arrays": lambda: archive({}),
    # a pickled object array (never unpickled: numpy.load refuses it first)
    "object-array": lambda: archive(members(x_train=header("|O", (6, 3), b"\x80\x04not unpickled."))),
    # wrong shapes and types of the inputs
    "x-train-1d": lambda: npz(x_train=np.zeros(6)),
    "x-train-3d": lambda: npz(x_train=np.zeros((6, 3, 1))),
    "x-train-no-rows": lambda: npz(x_train=np.zeros((0, 3)), y_train=np.zeros(0, dtype=int)),
    "x-test-features": lambda: npz(x_test=np.zeros((2, 4))),
    "x-train-strings": lambda: npz(x_train=np.array([["a"] * 3] * 6)),
    "x-train-complex": lambda: npz(x_train=np.zeros((6, 3), dtype=complex)),
    # NaN and infinity
    "x-test-nan": lambda: npz(x_test=np.array([[0, np.nan, 0], [0, 0, 0]])),
    "x-train-inf": lambda: npz(x_train=np.where(np.arange(18).reshape(6, 3) == 7, -np.inf, BASE["x_train"])),
    # mismatched lengths
    "y-train-short": lambda: npz(y_train=np.array([0, 1, 2, 0, 1])),
    "y-test-long": lambda: npz(y_test=np.array([0, 1, 2])),
    # labels: types, shapes and ranges
    "y-test-2d": lambda: npz(y_test=np.zeros((2, 1), dtype=int)),
    "y-train-fraction": lambda: npz(y_train=np.array([0, 1, 2, 0, 1, 2.5])),
    "y-train-nan": lambda: npz(y_train=np.array([0, 1, 2, np.nan, 1, 2])),
    "y-train-bool": lambda: npz(y_train=np.array([True, False] * 3)),
    "y-train-negative": lambda: npz(y_train=np.array([0, 1, 2, 0, 1, -1])),
    "y-train-huge": lambda: npz(y_train=np.array([0, 1, 2, 0, 1, 1e30])),
    "y-test-unseen-class": lambda: npz(y_test=np.array([0, 5])),
    "y-train-class-absent": lambda: npz(y_train=np.array([0, 1, 3, 0, 1, 3])),
    "y-train-one-class": lambda: npz(y_train=np.zeros(6, dtype=int), y_test=np.zeros(2, dtype=int)),
}


def write(folder: Path = HERE) -> list[Path]:
    out = []
    for name, make in CASES.items():
        p = folder / f"npz-{name}.npz"
        p.write_bytes(make())
        out.append(p)
    return out


if __name__ == "__main__":
    for p in write(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print(p)
