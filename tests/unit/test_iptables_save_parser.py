"""The iptables-save parser on recorded output and on the tricky bits of its syntax."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodeagent.checks.iptables_save import IptablesSave, IptablesSaveError, parse_iptables_save, parse_rule, tokenize

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def node_save() -> IptablesSave:
    return parse_iptables_save((FIXTURES / "iptables_save_node.txt").read_text())


def test_tables_chains_and_policies_are_read(node_save: IptablesSave) -> None:
    assert set(node_save.tables) == {"filter", "nat"}
    forward = node_save.table("filter").chains["FORWARD"]
    assert forward.policy == "ACCEPT"
    assert (forward.packets, forward.bytes) == (0, 0)
    assert node_save.table("nat").chains["KUBE-SERVICES"].policy is None
    assert node_save.backend == "nf_tables"


def test_counters_in_front_of_rules_are_parsed_and_removed_from_text(node_save: IptablesSave) -> None:
    rule = next(node_save.table("filter").chains["POLICY-FWD"].rules())
    assert (rule.packets, rule.bytes) == (0, 0)
    assert rule.text.startswith("-A POLICY-FWD ")


def test_kernel_normalised_service_rule_is_split_into_matches_and_target() -> None:
    rule = parse_rule(
        '-A KUBE-SERVICES -d 10.96.0.10/32 -p udp -m comment --comment "kube-system/kube-dns:dns cluster IP" '
        "-m udp --dport 53 -j KUBE-SVC-TCOU7JCQXEZGVUNU"
    )
    assert rule.chain == "KUBE-SERVICES"
    assert rule.match("-d").value == "10.96.0.10/32"
    assert rule.match("-p").value == "udp"
    assert rule.comment == "kube-system/kube-dns:dns cluster IP"
    assert rule.match("--dport").value == "53"
    assert rule.match("--dport").module == "udp"
    assert rule.modules == ("comment", "udp")
    assert rule.target == "KUBE-SVC-TCOU7JCQXEZGVUNU"
    assert not rule.goto


def test_negated_source_is_marked_negated() -> None:
    rule = parse_rule("-A KUBE-SVC-X ! -s 10.244.0.0/16 -d 10.96.0.1/32 -p tcp -m tcp --dport 443 -j KUBE-MARK-MASQ")
    assert rule.match("-s").negated
    assert not rule.match("-d").negated


def test_negation_inside_a_module_applies_to_the_next_option_only() -> None:
    rule = parse_rule("-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN")
    assert rule.match("--mark").negated
    assert rule.match("--mark").module == "mark"


def test_probability_keeps_all_eleven_decimals() -> None:
    rule = parse_rule("-A KUBE-SVC-X -m statistic --mode random --probability 0.33333333349 -j KUBE-SEP-Y")
    assert rule.match("--probability").value == "0.33333333349"
    assert rule.match("--mode").value == "random"


def test_recent_flags_without_values_are_kept() -> None:
    rule = parse_rule(
        "-A KUBE-SVC-X -m recent --rcheck --seconds 10800 --reap --name KUBE-SEP-Y --mask 255.255.255.255 --rsource -j KUBE-SEP-Y"
    )
    assert rule.match("--rcheck").values == ()
    assert rule.match("--seconds").value == "10800"
    assert rule.match("--rsource") is not None


def test_target_options_are_separate_from_matches() -> None:
    rule = parse_rule("-A KUBE-SEP-Y -p tcp -m tcp -j DNAT --to-destination 10.244.1.5:8080")
    assert rule.target == "DNAT"
    assert rule.target_option("--to-destination").value == "10.244.1.5:8080"
    assert rule.match("--to-destination") is None


def test_goto_is_recognised() -> None:
    rule = parse_rule("-A FORWARD -g POLICY")
    assert rule.target == "POLICY"
    assert rule.goto


def test_quoted_comment_with_escaped_quote_and_spaces() -> None:
    words = tokenize(r'-A X -m comment --comment "say \"hi\" to  me" -j ACCEPT')
    assert words == ["-A", "X", "-m", "comment", "--comment", 'say "hi" to  me', "-j", "ACCEPT"]


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ('-A X -m comment --comment "a  b" -j Y', ["-A", "X", "-m", "comment", "--comment", "a  b", "-j", "Y"]),
        ('-A X -m comment --comment "" -j Y', ["-A", "X", "-m", "comment", "--comment", "", "-j", "Y"]),
        ('-A X --comment "one" --comment "two words"', ["-A", "X", "--comment", "one", "--comment", "two words"]),
        ('"quoted first" -A', ["quoted first", "-A"]),
        ('-A X x"y z"', ["-A", "X", 'x"y', 'z"']),  # quotes inside a word are not quoting (as the regex reads them)
        ('-A X "a"b c', ["-A", "X", "a", "b", "c"]),
    ],
)
def test_quotes_split_words_only_where_iptables_save_puts_them(line: str, words: list[str]) -> None:
    assert tokenize(line) == words


def test_counters_given_with_dash_c_after_the_chain() -> None:
    rule = parse_rule("-A FORWARD -c 12 3400 -j DROP")
    assert (rule.packets, rule.bytes) == (12, 3400)


def test_rules_without_comments_parse() -> None:
    save = parse_iptables_save((FIXTURES / "iptables_save_no_comments.txt").read_text())
    rules = list(save.table("nat").chains["KUBE-SERVICES"].rules())
    assert rules and all(rule.comment is None for rule in rules)


def test_missing_commit_is_an_error() -> None:
    with pytest.raises(IptablesSaveError, match="no COMMIT"):
        parse_iptables_save("*nat\n:PREROUTING ACCEPT [0:0]\n")


def test_garbage_is_an_error() -> None:
    with pytest.raises(IptablesSaveError, match="not iptables-save output"):
        parse_iptables_save("Chain INPUT (policy ACCEPT)\n")


def test_legacy_backend_is_recognised_from_the_header() -> None:
    save = parse_iptables_save("# Generated by iptables-save v1.8.7 (legacy) on x\n*nat\nCOMMIT\n")
    assert save.backend == "legacy"


def test_rules_are_indexed_by_destination_address(node_save: IptablesSave) -> None:
    services = node_save.table("nat").chains["KUBE-SERVICES"]
    udp_and_tcp_dns = services.lines_by_destination["10.96.0.10"]
    assert len(udp_and_tcp_dns) == 2
    assert all("-d 10.96.0.10/32" in line for line in udp_and_tcp_dns)
    assert "10.96.5.5" not in services.lines_by_destination  # rejected in the filter table, not in nat
