"""`bot.fleet.Fleet` over real gRPC servers on 127.0.0.1: the overall deadline of a fan-out, and
`retarget` when agents move (channels to moved or removed agents closed with a grace for calls in
flight, the others kept)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from grpc import aio

from bot.fleet.client import CallFailure, Fleet, FleetCall
from bot.settings import AgentSettings
from kubereach.agent.v1 import agent_pb2 as pb
from kubereach.agent.v1 import agent_pb2_grpc as pb_grpc


class NamedAgent(pb_grpc.NodeAgentServiceServicer):
    """Answers GetNodeInfo with its own name; while `hold` is set, answers only once it is cleared."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.hold: asyncio.Event | None = None
        self.started = asyncio.Event()

    async def GetNodeInfo(self, request: pb.GetNodeInfoRequest, context: object) -> pb.GetNodeInfoResponse:
        self.started.set()
        if self.hold is not None:
            await self.hold.wait()
        return pb.GetNodeInfoResponse(node_name=self.name)


@asynccontextmanager
async def agents(*names: str) -> AsyncIterator[dict[str, tuple[NamedAgent, str]]]:
    """One real gRPC server per name on 127.0.0.1 (port from the kernel): name → (servicer, address)."""
    servers: list[aio.Server] = []
    found: dict[str, tuple[NamedAgent, str]] = {}
    try:
        for name in names:
            server = aio.server()
            servicer = NamedAgent(name)
            pb_grpc.add_NodeAgentServiceServicer_to_server(servicer, server)
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            servers.append(server)
            found[name] = (servicer, f"127.0.0.1:{port}")
        yield found
    finally:
        for servicer, _ in found.values():
            if servicer.hold is not None:
                servicer.hold.set()
        for server in servers:
            await server.stop(None)


def settings(call_timeout_s: float = 30.0, overall_timeout_s: float = 30.0) -> AgentSettings:
    return AgentSettings(discovery="static", insecure=True, call_timeout_s=call_timeout_s, overall_timeout_s=overall_timeout_s)


def info(node: str) -> FleetCall:
    return FleetCall(node, "GetNodeInfo", pb.GetNodeInfoRequest())


def test_a_call_still_running_at_the_overall_deadline_comes_back_timed_out_and_the_others_answer() -> None:
    async def scenario() -> None:
        async with agents("quick", "hung") as found:
            found["hung"][0].hold = asyncio.Event()  # answers only after the test ends
            addresses = {"node-1": found["quick"][1], "node-2": found["hung"][1]}
            # The per-call deadline (30 s) is far away: only the fan-out's overall deadline can end it.
            fleet = Fleet(addresses, settings(overall_timeout_s=0.5))
            try:
                quick, hung = await fleet.fan_out([info("node-1"), info("node-2")])
            finally:
                await fleet.close()
            assert quick.ok and quick.payload.node_name == "quick"
            assert found["hung"][0].started.is_set(), "the hung agent was called"
            assert not hung.ok and hung.error_kind is CallFailure.TIMED_OUT
            assert hung.node == "node-2" and "within 0.5 s" in (hung.error or "")

    asyncio.run(scenario())


def test_the_overall_deadline_comes_from_the_settings_when_the_caller_gives_none() -> None:
    async def scenario() -> None:
        async with agents("hung") as found:
            found["hung"][0].hold = asyncio.Event()
            fleet = Fleet({"node-1": found["hung"][1]}, settings(overall_timeout_s=0.3))
            try:
                (outcome,) = await fleet.fan_out([info("node-1")])
            finally:
                await fleet.close()
            assert outcome.error_kind is CallFailure.TIMED_OUT and "within 0.3 s" in (outcome.error or "")

    asyncio.run(scenario())


def test_retarget_follows_a_moved_agent_keeps_the_unmoved_channel_and_forgets_a_removed_node() -> None:
    async def scenario() -> None:
        async with agents("old-home", "new-home", "steady") as found:
            fleet = Fleet({"node-1": found["old-home"][1], "node-2": found["steady"][1]}, settings())
            try:
                first = await fleet.fan_out([info("node-1"), info("node-2")])
                assert [o.payload.node_name for o in first] == ["old-home", "steady"]
                steady_channel = fleet._channels["node-2"]

                fleet.retarget({"node-1": found["new-home"][1], "node-2": found["steady"][1]})
                moved = await fleet.fan_out([info("node-1"), info("node-2")])
                assert [o.payload.node_name for o in moved] == ["new-home", "steady"]
                assert fleet._channels["node-2"] is steady_channel, "an agent that did not move keeps its channel"

                fleet.retarget({"node-1": found["new-home"][1]})
                (gone,) = await fleet.fan_out([info("node-2")])
                assert not gone.ok and gone.error_kind is CallFailure.UNREACHABLE
                assert "no agent is known for node 'node-2'" in (gone.error or "")
            finally:
                await fleet.close()

    asyncio.run(scenario())


def test_a_call_in_flight_on_a_moved_agents_channel_may_finish_within_the_grace() -> None:
    async def scenario() -> None:
        async with agents("old-home", "new-home") as found:
            old = found["old-home"][0]
            old.hold = asyncio.Event()
            fleet = Fleet({"node-1": found["old-home"][1]}, settings())
            try:
                in_flight = asyncio.ensure_future(fleet.call("node-1", "GetNodeInfo", pb.GetNodeInfoRequest()))
                await old.started.wait()
                fleet.retarget({"node-1": found["new-home"][1]}, grace_s=30.0)
                old.hold.set()  # the old agent answers after its channel was told to close
                finished = await in_flight
                assert finished.ok and finished.payload.node_name == "old-home"
                after = await fleet.call("node-1", "GetNodeInfo", pb.GetNodeInfoRequest())
                assert after.ok and after.payload.node_name == "new-home"
            finally:
                await fleet.close()

    asyncio.run(scenario())
