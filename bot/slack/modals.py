"""The Resolved button's modal: who resolved it and what fixed it, typed into a form.

Clicking Resolved opens this modal (``views.open`` with the click's trigger id); submitting it
records the resolution with the note and says so in the investigation's thread. When Slack cannot
open the modal, the click records the resolution without a note, as before (the thread then says
how to add one with ``/reach resolve``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bot.slack.messaging import Block

RESOLVE_CALLBACK = "kubereach_resolve"
NOTE_BLOCK = "kubereach_note"
NOTE_ACTION = "note"
NOTE_MAX = 2000


@dataclass(frozen=True)
class ResolveTarget:
    """What a submitted modal resolves: the investigation and where to say so."""

    investigation_id: str
    channel: str
    thread_ts: str | None


def resolve_modal(target: ResolveTarget) -> Block:
    """The modal asking what fixed the problem (the target rides in private_metadata)."""
    metadata = {"inv": target.investigation_id, "channel": target.channel, "thread_ts": target.thread_ts}
    return {
        "type": "modal",
        "callback_id": RESOLVE_CALLBACK,
        "private_metadata": json.dumps(metadata),
        "title": {"type": "plain_text", "text": "Mark resolved"},
        "submit": {"type": "plain_text", "text": "Resolve"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"Resolve `{target.investigation_id}`: what fixed it?"},
            },
            {
                "type": "input",
                "block_id": NOTE_BLOCK,
                "optional": True,
                "label": {"type": "plain_text", "text": "What fixed it"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": NOTE_ACTION,
                    "multiline": True,
                    "max_length": NOTE_MAX,
                    "placeholder": {"type": "plain_text", "text": "e.g. re-enabled ip_forward on node-2"},
                },
            },
        ],
    }


def submitted(body: dict[str, Any]) -> tuple[ResolveTarget, str] | None:
    """(what to resolve, the note) from a view_submission; None when the modal is not ours or is malformed."""
    view = body.get("view") or {}
    if view.get("callback_id") != RESOLVE_CALLBACK:
        return None
    try:
        metadata = json.loads(str(view.get("private_metadata") or "{}"))
    except ValueError:
        return None
    if not isinstance(metadata, dict) or not str(metadata.get("inv", "")).startswith("inv_") or not metadata.get("channel"):
        return None
    values = ((view.get("state") or {}).get("values") or {}).get(NOTE_BLOCK) or {}
    note = str((values.get(NOTE_ACTION) or {}).get("value") or "").strip()[:NOTE_MAX]
    thread = metadata.get("thread_ts")
    return ResolveTarget(str(metadata["inv"]), str(metadata["channel"]), str(thread) if thread else None), note
