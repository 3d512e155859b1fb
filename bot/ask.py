"""`kubereach ask`: one investigation from the command line."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.live import Live

from bot.playbook.models import StepResult
from bot.settings import load_settings


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
    history = None
    if not no_history:
        from bot.history.recorder import HistoryRecorder

        url = settings.database_url.get_secret_value() if settings.database_url else None
        history = HistoryRecorder.from_url(url, settings.cluster)
    investigator = Investigator(settings, history)
    steps: list[StepResult] = []
    err = Console(stderr=True)
    try:
        if as_json or not sys.stderr.isatty():
            result = asyncio.run(investigator.investigate(question, default_namespace=namespace))
        else:
            with Live(steps_table(steps, running=True), console=err, refresh_per_second=8, transient=True) as live:

                def progress(step: StepResult) -> None:
                    steps.append(step)
                    live.update(steps_table(steps, running=True))

                result = asyncio.run(investigator.investigate(question, on_step=progress, default_namespace=namespace))
    finally:
        investigator.close()
    if as_json:
        click.echo(json.dumps(investigation_document(result), indent=2))
    else:
        Console().print(investigation_view(result))
