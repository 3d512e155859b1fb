"""The history as callers see it: plain frozen data (who asked, what was seen before, one stored
investigation), with no SQL in it, so renderers can take it. `bot.history.service` reads and writes it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.history.enums import InvestigationStatus, Origin
from bot.playbook.models import Finding, Person, ResolutionView, SeenBefore, StepResult, Verdict

__all__ = [
    "Asker",
    "DigestSlot",
    "InterruptedInvestigation",
    "InvestigationView",
    "Person",
    "ResolutionView",
    "SeenBefore",
    "WorkloadRef",
]


@dataclass(frozen=True)
class WorkloadRef:
    """A source or target as the question named it after resolution."""

    kind: str | None
    namespace: str | None
    name: str | None
    display: str
    """How people read it, e.g. ``deployment shop/web`` or ``10.244.1.5``."""


@dataclass(frozen=True)
class Asker:
    """Who asked and where: the CLI user, or a Slack user in a channel and thread."""

    person: Person
    origin: Origin
    channel: str | None = None
    thread_ts: str | None = None


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
class DigestSlot:
    """A digest slot this process claimed and must now post."""

    run_id: int
    subscription_id: int
    slot_at: datetime
