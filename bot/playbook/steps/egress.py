"""The way out of the cluster, for a target outside it: the source node's route out, the source NAT
that gives a pod's packet the node's address (the CNI's masquerade), and egress NetworkPolicy for an
address only DNS gave. It runs after DNS, which gives the addresses of an external name.

A node without a usable route to the destination (none, unreachable, blackhole, prohibit: what `ip
route get` answers in the node's namespace) drops every packet there, so that is a cause at once
(NODE_HAS_NO_ROUTE_OUT). The nat POSTROUTING rules are read and shown, but not judged here: a
destination that routes pod addresses back (a peered network) needs no masquerade, so only a failing
probe makes their absence a cause (`bot.playbook.steps.egress_path`).
"""

from __future__ import annotations

from bot.playbook.models import Hop, StepStatus
from bot.playbook.models import VerdictCode as C
from bot.playbook.remedies import remediation
from bot.playbook.steps.base import Ask, At, Candidate, Need, Outcome, Seen, Step, result, unchecked
from bot.playbook.steps.egress_path import (
    masquerade_ask,
    masquerade_of,
    nat_evidence,
    route_evidence,
    route_out,
    route_out_ask,
    route_words,
)
from bot.playbook.steps.outside import egress_to_addresses, outside_addresses, outside_target, who

LABEL = "source: route out"

__all__ = ["STEP"]


def _asks(at: At) -> tuple[Ask[object], ...]:
    return tuple(a for a in (route_out_ask(at), masquerade_ask(at)) if a is not None)


def _decide(at: At, seen: Seen) -> Outcome:
    src, case, dst = at.source, at.case, outside_target(at)
    outcome = Outcome()
    if case.target_ip is None and (resolved := outside_addresses(at)):
        outcome += egress_to_addresses(at, resolved)  # an address only DNS gave: its ipBlock rules
    route_ask, nat_ask = route_out_ask(at), masquerade_ask(at)
    if route_ask is None or dst is None or src.node is None:
        return outcome
    node = src.node
    routed = seen[route_ask]
    if routed.value is None:
        return outcome + Outcome(unchecked=unchecked(routed, f"the route out to {dst}"))
    evidence = [route_evidence(node, dst, routed.value)]
    nat_words = ""
    if nat_ask is not None:
        nat = seen[nat_ask]
        if nat.value is not None:
            evidence.append(nat_evidence(node, nat_ask.pod_ip, dst, nat.value))
            nat_words = f"; masquerade: {masquerade_of(nat.value)}"
        outcome += Outcome(unchecked=unchecked(nat, f"the egress NAT rules for {dst}"))
    name = f"source {src.name}: route out of {node}"
    if route_out(routed.value):
        summary = f"{node} routes {route_words(dst, routed.value)}{nat_words}"
        return outcome + Outcome((result(LABEL, name, StepStatus.PASS, summary, evidence, node),))
    route = routed.value.route
    summary = f"{node} has {route_words(dst, routed.value)}: packets from {who(src)} to {dst} die on {node}"
    found = Candidate(
        C.NODE_HAS_NO_ROUTE_OUT,
        Hop.SOURCE_NODE,
        summary,
        node,
        remediation(
            C.NODE_HAS_NO_ROUTE_OUT, node=node, destination=dst, device=route.device if route and route.device else "DEV"
        ),
        src.key,
    )
    return outcome + Outcome((result(LABEL, name, StepStatus.FAIL, summary, evidence, node),), (found,))


STEP = Step("route_out", Hop.SOURCE_NODE, frozenset({Need.ROUTE, Need.EGRESS_NAT}), _asks, _decide)
