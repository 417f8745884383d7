"""pyOpenSSL's internals, fenced (see the package docstring): the record
layer of a :class:`~twisted_asgi.tls.ServerTLS` connection once its
handshake is over.

pyOpenSSL's public ``Connection.recv``, ``bio_read``, ``bio_write`` and
``send`` allocate a buffer per call and report "nothing more" by raising
``WantReadError``: on a kept connection every read ends with one raised
(``recv`` until OpenSSL wants more) and usually a second (``bio_read`` of an
empty send BIO after it). The fast path calls the same OpenSSL functions
through cryptography's bindings as pyOpenSSL does, into one buffer reused for
every call (the reactor thread's; each result is copied out before any
callback), and answers "nothing more" with ``None``/``b""``. Every other
outcome of ``SSL_read``/``SSL_write`` goes to pyOpenSSL's own error mapping,
so the exceptions (``ZeroReturnError``, ``SysCallError``, ``Error``) are
pyOpenSSL's. Read from pyOpenSSL 26.4.0 (OpenSSL/SSL.py, the same in 24.x
and 25.x in these parts):

* ``OpenSSL.SSL._lib`` and ``_ffi``: cryptography's OpenSSL bindings, with
  ``SSL_read``, ``SSL_write``, ``SSL_get_error``, ``SSL_ERROR_WANT_READ``,
  ``BIO_read``, ``BIO_write``;
* ``Connection._ssl`` (the ``SSL*``), ``Connection._into_ssl`` and
  ``_from_ssl`` (the memory BIOs of a connection made without a socket);
* ``Connection._raise_ssl_error(ssl, result)``: the mapping of an OpenSSL
  result to pyOpenSSL's exceptions (it raises nothing for a success);
* ``Connection._alpn_select_callback_args``: where pyOpenSSL keeps the
  ALPN callback's answer alive until OpenSSL has copied it (it does, as the
  callback returns), for :func:`forget_alpn_answer`;
* ``BIO_new``, ``BIO_s_mem``, ``BIO_get_mem_data`` and ``SSL_set_bio``, for
  :func:`fresh_bios`: pyOpenSSL makes a socketless connection's BIOs with
  ``BIO_new(BIO_s_mem())`` and hands them to the ``SSL*`` with ``SSL_set_bio``
  (which frees the BIOs it replaces).

Where one of them is missing or does not behave as read (:data:`PROBLEM`
says why), the public methods are used (the same bytes, the same
exceptions; two exceptions and two buffer allocations more per read).

Imports neither Twisted nor asyncio.
"""

from __future__ import annotations

from typing import Any

from OpenSSL import SSL

__all__ = ["PROBLEM", "drain", "encrypt", "feed", "forget_alpn_answer", "fresh_bios", "public", "recv", "send"]

#: The most one call takes or gives: four TLS records (RFC 8446 §5.1: at most
#: 2**14 cleartext bytes each); ``SSL_read`` returns one record at a time.
BUFFER = 2**16


# -- the public path ----------------------------------------------------------------------


def _public_recv(tls: SSL.Connection) -> bytes | None:
    """Cleartext of the next record, or None where OpenSSL wants more bytes.

    :raises SSL.Error: as ``Connection.recv`` (``ZeroReturnError``: close_notify).
    """
    try:
        return tls.recv(BUFFER)
    except SSL.WantReadError:
        return None


def _public_drain(tls: SSL.Connection) -> bytes:
    """What OpenSSL wrote to the send BIO (up to :data:`BUFFER`), or b""."""
    try:
        return tls.bio_read(BUFFER)
    except SSL.WantReadError:
        return b""


def _public_feed(tls: SSL.Connection, data: bytes) -> None:
    tls.bio_write(data)


def _public_send(tls: SSL.Connection, data: bytes) -> int:
    """Encrypt ``data`` (all of it: a memory BIO never pushes back).

    :raises SSL.Error: as ``Connection.send`` (``WantReadError`` included).
    """
    return tls.send(data)


def _public_encrypt(tls: SSL.Connection, data: bytes) -> bytes:
    """Encrypt ``data`` (one record's worth at most: 2**14 bytes, all taken) and
    return what the send BIO then holds (up to :data:`BUFFER`).

    :raises SSL.Error: as ``Connection.send``.
    """
    tls.send(data)
    return _public_drain(tls)


def _public_fresh_bios(tls: SSL.Connection) -> bool:
    """Nothing to do without the bindings: the BIOs are kept (False)."""
    return False


def _public_forget_alpn_answer(tls: SSL.Connection) -> None:
    """Nothing to do without the bindings: pyOpenSSL keeps it."""


#: The public functions, by name (what tests compare the fast path with).
public = {
    "recv": _public_recv,
    "drain": _public_drain,
    "feed": _public_feed,
    "send": _public_send,
    "encrypt": _public_encrypt,
    "fresh_bios": _public_fresh_bios,
    "forget_alpn_answer": _public_forget_alpn_answer,
}


# -- the fast path ------------------------------------------------------------------------


def _fast(lib: Any, ffi: Any) -> dict[str, Any]:
    SSL_read = lib.SSL_read
    SSL_write = lib.SSL_write
    SSL_get_error = lib.SSL_get_error
    BIO_read = lib.BIO_read
    BIO_write = lib.BIO_write
    BIO_new = lib.BIO_new
    BIO_s_mem = lib.BIO_s_mem
    BIO_free = lib.BIO_free
    BIO_get_mem_data = lib.BIO_get_mem_data
    SSL_set_bio = lib.SSL_set_bio
    NULL = ffi.NULL
    WANT_READ = lib.SSL_ERROR_WANT_READ
    unpack = ffi.unpack
    # One buffer for every connection: the reactor runs them on one thread,
    # and each result is copied out (unpack) before anything else runs.
    buffer = ffi.new("char[]", BUFFER)

    def fast_recv(tls: SSL.Connection) -> bytes | None:
        ssl = tls._ssl
        result = SSL_read(ssl, buffer, BUFFER)
        if result > 0:
            return unpack(buffer, result)  # type: ignore[no-any-return]
        if SSL_get_error(ssl, result) == WANT_READ:
            return None
        tls._raise_ssl_error(ssl, result)
        raise SSL.Error([])  # unreachable: an SSL_read of 0 or less is an error of some kind

    def fast_drain(tls: SSL.Connection) -> bytes:
        result = BIO_read(tls._from_ssl, buffer, BUFFER)
        # A memory BIO returns -1 (retry) when empty, never another failure.
        return unpack(buffer, result) if result > 0 else b""

    def fast_feed(tls: SSL.Connection, data: bytes) -> None:
        if data and BIO_write(tls._into_ssl, data, len(data)) <= 0:
            tls.bio_write(data)  # never for a memory BIO; pyOpenSSL's error if it ever did

    def fast_send(tls: SSL.Connection, data: bytes) -> int:
        ssl = tls._ssl
        result = SSL_write(ssl, data, len(data))
        if result <= 0:
            tls._raise_ssl_error(ssl, result)
        return result  # type: ignore[no-any-return]

    def fast_encrypt(tls: SSL.Connection, data: bytes) -> bytes:
        ssl = tls._ssl
        result = SSL_write(ssl, data, len(data))
        if result <= 0:
            tls._raise_ssl_error(ssl, result)
            raise SSL.Error([])  # unreachable, as in fast_recv
        result = BIO_read(tls._from_ssl, buffer, BUFFER)
        return unpack(buffer, result) if result > 0 else b""

    def fresh_bios(tls: SSL.Connection) -> bool:
        # A memory BIO's buffer only grows (BUF_MEM_grow_clean): once drained
        # it keeps the room its largest content took.  New empty BIOs hold none.
        into, out = tls._into_ssl, tls._from_ssl
        if BIO_get_mem_data(into, NULL) or BIO_get_mem_data(out, NULL):
            return False  # bytes still waiting (part of a record): keep them
        new_into = BIO_new(BIO_s_mem())
        new_out = BIO_new(BIO_s_mem())
        if new_into == NULL or new_out == NULL:  # out of memory: keep the old ones
            if new_into != NULL:
                BIO_free(new_into)
            if new_out != NULL:
                BIO_free(new_out)
            return False
        SSL_set_bio(tls._ssl, new_into, new_out)  # frees the old pair
        tls._into_ssl = new_into
        tls._from_ssl = new_out
        return True

    def forget_alpn_answer(tls: SSL.Connection) -> None:
        # Two cffi buffers (the chosen protocol and its length) per connection,
        # held by pyOpenSSL after OpenSSL has copied them (tls_handle_alpn).
        if tls._alpn_select_callback_args is not None:
            tls._alpn_select_callback_args = None

    return {
        "forget_alpn_answer": forget_alpn_answer,
        "recv": fast_recv,
        "drain": fast_drain,
        "feed": fast_feed,
        "send": fast_send,
        "encrypt": fast_encrypt,
        "fresh_bios": fresh_bios,
    }


def _problem() -> tuple[str | None, dict[str, Any]]:
    """(why the fast path is off or None, the functions to use)."""
    lib = getattr(SSL, "_lib", None)
    ffi = getattr(SSL, "_ffi", None)
    missing = [name for name, value in (("OpenSSL.SSL._lib", lib), ("OpenSSL.SSL._ffi", ffi)) if value is None]
    names = (
        "SSL_read",
        "SSL_write",
        "SSL_get_error",
        "SSL_ERROR_WANT_READ",
        "BIO_read",
        "BIO_write",
        "BIO_new",
        "BIO_s_mem",
        "BIO_free",
        "BIO_get_mem_data",
        "SSL_set_bio",
    )
    if lib is not None:
        missing += [f"OpenSSL.SSL._lib.{name}" for name in names if not hasattr(lib, name)]
    if not hasattr(SSL.Connection, "_raise_ssl_error"):
        missing.append("OpenSSL.SSL.Connection._raise_ssl_error")
    if missing:
        return f"pyOpenSSL {_version()} has no {', '.join(missing)}", public
    try:
        functions = _fast(lib, ffi)
        # A server connection over memory BIOs, before any byte: it wants to
        # read, its send BIO is empty, and a byte fed reaches its receive BIO.
        probe = SSL.Connection(SSL.Context(SSL.TLS_SERVER_METHOD), None)
        probe.set_accept_state()
        for name in ("_ssl", "_into_ssl", "_from_ssl"):
            if getattr(probe, name, None) is None:
                return f"pyOpenSSL {_version()}'s Connection has no {name}", public
        if not hasattr(probe, "_alpn_select_callback_args"):
            return f"pyOpenSSL {_version()}'s Connection has no _alpn_select_callback_args", public
        if functions["recv"](probe) is not None or functions["drain"](probe) != b"":
            return f"pyOpenSSL {_version()}'s memory BIOs behave differently", public
        # Empty BIOs are replaced by new ones that the connection reads and
        # writes through (and that pyOpenSSL's public methods then use).
        before = probe._into_ssl
        if not functions["fresh_bios"](probe) or probe._into_ssl == before:
            return f"pyOpenSSL {_version()}'s memory BIOs cannot be replaced", public
        # Not a TLS record: the handshake fails with pyOpenSSL's own exception.
        functions["feed"](probe, b"GET / HTTP/1.1\r\n\r\n")
        try:
            functions["recv"](probe)
        except SSL.Error:
            pass
        else:
            return f"pyOpenSSL {_version()}'s error mapping behaves differently", public
    except Exception as exc:  # a binding that changed shape
        return f"pyOpenSSL {_version()}: {type(exc).__name__}: {exc}", public
    return None, functions


def _version() -> str:
    import OpenSSL

    return str(getattr(OpenSSL, "__version__", "?"))


#: Why the fast record layer is off (None: it is on).
PROBLEM: str | None
_chosen: dict[str, Any]
PROBLEM, _chosen = _problem()
if PROBLEM is not None:
    PROBLEM += "; so pyOpenSSL's public recv/bio_read/bio_write/send run the TLS record layer"

recv = _chosen["recv"]
drain = _chosen["drain"]
feed = _chosen["feed"]
send = _chosen["send"]
encrypt = _chosen["encrypt"]
#: ``fresh_bios(tls)``: replace a connection's memory BIOs by new empty ones
#: when both are empty (True), else keep them (False).
fresh_bios = _chosen["fresh_bios"]
#: ``forget_alpn_answer(tls)``: let go of what pyOpenSSL keeps of the ALPN
#: callback's answer once the handshake is over (OpenSSL has its own copy).
forget_alpn_answer = _chosen["forget_alpn_answer"]
