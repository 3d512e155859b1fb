"""Which addresses a source's traffic goes to when the target is outside the cluster.

A target is outside when the question named an external name or URL (`target_kind` "external") or
an address that is no pod, service or node of the cluster ("ip" outside every node's pod CIDR and
node address). Its addresses are `Case.target_ip` when the bot knew it, else what the source's own
resolver gave (`Trail.resolved`, set by the DNS step): the steps after DNS read them here, so that
an address only DNS gave is routed, NAT-checked, policy-checked and probed like a literal one.
"""

from __future__ import annotations

import ipaddress

from bot.playbook.case import Case
from bot.playbook.steps.base import At


def _in_cluster(case: Case, address: str) -> bool:
    """An address of a node, or inside a node's pod CIDR (an address the cluster routes itself)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for node in case.nodes.values():
        if node.ip == address:
            return True
        if node.pod_cidr:
            try:
                if ip in ipaddress.ip_network(node.pod_cidr, strict=False):
                    return True
            except ValueError:
                continue
    return False


def is_outside(case: Case) -> bool:
    """The target lies outside the cluster: the packet leaves through the source node's route out."""
    if case.target_kind == "external":
        return True
    return case.target_kind == "ip" and case.target_ip is not None and not _in_cluster(case, case.target_ip)


def outside_addresses(at: At) -> tuple[str, ...]:
    """The outside addresses the source sends to: the target IP, else what its resolver gave."""
    case = at.case
    if not is_outside(case):
        return ()
    if case.target_ip:
        return (case.target_ip,)
    return at.trail.resolved


def outside_target(at: At) -> str | None:
    """The one outside address the walk probes and follows (the first the resolver gave)."""
    found = outside_addresses(at)
    return found[0] if found else None
