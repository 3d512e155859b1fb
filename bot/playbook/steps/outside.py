"""Which addresses a source's traffic goes to when the target is outside the cluster.

A target is outside when the question named an external name or URL (`target_kind` "external") or
an address that is no pod, service or node of the cluster ("ip" outside every node's pod CIDR and
node address). Its addresses are `Case.target_ip` when the bot knew it, else what the source's own
resolver gave (`Trail.resolved`, set by the DNS step): the steps after DNS read them here, so that
an address only DNS gave is routed, NAT-checked, policy-checked and probed like a literal one.
"""

from __future__ import annotations

import ipaddress

from bot.playbook.case import Case, PodRef
from bot.playbook.models import Hop, StepStatus
from bot.playbook.models import VerdictCode as C
from bot.playbook.remedies import remediation
from bot.playbook.steps.base import At, Candidate, Outcome, result
from bot.playbook.steps.evidence import ev
from bot.policy import Cluster, PolicyDecision, evaluate, explain

POLICY_LABEL = "source: policy"


def who(src: PodRef) -> str:
    """How a source reads in a sentence: namespace/name for a pod, the name alone for a node."""
    return src.key if src.namespace else src.name


def _in_cluster(case: Case, address: str) -> bool:
    """An address of a node, or inside a node's pod CIDR (an address the cluster routes itself)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for node in case.nodes.values():
        if node.ip == address:
            return True
        if node.pod_cidr:
            try:
                if ip in ipaddress.ip_network(node.pod_cidr, strict=False):
                    return True
            except ValueError:
                continue
    return False


def is_outside(case: Case) -> bool:
    """The target lies outside the cluster: the packet leaves through the source node's route out."""
    if case.target_kind == "external":
        return True
    return case.target_kind == "ip" and case.target_ip is not None and not _in_cluster(case, case.target_ip)


def outside_addresses(at: At) -> tuple[str, ...]:
    """The outside addresses the source sends to: the target IP, else what its resolver gave."""
    case = at.case
    if not is_outside(case):
        return ()
    if case.target_ip:
        return (case.target_ip,)
    return at.trail.resolved


def outside_target(at: At) -> str | None:
    """The one outside address the walk probes and follows (the first the resolver gave)."""
    found = outside_addresses(at)
    return found[0] if found else None


def policy_reason(decision: PolicyDecision) -> str:
    """The evaluator's one-line explanation."""
    return str(explain(decision))


HOST_NETWORK_WORDS = (
    "{src} sends from the node's own network namespace: pod NetworkPolicy does not govern its egress in most CNIs "
    "(host traffic needs host endpoint or host firewall policies), so no egress policy was evaluated"
)


def egress_to_addresses(at: At, addresses: tuple[str, ...]) -> Outcome:
    """Egress NetworkPolicy for the source to addresses outside the cluster (their `ipBlock` rules).

    Called by this step for a literal address and by the egress step for one only DNS gave; the
    denied addresses go on the trail so that their probe only confirms the deny."""
    src, case = at.source, at.case
    name = f"source {src.name}: egress policy"
    cluster: Cluster | None = case.policy_cluster
    if cluster is None or case.port is None:
        return Outcome((result(POLICY_LABEL, name, StepStatus.SKIP, "NetworkPolicies were not available"),), denied=frozenset())
    src_pod = cluster.pod(src.namespace, src.name)
    if src_pod is None:
        words = HOST_NETWORK_WORDS.format(src=src.name) if src.host_network else f"{src.key} is not in the policy view"
        return Outcome((result(POLICY_LABEL, name, StepStatus.SKIP, words, (), src.node),), denied=frozenset())
    denied: dict[str, PolicyDecision] = {}
    evidence = []
    for address in addresses:
        decision = evaluate(cluster, src_pod, address, case.port, case.protocol)
        evidence.append(ev("network-policy", policy_reason(decision), src.node, address=address, allowed=decision.allowed))
        if not decision.allowed:
            denied[address] = decision
    if not denied:
        summary = f"no NetworkPolicy denies egress to {', '.join(addresses)}"
        return Outcome((result(POLICY_LABEL, name, StepStatus.PASS, summary, evidence, src.node),), denied=frozenset())
    first = next(iter(denied.values()))
    policies = ",".join(str(p) for p in first.egress.selecting_policies)
    code = C.NETWORK_POLICY_DENIES_EGRESS
    found = Candidate(code, Hop.POLICY, policy_reason(first), src.node, remediation(code, policies=policies), src.key)
    summary = f"NetworkPolicy denies egress to {', '.join(denied)}"
    return Outcome(
        (result(POLICY_LABEL, name, StepStatus.FAIL, summary, evidence, src.node),), (found,), denied=frozenset(denied)
    )
