"""``manage.py runserver`` with ``twisted_asgi.contrib.django`` in INSTALLED_APPS:
served by twisted-asgi, static files in DEBUG, autoreload, clean exit."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serving import _LISTEN, ROOT, Server, recv_response

PROJECT = Path(__file__).resolve().parent / "django_project"


def runserver(*args: str, cwd: Path = PROJECT) -> Server:
    """Start ``manage.py runserver *args 127.0.0.1:0``; return once it listens."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", *args, "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=cwd,
    )
    server = Server(proc, None, "127.0.0.1")
    try:
        listening(server)
    except BaseException:
        server.stop(signal.SIGKILL)
        raise
    return server


def listening(server: Server, count: int = 1, timeout: float = 30.0) -> None:
    """Wait for the ``count``-th "Listening on" line and take its port."""
    server.wait_for_output("Listening on", timeout)
    deadline = time.monotonic() + timeout
    while len(_LISTEN.findall("".join(server.output))) < count:
        if time.monotonic() > deadline or server.proc.poll() is not None:
            raise AssertionError(f"no listening line #{count}:\n{''.join(server.output)}")
        server.read_output(0.05)
    server.port = int(_LISTEN.findall("".join(server.output))[count - 1][2])


def get(server: Server, path: str) -> tuple[int, dict, bytes]:
    with server.connect() as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        status, headers, body = recv_response(sock)
    return int(status.split()[1]), headers, body


@pytest.fixture(scope="module")
def dev_server() -> Iterator[Server]:
    """``runserver --noreload`` on a free port."""
    server = runserver("--noreload")
    try:
        yield server
    finally:
        server.stop(signal.SIGINT)


def test_runserver_serves_pages_through_twisted_asgi(dev_server):
    """Pages come from twisted-asgi (its Server header), with Django's banner naming the real port."""
    status, headers, body = get(dev_server, "/sync/")
    assert (status, body) == (200, b"sync GET main_thread=False")
    assert headers[b"server"] == b"twisted-asgi"
    output = dev_server.wait_for_output("Quit the server with")
    assert f"Starting twisted-asgi development server at http://127.0.0.1:{dev_server.port}/" in output
    assert "Performing system checks..." in output


def test_runserver_serves_admin_static_files_in_debug(dev_server):
    """In DEBUG, runserver's static files handler serves the admin's CSS byte for byte."""
    import django.contrib.admin

    css = Path(django.contrib.admin.__file__).parent / "static" / "admin" / "css" / "base.css"
    status, headers, body = get(dev_server, "/static/admin/css/base.css")
    assert status == 200 and body == css.read_bytes()
    assert headers[b"server"] == b"twisted-asgi"


def test_runserver_logs_each_request(dev_server):
    """Every request gets an access log line, as Django's runserver prints one."""
    get(dev_server, "/async/?logged=1")
    dev_server.wait_for_output('"GET /async/?logged=1 HTTP/1.1" 200')


def test_runserver_nostatic_and_sigint():
    """--nostatic leaves static URLs to Django (404 here); SIGINT stops the server with exit code 0."""
    server = runserver("--noreload", "--nostatic")
    try:
        assert get(server, "/static/admin/css/base.css")[0] == 404
        assert get(server, "/sync/")[0] == 200
    finally:
        code = server.stop(signal.SIGINT)
    assert code == 0, "".join(server.output)
    assert "Traceback" not in "".join(server.output)


def test_runserver_autoreload_restarts_on_code_change(tmp_path):
    """With the autoreloader, touching a project module restarts the server, which serves again."""
    project = tmp_path / "project"
    shutil.copytree(PROJECT, project, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3"))
    server = runserver(cwd=project)
    try:
        assert get(server, "/sync/")[0] == 200
        views = project / "testsite" / "views.py"
        stat = views.stat()
        # Django's StatReloader takes a file's first mtime it sees as the
        # baseline: a change made before its first look at views.py goes
        # unnoticed. So the file is touched again, later each time, until the
        # reload is reported.
        deadline = time.monotonic() + 30
        later = 5
        while True:
            os.utime(views, (stat.st_atime, stat.st_mtime + later))
            try:
                server.wait_for_output("views.py changed, reloading.", 3)
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                later += 5
        listening(server, count=2)
        assert get(server, "/sync/")[0] == 200
    finally:
        code = server.stop(signal.SIGTERM)
    assert code == 0, "".join(server.output)
