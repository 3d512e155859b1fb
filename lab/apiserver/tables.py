"""Server-side printing: the `Table` and `PartialObjectMetadata` answers kubectl and metadata informers ask for.

A client that sends `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` gets a meta.k8s.io/v1
Table (columns, one row per object, each row's object as PartialObjectMetadata), which is what
`kubectl get` prints; `as=PartialObjectMetadataList` / `as=PartialObjectMetadata` get only metadata.
Pods, Services, Nodes, Namespaces and EndpointSlices have the columns kube-apiserver v1.36 prints
for them; other kinds get Name and Age (as for kinds without a printer).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from lab.apiserver.resources import ResourceType
from lab.apiserver.store import parse_timestamp

Obj = Mapping[str, Any]
Column = tuple[str, int, Callable[[Obj], str]]
"""(name, priority, cell)."""


def wants(accept: str | None, what: str) -> bool:
    """Whether an Accept header asks for `what` (Table, PartialObjectMetadata, PartialObjectMetadataList) first."""
    if not accept:
        return False
    first = accept.split(",")[0]
    params = {p.split("=", 1)[0].strip(): p.split("=", 1)[-1].strip() for p in first.split(";")[1:] if "=" in p}
    return params.get("as") == what and params.get("g") == "meta.k8s.io" and params.get("v") in ("v1", "v1beta1")


def human_duration(seconds: float) -> str:
    """A duration as kubectl's AGE column writes it (k8s.io/apimachinery duration.HumanDuration)."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        years, days = hours // 24 // 365, (hours // 24) % 365
        return f"{years}y{days}d" if days else f"{years}y"
    return f"{hours // 24 // 365}y"


def _age(obj: Obj) -> str:
    created = (obj.get("metadata") or {}).get("creationTimestamp")
    if not created:
        return "<unknown>"
    return human_duration((datetime.now(UTC) - parse_timestamp(created)).total_seconds())


def _name(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def _pod_ready(pod: Obj) -> str:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    total = len((pod.get("spec") or {}).get("containers") or [])
    return f"{sum(1 for c in statuses if c.get('ready'))}/{total}"


def _pod_status(pod: Obj) -> str:
    status = pod.get("status") or {}
    reason = status.get("reason") or status.get("phase") or "Unknown"
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        waiting, terminated = state.get("waiting") or {}, state.get("terminated") or {}
        if waiting.get("reason"):
            reason = waiting["reason"]
        elif terminated.get("reason"):
            reason = terminated["reason"]
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Terminating"
    return str(reason)


def _pod_restarts(pod: Obj) -> str:
    return str(sum(int(c.get("restartCount") or 0) for c in (pod.get("status") or {}).get("containerStatuses") or []))


def _service_ports(svc: Obj) -> str:
    ports = []
    for port in (svc.get("spec") or {}).get("ports") or []:
        text = f"{port.get('port')}"
        if port.get("nodePort"):
            text += f":{port['nodePort']}"
        ports.append(f"{text}/{port.get('protocol', 'TCP')}")
    return ",".join(ports) or "<none>"


def _external_ip(svc: Obj) -> str:
    spec = svc.get("spec") or {}
    if spec.get("type") == "ExternalName":
        return str(spec.get("externalName") or "<none>")
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    addresses = [i.get("ip") or i.get("hostname") for i in ingress] + list(spec.get("externalIPs") or [])
    if addresses:
        return ",".join(str(a) for a in addresses)
    return "<pending>" if spec.get("type") == "LoadBalancer" else "<none>"


def _selector(svc: Obj) -> str:
    selector = (svc.get("spec") or {}).get("selector") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items())) or "<none>"


def _node_status(node: Obj) -> str:
    ready = next((c for c in (node.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), None)
    text = "Ready" if ready and ready.get("status") == "True" else "NotReady" if ready else "Unknown"
    return text + (",SchedulingDisabled" if (node.get("spec") or {}).get("unschedulable") else "")


def _node_roles(node: Obj) -> str:
    prefix = "node-role.kubernetes.io/"
    roles = sorted(k[len(prefix) :] for k in ((node.get("metadata") or {}).get("labels") or {}) if k.startswith(prefix))
    return ",".join(roles) or "<none>"


def _node_address(node: Obj, kind: str) -> str:
    found = [a.get("address") for a in (node.get("status") or {}).get("addresses") or [] if a.get("type") == kind]
    return str(found[0]) if found else "<none>"


def _slice_endpoints(eps: Obj) -> str:
    addresses = [a for e in eps.get("endpoints") or [] for a in e.get("addresses") or []]
    if not addresses:
        return "<unset>"
    return ",".join(addresses[:3]) + (f" + {len(addresses) - 3} more..." if len(addresses) > 3 else "")


COLUMNS: dict[str, list[Column]] = {
    "Pod": [
        ("Name", 0, _name),
        ("Ready", 0, _pod_ready),
        ("Status", 0, _pod_status),
        ("Restarts", 0, _pod_restarts),
        ("Age", 0, _age),
        ("IP", 1, lambda p: str((p.get("status") or {}).get("podIP") or "<none>")),
        ("Node", 1, lambda p: str((p.get("spec") or {}).get("nodeName") or "<none>")),
        ("Nominated Node", 1, lambda p: str((p.get("status") or {}).get("nominatedNodeName") or "<none>")),
        ("Readiness Gates", 1, lambda p: "<none>"),
    ],
    "Service": [
        ("Name", 0, _name),
        ("Type", 0, lambda s: str((s.get("spec") or {}).get("type") or "ClusterIP")),
        ("Cluster-IP", 0, lambda s: str((s.get("spec") or {}).get("clusterIP") or "<none>")),
        ("External-IP", 0, _external_ip),
        ("Port(s)", 0, _service_ports),
        ("Age", 0, _age),
        ("Selector", 1, _selector),
    ],
    "Node": [
        ("Name", 0, _name),
        ("Status", 0, _node_status),
        ("Roles", 0, _node_roles),
        ("Age", 0, _age),
        ("Version", 0, lambda n: str(((n.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion") or "")),
        ("Internal-IP", 1, lambda n: _node_address(n, "InternalIP")),
        ("External-IP", 1, lambda n: _node_address(n, "ExternalIP")),
    ],
    "Namespace": [
        ("Name", 0, _name),
        ("Status", 0, lambda n: str((n.get("status") or {}).get("phase") or "")),
        ("Age", 0, _age),
    ],
    "EndpointSlice": [
        ("Name", 0, _name),
        ("AddressType", 0, lambda e: str(e.get("addressType") or "")),
        ("Ports", 0, lambda e: ",".join(str(p.get("port")) for p in e.get("ports") or []) or "<unset>"),
        ("Endpoints", 0, _slice_endpoints),
        ("Age", 0, _age),
    ],
}
_DEFAULT_COLUMNS: list[Column] = [("Name", 0, _name), ("Age", 0, _age)]


def partial_metadata(obj: Obj) -> dict[str, Any]:
    """The object as PartialObjectMetadata (meta.k8s.io/v1): its metadata only."""
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": dict(obj.get("metadata") or {})}


def partial_metadata_list(items: list[dict[str, Any]], metadata: dict[str, Any]) -> dict[str, Any]:
    """A list as PartialObjectMetadataList."""
    return {
        "kind": "PartialObjectMetadataList",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "items": [partial_metadata(i) for i in items],
    }


def table(resource: ResourceType, items: list[dict[str, Any]], metadata: dict[str, Any]) -> dict[str, Any]:
    """A meta.k8s.io/v1 Table of `items` with the columns kube-apiserver prints for the kind."""
    columns = COLUMNS.get(resource.kind, _DEFAULT_COLUMNS)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": [
            {
                "name": name,
                "type": "string",
                "format": "name" if name == "Name" else "",
                "description": f"{resource.kind} {name.lower()}",
                "priority": priority,
            }
            for name, priority, _ in columns
        ],
        "rows": [{"cells": [cell(obj) for _, _, cell in columns], "object": partial_metadata(obj)} for obj in items],
    }
