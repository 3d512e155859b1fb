"""service_nat / detect_proxy_mode / the rule cache against real rules in throwaway namespaces (prefix kt).

The iptables rules are the recorded kube-proxy-shaped fixture (tests/unit/fixtures), restored with
iptables-restore; the nftables rules are the fixture's nft script applied with `nft -f`.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodeagent.checks.nat import KubeProxyTables
from nodeagent.checks.nat.ipvs import ipvs_active, ipvs_service_nat
from nodeagent.netns import netns_path

pytestmark = pytest.mark.lab

TABLES = KubeProxyTables()
"""One agent's kube-proxy tables (and snapshot cache), shared by this module's tests as an agent shares them."""

FIXTURES = Path(__file__).parents[1] / "unit" / "fixtures"


def run(netns: str, *argv: str, stdin: str | None = None) -> str:
    return subprocess.run(["ip", "netns", "exec", netns, *argv], input=stdin, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"kt-nat-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def iptables_node(netns: str) -> str:
    run(netns, "iptables-restore", "-c", stdin=(FIXTURES / "iptables_save_node.txt").read_text())
    return netns


@pytest.fixture
def nft_node(netns: str) -> str:
    run(netns, "nft", "-f", str(FIXTURES / "nft_kube_proxy.nft"))
    return netns


def dnat_targets_from_text(save_text: str, vip: str, port: int, proto: str) -> list[str]:
    """Independent reading of iptables-save text: VIP rule -> KUBE-SVC chain -> KUBE-SEP DNAT targets."""
    jump = re.search(rf"-A KUBE-SERVICES -d {re.escape(vip)}/32 -p {proto} .*--dport {port} -j (KUBE-SVC-\w+)", save_text)
    assert jump is not None
    seps = re.findall(rf"-A {jump.group(1)} .*-j (KUBE-SEP-\w+)", save_text)
    targets = []
    for sep in dict.fromkeys(seps):
        found = re.search(rf"-A {sep} .*--to-destination (\S+)", save_text)
        assert found is not None
        targets.append(found.group(1))
    return targets


def test_iptables_mode_is_detected(iptables_node: str) -> None:
    assert TABLES.detect_proxy_mode(netns_path(iptables_node), iptables_node) == "iptables"


def test_empty_namespace_has_no_proxy_mode(netns: str) -> None:
    assert TABLES.detect_proxy_mode(netns_path(netns), netns) == "none"


@pytest.mark.parametrize(
    ("vip", "port", "proto"),
    [("10.96.10.20", 80, "tcp"), ("10.96.0.10", 53, "udp"), ("10.96.7.7", 9090, "tcp"), ("10.96.0.1", 443, "tcp")],
)
def test_service_nat_endpoints_match_the_live_rules(iptables_node: str, vip: str, port: int, proto: str) -> None:
    result = TABLES.service_nat(netns_path(iptables_node), iptables_node, vip, port, proto.upper())
    text = run(iptables_node, "iptables-save", "-t", "nat")
    assert result.programmed
    assert [f"{e.ip}:{e.port}" for e in result.endpoints] == dnat_targets_from_text(text, vip, port, proto)


def test_no_endpoints_service_is_rejected(iptables_node: str) -> None:
    result = TABLES.service_nat(netns_path(iptables_node), iptables_node, "10.96.5.5", 80, "TCP")
    assert result.no_endpoints_action == "REJECT"
    assert result.endpoints == ()


def test_cache_is_reused_while_rules_are_unchanged(iptables_node: str) -> None:
    path = netns_path(iptables_node)
    TABLES.service_nat(path, iptables_node, "10.96.10.20", 80, "TCP")
    before = TABLES.tool_invocations()
    for _ in range(5):
        TABLES.service_nat(path, iptables_node, "10.96.10.20", 80, "TCP")
        TABLES.service_nat(path, iptables_node, "10.96.0.10", 53, "UDP")
    assert TABLES.tool_invocations() == before


def test_rule_change_invalidates_the_cache(iptables_node: str) -> None:
    path = netns_path(iptables_node)
    assert TABLES.service_nat(path, iptables_node, "10.96.10.20", 80, "TCP").programmed
    before = TABLES.tool_invocations()
    run(
        iptables_node,
        "iptables",
        "-t",
        "nat",
        "-D",
        "KUBE-SERVICES",
        "-d",
        "10.96.10.20/32",
        "-p",
        "tcp",
        "-m",
        "comment",
        "--comment",
        "shop/web:http cluster IP",
        "-m",
        "tcp",
        "--dport",
        "80",
        "-j",
        "KUBE-SVC-67NZLRHBNDSAWJRO",
    )
    after = TABLES.service_nat(path, iptables_node, "10.96.10.20", 80, "TCP")
    assert not after.programmed
    assert after.service_chain == "KUBE-SVC-67NZLRHBNDSAWJRO"
    assert TABLES.tool_invocations() > before


def test_cache_is_per_namespace(iptables_node: str, nft_node_second: str) -> None:
    first = TABLES.service_nat(netns_path(iptables_node), iptables_node, "10.96.10.20", 80, "TCP")
    second = TABLES.service_nat(netns_path(nft_node_second), nft_node_second, "10.96.10.20", 80, "TCP")
    assert (first.mode, second.mode) == ("iptables", "nftables")


@pytest.fixture
def nft_node_second() -> Iterator[str]:
    name = f"kt-nat2-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        run(name, "nft", "-f", str(FIXTURES / "nft_kube_proxy.nft"))
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_nftables_mode_is_detected(nft_node: str) -> None:
    assert TABLES.detect_proxy_mode(netns_path(nft_node), nft_node) == "nftables"


def test_nftables_service_endpoints_match_the_live_table(nft_node: str) -> None:
    result = TABLES.service_nat(netns_path(nft_node), nft_node, "10.96.10.20", 80, "TCP")
    assert result.mode == "nftables" and result.programmed
    text = run(nft_node, "nft", "list", "table", "ip", "kube-proxy")
    chain = re.search(r"10\.96\.10\.20 \. tcp \. 80 .*: goto (service-[^\s,}]+)", text)
    assert chain is not None and result.service_chain == chain.group(1)
    block = text.split(f"chain {chain.group(1)} {{", 1)[1].split("}", 2)
    endpoint_chains = re.findall(r"goto (endpoint-[^,\s}]+)", "}".join(block[:2]))
    expected = []
    for endpoint_chain in endpoint_chains:
        body = text.split(f"chain {endpoint_chain} {{", 1)[1].split("}", 1)[0]
        expected.append(re.search(r"dnat to (\S+)", body).group(1))  # type: ignore[union-attr]
    assert [f"{e.ip}:{e.port}" for e in result.endpoints] == expected


def test_nftables_element_removal_invalidates_the_cache(nft_node: str) -> None:
    path = netns_path(nft_node)
    assert TABLES.service_nat(path, nft_node, "10.96.10.20", 80, "TCP").programmed
    before = TABLES.tool_invocations()
    assert TABLES.service_nat(path, nft_node, "10.96.10.20", 80, "TCP").programmed
    assert TABLES.tool_invocations() == before
    run(nft_node, "nft", "delete", "element", "ip", "kube-proxy", "service-ips", "{ 10.96.10.20 . tcp . 80 }")
    after = TABLES.service_nat(path, nft_node, "10.96.10.20", 80, "TCP")
    assert not after.programmed
    assert TABLES.tool_invocations() > before


def test_list_service_nat_in_both_modes(iptables_node: str, nft_node_second: str) -> None:
    ipt = {(s.vip, s.port, s.protocol) for s in TABLES.list_service_nat(netns_path(iptables_node), iptables_node)}
    nft = {(s.vip, s.port, s.protocol) for s in TABLES.list_service_nat(netns_path(nft_node_second), nft_node_second)}
    assert ipt == nft
    assert ("10.96.5.5", 80, "TCP") in ipt


def test_a_kube_ipvs0_link_without_kernel_ipvs_is_not_ipvs_mode(netns: str) -> None:
    """This kernel has no IPVS: the genetlink family is missing, so the check must answer "not ipvs"."""
    run(netns, "ip", "link", "add", "kube-ipvs0", "type", "veth", "peer", "name", "kt-ipvs-peer")
    path = netns_path(netns)
    assert not ipvs_active(path)
    assert TABLES.detect_proxy_mode(path, netns) == "none"
    result = ipvs_service_nat(path, "10.96.0.1", 443, "TCP")
    assert result.mode == "ipvs" and not result.programmed
    assert "no IPVS netlink family" in result.rules[0]
