"""Full-text search and filters over stored investigations, and the `kubereach search` command."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from bot.history import service
from bot.history.cli import search as search_command
from bot.history.db import session_factory
from bot.history.enums import Origin
from bot.history.search import SearchFilters, rebuild_search_index, search_investigations
from bot.history.service import Person, WorkloadRef
from bot.playbook.models import Evidence, Hop, StepResult, StepStatus, Verdict, VerdictCode
from tests.db.conftest import empty_all_tables

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
ANA = Person("U01ANA", "ana")
BOB = Person("U02BOB", "bob")


def _ref(kind: str, namespace: str, name: str) -> WorkloadRef:
    return WorkloadRef(kind, namespace, name, f"{kind} {namespace}/{name}")


@dataclass(frozen=True)
class Corpus:
    """Ids of the stored investigations, by what makes each one findable."""

    checkout_mtu: str  # checkout -> payments, MTU_MISMATCH on node-2, evidence mentions vxlan.calico
    web_endpoints: str  # web -> api, SERVICE_NO_ENDPOINTS, newest
    web_dns: str  # web -> redis, DNS_RESOLUTION_FAILED, evidence mentions NXDOMAIN and "checkout"
    old_conntrack: str  # batch -> api, CONNTRACK_TABLE_FULL on node-1, 10 days old, asked by bob
    running: str  # frontend -> web, still running, no verdict


def _record(
    session: Session,
    source: WorkloadRef,
    target: WorkloadRef,
    at: datetime,
    steps: list[StepResult],
    verdict: Verdict | None,
    *,
    who: Person = ANA,
    channel: str = "C0INCIDENT",
) -> str:
    inv = service.start_investigation(
        session,
        question=f"why can't {source.name} reach {target.name}?",
        asked_by=who,
        origin=Origin.SLACK,
        owner="bot-0:1",
        source=source,
        target=target,
        channel=channel,
        thread_ts=f"{at.timestamp():.6f}",
        started_at=at,
    )
    for order, step in enumerate(steps, start=1):
        service.record_step(session, inv, step, order)
    if verdict is not None:
        service.finish_investigation(session, inv, verdict, duration_ms=10.0, finished_at=at + timedelta(seconds=3))
    return inv


@pytest.fixture(scope="module")
def corpus(engine: Engine) -> Iterator[Corpus]:
    """A handful of investigations that differ in exactly the ways the searches below tell apart."""
    sessions = session_factory(engine)
    try:
        with sessions.begin() as session:
            checkout_mtu = _record(
                session,
                _ref("deployment", "shop", "checkout"),
                _ref("service", "payments", "payments"),
                NOW - timedelta(hours=5),
                [
                    StepResult(
                        "overlay",
                        StepStatus.FAIL,
                        "overlay MTU too small",
                        (Evidence("link", "vxlan.calico mtu 1400", "node-2", {"device": "vxlan.calico", "mtu": 1400}),),
                    ),
                ],
                Verdict(VerdictCode.MTU_MISMATCH, "pod MTU 1500 exceeds overlay MTU 1400", "node-2", Hop.UNDERLAY),
            )
            web_dns = _record(
                session,
                _ref("deployment", "shop", "web"),
                _ref("service", "cache", "redis"),
                NOW - timedelta(hours=3),
                [
                    StepResult(
                        "dns",
                        StepStatus.FAIL,
                        "lookup failed",
                        (
                            Evidence(
                                "dns-query",
                                "redis.cache.svc answered NXDOMAIN",
                                "node-1",
                                {"rcode": "NXDOMAIN", "search": ["shop.svc.cluster.local"], "note": "checkout"},
                            ),
                        ),
                    ),
                ],
                Verdict(VerdictCode.DNS_RESOLUTION_FAILED, "redis.cache does not resolve from web", "node-1", Hop.DNS),
            )
            old_conntrack = _record(
                session,
                _ref("job", "batch", "nightly"),
                _ref("service", "shop", "api"),
                NOW - timedelta(days=10),
                [
                    StepResult(
                        "conntrack",
                        StepStatus.FAIL,
                        "table full",
                        (Evidence("conntrack", "nf_conntrack_count 262144 of 262144", "node-1", {"count": 262144}),),
                    )
                ],
                Verdict(VerdictCode.CONNTRACK_TABLE_FULL, "node-1 conntrack table is full", "node-1", Hop.SOURCE_NODE),
                who=BOB,
                channel="C0BATCH",
            )
            running = _record(
                session,
                _ref("deployment", "edge", "frontend"),
                _ref("deployment", "shop", "web"),
                NOW - timedelta(hours=2),
                [StepResult("resolve-names", StepStatus.PASS, "names resolved")],
                None,
            )
            web_endpoints = _record(
                session,
                _ref("deployment", "shop", "web"),
                _ref("service", "shop", "api"),
                NOW - timedelta(hours=1),
                [
                    StepResult(
                        "endpoints",
                        StepStatus.FAIL,
                        "no ready endpoints",
                        (Evidence("endpoint-slices", "0 of 2 endpoints ready", None, {"ready": 0, "total": 2}),),
                    )
                ],
                Verdict(VerdictCode.SERVICE_NO_ENDPOINTS, "service shop/api has no ready endpoints"),
            )
        yield Corpus(checkout_mtu, web_endpoints, web_dns, old_conntrack, running)
    finally:
        empty_all_tables(engine)


@pytest.fixture
def session(engine: Engine, corpus: Corpus) -> Iterator[Session]:
    with session_factory(engine)() as opened:
        yield opened


def _ids(session: Session, text: str = "", limit: int = 20, **filters: object) -> list[str]:
    return [hit.id for hit in search_investigations(session, text, SearchFilters(**filters), limit=limit)]  # type: ignore[arg-type]


def test_search_by_workload_name_finds_every_investigation_naming_it(session: Session, corpus: Corpus) -> None:
    assert set(_ids(session, "web")) == {corpus.web_endpoints, corpus.web_dns, corpus.running}
    assert _ids(session, "nightly") == [corpus.old_conntrack]


def test_a_name_match_ranks_above_a_mention_in_evidence(session: Session, corpus: Corpus) -> None:
    # "checkout" is the source of one investigation and only a word in another's evidence.
    assert _ids(session, "checkout") == [corpus.checkout_mtu, corpus.web_dns]


def test_search_finds_words_that_appear_only_in_step_evidence(session: Session, corpus: Corpus) -> None:
    assert _ids(session, "NXDOMAIN") == [corpus.web_dns]
    assert _ids(session, "vxlan.calico") == [corpus.checkout_mtu]
    assert _ids(session, "262144") == [corpus.old_conntrack]


def test_words_inside_dotted_names_match_the_same_on_both_databases(session: Session, corpus: Corpus) -> None:
    # PostgreSQL's own parser keeps "redis.cache.svc" and "shop/web" whole; we index their parts.
    assert _ids(session, "svc") == [corpus.web_dns]
    assert _ids(session, "cluster.local") == [corpus.web_dns]
    assert _ids(session, "shop.svc") == [corpus.web_dns]
    assert _ids(session, "svc.shop") == []  # a dotted word is a phrase: its parts in this order
    assert _ids(session, "payments/payments") == [corpus.checkout_mtu]


def test_all_words_must_match(session: Session, corpus: Corpus) -> None:
    assert _ids(session, "web NXDOMAIN") == [corpus.web_dns]
    assert _ids(session, "web vxlan.calico") == []


def test_verdict_summary_and_code_are_searchable(session: Session, corpus: Corpus) -> None:
    assert _ids(session, "overlay MTU") == [corpus.checkout_mtu]
    assert _ids(session, "CONNTRACK_TABLE_FULL") == [corpus.old_conntrack]


def test_filter_by_verdict_code(session: Session, corpus: Corpus) -> None:
    assert _ids(session, verdict_code=VerdictCode.SERVICE_NO_ENDPOINTS) == [corpus.web_endpoints]
    assert _ids(session, "web", verdict_code=VerdictCode.DNS_RESOLUTION_FAILED) == [corpus.web_dns]


def test_filters_narrow_text_results(session: Session, corpus: Corpus) -> None:
    assert set(_ids(session, "api", namespace="batch")) == {corpus.old_conntrack}
    assert set(_ids(session, namespace="payments")) == {corpus.checkout_mtu}
    assert set(_ids(session, "web", name="redis")) == {corpus.web_dns}
    assert set(_ids(session, node="node-1")) == {corpus.web_dns, corpus.old_conntrack}
    assert _ids(session, channel="C0BATCH") == [corpus.old_conntrack]
    assert _ids(session, asked_by="bob") == [corpus.old_conntrack]
    assert _ids(session, asked_by=BOB.id) == [corpus.old_conntrack]
    assert corpus.old_conntrack not in _ids(session, "api", since=NOW - timedelta(days=7))
    assert _ids(session, "api", until=NOW - timedelta(days=7)) == [corpus.old_conntrack]
    assert _ids(session, "api", node="node-1") == [corpus.old_conntrack]
    assert _ids(session, "redis", node="node-2") == []
    assert set(_ids(session, "web", namespace="cache")) == {corpus.web_dns}


def test_filter_values_are_not_searchable_words(session: Session, corpus: Corpus) -> None:
    # SQLite indexes filter values as hex tokens in a column of their own; typing one finds nothing.
    assert _ids(session, "s" + b"batch".hex()) == []
    assert _ids(session, "n" + b"node-1".hex()) == []


def test_empty_text_lists_newest_first(session: Session, corpus: Corpus) -> None:
    assert _ids(session) == [
        corpus.web_endpoints,
        corpus.running,
        corpus.web_dns,
        corpus.checkout_mtu,
        corpus.old_conntrack,
    ]
    assert _ids(session, "  -> ?", limit=2) == [corpus.web_endpoints, corpus.running]


def test_hits_carry_the_slack_thread_and_who_asked(session: Session, corpus: Corpus) -> None:
    (hit,) = search_investigations(session, "nightly")
    assert (hit.channel, hit.thread_ts) == ("C0BATCH", f"{(NOW - timedelta(days=10)).timestamp():.6f}")
    assert (hit.asked_by_id, hit.asked_by_name) == (BOB.id, BOB.name)
    assert hit.verdict_code is VerdictCode.CONNTRACK_TABLE_FULL and hit.node == "node-1"
    assert hit.started_at == NOW - timedelta(days=10)
    assert hit.rank > 0


def test_a_step_recorded_later_becomes_searchable_and_rebuild_keeps_the_index(engine: Engine, corpus: Corpus) -> None:
    sessions: sessionmaker[Session] = session_factory(engine)
    with sessions() as session:
        assert _ids(session, "ECONNREFUSED") == []
    with sessions.begin() as session:
        service.record_step(
            session,
            corpus.running,
            StepResult(
                "probe",
                StepStatus.FAIL,
                "probe refused",
                (Evidence("tcp-probe", "connect to 10.96.0.12:80", "node-3", {"errno": "ECONNREFUSED"}),),
            ),
            2,
        )
    with sessions() as session:
        assert _ids(session, "ECONNREFUSED") == [corpus.running]
        before = {text: _ids(session, text) for text in ("web", "checkout", "NXDOMAIN", "ECONNREFUSED")}
    with sessions.begin() as session:
        assert rebuild_search_index(session) == 5
    with sessions() as session:
        assert {text: _ids(session, text) for text in before} == before


def test_search_command_prints_json_results(database_url: str, corpus: Corpus) -> None:
    result = CliRunner().invoke(search_command, ["web", "--verdict", "dns_resolution_failed", "--db", database_url, "--json"])
    assert result.exit_code == 0, result.output
    (hit,) = json.loads(result.output)
    assert hit["id"] == corpus.web_dns
    assert hit["verdict_code"] == "DNS_RESOLUTION_FAILED"
    assert hit["asked_by"] == {"id": ANA.id, "name": ANA.name}
    assert hit["channel"] == "C0INCIDENT"


def test_search_command_rejects_an_unknown_verdict(database_url: str, corpus: Corpus) -> None:
    result = CliRunner().invoke(search_command, ["web", "--verdict", "BROKEN", "--db", database_url])
    assert result.exit_code != 0
    assert "not a verdict code" in str(result.exception)
