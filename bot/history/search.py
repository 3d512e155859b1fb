"""Full-text search over past investigations, on SQLite (FTS5) and PostgreSQL (tsvector + GIN).

The index is created by the first migration and kept current by the database itself (triggers on
``investigations`` and ``steps``), so writers never touch it. It holds, by weight: source and target
names and namespaces; the question; the verdict code and summary; each step's name, summary, node and
every string in its evidence. Text is matched word by word: all words must appear, and a word such as
``web-7d9`` or ``10.244.1.5`` matches as the phrase of its letter/digit runs, the same on both
databases. Results are ranked by bm25 on SQLite and ts_rank on PostgreSQL, best first, newest first
among equals. Without text, the filters list the newest investigations first.

Ranking is bounded (measured in ``bench/bench_history.py``): ranking every match of a common word at a
million investigations reads and scores a fifth of the history per query (0.3–3 s on PostgreSQL). A text
search instead ranks the newest `RANK_CANDIDATES` matches that pass the filters (recording order),
first among the newest `RANK_WINDOW` investigations and, when those hold fewer than the results asked
for, over the whole history. SQLite's FTS5 finds them by walking its posting lists newest first. On
PostgreSQL each statement chooses (`choose_plan`, from the lexemes' shares in ``pg_stats``) between
walking the newest rows and the GIN posting list of the query's rarest lexeme; the verdict, node and
namespace filters are facet lexemes in the documents on both databases (migrations 0004, 0005).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    bindparam,
    cast,
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
    union,
    union_all,
)
from sqlalchemy.dialects.postgresql import JSONB, TSQUERY
from sqlalchemy.orm import Session

from bot.history.models import Investigation
from bot.playbook.models import VerdictCode

SQLITE_FTS_TABLE = "investigation_fts"
POSTGRES_SEARCH_TABLE = "investigation_search"
SEARCH_CONFIG = "simple"
"""PostgreSQL text search configuration: no stemming, no stop words, like SQLite's unicode61."""

SQLITE_TEXT_COLUMNS = ("names", "question", "verdict", "evidence")
SQLITE_COLUMN_WEIGHTS = (10.0, 4.0, 2.0, 1.0, 0.0)
"""bm25 weights of the FTS5 columns names, question, verdict, evidence (ts_rank's A, B, C, D) and facets."""


class Plan(StrEnum):
    """How a text search finds its candidates on PostgreSQL (see `choose_plan`)."""

    WALK = "walk"
    """Newest first along the primary key, testing each document, until enough matches."""
    BITMAP = "bitmap"
    """Every document holding the rarest lexeme, from the GIN index (within the window), then the newest matches."""


INDEX_ENTRY_COST = 0.3
"""Cost of decoding one index entry (GIN posting list, B-tree bitmap), in rows walked (measured at
1,000,000 investigations: ~0.7 µs per GIN entry against ~2-3 µs per document tested along the
primary key)."""
MAX_LIMIT = 1000
RANK_WINDOW = 20_000
"""A text search first ranks the matches among this many most recently recorded investigations."""
RANK_CANDIDATES = 200
"""A text search ranks at most this many matches: the most recently recorded ones that pass the filters."""
_WORD = re.compile(r"[^\W_]")
_NOT_A_WORD = re.compile(r"[\W_]+")
_PLAIN_LEXEME = re.compile(r"[a-z0-9]+|[vns]:[0-9a-f]+")
"""ASCII letters and digits, or a facet: the lexemes whose tsquery is known without asking PostgreSQL's parser."""


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
    rank_window: int = RANK_WINDOW,
    rank_candidates: int = RANK_CANDIDATES,
    plan: Plan | None = None,
) -> list[SearchHit]:
    """Investigations matching `query_text` and `filters`, best match first (newest first without text).

    `plan` forces how PostgreSQL finds the candidates (tests compare both); by default each search
    chooses from PostgreSQL's own estimate of how many documents match (`choose_plan`). SQLite's FTS5
    walks its posting lists newest first whatever the words, so it has no choice to make.
    """
    filters = filters or SearchFilters()
    limit = max(1, min(limit, MAX_LIMIT))
    words = search_words(query_text)
    dialect = session.get_bind().dialect.name
    if not words:
        return [_hit(row) for row in session.execute(_newest(filters, dialect, limit)).all()]
    if dialect not in ("sqlite", "postgresql"):
        raise NotImplementedError(f"full-text search is not built for {dialect}")
    rank_candidates = max(limit, rank_candidates)
    if dialect == "postgresql":
        return [_hit(row) for row in _search_postgres(session, words, filters, limit, rank_window, rank_candidates, plan)]
    newest = session.execute(select(func.max(Investigation.id))).scalar_one_or_none() or 0
    rows: Sequence[Row[Any]] = ()
    if newest > rank_window:
        rows = session.execute(_sqlite_ranked(words, filters, limit, rank_candidates, newest - rank_window)).all()
    if len(rows) < limit:
        rows = session.execute(_sqlite_ranked(words, filters, limit, rank_candidates, None)).all()
    return [_hit(row) for row in rows]


def _search_postgres(
    session: Session,
    words: list[str],
    filters: SearchFilters,
    limit: int,
    rank_window: int,
    rank_candidates: int,
    plan: Plan | None,
) -> Sequence[Row[Any]]:
    """The window's best, or the whole history's when the window holds fewer than `limit` matches.

    Each of the two statements gets its own plan (`choose_plan`), from the lexemes' frequencies.
    """
    terms = _postgres_terms(words, filters)
    newest, frequencies = _newest_and_frequencies(session, [lexeme for term in terms for lexeme in term])
    density, rarest = _density_and_rarest(terms, frequencies)
    rarest_share = frequencies.get(rarest, 1.0) if rarest is not None else 1.0
    indexed = 1.0
    for facet in _facet_lexemes(replace(filters, namespace=None)):
        indexed *= frequencies.get(facet, 1.0)
    whole = max(newest, 1)
    whole_plan = plan or choose_plan(density, rarest_share, indexed, whole, whole, rank_candidates)
    history = _postgres_ranked(words, filters, limit, rank_candidates, None, whole_plan, rarest)
    if newest <= rank_window:
        return session.execute(history).all()
    window_plan = plan or choose_plan(density, rarest_share, indexed, newest, rank_window, rank_candidates)
    window = _postgres_ranked(words, filters, limit, rank_candidates, newest - rank_window, window_plan, rarest)
    return session.execute(_window_or_history(window, history, limit)).all()


def _window_or_history(window: Select[Any], history: Select[Any], limit: int) -> Select[Any]:
    """The window's answer when it holds `limit` results, else the whole history's: one statement.

    PostgreSQL reads the history's branch only when its one-time condition holds (a CTE is computed
    on its first read), so a common word still costs only the window, and a rare one saves a round
    trip.
    """
    in_window = window.cte("in_window")
    in_history = history.cte("in_history")
    enough = select(func.count()).select_from(in_window).scalar_subquery() >= limit
    answer = union_all(
        select(in_window).where(enough),
        select(in_history).where(~enough),
    ).subquery("answer")
    return select(answer).order_by(answer.c.rank.desc(), answer.c.started_at.desc(), answer.c.row_id.desc())


def choose_plan(density: float, rarest: float, indexed: float, rows: int, scope: int, candidates: int) -> Plan:
    """Walk the newest rows, or take the GIN bitmap of the rarest lexeme, whichever costs less.

    `density` is the estimated share of the `rows` investigations that match, `rarest` the share
    holding the query's rarest lexeme, `indexed` the share passing the node and verdict filters
    (1.0 without them), `scope` how many of the newest rows the search may rank from (the window, or
    the whole history). The walk reads rows newest first until it has `candidates` matches: about
    ``candidates / density`` rows, `scope` at most, and no more than the scope's rows of that node
    and verdict, which PostgreSQL walks newest first along their (node, verdict_code, id) index. The
    bitmap decodes the rarest lexeme's whole posting list (`INDEX_ENTRY_COST` per entry) and reads
    its entries inside the scope. A common word is found by the walk within a few hundred rows, a
    rare word by the bitmap within a few hundred entries.
    """
    walk = float(scope) if density <= 0 else min(float(scope), candidates / density)
    walk = min(walk, indexed * scope)
    bitmap = INDEX_ENTRY_COST * rarest * rows + rarest * scope
    return Plan.BITMAP if bitmap < walk else Plan.WALK


def _density_and_rarest(terms: list[list[str]], frequencies: dict[str, float]) -> tuple[float, str | None]:
    """The estimated share of documents matching every term, and the rarest lexeme (None without statistics).

    Every lexeme, of a word's phrase or a facet, is taken as independent of the others, as
    PostgreSQL's planner does (a phrase of parts that always come together is then underestimated,
    which only makes the walk look longer than it is).
    """
    if not frequencies:
        return 1.0, None
    density = 1.0
    for term in terms:
        for lexeme in term:
            density *= frequencies[lexeme]
    # Only a lexeme PostgreSQL is sure to parse into itself may stand for the query in the index.
    plain = [lexeme for term in terms for lexeme in term if _PLAIN_LEXEME.fullmatch(lexeme)]
    return density, min(plain, key=frequencies.__getitem__) if plain else None


def _newest(filters: SearchFilters, dialect: str, limit: int) -> Select[Any]:
    """The newest `limit` investigations that pass `filters`, newest first.

    A name filter reads the newest rows of each side from its (name, started_at) index and merges the
    two short lists, instead of collecting every row of a common name or scanning for a rare one.
    """
    newest_first = (Investigation.started_at.desc(), Investigation.id.desc())
    where: list[ColumnElement[bool]]
    if filters.name is None:
        where = _filter_conditions(filters, dialect)
    else:
        others = _filter_conditions(replace(filters, name=None), dialect)
        sides = [
            select(Investigation.id.label("row_id")).where(side == filters.name, *others).order_by(*newest_first).limit(limit)
            for side in (Investigation.source_name, Investigation.target_name)
        ]
        named = union(*(select(side.subquery().c.row_id) for side in sides)).subquery("named")
        where = [Investigation.id.in_(select(named.c.row_id))]
    return select(*_hit_columns(), literal_column("0.0").label("rank")).where(*where).order_by(*newest_first).limit(limit)


def _sqlite_ranked(words: list[str], filters: SearchFilters, limit: int, candidates: int, floor: int | None) -> Select[Any]:
    """The best `limit` of the newest `candidates` matches (above row id `floor` when given), best first.

    FTS5 walks its posting lists newest first (rowid descending), intersecting the words with the
    filters' facet tokens, so a common word stops after `candidates` matches; only those are ranked.
    """
    fts = table(SQLITE_FTS_TABLE, column("rowid"))
    score = -func.bm25(literal_column(SQLITE_FTS_TABLE), *SQLITE_COLUMN_WEIGHTS)
    matched = (
        select(Investigation.id.label("row_id"), score.label("rank"))
        .select_from(fts)
        .join(Investigation, Investigation.id == fts.c.rowid)
        .where(
            literal_column(SQLITE_FTS_TABLE).op("MATCH")(bindparam("fts_query", _fts5_query(words, filters))),
            *_filter_conditions(filters, "sqlite"),
        )
        .order_by(fts.c.rowid.desc())
    )
    if floor is not None:
        matched = matched.where(fts.c.rowid > floor)
    bounded = matched.limit(candidates).subquery("candidates")
    return (
        select(*_hit_columns(), bounded.c.rank.label("rank"))
        .select_from(bounded)
        .join(Investigation, Investigation.id == bounded.c.row_id)
        .order_by(bounded.c.rank.desc(), Investigation.started_at.desc(), Investigation.id.desc())
        .limit(limit)
    )


def _postgres_ranked(
    words: list[str],
    filters: SearchFilters,
    limit: int,
    candidates: int,
    floor: int | None,
    plan: Plan,
    rarest: str | None,
) -> Select[Any]:
    """The best `limit` of the newest `candidates` matches (above row id `floor` when given), best first.

    The walk finds the candidates newest first (recording order), so a common word stops after
    `candidates` matches instead of reading all of them; the bitmap takes every document holding the
    rarest lexeme inside the primary key's range above `floor`, tests the full match on those, and
    keeps the newest `candidates`. Either way only the candidates are ranked.
    """
    conditions = _filter_conditions(filters, "postgresql")
    if floor is not None:
        conditions.append(Investigation.id > floor)
    documents = _postgres_documents(words, filters, floor, plan, rarest, conditions)
    bounded = select(documents.c.investigation_id.label("row_id")).order_by(documents.c.investigation_id.desc()).limit(candidates)
    candidate_ids = bounded.subquery("candidates")
    # Ranked outside the bounded subquery, so only the candidates' documents are read again and pay
    # for ts_rank (the sort above carries ids, not documents); by the words alone, so facets never
    # change a rank.
    search_table = table(POSTGRES_SEARCH_TABLE, column("investigation_id"), column("document"))
    rank = func.ts_rank(search_table.c.document, _postgres_tsquery(words))
    return (
        select(*_hit_columns(), rank.label("rank"), Investigation.id.label("row_id"))
        .select_from(candidate_ids)
        .join(search_table, search_table.c.investigation_id == candidate_ids.c.row_id)
        .join(Investigation, Investigation.id == candidate_ids.c.row_id)
        .order_by(rank.desc(), Investigation.started_at.desc(), Investigation.id.desc())
        .limit(limit)
    )


def _postgres_documents(
    words: list[str],
    filters: SearchFilters,
    floor: int | None,
    plan: Plan,
    rarest: str | None,
    conditions: list[ColumnElement[bool]],
) -> Any:
    """The search rows matching the words, facets and filter `conditions` (above `floor`), as the plan reads them.

    The full match is written as ``ts_match_vq`` (the function behind ``@@``), which no index
    serves: the walk reads the search table backwards along its primary key, or the investigations
    backwards along their (node, verdict_code, id) index, testing each document. The bitmap is a
    materialized CTE whose one indexable condition is the rarest lexeme: GIN decodes that lexeme's
    posting list only (an AND over common lexemes decodes all of theirs, ~0.1-0.2 s each at a
    million documents), intersected with the primary key's range above `floor`; the full match and
    the filters are tested on those rows alone (inside the CTE, so no join walks the investigations).
    """
    search_table = table(POSTGRES_SEARCH_TABLE, column("investigation_id"), column("document"))
    match = func.ts_match_vq(search_table.c.document, _postgres_match(words, filters))
    found = (
        select(search_table.c.investigation_id)
        .join(Investigation, Investigation.id == search_table.c.investigation_id)
        .where(match, *conditions)
    )
    if floor is not None:
        found = found.where(search_table.c.investigation_id > floor)
    if plan is Plan.WALK:
        return found.subquery("found")
    indexed = _postgres_match(words, filters) if rarest is None else _postgres_lexeme(rarest)
    name = "found" if floor is None else "found_in_window"
    return found.where(search_table.c.document.op("@@")(indexed)).cte(name).prefix_with("MATERIALIZED")


def _postgres_lexeme(lexeme: str) -> ColumnElement[Any]:
    """One lexeme as a tsquery: a facet as it is (hex after a colon), a word's part through PostgreSQL's own parser.

    The parser lower-cases as the database does; Python's lower-casing only serves the estimate.
    """
    if ":" in lexeme:
        return cast(bindparam("rarest", f"'{lexeme}'"), TSQUERY)
    return func.phraseto_tsquery(literal_column(f"'{SEARCH_CONFIG}'::regconfig"), bindparam("rarest", lexeme))


def _postgres_terms(words: list[str], filters: SearchFilters) -> list[list[str]]:
    """The lexemes of each word (its lower-cased letter/digit runs) and each facet, as the index holds them."""
    return [_NOT_A_WORD.sub(" ", word).lower().split() for word in words] + [[facet] for facet in _facet_lexemes(filters)]


def _newest_and_frequencies(session: Session, lexemes: list[str]) -> tuple[int, dict[str, float]]:
    """The newest row id, and the share of documents holding each lexeme (one round trip).

    The shares come from the statistics ANALYZE keeps on the document column: a lexeme among the
    most common ones has its measured share; any other is rarer than all of them (half the least
    common one's share, as PostgreSQL's planner assumes). No shares when the column has no
    statistics yet (a new or never analyzed history): the walk is then chosen, bounded as always.
    """
    row = session.execute(_FREQUENCIES, {"lexemes": lexemes}).one()
    newest = int(row.newest or 0)
    if row.least is None:
        return newest, {}
    common = dict(zip(row.elems or [], row.freqs or [], strict=True))
    return newest, {lexeme: float(common.get(lexeme, row.least / 2)) for lexeme in lexemes}


_FREQUENCIES = text(
    "SELECT (SELECT max(id) FROM investigations) AS newest, stats.elems, stats.freqs, stats.least "
    "FROM (SELECT 1) AS one LEFT JOIN ("
    "SELECT m.elems, m.freqs, s.most_common_elem_freqs[array_length(s.most_common_elems, 1) + 1] AS least "
    "FROM pg_stats AS s CROSS JOIN LATERAL (SELECT array_agg(e.elem) AS elems, array_agg(e.freq) AS freqs "
    "FROM unnest(s.most_common_elems::text::text[], s.most_common_elem_freqs) AS e(elem, freq) "
    "WHERE e.elem = ANY(CAST(:lexemes AS text[]))) AS m "
    "WHERE s.schemaname = current_schema() AND s.tablename = 'investigation_search' AND s.attname = 'document' "
    "AND NOT s.inherited"
    ") AS stats ON true"
)
"""Per lexeme asked: its share among the column's most common elements (with their least share after them)."""


def _hit(row: Any) -> SearchHit:
    return SearchHit(
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


def _postgres_match(words: list[str], filters: SearchFilters) -> ColumnElement[Any]:
    """The words' tsquery, and the verdict, node and namespace filters' facet lexemes (migration 0005)."""
    query = _postgres_tsquery(words)
    facets = _facet_lexemes(filters)
    if facets:
        query = query.op("&&")(cast(bindparam("facets", " & ".join(f"'{facet}'" for facet in facets)), TSQUERY))
    return query


def _facet_lexemes(filters: SearchFilters) -> list[str]:
    """``v:``, ``n:``, ``s:`` + the hex of the verdict, node and namespace filters (only hex: safe to quote)."""
    return [
        f"{prefix}:{value.encode().hex()}"
        for prefix, value in (
            ("v", filters.verdict_code.value if filters.verdict_code is not None else None),
            ("n", filters.node),
            ("s", filters.namespace),
        )
        if value
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


def _fts5_query(words: list[str], filters: SearchFilters) -> str:
    """Each word as a quoted FTS5 phrase in the text columns, all required; quotes inside a word are doubled.

    The verdict, node and namespace filters add their facet tokens (migration 0004), so FTS5 narrows
    to the filtered rows itself; the SQL conditions still decide.
    """
    phrases = " ".join('"' + word.replace('"', '""') + '"' for word in words)
    query = f"{{{' '.join(SQLITE_TEXT_COLUMNS)}}} : ({phrases})"
    for prefix, value in (
        ("v", filters.verdict_code.value if filters.verdict_code is not None else None),
        ("n", filters.node),
        ("s", filters.namespace),
    ):
        if value:
            query += f" AND facets : {prefix}{value.encode().hex()}"
    return query


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
        # The same text the triggers of migrations 0001 and 0004 index, computed for every row at once.
        session.execute(text("DELETE FROM investigation_fts"))
        session.execute(
            text(
                "INSERT INTO investigation_fts (rowid, names, question, verdict, evidence, facets) "
                "SELECT i.id, "
                "coalesce(i.source_display, '') || ' ' || coalesce(i.source_namespace, '') || ' ' || "
                "coalesce(i.source_name, '') || ' ' || coalesce(i.target_display, '') || ' ' || "
                "coalesce(i.target_namespace, '') || ' ' || coalesce(i.target_name, '') || ' ' || "
                "coalesce((SELECT group_concat(ns.value, ' ') FROM json_each(i.namespaces) AS ns), ''), "
                "i.question, coalesce(i.verdict_code, '') || ' ' || coalesce(i.summary, ''), "
                "(SELECT coalesce(group_concat(s.name || ' ' || s.summary || ' ' || coalesce(s.node, '') "
                "|| ' ' || coalesce((SELECT group_concat(j.value, ' ') FROM json_tree(s.evidence) AS j "
                "WHERE j.type = 'text'), ''), ' '), '') FROM steps AS s WHERE s.investigation_id = i.id), "
                "coalesce('v' || hex(i.verdict_code), '') || ' ' || coalesce('n' || hex(i.node), '') || ' ' || "
                "coalesce('s' || hex(i.source_namespace), '') || ' ' || coalesce('s' || hex(i.target_namespace), '') "
                "|| ' ' || coalesce((SELECT group_concat('s' || hex(ns.value), ' ') FROM json_each(i.namespaces) AS ns), '') "
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
