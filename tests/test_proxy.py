"""Sans-IO tests of proxy.py: trust lists, X-Forwarded-*, RFC 7239 Forwarded,
root path from a header, underscore look-alikes, and the PROXY protocol parser."""

from __future__ import annotations

import itertools
import socket
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twisted_asgi.config import Config, ConfigError
from twisted_asgi.proxy import (
    BELIEVABLE,
    DEFAULT_BELIEVED,
    ProxyHeader,
    ProxyHeaders,
    ProxyProtocolError,
    ProxyProtocolParser,
    TrustList,
    client_ip,
    normalised_prefix,
    parse_forwarded,
)

# -- trust lists -------------------------------------------------------------------


def test_trust_list_addresses_networks_unix_and_star():
    """IPs, CIDRs and 'unix' are matched exactly; '*' trusts everyone."""
    trust = TrustList("10.0.0.0/8, 192.0.2.7 ,2001:db8::/32,unix")
    assert trust.trusts("10.1.2.3")
    assert trust.trusts("192.0.2.7")
    assert not trust.trusts("192.0.2.8")
    assert trust.trusts("2001:db8::1")
    assert not trust.trusts("2001:db9::1")
    assert trust.trusts(None)  # unix socket peer
    assert not trust.trusts("not an ip")
    assert TrustList("*").trusts("203.0.113.1") and TrustList(["*"]).trusts(None)
    assert not TrustList("127.0.0.1").trusts(None)


def test_trust_list_ipv4_mapped_peer():
    """An IPv4 peer seen on a dual-stack socket (::ffff:a.b.c.d) matches its IPv4 network."""
    assert TrustList("127.0.0.0/8").trusts("::ffff:127.0.0.1")


def test_trust_list_rejects_garbage():
    """An entry that is no address, network, 'unix' or '*' is an error naming it."""
    with pytest.raises(ValueError, match="'loopback'"):
        TrustList("127.0.0.1,loopback")


def test_config_defaults_and_validation():
    """Config trusts loopback and unix by default and rejects bad lists and styles."""
    config = Config()
    assert config.forwarded_allow_ips == ("127.0.0.0/8", "::1", "unix")
    assert not config.proxy_headers and not config.proxy_protocol
    with pytest.raises(ConfigError, match="forwarded_allow_ips"):
        Config(forwarded_allow_ips=("300.1.1.1",))
    with pytest.raises(ConfigError, match="proxy_headers_style"):
        Config(proxy_headers_style="x-real-ip")
    with pytest.raises(ConfigError, match="limit_proxy_protocol_bytes"):
        Config(limit_proxy_protocol_bytes=100)
    with pytest.raises(ConfigError, match="workers"):
        Config(workers=-1)


# -- proxy headers ---------------------------------------------------------------------


def scope(headers, kind="http", client=("10.0.0.2", 5555), root_path=""):
    path = "/x"
    return {
        "type": kind,
        "scheme": "ws" if kind == "websocket" else "http",
        "client": client,
        "server": ("10.0.0.9", 8000),
        "root_path": root_path,
        "path": root_path + path,
        "headers": [(n.encode(), v.encode()) for n, v in headers],
    }


def applied(headers, trusted=True, style="x-forwarded", allow="10.0.0.0/8", believe=BELIEVABLE, **kw):
    """``headers`` applied to a scope; everything believable is believed unless ``believe`` says otherwise."""
    s = scope(headers, **kw)
    ProxyHeaders(TrustList(allow), style, "x-forwarded-prefix", believe).apply(s, trusted)
    return s


def test_xff_rightmost_untrusted_hop_is_the_client():
    """The client is the rightmost X-Forwarded-For entry that is not a trusted proxy."""
    s = applied([("x-forwarded-for", "203.0.113.9, 198.51.100.4, 10.0.0.5")])
    assert s["client"] == ("198.51.100.4", 0)


def test_xff_all_trusted_takes_the_leftmost():
    """When every hop is trusted the leftmost is the client."""
    assert applied([("x-forwarded-for", "10.1.1.1, 10.0.0.5")])["client"] == ("10.1.1.1", 0)


def test_xff_repeated_fields_combine_in_order():
    """Two X-Forwarded-For lines are one list (RFC 9110 §5.3), the later one on the right."""
    s = applied([("x-forwarded-for", "203.0.113.9"), ("x-forwarded-for", "198.51.100.4")])
    assert s["client"] == ("198.51.100.4", 0)


def test_xff_with_ports_and_brackets():
    """Entries with ports and bracketed IPv6 are understood."""
    assert applied([("x-forwarded-for", "[2001:db8::1]:4711")])["client"] == ("2001:db8::1", 4711)
    assert applied([("x-forwarded-for", "192.0.2.1:80")])["client"] == ("192.0.2.1", 80)


def test_xff_garbage_leaves_the_peer():
    """An unparsable hop ends the walk and the peer's own address stays."""
    s = applied([("x-forwarded-for", "203.0.113.9, <script>")])
    assert s["client"] == ("10.0.0.2", 5555)


def test_untrusted_peer_changes_nothing():
    """Headers from a peer outside the trust list leave client, scheme, server, host and root_path alone."""
    headers = [
        ("host", "real"),
        ("x-forwarded-for", "203.0.113.9"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-port", "444"),
        ("forwarded", "for=203.0.113.9;proto=https"),
        ("x-forwarded-prefix", "/evil"),
    ]
    s = applied(headers, trusted=False)
    assert s == scope(headers)


def test_proto_only_known_schemes():
    """X-Forwarded-Proto is honoured for http/https/ws/wss only, and maps to the scope type's scheme."""
    assert applied([("x-forwarded-proto", "https")])["scheme"] == "https"
    assert applied([("x-forwarded-proto", "HTTPS")])["scheme"] == "https"
    assert applied([("x-forwarded-proto", "wss")])["scheme"] == "https"
    assert applied([("x-forwarded-proto", "https")], kind="websocket")["scheme"] == "wss"
    assert applied([("x-forwarded-proto", "http")], kind="websocket")["scheme"] == "ws"
    assert applied([("x-forwarded-proto", "javascript")])["scheme"] == "http"
    assert applied([("x-forwarded-proto", "https;x")])["scheme"] == "http"


def test_proto_list_takes_the_entry_of_the_client_hop():
    """With as many X-Forwarded-Proto entries as hops, the client hop's entry counts; else the last."""
    s = applied([("x-forwarded-for", "203.0.113.9, 10.0.0.5"), ("x-forwarded-proto", "https, http")])
    assert s["scheme"] == "https"
    assert applied([("x-forwarded-proto", "https, http")])["scheme"] == "http"


def test_forwarded_host_and_port():
    """X-Forwarded-Host/-Port set the scope's server and the Host header the app sees."""
    s = applied([("host", "backend:8000"), ("x-forwarded-host", "example.com"), ("x-forwarded-proto", "https")])
    assert s["server"] == ("example.com", 443)
    assert (b"host", b"example.com") in s["headers"]
    assert [n for n, _ in s["headers"]].count(b"host") == 1
    s = applied([("x-forwarded-host", "example.com"), ("x-forwarded-port", "8443")])
    assert s["server"] == ("example.com", 8443)
    assert (b"host", b"example.com:8443") in s["headers"]
    s = applied([("x-forwarded-host", "[2001:db8::1]:8080")])
    assert s["server"] == ("2001:db8::1", 8080)
    assert applied([("x-forwarded-port", "8443")])["server"] == ("10.0.0.9", 8443)


def test_forwarded_host_rejects_bad_values():
    """Hosts with spaces, slashes, '@', commas or bad ports are ignored."""
    for bad in ("a b", "a/b", "user@a", "a:99999", "a:x", ""):
        s = applied([("host", "real"), ("x-forwarded-host", bad)])
        assert s["server"] == ("10.0.0.9", 8000), bad
        assert (b"host", b"real") in s["headers"]


def test_underscore_lookalikes_never_count_and_are_removed():
    """x_forwarded_for and friends are not read, and are removed from the scope's headers."""
    s = applied([("x_forwarded_for", "203.0.113.9"), ("x_forwarded_proto", "https"), ("x-other_thing", "kept")])
    assert s["client"] == ("10.0.0.2", 5555)
    assert s["scheme"] == "http"
    assert s["headers"] == [(b"x-other_thing", b"kept")]
    s = applied([("x_forwarded_for", "203.0.113.9")], trusted=False)
    assert s["headers"] == []


def test_rfc7239_forwarded():
    """Forwarded elements: rightmost untrusted for=, with that element's proto and host."""
    s = applied(
        [("forwarded", 'for="[2001:db8:cafe::17]:4711";proto=https;host="example.com", for=10.0.0.5;proto=http')],
        style="forwarded",
    )
    assert s["client"] == ("2001:db8:cafe::17", 4711)
    assert s["scheme"] == "https"
    assert s["server"] == ("example.com", 443)


def test_rfc7239_without_for_still_gives_proto():
    """An element with only proto= and host= (set by our own proxy) is honoured."""
    s = applied([("forwarded", "proto=https;host=example.com")], style="forwarded")
    assert s["scheme"] == "https" and s["client"] == ("10.0.0.2", 5555)


def test_rfc7239_obfuscated_and_unknown_nodes():
    """An obfuscated or unknown for= is the client hop but no address: the peer stays."""
    s = applied([("forwarded", "for=_hidden;proto=https, for=10.0.0.5")], style="forwarded")
    assert s["client"] == ("10.0.0.2", 5555)
    assert s["scheme"] == "https"


def test_style_picks_one_family():
    """In x-forwarded style Forwarded is ignored, and the other way round."""
    headers = [("forwarded", "for=198.51.100.1"), ("x-forwarded-for", "203.0.113.9")]
    assert applied(headers)["client"] == ("203.0.113.9", 0)
    assert applied(headers, style="forwarded")["client"] == ("198.51.100.1", 0)


def test_parse_forwarded_grammar():
    """Quoted strings may hold commas and semicolons; malformed headers parse to nothing."""
    assert parse_forwarded(b'for="a,b;c";by=x, for=y') == [{"for": "a,b;c", "by": "x"}, {"for": "y"}]
    assert parse_forwarded(b"For=1.2.3.4;PROTO=https") == [{"for": "1.2.3.4", "proto": "https"}]
    assert parse_forwarded(b'for="unterminated') == []
    assert parse_forwarded(b"for=a;for=b") == []
    assert parse_forwarded(b"for a") == []
    assert parse_forwarded(b"=x") == []


def test_root_path_from_trusted_prefix_header():
    """X-Forwarded-Prefix from a trusted peer becomes root_path, and the path starts with it."""
    s = applied([("x-forwarded-prefix", "/api/")])
    assert s["root_path"] == "/api" and s["path"] == "/api/x"
    s = applied([("x-forwarded-prefix", "/api")], root_path="/old")
    assert s["root_path"] == "/api" and s["path"] == "/api/x"
    s = applied([("x-forwarded-prefix", "/api")], trusted=False)
    assert s["root_path"] == "" and s["path"] == "/x"


def test_root_path_header_rejects_bad_values():
    """A prefix that is relative, has a query, control characters or dot segments is ignored."""
    for bad in ("api", "/a?b", "/a\x01", "/a/../b", "/%2e%2e/b", "http://x/"):
        s = applied([("x-forwarded-prefix", bad)])
        assert s["root_path"] == "", bad


def test_custom_root_path_header():
    """The prefix header's name is configurable (e.g. X-Script-Name)."""
    s = scope([("x-script-name", "/app")])
    ProxyHeaders(TrustList("10.0.0.0/8"), "x-forwarded", "X-Script-Name", "prefix").apply(s, True)
    assert s["root_path"] == "/app"


# -- what is believed (issue 15, item 5) -----------------------------------------------------

FORGED = [
    ("host", "real"),
    ("x-forwarded-for", "203.0.113.9"),
    ("x-forwarded-proto", "https"),
    ("x-forwarded-host", "evil.example:8443"),
    ("x-forwarded-port", "8443"),
    ("x-forwarded-prefix", "/evil"),
]


def test_default_believes_for_and_proto_only():
    """By default a trusted peer sets client and scheme; X-Forwarded-Host, -Port and -Prefix change nothing.

    Source: issue 15, item 5 (outside attack)."""
    s = applied(FORGED, believe=DEFAULT_BELIEVED)
    assert s["client"] == ("203.0.113.9", 0) and s["scheme"] == "https"
    assert s["server"] == ("10.0.0.9", 8000)
    assert s["root_path"] == "" and s["path"] == "/x"
    assert (b"host", b"real") in s["headers"]
    assert Config().proxy_headers_trust == DEFAULT_BELIEVED == ("for", "proto")


def test_only_named_headers_are_believed():
    """Each name in the trust set unlocks its own header only, in both header families.

    Source: issue 15, item 5 (outside attack)."""
    s = applied(FORGED, believe=("host",))
    assert s["server"] == ("evil.example", 8443) and s["client"] == ("10.0.0.2", 5555)
    assert s["scheme"] == "http" and s["root_path"] == ""
    s = applied(FORGED, believe=("port",))
    assert s["server"] == ("10.0.0.9", 8443) and (b"host", b"real") in s["headers"]
    s = applied(FORGED, believe=("prefix",))
    assert s["root_path"] == "/evil" and s["server"] == ("10.0.0.9", 8000) and s["scheme"] == "http"
    forwarded = [("forwarded", 'for=203.0.113.9;proto=https;host="evil.example"')]
    s = applied(forwarded, style="forwarded", believe=DEFAULT_BELIEVED)
    assert s["client"] == ("203.0.113.9", 0) and s["scheme"] == "https" and s["server"] == ("10.0.0.9", 8000)
    s = applied(forwarded, style="forwarded", believe=("host",))
    assert s["client"] == ("10.0.0.2", 5555) and s["scheme"] == "http" and s["server"] == ("evil.example", 80)
    assert applied(FORGED, believe=())["client"] == ("10.0.0.2", 5555)


def test_trust_set_validation():
    """The trust set takes a comma list or a tuple of known names; anything else is a ConfigError."""
    assert Config(proxy_headers_trust=("for", "host", "prefix")).proxy_headers_trust == ("for", "host", "prefix")
    with pytest.raises(ConfigError, match=r"proxy_headers_trust.*'scheme'"):
        Config(proxy_headers_trust=("for", "scheme"))
    with pytest.raises(ConfigError, match="proxy_headers_trust"):
        Config(proxy_headers_trust="for,proto")  # type: ignore[arg-type]
    assert ProxyHeaders(TrustList("unix"), believe="For, prefix").believe == {"for", "prefix"}


PREFIX_ATTACKS = [
    "//evil.example",
    "//evil.example/",
    "/\\evil.com",
    "/\\/evil.com",
    "/%2Fevil.example",
    "/%2f%2fevil.example",
    "/%5Cevil.com",
    "/app//x",
    "/app/./x",
    "/app/../x",
    "/%2e%2e/x",
    "/app%00",
    "/app%0d%0aSet-Cookie:x",
    "/app\x1b[31m",
    "/app%1b",
    "/%252F%252Fevil.example",
    "/a b",
    "/a%20b",
    "/a?b",
    "/a#b",
    "/caf%C3%A9",
    "/caf%E9",
    "app",
    "",
    "http://evil.example/",
    "///",
]


@pytest.mark.parametrize("value", PREFIX_ATTACKS)
def test_prefix_must_be_a_normalised_absolute_path(value):
    """A prefix with '//', a backslash, dot segments, control bytes or any of them percent-encoded is ignored.

    Source: issue 15, item 5 (outside attack)."""
    assert normalised_prefix([value]) is None
    reports = []
    s = scope([("x-forwarded-prefix", value)])
    ProxyHeaders(TrustList("10.0.0.0/8"), "x-forwarded", "x-forwarded-prefix", "prefix", reports.append).apply(s, True)
    assert s["root_path"] == "" and s["path"] == "/x"
    assert len(reports) == 1 and "URL prefix" in reports[0]
    assert all(0x20 <= ord(c) < 0x7F for c in reports[0])  # escaped, one line


def test_one_log_line_per_request():
    """A request with a bad X-Forwarded-For, host and prefix gives one report naming all three, escaped.

    Source: issue 15, item 5 (outside attack)."""
    reports = []
    headers = [
        ("x-forwarded-for", "fe80::1%\x1b"),
        ("x-forwarded-host", "a b"),
        ("x-forwarded-prefix", "//evil.example"),
    ]
    ProxyHeaders(TrustList("10.0.0.0/8"), "x-forwarded", "x-forwarded-prefix", BELIEVABLE, reports.append).apply(
        scope(headers), True
    )
    assert len(reports) == 1
    assert all(what in reports[0] for what in ("X-Forwarded-For", "forwarded host", "URL prefix"))
    assert "\\x1b" in reports[0] and "\x1b" not in reports[0]
    ProxyHeaders(TrustList("10.0.0.0/8"), report=reports.append).apply(scope(FORGED), True)
    assert len(reports) == 1  # nothing wrong, nothing reported


def test_prefix_good_values():
    """Ordinary prefixes pass, decoded, without their trailing slash; '/' is the empty prefix."""
    assert normalised_prefix(["/app"]) == "/app"
    assert normalised_prefix(["/app/"]) == "/app"
    assert normalised_prefix(["/a/b-c_d.e~f"]) == "/a/b-c_d.e~f"
    assert normalised_prefix(["/%61pp"]) == "/app"
    assert normalised_prefix(["/"]) == ""
    assert normalised_prefix(["/evil", "/app"]) == "/app"  # the last member: the nearest proxy's
    assert normalised_prefix([]) is None


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from("/\\%.?# 2e5cFfaA\x00\x1b\n\xe9"), max_size=24))
def test_any_accepted_prefix_is_normalised(value):
    """Whatever the header says, a prefix that is taken is a normalised absolute path (or empty).

    Source: issue 15, item 5 (outside attack)."""
    prefix = normalised_prefix([value])
    if prefix is None or prefix == "":
        return
    assert prefix.startswith("/") and not prefix.endswith("/")
    segments = prefix[1:].split("/")
    assert all(seg not in ("", ".", "..") for seg in segments)
    assert all(0x21 <= ord(c) <= 0x7E and c not in "\\%?#" for c in prefix)
    assert "//" not in prefix


# -- addresses (issue 15, item 8) -------------------------------------------------------------


def test_client_ip_refuses_scope_ids():
    """An IPv6 scope id makes a claimed address no address; plain IPv4 and IPv6 pass.

    Source: issue 15, item 8 (outside attack)."""
    assert client_ip("fe80::1%eth0") is None
    assert client_ip('fe80::1%\x1b"x\ny') is None
    assert client_ip("fe80::1") is not None and client_ip("192.0.2.1") is not None
    assert client_ip("1.2.3.4 ") is None and client_ip("01.2.3.4") is None


@pytest.mark.parametrize(
    "headers,style",
    [
        ([("x-forwarded-for", 'fe80::1%evil"x')], "x-forwarded"),
        ([("x-forwarded-for", "[fe80::1%eth0]:80")], "x-forwarded"),
        ([("x-forwarded-for", "fe80::1%\x1b[2J")], "x-forwarded"),
        ([("forwarded", 'for="[fe80::1%25eth0]:80"')], "forwarded"),
        ([("forwarded", 'for="[fe80::1%\\"x]"')], "forwarded"),
    ],
)
def test_addresses_with_scope_ids_are_ignored(headers, style):
    """X-Forwarded-For or for= with an IPv6 scope id from a trusted peer is ignored: the peer stays the client.

    Source: issue 15, item 8 (outside attack)."""
    reports = []
    s = scope(headers)
    ProxyHeaders(TrustList("10.0.0.0/8"), style, "", DEFAULT_BELIEVED, reports.append).apply(s, True)
    assert s["client"] == ("10.0.0.2", 5555)
    assert all(0x20 <= ord(c) < 0x7F for r in reports for c in r)


# -- unix peers (issue 15, item 9) -----------------------------------------------------------------


def test_unix_means_a_unix_listener():
    """'unix' trusts an addressless peer only on a unix-socket listener, not one a PROXY header made addressless.

    Source: issue 15, item 9 (outside attack)."""
    trust = TrustList("127.0.0.1,unix")
    assert trust.trusts_peer(None, unix_listener=True)
    assert not trust.trusts_peer(None, unix_listener=False)
    assert trust.trusts_peer(("127.0.0.1", 5), unix_listener=False)
    assert trust.trusts_peer(("127.0.0.1", 5), unix_listener=True)
    assert not trust.trusts_peer(("192.0.2.1", 5), unix_listener=True)
    assert not TrustList("127.0.0.1").trusts_peer(None, unix_listener=True)
    assert TrustList("*").trusts_peer(None, unix_listener=False)


# -- PROXY protocol ------------------------------------------------------------------------


def v2(command=1, family=0x11, addresses=b"", tlvs=b"", version=2):
    body = addresses + tlvs
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([(version << 4) | command, family]) + struct.pack("!H", len(body)) + body


def v2_tcp4(src="192.0.2.1", dst="192.0.2.2", sport=5678, dport=443, **kw):
    return v2(addresses=socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport), **kw)


def v2_tcp6(src="2001:db8::1", dst="2001:db8::2", sport=5678, dport=443):
    a = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
    return v2(family=0x21, addresses=a + struct.pack("!HH", sport, dport))


def parse(data, limit=4096):
    parser = ProxyProtocolParser(limit)
    header = parser.feed(data)
    return header, parser.rest


def parse_bytewise(data, limit=4096):
    parser = ProxyProtocolParser(limit)
    header = None
    for i in range(len(data)):
        header = parser.feed(data[i : i + 1])
        if header is not None:
            parser.feed(data[i + 1 :])
            break
    return header, parser.rest


CASES = [
    (
        b"PROXY TCP4 192.0.2.1 192.0.2.2 5678 443\r\n",
        ProxyHeader(1, "PROXY", "TCP4", ("192.0.2.1", 5678), ("192.0.2.2", 443)),
    ),
    (
        b"PROXY TCP6 2001:db8::1 2001:db8::2 5678 443\r\n",
        ProxyHeader(1, "PROXY", "TCP6", ("2001:db8::1", 5678), ("2001:db8::2", 443)),
    ),
    (b"PROXY UNKNOWN\r\n", ProxyHeader(1, "PROXY", "UNKNOWN")),
    (b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", ProxyHeader(1, "PROXY", "UNKNOWN")),
    (v2_tcp4(), ProxyHeader(2, "PROXY", "TCP4", ("192.0.2.1", 5678), ("192.0.2.2", 443))),
    (v2_tcp6(), ProxyHeader(2, "PROXY", "TCP6", ("2001:db8::1", 5678), ("2001:db8::2", 443))),
    (v2(command=0, family=0), ProxyHeader(2, "LOCAL", "UNKNOWN")),
    (v2(command=0, family=0x11, addresses=b"\x00" * 12), ProxyHeader(2, "LOCAL", "UNKNOWN")),
    (v2(family=0x00), ProxyHeader(2, "PROXY", "UNKNOWN")),
    (
        v2(family=0x31, addresses=b"/run/a.sock".ljust(108, b"\x00") + b"/run/b.sock".ljust(108, b"\x00")),
        ProxyHeader(2, "PROXY", "UNIX", "/run/a.sock", "/run/b.sock"),
    ),
    # TLVs after the addresses (ALPN, authority, a unique id) are skipped.
    (
        v2_tcp4(tlvs=b"\x01\x00\x02h2" + b"\x02\x00\x0bexample.com" + b"\x05\x00\x04abcd"),
        ProxyHeader(2, "PROXY", "TCP4", ("192.0.2.1", 5678), ("192.0.2.2", 443)),
    ),
]


@pytest.mark.parametrize("data,expected", CASES)
def test_proxy_headers_whole_and_byte_at_a_time(data, expected):
    """Each valid header parses the same in one read and one byte per read, leaving the stream after it."""
    stream = data + b"GET / HTTP/1.1\r\n"
    assert parse(stream) == (expected, b"GET / HTTP/1.1\r\n")
    assert parse_bytewise(stream) == (expected, b"GET / HTTP/1.1\r\n")


def test_local_and_unknown_use_socket_addresses():
    """LOCAL and UNKNOWN say: keep the connection's own addresses."""
    assert parse(v2(command=0, family=0))[0].use_socket_addresses
    assert parse(b"PROXY UNKNOWN\r\n")[0].use_socket_addresses
    assert not parse(v2_tcp4())[0].use_socket_addresses


BAD = [
    b"GET / HTTP/1.1\r\n",
    b"PROXY\r\n",
    b"PROXY TCP4 192.0.2.1 192.0.2.2 5678\r\n",
    b"PROXY TCP4 2001:db8::1 192.0.2.2 5678 443\r\n",
    b"PROXY TCP6 192.0.2.1 192.0.2.2 5678 443\r\n",
    b"PROXY TCP4 192.0.2.1 192.0.2.2 05678 443\r\n",
    b"PROXY TCP4 192.0.2.1 192.0.2.2 65536 443\r\n",
    b"PROXY TCP4 192.0.2.1 192.0.2.2 -1 443\r\n",
    b"PROXY TCP4 192.0.2.1  192.0.2.2 1 443\r\n",
    b"PROXY UDP4 192.0.2.1 192.0.2.2 1 443\r\n",
    b"PROXY TCP4 192.0.2.1 192.0.2.2 1 443\n",
    b"PROXY TCP4 192.0.2.1 192.0.2.2 1 443\rX",
    b"PROXY UNKNOWN " + b"x" * 100 + b"\r\n",
    b"PROXY TCP4 \xff.0.2.1 192.0.2.2 1 443\r\n",
    b"proxy TCP4 192.0.2.1 192.0.2.2 1 443\r\n",
    v2_tcp4(version=1),
    v2_tcp4(command=2),
    v2(family=0x12, addresses=b"\x00" * 12),  # UDP over a stream
    v2(family=0x41, addresses=b"\x00" * 12),  # unknown family
    v2(family=0x11, addresses=b"\x00" * 11),  # address block too short
    b"\r\n\r\n\x00\r\nQUIX\n\x21\x11\x00\x0c",
    # Issue 15, item 8: an IPv6 scope id (any text but '%', to ipaddress) or a
    # control byte anywhere in the line.
    b'PROXY TCP6 fe80::1%\x1b"x fe80::2 1 2\r\n',
    b"PROXY TCP6 fe80::1%eth0 fe80::2 1 2\r\n",
    b"PROXY TCP6 fe80::1%a\nb ::1 1 2\r\n",
    b"PROXY TCP6 ::1 fe80::2%x 1 2\r\n",
    b"PROXY TCP4 192.0.2.1 192.0.2.2 1 443\x1b\r\n",
    b"PROXY UNKNOWN \x1b[2J\r\n",
]


@pytest.mark.parametrize("data", BAD)
def test_bad_proxy_headers_are_errors(data):
    """Malformed headers raise ProxyProtocolError, in one read and byte by byte."""
    with pytest.raises(ProxyProtocolError):
        parse(data)
    with pytest.raises(ProxyProtocolError):
        parse_bytewise(data)


def test_errors_come_as_soon_as_the_bytes_cannot_be_a_header():
    """A wrong first byte is refused at once, without waiting for more."""
    with pytest.raises(ProxyProtocolError):
        ProxyProtocolParser().feed(b"G")
    with pytest.raises(ProxyProtocolError):
        ProxyProtocolParser().feed(b"\r\n\r\n\x00\r\nQ\x00")
    assert ProxyProtocolParser().feed(b"PRO") is None


def test_v1_line_limit():
    """A v1 line without CRLF in 107 bytes is refused (proxy-protocol.txt §2.1)."""
    with pytest.raises(ProxyProtocolError):
        ProxyProtocolParser().feed(b"PROXY TCP6 " + b"1" * 96)
    line = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"
    assert len(line) == 104
    assert ProxyProtocolParser().feed(line) is not None


def test_v2_size_limit():
    """A v2 header longer than the limit is refused before its body arrives."""
    big = v2_tcp4(tlvs=b"\x05" + struct.pack("!H", 5000) + b"x" * 5000)
    parser = ProxyProtocolParser(4096)
    with pytest.raises(ProxyProtocolError, match="exceeds"):
        parser.feed(big[:16])
    assert parse(big, limit=6000)[0].family == "TCP4"


def test_feed_after_completion_collects_the_stream():
    """Bytes fed after the header go to rest, the header stays."""
    parser = ProxyProtocolParser()
    header = parser.feed(b"PROXY UNKNOWN\r\nGET")
    assert parser.feed(b" /") is header
    assert parser.rest == b"GET /"


@settings(max_examples=200, deadline=None)
@given(
    data=st.sampled_from([c[0] for c in CASES]),
    tail=st.binary(max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=6),
)
def test_any_split_parses_the_same(data, tail, cuts):
    """However the header and what follows are split across reads, the result is the same."""
    stream = data + tail
    expected = parse(stream)
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    parser = ProxyProtocolParser()
    header = None
    for a, b in itertools.pairwise(points):
        result = parser.feed(stream[a:b])
        header = header or result
    assert (header, parser.rest) == expected


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_escape(data):
    """Any bytes give a header, a wait for more, or ProxyProtocolError; nothing else."""
    parser = ProxyProtocolParser()
    try:
        parser.feed(data)
    except ProxyProtocolError:
        pass
