"""Every server command the quickstart, the configuration reference and the
README show is run as written, on loopback: each must start, listen where it says and answer a request.

Only what a test machine needs is changed in a command: ports become free
ports, every interface (``0.0.0.0``, ``::``) becomes loopback, ``/run/...``
paths move into a temporary directory, ``myproject.asgi:application`` and
``main:app`` become the quickstart's ``hello.py``, and ``key.pem``/``cert.pem``
are made for the run. The commands run in that directory, from which
``hello:application`` imports, as a reader's would.

Source: issue 16, items 7, 8 and 21 (newcomer test: doc commands that failed
or listened on every interface without saying so).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.deploy import free_port, make_certs, wait_for
from tests.serving import ROOT, TWISTD, recv_response

HELLO = """
async def application(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-type", b"text/plain")],
    })
    await send({"type": "http.response.body", "body": b"Hello, world!\\n"})
"""


def _shown_commands() -> list[tuple[str, str]]:
    """``(source, command)`` for each server command in a literal block of the
    quickstart or the configuration reference, or a shell block of the README
    (comments stripped, continued lines joined)."""
    found = []

    def server_command(line: str) -> bool:
        command = re.sub(r"^(?:TWISTED_ASGI_\w+=\S+ )+", "", line)
        return command.startswith(("twistd ", "python -m twisted_asgi")) and "[options]" not in command

    for page in ("quickstart.rst", "cli.rst"):
        text = (ROOT / "docs" / page).read_text(encoding="utf-8").replace("\\\n    ", "")
        for line in text.splitlines():
            if line.startswith("    ") and server_command(line.strip()):
                found.append((f"docs/{page}", line.strip()))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for block in re.findall(r"```sh\n(.*?)```", readme, re.S):
        for line in block.splitlines():
            if server_command(line):
                found.append(("README.md", line))
    commands = []
    for source, line in found:
        command = re.sub(r"\s+#.*$", "", line)
        if command.startswith("twistd asgi --help"):
            continue
        commands.append((source, command))
    return commands


COMMANDS = _shown_commands()


def test_the_docs_show_commands():
    """The collection above finds the commands (so the test below cannot pass empty)."""
    assert len([c for s, c in COMMANDS if s == "docs/quickstart.rst"]) >= 10
    assert len([c for s, c in COMMANDS if s == "README.md"]) >= 5
    assert [c for s, c in COMMANDS if s == "docs/cli.rst"]


def _adapt(
    command: str, tmp: Path, environ: dict[str, str] | None = None
) -> tuple[list[str], list[tuple[str, object]]]:
    """The argv to run, and where it should listen: ``("tcp", (host, port))`` or ``("unix", path)``;
    ``VAR=value`` words before the command go into ``environ``."""
    environ = {} if environ is None else environ
    ports: dict[str, int] = {}

    def port(match: re.Match) -> str:
        return str(ports.setdefault(match.group(0), free_port()))

    text = command.replace("myproject.asgi:application", "hello:application").replace("main:app", "hello:application")
    text = text.replace("0.0.0.0", "127.0.0.1").replace("interface=\\:\\:", "interface=\\:\\:1")
    text = text.replace("/run/", f"{tmp}/")
    text = re.sub(r"(?<![\w.])(8000|8080|8081|8443)(?!\d)", port, text)
    argv = shlex.split(text)
    while argv and re.fullmatch(r"TWISTED_ASGI_\w+=.*", argv[0]):
        name, _sep, value = argv.pop(0).partition("=")
        environ[name] = value
    if argv[0] == "twistd":
        argv[0] = TWISTD
    elif argv[:3] == ["python", "-m", "twisted_asgi"]:
        argv[:1] = [sys.executable]
    listens: list[tuple[str, object]] = []
    for value in re.findall(r"(?:-e\s+|TWISTED_ASGI_ENDPOINT=)'?([^ ']+)'?", text):
        if value.startswith("unix:"):
            listens.append(("unix", value[5:].split(":")[0]))
        elif value.startswith("tcp6:"):
            listens.append(("tcp6", ("::1", int(re.search(r"port=(\d+)", value).group(1)))))
        else:
            host = re.search(r"interface=([\d.]+)", value)
            number = re.search(r"^(?:tcp|ssl):(?:port=)?(\d+)", value).group(1)
            listens.append(
                ("ssl" if value.startswith("ssl:") else "tcp", (host.group(1) if host else "127.0.0.1", int(number)))
            )
    if not listens:
        p = re.search(r"-p\s+(\d+)", text)
        b = re.search(r"-b\s+(\S+)", text)
        listens.append(("tcp", (b.group(1) if b else "127.0.0.1", int(p.group(1)) if p else 8000)))
    return argv, listens


def _answers(kind: str, where: object, certs: dict) -> bool:
    """A GET / to a listener answers ``Hello, world!``."""
    import ssl

    try:
        if kind == "unix":
            sock = socket.socket(socket.AF_UNIX)
            sock.settimeout(5)
            try:
                sock.connect(str(where))
            except OSError:
                sock.close()
                raise
        else:
            sock = socket.create_connection(where, timeout=5)  # type: ignore[arg-type]
        if kind == "ssl":
            context = ssl.create_default_context(cafile=str(certs["ca"]))
            sock = context.wrap_socket(sock, server_hostname="127.0.0.1")
    except OSError:
        return False
    with sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: docs\r\nConnection: close\r\n\r\n")
        status, _headers, body = recv_response(sock)
    return status.startswith(b"HTTP/1.1 200") and body == b"Hello, world!\n"


@pytest.mark.parametrize(("source", "command"), COMMANDS, ids=[f"{s}:{c}" for s, c in COMMANDS])
def test_documented_command_serves(source, command, tmp_path):
    """The command starts, listens where it says, answers, and stops cleanly on SIGTERM."""
    (tmp_path / "hello.py").write_text(HELLO)
    certs = make_certs(tmp_path)
    (tmp_path / "key.pem").write_bytes(certs["key"].read_bytes())
    (tmp_path / "cert.pem").write_bytes(certs["cert"].read_bytes())
    environ: dict[str, str] = {}
    argv, listens = _adapt(command, tmp_path, environ)
    if "twisted_asgi.demo:app" in argv:
        argv[argv.index("twisted_asgi.demo:app")] = "hello:application"  # the demo has its own tests
    env = dict(os.environ, PYTHONPATH=str(ROOT), **environ)
    daemon = "-n" not in argv and argv[0] == TWISTD
    proc = subprocess.Popen(
        argv, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    pid = proc.pid
    try:
        if daemon:
            assert proc.wait(30) == 0, proc.stdout.read() if proc.stdout else ""
            pidfile = tmp_path / argv[argv.index("--pidfile") + 1]
            pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 20, "the pid file"))
        for kind, where in listens:
            wait_for(lambda k=kind, w=where: _answers(k, w, certs), 20, f"{kind} {where} to answer ({command})")
    finally:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        if daemon:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
        else:
            _reap(proc)
        if proc.stdout is not None:
            proc.stdout.close()
    if not daemon:
        assert proc.returncode == 0


def test_two_foreground_twistd_servers_in_one_directory(tmp_path):
    """The quickstart's advice works: a second ``twistd -n`` server in the same
    directory starts when given ``--pidfile=`` (without it twistd refuses)."""
    (tmp_path / "hello.py").write_text(HELLO)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    first_port, second_port = free_port(), free_port()
    first = subprocess.Popen(
        [TWISTD, "-n", "asgi", "-p", str(first_port), "hello:application"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    second = None
    try:
        wait_for(lambda: _answers("tcp", ("127.0.0.1", first_port), {}), 20, "the first server")
        refused = subprocess.run(
            [TWISTD, "-n", "asgi", "-p", str(second_port), "hello:application"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert refused.returncode != 0
        assert "Another twistd server is running" in refused.stdout + refused.stderr
        second = subprocess.Popen(
            [TWISTD, "-n", "--pidfile=", "asgi", "-p", str(second_port), "hello:application"],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: _answers("tcp", ("127.0.0.1", second_port), {}), 20, "the second server")
    finally:
        for proc in (first, second):
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                _reap(proc)


def _reap(proc: subprocess.Popen) -> None:
    """Wait for a server told to stop; kill it if it has not stopped in 30 s."""
    try:
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


_ENDPOINT = re.compile(r"(?:(?:proxy|haproxy):)?(?:tcp6?|ssl|unix|systemd|fd):[^\s`'\"]+")
# Placeholders the docs use in endpoint strings, and what a test puts there.
_PLACEHOLDERS = {"NAME": "web", "PORT": "8443", "=N": "=3"}


def _documented_endpoints() -> list[str]:
    """Every whole endpoint string on a docs page, an example file or the README
    (``...`` abbreviations left out; placeholders filled in)."""
    texts = [path.read_text(encoding="utf-8") for path in sorted((ROOT / "docs").glob("*.rst"))]
    examples = sorted(path for path in (ROOT / "docs" / "examples").rglob("*") if path.is_file())
    texts += [path.read_text(encoding="utf-8") for path in examples if "__pycache__" not in path.parts]
    texts.append((ROOT / "README.md").read_text(encoding="utf-8"))
    found: set[str] = set()
    for text in texts:
        for match in _ENDPOINT.findall(text):
            if "..." in match:
                continue
            value = match.rstrip(".,;:)")
            for placeholder, filled in _PLACEHOLDERS.items():
                value = value.replace(placeholder, filled)
            found.add(value)
    return sorted(found)


def test_every_endpoint_string_in_the_docs_is_accepted(tmp_path):
    """Each endpoint string the docs show builds a listener, with systemd's socket
    passed as systemd passes it (descriptor 3, LISTEN_FDNAMES=web).

    Source: issue 16, item 9 (``systemd:name=web`` from the deployment guide
    failed: Twisted's systemd: endpoint needs domain=)."""
    from tests.deploy import systemd_argv

    endpoints = _documented_endpoints()
    assert any(e.startswith("systemd:") for e in endpoints) and any("name=web" in e for e in endpoints)
    certs = make_certs(tmp_path)
    for name in ("key.pem", "cert.pem"):
        (tmp_path / name).write_bytes(certs["key" if name == "key.pem" else "cert"].read_bytes())
    (tmp_path / "clients-ca.pem").write_bytes(certs["ca"].read_bytes())
    (tmp_path / "certs").mkdir()  # certDir=certs (SNI): one NAME.pem holding key and certificate
    (tmp_path / "certs" / "localhost.pem").write_bytes(certs["key"].read_bytes() + certs["cert"].read_bytes())
    script = tmp_path / "check.py"
    script.write_text(
        "import sys, json\n"
        "from twisted_asgi.reactor import install_asyncio_reactor\n"
        "install_asyncio_reactor()\n"
        "from twisted.internet import reactor\n"
        "from twisted_asgi.config import Config\n"
        "from twisted_asgi.listeners import endpoint_from_string\n"
        "bad = {}\n"
        "for description in json.loads(sys.argv[1]):\n"
        "    try:\n"
        "        endpoint_from_string(reactor, description, Config())\n"
        "    except Exception as exc:\n"
        "        bad[description] = f'{type(exc).__name__}: {exc}'\n"
        "print(json.dumps(bad))\n"
    )
    import json

    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen(1)
    try:
        argv = systemd_argv([sys.executable, str(script), json.dumps(endpoints)], listening.fileno(), names="web")
        result = subprocess.run(
            argv,
            cwd=tmp_path,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            capture_output=True,
            text=True,
            timeout=60,
            pass_fds=(listening.fileno(),),
        )
    finally:
        listening.close()
    assert result.returncode == 0, result.stderr
    bad = json.loads(result.stdout.strip().splitlines()[-1])
    assert bad == {}, "\n".join(f"{k}: {v}" for k, v in bad.items())
