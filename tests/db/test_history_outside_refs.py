"""The history keeps the ends of the new questions as `bot.investigation.workload_refs` writes them: a
node, a client outside the cluster and a name outside it have no namespace, and an investigation of
the same pair is still counted as seen before (a NULL namespace matches a NULL namespace)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from bot.history import service
from bot.history.enums import Origin
from bot.history.service import Person, WorkloadRef
from bot.playbook.models import Verdict, VerdictCode

ANA = Person("U01ANA", "ana")
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
OUTSIDE = WorkloadRef("outside", None, "outside", "outside the cluster")
NODE = WorkloadRef("node", None, "node-1", "node/node-1")
EXTERNAL = WorkloadRef("external", None, "www.example.com", "www.example.com (outside the cluster)")
NODEPORT = WorkloadRef("service", "shop", "frontend-nodeport", "NodePort 30080 on node/node-2 (svc/frontend-nodeport in shop)")


def _ask(session: Session, source: WorkloadRef, target: WorkloadRef, at: datetime) -> str:
    inv = service.start_investigation(
        session, question="q", asked_by=ANA, origin=Origin.CLI, owner="cli:1", source=source, target=target, started_at=at
    )
    verdict = Verdict(VerdictCode.NO_FAULT_FOUND, "reaches it", None, None)
    service.finish_investigation(session, inv, verdict, duration_ms=5.0, finished_at=at + timedelta(seconds=1))
    return inv


@pytest.mark.parametrize(("source", "target"), [(OUTSIDE, NODEPORT), (NODE, EXTERNAL), (OUTSIDE, EXTERNAL)])
def test_new_ends_read_back_and_count_as_seen_before(
    sessions: sessionmaker[Session], source: WorkloadRef, target: WorkloadRef
) -> None:
    with sessions.begin() as session:
        first = _ask(session, source, target, NOW)
        _ask(session, NODE if source is OUTSIDE else OUTSIDE, target, NOW + timedelta(minutes=1))
    with sessions.begin() as session:
        view = service.get_investigation(session, first)
        assert (view.source, view.target) == (source, target)
        assert view.namespaces == tuple(ns for ns in (target.namespace,) if ns)
        seen = service.seen_before(session, source, target, VerdictCode.NO_FAULT_FOUND, now=NOW + timedelta(hours=1))
        assert seen.count == 1 and seen.last_id == first
