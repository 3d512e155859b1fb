"""Fill, seed and flush a lab namespace's conntrack table over ctnetlink, fast.

Used for the "conntrack table full" and "stale UDP entry" faults and for the benchmarks. Entries are
created with batched IPCTNL_MSG_CT_NEW messages on a NETLINK_NETFILTER socket opened inside the
namespace: many messages per sendmsg, no per-entry acknowledgement (errors still come back and are
counted). Entries carry status ASSURED|SEEN_REPLY|CONFIRMED (the kernel insists on CONFIRMED), so
the kernel cannot early-drop them, and a long timeout.

This module is self-contained on purpose (the lab does not import the agent).

    fill(netns_name, target_count, src_net="10.250.0.0/16", dst="10.251.0.1") -> count reached
    insert_entry(netns_name, protocol="udp", orig_src=..., orig_dst=..., ..., status=(...))
    flush(netns_name, only_lab_range="10.250.0.0/16") -> entries removed

Note: nf_conntrack_max cannot be changed inside a non-initial namespace; it is the global limit
(262,144 by default), so filling to the limit means that many entries in one namespace.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import ipaddress
import itertools
import os
import select
import socket
import struct
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from lab.errors import LabError

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33
CLONE_NEWNET = 0x40000000
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NESTED = 0x8000
CT_NEW = (1 << 8) | 0
CT_GET = (1 << 8) | 1
CT_DELETE = (1 << 8) | 2
CT_GET_STATS = (1 << 8) | 5
CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_STATUS, CTA_PROTOINFO, CTA_TIMEOUT, CTA_MARK = 1, 2, 3, 4, 7, 8
CTA_NAT_SRC, CTA_NAT_DST = 6, 13
STATUS_BITS = {
    "EXPECTED": 0,
    "SEEN_REPLY": 1,
    "ASSURED": 2,
    "CONFIRMED": 3,
    "SRC_NAT": 4,
    "DST_NAT": 5,
    "SRC_NAT_DONE": 7,
    "DST_NAT_DONE": 8,
}
TCP_STATES = {
    "SYN_SENT": 1,
    "SYN_RECV": 2,
    "ESTABLISHED": 3,
    "FIN_WAIT": 4,
    "CLOSE_WAIT": 5,
    "LAST_ACK": 6,
    "TIME_WAIT": 7,
    "CLOSE": 8,
}
PROTOCOLS = {"tcp": 6, "udp": 17}
DEFAULT_STATUS = ("ASSURED", "SEEN_REPLY", "CONFIRMED")
_SEND_BATCH = 1024

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

# One conntrack entry as a single struct: nlmsghdr, nfgenmsg, CTA_TUPLE_ORIG{IP{src,dst},
# PROTO{num,sport,dport}}, CTA_TUPLE_REPLY{...}, CTA_STATUS, CTA_TIMEOUT, CTA_MARK and, for TCP,
# CTA_PROTOINFO{TCP{STATE}}. Addresses are packed as 4-byte strings, big-endian values pre-swapped.
_TUPLE = "HH HH HH4s HH4s HH HHB3x HHH2x HHH2x"
_UDP = struct.Struct("=IHHII BBH " + _TUPLE + " " + _TUPLE + " HHI HHI HHI")
_TCP = struct.Struct("=IHHII BBH " + _TUPLE + " " + _TUPLE + " HHI HHI HHI HH HH HHB3x")
_NLMSG = struct.Struct("=IHHII")


@dataclass(frozen=True)
class ConntrackSpec:
    """One entry to create: both tuples, protocol, status bits, timeout and mark."""

    protocol: str
    orig_src: str
    orig_dst: str
    orig_sport: int
    orig_dport: int
    reply_src: str
    reply_dst: str
    reply_sport: int
    reply_dport: int
    status: tuple[str, ...] = DEFAULT_STATUS
    timeout: int = 86400
    tcp_state: str = "ESTABLISHED"
    mark: int = 0


def _tuple_values(kind: int, src: str, dst: str, protonum: int, sport: int, dport: int) -> tuple[object, ...]:
    return (
        52,
        kind | NESTED,
        20,
        1 | NESTED,
        8,
        1,
        socket.inet_aton(src),
        8,
        2,
        socket.inet_aton(dst),
        28,
        2 | NESTED,
        5,
        1,
        protonum,
        6,
        2,
        socket.htons(sport),
        6,
        3,
        socket.htons(dport),
    )


def _status_value(status: Iterable[str]) -> int:
    value = 0
    for name in status:
        if name not in STATUS_BITS:
            raise LabError(f"unknown conntrack status {name!r}; use one of {sorted(STATUS_BITS)}")
        value |= 1 << STATUS_BITS[name]
    return value


def encode_entry(spec: ConntrackSpec, seq: int = 0) -> bytes:
    """The IPCTNL_MSG_CT_NEW message that creates `spec` (NLM_F_CREATE|NLM_F_EXCL, no ack)."""
    protonum = PROTOCOLS.get(spec.protocol)
    if protonum is None:
        raise LabError(f"conntrack filler supports tcp and udp, not {spec.protocol!r}")
    layout = _TCP if protonum == 6 else _UDP
    values: list[object] = [layout.size, CT_NEW, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL, seq, 0, socket.AF_INET, 0, 0]
    values += _tuple_values(CTA_TUPLE_ORIG, spec.orig_src, spec.orig_dst, protonum, spec.orig_sport, spec.orig_dport)
    values += _tuple_values(CTA_TUPLE_REPLY, spec.reply_src, spec.reply_dst, protonum, spec.reply_sport, spec.reply_dport)
    values += [
        8,
        CTA_STATUS,
        socket.htonl(_status_value(spec.status)),
        8,
        CTA_TIMEOUT,
        socket.htonl(spec.timeout),
        8,
        CTA_MARK,
        socket.htonl(spec.mark),
    ]
    if protonum == 6:
        values += [16, CTA_PROTOINFO | NESTED, 12, 1 | NESTED, 5, 1, TCP_STATES[spec.tcp_state]]
    return layout.pack(*values)


def _nat_attr(kind: int, address: str, port: int) -> bytes:
    """CTA_NAT_{DST,SRC}{CTA_NAT_V4_MINIP, CTA_NAT_PROTO{PORT_MIN, PORT_MAX}}: map to address:port."""
    be_port = socket.htons(port)
    return struct.pack(
        "=HH HH4s HH HHH2x HHH2x",
        32,
        kind | NESTED,
        8,
        1,
        socket.inet_aton(address),
        20,
        3 | NESTED,
        6,
        1,
        be_port,
        6,
        2,
        be_port,
    )


def _open_socket(netns_name: str) -> socket.socket:
    path = Path("/var/run/netns") / netns_name
    if "/" in netns_name or not path.exists():
        raise LabError(f"network namespace {netns_name!r} does not exist; create it first")
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    made: list[socket.socket] = []
    failed: list[OSError] = []

    def enter_and_open() -> None:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            failed.append(OSError(ctypes.get_errno(), "setns failed"))
            return
        try:
            made.append(socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_NETFILTER))
        except OSError as exc:
            failed.append(exc)

    try:
        worker = threading.Thread(target=enter_and_open, name="kt-conntrack-netns")
        worker.start()
        worker.join()
    finally:
        os.close(fd)
    if failed:
        raise LabError(f"cannot open ctnetlink in {netns_name!r}: {failed[0]}")
    sock = made[0]
    sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, 8 << 20)
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
    sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
    sock.bind((0, 0))
    return sock


def _request(msg_type: int, flags: int, seq: int, family: int, payload: bytes = b"") -> bytes:
    body = struct.pack("=BBH", family, 0, 0) + payload
    return _NLMSG.pack(16 + len(body), msg_type, flags, seq, 0) + body


def _messages(sock: socket.socket, seq: int, buf: bytearray) -> Iterator[tuple[int, int, int]]:
    """(offset, end, type) of each message answering `seq`, until DONE or an ack; errors raise."""
    while True:
        size = sock.recv_into(buf)
        off = 0
        while off + 16 <= size:
            length, msg_type, _flags, msg_seq, _pid = _NLMSG.unpack_from(buf, off)
            end = off + length
            if msg_seq == seq:
                if msg_type == NLMSG_DONE:
                    return
                if msg_type == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", buf, off + 16)[0]
                    if code:
                        raise LabError(f"ctnetlink request failed: {os.strerror(code)}")
                    return
                yield (off, end, msg_type)
            off = (end + 3) & ~3


def table_count(sock: socket.socket) -> int:
    """The number of entries in the socket's namespace (IPCTNL_MSG_CT_GET_STATS)."""
    sock.send(_request(CT_GET_STATS, NLM_F_REQUEST, 1, socket.AF_UNSPEC))
    buf = bytearray(65536)
    for off, end, _kind in _messages(sock, 1, buf):
        pos = off + 20
        while pos + 4 <= end:
            length, kind = struct.unpack_from("=HH", buf, pos)
            if length < 4:
                break
            if kind & 0x3FFF == 1:  # CTA_STATS_GLOBAL_ENTRIES
                count: int = struct.unpack_from(">I", buf, pos + 4)[0]
                return count
            pos += (length + 3) & ~3
    raise LabError("the kernel's conntrack statistics had no entry count")


def _drain_errors(sock: socket.socket, buf: bytearray, errors: dict[int, int], wait: float) -> None:
    while select.select([sock], [], [], wait)[0]:
        wait = 0.0
        size = sock.recv_into(buf)
        off = 0
        while off + 16 <= size:
            length, msg_type, _flags, _seq, _pid = _NLMSG.unpack_from(buf, off)
            if msg_type == NLMSG_ERROR:
                code = -struct.unpack_from("=i", buf, off + 16)[0]
                errors[code] = errors.get(code, 0) + 1
            off = (off + length + 3) & ~3


def _send_batched(sock: socket.socket, messages: Iterable[bytes], errors: dict[int, int]) -> None:
    buf = bytearray(1 << 20)
    batch: list[bytes] = []
    for message in messages:
        batch.append(message)
        if len(batch) == _SEND_BATCH:
            sock.send(b"".join(batch))
            batch.clear()
            _drain_errors(sock, buf, errors, 0.0)
            if errors.get(errno.ENOMEM) or errors.get(errno.ENOSPC):
                return  # the table is full
    if batch:
        sock.send(b"".join(batch))
    _drain_errors(sock, buf, errors, 0.05)


def _fill_tuples(src_net: str, dst: str, dport: int, protocol: str, timeout: int, mark: int) -> Iterator[bytes]:
    network = ipaddress.IPv4Network(src_net)
    first, last = int(network.network_address) + 1, int(network.broadcast_address) - 1
    if last < first:
        raise LabError(f"source range {src_net} has no host addresses; use a /30 or bigger")
    protonum = PROTOCOLS[protocol]
    layout = _TCP if protonum == 6 else _UDP
    dst_bytes = socket.inet_aton(dst)
    head = [0, CT_NEW, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL, 0, 0, socket.AF_INET, 0, 0]
    status = socket.htonl(_status_value(DEFAULT_STATUS))
    tail: list[object] = [8, CTA_STATUS, status, 8, CTA_TIMEOUT, socket.htonl(timeout), 8, CTA_MARK, socket.htonl(mark)]
    if protonum == 6:
        tail += [16, CTA_PROTOINFO | NESTED, 12, 1 | NESTED, 5, 1, TCP_STATES["ESTABLISHED"]]
    head[0] = layout.size
    pack = layout.pack
    dport_be = socket.htons(dport)
    to_bytes = int.to_bytes
    for sport in range(1024, 65536):
        sport_be = socket.htons(sport)
        for host in range(first, last + 1):
            src = to_bytes(host, 4, "big")
            yield pack(
                *head,
                52,
                CTA_TUPLE_ORIG | NESTED,
                20,
                1 | NESTED,
                8,
                1,
                src,
                8,
                2,
                dst_bytes,
                28,
                2 | NESTED,
                5,
                1,
                protonum,
                6,
                2,
                sport_be,
                6,
                3,
                dport_be,
                52,
                CTA_TUPLE_REPLY | NESTED,
                20,
                1 | NESTED,
                8,
                1,
                dst_bytes,
                8,
                2,
                src,
                28,
                2 | NESTED,
                5,
                1,
                protonum,
                6,
                2,
                dport_be,
                6,
                3,
                sport_be,
                *tail,
            )


def fill(
    netns_name: str,
    target_count: int,
    *,
    src_net: str = "10.250.0.0/16",
    dst: str = "10.251.0.1",
    dport: int = 80,
    protocol: str = "udp",
    timeout: int = 86400,
    mark: int = 0,
) -> int:
    """Add entries src_net:sport -> dst:dport until the namespace's table holds `target_count`.

    Returns the count reached: lower than the target when the table is full (nf_conntrack_max) or
    the source range has no unused tuple left. Existing entries with the same tuples are skipped.
    """
    if protocol not in PROTOCOLS:
        raise LabError(f"conntrack filler supports tcp and udp, not {protocol!r}")
    sock = _open_socket(netns_name)
    try:
        tuples = _fill_tuples(src_net, dst, dport, protocol, timeout, mark)
        while True:
            count = table_count(sock)
            missing = target_count - count
            if missing <= 0:
                return count
            errors: dict[int, int] = {}
            chunk = list(itertools.islice(tuples, missing))
            if not chunk:
                return count
            _send_batched(sock, chunk, errors)
            if errors.get(errno.ENOMEM) or errors.get(errno.ENOSPC):
                return table_count(sock)
            unexpected = {code: n for code, n in errors.items() if code not in (errno.EEXIST,)}
            if unexpected:
                code = next(iter(unexpected))
                raise LabError(f"the kernel refused {unexpected[code]} conntrack entries: {os.strerror(code)}")
    finally:
        sock.close()


def insert_entry(
    netns_name: str,
    *,
    protocol: str = "udp",
    orig_src: str,
    orig_dst: str,
    orig_sport: int,
    orig_dport: int,
    reply_src: str | None = None,
    reply_dst: str | None = None,
    reply_sport: int | None = None,
    reply_dport: int | None = None,
    status: Iterable[str] = DEFAULT_STATUS,
    timeout: int = 86400,
    tcp_state: str = "ESTABLISHED",
    mark: int = 0,
) -> ConntrackSpec:
    """Create one specific entry (e.g. a stale UDP flow VIP:53 -> a deleted pod, status DST_NAT).

    The reply tuple defaults to the mirror of the original one (no NAT). Raises LabError when the
    kernel refuses it (EEXIST when the tuple is already tracked).
    """
    spec = ConntrackSpec(
        protocol=protocol,
        orig_src=orig_src,
        orig_dst=orig_dst,
        orig_sport=orig_sport,
        orig_dport=orig_dport,
        reply_src=reply_src or orig_dst,
        reply_dst=reply_dst or orig_src,
        reply_sport=orig_dport if reply_sport is None else reply_sport,
        reply_dport=orig_sport if reply_dport is None else reply_dport,
        status=tuple(status),
        timeout=timeout,
        tcp_state=tcp_state,
        mark=mark,
    )
    if "CONFIRMED" not in spec.status:
        spec = ConntrackSpec(**{**spec.__dict__, "status": (*spec.status, "CONFIRMED")})
    wire = spec
    if "DST_NAT" in spec.status or "SRC_NAT" in spec.status:
        # Send the un-NATed mirror as the reply tuple; the NAT attributes below make the kernel
        # rewrite it into spec's reply tuple and set the NAT status bits.
        wire = ConntrackSpec(
            **{
                **spec.__dict__,
                "reply_src": spec.orig_dst,
                "reply_dst": spec.orig_src,
                "reply_sport": spec.orig_dport,
                "reply_dport": spec.orig_sport,
            }
        )
    message = bytearray(encode_entry(wire, seq=7))
    # The kernel does not let user space set the NAT status bits directly; it sets them itself when
    # the request carries the NAT mapping (CTA_NAT_DST / CTA_NAT_SRC), as `conntrack -I --dst-nat` does.
    if "DST_NAT" in spec.status:
        message += _nat_attr(CTA_NAT_DST, spec.reply_src, spec.reply_sport)
    if "SRC_NAT" in spec.status:
        message += _nat_attr(CTA_NAT_SRC, spec.reply_dst, spec.reply_dport)
    struct.pack_into("=IH", message, 0, len(message), CT_NEW)
    struct.pack_into("=H", message, 6, NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK)
    sock = _open_socket(netns_name)
    try:
        sock.send(bytes(message))
        for _ in _messages(sock, 7, bytearray(65536)):
            pass
    finally:
        sock.close()
    return spec


def _orig_tuple(buf: bytearray, off: int, end: int) -> tuple[bytes, bytes, int, int, int] | None:
    """(src, dst, protonum, sport, dport) of the original direction of one dumped entry."""
    pos = off + 20
    while pos + 4 <= end:
        length, kind = struct.unpack_from("=HH", buf, pos)
        if length < 4:
            return None
        if kind & 0x3FFF == CTA_TUPLE_ORIG:
            src = dst = b""
            protonum = sport = dport = 0
            inner, stop = pos + 4, pos + length
            while inner + 4 <= stop:
                nlen, nkind = struct.unpack_from("=HH", buf, inner)
                leaf, leaf_stop = inner + 4, inner + nlen
                while leaf + 4 <= leaf_stop:
                    alen, akind = struct.unpack_from("=HH", buf, leaf)
                    value = bytes(buf[leaf + 4 : leaf + alen])
                    if nkind & 0x3FFF == 1 and akind & 0x3FFF == 1:
                        src = value
                    elif nkind & 0x3FFF == 1 and akind & 0x3FFF == 2:
                        dst = value
                    elif nkind & 0x3FFF == 2 and akind & 0x3FFF == 1:
                        protonum = value[0]
                    elif nkind & 0x3FFF == 2 and akind & 0x3FFF == 2:
                        sport = int.from_bytes(value, "big")
                    elif nkind & 0x3FFF == 2 and akind & 0x3FFF == 3:
                        dport = int.from_bytes(value, "big")
                    leaf += (alen + 3) & ~3
                inner += (nlen + 3) & ~3
            return (src, dst, protonum, sport, dport)
        pos += (length + 3) & ~3
    return None


def flush(netns_name: str, only_lab_range: str | None = None) -> int:
    """Delete conntrack entries in the namespace; returns how many went away.

    Without `only_lab_range` the whole table of that namespace is flushed. With a CIDR, only IPv4
    entries whose original source is inside it are deleted (dumped, then deleted by tuple).
    """
    sock = _open_socket(netns_name)
    try:
        before = table_count(sock)
        if only_lab_range is None:
            sock.send(_request(CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, 2, socket.AF_UNSPEC))
            for _ in _messages(sock, 2, bytearray(65536)):
                pass
            return before - table_count(sock)
        network = ipaddress.IPv4Network(only_lab_range)
        sock.send(_request(CT_GET, NLM_F_REQUEST | NLM_F_DUMP, 3, socket.AF_INET))
        doomed: list[tuple[bytes, bytes, int, int, int]] = []
        buf = bytearray(1 << 20)
        for off, end, _kind in _messages(sock, 3, buf):
            found = _orig_tuple(buf, off, end)
            if found and len(found[0]) == 4 and ipaddress.IPv4Address(found[0]) in network:
                doomed.append(found)
        deletes = []
        for src, dst, protonum, sport, dport in doomed:
            payload = struct.pack(
                "=HH HH HH4s HH4s HH HHB3x HHH2x HHH2x",
                52,
                CTA_TUPLE_ORIG | NESTED,
                20,
                1 | NESTED,
                8,
                1,
                src,
                8,
                2,
                dst,
                28,
                2 | NESTED,
                5,
                1,
                protonum,
                6,
                2,
                socket.htons(sport),
                6,
                3,
                socket.htons(dport),
            )
            deletes.append(_request(CT_DELETE, NLM_F_REQUEST, 0, socket.AF_INET, payload))
        errors: dict[int, int] = {}
        _send_batched(sock, deletes, errors)
        return before - table_count(sock)
    finally:
        sock.close()
