"""Drift tests (issue 18): every upstream function we copied, override, or
whose private behaviour we rely on, has the source we read.

For each item, the sha256 of ``inspect.getsource`` of the installed upstream
function is compared with the one recorded for that dependency's version in
tests/upstream_drift.json. A new upstream release then fails here, in CI,
naming what to re-read, what of ours to re-check and where it is; not
quietly in production. An unknown (version, hash) pair fails too: a version
is supported once it has been read and recorded.

The items are :data:`EXPLICIT` (copies, and what the fenced fast paths rely
on) and every method of an upstream class that a class of the package
overrides, or whose private name the package calls (found by walking the
package, as tests/test_upstream_fence.py does). After re-reading and
re-checking, record the installed versions' hashes with::

    PYTHONPATH=. python -m tests.test_upstream_drift --record
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
import json
import sys
from dataclasses import dataclass
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
TABLE = Path(__file__).with_name("upstream_drift.json")

#: Import name -> distribution name, for the version.
DISTRIBUTIONS = {"twisted": "Twisted", "h2": "h2", "hpack": "hpack", "autobahn": "autobahn", "OpenSSL": "pyOpenSSL"}

#: Upstream module and qualified name (``<module>``: the whole module), what of
#: ours depends on it, and what to re-check there.
EXPLICIT: list[tuple[str, str, str]] = [
    # The reactor seam: twisted_asgi/_upstream/twisted.py.
    *(
        (
            "twisted.internet.asyncioreactor",
            f"AsyncioSelectorReactor.{name}",
            "twisted_asgi/_upstream/twisted.py fast_reactor_class (ASGIReactor.addReader/addWriter copy these, "
            "asgi_ready copies _readOrWrite; reactor_seam_problem checks the fields __init__ makes)",
        )
        for name in (
            "__init__",
            "addReader",
            "addWriter",
            "_readOrWrite",
            "_unregisterFDInAsyncio",
            "removeReader",
            "removeWriter",
        )
    ),
    (
        "twisted.internet.posixbase",
        "_DisconnectSelectableMixin._disconnectSelectable",
        "twisted_asgi/_upstream/twisted.py ASGIReactor.asgi_disconnect (its arguments and meaning)",
    ),
    *(
        (
            "twisted.internet.base",
            f"ReactorBase.{name}",
            "twisted_asgi/_upstream/twisted.py clear_exit_signal (the signal handlers set _exitSignal)",
        )
        for name in ("sigInt", "sigTerm", "sigBreak")
    ),
    (
        "twisted.application.app",
        "ApplicationRunner.startReactor",
        "twisted_asgi/_upstream/twisted.py clear_exit_signal (twistd reads reactor._exitSignal here)",
    ),
    (
        "twisted.internet.process",
        "Process.reapProcess",
        "twisted_asgi/_upstream/twisted.py reap_process (called on a pidfd's readiness, workers.py)",
    ),
    (
        "twisted.internet.process",
        "reapAllProcesses",
        "twisted_asgi/_upstream/twisted.py reap_process (its fallback)",
    ),
    *(
        (
            "twisted.internet.abstract",
            f"FileDescriptor.{name}",
            "twisted_asgi/_upstream/twisted.py direct_writer, direct_sequence_writer, output_pending (the write "
            "buffer: _tempDataLen, dataBuffer, offset, _writeDisconnected)",
        )
        for name in ("write", "writeSequence", "doWrite", "_postLoseConnection")
    ),
    *(
        (
            module,
            name,
            "twisted_asgi/_upstream/twisted.py tcp_paths_off (the names of the TCP fast paths an __init__ sets, "
            "read from its code: FileDescriptor's buffer fields, Connection's socket) and LeanServer.__init__ "
            "(sets what it sets; LEAN_SERVER_NAMES is its co_names)",
        )
        for module, name in (
            ("twisted.internet.abstract", "FileDescriptor.__init__"),
            ("twisted.internet.tcp", "Connection.__init__"),
        )
    ),
    *(
        (
            module,
            name,
            "twisted_asgi/_upstream/twisted.py FileSink (os.sendfile while the buffer is empty; "
            "wake_when_writable: producerPaused and startWriting, then doWrite with an empty buffer sends "
            "nothing, stops writing and resumes the producer)",
        )
        for module, name in (
            ("twisted.internet.abstract", "FileDescriptor.startWriting"),
            ("twisted.internet.tcp", "Connection.writeSomeData"),
        )
    ),
    *(
        (
            module,
            name,
            "twisted_asgi/_upstream/twisted.py close_soon (what loseConnection sets and doWrite ends in with an "
            "empty buffer; abortConnection's _aborting flag, checked before closing)",
        )
        for module, name in (
            ("twisted.internet.abstract", "FileDescriptor.loseConnection"),
            ("twisted.internet.tcp", "_AbortingMixin.abortConnection"),
        )
    ),
    *(
        (
            module,
            name,
            "twisted_asgi/_upstream/twisted.py _close_now (the transport's connectionLost, called for "
            "_disconnectSelectable without its removeReader/removeWriter: FileDescriptor.connectionLost makes them) "
            "and _lean_close (these steps, less those with nothing to do, for a LeanServer)",
        )
        for module, name in (
            ("twisted.internet.abstract", "FileDescriptor.connectionLost"),
            ("twisted.internet.tcp", "Connection.connectionLost"),
            ("twisted.internet.tcp", "_SocketCloser._closeSocket"),
        )
    ),
    *(
        (
            "twisted.internet.tcp",
            name,
            "twisted_asgi/_upstream/twisted.py tcp_addresses and tcp_setup (buildProtocol's address is the "
            "client getPeer gives; Server.server is the accepting Port, whose getHost is every connection's on "
            "a bound port)",
        )
        for name in ("Port.getHost", "Server.getHost", "Server.getPeer")
    ),
    (
        "twisted.internet.tcp",
        "Server.__init__",
        "twisted_asgi/_upstream/twisted.py LeanServer.__init__ (sets what it, Connection.__init__ and "
        "FileDescriptor.__init__ set, in one call; LEAN_SERVER_NAMES is their co_names; logstr and repstr made "
        "when first read) and tcp_addresses (Server.server is the accepting Port)",
    ),
    *(
        (
            "twisted.internet.tcp",
            name,
            "twisted_asgi/_upstream/twisted.py accept_ready (a lean copy of Port.doRead: numberAccepts scaled "
            "the same way, buildProtocol(_buildAddr(addr)), transport(skt, protocol, addr, port, sessionno, "
            "reactor); accept errors left to doRead and _accept; the attributes startListening sets)",
        )
        for name in ("Port.doRead", "_accept", "Port.startListening")
    ),
    # Importing the reactor without Twisted's TLS: twisted_asgi/_upstream/twisted_imports.py.
    (
        "twisted.internet.tcp",
        "<import twisted.internet._newtls>",
        "twisted_asgi/_upstream/twisted_imports.py import_reactor (the stand-in module has the three classes "
        "this takes; _check: tcp.Connection, Server, BaseClient built on them)",
    ),
    *(
        (
            "twisted.internet._newtls",
            name,
            "twisted_asgi/_upstream/twisted_imports.py stand-in classes (ConnectionMixin: FileDescriptor's methods "
            "while TLS is False, this class's methods adopted at the first startTLS; the _tlsClientDefault values)",
        )
        for name in ("ConnectionMixin", "ClientMixin", "ServerMixin")
    ),
    *(
        (
            "twisted.internet.posixbase",
            f"<import {module}>",
            "twisted_asgi/_upstream/twisted_imports.py import_reactor (deferred module bound as posixbase's "
            "tls/ssl/unix global; only attribute reads in connectSSL/listenSSL/listenUNIX... run it)",
        )
        for module in ("twisted.protocols.tls", "twisted.internet.ssl", "twisted.internet.unix")
    ),
    (
        "twisted.python.compat",
        "<import http.cookiejar>",
        "twisted_asgi/_upstream/twisted_imports.py defer_cookiejar (bound as compat.cookielib, never read)",
    ),
    # The HTTP/2 seam: twisted_asgi/_upstream/h2.py.
    (
        "h2.connection",
        "H2Connection.__init__",
        "twisted_asgi/_upstream/h2.py FastConnection.__init__ (_frame_dispatch_table) and configure() "
        "(encoder, decoder, local_settings, max_inbound_frame_size replaced)",
    ),
    *(
        (
            "h2.connection",
            f"H2Connection.{name}",
            "twisted_asgi/_upstream/h2.py FastConnection.send_response_headers/send_response_data (they do what "
            "these do to h2's state, less the general work)",
        )
        for name in ("send_headers", "send_data", "_get_stream_by_id", "_prepare_for_sending")
    ),
    *(
        (
            "h2.connection",
            f"H2Connection.{name}",
            "twisted_asgi/_upstream/h2.py PublicConnection (the public path: update_settings applies on the "
            "client's ACK, end_stream sends an empty DATA frame) and FastConnection.output_pending (data_to_send's "
            "buffer)",
        )
        for name in ("update_settings", "end_stream", "data_to_send", "_local_settings_acked")
    ),
    *(
        (
            module,
            name,
            "twisted_asgi/_upstream/h2.py FastConnection.receive_data/_fast_headers (a request's HEADERS frame read "
            "from the bytes: what h2's frame buffer, _receive_headers_frame and the connection's state machine "
            "do for it; the bytes h2's buffer holds taken back; _NO_OP_INPUTS) and _advance (h2's stream transitions "
            "without process_input's look-up, on the send seam too)",
        )
        for module, name in (
            ("h2.connection", "_decode_headers"),
            ("h2.connection", "H2ConnectionStateMachine"),
            ("h2.connection", "H2Connection._get_or_create_stream"),
            ("h2.connection", "H2Connection._open_streams"),  # the sweep of open_inbound_streams
            ("h2.stream", "H2Stream.receive_headers"),
            ("h2.stream", "H2Stream.closed"),
            ("h2.stream", "H2Stream.closed_by"),
            ("h2.stream", "H2StreamStateMachine"),
            ("h2.stream", "<module>"),  # its _transitions table, read by _steps()/_advance()
            ("h2.utilities", "is_informational_response"),
            ("h2.frame_buffer", "FrameBuffer"),
        )
    ),
    # HPACK: twisted_asgi/hpack_codec.py, twisted_asgi/_upstream/hpack.py.
    (
        "hpack.huffman",
        "HuffmanEncoder.encode",
        "twisted_asgi/_upstream/hpack.py huffman_encode (hpack_codec's literals)",
    ),
    (
        "hpack.huffman_table",
        "decode_huffman",
        "twisted_asgi/_upstream/hpack.py huffman_decode (hpack_codec's FieldDecoder)",
    ),
    (
        "hpack.huffman_constants",
        "<module>",
        "twisted_asgi/_upstream/hpack.py (REQUEST_CODES, REQUEST_CODES_LENGTH: RFC 7541 Appendix B)",
    ),
    (
        "hpack.hpack",
        "Encoder.encode",
        "twisted_asgi/hpack_codec.py StaticEncoder, h2's encoder in its place (same call, same attributes)",
    ),
    (
        "hpack.hpack",
        "Decoder.decode",
        "twisted_asgi/hpack_codec.py FieldDecoder, h2's decoder in its place (same call, attributes, errors)",
    ),
    # The TLS record layer: twisted_asgi/_upstream/openssl.py (ServerTLS in twisted_asgi/tls.py).
    *(
        (
            "OpenSSL.SSL",
            f"Connection.{name}",
            f"twisted_asgi/_upstream/openssl.py ({what})",
        )
        for name, what in (
            (
                "__init__",
                "_ssl, _into_ssl/_from_ssl: the SSL* and its memory BIOs (BIO_new(BIO_s_mem()), SSL_set_bio: "
                "fresh_bios makes them so too); SSL_MODE_AUTO_RETRY; _alpn_select_callback_args (None until the "
                "ALPN callback answers; forget_alpn_answer drops it after the handshake)",
            ),
            ("recv", "fast_recv calls SSL_read as it does, and its error mapping"),
            ("send", "fast_send calls SSL_write as it does, and its error mapping"),
            ("bio_read", "fast_drain calls BIO_read as it does; empty: b'' where it raises WantReadError"),
            ("bio_write", "fast_feed calls BIO_write as it does"),
            ("_raise_ssl_error", "fast_recv/fast_send raise pyOpenSSL's exceptions through it"),
        )
    ),
    # WebSocket: twisted_asgi/wsmask.py and the fast path in twisted_asgi/websocket.py.
    (
        "autobahn.websocket.protocol",
        "WebSocketProtocol.processData",
        "twisted_asgi/wsmask.py SmallFrameMasking (applyMask consulted before the masker is made, onFrameBegin "
        "called right after) and twisted_asgi/websocket.py _Framing.processData's fast path (what Autobahn "
        "concludes on a whole small frame)",
    ),
    (
        "autobahn.websocket.protocol",
        "WebSocketProtocol.onFrameBegin",
        "twisted_asgi/wsmask.py SmallFrameMasking.onFrameBegin (calls it after setting the masker)",
    ),
]

#: A class of the package whose ancestors include a class of these modules
#: has its overrides (and the private upstream methods it calls) pinned.
_CONCRETE = ("autobahn.", "h2.", "hpack.", "twisted.protocols.tls", "twisted.internet.asyncioreactor")


@dataclass(frozen=True)
class Item:
    module: str
    qualname: str
    ours: str

    @property
    def key(self) -> str:
        return f"{self.module}:{self.qualname}"

    @property
    def dependency(self) -> str:
        return self.module.split(".")[0]

    def source(self) -> str:
        module = importlib.import_module(self.module)
        if self.qualname == "<module>":
            return inspect.getsource(module)
        if self.qualname.startswith("<import "):
            return _import_statements(inspect.getsource(module), self.qualname[len("<import ") : -1])
        obj: Any = module
        for part in self.qualname.split("."):
            obj = inspect.getattr_static(obj, part)
        if isinstance(obj, property):
            obj = obj.fget
        if isinstance(obj, staticmethod | classmethod):
            obj = obj.__func__
        return inspect.getsource(obj)

    def digest(self) -> str:
        return hashlib.sha256(self.source().encode("utf-8")).hexdigest()[:20]

    def where(self) -> str:
        module = importlib.import_module(self.module)
        return Path(inspect.getsourcefile(module) or self.module).as_posix().split("site-packages/")[-1]


def _import_statements(source: str, target: str) -> str:
    """The module-level statements of ``source`` (a ``try`` block whole) that
    import the module ``target``, or a name from it (``<import target>`` items)."""

    def imports(node: ast.AST) -> bool:
        if isinstance(node, ast.Import):
            return any(alias.name == target for alias in node.names)
        if isinstance(node, ast.ImportFrom) and node.module:
            return node.module == target or any(f"{node.module}.{alias.name}" == target for alias in node.names)
        return False

    tree = ast.parse(source)
    found = [node for node in tree.body if any(imports(inner) for inner in ast.walk(node))]
    return "\n".join(ast.get_source_segment(source, node) or "" for node in found)


def _package_classes() -> list[tuple[str, type]]:
    """Classes of the package (by module path) with an upstream concrete ancestor,
    including the reactor classes made per loop."""
    from tests.test_upstream_fence import PACKAGE, _module_name

    found: list[tuple[str, type]] = []
    for path in sorted(PACKAGE.rglob("*.py")):  # the fence's modules too
        module = importlib.import_module(_module_name(path))
        rel = path.relative_to(ROOT).as_posix()
        for obj in vars(module).values():
            if issubclass(type(obj), type) and obj.__module__ == module.__name__:
                found.append((rel, obj))
    from twisted_asgi.reactor import _reactor_class

    found += [("twisted_asgi/_upstream/twisted.py", _reactor_class(uv)) for uv in (False, True)]
    from twisted_asgi._upstream.autobahn import HookedProtocol
    from twisted_asgi._upstream.autobahn_public import PublicProtocol
    from twisted_asgi.websocket import public_framing

    found += [("twisted_asgi/_upstream/autobahn.py", HookedProtocol)]
    found += [("twisted_asgi/_upstream/autobahn_public.py", PublicProtocol)]
    found += [("twisted_asgi/websocket.py", public_framing())]
    return [(rel, cls) for rel, cls in found if any(b.__module__.startswith(_CONCRETE) for b in cls.__mro__[1:])]


#: Upstream classes whose hooks a class of ours plays the role of without
#: subclassing them: Autobahn's framework-neutral protocol calls ``_onOpen``,
#: ``_onMessageBegin``, ... on its network adapter, which our _Framing is.
_ADAPTERS = {"autobahn.": ("autobahn.twisted.websocket", "WebSocketAdapterProtocol")}


def _upstream_definer(cls: type, name: str) -> type | None:
    for base in cls.__mro__[1:]:
        if base.__module__.startswith(_CONCRETE) and name in vars(base):
            return base
    for prefix, (module, qualname) in _ADAPTERS.items():
        if any(base.__module__.startswith(prefix) for base in cls.__mro__[1:]):
            adapter = getattr(importlib.import_module(module), qualname)
            if name in vars(adapter):
                return adapter
    return None


@cache
def items() -> dict[str, Item]:
    """Every pinned upstream function, by key."""
    from tests.test_upstream_fence import private_uses

    out = {item.key: item for item in (Item(m, q, ours) for m, q, ours in EXPLICIT)}
    used: dict[str, set[str]] = {}
    for rel, cls in _package_classes():
        if rel not in used:
            used[rel] = set(private_uses(ROOT / rel))
        names = {n for n, v in vars(cls).items() if inspect.isfunction(v) or isinstance(v, property)}
        for name in sorted(names | used[rel]):
            base = _upstream_definer(cls, name)
            if base is None:
                continue
            value = vars(base)[name]
            if not (inspect.isfunction(value) or isinstance(value, property)):
                continue
            how = "overrides" if name in names else "calls"
            item = Item(base.__module__, f"{base.__qualname__}.{name}", f"{rel} {cls.__qualname__} {how} it")
            out.setdefault(item.key, item)
    return dict(sorted(out.items()))


def recorded() -> dict[str, dict[str, dict[str, str]]]:
    """dependency -> version -> key -> hash."""
    return json.loads(TABLE.read_text(encoding="utf-8"))


def _installed(dependency: str) -> str:
    return version(DISTRIBUTIONS[dependency])


def record() -> None:
    """Add the installed versions' hashes to the table (after re-reading them)."""
    table = recorded() if TABLE.exists() else {}
    for item in items().values():
        dep = item.dependency
        table.setdefault(dep, {}).setdefault(_installed(dep), {})[item.key] = item.digest()
    for versions in table.values():
        for hashes in versions.values():
            hashes_sorted = dict(sorted(hashes.items()))
            hashes.clear()
            hashes.update(hashes_sorted)
    TABLE.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def test_every_dependency_has_items():
    deps = {item.dependency for item in items().values()}
    assert deps == set(DISTRIBUTIONS)


def test_the_overrides_are_found():
    # The walk over the package's classes finds what it should (some of them).
    keys = set(items())
    assert {
        "h2.stream:H2Stream._initialize_content_length",
        "h2.stream:H2Stream._track_content_length",
        "h2.connection:H2Connection._begin_new_stream",
        "h2.connection:H2Connection._receive_headers_frame",
        "h2.connection:H2Connection._receive_priority_frame",
        "h2.connection:H2Connection._receive_frame",
        "h2.connection:H2Connection.open_inbound_streams",
        "autobahn.twisted.websocket:WebSocketAdapterProtocol._onMessageBegin",
        "autobahn.websocket.protocol:WebSocketProtocol.onFrameBegin",
    } <= keys


@pytest.mark.parametrize("key", list(items()))
def test_upstream_source_is_the_one_we_read(key):
    item = items()[key]
    dep = item.dependency
    installed = _installed(dep)
    versions = recorded().get(dep, {})
    record_hint = "then record it: PYTHONPATH=. python -m tests.test_upstream_drift --record"
    if installed not in versions:
        known = ", ".join(sorted(versions)) or "none"
        pytest.fail(
            f"{DISTRIBUTIONS[dep]} {installed} has not been read (recorded: {known}). Re-read {item.qualname} in "
            f"{item.where()} and re-check {item.ours}; {record_hint} (and adjust setup.cfg's bounds)"
        )
    want = versions[installed].get(key)
    got = item.digest()
    if want is None:
        pytest.fail(
            f"{item.key} ({item.ours}) has no recorded hash for {DISTRIBUTIONS[dep]} {installed}: read "
            f"{item.qualname} in {item.where()}, check ours against it, {record_hint}"
        )
    assert got == want, (
        f"{DISTRIBUTIONS[dep]} {installed}: {item.qualname} in {item.where()} is not the source we read "
        f"(sha256 {got}, recorded {want}). Re-read it and re-check {item.ours}; {record_hint}"
    )


def test_recorded_versions_span_setup_cfg():
    """The oldest and the newest release setup.cfg allows are both recorded."""
    from tests.test_upstream_versions import lower_bounds

    lows = lower_bounds()
    table = recorded()
    for dep, dist in DISTRIBUTIONS.items():
        low = lows[dist.lower()]
        assert low in table[dep], f"{dist} {low} (setup.cfg's lower bound) is not recorded"


if __name__ == "__main__":
    if sys.argv[1:] == ["--record"]:
        record()
        print(f"recorded {len(items())} items for", {d: _installed(d) for d in DISTRIBUTIONS}, "in", TABLE)
    else:
        for item in items().values():
            print(item.key, item.digest(), "--", item.ours)
