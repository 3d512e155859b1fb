"""Node faults: routes between nodes, forwarding, the FORWARD chain, the overlay, rp_filter, the agent."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import ClassVar

from lab import build, kernel, processes
from lab.errors import LabError
from lab.faults.common import overlay_device, pod_key, remote_node, route_cmd, route_json
from lab.faults.model import Fault, FaultContext, FaultTarget, Needs, Obj, Undo, Verdict
from lab.lifecycle import start_agent, wait_agents


@dataclass(frozen=True)
class NodeUndo(Undo):
    """A node whose state `heal` puts back as the plan says."""

    node: str


@dataclass(frozen=True)
class RoutesUndo(Undo):
    """A node's routes as they were (and the route a fault replaced, to delete first)."""

    node: str
    routes: list[Obj]
    replaced: str | None = None
    omit_when_none: ClassVar[tuple[str, ...]] = ("replaced",)


@dataclass(frozen=True)
class RpFilterUndo(Undo):
    """The asymmetric route a fault added and the device whose rp_filter it made strict."""

    node: str
    route: str
    device: str


@dataclass(frozen=True)
class AgentUndo(Undo):
    """A killed agent and the address it listened on."""

    node: str
    address: str | None = None


def _inject_route_missing(ctx: FaultContext, t: FaultTarget) -> tuple[str, RoutesUndo]:
    assert t.node is not None
    remote = remote_node(ctx, t, t.node)
    routes = route_json(t.node.netns, remote.pod_cidr)
    if not routes:
        raise LabError(f"{t.node.name} has no route to {remote.pod_cidr} to remove", exit_code=2)
    kernel.exec_in(t.node.netns, ["ip", "route", "del", remote.pod_cidr])
    return f"{t.node.name} lost its route to {remote.name}'s pod CIDR {remote.pod_cidr}", RoutesUndo(t.node.name, routes)


def _inject_route_wrong(ctx: FaultContext, t: FaultTarget) -> tuple[str, RoutesUndo]:
    assert t.node is not None
    remote = remote_node(ctx, t, t.node)
    routes = route_json(t.node.netns, remote.pod_cidr)
    # A stale route left by a replaced node: its gateway address is on the fabric but nobody holds it.
    fabric = ipaddress.ip_network(f"{t.node.ip}/24", strict=False)
    gateway = str(fabric.network_address + 250)
    kernel.exec_in(t.node.netns, ["ip", "route", "replace", remote.pod_cidr, "via", gateway, "dev", "eth0"])
    return (
        f"{t.node.name} routes {remote.pod_cidr} ({remote.name}'s pods) via {gateway}, an address no node has",
        RoutesUndo(t.node.name, routes, replaced=remote.pod_cidr),
    )


def _heal_routes(ctx: FaultContext, undo: RoutesUndo) -> None:
    netns = ctx.plan.node(undo.node).netns
    if undo.replaced:
        kernel.exec_in(netns, ["ip", "route", "del", undo.replaced], check=False)
    for route in undo.routes:
        kernel.exec_in(netns, ["ip", "route", "replace", *route_cmd(route)])


def _inject_ip_forward(ctx: FaultContext, t: FaultTarget) -> tuple[str, NodeUndo]:
    assert t.node is not None
    kernel.write_sysctls(t.node.netns, {"net.ipv4.ip_forward": 0})
    return f"net.ipv4.ip_forward=0 on {t.node.name}", NodeUndo(t.node.name)


def _heal_ip_forward(ctx: FaultContext, undo: NodeUndo) -> None:
    kernel.write_sysctls(ctx.plan.node(undo.node).netns, {"net.ipv4.ip_forward": 1})


def _inject_forward_drop(ctx: FaultContext, t: FaultTarget) -> tuple[str, NodeUndo]:
    assert t.node is not None
    kernel.exec_in(t.node.netns, ["iptables", "-t", "filter", "-P", "FORWARD", "DROP"])
    return f"the filter FORWARD chain on {t.node.name} has policy DROP", NodeUndo(t.node.name)


def _heal_forward_drop(ctx: FaultContext, undo: NodeUndo) -> None:
    kernel.exec_in(ctx.plan.node(undo.node).netns, ["iptables", "-t", "filter", "-P", "FORWARD", "ACCEPT"])


def _inject_overlay_down(ctx: FaultContext, t: FaultTarget) -> tuple[str, NodeUndo]:
    assert t.node is not None
    device = overlay_device(ctx.plan)
    kernel.exec_in(t.node.netns, ["ip", "link", "set", device, "down"])
    return f"{device} on {t.node.name} is down", NodeUndo(t.node.name)


def _inject_fdb_missing(ctx: FaultContext, t: FaultTarget) -> tuple[str, NodeUndo]:
    assert t.node is not None
    device = overlay_device(ctx.plan)
    remote = remote_node(ctx, t, t.node)
    kernel.run(["bridge", "-n", t.node.netns, "fdb", "del", remote.vtep_mac, "dev", device, "dst", remote.ip])
    return f"{device} on {t.node.name} lost its FDB entry for {remote.name}'s VTEP {remote.vtep_mac}", NodeUndo(t.node.name)


def _heal_node_network(ctx: FaultContext, undo: NodeUndo) -> None:
    """Re-converge a node's links, overlay entries and routes to the plan (idempotent)."""
    node = ctx.plan.node(undo.node)
    device = build.overlay_device(ctx.plan)
    routes, fdb = build.remote_pod_routes(ctx.plan, node, "replace")
    kernel.ip_batch(node.netns, ["link set eth0 up", *([f"link set {device} up"] if device else []), *routes])
    kernel.bridge_batch(node.netns, fdb)


def _inject_rp_filter(ctx: FaultContext, t: FaultTarget) -> tuple[str, RpFilterUndo]:
    assert t.node is not None
    device = overlay_device(ctx.plan)
    source = t.pod or next(p for p in ctx.pods() if p["spec"]["nodeName"] != t.node.name)
    src_node = ctx.plan.node(source["spec"]["nodeName"])
    if src_node.name == t.node.name:
        raise LabError(
            "rp-filter-strict needs --pod on another node than --node (traffic must arrive from elsewhere)", exit_code=2
        )
    src_ip = source["status"]["podIP"]
    # An asymmetric path, as a second network would make it: replies to the source go straight over
    # the fabric to its node, while its packets still arrive through the overlay. Harmless alone.
    kernel.exec_in(t.node.netns, ["ip", "route", "add", f"{src_ip}/32", "via", src_node.ip, "dev", "eth0"])
    kernel.write_sysctls(
        t.node.netns, {"net.ipv4.conf.all.rp_filter": 1, f"net.ipv4.conf.{device.replace('.', '/')}.rp_filter": 1}
    )
    return (
        f"strict rp_filter on {t.node.name}'s {device}, where {pod_key(source)}'s packets arrive "
        "while the route back to it leaves eth0",
        RpFilterUndo(t.node.name, f"{src_ip}/32", device),
    )


def _heal_rp_filter(ctx: FaultContext, undo: RpFilterUndo) -> None:
    netns = ctx.plan.node(undo.node).netns
    kernel.exec_in(netns, ["ip", "route", "del", undo.route], check=False)
    kernel.write_sysctls(netns, {"net.ipv4.conf.all.rp_filter": 0, f"net.ipv4.conf.{undo.device.replace('.', '/')}.rp_filter": 0})


def _inject_agent_down(ctx: FaultContext, t: FaultTarget) -> tuple[str, AgentUndo]:
    assert t.node is not None
    pid = ctx.state.processes.get(f"agent/{t.node.name}")
    if not pid or not processes.alive(pid):
        raise LabError(f"the agent of {t.node.name} is not running", exit_code=2)
    processes.stop([pid])
    return f"the kubereach agent on {t.node.name} was killed", AgentUndo(t.node.name, ctx.state.agents.get(t.node.name))


def _heal_agent_down(ctx: FaultContext, undo: AgentUndo) -> None:
    node = undo.node
    if processes.alive(ctx.state.processes.get(f"agent/{node}", -1)):
        return
    started = start_agent(ctx.plan, ctx.state, node, listen=undo.address or "127.0.0.1:0")
    ctx.state.processes[started.name] = started.pid
    ctx.state.agents.update(wait_agents(ctx.state, [node]))


ROUTE_MISSING = Fault(
    "node-route-missing",
    Verdict.NODE_ROUTE_MISSING,
    "delete a node's route to another node's pod CIDR",
    Needs.NODE,
    _inject_route_missing,
    _heal_routes,
    RoutesUndo,
)
ROUTE_WRONG = Fault(
    "node-route-wrong",
    Verdict.NODE_ROUTE_MISSING,
    "point a node's route for a pod CIDR at the wrong gateway",
    Needs.NODE,
    _inject_route_wrong,
    _heal_routes,
    RoutesUndo,
)
IP_FORWARD_OFF = Fault(
    "ip-forward-off",
    Verdict.IP_FORWARDING_DISABLED,
    "set net.ipv4.ip_forward=0 on a node",
    Needs.NODE,
    _inject_ip_forward,
    _heal_ip_forward,
    NodeUndo,
)
FORWARD_DROP = Fault(
    "forward-drop",
    Verdict.FORWARD_CHAIN_DROPS,
    "set the FORWARD chain's policy to DROP on a node",
    Needs.NODE,
    _inject_forward_drop,
    _heal_forward_drop,
    NodeUndo,
)
OVERLAY_DOWN = Fault(
    "overlay-down",
    Verdict.OVERLAY_DEVICE_DOWN,
    "take a node's overlay device (flannel.1 / vxlan.calico) down",
    Needs.NODE,
    _inject_overlay_down,
    _heal_node_network,
    NodeUndo,
)
OVERLAY_FDB_MISSING = Fault(
    "overlay-fdb-missing",
    Verdict.OVERLAY_DEVICE_DOWN,
    "delete the overlay FDB entry for a remote node's VTEP",
    Needs.NODE,
    _inject_fdb_missing,
    _heal_node_network,
    NodeUndo,
)
RP_FILTER_STRICT = Fault(
    "rp-filter-strict",
    Verdict.RP_FILTER_DROPS,
    "strict rp_filter on a node where a pod's traffic arrives asymmetrically",
    Needs.NODE_POD,
    _inject_rp_filter,
    _heal_rp_filter,
    RpFilterUndo,
)
AGENT_DOWN = Fault(
    "agent-down",
    Verdict.AGENT_UNREACHABLE,
    "kill a node's kubereach agent",
    Needs.NODE,
    _inject_agent_down,
    _heal_agent_down,
    AgentUndo,
)
