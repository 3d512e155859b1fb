"""The destination node hop: its own state, the overlay device packets arrive on, its filter table,
its route back to the source and strict reverse-path filtering on the arriving device.

`filter_checks` is used for the source node's FORWARD chain too (same observation, the source hop).
"""

from __future__ import annotations

from bot.playbook.case import EndpointRef
from bot.playbook.models import Evidence, Hop
from bot.playbook.models import VerdictCode as C
from bot.playbook.observations import CallFailure, FilterHit, NodeFacts, RouteInfo
from bot.playbook.remedies import remediation
from bot.playbook.steps.base import At, Candidate, Seen, Unchecked, unchecked
from bot.playbook.steps.evidence import ev, route_data
from bot.playbook.steps.node_state import facts_evidence, node_checks
from bot.playbook.steps.observe import FilterAsk, RouteAsk
from bot.playbook.steps.underlay import cidr_of, direct_route_candidates, node_ip, overlay_candidates


def arrival_checks(e: EndpointRef, facts: NodeFacts, incoming: str, evidence: list[Evidence]) -> list[Candidate]:
    """The destination node's own state, and the overlay device traffic from other nodes arrives on."""
    evidence.append(facts_evidence(facts))
    found = node_checks(facts, Hop.DESTINATION_NODE, forwards=True)
    if not incoming or incoming == "eth0":
        return found
    for o in facts.overlays:
        if o.link.name == incoming and not o.link.up:
            found.append(
                Candidate(
                    C.OVERLAY_DEVICE_DOWN,
                    Hop.UNDERLAY,
                    f"{o.link.name} on {e.node} is down: traffic from other nodes' pods cannot arrive",
                    e.node,
                    remediation(C.OVERLAY_DEVICE_DOWN, node=e.node or "NODE", device=o.link.name),
                )
            )
    return found


def filter_ask(at: At, node: str, e: EndpointRef, interfaces: tuple[str, ...], protocol: str) -> FilterAsk:
    """The filter table's verdict on the flow from the source pod to `e`, read on `node`."""
    return FilterAsk(node, at.source.ip or "", e.ip, protocol, e.port, interfaces)


def route_back_ask(at: At, e: EndpointRef) -> RouteAsk:
    """The destination node's route back to the source pod."""
    return RouteAsk(e.node or "", at.source.ip or "")


def filter_checks(
    at: At,
    seen: Seen,
    ask: FilterAsk,
    hop: Hop,
    e: EndpointRef,
    evidence: list[Evidence],
    missed: list[Unchecked],
) -> list[Candidate]:
    """Does a netfilter hook the flow crosses on the asked node drop it (iptables-nft, iptables-legacy
    or a native nftables table)?

    A drop on the forward hook is FORWARD_CHAIN_DROPS; a drop on any other hook (prerouting before
    routing, input for traffic to the node itself, output for traffic the node sends) is the node's
    own firewall, NODE_FIREWALL_DROPS. Rule sets the agent could not read are said to be not checked.
    """
    src, node, protocol = at.source, ask.node, ask.protocol
    observed = seen[ask]
    if observed.unreachable:
        missed += unchecked(observed, "the filter table")
        return []
    view = observed.value
    if view is None:
        return []
    missed += [
        Unchecked("the firewall rules", node, CallFailure.FAILED, f"could not read every rule set ({why})")
        for why in view.not_checked
    ]
    evidence.append(
        ev(
            "filter",
            f"{node}: {' → '.join(view.hooks)}; FORWARD policy {view.forward_policy}; "
            + (f"dropping: {'; '.join(str(d) for d in view.drops[:3])}" if view.drops else "no rule drops this flow")
            + (f"; possibly: {'; '.join(str(d) for d in view.possible[:3])}" if view.possible else ""),
            node,
            forward_policy=view.forward_policy,
            hooks=list(view.hooks),
            drops=[_hit_data(d) for d in view.drops],
            possible=[_hit_data(d) for d in view.possible],
            rp_filter=dict(view.rp_filter),
        )
    )
    if not view.drops:
        return []
    hit = view.drops[0]
    code = C.FORWARD_CHAIN_DROPS if hit.hook == "forward" else C.NODE_FIREWALL_DROPS
    flow = f"{src.ip} → {e.ip}:{e.port}/{protocol}"
    summary = f"{hit.where} on {node} drops {flow} on the {hit.hook} hook ({hit.rule})"
    return [Candidate(code, hop, summary, node, remediation(code, node=node, **hit_facts(hit)))]


def hit_facts(hit: FilterHit) -> dict[str, str]:
    """What the remediation needs to show and remove the rule in its own backend's tool."""
    handle = str(hit.handle) if hit.handle is not None else ""
    return {"backend": hit.backend, "table": hit.table, "chain": hit.chain, "rule": hit.rule, "handle": handle}


def _hit_data(hit: FilterHit) -> dict[str, object]:
    return {
        "backend": hit.backend,
        "hook": hit.hook,
        "table": hit.table,
        "chain": hit.chain,
        "rule": hit.rule,
        "target": hit.target,
        "handle": hit.handle,
        "packets": hit.packets,
    }


def route_back(
    at: At,
    seen: Seen,
    e: EndpointRef,
    facts: NodeFacts | None,
    incoming: str,
    evidence: list[Evidence],
    missed: list[Unchecked],
    protocol: str,
) -> list[Candidate]:
    """The destination node's route back to the source pod, and rp_filter on the device packets arrive on."""
    src = at.source
    back = seen[route_back_ask(at, e)]
    missed += unchecked(back, "the route back on the destination node")
    if back.value is None:
        return []
    route = back.value.route
    evidence.append(
        ev(
            "route-lookup",
            f"{e.node}: route back to {src.ip}: "
            + (f"{route.type} via {route.gateway or '-'} dev {route.device or '-'}" if route else back.value.error or "none"),
            e.node,
            route=route_data(route) if route else None,
        )
    )
    found: list[Candidate] = []
    if incoming and route is not None and route.usable and route.device and route.device != incoming:
        found += _rp_filter(at, seen, e, route, incoming, missed, protocol)
    if route is None or not route.usable:
        found.append(_no_route_back(at, e, facts))
    elif src.node and src.node != e.node:
        # Replies leave through the destination node's own route to the source's node: its overlay
        # entries or its gateway are a hop of their own (broken, they break only the way back).
        if back.value.overlay is not None:
            found += overlay_candidates(at.case, e.node or "", src.node, back.value.overlay, replies_to=src.ip)
        else:
            found += direct_route_candidates(at.case, e.node or "", src.node, src.ip or "", route, replies_to=src.ip)
    return found


def _rp_filter(
    at: At, seen: Seen, e: EndpointRef, route: RouteInfo, incoming: str, missed: list[Unchecked], protocol: str
) -> list[Candidate]:
    src = at.source
    rp = seen[filter_ask(at, e.node or "", e, (incoming,), protocol)]
    missed += unchecked(rp, "rp_filter")
    level = rp.value.rp_filter.get(incoming, 0) if rp.value else 0
    if level != 1:
        return []
    return [
        Candidate(
            C.RP_FILTER_DROPS,
            Hop.DESTINATION_NODE,
            f"strict rp_filter on {e.node}'s {incoming} drops packets from {src.ip}: they arrive on {incoming} but the route back leaves via {route.device}",
            e.node,
            remediation(C.RP_FILTER_DROPS, node=e.node or "NODE", device=incoming),
        )
    ]


def _no_route_back(at: At, e: EndpointRef, facts: NodeFacts | None) -> Candidate:
    src = at.source
    node = e.node or "NODE"
    down = [o.link.name for o in (facts.overlays if facts else ()) if not o.link.up]
    if down:
        return Candidate(
            C.OVERLAY_DEVICE_DOWN,
            Hop.UNDERLAY,
            f"{down[0]} on {e.node} is down, so it has no route back to {src.ip}",
            e.node,
            remediation(C.OVERLAY_DEVICE_DOWN, node=node, device=down[0]),
        )
    return Candidate(
        C.NODE_ROUTE_MISSING,
        Hop.DESTINATION_NODE,
        f"{e.node} has no route back to {src.ip}: replies cannot return",
        e.node,
        remediation(
            C.NODE_ROUTE_MISSING,
            node=node,
            cidr=cidr_of(at.case, src.node),
            via=node_ip(at.case, src.node),
            device="eth0",
        ),
    )
