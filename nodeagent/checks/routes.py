"""Route lookups, like `ip route get DST [from SRC] [iif DEV]`, plus overlay next-hop state.

The kernel answers a lookup for an unreachable, blackhole or prohibit route (and for no route at
all) with an error instead of a route; we then find the matching special route in the tables so the
caller sees *which* route discards the traffic, not only the errno.
"""

from __future__ import annotations

import errno
import ipaddress
import os
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from nodeagent.checks.links import (
    LinkInfo,
    NeighbourInfo,
    RouteInfo,
    address_family,
    link_names,
    netlink_reader,
    parse_route,
    read_links,
    read_neighbours,
    read_routes,
)
from nodeagent.errors import InvalidRequest

RTM_F_FIB_MATCH = 0x2000
AF_BRIDGE = 7
LOOKUP_FAILURES = {
    errno.EINVAL: "blackhole",
    errno.EHOSTUNREACH: "unreachable",
    errno.EACCES: "prohibit",
    errno.ENETUNREACH: "unreachable",
}


@dataclass(frozen=True)
class OverlayHop:
    """What a VXLAN device needs to reach a next hop: its neighbour entry and the FDB entry for it."""

    device: LinkInfo
    next_hop: str
    neighbour: NeighbourInfo | None
    fdb: NeighbourInfo | None


@dataclass(frozen=True)
class RouteLookup:
    """The kernel's answer to a route lookup.

    `route.type` is "no-route" when nothing matches; `error` carries the kernel's text when the lookup
    itself failed (for the special route types and for no route).
    """

    route: RouteInfo
    error: str | None
    overlay: OverlayHop | None
    netns_inode: int


def _special_route(ipr: IPRoute, destination: str, names: dict[int, str]) -> RouteInfo | None:
    """The longest-prefix blackhole/unreachable/prohibit route covering `destination`, in any table."""
    dst = ipaddress.ip_address(destination)
    best: RouteInfo | None = None
    best_len = -1
    for route in read_routes(ipr, names, table=None):
        if route.table == 255:
            continue
        network = ipaddress.ip_network(route.destination, strict=False)
        if network.version != dst.version or dst not in network:
            continue
        if network.prefixlen > best_len:
            best, best_len = route, network.prefixlen
    if best is not None and best.type in {"blackhole", "unreachable", "prohibit", "throw"}:
        return best
    return None


def _no_route(destination: str) -> RouteInfo:
    return RouteInfo(
        destination=destination,
        gateway=None,
        device=None,
        device_index=None,
        source=None,
        table=0,
        type="no-route",
        scope="nowhere",
        protocol="unspec",
        metric=0,
        onlink=False,
    )


def _overlay(ipr: IPRoute, links: tuple[LinkInfo, ...], route: RouteInfo, destination: str) -> OverlayHop | None:
    device = next((link for link in links if link.index == route.device_index), None)
    if device is None or device.vxlan is None:
        return None
    next_hop = route.gateway or destination
    family = address_family(next_hop)
    neighbour = next((n for n in read_neighbours(ipr, device.index, family) if n.ip == next_hop), None)
    fdb = None
    if neighbour is not None and neighbour.mac:
        fdb = next((f for f in read_neighbours(ipr, device.index, AF_BRIDGE) if f.mac == neighbour.mac), None)
    return OverlayHop(device=device, next_hop=next_hop, neighbour=neighbour, fdb=fdb)


def lookup_route(netns: str, destination: str, source: str | None = None, iif: str | None = None) -> RouteLookup:
    """Ask the kernel in `netns` which route a packet to `destination` takes.

    `source` and `iif` behave as `ip route get ... from SRC iif DEV` (a forwarded packet arriving on
    `iif`). The returned route's `destination` is the matched prefix (the FIB entry), its device,
    gateway and source those of the lookup.
    """
    inode = os.stat(netns).st_ino

    def read(ipr: IPRoute) -> RouteLookup:
        links = read_links(ipr)
        names = link_names(links)
        query: dict[str, object] = {"dst": destination, "family": address_family(destination)}
        if source:
            query["src"] = source
        if iif:
            index = next((link.index for link in links if link.name == iif), None)
            if index is None:
                raise InvalidRequest(f"input_interface {iif!r} does not exist in that namespace")
            query["iif"] = index
        try:
            chosen = parse_route(ipr.route("get", **query)[0], names)
        except NetlinkError as exc:
            if exc.code not in LOOKUP_FAILURES:
                raise
            special = _special_route(ipr, destination, names)
            return RouteLookup(
                route=special or _no_route(destination),
                error=os.strerror(exc.code),
                overlay=None,
                netns_inode=inode,
            )
        try:
            matched = parse_route(ipr.route("get", flags=RTM_F_FIB_MATCH, **query)[0], names)
            prefix = matched.destination
            table = matched.table
            metric = matched.metric
            protocol = matched.protocol
            scope = matched.scope
            onlink = matched.onlink or chosen.onlink
        except NetlinkError:
            prefix, table, metric, protocol, scope, onlink = (
                chosen.destination,
                chosen.table,
                chosen.metric,
                chosen.protocol,
                chosen.scope,
                chosen.onlink,
            )
        route = RouteInfo(
            destination=prefix,
            gateway=chosen.gateway,
            device=chosen.device,
            device_index=chosen.device_index,
            source=chosen.source,
            table=table,
            type=chosen.type,
            scope=scope,
            protocol=protocol,
            metric=metric,
            onlink=onlink,
        )
        return RouteLookup(route=route, error=None, overlay=_overlay(ipr, links, route, destination), netns_inode=inode)

    return netlink_reader(netns, f"looking up the route to {destination}", read)
