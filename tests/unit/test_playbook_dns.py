"""DNS in depth, from hand-written observations: a name outside the cluster resolved from the source
pod, NXDOMAIN vs SERVFAIL vs timeout, the cluster DNS's upstream (UPSTREAM_DNS_FAILED only when the
cluster DNS answers its own names and the upstream does not answer the DNS pods), the ndots expansion
one lookup costs, headless and ExternalName services, and the UDP conntrack race."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from bot.playbook.case import Case, EndpointRef, PodRef
from bot.playbook.engine import Diagnosis, run_playbook
from bot.playbook.models import Hop, StepStatus, VerdictCode
from bot.playbook.observations import ConntrackCounters, Observed, ProbeView
from bot.playbook.steps import dns
from bot.playbook.steps.base import At
from bot.playbook.steps.dns_upstream import CLUSTER_NAME
from bot.playbook.steps.dns_words import answer_words, expansion_evidence, search_expansion
from bot.playbook.steps.observe import ProbeDnsAsk, Seen
from tests.unit.test_playbook_egress import OutsideCluster
from tests.unit.test_playbook_engine import API, DNS, NODES, SVC, WEB, case

WWW = ProbeView("connected", 3.2, rcode="NOERROR", answers=("203.0.113.10",), server="10.96.0.10")
TIMEOUT = ProbeView("timed_out", 1500.0, error="timed out", rcode="NOERROR", server="10.96.0.10")
SERVFAIL = ProbeView("connected", 2004.0, rcode="SERVFAIL", server="10.96.0.10")
NXDOMAIN = ProbeView("connected", 4.0, rcode="NXDOMAIN", server="10.96.0.10")
CLUSTER_OK = ProbeView("connected", 1.0, rcode="NOERROR", answers=("10.96.0.10",), server="10.96.0.10")
SEARCH = ("shop.svc.cluster.local", "svc.cluster.local", "cluster.local")
DNS_B = EndpointRef("10.244.1.3", 53, "node-1", True, PodRef("kube-system", "coredns-2", "10.244.1.3", "node-1"))


class DnsCluster(OutsideCluster):
    """The recorded cluster with its way out, DNS answers per (node, pod, name, server) and conntrack readings."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: dict[tuple[str, str, str, str], ProbeView] = {}
        self.asked: list[tuple[str, str, str, str]] = []
        self.insert_failed_after = 0

    async def probe_dns(self, node: str, *, pod_ip: str, name: str, server: str = "") -> Observed[ProbeView]:
        key = (node, pod_ip, name, server)
        self.asked.append(key)
        if key in self.answers:
            return self._gone(node) or Observed(node, self.answers[key])
        return await super().probe_dns(node, pod_ip=pod_ip, name=name, server=server)

    async def conntrack_stats(self, node: str, *, after: str) -> Observed[ConntrackCounters]:
        return self._gone(node) or Observed(node, ConntrackCounters(100, 262144, self.insert_failed_after))


def external(name: str = "www.example.com", **changes: Any) -> Case:
    """frontend → NAME:80: a name outside the cluster, resolved by the source."""
    base = case(
        target_display=f"{name}:80",
        target_kind="external",
        service=None,
        target_pods=(),
        endpoints=(),
        dns_name=None,
        dns_fqdn=None,
        external_name=name,
    )
    return dataclasses.replace(base, **changes)


def upstream_fault(cluster: DnsCluster, name: str = "www.example.com", *, source: ProbeView = TIMEOUT) -> None:
    """The cluster DNS answers its own names, the external one times out, and so does the upstream."""
    cluster.answers[("node-1", WEB.ip or "", name, "")] = source
    cluster.answers[("node-1", WEB.ip or "", CLUSTER_NAME, "")] = CLUSTER_OK
    cluster.answers[("node-2", DNS.ip, f"{name}.", "")] = dataclasses.replace(TIMEOUT, server="203.0.113.53")


def run(cluster: DnsCluster, c: Case) -> Diagnosis:
    return asyncio.run(run_playbook(c, cluster))


def dns_step(d: Diagnosis) -> Any:
    return next(s for s in d.steps if s.name == f"source {WEB.name}: DNS")


def test_an_unanswering_upstream_is_upstream_dns_failed_on_the_dns_pods_node_with_all_three_answers() -> None:
    cluster = DnsCluster()
    upstream_fault(cluster)
    d = run(cluster, external())
    assert (d.verdict.code, d.verdict.node, d.verdict.hop) == (VerdictCode.UPSTREAM_DNS_FAILED, "node-2", Hop.DNS)
    assert "203.0.113.53" in d.verdict.summary and "www.example.com" in d.verdict.summary
    evidence = [e.summary for e in dns_step(d).evidence]
    assert any("www.example.com does not resolve" in e and "timeout" in e for e in evidence)  # the source's lookup
    assert any(e.startswith(CLUSTER_NAME) and "10.96.0.10" in e for e in evidence)  # the cluster's own name
    assert any("upstream 203.0.113.53 from kube-system/coredns-1 on node-2: timeout" in e for e in evidence)
    assert ("node-2", DNS.ip, "www.example.com.", "") in cluster.asked  # from the DNS pod, with its own resolv.conf


def test_a_servfail_after_the_forward_timeout_is_the_upstream_too_and_says_servfail() -> None:
    cluster = DnsCluster()
    upstream_fault(cluster, source=SERVFAIL)
    d = run(cluster, external())
    assert d.verdict.code == VerdictCode.UPSTREAM_DNS_FAILED
    assert "SERVFAIL" in d.verdict.summary


def test_the_upstream_the_corefile_names_is_asked_directly() -> None:
    cluster = DnsCluster()
    upstream_fault(cluster)
    cluster.answers[("node-2", DNS.ip, "www.example.com.", "192.0.2.53")] = dataclasses.replace(TIMEOUT, server="192.0.2.53")
    d = run(cluster, external(dns_upstreams=("192.0.2.53",)))
    assert d.verdict.code == VerdictCode.UPSTREAM_DNS_FAILED and "192.0.2.53" in d.verdict.summary
    assert ("node-2", DNS.ip, "www.example.com.", "192.0.2.53") in cluster.asked
    assert any("dig @192.0.2.53" in line for line in d.verdict.remediation)


def test_dns_pods_on_two_nodes_name_no_single_node() -> None:
    cluster = DnsCluster()
    upstream_fault(cluster)
    cluster.answers[("node-1", DNS_B.ip, "www.example.com.", "")] = TIMEOUT
    d = run(cluster, external(dns_endpoints=(DNS, DNS_B)))
    assert (d.verdict.code, d.verdict.node, d.verdict.hop) == (VerdictCode.UPSTREAM_DNS_FAILED, None, Hop.DNS)
    assert "does not answer the DNS pods (2 of 2, on node-1, node-2)" in d.verdict.summary


def test_when_the_cluster_dns_fails_its_own_names_too_it_is_not_the_upstream() -> None:
    cluster = DnsCluster()
    upstream_fault(cluster)
    cluster.answers[("node-1", WEB.ip or "", CLUSTER_NAME, "")] = TIMEOUT
    cluster.dns_outcome = "timed_out"  # and each DNS server asked directly is silent
    d = run(cluster, external())
    assert d.verdict.code == VerdictCode.DNS_RESOLUTION_FAILED
    assert VerdictCode.UPSTREAM_DNS_FAILED not in {f.code for f in d.findings}


def test_nxdomain_for_an_external_name_is_a_name_that_does_not_exist_not_a_network_fault() -> None:
    cluster = DnsCluster()
    cluster.answers[("node-1", WEB.ip or "", "nothing-here.example.com", "")] = dataclasses.replace(
        NXDOMAIN, queried_names=("nothing-here.example.com.shop.svc.cluster.local.", "nothing-here.example.com.")
    )
    d = run(cluster, external("nothing-here.example.com"))
    assert (d.verdict.code, d.verdict.hop) == (VerdictCode.DNS_RESOLUTION_FAILED, Hop.DNS)
    assert "does not exist" in d.verdict.summary and "not a network fault" in d.verdict.summary
    assert not any(name == CLUSTER_NAME for _, _, name, _ in cluster.asked)  # nothing followed


def test_an_upstream_that_says_nxdomain_means_the_name_does_not_exist() -> None:
    cluster = DnsCluster()
    upstream_fault(cluster)
    cluster.answers[("node-2", DNS.ip, "www.example.com.", "")] = dataclasses.replace(NXDOMAIN, server="203.0.113.53")
    d = run(cluster, external())
    assert d.verdict.code == VerdictCode.DNS_RESOLUTION_FAILED and "does not exist" in d.verdict.summary


def test_an_upstream_agent_that_does_not_answer_is_not_evidence() -> None:
    cluster = DnsCluster()
    upstream_fault(cluster)
    cluster.down.add("node-2")
    d = run(cluster, external())
    assert (d.verdict.code, d.verdict.node) == (VerdictCode.AGENT_UNREACHABLE, "node-2")
    assert "the query to the upstream resolver from 10.244.2.2 on node-2" in d.verdict.summary
    assert VerdictCode.UPSTREAM_DNS_FAILED not in {f.code for f in d.findings}


def test_nxdomain_servfail_and_timeout_read_differently() -> None:
    assert answer_words(NXDOMAIN).startswith("NXDOMAIN: the name does not exist")
    assert answer_words(SERVFAIL).startswith("SERVFAIL: the server could not get an answer")
    assert answer_words(TIMEOUT) == "timeout: no answer in 1500 ms"
    assert answer_words(ProbeView("refused", rcode="NOERROR")).startswith("refused: nothing listens on port 53")
    assert answer_words(WWW) == "203.0.113.10"


def test_ndots_5_tries_every_search_domain_first_and_costs_eight_queries() -> None:
    assert search_expansion("www.example.com", SEARCH, 5) == (
        "www.example.com.shop.svc.cluster.local.",
        "www.example.com.svc.cluster.local.",
        "www.example.com.cluster.local.",
        "www.example.com.",
    )
    assert search_expansion("www.example.com.", SEARCH, 5) == ("www.example.com.",)
    assert search_expansion("www.example.com", SEARCH, 2)[0] == "www.example.com."
    said = expansion_evidence("www.example.com", "shop", None, "node-1")
    assert said.data["queries"] == 8 and len(said.data["tried"]) == 4
    assert "fewer than ndots:5" in said.summary and "www.example.com. (a trailing dot)" in said.summary
    assert "ndots:2" in said.summary


def test_the_expansion_comes_from_the_resolv_conf_the_agent_read() -> None:
    read = dataclasses.replace(WWW, search=("shop.svc.cluster.local",), ndots=2)
    said = expansion_evidence("www.example.com", "shop", read, "node-1")
    assert said.data["queries"] == 2 and "pod's resolv.conf" in said.summary


def test_an_external_name_that_resolves_puts_its_addresses_on_the_trail_with_the_expansion() -> None:
    c = external()
    at = At.starting(c, WEB)
    ask = ProbeDnsAsk("node-1", WEB.ip or "", "www.example.com")
    outcome = dns.STEP.decide(at, Seen("dns", dns.STEP.needs, {ask: Observed("node-1", WWW)}))
    assert outcome.resolved == ("203.0.113.10",)
    (step,) = outcome.steps
    assert step.status == StepStatus.PASS
    assert any(e.kind == "dns-search" and "8 queries" in e.summary for e in step.evidence)


def test_a_healthy_external_name_is_no_fault_found() -> None:
    cluster = DnsCluster()
    cluster.answers[("node-1", WEB.ip or "", "www.example.com", "")] = WWW
    d = run(cluster, external(target_ip=None, port=80))
    assert d.verdict.code == VerdictCode.NO_FAULT_FOUND
    assert cluster.egress_asked == [("node-1", WEB.ip, "203.0.113.10")]  # the steps after DNS went where it pointed


def test_a_headless_service_answers_its_pods_ips_and_nothing_is_natted() -> None:
    cluster = DnsCluster()
    headless = dataclasses.replace(SVC, cluster_ip="None")
    cluster.answers[("node-1", WEB.ip or "", "api.shop", "")] = dataclasses.replace(WWW, answers=(API.ip or "",))
    nat_asked: list[str] = []

    async def service_nat(node: str, vip: str, port: int, protocol: str) -> Any:
        nat_asked.append(vip)
        raise AssertionError("a headless service has no VIP to read rules for")

    cluster.service_nat = service_nat  # type: ignore[method-assign]
    d = run(cluster, case(service=headless))
    assert d.verdict.code == VerdictCode.NO_FAULT_FOUND and not nat_asked
    assert "headless, the pods' IPs 10.244.2.7 (no VIP" in dns_step(d).summary


def test_an_external_name_service_follows_its_cname_outside() -> None:
    cluster = DnsCluster()
    alias = dataclasses.replace(SVC, cluster_ip="", type="ExternalName", external_name="api.example.com", selector=None)
    cluster.answers[("node-1", WEB.ip or "", "payments-gateway.shop", "")] = dataclasses.replace(
        WWW, answers=("api.example.com.", "203.0.113.10")
    )
    at = At.starting(case(service=alias, endpoints=(), dns_name="payments-gateway.shop"), WEB)
    ask = ProbeDnsAsk("node-1", WEB.ip or "", "payments-gateway.shop")
    outcome = dns.STEP.decide(
        at,
        Seen(
            "dns",
            dns.STEP.needs,
            {ask: Observed("node-1", cluster.answers[("node-1", WEB.ip or "", "payments-gateway.shop", "")])},
        ),
    )
    assert "a CNAME to api.example.com. → 203.0.113.10" in outcome.steps[0].summary
    assert outcome.resolved == ("203.0.113.10",)


def test_an_external_name_services_failing_upstream_is_upstream_dns_failed() -> None:
    cluster = DnsCluster()
    alias = dataclasses.replace(SVC, cluster_ip="", type="ExternalName", external_name="api.example.com", selector=None)
    cluster.answers[("node-1", WEB.ip or "", "payments-gateway.shop", "")] = TIMEOUT
    cluster.answers[("node-1", WEB.ip or "", CLUSTER_NAME, "")] = CLUSTER_OK
    cluster.answers[("node-2", DNS.ip, "api.example.com.", "")] = TIMEOUT
    d = run(cluster, case(service=alias, endpoints=(), target_pods=(), dns_name="payments-gateway.shop"))
    assert (d.verdict.code, d.verdict.node) == (VerdictCode.UPSTREAM_DNS_FAILED, "node-2")


def race_cluster(insert_failed_after: int) -> DnsCluster:
    cluster = DnsCluster()
    cluster.facts["node-1"] = dataclasses.replace(cluster.facts["node-1"], insert_failed=7)
    cluster.insert_failed_after = insert_failed_after
    cluster.answers[("node-1", WEB.ip or "", "api.shop", "")] = dataclasses.replace(
        CLUSTER_OK, answers=("10.96.5.5",), retransmits=1, latency_ms=760.0
    )
    return cluster


def test_a_resent_lookup_while_insert_failed_grows_is_named_the_conntrack_race_with_its_mitigations() -> None:
    d = run(race_cluster(9), case())
    assert d.verdict.code == VerdictCode.NO_FAULT_FOUND  # answered, only late: a finding, not the verdict
    (race,) = [f for f in d.findings if "conntrack race" in f.summary]
    assert (race.code, race.node, race.hop) == (VerdictCode.PACKET_LOSS, "node-1", Hop.SOURCE_NODE)
    assert "7 → 9" in race.summary and "single-request-reopen" in race.summary and "NodeLocal DNSCache" in race.summary


def test_a_resent_lookup_without_insert_failures_is_not_the_race() -> None:
    d = run(race_cluster(7), case())
    assert not [f for f in d.findings if "conntrack race" in f.summary]


def test_the_cases_here_run_on_the_two_recorded_nodes() -> None:
    assert set(NODES) == {"node-1", "node-2"} and DNS.node == "node-2"


def test_an_upstream_that_answers_the_dns_pods_points_at_the_cluster_dns_forwarding() -> None:
    cluster = DnsCluster()
    upstream_fault(cluster, source=SERVFAIL)
    cluster.answers[("node-2", DNS.ip, "www.example.com.", "")] = dataclasses.replace(WWW, server="203.0.113.53")
    d = run(cluster, external())
    assert (d.verdict.code, d.verdict.hop) == (VerdictCode.DNS_RESOLUTION_FAILED, Hop.DNS)
    assert "answers www.example.com to the DNS pods, but the cluster DNS does not pass it on" in d.verdict.summary


def _cluster_name_answered(resolver: ProbeView) -> tuple[DnsCluster, Case]:
    cluster, c = DnsCluster(), case()
    assert c.dns_name and WEB.node
    cluster.answers[(WEB.node, WEB.ip or "", c.dns_name, "")] = resolver
    return cluster, c


def test_a_source_that_does_not_use_the_cluster_dns_is_checked_by_address_and_the_dns_is_not_blamed() -> None:
    """dnsPolicy Default (the DNS pods themselves) or a host-network pod without ClusterFirstWithHostNet:
    its resolv.conf names the node's resolver and no cluster search domain, so a cluster name is NXDOMAIN
    there by design. The path is judged by address; the reply says why the name does not resolve."""
    node_resolver = ProbeView("connected", 3.0, rcode="NXDOMAIN", server="203.0.113.53", search=(), ndots=1)
    cluster, c = _cluster_name_answered(node_resolver)
    d = run(cluster, c)
    assert d.verdict.code is VerdictCode.NO_FAULT_FOUND
    assert dns_step(d).status is StepStatus.WARN
    assert any(
        f.code is VerdictCode.DNS_RESOLUTION_FAILED
        and "does not use the cluster DNS" in f.summary
        and "ClusterFirst" in f.summary
        for f in d.findings
    )


def test_a_cluster_first_source_whose_cluster_name_does_not_resolve_is_still_followed_to_the_dns_servers() -> None:
    cluster_first = ProbeView("connected", 3.0, rcode="NXDOMAIN", server="10.96.0.10", search=SEARCH, ndots=5)
    cluster, c = _cluster_name_answered(cluster_first)
    d = run(cluster, c)
    assert dns_step(d).status is StepStatus.FAIL
    assert not any("does not use the cluster DNS" in f.summary for f in d.findings)


def test_a_name_asked_about_without_a_port_is_not_said_to_answer_nothing_was_probed() -> None:
    """`frontend → www.example.com` with no port: the checks run, no connection can be tried, and the
    reply says so instead of "every probe succeeded"; with a port the probe runs and says it answered."""
    cluster = DnsCluster()
    cluster.answers[("node-1", WEB.ip or "", "www.example.com", "")] = WWW
    d = run(cluster, external(target_ip=None, port=None))
    assert d.verdict.code == VerdictCode.NO_FAULT_FOUND
    assert "nothing was probed" in d.verdict.summary and "every probe succeeded" not in d.verdict.summary
    probes = next(s for s in d.steps if s.kind == "source: probes")
    assert probes.status == StepStatus.SKIP and ":PORT" in probes.summary
    with_port = run(cluster, external(target_ip=None, port=80))
    assert "every probe succeeded" in with_port.verdict.summary


# Nodes and host-network pods: which resolver they use decides what a failed lookup means.

NODE_1 = PodRef("", "node-1", "10.240.0.11", "node-1", host_network=True, dns_policy="")
NODE_RESOLVER_NXDOMAIN = ProbeView("connected", 3.0, rcode="NXDOMAIN", server="203.0.113.53", search=(), ndots=1)


def _from(source: PodRef, **changes: Any) -> Case:
    return case(sources=(source,), source_kind="node" if not source.namespace else "pod", dns_endpoints=(DNS,), **changes)


def _step_of(d: Diagnosis, source: PodRef) -> Any:
    return next(s for s in d.steps if s.name == f"source {source.name}: DNS")


def test_a_node_looks_a_service_up_through_its_own_resolver_and_a_name_it_cannot_resolve_is_no_fault() -> None:
    """A node resolves with its own resolv.conf (asked from the node's namespace: no pod IP), which is
    not the cluster DNS: the service name is NXDOMAIN there by design. The target came from the API, so
    the step passes, says the name would not resolve from the node and that the path was checked by
    address, and no DNS_RESOLUTION_FAILED is raised, as verdict or as finding."""
    cluster, c = DnsCluster(), _from(NODE_1)
    assert c.dns_name
    cluster.answers[("node-1", "", c.dns_name, "")] = NODE_RESOLVER_NXDOMAIN
    d = run(cluster, c)
    assert ("node-1", "", c.dns_name, "") in cluster.asked
    assert d.verdict.code is VerdictCode.NO_FAULT_FOUND
    step = _step_of(d, NODE_1)
    assert step.status is StepStatus.PASS
    assert "would not resolve from node-1" in step.summary and "checked directly by address" in step.summary
    assert "NXDOMAIN" in step.summary and "203.0.113.53" in step.summary
    assert not any(f.code is VerdictCode.DNS_RESOLUTION_FAILED for f in d.findings)


def test_a_node_whose_resolver_is_the_cluster_dns_and_fails_is_followed_like_a_pod() -> None:
    """What decides is the resolv.conf the agent read: a node pointed at the cluster DNS (its search list
    names svc.cluster.local) that cannot resolve a service name is a real DNS failure, not excused."""
    cluster, c = DnsCluster(), _from(NODE_1)
    assert c.dns_name
    cluster.answers[("node-1", "", c.dns_name, "")] = ProbeView(
        "connected", 3.0, rcode="NXDOMAIN", server="10.96.0.10", search=SEARCH, ndots=5
    )
    d = run(cluster, c)
    assert _step_of(d, NODE_1).status is StepStatus.FAIL
    assert "would not resolve from node-1" not in _step_of(d, NODE_1).summary


def test_a_host_network_pod_with_cluster_first_with_host_net_asks_the_cluster_dns() -> None:
    """kubelet writes ClusterFirstWithHostNet pods the cluster DNS's resolv.conf, which the node's
    namespace does not show: the service's full name is asked of a cluster DNS server from the node's
    namespace, and its failure is a DNS failure (followed to the servers), not "expected"."""
    exporter = PodRef(
        "monitoring", "exporter-1", "10.240.0.11", "node-1", host_network=True, dns_policy="ClusterFirstWithHostNet"
    )
    c = _from(exporter)
    assert c.dns_fqdn
    asked = ("node-1", "", c.dns_fqdn, DNS.ip)
    answered = DnsCluster()
    answered.answers[asked] = dataclasses.replace(CLUSTER_OK, answers=("10.96.5.5",), server=DNS.ip)
    d = run(answered, c)
    assert asked in answered.asked and ("node-1", "", c.dns_name, "") not in answered.asked
    assert _step_of(d, exporter).status is StepStatus.PASS and "ClusterFirstWithHostNet" in _step_of(d, exporter).summary
    failing = DnsCluster()
    failing.answers[asked] = dataclasses.replace(NXDOMAIN, server=DNS.ip)
    d = run(failing, c)
    assert _step_of(d, exporter).status is StepStatus.FAIL


def test_a_host_network_pod_with_cluster_first_uses_the_node_resolver_and_is_not_blamed() -> None:
    """ClusterFirst on a host-network pod falls back to the node's resolver (kubelet's rule): the lookup
    goes through the node's resolv.conf, and a cluster name it cannot resolve is expected."""
    exporter = PodRef("monitoring", "exporter-1", "10.240.0.11", "node-1", host_network=True)
    cluster, c = DnsCluster(), _from(exporter)
    assert c.dns_name
    cluster.answers[("node-1", "", c.dns_name, "")] = NODE_RESOLVER_NXDOMAIN
    d = run(cluster, c)
    assert ("node-1", "", c.dns_name, "") in cluster.asked
    assert d.verdict.code is VerdictCode.NO_FAULT_FOUND
    assert _step_of(d, exporter).status is StepStatus.PASS
    assert not any(f.code is VerdictCode.DNS_RESOLUTION_FAILED for f in d.findings)


def test_a_client_outside_the_cluster_is_not_asked_to_resolve_the_services_cluster_name() -> None:
    """An outside client (played from a node's namespace) connects to an address; it never resolves
    svc.cluster.local names, so no DNS lookup is made for it and no DNS step is reported."""
    client = PodRef("outside", "outside", "10.240.0.11", "node-1", host_network=True, dns_policy="")
    cluster, c = DnsCluster(), dataclasses.replace(_from(client), source_kind="external")
    d = run(cluster, c)
    assert not any(name == c.dns_name for _, _, name, _ in cluster.asked)
    assert not any(s.name == "source outside: DNS" for s in d.steps)
