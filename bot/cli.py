"""The `kubereach` command line: the composition root.

Each domain contributes its own click commands (`lab.cli.lab`, `bot.policy.cli.policy`, ...); this
module only wires them together and maps errors to exit codes in one place.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bot.ask import ask
from bot.digest.flows import DigestDeps
from bot.digest_cli import digest
from bot.errors import KubereachError
from bot.history.cli import search
from bot.history.recorder import HistoryRecorder
from bot.investigation import bot_pod_check, investigator_sweep, serving_investigator
from bot.policy.cli import policy
from bot.settings import BotSettings
from bot.slack.digest_command import handle
from bot.slack.flows import DigestHandler
from bot.slack.serve import make_serve_command
from lab.cli import demo, lab


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    envvar="KUBEREACH_CONFIG",
    help="kubereach config file (the lab writes one; `kubereach lab status` prints its path).",
)
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """kubereach: why can't this workload reach that one?"""
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path


def _digest_for_slack(settings: BotSettings, history: HistoryRecorder) -> tuple[DigestHandler, DigestDeps]:
    """The `/reach digest …` handler and its dependencies, for the Slack app."""
    return handle, DigestDeps(history.sessions, investigator_sweep(settings))


def _register() -> None:
    for command in (
        lab,
        demo,
        ask,
        search,
        policy,
        digest,
        make_serve_command(serving_investigator, digest=_digest_for_slack, host_check=bot_pod_check),
    ):
        cli.add_command(command)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script: run the CLI and map errors to one line and an exit code."""
    _register()
    try:
        result = cli.main(args=argv, standalone_mode=False)
    except KubereachError as exc:
        click.echo(f"kubereach: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("kubereach: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2 if isinstance(exc, click.UsageError) else exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    if isinstance(result, int) and result != 0:  # ctx.exit(code) inside a command, in non-standalone mode
        sys.exit(result)


if __name__ == "__main__":
    main()
