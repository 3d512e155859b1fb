"""Listening sockets of a namespace through sock_diag netlink (what `ss -ltun` shows).

A lean inet_diag dump: one NETLINK_SOCK_DIAG socket opened inside the namespace, one dump request
per (family, protocol) with a kernel-side state filter (TCP LISTEN, UDP unconnected), fixed-size
records parsed with `struct`. Owning processes are found by matching socket inodes against the
file descriptors of the processes in the same namespace, with a bound on the work; for each owner
its name and its cgroup are read from /proc, because on a node the cgroup is what says whose process
it is: kubelet puts every pod's processes under a cgroup naming the pod's UID (`kubepods…pod<uid>…`),
while a daemon started outside Kubernetes is not under one. That is how a host-network pod's port held
by some other process is told apart from the pod's own listener (the node's namespace holds both).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

from nodeagent.checks import netlink
from nodeagent.checks.netlink import NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NLMSG_HEADER
from nodeagent.errors import KernelQueryFailed
from nodeagent.netns import socket_in_netns

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
TCP_ESTABLISHED = 1
TCP_CLOSE = 7
TCP_LISTEN = 10
DIAG_REQUEST = struct.Struct("=BBBBI HH16s16sI II")  # inet_diag_req_v2 with inet_diag_sockid
DIAG_MESSAGE = struct.Struct("=BBBB HH16s16sI II IIIII")  # inet_diag_msg
MAX_FDS_SCANNED = 200_000
RECV_BUFFER = 1 << 16


@dataclass(frozen=True)
class ListeningSocket:
    """One listening TCP socket or bound (unconnected) UDP socket."""

    protocol: str  # "tcp" | "udp"
    local_address: str
    local_port: int
    inode: int
    pid: int | None
    process_name: str | None
    cgroup: str | None = None
    """The owner's cgroup path (`owner_cgroup`); None when no owner was found."""


def _request(family: int, protocol: int, states: int, seq: int) -> bytes:
    body = DIAG_REQUEST.pack(family, protocol, 0, 0, states, 0, 0, b"\0" * 16, b"\0" * 16, 0, 0, 0)
    return netlink.message(SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, body)


def parse_diag_messages(data: bytes) -> tuple[list[tuple[int, int, bytes, int, int]], bool]:
    """Parse a buffer of netlink messages into (family, state, src, sport, inode) records.

    Returns the records and whether NLMSG_DONE was seen. An NLMSG_ERROR raises `KernelQueryFailed`.
    """
    records = []
    done = False
    try:
        for off, end, kind, _flags, _seq in netlink.messages(data, len(data)):
            payload = off + NLMSG_HEADER.size
            if kind == NLMSG_DONE:
                done = True
            elif kind == NLMSG_ERROR:
                code = netlink.error_code(data, off)
                if code != 0:
                    raise KernelQueryFailed("sock_diag dump", code)
            elif kind == SOCK_DIAG_BY_FAMILY and end - payload >= DIAG_MESSAGE.size:
                fields = DIAG_MESSAGE.unpack_from(data, payload)
                family, state = fields[0], fields[1]
                sport = fields[4]
                src = fields[6]
                inode = fields[15]
                records.append((family, state, src, socket.ntohs(sport), inode))
    except netlink.NetlinkError:
        pass  # a malformed message ends the buffer, as a short header does
    return records, done


def _dump(sock: socket.socket, family: int, protocol: int, states: int, seq: int) -> list[tuple[int, int, bytes, int, int]]:
    sock.sendall(_request(family, protocol, states, seq))
    records: list[tuple[int, int, bytes, int, int]] = []
    while True:
        chunk, done = parse_diag_messages(sock.recv(RECV_BUFFER))
        records.extend(chunk)
        if done:
            return records


def _address(family: int, raw: bytes) -> str:
    if family == socket.AF_INET:
        return str(ipaddress.IPv4Address(raw[:4]))
    return str(ipaddress.IPv6Address(raw))


def owner_cgroup(text: str) -> str:
    """The cgroup path that says whose process this is, from the text of /proc/PID/cgroup.

    A pod's cgroup (one with a `kubepods` component) first, in whichever hierarchy holds it (cgroup v1
    nodes name it per controller); else the unified hierarchy's path; else the first path other than
    the root; else "/".
    """
    paths: list[tuple[str, str]] = []
    for line in text.splitlines():
        hierarchy, _, rest = line.partition(":")
        _controllers, sep, path = rest.partition(":")
        if sep and path:
            paths.append((hierarchy, path))
    for _, path in paths:
        if any(part.startswith("kubepods") for part in path.split("/")):
            return path
    unified = next((path for hierarchy, path in paths if hierarchy == "0"), None)
    if unified is not None and unified != "/":
        return unified
    return next((path for _, path in paths if path != "/"), "/")


def _read_cgroup(proc: Path) -> str:
    try:
        return owner_cgroup((proc / "cgroup").read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return ""


def socket_owners(netns_inode: int, inodes: set[int]) -> dict[int, tuple[int, str, str]]:
    """socket inode -> (pid, comm, cgroup) for processes in the namespace with that inode; bounded work."""
    owners: dict[int, tuple[int, str, str]] = {}
    scanned = 0
    targets = {f"socket:[{inode}]": inode for inode in inodes}
    for proc in Path("/proc").iterdir():
        if len(owners) == len(targets) or scanned >= MAX_FDS_SCANNED:
            break
        if not proc.name.isdigit():
            continue
        try:
            if os.stat(proc / "ns" / "net").st_ino != netns_inode:
                continue
            fds = os.listdir(proc / "fd")
        except OSError:
            continue
        for fd in fds:
            scanned += 1
            try:
                target = os.readlink(proc / "fd" / fd)
            except OSError:
                continue
            inode = targets.get(target)
            if inode is not None and inode not in owners:
                try:
                    comm = (proc / "comm").read_text(encoding="utf-8", errors="replace").strip()
                except OSError:
                    comm = ""
                owners[inode] = (int(proc.name), comm, _read_cgroup(proc))
    return owners


def list_listening_sockets(netns: str, port: int | None = None, protocol: str | None = None) -> tuple[ListeningSocket, ...]:
    """TCP LISTEN and unconnected UDP sockets in `netns` (optionally one local port / protocol)."""
    try:
        netns_inode = os.stat(netns).st_ino
        sock = socket_in_netns(netns, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
    except OSError as exc:
        raise KernelQueryFailed("opening a sock_diag socket", exc.errno, exc.strerror) from exc
    found: list[tuple[str, int, bytes, int, int]] = []
    wanted = [("tcp", socket.IPPROTO_TCP, 1 << TCP_LISTEN), ("udp", socket.IPPROTO_UDP, 1 << TCP_CLOSE)]
    try:
        with sock:
            sock.settimeout(5.0)
            seq = 0
            for name, proto, states in wanted:
                if protocol is not None and protocol != name:
                    continue
                for family in (socket.AF_INET, socket.AF_INET6):
                    seq += 1
                    for fam, _state, src, sport, inode in _dump(sock, family, proto, states, seq):
                        if port is None or sport == port:
                            found.append((name, fam, src, sport, inode))
    except TimeoutError as exc:
        raise KernelQueryFailed("sock_diag dump", errno.ETIMEDOUT) from exc
    except OSError as exc:
        raise KernelQueryFailed("sock_diag dump", exc.errno, exc.strerror) from exc
    owners = socket_owners(netns_inode, {inode for *_, inode in found if inode})
    result = {
        ListeningSocket(
            protocol=name,
            local_address=_address(fam, src),
            local_port=sport,
            inode=inode,
            pid=owners[inode][0] if inode in owners else None,
            process_name=owners[inode][1] if inode in owners else None,
            cgroup=owners[inode][2] if inode in owners else None,
        )
        for name, fam, src, sport, inode in found
        if not (name == "udp" and sport == 0)
    }
    return tuple(sorted(result, key=lambda s: (s.protocol, s.local_port, s.local_address, s.inode)))
