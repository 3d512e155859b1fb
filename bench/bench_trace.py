"""The time a path trace adds to an investigation, on the 3-node lab (goal: at most 1.5 s).

The same question, about one source pod on node-3 and redis on node-2 (a path across the overlay),
asked through the real flow with and without a trace, interleaved round by round; the difference of
the medians is what the trace adds (10 probe points on two nodes, one marked SYN, there and back).
Reference, measured in the same run: the manual equivalent — one `tcpdump` per probe point (started
in its namespace, waited for until it listens), one TCP connect from the source pod from a chosen
port, then every tcpdump stopped and its count read.

    sudo .venv/bin/python bench/bench_trace.py [--rounds 5] [--prefix kt]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bot.investigation import Investigator
from bot.settings import load_settings
from lab import lifecycle
from lab.plan import LabOptions

PORT = 24680


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def trace_points(result: Any) -> list[tuple[str, str]]:
    """(netns, interface) of the request rows of the investigation's trace."""
    rows = next(e.data["rows"] for s in result.steps for e in s.evidence if e.kind == "trace")
    return [(r["netns"], r["interface"]) for r in rows if r["direction"] == "request"]


def manual_tcpdumps(points: list[tuple[str, str]], src_netns: str, target: str) -> tuple[float, int]:
    """One tcpdump per point, a marked connect, stop them all: wall time and points that saw it."""
    t0 = time.monotonic()
    dumps = []
    for netns, interface in points:
        argv = ["ip", "netns", "exec", netns, "tcpdump", "-ni", interface, "-l", "--immediate-mode", "-w", "/dev/null", "-U"]
        argv += ["-s", "128", f"tcp port {PORT} or (udp and udp[50:2] = {PORT})"]
        dumps.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    for d in dumps:  # wait until each listens: the probe must not be sent before
        assert d.stderr is not None
        while "listening on" not in d.stderr.readline():
            pass
    connect = (
        "import socket,struct;s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);"
        f"s.setsockopt(socket.SOL_SOCKET,socket.SO_LINGER,struct.pack('ii',1,0));s.bind(('0.0.0.0',{PORT}));"
        f"s.settimeout(2);s.connect(('{target}',6379));s.close()"
    )
    subprocess.run(["ip", "netns", "exec", src_netns, sys.executable, "-c", connect], check=False, capture_output=True)
    seen = 0
    for d in dumps:
        d.terminate()
        _, err = d.communicate(timeout=10)
        # "received by filter": what the kernel filter matched (tcpdump may be stopped before it read them)
        captured = re.search(r"^(\d+) packets? received by filter", err, flags=re.MULTILINE)
        if captured is not None and int(captured.group(1)) > 0:
            seen += 1
    return (time.monotonic() - t0) * 1000, seen


async def run(config: Path, question: str, rounds: int) -> tuple[list[float], list[float], Any]:
    investigator = Investigator(load_settings(config))
    plain: list[float] = []
    traced: list[float] = []
    last = None
    try:
        await investigator.investigate(question, trace=True)  # warm: channels, client, agents' capture code
        for _ in range(rounds):
            for trace, into in ((False, plain), (True, traced)):
                t0 = time.monotonic()
                result = await investigator.investigate(question, trace=trace)
                into.append((time.monotonic() - t0) * 1000)
                assert result.verdict.code.value == "NO_FAULT_FOUND", result.verdict
                if trace:
                    last = result
    finally:
        await investigator.aclose()
    return plain, traced, last


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--prefix", default="kt")
    args = parser.parse_args()
    lifecycle.up(LabOptions(prefix=args.prefix, nodes=3))
    try:
        status = lifecycle.status(args.prefix)
        src = next(p for p in status["pods"] if p["labels"].get("app") == "frontend" and p["node"] == "node-3")
        redis = next(p for p in status["pods"] if p["labels"].get("app") == "redis")
        question = f"why can't pod {src['name']} reach redis"
        plain, traced, result = asyncio.run(run(Path(status["config"]), question, args.rounds))
        points = trace_points(result)
        manual = [manual_tcpdumps(points, src["netns"], redis["ip"]) for _ in range(args.rounds)]
    finally:
        lifecycle.down(args.prefix)
    added = statistics.median(traced) - statistics.median(plain)
    step = [s.duration_ms for s in result.steps if s.name.startswith("trace")]
    print(f"path trace on the 3-node lab ({question}), {args.rounds} rounds, interleaved")
    print(f"  ask without a trace          median {statistics.median(plain):7.0f} ms  p95 {pct(plain, 95):7.0f} ms")
    print(f"  ask --trace                  median {statistics.median(traced):7.0f} ms  p95 {pct(traced, 95):7.0f} ms")
    print(f"  added by the trace           {added:7.0f} ms (goal <= 1500 ms: {'met' if added <= 1500 else 'missed'})")
    print(f"  the trace step (last run)    {step[0]:7.0f} ms for {len(points)} points")
    times = [m for m, _ in manual]
    print(
        f"  reference: {len(points)} tcpdumps + one marked connect  median {statistics.median(times):7.0f} ms"
        f"  p95 {pct(times, 95):7.0f} ms  (points that saw it: {manual[-1][1]}/{len(points)})"
    )


if __name__ == "__main__":
    main()
