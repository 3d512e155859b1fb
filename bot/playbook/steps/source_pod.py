"""The source pod hop: its eth0 and veth, the bridge, its routes to the target, its MTU.

This is also where an agent that answers nothing on the source node ends the walk from that source:
without it no probe can be sent from the pod.

A node as the source, or a host-network pod, has no pod interface, veth or pod routes: its packets
start in the node's own namespace. The step only makes sure the node's agent answers, and says so.
"""

from __future__ import annotations

from bot.playbook.models import Hop, StepStatus
from bot.playbook.models import VerdictCode as C
from bot.playbook.observations import CallFailure
from bot.playbook.remedies import remediation
from bot.playbook.steps.base import Ask, At, Candidate, Need, Outcome, Seen, Step, result, unchecked
from bot.playbook.steps.observe import LocatePodAsk, NodeFactsAsk
from bot.playbook.steps.outside import who
from bot.playbook.steps.pod_network import net_evidence, overlay_mtu, pod_interface_checks

LABEL = "source: pod network"


def targets_of(at: At) -> list[str]:
    """The addresses the source pod sends to: the VIP, else the first endpoint, else the target IP."""
    case = at.case
    if case.service:
        return [case.service.cluster_ip]
    return [e.ip for e in at.trail.reachable][:1] or ([case.target_ip] if case.target_ip else [])


def _asks(at: At) -> tuple[Ask[object], ...]:
    src = at.source
    if src.node is None:
        return ()
    if src.host_network:
        return (NodeFactsAsk(src.node),)  # no pod namespace of its own: only whether the node's agent answers
    return (NodeFactsAsk(src.node), LocatePodAsk(src.node, src.ip or ""))


def _decide(at: At, seen: Seen) -> Outcome:
    src = at.source
    if src.node is None:
        return Outcome()
    if src.host_network:
        return _host_network(at, seen)
    facts_seen, located = seen[NodeFactsAsk(src.node)], seen[LocatePodAsk(src.node, src.ip or "")]
    facts = facts_seen.value
    missed = unchecked(facts_seen, "node state")
    if located.unreachable and facts is None:
        found = Candidate(
            C.AGENT_UNREACHABLE,
            Hop.SOURCE_NODE,
            f"the kubereach agent on {src.node} {CallFailure(located.error_kind or CallFailure.UNREACHABLE).words}: "
            f"nothing on {src.node} could be checked, "
            f"including probes from {src.key}",
            src.node,
            remediation(C.AGENT_UNREACHABLE, node=src.node),
            src.key,
        )
        failed = result(
            "source node",
            f"source {src.name}: node {src.node}",
            StepStatus.FAIL,
            f"agent on {src.node} unreachable ({located.error})",
            (),
            src.node,
        )
        return Outcome((failed,), (found,), unchecked=missed + unchecked(located, "everything on the source node"), go_on=False)
    targets = targets_of(at)
    remote = any(e.node != src.node for e in at.trail.reachable)
    name = f"source {src.name}: pod network"
    if located.ok and located.value is not None:
        net = located.value
        found_all = pod_interface_checks(src, net, facts, Hop.SOURCE_POD, overlay_mtu(facts) if remote else None, targets)
        summary = (
            found_all[0].summary if found_all else f"eth0 and its veth are up, routes cover {', '.join(targets) or 'the target'}"
        )
        status = StepStatus.FAIL if found_all else StepStatus.PASS
        return Outcome(
            (result(LABEL, name, status, summary, [net_evidence(src, net)], src.node),), tuple(found_all), unchecked=missed
        )
    if not located.unreachable:
        summary = f"the agent could not find {src.ip} on {src.node}: {located.error}"
        return Outcome((result(LABEL, name, StepStatus.WARN, summary, (), src.node),), unchecked=missed)
    return Outcome(unchecked=missed)


def _host_network(at: At, seen: Seen) -> Outcome:
    """A node, a host-network pod or the vantage node standing in for a client outside the cluster: it
    has no eth0/veth pair of its own to check; its walk ends only when its node's agent is gone."""
    src = at.source
    node = src.node or ""
    facts = seen[NodeFactsAsk(node)]
    if facts.unreachable:
        summary = (
            f"the kubereach agent on {node} {CallFailure(facts.error_kind or CallFailure.UNREACHABLE).words}: "
            f"nothing on {node} could be checked, including probes from {src.key}"
        )
        found = Candidate(
            C.AGENT_UNREACHABLE, Hop.SOURCE_NODE, summary, node, remediation(C.AGENT_UNREACHABLE, node=node), src.key
        )
        failed = result("source node", f"source {src.name}: node {node}", StepStatus.FAIL, summary, (), node)
        return Outcome((failed,), (found,), unchecked=unchecked(facts, "everything on the source node"), go_on=False)
    summary = f"{who(src)} sends from {node}'s own network namespace: no pod interface, veth or pod route to check"
    return Outcome((result(LABEL, f"source {src.name}: pod network", StepStatus.SKIP, summary, (), node),))


STEP = Step("source_pod", Hop.SOURCE_POD, frozenset({Need.NODE_FACTS, Need.LOCATE_POD}), _asks, _decide)
