"""Service and EndpointSlice dicts in the API JSON shape, shared by the kube-proxy tests (no tests here)."""

from __future__ import annotations

from typing import Any

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


def service(
    namespace: str,
    name: str,
    cluster_ip: str,
    port: int = 80,
    port_name: str = "p80",
    *,
    node_port: int | None = None,
    affinity_seconds: int | None = None,
    protocol: str = "TCP",
    **spec: Any,
) -> dict[str, Any]:
    """A core/v1 Service with one port."""
    svc_port: dict[str, Any] = {"name": port_name, "port": port, "protocol": protocol}
    body: dict[str, Any] = {"clusterIP": cluster_ip, "type": "ClusterIP", "ports": [svc_port], **spec}
    if node_port is not None:
        svc_port["nodePort"] = node_port
        body["type"] = "NodePort"
    if affinity_seconds is not None:
        body["sessionAffinity"] = "ClientIP"
        body["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": affinity_seconds}}
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": namespace, "name": name},
            "spec": body}


def endpoint(ip: str, *, ready: bool | None = True, serving: bool | None = None,
             terminating: bool | None = None, node: str | None = None) -> dict[str, Any]:
    """One entry of EndpointSlice.endpoints."""
    conditions: dict[str, Any] = {}
    if ready is not None:
        conditions["ready"] = ready
    if serving is not None:
        conditions["serving"] = serving
    if terminating is not None:
        conditions["terminating"] = terminating
    entry: dict[str, Any] = {"addresses": [ip], "conditions": conditions}
    if node is not None:
        entry["nodeName"] = node
    return entry


def endpoint_slice(namespace: str, service_name: str, endpoints: list[dict[str, Any]], port: int = 80,
                   port_name: str = "p80", protocol: str = "TCP", suffix: str = "abcde") -> dict[str, Any]:
    """A discovery.k8s.io/v1 EndpointSlice with one port."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"namespace": namespace, "name": f"{service_name}-{suffix}",
                     "labels": {SERVICE_NAME_LABEL: service_name}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": port_name, "port": port, "protocol": protocol}],
    }
