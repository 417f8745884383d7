"""The small-frame masker put into Autobahn (twisted_asgi.wsmask): the seam is
in place once the WebSocket module is imported, and the masker agrees with
Autobahn's own on every payload and every way of splitting it."""

from __future__ import annotations

import itertools

import autobahn.websocket.protocol
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import twisted_asgi.websocket  # noqa: F401 (installs the seam)
from twisted_asgi import wsmask
from twisted_asgi.wsmask import SMALL_FRAME, FrameMasker

ORIGINAL = autobahn.websocket.protocol.create_xor_masker.original


def test_seam_is_installed_once_in_autobahn():
    factory = autobahn.websocket.protocol.create_xor_masker
    assert factory.twisted_asgi
    assert wsmask.install(autobahn.websocket.protocol)  # again: unchanged
    assert autobahn.websocket.protocol.create_xor_masker is factory
    assert type(factory(b"abcd", SMALL_FRAME - 1)) is FrameMasker
    assert type(factory(b"abcd", SMALL_FRAME)) is not FrameMasker  # Autobahn's own for large frames
    assert type(factory(b"abcd")) is not FrameMasker  # no length given: Autobahn's


def test_install_leaves_a_module_without_the_factory_alone():
    class Module:
        pass

    assert not wsmask.install(Module)
    assert not hasattr(Module, "create_xor_masker")


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
