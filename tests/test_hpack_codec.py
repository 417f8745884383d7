"""Sans-IO tests of twisted_asgi.hpack_codec: the RFC 7541 Appendix C examples,
every error a decoder must raise, the encoder's output decoded by the ``hpack``
package (what h2-based clients use), and both sides against ``hpack`` on random
input (Hypothesis)."""

from __future__ import annotations

import hpack
import pytest
from hpack.exceptions import HPACKDecodingError, InvalidTableIndex, InvalidTableSizeError, OversizedHeaderListError
from hypothesis import given, settings
from hypothesis import strategies as st

from twisted_asgi import hpack_codec
from twisted_asgi.config import Config
from twisted_asgi.hpack_codec import FieldDecoder, StaticEncoder, encode_integer

# RFC 7541 C.3: three requests on one connection, no Huffman coding; the
# dynamic table size after each (C.3.1-C.3.3).
C3 = [
    (
        "828684410f7777772e6578616d706c652e636f6d",
        [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"www.example.com")],
        57,
    ),
    (
        "828684be58086e6f2d6361636865",
        [
            (b":method", b"GET"),
            (b":scheme", b"http"),
            (b":path", b"/"),
            (b":authority", b"www.example.com"),
            (b"cache-control", b"no-cache"),
        ],
        110,
    ),
    (
        "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565",
        [
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":path", b"/index.html"),
            (b":authority", b"www.example.com"),
            (b"custom-key", b"custom-value"),
        ],
        164,
    ),
]

# RFC 7541 C.4: the same requests with Huffman coding (C.4.1-C.4.3).
C4 = [
    ("828684418cf1e3c2e5f23a6ba0ab90f4ff", C3[0][1], 57),
    ("828684be5886a8eb10649cbf", C3[1][1], 110),
    ("828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf", C3[2][1], 164),
]

# RFC 7541 C.5: three responses with a 256-byte table, so entries are evicted
# (C.5.1-C.5.3).
C5 = [
    (
        "4803333032580770726976617465611d4d6f6e2c203231204f637420323031332032303a31333a323120474d54"
        "6e1768747470733a2f2f7777772e6578616d706c652e636f6d",
        [
            (b":status", b"302"),
            (b"cache-control", b"private"),
            (b"date", b"Mon, 21 Oct 2013 20:13:21 GMT"),
            (b"location", b"https://www.example.com"),
        ],
        222,
    ),
    (
        "4803333037c1c0bf",
        [
            (b":status", b"307"),
            (b"cache-control", b"private"),
            (b"date", b"Mon, 21 Oct 2013 20:13:21 GMT"),
            (b"location", b"https://www.example.com"),
        ],
        222,
    ),
    (
        "88c1611d4d6f6e2c203231204f637420323031332032303a31333a323220474d54c05a04677a69707738666f6f3d"
        "4153444a4b48514b425a584f5157454f50495541585157454f49553b206d61782d6167653d333630303b207665"
        "7273696f6e3d31",
        [
            (b":status", b"200"),
            (b"cache-control", b"private"),
            (b"date", b"Mon, 21 Oct 2013 20:13:22 GMT"),
            (b"location", b"https://www.example.com"),
            (b"content-encoding", b"gzip"),
            (b"set-cookie", b"foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"),
        ],
        215,
    ),
]


def table_size(decoder: FieldDecoder) -> int:
    return sum(len(n) + len(v) + 32 for n, v in decoder._entries)


@pytest.mark.parametrize("examples,max_size", [(C3, 4096), (C4, 4096), (C5, 256)], ids=["C.3", "C.4", "C.5"])
def test_rfc7541_examples(examples, max_size):
    decoder = FieldDecoder()
    decoder.header_table_size = max_size
    reference = hpack.Decoder()
    reference.header_table_size = max_size
    for wire, fields, size in examples:
        block = bytes.fromhex(wire)
        assert reference.decode(block, raw=True) == fields  # the vector itself is right
        assert decoder.decode(block) == fields
        assert table_size(decoder) == decoder._size == size


def test_c5_evicts_the_oldest_entries():
    decoder = FieldDecoder()
    decoder.header_table_size = 256
    for wire, _, _ in C5:
        decoder.decode(bytes.fromhex(wire))
    # RFC 7541 C.5.3: the table after the third response.
    assert list(decoder._entries) == [
        (b"set-cookie", b"foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"),
        (b"content-encoding", b"gzip"),
        (b"date", b"Mon, 21 Oct 2013 20:13:22 GMT"),
    ]


@pytest.mark.parametrize(
    "wire,error",
    [
        ("80", InvalidTableIndex),  # index 0 (§6.1)
        ("be", InvalidTableIndex),  # 62: beyond an empty dynamic table (§2.3.3)
        ("ff80808080808001", HPACKDecodingError),  # integer over 4 continuation bytes (§5.1)
        ("ff", HPACKDecodingError),  # integer cut short
        ("4005", HPACKDecodingError),  # literal name, string cut short
        ("0f2d", HPACKDecodingError),  # indexed name (index 60), value missing
        ("00", HPACKDecodingError),  # literal without indexing, nothing after it
        ("823f61", HPACKDecodingError),  # table size update after a field (§4.2)
        ("3fe21f", InvalidTableSizeError),  # table size update to 4096 + 1 over the setting (§6.3)
        ("0081ff0161", HPACKDecodingError),  # Huffman name holding EOS (§5.2)
        ("00821fff0161", HPACKDecodingError),  # Huffman padding of more than 7 bits (§5.2)
    ],
)
def test_malformed_blocks_raise_hpack_errors(wire, error):
    with pytest.raises(error):
        FieldDecoder().decode(bytes.fromhex(wire))


def test_size_update_at_the_start_shrinks_and_evicts():
    decoder = FieldDecoder()
    decoder.decode(bytes.fromhex(C3[0][0]))
    assert decoder._size == 57
    assert decoder.decode(b"\x20\x82") == [(b":method", b"GET")]  # size 0, then a field
    assert decoder.header_table_size == 0 and not decoder._entries
    decoder.decode(b"\x3f\xe1\x1f")  # back up to 4096: allowed, the setting is 4096
    assert decoder.header_table_size == 4096


def test_lowered_setting_needs_an_update_in_the_next_block():
    decoder = FieldDecoder()
    decoder.max_allowed_table_size = 100  # our smaller SETTINGS_HEADER_TABLE_SIZE was acknowledged
    with pytest.raises(InvalidTableSizeError):
        decoder.decode(b"\x82")  # the encoder did not shrink its table
    decoder = FieldDecoder()
    decoder.max_allowed_table_size = 100
    assert decoder.decode(b"\x3f\x45\x82") == [(b":method", b"GET")]  # update to 100 first


def test_an_entry_larger_than_the_table_empties_it():
    decoder = FieldDecoder()
    decoder.header_table_size = 60
    decoder.decode(bytes.fromhex(C3[0][0]))  # 57 bytes: fits
    assert decoder._size == 57
    decoder.decode(b"\x40\x01a" + encode_integer(40, 7) + b"x" * 40)  # 73 bytes > 60 (§4.4)
    assert decoder._size == 0 and not decoder._entries


def test_header_list_limit_stops_a_bomb():
    encoder = hpack.Encoder()
    first = encoder.encode([(b"x-big", b"a" * 4000)])
    decoder = FieldDecoder()
    decoder.max_header_list_size = 16384
    assert decoder.decode(first) == [(b"x-big", b"a" * 4000)]
    # One byte per repeat of the indexed 4 KB field: a small block, a large list.
    with pytest.raises(OversizedHeaderListError):
        decoder.decode(b"\xbe" * 5)


def test_never_indexed_and_without_indexing_leave_the_table_alone():
    decoder = FieldDecoder()
    assert decoder.decode(b"\x10\x01a\x01b" + b"\x00\x01c\x01d" + b"\x1f\x08\x01e") == [
        (b"a", b"b"),
        (b"c", b"d"),
        (b"authorization", b"e"),  # never indexed, name index 23 (4-bit prefix, 15 + 8)
    ]
    assert not decoder._entries


# -- the encoder -----------------------------------------------------------------------------


def test_encoder_output_decodes_with_the_hpack_package():
    fields = [
        (b":status", b"200"),  # whole static entry: one byte
        (b"content-type", b"text/plain; charset=utf-8"),  # static name
        (b"x-request-id", b"5f0c" * 20),  # new name, long value (multi-byte length)
        (b"date", b"Tue, 01 Dec 2026 05:50:16 GMT"),
        (b"set-cookie", b"session=secret"),
        (b"x-empty", b""),
    ]
    encoder = StaticEncoder()
    block = encoder.encode(fields)
    assert block[0] == 0x88  # ":status: 200" is static index 8
    decoded = hpack.Decoder().decode(block, raw=True)
    assert decoded == fields
    assert isinstance(decoded[4], hpack.NeverIndexedHeaderTuple)  # RFC 7541 §7.1.3
    assert not isinstance(decoded[1], hpack.NeverIndexedHeaderTuple)
    # Nothing goes in the client's dynamic table, so every block stands alone.
    assert hpack.Decoder().decode(encoder.encode(fields), raw=True) == fields


def test_encoder_caches_fields_but_not_secrets():
    encoder = StaticEncoder()
    encoder.encode([(b"x-a", b"1"), (b"set-cookie", b"s=1"), (b"authorization", b"t")])
    assert set(encoder._fields or ()) == {(b"x-a", b"1")}


def test_encoder_field_table_is_bounded(monkeypatch):
    monkeypatch.setattr(hpack_codec, "_FIELDS_MAX", 10)
    encoder = StaticEncoder()
    for i in range(35):
        assert hpack.Decoder().decode(encoder.encode([(b"etag", b"%d" % i)]), raw=True) == [(b"etag", b"%d" % i)]
        assert len(encoder._fields or ()) <= 10


def test_encoded_and_decoded_strings_are_kept_per_connection():
    """Each connection's coder keeps its own: one made before another holds
    nothing of the other's fields or strings, a new one (an idle connection)
    holds no table at all, and they go with their coder."""
    first, second = StaticEncoder(), StaticEncoder()
    assert first._fields is None
    first.encode([(b"x-user", b"alice")])
    assert first._fields == {(b"x-user", b"alice"): hpack_codec._field(b"x-user", b"alice", False)}
    assert second._fields is None
    block = hpack.Encoder().encode([(b"x-token", b"secret-token-value")], huffman=True)
    reader, other = FieldDecoder(), FieldDecoder()
    assert reader._huffman is None
    assert reader.decode(block) == [(b"x-token", b"secret-token-value")]
    assert b"secret-token-value" in (reader._huffman or {}).values()
    assert other._huffman is None
    assert other.decode(hpack.Encoder().encode([(b"x-other", b"other-value")], huffman=True))
    assert b"secret-token-value" not in (other._huffman or {}).values()
    assert not hasattr(hpack_codec, "_FIELDS") and not hasattr(hpack_codec, "_HUFFMAN_DECODED")


def test_encoder_signals_a_lowered_table_size_once():
    encoder = StaticEncoder()
    assert encoder.encode([(b":status", b"200")]) == b"\x88"
    encoder.header_table_size = 8192  # raised: the client's decoder needs nothing
    assert encoder.encode([(b":status", b"200")]) == b"\x88"
    encoder.header_table_size = 0  # lowered below 4096 (RFC 7541 §4.2)
    block = encoder.encode([(b":status", b"200")])
    assert block == b"\x20\x88"
    client = hpack.Decoder()
    client.max_allowed_table_size = 0
    assert client.decode(block, raw=True) == [(b":status", b"200")]
    encoder.header_table_size = 100  # our table is already 0 in the client's eyes
    assert encoder.encode([(b":status", b"200")]) == b"\x88"


def test_encode_integer_matches_rfc7541_c1():
    assert encode_integer(10, 5) == bytes([0b01010])  # C.1.1
    assert encode_integer(1337, 5) == bytes([0b11111, 0b10011010, 0b00001010])  # C.1.2
    assert encode_integer(42, 8) == bytes([42])  # C.1.3


# -- against the hpack package on random input ------------------------------------------------

names = st.sampled_from([b":status", b"content-type", b"date", b"x-a", b"set-cookie", b"cache-control", b"etag"])
values = st.binary(max_size=40) | st.sampled_from([b"200", b"404", b"text/html", b"no-cache", b""])
header_lists = st.lists(st.tuples(names | st.binary(min_size=1, max_size=12), values), max_size=8)


@settings(max_examples=300, deadline=None)
@given(st.lists(header_lists, min_size=1, max_size=6), st.sampled_from([0, 64, 256, 4096]))
def test_decoder_agrees_with_hpack_on_what_hpack_encodes(blocks, table):
    """hpack's encoder uses the dynamic table, Huffman and evictions; our
    decoder must follow it block after block."""
    encoder = hpack.Encoder()
    ours = FieldDecoder()
    if table != 4096:
        encoder.header_table_size = table
        ours.max_allowed_table_size = 4096
    for fields in blocks:
        block = encoder.encode(fields)
        assert ours.decode(block) == [(bytes(n), bytes(v)) for n, v in fields]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.binary(max_size=24), min_size=1, max_size=4))
def test_decoder_fails_where_hpack_fails_on_random_bytes(blocks):
    """Random blocks in sequence: the same fields, or an error from both."""
    ours, reference = FieldDecoder(), hpack.Decoder()
    for block in blocks:
        try:
            expected = [tuple(f) for f in reference.decode(block, raw=True)]
        except (hpack.HPACKError, IndexError):
            with pytest.raises(hpack.HPACKError):
                ours.decode(block)
            return
        assert ours.decode(block) == expected


@settings(max_examples=300, deadline=None)
@given(header_lists)
def test_encoder_round_trips_through_hpack(fields):
    fields = [(n.lower(), v) for n, v in fields]
    assert [tuple(f) for f in hpack.Decoder().decode(StaticEncoder().encode(fields), raw=True)] == fields


def test_long_fields_and_strings_are_not_kept():
    """The coders' tables hold short strings only: a client's (or an app's)
    long values could otherwise fill them."""
    long_value = b"v" * 1000
    encoder = StaticEncoder()
    encoder.encode([(b"x-long", long_value), (b"x-short", b"1")])
    assert set(encoder._fields or ()) == {(b"x-short", b"1")}
    client = hpack.Encoder()  # Huffman-codes both values
    block = client.encode([(b"x-long", b"w" * 1000), (b"x-short", b"abc")])
    decoder = FieldDecoder()
    assert decoder.decode(block) == [(b"x-long", b"w" * 1000), (b"x-short", b"abc")]
    kept = decoder._huffman or {}
    assert all(len(raw) <= hpack_codec._HUFFMAN_KEPT_BYTES for raw in kept)
    assert b"abc" in kept.values()


def test_request_field_names_remembered_only_when_short():
    from twisted_asgi import http2

    http2._GOOD_NAMES.clear()
    long_name = b"x-" + b"a" * 100
    fields = [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b"x-b", b"1"), (long_name, b"2")]
    conn = http2.HTTP2Connection(Config())
    request, _ = conn._parse_request(1, fields, True)
    assert request.headers == [(b"x-b", b"1"), (long_name, b"2")]
    assert sorted(http2._GOOD_NAMES) == [b"x-b"]
    with pytest.raises(ValueError, match="invalid field name"):
        conn._parse_request(3, [*fields[:3], (b"X-B", b"1")], True)  # uppercase: malformed (RFC 9113 §8.2.1)
    for value in (b" 1", b"1\t", b"a\rb", b"a\nb", b"a\x00b"):
        with pytest.raises(ValueError, match="invalid value"):
            conn._parse_request(5, [*fields[:3], (b"x-b", value)], True)


def test_static_table_is_rfc_7541s_as_hpack_has_it():
    # Our copy of Appendix A (hpack_codec.STATIC_TABLE) against the hpack package's.
    from hpack.table import HeaderTable

    assert tuple(HeaderTable.STATIC_TABLE) == hpack_codec.STATIC_TABLE
    assert len(hpack_codec.STATIC_TABLE) == 61


# -- the remembered indexed-only blocks ---------------------------------------------------------


def test_a_repeated_indexed_block_follows_the_table():
    """A block of indexed fields only is remembered, but it means what the
    table holds now: after an insertion, an eviction or a size update, the
    same bytes decode afresh."""
    ours = FieldDecoder()
    ours.decode(b"\x40\x01a\x01b")  # literal with indexing: a: b is entry 62
    assert ours.decode(b"\x82\xbe") == [(b":method", b"GET"), (b"a", b"b")]
    assert ours.decode(b"\x82\xbe") == [(b":method", b"GET"), (b"a", b"b")]  # (remembered)
    ours.decode(b"\x40\x01c\x01d")  # now c: d is 62
    assert ours.decode(b"\x82\xbe") == [(b":method", b"GET"), (b"c", b"d")]
    ours.decode(b"\x20")  # a size update to 0 empties the table
    with pytest.raises(InvalidTableIndex):
        ours.decode(b"\x82\xbe")
    ours.decode(b"\x3f\xe1\x1f")  # back to 4096
    ours.decode(b"\x40\x01e\x01f")
    assert ours.decode(b"\x82\xbe") == [(b":method", b"GET"), (b"e", b"f")]
    ours.header_table_size = 0  # our SETTINGS lowered (h2 sets it)
    with pytest.raises(InvalidTableIndex):
        ours.decode(b"\x82\xbe")


def test_a_remembered_block_still_meets_the_limits():
    ours = FieldDecoder()
    ours.decode(b"\x40\x01a" + b"\x7f\x81\x01" + b"v" * 256)  # a: 256 bytes, entry 62
    assert len(ours.decode(b"\xbe")[0][1]) == 256
    ours.max_header_list_size = 200
    with pytest.raises(OversizedHeaderListError):
        ours.decode(b"\xbe")
    ours.max_header_list_size = 4096
    ours.max_allowed_table_size = 100  # lowered: the next block must start with an update
    with pytest.raises(InvalidTableSizeError):
        ours.decode(b"\xbe")


def test_returned_lists_are_the_callers():
    ours = FieldDecoder()
    first = ours.decode(b"\x82\x84")
    first.append((b"x", b"y"))
    assert ours.decode(b"\x82\x84") == [(b":method", b"GET"), (b":path", b"/")]


@settings(max_examples=300, deadline=None)
@given(st.lists(header_lists, min_size=1, max_size=6), st.lists(st.integers(0, 5), max_size=12))
def test_decoder_agrees_with_hpack_on_repeated_blocks(blocks, repeats):
    """Blocks encoded by hpack, some fed again later (after the table moved
    on): our decoder, remembering indexed-only blocks, says what hpack's says."""
    encoder = hpack.Encoder()
    wire = [encoder.encode(fields) for fields in blocks]
    wire += [wire[r % len(wire)] for r in repeats]
    wire += [encoder.encode(fields) for fields in blocks]  # all indexed now, mostly
    wire += [wire[r % len(wire)] for r in repeats]
    ours, reference = FieldDecoder(), hpack.Decoder()
    for block in wire:
        try:
            expected = [tuple(f) for f in reference.decode(block, raw=True)]
        except (hpack.HPACKError, IndexError):
            with pytest.raises(hpack.HPACKError):
                ours.decode(block)
            return
        assert ours.decode(block) == expected
