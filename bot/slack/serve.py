"""`kubereach serve`: run the Slack app over HTTP (signing secret + bot token) or Socket Mode (app token).

HTTP mode listens on ``--host``/``--port`` at ``/slack/events`` (commands, events and interactivity
all go there, as the manifest says) on waitress behind a front that verifies Slack's signature before
anything is parsed (`bot.slack.http`, with timeouts, a body limit and bounded threads); Socket Mode opens an outbound
WebSocket and needs no public URL. Tokens come from the settings (``KUBEREACH_SLACK_…``) or the
plain ``SLACK_BOT_TOKEN`` / ``SLACK_SIGNING_SECRET`` / ``SLACK_APP_TOKEN`` names.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from pydantic import SecretStr

from bot.digest.flows import DigestDeps
from bot.errors import BadInput
from bot.heap import settle_heap
from bot.history.db import HostCheck, owner_is_alive
from bot.history.recorder import HistoryRecorder
from bot.logs import configure_logging
from bot.metrics import BotMetrics
from bot.ops import OpsServer
from bot.settings import BotSettings, load_settings
from bot.slack.flows import DigestHandler, Investigates, NewInvestigator
from bot.slack.http import EVENTS_PATH, HttpLimits, SlackHttpServer
from bot.slack.pictures import WebLinks
from bot.web.app import WebUi
from bot.web.tokens import LinkSigner, derived_key

__all__ = ["EVENTS_PATH", "SlackHttpServer", "http_limits", "make_serve_command", "with_metrics"]

log = logging.getLogger("kubereach.slack")
DigestSetup = Callable[[BotSettings, HistoryRecorder], "tuple[DigestHandler, DigestDeps] | None"]
"""Builds `(bot.slack.digest_command.handle, its DigestDeps)` for a process, or None when digests are off."""


MeasuredInvestigator = Callable[[BotSettings, HistoryRecorder | None, BotMetrics | None], Investigates]
"""Builds the investigator from settings, history and metrics (`bot.investigation.Investigator`)."""


def make_serve_command(
    new_investigator: MeasuredInvestigator,
    digest: DigestSetup | None = None,
    host_check: Callable[[BotSettings], HostCheck | None] | None = None,
) -> click.Command:
    """The `kubereach serve` command, given how to build the investigator (and, optionally, digests).

    The composition root passes `bot.investigation.Investigator` (bot.slack never imports the cluster
    client), for digests a function returning ``(bot.slack.digest_command.handle, DigestDeps)``, and as
    `host_check` `bot.investigation.bot_pod_check` (in a cluster: does a bot pod of that name exist),
    so investigations of a replica that is gone are closed on start.
    """

    @click.command("serve")
    @click.option("--host", default="0.0.0.0", show_default=True, help="Address to listen on (HTTP mode).")
    @click.option("--port", default=3000, show_default=True, type=click.IntRange(0, 65535), help="Port (HTTP mode).")
    @click.option("--socket-mode", is_flag=True, help="Use Socket Mode (needs SLACK_APP_TOKEN) instead of HTTP.")
    @click.option("--bot-token", envvar="SLACK_BOT_TOKEN", default=None, help="Bot token (or SLACK_BOT_TOKEN).")
    @click.option(
        "--signing-secret", envvar="SLACK_SIGNING_SECRET", default=None, help="Signing secret (or SLACK_SIGNING_SECRET)."
    )
    @click.option("--app-token", envvar="SLACK_APP_TOKEN", default=None, help="App-level token (or SLACK_APP_TOKEN).")
    @click.option(
        "--ops-port", type=click.IntRange(0, 65535), default=None, help="Serve /metrics, /healthz and /readyz on this port."
    )
    @click.option("--ops-host", default="0.0.0.0", show_default=True, help="Address of the ops port.")
    @click.option(
        "--web-ui/--no-web-ui",
        default=None,
        help="Serve the read-only web UI at /ui/ on the HTTP port and link to it from Slack (default: KUBEREACH_WEB_UI).",
    )
    @click.option(
        "--grace",
        default=20.0,
        show_default=True,
        type=click.FloatRange(0, 600),
        help="Seconds in-flight investigations may finish on SIGTERM.",
    )
    @click.pass_context
    def serve(
        ctx: click.Context,
        host: str,
        port: int,
        socket_mode: bool,
        bot_token: str | None,
        signing_secret: str | None,
        app_token: str | None,
        ops_port: int | None,
        ops_host: str,
        web_ui: bool | None,
        grace: float,
    ) -> None:
        """Run the Slack app: /reach, @kubereach and the buttons, with the agents, the cluster and the history."""
        # Deferred: the app loads slack_bolt and slack_sdk, heavy for every other `kubereach` command.
        from bot.slack.app import announce_interrupted, build_app, build_deps, drain
        from bot.slack.digests import start_digests, stop_digests

        config: Path | None = ctx.obj.get("config_path") if ctx.obj else None
        base = load_settings(config)
        configure_logging(base.log_format)
        overrides: dict[str, Any] = {}
        for field, value in (
            ("slack_bot_token", bot_token),
            ("slack_signing_secret", signing_secret),
            ("slack_app_token", app_token),
        ):
            if value and getattr(base, field) is None:
                overrides[field] = SecretStr(value)
        settings = load_settings(config, **overrides) if overrides else base
        if settings.slack_bot_token is None:
            raise BadInput("no Slack bot token is set", hint="set SLACK_BOT_TOKEN (xoxb-…) or KUBEREACH_SLACK_BOT_TOKEN")
        if socket_mode and settings.slack_app_token is None:
            raise BadInput(
                "Socket Mode needs an app-level token", hint="set SLACK_APP_TOKEN (xapp-…) with the connections:write scope"
            )
        if not socket_mode and settings.slack_signing_secret is None:
            raise BadInput("HTTP mode needs the signing secret", hint="set SLACK_SIGNING_SECRET, or use --socket-mode")
        history = HistoryRecorder.from_settings(settings)
        if not history.available:
            click.echo(f"kubereach: history unavailable: {history.problem}; answering without recording until it answers")
        digest_parts: tuple[DigestHandler, DigestDeps] | None = digest(settings, history) if digest is not None else None
        metrics = BotMetrics()
        ops = None
        if ops_port is not None:
            ops = OpsServer(metrics, history.database_answers, ops_host, ops_port).start()
            click.echo(f"kubereach: /metrics, /healthz, /readyz on {ops_host}:{ops.port}")
        deps = build_deps(
            settings, with_metrics(new_investigator, metrics), history=history, digest=digest_parts, metrics=metrics
        )
        app = build_app(settings, deps)
        pods = host_check(settings) if host_check is not None else None
        stranded = announce_interrupted(deps, lambda owner: owner_is_alive(owner, pods))
        if stranded:
            click.echo(f"closed {stranded} investigation(s) left running by a stopped bot")
        digests = start_digests(deps)
        if digests is not None:
            click.echo(f"kubereach: {len(digests.planned)} digest subscription(s) scheduled")
        signal.signal(signal.SIGTERM, _interrupt)
        log.info("kubereach: start-up heap settled: %d objects out of the garbage collector's walks", settle_heap())
        try:
            if socket_mode:
                # Deferred: Socket Mode's WebSocket client is needed only in that mode.
                from slack_bolt.adapter.socket_mode import SocketModeHandler

                assert settings.slack_app_token is not None
                if settings.web_ui if web_ui is None else web_ui:
                    click.echo("kubereach: the web UI needs HTTP mode; it is not served in Socket Mode")
                click.echo("kubereach: Slack app running in Socket Mode (Ctrl-C stops)")
                SocketModeHandler(app, settings.slack_app_token.get_secret_value(), web_client=deps.poster.client).start()  # type: ignore[no-untyped-call]
            else:
                assert settings.slack_signing_secret is not None
                signing_secret = settings.slack_signing_secret.get_secret_value()
                web = web_ui_for(settings, history, signing_secret) if (settings.web_ui if web_ui is None else web_ui) else None
                server = SlackHttpServer(app, host, port, signing_secret=signing_secret, limits=http_limits(settings), web=web)
                if web is not None:
                    web_base = (settings.web_url or server.origin).rstrip("/")
                    deps.web_links = WebLinks(web_base, web.signer)
                    click.echo(f"kubereach: web UI at {web_base}/ui/ (reached through signed links from Slack)")
                click.echo(f"kubereach: Slack app listening on {server.url} (Ctrl-C stops)")
                try:
                    server.serve_forever()
                finally:
                    server.stop()
        except KeyboardInterrupt:
            log.warning("kubereach: stopping; in-flight investigations and digests may finish for %.0f s", grace)
            deadline = time.monotonic() + grace
            released = stop_digests(digests, grace)
            if released:
                log.warning("kubereach: %d digest(s) did not finish and were released for another process", released)
            closed = drain(deps, max(0.0, deadline - time.monotonic()))
            if closed:
                log.warning("kubereach: %d investigation(s) did not finish and were marked interrupted", closed)
        finally:
            stop_digests(digests, 0)
            deps.close()
            if ops is not None:
                ops.stop()

    return serve


def web_ui_for(settings: BotSettings, history: HistoryRecorder, signing_secret: str) -> WebUi:
    """The web UI over the history, signing links with `web_link_secret` or a key derived from the signing secret."""
    secret = settings.web_link_secret.get_secret_value() if settings.web_link_secret else None
    if secret is not None and len(secret) < 16:
        raise BadInput("KUBEREACH_WEB_LINK_SECRET is too short", hint="use at least 16 random characters, or unset it")
    key = secret.encode("utf-8") if secret is not None else derived_key(signing_secret)
    return WebUi(history.sessions, LinkSigner(key, settings.web_link_ttl_s))


def http_limits(settings: BotSettings) -> HttpLimits:
    """The HTTP endpoint's limits from the settings (``KUBEREACH_SLACK_HTTP_…``)."""
    return HttpLimits(
        max_body_bytes=settings.slack_http_max_body_bytes,
        idle_timeout_s=settings.slack_http_timeout_s,
        threads=settings.slack_http_threads,
        connection_limit=settings.slack_http_connection_limit,
    )


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM ends serving the way Ctrl-C does, so shutdown drains in one place."""
    raise KeyboardInterrupt


def with_metrics(new_investigator: MeasuredInvestigator, metrics: BotMetrics) -> NewInvestigator:
    """The investigator factory that reports to `metrics`."""

    def build(settings: BotSettings, history: HistoryRecorder | None) -> Investigates:
        return new_investigator(settings, history, metrics)

    return build
