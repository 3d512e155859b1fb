"""Mapping between the checks' frozen dataclasses and the protobuf messages of kubereach.agent.v1."""

from __future__ import annotations

from kubereach.agent.v1 import agent_pb2 as pb
from nodeagent.checks.capture import CapturedPacket, CaptureOutcome
from nodeagent.checks.conntrack import ConntrackEntry, ConntrackQueryResult, ConntrackStats, ConntrackTuple
from nodeagent.checks.dns import DnsProbeResult
from nodeagent.checks.egress import EgressNat, EgressNatRule
from nodeagent.checks.filter import FilterRuleHit, FilterState
from nodeagent.checks.links import LinkInfo, NeighbourInfo, RouteInfo
from nodeagent.checks.locate import PodLocation
from nodeagent.checks.nat import ServiceNat
from nodeagent.checks.nodeinfo import CniShape
from nodeagent.checks.probe import ProbeOutcome, ProbeResult
from nodeagent.checks.routes import RouteLookup
from nodeagent.checks.sockets import ListeningSocket
from nodeagent.service import NodeInfo

ROUTE_TYPES = {
    "unicast": pb.ROUTE_TYPE_UNICAST,
    "local": pb.ROUTE_TYPE_LOCAL,
    "broadcast": pb.ROUTE_TYPE_BROADCAST,
    "multicast": pb.ROUTE_TYPE_MULTICAST,
    "blackhole": pb.ROUTE_TYPE_BLACKHOLE,
    "unreachable": pb.ROUTE_TYPE_UNREACHABLE,
    "prohibit": pb.ROUTE_TYPE_PROHIBIT,
    "throw": pb.ROUTE_TYPE_THROW,
    "no-route": pb.ROUTE_TYPE_NO_ROUTE,
}
PROBE_OUTCOMES = {
    ProbeOutcome.CONNECTED: pb.PROBE_OUTCOME_CONNECTED,
    ProbeOutcome.REFUSED: pb.PROBE_OUTCOME_REFUSED,
    ProbeOutcome.TIMED_OUT: pb.PROBE_OUTCOME_TIMED_OUT,
    ProbeOutcome.UNREACHABLE: pb.PROBE_OUTCOME_UNREACHABLE,
    ProbeOutcome.RESET: pb.PROBE_OUTCOME_RESET,
    ProbeOutcome.ERROR: pb.PROBE_OUTCOME_ERROR,
}
PROTOCOL_NAMES: dict[pb.Protocol.ValueType, str] = {pb.PROTOCOL_TCP: "TCP", pb.PROTOCOL_UDP: "UDP", pb.PROTOCOL_SCTP: "SCTP"}
ENTRY_NAMES: dict[pb.Entry.ValueType, str] = {
    pb.ENTRY_NODE_PORT: "nodeport",
    pb.ENTRY_EXTERNAL_IP: "external-ip",
    pb.ENTRY_LOAD_BALANCER: "load-balancer",
}
"""The entries from outside the cluster, as `nodeagent.checks.nat.ingress` names them."""
SOCKET_PROTOCOL_NAMES: dict[pb.Protocol.ValueType, str] = {pb.PROTOCOL_TCP: "tcp", pb.PROTOCOL_UDP: "udp"}
SOCKET_PROTOCOLS = {name: value for value, name in SOCKET_PROTOCOL_NAMES.items()}


def interface(link: LinkInfo, names: dict[int, str] | None = None) -> pb.Interface:
    """An `Interface` message; `names` resolves the master's ifindex to its name."""
    master = (names or {}).get(link.master_index or 0, "")
    return pb.Interface(
        index=link.index,
        name=link.name,
        kind=link.kind,
        mtu=link.mtu,
        oper_state=link.oper_state,
        admin_up=link.admin_up,
        mac=link.mac,
        addresses=list(link.addresses),
        master=master,
        link_index=link.link_index or 0,
        link_netnsid=-1 if link.link_netnsid is None else link.link_netnsid,
    )


def route(info: RouteInfo) -> pb.Route:
    """A `Route` message."""
    return pb.Route(
        destination=info.destination,
        gateway=info.gateway or "",
        device=info.device or "",
        source=info.source or "",
        table=info.table,
        type=ROUTE_TYPES.get(info.type, pb.ROUTE_TYPE_UNSPECIFIED),
        scope=info.scope,
        protocol=info.protocol,
        metric=info.metric,
        onlink=info.onlink,
    )


def overlay_device(link: LinkInfo, underlay: str | None) -> pb.OverlayDevice:
    """An `OverlayDevice` message for a VXLAN link."""
    vxlan = link.vxlan
    return pb.OverlayDevice(
        link=interface(link),
        vni=vxlan.vni if vxlan else 0,
        udp_port=vxlan.udp_port if vxlan else 0,
        local_ip=(vxlan.local_ip or "") if vxlan else "",
        underlay_device=underlay or "",
    )


def cni(shape: CniShape) -> pb.CniShape:
    """A `CniShape` message."""
    return pb.CniShape(
        bridges=[
            pb.Bridge(
                link=interface(b.link),
                ports=[interface(p, {b.link.index: b.link.name}) for p in b.ports],
            )
            for b in shape.bridges
        ],
        calico_interfaces=[interface(link) for link in shape.calico_interfaces],
        overlays=[overlay_device(o.link, o.underlay) for o in shape.overlays],
    )


def conntrack_stats(stats: ConntrackStats) -> pb.ConntrackStats:
    """A `ConntrackStats` message."""
    return pb.ConntrackStats(
        count=stats.count,
        max=stats.max,
        found=stats.found,
        invalid=stats.invalid,
        insert=stats.insert,
        insert_failed=stats.insert_failed,
        drop=stats.drop,
        early_drop=stats.early_drop,
        search_restart=stats.search_restart,
    )


def node_info(info: NodeInfo) -> pb.GetNodeInfoResponse:
    """The GetNodeInfo answer."""
    response = pb.GetNodeInfoResponse(
        node_name=info.node_name,
        hostname=info.hostname,
        kernel_release=info.kernel_release,
        agent_version=info.agent_version,
        netns_name=info.netns_name or "",
        netns_inode=info.netns_inode,
        cni=cni(info.cni),
        proxy_mode=info.proxy_mode or "",
        ip_forward=info.ip_forward,
        dataplane=info.dataplane.name,
        dataplane_evidence=list(info.dataplane.evidence),
    )
    if info.conntrack is not None:
        response.conntrack.CopyFrom(conntrack_stats(info.conntrack))
    return response


def pod_network(where: PodLocation) -> pb.PodNetwork:
    """A `PodNetwork` message."""
    peer = where.host_peer
    host_peer = pb.HostPeer(link=interface(peer.link), proxy_arp=peer.proxy_arp)
    host_peer.link.master = peer.master or ""
    if peer.hairpin is not None:
        host_peer.hairpin = peer.hairpin
    if peer.route_to_pod is not None:
        host_peer.route_to_pod.CopyFrom(route(peer.route_to_pod))
    return pb.PodNetwork(
        pod_ip=where.pod_ip,
        netns_name=where.netns.name or "",
        netns_inode=where.netns.inode,
        pid=where.netns.pid or 0,
        interface=interface(where.interface),
        routes=[route(r) for r in where.routes],
        host_peer=host_peer,
    )


def neighbour(entry: NeighbourInfo, device: str) -> pb.NeighbourEntry:
    """A `NeighbourEntry` message."""
    return pb.NeighbourEntry(ip=entry.ip or "", mac=entry.mac or "", device=device, state=list(entry.state))


def fdb(entry: NeighbourInfo, device: str) -> pb.FdbEntry:
    """An `FdbEntry` message (NDA_DST is the remote VTEP)."""
    return pb.FdbEntry(mac=entry.mac or "", remote_ip=entry.ip or "", device=device, state=list(entry.state))


def route_lookup(lookup: RouteLookup) -> pb.LookupRouteResponse:
    """The LookupRoute answer."""
    response = pb.LookupRouteResponse(route=route(lookup.route), error=lookup.error or "", netns_inode=lookup.netns_inode)
    hop = lookup.overlay
    if hop is not None:
        overlay = response.overlay
        overlay.device.CopyFrom(overlay_device(hop.device, None))
        overlay.next_hop = hop.next_hop
        if hop.neighbour is not None:
            overlay.neighbour.CopyFrom(neighbour(hop.neighbour, hop.device.name))
        if hop.fdb is not None:
            overlay.fdb.CopyFrom(fdb(hop.fdb, hop.device.name))
    return response


def service_nat(nat: ServiceNat) -> pb.ServiceNat:
    """A `ServiceNat` message."""
    message = pb.ServiceNat(
        mode=nat.mode,
        vip=nat.vip,
        port=nat.port,
        protocol=nat.protocol,
        programmed=nat.programmed,
        service_name=nat.service_name or "",
        service_chain=nat.service_chain or "",
        no_endpoints_action=nat.no_endpoints_action or "",
        session_affinity=nat.session_affinity,
        rules=list(nat.rules),
        layout=nat.layout,
        unreadable=nat.unreadable,
        entry=nat.entry,
        external_policy=nat.external_policy,
        health_check_node_port=nat.health_check_node_port or 0,
    )
    for endpoint in nat.endpoints:
        item = message.endpoints.add(ip=endpoint.ip, port=endpoint.port, chain=endpoint.chain or "")
        if endpoint.probability is not None:
            item.probability = endpoint.probability
    return message


def _tuple(value: ConntrackTuple) -> pb.ConntrackTuple:
    message = pb.ConntrackTuple(src=value.src, dst=value.dst)
    if value.sport is not None:
        message.sport = value.sport
    if value.dport is not None:
        message.dport = value.dport
    return message


def conntrack_entry(entry: ConntrackEntry) -> pb.ConntrackEntry:
    """A `ConntrackEntry` message."""
    return pb.ConntrackEntry(
        protocol=entry.protocol,
        state=entry.state or "",
        timeout=max(0, entry.timeout),
        orig=_tuple(entry.orig),
        reply=_tuple(entry.reply),
        status=list(entry.status),
        mark=entry.mark,
        zone=entry.zone,
    )


def conntrack_query(result: ConntrackQueryResult) -> pb.QueryConntrackResponse:
    """The QueryConntrack answer."""
    return pb.QueryConntrackResponse(
        total_matched=result.total_matched,
        entries=[conntrack_entry(e) for e in result.entries],
        truncated=result.truncated,
    )


def filter_hit(hit: FilterRuleHit) -> pb.FilterRuleHit:
    """One rule or policy that drops (or may drop) a flow."""
    item = pb.FilterRuleHit(
        table=hit.table, chain=hit.chain, rule=hit.rule, target=hit.target, backend=hit.backend, hook=hit.hook
    )
    if hit.packets is not None:
        item.packets = hit.packets
    if hit.bytes is not None:
        item.bytes = hit.bytes
    if hit.handle is not None:
        item.handle = hit.handle
    return item


def filter_state(state: FilterState) -> pb.GetFilterStateResponse:
    """The GetFilterState answer."""
    return pb.GetFilterStateResponse(
        forward_policy=state.forward_policy,
        ip_forward=state.ip_forward,
        rp_filter=dict(state.rp_filter),
        drops=[filter_hit(h) for h in state.drops],
        possible=[filter_hit(h) for h in state.possible],
        hooks=list(state.hooks),
        local_source=state.local_source,
        local_destination=state.local_destination,
        not_checked=list(state.not_checked),
    )


def egress_nat(found: EgressNat) -> pb.GetEgressNatResponse:
    """The GetEgressNat answer."""

    def rule(r: EgressNatRule) -> pb.EgressNatRule:
        message = pb.EgressNatRule(table=r.table, chain=r.chain, rule=r.rule, target=r.target, certain=r.certain)
        if r.packets is not None:
            message.packets = r.packets
        return message

    return pb.GetEgressNatResponse(
        verdict=found.verdict,
        rules=[rule(r) for r in found.rules],
        possible=[rule(r) for r in found.possible],
        out_interface=found.out_interface,
        chains=list(found.chains),
        unreadable=found.unreadable,
    )


def listening_socket(sock: ListeningSocket) -> pb.ListeningSocket:
    """A `ListeningSocket` message."""
    return pb.ListeningSocket(
        protocol=SOCKET_PROTOCOLS[sock.protocol],
        local_address=sock.local_address,
        local_port=sock.local_port,
        inode=sock.inode,
        pid=sock.pid or 0,
        process_name=sock.process_name or "",
        cgroup=sock.cgroup or "",
    )


def probe_result(result: ProbeResult) -> pb.ProbeResult:
    """A `ProbeResult` message."""
    return pb.ProbeResult(
        outcome=PROBE_OUTCOMES[result.outcome],
        latency_ms=result.latency_ms,
        error=result.error or "",
        netns_inode=result.netns_inode,
    )


def dns_probe(result: DnsProbeResult) -> pb.ProbeDnsResponse:
    """The ProbeDns answer."""
    return pb.ProbeDnsResponse(
        result=probe_result(result.probe),
        rcode=result.rcode or "",
        answers=list(result.answers),
        server=result.server,
        queried_names=list(result.queried_names),
        answered_name=result.answered_name or "",
        resolv_conf=result.resolv_conf or "",
        search=list(result.search),
        ndots=result.ndots,
        retries=result.retries,
    )


def tcp_probe(result: ProbeResult) -> pb.ProbeTcpResponse:
    """The ProbeTcp answer: the outcome, the kernel's retransmissions and the source port used."""
    return pb.ProbeTcpResponse(result=probe_result(result), retransmits=result.retransmits, source_port=result.source_port)


def udp_probe(result: ProbeResult) -> pb.ProbeUdpResponse:
    """The ProbeUdp answer: the outcome, the reply's size, the source port and a learned path MTU."""
    return pb.ProbeUdpResponse(
        result=probe_result(result), reply_bytes=result.reply_bytes, source_port=result.source_port, path_mtu=result.path_mtu
    )


CAPTURED_PROTOCOLS: dict[int, pb.Protocol.ValueType] = {6: pb.PROTOCOL_TCP, 17: pb.PROTOCOL_UDP}


def captured_packet(packet: CapturedPacket) -> pb.CapturedPacket:
    """One captured packet's headers (ICMP errors have PROTOCOL_UNSPECIFIED and the quoted tuple)."""
    return pb.CapturedPacket(
        ts_ms=packet.ts_ms,
        outgoing=packet.outgoing,
        protocol=CAPTURED_PROTOCOLS.get(packet.protocol, pb.PROTOCOL_UNSPECIFIED),
        src_ip=packet.src_ip,
        dst_ip=packet.dst_ip,
        src_port=packet.src_port,
        dst_port=packet.dst_port,
        tcp_flags=packet.tcp_flags,
        ttl=packet.ttl,
        length=packet.length,
        encapsulated=packet.encapsulated,
        outer_src_ip=packet.outer_src_ip,
        outer_dst_ip=packet.outer_dst_ip,
        vni=packet.vni,
        icmp=packet.icmp,
        icmp_type=packet.icmp_type,
        icmp_code=packet.icmp_code,
        icmp_mtu=packet.icmp_mtu,
        dont_fragment=packet.dont_fragment,
    )


def capture_result(outcome: CaptureOutcome) -> pb.CapturePacketsResponse:
    """The CapturePackets result message: every point in request order."""
    return pb.CapturePacketsResponse(
        result=pb.CaptureResult(
            points=[
                pb.PointCapture(
                    point=pb.CapturePoint(
                        interface=p.point.interface, pod_ip=p.point.pod_ip or "", netns_name=p.point.netns_name or ""
                    ),
                    netns_inode=p.netns_inode,
                    ifindex=p.ifindex,
                    packets=p.packets,
                    first_seen_ms=p.first_seen_ms,
                    last_seen_ms=p.last_seen_ms,
                    samples=[captured_packet(s) for s in p.samples],
                    kernel_drops=p.kernel_drops,
                    error=p.error,
                    truncated=p.truncated,
                )
                for p in outcome.points
            ],
            duration_ms=outcome.duration_ms,
            reason=outcome.reason,
        )
    )
