"""The lab's API server held to what kube-apiserver v1.36.2 really answered (tests/unit/fixtures/kube-apiserver-v1.36.2).

Each test replays the input of a recorded request against the lab's store (and its EndpointSlice
controller) or its HTTP server, and compares the lab's answer with the real one, field by field
where the field matters to a client.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.apiserver import EndpointSliceController, Expired, Store
from lab.apiserver.endpointslices import SERVICE_NAME_LABEL
from tests.polling import eventually

FIXTURES = Path(__file__).parents[1] / "fixtures" / "kube-apiserver-v1.36.2"
SERVER_ALLOCATED = ("clusterIP", "clusterIPs", "healthCheckNodePort")


def real(name: str) -> dict[str, Any]:
    """One recorded answer of the real server."""
    loaded: dict[str, Any] = json.loads((FIXTURES / f"{name}.real.json").read_text())
    return loaded


def service_input(recorded: dict[str, Any]) -> dict[str, Any]:
    """What a client would have sent for a recorded Service: no addresses or ports the server picks."""
    spec = copy.deepcopy(recorded["spec"])
    for key in SERVER_ALLOCATED:
        if spec.get(key) not in ("None", ["None"]):
            spec.pop(key, None)
    for port in spec.get("ports") or []:
        port.pop("nodePort", None)
    meta = recorded["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "labels": meta.get("labels") or {}},
        "spec": spec,
    }


def pod_input(recorded: dict[str, Any]) -> dict[str, Any]:
    meta = recorded["metadata"]
    kept = {k: meta[k] for k in ("name", "namespace", "labels", "finalizers") if k in meta}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": kept, "spec": recorded["spec"], "status": recorded["status"]}


@pytest.fixture
def apidiff() -> Iterator[Store]:
    """The recorded scratch namespace `apidiff`, replayed: Services, pods, then the two pod deletes."""
    store = Store()
    controller = EndpointSliceController(store)
    controller.start()
    store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apidiff"}})
    for svc in real("scenario-services-apidiff")["body"]["items"]:
        store.create(service_input(svc))
    pods = real("scenario-pods-apidiff")["body"]["items"]
    for pod in pods:
        store.create(pod_input(pod))
    for pod in pods:
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            store.delete("pods", meta["name"], "apidiff", grace_period_seconds=meta["deletionGracePeriodSeconds"])
    try:
        yield store
    finally:
        controller.stop()


def endpoints_by_service(slices: list[dict[str, Any]]) -> dict[str, set[tuple[Any, ...]]]:
    """service → {(pod, ready, serving, terminating, hostname, ports)} over all its slices (order aside)."""
    out: dict[str, set[tuple[Any, ...]]] = {}
    for s in slices:
        ports = tuple(sorted((p.get("name") or "", p["protocol"], p["port"]) for p in s.get("ports") or []))
        bucket = out.setdefault(s["metadata"]["labels"][SERVICE_NAME_LABEL], set())
        for e in s.get("endpoints") or []:
            c = e["conditions"]
            bucket.add((e["targetRef"]["name"], c["ready"], c["serving"], c["terminating"], e.get("hostname"), ports))
    return out


def test_deleted_pods_stay_terminating_for_their_grace_period_like_the_real_server(apidiff: Store) -> None:
    recorded = {p["metadata"]["name"]: p["metadata"] for p in real("scenario-pods-apidiff")["body"]["items"]}
    for name in ("term-d", "term-h"):
        meta = apidiff.get("pods", name, "apidiff")["metadata"]
        assert meta["deletionTimestamp"] and meta["generation"] == recorded[name]["generation"] == 2
        assert meta["deletionGracePeriodSeconds"] == recorded[name]["deletionGracePeriodSeconds"]
    assert sorted(p["metadata"]["name"] for p in apidiff.list("pods", "apidiff").items) == sorted(recorded)


def test_endpoint_slices_keep_terminating_endpoints_serving_like_the_real_controller(apidiff: Store) -> None:
    want = endpoints_by_service(real("scenario-endpointslices-apidiff")["body"]["items"])
    got = endpoints_by_service(apidiff.list("endpointslices", "apidiff").items)
    assert got == want
    # the heart of it: a pod in its grace period is ready:false, serving:true, terminating:true ...
    assert ("term-d", False, True, True, None, (("", "TCP", 80),)) in got["min"]
    # ... and ready:true under publishNotReadyAddresses
    assert ("term-h", True, True, True, None, (("", "TCP", 8080),)) in got["pnr"]


def test_a_selector_that_matches_nothing_gives_null_endpoints_and_ports(apidiff: Store) -> None:
    recorded = next(
        s
        for s in real("scenario-endpointslices-apidiff")["body"]["items"]
        if s["metadata"]["labels"][SERVICE_NAME_LABEL] == "empty"
    )
    (lab,) = apidiff.list("endpointslices", "apidiff", label_selector=f"{SERVICE_NAME_LABEL}=empty").items
    assert (lab["endpoints"], lab["ports"]) == (recorded["endpoints"], recorded["ports"]) == (None, None)
    (noports,) = apidiff.list("endpointslices", "apidiff", label_selector=f"{SERVICE_NAME_LABEL}=headless-noports").items
    assert noports["ports"] is None and noports["endpoints"]


def test_grace_period_end_deletes_the_pod_and_its_endpoint(apidiff: Store) -> None:
    from datetime import UTC, datetime, timedelta

    later = datetime.now(UTC) + timedelta(hours=2)
    finished = apidiff.finish_graceful_deletions(later)
    assert finished == [("apidiff", "term-d")]  # term-h is held by its finalizer
    names = {p["metadata"]["name"] for p in apidiff.list("pods", "apidiff").items}
    assert "term-d" not in names and "term-h" in names
    assert apidiff.get("pods", "term-h", "apidiff")["metadata"]["deletionGracePeriodSeconds"] == 0
    got = endpoints_by_service(apidiff.list("endpointslices", "apidiff").items)
    assert all(e[0] != "term-d" for e in got["min"])
    apidiff.patch("pods", "term-h", {"metadata": {"finalizers": None}}, "apidiff")
    assert "term-h" not in {p["metadata"]["name"] for p in apidiff.list("pods", "apidiff").items}


def test_pod_delete_grace_rules(apidiff: Store) -> None:
    pending = apidiff.get("pods", "pending-c", "apidiff")
    assert not pending["spec"].get("nodeName") or pending["status"]["phase"] == "Pending"
    apidiff.delete("pods", "failed-g", "apidiff")  # a finished pod goes at once
    assert "failed-g" not in {p["metadata"]["name"] for p in apidiff.list("pods", "apidiff").items}
    first = apidiff.delete("pods", "ready-a", "apidiff")
    assert first["metadata"]["deletionGracePeriodSeconds"] == 30  # spec.terminationGracePeriodSeconds
    longer = apidiff.delete("pods", "ready-a", "apidiff", grace_period_seconds=600)
    assert longer["metadata"] == first["metadata"]  # a later delete never lengthens the grace period
    shorter = apidiff.delete("pods", "ready-a", "apidiff", grace_period_seconds=5)
    assert shorter["metadata"]["deletionGracePeriodSeconds"] == 5
    apidiff.delete("pods", "ready-a", "apidiff", grace_period_seconds=0)
    assert "ready-a" not in {p["metadata"]["name"] for p in apidiff.list("pods", "apidiff").items}


def test_the_lab_kubelet_stand_in_deletes_terminating_pods_when_their_grace_ends(apidiff: Store) -> None:

    from lab.apiserver.graceful import GracefulDeleter

    deleter = GracefulDeleter(apidiff)
    deleter.start()
    try:
        apidiff.delete("pods", "ready-a", "apidiff", grace_period_seconds=1)
        assert apidiff.get("pods", "ready-a", "apidiff")["metadata"]["deletionTimestamp"]
        eventually(
            lambda: {p["metadata"]["name"] for p in apidiff.list("pods", "apidiff").items},
            lambda names: "ready-a" not in names,
            deadline_s=30,
            what="the pod gone once its grace period ended",
        )
        assert "term-h" in {p["metadata"]["name"] for p in apidiff.list("pods", "apidiff").items}
    finally:
        deleter.stop()


# --------------------------------------------------------------------------------- pagination


def namespaces(store: Store, *names: str) -> None:
    for name in names:
        store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def decode_continue(token: str) -> dict[str, Any]:
    import base64

    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    return decoded


def test_continue_tokens_encode_the_list_version_and_pages_are_a_snapshot() -> None:
    real_token = decode_continue(real("page-labelselector-limit1")["body"]["metadata"]["continue"])
    store = Store()
    namespaces(store, "apps", "shop")
    first = store.list("namespaces", limit=2)
    token = decode_continue(first.continue_token or "")
    assert set(token) == set(real_token) and token["v"] == real_token["v"] == "meta.k8s.io/v1"
    assert token["rv"] == int(first.resource_version) and token["start"].endswith("\x00")
    namespaces(store, "zz-after-page-one")
    store.delete("namespaces", "shop")
    rest = store.list("namespaces", limit=100, continue_token=first.continue_token)
    assert rest.resource_version == first.resource_version  # the page-1 snapshot, as page-consistency-p2.real
    listed = [o["metadata"]["name"] for o in (*first.items, *rest.items)]
    assert "zz-after-page-one" not in listed and "shop" in listed
    assert listed == sorted(listed)


def test_a_selector_list_has_no_remaining_item_count_like_the_real_server() -> None:
    recorded = real("page-labelselector-limit1")["body"]["metadata"]
    store = Store()
    for name in ("api-1", "api-2"):
        store.create(
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "labels": {"app": "api"}}}
        )
    page = store.list("pods", label_selector="app=api", limit=1)
    assert "remainingItemCount" not in recorded and page.remaining_item_count is None and page.continue_token


def test_resource_version_zero_ignores_the_limit_like_the_watch_cache() -> None:
    store = Store()
    listed = store.list("namespaces", limit=2, resource_version="0")
    assert len(listed.items) == 4 and listed.continue_token is None


def test_a_continue_after_compaction_is_410_with_a_fresh_inconsistent_token() -> None:
    recorded = real("err-410-expired-continue")
    store = Store(history_size=8)
    namespaces(store, "a1", "a2", "a3")
    first = store.list("namespaces", limit=2)
    for index in range(10):
        namespaces(store, f"churn-{index}")
    with pytest.raises(Expired) as expired:
        store.list("namespaces", limit=2, continue_token=first.continue_token)
    status = expired.value.to_status()
    want = recorded["body"]
    assert (expired.value.code, status["reason"], status["message"]) == (recorded["status"], want["reason"], want["message"])
    fresh = decode_continue(status["metadata"]["continue"])
    real_fresh = decode_continue(want["metadata"]["continue"])
    assert fresh["rv"] == real_fresh["rv"] == -1
    assert fresh["start"] == decode_continue(first.continue_token or "")["start"]
    # the fresh token pages on over current data
    rest = store.list("namespaces", limit=100, continue_token=status["metadata"]["continue"])
    assert "churn-9" in {o["metadata"]["name"] for o in rest.items}


def test_exact_list_of_a_compacted_version_is_410_and_bad_continue_is_400() -> None:
    from lab.apiserver import BadRequest

    store = Store(history_size=2)
    namespaces(store, "b1", "b2", "b3")
    with pytest.raises(Expired) as too_old:
        store.list("namespaces", resource_version="2", resource_version_match="Exact")
    assert too_old.value.code == real("err-410-list-exact-old-rv")["status"] == 410
    recorded = real("err-400-bad-continue")
    with pytest.raises(BadRequest) as bad:
        store.list("pods", limit=2, continue_token="garbage")
    assert bad.value.code == recorded["status"] == 400
    assert bad.value.message.startswith("invalid continue token: continue key is not valid:")
    assert recorded["body"]["message"].startswith("invalid continue token: continue key is not valid:")


# ---------------------------------------------------------------------------- field selectors


def test_field_selectors_are_accepted_refused_and_compared_like_the_real_server() -> None:
    from lab.apiserver import BadRequest

    store = Store()
    refused = real("fieldsel-endpointslices-addressType_IPv4")
    with pytest.raises(BadRequest) as caught:
        store.list("endpointslices", field_selector="addressType=IPv4")
    assert (caught.value.code, caught.value.message) == (refused["status"], refused["body"]["message"])
    for name, host_network in (("plain", None), ("agent", True), ("off", False)):
        spec: dict[str, Any] = {"nodeName": "node-1", "containers": [{"name": "c", "image": "x"}]}
        if host_network is not None:
            spec["hostNetwork"] = host_network
        store.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": spec})
    store.patch(
        "pods", "plain", {"status": {"podIP": "10.244.1.4", "podIPs": [{"ip": "10.244.1.4"}]}}, "default", subresource="status"
    )
    # spec.hostNetwork!=false: only pods that set it (absent compares as "false"), as the real 3 agent pods
    assert [p["metadata"]["name"] for p in store.list("pods", field_selector="spec.hostNetwork!=false").items] == ["agent"]
    # status.podIPs is accepted but selects nothing (the real one answered 200 with no items)
    assert real("fieldsel-pods-status.podIPs_10.244.1.4")["body"]["items"] == []
    assert store.list("pods", field_selector="status.podIPs=10.244.1.4").items == []
    assert [p["metadata"]["name"] for p in store.list("pods", field_selector="status.podIP=10.244.1.4").items] == ["plain"]
    store.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}, "spec": {}})
    nodes = real("fieldsel-nodes-spec.unschedulable_false")["body"]["items"]
    assert nodes and all("unschedulable" not in n["spec"] for n in nodes)
    assert [n["metadata"]["name"] for n in store.list("nodes", field_selector="spec.unschedulable=false").items] == ["node-1"]


# ------------------------------------------------------------------------------------ errors


def test_an_invalid_service_is_422_with_every_cause_like_the_real_server() -> None:
    from lab.apiserver import Invalid

    recorded = real("err-422-invalid-service")
    store = Store()
    store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
    bad = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "Bad_Name", "namespace": "shop"},
        "spec": {"ports": [{"port": 99999, "targetPort": 99999}]},
    }
    with pytest.raises(Invalid) as caught:
        store.create(bad)
    assert (caught.value.code, caught.value.to_status()) == (recorded["status"], recorded["body"])


# ------------------------------------------------------------------------------------ objects


def without_allocations(spec: dict[str, Any]) -> dict[str, Any]:
    """A Service spec without the values the server picks at random (addresses and node ports)."""
    out = {k: v for k, v in spec.items() if k not in SERVER_ALLOCATED or v in ("None", ["None"])}
    out["ports"] = [{k: v for k, v in p.items() if k != "nodePort"} for p in spec.get("ports") or []] or None
    return out


def test_services_get_the_real_defaults_and_node_port_allocations(apidiff: Store) -> None:
    for recorded in real("scenario-services-apidiff")["body"]["items"]:
        name = recorded["metadata"]["name"]
        lab = apidiff.get("services", name, "apidiff")
        assert without_allocations(lab["spec"]) == without_allocations(recorded["spec"]), name
        assert "generation" not in lab["metadata"] and "generation" not in recorded["metadata"]
        for lab_port, real_port in zip(lab["spec"].get("ports") or [], recorded["spec"].get("ports") or [], strict=True):
            assert ("nodePort" in lab_port) == ("nodePort" in real_port), name
            if "nodePort" in lab_port:
                assert 30000 <= lab_port["nodePort"] <= 32767
        assert ("healthCheckNodePort" in lab["spec"]) == ("healthCheckNodePort" in recorded["spec"]), name
        if recorded["spec"].get("clusterIP") not in (None, "None"):
            assert lab["spec"]["clusterIP"] != "10.96.0.1"  # always default/kubernetes's
    assert apidiff.get("services", "lb-local", "apidiff")["spec"]["healthCheckNodePort"] in range(30000, 32768)


def test_the_kubernetes_service_its_slice_and_the_service_cidr_are_there_like_upstream() -> None:
    from lab.apiserver.bootstrap import bootstrap_cluster_objects

    recorded = next(s for s in real("list-services-all")["body"]["items"] if s["metadata"]["name"] == "kubernetes")
    store = Store()
    controller = EndpointSliceController(store)
    controller.start()
    try:
        bootstrap_cluster_objects(store, service_cidr="10.96.0.0/12", advertise_address="10.240.0.11")
        bootstrap_cluster_objects(store, service_cidr="10.96.0.0/12", advertise_address="10.240.0.11")  # idempotent
        svc = store.get("services", "kubernetes", "default")
        assert svc["metadata"]["labels"] == recorded["metadata"]["labels"]
        spec = {k: v for k, v in svc["spec"].items()}
        want = dict(recorded["spec"])
        for s in (spec, want):
            s["ports"] = [{k: v for k, v in p.items() if k != "targetPort"} for p in s["ports"]]  # the secure port differs
        assert spec == want and svc["spec"]["clusterIP"] == "10.96.0.1"
        (endpoint_slice,) = store.list("endpointslices", "default", label_selector="kubernetes.io/service-name=kubernetes").items
        assert "endpointslice.kubernetes.io/managed-by" not in endpoint_slice["metadata"]["labels"]
        assert endpoint_slice["endpoints"][0]["addresses"] == ["10.240.0.11"]
        (cidr,) = store.list("servicecidrs").items
        assert cidr["spec"]["cidrs"] == ["10.96.0.0/12"] and cidr["metadata"]["name"] == "kubernetes"
        # a Service created later never gets the first address
        store.create(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {"ports": [{"port": 80}]},
            }
        )
        assert store.get("services", "web", "default")["spec"]["clusterIP"] != "10.96.0.1"
    finally:
        controller.stop()


def test_seeded_objects_own_each_other_by_their_real_uids_and_statefulset_pods_have_hostnames() -> None:
    from lab.objects import seed_objects, seed_store
    from lab.plan import LabOptions, make_plan
    from lab.spec import load_spec

    plan = make_plan(load_spec(None), LabOptions(prefix="t", nodes=3, cni="flannel-vxlan", proxy="iptables"))
    store = Store(
        namespaces=[
            n
            for n in ("default", "kube-system", "kube-public", "kube-node-lease")
            if n not in {ns.name for ns in plan.spec.namespaces}
        ]
    )
    controller = EndpointSliceController(store)
    controller.start()
    try:
        agents = {n.name: f"127.0.0.1:{7000 + i}" for i, n in enumerate(plan.nodes)}
        created = seed_store(store, seed_objects(plan, agents))
    finally:
        controller.stop()
    uids = {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o["metadata"]["uid"] for o in created}
    owned = [o for o in created if o["metadata"].get("ownerReferences")]
    assert owned
    for obj in owned:
        for ref in obj["metadata"]["ownerReferences"]:
            assert ref["uid"] == uids[(ref["kind"], obj["metadata"].get("namespace", ""), ref["name"])], obj["metadata"]["name"]
    recorded = {p["metadata"]["name"]: p for p in real("list-pods-all")["body"]["items"]}
    redis = store.get("pods", "redis-0", "shop")
    assert (redis["spec"]["hostname"], redis["spec"]["subdomain"]) == (
        recorded["redis-0"]["spec"]["hostname"],
        recorded["redis-0"]["spec"]["subdomain"],
    )
    assert (
        redis["metadata"]["labels"]["apps.kubernetes.io/pod-index"]
        == recorded["redis-0"]["metadata"]["labels"]["apps.kubernetes.io/pod-index"]
    )
    real_slice = next(
        s
        for s in real("list-endpointslices-all")["body"]["items"]
        if s["metadata"]["labels"]["kubernetes.io/service-name"] == "redis"
    )
    lab_slice = store.list("endpointslices", "shop", label_selector="kubernetes.io/service-name=redis").items[0]
    assert (
        [e.get("hostname") for e in lab_slice["endpoints"]] == [e.get("hostname") for e in real_slice["endpoints"]] == ["redis-0"]
    )


def test_a_label_selector_cut_inside_a_set_is_400_with_the_real_message() -> None:
    from lab.apiserver import BadRequest

    recorded = real("err-400-bad-label-selector")
    with pytest.raises(BadRequest) as caught:
        Store().list("pods", label_selector="app in (a")
    assert (caught.value.code, caught.value.to_status()) == (recorded["status"], recorded["body"])


def test_table_ages_are_written_as_kubectl_writes_them() -> None:
    from lab.apiserver.tables import human_duration

    recorded_age = real("table-pods-shop")["body"]["rows"][0]["cells"][4]
    assert recorded_age == human_duration(4 * 60 + 1) == "4m1s"
    assert [human_duration(s) for s in (5, 119, 600, 3 * 3600 + 300, 49 * 3600, 30 * 86400)] == [
        "5s",
        "119s",
        "10m",
        "3h5m",
        "2d1h",
        "30d",
    ]


def test_pods_get_the_real_defaults() -> None:
    recorded = real("get-pod-redis-0")["body"]
    store = Store(namespaces=["shop"])
    container = {k: recorded["spec"]["containers"][0][k] for k in ("name", "image", "ports")}
    store.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "redis-0", "namespace": "shop"},
            "spec": {"nodeName": "node-2", "hostname": "redis-0", "subdomain": "redis", "containers": [container]},
        }
    )
    lab = store.get("pods", "redis-0", "shop")
    # everything but the service-account token volume (admission) and its mount
    want_spec = {k: v for k, v in recorded["spec"].items() if k != "volumes"}
    want_spec["containers"] = [{k: v for k, v in c.items() if k != "volumeMounts"} for c in want_spec["containers"]]
    assert lab["spec"] == want_spec
    assert lab["status"]["qosClass"] == recorded["status"]["qosClass"] == "BestEffort"
