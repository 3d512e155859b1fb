"""Alembic environment for the kubereach history (SQLite and PostgreSQL).

The database comes from the caller, in this order: an open connection or URL that
`bot.history.db.upgrade` puts in ``config.attributes``; ``alembic -x url=...``; ``DATABASE_URL``; the
default SQLite file. SQLite migrations run in batch mode (ALTER TABLE is limited there). The
hand-made full-text objects are left out of autogenerate comparisons.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy.engine import Connection

from bot.history.db import create_history_engine, resolve_database_url
from bot.history.models import Base
from bot.history.search import include_in_autogenerate

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    explicit = config.attributes.get("url") or context.get_x_argument(as_dictionary=True).get("url")
    return resolve_database_url(explicit, os.environ)


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=include_in_autogenerate,
    )


def run_migrations_offline() -> None:
    """Emit the SQL as a script instead of running it (``alembic upgrade head --sql``)."""
    url = _url()
    context.configure(
        url=url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
        include_object=include_in_autogenerate,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations on the caller's connection, or on a fresh engine for the URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_history_engine(_url())
    try:
        with engine.connect() as fresh:
            _configure(fresh)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
