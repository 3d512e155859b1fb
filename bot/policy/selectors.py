"""Matching: label selectors against labels, ipBlocks against addresses, policy ports against a flow."""

from __future__ import annotations

from collections.abc import Mapping

from bot.policy.models import (
    IPAddress,
    IPBlock,
    LabelSelector,
    Pod,
    PolicyPort,
    Protocol,
    SelectorOperator,
    SelectorRequirement,
)


def requirement_matches(requirement: SelectorRequirement, labels: Mapping[str, str]) -> bool:
    """One `matchExpressions` entry against a label set.

    `NotIn` holds when the key is absent, as in Kubernetes; `In` needs the key with a listed value.
    """
    present = requirement.key in labels
    match requirement.operator:
        case SelectorOperator.IN:
            return present and labels[requirement.key] in requirement.values
        case SelectorOperator.NOT_IN:
            return not present or labels[requirement.key] not in requirement.values
        case SelectorOperator.EXISTS:
            return present
        case SelectorOperator.DOES_NOT_EXIST:
            return not present
    raise AssertionError(f"unhandled selector operator {requirement.operator}")  # pragma: no cover


def selector_matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """Every `matchLabels` pair and every `matchExpressions` entry holds; `{}` matches anything."""
    if any(labels.get(key) != value for key, value in selector.match_labels):
        return False
    return all(requirement_matches(requirement, labels) for requirement in selector.match_expressions)


def ip_block_contains(block: IPBlock, ip: IPAddress) -> bool:
    """`ip` lies in the block's CIDR and in none of its `except` CIDRs (other IP families never match)."""
    if ip.version != block.cidr.version or ip not in block.cidr:
        return False
    return not any(ip.version == excluded.version and ip in excluded for excluded in block.except_)


def policy_port_matches(policy_port: PolicyPort, port: int, protocol: Protocol, destination: Pod | None) -> bool:
    """A rule's port entry admits destination `port`/`protocol`.

    A named port is looked up on the destination pod (for ingress and egress alike) among its
    container ports of the same protocol; a destination that is not a pod has no named ports.
    """
    if policy_port.protocol is not protocol:
        return False
    if policy_port.port is None:
        return True
    if isinstance(policy_port.port, str):
        return destination is not None and port in destination.named_port(policy_port.port, protocol)
    last = policy_port.end_port if policy_port.end_port is not None else policy_port.port
    return policy_port.port <= port <= last
