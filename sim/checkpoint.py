"""Checkpoints: a network's trained state in one ``.npz``, out of and into every model.

``train --save-weights``, ``sim --save-weights`` (and ``run``) write one; ``--init-weights``
starts the float model, the golden model, the RTL (through its state port) or a board from one.
A checkpoint holds everything training continues from, so that ``k`` epochs, save, load, ``N - k``
epochs equals ``N`` epochs bit for bit:

=====================  ==============================================  =============================
array                  what                                            dtype, units
=====================  ==============================================  =============================
``W<l>``, ``b<l>``     layer ``l``'s weights ``(units, fan_in)`` and    float64, the spec's real
                       biases ``(units,)``                              units (``raw / 2^frac``)
``T<l>``               its class-target cache ``(classes, units)``
``Tin<l>``             (``l >= 1``) its copy of the input-side targets
                       ``(classes, fan_in)``
``R``                  the target table ``(classes, units_0)``
``head_W``, ``head_b`` (readout ``head``) the linear head
``raw_<name>``         each array above as the hardware stores it       int64, two's complement in
                                                                        the entry's Q format
``lfsr``               each unit's LFSR position (layers, then the      int64 ``(depth + 1,)``;
                       head's): the state its next draw returns         golden and RTL checkpoints
``meta``               JSON (below)                                     a 0-d str array
=====================  ==============================================  =============================

``raw_<name>`` is always ``<name>`` rounded to its format (nearest even, saturated), and a golden
or RTL checkpoint's reals are exactly ``raw / 2^frac``; :func:`load` refuses a file where they
disagree (an edit of one and not the other). The golden model and the hardware start from the raw
integers and the LFSR positions, the float model from the reals.

The exp table of the softmax is a constant and the cycle and saturation counters are statistics
of one run (the hardware cannot write its counters), so neither is state: a model loaded from a
checkpoint counts from zero, and ``meta["counters"]`` adds each run's counts to the checkpoint's.

``meta``: ``format`` (:data:`FORMAT`), ``version`` (:data:`VERSION`), ``tool_version``, ``model``
(``float``, ``golden`` or ``rtl``), ``network`` (name, file, ``sha256`` of the file), ``fingerprint``
(what must match to load: inputs, classes, widths, readout, every stored format), ``seed``,
``lfsr_seed``, ``rounding``, ``dataset``, ``samples_seen`` (training samples since the seeded
initial weights), ``counters`` and ``history`` (one entry per run that wrote the file).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from ..compiler.network import Network, lfsr_seed, quantize_inputs
from ..compiler.spec import SpecError
from ..compiler.statemap import state_writes as _state_writes
from ..compiler.statemap import unpack_state
from .golden import GoldenSigProp
from .reference import FloatSigProp

__all__ = ["FORMAT", "VERSION", "Checkpoint", "CheckpointError", "fingerprint", "array_formats",
           "from_model", "from_raw", "save", "load", "golden_model", "float_model", "state_writes",
           "check_lfsr_at_seeds", "save_readback"]

#: ``meta["format"]`` of every checkpoint.
FORMAT = "sigprop-fpga-checkpoint"
#: The layout version this code writes and reads.
VERSION = 1


class CheckpointError(SpecError):
    """A checkpoint that cannot be used: one line naming the file, the array or key, and what
    was expected (the command line exits 2)."""


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """A checkpoint in memory.

    Members
    -------
    raw : dict
        Golden-shaped raw integers (:meth:`GoldenSigProp.state` without counters): ``W``, ``b``,
        ``T`` (lists per layer), ``Tin`` (``None`` for layer 0), ``R``, ``head`` (``None`` or
        ``{"W", "b"}``).
    real : dict
        The same shapes in the spec's real units (float64).
    lfsr : list of int or None
        Each unit's LFSR position; ``None`` in a float checkpoint (a golden model loaded from
        it starts its LFSRs from their seeds).
    meta : dict
    """

    raw: dict
    real: dict
    lfsr: list | None
    meta: dict

    @property
    def samples_seen(self) -> int:
        return int(self.meta.get("samples_seen", 0))


def array_formats(net: Network) -> dict:
    """``{array name: QFormat}`` of every array a checkpoint of ``net`` holds, in file order."""
    out = {}
    for l in range(net.depth):
        p = net.prec(l)
        out[f"W{l}"], out[f"b{l}"], out[f"T{l}"] = p.weight, p.bias, p.activation
        if l > 0:
            out[f"Tin{l}"] = net.in_format(l)
    out["R"] = net.spec.precision.table
    if net.spec.readout == "head":
        p = net.prec(net.depth - 1)
        out["head_W"], out["head_b"] = p.weight, p.bias
    return out


def _shapes(net: Network) -> dict:
    C, out = net.n_classes, {}
    for l in range(net.depth):
        n, n_in = net.units(l), net.fan_in(l)
        out[f"W{l}"], out[f"b{l}"], out[f"T{l}"] = (n, n_in), (n,), (C, n)
        if l > 0:
            out[f"Tin{l}"] = (C, n_in)
    out["R"] = (C, net.units(0))
    if net.spec.readout == "head":
        out["head_W"], out["head_b"] = (C, net.units(net.depth - 1)), (C,)
    return out


def fingerprint(net: Network) -> dict:
    """What a checkpoint must share with a network to load into it: the shapes and the formats
    of every stored array (learning settings may differ: a checkpoint may be fine-tuned with
    another step size)."""
    fp = {"inputs": net.n_inputs, "classes": net.n_classes,
          "layer widths": [net.units(l) for l in range(net.depth)], "readout": net.spec.readout}
    fp.update({f"format of {name}": str(q) for name, q in array_formats(net).items()})
    return fp


def _get(state: dict, name: str):
    if name.startswith("head_"):
        return None if state.get("head") is None else state["head"][name[5:]]
    if name == "R":
        return state["R"]
    key, l = (name[:3], name[3:]) if name.startswith("Tin") else (name[:1], name[1:])
    return state[key][int(l)]


def _nest(net: Network, flat: dict) -> dict:
    """Golden-shaped state from ``{array name: array}``."""
    d = net.depth
    return {"W": [flat[f"W{l}"] for l in range(d)], "b": [flat[f"b{l}"] for l in range(d)],
            "T": [flat[f"T{l}"] for l in range(d)], "Tin": [None] + [flat[f"Tin{l}"] for l in range(1, d)],
            "R": flat["R"],
            "head": {"W": flat["head_W"], "b": flat["head_b"]} if "head_W" in flat else None}


def _network_sha256(net: Network) -> str | None:
    try:
        return hashlib.sha256(Path(net.spec.file).read_bytes()).hexdigest()
    except (OSError, TypeError):
        return None


def _tool_version() -> str:
    try:
        return importlib.metadata.version("sigprop-fpga")
    except importlib.metadata.PackageNotFoundError:   # pragma: no cover - a source tree without install
        return "unknown"


def _meta(net: Network, model: str, prior: Checkpoint | None, samples: int, epochs: int, counters: dict,
          command: str) -> dict:
    spec = net.spec
    total = dict(prior.meta.get("counters", {})) if prior is not None else {}
    for k, v in (counters or {}).items():
        total[k] = int(total.get(k, 0)) + int(v)
    history = list(prior.meta.get("history", [])) if prior is not None else []
    history.append({"command": command, "model": model, "epochs": int(epochs), "samples": int(samples)})
    return {"format": FORMAT, "version": VERSION, "tool_version": _tool_version(), "model": model,
            "network": {"name": spec.name, "file": str(spec.file), "sha256": _network_sha256(net)},
            "fingerprint": fingerprint(net), "seed": spec.learning.seed, "lfsr_seed": spec.precision.lfsr_seed,
            "rounding": spec.precision.rounding, "dataset": spec.dataset.source,
            "samples_seen": (prior.samples_seen if prior is not None else 0) + int(samples),
            "counters": total, "history": history}


def from_raw(net: Network, raw: dict, lfsr, *, model: str = "rtl", prior: Checkpoint | None = None,
             samples: int = 0, epochs: int = 0, counters: dict | None = None, command: str = "sim") -> Checkpoint:
    """A checkpoint of raw integer state (the golden model's, or a hardware readback unpacked by
    :func:`..compiler.statemap.unpack_state`) and LFSR positions.

    Parameters
    ----------
    raw : dict
        Golden-shaped integer arrays (``W``, ``b``, ``T``, ``Tin``, ``R``, ``head``).
    lfsr : sequence of int
        Each unit's LFSR position (:meth:`GoldenSigProp.lfsr_states`).
    model : str
        Who trained it (``golden``, ``rtl``, ``board``).
    prior : Checkpoint, optional
        The checkpoint this run started from: its ``samples_seen``, counters and history carry on.
    samples, epochs : int
        Training samples and epochs of this run.
    counters : dict, optional
        This run's counters (added to ``prior``'s).
    command : str
        The command that trained (for ``history``).
    """
    flat_raw, flat_real = {}, {}
    for name, q in array_formats(net).items():
        a = np.array(_get(raw, name), dtype=np.int64)
        flat_raw[name] = a
        flat_real[name] = a / q.scale
    lf = [int(s) for s in lfsr] if lfsr is not None else None
    return Checkpoint(_nest(net, flat_raw), _nest(net, flat_real), lf,
                      _meta(net, model, prior, samples, epochs, counters or {}, command))


def from_model(net: Network, model, *, prior: Checkpoint | None = None, samples: int = 0, epochs: int = 0,
               command: str = "train") -> Checkpoint:
    """A checkpoint of a trained :class:`GoldenSigProp` or :class:`FloatSigProp` (``samples`` and
    ``epochs``: this run's; ``prior``: the checkpoint it started from)."""
    if isinstance(model, GoldenSigProp):
        counters = {k: v for k, v in model.counters.items()}
        return from_raw(net, model.state(), model.lfsr_states(), model="golden", prior=prior, samples=samples,
                        epochs=epochs, counters=counters, command=command)
    if not isinstance(model, FloatSigProp):
        raise TypeError(f"model must be a GoldenSigProp or FloatSigProp, not {type(model).__name__}")
    state = model.state()
    flat_raw, flat_real = {}, {}
    for name, q in array_formats(net).items():
        real = np.array(_get(state, name), dtype=np.float64)
        flat_real[name] = real
        flat_raw[name] = quantize_inputs(real, q)
    return Checkpoint(_nest(net, flat_raw), _nest(net, flat_real), None,
                      _meta(net, "float", prior, samples, epochs, {"samples": samples}, command))


def save(path: str | Path, ck: Checkpoint) -> Path:
    """Write ``ck`` to ``path`` (an ``.npz``): to a temporary name in the same folder, then
    renamed, so a reader never sees half a file."""
    path = Path(path)
    arrays = {"meta": np.array(json.dumps(ck.meta, sort_keys=False))}
    names = _flat_names(ck.raw)
    for name in names:
        arrays[name] = np.asarray(_get(ck.real, name), dtype=np.float64)
    for name in names:
        arrays[f"raw_{name}"] = np.asarray(_get(ck.raw, name), dtype=np.int64)
    if ck.lfsr is not None:
        arrays["lfsr"] = np.array(ck.lfsr, dtype=np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _flat_names(state: dict) -> list[str]:
    d = len(state["W"])
    names = []
    for l in range(d):
        names += [f"W{l}", f"b{l}", f"T{l}"] + ([f"Tin{l}"] if l > 0 else [])
    names.append("R")
    if state.get("head") is not None:
        names += ["head_W", "head_b"]
    return names


def load(path: str | Path, net: Network) -> Checkpoint:
    """Read and check a checkpoint for ``net``.

    Raises
    ------
    CheckpointError
        One line naming the file and what is wrong: not a readable ``.npz``, not a checkpoint,
        a newer layout, a checkpoint of another network (the first shape or format that differs,
        with both values), a missing or misshapen array, a raw value outside its format, raw
        integers that are not the real values rounded, an LFSR state of zero.
    """
    f = str(path)
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f, None, "", "expected a checkpoint file (.npz), no such file" if not p.exists()
                              else "expected a checkpoint file (.npz), got a folder")
    try:
        z = np.load(p, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - any unreadable archive is the same user error
        raise CheckpointError(f, None, "", f"expected an .npz checkpoint readable by numpy.load ({type(e).__name__})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise CheckpointError(f, None, "", "expected an .npz checkpoint of named arrays, got a single .npy array")
    with z:
        if "meta" not in z.files:
            raise CheckpointError(f, None, "meta", f"array is missing: not a sigprop-fpga checkpoint "
                                                   f"(found {', '.join(z.files) or 'no arrays'})")
        try:
            meta = json.loads(str(z["meta"][()]))
        except Exception as e:  # noqa: BLE001 - a corrupt member or text that is not JSON
            raise CheckpointError(f, None, "meta", f"expected a JSON string ({type(e).__name__})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
            raise CheckpointError(f, None, "meta.format", f"expected {FORMAT!r}, got {got!r}")
        if meta.get("version") != VERSION:
            raise CheckpointError(f, None, "meta.version",
                                  f"expected checkpoint layout {VERSION}, got {meta.get('version')!r} "
                                  f"(written by sigprop-fpga {meta.get('tool_version', '?')})")
        _check_fingerprint(f, meta, net)
        arrays = {}
        for name in list(array_formats(net)) + ["lfsr"]:
            for key in ((name, f"raw_{name}") if name != "lfsr" else ("lfsr",)):
                if key not in z.files:
                    if key == "lfsr":
                        continue
                    raise CheckpointError(f, None, key, "array is missing")
                try:
                    arrays[key] = z[key]
                except Exception as e:  # noqa: BLE001 - object arrays, corrupt members
                    raise CheckpointError(f, None, key, f"expected a numeric array numpy can read ({type(e).__name__})") from None
    raw, real = _check_arrays(f, net, arrays)
    lfsr = None
    if "lfsr" in arrays:
        a = arrays["lfsr"]
        if a.shape != (net.depth + 1,) or not np.issubdtype(a.dtype, np.integer):
            raise CheckpointError(f, None, "lfsr", f"expected {net.depth + 1} integer LFSR states, got "
                                                   f"shape {a.shape} of {a.dtype}")
        bad = np.flatnonzero((a <= 0) | (a > 0xFFFFFFFF))
        if len(bad):
            raise CheckpointError(f, None, "lfsr", f"expected non-zero 32-bit states, got {a[bad[0]]} at [{bad[0]}]")
        lfsr = [int(s) for s in a]
    return Checkpoint(_nest(net, raw), _nest(net, real), lfsr, meta)


def _check_fingerprint(f: str, meta: dict, net: Network) -> None:
    got = meta.get("fingerprint")
    want = fingerprint(net)
    if not isinstance(got, dict):
        raise CheckpointError(f, None, "meta.fingerprint", "expected the network's shapes and formats, got none")
    other = (meta.get("network") or {}).get("name", "?")
    for key, w in want.items():
        g = got.get(key)
        if g != w:
            raise CheckpointError(
                f, None, "network",
                f"the checkpoint is of network {other!r} with {key} {_fmt(g)}, {net.spec.file} has {_fmt(w)}; "
                f"a checkpoint loads only into a network of the same shapes and formats")


def _fmt(v) -> str:
    return "none" if v is None else str(v)


def _check_arrays(f: str, net: Network, arrays: dict) -> tuple[dict, dict]:
    shapes = _shapes(net)
    raw, real = {}, {}
    for name, q in array_formats(net).items():
        r, x = arrays[f"raw_{name}"], arrays[name]
        for key, a in ((name, x), (f"raw_{name}", r)):
            if a.shape != shapes[name]:
                raise CheckpointError(f, None, key, f"expected shape {shapes[name]}, got {a.shape}")
            if not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
                raise CheckpointError(f, None, key, f"expected real numbers, got dtype {a.dtype}")
        if not np.issubdtype(r.dtype, np.integer):
            raise CheckpointError(f, None, f"raw_{name}", f"expected integers, got dtype {r.dtype}")
        r = r.astype(np.int64)
        bad = np.argwhere((r < q.min_int) | (r > q.max_int))
        if len(bad):
            i = tuple(int(v) for v in bad[0])
            raise CheckpointError(f, None, f"raw_{name}", f"expected integers of {q} ({q.min_int}..{q.max_int}), "
                                                          f"got {r[i]} at {list(i)}")
        x = x.astype(np.float64)
        bad = np.argwhere(~np.isfinite(x))
        if len(bad):
            i = tuple(int(v) for v in bad[0])
            raise CheckpointError(f, None, name, f"expected finite values, got {x[i]} at {list(i)}")
        bad = np.argwhere(quantize_inputs(x, q) != r)
        if len(bad):
            i = tuple(int(v) for v in bad[0])
            raise CheckpointError(f, None, f"raw_{name}",
                                  f"expected {name} rounded to {q} ({int(quantize_inputs(x[i], q))} at {list(i)}, "
                                  f"from {x[i]!r}), got {r[i]}; edit both or neither")
        raw[name], real[name] = r, x
    return raw, real


def golden_model(net: Network, ck: Checkpoint) -> GoldenSigProp:
    """A golden model that continues from ``ck`` (raw integers and LFSR positions; a float
    checkpoint's LFSRs start from their seeds); its counters count from zero."""
    g = GoldenSigProp(net)
    g.load_state(ck.raw, ck.lfsr)
    return g


def float_model(net: Network, ck: Checkpoint) -> FloatSigProp:
    """A float model that continues from ``ck``'s real values (weights, table, head, caches)."""
    m = FloatSigProp(net)
    m.load_state(ck.real)
    return m


def state_writes(net: Network, lanes, ck: Checkpoint) -> list[tuple[int, int]]:
    """``[(address, value)]`` that load ``ck`` into an engine with ``lanes`` through its state
    port (:func:`..compiler.statemap.state_writes`): what ``sim`` writes before training and what
    a board's host writes (WRITE_MEM to the state region while held)."""
    return _state_writes(net, lanes, ck.raw)


def check_lfsr_at_seeds(net: Network, ck: Checkpoint, path: str | Path, where: str = "a board") -> None:
    """Refuse ``ck`` for hardware whose LFSRs cannot be set (a bitstream restarts them at their
    seeds; the state port does not reach them): with stochastic rounding, a checkpoint whose LFSR
    positions are not the seeds would not continue bit exact there. ``sim`` sets them by
    elaboration instead (:func:`..rtl.simulate_rtl`)."""
    if ck.lfsr is None or net.spec.precision.rounding != "stochastic":
        return
    seeds = [lfsr_seed(net.spec.precision.lfsr_seed, u) for u in range(net.depth + 1)]
    if list(ck.lfsr) != seeds:
        raise CheckpointError(str(path), None, "lfsr",
                              f"expected the LFSRs at their seeds to continue on {where} (stochastic rounding: its "
                              f"LFSRs restart at their seeds and the state port does not reach them), got the "
                              f"positions after {ck.samples_seen} training samples; continue this checkpoint "
                              f"with `sim` or `train --model golden`")


def save_readback(path: str | Path, net: Network, lanes, words: dict, golden: GoldenSigProp, *,
                  prior: Checkpoint | None, samples: int, epochs: int, model: str, command: str) -> Path:
    """Write the state read back from hardware as a checkpoint (after a bit-exact run).

    Parameters
    ----------
    words : dict
        Every readback entry, keyed as :func:`..compiler.statemap.readback_requests` keys them
        (memories and counters).
    golden : GoldenSigProp
        The golden twin of the run: the LFSR positions come from it (the state port cannot read
        the LFSRs; bit-exact weights mean both consumed the same draws).
    prior : Checkpoint or None
        The checkpoint the run started from.
    samples, epochs : int
        Training samples and epochs of this run.
    model, command : str
        Who trained (``rtl``, ``board``) and how, for ``meta``.
    """
    state = unpack_state(net, lanes, words)
    counters = {k: int(v) for k, v in state.pop("counters", {}).items() if not k.startswith("stage_cycles")}
    ck = from_raw(net, state, golden.lfsr_states(), model=model, prior=prior, samples=samples, epochs=epochs,
                  counters=counters, command=command)
    return save(path, ck)
