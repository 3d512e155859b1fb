"""The parser's parts: Slack clean-up, the lexer, reading one reference, the output types and errors."""

from __future__ import annotations

import ast
import dataclasses
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest

from bot.errors import BadInput
from bot.parse import MAX_QUESTION_LENGTH, ParseError, Protocol, Question, Ref, RefKind, parse_question
from bot.parse.errors import Unreadable
from bot.parse.lexer import lex
from bot.parse.models import question_text
from bot.parse.references import Shape, read_port, read_reference
from bot.parse.slack_text import clean_slack_text, url_host

PARSE_PACKAGE = Path(__file__).resolve().parents[2] / "bot" / "parse"

# --- Slack clean-up ----------------------------------------------------------------------------------


def test_slack_mentions_channels_and_specials_are_removed() -> None:
    text = clean_slack_text("<@U123> <@U9|bob> <!here> <!subteam^S1|@oncall> <#C1|incidents> frontend")
    assert text.split() == ["frontend"]


def test_slack_link_becomes_its_label_or_its_host() -> None:
    assert clean_slack_text("<http://api.shop|api.shop>").strip() == "api.shop"
    assert clean_slack_text("<https://api.shop:8443/healthz?x=1>").strip() == "api.shop:8443"
    assert clean_slack_text("<mailto:ops@example.com>").strip() == "ops@example.com"


def test_slack_entities_are_unescaped_after_links_are_read() -> None:
    assert clean_slack_text("a -&gt; b &amp;&amp; &lt;c&gt;") == "a -> b && <c>"


def test_typography_becomes_ascii() -> None:
    text = clean_slack_text("can\u2019t \u201capi\u201d\u00a0\u2192 web\u2013n \u27a1\ufe0f *bold* `code`")
    assert text.split() == ["can't", '"api"', "->", "web-n", "->", "bold", "code"]


def test_emoji_shortcodes_are_removed_but_ports_are_kept() -> None:
    assert clean_slack_text("api:8080 :fire: :+1::skin-tone-3:").split() == ["api:8080"]
    assert clean_slack_text("a :arrow_right: b").split() == ["a", "->", "b"]


def test_url_host_keeps_host_and_port_only() -> None:
    assert url_host("http://user@api.shop:80/x#y") == "api.shop:80"
    assert url_host("api.shop") == "api.shop"


# --- lexer -------------------------------------------------------------------------------------------


def test_lexer_splits_arrows_without_spaces_and_lowercases() -> None:
    assert lex("Web->API=>x<-y") == ["web", "->", "api", "->", "x", "<-", "y"]


def test_lexer_drops_apostrophes_and_edge_punctuation() -> None:
    assert lex("can't (svc/api:8080?!) 'web'. _x_ [fd00::1]") == ["cant", "svc/api:8080", "web", "x", "[fd00::1]"]


def test_lexer_drops_words_without_letters_or_digits() -> None:
    assert lex("!!! ... -- 🙏 ?") == []


# --- one reference ----------------------------------------------------------------------------------


def test_headless_pod_dns_name_keeps_its_parts() -> None:
    reading = read_reference("redis-0.redis.shop.svc.cluster.local:6379")
    ref = reading.to_ref(as_source=False)
    assert reading.shape is Shape.POD_DNS
    assert ref == Ref(
        kind=RefKind.POD,
        name="redis-0",
        namespace="shop",
        dns_name="redis-0.redis.shop.svc.cluster.local",
        service="redis",
        cluster_domain="cluster.local",
    )
    assert reading.port is not None and reading.port.number == 6379


def test_service_shorthand_is_a_service_as_target_and_a_workload_as_source() -> None:
    reading = read_reference("api.shop")
    assert reading.to_ref(as_source=False) == Ref(RefKind.SERVICE, "api", "shop", dns_name="api.shop")
    assert reading.to_ref(as_source=True) == Ref(RefKind.WORKLOAD, "api", "shop")


def test_pod_address_dns_name_reads_as_the_address() -> None:
    ref = read_reference("10-244-1-5.shop.pod.cluster.local").to_ref(as_source=False)
    assert ref.kind is RefKind.IP
    assert ref.address == IPv4Address("10.244.1.5")
    assert ref.namespace == "shop"


def test_bracketed_ipv6_with_port_and_protocol() -> None:
    reading = read_reference("[FD00::0001]:443/udp")
    assert reading.address == IPv6Address("fd00::1")
    assert reading.name == "fd00::1"
    assert reading.port is not None
    assert (reading.port.number, reading.port.protocol) == (443, Protocol.UDP)


def test_explicit_kind_overrides_what_the_dns_form_implies() -> None:
    ref = read_reference("pod/api.shop.svc.cluster.local").to_ref(as_source=True)
    assert ref == Ref(RefKind.POD, "api", "shop")


def test_port_names_follow_the_kubernetes_rules() -> None:
    assert read_port("http").name == "http"
    assert read_port("dns-tcp/tcp").protocol is Protocol.TCP
    for bad in ("a--b", "-http", "1234567890123456x", "h_t", "65536"):
        with pytest.raises(Unreadable):
            read_port(bad)


# --- output types -----------------------------------------------------------------------------------


def test_question_is_frozen_and_protocol_compares_to_plain_strings() -> None:
    question = parse_question("web -> api:53/udp")
    assert isinstance(question, Question)
    assert question.protocol == "UDP"
    with pytest.raises(dataclasses.FrozenInstanceError):
        question.port = 80  # type: ignore[misc]


def test_namespace_hint_stays_on_the_question_and_explicit_namespaces_on_refs() -> None:
    question = parse_question("frontend -> api.prod in shop")
    assert question.namespace == "shop"
    assert question.source.namespace is None
    assert question.target.namespace == "prod"


def test_question_text_marks_missing_parts() -> None:
    assert question_text(None, None) == "? → ?"
    assert question_text("pod/?", Ref(RefKind.SERVICE, "api"), port="?") == "pod/? → svc/api:?"
    ipv6 = Ref(RefKind.IP, "fd00::1", address=IPv6Address("fd00::1"))
    assert question_text(Ref(RefKind.WORKLOAD, "web", "shop"), ipv6, port=443, protocol=Protocol.UDP) == (
        "shop/web → [fd00::1]:443/udp"
    )


def test_service_refs_cannot_be_sources() -> None:
    assert not RefKind.SERVICE.can_be_source
    assert not RefKind.DNS.can_be_source
    assert RefKind.WORKLOAD.can_be_source
    assert RefKind.IP.can_be_source


# --- errors ------------------------------------------------------------------------------------------


def test_parse_error_is_bad_input_and_prints_the_closest_form() -> None:
    with pytest.raises(ParseError) as caught:
        parse_question("frontend")
    error = caught.value
    assert isinstance(error, BadInput)
    assert error.exit_code == 2
    assert "frontend → ?" in str(error)
    assert error.example in str(error)


def test_length_limit_is_inclusive() -> None:
    padding = " " * (MAX_QUESTION_LENGTH - len("frontend -> api"))
    assert parse_question("frontend -> api" + padding).target.name == "api"
    with pytest.raises(ParseError, match=f"{MAX_QUESTION_LENGTH + 1} characters long"):
        parse_question("frontend -> api" + padding + " ")


def test_long_unreadable_text_is_shortened_in_the_message() -> None:
    with pytest.raises(ParseError) as caught:
        parse_question("?" * 500)
    assert len(caught.value.message) < 200


def test_first_problem_wins_and_later_ones_do_not_hide_the_understood_parts() -> None:
    with pytest.raises(ParseError) as caught:
        parse_question("deploy/frontend -> svc/api:99999 -n shop")
    assert caught.value.closest_form == "deploy/frontend → svc/api:? -n shop"


# --- purity -----------------------------------------------------------------------------------------

ALLOWED_IMPORTS = {"__future__", "dataclasses", "enum", "ipaddress", "itertools", "re", "bot"}


@pytest.mark.parametrize("path", sorted(PARSE_PACKAGE.glob("*.py")), ids=lambda path: path.name)
def test_parser_modules_import_only_pure_modules(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    outside = {module for module in imported if module.split(".")[0] not in ALLOWED_IMPORTS}
    assert not outside, f"{path.name} imports {sorted(outside)}"
    from_bot = {module for module in imported if module.split(".")[0] == "bot"}
    assert all(module == "bot.errors" or module.startswith("bot.parse") for module in from_bot), from_bot
