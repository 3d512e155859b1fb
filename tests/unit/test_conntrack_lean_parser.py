"""The lean ctnetlink parser on a dump recorded from a real namespace (fixtures/ctnetlink_dump.bin)."""

from __future__ import annotations

import socket
import struct
from pathlib import Path

from nodeagent.checks import ctnetlink, netlink
from nodeagent.checks.conntrack import (
    ConntrackEntry,
    ConntrackTuple,
    entry_from_record,
    parse_conntrack_stat_table,
    status_names,
)

FIXTURES = Path(__file__).parent / "fixtures"


def _entries() -> list[ConntrackEntry]:
    data = (FIXTURES / "ctnetlink_dump.bin").read_bytes()
    view = memoryview(data)
    entries = []
    off = 0
    while off + 16 <= len(data):
        length, msg_type, _flags, _seq, _pid = struct.unpack_from("=IHHII", data, off)
        if msg_type == netlink.NLMSG_DONE:
            break
        entries.append(entry_from_record(ctnetlink.parse_conntrack_message(view, off, off + length)))
        off += (length + 3) & ~3
    return entries


def test_recorded_dump_decodes_to_the_three_inserted_entries() -> None:
    by_orig = {(e.protocol, e.orig.dst, e.orig.dport): e for e in _entries()}
    assert len(by_orig) == 3
    dns = by_orig[("udp", "10.96.0.10", 53)]
    assert dns.orig == ConntrackTuple("10.244.1.5", "10.96.0.10", 41000, 53)
    assert dns.reply == ConntrackTuple("10.244.9.9", "10.244.1.5", 53, 41000)
    assert dns.state is None
    assert {"ASSURED", "SEEN_REPLY", "CONFIRMED", "DST_NAT"} <= set(dns.status)
    assert 0 < dns.timeout <= 600


def test_tcp_state_mark_and_reply_tuple_are_decoded() -> None:
    by_orig = {(e.protocol, e.orig.dst, e.orig.dport): e for e in _entries()}
    web = by_orig[("tcp", "10.96.10.20", 80)]
    assert web.state == "ESTABLISHED"
    assert web.mark == 0x4000
    assert web.reply.src == "10.244.2.6" and web.reply.sport == 8080
    syn = by_orig[("tcp", "10.244.2.6", 8080)]
    assert syn.state == "SYN_RECV"
    assert "ASSURED" not in syn.status


def test_status_bits_are_named() -> None:
    assert status_names(0b101110) == ("SEEN_REPLY", "ASSURED", "CONFIRMED", "DST_NAT")


def test_dump_request_carries_the_filter_flags_for_orig_destination() -> None:
    request = ctnetlink.conntrack_dump_request(9, socket.AF_INET, ctnetlink.TupleMatch(dst="10.96.0.10"), None)
    length, msg_type, flags, seq, _pid = struct.unpack_from("=IHHII", request)
    assert length == len(request) and seq == 9
    assert msg_type == (ctnetlink.NFNL_SUBSYS_CTNETLINK << 8) | ctnetlink.IPCTNL_MSG_CT_GET
    assert flags & netlink.NLM_F_DUMP == netlink.NLM_F_DUMP
    assert socket.inet_aton("10.96.0.10") in request
    orig_flags = struct.pack("=HHI", 8, ctnetlink.CTA_FILTER_ORIG_FLAGS, ctnetlink.FILTER_IP_DST)
    assert orig_flags in request


def test_ports_without_protocol_cannot_be_filtered_by_the_kernel() -> None:
    assert not ctnetlink.kernel_filterable(ctnetlink.TupleMatch(dport=53))
    assert ctnetlink.kernel_filterable(ctnetlink.TupleMatch(protonum=17, dport=53))


def test_per_cpu_stat_table_is_summed_by_header_name() -> None:
    text = (
        "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop "
        "icmp_error  expect_new expect_create expect_delete search_restart\n"
        "00000010  00000000 00000002 00000000 00000001 00000000 00000000 00000000 0000000a 00000000 00000003 "
        "00000000 00000000  00000000 00000000 00000000 00000001\n"
        "00000010  00000000 00000003 00000000 00000000 00000000 00000000 00000000 00000005 00000001 00000000 "
        "00000002 00000000  00000000 00000000 00000000 00000000\n"
    )
    totals = parse_conntrack_stat_table(text)
    assert totals["found"] == 5 and totals["insert"] == 15 and totals["drop"] == 3
    assert totals["insert_failed"] == 1 and totals["early_drop"] == 2 and totals["search_restart"] == 1
