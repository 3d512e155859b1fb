"""The phrasing corpus (`parse_corpus.yaml`): how people ask, and what `parse_question` must read.

Each accepted phrasing is checked field by field (source and target kind/name/namespace, port, port
name, protocol, namespace hint); each rejected one must raise `ParseError` with the stated message
and closest valid form.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.errors import BadInput
from bot.parse import ParseError, Protocol, Ref, RefKind, parse_question

CORPUS = yaml.safe_load((Path(__file__).with_name("parse_corpus.yaml")).read_text(encoding="utf-8"))
ACCEPTED: list[dict[str, Any]] = CORPUS["accepted"]
REJECTED: list[dict[str, Any]] = CORPUS["rejected"]


def _ident(case: dict[str, Any]) -> str:
    return repr(case["text"])[:60]


def _expected_ref(spec: str) -> tuple[RefKind, str, str | None]:
    kind, name, *namespace = spec.split()
    return RefKind(kind), name, namespace[0] if namespace else None


def _actual_ref(ref: Ref) -> tuple[RefKind, str, str | None]:
    return ref.kind, ref.name, ref.namespace


def test_corpus_is_big_enough() -> None:
    assert len(ACCEPTED) >= 100
    assert len(REJECTED) >= 25
    texts = [case["text"] for case in ACCEPTED + REJECTED]
    assert len(texts) == len(set(texts)), "a phrasing appears twice in the corpus"


@pytest.mark.parametrize("case", ACCEPTED, ids=_ident)
def test_accepted_phrasing_reads_as_expected(case: dict[str, Any]) -> None:
    question = parse_question(case["text"])

    assert _actual_ref(question.source) == _expected_ref(case["source"])
    assert _actual_ref(question.target) == _expected_ref(case["target"])
    assert question.port == case.get("port")
    assert question.port_name == case.get("port_name")
    expected_protocol = case.get("protocol")
    assert question.protocol == (Protocol(expected_protocol) if expected_protocol else None)
    assert question.namespace == case.get("namespace")
    assert question.raw == case["text"]
    assert list(question.ignored) == case.get("ignored", [])
    if "normalized" in case:
        assert question.normalized == case["normalized"]
    assert [_actual_ref(ref) for ref in question.source_alternatives] == [
        _expected_ref(spec) for spec in case.get("source_alternatives", [])
    ]
    assert [_actual_ref(ref) for ref in question.target_alternatives] == [
        _expected_ref(spec) for spec in case.get("target_alternatives", [])
    ]
    if "target_service" in case:
        assert question.target.service == case["target_service"]
    if "target_cluster_domain" in case:
        assert question.target.cluster_domain == case["target_cluster_domain"]


@pytest.mark.parametrize("case", ACCEPTED, ids=_ident)
def test_accepted_phrasing_normalizes_to_text_that_reads_the_same(case: dict[str, Any]) -> None:
    question = parse_question(case["text"])
    again = parse_question(question.normalized)

    assert (again.source, again.target, again.port, again.port_name, again.protocol, again.namespace) == (
        question.source,
        question.target,
        question.port,
        question.port_name,
        question.protocol,
        question.namespace,
    )
    assert again.normalized == question.normalized


@pytest.mark.parametrize("case", REJECTED, ids=_ident)
def test_rejected_phrasing_names_the_problem_and_the_closest_form(case: dict[str, Any]) -> None:
    with pytest.raises(ParseError) as caught:
        parse_question(case["text"])

    error = caught.value
    assert case["message"] in error.message
    assert error.closest_form == case["closest"]
    assert error.example
    if "part" in case:
        assert error.part == case["part"]
    assert isinstance(error, BadInput)
    assert error.exit_code == 2
