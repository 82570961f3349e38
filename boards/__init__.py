"""Board targets and the board build flow (yosys, nextpnr, pack) on amaranth-boards.

Boards register themselves in :data:`BOARDS` when their module is imported;
:func:`get_target` looks one up by name. To add a board, write one module
like ``boards/icebreaker.py`` (a :class:`BoardTarget` passed to
:func:`register`) and add its import to :data:`_BOARD_MODULES`.
"""

from __future__ import annotations

import importlib

from .targets import BoardTarget

__all__ = ["BOARDS", "BoardTarget", "register", "get_target", "board_names"]

#: Board name -> target, filled by :func:`register`.
BOARDS: dict[str, BoardTarget] = {}

#: Modules (relative to this package) that define boards.
_BOARD_MODULES = ("icebreaker", "ulx3s")


def register(target: BoardTarget) -> BoardTarget:
    """Add ``target`` to :data:`BOARDS` and return it."""
    if target.name in BOARDS and BOARDS[target.name] is not target:
        raise ValueError(f"board {target.name!r} is already registered")
    BOARDS[target.name] = target
    return target


def _load_all() -> None:
    for mod in _BOARD_MODULES:
        importlib.import_module(f"{__name__}.{mod}")


def board_names() -> list[str]:
    """Names of all known boards, sorted."""
    _load_all()
    return sorted(BOARDS)


def get_target(name: str | BoardTarget) -> BoardTarget:
    """Return the target called ``name`` (a :class:`BoardTarget` is returned as is).

    Raises
    ------
    KeyError
        With the list of known boards, if ``name`` is unknown.
    """
    if isinstance(name, BoardTarget):
        return name
    _load_all()
    try:
        return BOARDS[name]
    except KeyError:
        raise KeyError(f"unknown board {name!r}; known boards: {', '.join(sorted(BOARDS))}") \
            from None


# Re-exports (imported last: these modules use get_target from here). The build function is
# re-exported as `build_board`: a package attribute `build` would shadow the submodule
# `sigprop_fpga.boards.build` (and break `monkeypatch.setattr` on it).
from .fit import FitError, fit_check, require_fit  # noqa: E402
from .build import BuildError, format_report  # noqa: E402
from .build import build as build_board  # noqa: E402

__all__ += ["FitError", "fit_check", "require_fit", "BuildError", "build_board", "format_report"]
