"""Helpers the faults share: finding objects, reading and recreating routes, restarting lab processes."""

from __future__ import annotations

import json
from collections.abc import Callable

from lab import build, kernel, processes
from lab.errors import LabError
from lab.faults.model import FaultContext, FaultTarget, Obj
from lab.lifecycle import podserver_argv, start_kube_proxy, wait_kube_proxies_synced
from lab.plan import LabPlan, NodePlan, PodPlan


def pod_key(pod: Obj) -> str:
    """`namespace/name` of a pod object."""
    return f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"


def svc_key(svc: Obj) -> str:
    """`namespace/name` of a service object."""
    return f"{svc['metadata']['namespace']}/{svc['metadata']['name']}"


def find(items: list[Obj], wanted: str, what: str, key: Callable[[Obj], str]) -> Obj:
    """The one object named `wanted` (namespace/name or name), or one clear error."""
    matches = [o for o in items if key(o) == wanted or o["metadata"]["name"] == wanted]
    if len(matches) == 1:
        return matches[0]
    choices = ", ".join(sorted(key(o) for o in items))
    if not matches:
        raise LabError(f"unknown {what} {wanted!r}; choose one of: {choices}", exit_code=2)
    raise LabError(f"{what} {wanted!r} is ambiguous; say namespace/name: {', '.join(key(o) for o in matches)}", exit_code=2)


def find_pod(ctx: FaultContext, wanted: str) -> Obj:
    """The current pod named `wanted`."""
    return find(ctx.pods(), wanted, "pod", pod_key)


def find_service(ctx: FaultContext, wanted: str) -> Obj:
    """The current service named `wanted`."""
    return find(ctx.services(), wanted, "service", svc_key)


def pod_netns(ctx: FaultContext, pod: Obj) -> str:
    """The network namespace a pod lives in."""
    return ctx.pod_plan(pod).netns


def ready_pods_of(ctx: FaultContext, svc: Obj) -> list[Obj]:
    """The pods a service selects."""
    selector = svc["spec"].get("selector") or {}
    ns = svc["metadata"]["namespace"]
    return [
        p
        for p in ctx.pods()
        if p["metadata"]["namespace"] == ns
        and selector
        and all(p["metadata"].get("labels", {}).get(k) == v for k, v in selector.items())
    ]


def patch_pod_status(ctx: FaultContext, pod: Obj, status: Obj) -> None:
    """Replace a pod's status through the API (the lab plays the kubelet)."""
    ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
    ctx.api.merge_patch(f"/api/v1/namespaces/{ns}/pods/{name}/status", {"status": status})


def _ip_json(netns: str, args: list[str]) -> list[Obj]:
    """`ip -j ARGS` in a namespace, as data (an empty list when it prints nothing)."""
    out = kernel.exec_in(netns, ["ip", "-j", *args]).stdout.strip()
    data: list[Obj] = json.loads(out) if out else []
    return data


def route_json(netns: str, cidr: str) -> list[Obj]:
    """`ip -j route show exact CIDR` in a namespace."""
    return _ip_json(netns, ["route", "show", "exact", cidr])


def all_routes_json(netns: str) -> list[Obj]:
    """`ip -j -4 route show` (the main table) in a namespace."""
    return _ip_json(netns, ["-4", "route", "show"])


def permanent_neighbours_json(netns: str) -> list[Obj]:
    """`ip -j -4 neigh show nud permanent` in a namespace."""
    return _ip_json(netns, ["-4", "neigh", "show", "nud", "permanent"])


def neighbour_cmd(entry: Obj) -> list[str]:
    """An `ip neigh` argument list that recreates a permanent entry as `ip -j neigh show` printed it."""
    return [entry["dst"], "lladdr", entry["lladdr"], "dev", entry["dev"], "nud", "permanent"]


def route_cmd(route: Obj) -> list[str]:
    """An `ip route` argument list that recreates a route as `ip -j route show` printed it."""
    args = [route["type"], route["dst"]] if route.get("type") not in (None, "unicast") else [route["dst"]]
    if route.get("gateway"):
        args += ["via", route["gateway"]]
    if route.get("dev"):
        args += ["dev", route["dev"]]
    if "onlink" in route.get("flags", []):
        args.append("onlink")
    if route.get("scope") and route.get("scope") != "global":
        args += ["scope", route["scope"]]
    return args


def overlay_device(plan: LabPlan) -> str:
    """The overlay device of the lab's CNI, or one clear error when it has none."""
    device = build.overlay_device(plan)
    if device is None:
        raise LabError(f"this fault needs an overlay CNI (flannel-vxlan or calico); the lab runs {plan.options.cni}", exit_code=2)
    return device


def restart_pod_process(ctx: FaultContext, pod: PodPlan) -> None:
    """Start a pod's server again and wait until it is ready."""
    started = processes.spawn(
        f"pod/{pod.key}",
        podserver_argv(ctx.plan, pod, ctx.state),
        ctx.state.path / "logs" / f"pod-{pod.namespace}-{pod.name}.log",
        with_ready_pipe=True,
    )
    processes.wait_ready([started], 15)
    ctx.state.processes[started.name] = started.pid


def stop_pod_process(ctx: FaultContext, pod: PodPlan) -> None:
    """Stop every process of a pod's namespace."""
    pids = processes.find_lab_processes([pod.netns], [])
    recorded = ctx.state.processes.pop(f"pod/{pod.key}", None)
    if recorded:
        pids.add(recorded)
    processes.stop(pids)


def other_node(ctx: FaultContext, node: NodePlan) -> NodePlan:
    """A node other than `node`."""
    others = [n for n in ctx.plan.nodes if n.name != node.name]
    if not others:
        raise LabError("this fault needs at least two nodes", exit_code=2)
    return others[0]


def remote_node(ctx: FaultContext, t: FaultTarget, node: NodePlan) -> NodePlan:
    """The target pod's node when it is not `node`, else another node."""
    if t.pod and t.pod["spec"]["nodeName"] != node.name:
        return ctx.plan.node(t.pod["spec"]["nodeName"])
    return other_node(ctx, node)


def restart_kube_proxy(ctx: FaultContext, node: str) -> None:
    """Restart a node's kube-proxy and wait until it has synced."""
    pid = ctx.state.processes.get(f"kube-proxy/{node}")
    if pid:
        processes.stop([pid])
    started = start_kube_proxy(ctx.plan, ctx.state, node)  # removes the old status file first
    ctx.state.processes[started.name] = started.pid
    ctx.state.save()
    wait_kube_proxies_synced(ctx.state, [node])
