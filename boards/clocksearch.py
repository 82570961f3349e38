"""``hardware.clock_mhz: max``: build at the highest PLL frequency at which timing is met.

The search (:func:`search_clock`) is deterministic: the same design, board and seed give the same
attempts and the same bitstream.

1. Build with the ``sync`` clock constrained at the board's probe frequency
   (:attr:`~sigprop_fpga.boards.targets.BoardTarget.probe_mhz`, above what designs reach on the
   device, so the placer works for speed) and read nextpnr's fmax.
2. Choose the highest frequency the board's PLL makes (or the oscillator itself) that is at most
   that fmax and whose host-link baud error (``round(clock / baud)`` as the UART divisor) is
   within :data:`BAUD_ERROR_BUDGET` (:func:`choose_clock`), rebuild at it and read fmax again.
3. Not met: choose again below the clock just tried (at most the new fmax) and rebuild, until
   an attempt meets timing.
4. The first attempt that meets timing gets one more try when its fmax leaves room: the highest
   frequency at most that fmax not tried yet (placements differ from one constraint to the next:
   on the ULX3S, 75 MHz failed at fmax 74.0 and 71.875 MHz then met with fmax 83.6). If that try
   fails, one last try halfway between the two (the middle of the untried candidates strictly
   between them, the lower of two middles): on the ULX3S, 75 MHz met at fmax 87.6 and 87.5 failed
   at fmax 77.9, a placement's noise more than the design's limit. The search ends with the
   highest-clock attempt that met timing.

At most :data:`MAX_ATTEMPTS` builds; if none meets timing, the last is returned with
``timing_met`` false.

Every attempt is an ordinary :func:`~sigprop_fpga.boards.build.build` (stamped and cached) in
``<out_dir>.clock-search/<MHz>``; the chosen one is copied to ``out_dir`` (atomically), so a
re-run rebuilds nothing. The report gains ``clock_search``: the probe, the requested value
(``"max"``), every attempt's clock, fmax and timing, the seed and the baud budget.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any, Callable

from amaranth.hdl import Elaboratable

from . import get_target
from .build import REPORT_FILE, BuildError, _install, build
from .targets import BoardTarget

__all__ = ["MAX_CLOCK", "BAUD_ERROR_BUDGET", "MAX_ATTEMPTS", "baud_error", "clock_candidates",
           "choose_clock", "search_clock"]

#: The ``hardware.clock_mhz`` value that asks for the search.
MAX_CLOCK = "max"

#: Largest relative error of the board's baud rate (``clock / round(clock / baud)`` against
#: ``baud``). An 8N1 frame is sampled 9.5 bits after its start edge, so both ends together may be
#: off by at most half a bit in 9.5 (5.3%); 2% here leaves the rest to the host's adapter.
BAUD_ERROR_BUDGET = 0.02

#: Most builds one search makes.
MAX_ATTEMPTS = 6

#: The UART needs at least this many clock cycles per bit (``SigPropBoardTop``).
_MIN_DIVISOR = 4


def baud_error(clock_mhz: float, baud: int) -> float:
    """Relative baud error of a UART clocked at ``clock_mhz`` with divisor ``round(clock / baud)``.

    Parameters
    ----------
    clock_mhz : float
        The ``sync`` clock (MHz), positive.
    baud : int
        The link's baud rate, positive.

    Returns
    -------
    float
        ``|clock / divisor - baud| / baud``; ``inf`` when the divisor is below 4 (the UART
        cannot run).

    Raises
    ------
    TypeError
        If ``baud`` is not an integer.
    ValueError
        If ``clock_mhz`` or ``baud`` is not positive.
    """
    if isinstance(baud, bool) or not isinstance(baud, int):
        raise TypeError(f"baud must be an int, got {type(baud).__name__}")
    if baud <= 0 or not clock_mhz > 0:
        raise ValueError(f"clock_mhz and baud must be positive, got {clock_mhz!r} MHz, {baud} baud")
    hz = clock_mhz * 1e6
    divisor = round(hz / baud)
    if divisor < _MIN_DIVISOR:
        return float("inf")
    return abs(hz / divisor - baud) / baud


def clock_candidates(target: BoardTarget | str, *, baud: int,
                     budget: float = BAUD_ERROR_BUDGET) -> list[float]:
    """Every ``sync`` frequency (MHz) the board can run at with the link within ``budget``.

    The PLL's outputs from the oscillator (:meth:`~sigprop_fpga.boards.pll.PllFamily.outputs`)
    and the oscillator itself, ascending.
    """
    target = get_target(target)
    if not 0 <= budget < 1:
        raise ValueError(f"budget must be a relative error in [0, 1), got {budget!r}")
    freqs = {round(f, 9): f for f in target.pll.outputs(target.clock_in_mhz)}
    freqs.setdefault(round(target.clock_in_mhz, 9), target.clock_in_mhz)
    return sorted(f for f in freqs.values() if baud_error(f, baud) <= budget)


def choose_clock(target: BoardTarget | str, fmax_mhz: float, *, baud: int,
                 budget: float = BAUD_ERROR_BUDGET, below: float | None = None) -> float | None:
    """The highest frequency of :func:`clock_candidates` that is at most ``fmax_mhz`` (and below
    ``below`` when given), or ``None`` if there is none.

    Raises
    ------
    ValueError
        If ``fmax_mhz`` is not a positive number.
    """
    if isinstance(fmax_mhz, bool) or not isinstance(fmax_mhz, (int, float)) or not fmax_mhz > 0:
        raise ValueError(f"fmax_mhz must be a positive number, got {fmax_mhz!r}")
    ok = [f for f in clock_candidates(target, baud=baud, budget=budget)
          if f <= fmax_mhz + 1e-9 and (below is None or f < below - 1e-9)]
    return ok[-1] if ok else None


def _attempt_dir(out_dir: Path, clock_mhz: float) -> Path:
    return out_dir.with_name(out_dir.name + ".clock-search") / f"{clock_mhz:.6f}MHz"


def _adopt(src: Path, out_dir: Path, report: dict) -> dict:
    """Copy the finished build ``src`` to ``out_dir`` (atomically) with ``report`` rewritten to
    the new paths; returns that report."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        shutil.copytree(src, tmp)
        report = dict(report, out_dir=str(out_dir),
                      bitstream=str(out_dir / Path(report["bitstream"]).name),
                      nextpnr_report=str(out_dir / Path(report["nextpnr_report"]).name))
        (tmp / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
        _install(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def search_clock(make_top: Callable[[float], Elaboratable], target: BoardTarget | str,
                 out_dir: str | os.PathLike, *, baud: int, budget: float = BAUD_ERROR_BUDGET,
                 probe_mhz: float | None = None, max_attempts: int = MAX_ATTEMPTS,
                 progress: Callable[[str], None] | None = None, **build_kw: Any) -> dict:
    """Build the top ``make_top(clock_mhz)`` at the highest clock that meets timing (see the
    module docstring) and return the chosen attempt's :func:`~sigprop_fpga.boards.build.build`
    report, copied to ``out_dir``, with ``clock_search`` added.

    Parameters
    ----------
    make_top : callable
        ``make_top(achieved_mhz) -> Elaboratable``: the design for one ``sync`` frequency (the
        UART divisor depends on it).
    target : BoardTarget or str
    out_dir : path
        Where the chosen build ends up; attempts are kept in ``<out_dir>.clock-search/``.
    baud : int
        The host link's baud rate.
    budget : float
        Largest relative baud error (:data:`BAUD_ERROR_BUDGET`).
    probe_mhz : float, optional
        The first attempt's constraint; default ``target.probe_mhz``.
    max_attempts : int
        Most builds (at least 1).
    progress : callable, optional
        Called with one line per step.
    **build_kw
        Passed to :func:`~sigprop_fpga.boards.build.build` (``name``, ``seed``, ``estimated``,
        ``stamp_extra``, ``force``).

    Returns
    -------
    dict
        The report; ``clock_search`` = ``{"requested": "max", "probe_mhz", "baud",
        "baud_error_budget", "seed", "attempts": [{"clock_mhz", "fmax_mhz", "timing_met",
        "bitstream_sha256", "out_dir"}], "chosen_mhz"}``.

    Raises
    ------
    BuildError
        If a tool fails, nextpnr reports no fmax, or no frequency fits the baud budget.
    """
    target = get_target(target)
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int):
        raise TypeError(f"max_attempts must be an int, got {type(max_attempts).__name__}")
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
    out_dir = Path(out_dir).absolute()
    say = progress or (lambda _msg: None)
    probe = float(probe_mhz if probe_mhz is not None else target.probe_mhz)
    clock = choose_clock(target, probe, baud=baud, budget=budget)
    if clock is None:
        raise BuildError(f"clock_mhz: max: no {target.name} clock at or below {probe:g} MHz keeps "
                         f"the {baud} baud link within {budget:.1%}")
    attempts: list[dict] = []
    reports: list[dict] = []
    chasing = False                  # this attempt is the one try above a clock that met timing
    halving = False                  # this attempt is the one try between that clock and a failed try above
    while True:
        say(f"clock_mhz: max: attempt {len(attempts) + 1} at {clock:.4f} MHz"
            + (" (above the first that met timing)" if chasing else "")
            + (" (between the clock that met timing and the try above it)" if halving else ""))
        report = build(make_top(clock), target, _attempt_dir(out_dir, clock), clock_mhz=clock,
                       allow_timing_fail=True, progress=progress, **build_kw)
        fmax = report.get("fmax_mhz")
        if fmax is None:
            raise BuildError(f"clock_mhz: max: nextpnr reported no fmax for the sync clock at "
                             f"{clock:g} MHz ({report['nextpnr_report']})")
        met = bool(report["timing_met"])
        attempts.append({"clock_mhz": clock, "fmax_mhz": fmax, "timing_met": met,
                         "bitstream_sha256": report["bitstream_sha256"], "out_dir": report["out_dir"]})
        reports.append(report)
        if halving or len(attempts) >= max_attempts:
            break
        if chasing:
            if met:
                break
            # the try above failed: once more, halfway (in candidates) between the highest clock
            # that met timing and it; a failed placement says little about the clocks below it
            best = max(a["clock_mhz"] for a in attempts if a["timing_met"])
            tried = [a["clock_mhz"] for a in attempts]
            between = [f for f in clock_candidates(target, baud=baud, budget=budget)
                       if best + 1e-9 < f < clock - 1e-9 and all(abs(f - t) > 1e-9 for t in tried)]
            if not between:
                break
            nxt, chasing, halving = between[(len(between) - 1) // 2], False, True
        elif met:
            # once more at the highest clock at most this fmax that was not tried yet (the same
            # clock gives the same build again)
            tried = [a["clock_mhz"] for a in attempts]
            ok = [f for f in clock_candidates(target, baud=baud, budget=budget)
                  if f <= fmax + 1e-9 and all(abs(f - t) > 1e-9 for t in tried)]
            if not ok or ok[-1] <= clock + 1e-9:
                break
            nxt, chasing = ok[-1], True
        else:
            nxt = choose_clock(target, fmax, baud=baud, budget=budget, below=clock)
            if nxt is None:
                break
        clock = nxt
    met_at = [k for k, a in enumerate(attempts) if a["timing_met"]]
    chosen = max(met_at, key=lambda k: attempts[k]["clock_mhz"]) if met_at else len(attempts) - 1
    final = reports[chosen]
    search = {"requested": MAX_CLOCK, "probe_mhz": probe, "baud": baud, "baud_error_budget": budget,
              "baud_error": baud_error(attempts[chosen]["clock_mhz"], baud),
              "seed": final.get("seed"), "attempts": attempts,
              "chosen_mhz": attempts[chosen]["clock_mhz"]}
    final = dict(final, clock_search=search,
                 clock_mhz={"requested": MAX_CLOCK, "achieved": final["clock_mhz"]["achieved"]})
    final = _adopt(Path(final["out_dir"]), out_dir, final)
    fmaxes = ", ".join(f"{a['fmax_mhz']:.2f}" for a in attempts)
    say(f"clock_mhz: max: {search['chosen_mhz']:.4f} MHz after {len(attempts)} builds "
        f"(fmax {fmaxes}); timing "
        f"{'met' if final['timing_met'] else 'NOT met'}")
    return final
