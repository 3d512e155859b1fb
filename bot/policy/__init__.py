"""kubereach's NetworkPolicy evaluator: would Kubernetes NetworkPolicy let this flow through, and why.

Pure: build a `Cluster` from Kubernetes object dicts (`build_cluster`, `cluster_from_objects`), then
`evaluate(cluster, source, destination, port, protocol)` returns a `PolicyDecision`; `explain` puts
it in words. Reading manifest files lives in `bot.policy.manifests`, the command in `bot.policy.cli`.
"""

from bot.policy.evaluate import Endpoint, evaluate, explain, peer_matches, selecting_policies
from bot.policy.models import (
    Cluster,
    ContainerPort,
    Direction,
    DirectionDecision,
    Flow,
    IPAddress,
    Namespace,
    NetworkPolicy,
    Pod,
    PodRef,
    PolicyDecision,
    PolicyRef,
    Protocol,
    RuleMatch,
    RuleRef,
    decision_as_dict,
)
from bot.policy.objects import (
    build_cluster,
    cluster_from_objects,
    parse_namespace,
    parse_network_policy,
    parse_pod,
)

__all__ = [
    "Cluster",
    "ContainerPort",
    "Direction",
    "DirectionDecision",
    "Endpoint",
    "Flow",
    "IPAddress",
    "Namespace",
    "NetworkPolicy",
    "Pod",
    "PodRef",
    "PolicyDecision",
    "PolicyRef",
    "Protocol",
    "RuleMatch",
    "RuleRef",
    "build_cluster",
    "cluster_from_objects",
    "decision_as_dict",
    "evaluate",
    "explain",
    "parse_namespace",
    "parse_network_policy",
    "parse_pod",
    "peer_matches",
    "selecting_policies",
]
