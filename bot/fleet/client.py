"""Fan-out to the node agents over mutual-TLS gRPC.

One channel per agent, kept open; every call has a deadline; a fan-out has an overall deadline and
bounded concurrency. A node whose agent does not answer becomes an `AgentOutcome` with the error
(`unreachable`), never an exception: the playbook reasons about missing evidence.

Each agent's certificate must name its node (`kubereach-agent.<node>`): the bot checks that the
agent it reached is the agent of the node it meant, not just any certificate from the CA.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import grpc
from grpc import aio

from bot.errors import KubereachError
from bot.logs import INVESTIGATION_ID
from bot.playbook.observations import CallFailure
from bot.settings import AgentSettings
from kubereach.agent.v1 import agent_pb2 as pb
from kubereach.agent.v1 import agent_pb2_grpc

T = TypeVar("T")
_EOF: Any = aio.EOF  # type: ignore[attr-defined]  # the end-of-stream marker a streaming read returns
ARM_TIMEOUT_S = 2.0
"""How long every node gets to open its capture sockets before the probe is sent without it."""

log = logging.getLogger("kubereach.fleet")

_ERROR_KINDS = {
    grpc.StatusCode.DEADLINE_EXCEEDED: CallFailure.TIMED_OUT,
    grpc.StatusCode.UNAVAILABLE: CallFailure.UNREACHABLE,
    grpc.StatusCode.CANCELLED: CallFailure.CANCELLED,
    grpc.StatusCode.UNAUTHENTICATED: CallFailure.UNREACHABLE,
    grpc.StatusCode.PERMISSION_DENIED: CallFailure.UNREACHABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED: CallFailure.BUSY,
    grpc.StatusCode.NOT_FOUND: CallFailure.NOT_FOUND,
    grpc.StatusCode.INVALID_ARGUMENT: CallFailure.INVALID,
    grpc.StatusCode.FAILED_PRECONDITION: CallFailure.INVALID,
}


def failure_kind(code: grpc.StatusCode) -> CallFailure:
    """The kind of failure a gRPC status code means (anything unlisted: FAILED)."""
    return _ERROR_KINDS.get(code, CallFailure.FAILED)


class AgentUnknown(KubereachError):
    """No agent is known for a node."""


@dataclass(frozen=True)
class AgentOutcome:
    """One node's answer to one call: `payload` when ok, else the error and its kind."""

    node: str
    method: str
    ok: bool
    payload: Any = None
    error: str | None = None
    error_kind: CallFailure | None = None
    latency_ms: float = 0.0


@dataclass(frozen=True)
class FleetCall:
    """One call of a fan-out: node, RPC method name, request message."""

    node: str
    method: str
    request: Any
    timeout_s: float | None = None


def _credentials(settings: AgentSettings) -> grpc.ChannelCredentials | None:
    if settings.insecure or settings.tls is None:
        return None
    tls = settings.tls
    try:
        return grpc.ssl_channel_credentials(
            root_certificates=Path(tls.ca).read_bytes(),
            private_key=Path(tls.key).read_bytes(),
            certificate_chain=Path(tls.cert).read_bytes(),
        )
    except OSError as exc:
        raise KubereachError(
            f"cannot read the agent TLS files ({exc.filename}: {exc.strerror})",
            hint="check agents.tls in the config (ca, cert, key)",
        ) from exc


@dataclass(frozen=True)
class _OpenCapture:
    """An armed capture set: its bidirectional call and the read of its result, pending since it armed."""

    call: Any
    result: asyncio.Future[Any]


class CallMetrics(Protocol):
    """What the fleet reports each finished call to (`bot.metrics.BotMetrics`, passed in: the fleet
    does not import the metrics, the metrics import the fleet's outcome type)."""

    def agent_call_finished(self, outcome: AgentOutcome) -> None:
        """Count one finished agent call."""


class Fleet:
    """Channels to every known agent and the calls over them."""

    def __init__(self, addresses: Mapping[str, str], settings: AgentSettings, metrics: CallMetrics | None = None) -> None:
        self.addresses = dict(addresses)
        self.settings = settings
        self.metrics = metrics
        self._credentials = _credentials(settings)
        if self._credentials is None:
            log.warning("talking to agents over plain TCP (insecure): use mTLS outside development")
        self._channels: dict[str, aio.Channel] = {}
        self._closing: set[asyncio.Future[None]] = set()
        self._semaphore = asyncio.Semaphore(settings.concurrency)
        self._capturing = asyncio.Lock()
        """An agent holds one capture set per caller: this fleet runs one trace at a time."""

    def _stub(self, node: str) -> agent_pb2_grpc.NodeAgentServiceStub:
        address = self.addresses.get(node)
        if address is None:
            raise AgentUnknown(f"no agent is known for node {node!r}", hint="is the agent DaemonSet running on it?")
        channel = self._channels.get(node)
        if channel is None:
            options = [("grpc.ssl_target_name_override", f"kubereach-agent.{node}")]
            if self._credentials is None:
                channel = aio.insecure_channel(address)
            else:
                channel = aio.secure_channel(address, self._credentials, options=options)
            self._channels[node] = channel
        return agent_pb2_grpc.NodeAgentServiceStub(channel)

    async def call(self, node: str, method: str, request: Any, timeout_s: float | None = None) -> AgentOutcome:
        """Call one RPC on one node's agent; errors come back as a failed outcome."""
        outcome = await self._call(node, method, request, timeout_s)
        if self.metrics is not None:
            self.metrics.agent_call_finished(outcome)
        return outcome

    async def _call(self, node: str, method: str, request: Any, timeout_s: float | None) -> AgentOutcome:
        started = time.monotonic()
        try:
            stub = self._stub(node)
        except AgentUnknown as exc:
            return AgentOutcome(node, method, False, error=exc.message, error_kind=CallFailure.UNREACHABLE)
        rpc = getattr(stub, method)
        investigation = INVESTIGATION_ID.get()
        request_id = f"{investigation}.{uuid.uuid4().hex[:6]}" if investigation != "-" else uuid.uuid4().hex[:16]
        metadata = (("x-request-id", request_id),)
        try:
            async with self._semaphore:
                reply = await rpc(request, timeout=timeout_s or self.settings.call_timeout_s, metadata=metadata)
        except aio.AioRpcError as exc:
            code = exc.code()
            kind = failure_kind(code)
            detail = exc.details() or code.name
            if kind not in (CallFailure.NOT_FOUND, CallFailure.INVALID):
                detail = f"the agent on {node} {kind.words} ({code.name.lower()}: {detail})"
            return AgentOutcome(node, method, False, error=detail, error_kind=kind, latency_ms=_ms(started))
        return AgentOutcome(node, method, True, payload=reply, latency_ms=_ms(started))

    async def fan_out(self, calls: Sequence[FleetCall], overall_timeout_s: float | None = None) -> list[AgentOutcome]:
        """Run calls concurrently; calls not finished by the overall deadline come back unreachable."""
        deadline = overall_timeout_s or self.settings.overall_timeout_s
        tasks = [asyncio.ensure_future(self.call(c.node, c.method, c.request, c.timeout_s)) for c in calls]
        if not tasks:
            return []
        done, pending = await asyncio.wait(tasks, timeout=deadline)
        for task in pending:
            task.cancel()
        outcomes = []
        for c, task in zip(calls, tasks, strict=True):
            if task in done:
                outcomes.append(task.result())
            else:
                outcomes.append(
                    AgentOutcome(
                        c.node,
                        c.method,
                        False,
                        error=f"no answer from {c.node} within {deadline:.1f} s",
                        error_kind=CallFailure.TIMED_OUT,
                    )
                )
        return outcomes

    async def capture(
        self, starts: Mapping[str, Any], during: Callable[[], Awaitable[T]], timeout_s: float
    ) -> tuple[dict[str, AgentOutcome], T]:
        """Open a capture set (`CaptureStart`) on every node at once, wait until each is armed (or has
        failed, or `ARM_TIMEOUT_S` passed), run `during` (the probe), then stop every capture and
        collect the results. A node that fails or is slow comes back as a failed outcome: its points
        are not checked, and the others are read all the same."""
        async with self._capturing:
            started = time.monotonic()
            nodes = list(starts)
            streams = await asyncio.gather(*(self._arm(n, starts[n], timeout_s) for n in nodes))
            try:
                probed = await during()
            finally:
                finished = await asyncio.gather(
                    *(self._collect(n, stream, failure, started) for n, (stream, failure) in zip(nodes, streams, strict=True))
                )
        outcomes = {o.node: o for o in finished}
        if self.metrics is not None:
            for o in finished:
                self.metrics.agent_call_finished(o)
        return outcomes, probed

    async def _arm(self, node: str, start: Any, timeout_s: float) -> tuple[_OpenCapture | None, AgentOutcome | None]:
        method = "CapturePackets"
        started = time.monotonic()
        try:
            stub = self._stub(node)
        except AgentUnknown as exc:
            return None, AgentOutcome(node, method, False, error=exc.message, error_kind=CallFailure.UNREACHABLE)
        investigation = INVESTIGATION_ID.get()
        request_id = f"{investigation}.{uuid.uuid4().hex[:6]}" if investigation != "-" else uuid.uuid4().hex[:16]
        open_stream: Any = stub.CapturePackets  # a bidirectional stream: written and read, not iterated
        call = open_stream(timeout=timeout_s, metadata=(("x-request-id", request_id),))
        try:
            await call.write(pb.CapturePacketsRequest(start=start))
            first = await asyncio.wait_for(call.read(), ARM_TIMEOUT_S)
        except TimeoutError:
            call.cancel()
            return None, AgentOutcome(
                node,
                method,
                False,
                error=f"the agent on {node} did not arm its capture in time",
                error_kind=CallFailure.TIMED_OUT,
                latency_ms=_ms(started),
            )
        except aio.AioRpcError as exc:
            return None, self._failure(node, method, exc, started)
        if first is _EOF or not first.HasField("armed"):
            call.cancel()
            return None, AgentOutcome(
                node, method, False, error=f"the agent on {node} did not arm its capture", error_kind=CallFailure.FAILED
            )
        # The result is read from now on: a capture that reaches its own end (its deadline or a cap)
        # before the probe is done sends its result and closes the call, and only a read already
        # waiting receives that result once the stop below has found the call closed.
        return _OpenCapture(call, asyncio.ensure_future(call.read())), None

    async def _collect(
        self, node: str, stream: _OpenCapture | None, failure: AgentOutcome | None, started: float
    ) -> AgentOutcome:
        method = "CapturePackets"
        if failure is not None or stream is None:
            return failure or AgentOutcome(node, method, False, error="no capture was opened", error_kind=CallFailure.FAILED)
        if not stream.result.done():
            try:
                await stream.call.write(pb.CapturePacketsRequest(stop=True))
                await stream.call.done_writing()
            except (asyncio.InvalidStateError, aio.AioRpcError):
                # The capture ended on its own in the meantime. grpc then fails the write with its own
                # "Internal error from Core" (status INTERNAL, set on the call): not the agent's answer,
                # which the pending read still receives.
                pass
        try:
            reply = await stream.result
        except aio.AioRpcError as exc:
            return self._failure(node, method, exc, started)
        if reply is _EOF or not reply.HasField("result"):
            return AgentOutcome(
                node, method, False, error=f"the agent on {node} sent no capture result", error_kind=CallFailure.FAILED
            )
        return AgentOutcome(node, method, True, payload=reply.result, latency_ms=_ms(started))

    def _failure(self, node: str, method: str, exc: aio.AioRpcError, started: float) -> AgentOutcome:
        code = exc.code()
        kind = failure_kind(code)
        detail = f"the agent on {node} {kind.words} ({code.name.lower()}: {exc.details() or code.name})"
        return AgentOutcome(node, method, False, error=detail, error_kind=kind, latency_ms=_ms(started))

    def retarget(self, addresses: Mapping[str, str], grace_s: float = 5.0) -> None:
        """Follow agents that moved: channels to nodes whose address changed or that are gone are
        closed (calls in flight on them get `grace_s` to finish); the others stay open."""
        addresses = dict(addresses)
        for node, address in self.addresses.items():
            if addresses.get(node) != address and (channel := self._channels.pop(node, None)) is not None:
                closing = asyncio.ensure_future(channel.close(grace_s))
                self._closing.add(closing)
                closing.add_done_callback(self._closing.discard)
        self.addresses = addresses

    async def close(self) -> None:
        """Close every channel."""
        for channel in self._channels.values():
            await channel.close(None)
        self._channels.clear()


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 2)
