"""`/reach digest …` against a real database (SQLite and PostgreSQL): subscriptions, audit, on-demand
digests diffed with the previous one, and the history summary a digest shows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bot.digest import service as store
from bot.digest.flows import DigestDeps
from bot.digest.models import ConntrackUsage, NodeSweep, SectionName, Sweep
from bot.history import service
from bot.history.enums import AuditAction, DigestCadence, DigestRunStatus, Origin
from bot.history.models import DigestRun, DigestSubscription
from bot.history.service import Person, WorkloadRef
from bot.playbook.models import Verdict, VerdictCode
from bot.slack.digest_command import handle

ANA = Person("U01ANA", "ana")
WEB = WorkloadRef("deployment", "shop", "web", "deployment shop/web")
API = WorkloadRef("service", "shop", "api", "service shop/api:8080")
DB = WorkloadRef("service", "data", "pg", "service data/pg:5432")


class RecordedSweeps:
    """A sweep function returning prepared sweeps in turn (our own seam, not a mock of the fleet)."""

    def __init__(self, *counts: int) -> None:
        self.counts = list(counts)
        self.scopes: list[tuple[str, ...]] = []

    async def __call__(self, namespaces: Sequence[str]) -> Sweep:
        self.scopes.append(tuple(namespaces))
        count = self.counts.pop(0)
        node = NodeSweep("node-1", True, conntrack=ConntrackUsage(count, 1000), ip_forward=True, forward_policy="ACCEPT", nat=())
        return Sweep("lab", datetime.now(UTC), (node,))


def _deps(sessions: sessionmaker[Session], sweep: RecordedSweeps, changes: list[str] | None = None) -> DigestDeps:
    return DigestDeps(
        sessions, sweep, owner="test:1:1", on_change=(lambda: changes.append("changed")) if changes is not None else None
    )


def test_subscribe_stores_one_subscription_per_channel_and_audits(sessions: sessionmaker[Session]) -> None:
    changes: list[str] = []
    deps = _deps(sessions, RecordedSweeps(), changes)
    reply = handle("daily 09:00 Europe/Berlin shop", "C1", ANA, deps)
    assert "every day at 09:00 Europe/Berlin for shop" in reply.text and not reply.ephemeral
    reply = handle("weekly fri 16:30 UTC", "C1", ANA, deps)
    assert "every Friday at 16:30 UTC for all namespaces" in reply.text
    with sessions() as session:
        current = store.channel_subscription(session, "C1")
        enabled = session.scalar(
            select(func.count()).where(DigestSubscription.channel == "C1", DigestSubscription.enabled.is_(True))
        )
        trail = service.audit_trail(session)
    assert current is not None and (current.cadence, current.weekday, current.time_of_day) == (DigestCadence.WEEKLY, 4, "16:30")
    assert enabled == 1
    assert changes == ["changed", "changed"]
    assert [(a.action, a.allowed, a.text) for a in trail[:2]] == [
        (AuditAction.SUBSCRIBE, True, "/reach digest weekly fri 16:30 UTC"),
        (AuditAction.SUBSCRIBE, True, "/reach digest daily 09:00 Europe/Berlin shop"),
    ]


def test_show_and_off(sessions: sessionmaker[Session]) -> None:
    deps = _deps(sessions, RecordedSweeps())
    assert "gets no digest" in handle("", "C2", ANA, deps).text
    handle("daily 07:00 UTC", "C2", ANA, deps)
    shown = handle("status", "C2", ANA, deps)
    assert shown.ephemeral and "every day at 07:00 UTC" in shown.text and "ana" in shown.text
    assert "are off" in handle("off", "C2", ANA, deps).text
    assert "nothing changed" in handle("off", "C2", ANA, deps).text
    with sessions() as session:
        assert store.channel_subscription(session, "C2") is None
        assert store.enabled_subscriptions(session) == []


def test_a_bad_command_replies_with_the_reason_and_is_audited_as_denied(sessions: sessionmaker[Session]) -> None:
    reply = handle("daily 09:00 Mars/Olympus", "C3", ANA, _deps(sessions, RecordedSweeps()))
    assert reply.ephemeral and "unknown timezone 'Mars/Olympus'" in reply.text
    with sessions() as session:
        (entry,) = service.audit_trail(session)
        assert store.enabled_subscriptions(session) == []
    assert not entry.allowed and entry.reason is not None and "unknown timezone" in entry.reason


def test_digest_now_is_recorded_and_the_next_one_says_what_changed(sessions: sessionmaker[Session]) -> None:
    sweeps = RecordedSweeps(1000, 1000, 10)
    deps = _deps(sessions, sweeps)
    handle("daily 09:00 UTC shop", "C4", ANA, deps)
    first = handle("now", "C4", ANA, deps)
    assert first.blocks is not None and "[new]" in first.text and "node-1: 1,000/1,000 (100%)" in first.text
    assert sweeps.scopes == [("shop",)]
    second = handle("now", "C4", ANA, deps)
    assert "[still] node-1: 1,000/1,000" in second.text
    third = handle("now", "C4", ANA, deps)
    assert "[gone]  node-1: 1,000/1,000" in third.text
    with sessions() as session:
        runs = session.scalars(select(DigestRun).order_by(DigestRun.id)).all()
        assert [r.status for r in runs] == [DigestRunStatus.POSTED] * 3
        assert runs[-1].content is not None and runs[-1].content["gone"] == 1


def test_digest_now_without_a_subscription_keeps_a_disabled_record_for_the_diff(sessions: sessionmaker[Session]) -> None:
    deps = _deps(sessions, RecordedSweeps(1000, 10))
    handle("now", "C5", ANA, deps)
    reply = handle("now", "C5", ANA, deps)
    assert "[gone]" in reply.text
    with sessions() as session:
        assert store.enabled_subscriptions(session) == []
        assert session.scalar(select(func.count()).select_from(DigestSubscription)) == 1


def _investigation(
    session: Session, at: datetime, code: VerdictCode, node: str | None, target: WorkloadRef = API, resolved: bool = False
) -> str:
    inv = service.start_investigation(
        session, question=f"why can't web reach {target.name}", asked_by=ANA, origin=Origin.SLACK, owner="bot:1:1",
        source=WEB, target=target, started_at=at,
    )  # fmt: skip
    service.finish_investigation(session, inv, Verdict(code, "summary", node, None, ()), finished_at=at + timedelta(seconds=2))
    if resolved:
        service.resolve(session, inv, ANA, "fixed it", at=at + timedelta(minutes=5))
    return inv


def test_history_summary_counts_recurring_and_unresolved_in_scope(sessions: sessionmaker[Session]) -> None:
    now = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    with sessions.begin() as session:
        a = _investigation(session, now - timedelta(days=10), VerdictCode.CONNTRACK_TABLE_FULL, "node-2", resolved=True)
        b = _investigation(session, now - timedelta(hours=5), VerdictCode.CONNTRACK_TABLE_FULL, "node-2")
        c = _investigation(session, now - timedelta(hours=2), VerdictCode.NO_FAULT_FOUND, None)
        _investigation(session, now - timedelta(days=40), VerdictCode.CONNTRACK_TABLE_FULL, "node-2")
        d = _investigation(session, now - timedelta(hours=1), VerdictCode.MTU_MISMATCH, "node-1", target=DB)
    with sessions() as session:
        summary = store.history_summary(session, since=now - timedelta(days=1), until=now)
        scoped = store.history_summary(session, since=now - timedelta(days=1), until=now, namespaces=("data",))
    assert summary.investigations == 3
    assert {(v.code, v.count) for v in summary.verdicts} == {
        ("CONNTRACK_TABLE_FULL", 1),
        ("NO_FAULT_FOUND", 1),
        ("MTU_MISMATCH", 1),
    }
    labels = {(r.kind, r.label, r.count) for r in summary.recurring}
    assert labels == {
        ("verdict-node", "CONNTRACK_TABLE_FULL on node-2", 2),
        ("pair", "deployment shop/web → service shop/api:8080", 3),
    }
    assert {u.id for u in summary.unresolved} == {b, d} and summary.unresolved_total == 2
    assert a not in {u.id for u in summary.unresolved} and c not in {u.id for u in summary.unresolved}
    assert scoped.investigations == 1 and [u.id for u in scoped.unresolved] == [d] and scoped.recurring == ()


def test_history_flows_into_the_digest(sessions: sessionmaker[Session]) -> None:
    now = datetime.now(UTC)
    with sessions.begin() as session:
        _investigation(session, now - timedelta(hours=3), VerdictCode.SERVICE_NO_ENDPOINTS, "node-1")
        _investigation(session, now - timedelta(hours=2), VerdictCode.SERVICE_NO_ENDPOINTS, "node-1")
    reply = handle("now", "C6", ANA, _deps(sessions, RecordedSweeps(5)))
    assert "Investigations since the last digest: 2 investigations" in reply.text
    assert "SERVICE_NO_ENDPOINTS on node-1: 2 times in 30 days" in reply.text
    blocks = reply.blocks or []
    assert any(b["type"] == "section" and "*Unresolved*" in b["text"]["text"] for b in blocks)
    with sessions() as session:
        run = session.scalars(select(DigestRun)).one()
        content = run.content or {}
    unresolved = next(s for s in content["sections"] if s["name"] == SectionName.UNRESOLVED.value)
    assert len(unresolved["items"]) == 2
