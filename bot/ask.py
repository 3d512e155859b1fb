"""`kubereach ask`: one investigation from the command line."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bot import investigation
from bot.cluster.errors import ClusterAccessDenied, ClusterNoCredentials, ClusterUnavailable
from bot.errors import BadInput, KubereachError
from bot.history.errors import HistoryUnavailable
from bot.investigation import StepCallback
from bot.logs import configure_logging
from bot.playbook.models import InvestigationResult, StepResult
from bot.render.document import investigation_document
from bot.settings import BotSettings, load_settings

if TYPE_CHECKING:
    from bot.history.recorder import HistoryRecorder


@click.command()
@click.argument("question")
@click.option("--json", "as_json", is_flag=True, help="Print the investigation as JSON.")
@click.option("--namespace", "-n", help="Namespace to assume when the question names none.")
@click.option("--no-history", is_flag=True, help="Do not record this investigation in the history database.")
@click.option("--steps", "all_steps", is_flag=True, help="List every step (by default: failing and warning ones).")
@click.option("--trace", is_flag=True, help="Follow a marked probe hop by hop with captures on every point of its path.")
@click.option(
    "--picture",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Draw the path to this file: PNG, or SVG when the name ends in .svg.",
)
@click.pass_context
def ask(
    ctx: click.Context,
    question: str,
    as_json: bool,
    namespace: str | None,
    no_history: bool,
    all_steps: bool,
    trace: bool,
    picture: Path | None,
) -> None:
    """Ask why one workload cannot reach another, e.g. "why can't frontend reach api"."""
    if picture is not None and picture.suffix.lower() not in (".png", ".svg"):
        raise BadInput(f"--picture {picture}: the name must end in .png or .svg", hint="e.g. --picture path.png")
    try:
        _ask(ctx, question, as_json, namespace, no_history, all_steps, trace, picture)
    except KubereachError as exc:
        if as_json:
            # Scripts read stdout: say what went wrong there too (the exit code and stderr stay as they are).
            click.echo(json.dumps({"question": question, "error": error_document(exc)}, indent=2))
        raise


def error_document(exc: KubereachError) -> dict[str, Any]:
    """The `error` object `ask --json` prints when it could not investigate."""
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


def _ask(
    ctx: click.Context,
    question: str,
    as_json: bool,
    namespace: str | None,
    no_history: bool,
    all_steps: bool,
    trace: bool,
    picture: Path | None,
) -> None:
    config: Path | None = ctx.obj.get("config_path") if ctx.obj else None
    settings = load_settings(config)
    # Problems (warnings and errors) on stderr, one JSON object a line when KUBEREACH_LOG_FORMAT=json;
    # stdout stays the answer.
    configure_logging(settings.log_format, level="WARNING")
    history = None if no_history else open_history(settings)
    investigator = investigation.Investigator(settings, history)

    async def run_once(on_step: StepCallback | None) -> InvestigationResult:
        try:
            return await investigator.investigate(question, on_step=on_step, default_namespace=namespace, trace=trace)
        finally:
            await investigator.aclose()

    result = asyncio.run(run_once(None)) if as_json or not sys.stderr.isatty() else run_showing_steps(run_once)
    if as_json:
        click.echo(json.dumps(investigation_document(result), indent=2))
    else:
        print_view(result, all_steps)
    if picture is not None:
        written = save_picture(result, picture)
        # With --json, stdout stays one JSON document: the path goes to stderr.
        click.echo(f"picture: {written}", err=as_json)
    if history is not None and history.problem is not None:
        click.echo(f"history unavailable: {history.problem} (the verdict above stands; it was not recorded)", err=True)


# rich is imported for a terminal only (the two functions below): `--json` and pipes need none of it,
# and importing it costs ~25 ms of CPU in a process that answers one question.


def run_showing_steps(run_once: Callable[[StepCallback | None], Coroutine[Any, Any, InvestigationResult]]) -> InvestigationResult:
    """Run the investigation with its steps shown live on the terminal (stderr), then cleared."""
    from rich.console import Console
    from rich.live import Live

    from bot.render.terminal import steps_table

    steps: list[StepResult] = []
    with Live(steps_table(steps, running=True), console=Console(stderr=True), refresh_per_second=8, transient=True) as live:

        def progress(step: StepResult) -> None:
            steps.append(step)
            live.update(steps_table(steps, running=True))

        return asyncio.run(run_once(progress))


def print_view(result: InvestigationResult, all_steps: bool) -> None:
    """The answer as text on the terminal (stdout)."""
    from rich.console import Console

    from bot.render.terminal import investigation_view

    Console().print(investigation_view(result, all_steps=all_steps))


def save_picture(result: InvestigationResult, path: Path) -> Path:
    """Draw `result` into `path` (SVG when it ends in .svg, else PNG); the absolute path written."""
    # Imported here: cairosvg and cairocffi cost ~0.3 s to import, and most questions draw nothing.
    from bot.render.picture import picture_of, picture_png, picture_svg

    drawn = picture_of(result)
    try:
        if path.suffix.lower() == ".svg":
            path.write_text(picture_svg(drawn), encoding="utf-8")
        else:
            path.write_bytes(picture_png(drawn))
    except OSError as exc:
        raise BadInput(f"cannot write the picture to {path}: {exc.strerror}", hint="choose a writable path") from exc
    return path.resolve()


def open_history(settings: BotSettings) -> HistoryRecorder | None:
    """The history, after closing investigations left running by processes that are gone; None (with
    one line on stderr) when it cannot be opened — the question is answered all the same."""
    # Imported here: SQLAlchemy and the history's models are a fifth of a fresh process's start,
    # and `--no-history` needs none of them.
    from bot.history.db import owner_is_alive
    from bot.history.recorder import HistoryRecorder

    try:
        history = HistoryRecorder.from_settings(settings)
    except HistoryUnavailable as exc:
        click.echo(f"history unavailable: {exc.message}" + (f" ({exc.hint})" if exc.hint else ""), err=True)
        return None
    if history.available:
        pods = investigation.bot_pod_check(settings)
        history.close_stranded(lambda owner: owner_is_alive(owner, pods))
    return history
