"""Build the evaluator's models from Kubernetes objects in their JSON/YAML shape (camelCase dicts).

Pass what the API server returns (for the Python client: `ApiClient().sanitize_for_serialization(obj)`)
or what a manifest holds. Defaults are applied the way the API server applies them: `policyTypes`
absent means Ingress, plus Egress when the policy has egress rules; a port's protocol defaults to
TCP; every namespace gets its implicit `kubernetes.io/metadata.name` label. Objects the API server
would reject (an ipBlock beside a selector, an unknown selector operator, a bad CIDR or port) raise
`BadInput` naming the object and the field.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from bot.errors import BadInput
from bot.policy.models import (
    NAMESPACE_NAME_LABEL,
    Cluster,
    ContainerPort,
    Direction,
    IPAddress,
    IPBlock,
    IPNetwork,
    LabelSelector,
    Namespace,
    NetworkPolicy,
    Peer,
    Pod,
    PolicyPort,
    PolicyRule,
    Protocol,
    SelectorOperator,
    SelectorRequirement,
)

KIND_NAMESPACE = "Namespace"
KIND_POD = "Pod"
KIND_NETWORK_POLICY = "NetworkPolicy"
KINDS = frozenset({KIND_NAMESPACE, KIND_POD, KIND_NETWORK_POLICY})
"""The kinds the evaluator reads; `cluster_from_objects` ignores every other kind."""


class _Where:
    """The object being read and the field path inside it, for error messages."""

    def __init__(self, kind: str, obj: Mapping[str, Any]) -> None:
        metadata = obj.get("metadata") if isinstance(obj.get("metadata"), Mapping) else {}
        assert isinstance(metadata, Mapping)
        name = metadata.get("name") or "<no name>"
        namespace = metadata.get("namespace")
        self.label = f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"

    def error(self, path: str, problem: str) -> BadInput:
        return BadInput(
            f"{self.label}: {path}: {problem}",
            hint="fix the object (kubectl would reject it too) or leave it out",
        )


def _mapping(where: _Where, value: Any, path: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise where.error(path, f"expected a mapping, got {type(value).__name__}")
    return value


def _sequence(where: _Where, value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise where.error(path, f"expected a list, got {type(value).__name__}")
    return value


def _string(where: _Where, value: Any, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise where.error(path, f"expected a non-empty string, got {value!r}")
    return value


def _labels(where: _Where, value: Any, path: str) -> dict[str, str]:
    labels = _mapping(where, value, path)
    result: dict[str, str] = {}
    for key, raw_value in labels.items():
        if not isinstance(key, str):
            raise where.error(path, f"label key {key!r} is not a string")
        # YAML turns `pci: true` into a bool; the API server would have a string here.
        label_value = raw_value
        if isinstance(label_value, bool):
            label_value = "true" if label_value else "false"
        elif isinstance(label_value, int | float):
            label_value = str(label_value)
        elif label_value is None:
            label_value = ""
        if not isinstance(label_value, str):
            raise where.error(f"{path}.{key}", f"label value must be a string, got {label_value!r}")
        result[key] = label_value
    return result


def _protocol(where: _Where, value: Any, path: str) -> Protocol:
    if value is None:
        return Protocol.TCP
    try:
        return Protocol(str(value).upper())
    except ValueError:
        raise where.error(path, f"unknown protocol {value!r} (TCP, UDP or SCTP)") from None


def _port_number(where: _Where, value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise where.error(path, f"expected a port number 1-65535, got {value!r}")
    return value


def parse_label_selector(value: Any, *, where: _Where | None = None, path: str = "selector") -> LabelSelector:
    """A `LabelSelector` from its dict form (`matchLabels`, `matchExpressions`); `{}` or None match all."""
    where = where or _Where("LabelSelector", {})
    raw = _mapping(where, value, path)
    match_labels = tuple(sorted(_labels(where, raw.get("matchLabels"), f"{path}.matchLabels").items()))
    requirements: list[SelectorRequirement] = []
    for index, item in enumerate(_sequence(where, raw.get("matchExpressions"), f"{path}.matchExpressions")):
        item_path = f"{path}.matchExpressions[{index}]"
        expression = _mapping(where, item, item_path)
        key = _string(where, expression.get("key"), f"{item_path}.key")
        try:
            operator = SelectorOperator(str(expression.get("operator")))
        except ValueError:
            raise where.error(
                f"{item_path}.operator",
                f"unknown operator {expression.get('operator')!r} (In, NotIn, Exists or DoesNotExist)",
            ) from None
        values = [str(v) for v in _sequence(where, expression.get("values"), f"{item_path}.values")]
        if operator in (SelectorOperator.IN, SelectorOperator.NOT_IN) and not values:
            raise where.error(f"{item_path}.values", f"operator {operator} needs at least one value")
        if operator in (SelectorOperator.EXISTS, SelectorOperator.DOES_NOT_EXIST) and values:
            raise where.error(f"{item_path}.values", f"operator {operator} takes no values")
        requirements.append(SelectorRequirement(key, operator, frozenset(values)))
    return LabelSelector(match_labels, tuple(requirements))


def _network(where: _Where, value: Any, path: str) -> IPNetwork:
    if not isinstance(value, str):
        raise where.error(path, f"expected a CIDR such as 10.0.0.0/8, got {value!r}")
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise where.error(path, f"{value!r} is not a CIDR such as 10.0.0.0/8") from None


def _peer(where: _Where, value: Any, path: str) -> Peer:
    raw = _mapping(where, value, path)
    pod_selector = raw.get("podSelector")
    namespace_selector = raw.get("namespaceSelector")
    ip_block = raw.get("ipBlock")
    if ip_block is not None:
        if pod_selector is not None or namespace_selector is not None:
            raise where.error(path, "ipBlock cannot be combined with podSelector or namespaceSelector")
        block = _mapping(where, ip_block, f"{path}.ipBlock")
        cidr = _network(where, block.get("cidr"), f"{path}.ipBlock.cidr")
        excepts = tuple(
            _network(where, item, f"{path}.ipBlock.except[{index}]")
            for index, item in enumerate(_sequence(where, block.get("except"), f"{path}.ipBlock.except"))
        )
        return Peer(ip_block=IPBlock(cidr, excepts))
    if pod_selector is None and namespace_selector is None:
        raise where.error(path, "a peer needs podSelector, namespaceSelector or ipBlock")
    return Peer(
        pod_selector=(
            None if pod_selector is None else parse_label_selector(pod_selector, where=where, path=f"{path}.podSelector")
        ),
        namespace_selector=(
            None
            if namespace_selector is None
            else parse_label_selector(namespace_selector, where=where, path=f"{path}.namespaceSelector")
        ),
    )


def _policy_port(where: _Where, value: Any, path: str) -> PolicyPort:
    raw = _mapping(where, value, path)
    protocol = _protocol(where, raw.get("protocol"), f"{path}.protocol")
    port_value = raw.get("port")
    port: int | str | None
    if port_value is None:
        port = None
    elif isinstance(port_value, str) and not port_value.isdigit():
        port = port_value
    elif isinstance(port_value, str):
        port = _port_number(where, int(port_value), f"{path}.port")
    else:
        port = _port_number(where, port_value, f"{path}.port")
    end_port: int | None = None
    if raw.get("endPort") is not None:
        end_port = _port_number(where, raw.get("endPort"), f"{path}.endPort")
        if not isinstance(port, int):
            raise where.error(f"{path}.endPort", "endPort needs a numeric port to start the range")
        if end_port < port:
            raise where.error(f"{path}.endPort", f"endPort {end_port} is below port {port}")
    return PolicyPort(protocol, port, end_port)


def _rule(where: _Where, value: Any, path: str, peers_key: str) -> PolicyRule:
    raw = _mapping(where, value, path)
    peers = tuple(
        _peer(where, item, f"{path}.{peers_key}[{index}]")
        for index, item in enumerate(_sequence(where, raw.get(peers_key), f"{path}.{peers_key}"))
    )
    ports = tuple(
        _policy_port(where, item, f"{path}.ports[{index}]")
        for index, item in enumerate(_sequence(where, raw.get("ports"), f"{path}.ports"))
    )
    return PolicyRule(peers, ports)


def _metadata(where: _Where, obj: Mapping[str, Any], *, namespaced: bool) -> tuple[str, str]:
    metadata = _mapping(where, obj.get("metadata"), "metadata")
    name = _string(where, metadata.get("name"), "metadata.name")
    namespace = metadata.get("namespace") or "default"
    if namespaced:
        namespace = _string(where, namespace, "metadata.namespace")
    return namespace, name


def parse_network_policy(obj: Mapping[str, Any]) -> NetworkPolicy:
    """A `NetworkPolicy` from a `networking.k8s.io/v1` NetworkPolicy dict (namespace default: `default`)."""
    where = _Where(KIND_NETWORK_POLICY, obj)
    namespace, name = _metadata(where, obj, namespaced=True)
    spec = _mapping(where, obj.get("spec"), "spec")
    pod_selector = parse_label_selector(spec.get("podSelector"), where=where, path="spec.podSelector")
    ingress = tuple(
        _rule(where, item, f"spec.ingress[{index}]", "from")
        for index, item in enumerate(_sequence(where, spec.get("ingress"), "spec.ingress"))
    )
    egress = tuple(
        _rule(where, item, f"spec.egress[{index}]", "to")
        for index, item in enumerate(_sequence(where, spec.get("egress"), "spec.egress"))
    )
    raw_types = _sequence(where, spec.get("policyTypes"), "spec.policyTypes")
    if raw_types:
        types: set[Direction] = set()
        for index, item in enumerate(raw_types):
            try:
                types.add(Direction(item))
            except ValueError:
                raise where.error(f"spec.policyTypes[{index}]", f"unknown policy type {item!r} (Ingress or Egress)") from None
        policy_types = frozenset(types)
    else:
        # The API server's default: Ingress always, Egress only when there are egress rules.
        policy_types = frozenset({Direction.INGRESS, Direction.EGRESS} if egress else {Direction.INGRESS})
    return NetworkPolicy(namespace, name, pod_selector, policy_types, ingress, egress)


def parse_namespace(obj: Mapping[str, Any]) -> Namespace:
    """A `Namespace` from a v1 Namespace dict, with its implicit `kubernetes.io/metadata.name` label."""
    where = _Where(KIND_NAMESPACE, obj)
    metadata = _mapping(where, obj.get("metadata"), "metadata")
    name = _string(where, metadata.get("name"), "metadata.name")
    labels = _labels(where, metadata.get("labels"), "metadata.labels")
    labels.setdefault(NAMESPACE_NAME_LABEL, name)
    return Namespace(name, labels)


def _pod_ips(where: _Where, status: Mapping[str, Any]) -> tuple[IPAddress, ...]:
    texts: list[Any] = []
    if status.get("podIP"):
        texts.append(status.get("podIP"))
    for index, item in enumerate(_sequence(where, status.get("podIPs"), "status.podIPs")):
        texts.append(_mapping(where, item, f"status.podIPs[{index}]").get("ip"))
    ips: list[IPAddress] = []
    for text in texts:
        if text is None:
            continue
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            raise where.error("status.podIP", f"{text!r} is not an IP address") from None
        if ip not in ips:
            ips.append(ip)
    return tuple(ips)


def parse_pod(obj: Mapping[str, Any]) -> Pod:
    """A `Pod` from a v1 Pod dict: labels, `status.podIP(s)`, declared container ports, hostNetwork."""
    where = _Where(KIND_POD, obj)
    namespace, name = _metadata(where, obj, namespaced=True)
    metadata = _mapping(where, obj.get("metadata"), "metadata")
    labels = _labels(where, metadata.get("labels"), "metadata.labels")
    spec = _mapping(where, obj.get("spec"), "spec")
    status = _mapping(where, obj.get("status"), "status")
    ports: list[ContainerPort] = []
    for kind in ("initContainers", "containers"):
        for c_index, container in enumerate(_sequence(where, spec.get(kind), f"spec.{kind}")):
            c_path = f"spec.{kind}[{c_index}]"
            raw_ports = _sequence(where, _mapping(where, container, c_path).get("ports"), f"{c_path}.ports")
            for p_index, raw_port in enumerate(raw_ports):
                p_path = f"{c_path}.ports[{p_index}]"
                port = _mapping(where, raw_port, p_path)
                number = _port_number(where, port.get("containerPort"), f"{p_path}.containerPort")
                protocol = _protocol(where, port.get("protocol"), f"{p_path}.protocol")
                port_name = port.get("name")
                if port_name is not None and not isinstance(port_name, str):
                    raise where.error(f"{p_path}.name", f"expected a port name, got {port_name!r}")
                ports.append(ContainerPort(number, protocol, port_name or None))
    return Pod(
        namespace=namespace,
        name=name,
        labels=labels,
        ips=_pod_ips(where, status),
        ports=tuple(ports),
        host_network=bool(spec.get("hostNetwork", False)),
    )


def build_cluster(
    namespaces: Iterable[Mapping[str, Any]] = (),
    pods: Iterable[Mapping[str, Any]] = (),
    policies: Iterable[Mapping[str, Any]] = (),
) -> Cluster:
    """A `Cluster` from lists of Namespace, Pod and NetworkPolicy dicts (items need no `kind`)."""
    parsed_namespaces = {ns.name: ns for ns in (parse_namespace(obj) for obj in namespaces)}
    return Cluster(
        namespaces=parsed_namespaces,
        pods=tuple(parse_pod(obj) for obj in pods),
        policies=tuple(parse_network_policy(obj) for obj in policies),
    )


def cluster_from_objects(objects: Iterable[Mapping[str, Any]]) -> Cluster:
    """A `Cluster` from a mixed list of objects, sorted by their `kind`; other kinds are ignored."""
    by_kind: dict[str, list[Mapping[str, Any]]] = {kind: [] for kind in KINDS}
    for obj in objects:
        kind = obj.get("kind")
        if isinstance(kind, str) and kind in by_kind:
            by_kind[kind].append(obj)
    return build_cluster(by_kind[KIND_NAMESPACE], by_kind[KIND_POD], by_kind[KIND_NETWORK_POLICY])
