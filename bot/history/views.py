"""The history as callers see it: plain frozen data (who asked, what was seen before, one stored
investigation), with no SQL in it, so renderers can take it. `bot.history.service` reads and writes it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.history.enums import InvestigationStatus, Origin
from bot.playbook.models import Finding, StepResult, Verdict


@dataclass(frozen=True)
class WorkloadRef:
    """A source or target as the question named it after resolution."""

    kind: str | None
    namespace: str | None
    name: str | None
    display: str
    """How people read it, e.g. ``deployment shop/web`` or ``10.244.1.5``."""


@dataclass(frozen=True)
class Person:
    """Someone who asked, resolved or subscribed (Slack user id or local user, and a display name)."""

    id: str
    name: str


@dataclass(frozen=True)
class ResolutionView:
    """What someone said fixed an investigation's problem."""

    by: Person
    at: datetime
    note: str


@dataclass(frozen=True)
class InvestigationView:
    """One investigation as stored, with its steps, findings and resolutions in order."""

    id: str
    question: str
    asked_by: Person
    origin: Origin
    channel: str | None
    thread_ts: str | None
    cluster: str | None
    source: WorkloadRef | None
    target: WorkloadRef | None
    namespaces: tuple[str, ...]
    status: InvestigationStatus
    verdict: Verdict | None
    error: str | None
    started_at: datetime
    finished_at: datetime | None
    duration_ms: float | None
    owner: str
    steps: tuple[StepResult, ...]
    findings: tuple[Finding, ...]
    resolutions: tuple[ResolutionView, ...]


@dataclass(frozen=True)
class InterruptedInvestigation:
    """An investigation closed because its process died, and where to tell people."""

    id: str
    question: str
    owner: str
    channel: str | None
    thread_ts: str | None


@dataclass(frozen=True)
class SeenBefore:
    """How often the same verdict was reached for the same source and target recently."""

    count: int
    within: timedelta
    first_at: datetime | None
    last_at: datetime | None
    last_id: str | None
    last_asked_by: Person | None
    last_channel: str | None
    last_thread_ts: str | None
    last_resolution: ResolutionView | None
    """The newest resolution among those investigations, if anyone recorded one."""


@dataclass(frozen=True)
class DigestSlot:
    """A digest slot this process claimed and must now post."""

    run_id: int
    subscription_id: int
    slot_at: datetime
