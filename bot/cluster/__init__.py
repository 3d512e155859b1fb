"""kubereach's cluster resolver: the only part of the bot that talks to the Kubernetes API.

`ClusterClient.from_kubeconfig(path)` / `ClusterClient.in_cluster()` open the API with a timeout
on every call; `resolve(client, question, default_namespace=..., allowed_namespaces=...)` (or
`client.resolve(question, ...)`) turns a parsed `Question` into `Resolved`: the source pods, the
target Service/pods/endpoints, the port, the nodes and the objects the NetworkPolicy evaluator
needs. `agent_addresses(client)` finds the node agents. Failures are our own errors:
`ClusterUnavailable` / `ClusterAccessDenied` / `ClusterNoCredentials`, `ResolutionError`, `NamespaceNotAllowed`.
"""

from bot.cluster.agents import AGENT_ADDRESS_ANNOTATION, addresses_from_pods, agent_addresses
from bot.cluster.client import RESOURCES, ApiCall, ClusterClient, KubeResource
from bot.cluster.errors import (
    ClusterAccessDenied,
    ClusterNoCredentials,
    ClusterUnavailable,
    NamespaceNotAllowed,
    ResolutionError,
)
from bot.cluster.models import (
    ContainerPortInfo,
    EndpointInfo,
    EndpointPortInfo,
    NodeInfo,
    PodInfo,
    ServiceInfo,
    ServicePortInfo,
)
from bot.cluster.resolve import Resolved, TargetKind, TargetPort, resolve, sample_pods
from bot.cluster.suggest import NamedObject, suggest
from bot.cluster.watchcache import CachedCluster

__all__ = [
    "AGENT_ADDRESS_ANNOTATION",
    "RESOURCES",
    "ApiCall",
    "CachedCluster",
    "ClusterAccessDenied",
    "ClusterClient",
    "ClusterNoCredentials",
    "ClusterUnavailable",
    "ContainerPortInfo",
    "EndpointInfo",
    "EndpointPortInfo",
    "KubeResource",
    "NamedObject",
    "NamespaceNotAllowed",
    "NodeInfo",
    "PodInfo",
    "ResolutionError",
    "Resolved",
    "ServiceInfo",
    "ServicePortInfo",
    "TargetKind",
    "TargetPort",
    "addresses_from_pods",
    "agent_addresses",
    "resolve",
    "sample_pods",
    "suggest",
]
