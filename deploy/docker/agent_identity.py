"""Mint a node agent's server certificate at pod start: SAN `kubereach-agent.<node>`, signed by the agent CA.

The bot dials each agent with the TLS name `kubereach-agent.<node>` (bot/fleet/client.py) and so
checks that it reached the agent of the node it meant. A DaemonSet has one pod template, so no
per-node certificate can be prepared for it in advance (by Helm or by cert-manager); instead the
agent pod's init container runs this script with the node name from the downward API and writes the
key and certificate into a memory-backed volume that the agent container reads.

    python agent_identity.py --node NODE --ca-cert CA.crt --ca-key CA.key --out-dir DIR [--days N]

Writes DIR/tls.crt (the certificate) and DIR/tls.key (its EC P-256 key, mode 0600). The certificate
never outlives the CA certificate. Exit status 0 on success, 78 (EX_CONFIG) with a one-line reason
when the node name or the CA material cannot be used.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

IDENTITY_PREFIX = "kubereach-agent."
"""The bot expects `kubereach-agent.<node>` as the agent's TLS name."""
EXIT_CONFIG = 78
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_MAX_DNS_NAME = 253
_CLOCK_SKEW = dt.timedelta(minutes=5)

SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


class IdentityError(ValueError):
    """The node name or the CA material cannot make a certificate; the message says which and why."""


@dataclass(frozen=True)
class NodeIdentity:
    """The PEM certificate and key of one node's agent."""

    certificate: bytes
    private_key: bytes


def identity_name(node: str) -> str:
    """The TLS name of the agent on `node`; refuses names that are not Kubernetes node names."""
    if not _DNS_SUBDOMAIN.match(node):
        raise IdentityError(f"node name {node!r} is not a DNS subdomain (lower-case letters, digits, '-' and '.')")
    name = IDENTITY_PREFIX + node
    if len(name) > _MAX_DNS_NAME:
        raise IdentityError(f"node name {node!r} is too long for the DNS name {IDENTITY_PREFIX}<node> (max {_MAX_DNS_NAME})")
    return name


def load_ca(cert_pem: bytes, key_pem: bytes) -> tuple[x509.Certificate, SigningKey]:
    """The agent CA certificate and key; refuses a certificate that is not a CA or a key that does not match it."""
    try:
        ca_cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except ValueError as exc:
        raise IdentityError(f"the agent CA certificate or key is not readable PEM: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise IdentityError("the agent CA key must be an EC or RSA key")
    try:
        constraints = ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound as exc:
        raise IdentityError("the agent CA certificate has no basicConstraints: it is not a CA") from exc
    if not constraints.ca:
        raise IdentityError("the agent CA certificate is not a CA certificate (basicConstraints CA:FALSE)")
    public = ca_cert.public_key()
    if public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        raise IdentityError("the agent CA key does not belong to the agent CA certificate")
    return ca_cert, key


def mint(node: str, ca_cert: x509.Certificate, ca_key: SigningKey, days: int, now: dt.datetime | None = None) -> NodeIdentity:
    """A server certificate for the agent on `node`, valid for `days` but never past the CA's own expiry."""
    if days < 1:
        raise IdentityError("--days must be at least 1")
    name = identity_name(node)
    moment = now or dt.datetime.now(dt.UTC)
    not_after = min(moment + dt.timedelta(days=days), ca_cert.not_valid_after_utc)
    if not_after <= moment:
        raise IdentityError(f"the agent CA expired on {ca_cert.not_valid_after_utc:%Y-%m-%d}; renew it and restart the agents")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name[:64])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(moment - _CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=False,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(_authority_key_identifier(ca_cert), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return NodeIdentity(
        certificate=cert.public_bytes(serialization.Encoding.PEM),
        private_key=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )


def _authority_key_identifier(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """The CA's own subject key identifier when it has one (Go, hence Helm, hashes keys differently), else one from its key."""
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        public = ca_cert.public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            raise IdentityError("the agent CA certificate must hold an EC or RSA key") from None
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(public)
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def write_identity(identity: NodeIdentity, out_dir: Path) -> None:
    """Write tls.key (0600) and tls.crt into `out_dir`, each atomically."""
    for filename, data, mode in (("tls.key", identity.private_key, 0o600), ("tls.crt", identity.certificate, 0o644)):
        partial = out_dir / f".{filename}.partial"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        partial.replace(out_dir / filename)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, mint, write; return the exit status."""
    parser = argparse.ArgumentParser(description="mint the kubereach agent's per-node server certificate")
    parser.add_argument("--node", required=True, help="the node name (from the downward API: spec.nodeName)")
    parser.add_argument("--ca-cert", required=True, type=Path, help="PEM certificate of the agent CA")
    parser.add_argument("--ca-key", required=True, type=Path, help="PEM private key of the agent CA")
    parser.add_argument("--out-dir", required=True, type=Path, help="directory for tls.crt and tls.key")
    parser.add_argument("--days", type=int, default=90, help="validity in days (capped at the CA's expiry)")
    args = parser.parse_args(argv)
    try:
        try:
            cert_pem, key_pem = args.ca_cert.read_bytes(), args.ca_key.read_bytes()
        except OSError as exc:
            raise IdentityError(f"cannot read {exc.filename}: {exc.strerror}; is the agent CA Secret mounted?") from exc
        ca_cert, ca_key = load_ca(cert_pem, key_pem)
        identity = mint(args.node, ca_cert, ca_key, args.days)
        try:
            write_identity(identity, args.out_dir)
        except OSError as exc:
            raise IdentityError(f"cannot write into {args.out_dir}: {exc.strerror}") from exc
    except IdentityError as exc:
        print(f"agent_identity: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(f"agent_identity: wrote {args.out_dir}/tls.crt for {identity_name(args.node)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
