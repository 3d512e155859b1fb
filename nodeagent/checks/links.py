"""Links, addresses, routes and neighbours of one namespace, parsed once from netlink into small types.

Everything here runs on a thread that is already inside the namespace (see `nodeagent.netns`): the
functions take an open pyroute2 `IPRoute` created on that thread, read, and return frozen data.
`NetlinkError` and `OSError` are converted into `KernelQueryFailed` by `netlink_reader`.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from nodeagent.errors import KernelQueryFailed
from nodeagent.netns import NamespaceNotFound, run_in_netns

T = TypeVar("T")

IFF_UP = 0x1
RTNH_F_ONLINK = 0x4
MAIN_TABLE = 254
ROUTE_TYPES = {
    1: "unicast",
    2: "local",
    3: "broadcast",
    4: "anycast",
    5: "multicast",
    6: "blackhole",
    7: "unreachable",
    8: "prohibit",
    9: "throw",
}
SCOPES = {0: "universe", 200: "site", 253: "link", 254: "host", 255: "nowhere"}
ROUTE_PROTOCOLS = {0: "unspec", 1: "redirect", 2: "kernel", 3: "boot", 4: "static", 16: "dhcp"}
NUD_STATES = (
    (0x01, "INCOMPLETE"),
    (0x02, "REACHABLE"),
    (0x04, "STALE"),
    (0x08, "DELAY"),
    (0x10, "PROBE"),
    (0x20, "FAILED"),
    (0x40, "NOARP"),
    (0x80, "PERMANENT"),
)

Msg = Any  # a pyroute2 netlink message; only ever touched in this module


@dataclass(frozen=True)
class VxlanInfo:
    """The VXLAN parameters of an overlay device."""

    vni: int
    udp_port: int
    local_ip: str | None
    underlay_index: int | None


@dataclass(frozen=True)
class LinkInfo:
    """One interface of a namespace."""

    index: int
    name: str
    kind: str
    mtu: int
    oper_state: str
    admin_up: bool
    mac: str
    master_index: int | None
    link_index: int | None
    link_netnsid: int | None
    addresses: tuple[str, ...]
    vxlan: VxlanInfo | None = None
    hairpin: bool | None = None
    """A bridge port's hairpin mode (IFLA_BRPORT_MODE); None when the link is not a bridge port."""


@dataclass(frozen=True)
class RouteInfo:
    """One route (from a table dump or a route lookup); `device` is resolved to a name."""

    destination: str
    gateway: str | None
    device: str | None
    device_index: int | None
    source: str | None
    table: int
    type: str
    scope: str
    protocol: str
    metric: int
    onlink: bool


@dataclass(frozen=True)
class NeighbourInfo:
    """An ARP/NDP entry (`ip neigh`) or an FDB entry (`bridge fdb`, with `remote_ip` = NDA_DST)."""

    device_index: int
    ip: str | None
    mac: str | None
    state: tuple[str, ...]


@dataclass(frozen=True)
class NamespaceView:
    """The links (with addresses) and main-table routes of a namespace, read in one go."""

    links: tuple[LinkInfo, ...]
    routes: tuple[RouteInfo, ...]

    def by_index(self, index: int | None) -> LinkInfo | None:
        """The link with this ifindex, or None."""
        return next((link for link in self.links if link.index == index), None)

    def by_name(self, name: str) -> LinkInfo | None:
        """The link with this name, or None."""
        return next((link for link in self.links if link.name == name), None)

    def holding(self, ip: str) -> LinkInfo | None:
        """The link that holds `ip` as one of its addresses, or None."""
        for link in self.links:
            if any(addr.split("/", 1)[0] == ip for addr in link.addresses):
                return link
        return None


@contextmanager
def _netlink_errors(what: str) -> Iterator[None]:
    try:
        yield
    except NetlinkError as exc:
        raise KernelQueryFailed(what, exc.code) from exc
    except NamespaceNotFound:
        raise
    except OSError as exc:
        raise KernelQueryFailed(what, exc.errno, exc.strerror) from exc


def netlink_reader(netns: str, what: str, read: Callable[[IPRoute], T]) -> T:
    """Open an rtnetlink socket inside `netns` (on a fresh thread), run `read` with it, close it.

    The socket is created on the thread that entered the namespace, so it is bound to it; nothing
    is created or changed in the namespace. Kernel errors become `KernelQueryFailed(what, errno)`.
    """

    def work() -> T:
        with IPRoute() as ipr:
            return read(ipr)

    with _netlink_errors(what):
        return run_in_netns(netns, work)


def _mac(value: object) -> str:
    return str(value).lower() if value else ""


def _kind(msg: Msg) -> str:
    info = msg.get_attr("IFLA_LINKINFO")
    return str(info.get_attr("IFLA_INFO_KIND") or "") if info is not None else ""


def _vxlan(msg: Msg) -> VxlanInfo | None:
    info = msg.get_attr("IFLA_LINKINFO")
    if info is None or info.get_attr("IFLA_INFO_KIND") != "vxlan":
        return None
    data = info.get_attr("IFLA_INFO_DATA")
    if data is None:
        return None
    local = data.get_attr("IFLA_VXLAN_LOCAL") or data.get_attr("IFLA_VXLAN_LOCAL6")
    return VxlanInfo(
        vni=int(data.get_attr("IFLA_VXLAN_ID") or 0),
        udp_port=int(data.get_attr("IFLA_VXLAN_PORT") or 0),
        local_ip=str(local) if local else None,
        underlay_index=data.get_attr("IFLA_VXLAN_LINK") or None,
    )


def _hairpin(msg: Msg) -> bool | None:
    """The bridge port's hairpin flag, from the port attributes the kernel puts in IFLA_LINKINFO."""
    info = msg.get_attr("IFLA_LINKINFO")
    if info is None or info.get_attr("IFLA_INFO_SLAVE_KIND") != "bridge":
        return None
    data = info.get_attr("IFLA_INFO_SLAVE_DATA")
    mode = data.get_attr("IFLA_BRPORT_MODE") if data is not None else None
    return bool(mode) if mode is not None else None


def parse_link(msg: Msg, addresses: tuple[str, ...]) -> LinkInfo:
    """Turn one RTM_NEWLINK message into a `LinkInfo`."""
    netnsid = msg.get_attr("IFLA_LINK_NETNSID")
    return LinkInfo(
        index=int(msg["index"]),
        name=str(msg.get_attr("IFLA_IFNAME")),
        kind=_kind(msg),
        mtu=int(msg.get_attr("IFLA_MTU") or 0),
        oper_state=str(msg.get_attr("IFLA_OPERSTATE") or "UNKNOWN"),
        admin_up=bool(msg["flags"] & IFF_UP),
        mac=_mac(msg.get_attr("IFLA_ADDRESS")),
        master_index=msg.get_attr("IFLA_MASTER") or None,
        link_index=msg.get_attr("IFLA_LINK") or None,
        link_netnsid=int(netnsid) if netnsid is not None else None,
        addresses=addresses,
        vxlan=_vxlan(msg),
        hairpin=_hairpin(msg),
    )


def read_links(ipr: IPRoute) -> tuple[LinkInfo, ...]:
    """Every link of the namespace with its IPv4 and IPv6 addresses."""
    addresses: dict[int, list[str]] = {}
    for msg in ipr.get_addr():
        addr = msg.get_attr("IFA_ADDRESS") if msg["family"] == socket.AF_INET6 else None
        addr = addr or msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
        if addr:
            addresses.setdefault(int(msg["index"]), []).append(f"{addr}/{msg['prefixlen']}")
    return tuple(parse_link(msg, tuple(addresses.get(int(msg["index"]), ()))) for msg in ipr.get_links())


def parse_route(msg: Msg, names: dict[int, str]) -> RouteInfo:
    """Turn one RTM_NEWROUTE message into a `RouteInfo`, naming the device from `names`."""
    family = msg["family"]
    dst = msg.get_attr("RTA_DST")
    if dst is None:
        dst = "::" if family == socket.AF_INET6 else "0.0.0.0"
    gateway = msg.get_attr("RTA_GATEWAY")
    oif = msg.get_attr("RTA_OIF")
    flags = int(msg["flags"])
    multipath = msg.get_attr("RTA_MULTIPATH")
    if gateway is None and oif is None and multipath:
        first = multipath[0]
        gateway = first.get_attr("RTA_GATEWAY")
        oif = first["oif"]
        flags |= int(first["flags"])
    table = msg.get_attr("RTA_TABLE") or msg["table"]
    return RouteInfo(
        destination=f"{dst}/{msg['dst_len']}",
        gateway=str(gateway) if gateway else None,
        device=names.get(oif) if oif else None,
        device_index=int(oif) if oif else None,
        source=msg.get_attr("RTA_PREFSRC"),
        table=int(table),
        type=ROUTE_TYPES.get(int(msg["type"]), str(msg["type"])),
        scope=SCOPES.get(int(msg["scope"]), str(msg["scope"])),
        protocol=ROUTE_PROTOCOLS.get(int(msg["proto"]), str(msg["proto"])),
        metric=int(msg.get_attr("RTA_PRIORITY") or 0),
        onlink=bool(flags & RTNH_F_ONLINK),
    )


def link_names(links: tuple[LinkInfo, ...]) -> dict[int, str]:
    """ifindex -> name."""
    return {link.index: link.name for link in links}


def read_routes(ipr: IPRoute, names: dict[int, str], table: int | None = MAIN_TABLE) -> tuple[RouteInfo, ...]:
    """The IPv4 and IPv6 routes of one table (every table when `table` is None)."""
    routes = []
    for family in (socket.AF_INET, socket.AF_INET6):
        kwargs: dict[str, object] = {"family": family}
        if table is not None:
            kwargs["table"] = table
        for msg in ipr.get_routes(**kwargs):
            route = parse_route(msg, names)
            if table is None or route.table == table:
                routes.append(route)
    return tuple(routes)


def read_namespace(ipr: IPRoute) -> NamespaceView:
    """Links, addresses and main-table routes of the namespace `ipr` is bound to."""
    links = read_links(ipr)
    return NamespaceView(links=links, routes=read_routes(ipr, link_names(links)))


def nud_state(value: int) -> tuple[str, ...]:
    """Names of the NUD state bits in `value` (("NONE",) when no bit is set)."""
    names = tuple(name for bit, name in NUD_STATES if value & bit)
    return names or ("NONE",)


def parse_neighbour(msg: Msg) -> NeighbourInfo:
    """Turn one RTM_NEWNEIGH message (ARP/NDP or bridge FDB) into a `NeighbourInfo`."""
    dst = msg.get_attr("NDA_DST")
    mac = msg.get_attr("NDA_LLADDR")
    return NeighbourInfo(
        device_index=int(msg["ifindex"]),
        ip=str(dst) if dst else None,
        mac=_mac(mac) or None,
        state=nud_state(int(msg["state"])),
    )


def read_neighbours(ipr: IPRoute, ifindex: int, family: int) -> tuple[NeighbourInfo, ...]:
    """Neighbour entries of one device: `family` AF_INET/AF_INET6 for ARP/NDP, AF_BRIDGE for the FDB."""
    return tuple(parse_neighbour(msg) for msg in ipr.get_neighbours(family=family) if int(msg["ifindex"]) == ifindex)


def read_sysctl(path: str) -> str | None:
    """Read one /proc/sys value on the current thread (which follows the thread's namespace)."""
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return None


def address_family(ip: str) -> int:
    """AF_INET or AF_INET6 for an IP literal."""
    return socket.AF_INET6 if ipaddress.ip_address(ip).version == 6 else socket.AF_INET
