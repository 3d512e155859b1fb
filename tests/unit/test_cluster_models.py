"""Parsing API dicts into bot.cluster's models, suggestions and agent addresses (pure, no server)."""

from __future__ import annotations

from typing import Any

from bot.cluster import NamedObject, addresses_from_pods, suggest
from bot.cluster.models import endpoints_of_slice, node_info, pod_info, service_info


def _pod(**overrides: Any) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "kind": "Pod",
        "metadata": {
            "name": "web-7d9f-abcde",
            "namespace": "shop",
            "labels": {"app": "web", "pod-template-hash": "7d9f"},
            "ownerReferences": [{"kind": "ReplicaSet", "name": "web-7d9f", "controller": True}],
        },
        "spec": {"nodeName": "node-1", "containers": [{"name": "web", "ports": [{"containerPort": 8080, "name": "http"}]}]},
        "status": {"phase": "Running", "podIP": "10.244.1.9", "conditions": [{"type": "Ready", "status": "True"}]},
    }
    pod.update(overrides)
    return pod


def test_pod_of_a_replicaset_belongs_to_its_deployment_by_template_hash_or_owner_map() -> None:
    info = pod_info(_pod())
    assert (info.owner_kind, info.owner_name, info.workload_kind, info.workload_name) == (
        "ReplicaSet",
        "web-7d9f",
        "Deployment",
        "web",
    )
    assert info.container_ports[0].protocol == "TCP" and info.ready and info.reason is None
    bare = pod_info(_pod(), {})
    assert bare.workload_kind == "Deployment"
    not_in_map = pod_info(_pod(), {("shop", "other"): ("Deployment", "x")})
    assert not_in_map.workload_name == "web"
    explicit = pod_info(_pod(), {("shop", "web-7d9f"): ("Rollout", "web")})
    assert (explicit.workload_kind, explicit.workload_name) == ("Rollout", "web")


def test_pod_reasons_terminating_unschedulable_and_waiting() -> None:
    deleting = _pod()
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert pod_info(deleting).reason == "Terminating"
    pending = _pod(
        status={"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}
    )
    info = pod_info(pending)
    assert (info.reason, info.ip, info.ready, info.running) == ("Unschedulable", None, False, False)
    pulling = _pod(
        status={
            "phase": "Pending",
            "containerStatuses": [{"state": {"waiting": {"reason": "ImagePullBackOff"}}, "restartCount": 0}],
        }
    )
    assert pod_info(pulling).reason == "ImagePullBackOff"


def test_service_headless_selectorless_and_string_target_ports() -> None:
    headless = service_info(
        {
            "metadata": {"name": "db", "namespace": "shop"},
            "spec": {
                "clusterIP": "None",
                "ports": [{"port": 5432, "targetPort": "5432"}, {"port": 8008, "targetPort": "patroni"}],
            },
        }
    )
    assert headless.cluster_ip is None and headless.headless and headless.selector is None
    assert [p.target_port for p in headless.ports] == [5432, "patroni"]
    assert not headless.selects({"app": "db"})
    selected = service_info(
        {"metadata": {"name": "a", "namespace": "n"}, "spec": {"clusterIP": "10.96.0.5", "selector": {"app": "a"}}}
    )
    assert selected.selects({"app": "a", "extra": "1"}) and not selected.selects({"app": "b"})


def test_endpoint_conditions_follow_the_api_defaults() -> None:
    endpoints = endpoints_of_slice(
        {
            "metadata": {"name": "api-x", "namespace": "shop"},
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["10.244.1.4", "10.244.1.5"], "targetRef": {"kind": "Pod", "name": "api-1"}},
                {
                    "addresses": ["10.244.2.4"],
                    "conditions": {"ready": False, "serving": True, "terminating": True},
                    "nodeName": "node-2",
                },
            ],
        }
    )
    first, second, third = endpoints
    assert (first.ready, first.serving, first.terminating, first.pod_namespace, first.pod_name) == (
        True,
        True,
        False,
        "shop",
        "api-1",
    )
    assert second.ip == "10.244.1.5"
    assert (third.ready, third.serving, third.terminating, third.node, third.pod_name) == (False, True, True, "node-2", None)
    assert first.port_for("http", "TCP") == 8080 and first.port_for("http", "UDP") is None


def test_node_info_reads_internal_ip_cidr_and_readiness() -> None:
    node = node_info(
        {
            "metadata": {"name": "n1"},
            "spec": {"podCIDRs": ["10.244.9.0/24"]},
            "status": {
                "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.9"}],
                "conditions": [{"type": "Ready", "status": "False"}],
            },
        }
    )
    assert (node.internal_ip, node.pod_cidr, node.ready) == ("10.0.0.9", "10.244.9.0/24", False)


def test_suggestions_rank_exact_names_then_prefixes_then_spelling() -> None:
    objects = [
        NamedObject("Service", "shop", "api"),
        NamedObject("Deployment", "shop", "apis"),
        NamedObject("Pod", "shop", "web-7d9f-abcde", "Deployment", "web"),
        NamedObject("Service", "shop", "web"),
    ]
    assert suggest("api", objects)[0] == "svc/api in shop"
    assert suggest("web-7d9", objects, kinds=["Pod"])[0] == "deploy/web in shop"
    assert suggest("wbe", objects, kinds=["Service"]) == ("svc/web in shop", "deploy/web in shop")
    assert suggest("zzz", objects) == ()


def test_agent_addresses_prefer_annotation_then_pod_ip_and_running_pods() -> None:
    pods: list[dict[str, Any]] = [
        {"metadata": {"annotations": {"kubereach.io/agent-address": "127.0.0.1:9001"}}, "spec": {"nodeName": "a"}, "status": {}},
        {"metadata": {}, "spec": {"nodeName": "b"}, "status": {"phase": "Pending", "podIP": "10.0.0.2"}},
        {"metadata": {}, "spec": {"nodeName": "b"}, "status": {"phase": "Running", "podIP": "10.0.0.3"}},
        {"metadata": {}, "spec": {"nodeName": "c"}, "status": {"phase": "Running", "podIP": "fd00::3"}},
        {"metadata": {}, "spec": {}, "status": {"phase": "Running", "podIP": "10.0.0.4"}},
    ]
    assert addresses_from_pods(pods, 7443) == {"a": "127.0.0.1:9001", "b": "10.0.0.3:7443", "c": "[fd00::3]:7443"}
