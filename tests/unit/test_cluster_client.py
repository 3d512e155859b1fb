"""ClusterClient at its boundary: foreign errors become ClusterUnavailable / ClusterAccessDenied with hints.

Servers here are real: the lab API server over HTTPS with a certificate from the lab's CA (stopped,
or asked with a wrong token), a listening socket that never answers, and a small HTTP stand-in that
answers like an API server denying RBAC.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bot.cluster import ClusterAccessDenied, ClusterClient, ClusterUnavailable
from bot.cluster.client import NAMESPACES, NETWORK_POLICIES, NODES, PODS
from bot.parse import parse_question
from lab.apiserver import ApiServer, ServingCertificate, Store, write_kubeconfig
from lab.certs import LabPki, generate_pki

TOKEN = "krc-client-token"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    return generate_pki(tmp_path_factory.mktemp("krc-pki"), [])


def tls_server(pki: LabPki) -> ApiServer:
    return ApiServer(Store(), TOKEN, tls=ServingCertificate.from_files(pki.apiserver.cert, pki.apiserver.key))


def lab_kubeconfig(path: Path, pki: LabPki, url: str, token: str = TOKEN, namespace: str = "default") -> Path:
    return write_kubeconfig(path, url, token, namespace=namespace, ca_pem=pki.ca.read_bytes())


@pytest.fixture
def api_server(pki: LabPki) -> Iterator[ApiServer]:
    server = tls_server(pki)
    try:
        server.start(port=0)
        yield server
    finally:
        server.stop()


def test_working_server_lists_and_gets(api_server: ApiServer, pki: LabPki, tmp_path: Path) -> None:
    assert api_server.url.startswith("https://127.0.0.1:")
    kubeconfig = lab_kubeconfig(tmp_path / "krc-kubeconfig", pki, api_server.url, namespace="shop")
    with ClusterClient.from_kubeconfig(kubeconfig) as client:
        namespaces = client.list_objects(NODES)
        assert namespaces == []
        assert client.get_object(PODS, "missing", "default") is None
        assert client.default_namespace == "shop"
        assert [(c.verb, c.resource, c.namespace) for c in client.api_calls] == [
            ("list", "nodes", None),
            ("get", "pods", "default"),
        ]


def test_long_lists_are_read_page_by_page(api_server: ApiServer, pki: LabPki, tmp_path: Path) -> None:
    for index in range(5):
        api_server.store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"krc-page-{index}"}})
    kubeconfig = lab_kubeconfig(tmp_path / "krc-kubeconfig", pki, api_server.url)
    with ClusterClient.from_kubeconfig(kubeconfig, page_size=2) as client:
        listed = [obj["metadata"]["name"] for obj in client.list_objects(NAMESPACES)]
        expected = [obj["metadata"]["name"] for obj in api_server.store.list("namespaces").items]
        assert listed == expected and len(listed) > 5
        assert len(client.api_calls) == (len(expected) + 1) // 2
        assert all(obj["kind"] == "Namespace" for obj in client.list_objects(NAMESPACES))


@pytest.mark.parametrize("churning_pages", [1, 5])
def test_a_list_whose_continue_token_expires_starts_again(pki: LabPki, tmp_path: Path, churning_pages: int) -> None:
    """After the first page, the server's history moves past the list's snapshot (as etcd compaction
    does), so the next continue is 410 Expired: the list starts again, and after two such restarts it
    asks for the whole list in one piece."""
    server = ApiServer(Store(history_size=4), TOKEN, tls=ServingCertificate.from_files(pki.apiserver.cert, pki.apiserver.key))
    server.start()
    try:
        for index in range(5):
            server.store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"krc-exp-{index}"}})
        kubeconfig = lab_kubeconfig(tmp_path / "krc-kubeconfig", pki, server.url)
        with ClusterClient.from_kubeconfig(kubeconfig, page_size=3) as client:
            api = client._api(NAMESPACES)
            real_list = api.list_namespace
            churned = {"count": 0}

            def list_then_churn(*args: Any, **kwargs: Any) -> Any:
                page = real_list(*args, **kwargs)
                if "limit" in kwargs and not kwargs.get("_continue") and churned["count"] < churning_pages:
                    churned["count"] += 1
                    for index in range(6):  # more writes than the history holds
                        name = f"krc-churn-{churned['count']}-{index}"
                        server.store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
                return page

            api.list_namespace = list_then_churn
            listed = [o["metadata"]["name"] for o in client.list_objects(NAMESPACES)]
        assert listed == [o["metadata"]["name"] for o in server.store.list("namespaces").items]
        calls = [c for c in client.api_calls if c.resource == "namespaces"]
        if churning_pages > 1:  # page, 410, page, 410, then the whole list in one request
            assert len(calls) == 5 and churned["count"] == 2
        else:  # page, 410, then pages to the end
            assert len(calls) > 3 and churned["count"] == 1
    finally:
        server.stop()


def test_stopped_server_is_cluster_unavailable_naming_server_and_kubeconfig(pki: LabPki, tmp_path: Path) -> None:
    server = tls_server(pki)
    url = server.start(port=0)
    kubeconfig = lab_kubeconfig(tmp_path / "krc-kubeconfig", pki, url)
    server.stop()
    with ClusterClient.from_kubeconfig(kubeconfig, timeout=2.0) as client, pytest.raises(ClusterUnavailable) as caught:
        client.resolve(parse_question("frontend -> api:8080"))
    error = caught.value
    assert not isinstance(error, ClusterAccessDenied)
    assert url in error.message and "connection refused" in error.message
    assert error.hint is not None and str(kubeconfig) in error.hint
    assert error.server == url


def test_wrong_token_is_cluster_unavailable_with_a_credentials_hint(api_server: ApiServer, pki: LabPki, tmp_path: Path) -> None:
    kubeconfig = lab_kubeconfig(tmp_path / "krc-kubeconfig", pki, api_server.url, "not-the-token")
    with ClusterClient.from_kubeconfig(kubeconfig) as client, pytest.raises(ClusterUnavailable) as caught:
        client.list_objects(PODS, "default")
    assert "401 Unauthorized" in caught.value.message and api_server.url in caught.value.message
    assert caught.value.hint is not None and "token" in caught.value.hint and str(kubeconfig) in caught.value.hint


def test_no_credentials_is_said_so_not_an_rbac_grant(api_server: ApiServer, pki: LabPki, tmp_path: Path) -> None:
    """The real server answers a request without credentials 403 as system:anonymous (recorded in
    fixtures/kube-apiserver-v1.36.2/noauth-api-v1-pods.real.json); the lab's server does the same."""
    kubeconfig = lab_kubeconfig(tmp_path / "krc-kubeconfig", pki, api_server.url)
    document = json.loads(kubeconfig.read_text())
    document["users"][0]["user"] = {}
    kubeconfig.write_text(json.dumps(document))
    with ClusterClient.from_kubeconfig(kubeconfig) as client, pytest.raises(ClusterUnavailable) as caught:
        client.list_objects(PODS)
    error = caught.value
    assert not isinstance(error, ClusterAccessDenied)
    assert "403 Forbidden" in error.message and "system:anonymous" in error.message
    assert error.hint is not None and error.hint.startswith("no credentials: the kubeconfig") and "grant" not in error.hint


class _ForbiddingApi(BaseHTTPRequestHandler):
    """Answers every request the way kube-apiserver answers a request RBAC denies."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        body = json.dumps(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": 'networkpolicies.networking.k8s.io is forbidden: User "system:serviceaccount:kubereach:bot" '
                'cannot list resource "networkpolicies" in API group "networking.k8s.io" in the namespace "shop"',
                "reason": "Forbidden",
                "details": {"group": "networking.k8s.io", "kind": "networkpolicies"},
                "code": 403,
            }
        ).encode()
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def forbidding_server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _ForbiddingApi)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_forbidden_names_the_missing_rbac_verb_and_resource(forbidding_server: str, tmp_path: Path) -> None:
    kubeconfig = write_kubeconfig(tmp_path / "krc-kubeconfig", forbidding_server, TOKEN)
    with ClusterClient.from_kubeconfig(kubeconfig) as client, pytest.raises(ClusterAccessDenied) as caught:
        client.list_objects(NETWORK_POLICIES, "shop")
    error = caught.value
    assert (error.verb, error.resource, error.group, error.namespace) == ("list", "networkpolicies", "networking.k8s.io", "shop")
    assert "403 Forbidden" in error.message and '"list" networkpolicies' in error.message
    assert error.hint is not None and 'verb "list" on resource "networkpolicies"' in error.hint


def test_server_that_never_answers_times_out_as_cluster_unavailable(tmp_path: Path) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        kubeconfig = write_kubeconfig(tmp_path / "krc-kubeconfig", url, TOKEN)
        with ClusterClient.from_kubeconfig(kubeconfig, timeout=0.3) as client, pytest.raises(ClusterUnavailable) as caught:
            client.list_objects(NODES)
        assert "timed out" in caught.value.message and url in caught.value.message
    finally:
        silent.close()


def test_missing_or_broken_kubeconfig_is_cluster_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ClusterUnavailable) as missing:
        ClusterClient.from_kubeconfig(tmp_path / "krc-nothing-here")
    assert "does not exist" in missing.value.message
    broken = tmp_path / "krc-broken"
    broken.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\n")
    with pytest.raises(ClusterUnavailable) as invalid:
        ClusterClient.from_kubeconfig(broken)
    assert str(broken) in invalid.value.message


def test_a_server_certificate_from_another_ca_is_refused(api_server: ApiServer, tmp_path: Path) -> None:
    other = generate_pki(tmp_path / "krc-other-pki", [])
    kubeconfig = lab_kubeconfig(tmp_path / "krc-kubeconfig", other, api_server.url)
    with ClusterClient.from_kubeconfig(kubeconfig, timeout=2.0) as client, pytest.raises(ClusterUnavailable) as caught:
        client.list_objects(NODES)
    assert "TLS failed" in caught.value.message and "CERTIFICATE_VERIFY_FAILED" in caught.value.message


def test_in_cluster_outside_a_pod_is_cluster_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    with pytest.raises(ClusterUnavailable) as caught:
        ClusterClient.in_cluster()
    assert "in-cluster" in caught.value.message and caught.value.hint is not None
