"""The lab's kubelet and the start-up's readiness checks, on plain data: IP allocation, what a pod from
the API becomes in the lab, when the spec counts as Ready, and when kube-proxy counts as synced."""

from __future__ import annotations

from typing import Any

import pytest

from lab.errors import LabError
from lab.plan import LabOptions, LabPlan, make_plan
from lab.spec import load_spec
from lab.upstream.control import pending_workloads, synced_from_metrics
from lab.upstream.kubelet import PodAddresses
from lab.upstream.placement import container_ports, pod_plan


@pytest.fixture(scope="module")
def plan() -> LabPlan:
    return make_plan(load_spec(), LabOptions(prefix="kkl", nodes=2, cni="calico"))


def _pod(namespace: str, name: str, labels: dict[str, str], owner: str, *, ready: bool = True, ports: Any = ()) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": namespace,
            "name": name,
            "uid": f"uid-{name}",
            "labels": labels,
            "ownerReferences": [{"kind": owner, "name": name.rsplit("-", 1)[0], "controller": True}],
        },
        "spec": {"containers": [{"name": "c", "ports": list(ports)}]},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def test_addresses_come_from_the_node_cidr_in_turn_and_are_not_reused_at_once(plan: LabPlan) -> None:
    ipam = PodAddresses(plan.nodes[0])
    first, second = ipam.allocate(), ipam.allocate()
    assert (first, second) == ("10.244.1.2", "10.244.1.3")
    ipam.release(first)
    assert ipam.allocate() == "10.244.1.4", "host-local hands out the next address, not the one just freed"


def test_addresses_wrap_around_and_run_out_with_a_clear_message(plan: LabPlan) -> None:
    ipam = PodAddresses(plan.nodes[1])
    given = [ipam.allocate() for _ in range(249)]
    assert given[0] == "10.244.2.2" and given[-1] == "10.244.2.250"
    with pytest.raises(LabError, match=r"no free pod address left in 10\.244\.2\.0/24"):
        ipam.allocate()
    ipam.release("10.244.2.7")
    assert ipam.allocate() == "10.244.2.7"


def test_an_api_pod_becomes_a_lab_pod_with_the_specs_role(plan: LabPlan) -> None:
    pod = _pod(
        "kube-system", "coredns-6f9c7d-abcde", {"k8s-app": "kube-dns", "pod-template-hash": "6f9c7d"}, "ReplicaSet",
        ports=[{"name": "dns", "containerPort": 53, "protocol": "UDP"}, {"containerPort": 9153}],
    )  # fmt: skip
    built = pod_plan(plan, pod, plan.nodes[0], "10.244.1.9")
    assert built.netns == "kkl-pod-kube-system-coredns-6f9c7d-abcde"
    assert built.host_veth.startswith("cali") and len(built.host_veth) <= 15
    assert (built.ip, built.node, built.role, built.workload_kind, built.workload_name) == (
        "10.244.1.9", "node-1", "dns", "Deployment", "coredns",
    )  # fmt: skip
    assert [(p.port, p.protocol, p.name) for p in built.ports] == [(53, "UDP", "dns"), (9153, "TCP", None)]
    assert built.mtu == 1450


def test_a_pod_of_no_spec_workload_is_an_app_with_its_own_ports(plan: LabPlan) -> None:
    pod = _pod("default", "debug-1", {"run": "debug"}, "ReplicaSet", ports=[{"containerPort": 8080}])
    built = pod_plan(plan, pod, plan.nodes[1], "10.244.2.5")
    assert built.role == "app"
    assert container_ports(pod)[0].port == 8080


def _spec_pods(plan: LabPlan, *, ready: bool = True) -> list[dict[str, Any]]:
    owners = {"Deployment": "ReplicaSet", "StatefulSet": "StatefulSet", "DaemonSet": "DaemonSet"}
    pods = [_pod(p.namespace, p.name, dict(p.labels), owners[p.workload_kind], ready=ready) for p in plan.pods]
    agent = {"app.kubernetes.io/name": "kubereach-agent", "app.kubernetes.io/component": "agent"}
    pods += [_pod("kube-system", f"kubereach-agent-{n.index}", agent, "DaemonSet", ready=ready) for n in plan.nodes]
    return pods


def test_the_spec_is_ready_when_every_workload_has_its_ready_pods(plan: LabPlan) -> None:
    assert pending_workloads(plan, _spec_pods(plan)) == []


def test_missing_not_ready_or_terminating_pods_are_named(plan: LabPlan) -> None:
    pods = _spec_pods(plan)
    api = [p for p in pods if p["metadata"]["labels"].get("app") == "api"]
    api[0]["status"]["conditions"][0]["status"] = "False"
    api[1]["metadata"]["deletionTimestamp"] = "2026-12-06T07:00:00Z"
    pods = [p for p in pods if not p["metadata"]["name"].startswith("kubereach-agent-1")]
    assert pending_workloads(plan, pods) == [
        "Deployment shop/api (1/3 ready)",
        "DaemonSet kube-system/kubereach-agent (1/2 ready)",
    ]
    assert len(pending_workloads(plan, _spec_pods(plan, ready=False))) == len(plan.spec.workloads) + 1


METRICS = """# HELP kubeproxy_sync_proxy_rules_last_timestamp_seconds [ALPHA] The last time proxy rules were successfully synced
# TYPE kubeproxy_sync_proxy_rules_last_timestamp_seconds gauge
kubeproxy_sync_proxy_rules_last_timestamp_seconds {value}
kubeproxy_sync_proxy_rules_duration_seconds_count 3
"""


@pytest.mark.parametrize(("value", "synced"), [("1.7654e+09", True), ("0", False)])
def test_kube_proxy_counts_as_synced_once_its_metrics_show_a_sync(value: str, synced: bool) -> None:
    assert synced_from_metrics(METRICS.format(value=value)) is synced


def test_metrics_without_the_sync_gauge_are_not_a_sync() -> None:
    assert synced_from_metrics("HTTP/1.0 503 Service Unavailable\r\n\r\n") is False
