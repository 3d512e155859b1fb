"""Bolt listeners: read the request, `ack()` at once (Slack waits at most 3 s), then hand over to a flow.

A listener only acks and hands its work to `deps.pools` (a small pool for quick requests, a bounded
pool for investigations, see `flows.WorkPools`), so no investigation can hold the thread an ack
needs. Every listener counts itself in `deps.in_flight` before its ack, so a caller that got the ack
can wait for the answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from bot.errors import KubereachError
from bot.history.enums import AuditAction
from bot.history.service import Person
from bot.parse.slack_text import MAX_TEXT_LENGTH, clean_slack_text
from bot.render import blocks as render
from bot.slack import flows
from bot.slack.flows import SlackAsk, SlackDeps
from bot.slack.modals import ResolveTarget, resolve_modal

log = logging.getLogger("kubereach.slack")

Ack = Callable[..., None]
UNEXPECTED = (
    ":warning: kubereach hit an unexpected problem answering that; it is logged — please try again, "
    "and tell the bot's admins if it persists."
)


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
    """Serve one request (after the ack): a subcommand or a question (handed to the investigation pool)."""
    poster = deps.poster
    if len(text) > MAX_TEXT_LENGTH:
        _too_long(deps, text, channel, user_id, user_name, thread_ts)
        return
    sub, rest = _subcommand(text)
    if sub == "help":
        poster.ephemeral(channel, user_id, flows.help_text(), thread_ts=thread_ts)
        flows.audit(deps, Person(user_id, user_name), AuditAction.OTHER, text, allowed=True, channel=channel)
    elif sub == "search":
        flows.search(deps, rest, channel, user_id, user_name)
    elif sub == "resolve":
        investigation_id, _, note = rest.partition(" ")
        if not investigation_id.startswith("inv_"):
            poster.ephemeral(channel, user_id, "Say which investigation: `/reach resolve inv_… <what fixed it>`.")
            who = Person(user_id, user_name)
            flows.audit(deps, who, AuditAction.RESOLVE, text, allowed=False, channel=channel, reason="no id")
            return
        flows.resolve(deps, investigation_id, channel, user_id, user_name, note.strip(), thread_ts)
    elif sub == "digest":
        _digest(deps, rest, channel, user_id, user_name)
    else:
        flows.investigate_later(deps, SlackAsk(rest, channel, user_id, user_name, thread_ts, echo=from_command))


def _too_long(deps: SlackDeps, text: str, channel: str, user_id: str, user_name: str, thread_ts: str | None) -> None:
    """A message too long to be a question: one clear answer, without running any pattern over it."""
    said = (
        f":warning: That message is {len(text)} characters long; kubereach reads at most {MAX_TEXT_LENGTH}. "
        "Ask about one source and one target, e.g. `why can't frontend reach api`."
    )
    deps.poster.ephemeral(channel, user_id, said, thread_ts=thread_ts)
    flows.audit(deps, Person(user_id, user_name), AuditAction.ASK, text, allowed=False, channel=channel, reason="too long")


def _digest(deps: SlackDeps, text: str, channel: str, user_id: str, user_name: str) -> None:
    handle, digest_deps = deps.digest_handler, deps.digest
    if handle is None or digest_deps is None:
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
        reply = handle(text, channel, Person(user_id, user_name), digest_deps)
    except KubereachError as exc:
        hint = f"\n{flows.esc(exc.hint)}" if exc.hint else ""
        deps.poster.ephemeral(channel, user_id, f":warning: {flows.esc(exc.message)}{hint}")
        return
    reply_text = render.message_text(str(getattr(reply, "text", reply)))
    blocks = getattr(reply, "blocks", None)
    if getattr(reply, "ephemeral", True):
        deps.poster.ephemeral(channel, user_id, reply_text, blocks)
    else:
        deps.poster.post(channel, reply_text, blocks)


def _work(deps: SlackDeps, ack: Ack, job: Callable[[], Any], channel: str, user_id: str, *, counted: bool = False) -> None:
    """Ack, then hand `job` to the quick pool, counted in `in_flight`; the listener thread is free at once.

    A failure the flows did not expect is logged with its traceback (through the structured logger)
    and the person is told in a sentence, never shown it raw. `counted`: the request is already
    counted in `in_flight` (mentions, see `app.register`).
    """
    if not counted:
        deps.in_flight.begin()
    try:
        ack()
    except BaseException:
        deps.in_flight.end()
        raise

    def run() -> None:
        try:
            job()
        except Exception:
            log.exception("slack: a request failed after its ack")
            deps.poster.ephemeral(channel, user_id, UNEXPECTED)
        finally:
            deps.in_flight.end()

    try:
        deps.pools.quick.submit(run)
    except RuntimeError:  # the pools are shut down: the process is stopping
        deps.in_flight.end()


def on_reach_command(ack: Ack, body: dict[str, Any], deps: SlackDeps) -> None:
    """`/reach …`: ack empty (nothing public until the answer), then route."""
    channel, user_id = str(body.get("channel_id", "")), str(body.get("user_id", ""))
    user_name = str(body.get("user_name") or user_id)
    text = str(body.get("text", ""))
    _work(deps, ack, lambda: _route(deps, text, channel, user_id, user_name, None, from_command=True), channel, user_id)


def on_app_mention(ack: Ack, event: dict[str, Any], deps: SlackDeps, *, counted: bool = False) -> None:
    """`@kubereach …` in a channel or thread: answer in the mention's thread."""
    channel, user_id = str(event.get("channel", "")), str(event.get("user", ""))
    thread_ts = str(event.get("thread_ts") or event.get("ts") or "") or None
    raw = str(event.get("text", ""))

    def job() -> None:
        user_name = deps.poster.user_name(user_id)
        if len(raw) > MAX_TEXT_LENGTH:  # bounded before any pattern runs over it
            _too_long(deps, raw, channel, user_id, user_name, thread_ts)
            return
        _route(deps, clean_slack_text(raw), channel, user_id, user_name, thread_ts, from_command=False)

    _work(deps, ack, job, channel, user_id, counted=counted)


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
    _work(deps, ack, lambda: flows.rerun(deps, investigation_id, channel, user_id, user_name, thread_ts), channel, user_id)


def on_trace(ack: Ack, body: dict[str, Any], deps: SlackDeps) -> None:
    """Trace the packet: the same question again in the thread, with the probe followed hop by hop."""
    investigation_id, channel, user_id, user_name, thread_ts = _click(body)
    _work(
        deps,
        ack,
        lambda: flows.rerun(deps, investigation_id, channel, user_id, user_name, thread_ts, trace=True),
        channel,
        user_id,
    )


def on_show_evidence(ack: Ack, body: dict[str, Any], deps: SlackDeps) -> None:
    """Show evidence: every step's evidence in the thread (a file when long)."""
    investigation_id, channel, user_id, user_name, thread_ts = _click(body)

    def job() -> None:
        flows.show_evidence(deps, investigation_id, channel, user_id, thread_ts, user_name)

    _work(deps, ack, job, channel, user_id)


def on_ask_instead(ack: Ack, body: dict[str, Any], deps: SlackDeps) -> None:
    """A candidate of an ambiguous name: ask the question naming it (the button's value), in the same thread."""
    question, channel, user_id, user_name, thread_ts = _click(body)
    ask = SlackAsk(question, channel, user_id, user_name, thread_ts, echo=False)
    _work(deps, ack, lambda: flows.investigate_later(deps, ask), channel, user_id)


def on_resolved(ack: Ack, body: dict[str, Any], deps: SlackDeps) -> None:
    """Resolved: a modal asks what fixed it (`bot.slack.modals`); when Slack cannot show it, record who
    resolved it at once (a note can follow with `/reach resolve ID NOTE`)."""
    investigation_id, channel, user_id, user_name, thread_ts = _click(body)
    trigger_id = str(body.get("trigger_id") or "")

    def job() -> None:
        # Only an investigation this channel may see gets a modal; a refusal is said and audited here.
        if (
            deps.history is not None
            and flows.visible_run(deps, AuditAction.RESOLVE, investigation_id, channel, user_id, user_name, investigation_id)
            is None
        ):
            return
        modal = resolve_modal(ResolveTarget(investigation_id, channel, thread_ts))
        if trigger_id and deps.poster.open_view(trigger_id, modal) is not None:
            return
        flows.resolve(deps, investigation_id, channel, user_id, user_name, "", thread_ts)

    _work(deps, ack, job, channel, user_id)
