"""How a PostgreSQL text search picks its plan from the lexemes' frequencies (`bot.history.search.choose_plan`).

Figures are the shares measured on the 1,000,000-investigation benchmark (pg_stats of the document
column): a common evidence word in 18% of documents, a node facet in 1.3%, a KUBE-SVC chain's hex part
in under 0.1%.
"""

from __future__ import annotations

from bot.history.search import RANK_CANDIDATES, RANK_WINDOW, Plan, _density_and_rarest, choose_plan

ROWS = 1_000_000


def test_a_common_word_walks_the_newest_rows() -> None:
    assert choose_plan(0.18, 0.18, 1.0, ROWS, RANK_WINDOW, RANK_CANDIDATES) is Plan.WALK
    assert choose_plan(0.18, 0.18, 1.0, ROWS, ROWS, RANK_CANDIDATES) is Plan.WALK


def test_a_rare_word_takes_the_bitmap_of_its_rarest_lexeme() -> None:
    assert choose_plan(0.0008 * 0.38 * 0.6, 0.0008, 1.0, ROWS, RANK_WINDOW, RANK_CANDIDATES) is Plan.BITMAP
    assert choose_plan(0.0008 * 0.38 * 0.6, 0.0008, 1.0, ROWS, ROWS, RANK_CANDIDATES) is Plan.BITMAP


def test_a_word_narrowed_by_node_and_verdict_walks_their_index() -> None:
    # A common word, a verdict in 5% and a node in 1.3%: ~650 investigations hold both filters.
    density, indexed = 0.2 * 0.05 * 0.013, 0.05 * 0.013
    assert choose_plan(density, 0.013, indexed, ROWS, ROWS, RANK_CANDIDATES) is Plan.WALK


def test_without_statistics_nothing_is_known_and_the_bounded_walk_is_kept() -> None:
    assert _density_and_rarest([["web"]], {}) == (1.0, None)
    assert choose_plan(1.0, 1.0, 1.0, ROWS, RANK_WINDOW, RANK_CANDIDATES) is Plan.WALK


def test_every_lexeme_counts_and_the_rarest_is_named() -> None:
    frequencies = {"kube": 0.38, "svc": 0.6, "dd58": 0.0008, "n:6e6f6465": 0.013}
    density, rarest = _density_and_rarest([["kube", "svc", "dd58"], ["n:6e6f6465"]], frequencies)
    assert rarest == "dd58"
    assert abs(density - 0.38 * 0.6 * 0.0008 * 0.013) < 1e-12


def test_only_a_lexeme_known_without_the_parser_stands_for_the_query_in_the_index() -> None:
    # "café" could be lower-cased or split otherwise by PostgreSQL: the rarest plain lexeme is used instead.
    frequencies = {"café": 0.0001, "web": 0.2, "s:73686f70": 0.1}
    assert _density_and_rarest([["café"], ["web"], ["s:73686f70"]], frequencies)[1] == "s:73686f70"
    assert _density_and_rarest([["café"]], {"café": 0.0001})[1] is None
