"""The diagnosis playbook: from a resolved case and what the nodes show, one verdict with evidence.

The walk follows the packet. API facts first (is the source running, does the service have ready
endpoints on a port the pods expose), then NetworkPolicy, the source pod's interface and routes,
DNS, the source node (conntrack, forwarding, FORWARD filter), kube-proxy's NAT and conntrack for the
VIP, and — for every endpoint the source cannot reach — the underlay route and overlay entries, the
destination node and the destination pod down to its listening socket.

The checks live in `bot.playbook.steps`, one module per hop. This module holds what is data: the
order the steps run in (`TARGET_ORDER`, then `SOURCE_ORDER` for every sampled source pod; steps on
one line run together) and the precedence of causes (`PRECEDENCE`). Every check turns an observation
into a `Candidate` (a possible cause with its code, hop and node). The verdict is the first candidate
in path order; the others are findings. Nothing here knows which fault was injected: the same
observation gives the same verdict wherever it is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

from bot.playbook.case import Case
from bot.playbook.models import Finding, Hop, StepResult, StepStatus, Verdict
from bot.playbook.models import VerdictCode as C
from bot.playbook.observations import Observer
from bot.playbook.remedies import remediation
from bot.playbook.steps import api, conntrack, dns, policy, probes, service_nat, source_node, source_pod, trace
from bot.playbook.steps.base import Candidate, SourceStep, SourceWalk, StepCallback, TargetStep, Walk

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
    (C.DNS_RESOLUTION_FAILED, Hop.DNS),
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
    (C.NODE_FIREWALL_DROPS, Hop.DESTINATION_NODE),
    (C.DESTINATION_NOT_LISTENING, Hop.DESTINATION_POD),
    (C.PACKET_LOSS, Hop.SOURCE_NODE),
    (C.PACKET_LOSS, Hop.UNDERLAY),
    (C.PACKET_LOSS, Hop.DESTINATION_NODE),
    (C.AGENT_UNREACHABLE, Hop.SOURCE_NODE),
    (C.AGENT_UNREACHABLE, Hop.DESTINATION_NODE),
)
_RANK = {key: i for i, key in enumerate(PRECEDENCE)}

# The order of the walk. A step that returns False ends its sequence (the target's, or one source's).
TARGET_ORDER: tuple[TargetStep, ...] = (
    api.TARGET,
    api.TARGET_PORT,
)
SOURCE_ORDER: tuple[tuple[SourceStep, ...], ...] = (
    (api.SOURCE,),
    (policy.STEP,),
    (source_pod.STEP,),
    (source_node.STEP,),
    (dns.STEP, service_nat.STEP, conntrack.STEP),
    (probes.STEP,),  # and, for each endpoint not reached, the path: underlay, destination node and pod
    (trace.STEP,),  # the marked probe followed hop by hop: failures nothing explained, or when asked
    (service_nat.SETTLE,),
)


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


async def _walk_target(w: Walk) -> None:
    for step in TARGET_ORDER:
        if not await step.check(w):
            return


async def _walk_source(sw: SourceWalk) -> None:
    for together in SOURCE_ORDER:
        results = await asyncio.gather(*(step.check(sw) for step in together))
        if not all(results):
            return
        if policy.STEP in together:
            # The deny is known: send the probes now (those that only confirm it wait briefly), so
            # they overlap the node steps; the probes step awaits the same calls.
            probes.send_probes_early(sw)


# ------------------------------------------------------------------------------ the verdict


def _choose(w: Walk) -> tuple[Verdict, list[Finding]]:
    case, candidates, unchecked, steps = w.case, w.candidates, w.unchecked, w.steps
    ordered = sorted(candidates, key=rank)
    findings = []
    seen: set[tuple[C, str | None, str]] = set()
    if not ordered:
        probes_failed = any(s.status == StepStatus.FAIL for s in steps)
        if unchecked and (probes_failed or w.unprobed):
            # A failure nothing observed explains, or a success that could not be checked: say what
            # could not be checked and where — a busy or silent agent is never evidence of a fault.
            nodes = sorted(w.why_unchecked)
            how = "; ".join(f"the kubereach agent on {n} {' / '.join(sorted(w.why_unchecked[n]))}" for n in nodes)
            verdict = Verdict(
                C.AGENT_UNREACHABLE,
                f"{how}; not checked: {'; '.join(dict.fromkeys(unchecked))}",
                nodes[0] if len(nodes) == 1 else None,
                Hop.DESTINATION_NODE,
                remediation(C.AGENT_UNREACHABLE, node=nodes[0]),
            )
            return verdict, []
        if probes_failed:
            return Verdict(
                C.UNDETERMINED,
                f"{case.source_display} cannot reach {case.target_display}, and the checks found no cause: see the steps for what was ruled out",
                None,
                None,
                (
                    "# compare the probes: VIP vs endpoint, pod vs node namespace",
                    "# capture on the path: tcpdump -ni any host TARGET",
                ),
            ), []
        summary = f"{case.source_display} reaches {case.target_display} now: every probe succeeded"
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
    w = Walk(case, observer, on_step)
    if not case.sources:
        return Diagnosis(Verdict(C.SOURCE_NOT_FOUND, f"{case.source_display} has no pods"), tuple(w.steps), ())
    await _walk_target(w)
    await asyncio.gather(*(_walk_source(SourceWalk(w, src)) for src in case.sources))
    per_source: dict[str, str] = {}
    for src in case.sources:
        mine = [c for c in w.candidates if c.source in (src.key, None)]
        per_source[src.key] = min(mine, key=rank).code.value if mine else C.NO_FAULT_FOUND.value
    verdict, findings = _choose(w)
    findings += [n for i, n in enumerate(w.notes) if n not in w.notes[:i]]
    failing = [k for k, code in per_source.items() if code != C.NO_FAULT_FOUND.value]
    if verdict.code != C.NO_FAULT_FOUND and failing and len(failing) < len(per_source):
        by_node = sorted({s.node or "?" for s in case.sources if s.key in failing})
        fine = sorted({s.node or "?" for s in case.sources if s.key not in failing} - set(by_node))
        if verdict.code == C.AGENT_UNREACHABLE:
            prefix = f"pods on {', '.join(by_node)} could not be checked" + (
                f" (pods on {', '.join(fine)} reach {case.target_display})" if fine else ""
            )
        else:
            prefix = f"only pods on {', '.join(by_node)} cannot reach {case.target_display}" + (
                f" (pods on {', '.join(fine)} can)" if fine else ""
            )
        verdict = Verdict(verdict.code, f"{prefix}: {verdict.summary}", verdict.node, verdict.hop, verdict.remediation)
    return Diagnosis(verdict, tuple(w.steps), tuple(findings), per_source)
