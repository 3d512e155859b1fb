"""The path picture and the web UI link in a verdict's thread.

`share_picture` draws the result and uploads the PNG into the thread (files v2) after the verdict is
posted, so a failed drawing or upload costs the picture only, never the verdict. `WebLinks` signs a
link to the investigation's page, scoped to the namespaces of the channel it is posted in.
"""

from __future__ import annotations

import logging
import urllib.parse
from dataclasses import dataclass
from typing import Any

from bot.playbook.models import InvestigationResult
from bot.render.picture import picture_of, picture_png
from bot.slack.messaging import SlackPoster
from bot.web.tokens import LinkSigner

log = logging.getLogger("kubereach.slack")


@dataclass(frozen=True)
class WebLinks:
    """Signed links to the web UI at `base_url` (no trailing slash)."""

    base_url: str
    signer: LinkSigner

    def investigation(self, investigation_id: str, channel: str, namespaces: frozenset[str] | None) -> str:
        """The page of `investigation_id`, with a token for `channel`'s namespaces (None: all)."""
        token = self.signer.issue(channel, namespaces)
        path = urllib.parse.quote(investigation_id, safe="")
        return f"{self.base_url}/ui/i/{path}?{urllib.parse.urlencode({'t': token})}"


def link_block(url: str) -> dict[str, Any]:
    """A context block with the link (Slack shows the words, the token stays in the URL)."""
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": f"<{url}|Open the investigation page> (link expires)"}]}


def share_picture(poster: SlackPoster, result: InvestigationResult, channel: str, thread_ts: str | None) -> bool:
    """Upload the path picture into the thread; False when no path was probed, or (logged) when it could not
    be drawn or uploaded."""
    drawn = picture_of(result)
    if not drawn.lanes:
        return False  # no path was probed (a name that resolved to nothing, or to several things)
    try:
        png = picture_png(drawn)
    except (ValueError, TypeError, OSError, MemoryError, RecursionError) as exc:
        log.warning("slack: the path picture of %s could not be drawn: %s", result.id, type(exc).__name__)
        return False
    alt = f"Path picture: {result.source} to {result.target}, {result.verdict.code.value}"
    return poster.upload_bytes(
        channel, thread_ts, f"{result.id}-path.png", png, title=f"Path: {result.verdict.code.value}", alt_text=alt[:1000]
    )
