"""The ``hpack`` package's internals, fenced (see the package docstring).

twisted_asgi.hpack_codec codes Huffman strings (RFC 7541 §5.2, Appendix B)
with hpack's own tables, which hpack does not export (its public API is
``Encoder``, ``Decoder`` and the exceptions). Read from hpack 4.1.0 and 4.2.0
(the same in these parts, annotations and a comment aside):

* hpack/huffman.py: ``HuffmanEncoder(codes, lengths).encode(data)``;
* hpack/huffman_constants.py: ``REQUEST_CODES``, ``REQUEST_CODES_LENGTH``
  (Appendix B's code table, despite the name used both ways);
* hpack/huffman_table.py: ``decode_huffman(data)``, raising
  ``hpack.HPACKDecodingError`` on a string that is not valid Huffman code.

Where one of them is missing or codes RFC 7541's example differently
(:data:`PROBLEM` says why), the public path is used: strings are sent as
plain literals (valid HPACK, a few bytes longer), and a client's Huffman
string is decoded by hpack's public ``Decoder`` from a one-field block made
around it (slower, the same result and the same errors).

Imports neither Twisted nor asyncio.
"""

from __future__ import annotations

from collections.abc import Callable

import hpack

from ..hpack_integer import encode_integer

__all__ = ["PROBLEM", "huffman_decode", "huffman_encode"]

#: RFC 7541 Appendix C.4.1: "www.example.com", Huffman-coded.
_EXAMPLE = b"www.example.com"
_EXAMPLE_CODED = bytes.fromhex("f1e3c2e5f23a6ba0ab90f4ff")

_encode: Callable[[bytes], bytes] | None = None
_decode: Callable[[bytes], bytes] | None = None
#: Why the fast Huffman coding is off (None: it is on).
PROBLEM: str | None = None


def _version() -> str:
    return str(getattr(hpack, "__version__", "?"))


def _describe(exc: BaseException) -> str:
    name = getattr(exc, "name", None)
    return f"{name} ({exc})" if name else str(exc)


try:
    from hpack.huffman import HuffmanEncoder
    from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
    from hpack.huffman_table import decode_huffman

    _encode = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH).encode
    _decode = decode_huffman
    if _encode(_EXAMPLE) != _EXAMPLE_CODED or _decode(_EXAMPLE_CODED) != _EXAMPLE:
        PROBLEM = f"hpack {_version()}'s Huffman tables code RFC 7541's example differently"
except Exception as exc:  # ImportError, AttributeError, TypeError: a changed hpack
    PROBLEM = f"hpack {_version()}: {_describe(exc)}"


if PROBLEM is not None:
    _encode = _decode = None


def huffman_encode(data: bytes) -> bytes | None:
    """``data`` Huffman-coded, or None where the fast path is off (then send it
    as a plain literal)."""
    if _encode is None:
        return None
    return _encode(data)


def _public_decode(data: bytes) -> bytes:
    # One literal field without indexing (RFC 7541 §6.2.2), a new name "a", the
    # value the Huffman string itself; hpack's public Decoder decodes it.
    decoder = hpack.Decoder()
    decoder.max_header_list_size = len(data) * 8 // 5 + 64  # the most 5-bit codes can make
    block = b"\x00\x01a" + encode_integer(len(data), 7, 0x80) + data
    ((_name, value),) = decoder.decode(block, raw=True)
    return bytes(value)


def huffman_decode(data: bytes) -> bytes:
    """The Huffman string ``data`` decoded.

    :raises hpack.HPACKDecodingError: ``data`` is not valid Huffman code.
    """
    if _decode is None:
        return _public_decode(data)
    return _decode(data)
