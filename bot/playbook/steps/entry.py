"""Where traffic from outside the cluster comes in (`Case.entry`): the receiving nodes, the address a
client connects to on each, and the probes that connect as it would. Shared by the ingress step and
the probes (pure)."""

from __future__ import annotations

from bot.playbook.case import Case, EndpointRef, routed_endpoints
from bot.playbook.steps.base import At
from bot.playbook.steps.observe import ProbeAsk


def applies(at: At) -> bool:
    """An entry asked about from outside the cluster, or a NodePort asked about from a node (which
    reaches another node's NodePort as an outside client does). A pod's traffic, and a node's to an
    address its own kube-proxy takes, are short-circuited to the service's cluster-wide endpoints."""
    entry, case = at.case.entry, at.case
    if entry is None or at.src is None:
        return False
    return case.source_kind == "external" or (case.source_kind == "node" and entry.kind == "nodeport")


def own_traffic(at: At, node: str) -> bool:
    """`node` is the source's own node: its packets to the entry leave from there, so kube-proxy there
    treats them as local traffic (`--src-type LOCAL` / `fib saddr type local`), not as a client's."""
    return at.src is not None and at.src.node == node


def receiving_nodes(case: Case) -> tuple[str, ...]:
    """The nodes the entry's traffic arrives on: those the question named, else every node with an
    agent (an external or load balancer IP is routed to all of them)."""
    if case.entry is None:
        return ()
    if case.entry.nodes:
        return case.entry.nodes
    return tuple(sorted(case.agents_known or frozenset(case.nodes)))


def entry_address(case: Case, node: str) -> str | None:
    """The address a client connects to for `node`: its own IP for a NodePort, else the entry's."""
    if case.entry is None:
        return None
    if case.entry.kind == "nodeport":
        ref = case.nodes.get(node)
        return ref.ip if ref is not None and ref.ip else None
    return case.entry.address


def probe_label(case: Case, node: str) -> str:
    """The trail's label of the probe that tells about `node`: one per node for a NodePort; one for
    an address (it is not aimed at any one node)."""
    return f"entry {node}" if case.entry is not None and case.entry.kind == "nodeport" else "entry"


def entry_probes(at: At) -> list[tuple[str, ProbeAsk]]:
    """(label, probe): from the vantage node's own namespace to each receiving node's IP and NodePort,
    or to the entry's address and port, as a client outside the cluster connects."""
    case, src = at.case, at.source
    if not applies(at) or case.entry is None or src.node is None:
        return []
    probes: dict[str, ProbeAsk] = {}
    for node in receiving_nodes(case):
        address = entry_address(case, node)
        if address is not None:
            probes.setdefault(probe_label(case, node), ProbeAsk(src.node, "", address, case.entry.port, case.protocol))
    return list(probes.items())


def reached_endpoints(case: Case, node: str | None = None) -> list[EndpointRef]:
    """The endpoints external traffic arriving on `node` goes to: with `externalTrafficPolicy: Local`
    only the node's own, else all (for every receiving node when `node` is None)."""
    routed = routed_endpoints(case.endpoints)
    svc = case.service
    if svc is None or svc.external_traffic_policy != "Local":
        return routed
    nodes = {node} if node is not None else set(receiving_nodes(case))
    return [e for e in routed if e.node in nodes]
