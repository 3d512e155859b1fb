"""The fault catalog: break one thing the way it breaks in real clusters, and heal it again.

A fault changes real kernel state inside a lab namespace (a route, a sysctl, a link, a firewall
policy, a conntrack entry, a process) or a real API object through the API server — never a flag
the bot or an agent could read. Each injection is recorded in the lab state with what `heal` needs
to restore it; `heal` undoes the recorded faults newest first.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lab import build, kernel, processes
from lab.apiclient import LabApi
from lab.errors import LabError
from lab.lifecycle import (
    kube_proxy_generation,
    plan_of,
    podserver_argv,
    start_agent,
    start_kube_proxy,
    wait_agents,
    wait_kube_proxies_synced,
)
from lab.plan import LabPlan, NodePlan, PodPlan, host_veth_name, pod_netns_name, uid_for
from lab.state import LabState, require_state
from lab.upstream.placement import pod_plan as upstream_pod_plan

Obj = dict[str, Any]


@dataclass(frozen=True)
class FaultTarget:
    """What the user pointed the fault at (validated), with lab defaults filled in."""

    node: NodePlan | None
    pod: Obj | None
    service: Obj | None


@dataclass
class FaultContext:
    """Everything a fault needs: the lab, its plan, its API."""

    state: LabState
    plan: LabPlan
    api: LabApi

    def pods(self) -> list[Obj]:
        """Current (non-hostNetwork) pods from the API."""
        return [p for p in self.api.get("/api/v1/pods")["items"] if not p["spec"].get("hostNetwork")]

    def services(self) -> list[Obj]:
        """Current services from the API."""
        items: list[Obj] = self.api.get("/api/v1/services")["items"]
        return items

    def pod_plan(self, pod: Obj) -> PodPlan:
        """A PodPlan for a pod object (pods made by faults are not in the original plan)."""
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        if self.state.kubernetes:  # upstream controllers name the pods; the lab's kubelet built them by this mapping
            return upstream_pod_plan(self.plan, pod, self.plan.node(pod["spec"]["nodeName"]), pod["status"].get("podIP", ""))
        for p in self.plan.pods:
            if p.namespace == ns and p.name == name:
                return p
        netns = pod["metadata"].get("annotations", {}).get("kubereach.io/lab-netns") or pod_netns_name(
            self.state.prefix, ns, name
        )
        labels = pod["metadata"].get("labels", {})
        base = next((p for p in self.plan.pods if p.namespace == ns and dict(p.labels) == labels), None)
        if base is None:
            raise LabError(f"pod {ns}/{name} was not made by the lab; it cannot be changed by a fault", exit_code=2)
        return dataclasses.replace(
            base,
            name=name,
            uid=uid_for("pod", ns, name),
            node=pod["spec"]["nodeName"],
            ip=pod["status"].get("podIP", ""),
            netns=netns,
            host_veth=host_veth_name(self.plan.options.cni, self.state.prefix, ns, name),
        )


@dataclass(frozen=True)
class Fault:
    """One entry of the catalog."""

    name: str
    verdict: str
    summary: str
    needs: str  # "node", "pod", "service", "node+pod", "node+service"
    inject: Callable[[FaultContext, FaultTarget], tuple[str, Obj]]
    heal: Callable[[FaultContext, Obj], None]


# ------------------------------------------------------------------------------------ helpers


def _pod_key(pod: Obj) -> str:
    return f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"


def _svc_key(svc: Obj) -> str:
    return f"{svc['metadata']['namespace']}/{svc['metadata']['name']}"


def _find(items: list[Obj], wanted: str, what: str, key: Callable[[Obj], str]) -> Obj:
    matches = [o for o in items if key(o) == wanted or o["metadata"]["name"] == wanted]
    if len(matches) == 1:
        return matches[0]
    choices = ", ".join(sorted(key(o) for o in items))
    if not matches:
        raise LabError(f"unknown {what} {wanted!r}; choose one of: {choices}", exit_code=2)
    raise LabError(f"{what} {wanted!r} is ambiguous; say namespace/name: {', '.join(key(o) for o in matches)}", exit_code=2)


def _pod_netns(ctx: FaultContext, pod: Obj) -> str:
    return ctx.pod_plan(pod).netns


def _ready_pods_of(ctx: FaultContext, svc: Obj) -> list[Obj]:
    selector = svc["spec"].get("selector") or {}
    ns = svc["metadata"]["namespace"]
    return [
        p
        for p in ctx.pods()
        if p["metadata"]["namespace"] == ns
        and selector
        and all(p["metadata"].get("labels", {}).get(k) == v for k, v in selector.items())
    ]


def _route_json(netns: str, cidr: str) -> list[Obj]:
    out = kernel.exec_in(netns, ["ip", "-j", "route", "show", "exact", cidr]).stdout.strip()
    data: list[Obj] = json.loads(out) if out else []
    return data


def _route_cmd(route: Obj) -> list[str]:
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


def _overlay_device(plan: LabPlan) -> str:
    device = build.overlay_device(plan)
    if device is None:
        raise LabError(f"this fault needs an overlay CNI (flannel-vxlan or calico); the lab runs {plan.options.cni}", exit_code=2)
    return device


def _restart_pod_process(ctx: FaultContext, pod: PodPlan) -> None:
    started = processes.spawn(
        f"pod/{pod.key}",
        podserver_argv(ctx.plan, pod, ctx.state),
        ctx.state.path / "logs" / f"pod-{pod.namespace}-{pod.name}.log",
        with_ready_pipe=True,
    )
    processes.wait_ready([started], 15)
    ctx.state.processes[started.name] = started.pid


def _stop_pod_process(ctx: FaultContext, pod: PodPlan) -> None:
    pids = processes.find_lab_processes([pod.netns], [])
    recorded = ctx.state.processes.pop(f"pod/{pod.key}", None)
    if recorded:
        pids.add(recorded)
    processes.stop(pids)


def _other_node(ctx: FaultContext, node: NodePlan) -> NodePlan:
    others = [n for n in ctx.plan.nodes if n.name != node.name]
    if not others:
        raise LabError("this fault needs at least two nodes", exit_code=2)
    return others[0]


def _restart_kube_proxy(ctx: FaultContext, node: str) -> None:
    pid = ctx.state.processes.get(f"kube-proxy/{node}")
    if pid:
        processes.stop([pid])
    started = start_kube_proxy(ctx.plan, ctx.state, node)  # removes the old status file first
    ctx.state.processes[started.name] = started.pid
    ctx.state.save()
    wait_kube_proxies_synced(ctx.state, [node])


# ------------------------------------------------------------------------------ node faults


def _inject_route_missing(ctx: FaultContext, t: FaultTarget) -> tuple[str, Obj]:
    assert t.node is not None
    remote = (
        ctx.plan.node(t.pod["spec"]["nodeName"])
        if t.pod and t.pod["spec"]["nodeName"] != t.node.name
        else _other_node(ctx, t.node)
    )
    routes = _route_json(t.node.netns, remote.pod_cidr)
    if not routes:
        raise LabError(f"{t.node.name} has no route to {remote.pod_cidr} to remove", exit_code=2)
    kernel.exec_in(t.node.netns, ["ip", "route", "del", remote.pod_cidr])
    return f"{t.node.name} lost its route to {remote.name}'s pod CIDR {remote.pod_cidr}", {"node": t.node.name, "routes": routes}


def _inject_route_wrong(ctx: FaultContext, t: FaultTarget) -> tuple[str, Obj]:
    assert t.node is not None
    remote = (
        ctx.plan.node(t.pod["spec"]["nodeName"])
        if t.pod and t.pod["spec"]["nodeName"] != t.node.name
        else _other_node(ctx, t.node)
    )
    routes = _route_json(t.node.netns, remote.pod_cidr)
    # A stale route left by a replaced node: its gateway address is on the fabric but nobody holds it.
    fabric = ipaddress.ip_network(f"{t.node.ip}/24", strict=False)
    gateway = str(fabric.network_address + 250)
    kernel.exec_in(t.node.netns, ["ip", "route", "replace", remote.pod_cidr, "via", gateway, "dev", "eth0"])
    return f"{t.node.name} routes {remote.pod_cidr} ({remote.name}'s pods) via {gateway}, an address no node has", {
        "node": t.node.name,
        "routes": routes,
        "replaced": remote.pod_cidr,
    }


def _heal_routes(ctx: FaultContext, undo: Obj) -> None:
    netns = ctx.plan.node(undo["node"]).netns
    if undo.get("replaced"):
        kernel.exec_in(netns, ["ip", "route", "del", undo["replaced"]], check=False)
    for route in undo["routes"]:
        kernel.exec_in(netns, ["ip", "route", "replace", *_route_cmd(route)])


def _inject_ip_forward(ctx: FaultContext, t: FaultTarget) -> tuple[str, Obj]:
    assert t.node is not None
    kernel.write_sysctls(t.node.netns, {"net.ipv4.ip_forward": 0})
    return f"net.ipv4.ip_forward=0 on {t.node.name}", {"node": t.node.name}


def _heal_ip_forward(ctx: FaultContext, undo: Obj) -> None:
    kernel.write_sysctls(ctx.plan.node(undo["node"]).netns, {"net.ipv4.ip_forward": 1})


def _inject_forward_drop(ctx: FaultContext, t: FaultTarget) -> tuple[str, Obj]:
    assert t.node is not None
    kernel.exec_in(t.node.netns, ["iptables", "-t", "filter", "-P", "FORWARD", "DROP"])
    return f"the filter FORWARD chain on {t.node.name} has policy DROP", {"node": t.node.name}


def _heal_forward_drop(ctx: FaultContext, undo: Obj) -> None:
    kernel.exec_in(ctx.plan.node(undo["node"]).netns, ["iptables", "-t", "filter", "-P", "FORWARD", "ACCEPT"])


def _inject_conntrack_full(ctx: FaultContext, t: FaultTarget) -> tuple[str, Obj]:
    from lab.conntrack_fill import fill

    assert t.node is not None
    limit = int(kernel.read_sysctl(t.node.netns, "net.netfilter.nf_conntrack_max"))
    count = fill(t.node.netns, limit, src_net="10.248.0.0/14", dst="10.255.255.1", dport=9, protocol="udp")
    return f"the conntrack table on {t.node.name} is full ({count}/{limit} entries)", {"node": t.node.name}


def _heal_conntrack_full(ctx: FaultContext, undo: Obj) -> None:
    from lab.conntrack_fill import flush

    flush(ctx.plan.node(undo["node"]).netns, only_lab_range="10.248.0.0/14")


def _inject_overlay_down(ctx: FaultContext, t: FaultTarget) -> tuple[str, Obj]:
    assert t.node is not None
    device = _overlay_device(ctx.plan)
    kernel.exec_in(t.node.netns, ["ip", "link", "set", device, "down"])
    return f"{device} on {t.node.name} is down", {"node": t.node.name}


def _inject_fdb_missing(ctx: FaultContext, t: FaultTarget) -> tuple[str, Obj]:
    assert t.node is not None
    device = _overlay_device(ctx.plan)
    remote = (
        ctx.plan.node(t.pod["spec"]["nodeName"])
        if t.pod and t.pod["spec"]["nodeName"] != t.node.name
        else _other_node(ctx, t.node)
    )
    kernel.run(["bridge", "-n", t.node.netns, "fdb", "del", remote.vtep_mac, "dev", device, "dst", remote.ip])
    return f"{device} on {t.node.name} lost its FDB entry for {remote.name}'s VTEP {remote.vtep_mac}", {"node": t.node.name}


def _heal_node_network(ctx: FaultContext, undo: Obj) -> None:
    """Re-converge a node's links, overlay entries and routes to the plan (idempotent)."""
    node = ctx.plan.node(undo["node"])
    device = build.overlay_device(ctx.plan)
    routes, fdb = build.remote_pod_routes(ctx.plan, node, "replace")
    kernel.ip_batch(node.netns, ["link set eth0 up", *([f"link set {device} up"] if device else []), *routes])
    kernel.bridge_batch(node.netns, fdb)


def _inject_rp_filter(ctx: FaultContext, t: FaultTarget) -> tuple[str, Obj]:
    assert t.node is not None
    device = _overlay_device(ctx.plan)
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
        f"strict rp_filter on {t.node.name}'s {device}, where {_pod_key(source)}'s packets arrive "
        "while the route back to it leaves eth0",
        {"node": t.node.name, "route": f"{src_ip}/32", "device": device},
    )


def _heal_rp_filter(ctx: FaultContext, undo: Obj) -> None:
    netns = ctx.plan.node(undo["node"]).netns
    kernel.exec_in(netns, ["ip", "route", "del", undo["route"]], check=False)
    kernel.write_sysctls(
        netns, {"net.ipv4.conf.all.rp_filter": 0, f"net.ipv4.conf.{undo['device'].replace('.', '/')}.rp_filter": 0}
    )


def _inject_agent_down(ctx: FaultContext, t: FaultTarget) -> tuple[str, Obj]:
    assert t.node is not None
    pid = ctx.state.processes.get(f"agent/{t.node.name}")
    if not pid or not processes.alive(pid):
        raise LabError(f"the agent of {t.node.name} is not running", exit_code=2)
    processes.stop([pid])
    return f"the kubereach agent on {t.node.name} was killed", {"node": t.node.name, "address": ctx.state.agents.get(t.node.name)}


def _heal_agent_down(ctx: FaultContext, undo: Obj) -> None:
    node = undo["node"]
    if processes.alive(ctx.state.processes.get(f"agent/{node}", -1)):
        return
    started = start_agent(ctx.plan, ctx.state, node, listen=undo.get("address") or "127.0.0.1:0")
    ctx.state.processes[started.name] = started.pid
    ctx.state.agents.update(wait_agents(ctx.state, [node]))


# ------------------------------------------------------------------------------- pod faults


def _inject_veth_down(ctx: FaultContext, t: FaultTarget) -> tuple[str, Obj]:
    assert t.pod is not None
    plan = ctx.pod_plan(t.pod)
    node = ctx.plan.node(plan.node)
    kernel.exec_in(node.netns, ["ip", "link", "set", plan.host_veth, "down"])
    return f"{plan.host_veth} (host side of {_pod_key(t.pod)}'s eth0) on {node.name} is down", {"pod": _pod_key(t.pod)}


def _heal_veth_down(ctx: FaultContext, undo: Obj) -> None:
    pod = _find(ctx.pods(), undo["pod"], "pod", _pod_key)
    plan = ctx.pod_plan(pod)
    kernel.exec_in(ctx.plan.node(plan.node).netns, ["ip", "link", "set", plan.host_veth, "up"])
    if not ctx.plan.bridge_cni:  # a calico /32 route goes away with its link
        kernel.exec_in(
            ctx.plan.node(plan.node).netns, ["ip", "route", "replace", f"{plan.ip}/32", "dev", plan.host_veth, "scope", "link"]
        )


def _inject_veth_off_bridge(ctx: FaultContext, t: FaultTarget) -> tuple[str, Obj]:
    assert t.pod is not None
    if not ctx.plan.bridge_cni:
        raise LabError("veth-off-bridge needs a bridge CNI (host-gw or flannel-vxlan); calico has no bridge", exit_code=2)
    plan = ctx.pod_plan(t.pod)
    kernel.exec_in(ctx.plan.node(plan.node).netns, ["ip", "link", "set", plan.host_veth, "nomaster"])
    return f"{plan.host_veth} ({_pod_key(t.pod)}) was taken off cni0 on {plan.node}", {"pod": _pod_key(t.pod)}


def _heal_veth_off_bridge(ctx: FaultContext, undo: Obj) -> None:
    plan = ctx.pod_plan(_find(ctx.pods(), undo["pod"], "pod", _pod_key))
    netns = ctx.plan.node(plan.node).netns
    kernel.exec_in(netns, ["ip", "link", "set", plan.host_veth, "master", "cni0"])
    kernel.exec_in(netns, ["ip", "link", "set", plan.host_veth, "type", "bridge_slave", "hairpin", "on"])


def _inject_pod_route(ctx: FaultContext, t: FaultTarget) -> tuple[str, Obj]:
    assert t.pod is not None
    netns = _pod_netns(ctx, t.pod)
    routes = _route_json(netns, "default")
    if not routes:
        raise LabError(f"{_pod_key(t.pod)} has no default route to remove", exit_code=2)
    kernel.exec_in(netns, ["ip", "route", "del", "default"])
    return f"{_pod_key(t.pod)} lost its default route", {"pod": _pod_key(t.pod), "routes": routes}


def _heal_pod_route(ctx: FaultContext, undo: Obj) -> None:
    netns = _pod_netns(ctx, _find(ctx.pods(), undo["pod"], "pod", _pod_key))
    for route in undo["routes"]:
        kernel.exec_in(netns, ["ip", "route", "replace", *_route_cmd(route)])


def _inject_mtu(ctx: FaultContext, t: FaultTarget) -> tuple[str, Obj]:
    assert t.pod is not None
    plan = ctx.pod_plan(t.pod)
    mtu = plan.mtu + 50 if plan.mtu < 1500 else 9000
    # The pod believes its path carries `mtu`; the host side (and the overlay) carry less, and a veth
    # drops frames larger than its peer's MTU without a word: the classic MTU black hole.
    kernel.exec_in(plan.netns, ["ip", "link", "set", "eth0", "mtu", str(mtu)])
    return f"{_pod_key(t.pod)}'s eth0 MTU is {mtu}, above the {plan.mtu} its veth and the overlay carry", {
        "pod": _pod_key(t.pod),
        "mtu": plan.mtu,
    }


def _heal_mtu(ctx: FaultContext, undo: Obj) -> None:
    netns = _pod_netns(ctx, _find(ctx.pods(), undo["pod"], "pod", _pod_key))
    kernel.exec_in(netns, ["ip", "link", "set", "eth0", "mtu", str(undo["mtu"])])


def _inject_not_listening(ctx: FaultContext, t: FaultTarget) -> tuple[str, Obj]:
    assert t.pod is not None
    plan = ctx.pod_plan(t.pod)
    _stop_pod_process(ctx, plan)
    return f"the server in {_pod_key(t.pod)} stopped listening (the pod still looks Running and Ready)", {"pod": _pod_key(t.pod)}


def _heal_restart_pod(ctx: FaultContext, undo: Obj) -> None:
    plan = ctx.pod_plan(_find(ctx.pods(), undo["pod"], "pod", _pod_key))
    if not processes.find_lab_processes([plan.netns], []):
        _restart_pod_process(ctx, plan)


def _inject_pod_not_running(ctx: FaultContext, t: FaultTarget) -> tuple[str, Obj]:
    assert t.pod is not None
    plan = ctx.pod_plan(t.pod)
    _stop_pod_process(ctx, plan)
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
    _patch_pod_status(ctx, t.pod, status)
    return f"{_pod_key(t.pod)} is in CrashLoopBackOff", {"pod": _pod_key(t.pod), "status": original}


def _patch_pod_status(ctx: FaultContext, pod: Obj, status: Obj) -> None:
    ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
    ctx.api.merge_patch(f"/api/v1/namespaces/{ns}/pods/{name}/status", {"status": status})


def _heal_pod_status_and_process(ctx: FaultContext, undo: Obj) -> None:
    pod = _find(ctx.pods(), undo["pod"], "pod", _pod_key)
    if undo.get("address"):
        plan = ctx.pod_plan(pod)
        prefix = "/24" if ctx.plan.bridge_cni else "/32"
        kernel.exec_in(plan.netns, ["ip", "addr", "replace", undo["address"] + prefix, "dev", "eth0"])
        for route in undo.get("routes", []):
            kernel.exec_in(plan.netns, ["ip", "route", "replace", *_route_cmd(route)])
    _patch_pod_status(ctx, pod, undo["status"])
    if not undo.get("address"):
        _heal_restart_pod(ctx, undo)


def _inject_pod_no_ip(ctx: FaultContext, t: FaultTarget) -> tuple[str, Obj]:
    assert t.pod is not None
    plan = ctx.pod_plan(t.pod)
    ip = t.pod["status"]["podIP"]
    routes = _route_json(plan.netns, "default")
    prefix = "/24" if ctx.plan.bridge_cni else "/32"
    kernel.exec_in(plan.netns, ["ip", "addr", "del", ip + prefix, "dev", "eth0"])
    original = t.pod["status"]
    ctx.api.merge_patch(
        f"/api/v1/namespaces/{t.pod['metadata']['namespace']}/pods/{t.pod['metadata']['name']}/status",
        {"status": {"podIP": None, "podIPs": None}},
    )
    return f"{_pod_key(t.pod)} is Running without an IP (its eth0 lost {ip}: IPAM failure)", {
        "pod": _pod_key(t.pod),
        "status": original,
        "address": ip,
        "routes": routes,
    }


# --------------------------------------------------------------------------- service faults


def _svc_path(svc: Obj) -> str:
    return f"/api/v1/namespaces/{svc['metadata']['namespace']}/services/{svc['metadata']['name']}"


def _inject_selector(ctx: FaultContext, t: FaultTarget) -> tuple[str, Obj]:
    assert t.service is not None
    selector = t.service["spec"].get("selector") or {}
    if not selector:
        raise LabError(f"service {_svc_key(t.service)} has no selector to break", exit_code=2)
    key = sorted(selector)[0]
    broken = {**selector, key: selector[key] + "-v2"}
    ctx.api.merge_patch(_svc_path(t.service), {"spec": {"selector": broken}})
    return f"service {_svc_key(t.service)} selects {key}={broken[key]}, which no pod has", {
        "service": _svc_key(t.service),
        "selector": selector,
    }


def _heal_selector(ctx: FaultContext, undo: Obj) -> None:
    svc = _find(ctx.services(), undo["service"], "service", _svc_key)
    current = svc["spec"].get("selector") or {}
    patch = {k: None for k in current if k not in undo["selector"]} | undo["selector"]
    ctx.api.merge_patch(_svc_path(svc), {"spec": {"selector": patch}})


def _inject_target_port(ctx: FaultContext, t: FaultTarget) -> tuple[str, Obj]:
    assert t.service is not None
    ports = t.service["spec"]["ports"]
    broken = json.loads(json.dumps(ports))
    broken[0]["targetPort"] = 18081
    ctx.api.merge_patch(_svc_path(t.service), {"spec": {"ports": broken}})
    return (
        f"service {_svc_key(t.service)} port {ports[0]['port']} now targets 18081, which its pods neither expose nor listen on",
        {
            "service": _svc_key(t.service),
            "ports": ports,
        },
    )


def _heal_ports(ctx: FaultContext, undo: Obj) -> None:
    svc = _find(ctx.services(), undo["service"], "service", _svc_key)
    ctx.api.merge_patch(_svc_path(svc), {"spec": {"ports": undo["ports"]}})


def _inject_not_ready(ctx: FaultContext, t: FaultTarget) -> tuple[str, Obj]:
    assert t.service is not None
    pods = _ready_pods_of(ctx, t.service)
    if not pods:
        raise LabError(f"service {_svc_key(t.service)} has no pods to make unready", exit_code=2)
    saved = {}
    for pod in pods:
        saved[_pod_key(pod)] = pod["status"]
        status = json.loads(json.dumps(pod["status"]))
        for c in status.get("conditions", []):
            if c["type"] in ("Ready", "ContainersReady"):
                c["status"], c["reason"] = "False", "ReadinessProbeFailed"
        for cs in status.get("containerStatuses", []):
            cs["ready"] = False
        _patch_pod_status(ctx, pod, status)
    return f"all {len(pods)} pods of {_svc_key(t.service)} fail their readiness probe", {
        "service": _svc_key(t.service),
        "pods": saved,
    }


def _heal_not_ready(ctx: FaultContext, undo: Obj) -> None:
    pods = ctx.pods()
    for key, status in undo["pods"].items():
        _patch_pod_status(ctx, _find(pods, key, "pod", _pod_key), status)


def _policy_path(ns: str, name: str = "") -> str:
    return f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies" + (f"/{name}" if name else "")


def _inject_policy_ingress(ctx: FaultContext, t: FaultTarget) -> tuple[str, Obj]:
    assert t.service is not None
    ns = t.service["metadata"]["namespace"]
    selector = t.service["spec"].get("selector") or {}
    name = f"deny-all-to-{t.service['metadata']['name']}"
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"podSelector": {"matchLabels": selector}, "policyTypes": ["Ingress"], "ingress": []},
    }
    ctx.api.request("POST", _policy_path(ns), policy)
    return f"NetworkPolicy {ns}/{name} denies all ingress to the pods of {_svc_key(t.service)}", {"namespace": ns, "name": name}


def _inject_policy_egress(ctx: FaultContext, t: FaultTarget) -> tuple[str, Obj]:
    pod = t.pod or next(p for p in ctx.pods() if p["metadata"]["labels"].get("app") == "frontend")
    ns = pod["metadata"]["namespace"]
    labels = {k: v for k, v in pod["metadata"]["labels"].items() if k not in ("pod-template-hash", "controller-revision-hash")}
    labels.pop("statefulset.kubernetes.io/pod-name", None)
    name = f"egress-dns-only-{pod['metadata']['name'].split('-')[0]}"
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "podSelector": {"matchLabels": labels},
            "policyTypes": ["Egress"],
            "egress": [
                {
                    "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
                    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                }
            ],
        },
    }
    ctx.api.request("POST", _policy_path(ns), policy)
    return f"NetworkPolicy {ns}/{name} lets pods with {labels} reach only cluster DNS", {"namespace": ns, "name": name}


def _heal_policy(ctx: FaultContext, undo: Obj) -> None:
    try:
        ctx.api.request("DELETE", _policy_path(undo["namespace"], undo["name"]))
    except LabError as exc:
        if " 404 " not in str(exc):
            raise


def _inject_dns_down(ctx: FaultContext, t: FaultTarget) -> tuple[str, Obj]:
    dns_pods = [p for p in ctx.pods() if p["metadata"]["labels"].get("k8s-app") == "kube-dns"]
    if not dns_pods:
        raise LabError("the lab has no cluster DNS pods (label k8s-app=kube-dns)", exit_code=2)
    for pod in dns_pods:
        _stop_pod_process(ctx, ctx.pod_plan(pod))
    return f"the cluster DNS servers stopped ({', '.join(_pod_key(p) for p in dns_pods)})", {
        "pods": [_pod_key(p) for p in dns_pods]
    }


def _heal_dns_down(ctx: FaultContext, undo: Obj) -> None:
    for key in undo["pods"]:
        _heal_restart_pod(ctx, {"pod": key})


def _inject_proxy_missing(ctx: FaultContext, t: FaultTarget) -> tuple[str, Obj]:
    assert t.node is not None and t.service is not None
    pid = ctx.state.processes.get(f"kube-proxy/{t.node.name}")
    if pid:
        os.kill(pid, signal.SIGSTOP)  # kube-proxy hangs: nothing puts the rules back
    vip = t.service["spec"]["clusterIP"]
    if ctx.plan.options.proxy == "iptables":
        dump = kernel.exec_in(t.node.netns, ["iptables-save", "-t", "nat"]).stdout
        for line in dump.splitlines():
            if line.startswith("-A KUBE-SERVICES ") and f"-d {vip}/32" in line:
                kernel.exec_in(t.node.netns, ["iptables", "-t", "nat", *_delete_argv(line)])
        fdump = kernel.exec_in(t.node.netns, ["iptables-save", "-t", "filter"]).stdout
        for line in fdump.splitlines():
            if line.startswith("-A KUBE-SERVICES ") and f"-d {vip}/32" in line:
                kernel.exec_in(t.node.netns, ["iptables", "-t", "filter", *_delete_argv(line)])
    else:
        doc = json.loads(kernel.exec_in(t.node.netns, ["nft", "-j", "list", "map", "ip", "kube-proxy", "service-ips"]).stdout)
        for item in doc["nftables"]:
            for elem in item.get("map", {}).get("elem", []):
                key = elem[0]["concat"] if isinstance(elem[0], dict) else []
                if key and key[0] == vip:
                    proto, port = key[1], key[2]
                    kernel.exec_in(
                        t.node.netns,
                        ["nft", "delete", "element", "ip", "kube-proxy", "service-ips", "{", f"{vip} . {proto} . {port}", "}"],
                    )
    return f"kube-proxy on {t.node.name} is hung and the rules for {_svc_key(t.service)} ({vip}) are gone from its node", {
        "node": t.node.name
    }


def _delete_argv(save_line: str) -> list[str]:
    """`-A CHAIN rest…` from iptables-save → `-D CHAIN rest…` as an argv (quoted comments kept whole)."""
    import shlex

    parts = shlex.split(save_line)
    return ["-D", *parts[1:]]


def _inject_proxy_stale(ctx: FaultContext, t: FaultTarget) -> tuple[str, Obj]:
    assert t.node is not None and t.service is not None
    pods = _ready_pods_of(ctx, t.service)
    if not pods:
        raise LabError(f"service {_svc_key(t.service)} has no pods to move", exit_code=2)
    pid = ctx.state.processes.get(f"kube-proxy/{t.node.name}")
    if pid:
        os.kill(pid, signal.SIGSTOP)
    moved = []
    for old in pods:
        moved.append(_replace_pod(ctx, old))
    others = [n.name for n in ctx.plan.nodes if n.name != t.node.name]
    gens = {n: kube_proxy_generation(ctx.state, n) or 0 for n in others}
    for n in others:
        wait_kube_proxies_synced(ctx.state, [n], after_generation=gens[n] - 1)
    return (
        f"kube-proxy on {t.node.name} is hung while {_svc_key(t.service)}'s pods were replaced: "
        f"its rules still point to {', '.join(o['status']['podIP'] for o in pods)}",
        {"node": t.node.name, "moved": moved},
    )


def _heal_kube_proxy(ctx: FaultContext, undo: Obj) -> None:
    _restart_kube_proxy(ctx, undo["node"])


def _replace_pod(ctx: FaultContext, old: Obj) -> str:
    """A rollout in miniature: the old pod goes away, a new one with a new name and IP takes its place."""
    old_plan = ctx.pod_plan(old)
    node = ctx.plan.node(old_plan.node)
    used = {p["status"].get("podIP") for p in ctx.pods()}
    net = ipaddress.ip_network(node.pod_cidr)
    ip = next(str(a) for a in list(net.hosts())[100:] if str(a) not in used)
    suffix = ip.replace(".", "")[-5:]
    base = old_plan.name.rsplit("-", 1)[0] if old_plan.owner_kind == "ReplicaSet" else old_plan.name
    new_name = f"{base}-r{suffix}" if old_plan.owner_kind == "ReplicaSet" else f"{base}"
    new_plan = dataclasses.replace(
        old_plan,
        name=new_name if new_name != old_plan.name else f"{old_plan.name}-r",
        uid=uid_for("pod", old_plan.namespace, new_name, ip),
        ip=ip,
        netns=pod_netns_name(ctx.state.prefix, old_plan.namespace, new_name),
        host_veth=host_veth_name(ctx.plan.options.cni, ctx.state.prefix, old_plan.namespace, new_name),
    )
    ns = old["metadata"]["namespace"]
    # The lab plays the kubelet, which has already stopped the pod: it goes at once (grace period 0).
    ctx.api.request("DELETE", f"/api/v1/namespaces/{ns}/pods/{old['metadata']['name']}", {"gracePeriodSeconds": 0})
    _stop_pod_process(ctx, old_plan)
    build.remove_pod(ctx.plan, old_plan)
    build.build_pod(ctx.plan, new_plan)
    _restart_pod_process(ctx, new_plan)
    obj = json.loads(json.dumps(old))
    obj["metadata"] = {
        "name": new_plan.name,
        "namespace": ns,
        "labels": old["metadata"].get("labels", {}),
        "annotations": {**old["metadata"].get("annotations", {}), "kubereach.io/lab-netns": new_plan.netns},
        "ownerReferences": old["metadata"].get("ownerReferences", []),
    }
    obj["status"]["podIP"], obj["status"]["podIPs"] = ip, [{"ip": ip}]
    ctx.api.request("POST", f"/api/v1/namespaces/{ns}/pods", obj)
    created = ctx.api.get(f"/api/v1/namespaces/{ns}/pods/{new_plan.name}")
    if created.get("status", {}).get("podIP") != ip:
        _patch_pod_status(ctx, created, obj["status"])
    return f"{ns}/{new_plan.name}"


def _inject_conntrack_stale(ctx: FaultContext, t: FaultTarget) -> tuple[str, Obj]:
    from lab.conntrack_fill import insert_entry

    assert t.pod is not None and t.service is not None
    port = next((p for p in t.service["spec"]["ports"] if p.get("protocol", "TCP") == "UDP"), None)
    if port is None:
        raise LabError(f"service {_svc_key(t.service)} has no UDP port; stale conntrack entries bite UDP services", exit_code=2)
    node = ctx.plan.node(t.pod["spec"]["nodeName"])
    used = {p["status"].get("podIP") for p in ctx.pods()}
    dead = next(str(a) for a in list(ipaddress.ip_network(_other_node(ctx, node).pod_cidr).hosts())[200:] if str(a) not in used)
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
        f"a stale UDP conntrack entry on {node.name} maps {_pod_key(t.pod)}:{sport} → "
        f"{t.service['spec']['clusterIP']}:{port['port']} "
        f"to {dead}, an endpoint that no longer exists",
        {"node": node.name, "src": t.pod["status"]["podIP"], "sport": sport},
    )


def _heal_conntrack_stale(ctx: FaultContext, undo: Obj) -> None:
    netns = ctx.plan.node(undo["node"]).netns
    kernel.exec_in(netns, ["conntrack", "-D", "-p", "udp", "-s", undo["src"], "--sport", str(undo["sport"])], check=False)


CATALOG: dict[str, Fault] = {
    f.name: f
    for f in (
        Fault(
            "node-route-missing",
            "NODE_ROUTE_MISSING",
            "delete a node's route to another node's pod CIDR",
            "node",
            _inject_route_missing,
            _heal_routes,
        ),
        Fault(
            "node-route-wrong",
            "NODE_ROUTE_MISSING",
            "point a node's route for a pod CIDR at the wrong gateway",
            "node",
            _inject_route_wrong,
            _heal_routes,
        ),
        Fault(
            "ip-forward-off",
            "IP_FORWARDING_DISABLED",
            "set net.ipv4.ip_forward=0 on a node",
            "node",
            _inject_ip_forward,
            _heal_ip_forward,
        ),
        Fault(
            "forward-drop",
            "FORWARD_CHAIN_DROPS",
            "set the FORWARD chain's policy to DROP on a node",
            "node",
            _inject_forward_drop,
            _heal_forward_drop,
        ),
        Fault(
            "conntrack-full",
            "CONNTRACK_TABLE_FULL",
            "fill a node's conntrack table to nf_conntrack_max",
            "node",
            _inject_conntrack_full,
            _heal_conntrack_full,
        ),
        Fault(
            "overlay-down",
            "OVERLAY_DEVICE_DOWN",
            "take a node's overlay device (flannel.1 / vxlan.calico) down",
            "node",
            _inject_overlay_down,
            _heal_node_network,
        ),
        Fault(
            "overlay-fdb-missing",
            "OVERLAY_DEVICE_DOWN",
            "delete the overlay FDB entry for a remote node's VTEP",
            "node",
            _inject_fdb_missing,
            _heal_node_network,
        ),
        Fault(
            "rp-filter-strict",
            "RP_FILTER_DROPS",
            "strict rp_filter on a node where a pod's traffic arrives asymmetrically",
            "node+pod",
            _inject_rp_filter,
            _heal_rp_filter,
        ),
        Fault("agent-down", "AGENT_UNREACHABLE", "kill a node's kubereach agent", "node", _inject_agent_down, _heal_agent_down),
        Fault(
            "veth-down", "POD_INTERFACE_DOWN", "set the host-side veth of a pod down", "pod", _inject_veth_down, _heal_veth_down
        ),
        Fault(
            "veth-off-bridge",
            "VETH_NOT_ON_BRIDGE",
            "take a pod's host-side veth off the cni0 bridge",
            "pod",
            _inject_veth_off_bridge,
            _heal_veth_off_bridge,
        ),
        Fault(
            "pod-route-missing", "POD_ROUTE_MISSING", "delete a pod's default route", "pod", _inject_pod_route, _heal_pod_route
        ),
        Fault(
            "mtu-mismatch",
            "MTU_MISMATCH",
            "raise a pod's eth0 MTU above what its veth and the overlay carry",
            "pod",
            _inject_mtu,
            _heal_mtu,
        ),
        Fault(
            "not-listening",
            "DESTINATION_NOT_LISTENING",
            "stop the server inside a pod (it stays Running and Ready)",
            "pod",
            _inject_not_listening,
            _heal_restart_pod,
        ),
        Fault(
            "pod-crashloop",
            "SOURCE_POD_NOT_RUNNING",
            "crash a pod's container into CrashLoopBackOff",
            "pod",
            _inject_pod_not_running,
            _heal_pod_status_and_process,
        ),
        Fault(
            "pod-no-ip",
            "POD_HAS_NO_IP",
            "leave a Running pod without an IP (IPAM failure)",
            "pod",
            _inject_pod_no_ip,
            _heal_pod_status_and_process,
        ),
        Fault(
            "selector-mismatch",
            "SERVICE_NO_ENDPOINTS",
            "change a service's selector so it matches no pod",
            "service",
            _inject_selector,
            _heal_selector,
        ),
        Fault(
            "endpoints-not-ready",
            "SERVICE_ENDPOINTS_NOT_READY",
            "make every pod of a service fail readiness",
            "service",
            _inject_not_ready,
            _heal_not_ready,
        ),
        Fault(
            "target-port-mismatch",
            "SERVICE_PORT_MISMATCH",
            "point a service's targetPort at a port nobody listens on",
            "service",
            _inject_target_port,
            _heal_ports,
        ),
        Fault(
            "policy-deny-ingress",
            "NETWORK_POLICY_DENIES_INGRESS",
            "add a NetworkPolicy denying all ingress to a service's pods",
            "service",
            _inject_policy_ingress,
            _heal_policy,
        ),
        Fault(
            "policy-deny-egress",
            "NETWORK_POLICY_DENIES_EGRESS",
            "add a NetworkPolicy letting a pod's workload reach only DNS",
            "pod",
            _inject_policy_egress,
            _heal_policy,
        ),
        Fault("dns-down", "DNS_RESOLUTION_FAILED", "stop the cluster DNS servers", "none", _inject_dns_down, _heal_dns_down),
        Fault(
            "kube-proxy-rules-missing",
            "KUBE_PROXY_RULES_MISSING",
            "hang a node's kube-proxy and remove its rules for a service",
            "node+service",
            _inject_proxy_missing,
            _heal_kube_proxy,
        ),
        Fault(
            "kube-proxy-stale",
            "KUBE_PROXY_RULES_STALE",
            "hang a node's kube-proxy while a service's pods are replaced",
            "node+service",
            _inject_proxy_stale,
            _heal_kube_proxy,
        ),
        Fault(
            "conntrack-stale",
            "CONNTRACK_STALE_ENTRY",
            "leave a UDP conntrack entry to a deleted endpoint on a pod's node",
            "pod+service",
            _inject_conntrack_stale,
            _heal_conntrack_stale,
        ),
    )
}

UPSTREAM_BY_HAND = {
    "kube-proxy-rules-missing": "delete the service's rules in the node's namespace by hand",
    "kube-proxy-stale": "change the service's endpoints with kubectl (delete a pod, scale) and `kill -CONT PID` to heal",
}
"""Faults that drive the lab's own kube-proxy or replace pods behind the controllers' back, and what to do
instead when the control plane is upstream's (`lab up --kubernetes DIR`): stop the real kube-proxy with
`kill -STOP PID` first."""

DEFAULT_POD = {"default": "shop/frontend", "not-listening": "shop/redis-0"}
DEFAULT_SERVICE = {"default": "shop/api", "conntrack-stale": "kube-system/kube-dns"}


def _resolve_target(ctx: FaultContext, fault: Fault, node: str | None, pod: str | None, service: str | None) -> FaultTarget:
    node_plan = ctx.plan.node(node) if node else None
    pods = ctx.pods()
    pod_obj = _find(pods, pod, "pod", _pod_key) if pod else None
    svc_obj = _find(ctx.services(), service, "service", _svc_key) if service else None
    if "pod" in fault.needs and pod_obj is None:
        wanted = DEFAULT_POD.get(fault.name, DEFAULT_POD["default"])
        pod_obj = next((p for p in pods if _pod_key(p).startswith(wanted)), pods[0])
    if "service" in fault.needs and svc_obj is None:
        wanted = DEFAULT_SERVICE.get(fault.name, DEFAULT_SERVICE["default"])
        svc_obj = next((s for s in ctx.services() if _svc_key(s) == wanted), ctx.services()[0])
    if "node" in fault.needs and node_plan is None:
        node_plan = ctx.plan.node(pod_obj["spec"]["nodeName"]) if pod_obj and fault.needs == "node" else ctx.plan.nodes[0]
        if fault.name == "rp-filter-strict" and pod_obj is not None:
            node_plan = _other_node(ctx, ctx.plan.node(pod_obj["spec"]["nodeName"]))
    return FaultTarget(node_plan, pod_obj, svc_obj)


def inject(prefix: str, name: str, *, node: str | None = None, pod: str | None = None, service: str | None = None) -> Obj:
    """Inject fault `name`; record it for `heal`. Bad names fail before anything changes."""
    kernel.require_root()
    fault = CATALOG.get(name)
    if fault is None:
        raise LabError(f"unknown fault {name!r}; choose one of: {', '.join(CATALOG)}", exit_code=2)
    state = require_state(prefix)
    if state.kubernetes and fault.name in UPSTREAM_BY_HAND:
        pids = ", ".join(f"{k}={v}" for k, v in sorted(state.processes.items()) if k.startswith("kube-proxy/"))
        raise LabError(
            f"fault {fault.name} drives the lab's own kube-proxy; this lab runs the real one (Kubernetes {state.kubernetes})",
            hint=f"hang it by hand with `kill -STOP PID` ({pids}), then {UPSTREAM_BY_HAND[fault.name]}",
            exit_code=2,
        )
    ctx = FaultContext(state, plan_of(state), LabApi.from_files(state.api_url, state.token_file, state.ca_file))
    target = _resolve_target(ctx, fault, node, pod, service)
    description, undo = fault.inject(ctx, target)
    record = {"name": fault.name, "verdict": fault.verdict, "description": description, "undo": undo}
    state.faults.append(record)
    state.save()
    return record


def heal(prefix: str) -> list[str]:
    """Undo every recorded fault, newest first; returns the names healed."""
    kernel.require_root()
    state = require_state(prefix)
    ctx = FaultContext(state, plan_of(state), LabApi.from_files(state.api_url, state.token_file, state.ca_file))
    healed = []
    while state.faults:
        record = state.faults[-1]
        CATALOG[record["name"]].heal(ctx, record["undo"])
        state.faults.pop()
        state.save()
        healed.append(record["name"])
    return healed
