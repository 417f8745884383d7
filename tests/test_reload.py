"""``--reload`` end to end: a server started on an app file in a temporary
directory serves the new code once the file is edited, while a client looping
on new connections meets no refused connection and no failed request (the
parent keeps the listening socket; the new worker serves before the old one
stops); a syntax error leaves the previous worker serving until a fix; an app
that cannot start at all leaves requests waiting, and the fix answers them;
--reload-include/--reload-exclude choose the files; --reload with --workers N
or twistd's daemon mode is refused with one line.

Source: issue 19, item 5.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from twisted.python import usage

from tests.deploy import http_get, serving, wait_for
from tests.serving import ROOT, TWISTD
from twisted_asgi.reload import describe_changes, watch_filter
from twisted_asgi.tap import Options

APP = "hello:application"

TEMPLATE = """
async def application(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({{"type": "http.response.start", "status": 200, "headers": []}})
    await send({{"type": "http.response.body", "body": {body!r}}})
"""


def write_app(directory: Path, body: str, broken: bool = False) -> None:
    """hello.py answering ``body`` (with a syntax error after it when ``broken``)."""
    text = TEMPLATE.format(body=body.encode())
    (directory / "hello.py").write_text(text + ("\ndef (\n" if broken else ""))


def answer(server, timeout: float = 10) -> str:
    status, _headers, body = http_get(server.host, server.port, "/", timeout=timeout)
    assert status == 200, (status, body)
    return body.decode()


def start(tmp_path: Path, *options: str):
    return serving(APP, "--reload", *options, cwd=tmp_path)


class Looping:
    """A client sending requests on new connections until stopped; keeps every answer and failure."""

    def __init__(self, server) -> None:
        self.server = server
        self.answers: list[str] = []
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self.stop.is_set() and len(self.answers) < 20000:
            try:
                self.answers.append(answer(self.server, timeout=30))
            except Exception as exc:  # noqa: BLE001 (recorded and asserted on)
                self.failures.append(repr(exc))

    def __enter__(self) -> Looping:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(60)


def test_an_edit_is_served_and_nobody_is_refused_meanwhile(tmp_path):
    """Edit the app under a running --reload server: the log names the file, the new body is
    served, and a client looping through the restart meets no refused connection."""
    write_app(tmp_path, "one")
    with start(tmp_path) as server:
        wait_for(lambda: answer(server) == "one", 30, "the first worker")
        with Looping(server) as client:
            wait_for(lambda: len(client.answers) >= 3, 30, "answers before the edit")
            write_app(tmp_path, "two, a longer body")
            wait_for(lambda: client.answers[-1] == "two, a longer body", 60, "the edited app's answer")
            count = len(client.answers)
            wait_for(lambda: len(client.answers) >= count + 3, 30, "answers after the edit")
        assert client.failures == []
        assert client.answers[0] == "one" and set(client.answers) == {"one", "two, a longer body"}
        assert client.answers[-3:] == ["two, a longer body"] * 3
        output = server.read_output(0.2)
    assert output.count("Reloading: hello.py changed") == 1, output
    assert "Traceback" not in output, output


def test_a_syntax_error_keeps_the_previous_worker_until_the_fix(tmp_path):
    """A syntax error after an edit is logged and the previous code keeps answering; the fix is served."""
    write_app(tmp_path, "one")
    with start(tmp_path) as server:
        wait_for(lambda: answer(server) == "one", 30, "the first worker")
        write_app(tmp_path, "two", broken=True)
        output = server.wait_for_output("the previous worker keeps serving until a watched file changes", 60)
        assert "SyntaxError" in output, output
        assert answer(server) == "one"
        write_app(tmp_path, "three, fixed")
        wait_for(lambda: answer(server) == "three, fixed", 60, "the fixed app's answer")
        output = server.read_output(0.2)
    assert output.count("Reloading: hello.py changed") == 2, output


def test_an_app_that_cannot_start_leaves_requests_waiting_for_the_fix(tmp_path):
    """Started on a broken app, the server keeps its listening socket: a request waits (no refusal,
    no error response) and is answered by the worker that the fix starts."""
    write_app(tmp_path, "one", broken=True)
    with start(tmp_path) as server:
        server.wait_for_output("requests wait until a watched file changes", 60)
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(answer, server, 60)
            write_app(tmp_path, "fixed at last")
            assert waiting.result(timeout=90) == "fixed at last"
        assert server.proc.poll() is None


def test_include_and_exclude_choose_the_files(tmp_path):
    """--reload-include '*.txt' adds text files to *.py; --reload-exclude 'skip_*' drops a .py file."""
    write_app(tmp_path, "one")
    with start(tmp_path, "--reload-include", "*.txt", "--reload-exclude", "skip_*") as server:
        wait_for(lambda: answer(server) == "one", 30, "the first worker")
        (tmp_path / "skip_me.py").write_text("x = 1\n")
        (tmp_path / "notes.txt").write_text("changed\n")
        output = server.wait_for_output("Reloading: notes.txt changed", 30)
        write_app(tmp_path, "two, after the text file")
        wait_for(lambda: answer(server) == "two, after the text file", 60, "the edited app's answer")
        output = server.read_output(0.2)
    assert "skip_me.py" not in output, output


def test_many_changed_files_make_one_short_line():
    """A checkout that changes many files names the first five and counts the rest."""
    assert describe_changes(["a.py"]) == "a.py"
    assert describe_changes([f"m{i}.py" for i in range(5)]) == "m0.py, m1.py, m2.py, m3.py, m4.py"
    assert describe_changes([f"m{i}.py" for i in range(8)]) == "m0.py, m1.py, m2.py, m3.py, m4.py and 3 more"


def test_watch_filter():
    """The filter: watchfiles' defaults, then exclusions, then inclusions (matched from the right)."""
    from watchfiles import Change

    keep = watch_filter(("*.py", "templates/*.html"), ("*_test.py",))
    assert keep(Change.modified, "/src/app/views.py")
    assert keep(Change.added, "/src/app/templates/page.html")
    assert not keep(Change.modified, "/src/app/other/page.html")
    assert not keep(Change.modified, "/src/app/views_test.py")
    assert not keep(Change.modified, "/src/app/__pycache__/views.cpython-311.pyc")
    assert not keep(Change.modified, "/src/app/.git/index")
    assert not keep(Change.modified, "/src/app/README.md")


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (
            [sys.executable, "-m", "twisted_asgi", "--reload", "--workers", "2", APP],
            "python -m twisted_asgi: --reload restarts one serving process: it cannot be combined with "
            "--workers N (N > 1)",
        ),
        (
            [TWISTD, "--pidfile", "{tmp}/twistd.pid", "--logfile", "{tmp}/twistd.log", "asgi", "--reload", APP],
            "twistd asgi: --reload is for the foreground: run twistd with -n (twistd -n asgi --reload ...)",
        ),
        (
            [sys.executable, "-m", "twisted_asgi", "--reload", "--reload-dir", "{tmp}/nowhere", APP],
            "python -m twisted_asgi: --reload-dir {tmp}/nowhere: no such directory",
        ),
    ],
)
def test_refusals_are_one_line(tmp_path, argv, line):
    """--reload with --workers N, in twistd's daemon mode, or on a missing directory: one line, exit 2."""
    argv = [arg.format(tmp=tmp_path) for arg in argv]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    try:
        result = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    finally:
        pidfile = tmp_path / "twistd.pid"
        if pidfile.exists():  # it daemonised after all: stop it, and fail below
            os.kill(int(pidfile.read_text()), signal.SIGTERM)
    assert result.returncode == 2, result
    assert result.stderr.splitlines()[0] == line.format(tmp=tmp_path), result.stderr


def test_reload_options_parse_and_come_from_the_environment(monkeypatch, tmp_path):
    """--reload with --workers 1 is fine; TWISTED_ASGI_RELOAD and the repeatable
    TWISTED_ASGI_RELOAD_DIR/_INCLUDE/_EXCLUDE set the Config fields."""
    options = Options()
    options.parseOptions(["--reload", "--workers", "1", APP])
    assert options.config.reload and options.config.reload_include == ("*.py",)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.setenv("TWISTED_ASGI_RELOAD", "1")
    monkeypatch.setenv("TWISTED_ASGI_RELOAD_DIR", f"{tmp_path}/a\n{tmp_path}/b")
    monkeypatch.setenv("TWISTED_ASGI_RELOAD_INCLUDE", "*.html,*.css")
    monkeypatch.setenv("TWISTED_ASGI_RELOAD_EXCLUDE", "*_test.py")
    options = Options()
    options.parseOptions([APP])
    config = options.config
    assert config.reload
    assert config.reload_dirs == (f"{tmp_path}/a", f"{tmp_path}/b")
    assert config.reload_include == ("*.py", "*.html", "*.css")
    assert config.reload_exclude == ("*_test.py",)
    monkeypatch.setenv("TWISTED_ASGI_WORKERS", "3")
    with pytest.raises(usage.UsageError, match="--reload restarts one serving process"):
        Options().parseOptions([APP])
