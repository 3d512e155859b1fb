"""The fixed vocabularies of the investigation history, stored as their string values."""

from __future__ import annotations

from enum import StrEnum


class Origin(StrEnum):
    """Where a question came from."""

    SLACK = "slack"
    CLI = "cli"
    API = "api"


class InvestigationStatus(StrEnum):
    """Lifecycle of an investigation: `running` until it ends one of the three other ways."""

    RUNNING = "running"
    DONE = "done"
    INTERRUPTED = "interrupted"
    FAILED = "failed"


class DigestCadence(StrEnum):
    """How often a channel's health digest is posted."""

    DAILY = "daily"
    WEEKLY = "weekly"


class DigestRunStatus(StrEnum):
    """State of one digest slot: claimed and `running`, then `posted` or `failed`."""

    RUNNING = "running"
    POSTED = "posted"
    FAILED = "failed"


class AuditAction(StrEnum):
    """What a request asked the bot to do."""

    ASK = "ask"
    SEARCH = "search"
    DIGEST = "digest"
    SUBSCRIBE = "subscribe"
    RESOLVE = "resolve"
    RERUN = "rerun"
    EVIDENCE = "evidence"
    OTHER = "other"
