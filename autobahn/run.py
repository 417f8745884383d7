"""Run the Autobahn testsuite's fuzzing client against twisted-asgi's demo echo.

``python autobahn/run.py`` (or ``tox -e autobahn``):

1. makes a Python 2.7 virtualenv with ``autobahntestsuite`` (Python 2 only) and
   the pinned dependencies of ``requirements-py27.txt``, unless it exists;
2. starts ``python -m twisted_asgi twisted_asgi.demo:app`` from this checkout on
   a free loopback port, with the message and frame limits raised above the
   16 MiB of the testsuite's largest messages (cases 9.x; by default the
   server closes with 1009 beyond 1 MiB, which the suite would count as a
   failure of an echo server), and the frames per message to the 65,537 of
   its most fragmented one (cases 9.3.1 and 9.4.1; 1024 by default);
3. runs ``wstest -m fuzzingclient`` with the cases of ``fuzzingclient.json``;
4. stops the server, which must exit 0 with no traceback in its output;
5. summarises the report (``summary.py``) and exits 1 if any case FAILED.

The full HTML report stays in ``--outdir`` (not committed); the summary page
is written with ``--rst``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import summary  # noqa: E402 (the sibling script, importable once HERE is on the path)

# The largest message of the testsuite is 16 MiB (cases 9.1.6, 9.2.6).
LIMIT = str(20 * 1024 * 1024)
# Cases 9.3.1 and 9.4.1 send a 4 MiB message in 64-byte fragments, and the testsuite's client
# ends it with an empty final frame: 65,537 frames, where the server's default
# --limit-ws-fragments (1024) would, correctly, close with 1009.
FRAGMENTS = str(4 * 1024 * 1024 // 64 + 1)
LISTENING = re.compile(r"Listening on \S+ \(http://([0-9.]+):(\d+)\)")
PYENV_PY27 = Path("/root/.pyenv/versions/2.7.18/bin/python")


def find_python2(given: str | None) -> str:
    """The Python 2.7 interpreter: ``--python2``, ``$AUTOBAHN_PYTHON2``, ``python2.7`` or ``python2``
    on PATH, or pyenv's 2.7.18; the first that runs and is 2.7 (a pyenv shim may exist and not run)."""
    explicit = given or os.environ.get("AUTOBAHN_PYTHON2")
    candidates = [explicit] if explicit else [shutil.which("python2.7"), shutil.which("python2"), str(PYENV_PY27)]
    for candidate in filter(None, candidates):
        try:
            probe = subprocess.run(
                [candidate, "-c", "import sys; print(sys.version_info[:2] == (2, 7))"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except OSError:
            continue
        if probe.stdout.strip() == "True":
            return candidate
    raise SystemExit(f"no working Python 2.7 among {candidates}: pass --python2 or set AUTOBAHN_PYTHON2")


def ensure_venv(venv: Path, python2: str) -> Path:
    """A Python 2.7 virtualenv at ``venv`` with the pinned testsuite; return its ``wstest``."""
    wstest = venv / "bin" / "wstest"
    if wstest.exists():
        return wstest
    # virtualenv 20.22 dropped Python 2 environments; it is put beside the
    # venv, not into the interpreter's own site-packages.
    bootstrap = venv.parent / (venv.name + "-bootstrap")
    run([python2, "-m", "pip", "install", "-q", "--target", str(bootstrap), "virtualenv<20.22"])
    run([python2, "-m", "virtualenv", "-q", str(venv)], env={"PYTHONPATH": str(bootstrap)})
    run([str(venv / "bin" / "pip"), "install", "-q", "-r", str(HERE / "requirements-py27.txt")])
    return wstest


def run(argv: list[str], env: dict[str, str] | None = None) -> None:
    print("+", " ".join(argv), flush=True)
    subprocess.run(argv, check=True, env={**os.environ, **(env or {})})


def start_server(log_path: Path) -> tuple[subprocess.Popen[bytes], str, int]:
    """The demo app served from this checkout on a free loopback port."""
    argv = [
        sys.executable,
        "-m",
        "twisted_asgi",
        "-e",
        "tcp:port=0:interface=127.0.0.1",
        "--limit-ws-message",
        LIMIT,
        "--limit-ws-frame",
        LIMIT,
        "--limit-ws-fragments",
        FRAGMENTS,
        "twisted_asgi.demo:app",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    log = log_path.open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=ROOT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = LISTENING.search(log_path.read_text(errors="replace"))
        if found:
            return proc, found.group(1), int(found.group(2))
        if proc.poll() is not None:
            break
        time.sleep(0.1)  # polling the server's log for its port, with a deadline
    proc.kill()
    proc.wait()
    raise SystemExit(f"the server did not start:\n{log_path.read_text(errors='replace')}")


def stop_server(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return -9


def server_versions(log_text: str) -> str:
    """What served the cases: Python, the packages that frame WebSocket traffic,
    and the event loop the server's startup line names."""
    from importlib.metadata import PackageNotFoundError, version

    parts = [f"Python {sys.version.split()[0]}"]
    for name in ("Twisted", "autobahn", "uvloop"):
        try:
            parts.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            parts.append(f"{name} (not installed)")
    loop = re.search(r"over the (\w+) event loop", log_text)
    parts.append(f"{loop.group(1) if loop else 'unknown'} event loop")
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python2", help="the Python 2.7 interpreter for the testsuite's virtualenv")
    parser.add_argument("--venv", type=Path, default=HERE / ".venv27", help="the testsuite's virtualenv")
    parser.add_argument("--outdir", type=Path, default=HERE / "reports", help="where the HTML/JSON report goes")
    parser.add_argument("--cases", nargs="*", help="case patterns instead of fuzzingclient.json's (e.g. 1.* 2.*)")
    parser.add_argument("--rst", type=Path, help="write the summary page here (e.g. docs/autobahn-report.rst)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds the fuzzing client may run")
    args = parser.parse_args(argv)

    wstest = ensure_venv(args.venv.resolve(), find_python2(args.python2))
    versions = subprocess.run([str(wstest), "-a"], capture_output=True, text=True, check=False).stdout.strip()

    outdir = args.outdir.resolve()
    if outdir.exists():
        # Only ever a previous report (or an empty folder) is replaced.
        if any(outdir.iterdir()) and not (outdir / "fuzzingclient.json").exists():
            raise SystemExit(f"{outdir} is not empty and holds no previous report; choose another --outdir")
        shutil.rmtree(outdir)
    outdir.mkdir(parents=True)
    spec = json.loads((HERE / "fuzzingclient.json").read_text())
    if args.cases:
        spec["cases"] = args.cases
    spec["outdir"] = str(outdir)

    server_log = outdir / "server.log"
    proc, host, port = start_server(server_log)
    try:
        spec["servers"][0]["url"] = f"ws://{host}:{port}/ws"
        spec_path = outdir / "fuzzingclient.json"
        spec_path.write_text(json.dumps(spec, indent=2))
        started = time.monotonic()
        command = [str(wstest), "-m", "fuzzingclient", "-s", str(spec_path)]
        print("+", " ".join(command), flush=True)
        with (outdir / "wstest.log").open("wb") as client_log:
            try:
                client_rc = subprocess.run(
                    command, stdout=client_log, stderr=subprocess.STDOUT, timeout=args.timeout, check=False, cwd=outdir
                ).returncode
            except subprocess.TimeoutExpired:
                client_rc = None  # subprocess.run killed it
        elapsed = time.monotonic() - started
    finally:
        server_rc = stop_server(proc)
    log_text = server_log.read_text(errors="replace")

    problems = []
    if client_rc is None:
        raise SystemExit(f"wstest ran past --timeout {args.timeout:.0f}s (see {outdir / 'wstest.log'})")
    if client_rc != 0:
        problems.append(f"wstest exited {client_rc} (see {outdir / 'wstest.log'})")
    if server_rc != 0:
        problems.append(f"the server exited {server_rc}")
    if "Traceback" in log_text or "Unhandled" in log_text:
        problems.append(f"the server logged a traceback (see {server_log})")

    results = summary.load(outdir / "index.json")
    meta = {
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "server": server_versions(log_text),
        "versions": versions,
        "cases": " ".join(spec["cases"]),
        "seconds": f"{elapsed:.0f}",
    }
    text = summary.render(results, meta)
    print(text)
    if args.rst:
        args.rst.write_text(text)
    failed = summary.failed(results)
    if failed:
        problems.append(f"{len(failed)} case(s) FAILED: {', '.join(failed)}")
    for problem in problems:
        print("autobahn:", problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
