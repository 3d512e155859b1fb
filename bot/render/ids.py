"""The ids the app gives Slack and gets back: action ids of buttons and block ids of message parts."""

from __future__ import annotations

from enum import StrEnum


class ActionId(StrEnum):
    """Buttons on a verdict message; each carries the investigation id as its value (but ASK_INSTEAD)."""

    RERUN = "kubereach_rerun"
    SHOW_EVIDENCE = "kubereach_show_evidence"
    RESOLVED = "kubereach_resolved"
    TRACE = "kubereach_trace"
    """Ask the same question again with a path trace (the marked probe followed hop by hop)."""
    ASK_INSTEAD = "kubereach_ask_instead"
    """One candidate of an ambiguous name: its value is the question naming that candidate. Slack wants
    action ids unique within a block, so each button's id is this with ``_N`` appended (`numbered`)."""


def numbered(action: ActionId, index: int) -> str:
    """The action id of the `index`-th button of a kind that repeats in one block (``kubereach_ask_instead_0``)."""
    return f"{action.value}_{index}"


class BlockId(StrEnum):
    """Parts of the messages the app posts (stable, so updates and clicks can name them)."""

    HEADLINE = "kubereach_headline"
    WHERE = "kubereach_where"
    SUMMARY = "kubereach_summary"
    WHY = "kubereach_why"
    TRACE = "kubereach_trace"
    REMEDIATION = "kubereach_remediation"
    CHOICES = "kubereach_choices"
    FINDINGS = "kubereach_findings"
    SEEN_BEFORE = "kubereach_seen_before"
    CHANGES = "kubereach_changes"
    CHECKLIST = "kubereach_checklist"
    FOOTER = "kubereach_footer"
    ACTIONS = "kubereach_actions"
    TRUNCATED = "kubereach_truncated"


class Command(StrEnum):
    """The slash command the manifest declares."""

    REACH = "/reach"
