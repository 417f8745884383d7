"""Build ASGI ``http`` and ``websocket`` scopes from our own parse of a request.

The scope is made once from the :class:`~twisted_asgi.events.Request` event; no
request is re-serialised for another parser. Per-connection keys (client, server,
scheme, extensions) are prepared once in a :class:`ConnectionInfo` template and
copied for each request.

Imports neither Twisted nor asyncio.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes

from .events import Request

__all__ = [
    "EARLY_HINT",
    "ConnectionInfo",
    "client_text",
    "decode_path",
    "http_scope",
    "unknown_tls_extension",
    "websocket_scope",
]

ASGI_VERSION = {"version": "3.0", "spec_version": "2.5"}

#: The early hints extension (ASGI extensions spec, "Early Hints"): offered on
#: every HTTP/1.1 and HTTP/2 connection (unless turned off), and taken out of
#: the scope of an HTTP/1.0 request, whose client may not get a 103.
EARLY_HINT = "http.response.early_hint"


class ConnectionInfo:
    """What every scope on one connection shares.

    ``server`` is ``(host, port)`` for IP listeners and ``(path, None)`` for unix
    sockets (ASGI www spec 2.2); ``client`` is None when unknown (unix sockets).

    (A plain class, not a ``@dataclass``: making a dataclass generates and
    compiles its methods at import, about 2 M instructions of every start-up.)
    """

    _FIELDS = (
        "client",
        "server",
        "tls",
        "root_path",
        "extensions",
        "state",
        "_http_template",
        "proxy_headers",
        "proxy_trusted",
    )

    def __init__(
        self,
        client: tuple[str, int] | None,
        server: tuple[str, int | None] | None,
        tls: bool = False,
        root_path: str = "",
        extensions: dict[str, Any] | None = None,
        state: dict[str, Any] | None = None,
        _http_template: dict[str, Any] | None = None,
        proxy_headers: Any = None,
        proxy_trusted: bool = False,
    ) -> None:
        self.client = client
        self.server = server
        self.tls = tls
        self.root_path = root_path
        self.extensions: dict[str, Any] = {} if extensions is None else extensions
        self.state = state
        self._http_template = _http_template
        #: A :class:`~twisted_asgi.proxy.ProxyHeaders` when proxy headers are on;
        #: ``proxy_trusted`` says whether this connection's peer may use them.
        self.proxy_headers = proxy_headers
        self.proxy_trusted = proxy_trusted

    def replaced(self, **changes: Any) -> ConnectionInfo:
        """A copy with ``changes`` (as :func:`dataclasses.replace` made one)."""
        values = {name: getattr(self, name) for name in self._FIELDS}
        values.update(changes)
        return ConnectionInfo(**values)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self._FIELDS)

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._FIELDS)
        return f"ConnectionInfo({fields})"

    def http_template(self) -> dict[str, Any]:
        """The keys every ``http`` scope on this connection shares."""
        if self._http_template is None:
            template: dict[str, Any] = {
                "type": "http",
                "asgi": dict(ASGI_VERSION),
                "scheme": "https" if self.tls else "http",
                "root_path": self.root_path,
                "client": self.client,
                "server": self.server,
                "extensions": self.extensions,
            }
            self._http_template = template
        return self._http_template


def client_text(client: Any) -> str:
    """A scope's ``client`` for a log line: ``host:port``, or ``unix socket``."""
    return f"{client[0]}:{client[1]}" if client else "unix socket"


def decode_path(raw_path: bytes) -> str:
    """Percent-decode ``raw_path`` and decode it as UTF-8 (ASGI ``path``).

    Bytes that are not valid UTF-8 become U+FFFD rather than failing the request.
    """
    if 0x25 not in raw_path:  # b"%" as an int: bytes `in` bytes raises and drops a TypeError
        try:
            return raw_path.decode("ascii")
        except UnicodeDecodeError:
            return raw_path.decode("utf-8", "replace")
    return unquote_to_bytes(raw_path).decode("utf-8", "replace")


def http_scope(request: Request, info: ConnectionInfo) -> dict[str, Any]:
    """The ``http`` scope for ``request`` arriving on a connection described by ``info``."""
    scope = (info._http_template or info.http_template()).copy()
    # The mutable values are the app's to change, per request (the scope is
    # one request's, ASGI www spec "HTTP Connection Scope"): copy them.
    scope["asgi"] = scope["asgi"].copy()
    extensions = scope["extensions"] = scope["extensions"].copy()
    version = scope["http_version"] = request.http_version
    if version == "1.0":
        # RFC 9110 §15.2: no 1xx response to an HTTP/1.0 client.
        extensions.pop(EARLY_HINT, None)
    scope["method"] = request.method.decode("ascii")
    raw_path = request.path
    path = raw_path.decode("ascii") if 0x25 not in raw_path and raw_path.isascii() else decode_path(raw_path)
    root_path = info.root_path
    scope["path"] = root_path + path if root_path else path
    scope["raw_path"] = raw_path
    scope["query_string"] = request.query
    scope["headers"] = request.headers
    if info.state is not None:
        scope["state"] = info.state.copy()
    if info.proxy_headers is not None:
        info.proxy_headers.apply(scope, info.proxy_trusted)
    return scope


def websocket_scope(request: Request, info: ConnectionInfo, subprotocols: list[str]) -> dict[str, Any]:
    """The ``websocket`` scope for an upgrade ``request``."""
    path = decode_path(request.path)
    scope: dict[str, Any] = {
        "type": "websocket",
        "asgi": dict(ASGI_VERSION),
        "http_version": request.http_version,
        "scheme": "wss" if info.tls else "ws",
        "path": info.root_path + path if info.root_path else path,
        "raw_path": request.path,
        "query_string": request.query,
        "root_path": info.root_path,
        "headers": request.headers,
        "client": info.client,
        "server": info.server,
        "subprotocols": subprotocols,
        # Connection-wide extensions (e.g. "tls") apply, the http.response.*
        # ones do not; the denial response is always offered (ASGI
        # extensions spec, "Websocket Denial Response").
        "extensions": {
            **{k: v for k, v in info.extensions.items() if not k.startswith("http.")},
            "websocket.http.response": {},
        },
    }
    if info.state is not None:
        scope["state"] = info.state.copy()
    if info.proxy_headers is not None:
        info.proxy_headers.apply(scope, info.proxy_trusted)
    return scope


def unknown_tls_extension() -> dict[str, Any]:
    """The ``tls`` scope extension with every value the spec allows to be
    unknown left unknown (filled in place once a handshake completes)."""
    return {
        "server_cert": None,
        "client_cert_chain": [],
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": None,
        "cipher_suite": None,
    }
