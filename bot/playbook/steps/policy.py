"""The policy hop: does Kubernetes NetworkPolicy let the source reach each endpoint pod, or the address
outside the cluster it sends to (egress `ipBlock` rules judge those).

A node as the source is not a pod: its traffic, like a host-network pod's, starts in the node's own
namespace, and most CNIs (Calico without host endpoints, Cilium without host policies, flannel with
any policy engine) apply no pod NetworkPolicy to its egress — the step says so and skips.
"""

from __future__ import annotations

from bot.playbook.models import Hop, StepStatus
from bot.playbook.models import VerdictCode as C
from bot.playbook.remedies import remediation
from bot.playbook.steps.base import At, Candidate, Outcome, Seen, Step, no_asks, result
from bot.playbook.steps.evidence import ev
from bot.playbook.steps.outside import HOST_NETWORK_WORDS, egress_to_addresses, outside_addresses, policy_reason
from bot.policy import Cluster, Pod, PolicyDecision, evaluate

LABEL = "source: policy"


def _decide(at: At, seen: Seen) -> Outcome:
    """Evaluate NetworkPolicy for src → each endpoint pod; the endpoint IPs policy denies go on the trail."""
    src, endpoints = at.source, at.trail.reachable
    name = f"source {src.name}: policy"
    cluster: Cluster | None = at.case.policy_cluster
    if not endpoints:
        addresses = outside_addresses(at)
        if not addresses:
            return Outcome()
        return egress_to_addresses(at, addresses)
    if cluster is None:
        return Outcome((result(LABEL, name, StepStatus.SKIP, "NetworkPolicies were not available"),), denied=frozenset())
    source: Pod | str | None = cluster.pod(src.namespace, src.name)
    if source is None and at.case.source_kind == "external":
        # A client outside the cluster: no egress policy selects it; the endpoints' ingress policies
        # judge the address the packets arrive with (ipBlock rules).
        source = arriving_address(at)
        if source is None:
            summary = (
                f"traffic from {src.key} through the entry is masqueraded to a node's address (externalTrafficPolicy "
                "Cluster): NetworkPolicy judges that address, not the client's"
            )
            return Outcome((result(LABEL, name, StepStatus.SKIP, summary, (), src.node),), denied=frozenset())
    elif source is None and src.host_network:
        return Outcome(
            (result(LABEL, name, StepStatus.SKIP, HOST_NETWORK_WORDS.format(src=src.name), (), src.node),), denied=frozenset()
        )
    denied: dict[str, PolicyDecision] = {}
    evidence = []
    for e in endpoints:
        if e.pod is not None and e.pod.key == src.key:
            continue  # hairpin to itself: kube-proxy masquerades it to the node, which policies admit
        dst: Pod | str | None = cluster.pod(e.pod.namespace, e.pod.name) if e.pod is not None else e.ip
        if source is None or dst is None or (isinstance(source, str) and isinstance(dst, str)):
            continue
        decision = evaluate(cluster, source, dst, e.port, at.case.protocol)
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
        passed = result(LABEL, name, StepStatus.PASS, "no NetworkPolicy denies this flow", evidence, src.node)
        return Outcome((passed,), denied=frozenset())
    first = next(iter(denied.values()))
    egress = first.denying[0].direction.value == "Egress"
    side = first.egress if egress else first.ingress
    policies = ",".join(str(p) for p in side.selecting_policies)
    nodes = {e.node for e in endpoints if e.ip in denied}
    node = src.node if egress else (nodes.pop() if len(nodes) == 1 else None)
    code = C.NETWORK_POLICY_DENIES_EGRESS if egress else C.NETWORK_POLICY_DENIES_INGRESS
    share = "" if len(denied) == len(endpoints) else f" (for {len(denied)} of {len(endpoints)} endpoints)"
    found = Candidate(code, Hop.POLICY, decision_reason(first) + share, node, remediation(code, policies=policies), src.key)
    summary = f"NetworkPolicy denies {'egress' if egress else 'ingress'}{share}"
    return Outcome((result(LABEL, name, StepStatus.FAIL, summary, evidence, node),), (found,), denied=frozenset(denied))


def arriving_address(at: At) -> str | None:
    """The source address an outside client's packets reach the endpoints with: its own, except
    through an entry from outside with externalTrafficPolicy Cluster, where kube-proxy masquerades them
    (None: not the source's)."""
    case, src = at.case, at.source
    if case.entry is not None and case.service is not None and case.service.external_traffic_policy != "Local":
        return None
    return src.ip


def decision_reason(decision: PolicyDecision) -> str:
    """The evaluator's one-line explanation."""
    return policy_reason(decision)


STEP = Step("policy", Hop.POLICY, frozenset(), no_asks, _decide)
