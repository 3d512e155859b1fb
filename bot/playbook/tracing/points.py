"""The probe points of one path, in the order a packet meets them, from what the agents already
reported: the pods' interfaces and host-side peers (LocatePod), the bridge or `cali*` veth and the
overlay device (GetNodeInfo, the route's overlay hop), and the underlay NIC each node uses to reach
the other (LookupRoute). Works for bridge + VXLAN, host-gw and Calico-like CNIs: a point the CNI does
not have is simply not on the path."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bot.playbook.observations import CapturePointSpec, NodeFacts, PodNetwork, RouteLookup


class Role(StrEnum):
    """What a probe point is on the path."""

    POD = "pod"
    VETH = "veth"
    BRIDGE = "bridge"
    OVERLAY = "overlay"
    UNDERLAY = "underlay"


class Side(StrEnum):
    """Which end of the path a point is on."""

    SOURCE = "source"
    DESTINATION = "destination"


@dataclass(frozen=True)
class PathPoint:
    """One interface on the path: where it is, and what it is."""

    node: str
    interface: str
    role: Role
    side: Side
    netns: str = ""
    """The namespace as people know it (the pod's netns name, or the node's)."""
    pod_ip: str = ""
    """Set for a point inside a pod's namespace."""

    @property
    def spec(self) -> CapturePointSpec:
        """The capture request for this point."""
        return CapturePointSpec(self.node, self.interface, self.pod_ip)

    @property
    def label(self) -> str:
        """Short name for a one-line path ("node-2 flannel.1", "pod eth0")."""
        where = f"{self.side.value} pod" if self.role == Role.POD else self.node
        return f"{where} {self.interface}"


@dataclass(frozen=True)
class TracePath:
    """The points of one path in request order, and what the overlay carries it on."""

    points: tuple[PathPoint, ...]
    source_node: str
    destination_node: str
    overlay_port: int = 0
    """The overlay's UDP port (8472, 4789); 0 when the path has no overlay (host-gw, same node)."""
    absent: tuple[str, ...] = ()
    """Points a pod-to-pod path has that this one does not, and why (an end in a node's own namespace
    has no pod eth0, veth or bridge): said in the trace's result, never watched."""
    cut: bool = False
    """The path is watched only up to the source node's pod side (`cut_at_masquerade`)."""

    @property
    def remote(self) -> bool:
        """The path crosses the underlay."""
        return self.source_node != self.destination_node


@dataclass(frozen=True)
class PathEnd:
    """What is known about one end: the node, its facts, the pod, and the NIC toward the other node."""

    node: str
    pod: PodNetwork | None
    facts: NodeFacts | None
    underlay_device: str = ""
    in_node: bool = False
    """The end is the node's own network namespace (the node itself, or a host-network pod): packets
    start or end in the node's stack, with no pod interface on the way."""


def _pod_points(end: PathEnd, side: Side, pod_ip: str) -> list[PathPoint]:
    """The pod's eth0, its host-side veth, and the bridge it hangs on (request order, source side);
    none for an end in the node's own namespace."""
    if end.in_node:
        return []
    pod = end.pod
    netns = end.facts.netns if end.facts else ""
    found = [PathPoint(end.node, pod.eth0.name if pod and pod.eth0 else "eth0", Role.POD, side, pod.netns if pod else "", pod_ip)]
    if pod is not None and pod.host_peer is not None:
        found.append(PathPoint(end.node, pod.host_peer.name, Role.VETH, side, netns))
        if pod.host_peer.master:
            found.append(PathPoint(end.node, pod.host_peer.master, Role.BRIDGE, side, netns))
    return found


def plan_path(source: PathEnd, source_ip: str, destination: PathEnd, destination_ip: str, route: RouteLookup | None) -> TracePath:
    """The probe points from the source pod to the destination pod, in request order. An end in a node's
    own namespace (`PathEnd.in_node`) contributes only its node's overlay and underlay interfaces.

    `route` is the source node's route to the destination pod: an overlay hop names the overlay
    device; the underlay NIC of each node is its route toward the other node.
    """
    out = _pod_points(source, Side.SOURCE, source_ip)
    back = _pod_points(destination, Side.DESTINATION, destination_ip)
    overlay_port = 0
    if source.node != destination.node:
        overlay = route.overlay if route is not None else None
        if overlay is not None:
            src_dev = next((o for o in (source.facts.overlays if source.facts else ()) if o.link.name == overlay.device), None)
            overlay_port = src_dev.udp_port if src_dev else 0
            out.append(PathPoint(source.node, overlay.device, Role.OVERLAY, Side.SOURCE, _netns(source)))
            dst_dev = _matching_overlay(destination.facts, overlay.device, overlay_port)
            if dst_dev:
                back.append(PathPoint(destination.node, dst_dev, Role.OVERLAY, Side.DESTINATION, _netns(destination)))
        src_nic = source.underlay_device or (route.route.device if route and route.route and not overlay else "")
        if src_nic:
            out.append(PathPoint(source.node, src_nic, Role.UNDERLAY, Side.SOURCE, _netns(source)))
        if destination.underlay_device:
            back.append(
                PathPoint(destination.node, destination.underlay_device, Role.UNDERLAY, Side.DESTINATION, _netns(destination))
            )
    points: list[PathPoint] = list(out)
    taken = {(p.node, p.interface, p.pod_ip) for p in points}
    for p in reversed(back):
        if (p.node, p.interface, p.pod_ip) not in taken:  # same node: the shared bridge is met once
            points.append(p)
            taken.add((p.node, p.interface, p.pod_ip))
    absent = tuple(_absent(end, side) for end, side in ((source, Side.SOURCE), (destination, Side.DESTINATION)) if end.in_node)
    return TracePath(tuple(points), source.node, destination.node, overlay_port, absent)


def _absent(end: PathEnd, side: Side) -> str:
    """Why an end in the node's own namespace has no pod points."""
    where = "starts" if side == Side.SOURCE else "ends"
    return (
        f"the {side.value} is {end.node}'s own network namespace (the node, or a host-network pod): no pod eth0, "
        f"veth or bridge to watch on that side; the path {where} in the node's stack"
    )


def _netns(end: PathEnd) -> str:
    return end.facts.netns if end.facts else ""


def _matching_overlay(facts: NodeFacts | None, name: str, port: int) -> str:
    """The destination node's overlay device: the one of the same name, else the one on the same port."""
    overlays = facts.overlays if facts else ()
    for o in overlays:
        if o.link.name == name:
            return o.link.name
    for o in overlays:
        if port and o.udp_port == port:
            return o.link.name
    return ""


def cut_at_masquerade(path: TracePath, rule: str) -> TracePath:
    """The path up to the source pod's bridge or veth, for a probe the source node masquerades on its
    way out (a pod to a node's address): the masquerade rewrites the marked source port (flannel's and
    Calico's `--random-fully`), so no point after it can tell the probe's packets by that port. The
    points after it are said as not watched, with the rule."""
    kept = tuple(p for p in path.points if p.side == Side.SOURCE and p.role in (Role.POD, Role.VETH, Role.BRIDGE))
    why = (
        f"{path.source_node} masquerades the probe on its way out ({rule}), rewriting its marked source port: "
        f"the points after {kept[-1].label if kept else 'the source pod'} cannot tell its packets and are not watched"
    )
    return TracePath(kept, path.source_node, path.destination_node, path.overlay_port, (*path.absent, why), cut=True)
