"""Prometheus metrics (``--metrics-endpoint``).

The server counts in plain integers on one :class:`Metrics` object per
process: a request costs a few dictionary additions, nothing is formatted
until a scrape. A scrape turns a :meth:`Metrics.snapshot` (a JSON-able dict)
into the Prometheus text format with ``prometheus_client``.

Under ``--workers`` every worker writes its snapshot to a file in a private
directory the supervisor made (at most ``interval`` seconds old, written
atomically); the supervisor serves the endpoint and adds the workers' files
up at each scrape. The counters of a worker that ended are folded into the
supervisor's own, so a counter never goes backwards when a worker is replaced;
its gauges (open connections) go with it.

This module imports neither Twisted's reactor nor asyncio: the shells call
its methods, :mod:`twisted_asgi.metrics_http` serves it.
"""

from __future__ import annotations

import json
import os
from bisect import bisect_left
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import Any, Protocol

__all__ = [
    "DURATION_BUCKETS",
    "LAG_BUCKETS",
    "Counted",
    "Metrics",
    "collect",
    "fold",
    "merge",
    "read_snapshots",
    "render",
    "status_class",
    "write_snapshot",
]

#: Request duration buckets (seconds): Prometheus client libraries' defaults.
DURATION_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
_FIRST_BOUND = DURATION_BUCKETS[0]
#: Event-loop lag buckets (seconds): a healthy loop answers within a millisecond.
LAG_BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

# Counters (summed across processes, kept when a worker ends), gauges (summed
# across live processes, dropped with their worker) and the one gauge where
# the worst process is the answer.
_COUNTERS = (
    "responses",
    "connections",
    "http2_streams",
    "websocket_messages",
    "bytes_received",
    "bytes_sent",
    "app_exceptions",
    "limits",
    "timeouts",
    "worker_restarts",
)
_GAUGES = ("connections_open", "http2_streams_open", "websockets_open")
_HISTOGRAMS = ("duration", "loop_lag")

_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")


def status_class(status: int) -> str:
    """``"2xx"`` for 200..299; statuses outside 100..599 (WebSocket close codes
    logged as statuses) count as ``"other"``."""
    return _CLASSES[status // 100 - 1] if 100 <= status < 600 else "other"


class Counted(Protocol):
    """What the metrics read of an open connection."""

    #: ``"http/1.1"``, ``"http/2"`` or ``"websocket"``: what it speaks now.
    protocol_name: str
    bytes_received: int
    bytes_sent: int
    ws_messages_received: int
    ws_messages_sent: int

    @property
    def streams_open(self) -> int:
        """HTTP/2 streams open on it (0 for other protocols)."""


class _Histogram:
    """Cumulative-at-render histogram: one count per bucket, a sum and a count."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        # One more than the bounds: the +Inf bucket.
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def snapshot(self) -> dict[str, Any]:
        return {"counts": list(self.counts), "sum": self.sum}


#: The duration buckets of one status class in :attr:`_Responses.rows` (the
#: 14 bounds and +Inf, padded to 16).
_ROW = 16


class _Responses:
    """One protocol's responses, in plain lists: a response costs one list
    addition and a float addition; the status classes and the histogram are
    added up, and labelled, only at a snapshot.

    ``first[status]`` counts the responses of each status (0..999) that took at
    most the first duration bound (most responses: no bisection, no status
    class computed); ``rows[status // 100 * _ROW + bucket]`` the others, by
    status class and duration bucket; ``sum`` the durations."""

    __slots__ = ("first", "rows", "sum")

    def __init__(self) -> None:
        self.first = [0] * 1000
        self.rows = [0] * (10 * _ROW)
        self.sum = 0.0

    def classes(self) -> list[int]:
        """Responses by status class (index ``status // 100``)."""
        first, rows = self.first, self.rows
        return [sum(first[c * 100 : c * 100 + 100]) + sum(rows[c * _ROW : c * _ROW + _ROW]) for c in range(10)]

    def counts(self) -> list[int]:
        """Responses by duration bucket (the last: +Inf)."""
        counts = [sum(self.rows[c * _ROW + b] for c in range(10)) for b in range(len(DURATION_BUCKETS) + 1)]
        counts[0] += sum(self.first)
        return counts


class Metrics:
    """The counters of one server process.

    Every method is cheap: a list or dictionary addition or two, nothing
    formatted or labelled until :meth:`snapshot`. ``protocol`` is one of
    ``"http/1.1"``, ``"http/2"``, ``"websocket"``. The request methods take the
    same arguments as the access log's (:class:`twisted_asgi.server.AccessLog`),
    so both are fed from the same place.
    """

    def __init__(self) -> None:
        self._responses: dict[str, _Responses] = {p: _Responses() for p in ("http/1.1", "http/2", "websocket")}
        self._http1 = self._responses["http/1.1"]
        #: Request.http_version -> its protocol's responses.
        self._versions = {"1.0": self._http1, "1.1": self._http1, "2": self._responses["http/2"]}
        self.connections = 0
        #: The open connections (the server's own set of them): their bytes,
        #: protocols and streams are read at a snapshot.
        self.live: Collection[Counted] = ()
        self.http2_streams = 0
        self.websockets_open = 0
        self.websocket_messages: dict[str, int] = {"received": 0, "sent": 0}
        self.bytes_received: dict[str, int] = {}
        self.bytes_sent: dict[str, int] = {}
        self.app_exceptions: dict[str, int] = {}
        self.limits: dict[str, int] = {}
        self.timeouts: dict[str, int] = {}
        self.worker_restarts: dict[str, int] = {}
        self.loop_lag = _Histogram(LAG_BUCKETS)
        self.loop_lag_last = 0.0

    # -- requests and responses -----------------------------------------------------

    def response(self, protocol: str, status: int, duration: float) -> None:
        counted = self._responses[protocol]
        if not 0 <= status < 1000:
            status = 0  # counted as "other"
        if duration <= _FIRST_BOUND:
            counted.first[status] += 1
        else:
            counted.rows[status // 100 * _ROW + bisect_left(DURATION_BUCKETS, duration)] += 1
        counted.sum += duration

    def log_http(self, info: Any, request: Any, status: int, size: int, duration: float) -> None:
        """A response written (the access log's hook): :meth:`response`, inlined
        (it runs once per request): the protocol from the request's version
        (one dictionary lookup), the status as it is (a server's status:
        100..599), and for most responses no bisection."""
        try:
            counted = self._versions[request.http_version]
        except (AttributeError, KeyError):  # refused before a request line was known
            counted = self._http1
        if duration <= _FIRST_BOUND:
            counted.first[status] += 1
        else:
            counted.rows[status // 100 * _ROW + bisect_left(DURATION_BUCKETS, duration)] += 1
        counted.sum += duration

    def http_hook(self, seconds: Callable[[], float]) -> Callable[[Any, int, int, float | None], float]:
        """The connections' access-log hook when the metrics are the only sink:
        it takes the place of :meth:`HTTPChannel.log_http
        <twisted_asgi.channel.HTTPChannel.log_http>` (same arguments, same
        result) on every connection, one function for all of them. The clock
        read (``seconds``) and :meth:`log_http`'s counting in one call: it runs
        once per response."""
        versions = self._versions
        http1 = self._http1

        def log_http(request: Any, status: int, size: int, started: float | None) -> float:
            now = seconds()
            duration = now - started if started is not None else 0.0
            try:
                counted = versions[request.http_version]
            except (AttributeError, KeyError):  # refused before a request line was known
                counted = http1
            if duration <= _FIRST_BOUND:
                counted.first[status] += 1
            else:
                counted.rows[status // 100 * _ROW + bisect_left(DURATION_BUCKETS, duration)] += 1
            counted.sum += duration
            return now

        return log_http

    def log_websocket(self, info: Any, request: Any, kind: str, code: int, duration: float) -> None:
        """A WebSocket accepted (``WSCONNECT``, 101) or ended (``WSDISCONNECT``)."""
        if kind == "WSCONNECT":
            self.response("websocket", code, 0.0)
            self.websockets_open += 1
        else:
            self.websockets_open -= 1

    # -- connections ------------------------------------------------------------------

    def connection_opened(self, connection: Counted) -> None:
        """A connection accepted (it is read at each snapshot while in :attr:`live`)."""
        self.connections += 1

    def connection_closed(self, connection: Counted) -> None:
        """A connection closed (and left :attr:`live`): its bytes join the closed ones'."""
        protocol = connection.protocol_name
        self.bytes_received[protocol] = self.bytes_received.get(protocol, 0) + connection.bytes_received
        self.bytes_sent[protocol] = self.bytes_sent.get(protocol, 0) + connection.bytes_sent
        if connection.ws_messages_received or connection.ws_messages_sent:
            messages = self.websocket_messages
            messages["received"] += connection.ws_messages_received
            messages["sent"] += connection.ws_messages_sent

    def stream_opened(self) -> None:
        self.http2_streams += 1

    def websocket_message(self, direction: str) -> None:
        """``direction``: ``"received"`` or ``"sent"``."""
        self.websocket_messages[direction] += 1

    # -- what went wrong ---------------------------------------------------------------

    def app_exception(self, protocol: str) -> None:
        self.app_exceptions[protocol] = self.app_exceptions.get(protocol, 0) + 1

    def limit(self, name: str) -> None:
        """A ``limit_*`` setting refused something (its Config field name)."""
        self.limits[name] = self.limits.get(name, 0) + 1

    def timeout(self, name: str) -> None:
        """A ``timeout_*`` setting fired (its Config field name)."""
        self.timeouts[name] = self.timeouts.get(name, 0) + 1

    def websocket_too_big(self, framing: Any) -> None:
        """A WebSocket failed with 1009: which of the three limits it ran into,
        from the flags Autobahn's framing sets (the frame count is ours and
        sets none)."""
        if getattr(framing, "wasMaxFramePayloadSizeExceeded", False):
            self.limit("limit_ws_frame_bytes")
        elif getattr(framing, "wasMaxMessagePayloadSizeExceeded", False):
            self.limit("limit_ws_message_bytes")
        else:
            self.limit("limit_ws_fragments")

    def worker_restart(self, reason: str) -> None:
        self.worker_restarts[reason] = self.worker_restarts.get(reason, 0) + 1

    def loop_lagged(self, seconds: float) -> None:
        """How late a timer of the event loop ran (the lag sampler's reading)."""
        self.loop_lag.observe(seconds)
        self.loop_lag_last = seconds

    # -- reading ------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything as JSON-able data; :func:`merge` adds snapshots up."""
        connections_open: dict[str, int] = {}
        received = dict(self.bytes_received)
        sent = dict(self.bytes_sent)
        streams = 0
        messages = dict(self.websocket_messages)
        for connection in list(self.live):
            protocol = connection.protocol_name
            connections_open[protocol] = connections_open.get(protocol, 0) + 1
            received[protocol] = received.get(protocol, 0) + connection.bytes_received
            sent[protocol] = sent.get(protocol, 0) + connection.bytes_sent
            streams += connection.streams_open
            messages["received"] += connection.ws_messages_received
            messages["sent"] += connection.ws_messages_sent
        responses: dict[str, int] = {}
        duration: dict[str, Any] = {}
        for protocol, counted in self._responses.items():
            for index, count in enumerate(counted.classes()):
                if count:
                    label = _CLASSES[index - 1] if 1 <= index <= 5 else "other"
                    responses[f"{protocol}|{label}"] = responses.get(f"{protocol}|{label}", 0) + count
            counts = counted.counts()
            if any(counts):
                duration[protocol] = {"counts": counts, "sum": counted.sum}
        return {
            "responses": responses,
            "duration": duration,
            "connections": {"": self.connections},
            "connections_open": connections_open,
            "http2_streams": {"": self.http2_streams},
            "http2_streams_open": {"": streams},
            "websockets_open": {"": self.websockets_open},
            "websocket_messages": messages,
            "bytes_received": received,
            "bytes_sent": sent,
            "app_exceptions": dict(self.app_exceptions),
            "limits": dict(self.limits),
            "timeouts": dict(self.timeouts),
            "worker_restarts": dict(self.worker_restarts),
            "loop_lag": {"": self.loop_lag.snapshot()},
            "loop_lag_last": self.loop_lag_last,
        }


def _add_histograms(into: dict[str, Any], other: dict[str, Any]) -> None:
    for label, hist in other.items():
        mine = into.get(label)
        if mine is None:
            into[label] = {"counts": list(hist["counts"]), "sum": hist["sum"]}
        else:
            mine["counts"] = [a + b for a, b in zip(mine["counts"], hist["counts"], strict=True)]
            mine["sum"] += hist["sum"]


def merge(snapshots: Iterable[dict[str, Any]], *, gauges: bool = True) -> dict[str, Any]:
    """The sum of several processes' snapshots; ``loop_lag_last`` is the worst.
    With ``gauges=False`` the gauges are left out (a worker that ended)."""
    total: dict[str, Any] = {name: {} for name in (*_COUNTERS, *_GAUGES, *_HISTOGRAMS)}
    total["loop_lag_last"] = 0.0
    for snap in snapshots:
        for name in _COUNTERS + (_GAUGES if gauges else ()):
            into = total[name]
            for label, value in snap.get(name, {}).items():
                into[label] = into.get(label, 0) + value
        for name in _HISTOGRAMS:
            _add_histograms(total[name], snap.get(name, {}))
        if gauges:
            total["loop_lag_last"] = max(total["loop_lag_last"], snap.get("loop_lag_last", 0.0))
    return total


def fold(retired: dict[str, Any], ended: dict[str, Any]) -> dict[str, Any]:
    """``retired`` plus the counters of a process that ended (its gauges dropped)."""
    return merge([retired, merge([ended], gauges=False)], gauges=False)


# -- files: how workers hand their counters to the supervisor ----------------------------


def write_snapshot(directory: str, name: str, metrics: Metrics) -> None:
    """Write ``name.json`` in ``directory`` atomically (a reader never sees half)."""
    path = os.path.join(directory, name + ".json")
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as stream:
        json.dump(metrics.snapshot(), stream)
    os.replace(temporary, path)


def read_snapshots(directory: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(name, snapshot)`` for each complete snapshot file in ``directory``."""
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return
    for filename in names:
        if not filename.endswith(".json"):
            continue
        try:
            with open(os.path.join(directory, filename), encoding="utf-8") as stream:
                yield filename[: -len(".json")], json.load(stream)
        except (OSError, ValueError):
            # Removed between listdir and open (its worker ended), or damaged.
            continue


# -- the Prometheus text format ------------------------------------------------------------

_PREFIX = "twisted_asgi_"


def collect(snapshot: dict[str, Any]) -> list[Any]:
    """``prometheus_client`` metric families for one (merged) snapshot."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    families: list[Any] = []

    def counter(name: str, doc: str, label: str | None, key: str) -> None:
        family = CounterMetricFamily(_PREFIX + name, doc, labels=[label] if label else None)
        for value, count in sorted(snapshot.get(key, {}).items()):
            family.add_metric([value] if label else [], count)
        families.append(family)

    def gauge(name: str, doc: str, label: str | None, key: str) -> None:
        family = GaugeMetricFamily(_PREFIX + name, doc, labels=[label] if label else None)
        for value, count in sorted(snapshot.get(key, {}).items()):
            family.add_metric([value] if label else [], count)
        families.append(family)

    def histogram(name: str, doc: str, label: str | None, key: str, bounds: tuple[float, ...]) -> None:
        family = HistogramMetricFamily(_PREFIX + name, doc, labels=[label] if label else None)
        for value, hist in sorted(snapshot.get(key, {}).items()):
            running, buckets = 0, []
            for bound, count in zip((*bounds, float("inf")), hist["counts"], strict=True):
                running += count
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
            family.add_metric([value] if label else [], buckets, hist["sum"])
        families.append(family)

    responses = CounterMetricFamily(
        _PREFIX + "responses",
        "Responses by protocol and status class (WebSocket: accepted handshakes as 1xx).",
        labels=["protocol", "status_class"],
    )
    for key, count in sorted(snapshot.get("responses", {}).items()):
        protocol, klass = key.split("|", 1)
        responses.add_metric([protocol, klass], count)
    families.append(responses)
    histogram(
        "request_duration_seconds", "From request head to response end.", "protocol", "duration", DURATION_BUCKETS
    )
    counter("connections", "Connections accepted.", None, "connections")
    gauge("connections_open", "Open connections by protocol.", "protocol", "connections_open")
    counter("http2_streams", "HTTP/2 streams opened by clients.", None, "http2_streams")
    gauge("http2_streams_open", "HTTP/2 streams open now.", None, "http2_streams_open")
    gauge("websockets_open", "Accepted WebSocket connections open now.", None, "websockets_open")
    counter("websocket_messages", "WebSocket messages by direction.", "direction", "websocket_messages")
    counter("received_bytes", "Bytes read from clients, by protocol.", "protocol", "bytes_received")
    counter("sent_bytes", "Bytes written to clients, by protocol.", "protocol", "bytes_sent")
    counter("app_exceptions", "ASGI application calls that raised, by protocol.", "protocol", "app_exceptions")
    counter("limits", "Requests or connections refused by a limit_* setting.", "limit", "limits")
    counter("timeouts", "Timers of a timeout_* setting that fired.", "timeout", "timeouts")
    counter("worker_restarts", "Workers replaced by the supervisor, by reason.", "reason", "worker_restarts")
    histogram("event_loop_lag_seconds", "How late the event loop ran a timer.", None, "loop_lag", LAG_BUCKETS)
    last = GaugeMetricFamily(_PREFIX + "event_loop_lag_last_seconds", "The latest lag reading (the worst process's).")
    last.add_metric([], snapshot.get("loop_lag_last", 0.0))
    families.append(last)
    return families


def render(snapshot: dict[str, Any]) -> bytes:
    """The Prometheus text exposition format for one snapshot."""
    from prometheus_client import CollectorRegistry, generate_latest

    class _Collector:
        def collect(self) -> list[Any]:
            return collect(snapshot)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector())
    data: bytes = generate_latest(registry)
    return data
