"""The catalog in the order `kubereach lab faults` lists it, and `inject`/`heal` on a running lab."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lab import kernel
from lab.apiclient import LabApi
from lab.errors import LabError
from lab.faults import conntrack, dns, firewall, hostport, kubeproxy, node, outside, pod, policy, service, underlay
from lab.faults.common import find, other_node, pod_key, svc_key
from lab.faults.model import Fault, FaultContext, FaultTarget, Needs, Obj
from lab.faults.scenarios import SCENARIOS
from lab.faults.underlay import resolve_pair
from lab.lifecycle import plan_of
from lab.state import LabState, require_state

CATALOG: dict[str, Fault[Any]] = {
    f.name: f
    for f in (
        node.ROUTE_MISSING,
        node.ROUTE_WRONG,
        node.IP_FORWARD_OFF,
        node.FORWARD_DROP,
        conntrack.TABLE_FULL,
        node.OVERLAY_DOWN,
        node.OVERLAY_FDB_MISSING,
        node.RP_FILTER_STRICT,
        node.AGENT_DOWN,
        underlay.UNDERLAY_DROP,
        underlay.UNDERLAY_LOSS,
        underlay.NODE_FIREWALL_OVERLAY,
        underlay.UNDERLAY_MTU_LOW,
        firewall.NFT_FORWARD_DROP,
        firewall.FORWARD_RULE_DROP,
        firewall.LEGACY_FORWARD_DROP,
        firewall.INPUT_DROP,
        firewall.OUTPUT_DROP,
        pod.VETH_DOWN,
        pod.VETH_OFF_BRIDGE,
        pod.POD_ROUTE_MISSING,
        pod.MTU_MISMATCH,
        pod.NOT_LISTENING,
        pod.CRASHLOOP,
        pod.NO_IP,
        service.SELECTOR_MISMATCH,
        service.ENDPOINTS_NOT_READY,
        service.TARGET_PORT_MISMATCH,
        policy.DENY_INGRESS,
        policy.DENY_EGRESS,
        dns.DNS_DOWN,
        kubeproxy.RULES_MISSING,
        kubeproxy.RULES_STALE,
        conntrack.STALE_ENTRY,
        outside.NODEPORT_NO_LOCAL_ENDPOINTS,
        outside.EGRESS_MASQUERADE_MISSING,
        outside.NODE_NO_ROUTE_OUT,
        outside.UPSTREAM_DNS_UNREACHABLE,
        outside.EGRESS_IPBLOCK_EXCLUDES,
        outside.HAIRPIN_OFF,
        hostport.HOST_PORT_COLLISION,
    )
}

UPSTREAM_BY_HAND = {
    "kube-proxy-rules-missing": "delete the service's rules in the node's namespace by hand",
    "kube-proxy-stale": "change the service's endpoints with kubectl (delete a pod, scale) and `kill -CONT PID` to heal",
}
"""Faults that drive the lab's own kube-proxy or replace pods behind the controllers' back, and what to do
instead when the control plane is upstream's (`lab up --kubernetes DIR`): stop the real kube-proxy with
`kill -STOP PID` first."""

DEFAULT_POD = {"default": "shop/frontend", "not-listening": "shop/redis-0", "hairpin-off": "shop/redis-0"}
DEFAULT_SERVICE = {
    "default": "shop/api",
    "conntrack-stale": "kube-system/kube-dns",
    "nodeport-no-local-endpoints": "shop/frontend-nodeport",
}


@dataclass(frozen=True)
class FaultOptions:
    """What `lab fault` was told beyond the fault's name (None: not given)."""

    node: str | None = None
    pod: str | None = None
    service: str | None = None
    from_node: str | None = None
    to_node: str | None = None
    percent: int | None = None
    mtu: int | None = None


FLAGS = {"node": "--node", "pod": "--pod", "service": "--service", "from": "--from", "to": "--to",
         "percent": "--percent", "mtu": "--mtu"}  # fmt: skip
"""The parts a fault can be pointed at or tuned with, and the `lab fault` option of each."""
_FIELDS = {"from": "from_node", "to": "to_node"}


def accepted_flags(fault: Fault[Any]) -> list[str]:
    """The `lab fault` options `fault` takes."""
    return [flag for part, flag in FLAGS.items() if fault.needs.wants(part) or part in fault.takes]


def check_options(fault: Fault[Any], options: FaultOptions) -> None:
    """One clear error for an option the fault does not take.

    --node, --pod and --service stay open to the faults pointed only with them, as before (node
    faults read --pod to pick the remote node); faults with more options say what they take."""
    accepted = accepted_flags(fault)
    lenient = fault.needs is not Needs.NODE_PAIR and not fault.takes
    for part, flag in FLAGS.items():
        if lenient and part in ("node", "pod", "service"):
            continue
        if getattr(options, _FIELDS.get(part, part)) is not None and flag not in accepted:
            raise LabError(
                f"fault {fault.name} does not take {flag}",
                hint=f"it takes {', '.join(accepted)}" if accepted else f"run `kubereach lab fault {fault.name}` alone",
                exit_code=2,
            )


def _resolve_target(ctx: FaultContext, fault: Fault[Any], options: FaultOptions) -> FaultTarget:
    node, pod, service = options.node, options.pod, options.service
    node_plan = ctx.plan.node(node) if node else None
    pods = ctx.pods()
    pod_obj = find(pods, pod, "pod", pod_key) if pod else None
    svc_obj = find(ctx.services(), service, "service", svc_key) if service else None
    if fault.needs.wants("pod") and pod_obj is None:
        wanted = DEFAULT_POD.get(fault.name, DEFAULT_POD["default"])
        pod_obj = next((p for p in pods if pod_key(p).startswith(wanted)), pods[0])
    if fault.needs.wants("service") and svc_obj is None:
        wanted = DEFAULT_SERVICE.get(fault.name, DEFAULT_SERVICE["default"])
        svc_obj = next((s for s in ctx.services() if svc_key(s) == wanted), ctx.services()[0])
    if fault.needs.wants("node") and node_plan is None:
        node_plan = ctx.plan.node(pod_obj["spec"]["nodeName"]) if pod_obj and fault.needs is Needs.NODE else ctx.plan.nodes[0]
        if fault.name == "rp-filter-strict" and pod_obj is not None:
            node_plan = other_node(ctx, ctx.plan.node(pod_obj["spec"]["nodeName"]))
        if fault.name == "nodeport-no-local-endpoints" and svc_obj is not None:
            empty = outside.nodes_without_local_endpoints(ctx, svc_obj)
            node_plan = ctx.plan.node(empty[0]) if empty else node_plan
    src = ctx.plan.node(options.from_node) if options.from_node else None
    dst = ctx.plan.node(options.to_node) if options.to_node else None
    if fault.needs is Needs.NODE_PAIR:
        src, dst = resolve_pair(ctx.plan, src, dst)
    elif src is not None and dst is not None and src.name == dst.name:
        raise LabError(f"--from and --to both name {src.name}; name two different nodes", exit_code=2)
    if src is not None:
        node_plan = src
    return FaultTarget(node_plan, pod_obj, svc_obj, to=dst, percent=options.percent, mtu=options.mtu)


def _context(state: LabState) -> FaultContext:
    return FaultContext(state, plan_of(state), LabApi.from_files(state.api_url, state.token_file, state.ca_file))


def inject(prefix: str, name: str, options: FaultOptions | None = None, **given: Any) -> Obj:
    """Inject fault `name` pointed as `options` (or the same fields as keywords: node=, pod=,
    service=, from_node=, to_node=, percent=, mtu=); record it for `heal`. Bad names and options the
    fault does not take fail before anything changes."""
    kernel.require_root()
    options = options or FaultOptions(**given)
    fault = CATALOG.get(name)
    if fault is None:
        raise LabError(f"unknown fault {name!r}; choose one of: {', '.join(CATALOG)}", exit_code=2)
    check_options(fault, options)
    state = require_state(prefix)
    if state.kubernetes and fault.name in UPSTREAM_BY_HAND:
        pids = ", ".join(f"{k}={v}" for k, v in sorted(state.processes.items()) if k.startswith("kube-proxy/"))
        raise LabError(
            f"fault {fault.name} drives the lab's own kube-proxy; this lab runs the real one (Kubernetes {state.kubernetes})",
            hint=f"hang it by hand with `kill -STOP PID` ({pids}), then {UPSTREAM_BY_HAND[fault.name]}",
            exit_code=2,
        )
    ctx = _context(state)
    target = _resolve_target(ctx, fault, options)
    description, undo = fault.inject(ctx, target)
    record = {"name": fault.name, "verdict": fault.verdict.value, "description": description, "undo": undo.to_json()}
    state.faults.append(record)
    state.save()
    return record


def start_scenario(prefix: str, name: str, node: str | None = None) -> Obj:
    """Start lab scenario `name` on `node` (default: the first node); recorded for `heal` like a fault."""
    kernel.require_root()
    scenario = SCENARIOS.get(name)
    if scenario is None:
        raise LabError(f"unknown scenario {name!r}; choose one of: {', '.join(SCENARIOS)}", exit_code=2)
    state = require_state(prefix)
    ctx = _context(state)
    target = ctx.plan.node(node) if node else ctx.plan.nodes[0]
    description, undo = scenario.start(ctx, target)
    record = {"name": scenario.name, "verdict": "NO_FAULT_FOUND", "description": description, "undo": undo.to_json()}
    state.faults.append(record)
    state.save()
    return record


def heal(prefix: str) -> list[str]:
    """Undo every recorded fault and scenario, newest first; returns the names healed."""
    kernel.require_root()
    state = require_state(prefix)
    ctx = _context(state)
    healed = []
    while state.faults:
        record = state.faults[-1]
        entry = CATALOG.get(record["name"]) or SCENARIOS[record["name"]]
        entry.heal_record(ctx, record["undo"])
        state.faults.pop()
        state.save()
        healed.append(record["name"])
    return healed
