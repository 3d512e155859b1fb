"""The conntrack table of a node: counters and filtered queries, fast enough for production tables.

`read_conntrack_stats` reads the namespace's entry count and limit from /proc/sys/net/netfilter and
its per-CPU counters from /proc/thread-self/net/stat/nf_conntrack, on a thread inside the namespace.

`query_conntrack` dumps the table over a raw NETLINK_NETFILTER socket opened in the namespace and
asks the kernel to filter (CTA_FILTER, Linux >= 5.8), so a query for one service VIP on a table of
262,144 entries moves only the matching entries to user space. Matching entries are counted; only
the first `limit` are decoded into `ConntrackEntry`. If the kernel ignores the filter (older
kernels), or the filter has fields the kernel cannot apply (ports without a protocol), entries are
checked in user space as well.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from nodeagent.checks import ctnetlink, netlink
from nodeagent.checks.ctnetlink import NetfilterNetlinkError, TupleMatch
from nodeagent.netns import run_in_netns

PROTOCOL_NUMBERS = {"icmp": 1, "tcp": 6, "udp": 17, "dccp": 33, "gre": 47, "icmpv6": 58, "sctp": 132, "udplite": 136}
PROTOCOL_NAMES = {number: name for name, number in PROTOCOL_NUMBERS.items()}
TCP_STATES = (
    "NONE",
    "SYN_SENT",
    "SYN_RECV",
    "ESTABLISHED",
    "FIN_WAIT",
    "CLOSE_WAIT",
    "LAST_ACK",
    "TIME_WAIT",
    "CLOSE",
    "SYN_SENT2",
)
STATUS_BITS = (
    "EXPECTED",
    "SEEN_REPLY",
    "ASSURED",
    "CONFIRMED",
    "SRC_NAT",
    "DST_NAT",
    "SEQ_ADJUST",
    "SRC_NAT_DONE",
    "DST_NAT_DONE",
    "DYING",
    "FIXED_TIMEOUT",
    "TEMPLATE",
    "NAT_CLASH",
    "HELPER",
    "OFFLOAD",
    "HW_OFFLOAD",
)
_VERIFY_FIRST = 64
_CTA_FILTER_SINCE = (5, 8)


def _kernel_release() -> tuple[int, int]:
    parts = re.findall(r"\d+", os.uname().release)[:2]
    return (int(parts[0]), int(parts[1])) if len(parts) == 2 else (0, 0)


_KERNEL_FILTERS = _kernel_release() >= _CTA_FILTER_SINCE


class ConntrackQueryError(RuntimeError):
    """The conntrack table could not be read; the message says why and what to check."""


@dataclass(frozen=True, slots=True)
class ConntrackTuple:
    """One direction of a connection."""

    src: str
    dst: str
    sport: int | None
    dport: int | None


@dataclass(frozen=True, slots=True)
class ConntrackEntry:
    """One conntrack entry as the agent reports it."""

    protocol: str
    state: str | None
    timeout: int
    orig: ConntrackTuple
    reply: ConntrackTuple
    status: tuple[str, ...]
    mark: int
    zone: int


@dataclass(frozen=True)
class ConntrackFilter:
    """Which entries to return: the AND of the given fields; all None matches every entry."""

    protocol: str | None = None
    orig_src: str | None = None
    orig_dst: str | None = None
    orig_sport: int | None = None
    orig_dport: int | None = None
    reply_src: str | None = None
    reply_dst: str | None = None
    reply_sport: int | None = None
    reply_dport: int | None = None


@dataclass(frozen=True)
class ConntrackQueryResult:
    """The matching entries (at most the requested limit) and how many matched in all."""

    total_matched: int
    entries: tuple[ConntrackEntry, ...]
    truncated: bool


@dataclass(frozen=True)
class ConntrackStats:
    """The namespace's table size, its limit, and the per-CPU counters summed."""

    count: int
    max: int
    found: int
    invalid: int
    insert: int
    insert_failed: int
    drop: int
    early_drop: int
    search_restart: int


_status_cache: dict[int, tuple[str, ...]] = {}


def status_names(status: int) -> tuple[str, ...]:
    """The IPS_* status bits set in `status`, by name (one shared tuple per distinct value)."""
    names = _status_cache.get(status)
    if names is None:
        names = tuple(name for bit, name in enumerate(STATUS_BITS) if status & (1 << bit))
        if len(_status_cache) < 1024:
            _status_cache[status] = names
    return names


def protocol_number(protocol: str) -> int:
    """The IP protocol number for a name ("tcp") or a decimal string ("6")."""
    key = protocol.lower()
    if key in PROTOCOL_NUMBERS:
        return PROTOCOL_NUMBERS[key]
    if key.isdigit() and int(key) < 256:
        return int(key)
    raise ValueError(f"unknown protocol {protocol[:32]!r}; use tcp, udp, icmp, sctp or a number")


def entry_from_record(record: ctnetlink.CtRecord) -> ConntrackEntry:
    """Turn a decoded netlink record into the reported entry."""
    protocol = PROTOCOL_NAMES.get(record.protonum, str(record.protonum))
    state = None
    if record.protonum == 6 and record.tcp_state is not None:
        state = TCP_STATES[record.tcp_state] if record.tcp_state < len(TCP_STATES) else str(record.tcp_state)
    return ConntrackEntry(
        protocol=protocol,
        state=state,
        timeout=record.timeout,
        orig=ConntrackTuple(*record.orig),
        reply=ConntrackTuple(*record.reply),
        status=status_names(record.status),
        mark=record.mark,
        zone=record.zone,
    )


def _matches(
    flt: ConntrackFilter,
    protonum: int | None,
    orig: tuple[str, str, int | None, int | None, int] | None,
    reply: tuple[str, str, int | None, int | None, int] | None,
) -> bool:
    if orig is None or reply is None:
        return False
    if protonum is not None and orig[4] != protonum:
        return False
    checks = (
        (flt.orig_src, orig[0]),
        (flt.orig_dst, orig[1]),
        (flt.orig_sport, orig[2]),
        (flt.orig_dport, orig[3]),
        (flt.reply_src, reply[0]),
        (flt.reply_dst, reply[1]),
        (flt.reply_sport, reply[2]),
        (flt.reply_dport, reply[3]),
    )
    return all(want is None or want == have for want, have in checks)


def _normalise_ip(ip: str | None) -> str | None:
    if ip is None:
        return None
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    try:
        return socket.inet_ntop(family, socket.inet_pton(family, ip))
    except OSError as exc:
        raise ValueError(f"not an IP address: {ip[:64]!r}") from exc


def query_conntrack(netns: str, flt: ConntrackFilter, limit: int) -> ConntrackQueryResult:
    """The entries of the namespace's conntrack table that match `flt`: at most `limit`, plus the count.

    The kernel filters; user space re-checks the first entries and, if the kernel did not filter
    (old kernel) or cannot filter every field, every entry.
    """
    if limit < 0:
        raise ValueError("limit must be >= 0")
    for port in (flt.orig_sport, flt.orig_dport, flt.reply_sport, flt.reply_dport):
        if port is not None and not 0 <= port <= 65535:
            raise ValueError(f"port {port} is out of range 0-65535")
    flt = ConntrackFilter(
        protocol=flt.protocol,
        orig_src=_normalise_ip(flt.orig_src),
        orig_dst=_normalise_ip(flt.orig_dst),
        orig_sport=flt.orig_sport,
        orig_dport=flt.orig_dport,
        reply_src=_normalise_ip(flt.reply_src),
        reply_dst=_normalise_ip(flt.reply_dst),
        reply_sport=flt.reply_sport,
        reply_dport=flt.reply_dport,
    )
    protonum = protocol_number(flt.protocol) if flt.protocol is not None else None
    orig = TupleMatch(flt.orig_src, flt.orig_dst, protonum, flt.orig_sport, flt.orig_dport)
    reply = TupleMatch(flt.reply_src, flt.reply_dst, protonum, flt.reply_sport, flt.reply_dport)
    verify_all = not (_KERNEL_FILTERS and ctnetlink.kernel_filterable(orig) and ctnetlink.kernel_filterable(reply))
    anything = any(v is not None for v in (protonum, *_filter_values(flt)))
    entries: list[ConntrackEntry] = []
    total = 0
    seen = 0
    try:
        sock = ctnetlink.open_netfilter_socket(netns)
    except NetfilterNetlinkError as exc:
        raise ConntrackQueryError(f"cannot open conntrack netlink in the namespace: {exc}") from exc
    try:
        for family in ctnetlink.dump_families(orig, reply):
            seq = netlink.next_seq()
            sock.send(ctnetlink.conntrack_dump_request(seq, family, orig, reply))
            for buf, off, end, msg_type in netlink.receive(sock, seq):
                if msg_type & 0xFF != ctnetlink.IPCTNL_MSG_CT_NEW:
                    continue
                seen += 1
                if anything and (verify_all or seen <= _VERIFY_FIRST):
                    o, r = ctnetlink.parse_conntrack_tuples(buf, off, end)
                    if not _matches(flt, protonum, o, r):
                        verify_all = True  # the kernel did not filter: check every entry from now on
                        continue
                total += 1
                if len(entries) < limit:
                    entries.append(entry_from_record(ctnetlink.parse_conntrack_message(buf, off, end)))
    except NetfilterNetlinkError as exc:
        raise ConntrackQueryError(f"conntrack dump failed: {exc}; is nf_conntrack loaded?") from exc
    except OSError as exc:
        raise ConntrackQueryError(f"conntrack dump failed: {exc.strerror}") from exc
    finally:
        sock.close()
    return ConntrackQueryResult(total_matched=total, entries=tuple(entries), truncated=total > len(entries))


def _filter_values(flt: ConntrackFilter) -> tuple[object, ...]:
    return (
        flt.orig_src,
        flt.orig_dst,
        flt.orig_sport,
        flt.orig_dport,
        flt.reply_src,
        flt.reply_dst,
        flt.reply_sport,
        flt.reply_dport,
    )


_STAT_FIELDS = ("found", "invalid", "insert", "insert_failed", "drop", "early_drop", "search_restart")


def parse_conntrack_stat_table(text: str) -> dict[str, int]:
    """Sum the per-CPU hex columns of /proc/net/stat/nf_conntrack by their header names."""
    lines = text.split("\n")
    header = lines[0].split()
    totals = dict.fromkeys(header, 0)
    for line in lines[1:]:
        values = line.split()
        if len(values) != len(header):
            continue
        for name, value in zip(header, values, strict=True):
            totals[name] += int(value, 16)
    return totals


def _read_stats_here() -> tuple[str, str, str]:
    base = Path("/proc/sys/net/netfilter")
    return (
        (base / "nf_conntrack_count").read_text(),
        (base / "nf_conntrack_max").read_text(),
        Path("/proc/thread-self/net/stat/nf_conntrack").read_text(),
    )


def read_conntrack_stats(netns: str) -> ConntrackStats:
    """Count, limit and per-CPU counters of the conntrack table of the namespace at `netns`."""
    try:
        count, maximum, table = run_in_netns(netns, _read_stats_here)
    except OSError as exc:
        raise ConntrackQueryError(
            f"cannot read conntrack counters ({exc.strerror}); is nf_conntrack loaded in the kernel?"
        ) from exc
    totals = parse_conntrack_stat_table(table)
    return ConntrackStats(count=int(count), max=int(maximum), **{f: totals.get(f, 0) for f in _STAT_FIELDS})
