"""Where the Slack app's work runs after the ack, so an ack never waits for anyone's investigation."""

from __future__ import annotations

import concurrent.futures
import itertools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

QUICK_WORKERS = 4
"""Threads serving the quick requests (help, search, resolve, evidence) after their ack."""


class WorkPools:
    """Where requests run after their ack, so an ack never waits for anyone's work.

    Quick requests (help, search, resolve, evidence, routing) run on a small pool of their own;
    investigations on a bounded pool (`BotSettings.slack_investigation_workers`), and beyond it they
    wait in its queue — `reserve` says how many are ahead so the thread can be told.
    """

    def __init__(self, investigation_workers: int = 8, quick_workers: int = QUICK_WORKERS) -> None:
        """Start no threads yet (the executors start them on demand)."""
        self.size = investigation_workers
        self.quick = ThreadPoolExecutor(max_workers=quick_workers, thread_name_prefix="kubereach-requests")
        self.investigations = ThreadPoolExecutor(max_workers=investigation_workers, thread_name_prefix="kubereach-investigate")
        self._lock = threading.Lock()
        self._taken = 0
        self._waiting: dict[int, Callable[[], None]] = {}
        self._tokens = itertools.count()

    def reserve(self) -> int:
        """Take a place for one investigation; how many must finish before it can start (0 = starts now)."""
        with self._lock:
            ahead = max(0, self._taken - self.size + 1)
            self._taken += 1
            return ahead

    def run_reserved(
        self, job: Callable[[], object], on_dropped: Callable[[], None] | None = None
    ) -> concurrent.futures.Future[object]:
        """Run `job` on the investigation pool, in the place `reserve` took; `on_dropped` is called
        instead if the process stops before the job started (see `drop_waiting`)."""
        token = next(self._tokens)
        if on_dropped is not None:
            with self._lock:
                self._waiting[token] = on_dropped

        def run() -> object:
            with self._lock:
                self._waiting.pop(token, None)
            try:
                return job()
            finally:
                with self._lock:
                    self._taken -= 1

        return self.investigations.submit(run)

    def drop_waiting(self) -> int:
        """Stop: jobs that have not started will not, and each one's `on_dropped` is called; returns how many."""
        self.investigations.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            dropped = list(self._waiting.values())
            self._waiting.clear()
        for tell in dropped:
            tell()
        return len(dropped)

    def close(self) -> None:
        """Stop taking work; what waits in the queues is dropped (shutdown drains first, see `app.drain`)."""
        self.quick.shutdown(wait=False, cancel_futures=True)
        self.investigations.shutdown(wait=False, cancel_futures=True)
