"""The options step: the words that set something for the whole question, taken out before names are read.

    option := ("-n" | "--namespace" | "namespace" | "ns") NAME | "in" ["the"] ["namespace"] NAME ["namespace"]
            | ("port" | "port:" | "port=") PORT | ("on" | "at") NUMBER | NUMBER["/"PROTO] | PROTO"/"NUMBER
            | ["/"]PROTO | CLOCK | NUMBER UNIT | STATUS          (times and HTTP status classes are dropped)
            | TRACE | INTERMITTENT | DOWN                       (flags: trace the path, a failure that comes and goes,
                                                               a lone name said to fail is the target)
            | ["'s"] ENTRY | OUTSIDE                          (ways in and clients outside, see `bot.parse.ways_in`)

Options go first so that what is left is names and connectives only: a bare number is a port, and
``10:00``, ``10 minutes`` and ``5xx`` are times and status classes, not ports. ``-n NS`` (and ``in NS``
before any name) is said once for both names; an ``in NS`` elsewhere stays where it was written, as an
`InNamespace`, for the phrases step to bind to the name before it.
"""

from __future__ import annotations

import re

from bot.parse.errors import NAMESPACE_EXAMPLE, PORT_EXAMPLE, Unreadable, shown
from bot.parse.findings import Findings
from bot.parse.forms import InNamespace, Outside, Word
from bot.parse.lexer import POSSESSIVE, word_at
from bot.parse.references import is_label, is_port_number
from bot.parse.vocabulary import (
    ARTICLES,
    ENTRY_NODE_PREPOSITIONS,
    INTERMITTENT_WORDS,
    NAMESPACE_FLAGS,
    OUTSIDE_WORDS,
    PORT_PREPOSITIONS,
    PORT_WORDS,
    PROTOCOL_WORDS,
    RESERVED,
    STATUS_FOLLOWERS,
    STATUS_LEADS,
    TARGET_STATE_WORDS,
    TIME_UNITS,
    TRACE_WORDS,
)
from bot.parse.ways_in import last_entry, starts_entry, take_entry, take_entry_node

_NAMESPACE_ASSIGNMENT = re.compile(r"(?:-n|--namespace|--ns|namespace|ns)[=:](.*)", re.DOTALL)
_PORT_ASSIGNMENT = re.compile(r"port[=:](.*)", re.DOTALL)
_CLOCK = re.compile(r"(?:[01]?[0-9]|2[0-3])[:h][0-5][0-9](?::[0-5][0-9])?(?:am|pm|z|utc)?|(?:1[0-2]|0?[1-9])(?:am|pm)", re.ASCII)
_DURATION = re.compile(r"[0-9]+(?:s|secs?|m|mins?|h|hrs?|d)", re.ASCII)
_STATUS_CLASS = re.compile(r"[1-5](?:xx|[0-9]x|[0-9][0-9]s)", re.ASCII)
_HTTP_STATUS = re.compile(r"[1-5][0-9][0-9]", re.ASCII)
_NAMESPACE_WORDS = ("namespace", "ns")


def take_options(words: list[str], findings: Findings) -> list[Word]:
    """Set the question's options in `findings` from `words`; return the words left, with what an
    ``in NS``, a way in or a client outside became, in the order they were written."""
    rest: list[Word] = []
    index = 0
    count = len(words)
    while index < count:
        word = words[index]
        following = word_at(words, index + 1)
        assigned = _NAMESPACE_ASSIGNMENT.fullmatch(word)
        if assigned is not None or word in NAMESPACE_FLAGS:
            value = assigned.group(1) if assigned is not None else following
            if not value or value in RESERVED:
                findings.problems.append(
                    Unreadable(
                        f"'{shown(word)}' needs a namespace name after it, e.g. '-n shop'.",
                        word,
                        example=NAMESPACE_EXAMPLE,
                    )
                )
                index += 1
                continue
            findings.set_namespace(value)
            index += 1 if assigned is not None else 2
            continue
        if word == "in":
            index, bound = _take_in(words, index)
            if bound is not None:
                rest.append(InNamespace(bound))
            continue
        if word == POSSESSIVE:
            index += 1
            if index < count and starts_entry(words, index):
                index = take_entry(words, index, rest, findings, possessive=True)
            continue
        if starts_entry(words, index):
            index = take_entry(words, index, rest, findings, possessive=False)
            continue
        if word in OUTSIDE_WORDS:
            rest.append(Outside(word))
            index += 1
            continue
        if word in ENTRY_NODE_PREPOSITIONS and last_entry(rest) is not None:
            taken = take_entry_node(words, index, rest)
            if taken != index:
                index = taken
                continue
        if _CLOCK.fullmatch(word) or _DURATION.fullmatch(word) or _STATUS_CLASS.fullmatch(word):
            index += 1
            continue
        if word.isdigit() and following in TIME_UNITS:
            index += 2
            continue
        if word in TRACE_WORDS:
            findings.trace = True
            index += 1
            continue
        if word in INTERMITTENT_WORDS:
            findings.intermittent = True
        if word in TARGET_STATE_WORDS:
            findings.target_state = True
        assigned = _PORT_ASSIGNMENT.fullmatch(word)
        if assigned is not None or word in PORT_WORDS:
            value = assigned.group(1) if assigned is not None else following
            if not value or value in RESERVED:
                findings.port_unreadable = True
                findings.problems.append(
                    Unreadable(
                        f"'{shown(word)}' needs a port after it, e.g. 'port 8080' or 'port http'.",
                        word,
                        example=PORT_EXAMPLE,
                    )
                )
                index += 1
                continue
            findings.take_port(value)
            index += 1 if assigned is not None else 2
            continue
        if word in PORT_PREPOSITIONS and following is not None and is_port_number(following):
            findings.take_port(following)
            index += 2
            continue
        if _HTTP_STATUS.fullmatch(word) and (
            (index > 0 and words[index - 1] in STATUS_LEADS) or word_at(words, index + 1) in STATUS_FOLLOWERS
        ):
            index += 1  # "fails with 504", "returns 503", "504 from api": an HTTP status, not a port
            continue
        if is_port_number(word):
            findings.take_port(word)
            index += 1
            continue
        protocol = PROTOCOL_WORDS.get(word.removeprefix("/"))
        if protocol is not None:
            findings.set_protocol(protocol)
            index += 1
            continue
        rest.append(word)
        index += 1
    return rest


def _take_in(words: list[str], index: int) -> tuple[int, str | None]:
    """Read ``in [the] [namespace] NAME [namespace]`` at `index`: the index after it and the namespace.

    None for a filler "in" (``in a minute``), and for ``in namespace`` without a valid name after
    it, which the namespace flag then reads and complains about.
    """
    after = index + 1
    while after < len(words) and words[after] in ARTICLES:
        after += 1
    if after >= len(words):
        return index + 1, None
    word = words[after]
    if word in _NAMESPACE_WORDS:
        value = word_at(words, after + 1)
        if value is None or value in RESERVED or not is_label(value):
            return after, None
        return after + 2, value
    if not is_label(word) or word in RESERVED:
        return index + 1, None  # "in" as a filler word
    after += 1
    if after < len(words) and words[after] in _NAMESPACE_WORDS:
        after += 1
    return after, word
