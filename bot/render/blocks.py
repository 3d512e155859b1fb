"""The investigation as Slack Block Kit (plain JSON-ready dicts; no I/O, no Slack library here).

The verdict message is compact: the verdict, where (node, hop), why (the evidence that decides it)
and the fix to paste lead; of the checklist only failing and warning steps are listed, the passing
ones are one line ("19 checks passed · Show evidence"). The full checklist is behind Show evidence.

Slack's limits are kept here, where the text is made: at most 50 blocks per message, 3000
characters per section, 150 per header, 40,000 for a message's text. Anything longer is cut with
"…" and the cut says where the rest is (the Show evidence button, or the history id).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.playbook.models import InvestigationResult, NameChoice, StepResult, StepStatus, Verdict, VerdictCode
from bot.render.ids import ActionId, BlockId, numbered
from bot.render.seen import seen_before_line
from bot.render.summary import compact_view, passed_line, trace_line

Block = dict[str, Any]

MAX_BLOCKS = 50
SECTION_TEXT_MAX = 3000
HEADER_TEXT_MAX = 150
MESSAGE_TEXT_MAX = 40000
CONTEXT_TEXT_MAX = 2000
BUTTON_VALUE_MAX = 2000

STATUS_EMOJI = {
    StepStatus.PASS: ":white_check_mark:",
    StepStatus.FAIL: ":x:",
    StepStatus.WARN: ":warning:",
    StepStatus.SKIP: ":heavy_minus_sign:",
}
RUNNING_EMOJI = ":hourglass_flowing_sand:"
EVIDENCE_ELSEWHERE = "the rest: click Show evidence"
WHY_LINE_MAX = 600
MAX_CHOICES = 5
"""Candidate buttons shown for an ambiguous name (Slack allows 25 elements in an actions block)."""


def clip(text: str, limit: int, rest: str = EVIDENCE_ELSEWHERE) -> str:
    """`text` if it fits in `limit` characters, else its start, "…" and a note saying where the rest is."""
    if len(text) <= limit:
        return text
    note = f"… ({rest})" if rest else "…"
    return text[: max(0, limit - len(note))] + note


def _clip_code(lines: Sequence[str], limit: int, rest: str) -> str:
    """Lines as one mrkdwn code block of at most `limit` characters (the fence stays closed)."""
    fence = "```"
    body = "\n".join(lines)
    room = limit - 2 * len(fence) - 2
    if len(body) <= room:
        return f"{fence}\n{body}\n{fence}" if body else ""
    note = f"\n… ({rest})"
    return f"{fence}\n{body[: max(0, room - len(note))]}{note}\n{fence}"


def section(text: str, block_id: str | None = None, *, rest: str = EVIDENCE_ELSEWHERE) -> Block:
    """A mrkdwn section, cut to Slack's 3000 characters."""
    block: Block = {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, SECTION_TEXT_MAX, rest)}}
    if block_id:
        block["block_id"] = block_id
    return block


def header(text: str, block_id: str | None = None) -> Block:
    """A plain-text header, cut to Slack's 150 characters."""
    block: Block = {"type": "header", "text": {"type": "plain_text", "text": clip(text, HEADER_TEXT_MAX, ""), "emoji": True}}
    if block_id:
        block["block_id"] = block_id
    return block


def context(text: str, block_id: str | None = None) -> Block:
    """A one-line mrkdwn context block."""
    block: Block = {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(text, CONTEXT_TEXT_MAX, "")}]}
    if block_id:
        block["block_id"] = block_id
    return block


def fit_blocks(blocks: list[Block], rest: str = EVIDENCE_ELSEWHERE) -> list[Block]:
    """At most 50 blocks: drop from the middle, keep the actions at the end, and say what was left out."""
    if len(blocks) <= MAX_BLOCKS:
        return blocks
    tail = [b for b in blocks[-2:] if b.get("type") in ("actions", "context")]
    keep = MAX_BLOCKS - len(tail) - 1
    dropped = len(blocks) - keep - len(tail)
    note = context(f"… {dropped} more parts not shown ({rest})", BlockId.TRUNCATED)
    return [*blocks[:keep], note, *tail]


def message_text(text: str) -> str:
    """The notification/fallback text of a message, cut to Slack's 40,000 characters."""
    return clip(text, MESSAGE_TEXT_MAX, "")


def _esc(text: str) -> str:
    """Escape what Slack's mrkdwn treats as markup (&, <, >)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape(text: str) -> str:
    """Escape what Slack's mrkdwn treats as markup (&, <, >): for text from people or the cluster."""
    return _esc(text)


def checklist_lines(steps: Sequence[StepResult], *, running: bool) -> list[str]:
    """One line per step, ``:white_check_mark: *name* — summary``, and an hourglass while running."""
    lines = [f"{STATUS_EMOJI[s.status]} *{_esc(s.name)}* — {_esc(s.summary)}" for s in steps]
    if running:
        lines.append(f"{RUNNING_EMOJI} investigating…")
    return lines


def _lines_section(lines: Sequence[str], block_id: str) -> Block:
    """Lines in one section; when they do not fit, as many as fit and how many more there are."""
    text = "\n".join(lines)
    if len(text) > SECTION_TEXT_MAX:
        shown: list[str] = []
        used = 0
        tail = f"\n… {{n}} more ({EVIDENCE_ELSEWHERE})"
        for line in lines:
            if used + len(line) + 1 + len(tail) + 6 > SECTION_TEXT_MAX:
                break
            shown.append(clip(line, 400, ""))
            used += len(shown[-1]) + 1
        text = "\n".join(shown) + tail.format(n=len(lines) - len(shown))
    return section(text, block_id)


def _checklist_section(steps: Sequence[StepResult], *, running: bool) -> Block:
    """The steps worth reading (failing and warning ones) and one line for those that passed."""
    listed = [s for s in steps if s.status in (StepStatus.FAIL, StepStatus.WARN)]
    passed = sum(1 for s in steps if s.status == StepStatus.PASS)
    skipped = sum(1 for s in steps if s.status == StepStatus.SKIP)
    lines = checklist_lines(listed, running=False)
    if running:
        lines.append(f"{STATUS_EMOJI[StepStatus.PASS]} {passed} check{'s' if passed != 1 else ''} passed so far")
        latest = f" ({_esc(steps[-1].name)})" if steps else ""
        lines.append(f"{RUNNING_EMOJI} investigating…{latest}")
    else:
        lines.append(f"{STATUS_EMOJI[StepStatus.PASS]} {passed_line(passed, skipped)}")
    return _lines_section(lines, BlockId.CHECKLIST)


def progress_blocks(question: str, steps: Sequence[StepResult], *, note: str | None = None) -> list[Block]:
    """The "investigating…" message, updated as steps finish: failing and warning steps so far, a count
    of the passed ones and the step that finished last."""
    blocks = [section(f":mag: Investigating *{_esc(question)}*", BlockId.SUMMARY)]
    if note:
        blocks.append(context(note))
    blocks.append(_checklist_section(steps, running=True))
    return fit_blocks(blocks)


def progress_text(question: str, steps: Sequence[StepResult]) -> str:
    """Fallback text of the progress message."""
    return message_text(f"Investigating {question} ({len(steps)} steps done)")


def _where(verdict: Verdict, source: str, target: str) -> str:
    parts = [f"*{_esc(source)}* → *{_esc(target)}*"]
    if verdict.node:
        parts.append(f"node `{verdict.node}`")
    if verdict.hop:
        parts.append(f"hop `{verdict.hop.value}`")
    return " · ".join(parts)


def verdict_headline(verdict: Verdict) -> str:
    """The header text: a status emoji and the verdict code (a question mark when a name needs choosing)."""
    if verdict.code == VerdictCode.NO_FAULT_FOUND:
        return f"✅ {verdict.code.value}"
    return f"{'❓' if verdict.code == VerdictCode.AMBIGUOUS_NAME else '🔴'} {verdict.code.value}"


def button(label: str, action_id: ActionId | str, value: str, *, style: str | None = None) -> Block:
    """A button carrying `value` (cut to Slack's 2000 characters)."""
    element: Block = {
        "type": "button",
        "text": {"type": "plain_text", "text": clip(label, 75, ""), "emoji": True},
        "action_id": str(action_id),
        "value": value[:BUTTON_VALUE_MAX],
    }
    if style:
        element["style"] = style
    return element


def verdict_actions(investigation_id: str) -> Block:
    """Re-run, Show evidence and Resolved for one investigation."""
    return {
        "type": "actions",
        "block_id": BlockId.ACTIONS.value,
        "elements": [
            button("Re-run", ActionId.RERUN, investigation_id, style="primary"),
            button("Show evidence", ActionId.SHOW_EVIDENCE, investigation_id),
            button("Trace the packet", ActionId.TRACE, investigation_id),
            button("Resolved", ActionId.RESOLVED, investigation_id),
        ],
    }


def choice_actions(choices: Sequence[NameChoice]) -> Block:
    """One button per candidate of an ambiguous name; clicking asks the question naming that candidate."""
    return {
        "type": "actions",
        "block_id": BlockId.CHOICES.value,
        "elements": [
            button(choice.label, numbered(ActionId.ASK_INSTEAD, index), choice.question)
            for index, choice in enumerate(choices[:MAX_CHOICES])
        ],
    }


def verdict_blocks(
    result: InvestigationResult, *, changes: Sequence[str] | None = None, asked_by: str | None = None
) -> list[Block]:
    """The finished investigation, compact: verdict, where, why, fix; failing and warning steps; buttons.

    Passing steps are one line (the full checklist is behind Show evidence). An ambiguous name gets a
    button per candidate instead of a fix. `changes` (from `changes_since`) is shown for a re-run.
    """
    verdict = result.verdict
    view = compact_view(result)
    blocks: list[Block] = [
        header(verdict_headline(verdict), BlockId.HEADLINE),
        context(_where(verdict, result.source, result.target), BlockId.WHERE),
        section(_esc(verdict.summary) or "(no summary)", BlockId.SUMMARY),
    ]
    if view.why:
        lines = [f"• {_esc(clip(line, WHY_LINE_MAX, ''))}" for line in view.why]
        blocks.append(section("*Why*\n" + "\n".join(lines), BlockId.WHY))
    if path := trace_line(result):
        blocks.append(section(f"*Path*\n{_esc(clip(path, SECTION_TEXT_MAX - 10))}", BlockId.TRACE))
    if result.choices:
        blocks.append(section("*Which one did you mean?* Each button asks again naming it.", BlockId.REMEDIATION))
        blocks.append(choice_actions(result.choices))
        if len(result.choices) > MAX_CHOICES:
            more = len(result.choices) - MAX_CHOICES
            blocks.append(context(f"{more} more match: ask again with the namespace (`name in NAMESPACE`)"))
    elif verdict.remediation:
        code = _clip_code([_esc(line) for line in verdict.remediation], SECTION_TEXT_MAX - 10, EVIDENCE_ELSEWHERE)
        blocks.append(section(f"*Fix*\n{code}", BlockId.REMEDIATION))
    if result.findings:
        lines = [f"• `{f.code.value}`{' on `' + f.node + '`' if f.node else ''}: {_esc(f.summary)}" for f in result.findings]
        blocks.append(_lines_section(["*Also seen*", *lines], BlockId.FINDINGS))
    if changes is not None:
        said = "\n".join(f"• {_esc(c)}" for c in changes) if changes else "• nothing: same verdict, same steps"
        blocks.append(section(f"*Since the last run*\n{said}", BlockId.CHANGES))
    if (seen := seen_before_line(result.seen_before)) is not None:
        blocks.append(context(f":repeat: {_esc(seen)}", BlockId.SEEN_BEFORE))
    if result.steps:
        blocks.append(_checklist_section(result.steps, running=False))
    footer = f"`{result.id}` · {result.duration_ms:.0f} ms"
    if asked_by:
        footer += f" · asked by {asked_by}"
    blocks.append(context(footer, BlockId.FOOTER))
    if not result.choices:
        blocks.append(verdict_actions(result.id))
    return fit_blocks(blocks)


def verdict_text(result: InvestigationResult) -> str:
    """Fallback text of the verdict message (notifications, screen readers)."""
    where = f" on {result.verdict.node}" if result.verdict.node else ""
    return message_text(f"{result.verdict.code.value}{where}: {result.verdict.summary}")


def changes_since(
    previous_verdict: Verdict | None,
    previous_steps: Sequence[StepResult],
    verdict: Verdict,
    steps: Sequence[StepResult],
) -> tuple[str, ...]:
    """What changed from one run to the next: verdict code, node and hop, and steps whose status changed."""
    changes: list[str] = []
    if previous_verdict is None:
        changes.append(f"verdict: (none before) → {verdict.code.value}")
    else:
        if previous_verdict.code != verdict.code:
            changes.append(f"verdict: {previous_verdict.code.value} → {verdict.code.value}")
        if previous_verdict.node != verdict.node:
            changes.append(f"node: {previous_verdict.node or '–'} → {verdict.node or '–'}")
        if previous_verdict.hop != verdict.hop:
            before = previous_verdict.hop.value if previous_verdict.hop else "–"
            changes.append(f"hop: {before} → {verdict.hop.value if verdict.hop else '–'}")
    before_status: dict[str, StepStatus] = {}
    for step in previous_steps:
        before_status.setdefault(step.name, step.status)
    seen: set[str] = set()
    for step in steps:
        if step.name in seen:
            continue
        seen.add(step.name)
        old = before_status.get(step.name)
        if old is None:
            changes.append(f"step {step.name}: new, {step.status.value}")
        elif old != step.status:
            changes.append(f"step {step.name}: {old.value} → {step.status.value}")
    gone = [name for name in before_status if name not in seen]
    if gone:
        changes.append(f"steps not run this time: {', '.join(gone)}")
    return tuple(changes)


def evidence_text(result_id: str, question: str, steps: Sequence[StepResult]) -> str:
    """Every step's evidence as plain text (for the thread, or a file when long)."""
    out = [f"Evidence of {result_id}: {question}", ""]
    for number, step in enumerate(steps, 1):
        where = f" on {step.node}" if step.node else ""
        out.append(f"{number}. [{step.status.value}] {step.name}{where}: {step.summary}")
        for item in step.evidence:
            node = f" ({item.node})" if item.node else ""
            out.append(f"   - {item.kind}{node}: {item.summary}")
            for key, value in item.data.items():
                out.append(f"       {key}: {value}")
    return "\n".join(out)


def evidence_blocks(text: str, *, where_rest: str) -> list[Block]:
    """Short evidence as code blocks in the thread (each within a section's limit)."""
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for raw in text.splitlines():
        line = clip(_esc(raw), SECTION_TEXT_MAX - 20, "")
        if size + len(line) + 1 > SECTION_TEXT_MAX - 20 and current:
            chunks.append("\n".join(current))
            current, size = [], 0
        current.append(line)
        size += len(line) + 1
    if current:
        chunks.append("\n".join(current))
    blocks = [section(f"```\n{chunk}\n```") for chunk in chunks]
    return fit_blocks(blocks, where_rest)


def notice_blocks(text: str) -> list[Block]:
    """A one-section message (refusals, errors, help)."""
    return [section(text)]
