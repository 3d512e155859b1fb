"""The agent's walk of NodePort / external-IP / load-balancer dispatch (nodeagent.checks.nat.ingress),
over what iptables-save and nft print for the lab kube-proxy's rules (tests/unit/fixtures/kube-proxy-ingress,
made by its make_ingress.py) and over the real kube-proxy v1.36.2 recording (which has no NodePort).

node-1 runs a frontend pod (10.244.1.3), node-2 runs none; shop/frontend-nodeport and shop/web have
`externalTrafficPolicy: Local`, shop/api `Cluster` with its one pod on node-2.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nodeagent.checks.iptables_save import parse_iptables_save
from nodeagent.checks.nat.ingress import EXTERNAL_IP, LOAD_BALANCER, NODEPORT, iptables_entry_nat, nft_entry_nat
from nodeagent.checks.nat.model import ServiceNat
from nodeagent.checks.nat.nftables import parse_nft_ruleset

FIXTURES = Path(__file__).parent / "fixtures"
INGRESS = FIXTURES / "kube-proxy-ingress"
RECORDED = FIXTURES / "kube-proxy-v1.36.2"
NODE_IP = {"node-1": "10.240.0.11", "node-2": "10.240.0.12"}


def iptables(node: str, entry: str, address: str, port: int) -> ServiceNat:
    save = parse_iptables_save((INGRESS / f"{node}.iptables-save.txt").read_text())
    return iptables_entry_nat(save, entry, address, port, "TCP", address_is_local=address == NODE_IP[node])


def nftables(node: str, entry: str, address: str, port: int) -> ServiceNat:
    ruleset = parse_nft_ruleset(json.loads((INGRESS / f"{node}.ip-kube-proxy.json").read_text()))
    return nft_entry_nat(ruleset, entry, address, port, "TCP", address_is_local=address == NODE_IP[node])


WALKS = {"iptables": iptables, "nftables": nftables}


def addresses(nat: ServiceNat) -> list[str]:
    return [f"{e.ip}:{e.port}" for e in nat.endpoints]


@pytest.mark.parametrize("mode", WALKS)
def test_local_policy_nodeport_reaches_only_the_nodes_own_endpoint(mode: str) -> None:
    nat = WALKS[mode]("node-1", NODEPORT, NODE_IP["node-1"], 30080)
    assert nat.programmed and nat.entry == NODEPORT
    assert nat.external_policy == "Local"
    assert addresses(nat) == ["10.244.1.3:8080"]  # not node-3's 10.244.3.3: external traffic stays on the node
    assert nat.no_endpoints_action is None
    assert nat.service_name == "shop/frontend-nodeport:http"
    assert any("not taken by a client outside the cluster" in r for r in nat.rules)


@pytest.mark.parametrize("mode", WALKS)
def test_local_policy_nodeport_on_a_node_without_endpoints_is_dropped(mode: str) -> None:
    nat = WALKS[mode]("node-2", NODEPORT, NODE_IP["node-2"], 30080)
    assert nat.programmed and nat.external_policy == "Local"
    assert nat.endpoints == ()  # the pod and node short-circuits to every endpoint are not for outside clients
    assert nat.no_endpoints_action == "DROP"
    drop = nat.rules[-1]
    assert "30080" in drop and ("has no local endpoints" in drop or "no-endpoint-nodeports" in drop)


@pytest.mark.parametrize("mode", WALKS)
@pytest.mark.parametrize(("entry", "address"), [(EXTERNAL_IP, "198.51.100.100"), (LOAD_BALANCER, "198.51.100.10")])
def test_external_and_load_balancer_ips_follow_the_same_policy(mode: str, entry: str, address: str) -> None:
    served = WALKS[mode]("node-1", entry, address, 80)
    assert served.programmed and served.entry == entry and served.external_policy == "Local"
    assert addresses(served) == ["10.244.1.3:8080"]
    dropped = WALKS[mode]("node-2", entry, address, 80)
    assert dropped.programmed and dropped.endpoints == () and dropped.no_endpoints_action == "DROP"


@pytest.mark.parametrize("mode", WALKS)
def test_cluster_policy_nodeport_reaches_every_endpoint_from_any_node(mode: str) -> None:
    for node in ("node-1", "node-2"):
        nat = WALKS[mode](node, NODEPORT, NODE_IP[node], 30090)
        assert nat.programmed and nat.external_policy == "Cluster", node
        assert addresses(nat) == ["10.244.2.4:8080"], node
        assert nat.no_endpoints_action is None


def test_iptables_reports_the_health_check_node_port_it_accepts() -> None:
    assert iptables("node-2", NODEPORT, NODE_IP["node-2"], 30081).health_check_node_port == 31234
    assert iptables("node-1", LOAD_BALANCER, "198.51.100.10", 80).health_check_node_port == 31234
    assert iptables("node-1", NODEPORT, NODE_IP["node-1"], 30080).health_check_node_port is None  # a NodePort: no LB to check


def test_nftables_writes_no_health_check_rule() -> None:
    assert nftables("node-2", NODEPORT, NODE_IP["node-2"], 30081).health_check_node_port is None


@pytest.mark.parametrize("mode", WALKS)
def test_an_unknown_node_port_is_not_programmed(mode: str) -> None:
    nat = WALKS[mode]("node-1", NODEPORT, NODE_IP["node-1"], 31999)
    assert not nat.programmed and nat.endpoints == () and nat.no_endpoints_action is None


@pytest.mark.parametrize("mode", WALKS)
def test_a_node_port_on_an_address_that_is_not_the_nodes_is_not_taken(mode: str) -> None:
    nat = WALKS[mode]("node-1", NODEPORT, NODE_IP["node-2"], 30080)
    assert not nat.programmed


def test_the_recorded_upstream_rules_have_the_nodeport_tail_call_and_no_nodeport() -> None:
    """Real kube-proxy v1.36.2 with ClusterIP services only: KUBE-SERVICES ends in the jump to
    KUBE-NODEPORTS, which holds nothing, so a NodePort is reported as not programmed (never endpoints)."""
    save = parse_iptables_save(
        (RECORDED / "node-1.nat.iptables-save.txt").read_text() + (RECORDED / "node-1.filter.iptables-save.txt").read_text()
    )
    nat = iptables_entry_nat(save, NODEPORT, "10.240.0.11", 30080, "TCP", address_is_local=True)
    assert not nat.programmed
    assert nat.rules[0].startswith("-A KUBE-SERVICES") and nat.rules[0].endswith("-j KUBE-NODEPORTS")
    ruleset = parse_nft_ruleset(json.loads((RECORDED / "node-1.ip-kube-proxy.json").read_text()))
    assert not nft_entry_nat(ruleset, NODEPORT, "10.240.0.11", 30080, "TCP").programmed
    # the recording's nodeport-ips holds node-1's address only
    assert not nft_entry_nat(ruleset, NODEPORT, "10.240.0.12", 30080, "TCP").programmed
    assert "not in @nodeport-ips" in nft_entry_nat(ruleset, NODEPORT, "10.240.0.12", 30080, "TCP").rules[0]
