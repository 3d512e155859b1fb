"""The nftables-mode service walk on `nft -j` output recorded from a kube-proxy-shaped table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nodeagent.checks.nat.nftables import NftRuleset, NftRulesetError, nft_list_service_nat, nft_service_nat, parse_nft_ruleset

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def ruleset() -> NftRuleset:
    return parse_nft_ruleset(json.loads((FIXTURES / "nft_kube_proxy.json").read_text()))


def test_maps_and_sets_are_read(ruleset: NftRuleset) -> None:
    assert ("10.96.10.20", "tcp", "80") in {e.key for e in ruleset.maps["service-ips"]}
    assert "10.96.5.5" in ruleset.sets["cluster-ips"]


def test_cluster_ip_walks_numgen_vmap_to_endpoint_dnats(ruleset: NftRuleset) -> None:
    nat = nft_service_nat(ruleset, "10.96.10.20", 80, "TCP")
    assert nat.mode == "nftables"
    assert nat.programmed
    assert nat.service_name == "shop/web:http"
    assert nat.service_chain == "service-KHN6ECMT-shop/web/tcp/http"
    assert [(e.ip, e.port) for e in nat.endpoints] == [("10.244.1.5", 8080), ("10.244.2.6", 8080), ("10.244.3.7", 8080)]
    assert all(e.probability == pytest.approx(1 / 3) for e in nat.endpoints)
    assert any("numgen random mod 3 vmap" in rule for rule in nat.rules)
    assert any("dnat to 10.244.3.7:8080" in rule for rule in nat.rules)


def test_no_endpoints_service_is_rejected_via_reject_chain(ruleset: NftRuleset) -> None:
    nat = nft_service_nat(ruleset, "10.96.5.5", 80, "TCP")
    assert nat.programmed
    assert nat.no_endpoints_action == "REJECT"
    assert nat.endpoints == ()
    assert nat.service_name == "shop/cart:http"


def test_nodeport_goes_through_the_external_chain(ruleset: NftRuleset) -> None:
    nat = nft_service_nat(ruleset, "10.240.0.11", 30080, "TCP", vip_is_local=True)
    assert nat.programmed
    assert nat.service_chain == "service-KHN6ECMT-shop/web/tcp/http"
    assert len(nat.endpoints) == 3


def test_nodeport_without_endpoints_is_rejected(ruleset: NftRuleset) -> None:
    assert nft_service_nat(ruleset, "10.240.0.11", 30081, "TCP", vip_is_local=True).no_endpoints_action == "REJECT"


def test_session_affinity_sets_are_detected(ruleset: NftRuleset) -> None:
    nat = nft_service_nat(ruleset, "10.96.7.7", 9090, "TCP")
    assert nat.session_affinity
    assert [e.ip for e in nat.endpoints] == ["10.244.1.8", "10.244.2.9"]


def test_udp_and_tcp_on_the_same_vip_are_different_services(ruleset: NftRuleset) -> None:
    assert nft_service_nat(ruleset, "10.96.0.10", 53, "UDP").service_name == "kube-system/kube-dns:dns"
    assert nft_service_nat(ruleset, "10.96.0.10", 53, "TCP").service_name == "kube-system/kube-dns:dns-tcp"


def test_service_chain_without_map_element_is_not_programmed(ruleset: NftRuleset) -> None:
    nat = nft_service_nat(ruleset, "10.96.8.8", 80, "TCP")
    assert not nat.programmed
    assert nat.service_chain == "service-D7ZZMFTE-shop/orders/tcp/http"
    assert nat.service_name == "shop/orders:http"


def test_unknown_vip_is_not_programmed(ruleset: NftRuleset) -> None:
    nat = nft_service_nat(ruleset, "10.96.99.99", 80, "TCP", vip_is_local=False)
    assert not nat.programmed and nat.service_chain is None


def test_list_covers_service_ips_and_no_endpoint_services(ruleset: NftRuleset) -> None:
    keys = {(s.vip, s.port, s.protocol) for s in nft_list_service_nat(ruleset)}
    assert ("10.96.5.5", 80, "TCP") in keys and ("10.96.0.10", 53, "UDP") in keys
    assert ("10.96.8.8", 80, "TCP") not in keys


def test_json_without_nftables_list_is_rejected() -> None:
    with pytest.raises(NftRulesetError):
        parse_nft_ruleset({"not": "nft"})


def test_element_without_comment_uses_the_chain_name() -> None:
    data = {
        "nftables": [
            {
                "map": {
                    "name": "service-ips",
                    "elem": [[{"concat": ["10.96.1.1", "tcp", 80]}, {"goto": {"target": "service-AAAAAAAA-ns/svc/tcp/web"}}]],
                }
            },
            {"chain": {"name": "service-AAAAAAAA-ns/svc/tcp/web"}},
            {
                "rule": {
                    "chain": "service-AAAAAAAA-ns/svc/tcp/web",
                    "expr": [
                        {
                            "vmap": {
                                "key": {"numgen": {"mode": "random", "mod": 1, "offset": 0}},
                                "data": {"set": [[0, {"goto": {"target": "endpoint-BBBBBBBB-ns/svc/tcp/web__10.1.1.1/80"}}]]},
                            }
                        }
                    ],
                }
            },
            {
                "rule": {
                    "chain": "endpoint-BBBBBBBB-ns/svc/tcp/web__10.1.1.1/80",
                    "expr": [{"dnat": {"addr": "10.1.1.1", "port": 80}}],
                }
            },
        ]
    }
    nat = nft_service_nat(parse_nft_ruleset(data), "10.96.1.1", 80, "TCP")
    assert nat.service_name == "ns/svc:web"
    assert [(e.ip, e.port, e.probability) for e in nat.endpoints] == [("10.1.1.1", 80, 1.0)]
