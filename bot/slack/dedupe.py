"""Slack delivers at least once: a retried event or a re-sent command must not start a second investigation.

Each delivery has a key (the event's `event_id`, a command's or a click's `trigger_id`); the first
delivery of a key is worked on, later ones are acknowledged and dropped. Keys are kept for an hour,
longer than Slack retries (three retries within minutes).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

RETENTION_S = 3600.0
MAX_KEYS = 100_000


def delivery_key(body: Mapping[str, Any]) -> str | None:
    """The identity of one Slack delivery: ``event:<event_id>``, ``trigger:<trigger_id>``, or None."""
    event_id = body.get("event_id")
    if isinstance(event_id, str) and event_id:
        return f"event:{event_id}"
    trigger_id = body.get("trigger_id")
    if isinstance(trigger_id, str) and trigger_id:
        return f"trigger:{trigger_id}"
    return None


class DeliveryDedupe:
    """Remembers which deliveries were seen (thread-safe, bounded, in memory)."""

    def __init__(
        self, retention_s: float = RETENTION_S, *, clock: Callable[[], float] = time.monotonic, max_keys: int = MAX_KEYS
    ) -> None:
        """Keep keys for `retention_s` seconds of `clock`, and at most `max_keys` of them."""
        self.retention_s = retention_s
        self._clock = clock
        self._max_keys = max_keys
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def first_delivery(self, key: str) -> bool:
        """True the first time `key` is offered within the retention window; False for a repeat."""
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
            return True

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)
