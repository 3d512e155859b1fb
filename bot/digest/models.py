"""The data of a health digest: what a sweep saw, what the history says, and the digest built from both.

Pure frozen data, no I/O: `sweep.py` fills a `Sweep` from the agents and the API, `content.py` turns a
`Sweep` and a `HistorySummary` into a `Digest` (diffed against the previous digest's stored JSON), and
`bot.render.digest` turns a `Digest` into text and Block Kit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

# ------------------------------------------------------------------------------------------- sweep


@dataclass(frozen=True)
class LinkMtu:
    """One interface of a node's CNI shape with its MTU (and its bridge, for bridge ports)."""

    name: str
    mtu: int
    kind: str = ""
    master: str = ""
    up: bool = True


@dataclass(frozen=True)
class ConntrackUsage:
    """A node's conntrack table: entries, limit and the kernel's failure counters (cumulative)."""

    count: int
    max: int
    insert_failed: int = 0
    drop: int = 0
    early_drop: int = 0

    @property
    def ratio(self) -> float:
        """count / max (0 when the limit is unknown)."""
        return self.count / self.max if self.max else 0.0


@dataclass(frozen=True)
class ProgrammedServicePort:
    """One service port as kube-proxy programmed it on a node (ListServiceNat)."""

    vip: str
    port: int
    protocol: str
    service_name: str = ""
    endpoints: tuple[str, ...] = ()
    """``ip:port`` DNAT targets."""
    no_endpoints_action: str = ""
    """``REJECT``/``DROP`` when kube-proxy rejects for lack of endpoints."""
    unreadable: str = ""
    """Why the agent could not read this port's rules (a layout it does not read yet); then the
    endpoints say nothing and the port is not compared."""


@dataclass(frozen=True)
class NodeSweep:
    """What one node's agent said (every field None when the agent did not answer)."""

    name: str
    agent_ok: bool
    agent_error: str | None = None
    conntrack: ConntrackUsage | None = None
    ip_forward: bool | None = None
    forward_policy: str | None = None
    forward_drops: tuple[str, ...] = ()
    """FORWARD rules that drop pod-to-pod traffic between nodes."""
    proxy_mode: str | None = None
    bridges: tuple[LinkMtu, ...] = ()
    bridge_ports: tuple[LinkMtu, ...] = ()
    overlays: tuple[LinkMtu, ...] = ()
    nat: tuple[ProgrammedServicePort, ...] | None = None
    """None when kube-proxy's rules could not be read."""
    nat_error: str | None = None
    dataplane: str = ""
    """What does service NAT on the node, as its agent named it (GetNodeInfo); "" when it did not say."""


@dataclass(frozen=True)
class PodMtuSample:
    """A sampled pod's interface MTU and its host-side veth (LocatePod)."""

    namespace: str
    name: str
    node: str
    ip: str
    eth0_mtu: int
    host_veth: str = ""
    host_veth_mtu: int = 0

    @property
    def key(self) -> str:
        """``namespace/name``."""
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class ServicePortState:
    """One port of a Service with the API's endpoints for it."""

    name: str | None
    port: int
    protocol: str
    ready: tuple[str, ...] = ()
    """``ip:port`` of the ready endpoints."""
    not_ready: tuple[str, ...] = ()
    terminating: tuple[str, ...] = ()
    """``ip:port`` of the endpoints that are not ready but still serving while their pod terminates
    (also listed in `not_ready`)."""

    @property
    def routed(self) -> tuple[str, ...]:
        """Where kube-proxy sends this port's traffic: the ready endpoints, or the serving terminating
        ones when none is ready."""
        return self.ready or self.terminating


@dataclass(frozen=True)
class ServiceState:
    """One Service as the API sees it, with its endpoints per port."""

    namespace: str
    name: str
    cluster_ip: str | None
    type: str = "ClusterIP"
    selector: Mapping[str, str] | None = field(default=None, hash=False)
    ports: tuple[ServicePortState, ...] = ()

    @property
    def key(self) -> str:
        """``namespace/name``."""
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class LocalTrafficService:
    """A NodePort or LoadBalancer Service with externalTrafficPolicy Local: kube-proxy on a node
    without a ready endpoint of it drops what arrives at that node's NodePort."""

    namespace: str
    name: str
    type: str
    node_ports: tuple[int, ...]
    ready_nodes: tuple[str, ...]
    """The nodes holding at least one ready endpoint."""

    @property
    def key(self) -> str:
        """``namespace/name``."""
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Sweep:
    """One look at the whole cluster: every node's agent and the API's services."""

    cluster: str
    taken_at: datetime
    nodes: tuple[NodeSweep, ...]
    services: tuple[ServiceState, ...] = ()
    pods: tuple[PodMtuSample, ...] = ()
    pods_total: int = 0
    """How many pods were eligible for MTU sampling (the sample is `pods`)."""
    api_error: str | None = None
    """Why the API could not be read (then services are empty)."""
    duration_ms: float = 0.0
    local_traffic: tuple[LocalTrafficService, ...] = ()
    """Services whose NodePorts answer only on nodes with a local endpoint."""


# ----------------------------------------------------------------------------------------- history


@dataclass(frozen=True)
class VerdictCount:
    """How many investigations ended with one verdict code."""

    code: str
    count: int


@dataclass(frozen=True)
class Recurrence:
    """The same verdict on the same node, or the same source→target, seen at least twice."""

    kind: str
    """``verdict-node`` or ``pair``."""
    label: str
    """``CONNTRACK_TABLE_FULL on node-2`` or ``shop/web → shop/api``."""
    count: int
    last_at: datetime
    last_id: str
    verdict: str | None = None


@dataclass(frozen=True)
class UnresolvedInvestigation:
    """A finished investigation that found a fault nobody has marked resolved."""

    id: str
    question: str
    verdict: str
    node: str | None
    started_at: datetime
    asked_by: str
    channel: str | None = None
    thread_ts: str | None = None


@dataclass(frozen=True)
class HistorySummary:
    """What the investigation history says about the digest's period."""

    since: datetime
    until: datetime
    investigations: int
    verdicts: tuple[VerdictCount, ...] = ()
    recurring: tuple[Recurrence, ...] = ()
    unresolved: tuple[UnresolvedInvestigation, ...] = ()
    unresolved_total: int = 0
    window_days: int = 30
    """Recurring and unresolved investigations are looked for in this many days."""


# ------------------------------------------------------------------------------------------ digest


class Change(StrEnum):
    """How a problem compares with the previous digest of the same subscription."""

    NEW = "new"
    STILL = "still"
    GONE = "gone"


class SectionName(StrEnum):
    """The digest's sections, in the order people read them."""

    AGENTS = "agents"
    CONNTRACK = "conntrack"
    FORWARDING = "forwarding"
    MTU = "mtu"
    ENDPOINTS = "endpoints"
    KUBE_PROXY = "kube_proxy"
    NODEPORTS = "nodeports"
    INVESTIGATIONS = "investigations"
    RECURRING = "recurring"
    UNRESOLVED = "unresolved"


SECTION_TITLES: Mapping[SectionName, str] = {
    SectionName.AGENTS: "Agents",
    SectionName.CONNTRACK: "Conntrack usage (worst first)",
    SectionName.FORWARDING: "Forwarding",
    SectionName.MTU: "MTU",
    SectionName.ENDPOINTS: "Services without ready endpoints",
    SectionName.KUBE_PROXY: "Stale kube-proxy rules",
    SectionName.NODEPORTS: "NodePorts without a local endpoint (externalTrafficPolicy Local)",
    SectionName.INVESTIGATIONS: "Investigations since the last digest",
    SectionName.RECURRING: "Recurring",
    SectionName.UNRESOLVED: "Unresolved",
}


@dataclass(frozen=True)
class DigestItem:
    """One line of a digest section.

    `key` identifies the same thing across digests (``conntrack:node-2``); `problem` items are diffed
    against the previous digest (`change` new or still); other items are information (change None).
    """

    key: str
    text: str
    problem: bool
    change: Change | None = None
    data: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def as_json(self) -> dict[str, Any]:
        """The stored and printed form."""
        return {
            "key": self.key,
            "text": self.text,
            "problem": self.problem,
            "change": self.change.value if self.change else None,
            "data": dict(self.data),
        }


@dataclass(frozen=True)
class GoneItem:
    """A problem the previous digest reported that this one no longer sees."""

    key: str
    text: str
    """The text the previous digest showed."""

    def as_json(self) -> dict[str, Any]:
        """The stored and printed form."""
        return {"key": self.key, "text": self.text, "change": Change.GONE.value}


@dataclass(frozen=True)
class DigestSection:
    """One section: a summary line, its items, and the problems that went away."""

    name: SectionName
    summary: str
    items: tuple[DigestItem, ...] = ()
    gone: tuple[GoneItem, ...] = ()

    @property
    def title(self) -> str:
        """The heading people read."""
        return SECTION_TITLES[self.name]

    @property
    def problems(self) -> tuple[DigestItem, ...]:
        """The items that are problems."""
        return tuple(item for item in self.items if item.problem)

    def as_json(self) -> dict[str, Any]:
        """The stored and printed form."""
        return {
            "name": self.name.value,
            "title": self.title,
            "summary": self.summary,
            "items": [item.as_json() for item in self.items],
            "gone": [item.as_json() for item in self.gone],
        }


@dataclass(frozen=True)
class Digest:
    """One health digest of a cluster, for a scope (all namespaces, or some), diffed with the last one."""

    cluster: str
    generated_at: datetime
    since: datetime | None
    """When the previous digest was taken (None: this is the first)."""
    namespaces: tuple[str, ...]
    """The scope; empty means every namespace."""
    sections: tuple[DigestSection, ...]

    def section(self, name: SectionName) -> DigestSection:
        """The section with this name."""
        return next(s for s in self.sections if s.name == name)

    @property
    def problem_count(self) -> int:
        """How many problems the digest reports."""
        return sum(len(s.problems) for s in self.sections)

    @property
    def new_count(self) -> int:
        """Problems that were not in the previous digest."""
        return sum(1 for s in self.sections for i in s.problems if i.change == Change.NEW)

    @property
    def gone_count(self) -> int:
        """Problems of the previous digest that went away."""
        return sum(len(s.gone) for s in self.sections)

    def as_json(self) -> dict[str, Any]:
        """The `kubereach digest --json` shape, also stored in DigestRun.content for the next diff."""
        return {
            "cluster": self.cluster,
            "generated_at": self.generated_at.isoformat(),
            "since": self.since.isoformat() if self.since else None,
            "namespaces": list(self.namespaces),
            "problems": self.problem_count,
            "new": self.new_count,
            "gone": self.gone_count,
            "sections": [s.as_json() for s in self.sections],
        }
