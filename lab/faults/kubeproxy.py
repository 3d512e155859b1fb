"""kube-proxy faults: a hung kube-proxy whose rules for a service are gone, or stale after a rollout."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import shlex
import signal
from dataclasses import dataclass
from typing import ClassVar

from lab import build, kernel
from lab.errors import LabError
from lab.faults.common import (
    patch_pod_status,
    ready_pods_of,
    restart_kube_proxy,
    restart_pod_process,
    stop_pod_process,
    svc_key,
)
from lab.faults.model import Fault, FaultContext, FaultTarget, Needs, Obj, Undo, Verdict
from lab.lifecycle import kube_proxy_generation, wait_kube_proxies_synced
from lab.plan import host_veth_name, pod_netns_name, uid_for


@dataclass(frozen=True)
class KubeProxyUndo(Undo):
    """The node whose kube-proxy a fault hung (and the pods it replaced meanwhile)."""

    node: str
    moved: list[str] | None = None
    omit_when_none: ClassVar[tuple[str, ...]] = ("moved",)


def _inject_proxy_missing(ctx: FaultContext, t: FaultTarget) -> tuple[str, KubeProxyUndo]:
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
    return (
        f"kube-proxy on {t.node.name} is hung and the rules for {svc_key(t.service)} ({vip}) are gone from its node",
        KubeProxyUndo(t.node.name),
    )


def _delete_argv(save_line: str) -> list[str]:
    """`-A CHAIN rest…` from iptables-save → `-D CHAIN rest…` as an argv (quoted comments kept whole)."""
    parts = shlex.split(save_line)
    return ["-D", *parts[1:]]


def _inject_proxy_stale(ctx: FaultContext, t: FaultTarget) -> tuple[str, KubeProxyUndo]:
    assert t.node is not None and t.service is not None
    pods = ready_pods_of(ctx, t.service)
    if not pods:
        raise LabError(f"service {svc_key(t.service)} has no pods to move", exit_code=2)
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
        f"kube-proxy on {t.node.name} is hung while {svc_key(t.service)}'s pods were replaced: "
        f"its rules still point to {', '.join(o['status']['podIP'] for o in pods)}",
        KubeProxyUndo(t.node.name, moved),
    )


def _heal_kube_proxy(ctx: FaultContext, undo: KubeProxyUndo) -> None:
    restart_kube_proxy(ctx, undo.node)


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
    stop_pod_process(ctx, old_plan)
    build.remove_pod(ctx.plan, old_plan)
    build.build_pod(ctx.plan, new_plan)
    restart_pod_process(ctx, new_plan)
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
        patch_pod_status(ctx, created, obj["status"])
    return f"{ns}/{new_plan.name}"


RULES_MISSING = Fault(
    "kube-proxy-rules-missing",
    Verdict.KUBE_PROXY_RULES_MISSING,
    "hang a node's kube-proxy and remove its rules for a service",
    Needs.NODE_SERVICE,
    _inject_proxy_missing,
    _heal_kube_proxy,
    KubeProxyUndo,
)
RULES_STALE = Fault(
    "kube-proxy-stale",
    Verdict.KUBE_PROXY_RULES_STALE,
    "hang a node's kube-proxy while a service's pods are replaced",
    Needs.NODE_SERVICE,
    _inject_proxy_stale,
    _heal_kube_proxy,
    KubeProxyUndo,
)
