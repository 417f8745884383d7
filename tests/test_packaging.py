"""The package as users get it: a wheel built from this checkout, installed into
a fresh virtualenv (no system site-packages, no checkout on the path).

The wheel ships the twistd plugin as ``twisted/plugins/twisted_asgi_plugin.py``
and never Twisted's own ``twisted/plugins/__init__.py``; from the virtualenv,
``twistd asgi --help`` and ``python -m twisted_asgi --help`` work and
``twistd -n asgi twisted_asgi.demo:app`` serves the demo page and its WebSocket
echo. Needs pip's package index (PyPI or a mirror) for the build backend and
the dependencies, as ``pip install .`` does.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.sync.client import connect as ws_connect

from tests.serving import Server, recv_response

pytestmark = [pytest.mark.packaging, pytest.mark.timeout(420)]

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = "twisted/plugins/twisted_asgi_plugin.py"
_LISTEN = re.compile(r"Listening on \S+ \(http://127\.0\.0\.1:(\d+)\)")
# Never part of a build: outputs of earlier builds, virtualenvs, caches.
_IGNORE = shutil.ignore_patterns(
    ".git", "build", "dist", "*.egg-info", ".venv*", ".tox", "__pycache__", "*.pyc", "_build", ".*_cache", ".hypothesis"
)


@dataclass
class Installed:
    """The built wheel and the virtualenv it is installed in."""

    wheel: Path
    venv: Path
    work: Path

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)


def _clean_env() -> dict[str, str]:
    """The environment without anything that would put the checkout or another
    Python's packages on the path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(argv: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        argv, cwd=cwd, env=_clean_env(), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 0, (
        f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


def _copy_checkout(dest: Path) -> None:
    """Copy the files git would commit (tracked and new, not ignored), so a stale
    build/ or egg-info/ of the working checkout cannot leak into the wheel."""
    listed = None
    if (ROOT / ".git").exists() and shutil.which("git"):
        result = subprocess.run(
            ["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, timeout=60
        )
        if result.returncode == 0:
            listed = [name for name in result.stdout.decode().split("\0") if name]
    if listed is None:
        shutil.copytree(ROOT, dest, ignore=_IGNORE)
        return
    for name in listed:
        source = ROOT / name
        if source.is_file():  # listed but deleted in the working tree: skip
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """Build the wheel from a copy of the checkout and install it into a new virtualenv."""
    work = tmp_path_factory.mktemp("packaging")
    src, dist, venv = work / "src", work / "dist", work / "venv"
    _copy_checkout(src)
    # A PEP 517 build in an isolated environment, exactly what `pip install .` does.
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(src)], work, 300)
    wheels = list(dist.glob("twisted_asgi-*.whl"))
    assert len(wheels) == 1, wheels
    _run([sys.executable, "-m", "venv", str(venv)], work, 120)
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheels[0])], work, 300)
    return Installed(wheels[0], venv, work)


def test_wheel_ships_the_plugin_but_not_twisteds_init(installed: Installed) -> None:
    """The wheel has the plugin module under twisted/plugins/ (identical to the
    checkout's), the package with its demo and py.typed, and neither Twisted's
    twisted/plugins/__init__.py nor the tests."""
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
        plugin = wheel.read(PLUGIN) if PLUGIN in names else b""
    assert PLUGIN in names
    assert plugin == (ROOT / "twisted_plugins" / "twisted_asgi_plugin.py").read_bytes()
    assert "twisted/plugins/__init__.py" not in names
    assert "twisted/__init__.py" not in names
    for name in ("twisted_asgi/__init__.py", "twisted_asgi/demo.py", "twisted_asgi/tap.py", "twisted_asgi/py.typed"):
        assert name in names, name
    assert not [n for n in names if n.startswith(("tests/", "twisted_plugins/", "docs/", "benchmarks/"))]
    # The BSD licence travels with the wheel (setup.cfg license_files).
    assert [n for n in names if n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE")], names


def test_installed_package_is_the_venvs_own(installed: Installed) -> None:
    """In the virtualenv, twisted_asgi and the plugin import from its site-packages,
    and Twisted's own twisted/plugins/__init__.py is still Twisted's."""
    code = (
        "import twisted_asgi, twisted.plugins, twisted.plugins.twisted_asgi_plugin as p, sys; "
        "print(twisted_asgi.__file__); print(p.__file__); print(twisted.plugins.__file__); print(sys.prefix)"
    )
    lines = _run([installed.bin("python"), "-c", code], installed.work, 60).stdout.split()
    venv = str(installed.venv.resolve())
    assert all(str(Path(line).resolve()).startswith(venv) for line in lines), lines
    init = Path(lines[2]).read_text()
    assert "twisted_asgi" not in init


def test_twistd_asgi_help(installed: Installed) -> None:
    """``twistd asgi --help`` from the virtualenv documents the options (the
    plugin is found), and ``twistd --help`` lists the asgi command."""
    out = _run([installed.bin("twistd"), "asgi", "--help"], installed.work, 60).stdout
    for option in (
        "--endpoint",
        "--bind",
        "--lifespan",
        "--limit-request-body",
        "--graceful-timeout",
        "module:application",
    ):
        assert option in out, option
    listing = _run([installed.bin("twistd"), "--help"], installed.work, 60).stdout
    assert re.search(r"^\s+asgi\s", listing, re.M), listing


def test_python_m_twisted_asgi_help(installed: Installed) -> None:
    """``python -m twisted_asgi --help`` and the ``twisted-asgi`` script work from the virtualenv."""
    out = _run([installed.bin("python"), "-m", "twisted_asgi", "--help"], installed.work, 60).stdout
    assert "--endpoint" in out and "--limit-request-body" in out
    assert "--endpoint" in _run([installed.bin("twisted-asgi"), "--help"], installed.work, 60).stdout


def test_installed_twistd_serves_the_demo(installed: Installed) -> None:
    """``twistd -n asgi twisted_asgi.demo:app`` from the virtualenv serves the demo
    page (with the request's scope) and its WebSocket echo, and exits 0 on SIGTERM."""
    proc = subprocess.Popen(
        [
            installed.bin("twistd"),
            "-n",
            "--pidfile=",
            "asgi",
            "-e",
            "tcp:port=0:interface=127.0.0.1",
            "twisted_asgi.demo:app",
        ],
        cwd=installed.work,
        env={**_clean_env(), "PYTHONUNBUFFERED": "1"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    server = Server(proc, None, "127.0.0.1")
    try:
        deadline = time.monotonic() + 60
        while not (match := _LISTEN.search(server.read_output(0.1))):
            assert proc.poll() is None and time.monotonic() < deadline, f"not serving:\n{server.read_output()}"
        server.port = int(match.group(1))
        with server.connect() as sock:
            sock.sendall(b"GET /?from=wheel HTTP/1.1\r\nHost: localhost\r\n\r\n")
            status, headers, body = recv_response(sock)
        assert status.startswith(b"HTTP/1.1 200"), status
        assert headers[b"content-type"].startswith(b"text/html")
        assert b"twisted-asgi is serving" in body
        assert b"from=wheel" in body  # the scope's query_string is on the page
        with ws_connect(f"ws://127.0.0.1:{server.port}/ws", open_timeout=10, close_timeout=5) as ws:
            ws.send("hello from the wheel")
            assert ws.recv(timeout=10) == "hello from the wheel"
    finally:
        code = server.stop()
    assert code == 0, server.read_output()
    assert "Traceback" not in server.read_output(), server.read_output()


def test_dockerfile_installs_the_wheel_it_documents(installed: Installed) -> None:
    """The guide's Dockerfile installs twisted-asgi from a wheel built from a
    checkout (it is on no package index yet), and a wheel built so matches the
    file name its RUN line installs.

    Source: issue 16 (fresh-clone check: 'pip install ... twisted-asgi' in the
    Dockerfile found no distribution)."""
    import fnmatch

    text = (ROOT / "docs" / "examples" / "Dockerfile").read_text(encoding="utf-8")
    run = next(line for line in text.splitlines() if line.startswith("RUN pip install"))
    assert " twisted-asgi" not in run
    pattern = next(word for word in run.split() if word.endswith(".whl"))
    assert fnmatch.fnmatch(f"/tmp/wheels/{installed.wheel.name}", pattern), (installed.wheel.name, pattern)
    assert "pip wheel --no-deps -w" in text
