"""The upstream control plane's certificates and keys, issued by the lab's own CA (`lab.certs`).

One CA signs everything, so the bot, kubectl and the agents' clients trust the real API server with
the same `ca.pem` as the lab's own. Kubernetes reads a client certificate's CN as the user name and
its O entries as groups; the names below are the ones upstream's bootstrap RBAC policy binds
(`system:kube-controller-manager`, `system:kube-scheduler`, `system:kube-proxy` → system:node-proxier,
`system:node:NAME` in `system:nodes` for the Node authorizer). Service-account tokens are signed
with an RSA key pair of their own. EC P-256 keys elsewhere; lifetimes as short as the lab's CA.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lab.certs import APISERVER_DNS_NAMES, APISERVER_SERVICE_IP, CA_KEY_FILE, VALIDITY, CertPair
from lab.errors import LabError

LOOPBACK_SANS = ("localhost", "127.0.0.1")
ADMIN_USER = "kubereach-lab-admin"
MASTERS_GROUP = "system:masters"
NODES_GROUP = "system:nodes"


def node_user(node: str) -> str:
    """The user name the Node authorizer recognises for `node`'s kubelet."""
    return f"system:node:{node}"


@dataclass(frozen=True)
class Identity:
    """Who a client certificate says its holder is, and where it may serve."""

    common_name: str
    groups: tuple[str, ...] = ()
    server_names: tuple[str, ...] = ()
    """DNS names and IP literals of a serving certificate; empty for a client-only certificate."""
    client: bool = True


@dataclass(frozen=True)
class UpstreamPki:
    """Paths of everything the upstream control plane reads."""

    directory: Path
    ca: Path
    ca_key: Path
    etcd_server: CertPair
    apiserver_etcd_client: CertPair
    apiserver: CertPair
    controller_manager: CertPair
    scheduler: CertPair
    kube_proxy: CertPair
    nodes: dict[str, CertPair]
    service_account_key: Path
    service_account_pub: Path


def identities(nodes: list[str]) -> dict[str, Identity]:
    """File stem → identity, for every certificate the upstream control plane needs."""
    apiserver_names = (*APISERVER_DNS_NAMES, "127.0.0.1", APISERVER_SERVICE_IP)
    out = {
        "etcd-server": Identity("kubereach-lab-etcd", server_names=LOOPBACK_SANS),
        "apiserver-etcd-client": Identity("kube-apiserver-etcd-client"),
        "kube-apiserver": Identity("kube-apiserver", server_names=apiserver_names, client=False),
        "kube-controller-manager": Identity("system:kube-controller-manager", server_names=LOOPBACK_SANS),
        "kube-scheduler": Identity("system:kube-scheduler", server_names=LOOPBACK_SANS),
        "kube-proxy": Identity("system:kube-proxy"),
    }
    for node in nodes:
        out[f"node-{node}"] = Identity(node_user(node), groups=(NODES_GROUP,))
    return out


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _pem_key(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _san(value: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(value))
    except ValueError:
        return x509.DNSName(value)


def _load_ca(pki_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        ca = x509.load_pem_x509_certificate((pki_dir / "ca.pem").read_bytes())
        key = serialization.load_pem_private_key((pki_dir / CA_KEY_FILE).read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise LabError(f"the lab's CA in {pki_dir} cannot be read ({exc})", hint="run `kubereach lab down` and up again") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise LabError(f"the lab's CA key in {pki_dir} is not an EC key")
    return ca, key


def issue(ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, who: Identity) -> tuple[bytes, bytes]:
    """A certificate for `who` signed by the CA, and its private key, both PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    subject = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in who.groups]
    subject.append(x509.NameAttribute(NameOID.COMMON_NAME, who.common_name))
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] if who.server_names else []
    if who.client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(subject))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
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
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    if who.server_names:
        builder = builder.add_extension(x509.SubjectAlternativeName([_san(n) for n in who.server_names]), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def generate_upstream_pki(pki_dir: Path, nodes: list[str]) -> UpstreamPki:
    """Issue every upstream certificate into `pki_dir/upstream` from the CA `lab.certs.generate_pki` wrote."""
    ca, ca_key = _load_ca(pki_dir)
    out = pki_dir / "upstream"
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    pairs: dict[str, CertPair] = {}
    for stem, who in identities(nodes).items():
        cert_pem, key_pem = issue(ca, ca_key, who)
        pair = CertPair(out / f"{stem}.pem", out / f"{stem}-key.pem")
        pair.cert.write_bytes(cert_pem)
        _write_private(pair.key, key_pem)
        pairs[stem] = pair
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sa_key_path, sa_pub_path = out / "service-account-key.pem", out / "service-account.pub"
    _write_private(sa_key_path, _pem_key(sa_key))
    sa_pub_path.write_bytes(
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return UpstreamPki(
        directory=out,
        ca=pki_dir / "ca.pem",
        ca_key=pki_dir / CA_KEY_FILE,
        etcd_server=pairs["etcd-server"],
        apiserver_etcd_client=pairs["apiserver-etcd-client"],
        apiserver=pairs["kube-apiserver"],
        controller_manager=pairs["kube-controller-manager"],
        scheduler=pairs["kube-scheduler"],
        kube_proxy=pairs["kube-proxy"],
        nodes={n: pairs[f"node-{n}"] for n in nodes},
        service_account_key=sa_key_path,
        service_account_pub=sa_pub_path,
    )


def upstream_pki(pki_dir: Path, nodes: list[str]) -> UpstreamPki:
    """The paths of a PKI `generate_upstream_pki` already wrote."""
    out = pki_dir / "upstream"

    def pair(stem: str) -> CertPair:
        return CertPair(out / f"{stem}.pem", out / f"{stem}-key.pem")

    return UpstreamPki(
        directory=out,
        ca=pki_dir / "ca.pem",
        ca_key=pki_dir / CA_KEY_FILE,
        etcd_server=pair("etcd-server"),
        apiserver_etcd_client=pair("apiserver-etcd-client"),
        apiserver=pair("kube-apiserver"),
        controller_manager=pair("kube-controller-manager"),
        scheduler=pair("kube-scheduler"),
        kube_proxy=pair("kube-proxy"),
        nodes={n: pair(f"node-{n}") for n in nodes},
        service_account_key=out / "service-account-key.pem",
        service_account_pub=out / "service-account.pub",
    )
