"""The event classes of :mod:`twisted_asgi.events` are written out (slots and
``__init__`` per class, ``__eq__``/``__repr__`` once in a base) rather than
made by ``@dataclass(slots=True)``: they must behave as those dataclasses did."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from twisted_asgi import events

CLASSES = [
    events.Request,
    events.Data,
    events.EndOfMessage,
    events.StreamReset,
    events.Response,
    events.EarlyHint,
    events.Body,
    events.FileBody,
    events.Trailers,
    events.ErrorResponse,
]


def _values(cls: type) -> list[object]:
    return [f"v{i}" for i, name in enumerate(cls.__slots__)]


@pytest.mark.parametrize("cls", CLASSES)
def test_event_behaves_as_its_slotted_dataclass(cls):
    """Same fields, order, defaults, equality, repr and no hash as
    ``@dataclass(slots=True)`` over the class's annotations would give."""
    names = list(cls.__slots__)
    assert names == list(cls.__annotations__) == list(cls.__match_args__)
    signature = inspect.signature(cls)
    assert list(signature.parameters) == names
    twin = dataclasses.dataclass(slots=True)(
        type(
            cls.__name__,
            (),
            {
                "__annotations__": cls.__annotations__,
                "__qualname__": cls.__qualname__,
                **{
                    name: p.default
                    for name, p in signature.parameters.items()
                    if p.default is not inspect.Parameter.empty
                },
            },
        )
    )
    values = _values(cls)
    event, same, other = cls(*values), cls(**dict(zip(names, values, strict=True))), cls(*values[:-1], "x")
    assert event == same and event != other and event != object() and cls.__hash__ is None
    assert repr(event) == repr(twin(*values))
    assert not hasattr(event, "__dict__")
    required = [p for p in signature.parameters.values() if p.default is inspect.Parameter.empty]
    defaults = {name: p.default for name, p in signature.parameters.items() if p.default is not inspect.Parameter.empty}
    made = cls(*[f"r{i}" for i in range(len(required))])
    assert all(getattr(made, name) == default for name, default in defaults.items())


def test_request_defaults():
    """A request head's defaults, as the HTTP/1.1 and HTTP/2 parsers rely on them."""
    request = events.Request(1, b"GET", b"/", b"", "1.1", [])
    assert (request.keep_alive, request.expect_continue, request.upgrade, request.content_length) == (
        True,
        False,
        None,
        None,
    )
    assert request.has_body is False
