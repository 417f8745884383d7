"""Which bytes may appear where in an HTTP message: one set of rules for every protocol.

HTTP/1.1 (:mod:`~twisted_asgi.http11`), HTTP/2 (:mod:`~twisted_asgi.http2`), the
WebSocket handshake (parsed by http11) and the app's own response fields
(:mod:`~twisted_asgi.cycle`) all take their byte rules from here, so a byte one
protocol refuses is refused by all (DESIGN.md, principle 9).

Each rule is a set of forbidden bytes (``*_FORBIDDEN``, for reading and for
tests) and a ``bytes.translate()`` table made from it (``*_MARKS``) that turns
every forbidden byte into NUL, itself forbidden everywhere, and keeps the rest: a
string is valid when ``0 not in s.translate(MARKS)``. That is two passes in C
over a prebuilt table, quicker than ``translate(None, deletechars)``, which
builds its table on every call, or a regular expression.

* **Field names** are tokens (RFC 9110 §5.1, §5.6.2); HTTP/2 adds that they are
  lower case (RFC 9113 §8.2.1).
* **Field values** (RFC 9110 §5.5) are VCHAR, obs-text, SP and HTAB: every other
  control byte (0x00-0x08, 0x0A-0x1F) and DEL (0x7F) is refused. *Request* field
  values also may not hold NEL (0x85), though RFC 9110 allows it as obs-text:
  apps decode field values as latin-1 and Python's ``str.splitlines()`` breaks
  lines on U+0085, as it does on VT, FF and FS-RS, which is how a header
  injection reached apps before. (No other latin-1 byte is a line break.)
  Whitespace at either end is not part of a value (RFC 9110 §5.5): HTTP/1.1
  drops it (it is OWS there), HTTP/2 refuses it (RFC 9113 §8.2.1).
* **Request targets** and HTTP/2's ``:path`` (RFC 9112 §3.2, RFC 3986 §3.3):
  no SP, HTAB or other control byte, no DEL, no byte from 0x80 up (a URI is
  ASCII; a client percent-encodes the rest) and no ``#`` (no form of
  request-target has a fragment).

Who enforces what: for HTTP/1.1, llhttp in its strict mode already refuses every
ASCII byte these rules forbid in names, values and targets, so :mod:`http11` checks
only what llhttp lets through (non-ASCII values, ``#``) and the hot path pays
nothing for ASCII; ``tests/test_byte_rules.py`` feeds every byte 0-255 to both
protocols and checks that the verdicts agree with these tables. HTTP/2 and the
app's response fields apply the tables in full.

Imports neither Twisted nor asyncio.
"""

from __future__ import annotations

__all__ = [
    "LOWER_TCHAR",
    "LOWER_TOKEN_MARKS",
    "REQUEST_VALUE_FORBIDDEN",
    "REQUEST_VALUE_MARKS",
    "TARGET_FORBIDDEN",
    "TARGET_MARKS",
    "TCHAR",
    "TOKEN_MARKS",
    "VALUE_FORBIDDEN",
    "VALUE_MARKS",
    "is_lower_token",
    "is_token",
    "request_value_ok",
    "target_ok",
    "value_ok",
]

_DIGIT = b"0123456789"
_LOWER = b"abcdefghijklmnopqrstuvwxyz"

#: RFC 9110 §5.6.2 tchar: the bytes of a token (a field name, a method).
TCHAR = b"!#$%&'*+-.^_`|~" + _DIGIT + _LOWER + _LOWER.upper()
#: tchar without upper case: an HTTP/2 field name (RFC 9113 §8.2.1).
LOWER_TCHAR = b"!#$%&'*+-.^_`|~" + _DIGIT + _LOWER

#: Bytes no field value may hold (RFC 9110 §5.5): the control bytes but HTAB, and DEL.
VALUE_FORBIDDEN = bytes(range(0x00, 0x09)) + bytes(range(0x0A, 0x20)) + b"\x7f"
#: Bytes no *request* field value may hold: :data:`VALUE_FORBIDDEN` and NEL
#: (0x85), which ``str.splitlines()`` treats as a line break.
REQUEST_VALUE_FORBIDDEN = VALUE_FORBIDDEN + b"\x85"

#: Bytes no request target or ``:path`` may hold (RFC 9112 §3.2, RFC 3986 §3):
#: controls, SP, DEL, ``#`` (a fragment) and everything from 0x80 up.
TARGET_FORBIDDEN = bytes(range(0x00, 0x21)) + b"#\x7f" + bytes(range(0x80, 0x100))


def _marks(forbidden: bytes) -> bytes:
    """The translate() table that turns each byte of ``forbidden`` into NUL and keeps the rest."""
    assert 0 in forbidden  # NUL must itself be forbidden, or a NUL would pass as a mark
    return bytes(0 if byte in forbidden else byte for byte in range(256))


#: :data:`VALUE_FORBIDDEN` as a translate() table (forbidden bytes become NUL).
VALUE_MARKS = _marks(VALUE_FORBIDDEN)
#: :data:`REQUEST_VALUE_FORBIDDEN` as a translate() table.
REQUEST_VALUE_MARKS = _marks(REQUEST_VALUE_FORBIDDEN)
#: :data:`TARGET_FORBIDDEN` as a translate() table.
TARGET_MARKS = _marks(TARGET_FORBIDDEN)
#: Every byte but :data:`TCHAR` becomes NUL.
TOKEN_MARKS = _marks(bytes(b for b in range(256) if b not in TCHAR))
#: Every byte but :data:`LOWER_TCHAR` becomes NUL.
LOWER_TOKEN_MARKS = _marks(bytes(b for b in range(256) if b not in LOWER_TCHAR))


def is_token(name: bytes) -> bool:
    """True if ``name`` is a token (RFC 9110 §5.6.2): a valid field name or method."""
    return bool(name) and 0 not in name.translate(TOKEN_MARKS)


def is_lower_token(name: bytes) -> bool:
    """True if ``name`` is a lower-case token: a valid HTTP/2 field name (RFC 9113 §8.2.1)."""
    return bool(name) and 0 not in name.translate(LOWER_TOKEN_MARKS)


def value_ok(value: bytes) -> bool:
    """True if ``value`` holds no byte RFC 9110 §5.5 forbids in a field value."""
    return 0 not in value.translate(VALUE_MARKS)


def request_value_ok(value: bytes) -> bool:
    """True if ``value`` may be a request field value: :func:`value_ok`, and no NEL."""
    return 0 not in value.translate(REQUEST_VALUE_MARKS)


def target_ok(target: bytes) -> bool:
    """True if ``target`` holds only bytes a request target may hold (see :data:`TARGET_FORBIDDEN`)."""
    return 0 not in target.translate(TARGET_MARKS)
