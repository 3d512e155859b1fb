"""NetworkPolicy evaluation as plain frozen data: the cluster it reads and the decision it returns.

The input side (`Namespace`, `Pod`, `NetworkPolicy` and their parts, gathered in a `Cluster`) is built
once from Kubernetes objects by `bot.policy.objects`; the output side (`PolicyDecision` with one
`DirectionDecision` per direction) is what `bot.policy.evaluate.evaluate` returns. Nothing here
does I/O or knows where the objects came from.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
"""A pod or external IP address."""

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
"""A CIDR of an ipBlock."""

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
"""The label the API server puts on every namespace, holding the namespace's name."""


class Protocol(StrEnum):
    """Transport protocols a NetworkPolicy port can name."""

    TCP = "TCP"
    UDP = "UDP"
    SCTP = "SCTP"


class Direction(StrEnum):
    """The two sides of a flow a NetworkPolicy can isolate; values are the `policyTypes` spellings."""

    INGRESS = "Ingress"
    EGRESS = "Egress"


class SelectorOperator(StrEnum):
    """Operators of a label selector's `matchExpressions`."""

    IN = "In"
    NOT_IN = "NotIn"
    EXISTS = "Exists"
    DOES_NOT_EXIST = "DoesNotExist"


@dataclass(frozen=True)
class SelectorRequirement:
    """One `matchExpressions` entry: `key operator values`."""

    key: str
    operator: SelectorOperator
    values: frozenset[str] = frozenset()


@dataclass(frozen=True)
class LabelSelector:
    """A Kubernetes label selector; all `match_labels` and all `match_expressions` must hold.

    The empty selector (`{}`) matches every object.
    """

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[SelectorRequirement, ...] = ()

    @property
    def is_empty(self) -> bool:
        """True for `{}`, the selector that matches everything."""
        return not self.match_labels and not self.match_expressions

    def describe(self) -> str:
        """The selector in kubectl's `-l` syntax, `{}` when empty (e.g. `app=api,tier in (a,b)`)."""
        if self.is_empty:
            return "{}"
        parts = [f"{key}={value}" for key, value in self.match_labels]
        for requirement in self.match_expressions:
            values = ",".join(sorted(requirement.values))
            match requirement.operator:
                case SelectorOperator.IN:
                    parts.append(f"{requirement.key} in ({values})")
                case SelectorOperator.NOT_IN:
                    parts.append(f"{requirement.key} notin ({values})")
                case SelectorOperator.EXISTS:
                    parts.append(requirement.key)
                case SelectorOperator.DOES_NOT_EXIST:
                    parts.append(f"!{requirement.key}")
        return ",".join(parts)


@dataclass(frozen=True)
class IPBlock:
    """An `ipBlock` peer: addresses inside `cidr` and outside every `except_` CIDR."""

    cidr: IPNetwork
    except_: tuple[IPNetwork, ...] = ()


@dataclass(frozen=True)
class Peer:
    """One entry of a rule's `from`/`to` list.

    Either `ip_block` alone, or selectors: `pod_selector` alone (pods of the policy's namespace),
    `namespace_selector` alone (every pod in matching namespaces) or both (matching pods in
    matching namespaces).
    """

    pod_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    ip_block: IPBlock | None = None


@dataclass(frozen=True)
class PolicyPort:
    """One entry of a rule's `ports` list.

    `port` is a number, a container port name, or None (every port of `protocol`); `end_port`
    makes a numeric `port` the start of an inclusive range.
    """

    protocol: Protocol = Protocol.TCP
    port: int | str | None = None
    end_port: int | None = None

    def describe(self) -> str:
        """The port as people write it: `TCP/8443`, `TCP/8000-8080`, `TCP/https`, `UDP/any`."""
        if self.port is None:
            return f"{self.protocol}/any"
        if self.end_port is not None:
            return f"{self.protocol}/{self.port}-{self.end_port}"
        return f"{self.protocol}/{self.port}"


@dataclass(frozen=True)
class PolicyRule:
    """One ingress or egress rule; an empty `peers` means every peer, an empty `ports` every port."""

    peers: tuple[Peer, ...] = ()
    ports: tuple[PolicyPort, ...] = ()


@dataclass(frozen=True)
class PolicyRef:
    """A NetworkPolicy's identity, printed as `namespace/name`."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class NetworkPolicy:
    """A `networking.k8s.io/v1` NetworkPolicy with its `policyTypes` defaults already applied."""

    namespace: str
    name: str
    pod_selector: LabelSelector
    policy_types: frozenset[Direction]
    ingress: tuple[PolicyRule, ...] = ()
    egress: tuple[PolicyRule, ...] = ()

    @property
    def ref(self) -> PolicyRef:
        """This policy's `namespace/name`."""
        return PolicyRef(self.namespace, self.name)

    def rules(self, direction: Direction) -> tuple[PolicyRule, ...]:
        """The rules of one direction (`ingress` or `egress`)."""
        return self.ingress if direction is Direction.INGRESS else self.egress


@dataclass(frozen=True)
class Namespace:
    """A namespace and its labels, including the implicit `kubernetes.io/metadata.name`."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class ContainerPort:
    """A port a pod's container declares (`containers[].ports[]`)."""

    port: int
    protocol: Protocol = Protocol.TCP
    name: str | None = None


@dataclass(frozen=True)
class PodRef:
    """A pod's identity, printed as `namespace/name`."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Pod:
    """A pod as NetworkPolicy sees it: where it lives, its labels, its IPs and declared ports."""

    namespace: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    ips: tuple[IPAddress, ...] = ()
    ports: tuple[ContainerPort, ...] = ()
    host_network: bool = False

    @property
    def ref(self) -> PodRef:
        """This pod's `namespace/name`."""
        return PodRef(self.namespace, self.name)

    @property
    def ip(self) -> IPAddress | None:
        """The primary pod IP (`status.podIP`), None while the pod has none."""
        return self.ips[0] if self.ips else None

    def named_port(self, name: str, protocol: Protocol) -> tuple[int, ...]:
        """The container port numbers declared under `name` with `protocol` (usually zero or one)."""
        return tuple(p.port for p in self.ports if p.name == name and p.protocol is protocol)


@dataclass(frozen=True)
class Cluster:
    """The namespaces, pods and NetworkPolicies a decision is computed from."""

    namespaces: Mapping[str, Namespace] = field(default_factory=dict, hash=False)
    pods: tuple[Pod, ...] = ()
    policies: tuple[NetworkPolicy, ...] = ()

    def namespace(self, name: str) -> Namespace:
        """The namespace called `name`; one that was not supplied carries only its implicit label."""
        known = self.namespaces.get(name)
        return known if known is not None else Namespace(name, {NAMESPACE_NAME_LABEL: name})

    def pod(self, namespace: str, name: str) -> Pod | None:
        """The pod `namespace/name`, None when there is no such pod."""
        for pod in self.pods:
            if pod.namespace == namespace and pod.name == name:
                return pod
        return None

    def pod_by_ip(self, ip: IPAddress) -> Pod | None:
        """The (non-hostNetwork) pod that owns `ip`, None when no pod does."""
        for pod in self.pods:
            if not pod.host_network and ip in pod.ips:
                return pod
        return None


@dataclass(frozen=True)
class Flow:
    """The connection being judged: from a pod or an IP, to a pod or an IP, on a destination port."""

    source: Pod | IPAddress
    destination: Pod | IPAddress
    port: int
    protocol: Protocol

    @property
    def port_text(self) -> str:
        """`TCP/8443`."""
        return f"{self.protocol}/{self.port}"


def endpoint_text(endpoint: Pod | IPAddress) -> str:
    """A flow endpoint as people read it: `pod shop/api-1` or `IP 203.0.113.9`."""
    if isinstance(endpoint, Pod):
        return f"pod {endpoint.namespace}/{endpoint.name}"
    return f"IP {endpoint}"


@dataclass(frozen=True)
class RuleRef:
    """One rule of one policy: `rule_index` counts from 0 within the direction's rule list."""

    policy: PolicyRef
    direction: Direction
    rule_index: int

    def __str__(self) -> str:
        return f"{self.policy} {self.direction.lower()} rule {self.rule_index}"


@dataclass(frozen=True)
class RuleMatch:
    """How one rule of a selecting policy judged the flow: did its peers match, did its ports."""

    rule: RuleRef
    peer_matches: bool
    port_matches: bool

    @property
    def admits(self) -> bool:
        """The rule admits the flow: both its peers and its ports match."""
        return self.peer_matches and self.port_matches


@dataclass(frozen=True)
class IPBlockMiss:
    """An ipBlock of a rule whose CIDR holds the other end's address but whose `except` cuts it out:
    the answer to "which ipBlock excludes it" when an egress to the outside world is denied."""

    rule: RuleRef
    cidr: IPNetwork
    excluded: IPNetwork
    ip: IPAddress

    def __str__(self) -> str:
        return f"{self.rule}'s ipBlock {self.cidr} except {self.excluded} excludes {self.ip}"


@dataclass(frozen=True)
class DirectionDecision:
    """The verdict of one direction: egress is judged on the source pod, ingress on the destination.

    `evaluated` is False when that side is not a pod (an external IP): nothing there is subject to
    NetworkPolicy, so the direction allows. `isolated` says whether any policy selects the pod for
    this direction; `selecting_policies` are those policies, `allowing_rules` the rules that admit
    the flow, `rule_matches` every rule of the selecting policies with what matched, and `reason`
    one sentence for people.
    """

    direction: Direction
    pod: PodRef | None
    evaluated: bool
    isolated: bool
    allowed: bool
    selecting_policies: tuple[PolicyRef, ...]
    allowing_rules: tuple[RuleRef, ...]
    rule_matches: tuple[RuleMatch, ...]
    reason: str
    excluded_by: tuple[IPBlockMiss, ...] = ()
    """When denied: the ipBlocks whose CIDR holds the peer's address but whose `except` excludes it."""


@dataclass(frozen=True)
class PolicyDecision:
    """Whether NetworkPolicy lets `flow` through: the source's egress AND the destination's ingress."""

    flow: Flow
    egress: DirectionDecision
    ingress: DirectionDecision

    @property
    def allowed(self) -> bool:
        """Both directions allow the flow."""
        return self.egress.allowed and self.ingress.allowed

    @property
    def denying(self) -> tuple[DirectionDecision, ...]:
        """The directions that deny, egress first (empty when the flow is allowed)."""
        return tuple(d for d in (self.egress, self.ingress) if not d.allowed)


def _direction_as_dict(decision: DirectionDecision) -> dict[str, object]:
    return {
        "evaluated": decision.evaluated,
        "pod": None if decision.pod is None else str(decision.pod),
        "isolated": decision.isolated,
        "allowed": decision.allowed,
        "policies": [str(policy) for policy in decision.selecting_policies],
        "allowing_rules": [{"policy": str(rule.policy), "rule": rule.rule_index} for rule in decision.allowing_rules],
        "rules": [
            {
                "policy": str(match.rule.policy),
                "rule": match.rule.rule_index,
                "peer_matches": match.peer_matches,
                "port_matches": match.port_matches,
            }
            for match in decision.rule_matches
        ],
        "reason": decision.reason,
        "excluded_by": [
            {
                "policy": str(miss.rule.policy),
                "rule": miss.rule.rule_index,
                "cidr": str(miss.cidr),
                "except": str(miss.excluded),
                "ip": str(miss.ip),
            }
            for miss in decision.excluded_by
        ],
    }


def decision_as_dict(decision: PolicyDecision) -> dict[str, object]:
    """The decision as JSON-compatible data (the `kubereach policy check --json` shape, also for Evidence).

    `{"allowed", "source", "destination", "port", "protocol", "egress": {...}, "ingress": {...}}`
    where each direction is `{"evaluated", "pod", "isolated", "allowed", "policies",
    "allowing_rules": [{"policy", "rule"}], "rules": [{"policy", "rule", "peer_matches",
    "port_matches"}], "reason", "excluded_by": [{"policy", "rule", "cidr", "except", "ip"}]}`;
    endpoints are `namespace/name` for pods, the address for IPs.
    """

    def endpoint(value: Pod | IPAddress) -> str:
        return str(value.ref) if isinstance(value, Pod) else str(value)

    return {
        "allowed": decision.allowed,
        "source": endpoint(decision.flow.source),
        "destination": endpoint(decision.flow.destination),
        "port": decision.flow.port,
        "protocol": str(decision.flow.protocol),
        "egress": _direction_as_dict(decision.egress),
        "ingress": _direction_as_dict(decision.ingress),
    }
