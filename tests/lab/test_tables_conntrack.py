"""Conntrack queries and counters against the `conntrack` tool, in throwaway namespaces (prefix kt)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from lab import conntrack_fill
from nodeagent.checks import ctnetlink
from nodeagent.checks.conntrack import ConntrackFilter, query_conntrack, read_conntrack_stats
from nodeagent.netns import netns_path

pytestmark = pytest.mark.lab

VIP = "10.96.0.10"


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"kt-ct-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def seeded(netns: str) -> str:
    """400 UDP flows to VIP:53, 300 TCP flows elsewhere, one stale DST_NAT entry VIP:53 -> a gone pod."""
    assert conntrack_fill.fill(netns, 400, src_net="10.250.0.0/24", dst=VIP, dport=53) == 400
    assert conntrack_fill.fill(netns, 700, src_net="10.251.0.0/24", dst="10.252.0.1", dport=80, protocol="tcp") == 700
    conntrack_fill.insert_entry(
        netns,
        protocol="udp",
        orig_src="10.244.1.5",
        orig_dst=VIP,
        orig_sport=41000,
        orig_dport=53,
        reply_src="10.244.9.9",
        reply_sport=53,
        status=("ASSURED", "SEEN_REPLY", "DST_NAT"),
    )
    return netns


def conntrack_tool(netns: str, *args: str) -> list[dict[str, object]]:
    """`conntrack -L ARGS` in the namespace, each line as {proto, orig, reply}."""
    out = subprocess.run(
        ["ip", "netns", "exec", netns, "conntrack", "-L", *args], capture_output=True, text=True, check=True
    ).stdout
    flows: list[dict[str, object]] = []
    for line in out.splitlines():
        pairs = re.findall(r"(src|dst|sport|dport)=(\S+)", line)
        if not pairs:
            continue
        values = [v for _, v in pairs]
        flows.append({"proto": line.split()[0], "orig": tuple(values[0:4]), "reply": tuple(values[4:8])})
    return flows


def as_tool_lines(entries: object) -> list[dict[str, object]]:
    out = []
    for e in entries:  # type: ignore[attr-defined]
        out.append(
            {
                "proto": e.protocol,
                "orig": (e.orig.src, e.orig.dst, str(e.orig.sport), str(e.orig.dport)),
                "reply": (e.reply.src, e.reply.dst, str(e.reply.sport), str(e.reply.dport)),
            }
        )
    return out


def key(flow: dict[str, object]) -> tuple[object, ...]:
    return (flow["proto"], flow["orig"], flow["reply"])


def test_query_by_original_destination_returns_what_conntrack_L_d_shows(seeded: str) -> None:
    result = query_conntrack(netns_path(seeded), ConntrackFilter(orig_dst=VIP), limit=10_000)
    expected = conntrack_tool(seeded, "-d", VIP)
    assert result.total_matched == len(expected) == 401
    assert not result.truncated
    assert sorted(map(key, as_tool_lines(result.entries))) == sorted(map(key, expected))


def test_limit_truncates_entries_but_counts_every_match(seeded: str) -> None:
    result = query_conntrack(netns_path(seeded), ConntrackFilter(orig_dst=VIP), limit=10)
    assert len(result.entries) == 10
    assert result.total_matched == 401
    assert result.truncated


def test_stale_nat_entry_is_found_by_reply_source(seeded: str) -> None:
    result = query_conntrack(netns_path(seeded), ConntrackFilter(orig_dst=VIP, reply_src="10.244.9.9"), limit=5)
    assert result.total_matched == 1
    entry = result.entries[0]
    assert entry.protocol == "udp" and entry.orig.dport == 53
    assert entry.reply.src == "10.244.9.9"
    assert "DST_NAT" in entry.status
    expected = conntrack_tool(seeded, "--reply-src", "10.244.9.9")
    assert [key(f) for f in as_tool_lines(result.entries)] == [key(f) for f in expected]


def test_protocol_and_port_filter_matches_conntrack_tool(seeded: str) -> None:
    result = query_conntrack(netns_path(seeded), ConntrackFilter(protocol="tcp", orig_dport=80), limit=10_000)
    expected = conntrack_tool(seeded, "-p", "tcp", "--dport", "80")
    assert result.total_matched == len(expected) == 300
    assert all(e.state == "ESTABLISHED" for e in result.entries)


def test_port_without_protocol_is_filtered_in_user_space(seeded: str) -> None:
    result = query_conntrack(netns_path(seeded), ConntrackFilter(orig_dport=53), limit=0)
    assert result.total_matched == 401


def test_empty_filter_counts_the_whole_table(seeded: str) -> None:
    result = query_conntrack(netns_path(seeded), ConntrackFilter(), limit=1)
    assert result.total_matched == len(conntrack_tool(seeded)) == 701


def test_the_kernel_does_the_filtering(seeded: str) -> None:
    """Only matching entries cross to user space: the raw dump with CTA_FILTER has exactly that many messages."""
    sock = ctnetlink.open_netfilter_socket(netns_path(seeded))
    try:
        sock.send(ctnetlink.conntrack_dump_request(77, socket.AF_INET, ctnetlink.TupleMatch(dst=VIP), None))
        messages = sum(1 for _ in ctnetlink.receive_messages(sock, 77))
    finally:
        sock.close()
    assert messages == 401


def test_stats_agree_with_conntrack_C_and_S(seeded: str) -> None:
    stats = read_conntrack_stats(netns_path(seeded))
    count = int(
        subprocess.run(["ip", "netns", "exec", seeded, "conntrack", "-C"], capture_output=True, text=True, check=True).stdout
    )
    assert stats.count == count == 701
    per_cpu = subprocess.run(
        ["ip", "netns", "exec", seeded, "conntrack", "-S"], capture_output=True, text=True, check=True
    ).stdout
    inserts = sum(int(v) for v in re.findall(r"\binsert=(\d+)", per_cpu))
    failed = sum(int(v) for v in re.findall(r"\binsert_failed=(\d+)", per_cpu))
    assert stats.insert == inserts >= 701
    assert stats.insert_failed == failed
    with open("/proc/sys/net/netfilter/nf_conntrack_max") as handle:
        assert stats.max == int(handle.read())


def test_fill_reaches_the_target_and_stays_there(netns: str) -> None:
    assert conntrack_fill.fill(netns, 5000, src_net="10.250.0.0/20") == 5000
    assert read_conntrack_stats(netns_path(netns)).count == 5000
    assert conntrack_fill.fill(netns, 5000, src_net="10.250.0.0/20") == 5000
    assert conntrack_fill.fill(netns, 6000, src_net="10.250.0.0/20") == 6000


def test_flush_of_the_lab_range_keeps_other_entries(seeded: str) -> None:
    removed = conntrack_fill.flush(seeded, only_lab_range="10.250.0.0/24")
    assert removed == 400
    assert read_conntrack_stats(netns_path(seeded)).count == 301
    assert conntrack_fill.flush(seeded) == 301
