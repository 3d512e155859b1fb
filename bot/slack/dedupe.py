"""Slack delivers at least once: a retried event or a re-sent command must not start a second investigation.

Each delivery has a key (the event's `event_id`, a command's or a click's `trigger_id`, else the
request's signature and timestamp); the first delivery of a key is worked on, later ones are
acknowledged and dropped. Keys are kept for an hour, longer than Slack retries (three retries within
minutes) and than a signature stays valid (five minutes).

With the history database (`sessions`), keys are kept there too (`bot.history.seen`), so a delivery
replayed after a restart or to another replica is dropped as well; a database that does not answer
falls back to this process's memory (logged), never to refusing Slack — and the check runs before the
ack, so it waits for the database at most `DB_WAIT_S` (a busy SQLite writer must not delay acks).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from bot.history import seen
from bot.history.db import history_errors
from bot.history.errors import HistoryUnavailable

log = logging.getLogger("kubereach.slack")

RETENTION_S = 3600.0
MAX_KEYS = 100_000
PRUNE_EVERY_S = 60.0
DB_WAIT_S = 1.0
"""Longest an ack waits for the shared check; after it the delivery is taken on this process's memory."""


def delivery_key(body: Mapping[str, Any], signature: str | None = None, timestamp: str | None = None) -> str | None:
    """The identity of one Slack delivery: ``event:<event_id>``, ``trigger:<trigger_id>``,
    ``sig:<timestamp>:<signature>`` (a verified request without either), or None."""
    event_id = body.get("event_id")
    if isinstance(event_id, str) and event_id:
        return f"event:{event_id[:150]}"
    trigger_id = body.get("trigger_id")
    if isinstance(trigger_id, str) and trigger_id:
        return f"trigger:{trigger_id[:150]}"
    if signature and timestamp:
        return f"sig:{timestamp[:16]}:{signature[:90]}"
    return None


class DeliveryDedupe:
    """Remembers which deliveries were seen (thread-safe, bounded, in memory)."""

    def __init__(
        self,
        retention_s: float = RETENTION_S,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_KEYS,
        sessions: sessionmaker[Session] | None = None,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """Keep keys for `retention_s` seconds of `clock`, and at most `max_keys` of them in memory;
        with `sessions`, also in the history database (shared by every process on it)."""
        self.retention_s = retention_s
        self._clock = clock
        self._max_keys = max_keys
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        self._sessions = sessions
        self._wall_clock = wall_clock
        self._last_prune: float | None = None
        self._db = ThreadPoolExecutor(max_workers=2, thread_name_prefix="kubereach-dedupe") if sessions is not None else None

    def first_delivery(self, key: str) -> bool:
        """True the first time `key` is offered within the retention window (by any process on the
        database); False for a repeat."""
        now = self._clock()
        with self._lock:
            while self._seen:
                oldest, at = next(iter(self._seen.items()))
                if now - at < self.retention_s and len(self._seen) < self._max_keys:
                    break
                del self._seen[oldest]
            if key in self._seen:
                return False
            self._seen[key] = now
        return self._shared_first(key, now)

    def _shared_first(self, key: str, now: float) -> bool:
        if self._db is None:
            return True
        try:
            with history_errors():
                return self._db.submit(self._take, key, now).result(timeout=DB_WAIT_S)
        except FutureTimeout:
            log.warning("slack: the history database was slow to check a delivery; checked in memory only")
        except RuntimeError:  # closed: the process is stopping
            pass
        except HistoryUnavailable as exc:
            log.error(
                "slack: the history database could not check a delivery (%s); checked in memory only",
                type(exc.__cause__ or exc).__name__,
            )
        return True

    def _take(self, key: str, now: float) -> bool:
        assert self._sessions is not None
        wall = self._wall_clock()
        with self._sessions.begin() as session:
            first = seen.take(session, key, wall)
            if self._last_prune is None or now - self._last_prune >= PRUNE_EVERY_S:
                self._last_prune = now
                seen.prune(session, wall - timedelta(seconds=self.retention_s))
            return first

    def close(self) -> None:
        """Stop the database checker's threads."""
        if self._db is not None:
            self._db.shutdown(wait=False, cancel_futures=True)

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)
