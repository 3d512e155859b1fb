"""The cluster DNS zone the lab's CoreDNS pods answer from, computed from the API's objects.

Records (as CoreDNS's kubernetes plugin serves them):
- `svc.ns.svc.cluster.local` A → ClusterIP (headless: the ready endpoint IPs); for an ExternalName
  service a CNAME → its externalName (the DNS server follows it, as CoreDNS does)
- `_port._proto.svc.ns.svc.cluster.local` SRV → the service name, for named ports
- `a-b-c-d.ns.pod.cluster.local` A → the pod IP
- PTR for ClusterIPs and pod IPs.
Everything else under the cluster domain is NXDOMAIN.
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from lab.plan import CLUSTER_DOMAIN

Obj = Mapping[str, Any]


def build_zone(services: Iterable[Obj], slices: Iterable[Obj], pods: Iterable[Obj]) -> dict[str, Any]:
    """The zone as JSON-ready dicts: {"a": {name: [ip]}, "srv": {name: [[prio, weight, port, target]]},
    "ptr": {name: target}, "cname": {name: target}}."""
    a: dict[str, list[str]] = {}
    cname: dict[str, str] = {}
    srv: dict[str, list[list[Any]]] = {}
    ptr: dict[str, str] = {}
    ready_ips: dict[tuple[str, str], list[str]] = {}
    for sl in slices:
        meta = sl.get("metadata", {})
        svc = meta.get("labels", {}).get("kubernetes.io/service-name")
        if not svc:
            continue
        for ep in sl.get("endpoints") or []:
            if (ep.get("conditions") or {}).get("ready", True):
                ready_ips.setdefault((meta.get("namespace", ""), svc), []).extend(ep.get("addresses") or [])
    for svc in services:
        meta, spec = svc["metadata"], svc.get("spec", {})
        fqdn = f"{meta['name']}.{meta['namespace']}.svc.{CLUSTER_DOMAIN}."
        cluster_ip = spec.get("clusterIP")
        if spec.get("type") == "ExternalName":
            if spec.get("externalName"):
                cname[fqdn] = spec["externalName"].rstrip(".") + "."
            continue
        if cluster_ip and cluster_ip != "None":
            a[fqdn] = [cluster_ip]
            ptr[ipaddress.ip_address(cluster_ip).reverse_pointer + "."] = fqdn
        else:
            a[fqdn] = sorted(set(ready_ips.get((meta["namespace"], meta["name"]), [])))
        for port in spec.get("ports") or []:
            if port.get("name"):
                name = f"_{port['name']}._{port.get('protocol', 'TCP').lower()}.{fqdn}"
                srv[name] = [[0, 100, int(port["port"]), fqdn]]
    for pod in pods:
        ip = (pod.get("status") or {}).get("podIP")
        if not ip or (pod.get("spec") or {}).get("hostNetwork"):
            continue
        name = f"{ip.replace('.', '-')}.{pod['metadata']['namespace']}.pod.{CLUSTER_DOMAIN}."
        a[name] = [ip]
        ptr.setdefault(ipaddress.ip_address(ip).reverse_pointer + ".", name)
    return {"domain": CLUSTER_DOMAIN + ".", "a": a, "srv": srv, "ptr": ptr, "cname": cname}


def write_zone(path: Path, zone: Mapping[str, Any]) -> None:
    """Write the zone atomically (the DNS pods reload it when its mtime changes)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(zone, sort_keys=True))
    os.replace(tmp, path)
