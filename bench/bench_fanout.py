"""Fan-out to 1,000 agents, 2% of which never answer: p50/p99 of a whole fan-out, and the deadline.

The 980 answering agents are real gRPC servers' `NodeAgentService` (in this process, on 127.0.0.1,
several agents per server port); the 20 silent ones are TCP listeners that accept and never speak, as
a hung agent does. Each round calls GetNodeInfo on every node through `bot.fleet.Fleet` with its
per-call and overall deadlines. Reference, measured in the same run: the same calls one after another
(a naive loop with the same per-call deadline).

`--processes N` (root) runs the round over N real agent processes instead (`lab.swarm`: each a
`python -m nodeagent` with its own mTLS identity and port, several to a throwaway namespace), with
`--kill-share` of them SIGKILLed during every round (stopped just before the round, killed once the
round's first answer is in, so that each dies with its call in flight) and started again between
rounds; the in-process fan-out to as many agents (the same share silent) is measured in
the same run as the reference.

    .venv/bin/python bench/bench_fanout.py [--agents 1000] [--silent-share 0.02] [--rounds 15]
    sudo .venv/bin/python bench/bench_fanout.py --processes 100 [--kill-share 0.02] [--rounds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import statistics
import time

from grpc import aio

from bot.fleet.client import AgentOutcome, CallFailure, Fleet, FleetCall
from bot.settings import AgentSettings, AgentTls
from kubereach.agent.v1 import agent_pb2 as pb
from kubereach.agent.v1 import agent_pb2_grpc as pb_grpc
from lab.swarm import Swarm, agent_swarm


class CannedAgent(pb_grpc.NodeAgentServiceServicer):
    """Answers GetNodeInfo from memory (the fan-out is what is measured, not the kernel)."""

    async def GetNodeInfo(self, request: pb.GetNodeInfoRequest, context: object) -> pb.GetNodeInfoResponse:
        return pb.GetNodeInfoResponse(
            node_name="bench", kernel_release="bench", ip_forward=True, conntrack=pb.ConntrackStats(count=10, max=262144)
        )


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def in_process(args: argparse.Namespace, agents: int, silent_share: float) -> tuple[list[float], int, float]:
    """Rounds over in-process agents: (round durations ms, silent agents, sequential reference ms)."""
    servers = []
    ports = []
    for _ in range(args.servers):
        server = aio.server()
        pb_grpc.add_NodeAgentServiceServicer_to_server(CannedAgent(), server)
        ports.append(server.add_insecure_port("127.0.0.1:0"))
        await server.start()
        servers.append(server)
    silent = []
    for _ in range(4):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(1024)
        silent.append(s)
    n_silent = round(agents * silent_share)
    addresses = {}
    for i in range(agents):
        if i < n_silent:
            addresses[f"node-{i}"] = f"127.0.0.1:{silent[i % len(silent)].getsockname()[1]}"
        else:
            addresses[f"node-{i}"] = f"127.0.0.1:{ports[i % len(ports)]}"
    settings = AgentSettings(
        discovery="static",
        insecure=True,
        call_timeout_s=args.call_timeout,
        overall_timeout_s=args.overall_timeout,
        concurrency=args.concurrency,
    )
    fleet = Fleet(addresses, settings)
    calls = [FleetCall(node, "GetNodeInfo", pb.GetNodeInfoRequest()) for node in addresses]
    await fleet.fan_out(calls)  # warm: channels connect
    durations, answered, unreachable = [], [], []
    for _ in range(args.rounds):
        t0 = time.monotonic()
        outcomes = await fleet.fan_out(calls)
        durations.append((time.monotonic() - t0) * 1000)
        answered.append(sum(o.ok for o in outcomes))
        unreachable.append(sum(o.error_kind in ("unreachable", "timed_out") for o in outcomes))
    t0 = time.monotonic()
    for c in calls:  # the naive loop: one agent after another, each with the same per-call deadline
        await fleet.call(c.node, c.method, c.request)
    sequential = (time.monotonic() - t0) * 1000
    await fleet.close()
    for server in servers:
        await server.stop(None)
    for s in silent:
        s.close()
    print(f"  answered per round {min(answered)}..{max(answered)}, unreachable per round {min(unreachable)}..{max(unreachable)}")
    return durations, n_silent, sequential


def summary(label: str, durations: list[float]) -> str:
    return (
        f"{label:<34} p50 {statistics.median(durations):8.1f} ms  p99 {pct(durations, 99):8.1f} ms  max {max(durations):8.1f} ms"
    )


def deadline_line(args: argparse.Namespace, durations: list[float]) -> str:
    holds = max(durations) <= args.overall_timeout * 1000 + 250
    return (
        f"  overall deadline {'holds' if holds else 'EXCEEDED'}: slowest round {max(durations):.0f} ms vs"
        f" {args.overall_timeout * 1000:.0f} ms (+250 ms scheduling slack)"
    )


async def main(args: argparse.Namespace) -> None:
    durations, n_silent, sequential = await in_process(args, args.agents, args.silent_share)
    print(
        f"fan-out to {args.agents} agents ({n_silent} silent), per-call deadline {args.call_timeout}s, overall deadline {args.overall_timeout}s, {args.rounds} rounds"
    )
    print("  " + summary("whole fan-out    kubereach", durations))
    print(deadline_line(args, durations))
    print(
        f"  reference: the same {args.agents} calls one after another      {sequential:8.1f} ms  ({sequential / statistics.median(durations):.1f}x the fan-out)"
    )


class FirstAnswer:
    """Fleet metrics sink marking the moment a round's first call has finished (the round is under way)."""

    def __init__(self) -> None:
        self.seen = asyncio.Event()

    def agent_call_finished(self, outcome: AgentOutcome) -> None:
        self.seen.set()


async def process_rounds(args: argparse.Namespace, swarm: Swarm) -> tuple[list[float], list[str]]:
    """Rounds over real agent processes, `--kill-share` SIGKILLed during each: (durations ms, problems)."""
    tls = AgentTls(ca=swarm.bot.ca, cert=swarm.bot.cert, key=swarm.bot.key)
    settings = AgentSettings(
        discovery="static",
        tls=tls,
        call_timeout_s=args.call_timeout,
        overall_timeout_s=args.overall_timeout,
        concurrency=args.concurrency,
    )
    first = FirstAnswer()
    fleet = Fleet(swarm.addresses(), settings, metrics=first)
    nodes = sorted(swarm.agents, key=lambda n: int(n.rsplit("-", 1)[1]))
    n_kill = max(1, round(len(nodes) * args.kill_share))
    rng = random.Random(args.seed)
    calls = [FleetCall(node, "GetNodeInfo", pb.GetNodeInfoRequest()) for node in nodes]
    slow_calls = [FleetCall(c.node, c.method, c.request, timeout_s=60.0) for c in calls]
    warm = await fleet.fan_out(slow_calls, overall_timeout_s=60.0)  # channels and TLS sessions up
    problems = [f"warm-up: {o.node} {o.error}" for o in warm if not o.ok]
    durations: list[float] = []
    answered_before_death = named = 0
    for _ in range(args.rounds):
        victims = rng.sample(nodes, n_kill)
        for node in victims:  # stopped first, so that the kill lands while their call is in flight
            swarm.pause(node)
        first.seen.clear()
        t0 = time.monotonic()
        round_ = asyncio.ensure_future(fleet.fan_out(calls))
        await first.seen.wait()
        for node in victims:
            swarm.kill(node)
        outcomes = await round_
        durations.append((time.monotonic() - t0) * 1000)
        for o in outcomes:
            if o.node in victims:
                if o.ok:
                    answered_before_death += 1
                elif o.node in (o.error or "") and o.error_kind in (CallFailure.UNREACHABLE, CallFailure.TIMED_OUT):
                    named += 1
                else:
                    problems.append(f"{o.node} killed, outcome not naming it: {o.error}")
            elif not o.ok:
                problems.append(f"{o.node} alive but failed: {o.error}")
        swarm.restart(victims)
        fleet.retarget(swarm.addresses())
        back = await fleet.fan_out([c for c in slow_calls if c.node in victims], overall_timeout_s=60.0)
        problems += [f"restarted {o.node} did not answer: {o.error}" for o in back if not o.ok]
    await fleet.close()
    print(
        f"  killed {n_kill} per round ({args.rounds * n_kill} in all): named unreachable {named},"
        f" answered before dying {answered_before_death}"
    )
    return durations, problems


def processes_main(args: argparse.Namespace) -> None:
    print(
        f"fan-out to {args.processes} agent processes (mTLS), {args.kill_share:.0%} SIGKILLed during each round,"
        f" per-call deadline {args.call_timeout}s, overall deadline {args.overall_timeout}s, {args.rounds} rounds",
        flush=True,
    )
    t0 = time.monotonic()
    with agent_swarm(args.prefix, args.processes, per_netns=args.per_netns) as swarm:
        print(
            f"  {args.processes} agents listening after {time.monotonic() - t0:.1f} s, resident {swarm.rss_mib():.0f} MiB in all",
            flush=True,
        )
        durations, problems = asyncio.run(process_rounds(args, swarm))
        print(f"  resident after the rounds {swarm.rss_mib():.0f} MiB in all")
    reference, n_silent, _ = asyncio.run(in_process(args, args.processes, args.kill_share))
    all_answer, _, _ = asyncio.run(in_process(args, args.processes, 0.0))
    print("  " + summary("whole fan-out, agent processes", durations))
    print(deadline_line(args, durations))
    print("  " + summary(f"in-process, {n_silent} silent (hung)", reference))
    print("  " + summary("in-process, all answering", all_answer))
    for p in problems[:10]:
        print(f"  PROBLEM: {p}")
    if not problems:
        print("  every killed agent was named (or had answered before it died); every live agent answered")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--silent-share", type=float, default=0.02)
    parser.add_argument("--servers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--call-timeout", type=float, default=1.0)
    parser.add_argument("--overall-timeout", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--processes", type=int, default=0, help="real agent processes instead (root); 0: in-process only")
    parser.add_argument("--kill-share", type=float, default=0.02)
    parser.add_argument("--per-netns", type=int, default=25)
    parser.add_argument("--prefix", default="kbfo", help="lab prefix of the swarm's namespaces and files")
    parser.add_argument("--seed", type=int, default=16)
    parsed = parser.parse_args()
    if parsed.processes:
        processes_main(parsed)
    else:
        asyncio.run(main(parsed))
