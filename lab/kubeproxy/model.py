"""What kube-proxy sees: service ports and their usable endpoints, built from API JSON.

Services are core/v1 Service dicts and EndpointSlices discovery.k8s.io/v1 dicts, as the API server
returns them. The rules kube-proxy follows and that this module reproduces:

- headless services (clusterIP "None" or empty) are skipped; only IPv4 is handled here;
- EndpointSlices belong to the service named by their `kubernetes.io/service-name` label; an
  endpoint contributes to a service port when the slice port's name *and* protocol match it;
  only an endpoint's first address is used, duplicates are merged, and the list is sorted by
  the "ip:port" string (pkg/proxy/endpointslicecache.go);
- conditions: a missing ready or serving means true, a missing terminating means false;
  Ready endpoints are used, falling back to serving-and-terminating ones when none is ready
  (pkg/proxy/topology.go CategorizeEndpoints).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from lab.kubeproxy import names

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
DEFAULT_STICKY_SECONDS = 10800

NftLayout = Literal["1.36", "endpoint-chains", "single-endpoint"]
NFT_LAYOUTS: tuple[NftLayout, ...] = ("1.36", "endpoint-chains", "single-endpoint")
"""The nftables layouts the lab's kube-proxy can imitate (see `lab.kubeproxy.nftables`)."""
DEFAULT_NFT_LAYOUT: NftLayout = "1.36"


@dataclass(frozen=True)
class NodeContext:
    """The node kube-proxy runs for, and its settings."""

    node_name: str
    node_ip: str
    cluster_cidr: str
    masquerade_mark: str = "0x4000"
    service_cidrs: tuple[str, ...] = ()
    """Service CIDRs; in nftables mode traffic to unallocated ClusterIPs in them is dropped."""
    nft_layout: NftLayout = DEFAULT_NFT_LAYOUT
    """Which kube-proxy release's nftables layout to write."""
    primary_nodeports: bool = True
    """NodePorts only on the node's primary address (kube-proxy's default, `--nodeport-addresses
    primary`); False accepts them on every local address."""
    localhost_nodeports: bool = True
    """iptables mode: NodePorts also on 127.0.0.1 (`--iptables-localhost-nodeports`, default true),
    with route_localnet=1 and the KUBE-FIREWALL martian drop."""
    ipv6: bool = True
    """Also write the IPv6 side (ip6tables / `table ip6 kube-proxy`), as dual-stack kube-proxy does
    on any host with IPv6, even when no service is IPv6."""
    nfacct: bool = False
    """iptables mode: count the invalid-state drops with the `ct_state_invalid_dropped_pkts`
    nfacct object (kube-proxy does when the kernel supports it; `apply` creates the object)."""

    @property
    def mark_value(self) -> int:
        """The masquerade mark as a number."""
        return int(self.masquerade_mark, 16)


@dataclass(frozen=True)
class Endpoint:
    """One backend of a service port, as kube-proxy's BaseEndpointInfo holds it."""

    ip: str
    port: int
    node_name: str
    ready: bool
    serving: bool
    terminating: bool
    is_local: bool

    @property
    def address(self) -> str:
        """ "ip:port", the form used in chain hashes and DNAT targets."""
        return names.endpoint_string(self.ip, self.port)


@dataclass(frozen=True)
class ServicePort:
    """One port of one service, with the fields kube-proxy's rules depend on."""

    namespace: str
    name: str
    port_name: str
    protocol: str
    """Lower case: "tcp", "udp" or "sctp"."""
    cluster_ip: str
    port: int
    node_port: int
    external_ips: tuple[str, ...]
    load_balancer_ips: tuple[str, ...]
    sticky_seconds: int | None
    """Session affinity ClientIP timeout, or None without affinity."""
    internal_policy_local: bool
    external_policy_local: bool
    health_check_node_port: int = 0
    """`spec.healthCheckNodePort` (a LoadBalancer with `externalTrafficPolicy: Local`); 0 when none."""

    @property
    def port_name_string(self) -> str:
        """ "ns/name:port", kube-proxy's ServicePortName.String()."""
        return names.service_port_name(self.namespace, self.name, self.port_name)

    @property
    def externally_accessible(self) -> bool:
        """NodePort, external IPs or load-balancer IPs make a port reachable from outside."""
        return self.node_port != 0 or bool(self.external_ips) or bool(self.load_balancer_ips)

    @property
    def uses_cluster_endpoints(self) -> bool:
        """Whether any traffic to this port follows the Cluster policy."""
        return not self.internal_policy_local or (self.externally_accessible and not self.external_policy_local)

    @property
    def uses_local_endpoints(self) -> bool:
        """Whether any traffic to this port follows the Local policy."""
        return self.internal_policy_local or (self.externally_accessible and self.external_policy_local)


@dataclass(frozen=True)
class ServicePlan:
    """A service port and the endpoints each traffic policy uses on this node."""

    service: ServicePort
    cluster_endpoints: tuple[Endpoint, ...]
    local_endpoints: tuple[Endpoint, ...]
    reachable_endpoints: tuple[Endpoint, ...]
    has_endpoints: bool


def _is_ipv4(text: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(text), ipaddress.IPv4Address)
    except ValueError:
        return False


def service_ports(service: Mapping[str, Any]) -> list[ServicePort]:
    """The proxied IPv4 ports of one Service; empty for headless or non-IPv4 services."""
    meta = service.get("metadata") or {}
    spec = service.get("spec") or {}
    cluster_ip = str(spec.get("clusterIP") or "")
    if cluster_ip in {"", "None"} or not _is_ipv4(cluster_ip):
        return []
    sticky: int | None = None
    if spec.get("sessionAffinity") == "ClientIP":
        config = (spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}
        sticky = int(config.get("timeoutSeconds") or DEFAULT_STICKY_SECONDS)
    svc_type = spec.get("type") or "ClusterIP"
    external_ips = tuple(ip for ip in spec.get("externalIPs") or () if _is_ipv4(ip))
    lb_ips: tuple[str, ...] = ()
    if svc_type == "LoadBalancer":
        ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or ()
        lb_ips = tuple(str(i["ip"]) for i in ingress if i.get("ip") and _is_ipv4(str(i["ip"])))
    external_local = svc_type in {"NodePort", "LoadBalancer"} and spec.get("externalTrafficPolicy") == "Local"
    health_port = int(spec.get("healthCheckNodePort") or 0) if svc_type == "LoadBalancer" and external_local else 0
    ports = []
    for port in spec.get("ports") or ():
        ports.append(
            ServicePort(
                namespace=str(meta.get("namespace") or "default"),
                name=str(meta["name"]),
                port_name=str(port.get("name") or ""),
                protocol=str(port.get("protocol") or "TCP").lower(),
                cluster_ip=cluster_ip,
                port=int(port["port"]),
                node_port=int(port.get("nodePort") or 0) if svc_type in {"NodePort", "LoadBalancer"} else 0,
                external_ips=external_ips,
                load_balancer_ips=lb_ips,
                sticky_seconds=sticky,
                internal_policy_local=spec.get("internalTrafficPolicy") == "Local",
                external_policy_local=external_local,
                health_check_node_port=health_port,
            )
        )
    return ports


def _endpoints_by_service_port(
    slices: Iterable[Mapping[str, Any]], node_name: str
) -> dict[tuple[str, str, str, str], dict[str, Endpoint]]:
    """(namespace, service, port name, protocol) -> {"ip:port": Endpoint}."""
    result: dict[tuple[str, str, str, str], dict[str, Endpoint]] = {}
    for eps in slices:
        try:
            _add_slice(result, eps, node_name)
        except (KeyError, TypeError, ValueError, AttributeError):
            continue  # a malformed EndpointSlice contributes nothing
    return result


def _add_slice(result: dict[tuple[str, str, str, str], dict[str, Endpoint]], eps: Mapping[str, Any], node_name: str) -> None:
    """Merge one EndpointSlice's endpoints into `result` (first address only, local ones win)."""
    meta = eps.get("metadata") or {}
    service_name = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    if not service_name or eps.get("addressType", "IPv4") != "IPv4":
        return
    namespace = str(meta.get("namespace") or "default")
    for port in eps.get("ports") or ():
        if port.get("name") is None or not port.get("port"):
            continue
        key = (namespace, str(service_name), str(port["name"]), str(port.get("protocol") or "TCP").lower())
        bucket = result.setdefault(key, {})
        for endpoint in eps.get("endpoints") or ():
            addresses = endpoint.get("addresses") or ()
            if not addresses or not _is_ipv4(str(addresses[0])):
                continue
            conditions = endpoint.get("conditions") or {}
            ep_node = str(endpoint.get("nodeName") or "")
            info = Endpoint(
                ip=str(addresses[0]),
                port=int(port["port"]),
                node_name=ep_node,
                ready=conditions.get("ready") is not False,
                serving=conditions.get("serving") is not False,
                terminating=conditions.get("terminating") is True,
                is_local=bool(node_name) and ep_node == node_name,
            )
            if info.address not in bucket or info.is_local:
                bucket[info.address] = info


def _categorize(service: ServicePort, endpoints: Sequence[Endpoint]) -> ServicePlan:
    cluster: tuple[Endpoint, ...] = ()
    local: tuple[Endpoint, ...] = ()
    has_any = False
    if service.uses_cluster_endpoints:
        cluster = tuple(ep for ep in endpoints if ep.ready)
        if not cluster:
            cluster = tuple(ep for ep in endpoints if ep.serving and ep.terminating)
        has_any = bool(cluster)
    if not service.uses_local_endpoints:
        return ServicePlan(service, cluster, local, cluster, has_any)
    local_ready = any(ep.is_local and ep.ready for ep in endpoints)
    local_terminating = any(ep.is_local and not ep.ready and ep.serving and ep.terminating for ep in endpoints)
    if any(ep.ready or (ep.serving and ep.terminating) for ep in endpoints):
        has_any = True
    if local_ready:
        local = tuple(ep for ep in endpoints if ep.is_local and ep.ready)
    elif local_terminating:
        local = tuple(ep for ep in endpoints if ep.is_local and ep.serving and ep.terminating)
    if not service.uses_cluster_endpoints:
        return ServicePlan(service, cluster, local, local, has_any)
    if not local_terminating or local_ready:
        return ServicePlan(service, cluster, local, cluster, has_any)
    merged = {ep.address: ep for ep in (*cluster, *local)}
    reachable = tuple(merged[k] for k in sorted(merged))
    return ServicePlan(service, cluster, local, reachable, has_any)


def plan_services(
    services: Iterable[Mapping[str, Any]], endpoint_slices: Iterable[Mapping[str, Any]], node: NodeContext
) -> list[ServicePlan]:
    """Every proxied service port with its usable endpoints, sorted by service port name."""
    by_port = _endpoints_by_service_port(endpoint_slices, node.node_name)
    plans = []
    for service in services:
        try:
            ports = service_ports(service)
        except (KeyError, TypeError, ValueError, AttributeError):
            continue  # a malformed Service gets no rules, as the API would never have admitted it
        for port in ports:
            bucket = by_port.get((port.namespace, port.name, port.port_name, port.protocol), {})
            endpoints = [bucket[k] for k in sorted(bucket)]
            plans.append(_categorize(port, endpoints))
    plans.sort(key=lambda p: (p.service.port_name_string, p.service.protocol))
    return plans
