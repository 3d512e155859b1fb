"""A check that could not be made is never evidence (issue 11, item 1).

Recorded observations where agent calls failed each way — refused as busy (RESOURCE_EXHAUSTED),
timed out, cancelled, unreachable, failed inside the agent — on the healthy two-node cluster of
`test_playbook_engine`: the verdict is never a fault nobody saw. When nothing observed explains a
failure, or success cannot be claimed, it is AGENT_UNREACHABLE naming the node and listing what
could not be checked. The fleet side: gRPC codes map to kinds, and passing failures are retried.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from bot.fleet.client import AgentOutcome, failure_kind
from bot.fleet.observer import MAX_ATTEMPTS, FleetObserver
from bot.playbook.engine import run_playbook
from bot.playbook.models import VerdictCode
from bot.playbook.observations import CallFailure, Observed
from bot.settings import AgentSettings
from kubereach.agent.v1 import agent_pb2 as pb
from tests.unit.test_playbook_engine import RecordedCluster, case

NOT_CHECKED = [CallFailure.BUSY, CallFailure.TIMED_OUT, CallFailure.CANCELLED, CallFailure.UNREACHABLE, CallFailure.FAILED]
FAULTS = {c for c in VerdictCode} - {VerdictCode.NO_FAULT_FOUND, VerdictCode.AGENT_UNREACHABLE, VerdictCode.UNDETERMINED}


class FailingCalls(RecordedCluster):
    """The healthy recorded cluster, except that the named calls on the named nodes fail with `kind`."""

    def __init__(self, kind: CallFailure, failing: set[tuple[str, str]]) -> None:
        super().__init__()
        self.kind = kind
        self.failing = failing

    def _failed(self, method: str, node: str) -> Observed[Any] | None:
        if (method, node) in self.failing or (method, "*") in self.failing:
            return Observed(node, error=f"the agent on {node} {self.kind.words} ({self.kind.value})", error_kind=self.kind)
        return None

    async def node_facts(self, node: str) -> Observed[Any]:
        return self._failed("node_facts", node) or await super().node_facts(node)

    async def locate_pod(self, node: str, pod_ip: str) -> Observed[Any]:
        return self._failed("locate_pod", node) or await super().locate_pod(node, pod_ip)

    async def route(self, node: str, destination: str, *, source: str = "", pod_ip: str = "") -> Observed[Any]:
        return self._failed("route", node) or await super().route(node, destination, source=source, pod_ip=pod_ip)

    async def service_nat(self, node: str, vip: str, port: int, protocol: str) -> Observed[Any]:
        return self._failed("service_nat", node) or await super().service_nat(node, vip, port, protocol)

    async def conntrack(self, node: str, **kw: Any) -> Observed[Any]:
        return self._failed("conntrack", node) or await super().conntrack(node, **kw)

    async def filter_state(self, node: str, **kw: Any) -> Observed[Any]:
        return self._failed("filter_state", node) or await super().filter_state(node, **kw)

    async def sockets(self, node: str, pod_ip: str, port: int, protocol: str) -> Observed[Any]:
        return self._failed("sockets", node) or await super().sockets(node, pod_ip, port, protocol)

    async def probe(self, node: str, **kw: Any) -> Observed[Any]:
        return self._failed("probe", node) or await super().probe(node, **kw)

    async def probe_dns(self, node: str, **kw: Any) -> Observed[Any]:
        return self._failed("probe_dns", node) or await super().probe_dns(node, **kw)


def diagnose(cluster: RecordedCluster) -> Any:
    return asyncio.run(run_playbook(case(), cluster))


@pytest.mark.parametrize("kind", NOT_CHECKED, ids=[k.value for k in NOT_CHECKED])
def test_a_dns_probe_that_could_not_run_is_not_a_dns_failure(kind: CallFailure) -> None:
    """The review's wrong verdict: node-1's agent busy, "why can't frontend reach api" → DNS_RESOLUTION_FAILED."""
    diagnosis = diagnose(FailingCalls(kind, {("probe_dns", "node-1")}))
    assert diagnosis.verdict.code not in FAULTS
    assert diagnosis.verdict.code == VerdictCode.NO_FAULT_FOUND, "every probe that ran succeeded"
    assert any("DNS lookup" in f.summary and "node-1" in f.summary for f in diagnosis.findings), diagnosis.findings


@pytest.mark.parametrize("kind", NOT_CHECKED, ids=[k.value for k in NOT_CHECKED])
def test_probes_that_could_not_run_are_not_a_success_either(kind: CallFailure) -> None:
    diagnosis = diagnose(FailingCalls(kind, {("probe", "node-1"), ("probe_dns", "node-1")}))
    verdict = diagnosis.verdict
    assert verdict.code == VerdictCode.AGENT_UNREACHABLE
    assert verdict.node == "node-1"
    assert kind.words in verdict.summary
    assert "10.96.5.5:8080" in verdict.summary and "DNS lookup" in verdict.summary, verdict.summary


@pytest.mark.parametrize("kind", NOT_CHECKED, ids=[k.value for k in NOT_CHECKED])
def test_a_saturated_source_agent_yields_no_fault_it_did_not_see(kind: CallFailure) -> None:
    """Every call to node-1 fails: nothing on the source node was checked, and the verdict says so."""
    diagnosis = diagnose(FailingCalls(kind, {(m, "node-1") for m in METHODS}))
    assert diagnosis.verdict.code == VerdictCode.AGENT_UNREACHABLE
    assert diagnosis.verdict.node == "node-1"


METHODS = ["node_facts", "locate_pod", "route", "service_nat", "conntrack", "filter_state", "sockets", "probe", "probe_dns"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("kind", NOT_CHECKED, ids=[k.value for k in NOT_CHECKED])
def test_any_single_failed_read_on_a_failing_path_never_becomes_a_fault(kind: CallFailure, method: str) -> None:
    """The VIP probe times out (a real observation), and one kind of read fails on both nodes: the
    verdict may name what could not be checked, never a fault that read would have had to show."""
    cluster = FailingCalls(kind, {(method, "node-1"), (method, "node-2")})
    cluster.failing_probes = {"10.96.5.5": "timed_out", "10.244.2.7": "timed_out"}
    diagnosis = diagnose(cluster)
    assert diagnosis.verdict.code in (VerdictCode.AGENT_UNREACHABLE, VerdictCode.UNDETERMINED), diagnosis.verdict


def test_a_failed_lookup_seen_while_the_servers_could_not_be_checked_is_still_what_was_seen() -> None:
    """Negative control: a DNS lookup that ran and failed is evidence, even when the follow-up was refused."""
    cluster = FailingCalls(CallFailure.BUSY, {("route", "node-1")})
    cluster.dns_outcome = "refused"
    diagnosis = diagnose(cluster)
    assert diagnosis.verdict.code == VerdictCode.DNS_RESOLUTION_FAILED


CODES = [
    (grpc.StatusCode.RESOURCE_EXHAUSTED, CallFailure.BUSY),
    (grpc.StatusCode.DEADLINE_EXCEEDED, CallFailure.TIMED_OUT),
    (grpc.StatusCode.CANCELLED, CallFailure.CANCELLED),
    (grpc.StatusCode.UNAVAILABLE, CallFailure.UNREACHABLE),
    (grpc.StatusCode.UNAUTHENTICATED, CallFailure.UNREACHABLE),
    (grpc.StatusCode.NOT_FOUND, CallFailure.NOT_FOUND),
    (grpc.StatusCode.INVALID_ARGUMENT, CallFailure.INVALID),
    (grpc.StatusCode.INTERNAL, CallFailure.FAILED),
    (grpc.StatusCode.UNKNOWN, CallFailure.FAILED),
]


@pytest.mark.parametrize(("code", "kind"), CODES, ids=[c.name for c, _ in CODES])
def test_grpc_status_codes_map_to_one_kind_each(code: grpc.StatusCode, kind: CallFailure) -> None:
    assert failure_kind(code) is kind
    assert Observed("n", error="x", error_kind=kind).unreachable is (kind is not CallFailure.NOT_FOUND)


@dataclass
class ScriptedFleet:
    """A fleet whose calls answer from a script of failure kinds (None: success)."""

    script: list[CallFailure | None]
    settings: AgentSettings = field(default_factory=lambda: AgentSettings(insecure=True, overall_timeout_s=20.0))
    calls: int = 0

    async def call(self, node: str, method: str, request: Any, timeout_s: float | None = None) -> AgentOutcome:
        kind = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        if kind is None:
            return AgentOutcome(node, method, True, payload=pb.LookupRouteResponse(error="none"))
        return AgentOutcome(node, method, False, error=f"{kind.words}", error_kind=kind)


def lookup(fleet: ScriptedFleet, budget_s: float = 20.0) -> Observed[Any]:
    return asyncio.run(FleetObserver(fleet, budget_s=budget_s).route("node-1", "10.244.2.7"))  # type: ignore[arg-type]


def test_a_busy_agent_is_asked_again_and_its_later_answer_is_used() -> None:
    fleet = ScriptedFleet([CallFailure.BUSY, CallFailure.TIMED_OUT, None])
    observed = lookup(fleet)
    assert observed.ok and fleet.calls == 3


def test_retries_are_bounded_and_the_failure_kind_is_kept() -> None:
    fleet = ScriptedFleet([CallFailure.BUSY])
    observed = lookup(fleet)
    assert not observed.ok and observed.error_kind is CallFailure.BUSY
    assert fleet.calls == MAX_ATTEMPTS and f"tried {MAX_ATTEMPTS} times" in (observed.error or "")


def test_no_retry_beyond_the_investigations_deadline() -> None:
    fleet = ScriptedFleet([CallFailure.BUSY])
    observed = lookup(fleet, budget_s=0.0)
    assert not observed.ok and fleet.calls == 1


@pytest.mark.parametrize("kind", [CallFailure.NOT_FOUND, CallFailure.INVALID, CallFailure.CANCELLED])
def test_answers_that_retrying_cannot_change_are_not_retried(kind: CallFailure) -> None:
    fleet = ScriptedFleet([kind, None])
    observed = lookup(fleet)
    assert not observed.ok and fleet.calls == 1
