"""The agent's gRPC server: a thin servicer over `NodeChecks`, request ids, mTLS, health and reflection.

Each RPC validates its request on the event loop (answering INVALID_ARGUMENT before any kernel
work), then runs the blocking check on a bounded thread pool with a timeout (the smaller of the
client's deadline and the agent's own limit), so a slow check never holds the server. Probes and
quick reads have pools and admission limits of their own, so slow probes never starve a quick read;
health is outside both. A malformed message answers INVALID_ARGUMENT like any other bad input. Errors are the
agent's own (`nodeagent.errors`) and map to one status code each.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import logging
import os
import re
import signal
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from kubereach.agent.v1 import agent_pb2 as pb
from kubereach.agent.v1 import agent_pb2_grpc as pb_grpc
from nodeagent import validation as v
from nodeagent import wire
from nodeagent.capture_rpc import CaptureService
from nodeagent.checks.conntrack import ConntrackFilter
from nodeagent.errors import (
    AgentError,
    CheckUnavailable,
    InvalidRequest,
    KernelQueryFailed,
    NamespaceUnknown,
    NodeNamespaceMissing,
    NoTimeLeft,
    PodNotFound,
)
from nodeagent.logconfig import REQUEST_ID
from nodeagent.metrics import AgentMetrics
from nodeagent.netns import NETNS_RUN_DIR
from nodeagent.service import KernelChecks, NamespaceTarget, NodeChecks
from nodeagent.settings import AgentSettings
from nodeagent.stream_logging import REQUEST_ID_HEADER, cancelled_code, logged_stream
from nodeagent.tls import load_server_tls, server_credentials

R = TypeVar("R")
HealthServicer: Any = health.aio.HealthServicer  # type: ignore[attr-defined]
log = logging.getLogger("nodeagent.server")

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["NodeAgentService"].full_name
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
HEALTH_WATCH_INTERVAL_S = 1.0
"""How often the health status is re-evaluated (`AgentServer.can_serve`)."""
MAX_STREAMS_PER_CONNECTION = 256
"""HTTP/2 streams one client connection may open at once (a bound on what a flood can hold)."""


class ServerConfigError(ValueError):
    """The settings cannot start a server (missing TLS files, unusable listen address)."""


def status_for(error: AgentError) -> grpc.StatusCode:
    """The one status code each of the agent's errors answers with."""
    if isinstance(error, InvalidRequest):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(error, PodNotFound | NamespaceUnknown):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(error, NodeNamespaceMissing):
        return grpc.StatusCode.FAILED_PRECONDITION
    if isinstance(error, CheckUnavailable):
        return grpc.StatusCode.UNIMPLEMENTED
    if isinstance(error, NoTimeLeft):
        return grpc.StatusCode.DEADLINE_EXCEEDED
    if isinstance(error, KernelQueryFailed) and not error.transient and error.errno is not None:
        return grpc.StatusCode.INTERNAL
    return grpc.StatusCode.UNAVAILABLE


class CheckRunner:
    """Runs blocking checks on a bounded pool, never longer than the deadline or the agent's limit.

    At most `max_in_flight` calls are admitted at once (running or queued for a thread); beyond that a
    call is refused at once with RESOURCE_EXHAUSTED, so a flood queues nothing. A call whose client
    has gone (cancelled, deadline passed) before a thread took it up never runs.
    """

    def __init__(self, max_workers: int, limit_seconds: float, *, name: str = "check", max_in_flight: int | None = None) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=name)
        self._limit = limit_seconds
        self.name = name
        self.max_in_flight = max_in_flight if max_in_flight is not None else max_workers * 8
        self.in_flight = 0
        self.max_workers = max_workers
        self._busy_threads = 0
        self._last_finished = time.monotonic()
        self._threads_lock = threading.Lock()

    def _tracked(self, work: Callable[[], R]) -> Callable[[], R]:
        def run() -> R:
            with self._threads_lock:
                self._busy_threads += 1
            try:
                return work()
            finally:
                with self._threads_lock:
                    self._busy_threads -= 1
                    self._last_finished = time.monotonic()

        return run

    def wedged(self) -> bool:
        """Every thread is busy and none has finished a check for twice the longest a check may take:
        the kernel work is hung, and this pool truly cannot answer."""
        with self._threads_lock:
            return self._busy_threads >= self.max_workers and time.monotonic() - self._last_finished > 2 * self._limit

    async def run(self, context: grpc.aio.ServicerContext[Any, Any], work: Callable[[], R]) -> R:
        """Run `work` off the event loop; DEADLINE_EXCEEDED when it outlives the time allowed."""
        if self.in_flight >= self.max_in_flight:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"the agent is busy: {self.in_flight} {self.name} calls in flight (limit {self.max_in_flight}); retry later",
            )
        remaining = context.time_remaining()
        limit = self._limit if remaining is None else max(0.0, min(self._limit, remaining))
        loop = asyncio.get_running_loop()
        self.in_flight += 1
        try:
            future = loop.run_in_executor(self._pool, contextvars.copy_context().run, self._tracked(work))
            try:
                return await asyncio.wait_for(future, limit)
            except TimeoutError:
                await context.abort(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    f"the check did not finish within {limit:.1f} s; the node may be overloaded, retry later",
                )
                raise  # unreachable: abort raises
        finally:
            self.in_flight -= 1

    def shutdown(self) -> None:
        """Stop accepting work; running checks finish on their own."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def _fits_deadline(context: grpc.aio.ServicerContext[Any, Any], timeout: float, work: Callable[[], R]) -> Callable[[], R]:
    """`work` (a probe with its own `timeout`), refused when it starts too late to finish before the
    caller's deadline: a probe cut short would report "timed out", which is not what the network did."""
    remaining = context.time_remaining()
    if remaining is None:
        return work
    deadline = time.monotonic() + remaining

    def started() -> R:
        left = deadline - time.monotonic()
        if left < timeout:
            raise NoTimeLeft(
                f"the probe needs {timeout:.1f} s but only {max(left, 0.0):.1f} s of the caller's deadline are left; "
                "the agent may be busy, retry later"
            )
        return work()

    return started


def _target(pod_ip: str, netns_name: str) -> NamespaceTarget:
    if pod_ip and netns_name:
        raise InvalidRequest("set at most one of pod_ip and netns_name")
    return NamespaceTarget(
        pod_ip=v.optional_ip(pod_ip, "pod_ip"),
        netns_name=v.netns_name(netns_name, "netns_name") if netns_name else None,
    )


def _protocol(value: pb.Protocol.ValueType, field: str, allowed: dict[pb.Protocol.ValueType, str]) -> str:
    if value not in allowed:
        names = ", ".join(pb.Protocol.Name(k) for k in allowed)
        raise InvalidRequest(f"{field} must be one of {names}")
    return allowed[value]


class NodeAgentServicer(pb_grpc.NodeAgentServiceServicer):
    """Validates each request, runs the matching check, maps the result to the response message."""

    def __init__(self, checks: NodeChecks, probes: CheckRunner, reads: CheckRunner | None = None) -> None:
        self._checks = checks
        self._probes = probes
        self._reads = reads or probes
        self._captures = CaptureService(checks)

    async def _answer(
        self, context: grpc.aio.ServicerContext[Any, Any], prepare: Callable[[], Callable[[], R]], *, probe: bool = False
    ) -> R:
        """Validate (`prepare`), then run the work on the probe pool or, for quick reads, the read pool."""
        try:
            work = prepare()  # validation only: no kernel work happens before it passes
            return await (self._probes if probe else self._reads).run(context, work)
        except AgentError as exc:
            code = status_for(exc)
            if code in {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE}:
                log.warning("check failed: %s", exc)
            await context.abort(code, str(exc))
            raise  # unreachable: abort raises

    async def GetNodeInfo(
        self, request: pb.GetNodeInfoRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetNodeInfoResponse:
        """Describe the node."""
        checks = self._checks
        return await self._answer(context, lambda: lambda: wire.node_info(checks.node_info()))

    async def LocatePod(self, request: pb.LocatePodRequest, context: grpc.aio.ServicerContext[Any, Any]) -> pb.LocatePodResponse:
        """Find a pod's namespace by IP."""

        def prepare() -> Callable[[], pb.LocatePodResponse]:
            ip = v.ip_literal(request.pod_ip, "pod_ip")
            return lambda: pb.LocatePodResponse(pod=wire.pod_network(self._checks.locate_pod(ip)))

        return await self._answer(context, prepare)

    async def LookupRoute(
        self, request: pb.LookupRouteRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.LookupRouteResponse:
        """`ip route get` in the node's or a pod's namespace."""

        def prepare() -> Callable[[], pb.LookupRouteResponse]:
            where = _target(request.pod_ip, request.netns_name)
            destination = v.ip_literal(request.destination, "destination")
            source = v.optional_ip(request.source, "source")
            v.same_family(destination, source, "destination and source")
            iif = v.interface_name(request.input_interface, "input_interface") if request.input_interface else None
            if iif is not None and source is None:
                raise InvalidRequest("input_interface needs source (as `ip route get ... from SRC iif DEV`)")
            return lambda: wire.route_lookup(self._checks.lookup_route(where, destination, source, iif))

        return await self._answer(context, prepare)

    async def GetServiceNat(
        self, request: pb.GetServiceNatRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetServiceNatResponse:
        """kube-proxy's NAT for one service port."""

        def prepare() -> Callable[[], pb.GetServiceNatResponse]:
            vip = v.ip_literal(request.vip, "vip")
            port = v.port(request.port, "port")
            protocol = _protocol(request.protocol, "protocol", wire.PROTOCOL_NAMES)
            if request.entry == pb.ENTRY_UNSPECIFIED:
                return lambda: pb.GetServiceNatResponse(service=wire.service_nat(self._checks.service_nat(vip, port, protocol)))
            if request.entry not in wire.ENTRY_NAMES:
                raise InvalidRequest(f"entry must be one of {', '.join(pb.Entry.Name(k) for k in wire.ENTRY_NAMES)}")
            entry = wire.ENTRY_NAMES[request.entry]
            return lambda: pb.GetServiceNatResponse(service=wire.service_nat(self._checks.entry_nat(entry, vip, port, protocol)))

        return await self._answer(context, prepare)

    async def ListServiceNat(
        self, request: pb.ListServiceNatRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListServiceNatResponse:
        """Every programmed service port."""
        checks = self._checks
        return await self._answer(
            context,
            lambda: lambda: pb.ListServiceNatResponse(services=[wire.service_nat(s) for s in checks.list_service_nat()]),
            probe=True,  # a dump of every service: slow work, kept off the quick-read pool
        )

    async def QueryConntrack(
        self, request: pb.QueryConntrackRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.QueryConntrackResponse:
        """Matching conntrack entries, bounded."""

        def prepare() -> Callable[[], pb.QueryConntrackResponse]:
            protocol = None
            if request.protocol != pb.PROTOCOL_UNSPECIFIED:
                protocol = _protocol(request.protocol, "protocol", wire.PROTOCOL_NAMES).lower()
            flt = ConntrackFilter(
                protocol=protocol,
                orig_src=v.optional_ip(request.orig_src, "orig_src"),
                orig_dst=v.optional_ip(request.orig_dst, "orig_dst"),
                orig_sport=v.optional_port(request.orig_sport, "orig_sport"),
                orig_dport=v.optional_port(request.orig_dport, "orig_dport"),
                reply_src=v.optional_ip(request.reply_src, "reply_src"),
                reply_dst=v.optional_ip(request.reply_dst, "reply_dst"),
                reply_sport=v.optional_port(request.reply_sport, "reply_sport"),
                reply_dport=v.optional_port(request.reply_dport, "reply_dport"),
            )
            limit = v.conntrack_limit(request.limit)
            return lambda: wire.conntrack_query(self._checks.query_conntrack(flt, limit))

        return await self._answer(context, prepare)

    async def GetConntrackStats(
        self, request: pb.GetConntrackStatsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetConntrackStatsResponse:
        """The node's conntrack statistics."""
        checks = self._checks
        return await self._answer(
            context, lambda: lambda: pb.GetConntrackStatsResponse(stats=wire.conntrack_stats(checks.conntrack_stats()))
        )

    async def GetFilterState(
        self, request: pb.GetFilterStateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetFilterStateResponse:
        """The node's forwarding filter for one flow."""

        def prepare() -> Callable[[], pb.GetFilterStateResponse]:
            src = v.ip_literal(request.src, "src")
            dst = v.ip_literal(request.dst, "dst")
            v.same_family(src, dst, "src and dst")
            protocol = _protocol(request.protocol, "protocol", wire.PROTOCOL_NAMES)
            dport = v.optional_port(request.dport, "dport")
            interfaces = v.interface_names(list(request.interfaces), "interfaces")
            return lambda: wire.filter_state(self._checks.filter_state(src, dst, protocol, dport, interfaces))

        return await self._answer(context, prepare)

    async def GetEgressNat(
        self, request: pb.GetEgressNatRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetEgressNatResponse:
        """Would the node masquerade a pod's packet to an outside address."""

        def prepare() -> Callable[[], pb.GetEgressNatResponse]:
            pod_ip = v.ip_literal(request.pod_ip, "pod_ip")
            destination = v.ip_literal(request.destination, "destination")
            v.same_family(pod_ip, destination, "pod_ip and destination")
            protocol = _protocol(request.protocol, "protocol", wire.PROTOCOL_NAMES)
            port = v.optional_port(request.port, "port")
            return lambda: wire.egress_nat(self._checks.egress_nat(pod_ip, destination, protocol, port))

        return await self._answer(context, prepare)

    async def ListSockets(
        self, request: pb.ListSocketsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListSocketsResponse:
        """Listening sockets in a namespace."""

        def prepare() -> Callable[[], pb.ListSocketsResponse]:
            where = _target(request.pod_ip, request.netns_name)
            port = v.optional_port(request.port, "port")
            protocol = None
            if request.protocol != pb.PROTOCOL_UNSPECIFIED:
                protocol = _protocol(request.protocol, "protocol", wire.SOCKET_PROTOCOL_NAMES)

            def work() -> pb.ListSocketsResponse:
                found = self._checks.list_sockets(where, port, protocol)
                return pb.ListSocketsResponse(sockets=[wire.listening_socket(s) for s in found])

            return work

        return await self._answer(context, prepare)

    async def ProbeTcp(self, request: pb.ProbeTcpRequest, context: grpc.aio.ServicerContext[Any, Any]) -> pb.ProbeTcpResponse:
        """One TCP connect."""

        def prepare() -> Callable[[], pb.ProbeTcpResponse]:
            where = _target(request.pod_ip, request.netns_name)
            target = v.ip_literal(request.target_ip, "target_ip")
            port = v.port(request.port, "port")
            timeout = v.timeout_seconds(request.timeout_ms)
            source_port = v.optional_marked_port(request.source_port, "source_port")
            return _fits_deadline(
                context, timeout, lambda: wire.tcp_probe(self._checks.probe_tcp(where, target, port, timeout, source_port))
            )

        return await self._answer(context, prepare, probe=True)

    async def ProbeUdp(self, request: pb.ProbeUdpRequest, context: grpc.aio.ServicerContext[Any, Any]) -> pb.ProbeUdpResponse:
        """One UDP datagram and a wait for a reply."""

        def prepare() -> Callable[[], pb.ProbeUdpResponse]:
            where = _target(request.pod_ip, request.netns_name)
            target = v.ip_literal(request.target_ip, "target_ip")
            port = v.port(request.port, "port")
            timeout = v.timeout_seconds(request.timeout_ms)
            payload = v.udp_payload(request.payload)
            source_port = v.optional_marked_port(request.source_port, "source_port")
            size = v.datagram_size(request.datagram_size)

            def work() -> pb.ProbeUdpResponse:
                return wire.udp_probe(self._checks.probe_udp(where, target, port, timeout, payload, source_port, size))

            return _fits_deadline(context, timeout, work)

        return await self._answer(context, prepare, probe=True)

    async def ProbeDns(self, request: pb.ProbeDnsRequest, context: grpc.aio.ServicerContext[Any, Any]) -> pb.ProbeDnsResponse:
        """One DNS resolution."""

        def prepare() -> Callable[[], pb.ProbeDnsResponse]:
            where = _target(request.pod_ip, request.netns_name)
            name = v.dns_name(request.name)
            kind = v.record_type(request.record_type)
            server = v.optional_ip(request.server, "server")
            timeout = v.timeout_seconds(request.timeout_ms)
            return _fits_deadline(
                context, timeout, lambda: wire.dns_probe(self._checks.probe_dns(where, name, kind, server, timeout))
            )

        return await self._answer(context, prepare, probe=True)

    async def CapturePackets(
        self,
        request_iterator: AsyncIterator[pb.CapturePacketsRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[pb.CapturePacketsResponse]:
        """A bounded capture set for a marked probe (`nodeagent.capture_rpc`)."""
        async for response in self._captures.serve(request_iterator, context):
            yield response


def request_id_from(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str:
    """The caller's `x-request-id` when it is a sane token, else a fresh one."""
    for key, value in metadata or ():
        if key == REQUEST_ID_HEADER and isinstance(value, str) and _REQUEST_ID.fullmatch(value):
            return value
    return uuid.uuid4().hex


class RequestIdInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Gives every unary call a request id (the caller's `x-request-id` or a new one), echoes it in the
    initial metadata, logs the method, status code and duration, and records them in the metrics."""

    def __init__(self, metrics: AgentMetrics | None = None) -> None:
        self.metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """Wrap unary-unary handlers and the agent's own streams; others (health Watch, reflection) pass through."""
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is not None and handler.stream_stream is not None and method.startswith(f"/{SERVICE_NAME}/"):
            return logged_stream(handler, method, request_id_from(handler_call_details.invocation_metadata), self.metrics)
        if handler is None or handler.unary_unary is None:
            return handler
        request_id = request_id_from(handler_call_details.invocation_metadata)
        inner = handler.unary_unary
        parse = handler.request_deserializer

        async def logged(raw: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            token = REQUEST_ID.set(request_id)
            start = time.monotonic()
            cancelled = False
            try:
                await context.send_initial_metadata(((REQUEST_ID_HEADER, request_id),))
                request = _decoded(raw, parse, method)
                if request is None:
                    await context.abort(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"the request to {method.rsplit('/', 1)[-1]} is not a valid protobuf message of its type",
                    )
                return await inner(request, cast(grpc.ServicerContext, context))
            except asyncio.CancelledError:
                cancelled = True
                raise
            finally:
                code = context.code() or (cancelled_code(context) if cancelled else grpc.StatusCode.OK)
                name = code.name if isinstance(code, grpc.StatusCode) else str(code)
                if self.metrics is not None:
                    self.metrics.rpc_finished(method.rsplit("/", 1)[-1], time.monotonic() - start, name)
                log.info(
                    "%s %s",
                    method,
                    name,
                    extra={"rpc": method, "code": name, "duration_ms": round((time.monotonic() - start) * 1000, 1)},
                )
                REQUEST_ID.reset(token)

        # The request arrives as bytes and is decoded inside the handler, so a malformed message
        # answers INVALID_ARGUMENT with a reason instead of gRPC's bare UNKNOWN/INTERNAL.
        return grpc.unary_unary_rpc_method_handler(
            logged,
            request_deserializer=None,
            response_serializer=handler.response_serializer,
        )


def _decoded(raw: Any, parse: Callable[[bytes], Any] | None, method: str) -> Any:
    """The request message decoded from `raw` bytes, or None when they are not a valid message."""
    if parse is None or not isinstance(raw, bytes | bytearray | memoryview):
        return raw
    try:
        return parse(bytes(raw))
    except DecodeError:
        log.info("malformed request to %s (%d bytes)", method, len(raw))
        return None


@dataclass(frozen=True)
class AgentServer:
    """A built (not yet started) server with the parts its lifecycle needs."""

    server: grpc.aio.Server
    port: int
    health: Any  # grpc_health.v1.health.aio.HealthServicer (untyped in grpc-stubs)
    runner: CheckRunner
    reads: CheckRunner | None = None
    health_server: grpc.aio.Server | None = None
    health_port: int | None = None
    host_netns: str | None = None
    watch: list[asyncio.Task[None]] = dataclasses.field(default_factory=list)

    async def start(self) -> None:
        """Start serving, report SERVING, and keep the health status honest from then on (`can_serve`)."""
        await self.server.start()
        if self.health_server is not None:
            await self.health_server.start()
        await self._report(True)
        self.watch.append(asyncio.ensure_future(self._watch()))

    def can_serve(self) -> tuple[bool, str]:
        """Whether the agent can answer at all, and why not: the node's namespace (--host-netns) is
        gone, or the quick-read pool is hung in the kernel. Busy is not "cannot serve": a full probe
        pool refuses more probes, and reads and health still answer."""
        if self.host_netns is not None and not (NETNS_RUN_DIR / self.host_netns).exists():
            return False, f"the node's namespace {self.host_netns} is gone"
        reads = self.reads or self.runner
        if reads.wedged():
            return False, f"all {reads.max_workers} {reads.name} threads have been stuck in checks"
        return True, ""

    async def _report(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        await self.health.set("", status)
        await self.health.set(SERVICE_NAME, status)

    async def _watch(self) -> None:
        serving = True
        while True:
            await asyncio.sleep(HEALTH_WATCH_INTERVAL_S)
            now, why = self.can_serve()
            if now != serving:
                log.warning("health: %s", "serving again" if now else f"NOT_SERVING: {why}")
                await self._report(now)
                serving = now

    async def stop(self, grace: float) -> None:
        """Report NOT_SERVING, let in-flight calls finish for up to `grace` seconds, then stop."""
        for task in self.watch:
            task.cancel()
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        if self.health_server is not None:
            await self.health_server.stop(0)
        self.runner.shutdown()
        if self.reads is not None:
            self.reads.shutdown()


async def build_server(
    settings: AgentSettings, checks: NodeChecks | None = None, metrics: AgentMetrics | None = None
) -> AgentServer:
    """Build the server on `settings.listen` with mTLS (or plain TCP with --insecure) and bind it."""
    runner = CheckRunner(settings.max_workers, settings.check_timeout_seconds, name="probe")
    reads = CheckRunner(settings.read_workers, settings.check_timeout_seconds, name="read")
    # Admission is per pool (CheckRunner.max_in_flight), not gRPC's server-wide maximum_concurrent_rpcs:
    # that one would also refuse health checks and quick reads once probes fill it.
    server = grpc.aio.server(
        interceptors=[RequestIdInterceptor(metrics)],
        options=[("grpc.so_reuseport", 0), ("grpc.max_concurrent_streams", MAX_STREAMS_PER_CONNECTION)],
    )
    pb_grpc.add_NodeAgentServiceServicer_to_server(
        NodeAgentServicer(checks or KernelChecks(settings.node, settings.host_netns, settings.bpffs), runner, reads), server
    )
    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    if settings.insecure:
        log.warning("serving WITHOUT TLS on %s (--insecure): any client can connect; use only for development", settings.listen)
        port = server.add_insecure_port(settings.listen)
    else:
        if settings.tls_cert is None or settings.tls_key is None or settings.tls_client_ca is None:
            raise ServerConfigError("mutual TLS needs --tls-cert, --tls-key and --tls-client-ca (or --insecure for development)")
        material = load_server_tls(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
        port = server.add_secure_port(settings.listen, server_credentials(material))
    if port == 0:
        raise ServerConfigError(f"cannot listen on {settings.listen}; check the address and that the port is free")
    agent = AgentServer(
        server=server, port=port, health=health_servicer, runner=runner, reads=reads, host_netns=settings.host_netns
    )
    if settings.health_port is not None:
        # Health only, in plaintext: the kubelet's gRPC probe cannot present a client certificate.
        # The same servicer object answers, so this port reports exactly the main server's status.
        health_server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, health_server)
        bound = health_server.add_insecure_port(f"{settings.ops_host}:{settings.health_port}")
        if bound == 0:
            raise ServerConfigError(f"cannot listen on health port {settings.health_port}; check that it is free")
        agent = dataclasses.replace(agent, health_server=health_server, health_port=bound)
    return agent


async def create_server(settings: AgentSettings, checks: NodeChecks | None = None) -> tuple[grpc.aio.Server, int]:
    """Build and bind the server (port 0 picks a free port); the caller starts it."""
    agent = await build_server(settings, checks)
    await agent.health.set("", health_pb2.HealthCheckResponse.SERVING)
    await agent.health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
    return agent.server, agent.port


def write_port_file(path: Path, port: int) -> None:
    """Write `port` to `path` atomically (a reader sees the whole number or no file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{port}\n", encoding="ascii")
    os.replace(tmp, path)


def start_metrics_server(settings: AgentSettings, metrics: AgentMetrics) -> int:
    """Serve `/metrics` on `settings.metrics_port` from a daemon thread; return the bound port."""
    server, _thread = start_http_server(settings.metrics_port or 0, addr=settings.ops_host, registry=metrics.registry)
    return int(server.server_address[1])


async def serve(settings: AgentSettings, checks: NodeChecks | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then drain: NOT_SERVING, finish in-flight calls, stop."""
    node_checks = checks or KernelChecks(settings.node, settings.host_netns, settings.bpffs)
    metrics = None
    if settings.metrics_port is not None:
        metrics = AgentMetrics(conntrack_stats=node_checks.conntrack_stats)
        metrics_port = start_metrics_server(settings, metrics)
        if settings.metrics_port_file is not None:
            write_port_file(settings.metrics_port_file, metrics_port)
        log.info("metrics on %s:%d/metrics", settings.ops_host, metrics_port)
    agent = await build_server(settings, node_checks, metrics)
    await agent.start()
    if agent.health_port is not None:
        log.info("plaintext health (grpc.health.v1 only) on %s:%d", settings.ops_host, agent.health_port)
    if settings.port_file is not None:
        write_port_file(settings.port_file, agent.port)
    log.info(
        "node agent for %s listening on port %d (%s)",
        settings.node or "this node",
        agent.port,
        "plain TCP" if settings.insecure else "mutual TLS",
        extra={"port": agent.port},
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("stopping: draining in-flight calls for up to %.1f s", settings.grace_seconds)
    await agent.stop(settings.grace_seconds)
    log.info("stopped")
