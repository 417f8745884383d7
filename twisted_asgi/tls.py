"""TLS for ``ssl:`` listeners: certificates that can be reloaded without
dropping a connection, client-certificate verification, and the ASGI ``tls``
extension (ASGI TLS extension spec, version 0.2) in every scope of a TLS
connection.

The OpenSSL context is built here (TLS 1.2 or newer, Mozilla's intermediate
cipher list, no compression) from ``cryptography`` objects, since Twisted's
``CertificateOptions`` still hands pyOpenSSL the deprecated ``X509`` type.
Connections run in Twisted's :class:`~twisted.protocols.tls.TLSMemoryBIOFactory`;
ALPN offers what the server factory accepts, as Twisted's own ``ssl:`` does.
"""

from __future__ import annotations

import re
import socket
import ssl as stdlib_ssl
import weakref
from dataclasses import dataclass
from typing import Any

from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator, IStreamServerEndpoint
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = ["ClosingTLS", "ClosingTLSFactory", "ReloadableTLS", "TLSOptions", "TLSServerEndpoint", "tls_extension"]

log = Logger(namespace="twisted_asgi.tls")

_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL)

#: Client certificate policies: none (never asked for), optional (asked for and
#: verified when sent), required (the handshake fails without a valid one).
CLIENT_CERT_POLICIES = ("none", "optional", "required")


@dataclass(frozen=True)
class TLSOptions:
    """Where a listener's TLS material lives (the ``ssl:`` endpoint keys).

    ``private_key`` and ``cert`` are PEM files (the certificate file may hold
    the key too, and the chain after the certificate); ``extra_chain`` more
    intermediate certificates; ``ca_certs`` the CA certificates that client
    certificates must chain to; ``client_cert`` one of
    :data:`CLIENT_CERT_POLICIES`.
    """

    private_key: str
    cert: str
    extra_chain: str | None = None
    dh_parameters: str | None = None
    ca_certs: str | None = None
    client_cert: str = "none"

    def __post_init__(self) -> None:
        if self.client_cert not in CLIENT_CERT_POLICIES:
            raise ValueError(f"clientCert must be one of {', '.join(CLIENT_CERT_POLICIES)}, not {self.client_cert!r}")
        if self.client_cert != "none" and not self.ca_certs:
            raise ValueError(f"clientCert={self.client_cert} needs caCerts=FILE (the CAs client certificates chain to)")


@implementer(IOpenSSLServerConnectionCreator)
class ReloadableTLS:
    """Makes each new TLS connection from the certificates loaded last.

    :meth:`reload` reads the files again; connections made before keep the
    context they started with, so a reload drops nothing. A reload that fails
    (a missing file, a key that does not match) keeps the old certificates
    and says why.

    :raises ValueError: (from the constructor) the files cannot be loaded.
    """

    def __init__(self, options: TLSOptions) -> None:
        self.options = options
        self.loads = 0
        self._context: SSL.Context = self._make_context()
        self.loads = 1

    def _load(self) -> None:
        self._context = self._make_context()
        self.loads += 1

    def _make_context(self) -> SSL.Context:
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        options = self.options
        try:
            key_pem = _read(options.private_key)
            cert_pem = _read(options.cert)
            extra_pem = _read(options.extra_chain) if options.extra_chain else b""
        except OSError as exc:
            raise ValueError(f"cannot read TLS key or certificate: {exc}") from None
        certs = _CERT.findall(cert_pem)
        if not certs:
            raise ValueError(f"no PEM certificate in {options.cert!r}")
        if options.extra_chain and not _CERT.findall(extra_pem):
            raise ValueError(f"no PEM certificate in {options.extra_chain!r}")
        try:
            certificate = x509.load_pem_x509_certificate(certs[0])
            chain = [x509.load_pem_x509_certificate(pem) for pem in certs[1:] + _CERT.findall(extra_pem)]
            key = load_pem_private_key(key_pem, password=None)
        except ValueError as exc:
            raise ValueError(f"cannot load TLS key and certificate: {exc}") from None
        except TypeError as exc:  # an encrypted key
            raise ValueError(f"cannot load TLS private key: {exc}") from None
        context = SSL.Context(SSL.TLS_SERVER_METHOD)
        # Mozilla's "intermediate" server profile: TLS 1.2 and 1.3, forward-secret
        # AEAD suites only, the server's order, no compression (CRIME) and no
        # session tickets (their keys would outlive a certificate reload).
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.set_options(
            SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE | SSL.OP_NO_TICKET | SSL.OP_SINGLE_DH_USE
        )
        context.set_mode(SSL.MODE_RELEASE_BUFFERS)
        context.set_cipher_list(_CIPHERS)
        try:
            context.use_certificate(certificate)
            context.use_privatekey(key)  # type: ignore[arg-type]
            for extra in chain:
                context.add_extra_chain_cert(extra)
            context.check_privatekey()
            if options.dh_parameters:
                context.load_tmp_dh(options.dh_parameters)
            if options.client_cert != "none":
                cas = _CERT.findall(_read(options.ca_certs))  # type: ignore[arg-type]
                if not cas:
                    raise ValueError(f"no PEM certificate in {options.ca_certs!r}")
                context.load_verify_locations(options.ca_certs)
                for ca in cas:
                    # Tells the client which CAs we accept (RFC 8446 §4.2.4).
                    context.add_client_ca(x509.load_pem_x509_certificate(ca))
                mode = SSL.VERIFY_PEER | SSL.VERIFY_CLIENT_ONCE
                if options.client_cert == "required":
                    mode |= SSL.VERIFY_FAIL_IF_NO_PEER_CERT
                context.set_verify(mode)
        except OSError as exc:
            raise ValueError(f"cannot read TLS file: {exc}") from None
        except SSL.Error as exc:
            raise ValueError(f"cannot use TLS key and certificate: {exc}") from None
        # Needed for client certificates with resumed sessions (SSL_CTX_set_session_id_context(3)).
        context.set_session_id(b"twisted-asgi")
        context.set_alpn_select_callback(_select_alpn)
        server_pem = certs[0].decode("ascii").replace("\r\n", "\n") + "\n"
        context.set_info_callback(_handshake_watcher(server_pem))
        return context

    def reload(self) -> bool:
        """Load the files again for new connections; True when it worked."""
        try:
            self._load()
        except ValueError as exc:
            log.error("TLS reload failed, keeping the previous certificates: {error}", error=str(exc))
            return False
        log.info("Reloaded TLS certificate {cert}", cert=self.options.cert)
        return True

    def serverConnectionForTLS(self, tls_protocol: Any) -> SSL.Connection:
        """A new server-side OpenSSL connection from the current certificates."""
        return SSL.Connection(self._context, None)


#: Mozilla's "intermediate" TLS 1.2 suites (TLS 1.3 suites are OpenSSL's defaults).
_CIPHERS = (
    b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    b"ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    b"DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)


def _select_alpn(connection: SSL.Connection, offered: list[bytes]) -> Any:
    """Pick the first protocol the server factory accepts that the client offered
    (RFC 7301 §3.2: the server's preference), or go on without ALPN."""
    from twisted.internet.interfaces import IProtocolNegotiationFactory

    tls_protocol = connection.get_app_data()
    factory = getattr(getattr(tls_protocol, "factory", None), "wrappedFactory", None)
    negotiation = IProtocolNegotiationFactory(factory, None)
    if negotiation is not None:
        for protocol in negotiation.acceptableProtocols():
            if protocol in offered:
                return protocol
    return SSL.NO_OVERLAPPING_PROTOCOLS


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


@implementer(IStreamServerEndpoint)
class TLSServerEndpoint:
    """TLS over any stream listener (TCP, an inherited socket).

    ``listen(factory, wrap)`` lets a PROXY protocol wrapper go *outside* TLS,
    so that the header is read before the handshake.
    """

    def __init__(self, inner: Any, tls: ReloadableTLS) -> None:
        self.inner = inner
        self.tls = tls

    def listen(self, factory: Any, wrap: Any = None) -> Any:
        tls_factory = ClosingTLSFactory(self.tls, False, factory)
        return self.inner.listen(wrap(tls_factory) if wrap is not None else tls_factory)

    def reload(self) -> bool:
        """Reload this listener's certificates (see :meth:`ReloadableTLS.reload`)."""
        return self.tls.reload()


class ClosingTLS(BufferingTLSTransport):
    """Twisted's TLS transport, with a bound on how long a close waits for the
    client's close_notify.

    Twisted's ``loseConnection`` sends our close_notify and then keeps TCP open
    until the client answers with its own: a client that never does (most
    do not bother, RFC 8446 §6.1 does not make them) kept every closed
    connection, and its socket, until ``timeout_send`` aborted it.
    ``timeout_tls_close`` seconds after ``loseConnection`` the TCP connection
    is closed in the ordinary way (what is written, our close_notify included,
    is still sent first; ``timeout_send`` bounds that for a client that does
    not read). Every close path (keep-alive, timeouts, errors, WebSocket,
    HTTP/2, shutdown) goes through ``loseConnection``, so all get the bound.
    """

    _close_timer: Any = None

    def loseConnection(self) -> None:
        BufferingTLSTransport.loseConnection(self)
        factory: Any = self.factory
        timeout = factory.close_timeout
        if timeout and self._close_timer is None and self.connected:
            self._close_timer = factory.call_later(timeout, self._close_timed_out)

    def _close_timed_out(self) -> None:
        self._close_timer = None
        transport = self.transport
        if self.connected and transport is not None:
            transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        timer, self._close_timer = self._close_timer, None
        if timer is not None:
            timer.cancel()
        BufferingTLSTransport.connectionLost(self, reason)

    def _tlsShutdownFinished(self, reason: Failure | None) -> None:
        # Twisted (26.10, twisted/protocols/tls.py) calls this with a Failure()
        # made in _flushReceiveBIO when a client leaves without close_notify or
        # resets: its traceback's frames hold that failure and this protocol, a
        # cycle only the cycle collector frees, on every such connection. Twisted
        # passes on a new ConnectionLost failure in its place; this one keeps its
        # text and loses its frames.
        if reason is not None:
            _drop_traceback(reason)
        TLSMemoryBIOProtocol._tlsShutdownFinished(self, reason)


def _drop_traceback(reason: Failure) -> None:
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


class ClosingTLSFactory(TLSMemoryBIOFactory):
    """:class:`TLSMemoryBIOFactory` making :class:`ClosingTLS` connections,
    whose close timer runs on the wrapped server factory's scheduler
    (``call_later``, the clock tests advance) for its ``timeout_tls_close``."""

    protocol = ClosingTLS

    def __init__(self, creator: Any, is_client: bool, wrapped: Any) -> None:
        super().__init__(creator, is_client, wrapped)
        config = getattr(wrapped, "config", None)
        self.close_timeout: float = config.timeout_tls_close if config is not None else 0.0
        self.call_later: Any = getattr(wrapped, "call_later", None) or self._clock.callLater


# -- the ASGI "tls" extension ----------------------------------------------------------

#: Extension dicts of connections whose handshake is still running, filled by
#: the context's info callback when it completes.
_pending: weakref.WeakKeyDictionary[SSL.Connection, dict[str, Any]] = weakref.WeakKeyDictionary()
_server_pems: weakref.WeakKeyDictionary[SSL.Connection, str] = weakref.WeakKeyDictionary()


def tls_extension(transport: Any) -> dict[str, Any]:
    """The ``scope["extensions"]["tls"]`` dict of a TLS connection.

    Scopes are prepared when the connection is made, before the handshake; the
    same dict is completed in place when the handshake finishes (which is
    before any request can arrive). Over a TLS transport that our
    :class:`ReloadableTLS` did not make, the values the spec allows to be
    unknown stay None.
    """
    extension: dict[str, Any] = {
        "server_cert": None,
        "client_cert_chain": [],
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": None,
        "cipher_suite": None,
    }
    connection = transport.getHandle() if hasattr(transport, "getHandle") else None
    if not isinstance(connection, SSL.Connection):
        return extension
    if connection.get_finished() is not None:
        _fill(extension, connection, _server_pems.get(connection))
    else:
        _pending[connection] = extension
    return extension


def _handshake_watcher(server_pem: str) -> Any:
    def on_info(connection: SSL.Connection, where: int, _ret: int) -> None:
        if where & SSL.SSL_CB_HANDSHAKE_DONE:
            _server_pems[connection] = server_pem
            extension = _pending.pop(connection, None)
            if extension is not None:
                try:
                    _fill(extension, connection, server_pem)
                except Exception:  # an error here must not break the handshake
                    log.failure("Filling the ASGI tls extension failed")

    return on_info


def _fill(extension: dict[str, Any], connection: SSL.Connection, server_pem: str | None) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    extension["server_cert"] = server_pem
    extension["tls_version"] = connection.get_protocol_version() or None
    extension["cipher_suite"] = cipher_suite_id(connection.get_cipher_name())
    peer = connection.get_peer_certificate(as_cryptography=True)
    if peer is not None:
        # On the server side OpenSSL's peer chain leaves out the peer's own
        # certificate (SSL_get_peer_cert_chain(3)); the spec wants it first.
        chain = [peer]
        for cert in connection.get_peer_cert_chain(as_cryptography=True) or []:
            if cert != peer:
                chain.append(cert)
        extension["client_cert_chain"] = [c.public_bytes(Encoding.PEM).decode("ascii") for c in chain]
        extension["client_cert_name"] = peer.subject.rfc4514_string()


_cipher_ids: dict[str, int] | None = None


def cipher_suite_id(name: str | None) -> int | None:
    """The IANA number of an OpenSSL cipher suite name (``TLS_AES_128_GCM_SHA256``
    is 0x1301, RFC 8446 §B.4), or None when unknown.

    pyOpenSSL only gives the name; Python's own ``ssl`` module lists every
    suite OpenSSL knows with its protocol id, so the table is read from there.
    """
    global _cipher_ids
    if name is None:
        return None
    if _cipher_ids is None:
        context = stdlib_ssl.SSLContext(stdlib_ssl.PROTOCOL_TLS_SERVER)
        try:
            context.set_ciphers("ALL:COMPLEMENTOFALL:@SECLEVEL=0")
        except stdlib_ssl.SSLError:
            context.set_ciphers("ALL")
        _cipher_ids = {c["name"]: c["id"] & 0xFFFF for c in context.get_ciphers()}
    return _cipher_ids.get(name)


# -- the ssl: endpoint ---------------------------------------------------------------------

_SSL_KEYS = {
    "port",
    "interface",
    "backlog",
    "fileno",
    "privateKey",
    "certKey",
    "extraCertChain",
    "dhParameters",
    "caCerts",
    "clientCert",
}


def ssl_endpoint(reactor: Any, args: list[str], kwargs: dict[str, str]) -> TLSServerEndpoint:
    """The endpoint for an ``ssl:`` description split into ``args`` and ``kwargs``.

    Twisted's keys (``port``, ``interface``, ``backlog``, ``privateKey``,
    ``certKey``, ``extraCertChain``, ``dhParameters``) mean what they mean
    there; ``caCerts`` and ``clientCert=none|optional|required`` ask for client
    certificates, and ``fileno=N`` serves TLS on an inherited listening socket
    (workers, systemd) instead of binding a port.

    :raises ValueError: unknown keys or unusable files, with a one-line reason.
    """
    from twisted.internet.endpoints import AdoptedStreamServerEndpoint, TCP4ServerEndpoint, TCP6ServerEndpoint

    kwargs = dict(kwargs)
    if args:
        if len(args) > 1 or "port" in kwargs:
            raise ValueError("ssl: takes one positional argument, the port")
        kwargs["port"] = args[0]
    unknown = set(kwargs) - _SSL_KEYS
    if unknown:
        raise ValueError(f"unknown ssl: keys {sorted(unknown)} (known: {', '.join(sorted(_SSL_KEYS))})")
    private_key = kwargs.get("privateKey", "server.pem")
    options = TLSOptions(
        private_key=private_key,
        cert=kwargs.get("certKey", private_key),
        extra_chain=kwargs.get("extraCertChain"),
        dh_parameters=kwargs.get("dhParameters"),
        ca_certs=kwargs.get("caCerts"),
        client_cert=kwargs.get("clientCert", "none"),
    )
    tls = ReloadableTLS(options)
    if "fileno" in kwargs:
        if "port" in kwargs or "interface" in kwargs:
            raise ValueError("ssl: takes either fileno= or port=/interface=, not both")
        fileno = int(kwargs["fileno"])
        probe = socket.socket(fileno=fileno)
        try:
            family = probe.family
        finally:
            probe.detach()
        inner: Any = AdoptedStreamServerEndpoint(reactor, fileno, family)
    else:
        if "port" not in kwargs:
            raise ValueError("ssl: needs port=N (or fileno=N)")
        interface = kwargs.get("interface", "")
        # An IPv6 interface (written with escaped colons) needs an IPv6 socket.
        tcp = TCP6ServerEndpoint if ":" in interface else TCP4ServerEndpoint
        inner = tcp(reactor, int(kwargs["port"]), backlog=int(kwargs.get("backlog", 50)), interface=interface)
    return TLSServerEndpoint(inner, tls)
