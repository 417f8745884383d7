"""Sphinx configuration for the twisted-asgi documentation.

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (``tox -e docs``).
The configuration reference (cli.rst) is generated at build time from
:class:`twisted_asgi.config.Config` and ``twistd asgi``'s options by
``_ext/configref.py``, so it cannot go stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
# The checkout's package (not an installed copy) is what the docs describe.
sys.path[:0] = [str(DOCS.parent), str(DOCS / "_ext")]

from twisted_asgi import __version__  # noqa: E402

project = "twisted-asgi"
author = "the twisted-asgi authors"
copyright = "the twisted-asgi authors"
release = version = __version__

extensions = ["configref"]
root_doc = "index"
exclude_patterns = ["_build"]
templates_path: list[str] = []
html_static_path = ["_static"]
html_theme = "alabaster"
html_title = f"twisted-asgi {release}"
# Literal blocks are shell commands, config files and Python; no guessing.
highlight_language = "none"
nitpicky = False
