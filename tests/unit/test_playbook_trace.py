"""The path trace from recorded captures: the probe points of every CNI shape in path order, where
packets stop (request or reply), the verdicts only packets reveal, NAT and asymmetric replies on
the wire, loss over repeated probes, and points whose agent did not capture ("not checked").

`wire` plays the captures a real path would give: every point the marked probe passes sees it,
in order, until the place a test says the packets die.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console

from bot.parse import parse_question
from bot.playbook.engine import run_playbook
from bot.playbook.models import Hop, InvestigationResult, VerdictCode
from bot.playbook.observations import (
    CapturedHeader,
    FilterHit,
    FilterView,
    NodeFacts,
    Observed,
    OverlayDevice,
    PodNetwork,
    PointCapture,
    ProbeView,
    RouteInfo,
    RouteLookup,
    TracePlan,
    TraceRun,
)
from bot.playbook.steps.trace import dns_query
from bot.playbook.tracing.judge import judge, mtu_cause, path_line
from bot.playbook.tracing.points import PathEnd, PathPoint, Role, TracePath, cut_at_masquerade, plan_path
from bot.render.blocks import verdict_blocks
from bot.render.document import investigation_document
from bot.render.ids import BlockId
from bot.render.terminal import investigation_view
from tests.unit.test_playbook_engine import NODES, RecordedCluster, case, link, verdict_of

NODE_IP = {name: ref.ip for name, ref in NODES.items()}
PORT = 23456


def header(point_outer: tuple[str, str] | None, *, reply: bool, src: str, dst: str, dport: int, port: int) -> CapturedHeader:
    if reply:
        return CapturedHeader(
            1.0,
            False,
            dst,
            src,
            dport,
            port,
            "S.",
            point_outer is not None,
            *(point_outer or ("", "")),
        )
    return CapturedHeader(0.5, True, src, dst, port, dport, "S", point_outer is not None, *(point_outer or ("", "")))


def wire(
    points: Sequence[PathPoint],
    *,
    src: str,
    dst: str,
    dport: int,
    port: int = PORT,
    stop_before: tuple[str, str, str] | None = None,
    counts: dict[tuple[str, str], int] | None = None,
    unchecked: frozenset[str] = frozenset(),
    reply_outer_to: str = "",
) -> tuple[list[PointCapture | None], dict[str, str]]:
    """Captures as the kernel would give them: each point sees the probe until `stop_before`
    (node, interface, direction) is reached; `counts` overrides how many requests a point saw."""
    seen: dict[int, list[CapturedHeader]] = {i: [] for i in range(len(points))}
    nodes = {p.node for p in points}
    source_node = points[0].node

    def outer(p: PathPoint, reply: bool) -> tuple[str, str] | None:
        if p.role != Role.UNDERLAY or len(nodes) < 2:
            return None
        other = next(n for n in nodes if n != p.node)
        here_is_sender = (p.node == source_node) != reply
        a, b = (p.node, other) if here_is_sender else (other, p.node)
        to = NODE_IP[b]
        if reply and reply_outer_to:
            to = reply_outer_to
        return NODE_IP[a], to

    alive = True
    for i, p in enumerate(points):
        if stop_before == (p.node, p.interface, "request"):
            alive = False
        if not alive:
            break
        n = (counts or {}).get((p.node, p.interface), 1)
        seen[i] += [header(outer(p, False), reply=False, src=src, dst=dst, dport=dport, port=port)] * n
    if alive:
        for i in reversed(range(len(points))):
            p = points[i]
            if stop_before == (p.node, p.interface, "reply"):
                break
            seen[i].append(header(outer(p, True), reply=True, src=src, dst=dst, dport=dport, port=port))
            if reply_outer_to and p.role == Role.UNDERLAY and p.node != source_node:
                break  # the reply went to another node: the source never sees it
    captures: list[PointCapture | None] = [
        None if p.node in unchecked else PointCapture(len(seen[i]), 0.5 if seen[i] else 0.0, tuple(seen[i]))
        for i, p in enumerate(points)
    ]
    return captures, {n: "did not answer" for n in unchecked}


# ------------------------------------------------------------------------------ probe points


def pod(ip: str, peer: str, master: str = "cni0") -> PodNetwork:
    return PodNetwork(ip, f"pod-{ip}", link("eth0"), (), link(peer, master=master))


def facts(node: str, overlay: str = "flannel.1", port: int = 8472) -> NodeFacts:
    overlays = (OverlayDevice(link(overlay), 1, port),) if overlay else ()
    return NodeFacts(node, bridges=(link("cni0"),), overlays=overlays, netns=f"kr-{node}")


def overlay_route(device: str = "flannel.1") -> RouteLookup:
    from bot.playbook.observations import OverlayHop

    return RouteLookup(RouteInfo("10.244.2.0/24", "10.244.2.0", device), overlay=OverlayHop(device, True, "10.244.2.0"))


def flannel_path() -> TracePath:
    return plan_path(
        PathEnd("node-1", pod("10.244.1.5", "veth1"), facts("node-1"), "eth0"),
        "10.244.1.5",
        PathEnd("node-2", pod("10.244.2.7", "veth2"), facts("node-2"), "eth0"),
        "10.244.2.7",
        overlay_route(),
    )


def labels(path: TracePath) -> list[str]:
    return [f"{p.node}/{p.interface}/{p.role.value}" for p in path.points]


def test_flannel_points_follow_the_packet_from_pod_to_pod_through_the_overlay() -> None:
    path = flannel_path()
    assert labels(path) == [
        "node-1/eth0/pod",
        "node-1/veth1/veth",
        "node-1/cni0/bridge",
        "node-1/flannel.1/overlay",
        "node-1/eth0/underlay",
        "node-2/eth0/underlay",
        "node-2/flannel.1/overlay",
        "node-2/cni0/bridge",
        "node-2/veth2/veth",
        "node-2/eth0/pod",
    ]
    assert path.overlay_port == 8472
    assert path.points[0].pod_ip == "10.244.1.5" and path.points[4].pod_ip == ""
    assert path.points[4].netns == "kr-node-1"


def test_a_node_source_starts_at_its_overlay_device_and_nic_and_says_it_has_no_pod_side() -> None:
    path = plan_path(
        PathEnd("node-1", None, facts("node-1"), "eth0", in_node=True),
        "10.240.0.11",
        PathEnd("node-2", pod("10.244.2.7", "veth2"), facts("node-2"), "eth0"),
        "10.244.2.7",
        overlay_route(),
    )
    assert labels(path)[:2] == ["node-1/flannel.1/overlay", "node-1/eth0/underlay"]
    assert labels(path)[-1] == "node-2/eth0/pod" and not any(p.pod_ip == "10.240.0.11" for p in path.points)
    assert len(path.absent) == 1 and "source is node-1's own network namespace" in path.absent[0]


def test_a_host_network_destination_ends_at_its_nodes_nic() -> None:
    path = plan_path(
        PathEnd("node-1", pod("10.244.1.5", "veth1"), facts("node-1"), "eth0"),
        "10.244.1.5",
        PathEnd("node-2", None, facts("node-2"), "eth0", in_node=True),
        "10.240.0.12",
        RouteLookup(RouteInfo("10.240.0.0/24", "", "eth0")),
    )
    assert labels(path) == [
        "node-1/eth0/pod",
        "node-1/veth1/veth",
        "node-1/cni0/bridge",
        "node-1/eth0/underlay",
        "node-2/eth0/underlay",
    ]
    assert "destination is node-2's own network namespace" in path.absent[0]


def test_a_masqueraded_path_is_watched_up_to_the_source_pods_bridge_and_says_why() -> None:
    cut = cut_at_masquerade(flannel_path(), "nat FLANNEL-POSTRTG: -j MASQUERADE --random-fully")
    assert labels(cut) == ["node-1/eth0/pod", "node-1/veth1/veth", "node-1/cni0/bridge"] and cut.cut
    assert "MASQUERADE" in cut.absent[-1] and "node-1 cni0" in cut.absent[-1]


def test_host_gw_points_have_no_overlay_and_leave_by_the_routed_nic() -> None:
    path = plan_path(
        PathEnd("node-1", pod("10.244.1.5", "veth1"), facts("node-1", overlay=""), ""),
        "10.244.1.5",
        PathEnd("node-2", pod("10.244.2.7", "veth2"), facts("node-2", overlay=""), "eth0"),
        "10.244.2.7",
        RouteLookup(RouteInfo("10.244.2.0/24", "10.240.0.12", "eth0")),
    )
    assert [p.role.value for p in path.points] == ["pod", "veth", "bridge", "underlay", "underlay", "bridge", "veth", "pod"]
    assert path.overlay_port == 0


def test_calico_points_have_no_bridge_and_cross_vxlan_calico() -> None:
    path = plan_path(
        PathEnd("node-1", pod("10.244.1.5", "cali1", master=""), facts("node-1", "vxlan.calico", 4789), "eth0"),
        "10.244.1.5",
        PathEnd("node-2", pod("10.244.2.7", "cali2", master=""), facts("node-2", "vxlan.calico", 4789), "eth0"),
        "10.244.2.7",
        overlay_route("vxlan.calico"),
    )
    assert labels(path) == [
        "node-1/eth0/pod",
        "node-1/cali1/veth",
        "node-1/vxlan.calico/overlay",
        "node-1/eth0/underlay",
        "node-2/eth0/underlay",
        "node-2/vxlan.calico/overlay",
        "node-2/cali2/veth",
        "node-2/eth0/pod",
    ]
    assert path.overlay_port == 4789


def test_a_same_node_path_meets_the_shared_bridge_once_and_no_underlay() -> None:
    path = plan_path(
        PathEnd("node-1", pod("10.244.1.5", "veth1"), facts("node-1"), ""),
        "10.244.1.5",
        PathEnd("node-1", pod("10.244.1.9", "veth9"), facts("node-1"), ""),
        "10.244.1.9",
        None,
    )
    assert labels(path) == ["node-1/eth0/pod", "node-1/veth1/veth", "node-1/cni0/bridge", "node-1/veth9/veth", "node-1/eth0/pod"]


# ------------------------------------------------------------------------------ reading the captures


def read(path: TracePath, captures: Sequence[PointCapture | None], probes: Sequence[ProbeView] = (ProbeView("timed_out"),)):  # type: ignore[no-untyped-def]
    return judge(path, captures, PORT, probes, protocol="TCP", node_ips=NODE_IP)


def test_a_request_that_leaves_one_nic_and_never_reaches_the_other_is_underlay_drops_naming_both_nodes() -> None:
    path = flannel_path()
    captures, _ = wire(path.points, src="10.244.1.5", dst="10.244.2.7", dport=8080, stop_before=("node-2", "eth0", "request"))
    reading = read(path, captures)
    assert reading.cause is not None
    assert (reading.cause.code, reading.cause.hop, reading.cause.node) == (VerdictCode.UNDERLAY_DROPS, Hop.UNDERLAY, "node-1")
    assert "node-2" in reading.cause.summary and "UDP 8472" in reading.cause.summary
    request = [r for r in reading.rows if r.direction == "request"]
    assert [r.seen for r in request] == [True] * 5 + [False] * 5
    assert "in VXLAN 10.240.0.11 → 10.240.0.12" in request[4].note
    assert "⛔ node-2 eth0 ✗" in path_line(reading.rows)


def test_a_reply_lost_between_the_nodes_is_underlay_drops_from_the_destination_node() -> None:
    path = flannel_path()
    captures, _ = wire(path.points, src="10.244.1.5", dst="10.244.2.7", dport=8080, stop_before=("node-1", "eth0", "reply"))
    reading = read(path, captures)
    assert reading.cause is not None
    assert (reading.cause.code, reading.cause.node) == (VerdictCode.UNDERLAY_DROPS, "node-2")
    assert reading.stop is not None and reading.stop.direction == "reply"
    reply = [r for r in reading.rows if r.direction == "reply"]
    assert [r.seen for r in reply] == [True] * 5 + [False] * 5


def test_a_request_that_reaches_the_nic_and_dies_before_the_overlay_is_node_firewall_drops() -> None:
    path = flannel_path()
    captures, _ = wire(
        path.points, src="10.244.1.5", dst="10.244.2.7", dport=8080, stop_before=("node-2", "flannel.1", "request")
    )
    reading = read(path, captures)
    assert reading.cause is not None
    assert (reading.cause.code, reading.cause.hop, reading.cause.node) == (
        VerdictCode.NODE_FIREWALL_DROPS,
        Hop.DESTINATION_NODE,
        "node-2",
    )
    assert [r.seen for r in reading.rows if r.direction == "request"] == [True] * 6 + [False] * 4


def test_a_stop_inside_the_source_node_names_no_trace_verdict_but_says_where() -> None:
    path = flannel_path()
    captures, _ = wire(
        path.points, src="10.244.1.5", dst="10.244.2.7", dport=8080, stop_before=("node-1", "flannel.1", "request")
    )
    reading = read(path, captures)
    assert reading.cause is None
    assert reading.stop is not None and reading.stop.last_seen is not None
    assert (reading.stop.last_seen.point.interface, reading.stop.first_unseen.point.interface) == ("cni0", "flannel.1")


def test_points_whose_agent_did_not_capture_are_not_checked_never_not_seen() -> None:
    path = flannel_path()
    captures, _ = wire(
        path.points,
        src="10.244.1.5",
        dst="10.244.2.7",
        dport=8080,
        stop_before=("node-2", "eth0", "request"),
        unchecked=frozenset({"node-2"}),
    )
    reading = read(path, captures)
    request = [r for r in reading.rows if r.direction == "request"]
    assert [r.seen for r in request] == [True] * 5 + [None] * 5
    assert reading.stop is None and reading.cause is None
    assert "not checked" in request[5].note


def test_a_healthy_path_is_seen_everywhere_there_and_back() -> None:
    path = flannel_path()
    captures, _ = wire(path.points, src="10.244.1.5", dst="10.244.2.7", dport=8080)
    reading = read(path, captures, (ProbeView("connected"),))
    assert reading.cause is None and reading.stop is None and reading.reached
    assert all(r.seen for r in reading.rows) and len(reading.rows) == 20


def test_a_vip_rewritten_to_an_endpoint_on_the_wire_is_nat_evidence() -> None:
    path = flannel_path()
    captures, _ = wire(path.points, src="10.244.1.5", dst="10.244.2.7", dport=8080)
    vip = CapturedHeader(0.4, False, "10.244.1.5", "10.96.5.5", PORT, 80, "S")
    for i in (0, 1, 2):  # before routing on the source node the packet still carries the VIP
        c = captures[i]
        assert c is not None
        captures[i] = dataclasses.replace(c, samples=(vip, *c.samples[1:]))
    reading = read(path, captures, (ProbeView("connected"),))
    assert reading.nat == ("DNAT 10.96.5.5:80 → 10.244.2.7:8080 between node-1 cni0 and node-1 flannel.1",)


def test_a_reply_sent_toward_another_node_is_named_asymmetric() -> None:
    path = flannel_path()
    captures, _ = wire(path.points, src="10.244.1.5", dst="10.244.2.7", dport=8080, reply_outer_to="10.240.0.13")
    reading = read(path, captures)
    assert "asymmetric" in reading.asymmetric and "10.240.0.13" in reading.asymmetric


def test_repeated_probes_with_some_lost_between_the_nodes_are_packet_loss_with_rate_latency_and_place() -> None:
    path = flannel_path()
    counts = {(p.node, p.interface): 20 if p.node == "node-1" else 15 for p in path.points}
    captures, _ = wire(path.points, src="10.244.1.5", dst="10.244.2.7", dport=8080, counts=counts)
    probes = [ProbeView("refused", latency_ms=float(i + 1)) for i in range(15)] + [ProbeView("timed_out")] * 5
    reading = judge(path, captures, PORT, probes, protocol="UDP", node_ips=NODE_IP, retransmits=2)
    assert reading.cause is not None
    assert (reading.cause.code, reading.cause.hop, reading.cause.node) == (VerdictCode.PACKET_LOSS, Hop.UNDERLAY, "node-1")
    assert reading.loss is not None and reading.loss.rate == 0.25
    assert (reading.loss.p50_ms, reading.loss.p99_ms, reading.loss.retransmits) == (8.0, 15.0, 2)
    assert "5 of 20 probes lost (25%)" in reading.cause.summary and "node-1 eth0 and node-2 eth0" in reading.cause.summary


def test_probes_that_timed_out_while_every_point_saw_their_replies_are_slow_not_lost() -> None:
    path = flannel_path()
    counts = {(p.node, p.interface): 20 for p in path.points}
    captures, _ = wire(path.points, src="10.244.1.5", dst="10.244.2.7", dport=8080, counts=counts)
    probes = [ProbeView("refused", 1.0)] * 15 + [ProbeView("timed_out")] * 5
    reading = judge(path, captures, PORT, probes, protocol="UDP", node_ips=NODE_IP)
    assert reading.cause is None and reading.loss is not None and reading.loss.where is None


def test_repeated_probes_all_answered_are_no_loss() -> None:
    path = flannel_path()
    counts = {(p.node, p.interface): 20 for p in path.points}
    captures, _ = wire(path.points, src="10.244.1.5", dst="10.244.2.7", dport=8080, counts=counts)
    reading = judge(path, captures, PORT, [ProbeView("refused", 1.0)] * 20, protocol="UDP", node_ips=NODE_IP)
    assert reading.cause is None and reading.loss is not None and reading.loss.rate == 0.0


def test_the_dns_query_a_trace_sends_is_a_well_formed_a_query() -> None:
    q = dns_query("kube-dns.kube-system.svc.cluster.local", 0x1234)
    assert q[:4] == b"\x12\x34\x01\x00" and q[4:6] == b"\x00\x01"
    assert b"\x08kube-dns\x0bkube-system\x03svc\x07cluster\x05local\x00\x00\x01\x00\x01" in q


# ------------------------------------------------------------------------------ the step, in the playbook


def recorded_wire(stop_before: tuple[str, str, str] | None = None, unchecked: frozenset[str] = frozenset()):  # type: ignore[no-untyped-def]
    """The RecordedCluster's captures for whatever the trace step planned."""

    def play(plan: TracePlan) -> TraceRun:
        points = [
            PathPoint(p.node, p.interface, Role.POD if p.pod_ip else Role.UNDERLAY, _side(plan, p.node)) for p in plan.points
        ]
        # the roles matter to `wire` only for the underlay points' outer addresses
        points = [dataclasses.replace(pt, role=_role(p.interface, p.pod_ip)) for pt, p in zip(points, plan.points, strict=True)]
        captures, failed = wire(
            points,
            src=plan.probe.pod_ip,
            dst=plan.probe.target,
            dport=plan.probe.port,
            port=plan.probe.source_port,
            stop_before=stop_before,
            unchecked=unchecked,
        )
        reached = stop_before is None
        return TraceRun(tuple(captures), (ProbeView("connected" if reached else "timed_out"),), failed)

    return play


def _side(plan: TracePlan, node: str):  # type: ignore[no-untyped-def]
    from bot.playbook.tracing.points import Side

    return Side.SOURCE if node == plan.probe.node else Side.DESTINATION


def _role(interface: str, pod_ip: str) -> Role:
    if pod_ip:
        return Role.POD
    return {"cni0": Role.BRIDGE, "flannel.1": Role.OVERLAY, "eth0": Role.UNDERLAY}.get(interface, Role.VETH)


def test_failing_probes_the_state_checks_leave_unexplained_are_traced_to_underlay_drops() -> None:
    cluster = RecordedCluster()
    cluster.failing_probes = {"10.96.5.5": "timed_out", "10.244.2.7": "timed_out"}
    cluster.wire = recorded_wire(stop_before=("node-2", "eth0", "request"))
    diagnosis = verdict_of(cluster)
    assert (diagnosis.verdict.code, diagnosis.verdict.hop, diagnosis.verdict.node) == (
        VerdictCode.UNDERLAY_DROPS,
        Hop.UNDERLAY,
        "node-1",
    )
    assert any("UDP 8472" in line for line in diagnosis.verdict.remediation)
    plan = cluster.traces[0]
    assert plan.overlay_udp_port == 8472 and 1024 <= plan.probe.source_port <= 65535
    assert [(p.node, p.interface) for p in plan.points][3:6] == [("node-1", "flannel.1"), ("node-1", "eth0"), ("node-2", "eth0")]


def test_a_dns_failure_whose_silent_servers_the_trace_shows_dying_in_the_node_is_node_firewall_drops() -> None:
    cluster = RecordedCluster()
    cluster.dns_outcome = "timed_out"
    cluster.wire = recorded_wire(stop_before=("node-2", "flannel.1", "request"))
    diagnosis = verdict_of(cluster)
    assert (diagnosis.verdict.code, diagnosis.verdict.node) == (VerdictCode.NODE_FIREWALL_DROPS, "node-2")
    assert cluster.traces[0].probe.port == 53 and cluster.traces[0].probe.protocol == "UDP"
    assert all(f.code != VerdictCode.DNS_RESOLUTION_FAILED for f in diagnosis.findings)


def test_a_trace_whose_agents_did_not_capture_is_never_evidence() -> None:
    cluster = RecordedCluster()
    cluster.failing_probes = {"10.96.5.5": "timed_out", "10.244.2.7": "timed_out"}
    cluster.wire = recorded_wire(stop_before=("node-2", "eth0", "request"), unchecked=frozenset({"node-2"}))
    diagnosis = verdict_of(cluster)
    assert diagnosis.verdict.code not in (VerdictCode.UNDERLAY_DROPS, VerdictCode.NODE_FIREWALL_DROPS)


def test_a_trace_whose_agent_did_not_capture_names_that_capture_as_not_checked() -> None:
    cluster = RecordedCluster()
    cluster.failing_probes = {"10.96.5.5": "timed_out", "10.244.2.7": "timed_out"}
    cluster.wire = recorded_wire(unchecked=frozenset({"node-2"}))
    diagnosis = verdict_of(cluster)
    said = diagnosis.verdict.summary + " ".join(f.summary for f in diagnosis.findings)
    assert "the capture on node-2" in said


def test_every_trace_result_carries_the_bounded_kind_trace() -> None:
    cluster = RecordedCluster()
    cluster.wire = recorded_wire()
    diagnosis = verdict_of(cluster, case(trace="path"))
    traced = [s for s in diagnosis.steps if s.name.startswith("trace ")]
    assert len(traced) == 2 and {s.kind for s in traced} == {"trace"}


def test_a_trace_asked_for_on_a_healthy_path_stays_no_fault_found_with_every_point_seen() -> None:
    cluster = RecordedCluster()
    cluster.wire = recorded_wire()
    diagnosis = verdict_of(cluster, case(trace="path"))
    assert diagnosis.verdict.code == VerdictCode.NO_FAULT_FOUND
    traced = [e for s in diagnosis.steps for e in s.evidence if e.kind == "trace"]
    assert len(traced) == 2  # the marked SYN, then the large don't-fragment datagram
    rows = traced[0].data["rows"]
    assert [r["interface"] for r in rows[:10]] == [
        "eth0",
        "veth5",
        "cni0",
        "flannel.1",
        "eth0",
        "eth0",
        "flannel.1",
        "cni0",
        "veth7",
        "eth0",
    ]
    assert all(r["seen"] for r in rows)


def test_without_a_failure_or_a_request_no_trace_runs() -> None:
    cluster = RecordedCluster()
    assert verdict_of(cluster).verdict.code == VerdictCode.NO_FAULT_FOUND
    assert cluster.traces == []


def test_ask_json_carries_the_trace_rows_in_path_order() -> None:
    cluster = RecordedCluster()
    cluster.failing_probes = {"10.96.5.5": "timed_out", "10.244.2.7": "timed_out"}
    cluster.wire = recorded_wire(stop_before=("node-2", "eth0", "request"))
    diagnosis = verdict_of(cluster)
    result = InvestigationResult(
        "inv_1", "web → api", "web", "api", diagnosis.verdict, diagnosis.steps, (), 1.0, datetime.now(UTC)
    )
    trace = investigation_document(result)["trace"]
    assert set(trace[0]) == {"node", "netns", "interface", "direction", "seen", "packets", "first_seen_ms", "note"}
    assert [r["seen"] for r in trace if r["direction"] == "request"] == [True] * 5 + [False] * 5
    assert "trace" not in investigation_document(dataclasses.replace(result, steps=()))


def test_trace_and_intermittent_phrasings_ask_for_a_trace() -> None:
    assert parse_question("trace frontend → api:8080").trace_mode == "path"
    assert parse_question("trace frontend to api").trace_mode == "path"
    for text in ("frontend to api intermittent failures", "frontend to api flaky", "frontend to api sometimes times out"):
        q = parse_question(text)
        assert (q.trace_mode, q.source.name, q.target.name) == ("loss", "frontend", "api")
        assert parse_question(q.normalized) == dataclasses.replace(q, raw=q.normalized)
    assert parse_question("frontend to api").trace_mode == ""


def test_an_intermittent_question_repeats_the_marked_probe_and_counts_retransmissions_with_tcp() -> None:
    cluster = RecordedCluster()
    cluster.wire = recorded_wire()
    asyncio.run(run_playbook(case(trace="loss"), cluster))
    plan = cluster.traces[0]
    assert (plan.probe.protocol, plan.probe.count, plan.retransmit_probes) == ("TCP", 20, 3)


def test_a_large_df_datagram_lost_between_the_nodes_after_a_small_probe_passed_is_mtu_mismatch_on_the_underlay() -> None:
    path = flannel_path()
    captures, _ = wire(path.points, src="10.244.1.5", dst="10.244.2.7", dport=8080, stop_before=("node-2", "eth0", "request"))
    big = read(path, captures)
    cause = mtu_cause(path, big, 1450)
    assert cause is not None
    assert (cause.code, cause.hop, cause.node) == (VerdictCode.MTU_MISMATCH, Hop.UNDERLAY, "node-1")
    assert "1450-byte packets (1500 with the VXLAN header)" in cause.summary


def test_an_icmp_frag_needed_quoting_the_large_probe_names_the_path_mtu() -> None:
    path = flannel_path()
    captures, _ = wire(path.points, src="10.244.1.5", dst="10.244.2.7", dport=8080)
    first = captures[0]
    assert first is not None
    frag = CapturedHeader(1.0, False, "10.244.1.5", "10.244.2.7", PORT, 8080, icmp=True, icmp_type=3, icmp_code=4, icmp_mtu=1400)
    captures[0] = dataclasses.replace(first, samples=(*first.samples, frag))
    cause = mtu_cause(path, read(path, captures), 1450)
    assert cause is not None and cause.code == VerdictCode.MTU_MISMATCH and "1400 bytes" in cause.summary
    healthy, _ = wire(path.points, src="10.244.1.5", dst="10.244.2.7", dport=8080)
    assert mtu_cause(path, read(path, healthy), 1450) is None


def test_a_trace_asked_for_sends_a_large_df_datagram_after_the_small_probe_passed() -> None:
    cluster = RecordedCluster()
    cluster.wire = recorded_wire()
    verdict_of(cluster, case(trace="path"))
    small, big = cluster.traces
    assert (small.probe.protocol, small.probe.size) == ("TCP", 0)
    assert (big.probe.protocol, big.probe.size, big.probe.port) == ("UDP", 1450 - 28, 8080)
    assert big.probe.source_port != 0 and big.points == small.points


def test_a_node_firewall_rule_the_filter_view_shows_for_the_overlay_port_is_quoted() -> None:
    cluster = RecordedCluster()
    cluster.failing_probes = {"10.96.5.5": "timed_out", "10.244.2.7": "timed_out"}
    cluster.wire = recorded_wire(stop_before=("node-2", "flannel.1", "request"))
    plain = cluster.filter_state

    async def input_rule(node: str, **flow: Any) -> Observed[FilterView]:
        observed = await plain(node, **flow)
        if node == "node-2" and flow["protocol"] == "UDP" and flow["dport"] == 8472 and observed.value is not None:
            rule = FilterHit("filter", "INPUT", "-A INPUT -i eth0 -p udp --dport 8472 -j DROP", hook="input")
            return dataclasses.replace(observed, value=dataclasses.replace(observed.value, drops=(rule,)))
        return observed

    cluster.filter_state = input_rule  # type: ignore[method-assign]
    diagnosis = verdict_of(cluster)
    assert (diagnosis.verdict.code, diagnosis.verdict.node) == (VerdictCode.NODE_FIREWALL_DROPS, "node-2")
    assert "--dport 8472 -j DROP" in diagnosis.verdict.summary
    assert any("--dport 8472 -j DROP" in line for line in diagnosis.verdict.remediation)


def test_the_terminal_and_slack_replies_show_the_path_line_with_the_stop_marked() -> None:
    cluster = RecordedCluster()
    cluster.failing_probes = {"10.96.5.5": "timed_out", "10.244.2.7": "timed_out"}
    cluster.wire = recorded_wire(stop_before=("node-2", "eth0", "request"))
    diagnosis = verdict_of(cluster)
    result = InvestigationResult(
        "inv_1", "web → api", "web", "api", diagnosis.verdict, diagnosis.steps, (), 1.0, datetime.now(UTC)
    )
    console = Console(width=400, record=True)
    console.print(investigation_view(result))
    text = console.export_text()
    assert "path:" in text and "⛔ node-2 eth0 ✗" in text
    blocks = verdict_blocks(result)
    [path] = [b for b in blocks if b.get("block_id") == BlockId.TRACE.value]
    assert "⛔ node-2 eth0 ✗" in path["text"]["text"]


def test_the_trace_step_draws_no_randomness_its_marked_ports_come_from_the_investigations_seed() -> None:
    def ports(seed: int) -> list[int]:
        cluster = RecordedCluster()
        cluster.wire = recorded_wire()
        asyncio.run(run_playbook(dataclasses.replace(case(trace="path"), marker_seed=seed), cluster))
        return [plan.probe.source_port for plan in cluster.traces]

    first = ports(7)
    assert len(first) == 2 and first[0] != first[1]  # the marked SYN, then the large datagram, each its own port
    assert all(20000 <= p <= 29999 for p in first)
    assert ports(7) == first  # the same case decides the same plans
    assert ports(8) != first  # another investigation marks its probes with other ports
