"""The source node hop: conntrack room and IP forwarding where the packet leaves the pod.

A host-network source (a node, or a host-network pod) originates its packets on the node rather than
forwarding them, so IP forwarding is not on its path; conntrack room still is."""

from __future__ import annotations

from bot.playbook.models import Hop, StepStatus
from bot.playbook.steps.base import Ask, At, Need, Outcome, Seen, Step, result
from bot.playbook.steps.node_state import facts_evidence, node_checks
from bot.playbook.steps.observe import NodeFactsAsk


def _asks(at: At) -> tuple[Ask[object], ...]:
    return (NodeFactsAsk(at.source.node),) if at.source.node is not None else ()


def _decide(at: At, seen: Seen) -> Outcome:
    src = at.source
    if src.node is None:
        return Outcome()
    facts = seen[NodeFactsAsk(src.node)].value
    if facts is None:
        return Outcome()  # the source pod step says the node state could not be checked
    found = node_checks(facts, Hop.SOURCE_NODE, forwards=not src.host_network)  # a node's own traffic is not forwarded
    summary = found[0].summary if found else "forwarding on, conntrack has room"
    status = StepStatus.FAIL if found else StepStatus.PASS
    step = result("source node", f"source node {src.node}", status, summary, [facts_evidence(facts)], src.node)
    return Outcome((step,), tuple(found))


STEP = Step("source_node", Hop.SOURCE_NODE, frozenset({Need.NODE_FACTS}), _asks, _decide)
