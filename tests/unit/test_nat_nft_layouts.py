"""Every nftables layout kube-proxy has shipped or is about to, told apart from the rules themselves.

- numgen-dnat-map: the real v1.36.2 recording (test_nat_recorded_kube_proxy.py covers every service);
- endpoint-chains: fixtures/nft_kube_proxy.json (older releases; test_nat_nft_walk.py) and the
  session-affinity service of single-dnat.json, which keeps endpoint chains in 1.36+;
- single-dnat (kubernetes PR #140723) and shared-endpoints-map (PR #140362): hand-derived from the
  recording, loaded into the kernel and dumped back by nft (fixtures/kube-proxy-layouts/README.md);
- unknown: the same recording with a jhash map the reader does not know.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nodeagent.checks.nat import ServiceNat
from nodeagent.checks.nat.nftables import (
    LAYOUT_ENDPOINT_CHAINS,
    LAYOUT_NUMGEN_MAP,
    LAYOUT_SHARED_MAP,
    LAYOUT_SINGLE_DNAT,
    LAYOUT_UNKNOWN,
    NftRuleset,
    nft_list_service_nat,
    nft_service_nat,
    parse_nft_ruleset,
    table_unreadable,
)
from tests.unit.test_nat_recorded_kube_proxy import SERVICES

LAYOUTS = Path(__file__).parent / "fixtures" / "kube-proxy-layouts"
NODE_IP = "10.240.0.11"


def _load(name: str) -> NftRuleset:
    return parse_nft_ruleset(json.loads((LAYOUTS / f"{name}.json").read_text()))


@pytest.fixture(scope="module")
def single() -> NftRuleset:
    return _load("single-dnat")


@pytest.fixture(scope="module")
def shared() -> NftRuleset:
    return _load("shared-endpoints-map")


@pytest.fixture(scope="module")
def unknown() -> NftRuleset:
    return _load("unknown-jhash")


def _targets(nat: ServiceNat) -> tuple[str, ...]:
    return tuple(f"{e.ip}:{e.port}" for e in nat.endpoints)


def test_single_endpoint_services_dnat_without_a_map(single: NftRuleset) -> None:
    for vip, port, target in (("10.106.36.145", 9090, "10.244.2.5:9090"), ("10.111.113.82", 6379, "10.244.2.4:6379")):
        nat = nft_service_nat(single, vip, port, "TCP", vip_is_local=False)
        assert (nat.programmed, nat.layout, nat.unreadable) == (True, LAYOUT_SINGLE_DNAT, "")
        assert _targets(nat) == (target,)
        assert nat.endpoints[0].probability == 1.0
        assert any(f"dnat to {target}" in rule for rule in nat.rules)


def test_multi_endpoint_services_beside_them_keep_the_numgen_map(single: NftRuleset) -> None:
    nat = nft_service_nat(single, "10.107.25.64", 8080, "TCP", vip_is_local=False)
    assert nat.layout == LAYOUT_NUMGEN_MAP
    assert _targets(nat) == SERVICES[("10.107.25.64", 8080, "TCP")][1]


def test_session_affinity_keeps_endpoint_chains_in_the_new_layouts(single: NftRuleset) -> None:
    nat = nft_service_nat(single, "10.98.7.7", 80, "TCP", vip_is_local=False)
    assert (nat.layout, nat.session_affinity) == (LAYOUT_ENDPOINT_CHAINS, True)
    assert _targets(nat) == ("10.244.1.4:8080", "10.244.3.3:8080")
    assert [e.chain for e in nat.endpoints] == [
        "endpoint-ESJ6MRWI-shop/sticky/tcp/http__10.244.1.4/8080",
        "endpoint-PXTNEGIY-shop/sticky/tcp/http__10.244.3.3/8080",
    ]


def test_no_endpoint_services_and_nodeports_are_rejected(single: NftRuleset) -> None:
    nat = nft_service_nat(single, "10.96.5.5", 80, "TCP", vip_is_local=False)
    assert (nat.programmed, nat.no_endpoints_action, nat.endpoints, nat.service_name) == (True, "REJECT", (), "shop/cart:http")
    nodeport = nft_service_nat(single, NODE_IP, 30081, "TCP", vip_is_local=True)
    assert (nodeport.programmed, nodeport.no_endpoints_action) == (True, "REJECT")


def test_a_nodeport_goes_through_the_external_chain_to_the_service_map(single: NftRuleset) -> None:
    nat = nft_service_nat(single, NODE_IP, 30080, "TCP", vip_is_local=True)
    assert (nat.programmed, nat.layout) == (True, LAYOUT_NUMGEN_MAP)
    assert _targets(nat) == SERVICES[("10.106.173.119", 80, "TCP")][1]
    assert nat.service_chain == "service-SFDBSQB2-shop/frontend/tcp/http"
    assert nft_service_nat(single, "10.240.0.99", 30080, "TCP", vip_is_local=False).programmed is False


@pytest.mark.parametrize(("vip", "port", "protocol"), sorted(SERVICES))
def test_the_shared_endpoints_map_is_read_per_service_and_slot(shared: NftRuleset, vip: str, port: int, protocol: str) -> None:
    endpoints = SERVICES[(vip, port, protocol)][1]
    nat = nft_service_nat(shared, vip, port, protocol, vip_is_local=False)
    assert (nat.programmed, nat.layout, nat.unreadable) == (True, LAYOUT_SHARED_MAP, "")
    assert nat.service_chain == f"dispatch-{len(endpoints)}"
    assert _targets(nat) == endpoints
    assert [e.probability for e in nat.endpoints] == pytest.approx([1 / len(endpoints)] * len(endpoints))
    assert any("ct mark map @endpoints" in rule for rule in nat.rules)


def test_a_slot_missing_from_the_shared_map_is_a_real_gap_not_an_unknown_layout(shared: NftRuleset) -> None:
    entries = dict(shared.data_maps["endpoints"])
    del entries[("10.107.25.64", "tcp", "8080", "1")]
    holed = NftRuleset(shared.chains, shared.maps, shared.sets, {"endpoints": entries})
    nat = nft_service_nat(holed, "10.107.25.64", 8080, "TCP", vip_is_local=False)
    assert (nat.layout, nat.unreadable) == (LAYOUT_SHARED_MAP, "")
    assert _targets(nat) == ("10.244.1.4:8080", "10.244.3.3:8080")
    assert any("slot 1 of 3 has no element" in rule for rule in nat.rules)


def test_an_unknown_layout_is_reported_as_unreadable_never_as_not_programmed(unknown: NftRuleset) -> None:
    for nat in nft_list_service_nat(unknown):
        assert nat.layout == LAYOUT_UNKNOWN
        assert nat.unreadable.startswith("service NAT uses a layout kubereach does not read yet")
        assert "jhash" in nat.unreadable
        assert nat.endpoints == () and nat.no_endpoints_action is None
    assert len(nft_list_service_nat(unknown)) == len(SERVICES)


def test_a_table_without_the_dispatch_maps_is_unreadable_as_a_whole(unknown: NftRuleset) -> None:
    renamed = NftRuleset(unknown.chains, {"svc-dispatch": unknown.maps["service-ips"]}, unknown.sets)
    assert "no service-ips or no-endpoint-services map" in table_unreadable(renamed)
    nat = nft_service_nat(renamed, "10.107.25.64", 8080, "TCP", vip_is_local=False)
    assert (nat.programmed, nat.layout) == (False, LAYOUT_UNKNOWN)
    assert nat.unreadable
    assert table_unreadable(unknown) == ""


def test_a_rule_for_another_protocol_in_a_shared_chain_is_skipped(shared: NftRuleset) -> None:
    """PR #140362's tests show per-protocol rules in one chain (`meta l4proto tcp …`, `meta l4proto udp …`)."""
    tcp_rule = shared.chains["dispatch-2"][0]
    udp_first = (({"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "sctp"}}, {"drop": None}), tcp_rule)
    chains = {**shared.chains, "dispatch-2": udp_first}
    nat = nft_service_nat(
        NftRuleset(chains, shared.maps, shared.sets, shared.data_maps), "10.96.0.10", 53, "UDP", vip_is_local=False
    )
    assert (nat.no_endpoints_action, _targets(nat)) == (None, ("10.244.1.2:53", "10.244.2.2:53"))


def test_nodeports_are_dispatched_only_on_the_nodeport_ips(single: NftRuleset) -> None:
    assert single.sets["nodeport-ips"] == (NODE_IP,)
    assert nft_service_nat(single, NODE_IP, 30080, "TCP", vip_is_local=True).programmed
    # another address of the node (say, its pod-CIDR gateway) is local but takes no NodePort traffic
    other = nft_service_nat(single, "10.244.1.1", 30080, "TCP", vip_is_local=True)
    assert (other.programmed, other.endpoints) == (False, ())


def test_a_clusterip_on_a_port_it_does_not_serve_says_it_is_rejected(single: NftRuleset) -> None:
    nat = nft_service_nat(single, "10.107.25.64", 8081, "TCP", vip_is_local=False)
    assert nat.programmed is False
    assert any("cluster-ips-check rejects it" in rule for rule in nat.rules)
