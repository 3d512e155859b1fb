"""The lab's kubelet and CNI on real namespaces, driven through its API seam: it binds a controller's
pod where the spec says, builds it (namespace, address, servers), reports it as the node, and tears it
down when the pod is deleted; a hostNetwork pod gets the node's address. The API side is a recorder at
the `UpstreamApi` seam (the real API server is exercised by the `kubernetes`-marked tests)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lab import build, kernel, processes
from lab.plan import LabOptions, LabPlan, make_plan
from lab.spec import load_spec
from lab.state import LabState
from lab.upstream.client import ApiStatusError
from lab.upstream.kubelet import LabKubelet
from nodeagent.netns import netns_path, socket_in_netns
from tests.lab.labkit import unique_prefix

pytestmark = pytest.mark.lab


@dataclass
class RecordingApi:
    """Answers like the API server for what the kubelet sends, and records each call."""

    who: str
    calls: list[tuple[str, str, Any]] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)
    """Paths answered with 409 Conflict."""

    def create(self, path: str, body: dict[str, Any], *, exist_ok: bool = False) -> dict[str, Any]:
        self.calls.append(("POST", path, body))
        return body

    def merge_patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("PATCH", path, patch))
        return patch

    def delete(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        self.calls.append(("DELETE", path, body))
        if path in self.refuse:
            raise ApiStatusError("DELETE", path, 409, "Conflict", "the object has been modified")
        return {}


def _api_pod(name: str = "api-5b8d9c7f4-q2x7z", uid: str = "0b5f3c1e-api") -> dict[str, Any]:
    """A pod as the ReplicaSet controller creates it from the lab's Deployment template."""
    return {
        "metadata": {
            "namespace": "shop",
            "name": name,
            "uid": uid,
            "labels": {"app": "api", "pod-template-hash": "5b8d9c7f4"},
            "ownerReferences": [{"kind": "ReplicaSet", "name": "api-5b8d9c7f4", "uid": "rs", "controller": True}],
        },
        "spec": {
            "schedulerName": "kubereach-lab",
            "containers": [
                {"name": "api", "image": "registry.local/api:lab", "ports": [{"name": "http", "containerPort": 8080}]}
            ],
        },
        "status": {"phase": "Pending"},
    }


def _agent_pod(node: str) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "kube-system",
            "name": "kubereach-agent-x9k2p",
            "uid": "0b5f3c1e-agent",
            "labels": {"app.kubernetes.io/name": "kubereach-agent"},
            "ownerReferences": [{"kind": "DaemonSet", "name": "kubereach-agent", "uid": "ds", "controller": True}],
        },
        "spec": {"nodeName": node, "hostNetwork": True, "containers": [{"name": "agent", "image": "agent"}]},
        "status": {"phase": "Pending"},
    }


@dataclass
class Setup:
    plan: LabPlan
    kubelet: LabKubelet
    admin: RecordingApi
    node: RecordingApi


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    prefix = unique_prefix("kl")
    plan = make_plan(load_spec(), LabOptions(prefix=prefix, nodes=1))
    directory = tmp_path_factory.mktemp("kubelet")
    state = LabState(prefix=prefix, nodes=1, cni="flannel-vxlan", proxy="iptables", directory=str(directory), spec_file="")
    admin, node = RecordingApi("admin"), RecordingApi("node-1")
    kubelet = LabKubelet(state, plan, admin, {"node-1": node})  # type: ignore[arg-type]
    try:
        build.build_fabric(plan)
        yield Setup(plan, kubelet, admin, node)
    finally:
        try:
            kubelet.shutdown()
        finally:
            build.teardown_network(prefix)


def _serves(netns: str, ip: str, port: int) -> bool:
    sock = socket_in_netns(netns_path(netns), socket.AF_INET, socket.SOCK_STREAM)
    with sock:
        sock.settimeout(2)
        return sock.connect_ex((ip, port)) == 0


def test_a_controllers_pod_is_bound_built_and_reported_as_the_node(setup: Setup) -> None:
    pod, agent = _api_pod(), _agent_pod("node-1")
    setup.kubelet.pods._cache = {"shop/api": pod, "kube-system/agent": agent}
    setup.kubelet.sync_pods()

    bindings = [c for c in setup.admin.calls if c[1].endswith("/binding")]
    assert bindings == [
        (
            "POST",
            "/api/v1/namespaces/shop/pods/api-5b8d9c7f4-q2x7z/binding",
            {
                "apiVersion": "v1",
                "kind": "Binding",
                "metadata": {"name": "api-5b8d9c7f4-q2x7z", "namespace": "shop"},
                "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"},
            },
        )
    ]
    netns = f"{setup.plan.options.prefix}-pod-shop-api-5b8d9c7f4-q2x7z"
    assert kernel.netns_exists(netns)
    statuses = {c[1]: c[2]["status"] for c in setup.node.calls if c[0] == "PATCH" and c[1].endswith("/status")}
    api_status = statuses["/api/v1/namespaces/shop/pods/api-5b8d9c7f4-q2x7z/status"]
    assert api_status["podIP"].startswith("10.244.1.") and api_status["hostIP"] == "10.240.0.11"
    assert {c["type"]: c["status"] for c in api_status["conditions"]}["Ready"] == "True"
    assert _serves(netns, api_status["podIP"], 8080), "the pod's server listens on its container port"
    agent_status = statuses["/api/v1/namespaces/kube-system/pods/kubereach-agent-x9k2p/status"]
    assert agent_status["podIP"] == "10.240.0.11", "a hostNetwork pod has the node's address"
    assert not [c for c in setup.admin.calls if c[0] == "PATCH"], "status is reported with the node's identity, not the admin's"


def test_a_deleted_pod_is_torn_down_then_removed_with_grace_zero(setup: Setup) -> None:
    pod = setup.kubelet.pods._cache["shop/api"]
    built = setup.kubelet.built[pod["metadata"]["uid"]]
    pod["metadata"]["deletionTimestamp"] = "2026-12-06T07:00:00Z"
    setup.kubelet.sync_pods()
    assert not kernel.netns_exists(built.plan.netns)  # type: ignore[union-attr]
    assert not processes.alive(built.pid)
    assert ("DELETE", "/api/v1/namespaces/shop/pods/api-5b8d9c7f4-q2x7z", {
        "apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0, "preconditions": {"uid": "0b5f3c1e-api"},
    }) in setup.node.calls  # fmt: skip
    assert not Path(f"/etc/netns/{built.plan.netns}").exists()  # type: ignore[union-attr]


def test_one_pods_failure_does_not_hold_up_the_others(setup: Setup) -> None:
    stuck, fresh = _api_pod("api-5b8d9c7f4-stuck", "uid-stuck"), _api_pod("api-5b8d9c7f4-fresh", "uid-fresh")
    stuck["spec"]["nodeName"] = "node-1"
    stuck["metadata"]["deletionTimestamp"] = "2026-12-06T07:00:00Z"
    setup.node.refuse.add("/api/v1/namespaces/shop/pods/api-5b8d9c7f4-stuck")
    setup.kubelet.pods._cache = {"shop/stuck": stuck, "shop/fresh": fresh}
    setup.kubelet.sync_pods()
    assert ("DELETE", "/api/v1/namespaces/shop/pods/api-5b8d9c7f4-stuck") in [c[:2] for c in setup.node.calls]
    assert "uid-fresh" in setup.kubelet.built and setup.kubelet.built["uid-fresh"].reported
    assert kernel.netns_exists(f"{setup.plan.options.prefix}-pod-shop-api-5b8d9c7f4-fresh")
