"""Stopping a bot with a digest in flight: it finishes within the grace, or its slot is released and
posted by the next process — never twice, never lost (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from bot.digest import service as store
from bot.digest.flows import DigestDeps, SlotOutcome
from bot.digest.models import Sweep
from bot.digest.schedule import DigestScheduler
from bot.history.db import create_history_engine, session_factory
from bot.history.enums import DigestRunStatus
from bot.history.models import DigestRun
from tests.db.test_digest_exactly_once import PostRecorder, _subscribe, one_node_sweep
from tests.polling import eventually


class GatedSweep:
    """A sweep that starts, says so, and waits for the test to let it finish."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    async def __call__(self, namespaces: Sequence[str]) -> Sweep:
        self.started.set()
        while not self.release.is_set():
            import asyncio

            await asyncio.sleep(0.01)
        return await one_node_sweep(namespaces)


@pytest.fixture
def replica(database_url: str, engine: Engine) -> Iterator[sessionmaker[Session]]:
    other: Engine = create_history_engine(database_url)
    try:
        yield session_factory(other)
    finally:
        other.dispose()


def _runs(sessions: sessionmaker[Session], subscription_id: int) -> list[DigestRun]:
    with sessions() as session:
        return list(session.scalars(select(DigestRun).where(DigestRun.subscription_id == subscription_id)).all())


def test_a_digest_that_finishes_within_the_grace_is_posted_once(sessions: sessionmaker[Session]) -> None:
    subscription_id = _subscribe(sessions, datetime.now(UTC) - timedelta(days=3))
    sweep = GatedSweep()
    post = PostRecorder()
    scheduler = DigestScheduler(DigestDeps(sessions, sweep, owner="bot-a:1:1"), post)
    scheduler.start()  # the missed slot starts at once
    assert sweep.started.wait(30)
    threading.Timer(0.2, sweep.release.set).start()
    assert scheduler.stop(grace_s=60) == 0
    assert len(post.posts) == 1
    assert [r.status for r in _runs(sessions, subscription_id)] == [DigestRunStatus.POSTED]


def test_a_digest_unfinished_at_the_end_of_the_grace_is_released_and_the_next_process_posts_it(
    sessions: sessionmaker[Session], replica: sessionmaker[Session]
) -> None:
    subscription_id = _subscribe(sessions, datetime.now(UTC) - timedelta(days=3))
    sweep = GatedSweep()
    first_posts = PostRecorder()
    first = DigestScheduler(DigestDeps(sessions, sweep, owner="bot-a:1:1"), first_posts)
    first.start()
    assert sweep.started.wait(30)
    assert [r.status for r in _runs(sessions, subscription_id)] == [DigestRunStatus.RUNNING]
    assert first.stop(grace_s=0.2) == 1
    assert _runs(sessions, subscription_id) == [], "the claim was given back"
    sweep.release.set()  # the stopped process's sweep ends late: it must not post any more
    eventually(
        lambda: [o for s, _, o in first.outcomes if s == subscription_id],
        lambda o: o == [SlotOutcome.RELEASED],
        deadline_s=30,
        what="released",
    )
    assert first_posts.posts == []

    second_posts = PostRecorder()
    second = DigestScheduler(DigestDeps(replica, one_node_sweep, owner="bot-b:1:1"), second_posts)
    try:
        second.start()
        eventually(lambda: len(second_posts.posts), lambda n: n == 1, deadline_s=30, what="the next process posting the slot")
        eventually(
            lambda: [r.status for r in _runs(sessions, subscription_id)],
            lambda s: s == [DigestRunStatus.POSTED],
            deadline_s=30,
            what="one posted run",
        )
    finally:
        second.stop()


def test_a_claim_left_by_a_killed_process_is_released_on_start(sessions: sessionmaker[Session]) -> None:
    subscription_id = _subscribe(sessions, datetime.now(UTC) - timedelta(days=3))
    with sessions() as session:
        subscription = store.get_subscription(session, subscription_id)
    assert subscription is not None
    from bot.digest.lock import claim_slot
    from bot.digest.schedule import missed_slot
    from bot.history.db import process_owner

    slot = missed_slot(subscription, datetime.now(UTC))
    assert slot is not None
    host = process_owner().split(":", 1)[0]
    assert claim_slot(sessions, subscription_id, slot, f"{host}:999999999:1") is not None  # no such process
    post = PostRecorder()
    scheduler = DigestScheduler(DigestDeps(sessions, one_node_sweep, owner="bot-c:1:1"), post)
    try:
        scheduler.start()
        eventually(lambda: len(post.posts), lambda n: n == 1, deadline_s=30, what="the stranded slot posted")
    finally:
        scheduler.stop()
    runs = _runs(sessions, subscription_id)
    assert [(r.status, r.owner) for r in runs] == [(DigestRunStatus.POSTED, "bot-c:1:1")]


def test_a_subscription_made_changed_or_turned_off_in_slack_is_planned_at_once(sessions: sessionmaker[Session]) -> None:
    from pydantic import SecretStr
    from slack_sdk import WebClient

    from bot.history.recorder import HistoryRecorder
    from bot.investigation import Investigator
    from bot.settings import BotSettings
    from bot.slack.app import build_deps
    from bot.slack.digest_command import handle
    from bot.slack.digests import start_digests, stop_digests
    from bot.slack.handlers import _digest
    from lab.slackstub import SlackStub

    with SlackStub() as stub:
        channel, user = stub.state.add_channel("ops").id, stub.state.add_user("ana").id
        settings = BotSettings(slack_bot_token=SecretStr(stub.state.bot_token), slack_api_url=stub.base_url)
        deps = build_deps(
            settings,
            Investigator,
            client=WebClient(token=stub.state.bot_token, base_url=stub.base_url),
            history=HistoryRecorder(sessions),
            digest=(handle, DigestDeps(sessions, one_node_sweep, owner="bot-a:1:1")),
        )
        scheduler = start_digests(deps, resync_s=3600)  # no resync in this test: only the change itself
        assert scheduler is not None
        try:
            _digest(deps, "daily 09:00 UTC", channel, user, "ana")
            (first,) = scheduler.planned
            assert scheduler.planned[first] is not None and scheduler.planned[first].minute == 0
            _digest(deps, "daily 17:30 UTC", channel, user, "ana")
            (second,) = scheduler.planned
            assert second != first and scheduler.planned[second] is not None and scheduler.planned[second].minute == 30
            _digest(deps, "off", channel, user, "ana")
            assert scheduler.planned == {}
        finally:
            stop_digests(scheduler, 0)
            deps.close()
