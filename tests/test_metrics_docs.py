"""Every server command with ``--metrics-endpoint`` that a docs page or the
README shows is run as written (adapted as tests/test_docs_commands.py adapts
commands: free ports, loopback, the quickstart's ``hello.py``): it serves the
app, and a scrape of its metrics endpoint, parsed with ``prometheus_client``,
counts the requests made. tests/test_docs_commands.py runs the quickstart's,
the CLI reference's and the README's commands; this runs the metrics ones
wherever they are (the deployment guide's included).
Source: issue 19, item 4."""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy import free_port, make_certs, wait_for
from tests.serving import ROOT, TWISTD
from tests.test_docs_commands import HELLO, _adapt, _answers, _reap


def _metrics_commands() -> list[tuple[str, str]]:
    """``(page, command)`` for each server command naming a metrics endpoint
    on a docs page or in the README (continued lines joined, comments cut)."""
    pages = [p for p in sorted((ROOT / "docs").glob("*.rst")) if p.name != "changelog.rst"]
    pages.append(ROOT / "README.md")
    found = []
    for page in pages:
        text = page.read_text(encoding="utf-8").replace("\\\n    ", "").replace("\\\n", "")
        for line in text.splitlines():
            command = re.sub(r"\s+#.*$", "", line.strip())
            bare = re.sub(r"^(?:TWISTED_ASGI_\w+=\S+ )+", "", command)
            if ("--metrics-endpoint" in command or "TWISTED_ASGI_METRICS_ENDPOINT=" in command) and bare.startswith(
                ("twistd ", "python -m twisted_asgi")
            ):
                found.append((str(page.relative_to(ROOT)), command))
    return found


COMMANDS = _metrics_commands()


def test_the_docs_show_metrics_commands():
    """The collection finds the guide's commands (the test below cannot pass empty)."""
    assert len([c for page, c in COMMANDS if page == "docs/deployment.rst"]) >= 2


def _metrics_url(argv: list[str], environ: dict[str, str]) -> tuple[str, str]:
    """Where the command serves its metrics: (scheme, host:port)."""
    value = environ.get("TWISTED_ASGI_METRICS_ENDPOINT")
    if "--metrics-endpoint" in argv:
        value = argv[argv.index("--metrics-endpoint") + 1]
    assert value is not None
    host = re.search(r"interface=([\d.]+)", value)
    port = re.search(r"^(?:tcp|ssl):(?:port=)?(\d+)", value)
    assert port is not None, value
    scheme = "https" if value.startswith("ssl:") else "http"
    return scheme, f"{host.group(1) if host else '127.0.0.1'}:{port.group(1)}"


@pytest.mark.parametrize(("source", "command"), COMMANDS, ids=[f"{s}:{c}" for s, c in COMMANDS])
def test_documented_metrics_command_serves_and_counts(source, command, tmp_path):
    (tmp_path / "hello.py").write_text(HELLO)
    certs = make_certs(tmp_path)
    (tmp_path / "key.pem").write_bytes(certs["key"].read_bytes())
    (tmp_path / "cert.pem").write_bytes(certs["cert"].read_bytes())
    # The guide's metrics port, and its application port given with --port.
    command = re.sub(r"(?<![\w.])9100(?!\d)", str(free_port()), command)
    environ: dict[str, str] = {}
    argv, listens = _adapt(command, tmp_path, environ)
    if "--port" in argv:
        listens = [("tcp", ("127.0.0.1", int(argv[argv.index("--port") + 1])))]
    scheme, where = _metrics_url(argv, environ)
    context = ssl.create_default_context(cafile=str(certs["ca"])) if scheme == "https" else None
    proc = subprocess.Popen(
        argv,
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(ROOT), **environ),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert argv[0] != TWISTD or "-n" in argv, "a metrics command in the docs runs in the foreground"

    def served() -> float:
        url = f"{scheme}://{where}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=5, context=context) as response:
                text = response.read().decode("utf-8")
        except OSError:
            return -1.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "twisted_asgi_responses_total" and sample.labels == {
                    "protocol": "http/1.1",
                    "status_class": "2xx",
                }:
                    return sample.value
        return 0.0

    try:
        for kind, at in listens:
            # One answered request per listener (_answers fails only before connecting).
            wait_for(lambda k=kind, w=at: _answers(k, w, certs), 30, f"{kind} {at} to answer ({command})")
        assert _answers(*listens[0], certs)
        wait_for(lambda: served() == len(listens) + 1, 30, f"the metrics to count {len(listens) + 1} responses")
    finally:
        proc.send_signal(signal.SIGTERM)
        _reap(proc)
        output = proc.stdout.read().decode("utf-8", "replace") if proc.stdout else ""
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == 0, output
    assert "Traceback" not in output, output
