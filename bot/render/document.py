"""The investigation as a JSON document (the `kubereach ask --json` contract in ARCHITECTURE.md)."""

from __future__ import annotations

from typing import Any

from bot.playbook.models import Evidence, Finding, InvestigationResult, StepResult, Verdict
from bot.render.seen import seen_before_line


def verdict_document(verdict: Verdict) -> dict[str, Any]:
    """{"code", "node", "hop", "summary", "remediation"}."""
    return {
        "code": verdict.code.value,
        "node": verdict.node,
        "hop": verdict.hop.value if verdict.hop else None,
        "summary": verdict.summary,
        "remediation": list(verdict.remediation),
    }


def evidence_document(evidence: Evidence) -> dict[str, Any]:
    """One piece of evidence."""
    return {"kind": evidence.kind, "summary": evidence.summary, "node": evidence.node, "data": dict(evidence.data)}


def step_document(step: StepResult) -> dict[str, Any]:
    """{"name", "status", "summary", "evidence", "node", "duration_ms"}."""
    return {
        "name": step.name,
        "status": step.status.value,
        "summary": step.summary,
        "evidence": [evidence_document(e) for e in step.evidence],
        "node": step.node,
        "duration_ms": step.duration_ms,
    }


def finding_document(finding: Finding) -> dict[str, Any]:
    """A finding that is not the verdict."""
    return {
        "code": finding.code.value,
        "summary": finding.summary,
        "node": finding.node,
        "hop": finding.hop.value if finding.hop else None,
    }


def trace_rows(result: InvestigationResult) -> list[dict[str, Any]] | None:
    """The rows of the investigation's path trace, in path order; None when no trace ran. With
    several traces (one per endpoint followed), the first that found where packets stop, else the first."""
    traces = [e for s in result.steps for e in s.evidence if e.kind == "trace"]
    if not traces:
        return None
    chosen = next((e for e in traces if e.data.get("stop")), traces[0])
    rows: list[dict[str, Any]] = list(chosen.data.get("rows", []))
    return rows


def investigation_document(result: InvestigationResult) -> dict[str, Any]:
    """The whole investigation (with "trace" when a path trace ran)."""
    document = _document(result)
    rows = trace_rows(result)
    if rows is not None:
        document["trace"] = rows
    return document


def _document(result: InvestigationResult) -> dict[str, Any]:
    return {
        "id": result.id,
        "question": result.question,
        "source": result.source,
        "target": result.target,
        "read_as": result.parsed.normalized if result.parsed is not None else None,
        "verdict": verdict_document(result.verdict),
        "steps": [step_document(s) for s in result.steps],
        "findings": [finding_document(f) for f in result.findings],
        "notes": list(result.notes),
        "per_source": dict(result.per_source),
        "seen_before": seen_before_line(result.seen_before),
        "started_at": result.started_at.isoformat(),
        "duration_ms": result.duration_ms,
    }
