"""Turn a results file of ``run.py`` into ``docs/benchmarks.rst`` and a PNG chart.

::

    python benchmarks/report.py benchmarks/results/<date>.json            # page and chart
    python benchmarks/report.py benchmarks/results/<date>.json --no-chart

The page is generated: hand-written analysis (what bounds a target that is not met)
goes into ``benchmarks/notes.rst``, which the page includes.  The chart needs
matplotlib (installed in ``benchmarks/.venv-peers``); the page needs only the standard
library.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
SELF = "twisted-asgi"
NOTES = BENCH_DIR / "notes.rst"
#: Marks on a cell: the load generator used > 90% of its core; the load generator counted errors.
CLIENT_MARK = "†"
ERROR_MARK = "‡"
#: Scenario kinds with a server CPU time per request (per message, per new connection) and latencies.
CPU_KINDS = ("wrk", "h2load", "ws-echo", "tls-new", "workers")


def fmt(value: float | None) -> str:
    """A figure with as many digits as a noisy measurement deserves."""
    if value is None:
        return "–"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def grid(headers: list[str], rows: list[list[str]]) -> list[str]:
    """A reStructuredText grid table (it reads like a markdown table in plain text)."""
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    head_rule = "+" + "+".join("=" * (w + 2) for w in widths) + "+"

    def line(cells: list[str]) -> str:
        return "|" + "|".join(f" {c!s:<{w}} " for c, w in zip(cells, widths, strict=True)) + "|"

    out = [rule, line(headers), head_rule]
    for row in rows:
        out += [line(row), rule]
    return out


def _cell(document: dict, scenario: str, server: str) -> dict[str, Any]:
    return document["results"].get(scenario, {}).get(server, {})


def _figure(document: dict, scenario: str, server: str, key: str) -> dict[str, float] | None:
    cell = _cell(document, scenario, server)
    return cell.get("summary", {}).get(key) if cell.get("status") == "ok" else None


def _median(document: dict, scenario: str, server: str, key: str) -> float | None:
    figure = _figure(document, scenario, server, key)
    return figure["median"] if figure else None


def cell_text(document: dict, scenario: str, server: str, key: str, ranged: bool = True) -> str:
    """``median (min–max)`` of one figure, with the marks; ``n/a`` / ``error`` otherwise."""
    cell = _cell(document, scenario, server)
    status = cell.get("status")
    if status is None:
        return "–"
    if status == "n/a":
        return "n/a"
    if status == "error":
        return "error"
    figure = cell["summary"].get(key)
    if figure is None:
        return "–"
    text = fmt(figure["median"])
    if ranged and cell["summary"]["rounds_ok"] > 1:
        text += f" ({fmt(figure['min'])}–{fmt(figure['max'])})"
    if cell["summary"].get("client_saturated"):
        text += " " + CLIENT_MARK
    if cell["summary"].get("load_errors") or cell["summary"].get("errors"):
        text += " " + ERROR_MARK
    return text


def describe_errors(errors: dict[str, Any]) -> str:
    """One round's error counts in words."""
    words = {
        "listen_overflows": "listen-queue overflows (SYNs the kernel dropped: the server's listen backlog was full)",
        "status_line_unparsed_by_h2load": "responses h2load could not parse the status line of (counted as done)",
        "short_responses": "bytes per response, fewer than the scenario sends (wrong answers)",
        "non_2xx": "responses not 2xx",
    }
    return "; ".join(f"{value} {words.get(key, key.replace('_', ' '))}" for key, value in errors.items())


# --------------------------------------------------------------------------------------
# The performance targets, as ratios measured in the same run.


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def targets(document: dict) -> list[list[str]]:
    """One row per target: what, the measured ratio or value, met or not."""
    rows: list[list[str]] = []
    servers = document["servers"]

    def add(what: str, value: float | None, limit: float, at_most: bool, unit: str = "×", scenario: str = "") -> None:
        if value is None:
            failed = [v for v in servers if _cell(document, scenario, v).get("status") == "error"]
            why = f"failed in this run: {', '.join(failed)} (see Errors)" if failed else "not in this run"
            rows.append([what, "not measured", why])
            return
        met = value <= limit if at_most else value >= limit
        rows.append([what, f"{value:.2f}{unit}", "met" if met else "NOT met"])

    def peer(scenario: str, name: str, key: str) -> float | None:
        return _median(document, scenario, name, key) if name in servers else None

    me = SELF if SELF in servers else None
    if me is None:
        return [["all targets", "not measured", f"{SELF} was not in this run"]]
    keep_alive = "h1-keepalive-wrk"
    cpu = _median(document, keep_alive, me, "cpu_us_per_request")
    for name, limit in (("Daphne", 0.2), ("uvicorn", 1.0)):
        theirs = peer(keep_alive, name.lower(), "cpu_us_per_request")
        add(
            f"HTTP/1.1 keep-alive CPU/request ≤ {limit:.1f}× {name}",
            _ratio(cpu, theirs),
            limit,
            True,
            scenario=keep_alive,
        )
    for scenario, label in (("h2-tls", "HTTP/2 over TLS"), ("h2c", "HTTP/2 cleartext (h2c)")):
        mine = _median(document, scenario, me, "throughput")
        theirs = peer(scenario, "hypercorn", "throughput")
        add(f"{label} req/s ≥ 3× hypercorn", _ratio(mine, theirs), 3.0, False, scenario=scenario)
        theirs = peer(scenario, "uvicorn-zttp", "throughput")
        add(f"{label} req/s ≥ 1.0× uvicorn-zttp", _ratio(mine, theirs), 1.0, False, scenario=scenario)
    mine = _median(document, "ws-echo", me, "throughput")
    add(
        "WebSocket echo msg/s ≥ 1.0× uvicorn",
        _ratio(mine, peer("ws-echo", "uvicorn", "throughput")),
        1.0,
        False,
        scenario="ws-echo",
    )
    mine = _median(document, "ws-idle", me, "throughput")
    add("Idle WebSocket ≤ 15 KiB RSS each", mine, 15.0, True, " KiB", scenario="ws-idle")
    mine = _median(document, "h1-stream-1m", me, "throughput")
    theirs = peer("h1-stream-1m", "uvicorn", "throughput")
    add("1 MiB streaming MiB/s ≥ 1.0× uvicorn", _ratio(mine, theirs), 1.0, False, scenario="h1-stream-1m")
    mine = _median(document, keep_alive, me, "p99_us")
    theirs = peer(keep_alive, "uvicorn", "p99_us")
    add("p99 latency, keep-alive load ≤ 1.0× uvicorn", _ratio(mine, theirs), 1.0, True, scenario=keep_alive)
    # The second round's targets.
    for scenario, label in (("h2c-cpu", "HTTP/2 h2c"), ("h2-tls-cpu", "HTTP/2 over TLS")):
        mine = _median(document, scenario, me, "cpu_us_per_request")
        for name, limit in (("granian", 2.0), ("uvicorn-zttp", 1.0)):
            theirs = peer(scenario, name, "cpu_us_per_request")
            add(f"{label} CPU/request ≤ {limit:.1f}× {name}", _ratio(mine, theirs), limit, True, scenario=scenario)
    mine = _median(document, "h1-close", me, "throughput")
    for name, limit in (("uvicorn", 1.0), ("granian", 0.8)):
        theirs = peer("h1-close", name, "throughput")
        add(f"Connection: close req/s ≥ {limit:.1f}× {name}", _ratio(mine, theirs), limit, False, scenario="h1-close")
    for scenario, label in (("tls13-new-conn", "TLS 1.3"), ("tls12-new-conn", "TLS 1.2")):
        mine = _median(document, scenario, me, "throughput")
        theirs = peer(scenario, "uvicorn", "throughput")
        add(f"New {label} connection req/s ≥ 1.0× uvicorn", _ratio(mine, theirs), 1.0, False, scenario=scenario)
        mine = _median(document, scenario, me, "p99_us")
        theirs = peer(scenario, "uvicorn", "p99_us")
        add(
            f"New {label} connection, p99 time to first byte ≤ 1.0× uvicorn",
            _ratio(mine, theirs),
            1.0,
            True,
            scenario=scenario,
        )
    mine = _median(document, "startup", me, "throughput")
    add(
        "Startup to the first 200 ≤ 1.2× uvicorn",
        _ratio(mine, peer("startup", "uvicorn", "throughput")),
        1.2,
        True,
        scenario="startup",
    )
    mine = _median(document, "workers", me, "scaling")
    workers = _cell(document, "workers", me).get("measurements") or [{}]
    most = workers[0].get("workers_max")
    label = f"--workers {most or 'N'}: req/s ≥ 0.85× N × one worker's"
    if most == 1 and mine is not None:  # one worker is trivially 1.00x itself
        rows.append([label, "N = 1 only", "not measured: one worker beside the load generator"])
    else:
        add(label, mine, 0.85, False, scenario="workers")
    mine = _median(document, "tls-idle", me, "throughput")
    add(
        "Idle TLS connection RSS ≤ 1.0× uvicorn",
        _ratio(mine, peer("tls-idle", "uvicorn", "throughput")),
        1.0,
        True,
        scenario="tls-idle",
    )
    mine = _median(document, "h2c-idle", me, "throughput")
    theirs = peer("h2c-idle", "hypercorn", "throughput")
    add("Idle HTTP/2 connection RSS ≤ 1.0× hypercorn", _ratio(mine, theirs), 1.0, True, scenario="h2c-idle")
    return rows


def baseline_rows(document: dict) -> list[list[str]]:
    """Each row against the baseline install (``run.py --baseline``): the current install's
    median, the baseline's, their ratio, and whether the current one is worse by more than
    the limit (3%): lower throughput, or more CPU per request, time or memory."""
    baseline = document.get("baseline")
    if not baseline:
        return []
    current, ref = baseline.get("current", SELF), baseline["server"]
    limit = baseline.get("regression_limit", 0.03)
    rows = []
    for s in document["scenarios"]:
        figures = [("throughput", s["unit"], s["higher_is_better"])]
        if s["kind"] in CPU_KINDS:
            figures.append(("cpu_us_per_request", "µs CPU/" + ("msg" if s["kind"] == "ws-echo" else "req"), False))
        for key, unit, higher_is_better in figures:
            cells = (_cell(document, s["name"], current), _cell(document, s["name"], ref))
            if all(cell.get("status") in (None, "n/a") for cell in cells):
                continue
            mine, theirs = _median(document, s["name"], current, key), _median(document, s["name"], ref, key)
            if mine is None or theirs is None or not theirs:
                rows.append([s["title"], unit, fmt(mine), fmt(theirs), "–", "not measured"])
                continue
            ratio = mine / theirs
            worse = ratio < 1 - limit if higher_is_better else ratio > 1 + limit
            change = (ratio - 1) * 100
            verdict = f"WORSE by {abs(change):.1f}%" if worse else "ok"
            rows.append([s["title"], unit, fmt(mine), fmt(theirs), f"{ratio:.3f}×", verdict])
    return rows


def baseline_text(document: dict) -> str:
    """The comparison with the baseline as plain text for the terminal."""
    baseline = document.get("baseline") or {}
    rows = baseline_rows(document)
    worse = [row for row in rows if row[-1].startswith("WORSE")]
    headers = ["scenario", "unit", baseline.get("current", SELF), baseline.get("server", "baseline"), "ratio", "result"]
    lines = [
        f"run.py: {baseline.get('current', SELF)} against {baseline.get('server')} ({baseline.get('ref')});"
        f" medians, a row is WORSE past {baseline.get('regression_limit', 0.03):.0%}:"
    ]
    lines += grid(headers, rows)
    lines.append(f"run.py: {len(worse)} of {len(rows)} row(s) worse than the baseline by more than the limit")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# The page.


def _title(text: str, char: str) -> list[str]:
    return [text, char * len(text), ""]


def scaling_section(document: dict, scenario: dict) -> list[str]:
    """The --workers table: req/s per worker count and the scaling at the largest count."""
    servers = [
        v for v in document["servers"] if _cell(document, scenario["name"], v).get("status") not in (None, "n/a")
    ]
    counts = sorted(
        {
            int(n)
            for v in servers
            for n in _cell(document, scenario["name"], v).get("summary", {}).get("per_workers", {})
        }
    )
    out = _title("Scaling with --workers", "-")
    out += [
        "Keep-alive hello (wrk, 64 connections per worker): req/s with N worker processes pinned to",
        "CPUs 0..N-1 and the load generator on the last cores (medians). *Scaling* is req/s with the",
        "most workers over N times req/s with one: 1.00 is linear.",
        "",
    ]
    rows = []
    for v in servers:
        summary = _cell(document, scenario["name"], v).get("summary", {})
        per = summary.get("per_workers", {})
        scaling = summary.get("scaling")
        rows.append([v, *(fmt(per.get(str(n))) for n in counts), f"{scaling['median']:.2f}" if scaling else "error"])
    if rows:
        out += grid(["server", *(f"N={n}" for n in counts), "scaling"], rows) + [""]
    return out


def baseline_section(document: dict) -> list[str]:
    """The comparison of the current install with the baseline install of ``--baseline``."""
    baseline = document["baseline"]
    out = _title("Against the baseline", "-")
    out += [
        f"``{baseline.get('current', SELF)}`` (this checkout, ``.venv-self``) against ``{baseline['server']}``,",
        f"twisted-asgi installed from commit ``{baseline['commit']}`` (``--baseline {baseline['ref']}``), in the same",
        f"interleaved run. Ratio of the medians; a row worse by more than {baseline.get('regression_limit', 0.03):.0%}",
        "(lower throughput; more CPU, time or memory) is marked WORSE.",
        "",
    ]
    rows = baseline_rows(document)
    headers = ["scenario", "unit", baseline.get("current", SELF), baseline["server"], "ratio", "result"]
    return out + grid(headers, rows) + [""] if rows else out + ["No row was measured for both.", ""]


def render_rst(
    document: dict, chart: str | None = None, results_name: str = "", known: list[tuple[str, str]] | None = None
) -> str:
    """The whole benchmarks page for one results document; ``known`` (name, title) lists the
    suite's scenarios, and those the document lacks are listed as not yet measured."""
    servers = document["servers"]
    scenarios = document["scenarios"]
    params = document["parameters"]
    machine = document["machine"]
    out: list[str] = []
    out.append(f".. Generated by benchmarks/report.py from benchmarks/results/{results_name}; do not edit.")
    out.append("   Hand-written analysis belongs in benchmarks/notes.rst, which is included below.")
    out.append("")
    out += _title("Benchmarks", "=")
    out += [
        "twisted-asgi measured against Daphne, uvicorn (with httptools, and as *uvicorn-zttp* with",
        "``--http zttp --http2``, which serves HTTP/2 over TLS and h2c), hypercorn and granian by the",
        "project's own suite in ``benchmarks/``: every scenario against every server in one run, interleaved",
        (
            "(the order rotating by one place per round and per scenario: A B C, B C A, C A B), each server"
            if params.get("order") == "rotated"
            else "(A B C A B C), each server"
        )
        + " started fresh for each measurement, pinned to one core with",
        "the load generator on the other, on loopback. *twisted-bare* is the floor, not a server:",
        "a bare Twisted protocol on the asyncio reactor over uvloop, answering fixed bytes without parsing",
        "(``benchmarks/bare_twisted.py``), measured in the keep-alive scenarios only.",
        "",
    ]
    if params.get("smoke"):
        out += [
            ".. warning::",
            "",
            "   This is a smoke run (short, one round): the figures only show that the suite works.",
            "",
        ]
    elif params["rounds"] < 3 or params["duration_s"] < 10:
        out += [
            ".. warning::",
            "",
            f"   A short run ({params['rounds']} round(s) of {params['duration_s']} s, below the default 3 x 10 s):",
            "   the figures are preliminary"
            + ("; the min–max spread is not known from one round." if params["rounds"] < 2 else "."),
            "",
        ]
    out += _title("Running it", "-")
    out += [
        "::",
        "",
        "    apt-get install -y wrk nghttp2-client   # wrk and h2load",
        "    benchmarks/setup.sh                      # .venv-peers (pinned peers) and .venv-self (pip install .)",
        "    python benchmarks/run.py                 # 3 rounds, 10 s per measurement, about 45 minutes",
        "",
        "    benchmarks/setup.sh self                 # after changing the server: reinstall it alone",
        "    python benchmarks/run.py --rounds 5 --duration 20 --scenarios h1-keepalive-wrk,ws-echo",
        "    python benchmarks/run.py --servers twisted-asgi,uvicorn --smoke",
        "    python benchmarks/run.py --servers twisted-asgi --baseline main   # this checkout against main's commit",
        "    python benchmarks/run.py --scenarios workers --workers-max 12    # on a machine with 16 cores",
        "",
        "``run.py`` writes ``benchmarks/results/<date>.json`` and regenerates this page and its chart;",
        "``python benchmarks/report.py benchmarks/results/<date>.json`` regenerates them from a saved run.",
        "``run.py --list`` prints every command line without running anything. Run it on an otherwise",
        "idle machine: the figures below are only as quiet as the machine was.",
        "",
        "``--baseline REF`` installs twisted-asgi from the git commit REF into",
        "``benchmarks/.venv-ref-<commit>`` (once per commit: ``git archive`` and ``pip install``, with the",
        "versions of ``.venv-self`` as constraints) and runs it as ``twisted-asgi@<commit>`` beside",
        "twisted-asgi, interleaved, in every scenario twisted-asgi takes part in. The terminal and the",
        "results file get each row's ratio of the current install to the baseline; a row worse by more",
        "than 3% (medians) is marked WORSE. Such a run writes no page unless ``--docs`` is given.",
        "Reinstall the current checkout first (``benchmarks/setup.sh self``): the results file records",
        "the commit ``.venv-self`` was installed from.",
        "",
    ]
    out += _title("This run", "-")
    loadavg = ", ".join(f"{x:.2f}" for x in machine.get("loadavg", []))
    pinned = document.get("pinned")
    out += [
        f"- Date: {document['date']} (finished {document.get('finished', '?')})",
        (
            f"- Machine: {machine.get('cpu') or 'unknown CPU'}, {machine.get('cpus')} CPUs,"
            f" Linux {machine.get('kernel')}; load average at the start {loadavg}"
        ),
        "- Pinning: "
        + (
            f"server on CPU {pinned['server_cpu']}, load generator on CPU {pinned['client_cpu']} (``taskset``)"
            if pinned
            else "none"
        ),
        (
            f"- Rounds: {params['rounds']}; {params['duration_s']} s of load per measurement after"
            f" {params['warmup_s']} s of warm-up;"
            f" {params.get('idle_connections', params['ws_idle_connections'])} idle connections per idle scenario"
        ),
        f"- Command: ``{params['command']}``",
        (
            f"- Load generators: {document['tools'].get('wrk')}; {document['tools'].get('h2load')};"
            " ``benchmarks/wsload.py`` (WebSocket, idle connections); ``benchmarks/tlsfirst.py`` (new TLS connections)"
        ),
        "",
    ]
    version_rows = []
    for venv, packages in document.get("versions", {}).items():
        for name, version in sorted(packages.items()):
            version_rows.append([f".venv-{venv}", name, version])
    if version_rows:
        out += grid(["virtualenv", "package", "version"], version_rows) + [""]

    out += _title("Targets", "-")
    out += [
        "The project's performance targets, as ratios of twisted-asgi to a peer measured in the same run (medians).",
        "",
    ]
    out += grid(["target", "measured", "result"], targets(document)) + [""]

    headers = ["scenario", "unit", *servers]
    out += _title("Throughput", "-")
    out += [
        "Median across rounds, (min–max) when there was more than one round. Higher is better,",
        "except for startup (ms) and idle WebSockets (KiB of server RSS per connection).",
        f"{CLIENT_MARK}: the load generator used more than 90% of its core, so it may have been the limit;",
        f"{ERROR_MARK}: the load generator counted errors, or a round failed (see below).",
        "",
    ]
    rows = [
        [s["title"], s["unit"], *(cell_text(document, s["name"], v, "throughput") for v in servers)] for s in scenarios
    ]
    out += grid(headers, rows) + [""]

    out += _title("Server CPU time per request", "-")
    out += [
        "Microseconds of CPU (user + system, the server's process tree, ``/proc/PID/stat``) per",
        "request, per message for WebSocket echo, and per new connection (its TLS handshake and one",
        "request) in the new-TLS-connection rows. Lower is better. Steadier than throughput on a",
        "shared machine, because it does not depend on how much of the core the server got.",
        "",
    ]
    cpu_scenarios = [s for s in scenarios if s["kind"] in CPU_KINDS]
    rows = [
        [s["title"], *(cell_text(document, s["name"], v, "cpu_us_per_request") for v in servers)] for s in cpu_scenarios
    ]
    out += grid(["scenario", *servers], rows) + [""]

    out += _title("Latency", "-")
    out += [
        "p50 / p99 in microseconds (medians across rounds): per request for wrk and h2load; for",
        "WebSocket echo, the round trip of a window of messages sent together; for a new TLS",
        "connection, from the start of the TCP connection to the first byte of the response.",
        "",
    ]
    rows = []
    for s in cpu_scenarios:
        cells = []
        for v in servers:
            p50 = cell_text(document, s["name"], v, "p50_us", ranged=False)
            p99 = cell_text(document, s["name"], v, "p99_us", ranged=False)
            cells.append(p50 if p50 in ("n/a", "error", "–") else f"{p50.split()[0]} / {p99.split()[0]}")
        rows.append([s["title"], *cells])
    out += grid(["scenario", *servers], rows) + [""]

    out += _title("Load generator check", "-")
    out += [
        "*client / server*: the share of one core used by the load generator and by the server",
        f"during the measurement (medians). A client above 0.90 marks the row {CLIENT_MARK} above: it may",
        "have been the limit. A server well below 1.00 was not kept busy, or did not get its core",
        "(other work on the machine): compare CPU per request rather than throughput then.",
        "",
    ]
    rows = []
    for s in cpu_scenarios:
        cells = []
        for v in servers:
            client = _median(document, s["name"], v, "client_cpu_share")
            server_share = _median(document, s["name"], v, "server_cpu_share")
            status = _cell(document, s["name"], v).get("status")
            cells.append(f"{client:.2f} / {server_share or 0:.2f}" if client is not None else (status or "–"))
        rows.append([s["title"], *cells])
    out += grid(["scenario", *servers], rows) + [""]

    workers = [s for s in scenarios if s["kind"] == "workers"]
    if workers:
        out += scaling_section(document, workers[0])
    if document.get("baseline"):
        out += baseline_section(document)

    problems = []
    for s in scenarios:
        for v in servers:
            summary = _cell(document, s["name"], v).get("summary", {})
            for error in summary.get("errors", []):
                problems.append(f"- {s['name']} / {v}: {error}")
            for errors in summary.get("load_errors", []):
                problems.append(f"- {s['name']} / {v}: {describe_errors(errors)}")
    if problems:
        out += _title("Errors", "-")
        out += [line.replace("`", "'").replace("*", "\\*") for line in problems] + [""]

    if chart:
        out += _title("Chart", "-")
        out += [f".. image:: {chart}", "   :alt: Throughput and CPU per request of each server, per scenario", ""]

    out += _title("Command lines", "-")
    out += [
        "Exactly as run, with ``PORT`` and the per-run self-signed certificate (``cert.pem``,",
        "``key.pem``, P-256, made with ``openssl req -x509``) as placeholders; paths are relative",
        "to the repository root, where the load generators run (servers run in ``benchmarks/``,",
        "with ``benchmarks/`` on ``PYTHONPATH``).",
        "",
    ]
    for s in scenarios:
        commands = document["commands"].get(s["name"], {})
        if not commands:
            continue
        out += _title(s["title"], "~")
        out += ["::", ""]
        first = next(iter(commands.values()))
        out.append(f"    # load: {first['client']}")
        for lines in commands.values():
            out.append(f"    {lines['server']}")
        out.append("")
    missing = [(name, title) for name, title in (known or []) if name not in {s["name"] for s in scenarios}]
    if missing:
        out += _title("Not yet measured", "-")
        out += [
            "Scenarios of the suite that this run did not include; the next full run",
            "(``python benchmarks/run.py``) fills their rows in the tables above.",
            "",
        ]
        out += [f"- ``{name}``: {title}" for name, title in missing] + [""]
    if NOTES.exists():
        out += _title("Analysis", "-")
        out += [NOTES.read_text().rstrip(), ""]
    return "\n".join(out).rstrip() + "\n"


def write_rst(
    document: dict,
    path: Path,
    chart: Path | None = None,
    results_path: Path | None = None,
    known: list[tuple[str, str]] | None = None,
) -> None:
    """Write the page; ``chart`` is linked relative to the page's folder."""
    relative_chart = None
    if chart is not None:
        relative_chart = os.path.relpath(chart, path.parent)
    name = results_path.name if results_path else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_rst(document, relative_chart, name, known=known))


def suite_scenarios() -> list[tuple[str, str]]:
    """(name, title) of every scenario ``run.py`` has (run.py imports only the standard library)."""
    spec = importlib.util.spec_from_file_location("_bench_run_scenarios", BENCH_DIR / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return [(s.name, s.title) for s in module.SCENARIOS]


# --------------------------------------------------------------------------------------
# The chart.


def write_chart(document: dict, path: Path) -> None:
    """Small multiples: one panel per scenario and figure, bars per server, min–max whiskers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    servers = document["servers"]
    panels = []
    for s in document["scenarios"]:
        panels.append((s, "throughput", s["unit"]))
    for s in document["scenarios"]:
        if s["kind"] in CPU_KINDS:
            panels.append((s, "cpu_us_per_request", "µs CPU/" + ("msg" if s["kind"] == "ws-echo" else "req")))
    columns = 4
    rows = (len(panels) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 2.9 * rows), squeeze=False)
    palette = plt.get_cmap("tab10")
    colours = {name: palette(i) for i, name in enumerate(servers)}
    for axis, (scenario, key, unit) in zip(axes.flat, panels, strict=False):
        names, medians, lower, upper = [], [], [], []
        for server in servers:
            figure_ = _figure(document, scenario["name"], server, key)
            names.append(server)
            if figure_ is None:
                medians.append(0.0)
                lower.append(0.0)
                upper.append(0.0)
            else:
                medians.append(figure_["median"])
                lower.append(figure_["median"] - figure_["min"])
                upper.append(figure_["max"] - figure_["median"])
        positions = range(len(names))
        axis.bar(
            positions,
            medians,
            yerr=[lower, upper],
            color=[colours[n] for n in names],
            edgecolor=["black" if n == SELF else "none" for n in names],
            capsize=3,
        )
        for position, server in zip(positions, servers, strict=True):
            status = _cell(document, scenario["name"], server).get("status")
            if status in ("n/a", "error"):
                axis.text(position, 0, status, ha="center", va="bottom", fontsize=7, rotation=90)
        better = "higher" if (key == "throughput" and scenario["higher_is_better"]) else "lower"
        axis.set_title(f"{scenario['title']}\n{unit} ({better} is better)", fontsize=8)
        axis.set_xticks(list(positions))
        axis.set_xticklabels(names, rotation=30, ha="right", fontsize=7)
        axis.tick_params(axis="y", labelsize=7)
    for axis in list(axes.flat)[len(panels) :]:
        axis.axis("off")
    smoke = " (smoke run: not a measurement)" if document["parameters"].get("smoke") else ""
    figure.suptitle(
        f"twisted-asgi benchmarks, {document['date'][:10]}, {document['parameters']['rounds']} round(s) x "
        f"{document['parameters']['duration_s']} s; median, whiskers min–max{smoke}",
        fontsize=10,
    )
    versions = {**document.get("versions", {}).get("peers", {}), **document.get("versions", {}).get("self", {})}
    names = (SELF, "daphne", "uvicorn", "hypercorn", "granian", "Twisted")
    shown = [f"{name} {versions[name]}" for name in names if name in versions]
    figure.text(
        0.5,
        0.002,
        ", ".join(shown) + f"; Python {versions.get('python', '?')}. Command lines: docs/benchmarks.rst",
        ha="center",
        va="bottom",
        fontsize=7,
    )
    figure.tight_layout(rect=(0, 0.015, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)


def write_chart_with(results_path: Path, chart: Path, pythons: list[str]) -> str:
    """Draw the chart with the first interpreter that has matplotlib; a line saying what happened."""
    for python in pythons:
        if not python or not os.path.exists(python):
            continue
        done = subprocess.run(
            [python, str(Path(__file__).resolve()), str(results_path), "--chart-only", "--chart", str(chart)],
            check=False,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode == 0:
            return f"report.py: wrote {chart}"
        if "No module named 'matplotlib'" not in done.stderr:
            return f"report.py: chart failed: {done.stderr.strip()[-500:]}"
    return "report.py: no interpreter with matplotlib (run benchmarks/setup.sh); chart not drawn"


def main(argv: list[str] | None = None) -> int:
    """Regenerate the page and the chart from a results file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--rst", type=Path, default=ROOT / "docs" / "benchmarks.rst")
    parser.add_argument("--chart", type=Path, default=ROOT / "docs" / "_static" / "benchmarks.png")
    parser.add_argument("--no-chart", action="store_true")
    parser.add_argument("--chart-only", action="store_true")
    parser.add_argument(
        "--keep-chart", action="store_true", help="with --no-chart: the page still shows the existing chart"
    )
    args = parser.parse_args(argv)
    document = json.loads(args.results.read_text())
    if not args.chart_only:
        chart = None if args.no_chart and not args.keep_chart else args.chart
        write_rst(document, args.rst, chart, args.results, known=suite_scenarios())
        print(f"report.py: wrote {args.rst}")
    if not args.no_chart:
        if args.chart_only:
            write_chart(document, args.chart)
        else:
            print(
                write_chart_with(
                    args.results, args.chart, [str(BENCH_DIR / ".venv-peers" / "bin" / "python"), sys.executable]
                )
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
