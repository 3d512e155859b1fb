"""``kubereach search``: find past investigations from the terminal.

The database is ``--db URL``, else ``DATABASE_URL``, else the default SQLite file. ``--json`` prints
a list of results (the `SearchHit.as_json` shape); otherwise one line per investigation.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
from sqlalchemy.exc import OperationalError, ProgrammingError

from bot.errors import BadInput
from bot.history.db import create_history_engine, resolve_database_url, session_factory
from bot.history.errors import HistoryUnavailable
from bot.history.search import SearchFilters, SearchHit, search_investigations
from bot.playbook.models import VerdictCode

_DURATION = re.compile(r"^(\d+)([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str, now: datetime) -> datetime:
    """``7d``, ``12h``, ``30m``, ``2w`` before `now`, or an ISO date/time (UTC unless it says otherwise)."""
    match = _DURATION.match(value.strip())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise BadInput(
            f"--since {value!r} is neither a duration nor a date",
            hint="use e.g. 7d, 12h, 30m, 2w or 2026-11-02",
        ) from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_verdict(value: str | None) -> VerdictCode | None:
    if value is None:
        return None
    try:
        return VerdictCode(value.upper())
    except ValueError as exc:
        raise BadInput(
            f"--verdict {value!r} is not a verdict code",
            hint="codes are listed in VERDICTS.md, e.g. SERVICE_NO_ENDPOINTS",
        ) from exc


def _sqlite_file_missing(url: str) -> Path | None:
    if not url.startswith("sqlite:///"):
        return None
    path = Path(url.removeprefix("sqlite:///")).expanduser()
    return None if path.exists() else path


def _line(hit: SearchHit) -> str:
    when = hit.started_at.strftime("%Y-%m-%d %H:%M")
    verdict = hit.verdict_code.value if hit.verdict_code else hit.status
    node = f" on {hit.node}" if hit.node else ""
    return f"{hit.id}  {when}  {hit.asked_by_name}  {verdict}{node}  {hit.question}"


@click.command("search")
@click.argument("text", required=False, default="")
@click.option("--namespace", "-n", default=None, help="Only investigations involving this namespace.")
@click.option("--name", default=None, help="Only investigations whose source or target has this name.")
@click.option("--verdict", default=None, help="Only this verdict code, e.g. SERVICE_NO_ENDPOINTS.")
@click.option("--node", default=None, help="Only verdicts on this node.")
@click.option("--channel", default=None, help="Only questions asked in this Slack channel id.")
@click.option("--asked-by", default=None, help="Only questions asked by this user id or name.")
@click.option("--since", default=None, help="Only investigations since 7d, 12h, 2w or an ISO date.")
@click.option("--until", default=None, help="Only investigations before this duration ago or ISO date.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of results.")
@click.option(
    "--db",
    "db_url",
    default=None,
    help="History database URL (default: KUBEREACH_DATABASE_URL, DATABASE_URL, or a local file).",
)
def search(
    *,
    text: str,
    namespace: str | None,
    name: str | None,
    verdict: str | None,
    node: str | None,
    channel: str | None,
    asked_by: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    as_json: bool,
    db_url: str | None,
) -> None:
    """Search past investigations by words (names, questions, verdicts, evidence) and filters."""
    now = datetime.now(UTC)
    filters = SearchFilters(
        namespace=namespace,
        name=name,
        node=node,
        verdict_code=parse_verdict(verdict),
        channel=channel,
        asked_by=asked_by,
        since=parse_since(since, now) if since else None,
        until=parse_since(until, now) if until else None,
    )
    url = resolve_database_url(db_url)
    missing = _sqlite_file_missing(url)
    if missing is not None:
        hits: list[SearchHit] = []
        if not as_json:
            click.echo(f"No investigations recorded yet (no history database at {missing}).")
            return
    else:
        engine = create_history_engine(url)
        try:
            with session_factory(engine)() as session:
                hits = search_investigations(session, text, filters, limit=limit)
        except (OperationalError, ProgrammingError) as exc:
            raise HistoryUnavailable(
                f"could not search the history database: {exc.orig}",
                hint="check --db / DATABASE_URL; the bot creates the schema when it starts",
            ) from exc
        finally:
            engine.dispose()
    if as_json:
        click.echo(json.dumps([hit.as_json() for hit in hits], indent=2))
        return
    if not hits:
        click.echo("No investigation matches.")
        return
    for hit in hits:
        click.echo(_line(hit))
