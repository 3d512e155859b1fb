"""Digest schedules in the bot: APScheduler 3 cron jobs, one per enabled subscription.

Each subscription becomes a `CronTrigger` in its own timezone (so 09:00 Europe/Berlin stays 09:00 across
daylight-saving changes). When a job fires, the slot it runs is computed from the trigger (the latest
fire time not after now), so every replica names the same slot, and `bot.digest.flows.run_slot`
claims it in the database: exactly one replica posts it.

Jobs live in memory; the subscriptions table is the truth, re-read every `resync_s` seconds (and on
`refresh()`, which `/reach digest …` calls through `DigestDeps.on_change`). A slot missed while no bot
was running is caught up once on `start()`: only the latest missed slot of each subscription runs
(coalesced), never one run per missed slot.

`stop(grace_s)` ends scheduling at once and lets digests in flight finish for `grace_s` seconds;
one still unposted then is released: its claim is given back and it will not post afterwards, so
another replica (at its next resync, as a missed slot) or the next start posts it. Claims left by a
process that was killed outright are given back on `start()`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from bot.digest import service as digests
from bot.digest.command import WEEKDAYS
from bot.digest.flows import DigestDeps, PostDigest, SlotOutcome, SlotReleased, run_slot
from bot.digest.models import Digest
from bot.digest.service import SubscriptionView
from bot.errors import KubereachError
from bot.history.db import history_errors, local_owner_is_alive
from bot.history.enums import DigestCadence
from bot.history.errors import HistoryUnavailable

log = logging.getLogger("kubereach.digest")

RESYNC_SECONDS = 60.0
MISFIRE_GRACE_SECONDS = 3600
"""A job that fires late (the process was busy or suspended) still runs within this grace."""
_LOOKBACK = timedelta(days=8)
_JOB_PREFIX = "digest-"


def slot_trigger(subscription: SubscriptionView) -> CronTrigger:
    """The cron trigger of a subscription: its local time, every day or on its weekday, in its timezone."""
    hour, minute = (int(part) for part in subscription.time_of_day.split(":"))
    day_of_week = WEEKDAYS[subscription.weekday or 0] if subscription.cadence == DigestCadence.WEEKLY else "*"
    return CronTrigger(day_of_week=day_of_week, hour=hour, minute=minute, timezone=ZoneInfo(subscription.timezone))


def latest_slot(trigger: CronTrigger, now: datetime) -> datetime | None:
    """The latest fire time of `trigger` at or before `now` (UTC), within the last eight days."""
    fire = trigger.get_next_fire_time(None, now - _LOOKBACK)
    latest = None
    while fire is not None and fire <= now:
        latest = fire
        fire = trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
    return latest.astimezone(UTC) if latest is not None else None


def missed_slot(subscription: SubscriptionView, now: datetime) -> datetime | None:
    """The slot a start at `now` should catch up: the latest one, if it came after the subscription."""
    slot = latest_slot(slot_trigger(subscription), now)
    if slot is None or slot < subscription.created_at:
        return None
    return slot


@dataclass(frozen=True)
class _Planned:
    signature: tuple[object, ...]


def _signature(subscription: SubscriptionView) -> tuple[object, ...]:
    return (subscription.cadence, subscription.time_of_day, subscription.timezone, subscription.weekday, subscription.namespaces)


class DigestScheduler:
    """Runs every enabled subscription's digest at its slots, exactly once across replicas.

    `post(channel, digest)` is called once per slot this process wins; `clock` is for tests.
    """

    def __init__(
        self,
        deps: DigestDeps,
        post: PostDigest,
        *,
        resync_s: float = RESYNC_SECONDS,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.deps = deps
        self.post = post
        self.resync_s = resync_s
        self._clock = clock or (lambda: datetime.now(UTC))
        self._scheduler = BackgroundScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": MISFIRE_GRACE_SECONDS},
        )
        self._planned: dict[int, _Planned] = {}
        self._lock = threading.Lock()
        self._post_lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._running: set[tuple[int, datetime]] = set()
        self._posted: set[tuple[int, datetime]] = set()
        self._released: set[tuple[int, datetime]] = set()
        self.outcomes: list[tuple[int, datetime, SlotOutcome]] = []
        """(subscription, slot, outcome) of every slot this process attempted, in order."""

    # ------------------------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Plan every enabled subscription, catch up missed slots once, and start the scheduler thread."""
        self._scheduler.start()
        self._release_stale()
        subscriptions = self._enabled()
        self._plan(subscriptions)
        self._catch_up(subscriptions)
        self._scheduler.add_job(self.refresh, "interval", seconds=self.resync_s, id="resync-subscriptions", replace_existing=True)

    def _release_stale(self) -> None:
        try:
            with history_errors(), self.deps.sessions.begin() as session:
                released = digests.release_stale_claims(session, local_owner_is_alive)
        except HistoryUnavailable as exc:
            log.error("digest: cannot release the claims of stopped processes: %s", exc)
            return
        if released:
            log.info("digest: released %s slot claim(s) left by stopped processes", released)

    def _catch_up(self, subscriptions: list[SubscriptionView]) -> None:
        """Run, once, the latest slot of each subscription that no process claimed (the process was down)."""
        now = self._clock()
        for subscription in subscriptions:
            slot = missed_slot(subscription, now)
            if slot is None:
                continue
            try:
                with history_errors(), self.deps.sessions() as session:
                    done = digests.slot_run_exists(session, subscription.id, slot)
            except HistoryUnavailable as exc:
                log.error("digest: cannot check missed slots: %s", exc)
                continue
            if not done:
                log.info("digest: catching up the missed slot %s of subscription %s", slot.isoformat(), subscription.id)
                with self._lock:
                    if (subscription.id, slot) in self._running:
                        continue
                self._scheduler.add_job(
                    self._run, args=(subscription.id, slot), id=f"catch-up-{subscription.id}", replace_existing=True
                )

    def stop(self, grace_s: float | None = None) -> int:
        """Stop scheduling; let digests in flight finish for `grace_s` seconds (None: as long as they take).

        Digests still unposted then are released (their claims given back, their posts suppressed);
        returns how many.
        """
        if not self._scheduler.running:
            return 0
        self._scheduler.shutdown(wait=False)
        with self._idle:
            self._idle.wait_for(lambda: not self._running, grace_s)
        with self._post_lock:
            with self._lock:
                leftover = sorted(self._running - self._posted - self._released)
                self._released.update(leftover)
            for subscription_id, slot in leftover:
                try:
                    with history_errors(), self.deps.sessions.begin() as session:
                        digests.release_claim(session, subscription_id, slot, self.deps.owner)
                except HistoryUnavailable as exc:
                    log.error("digest: cannot release slot %s of subscription %s: %s", slot.isoformat(), subscription_id, exc)
                    continue
                log.warning(
                    "digest: stopping before slot %s of subscription %s was posted; released it for another process",
                    slot.isoformat(),
                    subscription_id,
                )
        return len(leftover)

    def refresh(self) -> None:
        """Re-read the subscriptions and add, change or remove their jobs; catch up slots nobody claimed."""
        subscriptions = self._enabled()
        self._plan(subscriptions)
        if self._scheduler.running:
            self._catch_up(subscriptions)

    @property
    def planned(self) -> dict[int, datetime | None]:
        """subscription id → its job's next run time (UTC)."""
        out: dict[int, datetime | None] = {}
        for job in self._scheduler.get_jobs():
            if job.id.startswith(_JOB_PREFIX):
                next_run = job.next_run_time
                out[int(job.id.removeprefix(_JOB_PREFIX))] = next_run.astimezone(UTC) if next_run else None
        return out

    # ------------------------------------------------------------------------------------- internals

    def _enabled(self) -> list[SubscriptionView]:
        try:
            with history_errors(), self.deps.sessions() as session:
                return digests.enabled_subscriptions(session)
        except HistoryUnavailable as exc:
            log.error("digest: cannot read the subscriptions: %s", exc)
            return []

    def _plan(self, subscriptions: list[SubscriptionView]) -> None:
        with self._lock:
            wanted = {s.id: s for s in subscriptions}
            for subscription_id in list(self._planned):
                if subscription_id not in wanted:
                    self._scheduler.remove_job(f"{_JOB_PREFIX}{subscription_id}")
                    del self._planned[subscription_id]
            for subscription in subscriptions:
                signature = _signature(subscription)
                planned = self._planned.get(subscription.id)
                if planned is not None and planned.signature == signature:
                    continue
                self._scheduler.add_job(
                    self._run_scheduled,
                    trigger=slot_trigger(subscription),
                    args=(subscription.id,),
                    id=f"{_JOB_PREFIX}{subscription.id}",
                    replace_existing=True,
                )
                self._planned[subscription.id] = _Planned(signature)

    def _run_scheduled(self, subscription_id: int) -> None:
        with self._lock:
            planned = self._planned.get(subscription_id)
        if planned is None:
            return
        try:
            with history_errors(), self.deps.sessions() as session:
                subscription = digests.get_subscription(session, subscription_id)
        except HistoryUnavailable as exc:
            log.error("digest: cannot read subscription %s: %s", subscription_id, exc)
            return
        if subscription is None:
            return
        slot = latest_slot(slot_trigger(subscription), self._clock())
        if slot is not None:
            self._run(subscription_id, slot)

    def _run(self, subscription_id: int, slot: datetime) -> SlotOutcome:
        key = (subscription_id, slot)
        with self._lock:
            if key in self._running:
                return SlotOutcome.TAKEN
            self._running.add(key)

        def post_unless_released(channel: str, digest: Digest) -> None:
            with self._post_lock:
                if key in self._released:
                    raise SlotReleased
                self.post(channel, digest)
                with self._lock:
                    self._posted.add(key)

        try:
            outcome = run_slot(self.deps, subscription_id, slot, post_unless_released)
        except KubereachError as exc:
            log.error("digest: slot %s of subscription %s failed: %s", slot.isoformat(), subscription_id, exc)
            outcome = SlotOutcome.FAILED
        finally:
            with self._idle:
                self._running.discard(key)
                self._posted.discard(key)
                self._idle.notify_all()
        with self._lock:
            self.outcomes.append((subscription_id, slot, outcome))
        return outcome
