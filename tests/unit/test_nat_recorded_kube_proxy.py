"""The agent's NAT readers on what the real kube-proxy v1.36.2 wrote (fixtures/kube-proxy-v1.36.2).

For every service of the recorded spec, in iptables mode and in nftables mode, the answer must say
what the rules mean: which VIP:port/protocol is dispatched, to which endpoints, with which chance
each endpoint is taken. The expected values below were read off the recorded rules by hand (the
lab's default spec on node-1; see the fixture README).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from nodeagent.checks.iptables_save import IptablesSave, parse_iptables_save
from nodeagent.checks.nat import ServiceNat, iptables_list_service_nat, iptables_service_nat
from nodeagent.checks.nat.nftables import LAYOUT_NUMGEN_MAP, NftRuleset, nft_list_service_nat, nft_service_nat, parse_nft_ruleset

FIXTURES = Path(__file__).parent / "fixtures"
RECORDED = FIXTURES / "kube-proxy-v1.36.2"
NODE_IP = "10.240.0.11"

# (VIP, port, protocol) -> (service name as kube-proxy comments it, ready endpoints in rule order)
SERVICES: dict[tuple[str, int, str], tuple[str, tuple[str, ...]]] = {
    ("10.96.0.10", 53, "TCP"): ("kube-system/kube-dns:dns-tcp", ("10.244.1.2:53", "10.244.2.2:53")),
    ("10.96.0.10", 53, "UDP"): ("kube-system/kube-dns:dns", ("10.244.1.2:53", "10.244.2.2:53")),
    ("10.96.0.10", 9153, "TCP"): ("kube-system/kube-dns:metrics", ("10.244.1.2:9153", "10.244.2.2:9153")),
    ("10.107.25.64", 8080, "TCP"): ("shop/api:http", ("10.244.1.4:8080", "10.244.2.3:8080", "10.244.3.3:8080")),
    ("10.107.25.64", 9090, "TCP"): ("shop/api:metrics", ("10.244.1.4:9090", "10.244.2.3:9090", "10.244.3.3:9090")),
    ("10.106.173.119", 80, "TCP"): ("shop/frontend:http", ("10.244.1.3:8080", "10.244.3.2:8080")),
    ("10.111.113.82", 6379, "TCP"): ("shop/redis:redis", ("10.244.2.4:6379",)),
    ("10.101.187.151", 443, "TCP"): ("payments/ledger:https", ("10.244.1.5:8443", "10.244.3.4:8443")),
    ("10.106.36.145", 9090, "TCP"): ("monitoring/prometheus:web", ("10.244.2.5:9090",)),
}


@pytest.fixture(scope="module")
def save() -> IptablesSave:
    text = "".join((RECORDED / f"node-1.{t}.iptables-save.txt").read_text() for t in ("nat", "filter"))
    return parse_iptables_save(text)


@pytest.fixture(scope="module")
def ruleset() -> NftRuleset:
    return parse_nft_ruleset(json.loads((RECORDED / "node-1.ip-kube-proxy.json").read_text()))


def _targets(nat: ServiceNat) -> tuple[str, ...]:
    return tuple(f"{e.ip}:{e.port}" for e in nat.endpoints)


def _effective_chances(nat: ServiceNat) -> list[float]:
    """iptables' statistic probabilities are conditional on the earlier rules not matching."""
    left, chances = 1.0, []
    for e in nat.endpoints:
        p = 1.0 if e.probability is None else e.probability
        chances.append(left * p)
        left *= 1 - p
    return chances


@pytest.mark.parametrize(("vip", "port", "protocol"), sorted(SERVICES))
def test_iptables_every_recorded_service_reads_as_its_rules_mean(save: IptablesSave, vip: str, port: int, protocol: str) -> None:
    name, endpoints = SERVICES[(vip, port, protocol)]
    nat = iptables_service_nat(save, vip, port, protocol, vip_is_local=False)
    assert (nat.mode, nat.programmed, nat.unreadable, nat.no_endpoints_action) == ("iptables", True, "", None)
    assert nat.service_name == name
    assert nat.service_chain is not None and nat.service_chain.startswith("KUBE-SVC-")
    assert _targets(nat) == endpoints
    assert all(e.chain is not None and e.chain.startswith("KUBE-SEP-") for e in nat.endpoints)
    assert nat.endpoints[-1].probability is None  # the last endpoint takes what is left
    assert _effective_chances(nat) == pytest.approx([1 / len(endpoints)] * len(endpoints), abs=1e-6)
    assert any(f"-d {vip}/32" in rule and f"--dport {port}" in rule for rule in nat.rules)


@pytest.mark.parametrize(("vip", "port", "protocol"), sorted(SERVICES))
def test_nftables_every_recorded_service_reads_as_its_rules_mean(ruleset: NftRuleset, vip: str, port: int, protocol: str) -> None:
    name, endpoints = SERVICES[(vip, port, protocol)]
    nat = nft_service_nat(ruleset, vip, port, protocol, vip_is_local=False)
    assert (nat.mode, nat.programmed, nat.unreadable, nat.no_endpoints_action) == ("nftables", True, "", None)
    assert nat.layout == LAYOUT_NUMGEN_MAP
    assert nat.service_name == name
    assert nat.service_chain is not None and nat.service_chain.startswith("service-")
    assert _targets(nat) == endpoints  # numgen slots 0, 1, … in order
    assert all(e.chain is None for e in nat.endpoints)  # 1.36 has no endpoint chains
    assert [e.probability for e in nat.endpoints] == pytest.approx([1 / len(endpoints)] * len(endpoints))
    dnat = next(rule for rule in nat.rules if "dnat" in rule)
    assert f"numgen random mod {len(endpoints)} map" in dnat
    assert all(f"{t.replace(':', ' . ')}" in dnat for t in endpoints)


def test_both_modes_list_exactly_the_recorded_service_ports(save: IptablesSave, ruleset: NftRuleset) -> None:
    for listed in (iptables_list_service_nat(save), nft_list_service_nat(ruleset)):
        assert {(n.vip, n.port, n.protocol): (n.service_name, _targets(n)) for n in listed} == SERVICES


@pytest.mark.parametrize("mode", ["iptables", "nftables"])
def test_a_port_the_service_does_not_have_is_not_programmed_in_either_mode(
    save: IptablesSave, ruleset: NftRuleset, mode: str
) -> None:
    nat = (
        iptables_service_nat(save, "10.107.25.64", 8081, "TCP", vip_is_local=False)
        if mode == "iptables"
        else nft_service_nat(ruleset, "10.107.25.64", 8081, "TCP", vip_is_local=False)
    )
    assert (nat.programmed, nat.endpoints, nat.unreadable) == (False, (), "")


@pytest.mark.parametrize("mode", ["iptables", "nftables"])
def test_the_recorded_spec_has_no_nodeports_and_none_are_read_into_it(save: IptablesSave, ruleset: NftRuleset, mode: str) -> None:
    # kube-proxy dispatches NodePorts on node addresses (KUBE-NODEPORTS / @nodeport-ips); both are empty.
    assert NODE_IP in ruleset.sets["nodeport-ips"]
    assert ruleset.maps["service-nodeports"] == ()
    nat = (
        iptables_service_nat(save, NODE_IP, 30080, "TCP", vip_is_local=True)
        if mode == "iptables"
        else nft_service_nat(ruleset, NODE_IP, 30080, "TCP", vip_is_local=True)
    )
    assert (nat.programmed, nat.endpoints, nat.no_endpoints_action) == (False, (), None)


def test_nftables_recording_keeps_hairpin_connections_and_cluster_ips_sets(ruleset: NftRuleset) -> None:
    assert set(ruleset.sets["cluster-ips"]) == {vip for vip, _, _ in SERVICES}
    # 1.36 masquerades hairpin traffic by one set (pod . pod . proto . port per local endpoint port)
    # instead of per-endpoint marks: no mark-for-masquerade chain, no endpoint chains.
    local = {
        f"{t.split(':')[0]} . {t.split(':')[0]} . {proto.lower()} . {t.split(':')[1]}"
        for (_, _, proto), (_, targets) in SERVICES.items()
        for t in targets
        if t.startswith("10.244.1.")
    }
    assert set(ruleset.sets["hairpin-connections"]) == local
    assert "mark-for-masquerade" not in ruleset.chains
    assert not any(chain.startswith("endpoint-") for chain in ruleset.chains)


# ------------------------------------------------------------------------------------------------
# The iptables fixtures our own writer made (fixtures/make_fixtures.py) checked against the real rules
# ------------------------------------------------------------------------------------------------

_OWN_ONLY = {
    # Features the recorded spec does not exercise (no service without endpoints, no NodePort, no
    # session affinity): their shapes come from pkg/proxy/iptables/proxier.go and its tests.
    "filter": {
        "-A KUBE-EXTERNAL-SERVICES -p tcp -m comment --comment C -m addrtype --dst-type LOCAL -m tcp --dport P "
        "-j REJECT --reject-with icmp-port-unreachable",
        "-A KUBE-SERVICES -d A -p tcp -m comment --comment C -m tcp --dport P -j REJECT --reject-with icmp-port-unreachable",
        # a known difference: the real rule counts the drop with `-m nfacct` (the agent reads both)
        "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP",
    },
    "nat": {
        "-A KUBE-EXT-H -j KUBE-SVC-H",
        "-A KUBE-EXT-H -m comment --comment C -j KUBE-MARK-MASQ",
        "-A KUBE-NODEPORTS -p tcp -m comment --comment C -m tcp --dport P -j KUBE-EXT-H",
        "-A KUBE-SEP-H -p tcp -m comment --comment C -m recent --set --name KUBE-SEP-H --mask A --rsource -m tcp "
        "-j DNAT --to-destination A",
        "-A KUBE-SVC-H -m comment --comment C -m recent --rcheck --seconds 10800 --reap --name KUBE-SEP-H --mask A "
        "--rsource -j KUBE-SEP-H",
    },
}


def _shapes(text: str) -> dict[str, set[str]]:
    """kube-proxy's rules with names, addresses, ports, comments and probabilities abstracted."""
    shapes: dict[str, set[str]] = {}
    table = ""
    for raw in text.splitlines():
        line = re.sub(r"^\[\d+:\d+\] ", "", raw.strip())
        if line.startswith("*"):
            table = line[1:]
        if not line.startswith("-A ") or not re.search(r"KUBE-(?!ROUTER|POD-FW|NWPLCY)", line):
            continue
        shape = re.sub(r"KUBE-(SVC|SEP|EXT|FW|SVL)-[A-Z0-9]{16}", r"KUBE-\1-H", line)
        shape = re.sub(r'--comment "[^"]*"', "--comment C", shape)
        shape = re.sub(r"\d+\.\d+\.\d+\.\d+(/\d+)?(:\d+)?", "A", shape)
        shape = re.sub(r"--dport \d+", "--dport P", shape)
        shape = re.sub(r"--probability [0-9.]+", "--probability X", shape)
        shapes.setdefault(table, set()).add(shape)
    return shapes


def test_every_rule_shape_our_iptables_fixture_has_is_one_the_real_kube_proxy_writes() -> None:
    own = _shapes((FIXTURES / "iptables_save_node.txt").read_text())
    real = _shapes("".join((RECORDED / f"node-1.{t}.iptables-save.txt").read_text() for t in ("nat", "filter")))
    for table, shapes in own.items():
        assert shapes - real.get(table, set()) == _OWN_ONLY.get(table, set()), table
    # and the shapes the walk relies on are in both
    for shape in (
        "-A KUBE-SERVICES -d A -p tcp -m comment --comment C -m tcp --dport P -j KUBE-SVC-H",
        "-A KUBE-SVC-H -m comment --comment C -m statistic --mode random --probability X -j KUBE-SEP-H",
        "-A KUBE-SEP-H -p tcp -m comment --comment C -m tcp -j DNAT --to-destination A",
    ):
        assert shape in own["nat"] and shape in real["nat"]


def test_an_iptables_service_chain_sending_packets_somewhere_unknown_is_unreadable_not_stale() -> None:
    text = (RECORDED / "node-1.nat.iptables-save.txt").read_text()
    odd = "\n".join(
        line.replace("-j KUBE-SEP-4U3JBYMCN7JNS4JV", "-j DNAT --to-destination 10.244.2.4:6379")
        if line.startswith("-A KUBE-SVC-J24A4QYSG6IQLY3E") and "KUBE-SEP-" in line
        else line
        for line in text.splitlines()
    )
    nat = iptables_service_nat(parse_iptables_save(odd + "\n"), "10.111.113.82", 6379, "TCP", vip_is_local=False)
    assert (nat.programmed, nat.layout, nat.endpoints) == (True, "unknown", ())
    assert nat.unreadable.startswith("service NAT uses a layout kubereach does not read yet")
    assert "--to-destination 10.244.2.4:6379" in nat.unreadable
