"""The migrations build exactly the modelled schema, plus the search index, and can be undone."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, Engine, MetaData, String, inspect, text

from bot.history.db import create_history_engine, downgrade, upgrade
from bot.history.models import Base
from bot.history.search import include_in_autogenerate


@pytest.fixture
def empty_engine(database_url: str) -> Iterator[Engine]:
    """An engine on the module's database, left empty again (downgraded to base) after the test."""
    engine = create_history_engine(database_url)
    try:
        yield engine
    finally:
        downgrade(engine, "base")
        engine.dispose()


def _schema_differences(engine: Engine, metadata: MetaData) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "include_object": include_in_autogenerate})
        return list(compare_metadata(context, metadata))


def _search_objects(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            rows = connection.execute(
                text("SELECT name FROM sqlite_master WHERE name LIKE 'investigation_fts%' OR name LIKE '%_fts_%'")
            )
        else:
            rows = connection.execute(
                text(
                    "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal "
                    "UNION SELECT proname FROM pg_proc WHERE proname LIKE '%search%' "
                    "AND pronamespace = 'public'::regnamespace "
                    "UNION SELECT relname FROM pg_class WHERE relname LIKE 'investigation_search%'"
                )
            )
        return {row[0] for row in rows}


def test_migrations_at_head_match_the_models(empty_engine: Engine) -> None:
    upgrade(empty_engine)
    assert _schema_differences(empty_engine, Base.metadata) == []


def test_the_drift_check_notices_a_column_the_migrations_lack(empty_engine: Engine) -> None:
    upgrade(empty_engine)
    drifted = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.sorted_tables:
        table.to_metadata(drifted)
    drifted.tables["investigations"].append_column(Column("priority", String(8), nullable=True))
    differences = _schema_differences(empty_engine, drifted)
    assert [(d[0], d[3].name) for d in differences if isinstance(d, tuple)] == [("add_column", "priority")]


def test_upgrade_downgrade_upgrade_round_trip(empty_engine: Engine) -> None:
    upgrade(empty_engine)
    assert _search_objects(empty_engine), "the first revision creates the full-text index"
    tables = set(inspect(empty_engine).get_table_names())
    assert {"investigations", "steps", "findings", "resolutions", "digest_runs", "audit_log"} <= tables

    downgrade(empty_engine, "base")
    assert set(inspect(empty_engine).get_table_names()) <= {"alembic_version"}
    assert _search_objects(empty_engine) == set()

    upgrade(empty_engine)
    assert _schema_differences(empty_engine, Base.metadata) == []
    assert _search_objects(empty_engine)
