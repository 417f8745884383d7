"""Run ``python -m twisted_asgi`` as if a dependency had dropped or renamed a
private name (tests/test_upstream_fallback.py).

    python -m tests.upstream_strip [--rename PKG:OLD:NEW]... [--delete MODULE:ATTR]... -- ARGS...

``--rename twisted:_readers:_readers_gone`` rewrites every module of the
``twisted`` package, as it is imported, with the identifier ``_readers``
renamed (a release that renamed it: the package stays consistent with itself,
only code outside it that uses the old name is left behind). ``--delete
hpack.huffman:HuffmanEncoder`` imports the module and deletes the attribute
(a release that no longer has it). Then the server runs with ARGS, in this
process, as ``python -m twisted_asgi ARGS`` would.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import re
import runpy
import sys
from typing import Any


class _RenamingLoader(importlib.machinery.SourceFileLoader):
    renames: list[tuple[re.Pattern[str], str]] = []

    def get_code(self, fullname: str) -> Any:  # the source, rewritten; never the cached bytecode
        source = self.get_data(self.get_filename(fullname)).decode("utf-8")
        for pattern, new in self.renames:
            source = pattern.sub(new, source)
        return compile(source, self.get_filename(fullname), "exec", dont_inherit=True)


class _RenamingFinder(importlib.abc.MetaPathFinder):
    def __init__(self, packages: set[str]) -> None:
        self.packages = packages

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name.split(".")[0] not in self.packages:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or not (spec.origin or "").endswith(".py"):
            return spec
        spec.loader = _RenamingLoader(name, spec.origin)
        return spec


def main(argv: list[str]) -> None:
    split = argv.index("--")
    options, args = argv[:split], argv[split + 1 :]
    renames: dict[str, list[tuple[str, str]]] = {}
    deletes: list[tuple[str, str]] = []
    for flag, value in zip(options[::2], options[1::2], strict=True):
        if flag == "--rename":
            package, old, new = value.split(":")
            renames.setdefault(package, []).append((old, new))
        elif flag == "--delete":
            module, attr = value.split(":")
            deletes.append((module, attr))
        else:
            raise SystemExit(f"unknown option {flag}")
    if renames:
        loaded = [m for m in renames if m in sys.modules]
        assert not loaded, f"already imported: {loaded}"
        _RenamingLoader.renames = [
            (re.compile(rf"\b{re.escape(old)}\b"), new) for pairs in renames.values() for old, new in pairs
        ]
        sys.meta_path.insert(0, _RenamingFinder(set(renames)))
    for module, attr in deletes:
        obj: Any = importlib.import_module(module)
        *path, name = attr.split(".")
        for part in path:
            obj = getattr(obj, part)
        delattr(obj, name)
    sys.argv = ["twisted_asgi", *args]
    runpy.run_module("twisted_asgi", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
