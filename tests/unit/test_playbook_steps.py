"""The playbook's steps as data: the order the engine runs, what each step declares it needs, and
evidence built from explicit fields that still carry every field of the observation."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import re
from typing import Any

import pytest

from bot.playbook import engine
from bot.playbook.models import Hop, VerdictCode
from bot.playbook.observations import Link, ListeningSocket, Observer, OverlayHop, RouteInfo
from bot.playbook.steps import base
from bot.playbook.steps.evidence import link_data, overlay_hop_data, route_data, socket_data
from bot.playbook.steps.observe import NodeFactsAsk, RouteAsk
from tests.unit.test_playbook_engine import WEB, RecordedCluster, case, verdict_of


def test_every_declared_need_is_a_call_of_the_observer() -> None:
    calls = {name for name, _ in inspect.getmembers(Observer, inspect.iscoroutinefunction)}
    assert {need.value for need in base.Need} == calls


def test_the_order_names_each_hop_once_and_every_step_is_typed() -> None:
    source_steps = [step for together in engine.SOURCE_ORDER for step in together]
    assert all(isinstance(step, base.Step) for step in [*engine.TARGET_ORDER, *source_steps])
    kinds = [step.kind for step in [*engine.TARGET_ORDER, *source_steps]]
    assert len(kinds) == len(set(kinds))
    assert all(re.fullmatch(r"[a-z][a-z_]*", kind) for kind in kinds), kinds
    assert {Hop.API, Hop.POLICY, Hop.DNS, Hop.SOURCE_POD, Hop.SOURCE_NODE, Hop.SERVICE_NAT} <= {s.hop for s in source_steps} | {
        s.hop for s in engine.TARGET_ORDER
    }


def test_the_precedence_holds_each_cause_and_hop_once_and_only_known_codes() -> None:
    assert len(engine.PRECEDENCE) == len(set(engine.PRECEDENCE))
    assert {code for code, _ in engine.PRECEDENCE} <= set(VerdictCode)
    first = base.Candidate(VerdictCode.SOURCE_POD_NOT_RUNNING, Hop.SOURCE_POD, "")
    unknown = base.Candidate(VerdictCode.UNDETERMINED, Hop.API, "")
    assert engine.rank(first) == 0 and engine.rank(unknown) == len(engine.PRECEDENCE)


def test_a_candidate_seen_from_a_source_keeps_everything_else() -> None:
    c = base.Candidate(VerdictCode.MTU_MISMATCH, Hop.SOURCE_POD, "why", "node-1", ("fix",))
    assert c.seen_from("shop/web-1") == dataclasses.replace(c, source="shop/web-1")


def _fields(value: Any) -> dict[str, Any]:
    return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}


def test_evidence_fields_are_explicit_and_complete() -> None:
    """A field added to an observation must be added to its evidence too (this test fails until it is)."""
    link = Link("veth1", 7, "veth", 1450, "UP", True, "cni0", ("10.244.1.1/24",))
    route = RouteInfo("10.244.2.0/24", "10.244.2.0", "flannel.1", "10.244.1.0", "unicast")
    hop = OverlayHop("flannel.1", True, "10.244.2.0", "0e:00:00:00:00:02", ("PERMANENT",), "10.240.0.12")
    socket = ListeningSocket("TCP", "0.0.0.0", 8080, "api")
    assert link_data(link) == _fields(link)
    assert route_data(route) == _fields(route)
    assert overlay_hop_data(hop) == _fields(hop)
    assert socket_data(socket) == _fields(socket)


def _run_alone(step: base.Step) -> base.Outcome:
    walk = engine.Walk(case(), None)
    return asyncio.run(engine.run_step(step, base.At.starting(case(), WEB), walk, engine.Asker(RecordedCluster())))


def test_a_decision_that_reads_an_observation_its_step_did_not_declare_is_refused() -> None:
    def asks(at: base.At) -> tuple[base.Ask[object], ...]:
        return (NodeFactsAsk("node-1"),)

    def reads_a_route(at: base.At, seen: base.Seen) -> base.Outcome:
        seen[RouteAsk("node-1", "10.244.2.7")]
        return base.Outcome()

    def reads_other_facts(at: base.At, seen: base.Seen) -> base.Outcome:
        seen[NodeFactsAsk("node-2")]
        return base.Outcome()

    def reads_what_it_asked(at: base.At, seen: base.Seen) -> base.Outcome:
        facts = seen[NodeFactsAsk("node-1")].value
        return base.Outcome(notes=(), go_on=facts is not None and facts.node == "node-1")

    needs = frozenset({base.Need.NODE_FACTS})
    with pytest.raises(base.UndeclaredObservation, match="route"):
        _run_alone(base.Step("reads_a_route", Hop.SOURCE_NODE, needs, asks, reads_a_route))
    with pytest.raises(base.UndeclaredObservation, match="did not ask for"):
        _run_alone(base.Step("reads_other_facts", Hop.SOURCE_NODE, needs, asks, reads_other_facts))
    assert _run_alone(base.Step("reads_what_it_asked", Hop.SOURCE_NODE, needs, asks, reads_what_it_asked)).go_on


def test_a_step_that_asks_for_an_observation_it_did_not_declare_is_refused_before_anything_is_asked() -> None:
    cluster = RecordedCluster()
    asked: list[str] = []
    original = cluster.route

    async def route(node: str, destination: str, **kw: Any) -> Any:
        asked.append(destination)
        return await original(node, destination, **kw)

    cluster.route = route  # type: ignore[method-assign]
    step = base.Step(
        "asks_a_route",
        Hop.SOURCE_NODE,
        frozenset({base.Need.NODE_FACTS}),
        lambda at: (RouteAsk("node-1", "10.244.2.7"),),
        lambda at, seen: base.Outcome(),
    )
    walk = engine.Walk(case(), None)
    with pytest.raises(base.UndeclaredObservation, match="does not declare"):
        asyncio.run(engine.run_step(step, base.At.starting(case(), WEB), walk, engine.Asker(cluster)))
    assert asked == []


def test_every_step_result_of_a_failing_walk_carries_a_bounded_kind() -> None:
    cluster = RecordedCluster()
    cluster.failing_probes = {"10.96.5.5": "timed_out", "10.244.2.7": "timed_out"}
    cluster.dns_outcome = "timed_out"
    diagnosis = verdict_of(cluster)
    kinds = {step.kind for step in diagnosis.steps}
    assert "" not in kinds
    assert {"source: probes", "path", "path (DNS)", "source: DNS", "source: policy"} <= kinds
    assert not any(name in kind for kind in kinds for name in ("web-1", "api-1", "node-1", "node-2", "coredns"))


def test_a_withdrawn_candidate_leaves_the_walk_and_one_never_added_is_ignored() -> None:
    walk = engine.Walk(case(), None)
    guess = base.Candidate(VerdictCode.DNS_RESOLUTION_FAILED, Hop.DNS, "does not resolve", None, (), WEB.key)
    found = base.Candidate(VerdictCode.UNDERLAY_DROPS, Hop.UNDERLAY, "dropped between the nodes", "node-1")
    walk.fold(base.Outcome(candidates=(guess,)), WEB.key, 0.0)
    walk.fold(base.Outcome(candidates=(found,), withdrawn=(guess,)), WEB.key, 0.0)
    assert walk.candidates == [found.seen_from(WEB.key)]
    other = base.Candidate(VerdictCode.PACKET_LOSS, Hop.UNDERLAY, "lost", "node-1")
    walk.fold(base.Outcome(withdrawn=(other,)), WEB.key, 0.0)
    assert walk.candidates == [found.seen_from(WEB.key)]
