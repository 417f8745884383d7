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
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Config", "ConfigError", "describe_fields", "zero_meaning"]

KIB = 1024
MIB = 1024 * KIB


class ConfigError(ValueError):
    """A configuration value is out of range; the message names the field."""


def _f(default: Any, doc: str, *, flag: str | None = None, zero: str | None = None) -> Any:
    """A dataclass field whose metadata carries its documentation, CLI flag and
    what the value 0 means (for limits and timeouts)."""
    return field(default=default, metadata={"doc": doc, "flag": flag, "zero": zero})


@dataclass(frozen=True, slots=True)
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
        "Most header fields in one request; beyond it the client gets 431. "
        "100 is Apache's LimitRequestFields default.",
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
    limit_concurrent_connections: int = _f(
        0,
        "Open connections at once per process; new ones are closed at once "
        "beyond it (0: no limit).",
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

    # -- identity and behaviour --------------------------------------------
    server_name: str | None = _f(
        "twisted-asgi",
        "Value of the Server response header, None to send none. An app's own "
        "Server header always wins.",
        flag="--server-name",
    )
    send_date: bool = _f(True, "Send a Date header when the app gives none (RFC 9110 §6.6.1).")
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
    loop: str = _f("asyncio", "Event loop under the asyncio reactor: 'asyncio' or 'uvloop'.", flag="--loop")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first field that is out of range."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.startswith(("limit_", "timeout_")):
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ConfigError(f"{f.name} must be a number, not {value!r}")
                if value < 0:
                    raise ConfigError(f"{f.name} must be >= 0, not {value!r}")
                if f.name.startswith("limit_") and value != int(value):
                    raise ConfigError(f"{f.name} must be a whole number, not {value!r}")
        if self.limit_request_head_bytes < 1024:
            raise ConfigError("limit_request_head_bytes must be at least 1024")
        if self.limit_receive_buffer_bytes < 1:
            raise ConfigError("limit_receive_buffer_bytes must be at least 1")
        if self.lifespan not in ("auto", "on", "off"):
            raise ConfigError(f"lifespan must be 'auto', 'on' or 'off', not {self.lifespan!r}")
        if self.loop not in ("asyncio", "uvloop"):
            raise ConfigError(f"loop must be 'asyncio' or 'uvloop', not {self.loop!r}")
        if self.root_path and (not self.root_path.startswith("/") or self.root_path.endswith("/")):
            raise ConfigError(f"root_path must start with '/' and not end with one, not {self.root_path!r}")
        if self.server_name is not None and any(c in self.server_name for c in "\r\n\x00"):
            raise ConfigError("server_name must not contain CR, LF or NUL")

    def replace(self, **changes: Any) -> Config:
        """Return a copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)


def describe_fields() -> list[tuple[str, Any, str, str | None]]:
    """``(name, default, doc, flag)`` for every field, for docs and ``--help``."""
    return [
        (f.name, f.default, f.metadata["doc"], f.metadata["flag"]) for f in dataclasses.fields(Config)
    ]


def zero_meaning(name: str) -> str | None:
    """What 0 means for the limit or timeout ``name`` (None: 0 is not special)."""
    return Config.__dataclass_fields__[name].metadata.get("zero")
