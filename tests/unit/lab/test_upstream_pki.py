"""The upstream control plane's PKI: issued by the lab's own CA, with the identities and names
Kubernetes reads, private keys 0600, and certificates that really complete a TLS handshake."""

from __future__ import annotations

import socket
import ssl
import stat
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lab.certs import CertPair, generate_pki
from lab.upstream.pki import UpstreamPki, generate_upstream_pki, upstream_pki
from tests.certs import dns_names, ip_names, load_cert, usages

NODES = ["node-1", "node-2"]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> UpstreamPki:
    directory = tmp_path_factory.mktemp("kup-pki") / "pki"
    generate_pki(directory, NODES)
    return generate_upstream_pki(directory, NODES)


def _sans(cert: x509.Certificate) -> set[str]:
    return set(dns_names(cert)) | set(ip_names(cert))


def _usages(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(usages(cert))


def _subject(cert: x509.Certificate) -> tuple[str, list[str]]:
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    orgs = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    return str(cn), [str(o) for o in orgs]


def _all_pairs(pki: UpstreamPki) -> list[CertPair]:
    return [
        pki.etcd_server, pki.apiserver_etcd_client, pki.apiserver, pki.controller_manager, pki.scheduler, pki.kube_proxy,
        *pki.nodes.values(),
    ]  # fmt: skip


def test_every_certificate_is_signed_by_the_lab_ca(pki: UpstreamPki) -> None:
    ca = load_cert(pki.ca)
    for pair in _all_pairs(pki):
        cert = load_cert(pair.cert)
        cert.verify_directly_issued_by(ca)
        key = serialization.load_pem_private_key(pair.key.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        assert key.public_key().public_numbers() == cert.public_key().public_numbers()  # type: ignore[union-attr]


def test_private_keys_are_readable_by_root_only(pki: UpstreamPki) -> None:
    for path in [*(p.key for p in _all_pairs(pki)), pki.service_account_key, pki.ca_key]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_the_apiserver_certificate_names_loopback_and_the_kubernetes_service(pki: UpstreamPki) -> None:
    cert = load_cert(pki.apiserver.cert)
    assert _sans(cert) == {
        "127.0.0.1", "10.96.0.1", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    }  # fmt: skip
    assert _usages(cert) == {ExtendedKeyUsageOID.SERVER_AUTH}


def test_etcd_serves_loopback_only_and_can_be_its_own_peer(pki: UpstreamPki) -> None:
    cert = load_cert(pki.etcd_server.cert)
    assert _sans(cert) == {"127.0.0.1", "localhost"}
    assert _usages(cert) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}


def test_client_identities_are_the_users_upstreams_bootstrap_policy_binds(pki: UpstreamPki) -> None:
    assert _subject(load_cert(pki.controller_manager.cert)) == ("system:kube-controller-manager", [])
    assert _subject(load_cert(pki.scheduler.cert)) == ("system:kube-scheduler", [])
    assert _subject(load_cert(pki.kube_proxy.cert)) == ("system:kube-proxy", [])
    for node in NODES:
        cert = load_cert(pki.nodes[node].cert)
        assert _subject(cert) == (f"system:node:{node}", ["system:nodes"])
        assert _usages(cert) == {ExtendedKeyUsageOID.CLIENT_AUTH}
        with pytest.raises(x509.ExtensionNotFound):
            cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)


def test_no_certificate_is_a_ca(pki: UpstreamPki) -> None:
    for pair in _all_pairs(pki):
        assert load_cert(pair.cert).extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


def test_service_account_keys_are_a_matching_rsa_pair(pki: UpstreamPki) -> None:
    private = serialization.load_pem_private_key(pki.service_account_key.read_bytes(), password=None)
    public = serialization.load_pem_public_key(pki.service_account_pub.read_bytes())
    assert isinstance(private, rsa.RSAPrivateKey) and isinstance(public, rsa.RSAPublicKey)
    assert private.key_size >= 2048
    assert private.public_key().public_numbers() == public.public_numbers()


def test_the_paths_can_be_found_again(pki: UpstreamPki) -> None:
    assert upstream_pki(pki.ca.parent, NODES) == pki


def _handshake(pki: UpstreamPki, client: CertPair | None) -> dict[str, str]:
    """One real TLS handshake: the server presents kube-apiserver's certificate and demands a client certificate."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(pki.apiserver.cert, pki.apiserver.key)
    server_ctx.load_verify_locations(pki.ca)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    seen: list[dict[str, str]] = []

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                peer = tls.getpeercert() or {}
                seen.append({k: v for rdn in peer.get("subject", ()) for k, v in rdn})  # type: ignore[misc]
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError):
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    client_ctx = ssl.create_default_context(cafile=str(pki.ca))
    if client is not None:
        client_ctx.load_cert_chain(client.cert, client.key)
    try:
        with (
            socket.create_connection(listener.getsockname(), timeout=5) as raw,
            client_ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            assert tls.recv(2) == b"ok"
    finally:
        thread.join(5)
        listener.close()
    return seen[0]


def test_a_node_certificate_completes_mutual_tls_with_the_apiserver_certificate(pki: UpstreamPki) -> None:
    assert _handshake(pki, pki.nodes["node-1"])["commonName"] == "system:node:node-1"


def test_a_client_without_a_certificate_is_refused(pki: UpstreamPki) -> None:
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _handshake(pki, None)
