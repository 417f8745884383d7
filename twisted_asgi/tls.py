"""TLS for ``ssl:`` listeners: certificates that can be reloaded without
dropping a connection, several certificates chosen by the client's server name
(SNI), OCSP stapling, client-certificate verification, and the ASGI ``tls``
extension (ASGI TLS extension spec, version 0.2) in every scope of a TLS
connection.

The OpenSSL context is built here (TLS 1.2 or newer, Mozilla's intermediate
cipher list, no compression) from ``cryptography`` objects, since Twisted's
``CertificateOptions`` still hands pyOpenSSL the deprecated ``X509`` type.
Connections run in :class:`ServerTLS`, OpenSSL over memory BIOs as in Twisted's
``TLSMemoryBIOProtocol`` but leaner per connection and with public APIs only;
ALPN offers what the server factory accepts, as Twisted's own ``ssl:`` does.
"""

from __future__ import annotations

import os
import re
import socket
import ssl as stdlib_ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from OpenSSL import SSL
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import (
    ILoggingContext,
    INegotiated,
    IOpenSSLServerConnectionCreator,
    IProtocol,
    IProtocolFactory,
    IProtocolNegotiationFactory,
    IPushProducer,
    ISSLTransport,
    IStreamServerEndpoint,
    ISystemHandle,
)
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import classImplements, directlyProvides, implementer, providedBy

from ._upstream import openssl as _records
from .scope import unknown_tls_extension

__all__ = ["ReloadableTLS", "ServerTLS", "ServerTLSFactory", "TLSOptions", "TLSServerEndpoint", "tls_extension"]

log = Logger(namespace="twisted_asgi.tls")

_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.DOTALL)

#: Client certificate policies: none (never asked for), optional (asked for and
#: verified when sent), required (the handshake fails without a valid one).
CLIENT_CERT_POLICIES = ("none", "optional", "required")


@dataclass(frozen=True)
class TLSOptions:
    """Where a listener's TLS material lives (the ``ssl:`` endpoint keys).

    ``private_key`` and ``cert`` are PEM files (the certificate file may hold
    the key too, and the chain after the certificate): the default
    certificate; ``extra_chain`` more intermediate certificates for it;
    ``cert_dir`` a directory of more certificates, each chosen by the server
    name a client asks for (SNI, see :class:`ReloadableTLS`); ``ca_certs`` the
    CA certificates that client certificates must chain to; ``client_cert``
    one of :data:`CLIENT_CERT_POLICIES`.
    """

    private_key: str | None = None
    cert: str | None = None
    extra_chain: str | None = None
    dh_parameters: str | None = None
    ca_certs: str | None = None
    client_cert: str = "none"
    cert_dir: str | None = None

    def __post_init__(self) -> None:
        if self.client_cert not in CLIENT_CERT_POLICIES:
            raise ValueError(f"clientCert must be one of {', '.join(CLIENT_CERT_POLICIES)}, not {self.client_cert!r}")
        if self.client_cert != "none" and not self.ca_certs:
            raise ValueError(f"clientCert={self.client_cert} needs caCerts=FILE (the CAs client certificates chain to)")
        if self.cert is None and self.private_key is not None:
            object.__setattr__(self, "cert", self.private_key)
        elif self.private_key is None and self.cert is not None:
            object.__setattr__(self, "private_key", self.cert)
        if self.cert is None and self.cert_dir is None:
            raise ValueError("ssl: needs a certificate: privateKey=FILE and certKey=FILE, or certDir=DIR")
        if self.extra_chain is not None and self.cert is None:
            raise ValueError("extraCertChain= is the chain of certKey=: give certKey=FILE too")


class _Staple:
    """A DER OCSP response stapled to the handshakes of one certificate until
    its ``nextUpdate``; past it nothing is stapled, and that is logged once."""

    def __init__(self, path: str, der: bytes, next_update: datetime | None) -> None:
        self.path = path
        self.der = der
        self.next_update = next_update
        self.expired = False

    def current(self) -> bytes:
        if self.next_update is not None and datetime.now(UTC) >= self.next_update:
            if not self.expired:
                self.expired = True
                log.warn(
                    "OCSP response {path} expired at {when}: no longer stapled (replace it and send SIGHUP)",
                    path=self.path,
                    when=self.next_update.isoformat(),
                )
            return b""
        return self.der


def _staple_ocsp(_connection: SSL.Connection, staple: _Staple | None) -> bytes:
    """pyOpenSSL's OCSP server callback: the response to staple, or b"" for none.
    It runs after the server name callback, on the context chosen for the name."""
    try:
        return staple.current() if staple is not None else b""
    except Exception:  # an exception here would fail the handshake
        log.failure("Stapling an OCSP response failed")
        return b""


@dataclass
class _Certificate:
    """One certificate (and its key, chain, OCSP response) as a ready context."""

    #: The certificate file, as log lines name it.
    source: str
    #: The DNS names it serves, lower-case; wildcards as ``*.example.com``.
    names: tuple[str, ...]
    context: SSL.Context
    staple: _Staple | None
    #: Why its OCSP response file is not stapled ("" when there is none, or it is).
    ocsp_problem: str = ""

    def describe(self) -> str:
        names = ", ".join(self.names) or "no DNS name"
        ocsp = "; OCSP stapled" if self.staple is not None else ""
        return f"{self.source} ({names}{ocsp})"


class _CertificateSet:
    """The certificates of one load, and which serves a server name: an exact
    name first, then a wildcard for the name's first label, else the default.
    The first certificate to claim a name keeps it (the default first, then
    the directory's files in name order)."""

    def __init__(self, default: _Certificate, others: list[_Certificate]) -> None:
        self.default = default
        self.all = [default, *(c for c in others if c is not default)]
        self.exact: dict[str, _Certificate] = {}
        self.wildcard: dict[str, _Certificate] = {}
        for certificate in self.all:
            for name in certificate.names:
                if name.startswith("*."):
                    self.wildcard.setdefault(name[2:], certificate)
                else:
                    self.exact.setdefault(name, certificate)

    def by_source(self, source: str) -> _Certificate | None:
        return next((c for c in self.all if c.source == source), None)

    def choose(self, server_name: bytes | None) -> _Certificate:
        """The certificate for a client's SNI ``server_name`` (RFC 6066 §3: ASCII,
        no trailing dot, compared without case)."""
        if not server_name or len(server_name) > 253:
            return self.default
        try:
            name = server_name.decode("ascii").lower().rstrip(".")
        except UnicodeDecodeError:
            return self.default
        found = self.exact.get(name)
        if found is None:
            _label, dot, parent = name.partition(".")
            if dot and parent:
                found = self.wildcard.get(parent)
        return found if found is not None else self.default


@implementer(IOpenSSLServerConnectionCreator)
class ReloadableTLS:
    """Makes each new TLS connection from the certificates loaded last.

    The default certificate (``privateKey``/``certKey``) serves clients that
    send no server name or one no certificate has; each ``*.pem`` file of the
    ``certDir`` directory serves the DNS names in its subjectAltName (the
    common name without one), wildcards included: the client's SNI picks the
    context in OpenSSL's server name callback, before ALPN, the certificate
    and OCSP stapling are settled. Every context is made by the same code, so
    TLS versions, ciphers, options, ALPN and client-certificate checks are the
    same whatever the name. ``NAME.ocsp`` beside a certificate file ``NAME.pem``
    is a DER OCSP response to staple.

    :meth:`reload` reads the files again; connections made before keep the
    context they started with, so a reload drops nothing. A certificate that
    fails to load again (a missing file, a key that does not match) keeps its
    previous context and the reason is logged.

    :raises ValueError: (from the constructor) the files cannot be loaded.
    """

    def __init__(self, options: TLSOptions) -> None:
        self.options = options
        self.loads = 0
        self._set, _failures = self._load(None)
        self.loads = 1

    def describe(self, certificates: list[_Certificate] | None = None) -> str:
        """The certificates loaded (or those given): file, names, stapling; the default first."""
        chosen = self._set.all if certificates is None else certificates
        return "; ".join(("default " if c is self._set.default else "") + c.describe() for c in chosen)

    def announce(self) -> None:
        """Log, once when the listener starts, the certificates a listener with
        several or with OCSP responses serves, and why a response is not stapled."""
        certificates = self._set.all
        for certificate in certificates:
            if certificate.ocsp_problem:
                log.warn("{problem}", problem=certificate.ocsp_problem)
        if self.options.cert_dir is not None or any(c.staple is not None or c.ocsp_problem for c in certificates):
            log.info("TLS certificates: {certificates}", certificates=self.describe())

    def _load(self, previous: _CertificateSet | None) -> tuple[_CertificateSet, list[tuple[str, str, bool]]]:
        """Load every certificate; with ``previous`` (a reload), one that fails
        keeps its previous context and is listed as ``(source, why, kept)``.

        :raises ValueError: a certificate cannot be loaded at start-up, or none at all on a reload.
        """
        options = self.options
        failures: list[tuple[str, str, bool]] = []

        def build(key: str, cert: str, extra: str | None) -> _Certificate | None:
            try:
                return self._certificate(key, cert, extra)
            except ValueError as exc:
                if previous is None:
                    raise
                old = previous.by_source(cert)
                failures.append((cert, str(exc), old is not None))
                return old

        default = None
        if options.cert is not None:
            default = build(options.private_key or options.cert, options.cert, options.extra_chain)
        others: list[_Certificate] = []
        if options.cert_dir is not None:
            try:
                files = _certificate_files(options.cert_dir)
            except ValueError as exc:
                if previous is None:
                    raise
                failures.append((options.cert_dir, str(exc), True))
                others = [c for c in previous.all if c.source.startswith(os.path.join(options.cert_dir, ""))]
            else:
                for cert in files:
                    loaded = build(_key_beside(cert), cert, None)
                    if loaded is not None:
                        others.append(loaded)
        if default is None:
            if not others:
                raise ValueError(f"no certificate (NAME.pem) in {options.cert_dir!r}")
            default = others[0]
        return _CertificateSet(default, others), failures

    def _certificate(self, key_path: str, cert_path: str, extra_path: str | None) -> _Certificate:
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        options = self.options
        try:
            key_pem = _read(key_path)
            cert_pem = _read(cert_path)
            extra_pem = _read(extra_path) if extra_path else b""
        except OSError as exc:
            raise ValueError(f"cannot read TLS key or certificate: {exc}") from None
        certs = _CERT.findall(cert_pem)
        if not certs:
            raise ValueError(f"no PEM certificate in {cert_path!r}")
        if extra_path and not _CERT.findall(extra_pem):
            raise ValueError(f"no PEM certificate in {extra_path!r}")
        try:
            certificate = x509.load_pem_x509_certificate(certs[0])
            chain = [x509.load_pem_x509_certificate(pem) for pem in certs[1:] + _CERT.findall(extra_pem)]
            key = load_pem_private_key(key_pem, password=None)
        except ValueError as exc:
            raise ValueError(f"cannot load TLS key and certificate from {cert_path!r}: {exc}") from None
        except TypeError as exc:  # an encrypted key
            raise ValueError(f"cannot load TLS private key {key_path!r}: {exc}") from None
        context = SSL.Context(SSL.TLS_SERVER_METHOD)
        # Mozilla's "intermediate" server profile: TLS 1.2 and 1.3, forward-secret
        # AEAD suites only, the server's order, no compression (CRIME), no session
        # tickets (their keys would outlive a certificate reload) and no
        # renegotiation (client-initiated renegotiation costs the server a
        # handshake per request of the client's: a denial of service).
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.set_options(
            SSL.OP_NO_COMPRESSION
            | SSL.OP_CIPHER_SERVER_PREFERENCE
            | SSL.OP_NO_TICKET
            | SSL.OP_SINGLE_DH_USE
            | SSL.OP_NO_RENEGOTIATION
        )
        context.set_mode(SSL.MODE_RELEASE_BUFFERS)
        context.set_cipher_list(_CIPHERS)
        # TLS 1.3: Mozilla's order, AES-128-GCM first (OpenSSL's default puts
        # AES-256-GCM-SHA384 first, whose key schedule costs more per handshake).
        context.set_tls13_ciphersuites(_TLS13_SUITES)
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
            raise ValueError(f"cannot use TLS key and certificate {cert_path!r}: {exc}") from None
        # Needed for client certificates with resumed sessions (SSL_CTX_set_session_id_context(3)).
        context.set_session_id(b"twisted-asgi")
        context.set_alpn_select_callback(_select_alpn)
        if options.cert_dir is not None:
            # Only a listener with a directory has a certificate to choose (a
            # Python call per handshake otherwise saved).
            context.set_tlsext_servername_callback(self._server_name)
            # OpenSSL looks a TLS 1.2 session up before the server name callback,
            # and then reports the session's name, not the one the client sent:
            # a session made for one name would be resumed under another, which
            # RFC 6066 §3 forbids. Such a listener makes every handshake a full one.
            context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
        ocsp_path = os.path.splitext(cert_path)[0] + ".ocsp"
        staple, problem = _load_staple(ocsp_path, certificate, chain)
        if staple is not None:
            # Without a callback OpenSSL answers a status request with nothing.
            context.set_ocsp_server_callback(_staple_ocsp, staple)
        # The ASGI tls extension's server_cert, read when a handshake on this
        # context completes (tls_extension).
        context.set_app_data(certs[0].decode("ascii").replace("\r\n", "\n") + "\n")
        ocsp_problem = f"OCSP response {ocsp_path} not stapled: {problem}" if problem else ""
        return _Certificate(cert_path, _dns_names(certificate), context, staple, ocsp_problem)

    def _server_name(self, connection: SSL.Connection) -> None:
        """OpenSSL's server name callback (it runs for every ClientHello, with
        or without SNI): switch the connection to the certificate for the name."""
        try:
            chosen = self._set.choose(connection.get_servername())
            if connection.get_context() is not chosen.context:
                connection.set_context(chosen.context)
        except Exception:  # an exception here would fail the handshake: keep the default
            log.failure("Choosing a TLS certificate by server name failed")

    def reload(self) -> bool:
        """Load the files again for new connections; True when all of them loaded."""
        try:
            loaded, failures = self._load(self._set)
        except ValueError as exc:
            log.error("TLS reload failed, keeping the previous certificates: {error}", error=str(exc))
            return False
        for source, error, kept in failures:
            log.error(
                "TLS reload failed for {source}, {what}: {error}",
                source=source,
                what="keeping its previous certificate" if kept else "not served",
                error=error,
            )
        failed = {source for source, _error, _kept in failures}
        if all(c.source in failed for c in loaded.all):
            return False
        self._set = loaded
        self.loads += 1
        reloaded = [c for c in loaded.all if c.source not in failed]
        for certificate in reloaded:
            if certificate.ocsp_problem:
                log.warn("{problem}", problem=certificate.ocsp_problem)
        if len(loaded.all) == 1:
            log.info("Reloaded TLS certificate {cert}", cert=loaded.default.describe())
        else:
            log.info(
                "Reloaded TLS certificates: {certificates}{kept}",
                certificates=self.describe(reloaded),
                kept=f" (not reloaded, see above: {', '.join(sorted(failed))})" if failed else "",
            )
        return not failures

    def serverConnectionForTLS(self, tls_protocol: Any) -> SSL.Connection:
        """A new server-side OpenSSL connection, on the current default
        certificate until the client's server name picks one."""
        return SSL.Connection(self._set.default.context, None)


def _certificate_files(directory: str) -> list[str]:
    """The certificate files of a ``certDir``: ``*.pem`` in name order.

    :raises ValueError: the directory cannot be listed.
    """
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        raise ValueError(f"cannot list the certificate directory: {exc}") from None
    return [
        os.path.join(directory, name)
        for name in names
        if name.endswith(".pem") and not name.startswith(".") and os.path.isfile(os.path.join(directory, name))
    ]


def _key_beside(cert_path: str) -> str:
    """The private key of a ``certDir`` file: in the file itself, else ``NAME.key`` beside ``NAME.pem``."""
    try:
        if b"PRIVATE KEY-----" in _read(cert_path):
            return cert_path
    except OSError:
        return cert_path  # reported when the certificate is read
    beside = os.path.splitext(cert_path)[0] + ".key"
    return beside if os.path.exists(beside) else cert_path


def _dns_names(certificate: Any) -> tuple[str, ...]:
    """The DNS names a certificate serves: its subjectAltName's, or its common name without one."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = san.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = [a.value for a in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return tuple(dict.fromkeys(n.lower().rstrip(".") for n in names if isinstance(n, str) and n))


def _load_staple(path: str, certificate: Any, chain: list[Any]) -> tuple[_Staple | None, str]:
    """The OCSP response in ``path`` if it can be stapled, else why not ("" when
    there is no such file: stapling is not asked for).

    It must be a DER OCSP response whose status is successful, about this
    certificate (serial number and issuer name hash), saying "good", and
    current (thisUpdate not ahead by more than five minutes, nextUpdate not
    past). Its signature is the client's to check.
    """
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509 import ocsp

    try:
        der = _read(path)
    except FileNotFoundError:
        return None, ""
    except OSError as exc:
        return None, f"cannot read it: {exc.strerror or exc}"
    try:
        response = ocsp.load_der_ocsp_response(der)
    except ValueError as exc:
        return None, f"not a DER OCSP response ({exc})"
    if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        return None, f"its status is {response.response_status.name.lower()}, not successful"
    issuer_name = certificate.issuer.public_bytes()
    single = None
    for candidate in response.responses:
        if candidate.serial_number != certificate.serial_number:
            continue
        digest = hashes.Hash(candidate.hash_algorithm)
        digest.update(issuer_name)
        if digest.finalize() == candidate.issuer_name_hash:
            single = candidate
            break
    if single is None:
        return None, f"it is not about this certificate (serial {certificate.serial_number:x})"
    if single.certificate_status != ocsp.OCSPCertStatus.GOOD:
        return None, f"it says the certificate is {single.certificate_status.name.lower()}"
    now = datetime.now(UTC)
    if single.this_update_utc > now + timedelta(minutes=5):
        return None, f"it is not valid before {single.this_update_utc.isoformat()}"
    next_update = single.next_update_utc
    if next_update is not None and next_update <= now:
        return None, f"it expired at {next_update.isoformat()}"
    return _Staple(path, der, next_update), ""


#: Mozilla's "intermediate" TLS 1.2 suites (TLS 1.3 suites are OpenSSL's defaults).
_CIPHERS = (
    b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    b"ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    b"DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)


#: Mozilla's "intermediate" TLS 1.3 suites, in its order: AES-128-GCM (SHA-256) first.
#: (``OP_CIPHER_SERVER_PREFERENCE`` makes this order the choice for TLS 1.3 too.)
_TLS13_SUITES = b"TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"


def _select_alpn(connection: SSL.Connection, offered: list[bytes]) -> Any:
    """Pick the first protocol the server factory accepts that the client offered
    (RFC 7301 §3.2: the server's preference), or go on without ALPN."""
    tls_protocol = connection.get_app_data()
    factory = getattr(tls_protocol, "factory", None)
    if isinstance(factory, ServerTLSFactory):
        negotiation = factory.negotiation
    else:  # another TLS protocol over our context (Twisted's: a WrappingFactory)
        negotiation = IProtocolNegotiationFactory(getattr(factory, "wrappedFactory", None), None)
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
        tls = self.tls
        tls.announce()
        if _records.PROBLEM is not None:
            from ._upstream import say_off

            say_off(log, {"TLS record layer": _records.PROBLEM})
        tls_factory = ServerTLSFactory(tls, factory)
        return self.inner.listen(wrap(tls_factory) if wrap is not None else tls_factory)

    def reload(self) -> bool:
        """Reload this listener's certificates (see :meth:`ReloadableTLS.reload`)."""
        return self.tls.reload()


#: The most cleartext one TLS record carries (RFC 8446 §5.1).
_RECORD = 2**14
#: Per (class, the transport's interface declaration): a subclass of ours that
#: also declares the transport's interfaces (see ServerTLS.makeConnection).
_declared: dict[tuple[type, Any], type] = {}


def _declaring(cls: type, declaration: Any) -> type | None:
    found = _declared.get((cls, declaration))
    if found is None and len(_declared) < 64:
        made: Any = type(cls.__name__, (cls,), {"__module__": cls.__module__, "__qualname__": cls.__qualname__})
        declare: Any = classImplements  # (the zope mypy plugin wants a class statement)
        declare(made, *declaration)
        found = made
        _declared[(cls, declaration)] = found
    return found


@implementer(IPushProducer)
class _Membrane:
    """The producer registered with the TCP transport in place of the
    application's: the TLS layer pauses it too (cleartext waiting for the
    handshake), and a pause from either side is passed on once."""

    paused = False

    def __init__(self, producer: Any) -> None:
        self.producer = producer

    def pauseProducing(self) -> None:
        if not self.paused:
            self.paused = True
            self.producer.pauseProducing()

    def resumeProducing(self) -> None:
        if self.paused:
            self.paused = False
            self.producer.resumeProducing()

    def stopProducing(self) -> None:
        self.producer.stopProducing()


def _represents_eof(error: SSL.Error) -> bool:
    """Whether an OpenSSL error is the client closing TCP without close_notify."""
    if isinstance(error, SSL.SysCallError):
        reason = error.args[1] if len(error.args) > 1 else ""
    else:
        queue = error.args[0] if error.args else None
        if not queue:
            return True  # OpenSSL 3.x/4 on an unexpected EOF: an empty error queue
        try:
            reason = queue[-1][2]
        except (IndexError, TypeError):
            return False
    return str(reason).casefold().startswith("unexpected eof")


def _untraced(error: BaseException) -> Failure:
    """A Failure for ``error`` without its traceback (or its context's): the
    frames would hold the failure, this protocol and the channel in a cycle
    only the cycle collector frees. The type and message are kept."""
    seen: BaseException | None = error
    for _ in range(8):
        if seen is None:
            break
        seen.__traceback__ = None
        seen = seen.__context__ or seen.__cause__
    error.__context__ = None
    return Failure(error)


@implementer(IProtocol, ISSLTransport, INegotiated, ISystemHandle)
class ServerTLS:
    """The server side of one TLS connection: OpenSSL over memory BIOs between
    the TCP transport and the channel (whose transport it is).

    It does for a server what Twisted's ``TLSMemoryBIOProtocol`` (and
    ``BufferingTLSTransport``) do, with pyOpenSSL's and Twisted's public
    interfaces only, and less per connection: the transport's interfaces are
    declared once per transport class (a cached subclass, where Twisted calls
    ``directlyProvides`` per connection), no handshake step runs before the
    client has sent anything, the ASGI ``tls`` extension is filled when the
    handshake completes (no OpenSSL info callback on every handshake state),
    a close breaks every reference cycle (a closed connection is freed by
    reference counting on every Twisted release), and a write is encrypted at
    once: Twisted's ``BufferingTLSTransport`` holds writes for a loop pass to
    encrypt them together, which the channel's ``write_soon`` already does
    (one joined write per loop pass), so a response leaves one pass sooner.
    Records are read, written and drained through ``_upstream.openssl``: the
    OpenSSL calls pyOpenSSL makes, into one reused buffer, "nothing more"
    returned rather than raised (pyOpenSSL's public methods where that is off).

    Behaviour, as Twisted's: cleartext written before the handshake completes
    waits (the producer paused meanwhile); ``loseConnection`` sends what was
    written, then our close_notify; before the handshake completes it aborts
    instead. Unlike
    Twisted's, a close waits at most ``timeout_tls_close`` seconds for the
    client's close_notify (most clients never send one, RFC 8446 §6.1 does not
    make them): then the TCP connection is closed in the ordinary way (what is
    written is still sent first; ``timeout_send`` bounds that for a client
    that does not read). Every close path (keep-alive, timeouts, errors,
    WebSocket, HTTP/2, shutdown) goes through ``loseConnection``.
    """

    connected = False
    disconnecting = False
    #: Whether the TLS handshake has completed.
    handshake_done = False
    #: Whether the TLS layer is finished (close_notify or an error).
    tls_lost = False
    #: Whether ``abortConnection`` was called: no more data for the channel.
    aborted = False
    transport: Any = None
    #: The OpenSSL connection (None once closed).
    tls: SSL.Connection | None = None
    #: Why the TLS layer failed, for the channel's connectionLost.
    reason: Failure | None = None
    #: The registered producer, behind a membrane.
    producer: _Membrane | None = None
    #: The ASGI tls extension to fill when the handshake completes.
    extension: dict[str, Any] | None = None
    close_timer: Any = None

    def __init__(self, factory: ServerTLSFactory, wrapped: Any) -> None:
        self.factory = factory
        #: The protocol this one is the transport of (Twisted's name for it).
        self.wrappedProtocol = wrapped
        #: Cleartext waiting for the handshake (Twisted's ``_appSendBuffer``).
        self.unsent: list[bytes] = []

    # -- as the TCP transport's protocol ------------------------------------------------

    def makeConnection(self, transport: Any) -> None:
        declaration = providedBy(transport)
        cls = _declaring(type(self), declaration)
        if cls is not None:
            self.__class__ = cls
        else:
            directlyProvides(self, declaration)
        self.transport = transport
        #: How TLS records go to TCP (see :meth:`asgi_direct_tcp`).
        self.send_tcp: Callable[[bytes], None] = transport.write
        self.connected = True
        connection = self.factory.creator.serverConnectionForTLS(self)
        connection.set_accept_state()
        connection.set_app_data(self)  # for the ALPN callback (_select_alpn)
        self.tls = connection
        self.wrappedProtocol.makeConnection(self)

    def connectionMade(self) -> None:
        pass

    def dataReceived(self, data: bytes) -> None:
        tls = self.tls
        if tls is None:
            return
        _records.feed(tls, data)
        handshake_now = False
        if not self.handshake_done:
            if self.aborted:
                return
            try:
                tls.do_handshake()
            except SSL.WantReadError:
                self._flush_tls()
                return
            except SSL.Error as exc:
                self._tls_failed(exc)
                return
            self.handshake_done = True
            handshake_now = True
            extension, self.extension = self.extension, None
            if extension is not None:
                try:
                    _fill(extension, tls)
                except Exception:  # an error here must not break the connection
                    log.failure("Filling the ASGI tls extension failed")
        if self.unsent:
            self._send_unsent()
        self._receive()
        if handshake_now and self.tls is not None and not self.tls_lost:
            # The memory BIOs keep the room of the handshake's largest flight
            # in each direction (about 1.7 KiB with a P-256 certificate, more
            # with a chain) for the connection's life: start afresh, now that
            # both are drained (unless part of a record waits: then kept).
            # And the ALPN answer pyOpenSSL keeps (OpenSSL has copied it).
            _records.fresh_bios(self.tls)
            _records.forget_alpn_answer(self.tls)

    def _receive(self) -> None:
        """Decrypt what the receive BIO holds and hand it to the channel."""
        tls = self.tls
        recv = _records.recv
        while not self.tls_lost and tls is not None:
            try:
                data = recv(tls)
                if data is None:  # OpenSSL wants more bytes
                    break
            except SSL.ZeroReturnError:
                # The client's close_notify: answer it, then close TCP.
                self._shutdown_tls()
                self._tls_finished(None)
            except SSL.Error as exc:
                self._tls_failed(exc)
            else:
                if not self.aborted:
                    wrapped = self.wrappedProtocol
                    if wrapped is not None:
                        wrapped.dataReceived(data)
        self._flush_tls()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        timer, self.close_timer = self.close_timer, None
        if timer is not None:  # pending: it clears itself when it fires
            timer.cancel()
        tls = self.tls
        if not self.tls_lost and tls is not None:
            # TCP ended before the client's close_notify. Nothing is left to
            # decrypt: every dataReceived reads until OpenSSL wants more (or
            # drops the bytes after an abort), so what the receive BIO still
            # holds is at most part of a record, which OpenSSL would report as
            # an unexpected EOF. Say so without asking it (an OpenSSL error,
            # its error queue and two empty reads of the send BIO saved).
            self.tls_lost = True
            if self.reason is None:
                self.reason = Failure(ConnectionLost("Connection lost (no TLS close_notify)"))
        reason = self.reason or reason
        self.reason = None
        self.connected = False
        wrapped, self.wrappedProtocol = self.wrappedProtocol, None
        self.producer = None
        if wrapped is not None:
            wrapped.connectionLost(reason)
        if tls is not None:
            # The OpenSSL connection points back here (its app data): let go both ways.
            tls.set_app_data(None)
            self.tls = None
        self.unsent = []

    def logPrefix(self) -> str:
        wrapped = self.wrappedProtocol
        prefix = getattr(wrapped, "logPrefix", None)
        return f"{prefix() if prefix is not None else type(wrapped).__name__} (TLS)"

    # -- the OpenSSL connection ------------------------------------------------------------

    def _flush_tls(self) -> None:
        """Hand what OpenSSL wrote to its send BIO to the TCP transport."""
        tls = self.tls
        if tls is None:
            return
        drain = _records.drain
        while True:
            data = drain(tls)
            if not data:
                return
            self.send_tcp(data)
            if len(data) < _records.BUFFER:
                return

    def _shutdown_tls(self) -> None:
        """Send our close_notify (or answer the client's); once both sides
        have sent one (or before any handshake), close TCP."""
        tls = self.tls
        if tls is None:
            return
        try:
            done = tls.shutdown()
        except SSL.Error:
            done = False  # mid-handshake: OpenSSL wants to read first
        self._flush_tls()
        if done:
            self.transport.loseConnection()

    def _tls_finished(self, reason: Failure | None) -> None:
        """The TLS layer is over (``reason`` None: a clean close_notify):
        send what OpenSSL has (an alert) and close TCP."""
        if self.reason is None:
            self.reason = reason
        self.tls_lost = True
        self._flush_tls()
        self.transport.loseConnection()

    def _tls_failed(self, error: SSL.Error) -> None:
        # The error's traceback goes (its frames hold this protocol and the
        # channel: a cycle only the cycle collector would free).
        reason = _untraced(error)
        if _represents_eof(error):
            # A client that closed TCP without close_notify: a plain connection loss.
            reason = Failure(ConnectionLost("Connection lost (no TLS close_notify)"))
        self._tls_finished(reason)

    def _encrypt(self, data: bytes) -> None:
        """Encrypt cleartext and send it; before the handshake completes (or
        while earlier cleartext waits) it waits too."""
        if self.tls_lost:
            return
        tls = self.tls
        if tls is None:
            return
        if not self.handshake_done or self.unsent:
            self._hold_unsent(data)
            return
        size = len(data)
        if size <= _RECORD:  # one record: one call, its ciphertext returned
            try:
                sealed = _records.encrypt(tls, data)
            except SSL.WantReadError:
                self._hold_unsent(data)
                return
            except SSL.Error as exc:
                self._tls_failed(exc)
                return
            if sealed:
                self.send_tcp(sealed)
                if len(sealed) == _records.BUFFER:  # more was waiting in the send BIO
                    self._flush_tls()
            return
        send = _records.send
        done = 0
        while done < size:
            chunk = data[done : done + _RECORD]
            try:
                done += send(tls, chunk)
            except SSL.WantReadError:
                self._hold_unsent(data[done:])
                break
            except SSL.Error as exc:
                self._tls_failed(exc)
                break
            self._flush_tls()

    def _hold_unsent(self, data: bytes) -> None:
        self.unsent.append(data)
        if self.producer is not None:
            self.producer.pauseProducing()

    def _send_unsent(self) -> None:
        pending, self.unsent = self.unsent, []
        for data in pending:
            self._encrypt(data)
        if self.unsent:
            return
        if self.producer is not None:
            self.producer.resumeProducing()
        elif self.disconnecting:
            self._shutdown_tls()

    # -- as the channel's transport ----------------------------------------------------------

    def write(self, data: bytes) -> None:
        # Writes after loseConnection are dropped, unless a producer is still
        # registered (as Twisted's TLS transport does).
        if (self.disconnecting and self.producer is None) or self.tls is None:
            return
        self._encrypt(data)

    def writeSequence(self, data: Iterable[bytes]) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        if self.disconnecting or not self.connected:
            return
        if not self.handshake_done and not self.unsent:
            # Before the handshake completes OpenSSL cannot send close_notify
            # (it would wait for the handshake for ever): abort.
            self.abortConnection()
        self.disconnecting = True
        if not self.unsent and self.producer is None:
            self._shutdown_tls()
        timeout = self.factory.close_timeout
        if timeout and self.close_timer is None and self.connected:
            self.close_timer = self.factory.call_later(timeout, self._close_timed_out)

    def _close_timed_out(self) -> None:
        self.close_timer = None
        transport = self.transport
        if self.connected and transport is not None:
            transport.loseConnection()

    def abortConnection(self) -> None:
        self.aborted = True
        self.disconnecting = True
        self._shutdown_tls()
        self.transport.abortConnection()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        if not streaming:
            raise TypeError("ServerTLS takes streaming (push) producers only")
        if self.tls_lost:
            producer.stopProducing()
            return
        membrane = _Membrane(producer)
        self.transport.registerProducer(membrane, True)
        self.producer = membrane

    def unregisterProducer(self) -> None:
        if self.producer is None:
            return
        self.producer = None
        self.transport.unregisterProducer()
        if self.disconnecting and not self.unsent:
            self._shutdown_tls()

    def getPeer(self) -> Any:
        return self.transport.getPeer()

    def getHost(self) -> Any:
        return self.transport.getHost()

    def pauseProducing(self) -> None:
        self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self.transport.resumeProducing()

    def stopProducing(self) -> None:
        self.transport.stopProducing()

    def asgi_direct_tcp(self, make_writer: Callable[[Any], Callable[[bytes], None]]) -> None:
        """Send TLS records with ``make_writer(tcp_transport)`` instead of the
        TCP transport's ``write``: the channel lends its direct writer
        (``channel.direct_writer``), which sends straight to the socket while
        Twisted's buffer is empty, so a handshake flight, a response and
        close_notify leave at once instead of a loop pass later, without
        registering a writer with the event loop each time."""
        self.send_tcp = make_writer(self.transport)

    def asgi_tls_extension(self) -> dict[str, Any]:
        """The ASGI ``tls`` extension dict for this connection's scopes:
        filled now if the handshake is over, else in place when it completes
        (before any request can arrive)."""
        extension = unknown_tls_extension()
        tls = self.tls
        if tls is not None:
            if self.handshake_done:
                _fill(extension, tls)
            else:
                self.extension = extension
        return extension

    def getHandle(self) -> SSL.Connection | None:
        """The OpenSSL connection (``ISystemHandle``; None once closed)."""
        return self.tls

    def getPeerCertificate(self) -> Any:
        tls = self.tls
        return tls.get_peer_certificate() if tls is not None else None

    @property
    def negotiatedProtocol(self) -> bytes | None:
        """The protocol ALPN chose (``INegotiated``), or None."""
        tls = self.tls
        if tls is None:
            return None
        chosen: bytes = tls.get_alpn_proto_negotiated()
        return chosen or None

    def __getattr__(self, name: str) -> Any:
        # Anything else the TCP transport has (setTcpNoDelay, socket, ...).
        transport = self.__dict__.get("transport")
        if transport is None:
            raise AttributeError(name)
        return getattr(transport, name)


@implementer(IProtocolFactory, ILoggingContext)
class ServerTLSFactory:
    """Makes a :class:`ServerTLS` around each protocol of the wrapped server
    factory; the close bound (the wrapped factory's ``config.timeout_tls_close``)
    runs on its scheduler (``call_later``, the clock tests advance)."""

    noisy = False

    def __init__(self, creator: Any, wrapped: Any) -> None:
        #: Makes each OpenSSL connection (``IOpenSSLServerConnectionCreator``).
        self.creator = creator
        self.wrappedFactory = wrapped
        config = getattr(wrapped, "config", None)
        self.close_timeout: float = config.timeout_tls_close if config is not None else 0.0
        call_later = getattr(wrapped, "call_later", None)
        if call_later is None:
            from twisted.internet import reactor

            call_later = reactor.callLater
        self.call_later: Any = call_later
        #: What ALPN may choose (``IProtocolNegotiationFactory``), or None.
        self.negotiation: Any = IProtocolNegotiationFactory(wrapped, None)

    def buildProtocol(self, addr: Any) -> ServerTLS | None:
        protocol = self.wrappedFactory.buildProtocol(addr)
        if protocol is None:
            return None
        return ServerTLS(self, protocol)

    def doStart(self) -> None:
        self.wrappedFactory.doStart()

    def doStop(self) -> None:
        self.wrappedFactory.doStop()

    def logPrefix(self) -> str:
        prefix = getattr(self.wrappedFactory, "logPrefix", None)
        return f"{prefix() if prefix is not None else type(self.wrappedFactory).__name__} (TLS)"


# -- the ASGI "tls" extension ----------------------------------------------------------


def tls_extension(transport: Any) -> dict[str, Any]:
    """The ``scope["extensions"]["tls"]`` dict of a TLS connection.

    Scopes are prepared when the connection is made, before the handshake; the
    same dict is completed in place when the handshake finishes (which is
    before any request can arrive). Over a TLS transport that is not a
    :class:`ServerTLS`, it is filled only if its handshake is already over;
    the values the spec allows to be unknown stay None otherwise. (The
    channel asks :meth:`ServerTLS.asgi_tls_extension`.)
    """
    if isinstance(transport, ServerTLS):
        return transport.asgi_tls_extension()
    extension = unknown_tls_extension()
    connection = transport.getHandle() if hasattr(transport, "getHandle") else None
    if isinstance(connection, SSL.Connection) and connection.get_finished() is not None:
        _fill(extension, connection)
    return extension


def _fill(extension: dict[str, Any], connection: SSL.Connection) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    # Our contexts carry their certificate's PEM (set in ReloadableTLS._certificate).
    server_pem = connection.get_context().get_app_data()
    extension["server_cert"] = server_pem if isinstance(server_pem, str) else None
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
    "certDir",
    "extraCertChain",
    "dhParameters",
    "caCerts",
    "clientCert",
}


def ssl_endpoint(reactor: Any, args: list[str], kwargs: dict[str, str]) -> TLSServerEndpoint:
    """The endpoint for an ``ssl:`` description split into ``args`` and ``kwargs``.

    Twisted's keys (``port``, ``interface``, ``backlog``, ``privateKey``,
    ``certKey``, ``extraCertChain``, ``dhParameters``) mean what they mean
    there; ``certDir=DIR`` adds a certificate per ``*.pem`` file of DIR, chosen
    by the client's server name (SNI; see :class:`ReloadableTLS`), the first
    file being the default when ``privateKey``/``certKey`` are not given;
    ``caCerts`` and ``clientCert=none|optional|required`` ask for client
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
    private_key = kwargs.get("privateKey")
    cert = kwargs.get("certKey", private_key)
    if cert is None and "certDir" not in kwargs:
        private_key = cert = "server.pem"  # Twisted's default
    options = TLSOptions(
        private_key=private_key,
        cert=cert,
        extra_chain=kwargs.get("extraCertChain"),
        dh_parameters=kwargs.get("dhParameters"),
        ca_certs=kwargs.get("caCerts"),
        client_cert=kwargs.get("clientCert", "none"),
        cert_dir=kwargs.get("certDir"),
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
