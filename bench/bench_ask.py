"""`kubereach ask` on the 3-node lab: median and p95 over repeated questions, and where the time goes.

Each question runs through the real flow (parse → resolve through the lab's API server → fan-out to
the agents over mTLS → playbook). Reference, measured in the same run on the same lab: the commands
an engineer would run by hand for one source pod and one endpoint — `ip route get`, `iptables-save -t
nat`, `conntrack -L -d VIP`, `ss -ltn` in the destination pod and one TCP connect from the source pod
— one after another.

Printed:
- per question, the warm figure (one process, its API client and agent channels kept: `serve`);
- per question, `kubereach ask --json --no-history` as a fresh process, as a user runs it;
- the per-phase breakdown: process start and imports, config and kube client, agent connections
  with their TLS handshakes, resolution, the agent and DNS look-ups, the playbook and its slowest
  steps (each step from its first ask to its decision; the steps of several sources overlap),
  rendering (terminal and JSON) and the history write (start, each step, finish, seen-before, on a
  throwaway SQLite file, as `ask` records by default);
- the load average before and after, since the machine is shared.

The fresh processes run with the bot's sources byte-compiled, as an installed kubereach has them (pip
and the images compile them): in a checkout with PYTHONDONTWRITEBYTECODE=1 every process would
otherwise compile them again (~0.1 s of CPU). `--no-compile` leaves them as they are.

    sudo .venv/bin/python bench/bench_ask.py [--rounds 5] [--prefix kb]
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from rich.console import Console

from bot.cluster.client import ClusterClient
from bot.fleet.client import Fleet, FleetCall
from bot.history.recorder import HistoryRecorder
from bot.history.views import WorkloadRef
from bot.investigation import Investigator, cli_asker
from bot.playbook.models import InvestigationResult
from bot.render.document import investigation_document
from bot.render.terminal import investigation_view
from bot.settings import BotSettings, load_settings
from kubereach.agent.v1 import agent_pb2
from lab import lifecycle
from lab.plan import LabOptions

QUESTIONS = (
    "why can't frontend reach api",
    "why can't frontend reach ledger",
    "can prometheus reach api:9090",
    "frontend -> redis",
)
EXPECTED = ("NO_FAULT_FOUND", "NETWORK_POLICY_DENIES_INGRESS")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


class TimedCluster(ClusterClient):
    """The lab's API client, timing resolution and the look-ups made outside it (DNS endpoints)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.phases: dict[str, float] = defaultdict(float)
        self._inside = threading.local()

    def resolve(self, *args: Any, **kwargs: Any) -> Any:
        self._inside.resolving = True
        t0 = time.perf_counter()
        try:
            return super().resolve(*args, **kwargs)
        finally:
            self.phases["resolve"] += (time.perf_counter() - t0) * 1000
            self._inside.resolving = False

    def list_objects(self, *args: Any, **kwargs: Any) -> Any:
        if getattr(self._inside, "resolving", False):
            return super().list_objects(*args, **kwargs)
        t0 = time.perf_counter()
        try:
            return super().list_objects(*args, **kwargs)
        finally:
            self.phases["look-ups (agents, DNS endpoints)"] += (time.perf_counter() - t0) * 1000


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


def render_ms(result: InvestigationResult) -> float:
    """Rendering one result as `ask` does (the terminal view, or the JSON document)."""
    t0 = time.perf_counter()
    Console(file=io.StringIO(), width=120).print(investigation_view(result))
    json.dumps(investigation_document(result), indent=2)
    return (time.perf_counter() - t0) * 1000


def history_ms(history: HistoryRecorder, result: InvestigationResult) -> float:
    """Recording one result as `ask` does: start, each step committed, finish, seen-before."""
    t0 = time.perf_counter()
    source = WorkloadRef("deployment", None, result.source, result.source)
    target = WorkloadRef("service", None, result.target, result.target)
    recorded = history.start(result.question, cli_asker(), source, target, result.namespaces)
    for order, step in enumerate(result.steps, 1):
        history.step(recorded, step, order)
    history.finish(recorded, result)
    history.seen_before(recorded, source, target, result.verdict)
    return (time.perf_counter() - t0) * 1000


async def connect_ms(settings: BotSettings) -> tuple[float, float]:
    """GetNodeInfo to every agent on new channels (connections and TLS handshakes), then again."""
    fleet = Fleet(dict(settings.agents.nodes), settings.agents)
    calls = [FleetCall(node, "GetNodeInfo", agent_pb2.GetNodeInfoRequest()) for node in settings.agents.nodes]
    try:
        t0 = time.perf_counter()
        first = await fleet.fan_out(calls)
        t1 = time.perf_counter()
        await fleet.fan_out(calls)
        t2 = time.perf_counter()
    finally:
        await fleet.close()
    assert all(o.ok for o in first), [o.error for o in first if not o.ok]
    return ((t1 - t0) * 1000, (t2 - t1) * 1000)


def first_question(config: Path) -> dict[str, float]:
    """A new investigator in this process (imports done): config and client, then one question."""
    t0 = time.perf_counter()
    settings = load_settings(config)
    assert settings.kubeconfig is not None
    cluster = TimedCluster.from_kubeconfig(settings.kubeconfig)
    t1 = time.perf_counter()

    async def one() -> tuple[float, float]:
        investigator = Investigator(settings, cluster=cluster)
        try:
            s = time.perf_counter()
            await investigator.investigate(QUESTIONS[0])
            return ((time.perf_counter() - s) * 1000, 0.0)
        finally:
            await investigator.aclose()

    first, _ = asyncio.run(one())
    handshakes, again = asyncio.run(connect_ms(settings))
    return {
        "config and kube client": (t1 - t0) * 1000,
        "first question of a process (new API and agent connections)": first,
        "agent connections + TLS handshakes (GetNodeInfo x3, new channels)": handshakes,
        "the same GetNodeInfo x3 on open channels": again,
    }


async def warm(config: Path, rounds: int, history: HistoryRecorder) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    settings = load_settings(config)
    assert settings.kubeconfig is not None
    cluster = TimedCluster.from_kubeconfig(settings.kubeconfig)
    investigator = Investigator(settings, cluster=cluster)
    times: dict[str, list[float]] = {q: [] for q in QUESTIONS}
    phases: dict[str, list[float]] = defaultdict(list)
    try:
        await investigator.investigate(QUESTIONS[0])  # warm: channels and client
        for _ in range(rounds):
            for q in QUESTIONS:
                cluster.phases.clear()
                t0 = time.perf_counter()
                result = await investigator.investigate(q)
                total = (time.perf_counter() - t0) * 1000
                times[q].append(total)
                assert result.verdict.code.value in EXPECTED, result.verdict
                outside = sum(cluster.phases.values())
                for name, ms in cluster.phases.items():
                    phases[name].append(ms)
                phases["playbook (agents' asks, decisions)"].append(total - outside)
                for step in result.steps:
                    phases[f"  step {step.kind or step.name}"].append(step.duration_ms)
                phases["rendering (terminal view + JSON)"].append(render_ms(result))
                phases["history write (SQLite: start, steps, finish, seen)"].append(history_ms(history, result))
    finally:
        await investigator.aclose()
    return times, phases


def child_cpu_ms() -> float:
    """CPU time (user + system) of the finished child processes so far: the cost the load does not stretch."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * 1000


def byte_compile() -> None:
    """Write the .pyc files of the bot's sources, as installing the package does."""
    root = Path(__file__).resolve().parents[1]
    for tree in ("bot", "lab", "proto/kubereach"):
        compileall.compile_dir(root / tree, quiet=1)


def cli_runs(config: Path, rounds: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """`kubereach ask --json --no-history` as fresh processes, and the process start and imports alone
    (wall time, and the processes' own CPU time)."""
    times: dict[str, list[float]] = {q: [] for q in QUESTIONS}
    start: dict[str, list[float]] = defaultdict(list)
    for _ in range(rounds):
        for label, code in (
            ("interpreter start (python -c pass)", "pass"),
            ("interpreter start + the imports of `ask`", "import bot.cli as c; c._register(); c.cli.get_command(None, 'ask')"),
        ):
            t0, cpu0 = time.perf_counter(), child_cpu_ms()
            subprocess.run([sys.executable, "-c", code], check=True)
            start[label].append((time.perf_counter() - t0) * 1000)
            start[f"{label}, CPU"].append(child_cpu_ms() - cpu0)
        for q in QUESTIONS:
            t0, cpu0 = time.perf_counter(), child_cpu_ms()
            done = subprocess.run(
                [sys.executable, "-m", "bot.cli", "--config", str(config), "ask", "--json", "--no-history", q],
                capture_output=True,
                check=False,
            )
            times[q].append((time.perf_counter() - t0) * 1000)
            start["a whole `kubereach ask --json --no-history`, CPU"].append(child_cpu_ms() - cpu0)
            verdict = json.loads(done.stdout)["verdict"]["code"]
            assert verdict in EXPECTED, (q, verdict, done.stderr[-500:])
    return times, start


def show(title: str, times: dict[str, list[float]]) -> None:
    every = [t for ts in times.values() for t in ts]
    print(title)
    for q, ts in times.items():
        print(f"  {q:34} median {statistics.median(ts):7.0f} ms  p95 {pct(ts, 95):7.0f} ms")
    print(f"  {'all questions':34} median {statistics.median(every):7.0f} ms  p95 {pct(every, 95):7.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--prefix", default="kb")
    parser.add_argument("--no-compile", action="store_true", help="do not byte-compile the sources first")
    args = parser.parse_args()
    if not args.no_compile:
        byte_compile()
    load_before = load()
    lifecycle.up(LabOptions(prefix=args.prefix, nodes=3))
    try:
        status = lifecycle.status(args.prefix)
        config = Path(status["config"])
        with tempfile.TemporaryDirectory(prefix="bench-ask-") as tmp:
            history = HistoryRecorder.from_url(f"sqlite:///{tmp}/history.db", "bench")
            times, phases = asyncio.run(warm(config, args.rounds, history))
        first = first_question(config)
        cli_times, start = cli_runs(config, args.rounds)
        manual = [manual_commands(status) for _ in range(args.rounds)]
    finally:
        lifecycle.down(args.prefix)
    print(f"load average before: {load_before}; after: {load()} (2 shared cores)")
    print("the bot's sources " + ("left as they were (--no-compile)" if args.no_compile else "byte-compiled, as installed"))
    show(f"kubereach ask on the 3-node lab, {args.rounds} rounds x {len(QUESTIONS)} questions, one process (warm)", times)
    show("kubereach ask --json --no-history, a new process per question (as a user runs it)", cli_times)
    print(
        f"  reference: 6 manual commands for one source pod and one endpoint  median {statistics.median(manual):7.0f} ms  p95 {pct(manual, 95):7.0f} ms"
    )
    print("where the time goes (median / p95 over the warm questions; the first-question figures are one run)")
    for label, ms in start.items():
        print(f"  {label:66} {statistics.median(ms):7.0f} / {pct(ms, 95):7.0f} ms")
    for label, value in first.items():
        print(f"  {label:66} {value:7.0f} ms")
    steps = {k: v for k, v in phases.items() if k.startswith("  step")}
    for label, ms in phases.items():
        if label not in steps:
            print(f"  {label:66} {statistics.median(ms):7.1f} / {pct(ms, 95):7.1f} ms")
    slowest = sorted(steps.items(), key=lambda kv: -pct(kv[1], 95))[:6]
    print("  the slowest steps (from a step's first ask to its decision):")
    for label, ms in slowest:
        print(f"  {label:66} {statistics.median(ms):7.1f} / {pct(ms, 95):7.1f} ms")


if __name__ == "__main__":
    main()
