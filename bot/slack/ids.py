"""The ids the app gives Slack and gets back: action ids of buttons and block ids of message parts."""

from __future__ import annotations

from enum import StrEnum


class ActionId(StrEnum):
    """Buttons on a verdict message; each carries the investigation id as its value."""

    RERUN = "kubereach_rerun"
    SHOW_EVIDENCE = "kubereach_show_evidence"
    RESOLVED = "kubereach_resolved"


class BlockId(StrEnum):
    """Parts of the messages the app posts (stable, so updates and clicks can name them)."""

    HEADLINE = "kubereach_headline"
    WHERE = "kubereach_where"
    SUMMARY = "kubereach_summary"
    REMEDIATION = "kubereach_remediation"
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
