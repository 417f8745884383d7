"""Which fast paths are off, and the one start-up line that says so."""

from __future__ import annotations

from typing import Any

__all__ = ["fast_paths_off", "report"]

_reported = False


def fast_paths_off(reactor: Any = None) -> dict[str, str]:
    """The fast paths that are off, each with why (empty when all are on).

    ``reactor``: the reactor whose seam to check (none: the seam is not asked about).
    """
    from ..wsmask import PROBLEM as masker_problem
    from . import hpack as upstream_hpack
    from . import twisted as upstream_twisted

    off: dict[str, str] = {}
    if reactor is not None:
        why = upstream_twisted.reactor_seam_problem(reactor)
        if why is not None:
            off["reactor seam"] = why
    why = upstream_twisted.sendfile_problem()
    if why is not None:
        off["sendfile of response files"] = why
    if upstream_hpack.PROBLEM is not None:
        off["HPACK Huffman coding"] = upstream_hpack.PROBLEM
    if masker_problem is not None:
        off["WebSocket small-frame masker"] = masker_problem
    return off


def report(log: Any, reactor: Any = None) -> dict[str, str]:
    """Log, once per process, one line naming every fast path that is off and
    why (nothing when all are on). Returns what :func:`fast_paths_off` found."""
    global _reported
    off = fast_paths_off(reactor)
    if off and not _reported:
        _reported = True
        log.warn(
            "Fast path(s) off, the public upstream API is used instead (slower, same behaviour): {paths}",
            paths="; ".join(f"{name}: {why}" for name, why in off.items()),
        )
    return off
