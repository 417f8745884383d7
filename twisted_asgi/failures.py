"""Failures that must not keep what they saw alive."""

from __future__ import annotations

from typing import Any

__all__ = ["drop_traceback"]


def drop_traceback(reason: Any) -> None:
    """Let go of the frames a connection-lost failure may hold: a failure made
    while an exception was handled (a TLS client that left without
    close_notify: Failure() in Twisted's TLS receive path) keeps a traceback,
    and so does its exception; their frames hold the failure and the
    protocols, a cycle only the cycle collector would free. The failure keeps
    its type and message."""
    value = reason.value
    if reason.tb is None and getattr(value, "__traceback__", None) is None:
        return
    reason.cleanFailure()
    seen = 0
    while isinstance(value, BaseException) and seen < 8:
        value.__traceback__ = None
        value = value.__context__ or value.__cause__
        seen += 1
