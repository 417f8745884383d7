"""The command line: twistd asgi and python -m twisted_asgi, as a user runs them."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.deploy import wait_for
from tests.serving import ROOT, TWISTD, recv_response, start_server


def run_cli(*args: str, timeout: float = 30, program: str = sys.executable) -> subprocess.CompletedProcess:
    """Run ``program *args`` from the checkout; return its result."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [program, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT, stdin=subprocess.DEVNULL
    )


def run_twistd(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run the twistd script with ``args``."""
    return run_cli(*args, timeout=timeout, program=TWISTD)


def get(server, path: str = "/") -> tuple[bytes, dict, bytes]:
    with server.connect() as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
        return recv_response(sock)


def test_twistd_help_documents_options():
    """twistd asgi --help lists the listener, lifespan and limit options."""
    result = run_twistd("asgi", "--help")
    assert result.returncode == 0, result.stderr
    for flag in (
        "--endpoint",
        "--bind",
        "--port",
        "--unix-socket",
        "--fd",
        "--root-path",
        "--lifespan",
        "--access-log",
        "--graceful-timeout",
        "--timeout-keep-alive",
        "--limit-request-body",
        "--loop",
    ):
        assert flag in result.stdout, flag


@pytest.mark.parametrize("program", ["twistd asgi", "python -m twisted_asgi", "twisted-asgi"])
def test_version_names_twisted_asgi_and_what_it_runs_on(program):
    """--version prints twisted-asgi's version first, then Twisted's, h2's, Autobahn's,
    pyOpenSSL's and the event loop's, for each way of running the server.

    Source: issue 16, item 14 (newcomer test: --version printed only Twisted's version)."""
    import twisted_asgi

    if program == "twistd asgi":
        result = run_twistd("asgi", "--version")
    elif program == "twisted-asgi":
        result = run_cli("--version", program=str(Path(TWISTD).parent / "twisted-asgi"))
    else:
        result = run_cli("-m", "twisted_asgi", "--version")
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    assert first == f"twisted-asgi {twisted_asgi.__version__}"
    for name in ("Twisted ", "h2 ", "autobahn ", "pyOpenSSL ", "uvloop ", "Python "):
        assert name in second, second


def test_help_is_grouped_short_and_names_only_flags():
    """--help groups the options (listeners first, then application, protocols,
    limits, timeouts, proxies, workers, logging), keeps each text to what a user
    needs (no CVE references: they are in docs/cli.rst) and names no setting that
    is not a flag; python -m twisted_asgi --help starts with a Usage line.

    Source: issue 16, items 15 and 16."""
    result = run_cli("-m", "twisted_asgi", "--help")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert text.startswith("Usage: python -m twisted_asgi [options] module:application\n")
    titles = [
        "Listeners:",
        "Application:",
        "Protocols:",
        "Limits:",
        "Timeouts:",
        "Behind proxies:",
        "Workers:",
        "Logging and metrics:",
    ]
    positions = [text.index(f"\n{title}\n") for title in titles]
    assert positions == sorted(positions)
    listeners = text[positions[0] : positions[1]]
    assert listeners.index("--endpoint=ENDPOINT") < listeners.index("--port=PORT") < listeners.index("--backlog")
    assert "CVE-" not in text
    assert not re.search(r"\b(limit|timeout)_[a-z_]+", text), re.findall(r"\b(?:limit|timeout)_[a-z_]+", text)
    assert "repeatable (tcp:," in " ".join(text.split())  # no code indentation leaking into help
    twistd = run_twistd("asgi", "--help")
    assert twistd.returncode == 0 and "\nListeners:\n" in twistd.stdout
    assert "HTTP/1.1, HTTP/2, WebSocket, TLS" in " ".join(run_twistd("--help").stdout.split())


def test_help_into_a_closed_pipe_is_quiet():
    """``twisted-asgi --help | head -2`` prints two lines and no BrokenPipeError.

    Source: issue 16, item 15."""
    script = str(Path(TWISTD).parent / "twisted-asgi")
    result = subprocess.run(
        ["bash", "-c", f'"{script}" --help | head -2'],
        capture_output=True,
        text=True,
        timeout=30,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        cwd=ROOT,
    )
    assert result.stdout.startswith("Usage: ")
    assert len(result.stdout.splitlines()) == 2
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr


def test_twistd_serves_without_reactor_flag():
    """twistd -n asgi app serves on the asyncio reactor with no --reactor flag."""
    server = start_server("tests.apps:hello", command="twistd")
    try:
        status, _headers, body = get(server)
        assert status == b"HTTP/1.1 200 OK" and body == b"Hello, world!"
    finally:
        assert server.stop() == 0


def test_twistd_with_asyncio_reactor_flag():
    """twistd --reactor=asyncio asgi app works too."""
    argv = [TWISTD, "--reactor=asyncio", "-n", "asgi", "-e", "tcp:port=0:interface=127.0.0.1", "tests.apps:hello"]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT))
    )
    from tests.serving import _LISTEN, Server

    server = Server(proc, None, "127.0.0.1")
    try:
        text = server.wait_for_output("Listening on")
        server.port = int(_LISTEN.search(text).group(3))
        assert get(server)[2] == b"Hello, world!"
    finally:
        assert server.stop() == 0


def test_other_reactor_is_a_clear_error():
    """Any reactor but asyncio gets a one-line error and a non-zero exit."""
    result = run_twistd("--reactor=select", "-n", "asgi", "tests.apps:hello")
    assert result.returncode != 0
    assert "asyncio reactor" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("app", "needle"),
    [
        ("no_such_module_xyz:app", "cannot import module 'no_such_module_xyz'"),
        ("tests.apps:nope", "has no attribute 'nope'"),
        ("tests.apps:NOT_CALLABLE", "'tests.apps:NOT_CALLABLE' is not callable"),
    ],
)
def test_bad_app_path_one_line_error(app, needle):
    """An app path that does not import gives one line naming the problem, exit 1."""
    for runner in (["-m", "twisted_asgi"], ["-n", "asgi"]):
        result = (run_cli if runner[0] == "-m" else run_twistd)(*runner, app)
        assert result.returncode == 1, result
        assert needle in result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_bad_endpoint_one_line_error():
    """A malformed endpoint string is a usage error: one line naming it (and a
    pointer to --help), exit 2, found while the options are parsed."""
    for runner in (["-m", "twisted_asgi"], ["-n", "asgi"]):
        result = (run_cli if runner[0] == "-m" else run_twistd)(*runner, "-e", "bogus:thing", "tests.apps:hello")
        assert result.returncode == 2
        assert "bad endpoint 'bogus:thing'" in result.stderr
        assert "Traceback" not in result.stderr


def test_port_in_use_exits_non_zero():
    """A port that cannot be bound stops the server with exit code 1 and a clear message."""
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    try:
        for runner in (["-m", "twisted_asgi"], ["-n", "asgi"]):
            result = (run_cli if runner[0] == "-m" else run_twistd)(*runner, "-p", str(port), "tests.apps:hello")
            assert result.returncode == 1, (result.stdout, result.stderr)
            text = result.stdout + result.stderr
            assert f"Cannot listen on tcp:port={port}:interface=127.0.0.1: Address already in use" in text, text
            assert "Couldn't listen" not in text  # the address said once (fresh-clone check)
    finally:
        blocker.close()


def test_several_listeners_and_shorthands(tmp_path):
    """-e may repeat and mixes with -b/-p and -u; every listener serves."""
    sock_path = tmp_path / "s.sock"
    server = start_server("tests.apps:hello", "-b", "127.0.0.1", "-p", "0", "-u", str(sock_path))
    try:
        server.wait_for_output(str(sock_path))
        text = server.read_output(0.2)
        assert text.count("Listening on") == 3
        ports = [p for (_d, _h, p) in server.addresses if p]
        assert len(ports) >= 1
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(sock_path))
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            assert recv_response(sock)[2] == b"Hello, world!"
    finally:
        server.stop()


def test_ipv6_bind():
    """-b ::1 becomes a tcp6 endpoint."""
    server = start_server("tests.apps:hello", "-b", "::1", "-p", "0", endpoint=None)
    try:
        with socket.create_connection(("::1", server.port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            assert recv_response(sock)[2] == b"Hello, world!"
    finally:
        server.stop()


def test_fd_listener():
    """--fd serves on an inherited listening socket."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    fd = listener.fileno()
    os.set_inheritable(fd, True)
    argv = [sys.executable, "-m", "twisted_asgi", "--fd", str(fd), "tests.apps:hello"]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        pass_fds=(fd,),
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    from tests.serving import Server

    server = Server(proc, port, "127.0.0.1")
    try:
        server.wait_for_output("Listening on")
        listener.close()
        assert get(server)[2] == b"Hello, world!"
    finally:
        server.stop()


def test_daemon_mode_pidfile_logfile_sigterm(tmp_path):
    """twistd asgi without -n daemonises, writes pid and log files, and stops cleanly on SIGTERM."""
    pidfile = tmp_path / "twistd.pid"
    logfile = tmp_path / "twistd.log"
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    result = run_twistd(
        "--pidfile", str(pidfile), "--logfile", str(logfile), "asgi", "-p", str(port), "tests.apps:hello"
    )
    assert result.returncode == 0, result.stderr
    deadline = time.monotonic() + 20
    while not (logfile.exists() and "Listening on" in logfile.read_text()):
        assert time.monotonic() < deadline, logfile.read_text() if logfile.exists() else "no log"
        time.sleep(0.05)
    pid = int(pidfile.read_text())
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            assert recv_response(sock)[2] == b"Hello, world!"
    finally:
        os.kill(pid, signal.SIGTERM)
    while pidfile.exists():
        assert time.monotonic() < deadline + 20, "daemon did not stop"
        time.sleep(0.05)
    assert "Received SIGTERM" in logfile.read_text()


@pytest.mark.parametrize(
    ("args", "loop"),
    [
        (("--loop", "uvloop"), "uvloop"),
        (("--loop", "asyncio"), "asyncio"),
        ((), "uvloop"),
        (("--loop", "auto"), "uvloop"),
    ],
)
def test_loop_option(args, loop):
    """--loop picks the event loop under the reactor; the default, auto, takes uvloop (a dependency)
    when it can be imported."""
    server = start_server("tests.apps:hello", *args)
    try:
        assert get(server)[2] == b"Hello, world!"
        assert f"asyncio reactor over the {loop} event loop" in server.read_output(0.1)
    finally:
        assert server.stop() == 0


def test_loop_auto_without_uvloop_is_asyncio(tmp_path):
    """Where uvloop cannot be imported, --loop auto runs asyncio's own loop."""
    (tmp_path / "uvloop.py").write_text("raise ImportError('no uvloop here')\n")
    server = start_server("tests.apps:hello", "--loop", "auto", env={"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"})
    try:
        assert get(server)[2] == b"Hello, world!"
        assert "asyncio reactor over the asyncio event loop" in server.read_output(0.1)
    finally:
        assert server.stop() == 0


def test_access_log_format(tmp_path):
    """The access log has one combined-format line per request, control characters escaped."""
    log_path = tmp_path / "access.log"
    server = start_server("tests.apps:hello", "--access-log", str(log_path))
    try:
        with server.connect() as sock:
            sock.sendall(
                b'GET /a%0Ab?q="x" HTTP/1.1\r\nHost: a\r\nUser-Agent: tester\t"x"\xff\r\nReferer: http://r/\r\n\r\n'
            )
            recv_response(sock)
    finally:
        server.stop()
    lines = log_path.read_text().splitlines()
    assert len(lines) == 1
    line = lines[0]
    assert line.startswith("127.0.0.1 - - [")
    assert '"GET /a%0Ab?q=\\x22x\\x22 HTTP/1.1" 200 13 "http://r/" "tester\\x09\\x22x\\x22\\xff" ' in line
    float(line.rsplit(" ", 1)[1])


def test_access_log_of_responses_the_server_writes_itself(tmp_path):
    """A response the server writes itself (413 refused on Content-Length, 400) is
    logged with its body bytes only, as an app's response is, and with the request
    line and user agent whenever the request's head was read.

    Source: issue 16, item 10 (a 413 logged as '"-"' without user agent, and head
    plus body counted as body bytes)."""
    log_path = tmp_path / "access.log"
    server = start_server("tests.apps:echo", "--access-log", str(log_path), "--limit-request-body", "10")
    try:
        bodies = []
        for request in (
            b"POST /upload?x=1 HTTP/1.1\r\nHost: a\r\nUser-Agent: big-uploader\r\nContent-Length: 11\r\n\r\n",
            b"GET /bad HTTP/1.1\r\nHost: a\r\nHost: b\r\nUser-Agent: twice\r\n\r\n",
            b"POST /chunked HTTP/1.1\r\nHost: a\r\nUser-Agent: chunky\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"14\r\n" + b"x" * 20 + b"\r\n",
            b"POST /both HTTP/1.1\r\nHost: a\r\nUser-Agent: smuggler\r\nContent-Length: 3\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            b"GET /huge HTTP/1.1\r\nHost: a\r\nUser-Agent: header-stuffer\r\nX-Big: " + b"y" * 20000 + b"\r\n\r\n",
        ):
            with server.connect() as sock:
                sock.sendall(request)
                status, _headers, body = recv_response(sock)
                bodies.append((status, body))
    finally:
        server.stop()
    lines = log_path.read_text().splitlines()
    assert len(lines) == 5, lines
    expected = [
        ('"POST /upload?x=1 HTTP/1.1" 413', "big-uploader"),
        ('"GET /bad HTTP/1.1" 400', "twice"),
        ('"POST /chunked HTTP/1.1" 413', "chunky"),  # refused in its body
        ('"POST /both HTTP/1.1" 400', "smuggler"),  # refused by llhttp
        ('"GET /huge HTTP/1.1" 431', "header-stuffer"),  # refused midway through its head
    ]
    for line, (status, body), (start, agent) in zip(lines, bodies, expected, strict=True):
        assert status.startswith(b"HTTP/1.1 " + start.rsplit(" ", 1)[1].encode())
        assert f'{start} {len(body)} "-" "{agent}"' in line, line


def test_sighup_reopens_the_access_log(tmp_path):
    """After logrotate moved the access log away, SIGHUP reopens it by its path:
    later lines go to a new file, the moved one keeps what it had.

    Source: issue 16 (fresh-clone check: lines kept going to the rotated file)."""
    log_path = tmp_path / "access.log"
    server = start_server("tests.apps:hello", "--access-log", str(log_path))
    try:
        get(server, "/before")
        wait_for(lambda: log_path.exists() and "/before" in log_path.read_text(), 10, "the first line")
        log_path.rename(tmp_path / "access.log.1")
        server.proc.send_signal(signal.SIGHUP)
        server.wait_for_output("SIGHUP: reopened the access log")
        get(server, "/after")
        wait_for(lambda: log_path.exists() and "/after" in log_path.read_text(), 10, "the line in the new file")
    finally:
        assert server.stop() == 0
    assert "/after" not in (tmp_path / "access.log.1").read_text()
    assert "/before" not in log_path.read_text()


def test_sigint_and_sigterm_exit_zero():
    """SIGINT and SIGTERM both stop python -m twisted_asgi with exit code 0."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        server = start_server("tests.apps:hello")
        assert get(server)[2] == b"Hello, world!"
        assert server.stop(sig) == 0


@pytest.mark.parametrize("command", ["module", "twistd"])
def test_sighup_never_stops_a_single_process_server(command, tmp_path):
    """SIGHUP to a single-process server without TLS listeners logs that there is
    nothing to reload; the server keeps serving, and a request in flight at the
    time is answered.

    Source: issue 16, item 1 (operator test: SIGHUP, systemd's ExecReload, made
    a plain server exit 129 with no log line and an empty reply)."""
    import threading

    from tests.deploy import http_get, wait_for

    server = start_server("tests.deploy:app", command=command)
    try:
        answer: list = []
        worker = threading.Thread(
            target=lambda: answer.append(http_get(server.host, server.port, f"/hold?dir={tmp_path}", timeout=30))
        )
        worker.start()
        wait_for(lambda: list(tmp_path.glob("started-*")), 10, "the held request to start")
        server.proc.send_signal(signal.SIGHUP)
        server.wait_for_output("SIGHUP: nothing to reload")
        (tmp_path / "release").write_text("")
        worker.join(30)
        assert answer and answer[0][0] == 200
        assert server.proc.poll() is None
        assert get(server)[0].startswith(b"HTTP/1.1 200")
    finally:
        assert server.stop() == 0
    assert "Traceback" not in "".join(server.output)


@pytest.mark.parametrize("command", ["module", "twistd"])
def test_options_after_the_application(command):
    """``python -m twisted_asgi app --option value`` (and twistd's) takes the options
    that follow the application, as docs/websocket.rst and uvicorn users write them.

    Source: issue 16, item 17 (docs command failed with "Wrong number of arguments.")."""
    server = start_server("tests.apps:hello", "--server-name", "after-app", command=command, app_first=True)
    try:
        status, headers, body = get(server)
        assert status.startswith(b"HTTP/1.1 200") and body == b"Hello, world!"
        assert headers[b"server"] == b"after-app"
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize("extra", [(), ("--workers", "2")], ids=["single", "workers"])
def test_daemon_that_cannot_listen_exits_non_zero_with_one_line(extra, tmp_path):
    """twistd in daemon mode on a port in use exits non-zero at once, with one line
    on stderr naming the listener and the reason, and leaves no daemon behind.

    Source: issue 16, item 3 (operator test: the daemon's parent exited 0 and
    "Address already in use" was only in the log file)."""
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        result = subprocess.run(
            [TWISTD, "--pidfile", str(tmp_path / "d.pid"), "--logfile", str(tmp_path / "d.log")]
            + ["asgi", "-p", str(port), *extra, "tests.apps:hello"],
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
        )
    finally:
        busy.close()
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"127.0.0.1:{port}" in lines[0] or f"port={port}" in lines[0], lines[0]
    assert "in use" in lines[0], lines[0]
    assert not (tmp_path / "d.pid").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-e", "tcp:port=abc"], "bad endpoint 'tcp:port=abc': port must be a whole number, not 'abc'"),
        (["-e", "tcp:8000:backlog=x"], "backlog must be a whole number, not 'x'"),
        (["-e", "ssl:8443"], "ssl: needs privateKey=KEY.pem"),
        (["-e", "unix:/nonexistent/dir/x.sock"], "the directory /nonexistent/dir for the socket does not exist"),
        (["-e", "systemd:name=web"], "systemd: needs domain=INET, INET6 or UNIX"),
        (["-p", "abc"], "--port must be a whole number, not 'abc'"),
        (["--timeout-keep-alive", "soon"], "--timeout-keep-alive must be a number, not 'soon'"),
        (["--limit-request-body=big"], "--limit-request-body must be a whole number, not 'big'"),
    ],
)
@pytest.mark.parametrize("program", ["python -m twisted_asgi", "twistd asgi"])
def test_startup_errors_name_the_option_and_the_problem(program, args, expected):
    """A bad option value or endpoint string is one line (plus 'Try --help' for
    usage errors) naming the option and what is wrong, never a Python internal
    ('invalid literal for int()', a missing positional argument, a default file
    the user never typed), and the command exits non-zero.

    Source: issue 16, item 20 (newcomer test of weak start-up errors)."""
    if program == "twistd asgi":
        result = run_twistd("-n", "--pidfile=", "asgi", *args, "tests.apps:hello")
    else:
        result = run_cli("-m", "twisted_asgi", *args, "tests.apps:hello")
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 2, result.stderr
    assert expected in lines[0], lines[0]
    assert lines[0].startswith(("python -m twisted_asgi:", "twistd asgi:")), lines[0]
    for internal in ("invalid literal", "positional argument", "server.pem", "Parameter type", ".lock"):
        assert internal not in result.stderr
    if len(lines) == 2:
        assert lines[1].startswith("Try '")
    assert result.stdout.count("\n") < 3  # twistd printed no --help page


def test_import_error_shows_where_in_the_users_code(tmp_path):
    """An application whose import raises: the exception, then the user's file,
    line and code from the traceback (not the import machinery's).

    Source: issue 16, item 20."""
    (tmp_path / "broken_app.py").write_text(
        "import os\n\n\ndef setup():\n    raise RuntimeError('no database')\n\n\nsetup()\n"
    )
    result = run_cli("-m", "twisted_asgi", "--app-dir", str(tmp_path), "broken_app:app")
    assert result.returncode != 0
    text = result.stderr
    assert "importing 'broken_app' failed: RuntimeError: no database" in text
    assert f'File "{tmp_path / "broken_app.py"}", line 5, in setup' in text
    assert "raise RuntimeError('no database')" in text
    assert "importlib" not in text and "Traceback" not in text


def test_options_from_the_environment_command_line_wins(monkeypatch):
    """TWISTED_ASGI_<OPTION> sets any option (flags, numbers, repeatable ones one
    per line or comma-separated) and TWISTED_ASGI_APP the application; an option
    on the command line wins over its variable.

    Source: issue 19, item 7 (configuration from the environment)."""
    from twisted_asgi.tap import Options

    for name, value in {
        "TWISTED_ASGI_APP": "tests.apps:hello",
        "TWISTED_ASGI_WORKERS": "4",
        "TWISTED_ASGI_NO_HTTP2": "yes",
        "TWISTED_ASGI_NO_WEBSOCKET": "0",
        "TWISTED_ASGI_ENDPOINT": "tcp:8001:interface=127.0.0.1\nunix:/tmp/a.sock",
        "TWISTED_ASGI_WS_ALLOWED_ORIGIN": "https://a.example, https://b.example",
        "TWISTED_ASGI_SERVER_NAME": "env",
        "TWISTED_ASGI_TIMEOUT_KEEP_ALIVE": "7.5",
    }.items():
        monkeypatch.setenv(name, value)
    options = Options()  # parsing installs no reactor: in-process, as Twisted's own tap tests do
    options.parseOptions(["--server-name", "cli"])
    assert options["application"] == "tests.apps:hello"
    assert options["workers"] == 4 and options["no-http2"] and not options["no-websocket"]
    assert options["endpoints"] == ["tcp:8001:interface=127.0.0.1", "unix:/tmp/a.sock"]
    assert options["ws-allowed-origins"] == ["https://a.example", "https://b.example"]
    assert options["server-name"] == "cli"
    assert options["timeout-keep-alive"] == 7.5
    again = Options()
    again.parseOptions(["-e", "tcp:9:interface=127.0.0.1", "other:app"])
    assert again["endpoints"] == ["tcp:9:interface=127.0.0.1"] and again["application"] == "other:app"


@pytest.mark.parametrize("command", ["module", "twistd"])
def test_server_configured_from_the_environment(command):
    """A server started with its options in the environment serves with them, and
    a bad value names its variable (docs/cli.rst's example shape).

    Source: issue 19, item 7."""
    env = {"TWISTED_ASGI_SERVER_NAME": "from-env", "TWISTED_ASGI_LIMIT_REQUEST_BODY": "5"}
    server = start_server("tests.apps:echo", command=command, env=env)
    try:
        status, headers, _body = get(server)
        assert status.startswith(b"HTTP/1.1 200") and headers[b"server"] == b"from-env"
        with server.connect() as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\n123456")
            assert recv_response(sock)[0].startswith(b"HTTP/1.1 413")
    finally:
        assert server.stop() == 0
    result = subprocess.run(
        [sys.executable, "-m", "twisted_asgi", "tests.apps:hello"],
        capture_output=True,
        text=True,
        timeout=30,
        env=dict(os.environ, PYTHONPATH=str(ROOT), TWISTED_ASGI_LIMIT_REQUEST_BODY="lots"),
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode != 0
    assert "TWISTED_ASGI_LIMIT_REQUEST_BODY (--limit-request-body) must be a whole number, not 'lots'" in result.stderr


def test_listen_is_endpoint_as_twistd_web_spells_it():
    """--listen ENDPOINT listens as --endpoint does (twistd web's spelling).

    Source: issue 17, build item 4."""
    server = start_server("tests.apps:hello", "--listen", "tcp:port=0:interface=127.0.0.1", endpoint=None)
    try:
        assert get(server)[2] == b"Hello, world!"
    finally:
        assert server.stop() == 0


def test_option_defaults_are_configs():
    """Each option that sets a Config field takes its default from Config, not a copy.

    Source: issue 17, build item 4."""
    from twisted_asgi.config import Config
    from twisted_asgi.tap import Options

    options = Options()
    fields = Config.__dataclass_fields__
    for option, field in {
        "root-path": "root_path",
        "server-name": "server_name",
        "lifespan": "lifespan",
        "loop": "loop",
        "proxy-headers-style": "proxy_headers_style",
        "root-path-header": "root_path_header",
        "workers": "workers",
    }.items():
        assert options.defaults[option] == fields[field].default, option


def test_an_option_given_twice_is_a_usage_error():
    """-p given twice would listen on the last port only, silently: a usage error
    naming the option (a repeatable option, -e, may repeat).

    Source: issue 16 (fresh-clone check: -p 28024 -p 28025 listened on 28025 only)."""
    result = run_cli("-m", "twisted_asgi", "-p", "28024", "-p", "28025", "tests.apps:hello")
    assert result.returncode == 2
    assert "--port given more than once (several listeners: -e, once each)" in result.stderr
    from twisted_asgi.tap import Options

    options = Options()
    options.parseOptions(["-e", "tcp:1:interface=127.0.0.1", "-e", "tcp:2:interface=127.0.0.1", "x:app"])
    assert len(options["endpoints"]) == 2


def _listen_backlog(port: int) -> int:
    """The backlog of the listening socket on ``port`` (``ss`` shows it as Send-Q)."""
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    return int(out.split()[2])


@pytest.mark.parametrize(
    ("args", "endpoint", "backlog"),
    [
        ((), "tcp:port=0:interface=127.0.0.1", 2048),
        (("--backlog", "7"), "tcp:port=0:interface=127.0.0.1", 7),
        (("--backlog", "7"), "tcp:port=0:interface=127.0.0.1:backlog=5", 5),
    ],
)
def test_listen_backlog(args, endpoint, backlog):
    """Listeners queue 2048 connections by default (not Twisted's 50), --backlog
    changes it, and an endpoint string's own backlog= wins."""
    server = start_server("tests.apps:hello", *args, endpoint=endpoint)
    try:
        expected = min(backlog, int(Path("/proc/sys/net/core/somaxconn").read_text()))
        assert _listen_backlog(server.port) == expected
        assert get(server)[2] == b"Hello, world!"
    finally:
        server.stop()


def test_startup_state_is_frozen_out_of_garbage_collection():
    """Once listening, what was built at startup is left out of later collections (gc.freeze)."""
    server = start_server("tests.apps:gc_frozen")
    try:
        assert int(get(server)[2]) > 10_000  # modules, Twisted, the app: far more than a handful
    finally:
        assert server.stop() == 0


def test_h2c_upgrade_is_opt_in():
    """``Upgrade: h2c`` is off unless --h2c-upgrade (documented in --help with
    its risk); --no-h2c-upgrade, the old way to turn it off, is still accepted
    and changes nothing; both together are a one-line usage error.
    Source: issue 15, item 1."""
    from twisted_asgi.tap import Options, config_from_options

    options = Options()
    assert config_from_options(options).h2c_upgrade is False
    options["no-h2c-upgrade"] = True
    assert config_from_options(options).h2c_upgrade is False
    options["no-h2c-upgrade"], options["h2c-upgrade"] = False, True
    assert config_from_options(options).h2c_upgrade is True
    result = run_cli("-m", "twisted_asgi", "--h2c-upgrade", "--no-h2c-upgrade", "tests.apps:hello")
    assert result.returncode != 0 and "contradict" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    help_text = " ".join(run_cli("-m", "twisted_asgi", "--help").stdout.split())
    assert "--h2c-upgrade" in help_text and "smuggle" in help_text
