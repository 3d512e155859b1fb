"""Database fixtures: every test here runs once on SQLite (a temp file) and once on PostgreSQL.

PostgreSQL tests get a uniquely named database per test module (created from the server at
KUBEREACH_TEST_POSTGRES_URL, default postgresql+psycopg://postgres@127.0.0.1:5432/test) that is
dropped in ``finally`` even when tests fail.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, delete, make_url
from sqlalchemy.orm import Session, sessionmaker

from bot.history.db import create_history_engine, downgrade, session_factory, upgrade
from bot.history.models import Base

POSTGRES_URL = os.environ.get("KUBEREACH_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def _postgres_database(module_name: str) -> Iterator[str]:
    short = re.sub(r"[^a-z0-9]+", "_", module_name.rsplit(".", 1)[-1].lower())[:30]
    name = f"kubereach_{short}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


@pytest.fixture(scope="module", params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of an empty database of this module, on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('history') / 'history.db'}"
        return
    yield from _postgres_database(request.module.__name__)


@pytest.fixture(scope="module")
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on the module's database, migrated to head."""
    history_engine = create_history_engine(database_url)
    try:
        upgrade(history_engine)
        yield history_engine
    finally:
        history_engine.dispose()


@pytest.fixture
def empty_engine(database_url: str) -> Iterator[Engine]:
    """An engine on the module's database, left empty again (downgraded to base) after the test."""
    engine = create_history_engine(database_url)
    try:
        yield engine
    finally:
        downgrade(engine, "base")
        engine.dispose()


def empty_all_tables(engine: Engine) -> None:
    """Delete every row (children first); the search index follows through its triggers."""
    with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(delete(table))


@pytest.fixture
def sessions(engine: Engine) -> Iterator[sessionmaker[Session]]:
    """A session factory on a database that is emptied after the test."""
    try:
        yield session_factory(engine)
    finally:
        empty_all_tables(engine)
