"""A process that records investigations the way `kubereach ask` does, for the concurrency tests.

    python -m tests.db.history_writer URL [--investigations N] [--steps N] [--threads N] [--hold FILE]

Opens the history (migrating it), closes investigations stranded by dead processes, then records
N investigations (start, each step, the verdict) from T threads at once; prints one JSON line
{"ids": [...], "closed": [...], "problem": ...}. With --hold it prints the ids after starting and
waits (without finishing) until FILE exists — a process to kill mid-investigation.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from bot.history.enums import Origin
from bot.history.recorder import Asker, HistoryRecorder
from bot.history.service import Person, WorkloadRef
from bot.playbook.models import Evidence, InvestigationResult, StepResult, StepStatus, Verdict, VerdictCode

ASKER = Asker(Person("U-writer", "writer"), Origin.CLI)
SOURCE = WorkloadRef("deployment", "shop", "frontend", "deploy/frontend in shop")
TARGET = WorkloadRef("service", "shop", "api", "svc/api in shop")


def one(history: HistoryRecorder, steps: int, hold: Path | None) -> str | None:
    started = datetime.now(UTC)
    inv = history.start("why can't frontend reach api", ASKER, SOURCE, TARGET, ("shop",))
    if hold is not None:
        print(json.dumps({"ids": [inv]}), flush=True)
        while not hold.exists():
            time.sleep(0.05)
    for order in range(1, steps + 1):
        evidence = (Evidence("probe", f"probe {order}: connected", "node-1", {"n": order}),)
        history.step(inv, StepResult(f"step {order}", StepStatus.PASS, f"step {order} passed", evidence, 1.0), order)
    verdict = Verdict(VerdictCode.NO_FAULT_FOUND, "frontend reaches api now")
    result = InvestigationResult(inv or "-", "q", "frontend", "api", verdict, (), (), 5.0, started)
    history.finish(inv, result)
    return inv


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--investigations", type=int, default=1)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--hold", type=Path)
    args = parser.parse_args(argv)
    history = HistoryRecorder.from_url(args.url)
    closed = [c.id for c in history.close_stranded()] if history.available else []
    with ThreadPoolExecutor(max_workers=args.threads) as pool:
        ids = list(pool.map(lambda _: one(history, args.steps, args.hold), range(args.investigations)))
    print(json.dumps({"ids": ids, "closed": closed, "problem": history.problem, "lost": history.lost_writes}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
