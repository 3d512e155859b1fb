"""The digest use cases: build one digest, run one scheduled slot exactly once, run one on demand.

`DigestDeps` is what they need from the process: sessions on the history database, a sweep function
(the fleet and the API, normally `sweep_cluster` over the bot's `Investigator`) and the owner name
that claims slots. The work is synchronous (it runs the sweep on its own event loop), so callers on
an event loop run it in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session, sessionmaker

from bot.digest import service as digests
from bot.digest.content import build_digest, previous_time
from bot.digest.lock import claim_slot
from bot.digest.models import Digest, Sweep
from bot.errors import KubereachError
from bot.history import service
from bot.history.db import create_history_engine, history_errors, process_owner, resolve_database_url, session_factory, upgrade
from bot.history.enums import DigestRunStatus
from bot.history.errors import HistoryUnavailable
from bot.history.service import Person

if TYPE_CHECKING:
    from bot.settings import BotSettings

log = logging.getLogger("kubereach.digest")

SweepFunction = Callable[[Sequence[str]], Coroutine[Any, Any, Sweep]]
"""namespaces (empty: all) → a fresh `Sweep` of the cluster."""
PostDigest = Callable[[str, Digest], None]
"""channel, digest → posted (the Slack app renders it with `bot.render.digest.digest_blocks`)."""
DEFAULT_PERIOD = timedelta(days=1)


@dataclass(frozen=True)
class DigestDeps:
    """What digests need from the process (see the module docstring)."""

    sessions: sessionmaker[Session]
    sweep: SweepFunction
    owner: str = field(default_factory=process_owner)
    on_change: Callable[[], None] | None = None
    """Called after a subscription changed (the scheduler's `refresh`), if set."""

    @classmethod
    def from_settings(cls, settings: BotSettings, *, sweep: SweepFunction, migrate: bool = True) -> DigestDeps:
        """Open the history database of `settings` (migrating it); sweep with `sweep`
        (`bot.investigation.investigator_sweep` in the bot)."""
        url = resolve_database_url(settings.history_url())
        engine = create_history_engine(url)
        if migrate:
            upgrade(engine)
        return cls(session_factory(engine), sweep)


class SlotOutcome(StrEnum):
    """What became of one scheduled slot in this process."""

    POSTED = "posted"
    TAKEN = "taken"
    """Another process (or an earlier run) claimed it."""
    FAILED = "failed"
    DISABLED = "disabled"
    """The subscription was turned off or deleted."""
    RELEASED = "released"
    """The process stopped before posting it and gave the claim back (the slot runs again elsewhere)."""


class SlotReleased(Exception):
    """Raised by a post function when the slot's claim was given back while the digest was being made."""


MAKING_A_DIGEST = "making a digest"
DIGEST_HINT = "check that the database is reachable (DATABASE_URL); the digest will run at its next slot"


def make_digest(
    deps: DigestDeps,
    *,
    channel: str,
    namespaces: Sequence[str] = (),
    period: timedelta = DEFAULT_PERIOD,
    exclude_run_id: int | None = None,
    now: datetime | None = None,
) -> Digest:
    """Sweep the cluster and build the channel's digest, diffed with its previous digest."""
    until = now or datetime.now(UTC)
    with history_errors(MAKING_A_DIGEST, hint=DIGEST_HINT), deps.sessions() as session:
        previous = digests.previous_digest(session, channel, exclude_run_id=exclude_run_id)
        content = previous.content if previous else None
        since = previous_time(content) or (previous.slot_at if previous else None) or until - period
        history = digests.history_summary(session, since=since, until=until, namespaces=namespaces)
    sweep = asyncio.run(deps.sweep(namespaces))
    return build_digest(sweep, history, content, namespaces=namespaces)


def _finish(deps: DigestDeps, run_id: int, status: DigestRunStatus, digest: Digest | None) -> None:
    try:
        with history_errors(), deps.sessions.begin() as session:
            service.finish_digest_run(session, run_id, status, digest.as_json() if digest else None)
    except HistoryUnavailable as exc:
        log.error("digest: cannot record the end of run %s: %s", run_id, exc)


def run_slot(deps: DigestDeps, subscription_id: int, slot_at: datetime, post: PostDigest) -> SlotOutcome:
    """Run one slot of a subscription if this process wins its claim: build, post, record.

    The claim is committed before any work, so a second process (or a second call) gets `TAKEN`; a
    failure after the claim records the run as failed and the slot is not retried.
    """
    with history_errors(MAKING_A_DIGEST, hint=DIGEST_HINT), deps.sessions() as session:
        subscription = digests.get_subscription(session, subscription_id)
    if subscription is None or not subscription.enabled:
        return SlotOutcome.DISABLED
    with history_errors(MAKING_A_DIGEST, hint=DIGEST_HINT):
        claimed = claim_slot(deps.sessions, subscription_id, slot_at, deps.owner)
    if claimed is None:
        log.info("digest: slot %s of subscription %s is taken by another process", slot_at.isoformat(), subscription_id)
        return SlotOutcome.TAKEN
    finished = False
    try:
        digest = make_digest(
            deps,
            channel=subscription.channel,
            namespaces=subscription.namespaces,
            period=subscription.period,
            exclude_run_id=claimed.run_id,
        )
        post(subscription.channel, digest)
        _finish(deps, claimed.run_id, DigestRunStatus.POSTED, digest)
        finished = True
        return SlotOutcome.POSTED
    except KubereachError as exc:
        log.error("digest: slot %s of subscription %s failed: %s", slot_at.isoformat(), subscription_id, exc)
        _finish(deps, claimed.run_id, DigestRunStatus.FAILED, None)
        finished = True
        return SlotOutcome.FAILED
    except SlotReleased:
        log.info("digest: slot %s of subscription %s was released unposted", slot_at.isoformat(), subscription_id)
        finished = True  # the claim row is gone: nothing to close
        return SlotOutcome.RELEASED
    finally:
        if not finished:
            _finish(deps, claimed.run_id, DigestRunStatus.FAILED, None)


def run_on_demand(
    deps: DigestDeps, channel: str, who: Person, namespaces: Sequence[str] = (), *, now: datetime | None = None
) -> Digest:
    """One digest now for `channel` (recorded as a run, so the next digest can say what changed)."""
    at = now or datetime.now(UTC)
    with history_errors(MAKING_A_DIGEST, hint=DIGEST_HINT), deps.sessions.begin() as session:
        subscription_id = digests.on_demand_subscription(session, channel, who, at=at)
        subscription = digests.get_subscription(session, subscription_id)
    assert subscription is not None
    scope = tuple(namespaces) or subscription.namespaces
    claimed = claim_slot(deps.sessions, subscription_id, at, deps.owner)
    if claimed is None:
        raise KubereachError("another digest for this channel started at the same instant", hint="try again in a moment")
    finished = False
    try:
        digest = make_digest(
            deps,
            channel=channel,
            namespaces=scope,
            period=subscription.period if subscription.enabled else DEFAULT_PERIOD,
            exclude_run_id=claimed.run_id,
            now=at,
        )
        _finish(deps, claimed.run_id, DigestRunStatus.POSTED, digest)
        finished = True
        return digest
    finally:
        if not finished:
            _finish(deps, claimed.run_id, DigestRunStatus.FAILED, None)
