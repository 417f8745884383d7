"""No side effects on others (issue 18, item 4): importing twisted_asgi changes
nothing in Autobahn, Twisted, h2, hpack or hyperframe for other code in the
process, and our masker applies to our protocol instances only.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import autobahn.websocket.protocol
import autobahn.websocket.xormasker
import pytest
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from tests.serving import ROOT
from tests.ws_apps import client_frame, handshake_request

DEPENDENCIES = ("autobahn", "twisted", "h2", "hpack", "hyperframe", "txaio", "OpenSSL", "httptools", "uvloop")

#: In a fresh interpreter: import what twisted_asgi imports of its dependencies,
#: fingerprint every module-level name and class attribute there, import every
#: module of twisted_asgi, fingerprint again and print what changed.
_SNAPSHOT = textwrap.dedent(
    """
    import importlib, json, pkgutil, sys
    DEPS = DEPENDENCIES_HERE
    def ours():
        import twisted_asgi
        names = ["twisted_asgi"]
        for info in pkgutil.walk_packages(twisted_asgi.__path__, "twisted_asgi."):
            if ".contrib.django" in info.name or info.name.endswith(("django", "demo")):
                continue  # the Django adapter needs a configured project
            names.append(info.name)
        return names
    def deps_loaded():
        return sorted(m for m in list(sys.modules) if m.split(".")[0] in DEPS and sys.modules[m] is not None)
    def fingerprint():
        seen = {}
        for name in deps_loaded():
            module = sys.modules[name]
            for key, value in list(vars(module).items()):
                if type(value) is int:
                    continue  # counters (twisted.python.failure.count) move with any use
                seen[f"{name}.{key}"] = id(value)
                if isinstance(value, type) and value.__module__ == name:
                    for attr, member in list(vars(value).items()):
                        seen[f"{name}.{key}.{attr}"] = id(member)
        return seen
    if sys.argv[1] == "list":
        for name in ours():
            importlib.import_module(name)
        print(json.dumps(deps_loaded()))
    else:
        for name in json.loads(sys.argv[2]):
            try:
                importlib.import_module(name)
            except Exception:
                pass
        before = fingerprint()
        for name in ours():
            importlib.import_module(name)
        after = fingerprint()
        print(json.dumps(sorted(k for k in before if after.get(k) != before[k])))
    """
).replace("DEPENDENCIES_HERE", repr(DEPENDENCIES))


def _run(*args: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", _SNAPSHOT, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_twisted_asgi_changes_nothing_in_its_dependencies():
    modules = _run("list")
    assert "autobahn.websocket.protocol" in modules and "h2.connection" in modules
    assert _run("check", json.dumps(modules)) == []


def _plain_autobahn_masker(payload_size: int = 5) -> type:
    """The masker class a plain Autobahn (Twisted) server protocol makes for one
    masked client frame of ``payload_size`` bytes, sent after a real handshake."""
    made: list[type] = []

    class Plain(WebSocketServerProtocol):
        def onFrameBegin(self) -> None:
            made.append(type(self.current_frame_masker))
            super().onFrameBegin()

    factory = WebSocketServerFactory("ws://localhost:9000")
    factory.protocol = Plain
    proto = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 9000))
    transport = StringTransport(
        hostAddress=IPv4Address("TCP", "127.0.0.1", 9000), peerAddress=IPv4Address("TCP", "127.0.0.1", 1234)
    )
    proto.makeConnection(transport)
    proto.dataReceived(handshake_request("/", b"Origin: http://localhost:9000\r\n"))
    assert b" 101 " in transport.value().split(b"\r\n", 1)[0], transport.value()
    proto.dataReceived(client_frame(2, b"x" * payload_size))
    proto.connectionLost(Failure(ConnectionDone()))
    assert len(made) == 1
    return made[0]


@pytest.mark.parametrize("size", [5, 5000])
def test_a_plain_autobahn_server_keeps_autobahns_masker_beside_ours(loop, size, monkeypatch):
    """Import twisted_asgi and serve one of our WebSocket connections in this
    process (through Autobahn's frame path, where our masker applies): a plain
    Autobahn server protocol still gets Autobahn's own masker, and Autobahn's
    module still has its own factory."""
    from tests.test_websocket_shell import Peer, recording_app
    from twisted_asgi import websocket, wsmask

    ours: list[bytes] = []

    class Counting(wsmask.FrameMasker):
        def process(self, data: bytes) -> bytes:
            ours.append(data)
            return super().process(data)

    monkeypatch.setattr(wsmask, "FrameMasker", Counting)
    monkeypatch.setattr(websocket._Framing, "fast_frames", False)  # Autobahn's frame path
    received: list = []
    peer = Peer(recording_app(received), loop, timeout_ws_ping_interval=0)
    peer.send(client_frame(2, b"ours"))
    assert received[-1] == {"type": "websocket.receive", "bytes": b"ours"}
    assert ours  # our instance unmasked through our masker
    peer.lose()

    assert autobahn.websocket.protocol.create_xor_masker is autobahn.websocket.xormasker.create_xor_masker
    masker = _plain_autobahn_masker(size)
    assert not issubclass(masker, wsmask.FrameMasker)
    assert masker.__module__.startswith("autobahn.")
