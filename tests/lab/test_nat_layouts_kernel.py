"""The agent's NAT readers on the real kube-proxy v1.36.2 rules and every nftables layout, in a kernel.

Each ruleset (tests/unit/fixtures/kube-proxy-v1.36.2 and kube-proxy-layouts) is loaded into a
throwaway network namespace (prefix kt, deleted in finally). For every service the netlink reading
(the cold path: the map element and chains straight from nf_tables) must equal the reading of the
`nft -j` dump, and the public entry points must answer what the rules mean. A layout the netlink path
does not read (an unknown one) must fall back to the dump, never answer "not programmed".
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodeagent.checks.iptables_save import parse_iptables_save
from nodeagent.checks.nat import KubeProxyTables, NatStateError, ServiceNat
from nodeagent.checks.nat import nftables as nft
from nodeagent.checks.nat.iptables import iptables_service_nat
from nodeagent.checks.nat.iptables_netlink import rules_for_destination
from nodeagent.checks.nat.nft_netlink import service_nat_on_demand
from nodeagent.netns import netns_path
from tests.unit.test_nat_recorded_kube_proxy import SERVICES

pytestmark = pytest.mark.lab

TABLES = KubeProxyTables()

FIXTURES = Path(__file__).parents[1] / "unit" / "fixtures"
RULESETS = {
    "numgen-dnat-map": FIXTURES / "kube-proxy-v1.36.2" / "node-1.ip-kube-proxy.nft",
    "single-dnat": FIXTURES / "kube-proxy-layouts" / "single-dnat.nft",
    "shared-endpoints-map": FIXTURES / "kube-proxy-layouts" / "shared-endpoints-map.nft",
    "unknown": FIXTURES / "kube-proxy-layouts" / "unknown-jhash.nft",
}
READ_OVER_NETLINK = {"numgen-dnat-map", "single-dnat", "shared-endpoints-map"}


def run(netns: str, *argv: str, stdin: str | None = None) -> str:
    return subprocess.run(["ip", "netns", "exec", netns, *argv], input=stdin, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"kt-layout-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    TABLES.clear_cache()
    try:
        yield name
    finally:
        TABLES.clear_cache()
        subprocess.run(["ip", "netns", "del", name], check=False)


def _view(found: ServiceNat) -> tuple[object, ...]:
    return (
        found.programmed,
        found.layout,
        bool(found.unreadable),
        tuple((e.ip, e.port, round(e.probability or 0, 6)) for e in found.endpoints),
        found.no_endpoints_action,
    )


@pytest.mark.parametrize("layout", sorted(RULESETS))
def test_netlink_reading_equals_the_dump_reading_for_every_service(netns: str, layout: str) -> None:
    run(netns, "nft", "-f", str(RULESETS[layout]))
    path = netns_path(netns)
    dump = nft.parse_nft_ruleset(json.loads(run(netns, "nft", "-j", "list", "table", "ip", "kube-proxy")))
    listed = nft.nft_list_service_nat(dump)
    assert {(s.vip, s.port, s.protocol) for s in listed} >= set(SERVICES)
    for service in listed:
        cold = service_nat_on_demand(path, service.vip, service.port, service.protocol)
        if layout in READ_OVER_NETLINK:
            assert cold is not None, (layout, service.vip, service.port)
            assert _view(cold) == _view(service)
            assert cold.rules == service.rules  # the decoded rules print as nft prints them
        else:
            assert cold is None  # the full dump decides
        public = TABLES.service_nat(path, None, service.vip, service.port, service.protocol)
        assert _view(public) == _view(service)
        if layout == "unknown":
            assert public.unreadable and not public.endpoints
        elif (service.vip, service.port, service.protocol) in SERVICES:
            targets = tuple(f"{e.ip}:{e.port}" for e in public.endpoints)
            assert targets == SERVICES[(service.vip, service.port, service.protocol)][1]


def test_list_service_nat_fails_with_the_reason_when_the_table_has_no_dispatch_maps(netns: str) -> None:
    text = RULESETS["numgen-dnat-map"].read_text()
    renamed = text.replace("map service-ips {", "map svc-dispatch {").replace("vmap @service-ips", "vmap @svc-dispatch")
    renamed = renamed.replace("map no-endpoint-services {", "map svc-none {").replace(
        "vmap @no-endpoint-services", "vmap @svc-none"
    )
    run(netns, "nft", "-f", "-", stdin=renamed)
    with pytest.raises(NatStateError, match="a layout kubereach does not read yet"):
        TABLES.list_service_nat(netns_path(netns), None)
    answer = TABLES.service_nat(netns_path(netns), None, "10.107.25.64", 8080, "TCP")
    assert answer.unreadable and answer.layout == nft.LAYOUT_UNKNOWN


def test_the_real_iptables_rules_read_the_same_in_a_kernel(netns: str) -> None:
    run(netns, "iptables-restore", stdin=(FIXTURES / "kube-proxy-v1.36.2" / "node-1.nat.iptables-save.txt").read_text())
    path = netns_path(netns)
    assert TABLES.detect_proxy_mode(path, None) == "iptables"
    for (vip, port, protocol), (name, endpoints) in SERVICES.items():
        found = TABLES.service_nat(path, None, vip, port, protocol)
        assert (found.programmed, found.service_name) == (True, name)
        assert tuple(f"{e.ip}:{e.port}" for e in found.endpoints) == endpoints
    assert {(s.vip, s.port, s.protocol) for s in TABLES.list_service_nat(path, None)} == set(SERVICES)


def _restore_recorded_iptables(netns: str) -> None:
    run(netns, "iptables-restore", stdin=(FIXTURES / "kube-proxy-v1.36.2" / "node-1.nat.iptables-save.txt").read_text())


def test_kube_services_rules_read_over_netlink_print_as_iptables_prints_them(netns: str) -> None:
    _restore_recorded_iptables(netns)
    path = netns_path(netns)
    listed = run(netns, "iptables", "-t", "nat", "-S", "KUBE-SERVICES").splitlines()
    for vip in {vip for vip, _port, _protocol in SERVICES}:
        by_tool = tuple(line for line in listed if f" -d {vip}/" in line)
        assert by_tool, vip
        assert rules_for_destination(path, "nat", "KUBE-SERVICES", vip) == by_tool
    assert rules_for_destination(path, "nat", "KUBE-SERVICES", "10.99.99.99") == ()
    assert rules_for_destination(path, "nat", "KUBE-NO-SUCH-CHAIN", "10.96.0.10") is None


def test_a_rule_for_the_vip_in_a_shape_netlink_does_not_print_leaves_the_chain_to_iptables(netns: str) -> None:
    _restore_recorded_iptables(netns)
    # a mark match (an xt match other than comment) and a negated source, ahead of the real dispatch
    run(netns, "iptables", "-t", "nat", "-I", "KUBE-SERVICES", "1", "-d", "10.107.25.64/32", "-p", "tcp", "-m", "mark",
        "--mark", "0x1", "-j", "RETURN")  # fmt: skip
    run(
        netns, "iptables", "-t", "nat", "-I", "KUBE-SERVICES", "1", "!", "-s", "10.0.0.0/8", "-d", "10.96.0.10/32", "-j", "RETURN"
    )
    path = netns_path(netns)
    # an xt target (kube-proxy's REJECT for a service without endpoints) in the filter table
    run(netns, "iptables", "-t", "filter", "-N", "KUBE-SERVICES")
    run(netns, "iptables", "-t", "filter", "-A", "KUBE-SERVICES", "-d", "10.111.113.82/32", "-p", "tcp", "-m", "tcp",
        "--dport", "6379", "-j", "REJECT", "--reject-with", "icmp-port-unreachable")  # fmt: skip
    path = netns_path(netns)
    assert rules_for_destination(path, "nat", "KUBE-SERVICES", "10.107.25.64") is None
    assert rules_for_destination(path, "nat", "KUBE-SERVICES", "10.96.0.10") is None
    assert rules_for_destination(path, "filter", "KUBE-SERVICES", "10.111.113.82") is None
    assert rules_for_destination(path, "filter", "KUBE-SERVICES", "10.107.25.64") == ()
    save = parse_iptables_save(run(netns, "iptables-save"))
    for vip, port, protocol in [("10.107.25.64", 8080, "TCP"), ("10.96.0.10", 53, "UDP")]:
        TABLES.clear_cache()
        cold = TABLES.service_nat(path, None, vip, port, protocol)
        assert cold == iptables_service_nat(save, vip, port, protocol, vip_is_local=False)
        assert tuple(f"{e.ip}:{e.port}" for e in cold.endpoints) == SERVICES[(vip, port, protocol)][1]


def test_every_cold_iptables_lookup_answers_what_the_whole_dump_answers(netns: str) -> None:
    _restore_recorded_iptables(netns)
    path = netns_path(netns)
    save = parse_iptables_save(run(netns, "iptables-save"))
    for vip, port, protocol in [*SERVICES, ("10.107.25.64", 7777, "TCP"), ("10.99.99.99", 80, "TCP")]:
        TABLES.clear_cache()  # every lookup cold: KUBE-SERVICES over netlink, the other chains one by one
        before = TABLES.tool_invocations()
        cold = TABLES.service_nat(path, None, vip, port, protocol)
        assert cold == iptables_service_nat(save, vip, port, protocol, vip_is_local=False), (vip, port, protocol)
        if (vip, port, protocol) in SERVICES:
            sep_chains = len(SERVICES[(vip, port, protocol)][1])
            # the service chain and its endpoint chains (+ the background dump); KUBE-SERVICES ran no tool
            assert TABLES.tool_invocations() - before == 1 + sep_chains + 1
