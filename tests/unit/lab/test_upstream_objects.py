"""What the lab creates through the real API from the spec: valid objects upstream accepts (checked
against the Kubernetes schemas), only what a user would create, with the spec's names, labels,
replicas and ClusterIPs, and pods that name the lab as their scheduler."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from lab.plan import LabOptions, LabPlan, make_plan
from lab.spec import load_spec
from lab.upstream import objects

SCHEMA = kubernetes_validate.utils.latest_version()


@pytest.fixture(scope="module")
def plan() -> LabPlan:
    return make_plan(load_spec(), LabOptions(prefix="kuo", nodes=3))


@pytest.fixture(scope="module")
def created(plan: LabPlan) -> list[dict[str, Any]]:
    return objects.cluster_objects(plan)


def _find(objs: list[dict[str, Any]], kind: str, namespace: str, name: str) -> dict[str, Any]:
    return next(
        o for o in objs if o["kind"] == kind and o["metadata"].get("namespace") == namespace and o["metadata"]["name"] == name
    )


def test_every_created_object_is_valid_for_the_api(created: list[dict[str, Any]], plan: LabPlan) -> None:
    extra = [objects.node(plan, n) for n in plan.nodes]
    extra.append(objects.binding("shop", "api-x", "node-1"))
    extra.append(objects.node_lease("node-1", 40))
    for obj in [*created, *extra]:
        kubernetes_validate.validate(obj, SCHEMA, strict=True)


def test_no_server_set_field_is_sent(created: list[dict[str, Any]]) -> None:
    for obj in created:
        assert "status" not in obj
        assert not {"uid", "creationTimestamp", "resourceVersion", "generation"} & set(obj["metadata"])


def test_only_what_a_user_creates_controllers_make_the_rest(created: list[dict[str, Any]]) -> None:
    kinds = {o["kind"] for o in created}
    assert kinds == {"Namespace", "Service", "NetworkPolicy", "Deployment", "StatefulSet", "DaemonSet"}
    assert not {"Pod", "ReplicaSet", "EndpointSlice", "Endpoints"} & kinds


def test_namespaces_first_and_only_those_the_server_does_not_make(created: list[dict[str, Any]]) -> None:
    names = [o["metadata"]["name"] for o in created if o["kind"] == "Namespace"]
    assert names == ["shop", "payments", "monitoring"]
    assert all(o["kind"] == "Namespace" for o in created[: len(names)])
    assert _find(created, "Namespace", None, "payments")["metadata"]["labels"] == {"team": "payments", "pci": "true"}  # type: ignore[arg-type]


def test_workloads_carry_the_specs_replicas_selectors_and_ports(created: list[dict[str, Any]], plan: LabPlan) -> None:
    for w in plan.spec.workloads:
        obj = _find(created, w.kind, w.namespace, w.name)
        assert obj["spec"]["selector"] == {"matchLabels": w.labels}
        template = obj["spec"]["template"]
        assert template["metadata"]["labels"] == w.labels
        assert template["spec"]["schedulerName"] == objects.LAB_SCHEDULER
        ports = template["spec"]["containers"][0].get("ports", [])
        assert [(p["containerPort"], p["protocol"], p.get("name")) for p in ports] == [
            (p.port, p.protocol, p.name) for p in w.ports
        ]
        if w.kind != "DaemonSet":
            assert obj["spec"]["replicas"] == w.replicas
    assert _find(created, "StatefulSet", "shop", "redis")["spec"]["serviceName"] == "redis"


def test_services_keep_the_plans_cluster_ips(created: list[dict[str, Any]], plan: LabPlan) -> None:
    for svc in plan.services:
        obj = _find(created, "Service", svc.namespace, svc.name)
        if svc.external_name is not None:
            assert obj["spec"] == {"type": "ExternalName", "externalName": svc.external_name, "ports": []}
            continue
        assert obj["spec"]["clusterIP"] == svc.cluster_ip
        assert obj["spec"]["selector"] == dict(svc.selector or ())
    assert _find(created, "Service", "kube-system", "kube-dns")["spec"]["clusterIP"] == "10.96.0.10"
    frontend = _find(created, "Service", "shop", "frontend")["spec"]["ports"]
    assert frontend == [{"port": 80, "protocol": "TCP", "targetPort": "http", "name": "http"}]


def test_the_agent_daemonset_is_host_network_and_scheduled_by_the_lab(created: list[dict[str, Any]]) -> None:
    ds = _find(created, "DaemonSet", "kube-system", "kubereach-agent")
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True and pod["schedulerName"] == objects.LAB_SCHEDULER
    assert ds["spec"]["selector"]["matchLabels"] == ds["spec"]["template"]["metadata"]["labels"] == objects.AGENT_LABELS


def test_network_policies_are_the_specs(created: list[dict[str, Any]], plan: LabPlan) -> None:
    policy = _find(created, "NetworkPolicy", "payments", "ledger-ingress")
    assert policy["spec"] == plan.spec.network_policies[0]["spec"]


def test_each_object_has_the_path_it_is_created_at(created: list[dict[str, Any]]) -> None:
    paths = {(o["kind"], objects.collection_path(o)) for o in created}
    assert ("Namespace", "/api/v1/namespaces") in paths
    assert ("Service", "/api/v1/namespaces/shop/services") in paths
    assert ("Deployment", "/apis/apps/v1/namespaces/shop/deployments") in paths
    assert ("NetworkPolicy", "/apis/networking.k8s.io/v1/namespaces/payments/networkpolicies") in paths
    assert objects.collection_path(
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "r"}}
    ) == ("/apis/rbac.authorization.k8s.io/v1/clusterroles")
    with pytest.raises(ValueError, match="does not create Secret"):
        objects.collection_path({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "x"}})


def test_a_node_registers_with_its_pod_cidr_address_and_namespace(plan: LabPlan) -> None:
    node = plan.nodes[1]
    obj = objects.node(plan, node)
    assert obj["spec"] == {"podCIDR": "10.244.2.0/24", "podCIDRs": ["10.244.2.0/24"]}
    assert obj["metadata"]["annotations"][objects.NETNS_ANNOTATION] == "kuo-node-2"
    status = objects.node_status(node, "v1.36.2")["status"]
    assert status["addresses"] == [{"type": "InternalIP", "address": "10.240.0.12"}, {"type": "Hostname", "address": "node-2"}]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    assert status["nodeInfo"]["kubeletVersion"] == "v1.36.2"
    assert status["allocatable"]["pods"] == "110"
    kubernetes_validate.validate(
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"}, **objects.node_status(node, "v1")}, SCHEMA, strict=True
    )


def test_a_built_pods_status_is_running_and_ready_with_its_address() -> None:
    patch = objects.pod_status(
        "10.244.1.7", "10.240.0.11", [("api", "registry.local/api:lab")], ready=True, started_at="2026-12-06T07:00:00Z"
    )
    kubernetes_validate.validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, **patch}, SCHEMA, strict=True)
    status = patch["status"]
    assert (status["phase"], status["podIP"], status["podIPs"], status["hostIP"]) == (
        "Running", "10.244.1.7", [{"ip": "10.244.1.7"}], "10.240.0.11",
    )  # fmt: skip
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
    container = status["containerStatuses"][0]
    assert (container["name"], container["image"], container["ready"]) == ("api", "registry.local/api:lab", True)
    assert container["state"] == {"running": {"startedAt": "2026-12-06T07:00:00Z"}}
    not_ready = objects.pod_status(
        "10.244.1.7", "10.240.0.11", [("api", "registry.local/api:lab")], ready=False, started_at="2026-12-06T07:00:00Z"
    )
    assert {c["type"]: c["status"] for c in not_ready["status"]["conditions"]}["Ready"] == "False"


def test_the_lab_plays_the_cloud_for_load_balancer_services(created: list[dict[str, Any]], plan: LabPlan) -> None:
    """Without a cloud provider nothing fills status.loadBalancer: the lab patches each LB's ingress IP."""
    web = _find(created, "Service", "shop", "web")["spec"]
    assert web["type"] == "LoadBalancer" and web["ports"][0]["nodePort"] == 30081
    assert objects.load_balancer_statuses(plan) == [
        (
            "/api/v1/namespaces/shop/services/web/status",
            {"status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.10", "ipMode": "VIP"}]}}},
        )
    ]
    nodeport = _find(created, "Service", "shop", "frontend-nodeport")["spec"]
    assert nodeport["externalIPs"] == ["198.51.100.100"] and nodeport["externalTrafficPolicy"] == "Cluster"
