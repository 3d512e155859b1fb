"""The cluster objects a diagnosis needs, as small frozen dataclasses parsed once from API dicts.

The client turns every API answer into plain camelCase dicts (`ApiClient.sanitize_for_serialization`);
the functions here read those dicts into `PodInfo`, `ServiceInfo`, `EndpointInfo` and `NodeInfo`.
Pure: no I/O. Missing or odd fields become None or empty rather than errors, because a real cluster
has objects in every state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

RawObject = dict[str, Any]
"""A Kubernetes object as the API returns it, camelCase keys, with `kind` and `apiVersion` set."""

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")

_WAITING_REASONS_THAT_MATTER = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "CreateContainerConfigError",
        "CreateContainerError",
        "InvalidImageName",
        "ContainerCreating",
        "PodInitializing",
        "RunContainerError",
    }
)


@dataclass(frozen=True)
class ContainerPortInfo:
    """A port a pod's container declares."""

    name: str | None
    port: int
    protocol: str


@dataclass(frozen=True)
class PodInfo:
    """One pod: where it runs, whether it is up, what it exposes and which workload owns it."""

    namespace: str
    name: str
    ip: str | None
    node: str | None
    phase: str
    ready: bool
    reason: str | None
    """Why the pod is not (fully) up: CrashLoopBackOff, ImagePullBackOff, Terminating, Unschedulable ..."""
    labels: Mapping[str, str] = field(hash=False)
    container_ports: tuple[ContainerPortInfo, ...]
    owner_kind: str | None
    owner_name: str | None
    workload_kind: str | None
    """The top-level owner: Deployment (through its ReplicaSet), StatefulSet, DaemonSet, Job ..."""
    workload_name: str | None
    host_network: bool
    host_ip: str | None = None
    restarts: int = 0
    uid: str = ""
    """metadata.uid (kubelet names it in the pod's cgroups)."""
    dns_policy: str = "ClusterFirst"
    """`spec.dnsPolicy` (the API's default is ClusterFirst): which resolv.conf kubelet writes, which for a
    host-network pod decides between the node's resolver and the cluster DNS."""

    @property
    def key(self) -> str:
        """``namespace/name``."""
        return f"{self.namespace}/{self.name}"

    @property
    def running(self) -> bool:
        """Whether the pod's phase is Running."""
        return self.phase == "Running"

    def port_named(self, name: str, protocol: str | None = None) -> ContainerPortInfo | None:
        """The container port with this name (and protocol, when given)."""
        for port in self.container_ports:
            if port.name == name and (protocol is None or port.protocol == protocol):
                return port
        return None

    def port_numbered(self, number: int, protocol: str | None = None) -> ContainerPortInfo | None:
        """The container port with this number (and protocol, when given)."""
        for port in self.container_ports:
            if port.port == number and (protocol is None or port.protocol == protocol):
                return port
        return None


@dataclass(frozen=True)
class ServicePortInfo:
    """One port of a Service: what clients connect to and where it goes on the pods."""

    name: str | None
    port: int
    target_port: int | str
    """A number, or the name of a container port on the backing pods."""
    protocol: str
    node_port: int | None = None


@dataclass(frozen=True)
class ServiceInfo:
    """One Service."""

    namespace: str
    name: str
    cluster_ip: str | None
    """The virtual IP; None for a headless Service (clusterIP: None) or an ExternalName."""
    type: str
    selector: Mapping[str, str] | None = field(hash=False)
    """None when the Service has no selector (its endpoints are managed by hand)."""
    ports: tuple[ServicePortInfo, ...]
    session_affinity: str
    external_name: str | None = None
    external_traffic_policy: str = "Cluster"
    """`spec.externalTrafficPolicy`: "Local" keeps NodePort and LB traffic on nodes with an endpoint."""
    internal_traffic_policy: str = "Cluster"
    health_check_node_port: int | None = None
    """Set for a LoadBalancer with `externalTrafficPolicy: Local`: kube-proxy answers it per node."""
    external_ips: tuple[str, ...] = ()
    """`spec.externalIPs`."""
    load_balancer_ips: tuple[str, ...] = ()
    """`status.loadBalancer.ingress[].ip` (a cloud LB known only by hostname has none)."""
    load_balancer_hostnames: tuple[str, ...] = ()
    """`status.loadBalancer.ingress[].hostname`."""

    @property
    def key(self) -> str:
        """``namespace/name``."""
        return f"{self.namespace}/{self.name}"

    def port_with_node_port(self, node_port: int, protocol: str | None = None) -> ServicePortInfo | None:
        """The service port whose NodePort is `node_port` (and protocol, when given)."""
        return next(
            (p for p in self.ports if p.node_port == node_port and (protocol is None or p.protocol == protocol)),
            None,
        )

    @property
    def headless(self) -> bool:
        """Whether the Service has no virtual IP (clients get the pod IPs from DNS)."""
        return self.cluster_ip is None and self.type != "ExternalName"

    def selects(self, labels: Mapping[str, str]) -> bool:
        """Whether the Service's selector matches these labels (never, without a selector)."""
        if not self.selector:
            return False
        return all(labels.get(key) == value for key, value in self.selector.items())


@dataclass(frozen=True)
class EndpointPortInfo:
    """A port of an EndpointSlice: the Service port's name and the resolved pod port."""

    name: str | None
    port: int | None
    protocol: str


@dataclass(frozen=True)
class EndpointInfo:
    """One address of a Service's EndpointSlices, with its conditions and the pod behind it."""

    ip: str
    node: str | None
    ready: bool
    serving: bool
    terminating: bool
    pod_namespace: str | None
    pod_name: str | None
    ports: tuple[EndpointPortInfo, ...]

    def port_for(self, name: str | None, protocol: str) -> int | None:
        """The pod port this endpoint serves for the Service port with this name and protocol."""
        for port in self.ports:
            if (port.name or None) == (name or None) and port.protocol == protocol:
                return port.port
        return None


@dataclass(frozen=True)
class NodeInfo:
    """One node: its address on the node network, its pod CIDR and whether it is Ready."""

    name: str
    internal_ip: str | None
    pod_cidr: str | None
    ready: bool


# ----------------------------------------------------------------------------- parsing


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _str_map(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in _mapping(value).items()}


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def metadata_of(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """The object's metadata (empty when missing)."""
    return _mapping(obj.get("metadata"))


def name_of(obj: Mapping[str, Any]) -> str:
    """The object's metadata.name ("" when missing)."""
    return str(metadata_of(obj).get("name") or "")


def namespace_of(obj: Mapping[str, Any]) -> str:
    """The object's metadata.namespace ("" for cluster-scoped objects)."""
    return str(metadata_of(obj).get("namespace") or "")


def controller_of(obj: Mapping[str, Any]) -> tuple[str, str] | None:
    """(kind, name) of the object's controlling owner (the first owner when none is marked)."""
    owners = [_mapping(o) for o in _list(metadata_of(obj).get("ownerReferences"))]
    if not owners:
        return None
    chosen = next((o for o in owners if o.get("controller")), owners[0])
    kind, name = chosen.get("kind"), chosen.get("name")
    if not isinstance(kind, str) or not isinstance(name, str):
        return None
    return kind, name


def _condition_true(status: Mapping[str, Any], kind: str) -> bool:
    return any(_mapping(c).get("type") == kind and _mapping(c).get("status") == "True" for c in _list(status.get("conditions")))


def _pod_reason(obj: Mapping[str, Any], status: Mapping[str, Any]) -> str | None:
    if metadata_of(obj).get("deletionTimestamp"):
        return "Terminating"
    for key in ("initContainerStatuses", "containerStatuses"):
        for container in _list(status.get(key)):
            state = _mapping(_mapping(container).get("state"))
            waiting = _mapping(state.get("waiting"))
            reason = waiting.get("reason")
            if isinstance(reason, str) and reason in _WAITING_REASONS_THAT_MATTER:
                return reason
            terminated = _mapping(state.get("terminated"))
            reason = terminated.get("reason")
            if isinstance(reason, str) and reason and status.get("phase") != "Succeeded":
                return reason
    reason = status.get("reason")
    if isinstance(reason, str) and reason:
        return reason
    if status.get("phase") == "Pending":
        for condition in _list(status.get("conditions")):
            c = _mapping(condition)
            if c.get("type") == "PodScheduled" and c.get("status") == "False":
                return str(c.get("reason") or "Unschedulable")
    return None


def pod_info(obj: Mapping[str, Any], replica_set_owners: Mapping[tuple[str, str], tuple[str, str]] | None = None) -> PodInfo:
    """A `PodInfo` from a v1 Pod dict.

    `replica_set_owners` maps (namespace, ReplicaSet name) to its owner (kind, name), so that a pod
    of a ReplicaSet gets its Deployment as workload. Without an entry, the pod-template-hash label
    decides (``web-7d9f`` with hash ``7d9f`` belongs to Deployment ``web``).
    """
    meta = metadata_of(obj)
    spec = _mapping(obj.get("spec"))
    status = _mapping(obj.get("status"))
    namespace, name = namespace_of(obj), name_of(obj)
    labels = _str_map(meta.get("labels"))
    ports: list[ContainerPortInfo] = []
    for container in _list(spec.get("containers")):
        for raw in _list(_mapping(container).get("ports")):
            port = _mapping(raw)
            number = port.get("containerPort")
            if isinstance(number, int):
                ports.append(ContainerPortInfo(_optional_str(port.get("name")), number, str(port.get("protocol") or "TCP")))
    owner = controller_of(obj)
    workload = owner
    if owner is not None and owner[0] == "ReplicaSet":
        known = (replica_set_owners or {}).get((namespace, owner[1]))
        if known is not None:
            workload = known
        else:
            template_hash = labels.get("pod-template-hash")
            if template_hash and owner[1].endswith(f"-{template_hash}"):
                workload = ("Deployment", owner[1][: -len(template_hash) - 1])
    restarts = sum(int(_mapping(c).get("restartCount") or 0) for c in _list(status.get("containerStatuses")))
    return PodInfo(
        namespace=namespace,
        name=name,
        ip=_optional_str(status.get("podIP")),
        node=_optional_str(spec.get("nodeName")),
        phase=str(status.get("phase") or "Unknown"),
        ready=_condition_true(status, "Ready"),
        reason=_pod_reason(obj, status),
        labels=labels,
        container_ports=tuple(ports),
        owner_kind=owner[0] if owner else None,
        owner_name=owner[1] if owner else None,
        workload_kind=workload[0] if workload else None,
        workload_name=workload[1] if workload else None,
        host_network=bool(spec.get("hostNetwork")),
        host_ip=_optional_str(status.get("hostIP")),
        restarts=restarts,
        uid=str(meta.get("uid") or ""),
        dns_policy=str(spec.get("dnsPolicy") or "ClusterFirst"),
    )


def service_info(obj: Mapping[str, Any]) -> ServiceInfo:
    """A `ServiceInfo` from a v1 Service dict."""
    spec = _mapping(obj.get("spec"))
    ports: list[ServicePortInfo] = []
    for raw in _list(spec.get("ports")):
        port = _mapping(raw)
        number = port.get("port")
        if not isinstance(number, int):
            continue
        target = port.get("targetPort", number)
        if isinstance(target, str) and target.isdigit():
            target = int(target)
        if not isinstance(target, int | str) or target in ("", 0):
            target = number
        node_port = port.get("nodePort")
        ports.append(
            ServicePortInfo(
                name=_optional_str(port.get("name")),
                port=number,
                target_port=target,
                protocol=str(port.get("protocol") or "TCP"),
                node_port=node_port if isinstance(node_port, int) else None,
            )
        )
    cluster_ip = _optional_str(spec.get("clusterIP"))
    selector = spec.get("selector")
    ingress = [_mapping(i) for i in _list(_mapping(_mapping(obj.get("status")).get("loadBalancer")).get("ingress"))]
    health = spec.get("healthCheckNodePort")
    return ServiceInfo(
        namespace=namespace_of(obj),
        name=name_of(obj),
        cluster_ip=None if cluster_ip == "None" else cluster_ip,
        type=str(spec.get("type") or "ClusterIP"),
        selector=_str_map(selector) if isinstance(selector, Mapping) and selector else None,
        ports=tuple(ports),
        session_affinity=str(spec.get("sessionAffinity") or "None"),
        external_name=_optional_str(spec.get("externalName")),
        external_traffic_policy=str(spec.get("externalTrafficPolicy") or "Cluster"),
        internal_traffic_policy=str(spec.get("internalTrafficPolicy") or "Cluster"),
        health_check_node_port=health if isinstance(health, int) and health > 0 else None,
        external_ips=tuple(str(ip) for ip in _list(spec.get("externalIPs")) if isinstance(ip, str) and ip),
        load_balancer_ips=tuple(str(i["ip"]) for i in ingress if isinstance(i.get("ip"), str) and i["ip"]),
        load_balancer_hostnames=tuple(
            str(i["hostname"]) for i in ingress if isinstance(i.get("hostname"), str) and i["hostname"]
        ),
    )


def endpoints_of_slice(obj: Mapping[str, Any]) -> tuple[EndpointInfo, ...]:
    """One `EndpointInfo` per address of a discovery.k8s.io/v1 EndpointSlice dict.

    Conditions follow the API's rules: ready and serving unset mean true (serving defaults to
    ready), terminating unset means false.
    """
    ports = tuple(
        EndpointPortInfo(
            name=_optional_str(_mapping(p).get("name")),
            port=_mapping(p).get("port") if isinstance(_mapping(p).get("port"), int) else None,
            protocol=str(_mapping(p).get("protocol") or "TCP"),
        )
        for p in _list(obj.get("ports"))
    )
    out: list[EndpointInfo] = []
    for raw in _list(obj.get("endpoints")):
        endpoint = _mapping(raw)
        conditions = _mapping(endpoint.get("conditions"))
        ready = conditions.get("ready")
        serving = conditions.get("serving")
        ready_value = True if ready is None else bool(ready)
        target = _mapping(endpoint.get("targetRef"))
        is_pod = target.get("kind") == "Pod"
        for address in _list(endpoint.get("addresses")):
            out.append(
                EndpointInfo(
                    ip=str(address),
                    node=_optional_str(endpoint.get("nodeName")),
                    ready=ready_value,
                    serving=ready_value if serving is None else bool(serving),
                    terminating=bool(conditions.get("terminating")),
                    pod_namespace=_optional_str(target.get("namespace")) or (namespace_of(obj) if is_pod else None),
                    pod_name=_optional_str(target.get("name")) if is_pod else None,
                    ports=ports,
                )
            )
    return tuple(out)


def node_info(obj: Mapping[str, Any]) -> NodeInfo:
    """A `NodeInfo` from a v1 Node dict."""
    spec = _mapping(obj.get("spec"))
    status = _mapping(obj.get("status"))
    internal_ip = None
    for address in _list(status.get("addresses")):
        a = _mapping(address)
        if a.get("type") == "InternalIP" and isinstance(a.get("address"), str):
            internal_ip = a["address"]
            break
    pod_cidr = _optional_str(spec.get("podCIDR"))
    if pod_cidr is None:
        cidrs = [c for c in _list(spec.get("podCIDRs")) if isinstance(c, str)]
        pod_cidr = cidrs[0] if cidrs else None
    return NodeInfo(name=name_of(obj), internal_ip=internal_ip, pod_cidr=pod_cidr, ready=_condition_true(status, "Ready"))
