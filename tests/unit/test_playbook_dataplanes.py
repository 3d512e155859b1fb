"""Service NAT on a node whose dataplane kubereach does not inspect (IPVS, Cilium's eBPF load
balancer, other eBPF programs, nothing recognised): said out loud, never read as missing or stale
kube-proxy rules. Driven by the recorded healthy cluster of `test_playbook_engine`."""

from __future__ import annotations

import dataclasses

import pytest

from bot.playbook.models import Hop, VerdictCode
from bot.playbook.observations import NatView
from tests.unit.test_playbook_engine import RecordedCluster, verdict_of

KUBE_PROXY_CODES = {VerdictCode.KUBE_PROXY_RULES_MISSING, VerdictCode.KUBE_PROXY_RULES_STALE}

# What the agent reports for each (GetNodeInfo's dataplane and evidence), and the words the reply uses.
FOREIGN = [
    ("cilium-ebpf", ("link cilium_host", "link cilium_net", "link cilium_vxlan"), "Cilium's eBPF service load balancer"),
    ("ipvs", ("link kube-ipvs0", "12 IPVS virtual servers in /proc/net/ip_vs"), "kube-proxy's IPVS mode"),
    ("ebpf", ("eth0: tc ingress bpf lb_ingress",), "eBPF programs attached to the node's interfaces"),
    (
        "none",
        ("no kube-proxy rules (no nftables table ip kube-proxy, no KUBE-SERVICES chain, no IPVS)",),
        "something kubereach does not recognise",
    ),
]


def _cluster_on(dataplane: str, evidence: tuple[str, ...]) -> RecordedCluster:
    """node-1 (the source's node) has no kube-proxy rules: the agent's NAT read finds nothing."""
    cluster = RecordedCluster()
    cluster.facts["node-1"] = dataclasses.replace(
        cluster.facts["node-1"], proxy_mode="none", dataplane=dataplane, dataplane_evidence=evidence
    )
    cluster.nat = NatView("none", False, rules=("# no kube-proxy rules found (no nftables table, KUBE-SERVICES or IPVS)",))
    return cluster


@pytest.mark.parametrize(("dataplane", "evidence", "words"), FOREIGN)
def test_service_traffic_through_a_foreign_dataplane_that_works_is_no_fault_found_with_the_note(
    dataplane: str, evidence: tuple[str, ...], words: str
) -> None:
    diagnosis = verdict_of(_cluster_on(dataplane, evidence))
    assert diagnosis.verdict.code == VerdictCode.NO_FAULT_FOUND
    assert not KUBE_PROXY_CODES & {f.code for f in diagnosis.findings}
    (note,) = [f for f in diagnosis.findings if f.hop == Hop.SERVICE_NAT]
    assert note.node == "node-1"
    assert note.summary.startswith(f"service NAT on node-1 is done by {words}; not inspected")
    assert evidence[0] in note.summary
    step = next(s for s in diagnosis.steps if s.name.endswith("service NAT"))
    assert step.status.value == "warn"
    assert step.evidence[0].data["dataplane"] == dataplane


@pytest.mark.parametrize(("dataplane", "evidence", "words"), FOREIGN)
def test_a_failing_vip_through_a_foreign_dataplane_is_undetermined_naming_what_was_not_inspected(
    dataplane: str, evidence: tuple[str, ...], words: str
) -> None:
    cluster = _cluster_on(dataplane, evidence)
    cluster.failing_probes = {"10.96.5.5": "timed_out"}
    diagnosis = verdict_of(cluster)
    assert diagnosis.verdict.code == VerdictCode.UNDETERMINED
    assert f"service NAT on node-1 is done by {words}; not inspected" in diagnosis.verdict.summary
    assert not KUBE_PROXY_CODES & {f.code for f in diagnosis.findings}


@pytest.mark.parametrize("dataplane", ["kube-proxy-iptables", ""])
def test_kube_proxys_own_rules_or_an_agent_that_does_not_say_are_read_as_before(dataplane: str) -> None:
    """The negative control: the same missing rules on a kube-proxy node are the cause."""
    cluster = RecordedCluster()
    cluster.facts["node-1"] = dataclasses.replace(cluster.facts["node-1"], dataplane=dataplane)
    cluster.nat = NatView("iptables", False)
    cluster.failing_probes = {"10.96.5.5": "timed_out"}
    diagnosis = verdict_of(cluster)
    assert (diagnosis.verdict.code, diagnosis.verdict.node) == (VerdictCode.KUBE_PROXY_RULES_MISSING, "node-1")
