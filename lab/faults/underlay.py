"""Faults only packets reveal: a firewall or a lossy, narrower link in the node network, and a host
firewall on a node that drops the overlay.

The fabric (the node network, bridge `fabric0` in the fabric namespace) is where a cloud's security
groups, routers and links sit: no node and no agent can read it, so `underlay-drop`, `underlay-loss`
and `underlay-mtu` change nothing a state check can see. They are what really happens there: an
nftables `bridge` table filtering frames between the nodes' ports (a security group that does not
allow the overlay's UDP port, or the pod subnets, between two nodes; a link that loses a share of
what it carries), and links whose MTU is below what the nodes send. `node-firewall-overlay` is a
node's own host firewall (an INPUT rule as ufw or firewalld leave it) dropping the overlay port, or
for a routed CNI the pod subnet's traffic before routing (raw PREROUTING).

Each injection gets its own table (or its own rule) and its undo record names exactly that, so
`heal` restores the fabric and the node as they were and faults stack.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab import build, kernel
from lab.errors import LabError
from lab.faults.model import Fault, FaultContext, FaultTarget, Needs, Undo, Verdict
from lab.plan import CALICO_PORT, CLUSTER_CIDR, FLANNEL_PORT, UNDERLAY_MTU, LabPlan, NodePlan

DEFAULT_LOSS_PERCENT = 30
DEFAULT_UNDERLAY_MTU = 1400
FABRIC_TABLE = "vpc_filter"
"""Name stem of the fabric's nftables tables (one per injected fault: vpc_filter_1, vpc_filter_2, …)."""


@dataclass(frozen=True)
class FabricTableUndo(Undo):
    """The nftables bridge table a fault added to the fabric."""

    table: str


@dataclass(frozen=True)
class FabricMtuUndo(Undo):
    """The fabric ports whose MTU a fault lowered, with the MTU each had."""

    mtus: dict[str, int]


@dataclass(frozen=True)
class NodeRuleUndo(Undo):
    """An iptables rule a fault inserted on a node: table, chain and rule specification."""

    node: str
    table: str
    chain: str
    rule: list[str]


def overlay_port(plan: LabPlan) -> int | None:
    """The UDP port the CNI's VXLAN uses between nodes, or None for a routed CNI (host-gw)."""
    device = build.overlay_device(plan)
    if device is None:
        return None
    return FLANNEL_PORT if plan.options.cni == "flannel-vxlan" else CALICO_PORT


def _ports(nodes: list[NodePlan]) -> str:
    """An nftables anonymous set of fabric port names."""
    return "{ " + ", ".join(f'"{n.fabric_port}"' for n in nodes) + " }"


def _between(ctx: FaultContext, src: NodePlan | None, dst: NodePlan | None) -> str:
    """The match of frames the fabric carries from `src` to `dst` (None: any node)."""
    nodes = list(ctx.plan.nodes)
    into = f'oifname "{dst.fabric_port}"' if dst else f"oifname {_ports(nodes)}"
    out_of = f'iifname "{src.fabric_port}"' if src else f"iifname {_ports(nodes)}"
    return f"{out_of} {into}"


def _add_fabric_table(ctx: FaultContext, rules: list[str]) -> str:
    """Add a table of forward-hook rules to the fabric bridge; returns the table's name."""
    netns = ctx.plan.fabric_netns
    listed = kernel.exec_in(netns, ["nft", "list", "tables", "bridge"]).stdout.split()
    n = 1
    while f"{FABRIC_TABLE}_{n}" in listed:
        n += 1
    table = f"{FABRIC_TABLE}_{n}"
    body = "\n".join(f"    {rule}" for rule in rules)
    script = (
        f"table bridge {table} {{\n  chain forward {{\n    type filter hook forward priority filter; policy accept;\n"
        f"{body}\n  }}\n}}\n"
    )
    kernel.exec_in(netns, ["nft", "-f", "-"], stdin=script)
    return table


def _heal_fabric_table(ctx: FaultContext, undo: FabricTableUndo) -> None:
    kernel.exec_in(ctx.plan.fabric_netns, ["nft", "delete", "table", "bridge", undo.table], check=False)


def _what_is_dropped(ctx: FaultContext) -> tuple[str, list[str]]:
    """Words for, and nftables matches of, the traffic between two nodes a security group can miss."""
    port = overlay_port(ctx.plan)
    if port is not None:
        return f"UDP {port} (the overlay)", [f"udp dport {port}"]
    # A routed CNI: the node network allows the nodes' own addresses but not the pods' (as a cloud's
    # source/destination check or a security group written for node addresses only would).
    return f"the pod subnets' traffic ({CLUSTER_CIDR})", [f"ip saddr {CLUSTER_CIDR}", f"ip daddr {CLUSTER_CIDR}"]


def _inject_underlay_drop(ctx: FaultContext, t: FaultTarget) -> tuple[str, FabricTableUndo]:
    assert t.node is not None and t.to is not None
    words, matches = _what_is_dropped(ctx)
    between = _between(ctx, t.node, t.to)
    table = _add_fabric_table(ctx, [f"{between} {m} drop" for m in matches])
    return (
        f"the node network drops {words} from {t.node.name} ({t.node.ip}) to {t.to.name} ({t.to.ip})",
        FabricTableUndo(table),
    )


def _inject_underlay_loss(ctx: FaultContext, t: FaultTarget) -> tuple[str, FabricTableUndo]:
    percent = t.percent if t.percent is not None else DEFAULT_LOSS_PERCENT
    between = _between(ctx, t.node, t.to)
    table = _add_fabric_table(ctx, [f"{between} meta protocol ip numgen random mod 100 < {percent} drop"])
    source = f"from {t.node.name}" if t.node else "from every node"
    destination = f"to {t.to.name}" if t.to else "to every other node"
    return f"the node network loses {percent}% of the IPv4 packets {source} {destination}", FabricTableUndo(table)


def _inject_underlay_mtu(ctx: FaultContext, t: FaultTarget) -> tuple[str, FabricMtuUndo]:
    mtu = t.mtu if t.mtu is not None else DEFAULT_UNDERLAY_MTU
    netns = ctx.plan.fabric_netns
    nodes = [t.node] if t.node else list(ctx.plan.nodes)
    before: dict[str, int] = {}
    for node in nodes:
        port = node.fabric_port
        before[port] = int(kernel.exec_in(netns, ["cat", f"/sys/class/net/{port}/mtu"]).stdout)
    # The nodes still send frames of their own MTU; a link that carries less drops the larger ones
    # without a word (no ICMP at layer 2), as a mismatched switch port or tunnel in the path does.
    kernel.ip_batch(netns, [f"link set {node.fabric_port} mtu {mtu}" for node in nodes])
    where = f"{t.node.name}'s link" if t.node else "every node's link"
    return (
        f"the node network carries {mtu}-byte packets on {where}, below the {UNDERLAY_MTU} the nodes (and the overlay) send",
        FabricMtuUndo(before),
    )


def _heal_underlay_mtu(ctx: FaultContext, undo: FabricMtuUndo) -> None:
    kernel.ip_batch(ctx.plan.fabric_netns, [f"link set {port} mtu {mtu}" for port, mtu in sorted(undo.mtus.items())])


def _inject_node_firewall(ctx: FaultContext, t: FaultTarget) -> tuple[str, NodeRuleUndo]:
    assert t.node is not None
    port = overlay_port(ctx.plan)
    if port is not None:
        table, chain, rule = "filter", "INPUT", ["-i", "eth0", "-p", "udp", "--dport", str(port), "-j", "DROP"]
        words = f"drops the overlay's UDP {port} arriving on eth0 (filter INPUT)"
    else:
        table, chain, rule = "raw", "PREROUTING", ["-i", "eth0", "-d", t.node.pod_cidr, "-j", "DROP"]
        words = f"drops traffic for its pods ({t.node.pod_cidr}) arriving on eth0 (raw PREROUTING)"
    kernel.exec_in(t.node.netns, ["iptables", "-t", table, "-I", chain, "1", *rule])
    return f"the host firewall on {t.node.name} {words}", NodeRuleUndo(t.node.name, table, chain, rule)


def _heal_node_firewall(ctx: FaultContext, undo: NodeRuleUndo) -> None:
    netns = ctx.plan.node(undo.node).netns
    kernel.exec_in(netns, ["iptables", "-t", undo.table, "-D", undo.chain, *undo.rule], check=False)


def resolve_pair(plan: LabPlan, src: NodePlan | None, dst: NodePlan | None) -> tuple[NodePlan, NodePlan]:
    """The two ends of a node pair, the missing one(s) filled in; one clear error when they are the same."""
    nodes = list(plan.nodes)
    if len(nodes) < 2:
        raise LabError("this fault needs at least two nodes", exit_code=2)
    src = src or next(n for n in nodes if dst is None or n.name != dst.name)
    dst = dst or next(n for n in nodes if n.name != src.name)
    if src.name == dst.name:
        raise LabError(f"--from and --to both name {src.name}; name two different nodes", exit_code=2)
    return src, dst


UNDERLAY_DROP = Fault(
    "underlay-drop",
    Verdict.UNDERLAY_DROPS,
    "a firewall in the node network drops the overlay (or, host-gw, the pod subnets) --from a node --to another",
    Needs.NODE_PAIR,
    _inject_underlay_drop,
    _heal_fabric_table,
    FabricTableUndo,
    needs_trace=True,
)
UNDERLAY_LOSS = Fault(
    "underlay-loss",
    Verdict.PACKET_LOSS,
    "the node network loses --percent of the packets (all nodes, or --from/--to a node)",
    Needs.NONE,
    _inject_underlay_loss,
    _heal_fabric_table,
    FabricTableUndo,
    takes=frozenset({"from", "to", "percent"}),
    needs_trace=True,
)
NODE_FIREWALL_OVERLAY = Fault(
    "node-firewall-overlay",
    Verdict.NODE_FIREWALL_DROPS,
    "a node's host firewall drops the overlay port (host-gw: its pods' traffic) arriving from the network",
    Needs.NODE,
    _inject_node_firewall,
    _heal_node_firewall,
    NodeRuleUndo,
    needs_trace=True,
)
UNDERLAY_MTU_LOW = Fault(
    "underlay-mtu",
    Verdict.MTU_MISMATCH,
    "the node network's links carry less than the nodes send (--mtu, default 1400; one node's with --node)",
    Needs.NONE,
    _inject_underlay_mtu,
    _heal_underlay_mtu,
    FabricMtuUndo,
    takes=frozenset({"node", "mtu"}),
    needs_trace=True,
)
