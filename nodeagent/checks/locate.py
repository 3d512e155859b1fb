"""Finding a pod's network namespace on this node from its IP.

A pod is a namespace (named under /var/run/netns, or only held by its processes in /proc/*/ns/net)
with an interface that holds the pod IP and is one end of a veth pair whose other end lives in the
node's namespace. We check both directions of the pairing: the pod interface's IFLA_LINK is the host
peer's ifindex, and the host peer's IFLA_LINK is the pod interface's ifindex with IFLA_LINK_NETNSID
naming the pod namespace as the node namespace numbers it (RTM_GETNSID).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from nodeagent.checks.links import (
    LinkInfo,
    NamespaceView,
    RouteInfo,
    netlink_reader,
    read_namespace,
    read_sysctl,
)
from nodeagent.errors import KernelQueryFailed, PodNotFound
from nodeagent.netns import NETNS_RUN_DIR

MAX_PROC_ENTRIES = 100_000


@dataclass(frozen=True)
class NamespaceRef:
    """A network namespace found on the node: the path to open it, its name if any, a pid in it."""

    path: str
    inode: int
    name: str | None
    pid: int | None


@dataclass(frozen=True)
class HostPeerInfo:
    """The host-side veth end of a pod, with its bridge and routing context."""

    link: LinkInfo
    master: str | None
    route_to_pod: RouteInfo | None
    proxy_arp: bool

    @property
    def hairpin(self) -> bool | None:
        """The bridge port's hairpin mode (None: the peer is not a bridge port, as on routed CNIs)."""
        return self.link.hairpin


@dataclass(frozen=True)
class PodLocation:
    """Where the pod holding `pod_ip` lives on this node."""

    pod_ip: str
    netns: NamespaceRef
    interface: LinkInfo
    routes: tuple[RouteInfo, ...]
    host_peer: HostPeerInfo


def list_namespaces(exclude_inode: int | None = None) -> tuple[NamespaceRef, ...]:
    """Every distinct network namespace reachable via /var/run/netns/* and /proc/*/ns/net.

    Named namespaces come first and keep their name; a pid is attached when some process lives in
    the namespace. Entries that vanish or cannot be read while we look are skipped.
    """
    found: dict[tuple[int, int], NamespaceRef] = {}
    if NETNS_RUN_DIR.is_dir():
        for entry in sorted(NETNS_RUN_DIR.iterdir()):
            try:
                st = entry.stat()
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if st.st_ino != exclude_inode and key not in found:
                found[key] = NamespaceRef(path=str(entry), inode=st.st_ino, name=entry.name, pid=None)
    for count, entry in enumerate(Path("/proc").iterdir()):
        if count >= MAX_PROC_ENTRIES:
            break
        if not entry.name.isdigit():
            continue
        path = entry / "ns" / "net"
        try:
            st = path.stat()
        except OSError:
            continue
        key = (st.st_dev, st.st_ino)
        if st.st_ino == exclude_inode:
            continue
        known = found.get(key)
        if known is None:
            found[key] = NamespaceRef(path=str(path), inode=st.st_ino, name=None, pid=int(entry.name))
        elif known.pid is None:
            found[key] = NamespaceRef(path=known.path, inode=known.inode, name=known.name, pid=int(entry.name))
    return tuple(found.values())


def _nsids(ipr: IPRoute, namespaces: tuple[NamespaceRef, ...]) -> dict[int, list[NamespaceRef]]:
    """nsid (as the namespace `ipr` is bound to numbers them) -> namespaces; unnumbered ones left out."""
    result: dict[int, list[NamespaceRef]] = {}
    for ref in namespaces:
        try:
            fd = os.open(ref.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            answer = ipr.get_netnsid(fd=fd)
        except NetlinkError as exc:
            if exc.code == errno.EINVAL:
                # Not a namespace (any more, or yet): `ip netns add` creates the file before it
                # bind-mounts the namespace on it, `ip netns del` unmounts before it unlinks.
                continue
            raise
        finally:
            os.close(fd)
        nsid = answer.get("nsid") if answer else None
        if nsid is not None and nsid >= 0:
            result.setdefault(int(nsid), []).append(ref)
    return result


@dataclass(frozen=True)
class _NodeSide:
    view: NamespaceView
    nsids: dict[int, list[NamespaceRef]]
    proxy_arp: dict[int, bool]


def locate_pod(node_netns: str, pod_ip: str) -> PodLocation:
    """Find the pod that holds `pod_ip` and whose veth peer is in the node's namespace.

    Raises `PodNotFound` when no such pod exists on this node.
    """
    node_inode = os.stat(node_netns).st_ino
    namespaces = list_namespaces(exclude_inode=node_inode)

    def read_node(ipr: IPRoute) -> _NodeSide:
        view = read_namespace(ipr)
        peered = {link.link_netnsid for link in view.links if link.link_netnsid is not None}
        nsids = {nsid: refs for nsid, refs in _nsids(ipr, namespaces).items() if nsid in peered}
        proxy_arp = {
            link.index: read_sysctl(f"/proc/sys/net/ipv4/conf/{link.name}/proxy_arp") == "1"
            for link in view.links
            if link.link_netnsid is not None
        }
        return _NodeSide(view=view, nsids=nsids, proxy_arp=proxy_arp)

    node = netlink_reader(node_netns, "reading the node's links", read_node)
    for nsid, refs in sorted(node.nsids.items()):
        ref = refs[0]
        try:
            pod_view = netlink_reader(ref.path, f"reading namespace {ref.name or ref.path}", read_namespace)
        except KernelQueryFailed as exc:
            if exc.errno in {errno.ENOENT, errno.ESRCH}:  # the pod went away while we looked
                continue
            raise
        interface = pod_view.holding(pod_ip)
        if interface is None or interface.link_index is None:
            continue
        peer = node.view.by_index(interface.link_index)
        if peer is None or peer.link_index != interface.index or peer.link_netnsid != nsid:
            continue
        master = node.view.by_index(peer.master_index)
        route_to_pod = next(
            (r for r in node.view.routes if r.destination in {f"{pod_ip}/32", f"{pod_ip}/128"} and r.type == "unicast"),
            None,
        )
        return PodLocation(
            pod_ip=pod_ip,
            netns=ref,
            interface=interface,
            routes=pod_view.routes,
            host_peer=HostPeerInfo(
                link=peer,
                master=master.name if master else None,
                route_to_pod=route_to_pod,
                proxy_arp=node.proxy_arp.get(peer.index, False),
            ),
        )
    raise PodNotFound(f"{pod_ip} is not the IP of a pod on this node (no veth-paired namespace holds it)")
