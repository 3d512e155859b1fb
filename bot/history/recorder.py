"""Writing an investigation to the history as it runs: one short transaction per event.

The investigation row is created when the question is resolved, each step is committed as it
finishes, and the verdict closes it — so a crash loses at most the step in flight, and a process
that dies leaves a `running` row that the next start marks interrupted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bot.history import service
from bot.history.db import create_history_engine, process_owner, resolve_database_url, session_factory, upgrade
from bot.history.enums import Origin
from bot.history.service import Person, SeenBefore, WorkloadRef
from bot.playbook.models import InvestigationResult, StepResult, Verdict
from bot.settings import BotSettings

log = logging.getLogger("kubereach.history")


@dataclass(frozen=True)
class Asker:
    """Who asked and where: the CLI user, or a Slack user in a channel and thread."""

    person: Person
    origin: Origin
    channel: str | None = None
    thread_ts: str | None = None


class HistoryRecorder:
    """Records investigations in the history database; every write is its own transaction.

    A failing database never fails the investigation: the error is logged and the reply still goes
    out (the history is the record, not a dependency of the answer).
    """

    def __init__(self, sessions: sessionmaker[Session], cluster: str | None = None) -> None:
        self.sessions = sessions
        self.cluster = cluster
        self.owner = process_owner()

    @classmethod
    def from_url(cls, url: str | None, cluster: str | None = None, *, migrate: bool = True) -> HistoryRecorder:
        """Open (and migrate to head) the database at `url`, or the default SQLite file."""
        resolved = resolve_database_url(url)
        engine = create_history_engine(resolved)
        if migrate:
            upgrade(engine)
        return cls(session_factory(engine), cluster)

    @classmethod
    def from_settings(cls, settings: BotSettings, *, migrate: bool = True) -> HistoryRecorder:
        """The history database of `settings` (migrated to head), recording under its cluster name."""
        return cls.from_url(settings.history_url(), settings.cluster, migrate=migrate)

    def database_answers(self) -> bool:
        """True when the database answers a trivial query (the bot's readiness)."""
        from sqlalchemy import text

        try:
            with self.sessions() as session:
                session.execute(text("SELECT 1"))
            return True
        except SQLAlchemyError:
            return False

    def start(
        self,
        question: str,
        asker: Asker,
        source: WorkloadRef | None,
        target: WorkloadRef | None,
        namespaces: Sequence[str],
        investigation_id: str | None = None,
    ) -> str | None:
        """Create the running investigation (under `investigation_id` when given); None when the database is unavailable."""
        try:
            with self.sessions.begin() as session:
                return service.start_investigation(
                    session,
                    question=question,
                    asked_by=asker.person,
                    origin=asker.origin,
                    owner=self.owner,
                    source=source,
                    target=target,
                    namespaces=namespaces,
                    cluster=self.cluster,
                    channel=asker.channel,
                    thread_ts=asker.thread_ts,
                    public_id=investigation_id,
                )
        except SQLAlchemyError as exc:
            log.error("history: cannot record the investigation: %s", exc)
            return None

    def step(self, investigation_id: str | None, step: StepResult, order: int) -> None:
        """Commit one finished step."""
        if investigation_id is None:
            return
        try:
            with self.sessions.begin() as session:
                service.record_step(session, investigation_id, step, order)
        except SQLAlchemyError as exc:
            log.error("history: cannot record step %s of %s: %s", order, investigation_id, exc)

    def finish(self, investigation_id: str | None, result: InvestigationResult) -> None:
        """Close the investigation with its verdict and findings."""
        if investigation_id is None:
            return
        try:
            with self.sessions.begin() as session:
                service.finish_investigation(session, investigation_id, result.verdict, result.findings, result.duration_ms)
        except SQLAlchemyError as exc:
            log.error("history: cannot record the verdict of %s: %s", investigation_id, exc)

    def fail(self, investigation_id: str | None, error: str) -> None:
        """Mark the investigation failed (it could not run to a verdict)."""
        if investigation_id is None:
            return
        try:
            with self.sessions.begin() as session:
                service.fail_investigation(session, investigation_id, error)
        except SQLAlchemyError as exc:
            log.error("history: cannot mark %s failed: %s", investigation_id, exc)

    def seen_before(
        self, investigation_id: str | None, source: WorkloadRef, target: WorkloadRef, verdict: Verdict
    ) -> SeenBefore | None:
        """Earlier investigations with the same pair and verdict (excluding this one)."""
        try:
            with self.sessions() as session:
                return service.seen_before(session, source, target, verdict.code, verdict.node, exclude_id=investigation_id)
        except SQLAlchemyError as exc:
            log.error("history: cannot look up earlier investigations: %s", exc)
            return None
