"""Access by user group: members of a group may ask about the group's namespaces in any channel.

`usergroup_namespaces` in the settings maps a group id (``S…``) to namespaces (``"*"`` = all). What a
person may ask about in a channel is what the channel allows (`ChannelAccess`) together with what
their groups allow. Membership comes from Slack's ``usergroups.users.list``, kept for `ttl_s`
seconds; when Slack cannot say, the group grants nothing (a failed lookup never widens access).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence

from bot.slack.access import ALL, ChannelAccess
from bot.slack.messaging import SlackPoster

MEMBERS_TTL_S = 60.0


class GroupAccess:
    """User group id → namespaces, with each group's members looked up in Slack (and cached)."""

    def __init__(
        self,
        group_namespaces: Mapping[str, Sequence[str]],
        poster: SlackPoster,
        *,
        ttl_s: float = MEMBERS_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Grant `group_namespaces`; look members up through `poster`."""
        self.group_namespaces = {group: tuple(names) for group, names in group_namespaces.items()}
        self._poster = poster
        self._ttl_s = ttl_s
        self._clock = clock
        self._members: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def members(self, group: str) -> frozenset[str]:
        """The group's member ids (empty when Slack cannot say)."""
        now = self._clock()
        with self._lock:
            cached = self._members.get(group)
        if cached is not None and now - cached[0] < self._ttl_s:
            return cached[1]
        found = self._poster.group_members(group)
        members = frozenset(found) if found is not None else frozenset()
        if found is not None:
            with self._lock:
                self._members[group] = (now, members)
        return members

    def namespaces_for(self, user: str) -> frozenset[str] | None:
        """What `user`'s groups let them ask about: None for all, else the namespaces (maybe none)."""
        granted: set[str] = set()
        for group, names in self.group_namespaces.items():
            if user not in self.members(group):
                continue
            if ALL in names:
                return None
            granted.update(names)
        return frozenset(granted)


def allowed_namespaces(channels: ChannelAccess, groups: GroupAccess | None, channel: str, user: str) -> frozenset[str] | None:
    """The namespaces `user` may ask about in `channel`: the channel's and their groups' together (None: all)."""
    by_channel = channels.namespaces_for(channel)
    if by_channel is None or groups is None:
        return by_channel
    by_groups = groups.namespaces_for(user)
    if by_groups is None:
        return None
    return by_channel | by_groups
