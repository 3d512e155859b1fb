"""Where the history lives and how to open it: URL, engine, sessions and schema upgrades.

SQLite by default (a file under the user's data directory, WAL mode, foreign keys on); PostgreSQL when
``DATABASE_URL`` or ``--db`` says so, through psycopg 3. `upgrade` runs the Alembic migrations to
head; the bot calls it on start so the schema is always current before the first write.

Alembic is imported only to migrate (or to compare with the revision scripts when the database is not
at `HEAD_REVISION`): `kubereach ask` opens the history once per process, and importing Alembic with
its revision scripts cost a tenth of that process's start while an up-to-date database needs none of it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, make_url
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, InterfaceError, NoSuchModuleError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bot.history.errors import HistoryUnavailable

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
"""The Alembic environment (``migrations/`` at the repository root)."""

HEAD_REVISION = "0005_postgres_search_facets"
"""The newest revision in ``migrations/versions``: a database stamped with it needs no upgrade.

Written down here, at build time, so that opening an up-to-date history reads one row instead of
importing Alembic and every revision script. A new migration updates it (a unit test compares it with
the scripts' head); a database stamped with anything else is checked by Alembic itself."""
VERSION_TABLE = "alembic_version"
"""Where Alembic stamps the database's revision (its default, which ``migrations/env.py`` keeps)."""

SQLITE_BUSY_TIMEOUT_MS = 10_000
"""How long SQLite itself waits for another writer's lock before answering SQLITE_BUSY."""
WRITE_BEGIN = "BEGIN IMMEDIATE"
"""How a transaction starts on SQLite (unless a read-only session asks for a deferred BEGIN): taking
the write lock up front, so a transaction that read first never has to upgrade its lock — which in
WAL mode fails at once, without waiting, when another process committed in between (the cause of
lost records under concurrency). Writers then queue on the busy timeout instead."""


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
    except (ArgumentError, ValueError) as exc:
        raise HistoryUnavailable(
            f"the history database URL {safe_url(url)!r} cannot be read",
            hint="use sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB",
            exit_code=2,
        ) from exc


def safe_url(url: str | URL) -> str:
    """The URL without its password, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        text = str(url)
        scheme, sep, rest = text.partition("://")
        return f"{scheme}{sep}…" if sep and "@" in rest else text[:80]


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
            # The busy timeout first: switching to WAL needs a lock another process may hold.
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            # No memory-mapped I/O of the database file: a file that shrinks or turns unwritable under
            # a mapping answers SIGBUS (a crash), where read()/write() answer an error we can handle.
            cursor.execute("PRAGMA mmap_size=0")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql(connection.get_execution_options().get("sqlite_begin", WRITE_BEGIN))


def create_history_engine(url: str | URL, **engine_options: Any) -> Engine:
    """An engine for the history database at `url` (creating the SQLite file's directory).

    A URL that cannot be read, a database kind without its driver installed, or a directory that
    cannot be made raise `HistoryUnavailable` with one line saying which and what to do.
    """
    parsed = _parse(url)
    try:
        if parsed.get_backend_name() == "sqlite":
            database = parsed.database
            if database and database != ":memory:" and not database.startswith("file:"):
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(parsed, **engine_options)
            _prepare_sqlite(engine)
            return engine
        engine_options.setdefault("pool_pre_ping", True)
        return create_engine(parsed, **engine_options)
    except (NoSuchModuleError, ImportError) as exc:
        raise HistoryUnavailable(
            f"no database driver for {parsed.drivername!r} is installed ({first_line(exc)})",
            hint="for PostgreSQL install kubereach[postgres] (psycopg 3); or use sqlite:///PATH",
            exit_code=2,
        ) from exc
    except ArgumentError as exc:
        raise HistoryUnavailable(
            f"the history database URL {safe_url(parsed)!r} cannot be used: {first_line(exc)}",
            hint="use sqlite:///PATH or postgresql+psycopg://USER@HOST:PORT/DB",
            exit_code=2,
        ) from exc
    except OSError as exc:
        raise HistoryUnavailable(
            f"cannot create the history directory for {parsed.database}: {exc.strerror}",
            hint="set KUBEREACH_DATABASE_URL to a writable place",
        ) from exc


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose objects stay readable after commit (views are built after the transaction)."""
    return sessionmaker(engine, expire_on_commit=False)


def read_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that only read: on SQLite they begin deferred, so they never wait for a writer."""
    return sessionmaker(engine.execution_options(sqlite_begin="BEGIN"), expire_on_commit=False)


def alembic_config(url: str | URL | None = None) -> Config:
    """An Alembic configuration for `migrations/`, carrying `url` for ``env.py`` to use."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        config.attributes["url"] = str(url) if isinstance(url, str) else url.render_as_string(False)
    return config


def upgrade(target: str | URL | Engine, revision: str = "head") -> None:
    """Migrate the database at `target` (a URL or an engine) to `revision`, by default the newest."""
    from alembic import command

    _run_migration(target, lambda config: command.upgrade(config, revision))


def downgrade(target: str | URL | Engine, revision: str = "base") -> None:
    """Migrate the database at `target` down to `revision` (``base`` drops every history object)."""
    from alembic import command

    _run_migration(target, lambda config: command.downgrade(config, revision))


def schema_is_current(engine: Engine) -> bool:
    """Whether the database is already at the newest revision (read without taking a write lock).

    The stamped revision is read with plain SQL; only a database not stamped `HEAD_REVISION` (new,
    older, or migrated by a newer kubereach) is compared with the revision scripts through Alembic.
    """
    try:
        with engine.execution_options(sqlite_begin="BEGIN").connect() as connection:
            current = stamped_revisions(connection)
    except (OperationalError, InterfaceError) as exc:
        raise HistoryUnavailable(
            f"could not read the history database's schema version: {first_line(exc.orig)}",
            hint="check that the database is reachable and DATABASE_URL (or --db) is right",
        ) from exc
    if current == {HEAD_REVISION}:
        return True
    from alembic.script import ScriptDirectory

    return current == set(ScriptDirectory.from_config(alembic_config()).get_heads())


def stamped_revisions(connection: Connection) -> set[str]:
    """The revisions Alembic stamped in the database (none for a database it never migrated)."""
    if not inspect(connection).has_table(VERSION_TABLE):
        return set()
    rows = connection.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}")  # noqa: S608 - a constant name
    return {row[0] for row in rows}


MIGRATION_LOCK_KEY = 0x6B75_6265  # "kube": one PostgreSQL advisory lock for schema upgrades


def _run_migration(target: str | URL | Engine, run: Callable[[Config], None]) -> None:
    engine = target if isinstance(target, Engine) else create_history_engine(target)
    try:
        # Processes starting together migrate one after the other (the write lock on SQLite, an
        # advisory lock on PostgreSQL); the later ones find the schema at head.
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Replicas starting together upgrade one after the other; the later ones find head.
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
            config = alembic_config()
            config.attributes["connection"] = connection
            run(config)
    except (OperationalError, InterfaceError) as exc:
        raise HistoryUnavailable(
            f"could not migrate the history database: {first_line(exc.orig)}",
            hint="check that the database is reachable and DATABASE_URL (or --db) is right",
        ) from exc
    finally:
        if engine is not target:
            engine.dispose()


def first_line(error: BaseException | None) -> str:
    """The first line of a driver's error text (PostgreSQL adds context lines; SQL is never included)."""
    text = str(error) if error is not None else "unknown error"
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


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


HostCheck = Callable[[str], "bool | None"]
"""host name → whether that host (in a cluster: the bot pod of that name) still exists; None: cannot tell."""


def owner_is_alive(owner: str, host_exists: HostCheck | None = None) -> bool:
    """Whether the owner ``hostname:pid[:start-ticks]`` may still be running.

    On this host: its process must exist with the same start time (`local_owner_is_alive`). On
    another host: `host_exists` is asked — in a cluster, whether a bot pod of that name still exists
    (a Deployment's pods do not come back under the same name) — and an owner it cannot tell about
    is assumed alive.
    """
    hostname = owner.partition(":")[0]
    if hostname == socket.gethostname() or host_exists is None:
        return local_owner_is_alive(owner)
    answer = host_exists(hostname)
    return True if answer is None else answer


@contextmanager
def history_errors(doing: str | None = None, *, hint: str | None = None, message: str | None = None) -> Iterator[None]:
    """Turn an SQL error raised inside into `HistoryUnavailable`, the error callers of the history catch.

    Code outside `bot.history` that opens a session on the history wraps its work in this, so that
    SQLAlchemy's errors are mapped here, where they enter, and nowhere else.
    """
    try:
        yield
    except SQLAlchemyError as exc:
        said = message or ("the history database failed" + (f" while {doing}" if doing else ""))
        raise HistoryUnavailable(
            f"{said}: {getattr(exc, 'orig', None) or exc}",
            hint=hint or "check that the database is reachable (DATABASE_URL)",
        ) from exc
