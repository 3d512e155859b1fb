"""Where everything of the lab goes: nodes, pods, addresses, interface and namespace names.

A pure function of the spec and the options: the same inputs give the same plan, so the lab's names
and addresses are stable from run to run and tests can state them.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from typing import Literal

from lab.errors import LabError
from lab.kubeproxy.model import DEFAULT_NFT_LAYOUT, NFT_LAYOUTS, NftLayout
from lab.spec import ClusterSpec, ContainerPortSpec, ServicePortSpec, WorkloadSpec

CniMode = Literal["flannel-vxlan", "host-gw", "calico"]
ProxyMode = Literal["iptables", "nftables"]
CNI_MODES: tuple[CniMode, ...] = ("flannel-vxlan", "host-gw", "calico")
PROXY_MODES: tuple[ProxyMode, ...] = ("iptables", "nftables")

FABRIC_CIDR = ipaddress.IPv4Network("10.240.0.0/24")
LB_CIDR = ipaddress.IPv4Network("198.51.100.0/24")
"""Load-balancer ingress IPs the lab hands out as the cloud would (a documentation range)."""
CLUSTER_CIDR = ipaddress.IPv4Network("10.244.0.0/16")
SERVICE_CIDR = ipaddress.IPv4Network("10.96.0.0/12")
CLUSTER_DOMAIN = "cluster.local"
AGENT_NAMESPACE = "kube-system"
AGENT_DAEMONSET = "kubereach-agent"
MAX_NODES = 8
OVERLAY_MTU = 1450
UNDERLAY_MTU = 1500
FLANNEL_VNI, FLANNEL_PORT, FLANNEL_DEVICE = 1, 8472, "flannel.1"
CALICO_VNI, CALICO_PORT, CALICO_DEVICE = 4096, 4789, "vxlan.calico"
CALICO_GATEWAY = "169.254.1.1"
# Kubernetes' rand.SafeEncodeString alphabet: no vowels, no confusable characters.
_SAFE = "bcdfghjklmnpqrstvwxz2456789"


def _digest(*parts: str) -> bytes:
    return hashlib.sha256("\x00".join(parts).encode()).digest()


def _safe_suffix(length: int, *parts: str) -> str:
    raw = _digest(*parts)
    return "".join(_SAFE[b % len(_SAFE)] for b in raw[:length])


@dataclass(frozen=True)
class LabOptions:
    """How to build the lab: instance prefix, node count, CNI and kube-proxy modes."""

    prefix: str = "kr"
    nodes: int = 3
    cni: CniMode = "flannel-vxlan"
    proxy: ProxyMode = "iptables"
    kube_proxy_layout: NftLayout = DEFAULT_NFT_LAYOUT
    """In nftables mode: which kube-proxy release's rule layout the lab's kube-proxy writes."""


@dataclass(frozen=True)
class NodePlan:
    """One simulated node: a namespace on the fabric with a pod CIDR."""

    name: str
    index: int
    netns: str
    ip: str
    pod_cidr: str
    gateway: str
    """The node's address in its pod CIDR (cni0 on bridge CNIs, the VTEP address on calico)."""
    vtep_mac: str
    fabric_port: str
    """The node's port name on the fabric bridge (inside the fabric namespace)."""


@dataclass(frozen=True)
class PodPlan:
    """One pod: its own namespace, an address from its node's pod CIDR, a host-side veth."""

    namespace: str
    name: str
    uid: str
    node: str
    ip: str
    netns: str
    host_veth: str
    labels: tuple[tuple[str, str], ...]
    ports: tuple[ContainerPortSpec, ...]
    workload_kind: str
    workload_name: str
    owner_kind: str
    owner_name: str
    role: str
    mtu: int
    host_network: bool = False
    """The pod shares its node's namespace (`netns` and `ip` are the node's; no veth, no MTU of its own)."""
    dns_policy: str = "ClusterFirst"

    @property
    def key(self) -> str:
        """`namespace/name`."""
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class ServicePlan:
    """A service with its allocated ClusterIP."""

    namespace: str
    name: str
    uid: str
    cluster_ip: str
    type: str
    selector: tuple[tuple[str, str], ...] | None
    ports: tuple[ServicePortSpec, ...]
    session_affinity: str
    external_ips: tuple[str, ...] = ()
    external_traffic_policy: str = "Cluster"
    internal_traffic_policy: str = "Cluster"
    load_balancer_ip: str | None = None
    """type LoadBalancer: the ingress IP the lab, playing the cloud, assigns (LB_CIDR)."""
    external_name: str | None = None
    """type ExternalName: the DNS name the service is an alias for (its cluster_ip is "")."""

    @property
    def key(self) -> str:
        """`namespace/name`."""
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class LabPlan:
    """Everything the lab builds, with all names and addresses decided."""

    options: LabOptions
    fabric_netns: str
    nodes: tuple[NodePlan, ...]
    pods: tuple[PodPlan, ...]
    services: tuple[ServicePlan, ...]
    spec: ClusterSpec
    host_pods: tuple[PodPlan, ...] = ()
    """Host-network pods (spec `hostNetwork: true`): kept apart from `pods`, which each have a namespace
    and a veth of their own to build, move and break."""

    def node(self, name: str) -> NodePlan:
        """The node called `name` (LabError naming the valid ones otherwise)."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise LabError(f"unknown node {name!r}; nodes: {', '.join(n.name for n in self.nodes)}", exit_code=2)

    @property
    def bridge_cni(self) -> bool:
        """True when pods hang off a cni0 bridge (host-gw, flannel-vxlan)."""
        return self.options.cni != "calico"


def uid_for(*parts: str) -> str:
    """A stable UUID-shaped uid for a lab object."""
    h = _digest("uid", *parts).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


def _vtep_mac(prefix: str, index: int) -> str:
    raw = _digest("vtep", prefix, str(index))
    return "0e:" + ":".join(f"{b:02x}" for b in raw[:5])


def _pod_names(w: WorkloadSpec, nodes: int) -> list[tuple[str, str, str]]:
    """(pod name, owner kind, owner name) for each replica of a workload."""
    if w.kind == "Deployment":
        rs = f"{w.name}-{_safe_suffix(10, 'rs', w.namespace, w.name)}"
        return [(f"{rs}-{_safe_suffix(5, 'pod', w.namespace, rs, str(i))}", "ReplicaSet", rs) for i in range(w.replicas)]
    if w.kind == "StatefulSet":
        return [(f"{w.name}-{i}", "StatefulSet", w.name) for i in range(w.replicas)]
    return [(f"{w.name}-{_safe_suffix(5, 'ds', w.namespace, w.name, str(i))}", "DaemonSet", w.name) for i in range(nodes)]


def _pod_labels(w: WorkloadSpec, pod_name: str, owner_name: str) -> tuple[tuple[str, str], ...]:
    labels = dict(w.labels)
    if w.kind == "Deployment":
        labels["pod-template-hash"] = owner_name.rsplit("-", 1)[1]
    elif w.kind == "StatefulSet":
        labels["statefulset.kubernetes.io/pod-name"] = pod_name
        labels["apps.kubernetes.io/pod-index"] = pod_name.rsplit("-", 1)[1]
        labels["controller-revision-hash"] = f"{w.name}-{_safe_suffix(10, 'rev', w.namespace, w.name)}"
    else:
        labels["controller-revision-hash"] = _safe_suffix(10, "dsrev", w.namespace, w.name)
    return tuple(sorted(labels.items()))


def allocate_cluster_ip(namespace: str, name: str, taken: set[str]) -> str:
    """A stable ClusterIP from the service CIDR, away from .1 (kubernetes) and .10 (DNS)."""
    size = SERVICE_CIDR.num_addresses
    attempt = 0
    while True:
        offset = int.from_bytes(_digest("clusterip", namespace, name, str(attempt))[:4], "big") % (size - 512) + 256
        ip = str(SERVICE_CIDR.network_address + offset)
        if ip not in taken and not ip.endswith(".0") and not ip.endswith(".255"):
            return ip
        attempt += 1


def host_veth_name(cni: CniMode, prefix: str, namespace: str, pod: str) -> str:
    """The host-side veth name as the CNI plugin would pick it (≤ 15 characters)."""
    if cni == "calico":
        return "cali" + hashlib.sha1(f"{namespace}.{pod}".encode(), usedforsecurity=False).hexdigest()[:11]
    return "veth" + hashlib.sha1(f"{prefix}/{namespace}/{pod}".encode(), usedforsecurity=False).hexdigest()[:8]


def pod_netns_name(prefix: str, namespace: str, pod: str) -> str:
    """The pod's network namespace name (under /var/run/netns), carrying the lab prefix."""
    return f"{prefix}-pod-{namespace}-{pod}"


def make_plan(spec: ClusterSpec, options: LabOptions) -> LabPlan:
    """Decide nodes, pod placement (spread round-robin), addresses and names."""
    if not 1 <= options.nodes <= MAX_NODES:
        raise LabError(f"--nodes must be between 1 and {MAX_NODES}, not {options.nodes}", exit_code=2)
    if options.cni not in CNI_MODES:
        raise LabError(f"unknown CNI {options.cni!r}; choose one of: {', '.join(CNI_MODES)}", exit_code=2)
    if options.proxy not in PROXY_MODES:
        raise LabError(f"unknown kube-proxy mode {options.proxy!r}; choose one of: {', '.join(PROXY_MODES)}", exit_code=2)
    if options.kube_proxy_layout not in NFT_LAYOUTS:
        raise LabError(
            f"unknown kube-proxy layout {options.kube_proxy_layout!r}; choose one of: {', '.join(NFT_LAYOUTS)}", exit_code=2
        )
    prefix = options.prefix
    nodes = tuple(
        NodePlan(
            name=f"node-{i}",
            index=i,
            netns=f"{prefix}-node-{i}",
            ip=str(FABRIC_CIDR.network_address + 10 + i),
            pod_cidr=f"10.244.{i}.0/24",
            gateway=f"10.244.{i}.1" if options.cni != "calico" else f"10.244.{i}.0",
            vtep_mac=_vtep_mac(prefix, i),
            fabric_port=f"node{i}",
        )
        for i in range(1, options.nodes + 1)
    )
    next_host = {n.name: 2 for n in nodes}
    mtu = OVERLAY_MTU if options.cni in ("flannel-vxlan", "calico") else UNDERLAY_MTU
    pods: list[PodPlan] = []
    host_pods = [
        _host_pod(w, nodes[idx], pod_name, owner_kind, owner_name)
        for w in spec.workloads
        if w.host_network
        for idx, (pod_name, owner_kind, owner_name) in enumerate(_pod_names(w, len(nodes)))
    ]
    turn = 0
    for w in spec.workloads:
        if w.host_network:
            continue
        for idx, (pod_name, owner_kind, owner_name) in enumerate(_pod_names(w, len(nodes))):
            if w.kind == "DaemonSet":
                node = nodes[idx]
            else:
                node = nodes[turn % len(nodes)]
                turn += 1
            host = next_host[node.name]
            if host > 250:
                raise LabError(f"node {node.name} has no free pod address left in {node.pod_cidr}", exit_code=2)
            next_host[node.name] = host + 1
            pods.append(
                PodPlan(
                    namespace=w.namespace,
                    name=pod_name,
                    uid=uid_for("pod", w.namespace, pod_name),
                    node=node.name,
                    ip=f"10.244.{node.index}.{host}",
                    netns=pod_netns_name(prefix, w.namespace, pod_name),
                    host_veth=host_veth_name(options.cni, prefix, w.namespace, pod_name),
                    labels=_pod_labels(w, pod_name, owner_name),
                    ports=w.ports,
                    workload_kind=w.kind,
                    workload_name=w.name,
                    owner_kind=owner_kind,
                    owner_name=owner_name,
                    role=w.role,
                    mtu=mtu,
                    dns_policy=w.dns_policy or ("Default" if w.role == "dns" else "ClusterFirst"),
                )
            )
    taken = {s.cluster_ip for s in spec.services if s.cluster_ip and s.cluster_ip != "None"}
    services = []
    lb_index = 0
    for s in spec.services:
        lb_ip = None
        if s.type == "LoadBalancer":
            lb_ip = str(LB_CIDR.network_address + 10 + lb_index)
            lb_index += 1
        if s.type == "ExternalName":
            ip = ""
        else:
            ip = s.cluster_ip or allocate_cluster_ip(s.namespace, s.name, taken)
            taken.add(ip)
        services.append(
            ServicePlan(
                namespace=s.namespace,
                name=s.name,
                uid=uid_for("svc", s.namespace, s.name),
                cluster_ip=ip,
                type=s.type,
                selector=tuple(sorted(s.selector.items())) if s.selector is not None else None,
                ports=s.ports,
                session_affinity=s.session_affinity,
                external_ips=s.external_ips,
                external_traffic_policy=s.external_traffic_policy,
                internal_traffic_policy=s.internal_traffic_policy,
                load_balancer_ip=lb_ip,
                external_name=s.external_name,
            )
        )
    return LabPlan(
        options=options,
        fabric_netns=f"{prefix}-fabric",
        nodes=nodes,
        pods=tuple(pods),
        services=tuple(services),
        spec=spec,
        host_pods=tuple(host_pods),
    )


def _host_pod(w: WorkloadSpec, node: NodePlan, pod_name: str, owner_kind: str, owner_name: str) -> PodPlan:
    """A host-network DaemonSet pod on `node`: the node's namespace and IP are its own."""
    return PodPlan(
        namespace=w.namespace,
        name=pod_name,
        uid=uid_for("pod", w.namespace, pod_name),
        node=node.name,
        ip=node.ip,
        netns=node.netns,
        host_veth="",
        labels=_pod_labels(w, pod_name, owner_name),
        ports=w.ports,
        workload_kind=w.kind,
        workload_name=w.name,
        owner_kind=owner_kind,
        owner_name=owner_name,
        role=w.role,
        mtu=0,
        host_network=True,
        dns_policy=w.dns_policy or "ClusterFirst",
    )
