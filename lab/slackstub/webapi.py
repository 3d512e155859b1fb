"""The Slack Web API methods the bot calls, answered from `SlackState` with Slack's shapes and errors.

Each handler takes the decoded arguments (form fields or JSON, token removed) and returns an
`ApiAnswer`. HTTP concerns (auth, faults, outages, charset warnings) live in `server.py`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from lab.slackstub.blocks import MAX_MESSAGE_BLOCKS, MAX_VIEW_BLOCKS, validate_blocks
from lab.slackstub.state import JsonObject, Message, SlackState, StoredFile

MAX_MESSAGE_TEXT = 40_000
DEFAULT_HISTORY_LIMIT = 100
DEFAULT_REPLIES_LIMIT = 1000

_MIMETYPES = {
    "txt": ("text/plain", "text", "Plain Text"),
    "json": ("application/json", "json", "JSON"),
    "png": ("image/png", "png", "PNG"),
    "csv": ("text/csv", "csv", "CSV"),
    "log": ("text/plain", "text", "Plain Text"),
    "md": ("text/plain", "markdown", "Markdown (raw)"),
}


@dataclass(frozen=True)
class UploadedPart:
    """A file part of a multipart request (legacy `files.upload`)."""

    filename: str
    content: bytes


@dataclass(frozen=True)
class ApiAnswer:
    """What the server sends back for one call: HTTP status, JSON body, extra headers."""

    status: int
    body: JsonObject
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when Slack would say ``"ok": true``."""
        return bool(self.body.get("ok"))


def slack_error(error: str, *, messages: list[str] | None = None, **extra: Any) -> ApiAnswer:
    """An ``{"ok": false, "error": ...}`` answer, with ``response_metadata.messages`` when given."""
    body: JsonObject = {"ok": False, "error": error, **extra}
    if messages:
        body["response_metadata"] = {"messages": messages}
    return ApiAnswer(200, body)


def _ok(**fields: Any) -> ApiAnswer:
    return ApiAnswer(200, {"ok": True, **fields})


def _missing(name: str) -> ApiAnswer:
    return slack_error("invalid_arguments", messages=[f"[ERROR] missing required field: {name}"])


def _text_arg(args: Mapping[str, Any], name: str) -> str | None:
    value = args.get(name)
    if value is None or value == "":
        return None
    return str(value)


def _bool_arg(args: Mapping[str, Any], name: str) -> bool:
    value = args.get(name)
    if isinstance(value, bool):
        return value
    return str(value).lower() in ("1", "true", "yes") if value is not None else False


def _json_arg(args: Mapping[str, Any], name: str) -> tuple[bool, Any]:
    """(present, decoded value); a string is JSON-decoded, a structure is taken as is."""
    value = args.get(name)
    if value is None or value == "":
        return False, None
    if isinstance(value, str):
        try:
            return True, json.loads(value)
        except ValueError:
            return True, _UNPARSEABLE
    return True, value


_UNPARSEABLE = object()


def _encode_cursor(offset: int) -> str:
    return base64.b64encode(f"offset:{offset}".encode()).decode()


def _decode_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return 0
    try:
        kind, _, number = base64.b64decode(cursor, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return int(number) if kind == "offset" and number.isdigit() else None


class WebApi:
    """Method name → handler over one `SlackState`; `origin` is where the stand-in is reachable."""

    def __init__(self, state: SlackState, origin: str) -> None:
        """Serve `state`; URLs handed out (upload URLs, file links) start with `origin`."""
        self.state = state
        self.origin = origin
        self._handlers: dict[str, Callable[[JsonObject, Mapping[str, UploadedPart]], ApiAnswer]] = {
            "auth.test": self.auth_test,
            "chat.postMessage": self.chat_post_message,
            "chat.update": self.chat_update,
            "chat.postEphemeral": self.chat_post_ephemeral,
            "chat.getPermalink": self.chat_get_permalink,
            "chat.delete": self.chat_delete,
            "conversations.info": self.conversations_info,
            "conversations.replies": self.conversations_replies,
            "conversations.history": self.conversations_history,
            "users.info": self.users_info,
            "usergroups.users.list": self.usergroups_users_list,
            "views.publish": self.views_publish,
            "views.open": self.views_open,
            "files.getUploadURLExternal": self.files_get_upload_url_external,
            "files.completeUploadExternal": self.files_complete_upload_external,
            "files.upload": self.files_upload,
        }

    def register(self, method: str, handler: Callable[[JsonObject, Mapping[str, UploadedPart]], ApiAnswer]) -> None:
        """Serve one more method (the stand-in adds those that need more than the state, e.g. Socket Mode)."""
        self._handlers[method] = handler

    @property
    def methods(self) -> frozenset[str]:
        """The method names served."""
        return frozenset(self._handlers)

    def call(self, method: str, args: JsonObject, files: Mapping[str, UploadedPart] | None = None) -> ApiAnswer:
        """Answer one method call; an unknown method answers ``unknown_method`` as Slack does."""
        handler = self._handlers.get(method)
        if handler is None:
            return slack_error("unknown_method", req_method=method)
        return handler(args, files or {})

    # ---- rendering ---------------------------------------------------------------------------

    def permalink(self, message: Message) -> str:
        """The message's permalink in Slack's form."""
        link = f"https://{self.state.team.domain}.slack.com/archives/{message.channel}/p{message.ts.replace('.', '')}"
        if message.is_reply:
            link += f"?thread_ts={message.thread_ts}&cid={message.channel}"
        return link

    def file_json(self, stored: StoredFile) -> JsonObject:
        """A file object as Slack's file methods return it."""
        extension = stored.name.rpartition(".")[2].lower() if "." in stored.name else ""
        mimetype, filetype, pretty = _MIMETYPES.get(extension, ("application/octet-stream", "binary", "Binary"))
        private = f"{self.origin}/files-pri/{self.state.team.id}-{stored.id}/{stored.name}"
        return {
            "id": stored.id,
            "created": stored.created,
            "timestamp": stored.created,
            "name": stored.name,
            "title": stored.title,
            "mimetype": mimetype,
            "filetype": filetype,
            "pretty_type": pretty,
            "user": stored.user,
            "user_team": self.state.team.id,
            "editable": False,
            "size": len(stored.content) if stored.content is not None else stored.declared_length,
            "mode": "hosted",
            "is_external": False,
            "external_type": "",
            "is_public": bool(stored.channels),
            "public_url_shared": False,
            "display_as_bot": False,
            "username": "",
            "url_private": private,
            "url_private_download": private + "?download=1",
            "permalink": f"https://{self.state.team.domain}.slack.com/files/{stored.user}/{stored.id}/{stored.name}",
            "alt_txt": stored.alt_txt,
            "channels": list(stored.channels),
            "groups": [],
            "ims": [],
            "comments_count": 0,
            "has_rich_preview": False,
            "file_access": "visible",
        }

    def message_json(self, message: Message) -> JsonObject:
        """A message object as Slack returns it in postMessage, history and replies."""
        state = self.state
        body: JsonObject = {
            "type": "message",
            "ts": message.ts,
            "user": message.user,
            "text": message.text,
            "team": state.team.id,
        }
        if message.bot_id is not None:
            body["bot_id"] = message.bot_id
            body["app_id"] = state.app_id
            body["bot_profile"] = {
                "id": message.bot_id,
                "app_id": state.app_id,
                "name": state.bot.name,
                "deleted": False,
                "team_id": state.team.id,
            }
        if message.blocks:
            body["blocks"] = [dict(b) for b in message.blocks]
        if message.files:
            body["files"] = [self.file_json(f) for f in (state.file(fid) for fid in message.files) if f is not None]
            body["upload"] = True
        if message.edits:
            body["edited"] = {"user": message.user, "ts": f"{message.edits[-1].replaced_at:.6f}"}
        if message.is_reply:
            body["thread_ts"] = message.thread_ts
            parent = state.message(message.channel, message.thread_ts or "")
            if parent is not None:
                body["parent_user_id"] = parent.user
            if message.reply_broadcast:
                body["subtype"] = "thread_broadcast"
                body["root"] = self.message_json(parent) if parent is not None else {}
        else:
            replies = state.replies(message.channel, message.ts)
            if replies:
                reply_users = list(dict.fromkeys(r.user for r in replies))
                body.update(
                    {
                        "thread_ts": message.ts,
                        "reply_count": len(replies),
                        "reply_users_count": len(reply_users),
                        "latest_reply": replies[-1].ts,
                        "reply_users": reply_users,
                        "is_locked": False,
                        "subscribed": False,
                    }
                )
        return body

    def channel_json(self, channel_id: str) -> JsonObject:
        """A conversation object as `conversations.info` returns it."""
        channel = self.state.channel(channel_id)
        assert channel is not None
        return {
            "id": channel.id,
            "name": channel.name,
            "name_normalized": channel.name,
            "is_channel": not channel.is_private,
            "is_group": channel.is_private,
            "is_im": False,
            "is_mpim": False,
            "is_private": channel.is_private,
            "created": channel.created,
            "is_archived": False,
            "is_general": False,
            "unlinked": 0,
            "is_shared": False,
            "is_org_shared": False,
            "is_ext_shared": False,
            "is_pending_ext_shared": False,
            "is_member": channel.bot_is_member,
            "creator": "",
            "context_team_id": self.state.team.id,
            "shared_team_ids": [self.state.team.id],
            "topic": {"value": channel.topic, "creator": "", "last_set": 0},
            "purpose": {"value": channel.purpose, "creator": "", "last_set": 0},
            "previous_names": [],
        }

    # ---- shared checks -----------------------------------------------------------------------

    def message_content(
        self, args: JsonObject, *, require: bool = True
    ) -> tuple[ApiAnswer | None, str | None, list[JsonObject] | None]:
        """Check text/blocks/attachments against Slack's rules; return (error answer or None, text, blocks)."""
        text = _text_arg(args, "text")
        has_blocks, blocks = _json_arg(args, "blocks")
        has_attachments, _attachments = _json_arg(args, "attachments")
        if has_blocks:
            if blocks is _UNPARSEABLE or not isinstance(blocks, list):
                return slack_error("invalid_blocks_format"), None, None
            problems = validate_blocks(blocks, max_blocks=MAX_MESSAGE_BLOCKS)
            if problems:
                return slack_error("invalid_blocks", errors=problems, messages=[f"[ERROR] {p}" for p in problems]), None, None
        if require and text is None and not has_blocks and not has_attachments:
            return slack_error("no_text"), None, None
        if text is not None and len(text) > MAX_MESSAGE_TEXT:
            return slack_error("msg_too_long"), None, None
        return None, text, blocks if has_blocks else None

    def _postable_channel(self, args: JsonObject, name: str = "channel") -> tuple[ApiAnswer | None, str]:
        ref = _text_arg(args, name)
        channel = self.state.channel(ref) if ref else None
        if channel is None:
            return slack_error("channel_not_found"), ""
        if not channel.bot_is_member:
            return slack_error("not_in_channel"), ""
        return None, channel.id

    def _thread_root(self, channel_id: str, thread_ts: str | None) -> str | None:
        """Slack files a reply to a reply under the thread's parent."""
        if thread_ts is None:
            return None
        target = self.state.message(channel_id, thread_ts)
        if target is not None and target.is_reply:
            return target.thread_ts
        return thread_ts

    def _live_message(self, channel_id: str, ts: str | None) -> Message | None:
        message = self.state.message(channel_id, ts) if ts else None
        if message is None or message.deleted or message.ephemeral:
            return None
        return message

    # ---- auth and chat -----------------------------------------------------------------------

    def auth_test(self, args: JsonObject, files: Mapping[str, UploadedPart]) -> ApiAnswer:
        """`auth.test`: who the token belongs to."""
        state = self.state
        return _ok(
            url=f"https://{state.team.domain}.slack.com/",
            team=state.team.name,
            user=state.bot.name,
            team_id=state.team.id,
            user_id=state.bot.id,
            bot_id=state.bot.bot_id,
            is_enterprise_install=False,
        )

    def chat_post_message(self, args: JsonObject, files: Mapping[str, UploadedPart]) -> ApiAnswer:
        """`chat.postMessage`: a message in a channel or, with thread_ts, in a thread."""
        error, channel_id = self._postable_channel(args)
        if error is not None:
            return error
        error, text, blocks = self.message_content(args)
        if error is not None:
            return error
        thread_ts = self._thread_root(channel_id, _text_arg(args, "thread_ts"))
        message = self.state.add_message(
            channel_id,
            self.state.bot.id,
            text or "",
            blocks=blocks or (),
            thread_ts=thread_ts,
            bot_id=self.state.bot.bot_id,
            reply_broadcast=thread_ts is not None and _bool_arg(args, "reply_broadcast"),
        )
        return _ok(channel=channel_id, ts=message.ts, message=self.message_json(message))

    def chat_update(self, args: JsonObject, files: Mapping[str, UploadedPart]) -> ApiAnswer:
        """`chat.update`: replace a bot message's text and (when given) blocks."""
        ref = _text_arg(args, "channel")
        channel = self.state.channel(ref) if ref else None
        if channel is None:
            return slack_error("channel_not_found")
        message = self._live_message(channel.id, _text_arg(args, "ts"))
        if message is None:
            return slack_error("message_not_found")
        if message.user != self.state.bot.id:
            return slack_error("cant_update_message")
        error, text, blocks = self.message_content(args)
        if error is not None:
            return error
        updated = self.state.update_message(
            channel.id, message.ts, text=text if text is not None else message.text, blocks=blocks
        )
        return _ok(channel=channel.id, ts=updated.ts, text=updated.text, message=self.message_json(updated))

    def chat_post_ephemeral(self, args: JsonObject, files: Mapping[str, UploadedPart]) -> ApiAnswer:
        """`chat.postEphemeral`: a message only `user` sees; answers `message_ts`."""
        error, channel_id = self._postable_channel(args)
        if error is not None:
            return error
        user_id = _text_arg(args, "user")
        if user_id is None:
            return _missing("user")
        if self.state.user(user_id) is None:
            return slack_error("user_not_found")
        error, text, blocks = self.message_content(args)
        if error is not None:
            return error
        message = self.state.add_message(
            channel_id,
            self.state.bot.id,
            text or "",
            blocks=blocks or (),
            thread_ts=self._thread_root(channel_id, _text_arg(args, "thread_ts")),
            bot_id=self.state.bot.bot_id,
            ephemeral=True,
            shown_to=user_id,
        )
        return _ok(message_ts=message.ts)

    def chat_get_permalink(self, args: JsonObject, files: Mapping[str, UploadedPart]) -> ApiAnswer:
        """`chat.getPermalink`: the link to one message."""
        ref = _text_arg(args, "channel")
        channel = self.state.channel(ref) if ref else None
        if channel is None:
            return slack_error("channel_not_found")
        message = self._live_message(channel.id, _text_arg(args, "message_ts"))
        if message is None:
            return slack_error("message_not_found")
        return _ok(channel=channel.id, permalink=self.permalink(message))

    def chat_delete(self, args: JsonObject, files: Mapping[str, UploadedPart]) -> ApiAnswer:
        """`chat.delete`: remove one of the bot's messages."""
        ref = _text_arg(args, "channel")
        channel = self.state.channel(ref) if ref else None
        if channel is None:
            return slack_error("channel_not_found")
        message = self._live_message(channel.id, _text_arg(args, "ts"))
        if message is None:
            return slack_error("message_not_found")
        if message.user != self.state.bot.id:
            return slack_error("cant_delete_message")
        self.state.delete_message(channel.id, message.ts)
        return _ok(channel=channel.id, ts=message.ts)

    # ---- conversations and users -------------------------------------------------------------

    def conversations_info(self, args: JsonObject, files: Mapping[str, UploadedPart]) -> ApiAnswer:
        """`conversations.info`: one channel's description."""
        ref = _text_arg(args, "channel")
        channel = self.state.channel(ref) if ref else None
        if channel is None or (ref is not None and ref != channel.id):
            return slack_error("channel_not_found")
        return _ok(channel=self.channel_json(channel.id))

    def _page(self, messages: list[Message], args: JsonObject, default_limit: int) -> ApiAnswer:
        offset = _decode_cursor(_text_arg(args, "cursor"))
        if offset is None:
            return slack_error("invalid_cursor")
        try:
            limit = int(args.get("limit") or default_limit)
        except (TypeError, ValueError):
            return slack_error("invalid_limit")
        limit = max(1, min(limit, 1000))
        page = messages[offset : offset + limit]
        has_more = offset + limit < len(messages)
        return _ok(
            messages=[self.message_json(m) for m in page],
            has_more=has_more,
            response_metadata={"next_cursor": _encode_cursor(offset + limit) if has_more else ""},
        )

    @staticmethod
    def _in_window(messages: list[Message], args: JsonObject) -> list[Message]:
        oldest = _text_arg(args, "oldest")
        latest = _text_arg(args, "latest")
        inclusive = _bool_arg(args, "inclusive")

        def keep(m: Message) -> bool:
            ts = float(m.ts)
            if oldest is not None and (ts < float(oldest) or (ts == float(oldest) and not inclusive)):
                return False
            return not (latest is not None and (ts > float(latest) or (ts == float(latest) and not inclusive)))

        return [m for m in messages if keep(m)]

    def conversations_replies(self, args: JsonObject, files: Mapping[str, UploadedPart]) -> ApiAnswer:
        """`conversations.replies`: a thread, parent first, oldest to newest."""
        ref = _text_arg(args, "channel")
        channel = self.state.channel(ref) if ref else None
        if channel is None:
            return slack_error("channel_not_found")
        ts = _text_arg(args, "ts")
        if ts is None:
            return _missing("ts")
        message = self._live_message(channel.id, ts)
        if message is None:
            return slack_error("thread_not_found")
        thread = [message] if message.is_reply else self.state.thread(channel.id, ts)
        return self._page(self._in_window(thread, args), args, DEFAULT_REPLIES_LIMIT)

    def conversations_history(self, args: JsonObject, files: Mapping[str, UploadedPart]) -> ApiAnswer:
        """`conversations.history`: top-level messages (and broadcast replies), newest first."""
        ref = _text_arg(args, "channel")
        channel = self.state.channel(ref) if ref else None
        if channel is None:
            return slack_error("channel_not_found")
        visible = [m for m in self.state.messages(channel.id) if not m.is_reply or m.reply_broadcast]
        answer = self._page(list(reversed(self._in_window(visible, args))), args, DEFAULT_HISTORY_LIMIT)
        if answer.ok:
            answer.body.update(pin_count=0, channel_actions_ts=None, channel_actions_count=0)
        return answer

    def users_info(self, args: JsonObject, files: Mapping[str, UploadedPart]) -> ApiAnswer:
        """`users.info`: one member."""
        user_id = _text_arg(args, "user")
        user = self.state.user(user_id) if user_id else None
        if user is None:
            return slack_error("user_not_found")
        profile: JsonObject = {
            "real_name": user.real_name,
            "display_name": user.name,
            "real_name_normalized": user.real_name,
            "display_name_normalized": user.name,
            "team": self.state.team.id,
        }
        if user.email:
            profile["email"] = user.email
        if user.bot_id:
            profile["bot_id"] = user.bot_id
        return _ok(
            user={
                "id": user.id,
                "team_id": self.state.team.id,
                "name": user.name,
                "deleted": user.deleted,
                "real_name": user.real_name,
                "tz": "Etc/UTC",
                "tz_label": "Coordinated Universal Time",
                "tz_offset": 0,
                "profile": profile,
                "is_admin": False,
                "is_owner": False,
                "is_primary_owner": False,
                "is_restricted": False,
                "is_ultra_restricted": False,
                "is_bot": user.is_bot,
                "is_app_user": False,
                "updated": 0,
            }
        )

    def usergroups_users_list(self, args: JsonObject, files: Mapping[str, UploadedPart]) -> ApiAnswer:
        """`usergroups.users.list`: the member ids of a user group."""
        group_id = _text_arg(args, "usergroup")
        if group_id is None:
            return _missing("usergroup")
        group = self.state.usergroup(group_id)
        if group is None:
            return slack_error("no_such_subteam")
        return _ok(users=list(group.users))

    def views_publish(self, args: JsonObject, files: Mapping[str, UploadedPart]) -> ApiAnswer:
        """`views.publish`: a Home tab for one user."""
        user_id = _text_arg(args, "user_id")
        if user_id is None:
            return _missing("user_id")
        present, view = _json_arg(args, "view")
        if not present:
            return _missing("view")
        if view is _UNPARSEABLE or not isinstance(view, dict):
            return slack_error("invalid_arguments", messages=["[ERROR] must be a JSON object [json-pointer:/view]"])
        if view.get("type") != "home":
            return slack_error("invalid_arguments", messages=["[ERROR] must be 'home' [json-pointer:/view/type]"])
        problems = validate_blocks(view.get("blocks", []), max_blocks=MAX_VIEW_BLOCKS, path="/view/blocks")
        if problems:
            return slack_error("invalid_arguments", messages=[f"[ERROR] {p}" for p in problems])
        if self.state.user(user_id) is None:
            return slack_error("user_not_found")
        published = self.state.publish_view(user_id, view)
        state = self.state
        return _ok(
            view={
                "id": published.id,
                "team_id": state.team.id,
                "type": "home",
                "blocks": view.get("blocks", []),
                "private_metadata": view.get("private_metadata", ""),
                "callback_id": view.get("callback_id", ""),
                "state": {"values": {}},
                "hash": published.hash,
                "title": view.get("title"),
                "clear_on_close": False,
                "notify_on_close": False,
                "close": None,
                "submit": None,
                "previous_view_id": None,
                "root_view_id": published.id,
                "app_id": state.app_id,
                "external_id": view.get("external_id", ""),
                "app_installed_team_id": state.team.id,
                "bot_id": state.bot.bot_id,
            }
        )

    def views_open(self, args: JsonObject, files: Mapping[str, UploadedPart]) -> ApiAnswer:
        """`views.open`: a modal in answer to a click (its trigger id)."""
        trigger_id = _text_arg(args, "trigger_id")
        if trigger_id is None:
            return _missing("trigger_id")
        present, view = _json_arg(args, "view")
        if not present:
            return _missing("view")
        if view is _UNPARSEABLE or not isinstance(view, dict):
            return slack_error("invalid_arguments", messages=["[ERROR] must be a JSON object [json-pointer:/view]"])
        if view.get("type") != "modal":
            return slack_error("invalid_arguments", messages=["[ERROR] must be 'modal' [json-pointer:/view/type]"])
        if not isinstance(view.get("title"), dict):
            return slack_error("invalid_arguments", messages=["[ERROR] missing required field: title [json-pointer:/view]"])
        problems = validate_blocks(view.get("blocks", []), max_blocks=MAX_VIEW_BLOCKS, path="/view/blocks")
        if problems:
            return slack_error("invalid_arguments", messages=[f"[ERROR] {p}" for p in problems])
        opened = self.state.open_view(trigger_id, view)
        return _ok(view=self.opened_view_json(opened.id, view, opened.hash))

    def opened_view_json(self, view_id: str, view: JsonObject, view_hash: str) -> JsonObject:
        """A modal as Slack describes it (in views.open answers and view_submission payloads)."""
        state = self.state
        return {
            "id": view_id,
            "team_id": state.team.id,
            "type": "modal",
            "blocks": view.get("blocks", []),
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "state": {"values": {}},
            "hash": view_hash,
            "title": view.get("title"),
            "clear_on_close": False,
            "notify_on_close": False,
            "close": view.get("close"),
            "submit": view.get("submit"),
            "previous_view_id": None,
            "root_view_id": view_id,
            "app_id": state.app_id,
            "external_id": view.get("external_id", ""),
            "app_installed_team_id": state.team.id,
            "bot_id": state.bot.bot_id,
        }

    # ---- files -------------------------------------------------------------------------------

    def files_get_upload_url_external(self, args: JsonObject, files: Mapping[str, UploadedPart]) -> ApiAnswer:
        """`files.getUploadURLExternal`: step 1 of the v2 upload; hands out an upload URL and a file id."""
        filename = _text_arg(args, "filename")
        if filename is None:
            return _missing("filename")
        length_text = _text_arg(args, "length")
        if length_text is None:
            return _missing("length")
        if not length_text.isdigit():
            return slack_error("invalid_arguments", messages=["[ERROR] must be an integer [json-pointer:/length]"])
        stored = self.state.add_file(
            filename,
            filename,
            int(length_text),
            user=self.state.bot.id,
            alt_txt=_text_arg(args, "alt_txt"),
            snippet_type=_text_arg(args, "snippet_type"),
        )
        return _ok(upload_url=f"{self.origin}/upload/v1/{stored.id}", file_id=stored.id)

    def receive_upload(self, file_id: str, content: bytes) -> tuple[int, str]:
        """Step 2 of the v2 upload: the bytes POSTed to the upload URL; answers (status, text)."""
        stored = self.state.file(file_id)
        if stored is None or stored.completed:
            return 404, "Not Found"
        self.state.set_file(replace(stored, content=content))
        return 200, f"OK - {len(content)}"

    def _share(self, files_to_share: list[StoredFile], args: JsonObject, *, channel_ids: list[str]) -> ApiAnswer | None:
        """Post the files into each channel (one message each, in the thread when thread_ts is given)."""
        comment = _text_arg(args, "initial_comment") or ""
        for channel_id in channel_ids:
            self.state.add_message(
                channel_id,
                self.state.bot.id,
                comment,
                thread_ts=self._thread_root(channel_id, _text_arg(args, "thread_ts")),
                bot_id=self.state.bot.bot_id,
                files=[f.id for f in files_to_share],
                via="file_share",
            )
        return None

    def _resolve_share_channels(self, refs: list[str]) -> tuple[ApiAnswer | None, list[str]]:
        ids = []
        for ref in refs:
            channel = self.state.channel(ref)
            if channel is None:
                return slack_error("channel_not_found"), []
            if not channel.bot_is_member:
                return slack_error("not_in_channel"), []
            ids.append(channel.id)
        return None, ids

    def files_complete_upload_external(self, args: JsonObject, files: Mapping[str, UploadedPart]) -> ApiAnswer:
        """`files.completeUploadExternal`: step 3 of the v2 upload; finishes and optionally shares the files."""
        present, listed = _json_arg(args, "files")
        if not present:
            return _missing("files")
        if listed is _UNPARSEABLE or not isinstance(listed, list) or not listed:
            return slack_error("invalid_arguments", messages=["[ERROR] must be a non-empty array [json-pointer:/files]"])
        refs = [r for r in [_text_arg(args, "channel_id"), *(str(args.get("channels") or "").split(","))] if r]
        error, channel_ids = self._resolve_share_channels(refs)
        if error is not None:
            return error
        completed: list[StoredFile] = []
        for item in listed:
            stored = self.state.file(str(item.get("id"))) if isinstance(item, dict) else None
            if stored is None or stored.completed:
                return slack_error("file_not_found")
            if stored.content is None:
                return slack_error("file_upload_not_completed")
            completed.append(
                replace(stored, title=str(item.get("title") or stored.title), completed=True, channels=tuple(channel_ids))
            )
        for stored in completed:
            self.state.set_file(stored)
        self._share(completed, args, channel_ids=channel_ids)
        return _ok(files=[self.file_json(f) for f in completed])

    def files_upload(self, args: JsonObject, files: Mapping[str, UploadedPart]) -> ApiAnswer:
        """Legacy `files.upload`: content as a field or a multipart file part, shared to `channels`."""
        part = files.get("file")
        content = _text_arg(args, "content")
        if part is None and content is None:
            return slack_error("no_file_data")
        data = part.content if part is not None else (content or "").encode("utf-8")
        name = _text_arg(args, "filename") or (part.filename if part is not None else "") or "file"
        error, channel_ids = self._resolve_share_channels([c for c in str(args.get("channels") or "").split(",") if c])
        if error is not None:
            return error
        stored = self.state.add_file(name, _text_arg(args, "title") or name, len(data), user=self.state.bot.id, via="legacy")
        stored = replace(stored, content=data, completed=True, channels=tuple(channel_ids))
        self.state.set_file(stored)
        self._share([stored], args, channel_ids=channel_ids)
        return _ok(file=self.file_json(stored))
