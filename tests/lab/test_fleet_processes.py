"""`Fleet.fan_out` over real agent processes with mTLS (`lab.swarm`: ten `python -m nodeagent`, each with
its own identity and port, in throwaway namespaces): an agent SIGKILLed during the round is named as
unreachable and the round ends without waiting for any deadline; a hung one (SIGSTOP) is named by the
round's overall deadline; every other agent answers as itself."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from bot.fleet.client import AgentOutcome, CallFailure, Fleet, FleetCall
from bot.settings import AgentSettings, AgentTls
from kubereach.agent.v1 import agent_pb2 as pb
from lab.swarm import Swarm, agent_swarm
from tests.lab.labkit import unique_prefix

pytestmark = pytest.mark.lab

AGENTS = 10


@pytest.fixture(scope="module")
def swarm() -> Iterator[Swarm]:
    with agent_swarm(unique_prefix("fp"), AGENTS, per_netns=5) as running:
        yield running


class FirstAnswer:
    """A fleet metrics sink that marks the moment the first call of a round has finished."""

    def __init__(self) -> None:
        self.seen = asyncio.Event()

    def agent_call_finished(self, outcome: AgentOutcome) -> None:
        self.seen.set()


def fleet_for(swarm: Swarm, metrics: FirstAnswer, call_timeout_s: float, overall_timeout_s: float) -> Fleet:
    tls = AgentTls(ca=swarm.bot.ca, cert=swarm.bot.cert, key=swarm.bot.key)
    settings = AgentSettings(discovery="static", tls=tls, call_timeout_s=call_timeout_s, overall_timeout_s=overall_timeout_s)
    return Fleet(swarm.addresses(), settings, metrics=metrics)


def calls(swarm: Swarm) -> list[FleetCall]:
    return [FleetCall(node, "GetNodeInfo", pb.GetNodeInfoRequest()) for node in swarm.agents]


def assert_the_others_answered_as_themselves(outcomes: list[AgentOutcome], victim: str) -> None:
    others = [o for o in outcomes if o.node != victim]
    assert len(others) == AGENTS - 1
    assert all(o.ok for o in others), [o.error for o in others if not o.ok]
    assert all(o.payload.node_name == o.node for o in others), "each mTLS identity answers for its own node"


def test_an_agent_killed_during_the_round_is_named_unreachable_and_the_round_ends_without_the_deadline(swarm: Swarm) -> None:
    victim = "swarm-3"

    async def scenario() -> list[AgentOutcome]:
        first = FirstAnswer()
        # Both deadlines far away: only noticing the death can end the victim's call.
        fleet = fleet_for(swarm, first, call_timeout_s=60.0, overall_timeout_s=60.0)
        try:
            await fleet.fan_out(calls(swarm))  # channels and TLS sessions up
            first.seen.clear()
            swarm.pause(victim)  # it cannot answer this round before it dies
            round_ = asyncio.ensure_future(fleet.fan_out(calls(swarm)))
            await first.seen.wait()  # the round is under way: another agent has answered
            swarm.kill(victim)
            return await round_
        finally:
            await fleet.close()

    try:
        outcomes = asyncio.run(scenario())
    finally:
        swarm.restart([victim])
    (dead,) = [o for o in outcomes if o.node == victim]
    assert not dead.ok
    assert dead.error_kind is CallFailure.UNREACHABLE, dead.error
    assert victim in (dead.error or "")
    assert_the_others_answered_as_themselves(outcomes, victim)


def test_a_hung_agent_process_is_named_by_the_rounds_overall_deadline(swarm: Swarm) -> None:
    victim = "swarm-7"

    async def scenario() -> list[AgentOutcome]:
        fleet = fleet_for(swarm, FirstAnswer(), call_timeout_s=60.0, overall_timeout_s=5.0)
        try:
            await fleet.fan_out(calls(swarm))
            swarm.pause(victim)
            return await fleet.fan_out(calls(swarm))
        finally:
            await fleet.close()

    try:
        outcomes = asyncio.run(scenario())
    finally:
        swarm.resume(victim)
    (hung,) = [o for o in outcomes if o.node == victim]
    assert not hung.ok and hung.error_kind is CallFailure.TIMED_OUT
    assert hung.error == f"no answer from {victim} within 5.0 s"
    assert_the_others_answered_as_themselves(outcomes, victim)
