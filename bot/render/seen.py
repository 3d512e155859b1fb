"""The "seen before" line under a verdict: how often the same verdict was reached for the same pair."""

from __future__ import annotations

from bot.playbook.models import SeenBefore


def seen_before_line(seen: SeenBefore | None) -> str | None:
    """ "seen 3 times in 30 days, last on 2026-11-02 by @ana, resolved: …" or None."""
    if seen is None or seen.count == 0:
        return None
    line = f"seen {seen.count} time{'s' if seen.count != 1 else ''} in {seen.within.days} days"
    if seen.last_at is not None:
        line += f", last on {seen.last_at.date().isoformat()}"
    if seen.last_asked_by is not None:
        line += f" by @{seen.last_asked_by.name}"
    if seen.last_resolution is not None:
        line += f", resolved: {seen.last_resolution.note or 'no note'} (@{seen.last_resolution.by.name})"
    return line
