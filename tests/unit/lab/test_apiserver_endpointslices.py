"""The EndpointSlice controller keeps slices equal to the ready, selected pods of each Service."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from lab.apiserver import ApiServer, EndpointSliceController, NotFound, Store, write_kubeconfig
from lab.apiserver.endpointslices import CONTROLLER_NAME, MANAGED_BY_LABEL, SERVICE_NAME_LABEL
from tests.polling import eventually

TOKEN = "lab-token-for-slice-tests"


@pytest.fixture
def store() -> Iterator[Store]:
    lab_store = Store()
    controller = EndpointSliceController(lab_store)
    controller.start()
    try:
        yield lab_store
    finally:
        controller.stop()


def service(name: str, selector: dict[str, str] | None, ports: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = {"ports": ports}
    if selector is not None:
        spec["selector"] = selector
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"}, "spec": spec}


def pod(
    name: str,
    ip: str | None,
    *,
    labels: dict[str, str] | None = None,
    ready: bool = True,
    phase: str = "Running",
    ports: list[dict[str, Any]] | None = None,
    node: str = "node-1",
) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if ip:
        status["podIP"] = ip
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels or {"app": "web"}},
        "spec": {"nodeName": node, "containers": [{"name": "main", "image": "lab", "ports": ports or []}]},
        "status": status,
    }


def slices(store: Store, svc: str = "web") -> list[dict[str, Any]]:
    return store.list("endpointslices", "default", label_selector=f"{SERVICE_NAME_LABEL}={svc}").items


def set_ready(store: Store, name: str, ready: bool) -> None:
    store.patch(
        "pods",
        name,
        {"status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}},
        "default",
        subresource="status",
    )


def test_slice_has_the_kubernetes_shape(store: Store) -> None:
    created = store.create(service("web", {"app": "web"}, [{"name": "http", "port": 80, "targetPort": 8080}]))
    store.create(pod("web-1", "10.244.1.5"))
    [endpoint_slice] = slices(store)
    meta = endpoint_slice["metadata"]
    assert re.fullmatch(r"web-[a-z]{5}", meta["name"])
    assert meta["labels"][SERVICE_NAME_LABEL] == "web"
    assert meta["labels"][MANAGED_BY_LABEL] == CONTROLLER_NAME
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "name": "web",
            "uid": created["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert endpoint_slice["addressType"] == "IPv4"
    assert endpoint_slice["ports"] == [{"name": "http", "protocol": "TCP", "port": 8080}]
    uid = store.get("pods", "web-1", "default")["metadata"]["uid"]
    assert endpoint_slice["endpoints"] == [
        {
            "addresses": ["10.244.1.5"],
            "conditions": {"ready": True, "serving": True, "terminating": False},
            "nodeName": "node-1",
            "targetRef": {"kind": "Pod", "name": "web-1", "namespace": "default", "uid": uid},
        }
    ]


def test_slice_name_is_stable_per_service(store: Store) -> None:
    store.create(service("web", {"app": "web"}, [{"port": 80}]))
    name = slices(store)[0]["metadata"]["name"]
    store.create(pod("web-1", "10.244.1.5"))
    store.patch("services", "web", {"spec": {"ports": [{"port": 81}]}}, "default")
    assert [s["metadata"]["name"] for s in slices(store)] == [name]
    assert slices(store)[0]["ports"][0]["port"] == 81


def test_endpoints_follow_pod_readiness_and_lifecycle(store: Store) -> None:
    store.create(service("web", {"app": "web"}, [{"port": 80}]))
    store.create(pod("web-1", "10.244.1.5", ready=False))

    def conditions() -> list[bool]:
        return [e["conditions"]["ready"] for e in slices(store)[0]["endpoints"] or []]

    assert conditions() == [False]
    set_ready(store, "web-1", True)
    assert conditions() == [True]
    store.patch("pods", "web-1", {"status": {"phase": "Pending"}}, "default", subresource="status")
    assert conditions() == [False]
    store.patch("pods", "web-1", {"status": {"phase": "Failed"}}, "default", subresource="status")
    assert conditions() == []
    store.create(pod("web-2", None))
    assert conditions() == []
    store.patch("pods", "web-2", {"status": {"podIP": "10.244.2.7"}}, "default", subresource="status")
    assert conditions() == [True]
    store.delete("pods", "web-2", "default", grace_period_seconds=0)
    assert conditions() == []


def test_unselected_pods_are_left_out_and_finished_pods_leave(store: Store) -> None:
    store.create(service("web", {"app": "web"}, [{"port": 80}]))
    store.create(pod("web-1", "10.244.1.5"))
    store.create(pod("other", "10.244.1.6", labels={"app": "other"}))
    assert [e["targetRef"]["name"] for e in slices(store)[0]["endpoints"] or []] == ["web-1"]
    store.patch("pods", "web-1", {"status": {"phase": "Succeeded"}}, "default", subresource="status")
    assert not slices(store)[0].get("endpoints")
    store.patch("pods", "other", {"metadata": {"labels": {"app": "web"}}}, "default")
    assert [e["targetRef"]["name"] for e in slices(store)[0]["endpoints"] or []] == ["other"]


def test_named_target_port_resolves_per_pod_and_splits_slices(store: Store) -> None:
    store.create(service("web", {"app": "web"}, [{"name": "http", "port": 80, "targetPort": "http"}]))
    store.create(pod("a", "10.244.1.1", ports=[{"name": "http", "containerPort": 8080}]))
    store.create(pod("b", "10.244.1.2", ports=[{"name": "http", "containerPort": 8080}]))
    store.create(pod("c", "10.244.1.3", ports=[{"name": "http", "containerPort": 9090}]))
    store.create(pod("d", "10.244.1.4", ports=[{"name": "metrics", "containerPort": 9100}]))
    by_ports = {
        tuple(p["port"] for p in s["ports"] or []): sorted(e["targetRef"]["name"] for e in s["endpoints"] or [])
        for s in slices(store)
    }
    assert by_ports == {(8080,): ["a", "b"], (9090,): ["c"], (): ["d"]}
    names = [s["metadata"]["name"] for s in slices(store)]
    assert len(set(names)) == 3 and all(re.fullmatch(r"web-[a-z]{5}", n) for n in names)
    store.delete("pods", "c", "default", grace_period_seconds=0)
    store.delete("pods", "d", "default", grace_period_seconds=0)
    assert [tuple(p["port"] for p in s["ports"]) for s in slices(store)] == [(8080,)]


def test_udp_named_port_needs_matching_protocol(store: Store) -> None:
    store.create(service("dns", {"app": "dns"}, [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": "dns"}]))
    store.create(
        pod("dns-1", "10.244.1.10", labels={"app": "dns"}, ports=[{"name": "dns", "containerPort": 5353, "protocol": "UDP"}])
    )
    store.create(pod("dns-2", "10.244.1.11", labels={"app": "dns"}, ports=[{"name": "dns", "containerPort": 5353}]))
    groups = {
        tuple((p["protocol"], p["port"]) for p in s["ports"] or []): [e["targetRef"]["name"] for e in s["endpoints"] or []]
        for s in slices(store, "dns")
    }
    assert groups == {(("UDP", 5353),): ["dns-1"], (): ["dns-2"]}


def test_statefulset_pods_get_their_hostname_on_the_governing_service(store: Store) -> None:
    store.create(service("db", {"app": "db"}, [{"port": 5432}]))
    member = pod("db-0", "10.244.1.20", labels={"app": "db"})
    member["spec"].update({"hostname": "db-0", "subdomain": "db"})
    store.create(member)
    store.create(pod("db-x", "10.244.1.21", labels={"app": "db"}))
    hostnames = {e["targetRef"]["name"]: e.get("hostname") for e in slices(store, "db")[0]["endpoints"]}
    assert hostnames == {"db-0": "db-0", "db-x": None}


def test_no_write_when_nothing_changes(store: Store) -> None:
    store.create(service("web", {"app": "web"}, [{"port": 80}]))
    store.create(pod("web-1", "10.244.1.5"))
    before = slices(store)[0]["metadata"]["resourceVersion"]
    store.patch("pods", "web-1", {"metadata": {"annotations": {"note": "unrelated"}}}, "default")
    set_ready(store, "web-1", True)
    store.create(pod("db-1", "10.244.1.9", labels={"app": "db"}))
    EndpointSliceController(store).sync_all()
    assert slices(store)[0]["metadata"]["resourceVersion"] == before


def test_services_without_selector_keep_their_slices(store: Store) -> None:
    store.create(service("external", None, [{"port": 443}]))
    manual = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "external-1", "namespace": "default", "labels": {SERVICE_NAME_LABEL: "external"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["192.0.2.10"]}],
        "ports": [{"name": "", "port": 443, "protocol": "TCP"}],
    }
    written = store.create(manual)
    store.create(pod("web-1", "10.244.1.5"))
    [kept] = slices(store, "external")
    assert kept["metadata"]["resourceVersion"] == written["metadata"]["resourceVersion"]


def test_deleting_the_service_deletes_its_slices_and_edits_are_reverted(store: Store) -> None:
    store.create(service("web", {"app": "web"}, [{"port": 80}]))
    store.create(pod("web-1", "10.244.1.5"))
    [managed] = slices(store)
    store.patch("endpointslices", managed["metadata"]["name"], {"endpoints": []}, "default")
    assert len(slices(store)[0]["endpoints"]) == 1
    store.delete("endpointslices", managed["metadata"]["name"], "default")
    assert [s["metadata"]["name"] for s in slices(store)] == [managed["metadata"]["name"]]
    store.delete("services", "web", "default")
    assert slices(store) == []
    with pytest.raises(NotFound):
        store.get("endpointslices", managed["metadata"]["name"], "default")


def test_controller_started_late_reconciles_existing_services() -> None:
    lab_store = Store()
    lab_store.create(service("web", {"app": "web"}, [{"port": 80}]))
    lab_store.create(pod("web-1", "10.244.1.5"))
    assert slices(lab_store) == []
    controller = EndpointSliceController(lab_store)
    controller.start()
    try:
        assert [e["addresses"] for e in slices(lab_store)[0]["endpoints"]] == [["10.244.1.5"]]
    finally:
        controller.stop()


def test_slices_follow_pods_written_through_the_official_client(store: Store) -> None:
    server = ApiServer(store, TOKEN)
    workdir = Path(tempfile.mkdtemp(prefix="kr-apiserver-slices-"))
    api_client = None
    try:
        url = server.start()
        api_client = config.new_client_from_config(config_file=str(write_kubeconfig(workdir / "kc", url, TOKEN)))
        core, disc = client.CoreV1Api(api_client), client.DiscoveryV1Api(api_client)
        core.create_namespaced_service(
            "default",
            client.V1Service(
                metadata=client.V1ObjectMeta(name="web"),
                spec=client.V1ServiceSpec(
                    selector={"app": "web"},
                    ports=[client.V1ServicePort(name="http", port=80, target_port="http")],
                ),
            ),
        )
        core.create_namespaced_pod(
            "default",
            client.V1Pod(
                metadata=client.V1ObjectMeta(name="web-1", labels={"app": "web"}),
                spec=client.V1PodSpec(
                    node_name="node-2",
                    containers=[
                        client.V1Container(
                            name="main", image="lab", ports=[client.V1ContainerPort(name="http", container_port=8080)]
                        )
                    ],
                ),
            ),
        )
        core.patch_namespaced_pod_status(
            "web-1",
            "default",
            {"status": {"phase": "Running", "podIP": "10.244.2.4", "conditions": [{"type": "Ready", "status": "False"}]}},
        )

        def endpoints() -> list[Any]:
            items = disc.list_namespaced_endpoint_slice("default", label_selector=f"{SERVICE_NAME_LABEL}=web").items
            return [e for s in items for e in s.endpoints or []]

        eventually(lambda: [e.conditions.ready for e in endpoints()] == [False], what="a not-ready endpoint")
        core.patch_namespaced_pod_status("web-1", "default", {"status": {"conditions": [{"type": "Ready", "status": "True"}]}})
        eventually(lambda: [e.conditions.ready for e in endpoints()] == [True], what="the endpoint to become ready")
        [endpoint_slice] = disc.list_namespaced_endpoint_slice("default").items
        assert endpoint_slice.ports[0].port == 8080 and endpoint_slice.ports[0].name == "http"
        assert endpoints()[0].node_name == "node-2" and endpoints()[0].target_ref.kind == "Pod"
        core.delete_namespaced_pod("web-1", "default", grace_period_seconds=0)
        eventually(lambda: endpoints() == [], what="the endpoint to go with its pod")
    finally:
        if api_client is not None:
            api_client.close()
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
