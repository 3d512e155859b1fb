"""Fan-out to 1,000 agents, 2% of which never answer: p50/p99 of a whole fan-out, and the deadline.

The 980 answering agents are real gRPC servers' `NodeAgentService` (in this process, on 127.0.0.1,
several agents per server port); the 20 silent ones are TCP listeners that accept and never speak, as
a hung agent does. Each round calls GetNodeInfo on every node through `bot.fleet.Fleet` with its
per-call and overall deadlines. Reference, measured in the same run: the same calls one after another
(a naive loop with the same per-call deadline).

    .venv/bin/python bench/bench_fanout.py [--agents 1000] [--silent-share 0.02] [--rounds 15]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import time

from grpc import aio

from bot.fleet.client import Fleet, FleetCall
from bot.settings import AgentSettings
from kubereach.agent.v1 import agent_pb2 as pb
from kubereach.agent.v1 import agent_pb2_grpc as pb_grpc


class CannedAgent(pb_grpc.NodeAgentServiceServicer):
    """Answers GetNodeInfo from memory (the fan-out is what is measured, not the kernel)."""

    async def GetNodeInfo(self, request: pb.GetNodeInfoRequest, context: object) -> pb.GetNodeInfoResponse:
        return pb.GetNodeInfoResponse(
            node_name="bench", kernel_release="bench", ip_forward=True, conntrack=pb.ConntrackStats(count=10, max=262144)
        )


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def main(args: argparse.Namespace) -> None:
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
    n_silent = round(args.agents * args.silent_share)
    addresses = {}
    for i in range(args.agents):
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
    print(
        f"fan-out to {args.agents} agents ({n_silent} silent), per-call deadline {args.call_timeout}s, overall deadline {args.overall_timeout}s, {args.rounds} rounds"
    )
    print(
        f"  whole fan-out    kubereach p50 {statistics.median(durations):8.1f} ms  p99 {pct(durations, 99):8.1f} ms  max {max(durations):8.1f} ms"
    )
    print(f"  answered per round {min(answered)}..{max(answered)}, unreachable per round {min(unreachable)}..{max(unreachable)}")
    holds = max(durations) <= args.overall_timeout * 1000 + 250
    print(
        f"  overall deadline {'holds' if holds else 'EXCEEDED'}: slowest round {max(durations):.0f} ms vs {args.overall_timeout * 1000:.0f} ms (+250 ms scheduling slack)"
    )
    print(
        f"  reference: the same {len(calls)} calls one after another      {sequential:8.1f} ms  ({sequential / statistics.median(durations):.1f}x the fan-out)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--silent-share", type=float, default=0.02)
    parser.add_argument("--servers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--call-timeout", type=float, default=1.0)
    parser.add_argument("--overall-timeout", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=256)
    asyncio.run(main(parser.parse_args()))
