"""The `kubereach` command line: the composition root.

Each domain contributes its own click commands (`lab.cli.lab`, `bot.policy.cli.policy`, ...); this
module only wires them together and maps errors to exit codes in one place.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bot.errors import KubereachError

if TYPE_CHECKING:
    from bot.digest.flows import DigestDeps
    from bot.history.recorder import HistoryRecorder
    from bot.settings import BotSettings
    from bot.slack.flows import DigestHandler


class LazyGroup(click.Group):
    """A group whose commands are imported when one is run (or listed by --help), not at start.

    `kubereach ask` is one process per question: importing every command's domain first (Slack,
    SQLAlchemy's history service for search, cairosvg for pictures, the lab) cost more than the
    investigation itself on a loaded machine.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.loaders: dict[str, Callable[[], click.Command]] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.loaders))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.loaders:
            self.add_command(self.loaders[cmd_name](), cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
    from bot.digest.flows import DigestDeps
    from bot.investigation import investigator_sweep
    from bot.slack.digest_command import handle

    return handle, DigestDeps(history.sessions, investigator_sweep(settings))


def _lab() -> click.Command:
    from lab.cli import lab

    return lab


def _demo() -> click.Command:
    from lab.cli import demo

    return demo


def _ask() -> click.Command:
    from bot.ask import ask

    return ask


def _search() -> click.Command:
    from bot.history.cli import search

    return search


def _policy() -> click.Command:
    from bot.policy.cli import policy

    return policy


def _digest() -> click.Command:
    from bot.digest_cli import digest

    return digest


def _serve() -> click.Command:
    from bot.investigation import bot_pod_check, serving_investigator
    from bot.slack.serve import make_serve_command

    return make_serve_command(serving_investigator, digest=_digest_for_slack, host_check=bot_pod_check)


def _register() -> None:
    """Name every command; each is imported when it runs (`LazyGroup`)."""
    group = cli
    assert isinstance(group, LazyGroup)
    group.loaders.update(
        {"lab": _lab, "demo": _demo, "ask": _ask, "search": _search, "policy": _policy, "digest": _digest, "serve": _serve}
    )


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
