"""Pod faults: the pod's veth and bridge port, its routes and MTU, its server, its status and address."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

from lab import kernel, processes
from lab.errors import LabError
from lab.faults.common import (
    all_routes_json,
    find_pod,
    neighbour_cmd,
    patch_pod_status,
    permanent_neighbours_json,
    pod_key,
    pod_netns,
    restart_pod_process,
    route_cmd,
    route_json,
    stop_pod_process,
)
from lab.faults.model import Fault, FaultContext, FaultTarget, Needs, Obj, Undo, Verdict


@dataclass(frozen=True)
class PodUndo(Undo):
    """A pod whose link or server `heal` puts back."""

    pod: str


@dataclass(frozen=True)
class PodRoutesUndo(Undo):
    """A pod's routes as they were."""

    pod: str
    routes: list[Obj]


@dataclass(frozen=True)
class MtuUndo(Undo):
    """A pod's eth0 MTU as it was."""

    pod: str
    mtu: int


@dataclass(frozen=True)
class PodStatusUndo(Undo):
    """A pod's status as it was; with `address`, also the address (and the routes and permanent
    neighbours) its eth0 lost."""

    pod: str
    status: Obj
    address: str | None = None
    routes: list[Obj] | None = None
    neighbours: list[Obj] | None = None
    omit_when_none: ClassVar[tuple[str, ...]] = ("address", "routes", "neighbours")


def _inject_veth_down(ctx: FaultContext, t: FaultTarget) -> tuple[str, PodUndo]:
    assert t.pod is not None
    plan = ctx.pod_plan(t.pod)
    node = ctx.plan.node(plan.node)
    kernel.exec_in(node.netns, ["ip", "link", "set", plan.host_veth, "down"])
    return f"{plan.host_veth} (host side of {pod_key(t.pod)}'s eth0) on {node.name} is down", PodUndo(pod_key(t.pod))


def _heal_veth_down(ctx: FaultContext, undo: PodUndo) -> None:
    plan = ctx.pod_plan(find_pod(ctx, undo.pod))
    kernel.exec_in(ctx.plan.node(plan.node).netns, ["ip", "link", "set", plan.host_veth, "up"])
    if not ctx.plan.bridge_cni:  # a calico /32 route goes away with its link
        kernel.exec_in(
            ctx.plan.node(plan.node).netns, ["ip", "route", "replace", f"{plan.ip}/32", "dev", plan.host_veth, "scope", "link"]
        )


def _inject_veth_off_bridge(ctx: FaultContext, t: FaultTarget) -> tuple[str, PodUndo]:
    assert t.pod is not None
    if not ctx.plan.bridge_cni:
        raise LabError("veth-off-bridge needs a bridge CNI (host-gw or flannel-vxlan); calico has no bridge", exit_code=2)
    plan = ctx.pod_plan(t.pod)
    kernel.exec_in(ctx.plan.node(plan.node).netns, ["ip", "link", "set", plan.host_veth, "nomaster"])
    return f"{plan.host_veth} ({pod_key(t.pod)}) was taken off cni0 on {plan.node}", PodUndo(pod_key(t.pod))


def _heal_veth_off_bridge(ctx: FaultContext, undo: PodUndo) -> None:
    plan = ctx.pod_plan(find_pod(ctx, undo.pod))
    netns = ctx.plan.node(plan.node).netns
    kernel.exec_in(netns, ["ip", "link", "set", plan.host_veth, "master", "cni0"])
    kernel.exec_in(netns, ["ip", "link", "set", plan.host_veth, "type", "bridge_slave", "hairpin", "on"])


def _inject_pod_route(ctx: FaultContext, t: FaultTarget) -> tuple[str, PodRoutesUndo]:
    assert t.pod is not None
    netns = pod_netns(ctx, t.pod)
    routes = route_json(netns, "default")
    if not routes:
        raise LabError(f"{pod_key(t.pod)} has no default route to remove", exit_code=2)
    kernel.exec_in(netns, ["ip", "route", "del", "default"])
    return f"{pod_key(t.pod)} lost its default route", PodRoutesUndo(pod_key(t.pod), routes)


def _heal_pod_route(ctx: FaultContext, undo: PodRoutesUndo) -> None:
    netns = pod_netns(ctx, find_pod(ctx, undo.pod))
    for route in undo.routes:
        kernel.exec_in(netns, ["ip", "route", "replace", *route_cmd(route)])


def _inject_mtu(ctx: FaultContext, t: FaultTarget) -> tuple[str, MtuUndo]:
    assert t.pod is not None
    plan = ctx.pod_plan(t.pod)
    mtu = plan.mtu + 50 if plan.mtu < 1500 else 9000
    # The pod believes its path carries `mtu`; the host side (and the overlay) carry less, and a veth
    # drops frames larger than its peer's MTU without a word: the classic MTU black hole.
    kernel.exec_in(plan.netns, ["ip", "link", "set", "eth0", "mtu", str(mtu)])
    return (
        f"{pod_key(t.pod)}'s eth0 MTU is {mtu}, above the {plan.mtu} its veth and the overlay carry",
        MtuUndo(pod_key(t.pod), plan.mtu),
    )


def _heal_mtu(ctx: FaultContext, undo: MtuUndo) -> None:
    netns = pod_netns(ctx, find_pod(ctx, undo.pod))
    kernel.exec_in(netns, ["ip", "link", "set", "eth0", "mtu", str(undo.mtu)])


def _inject_not_listening(ctx: FaultContext, t: FaultTarget) -> tuple[str, PodUndo]:
    assert t.pod is not None
    stop_pod_process(ctx, ctx.pod_plan(t.pod))
    return f"the server in {pod_key(t.pod)} stopped listening (the pod still looks Running and Ready)", PodUndo(pod_key(t.pod))


def heal_restart_pod(ctx: FaultContext, undo: PodUndo) -> None:
    """Start a pod's server again unless something already runs in its namespace."""
    plan = ctx.pod_plan(find_pod(ctx, undo.pod))
    if not processes.find_lab_processes([plan.netns], []):
        restart_pod_process(ctx, plan)


def _inject_pod_not_running(ctx: FaultContext, t: FaultTarget) -> tuple[str, PodStatusUndo]:
    assert t.pod is not None
    stop_pod_process(ctx, ctx.pod_plan(t.pod))
    original = t.pod["status"]
    status = json.loads(json.dumps(original))
    for c in status.get("conditions", []):
        if c["type"] in ("Ready", "ContainersReady"):
            c["status"], c["reason"] = "False", "ContainersNotReady"
    for cs in status.get("containerStatuses", []):
        cs.update(
            ready=False,
            started=False,
            restartCount=7,
            state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s restarting failed container"}},
            lastState={"terminated": {"exitCode": 1, "reason": "Error"}},
        )
    patch_pod_status(ctx, t.pod, status)
    return f"{pod_key(t.pod)} is in CrashLoopBackOff", PodStatusUndo(pod_key(t.pod), original)


def _heal_pod_status_and_process(ctx: FaultContext, undo: PodStatusUndo) -> None:
    pod = find_pod(ctx, undo.pod)
    if undo.address:
        plan = ctx.pod_plan(pod)
        prefix = "/24" if ctx.plan.bridge_cni else "/32"
        kernel.exec_in(plan.netns, ["ip", "addr", "replace", undo.address + prefix, "dev", "eth0"])
        # the address brings its own subnet route back; the others go back link routes first
        kept = [r for r in undo.routes or [] if r.get("protocol") != "kernel"]
        for route in sorted(kept, key=lambda r: bool(r.get("gateway"))):
            kernel.exec_in(plan.netns, ["ip", "route", "replace", *route_cmd(route)])
        for entry in undo.neighbours or []:
            kernel.exec_in(plan.netns, ["ip", "neigh", "replace", *neighbour_cmd(entry)])
    patch_pod_status(ctx, pod, undo.status)
    if not undo.address:
        heal_restart_pod(ctx, PodUndo(undo.pod))


def _inject_pod_no_ip(ctx: FaultContext, t: FaultTarget) -> tuple[str, PodStatusUndo]:
    assert t.pod is not None
    plan = ctx.pod_plan(t.pod)
    ip = t.pod["status"]["podIP"]
    # Every route, not only the default: with its last address gone the kernel drops the routes
    # through eth0 too, and Calico's default route needs its link route to 169.254.1.1 back first.
    routes = all_routes_json(plan.netns)
    # ... and its neighbours, the permanent ones too (the lab pins Calico's gateway, 169.254.1.1)
    neighbours = permanent_neighbours_json(plan.netns)
    prefix = "/24" if ctx.plan.bridge_cni else "/32"
    kernel.exec_in(plan.netns, ["ip", "addr", "del", ip + prefix, "dev", "eth0"])
    original = t.pod["status"]
    ctx.api.merge_patch(
        f"/api/v1/namespaces/{t.pod['metadata']['namespace']}/pods/{t.pod['metadata']['name']}/status",
        {"status": {"podIP": None, "podIPs": None}},
    )
    return (
        f"{pod_key(t.pod)} is Running without an IP (its eth0 lost {ip}: IPAM failure)",
        PodStatusUndo(pod_key(t.pod), original, address=ip, routes=routes, neighbours=neighbours),
    )


VETH_DOWN = Fault(
    "veth-down",
    Verdict.POD_INTERFACE_DOWN,
    "set the host-side veth of a pod down",
    Needs.POD,
    _inject_veth_down,
    _heal_veth_down,
    PodUndo,
)
VETH_OFF_BRIDGE = Fault(
    "veth-off-bridge",
    Verdict.VETH_NOT_ON_BRIDGE,
    "take a pod's host-side veth off the cni0 bridge",
    Needs.POD,
    _inject_veth_off_bridge,
    _heal_veth_off_bridge,
    PodUndo,
)
POD_ROUTE_MISSING = Fault(
    "pod-route-missing",
    Verdict.POD_ROUTE_MISSING,
    "delete a pod's default route",
    Needs.POD,
    _inject_pod_route,
    _heal_pod_route,
    PodRoutesUndo,
)
MTU_MISMATCH = Fault(
    "mtu-mismatch",
    Verdict.MTU_MISMATCH,
    "raise a pod's eth0 MTU above what its veth and the overlay carry",
    Needs.POD,
    _inject_mtu,
    _heal_mtu,
    MtuUndo,
)
NOT_LISTENING = Fault(
    "not-listening",
    Verdict.DESTINATION_NOT_LISTENING,
    "stop the server inside a pod (it stays Running and Ready)",
    Needs.POD,
    _inject_not_listening,
    heal_restart_pod,
    PodUndo,
)
CRASHLOOP = Fault(
    "pod-crashloop",
    Verdict.SOURCE_POD_NOT_RUNNING,
    "crash a pod's container into CrashLoopBackOff",
    Needs.POD,
    _inject_pod_not_running,
    _heal_pod_status_and_process,
    PodStatusUndo,
)
NO_IP = Fault(
    "pod-no-ip",
    Verdict.POD_HAS_NO_IP,
    "leave a Running pod without an IP (IPAM failure)",
    Needs.POD,
    _inject_pod_no_ip,
    _heal_pod_status_and_process,
    PodStatusUndo,
)
