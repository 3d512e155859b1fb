"""What a decision says beyond allowed/denied: deciding policies and rules, reasons, IP ends, bad input."""

from __future__ import annotations

import ipaddress
import json

import pytest

from bot.errors import BadInput
from bot.policy import (
    Cluster,
    Direction,
    Pod,
    PolicyRef,
    RuleRef,
    build_cluster,
    cluster_from_objects,
    decision_as_dict,
    evaluate,
    explain,
    parse_namespace,
    parse_network_policy,
)
from tests.unit.policy_cases.matrix import namespace, netpol, pod, xyz_cluster

LEDGER_INGRESS = netpol(
    "payments",
    "ledger-ingress",
    {
        "podSelector": {"matchLabels": {"app": "ledger"}},
        "ingress": [
            {
                "from": [
                    {
                        "namespaceSelector": {"matchLabels": {"team": "shop"}},
                        "podSelector": {"matchLabels": {"app": "api"}},
                    }
                ],
                "ports": [{"protocol": "TCP", "port": 8443}],
            }
        ],
    },
)


def shop() -> tuple[Cluster, dict[str, Pod]]:
    """The lab's shop with ledger-ingress; pods keyed by their first name part (api, ledger, ...)."""
    cluster = cluster_from_objects(
        [
            namespace("shop", team="shop"),
            namespace("payments", team="payments", pci="true"),
            namespace("monitoring"),
            pod("shop", "frontend-6c9f8", "10.244.1.10", {"app": "frontend"}, []),
            pod("shop", "api-5d7b9", "10.244.2.11", {"app": "api"}, []),
            pod("payments", "ledger-7f4c2", "10.244.1.12", {"app": "ledger"}, [("https", 8443, "TCP")]),
            pod("monitoring", "prometheus-0", "10.244.2.13", {"app": "prometheus"}, []),
            LEDGER_INGRESS,
        ]
    )
    return cluster, {p.name.split("-")[0]: p for p in cluster.pods}


def test_allowed_flow_names_the_admitting_policy_and_rule() -> None:
    cluster, pods = shop()
    decision = evaluate(cluster, pods["api"], pods["ledger"], 8443, "TCP")
    assert decision.allowed
    assert decision.ingress.isolated
    assert decision.ingress.selecting_policies == (PolicyRef("payments", "ledger-ingress"),)
    assert decision.ingress.allowing_rules == (RuleRef(PolicyRef("payments", "ledger-ingress"), Direction.INGRESS, 0),)
    assert not decision.egress.isolated
    assert decision.egress.selecting_policies == ()
    assert "not isolated for egress" in decision.egress.reason


def test_denied_ingress_reason_names_pod_policy_peer_and_port() -> None:
    cluster, pods = shop()
    decision = evaluate(cluster, pods["frontend"], pods["ledger"], 8443)
    assert not decision.allowed
    assert [d.direction for d in decision.denying] == [Direction.INGRESS]
    assert decision.ingress.allowing_rules == ()
    assert decision.ingress.reason.startswith(
        "pod payments/ledger-7f4c2 is isolated for ingress by payments/ledger-ingress; "
        "no rule admits pod shop/frontend-6c9f8 on TCP/8443"
    )
    # The near miss: the rule opens the port, but not for this peer.
    assert (
        "payments/ledger-ingress ingress rule 0 admits TCP/8443 but not from pod shop/frontend-6c9f8" in decision.ingress.reason
    )
    assert "denies" in explain(decision)
    assert "at ingress." in explain(decision)


def test_denied_on_wrong_port_says_the_peer_matched_but_not_the_port() -> None:
    cluster, pods = shop()
    decision = evaluate(cluster, pods["api"], pods["ledger"], 8080)
    assert not decision.allowed
    (match,) = decision.ingress.rule_matches
    assert match.peer_matches and not match.port_matches
    assert "admits pod shop/api-5d7b9 but not on TCP/8080" in decision.ingress.reason


def test_prometheus_to_ledger_is_denied_at_ingress() -> None:
    cluster, pods = shop()
    decision = evaluate(cluster, pods["prometheus"], pods["ledger"], 8443)
    assert not decision.allowed
    assert decision.egress.allowed and not decision.ingress.allowed


def test_explain_names_egress_when_egress_denies_and_both_when_both_deny() -> None:
    cluster = cluster_from_objects(
        [
            *xyz_cluster(),
            netpol("x", "deny-egress", {"podSelector": {}, "policyTypes": ["Egress"]}),
            netpol("y", "deny-ingress", {"podSelector": {}}),
        ]
    )
    xa, ya, za = cluster.pod("x", "a"), cluster.pod("y", "a"), cluster.pod("z", "a")
    assert xa is not None and ya is not None and za is not None
    egress_only = evaluate(cluster, xa, za, 80)
    assert [d.direction for d in egress_only.denying] == [Direction.EGRESS]
    assert "at egress." in explain(egress_only)
    assert "its policies have no rules for this direction" in egress_only.egress.reason
    both = evaluate(cluster, xa, ya, 80)
    assert [d.direction for d in both.denying] == [Direction.EGRESS, Direction.INGRESS]
    assert "at egress and ingress." in explain(both)
    allowed = evaluate(cluster, za, xa, 80)
    assert allowed.allowed and explain(allowed).startswith("NetworkPolicy allows pod z/a → pod x/a on TCP/80.")


def test_external_destination_is_judged_on_egress_only_with_ip_block_except() -> None:
    cluster = cluster_from_objects(
        [
            *xyz_cluster(),
            netpol(
                "x",
                "a-egress-cidr",
                {
                    "podSelector": {"matchLabels": {"pod": "a"}},
                    "policyTypes": ["Egress"],
                    "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.2.0/24"]}}]}],
                },
            ),
        ]
    )
    xa = cluster.pod("x", "a")
    assert xa is not None
    inside = evaluate(cluster, xa, "10.0.5.5", 443)
    assert inside.allowed
    assert not inside.ingress.evaluated and inside.ingress.pod is None
    assert inside.egress.allowing_rules == (RuleRef(PolicyRef("x", "a-egress-cidr"), Direction.EGRESS, 0),)
    assert not evaluate(cluster, xa, ipaddress.ip_address("10.0.2.50"), 443).allowed
    assert not evaluate(cluster, xa, "8.8.8.8", 53, "UDP").allowed
    # An IP never matches pod or namespace selectors.
    xb = cluster.pod("x", "b")
    assert xb is not None
    assert evaluate(cluster, xb, "8.8.8.8", 53).allowed


def test_external_source_is_judged_on_ingress_only() -> None:
    cluster = cluster_from_objects(
        [
            *xyz_cluster(),
            netpol(
                "x",
                "a-from-office",
                {
                    "podSelector": {"matchLabels": {"pod": "a"}},
                    "ingress": [{"from": [{"ipBlock": {"cidr": "203.0.113.0/24"}}, {"namespaceSelector": {}}]}],
                },
            ),
        ]
    )
    xa = cluster.pod("x", "a")
    assert xa is not None
    office = evaluate(cluster, "203.0.113.9", xa, 80)
    assert office.allowed and not office.egress.evaluated
    assert not evaluate(cluster, "198.51.100.1", xa, 80).allowed


def test_named_port_never_matches_an_ip_destination() -> None:
    cluster = cluster_from_objects(
        [
            *xyz_cluster(),
            netpol(
                "x",
                "egress-named",
                {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": "serve-80-tcp"}]}]},
            ),
        ]
    )
    xa, ya = cluster.pod("x", "a"), cluster.pod("y", "a")
    assert xa is not None and ya is not None
    assert evaluate(cluster, xa, ya, 80).allowed
    assert not evaluate(cluster, xa, "10.0.2.1", 80).allowed  # y/a's IP, but given as a bare IP


def test_ipv4_block_does_not_match_an_ipv6_pod() -> None:
    cluster = cluster_from_objects(
        [
            namespace("v6"),
            pod("v6", "client", "fd00::1", {"app": "client"}, []),
            pod("v6", "server", "fd00::2", {"app": "server"}, []),
            netpol("v6", "from-v4", {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]}),
            netpol(
                "v6",
                "from-v6",
                {"podSelector": {"matchLabels": {"app": "client"}}, "ingress": [{"from": [{"ipBlock": {"cidr": "::/0"}}]}]},
            ),
        ]
    )
    client, server = cluster.pod("v6", "client"), cluster.pod("v6", "server")
    assert client is not None and server is not None
    assert not evaluate(cluster, client, server, 80).allowed
    assert evaluate(cluster, server, client, 80).allowed


def test_yaml_boolean_label_values_match_string_selectors() -> None:
    ns = parse_namespace({"metadata": {"name": "payments", "labels": {"pci": True}}})
    assert ns.labels == {"pci": "true", "kubernetes.io/metadata.name": "payments"}


def test_decision_as_dict_is_json_with_both_directions() -> None:
    cluster, pods = shop()
    payload = decision_as_dict(evaluate(cluster, pods["frontend"], pods["ledger"], 8443))
    json.dumps(payload)
    assert payload["allowed"] is False
    assert payload["source"] == "shop/frontend-6c9f8"
    assert payload["destination"] == "payments/ledger-7f4c2"
    assert payload["protocol"] == "TCP" and payload["port"] == 8443
    ingress = payload["ingress"]
    assert isinstance(ingress, dict)
    assert ingress["isolated"] is True and ingress["allowed"] is False
    assert ingress["policies"] == ["payments/ledger-ingress"]
    assert ingress["rules"] == [{"policy": "payments/ledger-ingress", "rule": 0, "peer_matches": False, "port_matches": True}]


@pytest.mark.parametrize(
    ("port", "protocol", "message"),
    [(0, "TCP", "port 0"), (65536, "TCP", "port 65536"), (80, "ICMP", "unknown protocol")],
)
def test_evaluate_rejects_bad_port_and_protocol(port: int, protocol: str, message: str) -> None:
    cluster, pods = shop()
    with pytest.raises(BadInput, match=message):
        evaluate(cluster, pods["api"], pods["ledger"], port, protocol)


def test_evaluate_rejects_two_ip_ends_and_non_ip_strings() -> None:
    cluster = build_cluster()
    with pytest.raises(BadInput, match="neither"):
        evaluate(cluster, "10.0.0.1", "10.0.0.2", 80)
    with pytest.raises(BadInput, match="neither a pod nor an IP"):
        evaluate(cluster, "shop/api", "10.0.0.2", 80)


@pytest.mark.parametrize(
    ("spec", "field", "problem"),
    [
        (
            {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}]},
            "spec.ingress[0].from[0]",
            "ipBlock cannot be combined",
        ),
        (
            {"podSelector": {"matchExpressions": [{"key": "a", "operator": "Like", "values": ["b"]}]}},
            "spec.podSelector.matchExpressions[0].operator",
            "unknown operator 'Like'",
        ),
        (
            {"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}]},
            "spec.egress[0].to[0].ipBlock.cidr",
            "is not a CIDR",
        ),
        (
            {"podSelector": {}, "ingress": [{"ports": [{"port": "http", "endPort": 90}]}]},
            "spec.ingress[0].ports[0].endPort",
            "needs a numeric port",
        ),
        (
            {"podSelector": {}, "ingress": [{"ports": [{"port": 90, "endPort": 80}]}]},
            "spec.ingress[0].ports[0].endPort",
            "below port 90",
        ),
        ({"podSelector": {}, "policyTypes": ["Inbound"]}, "spec.policyTypes[0]", "unknown policy type"),
        ({"podSelector": {}, "ingress": [{"from": [{}]}]}, "spec.ingress[0].from[0]", "a peer needs"),
        (
            {"podSelector": {"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}},
            "spec.podSelector.matchExpressions[0].values",
            "needs at least one value",
        ),
    ],
)
def test_invalid_policies_are_rejected_with_object_and_field(spec: dict[str, object], field: str, problem: str) -> None:
    with pytest.raises(BadInput) as caught:
        parse_network_policy(netpol("shop", "broken", spec))
    assert caught.value.message.startswith(f"NetworkPolicy shop/broken: {field}: ")
    assert problem in caught.value.message


def test_host_network_pods_are_not_isolated_and_match_only_ip_blocks() -> None:
    node_agent = pod("x", "agent", "10.240.0.11", {"pod": "a"}, [])
    node_agent["spec"]["hostNetwork"] = True
    cluster = cluster_from_objects(
        [
            *xyz_cluster(),
            node_agent,
            netpol("x", "deny-all", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
            netpol(
                "y",
                "a-from-pod-a-or-nodes",
                {
                    "podSelector": {"matchLabels": {"pod": "a"}},
                    "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "a"}}}]}],
                },
            ),
            netpol(
                "y",
                "b-from-nodes",
                {
                    "podSelector": {"matchLabels": {"pod": "b"}},
                    "ingress": [{"from": [{"ipBlock": {"cidr": "10.240.0.0/24"}}]}],
                },
            ),
        ]
    )
    agent, xa, ya, yb = (cluster.pod(*n.split("/")) for n in ("x/agent", "x/a", "y/a", "y/b"))
    assert agent is not None and xa is not None and ya is not None and yb is not None
    # x's deny-all selects the agent by labels, yet the host-network pod is not isolated.
    to_agent = evaluate(cluster, ya, agent, 80)
    assert to_agent.allowed and "uses the host network" in to_agent.ingress.reason
    # Selectors match pod x/a (pod=a) but not the host-network agent with the same labels ...
    from_agent = evaluate(cluster, agent, ya, 80)
    assert not from_agent.allowed and [d.direction for d in from_agent.denying] == [Direction.INGRESS]
    # ... which an ipBlock of the node network does match.
    assert evaluate(cluster, agent, yb, 80).allowed
