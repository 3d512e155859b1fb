"""The ingress step and the probes of an entry from outside the cluster, from hand-written observations.

The recorded two-node cluster of test_playbook_engine: shop/frontend-nodeport's one ready pod runs on
node-2 (10.244.2.7). A client outside the cluster is stood in for by node-1's or node-2's own
namespace (the vantage node); it connects to a receiving node's IP and NodePort 30080, or to an
address routed to the nodes. What each receiving node's rules say is `RecordedCluster.entry_nats`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from bot.playbook.case import Entry, PodRef, ServiceRef
from bot.playbook.engine import run_playbook
from bot.playbook.models import Hop, StepStatus, VerdictCode
from bot.playbook.observations import ConntrackEntry, NatEndpoint, NatView, Observed
from tests.unit.test_playbook_engine import NODES, RecordedCluster, case
from tests.unit.test_playbook_verdict_codes import _policies

FRONTEND = ServiceRef(
    "shop",
    "frontend-nodeport",
    "10.96.9.9",
    {"app": "api"},
    80,
    "http",
    "http",
    type="NodePort",
    node_port=30080,
    external_traffic_policy="Local",
    health_check_node_port=31234,
    external_ips=("198.51.100.100",),
)
DROP_RULE = (
    '-A KUBE-EXTERNAL-SERVICES -p tcp -m comment --comment "shop/frontend-nodeport:http has no local endpoints" '
    "-m addrtype --dst-type LOCAL -m tcp --dport 30080 -j DROP"
)
NO_LOCAL = NatView(
    "iptables", True, (), "DROP", "shop/frontend-nodeport:http", rules=(DROP_RULE,), entry="nodeport", external_policy="Local"
)
LOCAL = NatView("iptables", True, (NatEndpoint("10.244.2.7", 8080),), entry="nodeport", external_policy="Local")


def outside(vantage: str) -> PodRef:
    """The client outside the cluster, stood in for by `vantage`'s own namespace."""
    return PodRef("outside", "outside", NODES[vantage].ip, vantage, host_network=True)


def from_outside(receiving: str, vantage: str, kind: str = "nodeport", **changes: Any) -> Any:
    port = 30080 if kind == "nodeport" else 80
    address = None if kind == "nodeport" else "198.51.100.100"
    fields: dict[str, Any] = {
        "source_display": "outside the cluster",
        "sources": (outside(vantage),),
        "target_display": f"nodeport 30080 on {receiving}",
        "service": FRONTEND,
        "port": port,
        "source_kind": "external",
        "entry": Entry(kind, port, address, (receiving,) if receiving else ()),
        "agents_known": frozenset(NODES),
        "dns_name": None,
        "dns_fqdn": None,
    }
    return case(**(fields | changes))


class Cluster(RecordedCluster):
    """The recorded cluster, remembering which entries it was asked about."""

    def __init__(self) -> None:
        super().__init__()
        self.entries_asked: list[tuple[str, str, str, int]] = []
        self.probes_sent: list[tuple[str, str, str, int]] = []
        self.entry_nats = {"node-1": NO_LOCAL, "node-2": LOCAL}

    async def entry_nat(self, node: str, kind: str, address: str, port: int, protocol: str) -> Observed[NatView]:
        self.entries_asked.append((node, kind, address, port))
        return await super().entry_nat(node, kind, address, port, protocol)

    async def probe(self, node: str, **kw: Any) -> Any:
        self.probes_sent.append((node, kw["pod_ip"], kw["target"], kw["port"]))
        return await super().probe(node, **kw)


def diagnose(cluster: RecordedCluster, c: Any) -> Any:
    return asyncio.run(run_playbook(c, cluster))


def test_a_nodeport_on_a_node_without_a_local_endpoint_is_nodeport_no_local_endpoints() -> None:
    cluster = Cluster()
    cluster.failing_probes = {NODES["node-1"].ip: "timed_out"}  # the drop: the client's SYN gets no answer
    diagnosis = diagnose(cluster, from_outside("node-1", vantage="node-2"))
    verdict = diagnosis.verdict
    assert (verdict.code, verdict.node, verdict.hop) == (VerdictCode.NODEPORT_NO_LOCAL_ENDPOINTS, "node-1", Hop.DESTINATION_NODE)
    assert "externalTrafficPolicy: Local" in verdict.summary and "node-1 runs none of its 1 ready endpoints" in verdict.summary
    assert "31234" in verdict.summary and "directly does not" in verdict.summary  # the LB health check, the direct client
    assert any("31234" in line for line in verdict.remediation)
    failing = next(s for s in diagnosis.steps if s.name == "ingress node-1: nodeport dispatch")
    assert failing.status == StepStatus.FAIL
    data = failing.evidence[0].data
    assert data["external_policy"] == "Local" and data["local_endpoints"] == 0 and data["drop"] == "DROP"
    assert DROP_RULE in data["rules"]
    # asked of the receiving node about its own address; probed from the vantage node's own namespace
    assert cluster.entries_asked == [("node-1", "nodeport", NODES["node-1"].ip, 30080)]
    assert ("node-2", "", NODES["node-1"].ip, 30080) in cluster.probes_sent


def test_the_same_nodeport_on_the_node_with_the_pod_is_no_fault_found() -> None:
    cluster = Cluster()
    diagnosis = diagnose(cluster, from_outside("node-2", vantage="node-1"))
    assert diagnosis.verdict.code == VerdictCode.NO_FAULT_FOUND, diagnosis.verdict
    passed = next(s for s in diagnosis.steps if s.name == "ingress node-2: nodeport dispatch")
    assert passed.status == StepStatus.PASS and "local endpoint" in passed.summary


def test_a_reading_the_probe_contradicts_is_a_note_not_a_cause() -> None:
    """The rules read as "no local endpoints", yet the client's connection to that node went through."""
    diagnosis = diagnose(Cluster(), from_outside("node-1", vantage="node-2"))
    assert diagnosis.verdict.code == VerdictCode.NO_FAULT_FOUND
    assert any(f.code == VerdictCode.UNDETERMINED and f.node == "node-1" for f in diagnosis.findings)


def test_a_receiving_node_without_the_rules_is_kube_proxy_rules_missing_there() -> None:
    cluster = Cluster()
    cluster.entry_nats["node-1"] = NatView("nftables", False, rules=("# no service-nodeports element for tcp . 30080",))
    cluster.failing_probes = {NODES["node-1"].ip: "refused"}
    verdict = diagnose(cluster, from_outside("node-1", vantage="node-2")).verdict
    assert (verdict.code, verdict.node, verdict.hop) == (VerdictCode.KUBE_PROXY_RULES_MISSING, "node-1", Hop.SERVICE_NAT)


def test_a_dataplane_the_agent_does_not_read_is_never_rules_missing() -> None:
    cluster = Cluster()
    cluster.entry_nats["node-1"] = NatView("ipvs", False)
    cluster.failing_probes = {NODES["node-1"].ip: "timed_out"}
    diagnosis = diagnose(cluster, from_outside("node-1", vantage="node-2"))
    assert diagnosis.verdict.code == VerdictCode.UNDETERMINED
    assert any("not inspected" in f.summary for f in diagnosis.findings)


def test_a_load_balancer_skips_nodes_without_local_endpoints_by_its_health_check() -> None:
    """An LB IP routed to every node: node-1 has no local endpoint, which its health check tells the LB."""
    cluster = Cluster()
    lb = dataclasses.replace(FRONTEND, type="LoadBalancer", external_ips=(), load_balancer_ips=("198.51.100.100",))
    diagnosis = diagnose(cluster, from_outside("", vantage="node-1", kind="load-balancer", service=lb))
    assert diagnosis.verdict.code == VerdictCode.NO_FAULT_FOUND
    assert any(f.code == VerdictCode.NODEPORT_NO_LOCAL_ENDPOINTS and f.node == "node-1" for f in diagnosis.findings)
    assert {n for n, *_ in cluster.entries_asked} == {"node-1", "node-2"}


def test_an_entry_that_fails_with_healthy_rules_stays_undetermined() -> None:
    cluster = Cluster()
    cluster.failing_probes = {NODES["node-2"].ip: "timed_out"}
    diagnosis = diagnose(cluster, from_outside("node-2", vantage="node-1"))
    assert diagnosis.verdict.code == VerdictCode.UNDETERMINED


def test_a_stale_conntrack_entry_on_the_receiving_node_is_named() -> None:
    cluster = Cluster()
    cluster.conntrack_entries = (
        ConntrackEntry(
            "tcp", NODES["node-1"].ip, NODES["node-2"].ip, 40000, 30080, "10.244.2.99", 8080, "ESTABLISHED", 100, ("ASSURED",)
        ),
    )
    cluster.failing_probes = {NODES["node-2"].ip: "timed_out"}
    verdict = diagnose(cluster, from_outside("node-2", vantage="node-1")).verdict
    assert (verdict.code, verdict.node) == (VerdictCode.CONNTRACK_STALE_ENTRY, "node-2")


def test_pod_only_steps_are_passed_by_for_a_client_outside_the_cluster() -> None:
    diagnosis = diagnose(Cluster(), from_outside("node-2", vantage="node-1"))
    pod_network = next(s for s in diagnosis.steps if s.name == "source outside: pod network")
    assert pod_network.status == StepStatus.SKIP
    assert not any(s.name.startswith("source outside: service NAT") for s in diagnosis.steps)  # the VIP is not the way in


def test_a_pod_asking_about_a_nodeport_is_not_judged_as_outside_traffic() -> None:
    """kube-proxy short-circuits pod traffic to a NodePort to every endpoint: no ingress reading applies."""
    cluster = Cluster()
    pod_case = dataclasses.replace(from_outside("node-1", vantage="node-2"), sources=case().sources, source_kind="pod")
    diagnosis = diagnose(cluster, pod_case)
    assert cluster.entries_asked == []
    assert diagnosis.verdict.code == VerdictCode.NO_FAULT_FOUND


def test_a_vantage_node_that_is_the_receiving_node_does_not_contradict_the_drop() -> None:
    """With one agent only, the client is stood in for by the receiving node itself: its probe is local
    traffic there (kube-proxy routes it to every endpoint), so it does not clear the node's drop."""
    verdict = diagnose(Cluster(), from_outside("node-1", vantage="node-1")).verdict
    assert (verdict.code, verdict.node) == (VerdictCode.NODEPORT_NO_LOCAL_ENDPOINTS, "node-1")


def test_a_node_asking_about_its_own_nodeport_is_not_read_as_outside_traffic() -> None:
    cluster = Cluster()
    node_case = dataclasses.replace(from_outside("node-1", vantage="node-1"), source_kind="node")
    diagnosis = diagnose(cluster, node_case)
    assert cluster.entries_asked == []
    assert diagnosis.verdict.code == VerdictCode.NO_FAULT_FOUND


def test_a_node_asking_about_another_nodes_nodeport_meets_its_drop_as_a_client_would() -> None:
    cluster = Cluster()
    cluster.failing_probes = {NODES["node-1"].ip: "timed_out"}
    node_case = dataclasses.replace(from_outside("node-1", vantage="node-2"), source_kind="node")
    verdict = diagnose(cluster, node_case).verdict
    assert (verdict.code, verdict.node) == (VerdictCode.NODEPORT_NO_LOCAL_ENDPOINTS, "node-1")


def _ingress_from(peers: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"namespace": "shop", "name": "api-ingress"},
        "spec": {"podSelector": {"matchLabels": {"app": "api"}}, "policyTypes": ["Ingress"], "ingress": [{"from": peers}]},
    }


def test_the_endpoints_ingress_policy_judges_the_outside_clients_address() -> None:
    """externalTrafficPolicy Local keeps the client's address: an ingress policy admitting only pods denies it."""
    cluster = Cluster()
    cluster.failing_probes = {NODES["node-2"].ip: "timed_out", "10.244.2.7": "timed_out"}
    pods_only = _policies(_ingress_from([{"podSelector": {}}]))
    verdict = diagnose(cluster, from_outside("node-2", vantage="node-1", policy_cluster=pods_only)).verdict
    assert (verdict.code, verdict.hop, verdict.node) == (VerdictCode.NETWORK_POLICY_DENIES_INGRESS, Hop.POLICY, "node-2")


def test_an_ip_block_admitting_the_client_lets_it_in() -> None:
    node_network = _policies(_ingress_from([{"ipBlock": {"cidr": "10.240.0.0/24"}}]))
    diagnosis = diagnose(Cluster(), from_outside("node-2", vantage="node-1", policy_cluster=node_network))
    assert diagnosis.verdict.code == VerdictCode.NO_FAULT_FOUND
    assert next(s for s in diagnosis.steps if s.name == "source outside: policy").status == StepStatus.PASS


def test_an_external_ip_on_a_node_without_endpoints_is_a_finding_when_no_node_was_named() -> None:
    """Which node an external IP reaches is the network's choice: the nodes' rules cannot say it is node-1."""
    diagnosis = diagnose(Cluster(), from_outside("", vantage="node-2", kind="external-ip"))
    assert diagnosis.verdict.code == VerdictCode.NO_FAULT_FOUND
    finding = next(f for f in diagnosis.findings if f.code == VerdictCode.NODEPORT_NO_LOCAL_ENDPOINTS)
    assert finding.node == "node-1" and "sends the address to node-1" in finding.summary


def test_an_external_ip_asked_about_on_a_named_node_without_endpoints_is_the_verdict() -> None:
    cluster = Cluster()
    verdict = diagnose(cluster, from_outside("node-1", vantage="node-2", kind="external-ip")).verdict
    assert (verdict.code, verdict.node) == (VerdictCode.NODEPORT_NO_LOCAL_ENDPOINTS, "node-1")


def test_a_trace_asked_for_from_outside_is_not_started_from_a_pod_that_is_not_there() -> None:
    """The marked probe of a trace starts at a pod's eth0; the vantage node has none, so none is traced
    (rather than a trace that "stops after the source pod" and an UNDETERMINED for a healthy path)."""
    cluster = Cluster()
    diagnosis = diagnose(cluster, from_outside("node-2", vantage="node-1", trace="path"))
    assert diagnosis.verdict.code == VerdictCode.NO_FAULT_FOUND
    assert cluster.traces == []
