"""The iptables-mode service walk on recorded iptables-save output of kube-proxy-shaped rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodeagent.checks.iptables_save import IptablesSave, parse_iptables_save
from nodeagent.checks.nat import iptables_list_service_nat, iptables_service_nat

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def save() -> IptablesSave:
    return parse_iptables_save((FIXTURES / "iptables_save_node.txt").read_text())


@pytest.fixture(scope="module")
def bare() -> IptablesSave:
    return parse_iptables_save((FIXTURES / "iptables_save_no_comments.txt").read_text())


def test_cluster_ip_with_three_endpoints_reports_chain_endpoints_and_probabilities(save: IptablesSave) -> None:
    nat = iptables_service_nat(save, "10.96.10.20", 80, "TCP")
    assert nat.mode == "iptables"
    assert nat.programmed
    assert nat.service_name == "shop/web:http"
    assert nat.service_chain == "KUBE-SVC-67NZLRHBNDSAWJRO"
    assert [(e.ip, e.port, e.probability) for e in nat.endpoints] == [
        ("10.244.1.5", 8080, 0.33333333349),
        ("10.244.2.6", 8080, 0.5),
        ("10.244.3.7", 8080, None),
    ]
    assert all(e.chain and e.chain.startswith("KUBE-SEP-") for e in nat.endpoints)
    assert nat.no_endpoints_action is None
    assert not nat.session_affinity
    assert any("--to-destination 10.244.3.7:8080" in rule for rule in nat.rules)


def test_udp_dns_service_is_told_apart_from_the_tcp_one_on_the_same_vip(save: IptablesSave) -> None:
    udp = iptables_service_nat(save, "10.96.0.10", 53, "UDP")
    tcp = iptables_service_nat(save, "10.96.0.10", 53, "TCP")
    assert udp.service_chain == "KUBE-SVC-TCOU7JCQXEZGVUNU"
    assert udp.service_name == "kube-system/kube-dns:dns"
    assert tcp.service_name == "kube-system/kube-dns:dns-tcp"
    assert udp.service_chain != tcp.service_chain


def test_service_without_endpoints_is_rejected_in_the_filter_table(save: IptablesSave) -> None:
    nat = iptables_service_nat(save, "10.96.5.5", 80, "TCP")
    assert nat.programmed
    assert nat.endpoints == ()
    assert nat.no_endpoints_action == "REJECT"
    assert nat.service_name == "shop/cart:http"
    assert "has no endpoints" in nat.rules[0]


def test_nodeport_on_a_node_address_goes_through_the_external_chain(save: IptablesSave) -> None:
    nat = iptables_service_nat(save, "10.240.0.11", 30080, "TCP", vip_is_local=True)
    assert nat.programmed
    assert nat.service_name == "shop/web:http"
    assert nat.service_chain == "KUBE-SVC-67NZLRHBNDSAWJRO"
    assert len(nat.endpoints) == 3
    assert any(rule.startswith("-A KUBE-NODEPORTS") for rule in nat.rules)


def test_nodeport_is_not_considered_for_an_address_that_is_not_local(save: IptablesSave) -> None:
    nat = iptables_service_nat(save, "10.240.0.99", 30080, "TCP", vip_is_local=False)
    assert not nat.programmed


def test_nodeport_without_endpoints_is_rejected(save: IptablesSave) -> None:
    nat = iptables_service_nat(save, "10.240.0.11", 30081, "TCP", vip_is_local=True)
    assert nat.no_endpoints_action == "REJECT"
    assert nat.endpoints == ()


def test_session_affinity_is_detected_and_endpoints_are_not_doubled(save: IptablesSave) -> None:
    nat = iptables_service_nat(save, "10.96.7.7", 9090, "TCP")
    assert nat.session_affinity
    assert [(e.ip, e.probability) for e in nat.endpoints] == [("10.244.1.8", 0.5), ("10.244.2.9", None)]


def test_service_chain_without_a_kube_services_jump_is_not_programmed(save: IptablesSave) -> None:
    nat = iptables_service_nat(save, "10.96.8.8", 80, "TCP")
    assert not nat.programmed
    assert nat.service_chain == "KUBE-SVC-AIOWKCZMN5S45HKT"
    assert nat.service_name == "shop/orders:http"
    assert nat.endpoints == ()
    assert "not jumped to" in nat.rules[0]


def test_unknown_vip_is_not_programmed_and_names_nothing(save: IptablesSave) -> None:
    nat = iptables_service_nat(save, "10.96.99.99", 80, "TCP", vip_is_local=False)
    assert not nat.programmed
    assert nat.service_chain is None and nat.service_name is None


def test_wrong_port_on_a_known_vip_is_not_programmed(save: IptablesSave) -> None:
    assert not iptables_service_nat(save, "10.96.10.20", 81, "TCP", vip_is_local=False).programmed


def test_rules_without_comments_still_give_chain_and_endpoints(bare: IptablesSave) -> None:
    nat = iptables_service_nat(bare, "10.96.10.20", 80, "TCP")
    assert nat.programmed
    assert nat.service_name is None
    assert nat.service_chain == "KUBE-SVC-67NZLRHBNDSAWJRO"
    assert [e.ip for e in nat.endpoints] == ["10.244.1.5", "10.244.2.6", "10.244.3.7"]


def test_not_programmed_is_found_without_comments_too(bare: IptablesSave) -> None:
    nat = iptables_service_nat(bare, "10.96.8.8", 80, "TCP")
    assert not nat.programmed
    assert nat.service_chain == "KUBE-SVC-AIOWKCZMN5S45HKT"


def test_no_endpoints_without_comments(bare: IptablesSave) -> None:
    assert iptables_service_nat(bare, "10.96.5.5", 80, "TCP").no_endpoints_action == "REJECT"


def test_list_gives_every_service_port_once(save: IptablesSave) -> None:
    listed = {(s.vip, s.port, s.protocol): s for s in iptables_list_service_nat(save)}
    assert set(listed) == {
        ("10.96.0.10", 53, "UDP"),
        ("10.96.0.10", 53, "TCP"),
        ("10.96.0.1", 443, "TCP"),
        ("10.96.10.20", 80, "TCP"),
        ("10.96.5.5", 80, "TCP"),
        ("10.96.7.7", 9090, "TCP"),
    }
    assert listed[("10.96.5.5", 80, "TCP")].no_endpoints_action == "REJECT"
