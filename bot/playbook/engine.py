"""The diagnosis playbook: from a resolved case and what the nodes show, one verdict with evidence.

The walk follows the packet. API facts first (is the source running, does the service have ready
endpoints on a port the pods expose), then NetworkPolicy, the source pod's interface and routes,
DNS, the source node (conntrack, forwarding, FORWARD filter), kube-proxy's NAT and conntrack for the
VIP, and — for every endpoint the source cannot reach — the underlay route and overlay entries, the
destination node and the destination pod down to its listening socket. Two checks do not wait for a
probe to fail: whose the socket on a host-network pod's port is (a stray process answers in its place,
so the probes connect), and, for a pod that is an endpoint of the service it asks about, its bridge
port's hairpin mode.

The checks live in `bot.playbook.steps`, one module per hop, each a `Step` with a pure decision.
This module holds what is data: the order the steps run in (`TARGET_ORDER`, then `SOURCE_ORDER` for
every sampled source pod; steps on one line run together) and the precedence of causes
(`PRECEDENCE`); and the walk: for each step it asks the nodes what the step asks (concurrently, an
equal ask once per walk), calls the step's decision with a read-only view of the answers, folds the
outcome into the walk, and runs the follow-up step the outcome names, if any. Every decision turns
observations into `Candidate`s (a possible cause with its code, hop and node). The verdict is the first candidate
in path order; the others are findings. Nothing here knows which fault was injected: the same
observation gives the same verdict wherever it is.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from bot.playbook.case import Case
from bot.playbook.models import Finding, Hop, StepResult, StepStatus, Verdict
from bot.playbook.models import VerdictCode as C
from bot.playbook.observations import Observed, Observer
from bot.playbook.remedies import remediation
from bot.playbook.steps import (
    api,
    conntrack,
    dns,
    egress,
    hairpin,
    hostport,
    ingress,
    policy,
    probes,
    service_nat,
    source_node,
    source_pod,
    trace,
)
from bot.playbook.steps.base import Ask, At, Candidate, Outcome, Seen, Step, Unchecked, UndeclaredObservation

StepCallback = Callable[[StepResult], None]

__all__ = ["PRECEDENCE", "SOURCE_ORDER", "TARGET_ORDER", "Candidate", "Diagnosis", "StepCallback", "run_playbook"]


# Path order: the first cause on the packet's way wins.
PRECEDENCE: tuple[tuple[C, Hop], ...] = (
    (C.SOURCE_POD_NOT_RUNNING, Hop.SOURCE_POD),
    (C.POD_HAS_NO_IP, Hop.SOURCE_POD),
    (C.SERVICE_NO_ENDPOINTS, Hop.API),
    (C.SERVICE_ENDPOINTS_NOT_READY, Hop.API),
    (C.SERVICE_PORT_MISMATCH, Hop.API),
    (C.POD_HAS_NO_IP, Hop.DESTINATION_POD),
    (C.POD_INTERFACE_DOWN, Hop.SOURCE_POD),
    (C.VETH_NOT_ON_BRIDGE, Hop.SOURCE_POD),
    (C.POD_ROUTE_MISSING, Hop.SOURCE_POD),
    (C.MTU_MISMATCH, Hop.SOURCE_POD),
    (C.NETWORK_POLICY_DENIES_EGRESS, Hop.POLICY),
    (C.NETWORK_POLICY_DENIES_INGRESS, Hop.POLICY),
    (C.CONNTRACK_TABLE_FULL, Hop.SOURCE_NODE),
    (C.IP_FORWARDING_DISABLED, Hop.SOURCE_NODE),
    (C.FORWARD_CHAIN_DROPS, Hop.SOURCE_NODE),
    (C.RP_FILTER_DROPS, Hop.SOURCE_NODE),
    (C.UPSTREAM_DNS_FAILED, Hop.DNS),
    (C.DNS_RESOLUTION_FAILED, Hop.DNS),
    (C.CONNTRACK_STALE_ENTRY, Hop.DNS),
    (C.NODE_HAS_NO_ROUTE_OUT, Hop.SOURCE_NODE),
    (C.EGRESS_NOT_MASQUERADED, Hop.SOURCE_NODE),
    (C.NODEPORT_NO_LOCAL_ENDPOINTS, Hop.DESTINATION_NODE),
    (C.KUBE_PROXY_RULES_MISSING, Hop.SERVICE_NAT),
    (C.KUBE_PROXY_RULES_STALE, Hop.SERVICE_NAT),
    (C.CONNTRACK_STALE_ENTRY, Hop.SERVICE_NAT),
    (C.OVERLAY_DEVICE_DOWN, Hop.UNDERLAY),
    (C.NODE_ROUTE_MISSING, Hop.UNDERLAY),
    (C.NODE_FIREWALL_DROPS, Hop.SOURCE_NODE),
    (C.UNDERLAY_DROPS, Hop.UNDERLAY),
    (C.MTU_MISMATCH, Hop.UNDERLAY),
    (C.CONNTRACK_TABLE_FULL, Hop.DESTINATION_NODE),
    (C.IP_FORWARDING_DISABLED, Hop.DESTINATION_NODE),
    (C.FORWARD_CHAIN_DROPS, Hop.DESTINATION_NODE),
    (C.RP_FILTER_DROPS, Hop.DESTINATION_NODE),
    (C.NODE_ROUTE_MISSING, Hop.DESTINATION_NODE),
    (C.POD_INTERFACE_DOWN, Hop.DESTINATION_POD),
    (C.VETH_NOT_ON_BRIDGE, Hop.DESTINATION_POD),
    (C.POD_ROUTE_MISSING, Hop.DESTINATION_POD),
    (C.MTU_MISMATCH, Hop.DESTINATION_POD),
    (C.HAIRPIN_BROKEN, Hop.DESTINATION_NODE),
    (C.NODE_FIREWALL_DROPS, Hop.DESTINATION_NODE),
    (C.HOST_PORT_CONFLICT, Hop.DESTINATION_NODE),
    (C.DESTINATION_NOT_LISTENING, Hop.DESTINATION_POD),
    (C.PACKET_LOSS, Hop.SOURCE_NODE),
    (C.PACKET_LOSS, Hop.UNDERLAY),
    (C.PACKET_LOSS, Hop.DESTINATION_NODE),
    (C.AGENT_UNREACHABLE, Hop.SOURCE_NODE),
    (C.AGENT_UNREACHABLE, Hop.DESTINATION_NODE),
)
_RANK = {key: i for i, key in enumerate(PRECEDENCE)}

# The order of the walk. A step that returns False ends its sequence (the target's, or one source's).
TARGET_ORDER: tuple[Step, ...] = (
    api.TARGET,
    api.TARGET_PORT,
    hostport.STEP,  # whose the socket on a host-network pod's port is: the probes cannot tell
)
SOURCE_ORDER: tuple[tuple[Step, ...], ...] = (
    (api.SOURCE,),
    (policy.STEP,),
    (source_pod.STEP,),
    (source_node.STEP,),
    (dns.STEP, service_nat.STEP, conntrack.STEP),
    (egress.STEP,),  # a target outside the cluster: the route out, the masquerade, ipBlock for what DNS gave
    (probes.STEP,),  # and, for each endpoint not reached, the path: underlay, destination node and pod
    (ingress.STEP,),  # from outside: each receiving node's dispatch of the entry, read beside what the probes saw
    (hairpin.STEP,),  # the source reaching itself through its own service's VIP
    (trace.STEP,),  # the marked probe followed hop by hop: failures nothing explained, or when asked
    (service_nat.SETTLE,),
)
# A step whose asks go out as soon as the step named here has decided, so that their answers come
# while the steps in between run (the later step then awaits the same memoised asks). The probes'
# targets are known once NetworkPolicy has decided which endpoints are denied, and their round trips
# and timeouts are the longest of the walk.
PREFETCH: Mapping[str, Step] = {policy.STEP.kind: probes.STEP}


def rank(candidate: Candidate) -> int:
    """A cause's position on the packet's path."""
    return _RANK.get((candidate.code, candidate.hop), len(_RANK))


@dataclass(frozen=True)
class Diagnosis:
    """The outcome of a playbook walk."""

    verdict: Verdict
    steps: tuple[StepResult, ...]
    findings: tuple[Finding, ...]
    per_source: Mapping[str, str] = field(default_factory=dict)
    """source pod → verdict code."""


class Walk:
    """The state of one walk: step results, candidates, notes, what could not be checked."""

    def __init__(self, case: Case, on_step: StepCallback | None) -> None:
        self.case = case
        self.on_step = on_step
        self.steps: list[StepResult] = []
        self.candidates: list[Candidate] = []
        self.unchecked: list[Unchecked] = []
        self.notes: list[Finding] = []
        self.unprobed = False

    def fold(self, outcome: Outcome, source: str | None, started: float) -> None:
        """Add one step's outcome; its results last from `started` (the step's first ask) to now."""
        elapsed = round((time.monotonic() - started) * 1000, 1)
        for step in outcome.steps:
            timed = replace(step, duration_ms=elapsed)
            self.steps.append(timed)
            if self.on_step is not None:
                self.on_step(timed)
        self.candidates += [c.seen_from(source) if source is not None else c for c in outcome.candidates]
        for c in outcome.withdrawn:
            if (mine := c.seen_from(source) if source is not None else c) in self.candidates:
                self.candidates.remove(mine)
        self.unchecked += outcome.unchecked
        self.notes += outcome.notes
        self.unprobed = self.unprobed or outcome.unprobed


class Asker:
    """Asks the nodes for one walk (the target's, or one source's): an equal ask is asked once."""

    def __init__(self, observer: Observer) -> None:
        self.observer = observer
        self._asked: dict[Ask[object], asyncio.Task[Observed[object]]] = {}

    def prefetch(self, step: Step, at: At) -> None:
        """Send what `step` will ask at this point of the walk now, without waiting for the answers."""
        for ask in dict.fromkeys(step.asks(at)):
            if ask.need in step.needs and ask not in self._asked:
                self._asked[ask] = asyncio.ensure_future(ask.call(self.observer))
                # A walk that ends before `step` runs never awaits it: mark its outcome as seen.
                self._asked[ask].add_done_callback(_retrieve)

    async def seen(self, step: Step, at: At) -> Seen:
        """What `step` asks at this point of the walk, answered."""
        asks = tuple(dict.fromkeys(step.asks(at)))
        for ask in asks:
            if ask.need not in step.needs:
                raise UndeclaredObservation(f"step {step.kind!r} asks {ask.need.value}, which it does not declare in its needs")
            if ask not in self._asked:
                self._asked[ask] = asyncio.ensure_future(ask.call(self.observer))
        answers = await asyncio.gather(*(self._asked[ask] for ask in asks))
        return Seen(step.kind, step.needs, dict(zip(asks, answers, strict=True)))


def _retrieve(task: asyncio.Task[Observed[object]]) -> None:
    if not task.cancelled():
        task.exception()


def advance(at: At, outcome: Outcome) -> At:
    """The walk after `outcome`: what it established goes on the trail."""
    trail = at.trail
    trail = replace(
        trail,
        denied=outcome.denied if outcome.denied is not None else trail.denied,
        nat_held=None if outcome.settled else (outcome.nat_held or trail.nat_held),
        probes=outcome.probes if outcome.probes is not None else trail.probes,
        unexplained=trail.unexplained + outcome.unexplained,
        dns_guess=outcome.dns_guess or trail.dns_guess,
        lookup_timed_out=trail.lookup_timed_out or outcome.lookup_timed_out,
        resolved=outcome.resolved if outcome.resolved is not None else trail.resolved,
    )
    return replace(at, trail=trail)


async def run_step(step: Step, at: At, walk: Walk, asker: Asker) -> Outcome:
    """Run one step and the follow-ups it names; returns everything they concluded (folded already)."""
    started = time.monotonic()
    source = at.src.key if at.src is not None else None
    total = Outcome()
    current: Step | None = step
    while current is not None:
        outcome = current.decide(at, await asker.seen(current, at))
        walk.fold(outcome, source, started)
        at = advance(at, outcome)
        total += replace(outcome, then=None)
        current = outcome.then
    return total


async def _walk(walk: Walk, at: At, order: tuple[tuple[Step, ...], ...], observer: Observer) -> None:
    asker = Asker(observer)
    for together in order:
        outcomes = await asyncio.gather(*(run_step(step, at, walk, asker) for step in together))
        for outcome in outcomes:
            at = advance(at, outcome)
        if not all(outcome.go_on for outcome in outcomes):
            return
        for step in together:
            if (later := PREFETCH.get(step.kind)) is not None:
                asker.prefetch(later, at)


# ------------------------------------------------------------------------------ the verdict


def _choose(w: Walk) -> tuple[Verdict, list[Finding]]:
    case, candidates, steps = w.case, w.candidates, w.steps
    unchecked = [f"{u.what} on {u.node}" for u in w.unchecked]
    why_unchecked: dict[str, set[str]] = {}
    for u in w.unchecked:
        why_unchecked.setdefault(u.node, set()).add(u.words)
    ordered = sorted(candidates, key=rank)
    findings = []
    seen: set[tuple[C, str | None, str]] = set()
    if not ordered:
        probes_failed = any(s.status == StepStatus.FAIL for s in steps)
        if unchecked and (probes_failed or w.unprobed):
            # A failure nothing observed explains, or a success that could not be checked: say what
            # could not be checked and where — a busy or silent agent is never evidence of a fault.
            nodes = sorted(why_unchecked)
            how = "; ".join(f"the kubereach agent on {n} {' / '.join(sorted(why_unchecked[n]))}" for n in nodes)
            verdict = Verdict(
                C.AGENT_UNREACHABLE,
                f"{how}; not checked: {'; '.join(dict.fromkeys(unchecked))}",
                nodes[0] if len(nodes) == 1 else None,
                Hop.DESTINATION_NODE,
                remediation(C.AGENT_UNREACHABLE, node=nodes[0]),
            )
            return verdict, []
        if probes_failed:
            # What the walk could not read (a dataplane it does not inspect, rules read otherwise
            # than expected) is where the cause may be: say it in the verdict, not only in a note.
            blind = "; ".join(dict.fromkeys(n.summary for n in w.notes if n.code == C.UNDETERMINED))
            return Verdict(
                C.UNDETERMINED,
                f"{case.source_display} cannot reach {case.target_display}, and the checks found no cause: see the steps for what was ruled out"
                + (f"; {blind}" if blind else ""),
                None,
                None,
                (
                    "# compare the probes: VIP vs endpoint, pod vs node namespace",
                    "# capture on the path: tcpdump -ni any host TARGET",
                ),
            ), []
        if any(s.kind == probes.LABEL and s.status == StepStatus.PASS for s in steps):
            summary = f"{case.source_display} reaches {case.target_display} now: every probe succeeded"
        else:
            # The checks found nothing wrong, but no connection was tried: say so rather than claim it.
            why = "no port is known to connect to; ask again with :PORT" if case.port is None else "no probe could be planned"
            summary = f"the checks found nothing wrong between {case.source_display} and {case.target_display}, but nothing was probed: {why}"
        if unchecked:
            findings.append(Finding(C.AGENT_UNREACHABLE, f"not checked: {'; '.join(dict.fromkeys(unchecked))}"))
        return Verdict(C.NO_FAULT_FOUND, summary), findings
    first = ordered[0]
    for c in ordered[1:]:
        key = (c.code, c.node, c.summary)
        if key in seen or (c.code == first.code and c.node == first.node):
            continue
        seen.add(key)
        findings.append(Finding(c.code, c.summary, c.node, c.hop))
    if unchecked:
        findings.append(Finding(C.AGENT_UNREACHABLE, f"not checked: {'; '.join(dict.fromkeys(unchecked))}"))
    return Verdict(first.code, first.summary, first.node, first.hop, first.remediation), findings


async def run_playbook(case: Case, observer: Observer, on_step: StepCallback | None = None) -> Diagnosis:
    """Walk the path from every sampled source pod and return one verdict with steps and findings."""
    w = Walk(case, on_step)
    if not case.sources:
        return Diagnosis(Verdict(C.SOURCE_NOT_FOUND, f"{case.source_display} has no pods"), tuple(w.steps), ())
    await _walk(w, At.starting(case, None), tuple((step,) for step in TARGET_ORDER), observer)
    await asyncio.gather(*(_walk(w, At.starting(case, src), SOURCE_ORDER, observer) for src in case.sources))
    per_source: dict[str, str] = {}
    for src in case.sources:
        mine = [c for c in w.candidates if c.source in (src.key, None)]
        per_source[src.key] = min(mine, key=rank).code.value if mine else C.NO_FAULT_FOUND.value
    verdict, findings = _choose(w)
    findings += [n for i, n in enumerate(w.notes) if n not in w.notes[:i]]
    failing = [k for k, code in per_source.items() if code != C.NO_FAULT_FOUND.value]
    if verdict.code != C.NO_FAULT_FOUND and failing and len(failing) < len(per_source):
        by_node = sorted({s.node or "?" for s in case.sources if s.key in failing})
        fine_nodes = {s.node or "?" for s in case.sources if s.key not in failing}
        fine = sorted(fine_nodes - set(by_node))
        if fine_nodes & set(by_node):
            # the split is not by node (pods of several workloads, some allowed and some not): name the pods
            named = ", ".join(failing[:3]) + (f" and {len(failing) - 3} more" if len(failing) > 3 else "")
            prefix = f"{len(failing)} of the {len(per_source)} source pods cannot reach {case.target_display} ({named})"
        elif verdict.code == C.AGENT_UNREACHABLE:
            prefix = f"pods on {', '.join(by_node)} could not be checked" + (
                f" (pods on {', '.join(fine)} reach {case.target_display})" if fine else ""
            )
        else:
            prefix = f"only pods on {', '.join(by_node)} cannot reach {case.target_display}" + (
                f" (pods on {', '.join(fine)} can)" if fine else ""
            )
        verdict = Verdict(verdict.code, f"{prefix}: {verdict.summary}", verdict.node, verdict.hop, verdict.remediation)
    return Diagnosis(verdict, tuple(w.steps), tuple(findings), per_source)
