"""CapturePackets: one bounded capture set per caller, streamed start → armed → result.

The first message must be `start`; it is validated whole (INVALID_ARGUMENT with the reason) before
any socket opens. The caller is known by its mTLS certificate identity and holds at most one
capture set at a time (RESOURCE_EXHAUSTED otherwise); the agent runs at most `max_sets` at once.
The capture runs on a thread of its own pool, never on the event loop and never on the probe pool
(the caller's probes run while it is armed). It ends when the caller sends `stop`, when
max_duration_ms has passed since arming, when every point reached its cap, or when the caller
goes away; its sockets are closed in every case.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from kubereach.agent.v1 import agent_pb2 as pb
from nodeagent import validation as v
from nodeagent import wire
from nodeagent.checks.capture import CaptureLimits, CaptureMatchSpec, CaptureOutcome, CaptureSession, PointRequest
from nodeagent.errors import InvalidRequest
from nodeagent.service import NodeChecks

log = logging.getLogger("nodeagent.capture")

MAX_CAPTURE_SETS = 4
"""Capture sets the agent runs at once (each holds one thread and up to 16 sockets)."""
ARM_TIMEOUT_S = 10.0
"""The longest opening the points may take (finding pods' namespaces) before the call gives up."""
DEADLINE_MARGIN_S = 0.25
"""Time kept back from the caller's deadline to send the result."""
CAPTURE_PROTOCOLS = {pb.PROTOCOL_TCP: 6, pb.PROTOCOL_UDP: 17}


def capture_start(start: pb.CaptureStart) -> tuple[tuple[PointRequest, ...], CaptureMatchSpec, CaptureLimits]:
    """The validated capture set: points, match and bounds; `InvalidRequest` names the first bad field."""
    v.capture_point_count(len(start.points))
    points: list[PointRequest] = []
    for i, point in enumerate(start.points):
        field = f"points[{i}]"
        if point.pod_ip and point.netns_name:
            raise InvalidRequest(f"{field}: set at most one of pod_ip and netns_name")
        request = PointRequest(
            interface=v.interface_name(point.interface, f"{field}.interface"),
            pod_ip=v.optional_ip(point.pod_ip, f"{field}.pod_ip"),
            netns_name=v.netns_name(point.netns_name, f"{field}.netns_name") if point.netns_name else None,
        )
        if request in points:
            raise InvalidRequest(f"{field} repeats an earlier point ({request.interface}); give each point once")
        points.append(request)
    if not start.HasField("match"):
        raise InvalidRequest("match is required (protocol, addresses and the probe's marked port)")
    match = start.match
    if match.protocol not in CAPTURE_PROTOCOLS:
        raise InvalidRequest("match.protocol must be PROTOCOL_TCP or PROTOCOL_UDP")
    overlay = v.optional_port(match.overlay_udp_port, "match.overlay_udp_port")
    if match.vni and overlay is None:
        raise InvalidRequest("match.vni needs match.overlay_udp_port (the VNI is read from VXLAN packets)")
    spec = CaptureMatchSpec(
        protocol=CAPTURE_PROTOCOLS[match.protocol],
        addresses=tuple(CaptureMatchSpec.address_value(a) for a in v.ipv4_addresses(list(match.addresses), "match.addresses")),
        port=v.marked_port(match.port, "match.port"),
        overlay_udp_port=overlay,
        vni=v.vni(match.vni),
        icmp=match.icmp,
    )
    limits = CaptureLimits(
        max_duration_s=v.bounded_count(start.max_duration_ms, "max_duration_ms", v.CAPTURE_DURATION_MS) / 1000.0,
        max_packets=v.bounded_count(start.max_packets, "max_packets", v.CAPTURE_PACKETS),
        max_bytes=v.bounded_count(start.max_bytes, "max_bytes", v.CAPTURE_BYTES),
    )
    return tuple(points), spec, limits


def caller_identity(context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    """The caller's mTLS certificate identity; every caller without one (an --insecure agent) shares one."""
    identities = context.peer_identities()
    return b"\0".join(sorted(identities)) if identities else b""


class CaptureService:
    """Runs CapturePackets calls for the servicer."""

    def __init__(self, checks: NodeChecks, max_sets: int = MAX_CAPTURE_SETS) -> None:
        self._checks = checks
        self._pool = ThreadPoolExecutor(max_workers=max_sets, thread_name_prefix="capture")
        self._max_sets = max_sets
        self._callers: set[bytes] = set()

    async def serve(
        self, requests: AsyncIterator[pb.CapturePacketsRequest], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.CapturePacketsResponse]:
        """The stream: read start, validate, arm, answer armed, then the result."""
        incoming = requests.__aiter__()
        try:
            first = await anext(incoming)
        except StopAsyncIteration:
            first = None
        if first is None or first.WhichOneof("action") != "start":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message must be start (the capture set to open)")
        assert first is not None
        try:
            points, spec, limits = capture_start(first.start)
        except InvalidRequest as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise  # unreachable: abort raises
        caller = caller_identity(context)
        if caller in self._callers:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "this caller already has a capture set open; stop it (or wait for its result) before starting another",
            )
        if len(self._callers) >= self._max_sets:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED, f"the agent is running {self._max_sets} capture sets already; retry later"
            )
        remaining = context.time_remaining()
        if remaining is not None:
            limits = CaptureLimits(
                max(0.05, min(limits.max_duration_s, remaining - DEADLINE_MARGIN_S)), limits.max_packets, limits.max_bytes
            )
        self._callers.add(caller)
        session = CaptureSession()
        try:
            async for response in self._run(incoming, context, points, spec, limits, session):
                yield response
        finally:
            session.stop()
            self._callers.discard(caller)

    async def _run(
        self,
        incoming: AsyncIterator[pb.CapturePacketsRequest],
        context: grpc.aio.ServicerContext[Any, Any],
        points: tuple[PointRequest, ...],
        spec: CaptureMatchSpec,
        limits: CaptureLimits,
        session: CaptureSession,
    ) -> AsyncIterator[pb.CapturePacketsResponse]:
        loop = asyncio.get_running_loop()
        armed: asyncio.Future[int] = loop.create_future()

        def arm(points_open: int) -> None:
            if not armed.done():
                armed.set_result(points_open)

        def on_armed(points_open: int) -> None:
            loop.call_soon_threadsafe(arm, points_open)

        def work() -> CaptureOutcome:
            try:
                return self._checks.capture(points, spec, limits, session, on_armed)
            finally:
                session.close()

        job: asyncio.Future[CaptureOutcome] = loop.run_in_executor(self._pool, work)
        reader = asyncio.ensure_future(self._read_stop(incoming, session))
        try:
            waiting: set[asyncio.Future[Any]] = {armed, job}
            done, _ = await asyncio.wait(waiting, timeout=ARM_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
            if armed in done:
                yield pb.CapturePacketsResponse(armed=pb.CaptureArmed(points_open=armed.result()))
            elif job not in done:
                session.stop()
                await context.abort(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"the capture points were not open within {ARM_TIMEOUT_S:.0f} s; the node may be overloaded, retry later",
                )
            outcome = await job  # the capture's own exception (none expected) surfaces as UNKNOWN
            if not armed.done():
                armed.cancel()
            log.info(
                "capture set ended: %s after %.0f ms",
                outcome.reason,
                outcome.duration_ms,
                extra={"points": len(outcome.points), "packets": sum(p.packets for p in outcome.points)},
            )
            yield wire.capture_result(outcome)
        finally:
            session.stop()
            reader.cancel()

    @staticmethod
    async def _read_stop(incoming: AsyncIterator[pb.CapturePacketsRequest], session: CaptureSession) -> None:
        """Stop the capture when the caller sends stop; a caller that half-closes waits for the deadline."""
        async for message in incoming:
            if message.WhichOneof("action") == "stop" and message.stop:
                session.stop()
                return
            if message.WhichOneof("action") == "start":
                log.info("a second start on an open capture set was ignored")

    def shutdown(self) -> None:
        """Stop accepting captures; running ones end on their own deadline."""
        self._pool.shutdown(wait=False, cancel_futures=True)
