"""The kinds the bot reads (`KubeResource`), and `ObjectReader`: what the resolver and the agent
finder need of a client (`ClusterClient` is one), so that they do not import the client that calls them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bot.cluster.models import RawObject


@dataclass(frozen=True)
class KubeResource:
    """A kind the bot reads: where it lives in the API and which client methods read it."""

    kind: str
    plural: str
    group: str
    version: str
    namespaced: bool
    api: str
    """Name of the `kubernetes.client` API class (CoreV1Api, AppsV1Api ...)."""
    snake: str
    """The kind in the client's method names (``pod``, ``endpoint_slice``)."""

    @property
    def api_version(self) -> str:
        """The objects' apiVersion (``v1``, ``apps/v1``)."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """``pods``, ``deployments.apps``: the name kubectl and RBAC messages use."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


PODS = KubeResource("Pod", "pods", "", "v1", True, "CoreV1Api", "pod")
SERVICES = KubeResource("Service", "services", "", "v1", True, "CoreV1Api", "service")
NODES = KubeResource("Node", "nodes", "", "v1", False, "CoreV1Api", "node")
NAMESPACES = KubeResource("Namespace", "namespaces", "", "v1", False, "CoreV1Api", "namespace")
ENDPOINT_SLICES = KubeResource(
    "EndpointSlice", "endpointslices", "discovery.k8s.io", "v1", True, "DiscoveryV1Api", "endpoint_slice"
)
DEPLOYMENTS = KubeResource("Deployment", "deployments", "apps", "v1", True, "AppsV1Api", "deployment")
STATEFUL_SETS = KubeResource("StatefulSet", "statefulsets", "apps", "v1", True, "AppsV1Api", "stateful_set")
DAEMON_SETS = KubeResource("DaemonSet", "daemonsets", "apps", "v1", True, "AppsV1Api", "daemon_set")
REPLICA_SETS = KubeResource("ReplicaSet", "replicasets", "apps", "v1", True, "AppsV1Api", "replica_set")
NETWORK_POLICIES = KubeResource(
    "NetworkPolicy", "networkpolicies", "networking.k8s.io", "v1", True, "NetworkingV1Api", "network_policy"
)

RESOURCES: tuple[KubeResource, ...] = (
    PODS,
    SERVICES,
    NODES,
    NAMESPACES,
    ENDPOINT_SLICES,
    DEPLOYMENTS,
    STATEFUL_SETS,
    DAEMON_SETS,
    REPLICA_SETS,
    NETWORK_POLICIES,
)
"""Everything the bot reads; the deployment's ClusterRole grants get and list on exactly these."""

CONFIG_MAPS = KubeResource("ConfigMap", "configmaps", "", "v1", True, "CoreV1Api", "config_map")
"""Read once per investigation, by name only: kube-system/coredns (its Corefile names the cluster DNS's
upstream). Not in RESOURCES: the chart grants `get` on that one object (a Role in kube-system with
resourceNames), never ConfigMaps at large."""


class ObjectReader(Protocol):
    """Reads objects as plain dicts (`bot.cluster.client.ClusterClient`)."""

    def list_objects(
        self, resource: KubeResource, namespace: str | None = None, *, label_selector: str | None = None
    ) -> list[RawObject]:
        """Every object of a kind in a namespace (None: all namespaces)."""
        ...

    def get_object(self, resource: KubeResource, name: str, namespace: str | None = None) -> RawObject | None:
        """One object, or None when there is none of that name."""
        ...
