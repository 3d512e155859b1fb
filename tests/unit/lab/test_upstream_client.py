"""The upstream lab's HTTPS client and informer, over real TLS against a Kubernetes-shaped server
(the lab's own API server, serving a certificate from the lab's CA): lists, watches, creates,
patches, deletes, the API's errors as ApiStatusError, and an informer that follows changes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.apiserver import ApiServer, ServingCertificate, Store
from lab.certs import LabPki, generate_pki
from lab.errors import LabError
from lab.upstream.client import ApiStatusError, UpstreamApi
from lab.upstream.kubelet import Informer
from tests.lab.labkit import eventually

TOKEN = "kuc-token"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    return generate_pki(tmp_path_factory.mktemp("kuc-pki"), [])


@pytest.fixture
def url(pki: LabPki) -> Iterator[str]:
    server = ApiServer(
        Store(namespaces=["default", "shop"]), TOKEN, tls=ServingCertificate.from_files(pki.apiserver.cert, pki.apiserver.key)
    )
    address = server.start()
    try:
        yield address
    finally:
        server.stop()


def _pod(name: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"containers": [{"name": "c"}]},
    }


def test_only_https_on_loopback_is_accepted(pki: LabPki) -> None:
    for url in ("http://127.0.0.1:6443", "https://10.0.0.1:6443", "https://localhost:6443", "https://127.0.0.1"):
        with pytest.raises(LabError, match="refusing to talk to"):
            UpstreamApi.at(url, pki.ca, token=TOKEN)


def test_create_get_patch_delete_and_the_apis_errors(url: str, pki: LabPki) -> None:
    api = UpstreamApi.at(url, pki.ca, token=TOKEN)
    created = api.create("/api/v1/namespaces/shop/pods", _pod("web-1"))
    assert created is not None and created["metadata"]["uid"]
    assert api.create("/api/v1/namespaces/shop/pods", _pod("web-1"), exist_ok=True) is None
    with pytest.raises(ApiStatusError) as conflict:
        api.create("/api/v1/namespaces/shop/pods", _pod("web-1"))
    assert (conflict.value.code, conflict.value.reason) == (409, "AlreadyExists")
    patched = api.merge_patch("/api/v1/namespaces/shop/pods/web-1", {"metadata": {"labels": {"app": "web"}}})
    assert patched["metadata"]["labels"] == {"app": "web"}
    assert api.get("/api/v1/namespaces/shop/pods/web-1")["metadata"]["labels"] == {"app": "web"}
    api.delete("/api/v1/namespaces/shop/pods/web-1", {"gracePeriodSeconds": 0})
    assert api.delete("/api/v1/namespaces/shop/pods/web-1") is None, "deleting what is gone is not an error"
    with pytest.raises(ApiStatusError) as missing:
        api.get("/api/v1/namespaces/shop/pods/web-1")
    assert missing.value.code == 404


def test_a_wrong_token_or_an_unknown_ca_is_refused(url: str, pki: LabPki, tmp_path: Path) -> None:
    with pytest.raises(ApiStatusError) as denied:
        UpstreamApi.at(url, pki.ca, token="wrong").get("/api/v1/pods")
    assert denied.value.code == 401
    other = generate_pki(tmp_path / "other", [])
    with pytest.raises(LabError, match="does not answer"):
        UpstreamApi.at(url, other.ca, token=TOKEN).get("/api/v1/pods")


def test_list_follows_every_page(url: str, pki: LabPki) -> None:
    api = UpstreamApi.at(url, pki.ca, token=TOKEN)
    for i in range(3):
        api.create("/api/v1/namespaces/shop/pods", _pod(f"page-{i}"))
    listing = api.list("/api/v1/namespaces/shop/pods")
    assert sorted(p["metadata"]["name"] for p in listing["items"]) == ["page-0", "page-1", "page-2"]
    assert listing["metadata"]["resourceVersion"]


def test_an_informer_lists_then_follows_adds_changes_and_deletes(url: str, pki: LabPki) -> None:
    api = UpstreamApi.at(url, pki.ca, token=TOKEN)
    api.create("/api/v1/namespaces/shop/pods", _pod("before"))
    stop = threading.Event()
    changes = threading.Semaphore(0)
    informer = Informer(api, "/api/v1/pods", changes.release, stop)
    informer.start()
    try:
        assert informer.synced.wait(10)
        assert [p["metadata"]["name"] for p in informer.items()] == ["before"]
        api.create("/api/v1/namespaces/shop/pods", _pod("after"))
        api.merge_patch("/api/v1/namespaces/shop/pods/before", {"metadata": {"labels": {"seen": "yes"}}})
        api.delete("/api/v1/namespaces/shop/pods/after", {"gracePeriodSeconds": 0})

        def names_and_labels() -> dict[str, dict[str, str]]:
            return {p["metadata"]["name"]: p["metadata"].get("labels", {}) for p in informer.items()}

        eventually(
            names_and_labels, lambda seen: seen == {"before": {"seen": "yes"}}, deadline_s=10, what="the informer caught up"
        )
        assert changes.acquire(timeout=1)
    finally:
        stop.set()
