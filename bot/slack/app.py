"""The Slack app, wired in one place: `build_deps` → `build_app` → `register(app, deps)`.

    deps = build_deps(settings)
    app = build_app(settings, deps)          # calls register(app, deps)
    SlackHttpServer(app, "127.0.0.1", 3000)  # or Socket Mode, see bot.slack.serve

Over HTTP, `bot.slack.http.VerifiedFront` checks Slack's signature on the raw body before bolt parses
anything; the app checks it again (`SignedRequests`) for callers that dispatch to it directly.
Slack's retries and replays of a delivery are acknowledged and dropped (kept in the history database,
so restarts and replicas see them too); one error handler turns anything unexpected into a sentence
for the person and a log line for the operator.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slack_bolt import App, BoltResponse
from slack_bolt.middleware import Middleware
from slack_bolt.request import BoltRequest
from slack_sdk import WebClient
from slack_sdk.signature import Clock

from bot.digest.flows import DigestDeps
from bot.errors import BadInput
from bot.history import service
from bot.history.db import history_errors, local_owner_is_alive
from bot.history.errors import HistoryUnavailable
from bot.history.recorder import HistoryRecorder
from bot.metrics import BotMetrics
from bot.render import blocks as render
from bot.settings import BotSettings
from bot.slack import handlers, interactions
from bot.slack.access import ChannelAccess
from bot.slack.dedupe import DeliveryDedupe, delivery_key
from bot.slack.flows import DigestHandler, InvestigationLoop, NewInvestigator, SlackDeps
from bot.slack.groups import GroupAccess
from bot.slack.http import signature_problem
from bot.slack.ids import ActionId, Command
from bot.slack.messaging import SlackPoster, build_client
from bot.slack.pools import WorkPools

log = logging.getLogger("kubereach.slack")

LISTENER_THREADS = 8


class SignedRequests(Middleware):
    """Rejects (401) a request whose `X-Slack-Signature` does not match, or whose timestamp is over 5 minutes off."""

    def __init__(self, signing_secret: str, clock: Clock | None = None) -> None:
        """Check against `signing_secret`; `clock` is injectable for tests."""
        self._secret = signing_secret.encode()
        self._now: Callable[[], float] = clock.now if clock is not None else time.time

    def process(self, *, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]) -> BoltResponse:
        """Pass a signed request on; answer anything else 401 (Socket Mode is authenticated by its connection)."""
        if req.mode == "socket_mode":
            return next()
        timestamp = (req.headers.get("x-slack-request-timestamp") or [""])[0]
        signature = (req.headers.get("x-slack-signature") or [""])[0]
        problem = signature_problem(self._secret, timestamp, signature, req.raw_body.encode("utf-8"), self._now())
        if problem is None:
            return next()
        log.warning("slack: rejected a request: %s", problem)
        return BoltResponse(status=401, body={"error": "invalid request"})


def build_deps(
    settings: BotSettings,
    new_investigator: NewInvestigator,
    *,
    client: WebClient | None = None,
    history: HistoryRecorder | None = None,
    with_history: bool = True,
    digest: tuple[DigestHandler, DigestDeps] | None = None,
    metrics: BotMetrics | None = None,
) -> SlackDeps:
    """Everything the handlers need: the investigator, the history, a Slack client, the access map.

    `new_investigator` is `bot.investigation.Investigator` (passed in by the composition root, so
    bot.slack never imports the cluster client); `digest` is ``(bot.slack.digest_command.handle, DigestDeps)``
    when digests are set up.
    """
    if history is None and with_history:
        history = HistoryRecorder.from_settings(settings)
    poster = SlackPoster(client or build_client(settings), metrics=metrics)
    return SlackDeps(
        settings=settings,
        investigator=new_investigator(settings, history),
        digest_handler=digest[0] if digest else None,
        digest=digest[1] if digest else None,
        history=history,
        poster=poster,
        access=ChannelAccess(settings.channel_namespaces),
        loop=InvestigationLoop(),
        dedupe=DeliveryDedupe(sessions=history.sessions if history is not None else None),
        pools=WorkPools(settings.slack_investigation_workers),
        groups=GroupAccess(settings.usergroup_namespaces, poster) if settings.usergroup_namespaces else None,
    )


def build_app(settings: BotSettings, deps: SlackDeps, *, clock: Clock | None = None) -> App:
    """A bolt App using `deps.poster.client`, verifying signatures itself, with every listener registered."""
    if settings.slack_signing_secret is None and settings.slack_app_token is None:
        raise BadInput(
            "no Slack signing secret is set", hint="set SLACK_SIGNING_SECRET (HTTP mode) or SLACK_APP_TOKEN (Socket Mode)"
        )
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else None
    app = App(
        client=deps.poster.client,
        signing_secret=secret or "socket-mode-only",
        request_verification_enabled=False,
        before_authorize=SignedRequests(secret, clock) if secret else None,
        token_verification_enabled=False,
        process_before_response=False,
        listener_executor=ThreadPoolExecutor(max_workers=LISTENER_THREADS, thread_name_prefix="kubereach-slack"),
    )
    register(app, deps)
    return app


def register(app: App, deps: SlackDeps) -> None:
    """Wire the middleware, the command, the mention, the buttons and the error handler."""

    @app.middleware
    def drop_repeated_deliveries(req: BoltRequest, body: dict[str, Any], next: Callable[[], None]) -> BoltResponse | None:
        signature = (req.headers.get("x-slack-signature") or [""])[0]
        timestamp = (req.headers.get("x-slack-request-timestamp") or [""])[0]
        key = delivery_key(body, signature, timestamp)
        if key is not None and not deps.dedupe.first_delivery(key):
            log.info("slack: dropped a repeated delivery (%s)", key)
            return BoltResponse(status=200, body="")
        if (body.get("event") or {}).get("type") == "app_mention":
            # Bolt acknowledges events before their listener runs: count the work now, so whoever got
            # the ack can wait for the answer (the mention listener takes this count over).
            deps.in_flight.begin()
        next()
        return None

    @app.command(Command.REACH.value)
    def reach(ack: handlers.Ack, body: dict[str, Any]) -> None:
        handlers.on_reach_command(ack, body, deps)

    @app.event("app_mention")
    def mention(ack: handlers.Ack, event: dict[str, Any]) -> None:
        handlers.on_app_mention(ack, event, deps, counted=True)

    @app.event("message")
    def ignore_messages(ack: handlers.Ack) -> None:
        ack()

    @app.action(ActionId.RERUN.value)
    def rerun(ack: handlers.Ack, body: dict[str, Any]) -> None:
        handlers.on_rerun(ack, body, deps)

    @app.action(ActionId.TRACE.value)
    def trace(ack: handlers.Ack, body: dict[str, Any]) -> None:
        handlers.on_trace(ack, body, deps)

    @app.action(ActionId.SHOW_EVIDENCE.value)
    def show_evidence(ack: handlers.Ack, body: dict[str, Any]) -> None:
        handlers.on_show_evidence(ack, body, deps)

    @app.action(ActionId.RESOLVED.value)
    def resolved(ack: handlers.Ack, body: dict[str, Any]) -> None:
        handlers.on_resolved(ack, body, deps)

    @app.action(re.compile(rf"^{ActionId.ASK_INSTEAD.value}_[0-9]+$"))
    def ask_instead(ack: handlers.Ack, body: dict[str, Any]) -> None:
        handlers.on_ask_instead(ack, body, deps)

    interactions.register(app, deps)

    @app.error
    def unexpected(error: Exception, body: dict[str, Any]) -> None:
        # The one place an unexpected failure ends: a log line with the type, a sentence for the person.
        log.error("slack: a request failed: %s: %s", type(error).__name__, error)
        event = body.get("event") or {}
        channel = str(body.get("channel_id") or (body.get("channel") or {}).get("id") or event.get("channel") or "")
        user = str(body.get("user_id") or (body.get("user") or {}).get("id") or event.get("user") or "")
        if channel and user:
            deps.poster.ephemeral(
                channel,
                user,
                ":warning: kubereach hit an unexpected problem answering that; "
                "it is logged — please try again, and tell the bot's admins if it persists.",
            )


def announce_interrupted(deps: SlackDeps, owner_is_alive: Callable[[str], bool] = local_owner_is_alive) -> int:
    """On start: close investigations a dead process left running and say so in their threads; returns how many.

    `owner_is_alive` tells a live owner from a dead one (default: this host's processes; in a cluster
    also whether the owner's bot pod still exists, see `bot.history.db.owner_is_alive`)."""
    return _close_stranded(deps, owner_is_alive, "The bot restarted before `{id}` finished.")


def drain(deps: SlackDeps, grace_seconds: float) -> int:
    """On shutdown: let in-flight work finish for up to `grace_seconds`; then close this process's
    investigations that are still running as interrupted and say so in their threads. Returns how many."""
    if deps.in_flight.wait_idle(grace_seconds):
        return 0
    queued = deps.pools.drop_waiting()
    if queued:
        log.warning("slack: %d queued question(s) were not started; their threads were told", queued)
    if deps.history is None:
        return 0
    me = deps.history.owner
    return _close_stranded(
        deps, lambda owner: owner != me and local_owner_is_alive(owner), "The bot was stopped before `{id}` finished."
    )


def _close_stranded(deps: SlackDeps, owner_is_alive: Callable[[str], bool], what: str) -> int:
    if deps.history is None:
        return 0
    try:
        with history_errors(), deps.history.sessions() as session:
            owners = service.running_owners(session)
        # Liveness is decided outside any transaction: it may ask the Kubernetes API.
        dead = [owner for owner in owners if not owner_is_alive(owner)]
        with history_errors(), deps.history.sessions.begin() as session:
            stranded = service.mark_interrupted(session, dead)
    except HistoryUnavailable as exc:
        log.error("history: cannot close interrupted investigations: %s", exc)
        return 0
    for item in stranded:
        if item.channel and item.thread_ts:
            text = f":warning: {what.format(id=item.id)} Ask again (or click Re-run on an earlier answer) to get a verdict."
            deps.poster.post(item.channel, render.message_text(text), render.notice_blocks(text), thread_ts=item.thread_ts)
    return len(stranded)
