"""Request ids, logs and metrics for the agent's own streaming RPCs (CapturePackets), as
`nodeagent.server.RequestIdInterceptor` gives them to unary ones: the id echoed in the initial
metadata, one log line with the status code and duration at the end, and the RPC's metrics."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from nodeagent.logconfig import REQUEST_ID
from nodeagent.metrics import AgentMetrics

log = logging.getLogger("nodeagent.server")
REQUEST_ID_HEADER = "x-request-id"

StreamHandler = Callable[[AsyncIterator[Any], grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Any]]


def logged_stream(
    handler: grpc.RpcMethodHandler[Any, Any], method: str, request_id: str, metrics: AgentMetrics | None
) -> grpc.RpcMethodHandler[Any, Any]:
    """`handler` (a stream-stream one) wrapped with the request id, the end-of-call log line and metrics."""
    inner: StreamHandler = handler.stream_stream  # type: ignore[assignment]

    async def logged(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        token = REQUEST_ID.set(request_id)
        start = time.monotonic()
        cancelled = False
        try:
            await context.send_initial_metadata(((REQUEST_ID_HEADER, request_id),))
            async for response in inner(requests, context):
                yield response
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            code = context.code() or (cancelled_code(context) if cancelled else grpc.StatusCode.OK)
            name = code.name if isinstance(code, grpc.StatusCode) else str(code)
            if metrics is not None:
                metrics.rpc_finished(method.rsplit("/", 1)[-1], time.monotonic() - start, name)
            log.info(
                "%s %s",
                method,
                name,
                extra={"rpc": method, "code": name, "duration_ms": round((time.monotonic() - start) * 1000, 1)},
            )
            REQUEST_ID.reset(token)

    return grpc.stream_stream_rpc_method_handler(
        logged, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
    )


def cancelled_code(context: grpc.aio.ServicerContext[Any, Any]) -> grpc.StatusCode:
    """How a call grpc cancelled under its handler ended for the caller: its deadline passed
    (DEADLINE_EXCEEDED) or the caller went away (CANCELLED). The handler set no code itself, and
    logging OK for it would hide that the caller got no answer."""
    remaining = context.time_remaining()
    return grpc.StatusCode.DEADLINE_EXCEEDED if remaining is not None and remaining <= 0 else grpc.StatusCode.CANCELLED
