"""HTTP/2 flow control end to end (RFC 9113 §5.2, §6.9): received DATA is
acknowledged only when the app takes it, the app's send() waits for the
client's window, a stalled stream never stalls the others, and 100 MiB each
way keeps the server's memory bounded."""

from __future__ import annotations

import shutil
import subprocess

from hyperframe.frame import DataFrame, PingFrame, SettingsFrame, WindowUpdateFrame

from tests.deploy import serving
from tests.h2frames import RawClient

APP = "tests.h2frames:app"


def ping_barrier(client: RawClient, payload: bytes) -> None:
    """Send PING and wait for its ACK: the server has handled every frame sent before."""
    client.send(client.f.ping(payload))
    client.wait_for(lambda f: isinstance(f, PingFrame) and "ACK" in f.flags and f.opaque_data == payload)


def stream_updates(client: RawClient, stream_id: int) -> int:
    return sum(
        f.window_increment for f in client.frames if isinstance(f, WindowUpdateFrame) and f.stream_id == stream_id
    )


def data_bytes(client: RawClient, stream_id: int) -> int:
    return sum(len(f.data) for f in client.frames if isinstance(f, DataFrame) and f.stream_id == stream_id)


def test_data_is_acknowledged_only_when_the_app_takes_it():
    """A full stream window of body for an app that has not read it gets no
    WINDOW_UPDATE; once the app reads, the window opens and the rest of a
    bigger body goes through."""
    with serving(APP) as server:
        client = RawClient(server.host, server.port)
        try:
            client.send(client.f.request(1, "/gate", end_stream=False, method="POST"))
            server.wait_for_output("GATED")
            for _ in range(3):
                client.send(client.f.data(1, b"a" * 16384))
            client.send(client.f.data(1, b"a" * (65535 - 3 * 16384)))
            ping_barrier(client, b"barrier1")
            assert stream_updates(client, 1) == 0
            client.send(client.f.request(3, "/open"))
            client.wait_for(lambda f: isinstance(f, WindowUpdateFrame) and f.stream_id == 1)
            client.send(client.f.data(1, b"b" * 1000, end_stream=True))
            _headers, body, _ = client.response(1)
        finally:
            client.close()
    assert body == b"66535"


def test_send_waits_for_the_client_window():
    """With a zero initial window the response head goes out but no DATA;
    each WINDOW_UPDATE lets exactly that many bytes out."""
    with serving(APP) as server:
        client = RawClient(server.host, server.port, settings={"initial_window_size": 0})
        try:
            client.send(client.f.window_update(0, 10_000_000))
            client.send(client.f.request(1, "/download?mib=1"))
            client.wait_for(lambda f: f.stream_id == 1)  # the HEADERS
            ping_barrier(client, b"barrier1")
            assert data_bytes(client, 1) == 0
            client.send(client.f.window_update(1, 1000))
            client.wait_for(lambda f: isinstance(f, DataFrame) and f.stream_id == 1)
            ping_barrier(client, b"barrier2")
            assert data_bytes(client, 1) == 1000
            client.send(client.f.window_update(1, 2**20))
            _headers, body, _ = client.response(1)
        finally:
            client.close()
    assert len(body) == 2**20


def test_a_stalled_stream_does_not_stall_others():
    """A response stalled on its shut window and an upload the app does not
    read leave other streams on the connection free to finish, both ways."""
    with serving(APP) as server:
        client = RawClient(server.host, server.port, settings={"initial_window_size": 0})
        try:
            client.send(client.f.window_update(0, 50_000_000))
            client.send(client.f.request(1, "/download?mib=4"))  # never gets window
            client.send(client.f.request(3, "/gate", end_stream=False, method="POST"))
            server.wait_for_output("GATED")
            for size in (16384, 16384, 16384, 65535 - 3 * 16384):
                client.send(client.f.data(3, b"u" * size))  # fills stream 3's window, unread
            client.send(client.f.request(5, "/upload", end_stream=False, method="POST"))
            client.send(client.f.window_update(5, 100))  # room for its answer, unlike stream 1
            sent = 0
            while sent < 1_000_000:
                # Respect the stream window: the server opens it as the app reads.
                allowed = 65535 + stream_updates(client, 5) - sent
                if allowed <= 0:
                    assert not client.closed, client.frames[-3:]
                    client.read(0.05)
                    continue
                size = min(16384, allowed, 1_000_000 - sent)
                client.send(client.f.data(5, b"v" * size, end_stream=sent + size == 1_000_000))
                sent += size
            _, body5, _ = client.response(5)
            client.send(client.f.request(7, "/"))
            client.wait_for(lambda f: f.stream_id == 7)
            client.send(client.f.window_update(7, 100))
            _, body7, _ = client.response(7)
            assert data_bytes(client, 1) == 0
        finally:
            client.close()
    assert body5 == b"1000000" and body7 == b"ok"


def test_negative_stream_window_holds_data_until_positive():
    """RFC 9113 §6.9.2: lowering SETTINGS_INITIAL_WINDOW_SIZE after the server
    used a stream's whole window makes that window negative. The server then
    sends nothing more on the stream, not even after a WINDOW_UPDATE that
    leaves it negative, while another stream (the connection window allows)
    is answered; once a larger setting makes it positive, the rest of the
    body arrives, complete and in order."""
    size = 2**20
    with serving(APP) as server:
        client = RawClient(server.host, server.port)
        try:
            client.send(client.f.window_update(0, 10_000_000))  # never the limit here
            client.send(client.f.request(1, f"/download?mib={size >> 20}"))
            client.wait_for(lambda f: data_bytes(client, 1) >= 65535)
            ping_barrier(client, b"barrier1")
            assert data_bytes(client, 1) == 65535  # the initial window, no more
            # 0 - (65535 - 1000): the stream window is now -64535.
            client.send(client.f.settings(initial_window_size=1000))
            client.send(client.f.window_update(1, 60_000))  # still -4535
            ping_barrier(client, b"barrier2")
            assert data_bytes(client, 1) == 65535
            acks = [f for f in client.frames if isinstance(f, SettingsFrame) and "ACK" in f.flags]
            assert len(acks) == 2  # the preface's SETTINGS and the lowered one
            # A new stream starts with the 1000-byte window: its answer fits.
            client.send(client.f.request(3, "/"))
            headers, body3, _ = client.response(3)
            assert headers[b":status"] == b"200" and body3 == b"ok"
            ping_barrier(client, b"barrier3")
            assert data_bytes(client, 1) == 65535
            # -4535 + (2^20 - 1000) is positive: stream 1 resumes (and gets the rest).
            client.send(client.f.settings(initial_window_size=size))
            _headers, body1, _ = client.response(1)
        finally:
            client.close()
    assert len(body1) == size and body1 == b"x" * size


def vm(pid: int, key: str) -> int:
    """A /proc/PID/status value in KiB (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise AssertionError(f"{key} not in /proc/{pid}/status")


def test_100_mib_each_way_keeps_rss_bounded(tmp_path):
    """curl uploads 100 MiB and downloads 100 MiB over h2c: the server's
    peak RSS (VmHWM) grows by less than 40 MiB, because unread body is held
    back by flow control and the response by send() waiting for the window."""
    curl = shutil.which("curl")
    assert curl is not None, "curl is not installed"
    upload = tmp_path / "upload.bin"
    with open(upload, "wb") as out:
        out.truncate(100 * 2**20)
    with serving(APP) as server:
        base = f"http://127.0.0.1:{server.port}"
        warm = subprocess.run(
            [curl, "-sS", "--http2-prior-knowledge", f"{base}/upload", "--data-binary", "x"], timeout=30
        )
        assert warm.returncode == 0
        before = vm(server.proc.pid, "VmHWM")
        up = subprocess.run(
            [curl, "-sS", "--http2-prior-knowledge", f"{base}/upload", "--data-binary", f"@{upload}"],
            capture_output=True,
            timeout=120,
        )
        down = subprocess.run(
            [
                curl,
                "-sS",
                "--http2-prior-knowledge",
                f"{base}/download?mib=100",
                "-o",
                "/dev/null",
                "-w",
                "%{size_download}",
            ],
            capture_output=True,
            timeout=120,
        )
        peak = vm(server.proc.pid, "VmHWM")
    assert up.returncode == 0 and up.stdout == b"%d" % (100 * 2**20), up.stderr
    assert down.returncode == 0 and down.stdout == b"%d" % (100 * 2**20), down.stderr
    assert peak - before < 40 * 1024, (before, peak)
