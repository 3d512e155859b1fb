"""Properties of `bot.parse.parse_question` over generated text.

Arbitrary text never makes the parser raise anything but `ParseError`; sentences assembled from the
grammar's own words explore the deep paths; and every accepted question's normalized text parses
back to the same question.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.parse import MAX_QUESTION_LENGTH, ParseError, Question, parse_question

MAX_MESSAGE_LENGTH = 320
"""A message to a person stays short however long the text it quotes."""

_WORDS = [
    # names and references
    "frontend", "api", "web-0", "redis-0", "shop", "svc/api", "pod/web", "deploy/frontend", "shop/svc/api",
    "api.shop", "api.shop.svc", "api.shop.svc.cluster.local", "redis-0.redis.shop.svc.cluster.local",
    "10-244-1-5.shop.pod.cluster.local", "api.stripe.com", "node/worker-1", "10.96.0.10", "10.244.1.5",
    "fd00::1", "[fd00::1]:443", "api:8080", "api:http", "api:53/udp", "10.96.0.10:53/udp", "svc/", "pod/",
    "web_app", "10.96.300.4", "a/b/c/d", "x:y:z", "[", "]", "http://api.shop:8080/x", "-", "--",
    # connectives, kinds, options, noise
    "to", "from", "->", "=>", "<-", "→", "←", "reach", "reachable", "by", "talk", "can't", "cant", "why",
    "is", "pod", "svc", "service", "pods", "deploy", "node", "port", "on", "at", "in", "the", "namespace",
    "ns", "-n", "--namespace=shop", "udp", "/udp", "tcp", "over", "8080", "53/udp", "udp/53", "70000", "0",
    "please", "hey", "/reach", "@kubereach", "?", "!", "...",
    # incident-channel words: "in NS" after a name, "(prod)", times, status classes, "for", "down"
    "in shop", "in payments", "(prod)", "(shop)", "for", "down", "since", "10:00", "10am", "5xx", "503s", "10",
    "minutes", "after the deploy", "waiting", "shop/api", "shop/frontend",
    # from outside, ways in, names outside the cluster
    "outside", "the internet", "clients", "external", "external ip", "nodeport", "node port", "30080",
    "on node-2", "on", "web's", "'s", "lb", "load balancer", "of", "example.com", "https://www.example.com/x",
    "http://x.example.org:8080/", "node-2:30080", "198.51.100.100:80",
    # Slack decorations
    "<@U123>", "<@U1|bob>", "<!here>", "<#C1|ops>", "<http://api.shop|api.shop>", "<mailto:a@b.c>",
    "`", "```", "*", "_", "~", "&gt;", "&lt;", "&amp;", "\u00a0", "\u2019", "\u201c", ":pray:",
]  # fmt: skip


def _same_question(first: Question, second: Question) -> bool:
    return (first.source, first.target, first.port, first.port_name, first.protocol, first.namespace) == (
        second.source,
        second.target,
        second.port,
        second.port_name,
        second.protocol,
        second.namespace,
    )


@settings(max_examples=400, deadline=None, database=None)
@given(st.text(max_size=300))
def test_arbitrary_text_raises_only_parse_error(text: str) -> None:
    try:
        parse_question(text)
    except ParseError as error:
        assert error.message
        assert len(error.message) <= MAX_MESSAGE_LENGTH
        assert error.closest_form
        assert error.example


@settings(max_examples=600, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_WORDS), max_size=12), st.sampled_from([" ", "", "  ", "\n"]))
def test_grammar_word_salad_raises_only_parse_error_and_round_trips(words: list[str], joiner: str) -> None:
    text = joiner.join(words)
    try:
        question = parse_question(text)
    except ParseError as error:
        assert error.message
        assert len(error.message) <= MAX_MESSAGE_LENGTH
        assert error.closest_form
        return
    assert _same_question(parse_question(question.normalized), question)
    assert question.raw == text


@settings(max_examples=50, deadline=None, database=None)
@given(st.text(min_size=MAX_QUESTION_LENGTH + 1, max_size=MAX_QUESTION_LENGTH + 50))
def test_text_over_the_length_limit_is_refused_with_its_length(text: str) -> None:
    try:
        parse_question(text)
    except ParseError as error:
        assert f"{len(text)} characters" in error.message
    else:
        raise AssertionError("text over the limit was accepted")
