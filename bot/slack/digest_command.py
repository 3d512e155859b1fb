"""`/reach digest …` for the Slack app: one function, `handle`, that returns the reply to post.

    from bot.digest.flows import DigestDeps
    from bot.slack.digest_command import handle

    deps = DigestDeps.from_settings(settings, sweep=investigator_sweep(settings))  # or DigestDeps(sessions, sweep)
    reply = handle("daily 09:00 Europe/Berlin shop", channel_id, Person(user_id, user_name), deps)
    client.chat_postMessage(channel=channel_id, text=reply.text, blocks=reply.blocks)

`handle` is synchronous and `now` sweeps the whole fleet, so the Slack app acknowledges first and calls
it from a worker thread. Subscription changes are audited and call `deps.on_change` (wire it to the
`DigestScheduler.refresh` of the process). Bad commands come back as an ephemeral reply saying what
was wrong, never as an exception; only an unreachable history database raises `HistoryUnavailable`.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from bot.digest import service as digests
from bot.digest.command import (
    DigestCommandError,
    DigestNow,
    ShowSubscription,
    Subscribe,
    Unsubscribe,
    describe,
    parse_digest_command,
)
from bot.digest.flows import DigestDeps, run_on_demand
from bot.history import service
from bot.history.db import history_errors
from bot.history.enums import AuditAction
from bot.history.errors import HistoryUnavailable
from bot.history.service import Person
from bot.render.digest import digest_blocks, digest_text


@dataclass(frozen=True)
class DigestReply:
    """What to post back: `text` always (the notification fallback), `blocks` when there is a digest."""

    text: str
    blocks: list[dict[str, Any]] | None = field(default=None, hash=False)
    ephemeral: bool = False
    """True for replies only the asker should see (errors, subscription status)."""


def _person(user: Person | str) -> Person:
    return user if isinstance(user, Person) else Person(user, user)


def _audit(
    deps: DigestDeps, who: Person, channel: str, text: str, action: AuditAction, allowed: bool, reason: str | None
) -> None:
    with deps.sessions.begin() as session:
        service.audit(
            session, who=who, action=action, text=f"/reach digest {text}".strip(), allowed=allowed, channel=channel, reason=reason
        )


def handle(text: str, channel: str, user: Person | str, deps: DigestDeps) -> DigestReply:
    """Carry out one `/reach digest …` command in `channel` for `user` and return the reply."""
    who = _person(user)
    try:
        command = parse_digest_command(text)
    except DigestCommandError as exc:
        with contextlib.suppress(HistoryUnavailable), history_errors():
            _audit(deps, who, channel, text, AuditAction.SUBSCRIBE, False, exc.message)
        return DigestReply(f"{exc.message}\n{exc.hint}" if exc.hint else exc.message, ephemeral=True)
    with history_errors(
        message="the digest settings could not be read or saved", hint="check the bot's database (DATABASE_URL) and try again"
    ):
        return _carry_out(command, text, channel, who, deps)


def _carry_out(
    command: Subscribe | Unsubscribe | DigestNow | ShowSubscription, text: str, channel: str, who: Person, deps: DigestDeps
) -> DigestReply:
    if isinstance(command, Subscribe):
        with deps.sessions.begin() as session:
            digests.replace_subscription(
                session,
                channel=channel,
                cadence=command.cadence,
                time_of_day=command.time_of_day,
                timezone=command.timezone,
                weekday=command.weekday,
                namespaces=command.namespaces,
                created_by=who,
            )
            service.audit(
                session,
                who=who,
                action=AuditAction.SUBSCRIBE,
                text=f"/reach digest {text}".strip(),
                allowed=True,
                channel=channel,
            )
        if deps.on_change is not None:
            deps.on_change()
        when = describe(command.cadence, command.time_of_day, command.timezone, command.weekday, command.namespaces)
        return DigestReply(f"This channel will get a network health digest {when}. `/reach digest off` stops it.")
    if isinstance(command, Unsubscribe):
        with deps.sessions.begin() as session:
            stopped = digests.disable_subscriptions(session, channel)
            service.audit(
                session,
                who=who,
                action=AuditAction.SUBSCRIBE,
                text=f"/reach digest {text}".strip(),
                allowed=True,
                channel=channel,
            )
        if deps.on_change is not None:
            deps.on_change()
        if not stopped:
            return DigestReply("This channel had no digest subscription; nothing changed.", ephemeral=True)
        return DigestReply("Digests for this channel are off. `/reach digest daily 09:00 UTC` turns them back on.")
    if isinstance(command, ShowSubscription):
        with deps.sessions() as session:
            current = digests.channel_subscription(session, channel)
        if current is None:
            return DigestReply("This channel gets no digest. Try `/reach digest daily 09:00 Europe/Berlin`.", ephemeral=True)
        when = describe(current.cadence, current.time_of_day, current.timezone, current.weekday, current.namespaces)
        return DigestReply(f"This channel gets a digest {when} (set by {current.created_by.name}).", ephemeral=True)
    _audit(deps, who, channel, text, AuditAction.DIGEST, True, None)
    digest = run_on_demand(deps, channel, who, command.namespaces)
    return DigestReply(digest_text(digest), blocks=digest_blocks(digest))
