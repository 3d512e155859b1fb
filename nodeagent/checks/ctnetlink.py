"""A lean ctnetlink / nf_tables netlink client: just what the agent needs, fast.

pyroute2's conntrack dump builds an object per attribute and is ~90x slower than `conntrack -L` on a
table of production size. This module speaks NETLINK_NETFILTER directly:

- conntrack dumps (IPCTNL_MSG_CT_GET | NLM_F_DUMP) with kernel-side filtering: a CTA_FILTER nest
  (CTA_FILTER_ORIG_FLAGS / CTA_FILTER_REPLY_FLAGS) plus CTA_TUPLE_ORIG / CTA_TUPLE_REPLY carrying the
  values to match, as understood by nf_conntrack_netlink since Linux 5.8. Older kernels ignore the
  nest and dump everything; the caller verifies entries in user space, see `conntrack.py`;
- a parser that walks the received buffers with `struct.unpack_from` on a memoryview and decodes only
  the attributes a `CtRecord` needs, without an object per attribute;
- the nf_tables ruleset generation id (NFT_MSG_GETGEN), a cheap "did any rule change?" check:
  every nf_tables transaction bumps it, including those made by iptables-nft.

Requests are framed and answers received with the agent's netlink codec (`nodeagent.checks.netlink`);
the conntrack parsers below walk the attributes of each entry inline with `unpack_from` rather than
through the codec's `attrs` list, because they run once per entry of dumps of 262,144 entries.

Sockets are opened inside a namespace by `nodeagent.netns.socket_in_netns` and used from any thread.
"""

from __future__ import annotations

import errno
import socket
import struct
from dataclasses import dataclass

from nodeagent.checks import netlink
from nodeagent.checks.netlink import NLA_TYPE_MASK, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST
from nodeagent.netns import socket_in_netns

NETLINK_NETFILTER = 12
SO_RCVBUFFORCE = 33
RECEIVE_BUFFER_BYTES = 16 * 1024 * 1024

NFNL_SUBSYS_CTNETLINK = 1
NFNL_SUBSYS_NFTABLES = 10
IPCTNL_MSG_CT_NEW = 0
IPCTNL_MSG_CT_GET = 1
IPCTNL_MSG_CT_DELETE = 2
IPCTNL_MSG_CT_GET_STATS_CPU = 4
IPCTNL_MSG_CT_GET_STATS = 5
NFT_MSG_GETGEN = 16
NFTA_GEN_ID = 1

CTA_TUPLE_ORIG = 1
CTA_TUPLE_REPLY = 2
CTA_STATUS = 3
CTA_PROTOINFO = 4
CTA_TIMEOUT = 7
CTA_MARK = 8
CTA_ZONE = 18
CTA_FILTER = 25
CTA_TUPLE_IP = 1
CTA_TUPLE_PROTO = 2
CTA_IP_V4_SRC = 1
CTA_IP_V4_DST = 2
CTA_IP_V6_SRC = 3
CTA_IP_V6_DST = 4
CTA_PROTO_NUM = 1
CTA_PROTO_SRC_PORT = 2
CTA_PROTO_DST_PORT = 3
CTA_PROTO_ICMP_ID = 4
CTA_PROTOINFO_TCP = 1
CTA_PROTOINFO_TCP_STATE = 1
CTA_FILTER_ORIG_FLAGS = 1
CTA_FILTER_REPLY_FLAGS = 2

# Kernel-internal bits of CTA_FILTER_*_FLAGS (net/netfilter/nf_conntrack_netlink.c, CTA_FILTER_F_*).
FILTER_IP_SRC = 1 << 0
FILTER_IP_DST = 1 << 1
FILTER_PROTO_NUM = 1 << 3
FILTER_PROTO_SRC_PORT = 1 << 4
FILTER_PROTO_DST_PORT = 1 << 5

_NFGEN = struct.Struct("=BBH")
_NLA = netlink.NLA_HEADER
_BE16 = struct.Struct(">H")
_BE32 = struct.Struct(">I")
_PORT_PROTOCOLS = frozenset({6, 17, 33, 132, 136})


NetfilterNetlinkError = netlink.NetlinkError
"""The kernel refused or failed a netfilter netlink request (the codec's `NetlinkError`)."""


@dataclass(frozen=True, slots=True)
class TupleMatch:
    """The fields of one conntrack direction to match; None means "any"."""

    src: str | None = None
    dst: str | None = None
    protonum: int | None = None
    sport: int | None = None
    dport: int | None = None


@dataclass(frozen=True, slots=True)
class CtRecord:
    """One conntrack entry, decoded from the attributes the agent reports."""

    protonum: int
    tcp_state: int | None
    timeout: int
    status: int
    mark: int
    zone: int
    orig: tuple[str, str, int | None, int | None]
    reply: tuple[str, str, int | None, int | None]


def open_netfilter_socket(netns_path: str) -> socket.socket:
    """A NETLINK_NETFILTER socket inside the namespace at `netns_path`, with a big receive buffer."""
    try:
        sock = socket_in_netns(netns_path, socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_NETFILTER)
    except OSError as exc:
        raise NetfilterNetlinkError(f"cannot open a netfilter netlink socket: {exc.strerror}", exc.errno or 0) from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER_BYTES)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
    sock.bind((0, 0))
    return sock


def netlink_message(msg_type: int, flags: int, seq: int, family: int, payload: bytes, res_id: int = 0) -> bytes:
    """One nfnetlink message: nlmsghdr + nfgenmsg + attributes."""
    return netlink.message(msg_type, flags, seq, _NFGEN.pack(family, 0, socket.htons(res_id)) + payload)


def _ip_family(ip: str) -> int:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def _tuple_attrs(match: TupleMatch) -> tuple[bytes, int]:
    flags = 0
    ip_parts: list[bytes] = []
    if match.src is not None:
        fam = _ip_family(match.src)
        ip_parts.append(netlink.attr(CTA_IP_V4_SRC if fam == socket.AF_INET else CTA_IP_V6_SRC, socket.inet_pton(fam, match.src)))
        flags |= FILTER_IP_SRC
    if match.dst is not None:
        fam = _ip_family(match.dst)
        ip_parts.append(netlink.attr(CTA_IP_V4_DST if fam == socket.AF_INET else CTA_IP_V6_DST, socket.inet_pton(fam, match.dst)))
        flags |= FILTER_IP_DST
    proto_parts: list[bytes] = []
    if match.protonum is not None:
        proto_parts.append(netlink.attr(CTA_PROTO_NUM, bytes([match.protonum])))
        flags |= FILTER_PROTO_NUM
        # The kernel parses ports only through the protocol's tuple parser, so ports need the protocol.
        if match.sport is not None:
            proto_parts.append(netlink.attr(CTA_PROTO_SRC_PORT, _BE16.pack(match.sport)))
            flags |= FILTER_PROTO_SRC_PORT
        if match.dport is not None:
            proto_parts.append(netlink.attr(CTA_PROTO_DST_PORT, _BE16.pack(match.dport)))
            flags |= FILTER_PROTO_DST_PORT
    parts: list[bytes] = []
    if ip_parts:
        parts.append(netlink.nest(CTA_TUPLE_IP, *ip_parts))
    if proto_parts:
        parts.append(netlink.nest(CTA_TUPLE_PROTO, *proto_parts))
    return (b"".join(parts), flags)


def kernel_filterable(match: TupleMatch) -> bool:
    """Whether the kernel can apply every field of `match` (ports need the protocol number)."""
    return match.protonum is not None or (match.sport is None and match.dport is None)


def dump_families(orig: TupleMatch | None, reply: TupleMatch | None) -> tuple[int, ...]:
    """The address families to dump: the kernel refuses a CTA_FILTER with AF_UNSPEC (EOPNOTSUPP),
    so a filter without addresses is sent once for IPv4 and once for IPv6."""
    ips = [ip for m in (orig, reply) if m is not None for ip in (m.src, m.dst) if ip is not None]
    if ips:
        return (_ip_family(ips[0]),)
    if any(m is not None and m.protonum is not None for m in (orig, reply)):
        return (socket.AF_INET, socket.AF_INET6)
    return (socket.AF_UNSPEC,)


def conntrack_dump_request(seq: int, family: int, orig: TupleMatch | None, reply: TupleMatch | None) -> bytes:
    """An IPCTNL_MSG_CT_GET dump request of `family` carrying a CTA_FILTER for the given tuples."""
    payload = b""
    filter_parts: list[bytes] = []
    for kind, flag_kind, match in (
        (CTA_TUPLE_ORIG, CTA_FILTER_ORIG_FLAGS, orig),
        (CTA_TUPLE_REPLY, CTA_FILTER_REPLY_FLAGS, reply),
    ):
        if match is None:
            continue
        attrs, flags = _tuple_attrs(match)
        if flags:
            payload += netlink.nest(kind, attrs)
            filter_parts.append(netlink.attr(flag_kind, struct.pack("=I", flags)))
    if filter_parts:
        payload += netlink.nest(CTA_FILTER, *filter_parts)
    return netlink_message((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET, NLM_F_REQUEST | NLM_F_DUMP, seq, family, payload)


receive_messages = netlink.receive
"""(buffer, offset, end, msg_type) of each message answering one request: the codec's `receive`."""


def _parse_tuple(buf: memoryview, off: int, end: int) -> tuple[str, str, int | None, int | None, int]:
    src = dst = ""
    sport: int | None = None
    dport: int | None = None
    protonum = 0
    unpack_nla = _NLA.unpack_from
    while off + 4 <= end:
        length, kind = unpack_nla(buf, off)
        if length < 4:
            break
        kind &= NLA_TYPE_MASK
        inner = off + 4
        stop = off + length
        if kind == CTA_TUPLE_IP:
            while inner + 4 <= stop:
                alen, akind = unpack_nla(buf, inner)
                if alen < 4:
                    break
                akind &= NLA_TYPE_MASK
                if akind == CTA_IP_V4_SRC:
                    src = socket.inet_ntop(socket.AF_INET, buf[inner + 4 : inner + 8])
                elif akind == CTA_IP_V4_DST:
                    dst = socket.inet_ntop(socket.AF_INET, buf[inner + 4 : inner + 8])
                elif akind == CTA_IP_V6_SRC:
                    src = socket.inet_ntop(socket.AF_INET6, buf[inner + 4 : inner + 20])
                elif akind == CTA_IP_V6_DST:
                    dst = socket.inet_ntop(socket.AF_INET6, buf[inner + 4 : inner + 20])
                inner += (alen + 3) & ~3
        elif kind == CTA_TUPLE_PROTO:
            while inner + 4 <= stop:
                alen, akind = unpack_nla(buf, inner)
                if alen < 4:
                    break
                akind &= NLA_TYPE_MASK
                if akind == CTA_PROTO_NUM:
                    protonum = buf[inner + 4]
                elif akind == CTA_PROTO_SRC_PORT:
                    sport = _BE16.unpack_from(buf, inner + 4)[0]
                elif akind == CTA_PROTO_DST_PORT:
                    dport = _BE16.unpack_from(buf, inner + 4)[0]
                inner += (alen + 3) & ~3
        off += (length + 3) & ~3
    if protonum not in _PORT_PROTOCOLS:
        sport = dport = None
    return (src, dst, sport, dport, protonum)


def parse_conntrack_message(buf: memoryview, off: int, end: int) -> CtRecord:
    """Decode one IPCTNL_MSG_CT_NEW message (as found in a dump) at buf[off:end]."""
    pos = off + 20  # nlmsghdr + nfgenmsg
    orig: tuple[str, str, int | None, int | None, int] = ("", "", None, None, 0)
    reply: tuple[str, str, int | None, int | None, int] = ("", "", None, None, 0)
    status = timeout = mark = zone = 0
    tcp_state: int | None = None
    unpack_nla = _NLA.unpack_from
    be32 = _BE32.unpack_from
    while pos + 4 <= end:
        length, kind = unpack_nla(buf, pos)
        if length < 4:
            break
        kind &= NLA_TYPE_MASK
        if kind == CTA_TUPLE_ORIG:
            orig = _parse_tuple(buf, pos + 4, pos + length)
        elif kind == CTA_TUPLE_REPLY:
            reply = _parse_tuple(buf, pos + 4, pos + length)
        elif kind == CTA_STATUS:
            status = be32(buf, pos + 4)[0]
        elif kind == CTA_TIMEOUT:
            timeout = be32(buf, pos + 4)[0]
        elif kind == CTA_MARK:
            mark = be32(buf, pos + 4)[0]
        elif kind == CTA_ZONE:
            zone = _BE16.unpack_from(buf, pos + 4)[0]
        elif kind == CTA_PROTOINFO:
            inner, stop = pos + 4, pos + length
            while inner + 4 <= stop:
                alen, akind = unpack_nla(buf, inner)
                if alen < 4:
                    break
                if akind & NLA_TYPE_MASK == CTA_PROTOINFO_TCP:
                    tpos, tstop = inner + 4, inner + alen
                    while tpos + 4 <= tstop:
                        tlen, tkind = unpack_nla(buf, tpos)
                        if tlen < 4:
                            break
                        if tkind & NLA_TYPE_MASK == CTA_PROTOINFO_TCP_STATE:
                            tcp_state = buf[tpos + 4]
                        tpos += (tlen + 3) & ~3
                inner += (alen + 3) & ~3
        pos += (length + 3) & ~3
    return CtRecord(
        protonum=orig[4],
        tcp_state=tcp_state,
        timeout=timeout,
        status=status,
        mark=mark,
        zone=zone,
        orig=orig[:4],
        reply=reply[:4],
    )


def parse_conntrack_tuples(
    buf: memoryview, off: int, end: int
) -> tuple[tuple[str, str, int | None, int | None, int] | None, tuple[str, str, int | None, int | None, int] | None]:
    """Only the original and reply tuples of one conntrack message (for user-space filtering)."""
    pos = off + 20
    orig = reply = None
    unpack_nla = _NLA.unpack_from
    while pos + 4 <= end:
        length, kind = unpack_nla(buf, pos)
        if length < 4:
            break
        kind &= NLA_TYPE_MASK
        if kind == CTA_TUPLE_ORIG:
            orig = _parse_tuple(buf, pos + 4, pos + length)
        elif kind == CTA_TUPLE_REPLY:
            reply = _parse_tuple(buf, pos + 4, pos + length)
            break
        pos += (length + 3) & ~3
    return (orig, reply)


def nftables_generation(sock: socket.socket, seq: int) -> int:
    """The nf_tables ruleset generation id of the socket's namespace (NFT_MSG_GETGEN)."""
    request = netlink_message((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN, NLM_F_REQUEST, seq, socket.AF_UNSPEC, b"")
    for buf, off, end, _msg_type in netlink.dump(sock, request, seq):
        for kind, value in netlink.attrs(buf, off + 20, end):
            if kind == NFTA_GEN_ID:
                gen: int = _BE32.unpack_from(value)[0]
                return gen
    raise NetfilterNetlinkError("the kernel's generation reply had no id", errno.EPROTO)


NFT_MSG_GETTABLE = 1
NFT_MSG_GETCHAIN = 4
NFTA_TABLE_NAME = 1
NFTA_CHAIN_TABLE = 1
NFTA_CHAIN_NAME = 3
NFPROTO_IPV4 = 2


def nftables_tables(sock: socket.socket, seq: int) -> list[tuple[int, str]]:
    """(family, name) of every nf_tables table in the socket's namespace (NFT_MSG_GETTABLE dump).

    Much cheaper than `nft list tables`, which loads the whole ruleset into its cache first.
    """
    request = netlink_message(
        (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE, NLM_F_REQUEST | NLM_F_DUMP, seq, socket.AF_UNSPEC, b""
    )
    tables: list[tuple[int, str]] = []
    for buf, off, end, _msg_type in netlink.dump(sock, request, seq):
        family = buf[off + 16]
        for kind, value in netlink.attrs(buf, off + 20, end):
            if kind == NFTA_TABLE_NAME:
                tables.append((family, bytes(value).rstrip(b"\0").decode()))
    return tables


def nftables_chain_exists(sock: socket.socket, seq: int, family: int, table: str, chain: str) -> bool:
    """Whether `chain` exists in nf_tables table `table` of `family` (NFT_MSG_GETCHAIN)."""
    payload = netlink.string_attr(NFTA_CHAIN_TABLE, table) + netlink.string_attr(NFTA_CHAIN_NAME, chain)
    request = netlink_message((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETCHAIN, NLM_F_REQUEST | NLM_F_ACK, seq, family, payload)
    try:
        for _ in netlink.dump(sock, request, seq):
            return True
    except NetfilterNetlinkError as exc:
        if exc.errno == errno.ENOENT:
            return False
        raise
    return False
