"""Search filters inside the indexes: facet lexemes in PostgreSQL's documents, a (node, verdict, id) index.

A text search with a verdict, node or namespace filter read every investigation holding the words and
joined each one to ``investigations`` to test the filter (on a million investigations, ~20,000 rows
per query for a common word with a namespace). Each document now also holds one lexeme per filter
value, as SQLite's ``facets`` column does since 0004: ``v:`` + the hex of the verdict code, ``n:`` +
the hex of the node, ``s:`` + the hex of each namespace involved (source, target and the
``namespaces`` list). A filtered search adds them to its tsquery, so the GIN index intersects words
and filters before a row is read, and the newest-first walk rejects a row from its own document. The
lexemes are made with ``array_to_tsvector`` (no parser), hold a colon, and a user's word never does
(words are the letter/digit runs of what was typed), so matching is unchanged; ranking uses the words
only, so ranks are unchanged too.

The node filter's index becomes (node, verdict_code, id) on both databases: a search filtered by node
and verdict reads exactly its investigations, newest first, where PostgreSQL intersected the node
index with the whole verdict index (~100,000 entries for a common verdict, 60 ms).

The view every document comes from gains the facets (the triggers and `rebuild_search_index` read it),
the investigations trigger also fires when ``node`` changes, and existing documents get their facets
appended in place (their words are not recomputed). Measured on 1,000,000 investigations in
``bench/README.md``. SQLite is untouched.

Revision ID: 0005_postgres_search_facets
Revises: 0004_sqlite_search_facets
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005_postgres_search_facets"
down_revision: str | None = "0004_sqlite_search_facets"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXED_COLUMNS = (
    "question, source_display, source_namespace, source_name, target_display, target_namespace, "
    "target_name, namespaces, verdict_code, summary"
)
_WORDS_VIEW = """
    CREATE VIEW investigation_search_source AS
      SELECT
        i.id AS investigation_id,
        setweight(to_tsvector('simple', investigation_search_words(concat_ws(' ',
            i.source_display, i.source_namespace, i.source_name,
            i.target_display, i.target_namespace, i.target_name,
            (SELECT string_agg(ns, ' ') FROM jsonb_array_elements_text(i.namespaces) AS ns)))), 'A')
        || setweight(to_tsvector('simple', investigation_search_words(i.question)), 'B')
        || setweight(to_tsvector('simple', investigation_search_words(concat_ws(' ', i.verdict_code, i.summary))), 'C')
        || setweight(to_tsvector('simple', investigation_search_words(evidence.words)), 'D'){facets} AS document
      FROM investigations AS i
      LEFT JOIN LATERAL (
        SELECT string_agg(concat_ws(' ', s.name, s.summary, s.node,
                 (SELECT string_agg(x #>> '{{}}', ' ')
                    FROM jsonb_path_query(s.evidence, 'strict $.**') AS x
                   WHERE jsonb_typeof(x) = 'string')), ' ' ORDER BY s.position) AS words
          FROM steps AS s WHERE s.investigation_id = i.id
      ) AS evidence ON true
"""
_FACETS_OF = "investigation_search_facets({r}.verdict_code, {r}.node, {r}.source_namespace, {r}.target_namespace, {r}.namespaces)"


def upgrade() -> None:
    """The node and verdict index; on PostgreSQL the facets function, view, trigger and existing documents."""
    with op.batch_alter_table("investigations") as batch:
        batch.create_index(batch.f("ix_investigations_node_verdict_code_id"), ["node", "verdict_code", "id"])
        batch.drop_index(batch.f("ix_investigations_node"))
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE FUNCTION investigation_search_facets(
          verdict_code TEXT, node TEXT, source_namespace TEXT, target_namespace TEXT, namespaces JSONB
        ) RETURNS tsvector
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
          SELECT array_to_tsvector(array_remove(ARRAY[
              'v:' || encode(convert_to(verdict_code, 'UTF8'), 'hex'),
              'n:' || encode(convert_to(node, 'UTF8'), 'hex'),
              's:' || encode(convert_to(source_namespace, 'UTF8'), 'hex'),
              's:' || encode(convert_to(target_namespace, 'UTF8'), 'hex')]
            || coalesce((SELECT array_agg(DISTINCT 's:' || encode(convert_to(ns, 'UTF8'), 'hex'))
                           FROM jsonb_array_elements_text(namespaces) AS ns), ARRAY[]::text[]), NULL))
        $$
        """
    )
    # A search reads a few hundred rows: starting parallel workers costs more than it saves (10-20 ms
    # on a busy machine for a rare word's bitmap of 800 rows).
    op.execute("ALTER TABLE investigation_search SET (parallel_workers = 0)")
    op.execute("DROP VIEW investigation_search_source")
    op.execute(_WORDS_VIEW.format(facets=f"\n        || {_FACETS_OF.format(r='i')}"))
    _investigations_trigger(f"{_INDEXED_COLUMNS}, node")
    op.execute(
        f"UPDATE investigation_search AS s SET document = s.document || {_FACETS_OF.format(r='i')} "
        "FROM investigations AS i WHERE i.id = s.investigation_id"
    )


def downgrade() -> None:
    """Back to the node index; on PostgreSQL strip the facet lexemes, restore the view and trigger of 0001."""
    with op.batch_alter_table("investigations") as batch:
        batch.create_index(batch.f("ix_investigations_node"), ["node"])
        batch.drop_index(batch.f("ix_investigations_node_verdict_code_id"))
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        f"UPDATE investigation_search AS s SET document = ts_delete(s.document, tsvector_to_array({_FACETS_OF.format(r='i')})) "
        "FROM investigations AS i WHERE i.id = s.investigation_id"
    )
    op.execute("ALTER TABLE investigation_search RESET (parallel_workers)")
    _investigations_trigger(_INDEXED_COLUMNS)
    op.execute("DROP VIEW investigation_search_source")
    op.execute(_WORDS_VIEW.format(facets=""))
    op.execute("DROP FUNCTION investigation_search_facets(TEXT, TEXT, TEXT, TEXT, JSONB)")


def _investigations_trigger(columns: str) -> None:
    op.execute("DROP TRIGGER investigations_search_refresh ON investigations")
    op.execute(
        f"CREATE TRIGGER investigations_search_refresh AFTER INSERT OR UPDATE OF {columns} "
        "ON investigations FOR EACH ROW EXECUTE FUNCTION investigations_search_trigger()"
    )
