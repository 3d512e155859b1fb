"""The way out of the cluster, reasoned from hand-written observations: the source node's route out,
its masquerade (the conntrack entry the probe left, the nat rules), egress policy for an address only
DNS gave, the part of the path no agent can see, and nodes / host-network pods as sources."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from bot.playbook import engine
from bot.playbook.case import Case, PodRef
from bot.playbook.models import Hop, StepStatus, VerdictCode
from bot.playbook.observations import (
    ConntrackEntry,
    EgressNatRule,
    EgressNatView,
    Observed,
    RouteInfo,
    RouteLookup,
)
from bot.playbook.steps import egress
from bot.playbook.steps.base import At
from bot.policy import Cluster
from bot.policy.objects import build_cluster
from tests.unit.test_playbook_engine import NODES, WEB, RecordedCluster, case, verdict_of

OUTSIDE = "203.0.113.10"
MASQ = EgressNatRule(
    "iptables nat", "FLANNEL-POSTRTG", "-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -j MASQUERADE", "MASQUERADE"
)


class OutsideCluster(RecordedCluster):
    """The recorded cluster with a route out on every node and the CNI's masquerade in place."""

    def __init__(self) -> None:
        super().__init__()
        for node in NODES:
            self.routes[(node, OUTSIDE)] = RouteLookup(RouteInfo("203.0.113.0/24", "10.240.0.254", "eth0"))
        self.egress = EgressNatView(
            "translated", (MASQ,), out_interface="eth0", chains=("nat/POSTROUTING", "nat/FLANNEL-POSTRTG")
        )
        self.egress_asked: list[tuple[str, str, str]] = []

    async def egress_nat(self, node: str, *, pod_ip: str, destination: str, protocol: str, port: int) -> Observed[EgressNatView]:
        self.egress_asked.append((node, pod_ip, destination))
        return self._gone(node) or Observed(node, self.egress)


def outside_case(**changes: Any) -> Case:
    base: dict[str, Any] = {
        "target_display": f"{OUTSIDE}:80",
        "target_kind": "external",
        "port": 80,
        "service": None,
        "target_pods": (),
        "endpoints": (),
        "target_ip": OUTSIDE,
        "dns_name": None,
        "dns_fqdn": None,
    }
    return case(**(base | changes))


def entry(reply_dst: str, *, replied: bool = False, sport: int = 40000) -> ConntrackEntry:
    status = ("SEEN_REPLY", "ASSURED") if replied else ()
    state = "TIME_WAIT" if replied else "SYN_SENT"
    return ConntrackEntry("tcp", WEB.ip or "", OUTSIDE, sport, 80, OUTSIDE, 80, state, 100, status, reply_dst)


def test_a_pod_masqueraded_on_a_route_out_reaches_the_outside_address() -> None:
    cluster = OutsideCluster()
    diagnosis = verdict_of(cluster, outside_case())
    assert diagnosis.verdict.code == VerdictCode.NO_FAULT_FOUND
    route_out = next(s for s in diagnosis.steps if s.name.endswith("route out of node-1"))
    assert route_out.status == StepStatus.PASS and "MASQUERADE" in route_out.summary


def test_a_conntrack_entry_replying_to_the_pod_address_is_egress_not_masqueraded() -> None:
    cluster = OutsideCluster()
    cluster.failing_probes = {OUTSIDE: "timed_out"}
    cluster.conntrack_entries = (entry(WEB.ip or ""),)
    diagnosis = verdict_of(cluster, outside_case())
    v = diagnosis.verdict
    assert (v.code, v.node, v.hop) == (VerdictCode.EGRESS_NOT_MASQUERADED, "node-1", Hop.SOURCE_NODE)
    assert "replies to 10.244.1.5" in v.summary and v.remediation


def test_the_kernel_entry_outweighs_rules_that_would_masquerade() -> None:
    """The rules read fine but the probe's entry left untranslated (an older, answered flow beside it)."""
    cluster = OutsideCluster()
    cluster.failing_probes = {OUTSIDE: "timed_out"}
    cluster.conntrack_entries = (entry("10.240.0.11", replied=True, sport=39000), entry(WEB.ip or ""))
    assert verdict_of(cluster, outside_case()).verdict.code == VerdictCode.EGRESS_NOT_MASQUERADED


def test_without_an_entry_no_matching_masquerade_rule_is_egress_not_masqueraded() -> None:
    cluster = OutsideCluster()
    cluster.failing_probes = {OUTSIDE: "timed_out"}
    cluster.egress = EgressNatView("untranslated", (), out_interface="eth0", chains=("nat/POSTROUTING", "nat/FLANNEL-POSTRTG"))
    diagnosis = verdict_of(cluster, outside_case())
    assert (diagnosis.verdict.code, diagnosis.verdict.node) == (VerdictCode.EGRESS_NOT_MASQUERADED, "node-1")
    assert "no SNAT/MASQUERADE rule matches in nat/POSTROUTING, nat/FLANNEL-POSTRTG" in diagnosis.verdict.summary


def test_missing_rules_are_no_cause_while_the_outside_answers() -> None:
    """A destination that routes pod addresses back needs no masquerade: rules alone blame nothing."""
    cluster = OutsideCluster()
    cluster.egress = EgressNatView("untranslated", (), out_interface="eth0")
    assert verdict_of(cluster, outside_case()).verdict.code == VerdictCode.NO_FAULT_FOUND


def test_a_node_without_a_route_out_is_node_has_no_route_out() -> None:
    for kind in ("none", "unreachable", "blackhole", "prohibit"):
        cluster = OutsideCluster()
        cluster.routes[("node-1", OUTSIDE)] = RouteLookup(
            RouteInfo("203.0.113.0/24", "", "", type=kind), "Network is unreachable"
        )
        cluster.failing_probes = {OUTSIDE: "unreachable"}
        diagnosis = verdict_of(cluster, outside_case())
        v = diagnosis.verdict
        assert (v.code, v.node, v.hop) == (VerdictCode.NODE_HAS_NO_ROUTE_OUT, "node-1", Hop.SOURCE_NODE), kind
        assert "ip route get 203.0.113.10" in " ".join(v.remediation)
        evidence = next(s for s in diagnosis.steps if s.name.endswith("route out of node-1")).evidence
        assert evidence[0].kind == "route" and evidence[0].data["type"] == kind


def test_a_masqueraded_packet_that_gets_no_answer_is_not_blamed_on_the_cluster() -> None:
    cluster = OutsideCluster()
    cluster.failing_probes = {OUTSIDE: "timed_out"}
    cluster.conntrack_entries = (entry("10.240.0.11"),)
    v = verdict_of(cluster, outside_case()).verdict
    assert v.code == VerdictCode.UNDETERMINED
    assert "masqueraded to 10.240.0.11" in v.summary and "outside the cluster" in v.summary


def test_an_agent_that_does_not_answer_is_never_a_route_out_or_masquerade_fault() -> None:
    cluster = OutsideCluster()
    cluster.failing_probes = {OUTSIDE: "timed_out"}
    cluster.down = {"node-1"}
    assert verdict_of(cluster, outside_case()).verdict.code == VerdictCode.AGENT_UNREACHABLE


def _deny_outside_policy() -> Cluster:
    pod = {
        "metadata": {"namespace": "shop", "name": WEB.name, "labels": {"app": "web"}},
        "spec": {"nodeName": "node-1"},
        "status": {"phase": "Running", "podIP": WEB.ip, "podIPs": [{"ip": WEB.ip}]},
    }
    policy = {
        "metadata": {"namespace": "shop", "name": "no-outside"},
        "spec": {
            "podSelector": {"matchLabels": {"app": "web"}},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["203.0.113.0/24"]}}]}],
        },
    }
    return build_cluster([{"metadata": {"name": "shop"}}], [pod], [policy])


def test_an_egress_ipblock_that_excludes_the_address_denies_egress() -> None:
    cluster = OutsideCluster()
    cluster.failing_probes = {OUTSIDE: "timed_out"}
    v = verdict_of(cluster, outside_case(policy_cluster=_deny_outside_policy())).verdict
    assert (v.code, v.node, v.hop) == (VerdictCode.NETWORK_POLICY_DENIES_EGRESS, "node-1", Hop.POLICY)


def test_an_address_only_dns_gave_is_judged_by_egress_policy_too() -> None:
    c = outside_case(target_ip=None, external_name="www.example.com", policy_cluster=_deny_outside_policy())
    at = At.starting(c, WEB)
    at = dataclasses.replace(at, trail=dataclasses.replace(at.trail, resolved=(OUTSIDE,)))
    walk = engine.Walk(c, None)
    outcome = asyncio.run(engine.run_step(egress.STEP, at, walk, engine.Asker(OutsideCluster())))
    assert [c.code for c in outcome.candidates] == [VerdictCode.NETWORK_POLICY_DENIES_EGRESS]
    assert outcome.denied == frozenset({OUTSIDE})


def test_a_node_as_the_source_skips_the_pod_checks_and_probes_from_the_node() -> None:
    node = PodRef("", "node-1", "10.240.0.11", "node-1", host_network=True)
    probed: list[str] = []

    class Watching(OutsideCluster):
        async def probe(
            self, node: str, *, pod_ip: str, target: str, port: int, protocol: str, timeout_ms: int | None = None
        ) -> Any:
            probed.append(pod_ip)
            return await super().probe(node, pod_ip=pod_ip, target=target, port=port, protocol=protocol, timeout_ms=timeout_ms)

    cluster = Watching()
    diagnosis = verdict_of(cluster, outside_case(sources=(node,), source_kind="node", source_display="node-1"))
    assert diagnosis.verdict.code == VerdictCode.NO_FAULT_FOUND
    pod_network = next(s for s in diagnosis.steps if s.name.endswith("pod network"))
    assert pod_network.status == StepStatus.SKIP and "own network namespace" in pod_network.summary
    assert probed == [""], "a node's probe runs in the node's namespace"
    assert cluster.egress_asked == [], "a node's packets carry its own address: no masquerade question"


def test_a_node_as_the_source_of_a_service_question_skips_egress_policy() -> None:
    node = PodRef("", "node-1", "10.240.0.11", "node-1", host_network=True)
    c = dataclasses.replace(case(), sources=(node,), source_kind="node", policy_cluster=_deny_outside_policy())
    diagnosis = verdict_of(RecordedCluster(), c)
    assert diagnosis.verdict.code == VerdictCode.NO_FAULT_FOUND
    policy = next(s for s in diagnosis.steps if s.name.endswith(": policy"))
    assert policy.status == StepStatus.SKIP and "not govern its egress" in policy.summary
