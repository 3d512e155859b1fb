"""The FORWARD-path walk of filter.py over recorded iptables-save output."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodeagent.checks.filter import Flow, forward_verdict, rule_matches
from nodeagent.checks.iptables_save import IptablesSave, parse_iptables_save, parse_rule

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def save() -> IptablesSave:
    return parse_iptables_save((FIXTURES / "iptables_save_node.txt").read_text())


def test_policy_chain_drop_is_found_through_the_jump(save: IptablesSave) -> None:
    policy, drops, _possible = forward_verdict(save, Flow("10.244.3.4", "10.244.1.9", "tcp", 5432))
    assert policy == "ACCEPT"
    assert [(d.chain, d.target) for d in drops] == [("POLICY-FWD", "DROP")]
    assert drops[0].packets == 0


def test_other_ports_pass(save: IptablesSave) -> None:
    _policy, drops, _possible = forward_verdict(save, Flow("10.244.3.4", "10.244.1.9", "tcp", 5433))
    assert drops == ()


def test_no_endpoints_reject_in_kube_services_is_on_the_forward_path(save: IptablesSave) -> None:
    _policy, drops, _possible = forward_verdict(save, Flow("10.244.3.4", "10.96.5.5", "tcp", 80))
    assert [(d.chain, d.target) for d in drops] == [("KUBE-SERVICES", "REJECT")]


def test_rule_with_interface_match_is_possible_not_certain(save: IptablesSave) -> None:
    _policy, drops, possible = forward_verdict(save, Flow("10.244.3.4", "10.244.1.9", "udp", 9999))
    assert drops == ()
    assert [p.chain for p in possible] == ["POLICY-FWD"]


def test_invalid_state_drop_does_not_match_a_new_flow(save: IptablesSave) -> None:
    rule = parse_rule("-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP")
    assert rule_matches(rule, Flow("10.0.0.1", "10.0.0.2", "tcp", 80)) == "no"


def test_drop_policy_is_reported_when_nothing_accepts() -> None:
    save = parse_iptables_save("*filter\n:FORWARD DROP [3:180]\n-A FORWARD -s 10.9.0.0/16 -j ACCEPT\nCOMMIT\n")
    policy, drops, _ = forward_verdict(save, Flow("10.244.1.2", "10.244.2.3", "tcp", 80))
    assert policy == "DROP"
    assert [(d.rule, d.packets) for d in drops] == [("-P FORWARD DROP", 3)]
    _, accepted, _ = forward_verdict(save, Flow("10.9.1.2", "10.244.2.3", "tcp", 80))
    assert accepted == ()


def test_negated_destination_and_multiport_ranges() -> None:
    rule = parse_rule("-A F ! -d 10.0.0.0/8 -p tcp -m multiport --dports 80,8000:8100 -j DROP")
    assert rule_matches(rule, Flow("1.1.1.1", "192.168.1.1", "tcp", 8050)) == "yes"
    assert rule_matches(rule, Flow("1.1.1.1", "10.1.1.1", "tcp", 8050)) == "no"
    assert rule_matches(rule, Flow("1.1.1.1", "192.168.1.1", "tcp", 443)) == "no"
