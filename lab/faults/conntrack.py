"""Conntrack faults: a node's table filled to its limit, a stale UDP entry to a deleted endpoint."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from lab import kernel
from lab.conntrack_fill import fill, flush, insert_entry
from lab.errors import LabError
from lab.faults.common import other_node, pod_key, svc_key
from lab.faults.model import Fault, FaultContext, FaultTarget, Needs, Undo, Verdict
from lab.faults.node import NodeUndo


@dataclass(frozen=True)
class StaleEntryUndo(Undo):
    """The flow (source address and port on a node) whose stale entry a fault inserted."""

    node: str
    src: str
    sport: int


LAB_RANGE = "10.248.0.0/14"
"""Source addresses of the filler entries: outside every lab network, so `heal` flushes only them."""


def _inject_conntrack_full(ctx: FaultContext, t: FaultTarget) -> tuple[str, NodeUndo]:
    assert t.node is not None
    limit = int(kernel.read_sysctl(t.node.netns, "net.netfilter.nf_conntrack_max"))
    count = fill(t.node.netns, limit, src_net=LAB_RANGE, dst="10.255.255.1", dport=9, protocol="udp")
    return f"the conntrack table on {t.node.name} is full ({count}/{limit} entries)", NodeUndo(t.node.name)


def _heal_conntrack_full(ctx: FaultContext, undo: NodeUndo) -> None:
    flush(ctx.plan.node(undo.node).netns, only_lab_range=LAB_RANGE)


def _inject_conntrack_stale(ctx: FaultContext, t: FaultTarget) -> tuple[str, StaleEntryUndo]:
    assert t.pod is not None and t.service is not None
    port = next((p for p in t.service["spec"]["ports"] if p.get("protocol", "TCP") == "UDP"), None)
    if port is None:
        raise LabError(f"service {svc_key(t.service)} has no UDP port; stale conntrack entries bite UDP services", exit_code=2)
    node = ctx.plan.node(t.pod["spec"]["nodeName"])
    used = {p["status"].get("podIP") for p in ctx.pods()}
    dead = next(str(a) for a in list(ipaddress.ip_network(other_node(ctx, node).pod_cidr).hosts())[200:] if str(a) not in used)
    sport = 5353
    # A live flow on that tuple would shadow the stale one: clear it first, as a restart would.
    kernel.exec_in(
        node.netns, ["conntrack", "-D", "-p", "udp", "-s", t.pod["status"]["podIP"], "--sport", str(sport)], check=False
    )
    insert_entry(
        node.netns,
        protocol="udp",
        orig_src=t.pod["status"]["podIP"],
        orig_dst=t.service["spec"]["clusterIP"],
        orig_sport=sport,
        orig_dport=int(port["port"]),
        reply_src=dead,
        reply_dst=t.pod["status"]["podIP"],
        reply_sport=int(port["targetPort"]) if isinstance(port.get("targetPort"), int) else int(port["port"]),
        reply_dport=sport,
        status=("ASSURED", "SEEN_REPLY", "CONFIRMED", "DST_NAT"),
        timeout=3600,
    )
    return (
        f"a stale UDP conntrack entry on {node.name} maps {pod_key(t.pod)}:{sport} → "
        f"{t.service['spec']['clusterIP']}:{port['port']} "
        f"to {dead}, an endpoint that no longer exists",
        StaleEntryUndo(node.name, t.pod["status"]["podIP"], sport),
    )


def _heal_conntrack_stale(ctx: FaultContext, undo: StaleEntryUndo) -> None:
    netns = ctx.plan.node(undo.node).netns
    kernel.exec_in(netns, ["conntrack", "-D", "-p", "udp", "-s", undo.src, "--sport", str(undo.sport)], check=False)


TABLE_FULL = Fault(
    "conntrack-full",
    Verdict.CONNTRACK_TABLE_FULL,
    "fill a node's conntrack table to nf_conntrack_max",
    Needs.NODE,
    _inject_conntrack_full,
    _heal_conntrack_full,
    NodeUndo,
)
STALE_ENTRY = Fault(
    "conntrack-stale",
    Verdict.CONNTRACK_STALE_ENTRY,
    "leave a UDP conntrack entry to a deleted endpoint on a pod's node",
    Needs.POD_SERVICE,
    _inject_conntrack_stale,
    _heal_conntrack_stale,
    StaleEntryUndo,
)
