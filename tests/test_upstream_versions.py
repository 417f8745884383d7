"""setup.cfg's version ranges (issue 18, item 5) and the ``oldest`` tox env's
pins (item 6) agree, and every range has both ends.

Every runtime dependency has a lower and an upper bound; hpack and hyperframe
are declared; a dependency whose private names we use (the ones
tests/test_upstream_drift.py pins) stops before its next minor release, the
newest one recorded there being allowed. .ci/constraints-oldest.txt pins each
dependency to its lower bound; run this file to print what it should hold.
"""

from __future__ import annotations

import configparser
import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = ROOT / ".ci" / "constraints-oldest.txt"
TOX = ROOT / "tox.ini"

#: Runtime dependencies that must be declared, with both bounds.
RUNTIME = ("twisted", "httptools", "h2", "hpack", "hyperframe", "autobahn", "pyopenssl", "uvloop")
#: Their private names are used (and pinned by the drift tests): the upper
#: bound is the next minor release.
PRIVATE = {"twisted": "twisted", "h2": "h2", "hpack": "hpack", "autobahn": "autobahn"}


def _requirements(section: str, key: str) -> list[Requirement]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg", encoding="utf-8")
    lines = config[section][key].splitlines()
    return [Requirement(line) for line in (raw.split(" #")[0].strip() for raw in lines) if line and line[0] != "#"]


def install_requires() -> dict[str, Requirement]:
    return {r.name.lower(): r for r in _requirements("options", "install_requires")}


def _lower(req: Requirement) -> str:
    lows = [spec.version for spec in req.specifier if spec.operator == ">="]
    assert len(lows) == 1, f"{req}: one lower bound (>=) wanted"
    return lows[0]


def lower_bounds() -> dict[str, str]:
    """Lowercase distribution name -> the lowest allowed version: install_requires
    and the django extra."""
    reqs = list(install_requires().values()) + _requirements("options.extras_require", "django")
    return {r.name.lower(): _lower(r) for r in reqs}


def pins() -> str:
    """What .ci/constraints-oldest.txt holds after its comment."""
    reqs = list(install_requires().values()) + _requirements("options.extras_require", "django")
    return "".join(f"{r.name}=={_lower(r)}\n" for r in reqs)


def _constraints_text() -> tuple[str, str]:
    text = CONSTRAINTS.read_text(encoding="utf-8")
    comment = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
    body = "".join(line for line in text.splitlines(keepends=True) if not line.startswith("#"))
    return comment, body


def test_every_runtime_dependency_has_both_bounds():
    reqs = install_requires()
    assert set(RUNTIME) <= set(reqs), f"undeclared: {set(RUNTIME) - set(reqs)}"
    for name in RUNTIME:
        ops = {spec.operator for spec in reqs[name].specifier}
        assert ops == {">=", "<"}, f"{reqs[name]}: wants exactly a lower (>=) and an upper (<) bound"


def test_private_users_stop_before_the_next_minor_after_the_newest_read():
    from tests.test_upstream_drift import recorded

    reqs = install_requires()
    table = recorded()
    for name, dep in PRIVATE.items():
        newest = max(Version(v) for v in table[dep])
        (upper,) = [Version(spec.version) for spec in reqs[name].specifier if spec.operator == "<"]
        assert upper == Version(f"{newest.major}.{newest.minor + 1}"), (
            f"{reqs[name]}: its private names were read up to {newest} (tests/upstream_drift.json), so the "
            f"upper bound is <{newest.major}.{newest.minor + 1}"
        )
    for name in set(RUNTIME) - set(PRIVATE):
        (upper,) = [Version(spec.version) for spec in reqs[name].specifier if spec.operator == "<"]
        low = Version(_lower(reqs[name]))
        assert upper.release[1:] in ((), (0,), (0, 0)) and upper.major > low.major, (
            f"{reqs[name]}: no private names are used, so the upper bound is a next major release"
        )


def test_oldest_constraints_are_setup_cfgs_lower_bounds():
    _comment, body = _constraints_text()
    assert body == pins(), (
        ".ci/constraints-oldest.txt differs from setup.cfg's lower bounds; regenerate it: "
        "python tests/test_upstream_versions.py > .ci/constraints-oldest.txt"
    )


def test_tox_envs_oldest_and_newest():
    config = configparser.ConfigParser(interpolation=None)
    config.read(TOX, encoding="utf-8")
    oldest, newest = config["testenv:oldest"], config["testenv:newest"]
    assert oldest["basepython"].strip() == "python3.11"
    assert ".ci/constraints-oldest.txt" in oldest["set_env"]
    assert newest["basepython"].strip() == "python3.13"
    assert newest["pip_pre"].strip() == "true"
    for env in (oldest, newest):
        assert re.search(r"^\s*pytest -p no:cacheprovider", env.get("commands", config["testenv"]["commands"]), re.M)


def test_every_subpackage_is_packaged():
    """setup.cfg lists packages by name: a new one (twisted_asgi._upstream) must be there."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg", encoding="utf-8")
    listed = set(config["options"]["packages"].split())
    found = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "twisted_asgi").rglob("__init__.py")}
    assert found <= listed, f"not in setup.cfg's packages: {sorted(found - listed)}"


if __name__ == "__main__":
    comment, _body = _constraints_text()
    print(comment + pins(), end="")
