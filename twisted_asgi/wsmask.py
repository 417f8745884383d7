"""Unmasking of small WebSocket frames for Autobahn (RFC 6455 §5.3).

Autobahn makes one masker object per masked frame, through the module-level
``create_xor_masker`` of ``autobahn.websocket.protocol``. Its native (NVX)
masker costs a foreign-memory allocation, a finaliser and two C calls to make,
and a copy in and out per ``process()``: for the small frames most apps send,
that was about a sixth of the server's CPU per echoed message. The masking
itself is one XOR, which Python's integers do in C for a payload of any
length.

:func:`install` puts a factory in Autobahn's module that returns
:class:`FrameMasker` for frames under :data:`SMALL_FRAME` bytes and Autobahn's
own masker for larger ones (where its SIMD code is faster). It is the one place
that changes Autobahn; ``tests/test_wsmask.py`` checks the seam and that both
maskers agree on every split of a payload.

Imports neither Twisted nor asyncio.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SMALL_FRAME", "FrameMasker", "install", "unmask"]

#: Frames shorter than this are unmasked here; longer ones by Autobahn's masker.
SMALL_FRAME = 4096


class FrameMasker:
    """XOR with a 4-byte key, across ``process()`` calls that each get the next
    part of one frame's payload (Autobahn's masker interface)."""

    __slots__ = ("_mask", "_ptr")

    def __init__(self, mask: bytes) -> None:
        if len(mask) != 4:
            raise ValueError("a WebSocket masking key is 4 bytes")
        self._mask = bytes(mask)
        self._ptr = 0

    def pointer(self) -> int:
        """Payload bytes processed so far."""
        return self._ptr

    def reset(self) -> None:
        self._ptr = 0

    def process(self, data: bytes) -> bytes:
        """``data`` XORed with the key, continuing where the last part ended."""
        n = len(data)
        if not n:
            return b""
        mask = self._mask
        shift = self._ptr & 3
        if shift:
            mask = mask[shift:] + mask[:shift]
        self._ptr += n
        return unmask(data, mask)


def unmask(data: bytes, key: bytes) -> bytes:
    """``data`` XORed with the 4-byte ``key``, the key's first byte on ``data``'s first
    (a whole frame's payload; masking and unmasking are the same operation)."""
    n = len(data)
    if not n:
        return b""
    key = key * ((n + 3) >> 2)
    if len(key) != n:
        key = key[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def install(protocol_module: Any) -> bool:
    """Put the small-frame factory in front of ``protocol_module.create_xor_masker``
    (once). Returns False, changing nothing, where the module has no such factory."""
    original = getattr(protocol_module, "create_xor_masker", None)
    if original is None:
        return False
    if getattr(original, "twisted_asgi", False):
        return True

    def create_xor_masker(mask: bytes, length: int | None = None) -> Any:
        if length is not None and length < SMALL_FRAME:
            return FrameMasker(mask)
        return original(mask, length)

    create_xor_masker.twisted_asgi = True  # type: ignore[attr-defined]
    create_xor_masker.original = original  # type: ignore[attr-defined]
    protocol_module.create_xor_masker = create_xor_masker
    return True
