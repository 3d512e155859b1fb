"""The playbook's `Observer`, implemented with calls to the node agents.

Protobuf stays here: every reply is parsed once into the playbook's plain observation types.
Identical questions within one investigation are asked once (a small memo), so steps that need the
same fact do not multiply RPCs. A call the agent refused as busy, or that timed out or found the
agent briefly gone, is tried again with backoff while the investigation's deadline allows; if it
still has no answer, the observation says so (`Observed.unreachable`) and the playbook treats it as
"not checked", never as evidence.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from bot.fleet.client import AgentOutcome, Fleet
from bot.playbook.observations import (
    CapturedHeader,
    ConntrackCounters,
    ConntrackEntry,
    ConntrackView,
    EgressNatRule,
    EgressNatView,
    FilterHit,
    FilterView,
    Link,
    ListeningSocket,
    MarkedProbe,
    NatEndpoint,
    NatView,
    NodeFacts,
    Observed,
    OverlayDevice,
    OverlayHop,
    PodNetwork,
    PointCapture,
    ProbeView,
    RouteInfo,
    RouteLookup,
    TracePlan,
    TraceRun,
)
from kubereach.agent.v1 import agent_pb2 as pb

T = TypeVar("T")

_PROTOCOLS = {"TCP": pb.PROTOCOL_TCP, "UDP": pb.PROTOCOL_UDP, "SCTP": pb.PROTOCOL_SCTP}
_ENTRIES = {"nodeport": pb.ENTRY_NODE_PORT, "external-ip": pb.ENTRY_EXTERNAL_IP, "load-balancer": pb.ENTRY_LOAD_BALANCER}


def _nat_view(r: Any) -> NatView:
    """A GetServiceNatResponse as the playbook reads it."""
    s = r.service
    return NatView(
        mode=s.mode,
        programmed=s.programmed,
        endpoints=tuple(NatEndpoint(e.ip, e.port, e.probability if e.HasField("probability") else None) for e in s.endpoints),
        no_endpoints_action=s.no_endpoints_action,
        service_name=s.service_name,
        service_chain=s.service_chain,
        rules=tuple(s.rules),
        layout=s.layout,
        unreadable=s.unreadable,
        entry=s.entry,
        external_policy=s.external_policy,
        health_check_node_port=s.health_check_node_port,
    )


_ROUTE_TYPES = {
    pb.ROUTE_TYPE_UNICAST: "unicast",
    pb.ROUTE_TYPE_LOCAL: "local",
    pb.ROUTE_TYPE_BROADCAST: "broadcast",
    pb.ROUTE_TYPE_MULTICAST: "multicast",
    pb.ROUTE_TYPE_BLACKHOLE: "blackhole",
    pb.ROUTE_TYPE_UNREACHABLE: "unreachable",
    pb.ROUTE_TYPE_PROHIBIT: "prohibit",
    pb.ROUTE_TYPE_THROW: "throw",
    pb.ROUTE_TYPE_NO_ROUTE: "none",
}
_OUTCOMES = {
    pb.PROBE_OUTCOME_CONNECTED: "connected",
    pb.PROBE_OUTCOME_REFUSED: "refused",
    pb.PROBE_OUTCOME_TIMED_OUT: "timed_out",
    pb.PROBE_OUTCOME_UNREACHABLE: "unreachable",
    pb.PROBE_OUTCOME_RESET: "reset",
    pb.PROBE_OUTCOME_ERROR: "error",
}
PROBE_TIMEOUT_MS = 1500
PROBE_RPC_TIMEOUT_S = 6.0
"""A probe may take its own timeout per attempt; the RPC deadline leaves room for that, so a probe
that times out comes back as the outcome "timed out", not as an agent that did not answer."""
DNS_RPC_TIMEOUT_S = 12.0
MAX_ATTEMPTS = 4
"""Tries of one call whose failure may pass (busy, timed out, briefly unreachable)."""
FIRST_BACKOFF_S = 0.2
MIN_ATTEMPT_S = 0.5
"""No new attempt starts with less than this left of the investigation's deadline."""


def _link(msg: Any) -> Link:
    return Link(
        name=msg.name,
        index=msg.index,
        kind=msg.kind,
        mtu=msg.mtu,
        oper_state=msg.oper_state,
        admin_up=msg.admin_up,
        master=msg.master,
        addresses=tuple(msg.addresses),
    )


def _route(msg: Any) -> RouteInfo:
    return RouteInfo(
        destination=msg.destination,
        gateway=msg.gateway,
        device=msg.device,
        source=msg.source,
        type=_ROUTE_TYPES.get(msg.type, "unicast"),
    )


def _header(h: Any) -> CapturedHeader:
    return CapturedHeader(
        ts_ms=h.ts_ms,
        outgoing=h.outgoing,
        src_ip=h.src_ip,
        dst_ip=h.dst_ip,
        src_port=h.src_port,
        dst_port=h.dst_port,
        tcp_flags=h.tcp_flags,
        encapsulated=h.encapsulated,
        outer_src_ip=h.outer_src_ip,
        outer_dst_ip=h.outer_dst_ip,
        icmp=h.icmp,
        icmp_type=h.icmp_type,
        icmp_code=h.icmp_code,
        icmp_mtu=h.icmp_mtu,
        length=h.length,
    )


def _point(p: Any) -> PointCapture:
    return PointCapture(
        packets=p.packets,
        first_seen_ms=p.first_seen_ms,
        samples=tuple(_header(h) for h in p.samples),
        error=p.error,
    )


def _probe(msg: Any, **extra: Any) -> ProbeView:
    return ProbeView(outcome=_OUTCOMES.get(msg.outcome, "error"), latency_ms=msg.latency_ms, error=msg.error, **extra)


class FleetObserver:
    """`bot.playbook.observations.Observer` over a `Fleet`, memoising identical questions."""

    def __init__(self, fleet: Fleet, budget_s: float | None = None) -> None:
        """`budget_s`: how long this investigation may spend asking (default: the fleet's overall deadline)."""
        self.fleet = fleet
        self._memo: dict[tuple[Any, ...], asyncio.Future[Any]] = {}
        self.calls: list[AgentOutcome] = []
        self.deadline = time.monotonic() + (budget_s if budget_s is not None else fleet.settings.overall_timeout_s)

    async def _ask(
        self,
        key: tuple[Any, ...],
        node: str,
        method: str,
        request: Any,
        parse: Callable[[Any], T],
        timeout_s: float | None = None,
    ) -> Observed[T]:
        future = self._memo.get(key)
        if future is None:
            future = asyncio.ensure_future(self._call(node, method, request, parse, timeout_s))
            self._memo[key] = future
        result: Observed[T] = await asyncio.shield(future)
        return result

    async def _call(
        self, node: str, method: str, request: Any, parse: Callable[[Any], T], timeout_s: float | None
    ) -> Observed[T]:
        wanted = timeout_s or self.fleet.settings.call_timeout_s
        backoff = FIRST_BACKOFF_S
        attempt = 1
        while True:
            left = self.deadline - time.monotonic()
            outcome = await self.fleet.call(node, method, request, max(min(wanted, left), MIN_ATTEMPT_S))
            self.calls.append(outcome)
            if outcome.ok:
                return Observed(node, value=parse(outcome.payload))
            kind = outcome.error_kind
            pause = backoff * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not a secret
            left = self.deadline - time.monotonic()
            if kind is None or not kind.retryable or attempt >= MAX_ATTEMPTS or left - pause < MIN_ATTEMPT_S:
                tried = f" (tried {attempt} times)" if attempt > 1 else ""
                return Observed(node, error=f"{outcome.error}{tried}", error_kind=kind)
            await asyncio.sleep(pause)
            backoff *= 2
            attempt += 1

    async def conntrack_stats(self, node: str, *, after: str) -> Observed[ConntrackCounters]:
        """GetConntrackStats, read once per `after` (the lookup it follows), not shared with node_facts."""

        def parse(r: Any) -> ConntrackCounters:
            return ConntrackCounters(r.stats.count, r.stats.max, r.stats.insert_failed, r.stats.drop)

        return await self._ask(("conntrack-stats", node, after), node, "GetConntrackStats", pb.GetConntrackStatsRequest(), parse)

    async def node_facts(self, node: str) -> Observed[NodeFacts]:
        """GetNodeInfo."""

        def parse(r: Any) -> NodeFacts:
            return NodeFacts(
                node=r.node_name or node,
                kernel=r.kernel_release,
                proxy_mode=r.proxy_mode,
                ip_forward=r.ip_forward,
                conntrack_count=r.conntrack.count,
                conntrack_max=r.conntrack.max,
                insert_failed=r.conntrack.insert_failed,
                drop=r.conntrack.drop,
                early_drop=r.conntrack.early_drop,
                bridges=tuple(_link(b.link) for b in r.cni.bridges),
                bridge_ports={b.link.name: tuple(p.name for p in b.ports) for b in r.cni.bridges},
                overlays=tuple(OverlayDevice(_link(o.link), o.vni, o.udp_port, o.local_ip) for o in r.cni.overlays),
                calico_interfaces=tuple(_link(c) for c in r.cni.calico_interfaces),
                netns=r.netns_name,
                dataplane=r.dataplane,
                dataplane_evidence=tuple(r.dataplane_evidence),
            )

        return await self._ask(("facts", node), node, "GetNodeInfo", pb.GetNodeInfoRequest(), parse)

    async def locate_pod(self, node: str, pod_ip: str) -> Observed[PodNetwork]:
        """LocatePod."""

        def parse(r: Any) -> PodNetwork:
            p = r.pod
            peer = p.host_peer
            return PodNetwork(
                pod_ip=p.pod_ip,
                netns=p.netns_name or str(p.netns_inode),
                eth0=_link(p.interface) if p.HasField("interface") else None,
                routes=tuple(_route(rt) for rt in p.routes),
                host_peer=_link(peer.link) if p.HasField("host_peer") and peer.HasField("link") else None,
                route_to_pod=_route(peer.route_to_pod) if p.HasField("host_peer") and peer.HasField("route_to_pod") else None,
                proxy_arp=peer.proxy_arp,
                hairpin=peer.hairpin if p.HasField("host_peer") and peer.HasField("hairpin") else None,
            )

        return await self._ask(("locate", node, pod_ip), node, "LocatePod", pb.LocatePodRequest(pod_ip=pod_ip), parse)

    async def route(self, node: str, destination: str, *, source: str = "", pod_ip: str = "") -> Observed[RouteLookup]:
        """LookupRoute."""

        def parse(r: Any) -> RouteLookup:
            overlay = None
            if r.HasField("overlay"):
                o = r.overlay
                overlay = OverlayHop(
                    device=o.device.link.name,
                    device_up=_link(o.device.link).up,
                    next_hop=o.next_hop,
                    neighbour_mac=o.neighbour.mac if o.HasField("neighbour") else "",
                    neighbour_state=tuple(o.neighbour.state) if o.HasField("neighbour") else (),
                    fdb_remote=o.fdb.remote_ip if o.HasField("fdb") else "",
                )
            route = _route(r.route) if r.HasField("route") else None
            return RouteLookup(route=route, error=r.error, overlay=overlay)

        request = pb.LookupRouteRequest(destination=destination, source=source, pod_ip=pod_ip)
        return await self._ask(("route", node, destination, source, pod_ip), node, "LookupRoute", request, parse)

    async def service_nat(self, node: str, vip: str, port: int, protocol: str) -> Observed[NatView]:
        """GetServiceNat."""
        request = pb.GetServiceNatRequest(vip=vip, port=port, protocol=_PROTOCOLS.get(protocol, pb.PROTOCOL_TCP))
        return await self._ask(("nat", node, vip, port, protocol), node, "GetServiceNat", request, _nat_view)

    async def entry_nat(self, node: str, kind: str, address: str, port: int, protocol: str) -> Observed[NatView]:
        """GetServiceNat with an entry from outside the cluster."""
        request = pb.GetServiceNatRequest(
            vip=address,
            port=port,
            protocol=_PROTOCOLS.get(protocol, pb.PROTOCOL_TCP),
            entry=_ENTRIES.get(kind, pb.ENTRY_NODE_PORT),
        )
        return await self._ask(("entry-nat", node, kind, address, port, protocol), node, "GetServiceNat", request, _nat_view)

    async def conntrack(
        self, node: str, *, protocol: str, orig_src: str, orig_dst: str, orig_dport: int
    ) -> Observed[ConntrackView]:
        """QueryConntrack (bounded)."""

        def parse(r: Any) -> ConntrackView:
            entries = tuple(
                ConntrackEntry(
                    protocol=e.protocol,
                    orig_src=e.orig.src,
                    orig_dst=e.orig.dst,
                    orig_sport=e.orig.sport if e.orig.HasField("sport") else None,
                    orig_dport=e.orig.dport if e.orig.HasField("dport") else None,
                    reply_src=e.reply.src,
                    reply_sport=e.reply.sport if e.reply.HasField("sport") else None,
                    reply_dst=e.reply.dst,
                    state=e.state,
                    timeout=e.timeout,
                    status=tuple(e.status),
                )
                for e in r.entries
            )
            return ConntrackView(total=r.total_matched, entries=entries)

        request = pb.QueryConntrackRequest(
            protocol=_PROTOCOLS.get(protocol, pb.PROTOCOL_TCP),
            orig_src=orig_src,
            orig_dst=orig_dst,
            orig_dport=orig_dport,
            limit=200,
        )
        return await self._ask(("ct", node, protocol, orig_src, orig_dst, orig_dport), node, "QueryConntrack", request, parse)

    async def filter_state(
        self, node: str, *, src: str, dst: str, protocol: str, dport: int, interfaces: tuple[str, ...]
    ) -> Observed[FilterView]:
        """GetFilterState."""

        def hit(d: Any) -> FilterHit:
            return FilterHit(
                table=d.table,
                chain=d.chain,
                rule=d.rule,
                target=d.target,
                backend=d.backend or "iptables",
                hook=d.hook or "forward",
                handle=d.handle if d.HasField("handle") else None,
                packets=d.packets if d.HasField("packets") else None,
            )

        def parse(r: Any) -> FilterView:
            return FilterView(
                forward_policy=r.forward_policy,
                drops=tuple(hit(d) for d in r.drops),
                ip_forward=r.ip_forward,
                rp_filter=dict(r.rp_filter),
                possible=tuple(hit(d) for d in r.possible),
                hooks=tuple(r.hooks) or ("prerouting", "forward", "postrouting"),
                local_source=r.local_source,
                local_destination=r.local_destination,
                not_checked=tuple(r.not_checked),
            )

        request = pb.GetFilterStateRequest(
            src=src, dst=dst, protocol=_PROTOCOLS.get(protocol, pb.PROTOCOL_TCP), dport=dport, interfaces=list(interfaces)
        )
        key = ("filter", node, src, dst, protocol, dport, interfaces)
        return await self._ask(key, node, "GetFilterState", request, parse)

    async def egress_nat(self, node: str, *, pod_ip: str, destination: str, protocol: str, port: int) -> Observed[EgressNatView]:
        """GetEgressNat."""

        def rules(found: Any) -> tuple[EgressNatRule, ...]:
            return tuple(EgressNatRule(r.table, r.chain, r.rule, r.target, r.certain) for r in found)

        def parse(r: Any) -> EgressNatView:
            return EgressNatView(
                verdict=r.verdict,
                rules=rules(r.rules),
                possible=rules(r.possible),
                out_interface=r.out_interface,
                chains=tuple(r.chains),
                unreadable=r.unreadable,
            )

        request = pb.GetEgressNatRequest(
            pod_ip=pod_ip, destination=destination, protocol=_PROTOCOLS.get(protocol, pb.PROTOCOL_TCP), port=port
        )
        return await self._ask(("egress-nat", node, pod_ip, destination, protocol, port), node, "GetEgressNat", request, parse)

    async def sockets(self, node: str, pod_ip: str, port: int, protocol: str) -> Observed[tuple[ListeningSocket, ...]]:
        """ListSockets in a pod's namespace ('' = the node's)."""
        names = {pb.PROTOCOL_TCP: "TCP", pb.PROTOCOL_UDP: "UDP", pb.PROTOCOL_SCTP: "SCTP"}

        def parse(r: Any) -> tuple[ListeningSocket, ...]:
            return tuple(
                ListeningSocket(names.get(s.protocol, "?"), s.local_address, s.local_port, s.process_name, s.pid, s.cgroup)
                for s in r.sockets
            )

        request = pb.ListSocketsRequest(pod_ip=pod_ip, port=port, protocol=_PROTOCOLS.get(protocol, pb.PROTOCOL_TCP))
        return await self._ask(("sockets", node, pod_ip, port, protocol), node, "ListSockets", request, parse)

    async def probe(
        self, node: str, *, pod_ip: str, target: str, port: int, protocol: str, timeout_ms: int | None = None
    ) -> Observed[ProbeView]:
        """ProbeTcp, or ProbeDns for UDP port 53, or ProbeUdp; `timeout_ms` (None: `PROBE_TIMEOUT_MS`) per attempt."""
        wait_ms = timeout_ms or PROBE_TIMEOUT_MS
        key = ("probe", node, pod_ip, target, port, protocol, wait_ms)
        if protocol == "UDP" and port == 53:
            return await self.probe_dns(node, pod_ip=pod_ip, name="kube-dns.kube-system.svc.cluster.local", server=target)
        if protocol == "UDP":
            udp = pb.ProbeUdpRequest(pod_ip=pod_ip, target_ip=target, port=port, timeout_ms=wait_ms, payload=b"kubereach\n")
            return await self._ask(key, node, "ProbeUdp", udp, lambda r: _probe(r.result), PROBE_RPC_TIMEOUT_S)
        tcp = pb.ProbeTcpRequest(pod_ip=pod_ip, target_ip=target, port=port, timeout_ms=wait_ms)
        return await self._ask(key, node, "ProbeTcp", tcp, lambda r: _probe(r.result), PROBE_RPC_TIMEOUT_S)

    async def probe_dns(self, node: str, *, pod_ip: str, name: str, server: str = "") -> Observed[ProbeView]:
        """ProbeDns with the pod's own resolver (or `server`)."""

        def parse(r: Any) -> ProbeView:
            return _probe(
                r.result,
                rcode=r.rcode or "NOERROR",
                answers=tuple(r.answers),
                server=r.server,
                retransmits=r.retries,
                queried_names=tuple(r.queried_names),
                search=tuple(r.search),
                ndots=r.ndots if r.resolv_conf else None,
            )

        request = pb.ProbeDnsRequest(pod_ip=pod_ip, name=name, record_type="A", server=server, timeout_ms=PROBE_TIMEOUT_MS)
        return await self._ask(("dns", node, pod_ip, name, server), node, "ProbeDns", request, parse, DNS_RPC_TIMEOUT_S)

    async def trace(self, plan: TracePlan) -> TraceRun:
        """CapturePackets on every node of the plan while the marked probe runs from the source pod."""
        by_node: dict[str, list[int]] = {}
        for i, p in enumerate(plan.points):
            by_node.setdefault(p.node, []).append(i)
        probe = plan.probe
        match = pb.CaptureMatch(
            protocol=_PROTOCOLS.get(probe.protocol, pb.PROTOCOL_TCP),
            addresses=list(plan.addresses),
            port=probe.source_port,
            overlay_udp_port=plan.overlay_udp_port,
            icmp=True,
        )
        starts = {
            node: pb.CaptureStart(
                points=[pb.CapturePoint(interface=plan.points[i].interface, pod_ip=plan.points[i].pod_ip) for i in indexes],
                match=match,
                max_duration_ms=plan.max_duration_ms,
            )
            for node, indexes in by_node.items()
        }
        timeout_s = plan.max_duration_ms / 1000 + 3.0
        outcomes, (probes, retransmits) = await self.fleet.capture(starts, lambda: self._marked(plan), timeout_s)
        captures: list[PointCapture | None] = [None] * len(plan.points)
        unchecked: dict[str, str] = {}
        for node, indexes in by_node.items():
            outcome = outcomes[node]
            self.calls.append(outcome)
            if not outcome.ok:
                unchecked[node] = outcome.error or "did not capture"
                continue
            for i, point in zip(indexes, outcome.payload.points, strict=False):
                captures[i] = _point(point)
        return TraceRun(tuple(captures), tuple(probes), unchecked, retransmits)

    async def _marked(self, plan: TracePlan) -> tuple[list[ProbeView], int]:
        """The marked probe, `count` times one after the other; TCP probes for retransmissions beside them."""
        probe = plan.probe
        extra = [asyncio.ensure_future(self._retransmit_probe(probe)) for _ in range(plan.retransmit_probes)]
        views: list[ProbeView] = []
        # Probes stop a second before the captures' own deadline, so every one of them is seen.
        budget = time.monotonic() + plan.max_duration_ms / 1000 - 1.0
        for _ in range(probe.count):
            if time.monotonic() > budget:
                break
            views.append(await self._marked_once(probe))
        retransmits = sum(await asyncio.gather(*extra)) if extra else sum(v.retransmits for v in views)
        return views, retransmits

    async def _marked_once(self, probe: MarkedProbe) -> ProbeView:
        rpc_timeout = probe.timeout_ms / 1000 + 2.0
        if probe.protocol == "UDP":
            udp = pb.ProbeUdpRequest(
                pod_ip=probe.pod_ip,
                target_ip=probe.target,
                port=probe.port,
                timeout_ms=probe.timeout_ms,
                payload=probe.payload or b"kubereach\n",
                source_port=probe.source_port,
                datagram_size=probe.size,
            )
            outcome = await self.fleet.call(probe.node, "ProbeUdp", udp, rpc_timeout)
        else:
            tcp = pb.ProbeTcpRequest(
                pod_ip=probe.pod_ip,
                target_ip=probe.target,
                port=probe.port,
                timeout_ms=probe.timeout_ms,
                source_port=probe.source_port,
            )
            outcome = await self.fleet.call(probe.node, "ProbeTcp", tcp, rpc_timeout)
        self.calls.append(outcome)
        if not outcome.ok:
            return ProbeView(outcome="error", error=outcome.error or "")
        retransmits = getattr(outcome.payload, "retransmits", 0)
        return _probe(outcome.payload.result, retransmits=retransmits)

    async def _retransmit_probe(self, probe: MarkedProbe) -> int:
        tcp = pb.ProbeTcpRequest(pod_ip=probe.pod_ip, target_ip=probe.target, port=probe.port, timeout_ms=PROBE_TIMEOUT_MS)
        outcome = await self.fleet.call(probe.node, "ProbeTcp", tcp, PROBE_RPC_TIMEOUT_S)
        self.calls.append(outcome)
        return int(outcome.payload.retransmits) if outcome.ok else 0
