"""What every step shares: a cause found (`Candidate`), the walk's state, and a step's declaration."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TypeVar

from bot.playbook.case import Case, EndpointRef, PodRef, routed_endpoints
from bot.playbook.models import Evidence, Finding, Hop, StepResult, StepStatus
from bot.playbook.models import VerdictCode as C
from bot.playbook.observations import CallFailure, NodeFacts, Observed, Observer, ProbeView

T = TypeVar("T")
StepCallback = Callable[[StepResult], None]


@dataclass(frozen=True)
class Candidate:
    """A cause some check observed."""

    code: C
    hop: Hop
    summary: str
    node: str | None = None
    remediation: tuple[str, ...] = ()
    source: str | None = None
    """The source pod it was seen from (None: independent of the source)."""

    def seen_from(self, source: str) -> Candidate:
        """The same cause, attributed to the source pod it was seen from."""
        return replace(self, source=source)


class Need(StrEnum):
    """An observation a step asks the nodes for: one per `Observer` call."""

    NODE_FACTS = "node_facts"
    LOCATE_POD = "locate_pod"
    ROUTE = "route"
    SERVICE_NAT = "service_nat"
    CONNTRACK = "conntrack"
    FILTER_STATE = "filter_state"
    SOCKETS = "sockets"
    PROBE = "probe"
    PROBE_DNS = "probe_dns"
    TRACE = "trace"


class Walk:
    """The mutable state of one walk: steps recorded, candidates found."""

    def __init__(self, case: Case, observer: Observer, on_step: StepCallback | None) -> None:
        self.case = case
        self.obs = observer
        self.on_step = on_step
        self.steps: list[StepResult] = []
        self.candidates: list[Candidate] = []
        self.unchecked: list[str] = []
        self.notes: list[Finding] = []
        """Observations that explain nothing but must be said (rules that could not be read as expected)."""
        self.why_unchecked: dict[str, set[str]] = {}
        """node → how its agent failed ("was too busy to answer", "did not answer", …)."""
        self.unprobed = False
        """A probe the verdict depends on could not be run: success cannot be claimed."""

    def record(
        self,
        name: str,
        status: StepStatus,
        summary: str,
        evidence: Sequence[Evidence] = (),
        started: float = 0.0,
        node: str | None = None,
    ) -> None:
        step = StepResult(
            name, status, summary, tuple(evidence), round((time.monotonic() - started) * 1000, 1) if started else 0.0, node
        )
        self.steps.append(step)
        if self.on_step is not None:
            self.on_step(step)

    def add(self, candidate: Candidate) -> Candidate:
        self.candidates.append(candidate)
        return candidate

    def unreachable(self, observed: Observed[T], what: str) -> None:
        """Note a check that could not be made (the agent did not answer, was busy, timed out, failed).

        It is never evidence: it becomes the verdict (AGENT_UNREACHABLE, naming what was not checked)
        only when nothing observed explains the failure, or when success cannot be claimed without it.
        """
        self.unchecked.append(f"{what} on {observed.node}")
        kind = CallFailure(observed.error_kind) if observed.error_kind is not None else CallFailure.UNREACHABLE
        self.why_unchecked.setdefault(observed.node, set()).add(kind.words)


@dataclass(frozen=True)
class NatReading:
    """A service-NAT reading held until the probes have run (the service-NAT settle step)."""

    candidate: Candidate
    evidence: tuple[Evidence, ...]
    started: float
    programmed: frozenset[str]
    expected: frozenset[str]


@dataclass(frozen=True)
class Unexplained:
    """An endpoint the source could not reach and no state check explained: the trace follows it.

    `guess` is the candidate standing in for the cause meanwhile (DNS_RESOLUTION_FAILED for a DNS
    server), withdrawn when the trace names the real one."""

    endpoint: EndpointRef
    protocol: str
    purpose: str = "target"
    guess: Candidate | None = None


class SourceWalk:
    """The state of the walk from one source pod, shared by the steps that run for it."""

    def __init__(self, w: Walk, src: PodRef) -> None:
        self.w = w
        self.src = src
        self.case = w.case
        self.facts: dict[str, NodeFacts | None] = {}
        self.facts_started: dict[str, float] = {}
        """node → when its facts were first asked for (the node step's duration counts from there)."""
        self.reachable: list[EndpointRef] = (
            routed_endpoints(w.case.endpoints) if w.case.target_kind == "service" else list(w.case.endpoints)
        )
        """The endpoints traffic from this source may go to."""
        self.denied: set[str] = set()
        """Endpoint IPs NetworkPolicy denies (their path is not walked: policy explains them)."""
        self.nat_pending: NatReading | None = None
        self.probe_outcome: dict[str, ProbeView | None] = {}
        self.unexplained: list[Unexplained] = []
        """Endpoints this source could not reach with no cause found on their path (for the trace)."""
        self.lookup_timed_out: Candidate | None = None
        """The DNS failure of a lookup that timed out though no server's path showed a cause."""
        self.early_probes: list[asyncio.Future[object]] = []
        """Probes sent ahead of the probes step (`bot.playbook.steps.probes.send_probes_early`)."""

    async def node_facts(self, node: str | None) -> NodeFacts | None:
        if node is None:
            return None
        if node not in self.facts:
            self.facts_started.setdefault(node, time.monotonic())
            observed = await self.w.obs.node_facts(node)
            if observed.unreachable:
                self.w.unreachable(observed, "node state")
            self.facts[node] = observed.value
        return self.facts[node]

    def add(self, found: Sequence[Candidate]) -> None:
        """Add causes seen from this source pod."""
        for c in found:
            self.w.add(c.seen_from(self.src.key))


@dataclass(frozen=True)
class TargetStep:
    """A step about the target, run once per question before any source is walked."""

    kind: str
    hop: Hop
    needs: frozenset[Need]
    check: Callable[[Walk], Awaitable[bool]]
    """Records its result; False: there is nothing further to check about the target."""


@dataclass(frozen=True)
class SourceStep:
    """A step of the walk from one source pod."""

    kind: str
    hop: Hop
    needs: frozenset[Need]
    check: Callable[[SourceWalk], Awaitable[bool]]
    """Records its result; False ends the walk from this source."""
