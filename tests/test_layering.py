"""The sans-IO core imports no I/O framework (DESIGN.md, "Layering").

Two checks per core module: importing it in a fresh interpreter leaves none of
the forbidden packages in ``sys.modules``, and no ``import`` statement anywhere
in it (functions included, so lazy imports count) reaches them, directly or
through the package modules it imports.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "twisted_asgi"
FORBIDDEN = frozenset({"twisted", "asyncio", "autobahn", "django"})

# The core named in DESIGN.md; optional modules join when they exist.
CORE = ["config", "events", "fieldrules", "scope", "cycle", "http11"]
OPTIONAL = ["http2", "proxy", "wscycle", "metrics"]
MODULES = CORE + [name for name in OPTIONAL if (PACKAGE / f"{name}.py").exists()]


def _package_of(path: Path) -> list[str]:
    """The package a module file is in, as name parts (``twisted_asgi`` for a
    file outside the package: a test's sample)."""
    try:
        parts = path.relative_to(PACKAGE).with_suffix("").parts
    except ValueError:
        return ["twisted_asgi"]
    return ["twisted_asgi", *parts[:-1]]


def _import_names(node: ast.Import | ast.ImportFrom, package: list[str]) -> set[str]:
    """Absolute names an ``import`` statement names, relative ones resolved
    against ``package`` (``from . import x`` names ``package.x``, a module or
    a name of the package)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    if node.level == 0:
        return {node.module or ""}
    base = package[: len(package) - node.level + 1]
    if node.module:
        return {".".join([*base, node.module])}
    return {".".join([*base, alias.name]) for alias in node.names}


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module an ``import`` in ``path`` names, at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = _package_of(path)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= _import_names(node, package)
    return names


def _module_file(name: str) -> Path:
    """The file of package module ``name`` (a module or a package); for a name
    defined in a package (``from . import x``), the package's."""
    path = PACKAGE / (name.split(".", 1)[1].replace(".", "/") + ".py")
    if not path.exists():
        path = path.with_suffix("") / "__init__.py"
    if not path.exists():
        return _module_file(name.rsplit(".", 1)[0])
    return path


def reachable_imports(module: str) -> dict[str, set[str]]:
    """For ``module`` and every package module it imports, transitively: what each imports."""
    seen: dict[str, set[str]] = {}
    todo = [f"twisted_asgi.{module}"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen[name] = imported_modules(_module_file(name))
        todo += [n for n in seen[name] if n.startswith("twisted_asgi.")]
    return seen


@pytest.mark.parametrize("module", MODULES)
def test_no_forbidden_import_statement(module):
    """No import statement in the module, or in the package modules it reaches, names a forbidden package."""
    offenders = {
        (importer, name)
        for importer, names in reachable_imports(module).items()
        for name in names
        if name.split(".")[0] in FORBIDDEN
    }
    assert offenders == set()


@pytest.mark.parametrize("module", MODULES)
def test_import_in_fresh_interpreter_loads_no_framework(module):
    """Importing the module (from this checkout) in a new interpreter loads no forbidden package."""
    code = (
        "import importlib, json, sys\n"
        f"mod = importlib.import_module('twisted_asgi.{module}')\n"
        "print(json.dumps([mod.__file__, sorted(sys.modules)]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r})\n" + code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    path, loaded = json.loads(result.stdout)
    assert Path(path).resolve().is_relative_to(PACKAGE)
    assert sorted({name.split(".")[0] for name in loaded} & FORBIDDEN) == []


def test_the_checks_see_a_forbidden_import(tmp_path):
    """The static check does flag a lazy framework import inside a function (it can fail)."""
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from twisted.internet import reactor\n    import asyncio.events\n")
    assert {n.split(".")[0] for n in imported_modules(sample)} & FORBIDDEN == {"twisted", "asyncio"}


def test_core_modules_exist():
    """Every module the layering rule names as core is present and importable."""
    for module in CORE:
        assert importlib.util.find_spec(f"twisted_asgi.{module}") is not None


def test_endpoint_strings_live_in_listeners_without_a_cycle():
    """Every endpoint-string parser is in ``listeners`` (issue 17, build item 4),
    which imports neither ``server`` nor ``tap`` nor the connection modules, at any
    depth (imports inside functions count): the server <-> listeners cycle is gone."""
    reach = reachable_imports("listeners")
    ours = {name for names in reach.values() for name in names if name.startswith("twisted_asgi.")}
    for module in ("server", "tap", "channel", "runner", "h1channel", "h2channel", "websocket", "django"):
        assert f"twisted_asgi.{module}" not in ours, module
    server = imported_modules(PACKAGE / "server.py")
    assert "twisted_asgi.listeners" in server
    assert "endpoint_from_string" not in {
        node.name
        for node in ast.walk(ast.parse((PACKAGE / "server.py").read_text()))
        if isinstance(node, ast.FunctionDef)
    }


def test_runner_knows_no_framework_and_django_no_command_line():
    """The runner imports nothing of Django, at any depth: the Django adapter
    registers its refusal hint with it. The adapter reaches neither the command
    line (``tap``) nor ``server``: application loading is ``appload``'s, so the
    runner -> django -> tap -> server -> runner and tap <-> django cycles are gone
    (issue 17, build item 3)."""
    runner = {name for names in reachable_imports("runner").values() for name in names}
    assert "twisted_asgi.django" not in runner and "django" not in runner
    adapter = {name for names in reachable_imports("django").values() for name in names}
    assert "twisted_asgi.tap" not in adapter and "twisted_asgi.server" not in adapter
    assert "twisted_asgi.runner" in adapter  # where it registers its hint


def _package_import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports, anywhere in it (functions too),
    leaving out ``if TYPE_CHECKING:`` blocks (types only, never run)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        package = ["twisted_asgi", *parts[:-1]]
        name = ".".join(package if parts[-1] == "__init__" else [*package, parts[-1]])
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        typing_only = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for inner in ast.walk(node)
        }
        found: set[str] = set()
        for node in ast.walk(tree):
            if id(node) not in typing_only and isinstance(node, (ast.Import, ast.ImportFrom)):
                found |= _import_names(node, package)
        graph[name] = {dep for dep in found if dep.startswith("twisted_asgi.") and dep != name}
    return graph


def test_no_import_cycle_in_the_package():
    """No module of the package reaches itself through its imports, counting
    imports inside functions (issue 17: runner -> django -> tap -> server ->
    runner, server <-> listeners, server <-> workers, tap <-> django are gone)."""
    graph = _package_import_graph()
    assert len(graph) > 25
    cycles = []
    for start in graph:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    cycles.append(" -> ".join([*path, start]))
                elif nxt not in path:
                    stack.append((nxt, [*path, nxt]))
    assert cycles == []


#: The Twisted shells: the connection and its protocol handlers, the server, the runner.
SHELLS = ["channel", "h1channel", "h2channel", "websocket", "server", "runner"]
#: The protocol cores whose private names the shells must not touch.
CORES = ["http11", "http2", "cycle", "wscycle", "events", "scope"]


def _private_names_of(module: str) -> set[str]:
    """The private names a core module defines: top-level ones, and the
    ``self._x`` attributes (and ``__slots__`` entries) of its classes."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name.startswith("_"):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
            if node.attr.startswith("_") and not node.attr.startswith("__"):
                names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.id.startswith("_"):
            names.add(node.id)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("_"):
            names.add(node.value)  # a __slots__ entry
    return {name for name in names if not name.startswith("__")}


def _private_uses(source: str, where: str, private: set[str]) -> list[str]:
    """Imports of a core's private names, and ``obj._x`` (``obj`` not ``self``)
    for ``_x`` in ``private``, in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module in CORES:
            found.extend(f"{where}: from .{node.module} import {a.name}" for a in node.names if a.name.startswith("_"))
        elif isinstance(node, ast.Attribute) and node.attr in private:
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_shells_touch_no_private_name_of_a_core():
    """The connection and its handlers ask the cores through their public
    methods (issue 17, build items 1 and 3): no ``from .http11 import _x``, and
    no ``obj._x`` of another object where ``_x`` is a private name of a core
    (the shells' own ``self._x`` are theirs)."""
    private = set().union(*(_private_names_of(core) for core in CORES))
    assert {"_parser", "_sending"} <= private  # the check sees the cores' state
    sample = "from .http2 import _Stream\ndef f(conn):\n    return conn._parser, self._parser\n"
    assert _private_uses(sample, "sample", private) == [
        "sample: from .http2 import _Stream",
        "sample:3: conn._parser",
    ]
    found = []
    for shell in SHELLS:
        found += _private_uses((PACKAGE / f"{shell}.py").read_text(encoding="utf-8"), shell, private)
    assert found == []
