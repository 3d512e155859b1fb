"""What an investigation is about, as the playbook needs it: resolved pods, service, endpoints, nodes.

Built by the flow from the resolver's answer; pure data, so the playbook can be driven in tests by
hand-written cases and recorded observations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PodRef:
    """A pod as the API describes it."""

    namespace: str
    name: str
    ip: str | None
    node: str | None
    phase: str = "Running"
    ready: bool = True
    reason: str = ""
    """Why it is not running or not ready (CrashLoopBackOff, ContainerCreating, …)."""
    labels: Mapping[str, str] = field(default_factory=dict)
    container_ports: tuple[tuple[str, int, str], ...] = ()
    """(name, port, protocol) for each declared container port."""
    host_network: bool = False
    uid: str = ""
    """metadata.uid: kubelet names it in the cgroup of every process of the pod, which is how a socket
    in the node's namespace is told to be a host-network pod's own (empty: unknown)."""
    dns_policy: str = "ClusterFirst"
    """`spec.dnsPolicy`; "" for a node (or a client outside played from one): no kubelet wrote its
    resolv.conf, the node's own resolver is what it uses."""

    @property
    def key(self) -> str:
        """namespace/name; for a node as the source, node/NAME (and a client outside played from a
        node, its own name)."""
        if self.namespace:
            return f"{self.namespace}/{self.name}"
        return f"node/{self.name}" if self.name == self.node else self.name

    @property
    def netns_ip(self) -> str:
        """The address an agent finds this pod's namespace by: "" for a host-network pod or a node,
        whose traffic starts in the node's own namespace (the agents' RPCs read "" as the node)."""
        return "" if self.host_network else (self.ip or "")

    @property
    def cluster_dns_with_host_network(self) -> bool:
        """A host-network pod with `dnsPolicy: ClusterFirstWithHostNet`: kubelet writes it the cluster
        DNS's resolv.conf, although its traffic starts in the node's namespace, whose own resolv.conf
        (what an agent reads there) is the node's."""
        return self.host_network and self.dns_policy == "ClusterFirstWithHostNet"

    def named_port(self, name: str, protocol: str) -> int | None:
        """The container port with that name and protocol."""
        for port_name, port, proto in self.container_ports:
            if port_name == name and proto == protocol:
                return port
        return None

    def declares(self, port: int, protocol: str) -> bool:
        """True when a container declares `port`/`protocol`."""
        return any(p == port and proto == protocol for _, p, proto in self.container_ports)


@dataclass(frozen=True)
class EndpointRef:
    """One endpoint of the target: an address and port on a node, ready or not, and its pod.

    `serving` and `terminating` are the EndpointSlice conditions: a pod in its grace period is
    `ready=False, serving=True, terminating=True`.
    """

    ip: str
    port: int
    node: str | None
    ready: bool = True
    pod: PodRef | None = None
    serving: bool | None = None
    """None: as `ready` (the API's rule when the condition is unset)."""
    terminating: bool = False

    @property
    def is_serving(self) -> bool:
        """The EndpointSlice's serving condition."""
        return self.ready if self.serving is None else self.serving

    @property
    def serving_terminating(self) -> bool:
        """Not ready, but still serving while its pod shuts down."""
        return not self.ready and self.is_serving and self.terminating


def routed_endpoints(endpoints: Sequence[EndpointRef]) -> list[EndpointRef]:
    """The endpoints kube-proxy sends a service's traffic to: the ready ones, or, when none is ready,
    the serving terminating ones (kube-proxy falls back to pods that are shutting down but still
    serve, so that a rolling update does not drop traffic)."""
    ready = [e for e in endpoints if e.ready]
    return ready or [e for e in endpoints if e.serving_terminating]


@dataclass(frozen=True)
class ServiceRef:
    """The target service."""

    namespace: str
    name: str
    cluster_ip: str
    selector: Mapping[str, str] | None
    port: int
    """The service port asked about."""
    target_port: int | str
    port_name: str = ""
    type: str = "ClusterIP"
    """ClusterIP, NodePort, LoadBalancer or ExternalName."""
    node_port: int | None = None
    """The NodePort of the port asked about, when the service has one."""
    external_traffic_policy: str = "Cluster"
    internal_traffic_policy: str = "Cluster"
    health_check_node_port: int | None = None
    """Set for a LoadBalancer (or NodePort) service with `externalTrafficPolicy: Local`."""
    external_ips: tuple[str, ...] = ()
    load_balancer_ips: tuple[str, ...] = ()
    """`status.loadBalancer.ingress[].ip`."""
    session_affinity: str = "None"
    external_name: str | None = None
    """The CNAME of an ExternalName service."""

    @property
    def key(self) -> str:
        """namespace/name."""
        return f"{self.namespace}/{self.name}"

    @property
    def headless(self) -> bool:
        """A service without a cluster IP: DNS answers its pods' IPs and nothing is NATed."""
        return self.cluster_ip in ("", "None")


@dataclass(frozen=True)
class Entry:
    """Where traffic from outside the cluster comes in, for a question about a NodePort, an external IP
    or a load balancer's IP: what the client connects to, and on which nodes it arrives.

    `kind` is "nodeport" (the client connects to a node's own IP and `port`, the NodePort),
    "external-ip" or "load-balancer" (it connects to `address`, one of the service's external IPs or
    load balancer ingress IPs, and `port`, the service port; the lab and the clouds route that IP to
    the nodes). `nodes` are the receiving nodes asked about: the node the question named, or empty for
    every node with an agent.
    """

    kind: str
    port: int
    address: str | None = None
    nodes: tuple[str, ...] = ()


@dataclass(frozen=True)
class NodeRef:
    """A node: its address on the node network and its pod CIDR."""

    name: str
    ip: str
    pod_cidr: str = ""


@dataclass(frozen=True)
class Case:
    """One investigation's subject."""

    source_display: str
    sources: tuple[PodRef, ...]
    """A sample of the source's pods (at least one per node they run on)."""
    source_total: int
    target_display: str
    target_kind: str
    """"service", "pod", "node", "ip", "external" (a name or address outside the cluster)."""
    protocol: str
    port: int | None
    """The port the client connects to (service port, or the pod port)."""
    service: ServiceRef | None = None
    target_pods: tuple[PodRef, ...] = ()
    endpoints: tuple[EndpointRef, ...] = ()
    """For a service: its endpoints (EndpointSlices). For a pod: the pod itself."""
    target_ip: str | None = None
    dns_name: str | None = None
    """The name a client would resolve to reach the target, when it has one."""
    dns_fqdn: str | None = None
    """The fully qualified form of `dns_name` (asked of each DNS server directly)."""
    dns_endpoints: tuple[EndpointRef, ...] = ()
    """The cluster DNS service's endpoints (UDP 53), to follow a failing lookup down its path."""
    nodes: Mapping[str, NodeRef] = field(default_factory=dict)
    policy_cluster: Any = None
    """bot.policy.Cluster for NetworkPolicy evaluation (None: not evaluated)."""
    agents_known: frozenset[str] = frozenset()
    """Nodes with a known agent."""
    notes: tuple[str, ...] = ()
    trace: str = ""
    """A path trace asked for: "path" (one marked probe), "loss" (repeated probes); "" traces only
    a failure the state checks leave unexplained."""
    source_kind: str = "pod"
    """"pod" (the sources are the source's pods); "node" (one source: the node itself, as a host-network
    PodRef named after the node, with its IP); "external" (a client outside the cluster: one host-network
    PodRef named "outside" on a vantage node whose own namespace stands in for the client, its IP the
    node's — a NodePort or external IP is then probed from off the receiving node, as a client would)."""
    entry: Entry | None = None
    """How traffic enters the cluster, for questions about NodePorts, external IPs and load balancers."""
    external_name: str | None = None
    """A DNS name outside the cluster domain the source resolves before it connects (the target of
    ``frontend → example.com``, a URL's host, an ExternalName service's CNAME); `target_ip` is then
    what it resolves to, when the bot could resolve it, else None (the DNS step resolves it from the
    source)."""
    dns_upstreams: tuple[str, ...] = ()
    """The resolvers the cluster DNS forwards names outside the cluster to (the `forward .` line of the
    kube-system/coredns Corefile, `bot.cluster.corefile`); empty when unknown or when it forwards to
    `/etc/resolv.conf`: the DNS pods' own resolv.conf (kubelet's --resolv-conf, `dnsPolicy: Default`)
    is then asked, as CoreDNS would."""
    marker_seed: int = 0
    """Chosen once per investigation by the use case: the pure trace step derives its probes' marked
    source ports from it (`bot.playbook.steps.trace.marked_port`), so deciding draws no randomness."""
