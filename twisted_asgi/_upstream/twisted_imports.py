"""How the server imports Twisted: its reactor without Twisted's TLS support,
and ``http.cookiejar`` at first use (fenced: what this relies on is Twisted's
import statements, read from Twisted 24.7.0 and 26.10.0).

This module imports nothing of Twisted at import time (:mod:`.twisted` imports
the reactor itself, so these functions cannot live there), and importing it
changes nothing: the two functions below act only when the server's own
start-up calls them, before Twisted's reactor or its ``compat`` module is
imported.

Importing Twisted's asyncio reactor imports Twisted's TLS support, pyOpenSSL
and ``cryptography`` with it, about a quarter of a plain server's start-up,
although a server that listens on ``tcp:`` never uses them (``ssl:``
listeners are :mod:`twisted_asgi.tls`'s own protocol, which imports pyOpenSSL
when one is configured). Two module-level imports do it:

* twisted/internet/tcp.py takes ``ConnectionMixin``, ``ClientMixin`` and
  ``ServerMixin`` from ``twisted.internet._newtls`` (the bases that give every
  TCP connection ``startTLS``), and ``_newtls`` imports
  ``twisted.protocols.tls`` (pyOpenSSL) at its top. While the reactor is
  imported, ``_newtls`` in ``sys.modules`` is a stand-in whose three classes
  are :class:`ConnectionMixin`, :class:`ClientMixin`, :class:`ServerMixin`
  below; afterwards the stand-in is gone, so ``import
  twisted.internet._newtls`` anywhere gets Twisted's module. Before the first
  ``startTLS`` a connection writes, closes and registers producers through
  ``FileDescriptor`` directly, which is what Twisted's mixin does while
  ``TLS`` is False; the first ``startTLS`` in the process imports Twisted's
  ``_newtls`` and puts its ``ConnectionMixin``'s methods on the stand-in
  class, so from then on every TCP connection runs Twisted's own code.
* twisted/internet/posixbase.py binds ``twisted.protocols.tls`` and
  ``twisted.internet.ssl`` as module globals (for ``connectSSL`` and
  ``listenSSL``), and ``twisted.internet.unix`` (for ``unix:`` sockets).
  These are installed as *deferred* modules: the real module
  object, in ``sys.modules`` and on its package, whose code runs at the first
  attribute access (an ``import`` of it anywhere is one: the import system
  reads its ``__spec__``), under a lock, so every user gets the one real
  module.

``twisted.python.compat`` imports ``http.cookiejar`` (which imports
``urllib.request``, ``http.client`` and ``email``) for a deprecated alias;
:func:`defer_cookiejar` makes it a deferred module the same way, for
``python -m twisted_asgi`` (twistd has imported ``compat`` before any plugin
runs).

Where this cannot apply (a module already imported, pyOpenSSL missing), the
reactor is imported the ordinary way. A Twisted whose modules import
otherwise still gets Twisted's own code: any other name asked of the stand-in
is Twisted's ``_newtls``'s (imported then), a class tcp.py builds on it is
Twisted's, a module posixbase imports in another way is imported as usual.
Either way the reason is returned, for one start-up line (the saving is then
lost, not the behaviour). ``tests/test_upstream_drift.py`` pins the import
statements and classes this relies on.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from types import ModuleType
from typing import Any

__all__ = [
    "ClientMixin",
    "ConnectionMixin",
    "ServerMixin",
    "defer_cookiejar",
    "deferred",
    "import_reactor",
]

#: The module whose three classes the stand-in replaces during the import
#: (twisted/internet/tcp.py imports them in a try block; its ImportError branch
#: would make connections without ``startTLS``).
NEWTLS = "twisted.internet._newtls"
#: What twisted/internet/posixbase.py binds at its top (``tls``, ``ssl``).
DEFERRED_TLS = ("twisted.protocols.tls", "twisted.internet.ssl")
#: Bound by posixbase.py too (``unix``, with ``process``, which the reactor's
#: child-signal handling runs at start anyway), used only by ``unix:``
#: listeners and clients: deferred likewise.
DEFERRED_UNIX = "twisted.internet.unix"
#: Imported by the reactor's modules; the stand-ins are only worth it, and
#: only safe, before any of these is.
REACTOR_MODULES = ("twisted.internet.tcp", "twisted.internet.posixbase", "twisted.internet.asyncioreactor")
#: Whose absence means posixbase's imports fail anyway (then nothing is deferred).
_TLS_DEPENDENCIES = ("OpenSSL", "cryptography")


# -- the stand-in for twisted.internet._newtls ----------------------------------------


class ConnectionMixin:
    """Stands in for ``twisted.internet._newtls.ConnectionMixin`` (Twisted
    24.7.0-26.10.0) as a base of ``tcp.Connection``: ``TLS`` is False and the
    other methods are ``FileDescriptor``'s until :meth:`startTLS` is first
    called, which puts Twisted's own methods here (see the module docstring)."""

    TLS = False

    def startTLS(self, ctx: Any, normal: bool = True) -> None:
        _adopt_twisted_tls()
        # Now Twisted's ConnectionMixin.startTLS, on this class.
        ConnectionMixin.startTLS(self, ctx, normal)


class ClientMixin:
    """Stands in for ``twisted.internet._newtls.ClientMixin``: a client
    connection is the TLS client by default."""

    _tlsClientDefault = True


class ServerMixin:
    """Stands in for ``twisted.internet._newtls.ServerMixin``: a server
    connection is the TLS server by default."""

    _tlsClientDefault = False


_adopt_lock = threading.Lock()


def _adopt_twisted_tls() -> None:
    """Import Twisted's ``_newtls`` (and with it pyOpenSSL) and give the
    stand-in class its ``ConnectionMixin``'s methods (``startTLS``, ``write``,
    ``writeSequence``, ``loseConnection``, ``registerProducer``,
    ``unregisterProducer`` in 24.7.0-26.10.0: whatever it defines)."""
    with _adopt_lock:
        if ConnectionMixin.startTLS is not _stand_in_start_tls:
            return  # adopted already
        real = importlib.import_module(NEWTLS).ConnectionMixin
        for name, value in vars(real).items():
            if not (name.startswith("__") and name.endswith("__")):
                setattr(ConnectionMixin, name, value)


_stand_in_start_tls = ConnectionMixin.startTLS


def _newtls_stand_in() -> ModuleType:
    """The module in ``sys.modules`` while the reactor is imported: the three
    classes, and for any other name (a Twisted that imports more from it)
    Twisted's own module's, imported then (PEP 562 ``__getattr__``)."""
    module = ModuleType(NEWTLS, "twisted_asgi's stand-in while the reactor is imported (see twisted_imports)")
    for cls in (ConnectionMixin, ClientMixin, ServerMixin):
        setattr(module, cls.__name__, cls)

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if sys.modules.get(NEWTLS) is module:
            del sys.modules[NEWTLS]
        return getattr(importlib.import_module(NEWTLS), name)

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    return module


# -- deferred modules ------------------------------------------------------------------


class _DeferredModule(ModuleType):
    """A module whose code has not run yet: the first attribute read, write or
    delete runs it (the real loader's ``exec_module`` on this very object),
    then the object is an ordinary module. One thread runs it while others
    wait; the running thread itself reads the partly run module, as any
    import cycle would."""

    def __getattribute__(self, name: str) -> Any:
        _run_deferred(self)
        return ModuleType.__getattribute__(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        _run_deferred(self)
        ModuleType.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        _run_deferred(self)
        ModuleType.__delattr__(self, name)


#: Deferred module -> [its lock, whether its code is running (in the lock's owner)].
_pending: dict[int, list[Any]] = {}


def _run_deferred(module: ModuleType) -> None:
    state = _pending.get(id(module))
    if state is None:
        return
    lock = state[0]
    with lock:
        if type(module) is not _DeferredModule or state[1]:
            return  # ran meanwhile in another thread, or running in this one
        state[1] = True
        spec = ModuleType.__getattribute__(module, "__spec__")
        try:
            spec.loader.exec_module(module)
        except BaseException:
            # As a failed import: not left in sys.modules half run.
            if sys.modules.get(spec.name) is module:
                del sys.modules[spec.name]
            raise
        finally:
            ModuleType.__setattr__(module, "__class__", ModuleType)
            _pending.pop(id(module), None)


def deferred(name: str) -> ModuleType | None:
    """Install ``name`` (not imported yet, its package imported) as a deferred
    module: in ``sys.modules`` and on its package, its code run at the first
    attribute access. None, and nothing done, when it is imported already or
    cannot be found."""
    if name in sys.modules:
        return None
    parent_name, _, child = name.rpartition(".")
    parent = importlib.import_module(parent_name) if parent_name else None
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
        return None
    module = importlib.util.module_from_spec(spec)
    _pending[id(module)] = [threading.RLock(), False]
    ModuleType.__setattr__(module, "__class__", _DeferredModule)
    sys.modules[name] = module
    if parent is not None:
        setattr(parent, child, module)
    return module


def is_deferred(module: Any) -> bool:
    """Whether ``module`` is a deferred module whose code has not run."""
    return type(module) is _DeferredModule


def _undo_deferred(name: str, module: ModuleType) -> None:
    """Forget a deferred module that never ran (the attempt is abandoned)."""
    if type(module) is not _DeferredModule:
        return
    _pending.pop(id(module), None)
    ModuleType.__setattr__(module, "__class__", ModuleType)
    if sys.modules.get(name) is module:
        del sys.modules[name]
    parent_name, _, child = name.rpartition(".")
    parent = sys.modules.get(parent_name)
    if parent is not None and vars(parent).get(child) is module:
        del vars(parent)[child]


# -- the two entry points --------------------------------------------------------------


def defer_cookiejar() -> bool:
    """Make ``http.cookiejar`` a deferred module, before Twisted's ``compat``
    imports it (``from http import cookiejar as cookielib``, twisted/python/compat.py
    24.7.0-26.10.0, for a deprecated alias). For ``python -m twisted_asgi``'s
    process only; True when done."""
    if "twisted.python.compat" in sys.modules:
        return False
    return deferred("http.cookiejar") is not None


def import_reactor() -> str | None:
    """Import Twisted's asyncio reactor module without Twisted's TLS support
    (see the module docstring); None when that worked, else why not (the
    reactor is then imported the ordinary way, TLS support included)."""
    why = _why_not()
    if why is not None:
        importlib.import_module("twisted.internet.asyncioreactor")
        return why
    tls_loaded = [name for name in _TLS_DEPENDENCIES if name in sys.modules]
    stand_in = _newtls_stand_in()
    made = {name: deferred(name) for name in (*DEFERRED_TLS, DEFERRED_UNIX)}
    sys.modules[NEWTLS] = stand_in
    try:
        importlib.import_module("twisted.internet.asyncioreactor")
    except BaseException:
        for name, module in made.items():
            if module is not None:
                _undo_deferred(name, module)
        raise
    finally:
        if sys.modules.get(NEWTLS) is stand_in:
            del sys.modules[NEWTLS]
        internet = sys.modules.get("twisted.internet")
        if internet is not None and vars(internet).get("_newtls") is stand_in:
            del vars(internet)["_newtls"]
    return _check(made, tls_loaded)


def _why_not() -> str | None:
    imported = [name for name in (*REACTOR_MODULES, NEWTLS, *DEFERRED_TLS) if name in sys.modules]
    if imported:
        return f"{imported[0]} was imported before the server started"
    for name in _TLS_DEPENDENCIES:
        if importlib.util.find_spec(name) is None:
            return f"{name} is not installed"
    return None


def _check(made: dict[str, ModuleType | None], tls_loaded: list[str]) -> str | None:
    """What went otherwise than read from Twisted 24.7.0-26.10.0 (the
    behaviour is Twisted's all the same, see the module docstring), or None."""
    tcp: Any = sys.modules.get("twisted.internet.tcp")
    posixbase: Any = sys.modules.get("twisted.internet.posixbase")
    if tcp is None or posixbase is None:
        return "the asyncio reactor no longer imports twisted.internet.tcp and posixbase"
    bases = {"Connection": ConnectionMixin, "Server": ServerMixin, "BaseClient": ClientMixin}
    for name, base in bases.items():
        cls = getattr(tcp, name, None)
        if not (isinstance(cls, type) and issubclass(cls, base)):
            return f"Twisted's tcp.{name} is not built on the stand-in for _newtls.{base.__name__}"
    # posixbase.py: "from twisted.protocols import tls as _tls" ... "tls = _tls",
    # the same for "ssl"; "from twisted.internet import process, unix" (24.7.0-26.10.0).
    for global_name, module_name in zip(("tls", "ssl", "unix"), (*DEFERRED_TLS, DEFERRED_UNIX), strict=True):
        if made[module_name] is not None and vars(posixbase).get(global_name) is not made[module_name]:
            return f"Twisted's posixbase.{global_name} is not {module_name} as read"
    loaded = [name for name in _TLS_DEPENDENCIES if name in sys.modules and name not in tls_loaded]
    if loaded:
        return f"importing the reactor imported {loaded[0]} all the same"
    return None
