"""`kubereach ask`: one investigation from the command line."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.live import Live

from bot.logs import configure_logging
from bot.playbook.models import InvestigationResult, StepResult
from bot.settings import BotSettings, load_settings

if TYPE_CHECKING:
    from bot.history.recorder import HistoryRecorder


@click.command()
@click.argument("question")
@click.option("--json", "as_json", is_flag=True, help="Print the investigation as JSON.")
@click.option("--namespace", "-n", help="Namespace to assume when the question names none.")
@click.option("--no-history", is_flag=True, help="Do not record this investigation in the history database.")
@click.pass_context
def ask(ctx: click.Context, question: str, as_json: bool, namespace: str | None, no_history: bool) -> None:
    """Ask why one workload cannot reach another, e.g. "why can't frontend reach api"."""
    from bot.investigate import Investigator
    from bot.render.document import investigation_document
    from bot.render.terminal import investigation_view, steps_table

    config: Path | None = ctx.obj.get("config_path") if ctx.obj else None
    settings = load_settings(config)
    # Problems (warnings and errors) on stderr, one JSON object a line when KUBEREACH_LOG_FORMAT=json;
    # stdout stays the answer.
    configure_logging(settings.log_format, level="WARNING")
    err = Console(stderr=True)
    history = None if no_history else open_history(settings, err)
    investigator = Investigator(settings, history)
    steps: list[StepResult] = []

    async def run_once(on_step: Callable[[StepResult], None] | None) -> InvestigationResult:
        try:
            return await investigator.investigate(question, on_step=on_step, default_namespace=namespace)
        finally:
            await investigator.aclose()

    if as_json or not sys.stderr.isatty():
        result = asyncio.run(run_once(None))
    else:
        with Live(steps_table(steps, running=True), console=err, refresh_per_second=8, transient=True) as live:

            def progress(step: StepResult) -> None:
                steps.append(step)
                live.update(steps_table(steps, running=True))

            result = asyncio.run(run_once(progress))
    if as_json:
        click.echo(json.dumps(investigation_document(result), indent=2))
    else:
        Console().print(investigation_view(result))
    if history is not None and history.problem is not None:
        err.print(f"history unavailable: {history.problem} (the verdict above stands; it was not recorded)", markup=False)


def open_history(settings: BotSettings, err: Console) -> HistoryRecorder | None:
    """The history, after closing investigations left running by processes that are gone; None (with
    one line on stderr) when it cannot be opened — the question is answered all the same."""
    from bot.history.errors import HistoryUnavailable
    from bot.history.recorder import HistoryRecorder

    try:
        history = HistoryRecorder.from_settings(settings)
    except HistoryUnavailable as exc:
        err.print(f"history unavailable: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""), markup=False)
        return None
    if history.available:
        from bot.history.db import owner_is_alive
        from bot.investigate import bot_pod_check

        pods = bot_pod_check(settings)
        history.close_stranded(lambda owner: owner_is_alive(owner, pods))
    return history
