"""CapturePackets and the marked probes on a running lab, over real gRPC with mTLS to the lab's agents.

One two-node flannel-vxlan lab for the module. A TCP probe with a marked source port goes from a pod
on node-1 to a pod on node-2 while both agents capture: the source pod's eth0, its host veth, node-1's
underlay NIC (the VXLAN packet, with the inner tuple), node-2's underlay NIC, the destination's host
veth and eth0 each see it, in path order on each node; a pod off the path sees nothing. Then the
probes' new answers (retransmissions, the source port, a DF datagram too big for the path), the
bounds (INVALID_ARGUMENT), one capture set per caller (RESOURCE_EXHAUSTED), a caller that goes away
(its sockets are closed), and the whole module's kernel state, unchanged by every capture.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from bot.settings import load_settings
from kubereach.agent.v1 import agent_pb2 as pb
from kubereach.agent.v1 import agent_pb2_grpc as pb_grpc
from tests.lab.labkit import Lab, eventually, running_lab, unique_prefix

pytestmark = pytest.mark.lab

Obj = dict[str, Any]
VXLAN_PORT, UNDERLAY = 8472, "eth0"
COUNTERS = re.compile(r"counter packets \d+ bytes \d+|\[\d+:\d+\]")
"""Rule counters move with traffic (the probes'); the rules themselves must not."""


def in_ns(ns: str, *argv: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], check=True, capture_output=True, text=True, timeout=30).stdout


def kernel_state(ns: str) -> dict[str, Any]:
    """What a read-only agent must leave as it found it: links (flags, promiscuity), rules, sysctls."""
    links = json.loads(in_ns(ns, "ip", "-d", "-j", "link", "show"))
    return {
        "links": sorted((link["ifname"], link["flags"], link.get("promiscuity"), link["mtu"]) for link in links),
        "addresses": in_ns(ns, "ip", "-j", "addr", "show"),
        "routes": in_ns(ns, "ip", "-j", "route", "show", "table", "all"),
        "nft": COUNTERS.sub("", in_ns(ns, "nft", "list", "ruleset")),
        "iptables": [COUNTERS.sub("", line) for line in in_ns(ns, "iptables-save").splitlines() if not line.startswith("#")],
        "sysctl": in_ns(ns, "sysctl", "-a", "--pattern", r"^net\.(ipv4\.(ip_forward|conf)|core)"),
        "packet_sockets": in_ns(ns, "cat", "/proc/net/packet").splitlines()[1:],
    }


@dataclass
class Capture:
    """One CapturePackets stream: the armed answer, then the result once `stop` is called."""

    responses: Iterator[pb.CapturePacketsResponse]
    stopping: threading.Event
    armed: pb.CaptureArmed

    def stop(self) -> pb.CaptureResult:
        self.stopping.set()
        result = next(self.responses)
        assert result.WhichOneof("event") == "result"
        return result.result


def start_capture(stub: pb_grpc.NodeAgentServiceStub, start: pb.CaptureStart, *, stop_message: bool = True) -> Capture:
    stopping = threading.Event()

    def requests() -> Iterator[pb.CapturePacketsRequest]:
        yield pb.CapturePacketsRequest(start=start)
        stopping.wait(30)
        if stop_message:
            yield pb.CapturePacketsRequest(stop=True)

    responses = stub.CapturePackets(requests(), timeout=20)
    first = next(responses)
    assert first.WhichOneof("event") == "armed", first
    return Capture(responses, stopping, first.armed)


@dataclass
class Cluster:
    lab: Lab
    agents: dict[str, pb_grpc.NodeAgentServiceStub]
    channels: list[grpc.Channel]

    def pod(self, node: str, app: str) -> Obj:
        return next(p for p in self.lab.status["pods"] if p["node"] == node and p["labels"].get("app") == app)

    def host_veth(self, pod: Obj) -> str:
        located = self.agents[pod["node"]].LocatePod(pb.LocatePodRequest(pod_ip=pod["ip"]), timeout=10)
        return str(located.pod.host_peer.link.name)

    def state(self) -> dict[str, Any]:
        namespaces = [n["netns"] for n in self.lab.status["nodes"]] + [p["netns"] for p in self.lab.status["pods"]]
        return {ns: kernel_state(ns) for ns in namespaces}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with running_lab(unique_prefix("cp"), "--nodes", "2", "--cni", "flannel-vxlan", "--proxy", "iptables") as lab:
        tls = load_settings(Path(lab.status["config"])).agents
        assert tls.tls is not None
        creds = grpc.ssl_channel_credentials(tls.tls.ca.read_bytes(), tls.tls.key.read_bytes(), tls.tls.cert.read_bytes())
        channels, agents = [], {}
        for node, address in tls.nodes.items():
            channel = grpc.secure_channel(address, creds, options=[("grpc.ssl_target_name_override", f"kubereach-agent.{node}")])
            channels.append(channel)
            agents[node] = pb_grpc.NodeAgentServiceStub(channel)
        try:
            yield Cluster(lab, agents, channels)
        finally:
            for channel in channels:
                channel.close()


@pytest.fixture(scope="module")
def state_before(cluster: Cluster) -> dict[str, Any]:
    # A fresh lab's veths are still in IPv6 duplicate address detection: their link-local addresses are
    # "tentative", and their local routes appear when it ends. The kernel changes that on its own, so
    # the state to compare against is taken once it has settled.
    return eventually(
        cluster.state,
        lambda state: all('"tentative":true' not in ns["addresses"] for ns in state.values()),
        deadline_s=60,
        what="IPv6 duplicate address detection settled in every lab namespace",
        interval_s=0.5,
    )


def match(addresses: list[str], port: int, protocol: pb.Protocol.ValueType = pb.PROTOCOL_TCP) -> pb.CaptureMatch:
    return pb.CaptureMatch(protocol=protocol, addresses=addresses, port=port, overlay_udp_port=VXLAN_PORT, icmp=True)


def test_a_marked_tcp_probe_is_seen_at_every_point_of_its_path_in_order(cluster: Cluster, state_before: dict[str, Any]) -> None:
    src, dst = cluster.pod("node-1", "frontend"), cluster.pod("node-2", "api")
    bystander = next(p for p in cluster.lab.status["pods"] if p["node"] == "node-1" and p["ip"] != src["ip"])
    node1, node2 = (cluster.lab.node(n) for n in ("node-1", "node-2"))
    mark = 41001
    flow = match([src["ip"], dst["ip"]], mark)
    here = [
        pb.CapturePoint(interface="eth0", pod_ip=src["ip"]),
        pb.CapturePoint(interface=cluster.host_veth(src)),
        pb.CapturePoint(interface=UNDERLAY),
        pb.CapturePoint(interface="eth0", pod_ip=bystander["ip"]),
        pb.CapturePoint(interface="nosuch0"),
        pb.CapturePoint(interface="eth0", pod_ip=dst["ip"]),  # a pod of node-2: not on this node
    ]
    there = [
        pb.CapturePoint(interface=UNDERLAY, netns_name=node2["netns"]),
        pb.CapturePoint(interface=cluster.host_veth(dst)),
        pb.CapturePoint(interface="eth0", pod_ip=dst["ip"]),
    ]
    first = start_capture(cluster.agents["node-1"], pb.CaptureStart(points=here, match=flow, max_duration_ms=5000))
    second = start_capture(cluster.agents["node-2"], pb.CaptureStart(points=there, match=flow, max_duration_ms=5000))
    assert (first.armed.points_open, second.armed.points_open) == (4, 3)
    probe = pb.ProbeTcpRequest(pod_ip=src["ip"], target_ip=dst["ip"], port=8080, timeout_ms=2000, source_port=mark)
    answer = cluster.agents["node-1"].ProbeTcp(probe, timeout=10)
    assert answer.result.outcome == pb.PROBE_OUTCOME_CONNECTED
    assert (answer.source_port, answer.retransmits) == (mark, 0)
    seen_here, seen_there = first.stop(), second.stop()
    assert seen_here.reason == seen_there.reason == "stopped"
    src_eth0, src_veth, underlay1, quiet, missing, elsewhere = seen_here.points
    underlay2, dst_veth, dst_eth0 = seen_there.points

    def syn(point: pb.PointCapture) -> pb.CapturedPacket:
        return next(s for s in point.samples if s.tcp_flags == "S" and s.src_ip == src["ip"] and s.src_port == mark)

    assert syn(src_eth0).outgoing and not syn(src_veth).outgoing
    assert any(s.tcp_flags == "S." and s.dst_port == mark and not s.outgoing for s in src_eth0.samples)
    for point, outgoing, outer in ((underlay1, True, (node1["ip"], node2["ip"])), (underlay2, False, (node1["ip"], node2["ip"]))):
        packet = syn(point)
        assert packet.encapsulated and packet.outgoing == outgoing and packet.vni == 1
        assert (packet.outer_src_ip, packet.outer_dst_ip, packet.dst_ip, packet.dst_port) == (*outer, dst["ip"], 8080)
        assert packet.length > syn(src_eth0).length  # the outer headers on top
    assert syn(dst_veth).outgoing and not syn(dst_eth0).outgoing
    assert syn(dst_eth0).ttl == syn(src_eth0).ttl - 2  # routed by node-1 and by node-2
    for seen in (seen_here, seen_there):  # the kernel's times, after arming and before the end, on every point
        assert all(0 < s.ts_ms <= seen.duration_ms for p in seen.points for s in p.samples), seen
    assert syn(src_eth0).ts_ms <= syn(src_veth).ts_ms <= syn(underlay1).ts_ms
    assert syn(underlay2).ts_ms <= syn(dst_veth).ts_ms <= syn(dst_eth0).ts_ms
    assert all(p.packets >= 1 and p.first_seen_ms <= p.last_seen_ms for p in (src_eth0, src_veth, underlay1, *seen_there.points))
    assert quiet.packets == 0 and not quiet.samples and not quiet.error
    assert "nosuch0" in missing.error and missing.packets == 0
    assert dst["ip"] in elsewhere.error and elsewhere.packets == 0, elsewhere.error
    assert src_eth0.netns_inode != src_veth.netns_inode == underlay1.netns_inode and src_eth0.ifindex


def test_a_probe_that_is_not_answered_reports_the_kernels_syn_retransmissions(
    cluster: Cluster, state_before: dict[str, Any]
) -> None:
    src = cluster.pod("node-1", "frontend")
    silent = str(cluster.lab.node("node-2")["pod_cidr"]).rsplit(".", 1)[0] + ".250"  # no pod: nobody answers ARP
    probe = pb.ProbeTcpRequest(pod_ip=src["ip"], target_ip=silent, port=8080, timeout_ms=1500, source_port=41002)
    answer = cluster.agents["node-1"].ProbeTcp(probe, timeout=10)
    assert answer.result.outcome in {pb.PROBE_OUTCOME_TIMED_OUT, pb.PROBE_OUTCOME_UNREACHABLE}
    assert answer.source_port == 41002 and answer.retransmits >= 1  # the SYN was sent again after 1 s


def test_a_df_datagram_bigger_than_the_path_mtu_is_unreachable_with_the_mtu(
    cluster: Cluster, state_before: dict[str, Any]
) -> None:
    src, dst = cluster.pod("node-1", "frontend"), cluster.pod("node-2", "api")
    mtu = json.loads(in_ns(src["netns"], "ip", "-j", "link", "show", "eth0"))[0]["mtu"]
    big = pb.ProbeUdpRequest(
        pod_ip=src["ip"], target_ip=dst["ip"], port=5353, timeout_ms=500, source_port=41003, datagram_size=mtu
    )
    answer = cluster.agents["node-1"].ProbeUdp(big, timeout=10)
    assert answer.result.outcome == pb.PROBE_OUTCOME_UNREACHABLE
    assert (answer.path_mtu, answer.source_port) == (mtu, 41003) and "EMSGSIZE" in answer.result.error
    fits = pb.ProbeUdpRequest(pod_ip=src["ip"], target_ip=dst["ip"], port=5353, timeout_ms=500, datagram_size=mtu - 28)
    assert cluster.agents["node-1"].ProbeUdp(fits, timeout=10).path_mtu == 0  # it fits: whatever came back, no MTU to report


def _refused(call: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value


def test_out_of_bounds_requests_are_invalid_argument_with_the_reason(cluster: Cluster, state_before: dict[str, Any]) -> None:
    agent = cluster.agents["node-1"]
    good = pb.CaptureStart(points=[pb.CapturePoint(interface=UNDERLAY)], match=match(["10.244.1.2"], 41004))
    cases: dict[str, pb.CaptureStart] = {
        "match.port": pb.CaptureStart(points=good.points, match=match(["10.244.1.2"], 80)),
        "max_duration_ms": pb.CaptureStart(points=good.points, match=good.match, max_duration_ms=60_000),
        "max_packets": pb.CaptureStart(points=good.points, match=good.match, max_packets=5000),
        "max_bytes": pb.CaptureStart(points=good.points, match=good.match, max_bytes=10),
        "points": pb.CaptureStart(points=[pb.CapturePoint(interface=f"p{i}") for i in range(17)], match=good.match),
        "match.addresses": pb.CaptureStart(points=good.points, match=match([f"10.0.0.{i}" for i in range(33)], 41004)),
        "IPv6": pb.CaptureStart(points=good.points, match=match(["fd00::1"], 41004)),
        "interface": pb.CaptureStart(points=[pb.CapturePoint(interface="../etc")], match=good.match),
        "repeats": pb.CaptureStart(points=[good.points[0], good.points[0]], match=good.match),
        "protocol": pb.CaptureStart(points=good.points, match=pb.CaptureMatch(addresses=["10.244.1.2"], port=41004)),
    }
    for reason, start in cases.items():

        def call(start: pb.CaptureStart = start) -> None:
            next(iter(agent.CapturePackets(iter([pb.CapturePacketsRequest(start=start)]), timeout=10)))

        error = _refused(call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and reason in (error.details() or ""), (reason, error)
    error = _refused(lambda: next(iter(agent.CapturePackets(iter([pb.CapturePacketsRequest(stop=True)]), timeout=10))))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "start" in (error.details() or "")
    low = pb.ProbeTcpRequest(target_ip="10.244.1.2", port=8080, source_port=80)
    assert _refused(lambda: agent.ProbeTcp(low, timeout=10)).code() == grpc.StatusCode.INVALID_ARGUMENT
    huge = pb.ProbeUdpRequest(target_ip="10.244.1.2", port=53, datagram_size=9000)
    assert _refused(lambda: agent.ProbeUdp(huge, timeout=10)).code() == grpc.StatusCode.INVALID_ARGUMENT


def test_one_capture_set_per_caller_and_a_caller_that_leaves_frees_its_slot_and_sockets(
    cluster: Cluster, state_before: dict[str, Any]
) -> None:
    agent, node_ns = cluster.agents["node-1"], cluster.lab.node("node-1")["netns"]
    start = pb.CaptureStart(
        points=[pb.CapturePoint(interface=UNDERLAY)], match=match(["10.244.1.2"], 41005), max_duration_ms=5000
    )
    sockets_before = len(kernel_state(node_ns)["packet_sockets"])
    first = start_capture(agent, start)
    assert len(kernel_state(node_ns)["packet_sockets"]) == sockets_before + 1
    error = _refused(lambda: start_capture(agent, start))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "already" in (error.details() or "")
    first.responses.cancel()  # type: ignore[attr-defined]  # the caller goes away without stop
    first.stopping.set()
    eventually(
        lambda: len(kernel_state(node_ns)["packet_sockets"]), lambda n: n == sockets_before, 10, "the capture socket closed"
    )
    again = start_capture(agent, start, stop_message=False)  # the slot is free; a half-closed stream ends at the deadline
    again.stopping.set()
    assert next(again.responses).result.reason == "deadline"


def test_captures_and_probes_changed_no_kernel_state(cluster: Cluster, state_before: dict[str, Any]) -> None:
    after = cluster.state()
    assert after.keys() == state_before.keys()
    for ns, state in state_before.items():
        assert after[ns] == state, ns
