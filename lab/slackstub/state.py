"""What the local Slack stand-in knows: the workspace, its people and channels, every message, file,
view and API call, and the faults a test has asked for.

All of it sits behind one lock with a condition variable, so the HTTP threads write while a test
waits (`SlackState.wait_for`) for the thing it expects instead of sleeping. Records handed out are
frozen dataclasses; an edit replaces the record, so a value a test holds never changes under it.
"""

from __future__ import annotations

import copy
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from lab.errors import LabError

JsonObject = dict[str, Any]
T = TypeVar("T")


class SlackStubTimeout(LabError):
    """A test waited for something in the Slack stand-in that did not happen in time."""


@dataclass(frozen=True)
class Team:
    """The one workspace the stand-in serves."""

    id: str
    name: str
    domain: str


@dataclass(frozen=True)
class User:
    """A workspace member: a person or a bot user."""

    id: str
    name: str
    real_name: str
    is_bot: bool = False
    bot_id: str | None = None
    email: str | None = None
    deleted: bool = False


@dataclass(frozen=True)
class UserGroup:
    """A user group (Slack calls it a subteam), e.g. ``@netops``."""

    id: str
    handle: str
    name: str
    users: tuple[str, ...]


@dataclass(frozen=True)
class Channel:
    """A conversation the bot can be asked about; `bot_is_member` False makes posts fail `not_in_channel`."""

    id: str
    name: str
    is_private: bool = False
    bot_is_member: bool = True
    created: int = 0
    topic: str = ""
    purpose: str = ""


@dataclass(frozen=True)
class MessageEdit:
    """What a message said before one `chat.update` (or `replace_original`) changed it."""

    text: str
    blocks: tuple[JsonObject, ...]
    replaced_at: float


@dataclass(frozen=True)
class Message:
    """One message as Slack stores it; `thread_ts` is None for a top-level message.

    `ephemeral` messages are only shown to `shown_to` and never appear in history or replies;
    `via` says how it arrived: ``api``, ``user``, ``response_url`` or ``file_share``.
    """

    channel: str
    ts: str
    user: str
    text: str
    blocks: tuple[JsonObject, ...] = ()
    thread_ts: str | None = None
    bot_id: str | None = None
    reply_broadcast: bool = False
    ephemeral: bool = False
    shown_to: str | None = None
    edits: tuple[MessageEdit, ...] = ()
    deleted: bool = False
    files: tuple[str, ...] = ()
    via: str = "api"
    posted_at: float = 0.0

    @property
    def is_reply(self) -> bool:
        """True for a message in a thread other than the thread's parent."""
        return self.thread_ts is not None and self.thread_ts != self.ts


@dataclass(frozen=True)
class StoredFile:
    """A file announced by `files.getUploadURLExternal` or `files.upload`, with the bytes received."""

    id: str
    name: str
    title: str
    declared_length: int
    content: bytes | None = None
    completed: bool = False
    channels: tuple[str, ...] = ()
    user: str = ""
    created: int = 0
    alt_txt: str | None = None
    snippet_type: str | None = None
    via: str = "v2"


@dataclass(frozen=True)
class PublishedView:
    """One `views.publish` (an App Home tab) as the stand-in stored it."""

    id: str
    user_id: str
    view: JsonObject
    hash: str
    published_at: float


@dataclass(frozen=True)
class OpenedView:
    """One modal opened with `views.open` (in answer to the click that gave its trigger id)."""

    id: str
    trigger_id: str
    view: JsonObject
    hash: str
    opened_at: float


@dataclass(frozen=True)
class ApiCall:
    """One Web API call that reached the stand-in: its method, arguments (token removed) and answer."""

    method: str
    args: JsonObject
    time: float
    token: str | None
    http_status: int
    response: JsonObject


@dataclass(frozen=True)
class ResponseTarget:
    """What a `response_url` handed to the app points at (a slash command or a block action)."""

    id: str
    kind: str
    channel: str
    user: str
    message_ts: str | None = None
    thread_ts: str | None = None


@dataclass(frozen=True)
class ResponseUrlPost:
    """One POST the app made to a `response_url`, with Slack's reading of it."""

    target: ResponseTarget
    body: JsonObject
    response_type: str
    replace_original: bool
    delete_original: bool
    posted_at: float
    http_status: int
    message_ts: str | None = None


@dataclass(frozen=True)
class InjectedFault:
    """A planned failure for the next call of one method: HTTP 429 or a Slack error code."""

    method: str
    error: str
    http_status: int = 200
    retry_after: int | None = None


@dataclass
class _Counters:
    user: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    channel: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    file: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    view: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    group: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    response: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


def ts_key(ts: str) -> tuple[int, int]:
    """Sort key for Slack timestamps (``"1700000000.000100"``)."""
    seconds, _, micros = ts.partition(".")
    return int(seconds), int(micros or "0")


class SlackState:
    """The stand-in's memory; safe to use from the server threads and the test thread at once."""

    def __init__(
        self,
        *,
        team: Team | None = None,
        bot_token: str = "xoxb-kubereach-lab",  # noqa: S107 - a fake token only this stand-in accepts
        bot_user_id: str = "UBOT",
        bot_id: str = "BBOT",
        bot_name: str = "kubereach",
        app_id: str = "AKUBEREACH",
    ) -> None:
        """Start with a workspace and its bot user; add people and channels with `add_user`/`add_channel`."""
        self._cond = threading.Condition(threading.RLock())
        self._counters = _Counters()
        self.team = team or Team(id="TKUBEREACH", name="kubereach lab", domain="kubereach-lab")
        self.bot_token = bot_token
        self.app_id = app_id
        self.bot = User(id=bot_user_id, name=bot_name, real_name=bot_name, is_bot=True, bot_id=bot_id)
        self._tokens: set[str] = {bot_token}
        self._users: dict[str, User] = {self.bot.id: self.bot}
        self._groups: dict[str, UserGroup] = {}
        self._channels: dict[str, Channel] = {}
        self._messages: dict[tuple[str, str], Message] = {}
        self._last_ts_us = 0
        self._files: dict[str, StoredFile] = {}
        self._views: list[PublishedView] = []
        self._opened: list[OpenedView] = []
        self._calls: list[ApiCall] = []
        self._targets: dict[str, ResponseTarget] = {}
        self._response_posts: list[ResponseUrlPost] = []
        self._faults: dict[str, deque[InjectedFault]] = {}
        self._down = False

    # ---- waiting -----------------------------------------------------------------------------

    def wait_for(self, predicate: Callable[[], T | None], timeout: float = 5.0) -> T:
        """Block until `predicate()` returns something truthy and return it; raise `SlackStubTimeout`.

        The predicate is re-evaluated whenever the state changes, under the state's lock, so it may
        call any read method of this object.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate()
                if value:
                    return value
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SlackStubTimeout(
                        f"the Slack stand-in did not reach the awaited state within {timeout:g} s",
                        hint="check the app's log and `stub.state.calls()` for what it did instead",
                    )
                self._cond.wait(remaining)

    def _changed(self) -> None:
        self._cond.notify_all()

    # ---- workspace ---------------------------------------------------------------------------

    def add_token(self, token: str) -> None:
        """Accept another token (e.g. a second app's) as valid."""
        with self._cond:
            self._tokens.add(token)

    def token_is_valid(self, token: str) -> bool:
        """True when `token` is one the workspace issued."""
        with self._cond:
            return token in self._tokens

    def add_user(
        self,
        name: str,
        *,
        user_id: str | None = None,
        real_name: str | None = None,
        is_bot: bool = False,
        email: str | None = None,
    ) -> User:
        """Create a member (a person unless `is_bot`) and return it."""
        with self._cond:
            uid = user_id or f"U{next(self._counters.user):08d}"
            user = User(
                id=uid,
                name=name,
                real_name=real_name or name,
                is_bot=is_bot,
                bot_id=f"B{uid[1:]}" if is_bot else None,
                email=email,
            )
            self._users[uid] = user
            self._changed()
            return user

    def user(self, user_id: str) -> User | None:
        """The member with this id, or None."""
        with self._cond:
            return self._users.get(user_id)

    def users(self) -> list[User]:
        """Every member, bot included."""
        with self._cond:
            return list(self._users.values())

    def add_usergroup(
        self, handle: str, users: Iterable[str], *, group_id: str | None = None, name: str | None = None
    ) -> UserGroup:
        """Create a user group with these member ids."""
        with self._cond:
            gid = group_id or f"S{next(self._counters.group):08d}"
            group = UserGroup(id=gid, handle=handle, name=name or handle, users=tuple(users))
            self._groups[gid] = group
            self._changed()
            return group

    def usergroup(self, group_id: str) -> UserGroup | None:
        """The user group with this id, or None."""
        with self._cond:
            return self._groups.get(group_id)

    def add_channel(
        self,
        name: str,
        *,
        channel_id: str | None = None,
        is_private: bool = False,
        bot_is_member: bool = True,
        topic: str = "",
    ) -> Channel:
        """Create a channel and return it."""
        with self._cond:
            cid = channel_id or f"{'G' if is_private else 'C'}{next(self._counters.channel):08d}"
            channel = Channel(
                id=cid,
                name=name.lstrip("#"),
                is_private=is_private,
                bot_is_member=bot_is_member,
                created=int(time.time()),
                topic=topic,
            )
            self._channels[cid] = channel
            self._changed()
            return channel

    def set_bot_membership(self, channel_id: str, member: bool) -> None:
        """Add the bot to a channel or take it out (posts then fail with `not_in_channel`)."""
        with self._cond:
            self._channels[channel_id] = replace(self._channels[channel_id], bot_is_member=member)
            self._changed()

    def channel(self, id_or_name: str) -> Channel | None:
        """The channel with this id, or with this name (``general`` or ``#general``), as Slack accepts both."""
        with self._cond:
            found = self._channels.get(id_or_name)
            if found is not None:
                return found
            name = id_or_name.lstrip("#")
            return next((c for c in self._channels.values() if c.name == name), None)

    def channels(self) -> list[Channel]:
        """Every channel."""
        with self._cond:
            return list(self._channels.values())

    # ---- messages ----------------------------------------------------------------------------

    def _next_ts(self) -> str:
        now_us = time.time_ns() // 1000
        self._last_ts_us = max(now_us, self._last_ts_us + 1)
        return f"{self._last_ts_us // 1_000_000}.{self._last_ts_us % 1_000_000:06d}"

    def add_message(
        self,
        channel: str,
        user: str,
        text: str,
        *,
        blocks: Iterable[JsonObject] = (),
        thread_ts: str | None = None,
        bot_id: str | None = None,
        reply_broadcast: bool = False,
        ephemeral: bool = False,
        shown_to: str | None = None,
        files: Iterable[str] = (),
        via: str = "api",
    ) -> Message:
        """Store a new message with the next timestamp (strictly increasing) and return it."""
        with self._cond:
            message = Message(
                channel=channel,
                ts=self._next_ts(),
                user=user,
                text=text,
                blocks=tuple(copy.deepcopy(list(blocks))),
                thread_ts=thread_ts,
                bot_id=bot_id,
                reply_broadcast=reply_broadcast,
                ephemeral=ephemeral,
                shown_to=shown_to,
                files=tuple(files),
                via=via,
                posted_at=time.time(),
            )
            self._messages[(channel, message.ts)] = message
            self._changed()
            return message

    def post_user_message(self, channel: str, user: str, text: str, *, thread_ts: str | None = None) -> str:
        """A person writes `text` in `channel` (or in a thread); return the new message's ts."""
        if self.channel(channel) is None or self.user(user) is None:
            raise LabError(
                f"cannot post as {user} in {channel}: the Slack stand-in knows no such channel or user",
                hint="create them first with add_channel() and add_user()",
            )
        return self.add_message(channel, user, text, thread_ts=thread_ts, via="user").ts

    def update_message(self, channel: str, ts: str, *, text: str, blocks: Iterable[JsonObject] | None) -> Message:
        """Replace a message's content, keeping what it said before in `edits`; KeyError if unknown."""
        with self._cond:
            old = self._messages[(channel, ts)]
            edit = MessageEdit(text=old.text, blocks=old.blocks, replaced_at=time.time())
            new_blocks = old.blocks if blocks is None else tuple(copy.deepcopy(list(blocks)))
            new = replace(old, text=text, blocks=new_blocks, edits=(*old.edits, edit))
            self._messages[(channel, ts)] = new
            self._changed()
            return new

    def delete_message(self, channel: str, ts: str) -> Message:
        """Mark a message deleted (it leaves history and threads); KeyError if unknown."""
        with self._cond:
            new = replace(self._messages[(channel, ts)], deleted=True)
            self._messages[(channel, ts)] = new
            self._changed()
            return new

    def message(self, channel: str, ts: str) -> Message | None:
        """The message at (channel, ts), deleted or ephemeral ones included, or None."""
        with self._cond:
            return self._messages.get((channel, ts))

    def messages(
        self, channel: str | None = None, *, include_ephemeral: bool = False, include_deleted: bool = False
    ) -> list[Message]:
        """Messages in ts order (top-level and replies), optionally of one channel."""
        with self._cond:
            found = [
                m
                for m in self._messages.values()
                if (channel is None or m.channel == channel)
                and (include_ephemeral or not m.ephemeral)
                and (include_deleted or not m.deleted)
            ]
        return sorted(found, key=lambda m: ts_key(m.ts))

    def thread(self, channel: str, ts: str) -> list[Message]:
        """The thread started by message `ts`: the parent first, then its replies in order."""
        return [m for m in self.messages(channel) if ts in (m.ts, m.thread_ts)]

    def wait_for_thread(self, channel: str, ts: str, *, replies: int = 1, timeout: float = 5.0) -> list[Message]:
        """Wait until the thread under `ts` has at least `replies` replies; return it, parent first."""

        def grown() -> list[Message] | None:
            thread = self.thread(channel, ts)
            return thread if len(thread) > replies else None

        return self.wait_for(grown, timeout)

    def replies(self, channel: str, ts: str) -> list[Message]:
        """Only the replies under message `ts`, in order."""
        return [m for m in self.messages(channel) if m.thread_ts == ts and m.ts != ts]

    def ephemeral_messages(self, channel: str | None = None, user: str | None = None) -> list[Message]:
        """Ephemeral messages, optionally only those in `channel` or shown to `user`."""
        return [m for m in self.messages(channel, include_ephemeral=True) if m.ephemeral and (user is None or m.shown_to == user)]

    # ---- files and views ---------------------------------------------------------------------

    def add_file(
        self,
        name: str,
        title: str,
        declared_length: int,
        *,
        user: str,
        via: str = "v2",
        alt_txt: str | None = None,
        snippet_type: str | None = None,
    ) -> StoredFile:
        """Announce a file (its bytes come later) and return it."""
        with self._cond:
            fid = f"F{next(self._counters.file):08d}"
            stored = StoredFile(
                id=fid,
                name=name,
                title=title,
                declared_length=declared_length,
                user=user,
                created=int(time.time()),
                via=via,
                alt_txt=alt_txt,
                snippet_type=snippet_type,
            )
            self._files[fid] = stored
            self._changed()
            return stored

    def set_file(self, stored: StoredFile) -> None:
        """Store a changed file record (bytes received, upload completed, shared)."""
        with self._cond:
            self._files[stored.id] = stored
            self._changed()

    def file(self, file_id: str) -> StoredFile | None:
        """The file with this id, or None."""
        with self._cond:
            return self._files.get(file_id)

    def files(self) -> list[StoredFile]:
        """Every file, in the order announced."""
        with self._cond:
            return list(self._files.values())

    def publish_view(self, user_id: str, view: Mapping[str, Any]) -> PublishedView:
        """Record a Home tab published for `user_id`."""
        with self._cond:
            number = next(self._counters.view)
            published = PublishedView(
                id=f"V{number:08d}",
                user_id=user_id,
                view=copy.deepcopy(dict(view)),
                hash=f"{int(time.time())}.{number:08d}",
                published_at=time.time(),
            )
            self._views.append(published)
            self._changed()
            return published

    def open_view(self, trigger_id: str, view: Mapping[str, Any]) -> OpenedView:
        """Record a modal opened for the click `trigger_id`."""
        with self._cond:
            number = next(self._counters.view)
            opened = OpenedView(
                id=f"V{number:08d}",
                trigger_id=trigger_id,
                view=copy.deepcopy(dict(view)),
                hash=f"{int(time.time())}.{number:08d}",
                opened_at=time.time(),
            )
            self._opened.append(opened)
            self._changed()
            return opened

    def opened_views(self) -> list[OpenedView]:
        """Modals opened so far, in order."""
        with self._cond:
            return list(self._opened)

    def views(self, user_id: str | None = None) -> list[PublishedView]:
        """Published views in order, optionally only those for one user."""
        with self._cond:
            return [v for v in self._views if user_id is None or v.user_id == user_id]

    # ---- API calls ---------------------------------------------------------------------------

    def record_call(self, call: ApiCall) -> None:
        """Remember one Web API call."""
        with self._cond:
            self._calls.append(call)
            self._changed()

    def calls(self, method: str | None = None) -> list[ApiCall]:
        """Web API calls in arrival order, optionally only those of one method."""
        with self._cond:
            return [c for c in self._calls if method is None or c.method == method]

    # ---- response_url ------------------------------------------------------------------------

    def add_response_target(
        self, kind: str, channel: str, user: str, *, message_ts: str | None = None, thread_ts: str | None = None
    ) -> ResponseTarget:
        """Mint a response_url target for a slash command or a block action."""
        with self._cond:
            target = ResponseTarget(
                id=f"R{next(self._counters.response):08d}",
                kind=kind,
                channel=channel,
                user=user,
                message_ts=message_ts,
                thread_ts=thread_ts,
            )
            self._targets[target.id] = target
            return target

    def response_target(self, target_id: str) -> ResponseTarget | None:
        """The response_url target with this id, or None."""
        with self._cond:
            return self._targets.get(target_id)

    def record_response_post(self, post: ResponseUrlPost) -> None:
        """Remember one POST to a response_url."""
        with self._cond:
            self._response_posts.append(post)
            self._changed()

    def response_posts(self, target_id: str | None = None) -> list[ResponseUrlPost]:
        """POSTs made to response_urls in order, optionally for one target."""
        with self._cond:
            return [p for p in self._response_posts if target_id is None or p.target.id == target_id]

    # ---- faults ------------------------------------------------------------------------------

    def add_fault(self, fault: InjectedFault, times: int) -> None:
        """Make the next `times` calls of `fault.method` fail this way (after any faults already queued)."""
        with self._cond:
            queue = self._faults.setdefault(fault.method, deque())
            queue.extend([fault] * times)

    def take_fault(self, method: str) -> InjectedFault | None:
        """Consume and return the next planned failure for `method`, if any."""
        with self._cond:
            queue = self._faults.get(method)
            return queue.popleft() if queue else None

    def set_down(self, down: bool) -> None:
        """Start or end a simulated Slack outage."""
        with self._cond:
            self._down = down
            self._changed()

    @property
    def is_down(self) -> bool:
        """True while every connection is being dropped."""
        with self._cond:
            return self._down
