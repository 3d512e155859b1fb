"""NetworkPolicy, Pod and Namespace objects parsed once, at the edge, into small frozen types.

The compiler takes plain Kubernetes-shaped dicts (what the lab's API server serves and what
`kubectl get -o json` prints). This module turns them into the few facts the compiler needs and
applies the API server's defaults (policyTypes, protocol TCP), so that nothing downstream reads a
dict again.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from lab.errors import LabError

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
PROTOCOLS = ("TCP", "UDP", "SCTP")

Direction = Literal["Ingress", "Egress"]
DIRECTIONS: tuple[Direction, ...] = ("Ingress", "Egress")


class InvalidNetworkPolicy(LabError, ValueError):
    """A NetworkPolicy (or a pod or namespace it refers to) is not a valid Kubernetes object."""

    def __init__(self, message: str) -> None:
        super().__init__(message, hint="fix the object as the API server would require", exit_code=2)


@dataclass(frozen=True)
class SelectorRequirement:
    """One matchExpressions entry: `key operator values`."""

    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: frozenset[str]

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a label set satisfies this requirement (NotIn also matches an absent key)."""
        present = self.key in labels
        if self.operator == "Exists":
            return present
        if self.operator == "DoesNotExist":
            return not present
        if self.operator == "In":
            return present and labels[self.key] in self.values
        return not present or labels[self.key] not in self.values


@dataclass(frozen=True)
class LabelSelector:
    """A metav1.LabelSelector: matchLabels and matchExpressions, all ANDed; empty selects everything."""

    match_labels: tuple[tuple[str, str], ...] = ()
    expressions: tuple[SelectorRequirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a label set is selected."""
        return all(labels.get(key) == value for key, value in self.match_labels) and all(
            req.matches(labels) for req in self.expressions
        )


@dataclass(frozen=True)
class IPBlock:
    """An ipBlock peer: a CIDR minus its `except` CIDRs."""

    cidr: ipaddress.IPv4Network | ipaddress.IPv6Network
    excepts: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    def contains(self, ip: str) -> bool:
        """Whether an address is inside the block and outside every exception."""
        addr = ipaddress.ip_address(ip)
        if addr.version != self.cidr.version or addr not in self.cidr:
            return False
        return not any(addr.version == exc.version and addr in exc for exc in self.excepts)


@dataclass(frozen=True)
class PolicyPeer:
    """One entry of `from` / `to`. Selectors absent are None; both present means AND."""

    pod_selector: LabelSelector | None
    namespace_selector: LabelSelector | None
    ip_block: IPBlock | None


@dataclass(frozen=True)
class PolicyPort:
    """One entry of `ports`: protocol (default TCP), a number, a name or nothing, and an endPort."""

    protocol: str
    port: int | str | None
    end_port: int | None


@dataclass(frozen=True)
class PolicyRule:
    """One ingress or egress rule. Empty `peers` means every peer; empty `ports` every port."""

    peers: tuple[PolicyPeer, ...]
    ports: tuple[PolicyPort, ...]


@dataclass(frozen=True)
class NetworkPolicySpec:
    """A NetworkPolicy with the API server's defaults applied."""

    namespace: str
    name: str
    pod_selector: LabelSelector
    policy_types: frozenset[Direction]
    ingress: tuple[PolicyRule, ...]
    egress: tuple[PolicyRule, ...]

    def rules(self, direction: Direction) -> tuple[PolicyRule, ...]:
        """The rules for one direction."""
        return self.ingress if direction == "Ingress" else self.egress


@dataclass(frozen=True)
class ContainerPort:
    """A declared container port (a name is what named policy ports resolve against)."""

    name: str
    number: int
    protocol: str


@dataclass(frozen=True)
class PodEndpoint:
    """A running pod as the policy compiler sees it: where it is, what it is called, its labels."""

    namespace: str
    name: str
    labels: Mapping[str, str]
    node_name: str
    ip: str
    ports: tuple[ContainerPort, ...]

    def resolve_port(self, port_name: str, protocol: str) -> int | None:
        """The container port number behind a named port for a protocol, or None if undeclared."""
        for port in self.ports:
            if port.name == port_name and port.protocol == protocol:
                return port.number
        return None


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidNetworkPolicy(f"{where} must be an object, got {type(value).__name__}")
    return value


def _sequence(value: Any, where: str) -> Sequence[Any]:
    if value is None:
        return ()
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise InvalidNetworkPolicy(f"{where} must be a list, got {type(value).__name__}")
    return value


def _labels(value: Any, where: str) -> dict[str, str]:
    return {str(k): str(v) for k, v in _mapping(value, where).items()}


def parse_selector(value: Any, where: str) -> LabelSelector | None:
    """Parse a metav1.LabelSelector; None when the field is absent (null)."""
    if value is None:
        return None
    obj = _mapping(value, where)
    expressions = []
    for i, expr in enumerate(_sequence(obj.get("matchExpressions"), f"{where}.matchExpressions")):
        entry = _mapping(expr, f"{where}.matchExpressions[{i}]")
        operator = entry.get("operator")
        values = frozenset(str(v) for v in _sequence(entry.get("values"), f"{where}.matchExpressions[{i}]"))
        if operator in ("In", "NotIn"):
            if not values:
                raise InvalidNetworkPolicy(f"{where}.matchExpressions[{i}]: {operator} needs values")
        elif operator in ("Exists", "DoesNotExist"):
            if values:
                raise InvalidNetworkPolicy(f"{where}.matchExpressions[{i}]: {operator} takes no values")
        else:
            raise InvalidNetworkPolicy(
                f"{where}.matchExpressions[{i}]: unknown operator {operator!r}; use In, NotIn, Exists or DoesNotExist"
            )
        expressions.append(SelectorRequirement(str(entry.get("key", "")), operator, values))
    match_labels = tuple(sorted(_labels(obj.get("matchLabels"), f"{where}.matchLabels").items()))
    return LabelSelector(match_labels, tuple(expressions))


def _network(text: Any, where: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(str(text), strict=False)
    except ValueError as exc:
        raise InvalidNetworkPolicy(f"{where}: {text!r} is not a CIDR ({exc})") from exc


def _parse_peer(value: Any, where: str) -> PolicyPeer:
    obj = _mapping(value, where)
    ip_block = None
    if obj.get("ipBlock") is not None:
        block = _mapping(obj["ipBlock"], f"{where}.ipBlock")
        excepts = tuple(
            _network(exc, f"{where}.ipBlock.except") for exc in _sequence(block.get("except"), f"{where}.ipBlock.except")
        )
        ip_block = IPBlock(_network(block.get("cidr"), f"{where}.ipBlock.cidr"), excepts)
    pod_selector = parse_selector(obj.get("podSelector"), f"{where}.podSelector")
    namespace_selector = parse_selector(obj.get("namespaceSelector"), f"{where}.namespaceSelector")
    if ip_block is None and pod_selector is None and namespace_selector is None:
        raise InvalidNetworkPolicy(f"{where}: a peer needs podSelector, namespaceSelector or ipBlock")
    if ip_block is not None and (pod_selector is not None or namespace_selector is not None):
        raise InvalidNetworkPolicy(f"{where}: ipBlock cannot be combined with selectors in one peer")
    return PolicyPeer(pod_selector, namespace_selector, ip_block)


def _parse_port(value: Any, where: str) -> PolicyPort:
    obj = _mapping(value, where)
    protocol = str(obj.get("protocol") or "TCP").upper()
    if protocol not in PROTOCOLS:
        raise InvalidNetworkPolicy(f"{where}.protocol: {protocol!r} is not TCP, UDP or SCTP")
    raw = obj.get("port")
    port: int | str | None
    if raw is None:
        port = None
    elif isinstance(raw, int) or (isinstance(raw, str) and raw.isdigit()):
        port = int(raw)
        if not 1 <= port <= 65535:
            raise InvalidNetworkPolicy(f"{where}.port: {port} is outside 1-65535")
    elif isinstance(raw, str) and raw:
        port = raw
    else:
        raise InvalidNetworkPolicy(f"{where}.port: {raw!r} is neither a number nor a port name")
    end_port = obj.get("endPort")
    if end_port is not None:
        if not isinstance(port, int) or not isinstance(end_port, int) or end_port < port:
            raise InvalidNetworkPolicy(f"{where}.endPort needs a numeric port and endPort >= port")
        if end_port > 65535:
            raise InvalidNetworkPolicy(f"{where}.endPort: {end_port} is outside 1-65535")
    return PolicyPort(protocol, port, end_port)


def _parse_rules(value: Any, peer_key: str, where: str) -> tuple[PolicyRule, ...]:
    rules = []
    for i, rule in enumerate(_sequence(value, where)):
        obj = _mapping(rule, f"{where}[{i}]")
        peers = tuple(
            _parse_peer(peer, f"{where}[{i}].{peer_key}[{j}]")
            for j, peer in enumerate(_sequence(obj.get(peer_key), f"{where}[{i}].{peer_key}"))
        )
        ports = tuple(
            _parse_port(port, f"{where}[{i}].ports[{j}]")
            for j, port in enumerate(_sequence(obj.get("ports"), f"{where}[{i}].ports"))
        )
        rules.append(PolicyRule(peers, ports))
    return tuple(rules)


def parse_network_policy(obj: Mapping[str, Any]) -> NetworkPolicySpec:
    """Parse a networking.k8s.io/v1 NetworkPolicy, applying the API server's defaults.

    policyTypes absent means Ingress, plus Egress when the policy has egress rules (as the API
    server's defaulting does: an empty `egress: []` without policyTypes does not isolate egress).
    """
    meta = _mapping(obj.get("metadata"), "metadata")
    namespace = str(meta.get("namespace") or "default")
    name = str(meta.get("name") or "")
    where = f"NetworkPolicy {namespace}/{name}"
    spec = _mapping(obj.get("spec"), f"{where}: spec")
    pod_selector = parse_selector(spec.get("podSelector"), f"{where}: spec.podSelector") or LabelSelector()
    ingress = _parse_rules(spec.get("ingress"), "from", f"{where}: spec.ingress")
    egress = _parse_rules(spec.get("egress"), "to", f"{where}: spec.egress")
    declared = [str(t) for t in _sequence(spec.get("policyTypes"), f"{where}: spec.policyTypes")]
    types: set[Direction] = set()
    for policy_type in declared:
        if policy_type == "Ingress":
            types.add("Ingress")
        elif policy_type == "Egress":
            types.add("Egress")
        else:
            raise InvalidNetworkPolicy(f"{where}: policyTypes entry {policy_type!r} is not Ingress or Egress")
    if not declared:
        types.add("Ingress")
        if egress:
            types.add("Egress")
    return NetworkPolicySpec(namespace, name, pod_selector, frozenset(types), ingress, egress)


def parse_namespace_labels(namespaces: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, str]]:
    """Namespace name → labels, with the implicit kubernetes.io/metadata.name label added."""
    result: dict[str, dict[str, str]] = {}
    for ns in namespaces:
        meta = _mapping(ns.get("metadata"), "Namespace metadata")
        name = str(meta.get("name") or "")
        labels = _labels(meta.get("labels"), f"Namespace {name}: labels")
        labels[NAMESPACE_NAME_LABEL] = name
        result[name] = labels
    return result


def parse_pod(obj: Mapping[str, Any]) -> PodEndpoint | None:
    """A pod that policy applies to, or None (no IP yet, host network, finished, or IPv6 only)."""
    meta = _mapping(obj.get("metadata"), "Pod metadata")
    spec = _mapping(obj.get("spec"), "Pod spec")
    status = _mapping(obj.get("status"), "Pod status")
    ip = status.get("podIP")
    if not ip or spec.get("hostNetwork") or status.get("phase") in ("Succeeded", "Failed"):
        return None
    try:
        if ipaddress.ip_address(str(ip)).version != 4:
            return None
    except ValueError as exc:
        raise InvalidNetworkPolicy(f"Pod {meta.get('name')}: podIP {ip!r} is not an address") from exc
    ports = []
    for container in _sequence(spec.get("containers"), "Pod spec.containers"):
        for port in _sequence(_mapping(container, "container").get("ports"), "container ports"):
            entry = _mapping(port, "container port")
            if entry.get("name") and entry.get("containerPort") is not None:
                ports.append(
                    ContainerPort(
                        str(entry["name"]),
                        int(entry["containerPort"]),
                        str(entry.get("protocol") or "TCP").upper(),
                    )
                )
    return PodEndpoint(
        namespace=str(meta.get("namespace") or "default"),
        name=str(meta.get("name") or ""),
        labels=_labels(meta.get("labels"), "Pod labels"),
        node_name=str(spec.get("nodeName") or ""),
        ip=str(ip),
        ports=tuple(ports),
    )
