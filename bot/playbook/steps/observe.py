"""What a step asks the nodes (`Ask`, one kind per `Observer` call), and the read-only view of the
answers its pure decision receives (`Seen`), which refuses any observation the step did not declare."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar, Generic, TypeVar, cast

from bot.playbook.observations import (
    ConntrackCounters,
    ConntrackView,
    EgressNatView,
    FilterView,
    ListeningSocket,
    NatView,
    NodeFacts,
    Observed,
    Observer,
    PodNetwork,
    ProbeView,
    RouteLookup,
    TracePlan,
    TraceRun,
)

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Need(StrEnum):
    """An observation a step asks the nodes for: one per `Observer` call."""

    NODE_FACTS = "node_facts"
    LOCATE_POD = "locate_pod"
    ROUTE = "route"
    SERVICE_NAT = "service_nat"
    ENTRY_NAT = "entry_nat"
    CONNTRACK = "conntrack"
    CONNTRACK_STATS = "conntrack_stats"
    FILTER_STATE = "filter_state"
    SOCKETS = "sockets"
    PROBE = "probe"
    PROBE_DNS = "probe_dns"
    TRACE = "trace"
    EGRESS_NAT = "egress_nat"


class UndeclaredObservation(LookupError):
    """A step read an observation it did not declare (its `needs`) or did not ask for (its `asks`)."""


@dataclass(frozen=True)
class Ask(Generic[T_co]):
    """One question to one node's agent; equal asks are one question (the engine asks it once per walk)."""

    need: ClassVar[Need]
    node: str

    async def call(self, observer: Observer) -> Observed[T_co]:
        """Ask it through the observer."""
        raise NotImplementedError


@dataclass(frozen=True)
class NodeFactsAsk(Ask[NodeFacts]):
    need = Need.NODE_FACTS

    async def call(self, observer: Observer) -> Observed[NodeFacts]:
        return await observer.node_facts(self.node)


@dataclass(frozen=True)
class LocatePodAsk(Ask[PodNetwork]):
    need = Need.LOCATE_POD
    pod_ip: str

    async def call(self, observer: Observer) -> Observed[PodNetwork]:
        return await observer.locate_pod(self.node, self.pod_ip)


@dataclass(frozen=True)
class RouteAsk(Ask[RouteLookup]):
    need = Need.ROUTE
    destination: str

    async def call(self, observer: Observer) -> Observed[RouteLookup]:
        return await observer.route(self.node, self.destination)


@dataclass(frozen=True)
class ServiceNatAsk(Ask[NatView]):
    need = Need.SERVICE_NAT
    vip: str
    port: int
    protocol: str

    async def call(self, observer: Observer) -> Observed[NatView]:
        return await observer.service_nat(self.node, self.vip, self.port, self.protocol)


@dataclass(frozen=True)
class EntryNatAsk(Ask[NatView]):
    """kube-proxy's dispatch on `node` of a client outside the cluster through an entry."""

    need = Need.ENTRY_NAT
    kind: str
    address: str
    port: int
    protocol: str

    async def call(self, observer: Observer) -> Observed[NatView]:
        return await observer.entry_nat(self.node, self.kind, self.address, self.port, self.protocol)


@dataclass(frozen=True)
class ConntrackAsk(Ask[ConntrackView]):
    need = Need.CONNTRACK
    protocol: str
    orig_src: str
    orig_dst: str
    orig_dport: int

    async def call(self, observer: Observer) -> Observed[ConntrackView]:
        return await observer.conntrack(
            self.node, protocol=self.protocol, orig_src=self.orig_src, orig_dst=self.orig_dst, orig_dport=self.orig_dport
        )


@dataclass(frozen=True)
class ConntrackStatsAsk(Ask[ConntrackCounters]):
    """The node's conntrack counters, read after what `after` names (NodeFactsAsk holds the earlier read)."""

    need = Need.CONNTRACK_STATS
    after: str

    async def call(self, observer: Observer) -> Observed[ConntrackCounters]:
        return await observer.conntrack_stats(self.node, after=self.after)


@dataclass(frozen=True)
class FilterAsk(Ask[FilterView]):
    need = Need.FILTER_STATE
    src: str
    dst: str
    protocol: str
    dport: int
    interfaces: tuple[str, ...]

    async def call(self, observer: Observer) -> Observed[FilterView]:
        return await observer.filter_state(
            self.node, src=self.src, dst=self.dst, protocol=self.protocol, dport=self.dport, interfaces=self.interfaces
        )


@dataclass(frozen=True)
class SocketsAsk(Ask[tuple[ListeningSocket, ...]]):
    need = Need.SOCKETS
    pod_ip: str
    port: int
    protocol: str

    async def call(self, observer: Observer) -> Observed[tuple[ListeningSocket, ...]]:
        return await observer.sockets(self.node, self.pod_ip, self.port, self.protocol)


@dataclass(frozen=True)
class ProbeAsk(Ask[ProbeView]):
    need = Need.PROBE
    pod_ip: str
    target: str
    port: int
    protocol: str
    timeout_ms: int | None = None
    """How long the probe waits for an answer (None: the observer's default)."""

    async def call(self, observer: Observer) -> Observed[ProbeView]:
        return await observer.probe(
            self.node, pod_ip=self.pod_ip, target=self.target, port=self.port, protocol=self.protocol, timeout_ms=self.timeout_ms
        )


@dataclass(frozen=True)
class ProbeDnsAsk(Ask[ProbeView]):
    need = Need.PROBE_DNS
    pod_ip: str
    name: str
    server: str = ""

    async def call(self, observer: Observer) -> Observed[ProbeView]:
        return await observer.probe_dns(self.node, pod_ip=self.pod_ip, name=self.name, server=self.server)


@dataclass(frozen=True)
class EgressNatAsk(Ask[EgressNatView]):
    need = Need.EGRESS_NAT
    pod_ip: str
    destination: str
    protocol: str
    port: int

    async def call(self, observer: Observer) -> Observed[EgressNatView]:
        return await observer.egress_nat(
            self.node, pod_ip=self.pod_ip, destination=self.destination, protocol=self.protocol, port=self.port
        )


@dataclass(frozen=True)
class TraceAsk(Ask[TraceRun]):
    """Captures on every point of `plan` while its marked probe runs (`node`: the source node)."""

    need = Need.TRACE
    plan: TracePlan

    async def call(self, observer: Observer) -> Observed[TraceRun]:
        return Observed(self.node, await observer.trace(self.plan))


class Seen:
    """The answers to one step's asks, read-only; reading what the step did not declare raises."""

    def __init__(self, kind: str, needs: frozenset[Need], answers: Mapping[Ask[object], Observed[object]]) -> None:
        self._kind = kind
        self._needs = needs
        self._answers = dict(answers)

    def __getitem__(self, ask: Ask[T]) -> Observed[T]:
        if ask.need not in self._needs:
            raise UndeclaredObservation(f"step {self._kind!r} read {ask.need.value}, which it does not declare in its needs")
        if ask not in self._answers:
            raise UndeclaredObservation(f"step {self._kind!r} read {ask}, which it did not ask for")
        return cast("Observed[T]", self._answers[ask])
