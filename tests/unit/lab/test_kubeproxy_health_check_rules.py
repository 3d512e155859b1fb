"""The health check node port in the lab kube-proxy's rules, as upstream kube-proxy writes it.

iptables mode: a LoadBalancer with `externalTrafficPolicy: Local` gets, on every node whether or not it
runs an endpoint, `-A KUBE-NODEPORTS -m comment --comment "NS/SVC:PORT health check node port" -m tcp
-p tcp --dport N -j ACCEPT` in the filter table (pkg/proxy/iptables/proxier.go), which filter INPUT
reaches through the "kubernetes health check service ports" jump recorded from real kube-proxy
v1.36.2. nftables mode writes no rule for it. The lines are compared with what iptables-save prints
for them (tests/unit/fixtures/kube-proxy-ingress, dumped from the kernel by its make_ingress.py).
"""

from __future__ import annotations

from pathlib import Path

from lab.kubeproxy.iptables import JUMPS, NODEPORTS, render_iptables
from lab.kubeproxy.nftables import render_nftables
from nodeagent.checks.iptables_save import parse_iptables_save, parse_rule
from tests.unit.ingress_objects import HEALTH_PORT, node, services, slices

FIXTURES = Path(__file__).parents[1] / "fixtures"
ACCEPT = '-A KUBE-NODEPORTS -m comment --comment "shop/web:http health check node port" -m tcp -p tcp --dport 31234 -j ACCEPT'
SAVED = '-A KUBE-NODEPORTS -p tcp -m comment --comment "shop/web:http health check node port" -m tcp --dport 31234 -j ACCEPT'


def filter_lines(node_name: str) -> list[str]:
    text = render_iptables(services(), slices(), node(node_name)).restore_input
    return text.split("*filter\n", 1)[1].split("COMMIT", 1)[0].splitlines()


def test_every_node_accepts_the_health_check_node_port_with_or_without_an_endpoint() -> None:
    for name in ("node-1", "node-2", "node-3"):
        assert filter_lines(name).count(ACCEPT) == 1, name


def test_only_a_local_load_balancer_has_a_health_check_port() -> None:
    text = "\n".join(filter_lines("node-2"))
    assert text.count("health check node port") == 1  # shop/web only: frontend-nodeport is a NodePort, api is Cluster
    cluster = [s for s in services() if s["metadata"]["name"] == "web"]
    cluster[0]["spec"]["externalTrafficPolicy"] = "Cluster"
    assert "health check node port" not in render_iptables(cluster, slices(), node("node-2")).restore_input


def test_the_rendered_rule_is_the_rule_iptables_save_prints() -> None:
    saved = (FIXTURES / "kube-proxy-ingress" / "node-2.iptables-save.txt").read_text()
    assert SAVED in saved.splitlines()
    mine, printed = parse_rule(ACCEPT), parse_rule(SAVED)
    assert (mine.chain, mine.target, mine.comment) == (printed.chain, printed.target, printed.comment)
    assert {(o.name, o.values) for o in mine.matches} == {(o.name, o.values) for o in printed.matches}


def test_input_reaches_kube_nodeports_as_in_the_upstream_recording() -> None:
    recorded = parse_iptables_save((FIXTURES / "kube-proxy-v1.36.2" / "node-1.filter.iptables-save.txt").read_text())
    table = recorded.table("filter")
    assert table is not None
    jumps = [r for r in table.chains["INPUT"].rules() if r.target == NODEPORTS]
    assert [r.comment for r in jumps] == ["kubernetes health check service ports"]
    assert any(j.table == "filter" and j.chain == "INPUT" and j.rule[-1] == NODEPORTS for j in JUMPS)


def test_nftables_mode_writes_no_rule_for_the_health_check_port() -> None:
    script = render_nftables(services(), slices(), node("node-2")).script
    assert str(HEALTH_PORT) not in script
