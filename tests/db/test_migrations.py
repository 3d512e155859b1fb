"""The migrations build exactly the modelled schema, plus the search index, and can be undone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, Engine, MetaData, String, inspect, text

from bot.history import service
from bot.history.db import downgrade, session_factory, upgrade
from bot.history.enums import Origin
from bot.history.models import Base
from bot.history.search import Plan, SearchFilters, include_in_autogenerate, search_investigations
from bot.history.service import Person, WorkloadRef
from bot.playbook.models import Hop, Verdict, VerdictCode


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


def test_the_index_revisions_upgrade_a_populated_database(empty_engine: Engine) -> None:
    upgrade(empty_engine, "0002_slack_seen_requests")
    sessions = session_factory(empty_engine)
    at = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    with sessions.begin() as session:
        ids = [
            service.start_investigation(
                session,
                question=f"why can't {source} reach {target}?",
                asked_by=Person("U01ANA", "ana"),
                origin=Origin.CLI,
                owner="bot-0:1",
                source=WorkloadRef("deployment", "shop", source, f"deployment shop/{source}"),
                target=WorkloadRef("service", "shop", target, f"service shop/{target}"),
                started_at=at + timedelta(minutes=minute),
            )
            for minute, (source, target) in enumerate([("web", "api"), ("api", "redis"), ("batch", "web"), ("web", "web")])
        ]

    upgrade(empty_engine)
    with empty_engine.connect() as connection:
        indexes = {index["name"] for index in inspect(connection).get_indexes("investigations")}
    assert {"ix_investigations_source_name_started_at", "ix_investigations_target_name_started_at"} <= indexes
    assert "ix_investigations_source_name" not in indexes
    with sessions() as session:
        assert [hit.id for hit in search_investigations(session, filters=SearchFilters(name="web"))] == [ids[3], ids[2], ids[0]]
        assert [hit.id for hit in search_investigations(session, "redis")] == [ids[1]]
        # Filtered text search (on SQLite through the facets the upgrade indexed for the existing rows).
        shop_web = search_investigations(session, "web", SearchFilters(namespace="shop"))
        assert {hit.id for hit in shop_web} == {ids[0], ids[2], ids[3]}
        assert search_investigations(session, "web", SearchFilters(namespace="payments")) == []

    downgrade(empty_engine, "0002_slack_seen_requests")
    with sessions() as session:
        assert [hit.id for hit in search_investigations(session, filters=SearchFilters(name="api"))] == [ids[1], ids[0]]
        assert [hit.id for hit in search_investigations(session, "redis")] == [ids[1]]


def _stale_documents(engine: Engine) -> int:
    """PostgreSQL: search documents that differ from what their view computes now (0 when the index is current)."""
    with engine.connect() as connection:
        return int(
            connection.execute(
                text(
                    "SELECT count(*) FROM investigation_search AS s JOIN investigation_search_source AS v "
                    "USING (investigation_id) WHERE s.document <> v.document"
                )
            ).scalar_one()
        )


def test_the_facets_revision_upgrades_a_populated_database(empty_engine: Engine) -> None:
    upgrade(empty_engine, "0004_sqlite_search_facets")
    sessions = session_factory(empty_engine)
    at = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    with sessions.begin() as session:
        ids = []
        for minute, (namespace, node, code) in enumerate(
            [
                ("shop", "node-1", VerdictCode.MTU_MISMATCH),
                ("cache", "node-2", VerdictCode.MTU_MISMATCH),
                ("shop", "node-2", None),
            ]
        ):
            inv = service.start_investigation(
                session,
                question="why can't web reach api?",
                asked_by=Person("U01ANA", "ana"),
                origin=Origin.CLI,
                owner="bot-0:1",
                source=WorkloadRef("deployment", namespace, "web", f"deployment {namespace}/web"),
                target=WorkloadRef("service", namespace, "api", f"service {namespace}/api"),
                started_at=at + timedelta(minutes=minute),
            )
            if code is not None:
                service.finish_investigation(session, inv, Verdict(code, "mtu", node, Hop.UNDERLAY), duration_ms=1.0)
            ids.append(inv)

    upgrade(empty_engine)
    with empty_engine.connect() as connection:
        indexes = {index["name"] for index in inspect(connection).get_indexes("investigations")}
    assert "ix_investigations_node_verdict_code_id" in indexes and "ix_investigations_node" not in indexes
    if empty_engine.dialect.name == "postgresql":
        assert _stale_documents(empty_engine) == 0  # existing documents got exactly the facets the view now adds
    with sessions() as session:
        for plan in [None, *Plan] if empty_engine.dialect.name == "postgresql" else [None]:
            by_node = search_investigations(session, "web", SearchFilters(node="node-2"), plan=plan)
            assert [hit.id for hit in by_node] == [ids[1]]
            both = SearchFilters(node="node-1", verdict_code=VerdictCode.MTU_MISMATCH, namespace="shop")
            assert [hit.id for hit in search_investigations(session, "api", both, plan=plan)] == [ids[0]]
            assert search_investigations(session, "api", SearchFilters(node="node-1", namespace="cache"), plan=plan) == []

    downgrade(empty_engine, "0004_sqlite_search_facets")
    if empty_engine.dialect.name == "postgresql":
        assert _stale_documents(empty_engine) == 0  # the facets are stripped again, the words untouched
    with empty_engine.connect() as connection:
        indexes = {index["name"] for index in inspect(connection).get_indexes("investigations")}
    assert "ix_investigations_node" in indexes and "ix_investigations_node_verdict_code_id" not in indexes
