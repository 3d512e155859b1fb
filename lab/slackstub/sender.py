"""Slack's side of the conversation with the app: signed slash commands, Events API callbacks and
block_actions interactions, built and POSTed the way Slack builds and posts them.

Every send returns a `SlackDelivery` (status, body, elapsed seconds, and the request as sent), so a
test can check the ack, its time, and re-send the same request as one of Slack's retries.
"""

from __future__ import annotations

import http.client
import json
import secrets
import time
import urllib.parse
import uuid
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from lab.errors import LabError
from lab.slackstub.server import SlackStub
from lab.slackstub.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from lab.slackstub.state import JsonObject, Team

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
USER_AGENT = "Slackbot 1.0 (+https://api.slack.com/robots)"


@dataclass(frozen=True)
class SlackRequest:
    """One request as Slack would send it, before signing: the raw body and what it refers to.

    `message_ts` is the message the request is about (the mention's ts, the clicked message);
    `response_url` the URL handed to the app, when there is one.
    """

    kind: str
    body: bytes
    content_type: str
    event_id: str | None = None
    response_url: str | None = None
    message_ts: str | None = None


@dataclass(frozen=True)
class SlackDelivery:
    """The app's answer to one delivery: HTTP status, body text, seconds until the answer, and the request.

    Unpacks as ``status, body, elapsed = delivery``; the request (for a retry) is ``delivery.request``.
    """

    status: int
    body: str
    elapsed: float
    request: SlackRequest

    def __iter__(self) -> Iterator[Any]:
        """Yield status, body and elapsed, so the delivery unpacks like Slack's view of the ack."""
        return iter((self.status, self.body, self.elapsed))


def _random_trigger_id() -> str:
    return f"{secrets.randbelow(10**12)}.{secrets.randbelow(10**11)}.{secrets.token_hex(16)}"


def _random_event_id() -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return "Ev" + "".join(secrets.choice(alphabet) for _ in range(10))


class Workspace(Protocol):
    """What the sender needs to know of the Slack workspace: the stand-in in this process
    (`LocalWorkspace`) or the lab's stand-in process (`lab.slackstub.control.RemoteWorkspace`)."""

    @property
    def team(self) -> Team:
        """The workspace."""

    @property
    def app_id(self) -> str:
        """The app's id."""

    @property
    def bot_user_id(self) -> str:
        """The bot user's id."""

    def channel_name(self, channel_id: str) -> str | None:
        """The channel's name, or None when there is no such channel."""

    def user_name(self, user_id: str) -> str | None:
        """The member's handle, or None when there is no such member."""

    def new_response_url(
        self, kind: str, channel: str, user: str, *, message_ts: str | None = None, thread_ts: str | None = None
    ) -> str:
        """Mint a response_url for a command (`kind` ``command``) or a block action (``action``)."""

    def post_user_message(self, channel: str, user: str, text: str, *, thread_ts: str | None = None) -> str:
        """A person writes `text`; returns its ts."""

    def message_json(self, channel: str, ts: str) -> JsonObject | None:
        """The message as Slack returns it, with ``"ephemeral"`` set for an ephemeral one; None when gone."""


class LocalWorkspace:
    """The `Workspace` of a stand-in running in this process."""

    def __init__(self, stub: SlackStub) -> None:
        """Read and write `stub` directly."""
        self.stub = stub

    @property
    def team(self) -> Team:
        """The workspace."""
        return self.stub.state.team

    @property
    def app_id(self) -> str:
        """The app's id."""
        return self.stub.state.app_id

    @property
    def bot_user_id(self) -> str:
        """The bot user's id."""
        return self.stub.state.bot.id

    def channel_name(self, channel_id: str) -> str | None:
        """The channel's name, or None."""
        channel = self.stub.state.channel(channel_id)
        return channel.name if channel is not None else None

    def user_name(self, user_id: str) -> str | None:
        """The member's handle, or None."""
        user = self.stub.state.user(user_id)
        return user.name if user is not None else None

    def new_response_url(
        self, kind: str, channel: str, user: str, *, message_ts: str | None = None, thread_ts: str | None = None
    ) -> str:
        """Mint a response_url."""
        return self.stub.new_response_url(kind, channel, user, message_ts=message_ts, thread_ts=thread_ts)

    def post_user_message(self, channel: str, user: str, text: str, *, thread_ts: str | None = None) -> str:
        """A person writes `text`; returns its ts."""
        return self.stub.state.post_user_message(channel, user, text, thread_ts=thread_ts)

    def message_json(self, channel: str, ts: str) -> JsonObject | None:
        """The live message as Slack returns it (``"ephemeral"`` added), or None."""
        message = self.stub.state.message(channel, ts)
        if message is None or message.deleted:
            return None
        return {**self.stub.web_api.message_json(message), "ephemeral": message.ephemeral}


class SlackSender:
    """Sends the app at `app_url` what Slack sends, signed with `signing_secret`, about `stub`'s workspace.

    One URL serves commands, events and interactions (as a bolt app's ``/slack/events`` does).
    Options on every send: `retry_num` (adds ``X-Slack-Retry-Num``/``-Reason``), `timestamp`
    (a stale or future ``X-Slack-Request-Timestamp``), `forge` (signature from the wrong secret),
    `omit_headers` (header names to leave out). `stub` is a stand-in in this process or any
    `Workspace` (the lab's stand-in process).
    """

    def __init__(
        self,
        app_url: str,
        signing_secret: str,
        stub: SlackStub | Workspace,
        *,
        timeout: float = 10.0,
        verification_token: str = "kubereachLabVerificationTok",  # noqa: S107 - Slack's legacy token field, fake
    ) -> None:
        """Prepare to deliver to `app_url` (``http://127.0.0.1:PORT/slack/events``)."""
        parts = urllib.parse.urlsplit(app_url)
        if parts.scheme != "http" or not parts.hostname or parts.port is None:
            raise LabError(f"the app URL {app_url!r} is not http://HOST:PORT/PATH", hint="pass the app's local endpoint")
        self.app_url = app_url
        self.signing_secret = signing_secret
        self.workspace: Workspace = LocalWorkspace(stub) if isinstance(stub, SlackStub) else stub
        self.timeout = timeout
        self.verification_token = verification_token
        self._host = parts.hostname
        self._port = parts.port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    # ---- building ----------------------------------------------------------------------------

    def _channel_name(self, channel_id: str) -> str:
        name = self.workspace.channel_name(channel_id)
        if name is None:
            raise LabError(f"the Slack stand-in has no channel {channel_id}", hint="create it with state.add_channel()")
        return name

    def _user_name(self, user_id: str) -> str:
        name = self.workspace.user_name(user_id)
        if name is None:
            raise LabError(f"the Slack stand-in has no user {user_id}", hint="create it with state.add_user()")
        return name

    def slash_command_request(self, command: str, text: str, *, channel: str, user: str) -> SlackRequest:
        """The form body Slack posts for ``/command text`` typed by `user` in `channel`."""
        workspace = self.workspace
        response_url = workspace.new_response_url("command", channel, user)
        fields = [
            ("token", self.verification_token),
            ("team_id", workspace.team.id),
            ("team_domain", workspace.team.domain),
            ("channel_id", channel),
            ("channel_name", self._channel_name(channel)),
            ("user_id", user),
            ("user_name", self._user_name(user)),
            ("command", command),
            ("text", text),
            ("api_app_id", workspace.app_id),
            ("is_enterprise_install", "false"),
            ("response_url", response_url),
            ("trigger_id", _random_trigger_id()),
        ]
        return SlackRequest(
            kind="slash_command", body=urllib.parse.urlencode(fields).encode(), content_type=FORM, response_url=response_url
        )

    def event_envelope(self, event: JsonObject, *, event_id: str | None = None) -> JsonObject:
        """The ``event_callback`` envelope Slack wraps around one event."""
        workspace = self.workspace
        eid = event_id or _random_event_id()
        return {
            "token": self.verification_token,
            "team_id": workspace.team.id,
            "context_team_id": workspace.team.id,
            "context_enterprise_id": None,
            "api_app_id": workspace.app_id,
            "event": event,
            "type": "event_callback",
            "event_id": eid,
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": workspace.team.id,
                    "user_id": workspace.bot_user_id,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
            "event_context": f"4-{secrets.token_urlsafe(24)}",
        }

    def event_request(self, event: JsonObject, *, event_id: str | None = None) -> SlackRequest:
        """The ``event_callback`` envelope Slack posts around one event."""
        envelope = self.event_envelope(event, event_id=event_id)
        return SlackRequest(
            kind="event_callback",
            body=json.dumps(envelope).encode(),
            content_type=JSON,
            event_id=str(envelope["event_id"]),
            message_ts=event.get("ts"),
        )

    def app_mention_event(self, channel: str, user: str, text: str, *, thread_ts: str | None = None) -> JsonObject:
        """`user` writes a message mentioning the bot (stored in the stand-in); the ``app_mention`` event for it."""
        workspace = self.workspace
        mention = f"<@{workspace.bot_user_id}>"
        full_text = text if mention in text else f"{mention} {text}"
        ts = workspace.post_user_message(channel, user, full_text, thread_ts=thread_ts)
        event: JsonObject = {
            "client_msg_id": str(uuid.uuid4()),
            "type": "app_mention",
            "text": full_text,
            "user": user,
            "ts": ts,
            "blocks": [
                {
                    "type": "rich_text",
                    "block_id": secrets.token_hex(3),
                    "elements": [{"type": "rich_text_section", "elements": [{"type": "text", "text": full_text}]}],
                }
            ],
            "team": workspace.team.id,
            "channel": channel,
            "event_ts": ts,
        }
        if thread_ts is not None:
            event["thread_ts"] = thread_ts
            parent = workspace.message_json(channel, thread_ts)
            if parent is not None:
                event["parent_user_id"] = parent.get("user")
        return event

    def app_mention_request(self, channel: str, user: str, text: str, *, thread_ts: str | None = None) -> SlackRequest:
        """`user` writes a message mentioning the bot (stored in the stand-in); the ``app_mention`` event for it."""
        return self.event_request(self.app_mention_event(channel, user, text, thread_ts=thread_ts))

    def url_verification_request(self, challenge: str | None = None) -> SlackRequest:
        """The ``url_verification`` handshake Slack sends when the events URL is saved."""
        body = {"token": self.verification_token, "challenge": challenge or secrets.token_urlsafe(40), "type": "url_verification"}
        return SlackRequest(kind="url_verification", body=json.dumps(body).encode(), content_type=JSON)

    @staticmethod
    def _find_button(message: JsonObject, action_id: str) -> tuple[str, JsonObject] | None:
        for block in message.get("blocks") or []:
            candidates: list[Any] = list(block.get("elements", [])) if block.get("type") == "actions" else []
            if block.get("type") == "section" and isinstance(block.get("accessory"), dict):
                candidates.append(block["accessory"])
            for element in candidates:
                if isinstance(element, dict) and element.get("action_id") == action_id:
                    return str(block.get("block_id", "")), element
        return None

    def block_action_payload(
        self, channel: str, user: str, message_ts: str, action_id: str, *, value: str | None = None, block_id: str | None = None
    ) -> JsonObject:
        """`user` clicks the button `action_id` on the bot's message `message_ts`: the block_actions payload."""
        workspace = self.workspace
        found_message = workspace.message_json(channel, message_ts)
        if found_message is None:
            raise LabError(f"no message {message_ts} in {channel} to click on", hint="post it first, or check the ts")
        message = found_message
        ephemeral = bool(message.pop("ephemeral", False))
        found = self._find_button(message, action_id)
        if found is None and block_id is None:
            raise LabError(
                f"message {message_ts} shows no element with action_id {action_id!r}",
                hint="pass block_id= to click an element the message does not show",
            )
        found_block_id, element = found if found is not None else (block_id or "", {})
        thread_ts = message.get("thread_ts") if message.get("thread_ts") != message_ts else None
        response_url = workspace.new_response_url("action", channel, user, message_ts=message_ts, thread_ts=thread_ts)
        container: JsonObject = {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel,
            "is_ephemeral": ephemeral,
        }
        if thread_ts is not None:
            container["thread_ts"] = thread_ts
        action: JsonObject = {
            "action_id": action_id,
            "block_id": block_id or found_block_id,
            "text": element.get("text", {"type": "plain_text", "text": action_id, "emoji": True}),
            "type": element.get("type", "button"),
            "action_ts": f"{time.time():.6f}",
        }
        chosen_value = value if value is not None else element.get("value")
        if chosen_value is not None:
            action["value"] = chosen_value
        if "style" in element:
            action["style"] = element["style"]
        return {
            "type": "block_actions",
            "user": {"id": user, "username": self._user_name(user), "name": self._user_name(user), "team_id": workspace.team.id},
            "api_app_id": workspace.app_id,
            "token": self.verification_token,
            "container": container,
            "trigger_id": _random_trigger_id(),
            "team": {"id": workspace.team.id, "domain": workspace.team.domain},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel, "name": self._channel_name(channel)},
            "message": message,
            "state": {"values": {}},
            "response_url": response_url,
            "actions": [action],
        }

    def block_action_request(
        self, channel: str, user: str, message_ts: str, action_id: str, *, value: str | None = None, block_id: str | None = None
    ) -> SlackRequest:
        """`user` clicks the button `action_id` on the bot's message `message_ts`: the block_actions payload."""
        payload = self.block_action_payload(channel, user, message_ts, action_id, value=value, block_id=block_id)
        body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
        return SlackRequest(
            kind="block_actions", body=body, content_type=FORM, response_url=str(payload["response_url"]), message_ts=message_ts
        )

    def view_submission_payload(self, view: JsonObject, user: str, text: str) -> JsonObject:
        """`user` types `text` into the modal's first text input and presses its submit button."""
        values: JsonObject = {}
        for block in view.get("blocks") or []:
            element = block.get("element") if block.get("type") == "input" else None
            if isinstance(element, dict) and element.get("type") == "plain_text_input" and not values:
                values[str(block.get("block_id", ""))] = {
                    str(element.get("action_id", "")): {"type": "plain_text_input", "value": text}
                }
        workspace = self.workspace
        return {
            "type": "view_submission",
            "team": {"id": workspace.team.id, "domain": workspace.team.domain},
            "user": {"id": user, "username": self._user_name(user), "name": self._user_name(user), "team_id": workspace.team.id},
            "api_app_id": workspace.app_id,
            "token": self.verification_token,
            "trigger_id": _random_trigger_id(),
            "view": {**view, "state": {"values": values}},
            "response_urls": [],
            "is_enterprise_install": False,
            "enterprise": None,
        }

    def view_submission_request(self, view: JsonObject, user: str, text: str) -> SlackRequest:
        """The form body Slack posts when the modal is submitted."""
        payload = self.view_submission_payload(view, user, text)
        return SlackRequest(
            kind="view_submission", body=urllib.parse.urlencode({"payload": json.dumps(payload)}).encode(), content_type=FORM
        )

    # ---- sending -----------------------------------------------------------------------------

    def deliver(
        self,
        request: SlackRequest,
        *,
        retry_num: int | None = None,
        retry_reason: str = "http_timeout",
        timestamp: int | None = None,
        forge: bool = False,
        omit_headers: Collection[str] = (),
    ) -> SlackDelivery:
        """Sign `request` now (or at `timestamp`) and POST it to the app; return its answer and how long it took."""
        stamp = int(time.time()) if timestamp is None else timestamp
        secret = self.signing_secret + "-forged" if forge else self.signing_secret
        headers = {
            "Content-Type": request.content_type,
            "User-Agent": USER_AGENT,
            "Accept": "*/*",
            TIMESTAMP_HEADER: str(stamp),
            SIGNATURE_HEADER: sign(secret, stamp, request.body),
        }
        if retry_num is not None:
            headers["X-Slack-Retry-Num"] = str(retry_num)
            headers["X-Slack-Retry-Reason"] = retry_reason
        omitted = {name.lower() for name in omit_headers}
        headers = {k: v for k, v in headers.items() if k.lower() not in omitted}
        connection = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
        started = time.perf_counter()
        try:
            connection.request("POST", self._path, body=request.body, headers=headers)
            response = connection.getresponse()
            text = response.read().decode("utf-8", errors="replace")
            elapsed = time.perf_counter() - started
            return SlackDelivery(response.status, text, elapsed, request)
        except (OSError, http.client.HTTPException) as exc:
            raise LabError(
                f"the app at {self.app_url} did not answer a {request.kind} request: {exc}",
                hint="check that the app is listening and answers within the sender's timeout",
            ) from exc
        finally:
            connection.close()

    def retry(self, delivery: SlackDelivery, retry_num: int = 1, retry_reason: str = "http_timeout") -> SlackDelivery:
        """Re-send an earlier request as Slack's retry `retry_num`: same body and event_id, fresh signature."""
        return self.deliver(delivery.request, retry_num=retry_num, retry_reason=retry_reason)

    def slash_command(self, command: str, text: str, *, channel: str, user: str, **options: Any) -> SlackDelivery:
        """Send ``/command text`` from `user` in `channel`; the response_url is in ``.request.response_url``."""
        return self.deliver(self.slash_command_request(command, text, channel=channel, user=user), **options)

    def app_mention(self, channel: str, user: str, text: str, *, thread_ts: str | None = None, **options: Any) -> SlackDelivery:
        """`user` mentions the bot in `channel` (or a thread); the message's ts is ``.request.message_ts``."""
        return self.deliver(self.app_mention_request(channel, user, text, thread_ts=thread_ts), **options)

    def event(self, event: JsonObject, *, event_id: str | None = None, **options: Any) -> SlackDelivery:
        """Send any event inside an ``event_callback`` envelope."""
        return self.deliver(self.event_request(event, event_id=event_id), **options)

    def url_verification(self, challenge: str | None = None, **options: Any) -> SlackDelivery:
        """Send the ``url_verification`` handshake; the app must echo the challenge."""
        return self.deliver(self.url_verification_request(challenge), **options)

    def block_action(
        self,
        channel: str,
        user: str,
        message_ts: str,
        action_id: str,
        *,
        value: str | None = None,
        block_id: str | None = None,
        **options: Any,
    ) -> SlackDelivery:
        """`user` clicks button `action_id` on message `message_ts` in `channel`."""
        request = self.block_action_request(channel, user, message_ts, action_id, value=value, block_id=block_id)
        return self.deliver(request, **options)
