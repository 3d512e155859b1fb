"""Which dataplane does a node's service NAT: kube-proxy's iptables or nftables rules (which kubereach
reads), or something it recognises but does not inspect (IPVS, Cilium's eBPF load balancer, other
eBPF programs on the node's interfaces), or nothing it recognises at all.

Why: a node without kube-proxy rules is not a node whose kube-proxy lost them when something else
translates the VIPs. The bot needs the difference to say "service NAT on node-2 is done by …; not
inspected" instead of a verdict it cannot back.

Everything here only reads: link names and XDP attachments over rtnetlink, tc filters on the clsact
hooks, `/proc/thread-self/net/ip_vs` inside the node's namespace, and the names of pinned maps under
a configurable bpffs directory. `classify` is pure and is what the unit tests exercise with recorded
signs; `read_signs` gathers them from the kernel.
"""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from nodeagent.checks.links import netlink_reader
from nodeagent.errors import KernelQueryFailed
from nodeagent.netns import run_in_netns

KUBE_PROXY_IPTABLES = "kube-proxy-iptables"
KUBE_PROXY_NFTABLES = "kube-proxy-nftables"
IPVS = "ipvs"
CILIUM_EBPF = "cilium-ebpf"
EBPF = "ebpf"
NONE = "none"
DATAPLANES = (KUBE_PROXY_IPTABLES, KUBE_PROXY_NFTABLES, IPVS, CILIUM_EBPF, EBPF, NONE)
"""Every name `classify` gives; "" (not in this tuple) means the signs could not be read."""

CILIUM_LINKS = ("cilium_host", "cilium_net", "cilium_vxlan", "cilium_geneve")
"""Links Cilium's agent creates in the node's namespace (the host endpoint pair and its tunnel device)."""
CILIUM_MAP_PREFIX = "cilium_lb"
"""Cilium's service load-balancer maps (cilium_lb4_services_v2, cilium_lb4_backends_v3, …)."""
CILIUM_MAP_DIR = ("tc", "globals")
"""Where Cilium pins its maps under bpffs."""
MAX_LINKS_WITH_FILTERS = 64
"""Links whose tc hooks are read at most: the node's NICs come first in the dump (lowest ifindex);
a node with more pod veths reads the first ones only."""
MAX_EVIDENCE = 12
TC_H_CLSACT_INGRESS = 0xFFFFFFF2
TC_H_CLSACT_EGRESS = 0xFFFFFFF3
_SKIPPED_KINDS = frozenset({"bridge", "vxlan", "geneve", "dummy", "ipip", "tun"})


@dataclass(frozen=True)
class DataplaneSigns:
    """What the node shows about its service dataplane, as read (the input of `classify`)."""

    proxy_mode: str | None
    """kube-proxy's detected mode ("iptables", "nftables", "ipvs", "none"); None when unreadable."""
    links: tuple[str, ...] = ()
    """Names of the node namespace's links."""
    ipvs_services: int = 0
    """Virtual servers listed in /proc/net/ip_vs (0 also when the kernel has no IPVS)."""
    pinned_maps: tuple[str, ...] = ()
    """Names of Cilium load-balancer maps pinned under bpffs."""
    bpf_programs: tuple[str, ...] = ()
    """"LINK: xdp prog N" / "LINK: tc ingress bpf NAME" for programs attached to the node's links."""


@dataclass(frozen=True)
class Dataplane:
    """The dataplane named, with the observations that name it."""

    name: str
    evidence: tuple[str, ...]


def classify(signs: DataplaneSigns) -> Dataplane:
    """Name the dataplane from its signs, most specific first.

    kube-ipvs0 or IPVS virtual servers win over KUBE-SERVICES because kube-proxy's IPVS mode keeps
    a KUBE-SERVICES chain (ipset matches, no DNAT) beside its virtual servers. kube-proxy's own
    rules win over Cilium's links: with them present the rules are what kubereach can read. Other
    eBPF programs count only when nothing else is found.
    """
    if signs.proxy_mode is None:
        return Dataplane("", ("kube-proxy's mode could not be read",))
    if "kube-ipvs0" in signs.links or signs.ipvs_services:
        evidence = ["link kube-ipvs0" if "kube-ipvs0" in signs.links else "no kube-ipvs0 link"]
        evidence.append(f"{signs.ipvs_services} IPVS virtual servers in /proc/net/ip_vs")
        return Dataplane(IPVS, tuple(evidence))
    if signs.proxy_mode == "nftables":
        return Dataplane(KUBE_PROXY_NFTABLES, ("nftables table ip kube-proxy",))
    if signs.proxy_mode == "iptables":
        return Dataplane(KUBE_PROXY_IPTABLES, ("iptables chain nat KUBE-SERVICES",))
    none = "no kube-proxy rules (no nftables table ip kube-proxy, no KUBE-SERVICES chain, no IPVS)"
    cilium = [name for name in CILIUM_LINKS if name in signs.links]
    if cilium or signs.pinned_maps:
        evidence = [f"link {name}" for name in cilium] + [f"pinned map {m}" for m in signs.pinned_maps]
        return Dataplane(CILIUM_EBPF, (*evidence[:MAX_EVIDENCE], none))
    if signs.bpf_programs:
        return Dataplane(EBPF, (*signs.bpf_programs[:MAX_EVIDENCE], none))
    return Dataplane(NONE, (none,))


def parse_ip_vs(text: str) -> int:
    """How many virtual servers /proc/net/ip_vs lists (its lines "TCP  0A600001:01BB rr")."""
    return sum(1 for line in text.splitlines() if line.split(" ", 1)[0] in ("TCP", "UDP", "SCTP", "FWM"))


def _read_ip_vs() -> int:
    try:
        with open("/proc/thread-self/net/ip_vs", encoding="ascii", errors="replace") as proc:
            return parse_ip_vs(proc.read(1 << 20))
    except OSError:
        return 0  # no IPVS in this kernel (the file exists only with the ip_vs module)


def pinned_lb_maps(bpffs: Path | None) -> tuple[str, ...]:
    """Names of Cilium's load-balancer maps pinned under `bpffs` (none when unset or absent)."""
    if bpffs is None:
        return ()
    try:
        names = os.listdir(bpffs.joinpath(*CILIUM_MAP_DIR))
    except OSError:
        return ()
    return tuple(sorted(n for n in names if n.startswith(CILIUM_MAP_PREFIX)))[:MAX_EVIDENCE]


def _bpf_filter_names(ipr: IPRoute, index: int, parent: int) -> list[str]:
    try:
        filters: list[Any] = list(ipr.get_filters(index=index, parent=parent))
    except NetlinkError as exc:
        if exc.code in (errno.EINVAL, errno.ENOENT, errno.EOPNOTSUPP):
            return []  # no clsact qdisc on this link
        raise
    names = []
    for msg in filters:
        if msg.get_attr("TCA_KIND") != "bpf":
            continue
        options = msg.get_attr("TCA_OPTIONS")
        if options is None:
            continue  # the dump's header for the priority, not a filter
        name = options.get_attr("TCA_BPF_NAME")
        names.append(str(name) if name else "(unnamed)")
    return sorted(set(names))


def _programs(ipr: IPRoute) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(link names, programs attached to them: XDP and tc BPF filters) of the namespace."""
    links: list[str] = []
    programs: list[str] = []
    for msg in ipr.get_links():
        name = str(msg.get_attr("IFLA_IFNAME"))
        links.append(name)
        xdp = msg.get_attr("IFLA_XDP")
        prog = xdp.get_attr("IFLA_XDP_PROG_ID") if xdp is not None else None
        if prog:
            programs.append(f"{name}: xdp prog {int(prog)}")
        info = msg.get_attr("IFLA_LINKINFO")
        kind = str(info.get_attr("IFLA_INFO_KIND") or "") if info is not None else ""
        if name == "lo" or kind in _SKIPPED_KINDS or len(links) > MAX_LINKS_WITH_FILTERS:
            continue
        for hook, parent in (("ingress", TC_H_CLSACT_INGRESS), ("egress", TC_H_CLSACT_EGRESS)):
            programs += [f"{name}: tc {hook} bpf {n}" for n in _bpf_filter_names(ipr, int(msg["index"]), parent)]
    return tuple(links), tuple(programs)


def read_signs(netns: str, proxy_mode: str | None, bpffs: Path | None) -> DataplaneSigns:
    """Read the node namespace's dataplane signs (links, attached programs, IPVS, pinned maps).

    Attached programs (XDP, tc BPF filters: two netlink dumps per link) are read only when nothing
    `classify` ranks above them is there (kube-proxy's rules, IPVS, Cilium's links or maps), so
    GetNodeInfo stays cheap on nodes with hundreds of pod veths.
    """
    programs: tuple[str, ...] = ()
    maps = pinned_lb_maps(bpffs)
    try:
        # Link names are read with if_nameindex, well under a millisecond where a parsed netlink
        # dump of hundreds of veths takes hundreds (pyroute2's per-attribute objects).
        links = run_in_netns(netns, lambda: tuple(name for _, name in socket.if_nameindex()))
        ipvs_services = run_in_netns(netns, _read_ip_vs)
        decided = proxy_mode is None or proxy_mode in ("iptables", "nftables") or ipvs_services or maps
        if not decided and not set(links) & {"kube-ipvs0", *CILIUM_LINKS}:
            # Only now can attached programs change the answer: read them (the slow dump).
            links, programs = netlink_reader(netns, "reading the node's links and tc filters", _programs)
    except OSError as exc:
        raise KernelQueryFailed("reading the node's links", exc.errno, exc.strerror) from exc
    return DataplaneSigns(
        proxy_mode=proxy_mode,
        links=links,
        ipvs_services=ipvs_services,
        pinned_maps=maps,
        bpf_programs=programs,
    )


def detect(netns: str, proxy_mode: str | None, bpffs: Path | None) -> Dataplane:
    """The dataplane of the node's namespace `netns`."""
    return classify(read_signs(netns, proxy_mode, bpffs))
