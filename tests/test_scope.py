"""Tests of :mod:`twisted_asgi.scope`: the ``http`` and ``websocket`` scopes, key by key,
against the ASGI HTTP & WebSocket spec (www.rst, version 2.5). No reactor, no loop."""

from __future__ import annotations

import pytest

from twisted_asgi.config import Config
from twisted_asgi.events import Request
from twisted_asgi.http11 import HTTP11Connection
from twisted_asgi.scope import ConnectionInfo, decode_path, http_scope, websocket_scope

# www.rst "HTTP Connection Scope", plus "extensions" (extensions.rst).
HTTP_KEYS = {
    "type",
    "asgi",
    "http_version",
    "method",
    "scheme",
    "path",
    "raw_path",
    "query_string",
    "root_path",
    "headers",
    "client",
    "server",
    "extensions",
}
# www.rst "Websocket Connection Scope", plus "extensions".
WEBSOCKET_KEYS = (HTTP_KEYS - {"method"}) | {"subprotocols"}


def request(
    path: bytes = b"/", query: bytes = b"", method: bytes = b"GET", version: str = "1.1", headers=None
) -> Request:
    """A Request event as the HTTP/1.1 parser makes it."""
    return Request(1, method, path, query, version, headers if headers is not None else [(b"host", b"example.com")])


def tcp_info(**kwargs) -> ConnectionInfo:
    """Connection facts for a TCP connection from 10.0.0.1:5555 to 127.0.0.1:8000."""
    return ConnectionInfo(client=("10.0.0.1", 5555), server=("127.0.0.1", 8000), **kwargs)


# -- http ------------------------------------------------------------------------------------


def test_http_scope_keys_exactly():
    """An http scope has exactly the spec's keys (state only when lifespan gave one)."""
    assert set(http_scope(request(), tcp_info())) == HTTP_KEYS
    assert set(http_scope(request(), tcp_info(state={}))) == HTTP_KEYS | {"state"}


def test_http_scope_values():
    """Every key holds the value and type the spec gives it."""
    headers = [(b"host", b"example.com"), (b"x-a", b"1"), (b"x-a", b"2")]
    scope = http_scope(request(b"/p/q", b"a=1&b=%2F", b"POST", headers=headers), tcp_info())
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.5"}
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "POST" and type(scope["method"]) is str
    assert scope["scheme"] == "http"
    assert scope["path"] == "/p/q"
    assert scope["raw_path"] == b"/p/q"
    assert scope["query_string"] == b"a=1&b=%2F"
    assert scope["root_path"] == ""
    assert scope["headers"] == headers
    assert scope["client"] == ("10.0.0.1", 5555)
    assert scope["server"] == ("127.0.0.1", 8000)
    assert scope["extensions"] == {}


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_http_version(version):
    """http_version is the request's version as a string."""
    assert http_scope(request(version=version), tcp_info())["http_version"] == version


@pytest.mark.parametrize(("tls", "scheme"), [(False, "http"), (True, "https")])
def test_scheme(tls, scheme):
    """scheme is https on TLS connections and http otherwise."""
    assert http_scope(request(), tcp_info(tls=tls))["scheme"] == scheme


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        (b"/plain/path", "/plain/path"),
        (b"/a%2Fb", "/a/b"),
        (b"/caf%C3%A9", "/café"),
        (b"/snow%e2%98%83man", "/snow☃man"),
        (b"/a%20b+c", "/a b+c"),
        (b"/bad%FFutf8", "/bad\ufffdutf8"),
        (b"/half%C3", "/half\ufffd"),
        (b"/not%zzescape%", "/not%zzescape%"),
        (b"/%25", "/%"),
        (b"*", "*"),
    ],
)
def test_path_decoding(raw, path):
    """path is percent-decoded then UTF-8 decoded (invalid UTF-8 becomes U+FFFD); raw_path stays as received."""
    scope = http_scope(request(raw), tcp_info())
    assert scope["path"] == path
    assert scope["raw_path"] == raw
    assert decode_path(raw) == path


def test_query_string_stays_percent_encoded():
    """query_string is the raw bytes after '?', percent-encoding and all."""
    assert http_scope(request(query=b"q=caf%C3%A9&x=%2F+1"), tcp_info())["query_string"] == b"q=caf%C3%A9&x=%2F+1"


def test_root_path_prepended_to_path():
    """With a root_path the scope's path starts with it, and root_path says where the app is mounted."""
    scope = http_scope(request(b"/users/%7Eme"), tcp_info(root_path="/api"))
    assert scope["root_path"] == "/api"
    assert scope["path"] == "/api/users/~me"
    assert scope["raw_path"] == b"/users/%7Eme"


def test_unix_socket_server_and_client():
    """On a unix socket server is (path, None) (spec 2.2) and client is None."""
    info = ConnectionInfo(client=None, server=("/run/app.sock", None))
    scope = http_scope(request(), info)
    assert scope["server"] == ("/run/app.sock", None)
    assert scope["client"] is None


def test_state_shallow_copied_per_request():
    """Each request gets its own copy of the lifespan state: new keys stay in that request, objects are shared."""
    shared = {"pool": object(), "counter": [0]}
    info = tcp_info(state=shared)
    first = http_scope(request(), info)
    second = http_scope(request(), info)
    assert first["state"] == shared and first["state"] is not shared
    first["state"]["request_only"] = 1
    first["state"]["counter"].append(1)
    assert "request_only" not in second["state"] and "request_only" not in shared
    assert second["state"]["pool"] is shared["pool"]
    assert shared["counter"] == [0, 1]


def test_mutable_values_are_per_request():
    """An app changing its scope's asgi or extensions dict does not change the next request's scope."""
    info = tcp_info(extensions={"http.response.trailers": {}})
    first = http_scope(request(), info)
    first["asgi"]["version"] = "2.0"
    first["extensions"]["made.up"] = {}
    second = http_scope(request(), info)
    assert second["asgi"] == {"version": "3.0", "spec_version": "2.5"}
    assert second["extensions"] == {"http.response.trailers": {}}


def test_scope_from_a_parsed_request():
    """A request parsed by HTTP11Connection becomes the scope an app expects: one parse, no re-serialising."""
    conn = HTTP11Connection(Config())
    data = b"GET /r%C3%A9sum%C3%A9/x%2Fy?lang=fr&q=a+b HTTP/1.1\r\nHost: example.com\r\nCookie: a=1; b=2\r\n\r\n"
    event = conn.receive_data(data)[0]
    scope = http_scope(event, tcp_info(root_path="/app", tls=True))
    assert scope["method"] == "GET"
    assert scope["scheme"] == "https"
    assert scope["path"] == "/app/résumé/x/y"
    assert scope["raw_path"] == b"/r%C3%A9sum%C3%A9/x%2Fy"
    assert scope["query_string"] == b"lang=fr&q=a+b"
    assert scope["headers"] == [(b"host", b"example.com"), (b"cookie", b"a=1; b=2")]


def test_proxy_headers_hook_sees_the_scope_and_trust():
    """When the connection carries a proxy resolver, it gets the finished scope and whether the peer is trusted."""
    calls = []

    class Resolver:
        """Records what http_scope hands to a proxy-header resolver."""

        def apply(self, scope, trusted):
            calls.append((scope["path"], trusted))
            scope["client"] = ("203.0.113.9", 0)

    info = tcp_info(proxy_headers=Resolver(), proxy_trusted=True)
    scope = http_scope(request(b"/x"), info)
    assert calls == [("/x", True)]
    assert scope["client"] == ("203.0.113.9", 0)
    assert info.client == ("10.0.0.1", 5555)


# -- websocket ---------------------------------------------------------------------------------


def test_websocket_scope_keys_and_values():
    """A websocket scope has exactly the spec's keys and values, with the client's subprotocols."""
    headers = [(b"host", b"example.com"), (b"upgrade", b"websocket")]
    scope = websocket_scope(request(b"/chat%2F1", b"room=a", headers=headers), tcp_info(), ["chat", "superchat"])
    assert set(scope) == WEBSOCKET_KEYS
    assert scope["type"] == "websocket"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.5"}
    assert scope["http_version"] == "1.1"
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/chat/1"
    assert scope["raw_path"] == b"/chat%2F1"
    assert scope["query_string"] == b"room=a"
    assert scope["root_path"] == ""
    assert scope["headers"] == headers
    assert scope["client"] == ("10.0.0.1", 5555)
    assert scope["server"] == ("127.0.0.1", 8000)
    assert scope["subprotocols"] == ["chat", "superchat"]


def test_websocket_scheme_wss_and_root_path():
    """On TLS the scheme is wss; root_path is prepended to path as for http."""
    scope = websocket_scope(request(b"/ws"), tcp_info(tls=True, root_path="/api"), [])
    assert scope["scheme"] == "wss"
    assert (scope["root_path"], scope["path"]) == ("/api", "/api/ws")


def test_websocket_extensions():
    """Connection-wide extensions carry over, http.response.* ones do not, and the denial response is offered."""
    info = tcp_info(extensions={"tls": {"tls_version": 0x0304}, "http.response.trailers": {}})
    extensions = websocket_scope(request(), info, [])["extensions"]
    assert extensions == {"tls": {"tls_version": 0x0304}, "websocket.http.response": {}}
    assert info.extensions == {"tls": {"tls_version": 0x0304}, "http.response.trailers": {}}


def test_websocket_state_shallow_copied():
    """A websocket scope gets its own shallow copy of the lifespan state."""
    shared = {"k": [1]}
    scope = websocket_scope(request(), tcp_info(state=shared), [])
    assert set(scope) == WEBSOCKET_KEYS | {"state"}
    assert scope["state"] == shared and scope["state"] is not shared
    assert scope["state"]["k"] is shared["k"]


def test_websocket_unix_socket():
    """A websocket on a unix socket has server (path, None) and no client."""
    scope = websocket_scope(request(), ConnectionInfo(client=None, server=("/tmp/s.sock", None)), [])
    assert (scope["server"], scope["client"]) == (("/tmp/s.sock", None), None)
