"""Which namespaces a channel may ask about (`channel_namespaces` in the settings).

An empty map means no restriction. Otherwise a channel listed maps to its namespaces (``"*"`` = all),
the key ``"*"`` gives the namespaces of every channel not listed, and a channel covered by neither may
ask about nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

ALL = "*"


@dataclass(frozen=True)
class ChannelAccess:
    """Channel id → the namespaces it may ask about."""

    channel_namespaces: Mapping[str, Sequence[str]]

    def namespaces_for(self, channel: str) -> frozenset[str] | None:
        """The namespaces `channel` may ask about; None when it may ask about all of them."""
        if not self.channel_namespaces:
            return None
        names = self.channel_namespaces.get(channel)
        if names is None:
            names = self.channel_namespaces.get(ALL, ())
        if ALL in names:
            return None
        return frozenset(names)

    def default_namespace(self, channel: str, fallback: str | None) -> str | None:
        """The namespace to assume for this channel when a question names none."""
        allowed = self.namespaces_for(channel)
        if allowed is None or fallback in allowed:
            return fallback
        return sorted(allowed)[0] if len(allowed) == 1 else fallback


def refusal_text(allowed: frozenset[str], reason: str | None = None) -> str:
    """The private answer to a question this channel may not ask, naming what it may ask about."""
    names = ", ".join(f"`{n}`" for n in sorted(allowed)) or "no namespace"
    why = f"{reason}. " if reason else ""
    return (
        f":no_entry: {why}This channel may ask about {names}. "
        "Ask in a channel that covers that namespace, or ask an admin to allow it here."
    )
