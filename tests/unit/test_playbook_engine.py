"""The playbook's reasoning, driven by hand-written observations (no lab, no agents).

Each test describes what the nodes show and states the verdict a person would reach from it. The
observer answers like a healthy two-node flannel cluster unless a test changes one observation.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.playbook.case import Case, EndpointRef, NodeRef, PodRef, ServiceRef
from bot.playbook.engine import run_playbook
from bot.playbook.models import Hop, VerdictCode
from bot.playbook.observations import (
    ConntrackCounters,
    ConntrackEntry,
    ConntrackView,
    FilterHit,
    FilterView,
    Link,
    ListeningSocket,
    NatEndpoint,
    NatView,
    NodeFacts,
    Observed,
    OverlayDevice,
    OverlayHop,
    PodNetwork,
    ProbeView,
    RouteInfo,
    RouteLookup,
    TracePlan,
    TraceRun,
)
from nodeagent.checks.nat.nftables import nft_service_nat, parse_nft_ruleset

NODES = {"node-1": NodeRef("node-1", "10.240.0.11", "10.244.1.0/24"), "node-2": NodeRef("node-2", "10.240.0.12", "10.244.2.0/24")}
WEB = PodRef("shop", "web-1", "10.244.1.5", "node-1", container_ports=(("http", 8080, "TCP"),))
API = PodRef("shop", "api-1", "10.244.2.7", "node-2", container_ports=(("http", 8080, "TCP"),))
SVC = ServiceRef("shop", "api", "10.96.5.5", {"app": "api"}, 8080, "http", "http")
DNS = EndpointRef("10.244.2.2", 53, "node-2", True, PodRef("kube-system", "coredns-1", "10.244.2.2", "node-2"))


def case(**changes: Any) -> Case:
    base = Case(
        source_display="deploy/web in shop",
        sources=(WEB,),
        source_total=1,
        target_display="svc/api in shop",
        target_kind="service",
        protocol="TCP",
        port=8080,
        service=SVC,
        target_pods=(API,),
        endpoints=(EndpointRef(API.ip or "", 8080, "node-2", True, API),),
        dns_name="api.shop",
        dns_fqdn="api.shop.svc.cluster.local.",
        dns_endpoints=(DNS,),
        nodes=NODES,
    )
    return dataclasses.replace(base, **changes)


def link(name: str, **kw: Any) -> Link:
    return Link(
        name=name, mtu=kw.pop("mtu", 1450), oper_state=kw.pop("oper_state", "UP"), admin_up=kw.pop("admin_up", True), **kw
    )


class RecordedCluster:
    """An Observer over plain dictionaries: healthy unless a test says otherwise."""

    def __init__(self) -> None:
        self.facts = {
            n: NodeFacts(
                n,
                proxy_mode="iptables",
                conntrack_count=100,
                conntrack_max=262144,
                bridges=(link("cni0"),),
                overlays=(OverlayDevice(link("flannel.1"), 1, 8472),),
            )
            for n in NODES
        }
        self.pods = {
            ip: PodNetwork(
                ip,
                f"ns-{ip}",
                link("eth0", addresses=(f"{ip}/24",)),
                (RouteInfo("0.0.0.0/0", f"10.244.{ip.split('.')[2]}.1", "eth0"),),
                link(f"veth{ip[-1]}", master="cni0"),
            )
            for ip in ("10.244.1.5", "10.244.2.7", "10.244.2.2")
        }
        self.nat = NatView("iptables", True, (NatEndpoint("10.244.2.7", 8080),))
        self.conntrack_entries: tuple[ConntrackEntry, ...] = ()
        self.failing_probes: dict[str, str] = {}
        self.dns_outcome = "connected"
        self.listening = True
        self.forward_drops: dict[str, tuple[FilterHit, ...]] = {}
        self.down: set[str] = set()
        self.routes: dict[tuple[str, str], RouteLookup] = {}
        self.wire: Callable[[TracePlan], TraceRun] = lambda plan: TraceRun(tuple(None for _ in plan.points))
        """What the captures of a trace see (default: nothing recorded, every point not checked)."""
        self.traces: list[TracePlan] = []
        self.entry_nats: dict[str, NatView] = {}
        """What each node's rules say about an entry from outside (default: dispatched like `nat`)."""

    def _gone(self, node: str) -> Observed[Any] | None:
        return (
            Observed(node, error=f"the agent on {node} did not answer", error_kind="unreachable") if node in self.down else None
        )

    async def node_facts(self, node: str) -> Observed[NodeFacts]:
        return self._gone(node) or Observed(node, self.facts[node])

    async def locate_pod(self, node: str, pod_ip: str) -> Observed[PodNetwork]:
        return self._gone(node) or Observed(node, self.pods[pod_ip])

    async def route(self, node: str, destination: str, *, source: str = "", pod_ip: str = "") -> Observed[RouteLookup]:
        if (gone := self._gone(node)) is not None:
            return gone
        if (node, destination) in self.routes:
            return Observed(node, self.routes[(node, destination)])
        if any(n.ip == destination for n in NODES.values()):
            return Observed(node, RouteLookup(RouteInfo("10.240.0.0/24", "", "eth0")))
        other = "node-2" if node == "node-1" else "node-1"
        hop = OverlayHop(
            "flannel.1", True, NODES[other].pod_cidr.replace(".0/24", ".0"), "0e:00:00:00:00:02", ("PERMANENT",), NODES[other].ip
        )
        return Observed(node, RouteLookup(RouteInfo(NODES[other].pod_cidr, hop.next_hop, "flannel.1"), overlay=hop))

    async def service_nat(self, node: str, vip: str, port: int, protocol: str) -> Observed[NatView]:
        return self._gone(node) or Observed(node, self.nat)

    async def entry_nat(self, node: str, kind: str, address: str, port: int, protocol: str) -> Observed[NatView]:
        default = dataclasses.replace(self.nat, entry=kind, external_policy="Cluster")
        return self._gone(node) or Observed(node, self.entry_nats.get(node, default))

    async def conntrack(
        self, node: str, *, protocol: str, orig_src: str, orig_dst: str, orig_dport: int
    ) -> Observed[ConntrackView]:
        return self._gone(node) or Observed(node, ConntrackView(len(self.conntrack_entries), self.conntrack_entries))

    async def conntrack_stats(self, node: str, *, after: str) -> Observed[ConntrackCounters]:
        facts = self.facts[node]
        return self._gone(node) or Observed(
            node, ConntrackCounters(facts.conntrack_count, facts.conntrack_max, facts.insert_failed)
        )

    async def filter_state(
        self, node: str, *, src: str, dst: str, protocol: str, dport: int, interfaces: tuple[str, ...]
    ) -> Observed[FilterView]:
        return self._gone(node) or Observed(
            node, FilterView("ACCEPT", self.forward_drops.get(node, ()), True, {i: 0 for i in interfaces})
        )

    async def sockets(self, node: str, pod_ip: str, port: int, protocol: str) -> Observed[tuple[ListeningSocket, ...]]:
        return self._gone(node) or Observed(node, (ListeningSocket("TCP", "0.0.0.0", port),) if self.listening else ())

    async def probe(
        self, node: str, *, pod_ip: str, target: str, port: int, protocol: str, timeout_ms: int | None = None
    ) -> Observed[ProbeView]:
        return self._gone(node) or Observed(node, ProbeView(self.failing_probes.get(target, "connected")))

    async def probe_dns(self, node: str, *, pod_ip: str, name: str, server: str = "") -> Observed[ProbeView]:
        outcome = self.dns_outcome
        return self._gone(node) or Observed(
            node,
            ProbeView(
                outcome,
                rcode="NOERROR" if outcome == "connected" else "",
                answers=("10.96.5.5",) if outcome == "connected" else (),
            ),
        )

    async def trace(self, plan: TracePlan) -> TraceRun:
        self.traces.append(plan)
        return self.wire(plan)


def verdict_of(cluster: RecordedCluster, c: Case | None = None) -> Any:
    return asyncio.run(run_playbook(c or case(), cluster))


def test_a_healthy_path_is_no_fault_found_with_every_step_passing() -> None:
    diagnosis = verdict_of(RecordedCluster())
    assert diagnosis.verdict.code == VerdictCode.NO_FAULT_FOUND
    assert {s.status.value for s in diagnosis.steps} <= {"pass", "skip"}  # policy is skipped: no policies given


def test_the_first_cause_on_the_path_wins_and_later_ones_become_findings() -> None:
    cluster = RecordedCluster()
    cluster.pods["10.244.1.5"] = dataclasses.replace(cluster.pods["10.244.1.5"], routes=())  # the source pod cannot send
    cluster.forward_drops["node-2"] = (FilterHit("filter", "FORWARD", "-P FORWARD DROP"),)  # and the destination node drops
    cluster.failing_probes = {"10.96.5.5": "unreachable", "10.244.2.7": "unreachable"}
    diagnosis = verdict_of(cluster)
    assert (diagnosis.verdict.code, diagnosis.verdict.node, diagnosis.verdict.hop) == (
        VerdictCode.POD_ROUTE_MISSING,
        "node-1",
        Hop.SOURCE_POD,
    )
    assert VerdictCode.FORWARD_CHAIN_DROPS in {f.code for f in diagnosis.findings}


def test_rules_that_dnat_to_endpoints_the_api_no_longer_has_are_stale() -> None:
    cluster = RecordedCluster()
    cluster.nat = NatView("iptables", True, (NatEndpoint("10.244.2.99", 8080),))
    cluster.failing_probes = {"10.96.5.5": "timed_out"}
    diagnosis = verdict_of(cluster)
    assert (diagnosis.verdict.code, diagnosis.verdict.node, diagnosis.verdict.hop) == (
        VerdictCode.KUBE_PROXY_RULES_STALE,
        "node-1",
        Hop.SERVICE_NAT,
    )
    assert "10.244.2.99" in diagnosis.verdict.summary and "10.244.2.7" in diagnosis.verdict.summary


def test_a_replied_udp_entry_to_a_vanished_endpoint_is_stale_but_closing_tcp_ones_are_not() -> None:
    closing = ConntrackEntry(
        "tcp", "10.244.1.5", "10.96.5.5", 40000, 8080, "10.244.2.50", 8080, "TIME_WAIT", 100, ("SEEN_REPLY", "ASSURED")
    )
    cluster = RecordedCluster()
    cluster.conntrack_entries = (closing,)
    assert verdict_of(cluster).verdict.code == VerdictCode.NO_FAULT_FOUND
    stale = ConntrackEntry(
        "udp", "10.244.1.5", "10.96.5.5", 5353, 53, "10.244.2.50", 53, "", 600, ("SEEN_REPLY", "ASSURED", "DST_NAT")
    )
    cluster.conntrack_entries = (stale,)
    diagnosis = verdict_of(cluster, case(protocol="UDP"))
    assert (diagnosis.verdict.code, diagnosis.verdict.node) == (VerdictCode.CONNTRACK_STALE_ENTRY, "node-1")


def test_an_established_tcp_entry_to_a_vanished_endpoint_is_the_cause_only_while_new_connections_work() -> None:
    held = ConntrackEntry(
        "tcp", "10.244.1.5", "10.96.5.5", 40000, 8080, "10.244.2.50", 8080, "ESTABLISHED", 400000, ("SEEN_REPLY", "ASSURED")
    )
    cluster = RecordedCluster()
    cluster.conntrack_entries = (held,)
    hanging = verdict_of(cluster).verdict
    assert (hanging.code, hanging.node) == (VerdictCode.CONNTRACK_STALE_ENTRY, "node-1")
    assert "new connections work" in hanging.summary
    # New connections fail as well, because node-2's table is full: that is the cause, the entry a finding.
    cluster.facts["node-2"] = dataclasses.replace(cluster.facts["node-2"], conntrack_count=65536, conntrack_max=65536)
    cluster.failing_probes = {"10.96.5.5": "timed_out", "10.244.2.7": "timed_out"}
    diagnosis = verdict_of(cluster)
    assert (diagnosis.verdict.code, diagnosis.verdict.node) == (VerdictCode.CONNTRACK_TABLE_FULL, "node-2")
    (finding,) = [f for f in diagnosis.findings if f.code == VerdictCode.CONNTRACK_STALE_ENTRY]
    assert "new connections fail for another reason" in finding.summary


def test_a_dns_failure_caused_by_the_path_to_the_dns_server_names_the_path() -> None:
    cluster = RecordedCluster()
    cluster.dns_outcome = "timed_out"
    cluster.routes[("node-1", "10.244.2.2")] = RouteLookup(RouteInfo(type="none"), error="Network is unreachable")
    diagnosis = verdict_of(cluster)
    assert (diagnosis.verdict.code, diagnosis.verdict.node, diagnosis.verdict.hop) == (
        VerdictCode.NODE_ROUTE_MISSING,
        "node-1",
        Hop.UNDERLAY,
    )


def test_a_dns_failure_with_a_healthy_path_and_silent_servers_is_the_cluster_dns() -> None:
    cluster = RecordedCluster()
    cluster.dns_outcome = "refused"
    cluster.listening = False  # the DNS server's port is closed
    diagnosis = verdict_of(cluster)
    assert (diagnosis.verdict.code, diagnosis.verdict.hop) == (VerdictCode.DNS_RESOLUTION_FAILED, Hop.DNS)


def test_when_only_some_source_pods_fail_the_verdict_says_which_nodes() -> None:
    web2 = PodRef("shop", "web-2", "10.244.2.9", "node-2", container_ports=(("http", 8080, "TCP"),))
    cluster = RecordedCluster()
    cluster.pods["10.244.2.9"] = dataclasses.replace(cluster.pods["10.244.2.7"], pod_ip="10.244.2.9")
    cluster.facts["node-1"] = dataclasses.replace(cluster.facts["node-1"], ip_forward=False)
    diagnosis = verdict_of(cluster, case(sources=(WEB, web2), source_total=2))
    assert diagnosis.verdict.code == VerdictCode.IP_FORWARDING_DISABLED
    assert diagnosis.verdict.summary.startswith("only pods on node-1 cannot reach svc/api in shop (pods on node-2 can)")


def test_an_unreachable_agent_on_the_destination_is_the_verdict_only_when_nothing_else_explains_the_failure() -> None:
    cluster = RecordedCluster()
    cluster.down = {"node-2"}
    cluster.failing_probes = {"10.96.5.5": "timed_out", "10.244.2.7": "timed_out"}
    diagnosis = verdict_of(cluster)
    assert (diagnosis.verdict.code, diagnosis.verdict.node) == (VerdictCode.AGENT_UNREACHABLE, "node-2")
    assert "not checked" in diagnosis.verdict.summary
    cluster.down = set()
    cluster.listening = False
    assert verdict_of(cluster).verdict.code == VerdictCode.DESTINATION_NOT_LISTENING


def test_a_service_without_endpoints_is_decided_from_the_api_before_any_probe() -> None:
    diagnosis = verdict_of(RecordedCluster(), case(endpoints=(), target_pods=()))
    assert (diagnosis.verdict.code, diagnosis.verdict.hop) == (VerdictCode.SERVICE_NO_ENDPOINTS, Hop.API)
    assert "matches no pod" in diagnosis.verdict.summary


def test_when_failing_and_fine_source_pods_share_a_node_the_verdict_names_the_pods_not_the_nodes() -> None:
    web3 = PodRef("shop", "web-3", "10.244.1.6", "node-1", container_ports=(("http", 8080, "TCP"),))
    cluster = RecordedCluster()
    broken = cluster.pods["10.244.1.5"]
    cluster.pods["10.244.1.6"] = dataclasses.replace(
        broken, pod_ip="10.244.1.6", host_peer=dataclasses.replace(broken.host_peer, name="veth6", admin_up=False)
    )
    diagnosis = verdict_of(cluster, case(sources=(WEB, web3), source_total=2))
    assert diagnosis.verdict.code == VerdictCode.POD_INTERFACE_DOWN
    assert diagnosis.verdict.summary.startswith("1 of the 2 source pods cannot reach svc/api in shop (shop/web-3): ")


def test_a_service_empty_because_its_running_pod_has_no_ip_is_that_pods_missing_ip() -> None:
    no_ip = dataclasses.replace(API, ip=None)
    diagnosis = verdict_of(RecordedCluster(), case(endpoints=(), target_pods=(no_ip,)))
    verdict = diagnosis.verdict
    assert (verdict.code, verdict.node, verdict.hop) == (VerdictCode.POD_HAS_NO_IP, "node-2", Hop.DESTINATION_POD)
    assert "shop/api-1 is Running without an IP address" in verdict.summary
    # a pod that is not running yet is not this: the service's emptiness is said as it is
    pending = dataclasses.replace(no_ip, phase="Pending")
    waiting = verdict_of(RecordedCluster(), case(endpoints=(), target_pods=(pending,)))
    assert waiting.verdict.code == VerdictCode.SERVICE_NO_ENDPOINTS


# ------------------------------------------------------------------------------------------------
# The verdict trusts what it saw: a service-NAT reading the probes contradict is a note
# ------------------------------------------------------------------------------------------------

KUBE_PROXY_CODES = {VerdictCode.KUBE_PROXY_RULES_MISSING, VerdictCode.KUBE_PROXY_RULES_STALE}

# What the agent answered before it read kube-proxy 1.36's `dnat ip to numgen random mod N map {…}`
# (the netlink reader took the data map for a verdict map): programmed, but DNAT to nothing. Real
# kube-proxy v1.36.2 had written the rules and the same investigation's probes reached the VIP.
MISREAD_1_36 = NatView(
    "nftables",
    True,
    (),
    rules=(
        "service-ips: 10.96.5.5 . tcp . 8080 : goto service-WEZGB4Y6-shop/api/tcp/http",
        "service-WEZGB4Y6-shop/api/tcp/http: meta l4proto tcp numgen random mod 1 vmap {  } dnat to ",
    ),
    service_chain="service-WEZGB4Y6-shop/api/tcp/http",
)


def test_a_nat_reading_the_successful_probes_contradict_is_a_note_and_the_probes_result_stands() -> None:
    cluster = RecordedCluster()
    cluster.nat = MISREAD_1_36
    diagnosis = verdict_of(cluster)
    assert diagnosis.verdict.code == VerdictCode.NO_FAULT_FOUND
    assert not KUBE_PROXY_CODES & {f.code for f in diagnosis.findings}
    (note,) = [f for f in diagnosis.findings if f.hop == Hop.SERVICE_NAT]
    assert (note.code, note.node) == (VerdictCode.UNDETERMINED, "node-1")
    assert "the rules on node-1 could not be read as expected" in note.summary
    nat_step = next(s for s in diagnosis.steps if s.name.endswith("service NAT"))
    assert nat_step.status.value == "warn"


def test_rules_read_as_missing_while_the_vip_answers_are_not_the_verdict_either() -> None:
    cluster = RecordedCluster()
    cluster.nat = NatView("nftables", False)
    diagnosis = verdict_of(cluster)
    assert diagnosis.verdict.code == VerdictCode.NO_FAULT_FOUND
    assert any("could not be read as expected" in f.summary for f in diagnosis.findings)


def test_the_same_reading_with_the_vip_failing_is_still_the_cause() -> None:
    cluster = RecordedCluster()
    cluster.nat = MISREAD_1_36
    cluster.failing_probes = {"10.96.5.5": "timed_out"}
    diagnosis = verdict_of(cluster)
    assert (diagnosis.verdict.code, diagnosis.verdict.node) == (VerdictCode.KUBE_PROXY_RULES_STALE, "node-1")
    cluster.nat = NatView("iptables", False)
    assert verdict_of(cluster).verdict.code == VerdictCode.KUBE_PROXY_RULES_MISSING


def test_rules_missing_one_ready_endpoint_stay_stale_though_the_vip_answers() -> None:
    """A VIP probe reaches one endpoint picked at random: it does not contradict rules that still
    send to some ready endpoints but miss another."""
    second = PodRef("shop", "api-2", "10.244.2.8", "node-2", container_ports=(("http", 8080, "TCP"),))
    cluster = RecordedCluster()
    cluster.pods["10.244.2.8"] = dataclasses.replace(cluster.pods["10.244.2.7"], pod_ip="10.244.2.8")
    c = case(
        target_pods=(API, second),
        endpoints=(EndpointRef(API.ip or "", 8080, "node-2", True, API), EndpointRef("10.244.2.8", 8080, "node-2", True, second)),
    )
    diagnosis = verdict_of(cluster, c)
    assert diagnosis.verdict.code == VerdictCode.KUBE_PROXY_RULES_STALE
    assert "10.244.2.8:8080" in diagnosis.verdict.summary


def test_an_unreadable_layout_is_said_and_never_becomes_missing_or_stale() -> None:
    cluster = RecordedCluster()
    cluster.nat = NatView(
        "nftables",
        True,
        layout="unknown",
        unreadable="service NAT uses a layout kubereach does not read yet: service-…: meta l4proto tcp dnat ip to jhash …",
    )
    diagnosis = verdict_of(cluster)
    assert diagnosis.verdict.code == VerdictCode.NO_FAULT_FOUND
    (note,) = [f for f in diagnosis.findings if f.hop == Hop.SERVICE_NAT]
    assert "service NAT on node-1 uses a layout kubereach does not read yet" in note.summary
    cluster.failing_probes = {"10.96.5.5": "timed_out"}
    failing = verdict_of(cluster)
    assert failing.verdict.code not in KUBE_PROXY_CODES
    assert not KUBE_PROXY_CODES & {f.code for f in failing.findings}


def test_the_real_1_36_rules_read_by_the_agent_pass_the_service_nat_step() -> None:
    """The agent's answer on the recorded kube-proxy v1.36.2 table for shop/redis, end to end."""
    recorded = Path(__file__).parent / "fixtures" / "kube-proxy-v1.36.2" / "node-1.ip-kube-proxy.json"
    nat = nft_service_nat(parse_nft_ruleset(json.loads(recorded.read_text())), "10.111.113.82", 6379, "TCP")
    redis = PodRef("shop", "redis-0", "10.244.2.4", "node-2", container_ports=(("redis", 6379, "TCP"),))
    cluster = RecordedCluster()
    cluster.pods["10.244.2.4"] = dataclasses.replace(cluster.pods["10.244.2.7"], pod_ip="10.244.2.4")
    cluster.nat = NatView(
        nat.mode,
        nat.programmed,
        tuple(NatEndpoint(e.ip, e.port, e.probability) for e in nat.endpoints),
        nat.no_endpoints_action or "",
        nat.service_name or "",
        nat.service_chain or "",
        nat.rules,
        nat.layout,
        nat.unreadable,
    )
    c = case(
        target_display="svc/redis in shop",
        port=6379,
        service=ServiceRef("shop", "redis", "10.111.113.82", {"app": "redis"}, 6379, 6379, "redis"),
        target_pods=(redis,),
        endpoints=(EndpointRef("10.244.2.4", 6379, "node-2", True, redis),),
        dns_name="redis.shop",
    )
    diagnosis = verdict_of(cluster, c)
    assert diagnosis.verdict.code == VerdictCode.NO_FAULT_FOUND
    nat_step = next(s for s in diagnosis.steps if s.name.endswith("service NAT"))
    assert nat_step.status.value == "pass"
    assert not [f for f in diagnosis.findings if f.hop == Hop.SERVICE_NAT]


def terminating(endpoint: EndpointRef) -> EndpointRef:
    """The endpoint of a pod in its grace period, as the EndpointSlice controller publishes it."""
    return dataclasses.replace(endpoint, ready=False, serving=True, terminating=True)


def test_serving_terminating_endpoints_carry_the_service_when_none_is_ready() -> None:
    """kube-proxy routes to serving terminating endpoints when no ready one is left (a rolling
    update's last moments): rules that hold exactly those are neither NOT_READY nor STALE."""
    draining = case(endpoints=(terminating(EndpointRef(API.ip or "", 8080, "node-2", True, API)),))
    diagnosis = verdict_of(RecordedCluster(), draining)
    assert diagnosis.verdict.code == VerdictCode.NO_FAULT_FOUND
    endpoints_step = next(s for s in diagnosis.steps if s.name == "target: service endpoints")
    assert endpoints_step.status.value == "warn" and "terminating" in endpoints_step.summary
    nat_step = next(s for s in diagnosis.steps if s.name.endswith("service NAT"))
    assert nat_step.status.value == "pass" and "serving terminating" in nat_step.summary


def test_rules_that_miss_the_serving_terminating_endpoints_are_stale() -> None:
    cluster = RecordedCluster()
    cluster.nat = NatView("iptables", True, (NatEndpoint("10.244.2.99", 8080),))
    cluster.failing_probes = {"10.96.5.5": "timed_out"}
    draining = case(endpoints=(terminating(EndpointRef(API.ip or "", 8080, "node-2", True, API)),))
    diagnosis = verdict_of(cluster, draining)
    assert diagnosis.verdict.code == VerdictCode.KUBE_PROXY_RULES_STALE
    assert "serving terminating endpoints are 10.244.2.7:8080" in diagnosis.verdict.summary


def test_terminating_endpoints_do_not_count_while_a_ready_one_exists() -> None:
    cluster = RecordedCluster()
    cluster.nat = NatView("iptables", True, (NatEndpoint("10.244.2.7", 8080), NatEndpoint("10.244.2.8", 8080)))
    old = PodRef("shop", "api-0", "10.244.2.8", "node-2", container_ports=(("http", 8080, "TCP"),))
    mixed = case(
        endpoints=(
            EndpointRef(API.ip or "", 8080, "node-2", True, API),
            terminating(EndpointRef("10.244.2.8", 8080, "node-2", True, old)),
        )
    )
    assert verdict_of(cluster, mixed).verdict.code == VerdictCode.KUBE_PROXY_RULES_STALE


def test_endpoints_that_are_neither_ready_nor_serving_are_not_ready() -> None:
    gone = dataclasses.replace(EndpointRef(API.ip or "", 8080, "node-2", True, API), ready=False, serving=False, terminating=True)
    diagnosis = verdict_of(RecordedCluster(), case(endpoints=(gone,)))
    assert diagnosis.verdict.code == VerdictCode.SERVICE_ENDPOINTS_NOT_READY
