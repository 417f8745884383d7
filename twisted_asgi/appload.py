"""Loading the application a command line names (``module:attribute``), with
errors in the user's terms: one line, and for an import that raises, the
user's own file, line and code from the traceback.

Imported by the command line (:mod:`.tap`) and the Django adapter; imports
neither of them.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

__all__ = ["AppLoadError", "load_app"]


class AppLoadError(Exception):
    """The application path does not name an importable ASGI callable."""


def _user_frames(exc: BaseException, limit: int = 3) -> str:
    """The last ``limit`` frames of ``exc``'s traceback that are not the import
    machinery's or ours, as indented text (the user's file and line)."""
    import traceback

    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if "importlib" not in frame.filename and not frame.filename.endswith(os.path.join("twisted_asgi", "appload.py"))
    ]
    if isinstance(exc, SyntaxError) and exc.filename:
        frames.append(traceback.FrameSummary(exc.filename, exc.lineno or 0, "<module>", line=exc.text or ""))
    return "".join(traceback.format_list(frames[-limit:])).rstrip()


def load_app(path: str, factory: bool = False, app_dir: str | None = ".") -> Any:
    """Import ``module:attribute`` (attribute defaults to ``application``).

    :raises AppLoadError: with a one-line message naming the problem.
    """
    if app_dir is not None:
        directory = os.path.abspath(app_dir)
        if directory not in sys.path:
            sys.path.insert(0, directory)
    module_name, _, attribute = path.partition(":")
    attribute = attribute or "application"
    if not module_name:
        raise AppLoadError(f"invalid application path {path!r}: expected 'module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise AppLoadError(f"cannot import module {module_name!r}: {exc}") from None
        raise AppLoadError(_import_failed(module_name, exc)) from None
    except Exception as exc:
        raise AppLoadError(_import_failed(module_name, exc)) from None
    app: Any = module
    try:
        for part in attribute.split("."):
            app = getattr(app, part)
    except AttributeError:
        raise AppLoadError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if factory:
        try:
            app = app()
        except Exception as exc:
            where = _user_frames(exc)
            raise AppLoadError(
                f"application factory {path!r} failed: {type(exc).__name__}: {exc}" + (f"\n{where}" if where else "")
            ) from None
    if not callable(app):
        raise AppLoadError(f"{path!r} is not callable (got {type(app).__name__})")
    return app


def _import_failed(module_name: str, exc: BaseException) -> str:
    """The import error, then where in the user's code it happened."""
    where = _user_frames(exc)
    return f"importing {module_name!r} failed: {type(exc).__name__}: {exc}" + (f"\n{where}" if where else "")
