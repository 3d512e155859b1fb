"""The investigation history: investigations, steps, findings, resolutions, digests, audit, search.

The full-text index is made by hand here because the two databases do it differently:
- SQLite: an FTS5 table ``investigation_fts`` (rowid = investigations.id, columns names, question,
  verdict, evidence) kept current by triggers on ``investigations`` and ``steps``.
- PostgreSQL: a table ``investigation_search`` (investigation_id, document tsvector) with a GIN index,
  kept current by triggers that copy the investigation's row of the view ``investigation_search_source``.
Both index the same text: source/target names, namespaces, the question, verdict code and summary,
and each step's name, summary, node and every string inside its evidence JSON.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
INDEXED_INVESTIGATION_COLUMNS = (
    "question, source_display, source_namespace, source_name, target_display, target_namespace, "
    "target_name, namespaces, verdict_code, summary"
)


def upgrade() -> None:
    """Create every history table, then the full-text index of the current database."""
    op.create_table(
        "investigations",
        sa.Column("id", ROW_ID, autoincrement=True, nullable=False),
        sa.Column("public_id", sa.String(length=40), nullable=False),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("asked_by_id", sa.String(length=64), nullable=False),
        sa.Column("asked_by_name", sa.String(length=255), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=True),
        sa.Column("thread_ts", sa.String(length=32), nullable=True),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("cluster", sa.String(length=255), nullable=True),
        sa.Column("source_kind", sa.String(length=64), nullable=True),
        sa.Column("source_namespace", sa.String(length=255), nullable=True),
        sa.Column("source_name", sa.String(length=255), nullable=True),
        sa.Column("source_display", sa.String(length=255), nullable=True),
        sa.Column("target_kind", sa.String(length=64), nullable=True),
        sa.Column("target_namespace", sa.String(length=255), nullable=True),
        sa.Column("target_name", sa.String(length=255), nullable=True),
        sa.Column("target_display", sa.String(length=255), nullable=True),
        sa.Column("namespaces", JSON_DOCUMENT, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("verdict_code", sa.String(length=40), nullable=True),
        sa.Column("node", sa.String(length=255), nullable=True),
        sa.Column("hop", sa.String(length=32), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("remediation", JSON_DOCUMENT, nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_investigations")),
        sa.UniqueConstraint("public_id", name=op.f("uq_investigations_public_id")),
    )
    with op.batch_alter_table("investigations") as batch:
        batch.create_index(batch.f("ix_investigations_started_at"), ["started_at"])
        batch.create_index(batch.f("ix_investigations_verdict_code_started_at"), ["verdict_code", "started_at"])
        batch.create_index(batch.f("ix_investigations_source_name"), ["source_name"])
        batch.create_index(batch.f("ix_investigations_target_name"), ["target_name"])
        batch.create_index(batch.f("ix_investigations_node"), ["node"])
        batch.create_index(batch.f("ix_investigations_channel_thread_ts"), ["channel", "thread_ts"])
        batch.create_index(batch.f("ix_investigations_status_owner"), ["status", "owner"])

    op.create_table(
        "steps",
        sa.Column("id", ROW_ID, autoincrement=True, nullable=False),
        sa.Column("investigation_id", ROW_ID, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("evidence", JSON_DOCUMENT, nullable=False),
        sa.Column("node", sa.String(length=255), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["investigation_id"],
            ["investigations.id"],
            name=op.f("fk_steps_investigation_id_investigations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_steps")),
        sa.UniqueConstraint("investigation_id", "position", name=op.f("uq_steps_investigation_id_position")),
    )

    op.create_table(
        "findings",
        sa.Column("id", ROW_ID, autoincrement=True, nullable=False),
        sa.Column("investigation_id", ROW_ID, nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("node", sa.String(length=255), nullable=True),
        sa.Column("hop", sa.String(length=32), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["investigation_id"],
            ["investigations.id"],
            name=op.f("fk_findings_investigation_id_investigations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_findings")),
    )
    with op.batch_alter_table("findings") as batch:
        batch.create_index(batch.f("ix_findings_investigation_id"), ["investigation_id"])

    op.create_table(
        "resolutions",
        sa.Column("id", ROW_ID, autoincrement=True, nullable=False),
        sa.Column("investigation_id", ROW_ID, nullable=False),
        sa.Column("resolved_by_id", sa.String(length=64), nullable=False),
        sa.Column("resolved_by_name", sa.String(length=255), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["investigation_id"],
            ["investigations.id"],
            name=op.f("fk_resolutions_investigation_id_investigations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resolutions")),
    )
    with op.batch_alter_table("resolutions") as batch:
        batch.create_index(batch.f("ix_resolutions_investigation_id"), ["investigation_id"])

    op.create_table(
        "digest_subscriptions",
        sa.Column("id", ROW_ID, autoincrement=True, nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("cadence", sa.String(length=16), nullable=False),
        sa.Column("time_of_day", sa.String(length=5), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("weekday", sa.Integer(), nullable=True),
        sa.Column("namespaces", JSON_DOCUMENT, nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_by_id", sa.String(length=64), nullable=False),
        sa.Column("created_by_name", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_digest_subscriptions")),
    )
    with op.batch_alter_table("digest_subscriptions") as batch:
        batch.create_index(batch.f("ix_digest_subscriptions_channel"), ["channel"])

    op.create_table(
        "digest_runs",
        sa.Column("id", ROW_ID, autoincrement=True, nullable=False),
        sa.Column("subscription_id", ROW_ID, nullable=False),
        sa.Column("slot_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("content", JSON_DOCUMENT, nullable=True),
        sa.Column("owner", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["digest_subscriptions.id"],
            name=op.f("fk_digest_runs_subscription_id_digest_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_digest_runs")),
        sa.UniqueConstraint("subscription_id", "slot_at", name=op.f("uq_digest_runs_subscription_id_slot_at")),
    )

    op.create_table(
        "audit_log",
        sa.Column("id", ROW_ID, autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("user_name", sa.String(length=255), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("allowed", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("investigation_id", sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log") as batch:
        batch.create_index(batch.f("ix_audit_log_at"), ["at"])

    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        _create_sqlite_search()
    elif dialect == "postgresql":
        _create_postgresql_search()


def downgrade() -> None:
    """Drop the full-text index, then every history table."""
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        _drop_sqlite_search()
    elif dialect == "postgresql":
        _drop_postgresql_search()
    op.drop_table("audit_log")
    op.drop_table("digest_runs")
    op.drop_table("digest_subscriptions")
    op.drop_table("resolutions")
    op.drop_table("findings")
    op.drop_table("steps")
    op.drop_table("investigations")


# --- SQLite: FTS5 -------------------------------------------------------------------------------

_SQLITE_NAMES = (
    "coalesce({r}.source_display, '') || ' ' || coalesce({r}.source_namespace, '') || ' ' || "
    "coalesce({r}.source_name, '') || ' ' || coalesce({r}.target_display, '') || ' ' || "
    "coalesce({r}.target_namespace, '') || ' ' || coalesce({r}.target_name, '') || ' ' || "
    "coalesce((SELECT group_concat(ns.value, ' ') FROM json_each({r}.namespaces) AS ns), '')"
)
_SQLITE_VERDICT = "coalesce({r}.verdict_code, '') || ' ' || coalesce({r}.summary, '')"
_SQLITE_EVIDENCE = (
    "(SELECT coalesce(group_concat("
    "s.name || ' ' || s.summary || ' ' || coalesce(s.node, '') || ' ' || "
    "coalesce((SELECT group_concat(j.value, ' ') FROM json_tree(s.evidence) AS j WHERE j.type = 'text'), ''),"
    " ' '), '') FROM steps AS s WHERE s.investigation_id = {inv})"
)


def _create_sqlite_search() -> None:
    op.execute(
        "CREATE VIRTUAL TABLE investigation_fts USING fts5("
        "names, question, verdict, evidence, tokenize = 'unicode61 remove_diacritics 2')"
    )
    new_names, new_verdict = _SQLITE_NAMES.format(r="new"), _SQLITE_VERDICT.format(r="new")
    op.execute(
        "CREATE TRIGGER investigations_fts_insert AFTER INSERT ON investigations BEGIN "
        "INSERT INTO investigation_fts (rowid, names, question, verdict, evidence) "
        f"VALUES (new.id, {new_names}, new.question, {new_verdict}, {_SQLITE_EVIDENCE.format(inv='new.id')}); "
        "END"
    )
    op.execute(
        f"CREATE TRIGGER investigations_fts_update AFTER UPDATE OF {INDEXED_INVESTIGATION_COLUMNS} "
        "ON investigations BEGIN "
        f"UPDATE investigation_fts SET names = {new_names}, question = new.question, verdict = {new_verdict} "
        "WHERE rowid = new.id; "
        "END"
    )
    op.execute(
        "CREATE TRIGGER investigations_fts_delete AFTER DELETE ON investigations BEGIN "
        "DELETE FROM investigation_fts WHERE rowid = old.id; "
        "END"
    )
    for event, row in (("INSERT", "new"), ("UPDATE", "new"), ("DELETE", "old")):
        op.execute(
            f"CREATE TRIGGER steps_fts_{event.lower()} AFTER {event} ON steps BEGIN "
            f"UPDATE investigation_fts SET evidence = {_SQLITE_EVIDENCE.format(inv=row + '.investigation_id')} "
            f"WHERE rowid = {row}.investigation_id; "
            "END"
        )


def _drop_sqlite_search() -> None:
    for trigger in (
        "steps_fts_delete",
        "steps_fts_update",
        "steps_fts_insert",
        "investigations_fts_delete",
        "investigations_fts_update",
        "investigations_fts_insert",
    ):
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    op.execute("DROP TABLE IF EXISTS investigation_fts")


# --- PostgreSQL: tsvector + GIN -------------------------------------------------------------------


def _create_postgresql_search() -> None:
    op.execute(
        "CREATE TABLE investigation_search ("
        " investigation_id BIGINT NOT NULL,"
        " document tsvector NOT NULL,"
        " CONSTRAINT pk_investigation_search PRIMARY KEY (investigation_id),"
        " CONSTRAINT fk_investigation_search_investigation_id_investigations FOREIGN KEY (investigation_id)"
        "  REFERENCES investigations (id) ON DELETE CASCADE)"
    )
    op.execute(
        "CREATE INDEX ix_investigation_search_document ON investigation_search USING gin (document)"
    )
    # Words are the runs of letters and digits, as SQLite's unicode61 tokenizer sees them: without this,
    # PostgreSQL's parser keeps "web.shop.svc" or "shop/web" whole and a search for "web" misses them.
    op.execute(
        """
        CREATE FUNCTION investigation_search_words(raw TEXT) RETURNS TEXT
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
          SELECT regexp_replace(coalesce(raw, ''), '[^[:alnum:]]+', ' ', 'g')
        $$
        """
    )
    # One set-based definition of every document: the triggers read one row of it, a rebuild all rows.
    op.execute(
        """
        CREATE VIEW investigation_search_source AS
          SELECT
            i.id AS investigation_id,
            setweight(to_tsvector('simple', investigation_search_words(concat_ws(' ',
                i.source_display, i.source_namespace, i.source_name,
                i.target_display, i.target_namespace, i.target_name,
                (SELECT string_agg(ns, ' ') FROM jsonb_array_elements_text(i.namespaces) AS ns)))), 'A')
            || setweight(to_tsvector('simple', investigation_search_words(i.question)), 'B')
            || setweight(to_tsvector('simple', investigation_search_words(concat_ws(' ', i.verdict_code, i.summary))), 'C')
            || setweight(to_tsvector('simple', investigation_search_words(evidence.words)), 'D') AS document
          FROM investigations AS i
          LEFT JOIN LATERAL (
            SELECT string_agg(concat_ws(' ', s.name, s.summary, s.node,
                     (SELECT string_agg(x #>> '{}', ' ')
                        FROM jsonb_path_query(s.evidence, 'strict $.**') AS x
                       WHERE jsonb_typeof(x) = 'string')), ' ' ORDER BY s.position) AS words
              FROM steps AS s WHERE s.investigation_id = i.id
          ) AS evidence ON true
        """
    )
    op.execute(
        """
        CREATE FUNCTION investigation_search_refresh(target BIGINT) RETURNS void
        LANGUAGE plpgsql AS $$
        BEGIN
          INSERT INTO investigation_search (investigation_id, document)
          SELECT investigation_id, document FROM investigation_search_source WHERE investigation_id = target
          ON CONFLICT (investigation_id) DO UPDATE SET document = EXCLUDED.document;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION investigations_search_trigger() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
          PERFORM investigation_search_refresh(NEW.id);
          RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION steps_search_trigger() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
          IF TG_OP = 'DELETE' THEN
            PERFORM investigation_search_refresh(OLD.investigation_id);
          ELSE
            PERFORM investigation_search_refresh(NEW.investigation_id);
            IF TG_OP = 'UPDATE' AND OLD.investigation_id <> NEW.investigation_id THEN
              PERFORM investigation_search_refresh(OLD.investigation_id);
            END IF;
          END IF;
          RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        f"CREATE TRIGGER investigations_search_refresh AFTER INSERT OR UPDATE OF {INDEXED_INVESTIGATION_COLUMNS} "
        "ON investigations FOR EACH ROW EXECUTE FUNCTION investigations_search_trigger()"
    )
    op.execute(
        "CREATE TRIGGER steps_search_refresh AFTER INSERT OR UPDATE OR DELETE "
        "ON steps FOR EACH ROW EXECUTE FUNCTION steps_search_trigger()"
    )


def _drop_postgresql_search() -> None:
    op.execute("DROP TRIGGER IF EXISTS steps_search_refresh ON steps")
    op.execute("DROP TRIGGER IF EXISTS investigations_search_refresh ON investigations")
    op.execute("DROP FUNCTION IF EXISTS steps_search_trigger()")
    op.execute("DROP FUNCTION IF EXISTS investigations_search_trigger()")
    op.execute("DROP FUNCTION IF EXISTS investigation_search_refresh(BIGINT)")
    op.execute("DROP VIEW IF EXISTS investigation_search_source")
    op.execute("DROP TABLE IF EXISTS investigation_search")
    op.execute("DROP FUNCTION IF EXISTS investigation_search_words(TEXT)")
