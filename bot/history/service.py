"""Reads and writes of the investigation history, given a session.

The caller owns the transaction: nothing here commits. The bot commits after each recorded step so a
crash loses at most the step in flight, and `mark_interrupted` later closes investigations whose
process died. Reads return plain frozen views built from the domain types of `bot.playbook.models`.

This module is about the project's ~600 lines: every read and write of the history given a session.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, selectinload

from bot.history.enums import (
    AuditAction,
    DigestCadence,
    DigestRunStatus,
    InvestigationStatus,
    Origin,
)
from bot.history.errors import HistoryError, InvestigationNotFound
from bot.history.ids import new_investigation_id
from bot.history.models import (
    AuditEntry,
    DigestRun,
    DigestSubscription,
    FindingRecord,
    Investigation,
    Resolution,
    Step,
)
from bot.history.views import (
    DigestSlot,
    InterruptedInvestigation,
    InvestigationView,
    Person,
    ResolutionView,
    SeenBefore,
    WorkloadRef,
)
from bot.playbook.models import Evidence, Finding, StepResult, Verdict, VerdictCode

__all__ = [
    "AUDIT_TEXT_MAX",
    "SEEN_BEFORE_WINDOW",
    "AuditRecord",
    "DigestSlot",
    "InterruptedInvestigation",
    "InvestigationView",
    "Person",
    "ResolutionView",
    "SeenBefore",
    "WorkloadRef",
    "audit",
    "audit_excerpt",
    "audit_trail",
    "claim_digest_slot",
    "fail_investigation",
    "finish_digest_run",
    "finish_investigation",
    "get_investigation",
    "mark_interrupted",
    "record_finding",
    "record_step",
    "resolve",
    "running_owners",
    "seen_before",
    "set_thread",
    "start_investigation",
    "subscribe_digest",
]

SEEN_BEFORE_WINDOW = timedelta(days=30)
AUDIT_TEXT_MAX = 2000
"""The audit log keeps this many characters of a request's text."""


def _now() -> datetime:
    return datetime.now(UTC)


def _json_ready(value: Any, what: str) -> Any:
    """Check that `value` survives JSON; raise a HistoryError naming `what` otherwise."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as exc:
        raise HistoryError(
            f"{what} cannot be stored: {exc}",
            hint="evidence data must be JSON (dict, list, str, int, float, bool, None)",
        ) from exc


def _evidence_json(evidence: Iterable[Evidence], what: str) -> list[dict[str, Any]]:
    return [
        {"kind": item.kind, "summary": item.summary, "node": item.node, "data": _json_ready(dict(item.data), what)}
        for item in evidence
    ]


def _investigation(session: Session, investigation_id: str) -> Investigation:
    found = session.scalars(select(Investigation).where(Investigation.public_id == investigation_id)).one_or_none()
    if found is None:
        raise InvestigationNotFound(investigation_id)
    return found


def start_investigation(
    session: Session,
    *,
    question: str,
    asked_by: Person,
    origin: Origin,
    owner: str,
    source: WorkloadRef | None = None,
    target: WorkloadRef | None = None,
    namespaces: Sequence[str] = (),
    cluster: str | None = None,
    channel: str | None = None,
    thread_ts: str | None = None,
    started_at: datetime | None = None,
    public_id: str | None = None,
) -> str:
    """Record a new running investigation owned by `owner` (see `db.process_owner`); returns its id.

    `public_id` is the id the caller already announced (`bot.history.ids`); a new one when None.
    """
    started = started_at or _now()
    involved = list(dict.fromkeys([*namespaces, *(ref.namespace for ref in (source, target) if ref and ref.namespace)]))
    investigation = Investigation(
        public_id=public_id or new_investigation_id(started),
        question=question,
        asked_by_id=asked_by.id,
        asked_by_name=asked_by.name,
        channel=channel,
        thread_ts=thread_ts,
        origin=origin,
        cluster=cluster,
        source_kind=source.kind if source else None,
        source_namespace=source.namespace if source else None,
        source_name=source.name if source else None,
        source_display=source.display if source else None,
        target_kind=target.kind if target else None,
        target_namespace=target.namespace if target else None,
        target_name=target.name if target else None,
        target_display=target.display if target else None,
        namespaces=involved,
        status=InvestigationStatus.RUNNING,
        remediation=[],
        started_at=started,
        owner=owner,
    )
    session.add(investigation)
    session.flush()
    return investigation.public_id


def set_thread(session: Session, investigation_id: str, channel: str, thread_ts: str) -> None:
    """Attach the Slack thread the bot replied in (known only after the first message is posted)."""
    investigation = _investigation(session, investigation_id)
    investigation.channel = channel
    investigation.thread_ts = thread_ts
    session.flush()


def record_step(session: Session, investigation_id: str, result: StepResult, order: int) -> None:
    """Store step number `order` of an investigation; recording the same order again replaces it."""
    evidence = _evidence_json(result.evidence, f"evidence of step {result.name!r}")
    investigation = _investigation(session, investigation_id)
    step = session.scalars(select(Step).where(Step.investigation_id == investigation.id, Step.position == order)).one_or_none()
    if step is None:
        step = Step(investigation_id=investigation.id, position=order)
        session.add(step)
    step.name = result.name
    step.status = result.status
    step.summary = result.summary
    step.evidence = evidence
    step.node = result.node
    step.duration_ms = result.duration_ms
    session.flush()


def record_finding(session: Session, investigation_id: str, finding: Finding) -> None:
    """Store a problem seen on the way that is not the verdict."""
    investigation = _investigation(session, investigation_id)
    session.add(
        FindingRecord(
            investigation_id=investigation.id,
            code=finding.code,
            node=finding.node,
            hop=finding.hop,
            summary=finding.summary,
        )
    )
    session.flush()


def finish_investigation(
    session: Session,
    investigation_id: str,
    verdict: Verdict,
    findings: Iterable[Finding] = (),
    duration_ms: float | None = None,
    *,
    finished_at: datetime | None = None,
) -> None:
    """Close an investigation with its verdict and the findings not yet recorded."""
    investigation = _investigation(session, investigation_id)
    finished = finished_at or _now()
    investigation.status = InvestigationStatus.DONE
    investigation.verdict_code = verdict.code
    investigation.node = verdict.node
    investigation.hop = verdict.hop
    investigation.summary = verdict.summary
    investigation.remediation = list(verdict.remediation)
    investigation.finished_at = finished
    investigation.duration_ms = (
        duration_ms if duration_ms is not None else (finished - investigation.started_at).total_seconds() * 1000
    )
    for finding in findings:
        session.add(
            FindingRecord(
                investigation_id=investigation.id,
                code=finding.code,
                node=finding.node,
                hop=finding.hop,
                summary=finding.summary,
            )
        )
    session.flush()


def fail_investigation(session: Session, investigation_id: str, error: str, *, finished_at: datetime | None = None) -> None:
    """Close an investigation that could not reach a verdict, with the reason people were told.

    One already marked interrupted (its process was stopping) keeps that status.
    """
    investigation = _investigation(session, investigation_id)
    if investigation.status == InvestigationStatus.INTERRUPTED:
        return
    finished = finished_at or _now()
    investigation.status = InvestigationStatus.FAILED
    investigation.error = error
    investigation.finished_at = finished
    investigation.duration_ms = (finished - investigation.started_at).total_seconds() * 1000
    session.flush()


def running_owners(session: Session) -> list[str]:
    """The owners (``hostname:pid:start-ticks``) of the investigations still running, each once."""
    owners = session.scalars(
        select(Investigation.owner).where(Investigation.status == InvestigationStatus.RUNNING).distinct()
    ).all()
    return sorted(owners)


def mark_interrupted(session: Session, dead: Collection[str], *, at: datetime | None = None) -> list[InterruptedInvestigation]:
    """Close the running investigations of the `dead` owners; returns them for their threads.

    Which owners are dead is decided before the write transaction (`running_owners` in a read, then
    ``db.owner_is_alive`` per owner, which may ask the Kubernetes API): no transaction stays open
    while another system is asked.
    """
    now = at or _now()
    if not dead:
        return []
    stranded = session.scalars(
        select(Investigation)
        .where(Investigation.status == InvestigationStatus.RUNNING, Investigation.owner.in_(sorted(dead)))
        .order_by(Investigation.started_at)
    ).all()
    interrupted = []
    for investigation in stranded:
        investigation.status = InvestigationStatus.INTERRUPTED
        investigation.finished_at = now
        investigation.error = f"the bot process {investigation.owner} stopped before the investigation finished"
        interrupted.append(
            InterruptedInvestigation(
                id=investigation.public_id,
                question=investigation.question,
                owner=investigation.owner,
                channel=investigation.channel,
                thread_ts=investigation.thread_ts,
            )
        )
    session.flush()
    return interrupted


def resolve(session: Session, investigation_id: str, who: Person, note: str, *, at: datetime | None = None) -> ResolutionView:
    """Record that `who` resolved the problem an investigation found, and how."""
    investigation = _investigation(session, investigation_id)
    resolution = Resolution(
        investigation_id=investigation.id,
        resolved_by_id=who.id,
        resolved_by_name=who.name,
        resolved_at=at or _now(),
        note=note,
    )
    session.add(resolution)
    session.flush()
    return ResolutionView(by=who, at=resolution.resolved_at, note=note)


def _ref(kind: str | None, namespace: str | None, name: str | None, display: str | None) -> WorkloadRef | None:
    if display is None:
        return None
    return WorkloadRef(kind=kind, namespace=namespace, name=name, display=display)


def _evidence_from_json(items: Sequence[Mapping[str, Any]]) -> tuple[Evidence, ...]:
    return tuple(
        Evidence(kind=item["kind"], summary=item["summary"], node=item.get("node"), data=item.get("data") or {}) for item in items
    )


def get_investigation(session: Session, investigation_id: str) -> InvestigationView:
    """One investigation with its steps, findings and resolutions."""
    investigation = session.scalars(
        select(Investigation)
        .where(Investigation.public_id == investigation_id)
        .options(
            selectinload(Investigation.steps),
            selectinload(Investigation.findings),
            selectinload(Investigation.resolutions),
        )
    ).one_or_none()
    if investigation is None:
        raise InvestigationNotFound(investigation_id)
    verdict = None
    if investigation.verdict_code is not None:
        verdict = Verdict(
            code=investigation.verdict_code,
            summary=investigation.summary or "",
            node=investigation.node,
            hop=investigation.hop,
            remediation=tuple(investigation.remediation),
        )
    return InvestigationView(
        id=investigation.public_id,
        question=investigation.question,
        asked_by=Person(investigation.asked_by_id, investigation.asked_by_name),
        origin=investigation.origin,
        channel=investigation.channel,
        thread_ts=investigation.thread_ts,
        cluster=investigation.cluster,
        source=_ref(
            investigation.source_kind,
            investigation.source_namespace,
            investigation.source_name,
            investigation.source_display,
        ),
        target=_ref(
            investigation.target_kind,
            investigation.target_namespace,
            investigation.target_name,
            investigation.target_display,
        ),
        namespaces=tuple(investigation.namespaces),
        status=investigation.status,
        verdict=verdict,
        error=investigation.error,
        started_at=investigation.started_at,
        finished_at=investigation.finished_at,
        duration_ms=investigation.duration_ms,
        owner=investigation.owner,
        steps=tuple(
            StepResult(
                name=step.name,
                status=step.status,
                summary=step.summary,
                evidence=_evidence_from_json(step.evidence),
                duration_ms=step.duration_ms,
                node=step.node,
            )
            for step in investigation.steps
        ),
        findings=tuple(
            Finding(code=finding.code, summary=finding.summary, node=finding.node, hop=finding.hop)
            for finding in investigation.findings
        ),
        resolutions=tuple(
            ResolutionView(by=Person(r.resolved_by_id, r.resolved_by_name), at=r.resolved_at, note=r.note)
            for r in investigation.resolutions
        ),
    )


def seen_before(
    session: Session,
    source: WorkloadRef,
    target: WorkloadRef,
    verdict_code: VerdictCode,
    node: str | None = None,
    *,
    within: timedelta = SEEN_BEFORE_WINDOW,
    now: datetime | None = None,
    exclude_id: str | None = None,
) -> SeenBefore:
    """How many finished investigations in the last `within` reached `verdict_code` for this pair.

    Source and target match on namespace and name (the display form when there is no name); `node`,
    when given, must match the verdict's node. `exclude_id` leaves out the investigation asking.
    """
    since = (now or _now()) - within
    conditions = [
        Investigation.status == InvestigationStatus.DONE,
        Investigation.verdict_code == verdict_code,
        Investigation.started_at >= since,
        *_same_ref("source", source),
        *_same_ref("target", target),
    ]
    if node is not None:
        conditions.append(Investigation.node == node)
    if exclude_id is not None:
        conditions.append(Investigation.public_id != exclude_id)
    count, first_at = session.execute(select(func.count(), func.min(Investigation.started_at)).where(*conditions)).one()
    if count == 0:
        return SeenBefore(0, within, None, None, None, None, None, None, None)
    last = session.scalars(select(Investigation).where(*conditions).order_by(Investigation.started_at.desc()).limit(1)).one()
    matching_ids = select(Investigation.id).where(*conditions).scalar_subquery()
    resolution = session.scalars(
        select(Resolution).where(Resolution.investigation_id.in_(matching_ids)).order_by(Resolution.resolved_at.desc()).limit(1)
    ).one_or_none()
    return SeenBefore(
        count=int(count),
        within=within,
        first_at=first_at,
        last_at=last.started_at,
        last_id=last.public_id,
        last_asked_by=Person(last.asked_by_id, last.asked_by_name),
        last_channel=last.channel,
        last_thread_ts=last.thread_ts,
        last_resolution=ResolutionView(
            by=Person(resolution.resolved_by_id, resolution.resolved_by_name),
            at=resolution.resolved_at,
            note=resolution.note,
        )
        if resolution
        else None,
    )


def _same_ref(side: str, ref: WorkloadRef) -> list[Any]:
    namespace = getattr(Investigation, f"{side}_namespace")
    if ref.name is None:
        return [getattr(Investigation, f"{side}_display") == ref.display]
    name = getattr(Investigation, f"{side}_name")
    return [name == ref.name, namespace.is_(None) if ref.namespace is None else namespace == ref.namespace]


def audit_excerpt(text: str, limit: int | None = None) -> str:
    """At most `limit` (default `AUDIT_TEXT_MAX`) characters of `text`, saying how long it was when cut."""
    limit = AUDIT_TEXT_MAX if limit is None else limit
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} characters)"


def audit(
    session: Session,
    *,
    who: Person,
    action: AuditAction,
    text: str,
    allowed: bool,
    channel: str | None = None,
    reason: str | None = None,
    investigation_id: str | None = None,
    at: datetime | None = None,
) -> None:
    """Record one request to the bot and whether it was allowed (with the reason when denied).

    The request's text is kept as an excerpt of `AUDIT_TEXT_MAX` characters (saying how long it was),
    so no request can make the audit log store a whole body.
    """
    session.add(
        AuditEntry(
            at=at or _now(),
            user_id=who.id[:64],
            user_name=who.name[:255],
            channel=channel[:64] if channel else channel,
            text=audit_excerpt(text),
            action=action,
            allowed=allowed,
            reason=audit_excerpt(reason) if reason else reason,
            investigation_id=investigation_id[:40] if investigation_id else investigation_id,
        )
    )
    session.flush()


@dataclass(frozen=True)
class AuditRecord:
    """One audited request as stored."""

    at: datetime
    who: Person
    channel: str | None
    text: str
    action: AuditAction
    allowed: bool
    reason: str | None
    investigation_id: str | None


def audit_trail(
    session: Session, *, since: datetime | None = None, user_id: str | None = None, limit: int = 100
) -> list[AuditRecord]:
    """The newest audited requests first, optionally since a time or for one user."""
    statement = select(AuditEntry).order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(limit)
    if since is not None:
        statement = statement.where(AuditEntry.at >= since)
    if user_id is not None:
        statement = statement.where(AuditEntry.user_id == user_id)
    return [
        AuditRecord(
            at=entry.at,
            who=Person(entry.user_id, entry.user_name),
            channel=entry.channel,
            text=entry.text,
            action=entry.action,
            allowed=entry.allowed,
            reason=entry.reason,
            investigation_id=entry.investigation_id,
        )
        for entry in session.scalars(statement)
    ]


def subscribe_digest(
    session: Session,
    *,
    channel: str,
    cadence: DigestCadence,
    time_of_day: str,
    timezone: str,
    created_by: Person,
    weekday: int | None = None,
    namespaces: Sequence[str] = (),
    at: datetime | None = None,
) -> int:
    """Store a channel's digest subscription; returns its id."""
    subscription = DigestSubscription(
        channel=channel,
        cadence=cadence,
        time_of_day=time_of_day,
        timezone=timezone,
        weekday=weekday,
        namespaces=list(namespaces),
        enabled=True,
        created_by_id=created_by.id,
        created_by_name=created_by.name,
        created_at=at or _now(),
    )
    session.add(subscription)
    session.flush()
    return subscription.id


def claim_digest_slot(
    session: Session, subscription_id: int, slot_at: datetime, owner: str, *, at: datetime | None = None
) -> DigestSlot | None:
    """Claim one digest slot for this process; None when another process (or an earlier run) has it.

    The claim is an insert guarded by the unique (subscription, slot) constraint, so among replicas
    exactly one commit wins; the loser's insert does nothing and raises nothing.
    """
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(DigestRun)
        .values(
            subscription_id=subscription_id,
            slot_at=slot_at,
            started_at=at or _now(),
            status=DigestRunStatus.RUNNING,
            owner=owner,
        )
        .on_conflict_do_nothing(index_elements=[DigestRun.subscription_id, DigestRun.slot_at])
        .returning(DigestRun.id)
    )
    run_id = session.execute(statement).scalar_one_or_none()
    if run_id is None:
        return None
    return DigestSlot(run_id=run_id, subscription_id=subscription_id, slot_at=slot_at)


def finish_digest_run(
    session: Session,
    run_id: int,
    status: DigestRunStatus,
    content: Mapping[str, Any] | None,
    *,
    at: datetime | None = None,
) -> None:
    """Close a claimed digest slot as posted or failed, with what was posted."""
    session.execute(
        update(DigestRun)
        .where(DigestRun.id == run_id)
        .values(
            status=status,
            finished_at=at or _now(),
            content=_json_ready(dict(content), "digest content") if content is not None else None,
        )
    )
