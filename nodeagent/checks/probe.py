"""Active probes from inside a namespace: one TCP connect, or one UDP datagram and a wait for a reply.

The socket is created inside the namespace (`socket_in_netns`) and used from the calling thread; it
stays bound to that namespace. A probe opens one connection (or sends one datagram) and closes it.
Every probe has a hard timeout; the outcome says what the network did, in words the playbook uses.
"""

from __future__ import annotations

import errno
import os
import socket
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


def probe_tcp(netns: str, target_ip: str, port: int, timeout: float) -> ProbeResult:
    """Open a TCP connection to target_ip:port from `netns` and close it at once."""
    sock, inode = _open(netns, target_ip, socket.SOCK_STREAM)
    with sock:
        sock.settimeout(timeout)
        start = time.monotonic()
        try:
            sock.connect((target_ip, port))
        except OSError as exc:
            return ProbeResult(classify_error(exc), _elapsed_ms(start), error_text(exc), inode)
        return ProbeResult(ProbeOutcome.CONNECTED, _elapsed_ms(start), None, inode)


def probe_udp(netns: str, target_ip: str, port: int, timeout: float, payload: bytes = DEFAULT_UDP_PAYLOAD) -> ProbeResult:
    """Send one datagram to target_ip:port from `netns` and wait up to `timeout` for any reply.

    A reply is CONNECTED; an ICMP port unreachable is REFUSED; silence is TIMED_OUT (the port may be
    open and not answering this payload, or the datagram was dropped: the caller decides).
    """
    sock, inode = _open(netns, target_ip, socket.SOCK_DGRAM)
    with sock:
        start = time.monotonic()
        try:
            sock.settimeout(timeout)
            sock.connect((target_ip, port))
            sock.send(payload or DEFAULT_UDP_PAYLOAD)
            reply = sock.recv(65535)
        except OSError as exc:
            return ProbeResult(classify_error(exc), _elapsed_ms(start), error_text(exc), inode)
        return ProbeResult(ProbeOutcome.CONNECTED, _elapsed_ms(start), None, inode, reply_bytes=len(reply))
