"""The diagnosis playbook: from a resolved case and what the nodes show, one verdict with evidence.

The walk follows the packet. API facts first (is the source running, does the service have ready
endpoints on a port the pods expose), then NetworkPolicy, the source pod's interface and routes,
DNS, the source node (conntrack, forwarding, FORWARD filter), kube-proxy's NAT and conntrack for the
VIP, and — for every endpoint the source cannot reach — the underlay route and overlay entries, the
destination node and the destination pod down to its listening socket.

Every check turns an observation into a `Candidate` (a possible cause with its code, hop and node).
The verdict is the first candidate in path order (`PRECEDENCE`); the others are findings. Nothing
here knows which fault was injected: the same observation gives the same verdict wherever it is.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.playbook.case import Case, EndpointRef, PodRef, routed_endpoints
from bot.playbook.models import Evidence, Finding, Hop, StepResult, StepStatus, Verdict
from bot.playbook.models import VerdictCode as C
from bot.playbook.observations import CallFailure, NodeFacts, Observed, Observer, PodNetwork, ProbeView
from bot.playbook.remedies import remediation
from bot.policy import evaluate, explain

# Path order: the first cause on the packet's way wins.
PRECEDENCE: tuple[tuple[C, Hop], ...] = (
    (C.SOURCE_POD_NOT_RUNNING, Hop.SOURCE_POD),
    (C.POD_HAS_NO_IP, Hop.SOURCE_POD),
    (C.SERVICE_NO_ENDPOINTS, Hop.API),
    (C.SERVICE_ENDPOINTS_NOT_READY, Hop.API),
    (C.SERVICE_PORT_MISMATCH, Hop.API),
    (C.POD_HAS_NO_IP, Hop.DESTINATION_POD),
    (C.POD_INTERFACE_DOWN, Hop.SOURCE_POD),
    (C.VETH_NOT_ON_BRIDGE, Hop.SOURCE_POD),
    (C.POD_ROUTE_MISSING, Hop.SOURCE_POD),
    (C.MTU_MISMATCH, Hop.SOURCE_POD),
    (C.NETWORK_POLICY_DENIES_EGRESS, Hop.POLICY),
    (C.NETWORK_POLICY_DENIES_INGRESS, Hop.POLICY),
    (C.CONNTRACK_TABLE_FULL, Hop.SOURCE_NODE),
    (C.IP_FORWARDING_DISABLED, Hop.SOURCE_NODE),
    (C.FORWARD_CHAIN_DROPS, Hop.SOURCE_NODE),
    (C.RP_FILTER_DROPS, Hop.SOURCE_NODE),
    (C.DNS_RESOLUTION_FAILED, Hop.DNS),
    (C.KUBE_PROXY_RULES_MISSING, Hop.SERVICE_NAT),
    (C.KUBE_PROXY_RULES_STALE, Hop.SERVICE_NAT),
    (C.CONNTRACK_STALE_ENTRY, Hop.SERVICE_NAT),
    (C.OVERLAY_DEVICE_DOWN, Hop.UNDERLAY),
    (C.NODE_ROUTE_MISSING, Hop.UNDERLAY),
    (C.CONNTRACK_TABLE_FULL, Hop.DESTINATION_NODE),
    (C.IP_FORWARDING_DISABLED, Hop.DESTINATION_NODE),
    (C.FORWARD_CHAIN_DROPS, Hop.DESTINATION_NODE),
    (C.RP_FILTER_DROPS, Hop.DESTINATION_NODE),
    (C.NODE_ROUTE_MISSING, Hop.DESTINATION_NODE),
    (C.POD_INTERFACE_DOWN, Hop.DESTINATION_POD),
    (C.VETH_NOT_ON_BRIDGE, Hop.DESTINATION_POD),
    (C.POD_ROUTE_MISSING, Hop.DESTINATION_POD),
    (C.MTU_MISMATCH, Hop.DESTINATION_POD),
    (C.DESTINATION_NOT_LISTENING, Hop.DESTINATION_POD),
    (C.AGENT_UNREACHABLE, Hop.SOURCE_NODE),
    (C.AGENT_UNREACHABLE, Hop.DESTINATION_NODE),
)
_RANK = {key: i for i, key in enumerate(PRECEDENCE)}
CONNTRACK_FULL_RATIO = 0.98
NOT_RUNNING_REASONS = frozenset(
    {"CrashLoopBackOff", "Error", "ImagePullBackOff", "ErrImagePull", "ContainerCreating", "CreateContainerError"}
)


@dataclass(frozen=True)
class Candidate:
    """A cause some check observed."""

    code: C
    hop: Hop
    summary: str
    node: str | None = None
    remediation: tuple[str, ...] = ()
    source: str | None = None
    """The source pod it was seen from (None: independent of the source)."""

    @property
    def rank(self) -> int:
        """Position on the packet's path."""
        return _RANK.get((self.code, self.hop), len(_RANK))


@dataclass(frozen=True)
class Diagnosis:
    """The outcome of a playbook walk."""

    verdict: Verdict
    steps: tuple[StepResult, ...]
    findings: tuple[Finding, ...]
    per_source: Mapping[str, str] = field(default_factory=dict)
    """source pod → verdict code."""


StepCallback = Callable[[StepResult], None]


class _Walk:
    """The mutable state of one walk: steps recorded, candidates found."""

    def __init__(self, case: Case, observer: Observer, on_step: StepCallback | None) -> None:
        self.case = case
        self.obs = observer
        self.on_step = on_step
        self.steps: list[StepResult] = []
        self.candidates: list[Candidate] = []
        self.unchecked: list[str] = []
        self.notes: list[Finding] = []
        """Observations that explain nothing but must be said (rules that could not be read as expected)."""
        self.why_unchecked: dict[str, set[str]] = {}
        """node → how its agent failed ("was too busy to answer", "did not answer", …)."""
        self.unprobed = False
        """A probe the verdict depends on could not be run: success cannot be claimed."""

    def record(
        self,
        name: str,
        status: StepStatus,
        summary: str,
        evidence: Sequence[Evidence] = (),
        started: float = 0.0,
        node: str | None = None,
    ) -> None:
        step = StepResult(
            name, status, summary, tuple(evidence), round((time.monotonic() - started) * 1000, 1) if started else 0.0, node
        )
        self.steps.append(step)
        if self.on_step is not None:
            self.on_step(step)

    def add(self, candidate: Candidate) -> Candidate:
        self.candidates.append(candidate)
        return candidate

    def unreachable(self, observed: Observed[Any], what: str) -> None:
        """Note a check that could not be made (the agent did not answer, was busy, timed out, failed).

        It is never evidence: it becomes the verdict (AGENT_UNREACHABLE, naming what was not checked)
        only when nothing observed explains the failure, or when success cannot be claimed without it.
        """
        self.unchecked.append(f"{what} on {observed.node}")
        kind = CallFailure(observed.error_kind) if observed.error_kind is not None else CallFailure.UNREACHABLE
        self.why_unchecked.setdefault(observed.node, set()).add(kind.words)


def _carries_traffic(entry: Any) -> bool:
    """An entry that still steers packets: a replied UDP flow, or an established TCP connection."""
    if not entry.replied:
        return False
    return entry.protocol.lower() != "tcp" or entry.state.upper() in ("ESTABLISHED", "SYN_RECV")


def _ev(kind: str, summary: str, node: str | None = None, **data: Any) -> Evidence:
    return Evidence(kind=kind, summary=summary, node=node, data=data)


# ------------------------------------------------------------------------------ API facts


def _check_source_api(w: _Walk, src: PodRef) -> bool:
    """Is the source pod running with an IP? False ends the walk for this source."""
    started = time.monotonic()
    evidence = [
        _ev(
            "pod-status",
            f"{src.key}: {src.phase}{' (' + src.reason + ')' if src.reason else ''}, IP {src.ip or 'none'}, node {src.node or 'none'}",
            src.node,
            phase=src.phase,
            reason=src.reason,
            ip=src.ip,
        )
    ]
    if src.host_network:
        w.record(f"source {src.name}: API", StepStatus.PASS, f"{src.key} uses the host network of {src.node}", evidence, started)
        return True
    if src.phase != "Running" or src.reason in NOT_RUNNING_REASONS:
        state = src.reason or src.phase
        w.add(
            Candidate(
                C.SOURCE_POD_NOT_RUNNING,
                Hop.SOURCE_POD,
                f"{src.key} is not running ({state}): it cannot send anything",
                src.node,
                remediation(C.SOURCE_POD_NOT_RUNNING, namespace=src.namespace, pod=src.name),
                src.key,
            )
        )
        w.record(f"source {src.name}: API", StepStatus.FAIL, f"{src.key} is {state}", evidence, started, src.node)
        return False
    if not src.ip:
        w.add(
            Candidate(
                C.POD_HAS_NO_IP,
                Hop.SOURCE_POD,
                f"{src.key} is Running without an IP address: the CNI did not set up its network",
                src.node,
                remediation(C.POD_HAS_NO_IP, namespace=src.namespace, pod=src.name, node=src.node or "NODE"),
                src.key,
            )
        )
        w.record(f"source {src.name}: API", StepStatus.FAIL, f"{src.key} has no IP", evidence, started, src.node)
        return False
    w.record(
        f"source {src.name}: API", StepStatus.PASS, f"{src.key} is Running at {src.ip} on {src.node}", evidence, started, src.node
    )
    return True


def _check_target_api(w: _Walk) -> bool:
    """Service endpoints and ports, or the target pod's state. False: no endpoint to reach at all."""
    case = w.case
    started = time.monotonic()
    svc = case.service
    if case.target_kind == "pod":
        pod = case.target_pods[0] if case.target_pods else None
        if pod is not None and not pod.ip:
            w.add(
                Candidate(
                    C.POD_HAS_NO_IP,
                    Hop.DESTINATION_POD,
                    f"{pod.key} has no IP address: the CNI did not set up its network",
                    pod.node,
                    remediation(C.POD_HAS_NO_IP, namespace=pod.namespace, pod=pod.name, node=pod.node or "NODE"),
                )
            )
            w.record("target: API", StepStatus.FAIL, f"{pod.key} has no IP", (), started, pod.node)
            return False
        w.record("target: API", StepStatus.PASS, f"target {case.target_display}", (), started)
        return True
    if svc is None:
        w.record(
            "target: API",
            StepStatus.PASS,
            f"target {case.target_display} is an address outside the cluster's objects",
            (),
            started,
        )
        return True
    selector = ",".join(f"{k}={v}" for k, v in (svc.selector or {}).items())
    ready = [e for e in case.endpoints if e.ready]
    routed = routed_endpoints(case.endpoints)
    evidence = [
        _ev(
            "service",
            f"{svc.key} {svc.cluster_ip}:{svc.port}/{case.protocol} → targetPort {svc.target_port}; selector {selector or '(none)'}",
            cluster_ip=svc.cluster_ip,
            port=svc.port,
            target_port=svc.target_port,
            selector=dict(svc.selector or {}),
        ),
        _ev(
            "endpoints",
            f"{len(case.endpoints)} endpoints, {len(ready)} ready: "
            + ", ".join(f"{e.ip}:{e.port}{_endpoint_state(e)} on {e.node}" for e in case.endpoints),
            endpoints=[
                {
                    "ip": e.ip,
                    "port": e.port,
                    "node": e.node,
                    "ready": e.ready,
                    "serving": e.is_serving,
                    "terminating": e.terminating,
                    "pod": e.pod.key if e.pod else None,
                }
                for e in case.endpoints
            ],
        ),
    ]
    facts = {"namespace": svc.namespace, "service": svc.name, "selector": selector or "SELECTOR"}
    if not case.endpoints:
        why = (
            f"its selector {selector} matches no pod"
            if selector and not case.target_pods
            else "it has no selector and no manual endpoints"
            if not selector
            else "no endpoint was published for its pods"
        )
        w.add(
            Candidate(
                C.SERVICE_NO_ENDPOINTS,
                Hop.API,
                f"service {svc.key} has no endpoints: {why}",
                None,
                remediation(C.SERVICE_NO_ENDPOINTS, **facts),
            )
        )
        w.record("target: service endpoints", StepStatus.FAIL, f"{svc.key} has no endpoints", evidence, started)
        return False
    if not ready and routed:
        w.record(
            "target: service endpoints",
            StepStatus.WARN,
            f"{svc.key} has no ready endpoint, but kube-proxy still sends its traffic to the {len(routed)} serving "
            "endpoints of pods that are shutting down (terminating)",
            evidence,
            started,
        )
        return True
    if not ready:
        not_ready = case.endpoints[0].pod
        w.add(
            Candidate(
                C.SERVICE_ENDPOINTS_NOT_READY,
                Hop.API,
                f"all {len(case.endpoints)} endpoints of {svc.key} are not ready: kube-proxy sends its traffic nowhere",
                None,
                remediation(C.SERVICE_ENDPOINTS_NOT_READY, **facts, pod=not_ready.name if not_ready else "POD"),
            )
        )
        w.record("target: service endpoints", StepStatus.FAIL, f"no ready endpoint for {svc.key}", evidence, started)
        return False
    w.record("target: service endpoints", StepStatus.PASS, f"{svc.key} has {len(ready)} ready endpoints", evidence, started)
    return True


def _endpoint_state(e: EndpointRef) -> str:
    if e.ready:
        return ""
    return " (terminating, still serving)" if e.serving_terminating else " (not ready)"


async def _check_target_port(w: _Walk) -> None:
    """Does the targetPort name a port the backing pods expose or at least listen on?"""
    case, svc = w.case, w.case.service
    if svc is None:
        return
    started = time.monotonic()
    ready = [e for e in routed_endpoints(case.endpoints) if e.pod is not None]
    undeclared = [e for e in ready if e.pod is not None and not e.pod.declares(e.port, case.protocol)]
    if not undeclared:
        w.record(
            "target: port mapping",
            StepStatus.PASS,
            f"targetPort {svc.target_port} is a declared container port of every ready endpoint",
            (),
            started,
        )
        return
    listening: list[bool] = []
    evidence = []
    for e in undeclared:
        if e.node is None:
            continue
        sockets = await w.obs.sockets(e.node, e.ip, e.port, case.protocol)
        if sockets.unreachable:
            w.unreachable(sockets, f"the listening sockets of {e.pod.key if e.pod else e.ip}")
        if sockets.ok and sockets.value is not None:
            listening.append(bool(sockets.value))
            evidence.append(
                _ev(
                    "sockets",
                    f"{e.pod.key if e.pod else e.ip}: {'listening' if sockets.value else 'nothing listening'} on {e.port}/{case.protocol}",
                    e.node,
                    sockets=[s.__dict__ for s in sockets.value],
                )
            )
    if listening and not any(listening):
        pod = undeclared[0].pod
        declared = sorted({f"{n or '-'}:{p}/{pr}" for n, p, pr in (pod.container_ports if pod else ())})
        suggest = next((str(p) for _, p, pr in (pod.container_ports if pod else ()) if pr == case.protocol), "PORT")
        w.add(
            Candidate(
                C.SERVICE_PORT_MISMATCH,
                Hop.API,
                f"service {svc.key} sends port {svc.port} to targetPort {svc.target_port}, which its pods neither declare ({', '.join(declared) or 'no ports'}) nor listen on",
                None,
                remediation(C.SERVICE_PORT_MISMATCH, namespace=svc.namespace, service=svc.name, suggest=suggest),
            )
        )
        w.record(
            "target: port mapping",
            StepStatus.FAIL,
            f"targetPort {svc.target_port} is not a port of the backing pods",
            evidence,
            started,
        )
    else:
        w.record(
            "target: port mapping",
            StepStatus.WARN if undeclared else StepStatus.PASS,
            f"targetPort {svc.target_port} is not declared by {len(undeclared)} pod(s), but they listen on it",
            evidence,
            started,
        )


# ------------------------------------------------------------------------------ policy


def _check_policy(w: _Walk, src: PodRef, endpoints: Sequence[EndpointRef]) -> set[str]:
    """Evaluate NetworkPolicy for src → each endpoint pod; return endpoint IPs that policy denies."""
    cluster = w.case.policy_cluster
    started = time.monotonic()
    if cluster is None:
        w.record(f"source {src.name}: policy", StepStatus.SKIP, "NetworkPolicies were not available", (), started)
        return set()
    src_pod = cluster.pod(src.namespace, src.name)
    denied: dict[str, Any] = {}
    evidence = []
    for e in endpoints:
        if e.pod is not None and e.pod.key == src.key:
            continue  # hairpin to itself: kube-proxy masquerades it to the node, which policies admit
        dst: Any = cluster.pod(e.pod.namespace, e.pod.name) if e.pod is not None else e.ip
        if src_pod is None or dst is None:
            continue
        decision = evaluate(cluster, src_pod, dst, e.port, w.case.protocol)
        if not decision.allowed:
            denied[e.ip] = decision
            evidence.append(
                _ev(
                    "network-policy",
                    decision_reason(decision),
                    e.node,
                    denying=[d.direction.value for d in decision.denying],
                )
            )
    if not denied:
        w.record(f"source {src.name}: policy", StepStatus.PASS, "no NetworkPolicy denies this flow", evidence, started, src.node)
        return set()
    first = next(iter(denied.values()))
    egress = first.denying[0].direction.value == "Egress"
    side = first.egress if egress else first.ingress
    policies = ",".join(str(p) for p in side.selecting_policies)
    nodes = {e.node for e in endpoints if e.ip in denied}
    node = src.node if egress else (nodes.pop() if len(nodes) == 1 else None)
    code = C.NETWORK_POLICY_DENIES_EGRESS if egress else C.NETWORK_POLICY_DENIES_INGRESS
    share = "" if len(denied) == len(endpoints) else f" (for {len(denied)} of {len(endpoints)} endpoints)"
    w.add(Candidate(code, Hop.POLICY, decision_reason(first) + share, node, remediation(code, policies=policies), src.key))
    w.record(
        f"source {src.name}: policy",
        StepStatus.FAIL,
        f"NetworkPolicy denies {'egress' if egress else 'ingress'}{share}",
        evidence,
        started,
        node,
    )
    return set(denied)


def decision_reason(decision: Any) -> str:
    """The evaluator's one-line explanation."""
    return str(explain(decision))


# ------------------------------------------------------------------------------ source pod


def _pod_interface_checks(
    w: _Walk, pod: PodRef, net: PodNetwork, facts: NodeFacts | None, hop: Hop, path_mtu: int | None, target_ips: Sequence[str]
) -> list[Candidate]:
    """eth0 and its peer up, the peer on the bridge, routes, MTU — for a source or destination pod."""
    found: list[Candidate] = []
    node = pod.node
    base = {"namespace": pod.namespace, "pod": pod.name, "node": node or "NODE"}
    eth0, peer = net.eth0, net.host_peer
    if peer is not None and not peer.up:
        found.append(
            Candidate(
                C.POD_INTERFACE_DOWN,
                hop,
                f"{peer.name}, the host side of {pod.key}'s eth0 on {node}, is down",
                node,
                remediation(C.POD_INTERFACE_DOWN, **base, device=peer.name),
            )
        )
    elif eth0 is None or not eth0.up:
        found.append(
            Candidate(
                C.POD_INTERFACE_DOWN,
                hop,
                f"{pod.key}'s eth0 is {'missing' if eth0 is None else 'down'}",
                node,
                remediation(C.POD_INTERFACE_DOWN, **base, device="eth0"),
            )
        )
    elif peer is None:
        found.append(
            Candidate(
                C.POD_INTERFACE_DOWN,
                hop,
                f"{pod.key}'s eth0 has no host-side peer on {node}: the veth pair is broken",
                node,
                remediation(C.POD_INTERFACE_DOWN, **base, device="VETH"),
            )
        )
    bridges = [b.name for b in facts.bridges] if facts else []
    if peer is not None and bridges and not peer.master and not peer.name.startswith("cali"):
        found.append(
            Candidate(
                C.VETH_NOT_ON_BRIDGE,
                hop,
                f"{peer.name} ({pod.key}) is not attached to {bridges[0]} on {node}: the pod is cut off from its node",
                node,
                remediation(C.VETH_NOT_ON_BRIDGE, **base, device=peer.name, bridge=bridges[0]),
            )
        )
    for ip in target_ips:
        if not _covered(net, ip):
            found.append(
                Candidate(
                    C.POD_ROUTE_MISSING,
                    hop,
                    f"{pod.key} has no route to {ip} (no default route)",
                    node,
                    remediation(C.POD_ROUTE_MISSING, **base),
                )
            )
            break
    if eth0 is not None and peer is not None and eth0.mtu > peer.mtu:
        found.append(
            Candidate(
                C.MTU_MISMATCH,
                hop,
                f"{pod.key}'s eth0 MTU {eth0.mtu} exceeds its host-side veth's {peer.mtu}: full-size packets are dropped silently",
                node,
                remediation(C.MTU_MISMATCH, **base, pod_mtu=str(eth0.mtu), path_mtu=str(peer.mtu)),
            )
        )
    elif eth0 is not None and path_mtu is not None and eth0.mtu > path_mtu:
        found.append(
            Candidate(
                C.MTU_MISMATCH,
                hop,
                f"{pod.key}'s eth0 MTU {eth0.mtu} exceeds the overlay's {path_mtu}: large packets to other nodes are lost",
                node,
                remediation(C.MTU_MISMATCH, **base, pod_mtu=str(eth0.mtu), path_mtu=str(path_mtu)),
            )
        )
    return found


def _covered(net: PodNetwork, ip: str) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return True
    for route in net.routes:
        if not route.usable:
            continue
        dest = route.destination or "0.0.0.0/0"
        if dest == "default":
            dest = "0.0.0.0/0"
        try:
            if address in ipaddress.ip_network(dest, strict=False):
                return True
        except ValueError:
            continue
    return False


def _overlay_mtu(facts: NodeFacts | None) -> int | None:
    if facts is None or not facts.overlays:
        return None
    return min(o.link.mtu for o in facts.overlays)


def _routes_text(net: PodNetwork) -> str:
    shown = [f"{r.destination or 'default'} via {r.gateway or r.device}" for r in net.routes if ":" not in r.destination]
    return "; ".join(shown) or "none"


def _net_evidence(pod: PodRef, net: PodNetwork) -> Evidence:
    eth0, peer = net.eth0, net.host_peer
    return _ev(
        "pod-network",
        f"{pod.key} in {net.netns}: eth0 {'up' if eth0 and eth0.up else 'DOWN'} mtu {eth0.mtu if eth0 else '?'}; "
        f"peer {peer.name if peer else '?'} {'up' if peer and peer.up else 'DOWN'} mtu {peer.mtu if peer else '?'} master {peer.master if peer and peer.master else '-'}; "
        f"routes: {_routes_text(net)}",
        pod.node,
        netns=net.netns,
        eth0=eth0.__dict__ if eth0 else None,
        host_peer=peer.__dict__ if peer else None,
        routes=[r.__dict__ for r in net.routes],
    )


# ------------------------------------------------------------------------------ nodes


def _node_checks(facts: NodeFacts, hop: Hop, *, forwards: bool) -> list[Candidate]:
    found = []
    node = facts.node
    if facts.conntrack_max and facts.conntrack_count >= CONNTRACK_FULL_RATIO * facts.conntrack_max:
        found.append(
            Candidate(
                C.CONNTRACK_TABLE_FULL,
                hop,
                f"the conntrack table on {node} is full ({facts.conntrack_count}/{facts.conntrack_max}): new flows are dropped",
                node,
                remediation(C.CONNTRACK_TABLE_FULL, node=node),
            )
        )
    if forwards and not facts.ip_forward:
        found.append(
            Candidate(
                C.IP_FORWARDING_DISABLED,
                hop,
                f"net.ipv4.ip_forward is 0 on {node}: it does not forward pod traffic",
                node,
                remediation(C.IP_FORWARDING_DISABLED, node=node),
            )
        )
    return found


def _facts_evidence(facts: NodeFacts) -> Evidence:
    overlays = (
        ", ".join(f"{o.link.name} {'up' if o.link.up else 'DOWN'} mtu {o.link.mtu} vni {o.vni}" for o in facts.overlays) or "none"
    )
    return _ev(
        "node",
        f"{facts.node}: ip_forward={int(facts.ip_forward)}, conntrack {facts.conntrack_count}/{facts.conntrack_max} (insert_failed {facts.insert_failed}, drop {facts.drop}), "
        f"kube-proxy {facts.proxy_mode or 'none'}, overlays: {overlays}",
        facts.node,
        ip_forward=facts.ip_forward,
        conntrack_count=facts.conntrack_count,
        conntrack_max=facts.conntrack_max,
        insert_failed=facts.insert_failed,
        drop=facts.drop,
        proxy_mode=facts.proxy_mode,
        overlays=[{"name": o.link.name, "up": o.link.up, "mtu": o.link.mtu, "vni": o.vni} for o in facts.overlays],
    )


# ------------------------------------------------------------------------------ the walk per source


@dataclass(frozen=True)
class _NatReading:
    """A service-NAT reading held until the probes have run (`_SourceWalk.settle_service_nat`)."""

    candidate: Candidate
    evidence: tuple[Evidence, ...]
    started: float
    programmed: frozenset[str]
    expected: frozenset[str]


class _SourceWalk:
    """Everything checked from one source pod."""

    def __init__(self, w: _Walk, src: PodRef) -> None:
        self.w = w
        self.src = src
        self.case = w.case
        self.facts: dict[str, NodeFacts | None] = {}
        self.nat_pending: _NatReading | None = None
        self.probe_outcome: dict[str, ProbeView | None] = {}

    async def node_facts(self, node: str | None) -> NodeFacts | None:
        if node is None:
            return None
        if node not in self.facts:
            observed = await self.w.obs.node_facts(node)
            if observed.unreachable:
                self.w.unreachable(observed, "node state")
            self.facts[node] = observed.value
        return self.facts[node]

    async def run(self) -> None:
        w, src, case = self.w, self.src, self.case
        if not _check_source_api(w, src) or src.node is None:
            return
        reachable = routed_endpoints(case.endpoints) if case.target_kind == "service" else list(case.endpoints)
        denied = _check_policy(w, src, reachable) if reachable else set()
        started = time.monotonic()
        facts, located = await asyncio.gather(self.node_facts(src.node), w.obs.locate_pod(src.node, src.ip or ""))
        if located.unreachable and facts is None:
            w.unreachable(located, "everything on the source node")
            w.add(
                Candidate(
                    C.AGENT_UNREACHABLE,
                    Hop.SOURCE_NODE,
                    f"the kubereach agent on {src.node} {CallFailure(located.error_kind or CallFailure.UNREACHABLE).words}: "
                    f"nothing on {src.node} could be checked, "
                    f"including probes from {src.key}",
                    src.node,
                    remediation(C.AGENT_UNREACHABLE, node=src.node),
                    src.key,
                )
            )
            w.record(
                f"source {src.name}: node {src.node}",
                StepStatus.FAIL,
                f"agent on {src.node} unreachable ({located.error})",
                (),
                started,
                src.node,
            )
            return
        targets = (
            [case.service.cluster_ip]
            if case.service
            else [e.ip for e in reachable][:1] or ([case.target_ip] if case.target_ip else [])
        )
        remote = any(e.node != src.node for e in reachable)
        if located.ok and located.value is not None:
            net = located.value
            found = _pod_interface_checks(w, src, net, facts, Hop.SOURCE_POD, _overlay_mtu(facts) if remote else None, targets)
            for c in found:
                w.add(Candidate(c.code, c.hop, c.summary, c.node, c.remediation, src.key))
            w.record(
                f"source {src.name}: pod network",
                StepStatus.FAIL if found else StepStatus.PASS,
                found[0].summary if found else f"eth0 and its veth are up, routes cover {', '.join(targets) or 'the target'}",
                [_net_evidence(src, net)],
                started,
                src.node,
            )
        elif not located.unreachable:
            w.record(
                f"source {src.name}: pod network",
                StepStatus.WARN,
                f"the agent could not find {src.ip} on {src.node}: {located.error}",
                (),
                started,
                src.node,
            )
        if facts is not None:
            found = _node_checks(facts, Hop.SOURCE_NODE, forwards=True)
            for c in found:
                w.add(Candidate(c.code, c.hop, c.summary, c.node, c.remediation, src.key))
            w.record(
                f"source node {src.node}",
                StepStatus.FAIL if found else StepStatus.PASS,
                found[0].summary if found else "forwarding on, conntrack has room",
                [_facts_evidence(facts)],
                started,
                src.node,
            )
        await asyncio.gather(self.dns(), self.service_nat(), self.conntrack())
        await self.reachability(reachable, denied)
        self.settle_service_nat()

    # -------------------------------------------------------------------- DNS

    async def dns(self) -> None:
        """Resolve the target's name from inside the source pod; follow a failure to each DNS server."""
        w, src, case = self.w, self.src, self.case
        if not case.dns_name or src.node is None:
            return
        started = time.monotonic()
        observed = await w.obs.probe_dns(src.node, pod_ip=src.ip or "", name=case.dns_name)
        if observed.value is None:
            # No answer is not "does not resolve": the lookup was never made.
            if observed.unreachable:
                w.unreachable(observed, f"the DNS lookup of {case.dns_name} from {src.key}")
            w.record(
                f"source {src.name}: DNS",
                StepStatus.WARN,
                f"{case.dns_name} could not be looked up from {src.key}: {observed.error}",
                (),
                started,
                src.node,
            )
            return
        probe = observed.value
        if probe.ok:
            text = f"{case.dns_name} → {', '.join(probe.answers)} via {probe.server} in {probe.latency_ms:.1f} ms"
            evidence = [_ev("dns-probe", text, src.node, answers=list(probe.answers))]
            w.record(
                f"source {src.name}: DNS",
                StepStatus.PASS,
                f"{case.dns_name} resolves from {src.key}",
                evidence,
                started,
                src.node,
            )
            return
        rcode = f", {probe.rcode}" if probe.rcode and probe.rcode != "NOERROR" else ""
        detail = f"{probe.outcome}{rcode}"
        summary = f"{case.dns_name} does not resolve from {src.key} ({detail})"
        evidence = [_ev("dns-probe", summary, src.node, outcome=probe.outcome, rcode=probe.rcode)]
        # Follow the lookup to each DNS server: a broken path to one of them is that cause, not "DNS".
        fqdn = case.dns_fqdn or case.dns_name
        servers = routed_endpoints(case.dns_endpoints)
        answers = await asyncio.gather(*(w.obs.probe_dns(src.node, pod_ip=src.ip or "", name=fqdn, server=e.ip) for e in servers))
        failing = []
        for e, answer in zip(servers, answers, strict=True):
            if answer.unreachable:
                w.unreachable(answer, f"the DNS query to {e.ip}")
            seen = answer.value.outcome if answer.value else answer.error
            evidence.append(
                _ev(
                    "dns-probe", f"{e.pod.key if e.pod else e.ip} ({e.ip}) on {e.node}: {seen}", e.node, server=e.ip, outcome=seen
                )
            )
            if answer.value is not None and answer.value.outcome != "connected":
                failing.append(e)
        causes: list[Candidate] = []
        for found in await asyncio.gather(*(self.endpoint_path(e, protocol="UDP", purpose="dns") for e in failing)):
            causes += found
        if any(c.code != C.DNS_RESOLUTION_FAILED for c in causes):
            why = f"{summary}: the path to {len(failing)} of {len(servers)} DNS servers is broken"
            w.record(f"source {src.name}: DNS", StepStatus.FAIL, why, evidence, started, src.node)
            return
        if not causes:
            w.add(Candidate(C.DNS_RESOLUTION_FAILED, Hop.DNS, summary, None, remediation(C.DNS_RESOLUTION_FAILED), src.key))
        w.record(f"source {src.name}: DNS", StepStatus.FAIL, summary, evidence, started, src.node)

    async def service_nat(self) -> None:
        w, src, case, svc = self.w, self.src, self.case, self.case.service
        if svc is None or src.node is None or case.port is None:
            return
        started = time.monotonic()
        observed = await w.obs.service_nat(src.node, svc.cluster_ip, case.port, case.protocol)
        if observed.unreachable or observed.value is None:
            if observed.unreachable:
                w.unreachable(observed, "kube-proxy's rules")
            return
        nat = observed.value
        if nat.unreadable:
            what = (
                f"the rules on {src.node} could not be read: service NAT on {src.node} uses a layout kubereach does not read yet"
            )
            evidence = [
                _ev(
                    "service-nat",
                    f"{src.node} ({nat.mode}): {nat.unreadable}",
                    src.node,
                    mode=nat.mode,
                    layout=nat.layout,
                    rules=list(nat.rules[:20]),
                )
            ]
            w.notes.append(Finding(C.UNDETERMINED, f"{what} ({nat.unreadable})", src.node, Hop.SERVICE_NAT))
            w.record(f"source {src.name}: service NAT", StepStatus.WARN, what, evidence, started, src.node)
            return
        evidence = [
            _ev(
                "service-nat",
                f"{src.node} ({nat.mode}): {svc.cluster_ip}:{case.port}/{case.protocol} "
                + (
                    f"→ {', '.join(f'{e.ip}:{e.port}' for e in nat.endpoints) or nat.no_endpoints_action or 'nothing'}"
                    if nat.programmed
                    else "is not programmed"
                ),
                src.node,
                mode=nat.mode,
                layout=nat.layout,
                programmed=nat.programmed,
                endpoints=[f"{e.ip}:{e.port}" for e in nat.endpoints],
                chain=nat.service_chain,
                rules=list(nat.rules[:20]),
            )
        ]
        routed = routed_endpoints(case.endpoints)
        expected = {f"{e.ip}:{e.port}" for e in routed}
        programmed = {f"{e.ip}:{e.port}" for e in nat.endpoints}
        which = "ready" if any(e.ready for e in routed) else "serving terminating"
        if not expected:
            w.record(
                f"source {src.name}: service NAT", StepStatus.PASS, "no ready endpoints to program", evidence, started, src.node
            )
            return
        if not nat.programmed or (not programmed and nat.no_endpoints_action):
            summary = f"kube-proxy on {src.node} has not programmed {svc.key} ({svc.cluster_ip}:{case.port}/{case.protocol}): traffic to the VIP is not translated"
            candidate = Candidate(
                C.KUBE_PROXY_RULES_MISSING,
                Hop.SERVICE_NAT,
                summary,
                src.node,
                remediation(C.KUBE_PROXY_RULES_MISSING, node=src.node),
                src.key,
            )
            self.nat_pending = _NatReading(candidate, tuple(evidence), started, frozenset(programmed), frozenset(expected))
        elif programmed != expected:
            gone, missing = sorted(programmed - expected), sorted(expected - programmed)
            summary = (
                f"kube-proxy's rules for {svc.key} on {src.node} are stale: they send traffic to {', '.join(gone) or 'nothing new'}"
                f"{' but miss ' + ', '.join(missing) if missing else ''}; the API's {which} endpoints are {', '.join(sorted(expected))}"
            )
            candidate = Candidate(
                C.KUBE_PROXY_RULES_STALE,
                Hop.SERVICE_NAT,
                summary,
                src.node,
                remediation(C.KUBE_PROXY_RULES_STALE, node=src.node),
                src.key,
            )
            self.nat_pending = _NatReading(candidate, tuple(evidence), started, frozenset(programmed), frozenset(expected))
        else:
            w.record(
                f"source {src.name}: service NAT",
                StepStatus.PASS,
                f"kube-proxy ({nat.mode}) on {src.node} sends {svc.cluster_ip}:{case.port} to the {len(expected)} {which} endpoints",
                evidence,
                started,
                src.node,
            )

    def settle_service_nat(self) -> None:
        """Turn a held service-NAT reading into a cause, unless this walk's own probes contradict it.

        A reading that the rules are missing, or that they send the VIP to none of the ready endpoints,
        cannot be right when the VIP answered and every ready endpoint answered: the rules were not read
        as they are (a layout read wrongly, rules changing under the read). That is said as a note and
        the probes' result stands. A reading that only misses some endpoints or keeps a vanished one
        among live ones is not contradicted by one VIP probe (it picks one endpoint at random) and stays.
        """
        held, self.nat_pending = self.nat_pending, None
        if held is None:
            return
        w, src = self.w, self.src
        name = f"source {src.name}: service NAT"
        vip = self.probe_outcome.get("vip")
        ready = [e for e in self.case.endpoints if e.ready]
        answered = (
            vip is not None
            and vip.ok
            and bool(ready)
            and all((seen := self.probe_outcome.get(e.ip)) is not None and seen.ok for e in ready)
        )
        nowhere = held.candidate.code == C.KUBE_PROXY_RULES_MISSING or not (held.programmed & held.expected)
        if answered and nowhere:
            what = (
                f'the rules on {src.node} could not be read as expected: they read as "{held.candidate.summary}", '
                f"yet the VIP and all {len(ready)} ready endpoints answered {src.key}"
            )
            w.notes.append(Finding(C.UNDETERMINED, what, src.node, Hop.SERVICE_NAT))
            w.record(name, StepStatus.WARN, what, held.evidence, held.started, src.node)
            return
        w.add(held.candidate)
        w.record(name, StepStatus.FAIL, held.candidate.summary, held.evidence, held.started, src.node)

    async def conntrack(self) -> None:
        w, src, case, svc = self.w, self.src, self.case, self.case.service
        if svc is None or src.node is None or case.port is None or not src.ip:
            return
        started = time.monotonic()
        observed = await w.obs.conntrack(
            src.node, protocol=case.protocol, orig_src=src.ip, orig_dst=svc.cluster_ip, orig_dport=case.port
        )
        if observed.value is None:
            if observed.unreachable:
                w.unreachable(observed, "conntrack")
            return
        current = {e.ip for e in case.endpoints} | {svc.cluster_ip}
        stale = [e for e in observed.value.entries if _carries_traffic(e) and e.reply_src not in current]
        evidence = [
            _ev(
                "conntrack",
                f"{observed.value.total} entries for {src.ip} → {svc.cluster_ip}:{case.port}/{case.protocol} on {src.node}",
                src.node,
                entries=[
                    {
                        "orig": f"{e.orig_src}:{e.orig_sport} → {e.orig_dst}:{e.orig_dport}",
                        "reply_src": f"{e.reply_src}:{e.reply_sport}",
                        "state": e.state,
                        "timeout": e.timeout,
                        "status": list(e.status),
                    }
                    for e in observed.value.entries[:20]
                ],
            )
        ]
        if not stale:
            w.record(
                f"source {src.name}: conntrack",
                StepStatus.PASS,
                "no conntrack entry maps this flow to a vanished endpoint",
                evidence,
                started,
                src.node,
            )
            return
        e = stale[0]
        summary = (
            f"a conntrack entry on {src.node} still maps {e.orig_src}:{e.orig_sport} → {e.orig_dst}:{e.orig_dport}/{case.protocol} to {e.reply_src}, "
            f"which is no endpoint of {svc.key} any more ({e.timeout}s left)"
        )
        w.add(
            Candidate(
                C.CONNTRACK_STALE_ENTRY,
                Hop.SERVICE_NAT,
                summary,
                src.node,
                remediation(
                    C.CONNTRACK_STALE_ENTRY, node=src.node, protocol=case.protocol, vip=svc.cluster_ip, stale=e.reply_src
                ),
                src.key,
            )
        )
        w.record(f"source {src.name}: conntrack", StepStatus.FAIL, summary, evidence, started, src.node)

    # -------------------------------------------------------------------- probes and the path to each endpoint

    async def reachability(self, endpoints: Sequence[EndpointRef], denied: set[str]) -> None:
        w, src, case = self.w, self.src, self.case
        if src.node is None or not src.ip:
            return
        started = time.monotonic()
        probes: list[tuple[str, str, int]] = []
        if case.service is not None and case.port is not None:
            probes.append(("vip", case.service.cluster_ip, case.port))
        for e in endpoints:
            probes.append((e.ip, e.ip, e.port))
        if case.target_kind in ("ip", "external") and case.target_ip and case.port:
            probes.append((case.target_ip, case.target_ip, case.port))
        if not probes:
            return
        results = await asyncio.gather(
            *(w.obs.probe(src.node, pod_ip=src.ip, target=t, port=p, protocol=case.protocol) for _, t, p in probes)
        )
        outcome: dict[str, ProbeView | None] = self.probe_outcome
        evidence = []
        unprobed = []
        for (label, target, port), observed in zip(probes, results, strict=True):
            if observed.value is None:
                unprobed.append(f"{target}:{port}")
            if observed.unreachable:
                w.unreachable(observed, f"the probe {src.key} → {target}:{port}")
            outcome[label] = observed.value
            text = observed.value.outcome if observed.value else f"not probed ({observed.error})"
            evidence.append(
                _ev(
                    "probe",
                    f"{src.key} → {target}:{port}/{case.protocol}: {text}",
                    src.node,
                    target=f"{target}:{port}",
                    outcome=observed.value.outcome if observed.value else None,
                    latency_ms=observed.value.latency_ms if observed.value else None,
                )
            )
        failed = [e for e in endpoints if (seen := outcome.get(e.ip)) is not None and not seen.ok]
        vip = outcome.get("vip")
        ok_count = len([e for e in endpoints if (seen := outcome.get(e.ip)) is not None and seen.ok])
        if not failed and (vip is None or vip.ok) and unprobed:
            w.unprobed = True
            w.record(
                f"source {src.name}: probes",
                StepStatus.WARN,
                f"{src.key} could not be probed to {', '.join(unprobed)}: not checked",
                evidence,
                started,
                src.node,
            )
            return
        if not failed and (vip is None or vip.ok):
            w.record(
                f"source {src.name}: probes",
                StepStatus.PASS,
                f"{src.key} reaches " + (f"the VIP and all {len(endpoints)} endpoints" if vip else "the target"),
                evidence,
                started,
                src.node,
            )
            return
        summary = f"{src.key} cannot reach {len(failed)} of {len(endpoints)} endpoints" + (
            f"; the VIP {vip.outcome}" if vip and not vip.ok else ""
        )
        w.record(f"source {src.name}: probes", StepStatus.FAIL, summary, evidence, started, src.node)
        paths = [self.endpoint_path(e) for e in failed if e.ip not in denied]
        await asyncio.gather(*paths)
        if vip is not None and not vip.ok and ok_count == len(endpoints) and endpoints:
            w.record(
                f"source {src.name}: VIP vs endpoints",
                StepStatus.FAIL,
                "every endpoint answers directly but the VIP does not: the service translation fails",
                (),
                started,
                src.node,
            )

    async def endpoint_path(self, e: EndpointRef, *, protocol: str | None = None, purpose: str = "target") -> list[Candidate]:
        """Walk source node → underlay → destination node → destination pod for one endpoint.

        With purpose "dns" the endpoint is a DNS server: a server that does not listen is the cluster
        DNS failing (DNS_RESOLUTION_FAILED), while a broken path to it keeps its own cause.
        """
        w, src, case = self.w, self.src, self.case
        proto = protocol or case.protocol
        assert src.node is not None and src.ip is not None
        started = time.monotonic()
        name = f"path {src.name} → {e.pod.name if e.pod else e.ip}" + (" (DNS)" if purpose == "dns" else "")
        evidence: list[Evidence] = []
        found: list[Candidate] = []
        src_facts = await self.node_facts(src.node)
        dst_facts = await self.node_facts(e.node)
        remote = e.node is not None and e.node != src.node
        incoming = ""
        if remote:
            lookup = await w.obs.route(src.node, e.ip)
            if lookup.unreachable:
                w.unreachable(lookup, "the route on the source node")
            elif lookup.value is not None:
                route = lookup.value.route
                overlay = lookup.value.overlay
                evidence.append(
                    _ev(
                        "route-lookup",
                        f"{src.node}: route to {e.ip}: "
                        + (
                            f"{route.type} {route.destination} via {route.gateway or '-'} dev {route.device or '-'}"
                            if route
                            else lookup.value.error or "none"
                        ),
                        src.node,
                        route=route.__dict__ if route else None,
                        error=lookup.value.error,
                        overlay=overlay.__dict__ if overlay else None,
                    )
                )
                found += self._route_candidates(e, route, overlay, lookup.value.error, src_facts)
                incoming = overlay.device if overlay else "eth0"
        if dst_facts is not None and remote:
            evidence.append(_facts_evidence(dst_facts))
            found += _node_checks(dst_facts, Hop.DESTINATION_NODE, forwards=True)
            if incoming and incoming != "eth0":
                for o in dst_facts.overlays:
                    if o.link.name == incoming and not o.link.up:
                        found.append(
                            Candidate(
                                C.OVERLAY_DEVICE_DOWN,
                                Hop.UNDERLAY,
                                f"{o.link.name} on {e.node} is down: traffic from other nodes' pods cannot arrive",
                                e.node,
                                remediation(C.OVERLAY_DEVICE_DOWN, node=e.node or "NODE", device=o.link.name),
                            )
                        )
        if e.node is not None:
            await self._filter_checks(src.node, Hop.SOURCE_NODE, e, (), found, evidence, proto)
            if remote:
                await self._filter_checks(e.node, Hop.DESTINATION_NODE, e, (incoming or "eth0",), found, evidence, proto)
                back = await w.obs.route(e.node, src.ip)
                if back.unreachable:
                    w.unreachable(back, "the route back on the destination node")
                if back.value is not None:
                    route = back.value.route
                    evidence.append(
                        _ev(
                            "route-lookup",
                            f"{e.node}: route back to {src.ip}: "
                            + (
                                f"{route.type} via {route.gateway or '-'} dev {route.device or '-'}"
                                if route
                                else back.value.error or "none"
                            ),
                            e.node,
                            route=route.__dict__ if route else None,
                        )
                    )
                    if incoming and route is not None and route.usable and route.device and route.device != incoming:
                        rp = await w.obs.filter_state(
                            e.node, src=src.ip, dst=e.ip, protocol=proto, dport=e.port, interfaces=(incoming,)
                        )
                        if rp.unreachable:
                            w.unreachable(rp, "rp_filter")
                        level = rp.value.rp_filter.get(incoming, 0) if rp.value else 0
                        if level == 1:
                            found.append(
                                Candidate(
                                    C.RP_FILTER_DROPS,
                                    Hop.DESTINATION_NODE,
                                    f"strict rp_filter on {e.node}'s {incoming} drops packets from {src.ip}: they arrive on {incoming} but the route back leaves via {route.device}",
                                    e.node,
                                    remediation(C.RP_FILTER_DROPS, node=e.node, device=incoming),
                                )
                            )
                    if route is None or not route.usable:
                        down = [o.link.name for o in (dst_facts.overlays if dst_facts else ()) if not o.link.up]
                        if down:
                            found.append(
                                Candidate(
                                    C.OVERLAY_DEVICE_DOWN,
                                    Hop.UNDERLAY,
                                    f"{down[0]} on {e.node} is down, so it has no route back to {src.ip}",
                                    e.node,
                                    remediation(C.OVERLAY_DEVICE_DOWN, node=e.node, device=down[0]),
                                )
                            )
                        else:
                            found.append(
                                Candidate(
                                    C.NODE_ROUTE_MISSING,
                                    Hop.DESTINATION_NODE,
                                    f"{e.node} has no route back to {src.ip}: replies cannot return",
                                    e.node,
                                    remediation(
                                        C.NODE_ROUTE_MISSING,
                                        node=e.node,
                                        cidr=self._cidr_of(src.node),
                                        via=self._node_ip(src.node),
                                        device="eth0",
                                    ),
                                )
                            )
            found += await self._destination_pod(e, dst_facts, evidence, proto)
        if purpose == "dns":
            found = [
                Candidate(
                    C.DNS_RESOLUTION_FAILED,
                    Hop.DNS,
                    f"the cluster DNS server {e.pod.key if e.pod else e.ip} does not answer: {c.summary}",
                    None,
                    remediation(C.DNS_RESOLUTION_FAILED),
                )
                if c.code == C.DESTINATION_NOT_LISTENING
                else c
                for c in found
            ]
        for c in found:
            w.add(Candidate(c.code, c.hop, c.summary, c.node, c.remediation, src.key))
        if not found:
            node_probe = await w.obs.probe(e.node, pod_ip="", target=e.ip, port=e.port, protocol=proto) if e.node else None
            if node_probe is not None and node_probe.value is not None:
                evidence.append(
                    _ev(
                        "probe",
                        f"{e.node} (node namespace) → {e.ip}:{e.port}: {node_probe.value.outcome}",
                        e.node,
                        outcome=node_probe.value.outcome,
                    )
                )
        status = StepStatus.FAIL if found else StepStatus.WARN
        w.record(
            name,
            status,
            found[0].summary if found else f"no cause found on the path to {e.ip}:{e.port}",
            evidence,
            started,
            e.node,
        )
        return found

    def _node_ip(self, node: str | None) -> str:
        ref = self.case.nodes.get(node or "")
        return ref.ip if ref else "NODE_IP"

    def _cidr_of(self, node: str | None) -> str:
        ref = self.case.nodes.get(node or "")
        return ref.pod_cidr if ref and ref.pod_cidr else "POD_CIDR"

    def _route_candidates(self, e: EndpointRef, route: Any, overlay: Any, error: str, facts: NodeFacts | None) -> list[Candidate]:
        src = self.src
        node = src.node or ""
        dst_ip = self._node_ip(e.node)
        down = [o.link.name for o in (facts.overlays if facts else ()) if not o.link.up]
        fix = {"node": node, "cidr": self._cidr_of(e.node), "via": dst_ip, "device": "eth0"}
        if route is None or not route.usable:
            if down:
                return [
                    Candidate(
                        C.OVERLAY_DEVICE_DOWN,
                        Hop.UNDERLAY,
                        f"{down[0]} on {node} is down: it has no route to {e.node}'s pods",
                        node,
                        remediation(C.OVERLAY_DEVICE_DOWN, node=node, device=down[0]),
                    )
                ]
            why = route.type if route is not None and route.type not in ("none", "") else (error or "no route")
            return [
                Candidate(
                    C.NODE_ROUTE_MISSING,
                    Hop.UNDERLAY,
                    f"{node} has no route to {e.ip} ({e.node}'s pod CIDR {self._cidr_of(e.node)}): {why}",
                    node,
                    remediation(C.NODE_ROUTE_MISSING, **fix),
                )
            ]
        if overlay is not None:
            if not overlay.device_up:
                return [
                    Candidate(
                        C.OVERLAY_DEVICE_DOWN,
                        Hop.UNDERLAY,
                        f"{overlay.device} on {node} is down",
                        node,
                        remediation(C.OVERLAY_DEVICE_DOWN, node=node, device=overlay.device),
                    )
                ]
            if not overlay.neighbour_mac or not overlay.fdb_remote:
                missing = "neighbour entry" if not overlay.neighbour_mac else "FDB entry"
                return [
                    Candidate(
                        C.OVERLAY_DEVICE_DOWN,
                        Hop.UNDERLAY,
                        f"{overlay.device} on {node} has no {missing} for next hop {overlay.next_hop} ({e.node}): it cannot encapsulate to {e.node}",
                        node,
                        remediation(
                            C.OVERLAY_DEVICE_DOWN, node=node, device=overlay.device, mac=overlay.neighbour_mac, remote=dst_ip
                        ),
                    )
                ]
            if dst_ip not in ("NODE_IP", overlay.fdb_remote):
                return [
                    Candidate(
                        C.NODE_ROUTE_MISSING,
                        Hop.UNDERLAY,
                        f"{node} tunnels traffic for {e.node}'s pods to {overlay.fdb_remote}, not to {e.node} ({dst_ip})",
                        node,
                        remediation(C.NODE_ROUTE_MISSING, **fix, overlay="1"),
                    )
                ]
            return []
        if route.gateway and dst_ip not in ("NODE_IP", route.gateway):
            return [
                Candidate(
                    C.NODE_ROUTE_MISSING,
                    Hop.UNDERLAY,
                    f"{node} routes {e.ip} via {route.gateway}, which is not {e.node} ({dst_ip}): the route points to the wrong place",
                    node,
                    remediation(C.NODE_ROUTE_MISSING, **fix),
                )
            ]
        if (
            not route.gateway
            and route.type == "unicast"
            and dst_ip != "NODE_IP"
            and not route.device.startswith(("cali", "cni", "vxlan", "flannel"))
        ):
            return [
                Candidate(
                    C.NODE_ROUTE_MISSING,
                    Hop.UNDERLAY,
                    f"{node} sends {e.ip} straight out of {route.device} instead of to {e.node} ({dst_ip})",
                    node,
                    remediation(C.NODE_ROUTE_MISSING, **fix),
                )
            ]
        return []

    async def _filter_checks(
        self,
        node: str,
        hop: Hop,
        e: EndpointRef,
        interfaces: tuple[str, ...],
        found: list[Candidate],
        evidence: list[Evidence],
        protocol: str,
    ) -> None:
        src = self.src
        observed = await self.w.obs.filter_state(
            node, src=src.ip or "", dst=e.ip, protocol=protocol, dport=e.port, interfaces=interfaces
        )
        if observed.unreachable:
            self.w.unreachable(observed, "the filter table")
            return
        view = observed.value
        if view is None:
            return
        evidence.append(
            _ev(
                "filter",
                f"{node}: FORWARD policy {view.forward_policy}; "
                + (f"dropping: {'; '.join(view.drops[:3])}" if view.drops else "no rule drops this flow"),
                node,
                forward_policy=view.forward_policy,
                drops=list(view.drops),
                rp_filter=dict(view.rp_filter),
            )
        )
        if view.drops:
            rule = view.drops[0]
            found.append(
                Candidate(
                    C.FORWARD_CHAIN_DROPS,
                    hop,
                    f"the filter FORWARD chain on {node} drops {src.ip} → {e.ip}:{e.port}/{protocol} ({rule})",
                    node,
                    remediation(C.FORWARD_CHAIN_DROPS, node=node, rule=rule.split(": ", 1)[-1]),
                )
            )

    async def _destination_pod(
        self, e: EndpointRef, facts: NodeFacts | None, evidence: list[Evidence], protocol: str
    ) -> list[Candidate]:
        w, src = self.w, self.src
        assert e.node is not None
        found: list[Candidate] = []
        pod = e.pod or PodRef(namespace="", name=e.ip, ip=e.ip, node=e.node)
        located, sockets = await asyncio.gather(w.obs.locate_pod(e.node, e.ip), w.obs.sockets(e.node, e.ip, e.port, protocol))
        if located.value is not None:
            net = located.value
            evidence.append(_net_evidence(pod, net))
            found += _pod_interface_checks(
                w, pod, net, facts, Hop.DESTINATION_POD, _overlay_mtu(facts) if e.node != src.node else None, [src.ip or ""]
            )
            if net.route_to_pod is not None and not net.route_to_pod.usable:
                found.append(
                    Candidate(
                        C.NODE_ROUTE_MISSING,
                        Hop.DESTINATION_NODE,
                        f"{e.node} has no usable route to its own pod {e.ip}",
                        e.node,
                        remediation(
                            C.NODE_ROUTE_MISSING,
                            node=e.node,
                            cidr=f"{e.ip}/32",
                            via="",
                            device=net.host_peer.name if net.host_peer else "VETH",
                        ),
                    )
                )
        elif located.unreachable:
            w.unreachable(located, f"the destination pod {pod.key}")
        elif located.error_kind == "not_found":
            found.append(
                Candidate(
                    C.POD_HAS_NO_IP,
                    Hop.DESTINATION_POD,
                    f"no pod on {e.node} holds {e.ip} any more, though the API lists it for {pod.key}",
                    e.node,
                    remediation(C.POD_HAS_NO_IP, namespace=pod.namespace, pod=pod.name, node=e.node),
                )
            )
        if sockets.value is not None:
            evidence.append(
                _ev(
                    "sockets",
                    f"{pod.key}: "
                    + (
                        ", ".join(f"{s.protocol} {s.address}:{s.port} ({s.process})" for s in sockets.value)
                        or f"nothing listens on {e.port}/{protocol}"
                    ),
                    e.node,
                    sockets=[s.__dict__ for s in sockets.value],
                )
            )
            if not sockets.value and not found:
                found.append(
                    Candidate(
                        C.DESTINATION_NOT_LISTENING,
                        Hop.DESTINATION_POD,
                        f"nothing listens on {e.port}/{protocol} inside {pod.key}",
                        e.node,
                        remediation(C.DESTINATION_NOT_LISTENING, namespace=pod.namespace, pod=pod.name, port=str(e.port)),
                    )
                )
        elif sockets.unreachable:
            w.unreachable(sockets, "the listening sockets")
        return found


# ------------------------------------------------------------------------------ the verdict


def _choose(w: _Walk) -> tuple[Verdict, list[Finding]]:
    case, candidates, unchecked, steps = w.case, w.candidates, w.unchecked, w.steps
    ordered = sorted(candidates, key=lambda c: c.rank)
    findings = []
    seen: set[tuple[C, str | None, str]] = set()
    if not ordered:
        probes_failed = any(s.status == StepStatus.FAIL for s in steps)
        if unchecked and (probes_failed or w.unprobed):
            # A failure nothing observed explains, or a success that could not be checked: say what
            # could not be checked and where — a busy or silent agent is never evidence of a fault.
            nodes = sorted(w.why_unchecked)
            how = "; ".join(f"the kubereach agent on {n} {' / '.join(sorted(w.why_unchecked[n]))}" for n in nodes)
            verdict = Verdict(
                C.AGENT_UNREACHABLE,
                f"{how}; not checked: {'; '.join(dict.fromkeys(unchecked))}",
                nodes[0] if len(nodes) == 1 else None,
                Hop.DESTINATION_NODE,
                remediation(C.AGENT_UNREACHABLE, node=nodes[0]),
            )
            return verdict, []
        if probes_failed:
            return Verdict(
                C.UNDETERMINED,
                f"{case.source_display} cannot reach {case.target_display}, and the checks found no cause: see the steps for what was ruled out",
                None,
                None,
                (
                    "# compare the probes: VIP vs endpoint, pod vs node namespace",
                    "# capture on the path: tcpdump -ni any host TARGET",
                ),
            ), []
        summary = f"{case.source_display} reaches {case.target_display} now: every probe succeeded"
        if unchecked:
            findings.append(Finding(C.AGENT_UNREACHABLE, f"not checked: {'; '.join(dict.fromkeys(unchecked))}"))
        return Verdict(C.NO_FAULT_FOUND, summary), findings
    first = ordered[0]
    for c in ordered[1:]:
        key = (c.code, c.node, c.summary)
        if key in seen or (c.code == first.code and c.node == first.node):
            continue
        seen.add(key)
        findings.append(Finding(c.code, c.summary, c.node, c.hop))
    if unchecked:
        findings.append(Finding(C.AGENT_UNREACHABLE, f"not checked: {'; '.join(dict.fromkeys(unchecked))}"))
    return Verdict(first.code, first.summary, first.node, first.hop, first.remediation), findings


async def run_playbook(case: Case, observer: Observer, on_step: StepCallback | None = None) -> Diagnosis:
    """Walk the path from every sampled source pod and return one verdict with steps and findings."""
    w = _Walk(case, observer, on_step)
    if not case.sources:
        return Diagnosis(Verdict(C.SOURCE_NOT_FOUND, f"{case.source_display} has no pods"), tuple(w.steps), ())
    if _check_target_api(w):
        await _check_target_port(w)
    walks = [_SourceWalk(w, src) for src in case.sources]
    await asyncio.gather(*(sw.run() for sw in walks))
    per_source: dict[str, str] = {}
    for src in case.sources:
        mine = [c for c in w.candidates if c.source in (src.key, None)]
        per_source[src.key] = min(mine, key=lambda c: c.rank).code.value if mine else C.NO_FAULT_FOUND.value
    verdict, findings = _choose(w)
    findings += [n for i, n in enumerate(w.notes) if n not in w.notes[:i]]
    failing = [k for k, code in per_source.items() if code != C.NO_FAULT_FOUND.value]
    if verdict.code != C.NO_FAULT_FOUND and failing and len(failing) < len(per_source):
        by_node = sorted({s.node or "?" for s in case.sources if s.key in failing})
        fine = sorted({s.node or "?" for s in case.sources if s.key not in failing} - set(by_node))
        if verdict.code == C.AGENT_UNREACHABLE:
            prefix = f"pods on {', '.join(by_node)} could not be checked" + (
                f" (pods on {', '.join(fine)} reach {case.target_display})" if fine else ""
            )
        else:
            prefix = f"only pods on {', '.join(by_node)} cannot reach {case.target_display}" + (
                f" (pods on {', '.join(fine)} can)" if fine else ""
            )
        verdict = Verdict(verdict.code, f"{prefix}: {verdict.summary}", verdict.node, verdict.hop, verdict.remediation)
    return Diagnosis(verdict, tuple(w.steps), tuple(findings), per_source)
