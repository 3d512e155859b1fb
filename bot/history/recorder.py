"""Writing an investigation to the history as it runs: one short transaction per event.

The investigation row is created when the question is resolved, each step is committed as it
finishes, and the verdict closes it — so a crash loses at most the step in flight, and a process
that dies leaves a `running` row that the next `ask` or `serve` marks interrupted.

The history never fails an investigation. A database that cannot be reached (or migrated) leaves
the recorder *unavailable*: writes are skipped, `problem` says why, and the schema is tried again
later. Writes that SQLite refuses because another writer holds the lock are retried with bounded
backoff; any other SQL error is logged once per write and noted in `problem`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bot.history import service
from bot.history.db import (
    create_history_engine,
    first_line,
    local_owner_is_alive,
    process_owner,
    read_session_factory,
    resolve_database_url,
    schema_is_current,
    session_factory,
    upgrade,
)
from bot.history.errors import HistoryUnavailable
from bot.history.service import InterruptedInvestigation, SeenBefore, WorkloadRef
from bot.history.views import Asker
from bot.playbook.models import InvestigationResult, StepResult, Verdict
from bot.settings import BotSettings

log = logging.getLogger("kubereach.history")
R = TypeVar("R")
WRITE_ATTEMPTS = 6
"""Tries of one write that SQLite refused as busy or locked (each after SQLite's own busy timeout)."""
MIGRATE_ATTEMPTS = 8
"""Tries of the schema upgrade while other processes hold SQLite's lock (each after its busy timeout)."""
SCHEMA_RETRY_S = 30.0
"""How often an unavailable database is tried again."""
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6


def lock_contention(exc: SQLAlchemyError) -> bool:
    """SQLite answered "database is locked/busy": another writer holds the lock; trying again helps."""
    if not isinstance(exc, OperationalError):
        return False
    code = getattr(exc.orig, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
    words = str(exc.orig).lower()
    return "database is locked" in words or "database is busy" in words or "database table is locked" in words


def describe(exc: SQLAlchemyError) -> str:
    """One line for a person: what the database said, never the SQL or its parameters."""
    orig = getattr(exc, "orig", None)
    return first_line(orig) if orig is not None else first_line(exc)


class HistoryRecorder:
    """Records investigations in the history database; every write is its own short transaction.

    A failing database never fails the investigation: the error is logged, `problem` says what is
    wrong, and the reply still goes out (the history is the record, not a dependency of the answer).
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        cluster: str | None = None,
        *,
        engine: Engine | None = None,
        migrate: bool = False,
    ) -> None:
        self.sessions = sessions
        self.cluster = cluster
        self.owner = process_owner()
        self.problem: str | None = None
        """Why the history is (or was, for some write) unavailable; None while all is well."""
        self.lost_writes = 0
        self._engine = engine
        self._reads = read_session_factory(engine) if engine is not None else sessions
        self._needs_schema = migrate and engine is not None
        self._next_schema_try = 0.0
        self._lock = threading.Lock()
        if self._needs_schema:
            self._ensure_schema()

    @classmethod
    def from_url(cls, url: str | None, cluster: str | None = None, *, migrate: bool = True) -> HistoryRecorder:
        """Open (and migrate to head) the database at `url`, or the default SQLite file.

        Raises `HistoryUnavailable` only for what configuration must fix (a URL that cannot be read,
        a driver that is not installed); a database that does not answer leaves the recorder
        unavailable (`problem`) and is tried again later.
        """
        engine = create_history_engine(resolve_database_url(url))
        return cls(session_factory(engine), cluster, engine=engine, migrate=migrate)

    @classmethod
    def from_settings(cls, settings: BotSettings, *, migrate: bool = True) -> HistoryRecorder:
        """The history database of `settings` (migrated to head), recording under its cluster name."""
        return cls.from_url(settings.history_url(), settings.cluster, migrate=migrate)

    @property
    def available(self) -> bool:
        """The schema is in place (the database answered the last time it was asked)."""
        return not self._needs_schema

    def _ensure_schema(self) -> bool:
        """Migrate once the database answers; between failures, wait `SCHEMA_RETRY_S`."""
        if not self._needs_schema:
            return True
        with self._lock:
            if not self._needs_schema:
                return True
            if time.monotonic() < self._next_schema_try or self._engine is None:
                return False
            pause = 0.1
            for attempt in range(1, MIGRATE_ATTEMPTS + 1):
                try:
                    if not schema_is_current(self._engine):
                        upgrade(self._engine)
                    break
                except HistoryUnavailable as exc:
                    cause = exc.__cause__
                    if isinstance(cause, SQLAlchemyError) and lock_contention(cause) and attempt < MIGRATE_ATTEMPTS:
                        time.sleep(pause * random.uniform(0.5, 1.0))  # noqa: S311 - jitter, not a secret
                        pause = min(pause * 2, 2.0)
                        continue
                    self._next_schema_try = time.monotonic() + SCHEMA_RETRY_S
                    self.problem = exc.message
                    log.error("history unavailable: %s", exc.message)
                    return False
            self._needs_schema = False
            self.problem = None
            return True

    def _write(self, what: str, work: Callable[[Session], R]) -> R | None:
        """Run `work` in one transaction; retry while SQLite reports another writer's lock."""
        if not self._ensure_schema():
            self.lost_writes += 1
            return None
        pause = 0.05
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            try:
                with self.sessions.begin() as session:
                    return work(session)
            except SQLAlchemyError as exc:
                if lock_contention(exc) and attempt < WRITE_ATTEMPTS:
                    time.sleep(pause * random.uniform(0.5, 1.0))  # noqa: S311 - jitter, not a secret
                    pause = min(pause * 2, 1.0)
                    continue
                self.lost_writes += 1
                self.problem = f"could not record {what}: {describe(exc)}"
                # The first loss is an error; the ones after it (the same cause, as a rule) only debug.
                log.log(
                    logging.ERROR if self.lost_writes == 1 else logging.DEBUG,
                    "history: cannot record %s: %s",
                    what,
                    describe(exc),
                )
                return None
        return None  # unreachable: the last attempt returns or records the failure

    def database_answers(self) -> bool:
        """True when the database answers a trivial query (the bot's readiness)."""
        if not self._ensure_schema():
            return False
        try:
            with self._reads() as session:
                session.execute(text("SELECT 1"))
            return True
        except SQLAlchemyError:
            return False

    def close_stranded(self, owner_is_alive: Callable[[str], bool] = local_owner_is_alive) -> list[InterruptedInvestigation]:
        """Mark investigations whose owning process is gone as interrupted; returns them (for their threads).

        `owner_is_alive` decides per owner (default: this host's processes; in a cluster pass
        ``lambda o: db.owner_is_alive(o, lookups.bot_pod_check(settings))``, from `bot.cluster.lookups`).
        """
        if not self._ensure_schema():
            return []
        try:
            with self._reads() as session:
                owners = service.running_owners(session)
        except SQLAlchemyError as exc:
            log.error("history: cannot look up running investigations: %s", describe(exc))
            return []
        # Liveness is decided outside any transaction: it may ask the Kubernetes API.
        dead = [owner for owner in owners if not owner_is_alive(owner)]
        if not dead:
            return []
        closed = self._write("interrupted investigations", lambda session: service.mark_interrupted(session, dead))
        return closed or []

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
        return self._write(
            "the investigation",
            lambda session: service.start_investigation(
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
            ),
        )

    def step(self, investigation_id: str | None, step: StepResult, order: int) -> None:
        """Commit one finished step."""
        if investigation_id is None:
            return
        self._write(
            f"step {order} of {investigation_id}", lambda session: service.record_step(session, investigation_id, step, order)
        )

    def finish(self, investigation_id: str | None, result: InvestigationResult) -> None:
        """Close the investigation with its verdict and findings."""
        if investigation_id is None:
            return
        self._write(
            f"the verdict of {investigation_id}",
            lambda session: service.finish_investigation(
                session, investigation_id, result.verdict, result.findings, result.duration_ms
            ),
        )

    def fail(self, investigation_id: str | None, error: str) -> None:
        """Mark the investigation failed (it could not run to a verdict)."""
        if investigation_id is None:
            return
        self._write(
            f"the failure of {investigation_id}", lambda session: service.fail_investigation(session, investigation_id, error)
        )

    def seen_before(
        self, investigation_id: str | None, source: WorkloadRef, target: WorkloadRef, verdict: Verdict
    ) -> SeenBefore | None:
        """Earlier investigations with the same pair and verdict (excluding this one)."""
        if not self.available:
            return None
        try:
            with self._reads() as session:
                return service.seen_before(session, source, target, verdict.code, verdict.node, exclude_id=investigation_id)
        except SQLAlchemyError as exc:
            log.error("history: cannot look up earlier investigations: %s", describe(exc))
            return None
