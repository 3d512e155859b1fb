"""Digest subscriptions, previous digests and the history summary, read and written given a session.

Like `bot.history.service`, nothing here commits: the caller owns the transaction. A channel has at
most one enabled subscription (a new one replaces it); on-demand digests (`/reach digest now`,
`kubereach digest`) are recorded as runs of the channel's subscription, or of a disabled one created
for the purpose, so that the next digest can say what changed since.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, exists, func, or_, select, update
from sqlalchemy.orm import Session

from bot.digest.models import HistorySummary, Recurrence, UnresolvedInvestigation, VerdictCount
from bot.history import service
from bot.history.enums import DigestCadence, DigestRunStatus, InvestigationStatus
from bot.history.models import DigestRun, DigestSubscription, Investigation, Resolution
from bot.history.service import Person
from bot.playbook.models import VerdictCode

HISTORY_WINDOW = timedelta(days=30)
"""Recurring and unresolved investigations are looked for in this window."""
UNRESOLVED_SHOWN = 10
RECURRING_SHOWN = 10
ON_DEMAND_TIME = "00:00"


@dataclass(frozen=True)
class SubscriptionView:
    """A channel's digest subscription as stored."""

    id: int
    channel: str
    cadence: DigestCadence
    time_of_day: str
    timezone: str
    weekday: int | None
    namespaces: tuple[str, ...]
    enabled: bool
    created_at: datetime
    created_by: Person

    @property
    def period(self) -> timedelta:
        """The time between two slots."""
        return timedelta(days=7) if self.cadence == DigestCadence.WEEKLY else timedelta(days=1)


@dataclass(frozen=True)
class PreviousDigest:
    """The newest posted digest of a channel: its content and when it was taken."""

    run_id: int
    slot_at: datetime
    content: dict[str, Any]


def _view(row: DigestSubscription) -> SubscriptionView:
    return SubscriptionView(
        id=row.id,
        channel=row.channel,
        cadence=row.cadence,
        time_of_day=row.time_of_day,
        timezone=row.timezone,
        weekday=row.weekday,
        namespaces=tuple(row.namespaces or ()),
        enabled=row.enabled,
        created_at=row.created_at,
        created_by=Person(row.created_by_id, row.created_by_name),
    )


def disable_subscriptions(session: Session, channel: str) -> int:
    """Turn off the channel's enabled subscriptions; returns how many there were."""
    result = session.execute(
        update(DigestSubscription)
        .where(DigestSubscription.channel == channel, DigestSubscription.enabled.is_(True))
        .values(enabled=False)
        .returning(DigestSubscription.id)
    )
    return len(result.all())


def replace_subscription(
    session: Session,
    *,
    channel: str,
    cadence: DigestCadence,
    time_of_day: str,
    timezone: str,
    weekday: int | None,
    namespaces: Sequence[str],
    created_by: Person,
    at: datetime | None = None,
) -> int:
    """Store the channel's subscription, replacing the one it had; returns the new id."""
    disable_subscriptions(session, channel)
    return service.subscribe_digest(
        session,
        channel=channel,
        cadence=cadence,
        time_of_day=time_of_day,
        timezone=timezone,
        created_by=created_by,
        weekday=weekday,
        namespaces=namespaces,
        at=at,
    )


def channel_subscription(session: Session, channel: str) -> SubscriptionView | None:
    """The channel's enabled subscription, if any."""
    row = session.scalars(
        select(DigestSubscription)
        .where(DigestSubscription.channel == channel, DigestSubscription.enabled.is_(True))
        .order_by(DigestSubscription.id.desc())
        .limit(1)
    ).one_or_none()
    return _view(row) if row is not None else None


def get_subscription(session: Session, subscription_id: int) -> SubscriptionView | None:
    """One subscription by id."""
    row = session.get(DigestSubscription, subscription_id)
    return _view(row) if row is not None else None


def enabled_subscriptions(session: Session) -> list[SubscriptionView]:
    """Every enabled subscription, oldest first."""
    rows = session.scalars(
        select(DigestSubscription).where(DigestSubscription.enabled.is_(True)).order_by(DigestSubscription.id)
    ).all()
    return [_view(row) for row in rows]


def on_demand_subscription(session: Session, channel: str, who: Person, *, at: datetime | None = None) -> int:
    """The subscription an on-demand digest of `channel` is recorded under (created disabled if none)."""
    row = session.scalars(
        select(DigestSubscription)
        .where(DigestSubscription.channel == channel)
        .order_by(DigestSubscription.enabled.desc(), DigestSubscription.id.desc())
        .limit(1)
    ).one_or_none()
    if row is not None:
        return row.id
    subscription_id = service.subscribe_digest(
        session,
        channel=channel,
        cadence=DigestCadence.DAILY,
        time_of_day=ON_DEMAND_TIME,
        timezone="UTC",
        created_by=who,
        at=at,
    )
    session.execute(update(DigestSubscription).where(DigestSubscription.id == subscription_id).values(enabled=False))
    return subscription_id


def previous_digest(session: Session, channel: str, *, exclude_run_id: int | None = None) -> PreviousDigest | None:
    """The channel's newest posted digest (of any of its subscriptions, on-demand ones included)."""
    statement = (
        select(DigestRun)
        .join(DigestSubscription, DigestRun.subscription_id == DigestSubscription.id)
        .where(
            DigestSubscription.channel == channel,
            DigestRun.status == DigestRunStatus.POSTED,
            DigestRun.content.is_not(None),
        )
        .order_by(DigestRun.slot_at.desc(), DigestRun.id.desc())
        .limit(1)
    )
    if exclude_run_id is not None:
        statement = statement.where(DigestRun.id != exclude_run_id)
    run = session.scalars(statement).one_or_none()
    if run is None or run.content is None:
        return None
    return PreviousDigest(run.id, run.slot_at, dict(run.content))


def slot_run_exists(session: Session, subscription_id: int, slot_at: datetime) -> bool:
    """Whether some process already claimed this slot."""
    found = session.scalar(
        select(func.count())
        .select_from(DigestRun)
        .where(DigestRun.subscription_id == subscription_id, DigestRun.slot_at == slot_at)
    )
    return bool(found)


def release_claim(session: Session, subscription_id: int, slot_at: datetime, owner: str) -> bool:
    """Give back `owner`'s unfinished claim of one slot (so another process or the next start runs it)."""
    result = session.execute(
        delete(DigestRun).where(
            DigestRun.subscription_id == subscription_id,
            DigestRun.slot_at == slot_at,
            DigestRun.owner == owner,
            DigestRun.status == DigestRunStatus.RUNNING,
        )
    )
    return bool(getattr(result, "rowcount", 0))


def release_stale_claims(session: Session, owner_is_alive: Callable[[str], bool]) -> int:
    """Give back the unfinished claims of processes that are gone (killed before they could release them)."""
    owners = session.scalars(select(DigestRun.owner).where(DigestRun.status == DigestRunStatus.RUNNING).distinct()).all()
    dead = [owner for owner in owners if not owner_is_alive(owner)]
    if not dead:
        return 0
    result = session.execute(delete(DigestRun).where(DigestRun.status == DigestRunStatus.RUNNING, DigestRun.owner.in_(dead)))
    return int(getattr(result, "rowcount", 0) or 0)


def _scope(namespaces: Sequence[str]) -> list[ColumnElement[bool]]:
    if not namespaces:
        return []
    names = list(namespaces)
    return [or_(Investigation.source_namespace.in_(names), Investigation.target_namespace.in_(names))]


def history_summary(
    session: Session,
    *,
    since: datetime,
    until: datetime,
    namespaces: Sequence[str] = (),
    window: timedelta = HISTORY_WINDOW,
) -> HistorySummary:
    """Investigations since the last digest by verdict, recurring ones and unresolved ones (in `window`)."""
    scope = _scope(namespaces)
    period = [Investigation.started_at >= since, Investigation.started_at < until, *scope]
    total = session.scalar(select(func.count()).select_from(Investigation).where(*period)) or 0
    verdict_rows = session.execute(
        select(Investigation.verdict_code, func.count())
        .where(*period, Investigation.verdict_code.is_not(None))
        .group_by(Investigation.verdict_code)
        .order_by(func.count().desc(), Investigation.verdict_code)
    ).all()
    window_start = until - window
    faults = [
        Investigation.status == InvestigationStatus.DONE,
        Investigation.verdict_code.is_not(None),
        Investigation.verdict_code != VerdictCode.NO_FAULT_FOUND,
        Investigation.started_at >= window_start,
        Investigation.started_at < until,
        *scope,
    ]
    recurring: list[Recurrence] = []
    by_node = session.execute(
        select(
            Investigation.verdict_code,
            Investigation.node,
            func.count(),
            func.max(Investigation.started_at),
            func.max(Investigation.public_id),
        )
        .where(*faults, Investigation.node.is_not(None))
        .group_by(Investigation.verdict_code, Investigation.node)
        .having(func.count() >= 2)
        .order_by(func.count().desc())
        .limit(RECURRING_SHOWN)
    ).all()
    for code, node, count, last_at, last_id in by_node:
        recurring.append(Recurrence("verdict-node", f"{code} on {node}", int(count), last_at, last_id, str(code)))
    finished = [
        Investigation.status == InvestigationStatus.DONE,
        Investigation.started_at >= window_start,
        Investigation.started_at < until,
        Investigation.source_display.is_not(None),
        Investigation.target_display.is_not(None),
        *scope,
    ]
    by_pair = session.execute(
        select(
            Investigation.source_display,
            Investigation.target_display,
            func.count(),
            func.max(Investigation.started_at),
            func.max(Investigation.public_id),
        )
        .where(*finished)
        .group_by(Investigation.source_display, Investigation.target_display)
        .having(func.count() >= 2)
        .order_by(func.count().desc())
        .limit(RECURRING_SHOWN)
    ).all()
    for source, target, count, last_at, last_id in by_pair:
        latest = session.scalar(select(Investigation.verdict_code).where(Investigation.public_id == last_id))
        recurring.append(
            Recurrence("pair", f"{source} → {target}", int(count), last_at, last_id, latest.value if latest else None)
        )
    recurring.sort(key=lambda r: (-r.count, r.label))
    unresolved_condition = and_(*faults, ~exists().where(Resolution.investigation_id == Investigation.id))
    unresolved_total = session.scalar(select(func.count()).select_from(Investigation).where(unresolved_condition)) or 0
    unresolved_rows = session.scalars(
        select(Investigation).where(unresolved_condition).order_by(Investigation.started_at.desc()).limit(UNRESOLVED_SHOWN)
    ).all()
    return HistorySummary(
        since=since,
        until=until,
        investigations=int(total),
        verdicts=tuple(VerdictCount(str(code), int(count)) for code, count in verdict_rows),
        recurring=tuple(recurring),
        unresolved=tuple(
            UnresolvedInvestigation(
                id=row.public_id,
                question=row.question,
                verdict=row.verdict_code.value if row.verdict_code else "",
                node=row.node,
                started_at=row.started_at,
                asked_by=row.asked_by_name,
                channel=row.channel,
                thread_ts=row.thread_ts,
            )
            for row in unresolved_rows
        ),
        unresolved_total=int(unresolved_total),
        window_days=window.days,
    )
