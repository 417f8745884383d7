"""The metrics' counters, their merging across workers and the Prometheus text
(sans-IO: no server; tests/test_metrics_e2e.py scrapes a running one)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from twisted_asgi.events import Request
from twisted_asgi.metrics import DURATION_BUCKETS, Metrics, fold, merge, read_snapshots, render, write_snapshot


def samples(snapshot):
    """{(sample name, sorted labels): value} of the rendered text, parsed back."""
    text = render(snapshot).decode("utf-8")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@dataclass(eq=False)
class Conn:
    protocol_name: str = "http/1.1"
    bytes_received: int = 0
    bytes_sent: int = 0
    streams_open: int = 0
    ws_messages_received: int = 0
    ws_messages_sent: int = 0


def request(version="1.1"):
    return Request(1 if version == "2" else 0, b"GET", b"/", b"", version, [])


def test_responses_by_protocol_and_status_class():
    m = Metrics()
    m.log_http(None, request("1.1"), 200, 5, 0.001)
    m.log_http(None, request("1.1"), 404, 5, 0.002)
    m.log_http(None, request("2"), 503, 5, 0.3)
    m.log_http(None, None, 400, 5, 0.0)  # refused before a request line was known
    got = samples(m.snapshot())
    assert got[("twisted_asgi_responses_total", (("protocol", "http/1.1"), ("status_class", "2xx")))] == 1
    assert got[("twisted_asgi_responses_total", (("protocol", "http/1.1"), ("status_class", "4xx")))] == 2
    assert got[("twisted_asgi_responses_total", (("protocol", "http/2"), ("status_class", "5xx")))] == 1


def test_the_connections_hook_counts_as_log_http():
    """With the metrics as the only sink, each connection calls their own hook
    (``http_hook``: the clock read and the counting in one call); it counts
    exactly what ``log_http`` counts with the duration from ``started`` to the
    clock's now (0 when ``started`` is None), and returns that now."""
    now = [100.0]
    hooked, plain = Metrics(), Metrics()
    hook = hooked.http_hook(lambda: now[0])
    cases = [
        (request("1.1"), 200, 99.999),  # 1 ms: the first bucket
        (request("1.1"), 404, 99.7),  # 0.3 s
        (request("2"), 503, 40.0),  # 60 s: +Inf
        (request("1.0"), 200, 100.0),
        (None, 400, None),  # refused before a request line was known
    ]
    for req, status, started in cases:
        assert hook(req, status, 7, started) == now[0]
        plain.log_http(None, req, status, 7, now[0] - started if started is not None else 0.0)
    assert samples(hooked.snapshot()) == samples(plain.snapshot())
    got = samples(hooked.snapshot())
    assert got[("twisted_asgi_responses_total", (("protocol", "http/1.1"), ("status_class", "4xx")))] == 2
    assert got[("twisted_asgi_request_duration_seconds_sum", (("protocol", "http/2"),))] == 60.0


def test_duration_histogram_is_cumulative():
    m = Metrics()
    for seconds in (0.001, 0.004, 0.02, 0.3, 60.0):
        m.response("http/1.1", 200, seconds)
    got = samples(m.snapshot())

    def bucket(le):
        return got[("twisted_asgi_request_duration_seconds_bucket", (("le", le), ("protocol", "http/1.1")))]

    assert bucket("0.005") == 2
    assert bucket("0.025") == 3
    assert bucket("0.5") == 4
    assert bucket("10.0") == 4
    assert bucket("+Inf") == 5
    assert got[("twisted_asgi_request_duration_seconds_count", (("protocol", "http/1.1"),))] == 5
    assert abs(got[("twisted_asgi_request_duration_seconds_sum", (("protocol", "http/1.1"),))] - 60.325) < 1e-9
    assert len(DURATION_BUCKETS) == 14


def test_open_connections_are_read_live_and_their_bytes_kept_at_close():
    m = Metrics()
    live: set[Conn] = set()
    m.live = live  # the server's own set of open connections
    a, b = Conn(), Conn(streams_open=3)
    for conn in (a, b):
        live.add(conn)
        m.connection_opened(conn)
    a.bytes_received, a.bytes_sent = 100, 1000
    b.protocol_name, b.bytes_received = "http/2", 7
    got = samples(m.snapshot())
    assert got[("twisted_asgi_connections_total", ())] == 2
    assert got[("twisted_asgi_connections_open", (("protocol", "http/1.1"),))] == 1
    assert got[("twisted_asgi_connections_open", (("protocol", "http/2"),))] == 1
    assert got[("twisted_asgi_http2_streams_open", ())] == 3
    assert got[("twisted_asgi_received_bytes_total", (("protocol", "http/1.1"),))] == 100
    live.discard(a)
    m.connection_closed(a)
    a.bytes_sent = 99999  # later changes of a closed connection count nothing
    got = samples(m.snapshot())
    assert got[("twisted_asgi_sent_bytes_total", (("protocol", "http/1.1"),))] == 1000
    assert ("twisted_asgi_connections_open", (("protocol", "http/1.1"),)) not in got


def test_websocket_messages_are_read_live_and_kept_at_close():
    """A connection's WebSocket handlers count messages on the connection:
    read at each snapshot while it is open, added to the totals when it
    closes, and not counted twice (nor later changes)."""
    m = Metrics()
    live: set[Conn] = set()
    m.live = live
    a, b = Conn(protocol_name="websocket"), Conn(protocol_name="http/2")
    for conn in (a, b):
        live.add(conn)
        m.connection_opened(conn)
    a.ws_messages_received, a.ws_messages_sent = 3, 4
    b.ws_messages_received = 5  # WebSockets over HTTP/2 count on their connection
    got = samples(m.snapshot())
    assert got[("twisted_asgi_websocket_messages_total", (("direction", "received"),))] == 8
    assert got[("twisted_asgi_websocket_messages_total", (("direction", "sent"),))] == 4
    live.discard(a)
    m.connection_closed(a)
    a.ws_messages_sent = 1000  # a closed connection counts no more
    got = samples(m.snapshot())
    assert got[("twisted_asgi_websocket_messages_total", (("direction", "received"),))] == 8
    assert got[("twisted_asgi_websocket_messages_total", (("direction", "sent"),))] == 4


def test_websockets_streams_failures():
    m = Metrics()
    m.log_websocket(None, request(), "WSCONNECT", 101, 0.0)
    m.websocket_message("received")
    m.websocket_message("sent")
    m.websocket_message("sent")
    m.stream_opened()
    m.stream_opened()
    m.app_exception("http/2")
    m.limit("limit_request_body_bytes")
    m.timeout("timeout_keep_alive")
    m.worker_restart("requests")
    m.loop_lagged(0.003)
    got = samples(m.snapshot())
    assert got[("twisted_asgi_websockets_open", ())] == 1
    assert got[("twisted_asgi_responses_total", (("protocol", "websocket"), ("status_class", "1xx")))] == 1
    assert got[("twisted_asgi_websocket_messages_total", (("direction", "sent"),))] == 2
    assert got[("twisted_asgi_http2_streams_total", ())] == 2
    assert got[("twisted_asgi_app_exceptions_total", (("protocol", "http/2"),))] == 1
    assert got[("twisted_asgi_limits_total", (("limit", "limit_request_body_bytes"),))] == 1
    assert got[("twisted_asgi_timeouts_total", (("timeout", "timeout_keep_alive"),))] == 1
    assert got[("twisted_asgi_worker_restarts_total", (("reason", "requests"),))] == 1
    assert got[("twisted_asgi_event_loop_lag_seconds_bucket", (("le", "0.005"),))] == 1
    assert got[("twisted_asgi_event_loop_lag_last_seconds", ())] == 0.003
    m.log_websocket(None, request(), "WSDISCONNECT", 1000, 2.0)
    assert samples(m.snapshot())[("twisted_asgi_websockets_open", ())] == 0


def test_merge_sums_workers_and_fold_keeps_only_counters_of_ended_ones():
    one, two = Metrics(), Metrics()
    one.response("http/1.1", 200, 0.001)
    two.response("http/1.1", 200, 0.2)
    conn = Conn(bytes_sent=10)
    two.live = {conn}
    two.connection_opened(conn)
    one.loop_lagged(0.5)
    two.loop_lagged(0.01)
    total = merge([one.snapshot(), two.snapshot()])
    got = samples(total)
    assert got[("twisted_asgi_responses_total", (("protocol", "http/1.1"), ("status_class", "2xx")))] == 2
    assert got[("twisted_asgi_request_duration_seconds_count", (("protocol", "http/1.1"),))] == 2
    assert got[("twisted_asgi_connections_open", (("protocol", "http/1.1"),))] == 1
    assert got[("twisted_asgi_event_loop_lag_last_seconds", ())] == 0.5
    # Worker two ends: its counters stay, its open connection does not.
    retired = fold(merge([]), two.snapshot())
    got = samples(merge([one.snapshot(), retired]))
    assert got[("twisted_asgi_responses_total", (("protocol", "http/1.1"), ("status_class", "2xx")))] == 2
    assert got[("twisted_asgi_sent_bytes_total", (("protocol", "http/1.1"),))] == 10
    assert ("twisted_asgi_connections_open", (("protocol", "http/1.1"),)) not in got


def test_snapshot_files_round_trip(tmp_path):
    m = Metrics()
    m.response("http/2", 201, 0.01)
    write_snapshot(str(tmp_path), "worker-1", m)
    (tmp_path / "worker-2.json").write_text("{not json")  # damaged: skipped
    (tmp_path / "worker-3.json.tmp").write_text("{}")  # being written: not a snapshot
    found = dict(read_snapshots(str(tmp_path)))
    assert list(found) == ["worker-1"]
    assert found["worker-1"]["responses"] == {"http/2|2xx": 1}
    assert list(read_snapshots(str(tmp_path / "missing"))) == []


def test_lag_sampler_ticks_on_the_servers_clock_and_the_listener_keeps_no_timer():
    """The lag sampler runs on the scheduler it is given (the server's
    LoopClock in production, a Clock here): a reading per interval, nothing
    left scheduled once stopped; the /metrics site starts no timer of its own
    (twisted.web's request-log date, refreshed every second, is not kept)."""
    from twisted.internet.task import Clock

    from twisted_asgi.metrics_http import LagSampler, _QuietSite, metrics_resource

    clock = Clock()
    m = Metrics()
    sampler = LagSampler(m, clock, interval=0.5)
    sampler.start()
    clock.advance(0.7)  # 0.2 s late
    clock.advance(0.5)
    assert m.loop_lag.counts[bisect_left_for(0.2)] == 1 and sum(m.loop_lag.counts) == 2
    sampler.stop()
    assert clock.getDelayedCalls() == []
    site = _QuietSite(metrics_resource(m.snapshot), reactor=clock)
    site.doStart()
    assert clock.getDelayedCalls() == []
    site.doStop()


def bisect_left_for(seconds: float) -> int:
    from bisect import bisect_left

    from twisted_asgi.metrics import LAG_BUCKETS

    return bisect_left(LAG_BUCKETS, seconds)
