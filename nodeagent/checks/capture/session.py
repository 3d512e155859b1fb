"""One capture set: AF_PACKET sockets on the requested interfaces, filtering in the kernel, read on one
thread with poll(2) until the caller stops it, the deadline passes or every point reached its cap.

A socket is opened inside its namespace (`socket_in_netns`) with protocol 0, so it receives nothing
yet; it is bound to the interface (by index, which the kernel resolves in the socket's own
namespace), given the compiled filter, and only then bound to ETH_P_ALL, so no unfiltered packet is
ever queued. No promiscuous mode, no rule, no sysctl: the sockets are the agent's own and every one
is closed when the set ends, whatever ended it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence

from nodeagent.checks.capture.bpf import ETH_HLEN, SNAPLEN, Instruction, attach_filter, compile_filter
from nodeagent.checks.capture.headers import parse_headers
from nodeagent.checks.capture.model import (
    CapturedPacket,
    CaptureLimits,
    CaptureMatchSpec,
    CaptureOutcome,
    PointRequest,
    PointResult,
)
from nodeagent.errors import AgentError
from nodeagent.netns import netns_inode, socket_in_netns

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_AUXDATA = 8
PACKET_OUTGOING = 4
SO_TIMESTAMPNS = 35
SIOCGIFINDEX = 0x8933
SO_RCVBUFFORCE = 33
RECEIVE_BUFFER = 1 << 20
LINK_HEADERS = {1: ETH_HLEN, 772: ETH_HLEN, 768: 0, 776: 0, 778: 0, 65534: 0}
"""Link-layer header length by ARPHRD type: Ethernet and loopback carry 14 bytes, tunnels
(ipip, sit, gre) and ARPHRD_NONE (tun, wireguard) none."""
READS_PER_WAKE = 64
DRAIN_ROUNDS = RECEIVE_BUFFER // (SNAPLEN * READS_PER_WAKE) + 1
"""Reads of `READS_PER_WAKE` packets at the end, enough to empty a full receive buffer of snapped packets."""
ANCILLARY = socket.CMSG_SPACE(struct.calcsize("IIIHHHH")) + socket.CMSG_SPACE(16)

NamespaceResolver = Callable[[PointRequest], str]
"""The path of a point's namespace; raises the agent's error when it cannot be found."""


class CaptureSession:
    """The handle a caller stops a running capture with, from any thread, at once (a pipe wakes the
    capture's poll)."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._lock = threading.Lock()
        self._closed = False
        self.stop_requested = False

    @property
    def wake_fd(self) -> int:
        """The descriptor that becomes readable when `stop` is called."""
        return self._read

    def stop(self) -> None:
        """Ask the capture to end now (a no-op once it has ended)."""
        with self._lock:
            self.stop_requested = True
            if not self._closed:
                with contextlib.suppress(BlockingIOError):  # a wake-up is already pending
                    os.write(self._write, b"x")

    def close(self) -> None:
        """Release the pipe; `stop` is harmless afterwards."""
        with self._lock:
            if not self._closed:
                self._closed = True
                os.close(self._read)
                os.close(self._write)


class _OpenPoint:
    """A point whose socket is filtering: the socket, its link header length and its result."""

    def __init__(self, sock: socket.socket, link_header: int, result: PointResult) -> None:
        self.sock = sock
        self.link_header = link_header
        self.result = result


def _ifindex(sock: socket.socket, name: str) -> int:
    request = struct.pack("16si", name.encode(), 0)
    return int(struct.unpack("16si", fcntl.ioctl(sock.fileno(), SIOCGIFINDEX, request))[1])


def _open_point(path: str, point: PointRequest, spec: CaptureMatchSpec, programs: dict[int, list[Instruction]]) -> _OpenPoint:
    """Open and arm the socket of one point (see the module's docstring for the order)."""
    result = PointResult(point, netns_inode=netns_inode(path))
    sock = socket_in_netns(path, socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        try:
            sock.bind((point.interface, 0))
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                raise LookupError(f"no interface {point.interface!r} in that namespace") from exc
            raise
        result.ifindex = _ifindex(sock, point.interface)
        hatype = sock.getsockname()[3]
        if hatype not in LINK_HEADERS:
            raise LookupError(f"interface {point.interface!r} has link type {hatype}, which capture does not read")
        link_header = LINK_HEADERS[hatype]
        if link_header not in programs:
            programs[link_header] = compile_filter(spec, link_header)
        attach_filter(sock, programs[link_header])
        sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        _queue_room(sock)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.bind((point.interface, ETH_P_ALL))
        sock.setblocking(False)
        return _OpenPoint(sock, link_header, result)
    except BaseException:
        sock.close()
        raise


def _queue_room(sock: socket.socket) -> None:
    """Room for a burst of kept packets while the reader catches up (the socket's own buffer; a
    kept packet's buffer is charged whole, not its 256 bytes). Beyond it, drops are counted."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)


def _kernel_drops(sock: socket.socket) -> int:
    """Packets the kernel passed the filter but could not queue (struct tpacket_stats)."""
    try:
        _packets, drops = struct.unpack("II", sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
    except OSError:
        return 0
    return int(drops)


class _Reader:
    """Reads one point's queued packets and records them against the bounds."""

    def __init__(self, spec: CaptureMatchSpec, limits: CaptureLimits, armed_at: float) -> None:
        self.spec = spec
        self.limits = limits
        self.armed_at = armed_at

    def drain(self, point: _OpenPoint) -> bool:
        """Read what is queued; False when the socket failed (its interface went away), said in the
        point's error."""
        for _ in range(READS_PER_WAKE):
            try:
                data, ancillary, _flags, address = point.sock.recvmsg(SNAPLEN, ANCILLARY)
            except (BlockingIOError, InterruptedError):
                return True
            except OSError as exc:
                point.result.error = f"the interface stopped during the capture: {_reason(exc)}"
                return False
            self._record(point, data, ancillary, address)
        return True

    def _record(
        self, point: _OpenPoint, data: bytes, ancillary: list[tuple[int, int, bytes]], address: tuple[object, ...]
    ) -> None:
        wire_length, stamp = len(data), time.time()
        for level, kind, value in ancillary:
            if level == SOL_PACKET and kind == PACKET_AUXDATA and len(value) >= 8:
                wire_length = struct.unpack_from("II", value)[1]  # tp_status, tp_len
            elif level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
                seconds, nanoseconds = struct.unpack_from("qq", value)
                stamp = seconds + nanoseconds / 1e9
        ts_ms = round(max(0.0, stamp - self.armed_at) * 1000.0, 3)
        result = point.result
        result.packets += 1
        if result.packets == 1:
            result.first_seen_ms = ts_ms
        result.last_seen_ms = ts_ms
        if result.truncated:
            return
        if len(result.samples) >= self.limits.max_packets or result.kept_bytes + len(data) > self.limits.max_bytes:
            result.truncated = True
            return
        headers = parse_headers(data, point.link_header, self.spec.overlay_udp_port)
        if headers is None:
            return  # the kernel kept it, so it matched; a header too short to describe is only counted
        result.kept_bytes += len(data)
        result.samples.append(
            CapturedPacket(
                ts_ms=ts_ms,
                outgoing=address[2] == PACKET_OUTGOING,
                length=int(wire_length),
                **headers.__dict__,
            )
        )


def run_capture(
    points: Sequence[PointRequest],
    resolve: NamespaceResolver,
    spec: CaptureMatchSpec,
    limits: CaptureLimits,
    session: CaptureSession,
    on_armed: Callable[[int], None],
) -> CaptureOutcome:
    """Watch `points` for the probe's packets until `session.stop()`, the deadline or the caps.

    `on_armed(points_open)` is called once every point that could be opened is filtering. A point
    that cannot be opened (no such namespace or interface) reports why in its result; the others
    still capture. Blocks: run it on a thread of its own.
    """
    results = [PointResult(point) for point in points]
    opened: list[_OpenPoint] = []
    programs: dict[int, list[Instruction]] = {}
    try:
        for index, point in enumerate(points):
            if session.stop_requested:
                break
            try:
                open_point = _open_point(resolve(point), point, spec, programs)
            except (AgentError, LookupError, OSError, ValueError) as exc:  # ends this point only
                results[index].error = _reason(exc)
                continue
            results[index] = open_point.result
            opened.append(open_point)
        armed_at, started = time.time(), time.monotonic()
        on_armed(len(opened))
        reason = _watch(opened, session, _Reader(spec, limits, armed_at), started + limits.max_duration_s)
        return CaptureOutcome(tuple(results), round((time.monotonic() - started) * 1000.0, 3), reason)
    finally:
        for watched in opened:
            watched.result.kernel_drops = _kernel_drops(watched.sock)
            watched.sock.close()


def _watch(opened: list[_OpenPoint], session: CaptureSession, reader: _Reader, deadline: float) -> str:
    poller = select.poll()
    by_fd = {point.sock.fileno(): point for point in opened}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    poller.register(session.wake_fd, select.POLLIN)
    while True:
        if session.stop_requested:
            _drain_queued(opened, reader)
            return "stopped"
        watching = [point for point in opened if not point.result.error]
        if watching and all(point.result.truncated for point in watching):
            return "cap"
        left = deadline - time.monotonic()
        if left <= 0:
            _drain_queued(opened, reader)
            return "deadline"
        for fd, _events in poller.poll(max(1, int(left * 1000))):
            point = by_fd.get(fd)
            if point is not None and not reader.drain(point):
                poller.unregister(fd)


def _drain_queued(opened: list[_OpenPoint], reader: _Reader) -> None:
    """Read what the sockets queued before the end. A stop means the probe is over, so its packets
    have already passed every point; on a busy node the reader may not have read them yet (or not
    even polled once), and closing the sockets then would report them as never seen. Bounded by the
    room a socket has (`RECEIVE_BUFFER`), not by time: a flood cannot keep this going."""
    for point in opened:
        for _ in range(DRAIN_ROUNDS):
            if point.result.error or point.result.truncated or not _has_queued(point.sock):
                break
            if not reader.drain(point):
                break


def _has_queued(sock: socket.socket) -> bool:
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return bool(poller.poll(0))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        name = errno.errorcode.get(exc.errno or 0, "")
        return f"{exc.strerror or exc}" + (f" ({name})" if name else "")
    return str(exc)
