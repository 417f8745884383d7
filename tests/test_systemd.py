"""Inherited listening sockets: systemd socket activation (``LISTEN_FDS`` /
``LISTEN_PID`` and the socket as descriptor 3, as systemd passes them) with
the unit the deployment guide shows (``docs/examples/twisted-asgi.service``),
and ``--fd N``.

The test binds the socket itself, as systemd's ``.socket`` unit would, so a
connection made before the server starts is queued, not refused.
"""

from __future__ import annotations

import configparser
import shlex
import socket
import sys
from pathlib import Path

import pytest

from tests.deploy import DOCS, closing, get_json, start_command, systemd_argv, wait_for
from tests.serving import TWISTD, recv_response

APP = "tests.deploy:app"


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(DOCS / name)
    return parser


@pytest.fixture
def listening():
    """A listening TCP socket on 127.0.0.1, as the guide's .socket unit makes it (ListenStream=127.0.0.1:PORT)."""
    socket_unit = unit("twisted-asgi.socket")
    host, _, _port = socket_unit["Socket"]["ListenStream"].rpartition(":")
    sock = socket.socket()
    sock.bind((host, 0))
    sock.listen(128)
    yield sock
    sock.close()


def guide_command(workers: str | None = None) -> list[str]:
    """The guide's ExecStart, with the test's twistd and app (and worker count)."""
    argv = shlex.split(unit("twisted-asgi.service")["Service"]["ExecStart"])
    assert Path(argv[0]).name == "twistd"
    argv[0] = TWISTD
    argv[argv.index("myproject.asgi:application")] = APP
    if workers is None:
        index = argv.index("--workers")
        del argv[index : index + 2]
    else:
        argv[argv.index("--workers") + 1] = workers
    return argv


def test_socket_activation_with_the_guide_unit(listening):
    """twistd started as the guide's unit, with the socket systemd would pass, serves on it;
    a connection queued before start is answered; SIGTERM exits 0."""
    port = listening.getsockname()[1]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as early:
        early.sendall(b"GET /scope HTTP/1.1\r\nHost: x\r\n\r\n")
        server = start_command(systemd_argv(guide_command(), listening.fileno()), pass_fds=(listening.fileno(),))
        status, _headers, _body = recv_response(early)
    try:
        assert server.port == port
        assert b" 200 " in status
        scope = get_json("127.0.0.1", port)
        assert scope["server"] == ["127.0.0.1", port]
        assert "Listening on systemd:domain=INET:index=0" in server.read_output()
    finally:
        code = closing(server)
    assert code == 0


def test_socket_activation_with_workers(listening):
    """With --workers 2 as in the guide, both workers serve the systemd socket."""
    port = listening.getsockname()[1]
    server = start_command(systemd_argv(guide_command("2"), listening.fileno()), pass_fds=(listening.fileno(),))
    try:
        assert server.port == port
        wait_for(lambda: server.read_output(0.05).count("is serving") >= 2, 30, "two workers")
        assert get_json("127.0.0.1", port)["pid"] != server.proc.pid
    finally:
        code = closing(server)
    assert code == 0


def test_socket_meant_for_another_process_is_refused(listening):
    """LISTEN_PID naming another process (sd_listen_fds(3)) means no socket: a clear error and a non-zero exit."""
    argv = guide_command()
    env = {"LISTEN_PID": "1", "LISTEN_FDS": "1"}
    import subprocess

    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=60, pass_fds=(listening.fileno(),), env={**_env(), **env}
    )
    assert result.returncode != 0
    assert "systemd:domain=INET:index=0: systemd passed no such socket" in result.stdout + result.stderr


def _env() -> dict[str, str]:
    import os

    from tests.serving import ROOT

    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    return env


def test_fd_option(listening):
    """--fd N serves on an inherited, already listening socket (one started by a supervisor such as circus)."""
    fd = listening.fileno()
    server = start_command([sys.executable, "-m", "twisted_asgi", "--fd", str(fd), APP], pass_fds=(fd,))
    try:
        port = listening.getsockname()[1]
        assert server.port == port
        assert get_json("127.0.0.1", port)["path"] == "/scope"
    finally:
        code = closing(server)
    assert code == 0
