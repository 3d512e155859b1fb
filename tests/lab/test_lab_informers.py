"""Real clients against the lab's API over TLS: informers sync, and a draining service is read right.

The official Python client (the same list/watch protocol client-go's informers speak) loads the
kubeconfig `lab status --json` names, verifies the API server against the lab's CA, and keeps
caches of pods, services, EndpointSlices, nodes and ServiceCIDRs with list + watch
(allowWatchBookmarks) while the lab changes: a Service annotated, an Event posted, every `api` pod
deleted with a long grace period. The caches must end equal to fresh lists, every watch must have
seen a BOOKMARK, and the EndpointSlice must keep the terminating pods serving, as the real
EndpointSlice controller does. Then `ask` on that draining service: kube-proxy routes to the
serving terminating endpoints, so it is not a fault.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client, config, watch

from tests.lab.labkit import Lab, eventually, kubereach, running_lab, unique_prefix

pytestmark = pytest.mark.lab

GRACE_SECONDS = 3600  # longer than the module runs: the pods stay Terminating throughout


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with running_lab(unique_prefix("i"), "--nodes", "3") as running:
        yield running


@pytest.fixture(scope="module")
def api(lab: Lab) -> Iterator[client.ApiClient]:
    configuration = client.Configuration()
    config.load_kube_config(config_file=lab.status["kubeconfig"], client_configuration=configuration)
    assert configuration.host == lab.status["api"] and configuration.host.startswith("https://")
    with client.ApiClient(configuration) as api_client:
        yield api_client


def _key(obj: Any) -> str:
    return f"{obj.metadata.namespace or ''}/{obj.metadata.name}"


class Informer(threading.Thread):
    """list, then watch from the list's resourceVersion with bookmarks, again and again (as a reflector)."""

    def __init__(self, name: str, list_call: Callable[..., Any]) -> None:
        super().__init__(name=f"informer-{name}", daemon=True)
        self.list_call = list_call
        self.cache: dict[str, str] = {}
        self.bookmarks = 0
        self.synced = threading.Event()
        self.stop = threading.Event()
        self.error: Exception | None = None
        self.lock = threading.Lock()

    def snapshot(self) -> dict[str, str]:
        with self.lock:
            return dict(self.cache)

    def run(self) -> None:
        try:
            listed = self.list_call()
            with self.lock:
                self.cache = {_key(o): o.metadata.resource_version for o in listed.items}
            version = listed.metadata.resource_version
            self.synced.set()
            while not self.stop.is_set():
                stream = watch.Watch()
                for event in stream.stream(
                    self.list_call, resource_version=version, allow_watch_bookmarks=True, timeout_seconds=2
                ):
                    obj = event["object"]
                    if event["type"] == "BOOKMARK":  # the client leaves a bookmark's object raw
                        version = obj["metadata"]["resourceVersion"]
                        with self.lock:
                            self.bookmarks += 1
                        continue
                    version = obj.metadata.resource_version
                    with self.lock:
                        if event["type"] == "DELETED":
                            self.cache.pop(_key(obj), None)
                        else:
                            self.cache[_key(obj)] = version
                    if self.stop.is_set():
                        stream.stop()
        except Exception as exc:  # noqa: BLE001 - a thread cannot raise into the test: it reports instead
            self.error = exc
            self.synced.set()


def test_real_client_informers_sync_against_the_lab_over_tls(lab: Lab, api: client.ApiClient) -> None:
    core, discovery, networking = client.CoreV1Api(api), client.DiscoveryV1Api(api), client.NetworkingV1Api(api)
    listers: dict[str, Callable[..., Any]] = {
        "pods": core.list_pod_for_all_namespaces,
        "services": core.list_service_for_all_namespaces,
        "endpointslices": discovery.list_endpoint_slice_for_all_namespaces,
        "nodes": core.list_node,
        "servicecidrs": networking.list_service_cidr,
    }
    informers = {name: Informer(name, call) for name, call in listers.items()}
    for informer in informers.values():
        informer.start()
    try:
        for name, informer in informers.items():
            assert informer.synced.wait(60), f"{name} never listed"
            assert informer.error is None, f"{name}: {informer.error!r}"
        assert informers["servicecidrs"].snapshot().keys() == {"/kubernetes"}
        assert "default/kubernetes" in informers["services"].snapshot()
        # changes while the informers watch
        core.patch_namespaced_service("api", "shop", {"metadata": {"annotations": {"kubereach.io/informer": "seen"}}})
        client.EventsV1Api(api).create_namespaced_event(
            "default",
            {
                "metadata": {"generateName": "informer-test."},
                "eventTime": "2026-12-06T07:00:00.000000Z",
                "reportingController": "kubereach-tests",
                "reportingInstance": "informer-test",
                "action": "Test",
                "reason": "Testing",
                "type": "Normal",
            },
        )
        api_pods = [p.metadata.name for p in core.list_namespaced_pod("shop", label_selector="app=api").items]
        assert api_pods
        for name in api_pods:
            core.delete_namespaced_pod(name, "shop", body=client.V1DeleteOptions(grace_period_seconds=GRACE_SECONDS))

        def caught_up() -> dict[str, bool]:
            return {name: informer.snapshot() == _fresh(listers[name]) for name, informer in informers.items()}

        eventually(caught_up, lambda done: all(done.values()), deadline_s=60, what="every informer to match a fresh list")
        eventually(
            lambda: {n: i.bookmarks for n, i in informers.items()},
            lambda seen: all(count > 0 for count in seen.values()),
            deadline_s=30,
            what="a BOOKMARK on every watch",
        )
        assert all(i.error is None for i in informers.values()), {n: i.error for n, i in informers.items()}
    finally:
        for informer in informers.values():
            informer.stop.set()
        for informer in informers.values():
            informer.join(timeout=10)
    # The pods stay Terminating for their grace period, and their endpoints stay serving.
    for name in api_pods:
        pod = core.read_namespaced_pod(name, "shop")
        assert pod.metadata.deletion_timestamp is not None and pod.metadata.deletion_grace_period_seconds == GRACE_SECONDS
    slices = discovery.list_namespaced_endpoint_slice("shop", label_selector="kubernetes.io/service-name=api").items
    conditions = {e.target_ref.name: e.conditions for s in slices for e in s.endpoints or []}
    assert set(conditions) == set(api_pods)
    assert all((c.ready, c.serving, c.terminating) == (False, True, True) for c in conditions.values())


def _fresh(list_call: Callable[..., Any]) -> dict[str, str]:
    return {_key(o): o.metadata.resource_version for o in list_call().items}


def test_a_service_whose_pods_all_terminate_still_serves_and_is_not_a_fault(lab: Lab, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    for pod in core.list_namespaced_pod("shop", label_selector="app=api").items:
        core.delete_namespaced_pod(pod.metadata.name, "shop", body=client.V1DeleteOptions(grace_period_seconds=GRACE_SECONDS))
    proc = kubereach("--config", lab.status["config"], "ask", "frontend -> api", "--json", "--no-history", timeout=180)
    result = json.loads(proc.stdout)
    assert result["verdict"]["code"] == "NO_FAULT_FOUND", result["verdict"]
    steps = {s["name"]: s for s in result["steps"]}
    assert steps["target: service endpoints"]["status"] == "warn"
    assert "terminating" in steps["target: service endpoints"]["summary"]
    nat = [s for name, s in steps.items() if name.endswith("service NAT")]
    assert nat and all(s["status"] == "pass" and "serving terminating" in s["summary"] for s in nat)
