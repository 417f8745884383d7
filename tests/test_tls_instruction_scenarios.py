"""benchmarks/instructions.py's kept-connection TLS scenarios (``h2-tls``, ``h1-tls``):
their load (h2load over ``https://``, ALPN h2 or http/1.1, 8 kept connections)
completes against a real server over loopback, and a load that does not complete
is an error, not a figure. (Counting them under callgrind is the smoke test's h1
run's code path: tests/test_benchmarks_smoke.py.)

Source: issue 20 target 1 (HTTP/2 CPU per request over TLS).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.deploy import make_certs, serving

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture
def instructions():
    sys.path.insert(0, str(BENCH))
    try:
        import instructions as module

        yield module
    finally:
        sys.path.remove(str(BENCH))


def test_the_tls_scenarios_are_kept_connections_over_tls(instructions):
    for name in ("h2-tls", "h1-tls"):
        load = instructions.LOADS[name]
        assert load.tls and load.unit == "request" and load.large > load.small
    # The earlier scenarios keep their figures' definitions.
    assert [(n, instructions.LOADS[n].small, instructions.LOADS[n].large) for n in ("h1", "h2c", "tls13-new")] == [
        ("h1", 400, 4400),
        ("h2c", 400, 4400),
        ("tls13-new", 40, 340),
    ]


def test_the_tls_loads_complete_over_loopback(instructions, tmp_path):
    certs = make_certs(tmp_path)
    endpoint = f"ssl:port=0:interface=127.0.0.1:privateKey={certs['key']}:certKey={certs['cert']}"
    with serving("tests.apps:hello", endpoint=endpoint) as server:
        instructions.DRIVERS["h2-tls"](server.port, 64)
        instructions.DRIVERS["h1-tls"](server.port, 64)
    # Against a cleartext server the TLS load fails: no figure from a load that did not run.
    with serving("tests.apps:hello") as plain, pytest.raises(RuntimeError, match="did not complete"):
        instructions.DRIVERS["h2-tls"](plain.port, 16)
