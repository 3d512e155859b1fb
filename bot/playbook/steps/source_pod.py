"""The source pod hop: its eth0 and veth, the bridge, its routes to the target, its MTU.

This is also where an agent that answers nothing on the source node ends the walk from that source:
without it no probe can be sent from the pod.
"""

from __future__ import annotations

import asyncio
import time

from bot.playbook.models import Hop, StepStatus
from bot.playbook.models import VerdictCode as C
from bot.playbook.observations import CallFailure
from bot.playbook.remedies import remediation
from bot.playbook.steps.base import Candidate, Need, SourceStep, SourceWalk
from bot.playbook.steps.pod_network import net_evidence, overlay_mtu, pod_interface_checks


def targets_of(sw: SourceWalk) -> list[str]:
    """The addresses the source pod sends to: the VIP, else the first endpoint, else the target IP."""
    case = sw.case
    if case.service:
        return [case.service.cluster_ip]
    return [e.ip for e in sw.reachable][:1] or ([case.target_ip] if case.target_ip else [])


async def check_source_pod(sw: SourceWalk) -> bool:
    w, src = sw.w, sw.src
    assert src.node is not None
    started = time.monotonic()
    facts, located = await asyncio.gather(sw.node_facts(src.node), w.obs.locate_pod(src.node, src.ip or ""))
    if located.unreachable and facts is None:
        w.unreachable(located, "everything on the source node")
        w.add(
            Candidate(
                C.AGENT_UNREACHABLE,
                Hop.SOURCE_NODE,
                f"the kubereach agent on {src.node} {CallFailure(located.error_kind or CallFailure.UNREACHABLE).words}: "
                f"nothing on {src.node} could be checked, "
                f"including probes from {src.key}",
                src.node,
                remediation(C.AGENT_UNREACHABLE, node=src.node),
                src.key,
            )
        )
        w.record(
            f"source {src.name}: node {src.node}",
            StepStatus.FAIL,
            f"agent on {src.node} unreachable ({located.error})",
            (),
            started,
            src.node,
        )
        return False
    targets = targets_of(sw)
    remote = any(e.node != src.node for e in sw.reachable)
    if located.ok and located.value is not None:
        net = located.value
        found = pod_interface_checks(src, net, facts, Hop.SOURCE_POD, overlay_mtu(facts) if remote else None, targets)
        sw.add(found)
        w.record(
            f"source {src.name}: pod network",
            StepStatus.FAIL if found else StepStatus.PASS,
            found[0].summary if found else f"eth0 and its veth are up, routes cover {', '.join(targets) or 'the target'}",
            [net_evidence(src, net)],
            started,
            src.node,
        )
    elif not located.unreachable:
        w.record(
            f"source {src.name}: pod network",
            StepStatus.WARN,
            f"the agent could not find {src.ip} on {src.node}: {located.error}",
            (),
            started,
            src.node,
        )
    return True


STEP = SourceStep("source pod", Hop.SOURCE_POD, frozenset({Need.NODE_FACTS, Need.LOCATE_POD}), check_source_pod)
