"""The fence (issue 18): no module of the package touches a private name of a
dependency, except twisted_asgi/_upstream/ (one module per dependency, each
access commented with the upstream file and version it was read from).

The test walks the AST of every module and finds, outside ``_upstream/``:

* an attribute ``x._name`` (read, written, deleted; also ``getattr``,
  ``setattr``, ``hasattr``, ``delattr`` with the name as a string, and the
  name as a string anywhere else) where ``_name`` is a private name of a
  dependency and not one of our own;
* on ``self``/``cls`` in a class that subclasses a dependency's class, an
  attribute or a method or class attribute defined there whose name the
  source of one of its upstream base classes' modules has (an override of a
  private hook, or upstream state read or written);
* an import of a private module or name of a dependency (``from x import _y``,
  ``x._y``), or of one of the dependencies' internal modules (:data:`INTERNAL`).

A dependency's private names are the ``_name`` tokens of its installed source;
our own are the names the package defines (functions, classes, attributes
assigned on our own objects). A name of both is counted as ours on an object
that is not ``self`` (the test cannot tell whose object it is there).

:data:`ALLOWED` held the connection shells, with the exact number of private
names each used, while they were restructured (issue 17); every one is fenced
now and the list is empty. It stays in place so that a file can only shrink
out of it: a file that gains a private use fails, and one that loses some
fails until its number here is lowered.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import re
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "twisted_asgi"
FENCE = PACKAGE / "_upstream"

#: Modules of dependencies that are not named private but are no public API
#: (undocumented internals): importing one counts as one private use.
INTERNAL = frozenset(
    {
        "hpack.huffman",
        "hpack.huffman_constants",
        "hpack.huffman_table",
        "hpack.table",
        "h2.stream",
        "h2.frame_buffer",
        "h2.windows",
        "h2.utilities",
        "twisted.internet.process",
    }
)

#: File -> the number of distinct private names of dependencies it may use.
#: Empty: every private use is in twisted_asgi/_upstream/. Never add a file
#: (fence the new use instead).
ALLOWED: dict[str, int] = {}

_PRIVATE = re.compile(r"(?<!\w)_[A-Za-z0-9]\w*")
_ATTR_FUNCS = frozenset({"getattr", "setattr", "hasattr", "delattr"})


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and len(name) > 1


def _package_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if FENCE not in p.parents)


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@cache
def _trees() -> dict[Path, ast.Module]:
    return {path: ast.parse(path.read_text(encoding="utf-8"), str(path)) for path in PACKAGE.rglob("*.py")}


@cache
def dependencies() -> frozenset[str]:
    """Top-level names of the third-party packages the package imports."""
    names: set[str] = set()
    for tree in _trees().values():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return frozenset(n for n in names if n not in sys.stdlib_module_names and n not in ("twisted_asgi", "__future__"))


@cache
def _source_names(path: str) -> frozenset[str]:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    return frozenset(n for n in _PRIVATE.findall(text) if _is_private(n))


@cache
def upstream_private_names() -> frozenset[str]:
    """Every private name in the installed source of every dependency."""
    names: set[str] = set()
    for dep in dependencies():
        spec = importlib.util.find_spec(dep)
        if spec is None:
            continue
        roots = list(spec.submodule_search_locations or []) or [spec.origin]
        for root in roots:
            if root is None:
                continue
            path = Path(root)
            files = path.rglob("*.py") if path.is_dir() else [path]
            for file in files:
                if "test" in file.relative_to(path.parent).parts[1:-1]:
                    continue  # their own test suites
                names |= _source_names(str(file))
    return frozenset(names)


def _own_names() -> frozenset[str]:
    """Private names the package itself defines (on its own objects)."""
    names: set[str] = set()
    for path, tree in _trees().items():
        upstream_classes = _upstream_classes(path)
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
        for cls in ast.walk(tree):
            if not isinstance(cls, ast.ClassDef) or cls.name in upstream_classes:
                continue
            for node in ast.walk(cls):
                if (
                    isinstance(node, ast.Attribute)
                    and isinstance(node.ctx, ast.Store)
                    and isinstance(node.value, ast.Name)
                    and node.value.id in ("self", "cls")
                ):
                    names.add(node.attr)
                elif isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets
                ):
                    strings = (c.value for c in ast.walk(node.value) if isinstance(c, ast.Constant))
                    names.update(v for v in strings if isinstance(v, str))
    return frozenset(n for n in names if _is_private(n))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _upstream_classes(path: Path) -> dict[str, frozenset[str]]:
    """The classes of ``path`` with a dependency's class among their bases:
    name -> the private names of the modules those upstream classes come from."""
    tree = _trees()[path]
    if not any(isinstance(node, ast.ClassDef) for node in ast.walk(tree)):
        return {}
    module = importlib.import_module(_module_name(path))
    found: dict[str, frozenset[str]] = {}
    deps = dependencies()
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        names: set[str] = set()
        for base_node in node.bases:
            try:
                base = eval(ast.unparse(base_node), vars(module))  # a name or dotted name, resolved in the module
            except Exception:
                continue  # made inside a function from its locals: not resolvable here
            if not inspect.isclass(base):
                continue
            for ancestor in base.__mro__:
                if ancestor.__module__.split(".")[0] in deps:
                    source = inspect.getsourcefile(ancestor)
                    if source:
                        names |= _source_names(source)
        if names:
            found[node.name] = frozenset(names)
    return found


def private_uses(path: Path) -> dict[str, list[int]]:
    """The private names of dependencies that ``path`` uses: name -> lines."""
    tree = _trees()[path]
    upstream = upstream_private_names()
    own = _own_names()
    classes = _upstream_classes(path)
    deps = dependencies()
    uses: dict[str, list[int]] = {}
    #: name bound by an import -> the top-level package it comes from
    imported: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                imported[(alias.asname or alias.name).split(".")[0]] = alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            top = node.module.split(".")[0] if node.level == 0 and node.module else "twisted_asgi"
            for alias in node.names:
                imported[alias.asname or alias.name] = top

    def use(name: str, node: ast.AST) -> None:
        uses.setdefault(name, []).append(getattr(node, "lineno", 0))

    def on_object(name: str, base: ast.AST, cls_names: frozenset[str] | None, node: ast.AST) -> None:
        if not _is_private(name):
            return
        root = base
        while isinstance(root, ast.Attribute):
            root = root.value
        if isinstance(root, ast.Name) and root.id in imported:
            # A module or object imported by name: a dependency's, or not.
            if imported[root.id] in deps:
                use(name, node)
            return
        if isinstance(base, ast.Name) and base.id in ("self", "cls"):
            if cls_names is not None and name in cls_names:
                use(name, node)
            return
        if name in upstream and name not in own:
            use(name, node)

    def visit(node: ast.AST, cls_names: frozenset[str] | None) -> None:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets):
            return  # our own fields' names
        if isinstance(node, ast.ClassDef):
            inner = classes.get(node.name)
            if inner is not None:
                for item in node.body:
                    targets: list[str] = []
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                        targets = [item.name]
                    elif isinstance(item, ast.Assign):
                        targets = [t.id for t in item.targets if isinstance(t, ast.Name)]
                    elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                        targets = [item.target.id]
                    for name in targets:
                        if _is_private(name) and name in inner:
                            use(name, item)
            for child in ast.iter_child_nodes(node):
                visit(child, inner if inner is not None else None)
            return
        if isinstance(node, ast.Attribute):
            on_object(node.attr, node.value, cls_names, node)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _ATTR_FUNCS
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            on_object(node.args[1].value, node.args[0], cls_names, node)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.isidentifier()
            and _is_private(node.value)
            and node.value in upstream
            and node.value not in own
        ):
            use(node.value, node)  # a name kept as a string, for getattr() in a loop
        elif isinstance(node, ast.Import):
            for alias in node.names:
                _import(alias.name, None, node)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                _import(node.module, alias.name, node)
        for child in ast.iter_child_nodes(node):
            visit(child, cls_names)

    def _import(module: str, name: str | None, node: ast.AST) -> None:
        if module.split(".")[0] not in deps:
            return
        private = [part for part in module.split(".") if _is_private(part)]
        if name is not None and _is_private(name):
            private.append(name)
        for part in private:
            use(part, node)
        if module in INTERNAL:
            use(module, node)
        elif name is not None and f"{module}.{name}" in INTERNAL:
            use(f"{module}.{name}", node)

    visit(tree, None)
    return uses


def test_the_dependencies_are_found():
    # What the fence is about; a dependency missing here would be unchecked.
    assert {"twisted", "h2", "hpack", "hyperframe", "autobahn", "OpenSSL", "httptools"} <= dependencies()
    names = upstream_private_names()
    assert {"_readers", "_exitSignal", "_data_to_send", "_perMessageCompress"} <= names


@pytest.mark.parametrize("path", _package_files(), ids=_rel)
def test_no_private_use_outside_the_fence(path):
    rel = _rel(path)
    uses = private_uses(path)
    allowed = ALLOWED.get(rel, 0)
    where = "\n".join(f"  {name} (line {', '.join(map(str, lines))})" for name, lines in sorted(uses.items()))
    assert len(uses) <= allowed, (
        f"{rel} uses {len(uses)} private name(s) of dependencies, {allowed} allowed; move the new one(s) "
        f"into twisted_asgi/_upstream/ (with the upstream file and version it was read from, a fallback, "
        f"a drift test) and call it from there:\n{where}"
    )
    assert len(uses) == allowed, (
        f"{rel} uses {len(uses)} private name(s) of dependencies, fewer than the {allowed} on the "
        f"allow-list: lower ALLOWED[{rel!r}] to {len(uses)} so that it cannot grow back:\n{where}"
    )


def test_allow_list_names_only_existing_files():
    assert all((ROOT / rel).exists() for rel in ALLOWED)


def test_the_fence_sees_a_private_use():
    """The walk itself: each kind of private use in a module is found."""
    source = """
from twisted.internet import _sslverify
from twisted.internet.asyncioreactor import AsyncioSelectorReactor
from hpack.huffman import HuffmanEncoder

FIELDS = ("_writeDisconnected",)

def f(reactor, transport):
    reactor._exitSignal = None
    getattr(transport, "_tempDataLen", 0)

class R(AsyncioSelectorReactor):
    def _readOrWrite(self, selectable, read):
        return self._readers
"""
    tree = ast.parse(source)
    path = PACKAGE / "_fence_probe.py"
    _trees()[path] = tree
    try:
        module = type(sys)("twisted_asgi._fence_probe")
        exec(compile(tree, str(path), "exec"), module.__dict__)
        sys.modules[module.__name__] = module
        _upstream_classes.cache_clear()
        uses = private_uses(path)
    finally:
        del _trees()[path]
        sys.modules.pop("twisted_asgi._fence_probe", None)
        _upstream_classes.cache_clear()
    assert set(uses) == {
        "_sslverify",
        "hpack.huffman",
        "_writeDisconnected",
        "_exitSignal",
        "_tempDataLen",
        "_readOrWrite",
        "_readers",
    }
