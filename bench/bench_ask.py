"""`kubereach ask` on the 3-node lab: median and p95 over repeated questions.

Each question runs through the real flow (parse → resolve through the lab's API server → fan-out to
the agents over mTLS → playbook). Reference, measured in the same run on the same lab: the commands
an engineer would run by hand for one source pod and one endpoint — `ip route get`, `iptables-save -t
nat`, `conntrack -L -d VIP`, `ss -ltn` in the destination pod and one TCP connect from the source pod
— one after another.

    sudo .venv/bin/python bench/bench_ask.py [--rounds 5] [--prefix kb]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bot.investigation import Investigator
from bot.settings import load_settings
from lab import lifecycle
from lab.plan import LabOptions

QUESTIONS = (
    "why can't frontend reach api",
    "why can't frontend reach ledger",
    "can prometheus reach api:9090",
    "frontend -> redis",
)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def manual_commands(status: dict[str, object]) -> float:
    pods = status["pods"]  # type: ignore[index]
    src = next(p for p in pods if p["labels"].get("app") == "frontend")  # type: ignore[union-attr]
    dst = next(p for p in pods if p["labels"].get("app") == "api" and p["node"] != src["node"])  # type: ignore[union-attr]
    vip = next(s for s in status["services"] if s["name"] == "api")["cluster_ip"]  # type: ignore[index,union-attr]
    node_ns = f"{status['prefix']}-{src['node']}"
    dst_node_ns = f"{status['prefix']}-{dst['node']}"
    connect = f"import socket; s=socket.create_connection(('{vip}', 8080), 2); s.close()"
    commands = [
        ["ip", "-n", node_ns, "route", "get", dst["ip"]],
        ["ip", "netns", "exec", node_ns, "iptables-save", "-t", "nat"],
        ["ip", "netns", "exec", node_ns, "conntrack", "-L", "-d", vip],
        ["ip", "netns", "exec", dst_node_ns, "iptables-save", "-t", "filter"],
        ["ip", "netns", "exec", dst["netns"], "ss", "-ltn"],
        ["ip", "netns", "exec", src["netns"], sys.executable, "-c", connect],
    ]
    t0 = time.monotonic()
    for argv in commands:
        subprocess.run(argv, capture_output=True, check=False)
    return (time.monotonic() - t0) * 1000


async def run(config: Path, rounds: int) -> dict[str, list[float]]:
    investigator = Investigator(load_settings(config))
    times: dict[str, list[float]] = {q: [] for q in QUESTIONS}
    try:
        await investigator.investigate(QUESTIONS[0])  # warm: channels and client
        for _ in range(rounds):
            for q in QUESTIONS:
                t0 = time.monotonic()
                result = await investigator.investigate(q)
                times[q].append((time.monotonic() - t0) * 1000)
                assert result.verdict.code.value in ("NO_FAULT_FOUND", "NETWORK_POLICY_DENIES_INGRESS"), result.verdict
    finally:
        await investigator.aclose()
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--prefix", default="kb")
    args = parser.parse_args()
    lifecycle.up(LabOptions(prefix=args.prefix, nodes=3))
    try:
        status = lifecycle.status(args.prefix)
        times = asyncio.run(run(Path(status["config"]), args.rounds))
        manual = [manual_commands(status) for _ in range(args.rounds)]
    finally:
        lifecycle.down(args.prefix)
    every = [t for ts in times.values() for t in ts]
    print(f"kubereach ask on the 3-node lab, {args.rounds} rounds x {len(QUESTIONS)} questions")
    for q, ts in times.items():
        print(f"  {q:34} median {statistics.median(ts):7.0f} ms  p95 {pct(ts, 95):7.0f} ms")
    print(f"  all questions                      median {statistics.median(every):7.0f} ms  p95 {pct(every, 95):7.0f} ms")
    print(
        f"  reference: 6 manual commands for one source pod and one endpoint  median {statistics.median(manual):7.0f} ms  p95 {pct(manual, 95):7.0f} ms"
    )


if __name__ == "__main__":
    main()
