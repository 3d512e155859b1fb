"""Small shared pieces of the agent benchmarks: namespaces with the `kb-` prefix, timing, reporting."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

T = TypeVar("T")


@contextmanager
def bench_netns(purpose: str) -> Iterator[str]:
    """A throwaway namespace `kb-PURPOSE-PID-RAND`, deleted in finally."""
    name = f"kb-{purpose}-{os.getpid()}-{uuid.uuid4().hex[:4]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    """Wall time of one call and its result."""
    start = time.perf_counter()
    result = fn()
    return (time.perf_counter() - start, result)


def median_time(fn: Callable[[], object], runs: int) -> float:
    """Median wall time over `runs` calls."""
    return statistics.median(timed(fn)[0] for _ in range(runs))


def run_tool(argv: list[str], timeout: float = 120.0) -> None:
    """Run a reference tool, its output read fully (as a caller would), failing loudly."""
    subprocess.run(argv, capture_output=True, check=True, timeout=timeout)


def report(label: str, ours: float, reference: float, reference_name: str, target: float | None = None) -> str:
    """One result line: our time, the reference tool's, their ratio (and the target, if any)."""
    ratio = ours / reference if reference else float("inf")
    goal = ""
    if target is not None:
        goal = f"  target <= {target:.1f}x: {'MET' if ratio <= target else 'MISSED'}"
    line = (
        f"{label:<58} kubereach {ours * 1000:9.1f} ms | {reference_name} {reference * 1000:9.1f} ms | ratio {ratio:6.2f}x{goal}"
    )
    print(line, flush=True)
    return line
