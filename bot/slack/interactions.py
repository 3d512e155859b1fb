"""Listeners beyond the command, the mention and the buttons: the Resolved modal's submission and the
App Home tab. `register(app, deps)` is called by `bot.slack.app.register`."""

from __future__ import annotations

from typing import Any

from slack_bolt import App

from bot.slack import flows
from bot.slack.flows import SlackDeps
from bot.slack.handlers import Ack, _work
from bot.slack.home import publish_home
from bot.slack.modals import RESOLVE_CALLBACK, submitted


def register(app: App, deps: SlackDeps) -> None:
    """Wire the modal submission and app_home_opened."""

    @app.view(RESOLVE_CALLBACK)
    def resolve_submitted(ack: Ack, body: dict[str, Any]) -> None:
        parsed = submitted(body)
        user = body.get("user") or {}
        user_id = str(user.get("id", ""))
        user_name = str(user.get("username") or user.get("name") or user_id)
        if parsed is None:
            ack(response_action="errors", errors={"kubereach_note": "This form is out of date; click Resolved again."})
            return
        target, note = parsed
        _work(
            deps,
            ack,
            lambda: flows.resolve(deps, target.investigation_id, target.channel, user_id, user_name, note, target.thread_ts),
            target.channel,
            user_id,
        )

    @app.event("app_home_opened")
    def home_opened(ack: Ack, event: dict[str, Any]) -> None:
        user_id = str(event.get("user", ""))
        if event.get("tab", "home") != "home" or not user_id:
            ack()
            return
        # No channel to answer in: a failure is logged (an ephemeral to the user's own id reaches nobody).
        _work(deps, ack, lambda: publish_home(deps, user_id), user_id, user_id)
