"""Ranking at the edges of the search's bounds: the newest window of investigations and the candidate count.

Five investigations mention "zebra": the oldest names it (the best match), the four later ones only carry
it in evidence (equal, weaker matches). Recording order is also time order here, except that the newest
weak one is recorded with an earlier start, to show that equals are ordered by time, not by row.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from bot.history import service
from bot.history.db import session_factory
from bot.history.enums import Origin
from bot.history.search import RANK_CANDIDATES, RANK_WINDOW, search_investigations
from bot.history.service import Person, WorkloadRef
from bot.playbook.models import Evidence, StepResult, StepStatus
from tests.db.conftest import empty_all_tables

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Zebras:
    best: str  # recorded first: "zebra" is its target's name
    weak: list[str]  # recorded after, in this order: "zebra" only in evidence


def _record(session: Session, target: str, at: datetime, evidence_word: str) -> str:
    inv = service.start_investigation(
        session,
        question=f"why can't web reach {target}?",
        asked_by=Person("U01ANA", "ana"),
        origin=Origin.CLI,
        owner="bot-0:1",
        source=WorkloadRef("deployment", "shop", "web", "deployment shop/web"),
        target=WorkloadRef("service", "shop", target, f"service shop/{target}"),
        started_at=at,
    )
    step = StepResult("probe", StepStatus.FAIL, "probe failed", (Evidence("tcp-probe", f"peer {evidence_word}", None, {}),))
    service.record_step(session, inv, step, 1)
    return inv


@pytest.fixture(scope="module")
def zebras(engine: Engine) -> Iterator[Zebras]:
    try:
        with session_factory(engine).begin() as session:
            best = _record(session, "zebra", NOW - timedelta(days=9), "unrelated")
            starts = [NOW - timedelta(days=4), NOW - timedelta(days=3), NOW - timedelta(days=2), NOW - timedelta(days=5)]
            weak = [_record(session, f"api{n}", at, "zebra") for n, at in enumerate(starts)]
        yield Zebras(best, weak)
    finally:
        empty_all_tables(engine)


@pytest.fixture
def session(engine: Engine, zebras: Zebras) -> Iterator[Session]:
    with session_factory(engine)() as opened:
        yield opened


def _ids(session: Session, limit: int, **bounds: int) -> list[str]:
    return [hit.id for hit in search_investigations(session, "zebra", limit=limit, **bounds)]  # type: ignore[arg-type]


def test_within_the_bounds_the_best_match_comes_first_then_equals_newest_first(session: Session, zebras: Zebras) -> None:
    assert RANK_WINDOW >= 5 and RANK_CANDIDATES >= 5
    w0, w1, w2, w3 = zebras.weak
    assert _ids(session, 5) == [zebras.best, w2, w1, w0, w3]


def test_a_window_holding_enough_matches_ranks_only_the_newest_investigations(session: Session, zebras: Zebras) -> None:
    _, w1, w2, _ = zebras.weak
    # The newest 4 recorded investigations hold 4 matches, enough for 2 results: the older best match is out.
    assert _ids(session, 2, rank_window=4) == [w2, w1]
    # One more investigation in the window brings the best match back in.
    assert _ids(session, 2, rank_window=5) == [zebras.best, w2]


def test_a_window_with_too_few_matches_ranks_the_whole_history(session: Session, zebras: Zebras) -> None:
    # The newest 4 investigations hold 4 matches, fewer than the 5 asked for: the whole history is ranked.
    assert _ids(session, 5, rank_window=4)[0] == zebras.best
    assert _ids(session, 2, rank_window=1)[0] == zebras.best


def test_only_the_newest_candidates_are_ranked(session: Session, zebras: Zebras) -> None:
    w0, w1, w2, w3 = zebras.weak
    # The newest 3 matches by recording order are w1, w2, w3; among equals, the newest start first.
    assert _ids(session, 2, rank_candidates=3) == [w2, w1]
    assert _ids(session, 3, rank_candidates=3) == [w2, w1, w3]
    assert _ids(session, 2, rank_candidates=5) == [zebras.best, w2]
    # The bound never drops below the number of results asked for.
    assert _ids(session, 5, rank_candidates=1) == [zebras.best, w2, w1, w0, w3]
