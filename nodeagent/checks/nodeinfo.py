"""What a node's namespace reveals about the node: CNI shape, ip_forward, kernel and host identity."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from pyroute2 import IPRoute

from nodeagent.checks.links import LinkInfo, netlink_reader, read_links, read_sysctl


@dataclass(frozen=True)
class BridgeInfo:
    """A bridge and the interfaces enslaved to it."""

    link: LinkInfo
    ports: tuple[LinkInfo, ...]


@dataclass(frozen=True)
class OverlayInfo:
    """A VXLAN device; `underlay` is the name of the device it sends through, when set."""

    link: LinkInfo
    underlay: str | None


@dataclass(frozen=True)
class CniShape:
    """Bridges with their ports, Calico's `cali*` veths and the overlay devices of the node."""

    bridges: tuple[BridgeInfo, ...]
    calico_interfaces: tuple[LinkInfo, ...]
    overlays: tuple[OverlayInfo, ...]


@dataclass(frozen=True)
class NodeNamespaceState:
    """The node namespace's CNI shape and forwarding sysctl."""

    cni: CniShape
    ip_forward: bool


def cni_shape(links: tuple[LinkInfo, ...]) -> CniShape:
    """Classify a namespace's links into bridges (with ports), cali* veths and VXLAN overlays."""
    by_index = {link.index: link for link in links}
    bridges = tuple(
        BridgeInfo(link=link, ports=tuple(port for port in links if port.master_index == link.index))
        for link in links
        if link.kind == "bridge"
    )
    calico = tuple(link for link in links if link.name.startswith("cali"))
    overlays = tuple(
        OverlayInfo(
            link=link,
            underlay=by_index[link.vxlan.underlay_index].name
            if link.vxlan.underlay_index in by_index and link.vxlan.underlay_index is not None
            else None,
        )
        for link in links
        if link.vxlan is not None
    )
    return CniShape(bridges=bridges, calico_interfaces=calico, overlays=overlays)


def read_node_namespace(netns: str) -> NodeNamespaceState:
    """Read the CNI shape and net.ipv4.ip_forward of the node's namespace."""

    def read(ipr: IPRoute) -> NodeNamespaceState:
        links = read_links(ipr)
        return NodeNamespaceState(cni=cni_shape(links), ip_forward=read_sysctl("/proc/sys/net/ipv4/ip_forward") == "1")

    return netlink_reader(netns, "reading the node's links", read)


def host_identity() -> tuple[str, str]:
    """(hostname, kernel release) of the machine the agent runs on."""
    return socket.gethostname(), os.uname().release
