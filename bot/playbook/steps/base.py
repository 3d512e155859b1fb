"""What every step shares: a cause found (`Candidate`), where a step runs (`At`), what it returns
(`Outcome`), and the step itself (`Step`): a small typed object with a pure decision.

A step declares its `kind` (a stable snake_case label), the observations it `needs` (`Need`, one per
`Observer` call), which of them it asks for at this point of the walk (`asks`), and a pure function
`decide` from the case, the walk so far and those observations to an `Outcome`: step results with
evidence, candidate causes, notes, what could not be checked, and whether the walk goes on. The
engine asks the nodes (concurrently, once per walk for equal asks), hands `decide` a read-only view
that raises `UndeclaredObservation` for anything the step did not declare, and folds the outcome
into the walk. When what to ask next depends on this result, `decide` returns the follow-up step in
`Outcome.then` (the path to each endpoint the probes did not reach is such a follow-up).

A new step, e.g. one that checks the source node's MTU toward the target::

    def _asks(at: At) -> tuple[Ask[object], ...]:
        return (NodeFactsAsk(at.source.node),) if at.source.node else ()

    def _decide(at: At, seen: Seen) -> Outcome:
        facts = seen[NodeFactsAsk(at.source.node)]
        if facts.value is None:
            return Outcome(unchecked=unchecked(facts, "node state"))
        found = ...  # Candidates, from facts.value only
        return Outcome(
            steps=(result("source node mtu", f"source {at.source.name}: mtu", status, summary, evidence, node),),
            candidates=tuple(found),
        )

    STEP = Step("source_node_mtu", Hop.SOURCE_NODE, frozenset({Need.NODE_FACTS}), _asks, _decide)

and one line in `bot.playbook.engine.SOURCE_ORDER`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from bot.playbook.case import Case, EndpointRef, PodRef, routed_endpoints
from bot.playbook.models import Evidence, Finding, Hop, StepResult, StepStatus
from bot.playbook.models import VerdictCode as C
from bot.playbook.observations import CallFailure, Observed, ProbeView
from bot.playbook.steps.observe import Ask, Need, Seen, UndeclaredObservation

__all__ = [
    "Ask",
    "At",
    "Candidate",
    "Decide",
    "NatReading",
    "Need",
    "Outcome",
    "Seen",
    "Step",
    "Trail",
    "Unchecked",
    "UndeclaredObservation",
    "Unexplained",
    "no_asks",
    "result",
    "unchecked",
]

T = TypeVar("T")


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


@dataclass(frozen=True)
class Unchecked:
    """A check that could not be made: what, on which node, and how its agent failed.

    It is never evidence: it becomes the verdict (AGENT_UNREACHABLE, naming what was not checked)
    only when nothing observed explains the failure, or when success cannot be claimed without it.
    """

    what: str
    node: str
    failure: CallFailure
    detail: str = ""
    """How the agent failed in its own words, when the failure has no kind (a capture that did not run)."""

    @property
    def words(self) -> str:
        """How a person reads the failure."""
        return self.detail or self.failure.words


def unchecked(observed: Observed[T], what: str) -> tuple[Unchecked, ...]:
    """`what` could not be checked on the observed node, when the observation says so (else nothing)."""
    if not observed.unreachable:
        return ()
    kind = CallFailure(observed.error_kind) if observed.error_kind is not None else CallFailure.UNREACHABLE
    return (Unchecked(what, observed.node, kind),)


@dataclass(frozen=True)
class NatReading:
    """A service-NAT reading held until the probes have run (the service-NAT settle step)."""

    candidate: Candidate
    evidence: tuple[Evidence, ...]
    programmed: frozenset[str]
    expected: frozenset[str]


@dataclass(frozen=True)
class Unexplained:
    """An endpoint the source could not reach and no state check explained: the trace follows it."""

    endpoint: EndpointRef
    protocol: str
    purpose: str = "target"
    """"target", or "dns" for a DNS server."""


@dataclass(frozen=True)
class Trail:
    """What earlier steps of one source's walk established, for the steps after them."""

    reachable: tuple[EndpointRef, ...] = ()
    """The endpoints traffic from this source may go to."""
    denied: frozenset[str] = frozenset()
    """Endpoint IPs NetworkPolicy denies (their path is not walked: policy explains them)."""
    nat_held: NatReading | None = None
    probes: Mapping[str, ProbeView | None] = field(default_factory=dict)
    """Probe label ("vip" or the endpoint IP) → what the probe saw (None: not probed)."""
    unexplained: tuple[Unexplained, ...] = ()
    """Endpoints this source could not reach with no cause found on their path (for the trace)."""
    dns_guess: Candidate | None = None
    """The DNS_RESOLUTION_FAILED standing in for the cause when the paths to the silent DNS servers
    showed nothing wrong: withdrawn when the trace names the real cause on the wire."""
    lookup_timed_out: bool = False
    """The lookup behind `dns_guess` timed out (a loss the trace measures explains it too)."""
    resolved: tuple[str, ...] = ()
    """The addresses the source's own resolver gave for `Case.external_name` (the DNS step's lookup):
    where the steps after it send and look for the source's traffic when `Case.target_ip` is unset."""


@dataclass(frozen=True)
class At:
    """Where a step runs: the case, and for a source step the source pod and its trail so far."""

    case: Case
    src: PodRef | None = None
    trail: Trail = Trail()

    @property
    def source(self) -> PodRef:
        """The source pod (source steps only)."""
        if self.src is None:
            raise ValueError("a target step has no source pod")
        return self.src

    @staticmethod
    def starting(case: Case, src: PodRef | None) -> At:
        """The beginning of the walk from `src` (None: the target's walk)."""
        endpoints = routed_endpoints(case.endpoints) if case.target_kind == "service" else list(case.endpoints)
        return At(case, src, Trail(reachable=tuple(endpoints)))


@dataclass(frozen=True)
class Outcome:
    """What one step concluded; the engine folds it into the walk."""

    steps: tuple[StepResult, ...] = ()
    candidates: tuple[Candidate, ...] = ()
    notes: tuple[Finding, ...] = ()
    """Observations that explain nothing but must be said (rules that could not be read as expected)."""
    unchecked: tuple[Unchecked, ...] = ()
    go_on: bool = True
    """False ends the sequence the step is in (the target's, or one source's)."""
    unprobed: bool = False
    """A probe the verdict depends on could not be run: success cannot be claimed."""
    denied: frozenset[str] | None = None
    nat_held: NatReading | None = None
    settled: bool = False
    """The held service-NAT reading was decided (it is dropped from the trail)."""
    probes: Mapping[str, ProbeView | None] | None = None
    then: Step | None = None
    """A follow-up step, run after this outcome is folded: its asks depend on this result."""
    withdrawn: tuple[Candidate, ...] = ()
    """Candidates an earlier step of this walk added, withdrawn because this step found the cause
    they stood in for (the trace naming what a DNS failure stood in for); one not there is ignored."""
    unexplained: tuple[Unexplained, ...] = ()
    """Added to the trail's `unexplained`."""
    dns_guess: Candidate | None = None
    lookup_timed_out: bool = False
    resolved: tuple[str, ...] | None = None
    """Set: replaces the trail's `resolved`."""

    def __add__(self, other: Outcome) -> Outcome:
        """Both outcomes, this one first (the later one's `go_on` and `then` win)."""
        return Outcome(
            self.steps + other.steps,
            self.candidates + other.candidates,
            self.notes + other.notes,
            self.unchecked + other.unchecked,
            self.go_on and other.go_on,
            self.unprobed or other.unprobed,
            other.denied if other.denied is not None else self.denied,
            other.nat_held or self.nat_held,
            self.settled or other.settled,
            other.probes if other.probes is not None else self.probes,
            other.then or self.then,
            self.withdrawn + other.withdrawn,
            self.unexplained + other.unexplained,
            other.dns_guess or self.dns_guess,
            self.lookup_timed_out or other.lookup_timed_out,
            other.resolved if other.resolved is not None else self.resolved,
        )


Asks = Callable[[At], Sequence[Ask[object]]]
Decide = Callable[[At, Seen], Outcome]


def no_asks(at: At) -> tuple[Ask[object], ...]:
    """For a step that decides from the case and the trail alone."""
    return ()


@dataclass(frozen=True)
class Step:
    """One step of the walk: its kind, its hop, what it needs observed and its pure decision."""

    kind: str
    """A stable snake_case label (unique in the order)."""
    hop: Hop
    needs: frozenset[Need]
    asks: Asks
    """What to observe at this point of the walk (every ask's `need` must be in `needs`)."""
    decide: Decide
    """From the case, the trail and the observations asked for to an outcome; no I/O."""


def result(
    kind: str,
    name: str,
    status: StepStatus,
    summary: str,
    evidence: Sequence[Evidence] = (),
    node: str | None = None,
) -> StepResult:
    """A step result; `kind` is the bounded label metrics count it under (no pod or node names)."""
    return StepResult(name, status, summary, tuple(evidence), 0.0, node, kind)
