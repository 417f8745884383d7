"""The fence: every private name of a dependency that twisted-asgi touches
lives in this package, one module per dependency (:mod:`.twisted` with
:mod:`.twisted_imports`, :mod:`.h2`, :mod:`.hpack`, :mod:`.autobahn` with
:mod:`.autobahn_public`), each access commented with the upstream file and the
versions it was read from.

Each fast path built on a private name has a public fallback. A module here
checks, once, whether the private names it needs are present and behave as
read; where not, the public path is used and one log line says so
(:func:`say_off`: at start-up through :mod:`.fastpaths`, or when a protocol is
first used). ``tests/test_upstream_fence.py`` fails on a private access
outside this package, ``tests/test_upstream_drift.py`` on an upstream source
that changed under a copy or an override, and
``tests/test_upstream_fallback.py`` serves over loopback with each private
name gone. docs/upstream.rst lists them all.

Importing this package changes nothing in any dependency.
"""

from __future__ import annotations

from typing import Any

__all__ = ["say_off"]

#: The fast paths a log line has named already: each is named once per process.
_reported: set[str] = set()


def say_off(log: Any, off: dict[str, str]) -> None:
    """Log one line naming each fast path of ``off`` (name -> why) that no
    earlier line named: the start-up line (:mod:`.fastpaths`), and a later one
    where a connection's own check finds a path off (``twisted.tcp_paths``)."""
    new = {name: why for name, why in off.items() if name not in _reported}
    if new:
        _reported.update(new)
        log.warn(
            "Fast path(s) off, the public upstream API is used instead (slower, same behaviour): {paths}",
            paths="; ".join(f"{name}: {why}" for name, why in new.items()),
        )
