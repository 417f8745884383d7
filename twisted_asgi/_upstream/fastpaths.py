"""Which fast paths are off, and the start-up line that says so.

The reactor seam and Twisted's names for the fast paths of TCP connections
(direct writes, sendfile, prompt close) are checked at start-up. The HTTP/2
send seam (h2's connection internals), the HPACK Huffman coding, the
WebSocket protocol hooks and the WebSocket small-frame masker are checked
when HTTP/2 and WebSocket are first used: their libraries (h2 and hpack,
Autobahn) are imported only then, so a server that never serves them never
pays for importing them.
"""

from __future__ import annotations

from typing import Any

from . import say_off

__all__ = ["fast_paths_off", "report"]


def fast_paths_off(reactor: Any = None, http2: bool = True, websocket: bool = True) -> dict[str, str]:
    """The fast paths that are off, each with why (empty when all are on).

    ``reactor``: the reactor whose seam to check, with Twisted's other names
    (those of the TCP fast paths) at the same time (none: Twisted is not asked
    about).
    ``http2``, ``websocket``: whether to check (and so import) hpack and Autobahn.
    """
    off: dict[str, str] = {}
    if reactor is not None:
        from . import twisted as upstream_twisted

        why = upstream_twisted.reactor_seam_problem(reactor)
        if why is not None:
            off["reactor seam"] = why
        # Direct writes, sendfile and the prompt close of TCP connections.
        off.update(upstream_twisted.tcp_paths_off(reactor))
    if http2:
        from . import h2 as upstream_h2
        from . import hpack as upstream_hpack

        if upstream_h2.PROBLEM is not None:
            off["HTTP/2 send seam"] = upstream_h2.PROBLEM

        if upstream_hpack.PROBLEM is not None:
            off["HPACK Huffman coding"] = upstream_hpack.PROBLEM
    if websocket:
        from ..wsmask import PROBLEM as masker_problem
        from . import autobahn as upstream_autobahn

        why = upstream_autobahn.problem()
        if why is not None:
            off["WebSocket protocol hooks"] = (
                f"{why}; so Autobahn's public API runs the framing (no whole-small-frame fast path)"
            )
        if masker_problem is not None:
            off["WebSocket small-frame masker"] = masker_problem
    return off


def report(log: Any, reactor: Any = None, http2: bool = False, websocket: bool = False) -> dict[str, str]:
    """Log one line naming every fast path asked about that is off, and why,
    unless an earlier line named it (nothing when all are on). Returns what
    :func:`fast_paths_off` found."""
    off = fast_paths_off(reactor, http2, websocket)
    say_off(log, off)
    return off
