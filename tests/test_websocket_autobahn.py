"""The Autobahn testsuite harness (autobahn/): its case selection and the summary of a report.

The testsuite itself runs in ``tox -e autobahn`` (Python 2.7); these tests check, without it,
that the harness asks for the cases the project promises and that its summary counts right
and fails on a FAILED case.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import docutils.core
import docutils.utils

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "autobahn"))

import summary  # noqa: E402 (autobahn/summary.py is a script, not a package module)


def write_index(tmp_path: Path, cases: dict[str, tuple[str, str]]) -> Path:
    """An index.json as wstest writes it, for one agent."""
    data = {
        "twisted-asgi": {
            case: {"behavior": behavior, "behaviorClose": close, "duration": 1, "remoteCloseCode": 1000}
            for case, (behavior, close) in cases.items()
        }
    }
    path = tmp_path / "index.json"
    path.write_text(json.dumps(data))
    return path


def test_fuzzingclient_asks_for_the_promised_case_groups():
    """fuzzingclient.json runs groups 1-7, 9, 10, 12 and 13, and excludes nothing."""
    spec = json.loads((ROOT / "autobahn" / "fuzzingclient.json").read_text())
    assert spec["cases"] == [f"{group}.*" for group in (1, 2, 3, 4, 5, 6, 7, 9, 10, 12, 13)]
    assert spec["exclude-cases"] == []
    assert spec["exclude-agent-cases"] == {}


def test_verdict_is_the_worse_of_the_two():
    """A case's result is the worse of its message and close verdicts; a bad close verdict is FAILED."""
    assert summary.verdict({"behavior": "OK", "behaviorClose": "OK"}) == "OK"
    assert summary.verdict({"behavior": "INFORMATIONAL", "behaviorClose": "OK"}) == "INFORMATIONAL"
    assert summary.verdict({"behavior": "NON-STRICT", "behaviorClose": "OK"}) == "NON-STRICT"
    assert summary.verdict({"behavior": "OK", "behaviorClose": "NON-STRICT"}) == "NON-STRICT"
    assert summary.verdict({"behavior": "UNIMPLEMENTED", "behaviorClose": "OK"}) == "UNIMPLEMENTED"
    assert summary.verdict({"behavior": "OK", "behaviorClose": "WRONG CODE"}) == "FAILED"
    assert summary.verdict({"behavior": "OK", "behaviorClose": "UNCLEAN"}) == "FAILED"
    assert summary.verdict({"behavior": "FAILED", "behaviorClose": "OK"}) == "FAILED"
    assert summary.verdict({}) == "FAILED"


def test_counts_per_group_and_failed_cases(tmp_path):
    """Cases are counted per group in numeric order, with a total; FAILED cases are named."""
    index = write_index(
        tmp_path,
        {
            "1.1.1": ("OK", "OK"),
            "1.1.2": ("OK", "OK"),
            "3.2": ("NON-STRICT", "OK"),
            "7.1.6": ("INFORMATIONAL", "OK"),
            "10.1.1": ("OK", "OK"),
            "9.1.1": ("OK", "UNCLEAN"),
        },
    )
    results = summary.load(index)
    assert list(results) == ["1.1.1", "1.1.2", "3.2", "7.1.6", "9.1.1", "10.1.1"]
    assert summary.failed(results) == ["9.1.1"]
    rows = summary.table(results)
    assert rows[0] == ("1", "Framing", "2", "2", "0", "0", "0", "0")
    assert rows[3] == ("9", "Limits/performance", "1", "0", "0", "0", "0", "1")
    assert rows[-1] == ("", "**total**", "6", "3", "1", "1", "0", "1")
    assert summary.main([str(index)]) == 1


def test_summary_page_is_valid_rest(tmp_path):
    """The rendered page parses as reStructuredText without a warning and names the non-OK cases."""
    index = write_index(tmp_path, {"1.1.1": ("OK", "OK"), "3.2": ("NON-STRICT", "OK"), "12.1.1": ("OK", "OK")})
    results = summary.load(index)
    text = summary.render(results, {"date": "2026-01-01", "versions": "Autobahn 0.10.9", "cases": "1.* 3.* 12.*"})
    doctree = docutils.core.publish_doctree(
        text, settings_overrides={"report_level": docutils.utils.Reporter.INFO_LEVEL, "halt_level": 2}
    )
    assert doctree.astext().startswith("Autobahn testsuite report")
    assert "NON-STRICT: 3.2." in text
    assert "FAILED:" not in text
    out = tmp_path / "page.rst"
    assert summary.main([str(index), "--rst", str(out)]) == 0
    assert out.read_text() == summary.render(results, {})
