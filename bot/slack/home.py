"""The App Home tab: recent investigations and the digest subscriptions, published on ``app_home_opened``.

Where channels are restricted (`channel_namespaces`), a person sees the investigations they asked
themselves; otherwise the newest of all. Subscriptions show the channel and the schedule. Every text
that came from people (questions) is escaped and clipped.
"""

from __future__ import annotations

import logging
from typing import Any

from bot.digest import service as digests
from bot.digest.command import describe
from bot.history.db import history_errors
from bot.history.errors import HistoryUnavailable
from bot.history.search import SearchFilters, SearchHit, search_investigations
from bot.render import blocks as render
from bot.slack.flows import SlackDeps
from bot.slack.messaging import Block

log = logging.getLogger("kubereach.slack")
RECENT = 10


def _hit_line(hit: SearchHit) -> str:
    verdict = hit.verdict_code.value if hit.verdict_code else hit.status
    where = f" in <#{hit.channel}>" if hit.channel else ""
    question = render.clip(hit.question, 150, "…").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f"• `{hit.id}` {hit.started_at:%Y-%m-%d %H:%M} *{verdict}*{where} — {question}"


def home_view(hits: list[SearchHit], subscriptions: list[str], *, own_only: bool) -> Block:
    """The Home tab's view."""
    title = "Your recent investigations" if own_only else "Recent investigations"
    recent = "\n".join(_hit_line(h) for h in hits) or "_None yet. Ask with `/reach why can't A reach B`._"
    digests = "\n".join(subscriptions) or "_No channel gets a digest. Try `/reach digest daily 09:00 Europe/Berlin`._"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": "kubereach"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{title}*\n{render.clip(recent, 2900, '…')}"}},
        {"type": "divider"},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*Digest subscriptions*\n{render.clip(digests, 2900, '…')}"}},
    ]
    return {"type": "home", "blocks": blocks}


def publish_home(deps: SlackDeps, user_id: str) -> bool:
    """Build and publish `user_id`'s Home tab; False when the history or Slack failed."""
    if deps.history is None:
        return False
    own_only = bool(deps.access.channel_namespaces)
    filters = SearchFilters(asked_by=user_id) if own_only else SearchFilters()
    try:
        with history_errors(), deps.history.sessions() as session:
            hits = search_investigations(session, "", filters, limit=RECENT)
            subscriptions = _subscriptions(session)
    except HistoryUnavailable as exc:
        log.error("history: cannot build the Home tab: %s", exc)
        return False
    return bool(deps.poster.publish_home(user_id, home_view(hits, subscriptions, own_only=own_only)))


def _subscriptions(session: Any) -> list[str]:
    lines = []
    for sub in digests.enabled_subscriptions(session):
        when = describe(sub.cadence, sub.time_of_day, sub.timezone, sub.weekday, sub.namespaces)
        lines.append(f"• <#{sub.channel}> {when}")
    return lines
