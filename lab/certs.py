"""The lab's own certificate authority: mTLS between the bot and every agent, and the API server's TLS.

One CA; one server certificate per node agent (its node name as identity, 127.0.0.1 as the address
the bot dials in the lab); one client certificate for the bot; one serving certificate for the lab's
API server (127.0.0.1, the `kubernetes` Service's names and its ClusterIP), so that real clients
(kubectl, client-go's kube-proxy, the official Python client) verify it against the CA in the
lab's kubeconfig and send their bearer token. EC P-256 keys, short lifetimes.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=30)
CA_KEY_FILE = "ca-key.pem"
"""The CA's private key, beside ca.pem."""


@dataclass(frozen=True)
class CertPair:
    """Paths of a PEM certificate and its private key."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class LabPki:
    """Where the lab's CA, agent and bot certificates are."""

    ca: Path
    agents: dict[str, CertPair]
    bot: CertPair
    apiserver: CertPair


APISERVER_DNS_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
"""Names the API server's certificate is valid for (with 127.0.0.1 and the kubernetes ClusterIP)."""
APISERVER_SERVICE_IP = "10.96.0.1"
"""The ClusterIP of `default/kubernetes` (the first address of the lab's service CIDR)."""


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "kubereach lab"), x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _issue(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_name: x509.Name,
    common_name: str,
    *,
    server: bool,
    dns_names: list[str],
    ip_addresses: tuple[str, ...] = (),
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    if server:
        sans.append(x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")))
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def generate_pki(directory: Path, nodes: list[str]) -> LabPki:
    """Create a CA, a server certificate per node agent and a client certificate for the bot."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("kubereach lab CA")
    now = dt.datetime.now(dt.UTC)
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = directory / "ca.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    # Kept (mode 0600, in the instance's 0700 directory on tmpfs) for `lab up --kubernetes`, which
    # issues the upstream control plane's certificates from the same CA (lab/upstream/pki.py).
    _write_key(directory / CA_KEY_FILE, ca_key)
    agents: dict[str, CertPair] = {}
    for node in nodes:
        cert, key = _issue(
            ca_key,
            ca_name,
            f"kubereach-agent.{node}",
            server=True,
            dns_names=[f"kubereach-agent.{node}", "kubereach-agent", "localhost"],
        )
        pair = CertPair(directory / f"agent-{node}.pem", directory / f"agent-{node}-key.pem")
        pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(pair.key, key)
        agents[node] = pair
    cert, key = _issue(ca_key, ca_name, "kubereach-bot", server=False, dns_names=["kubereach-bot"])
    bot = CertPair(directory / "bot.pem", directory / "bot-key.pem")
    bot.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(bot.key, key)
    cert, key = _issue(
        ca_key,
        ca_name,
        "kube-apiserver",
        server=True,
        dns_names=list(APISERVER_DNS_NAMES),
        ip_addresses=(APISERVER_SERVICE_IP,),
    )
    apiserver = CertPair(directory / "apiserver.pem", directory / "apiserver-key.pem")
    apiserver.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(apiserver.key, key)
    return LabPki(ca=ca_path, agents=agents, bot=bot, apiserver=apiserver)


def lab_pki(directory: Path) -> LabPki:
    """The paths of an existing PKI in `directory` (as `generate_pki` wrote it; agents not listed)."""
    return LabPki(
        ca=directory / "ca.pem",
        agents={},
        bot=CertPair(directory / "bot.pem", directory / "bot-key.pem"),
        apiserver=CertPair(directory / "apiserver.pem", directory / "apiserver-key.pem"),
    )
