"""The web UI's trends over the history, on SQLite and PostgreSQL: verdicts per week, conntrack fill per
node from the source-node steps, recurring problems, the runs of one question — and what the caller
may not see (another namespace) counted nowhere."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from bot.history import service
from bot.history.enums import Origin
from bot.history.service import Person, WorkloadRef
from bot.history.trends import conntrack_fill, other_runs, recurring_problems, verdicts_per_week, visible_ids
from bot.playbook.models import Evidence, Hop, StepResult, StepStatus, Verdict, VerdictCode
from tests.db.conftest import empty_all_tables

ANA = Person("U1", "ana")
MONDAY = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def _node_step(node: str, count: int) -> StepResult:
    data = {"ip_forward": True, "conntrack_count": count, "conntrack_max": 1000}
    return StepResult(f"source node {node}", StepStatus.PASS, "ok", (Evidence("node", "…", node, data),), 1.0, node)


def _record(session: Session, namespace: str, at: datetime, code: VerdictCode, fill: int) -> str:
    ref = WorkloadRef("deployment", namespace, "web", f"deploy/web in {namespace}")
    target = WorkloadRef("service", namespace, "api", f"svc/api in {namespace}")
    inv = service.start_investigation(
        session, question="why can't web reach api", asked_by=ANA, origin=Origin.SLACK, owner="bot-0:1",
        source=ref, target=target, namespaces=(namespace,), channel="C1", started_at=at,
    )  # fmt: skip
    service.record_step(session, inv, _node_step("node-1", fill), 0)
    service.finish_investigation(session, inv, Verdict(code, "…", "node-1", Hop.SOURCE_NODE), duration_ms=5.0, finished_at=at)
    return inv


def test_trends_count_what_the_scope_covers(engine: Engine, sessions: sessionmaker[Session]) -> None:
    empty_all_tables(engine)
    with sessions.begin() as session:
        first = _record(session, "shop", MONDAY, VerdictCode.CONNTRACK_TABLE_FULL, 900)
        second = _record(session, "shop", MONDAY + timedelta(days=2), VerdictCode.CONNTRACK_TABLE_FULL, 950)
        last = _record(session, "shop", MONDAY + timedelta(days=8), VerdictCode.NO_FAULT_FOUND, 100)
        payments = _record(session, "payments", MONDAY + timedelta(days=1), VerdictCode.CONNTRACK_TABLE_FULL, 999)

    def shop_only(namespaces: tuple[str, ...], channel: str | None) -> bool:
        return set(namespaces) <= {"shop"}

    since = MONDAY - timedelta(days=1)
    with sessions() as session:
        weeks = verdicts_per_week(session, since, shop_only)
        assert [(w.week.date().isoformat(), w.by_code) for w in weeks] == [
            ("2026-11-02", {"CONNTRACK_TABLE_FULL": 2}),
            ("2026-11-09", {"NO_FAULT_FOUND": 1}),
        ]
        fill = conntrack_fill(session, since, shop_only)
        assert [(s.count, s.max) for s in fill["node-1"]] == [(900, 1000), (950, 1000), (100, 1000)]
        [recurring] = recurring_problems(session, since, shop_only)
        assert (recurring.code, recurring.count, recurring.source) == ("CONNTRACK_TABLE_FULL", 2, "deploy/web in shop")
        view = service.get_investigation(session, first)
        runs = other_runs(session, view, shop_only)
        assert [r.id for r in runs] == [last, second, first]  # newest first; the payments run is another pair
        assert other_runs(session, view, lambda namespaces, channel: False) == []
        assert visible_ids(session, [first, payments, "inv_unknown"], shop_only) == {first}
