"""The kubelet's part of a graceful pod deletion, for a lab without kubelets.

kube-apiserver only marks a deleted pod (deletionTimestamp = now + grace period); the pod's kubelet
stops it and then deletes it for good with grace period 0. `GracefulDeleter` plays that part for
every pod: when a terminating pod's grace period is over it deletes it (pods held by finalizers stay
until the finalizers are cleared, as they do in a real cluster).
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

from lab.apiserver.resources import PODS
from lab.apiserver.store import Store, Subscription, WatchEvent

log = logging.getLogger(__name__)

_IDLE_WAIT_SECONDS = 60.0


class GracefulDeleter:
    """Finishes graceful pod deletions in a `Store` when their grace periods end."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._subscription: Subscription | None = None
        self._thread = threading.Thread(target=self._run, name="graceful-deleter", daemon=True)

    def start(self) -> None:
        """Watch the store for terminating pods and start the loop."""
        self._subscription = self.store.subscribe(self._on_event)
        self._thread.start()

    def stop(self) -> None:
        """End the loop."""
        if self._subscription is not None:
            self._subscription.cancel()
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _on_event(self, event: WatchEvent) -> None:
        if event.resource is PODS and event.object["metadata"].get("deletionTimestamp"):
            self._wake.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            finished = self.store.finish_graceful_deletions()
            if finished:
                log.info("grace period over: deleted %s", ", ".join(f"{ns}/{name}" for ns, name in finished))
            deadline = self.store.next_graceful_deadline()
            wait = _IDLE_WAIT_SECONDS
            if deadline is not None:
                # Timestamps have whole seconds: wake just after the second the deadline names.
                wait = max(0.05, (deadline - datetime.now(UTC)).total_seconds() + 0.05)
            self._wake.wait(min(wait, _IDLE_WAIT_SECONDS))
