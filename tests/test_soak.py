"""A short round of the soak (tests/soak.py) in the normal suite: mixed HTTP/1.1,
h2c and WebSocket traffic with random client resets for 10 s, after which the
server's file descriptors are back at their baseline, its RSS is within 16 MiB
of it, its log holds no error, and it still answers. ``tox -e soak`` runs the
long version."""

from __future__ import annotations

import pytest

from tests.soak import problems, soak


@pytest.mark.timeout(180)
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_short_soak_returns_to_baseline(loop):
    """Ten seconds of mixed traffic with aborts leave no fd, memory or log trace, on
    either event loop (on uvloop this hung the server before the reactor checked
    sockets for a pending error after each read: uvloop issue 552)."""
    result = soak(duration=10.0, seed=7, server_args=("--loop", loop))
    assert problems(result, rss_slack_kib=16 * 1024) == []
    assert sum(result.tally.aborted.values()) > 0  # the aborts really happened
