"""A signed Slack request replayed within its five minutes — to another replica, or after a restart —
starts nothing: the seen delivery keys live in the history database (SQLite and PostgreSQL)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from bot.history import service
from bot.history.db import create_history_engine, session_factory, upgrade
from bot.history.enums import AuditAction
from bot.history.models import SlackSeenRequest
from bot.history.service import Person
from bot.slack.dedupe import DeliveryDedupe
from lab.slackstub import SlackStub
from tests.unit.slack_support import app_rig


@pytest.fixture
def stub() -> Iterator[SlackStub]:
    with SlackStub() as stub:
        stub.state.add_channel("incidents", channel_id="C1")
        stub.state.add_user("ana", user_id="U1")
        yield stub


def test_a_replayed_command_starts_nothing_on_another_replica_or_after_a_restart(stub: SlackStub, database_url: str) -> None:
    stamp = int(time.time())
    with app_rig(stub, database_url) as first, app_rig(stub, database_url) as second:
        request = first.sender.slash_command_request("/reach", "why can't frontend reach api", channel="C1", user="U1")
        assert first.sender.deliver(request, timestamp=stamp).status == 200
        first.idle()
        assert len(first.investigator.started) == 1
        # The same signed bytes to the other replica, and Slack's retry (re-signed) to it too.
        assert second.sender.deliver(request, timestamp=stamp).status == 200
        assert second.sender.deliver(request, retry_num=1).status == 200
        second.idle()
        assert second.investigator.started == []
    with app_rig(stub, database_url) as restarted:
        assert restarted.sender.deliver(request, timestamp=stamp).status == 200
        restarted.idle()
        assert restarted.investigator.started == []
    verdicts = [m for m in stub.messages("C1") if "NO_FAULT_FOUND" in m.text]
    assert len(verdicts) == 1


def test_a_replayed_mention_starts_nothing_after_a_restart(stub: SlackStub, database_url: str) -> None:
    stamp = int(time.time())
    with app_rig(stub, database_url) as rig:
        mention = rig.sender.app_mention_request("C1", "U1", "why can't web reach db")
        assert rig.sender.deliver(mention, timestamp=stamp).status == 200
        rig.idle()
        assert len(rig.investigator.started) == 1
    with app_rig(stub, database_url) as restarted:
        assert restarted.sender.deliver(mention, timestamp=stamp).status == 200
        restarted.idle()
        assert restarted.investigator.started == []


def test_old_delivery_keys_are_pruned(database_url: str) -> None:
    engine = create_history_engine(database_url)
    try:
        upgrade(engine)
        sessions = session_factory(engine)
        now = [datetime(2026, 1, 1, tzinfo=UTC)]
        ticks = [0.0]
        dedupe = DeliveryDedupe(retention_s=3600, sessions=sessions, wall_clock=lambda: now[0], clock=lambda: ticks[0])
        assert dedupe.first_delivery("event:Ev-prune-1")
        # Another process (a fresh memory) still sees it within the retention window.
        other = DeliveryDedupe(retention_s=3600, sessions=sessions, wall_clock=lambda: now[0], clock=lambda: ticks[0])
        assert not other.first_delivery("event:Ev-prune-1")
        now[0] += timedelta(hours=2)
        ticks[0] += 7200
        assert dedupe.first_delivery("event:Ev-prune-2")  # prunes what is older than an hour
        with sessions() as session:
            keys = set(session.scalars(select(SlackSeenRequest.key)))
            assert "event:Ev-prune-1" not in keys and "event:Ev-prune-2" in keys
            assert session.scalar(select(func.count()).select_from(SlackSeenRequest)) == len(keys)
    finally:
        engine.dispose()


def test_the_audit_log_keeps_an_excerpt_of_a_huge_request(database_url: str) -> None:
    engine = create_history_engine(database_url)
    try:
        upgrade(engine)
        sessions = session_factory(engine)
        huge = "why " * 2_500_000  # 10 MB
        with sessions.begin() as session:
            service.audit(session, who=Person("U1", "ana"), action=AuditAction.ASK, text=huge, allowed=False, reason=huge)
        with sessions() as session:
            [entry] = [e for e in service.audit_trail(session, user_id="U1") if e.text.startswith("why why")]
        assert len(entry.text) <= service.AUDIT_TEXT_MAX + 40 and "10000000 characters" in entry.text
        assert entry.reason is not None and len(entry.reason) <= service.AUDIT_TEXT_MAX + 40
    finally:
        engine.dispose()
