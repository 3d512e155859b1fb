"""The one x509 builder for tests: throwaway EC CAs and the certificates they sign, and readers for assertions."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

Key = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class Pem:
    """A certificate and its key, PEM-encoded."""

    cert: bytes
    key: bytes


def new_key() -> Key:
    """A fresh P-256 key."""
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: Key) -> bytes:
    """A key as unencrypted PKCS#8 PEM (what cert-manager and Helm write)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, common_name)])


def make_ca(
    name: str, *, days: float = 1, backdate: datetime.timedelta = datetime.timedelta(minutes=5), key_usage: bool = True
) -> tuple[Pem, Key, x509.Certificate]:
    """A self-signed CA valid from `backdate` ago for `days`; `key_usage=False` leaves out the KeyUsage extension."""
    key = new_key()
    subject = _name(name)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - backdate)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    if key_usage:
        builder = builder.add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
    cert = builder.sign(key, hashes.SHA256())
    return Pem(cert.public_bytes(serialization.Encoding.PEM), key_pem(key)), key, cert


def make_leaf(ca_key: Key, ca_cert: x509.Certificate, name: str, *, server: bool) -> Pem:
    """A certificate signed by the CA: a server one (SAN localhost, 127.0.0.1) or a client one."""
    key = new_key()
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    cert = builder.sign(ca_key, hashes.SHA256())
    return Pem(cert.public_bytes(serialization.Encoding.PEM), key_pem(key))


def load_cert(source: Path | bytes) -> x509.Certificate:
    """A PEM certificate from a file or bytes."""
    return x509.load_pem_x509_certificate(source.read_bytes() if isinstance(source, Path) else source)


def dns_names(cert: x509.Certificate) -> list[str]:
    """The certificate's DNS subject alternative names, in order."""
    return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName))


def ip_names(cert: x509.Certificate) -> list[str]:
    """The certificate's IP subject alternative names, as strings, in order."""
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(a) for a in ext.get_values_for_type(x509.IPAddress)]


def usages(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    """The certificate's extended key usages, in order."""
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
