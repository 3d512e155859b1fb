"""The path to each endpoint the source cannot reach: source node → underlay → destination node → pod.

A follow-up of the probes (endpoints that did not answer) and of DNS (DNS servers that did not
answer). What to ask depends on what was seen, so the path is three steps, each asking what the one
before it found out (the engine answers an ask already made in this walk from what it saw then):

1. the source node's route to each endpoint and both nodes' state (`path_step`);
2. the filter tables, the route back and rp_filter on the device traffic arrives on, the endpoint's
   pod and its listening sockets;
3. only for an endpoint where nothing explains the failure: a probe from its own node (evidence
   for a person, never a cause).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from bot.playbook.case import EndpointRef
from bot.playbook.models import Evidence, Hop, StepStatus
from bot.playbook.models import VerdictCode as C
from bot.playbook.remedies import remediation
from bot.playbook.steps.base import Ask, At, Candidate, Need, Outcome, Seen, Step, Unchecked, Unexplained, result, unchecked
from bot.playbook.steps.destination_node import arrival_checks, filter_ask, filter_checks, route_back, route_back_ask
from bot.playbook.steps.destination_pod import destination_pod, pod_asks
from bot.playbook.steps.evidence import ev
from bot.playbook.steps.observe import NodeFactsAsk, ProbeAsk
from bot.playbook.steps.underlay import arriving_device, forward_route, forward_route_ask

After = Callable[[tuple[Candidate, ...]], Outcome]
"""What the step that asked for the path concludes once every cause on it is known."""

NEEDS = frozenset({Need.NODE_FACTS, Need.ROUTE, Need.FILTER_STATE, Need.LOCATE_POD, Need.SOCKETS, Need.PROBE})


def path_step(endpoints: tuple[EndpointRef, ...], protocol: str, purpose: str, after: After) -> Step:
    """Walk the path to each endpoint; then `after` with every cause found.

    With purpose "dns" the endpoints are DNS servers: a server that does not listen is the cluster
    DNS failing (DNS_RESOLUTION_FAILED), while a broken path to it keeps its own cause.
    """
    kind = "path_dns" if purpose == "dns" else "path"

    def asks(at: At) -> tuple[Ask[object], ...]:
        return tuple(ask for e in endpoints for ask in _first_asks(at, e))

    def decide(at: At, seen: Seen) -> Outcome:
        incoming = {e.ip: arriving_device(at, seen, e) if _remote(at, e) else "" for e in endpoints}
        return Outcome(then=_second(kind, endpoints, protocol, purpose, incoming, after))

    return Step(kind, Hop.UNDERLAY, NEEDS, asks, decide)


def _remote(at: At, e: EndpointRef) -> bool:
    return e.node is not None and e.node != at.source.node


def _first_asks(at: At, e: EndpointRef) -> tuple[Ask[object], ...]:
    src_node = at.source.node or ""
    asks: list[Ask[object]] = [NodeFactsAsk(src_node)]
    if e.node is not None:
        asks.append(NodeFactsAsk(e.node))
    if _remote(at, e):
        asks.append(forward_route_ask(at, e))
    return tuple(asks)


def _second_asks(at: At, e: EndpointRef, incoming: str, protocol: str) -> tuple[Ask[object], ...]:
    if e.node is None:
        return ()
    asks: list[Ask[object]] = [filter_ask(at, at.source.node or "", e, (), protocol)]
    if _remote(at, e):
        asks += [filter_ask(at, e.node, e, (incoming or "eth0",), protocol), route_back_ask(at, e)]
        if incoming:
            asks.append(filter_ask(at, e.node, e, (incoming,), protocol))
    asks += pod_asks(e, protocol)
    return tuple(asks)


def _node_probe(e: EndpointRef, protocol: str) -> ProbeAsk:
    return ProbeAsk(e.node or "", "", e.ip, e.port, protocol)


def _second(
    kind: str, endpoints: tuple[EndpointRef, ...], protocol: str, purpose: str, incoming: Mapping[str, str], after: After
) -> Step:
    def asks(at: At) -> tuple[Ask[object], ...]:
        return tuple(ask for e in endpoints for ask in (*_first_asks(at, e), *_second_asks(at, e, incoming[e.ip], protocol)))

    def decide(at: At, seen: Seen) -> Outcome:
        unexplained = tuple(e for e in endpoints if e.node and not _walk(at, seen, e, incoming[e.ip], protocol, purpose)[0])
        if not unexplained:
            return _conclude(at, seen, endpoints, protocol, purpose, incoming, (), after)
        return Outcome(then=_third(kind, endpoints, protocol, purpose, incoming, unexplained, after))

    return Step(kind, Hop.UNDERLAY, NEEDS, asks, decide)


def _third(
    kind: str,
    endpoints: tuple[EndpointRef, ...],
    protocol: str,
    purpose: str,
    incoming: Mapping[str, str],
    unexplained: tuple[EndpointRef, ...],
    after: After,
) -> Step:
    def asks(at: At) -> tuple[Ask[object], ...]:
        walked = (ask for e in endpoints for ask in (*_first_asks(at, e), *_second_asks(at, e, incoming[e.ip], protocol)))
        return (*walked, *(_node_probe(e, protocol) for e in unexplained))

    def decide(at: At, seen: Seen) -> Outcome:
        return _conclude(at, seen, endpoints, protocol, purpose, incoming, unexplained, after)

    return Step(kind, Hop.UNDERLAY, NEEDS, asks, decide)


def _conclude(
    at: At,
    seen: Seen,
    endpoints: tuple[EndpointRef, ...],
    protocol: str,
    purpose: str,
    incoming: Mapping[str, str],
    probed: tuple[EndpointRef, ...],
    after: After,
) -> Outcome:
    src = at.source
    label = "path (DNS)" if purpose == "dns" else "path"
    outcome = Outcome()
    every: list[Candidate] = []
    for e in endpoints:
        found, evidence, missed = _walk(at, seen, e, incoming[e.ip], protocol, purpose)
        if e in probed:
            observed = seen[_node_probe(e, protocol)]
            if observed.value is not None:
                evidence.append(
                    ev(
                        "probe",
                        f"{e.node} (node namespace) → {e.ip}:{e.port}: {observed.value.outcome}",
                        e.node,
                        outcome=observed.value.outcome,
                    )
                )
        name = f"path {src.name} → {e.pod.name if e.pod else e.ip}" + (" (DNS)" if purpose == "dns" else "")
        status = StepStatus.FAIL if found else StepStatus.WARN
        summary = found[0].summary if found else f"no cause found on the path to {e.ip}:{e.port}"
        outcome += Outcome(
            (result(label, name, status, summary, evidence, e.node),),
            tuple(found),
            unchecked=tuple(missed),
            unexplained=() if found else (Unexplained(e, protocol, purpose),),
        )
        every += found
    return outcome + after(tuple(every))


def _walk(
    at: At, seen: Seen, e: EndpointRef, incoming: str, protocol: str, purpose: str
) -> tuple[list[Candidate], list[Evidence], list[Unchecked]]:
    """Every cause on the path to `e`, in the order the hops are met, with the evidence and what
    could not be checked."""
    src = at.source
    src_node = src.node or ""
    evidence: list[Evidence] = []
    missed: list[Unchecked] = []
    src_seen = seen[NodeFactsAsk(src_node)]
    missed += unchecked(src_seen, "node state")
    dst_facts = None
    if e.node is not None:
        dst_seen = seen[NodeFactsAsk(e.node)]
        missed += unchecked(dst_seen, "node state")
        dst_facts = dst_seen.value
    remote = _remote(at, e)
    found: list[Candidate] = []
    if remote:
        found += forward_route(at, seen, e, src_seen.value, evidence, missed)
    if dst_facts is not None and remote:
        found += arrival_checks(e, dst_facts, incoming, evidence)
    if e.node is not None:
        found += filter_checks(at, seen, filter_ask(at, src_node, e, (), protocol), Hop.SOURCE_NODE, e, evidence, missed)
        if remote:
            arriving = filter_ask(at, e.node, e, (incoming or "eth0",), protocol)
            found += filter_checks(at, seen, arriving, Hop.DESTINATION_NODE, e, evidence, missed)
            found += route_back(at, seen, e, dst_facts, incoming, evidence, missed, protocol)
        found += destination_pod(at, seen, e, dst_facts, evidence, missed, protocol)
    if purpose == "dns":
        found = [_as_dns_failure(e, c) if c.code == C.DESTINATION_NOT_LISTENING else c for c in found]
    return found, evidence, missed


def _as_dns_failure(e: EndpointRef, c: Candidate) -> Candidate:
    return Candidate(
        C.DNS_RESOLUTION_FAILED,
        Hop.DNS,
        f"the cluster DNS server {e.pod.key if e.pod else e.ip} does not answer: {c.summary}",
        None,
        remediation(C.DNS_RESOLUTION_FAILED),
    )
