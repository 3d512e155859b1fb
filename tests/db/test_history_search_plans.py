"""Both ways of finding a text search's candidates give the full ranked search's answer, shape by shape.

A seeded corpus of 240 investigations whose words, names, namespaces, verdicts and nodes are known
here, recorded in an order unrelated to their start times (the worst case for the newest-first walk).
For every query shape of ``bench/bench_history.py``: the hits are exactly the investigations that
hold the words and pass the filters (computed here from the corpus, not by the database), ranked
best first and newest first among equals; the walk and the bitmap (PostgreSQL) agree with each other
and with the chosen plan; and under tight bounds (a small window, few candidates) the answer is the
one the bounds define, modelled here from the full search's ranks.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from bot.history import service
from bot.history.db import session_factory
from bot.history.enums import Origin
from bot.history.models import Investigation
from bot.history.search import MAX_LIMIT, Plan, SearchFilters, SearchHit, _newest_and_frequencies, search_investigations
from bot.history.service import Person, WorkloadRef
from bot.playbook.models import Evidence, Hop, StepResult, StepStatus, Verdict, VerdictCode
from tests.db.conftest import empty_all_tables

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
NAMESPACES = ("shop", "cache", "edge", "batch")
NAMES = ("web", "api", "redis", "checkout-shop", "worker")
VERDICTS = (VerdictCode.SERVICE_NO_ENDPOINTS, VerdictCode.DNS_RESOLUTION_FAILED, VerdictCode.MTU_MISMATCH)
NODES = ("node-1", "node-2", "node-3")
WORDS = ("ENETUNREACH", "NXDOMAIN", "vxlan.calico", "flannel.1")
RARE = "KUBE-SVC-7F3A9C2E1B4D5A60"


@dataclass(frozen=True)
class Record:
    """What the corpus holds about one investigation: enough to say which searches must find it."""

    id: str
    words: frozenset[str]
    namespaces: frozenset[str]
    verdict: VerdictCode | None
    node: str | None
    started_at: datetime


def _record(session: Session, rng: random.Random) -> Record:
    (source_ns, source), (target_ns, target) = [(rng.choice(NAMESPACES), rng.choice(NAMES)) for _ in range(2)]
    extra = ("mesh",) if rng.random() < 0.1 else ()
    started = NOW - timedelta(minutes=rng.randrange(60 * 24 * 60))
    inv = service.start_investigation(
        session,
        question=f"why can't {source} reach {target}?",
        asked_by=Person("U01ANA", "ana"),
        origin=Origin.SLACK,
        owner="bot-0:1",
        source=WorkloadRef("deployment", source_ns, source, f"deployment {source_ns}/{source}"),
        target=WorkloadRef("service", target_ns, target, f"service {target_ns}/{target}"),
        namespaces=extra,
        started_at=started,
    )
    evidence_words = set(rng.sample(WORDS, rng.randrange(3)))
    if rng.random() < 0.04:
        evidence_words.add(RARE)
    for position, word in enumerate(sorted(evidence_words), start=1):
        step = StepResult("probe", StepStatus.FAIL, "probe failed", (Evidence("tcp-probe", f"saw {word}", None, {"w": word}),))
        service.record_step(session, inv, step, position)
    verdict = rng.choice((*VERDICTS, None))
    node = rng.choice(NODES) if verdict is not None else None
    if verdict is not None:
        service.finish_investigation(session, inv, Verdict(verdict, "found it", node, Hop.SERVICE_NAT), duration_ms=5.0)
    return Record(
        inv, frozenset({source, target} | evidence_words), frozenset({source_ns, target_ns, *extra}), verdict, node, started
    )


@dataclass(frozen=True)
class Corpus:
    records: dict[str, Record]
    row_ids: dict[str, int]
    """Recording order (the primary key) of each public id."""


@pytest.fixture(scope="module")
def corpus(engine: Engine) -> Iterator[Corpus]:
    rng = random.Random(16)
    sessions = session_factory(engine)
    try:
        with sessions.begin() as session:
            records = [_record(session, rng) for _ in range(240)]
        if engine.dialect.name == "postgresql":
            # Statistics, so the plans run as in production: the bitmap then indexes the rarest lexeme only.
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.exec_driver_sql("ANALYZE investigation_search")
        with sessions() as session:
            row_ids = {
                public_id: row_id for public_id, row_id in session.execute(select(Investigation.public_id, Investigation.id))
            }
        yield Corpus({record.id: record for record in records}, row_ids)
    finally:
        empty_all_tables(engine)


@pytest.fixture
def session(engine: Engine, corpus: Corpus) -> Iterator[Session]:
    with session_factory(engine)() as opened:
        yield opened


SINCE = NOW - timedelta(days=30)
SHAPES: dict[str, tuple[str, SearchFilters]] = {
    "name (text)": ("web", SearchFilters()),
    "name with a dash (phrase)": ("checkout-shop", SearchFilters()),
    "free text (evidence word)": ("NXDOMAIN", SearchFilters()),
    "free text (2 words)": ("vxlan.calico api", SearchFilters()),
    "text + namespace + 30d": ("ENETUNREACH", SearchFilters(namespace="cache", since=SINCE)),
    "text + extra namespace": ("flannel.1", SearchFilters(namespace="mesh")),
    "text + verdict + node": ("redis", SearchFilters(verdict_code=VerdictCode.DNS_RESOLUTION_FAILED, node="node-2")),
    "free text (rare: one KUBE-SVC chain)": (RARE, SearchFilters()),
}


def _expected(corpus: Corpus, query_text: str, filters: SearchFilters) -> set[str]:
    """The investigations holding every word and passing every filter, from the corpus alone."""
    return {
        record.id
        for record in corpus.records.values()
        if all(word in record.words for word in query_text.split())
        and (filters.namespace is None or filters.namespace in record.namespaces)
        and (filters.verdict_code is None or record.verdict is filters.verdict_code)
        and (filters.node is None or record.node == filters.node)
        and (filters.since is None or record.started_at >= filters.since)
    }


def test_the_plans_are_chosen_from_the_statistics_of_the_documents(session: Session, corpus: Corpus) -> None:
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("SQLite's FTS5 has a single plan")
    newest, frequencies = _newest_and_frequencies(
        session, ["web", "nxdomain", "kube", "7f3a9c2e1b4d5a60", "n:" + b"node-2".hex()]
    )
    assert newest == max(corpus.row_ids.values())
    assert 0.2 < frequencies["web"] < 0.6  # a source or target of about a third of the corpus
    assert frequencies["7f3a9c2e1b4d5a60"] < frequencies["nxdomain"] < frequencies["web"]
    assert frequencies["n:" + b"node-2".hex()] > 0


def _plans(session: Session) -> list[Plan | None]:
    return [None, *Plan] if session.get_bind().dialect.name == "postgresql" else [None]


def _search(session: Session, shape: str, plan: Plan | None, **bounds: int) -> list[SearchHit]:
    query_text, filters = SHAPES[shape]
    return search_investigations(session, query_text, filters, plan=plan, **bounds)  # type: ignore[arg-type]


@pytest.mark.parametrize("shape", SHAPES)
def test_every_plan_finds_exactly_the_matching_investigations_best_first_then_newest(
    session: Session, corpus: Corpus, shape: str
) -> None:
    query_text, filters = SHAPES[shape]
    expected = _expected(corpus, query_text, filters)
    assert expected, f"the corpus holds no match for {shape}: the test would prove nothing"
    answers = {plan: _search(session, shape, plan, limit=MAX_LIMIT) for plan in _plans(session)}
    for plan, hits in answers.items():
        assert {hit.id for hit in hits} == expected, plan
        order = [(hit.rank, hit.started_at) for hit in hits]
        assert order == sorted(order, reverse=True), plan
    assert len({tuple(hit.id for hit in hits) for hits in answers.values()}) == 1


@pytest.mark.parametrize("shape", SHAPES)
def test_tight_bounds_rank_the_newest_candidates_of_the_window_or_of_the_history(
    session: Session, corpus: Corpus, shape: str
) -> None:
    ranks = {hit.id: hit.rank for hit in _search(session, shape, None, limit=MAX_LIMIT)}
    newest = max(corpus.row_ids.values())
    for window, candidates, limit in ((60, 8, 3), (60, 3, 3), (240, 5, 2), (20, 40, 5)):
        matches = sorted(ranks, key=corpus.row_ids.__getitem__, reverse=True)
        in_window = [hit for hit in matches if corpus.row_ids[hit] > newest - window]
        pool = (in_window if len(in_window) >= limit else matches)[: max(candidates, limit)]
        model = sorted(pool, key=lambda hit: (ranks[hit], corpus.records[hit].started_at, corpus.row_ids[hit]), reverse=True)
        for plan in _plans(session):
            found = [hit.id for hit in _search(session, shape, plan, limit=limit, rank_window=window, rank_candidates=candidates)]
            assert found == model[:limit], (plan, window, candidates, limit)


@pytest.mark.parametrize("namespace", [*NAMESPACES, "mesh"])
def test_a_namespace_scoped_search_never_returns_another_namespace(session: Session, corpus: Corpus, namespace: str) -> None:
    for plan in _plans(session):
        for query_text in ("web", "NXDOMAIN", "api ENETUNREACH"):
            hits = search_investigations(session, query_text, SearchFilters(namespace=namespace), plan=plan, limit=MAX_LIMIT)
            assert all(namespace in corpus.records[hit.id].namespaces for hit in hits)
            assert {hit.id for hit in hits} == _expected(corpus, query_text, SearchFilters(namespace=namespace))
