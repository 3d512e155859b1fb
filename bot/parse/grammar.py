"""The question grammar: from cleaned words to a `Question`, or a `ParseError` with the closest form.

The grammar, in the order it is applied::

    question   := [command] item*                        (noise words anywhere are dropped)
    item       := option | connective | phrase
    option     := ("-n" | "--namespace" | "namespace" | "ns") NAME | "in" ["the"] ["namespace"] NAME ["namespace"]
                | ("port" | "port:" | "port=") PORT | ("on" | "at") NUMBER | NUMBER["/"PROTO] | PROTO"/"NUMBER
                | ["/"]PROTO | CLOCK | NUMBER UNIT | STATUS          (times and HTTP status classes are dropped)
    connective := (FORWARD word | BACKWARD word)+        the last word decides the direction
    phrase     := KIND REFERENCE | REFERENCE [KIND] | KIND          (a kind alone is an error)
                | OUTSIDE+                                         (outside, internet, clients, …: one client)
                | phrase ["'s"] [BRIDGE*] ENTRY | ENTRY ("of"|"for") phrase | "nodeport" NUMBER
    ENTRY      := ("nodeport" | "node port" | "load balancer" | "lb" | "external ip" | …) [NUMBER] [("on"|"at") ["node"] NODE]
    REFERENCE  := [[NS "/"] KIND "/"] NAME[.NS[.svc[.DOMAIN]]] [":" PORT] ["/" PROTO] | IP | "[" IPv6 "]:" PORT | URL

Exactly two phrases must remain, a source and a target. The connective between them decides which is
which: a forward one (``to``, ``->``, ``reach``, ``talk to``) puts the source first, a backward one
(``from``, ``reachable from``, ``<-``) puts the target first. Connectives before the first or after
the last phrase only matter when there is one phrase (to say which side is missing; a lone service
or DNS name is a target). After a leading ``/reach`` two phrases with nothing between them read as
``SOURCE TARGET``. Where several phrases stand on one side, one marked reference (with a kind, a
namespace, a port, a dot or an address) wins and the bare unknown words beside it are skipped;
several bare words on one side are ambiguous and an error.

A way into the cluster (``ENTRY``: a NodePort, a load balancer, an external IP) belongs to the service
written before it (``web's lb``, ``svc/web nodeport``, ``web via its load balancer``) or after it (``the
nodeport of web``); a NodePort with its number stands alone (``nodeport 30080 on node-2``). A question
about a way in that names no source is asked from outside (``why is web's lb down``), and a client
outside is never the target. A URL's scheme gives the port when the URL has none (https: 443).

Namespaces bind to the name they follow: ``frontend in shop can't reach ledger in payments`` names
one namespace per name, as ``shop/frontend → payments/ledger`` does; a trailing ``in NS`` belongs to
the nearest name (``frontend-7d9f → svc/ledger in payments`` leaves the source's namespace open for
the resolver to find), or to the other name when the nearest already has its own. ``-n NS``, and
``in NS`` before any name, are said once for both names (`Question.namespace`).

Words are reserved: a noise word is never a name on its own (``deploy/test`` names a workload called
``test``); a bare number is a port (``10:00``, ``10 minutes`` and ``5xx`` are times and status classes,
not ports).

This module is longer than the project's ~600 lines: it is the one grammar, applied in the order
written above (ways in and clients outside included), and splitting it would scatter that order.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import itertools
import re
from dataclasses import dataclass

from bot.parse.errors import ParseError, Unreadable, shown
from bot.parse.lexer import POSSESSIVE, lex
from bot.parse.models import OUTSIDE_NAME, PLACEHOLDER, EntryKind, Protocol, Question, Ref, RefKind, question_text
from bot.parse.references import OUTSIDE_READING, PortSpec, ReferenceText, Shape, read_port, read_reference
from bot.parse.slack_text import clean_slack_text
from bot.parse.vocabulary import (
    ARTICLES,
    BACKWARD_WORDS,
    COMMAND_WORDS,
    ENTRY_BRIDGE,
    ENTRY_NODE_PREPOSITIONS,
    ENTRY_OF,
    ENTRY_PAIRS,
    ENTRY_WORDS,
    FORWARD_WORDS,
    INTERMITTENT_WORDS,
    KEEPS_DIRECTION,
    KIND_WORDS,
    NAMESPACE_FLAGS,
    OUTSIDE_WORDS,
    PORT_PREPOSITIONS,
    PORT_WORDS,
    PROTOCOL_WORDS,
    RESERVED,
    TARGET_STATE_WORDS,
    TIME_PREPOSITIONS,
    TIME_UNITS,
    TRACE_WORDS,
    Direction,
)

MAX_QUESTION_LENGTH = 2000
"""Longest text the parser reads, in characters; longer text is refused before any parsing."""

EXAMPLE = "why can't frontend reach api:8080 in shop"
PORT_EXAMPLE = "frontend → api:8080"
NAMESPACE_EXAMPLE = "frontend in shop → ledger in payments"
SOURCE_EXAMPLE = "deploy/frontend → svc/api:8080"
ENTRY_EXAMPLE = "why can't clients reach svc/web's load balancer"
OUTSIDE_TARGET_EXAMPLE = "frontend → www.example.com:443"

_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?", re.ASCII)
_NUMBER_PORT = re.compile(r"[0-9]+(?:/(?:tcp|udp|sctp))?|(?:tcp|udp|sctp)/[0-9]+", re.ASCII)
_NAMESPACE_ASSIGNMENT = re.compile(r"(?:-n|--namespace|--ns|namespace|ns)[=:](.*)", re.DOTALL)
_PORT_ASSIGNMENT = re.compile(r"port[=:](.*)", re.DOTALL)
_CLOCK = re.compile(r"(?:[01]?[0-9]|2[0-3])[:h][0-5][0-9](?::[0-5][0-9])?(?:am|pm|z|utc)?|(?:1[0-2]|0?[1-9])(?:am|pm)", re.ASCII)
_DURATION = re.compile(r"[0-9]+(?:s|secs?|m|mins?|h|hrs?|d)", re.ASCII)
_STATUS_CLASS = re.compile(r"[1-5](?:xx|[0-9]x|[0-9][0-9]s)", re.ASCII)
_NAMESPACE_WORDS = ("namespace", "ns")
_DIGITS = re.compile(r"[0-9]+", re.ASCII)
_NODE_NAME = re.compile(r"[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?", re.ASCII)
_SHOWN_TEXT = 80
_LISTED_NAMES = 5


@dataclass(frozen=True)
class _Entry:
    """A way into the cluster as written (``nodeport 30080 on node-2``, ``'s load balancer``, ``lb of``).

    `at` is its place among the words; `possessive` when ``'s`` stood before it and `of` when ``of``
    or ``for`` followed it: they tie it to the name before or after it.
    """

    kind: EntryKind
    text: str
    at: int = 0
    node_port: int | None = None
    node: str | None = None
    possessive: bool = False
    of: bool = False


@dataclass(frozen=True)
class _Outside:
    """A word naming a client outside the cluster (``outside``, ``internet``, ``clients``)."""

    word: str


@dataclass(frozen=True)
class _Phrase:
    """One reference as written: a reference word with an optional kind word, or a kind word alone.

    `namespaces` are the ``in NS`` written right after it, in order; `entry` the way in written with it.
    """

    text: str
    kind: RefKind | None
    kind_word: str | None
    word: str | None
    end: int
    namespaces: tuple[str, ...] = ()
    entry: _Entry | None = None


@dataclass(frozen=True)
class _InNamespace:
    """``in NS`` where it was written: it binds to the name before it (or, before any name, to both)."""

    name: str


_Word = str | _InNamespace | _Entry | _Outside
"""A word left after the options, or what an option became."""


@dataclass(frozen=True)
class _Connective:
    direction: Direction
    words: tuple[str, ...]


@dataclass(frozen=True)
class _Roles:
    source: _Phrase | None
    target: _Phrase | None
    problem: Unreadable | None = None


def parse_question(text: str) -> Question:
    """Read a reachability question typed by a person (in Slack or at the CLI).

    Raises `ParseError` (a `bot.errors.BadInput`) for anything it cannot read, with the closest valid
    form built from what it understood and an example; it raises nothing else.
    """
    if len(text) > MAX_QUESTION_LENGTH:
        raise ParseError(
            f"The question is {len(text)} characters long; kubereach reads at most {MAX_QUESTION_LENGTH}. "
            "Ask about one source and one target.",
            closest_form=question_text(None, None),
            example=EXAMPLE,
        )
    return _QuestionReader(text).read()


class _QuestionReader:
    """State of reading one question: the options found so far and the problems met."""

    def __init__(self, raw: str) -> None:
        self.raw = raw
        self.problems: list[Unreadable] = []
        self.port: int | None = None
        self.port_name: str | None = None
        self.port_unreadable = False
        self.protocol: Protocol | None = None
        self.namespace: str | None = None
        self.command_form = False
        self.ignored: list[str] = []
        self.target_state = False
        self.trace = False
        self.intermittent = False
        self.outside_by_default = False
        self.pending_entry: _Entry | None = None
        self.pending_at = 0
        """Where in the phrases the pending way in was written."""

    # -- the whole question -------------------------------------------------------------------------

    def read(self) -> Question:
        words = lex(clean_slack_text(self.raw))
        if words and words[0] in COMMAND_WORDS:
            self.command_form = True
        items = self._group(self._take_options(words))
        readings = {id(item): self._read_phrase(item) for item in items if isinstance(item, _Phrase)}
        roles = self._roles(items, readings)
        source = self._settle(roles.source, readings, as_source=True)
        target = self._settle(roles.target, readings, as_source=False)
        problems = [*self.problems]
        if roles.problem is not None:
            problems.append(roles.problem)
        if source is None and self.outside_by_default and isinstance(target, Ref):
            source = Ref(RefKind.OUTSIDE, OUTSIDE_NAME)  # a way in asked about alone: from a client outside
        closest_source = source
        if isinstance(source, Ref) and source.entry is None and not source.kind.can_be_source:
            problems.append(self._source_kind_problem(source))
            closest_source = Ref(RefKind.WORKLOAD, source.name, source.namespace) if source.kind is RefKind.SERVICE else None
        elif isinstance(source, Ref) and source.entry is not None:
            problems.append(
                Unreadable(
                    f"The {source.entry.value} of {shown(source.name)} is where traffic comes in, so it is a target: "
                    "ask which source cannot reach it.",
                    source.display(),
                    example=ENTRY_EXAMPLE,
                )
            )
            closest_source = None
        if isinstance(target, Ref) and target.kind is RefKind.NODEPORT and (self.port or self.port_name) is not None:
            other = self.port if self.port is not None else self.port_name
            problems.append(
                Unreadable(
                    f"Two ports (NodePort {target.node_port} and {shown(other)}): the NodePort is the port asked about, "
                    "so drop the other one.",
                    str(other),
                    example="outside → nodeport 30080 on node-2",
                )
            )
            self.port = self.port_name = None
        if isinstance(target, Ref) and not target.kind.can_be_target:
            problems.append(
                Unreadable(
                    "'outside' is where traffic comes from, not where it goes: name the address or DNS name "
                    "outside the cluster that cannot be reached.",
                    OUTSIDE_NAME,
                    example=OUTSIDE_TARGET_EXAMPLE,
                )
            )
            target = None
        if problems:
            raise self._error(problems[0], closest_source, target)
        if not isinstance(source, Ref) or not isinstance(target, Ref):  # pragma: no cover - roles guarantee
            raise self._error(Unreadable("Could not find both a source and a target.", None), source, target)
        normalized = question_text(
            source,
            target,
            port=self.port,
            port_name=self.port_name,
            protocol=self.protocol,
            namespace=self.namespace,
        )
        if self.trace:
            normalized = f"trace {normalized}"
        if self.intermittent:
            normalized = f"{normalized} intermittent"
        return Question(
            source=source,
            target=target,
            port=self.port,
            port_name=self.port_name,
            protocol=self.protocol,
            namespace=self.namespace,
            raw=self.raw,
            normalized=normalized,
            ignored=tuple(self.ignored),
            trace=self.trace,
            intermittent=self.intermittent,
        )

    def _error(self, problem: Unreadable, source: Ref | str | None, target: Ref | str | None) -> ParseError:
        closest = question_text(
            source,
            target,
            port="?" if self.port_unreadable else self.port,
            port_name=self.port_name,
            protocol=self.protocol,
            namespace=self.namespace,
        )
        return ParseError(problem.message, closest_form=closest, example=problem.example or EXAMPLE, part=problem.part)

    def _shown(self) -> str:
        text = " ".join(self.raw.split())
        return text if len(text) <= _SHOWN_TEXT else text[: _SHOWN_TEXT - 1] + "…"

    # -- options: namespace, port, protocol ---------------------------------------------------------

    def _take_options(self, words: list[str]) -> list[_Word]:
        rest: list[_Word] = []
        index = 0
        count = len(words)
        while index < count:
            word = words[index]
            following = words[index + 1] if index + 1 < count else None
            assigned = _NAMESPACE_ASSIGNMENT.fullmatch(word)
            if assigned is not None or word in NAMESPACE_FLAGS:
                value = assigned.group(1) if assigned is not None else following
                if not value or value in RESERVED:
                    self.problems.append(
                        Unreadable(
                            f"'{shown(word)}' needs a namespace name after it, e.g. '-n shop'.",
                            word,
                            example=NAMESPACE_EXAMPLE,
                        )
                    )
                    index += 1
                    continue
                self._set_namespace(value)
                index += 1 if assigned is not None else 2
                continue
            if word == "in":
                index, bound = self._take_in(words, index)
                if bound is not None:
                    rest.append(_InNamespace(bound))
                continue
            if word == POSSESSIVE:
                index += 1
                if index < count and (words[index] in ENTRY_WORDS or (words[index], _at(words, index + 1)) in ENTRY_PAIRS):
                    index = self._take_entry(words, index, rest, possessive=True)
                continue
            if word in ENTRY_WORDS or (word, following) in ENTRY_PAIRS:
                index = self._take_entry(words, index, rest, possessive=False)
                continue
            if word in OUTSIDE_WORDS:
                rest.append(_Outside(word))
                index += 1
                continue
            if word in ENTRY_NODE_PREPOSITIONS and _last_entry(rest) is not None:
                taken = self._take_entry_node(words, index, rest)
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
                self.trace = True
                index += 1
                continue
            if word in INTERMITTENT_WORDS:
                self.intermittent = True
            if word in TARGET_STATE_WORDS:
                self.target_state = True
            assigned = _PORT_ASSIGNMENT.fullmatch(word)
            if assigned is not None or word in PORT_WORDS:
                value = assigned.group(1) if assigned is not None else following
                if not value or value in RESERVED:
                    self.port_unreadable = True
                    self.problems.append(
                        Unreadable(
                            f"'{shown(word)}' needs a port after it, e.g. 'port 8080' or 'port http'.",
                            word,
                            example=PORT_EXAMPLE,
                        )
                    )
                    index += 1
                    continue
                self._take_port(value)
                index += 1 if assigned is not None else 2
                continue
            if word in PORT_PREPOSITIONS and following is not None and _NUMBER_PORT.fullmatch(following):
                self._take_port(following)
                index += 2
                continue
            if _NUMBER_PORT.fullmatch(word):
                self._take_port(word)
                index += 1
                continue
            protocol = PROTOCOL_WORDS.get(word.removeprefix("/"))
            if protocol is not None:
                self._set_protocol(protocol)
                index += 1
                continue
            rest.append(word)
            index += 1
        return rest

    def _take_entry(self, words: list[str], index: int, rest: list[_Word], *, possessive: bool) -> int:
        """Read ``ENTRY [NODEPORT] [on NODE] [of]`` at `index` into `rest`; return the index after it."""
        pair = ENTRY_PAIRS.get((words[index], _at(words, index + 1) or ""))
        kind = pair if pair is not None else ENTRY_WORDS[words[index]]
        text = " ".join(words[index : index + 2]) if pair is not None else words[index]
        index += 2 if pair is not None else 1
        node_port: int | None = None
        number = _at(words, index)
        if (
            kind is EntryKind.NODEPORT
            and number is not None
            and _NUMBER_PORT.fullmatch(number)
            and _at(words, index + 1) not in TIME_UNITS
        ):
            try:
                spec = read_port(number)
            except Unreadable as problem:
                self.problems.append(Unreadable(problem.message, problem.part, example="outside → nodeport 30080 on node-2"))
            else:
                node_port = spec.number
                if spec.protocol is not None:
                    self._set_protocol(spec.protocol)
            index += 1
        rest.append(_Entry(kind, text, len(rest), node_port, possessive=possessive))
        if _at(words, index) in ENTRY_NODE_PREPOSITIONS:
            index = self._take_entry_node(words, index, rest)
        if _at(words, index) in ENTRY_OF:
            entry = _last_entry(rest)
            if entry is not None:
                rest[rest.index(entry)] = dataclasses.replace(entry, of=True)
            index += 1
        return index

    def _take_entry_node(self, words: list[str], index: int, rest: list[_Word]) -> int:
        """``on [node] NODE`` after a way in: the node it is asked about. Returns `index` when it is not one."""
        entry = _last_entry(rest)
        after = index + 1
        if _at(words, after) in ("node", "nodes"):
            after += 1
        name = _at(words, after)
        if entry is None or entry.node is not None or name is None or not _is_node_name(name):
            return index
        rest[rest.index(entry)] = dataclasses.replace(entry, node=name)
        return after + 1

    def _take_in(self, words: list[str], index: int) -> tuple[int, str | None]:
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
            value = words[after + 1] if after + 1 < len(words) else None
            if value is None or value in RESERVED or _LABEL.fullmatch(value) is None:
                return after, None
            return after + 2, value
        if _LABEL.fullmatch(word) is None or word in RESERVED:
            return index + 1, None  # "in" as a filler word
        after += 1
        if after < len(words) and words[after] in _NAMESPACE_WORDS:
            after += 1
        return after, word

    def _set_namespace(self, value: str) -> None:
        if _LABEL.fullmatch(value) is None:
            self.problems.append(
                Unreadable(
                    f"'{shown(value)}' is not a valid namespace: use lowercase letters, digits and '-', "
                    "starting and ending with a letter or digit.",
                    value,
                    example=NAMESPACE_EXAMPLE,
                )
            )
            return
        if self.namespace is not None and self.namespace != value:
            self.problems.append(
                Unreadable(
                    f"Two namespaces ({self.namespace} and {value}) for the whole question: write each "
                    "namespace after its name (frontend in shop → ledger in payments).",
                    value,
                    example=NAMESPACE_EXAMPLE,
                )
            )
            return
        self.namespace = value

    def _take_port(self, text: str) -> None:
        try:
            spec = read_port(text)
        except Unreadable as problem:
            self.port_unreadable = True
            self.problems.append(Unreadable(problem.message, problem.part, example=PORT_EXAMPLE))
            return
        self._set_port(spec)

    def _set_port(self, spec: PortSpec) -> None:
        if spec.protocol is not None:
            self._set_protocol(spec.protocol)
        if spec.number is None and spec.name is None:
            return
        given = spec.number if spec.number is not None else spec.name
        current = self.port if self.port is not None else self.port_name
        if current is not None and current != given:
            self.problems.append(
                Unreadable(
                    f"Two ports ({shown(current)} and {shown(given)}): ask about one port at a time.",
                    str(given),
                    example=PORT_EXAMPLE,
                )
            )
            return
        self.port, self.port_name = spec.number, spec.name

    def _set_protocol(self, protocol: Protocol) -> None:
        if self.protocol is not None and self.protocol is not protocol:
            self.problems.append(
                Unreadable(
                    f"Two protocols ({self.protocol.lower()} and {protocol.lower()}): ask about one at a time.",
                    protocol.lower(),
                    example="web-0 → 10.96.0.10:53/udp",
                )
            )
            return
        self.protocol = protocol

    # -- phrases and connectives --------------------------------------------------------------------

    def _group(self, words: list[_Word]) -> list[_Phrase | _Connective]:
        items: list[_Phrase | _Connective] = []
        index = 0
        count = len(words)
        while index < count:
            word = words[index]
            if isinstance(word, _InNamespace):
                self._bind_namespace(items, word.name)
                index += 1
                continue
            if isinstance(word, _Outside):
                previous = items[-1] if items else None
                if isinstance(previous, _Phrase) and previous.kind is RefKind.OUTSIDE and previous.end == index - 1:
                    items[-1] = dataclasses.replace(previous, text=f"{previous.text} {word.word}", end=index)
                else:
                    items.append(_Phrase(word.word, RefKind.OUTSIDE, None, OUTSIDE_NAME, index))
                index += 1
                continue
            if isinstance(word, _Entry):
                self._place_entry(items, word, words, index)
                index += 1
                continue
            direction = _direction(word)
            if direction is not None:
                previous = items[-1] if items else None
                if isinstance(previous, _Connective):
                    kept = previous.direction if word in KEEPS_DIRECTION else direction
                    items[-1] = _Connective(kept, (*previous.words, word))
                else:
                    items.append(_Connective(direction, (word,)))
                index += 1
                continue
            if word in RESERVED and word not in KIND_WORDS:
                index += 1
                continue
            if word in KIND_WORDS:
                kind = KIND_WORDS[word]
                following = words[index + 1] if index + 1 < count else None
                if isinstance(following, str) and following not in RESERVED:
                    self._add(items, _Phrase(f"{word} {following}", kind, word, following, index + 1))
                    index += 2
                    continue
                previous = items[-1] if items else None
                if (
                    isinstance(previous, _Phrase)
                    and previous.kind_word is None
                    and previous.word is not None
                    and previous.end == index - 1
                ):
                    text = f"{previous.text} {word}"
                    items[-1] = dataclasses.replace(previous, text=text, kind=kind, kind_word=word, end=index)
                elif _after_time_word(words, index):
                    pass  # "since the deploy": an event, not a reference
                else:
                    self._add(items, _Phrase(word, kind, word, None, index))
                index += 1
                continue
            self._add(items, _Phrase(word, None, None, word, index))
            index += 1
        pending = self.pending_entry
        if pending is not None and pending.kind is EntryKind.NODEPORT and not pending.of and self.port is not None:
            # "30080 nodeport on node-2": the number written before the word is the NodePort.
            pending = dataclasses.replace(pending, node_port=self.port)
            phrase = _Phrase(f"{pending.text} {self.port}", RefKind.NODEPORT, None, None, pending.at, entry=pending)
            items.insert(self.pending_at, phrase)
            self.port, self.pending_entry = None, None
        if self.pending_entry is not None and not self.pending_entry.of:
            self._entry_to_earlier_name(items, self.pending_entry)
        if self.pending_entry is not None:
            entry = self.pending_entry
            self.problems.append(
                Unreadable(
                    f"'{shown(entry.text)}' needs the service it belongs to: write svc/NAME's {entry.text}.",
                    entry.text,
                    example=ENTRY_EXAMPLE,
                )
            )
        return items

    def _place_entry(self, items: list[_Phrase | _Connective], entry: _Entry, words: list[_Word], index: int) -> None:
        """Tie a way in to the name before it (``web's lb``, ``svc/web nodeport``, ``web via its load
        balancer``), to the name after it (``the nodeport of web``), or make it a reference of its own
        (``nodeport 30080``)."""
        entry = dataclasses.replace(entry, at=index)
        previous = items[-1] if items else None
        if (
            not entry.of
            and isinstance(previous, _Phrase)
            and previous.kind is not RefKind.OUTSIDE
            and previous.entry is None
            and (entry.possessive or all(word in ENTRY_BRIDGE for word in words[previous.end + 1 : index]))
        ):
            items[-1] = dataclasses.replace(previous, text=f"{previous.text} {entry.text}", entry=entry, end=index)
        elif entry.node_port is not None and not entry.of:
            items.append(_Phrase(f"{entry.text} {entry.node_port}", RefKind.NODEPORT, None, None, index, entry=entry))
        elif self.pending_entry is None:
            self.pending_entry, self.pending_at = entry, len(items)
        else:
            self.problems.append(
                Unreadable(
                    f"Two ways in ({self.pending_entry.text} and {entry.text}): ask about one.", entry.text, example=ENTRY_EXAMPLE
                )
            )

    def _entry_to_earlier_name(self, items: list[_Phrase | _Connective], entry: _Entry) -> None:
        """A way in with no name after it belongs to the last name before it (``is web reachable through
        its external ip from outside``)."""
        for position in range(len(items) - 1, -1, -1):
            phrase = items[position]
            if isinstance(phrase, _Phrase) and phrase.end < entry.at:
                if phrase.kind not in (RefKind.OUTSIDE, RefKind.NODEPORT) and phrase.entry is None:
                    items[position] = dataclasses.replace(phrase, text=f"{phrase.text} {entry.text}", entry=entry)
                    self.pending_entry = None
                return

    def _add(self, items: list[_Phrase | _Connective], phrase: _Phrase) -> None:
        """Append a phrase, giving it a way in written before it (``the load balancer of web``)."""
        if self.pending_entry is not None and phrase.kind is not RefKind.OUTSIDE:
            phrase = dataclasses.replace(phrase, entry=self.pending_entry)
            self.pending_entry = None
        items.append(phrase)

    def _bind_namespace(self, items: list[_Phrase | _Connective], namespace: str) -> None:
        """``in NS``: to the name written before it; before any name, to the whole question."""
        for position in range(len(items) - 1, -1, -1):
            phrase = items[position]
            if isinstance(phrase, _Phrase):
                items[position] = dataclasses.replace(phrase, namespaces=(*phrase.namespaces, namespace))
                return
        self._set_namespace(namespace)

    def _read_phrase(self, phrase: _Phrase) -> ReferenceText | str:
        """Read a phrase into a reference, or return the placeholder to show in its place."""
        placeholder = f"{phrase.kind.prefix}/{PLACEHOLDER}" if phrase.kind is not None else PLACEHOLDER
        if phrase.kind is RefKind.OUTSIDE:
            for namespace in phrase.namespaces:
                self._set_namespace(namespace)
            return OUTSIDE_READING
        if phrase.kind is RefKind.NODEPORT and phrase.entry is not None:
            reading = ReferenceText(
                written=phrase.text, shape=Shape.NODEPORT, name=str(phrase.entry.node_port),
                entry=phrase.entry.kind, node_port=phrase.entry.node_port, entry_node=phrase.entry.node,
            )  # fmt: skip
            return self._with_namespaces(reading, phrase)
        if phrase.word is None:
            prefix = phrase.kind.prefix if phrase.kind is not None else "KIND"
            self.problems.append(Unreadable(f"'{shown(phrase.kind_word)}' needs a name: write {prefix}/NAME.", phrase.text))
            return placeholder
        try:
            reading = read_reference(phrase.word, kind=phrase.kind)
        except Unreadable as problem:
            outside = _name_outside(phrase)
            if outside is None:
                self.problems.append(problem)
                return placeholder
            reading = outside
        if phrase.entry is not None:
            with_entry = self._with_entry(reading, phrase.entry)
            if with_entry is None:
                return placeholder
            reading = with_entry
        return self._with_namespaces(reading, phrase)

    def _with_entry(self, reading: ReferenceText, entry: _Entry) -> ReferenceText | None:
        """The reading with its way in; a node before a NodePort is the node it is asked on (``node-2 nodeport 30080``)."""
        if reading.shape is Shape.NODEPORT:
            return dataclasses.replace(reading, entry=entry.kind, node_port=entry.node_port, entry_node=entry.node)
        if reading.kind is RefKind.NODE and entry.node is None and entry.node_port is not None:
            return ReferenceText(
                written=reading.written, shape=Shape.NODEPORT, name=str(entry.node_port), entry=entry.kind,
                node_port=entry.node_port, entry_node=reading.name, port=reading.port, port_problem=reading.port_problem,
            )  # fmt: skip
        service_like = reading.shape in (Shape.NAME, Shape.SHORTHAND, Shape.SERVICE_DNS, Shape.ADDRESS)
        if not service_like or reading.kind not in (None, RefKind.SERVICE, RefKind.WORKLOAD):
            self.problems.append(
                Unreadable(
                    f"'{shown(reading.written)}' cannot have a {entry.kind.value}: only services have NodePorts, "
                    "external IPs and load balancers.",
                    reading.written,
                    example=ENTRY_EXAMPLE,
                )
            )
            return None
        return dataclasses.replace(reading, entry=entry.kind, node_port=entry.node_port, entry_node=entry.node)

    def _with_namespaces(self, reading: ReferenceText, phrase: _Phrase) -> ReferenceText:
        """The reading with the ``in NS`` written after its phrase."""
        bound: str | None = None
        for namespace in phrase.namespaces:
            if bound is not None and bound != namespace:
                self.problems.append(
                    Unreadable(
                        f"Two namespaces for {shown(phrase.word)} ({bound} and {namespace}): name one.",
                        namespace,
                        example=NAMESPACE_EXAMPLE,
                    )
                )
            elif reading.namespace is None and _takes_namespace(reading):
                reading = dataclasses.replace(reading, namespace=namespace)
                bound = namespace
            elif reading.namespace != namespace:
                # The name has its own namespace (or cannot have one): "in NS" is for the other name.
                self._set_namespace(namespace)
        return reading

    def _roles(self, items: list[_Phrase | _Connective], readings: dict[int, ReferenceText | str]) -> _Roles:
        positions = [index for index, item in enumerate(items) if isinstance(item, _Phrase)]
        phrases = [item for item in items if isinstance(item, _Phrase)]
        if not phrases:
            message = (
                "The question is empty: name a source and a target."
                if not self.raw.strip()
                else f"Could not find a source or a target in '{self._shown()}'."
            )
            return _Roles(None, None, Unreadable(message, self._shown() or None))
        if len(phrases) == 1:
            return self._one_sided(items, positions[0], readings)
        groups = _groups_between(items, positions)
        if len(groups) == 2:
            (before, _), (after, connective) = groups
            source_group, target_group = before, after
            if connective is not None and connective.direction is Direction.BACKWARD:
                source_group, target_group = after, before
            source_group, target_group = (
                self._narrow(self._drop_outside(source_group)),
                self._narrow(self._drop_outside(target_group)),
            )
            if len(source_group) == 1 and len(target_group) == 1:
                return _Roles(source_group[0], target_group[0])
            side, group = ("source", source_group) if len(source_group) > 1 else ("target", target_group)
            text = " ".join(phrase.text for phrase in group)
            return _Roles(
                source_group[0] if side == "target" else None,
                target_group[0] if side == "source" and len(target_group) == 1 else None,
                Unreadable(
                    f"Could not tell which word of '{shown(text)}' is the {side}: write it with its kind "
                    "(e.g. deploy/NAME) and the other words are skipped.",
                    text,
                ),
            )
        if len(groups) == 1 and len(phrases) == 2:
            first, second = phrases
            if self.command_form:
                return _Roles(first, second)
            if RefKind.OUTSIDE in (first.kind, second.kind) and first.kind is not second.kind:
                # "external traffic times out on web's nodeport": a client outside is never the target.
                return _Roles(first, second) if first.kind is RefKind.OUTSIDE else _Roles(second, first)
            return _Roles(
                first,
                second,
                Unreadable(
                    f"Could not tell which of '{shown(first.text)}' and '{shown(second.text)}' is the source: "
                    "join them with 'to' or '→'.",
                    f"{first.text} {second.text}",
                ),
            )
        names = ", ".join(shown(phrase.text, 20) for phrase in phrases[:_LISTED_NAMES])
        if len(phrases) > _LISTED_NAMES:
            names += ", …"
        return _Roles(
            None,
            None,
            Unreadable(
                f"Found {len(phrases)} names ({names}); a question has one source and one target.",
                names,
            ),
        )

    def _drop_outside(self, group: list[_Phrase]) -> list[_Phrase]:
        """``external`` beside a name is an adjective (``the external service api.stripe.com``,
        ``external client 203.0.113.7``): the name is the reference, the word is skipped."""
        named = [phrase for phrase in group if phrase.kind is not RefKind.OUTSIDE]
        if len(named) == len(group) or not any(_is_marked(phrase) for phrase in named):
            return group  # "external users": the bare word beside it is what is skipped
        self.ignored.extend(phrase.text for phrase in group if phrase.kind is RefKind.OUTSIDE)
        return named

    def _narrow(self, group: list[_Phrase]) -> list[_Phrase]:
        """Keep the one marked reference of a group (``svc/api lately`` → ``svc/api``), if there is one.

        A reference is marked when it carries a kind, a namespace, a port, a dot or is an address; the
        bare words beside it are unknown words that do not make the question ambiguous, so they are
        skipped (and listed in `Question.ignored`). A group of bare words stays ambiguous.
        """
        if len(group) < 2:
            return group
        marked = [phrase for phrase in group if _is_marked(phrase)]
        if len(marked) != 1:
            return group
        self.ignored.extend(phrase.text for phrase in group if phrase is not marked[0])
        return marked

    def _one_sided(self, items: list[_Phrase | _Connective], position: int, readings: dict[int, ReferenceText | str]) -> _Roles:
        """One name: the connective next to it (or its being a service or DNS name, or "down") says which side it is."""
        phrase = items[position]
        if not isinstance(phrase, _Phrase):  # pragma: no cover - positions index phrases
            raise AssertionError("position is not a phrase")
        before = items[position - 1] if position > 0 else None
        after = items[position + 1] if position + 1 < len(items) else None
        reading = readings[id(phrase)]
        if phrase.entry is not None:
            self.outside_by_default = True  # "why can't I reach web's load balancer": from outside
            return _Roles(None, phrase)
        is_target = (
            (isinstance(before, _Connective) and before.direction is Direction.FORWARD)
            or (isinstance(after, _Connective) and after.direction is Direction.BACKWARD)
            or (isinstance(reading, ReferenceText) and _reads_as_target(reading))
            or self.target_state
        )
        if is_target:
            return _Roles(None, phrase, Unreadable(f"Found only the target '{shown(phrase.text)}': name the source too.", None))
        return _Roles(phrase, None, Unreadable(f"Found only the source '{shown(phrase.text)}': name the target too.", None))

    def _settle(self, phrase: _Phrase | None, readings: dict[int, ReferenceText | str], *, as_source: bool) -> Ref | str | None:
        """The phrase's reference for its role; moves a port written on the source to the question."""
        if phrase is None:
            return None
        reading = readings[id(phrase)]
        if isinstance(reading, str):
            return reading
        if reading.port_problem is not None:
            self.port_unreadable = True
            problem = reading.port_problem
            self.problems.append(Unreadable(problem.message, problem.part, example=PORT_EXAMPLE))
        if reading.port is not None:
            if as_source and (reading.port.number is not None or reading.port.name is not None):
                self.problems.append(
                    Unreadable(
                        f"The port belongs to the target, not to the source '{shown(reading.written)}'.",
                        reading.written,
                        example=PORT_EXAMPLE,
                    )
                )
            self._set_port(reading.port)  # on the source too: the closest form shows it on the target
        return reading.to_ref(as_source=as_source)

    @staticmethod
    def _source_kind_problem(source: Ref) -> Unreadable:
        written = source.display()
        if source.kind is RefKind.SERVICE:
            return Unreadable(
                f"The source {shown(written)} is a service, but traffic comes from pods: pick a pod or a "
                f"workload as the source (e.g. deploy/{source.name}).",
                written,
                example=SOURCE_EXAMPLE,
            )
        return Unreadable(
            f"The source {shown(written)} is a name outside the cluster, but traffic comes from pods: pick a pod "
            "or a workload as the source.",
            written,
            example=SOURCE_EXAMPLE,
        )


def _name_outside(phrase: _Phrase) -> ReferenceText | None:
    """``service api.stripe.com``: "service" said of a name outside the cluster is a plain word; the
    reading of the name alone when it is such a name (None otherwise)."""
    if phrase.kind_word is None or phrase.word is None or "." not in phrase.word:
        return None
    try:
        reading = read_reference(phrase.word)
    except Unreadable:
        return None
    return reading if reading.shape is Shape.EXTERNAL_DNS else None


def _takes_namespace(reading: ReferenceText) -> bool:
    """Whether ``in NS`` can name this reference's namespace: a plain name of a namespaced kind, or a
    NodePort by number (the namespace narrows the search for its service)."""
    return (reading.shape is Shape.NAME and reading.kind is not RefKind.NODE) or reading.shape is Shape.NODEPORT


def _at(words: list[str], index: int) -> str | None:
    """The word at `index`, or None past the end."""
    return words[index] if index < len(words) else None


def _last_entry(rest: list[_Word]) -> _Entry | None:
    """The last way in read so far."""
    return next((item for item in reversed(rest) if isinstance(item, _Entry)), None)


def _is_node_name(word: str) -> bool:
    """Whether a word after ``on`` can name a node: a DNS name with a letter, or an IP address."""
    if word in RESERVED or _DIGITS.fullmatch(word):
        return False
    if _NODE_NAME.fullmatch(word) and any(char.isalpha() for char in word):
        return True
    try:
        ipaddress.ip_address(word)
    except ValueError:
        return False
    return True


def _after_time_word(words: list[_Word], index: int) -> bool:
    """Whether the word at `index` follows "since", "after" ... (articles between): ``since the deploy``."""
    before = index - 1
    while before >= 0 and words[before] in ARTICLES:
        before -= 1
    return before >= 0 and isinstance(words[before], str) and words[before] in TIME_PREPOSITIONS


def _is_marked(phrase: _Phrase) -> bool:
    """Whether a phrase is unmistakably a reference: a kind, or a word with ``/ : . [`` in it."""
    return phrase.kind is not None or (phrase.word is not None and any(mark in phrase.word for mark in "/:.["))


def _reads_as_target(reading: ReferenceText) -> bool:
    """A lone name written as a DNS name, or naming a service, is the target of its question."""
    return reading.dns_name is not None or not reading.to_ref(as_source=True).kind.can_be_source


def _direction(word: str) -> Direction | None:
    """The direction a connective word points, or None for any other word."""
    if word in FORWARD_WORDS:
        return Direction.FORWARD
    if word in BACKWARD_WORDS:
        return Direction.BACKWARD
    return None


def _groups_between(items: list[_Phrase | _Connective], positions: list[int]) -> list[tuple[list[_Phrase], _Connective | None]]:
    """Split the phrases at the connectives between them; each group keeps the connective before it."""
    groups: list[tuple[list[_Phrase], _Connective | None]] = []
    current: list[_Phrase] = []
    leading: _Connective | None = None
    for before, after in itertools.pairwise(positions):
        phrase = items[before]
        if isinstance(phrase, _Phrase):
            current.append(phrase)
        between = [item for item in items[before + 1 : after] if isinstance(item, _Connective)]
        if between:
            groups.append((current, leading))
            current, leading = [], between[-1]
    last = items[positions[-1]]
    if isinstance(last, _Phrase):
        current.append(last)
    groups.append((current, leading))
    return groups
