"""A pod's own network, as seen by its node's agent: eth0 and its host-side peer, the bridge, routes, MTU.

Shared by the source pod and destination pod hops.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from bot.playbook.case import PodRef
from bot.playbook.models import Evidence, Hop
from bot.playbook.models import VerdictCode as C
from bot.playbook.observations import NodeFacts, PodNetwork
from bot.playbook.remedies import remediation
from bot.playbook.steps.base import Candidate
from bot.playbook.steps.evidence import ev, link_data, route_data


def pod_interface_checks(
    pod: PodRef, net: PodNetwork, facts: NodeFacts | None, hop: Hop, path_mtu: int | None, target_ips: Sequence[str]
) -> list[Candidate]:
    """eth0 and its peer up, the peer on the bridge, routes, MTU — for a source or destination pod."""
    found: list[Candidate] = []
    node = pod.node
    base = {"namespace": pod.namespace, "pod": pod.name, "node": node or "NODE"}
    eth0, peer = net.eth0, net.host_peer
    if peer is not None and not peer.up:
        found.append(
            Candidate(
                C.POD_INTERFACE_DOWN,
                hop,
                f"{peer.name}, the host side of {pod.key}'s eth0 on {node}, is down",
                node,
                remediation(C.POD_INTERFACE_DOWN, **base, device=peer.name),
            )
        )
    elif eth0 is None or not eth0.up:
        found.append(
            Candidate(
                C.POD_INTERFACE_DOWN,
                hop,
                f"{pod.key}'s eth0 is {'missing' if eth0 is None else 'down'}",
                node,
                remediation(C.POD_INTERFACE_DOWN, **base, device="eth0"),
            )
        )
    elif peer is None:
        found.append(
            Candidate(
                C.POD_INTERFACE_DOWN,
                hop,
                f"{pod.key}'s eth0 has no host-side peer on {node}: the veth pair is broken",
                node,
                remediation(C.POD_INTERFACE_DOWN, **base, device="VETH"),
            )
        )
    bridges = [b.name for b in facts.bridges] if facts else []
    if peer is not None and bridges and not peer.master and not peer.name.startswith("cali"):
        found.append(
            Candidate(
                C.VETH_NOT_ON_BRIDGE,
                hop,
                f"{peer.name} ({pod.key}) is not attached to {bridges[0]} on {node}: the pod is cut off from its node",
                node,
                remediation(C.VETH_NOT_ON_BRIDGE, **base, device=peer.name, bridge=bridges[0]),
            )
        )
    for ip in target_ips:
        if not _covered(net, ip):
            found.append(
                Candidate(
                    C.POD_ROUTE_MISSING,
                    hop,
                    f"{pod.key} has no route to {ip} (no default route)",
                    node,
                    remediation(C.POD_ROUTE_MISSING, **base),
                )
            )
            break
    found += mtu_checks(pod, net, hop, path_mtu)
    return found


def mtu_checks(pod: PodRef, net: PodNetwork, hop: Hop, path_mtu: int | None, after: str = "") -> list[Candidate]:
    """Is the pod's eth0 MTU above what its host-side veth or the overlay (`path_mtu`) carries;
    `after` is added to the summary (what the probes saw)."""
    eth0, peer = net.eth0, net.host_peer
    if eth0 is None:
        return []
    if peer is not None and eth0.mtu > peer.mtu:
        limit, what = peer.mtu, f"its host-side veth's {peer.mtu}: full-size packets are dropped silently"
    elif path_mtu is not None and eth0.mtu > path_mtu:
        limit, what = path_mtu, f"the overlay's {path_mtu}: large packets to other nodes are lost"
    else:
        return []
    return [
        Candidate(
            C.MTU_MISMATCH,
            hop,
            f"{pod.key}'s eth0 MTU {eth0.mtu} exceeds {what}{after}",
            pod.node,
            remediation(
                C.MTU_MISMATCH,
                namespace=pod.namespace,
                pod=pod.name,
                node=pod.node or "NODE",
                pod_mtu=str(eth0.mtu),
                path_mtu=str(limit),
            ),
        )
    ]


def _covered(net: PodNetwork, ip: str) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return True
    for route in net.routes:
        if not route.usable:
            continue
        dest = route.destination or "0.0.0.0/0"
        if dest == "default":
            dest = "0.0.0.0/0"
        try:
            if address in ipaddress.ip_network(dest, strict=False):
                return True
        except ValueError:
            continue
    return False


def overlay_mtu(facts: NodeFacts | None) -> int | None:
    if facts is None or not facts.overlays:
        return None
    return min(o.link.mtu for o in facts.overlays)


def _routes_text(net: PodNetwork) -> str:
    shown = [f"{r.destination or 'default'} via {r.gateway or r.device}" for r in net.routes if ":" not in r.destination]
    return "; ".join(shown) or "none"


def net_evidence(pod: PodRef, net: PodNetwork) -> Evidence:
    eth0, peer = net.eth0, net.host_peer
    return ev(
        "pod-network",
        f"{pod.key} in {net.netns}: eth0 {'up' if eth0 and eth0.up else 'DOWN'} mtu {eth0.mtu if eth0 else '?'}; "
        f"peer {peer.name if peer else '?'} {'up' if peer and peer.up else 'DOWN'} mtu {peer.mtu if peer else '?'} master {peer.master if peer and peer.master else '-'}; "
        f"routes: {_routes_text(net)}",
        pod.node,
        netns=net.netns,
        eth0=link_data(eth0) if eth0 else None,
        host_peer=link_data(peer) if peer else None,
        routes=[route_data(r) for r in net.routes],
    )
