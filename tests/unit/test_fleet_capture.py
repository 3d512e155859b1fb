"""`Fleet.capture` (the bot's side of CapturePackets) against the agent's real server over mTLS.

A capture set ends on its own (its deadline, a cap) while the probe may still run: the agent then sends
the result and closes the call before the bot sends `stop`. That result is the answer; the stop that
finds the call closed must not turn it into a failure (grpc fails such a write with its own INTERNAL,
"Internal error from Core").
"""

from __future__ import annotations

import asyncio
import logging
import select
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from bot.fleet.client import Fleet
from bot.settings import AgentSettings as BotAgentSettings
from bot.settings import AgentTls
from kubereach.agent.v1 import agent_pb2 as pb
from lab.certs import generate_pki
from nodeagent.checks.capture import CaptureLimits, CaptureMatchSpec, CaptureOutcome, CaptureSession, PointRequest, PointResult
from nodeagent.server import build_server
from nodeagent.settings import AgentSettings

NODE = "node-1"
POINTS = [pb.CapturePoint(interface="eth0")]
MATCH = pb.CaptureMatch(protocol=pb.PROTOCOL_TCP, addresses=["10.244.1.5"], port=40000)


class CaptureUntilStoppedOrDeadline:
    """A NodeChecks whose capture arms at once and ends when stopped or at its own deadline."""

    def capture(
        self,
        points: Sequence[PointRequest],
        spec: CaptureMatchSpec,
        limits: CaptureLimits,
        session: CaptureSession,
        on_armed: Callable[[int], None],
    ) -> CaptureOutcome:
        on_armed(len(points))
        stopped, _, _ = select.select([session.wake_fd], [], [], limits.max_duration_s)
        return CaptureOutcome(tuple(PointResult(p) for p in points), 1.0, "stopped" if stopped else "deadline")

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"unexpected check {name}")


class CallEnded(logging.Handler):
    """Sets an event when the agent logs the end of a CapturePackets call (after its last message)."""

    def __init__(self, ended: asyncio.Event) -> None:
        super().__init__(logging.INFO)
        self.ended = ended

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("/kubereach.agent.v1.NodeAgentService/CapturePackets "):
            self.ended.set()


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[tuple[AgentSettings, BotAgentSettings]]:
    pki = generate_pki(tmp_path / "pki", [NODE])
    agent = AgentSettings(
        listen="127.0.0.1:0", tls_cert=pki.agents[NODE].cert, tls_key=pki.agents[NODE].key, tls_client_ca=pki.ca, node=NODE
    )
    bot = BotAgentSettings(discovery="static", tls=AgentTls(ca=pki.ca, cert=pki.bot.cert, key=pki.bot.key))
    yield agent, bot


def capture_with(
    settings: tuple[AgentSettings, BotAgentSettings], max_duration_ms: int, during: Callable[[Fleet, asyncio.Event], Any]
) -> Any:
    """One `Fleet.capture` on NODE, with `during(fleet, agent_call_ended)` as the probe; its outcome."""
    agent_settings, bot_settings = settings
    start = pb.CaptureStart(points=POINTS, match=MATCH, max_duration_ms=max_duration_ms)

    async def scenario() -> Any:
        ended = asyncio.Event()
        handler = CallEnded(ended)
        server_log = logging.getLogger("nodeagent.server")
        level = server_log.level
        server_log.addHandler(handler)
        server_log.setLevel(logging.INFO)
        agent = await build_server(agent_settings, CaptureUntilStoppedOrDeadline())  # type: ignore[arg-type]
        await agent.start()
        fleet = Fleet({NODE: f"127.0.0.1:{agent.port}"}, bot_settings)
        try:
            outcomes, _ = await fleet.capture({NODE: start}, lambda: during(fleet, ended), max_duration_ms / 1000 + 3.0)
            return outcomes[NODE]
        finally:
            await fleet.close()
            await agent.stop(0.5)
            server_log.removeHandler(handler)
            server_log.setLevel(level)

    return asyncio.run(scenario())


def test_a_capture_that_ends_before_the_probe_is_done_still_returns_its_result(
    settings: tuple[AgentSettings, BotAgentSettings],
) -> None:
    async def probe_outlasting_the_capture(fleet: Fleet, agent_call_ended: asyncio.Event) -> None:
        await agent_call_ended.wait()
        # One round trip on the same connection after the agent closed the capture's call: its
        # status has reached the bot before the stop is sent.
        refused = await fleet.call(NODE, "LocatePod", pb.LocatePodRequest(pod_ip="not an address"), 5.0)
        assert not refused.ok

    outcome = capture_with(settings, 100, probe_outlasting_the_capture)
    assert outcome.ok, outcome.error
    assert outcome.payload.reason == "deadline"


def test_a_capture_stopped_while_it_runs_returns_the_stopped_result(settings: tuple[AgentSettings, BotAgentSettings]) -> None:
    async def quick_probe(fleet: Fleet, agent_call_ended: asyncio.Event) -> None:
        return None

    outcome = capture_with(settings, 5000, quick_probe)
    assert outcome.ok, outcome.error
    assert outcome.payload.reason == "stopped"
