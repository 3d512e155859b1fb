"""What the playbook can observe on a node, as plain frozen data, and the port it observes through.

`Observer` is the playbook's only window on the world. `bot.fleet.observer` implements it with gRPC
calls to the node agents; tests may implement it with recorded observations. Every answer is an
`Observed`: the value, or why it could not be had (the agent did not answer, refused the request,
or found nothing) — an unreachable agent is a fact to reason about, not an exception.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

T = TypeVar("T")


class CallFailure(StrEnum):
    """Why a question to an agent has no answer. Only NOT_FOUND says something about the node;
    every other kind means the check could not be made — it is never evidence of a fault."""

    UNREACHABLE = "unreachable"
    """No connection, the agent went away, or it failed authentication."""
    BUSY = "busy"
    """The agent refused the call as over its concurrency limit (RESOURCE_EXHAUSTED)."""
    TIMED_OUT = "timed_out"
    """No answer within the call's deadline."""
    CANCELLED = "cancelled"
    """The call was cancelled (the investigation's deadline passed, or shutdown)."""
    NOT_FOUND = "not_found"
    """The agent looked and the thing is not there (a pod IP not on the node): a fact."""
    INVALID = "invalid"
    """The agent rejected the request as malformed."""
    FAILED = "failed"
    """The agent answered with an internal error."""

    @property
    def retryable(self) -> bool:
        """A later attempt may get an answer (the agent was busy, slow or briefly gone)."""
        return self in (CallFailure.BUSY, CallFailure.TIMED_OUT, CallFailure.UNREACHABLE)

    @property
    def words(self) -> str:
        """How a person reads this kind of failure."""
        return {
            CallFailure.UNREACHABLE: "did not answer",
            CallFailure.BUSY: "was too busy to answer",
            CallFailure.TIMED_OUT: "did not answer in time",
            CallFailure.CANCELLED: "was not asked in time",
            CallFailure.NOT_FOUND: "found nothing",
            CallFailure.INVALID: "rejected the request",
            CallFailure.FAILED: "failed to check",
        }[self]


@dataclass(frozen=True)
class Observed(Generic[T]):
    """One observation from one node: `value`, or an `error` with its kind."""

    node: str
    value: T | None = None
    error: str | None = None
    error_kind: CallFailure | None = None

    @property
    def ok(self) -> bool:
        """True when the value is there."""
        return self.value is not None and self.error is None

    @property
    def unreachable(self) -> bool:
        """True when the check could not be made: the agent did not answer, was busy, timed out, was
        cancelled or failed. Such an observation is "not checked", never evidence of a fault."""
        return self.error is not None and self.error_kind != CallFailure.NOT_FOUND


@dataclass(frozen=True)
class Link:
    """A network interface as the kernel reports it."""

    name: str
    index: int = 0
    kind: str = ""
    mtu: int = 0
    oper_state: str = ""
    admin_up: bool = False
    master: str = ""
    addresses: tuple[str, ...] = ()

    @property
    def up(self) -> bool:
        """Administratively up and not operationally down."""
        return self.admin_up and self.oper_state.upper() not in ("DOWN", "LOWERLAYERDOWN", "NOTPRESENT")


@dataclass(frozen=True)
class RouteInfo:
    """A route the kernel chose (or none: `type` "none")."""

    destination: str = ""
    gateway: str = ""
    device: str = ""
    source: str = ""
    type: str = "unicast"
    """unicast, local, blackhole, unreachable, prohibit, throw, none."""

    @property
    def usable(self) -> bool:
        """True when packets to the destination can leave by this route."""
        return self.type in ("unicast", "local")


@dataclass(frozen=True)
class OverlayDevice:
    """A VXLAN device of the CNI (flannel.1, vxlan.calico)."""

    link: Link
    vni: int = 0
    udp_port: int = 0
    local_ip: str = ""


INSPECTED_DATAPLANES = frozenset({"kube-proxy-iptables", "kube-proxy-nftables"})
"""Dataplanes whose service NAT kubereach reads; "" (an agent that did not say) is read as before."""
DATAPLANE_WORDS = {
    "ipvs": "kube-proxy's IPVS mode",
    "cilium-ebpf": "Cilium's eBPF service load balancer",
    "ebpf": "eBPF programs attached to the node's interfaces",
    "none": "something kubereach does not recognise",
}
"""How a reply names each dataplane kubereach recognises but does not inspect (docs/verdicts.md)."""


def not_inspected(node: str, dataplane: str) -> str | None:
    """ "service NAT on NODE is done by …; not inspected", or None for a dataplane that is read."""
    if not dataplane or dataplane in INSPECTED_DATAPLANES:
        return None
    return f"service NAT on {node} is done by {DATAPLANE_WORDS.get(dataplane, dataplane[:64])}; not inspected"


@dataclass(frozen=True)
class NodeFacts:
    """One node's forwarding, conntrack, CNI shape and kube-proxy mode."""

    node: str
    kernel: str = ""
    proxy_mode: str = ""
    ip_forward: bool = True
    conntrack_count: int = 0
    conntrack_max: int = 0
    insert_failed: int = 0
    drop: int = 0
    early_drop: int = 0
    bridges: tuple[Link, ...] = ()
    bridge_ports: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    overlays: tuple[OverlayDevice, ...] = ()
    calico_interfaces: tuple[Link, ...] = ()
    netns: str = ""
    """The node's namespace name as the agent uses it (empty: the agent's own)."""
    dataplane: str = ""
    """What does service NAT on the node as the agent named it ("kube-proxy-iptables",
    "kube-proxy-nftables", "ipvs", "cilium-ebpf", "ebpf", "none"); "" when it did not say."""
    dataplane_evidence: tuple[str, ...] = ()
    """The observations that name `dataplane` (links, tables, pinned maps)."""


@dataclass(frozen=True)
class PodNetwork:
    """A pod's namespace as its node sees it: eth0, its routes, the host-side peer."""

    pod_ip: str
    netns: str = ""
    eth0: Link | None = None
    routes: tuple[RouteInfo, ...] = ()
    host_peer: Link | None = None
    route_to_pod: RouteInfo | None = None
    proxy_arp: bool = False
    hairpin: bool | None = None
    """The host-side peer's hairpin mode as a bridge port (None: not a bridge port, or not reported)."""


@dataclass(frozen=True)
class OverlayHop:
    """For a next hop on an overlay device: the neighbour (IP → MAC) and FDB (MAC → VTEP) entries."""

    device: str
    device_up: bool
    next_hop: str
    neighbour_mac: str = ""
    neighbour_state: tuple[str, ...] = ()
    fdb_remote: str = ""


@dataclass(frozen=True)
class RouteLookup:
    """The answer of `ip route get`: the route, or why there is none."""

    route: RouteInfo | None
    error: str = ""
    overlay: OverlayHop | None = None


@dataclass(frozen=True)
class NatEndpoint:
    """A DNAT target kube-proxy programmed."""

    ip: str
    port: int
    probability: float | None = None


@dataclass(frozen=True)
class NatView:
    """What kube-proxy programmed on a node for one VIP:port/protocol."""

    mode: str
    programmed: bool
    endpoints: tuple[NatEndpoint, ...] = ()
    no_endpoints_action: str = ""
    service_name: str = ""
    service_chain: str = ""
    rules: tuple[str, ...] = ()
    layout: str = ""
    """How the rules are laid out (the agent's `layout`); "unknown" for a layout it does not read."""
    unreadable: str = ""
    """Why the agent could not read the rules; when set the other fields say nothing."""
    entry: str = ""
    """For traffic from outside the cluster: "nodeport", "external-ip" or "load-balancer"; `endpoints`
    are then those such traffic reaches from the node. Empty for a cluster IP."""
    external_policy: str = ""
    """For an entry: "Local" (the rules reach only the node's own endpoints) or "Cluster"; empty when
    the rules do not say."""
    health_check_node_port: int = 0
    """For an entry: the health check node port the node's filter table accepts (0: none programmed)."""


@dataclass(frozen=True)
class ConntrackEntry:
    """One conntrack entry: both tuples and the status flags."""

    protocol: str
    orig_src: str
    orig_dst: str
    orig_sport: int | None
    orig_dport: int | None
    reply_src: str
    reply_sport: int | None
    state: str = ""
    timeout: int = 0
    status: tuple[str, ...] = ()
    reply_dst: str = ""
    """Where replies go: the original source, or the address a source NAT (masquerade) put in its place."""

    @property
    def replied(self) -> bool:
        """The flow saw a reply (an established flow, not an unanswered attempt)."""
        return "SEEN_REPLY" in self.status or "ASSURED" in self.status


@dataclass(frozen=True)
class ConntrackView:
    """Entries matching a filter, bounded, with the total matched."""

    total: int
    entries: tuple[ConntrackEntry, ...] = ()


@dataclass(frozen=True)
class ConntrackCounters:
    """A node's conntrack statistics at one moment (GetConntrackStats), to compare two readings."""

    count: int = 0
    max: int = 0
    insert_failed: int = 0
    drop: int = 0


@dataclass(frozen=True)
class FilterHit:
    """A rule or chain policy on one of a node's netfilter hooks that drops (or may drop) a flow."""

    table: str
    """iptables' table ("filter", "raw", "mangle") or the nftables table with its family ("inet filter")."""
    chain: str
    rule: str
    """The rule as its tool prints it (`-A FORWARD … -j DROP`, `ip saddr 10.244.1.0/24 drop`) or the
    policy (`-P FORWARD DROP`, `policy drop`)."""
    target: str = "DROP"
    backend: str = "iptables"
    """"iptables-nft", "iptables-legacy", "iptables" (not told apart) or "nftables"."""
    hook: str = "forward"
    """prerouting, input, forward, output or postrouting."""
    handle: int | None = None
    """The nftables rule handle, for `nft delete rule … handle N`."""
    packets: int | None = None

    def __str__(self) -> str:
        return f"{self.table}/{self.chain}: {self.rule}"

    @property
    def is_policy(self) -> bool:
        """A chain's policy rather than a rule."""
        return self.rule.startswith("-P ") or self.rule == "policy drop"

    @property
    def where(self) -> str:
        """Where the rule sits, as a person would look for it ("nftables table inet filter chain forward")."""
        if self.backend == "nftables":
            return f"nftables table {self.table} chain {self.chain}"
        return f"the {self.table} table's {self.chain} chain ({self.backend})"


@dataclass(frozen=True)
class FilterView:
    """A node's netfilter verdict on a flow: the hooks it crosses, the rule that drops it, sysctls."""

    forward_policy: str
    drops: tuple[FilterHit, ...] = ()
    ip_forward: bool = True
    rp_filter: Mapping[str, int] = field(default_factory=dict)
    possible: tuple[FilterHit, ...] = ()
    """Drop rules whose matches the flow alone cannot settle (interface names, marks, …)."""
    hooks: tuple[str, ...] = ("prerouting", "forward", "postrouting")
    local_source: bool = False
    local_destination: bool = False
    not_checked: tuple[str, ...] = ()
    """Rule sets on the node that could not be read (never "nothing drops")."""


@dataclass(frozen=True)
class EgressNatRule:
    """A nat POSTROUTING rule (iptables or nftables) on the way of a pod's packet out of the cluster."""

    table: str
    """"iptables nat" or the nftables table ("ip flannel", "ip calico", …)."""
    chain: str
    rule: str
    target: str
    """MASQUERADE, SNAT, RETURN, ACCEPT (what the rule does to the packet)."""
    certain: bool = True
    """False: the rule has matches the flow alone cannot settle (marks, ipsets, …)."""


@dataclass(frozen=True)
class EgressNatView:
    """Would the node's nat POSTROUTING rules translate the source of a pod's packet to a destination.

    `verdict` is "translated" (a MASQUERADE/SNAT rule surely matches), "untranslated" (the walk ends
    without one: the packet leaves with the pod's address) or "unknown" (only rules with matches the
    flow cannot settle would translate it). `rules` are the rules that decide, `possible` the ones
    that might."""

    verdict: str
    rules: tuple[EgressNatRule, ...] = ()
    possible: tuple[EgressNatRule, ...] = ()
    out_interface: str = ""
    """The interface the node's route sends the packet out of (what `-o` / `oifname` match)."""
    chains: tuple[str, ...] = ()
    """The chains walked, table/chain."""
    unreadable: str = ""
    """Why the rules could not be read; the other fields then say nothing."""


@dataclass(frozen=True)
class ListeningSocket:
    """A socket listening inside a namespace."""

    protocol: str
    address: str
    port: int
    process: str = ""
    pid: int = 0
    cgroup: str = ""
    """The owning process's cgroup path (empty: not resolvable); a pod's names its UID."""


@dataclass(frozen=True)
class ProbeView:
    """An active probe's outcome: connected, refused, timed_out, unreachable, reset, error."""

    outcome: str
    latency_ms: float = 0.0
    error: str = ""
    rcode: str = ""
    answers: tuple[str, ...] = ()
    server: str = ""
    retransmits: int = 0
    """TCP: the kernel's retransmission count on the probe's socket (tcp_info). DNS: the queries sent
    again because the first send went unanswered (the agent's resolver tries twice, as glibc does)."""
    queried_names: tuple[str, ...] = ()
    """DNS: the fully qualified names the lookup tried, in order (search list and ndots applied)."""
    search: tuple[str, ...] = ()
    """DNS: the search domains of the resolv.conf the lookup used (empty when a server was given)."""
    ndots: int | None = None
    """DNS: the ndots of that resolv.conf (None: not reported)."""

    @property
    def ok(self) -> bool:
        """The probe got through (for DNS: an answer with records)."""
        if self.rcode:
            return self.outcome == "connected" and self.rcode == "NOERROR" and bool(self.answers)
        return self.outcome == "connected"


@dataclass(frozen=True)
class CapturePointSpec:
    """One interface to watch: on `node`, in the node's namespace or the pod's with `pod_ip`."""

    node: str
    interface: str
    pod_ip: str = ""


@dataclass(frozen=True)
class MarkedProbe:
    """The probe a trace sends from the source pod, `count` times, from the marked source port.

    `payload` is for UDP (a DNS query to port 53, say); `timeout_ms` bounds each attempt."""

    node: str
    pod_ip: str
    target: str
    port: int
    protocol: str
    source_port: int
    count: int = 1
    timeout_ms: int = 1000
    payload: bytes = b""
    size: int = 0
    """UDP: pad the datagram to this many payload bytes with don't-fragment set (0: a small datagram)."""


@dataclass(frozen=True)
class TracePlan:
    """A capture set on every point, and the probe to send once every node is armed."""

    points: tuple[CapturePointSpec, ...]
    probe: MarkedProbe
    addresses: tuple[str, ...]
    """The addresses a matching packet carries (source pod, target, nodes)."""
    overlay_udp_port: int = 0
    max_duration_ms: int = 3000
    retransmit_probes: int = 0
    """TCP probes (kernel-chosen ports) sent beside the marked ones, for tcp_info retransmissions."""


@dataclass(frozen=True)
class CapturedHeader:
    """The headers of one captured packet (inner ones for VXLAN, outer addresses beside them)."""

    ts_ms: float
    outgoing: bool
    src_ip: str
    dst_ip: str
    src_port: int = 0
    dst_port: int = 0
    tcp_flags: str = ""
    encapsulated: bool = False
    outer_src_ip: str = ""
    outer_dst_ip: str = ""
    icmp: bool = False
    icmp_type: int = 0
    icmp_code: int = 0
    icmp_mtu: int = 0
    length: int = 0


@dataclass(frozen=True)
class PointCapture:
    """What one point saw: the matching packets, or why it could not be watched (`error`)."""

    packets: int = 0
    first_seen_ms: float = 0.0
    samples: tuple[CapturedHeader, ...] = ()
    error: str = ""


@dataclass(frozen=True)
class TraceRun:
    """A trace's raw result: per point (in plan order) what it saw, or None when its node's agent
    did not capture (not checked); the marked probes' outcomes; the nodes that failed and why."""

    captures: tuple[PointCapture | None, ...]
    probes: tuple[ProbeView, ...] = ()
    unchecked: Mapping[str, str] = field(default_factory=dict)
    retransmits: int = 0


class Observer(Protocol):
    """Questions the playbook asks the nodes. Implementations must not raise for agent failures."""

    async def node_facts(self, node: str) -> Observed[NodeFacts]:
        """Forwarding, conntrack, CNI devices, kube-proxy mode."""

    async def locate_pod(self, node: str, pod_ip: str) -> Observed[PodNetwork]:
        """The pod's namespace, eth0, routes and host-side peer."""

    async def route(self, node: str, destination: str, *, source: str = "", pod_ip: str = "") -> Observed[RouteLookup]:
        """`ip route get` in the node's namespace, or in a pod's when `pod_ip` is given."""

    async def service_nat(self, node: str, vip: str, port: int, protocol: str) -> Observed[NatView]:
        """kube-proxy's rules for one service port on the node."""

    async def entry_nat(self, node: str, kind: str, address: str, port: int, protocol: str) -> Observed[NatView]:
        """How kube-proxy on the node dispatches a client outside the cluster through an entry (`kind`
        "nodeport" on the node's `address`, "external-ip" or "load-balancer" `address`) and `port`."""

    async def conntrack(
        self, node: str, *, protocol: str, orig_src: str, orig_dst: str, orig_dport: int
    ) -> Observed[ConntrackView]:
        """Conntrack entries of one flow shape."""

    async def conntrack_stats(self, node: str, *, after: str) -> Observed[ConntrackCounters]:
        """The node's conntrack counters read now, after what `after` names (a fresh reading per label)."""

    async def filter_state(
        self, node: str, *, src: str, dst: str, protocol: str, dport: int, interfaces: tuple[str, ...]
    ) -> Observed[FilterView]:
        """FORWARD policy and matching drop rules, ip_forward, rp_filter per interface."""

    async def sockets(self, node: str, pod_ip: str, port: int, protocol: str) -> Observed[tuple[ListeningSocket, ...]]:
        """Listening sockets for one port inside a pod's namespace."""

    async def egress_nat(self, node: str, *, pod_ip: str, destination: str, protocol: str, port: int) -> Observed[EgressNatView]:
        """The nat POSTROUTING rules that would (or would not) masquerade the pod's packet to `destination`."""

    async def probe(
        self, node: str, *, pod_ip: str, target: str, port: int, protocol: str, timeout_ms: int | None = None
    ) -> Observed[ProbeView]:
        """Connect (TCP) or send/receive (UDP; DNS query on port 53) from inside a pod's namespace ('' = node).

        `timeout_ms`: how long the probe waits for an answer (None: the observer's default).
        """

    async def probe_dns(self, node: str, *, pod_ip: str, name: str, server: str = "") -> Observed[ProbeView]:
        """Resolve `name` from inside a pod with its own resolv.conf (or `server`)."""

    async def trace(self, plan: TracePlan) -> TraceRun:
        """Capture on every point of `plan` while its marked probe runs (never raises for agent failures)."""
