"""Certificates and OCSP responses for the SNI and OCSP stapling tests.

A test CA (trustme, a root and the intermediate that issues: clients such as
curl's ``--cert-status`` look for the OCSP response's issuer in the chain the
server sends) issues a default certificate (``localhost``, 127.0.0.1)
and one per name in a ``certs/`` directory laid out as ``certDir=`` reads it:
``a.test.pem`` (key and chain in one file), ``b.test.pem`` with its key in
``b.test.key``, ``wild.pem`` for ``*.w.test``. OCSP responses are made by
``openssl ocsp`` acting as the CA's responder (a real signed response), or,
for dates ``openssl ocsp`` cannot write (an expired one), by cryptography's
OCSP builder signed with the CA key.
"""

from __future__ import annotations

import datetime
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp


@dataclass
class Leaf:
    """One issued certificate and where its files are."""

    names: tuple[str, ...]
    cert: x509.Certificate
    pem: bytes
    key_pem: bytes
    path: Path = field(default=Path())

    @property
    def common_name(self) -> str:
        return self.cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value  # type: ignore[return-value]


class PKI:
    """A CA, a default certificate and a certificate directory under ``root``."""

    def __init__(self, root: Path, key_type: trustme.KeyType = trustme.KeyType.ECDSA) -> None:
        self.root = root
        self.dir = root / "certs"
        self.dir.mkdir()
        self.root_ca = trustme.CA()
        self.ca = self.root_ca.create_child_ca()
        #: What clients trust: the root.
        self.ca_path = root / "ca.pem"
        self.root_ca.cert_pem.write_to_path(str(self.ca_path))
        #: The issuer of every leaf, and the OCSP responder.
        self.issuer_path = root / "issuer.pem"
        self.ca.cert_pem.write_to_path(str(self.issuer_path))
        self.ca_cert = x509.load_pem_x509_certificate(self.ca.cert_pem.bytes())
        self.ca_key_path = root / "ca.key"
        self.ca.private_key_pem.write_to_path(str(self.ca_key_path))
        self.default = self.issue("localhost", "127.0.0.1", common_name="default.localhost")
        self.default.path = root / "server.pem"
        self.default.path.write_bytes(self.default.key_pem + self.default.pem)
        self.a = self.write("a.test.pem", self.issue("a.test", key_type=key_type))
        self.b = self.write("b.test.pem", self.issue("b.test"), key_file=True)
        self.wild = self.write("wild.pem", self.issue("*.w.test"))

    def issue(self, *names: str, common_name: str | None = None, key_type: trustme.KeyType | None = None) -> Leaf:
        cert = self.ca.issue_cert(
            *names, common_name=common_name or names[0], key_type=key_type or trustme.KeyType.ECDSA
        )
        pem = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
        return Leaf(names, x509.load_pem_x509_certificate(pem), pem, cert.private_key_pem.bytes())

    def write(self, filename: str, leaf: Leaf, key_file: bool = False) -> Leaf:
        """Put ``leaf`` in the certificate directory as ``filename`` (its key
        inside, or in ``NAME.key`` beside with ``key_file``)."""
        leaf.path = self.dir / filename
        if key_file:
            leaf.path.with_suffix(".key").write_bytes(leaf.key_pem)
            leaf.path.write_bytes(leaf.pem)
        else:
            leaf.path.write_bytes(leaf.key_pem + leaf.pem)
        return leaf

    def endpoint(self, default: bool = True, extra: str = "") -> str:
        keys = f":privateKey={self.default.path}" if default else ""
        return f"ssl:port=0:interface=127.0.0.1{keys}:certDir={self.dir}{extra}"

    def ocsp_by_openssl(self, leaf: Leaf, status: str = "V", out: Path | None = None) -> Path:
        """A real response from ``openssl ocsp`` as the CA's responder (``status``
        is the index's V valid or R revoked), written to ``NAME.ocsp`` beside
        the leaf's file (or ``out``)."""
        work = self.root / f"ocsp-{leaf.cert.serial_number:x}"
        work.mkdir(exist_ok=True)
        leaf_path = work / "leaf.pem"
        leaf_path.write_bytes(leaf.cert.public_bytes(serialization.Encoding.PEM))
        revoked = "261201000000Z" if status == "R" else ""
        (work / "index.txt").write_text(
            f"{status}\t300101000000Z\t{revoked}\t{leaf.cert.serial_number:X}\tunknown\t/CN={leaf.common_name}\n"
        )
        request = work / "request.der"
        target = out or leaf.path.with_suffix(".ocsp")
        run = {"check": True, "capture_output": True, "timeout": 60}
        subprocess.run(
            ["openssl", "ocsp", "-issuer", self.issuer_path, "-cert", leaf_path, "-reqout", request, "-no_nonce"], **run
        )
        subprocess.run(
            [
                "openssl", "ocsp", "-index", work / "index.txt", "-CA", self.issuer_path, "-rsigner", self.issuer_path,
                "-rkey", self.ca_key_path, "-reqin", request, "-respout", target, "-ndays", "7",
            ],
            **run,
        )  # fmt: skip
        return target

    def ocsp_by_builder(self, leaf: Leaf, this_update: datetime.datetime, next_update: datetime.datetime) -> bytes:
        """A signed "good" response with the given dates (``openssl ocsp`` cannot backdate)."""
        key = serialization.load_pem_private_key(self.ca.private_key_pem.bytes(), password=None)
        builder = (
            ocsp.OCSPResponseBuilder()
            .add_response(
                cert=leaf.cert,
                issuer=self.ca_cert,
                algorithm=hashes.SHA1(),
                cert_status=ocsp.OCSPCertStatus.GOOD,
                this_update=this_update,
                next_update=next_update,
                revocation_time=None,
                revocation_reason=None,
            )
            .responder_id(ocsp.OCSPResponderEncoding.HASH, self.ca_cert)
        )
        return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)  # type: ignore[arg-type]
