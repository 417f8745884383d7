"""TLS listeners end to end: the ASGI ``tls`` extension, client certificates,
and certificate reload on SIGHUP without dropping connections. Certificates
are made per run with trustme; clients are Python's ssl module and websockets."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import ssl
import subprocess
import warnings

import pytest
import trustme
from cryptography import x509

from tests.deploy import make_certs, serving, wait_for
from tests.serving import recv_response

APP = "tests.deploy:app"


@pytest.fixture
def certs(tmp_path):
    return make_certs(tmp_path)


def ssl_endpoint(certs, extra=""):
    return f"ssl:port=0:interface=127.0.0.1:privateKey={certs['key']}:certKey={certs['cert']}{extra}"


def client_context(ca, cert=None, maximum=None):
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(str(cert))
    if maximum is not None:
        context.maximum_version = maximum
    return context


def tls_get(server, context, sock=None, target="/scope"):
    """GET ``target`` over TLS (on ``sock`` if given, kept open); returns (scope, socket)."""
    if sock is None:
        raw = socket.create_connection((server.host, server.port), timeout=10)
        try:
            sock = context.wrap_socket(raw, server_hostname="localhost")
        except BaseException:
            raw.close()
            raise
    try:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        status, _headers, body = recv_response(sock)
    except BaseException:
        sock.close()
        raise
    assert b" 200 " in status, (status, body)
    return json.loads(body), sock


def iana_id(cipher_name: str) -> int:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.set_ciphers("ALL:@SECLEVEL=0")
    return next(c["id"] & 0xFFFF for c in context.get_ciphers() if c["name"] == cipher_name)


def normalise(pem: str) -> str:
    return pem.replace("\r\n", "\n").strip()


def test_tls_extension_without_client_certificate(certs):
    """Over TLS 1.3 the scope's tls extension has the server certificate, version 0x0304 and the suite's number."""
    with serving(APP, endpoint=ssl_endpoint(certs)) as server:
        scope, sock = tls_get(server, client_context(certs["ca"]))
        cipher = sock.cipher()[0]
        sock.close()
        assert scope["scheme"] == "https"
        tls = scope["tls"]
        assert normalise(tls["server_cert"]) == normalise(certs["server_cert_pem"].decode())
        assert tls["client_cert_chain"] == []
        assert tls["client_cert_name"] is None
        assert tls["client_cert_error"] is None
        assert tls["tls_version"] == 0x0304
        assert tls["cipher_suite"] == iana_id(cipher)
        assert tls["cipher_suite"] in (0x1301, 0x1302, 0x1303)


def test_tls_13_suites_in_mozillas_order(certs):
    """TLS 1.3 suites are Mozilla's intermediate ones in its order, the server's
    choice: AES-128-GCM (SHA-256, a cheaper handshake than SHA-384's key
    schedule) for a client that lists AES-256 first, as Python's and OpenSSL's
    do; a client offering only another of the three gets it; one offering none
    of them (AES-128-CCM) is refused."""
    with serving(APP, endpoint=ssl_endpoint(certs)) as server:
        scope, sock = tls_get(server, client_context(certs["ca"]))
        cipher = sock.cipher()[0]
        sock.close()
        assert cipher == "TLS_AES_128_GCM_SHA256"
        assert scope["tls"]["cipher_suite"] == 0x1301

        def s_client(suites: str) -> str:
            argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{server.port}", "-CAfile", str(certs["ca"])]
            argv += ["-tls1_3", "-ciphersuites", suites, "-servername", "localhost"]
            result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
            return result.stdout.decode("utf-8", "replace") + result.stderr.decode("utf-8", "replace")

        out = s_client("TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256")
        assert re.search(r"Cipher is TLS_AES_128_GCM_SHA256\b", out), out
        for only in ("TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"):
            out = s_client(only)
            assert re.search(rf"Cipher is {only}\b", out), out
        out = s_client("TLS_AES_128_CCM_SHA256")
        assert "Cipher is (NONE)" in out and "alert handshake failure" in out, out


def test_tls_13_session_tickets_resume(certs, tmp_path):
    """A TLS 1.3 client gets its session tickets with the handshake and resumes
    with one on its next connection (openssl s_client -sess_out, -sess_in),
    and both connections are answered."""
    session = tmp_path / "session.pem"
    said = []
    with serving(APP, endpoint=ssl_endpoint(certs)) as server:
        for option in ("-sess_out", "-sess_in"):
            argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{server.port}", "-CAfile", str(certs["ca"])]
            argv += ["-tls1_3", "-servername", "localhost", "-ign_eof", option, str(session)]
            request = b"GET /scope HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            result = subprocess.run(argv, input=request, capture_output=True, timeout=60)
            said.append(result.stdout.decode("utf-8", "replace"))
            assert "HTTP/1.1 200" in said[-1], said[-1]
    assert "New, TLSv1.3" in said[0] and "Post-Handshake New Session Ticket arrived" in said[0], said[0]
    assert "Reused, TLSv1.3" in said[1], said[1]


def test_tls_12_version_and_suite(certs):
    """A TLS 1.2 client is reported as 0x0303 with its forward-secret AEAD suite's IANA number."""
    with serving(APP, endpoint=ssl_endpoint(certs)) as server:
        scope, sock = tls_get(server, client_context(certs["ca"], maximum=ssl.TLSVersion.TLSv1_2))
        cipher = sock.cipher()[0]
        sock.close()
        assert scope["tls"]["tls_version"] == 0x0303
        assert scope["tls"]["cipher_suite"] == iana_id(cipher)
        assert cipher.startswith("ECDHE-")


def test_tls_11_is_refused(certs):
    """A client limited to TLS 1.1 is refused by the server with a protocol-version alert."""
    with serving(APP, endpoint=ssl_endpoint(certs)) as server:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(str(certs["ca"]))
        with warnings.catch_warnings():
            # Python deprecates TLS 1.1 for its own use; here it plays an old client.
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.TLSv1_1
            context.maximum_version = ssl.TLSVersion.TLSv1_1
        context.set_ciphers("ALL:@SECLEVEL=0")
        with (
            socket.create_connection((server.host, server.port), timeout=10) as raw,
            pytest.raises(ssl.SSLError) as info,
        ):
            context.wrap_socket(raw, server_hostname="localhost")
        assert "PROTOCOL_VERSION" in str(info.value).upper()


def test_plain_connections_have_no_tls_extension(certs):
    """A cleartext connection's scope has no tls extension (the spec forbids it there)."""
    from tests.deploy import get_json

    with serving(APP) as server:
        scope = get_json(server.host, server.port)
        assert "tls" not in scope["extension_names"]
        assert scope["scheme"] == "http"


def test_optional_client_certificate(certs):
    """With clientCert=optional a client certificate appears as the chain and RFC 4514 name; none is fine too."""
    with serving(APP, endpoint=ssl_endpoint(certs, f":caCerts={certs['ca']}:clientCert=optional")) as server:
        scope, sock = tls_get(server, client_context(certs["ca"], cert=certs["client"]))
        sock.close()
        tls = scope["tls"]
        pem = certs["client"].read_bytes()
        client_cert = x509.load_pem_x509_certificate(pem)
        assert x509.load_pem_x509_certificate(tls["client_cert_chain"][0].encode()) == client_cert
        assert tls["client_cert_name"] == client_cert.subject.rfc4514_string()
        assert "CN=alice" in tls["client_cert_name"]
        assert tls["client_cert_error"] is None
        scope, sock = tls_get(server, client_context(certs["ca"]))
        sock.close()
        assert scope["tls"]["client_cert_chain"] == [] and scope["tls"]["client_cert_name"] is None


def test_required_client_certificate(certs, tmp_path):
    """With clientCert=required, no certificate or one from another CA fails the handshake."""
    with serving(APP, endpoint=ssl_endpoint(certs, f":caCerts={certs['ca']}:clientCert=required")) as server:
        scope, sock = tls_get(server, client_context(certs["ca"], cert=certs["client"]))
        sock.close()
        assert "CN=alice" in scope["tls"]["client_cert_name"]
        other = trustme.CA().issue_cert("mallory@example.com")
        other_path = tmp_path / "mallory.pem"
        other.private_key_and_cert_chain_pem.write_to_path(str(other_path))
        for cert in (None, other_path):
            with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError, AssertionError)):
                tls_get(server, client_context(certs["ca"], cert=cert))


def test_websocket_scope_carries_the_tls_extension(certs):
    """A wss:// connection's websocket scope has the same tls extension as http scopes."""
    from websockets.sync.client import connect

    with serving(APP, endpoint=ssl_endpoint(certs, f":caCerts={certs['ca']}:clientCert=optional")) as server:
        context = client_context(certs["ca"], cert=certs["client"])
        with connect(f"wss://localhost:{server.port}/ws", ssl=context, open_timeout=10) as ws:
            scope = json.loads(ws.recv(timeout=10))
        assert scope["type"] == "websocket" and scope["scheme"] == "wss"
        assert scope["tls"]["tls_version"] == 0x0304
        assert "CN=alice" in scope["tls"]["client_cert_name"]


def test_sighup_reloads_certificates_without_dropping_connections(certs, tmp_path):
    """After SIGHUP new connections get the new certificate while an open keep-alive connection goes on."""
    live_key, live_cert = tmp_path / "live.key", tmp_path / "live.pem"
    shutil.copy(certs["key"], live_key)
    shutil.copy(certs["cert"], live_cert)
    with serving(APP, endpoint=f"ssl:port=0:interface=127.0.0.1:privateKey={live_key}:certKey={live_cert}") as server:
        old_context = client_context(certs["ca"])
        scope, kept = tls_get(server, old_context)
        assert normalise(scope["tls"]["server_cert"]) == normalise(certs["server_cert_pem"].decode())
        new_ca = trustme.CA()
        new = new_ca.issue_cert("localhost", "127.0.0.1")
        new_ca_path = tmp_path / "new-ca.pem"
        new_ca.cert_pem.write_to_path(str(new_ca_path))
        new.private_key_pem.write_to_path(str(live_key))
        new.cert_chain_pems[0].write_to_path(str(live_cert))
        server.proc.send_signal(signal.SIGHUP)
        server.wait_for_output("Reloaded TLS certificate")
        scope, fresh = tls_get(server, client_context(new_ca_path))
        fresh.close()
        assert normalise(scope["tls"]["server_cert"]) == normalise(new.cert_chain_pems[0].bytes().decode())
        # The connection made before the reload still works, with its old certificate.
        scope, kept = tls_get(server, old_context, sock=kept)
        assert normalise(scope["tls"]["server_cert"]) == normalise(certs["server_cert_pem"].decode())
        kept.close()
        # And the old CA no longer verifies new connections.
        with pytest.raises(ssl.SSLCertVerificationError):
            tls_get(server, old_context)
        assert server.proc.poll() is None


def test_failed_reload_keeps_the_old_certificate(certs, tmp_path):
    """A reload with a broken key file logs why and keeps serving the previous certificate."""
    live_key = tmp_path / "live.key"
    shutil.copy(certs["key"], live_key)
    with serving(
        APP, endpoint=f"ssl:port=0:interface=127.0.0.1:privateKey={live_key}:certKey={certs['cert']}"
    ) as server:
        live_key.write_text("not a key")
        server.proc.send_signal(signal.SIGHUP)
        server.wait_for_output("TLS reload failed")
        scope, sock = tls_get(server, client_context(certs["ca"]))
        sock.close()
        assert scope["tls"]["tls_version"] == 0x0304
        wait_for(lambda: server.proc.poll() is None, 1, "server alive")


def test_ipv6_interface(certs):
    """ssl: with an IPv6 interface (escaped colons) listens on an IPv6 socket and serves TLS there."""
    endpoint = f"ssl:port=0:interface=\\:\\:1:privateKey={certs['key']}:certKey={certs['cert']}"
    with serving(APP, endpoint=endpoint) as server:
        assert server.host == "::1"
        raw = socket.create_connection(("::1", server.port), timeout=10)
        sock = client_context(certs["ca"]).wrap_socket(raw, server_hostname="localhost")
        scope, sock = tls_get(server, None, sock=sock)
        sock.close()
        assert scope["scheme"] == "https"
        assert scope["client"][0] == "::1"
