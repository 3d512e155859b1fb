"""Ways into the cluster from outside, as Services declare them, and where an address lies.

A question about traffic from outside names a way in: a NodePort (a node's own IP and the port
kube-proxy opens on every node), one of a Service's `spec.externalIPs`, or its load balancer's
ingress IP (`status.loadBalancer.ingress`). These functions find the Service behind each, and tell
an address of the cluster (a pod, service or node range) from one outside it, so that the resolver
can treat ``203.0.113.7`` as a client outside rather than a pod that has gone. Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from bot.cluster.models import NodeInfo, ServiceInfo, ServicePortInfo
from bot.parse.models import EntryKind

Address = IPv4Address | IPv6Address

SERVICE_RANGE_PREFIX = {4: 12, 6: 108}
"""How wide a service range is guessed around the cluster IPs seen, per IP version: the API does not
publish `--service-cluster-ip-range`; these are the widths kubeadm and most clusters give it
(10.96.0.0/12, and the largest IPv6 range the API server accepts)."""

NODE_RANGE_PREFIX = {4: 24, 6: 64}
"""How wide the node network is guessed around the nodes' InternalIPs, per IP version."""


@dataclass(frozen=True)
class EntryInfo:
    """How traffic from outside enters, for the question: see `bot.playbook.case.Entry`.

    `port` is the NodePort for a "nodeport" entry and the service port otherwise; `address` the
    external or load balancer IP the client connects to (None for a NodePort: every node's IP);
    `nodes` the receiving nodes the question named (empty: every node).
    """

    kind: EntryKind
    port: int
    address: str | None = None
    nodes: tuple[str, ...] = ()


def parse_address(text: str | None) -> Address | None:
    """The address in `text`, or None when it is not one."""
    if not text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def node_port_owners(
    services: Iterable[ServiceInfo], number: int, protocol: str | None
) -> list[tuple[ServiceInfo, ServicePortInfo]]:
    """Every (service, port) whose NodePort is `number` (over `protocol`, when given)."""
    found = []
    for service in services:
        port = service.port_with_node_port(number, protocol)
        if port is not None:
            found.append((service, port))
    return found


def address_owner(services: Iterable[ServiceInfo], address: Address) -> tuple[ServiceInfo, EntryKind, str] | None:
    """The service that has `address` as an external IP or a load balancer IP, the kind of entry, and
    the address as the service writes it."""
    for service in services:
        for text in service.external_ips:
            if parse_address(text) == address:
                return service, EntryKind.EXTERNAL_IP, text
        for text in service.load_balancer_ips:
            if parse_address(text) == address:
                return service, EntryKind.LOAD_BALANCER, text
    return None


def entry_address(service: ServiceInfo, kind: EntryKind) -> str | None:
    """The first address of that kind a service has (None for a NodePort, or when it has none)."""
    if kind is EntryKind.EXTERNAL_IP:
        return service.external_ips[0] if service.external_ips else None
    if kind is EntryKind.LOAD_BALANCER:
        return service.load_balancer_ips[0] if service.load_balancer_ips else None
    return None


def missing_entry(service: ServiceInfo, kind: EntryKind) -> str | None:
    """Why `service` has no way in of that kind (a sentence), or None when it has one."""
    label = f"svc/{service.name} in {service.namespace}"
    if kind is EntryKind.NODEPORT:
        if any(p.node_port for p in service.ports):
            return None
        return f"{label} is a {service.type} service: it has no NodePort (only NodePort and LoadBalancer services have one)"
    if kind is EntryKind.EXTERNAL_IP:
        return None if service.external_ips else f"{label} has no external IPs (spec.externalIPs is empty)"
    if service.load_balancer_ips:
        return None
    if service.type != "LoadBalancer":
        return f"{label} is a {service.type} service, not a LoadBalancer: it has no load balancer"
    if service.load_balancer_hostnames:
        names = ", ".join(service.load_balancer_hostnames)
        return f"{label}'s load balancer is known by name only ({names}): ask about one of its addresses"
    return f"{label} is a LoadBalancer whose load balancer has no address yet (status.loadBalancer.ingress is empty)"


def _within(address: Address, around: Iterable[str], prefixes: Mapping[int, int]) -> bool:
    for text in around:
        known = parse_address(text)
        if known is None or known.version != address.version:
            continue
        network = ipaddress.ip_network(f"{known}/{prefixes[known.version]}", strict=False)
        if address in network:
            return True
    return False


def in_pod_ranges(address: Address, nodes: Iterable[NodeInfo]) -> bool:
    """Whether `address` is in a node's pod CIDR."""
    for node in nodes:
        if not node.pod_cidr:
            continue
        try:
            network = ipaddress.ip_network(node.pod_cidr, strict=False)
        except ValueError:
            continue
        if address.version == network.version and address in network:
            return True
    return False


def in_service_range(address: Address, services: Iterable[ServiceInfo]) -> bool:
    """Whether `address` is near the services' cluster IPs (the guessed service range)."""
    return _within(address, (s.cluster_ip for s in services if s.cluster_ip), SERVICE_RANGE_PREFIX)


def in_node_range(address: Address, nodes: Iterable[NodeInfo]) -> bool:
    """Whether `address` is on the node network (near a node's InternalIP)."""
    return _within(address, (n.internal_ip for n in nodes if n.internal_ip), NODE_RANGE_PREFIX)


def outside_cluster(address: Address, nodes: Iterable[NodeInfo], services: Iterable[ServiceInfo]) -> bool:
    """Whether `address` is outside the cluster's pod, service and node ranges: a client or server
    outside the cluster, never a pod, service or node that has gone."""
    listed = list(nodes)
    return not (in_pod_ranges(address, listed) or in_service_range(address, services) or in_node_range(address, listed))
