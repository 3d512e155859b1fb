"""Active probes from inside a namespace: one TCP connect, or one UDP datagram and a wait for a reply.

The socket is created inside the namespace (`socket_in_netns`) and used from the calling thread; it
stays bound to that namespace. A probe opens one connection (or sends one datagram) and closes it.
Every probe has a hard timeout; the outcome says what the network did, in words the playbook uses.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import time
from dataclasses import dataclass
from enum import StrEnum

from nodeagent.checks.links import address_family
from nodeagent.errors import KernelQueryFailed
from nodeagent.netns import socket_in_netns

DEFAULT_UDP_PAYLOAD = b"kubereach-probe\n"
UNREACHABLE_ERRNOS = {
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.EINVAL,  # a blackhole route answers connect() with EINVAL
    errno.EACCES,  # a prohibit route
    errno.EPERM,  # a local firewall rule rejected the packet
}


class ProbeOutcome(StrEnum):
    """How a probe ended."""

    CONNECTED = "connected"
    REFUSED = "refused"
    TIMED_OUT = "timed_out"
    UNREACHABLE = "unreachable"
    RESET = "reset"
    ERROR = "error"


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of one probe, its latency, and the system's error text on failure."""

    outcome: ProbeOutcome
    latency_ms: float
    error: str | None
    netns_inode: int
    reply_bytes: int = 0
    source_port: int = 0
    retransmits: int = 0
    path_mtu: int = 0


TCP_INFO_TOTAL_RETRANS = 100
"""Offset of tcpi_total_retrans in struct tcp_info (linux/tcp.h)."""
IP_MTU_DISCOVER, IP_PMTUDISC_DO, IP_MTU = 10, 2, 14


def classify_error(exc: OSError) -> ProbeOutcome:
    """Map a socket error to a probe outcome."""
    if isinstance(exc, TimeoutError):
        return ProbeOutcome.TIMED_OUT
    if isinstance(exc, ConnectionRefusedError):
        return ProbeOutcome.REFUSED
    if isinstance(exc, ConnectionResetError):
        return ProbeOutcome.RESET
    if exc.errno in UNREACHABLE_ERRNOS:
        return ProbeOutcome.UNREACHABLE
    return ProbeOutcome.ERROR


def error_text(exc: OSError) -> str:
    """The error's text as `strerror (ENAME)`, or "timed out"."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    name = errno.errorcode.get(exc.errno or 0, "")
    text = exc.strerror or str(exc)
    return f"{text} ({name})" if name else text


def _open(netns: str, target_ip: str, kind: int) -> tuple[socket.socket, int]:
    try:
        inode = os.stat(netns).st_ino
        return socket_in_netns(netns, address_family(target_ip), kind), inode
    except OSError as exc:
        raise KernelQueryFailed("opening a probe socket in the namespace", exc.errno, exc.strerror) from exc


def _elapsed_ms(start: float) -> float:
    return round((time.monotonic() - start) * 1000.0, 3)


def _bind_source(sock: socket.socket, target_ip: str, source_port: int | None) -> None:
    """Bind the marked source port (SO_REUSEADDR, so a port a previous probe used is free again)."""
    if source_port is None:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("::" if ":" in target_ip else "0.0.0.0", source_port))


def _local_port(sock: socket.socket) -> int:
    try:
        return int(sock.getsockname()[1])
    except OSError:
        return 0


def _total_retransmits(sock: socket.socket) -> int:
    """tcp_info.tcpi_total_retrans of the probe's socket: SYN and data segments sent again."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_TOTAL_RETRANS + 4)
    except OSError:
        return 0
    if len(info) < TCP_INFO_TOTAL_RETRANS + 4:
        return 0
    return int(struct.unpack_from("I", info, TCP_INFO_TOTAL_RETRANS)[0])


def probe_tcp(netns: str, target_ip: str, port: int, timeout: float, source_port: int | None = None) -> ProbeResult:
    """Open a TCP connection to target_ip:port from `netns` (from `source_port` when given) and close it
    at once, reporting the kernel's retransmission count for it.

    A probe from a marked port ends with a reset rather than a FIN (SO_LINGER 0), so it leaves no
    TIME_WAIT behind and the same port can mark the next probe at once.
    """
    sock, inode = _open(netns, target_ip, socket.SOCK_STREAM)
    with sock:
        sock.settimeout(timeout)
        start = time.monotonic()
        try:
            _bind_source(sock, target_ip, source_port)
            if source_port is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.connect((target_ip, port))
        except OSError as exc:
            elapsed = _elapsed_ms(start)
            return ProbeResult(
                classify_error(exc),
                elapsed,
                error_text(exc),
                inode,
                source_port=_local_port(sock),
                retransmits=_total_retransmits(sock),
            )
        elapsed = _elapsed_ms(start)
        return ProbeResult(
            ProbeOutcome.CONNECTED, elapsed, None, inode, source_port=_local_port(sock), retransmits=_total_retransmits(sock)
        )


def _path_mtu(sock: socket.socket) -> int:
    """The path MTU the kernel holds for the connected socket's destination (IP_MTU)."""
    try:
        return int(sock.getsockopt(socket.IPPROTO_IP, IP_MTU))
    except OSError:
        return 0


def probe_udp(
    netns: str,
    target_ip: str,
    port: int,
    timeout: float,
    payload: bytes = DEFAULT_UDP_PAYLOAD,
    source_port: int | None = None,
    datagram_size: int | None = None,
) -> ProbeResult:
    """Send one datagram to target_ip:port from `netns` and wait up to `timeout` for any reply.

    A reply is CONNECTED; an ICMP port unreachable is REFUSED; silence is TIMED_OUT (the port may be
    open and not answering this payload, or the datagram was dropped: the caller decides). With
    `datagram_size` the payload is padded to that many bytes and sent with don't-fragment: a
    datagram bigger than the path MTU (refused locally, or an ICMP frag-needed from the path) is
    UNREACHABLE with the path MTU the kernel learned.
    """
    sock, inode = _open(netns, target_ip, socket.SOCK_DGRAM)
    body = payload or DEFAULT_UDP_PAYLOAD
    if datagram_size is not None:
        body = (body * (datagram_size // len(body) + 1))[:datagram_size]
    with sock:
        start = time.monotonic()
        try:
            sock.settimeout(timeout)
            _bind_source(sock, target_ip, source_port)
            if datagram_size is not None and ":" not in target_ip:
                sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
            sock.connect((target_ip, port))
            sock.send(body)
            reply = sock.recv(65535)
        except OSError as exc:
            elapsed, local = _elapsed_ms(start), _local_port(sock)
            if exc.errno == errno.EMSGSIZE and datagram_size is not None:
                mtu = _path_mtu(sock)
                text = f"the {datagram_size}-byte datagram does not fit the path MTU {mtu} with don't-fragment (EMSGSIZE)"
                return ProbeResult(ProbeOutcome.UNREACHABLE, elapsed, text, inode, source_port=local, path_mtu=mtu)
            return ProbeResult(classify_error(exc), elapsed, error_text(exc), inode, source_port=local)
        return ProbeResult(
            ProbeOutcome.CONNECTED, _elapsed_ms(start), None, inode, reply_bytes=len(reply), source_port=_local_port(sock)
        )
