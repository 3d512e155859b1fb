"""Talking to Slack's Web API without letting Slack's troubles stop an investigation.

Every call goes through `SlackPoster`: rate limits are retried after `Retry-After` by the client's
retry handlers (see `build_client`), a failed `chat.update` falls back to a new message, and any
other failure is logged and reported as None — the investigation goes on and its result is in the
history. Nothing here puts a token or a secret into a message.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

from bot.metrics import BotMetrics
from bot.settings import BotSettings

log = logging.getLogger("kubereach.slack")

Block = dict[str, Any]
RATE_LIMIT_RETRIES = 3
EVIDENCE_INLINE_MAX = 2800
"""Evidence longer than this (characters) is posted as a file instead of in the thread."""


def build_client(settings: BotSettings, *, timeout: int = 10) -> WebClient:
    """A WebClient for the bot token (and the stand-in's URL in the lab) that retries 429s and resets."""
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    options: dict[str, Any] = {}
    if settings.slack_api_url:
        options["base_url"] = settings.slack_api_url
    return WebClient(
        token=token,
        timeout=timeout,
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=1),
            RateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES),
        ],
        **options,
    )


def _failure(exc: Exception) -> str:
    """Slack's error code or the transport problem, never the request (which holds the token)."""
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error", "unknown_error"))
    return type(exc).__name__


@dataclass
class SlackPoster:
    """Posts, updates, ephemerals and uploads; each returns what Slack returned, or None when Slack failed."""

    client: WebClient
    failures: list[str] = field(default_factory=list)
    """What went wrong, newest last (method and Slack's error code), for logs and tests."""
    metrics: BotMetrics | None = None
    """Counts failed Slack calls by method and error code, when given."""

    def _call(self, method: str, **kwargs: Any) -> dict[str, Any] | None:
        """Call the WebClient method `method` (e.g. ``chat_postMessage``); None when Slack failed."""
        try:
            response = getattr(self.client, method)(**kwargs)
        except (SlackApiError, SlackClientError, OSError) as exc:
            reason = _failure(exc)
            self.failures.append(f"{method}: {reason}")
            if self.metrics is not None:
                self.metrics.slack_api_failed(method, reason)
            log.warning("slack: %s failed: %s", method, reason)
            return None
        data = getattr(response, "data", None)
        return dict(data) if isinstance(data, dict) else {}

    def post(self, channel: str, text: str, blocks: Sequence[Block] | None = None, *, thread_ts: str | None = None) -> str | None:
        """Post a message (in a thread when `thread_ts`); its ts, or None."""
        args: dict[str, Any] = {"channel": channel, "text": text}
        if blocks is not None:
            args["blocks"] = list(blocks)
        if thread_ts:
            args["thread_ts"] = thread_ts
        answer = self._call("chat_postMessage", **args)
        return str(answer["ts"]) if answer and answer.get("ts") else None

    def update_or_post(
        self, channel: str, ts: str | None, text: str, blocks: Sequence[Block], *, thread_ts: str | None
    ) -> str | None:
        """Replace message `ts`; when that fails (or there is none), post a new message in the thread. Returns the ts shown."""
        if ts is not None:
            answer = self._call("chat_update", channel=channel, ts=ts, text=text, blocks=list(blocks))
            if answer is not None:
                return ts
        return self.post(channel, text, blocks, thread_ts=thread_ts)

    def ephemeral(
        self, channel: str, user: str, text: str, blocks: Sequence[Block] | None = None, *, thread_ts: str | None = None
    ) -> bool:
        """Show `text` to `user` only."""
        args: dict[str, Any] = {"channel": channel, "user": user, "text": text}
        if blocks is not None:
            args["blocks"] = list(blocks)
        if thread_ts:
            args["thread_ts"] = thread_ts
        return self._call("chat_postEphemeral", **args) is not None

    def upload(self, channel: str, thread_ts: str | None, filename: str, content: str, title: str, comment: str) -> bool:
        """Share `content` as a file in the thread (files.getUploadURLExternal + completeUploadExternal)."""
        args: dict[str, Any] = {
            "channel": channel,
            "filename": filename,
            "content": content,
            "title": title,
            "initial_comment": comment,
        }
        if thread_ts:
            args["thread_ts"] = thread_ts
        return self._call("files_upload_v2", **args) is not None

    def upload_bytes(self, channel: str, thread_ts: str | None, filename: str, data: bytes, *, title: str, alt_text: str) -> bool:
        """Share binary `data` (a picture) as a file in the thread (files v2: get URL, upload, complete)."""
        args: dict[str, Any] = {"channel": channel, "filename": filename, "file": data, "title": title, "alt_txt": alt_text}
        if thread_ts:
            args["thread_ts"] = thread_ts
        return self._call("files_upload_v2", **args) is not None

    def group_members(self, group_id: str) -> list[str] | None:
        """The member ids of a user group (usergroups.users.list), or None when Slack cannot tell."""
        answer = self._call("usergroups_users_list", usergroup=group_id)
        users = answer.get("users") if answer else None
        return [str(u) for u in users] if isinstance(users, list) else None

    def open_view(self, trigger_id: str, view: Block) -> str | None:
        """Open a modal for the person who clicked (views.open); the view's id, or None."""
        answer = self._call("views_open", trigger_id=trigger_id, view=view)
        opened = answer.get("view") if answer else None
        return str(opened.get("id")) if isinstance(opened, dict) else None

    def publish_home(self, user_id: str, view: Block) -> bool:
        """Publish a person's App Home tab (views.publish)."""
        return self._call("views_publish", user_id=user_id, view=view) is not None

    def user_name(self, user_id: str) -> str:
        """The member's handle (users.info), or the id when Slack cannot tell."""
        answer = self._call("users_info", user=user_id)
        user = answer.get("user") if answer else None
        if isinstance(user, dict):
            return str(user.get("name") or user_id)
        return user_id
