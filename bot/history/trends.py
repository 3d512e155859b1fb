"""The history over time, for the web UI's digest page and an investigation's re-run list: verdicts
per week, conntrack fill per node (read from the source-node steps' evidence), recurring problems,
and the other runs of the same question. Reads only, given a session; never commits."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.history.models import Investigation, Step
from bot.history.views import InvestigationView

MAX_ROWS = 5000
"""Investigations (and steps) read for one trend: bounded, newest first."""
_NODE_STEP = "source node "

Visible = Callable[[tuple[str, ...], str | None], bool]
"""Whether the caller may see an investigation, given its namespaces and channel."""


@dataclass(frozen=True)
class WeekCount:
    """Investigations that started in the week beginning `week` (a Monday), by verdict code."""

    week: datetime
    by_code: dict[str, int]


@dataclass(frozen=True)
class FillSample:
    """One reading of a node's conntrack table: when, entries, limit."""

    at: datetime
    count: int
    max: int

    @property
    def ratio(self) -> float:
        """count / max (0 when the limit is unknown)."""
        return self.count / self.max if self.max else 0.0


@dataclass(frozen=True)
class Recurring:
    """The same verdict for the same source and target, more than once."""

    source: str
    target: str
    code: str
    count: int
    last_id: str
    last_at: datetime


@dataclass(frozen=True)
class RunLine:
    """One run of a question, for the re-run list."""

    id: str
    started_at: datetime
    code: str | None
    asked_by: str


def _monday(at: datetime) -> datetime:
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=day.weekday())


def _visible_rows(session: Session, since: datetime, visible: Visible) -> list[Investigation]:
    rows = session.scalars(
        select(Investigation).where(Investigation.started_at >= since).order_by(Investigation.started_at.desc()).limit(MAX_ROWS)
    ).all()
    return [r for r in rows if visible(tuple(r.namespaces or ()), r.channel)]


def verdicts_per_week(session: Session, since: datetime, visible: Visible) -> list[WeekCount]:
    """Finished investigations per week and verdict code, oldest week first."""
    weeks: dict[datetime, Counter[str]] = defaultdict(Counter)
    for row in _visible_rows(session, since, visible):
        if row.verdict_code is not None:
            weeks[_monday(row.started_at)][row.verdict_code.value] += 1
    return [WeekCount(week, dict(sorted(counts.items()))) for week, counts in sorted(weeks.items())]


def recurring_problems(session: Session, since: datetime, visible: Visible, *, least: int = 2) -> list[Recurring]:
    """Verdicts (other than NO_FAULT_FOUND) reached at least `least` times for one source → target, most first."""
    groups: dict[tuple[str, str, str], list[Investigation]] = defaultdict(list)
    for row in _visible_rows(session, since, visible):
        if row.verdict_code is None or row.verdict_code.value == "NO_FAULT_FOUND":
            continue
        groups[(row.source_display or "?", row.target_display or "?", row.verdict_code.value)].append(row)
    found = [
        Recurring(source, target, code, len(rows), rows[0].public_id, rows[0].started_at)
        for (source, target, code), rows in groups.items()
        if len(rows) >= least
    ]
    return sorted(found, key=lambda r: (-r.count, r.source, r.target, r.code))


def conntrack_fill(session: Session, since: datetime, visible: Visible) -> dict[str, list[FillSample]]:
    """Node → its conntrack readings over time (oldest first), from the source-node steps' evidence."""
    rows = session.execute(
        select(Step.node, Step.evidence, Investigation.started_at, Investigation.namespaces, Investigation.channel)
        .join(Investigation, Step.investigation_id == Investigation.id)
        .where(Investigation.started_at >= since, Step.name.like(f"{_NODE_STEP}%"))
        .order_by(Investigation.started_at.desc())
        .limit(MAX_ROWS)
    ).all()
    by_node: dict[str, list[FillSample]] = defaultdict(list)
    for node, evidence, at, namespaces, channel in rows:
        if not node or not visible(tuple(namespaces or ()), channel):
            continue
        for item in evidence or []:
            data = item.get("data") if isinstance(item, dict) and item.get("kind") == "node" else None
            if isinstance(data, dict) and isinstance(data.get("conntrack_max"), int) and data["conntrack_max"] > 0:
                count = data.get("conntrack_count")
                by_node[str(node)].append(FillSample(at, count if isinstance(count, int) else 0, data["conntrack_max"]))
    return {node: sorted(samples, key=lambda s: s.at) for node, samples in sorted(by_node.items())}


def other_runs(session: Session, view: InvestigationView, visible: Visible, *, limit: int = 20) -> list[RunLine]:
    """The runs of the same source → target (re-runs and repeats), newest first, this one included."""
    if view.source is None or view.target is None:
        return []
    rows = session.scalars(
        select(Investigation)
        .where(Investigation.source_display == view.source.display, Investigation.target_display == view.target.display)
        .order_by(Investigation.started_at.desc())
        .limit(limit)
    ).all()
    return [
        RunLine(r.public_id, r.started_at, r.verdict_code.value if r.verdict_code else None, r.asked_by_name)
        for r in rows
        if visible(tuple(r.namespaces or ()), r.channel)
    ]


def visible_ids(session: Session, ids: Sequence[str], visible: Visible) -> set[str]:
    """Which of the investigations `ids` the caller may see (by their namespaces and channel)."""
    if not ids:
        return set()
    rows = session.execute(
        select(Investigation.public_id, Investigation.namespaces, Investigation.channel).where(Investigation.public_id.in_(ids))
    ).all()
    return {public_id for public_id, namespaces, channel in rows if visible(tuple(namespaces or ()), channel)}
