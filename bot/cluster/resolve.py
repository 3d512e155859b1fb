"""From a parsed `Question` to the cluster objects the diagnosis needs (`Resolved`).

Names are looked up the way an on-call engineer means them:

- Namespace: the reference's own (``shop/api``, ``api in shop``), else the one said for both names
  (``-n shop``); a name with neither is looked for in the other name's namespace, then in the
  channel's default, then across every namespace the asker may see. A name found in one namespace
  only wins; a name found in several is `AMBIGUOUS_NAME`, with each candidate as a `Ref` that asks
  for it precisely.
- A bare name as source is a pod, else a Deployment/StatefulSet/DaemonSet (its pods), else a Service
  (its pods); as target it is a Service (what clients connect to), else a pod, else a workload.
- IPs are the pod with that podIP, the Service with that clusterIP, external IP or load balancer IP
  (the latter two with that way in), or the node with that InternalIP (with a port some Service has as
  NodePort: that NodePort on that node); else, outside the cluster's pod, service and node ranges
  (`bot.cluster.entries`), an address outside the cluster: a client as source, an external target.
- DNS names outside the cluster are external targets; ``example.com`` (the NAME.NAMESPACE form) is
  one only when the cluster has no namespace ``com``. An ExternalName service is an external target
  with its CNAME; a headless service's endpoints are its pods.
- A bare name that is no pod, workload or service but a node is that node (``node-1 → api``).
- A way in (``nodeport 30080 on node-2``, ``svc web's load balancer``) is checked against the Service
  (it has that NodePort, external IP or load balancer address) and becomes `Resolved.entry`.
- The port is matched against the target (Service port by number or name, else container port).

Not found raises `ResolutionError` (SOURCE_NOT_FOUND / TARGET_NOT_FOUND) with near names; a
namespace outside `allowed_namespaces` raises `NamespaceNotAllowed`.

This module is longer than the project's ~600 lines: the lookup rules for sources, targets, IPs, nodes,
ways in and ports share one `_ClusterView` cache and one set of error messages, and read best as one
piece; what needs no cluster reads (which Service owns a NodePort or an address, the cluster's
ranges) is in `bot.cluster.entries`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from bot.cluster.entries import (
    EntryInfo,
    address_owner,
    entry_address,
    in_pod_ranges,
    in_service_range,
    missing_entry,
    node_port_owners,
    outside_cluster,
    parse_address,
)
from bot.cluster.errors import NamespaceNotAllowed, ResolutionError
from bot.cluster.models import (
    EndpointInfo,
    NodeInfo,
    PodInfo,
    RawObject,
    ServiceInfo,
    ServicePortInfo,
    controller_of,
    endpoints_of_slice,
    name_of,
    namespace_of,
    node_info,
    pod_info,
    service_info,
)
from bot.cluster.resources import (
    DAEMON_SETS,
    DEPLOYMENTS,
    ENDPOINT_SLICES,
    NAMESPACES,
    NETWORK_POLICIES,
    NODES,
    PODS,
    REPLICA_SETS,
    SERVICES,
    STATEFUL_SETS,
    KubeResource,
    ObjectReader,
)
from bot.cluster.suggest import NamedObject, describe, did_you_mean, suggest
from bot.parse.models import EntryKind, Protocol, Question, Ref, RefKind
from bot.verdicts import VerdictCode

TargetKind = Literal["service", "pod", "node", "ip", "external"]
SourceKind = Literal["pod", "node", "external"]
Role = Literal["source", "target"]

SAMPLE_ALL_UP_TO = 6
"""A source workload with at most this many pods is checked from all of them; above, one per node."""

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
WORKLOAD_RESOURCES = (DEPLOYMENTS, STATEFUL_SETS, DAEMON_SETS)

_RESOURCES_FOR: dict[RefKind, tuple[KubeResource, ...]] = {
    RefKind.POD: (PODS,),
    RefKind.SERVICE: (SERVICES,),
    RefKind.DEPLOYMENT: (DEPLOYMENTS,),
    RefKind.STATEFULSET: (STATEFUL_SETS,),
    RefKind.DAEMONSET: (DAEMON_SETS,),
    RefKind.WORKLOAD: (PODS, DEPLOYMENTS, STATEFUL_SETS, DAEMON_SETS, SERVICES),
}

_WORDS_FOR: dict[RefKind, str] = {
    RefKind.POD: "pod",
    RefKind.SERVICE: "service",
    RefKind.DEPLOYMENT: "deployment",
    RefKind.STATEFULSET: "statefulset",
    RefKind.DAEMONSET: "daemonset",
    RefKind.WORKLOAD: "pod, workload or service",
}

# Which kinds a bare name prefers, per role: the first tier with a match in a namespace wins.
_TIERS: dict[Role, tuple[tuple[str, ...], ...]] = {
    "source": (("Pod",), ("Deployment", "StatefulSet", "DaemonSet"), ("Service",)),
    "target": (("Service",), ("Pod",), ("Deployment", "StatefulSet", "DaemonSet")),
}


@dataclass(frozen=True)
class TargetPort:
    """The port the question is about, resolved against the target.

    `service_port` is the Service port clients connect to (None when the target is not a Service);
    `target_port` is where traffic lands on the pods (a number, or a container port name to be
    resolved per pod), or the port on an IP/node/external target; `name` the port's name.
    """

    service_port: int | None
    target_port: int | str | None
    protocol: Protocol
    name: str | None


@dataclass(frozen=True)
class Resolved:
    """Everything the playbook needs to know about the two ends of the question, read once from the API."""

    question: Question
    source: str
    """The source as resolved, written back for people: ``deploy/frontend in shop``."""
    source_pods: tuple[PodInfo, ...]
    """The pods to check from: all of them up to 6, else a sample with at least one per node."""
    source_total: int
    """How many pods the source has in all (0 for a node source)."""
    target: str
    """The target as resolved: ``svc/api in shop``, ``10.0.0.5 (outside the cluster)``."""
    target_kind: TargetKind
    target_service: ServiceInfo | None
    target_pods: tuple[PodInfo, ...]
    """The Service's backing pods (selected, whether ready or not), the target pod, or a workload's pods."""
    endpoints: tuple[EndpointInfo, ...]
    """The Service's EndpointSlice addresses (empty for other targets)."""
    port: TargetPort
    nodes: Mapping[str, NodeInfo] = field(hash=False)
    """Every node of the cluster by name."""
    policy_objects: tuple[RawObject, ...] = field(hash=False)
    """Namespaces, pods and NetworkPolicies as API dicts, for `bot.policy.cluster_from_objects`."""
    notes: tuple[str, ...]
    """Choices the resolver made that a person should know about (one line each)."""
    source_node: NodeInfo | None = None
    """The node, when the source is a node (then `source_pods` is empty)."""
    target_node: NodeInfo | None = None
    """The node, when the target is a node."""
    target_address: str | None = None
    """What the source connects to: the clusterIP, the pod IP, the node IP, the external IP or DNS name
    (None for a headless Service or a workload with several pods)."""
    source_kind: SourceKind = "pod"
    """"pod" (`source_pods`), "node" (`source_node`) or "external" (a client outside the cluster:
    ``outside``, ``the internet``, or an address outside the cluster's ranges, `source_address`)."""
    source_address: str | None = None
    """The address a client outside the cluster was given as (``203.0.113.7 → …``), else None."""
    entry: EntryInfo | None = None
    """The way in from outside the question is about (a NodePort, an external IP, a load balancer)."""
    external_name: str | None = None
    """The DNS name outside the cluster the source resolves: the target's own, or an ExternalName's CNAME."""


# ------------------------------------------------------------------------------ reading


@dataclass(frozen=True)
class _Candidate:
    kind: str
    namespace: str
    name: str
    obj: RawObject = field(hash=False, compare=False)

    def display(self) -> str:
        return describe(self.kind, self.namespace, self.name)


class _ClusterView:
    """One resolution's reads: every list is fetched at most once, narrower scopes reuse wider ones."""

    def __init__(self, client: ObjectReader, allowed: frozenset[str] | None) -> None:
        self.client = client
        self.allowed = allowed
        self._lists: dict[tuple[str, str | None], list[RawObject]] = {}
        self._pods: dict[str | None, list[PodInfo]] = {}

    def objects(self, resource: KubeResource, namespace: str | None) -> list[RawObject]:
        if not resource.namespaced:
            namespace = None
        key = (resource.plural, namespace)
        cached = self._lists.get(key)
        if cached is not None:
            return cached
        wide = self._lists.get((resource.plural, None))
        if wide is not None:
            cached = [obj for obj in wide if namespace_of(obj) == namespace]
        else:
            cached = self.client.list_objects(resource, namespace)
        self._lists[key] = cached
        return cached

    def visible(self, namespace: str) -> bool:
        return self.allowed is None or namespace in self.allowed

    def pod_infos(self, namespace: str | None) -> list[PodInfo]:
        cached = self._pods.get(namespace)
        if cached is not None:
            return cached
        raw = self.objects(PODS, namespace)
        owners: dict[tuple[str, str], tuple[str, str]] = {}
        if any((controller_of(p) or ("", ""))[0] == "ReplicaSet" for p in raw):
            for rs in self.objects(REPLICA_SETS, namespace):
                owner = controller_of(rs)
                if owner is not None:
                    owners[(namespace_of(rs), name_of(rs))] = owner
        cached = [pod_info(p, owners) for p in raw]
        self._pods[namespace] = cached
        return cached

    def pod(self, namespace: str, name: str) -> PodInfo:
        for pod in self.pod_infos(namespace):
            if pod.name == name:
                return pod
        raise KeyError(f"{namespace}/{name}")

    def nodes(self) -> dict[str, NodeInfo]:
        return {info.name: info for info in (node_info(obj) for obj in self.objects(NODES, None))}

    def services(self, namespace: str | None) -> list[ServiceInfo]:
        return [service_info(obj) for obj in self.objects(SERVICES, namespace)]


# ------------------------------------------------------------------------------ the entry point


def resolve(
    client: ObjectReader,
    question: Question,
    *,
    default_namespace: str | None,
    allowed_namespaces: frozenset[str] | None,
) -> Resolved:
    """Resolve both ends and the port of `question` through `client`.

    `default_namespace`: the channel's (or CLI's) namespace for names that do not say theirs; None
    searches every namespace. `allowed_namespaces`: when given, any object outside them raises
    `NamespaceNotAllowed`. Raises `ResolutionError` for names that match nothing or several things,
    `ClusterUnavailable` when the API cannot be asked.
    """
    view = _ClusterView(client, allowed_namespaces)
    notes: list[str] = []
    nodes = view.nodes()
    question, source = _one_of(
        question, "source", lambda asked, said: _resolve_source(view, asked, default_namespace, nodes, said), notes
    )
    question, target = _one_of(
        question, "target", lambda asked, said: _resolve_target(view, asked, default_namespace, nodes, said), notes
    )
    port = _resolve_port(question, target, notes)
    entry = _entry(target, port)
    if entry is not None and target.service is not None:
        target = dataclasses.replace(target, text=_entry_text(entry, target.service))
    namespaces = [ns for ns in (source.namespace, target.namespace) if ns]
    return Resolved(
        question=question,
        source=source.text,
        source_pods=sample_pods(source.pods),
        source_total=len(source.pods),
        target=target.text,
        target_kind=target.kind,
        target_service=target.service,
        target_pods=tuple(target.pods),
        endpoints=target.endpoints,
        port=port,
        nodes=nodes,
        policy_objects=_policy_objects(view, namespaces),
        notes=tuple(notes),
        source_node=source.node,
        target_node=target.node,
        target_address=target.address,
        source_kind=source.origin,
        source_address=source.address,
        entry=entry,
        external_name=target.external_name,
    )


_EndResolver = Callable[[Question, list[str]], "_End"]


def _one_of(question: Question, role: Role, resolve_end: _EndResolver, notes: list[str]) -> tuple[Question, _End]:
    """Resolve one end; when the parser left several bare words on that side (``frontend can't talk to
    redis, big replies hang``), the one word that names something in the cluster is the end.

    A word names something when it resolves, or matches several objects (its own ambiguity is then
    the answer). None does: the error of the word nearest the connective, with its suggestions.
    Several do: an ambiguous-name error offering each. The question returned names the word kept,
    and lists the others among its skipped words.
    """
    alternatives = question.source_alternatives if role == "source" else question.target_alternatives
    primary = question.source if role == "source" else question.target
    if not alternatives:
        return question, resolve_end(question, notes)
    named: list[_Named] = []
    first_error: ResolutionError | NamespaceNotAllowed | None = None
    for ref in (primary, *alternatives):
        asked = dataclasses.replace(question, source_alternatives=(), target_alternatives=())
        asked = dataclasses.replace(asked, source=ref) if role == "source" else dataclasses.replace(asked, target=ref)
        said: list[str] = []
        try:
            named.append((ref, asked, resolve_end(asked, said), said))
        except ResolutionError as error:
            if error.code is VerdictCode.AMBIGUOUS_NAME:
                named.append((ref, asked, error, said))
            elif first_error is None:
                first_error = error
        except NamespaceNotAllowed as error:
            if first_error is None:
                first_error = error
    if not named:
        assert first_error is not None
        raise first_error
    naming = {n[0].name for n in named}
    if len(named) > 1:
        on_node = _pods_on_node(named, role)
        if on_node is None:
            raise _which_word(named, role)
        named = [on_node]
    ref, asked, end, said = named[0]
    if isinstance(end, ResolutionError):
        raise end
    skipped = tuple(r.name for r in (primary, *alternatives) if r is not ref)
    notes.extend(said)
    nothing = [name for name in skipped if name not in naming]
    if nothing:
        notes.append(f"read {ref.name} as the {role}: {', '.join(nothing)} name{'s' if len(nothing) == 1 else ''} nothing here")
    return question.settled(role, ref, skipped), end


_Named = tuple[Ref, Question, "_End | ResolutionError", list[str]]


def _pods_on_node(named: Sequence[_Named], role: Role) -> _Named | None:
    """``frontend on node-3 can't reach api``: a workload and a node named side by side as the source
    are the workload's pods on that node. None when the words are not one node and one set of pods."""
    if role != "source" or len(named) != 2:
        return None
    nodes = [n for n in named if isinstance(n[2], _End) and n[2].origin == "node"]
    pods = [n for n in named if isinstance(n[2], _End) and n[2].origin == "pod" and n[2].pods]
    if len(nodes) != 1 or len(pods) != 1:
        return None
    node_end, (ref, asked, end, said) = nodes[0][2], pods[0]
    assert isinstance(node_end, _End) and node_end.node is not None and isinstance(end, _End)
    node = node_end.node.name
    there = tuple(p for p in end.pods if p.node == node)
    if not there:
        elsewhere = ", ".join(sorted({p.node for p in end.pods if p.node})) or "no node"
        raise ResolutionError(
            f"{end.text} has no pods on {node} (its pods are on {elsewhere})",
            code=VerdictCode.SOURCE_NOT_FOUND,
            hint=f"ask from one of its nodes, or without '{node}': kubectl get pods -o wide | grep {ref.name}",
        )
    said = [*said, f"read as the pods of {end.text} on {node}"]
    return ref, asked, dataclasses.replace(end, pods=there, text=f"{end.text} on {node}"), said


def _which_word(named: Sequence[_Named], role: Role) -> ResolutionError:
    labels: list[str] = []
    refs: list[Ref] = []
    for ref, _asked, end, _said in named:
        if isinstance(end, ResolutionError):
            labels.extend(end.candidates)
            refs.extend(end.candidate_refs)
        elif end.origin == "node" or end.kind == "node":
            labels.append(end.text)
            refs.append(Ref(RefKind.NODE, end.node.name if end.node is not None else ref.name))
        else:
            labels.append(end.text)
            refs.append(
                dataclasses.replace(ref, kind=RefKind.SERVICE if end.service is not None else ref.kind, namespace=end.namespace)
            )
    words = " and ".join(f"'{ref.name}'" for ref, *_ in named)
    return ResolutionError(
        f"{words} each name something in the cluster: which is the {role}?",
        code=VerdictCode.AMBIGUOUS_NAME,
        candidates=tuple(labels),
        candidate_refs=tuple(refs),
        role=role,
        hint="write it with its kind (svc/NAME, deploy/NAME, node/NAME) and the other words are skipped",
    )


def sample_pods(pods: Sequence[PodInfo], limit: int = SAMPLE_ALL_UP_TO) -> tuple[PodInfo, ...]:
    """All pods when there are at most `limit`, else one per node (pods without a node count as one node).

    On each node the pod most able to send is chosen: running and ready, then running, then by name.
    """
    ordered = sorted(pods, key=lambda p: (p.node or "", not (p.running and p.ready), not p.running, p.name))
    if len(ordered) <= limit:
        return tuple(sorted(ordered, key=lambda p: (p.namespace, p.name)))
    chosen: dict[str | None, PodInfo] = {}
    for pod in ordered:
        chosen.setdefault(pod.node, pod)
    return tuple(sorted(chosen.values(), key=lambda p: (p.node or "", p.name)))


# ------------------------------------------------------------------------------ one end


@dataclass(frozen=True)
class _End:
    text: str
    namespace: str | None
    pods: tuple[PodInfo, ...] = ()
    node: NodeInfo | None = None
    kind: TargetKind = "pod"
    service: ServiceInfo | None = None
    endpoints: tuple[EndpointInfo, ...] = ()
    address: str | None = None
    origin: SourceKind = "pod"
    entry: EntryKind | None = None
    """The way in asked about; its port and address are settled with the port (`_entry`)."""
    entry_nodes: tuple[str, ...] = ()
    entry_address: str | None = None
    port_hint: ServicePortInfo | None = None
    """The service port the question picked without saying it (the one owning the NodePort asked about)."""
    external_name: str | None = None


def _code(role: Role) -> VerdictCode:
    return VerdictCode.SOURCE_NOT_FOUND if role == "source" else VerdictCode.TARGET_NOT_FOUND


def _resolve_source(
    view: _ClusterView, question: Question, default_namespace: str | None, nodes: Mapping[str, NodeInfo], notes: list[str]
) -> _End:
    ref = question.source
    if ref.kind is RefKind.OUTSIDE:
        return _End(text="outside the cluster", namespace=None, origin="external")
    if ref.kind is RefKind.NODE:
        return _End(text=f"node/{ref.name}", namespace=None, node=_node(ref, nodes, "source"), origin="node")
    if ref.kind is RefKind.IP:
        return _source_by_ip(view, ref, nodes)
    if ref.kind is RefKind.NAMESPACE:
        return _namespace_source(view, ref.name, notes)
    if ref.kind is RefKind.DNS:
        raise ResolutionError(
            f"{ref.name} is a name outside the cluster, so it cannot be where traffic starts",
            code=VerdictCode.SOURCE_NOT_FOUND,
            hint="name a pod, workload or node as the source: frontend -> api.stripe.com:443",
        )
    try:
        found = _find(view, ref, question, default_namespace, "source", notes)
    except ResolutionError as error:
        node = _node_named(ref, question, nodes, error)
        return _End(text=f"node/{node.name}", namespace=None, node=node, origin="node")
    if found.kind == "Pod":
        pods: tuple[PodInfo, ...] = (view.pod(found.namespace, found.name),)
    elif found.kind == "Service":
        service = service_info(found.obj)
        pods = _service_pods(view, service, _endpoints(view, service))
        notes.append(f"{found.display()} is a service; checking from the pods it selects")
    else:
        pods = _workload_pods(view, found.kind, found.namespace, found.name)
        if not pods:
            notes.append(f"{found.display()} has no pods, so there is nothing to send from")
    return _End(text=found.display(), namespace=found.namespace, pods=pods)


def _namespace_source(view: _ClusterView, namespace: str, notes: list[str]) -> _End:
    """``pods in shop``: the namespace's own pods (not host-network ones, which send as their node),
    sampled one per node like a workload's."""
    _check_visible(view, namespace, f"ns/{namespace}")
    if all(name_of(obj) != namespace for obj in view.objects(NAMESPACES, None)):
        raise ResolutionError(
            f"no namespace is named {namespace!r}",
            code=VerdictCode.SOURCE_NOT_FOUND,
            hint="list them with: kubectl get namespaces",
        )
    pods = tuple(p for p in view.pod_infos(namespace) if not p.host_network)
    if not pods:
        notes.append(f"namespace {namespace} has no pods, so there is nothing to send from")
    elif len(pods) > SAMPLE_ALL_UP_TO:
        notes.append(f"asking from one pod per node of the {len(pods)} pods in {namespace}")
    return _End(text=f"pods in {namespace}", namespace=namespace, pods=pods)


def _resolve_target(
    view: _ClusterView, question: Question, default_namespace: str | None, nodes: Mapping[str, NodeInfo], notes: list[str]
) -> _End:
    ref = question.target
    if ref.kind is RefKind.NODE:
        return _node_target(view, question, _node(ref, nodes, "target"), nodes)
    if ref.kind is RefKind.IP:
        return _target_by_ip(view, question, nodes)
    if ref.kind is RefKind.DNS or _outside_shorthand(view, ref):
        name = ref.dns_name or ref.name
        return _End(text=f"{name} (outside the cluster)", namespace=None, kind="external", address=name, external_name=name)
    if ref.kind is RefKind.NODEPORT:
        return _node_port_target(view, question, nodes, notes)
    try:
        found = _find(view, ref, question, default_namespace, "target", notes)
    except ResolutionError as error:
        if ref.entry is None:
            return _node_target(view, question, _node_named(ref, question, nodes, error), nodes)
        if ref.node_port is None or ref.entry_node is not None:
            raise
        # "node-2's nodeport 30080": no service is called node-2, but a node is.
        node = _node_named(dataclasses.replace(ref, kind=RefKind.WORKLOAD), question, nodes, error)
        on_node = Ref(RefKind.NODEPORT, str(ref.node_port), entry=ref.entry, node_port=ref.node_port, entry_node=node.name)
        return _node_port_target(view, dataclasses.replace(question, target=on_node), nodes, notes)
    if found.kind == "Service":
        end = _service_end(view, service_info(found.obj), notes)
        return end if ref.entry is None else _with_entry(end, ref, nodes)
    if ref.entry is not None:  # pragma: no cover - a reference with an entry names a service
        raise ResolutionError(f"{found.display()} is not a service", code=VerdictCode.TARGET_NOT_FOUND)
    if found.kind == "Pod":
        pod = view.pod(found.namespace, found.name)
        return _End(text=found.display(), namespace=found.namespace, pods=(pod,), kind="pod", address=pod.ip)
    pods = _workload_pods(view, found.kind, found.namespace, found.name)
    if not pods:
        raise ResolutionError(
            f"{found.display()} has no pods, so there is nothing to reach",
            code=VerdictCode.TARGET_NOT_FOUND,
            hint=f"check why it has no pods: kubectl -n {found.namespace} describe {found.kind.lower()} {found.name}",
        )
    fronting = [s for s in view.services(found.namespace) if pods and s.selects(pods[0].labels)]
    if fronting:
        names = " or ".join(f"svc/{s.name}" for s in fronting)
        notes.append(f"checking the pods of {found.display()} directly; clients usually connect through {names}")
    address = pods[0].ip if len(pods) == 1 else None
    return _End(text=found.display(), namespace=found.namespace, pods=pods, kind="pod", address=address)


def _service_end(view: _ClusterView, service: ServiceInfo, notes: list[str]) -> _End:
    endpoints = _endpoints(view, service)
    pods = _service_pods(view, service, endpoints)
    text = describe("Service", service.namespace, service.name)
    if service.type == "ExternalName":
        notes.append(
            f"svc/{service.name} in {service.namespace} is an ExternalName service: an alias (CNAME) for "
            f"{service.external_name}, a name outside the cluster"
        )
        return _End(
            text=text,
            namespace=service.namespace,
            kind="external",
            service=service,
            address=service.external_name,
            external_name=service.external_name,
        )
    if service.headless:
        notes.append(f"svc/{service.name} in {service.namespace} is headless: clients connect to the pod IPs directly")
        address = None
    else:
        address = service.cluster_ip
    return _End(
        text=text,
        namespace=service.namespace,
        pods=pods,
        kind="service",
        service=service,
        endpoints=endpoints,
        address=address,
    )


def _preferred_namespaces(ref: Ref, question: Question, default_namespace: str | None) -> tuple[str, ...]:
    """Where to look first for a name that says no namespace: the other name's, then the default."""
    other = question.target if ref is question.source else question.source
    written = other.name if other.kind is RefKind.NAMESPACE else other.namespace if other.kind is not RefKind.NODE else None
    return tuple(dict.fromkeys(ns for ns in (written, default_namespace) if ns))


def _matches(
    view: _ClusterView, ref: Ref, namespace: str | None, resources: tuple[KubeResource, ...] | None = None
) -> list[_Candidate]:
    found: list[_Candidate] = []
    for resource in resources or _RESOURCES_FOR[ref.kind]:
        for obj in view.objects(resource, namespace):
            name = name_of(obj)
            if name == ref.name or (resource is PODS and ref.service and _pod_hostname_is(obj, ref.name, ref.service)):
                found.append(_Candidate(resource.kind, namespace_of(obj), name, obj))
    return found


def _pod_hostname_is(obj: RawObject, hostname: str, subdomain: str) -> bool:
    spec = obj.get("spec")
    return isinstance(spec, dict) and spec.get("hostname") == hostname and spec.get("subdomain") == subdomain


def _preferred(candidates: list[_Candidate], role: Role) -> tuple[list[_Candidate], list[_Candidate]]:
    """Per namespace, the candidates of the first tier that has any, and those of later tiers (passed over)."""
    chosen: list[_Candidate] = []
    passed: list[_Candidate] = []
    by_namespace: dict[str, list[_Candidate]] = {}
    for candidate in candidates:
        by_namespace.setdefault(candidate.namespace, []).append(candidate)
    for namespace in sorted(by_namespace):
        group = by_namespace[namespace]
        for tier in _TIERS[role]:
            picked = [c for c in group if c.kind in tier]
            if picked:
                chosen.extend(picked)
                passed.extend(c for c in group if c not in picked)
                break
    return chosen, passed


def _find(
    view: _ClusterView, ref: Ref, question: Question, default_namespace: str | None, role: Role, notes: list[str]
) -> _Candidate:
    """The object `ref` names; a pod name no pod has may be the workload whose pods people call by it.

    "pod frontend" is how people name the pods of deploy/frontend (whose pods are frontend-7d9…-x2x):
    when no pod has the name and exactly one Deployment, StatefulSet or DaemonSet does, its pods are
    meant, and a note says so. Otherwise the pod is not found, with suggestions as for any name.
    """
    try:
        return _find_named(view, ref, question, default_namespace, role, notes)
    except ResolutionError as missing:
        if ref.kind is not RefKind.POD or missing.code is VerdictCode.AMBIGUOUS_NAME:
            raise
        owned: list[str] = []
        try:
            owner = _find_named(view, ref, question, default_namespace, role, owned, WORKLOAD_RESOURCES)
        except (ResolutionError, NamespaceNotAllowed):
            raise missing from None
        notes.extend(owned)
        notes.append(f"no pod is named {ref.name}: read as the pods of {owner.display()}")
        return owner


def _find_named(
    view: _ClusterView,
    ref: Ref,
    question: Question,
    default_namespace: str | None,
    role: Role,
    notes: list[str],
    resources: tuple[KubeResource, ...] | None = None,
) -> _Candidate:
    bound = ref.namespace or question.namespace
    if bound:
        if not view.visible(bound):
            assert view.allowed is not None
            raise NamespaceNotAllowed(bound, view.allowed)
        return _pick(view, ref, _matches(view, ref, bound, resources), bound, role, notes)
    preferred = _preferred_namespaces(ref, question, default_namespace)
    for namespace in preferred:
        candidates = _matches(view, ref, namespace, resources) if view.visible(namespace) else []
        if candidates:
            return _pick(view, ref, candidates, namespace, role, notes)
    candidates = _matches(view, ref, None, resources)
    if candidates and preferred:
        places = ", ".join(sorted({c.namespace for c in candidates if view.visible(c.namespace)}))
        if places:
            notes.append(f"{ref.name} is not in {' or '.join(preferred)}; found it in {places}")
    return _pick(view, ref, candidates, None, role, notes)


_REF_KINDS: dict[str, RefKind] = {
    "Pod": RefKind.POD,
    "Service": RefKind.SERVICE,
    "Deployment": RefKind.DEPLOYMENT,
    "StatefulSet": RefKind.STATEFULSET,
    "DaemonSet": RefKind.DAEMONSET,
}


def _ambiguous(ref: Ref, chosen: Sequence[_Candidate], role: Role) -> ResolutionError:
    listed = tuple(c.display() for c in chosen)
    return ResolutionError(
        f"{ref.name!r} matches several objects: {', '.join(listed)}",
        code=VerdictCode.AMBIGUOUS_NAME,
        candidates=listed,
        candidate_refs=tuple(Ref(_REF_KINDS[c.kind], c.name, c.namespace) for c in chosen),
        role=role,
        hint="say which one: add its namespace (shop/api or 'api in shop') or its kind (svc/api, deploy/api)",
    )


def _pick(
    view: _ClusterView, ref: Ref, candidates: list[_Candidate], namespace: str | None, role: Role, notes: list[str]
) -> _Candidate:
    """The one object `ref` names among `candidates` (found in `namespace`, or anywhere when None)."""
    chosen, passed = _preferred(candidates, role)
    if view.allowed is not None:
        visible = [c for c in chosen if view.visible(c.namespace)]
        if not visible and chosen:
            assert view.allowed is not None
            raise NamespaceNotAllowed(chosen[0].namespace, view.allowed, what=chosen[0].display())
        chosen = visible
    if not chosen:
        raise _not_found(view, ref, namespace, role)
    if len(chosen) > 1:
        raise _ambiguous(ref, chosen, role)
    winner = chosen[0]
    # A Service and the workload it fronts sharing a name is the norm; say so only for other overlaps.
    usual = ("Service",) if role == "source" else ("Deployment", "StatefulSet", "DaemonSet")
    also = [c for c in passed if c.namespace == winner.namespace and c.kind not in usual]
    if also:
        others = ", ".join(c.display() for c in also)
        why = "the service is what clients connect to" if role == "target" else "traffic starts in pods"
        notes.append(f"{ref.name} as the {role} is {winner.display()} ({why}); also found {others}")
    return winner


def _not_found(view: _ClusterView, ref: Ref, namespace: str | None, role: Role) -> ResolutionError:
    objects: list[NamedObject] = []
    for pod in view.pod_infos(None):
        if view.visible(pod.namespace):
            objects.append(NamedObject("Pod", pod.namespace, pod.name, pod.workload_kind, pod.workload_name))
    for resource in (*WORKLOAD_RESOURCES, SERVICES):
        for obj in view.objects(resource, None):
            if view.visible(namespace_of(obj)):
                objects.append(NamedObject(resource.kind, namespace_of(obj), name_of(obj)))
    if ref.kind is RefKind.WORKLOAD:
        kinds = ["Service"] if role == "target" else ["Pod", *(r.kind for r in WORKLOAD_RESOURCES)]
        if namespace is None:
            # A bare name may also be a node ("why can't node-1 reach api"): near node names help too.
            objects.extend(NamedObject("Node", "", name) for name in view.nodes())
            kinds.append("Node")
    else:
        kinds = [r.kind for r in _RESOURCES_FOR[ref.kind]]
    suggestions = suggest(ref.name, objects, kinds=kinds)
    if namespace is not None:
        where = f"in namespace {namespace}"
    elif view.allowed is not None:
        where = "in the namespaces this channel may ask about (" + ", ".join(sorted(view.allowed)) + ")"
    else:
        where = "in any namespace"
    message = f"no {_WORDS_FOR[ref.kind]} named {ref.name!r} {where}"
    if suggestions:
        message += f"; {did_you_mean(suggestions)}"
    return ResolutionError(
        message,
        code=_code(role),
        suggestions=suggestions,
        hint="check the name with kubectl get pods,deploy,sts,ds,svc -A" if not suggestions else None,
    )


def _node(ref: Ref, nodes: Mapping[str, NodeInfo], role: Role) -> NodeInfo:
    node = nodes.get(ref.name)
    if node is not None:
        return node
    suggestions = suggest(ref.name, [NamedObject("Node", "", name) for name in nodes])
    message = f"no node named {ref.name!r}" + (f"; {did_you_mean(suggestions)}" if suggestions else "")
    raise ResolutionError(message, code=_code(role), suggestions=suggestions, hint="list them with kubectl get nodes")


def _workload_pods(view: _ClusterView, kind: str, namespace: str, name: str) -> tuple[PodInfo, ...]:
    pods = [p for p in view.pod_infos(namespace) if p.workload_kind == kind and p.workload_name == name]
    return tuple(sorted(pods, key=lambda p: p.name))


def _endpoints(view: _ClusterView, service: ServiceInfo) -> tuple[EndpointInfo, ...]:
    slices = [
        s
        for s in view.objects(ENDPOINT_SLICES, service.namespace)
        if ((s.get("metadata") or {}).get("labels") or {}).get(SERVICE_NAME_LABEL) == service.name
    ]
    out: list[EndpointInfo] = []
    for endpoint_slice in sorted(slices, key=name_of):
        out.extend(endpoints_of_slice(endpoint_slice))
    return tuple(out)


def _service_pods(view: _ClusterView, service: ServiceInfo, endpoints: Iterable[EndpointInfo]) -> tuple[PodInfo, ...]:
    pods = view.pod_infos(service.namespace)
    if service.selector:
        chosen = [p for p in pods if service.selects(p.labels)]
    else:
        named = {e.pod_name for e in endpoints if e.pod_name and e.pod_namespace == service.namespace}
        chosen = [p for p in pods if p.name in named]
    return tuple(sorted(chosen, key=lambda p: p.name))


# ------------------------------------------------------------------------------ addresses


def _same_ip(text: str | None, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if not text:
        return False
    try:
        return ipaddress.ip_address(text) == address
    except ValueError:
        return False


def _address_of(ref: Ref) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if ref.address is not None:
        return ref.address
    return ipaddress.ip_address(ref.name)


def _pods_with_ip(view: _ClusterView, ref: Ref) -> list[PodInfo]:
    address = _address_of(ref)
    scope = ref.namespace if ref.namespace else None
    pods = [p for p in view.pod_infos(scope) if not p.host_network and _same_ip(p.ip, address)]
    live = [p for p in pods if p.phase not in ("Succeeded", "Failed")]
    return live or pods


def _check_visible(view: _ClusterView, namespace: str, what: str) -> None:
    if not view.visible(namespace):
        assert view.allowed is not None
        raise NamespaceNotAllowed(namespace, view.allowed, what=what)


def _one_pod_by_ip(view: _ClusterView, ref: Ref, role: Role) -> PodInfo | None:
    pods = _pods_with_ip(view, ref)
    if not pods:
        return None
    if len(pods) > 1:
        listed = tuple(describe("Pod", p.namespace, p.name) for p in pods)
        raise ResolutionError(
            f"{ref.name} is the IP of several pods: {', '.join(listed)}",
            code=VerdictCode.AMBIGUOUS_NAME,
            candidates=listed,
            candidate_refs=tuple(Ref(RefKind.POD, p.name, p.namespace) for p in pods),
            role=role,
            hint="name the pod instead of its IP",
        )
    pod = pods[0]
    _check_visible(view, pod.namespace, describe("Pod", pod.namespace, pod.name))
    return pod


def _source_by_ip(view: _ClusterView, ref: Ref, nodes: Mapping[str, NodeInfo]) -> _End:
    pod = _one_pod_by_ip(view, ref, "source")
    if pod is not None:
        return _End(text=f"{ref.name} ({describe('Pod', pod.namespace, pod.name)})", namespace=pod.namespace, pods=(pod,))
    address = _address_of(ref)
    for node in nodes.values():
        if _same_ip(node.internal_ip, address):
            return _End(text=f"{ref.name} (node/{node.name})", namespace=None, node=node, origin="node")
    if not ref.namespace and outside_cluster(address, nodes.values(), view.services(None)):
        return _End(text=f"{ref.name} (outside the cluster)", namespace=None, origin="external", address=ref.name)
    raise ResolutionError(
        f"no pod or node has the IP {ref.name}, so it cannot be checked as a source",
        code=VerdictCode.SOURCE_NOT_FOUND,
        hint="the source must be inside the cluster: name a pod, workload or node, or use a current pod IP",
    )


def _target_by_ip(view: _ClusterView, question: Question, nodes: Mapping[str, NodeInfo]) -> _End:
    ref = question.target
    pod = _one_pod_by_ip(view, ref, "target")
    if pod is not None:
        return _End(
            text=f"{ref.name} ({describe('Pod', pod.namespace, pod.name)})",
            namespace=pod.namespace,
            pods=(pod,),
            kind="pod",
            address=pod.ip,
        )
    if ref.namespace:
        raise ResolutionError(
            f"no pod in namespace {ref.namespace} has the IP {ref.name}",
            code=VerdictCode.TARGET_NOT_FOUND,
            hint="the pod may have been replaced; ask about its workload or service instead",
        )
    address = _address_of(ref)
    services = view.services(None)
    for service in services:
        if _same_ip(service.cluster_ip, address):
            _check_visible(view, service.namespace, describe("Service", service.namespace, service.name))
            end = _service_end(view, service, [])
            return dataclasses.replace(end, text=f"{ref.name} ({end.text})")
    owner = address_owner(services, address)
    if owner is not None:
        service, kind, written = owner
        _check_visible(view, service.namespace, describe("Service", service.namespace, service.name))
        end = _service_end(view, service, [])
        return dataclasses.replace(end, entry=kind, entry_address=written, entry_nodes=_entry_nodes(ref, nodes))
    for node in nodes.values():
        if _same_ip(node.internal_ip, address):
            return _node_target(view, question, node, nodes, written=ref.name)
    if in_pod_ranges(address, nodes.values()) or in_service_range(address, services):
        return _End(text=f"{ref.name} (not a pod, service or node IP)", namespace=None, kind="ip", address=ref.name)
    return _End(text=f"{ref.name} (outside the cluster)", namespace=None, kind="external", address=ref.name)


# ------------------------------------------------------------------------------ nodes and ways in


def _node_named(ref: Ref, question: Question, nodes: Mapping[str, NodeInfo], error: ResolutionError) -> NodeInfo:
    """The node a bare name that matched no pod, workload or service names (``node-1 → api``); else `error`."""
    node = nodes.get(ref.name)
    bare = ref.kind is RefKind.WORKLOAD and not ref.namespace and ref.dns_name is None  # nodes have no namespace
    if node is None or not bare or error.code is VerdictCode.AMBIGUOUS_NAME:
        raise error
    return node


def _node_target(
    view: _ClusterView, question: Question, node: NodeInfo, nodes: Mapping[str, NodeInfo], *, written: str | None = None
) -> _End:
    """A node as the target; a port on it that is a service's NodePort makes it that NodePort on that node."""
    text = f"{written} (node/{node.name})" if written else f"node/{node.name}"
    plain = _End(text=text, namespace=None, kind="node", node=node, address=node.internal_ip)
    if question.port is None:
        return plain
    owners = node_port_owners(view.services(None), question.port, question.protocol)
    if len(owners) != 1:
        return plain
    service, port = owners[0]
    _check_visible(view, service.namespace, f"NodePort {question.port} ({describe('Service', service.namespace, service.name)})")
    end = _service_end(view, service, [])
    return dataclasses.replace(
        end,
        entry=EntryKind.NODEPORT,
        entry_nodes=(node.name,),
        port_hint=port,
    )


def _entry_nodes(ref: Ref, nodes: Mapping[str, NodeInfo]) -> tuple[str, ...]:
    """The receiving node the question named with its way in (by name or IP), as a 1-tuple; () for all."""
    if ref.entry_node is None:
        return ()
    node = nodes.get(ref.entry_node)
    if node is None:
        address = parse_address(ref.entry_node)
        node = next((n for n in nodes.values() if address is not None and _same_ip(n.internal_ip, address)), None)
    if node is None:
        node = _node(Ref(RefKind.NODE, ref.entry_node), nodes, "target")
    return (node.name,)


def _node_port_target(view: _ClusterView, question: Question, nodes: Mapping[str, NodeInfo], notes: list[str]) -> _End:
    """``nodeport 30080 [on node-2]``: the service that owns the NodePort, and its port."""
    ref = question.target
    number = ref.node_port
    assert number is not None  # the grammar writes a NodePort reference with its number
    scope = ref.namespace or question.namespace
    if scope and not view.visible(scope):
        assert view.allowed is not None
        raise NamespaceNotAllowed(scope, view.allowed)
    services = view.services(scope)
    owners = node_port_owners(services, number, question.protocol)
    if not owners:
        raise _no_node_port_owner(view, services, number, scope)
    for service, _ in owners:
        _check_visible(view, service.namespace, f"NodePort {number} ({describe('Service', service.namespace, service.name)})")
    if len(owners) > 1:
        listed = tuple(f"{describe('Service', s.namespace, s.name)} ({p.port}/{p.protocol})" for s, p in owners)
        raise ResolutionError(
            f"NodePort {number} belongs to several services: {', '.join(listed)}",
            code=VerdictCode.AMBIGUOUS_NAME,
            candidates=listed,
            hint=f"say the protocol: nodeport {number} over udp, or name the service: svc/NAME's nodeport",
        )
    service, port = owners[0]
    _check_visible(view, service.namespace, describe("Service", service.namespace, service.name))
    end = _service_end(view, service, notes)
    return dataclasses.replace(
        end,
        entry=EntryKind.NODEPORT,
        entry_nodes=_entry_nodes(ref, nodes),
        port_hint=port,
    )


def _no_node_port_owner(view: _ClusterView, services: Sequence[ServiceInfo], number: int, scope: str | None) -> ResolutionError:
    known = sorted(
        (p.node_port, s.namespace, s.name)
        for s in services
        if view.visible(s.namespace)
        for p in s.ports
        if p.node_port is not None
    )
    suggestions = tuple(f"nodeport {np} (svc/{name} in {ns})" for np, ns, name in known[:5])
    where = f" in namespace {scope}" if scope else ""
    message = f"no service{where} has NodePort {number}"
    if suggestions:
        message += "; the NodePorts are: " + ", ".join(suggestions)
    return ResolutionError(
        message,
        code=VerdictCode.TARGET_NOT_FOUND,
        suggestions=suggestions,
        hint="list them with kubectl get svc -A | grep NodePort" if not suggestions else "ask about one of those",
    )


def _with_entry(end: _End, ref: Ref, nodes: Mapping[str, NodeInfo]) -> _End:
    """A service target asked about through a way in (``svc web's load balancer``): check it has one."""
    service = end.service
    assert service is not None and ref.entry is not None
    why = missing_entry(service, ref.entry)
    if why is not None:
        raise ResolutionError(
            why,
            code=VerdictCode.TARGET_NOT_FOUND,
            hint=f"ask about svc/{service.name} from a pod, or check it: kubectl -n {service.namespace} get svc {service.name}",
        )
    hint: ServicePortInfo | None = None
    if ref.node_port is not None:
        hint = service.port_with_node_port(ref.node_port)
        if hint is None:
            listed = ", ".join(f"{p.node_port} (port {p.port}/{p.protocol})" for p in service.ports if p.node_port)
            raise ResolutionError(
                f"svc/{service.name} in {service.namespace} has no NodePort {ref.node_port}; its NodePorts: {listed}",
                code=VerdictCode.TARGET_NOT_FOUND,
                suggestions=tuple(f"svc/{service.name}'s nodeport {p.node_port}" for p in service.ports if p.node_port),
                hint="ask with one of those NodePorts",
            )
    return dataclasses.replace(
        end,
        entry=ref.entry,
        entry_nodes=_entry_nodes(ref, nodes),
        entry_address=entry_address(service, ref.entry),
        port_hint=hint,
    )


_ENTRY_WORDS: dict[EntryKind, str] = {
    EntryKind.NODEPORT: "NodePort",
    EntryKind.EXTERNAL_IP: "external IP",
    EntryKind.LOAD_BALANCER: "load balancer",
}


def _entry_text(entry: EntryInfo, service: ServiceInfo) -> str:
    """The target as people read it: ``NodePort 30080 of svc/web in shop on node/node-2``,
    ``load balancer 198.51.100.10:80 of svc/web in shop``."""
    owner = describe("Service", service.namespace, service.name)
    if entry.kind is EntryKind.NODEPORT:
        where = f" on node/{entry.nodes[0]}" if len(entry.nodes) == 1 else ""
        return f"NodePort {entry.port} of {owner}{where}"
    return f"{_ENTRY_WORDS[entry.kind]} {entry.address}:{entry.port} of {owner}"


def _entry(target: _End, port: TargetPort) -> EntryInfo | None:
    """The way in, once the service port is known: a NodePort is that port's; other ways in take the service port."""
    if target.entry is None or target.service is None or port.service_port is None:
        return None
    if target.entry is not EntryKind.NODEPORT:
        return EntryInfo(target.entry, port.service_port, target.entry_address, target.entry_nodes)
    chosen = next(
        (p for p in target.service.ports if p.port == port.service_port and p.protocol == port.protocol and p.node_port),
        None,
    )
    if chosen is None or chosen.node_port is None:
        label = f"svc/{target.service.name} in {target.service.namespace}"
        raise ResolutionError(
            f"port {port.service_port}/{port.protocol} of {label} has no NodePort",
            code=VerdictCode.TARGET_NOT_FOUND,
            hint="ask about a port that has one: kubectl -n " + f"{target.service.namespace} get svc {target.service.name}",
        )
    return EntryInfo(EntryKind.NODEPORT, chosen.node_port, None, target.entry_nodes)


def _outside_shorthand(view: _ClusterView, ref: Ref) -> bool:
    """``example.com`` as a target: a NAME.NAMESPACE form whose namespace the cluster does not have is a
    name outside the cluster (names that could be the cluster's are looked up there first)."""
    if ref.kind is not RefKind.SERVICE or ref.dns_name is None or ref.namespace is None:
        return False
    if ref.dns_name != f"{ref.name}.{ref.namespace}":
        return False
    return all(name_of(obj) != ref.namespace for obj in view.objects(NAMESPACES, None))


# ------------------------------------------------------------------------------ the port


def _protocol(text: str | None) -> Protocol:
    try:
        return Protocol(text or "TCP")
    except ValueError:
        return Protocol.TCP


def _port_list(ports: Iterable[ServicePortInfo]) -> str:
    return ", ".join(f"{p.port}/{p.protocol}" + (f" ({p.name})" if p.name else "") for p in ports)


def _pick_first(ports: Sequence[ServicePortInfo]) -> ServicePortInfo:
    return next((p for p in ports if p.protocol == "TCP"), ports[0])


def _resolve_port(question: Question, target: _End, notes: list[str]) -> TargetPort:
    if target.port_hint is not None:
        chosen = target.port_hint
        return TargetPort(chosen.port, chosen.target_port, _protocol(question.protocol or chosen.protocol), chosen.name)
    if target.entry is EntryKind.NODEPORT and target.service is not None and question.port is not None:
        owning = target.service.port_with_node_port(question.port, question.protocol)
        if owning is not None and all(p.port != question.port for p in target.service.ports):
            # "web's nodeport on 30081": the number is the NodePort, not a service port.
            return TargetPort(owning.port, owning.target_port, _protocol(question.protocol or owning.protocol), owning.name)
    if target.kind == "service" and target.service is not None:
        return _service_port(question, target.service, target.pods, notes)
    if target.service is not None and target.service.ports and question.port is None and question.port_name is None:
        # An ExternalName's ports say what clients use; any port asked about is checked as it is.
        return _service_port(question, target.service, target.pods, notes)
    if target.kind == "pod":
        return _pod_port(question, target, notes)
    protocol = _protocol(question.protocol)
    if question.port_name is not None:
        raise ResolutionError(
            f"{target.text} has no named ports; say the port number",
            code=VerdictCode.TARGET_NOT_FOUND,
            hint=f"for example {question.target.display('443')}",
        )
    if question.port is None:
        notes.append("no port given: only routing and name resolution can be checked; add :PORT to probe a port")
    return TargetPort(service_port=None, target_port=question.port, protocol=protocol, name=None)


def _service_port(question: Question, service: ServiceInfo, pods: Sequence[PodInfo], notes: list[str]) -> TargetPort:
    label = describe("Service", service.namespace, service.name)
    wanted_protocol = question.protocol
    ports = [p for p in service.ports if wanted_protocol is None or p.protocol == wanted_protocol]
    if not service.ports:
        notes.append(f"{label} declares no ports")
        return TargetPort(None, question.port, _protocol(wanted_protocol), question.port_name)
    chosen: ServicePortInfo | None = None
    if question.port is not None:
        same = [p for p in ports if p.port == question.port]
        if same:
            chosen = same[0]
            if len(same) > 1 and wanted_protocol is None:
                others = "/".join(p.protocol for p in same[1:])
                notes.append(f"{label} serves port {chosen.port} over {chosen.protocol} and {others}; checking {chosen.protocol}")
        else:
            raise _no_such_service_port(service, label, question.port, pods)
    elif question.port_name is not None:
        named = [p for p in ports if p.name == question.port_name]
        if not named:
            named = [p for p in ports if p.target_port == question.port_name]
            if named:
                notes.append(f"{question.port_name} is the targetPort of {label} port {named[0].port}; checking that port")
        if not named:
            raise ResolutionError(
                f"{label} has no port named {question.port_name!r}; its ports: {_port_list(service.ports)}",
                code=VerdictCode.TARGET_NOT_FOUND,
                suggestions=tuple(f"svc/{service.name}:{p.name or p.port} in {service.namespace}" for p in service.ports),
                hint="ask with one of those ports",
            )
        chosen = named[0]
    else:
        if not ports:
            raise ResolutionError(
                f"{label} has no {wanted_protocol} port; its ports: {_port_list(service.ports)}",
                code=VerdictCode.TARGET_NOT_FOUND,
                hint="ask with one of those ports",
            )
        chosen = ports[0] if len(ports) == 1 else _pick_first(ports)
        if len(ports) > 1:
            notes.append(
                f"{label} has {len(ports)} ports ({_port_list(ports)}); checking {chosen.port}"
                + (f" ({chosen.name})" if chosen.name else "")
                + "; add :PORT to ask about another"
            )
    return TargetPort(
        service_port=chosen.port,
        target_port=chosen.target_port,
        protocol=_protocol(wanted_protocol or chosen.protocol),
        name=chosen.name,
    )


def _no_such_service_port(service: ServiceInfo, label: str, number: int, pods: Sequence[PodInfo]) -> ResolutionError:
    for port in service.ports:
        lands_on = port.target_port == number or (
            isinstance(port.target_port, str)
            and any((cp := pod.port_named(port.target_port, port.protocol)) is not None and cp.port == number for pod in pods)
        )
        if lands_on:
            return ResolutionError(
                f"{label} has no port {number}: {number} is the targetPort (on the pods) of its port {port.port}"
                + (f" ({port.name})" if port.name else "")
                + f"; clients connect to {port.port}",
                code=VerdictCode.TARGET_NOT_FOUND,
                suggestions=(f"svc/{service.name}:{port.port} in {service.namespace}",),
                hint=f"ask about svc/{service.name}:{port.port}, or about a pod directly on {number}",
            )
    return ResolutionError(
        f"{label} has no port {number}; its ports: {_port_list(service.ports)}",
        code=VerdictCode.TARGET_NOT_FOUND,
        suggestions=tuple(f"svc/{service.name}:{p.port} in {service.namespace}" for p in service.ports),
        hint="ask with one of those ports",
    )


def _pod_port(question: Question, target: _End, notes: list[str]) -> TargetPort:
    wanted_protocol = question.protocol
    declared = []
    for pod in target.pods:
        for port in pod.container_ports:
            if port not in declared and (wanted_protocol is None or port.protocol == wanted_protocol):
                declared.append(port)
    if question.port is not None:
        match = next((p for p in declared if p.port == question.port), None)
        if match is None and declared:
            notes.append(f"port {question.port} is not a declared container port of {target.text}; checking it anyway")
        protocol = wanted_protocol or (match.protocol if match else None)
        return TargetPort(None, question.port, _protocol(protocol), match.name if match else None)
    if question.port_name is not None:
        match = next((p for p in declared if p.name == question.port_name), None)
        if match is None:
            listing = ", ".join(f"{p.port}/{p.protocol}" + (f" ({p.name})" if p.name else "") for p in declared) or "none"
            raise ResolutionError(
                f"{target.text} has no container port named {question.port_name!r}; its ports: {listing}",
                code=VerdictCode.TARGET_NOT_FOUND,
                hint="ask with a port number or one of those names",
            )
        return TargetPort(None, match.port, _protocol(wanted_protocol or match.protocol), match.name)
    if not declared:
        raise ResolutionError(
            f"{target.text} declares no container ports, so say which port to check",
            code=VerdictCode.TARGET_NOT_FOUND,
            hint=f"for example {question.target.display('8080')}",
        )
    chosen = next((p for p in declared if p.protocol == "TCP"), declared[0])
    if len(declared) > 1:
        listing = ", ".join(f"{p.port}/{p.protocol}" + (f" ({p.name})" if p.name else "") for p in declared)
        notes.append(
            f"{target.text} has {len(declared)} ports ({listing}); checking {chosen.port}; add :PORT to ask about another"
        )
    return TargetPort(None, chosen.port, _protocol(wanted_protocol or chosen.protocol), chosen.name)


# ------------------------------------------------------------------------------ policies


def _policy_objects(view: _ClusterView, namespaces: Iterable[str]) -> tuple[RawObject, ...]:
    involved = sorted(set(namespaces))
    objects: list[RawObject] = list(view.objects(NAMESPACES, None))
    for namespace in involved:
        objects.extend(view.objects(PODS, namespace))
    for namespace in involved:
        objects.extend(view.objects(NETWORK_POLICIES, namespace))
    return tuple(objects)
