"""The investigation for a person at a terminal (Rich renderables; no I/O here), compact as in Slack."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from bot.playbook.models import InvestigationResult, StepResult, StepStatus, VerdictCode
from bot.render.seen import seen_before_line
from bot.render.summary import compact_view, passed_line, trace_line

STATUS_MARK = {
    StepStatus.PASS: ("✔", "green"),
    StepStatus.FAIL: ("✘", "red"),
    StepStatus.WARN: ("!", "yellow"),
    StepStatus.SKIP: ("–", "dim"),
}


def steps_table(steps: list[StepResult] | tuple[StepResult, ...], *, running: bool = False) -> Table:
    """A checklist of steps with their status."""
    table = Table.grid(padding=(0, 1))
    table.add_column(width=1)
    table.add_column(style="bold")
    table.add_column()
    for step in steps:
        mark, style = STATUS_MARK[step.status]
        table.add_row(
            Text(mark, style=style), step.name, Text(step.summary, style="dim" if step.status == StepStatus.PASS else "")
        )
    if running:
        table.add_row(Text("…", style="cyan"), "investigating", "")
    return table


def investigation_view(result: InvestigationResult, *, all_steps: bool = False) -> RenderableType:
    """Compact, as in Slack: the verdict, where (node, hop), why, the fix; failing and warning steps and a
    count of the passed ones (every step with `all_steps`)."""
    ok = result.verdict.code == VerdictCode.NO_FAULT_FOUND
    colour = "green" if ok else "red"
    head = Text(result.verdict.code.value, style=f"bold {colour}")
    view = compact_view(result)
    where = ", ".join(
        x
        for x in (
            f"node {result.verdict.node}" if result.verdict.node else "",
            f"hop {result.verdict.hop.value}" if result.verdict.hop else "",
        )
        if x
    )
    parts: list[RenderableType] = [Text(f"{result.source} → {result.target}", style="bold")]
    if where:
        parts.append(Text(where, style="cyan"))
    parts.append(Text(result.verdict.summary))
    if view.why:
        parts.append(Text("\nwhy:", style="bold"))
        parts.extend(Text(f"  • {line}") for line in view.why)
    if path := trace_line(result):
        parts.append(Text("\npath:", style="bold"))
        parts.append(Text(f"  {path}"))
    if result.verdict.remediation:
        parts.append(Text("\nask one of these instead:" if result.choices else "\nfix:", style="bold"))
        parts.extend(Text("  " + line, style="yellow") for line in result.verdict.remediation)
    if result.findings:
        parts.append(Text("\nalso seen:", style="bold"))
        parts.extend(Text(f"  {f.code.value}{' on ' + f.node if f.node else ''}: {f.summary}") for f in result.findings)
    if (seen := seen_before_line(result.seen_before)) is not None:
        parts.append(Text(f"\n{seen}", style="magenta"))
    if result.notes:
        parts.extend(Text(f"note: {n}", style="dim") for n in result.notes)
    if result.steps:
        parts.append(Text(""))
        if all_steps:
            parts.append(steps_table(result.steps))
        else:
            if view.listed:
                parts.append(steps_table(view.listed))
            parts.append(Text(passed_line(view.passed, view.skipped, where="--steps lists every step"), style="dim"))
    parts.append(Text(f"\n{result.id} · {result.duration_ms:.0f} ms", style="dim"))
    return Panel(Group(*parts), title=head, title_align="left", border_style=colour)
