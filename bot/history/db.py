"""Where the history lives and how to open it: URL, engine, sessions and schema upgrades.

SQLite by default (a file under the user's data directory, WAL mode, foreign keys on); PostgreSQL when
``DATABASE_URL`` or ``--db`` says so, through psycopg 3. `upgrade` runs the Alembic migrations to
head; the bot calls it on start so the schema is always current before the first write.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from bot.history.errors import HistoryUnavailable

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
"""The Alembic environment (``migrations/`` at the repository root)."""

SQLITE_BUSY_TIMEOUT_MS = 5000


def default_database_path(environ: Mapping[str, str]) -> Path:
    """``$XDG_DATA_HOME/kubereach/history.db``, or ``~/.local/share/kubereach/history.db``."""
    data_home = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "kubereach" / "history.db"


def resolve_database_url(explicit: str | None, environ: Mapping[str, str] | None = None) -> str:
    """Pick the database: an explicit URL, else ``KUBEREACH_DATABASE_URL`` or ``DATABASE_URL``, else the default SQLite file.

    ``postgres://`` and ``postgresql://`` URLs (as hosting platforms hand them out) are pointed at the
    psycopg 3 driver.
    """
    env = os.environ if environ is None else environ
    url = explicit or env.get("KUBEREACH_DATABASE_URL") or env.get("DATABASE_URL") or f"sqlite:///{default_database_path(env)}"
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _parse(url: str | URL) -> URL:
    try:
        return make_url(url)
    except ArgumentError as exc:
        raise HistoryUnavailable(
            f"the history database URL {str(url)!r} cannot be read: {exc}",
            hint="use sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB",
            exit_code=2,
        ) from exc


def _prepare_sqlite(engine: Engine) -> None:
    """Turn on WAL and foreign keys per connection, and let SQLAlchemy own BEGIN.

    The sqlite3 module opens transactions lazily and on its own terms, which breaks SAVEPOINT and
    makes reads run outside transactions; with the driver in autocommit mode and BEGIN emitted by
    SQLAlchemy, a session's transaction is exactly one SQLite transaction.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")


def create_history_engine(url: str | URL, **engine_options: Any) -> Engine:
    """An engine for the history database at `url` (creating the SQLite file's directory)."""
    parsed = _parse(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, **engine_options)
        _prepare_sqlite(engine)
        return engine
    engine_options.setdefault("pool_pre_ping", True)
    return create_engine(parsed, **engine_options)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose objects stay readable after commit (views are built after the transaction)."""
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str | URL | None = None) -> Config:
    """An Alembic configuration for `migrations/`, carrying `url` for ``env.py`` to use."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        config.attributes["url"] = str(url) if isinstance(url, str) else url.render_as_string(False)
    return config


def upgrade(target: str | URL | Engine, revision: str = "head") -> None:
    """Migrate the database at `target` (a URL or an engine) to `revision`, by default the newest."""
    _run_migration(target, lambda config: command.upgrade(config, revision))


def downgrade(target: str | URL | Engine, revision: str = "base") -> None:
    """Migrate the database at `target` down to `revision` (``base`` drops every history object)."""
    _run_migration(target, lambda config: command.downgrade(config, revision))


MIGRATION_LOCK_KEY = 0x6B75_6265  # "kube": one PostgreSQL advisory lock for schema upgrades


def _run_migration(target: str | URL | Engine, run: Callable[[Config], None]) -> None:
    engine = target if isinstance(target, Engine) else create_history_engine(target)
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Replicas starting together upgrade one after the other; the later ones find head.
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
            config = alembic_config()
            config.attributes["connection"] = connection
            run(config)
    except OperationalError as exc:
        raise HistoryUnavailable(
            f"could not migrate the history database: {exc.orig}",
            hint="check that the database is reachable and DATABASE_URL (or --db) is right",
        ) from exc
    finally:
        if engine is not target:
            engine.dispose()


def _process_start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (``/proc/PID/stat`` field 22), if it exists."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return ""
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else ""


def process_owner() -> str:
    """This process as an investigation owner: ``hostname:pid:start-ticks``.

    The start time tells a restarted process from its predecessor when the pid comes back (in a
    container the bot is often pid 1 every time).
    """
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_process_start_ticks(pid) or 0}"


def local_owner_is_alive(owner: str) -> bool:
    """Whether the owner ``hostname:pid[:start-ticks]`` may still be running.

    A process on this host must exist with the same start time; an owner on another host is assumed
    alive, because only that host can tell. Where hosts do not come back (a Deployment's pods get new
    names), pass `mark_interrupted` a check that asks the platform whether that pod still exists.
    """
    hostname, _, process = owner.partition(":")
    if hostname != socket.gethostname():
        return True
    pid_text, _, start_ticks = process.partition(":")
    if not pid_text.isdigit():
        return False
    current = _process_start_ticks(int(pid_text))
    if current is None:
        return False
    return not start_ticks or not current or current == start_ticks
