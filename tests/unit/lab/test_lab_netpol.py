"""The NetworkPolicy compiler: which iptables lines a policy becomes, without touching a kernel."""

from __future__ import annotations

from typing import Any

import pytest

from lab.netpol import (
    FORWARD_CHAIN,
    INPUT_CHAIN,
    InvalidNetworkPolicy,
    NetworkPolicyApplyError,
    PolicyChains,
    compile_policy_chains,
    pod_chain_name,
    policy_chain_name,
    render_policy_rules,
)
from lab.netpol.apply import complete_script, parse_filter_table

FRONTEND, API, LEDGER, PROM, REMOTE_API = "10.244.1.10", "10.244.1.11", "10.244.1.12", "10.244.1.13", "10.244.2.21"
MARK = "-j MARK --set-xmark 0x10000/0x10000"


def ns(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}}


def pod(namespace: str, name: str, ip: str, node: str = "node1", ports: Any = (), **labels: str) -> dict[str, Any]:
    return {
        "metadata": {"namespace": namespace, "name": name, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "c", "ports": [dict(p) for p in ports]}]},
        "status": {"podIP": ip, "phase": "Running"},
    }


def netpol(namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": name}, "spec": spec}


NAMESPACES = [ns("shop", team="shop"), ns("payments", team="payments"), ns("monitoring", team="monitoring")]
PODS = [
    pod("shop", "frontend", FRONTEND, app="frontend",
        ports=[{"name": "http", "containerPort": 8080}, {"name": "metrics", "containerPort": 9100}]),
    pod("shop", "api", API, app="api", ports=[{"name": "metrics", "containerPort": 8080}]),
    pod("shop", "api-remote", REMOTE_API, node="node2", app="api",
        ports=[{"name": "metrics", "containerPort": 7070}]),
    pod("payments", "ledger", LEDGER, app="ledger",
        ports=[{"name": "https", "containerPort": 8443},
               {"name": "dns", "containerPort": 5353, "protocol": "UDP"}]),
    pod("monitoring", "prometheus", PROM, app="prometheus"),
]  # fmt: skip


def compile_node(*policies: dict[str, Any], node: str = "node1") -> PolicyChains:
    return compile_policy_chains(NAMESPACES, PODS, list(policies), node)


def policy_rules(chains: PolicyChains, namespace: str, name: str, direction: str = "Ingress") -> list[str]:
    return list(chains.chain(policy_chain_name(namespace, name, direction)).rules)  # type: ignore[arg-type]


def ledger_policy(ingress: list[dict[str, Any]]) -> dict[str, Any]:
    return netpol("payments", "ledger", {"podSelector": {"matchLabels": {"app": "ledger"}}, "ingress": ingress})


def test_shop_payments_policy_marks_only_shop_api_pods_on_tcp_8443() -> None:
    chains = compile_node(
        ledger_policy(
            [{"from": [{"namespaceSelector": {"matchLabels": {"team": "shop"}},
                        "podSelector": {"matchLabels": {"app": "api"}}}],
              "ports": [{"port": 8443}]}]
        )
    )  # fmt: skip
    rules = policy_rules(chains, "payments", "ledger")
    assert len(rules) == 2
    assert rules[0].startswith(f"-s {API}/32 -p tcp -m tcp --dport 8443 ")
    assert rules[1].startswith(f"-s {REMOTE_API}/32 -p tcp -m tcp --dport 8443 ")
    assert all(rule.endswith(MARK) for rule in rules)


def test_ledger_pod_chain_checks_ingress_only_and_drops_what_is_not_marked() -> None:
    chains = compile_node(ledger_policy([]))
    ledger_chain = pod_chain_name("payments", "ledger")
    forward = chains.chain(FORWARD_CHAIN).rules
    assert [r for r in forward if ledger_chain in r] == [
        f'-d {LEDGER}/32 -m comment --comment "ingress of pod payments/ledger" -j {ledger_chain}'
    ]
    assert forward[-1].startswith("-m mark --mark 0x20000/0x20000") and forward[-1].endswith("-j ACCEPT")
    rules = chains.chain(ledger_chain).rules
    assert "--ctstate RELATED,ESTABLISHED -j ACCEPT" in rules[0]
    assert any(r.startswith(f"-d {LEDGER}/32 -m mark ! --mark 0x10000/0x10000") and r.endswith("-j DROP") for r in rules)
    assert not any(r.startswith(f"-s {LEDGER}/32") for r in rules)
    assert chains.chain(INPUT_CHAIN).rules == ()
    # `ingress: []` isolates and allows nothing: the policy chain is empty.
    assert policy_rules(chains, "payments", "ledger") == []


def test_pods_no_policy_selects_and_pods_on_other_nodes_get_no_chain() -> None:
    chains = compile_node(ledger_policy([]))
    names = {chain.name for chain in chains.chains}
    for namespace, name in [("shop", "frontend"), ("shop", "api"), ("shop", "api-remote"), ("monitoring", "prometheus")]:
        assert pod_chain_name(namespace, name) not in names
    assert not any(FRONTEND in rule or API in rule for rule in chains.chain(FORWARD_CHAIN).rules)


def test_separate_peers_are_ored_and_one_peer_with_both_selectors_is_anded() -> None:
    shop = {"namespaceSelector": {"matchLabels": {"team": "shop"}}}
    api = {"podSelector": {"matchLabels": {"app": "api"}}}
    anded = policy_rules(compile_node(ledger_policy([{"from": [shop | api]}])), "payments", "ledger")
    ored = policy_rules(compile_node(ledger_policy([{"from": [shop, api]}])), "payments", "ledger")
    assert [r.split()[1] for r in anded] == [f"{API}/32", f"{REMOTE_API}/32"]
    # shop's pods OR pods labelled app=api in the policy's own namespace (payments has none).
    assert [r.split()[1] for r in ored] == [f"{FRONTEND}/32", f"{API}/32", f"{REMOTE_API}/32"]


def test_named_port_resolves_on_each_selected_pod_for_ingress() -> None:
    policy = netpol("shop", "metrics", {
        "podSelector": {},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
                     "ports": [{"port": "metrics"}]}],
    })  # fmt: skip
    rules = policy_rules(compile_node(policy), "shop", "metrics")
    assert [r.split(" -m comment")[0] for r in rules] == [
        f"-s {PROM}/32 -d {FRONTEND}/32 -p tcp -m tcp --dport 9100",
        f"-s {PROM}/32 -d {API}/32 -p tcp -m tcp --dport 8080",
    ]
    # On node2 the same policy resolves the name on the pod that lives there.
    remote = policy_rules(compile_node(policy, node="node2"), "shop", "metrics")
    assert [r.split(" -m comment")[0] for r in remote] == [f"-s {PROM}/32 -d {REMOTE_API}/32 -p tcp -m tcp --dport 7070"]


def test_named_port_resolves_on_the_destination_pod_for_egress_and_respects_protocol() -> None:
    policy = netpol("monitoring", "scrape", {
        "podSelector": {},
        "policyTypes": ["Egress"],
        "egress": [{"ports": [{"port": "metrics"}, {"port": "dns", "protocol": "UDP"}, {"port": "https"}]}],
    })  # fmt: skip
    rules = [r.split(" -m comment")[0] for r in policy_rules(compile_node(policy), "monitoring", "scrape", "Egress")]
    assert rules == [
        f"-d {FRONTEND}/32 -p tcp -m tcp --dport 9100",
        f"-d {API}/32 -p tcp -m tcp --dport 8080",
        f"-d {REMOTE_API}/32 -p tcp -m tcp --dport 7070",
        f"-d {LEDGER}/32 -p udp -m udp --dport 5353",
        f"-d {LEDGER}/32 -p tcp -m tcp --dport 8443",
    ]


def test_ipblock_except_becomes_a_chain_that_returns_for_the_exceptions() -> None:
    chains = compile_node(
        ledger_policy([{"from": [{"ipBlock": {"cidr": "10.244.0.0/16", "except": ["10.244.1.10/32", "10.244.2.0/24"]}}],
                        "ports": [{"port": 8443}]}])
    )  # fmt: skip
    (jump,) = policy_rules(chains, "payments", "ledger")
    block_chain = jump.rsplit("-j ", 1)[1]
    assert block_chain.startswith("KUBE-IPBLK-")
    assert jump.startswith("-p tcp -m tcp --dport 8443 ")
    rules = chains.chain(block_chain).rules
    assert rules[0].startswith("-s 10.244.1.10/32 ") and rules[0].endswith("-j RETURN")
    assert rules[1].startswith("-s 10.244.2.0/24 ") and rules[1].endswith("-j RETURN")
    assert rules[2].startswith("-s 10.244.0.0/16 ") and rules[2].endswith(MARK)


def test_ipblock_without_except_matches_in_place_and_egress_uses_the_destination() -> None:
    policy = netpol("monitoring", "out", {
        "podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{"ipBlock": {"cidr": "192.0.2.0/24"}}]}],
    })  # fmt: skip
    assert policy_rules(compile_node(policy), "monitoring", "out", "Egress")[0].startswith("-d 192.0.2.0/24 -m comment")
    prom_chain = pod_chain_name("monitoring", "prometheus")
    chains = compile_node(policy)
    assert any(rule.startswith(f"-s {PROM}/32 ") and prom_chain in rule for rule in chains.chain(INPUT_CHAIN).rules)


def test_ports_default_to_tcp_and_support_end_port_and_protocol_only() -> None:
    rules = policy_rules(
        compile_node(ledger_policy([{"ports": [{"port": 8000, "endPort": 8100}, {"protocol": "UDP"}, {"port": 53}]}])),
        "payments",
        "ledger",
    )
    assert [r.split(" -m comment")[0] for r in rules] == ["-p tcp -m tcp --dport 8000:8100", "-p udp", "-p tcp -m tcp --dport 53"]


def test_empty_rule_allows_everything_and_an_empty_selector_selects_everything() -> None:
    allow_all = policy_rules(compile_node(ledger_policy([{}])), "payments", "ledger")
    assert allow_all == ['-m comment --comment "payments/ledger ingress rule 0" ' + MARK]
    everything = policy_rules(compile_node(ledger_policy([{"from": [{"namespaceSelector": {}}]}])), "payments", "ledger")
    assert len(everything) == 5


def test_match_expressions_operators() -> None:
    def sources(expressions: list[dict[str, Any]]) -> list[str]:
        peer = {"namespaceSelector": {}, "podSelector": {"matchExpressions": expressions}}
        return [r.split()[1] for r in policy_rules(compile_node(ledger_policy([{"from": [peer]}])), "payments", "ledger")]

    assert sources([{"key": "app", "operator": "In", "values": ["api", "prometheus"]}]) == [
        f"{API}/32", f"{PROM}/32", f"{REMOTE_API}/32"
    ]  # fmt: skip
    assert sources([{"key": "app", "operator": "NotIn", "values": ["api", "ledger"]}]) == [f"{FRONTEND}/32", f"{PROM}/32"]
    assert sources([{"key": "tier", "operator": "NotIn", "values": ["x"]}]) == sources([])  # absent key matches NotIn
    assert sources([{"key": "app", "operator": "DoesNotExist"}]) == []
    assert len(sources([{"key": "app", "operator": "Exists"}])) == 5


def test_policy_types_default_to_ingress_plus_egress_only_when_there_are_egress_rules() -> None:
    spec = {"podSelector": {"matchLabels": {"app": "ledger"}}, "egress": [{"ports": [{"port": 53}]}]}
    chains = compile_node(netpol("payments", "both", spec))
    ledger_rules = chains.chain(pod_chain_name("payments", "ledger")).rules
    assert any(r.startswith(f"-d {LEDGER}/32") and r.endswith("-j DROP") for r in ledger_rules)
    assert any(r.startswith(f"-s {LEDGER}/32") and r.endswith("-j DROP") for r in ledger_rules)
    no_egress = compile_node(netpol("payments", "only-ingress", {"podSelector": {}, "egress": []}))
    assert not any(r.startswith(f"-s {LEDGER}/32") for r in no_egress.chain(pod_chain_name("payments", "ledger")).rules)


def test_script_is_deterministic_declares_every_chain_and_ends_with_commit() -> None:
    policies = [ledger_policy([{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.244.1.10/32"]}}]}])]
    script = render_policy_rules(NAMESPACES, PODS, policies, "node1")
    assert script == render_policy_rules(NAMESPACES, list(reversed(PODS)), policies, "node1")
    lines = script.splitlines()
    assert lines[0] == "*filter" and lines[-1] == "COMMIT"
    declared = {line[1:].split()[0] for line in lines if line.startswith(":")}
    used = {line.split()[1] for line in lines if line.startswith("-A ")}
    assert used <= declared
    assert all(len(name) <= 28 for name in declared)
    assert not any(line.startswith(("-F", "-X", "-I", "-D", "-A FORWARD", "-A INPUT")) for line in lines)


def test_invalid_policies_are_refused_with_a_reason() -> None:
    with pytest.raises(InvalidNetworkPolicy, match="unknown operator"):
        compile_node(ledger_policy([{"from": [{"podSelector": {"matchExpressions": [{"key": "a", "operator": "Is"}]}}]}]))
    with pytest.raises(InvalidNetworkPolicy, match="not a CIDR"):
        compile_node(ledger_policy([{"from": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}]))
    with pytest.raises(InvalidNetworkPolicy, match="TCP, UDP or SCTP"):
        compile_node(ledger_policy([{"ports": [{"protocol": "ICMP"}]}]))


SAVED = """# Generated by iptables-save
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-ROUTER-FORWARD - [0:0]
:KUBE-POD-FW-OLDOLDOLDOLDOLDO - [0:0]
:KUBE-FORWARD - [0:0]
-A FORWARD -j KUBE-ROUTER-FORWARD
-A FORWARD -j KUBE-ROUTER-FORWARD
-A FORWARD -m comment --comment "kube-proxy" -j KUBE-FORWARD
COMMIT
"""


def test_apply_step_deletes_stale_chains_and_keeps_exactly_one_jump() -> None:
    state = parse_filter_table(SAVED)
    assert state.jumps("FORWARD") == 2 and state.jumps("INPUT") == 0
    script = render_policy_rules(NAMESPACES, PODS, [], "node1")
    lines = complete_script(script, state).splitlines()
    assert lines[1] == ":KUBE-POD-FW-OLDOLDOLDOLDOLDO - [0:0]"
    assert lines[-4:] == [
        "-X KUBE-POD-FW-OLDOLDOLDOLDOLDO",
        "-D FORWARD -j KUBE-ROUTER-FORWARD",
        "-I INPUT 1 -j KUBE-ROUTER-INPUT",
        "COMMIT",
    ]
    settled = parse_filter_table(
        SAVED.replace("-A FORWARD -j KUBE-ROUTER-FORWARD\n", "", 1).replace("COMMIT", "-A INPUT -j KUBE-ROUTER-INPUT\nCOMMIT")
    )
    assert settled.jumps("FORWARD") == 1 and settled.jumps("INPUT") == 1
    assert not any(line.startswith(("-I ", "-D ")) for line in complete_script(script, settled).splitlines())
    assert "KUBE-FORWARD" not in {line[1:].split()[0] for line in lines if line.startswith(":")}


def test_apply_step_refuses_a_script_that_is_not_a_filter_transaction() -> None:
    with pytest.raises(NetworkPolicyApplyError, match=r"\*filter"):
        complete_script("*nat\nCOMMIT\n", parse_filter_table(SAVED))
