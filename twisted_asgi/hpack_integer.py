"""HPACK's integer representation (RFC 7541 §5.1), for the codec
(:mod:`twisted_asgi.hpack_codec`) and for the public-API fallback of the
fenced Huffman decoder (:mod:`twisted_asgi._upstream.hpack`), which builds a
header block around a Huffman string. No I/O, no dependency."""

from __future__ import annotations

__all__ = ["encode_integer"]


def encode_integer(value: int, prefix_bits: int, first: int = 0) -> bytes:
    """An HPACK integer (RFC 7541 §5.1): ``first`` holds the bits above the
    ``prefix_bits``-bit prefix."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
