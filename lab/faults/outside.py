"""Faults on the paths to and from the world outside the cluster (lab.outside): a NodePort with
`externalTrafficPolicy: Local` hit on a node without a local endpoint, pod egress no longer
masqueraded, a node without its route out, the cluster DNS's upstream resolver unreachable, an egress
NetworkPolicy whose ipBlock leaves the destination out, and a bridge port without hairpin mode."""

from __future__ import annotations

from dataclasses import dataclass

from lab import kernel, outside
from lab.errors import LabError
from lab.faults.common import pod_key, ready_pods_of, route_cmd, route_json, svc_key
from lab.faults.model import Fault, FaultContext, FaultTarget, Needs, Obj, Undo, Verdict
from lab.faults.node import NodeUndo
from lab.faults.policy import PolicyUndo, heal_policy, policy_path


@dataclass(frozen=True)
class TrafficPolicyUndo(Undo):
    """A service whose externalTrafficPolicy a fault changed, and the value it had; for a load
    balancer, the ingress IPs the cloud's route now sends to the fault's node (heal sends them back
    to the edge node)."""

    service: str
    policy: str
    rerouted: tuple[str, ...] = ()


@dataclass(frozen=True)
class RoutesOutUndo(Undo):
    """A node's routes out as they were."""

    node: str
    routes: list[Obj]


@dataclass(frozen=True)
class RouterRouteUndo(Undo):
    """The route a fault added on the outside world's router, to delete."""

    route: str


@dataclass(frozen=True)
class HairpinUndo(Undo):
    """The node and bridge port whose hairpin mode a fault turned off."""

    node: str
    port: str


def _svc_path(svc: Obj) -> str:
    return f"/api/v1/namespaces/{svc['metadata']['namespace']}/services/{svc['metadata']['name']}"


def nodes_without_local_endpoints(ctx: FaultContext, svc: Obj) -> list[str]:
    """Nodes running none of the service's pods."""
    local = {p["spec"].get("nodeName") for p in ready_pods_of(ctx, svc)}
    return [n.name for n in ctx.plan.nodes if n.name not in local]


def _inject_etp_local(ctx: FaultContext, t: FaultTarget) -> tuple[str, TrafficPolicyUndo]:
    assert t.node is not None and t.service is not None
    svc = t.service
    if svc["spec"].get("type") not in ("NodePort", "LoadBalancer"):
        raise LabError(
            f"service {svc_key(svc)} is {svc['spec'].get('type')}; this fault needs a NodePort or LoadBalancer service",
            exit_code=2,
        )
    empty = nodes_without_local_endpoints(ctx, svc)
    if t.node.name not in empty:
        hint = ", ".join(empty) or "none in this lab"
        raise LabError(f"{t.node.name} runs a pod of {svc_key(svc)}; nodes without one: {hint}", exit_code=2)
    before = svc["spec"].get("externalTrafficPolicy", "Cluster")
    ctx.api.merge_patch(_svc_path(svc), {"spec": {"externalTrafficPolicy": "Local"}})
    ports = ", ".join(str(p["nodePort"]) for p in svc["spec"].get("ports", []) if p.get("nodePort"))
    said = f"{svc_key(svc)} has externalTrafficPolicy Local; {t.node.name} has no local endpoint, so its NodePort {ports} drops"
    # A load balancer that keeps sending to that node (its health check not heeded): the cloud's route
    # for the ingress IPs moves there, so clients of the load balancer are dropped for real.
    rerouted = tuple(sorted(load_balancer_ips(svc)))
    for ip in rerouted:
        outside.route_lb_ip(ctx.state.prefix, ip, t.node.ip)
    if rerouted:
        said += f"; the load balancer sends {', '.join(rerouted)} to {t.node.name}"
    return said, TrafficPolicyUndo(svc_key(svc), before, rerouted)


def load_balancer_ips(svc: Obj) -> list[str]:
    """A service's load balancer ingress IPs (`status.loadBalancer.ingress[].ip`)."""
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return [str(i["ip"]) for i in ingress if i.get("ip")]


def _heal_etp_local(ctx: FaultContext, undo: TrafficPolicyUndo) -> None:
    ns, name = undo.service.split("/", 1)
    ctx.api.merge_patch(f"/api/v1/namespaces/{ns}/services/{name}", {"spec": {"externalTrafficPolicy": undo.policy}})
    for ip in undo.rerouted:
        outside.route_lb_ip(ctx.state.prefix, ip, outside.edge_node(ctx.plan).ip)


def _masq_chain(ctx: FaultContext) -> str:
    return "cali-nat-outgoing" if ctx.plan.options.cni == "calico" else "FLANNEL-POSTRTG"


def _inject_masq_missing(ctx: FaultContext, t: FaultTarget) -> tuple[str, NodeUndo]:
    assert t.node is not None
    chain = _masq_chain(ctx)
    kernel.exec_in(t.node.netns, ["iptables", "-w", "-t", "nat", "-F", chain])
    return f"the CNI's egress masquerade ({chain}) on {t.node.name} is gone: its pods leave with their pod IPs", NodeUndo(
        t.node.name
    )


def _heal_masq_missing(ctx: FaultContext, undo: NodeUndo) -> None:
    node = ctx.plan.node(undo.node)
    kernel.exec_in(node.netns, ["iptables", "-w", "-t", "nat", "-F", _masq_chain(ctx)])
    kernel.exec_in(
        node.netns, ["iptables-restore", "--noflush", "-w"], stdin=outside.masquerade_rules(ctx.plan, node, jump=False)
    )


def _inject_no_route_out(ctx: FaultContext, t: FaultTarget) -> tuple[str, RoutesOutUndo]:
    assert t.node is not None
    routes = [r for cidr in outside.OUTSIDE_ROUTES for r in route_json(t.node.netns, cidr)]
    if not routes:
        raise LabError(f"{t.node.name} has no route out to remove", exit_code=2)
    for cidr in outside.OUTSIDE_ROUTES:
        kernel.exec_in(t.node.netns, ["ip", "route", "del", cidr], check=False)
    return f"{t.node.name} lost its route out ({', '.join(outside.OUTSIDE_ROUTES)} via the router)", RoutesOutUndo(
        t.node.name, routes
    )


def _heal_no_route_out(ctx: FaultContext, undo: RoutesOutUndo) -> None:
    netns = ctx.plan.node(undo.node).netns
    for route in undo.routes:
        kernel.exec_in(netns, ["ip", "route", "replace", *route_cmd(route)])


def _inject_upstream_dns(ctx: FaultContext, t: FaultTarget) -> tuple[str, RouterRouteUndo]:
    route = f"{outside.UPSTREAM_DNS_IP}/32"
    kernel.exec_in(outside.router_netns(ctx.state.prefix), ["ip", "route", "replace", "blackhole", route])
    return f"the upstream resolver {outside.UPSTREAM_DNS_IP} is unreachable (blackholed at the edge router)", RouterRouteUndo(
        route
    )


def _heal_upstream_dns(ctx: FaultContext, undo: RouterRouteUndo) -> None:
    kernel.exec_in(outside.router_netns(ctx.state.prefix), ["ip", "route", "del", "blackhole", undo.route], check=False)


def _inject_ipblock_egress(ctx: FaultContext, t: FaultTarget) -> tuple[str, PolicyUndo]:
    assert t.pod is not None
    pod = t.pod
    ns = pod["metadata"]["namespace"]
    skip = ("pod-template-hash", "controller-revision-hash", "statefulset.kubernetes.io/pod-name", "apps.kubernetes.io/pod-index")
    labels = {k: v for k, v in pod["metadata"]["labels"].items() if k not in skip}
    name = f"egress-except-outside-{pod['metadata']['name'].split('-')[0]}"
    excluded = str(outside.OUTSIDE_CIDR)
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "podSelector": {"matchLabels": labels},
            "policyTypes": ["Egress"],
            "egress": [
                {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": [excluded]}}]},
                {"to": [{"namespaceSelector": {}}]},
            ],
        },
    }
    ctx.api.request("POST", policy_path(ns), policy)
    return f"NetworkPolicy {ns}/{name} lets pods with {labels} egress anywhere except {excluded}", PolicyUndo(ns, name)


def _inject_hairpin_off(ctx: FaultContext, t: FaultTarget) -> tuple[str, HairpinUndo]:
    assert t.pod is not None
    if not ctx.plan.bridge_cni:
        raise LabError(
            f"hairpin mode is a bridge port setting; the lab runs {ctx.plan.options.cni}, which has no bridge", exit_code=2
        )
    plan = ctx.pod_plan(t.pod)
    node = ctx.plan.node(plan.node)
    kernel.exec_in(node.netns, ["ip", "link", "set", plan.host_veth, "type", "bridge_slave", "hairpin", "off"])
    return f"{plan.host_veth} (pod {pod_key(t.pod)}) on {node.name}'s cni0 has hairpin mode off", HairpinUndo(
        node.name, plan.host_veth
    )


def _heal_hairpin_off(ctx: FaultContext, undo: HairpinUndo) -> None:
    netns = ctx.plan.node(undo.node).netns
    kernel.exec_in(netns, ["ip", "link", "set", undo.port, "type", "bridge_slave", "hairpin", "on"], check=False)


NODEPORT_NO_LOCAL_ENDPOINTS = Fault(
    "nodeport-no-local-endpoints",
    Verdict.NODEPORT_NO_LOCAL_ENDPOINTS,
    "set externalTrafficPolicy Local on a NodePort/LoadBalancer service; its NodePort drops on a node without its pods "
    "(a load balancer's IP is sent there too)",
    Needs.NODE_SERVICE,
    _inject_etp_local,
    _heal_etp_local,
    TrafficPolicyUndo,
)
EGRESS_MASQUERADE_MISSING = Fault(
    "egress-masquerade-missing",
    Verdict.EGRESS_NOT_MASQUERADED,
    "flush the CNI's egress masquerade chain on a node",
    Needs.NODE,
    _inject_masq_missing,
    _heal_masq_missing,
    NodeUndo,
)
NODE_NO_ROUTE_OUT = Fault(
    "node-no-route-out",
    Verdict.NODE_HAS_NO_ROUTE_OUT,
    "delete a node's routes to the outside world",
    Needs.NODE,
    _inject_no_route_out,
    _heal_no_route_out,
    RoutesOutUndo,
)
UPSTREAM_DNS_UNREACHABLE = Fault(
    "upstream-dns-unreachable",
    Verdict.UPSTREAM_DNS_FAILED,
    "blackhole the cluster DNS's upstream resolver at the edge router",
    Needs.NONE,
    _inject_upstream_dns,
    _heal_upstream_dns,
    RouterRouteUndo,
)
EGRESS_IPBLOCK_EXCLUDES = Fault(
    "policy-egress-ipblock",
    Verdict.NETWORK_POLICY_DENIES_EGRESS,
    "add an egress NetworkPolicy whose ipBlock excepts the outside world's range",
    Needs.POD,
    _inject_ipblock_egress,
    heal_policy,
    PolicyUndo,
)
HAIRPIN_OFF = Fault(
    "hairpin-off",
    Verdict.HAIRPIN_BROKEN,
    "turn hairpin mode off on a pod's bridge port (bridge CNIs)",
    Needs.POD,
    _inject_hairpin_off,
    _heal_hairpin_off,
    HairpinUndo,
)
