"""HPACK (RFC 7541) for the server side of HTTP/2: a stateless encoder for
responses and a decoder for requests, in place of the ``hpack`` package's.

h2's connection takes any object with ``encode(headers) -> bytes`` and a
``header_table_size`` attribute as its encoder, and one with
``decode(block, raw=True)`` and three size attributes as its decoder; both are
set on :class:`~twisted_asgi.http2.HTTP2Connection`'s h2 connection.

The encoder: :class:`StaticEncoder` uses
the static table and literals only, never the dynamic table (RFC 7541 §2.3.2
lets an encoder use as little of it as it likes). Each field therefore encodes
the same way on every connection and every response, so its bytes are kept in
one bounded table and a response head is, in the common case, a join of bytes
already made. Huffman coding (Appendix B) is used where it is shorter.

What it costs on the wire: a field the client has seen before takes its literal
bytes again instead of a one-byte index (a typical response head of five
fields is about 60 bytes instead of 10-20). What it saves: all per-field work
of a stateful encoder, which was the largest single cost of an HTTP/2 response.

Fields that may carry secrets (RFC 7541 §7.1.3) go out as "never indexed"
literals, so that no intermediary puts them in its own table, and are not kept.

The decoder: :class:`FieldDecoder` is the whole of RFC 7541's decoding side
(dynamic table, size updates, Huffman strings, the header-list limit) in one
loop over the block, raising the ``hpack`` package's exceptions, which h2 turns
into connection errors. Huffman strings decode through ``hpack``'s table
(fenced in :mod:`twisted_asgi._upstream.hpack`, with a public fallback), and
their results are kept in one bounded table, as clients send the same values
again and again.

Imports neither Twisted nor asyncio.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from hpack.exceptions import (
    HPACKDecodingError,
    InvalidTableIndex,
    InvalidTableSizeError,
    OversizedHeaderListError,
)

from ._upstream.hpack import huffman_decode, huffman_encode
from .hpack_integer import encode_integer

__all__ = ["STATIC_TABLE", "FieldDecoder", "StaticEncoder", "encode_integer"]

#: RFC 7541 Appendix A (fixed by the RFC; tests/test_hpack_codec.py checks it
#: against hpack's own copy).
STATIC_TABLE: tuple[tuple[bytes, bytes], ...] = (
    (b":authority", b""),  # 1
    (b":method", b"GET"),  # 2
    (b":method", b"POST"),  # 3
    (b":path", b"/"),  # 4
    (b":path", b"/index.html"),  # 5
    (b":scheme", b"http"),  # 6
    (b":scheme", b"https"),  # 7
    (b":status", b"200"),  # 8
    (b":status", b"204"),  # 9
    (b":status", b"206"),  # 10
    (b":status", b"304"),  # 11
    (b":status", b"400"),  # 12
    (b":status", b"404"),  # 13
    (b":status", b"500"),  # 14
    (b"accept-charset", b""),  # 15
    (b"accept-encoding", b"gzip, deflate"),  # 16
    (b"accept-language", b""),  # 17
    (b"accept-ranges", b""),  # 18
    (b"accept", b""),  # 19
    (b"access-control-allow-origin", b""),  # 20
    (b"age", b""),  # 21
    (b"allow", b""),  # 22
    (b"authorization", b""),  # 23
    (b"cache-control", b""),  # 24
    (b"content-disposition", b""),  # 25
    (b"content-encoding", b""),  # 26
    (b"content-language", b""),  # 27
    (b"content-length", b""),  # 28
    (b"content-location", b""),  # 29
    (b"content-range", b""),  # 30
    (b"content-type", b""),  # 31
    (b"cookie", b""),  # 32
    (b"date", b""),  # 33
    (b"etag", b""),  # 34
    (b"expect", b""),  # 35
    (b"expires", b""),  # 36
    (b"from", b""),  # 37
    (b"host", b""),  # 38
    (b"if-match", b""),  # 39
    (b"if-modified-since", b""),  # 40
    (b"if-none-match", b""),  # 41
    (b"if-range", b""),  # 42
    (b"if-unmodified-since", b""),  # 43
    (b"last-modified", b""),  # 44
    (b"link", b""),  # 45
    (b"location", b""),  # 46
    (b"max-forwards", b""),  # 47
    (b"proxy-authenticate", b""),  # 48
    (b"proxy-authorization", b""),  # 49
    (b"range", b""),  # 50
    (b"referer", b""),  # 51
    (b"refresh", b""),  # 52
    (b"retry-after", b""),  # 53
    (b"server", b""),  # 54
    (b"set-cookie", b""),  # 55
    (b"strict-transport-security", b""),  # 56
    (b"transfer-encoding", b""),  # 57
    (b"user-agent", b""),  # 58
    (b"vary", b""),  # 59
    (b"via", b""),  # 60
    (b"www-authenticate", b""),  # 61
)

#: Static table lookups: full matches and names, first index wins.
_STATIC_FIELD: dict[tuple[bytes, bytes], int] = {}
_STATIC_NAME: dict[bytes, int] = {}
for _index, (_name, _value) in enumerate(STATIC_TABLE, 1):
    _STATIC_FIELD.setdefault((_name, _value), _index)
    _STATIC_NAME.setdefault(_name, _index)
del _index, _name, _value

#: Names whose values are never indexed (RFC 7541 §7.1.3); h2 treats the same
#: request-side names this way, and a response's cookies are as private.
_SENSITIVE = frozenset({b"authorization", b"proxy-authorization", b"set-cookie", b"cookie"})

#: Encoded fields, kept by each connection's encoder (the encoding has no
#: state, but the fields are the app's answers to one client: shared by every
#: connection, their timing would tell a client what another was answered, and
#: they would outlive their connection). Bounded in count (values that change
#: per response, such as content-length, date or etags, would otherwise grow
#: it without end; when full it starts again) and in field size (a long value
#: rarely repeats): at most 64 fields of 256 bytes a connection.
_FIELDS_MAX = 64
_FIELD_KEPT_BYTES = 256

_DEFAULT_TABLE_SIZE = 4096  # RFC 7541 §4.2 / RFC 9113 §6.5.2 initial value
#: FieldDecoder remembers at most this many indexed-only blocks of at most this size.
_SEEN_BLOCKS = 32
_SEEN_BLOCK_BYTES = 128


def _literal(data: bytes) -> bytes:
    """A string literal (RFC 7541 §5.2), Huffman-coded when that is shorter
    (and hpack's Huffman tables can be used, see twisted_asgi._upstream.hpack)."""
    coded = huffman_encode(data)
    if coded is not None and len(coded) < len(data):
        return encode_integer(len(coded), 7, 0x80) + coded
    return encode_integer(len(data), 7) + data


def _field(name: bytes, value: bytes, never_indexed: bool) -> bytes:
    """One field: indexed when the static table has it whole, else a literal
    without indexing (or never indexed), with an indexed name where it can."""
    if not never_indexed:
        index = _STATIC_FIELD.get((name, value))
        if index is not None:
            return encode_integer(index, 7, 0x80)  # §6.1
    first = 0x10 if never_indexed else 0x00  # §6.2.3 / §6.2.2
    index = _STATIC_NAME.get(name)
    if index is not None:
        return encode_integer(index, 4, first) + _literal(value)
    return bytes((first,)) + _literal(name) + _literal(value)


class StaticEncoder:
    """HPACK encoder that never touches the dynamic table (one per connection,
    in place of h2's ``H2Connection.encoder``).

    h2 hands it fields as byte pairs, names already lowercase (our own response
    head makes them so; h2's outbound normalisation is off).
    """

    __slots__ = ("_table_size", "_announced", "_pending", "_fields")

    def __init__(self) -> None:
        self._table_size = _DEFAULT_TABLE_SIZE
        #: The table size the peer's decoder believes we use (RFC 7541 §4.2).
        self._announced = _DEFAULT_TABLE_SIZE
        self._pending = False
        #: Fields encoded before (see _FIELDS_MAX), made at the first block.
        self._fields: dict[tuple[bytes, bytes], bytes] | None = None

    @property
    def header_table_size(self) -> int:
        """The peer's SETTINGS_HEADER_TABLE_SIZE, the most our table may use."""
        return self._table_size

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        # The peer lowered the limit below what its decoder believes we use:
        # the next block must start with a size update (RFC 7541 §4.2), which
        # says 0, so no later change of the setting needs another.
        self._table_size = value
        if value < self._announced:
            self._pending = True

    def encode(self, headers: Iterable[tuple[bytes, bytes]], huffman: bool = True) -> bytes:
        """The header block for ``headers`` (``huffman`` is accepted for h2's
        sake; Huffman coding is chosen per string where it is shorter)."""
        fields = self._fields
        if fields is None:
            fields = self._fields = {}
        parts: list[bytes] = []
        if self._pending:
            parts.append(b"\x20")  # dynamic table size update to 0 (§6.3)
            self._pending = False
            self._announced = 0
        for header in headers:
            name, value = header
            if name in _SENSITIVE or (type(header) is not tuple and not getattr(header, "indexable", True)):
                parts.append(_field(name, value, True))
                continue
            key = (name, value)
            encoded = fields.get(key)
            if encoded is None:
                encoded = _field(name, value, False)
                if len(name) + len(value) <= _FIELD_KEPT_BYTES:
                    if len(fields) >= _FIELDS_MAX:
                        fields.clear()
                    fields[key] = encoded
            parts.append(encoded)
        return b"".join(parts)


# -- decoding --------------------------------------------------------------------------

_STATIC_TABLE = STATIC_TABLE
_STATIC_LENGTH = len(_STATIC_TABLE)

#: Huffman-coded strings already decoded, kept by each connection's decoder
#: (they are the client's: its cookies, its tokens, its paths; shared by every
#: connection, a client's timing would tell whether another sent the same
#: string, which is what HPACK keeps its dynamic table per connection to avoid,
#: RFC 7541 §7.1). Bounded in count and in string size: at most 64 strings of
#: 128 bytes a connection.
_HUFFMAN_DECODED_MAX = 64
_HUFFMAN_KEPT_BYTES = 128

#: An integer longer than this many continuation bytes is an error (RFC 7541
#: §5.1 lets a decoder set the limit); 4 hold every value below 2**28.
_INTEGER_BYTES = 4


def _integer(data: bytes, i: int, mask: int) -> tuple[int, int]:
    """The integer whose prefix is ``data[i] & mask``; the value and the next
    position."""
    value = data[i] & mask
    i += 1
    if value < mask:
        return value, i
    shift = 0
    while True:
        if i >= len(data):
            raise HPACKDecodingError("Truncated HPACK integer")
        byte = data[i]
        i += 1
        value += (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7
        if shift >= 7 * _INTEGER_BYTES:
            raise HPACKDecodingError("HPACK integer representation is too long")


def _string(data: bytes, i: int, decoded_before: dict[bytes, bytes]) -> tuple[bytes, int]:
    """The string literal at ``data[i]`` (RFC 7541 §5.2) and the next position;
    ``decoded_before``: the connection's Huffman-coded strings already decoded."""
    huffman = data[i] & 0x80
    length, i = _integer(data, i, 0x7F)
    end = i + length
    if end > len(data):
        raise HPACKDecodingError("Truncated header block")
    raw = data[i:end]
    if not huffman:
        return raw, end
    if length > _HUFFMAN_KEPT_BYTES:
        return huffman_decode(raw), end
    decoded = decoded_before.get(raw)
    if decoded is None:
        decoded = huffman_decode(raw)
        if len(decoded_before) >= _HUFFMAN_DECODED_MAX:
            decoded_before.clear()
        decoded_before[raw] = decoded
    return decoded, end


class FieldDecoder:
    """HPACK decoder of one connection (in place of h2's ``H2Connection.decoder``).

    :attr:`max_header_list_size` bounds the decoded list (names, values and 32
    bytes a field, RFC 9113 §6.5.2) and stops HPACK bombs;
    :attr:`max_allowed_table_size` is our acknowledged SETTINGS_HEADER_TABLE_SIZE,
    the most a size update may ask for.
    """

    __slots__ = ("max_header_list_size", "max_allowed_table_size", "_max", "_size", "_entries", "_seen", "_huffman")

    def __init__(self) -> None:
        self.max_header_list_size = 65536
        self.max_allowed_table_size = _DEFAULT_TABLE_SIZE
        self._max = _DEFAULT_TABLE_SIZE
        self._size = 0
        #: The dynamic table, newest first (RFC 7541 §2.3.2).
        self._entries: deque[tuple[bytes, bytes]] = deque()
        #: Blocks made only of indexed fields (a client repeating its request
        #: head, as browsers and load tools do once its fields are in the
        #: table), with their fields and decoded size: valid while the dynamic
        #: table is unchanged, so emptied whenever it changes.
        self._seen: dict[bytes, tuple[list[tuple[bytes, bytes]], int]] = {}
        #: Huffman-coded strings decoded before (see _HUFFMAN_DECODED_MAX),
        #: made at the first literal.
        self._huffman: dict[bytes, bytes] | None = None

    @property
    def header_table_size(self) -> int:
        """The dynamic table's current maximum size."""
        return self._max

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        self._max = value
        self._evict()
        self._seen.clear()

    def _evict(self) -> None:
        entries = self._entries
        size = self._size
        while size > self._max:
            name, value = entries.pop()
            size -= len(name) + len(value) + 32
        self._size = size

    def _entry(self, index: int) -> tuple[bytes, bytes]:
        if 0 < index <= _STATIC_LENGTH:
            return _STATIC_TABLE[index - 1]
        dynamic = index - _STATIC_LENGTH - 1
        if 0 <= dynamic < len(self._entries):
            return self._entries[dynamic]
        raise InvalidTableIndex(f"Invalid table index {index}")

    def decode(self, data: bytes, raw: bool = True) -> list[tuple[bytes, bytes]]:
        """The fields of one complete header block, as byte pairs (``raw`` is
        accepted for h2's sake; names and values stay bytes).

        :raises hpack.HPACKDecodingError: the block is malformed (h2 answers
            COMPRESSION_ERROR) or larger than the limit when decoded
            (:class:`~hpack.OversizedHeaderListError`).
        """
        data = bytes(data)
        limit = self.max_header_list_size
        seen = self._seen.get(data)
        if seen is not None:
            fields, inflated = seen
            if inflated > limit:
                raise OversizedHeaderListError(f"A header list larger than {limit} has been received")
            if self._max > self.max_allowed_table_size:
                raise InvalidTableSizeError("Encoder did not shrink table size to within the max")
            return list(fields)
        headers: list[tuple[bytes, bytes]] = []
        append = headers.append
        inflated = 0
        indexed_only = True
        i, n = 0, len(data)
        while i < n:
            first = data[i]
            if first & 0x80:  # indexed field (§6.1)
                index, i = _integer(data, i, 0x7F)
                field = self._entry(index)
            elif first & 0x20 and not first & 0x40:  # dynamic table size update (§6.3)
                if headers:
                    raise HPACKDecodingError("Table size update not at the start of the block")
                indexed_only = False
                size, i = _integer(data, i, 0x1F)
                if size > self.max_allowed_table_size:
                    raise InvalidTableSizeError("Encoder exceeded max allowable table size")
                self.header_table_size = size
                continue
            else:  # literal (§6.2): with incremental indexing, without, never indexed
                indexed_only = False
                huffman = self._huffman
                if huffman is None:
                    huffman = self._huffman = {}
                indexing = first & 0x40
                index, i = _integer(data, i, 0x3F if indexing else 0x0F)
                if index:
                    name = self._entry(index)[0]
                else:
                    if i >= n:
                        raise HPACKDecodingError("Truncated header block")
                    name, i = _string(data, i, huffman)
                if i >= n:
                    raise HPACKDecodingError("Truncated header block")
                value, i = _string(data, i, huffman)
                field = (name, value)
                if indexing:
                    if self._seen:
                        self._seen.clear()  # the table changes
                    size = len(name) + len(value) + 32
                    if size > self._max:
                        self._entries.clear()  # §4.4: an entry larger than the table empties it
                        self._size = 0
                    else:
                        self._entries.appendleft(field)
                        self._size += size
                        if self._size > self._max:
                            self._evict()
            inflated += len(field[0]) + len(field[1]) + 32
            if inflated > limit:
                raise OversizedHeaderListError(f"A header list larger than {limit} has been received")
            append(field)
        if self._max > self.max_allowed_table_size:
            raise InvalidTableSizeError("Encoder did not shrink table size to within the max")
        if indexed_only and n <= _SEEN_BLOCK_BYTES:
            if len(self._seen) >= _SEEN_BLOCKS:
                self._seen.clear()
            self._seen[data] = (headers, inflated)
            return list(headers)
        return headers
