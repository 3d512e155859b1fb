"""A self-signed serving certificate, for when the lab API must speak HTTPS.

kubectl (client-go) only sends a kubeconfig's bearer token over TLS, so a kubectl that should talk
to the lab needs the server started with a `ServingCertificate` and a kubeconfig that carries its
certificate as the cluster's certificate authority. The key never touches the disk for longer than
it takes `ssl` to load it.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class ServingCertificate:
    """A PEM certificate (self-signed, or issued by the lab's CA) and its private key."""

    cert_pem: bytes
    key_pem: bytes

    @classmethod
    def from_files(cls, cert: str | os.PathLike[str], key: str | os.PathLike[str]) -> ServingCertificate:
        """A certificate and key issued elsewhere (the lab's CA), read from PEM files."""
        return cls(cert_pem=Path(cert).read_bytes(), key_pem=Path(key).read_bytes())

    @classmethod
    def self_signed(cls, hosts: Sequence[str] = ("127.0.0.1", "localhost"), *, days: int = 7) -> ServingCertificate:
        """A fresh P-256 key and a self-signed certificate valid for `hosts` (IPs or DNS names)."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubereach-lab-apiserver")])
        alt_names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                alt_names.append(x509.DNSName(host))
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(
            cert_pem=cert.public_bytes(serialization.Encoding.PEM),
            key_pem=key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )

    def server_context(self) -> ssl.SSLContext:
        """A TLS server context serving this certificate."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        staging = Path(tempfile.mkdtemp(prefix="kr-apiserver-tls-"))
        try:
            cert_file, key_file = staging / "tls.crt", staging / "tls.key"
            cert_file.write_bytes(self.cert_pem)
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(self.key_pem)
            context.load_cert_chain(cert_file, key_file)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return context
