"""The watch caches (`bot.cluster.watchcache`) against the lab API server over HTTPS.

Each test counts what the cache asked through the server's own ``apiserver_request_total`` counter:
a change reaches the cache by its watch (no new list), a watch from a compacted resourceVersion gets
410 and relists, a cache the server has not confirmed within the staleness bound reads through, a
server that cannot be reached is an error (never an answer from old objects), and a kind larger than
the bound is not cached.
"""

from __future__ import annotations

import logging
import ssl
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.cluster import ClusterAccessDenied, ClusterClient, ClusterUnavailable
from bot.cluster.client import NAMESPACES, PODS
from bot.cluster.watchcache import CachedCluster, parse_equality_selector
from lab.apiserver import ApiServer, PolicyRule, ServingCertificate, Store, User, write_kubeconfig
from lab.certs import LabPki, generate_pki
from tests.polling import eventually

TOKEN = "kwc-admin-token"
LIST_ONLY_TOKEN = "kwc-list-only-token"
NO_NAMESPACES_TOKEN = "kwc-no-namespaces-token"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    return generate_pki(tmp_path_factory.mktemp("kwc-pki"), [])


def serve(pki: LabPki, store: Store, port: int = 0, *, namespaces_granted: bool = False) -> ApiServer:
    """The lab API server; `NO_NAMESPACES_TOKEN` may read pods, and namespaces only when `namespaces_granted`."""
    list_only = User("kwc-list-only", (PolicyRule(("",), ("namespaces", "pods"), ("get", "list")),))
    granted = ("namespaces", "pods") if namespaces_granted else ("pods",)
    no_namespaces = User("kwc-no-namespaces", (PolicyRule(("",), granted, ("get", "list", "watch")),))
    server = ApiServer(
        store,
        TOKEN,
        tls=ServingCertificate.from_files(pki.apiserver.cert, pki.apiserver.key),
        users={LIST_ONLY_TOKEN: list_only, NO_NAMESPACES_TOKEN: no_namespaces},
        bookmark_interval=0.5,
    )
    server.start(port=port)
    return server


@pytest.fixture
def api_server(pki: LabPki) -> Iterator[ApiServer]:
    server = serve(pki, Store())
    try:
        yield server
    finally:
        server.stop()


def client_for(server: ApiServer, pki: LabPki, path: Path, token: str = TOKEN) -> ClusterClient:
    kubeconfig = write_kubeconfig(path, server.url, token, namespace="default", ca_pem=pki.ca.read_bytes())
    return ClusterClient.from_kubeconfig(kubeconfig, timeout=3.0)


def namespace(name: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {"team": "kwc"}}}


def names(objects: list[dict[str, object]]) -> list[str]:
    return [obj["metadata"]["name"] for obj in objects]  # type: ignore[index]


def test_a_change_reaches_the_cache_by_its_watch_not_by_a_list(api_server: ApiServer, pki: LabPki, tmp_path: Path) -> None:
    client = client_for(api_server, pki, tmp_path / "kubeconfig")
    cached = CachedCluster(client, max_staleness_s=30.0, max_objects=1000)
    try:
        first = names(cached.list_objects(NAMESPACES))
        assert "default" in first and "kwc-new" not in first
        api_server.store.create(namespace("kwc-new"))
        eventually(lambda: names(cached.list_objects(NAMESPACES)), lambda seen: "kwc-new" in seen, 10, "the new namespace")
        assert names(cached.list_objects(NAMESPACES, label_selector="team=kwc")) == ["kwc-new"]
        api_server.store.delete("namespaces", "kwc-new")
        eventually(lambda: names(cached.list_objects(NAMESPACES)), lambda seen: "kwc-new" not in seen, 10, "the deletion")
        assert api_server.requests.total("LIST", "namespaces") == 1
        assert cached.stats()["namespaces"].hits >= 4
        assert [c.verb for c in client.api_calls][:2] == ["list", "watch"]
    finally:
        cached.close()
        client.close()


def test_a_watch_from_a_compacted_resource_version_relists(pki: LabPki, tmp_path: Path) -> None:
    store = Store(history_size=8)
    server = serve(pki, store)
    port = int(server.url.rsplit(":", 1)[1])
    client = client_for(server, pki, tmp_path / "kubeconfig")
    cached = CachedCluster(client, max_staleness_s=30.0, max_objects=1000)
    try:
        assert "kwc-while-down-19" not in names(cached.list_objects(NAMESPACES))
        server.stop()
        for index in range(20):  # more writes than the history holds while the watch is away
            store.create(namespace(f"kwc-while-down-{index}"))
        server = serve(pki, store, port)
        listed = eventually(
            lambda: names(cached.list_objects(NAMESPACES)), lambda seen: "kwc-while-down-19" in seen, 20, "the relist"
        )
        assert {f"kwc-while-down-{i}" for i in range(20)} <= set(listed)
        stats = cached.stats()["namespaces"]
        assert stats.expired >= 1 and stats.lists == 2
        eventually(lambda: server.requests.total("LIST", "namespaces"), lambda n: n == 1, 5, "the relist counted")
    finally:
        cached.close()
        client.close()
        server.stop()


def test_a_cache_not_confirmed_within_the_bound_reads_through(api_server: ApiServer, pki: LabPki, tmp_path: Path) -> None:
    # This identity may list but not watch: the cache holds only what its list confirmed.
    client = client_for(api_server, pki, tmp_path / "kubeconfig", token=LIST_ONLY_TOKEN)
    cached = CachedCluster(client, max_staleness_s=0.3, max_objects=1000)
    try:
        assert "kwc-later" not in names(cached.list_objects(NAMESPACES))
        api_server.store.create(namespace("kwc-later"))
        eventually(lambda: not cached.cache(NAMESPACES).fresh(), what="the cache going stale")
        assert "kwc-later" in names(cached.list_objects(NAMESPACES))
        assert cached.stats()["namespaces"].read_through >= 1
        # The server counts a request once its answer is sent, as kube-apiserver does: wait for it.
        eventually(lambda: api_server.requests.total("LIST", "namespaces"), lambda n: n == 2, 5, "the second LIST counted")
        assert "watch" in cached.cache(NAMESPACES).describe()  # the refused watch is named
    finally:
        cached.close()
        client.close()


def test_an_unreachable_api_is_an_error_never_an_answer_from_old_objects(pki: LabPki, tmp_path: Path) -> None:
    server = serve(pki, Store())
    client = client_for(server, pki, tmp_path / "kubeconfig")
    cached = CachedCluster(client, max_staleness_s=0.5, max_objects=1000)
    try:
        assert "default" in names(cached.list_objects(NAMESPACES))
        server.stop()
        eventually(lambda: not cached.cache(NAMESPACES).fresh(), what="the cache going stale")
        with pytest.raises(ClusterUnavailable, match="cannot reach the Kubernetes API server"):
            cached.list_objects(NAMESPACES)
    finally:
        cached.close()
        client.close()
        server.stop()


def test_a_kind_larger_than_the_bound_is_not_cached(api_server: ApiServer, pki: LabPki, tmp_path: Path) -> None:
    client = client_for(api_server, pki, tmp_path / "kubeconfig")
    cached = CachedCluster(client, max_staleness_s=30.0, max_objects=3)
    try:
        for index in range(4):
            api_server.store.create(namespace(f"kwc-big-{index}"))
        assert "kwc-big-3" in names(cached.list_objects(NAMESPACES))
        assert "kwc-big-3" in names(cached.list_objects(NAMESPACES))
        # the cache's list, then two reads through
        eventually(lambda: api_server.requests.total("LIST", "namespaces"), lambda n: n == 3, 5, "three LISTs counted")
        assert "too large" in cached.cache(NAMESPACES).describe()
        assert cached.list_objects(PODS, "default") == []  # another kind is still cached
    finally:
        cached.close()
        client.close()


def test_metrics_count_requests_as_kube_apiserver_does(api_server: ApiServer, pki: LabPki, tmp_path: Path) -> None:
    client = client_for(api_server, pki, tmp_path / "kubeconfig")
    try:
        client.list_objects(PODS, "default")
        client.get_object(PODS, "missing", "default")
    finally:
        client.close()
    context = ssl.create_default_context(cafile=str(pki.ca))

    def metrics() -> str:  # as `kubectl get --raw /metrics` asks it
        request = urllib.request.Request(f"{api_server.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, context=context, timeout=5) as answer:
            return str(answer.read().decode())

    text = eventually(metrics, lambda t: 'code="404"' in t, 5, "the GET counted")
    assert 'resource="pods",scope="namespace",subresource="",verb="LIST",version="v1"} 1' in text
    assert 'apiserver_request_total{code="404",component="apiserver",dry_run="",group="",resource="pods",scope="resource"' in text
    assert text.startswith("# HELP apiserver_request_total")


@pytest.mark.parametrize(
    ("selector", "expected"),
    [(None, {}), ("a=b", {"a": "b"}), ("a==b,c=d", {"a": "b", "c": "d"}), ("a!=b", None), ("a in (b)", None), ("a", None)],
)
def test_equality_selectors_filter_the_cache_and_others_read_through(selector: str | None, expected: object) -> None:
    assert parse_equality_selector(selector) == expected


def test_the_first_fill_is_one_request_from_the_watch_cache_and_reads_through_page(
    api_server: ApiServer, pki: LabPki, tmp_path: Path
) -> None:
    """The cache's first list asks for resourceVersion 0 (unpaged, as an informer's first list);
    a read through the client pages. Eight namespaces with pages of three: one LIST against three."""
    for index in range(4):
        api_server.store.create(namespace(f"kwc-fill-{index}"))
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", api_server.url, TOKEN, namespace="default", ca_pem=pki.ca.read_bytes())
    client = ClusterClient.from_kubeconfig(kubeconfig, timeout=3.0, page_size=3)
    cached = CachedCluster(client, max_staleness_s=30.0, max_objects=1000)
    try:

        def lists() -> int:
            return sum(call.verb == "list" and call.resource == "namespaces" for call in client.api_calls)

        every = names(client.list_objects(NAMESPACES))
        assert len(every) == 8 and lists() == 3
        assert names(cached.list_objects(NAMESPACES)) == every
        assert lists() == 4
    finally:
        cached.close()
        client.close()


def watch_thread_running(plural: str) -> bool:
    return any(t.name == f"watch-{plural}" and t.is_alive() for t in threading.enumerate())


def test_a_refused_list_is_one_log_line_naming_the_rule_to_add_and_is_not_retried(
    api_server: ApiServer, pki: LabPki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = client_for(api_server, pki, tmp_path / "kubeconfig", token=NO_NAMESPACES_TOKEN)
    cached = CachedCluster(client, max_staleness_s=30.0, max_objects=1000)
    try:
        with caplog.at_level(logging.INFO, logger="bot.cluster.watchcache"):
            with pytest.raises(ClusterAccessDenied) as refused:
                cached.list_objects(NAMESPACES)  # the cache's list is refused, and so is the read through
            assert (refused.value.verb, refused.value.resource) == ("list", "namespaces")
            eventually(lambda: not watch_thread_running("namespaces"), what="the cache giving up after the 403")
        assert cached.cache(NAMESPACES).refused == "list"
        assert not watch_thread_running("namespaces")  # asking again does not start the retries either
        # The cache's list and the read through; nothing after them (the lab's server does not count 403s).
        assert [(c.verb, c.resource, c.namespace) for c in client.api_calls] == [("list", "namespaces", None)] * 2
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1 and warnings[0].exc_info is None
        line = warnings[0].getMessage()
        assert "\n" not in line and "not retried" in line
        assert 'the bot may not "list" namespaces (apiGroup "") cluster-wide' in line
        assert 'add verb "list" on resource "namespaces" in apiGroup "" to the bot\'s ClusterRole' in line
    finally:
        cached.close()
        client.close()


def test_a_list_granted_after_a_refusal_is_cached_again_from_the_next_cluster_wide_read(pki: LabPki, tmp_path: Path) -> None:
    store = Store()
    server = serve(pki, store)
    port = int(server.url.rsplit(":", 1)[1])
    client = client_for(server, pki, tmp_path / "kubeconfig", token=NO_NAMESPACES_TOKEN)
    cached = CachedCluster(client, max_staleness_s=30.0, max_objects=1000)
    try:
        with pytest.raises(ClusterAccessDenied):
            cached.list_objects(NAMESPACES)
        eventually(lambda: not watch_thread_running("namespaces"), what="the cache giving up after the 403")
        server.stop()
        server = serve(pki, store, port, namespaces_granted=True)  # the ClusterRole now grants namespaces
        assert "default" in names(cached.list_objects(NAMESPACES))  # read through, which starts the cache over
        eventually(lambda: cached.cache(NAMESPACES).fresh(), what="the cache listed again")
        hits = cached.stats()["namespaces"].hits
        assert "default" in names(cached.list_objects(NAMESPACES))
        assert cached.stats()["namespaces"].hits == hits + 1
        assert cached.cache(NAMESPACES).refused is None
    finally:
        cached.close()
        client.close()
        server.stop()
