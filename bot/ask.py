"""`kubereach ask`: one investigation from the command line."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.live import Live

from bot.errors import BadInput, KubereachError
from bot.playbook.models import InvestigationResult, StepResult
from bot.settings import load_settings


@click.command()
@click.argument("question")
@click.option("--json", "as_json", is_flag=True, help="Print the investigation as JSON.")
@click.option("--namespace", "-n", help="Namespace to assume when the question names none.")
@click.option("--no-history", is_flag=True, help="Do not record this investigation in the history database.")
@click.pass_context
def ask(ctx: click.Context, question: str, as_json: bool, namespace: str | None, no_history: bool) -> None:
    """Ask why one workload cannot reach another, e.g. "why can't frontend reach api"."""
    try:
        _ask(ctx, question, as_json, namespace, no_history)
    except KubereachError as exc:
        if as_json:
            # Scripts read stdout: say what went wrong there too (the exit code and stderr stay as they are).
            click.echo(json.dumps({"question": question, "error": error_document(exc)}, indent=2))
        raise


def error_document(exc: KubereachError) -> dict[str, Any]:
    """The `error` object `ask --json` prints when it could not investigate."""
    from bot.cluster.errors import ClusterAccessDenied, ClusterNoCredentials, ClusterUnavailable

    kind = "error"
    extra: dict[str, Any] = {}
    if isinstance(exc, ClusterNoCredentials):
        kind = "no_credentials"
    elif isinstance(exc, ClusterAccessDenied):
        kind = "access_denied"
        extra["rbac"] = {"verb": exc.verb, "resource": exc.resource, "group": exc.group, "namespace": exc.namespace}
    elif isinstance(exc, ClusterUnavailable):
        kind = "cluster_unavailable"
    elif isinstance(exc, BadInput):
        kind = "bad_input"
    if isinstance(exc, ClusterUnavailable) and exc.server:
        extra["server"] = exc.server
    return {"kind": kind, "message": exc.message, "hint": exc.hint, "exit_code": exc.exit_code, **extra}


def _ask(ctx: click.Context, question: str, as_json: bool, namespace: str | None, no_history: bool) -> None:
    from bot.investigate import Investigator
    from bot.render.document import investigation_document
    from bot.render.terminal import investigation_view, steps_table

    config: Path | None = ctx.obj.get("config_path") if ctx.obj else None
    settings = load_settings(config)
    history = None
    if not no_history:
        from bot.history.recorder import HistoryRecorder

        history = HistoryRecorder.from_settings(settings)
    investigator = Investigator(settings, history)
    steps: list[StepResult] = []
    err = Console(stderr=True)

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
