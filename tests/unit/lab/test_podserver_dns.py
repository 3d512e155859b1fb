"""The lab's DNS server without a lab: the cluster zone answered, other names forwarded upstream over
real UDP sockets on 127.0.0.1, SERVFAIL when the upstream stays silent, and the outside resolver's
authoritative zone (names it does not hold are NXDOMAIN)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.rcode
import pytest

from lab.dnszone import write_zone
from lab.outside import OUTSIDE_HOST_IP, outside_zone
from lab.podserver import Zone, answer_dns, forward_dns, needs_upstream

CLUSTER = {"domain": "cluster.local.", "a": {"api.shop.svc.cluster.local.": ["10.96.1.1"]}, "srv": {}, "ptr": {}}


def _zone(tmp_path: Path, name: str, data: dict[str, object]) -> Zone:
    path = tmp_path / f"{name}.json"
    write_zone(path, data)
    return Zone(path)


def _query(name: str) -> bytes:
    return dns.message.make_query(name, "A").to_wire()


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[int]:
    """The outside resolver's zone served on a UDP port of 127.0.0.1 by a thread; yields the port."""
    zone = _zone(tmp_path, "outside", outside_zone())
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                wire, addr = sock.recvfrom(4096)
            except TimeoutError:
                continue
            reply = answer_dns(zone, wire)
            if reply is not None:
                sock.sendto(reply, addr)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(sock.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        sock.close()


def test_cluster_names_are_answered_and_other_names_go_upstream(tmp_path: Path) -> None:
    zone = _zone(tmp_path, "cluster", CLUSTER)
    assert not needs_upstream(zone, _query("api.shop.svc.cluster.local."))
    assert not needs_upstream(zone, _query("cluster.local."))
    assert not needs_upstream(zone, _query("1.1.96.10.in-addr.arpa."))
    assert needs_upstream(zone, _query("www.example.com."))


def test_a_forwarded_name_gets_the_upstream_answer(upstream: int) -> None:
    reply = dns.message.from_wire(forward_dns(_query("www.example.com."), "127.0.0.1", timeout=2.0, port=upstream))
    assert reply.rcode() == dns.rcode.NOERROR
    assert [rr.to_text() for rrset in reply.answer for rr in rrset] == [OUTSIDE_HOST_IP]
    missing = dns.message.from_wire(forward_dns(_query("nothing.example.com."), "127.0.0.1", timeout=2.0, port=upstream))
    assert missing.rcode() == dns.rcode.NXDOMAIN


def test_a_silent_upstream_gives_servfail() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        reply = dns.message.from_wire(
            forward_dns(_query("www.example.com."), "127.0.0.1", timeout=0.3, port=silent.getsockname()[1])
        )
    assert reply.rcode() == dns.rcode.SERVFAIL


def test_the_outside_resolver_is_authoritative_and_never_forwards(tmp_path: Path) -> None:
    zone = _zone(tmp_path, "outside", outside_zone())
    assert not needs_upstream(zone, _query("elsewhere.test."))
    reply = answer_dns(zone, _query("elsewhere.test."))
    assert reply is not None and dns.message.from_wire(reply).rcode() == dns.rcode.NXDOMAIN
    apex = answer_dns(zone, _query("example.com."))
    assert apex is not None
    assert [rr.to_text() for rrset in dns.message.from_wire(apex).answer for rr in rrset] == [OUTSIDE_HOST_IP]


def test_without_an_upstream_names_outside_the_cluster_zone_fail(tmp_path: Path) -> None:
    reply = answer_dns(_zone(tmp_path, "cluster", CLUSTER), _query("www.example.com."))
    assert reply is not None and dns.message.from_wire(reply).rcode() == dns.rcode.SERVFAIL
