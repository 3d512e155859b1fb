"""The investigation for a person at a terminal (Rich renderables; no I/O here)."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from bot.playbook.models import InvestigationResult, StepResult, StepStatus, VerdictCode

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


def investigation_view(result: InvestigationResult, *, show_steps: bool = True) -> RenderableType:
    """Verdict headline, node and hop, summary, remediation, findings, steps."""
    ok = result.verdict.code == VerdictCode.NO_FAULT_FOUND
    colour = "green" if ok else "red"
    head = Text(result.verdict.code.value, style=f"bold {colour}")
    where = ", ".join(
        x
        for x in (
            f"node {result.verdict.node}" if result.verdict.node else "",
            f"hop {result.verdict.hop.value}" if result.verdict.hop else "",
        )
        if x
    )
    parts: list[RenderableType] = [Text(f"{result.source} → {result.target}", style="bold"), Text(result.verdict.summary)]
    if where:
        parts.insert(1, Text(where, style="cyan"))
    if result.verdict.remediation:
        parts.append(Text("\nfix:", style="bold"))
        parts.extend(Text("  " + line, style="yellow") for line in result.verdict.remediation)
    if result.findings:
        parts.append(Text("\nalso seen:", style="bold"))
        parts.extend(Text(f"  {f.code.value}{' on ' + f.node if f.node else ''}: {f.summary}") for f in result.findings)
    if result.seen_before:
        parts.append(Text(f"\n{result.seen_before}", style="magenta"))
    if result.notes:
        parts.extend(Text(f"note: {n}", style="dim") for n in result.notes)
    if show_steps and result.steps:
        parts.append(Text("\nsteps:", style="bold"))
        parts.append(steps_table(result.steps))
    parts.append(Text(f"\n{result.id} · {result.duration_ms:.0f} ms", style="dim"))
    return Panel(Group(*parts), title=head, title_align="left", border_style=colour)
