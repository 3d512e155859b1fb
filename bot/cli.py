"""The `kubereach` command line: the composition root.

Each domain contributes its own click commands (`lab.cli.lab`, `bot.policy.cli.policy`, ...); this
module only wires them together and maps errors to exit codes in one place.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from bot.errors import KubereachError


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


def _digest_for_slack(settings: Any, history: Any) -> tuple[Any, Any]:
    """The `/reach digest …` handler and its dependencies, for the Slack app."""
    from bot.digest.flows import DigestDeps
    from bot.digest.slack import handle
    from bot.digest.sweep import investigator_sweep

    return handle, DigestDeps(history.sessions, investigator_sweep(settings))


def _register() -> None:
    from bot.ask import ask
    from bot.digest.cli import digest
    from bot.history.cli import search
    from bot.investigate import Investigator, bot_pod_check
    from bot.policy.cli import policy
    from bot.slack.serve import make_serve_command
    from lab.cli import demo, lab

    for command in (
        lab,
        demo,
        ask,
        search,
        policy,
        digest,
        make_serve_command(Investigator, digest=_digest_for_slack, host_check=bot_pod_check),
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
