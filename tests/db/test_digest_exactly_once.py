"""Each digest slot runs once, however many bot processes fire it (SQLite and PostgreSQL).

Two engines on the same database stand for two bot replicas; each gets its own `DigestScheduler`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from bot.digest import service as store
from bot.digest.flows import DigestDeps, SlotOutcome, run_slot
from bot.digest.models import ConntrackUsage, Digest, NodeSweep, Sweep
from bot.digest.schedule import DigestScheduler, latest_slot, slot_trigger
from bot.history.db import create_history_engine, session_factory
from bot.history.enums import DigestCadence, DigestRunStatus
from bot.history.models import DigestRun
from bot.history.service import Person
from tests.polling import eventually

ANA = Person("U01ANA", "ana")


async def one_node_sweep(namespaces: Sequence[str]) -> Sweep:
    node = NodeSweep("node-1", True, conntrack=ConntrackUsage(10, 1000), ip_forward=True, forward_policy="ACCEPT", nat=())
    return Sweep("lab", datetime.now(UTC), (node,))


class PostRecorder:
    """The posting callback: records (channel, digest) for the test, thread-safe."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, Digest]] = []
        self._lock = threading.Lock()

    def __call__(self, channel: str, digest: Digest) -> None:
        with self._lock:
            self.posts.append((channel, digest))


@pytest.fixture
def second_replica(database_url: str) -> Iterator[sessionmaker[Session]]:
    """Sessions on a second engine on the same database: another bot process's view."""
    engine: Engine = create_history_engine(database_url)
    try:
        yield session_factory(engine)
    finally:
        engine.dispose()


def _subscribe(sessions: sessionmaker[Session], created_at: datetime, channel: str = "C1") -> int:
    with sessions.begin() as session:
        return store.replace_subscription(
            session, channel=channel, cadence=DigestCadence.DAILY, time_of_day="09:00", timezone="Europe/Berlin",
            weekday=None, namespaces=(), created_by=ANA, at=created_at,
        )  # fmt: skip


def _runs(sessions: sessionmaker[Session], subscription_id: int) -> list[DigestRun]:
    with sessions() as session:
        return list(session.scalars(select(DigestRun).where(DigestRun.subscription_id == subscription_id)).all())


def test_two_replicas_firing_the_same_slot_together_post_it_once(
    sessions: sessionmaker[Session], second_replica: sessionmaker[Session]
) -> None:
    subscription_id = _subscribe(sessions, datetime.now(UTC) - timedelta(days=2))
    slot = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    post = PostRecorder()
    replicas = [
        DigestDeps(sessions, one_node_sweep, owner="bot-a:1:1"),
        DigestDeps(second_replica, one_node_sweep, owner="bot-b:1:1"),
    ]
    start = threading.Barrier(len(replicas) * 2)
    outcomes: list[SlotOutcome] = []
    lock = threading.Lock()

    def fire(deps: DigestDeps) -> None:
        start.wait()
        outcome = run_slot(deps, subscription_id, slot, post)
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=fire, args=(deps,)) for deps in replicas for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == sorted([SlotOutcome.POSTED] + [SlotOutcome.TAKEN] * 3)
    assert [channel for channel, _ in post.posts] == ["C1"]
    (run,) = _runs(sessions, subscription_id)
    assert run.status == DigestRunStatus.POSTED and run.slot_at == slot and run.content is not None


def test_two_schedulers_starting_after_a_missed_slot_post_it_once(
    sessions: sessionmaker[Session], second_replica: sessionmaker[Session]
) -> None:
    now = datetime.now(UTC)
    subscription_id = _subscribe(sessions, now - timedelta(days=5))
    with sessions() as session:
        subscription = store.get_subscription(session, subscription_id)
    assert subscription is not None
    expected_slot = latest_slot(slot_trigger(subscription), now)
    post = PostRecorder()
    schedulers = [
        DigestScheduler(DigestDeps(sessions, one_node_sweep, owner="bot-a:1:1"), post),
        DigestScheduler(DigestDeps(second_replica, one_node_sweep, owner="bot-b:1:1"), post),
    ]
    try:
        for scheduler in schedulers:
            scheduler.start()
        eventually(lambda: len(_runs(sessions, subscription_id)), lambda n: n >= 1, deadline_s=30, what="a claimed run")
        eventually(
            lambda: [r.status for r in _runs(sessions, subscription_id)],
            lambda s: s == [DigestRunStatus.POSTED],
            what="the run posted",
        )
        assert all(subscription_id in s.planned for s in schedulers)
    finally:
        for scheduler in schedulers:
            scheduler.stop()
    # five missed days, one run: the latest slot only (coalesced)
    (run,) = _runs(sessions, subscription_id)
    assert run.slot_at == expected_slot
    assert len(post.posts) == 1
    attempted = [o for s in schedulers for (_, slot, o) in s.outcomes if slot == expected_slot]
    assert SlotOutcome.POSTED in attempted and attempted.count(SlotOutcome.POSTED) == 1


def test_a_restart_after_the_slot_ran_does_not_run_it_again(sessions: sessionmaker[Session]) -> None:
    subscription_id = _subscribe(sessions, datetime.now(UTC) - timedelta(days=3))
    post = PostRecorder()
    first = DigestScheduler(DigestDeps(sessions, one_node_sweep, owner="bot-a:1:1"), post)
    try:
        first.start()
        eventually(
            lambda: [o for _, _, o in first.outcomes], lambda o: o == [SlotOutcome.POSTED], deadline_s=30, what="the catch-up run"
        )
    finally:
        first.stop()
    again = DigestScheduler(DigestDeps(sessions, one_node_sweep, owner="bot-a:2:2"), post)
    try:
        again.start()
        assert again.outcomes == []
    finally:
        again.stop()
    assert len(_runs(sessions, subscription_id)) == 1 and len(post.posts) == 1


def test_a_turned_off_subscription_is_not_planned_or_run(sessions: sessionmaker[Session]) -> None:
    subscription_id = _subscribe(sessions, datetime.now(UTC) - timedelta(days=3))
    with sessions.begin() as session:
        store.disable_subscriptions(session, "C1")
    post = PostRecorder()
    scheduler = DigestScheduler(DigestDeps(sessions, one_node_sweep, owner="bot-a:1:1"), post)
    try:
        scheduler.start()
        assert scheduler.planned == {}
    finally:
        scheduler.stop()
    assert run_slot(scheduler.deps, subscription_id, datetime(2026, 11, 20, 8, 0, tzinfo=UTC), post) == SlotOutcome.DISABLED
    assert post.posts == [] and _runs(sessions, subscription_id) == []


def test_refresh_plans_new_subscriptions_in_their_timezone(sessions: sessionmaker[Session]) -> None:
    scheduler = DigestScheduler(DigestDeps(sessions, one_node_sweep, owner="bot-a:1:1"), PostRecorder())
    try:
        scheduler.start()
        assert scheduler.planned == {}
        subscription_id = _subscribe(sessions, datetime.now(UTC), channel="C9")
        scheduler.refresh()
        next_run = scheduler.planned[subscription_id]
        assert next_run is not None
        local = next_run.astimezone(ZoneInfo("Europe/Berlin"))
        assert (local.hour, local.minute) == (9, 0)
    finally:
        scheduler.stop()


@pytest.mark.parametrize("database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_on_postgresql_the_claim_waits_for_the_subscriptions_advisory_lock(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    # Advisory locks are PostgreSQL's; SQLite serialises writers by itself, so this runs on PostgreSQL only.
    assert engine.dialect.name == "postgresql"
    from sqlalchemy import text

    from bot.digest.lock import advisory_key, claim_slot

    subscription_id = _subscribe(sessions, datetime.now(UTC))
    lock_class, lock_object = advisory_key(subscription_id)
    slot = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    claimed: list[object] = []
    with engine.connect() as holder:
        holder.execute(text("SELECT pg_advisory_xact_lock(:c, :o)"), {"c": lock_class, "o": lock_object})
        claimer = threading.Thread(target=lambda: claimed.append(claim_slot(sessions, subscription_id, slot, "bot-a:1:1")))
        claimer.start()

        def waiting() -> int:
            with engine.connect() as probe:
                query = (
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = :c AND objid = :o"
                )
                return int(probe.execute(text(query), {"c": lock_class, "o": lock_object}).scalar_one())

        eventually(waiting, lambda n: n == 1, deadline_s=30, what="the claim waiting on the advisory lock")
        assert claimed == [] and _runs(sessions, subscription_id) == []
        holder.rollback()
    claimer.join(timeout=30)
    assert len(claimed) == 1 and claimed[0] is not None
    assert [r.slot_at for r in _runs(sessions, subscription_id)] == [slot]
