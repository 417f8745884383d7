"""Unmasking of small WebSocket frames for Autobahn (RFC 6455 §5.3), on our
protocol instances only.

Autobahn makes one masker object per masked frame, through the module-level
``create_xor_masker`` of ``autobahn.websocket.protocol``. Its native (NVX)
masker costs a foreign-memory allocation, a finaliser and two C calls to make,
and a copy in and out per ``process()`` (older Autobahns without NVX or wsaccel
XOR byte by byte in Python): for the small frames most apps send, that was
about a sixth of the server's CPU per echoed message. The masking itself is
one XOR, which Python's integers do in C for a payload of any length.

:class:`SmallFrameMasking` is a mixin for our Autobahn protocol class: its
``applyMask`` is False, so Autobahn's frame parser makes only its null masker
(``if frame_masked and ... and self.applyMask``, protocol.py's
``processData``), and its :meth:`~SmallFrameMasking.onFrameBegin` (which
Autobahn calls right after) puts in :class:`FrameMasker` for a frame under
:data:`SMALL_FRAME` bytes and Autobahn's own masker for a larger one (where its
SIMD code is faster). Nothing in Autobahn's modules is replaced: every other
Autobahn protocol in the process keeps Autobahn's masker
(``tests/test_upstream_side_effects.py``). Where Autobahn lacks what the
mixin relies on (:data:`PROBLEM` says what), the mixin does nothing and
Autobahn masks as it always does.

Imports neither Twisted nor asyncio.
"""

from __future__ import annotations

from typing import Any

from autobahn.websocket import xormasker
from autobahn.websocket.protocol import FrameHeader, WebSocketProtocol

__all__ = ["PROBLEM", "SMALL_FRAME", "FrameMasker", "SmallFrameMasking", "unmask"]

#: Autobahn's masker for large frames (xormasker.py: its NVX or wsaccel one where
#: present, else pure Python), found as Autobahn's own frame parser finds it.
_autobahn_masker: Any = vars(xormasker)["create_xor_masker"]

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


def _autobahn_problem() -> str | None:
    """What :class:`SmallFrameMasking` needs from Autobahn and does not find
    (read from Autobahn 26.10.1 and 26.11.1, and 23.6.1, websocket/protocol.py and
    websocket/xormasker.py), or None."""
    import autobahn

    version = getattr(autobahn, "__version__", "?")
    if "applyMask" not in getattr(WebSocketProtocol, "CONFIG_ATTRS_COMMON", ()):
        return f"Autobahn {version} has no applyMask option"
    if not callable(getattr(WebSocketProtocol, "onFrameBegin", None)):
        return f"Autobahn {version} has no WebSocketProtocol.onFrameBegin"
    try:
        make: Any = FrameHeader
        frame = make(1, True, 0, 5, b"abcd")
    except TypeError as exc:
        return f"Autobahn {version}'s FrameHeader is made differently ({exc})"
    if getattr(frame, "mask", None) != b"abcd" or getattr(frame, "length", None) != 5:
        return f"Autobahn {version}'s FrameHeader has no mask or length"
    return None


#: Why the small-frame masker is off (None: it is on).
PROBLEM = _autobahn_problem()


class SmallFrameMasking(WebSocketProtocol):
    """Mixin (before Autobahn's protocol class in the bases): this protocol's
    incoming frames are unmasked by :class:`FrameMasker` when small, by
    Autobahn's own masker when large; nothing changes for any other protocol."""

    #: Autobahn makes no masker of its own (see the module docstring); an
    #: instance or subclass that sets it True gets Autobahn's maskers throughout.
    applyMask = PROBLEM is not None

    def onFrameBegin(self) -> None:
        frame: Any = self.current_frame
        if not self.applyMask and frame is not None and frame.mask and frame.length > 0:
            if frame.length < SMALL_FRAME:
                self.current_frame_masker = FrameMasker(frame.mask)
            else:
                self.current_frame_masker = _autobahn_masker(frame.mask, frame.length)
        super().onFrameBegin()
