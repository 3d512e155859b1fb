"""The playbook's steps as data: the order the engine runs, what each step declares it needs, and
evidence built from explicit fields that still carry every field of the observation."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

from bot.playbook import engine
from bot.playbook.models import Hop, VerdictCode
from bot.playbook.observations import Link, ListeningSocket, Observer, OverlayHop, RouteInfo
from bot.playbook.steps import base
from bot.playbook.steps.evidence import link_data, overlay_hop_data, route_data, socket_data


def test_every_declared_need_is_a_call_of_the_observer() -> None:
    calls = {name for name, _ in inspect.getmembers(Observer, inspect.iscoroutinefunction)}
    assert {need.value for need in base.Need} == calls


def test_the_order_names_each_hop_once_and_every_step_is_typed() -> None:
    source_steps = [step for together in engine.SOURCE_ORDER for step in together]
    assert all(isinstance(step, base.SourceStep) for step in source_steps)
    assert all(isinstance(step, base.TargetStep) for step in engine.TARGET_ORDER)
    kinds = [step.kind for step in [*engine.TARGET_ORDER, *source_steps]]
    assert len(kinds) == len(set(kinds))
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
