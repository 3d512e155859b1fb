"""Judge one flow against the cluster's NetworkPolicies, with the Kubernetes semantics.

A pod is isolated for a direction when some policy in its namespace selects it and lists that
direction in its `policyTypes` (hostNetwork pods never are: the API leaves them undefined and
network plugins skip them); an isolated pod admits a flow only if some rule of some selecting
policy (their union) matches both the peer and the port. A flow passes when the source's egress and
the destination's ingress both allow it. Pure: no I/O, the cluster is passed in.
"""

from __future__ import annotations

import ipaddress

from bot.errors import BadInput
from bot.policy.models import (
    Cluster,
    Direction,
    DirectionDecision,
    Flow,
    IPAddress,
    IPBlockMiss,
    NetworkPolicy,
    Peer,
    Pod,
    PolicyDecision,
    PolicyRule,
    Protocol,
    RuleMatch,
    RuleRef,
    endpoint_text,
)
from bot.policy.selectors import ip_block_contains, policy_port_matches, selector_matches

Endpoint = Pod | IPAddress
"""One end of a flow: a pod of the cluster or a bare IP (outside the cluster, or not known as a pod)."""


def selecting_policies(cluster: Cluster, pod: Pod, direction: Direction) -> tuple[NetworkPolicy, ...]:
    """The policies that isolate `pod` for `direction`: same namespace, podSelector matches, type listed.

    Sorted by name so that decisions and messages are stable.
    """
    chosen = [
        policy
        for policy in cluster.policies
        if policy.namespace == pod.namespace
        and direction in policy.policy_types
        and selector_matches(policy.pod_selector, pod.labels)
    ]
    return tuple(sorted(chosen, key=lambda policy: policy.name))


def peer_matches(cluster: Cluster, peer: Peer, policy_namespace: str, endpoint: Endpoint) -> bool:
    """A `from`/`to` entry of a policy in `policy_namespace` matches the other end of the flow.

    ipBlocks match by address, pod IPs included; selectors only match pods: podSelector alone
    within the policy's namespace, namespaceSelector alone any pod of matching namespaces, both
    together pods matching both. A hostNetwork pod's traffic carries its node's IP, so only
    ipBlocks can match it, as with the common network plugins.
    """
    if peer.ip_block is not None:
        ips = endpoint.ips if isinstance(endpoint, Pod) else (endpoint,)
        return any(ip_block_contains(peer.ip_block, ip) for ip in ips)
    if not isinstance(endpoint, Pod) or endpoint.host_network:
        return False
    if peer.namespace_selector is None:
        if endpoint.namespace != policy_namespace:
            return False
    elif not selector_matches(peer.namespace_selector, cluster.namespace(endpoint.namespace).labels):
        return False
    return peer.pod_selector is None or selector_matches(peer.pod_selector, endpoint.labels)


def _rule_match(
    cluster: Cluster, flow: Flow, *, policy: NetworkPolicy, direction: Direction, index: int, rule: PolicyRule
) -> RuleMatch:
    other = flow.source if direction is Direction.INGRESS else flow.destination
    destination = flow.destination if isinstance(flow.destination, Pod) else None
    peer_ok = not rule.peers or any(peer_matches(cluster, peer, policy.namespace, other) for peer in rule.peers)
    port_ok = not rule.ports or any(
        policy_port_matches(policy_port, flow.port, flow.protocol, destination) for policy_port in rule.ports
    )
    return RuleMatch(RuleRef(policy.ref, direction, index), peer_ok, port_ok)


def _near_miss(matches: tuple[RuleMatch, ...], direction: Direction, other_text: str, port_text: str) -> str:
    if not matches:
        return "its policies have no rules for this direction, so they deny everything"
    peer_only = [m for m in matches if m.peer_matches and not m.port_matches]
    if peer_only:
        return f"{peer_only[0].rule} admits {other_text} but not on {port_text}"
    port_only = [m for m in matches if m.port_matches and not m.peer_matches]
    if port_only:
        preposition = "from" if direction is Direction.INGRESS else "to"
        return f"{port_only[0].rule} admits {port_text} but not {preposition} {other_text}"
    return f"none of its {len(matches)} rule(s) matches the peer or the port"


def ip_block_misses(policies: tuple[NetworkPolicy, ...], direction: Direction, other: Endpoint) -> tuple[IPBlockMiss, ...]:
    """The ipBlocks of these policies' rules whose CIDR holds `other`'s address but whose `except`
    excludes it: what a person reads "which ipBlock excludes it" from."""
    ips = other.ips if isinstance(other, Pod) else (other,)
    misses = []
    for policy in policies:
        for index, rule in enumerate(policy.rules(direction)):
            for peer in rule.peers:
                block = peer.ip_block
                if block is None:
                    continue
                for ip in ips:
                    if ip.version != block.cidr.version or ip not in block.cidr:
                        continue
                    cut = next((e for e in block.except_ if e.version == ip.version and ip in e), None)
                    if cut is not None:
                        misses.append(IPBlockMiss(RuleRef(policy.ref, direction, index), block.cidr, cut, ip))
    return tuple(dict.fromkeys(misses))


def _judge(cluster: Cluster, flow: Flow, direction: Direction) -> DirectionDecision:
    pod = flow.source if direction is Direction.EGRESS else flow.destination
    other = flow.destination if direction is Direction.EGRESS else flow.source
    word = direction.lower()
    if not isinstance(pod, Pod):
        return DirectionDecision(
            direction=direction,
            pod=None,
            evaluated=False,
            isolated=False,
            allowed=True,
            selecting_policies=(),
            allowing_rules=(),
            rule_matches=(),
            reason=f"IP {pod} is not a pod of the cluster, so no NetworkPolicy judges its {word}",
        )
    if pod.host_network:
        return DirectionDecision(
            direction=direction,
            pod=pod.ref,
            evaluated=True,
            isolated=False,
            allowed=True,
            selecting_policies=(),
            allowing_rules=(),
            rule_matches=(),
            reason=(
                f"pod {pod.ref} uses the host network, which NetworkPolicy does not isolate "
                "(the API leaves it undefined; network plugins skip such pods)"
            ),
        )
    policies = selecting_policies(cluster, pod, direction)
    if not policies:
        return DirectionDecision(
            direction=direction,
            pod=pod.ref,
            evaluated=True,
            isolated=False,
            allowed=True,
            selecting_policies=(),
            allowing_rules=(),
            rule_matches=(),
            reason=(
                f"pod {pod.ref} is not isolated for {word}: no NetworkPolicy in {pod.namespace} "
                f"selects it with policyType {direction}"
            ),
        )
    matches = tuple(
        _rule_match(cluster, flow, policy=policy, direction=direction, index=index, rule=rule)
        for policy in policies
        for index, rule in enumerate(policy.rules(direction))
    )
    allowing = tuple(m.rule for m in matches if m.admits)
    isolated_by = ", ".join(str(policy.ref) for policy in policies)
    other_text = endpoint_text(other)
    if allowing:
        admitted_by = ", ".join(str(rule) for rule in allowing)
        verb = "admits" if len(allowing) == 1 else "admit"
        reason = f"pod {pod.ref} is isolated for {word} by {isolated_by}; {admitted_by} {verb} {other_text} on {flow.port_text}"
    misses = () if allowing else ip_block_misses(policies, direction, other)
    if not allowing:
        near = "; ".join(str(miss) for miss in misses) or _near_miss(matches, direction, other_text, flow.port_text)
        reason = (
            f"pod {pod.ref} is isolated for {word} by {isolated_by}; no rule admits {other_text} on {flow.port_text} ({near})"
        )
    return DirectionDecision(
        direction=direction,
        pod=pod.ref,
        evaluated=True,
        isolated=True,
        allowed=bool(allowing),
        selecting_policies=tuple(policy.ref for policy in policies),
        allowing_rules=allowing,
        rule_matches=matches,
        reason=reason,
        excluded_by=misses,
    )


def _endpoint(value: Pod | IPAddress | str, role: str) -> Endpoint:
    if isinstance(value, Pod | ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise BadInput(
            f"the {role} {value!r} is neither a pod nor an IP address",
            hint="pass a Pod from the cluster or an IP literal such as 10.244.1.5",
        ) from None


def evaluate(
    cluster: Cluster,
    source: Pod | IPAddress | str,
    destination: Pod | IPAddress | str,
    port: int,
    protocol: Protocol | str = Protocol.TCP,
) -> PolicyDecision:
    """Whether the cluster's NetworkPolicies let `source` open `protocol`/`port` to `destination`.

    `port` is the port on the destination as the packet arrives there (for a Service, its
    targetPort after NAT). Either end may be an IP (`IPv4Address`/`IPv6Address` or a string) instead
    of a pod: an IP source is judged on ingress only, an IP destination (cluster-external, ipBlock
    targets) on egress only. An IP is taken as given, even when a pod owns it; use
    `Cluster.pod_by_ip` first to judge it as that pod. Raises `BadInput` for a port outside
    1-65535, an unknown protocol, or two IP ends.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise BadInput(f"port {port!r} is not a port number", hint="use a number from 1 to 65535")
    try:
        proto = Protocol(str(protocol).upper())
    except ValueError:
        raise BadInput(f"unknown protocol {protocol!r}", hint="use TCP, UDP or SCTP") from None
    src = _endpoint(source, "source")
    dst = _endpoint(destination, "destination")
    if not isinstance(src, Pod) and not isinstance(dst, Pod):
        raise BadInput(
            f"neither {src} nor {dst} is a pod, so no NetworkPolicy applies",
            hint="name a pod at one end at least",
        )
    flow = Flow(src, dst, port, proto)
    return PolicyDecision(flow, _judge(cluster, flow, Direction.EGRESS), _judge(cluster, flow, Direction.INGRESS))


def explain(decision: PolicyDecision) -> str:
    """One or two sentences for people: allowed, or which direction denies and why."""
    flow = decision.flow
    head = f"{endpoint_text(flow.source)} → {endpoint_text(flow.destination)} on {flow.port_text}"
    if decision.allowed:
        egress, ingress = decision.egress.reason, decision.ingress.reason
        return f"NetworkPolicy allows {head}. Egress: {egress}. Ingress: {ingress}."
    denying = decision.denying
    sides = " and ".join(d.direction.lower() for d in denying)
    reasons = " ".join(f"{d.direction}: {d.reason}." for d in denying)
    return f"NetworkPolicy denies {head} at {sides}. {reasons}"
