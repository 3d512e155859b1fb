"""The policy hop: does Kubernetes NetworkPolicy let the source reach each endpoint pod."""

from __future__ import annotations

import time
from collections.abc import Sequence

from bot.playbook.case import EndpointRef, PodRef
from bot.playbook.models import Hop, StepStatus
from bot.playbook.models import VerdictCode as C
from bot.playbook.remedies import remediation
from bot.playbook.steps.base import Candidate, SourceStep, SourceWalk, Walk
from bot.playbook.steps.evidence import ev
from bot.policy import Cluster, Pod, PolicyDecision, evaluate, explain


def check_policy(w: Walk, src: PodRef, endpoints: Sequence[EndpointRef]) -> set[str]:
    """Evaluate NetworkPolicy for src → each endpoint pod; return endpoint IPs that policy denies."""
    cluster: Cluster | None = w.case.policy_cluster
    started = time.monotonic()
    if cluster is None:
        w.record(f"source {src.name}: policy", StepStatus.SKIP, "NetworkPolicies were not available", (), started)
        return set()
    src_pod = cluster.pod(src.namespace, src.name)
    denied: dict[str, PolicyDecision] = {}
    evidence = []
    for e in endpoints:
        if e.pod is not None and e.pod.key == src.key:
            continue  # hairpin to itself: kube-proxy masquerades it to the node, which policies admit
        dst: Pod | str | None = cluster.pod(e.pod.namespace, e.pod.name) if e.pod is not None else e.ip
        if src_pod is None or dst is None:
            continue
        decision = evaluate(cluster, src_pod, dst, e.port, w.case.protocol)
        if not decision.allowed:
            denied[e.ip] = decision
            evidence.append(
                ev(
                    "network-policy",
                    decision_reason(decision),
                    e.node,
                    denying=[d.direction.value for d in decision.denying],
                )
            )
    if not denied:
        w.record(f"source {src.name}: policy", StepStatus.PASS, "no NetworkPolicy denies this flow", evidence, started, src.node)
        return set()
    first = next(iter(denied.values()))
    egress = first.denying[0].direction.value == "Egress"
    side = first.egress if egress else first.ingress
    policies = ",".join(str(p) for p in side.selecting_policies)
    nodes = {e.node for e in endpoints if e.ip in denied}
    node = src.node if egress else (nodes.pop() if len(nodes) == 1 else None)
    code = C.NETWORK_POLICY_DENIES_EGRESS if egress else C.NETWORK_POLICY_DENIES_INGRESS
    share = "" if len(denied) == len(endpoints) else f" (for {len(denied)} of {len(endpoints)} endpoints)"
    w.add(Candidate(code, Hop.POLICY, decision_reason(first) + share, node, remediation(code, policies=policies), src.key))
    w.record(
        f"source {src.name}: policy",
        StepStatus.FAIL,
        f"NetworkPolicy denies {'egress' if egress else 'ingress'}{share}",
        evidence,
        started,
        node,
    )
    return set(denied)


def decision_reason(decision: PolicyDecision) -> str:
    """The evaluator's one-line explanation."""
    return str(explain(decision))


async def _policy(sw: SourceWalk) -> bool:
    if sw.reachable:
        sw.denied = check_policy(sw.w, sw.src, sw.reachable)
    return True


STEP = SourceStep("policy", Hop.POLICY, frozenset(), _policy)
