"""docs/security.rst lists every protection with the test that proves it: each
named test must exist, and every limit and timeout in Config must be listed."""

from __future__ import annotations

import re
from pathlib import Path

from twisted_asgi.config import describe_fields

ROOT = Path(__file__).resolve().parent.parent
PAGE = (ROOT / "docs" / "security.rst").read_text(encoding="utf-8")


def test_every_named_test_exists():
    """``tests/file.py::name`` on the page names a test function in that file."""
    refs = re.findall(r"``(tests/[\w/]+\.py)(?:::(\w+))?``", PAGE)
    assert len(refs) > 50
    for path, name in refs:
        source = (ROOT / path).read_text(encoding="utf-8")
        if name:
            assert re.search(rf"^def {name}\(", source, re.M), f"{path}::{name} does not exist"


def test_every_limit_and_timeout_is_listed():
    """Each limit_* and timeout_* field of Config appears on the page by name."""
    names = [name for name, *_ in describe_fields() if name.startswith(("limit_", "timeout_"))]
    assert len(names) > 20
    missing = [name for name in names if f"``{name}``" not in PAGE]
    assert missing == []
