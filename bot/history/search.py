"""Full-text search over past investigations, on SQLite (FTS5) and PostgreSQL (tsvector + GIN).

The index is created by the first migration and kept current by the database itself (triggers on
``investigations`` and ``steps``), so writers never touch it. It holds, by weight: source and target
names and namespaces; the question; the verdict code and summary; each step's name, summary, node and
every string in its evidence. Text is matched word by word: all words must appear, and a word such as
``web-7d9`` or ``10.244.1.5`` matches as the phrase of its letter/digit runs, the same on both
databases. Results are ranked by bm25 on SQLite and ts_rank on PostgreSQL, best first. Without text,
the filters list the newest investigations first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    bindparam,
    column,
    exists,
    func,
    literal,
    literal_column,
    or_,
    select,
    table,
    text,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from bot.history.models import Investigation
from bot.playbook.models import VerdictCode

SQLITE_FTS_TABLE = "investigation_fts"
POSTGRES_SEARCH_TABLE = "investigation_search"
SEARCH_CONFIG = "simple"
"""PostgreSQL text search configuration: no stemming, no stop words, like SQLite's unicode61."""

SQLITE_COLUMN_WEIGHTS = (10.0, 4.0, 2.0, 1.0)
"""bm25 weights of the FTS5 columns names, question, verdict, evidence (ts_rank's A, B, C, D)."""

MAX_LIMIT = 1000
_WORD = re.compile(r"[^\W_]")
_NOT_A_WORD = re.compile(r"[\W_]+")


@dataclass(frozen=True)
class SearchFilters:
    """Narrow a search. Every field is optional; the ones given must all hold."""

    namespace: str | None = None
    """The source or target namespace, or one of the namespaces involved."""
    name: str | None = None
    """The source or target workload/service name."""
    node: str | None = None
    """The node the verdict names."""
    verdict_code: VerdictCode | None = None
    channel: str | None = None
    asked_by: str | None = None
    """User id or display name of who asked."""
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class SearchHit:
    """One investigation found by a search, with what it takes to link to its Slack thread."""

    id: str
    question: str
    verdict_code: VerdictCode | None
    node: str | None
    summary: str | None
    started_at: datetime
    asked_by_id: str
    asked_by_name: str
    channel: str | None
    thread_ts: str | None
    source: str | None
    target: str | None
    status: str
    rank: float
    """Relevance, higher is better; 0.0 for a listing without text."""

    def as_json(self) -> dict[str, Any]:
        """The hit as JSON-compatible data (the CLI's ``--json`` shape)."""
        return {
            "id": self.id,
            "question": self.question,
            "verdict_code": self.verdict_code.value if self.verdict_code else None,
            "node": self.node,
            "summary": self.summary,
            "started_at": self.started_at.isoformat(),
            "asked_by": {"id": self.asked_by_id, "name": self.asked_by_name},
            "channel": self.channel,
            "thread_ts": self.thread_ts,
            "source": self.source,
            "target": self.target,
            "status": self.status,
            "rank": self.rank,
        }


def search_words(query_text: str) -> list[str]:
    """The words of a query: whitespace-separated terms that contain a letter or digit.

    Inside a word, letters and digits count and the rest separates (``web-7d9`` is the phrase
    ``web 7d9``), on both databases.
    """
    return [word for word in query_text.split() if _WORD.search(word)]


def search_investigations(
    session: Session,
    query_text: str = "",
    filters: SearchFilters | None = None,
    *,
    limit: int = 20,
) -> list[SearchHit]:
    """Investigations matching `query_text` and `filters`, best match first (newest first without text)."""
    filters = filters or SearchFilters()
    limit = max(1, min(limit, MAX_LIMIT))
    words = search_words(query_text)
    dialect = session.get_bind().dialect.name
    conditions = _filter_conditions(filters, dialect)
    columns = _hit_columns()

    statement: Select[Any]
    if not words:
        statement = (
            select(*columns, literal_column("0.0").label("rank"))
            .where(*conditions)
            .order_by(Investigation.started_at.desc(), Investigation.id.desc())
        )
    elif dialect == "sqlite":
        fts = table(SQLITE_FTS_TABLE, column("rowid"))
        score = func.bm25(literal_column(SQLITE_FTS_TABLE), *SQLITE_COLUMN_WEIGHTS)
        statement = (
            select(*columns, (-score).label("rank"))
            .select_from(fts)
            .join(Investigation, Investigation.id == fts.c.rowid)
            .where(
                literal_column(SQLITE_FTS_TABLE).op("MATCH")(bindparam("fts_query", _fts5_query(words))),
                *conditions,
            )
            .order_by(score, Investigation.started_at.desc())
        )
    elif dialect == "postgresql":
        search_table = table(POSTGRES_SEARCH_TABLE, column("investigation_id"), column("document"))
        tsquery = _postgres_tsquery(words)
        score = func.ts_rank(search_table.c.document, tsquery)
        statement = (
            select(*columns, score.label("rank"))
            .select_from(search_table)
            .join(Investigation, Investigation.id == search_table.c.investigation_id)
            .where(search_table.c.document.op("@@")(tsquery), *conditions)
            .order_by(score.desc(), Investigation.started_at.desc())
        )
    else:
        raise NotImplementedError(f"full-text search is not built for {dialect}")

    rows = session.execute(statement.limit(limit)).all()
    return [
        SearchHit(
            id=row.public_id,
            question=row.question,
            verdict_code=row.verdict_code,
            node=row.node,
            summary=row.summary,
            started_at=row.started_at,
            asked_by_id=row.asked_by_id,
            asked_by_name=row.asked_by_name,
            channel=row.channel,
            thread_ts=row.thread_ts,
            source=row.source_display,
            target=row.target_display,
            status=str(row.status),
            rank=float(row.rank),
        )
        for row in rows
    ]


def _hit_columns() -> list[Any]:
    return [
        Investigation.public_id,
        Investigation.question,
        Investigation.verdict_code,
        Investigation.node,
        Investigation.summary,
        Investigation.started_at,
        Investigation.asked_by_id,
        Investigation.asked_by_name,
        Investigation.channel,
        Investigation.thread_ts,
        Investigation.source_display,
        Investigation.target_display,
        Investigation.status,
    ]


def _postgres_tsquery(words: list[str]) -> ColumnElement[Any]:
    """Each word as a phrase of its letter/digit runs (as FTS5 reads a quoted word), all required."""
    config: ColumnElement[Any] = literal_column(f"'{SEARCH_CONFIG}'::regconfig")
    phrases = [
        func.phraseto_tsquery(config, bindparam(f"word_{index}", _NOT_A_WORD.sub(" ", word).strip()))
        for index, word in enumerate(words)
    ]
    query: ColumnElement[Any] = phrases[0]
    for phrase in phrases[1:]:
        query = query.op("&&")(phrase)
    return query


def _fts5_query(words: list[str]) -> str:
    """Each word as a quoted FTS5 phrase, all required; quotes inside a word are doubled."""
    return " ".join('"' + word.replace('"', '""') + '"' for word in words)


def _filter_conditions(filters: SearchFilters, dialect: str) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if filters.namespace is not None:
        conditions.append(
            or_(
                Investigation.source_namespace == filters.namespace,
                Investigation.target_namespace == filters.namespace,
                _namespaces_contain(filters.namespace, dialect),
            )
        )
    if filters.name is not None:
        conditions.append(or_(Investigation.source_name == filters.name, Investigation.target_name == filters.name))
    if filters.node is not None:
        conditions.append(Investigation.node == filters.node)
    if filters.verdict_code is not None:
        conditions.append(Investigation.verdict_code == filters.verdict_code)
    if filters.channel is not None:
        conditions.append(Investigation.channel == filters.channel)
    if filters.asked_by is not None:
        conditions.append(or_(Investigation.asked_by_id == filters.asked_by, Investigation.asked_by_name == filters.asked_by))
    if filters.since is not None:
        conditions.append(Investigation.started_at >= filters.since)
    if filters.until is not None:
        conditions.append(Investigation.started_at < filters.until)
    return conditions


def _namespaces_contain(namespace: str, dialect: str) -> ColumnElement[bool]:
    if dialect == "postgresql":
        contains: ColumnElement[bool] = type_coerce(Investigation.namespaces, JSONB).contains([namespace])
        return contains
    involved = func.json_each(Investigation.namespaces).table_valued("value")
    return exists(select(literal(1)).select_from(involved).where(involved.c.value == namespace))


def rebuild_search_index(session: Session) -> int:
    """Recompute the whole full-text index from the tables; returns how many investigations it holds.

    Only needed after loading rows with the index triggers disabled (bulk imports, benchmarks); the
    triggers keep it current otherwise.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        # The same text the triggers of migration 0001 index, computed for every row at once.
        session.execute(text("DELETE FROM investigation_fts"))
        session.execute(
            text(
                "INSERT INTO investigation_fts (rowid, names, question, verdict, evidence) "
                "SELECT i.id, "
                "coalesce(i.source_display, '') || ' ' || coalesce(i.source_namespace, '') || ' ' || "
                "coalesce(i.source_name, '') || ' ' || coalesce(i.target_display, '') || ' ' || "
                "coalesce(i.target_namespace, '') || ' ' || coalesce(i.target_name, '') || ' ' || "
                "coalesce((SELECT group_concat(ns.value, ' ') FROM json_each(i.namespaces) AS ns), ''), "
                "i.question, coalesce(i.verdict_code, '') || ' ' || coalesce(i.summary, ''), "
                "(SELECT coalesce(group_concat(s.name || ' ' || s.summary || ' ' || coalesce(s.node, '') "
                "|| ' ' || coalesce((SELECT group_concat(j.value, ' ') FROM json_tree(s.evidence) AS j "
                "WHERE j.type = 'text'), ''), ' '), '') FROM steps AS s WHERE s.investigation_id = i.id) "
                "FROM investigations AS i"
            )
        )
    elif dialect == "postgresql":
        session.execute(text("TRUNCATE investigation_search"))
        session.execute(
            text(
                "INSERT INTO investigation_search (investigation_id, document) "
                "SELECT investigation_id, document FROM investigation_search_source"
            )
        )
    else:
        raise NotImplementedError(f"full-text search is not built for {dialect}")
    count = session.execute(select(func.count()).select_from(Investigation)).scalar_one()
    return int(count)


def include_in_autogenerate(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Alembic filter: leave the hand-made full-text objects out of schema comparisons."""
    if type_ == "table" and name is not None:
        return not (name.startswith(SQLITE_FTS_TABLE) or name == POSTGRES_SEARCH_TABLE)
    return True
