"""``kubereach digest``: one network health digest of the configured cluster, printed.

The digest is recorded in the history database (as the terminal's own on-demand digest), so the next
``kubereach digest`` says what is new, still there or gone; ``--no-history`` sweeps without the
database (no investigations section, nothing to compare with).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from pathlib import Path

import click
from sqlalchemy import Engine

from bot.digest.content import build_digest
from bot.digest.flows import DigestDeps, run_on_demand
from bot.history.service import Person
from bot.investigation import investigator_sweep
from bot.render.digest import digest_text
from bot.settings import load_settings, local_user

CLI_CHANNEL_PREFIX = "cli:"


def cli_channel(cluster: str) -> str:
    """The pseudo-channel the terminal's digests of `cluster` are recorded under."""
    return (CLI_CHANNEL_PREFIX + cluster)[:64]


@click.command("digest")
@click.option("--json", "as_json", is_flag=True, help="Print the digest as JSON.")
@click.option("--namespace", "-n", "namespaces", multiple=True, help="Only these namespaces (repeatable; default: all).")
@click.option("--no-history", is_flag=True, help="Do not read or record the history database.")
@click.option(
    "--db", "db_url", default=None, help="History database URL (default: the config's, DATABASE_URL, or the local file)."
)
@click.pass_context
def digest(ctx: click.Context, as_json: bool, namespaces: Sequence[str], no_history: bool, db_url: str | None) -> None:
    """Sweep every node agent and the API and print one network health digest."""
    config: Path | None = ctx.obj.get("config_path") if ctx.obj else None
    settings = load_settings(config, **({"database_url": db_url} if db_url else {}))
    sweep = investigator_sweep(settings)
    if no_history:
        result = build_digest(asyncio.run(sweep(tuple(namespaces))), None, None, namespaces=tuple(namespaces))
    else:
        deps = DigestDeps.from_settings(settings, sweep=sweep)
        who = Person("cli", local_user())
        try:
            result = run_on_demand(deps, cli_channel(settings.cluster), who, tuple(namespaces))
        finally:
            bind = deps.sessions.kw.get("bind")
            if isinstance(bind, Engine):
                bind.dispose()
    if as_json:
        click.echo(json.dumps(result.as_json(), indent=2))
    else:
        click.echo(digest_text(result), nl=False)
