"""Every number and switch the server uses, in one frozen :class:`Config`.

Rules for this module:

* ``limit_*`` fields are sizes or counts. The sans-IO core enforces them.
* ``timeout_*`` fields are seconds. The shells enforce them through an injected
  clock, so tests advance a clock instead of sleeping. What ``0`` means is
  stated per field (``zero=``).
* Every default names where it came from.

Imports neither Twisted nor asyncio.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import field
from typing import Any, dataclass_transform

__all__ = ["Config", "ConfigError", "describe_fields", "zero_meaning"]

KIB = 1024
MIB = 1024 * KIB

# Field annotations (strings, under postponed evaluation) checked by type in
# validate(), so a wrong type is a ConfigError naming the field, not a TypeError.
_PLAIN_TYPES: dict[str, tuple[type, ...]] = {"bool": (bool,), "str": (str,), "str | None": (str, type(None))}


class ConfigError(ValueError):
    """A configuration value is out of range; the message names the field."""


def _f(default: Any, doc: str, *, flag: str | None = None, zero: str | None = None) -> Any:
    """A dataclass field whose metadata carries its documentation, CLI flag and
    what the value 0 means (for limits and timeouts)."""
    return field(default=default, metadata={"doc": doc, "flag": flag, "zero": zero})


# -- a frozen dataclass, made cheaply -------------------------------------------------
#
# ``@dataclass(frozen=True, slots=True)`` on Config's 67 fields generates the
# source of __init__, __repr__, __eq__, __hash__, __setattr__ and __delattr__,
# compiles it and makes the class twice (slots): about a twentieth of the
# instructions from exec to a plain server's first response. _frozen_record
# makes the same class from methods written once, below, that loop over the
# field table; dataclasses' own view of the class (``__dataclass_fields__``,
# for dataclasses.fields(), replace(), asdict(), is_dataclass(), and the
# signature) is a real dataclass of the same class body, built at its first
# read. The server itself reads the table (describe_fields, zero_meaning,
# validate), never that view.

#: (name, annotation, default, metadata) per field, in order (set by _frozen_record).
_TABLE: tuple[tuple[str, str, Any, Any], ...] = ()
_object_setattr = object.__setattr__


def _record_init(self: Any, *args: Any, **kwargs: Any) -> None:
    if args:
        if len(args) > len(_TABLE):
            raise TypeError(
                f"{type(self).__name__}() takes {len(_TABLE)} positional arguments but {len(args)} were given"
            )
        for (name, _type, _default, _meta), value in zip(_TABLE, args, strict=False):
            if name in kwargs:
                raise TypeError(f"{type(self).__name__}() got multiple values for argument {name!r}")
            kwargs[name] = value
    pop = kwargs.pop
    for name, _type, default, _meta in _TABLE:
        _object_setattr(self, name, pop(name, default))
    if kwargs:
        raise TypeError(f"{type(self).__name__}() got an unexpected keyword argument {next(iter(kwargs))!r}")
    self.__post_init__()


def _record_values(self: Any) -> tuple[Any, ...]:
    return tuple([getattr(self, name) for name, _type, _default, _meta in _TABLE])


def _record_eq(self: Any, other: object) -> Any:
    if other.__class__ is self.__class__:
        return _record_values(self) == _record_values(other)
    return NotImplemented


def _record_hash(self: Any) -> int:
    return hash(_record_values(self))


def _record_repr(self: Any) -> str:
    fields = ", ".join(f"{name}={getattr(self, name)!r}" for name, _type, _default, _meta in _TABLE)
    return f"{type(self).__qualname__}({fields})"


def _record_setattr(self: Any, name: str, value: Any) -> None:
    raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")


def _record_delattr(self: Any, name: str) -> None:
    raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")


def _record_getstate(self: Any) -> list[Any]:
    return list(_record_values(self))


def _record_setstate(self: Any, state: list[Any]) -> None:
    for (name, _type, _default, _meta), value in zip(_TABLE, state, strict=True):
        _object_setattr(self, name, value)


class _AsDataclass:
    """A class attribute that dataclasses reads (``__dataclass_fields__``,
    ``__dataclass_params__``, ``__signature__``): taken, at the first read,
    from a real frozen dataclass made of the record's class body, and then
    stored on the record class in place of this descriptor."""

    def __init__(self, name: str, body: dict[str, Any]) -> None:
        self.name = name
        self.body = body

    def __get__(self, instance: Any, owner: type) -> Any:
        twin = _dataclass_twin(owner, self.body)
        if self.name == "__signature__":
            import inspect

            value: Any = inspect.signature(twin)
        else:
            value = getattr(twin, self.name)
        setattr(owner, self.name, value)
        return value


_twins: dict[type, type] = {}


def _dataclass_twin(cls: type, body: dict[str, Any]) -> type:
    twin = _twins.get(cls)
    if twin is None:
        twin = _twins[cls] = dataclasses.dataclass(frozen=True)(type(cls.__name__, (), dict(body)))
    return twin


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def _frozen_record(cls: type) -> type:
    """``cls`` as ``@dataclass(frozen=True, slots=True)`` would make it (fields
    from its annotations, each default given by :func:`_f`), for the one class
    of this module (the methods above read the module's one field table)."""
    global _TABLE
    annotations = cls.__annotations__
    table = []
    for name, annotation in annotations.items():
        spec = cls.__dict__[name]
        table.append((name, annotation, spec.default, spec.metadata))
    _TABLE = tuple(table)
    names = tuple(annotations)
    body = {
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "__doc__": cls.__doc__,
        "__annotations__": annotations,
    }
    body.update((name, cls.__dict__[name]) for name in names)
    namespace = {
        name: value
        for name, value in cls.__dict__.items()
        if name not in annotations and name not in ("__dict__", "__weakref__")
    }
    namespace.update(
        __slots__=names,
        __match_args__=names,
        __init__=_record_init,
        __repr__=_record_repr,
        __eq__=_record_eq,
        __hash__=_record_hash,
        __setattr__=_record_setattr,
        __delattr__=_record_delattr,
        __getstate__=_record_getstate,
        __setstate__=_record_setstate,
    )
    for name in ("__dataclass_fields__", "__dataclass_params__", "__signature__"):
        namespace[name] = _AsDataclass(name, body)
    return type(cls.__name__, cls.__bases__, namespace)


@_frozen_record
class Config:
    """Limits, timeouts and switches of one server.

    Build it with keyword arguments; :meth:`validate` (called by ``__post_init__``)
    rejects impossible values with a :class:`ConfigError` that names the field.
    """

    # -- HTTP/1.1 limits -------------------------------------------------
    limit_request_head_bytes: int = _f(
        16 * KIB,
        "Largest request line plus headers (and chunked trailers), in bytes; "
        "beyond it the client gets 431. 16 KiB is node.js's default "
        "(--max-http-header-size).",
        flag="--limit-request-head",
    )
    limit_request_headers: int = _f(
        100,
        "Most header fields in one request; beyond it the client gets 431. 100 is Apache's LimitRequestFields default.",
        flag="--limit-request-headers",
    )
    limit_request_body_bytes: int = _f(
        100 * MIB,
        "Largest request body, in bytes; beyond it the client gets 413 "
        "(before the app is called when Content-Length says so, else the body "
        "stream ends the connection). 0 means no limit. 100 MiB matches the "
        "upload cap of common CDNs, so an app behind one sees no difference.",
        flag="--limit-request-body",
        zero="no limit",
    )
    limit_receive_buffer_bytes: int = _f(
        64 * KIB,
        "Request body bytes buffered for an app that has not called receive() "
        "yet; past it the server stops reading from the socket until the app "
        "catches up. 64 KiB is Twisted's own write buffer high-water mark.",
        flag="--limit-receive-buffer",
    )
    limit_requests_per_connection: int = _f(
        0,
        "Requests served on one keep-alive connection before the server closes "
        "it (0: no limit), like nginx's keepalive_requests.",
        flag="--limit-requests-per-connection",
        zero="no limit",
    )
    limit_listen_backlog: int = _f(
        2048,
        "Connections the kernel may queue on a listener (tcp:, tcp6:, unix:, ssl:) before the "
        "server accepts them, unless the endpoint string sets backlog=; capped by the kernel "
        "(net.core.somaxconn). Twisted's own default of 50 drops SYNs under a burst of new "
        "connections, and a dropped SYN costs its client a second.",
        flag="--backlog",
    )
    limit_concurrent_connections: int = _f(
        0,
        "Open connections at once per process; new ones are closed at once beyond it (0: no limit).",
        flag="--limit-concurrency",
        zero="no limit",
    )

    # -- timeouts ----------------------------------------------------------
    timeout_keep_alive: float = _f(
        5.0,
        "Seconds an idle keep-alive connection stays open waiting for the next "
        "request; 5 s as uvicorn, shorter than common load balancers' 60 s so "
        "the server, not the balancer, closes first only when idle.",
        flag="--timeout-keep-alive",
        zero="no keep-alive: close after each response",
    )
    timeout_request_head: float = _f(
        20.0,
        "Seconds from the first byte of a request (or the connection, or the "
        "start of TLS) until its headers are complete; defeats slowloris. "
        "Between Apache mod_reqtimeout's 20-40 s header window.",
        flag="--timeout-request-head",
        zero="no limit",
    )
    timeout_request_body: float = _f(
        60.0,
        "Seconds the server waits for the next bytes of a request body the app "
        "is waiting for (not counted while the server itself has paused reading); "
        "on expiry the client gets 408 or the connection closes. nginx's "
        "client_body_timeout is 60 s.",
        flag="--timeout-request-body",
        zero="no limit",
    )
    timeout_send: float = _f(
        60.0,
        "Seconds a response may stay blocked on a client that does not read "
        "(the write buffer stays full); then the connection is dropped and the "
        "app's send() raises. nginx's send_timeout is 60 s.",
        flag="--timeout-send",
        zero="no limit",
    )
    timeout_app_close: float = _f(
        10.0,
        "Seconds an app may keep running after its client went away (it has "
        "been sent http.disconnect) before its task is cancelled. Daphne's "
        "application_close_timeout is 10 s.",
        flag="--timeout-app-close",
        zero="never cancel",
    )
    timeout_response: float = _f(
        0.0,
        "Seconds an app has to finish a response (0: no limit). On expiry a "
        "response not yet started becomes 503, one already started is cut "
        "off. Daphne's --http-timeout.",
        flag="--timeout-response",
        zero="no limit",
    )
    timeout_graceful_shutdown: float = _f(
        25.0,
        "Seconds that in-flight requests get to finish after SIGTERM before "
        "their connections are closed; below Kubernetes' 30 s default grace "
        "period so the process exits before it is killed.",
        flag="--graceful-timeout",
        zero="close connections at once",
    )
    timeout_lifespan: float = _f(
        60.0,
        "Seconds the app gets to complete lifespan startup or shutdown.",
        flag="--timeout-lifespan",
        zero="wait forever",
    )
    timeout_paused_peer_check: float = _f(
        5.0,
        "While the server has stopped reading from a connection (an app's full "
        "queue, pipelined requests waiting), seconds between checks of the "
        "socket for a client that has gone (its FIN or reset, which are not "
        "read while paused); a gone client's connection is then closed as if "
        "lost. One poll() per paused connection per check; 5 s is the "
        "keep-alive timeout, the time an idle client's connection already lives.",
        flag="--timeout-paused-peer-check",
        zero="never check",
    )
    timeout_tls_close: float = _f(
        2.0,
        "Seconds the server waits, after closing a TLS connection (its "
        "close_notify sent), for the client's close_notify before it closes TCP "
        "anyway. RFC 8446 §6.1 does not require waiting at all; 2 s lets a "
        "client answer across a slow link and keeps reading meanwhile, so data "
        "still in flight does not turn the close into a reset.",
        flag="--timeout-tls-close",
        zero="wait for the client (until timeout_send)",
    )
    limit_pipelined_requests: int = _f(
        64,
        "Requests of one HTTP/1.1 connection parsed and not yet answered; past "
        "it the server stops parsing (keeping the rest of the read, at most one "
        "read) and stops reading until responses catch up. A read under 1 KiB "
        "is parsed whole (it holds at most 57 requests). 64 was the pause the "
        "server already used; pipelining clients send a few.",
        flag="--limit-pipelined-requests",
    )

    # -- identity and behaviour --------------------------------------------
    server_name: str | None = _f(
        "twisted-asgi",
        "Value of the Server response header, None to send none. An app's own Server header always wins.",
        flag="--server-name",
    )
    send_date: bool = _f(True, "Send a Date header when the app gives none (RFC 9110 §6.6.1).")
    early_hints: bool = _f(
        True,
        "Offer apps the ASGI early hints extension (http.response.early_hint): a hint "
        "becomes a '103 Early Hints' response with its Link fields, on HTTP/1.1 and "
        "HTTP/2, never to an HTTP/1.0 client (RFC 9110 §15.2). Off: the extension is "
        "not offered and hints sent anyway are dropped. Turn it off behind a proxy "
        "that takes a 103 from its upstream for the final response, as nginx 1.22 "
        "(Debian 12's) does.",
        flag="--no-early-hints",
    )
    root_path: str = _f(
        "",
        "Mount point of the app (ASGI root_path, WSGI SCRIPT_NAME): set it when a "
        "proxy strips a prefix; scope path then starts with it.",
        flag="--root-path",
    )
    lifespan: str = _f(
        "auto",
        "Lifespan protocol: 'on' (failure stops the server), 'off', or 'auto' "
        "(an app that raises on the lifespan scope is served without it).",
        flag="--lifespan",
    )
    loop: str = _f(
        "auto",
        "Event loop under the asyncio reactor: 'auto' (uvloop when it is installed, as it is with "
        "twisted-asgi on CPython for Linux and macOS, else asyncio's own), 'uvloop' or 'asyncio'. "
        "uvloop takes about a tenth less CPU per request; under it the reactor checks each "
        "socket for a pending error after a read, since uvloop closes the poll of a socket a client "
        "reset without telling Twisted (uvloop issue 552).",
        flag="--loop",
    )

    # -- WebSocket (RFC 6455, ASGI www spec 2.5); owned by websocket.py ------
    websocket: bool = _f(
        True,
        "Serve WebSocket upgrade requests (off: an 'Upgrade: websocket' request is served as a plain HTTP request).",
        flag="--no-websocket",
    )
    limit_ws_message_bytes: int = _f(
        1 * MIB,
        "Largest WebSocket message a client may send, in bytes, counted after "
        "permessage-deflate inflation; beyond it the server closes with 1009. "
        "1 MiB is the websockets library's max_size default.",
        flag="--limit-ws-message",
        zero="no limit",
    )
    limit_ws_frame_bytes: int = _f(
        1 * MIB,
        "Largest WebSocket frame payload a client may send, in bytes, as sent "
        "on the wire; beyond it the server closes with 1009. Same 1 MiB as "
        "the message limit.",
        flag="--limit-ws-frame",
        zero="no limit",
    )
    limit_ws_fragments: int = _f(
        1024,
        "Most frames in one WebSocket message a client may send, counting the "
        "first and every continuation frame, empty ones too; beyond it the "
        "server closes with 1009 (message too big: RFC 6455 §7.4.1 keeps 1008 "
        "for when no more suitable code such as 1009 applies, and §10.4 names "
        "'a long stream of small frames that are a part of a fragmented "
        "message' beside the big frame as what such limits are for). RFC 6455 "
        "sets no number; 1024 is chosen here, not taken from a peer: it lets a "
        "client send the default 1 MiB message in 1 KiB fragments (a 4 MiB one "
        "in 4 KiB fragments), and ends an endless run of empty continuation frames "
        "after about 6 KiB of them. A count rather than a floor on bytes per "
        "frame: a message's memory no longer depends on how it is fragmented, "
        "so what is left to bound is the work per frame and how long a message "
        "may stay open without growing.",
        flag="--limit-ws-fragments",
        zero="no limit",
    )
    limit_ws_queue: int = _f(
        32,
        "WebSocket messages received but not yet taken by the app; at this "
        "many (or once they hold limit_receive_buffer_bytes) the server stops "
        "reading from the socket until the app catches up. 32 is uvicorn's "
        "--ws-max-queue.",
        flag="--limit-ws-queue",
    )
    timeout_ws_handshake: float = _f(
        5.0,
        "Seconds the app has to answer websocket.connect (accept, close or a "
        "denial response); then the client gets 503. Daphne's "
        "--websocket_connect_timeout is 5 s.",
        flag="--timeout-ws-handshake",
        zero="no limit",
    )
    timeout_ws_ping_interval: float = _f(
        20.0,
        "Seconds between the keep-alive pings the server sends on an open WebSocket. Daphne's --ping-interval is 20 s.",
        flag="--timeout-ws-ping-interval",
        zero="no pings",
    )
    timeout_ws_ping: float = _f(
        30.0,
        "Seconds a client has to answer a ping (any frame counts) before the "
        "connection is dropped. Daphne's --ping-timeout is 30 s.",
        flag="--timeout-ws-ping",
        zero="wait forever",
    )
    timeout_ws_close: float = _f(
        10.0,
        "Seconds the server waits for the client's Close frame after sending "
        "its own, then drops the connection (RFC 6455 §7.1.1). 10 s is the "
        "websockets library's close_timeout.",
        flag="--timeout-ws-close",
        zero="wait forever",
    )
    timeout_ws_lifetime: float = _f(
        0.0,
        "Seconds a WebSocket may stay open at all; then the app is told and "
        "the socket is closed with 1001. Off by default; Daphne's "
        "--websocket_timeout uses 86400 s.",
        flag="--timeout-ws-lifetime",
        zero="no limit",
    )
    ws_compression: bool = _f(
        True,
        "Negotiate permessage-deflate (RFC 7692) when the client offers it.",
        flag="--no-ws-compression",
    )
    ws_allowed_origins: tuple[str, ...] = _f(
        (),
        "Origin header values a WebSocket handshake may carry ('*' matches "
        "any run of characters, as in 'https://*.example.com'); others get "
        "403. Empty: any origin. A request without Origin (not from a "
        "browser) is always let through.",
        flag="--ws-allowed-origin",
    )

    # -- deployment: proxies, PROXY protocol, workers --------------------------
    # (owned by proxy.py, listeners.py and workers.py; see docs/deployment.rst)
    proxy_headers: bool = _f(
        False,
        "Believe X-Forwarded-* (or RFC 7239 Forwarded) headers about the client, "
        "scheme, host and URL prefix, from peers in forwarded_allow_ips only.",
        flag="--proxy-headers",
    )
    forwarded_allow_ips: tuple[str, ...] = _f(
        ("127.0.0.0/8", "::1", "unix"),
        "Peers whose proxy headers are believed: IP addresses, CIDR networks, "
        "'unix' (unix-socket peers) or '*' (anyone). Loopback and unix sockets by "
        "default, as a proxy on the same host is the common case.",
        flag="--forwarded-allow-ips",
    )
    proxy_headers_style: str = _f(
        "x-forwarded",
        "Which proxy headers are read: 'x-forwarded' (X-Forwarded-For/-Proto/"
        "-Host/-Port) or 'forwarded' (RFC 7239). Only one family, because a "
        "proxy that sets one passes the other through from the client.",
        flag="--proxy-headers-style",
    )
    root_path_header: str = _f(
        "x-forwarded-prefix",
        "Header that carries the URL prefix a trusted proxy stripped; it becomes "
        "the scope's root_path. X-Forwarded-Prefix as Traefik and Spring send it; "
        "empty to read none.",
        flag="--root-path-header",
    )
    proxy_headers_trust: tuple[str, ...] = _f(
        ("for", "proto"),
        "What a trusted proxy's headers may set: 'for' (the client), 'proto' "
        "(the scheme), 'host' (X-Forwarded-Host, host=), 'port' (X-Forwarded-Port) "
        "and 'prefix' (root_path_header). uvicorn's default, for and proto: "
        "common proxy configurations pass a client's own X-Forwarded-Host and "
        "-Prefix through (issue 15, item 5); name host, port or prefix only when "
        "the proxy overwrites that header.",
        flag="--proxy-headers-trust",
    )
    proxy_protocol: bool = _f(
        False,
        "Every listener expects a PROXY protocol (v1 or v2) header from the load "
        "balancer before anything else, TLS included (the 'proxy:' endpoint "
        "prefix does it for one listener).",
        flag="--proxy-protocol",
    )
    proxy_protocol_allow_ips: tuple[str, ...] = _f(
        ("127.0.0.0/8", "::1", "unix"),
        "Peers allowed to send a PROXY protocol header (same syntax as "
        "forwarded_allow_ips); connections from others are closed at once.",
        flag="--proxy-protocol-allow-ips",
    )
    timeout_proxy_protocol: float = _f(
        10.0,
        "Seconds a PROXY-protocol connection has to deliver its header. A load "
        "balancer sends it with the connection; nginx's proxy_protocol_timeout is "
        "30 s, a third of it is still generous.",
        flag="--timeout-proxy-protocol",
        zero="no limit",
    )
    limit_proxy_protocol_bytes: int = _f(
        4096,
        "Largest PROXY protocol v2 header (with its TLVs), in bytes; longer ones "
        "close the connection. v1 lines are at most 107 bytes by the "
        "specification; 4 KiB holds HAProxy's and cloud balancers' TLVs.",
        flag="--limit-proxy-protocol",
    )
    metrics_endpoint: str | None = _f(
        None,
        "Serve Prometheus metrics at /metrics on this listener (an endpoint "
        "string of its own, e.g. tcp:port=9100:interface=127.0.0.1; never one "
        "of the application's); None: no metrics, and they cost nothing. Under "
        "--workers the supervisor serves the sum of its workers'.",
        flag="--metrics-endpoint",
    )
    workers: int = _f(
        0,
        "Worker processes sharing the listeners, supervised by a parent that "
        "restarts any that dies; 0 serves from this one process.",
        flag="--workers",
    )
    timeout_worker_start: float = _f(
        90.0,
        "Seconds a new worker has to start listening (imports and lifespan "
        "startup included) before it counts as failed; above the 60 s lifespan "
        "timeout.",
        flag="--timeout-worker-start",
        zero="wait forever",
    )
    timeout_worker_restart: float = _f(
        1.0,
        "Seconds before a worker that died is replaced; doubled after each death "
        "within a minute of its start, up to 30 s, so a crashing app does not "
        "spin (systemd's RestartSec idea).",
        flag="--timeout-worker-restart",
    )
    limit_worker_requests: int = _f(
        0,
        "Requests (HTTP requests, HTTP/2 streams and WebSocket handshakes) a "
        "worker of workers serves before it is recycled: a fresh worker is "
        "started, and once it serves the old one stops accepting and drains "
        "gracefully. Plus a random 0 to limit_worker_requests_jitter per worker, "
        "so that workers started together do not recycle together. For apps "
        "that leak memory or state; gunicorn's max_requests, uvicorn's "
        "--limit-max-requests.",
        flag="--limit-worker-requests",
        zero="no limit",
    )
    limit_worker_requests_jitter: int = _f(
        0,
        "Most requests added at random to each worker's limit_worker_requests "
        "(gunicorn's max_requests_jitter); 0 takes a tenth of "
        "limit_worker_requests, as workers that recycle at the same moment "
        "would all be starting at once.",
        flag="--limit-worker-requests-jitter",
        zero="a tenth of limit_worker_requests",
    )
    limit_worker_rss_mib: int = _f(
        0,
        "Resident memory, in MiB, past which a worker is recycled (replaced "
        "first, then drained). The supervisor reads each worker's RSS from "
        "/proc every second. granian's --workers-max-rss.",
        flag="--limit-worker-rss",
        zero="no limit",
    )
    timeout_worker_lifetime: float = _f(
        0.0,
        "Seconds a worker serves before it is recycled (replaced first, then "
        "drained), plus a random 0 to 10% per worker so that workers started "
        "together are not recycled together. granian's --workers-lifetime.",
        flag="--timeout-worker-lifetime",
        zero="no limit",
    )

    # -- development: --reload (reload.py, docs/quickstart.rst) ---------------
    reload: bool = _f(
        False,
        "Development: serve from one worker process and replace it when a "
        "watched file changes (the listening sockets stay open, so no "
        "connection is refused meanwhile), as uvicorn's --reload. Needs the "
        "watchfiles package (the 'reload' extra).",
        flag="--reload",
    )
    reload_dirs: tuple[str, ...] = _f(
        (),
        "Directories --reload watches, recursively; empty: the application "
        "directory (--app-dir, the current directory by default).",
        flag="--reload-dir",
    )
    reload_include: tuple[str, ...] = _f(
        ("*.py",),
        "Glob patterns of the files whose change restarts the worker under "
        "--reload, matched against the end of the path ('*.html', "
        "'templates/*'); patterns given add to '*.py'.",
        flag="--reload-include",
    )
    reload_exclude: tuple[str, ...] = _f(
        (),
        "Glob patterns of files --reload ignores even when included (an "
        "exclusion wins). Editor swap and backup files, bytecode and the "
        "directories .git, __pycache__, .venv, node_modules and the like are "
        "always ignored (watchfiles' default filter).",
        flag="--reload-exclude",
    )

    # -- HTTP/2 (RFC 9113); owned by http2.py and h2channel.py, see docs/http2.rst --
    http2: bool = _f(
        True,
        "Serve HTTP/2: offer 'h2' by ALPN on ssl: listeners, and take cleartext "
        "HTTP/2 (h2c) as h2c_prior_knowledge and h2c_upgrade allow.",
        flag="--no-http2",
    )
    h2c_prior_knowledge: bool = _f(
        True,
        "On cleartext listeners, serve connections that open with the HTTP/2 "
        "preface (RFC 9113 §3.3), as Envoy, nginx grpc_pass and Cloud Run send.",
        flag="--no-h2c-prior-knowledge",
    )
    ws_over_h2: bool = _f(
        True,
        "Serve WebSocket over HTTP/2 streams (RFC 8441): advertise "
        "SETTINGS_ENABLE_CONNECT_PROTOCOL and take an extended CONNECT with "
        "':protocol: websocket' as a WebSocket, over TLS and h2c alike (with "
        "websocket and http2 on). Off: the setting is 0 and such a request is "
        "a malformed stream (RST_STREAM), as RFC 8441 §3 asks of a server that "
        "did not send it. Chromium and Firefox use it when advertised.",
        flag="--no-ws-over-h2",
    )
    h2c_upgrade: bool = _f(
        False,
        "On cleartext listeners, switch a bodiless request with 'Upgrade: h2c', "
        "one HTTP2-Settings header and a Connection header naming both to HTTP/2 "
        "(RFC 7540 §3.2); on a connection switched from a trusted proxy, streams "
        "after the first keep its client, scheme and server. Off by default: RFC "
        "9113 §3.1 deprecates it, and behind a proxy that forwards the offer "
        "(HAProxy does) the 101 makes the proxy a blind tunnel for requests it "
        "never sees, past its rules. Prior knowledge is not affected.",
        flag="--h2c-upgrade",
    )
    limit_concurrent_streams: int = _f(
        100,
        "SETTINGS_MAX_CONCURRENT_STREAMS: requests one HTTP/2 connection may have "
        "in progress (app calls still running count); more are refused with "
        "REFUSED_STREAM. 100 is the least RFC 9113 §6.5.2 recommends, and nginx's "
        "http2_max_concurrent_streams.",
        flag="--limit-concurrent-streams",
    )
    limit_h2_stream_window_bytes: int = _f(
        65535,
        "SETTINGS_INITIAL_WINDOW_SIZE: request body bytes a client may send on one "
        "HTTP/2 stream ahead of the app reading them. The connection window is this "
        "times limit_concurrent_streams, so a slow stream never stalls the others. "
        "65,535 is the RFC 9113 §6.9.2 default (and the least allowed here).",
        flag="--limit-h2-stream-window",
    )
    limit_h2_frame_bytes: int = _f(
        16384,
        "SETTINGS_MAX_FRAME_SIZE: largest HTTP/2 frame payload a client may send, "
        "16,384 to 16,777,215; 16,384 is the RFC 9113 §4.2 default.",
        flag="--limit-h2-frame",
    )
    limit_h2_header_list_bytes: int = _f(
        16 * KIB,
        "SETTINGS_MAX_HEADER_LIST_SIZE: largest HTTP/2 request header list (names, "
        "values and 32 bytes a field, RFC 9113 §6.5.2); past it the stream gets 431. "
        "A header block (HEADERS and CONTINUATION, CVE-2024-27316) or a decoded list "
        "(HPACK bomb) past twice it ends the connection with ENHANCE_YOUR_CALM. "
        "16 KiB like limit_request_head_bytes.",
        flag="--limit-h2-header-list",
    )
    limit_h2_resets: int = _f(
        100,
        "Stream resets an HTTP/2 client may cause, by RST_STREAM (rapid reset, "
        "CVE-2023-44487) or by frames we must answer with RST_STREAM (MadeYouReset, "
        "CVE-2025-8671), or by streams refused; each response completed earns one "
        "back, up to this. When none are left: GOAWAY ENHANCE_YOUR_CALM and the "
        "connection's app calls are cancelled. 100, as limit_concurrent_streams: "
        "a browser may cancel a page's worth of requests at once.",
        flag="--limit-h2-resets",
        zero="no limit",
    )
    limit_h2_control_frames: int = _f(
        1000,
        "HTTP/2 frames that do no work a client may send (PING, SETTINGS, PRIORITY, "
        "WINDOW_UPDATE, empty DATA or CONTINUATION, unknown types: CVE-2019-9512, "
        "-9513, -9515, -9518); each request and each DATA frame received earns one "
        "back, each DATA frame sent two, up to this. When none are left: GOAWAY "
        "ENHANCE_YOUR_CALM. 1000 outlasts any "
        "browser's or gRPC client's keep-alive pings on a busy connection.",
        flag="--limit-h2-control-frames",
        zero="no limit",
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first field that is out of range."""
        for name, annotation, _default, _meta in _TABLE:
            value = getattr(self, name)
            if name.startswith(("limit_", "timeout_")):
                if (
                    isinstance(value, bool)
                    or not isinstance(value, (int, float))
                    or (isinstance(value, float) and not math.isfinite(value))
                ):
                    raise ConfigError(f"{name} must be a number, not {value!r}")
                if value < 0:
                    raise ConfigError(f"{name} must be >= 0, not {value!r}")
                if name.startswith("limit_") and value != int(value):
                    raise ConfigError(f"{name} must be a whole number, not {value!r}")
            elif annotation in _PLAIN_TYPES and not isinstance(value, _PLAIN_TYPES[annotation]):
                raise ConfigError(f"{name} must be {annotation}, not {value!r}")
        if self.limit_request_head_bytes < 1024:
            raise ConfigError("limit_request_head_bytes must be at least 1024")
        if self.limit_receive_buffer_bytes < 1:
            raise ConfigError("limit_receive_buffer_bytes must be at least 1")
        if self.lifespan not in ("auto", "on", "off"):
            raise ConfigError(f"lifespan must be 'auto', 'on' or 'off', not {self.lifespan!r}")
        if self.loop not in ("auto", "asyncio", "uvloop"):
            raise ConfigError(f"loop must be 'auto', 'asyncio' or 'uvloop', not {self.loop!r}")
        if self.root_path and (not self.root_path.startswith("/") or self.root_path.endswith("/")):
            raise ConfigError(f"root_path must start with '/' and not end with one, not {self.root_path!r}")
        if self.server_name is not None and any(c in self.server_name for c in "\r\n\x00"):
            raise ConfigError("server_name must not contain CR, LF or NUL")
        if self.limit_ws_queue < 1:
            raise ConfigError("limit_ws_queue must be at least 1")
        if self.limit_pipelined_requests < 1:
            raise ConfigError("limit_pipelined_requests must be at least 1")
        if not isinstance(self.ws_allowed_origins, tuple) or not all(
            isinstance(o, str) and o for o in self.ws_allowed_origins
        ):
            raise ConfigError(
                f"ws_allowed_origins must be a tuple of non-empty strings, not {self.ws_allowed_origins!r}"
            )
        self._validate_deployment()
        self._validate_http2()

    def _validate_http2(self) -> None:
        if self.limit_concurrent_streams < 1:
            raise ConfigError("limit_concurrent_streams must be at least 1")
        if not 65535 <= self.limit_h2_stream_window_bytes <= 2**31 - 1:
            raise ConfigError("limit_h2_stream_window_bytes must be from 65535 to 2147483647 (RFC 9113 §6.9.2)")
        if not 16384 <= self.limit_h2_frame_bytes <= 2**24 - 1:
            raise ConfigError("limit_h2_frame_bytes must be from 16384 to 16777215 (RFC 9113 §4.2)")
        if self.limit_h2_header_list_bytes < 1024:
            raise ConfigError("limit_h2_header_list_bytes must be at least 1024")

    def _validate_deployment(self) -> None:
        from .proxy import TrustList  # sans-IO, like this module

        for name in ("forwarded_allow_ips", "proxy_protocol_allow_ips"):
            value = getattr(self, name)
            if not isinstance(value, tuple):
                raise ConfigError(f"{name} must be a tuple of strings, not {value!r}")
            try:
                TrustList(value)
            except ValueError as exc:
                raise ConfigError(f"{name}: {exc}") from None
        if self.proxy_headers_style not in ("x-forwarded", "forwarded"):
            raise ConfigError(
                f"proxy_headers_style must be 'x-forwarded' or 'forwarded', not {self.proxy_headers_style!r}"
            )
        from .proxy import parse_believed

        try:
            if not isinstance(self.proxy_headers_trust, tuple):
                raise ValueError(f"not a tuple of strings: {self.proxy_headers_trust!r}")
            parse_believed(self.proxy_headers_trust)
        except ValueError as exc:
            raise ConfigError(f"proxy_headers_trust: {exc}") from None
        if self.root_path_header and not all(c.isalnum() or c in "-_" for c in self.root_path_header):
            raise ConfigError(f"root_path_header must be a header name, not {self.root_path_header!r}")
        if self.limit_proxy_protocol_bytes < 232:
            raise ConfigError("limit_proxy_protocol_bytes must be at least 232 (a v2 header with unix addresses)")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0:
            raise ConfigError(f"workers must be a whole number >= 0, not {self.workers!r}")
        if self.reload and self.workers > 1:
            raise ConfigError("reload serves from one worker process: it needs workers 0 or 1")
        for name in ("reload_dirs", "reload_include", "reload_exclude"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or not all(isinstance(v, str) and v for v in value):
                raise ConfigError(f"{name} must be a tuple of non-empty strings, not {value!r}")

    def replace(self, **changes: Any) -> Config:
        """Return a copy with ``changes`` applied (and validated)."""
        return Config(**{**{name: getattr(self, name) for name, _t, _d, _m in _TABLE}, **changes})


def describe_fields() -> list[tuple[str, Any, str, str | None]]:
    """``(name, default, doc, flag)`` for every field, for docs and ``--help``."""
    return [(name, default, meta["doc"], meta["flag"]) for name, _type, default, meta in _TABLE]


def zero_meaning(name: str) -> str | None:
    """What 0 means for the limit or timeout ``name`` (None: 0 is not special)."""
    for field_name, _type, _default, meta in _TABLE:
        if field_name == name:
            return meta.get("zero")  # type: ignore[no-any-return]
    raise KeyError(name)
