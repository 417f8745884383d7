"""Who the client really is, when a proxy stands in between: trusted proxy
headers (``X-Forwarded-*``, RFC 7239 ``Forwarded``) and the PROXY protocol
(HAProxy's ``proxy-protocol.txt``, versions 1 and 2).

Rules for this module:

* Nothing a peer says about someone else's address is believed unless the peer
  itself is in a :class:`TrustList`. The default list is loopback plus unix
  sockets: a process on the same host.
* Header names are matched exactly as HTTP/1.1 delivers them (lower-cased);
  ``x_forwarded_for`` and other underscore look-alikes never count, and are
  removed from the scope so that apps which fold ``-`` into ``_`` (CGI, Django's
  ``request.META``) cannot be fooled by them either.
* Values that do not parse are ignored, never passed on half-understood.
  A client address is an IP address as :mod:`ipaddress` reads it, without an
  IPv6 scope id (``fe80::1%eth0``: the zone is the sender's interface, and its
  text is anything but ``%``, so it could carry quotes, escapes or line ends
  into logs); it is put in the scope in canonical form.
* Only the headers named in the configuration's trust set are believed:
  ``for`` and ``proto`` by default (as uvicorn does); ``host``, ``port`` and
  ``prefix`` only when named, since common proxy configurations pass a
  client's own ``X-Forwarded-Host`` and ``-Prefix`` through untouched.
* A URL prefix (the scope's ``root_path``) is a normalised absolute path, or
  it is ignored: an app that redirects to ``root_path + "/login"`` must never
  produce ``//evil.example/login``.

Imports neither Twisted nor asyncio.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from collections.abc import Callable
from functools import lru_cache
from typing import Any, NamedTuple
from urllib.parse import unquote

__all__ = [
    "BELIEVABLE",
    "DEFAULT_BELIEVED",
    "DEFAULT_TRUSTED",
    "ProxyHeader",
    "ProxyHeaders",
    "ProxyProtocolError",
    "ProxyProtocolParser",
    "TrustList",
    "client_ip",
    "normalised_prefix",
    "parse_believed",
    "parse_forwarded",
    "proxy_headers",
    "proxy_headers_for",
]

#: Loopback and unix-socket peers: processes on this host.
DEFAULT_TRUSTED: tuple[str, ...] = ("127.0.0.0/8", "::1", "unix")

#: What a trusted proxy's headers may set: the client (``for``: X-Forwarded-For,
#: ``for=``), the scheme (``proto``: X-Forwarded-Proto, ``proto=``), the host
#: (``host``: X-Forwarded-Host, ``host=``), the port (``port``:
#: X-Forwarded-Port) and the URL prefix (``prefix``: the root-path header).
BELIEVABLE: tuple[str, ...] = ("for", "proto", "host", "port", "prefix")
#: Believed unless configured otherwise: uvicorn's set. A proxy must overwrite
#: (not pass through) every header whose name is believed.
DEFAULT_BELIEVED: tuple[str, ...] = ("for", "proto")

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


# -- trust list ------------------------------------------------------------------


class TrustList:
    """The peers whose word about the client is believed.

    Built from entries such as ``"10.0.0.0/8"``, ``"192.0.2.7"``, ``"::1"``,
    ``"unix"`` (peers on a unix socket, which have no address) and ``"*"``
    (everyone: only for a server that no client can reach directly).

    :raises ValueError: an entry is neither an address, a network, ``unix`` nor ``*``.
    """

    __slots__ = ("networks", "unix", "everyone", "_cache")

    def __init__(self, entries: Any) -> None:
        if isinstance(entries, str):
            entries = entries.split(",")
        self.networks: tuple[_Network, ...] = ()
        self.unix = False
        self.everyone = False
        networks = []
        for raw in entries:
            entry = raw.strip()
            if not entry:
                continue
            if entry == "*":
                self.everyone = True
            elif entry.lower() == "unix":
                self.unix = True
            else:
                try:
                    networks.append(ipaddress.ip_network(entry, strict=False))
                except ValueError:
                    raise ValueError(f"not an IP address, CIDR network, 'unix' or '*': {entry!r}") from None
        self.networks = tuple(networks)
        self._cache: dict[str, bool] = {}

    def trusts(self, host: str | None) -> bool:
        """Whether the peer ``host`` is trusted; None stands for a unix-socket peer."""
        if self.everyone:
            return True
        if host is None:
            return self.unix
        known = self._cache.get(host)
        if known is not None:
            return known
        address = _ip(host)
        result = address is not None and self._contains(address)
        if len(self._cache) < 1024:  # a bounded memo: peers are few, attackers many
            self._cache[host] = result
        return result

    def trusts_peer(self, client: tuple[str, Any] | None, unix_listener: bool) -> bool:
        """Whether a connection's peer is trusted: ``client`` is its
        ``(host, port)`` or None when it has no address; ``unix_listener``
        whether the connection came in on a unix socket of ours.

        ``unix`` names unix-socket *listeners*. A peer without an address on
        any other listener (a PROXY v2 header from a TCP peer that claims a
        unix-socket client) is trusted by no one but ``*``.
        """
        if client is None:
            return self.everyone or (self.unix and unix_listener)
        return self.trusts(client[0])

    def trusts_address(self, address: _Address) -> bool:
        """Whether the parsed IP ``address`` is trusted."""
        return self.everyone or self._contains(address)

    def _contains(self, address: _Address) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            # An IPv4 peer on a dual-stack socket shows up as ::ffff:a.b.c.d.
            address = address.ipv4_mapped
        return any(address.version == net.version and address in net for net in self.networks)

    def __repr__(self) -> str:
        parts = [str(n) for n in self.networks] + ["unix"] * self.unix + ["*"] * self.everyone
        return f"TrustList({','.join(parts)!r})"


def _ip(text: str) -> _Address | None:
    """An address the kernel reported (a scope id is allowed: it is ours)."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def client_ip(text: str) -> _Address | None:
    """An address a peer *claims* for someone else (X-Forwarded-For, ``for=``,
    a PROXY v1 line): an IPv4 or IPv6 address without a scope id, else None.

    :mod:`ipaddress` takes anything but ``%`` after an IPv6 ``%`` as the zone,
    ESC, quotes and line ends included; a remote client's zone means nothing
    here, so an address with one is no address.
    """
    if "%" in text:
        return None
    return _ip(text)


# -- proxy headers -----------------------------------------------------------------

_XFF = b"x-forwarded-for"
_XFP = b"x-forwarded-proto"
_XFH = b"x-forwarded-host"
_XFPORT = b"x-forwarded-port"
_FORWARDED = b"forwarded"

#: X-Forwarded-Proto values we accept; anything else is ignored.
_SCHEMES = {"http": False, "https": True, "ws": False, "wss": True}

# RFC 3986 §3.2.2 host (reg-name or IP literal) with an optional port. No
# whitespace, commas, slashes or '@': a host header built from it stays one host.
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+;=%]+)(?::([0-9]{1,5}))?$")
# RFC 7230 token characters (RFC 7239 §4 uses token / quoted-string values).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")


class _Hop(NamedTuple):
    """What a proxy said about the connection it received: who connected to it
    (``node``: an IP or an obfuscated name), with which scheme, for which host.
    (A NamedTuple, immutable: a frozen dataclass cost every start-up about
    2 M instructions to make.)"""

    node: str | None
    port: int | None = None
    proto: str | None = None
    host: str | None = None
    #: The port X-Forwarded-Port names (the port the client connected to).
    server_port: int | None = None


class ProxyHeaders:
    """Applies trusted proxy headers to scopes.

    ``style`` picks the header family believed: ``"x-forwarded"``
    (``X-Forwarded-For``, ``-Proto``, ``-Host``, ``-Port``) or ``"forwarded"``
    (RFC 7239). Only one family is read, because a proxy that sets one usually
    passes the other through from the client untouched. ``prefix_header`` names
    the header that carries the URL prefix the proxy stripped (the scope's
    ``root_path``), or is empty for none.

    ``believe`` names what the headers may set (see :data:`BELIEVABLE`);
    the rest of what a trusted peer says is ignored, as a proxy that does not
    overwrite a header passes the client's own copy on. ``report`` is called
    with one line (the value escaped) when a trusted peer's value is ignored
    because it does not parse.
    """

    __slots__ = ("trust", "style", "prefix_header", "believe", "report", "_lookalikes", "_ignored_now")

    def __init__(
        self,
        trust: TrustList,
        style: str = "x-forwarded",
        prefix_header: str = "",
        believe: Any = DEFAULT_BELIEVED,
        report: Callable[[str], None] | None = None,
    ) -> None:
        if style not in ("x-forwarded", "forwarded"):
            raise ValueError(f"proxy header style must be 'x-forwarded' or 'forwarded', not {style!r}")
        self.believe = frozenset(parse_believed(believe))
        self.trust = trust
        self.style = style
        self.report = report
        configured = prefix_header.strip().lower().encode("latin-1")
        self.prefix_header = configured if "prefix" in self.believe else b""
        #: What :meth:`apply` ignored in the request at hand (reported as one line).
        self._ignored_now: list[str] = []
        honoured = {_XFF, _XFP, _XFH, _XFPORT, _FORWARDED, b"x-real-ip", b"x-script-name", b"x-forwarded-prefix"}
        if configured:
            honoured.add(configured)
        #: Names that turn into a honoured header when '_' is read as '-'.
        self._lookalikes = frozenset(n.replace(b"-", b"_") for n in honoured)

    def apply(self, scope: dict[str, Any], trusted: bool) -> None:
        """Rewrite ``scope`` (an ``http`` or ``websocket`` scope just built from
        the request) with what a trusted peer's headers say.

        ``trusted`` tells whether the connection's peer is in the trust list;
        when it is not, only the underscore look-alikes are removed.
        """
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        lookalikes = self._lookalikes
        # 0x5F is b"_": an int needle is cheaper (see cycle.py on `in`).
        if any(0x5F in name and name in lookalikes for name, _ in headers):
            headers = [(n, v) for n, v in headers if n not in lookalikes]
            scope["headers"] = headers
        if not trusted:
            return
        values: dict[bytes, list[bytes]] = {}
        prefix_header = self.prefix_header
        for name, value in headers:
            if name in _WANTED or name == prefix_header:
                values.setdefault(name, []).append(value)
        if not values:
            return
        ignored = self._ignored_now
        ignored.clear()
        hop = self._forwarded_hop(values) if self.style == "forwarded" else self._x_forwarded_hop(values)
        if hop is not None:
            self._apply_hop(scope, hop)
        if prefix_header and prefix_header in values:
            prefix = normalised_prefix(_split_list(values[prefix_header])[-1:])
            if prefix is None:
                self._ignored("URL prefix", values[prefix_header][-1])
            else:
                old_root = scope["root_path"]
                path = scope["path"]
                if old_root and path.startswith(old_root):
                    path = path[len(old_root) :]
                scope["root_path"] = prefix
                scope["path"] = prefix + path
        if ignored and self.report is not None:
            # One line per request, whatever it got wrong.
            self.report(f"Ignored from a trusted proxy, not valid: {'; '.join(ignored)}")

    # -- the two header families ------------------------------------------------

    def _x_forwarded_hop(self, values: dict[bytes, list[bytes]]) -> _Hop | None:
        node: str | None = None
        port: int | None = None
        index = -1
        count = 0
        believe = self.believe
        if _XFF in values and "for" in believe:
            entries = _split_list(values[_XFF])
            count = len(entries)
            nodes = [_node(e) for e in entries]
            index, node, port = self._client_entry(nodes)
            if index is None and node is None:
                self._ignored("X-Forwarded-For", values[_XFF][-1])
        proto = _aligned(values.get(_XFP), index, count) if "proto" in believe else None
        host = _aligned(values.get(_XFH), index, count) if "host" in believe else None
        server_port = _aligned(values.get(_XFPORT), index, count) if "port" in believe else None
        if node is None and proto is None and host is None and server_port is None:
            return None
        forced = int(server_port) if server_port is not None and server_port.isdigit() else None
        if forced is not None and not 0 < forced < 65536:
            forced = None
        return _Hop(node, port, proto.lower() if proto else None, host, forced)

    def _forwarded_hop(self, values: dict[bytes, list[bytes]]) -> _Hop | None:
        if _FORWARDED not in values:
            return None
        elements = parse_forwarded(b",".join(values[_FORWARDED]))
        if not elements:
            return None
        believe = self.believe
        index: Any = None
        node: str | None = None
        port: int | None = None
        if "for" in believe:
            nodes = []
            for element in elements:
                raw = element.get("for")
                nodes.append(_node(raw) if raw is not None else (None, None))
            index, node, port = self._client_entry(nodes)
        # Without a usable for= chain, proto= and host= still come from the
        # element our own proxy added (the last one).
        element = elements[index if index is not None else -1]
        proto = element.get("proto") if "proto" in believe else None
        host = element.get("host") if "host" in believe else None
        return _Hop(node, port, proto.lower() if proto else None, host)

    def _client_entry(self, nodes: list[tuple[str | None, int | None]]) -> tuple[Any, str | None, int | None]:
        """The rightmost hop that is not a trusted proxy: walking from the
        nearest proxy outwards, each trusted address vouches for the next
        one to its left; the first untrusted one is the client. If every hop
        is trusted the leftmost is the client. An unparsable hop ends the
        walk with no client (the peer's own address stays)."""
        chosen: Any = None
        for i in range(len(nodes) - 1, -1, -1):
            host, port = nodes[i]
            if host is None:
                return None, None, None
            chosen = i
            address = client_ip(host)
            if address is None or not self.trust.trusts_address(address):
                break
        if chosen is None:
            return None, None, None
        host, port = nodes[chosen]
        return chosen, host, port

    # -- applying ---------------------------------------------------------------------

    def _apply_hop(self, scope: dict[str, Any], hop: _Hop) -> None:
        forced_port = hop.server_port
        if hop.node is not None and client_ip(hop.node) is not None:
            scope["client"] = (hop.node, hop.port or 0)
        secure: bool | None = None
        if hop.proto is not None and hop.proto in _SCHEMES:
            secure = _SCHEMES[hop.proto]
            if scope["type"] == "websocket":
                scope["scheme"] = "wss" if secure else "ws"
            else:
                scope["scheme"] = "https" if secure else "http"
        if secure is None:
            secure = scope["scheme"] in ("https", "wss")
        host_port = _host(hop.host) if hop.host is not None else None
        if host_port is None and hop.host is not None:
            self._ignored("forwarded host", hop.host.encode("latin-1", "replace"))
        if host_port is not None:
            name, port = host_port
            if port is None:
                port = forced_port if forced_port is not None else (443 if secure else 80)
            scope["server"] = (name.strip("[]"), port)
            default = 443 if secure else 80
            value = name if port == default else f"{name}:{port}"
            scope["headers"] = _replace_host(scope["headers"], value.encode("ascii"))
        elif forced_port is not None and scope.get("server"):
            scope["server"] = (scope["server"][0], forced_port)

    def _ignored(self, what: str, raw: bytes) -> None:
        if self.report is not None:
            # !a (ascii()): escaped, so no control byte of the client's reaches the log.
            self._ignored_now.append(f"{what} {raw.decode('latin-1')[:80]!a}")


_WANTED = frozenset({_XFF, _XFP, _XFH, _XFPORT, _FORWARDED})


def parse_believed(names: Any) -> tuple[str, ...]:
    """``"for,proto,host"`` or a sequence of names -> the names, checked
    against :data:`BELIEVABLE`.

    :raises ValueError: a name is not one of them.
    """
    if isinstance(names, str):
        names = names.split(",")
    out: list[str] = []
    for raw in names:
        name = raw.strip().lower()
        if not name:
            continue
        if name not in BELIEVABLE:
            raise ValueError(f"not one of {', '.join(BELIEVABLE)}: {raw!r}")
        if name not in out:
            out.append(name)
    return tuple(out)


@lru_cache(maxsize=16)
def proxy_headers(
    allow: tuple[str, ...],
    style: str,
    prefix_header: str,
    believe: tuple[str, ...] = DEFAULT_BELIEVED,
    report: Callable[[str], None] | None = None,
) -> ProxyHeaders:
    """A shared :class:`ProxyHeaders` for one configuration (parsed once per process)."""
    return ProxyHeaders(TrustList(allow), style, prefix_header, believe, report)


def proxy_headers_for(config: Any, report: Callable[[str], None] | None = None) -> ProxyHeaders:
    """The shared :class:`ProxyHeaders` for a :class:`~twisted_asgi.config.Config`."""
    return proxy_headers(
        config.forwarded_allow_ips,
        config.proxy_headers_style,
        config.root_path_header,
        config.proxy_headers_trust,
        report,
    )


def _split_list(raw_values: list[bytes]) -> list[str]:
    """The comma-separated members of one or more header lines, in order
    (RFC 9110 §5.3: repeated fields combine as one list)."""
    out: list[str] = []
    for raw in raw_values:
        for part in raw.decode("latin-1").split(","):
            part = part.strip()
            if part:
                out.append(part)
    return out


def _aligned(raw_values: list[bytes] | None, index: Any, count: int) -> str | None:
    """The member of a list header that belongs to the client hop: the one at
    the same position as the chosen X-Forwarded-For entry when both lists have
    the same length, else the last one (set by the proxy in front of us)."""
    if not raw_values:
        return None
    members = _split_list(raw_values)
    if not members:
        return None
    if index is not None and index >= 0 and len(members) == count:
        return members[index]
    return members[-1]


def _node(text: str) -> tuple[str | None, int | None]:
    """An address as proxies write it: ``1.2.3.4``, ``1.2.3.4:80``, ``::1``,
    ``[::1]``, ``[::1]:80``, or RFC 7239's ``unknown`` and ``_obfuscated``
    names. Returns (host, port); host is None when it does not parse."""
    text = text.strip()
    if not text or _CONTROL.search(text):
        return None, None
    port: int | None = None
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            return None, None
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                return None, None
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        if not port_text.isdigit():
            return None, None
        port = int(port_text)
    else:
        host = text
    if port is not None and not 0 <= port < 65536:
        return None, None
    address = client_ip(host)
    if address is not None:
        return str(address), port
    if host == "unknown" or (host.startswith("_") and _TOKEN.fullmatch(host)):
        # RFC 7239 §6.2/6.3: an unknown or hidden node. It ends the walk as an
        # untrusted hop but is no address to put in the scope.
        return host, port
    return None, None


def _host(text: str) -> tuple[str, int | None] | None:
    match = _HOST.match(text.strip())
    if match is None:
        return None
    name, port = match.group(1), match.group(2)
    if port is not None:
        number = int(port)
        if not 0 < number < 65536:
            return None
        return name, number
    return name, None


def _replace_host(headers: list[tuple[bytes, bytes]], value: bytes) -> list[tuple[bytes, bytes]]:
    """A copy of ``headers`` whose one ``host`` field is ``value``, where the
    first one was (or at the end)."""
    out: list[tuple[bytes, bytes]] = []
    placed = False
    for name, old in headers:
        if name == b"host":
            if not placed:
                out.append((name, value))
                placed = True
            continue
        out.append((name, old))
    if not placed:
        out.append((b"host", value))
    return out


# A normalised absolute path, percent-decoded: segments of printable ASCII
# other than '/', '\\', '%', '?', '#' and space (RFC 3986 pchar, decoded, less
# what would make the path mean something else), never '.' or '..'.
_PREFIX_SEGMENT = re.compile(r"[!-~]+")
_PREFIX_REFUSED = frozenset("\\%?#")


def normalised_prefix(members: list[str]) -> str | None:
    """The URL prefix a proxy named (the last of ``members``) as the scope's
    ``root_path``, or None when it is not a normalised absolute path.

    The value is percent-decoded once (ASGI's ``root_path`` is decoded, like
    ``path``) and the result is checked: one leading ``/``, no empty segment
    (``//evil.example`` is a protocol-relative URL to an app that redirects
    to its root path), no ``\\`` (browsers read ``/\\evil.com`` as
    ``//evil.com``), no ``.``/``..`` segment, no ``%`` left (a double-encoded
    value), ``?``, ``#``, space, control or non-ASCII character. One trailing
    ``/`` is dropped (``/app/`` is ``/app``); ``/`` alone is the empty prefix.
    """
    if not members:
        return None
    raw = members[-1]
    try:
        text = unquote(raw, errors="strict")
    except UnicodeDecodeError:
        return None
    if text == "/":
        return ""
    if text.endswith("/"):
        text = text[:-1]
    if not text.startswith("/"):
        return None
    for segment in text[1:].split("/"):
        if (
            segment in ("", ".", "..")
            or _PREFIX_SEGMENT.fullmatch(segment) is None
            or not _PREFIX_REFUSED.isdisjoint(segment)
        ):
            return None
    return text


def parse_forwarded(raw: bytes) -> list[dict[str, str]]:
    """The elements of a ``Forwarded`` header (RFC 7239 §4), left to right,
    each a dict of lower-cased parameter names to values (quotes removed).

    A malformed header gives ``[]``: it is ignored as a whole, since a value cut
    at the wrong comma could put someone else's address in the scope.
    """
    text = raw.decode("latin-1")
    elements: list[dict[str, str]] = []
    current: dict[str, str] = {}
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c in " \t":
            i += 1
            continue
        if c == ",":
            elements.append(current)
            current = {}
            i += 1
            continue
        if c == ";":
            i += 1
            continue
        match = _TOKEN.match(text, i)
        if match is None:
            return []
        name = match.group().lower()
        i = match.end()
        if i >= n or text[i] != "=":
            return []
        i += 1
        if i < n and text[i] == '"':
            i += 1
            value = []
            while True:
                if i >= n:
                    return []
                c = text[i]
                if c == "\\" and i + 1 < n:
                    value.append(text[i + 1])
                    i += 2
                    continue
                if c == '"':
                    i += 1
                    break
                value.append(c)
                i += 1
            current_value = "".join(value)
        else:
            match = _TOKEN.match(text, i)
            if match is None:
                return []
            current_value = match.group()
            i = match.end()
        if name in current:  # RFC 7239 §4: a parameter MUST NOT occur twice in one element
            return []
        current[name] = current_value
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] not in ",;":
            return []
    elements.append(current)
    return elements


# -- PROXY protocol --------------------------------------------------------------

_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_V1_PREFIX = b"PROXY "
#: A v1 line is at most 107 bytes with its CRLF (proxy-protocol.txt §2.1).
_V1_MAX = 107
_V2_HEAD = 16
# Address block sizes by family (proxy-protocol.txt §2.2).
_V2_FAMILIES = {0x1: ("TCP4", 12), 0x2: ("TCP6", 36), 0x3: ("UNIX", 216)}


class ProxyProtocolError(ValueError):
    """The bytes are not a valid PROXY protocol header; the connection must be closed."""


class ProxyHeader(NamedTuple):
    """A parsed PROXY header (a NamedTuple, immutable, as :class:`_Hop`).

    ``command`` is ``"PROXY"`` (addresses below are the real client's) or
    ``"LOCAL"`` (the proxy's own connection, e.g. a health check: use the
    socket's addresses). ``family`` is ``"TCP4"``, ``"TCP6"``, ``"UNIX"`` or
    ``"UNKNOWN"`` (addresses unknown: use the socket's). ``source`` and
    ``destination`` are ``(host, port)``, a unix path string, or None.
    """

    version: int
    command: str
    family: str
    source: tuple[str, int] | str | None = None
    destination: tuple[str, int] | str | None = None

    @property
    def use_socket_addresses(self) -> bool:
        """True when the connection's own addresses stand (LOCAL, UNKNOWN)."""
        return self.command == "LOCAL" or self.family == "UNKNOWN"


class ProxyProtocolParser:
    """Reads one PROXY protocol header (v1 or v2) off the start of a stream.

    Feed bytes as they arrive; :meth:`feed` returns the :class:`ProxyHeader`
    once complete (then :attr:`rest` holds the bytes after it, the start of
    the real stream), None while more bytes are needed, and raises
    :class:`ProxyProtocolError` as soon as the bytes cannot be a header or the
    header would exceed ``limit`` bytes. A header split across any number of
    reads parses the same as one in a single read.
    """

    __slots__ = ("limit", "buffer", "rest", "header")

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self.buffer = b""
        self.rest = b""
        self.header: ProxyHeader | None = None

    def feed(self, data: bytes) -> ProxyHeader | None:
        if self.header is not None:
            self.rest += data
            return self.header
        buffer = self.buffer = self.buffer + data
        if not buffer:
            return None
        if buffer[0:1] == b"\r":
            return self._v2(buffer)
        if buffer[0:1] == b"P":
            return self._v1(buffer)
        raise ProxyProtocolError("the connection did not start with a PROXY protocol header")

    def _done(self, header: ProxyHeader, length: int) -> ProxyHeader:
        self.header = header
        self.rest = self.buffer[length:]
        self.buffer = b""
        return header

    # -- version 1: one text line ------------------------------------------------------

    def _v1(self, buffer: bytes) -> ProxyHeader | None:
        head = buffer[: len(_V1_PREFIX)]
        if not _V1_PREFIX.startswith(head):
            raise ProxyProtocolError("the connection did not start with a PROXY protocol header")
        end = buffer.find(b"\r\n", 0, _V1_MAX)
        if end < 0:
            # No CRLF yet: a bare LF, a CR followed by anything but LF, or 107
            # bytes without an end can never become a valid line.
            if len(buffer) >= _V1_MAX or b"\n" in buffer or b"\r" in buffer[:-1]:
                raise ProxyProtocolError("PROXY v1 line is malformed or longer than 107 bytes")
            return None
        line = buffer[:end]
        try:
            text = line.decode("ascii")
        except UnicodeDecodeError:
            raise ProxyProtocolError("PROXY v1 line is not ASCII") from None
        if not text.isprintable():
            # §2.1: words of printable ASCII separated by single spaces; a
            # control byte (ESC, a bare LF) is never part of a valid line.
            raise ProxyProtocolError(f"PROXY v1 line with a control character: {text[:60]!r}")
        parts = text.split(" ")
        if len(parts) < 2 or parts[0] != "PROXY":
            raise ProxyProtocolError("malformed PROXY v1 line")
        family = parts[1]
        if family == "UNKNOWN":
            # §2.1: the rest of the line up to CRLF is to be ignored.
            return self._done(ProxyHeader(1, "PROXY", "UNKNOWN"), end + 2)
        if family not in ("TCP4", "TCP6") or len(parts) != 6:
            raise ProxyProtocolError(f"malformed PROXY v1 line: {text[:60]!r}")
        source = _v1_address(parts[2], parts[4], family)
        destination = _v1_address(parts[3], parts[5], family)
        return self._done(ProxyHeader(1, "PROXY", family, source, destination), end + 2)

    # -- version 2: binary --------------------------------------------------------------

    def _v2(self, buffer: bytes) -> ProxyHeader | None:
        head = buffer[:12]
        if not _V2_SIGNATURE.startswith(head):
            raise ProxyProtocolError("the connection did not start with a PROXY protocol header")
        if len(buffer) < _V2_HEAD:
            if len(buffer) > 12 and buffer[12] >> 4 != 2:
                raise ProxyProtocolError("PROXY v2 header with an unknown version")
            return None
        version_command, family_protocol, length = struct.unpack_from("!BBH", buffer, 12)
        if version_command >> 4 != 2:
            raise ProxyProtocolError("PROXY v2 header with an unknown version")
        command = version_command & 0x0F
        if command not in (0, 1):
            raise ProxyProtocolError("PROXY v2 header with an unknown command")
        total = _V2_HEAD + length
        if total > self.limit:
            raise ProxyProtocolError(f"PROXY v2 header of {total} bytes exceeds the {self.limit}-byte limit")
        if len(buffer) < total:
            return None
        block = buffer[_V2_HEAD:total]
        if command == 0:
            # LOCAL: the proxy's own connection; the address block is ignored (§2.2).
            return self._done(ProxyHeader(2, "LOCAL", "UNKNOWN"), total)
        family_code, transport = family_protocol >> 4, family_protocol & 0x0F
        if family_code == 0 or family_code not in _V2_FAMILIES:
            if family_code != 0:
                raise ProxyProtocolError("PROXY v2 header with an unknown address family")
            return self._done(ProxyHeader(2, "PROXY", "UNKNOWN"), total)
        if transport != 1:
            # Only STREAM makes sense on a TCP connection; DGRAM or UNSPEC is a
            # confused sender and the addresses cannot be trusted for this stream.
            raise ProxyProtocolError("PROXY v2 header for a non-stream transport")
        family, size = _V2_FAMILIES[family_code]
        if len(block) < size:
            raise ProxyProtocolError(f"PROXY v2 {family} address block too short")
        # Bytes after the addresses are TLVs (§2.2.7); none of them changes
        # who the client is, so they are skipped.
        source: tuple[str, int] | str
        destination: tuple[str, int] | str
        if family == "TCP4":
            src, dst, sport, dport = struct.unpack_from("!4s4sHH", block)
            source = (str(ipaddress.IPv4Address(src)), sport)
            destination = (str(ipaddress.IPv4Address(dst)), dport)
        elif family == "TCP6":
            src, dst, sport, dport = struct.unpack_from("!16s16sHH", block)
            source = (str(ipaddress.IPv6Address(src)), sport)
            destination = (str(ipaddress.IPv6Address(dst)), dport)
        else:
            source = block[:108].split(b"\x00", 1)[0].decode("utf-8", "replace")
            destination = block[108:216].split(b"\x00", 1)[0].decode("utf-8", "replace")
        return self._done(ProxyHeader(2, "PROXY", family, source, destination), total)


def _v1_address(host: str, port: str, family: str) -> tuple[str, int]:
    # client_ip: no IPv6 scope id (fe80::1%<anything>) is an address of a client.
    address = client_ip(host)
    if address is None or (address.version == 4) != (family == "TCP4"):
        raise ProxyProtocolError(f"PROXY v1 {family} line with a bad address {host[:46]!r}")
    # §2.1: ports are decimal 0..65535, no sign, no leading zeros (other than "0").
    if not port.isdigit() or (len(port) > 1 and port[0] == "0") or int(port) > 65535:
        raise ProxyProtocolError(f"PROXY v1 line with a bad port {port[:6]!r}")
    if family == "TCP4" and host != str(address):
        raise ProxyProtocolError(f"PROXY v1 line with a non-canonical address {host[:46]!r}")
    return (str(address), int(port))
