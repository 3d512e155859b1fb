"""A digest as text and Block Kit: headline counts, change marks, gone problems, bounded length."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.digest.models import Change, Digest, DigestItem, DigestSection, GoneItem, SectionName
from bot.render.digest import digest_blocks, digest_text

AT = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def digest(items: int = 1) -> Digest:
    conntrack = DigestSection(
        SectionName.CONNTRACK,
        "fullest: node-2 at 100% of 262,144",
        tuple(
            DigestItem(f"conntrack:node-{i}", f"node-{i}: 262,144/262,144 (100%) at the limit", True, Change.NEW)
            for i in range(items)
        ),
    )
    endpoints = DigestSection(
        SectionName.ENDPOINTS,
        "all 4 services have ready endpoints",
        (),
        (GoneItem("endpoints:shop/api", "shop/api: no <endpoints>"),),
    )
    return Digest("lab", AT, datetime(2026, 11, 19, 8, 0, tzinfo=UTC), ("shop",), (conntrack, endpoints))


def test_text_has_headline_marks_and_gone_lines() -> None:
    text = digest_text(digest())
    first = text.splitlines()[0]
    assert first == "Network health of lab (shop): 1 problem; 1 new, 1 gone since 2026-11-19 08:00 UTC"
    assert "[new]   node-0: 262,144/262,144 (100%) at the limit" in text
    assert "[gone]  shop/api: no <endpoints>" in text


def test_long_sections_are_cut_with_a_count() -> None:
    text = digest_text(digest(items=12), items_shown=8)
    assert "… and 4 more" in text
    assert "node-8:" not in text


def test_blocks_escape_slack_markup_and_stay_within_limits() -> None:
    blocks = digest_blocks(digest(items=40))
    assert blocks[0]["type"] == "header" and "lab" in blocks[0]["text"]["text"]
    sections = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    assert sections[0].startswith("*Conntrack usage (worst first)*")
    assert "🆕 node-0" in sections[0] and "… and 32 more" in sections[0]
    assert "~shop/api: no &lt;endpoints&gt;~ gone" in sections[1]
    assert len(blocks) <= 50 and all(len(s) <= 3000 for s in sections)
