"""Resource kinds, the pre-synthesis fit check, and nextpnr utilization in those kinds.

Canonical kinds (lower case):

========  ===========================================  =========================
kind      iCE40UP5K (nextpnr cell)                      ECP5 (nextpnr cell)
========  ===========================================  =========================
lut       ``ICESTORM_LC`` (LUT4 + DFF logic cell)       ``TRELLIS_COMB`` (LUT4)
ff        (inside ``ICESTORM_LC``)                      ``TRELLIS_FF``
dsp       ``ICESTORM_DSP`` (SB_MAC16)                   ``MULT18X18D``
bram      ``ICESTORM_RAM`` (4 kbit EBR)                 ``DP16KD`` (18 kbit EBR)
spram     ``ICESTORM_SPRAM`` (256 kbit)                 --
io        ``SB_IO``                                     ``TRELLIS_IO``
pll       ``ICESTORM_PLL``                              ``EHXPLLL``
========  ===========================================  =========================

:func:`fit_check` compares estimates with a :class:`BoardTarget`;
:func:`utilization_from_report` turns nextpnr's ``--report`` JSON into the same
kinds, and :func:`resource_table` prints estimate beside result.
"""

from __future__ import annotations

from typing import Iterable, Mapping

__all__ = ["KINDS", "FIT_KINDS", "KIND_LABELS", "normalize_kind", "normalize_estimates",
           "fit_check", "require_fit", "FitError", "utilization_from_report", "merge_resources",
           "resource_table"]

#: All kinds, in display order.
KINDS = ("lut", "ff", "dsp", "bram", "spram", "io", "pll")
#: Kinds checked before synthesis.
FIT_KINDS = ("lut", "dsp", "bram", "spram")

KIND_LABELS = {
    "lut": "LUT4", "ff": "FF", "dsp": "DSP", "bram": "block RAM", "spram": "SPRAM",
    "io": "I/O", "pll": "PLL",
}

_ALIASES = {
    "lut": "lut", "luts": "lut", "lut4": "lut", "lc": "lut", "logic": "lut", "comb": "lut",
    "ff": "ff", "ffs": "ff", "dff": "ff", "flipflop": "ff", "flip_flops": "ff",
    "dsp": "dsp", "dsps": "dsp", "mac": "dsp", "mult": "dsp", "multiplier": "dsp",
    "multipliers": "dsp", "sb_mac16": "dsp", "mult18x18d": "dsp",
    "bram": "bram", "brams": "bram", "ebr": "bram", "block_ram": "bram", "blockram": "bram",
    "block ram": "bram", "ram": "bram", "dp16kd": "bram",
    "spram": "spram", "sprams": "spram", "sb_spram256ka": "spram",
    "io": "io", "ios": "io", "pll": "pll",
}

_HINTS = {
    "lut": "use fewer lanes, narrower weights/activations, or smaller layers",
    "dsp": "use fewer lanes (one multiplier per lane), or narrower weights so two products "
           "share one multiplier",
    "bram": "use narrower weights, fewer units per layer, or keep the dataset off-chip "
            "(host link instead of autonomous mode)",
    "spram": "use a smaller stored dataset or narrower weights",
}


class FitError(ValueError):
    """The design does not fit; ``problems`` holds one message per resource."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def normalize_kind(kind: str) -> str:
    """Canonical kind for ``kind`` (case-insensitive aliases: ``LUT``, ``EBR``, ``DSP``...).

    Raises
    ------
    KeyError
        For an unknown kind.
    """
    key = str(kind).strip().lower().replace("-", "_")
    if key in _ALIASES:
        return _ALIASES[key]
    raise KeyError(f"unknown resource kind {kind!r}; expected one of {', '.join(KINDS)}")


def normalize_estimates(estimated: Mapping[str, int]) -> dict[str, int]:
    """Map estimate keys to canonical kinds (summing aliases of the same kind)."""
    out: dict[str, int] = {}
    for kind, value in estimated.items():
        k = normalize_kind(kind)
        out[k] = out.get(k, 0) + int(value)
    return out


def fit_check(estimated: Mapping[str, int], target, *, margin: float = 1.0) -> list[str]:
    """Compare pre-synthesis estimates with the device.

    Parameters
    ----------
    estimated : mapping of kind to int
        Estimated units per kind (``lut``, ``dsp``, ``bram``, ``spram``;
        aliases such as ``LUT``, ``EBR`` are accepted). Kinds that are not
        given are not checked.
    target : BoardTarget or str
        The board.
    margin : float, default 1.0
        Fraction of each resource the design may use (e.g. 0.9 to keep 10%
        headroom for placement).

    Returns
    -------
    list of str
        One message per over-used kind, empty if the design fits, e.g.
        ``"DSP: needs 12, iCE40UP5K on icebreaker has 8 (150%); use fewer
        lanes ..."``.
    """
    from . import get_target

    target = get_target(target)
    problems = []
    for kind, need in normalize_estimates(estimated).items():
        have = target.available(kind)
        limit = int(have * margin)
        if need <= limit:
            continue
        label = KIND_LABELS.get(kind, kind)
        where = f"{target.device} on {target.name}"
        if have == 0:
            msg = f"{label}: needs {need}, {where} has none"
        else:
            pct = 100.0 * need / have
            cap = "" if margin >= 1.0 else f" (limit {limit} at {margin:.0%})"
            msg = f"{label}: needs {need}, {where} has {have}{cap} ({pct:.0f}%)"
        hint = _HINTS.get(kind)
        problems.append(f"{msg}; {hint}" if hint else msg)
    return problems


def require_fit(estimated: Mapping[str, int], target, *, margin: float = 1.0) -> None:
    """Raise :class:`FitError` (all problems in its message) unless the design fits."""
    problems = fit_check(estimated, target, margin=margin)
    if problems:
        raise FitError(problems)


def utilization_from_report(report: Mapping, target) -> dict[str, dict[str, int]]:
    """Per-kind ``{"used", "available"}`` from a nextpnr ``--report`` JSON document.

    nextpnr writes ``{"utilization": {CELL_TYPE: {"used": n, "available": m}}, ...}``;
    cell types are mapped through ``target.cell_kinds``; unmapped cell types
    are kept under their own name when used (e.g. ``SB_GB``, ``DCCA``) and
    dropped otherwise. Fit kinds the device has but the report does not list
    get ``used = 0``.
    """
    from . import get_target

    target = get_target(target)
    out: dict[str, dict[str, int]] = {}
    for cell, counts in report.get("utilization", {}).items():
        kind = target.kind_of(cell)
        if kind is None:
            if not counts.get("used"):
                continue             # an unused hard block we do not track (SB_I2C, DCUA...)
            kind = cell
        entry = out.setdefault(kind, {"used": 0, "available": 0})
        entry["used"] += int(counts.get("used", 0))
        entry["available"] += int(counts.get("available", 0))
    for kind in FIT_KINDS:
        if target.available(kind) and kind not in out:
            out[kind] = {"used": 0, "available": target.available(kind)}
    return {kind: out[kind] for kind in _ordered(out)}


def merge_resources(used: Mapping[str, Mapping[str, int]],
                    estimated: Mapping[str, int] | None) -> dict[str, dict]:
    """Add ``estimated`` (pre-synthesis) beside ``used``/``available`` per kind."""
    out = {k: dict(v) for k, v in used.items()}
    for kind, value in normalize_estimates(estimated or {}).items():
        out.setdefault(kind, {"used": None, "available": None})["estimated"] = value
    return {kind: out[kind] for kind in _ordered(out)}


def _ordered(kinds: Iterable[str]) -> list[str]:
    kinds = list(kinds)
    known = [k for k in KINDS if k in kinds]
    return known + sorted(k for k in kinds if k not in KINDS)


def resource_table(resources: Mapping[str, Mapping]) -> str:
    """Plain-text table: kind, estimated, used, available, use %."""
    rows = [("resource", "estimated", "used", "available", "use")]
    for kind in _ordered(resources):
        r = resources[kind]
        used, avail, est = r.get("used"), r.get("available"), r.get("estimated")
        pct = f"{100.0 * used / avail:.1f}%" if used is not None and avail else "-"
        rows.append((KIND_LABELS.get(kind, kind),
                     "-" if est is None else str(est),
                     "-" if used is None else str(used),
                     "-" if avail is None else str(avail), pct))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join([rows[0][0].ljust(widths[0])] + [c.rjust(w) for c, w in
                                                          zip(rows[0][1:], widths[1:])])]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows[1:]:
        lines.append("  ".join([r[0].ljust(widths[0])] + [c.rjust(w) for c, w in
                                                        zip(r[1:], widths[1:])]))
    return "\n".join(lines)
