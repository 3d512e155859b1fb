"""The `/reach digest …` command language, parsed without I/O.

    /reach digest daily 09:00 Europe/Berlin [namespace …]
    /reach digest weekly [mon] 09:00 Europe/Berlin [namespace …]     (weekday defaults to Monday)
    /reach digest off
    /reach digest now [namespace …]
    /reach digest                                                    (shows the channel's subscription)

Times are 24-hour ``H:MM``/``HH:MM`` local to the timezone, which must be an IANA name that zoneinfo
knows (``UTC`` included). Every error says what was wrong and shows a form that works.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from bot.errors import BadInput
from bot.history.enums import DigestCadence

USAGE = (
    "`/reach digest daily 09:00 Europe/Berlin [namespace …]`, `/reach digest weekly mon 09:00 Europe/Berlin`, "
    "`/reach digest off`, `/reach digest now`"
)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEKDAY_NAMES = {
    **{day: i for i, day in enumerate(WEEKDAYS)},
    **{name: i for i, name in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"))},
    "tues": 1,
    "thur": 3,
    "thurs": 3,
}
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
MAX_NAMESPACES = 20


class DigestCommandError(BadInput):
    """A `/reach digest` command that cannot be read."""


@dataclass(frozen=True)
class Subscribe:
    """Post a digest to this channel every day (or week) at a local time."""

    cadence: DigestCadence
    time_of_day: str
    """``HH:MM``, normalised."""
    timezone: str
    weekday: int | None
    """0 = Monday … 6 = Sunday for weekly digests; None for daily ones."""
    namespaces: tuple[str, ...] = ()


@dataclass(frozen=True)
class Unsubscribe:
    """Stop this channel's digests."""


@dataclass(frozen=True)
class DigestNow:
    """Post one digest now."""

    namespaces: tuple[str, ...] = ()


@dataclass(frozen=True)
class ShowSubscription:
    """Say what this channel is subscribed to."""


DigestCommand = Subscribe | Unsubscribe | DigestNow | ShowSubscription


def parse_time(text: str) -> str:
    """``9:00`` → ``09:00``; anything but a 24-hour time is a `DigestCommandError`."""
    match = _TIME.match(text)
    if match is None or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise DigestCommandError(
            f"bad time {text!r}: write a 24-hour time as HH:MM",
            hint="e.g. `/reach digest daily 09:00 Europe/Berlin`",
        )
    return f"{int(match.group(1)):02d}:{match.group(2)}"


@functools.cache
def _zone_names() -> dict[str, str]:
    """lower-case name → the IANA spelling, so ``europe/berlin`` reads as ``Europe/Berlin``."""
    return {name.lower(): name for name in available_timezones()}


def parse_timezone(text: str) -> str:
    """An IANA timezone name zoneinfo knows (``Europe/Berlin``, ``UTC``), else a `DigestCommandError`."""
    candidate = "UTC" if text.upper() in ("UTC", "Z", "GMT") else _zone_names().get(text.lower(), text)
    try:
        ZoneInfo(candidate)
        return candidate
    except (ZoneInfoNotFoundError, ValueError, OSError):
        pass
    raise DigestCommandError(
        f"unknown timezone {text!r}: use an IANA name such as Europe/Berlin, America/New_York or UTC",
        hint="the time zone comes right after the time: `/reach digest daily 09:00 Europe/Berlin`",
    )


def parse_weekday(text: str) -> int:
    """``mon``/``Monday`` … → 0…6, else a `DigestCommandError`."""
    day = _WEEKDAY_NAMES.get(text.lower())
    if day is None:
        raise DigestCommandError(
            f"bad weekday {text!r}: use one of {', '.join(WEEKDAYS)}",
            hint="e.g. `/reach digest weekly fri 16:00 Europe/Berlin`",
        )
    return day


def _namespaces(words: list[str]) -> tuple[str, ...]:
    names: list[str] = []
    for word in words:
        for name in (part for part in word.split(",") if part):
            if not _NAMESPACE.match(name):
                raise DigestCommandError(
                    f"{name!r} is not a namespace name (lower-case letters, digits and '-')",
                    hint="list namespaces after the time zone, e.g. `/reach digest daily 09:00 UTC shop payments`",
                )
            if name not in names:
                names.append(name)
    if len(names) > MAX_NAMESPACES:
        raise DigestCommandError(f"{len(names)} namespaces is too many for one digest (at most {MAX_NAMESPACES})")
    return tuple(names)


def parse_digest_command(text: str) -> DigestCommand:
    """Read the words after ``/reach`` (a leading ``digest`` is optional)."""
    words = text.split()
    if words and words[0].lower() == "digest":
        words = words[1:]
    if not words or (len(words) == 1 and words[0].lower() in ("status", "show")):
        return ShowSubscription()
    verb, rest = words[0].lower(), words[1:]
    if verb in ("off", "stop", "unsubscribe"):
        if rest:
            raise DigestCommandError(f"`digest off` takes nothing after it (got {' '.join(rest)!r})", hint=USAGE)
        return Unsubscribe()
    if verb == "now":
        return DigestNow(_namespaces(rest))
    if verb not in ("daily", "weekly"):
        raise DigestCommandError(f"unknown digest command {words[0]!r}", hint=f"use {USAGE}")
    weekday: int | None = None
    if verb == "weekly":
        weekday = 0
        if rest and not _TIME.match(rest[0]):
            weekday = parse_weekday(rest[0])
            rest = rest[1:]
    if not rest:
        raise DigestCommandError(
            f"`digest {verb}` needs a time and a time zone", hint=f"e.g. `/reach digest {verb} 09:00 Europe/Berlin`"
        )
    time_of_day = parse_time(rest[0])
    if len(rest) < 2:
        raise DigestCommandError(
            f"`digest {verb} {time_of_day}` needs a time zone after the time",
            hint=f"e.g. `/reach digest {verb} {time_of_day} Europe/Berlin` (or UTC)",
        )
    timezone = parse_timezone(rest[1])
    cadence = DigestCadence.WEEKLY if verb == "weekly" else DigestCadence.DAILY
    return Subscribe(cadence, time_of_day, timezone, weekday, _namespaces(rest[2:]))


def describe(cadence: DigestCadence, time_of_day: str, timezone: str, weekday: int | None, namespaces: tuple[str, ...]) -> str:
    """``every Monday at 09:00 Europe/Berlin for shop, payments`` (for replies)."""
    days = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
    when = f"every {days[weekday or 0]}" if cadence == DigestCadence.WEEKLY else "every day"
    scope = f" for {', '.join(namespaces)}" if namespaces else " for all namespaces"
    return f"{when} at {time_of_day} {timezone}{scope}"
