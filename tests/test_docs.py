"""The Sphinx documentation builds without a warning, and its configuration
reference covers every ``Config`` field and every command-line option.

The reference (docs/cli.rst) is generated at build time by docs/_ext/configref.py;
these tests check the generator against the code, then build the whole site
with ``-W`` as ``tox -e docs`` does.
"""

from __future__ import annotations

import dataclasses
import html
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from twisted_asgi.config import Config, describe_fields
from twisted_asgi.tap import Options

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _configref() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_docs_configref", DOCS / "_ext" / "configref.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


configref = _configref()


def _long_options() -> set[str]:
    """Every long option ``twistd asgi`` accepts (without dashes), but --help/--version."""
    return {entry.rstrip("=") for entry in Options().longOpt} - {"help", "version"}


def test_every_config_flag_is_an_option() -> None:
    """Each flag a Config field names is a real option of ``twistd asgi``, so the
    reference's links from settings to options always have a target."""
    accepted = _long_options()
    missing = [(name, flag) for name, _d, _doc, flag in describe_fields() if flag and flag[2:] not in accepted]
    assert not missing, f"Config fields name flags that twistd asgi does not accept: {missing}"


def test_reference_covers_every_field() -> None:
    """The generated settings list has an entry, a default and the documentation
    for every Config field, in declaration order."""
    text = "\n".join(configref.config_rst())
    names = [f.name for f in dataclasses.fields(Config)]
    anchors = re.findall(r"^\.\. _config-(\w+):$", text, re.M)
    assert anchors == names
    for name, _default, doc, flag in describe_fields():
        entry = text.split(f".. _config-{name}:", 1)[1].split(".. _config-", 1)[0]
        assert configref.escape_text(" ".join(doc.split())) in " ".join(entry.split()), name
        assert "Default: " in entry, name
        assert (f":option:`twistd asgi {flag}`" in entry) if flag else ("No command-line option" in entry), name


def test_reference_covers_every_option() -> None:
    """The generated option list has exactly the options ``twistd asgi`` accepts,
    each with its help text and short form."""
    text = "\n".join(configref.options_rst())
    documented = set(re.findall(r"^\.\. option:: (?:-\w(?: <\w+>)?, )?--([\w-]+)", text, re.M))
    assert documented == _long_options()
    options = Options()
    for short, long in options.synonyms.items():
        if len(short) == 1 and long not in ("help", "version"):
            assert re.search(rf"^\.\. option:: -{short}\b.*--{long}\b", text, re.M), (short, long)
    assert "(undocumented)" not in text


def test_docs_build_with_no_warnings(tmp_path: Path) -> None:
    """``sphinx-build -W`` succeeds; every page is built; the reference page has an
    anchor for every option and names every Config field."""
    out = tmp_path / "html"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            "-d",
            str(tmp_path / "doctrees"),
            str(DOCS),
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert result.returncode == 0, f"sphinx-build failed:\n{result.stdout}\n{result.stderr}"
    pages = sorted(p.stem for p in DOCS.glob("*.rst"))
    for required in ("index", "quickstart", "cli", "behaviour"):
        assert required in pages
    missing = [page for page in pages if not (out / f"{page}.html").is_file()]
    assert not missing, f"pages not built: {missing}"
    cli = html.unescape((out / "cli.html").read_text(encoding="utf-8"))
    for option in _long_options():
        assert f'id="cmdoption-twistd-asgi-{option}"' in cli, option
    for field in dataclasses.fields(Config):
        assert field.name in cli, field.name
    # Flags render literally: no en dash where "--" was typed (issue 16, item 19),
    # and the options come in --help's groups, listeners first.
    assert not re.search(r"\u2013[a-z]", cli), re.findall(r".{30}\u2013[a-z].{30}", cli)[:5]
    groups = [cli.index(f">{title}<") for title in ("Listeners", "Application", "Protocols", "Limits", "Timeouts")]
    assert groups == sorted(groups)
    assert cli.index('id="cmdoption-twistd-asgi-endpoint"') < cli.index('id="cmdoption-twistd-asgi-app-dir"')
    # Every page is in some toctree (else -W fails: "document isn't included in
    # any toctree"); the index lists the core ones.
    index = (out / "index.html").read_text(encoding="utf-8")
    for page in ("quickstart", "cli", "behaviour"):
        assert f'href="{page}.html"' in index, f"{page} is not in the index's table of contents"


def test_readme_starts_with_the_two_commands() -> None:
    """The README's first two command blocks are the demo (a non-editable install,
    then twistd serving twisted_asgi.demo:app) and ``.ci/run``, which exists, is
    executable and is valid bash."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```sh\n(.*?)^```", readme, re.M | re.S)
    assert len(blocks) >= 2
    demo, tests = blocks[0].strip(), blocks[1].strip()
    assert "\n" not in demo and "pip install . " in demo and demo.endswith("twistd -n asgi twisted_asgi.demo:app")
    assert "-e " not in demo.split("pip install")[1], "the demo install must not be editable"
    assert tests == ".ci/run"
    script = ROOT / ".ci" / "run"
    assert os.access(script, os.X_OK)
    assert "set -euo pipefail" in script.read_text()
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)
