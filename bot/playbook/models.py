"""The diagnosis as plain frozen data: what a step observed and what the investigation concluded.

These types cross every boundary (playbook -> history -> renderers) unchanged; they hold no Slack,
SQL or gRPC objects. Evidence data is JSON-compatible so it can be stored and rendered as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from bot.parse.models import Question
from bot.verdicts import Hop, VerdictCode

__all__ = [
    "Evidence",
    "Finding",
    "Hop",
    "InvestigationResult",
    "JSONValue",
    "NameChoice",
    "Person",
    "ResolutionView",
    "SeenBefore",
    "StepResult",
    "StepStatus",
    "Verdict",
    "VerdictCode",
]

JSONValue = Any
"""A JSON-compatible value (dict, list, str, int, float, bool, None)."""


class StepStatus(StrEnum):
    """Outcome of one playbook step."""

    PASS = "pass"  # noqa: S105 - a step status, not a password
    FAIL = "fail"
    WARN = "warn"
    SKIP = "skip"


@dataclass(frozen=True)
class Evidence:
    """One observation: what was looked at (`kind`, e.g. "route-lookup"), where, and what was seen."""

    kind: str
    summary: str
    node: str | None = None
    data: Mapping[str, JSONValue] = field(default_factory=dict)


@dataclass(frozen=True)
class StepResult:
    """The result of one playbook step."""

    name: str
    status: StepStatus
    summary: str
    evidence: tuple[Evidence, ...] = ()
    duration_ms: float = 0.0
    node: str | None = None
    kind: str = ""
    """What the step checks, without the pods and nodes in its name ("source: policy", "path (DNS)"):
    the bounded label metrics count it under, set by every playbook step (`steps.base.result`)."""


@dataclass(frozen=True)
class Finding:
    """A problem seen on the way that is not the verdict."""

    code: VerdictCode
    summary: str
    node: str | None = None
    hop: Hop | None = None


@dataclass(frozen=True)
class Verdict:
    """The one conclusion of an investigation: the first cause on the packet's path."""

    code: VerdictCode
    summary: str
    node: str | None = None
    hop: Hop | None = None
    remediation: tuple[str, ...] = ()


@dataclass(frozen=True)
class NameChoice:
    """One object an ambiguous name may mean (``svc/api in shop``) and the question that names it precisely."""

    label: str
    question: str


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
class InvestigationResult:
    """A finished investigation, as stored and rendered."""

    id: str
    question: str
    source: str
    target: str
    verdict: Verdict
    steps: tuple[StepResult, ...]
    findings: tuple[Finding, ...]
    duration_ms: float
    started_at: datetime
    namespaces: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    per_source: dict[str, str] = field(default_factory=dict)
    parsed: Question | None = None
    seen_before: SeenBefore | None = None
    """When the same source → target reached the same verdict before (worded by `bot.render.seen`)."""
    choices: tuple[NameChoice, ...] = ()
    """For an AMBIGUOUS_NAME verdict: each object the name matched, with the question to ask instead."""
