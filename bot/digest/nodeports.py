"""The digest's NodePort section: Services with externalTrafficPolicy Local and the nodes where what
arrives at their NodePort is dropped, because no ready endpoint of the Service runs there. Pure.

Why its own section: with `Local`, kube-proxy on a node without a local endpoint drops NodePort
traffic instead of forwarding it to another node (that is the point: the client's address is kept).
A cloud load balancer's health check (the Service's healthCheckNodePort) steers around those nodes;
a client or an LB that aims at one anyway gets silence. Knowing where that is, before someone asks
why "node-2:30080 does not answer", is what the digest is for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bot.digest.models import DigestItem, LocalTrafficService, Sweep

NODE_TYPES = frozenset({"NodePort", "LoadBalancer"})

ServiceSpec = tuple[str, str, str, str, Sequence[int]]
"""(namespace, name, type, externalTrafficPolicy, node ports) of one Service as the API serves it."""
EndpointNode = tuple[str | None, bool]
"""(node name, ready) of one EndpointSlice endpoint."""


def spec_of(obj: Mapping[str, Any]) -> ServiceSpec:
    """A `ServiceSpec` from a v1 Service dict (missing fields read as the API's defaults)."""
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    ports = [int(p["nodePort"]) for p in spec.get("ports") or [] if isinstance(p, Mapping) and p.get("nodePort")]
    return (
        str(meta.get("namespace") or "default"),
        str(meta.get("name") or ""),
        str(spec.get("type") or "ClusterIP"),
        str(spec.get("externalTrafficPolicy") or "Cluster"),
        ports,
    )


def local_traffic_services(
    specs: Iterable[ServiceSpec], endpoints: Mapping[str, Sequence[EndpointNode]]
) -> tuple[LocalTrafficService, ...]:
    """The NodePort/LoadBalancer Services with externalTrafficPolicy Local and their ready nodes.

    `endpoints`: ``namespace/name`` → (node, ready) of each endpoint of its slices.
    """
    out = []
    for namespace, name, kind, policy, node_ports in specs:
        if kind not in NODE_TYPES or policy != "Local" or not node_ports:
            continue
        ready = sorted({node for node, ok in endpoints.get(f"{namespace}/{name}", ()) if ok and node})
        out.append(LocalTrafficService(namespace, name, kind, tuple(sorted(set(node_ports))), tuple(ready)))
    return tuple(out)


def nodeport_items(sweep: Sweep, namespaces: Sequence[str]) -> tuple[str, list[DigestItem]]:
    """One problem per (Service, node) where the Service's NodePorts drop what arrives."""
    nodes = sorted(n.name for n in sweep.nodes)
    services = [s for s in sorted(sweep.local_traffic, key=lambda s: s.key) if not namespaces or s.namespace in namespaces]
    items: list[DigestItem] = []
    for service in services:
        ports = ", ".join(str(p) for p in service.node_ports)
        steer = " (the load balancer's health check should skip it)" if service.type == "LoadBalancer" else ""
        for node in nodes:
            if node in service.ready_nodes:
                continue
            items.append(
                DigestItem(
                    f"nodeport_local:{service.key}:{node}",
                    f"{service.key} (NodePort {ports}, externalTrafficPolicy Local): no ready endpoint on {node}; "
                    f"clients sent to {node}:{service.node_ports[0]} are dropped{steer}",
                    True,
                    data={
                        "service": service.key,
                        "node": node,
                        "type": service.type,
                        "node_ports": list(service.node_ports),
                        "ready_nodes": list(service.ready_nodes),
                    },
                )
            )
    if sweep.api_error:
        return f"not checked: {sweep.api_error}", items
    if not services:
        return "no NodePort or LoadBalancer Service with externalTrafficPolicy Local", items
    if not items:
        return f"{len(services)} Local service(s) have a ready endpoint on every node", items
    return f"{len(items)} node(s) drop NodePort traffic of {len({i.data['service'] for i in items})} Local service(s)", items
