"""The lab API over HTTPS with a certificate from the lab's CA: what every lab client verifies."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.apiclient import LabApi
from lab.apiserver import ApiServer, ServingCertificate, Store
from lab.certs import APISERVER_DNS_NAMES, APISERVER_SERVICE_IP, LabPki, generate_pki
from lab.errors import LabError
from lab.kubeproxy.watch import SERVICES_PATH, ApiUnavailable, KubeApi
from tests.certs import dns_names, ip_names, load_cert

TOKEN = "krt-token"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    return generate_pki(tmp_path_factory.mktemp("krt-pki"), ["node-1"])


@pytest.fixture
def server(pki: LabPki) -> Iterator[ApiServer]:
    api = ApiServer(Store(), TOKEN, tls=ServingCertificate.from_files(pki.apiserver.cert, pki.apiserver.key))
    api.start()
    try:
        yield api
    finally:
        api.stop()


def test_the_api_server_certificate_is_issued_by_the_lab_ca_for_the_kubernetes_names(pki: LabPki) -> None:
    cert = load_cert(pki.apiserver.cert)
    ca = load_cert(pki.ca)
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)
    assert set(APISERVER_DNS_NAMES) <= set(dns_names(cert))
    assert {"127.0.0.1", APISERVER_SERVICE_IP} <= set(ip_names(cert))


def test_kube_proxy_watcher_lists_over_https_verified_by_the_lab_ca(server: ApiServer, pki: LabPki, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    assert server.url.startswith("https://")
    items, version = KubeApi(server.url, token_file, ca_file=pki.ca).list(SERVICES_PATH)
    assert items == [] and int(version) > 0


def test_kube_proxy_watcher_refuses_a_server_its_ca_did_not_issue(server: ApiServer, tmp_path: Path) -> None:
    other = generate_pki(tmp_path / "other", [])
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    with pytest.raises(ApiUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
        KubeApi(server.url, token_file, ca_file=other.ca).list(SERVICES_PATH)
    with pytest.raises(LabError, match="--ca-file"):
        KubeApi(server.url, token_file)


def test_lab_api_client_speaks_https_with_the_ca(server: ApiServer, pki: LabPki) -> None:
    api = LabApi(server.url, TOKEN, str(pki.ca))
    assert api.get("/api/v1/namespaces/default")["metadata"]["name"] == "default"
    with pytest.raises(LabError, match="no CA file"):
        LabApi(server.url, TOKEN).get("/api/v1/namespaces")
