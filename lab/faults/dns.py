"""DNS faults: the cluster DNS servers stop."""

from __future__ import annotations

from dataclasses import dataclass

from lab.errors import LabError
from lab.faults.common import pod_key, stop_pod_process
from lab.faults.model import Fault, FaultContext, FaultTarget, Needs, Undo, Verdict
from lab.faults.pod import PodUndo, heal_restart_pod


@dataclass(frozen=True)
class DnsUndo(Undo):
    """The DNS pods whose servers a fault stopped."""

    pods: list[str]


def _inject_dns_down(ctx: FaultContext, t: FaultTarget) -> tuple[str, DnsUndo]:
    dns_pods = [p for p in ctx.pods() if p["metadata"]["labels"].get("k8s-app") == "kube-dns"]
    if not dns_pods:
        raise LabError("the lab has no cluster DNS pods (label k8s-app=kube-dns)", exit_code=2)
    for pod in dns_pods:
        stop_pod_process(ctx, ctx.pod_plan(pod))
    return f"the cluster DNS servers stopped ({', '.join(pod_key(p) for p in dns_pods)})", DnsUndo([pod_key(p) for p in dns_pods])


def _heal_dns_down(ctx: FaultContext, undo: DnsUndo) -> None:
    for key in undo.pods:
        heal_restart_pod(ctx, PodUndo(key))


DNS_DOWN = Fault(
    "dns-down",
    Verdict.DNS_RESOLUTION_FAILED,
    "stop the cluster DNS servers",
    Needs.NONE,
    _inject_dns_down,
    _heal_dns_down,
    DnsUndo,
)
