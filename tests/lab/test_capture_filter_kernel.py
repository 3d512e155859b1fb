"""The capture filter compiled by the agent, run by the real kernel: frames sent over a veth pair in a
throwaway namespace must or must not reach a socket carrying the filter; then a whole capture set
(`run_capture`) on both ends of the pair, with a point that does not exist.

Frames are sent in order over one veth, so when a matching sentinel sent last has arrived, every
frame sent before it has been through the filter too: what did not arrive was dropped by it.
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import threading
from collections.abc import Iterator

import pytest

from nodeagent.checks.capture import (
    CaptureLimits,
    CaptureMatchSpec,
    CaptureOutcome,
    CaptureSession,
    PointRequest,
    compile_filter,
    run_capture,
)
from nodeagent.checks.capture.bpf import attach_filter
from nodeagent.netns import netns_path, socket_in_netns
from tests.unit.capture_packets import ACK, ICMP, RST, SYN, TCP, UDP, ethernet, icmp_error, ipv4, tcp, udp, vxlan

pytestmark = pytest.mark.lab

NS = f"kcf{os.getpid() % 1000:03d}"
POD, VIP, OTHER, NODE_A, NODE_B = "10.244.1.5", "10.96.0.20", "10.244.9.9", "10.240.0.11", "10.240.0.12"
MARK = 40123
SPEC = CaptureMatchSpec(
    protocol=TCP,
    addresses=(CaptureMatchSpec.address_value(POD), CaptureMatchSpec.address_value(VIP)),
    port=MARK,
    overlay_udp_port=8472,
    vni=1,
    icmp=True,
)


def ip(*args: str) -> None:
    subprocess.run(["ip", "-n", NS, *args], check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def netns() -> Iterator[str]:
    subprocess.run(["ip", "netns", "del", NS], capture_output=True, check=False, timeout=30)
    subprocess.run(["ip", "netns", "add", NS], check=True, capture_output=True, timeout=30)
    try:
        ip("link", "add", "kcfa", "type", "veth", "peer", "name", "kcfb")
        ip("link", "set", "kcfa", "up")
        ip("link", "set", "kcfb", "up")
        yield netns_path(NS)
    finally:
        subprocess.run(["ip", "netns", "del", NS], capture_output=True, check=False, timeout=30)


def sender(path: str) -> socket.socket:
    sock = socket_in_netns(path, socket.AF_PACKET, socket.SOCK_RAW, 0)
    sock.bind(("kcfa", 0))
    return sock


def kept_by_filter(path: str, spec: CaptureMatchSpec, frames: list[bytes]) -> list[int]:
    """Indexes of `frames` that reached a socket on kcfb carrying the compiled filter."""
    probe = tcp(MARK, 8080) if spec.protocol == TCP else udp(MARK, 53)
    sentinel = ethernet(ipv4(POD, VIP, spec.protocol, probe, ttl=7))  # unlike any frame of the tests
    receiver = socket_in_netns(path, socket.AF_PACKET, socket.SOCK_RAW, 0)
    with receiver, sender(path) as out:
        receiver.bind(("kcfb", 0))
        attach_filter(receiver, compile_filter(spec, 14))
        receiver.bind(("kcfb", 0x0003))
        for frame in [*frames, sentinel]:
            out.send(frame)
        seen: list[bytes] = []
        while not seen or seen[-1] != sentinel:
            ready, _, _ = select.select([receiver], [], [], 5)
            assert ready, f"the sentinel never arrived; got {len(seen)} frames"
            seen.append(receiver.recv(2048))
    return [i for i, frame in enumerate(frames) if frame in seen[:-1]]


def test_the_probe_and_its_reply_pass_other_ports_and_addresses_do_not(netns: str) -> None:
    frames = [
        ethernet(ipv4(POD, VIP, TCP, tcp(MARK, 8080))),  # 0 the probe's SYN
        ethernet(ipv4(VIP, POD, TCP, tcp(8080, MARK, SYN | ACK))),  # 1 its reply
        ethernet(ipv4(POD, VIP, TCP, tcp(MARK + 1, 8080))),  # 2 another source port
        ethernet(ipv4(OTHER, "10.1.2.3", TCP, tcp(MARK, 8080))),  # 3 neither address
        ethernet(ipv4(POD, VIP, UDP, udp(MARK, 8080))),  # 4 the wrong protocol
        ethernet(ipv4(POD, VIP, TCP, tcp(MARK, 8080), frag_offset=100)),  # 5 a later fragment: no ports
        ethernet(ipv4(OTHER, POD, TCP, tcp(8080, MARK, RST | ACK), options=b"\x01\x01\x01\x00")),  # 6 with IP options
        ethernet(b"\x45" * 40, ethertype=0x86DD),  # 7 not IPv4
    ]
    assert kept_by_filter(netns, SPEC, frames) == [0, 1, 6]


def test_vxlan_matches_on_the_inner_packet_and_the_vni(netns: str) -> None:
    inner = ethernet(ipv4(POD, VIP, TCP, tcp(MARK, 8080)))
    frames = [
        ethernet(vxlan(NODE_A, NODE_B, inner)),  # 0 the probe, encapsulated
        ethernet(vxlan(NODE_B, NODE_A, ethernet(ipv4(VIP, POD, TCP, tcp(8080, MARK, SYN | ACK))), sport=8472, port=51000)),  # 1
        ethernet(vxlan(NODE_A, NODE_B, inner, vni=2)),  # 2 another VNI
        ethernet(vxlan(NODE_A, NODE_B, inner, port=4789)),  # 3 not the overlay port
        ethernet(vxlan(NODE_A, NODE_B, ethernet(ipv4(POD, VIP, TCP, tcp(MARK + 7, 8080))))),  # 4 inner port differs
    ]
    assert kept_by_filter(netns, SPEC, frames) == [0, 1]
    any_vni = CaptureMatchSpec(SPEC.protocol, SPEC.addresses, MARK, overlay_udp_port=8472)
    assert kept_by_filter(netns, any_vni, frames) == [0, 1, 2]
    no_overlay = CaptureMatchSpec(SPEC.protocol, SPEC.addresses, MARK)
    assert kept_by_filter(netns, no_overlay, frames) == []


def test_icmp_errors_quoting_the_probe_pass_bare_and_encapsulated(netns: str) -> None:
    probe = ipv4(POD, VIP, UDP, udp(MARK, 53))
    carried = vxlan(NODE_A, NODE_B, ethernet(probe))  # the probe in the VXLAN packet an underlay hop refused
    spec = CaptureMatchSpec(UDP, SPEC.addresses, MARK, overlay_udp_port=8472, icmp=True)
    frames = [
        ethernet(ipv4(NODE_A, POD, ICMP, icmp_error(3, 4, probe, mtu=1400))),  # 0 frag-needed
        ethernet(ipv4(NODE_A, POD, ICMP, icmp_error(11, 0, probe))),  # 1 time exceeded
        ethernet(ipv4(NODE_A, POD, ICMP, icmp_error(3, 3, ipv4(POD, VIP, UDP, udp(MARK + 1, 53))))),  # 2 another probe
        ethernet(ipv4(NODE_A, POD, ICMP, b"\x08\x00" + b"\x00" * 30)),  # 3 an echo request
        ethernet(vxlan(NODE_B, NODE_A, ethernet(ipv4(VIP, POD, ICMP, icmp_error(3, 3, probe))))),  # 4 inside VXLAN
        ethernet(ipv4("10.240.0.1", NODE_A, ICMP, icmp_error(3, 4, carried, mtu=1400, quote=len(carried)))),  # 5 underlay
    ]
    assert kept_by_filter(netns, spec, frames) == [0, 1, 4, 5]
    assert kept_by_filter(netns, CaptureMatchSpec(UDP, SPEC.addresses, MARK, overlay_udp_port=8472), frames) == []


def test_a_capture_set_reports_direction_headers_and_a_point_that_does_not_exist(netns: str) -> None:
    session = CaptureSession()
    armed = threading.Event()
    outcome: list[object] = []
    points = [PointRequest("kcfa", netns_name=NS), PointRequest("kcfb", netns_name=NS), PointRequest("nosuch0", netns_name=NS)]
    limits = CaptureLimits(max_duration_s=5.0, max_packets=2, max_bytes=65536)

    def run() -> None:
        outcome.append(run_capture(points, lambda p: netns_path(p.netns_name), SPEC, limits, session, lambda n: armed.set()))

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert armed.wait(10)
        syn = ethernet(ipv4(POD, VIP, TCP, tcp(MARK, 8080), ttl=63))
        with sender(netns) as out:
            for frame in (syn, ethernet(ipv4(OTHER, "10.1.2.3", TCP, tcp(1, 2))), syn, syn):
                out.send(frame)
    finally:
        thread.join(10)  # kcfb reaches its cap of 2 kept packets at the third SYN: every open point capped
        session.stop()
        thread.join(10)
    result = outcome[0]
    a, b, missing = result.points  # type: ignore[attr-defined]
    assert result.reason == "cap"  # type: ignore[attr-defined]
    assert (a.packets, b.packets) == (3, 3)
    assert [s.outgoing for s in a.samples] == [True, True] and [s.outgoing for s in b.samples] == [False, False]
    first = b.samples[0]
    assert (first.src_ip, first.dst_ip, first.src_port, first.dst_port, first.tcp_flags, first.ttl) == (
        POD,
        VIP,
        MARK,
        8080,
        "S",
        63,
    )
    assert first.dont_fragment and first.length == len(syn)
    assert 0 <= b.first_seen_ms <= b.last_seen_ms <= result.duration_ms  # type: ignore[attr-defined]
    assert a.truncated and b.truncated and a.ifindex and b.ifindex and a.netns_inode == b.netns_inode
    assert "nosuch0" in missing.error and missing.packets == 0


def test_an_interface_deleted_during_the_capture_reports_why_and_the_others_go_on(netns: str) -> None:
    ip("link", "add", "kcfc", "type", "veth", "peer", "name", "kcfd")
    ip("link", "set", "kcfc", "up")
    ip("link", "set", "kcfd", "up")
    session = CaptureSession()
    armed = threading.Event()
    outcome: list[CaptureOutcome] = []
    points = [PointRequest("kcfc", netns_name=NS), PointRequest("kcfb", netns_name=NS)]
    limits = CaptureLimits(max_duration_s=5.0, max_packets=1, max_bytes=65536)
    thread = threading.Thread(
        target=lambda: outcome.append(
            run_capture(points, lambda p: netns_path(p.netns_name), SPEC, limits, session, lambda n: armed.set())
        )
    )
    thread.start()
    try:
        assert armed.wait(10)
        ip("link", "del", "kcfc")
        syn = ethernet(ipv4(POD, VIP, TCP, tcp(MARK, 8080)))
        with sender(netns) as out:
            out.send(syn)
            out.send(syn)
        thread.join(10)  # kcfb keeps one packet and is capped at the second; kcfc failed: nothing left to watch
    finally:
        session.stop()
        thread.join(10)
    gone, alive = outcome[0].points
    assert outcome[0].reason == "cap"
    assert "stopped during the capture" in gone.error, gone
    assert alive.packets == 2 and alive.truncated and not alive.error


def test_packets_queued_before_a_stop_are_read_even_when_the_reader_never_polled(netns: str) -> None:
    """A busy node: the probe ends and the stop comes before the capture thread has read anything.

    The frames are sent and the stop is asked from `on_armed`, which runs on the capture's own thread
    before its first poll. An outgoing frame passes the socket's tap inside `send` itself (veth has no
    queue), so all three are queued when the stop is seen; closing the sockets then would have called
    them never seen."""
    session = CaptureSession()
    syn = ethernet(ipv4(POD, VIP, TCP, tcp(MARK, 8080)))

    def probe_then_stop(_open: int) -> None:
        with sender(netns) as out:
            for _ in range(3):
                out.send(syn)
        session.stop()

    limits = CaptureLimits(max_duration_s=5.0, max_packets=10, max_bytes=65536)
    result = run_capture(
        [PointRequest("kcfa", netns_name=NS)], lambda p: netns_path(p.netns_name), SPEC, limits, session, probe_then_stop
    )
    session.close()
    assert result.reason == "stopped"
    (point,) = result.points
    assert point.packets == 3 and len(point.samples) == 3 and all(s.outgoing for s in point.samples)
