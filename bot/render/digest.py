"""A health digest for people: terminal/plain text and Slack Block Kit. Pure.

Problems are marked by what changed since the previous digest: 🆕 new, • still there, ✅ gone. Long
sections are cut to a few lines with a count of the rest, so a digest of a big cluster stays within
Slack's limits (50 blocks, 3000 characters per text).
"""

from __future__ import annotations

from typing import Any

from bot.digest.models import Change, Digest, DigestItem, DigestSection, SectionName

ITEMS_SHOWN = 8
"""Lines per section before "… and N more"."""
SLACK_TEXT_LIMIT = 2900
_MARKS = {Change.NEW: "🆕", Change.STILL: "•", Change.GONE: "✅"}
_TEXT_MARKS = {Change.NEW: "[new]", Change.STILL: "[still]", Change.GONE: "[gone]"}
_INFO_SECTIONS = (SectionName.CONNTRACK, SectionName.INVESTIGATIONS)
"""Sections whose informative lines (not only problems) are worth showing."""


def _shown(section: DigestSection) -> list[DigestItem]:
    if section.name in _INFO_SECTIONS:
        return list(section.items)
    return list(section.problems)


def headline(digest: Digest) -> str:
    """One line: cluster, problem counts and what changed."""
    scope = ", ".join(digest.namespaces) if digest.namespaces else "all namespaces"
    counts = f"{digest.problem_count} problem{'s' if digest.problem_count != 1 else ''}"
    changes = f"{digest.new_count} new, {digest.gone_count} gone"
    since = f" since {digest.since:%Y-%m-%d %H:%M} UTC" if digest.since else " (first digest)"
    return f"Network health of {digest.cluster} ({scope}): {counts}; {changes}{since}"


def digest_text(digest: Digest, *, items_shown: int = ITEMS_SHOWN) -> str:
    """The digest as plain text (the CLI and Slack's notification fallback)."""
    lines = [headline(digest), f"taken {digest.generated_at:%Y-%m-%d %H:%M:%S} UTC", ""]
    for section in digest.sections:
        lines.append(f"{section.title}: {section.summary}")
        shown = _shown(section)
        for item in shown[:items_shown]:
            mark = _TEXT_MARKS.get(item.change, "") if item.change else " "
            lines.append(f"  {mark:7} {item.text}")
        if len(shown) > items_shown:
            lines.append(f"          … and {len(shown) - items_shown} more")
        for gone in section.gone[:items_shown]:
            lines.append(f"  {_TEXT_MARKS[Change.GONE]:7} {gone.text}")
        if len(section.gone) > items_shown:
            lines.append(f"          … and {len(section.gone) - items_shown} more gone")
    return "\n".join(lines).rstrip() + "\n"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _section_markdown(section: DigestSection, items_shown: int) -> str:
    lines = [f"*{section.title}*: {_escape(section.summary)}"]
    shown = _shown(section)
    for item in shown[:items_shown]:
        mark = _MARKS.get(item.change, "") if item.change else "◦"
        lines.append(f"{mark} {_escape(item.text)}")
    if len(shown) > items_shown:
        lines.append(f"… and {len(shown) - items_shown} more")
    for gone in section.gone[:items_shown]:
        lines.append(f"{_MARKS[Change.GONE]} ~{_escape(gone.text)}~ gone")
    if len(section.gone) > items_shown:
        lines.append(f"… and {len(section.gone) - items_shown} more gone")
    text = "\n".join(lines)
    return text if len(text) <= SLACK_TEXT_LIMIT else text[: SLACK_TEXT_LIMIT - 1] + "…"


def digest_blocks(digest: Digest, *, items_shown: int = ITEMS_SHOWN) -> list[dict[str, Any]]:
    """The digest as Block Kit blocks: a header, a context line, then one section block per section."""
    scope = ", ".join(digest.namespaces) if digest.namespaces else "all namespaces"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"Network health: {digest.cluster}"[:150], "emoji": True}},
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": _escape(
                        f"{scope} · {digest.problem_count} problems · {digest.new_count} new · {digest.gone_count} gone · "
                        + (f"since {digest.since:%Y-%m-%d %H:%M} UTC" if digest.since else "first digest")
                    ),
                }
            ],
        },
    ]
    for section in digest.sections:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _section_markdown(section, items_shown)}})
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": "🆕 new · • still there · ✅ gone since the last digest"}],
        }
    )
    return blocks[:50]
