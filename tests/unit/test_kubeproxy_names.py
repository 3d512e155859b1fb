"""Chain names must equal the literals in kube-proxy's own tests.

Every expected value below is copied from kubernetes/kubernetes pkg/proxy/iptables/proxier_test.go
(TestOverallIPTablesRules) and pkg/proxy/nftables/proxier_test.go (TestOverallNFTablesRules), where
the services are ns1/svc1 .. ns5/svc5 with port "p80"/TCP and endpoints 10.180.0.N:80.
"""

from __future__ import annotations

import pytest

from lab.kubeproxy import names


@pytest.mark.parametrize(
    ("svc_port_name", "expected"),
    [
        ("ns1/svc1:p80", "KUBE-SVC-XPGD46QRK7WJZT7O"),
        ("ns2/svc2:p80", "KUBE-SVC-GNZBNJ2PO5MGZ6GT"),
        ("ns3/svc3:p80", "KUBE-SVC-X27LE4BHSL4DOUIK"),
        ("ns4/svc4:p80", "KUBE-SVC-4SW47YFZTEDKD3PK"),
        ("ns5/svc5:p80", "KUBE-SVC-NUKIZ6OKUXPJNT4C"),
    ],
)
def test_iptables_service_chain_matches_upstream(svc_port_name: str, expected: str) -> None:
    assert names.iptables_service_chain(svc_port_name, "tcp") == expected


def test_iptables_ext_svl_fw_chains_share_the_upstream_hash() -> None:
    assert names.iptables_external_chain("ns2/svc2:p80", "tcp") == "KUBE-EXT-GNZBNJ2PO5MGZ6GT"
    assert names.iptables_local_chain("ns2/svc2:p80", "tcp") == "KUBE-SVL-GNZBNJ2PO5MGZ6GT"
    assert names.iptables_external_chain("ns3/svc3:p80", "tcp") == "KUBE-EXT-X27LE4BHSL4DOUIK"
    assert names.iptables_firewall_chain("ns5/svc5:p80", "tcp") == "KUBE-FW-NUKIZ6OKUXPJNT4C"


@pytest.mark.parametrize(
    ("svc_port_name", "endpoint", "expected"),
    [
        ("ns1/svc1:p80", "10.180.0.1:80", "KUBE-SEP-SXIVWICOYRO3J4NJ"),
        ("ns2/svc2:p80", "10.180.0.2:80", "KUBE-SEP-RS4RBKLTHTF2IUXJ"),
        ("ns3/svc3:p80", "10.180.0.3:80", "KUBE-SEP-OYPFS5VJICHGATKP"),
        ("ns4/svc4:p80", "10.180.0.4:80", "KUBE-SEP-UKSFD7AGPMPPLUHC"),
        ("ns4/svc4:p80", "10.180.0.5:80", "KUBE-SEP-C6EBXVWJJZMIWKLZ"),
        ("ns5/svc5:p80", "10.180.0.3:80", "KUBE-SEP-I77PXRDZVX7PMWMN"),
    ],
)
def test_iptables_endpoint_chain_matches_upstream(svc_port_name: str, endpoint: str, expected: str) -> None:
    assert names.iptables_endpoint_chain(svc_port_name, "tcp", endpoint) == expected


def test_protocol_is_hashed_in_lower_case_like_kube_proxy() -> None:
    assert names.iptables_service_chain("ns1/svc1:p80", "TCP") == "KUBE-SVC-XPGD46QRK7WJZT7O"


def test_service_port_name_leaves_out_an_empty_port_name() -> None:
    assert names.service_port_name("ns1", "svc1", "p80") == "ns1/svc1:p80"
    assert names.service_port_name("ns1", "svc1", "") == "ns1/svc1"


@pytest.mark.parametrize(
    ("namespace", "service", "expected"),
    [
        ("ns1", "svc1", "ULMVA6XW-ns1/svc1/tcp/p80"),
        ("ns2", "svc2", "42NFTM6N-ns2/svc2/tcp/p80"),
        ("ns3", "svc3", "4AT6LBPK-ns3/svc3/tcp/p80"),
        ("ns4", "svc4", "LAUZTJTB-ns4/svc4/tcp/p80"),
        ("ns5", "svc5", "HVFWP5L3-ns5/svc5/tcp/p80"),
    ],
)
def test_nft_service_chain_base_matches_upstream(namespace: str, service: str, expected: str) -> None:
    assert names.nft_service_chain_base(namespace, service, "tcp", "p80") == expected


@pytest.mark.parametrize(
    ("namespace", "service", "endpoint", "expected"),
    [
        ("ns1", "svc1", "10.180.0.1:80", "5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80"),
        ("ns2", "svc2", "10.180.0.2:80", "SGOXE6O3-ns2/svc2/tcp/p80__10.180.0.2/80"),
        ("ns3", "svc3", "10.180.0.3:80", "UEIP74TE-ns3/svc3/tcp/p80__10.180.0.3/80"),
        ("ns4", "svc4", "10.180.0.4:80", "UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80"),
        ("ns4", "svc4", "10.180.0.5:80", "5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80"),
        ("ns5", "svc5", "10.180.0.3:80", "GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80"),
    ],
)
def test_nft_endpoint_chain_base_matches_upstream(
    namespace: str, service: str, endpoint: str, expected: str
) -> None:
    assert names.nft_endpoint_chain_base(namespace, service, "tcp", "p80", endpoint) == expected


def test_service_chain_detection_covers_every_kube_proxy_prefix() -> None:
    for chain in ("KUBE-SVC-X", "KUBE-SVL-X", "KUBE-EXT-X", "KUBE-FW-X", "KUBE-SEP-X"):
        assert names.is_iptables_service_chain(chain)
    for chain in ("KUBE-SERVICES", "KUBE-MARK-MASQ", "KUBE-NODEPORTS", "POSTROUTING"):
        assert not names.is_iptables_service_chain(chain)
