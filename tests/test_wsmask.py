"""The small-frame masker (twisted_asgi.wsmask): it agrees with Autobahn's own
on every payload and every way of splitting it, and our protocol class, only
it, unmasks through it (small frames) or through Autobahn's masker (large
ones) without Autobahn making a masker first."""

from __future__ import annotations

import itertools

import autobahn.websocket.protocol
import autobahn.websocket.xormasker
import pytest
from autobahn.websocket.protocol import FrameHeader, WebSocketServerProtocol
from autobahn.websocket.xormasker import XorMaskerNull
from hypothesis import given, settings
from hypothesis import strategies as st

from twisted_asgi import wsmask
from twisted_asgi.wsmask import SMALL_FRAME, FrameMasker, SmallFrameMasking

ORIGINAL = autobahn.websocket.xormasker.create_xor_masker


class Masked(SmallFrameMasking, WebSocketServerProtocol):
    """The mixin on a bare Autobahn server protocol, stopped before Autobahn's own onFrameBegin."""

    def __init__(self, length: int, mask: bytes = b"abcd") -> None:
        self.current_frame = FrameHeader(2, True, 0, length, mask)
        self.current_frame_masker = XorMaskerNull()  # what Autobahn makes while applyMask is False

    def _onMessageFrameBegin(self, length: int) -> None:
        pass

    inside_message = True  # onFrameBegin then goes straight to _onMessageFrameBegin


def test_autobahn_has_what_the_mixin_needs():
    # Nothing is off with the Autobahn installed (tests/test_upstream_fallback.py
    # covers an Autobahn that lacks it).
    assert wsmask.PROBLEM is None
    assert SmallFrameMasking.applyMask is False


@pytest.mark.parametrize(
    ("length", "ours"), [(1, True), (SMALL_FRAME - 1, True), (SMALL_FRAME, False), (SMALL_FRAME * 4, False)]
)
def test_our_masker_for_small_frames_autobahns_for_large(length, ours):
    proto = Masked(length)
    proto.onFrameBegin()
    masker = proto.current_frame_masker
    assert (type(masker) is FrameMasker) is ours
    if not ours:
        assert type(masker).__module__.startswith("autobahn.")
    assert masker.process(b"\0\0\0\0\0") == b"abcda"


def test_unmasked_and_empty_frames_and_apply_mask_are_left_to_autobahn():
    for proto in (Masked(5, mask=None), Masked(0)):
        proto.onFrameBegin()
        assert type(proto.current_frame_masker) is XorMaskerNull
    proto = Masked(5)
    proto.applyMask = True  # Autobahn made its own masker: kept
    autobahns = ORIGINAL(b"abcd", 5)
    proto.current_frame_masker = autobahns
    proto.onFrameBegin()
    assert proto.current_frame_masker is autobahns


def test_autobahns_module_is_left_alone():
    import twisted_asgi.websocket  # noqa: F401 (the module that uses the mixin)

    assert autobahn.websocket.protocol.create_xor_masker is ORIGINAL
    assert not hasattr(WebSocketServerProtocol, "applyMask") or WebSocketServerProtocol.applyMask is not False


def test_rfc6455_example():
    # RFC 6455 §5.7: "Hello" masked with 37 fa 21 3d is 7f 9f 4d 51 58.
    masker = FrameMasker(bytes.fromhex("37fa213d"))
    assert masker.process(bytes.fromhex("7f9f4d5158")) == b"Hello"
    assert masker.pointer() == 5
    masker.reset()
    assert masker.pointer() == 0
    with pytest.raises(ValueError):
        FrameMasker(b"abc")


@settings(max_examples=300, deadline=None)
@given(
    st.binary(min_size=4, max_size=4),
    st.binary(max_size=600),
    st.lists(st.integers(min_value=0, max_value=600), max_size=5),
)
def test_agrees_with_autobahns_masker_on_any_split(mask, payload, cuts):
    ours, theirs = FrameMasker(mask), ORIGINAL(mask, len(payload))
    bounds = sorted({0, len(payload), *(c for c in cuts if c < len(payload))})
    out_ours, out_theirs = [], []
    for start, end in itertools.pairwise(bounds):
        out_ours.append(ours.process(payload[start:end]))
        out_theirs.append(theirs.process(payload[start:end]))
    assert b"".join(out_ours) == b"".join(out_theirs)
    assert ours.pointer() == theirs.pointer() == len(payload)
    assert ours.process(b"") == b""
