"""The underlay hop: does the source node route the endpoint's pod CIDR to the endpoint's node.

For an overlay (VXLAN) route: is the device up, are its neighbour and FDB entries there, and do
they point at the right node. For a plain route: does its gateway, or its device, lead there.
"""

from __future__ import annotations

from bot.playbook.case import Case, EndpointRef
from bot.playbook.models import Evidence, Hop
from bot.playbook.models import VerdictCode as C
from bot.playbook.observations import NodeFacts, OverlayHop, RouteInfo
from bot.playbook.remedies import remediation
from bot.playbook.steps.base import At, Candidate, Seen, Unchecked, unchecked
from bot.playbook.steps.evidence import ev, overlay_hop_data, route_data
from bot.playbook.steps.observe import RouteAsk

CNI_DEVICE_PREFIXES = ("cali", "cni", "vxlan", "flannel")


def node_ip(case: Case, node: str | None) -> str:
    ref = case.nodes.get(node or "")
    return ref.ip if ref else "NODE_IP"


def cidr_of(case: Case, node: str | None) -> str:
    ref = case.nodes.get(node or "")
    return ref.pod_cidr if ref and ref.pod_cidr else "POD_CIDR"


def forward_route_ask(at: At, e: EndpointRef) -> RouteAsk:
    """The source node's route lookup toward a remote endpoint."""
    return RouteAsk(at.source.node or "", e.ip)


def arriving_device(at: At, seen: Seen, e: EndpointRef) -> str:
    """The device traffic to `e` arrives on at its node: the overlay device, "eth0", or "" (unknown)."""
    lookup = seen[forward_route_ask(at, e)]
    if lookup.unreachable or lookup.value is None:
        return ""
    return lookup.value.overlay.device if lookup.value.overlay else "eth0"


def forward_route(
    at: At, seen: Seen, e: EndpointRef, facts: NodeFacts | None, evidence: list[Evidence], missed: list[Unchecked]
) -> list[Candidate]:
    """The source node's route to a remote endpoint: its causes."""
    src = at.source
    lookup = seen[forward_route_ask(at, e)]
    if lookup.unreachable:
        missed += unchecked(lookup, "the route on the source node")
        return []
    if lookup.value is None:
        return []
    route = lookup.value.route
    overlay = lookup.value.overlay
    evidence.append(
        ev(
            "route-lookup",
            f"{src.node}: route to {e.ip}: "
            + (
                f"{route.type} {route.destination} via {route.gateway or '-'} dev {route.device or '-'}"
                if route
                else lookup.value.error or "none"
            ),
            src.node,
            route=route_data(route) if route else None,
            error=lookup.value.error,
            overlay=overlay_hop_data(overlay) if overlay else None,
        )
    )
    return route_candidates(at, e, route, overlay, lookup.value.error, facts)


def route_candidates(
    at: At, e: EndpointRef, route: RouteInfo | None, overlay: OverlayHop | None, error: str, facts: NodeFacts | None
) -> list[Candidate]:
    """What is wrong with the source node's route to `e` (empty: nothing)."""
    if route is None or not route.usable:
        return _no_route(at, e, route, error, facts)
    if overlay is not None:
        return _overlay_candidates(at, e, overlay)
    return _direct_route_candidates(at, e, route)


def _no_route(at: At, e: EndpointRef, route: RouteInfo | None, error: str, facts: NodeFacts | None) -> list[Candidate]:
    node = at.source.node or ""
    down = [o.link.name for o in (facts.overlays if facts else ()) if not o.link.up]
    if down:
        return [
            Candidate(
                C.OVERLAY_DEVICE_DOWN,
                Hop.UNDERLAY,
                f"{down[0]} on {node} is down: it has no route to {e.node}'s pods",
                node,
                remediation(C.OVERLAY_DEVICE_DOWN, node=node, device=down[0]),
            )
        ]
    why = route.type if route is not None and route.type not in ("none", "") else (error or "no route")
    return [
        Candidate(
            C.NODE_ROUTE_MISSING,
            Hop.UNDERLAY,
            f"{node} has no route to {e.ip} ({e.node}'s pod CIDR {cidr_of(at.case, e.node)}): {why}",
            node,
            remediation(C.NODE_ROUTE_MISSING, **_fix(at, e)),
        )
    ]


def _fix(at: At, e: EndpointRef) -> dict[str, str]:
    return {"node": at.source.node or "", "cidr": cidr_of(at.case, e.node), "via": node_ip(at.case, e.node), "device": "eth0"}


def _overlay_candidates(at: At, e: EndpointRef, overlay: OverlayHop) -> list[Candidate]:
    return overlay_candidates(at.case, at.source.node or "", e.node, overlay)


def overlay_candidates(
    case: Case, node: str, peer: str | None, overlay: OverlayHop, replies_to: str | None = None
) -> list[Candidate]:
    """What is wrong with `node`'s overlay device for traffic to `peer`'s pods (empty: nothing).

    The same checks serve both directions: `replies_to` names the source whose replies take this
    route back (the destination node encapsulating to the source's node), and the summary says so.
    """
    peer_ip = node_ip(case, peer)
    back = f" (the replies to {replies_to} go back through it)" if replies_to else ""
    if not overlay.device_up:
        return [
            Candidate(
                C.OVERLAY_DEVICE_DOWN,
                Hop.UNDERLAY,
                f"{overlay.device} on {node} is down{back}",
                node,
                remediation(C.OVERLAY_DEVICE_DOWN, node=node, device=overlay.device),
            )
        ]
    if not overlay.neighbour_mac or not overlay.fdb_remote:
        missing = "neighbour entry" if not overlay.neighbour_mac else "FDB entry"
        return [
            Candidate(
                C.OVERLAY_DEVICE_DOWN,
                Hop.UNDERLAY,
                f"{overlay.device} on {node} has no {missing} for next hop {overlay.next_hop} ({peer}): it cannot encapsulate to {peer}{back}",
                node,
                remediation(C.OVERLAY_DEVICE_DOWN, node=node, device=overlay.device, mac=overlay.neighbour_mac, remote=peer_ip),
            )
        ]
    if peer_ip not in ("NODE_IP", overlay.fdb_remote):
        return [
            Candidate(
                C.NODE_ROUTE_MISSING,
                Hop.UNDERLAY,
                f"{node} tunnels traffic for {peer}'s pods to {overlay.fdb_remote}, not to {peer} ({peer_ip}){back}",
                node,
                remediation(C.NODE_ROUTE_MISSING, node=node, cidr=cidr_of(case, peer), via=peer_ip, device="eth0", overlay="1"),
            )
        ]
    return []


def _direct_route_candidates(at: At, e: EndpointRef, route: RouteInfo) -> list[Candidate]:
    return direct_route_candidates(at.case, at.source.node or "", e.node, e.ip, route)


def direct_route_candidates(
    case: Case, node: str, peer: str | None, address: str, route: RouteInfo, replies_to: str | None = None
) -> list[Candidate]:
    """What is wrong with `node`'s plain route to `address`, a pod on `peer` (empty: nothing).

    Both directions: with `replies_to`, `address` is the source and the route is the way back.
    """
    peer_ip = node_ip(case, peer)
    if address == peer_ip:
        return []  # a host-network end: the node network's own route reaches it, no pod CIDR involved
    back = f": the replies to {replies_to} cannot return" if replies_to else ""
    fix = remediation(C.NODE_ROUTE_MISSING, node=node, cidr=cidr_of(case, peer), via=peer_ip, device="eth0")
    if route.gateway and peer_ip not in ("NODE_IP", route.gateway):
        return [
            Candidate(
                C.NODE_ROUTE_MISSING,
                Hop.UNDERLAY,
                f"{node} routes {address} via {route.gateway}, which is not {peer} ({peer_ip}): the route points to the wrong place{back}",
                node,
                fix,
            )
        ]
    if (
        not route.gateway
        and route.type == "unicast"
        and peer_ip != "NODE_IP"
        and not route.device.startswith(CNI_DEVICE_PREFIXES)
    ):
        return [
            Candidate(
                C.NODE_ROUTE_MISSING,
                Hop.UNDERLAY,
                f"{node} sends {address} straight out of {route.device} instead of to {peer} ({peer_ip}){back}",
                node,
                fix,
            )
        ]
    return []
