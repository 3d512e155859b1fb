"""The lab's handle on its Slack stand-in process: a small JSON API next to the Web API, and its client.

The stand-in runs as a lab process (`python -m lab.slackstub`); `kubereach lab slack …` and tests in
other processes reach it through these routes, authenticated with the workspace's bot token:

- ``GET /lab/workspace``: team, app, bot user, channels and people;
- ``GET /lab/messages?channel=C[&thread=TS]``: what was posted there, ephemeral messages included;
- ``GET /lab/message?channel=C&ts=TS``: one message as Slack returns it;
- ``POST /lab/user-message``: a person writes in a channel or thread;
- ``POST /lab/response-url``: mint a response_url for a command or a click;
- ``POST /lab/socket/deliver``: send a Socket Mode envelope to the connected app and wait for its ack;
- ``POST /lab/socket/disconnect``: ask the connected app to reconnect.

`RemoteWorkspace` is the client, and a `lab.slackstub.sender.Workspace`, so the same `SlackSender`
that tests use in-process signs and delivers requests about the stand-in process.
"""

from __future__ import annotations

import base64
import http.client
import json
import urllib.parse
from typing import TYPE_CHECKING, Any

from lab.errors import LabError
from lab.slackstub.state import JsonObject, Message, StoredFile, Team

if TYPE_CHECKING:
    from lab.slackstub.server import SlackStub


def message_record(stub: SlackStub, message: Message) -> JsonObject:
    """One message as `lab slack messages --json` prints it."""
    record: JsonObject = {
        "ts": message.ts,
        "thread_ts": message.thread_ts,
        "user": message.user,
        "text": message.text,
        "blocks": [dict(b) for b in message.blocks],
        "ephemeral": message.ephemeral,
    }
    if message.ephemeral:
        record["user"] = message.shown_to
        record["author"] = message.user
    if message.edits:
        record["edited"] = len(message.edits)
    if message.files:
        record["files"] = [file_record(f) for f in (stub.state.file(fid) for fid in message.files) if f is not None]
    return record


def file_record(stored: StoredFile) -> JsonObject:
    """A shared file: text content as text; binary content (a picture) base64-encoded, with its size."""
    data = stored.content or b""
    record: JsonObject = {"id": stored.id, "name": stored.name, "title": stored.title, "size": len(data)}
    try:
        record["content"] = data.decode("utf-8")
    except UnicodeDecodeError:
        record["content"] = ""
        record["content_base64"] = base64.b64encode(data).decode("ascii")
    if stored.alt_txt:
        record["alt_txt"] = stored.alt_txt
    return record


def answer_control(stub: SlackStub, verb: str, path: str, query: str, raw: bytes, authorization: str | None) -> tuple[int, Any]:
    """Serve one ``/lab/…`` request: (HTTP status, JSON body)."""
    token = authorization[7:].strip() if authorization and authorization.lower().startswith("bearer ") else None
    if token != stub.state.bot_token:
        return 401, {"ok": False, "error": "invalid_auth"}
    args: JsonObject = {k: v[-1] for k, v in urllib.parse.parse_qs(query).items()}
    if raw:
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return 400, {"ok": False, "error": "invalid_json"}
        if isinstance(body, dict):
            args.update(body)
    state = stub.state
    try:
        if verb == "GET" and path == "workspace":
            return 200, {
                "ok": True,
                "team": {"id": state.team.id, "name": state.team.name, "domain": state.team.domain},
                "app_id": state.app_id,
                "bot_user_id": state.bot.id,
                "channels": [{"id": c.id, "name": c.name} for c in state.channels()],
                "users": [{"id": u.id, "name": u.name} for u in state.users()],
            }
        if verb == "GET" and path == "views":
            opened = [
                {"trigger_id": v.trigger_id, "view": stub.web_api.opened_view_json(v.id, v.view, v.hash)}
                for v in state.opened_views()
            ]
            home = [{"user_id": v.user_id, "view": v.view} for v in state.views()]
            return 200, {"ok": True, "opened": opened, "home": home}
        if verb == "GET" and path == "messages":
            channel = str(args.get("channel", ""))
            if state.channel(channel) is None:
                return 404, {"ok": False, "error": "channel_not_found"}
            thread = args.get("thread")
            found = [
                m for m in state.messages(channel, include_ephemeral=True) if thread is None or thread in (m.ts, m.thread_ts)
            ]
            return 200, {"ok": True, "messages": [message_record(stub, m) for m in found]}
        if verb == "GET" and path == "message":
            message = state.message(str(args.get("channel", "")), str(args.get("ts", "")))
            if message is None or message.deleted:
                return 404, {"ok": False, "error": "message_not_found"}
            return 200, {"ok": True, "message": {**stub.web_api.message_json(message), "ephemeral": message.ephemeral}}
        if verb == "POST" and path == "user-message":
            ts = state.post_user_message(
                str(args["channel"]), str(args["user"]), str(args["text"]), thread_ts=args.get("thread_ts") or None
            )
            return 200, {"ok": True, "ts": ts}
        if verb == "POST" and path == "response-url":
            url = stub.new_response_url(
                str(args["kind"]),
                str(args["channel"]),
                str(args["user"]),
                message_ts=args.get("message_ts") or None,
                thread_ts=args.get("thread_ts") or None,
            )
            return 200, {"ok": True, "url": url}
        if verb == "POST" and path == "socket/deliver":
            ack = stub.socket_mode.deliver(str(args["type"]), dict(args["payload"]), timeout=float(args.get("timeout", 10)))
            ack_ms = round(ack.seconds * 1000, 1)
            return 200, {"ok": True, "envelope_id": ack.envelope_id, "payload": ack.payload, "ack_ms": ack_ms}
        if verb == "POST" and path == "socket/disconnect":
            asked = stub.socket_mode.disconnect(str(args.get("reason", "refresh_requested")))
            return 200, {"ok": True, "asked": asked, "connects": stub.socket_mode.connects}
        if verb == "GET" and path == "socket":
            hub = stub.socket_mode
            return 200, {"ok": True, "connected": hub.connected(), "connects": hub.connects}
    except KeyError as exc:
        return 400, {"ok": False, "error": "missing_argument", "argument": str(exc)}
    except LabError as exc:
        return 409, {"ok": False, "error": str(exc)}
    return 404, {"ok": False, "error": "unknown_control_route"}


class RemoteWorkspace:
    """The lab's stand-in process, seen through its control routes (see the module docstring)."""

    def __init__(self, origin: str, bot_token: str, *, timeout: float = 30.0) -> None:
        """Talk to the stand-in at `origin` (``http://127.0.0.1:PORT``) with the workspace's bot token."""
        parts = urllib.parse.urlsplit(origin)
        if parts.scheme != "http" or not parts.hostname or parts.port is None:
            raise LabError(f"the Slack stand-in URL {origin!r} is not http://HOST:PORT", exit_code=2)
        self.origin = f"http://{parts.hostname}:{parts.port}"
        self._host, self._port = parts.hostname, parts.port
        self._token = bot_token
        self._timeout = timeout
        self._workspace: JsonObject | None = None

    def call(self, verb: str, path: str, body: JsonObject | None = None, query: dict[str, str] | None = None) -> JsonObject:
        """One control request; raises LabError unless it answers ok."""
        target = f"/lab/{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"}
        connection = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        try:
            connection.request(verb, target, body=payload, headers=headers)
            response = connection.getresponse()
            answer = json.loads(response.read().decode("utf-8") or "{}")
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise LabError(f"the Slack stand-in at {self.origin} did not answer: {exc}", hint="is the lab up?") from exc
        finally:
            connection.close()
        if not isinstance(answer, dict) or not answer.get("ok"):
            error = answer.get("error") if isinstance(answer, dict) else answer
            raise LabError(f"the Slack stand-in refused {verb} /lab/{path}: {error}", exit_code=2)
        return answer

    def _info(self) -> JsonObject:
        if self._workspace is None:
            self._workspace = self.call("GET", "workspace")
        return self._workspace

    @property
    def team(self) -> Team:
        """The workspace."""
        team = self._info()["team"]
        return Team(id=str(team["id"]), name=str(team["name"]), domain=str(team["domain"]))

    @property
    def app_id(self) -> str:
        """The app's id."""
        return str(self._info()["app_id"])

    @property
    def bot_user_id(self) -> str:
        """The bot user's id."""
        return str(self._info()["bot_user_id"])

    def channel_name(self, channel_id: str) -> str | None:
        """The channel's name, or None."""
        return next((str(c["name"]) for c in self.call("GET", "workspace")["channels"] if c["id"] == channel_id), None)

    def user_name(self, user_id: str) -> str | None:
        """The member's handle, or None."""
        return next((str(u["name"]) for u in self._info()["users"] if u["id"] == user_id), None)

    def new_response_url(
        self, kind: str, channel: str, user: str, *, message_ts: str | None = None, thread_ts: str | None = None
    ) -> str:
        """Mint a response_url."""
        body = {"kind": kind, "channel": channel, "user": user, "message_ts": message_ts, "thread_ts": thread_ts}
        return str(self.call("POST", "response-url", body)["url"])

    def post_user_message(self, channel: str, user: str, text: str, *, thread_ts: str | None = None) -> str:
        """A person writes `text`; returns its ts."""
        body = {"channel": channel, "user": user, "text": text, "thread_ts": thread_ts}
        return str(self.call("POST", "user-message", body)["ts"])

    def message_json(self, channel: str, ts: str) -> JsonObject | None:
        """The message as Slack returns it (``"ephemeral"`` added), or None when there is none."""
        try:
            message = self.call("GET", "message", query={"channel": channel, "ts": ts})["message"]
        except LabError:
            return None
        return dict(message)

    def messages(self, channel: str, thread: str | None = None) -> list[JsonObject]:
        """What `lab slack messages` prints."""
        query = {"channel": channel} | ({"thread": thread} if thread else {})
        return list(self.call("GET", "messages", query=query)["messages"])

    def views(self) -> JsonObject:
        """Modals opened (``opened``: trigger id and view) and App Home tabs published (``home``)."""
        return self.call("GET", "views")

    def socket_deliver(self, kind: str, payload: JsonObject, timeout: float = 10.0) -> JsonObject:
        """Send a Socket Mode envelope to the connected app; its ack (``payload``, ``ack_ms``)."""
        return self.call("POST", "socket/deliver", {"type": kind, "payload": payload, "timeout": timeout})

    def socket_disconnect(self) -> JsonObject:
        """Ask the connected app to reconnect."""
        return self.call("POST", "socket/disconnect", {})

    def socket_status(self) -> JsonObject:
        """Connections open now and accepted so far."""
        return self.call("GET", "socket")
