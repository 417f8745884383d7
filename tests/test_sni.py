"""Several certificates on one ``ssl:`` listener (SNI) and OCSP stapling, end
to end: a running server, ``openssl s_client`` (``-servername``, ``-status``),
curl (``--resolve``, HTTP/1.1 and HTTP/2, ``--cert-status``), Python's ssl and
pyOpenSSL clients, hand-made ClientHellos, and testssl.sh.

Certificates and OCSP responses come from :mod:`tests.sni_pki` (a trustme CA,
``openssl ocsp`` as its responder)."""

from __future__ import annotations

import datetime
import json
import os
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import time

import pytest
import trustme
from cryptography import x509
from OpenSSL import SSL

from tests.deploy import serving
from tests.serving import recv_response
from tests.sni_pki import PKI, Leaf

APP = "tests.deploy:app"


@pytest.fixture
def pki(tmp_path):
    return PKI(tmp_path)


# -- clients -------------------------------------------------------------------------------


def s_client(server, pki: PKI, name: str | None, *extra: str) -> str:
    """What ``openssl s_client`` prints for a handshake with ``-servername name``
    (``-noservername`` for None), asking for an OCSP response and offering h2."""
    argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{server.port}", "-CAfile", str(pki.ca_path)]
    argv += ["-status", "-alpn", "h2,http/1.1", *extra]
    argv += ["-servername", name] if name is not None else ["-noservername"]
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    return result.stdout.decode("utf-8", "replace") + result.stderr.decode("utf-8", "replace")


def served(output: str) -> x509.Certificate:
    """The server certificate ``openssl s_client`` printed."""
    found = re.search(r"(?<=Server certificate\n)-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", output, re.S)
    assert found, output
    return x509.load_pem_x509_certificate(found.group(0).encode())


def stapled_serial(output: str) -> int | None:
    """The serial number the stapled OCSP response is about, or None when none was stapled."""
    if "OCSP response: no response sent" in output:
        return None
    assert "OCSP Response Status: successful (0x0)" in output, output
    assert "Cert Status: good" in output, output
    return int(re.search(r"Serial Number: ([0-9A-F]+)", output).group(1), 16)  # type: ignore[union-attr]


def curl(server, pki: PKI, host: str | None, *extra: str) -> tuple[dict, str]:
    """GET /scope with curl (``--resolve host`` to the server; by address, so
    without SNI, for None); returns the scope and the HTTP version curl used."""
    port = server.port
    argv = ["curl", "-sS", "--max-time", "30", "--cacert", str(pki.ca_path), "-w", "\n%{http_version}", *extra]
    if host is None:
        argv.append(f"https://127.0.0.1:{port}/scope")
    else:
        argv += ["--resolve", f"{host}:{port}:127.0.0.1", f"https://{host}:{port}/scope"]
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, (argv, result.stdout, result.stderr)
    body, _, version = result.stdout.rpartition("\n")
    return json.loads(body), version


def pem_of(leaf: Leaf) -> str:
    return leaf.pem.decode().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----"


def normalise(pem: str) -> str:
    return pem.replace("\r\n", "\n").strip()


def pyopenssl_handshake(server, name: bytes | None) -> x509.Certificate:
    """A pyOpenSSL client handshake sending ``name`` as is in its SNI
    (``set_tlsext_host_name`` takes any bytes); returns the server's certificate."""
    context = SSL.Context(SSL.TLS_CLIENT_METHOD)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.setblocking(False)
    connection = SSL.Connection(context, sock)
    try:
        if name is not None:
            connection.set_tlsext_host_name(name)
        connection.set_connect_state()
        deadline = time.monotonic() + 10
        while True:
            try:
                connection.do_handshake()
                break
            except SSL.WantReadError:
                left = deadline - time.monotonic()
                assert left > 0 and select.select([sock], [], [], left)[0], "no handshake in 10 s"
        cert = connection.get_peer_certificate(as_cryptography=True)
        assert cert is not None
        return cert
    finally:
        sock.close()


def client_hello(server_name: bytes) -> bytes:
    """A TLS 1.2 ClientHello record whose SNI extension carries ``server_name``
    unchecked (no client library sends a name over 255 bytes or with a NUL)."""
    entry = b"\x00" + len(server_name).to_bytes(2, "big") + server_name
    names = len(entry).to_bytes(2, "big") + entry
    groups = b"\x00\x1d\x00\x17"
    sigalgs = b"\x04\x03\x08\x04\x04\x01"
    extensions = (
        b"\x00\x00" + len(names).to_bytes(2, "big") + names
        + b"\x00\x0a" + (len(groups) + 2).to_bytes(2, "big") + len(groups).to_bytes(2, "big") + groups
        + b"\x00\x0b\x00\x02\x01\x00"
        + b"\x00\x0d" + (len(sigalgs) + 2).to_bytes(2, "big") + len(sigalgs).to_bytes(2, "big") + sigalgs
    )  # fmt: skip
    suites = b"\xc0\x2b\xc0\x2f"
    body = b"\x03\x03" + os.urandom(32) + b"\x00" + len(suites).to_bytes(2, "big") + suites + b"\x01\x00"
    body += len(extensions).to_bytes(2, "big") + extensions
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + len(handshake).to_bytes(2, "big") + handshake


def raw_certificate(server, hello: bytes) -> x509.Certificate | None:
    """Send ``hello`` (a TLS 1.2 ClientHello) and read the server's answer in
    clear: the certificate it sends, or None for an alert or a close."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(hello)
        buf, handshake = b"", b""
        while True:
            while len(buf) < 5 or len(buf) < 5 + int.from_bytes(buf[3:5], "big"):
                chunk = sock.recv(65536)
                if not chunk:
                    return None
                buf += chunk
            kind, length = buf[0], int.from_bytes(buf[3:5], "big")
            payload, buf = buf[5 : 5 + length], buf[5 + length :]
            if kind == 0x15:  # alert
                return None
            assert kind == 0x16, buf[:20]
            handshake += payload
            while len(handshake) >= 4 and len(handshake) >= 4 + int.from_bytes(handshake[1:4], "big"):
                message_type, size = handshake[0], int.from_bytes(handshake[1:4], "big")
                body, handshake = handshake[4 : 4 + size], handshake[4 + size :]
                if message_type == 11:  # Certificate: a 3-byte list length, then the first one's length
                    first = int.from_bytes(body[3:6], "big")
                    return x509.load_der_x509_certificate(body[6 : 6 + first])


# -- choosing a certificate by name ------------------------------------------------------------


def test_openssl_client_gets_the_certificate_for_its_server_name(pki):
    """s_client -servername a.test / b.test (key in b.test.key) / x.w.test (wildcard)
    gets that certificate, verified against the CA, with ALPN h2; a name in
    another case or with a trailing dot too; no SNI or an unknown name gets the default."""
    with serving(APP, endpoint=pki.endpoint()) as server:
        server.wait_for_output("TLS certificates: default")
        cases = [
            ("a.test", pki.a),
            ("b.test", pki.b),
            ("x.w.test", pki.wild),
            ("A.Test.", pki.a),
            ("w.test", pki.default),  # a wildcard covers one label, not its parent
            ("y.x.w.test", pki.default),  # nor two
            ("unknown.test", pki.default),
            (None, pki.default),
        ]
        for name, leaf in cases:
            output = s_client(server, pki, name)
            assert served(output).serial_number == leaf.cert.serial_number, (name, output)
            assert "Verify return code: 0 (ok)" in output, output
            assert "ALPN protocol: h2" in output, output
        # The certificate served for a.test is one a client checking the name accepts.
        output = s_client(server, pki, "a.test", "-verify_hostname", "a.test")
        assert "Verify return code: 0 (ok)" in output, output
        assert server.proc.poll() is None


def test_curl_over_http11_and_http2_for_two_names_and_none(pki):
    """curl --resolve for a.test and b.test, and by address without SNI, over
    HTTP/1.1 and HTTP/2: each verifies the certificate for its host, and the
    scope's tls extension names the certificate that was served."""
    with serving(APP, endpoint=pki.endpoint()) as server:
        for flag, version in (("--http1.1", "1.1"), ("--http2", "2")):
            for host, leaf in (("a.test", pki.a), ("b.test", pki.b), (None, pki.default)):
                scope, used = curl(server, pki, host, flag)
                assert used == version, (host, flag, used)
                assert scope["http_version"] == version
                assert scope["scheme"] == "https"
                assert normalise(scope["tls"]["server_cert"]) == normalise(pem_of(leaf)), host


def test_python_clients_keep_alive_and_websocket_on_the_chosen_certificate(pki):
    """Python's ssl with server_hostname: the keep-alive connection keeps its
    certificate over several requests; TLS 1.2 clients get the same choice; a
    wss:// connection to x.w.test gets the wildcard certificate in its scope."""
    from websockets.sync.client import connect

    context = ssl.create_default_context(cafile=str(pki.ca_path))
    with serving(APP, endpoint=pki.endpoint()) as server:
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        with connect(
            f"wss://x.w.test:{server.port}/ws", sock=raw, ssl=context, server_hostname="x.w.test", open_timeout=10
        ) as ws:
            scope = json.loads(ws.recv(timeout=10))
        assert scope["type"] == "websocket" and scope["scheme"] == "wss"
        assert normalise(scope["tls"]["server_cert"]) == normalise(pem_of(pki.wild))
        for maximum in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
            context.maximum_version = maximum
            raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            with context.wrap_socket(raw, server_hostname="b.test") as sock:
                for _ in range(3):
                    sock.sendall(b"GET /scope HTTP/1.1\r\nHost: b.test\r\n\r\n")
                    status, _headers, body = recv_response(sock)
                    assert b" 200 " in status
                    assert normalise(json.loads(body)["tls"]["server_cert"]) == normalise(pem_of(pki.b))
                assert x509.load_der_x509_certificate(sock.getpeercert(binary_form=True)) == pki.b.cert


def test_proxy_protocol_in_front_of_a_listener_with_names(pki):
    """proxy:ssl:...:certDir=...: the PROXY header is read in clear, then the
    handshake's server name picks the certificate; the scope has both."""
    context = ssl.create_default_context(cafile=str(pki.ca_path))
    with serving(APP, endpoint="proxy:" + pki.endpoint()) as server:
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        raw.sendall(b"PROXY TCP4 203.0.113.7 127.0.0.1 5555 443\r\n")
        with context.wrap_socket(raw, server_hostname="b.test") as sock:
            sock.sendall(b"GET /scope HTTP/1.1\r\nHost: b.test\r\n\r\n")
            status, _headers, body = recv_response(sock)
        assert b" 200 " in status
        scope = json.loads(body)
        assert scope["client"] == ["203.0.113.7", 5555]
        assert normalise(scope["tls"]["server_cert"]) == normalise(pem_of(pki.b))


def test_tls_settings_are_the_same_for_every_certificate(pki):
    """TLS 1.1 is refused whatever the name; client certificates are required
    for every name (the settings of the context the connection started on
    stay, and every context checks against the same CAs)."""
    client = pki.ca.issue_cert("alice@example.com", common_name="alice")
    client_path = pki.root / "client.pem"
    client.private_key_and_cert_chain_pem.write_to_path(str(client_path))
    endpoint = pki.endpoint(extra=f":caCerts={pki.ca_path}:clientCert=required")
    with serving(APP, endpoint=endpoint) as server:
        for name in ("a.test", "b.test", "x.w.test", "localhost"):
            old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            old.load_verify_locations(str(pki.ca_path))
            old.set_ciphers("ALL:@SECLEVEL=0")
            with pytest.warns(DeprecationWarning):
                old.minimum_version = ssl.TLSVersion.TLSv1_1
                old.maximum_version = ssl.TLSVersion.TLSv1_1
            with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
                with pytest.raises(ssl.SSLError) as info:
                    old.wrap_socket(raw, server_hostname=name)
                assert "PROTOCOL_VERSION" in str(info.value).upper()
            with_cert = ssl.create_default_context(cafile=str(pki.ca_path))
            with_cert.load_cert_chain(str(client_path))
            raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            with with_cert.wrap_socket(raw, server_hostname=name) as sock:
                sock.sendall(f"GET /scope HTTP/1.1\r\nHost: {name}\r\n\r\n".encode())
                status, _headers, body = recv_response(sock)
                assert b" 200 " in status
                assert "CN=alice" in json.loads(body)["tls"]["client_cert_name"]
            without = ssl.create_default_context(cafile=str(pki.ca_path))
            with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError, AssertionError)):
                raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
                with without.wrap_socket(raw, server_hostname=name) as sock:
                    # TLS 1.3: the server's refusal arrives after the client's handshake.
                    sock.sendall(b"GET /scope HTTP/1.1\r\nHost: x\r\n\r\n")
                    recv_response(sock)


def test_no_session_is_resumed_under_another_name(pki, tmp_path):
    """RFC 6066 §3: a TLS 1.2 session made for a.test must not be resumed with
    -servername b.test. OpenSSL looks sessions up before the name is known (it
    resumed such a session), so a listener with certDir= offers no session to
    resume: an empty session ID, nothing for s_client to save."""
    session = tmp_path / "session.pem"
    with serving(APP, endpoint=pki.endpoint()) as server:
        first = s_client(server, pki, "a.test", "-tls1_2", "-sess_out", str(session))
        assert "New, TLSv1.2" in first, first
        assert re.search(r"Session-ID: *\n", first), first
        assert not session.exists()


def test_certificate_directory_alone(pki):
    """certDir= without privateKey=: the first file in name order is the default."""
    with serving(APP, endpoint=pki.endpoint(default=False)) as server:
        server.wait_for_output(f"TLS certificates: default {pki.a.path} (a.test)")
        assert served(s_client(server, pki, None)).serial_number == pki.a.cert.serial_number
        assert served(s_client(server, pki, "b.test")).serial_number == pki.b.cert.serial_number


def test_bad_server_names_get_the_default_or_a_refusal(pki):
    """A non-ASCII name (Latin-1 or UTF-8 bytes, 200 of them too) or an empty one
    gets the default certificate; a name over 255 bytes or with a NUL byte is
    refused by OpenSSL with an alert; the server serves on."""
    with serving(APP, endpoint=pki.endpoint()) as server:
        for name in (b"caf\xc3\xa9.test", b"\xff" * 200, b"a.test\xff", b"x" * 250):
            cert = pyopenssl_handshake(server, name)
            assert cert.serial_number == pki.default.cert.serial_number, name
        assert pyopenssl_handshake(server, b"a.test").serial_number == pki.a.cert.serial_number
        for name in (b"x" * 300, b"a" * 65000, b"a.test\x00.evil"):
            assert raw_certificate(server, client_hello(name)) is None, name[:20]
        # The same hand-made ClientHello with a good name gets its certificate, with an empty one the default.
        assert raw_certificate(server, client_hello(b"a.test")).serial_number == pki.a.cert.serial_number  # type: ignore[union-attr]
        assert raw_certificate(server, client_hello(b"")).serial_number == pki.default.cert.serial_number  # type: ignore[union-attr]
        assert served(s_client(server, pki, "a.test")).serial_number == pki.a.cert.serial_number
        assert server.proc.poll() is None


# -- OCSP stapling ---------------------------------------------------------------------------------


def test_ocsp_response_is_stapled_for_its_certificate(pki):
    """a.test.ocsp (made by openssl ocsp) is stapled for a.test: s_client -status
    reads a successful, good response for a.test's serial; curl --cert-status
    accepts it; b.test, with none, gets no response and curl --cert-status fails."""
    pki.ocsp_by_openssl(pki.a)
    pki.ocsp_by_openssl(pki.default, out=pki.default.path.with_suffix(".ocsp"))
    with serving(APP, endpoint=pki.endpoint()) as server:
        server.wait_for_output(f"{pki.a.path} (a.test; OCSP stapled)")
        for maximum in ("-tls1_3", "-tls1_2"):
            assert stapled_serial(s_client(server, pki, "a.test", maximum)) == pki.a.cert.serial_number
            assert stapled_serial(s_client(server, pki, "b.test", maximum)) is None
            assert stapled_serial(s_client(server, pki, None, maximum)) == pki.default.cert.serial_number
        scope, version = curl(server, pki, "a.test", "--cert-status", "--http2")
        assert version == "2" and normalise(scope["tls"]["server_cert"]) == normalise(pem_of(pki.a))
        result = subprocess.run(
            ["curl", "-sS", "--max-time", "30", "--cacert", str(pki.ca_path), "--cert-status"]
            + ["--resolve", f"b.test:{server.port}:127.0.0.1", f"https://b.test:{server.port}/"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode != 0 and "no ocsp response" in result.stderr.lower(), result.stderr


def test_ocsp_stapling_on_a_listener_with_one_certificate(pki):
    """Without certDir=, server.ocsp beside privateKey=server.pem is stapled,
    and SIGHUP reloads it with the certificate."""
    ocsp_path = pki.ocsp_by_openssl(pki.default, out=pki.default.path.with_suffix(".ocsp"))
    endpoint = f"ssl:port=0:interface=127.0.0.1:privateKey={pki.default.path}"
    with serving(APP, endpoint=endpoint) as server:
        server.wait_for_output(f"TLS certificates: default {pki.default.path} (localhost; OCSP stapled)")
        for name in ("localhost", None):
            assert stapled_serial(s_client(server, pki, name)) == pki.default.cert.serial_number
        ocsp_path.write_bytes(b"")
        server.proc.send_signal(signal.SIGHUP)
        server.wait_for_output(f"OCSP response {ocsp_path} not stapled: not a DER OCSP response")
        server.wait_for_output(f"Reloaded TLS certificate {pki.default.path} (localhost)")
        assert stapled_serial(s_client(server, pki, "localhost")) is None


def test_unusable_ocsp_responses_are_not_stapled_and_logged_once(pki):
    """An expired response, a malformed file, a response about another
    certificate and one saying "revoked" are each logged once at start and
    never stapled; the handshakes succeed."""
    now = datetime.datetime.now(datetime.UTC)
    expired = pki.ocsp_by_builder(pki.a, now - datetime.timedelta(days=8), now - datetime.timedelta(days=1))
    pki.a.path.with_suffix(".ocsp").write_bytes(expired)
    pki.b.path.with_suffix(".ocsp").write_bytes(b"\x30\x03garbage")
    pki.ocsp_by_openssl(pki.a, out=pki.wild.path.with_suffix(".ocsp"))  # about a.test, beside wild.pem
    pki.ocsp_by_openssl(pki.default, status="R", out=pki.default.path.with_suffix(".ocsp"))
    with serving(APP, endpoint=pki.endpoint()) as server:
        output = server.wait_for_output("TLS certificates: default")
        for name in ("a.test", "b.test", "x.w.test", None, "a.test"):
            text = s_client(server, pki, name)
            assert "Verify return code: 0 (ok)" in text
            assert stapled_serial(text) is None, (name, text)
        output = server.read_output(0.3)
        reasons = {
            pki.a.path.with_suffix(".ocsp"): "it expired at",
            pki.b.path.with_suffix(".ocsp"): "not a DER OCSP response",
            pki.wild.path.with_suffix(".ocsp"): "it is not about this certificate",
            pki.default.path.with_suffix(".ocsp"): "it says the certificate is revoked",
        }
        for path, reason in reasons.items():
            assert output.count(f"OCSP response {path} not stapled: {reason}") == 1, output


def test_an_ocsp_response_that_expires_while_serving_is_dropped_and_logged_once():
    """The stapling callback checks nextUpdate on every handshake: past it,
    nothing is stapled and one warning says so."""
    from twisted.logger import globalLogPublisher

    from twisted_asgi.tls import _Staple, _staple_ocsp

    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        now = datetime.datetime.now(datetime.UTC)
        current = _Staple("a.ocsp", b"DER", now + datetime.timedelta(hours=1))
        past = _Staple("b.ocsp", b"DER", now - datetime.timedelta(seconds=1))
        forever = _Staple("c.ocsp", b"DER", None)
        for _ in range(3):
            assert _staple_ocsp(None, current) == b"DER"  # type: ignore[arg-type]
            assert _staple_ocsp(None, past) == b""  # type: ignore[arg-type]
            assert _staple_ocsp(None, forever) == b"DER"  # type: ignore[arg-type]
        assert _staple_ocsp(None, None) == b""  # type: ignore[arg-type]
    finally:
        globalLogPublisher.removeObserver(events)
    warnings = [e for e in events if "expired" in e.get("log_format", "")]
    assert len(warnings) == 1 and warnings[0]["path"] == "b.ocsp"


# -- SIGHUP -------------------------------------------------------------------------------------------


def test_sighup_replaces_certificates_and_ocsp_responses(pki):
    """Under a running server: a.test gets a new certificate and OCSP response,
    c.test.pem is added, b.test.pem removed; after SIGHUP one line names what
    was reloaded, new handshakes see all of it, and a connection opened before
    goes on with its old certificate."""
    pki.ocsp_by_openssl(pki.a)
    with serving(APP, endpoint=pki.endpoint()) as server:
        assert stapled_serial(s_client(server, pki, "a.test")) == pki.a.cert.serial_number
        context = ssl.create_default_context(cafile=str(pki.ca_path))
        kept = context.wrap_socket(
            socket.create_connection(("127.0.0.1", server.port), timeout=10), server_hostname="a.test"
        )
        new_a = pki.write("a.test.pem", pki.issue("a.test", common_name="a2.test"))
        pki.ocsp_by_openssl(new_a)
        c = pki.write("c.test.pem", pki.issue("c.test"))
        pki.b.path.unlink()
        server.proc.send_signal(signal.SIGHUP)
        output = server.wait_for_output("Reloaded TLS certificates: ")
        line = output[output.index("Reloaded TLS certificates: ") :].splitlines()[0]
        assert f"{new_a.path} (a.test; OCSP stapled)" in line and f"{c.path} (c.test)" in line
        assert "b.test" not in line
        output = s_client(server, pki, "a.test")
        assert served(output).serial_number == new_a.cert.serial_number
        assert stapled_serial(output) == new_a.cert.serial_number
        assert served(s_client(server, pki, "c.test")).serial_number == c.cert.serial_number
        assert served(s_client(server, pki, "b.test")).serial_number == pki.default.cert.serial_number
        with kept:
            kept.sendall(b"GET /scope HTTP/1.1\r\nHost: a.test\r\n\r\n")
            status, _headers, body = recv_response(kept)
            assert b" 200 " in status
            assert normalise(json.loads(body)["tls"]["server_cert"]) == normalise(pem_of(pki.a))
        # The response file removed: no longer stapled after the next SIGHUP.
        new_a.path.with_suffix(".ocsp").unlink()
        server.proc.send_signal(signal.SIGHUP)
        server.wait_for_output(f"{new_a.path} (a.test); ")
        assert stapled_serial(s_client(server, pki, "a.test")) is None


def test_a_broken_file_on_sighup_keeps_its_previous_certificate(pki):
    """a.test.pem overwritten with garbage and a broken new d.test.pem: SIGHUP
    logs why for each, a.test keeps its previous certificate, d.test is not
    served, and the other certificates are reloaded."""
    pki.ocsp_by_openssl(pki.a)
    with serving(APP, endpoint=pki.endpoint()) as server:
        pki.a.path.write_text("not a certificate")
        (pki.dir / "d.test.pem").write_bytes(pki.issue("d.test").pem)  # no key anywhere
        new_b = pki.write("b.test.pem", pki.issue("b.test", common_name="b2.test"), key_file=True)
        server.proc.send_signal(signal.SIGHUP)
        output = server.wait_for_output("Reloaded TLS certificates: ")
        assert f"TLS reload failed for {pki.a.path}, keeping its previous certificate: no PEM certificate" in output
        assert f"TLS reload failed for {pki.dir / 'd.test.pem'}, not served: " in output
        assert "not reloaded, see above" in output
        output = s_client(server, pki, "a.test")
        assert served(output).serial_number == pki.a.cert.serial_number
        assert stapled_serial(output) == pki.a.cert.serial_number
        assert served(s_client(server, pki, "d.test")).serial_number == pki.default.cert.serial_number
        assert served(s_client(server, pki, "b.test")).serial_number == new_b.cert.serial_number
        # The default certificate broken too, and then repaired.
        saved = pki.default.path.read_bytes()
        pki.default.path.write_text("")
        server.proc.send_signal(signal.SIGHUP)
        server.wait_for_output(f"TLS reload failed for {pki.default.path}, keeping its previous certificate")
        assert served(s_client(server, pki, None)).serial_number == pki.default.cert.serial_number
        pki.default.path.write_bytes(saved)
        pki.write("a.test.pem", pki.a)
        before = server.read_output().count("Reloaded TLS certificates: ")
        server.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while server.read_output(0.1).count("Reloaded TLS certificates: ") == before:
            assert time.monotonic() < deadline, server.read_output()
        assert server.proc.poll() is None


# -- start-up errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setup", "endpoint_extra", "message"),
    [
        ("missing", "", "cannot list the certificate directory"),
        ("empty", "", "no certificate (NAME.pem) in"),
        ("broken", "", "no PEM certificate in"),
        ("nokey", "", "cannot load TLS"),
    ],
)
def test_unusable_certificate_directory_stops_start_up(tmp_path, setup, endpoint_extra, message):
    """A certDir that cannot be listed, has no NAME.pem, or holds a broken file
    stops the server before it listens, with the reason on one line."""
    from tests.serving import start_server

    directory = tmp_path / "certs"
    if setup != "missing":
        directory.mkdir()
    if setup == "broken":
        (directory / "a.test.pem").write_text("junk")
    if setup == "nokey":
        leaf = trustme.CA().issue_cert("a.test")
        leaf.cert_chain_pems[0].write_to_path(str(directory / "a.test.pem"))
    server = start_server(
        APP, endpoint=f"ssl:port=0:interface=127.0.0.1:certDir={directory}{endpoint_extra}", wait=False
    )
    try:
        assert server.proc.wait(60) != 0
    finally:
        server.stop()
    output = "".join(server.output)
    assert message in output, output
    assert "Listening on" not in output


def test_certificate_directory_with_workers(pki):
    """--workers 2 with certDir: every worker serves each name's certificate."""
    with serving(APP, "--workers", "2", endpoint=pki.endpoint()) as server:
        pids = set()
        deadline = time.monotonic() + 30
        while len(pids) < 2 and time.monotonic() < deadline:
            scope, _version = curl(server, pki, "b.test")
            assert normalise(scope["tls"]["server_cert"]) == normalise(pem_of(pki.b))
            pids.add(scope["pid"])
        assert len(pids) == 2


# -- testssl.sh ----------------------------------------------------------------------------------------


TESTSSL = shutil.which("testssl") or shutil.which("testssl.sh")

#: testssl findings about what the test CA puts in its certificates, not about
#: the server: trustme's certificates are valid for 1000 years and name no CRL
#: or OCSP URI, and a.test has no DNS (CAA) record.
TEST_CA_FINDINGS = {"cert_validityPeriod", "cert_revocation", "DNS_CAArecord"}


def test_testssl_finds_no_vulnerability_and_ocsp_stapling(pki, tmp_path):
    """testssl.sh's vulnerability checks (-U) and server defaults (-S) against
    the listener, by the name a.test (an RSA certificate with an OCSP response),
    loopback only: every finding is OK or INFO (but those about the test CA's
    certificates), each vulnerability check ran, and OCSP stapling is offered."""
    assert TESTSSL is not None, "testssl.sh is not installed (apt-get install -y testssl.sh)"
    pki.a = pki.write("a.test.pem", pki.issue("a.test", key_type=trustme.KeyType.RSA))
    pki.ocsp_by_openssl(pki.a)
    report = tmp_path / "testssl.json"
    with serving(APP, endpoint=pki.endpoint()) as server:
        result = subprocess.run(
            [TESTSSL, "-U", "-S", "--jsonfile", str(report), "--ip", "127.0.0.1", "--add-ca", str(pki.ca_path)]
            + ["--warnings", "off", "--quiet", "--color", "0", "--connect-timeout", "10", "--openssl-timeout", "10"]
            + [f"a.test:{server.port}"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=400,
        )
        assert server.proc.poll() is None
    findings = {f["id"]: f for f in json.loads(report.read_text())}
    vulnerabilities = [
        "heartbleed", "CCS", "ticketbleed", "ROBOT", "secure_renego", "secure_client_renego", "CRIME_TLS",
        "BREACH", "POODLE_SSL", "fallback_SCSV", "SWEET32", "FREAK", "DROWN", "LOGJAM", "BEAST", "LUCKY13", "RC4",
    ]  # fmt: skip
    missing = [name for name in vulnerabilities if name not in findings]
    assert missing == [], (missing, result.stdout[-3000:])
    # The vulnerability checks must all have run and passed; elsewhere a WARN is
    # testssl's own trouble (e.g. "check failed because of connect problem" on a
    # busy machine), but any LOW to CRITICAL finding fails the test.
    bad = {
        key: (finding["severity"], finding["finding"])
        for key, finding in findings.items()
        if key not in TEST_CA_FINDINGS
        and finding["severity"] not in ("OK", "INFO")
        and (key in vulnerabilities or finding["severity"] != "WARN")
    }
    assert bad == {}, bad
    assert findings["OCSP_stapling"]["finding"] == "offered"
    assert findings["cert_subjectAltName"]["finding"] == "a.test"
    assert findings["cert_chain_of_trust"]["severity"] == "OK"
