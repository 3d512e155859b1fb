"""What a compact reply leads with, for every renderer: the evidence that decides the verdict, the
steps worth listing (failing and warning ones) and a count of the rest.

An engineer in an incident reads the verdict, where it is (node, hop), why (one or two pieces of
evidence) and the fix; the full checklist stays behind Show evidence and in the history. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.playbook.models import Evidence, InvestigationResult, StepResult, StepStatus, VerdictCode

WHY_MAX = 2
"""Pieces of evidence shown under "why"."""
PROBE_EVIDENCE = "probe"


@dataclass(frozen=True)
class CompactView:
    """The parts of a compact reply that are chosen rather than copied from the verdict."""

    why: tuple[str, ...]
    """One or two lines of evidence that decide the verdict (a failing check's, or the probe that succeeded)."""
    listed: tuple[StepResult, ...]
    """The failing and warning steps, in the order they ran."""
    passed: int
    skipped: int


def trace_line(result: InvestigationResult) -> str:
    """The path trace as one line of hops with the stop marked ("" when no trace ran): the trace that
    found where packets stop, else the first."""
    traces = [e for s in result.steps for e in s.evidence if e.kind == "trace"]
    if not traces:
        return ""
    return next((e for e in traces if e.data.get("stop")), traces[0]).summary


def compact_view(result: InvestigationResult) -> CompactView:
    """Choose the evidence and the steps a compact reply of `result` shows."""
    steps = result.steps
    listed = tuple(s for s in steps if s.status in (StepStatus.FAIL, StepStatus.WARN))
    return CompactView(
        why=deciding_evidence(result),
        listed=listed,
        passed=sum(1 for s in steps if s.status == StepStatus.PASS),
        skipped=sum(1 for s in steps if s.status == StepStatus.SKIP),
    )


def deciding_evidence(result: InvestigationResult) -> tuple[str, ...]:
    """Up to two evidence lines that the verdict's summary does not already say: the cause a failing
    check saw, then what the probes saw (on the verdict's node first).

    With nothing failing (NO_FAULT_FOUND), the probe step that succeeded says why. A verdict reached
    before any step ran (a name not found) has none.
    """
    failing = [s for s in result.steps if s.status == StepStatus.FAIL]
    if not failing:
        if result.verdict.code != VerdictCode.NO_FAULT_FOUND:
            return ()
        probed = [s for s in result.steps if s.status == StepStatus.PASS and _has_probe(s)]
        return (_step_line(probed[-1]),) if probed else ()
    node = result.verdict.node
    failing.sort(key=lambda s: 0 if node is not None and _on_node(s, node) else 1)
    lines: list[str] = []
    said = result.verdict.summary

    def add(evidence: Evidence | None) -> None:
        if evidence is not None and evidence.summary not in said:
            line = _evidence_line(evidence)
            if line not in lines:
                lines.append(line)

    add(_best_evidence(failing[0].evidence, node, probe=False))
    add(next((e for e in (_best_evidence(s.evidence, node, probe=True) for s in failing) if e is not None), None))
    if not lines:
        lines.append(_step_line(failing[0]))
    return tuple(lines[:WHY_MAX])


def passed_line(passed: int, skipped: int, *, where: str = "Show evidence") -> str:
    """``19 checks passed · Show evidence`` (with the skipped ones counted when there are any)."""
    text = f"{passed} check{'s' if passed != 1 else ''} passed"
    if skipped:
        text += f", {skipped} skipped"
    return f"{text} · {where}"


def _has_probe(step: StepResult) -> bool:
    return any(e.kind == PROBE_EVIDENCE for e in step.evidence)


def _on_node(step: StepResult, node: str) -> bool:
    return step.node == node or any(e.node == node for e in step.evidence)


def _best_evidence(evidence: Sequence[Evidence], node: str | None, *, probe: bool) -> Evidence | None:
    wanted = [e for e in evidence if (e.kind == PROBE_EVIDENCE) == probe]
    on_node = [e for e in wanted if node is not None and e.node == node]
    found = on_node or wanted
    return found[0] if found else None


def _evidence_line(evidence: Evidence) -> str:
    if evidence.node and evidence.node not in evidence.summary:
        return f"{evidence.summary} (on {evidence.node})"
    return evidence.summary


def _step_line(step: StepResult) -> str:
    return f"{step.name}: {step.summary}"
