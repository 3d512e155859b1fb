"""Bolt listeners: read the request, `ack()` at once (Slack waits at most 3 s), then hand over to a flow.

Bolt runs each listener on its executor thread and answers Slack's HTTP request as soon as `ack()`
is called, so the work after `ack()` happens in the background of the delivery. Every listener
counts itself in `deps.in_flight` before its ack, so a caller that got the ack can wait for the answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from bot.errors import KubereachError
from bot.history.enums import AuditAction
from bot.history.service import Person
from bot.parse.slack_text import clean_slack_text
from bot.render import blocks as render
from bot.slack import flows
from bot.slack.flows import SlackAsk, SlackDeps
from bot.slack.modals import ResolveTarget, resolve_modal

log = logging.getLogger("kubereach.slack")

Ack = Callable[..., None]


def _subcommand(text: str) -> tuple[str, str]:
    """("search", "words…") for "search words…"; ("", text) for a question."""
    word, _, rest = text.strip().partition(" ")
    lowered = word.lower()
    if lowered in ("search", "digest", "help", "resolve"):
        return lowered, rest.strip()
    if not text.strip():
        return "help", ""
    return "", text.strip()


def _route(
    deps: SlackDeps, text: str, channel: str, user_id: str, user_name: str, thread_ts: str | None, *, from_command: bool
) -> None:
    """Serve one request (after the ack): a subcommand or a question."""
    sub, rest = _subcommand(text)
    poster = deps.poster
    if sub == "help":
        poster.ephemeral(channel, user_id, flows.help_text(), thread_ts=thread_ts)
        flows.audit(deps, Person(user_id, user_name), AuditAction.OTHER, text, allowed=True, channel=channel)
    elif sub == "search":
        flows.search(deps, rest, channel, user_id, user_name)
    elif sub == "resolve":
        investigation_id, _, note = rest.partition(" ")
        if not investigation_id.startswith("inv_"):
            poster.ephemeral(channel, user_id, "Say which investigation: `/reach resolve inv_… <what fixed it>`.")
            return
        flows.resolve(deps, investigation_id, channel, user_id, user_name, note.strip(), thread_ts)
    elif sub == "digest":
        _digest(deps, rest, channel, user_id, user_name)
    else:
        flows.run_investigation(deps, SlackAsk(rest, channel, user_id, user_name, thread_ts, echo=from_command))


def _digest(deps: SlackDeps, text: str, channel: str, user_id: str, user_name: str) -> None:
    handle = deps.digest_handler
    if handle is None:
        deps.poster.ephemeral(channel, user_id, "Digests are not set up yet in this kubereach; ask its admin to enable them.")
        flows.audit(
            deps,
            Person(user_id, user_name),
            AuditAction.DIGEST,
            text,
            allowed=False,
            channel=channel,
            reason="digests not installed",
        )
        return
    try:
        reply = handle(text, channel, Person(user_id, user_name), deps.digest)
    except KubereachError as exc:
        deps.poster.ephemeral(channel, user_id, f":warning: {exc.message}" + (f"\n{exc.hint}" if exc.hint else ""))
        return
    reply_text = render.message_text(str(getattr(reply, "text", reply)))
    blocks = getattr(reply, "blocks", None)
    if getattr(reply, "ephemeral", True):
        deps.poster.ephemeral(channel, user_id, reply_text, blocks)
    else:
        deps.poster.post(channel, reply_text, blocks)


def _work(deps: SlackDeps, ack: Ack, job: Callable[[], Any]) -> None:
    """Ack, then do `job`, counted in `in_flight`; a failure the flows did not expect is logged, not shown raw."""
    deps.in_flight.begin()
    try:
        ack()
        job()
    finally:
        deps.in_flight.end()


def on_reach_command(ack: Ack, body: dict[str, Any], deps: SlackDeps) -> None:
    """`/reach …`: ack empty (nothing public until the answer), then route."""
    channel, user_id = str(body.get("channel_id", "")), str(body.get("user_id", ""))
    user_name = str(body.get("user_name") or user_id)
    text = str(body.get("text", ""))
    _work(deps, ack, lambda: _route(deps, text, channel, user_id, user_name, None, from_command=True))


def on_app_mention(ack: Ack, event: dict[str, Any], deps: SlackDeps) -> None:
    """`@kubereach …` in a channel or thread: answer in the mention's thread."""
    channel, user_id = str(event.get("channel", "")), str(event.get("user", ""))
    thread_ts = str(event.get("thread_ts") or event.get("ts") or "") or None
    text = clean_slack_text(str(event.get("text", "")))

    def job() -> None:
        user_name = deps.poster.user_name(user_id)
        _route(deps, text, channel, user_id, user_name, thread_ts, from_command=False)

    _work(deps, ack, job)


def _click(body: dict[str, Any]) -> tuple[str, str, str, str, str | None]:
    """(investigation id, channel, user id, user name, thread ts) of a button click."""
    action = (body.get("actions") or [{}])[0]
    user = body.get("user") or {}
    container = body.get("container") or {}
    message = body.get("message") or {}
    channel = str((body.get("channel") or {}).get("id") or container.get("channel_id") or "")
    thread_ts = container.get("thread_ts") or message.get("thread_ts") or container.get("message_ts")
    return (
        str(action.get("value", "")),
        channel,
        str(user.get("id", "")),
        str(user.get("username") or user.get("name") or user.get("id", "")),
        str(thread_ts) if thread_ts else None,
    )


def on_rerun(ack: Ack, body: dict[str, Any], deps: SlackDeps) -> None:
    """Re-run: the same question again in the thread, with what changed."""
    investigation_id, channel, user_id, user_name, thread_ts = _click(body)
    _work(deps, ack, lambda: flows.rerun(deps, investigation_id, channel, user_id, user_name, thread_ts))


def on_show_evidence(ack: Ack, body: dict[str, Any], deps: SlackDeps) -> None:
    """Show evidence: every step's evidence in the thread (a file when long)."""
    investigation_id, channel, user_id, _, thread_ts = _click(body)
    _work(deps, ack, lambda: flows.show_evidence(deps, investigation_id, channel, user_id, thread_ts))


def on_resolved(ack: Ack, body: dict[str, Any], deps: SlackDeps) -> None:
    """Resolved: a modal asks what fixed it (`bot.slack.modals`); when Slack cannot show it, record who
    resolved it at once (a note can follow with `/reach resolve ID NOTE`)."""
    investigation_id, channel, user_id, user_name, thread_ts = _click(body)
    trigger_id = str(body.get("trigger_id") or "")

    def job() -> None:
        modal = resolve_modal(ResolveTarget(investigation_id, channel, thread_ts))
        if trigger_id and deps.poster.open_view(trigger_id, modal) is not None:
            return
        flows.resolve(deps, investigation_id, channel, user_id, user_name, "", thread_ts)

    _work(deps, ack, job)
