"""One sweep of the cluster for a digest: every agent in parallel, and the API.

The API is read once (nodes, pods, services, EndpointSlices, in a worker thread); then a single fan-out
with the fleet's overall deadline asks every node's agent for GetNodeInfo (conntrack, ip_forward, CNI
shape with MTUs), ListServiceNat (every programmed service port) and GetFilterState (the FORWARD
policy for a pod flow between nodes), plus LocatePod for a few sampled pods per node (their eth0 MTU).
LocatePod for every pod would be too many calls on a big cluster; the CNI shape covers every node and
the sample covers the pods. Protobuf stays here: replies are parsed once into `bot.digest.models`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from bot.cluster.client import ENDPOINT_SLICES, NODES, PODS, SERVICES, ClusterClient
from bot.cluster.errors import ClusterUnavailable
from bot.cluster.models import PodInfo, endpoints_of_slice, namespace_of, node_info, pod_info, service_info
from bot.digest.content import EndpointFacts, ServiceFacts, service_states
from bot.digest.models import (
    ConntrackUsage,
    LinkMtu,
    NodeSweep,
    PodMtuSample,
    ProgrammedServicePort,
    Sweep,
)
from bot.digest.nodeports import EndpointNode, ServiceSpec, local_traffic_services, spec_of
from bot.fleet.client import AgentOutcome, Fleet, FleetCall
from bot.settings import BotSettings
from kubereach.agent.v1 import agent_pb2 as pb

PODS_PER_NODE = 4
"""Pods sampled per node for the pod MTU check (namespaces in turn, distinct workloads first)."""
MAX_POD_SAMPLES = 512
"""At most this many LocatePod calls per sweep: on big clusters fewer pods per node are sampled."""
LIST_NAT_TIMEOUT_S = 8.0
"""ListServiceNat reads the whole ruleset; it may take longer than one ordinary call."""
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


class SweepSource(Protocol):
    """Where a sweep reads from: the bot's settings, its Kubernetes client and its agents (the `Investigator`)."""

    @property
    def settings(self) -> BotSettings:
        """The bot's settings (cluster name, agent timeouts)."""

    @property
    def cluster(self) -> ClusterClient:
        """The Kubernetes client."""

    def agent_addresses(self) -> dict[str, str]:
        """node → address of its agent."""


class _ApiView:
    """What the API said, parsed."""

    def __init__(self) -> None:
        self.nodes: dict[str, str | None] = {}
        """node → pod CIDR."""
        self.pods: list[PodInfo] = []
        self.services: list[ServiceFacts] = []
        self.endpoints: dict[str, list[EndpointFacts]] = defaultdict(list)
        self.specs: list[ServiceSpec] = []
        self.endpoint_nodes: dict[str, list[EndpointNode]] = defaultdict(list)
        self.error: str | None = None


def _read_api(cluster: ClusterClient) -> _ApiView:
    view = _ApiView()
    try:
        for obj in cluster.list_objects(NODES):
            node = node_info(obj)
            view.nodes[node.name] = node.pod_cidr
        view.pods = [pod_info(obj) for obj in cluster.list_objects(PODS)]
        objects = cluster.list_objects(SERVICES)
        services = [service_info(obj) for obj in objects]
        view.specs = [spec_of(obj) for obj in objects]
        for obj in cluster.list_objects(ENDPOINT_SLICES):
            labels = (obj.get("metadata") or {}).get("labels") or {}
            owner = labels.get(SERVICE_NAME_LABEL) if isinstance(labels, Mapping) else None
            if not owner:
                continue
            key = f"{namespace_of(obj)}/{owner}"
            for e in endpoints_of_slice(obj):
                view.endpoint_nodes[key].append((e.node, e.ready))
                view.endpoints[key].append(
                    (e.ip, e.ready, [(p.name, p.port, p.protocol) for p in e.ports], e.serving and e.terminating)
                )
        view.services = [
            (s.namespace, s.name, s.cluster_ip, s.type, s.selector, [(p.name, p.port, p.protocol) for p in s.ports])
            for s in services
        ]
    except ClusterUnavailable as exc:
        view.error = exc.message
    return view


def sample_pods_for_mtu(
    pods: Sequence[PodInfo], namespaces: Sequence[str], per_node: int = PODS_PER_NODE, rotation: int = 0
) -> list[PodInfo]:
    """Up to `per_node` running pods with an IP on each node, in a stable order that spreads the sample.

    On each node the namespaces take turns, and within a namespace each workload gives one pod before
    any gives a second, so a small sample covers as many workloads as it can. `rotation` (the day
    number, in sweeps) shifts where each node's sample starts, so successive digests cover every pod.
    """
    eligible = [
        p for p in pods if p.running and p.ip and p.node and not p.host_network and (not namespaces or p.namespace in namespaces)
    ]
    by_node: dict[str, list[PodInfo]] = defaultdict(list)
    for pod in sorted(eligible, key=lambda p: (p.namespace, p.name)):
        assert pod.node is not None
        by_node[pod.node].append(pod)
    chosen: list[PodInfo] = []
    if by_node:
        per_node = max(1, min(per_node, MAX_POD_SAMPLES // len(by_node)))
    for node in sorted(by_node):
        pods_taken: dict[tuple[str, str], int] = defaultdict(int)
        workload_turn: dict[tuple[str, str], int] = {}
        workloads_in: dict[str, int] = defaultdict(int)
        namespace_turn: dict[str, int] = {}
        order: list[tuple[int, int, int, str, PodInfo]] = []
        for pod in by_node[node]:
            workload = (pod.namespace, pod.workload_name or pod.name)
            if workload not in workload_turn:
                workload_turn[workload] = workloads_in[pod.namespace]
                workloads_in[pod.namespace] += 1
            namespace_turn.setdefault(pod.namespace, len(namespace_turn))
            order.append((pods_taken[workload], workload_turn[workload], namespace_turn[pod.namespace], pod.name, pod))
            pods_taken[workload] += 1
        order.sort(key=lambda entry: entry[:4])
        start = rotation % len(order)
        rotated = order[start:] + order[:start]
        chosen.extend(entry[4] for entry in rotated[:per_node])
    return chosen


def _host(cidr: str | None, offset: int, fallback: str) -> str:
    if not cidr:
        return fallback
    try:
        network = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return fallback
    if network.num_addresses <= offset:
        return fallback
    return str(network.network_address + offset)


def _forward_probe_flow(node: str, cidrs: Mapping[str, str | None]) -> tuple[str, str]:
    """A pod-to-pod flow from another node into `node` (addresses only; nothing is sent)."""
    others = sorted(n for n in cidrs if n != node)
    src = _host(cidrs.get(others[0]) if others else None, 2, "192.0.2.1")
    dst = _host(cidrs.get(node), 2, "192.0.2.2")
    if src == dst:
        src = "192.0.2.1"
    return src, dst


def _link(msg: Any) -> LinkMtu:
    return LinkMtu(
        name=msg.name,
        mtu=msg.mtu,
        kind=msg.kind,
        master=msg.master,
        up=bool(msg.admin_up) and msg.oper_state.upper() not in ("DOWN", "LOWERLAYERDOWN"),
    )


def _programmed(msg: Any) -> ProgrammedServicePort:
    return ProgrammedServicePort(
        vip=msg.vip,
        port=msg.port,
        protocol=msg.protocol.upper(),
        service_name=msg.service_name,
        endpoints=tuple(f"{e.ip}:{e.port}" for e in msg.endpoints),
        no_endpoints_action=msg.no_endpoints_action,
        unreadable=msg.unreadable,
    )


def _drop_text(hit: Any) -> str:
    """A dropping rule as the digest lists it; a backend other than plain iptables(-nft) is named
    (an nftables table of its own, iptables-legacy), since `iptables -S` would not show the rule."""
    backend = "" if hit.backend in ("", "iptables", "iptables-nft") else f"{hit.backend} "
    return f"{backend}{hit.table}/{hit.chain}: {hit.rule}"


def node_sweep(node: str, info: AgentOutcome, nat: AgentOutcome | None, filters: AgentOutcome | None) -> NodeSweep:
    """One node's facts from its three replies (GetNodeInfo, ListServiceNat, GetFilterState)."""
    if not info.ok:
        return NodeSweep(node, False, info.error or "no answer")
    r = info.payload
    nat_ports: tuple[ProgrammedServicePort, ...] | None = None
    nat_error = None
    if nat is not None and nat.ok:
        nat_ports = tuple(_programmed(s) for s in nat.payload.services)
    elif nat is not None:
        nat_error = nat.error
    policy = None
    drops: tuple[str, ...] = ()
    if filters is not None and filters.ok:
        policy = filters.payload.forward_policy or None
        drops = tuple(_drop_text(d) for d in filters.payload.drops if d.rule and not d.rule.startswith("-P "))
    return NodeSweep(
        name=node,
        agent_ok=True,
        conntrack=ConntrackUsage(
            count=r.conntrack.count,
            max=r.conntrack.max,
            insert_failed=r.conntrack.insert_failed,
            drop=r.conntrack.drop,
            early_drop=r.conntrack.early_drop,
        ),
        ip_forward=r.ip_forward,
        forward_policy=policy,
        forward_drops=drops,
        proxy_mode=r.proxy_mode or None,
        bridges=tuple(_link(b.link) for b in r.cni.bridges),
        bridge_ports=tuple(_link(p) for b in r.cni.bridges for p in b.ports),
        overlays=tuple(_link(o.link) for o in r.cni.overlays),
        nat=nat_ports,
        nat_error=nat_error,
        dataplane=r.dataplane,
    )


def pod_sample(pod: PodInfo, located: AgentOutcome) -> PodMtuSample | None:
    """A pod's MTU facts from its LocatePod reply (None when the agent could not locate it)."""
    if not located.ok or pod.ip is None or pod.node is None:
        return None
    p = located.payload.pod
    if not p.HasField("interface"):
        return None
    peer = p.host_peer.link if p.HasField("host_peer") and p.host_peer.HasField("link") else None
    return PodMtuSample(
        namespace=pod.namespace,
        name=pod.name,
        node=pod.node,
        ip=pod.ip,
        eth0_mtu=p.interface.mtu,
        host_veth=peer.name if peer is not None else "",
        host_veth_mtu=peer.mtu if peer is not None else 0,
    )


async def sweep_cluster(
    source: SweepSource,
    namespaces: Sequence[str] = (),
    *,
    pods_per_node: int = PODS_PER_NODE,
    fleet: Fleet | None = None,
) -> Sweep:
    """Sweep every agent (one fan-out, the fleet's overall deadline) and the API; never raises for a node."""
    started = time.monotonic()
    taken_at = datetime.now(UTC)
    settings = source.settings
    api, addresses = await asyncio.gather(asyncio.to_thread(_read_api, source.cluster), asyncio.to_thread(_agents, source))
    node_names = sorted(set(api.nodes) | set(addresses))
    sampled = sample_pods_for_mtu(api.pods, namespaces, pods_per_node, rotation=taken_at.toordinal())
    calls: list[FleetCall] = []
    for node in node_names:
        src, dst = _forward_probe_flow(node, api.nodes)
        calls.append(FleetCall(node, "GetNodeInfo", pb.GetNodeInfoRequest()))
        calls.append(FleetCall(node, "ListServiceNat", pb.ListServiceNatRequest(), LIST_NAT_TIMEOUT_S))
        calls.append(FleetCall(node, "GetFilterState", pb.GetFilterStateRequest(src=src, dst=dst, protocol=pb.PROTOCOL_TCP)))
    for pod in sampled:
        assert pod.node is not None
        calls.append(FleetCall(pod.node, "LocatePod", pb.LocatePodRequest(pod_ip=pod.ip or "")))
    own_fleet = fleet is None
    active = fleet or Fleet(addresses, settings.agents)
    try:
        outcomes = await active.fan_out(calls)
    finally:
        if own_fleet:
            await active.close()
    replies: dict[tuple[str, str], AgentOutcome] = {}
    located: list[AgentOutcome] = []
    for call, outcome in zip(calls, outcomes, strict=True):
        if call.method == "LocatePod":
            located.append(outcome)
        else:
            replies[(call.node, call.method)] = outcome
    nodes = tuple(
        node_sweep(
            node,
            replies[(node, "GetNodeInfo")],
            replies.get((node, "ListServiceNat")),
            replies.get((node, "GetFilterState")),
        )
        for node in node_names
    )
    pods = tuple(s for s in (pod_sample(p, o) for p, o in zip(sampled, located, strict=True)) if s is not None)
    eligible = sum(
        1
        for p in api.pods
        if p.running and p.ip and p.node and not p.host_network and (not namespaces or p.namespace in namespaces)
    )
    return Sweep(
        cluster=settings.cluster,
        taken_at=taken_at,
        nodes=nodes,
        services=service_states(api.services, api.endpoints),
        local_traffic=local_traffic_services(api.specs, api.endpoint_nodes),
        pods=pods,
        pods_total=eligible,
        api_error=api.error,
        duration_ms=round((time.monotonic() - started) * 1000, 1),
    )


def _agents(source: SweepSource) -> dict[str, str]:
    try:
        return source.agent_addresses()
    except ClusterUnavailable:
        return {}
