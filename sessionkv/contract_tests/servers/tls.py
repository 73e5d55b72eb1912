"""Throw-away TLS material for test servers: a CA and a certificate it signed for
``127.0.0.1`` and ``localhost``, valid one day, as PEM files. Made with the
``cryptography`` package when installed (the ``test`` extra has it), else with the
``openssl`` command as one self-signed certificate that is its own CA."""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import subprocess
from dataclasses import dataclass

from . import unavailable

__all__ = ["TLSFiles", "make_test_certificates"]


@dataclass(frozen=True)
class TLSFiles:
    """PEM files: ``ca`` to trust, ``cert`` and ``key`` for the server."""

    ca: str
    cert: str
    key: str


def make_test_certificates(directory: str) -> TLSFiles:
    files = TLSFiles(*(os.path.join(directory, n) for n in ("ca.pem", "cert.pem", "key.pem")))
    try:
        _with_cryptography(files)
    except ImportError:
        _with_openssl(files)
    return files


def _with_openssl(files: TLSFiles) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        unavailable("making a test certificate needs the cryptography package or openssl")
        raise AssertionError("unreachable")
    args = [
        binary, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-days", "1", "-subj", "/CN=sessionkv test",
        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-keyout", files.key, "-out", files.cert,
    ]  # fmt: skip
    subprocess.run(args, check=True, capture_output=True, timeout=30)
    shutil.copyfile(files.cert, files.ca)  # self-signed: the certificate is its own CA


def _with_cryptography(files: TLSFiles) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def builder(
        subject: str, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sessionkv test CA")])
    ca = (
        builder("sessionkv test CA", ca_name, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        builder("127.0.0.1", ca_name, key.public_key())
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    with open(files.ca, "wb") as f:
        f.write(ca.public_bytes(pem))
    with open(files.cert, "wb") as f:
        f.write(cert.public_bytes(pem))
    with open(files.key, "wb") as f:
        f.write(
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
