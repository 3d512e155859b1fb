"""SQLite: the full-text table gains a ``facets`` column, so filters narrow a text search inside FTS5.

A text search with a verdict, node or namespace filter used to walk every investigation holding the
words and look each one up to test the filter: thousands of lookups for a common word whose filtered
matches are a handful. The FTS5 table now also indexes, in a column of its own, one token per filter
value: ``v`` + the hex of the verdict code, ``n`` + the hex of the node, ``s`` + the hex of each
namespace involved (source, target and the ``namespaces`` list). A filtered search adds those tokens
to its MATCH, and FTS5 intersects the word and facet lists before any row is read. The tokens are
hex so every value (dots, dashes, any script) is one token that no other value shares; the query
confines the user's words to the four text columns, and bm25 gives the facets column weight 0, so
neither matching nor ranking changes. PostgreSQL is untouched (its planner combines the filter
indexes with the full-text match already).

The table is rebuilt from the rows (the triggers keep it current afterwards, as before).

Revision ID: 0004_sqlite_search_facets
Revises: 0003_name_started_at_indexes
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004_sqlite_search_facets"
down_revision: str | None = "0003_name_started_at_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UPDATED_COLUMNS = (
    "question, source_display, source_namespace, source_name, target_display, target_namespace, "
    "target_name, namespaces, verdict_code, summary"
)
_NAMES = (
    "coalesce({r}.source_display, '') || ' ' || coalesce({r}.source_namespace, '') || ' ' || "
    "coalesce({r}.source_name, '') || ' ' || coalesce({r}.target_display, '') || ' ' || "
    "coalesce({r}.target_namespace, '') || ' ' || coalesce({r}.target_name, '') || ' ' || "
    "coalesce((SELECT group_concat(ns.value, ' ') FROM json_each({r}.namespaces) AS ns), '')"
)
_VERDICT = "coalesce({r}.verdict_code, '') || ' ' || coalesce({r}.summary, '')"
_EVIDENCE = (
    "(SELECT coalesce(group_concat("
    "s.name || ' ' || s.summary || ' ' || coalesce(s.node, '') || ' ' || "
    "coalesce((SELECT group_concat(j.value, ' ') FROM json_tree(s.evidence) AS j WHERE j.type = 'text'), ''),"
    " ' '), '') FROM steps AS s WHERE s.investigation_id = {inv})"
)
FACETS = (
    "coalesce('v' || hex({r}.verdict_code), '') || ' ' || coalesce('n' || hex({r}.node), '') || ' ' || "
    "coalesce('s' || hex({r}.source_namespace), '') || ' ' || coalesce('s' || hex({r}.target_namespace), '') || ' ' || "
    "coalesce((SELECT group_concat('s' || hex(ns.value), ' ') FROM json_each({r}.namespaces) AS ns), '')"
)
"""The facets text of row `{r}` (`bot.history.search.rebuild_search_index` computes the same)."""

_TRIGGERS = (
    "steps_fts_delete",
    "steps_fts_update",
    "steps_fts_insert",
    "investigations_fts_delete",
    "investigations_fts_update",
    "investigations_fts_insert",
)


def upgrade() -> None:
    """Rebuild the SQLite full-text table with the facets column; nothing on PostgreSQL."""
    if op.get_bind().dialect.name == "sqlite":
        _rebuild(with_facets=True)


def downgrade() -> None:
    """Back to the four text columns (SQLite)."""
    if op.get_bind().dialect.name == "sqlite":
        _rebuild(with_facets=False)


def _rebuild(*, with_facets: bool) -> None:
    for trigger in _TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    op.execute("DROP TABLE IF EXISTS investigation_fts")
    extra_column = ", facets" if with_facets else ""
    op.execute(
        "CREATE VIRTUAL TABLE investigation_fts USING fts5("
        f"names, question, verdict, evidence{extra_column}, tokenize = 'unicode61 remove_diacritics 2')"
    )
    new_names, new_verdict = _NAMES.format(r="new"), _VERDICT.format(r="new")
    new_facets = f", {FACETS.format(r='new')}" if with_facets else ""
    set_facets = f", facets = {FACETS.format(r='new')}" if with_facets else ""
    updated = f"{_UPDATED_COLUMNS}, node" if with_facets else _UPDATED_COLUMNS
    op.execute(
        "CREATE TRIGGER investigations_fts_insert AFTER INSERT ON investigations BEGIN "
        f"INSERT INTO investigation_fts (rowid, names, question, verdict, evidence{extra_column}) "
        f"VALUES (new.id, {new_names}, new.question, {new_verdict}, {_EVIDENCE.format(inv='new.id')}{new_facets}); "
        "END"
    )
    op.execute(
        f"CREATE TRIGGER investigations_fts_update AFTER UPDATE OF {updated} ON investigations BEGIN "
        f"UPDATE investigation_fts SET names = {new_names}, question = new.question, verdict = {new_verdict}"
        f"{set_facets} WHERE rowid = new.id; "
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
            f"UPDATE investigation_fts SET evidence = {_EVIDENCE.format(inv=row + '.investigation_id')} "
            f"WHERE rowid = {row}.investigation_id; "
            "END"
        )
    all_facets = f", {FACETS.format(r='i')}" if with_facets else ""
    op.execute(
        f"INSERT INTO investigation_fts (rowid, names, question, verdict, evidence{extra_column}) "
        f"SELECT i.id, {_NAMES.format(r='i')}, i.question, {_VERDICT.format(r='i')}, {_EVIDENCE.format(inv='i.id')}"
        f"{all_facets} FROM investigations AS i"
    )
