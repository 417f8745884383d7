"""Hypothesis strategies for HTTP/1.1 request streams.

* :func:`requests` / :func:`pipelines`: valid requests as wire bytes, together
  with what a correct parser must report for them (:class:`Expected`).
* :data:`hostile_streams`: bytes built from request fragments and noise, for
  "whatever arrives, nothing but ProtocolError escapes" properties.
* :data:`cut_points` and :func:`split`: where to cut a byte stream into reads.

The grammar follows RFC 9112 (request line, fields, chunked coding) and RFC 9110
§5.5/§5.6.2 (field values, tokens); no other server's test data is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from hypothesis import strategies as st

__all__ = [
    "Expected",
    "cut_points",
    "hostile_streams",
    "pipelines",
    "requests",
    "split",
]

# RFC 9110 §5.6.2 tchar.
TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
# RFC 3986 pchar without pct-encoded (added separately).
PCHAR = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@"
HEXDIG = "0123456789abcdefABCDEF"

# Field values (RFC 9110 §5.5): VCHAR and obs-text, inner SP/HTAB. NEL (0x85) is
# refused by the server on purpose (header injection through str.splitlines).
_VALUE_BYTES = [bytes([b]) for b in range(0x21, 0x7F)] + [bytes([b]) for b in range(0x80, 0x100) if b != 0x85]

# Fields the parser (or the server) interprets; random fields avoid them so the
# expected framing stays what the strategy chose.
_RESERVED = frozenset(
    {
        b"host",
        b"content-length",
        b"transfer-encoding",
        b"connection",
        b"proxy-connection",
        b"keep-alive",
        b"expect",
        b"upgrade",
        b"te",
        b"trailer",
        b"http2-settings",
    }
)

METHODS = [b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"HEAD", b"PROPFIND", b"PURGE"]


@dataclass(frozen=True)
class Expected:
    """What the parser must report for one generated request."""

    method: bytes
    path: bytes
    query: bytes
    http_version: str
    #: Every field as the parser reports it: name lower-cased, value without OWS.
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    keep_alive: bool
    content_length: int | None
    has_body: bool


field_names = (
    st.text(alphabet=TCHAR, min_size=1, max_size=16).map(str.encode).filter(lambda n: n.lower() not in _RESERVED)
)


@st.composite
def field_values(draw: st.DrawFn) -> bytes:
    """A field value: visible bytes with inner whitespace, none at either end."""
    words = draw(st.lists(st.lists(st.sampled_from(_VALUE_BYTES), min_size=1, max_size=8).map(b"".join), max_size=4))
    gaps = draw(st.lists(st.sampled_from([b" ", b"\t", b"  "]), min_size=len(words), max_size=len(words)))
    out = b""
    for i, word in enumerate(words):
        out += (gaps[i] if i else b"") + word
    return out


ows = st.sampled_from([b"", b" ", b"\t", b"  ", b" \t"])

pct_encoded = st.tuples(st.sampled_from(HEXDIG), st.sampled_from(HEXDIG)).map(lambda t: ("%" + t[0] + t[1]).encode())
pchars = st.one_of(st.sampled_from(PCHAR).map(str.encode), pct_encoded)
segments = st.lists(pchars, max_size=8).map(b"".join)
paths = st.lists(segments, min_size=1, max_size=5).map(lambda s: b"/" + b"/".join(s))
queries = st.lists(st.one_of(pchars, st.sampled_from([b"/", b"?"])), max_size=12).map(b"".join)


def _chunked(body: bytes, cuts: list[int], exts: list[bytes], trailers: list[bytes], upper: bool) -> bytes:
    """``body`` in the chunked coding (RFC 9112 §7.1), cut at ``cuts``."""
    points = sorted({c % len(body) for c in cuts if c % len(body)} | {0, len(body)}) if body else [0]
    out = []
    for i, (start, end) in enumerate(pairwise(points)):
        size = b"%X" % (end - start) if upper else b"%x" % (end - start)
        out.append(size + (exts[i % len(exts)] if exts else b"") + b"\r\n" + body[start:end] + b"\r\n")
    out.append(b"0" + (exts[0] if exts else b"") + b"\r\n" + b"".join(trailers) + b"\r\n")
    return b"".join(out)


@st.composite
def requests(draw: st.DrawFn, last: bool = True) -> tuple[bytes, Expected]:
    """One valid request as bytes and what the parser must report for it.

    ``last`` False keeps the connection open after it, so more may follow.
    """
    version = draw(st.sampled_from(["1.1", "1.1", "1.0"]))
    method = draw(st.sampled_from(METHODS))
    if method == b"OPTIONS" and draw(st.booleans()):
        target, path, query = b"*", b"*", b""
    else:
        path = draw(paths)
        query = draw(queries)
        has_query = bool(query) or draw(st.booleans())
        target = path + (b"?" + query if has_query else b"")
        if draw(st.integers(0, 4)) == 0:
            # absolute-form (RFC 9112 §3.2.2): the authority is not the path.
            scheme = draw(st.sampled_from([b"http", b"https"]))
            host = draw(st.sampled_from([b"example.com", b"example.com:8080", b"127.0.0.1"]))
            target = scheme + b"://" + host + target

    fields = draw(st.lists(st.tuples(field_names, field_values()), max_size=6))
    # Framing fields are placed among the others at random positions.
    extra: list[tuple[bytes, bytes]] = []
    if version == "1.1":
        extra.append((draw(st.sampled_from([b"Host", b"host", b"HOST"])), b"example.com"))
    elif draw(st.booleans()):
        extra.append((b"Host", b"example.com"))
    body = draw(st.binary(max_size=300))
    framing = draw(st.sampled_from(["length", "chunked"] if version == "1.1" else ["length"]))
    if not body and draw(st.booleans()):
        framing = "none"
    if framing == "length":
        extra.append((b"Content-Length", b"%d" % len(body)))
    elif framing == "chunked":
        extra.append((b"Transfer-Encoding", b"chunked"))
    if version == "1.0":
        keep_alive = not last or draw(st.booleans())
        if keep_alive:
            extra.append((b"Connection", b"keep-alive"))
    else:
        keep_alive = not (last and draw(st.booleans()))
        if not keep_alive:
            extra.append((b"Connection", b"close"))
    for item in extra:
        fields.insert(draw(st.integers(0, len(fields))), item)

    head = [method, b" ", target, b" HTTP/", version.encode(), b"\r\n"]
    for name, value in fields:
        # llhttp stops recognising "chunked" before a trailing HTAB (a 400, the safe side).
        after = draw(st.sampled_from([b"", b" "]) if name == b"Transfer-Encoding" else ows)
        head += (name, b":", draw(ows), value, after, b"\r\n")
    head.append(b"\r\n")
    if framing == "chunked":
        cuts = draw(st.lists(st.integers(0, 300), max_size=5))
        exts = draw(st.lists(st.sampled_from([b";a", b";a=b", b';name="quoted value"', b";x=1;y=2"]), max_size=2))
        trailers = draw(st.lists(st.tuples(field_names, field_values()), max_size=2))
        wire_body = _chunked(body, cuts, exts, [b"X-T-%s: %s\r\n" % t for t in trailers], draw(st.booleans()))
    else:
        wire_body = body
    expected = Expected(
        method=method,
        path=path,
        query=query if b"?" in target or target == b"*" else b"",
        http_version=version,
        headers=tuple((name.lower(), value) for name, value in fields),
        body=body,
        keep_alive=keep_alive,
        content_length=len(body) if framing == "length" else None,
        has_body=framing == "chunked" or bool(body),
    )
    return b"".join(head) + wire_body, expected


@st.composite
def pipelines(draw: st.DrawFn, max_requests: int = 3) -> tuple[bytes, list[Expected]]:
    """One to ``max_requests`` valid requests sent back to back on one connection."""
    n = draw(st.integers(1, max_requests))
    parts = [draw(requests(last=i == n - 1)) for i in range(n)]
    return b"".join(p[0] for p in parts), [p[1] for p in parts]


# Pieces of requests, valid and not, and noise: likely to reach deep parser states.
_TOKENS = [
    b"GET / HTTP/1.1\r\n",
    b"POST /p?q=1 HTTP/1.1\r\n",
    b"HEAD / HTTP/1.0\r\n",
    b"OPTIONS * HTTP/1.1\r\n",
    b"GET http://h/x HTTP/1.1\r\n",
    b"Host: a\r\n",
    b"Content-Length: 5\r\n",
    b"Content-Length: 0\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Connection: close\r\n",
    b"Connection: keep-alive\r\n",
    b"Expect: 100-continue\r\n",
    b"Upgrade: websocket\r\nConnection: upgrade\r\n",
    b"Upgrade: h2c\r\nConnection: upgrade\r\n",
    b"\r\n",
    b"hello",
    b"5\r\nhello\r\n",
    b"5;e=1\r\n",
    b"0\r\n\r\n",
    b"0\r\nT: 1\r\n\r\n",
    b"\n",
    b"\r",
    b"\x00",
    b"\x85",
    b" ",
    b"\t",
    b":",
    b"%",
    b"#",
    b"X-A: b\r\n",
    b"GET",
    b"HTTP/1.1",
    b"HTTP/2.0",
    b"\xff\xfe",
    b"ffffffff\r\n",
]

hostile_streams = st.lists(st.one_of(st.sampled_from(_TOKENS), st.binary(max_size=16)), max_size=30).map(b"".join)

cut_points = st.lists(st.integers(min_value=0, max_value=2048), max_size=10)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at ``cuts`` (out-of-range cuts are ignored) into non-empty reads."""
    points = sorted({c for c in cuts if 0 < c < len(data)} | {0, len(data)})
    return [data[a:b] for a, b in pairwise(points)]
