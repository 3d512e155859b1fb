"""The resource types the lab API server serves, with their Kubernetes names and shapes.

One `ResourceType` per kind: its group, version, plural, list kind, whether it lives in a
namespace, and whether it has a `status` subresource. Everything that routes, stores or
describes objects looks its type up here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lab.apiserver.errors import BadRequest, NotFound

READ_VERBS = ("get", "list", "watch")
WRITE_VERBS = ("create", "delete", "deletecollection", "patch", "update")


@dataclass(frozen=True)
class ResourceType:
    """One served kind: where it lives in the API and how it is named."""

    group: str
    """API group; "" for the core group."""
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    has_status: bool
    """Whether the `status` subresource exists (PUT/PATCH .../status)."""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    """Discovery categories ("all": what `kubectl get all` lists)."""
    delete_collection: bool = True
    """Whether DELETE on the collection (deletecollection) is served (not for namespaces)."""

    @property
    def verbs(self) -> list[str]:
        """The verbs discovery lists for this resource."""
        return sorted(v for v in (*READ_VERBS, *WRITE_VERBS) if self.delete_collection or v != "deletecollection")

    @property
    def api_version(self) -> str:
        """The `apiVersion` field of objects of this type, e.g. "apps/v1" or "v1"."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        """The kind of a list of these objects, e.g. "PodList"."""
        return f"{self.kind}List"

    @property
    def qualified_plural(self) -> str:
        """The name used in error messages: "pods", "deployments.apps"."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


NODES = ResourceType("", "v1", "Node", "nodes", "node", namespaced=False, has_status=True, short_names=("no",))
NAMESPACES = ResourceType(
    "",
    "v1",
    "Namespace",
    "namespaces",
    "namespace",
    namespaced=False,
    has_status=True,
    short_names=("ns",),
    delete_collection=False,
)
PODS = ResourceType("", "v1", "Pod", "pods", "pod", namespaced=True, has_status=True, short_names=("po",), categories=("all",))
SERVICES = ResourceType(
    "", "v1", "Service", "services", "service", namespaced=True, has_status=True, short_names=("svc",), categories=("all",)
)
ENDPOINT_SLICES = ResourceType(
    "discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", namespaced=True, has_status=False
)
DEPLOYMENTS = ResourceType(
    "apps",
    "v1",
    "Deployment",
    "deployments",
    "deployment",
    namespaced=True,
    has_status=True,
    short_names=("deploy",),
    categories=("all",),
)
STATEFUL_SETS = ResourceType(
    "apps",
    "v1",
    "StatefulSet",
    "statefulsets",
    "statefulset",
    namespaced=True,
    has_status=True,
    short_names=("sts",),
    categories=("all",),
)
REPLICA_SETS = ResourceType(
    "apps",
    "v1",
    "ReplicaSet",
    "replicasets",
    "replicaset",
    namespaced=True,
    has_status=True,
    short_names=("rs",),
    categories=("all",),
)
DAEMON_SETS = ResourceType(
    "apps",
    "v1",
    "DaemonSet",
    "daemonsets",
    "daemonset",
    namespaced=True,
    has_status=True,
    short_names=("ds",),
    categories=("all",),
)
NETWORK_POLICIES = ResourceType(
    "networking.k8s.io",
    "v1",
    "NetworkPolicy",
    "networkpolicies",
    "networkpolicy",
    namespaced=True,
    has_status=False,
    short_names=("netpol",),
)
CONFIG_MAPS = ResourceType(
    "", "v1", "ConfigMap", "configmaps", "configmap", namespaced=True, has_status=False, short_names=("cm",)
)
"""kube-system/coredns: the cluster DNS's Corefile, as kubeadm writes it."""

SERVICE_CIDRS = ResourceType(
    "networking.k8s.io", "v1", "ServiceCIDR", "servicecidrs", "servicecidr", namespaced=False, has_status=True
)
"""What kube-proxy 1.36 lists and watches to drop traffic to unallocated ClusterIPs."""
EVENTS = ResourceType("events.k8s.io", "v1", "Event", "events", "event", namespaced=True, has_status=False, short_names=("ev",))
"""Events as kube-proxy and the controllers post them (accepted and stored)."""

RESOURCE_TYPES: tuple[ResourceType, ...] = (
    NODES,
    NAMESPACES,
    PODS,
    SERVICES,
    ENDPOINT_SLICES,
    DEPLOYMENTS,
    STATEFUL_SETS,
    REPLICA_SETS,
    DAEMON_SETS,
    NETWORK_POLICIES,
    CONFIG_MAPS,
    SERVICE_CIDRS,
    EVENTS,
)

_BY_PATH: dict[tuple[str, str, str], ResourceType] = {(r.group, r.version, r.plural): r for r in RESOURCE_TYPES}
_BY_NAME: dict[str, ResourceType] = {}
for _r in RESOURCE_TYPES:
    for _key in (_r.plural, _r.kind, _r.singular, *_r.short_names):
        _BY_NAME[_key] = _r


def groups() -> dict[str, list[str]]:
    """API groups (core as "") and their versions, in serving order."""
    served: dict[str, list[str]] = {}
    for resource in RESOURCE_TYPES:
        versions = served.setdefault(resource.group, [])
        if resource.version not in versions:
            versions.append(resource.version)
    return served


def resource_at(group: str, version: str, plural: str) -> ResourceType:
    """The type served at /api(s)/<group>/<version>/<plural>; NotFound if none is."""
    found = _BY_PATH.get((group, version, plural))
    if found is None:
        raise NotFound("the server could not find the requested resource", details={})
    return found


def resolve(resource: ResourceType | str) -> ResourceType:
    """A type from a `ResourceType`, a plural ("pods"), a kind ("Pod"), a singular or a short name."""
    if isinstance(resource, ResourceType):
        return resource
    found = _BY_NAME.get(resource)
    if found is None:
        raise NotFound(f'the server does not serve resource "{resource}"; served: ' + ", ".join(r.plural for r in RESOURCE_TYPES))
    return found


def resource_of(obj: Mapping[str, Any]) -> ResourceType:
    """The type of an object from its apiVersion and kind; BadRequest if they are missing or unknown."""
    api_version = obj.get("apiVersion")
    kind = obj.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        raise BadRequest("object has no apiVersion or kind; set both, e.g. apiVersion: v1, kind: Pod")
    for resource in RESOURCE_TYPES:
        if resource.kind == kind and resource.api_version == api_version:
            return resource
    raise BadRequest(f"no kind {kind!r} is served in apiVersion {api_version!r}")
