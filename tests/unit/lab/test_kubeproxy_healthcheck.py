"""Which health check node ports a node's kube-proxy serves, and the local endpoint count each reports."""

from __future__ import annotations

from typing import Any

from lab.kubeproxy.healthcheck import health_ports


def _svc(name: str, type_: str, policy: str, port: int | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": type_, "externalTrafficPolicy": policy}
    if port:
        spec["healthCheckNodePort"] = port
    return {"metadata": {"namespace": "shop", "name": name}, "spec": spec}


def _slice(service: str, *endpoints: tuple[str, str, bool]) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "shop", "labels": {"kubernetes.io/service-name": service}},
        "endpoints": [{"addresses": [ip], "nodeName": node, "conditions": {"ready": ready}} for ip, node, ready in endpoints],
    }


def test_only_local_load_balancers_get_a_health_check_port_counting_ready_local_endpoints() -> None:
    services = [
        _svc("web", "LoadBalancer", "Local", 31000),
        _svc("cluster-lb", "LoadBalancer", "Cluster", 31001),
        _svc("nodeport", "NodePort", "Local", None),
    ]
    slices = [_slice("web", ("10.244.1.2", "node-1", True), ("10.244.1.3", "node-1", False), ("10.244.2.2", "node-2", True))]
    assert health_ports(services, slices, "node-1") == {31000: ("shop", "web", 1)}
    assert health_ports(services, slices, "node-3") == {31000: ("shop", "web", 0)}
