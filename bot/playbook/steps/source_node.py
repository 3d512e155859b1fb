"""The source node hop: conntrack room and IP forwarding where the packet leaves the pod."""

from __future__ import annotations

import time

from bot.playbook.models import Hop, StepStatus
from bot.playbook.steps.base import Need, SourceStep, SourceWalk
from bot.playbook.steps.node_state import facts_evidence, node_checks


async def check_source_node(sw: SourceWalk) -> bool:
    w, src = sw.w, sw.src
    facts = await sw.node_facts(src.node)
    if facts is None or src.node is None:
        return True
    found = node_checks(facts, Hop.SOURCE_NODE, forwards=True)
    sw.add(found)
    w.record(
        f"source node {src.node}",
        StepStatus.FAIL if found else StepStatus.PASS,
        found[0].summary if found else "forwarding on, conntrack has room",
        [facts_evidence(facts)],
        sw.facts_started.get(src.node, time.monotonic()),
        src.node,
    )
    return True


STEP = SourceStep("source node", Hop.SOURCE_NODE, frozenset({Need.NODE_FACTS}), check_source_node)
