"""Writing and reading investigations, interruption, resolutions, seen-before, digest slots, audit."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bot.history import service
from bot.history.db import local_owner_is_alive, process_owner
from bot.history.enums import AuditAction, DigestCadence, DigestRunStatus, InvestigationStatus, Origin
from bot.history.errors import HistoryError, InvestigationNotFound
from bot.history.models import DigestRun, Step
from bot.history.service import Person, WorkloadRef
from bot.playbook.models import Evidence, Finding, Hop, StepResult, StepStatus, Verdict, VerdictCode

ANA = Person("U01ANA", "ana")
BOB = Person("U02BOB", "bob")
WEB = WorkloadRef("deployment", "shop", "web", "deployment shop/web")
API = WorkloadRef("service", "shop", "api", "service shop/api:8080")
REDIS = WorkloadRef("service", "cache", "redis", "service cache/redis:6379")
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def _start(session: Session, *, owner: str = "bot-0:100", target: WorkloadRef = API, at: datetime = NOW, **kw: object) -> str:
    return service.start_investigation(
        session,
        question=f"why can't web reach {target.name}?",
        asked_by=kw.pop("asked_by", ANA),  # type: ignore[arg-type]
        origin=Origin.SLACK,
        owner=owner,
        source=WEB,
        target=target,
        cluster="lab",
        channel=kw.pop("channel", "C0INCIDENT"),  # type: ignore[arg-type]
        thread_ts=kw.pop("thread_ts", "1700000000.000100"),  # type: ignore[arg-type]
        started_at=at,
    )


def _step(name: str, status: StepStatus = StepStatus.PASS, **data: object) -> StepResult:
    return StepResult(
        name=name,
        status=status,
        summary=f"{name} looked fine" if status is StepStatus.PASS else f"{name} failed",
        evidence=(Evidence(kind=name, summary=f"checked {name}", node="node-1", data=dict(data)),),
        duration_ms=3.5,
        node="node-1",
    )


def _finish(session: Session, inv: str, code: VerdictCode = VerdictCode.SERVICE_NO_ENDPOINTS, node: str | None = None) -> None:
    service.finish_investigation(
        session,
        inv,
        Verdict(code=code, summary="service shop/api selects no ready pods", node=node, hop=Hop.SERVICE_NAT),
        duration_ms=42.0,
        finished_at=NOW + timedelta(seconds=1),
    )


def test_investigation_written_step_by_step_reads_back_in_order(sessions: sessionmaker[Session]) -> None:
    steps = [
        _step("resolve-names"),
        _step("endpoints", StepStatus.FAIL, ready=0, selector={"app": "api"}),
        _step("conntrack", StepStatus.SKIP),
    ]
    with sessions.begin() as session:
        inv = _start(session)
    for order in (2, 1, 3):  # out of order on purpose: the view sorts by order
        with sessions.begin() as session:
            service.record_step(session, inv, steps[order - 1], order)
    finding = Finding(VerdictCode.CONNTRACK_TABLE_FULL, "node-1 conntrack at 99%", node="node-1", hop=Hop.SOURCE_NODE)
    verdict = Verdict(
        VerdictCode.SERVICE_NO_ENDPOINTS,
        "service shop/api selects no ready pods",
        node=None,
        hop=Hop.SERVICE_NAT,
        remediation=("check the selector app=api", "kubectl -n shop get pods -l app=api"),
    )
    with sessions.begin() as session:
        service.finish_investigation(session, inv, verdict, [finding], duration_ms=42.0, finished_at=NOW + timedelta(seconds=2))

    with sessions() as session:
        view = service.get_investigation(session, inv)
    assert view.id == inv and view.id.startswith("inv_")
    assert view.status is InvestigationStatus.DONE
    assert view.steps == tuple(steps)
    assert view.findings == (finding,)
    assert view.verdict == verdict
    assert view.source == WEB and view.target == API
    assert view.namespaces == ("shop",)
    assert view.asked_by == ANA and view.channel == "C0INCIDENT" and view.thread_ts == "1700000000.000100"
    assert view.started_at == NOW and view.started_at.tzinfo is not None
    assert view.finished_at == NOW + timedelta(seconds=2)
    assert view.duration_ms == 42.0


def test_recording_the_same_step_order_again_replaces_it(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        inv = _start(session)
        service.record_step(session, inv, _step("endpoints", StepStatus.WARN), 1)
        service.record_step(session, inv, _step("endpoints", StepStatus.FAIL), 1)
    with sessions() as session:
        assert [s.status for s in service.get_investigation(session, inv).steps] == [StepStatus.FAIL]


def test_committed_step_survives_when_the_next_transaction_fails(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        inv = _start(session)
    with sessions.begin() as session:
        service.record_step(session, inv, _step("resolve-names"), 1)

    unstorable = StepResult("probe", StepStatus.FAIL, "probe failed", (Evidence("probe", "x", data={"at": object()}),))
    with pytest.raises(HistoryError, match="cannot be stored"), sessions.begin() as session:
        service.record_step(session, inv, _step("endpoints"), 2)  # flushed, then rolled back with the failure
        service.record_step(session, inv, unstorable, 3)

    with sessions() as session:
        view = service.get_investigation(session, inv)
        assert [step.name for step in view.steps] == ["resolve-names"]
        assert view.status is InvestigationStatus.RUNNING
        assert session.scalars(select(Step.position)).all() == [1]


def test_mark_interrupted_closes_only_running_investigations_of_dead_owners(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        dead_running = _start(session, owner="bot-0:111", thread_ts="1.1")
        dead_finished = _start(session, owner="bot-0:111", thread_ts="1.2")
        _finish(session, dead_finished)
        alive_running = _start(session, owner="bot-1:222", thread_ts="1.3")
    asked: list[str] = []

    def owner_is_alive(owner: str) -> bool:
        asked.append(owner)
        return owner == "bot-1:222"

    with sessions() as session:
        dead = [owner for owner in service.running_owners(session) if not owner_is_alive(owner)]
    with sessions.begin() as session:
        interrupted = service.mark_interrupted(session, dead, at=NOW + timedelta(minutes=5))
    assert sorted(asked) == ["bot-0:111", "bot-1:222"]
    assert [(i.id, i.channel, i.thread_ts, i.owner) for i in interrupted] == [(dead_running, "C0INCIDENT", "1.1", "bot-0:111")]
    with sessions() as session:
        assert service.get_investigation(session, dead_running).status is InvestigationStatus.INTERRUPTED
        assert service.get_investigation(session, dead_running).finished_at == NOW + timedelta(minutes=5)
        assert service.get_investigation(session, dead_finished).status is InvestigationStatus.DONE
        assert service.get_investigation(session, alive_running).status is InvestigationStatus.RUNNING
    with sessions() as session:
        assert service.running_owners(session) == ["bot-1:222"]
    with sessions.begin() as session:
        assert service.mark_interrupted(session, ["bot-0:111"]) == []


def test_local_owner_is_alive_tells_this_process_from_an_exited_one() -> None:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    hostname, pid, start_ticks = process_owner().split(":")
    assert local_owner_is_alive(process_owner())
    assert not local_owner_is_alive(f"{hostname}:{child.stdout.strip()}:1")
    assert not local_owner_is_alive(f"{hostname}:{pid}:{int(start_ticks) + 1}")  # same pid, a later process
    assert local_owner_is_alive("another-host.example:1:1")  # only that host can tell


def test_resolve_records_who_when_and_what(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        inv = _start(session)
        _finish(session, inv)
    with sessions.begin() as session:
        service.resolve(session, inv, BOB, "scaled api back to 2 replicas", at=NOW + timedelta(hours=1))
    with sessions() as session:
        (resolution,) = service.get_investigation(session, inv).resolutions
    assert resolution == service.ResolutionView(BOB, NOW + timedelta(hours=1), "scaled api back to 2 replicas")


def test_unknown_investigation_id_raises_not_found(sessions: sessionmaker[Session]) -> None:
    with sessions() as session, pytest.raises(InvestigationNotFound, match="inv_nope"):
        service.resolve(session, "inv_nope", BOB, "fixed")


def test_seen_before_counts_the_same_pair_and_verdict_within_the_window(sessions: sessionmaker[Session]) -> None:
    code = VerdictCode.SERVICE_NO_ENDPOINTS
    with sessions.begin() as session:
        old = _start(session, at=NOW - timedelta(days=40))
        _finish(session, old, code)
        first = _start(session, at=NOW - timedelta(days=20))
        _finish(session, first, code)
        service.resolve(session, first, BOB, "fixed the selector", at=NOW - timedelta(days=19))
        last = _start(session, at=NOW - timedelta(days=2), asked_by=BOB)
        _finish(session, last, code)
        other_verdict = _start(session, at=NOW - timedelta(days=1))
        _finish(session, other_verdict, VerdictCode.DNS_RESOLUTION_FAILED)
        other_target = _start(session, at=NOW - timedelta(days=1), target=REDIS)
        _finish(session, other_target, code)
        _start(session, at=NOW - timedelta(days=1))  # still running: no verdict yet
        current = _start(session, at=NOW)
        _finish(session, current, code)

    with sessions() as session:
        seen = service.seen_before(session, WEB, API, code, now=NOW, exclude_id=current)
        never = service.seen_before(session, WEB, REDIS, VerdictCode.MTU_MISMATCH, now=NOW)
    assert seen.count == 2
    assert seen.first_at == NOW - timedelta(days=20)
    assert seen.last_at == NOW - timedelta(days=2)
    assert seen.last_id == last and seen.last_asked_by == BOB
    assert seen.last_resolution is not None and seen.last_resolution.note == "fixed the selector"
    assert never.count == 0 and never.last_at is None


def test_seen_before_with_a_node_counts_only_verdicts_on_that_node(sessions: sessionmaker[Session]) -> None:
    code = VerdictCode.CONNTRACK_TABLE_FULL
    with sessions.begin() as session:
        for node in ("node-1", "node-1", "node-2"):
            inv = _start(session, at=NOW - timedelta(days=1))
            _finish(session, inv, code, node=node)
    with sessions() as session:
        assert service.seen_before(session, WEB, API, code, "node-1", now=NOW).count == 2
        assert service.seen_before(session, WEB, API, code, "node-2", now=NOW).count == 1
        assert service.seen_before(session, WEB, API, code, now=NOW).count == 3


def test_a_digest_slot_is_claimed_once(sessions: sessionmaker[Session]) -> None:
    slot = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
    with sessions.begin() as session:
        subscription = service.subscribe_digest(
            session,
            channel="C0OPS",
            cadence=DigestCadence.WEEKLY,
            time_of_day="09:00",
            timezone="Europe/Lisbon",
            weekday=0,
            namespaces=["shop"],
            created_by=ANA,
        )
    with sessions.begin() as session:
        claimed = service.claim_digest_slot(session, subscription, slot, "bot-0:1")
    with sessions.begin() as session:
        again = service.claim_digest_slot(session, subscription, slot, "bot-1:2")
        next_slot = service.claim_digest_slot(session, subscription, slot + timedelta(days=7), "bot-1:2")
    assert claimed is not None and claimed.slot_at == slot
    assert again is None
    assert next_slot is not None

    with pytest.raises(IntegrityError), sessions.begin() as session:
        session.add(
            DigestRun(subscription_id=subscription, slot_at=slot, started_at=NOW, status=DigestRunStatus.RUNNING, owner="x")
        )

    with sessions.begin() as session:
        service.finish_digest_run(session, claimed.run_id, DigestRunStatus.POSTED, {"verdicts": {"MTU_MISMATCH": 2}})
    with sessions() as session:
        run = session.get_one(DigestRun, claimed.run_id)
        assert (run.status, run.content, run.owner) == (DigestRunStatus.POSTED, {"verdicts": {"MTU_MISMATCH": 2}}, "bot-0:1")
        assert run.slot_at == slot


def test_audit_keeps_allowed_and_denied_requests_newest_first(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        service.audit(session, who=ANA, action=AuditAction.ASK, text="web -> api", allowed=True, channel="C1", at=NOW)
        service.audit(
            session,
            who=BOB,
            action=AuditAction.SEARCH,
            text="payments",
            allowed=False,
            channel="C2",
            reason="channel C2 may not ask about namespace payments",
            at=NOW + timedelta(minutes=1),
        )
    with sessions() as session:
        trail = service.audit_trail(session)
        bobs = service.audit_trail(session, user_id=BOB.id)
    assert [(r.who, r.action, r.allowed) for r in trail] == [(BOB, AuditAction.SEARCH, False), (ANA, AuditAction.ASK, True)]
    assert bobs[0].reason == "channel C2 may not ask about namespace payments" and bobs[0].at == NOW + timedelta(minutes=1)
    assert len(bobs) == 1
