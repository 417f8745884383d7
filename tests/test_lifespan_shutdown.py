"""Lifespan startup/shutdown and graceful shutdown, end to end."""

from __future__ import annotations

import re
import signal
import socket
import time

import pytest

from tests.serving import recv_response, start_server


def test_lifespan_state_reaches_requests():
    """State set during lifespan startup is in every request scope."""
    server = start_server("tests.apps:scope_echo", "--lifespan", "on")
    try:
        with server.connect() as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            assert b'"state": {"greeting": "hello"}' in recv_response(sock)[2]
    finally:
        assert server.stop() == 0


def test_lifespan_startup_failed_exits_non_zero():
    """lifespan.startup.failed stops the server with exit 1 and the app's message, before listening."""
    for command in ("module", "twistd"):
        server = start_server("tests.apps:lifespan_failed", command=command, wait=False)
        code = server.wait(30)
        output = server.read_output(0.5)
        assert code == 1, output
        assert "database unreachable" in output
        assert "Listening on" not in output


def test_lifespan_on_with_raising_app_exits_non_zero():
    """Under --lifespan on, an app that raises on the lifespan scope is fatal."""
    server = start_server("tests.apps:lifespan_raises", "--lifespan", "on", wait=False)
    assert server.wait(30) == 1
    assert "Django can only handle ASGI/HTTP connections, not lifespan." in server.read_output(0.5)


def test_lifespan_auto_with_raising_app_serves():
    """Under --lifespan auto an app that raises on lifespan is logged once at info and served."""
    server = start_server("tests.apps:lifespan_raises")
    try:
        with server.connect() as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            assert recv_response(sock)[2] == b"Hello, world!"
        output = server.read_output(0.2)
        assert output.count("lifespan' protocol appears unsupported") == 1
        assert "Traceback" not in output
    finally:
        assert server.stop() == 0


def test_lifespan_off_never_calls_app():
    """--lifespan off never sends the lifespan scope (the raising app would otherwise log)."""
    server = start_server("tests.apps:lifespan_raises", "--lifespan", "off")
    try:
        assert "lifespan" not in server.read_output(0.2).lower().replace("--lifespan", "")
    finally:
        server.stop()


def test_graceful_shutdown_lets_inflight_request_finish():
    """SIGTERM stops accepting, lets an in-flight streaming response finish, then exits 0."""
    server = start_server("tests.apps:echo", "--graceful-timeout", "20")
    sock = server.connect()
    try:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        sock.settimeout(10)
        got = b""
        while b"first" not in got:
            got += sock.recv(65536)
        server.proc.send_signal(signal.SIGTERM)
        server.wait_for_output("Waiting up to 20.0s for 1 connection(s)")
        # New connections are refused while draining.
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((server.host, server.port), timeout=1).close()
            except OSError:
                break
            assert time.monotonic() < deadline, "listener still accepting during drain"
        sock.sendall(b"6\r\nsecond\r\n0\r\n\r\n")
        while not got.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            assert chunk, got
            got += chunk
        assert b"second" in got
        # The head went out before SIGTERM, so the close comes after the response.
        assert sock.recv(100) == b""
        assert server.wait(20) == 0
    finally:
        sock.close()
        server.stop()


def test_graceful_timeout_aborts_stuck_requests():
    """A request still running when the graceful timeout expires is cut off; exit stays 0."""
    server = start_server("tests.apps:misbehave", "--graceful-timeout", "0.5")
    sock = server.connect()
    try:
        sock.sendall(b"GET /hang HTTP/1.1\r\nHost: a\r\n\r\n")
        server.stop(signal.SIGTERM)
        assert server.proc.returncode == 0
        assert "Graceful shutdown timed out" in server.read_output(0.1)
    finally:
        sock.close()


def test_idle_keep_alive_connections_close_at_once_on_shutdown():
    """Idle keep-alive connections do not hold up shutdown."""
    server = start_server("tests.apps:hello", "--graceful-timeout", "30")
    sock = server.connect()
    try:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        recv_response(sock)
        started = time.monotonic()
        assert server.stop() == 0
        assert time.monotonic() - started < 10
        assert sock.recv(10) == b""
    finally:
        sock.close()
    # Source: issue 16, item 5 (operator test): an idle connection is not
    # "waited for"; the log says nothing of waiting.
    assert "Waiting up to" not in "".join(server.output)


def test_graceful_timeout_names_what_happened_to_the_app():
    """An app still running when the graceful timeout runs out is cancelled with a
    line that says so, not one claiming its client left.

    Source: issue 16, item 4 (the final log said "ASGI app still running 10.0s
    after its client left" although the client never left)."""
    server = start_server("tests.apps:misbehave", "--graceful-timeout", "0.5")
    sock = server.connect()
    try:
        sock.sendall(b"GET /hang HTTP/1.1\r\nHost: a\r\n\r\n")
        server.read_output(0.3)
        server.stop(signal.SIGTERM)
        output = server.read_output(0.1)
    finally:
        sock.close()
    assert "Waiting up to 0.5s for 1 connection(s) with work in flight" in output, output
    assert "its client left" not in output, output
    assert "ASGI app still running when the graceful shutdown timeout (0.5s) ran out; cancelling it" in output, output


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_second_signal_exits_at_once(sig):
    """A second SIGINT (or SIGTERM) while the server drains exits at once with one
    log line, instead of waiting out the graceful timeout; no traceback.

    Source: issue 16, item 4 (operator test: a second Ctrl-C logged a critical
    ReactorNotRunning traceback and the full 25 s still ran)."""
    server = start_server("tests.apps:misbehave", "--graceful-timeout", "60")
    sock = server.connect()
    try:
        sock.sendall(b"GET /hang HTTP/1.1\r\nHost: a\r\n\r\n")
        server.read_output(0.3)
        server.proc.send_signal(sig)
        server.wait_for_output("Waiting up to 60.0s for 1 connection(s)")
        started = time.monotonic()
        server.proc.send_signal(sig)
        code = server.proc.wait(10)
        assert time.monotonic() - started < 5
        output = server.read_output(0.5)
    finally:
        sock.close()
        server.stop()
    assert code == 1
    name = signal.Signals(sig).name
    assert f"Second {name} during graceful shutdown: exiting now, 1 connection(s) cut off" in output, output
    assert "Traceback" not in output and "ReactorNotRunning" not in output


def test_keep_alive_timeout_closes_idle_connection():
    """An idle keep-alive connection is closed after --timeout-keep-alive."""
    server = start_server("tests.apps:hello", "--timeout-keep-alive", "0.3")
    try:
        with server.connect() as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            recv_response(sock)
            sock.settimeout(10)
            started = time.monotonic()
            assert sock.recv(10) == b""
            assert time.monotonic() - started < 5
    finally:
        server.stop()


def test_slowloris_head_timeout_408():
    """A request head that trickles in gets 408 after --timeout-request-head."""
    server = start_server("tests.apps:hello", "--timeout-request-head", "0.5")
    try:
        with server.connect() as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ")
            sock.settimeout(10)
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            assert data.startswith(b"HTTP/1.1 408 ")
    finally:
        server.stop()


def test_response_timeout_503():
    """--timeout-response turns an app that never answers into a 503."""
    server = start_server("tests.apps:misbehave", "--timeout-response", "0.5")
    try:
        with server.connect() as sock:
            sock.sendall(b"GET /hang HTTP/1.1\r\nHost: a\r\n\r\n")
            status, _headers, _body = recv_response(sock)
            assert status.startswith(b"HTTP/1.1 503 ")
    finally:
        server.stop()


def test_requests_per_connection_limit():
    """--limit-requests-per-connection closes the connection after that many responses."""
    server = start_server("tests.apps:hello", "--limit-requests-per-connection", "2")
    try:
        with server.connect() as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n" * 3)
            first = recv_response(sock)
            second = recv_response(sock)
            assert b"connection" not in first[1]
            assert second[1][b"connection"] == b"close"
            sock.settimeout(10)
            assert sock.recv(100) == b""
    finally:
        server.stop()


def test_connection_limit_answers_503_and_logs_once():
    """Beyond --limit-concurrency a new connection gets 503 and is closed, the
    episode is logged once however many are refused, and a freed slot serves again."""
    server = start_server("tests.apps:hello", "--limit-concurrency", "2")
    held = [server.connect(), server.connect()]
    try:
        for sock in held:  # both are really open and served
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            assert recv_response(sock)[2] == b"Hello, world!"
        for _ in range(5):
            with server.connect() as sock:
                sock.settimeout(10)
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
            assert data.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), data
            assert b"connection: close" in data
        held.pop().close()
        deadline = time.monotonic() + 10
        while True:  # the server sees the close on its next loop pass
            with server.connect() as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                status = recv_response(sock)[0]
            if status == b"HTTP/1.1 200 OK" or time.monotonic() > deadline:
                break
        assert status == b"HTTP/1.1 200 OK"
        output = server.read_output(0.2)
        assert output.count("Connection limit (2) reached") == 1
        refused = re.search(r"(\d+) connections were refused", output)
        assert refused is not None and int(refused.group(1)) >= 5, output
    finally:
        for sock in held:
            sock.close()
        server.stop()


def test_shutdown_waits_for_work_after_the_response():
    """An app call that goes on after its response (a background task) is waited
    for on SIGTERM, within the graceful timeout, before the server exits 0."""
    server = start_server("tests.apps:background", "--graceful-timeout", "10")
    try:
        with server.connect() as sock:
            sock.sendall(b"GET /?s=1 HTTP/1.1\r\nHost: a\r\n\r\n")
            assert recv_response(sock)[2] == b"ok"
        server.proc.send_signal(signal.SIGTERM)
        assert server.wait(20) == 0
        output = server.read_output()
        assert "BACKGROUND DONE" in output
        assert "Waiting up to" in output and "application call(s) to return" in output
    finally:
        server.stop()


def test_shutdown_cancels_work_past_the_graceful_timeout():
    """Work after the response that outlasts the graceful timeout is cancelled,
    logged once, and the server still exits 0 soon after the timeout."""
    server = start_server("tests.apps:background", "--graceful-timeout", "1")
    try:
        with server.connect() as sock:
            sock.sendall(b"GET /?s=60 HTTP/1.1\r\nHost: a\r\n\r\n")
            assert recv_response(sock)[2] == b"ok"
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert server.wait(20) == 0
        assert time.monotonic() - started < 8
        output = server.read_output()
        assert "BACKGROUND CANCELLED" in output and "BACKGROUND DONE" not in output
        assert output.count("Cancelling 1 application call(s) still running at shutdown") == 1
    finally:
        server.stop()
