"""The phrases step: the words left after the options become phrases and connectives, and each phrase a reading.

    item       := connective | phrase
    connective := (FORWARD word | BACKWARD word)+        the last word decides the direction
    phrase     := KIND REFERENCE | REFERENCE [KIND] | KIND          (a kind alone is an error)
                | OUTSIDE+                                         (outside, internet, clients, …: one client)
                | a way in with its name                           (see `bot.parse.ways_in`)

Namespaces bind to the name they follow: ``frontend in shop can't reach ledger in payments`` names one
namespace per name; a trailing ``in NS`` belongs to the nearest name, or to the other name when the
nearest already has its own (it then becomes the question's namespace, which the resolver applies to
the name without one). Reserved words are skipped here: a noise word is never a name on its own, and a
kind word after ``since`` or ``after`` is an event (``since the deploy``), not a reference. After a
name, ``since``, ``after``, ``before`` or ``during`` starts an event that lasts until the next
connective: its bare words are skipped (``frontend can't reach redis after node-2 reboot``).

Reading a phrase (`read_phrase`) hands its name to `bot.parse.references`; a kind said of a name outside
the cluster (``service api.stripe.com``) is a plain word, since such a name has no kind.
"""

from __future__ import annotations

import dataclasses
import re

from bot.parse.errors import NAMESPACE_EXAMPLE, Unreadable, shown
from bot.parse.findings import Findings
from bot.parse.forms import Connective, Entry, InNamespace, Item, Outside, Phrase, Word
from bot.parse.models import OUTSIDE_NAME, PLACEHOLDER, RefKind
from bot.parse.references import OUTSIDE_READING, ReferenceText, Shape, read_reference
from bot.parse.vocabulary import (
    ANSWERING_WORDS,
    ARTICLES,
    BACKWARD_WORDS,
    BLOCKING_WORDS,
    DNS_VERBS,
    DNS_WORDS,
    FORWARD_WORDS,
    KEEPS_DIRECTION,
    KIND_WORDS,
    RECEIVED_ERRORS,
    RECEIVED_TRAFFIC,
    RECEIVING_WORDS,
    RESERVED,
    TIME_PREPOSITIONS,
    Direction,
)
from bot.parse.ways_in import EntryPlacement, nodeport_reading, with_entry


def group_phrases(words: list[Word], findings: Findings) -> list[Item]:
    """Group the words left after the options into phrases and connectives, in the order written."""
    items: list[Item] = []
    entries = EntryPlacement(findings)
    blocking: int | None = None
    """Where the items stood after a blocking word ("a policy blocking frontend from api")."""
    event = False
    """After a name, ``since``/``after``/… starts an event (``after node-2 reboot``) until the next connective."""
    index = 0
    count = len(words)
    while index < count:
        word = words[index]
        if isinstance(word, InNamespace):
            _bind_namespace(items, word.name, findings)
            index += 1
            continue
        if isinstance(word, Outside):
            previous = items[-1] if items else None
            if isinstance(previous, Phrase) and previous.kind is RefKind.OUTSIDE and previous.end == index - 1:
                items[-1] = dataclasses.replace(previous, text=f"{previous.text} {word.word}", end=index)
            else:
                items.append(Phrase(word.word, RefKind.OUTSIDE, None, OUTSIDE_NAME, index))
            index += 1
            continue
        if isinstance(word, Entry):
            entries.place(items, word, words, index)
            index += 1
            continue
        if isinstance(word, str) and (word in DNS_WORDS or word in DNS_VERBS):
            findings.about_dns = True
        answered_from = _answered_from(words, index)
        if answered_from is not None:
            # "gets connection refused from api": what comes back comes from the server, forward.
            said = tuple(w for w in words[index : answered_from + 1] if isinstance(w, str))
            previous = items[-1] if items else None
            if isinstance(previous, Connective):
                items[-1] = Connective(Direction.FORWARD, (*previous.words, *said))
            else:
                items.append(Connective(Direction.FORWARD, said))
            index = answered_from + 1
            continue
        answered_to = _answered_to(words, index)
        if answered_to is not None:
            # "api returns 502 to frontend": what a server answers goes to its client, backward.
            said = tuple(w for w in words[index : answered_to + 1] if isinstance(w, str))
            items.append(Connective(Direction.BACKWARD, said))
            event = False
            index = answered_to + 1
            continue
        if word in BLOCKING_WORDS:
            blocking = len(items)
        direction = _direction(word)
        if word == "on" and _waits_on(words, index) and items and isinstance(items[-1], Phrase):
            direction = Direction.FORWARD  # "frontend pods timing out on redis": what it waits on is the target
        if word == "dial" and any(isinstance(i, Phrase) for i in items) and not any(isinstance(i, Connective) for i in items):
            direction = Direction.FORWARD  # a pasted Go error: "frontend: dial tcp 10.96.0.20:8080: i/o timeout"
        if direction is Direction.BACKWARD and word == "from" and blocking is not None:
            since = items[blocking:]
            if len(since) == 1 and isinstance(since[0], Phrase):
                direction = Direction.FORWARD  # blocking X from Y: X is where traffic starts
            blocking = None
        if direction is not None:
            event = False
            previous = items[-1] if items else None
            if isinstance(previous, Connective):
                kept = previous.direction if word in KEEPS_DIRECTION else direction
                items[-1] = Connective(kept, (*previous.words, word))
            else:
                items.append(Connective(direction, (word,)))
            index += 1
            continue
        if word in TIME_PREPOSITIONS and any(isinstance(item, Phrase) for item in items):
            event = True
        if word in RESERVED and word not in KIND_WORDS:
            index += 1
            continue
        if event and isinstance(word, str) and not any(mark in word for mark in "/:.["):
            index += 1  # "frontend can't reach redis after node-2 reboot": what happened, not a name
            continue
        if word in KIND_WORDS:
            kind = KIND_WORDS[word]
            following = words[index + 1] if index + 1 < count else None
            if isinstance(following, str) and following not in RESERVED:
                items.append(entries.give_pending(Phrase(f"{word} {following}", kind, word, following, index + 1)))
                index += 2
                continue
            previous = items[-1] if items else None
            if (
                isinstance(previous, Phrase)
                and previous.kind_word is None
                and previous.word is not None
                and previous.end == index - 1
            ):
                text = f"{previous.text} {word}"
                items[-1] = dataclasses.replace(previous, text=text, kind=kind, kind_word=word, end=index)
            elif _after_time_word(words, index):
                pass  # "since the deploy": an event, not a reference
            else:
                items.append(entries.give_pending(Phrase(word, kind, word, None, index)))
            index += 1
            continue
        items.append(entries.give_pending(Phrase(word, None, None, word, index)))
        index += 1
    entries.finish(items)
    return items


def _bind_namespace(items: list[Item], namespace: str, findings: Findings) -> None:
    """``in NS``: to the name written before it; before any name, to the whole question."""
    for position in range(len(items) - 1, -1, -1):
        phrase = items[position]
        if isinstance(phrase, Phrase):
            items[position] = dataclasses.replace(phrase, namespaces=(*phrase.namespaces, namespace))
            return
    findings.set_namespace(namespace)


_ANSWERED_SPAN = 5
"""At most this many words between a receiving word and its ``from`` (``got a connection refused from``)."""
_STATUS = re.compile(r"^[1-5](?:\d\d|xx)s?$")


def _answered_from(words: list[Word], index: int) -> int | None:
    """The index of the ``from`` that names a server after a receiving word at `index`, or None.

    ``frontend gets connection refused from api``, ``the worker can't pull images from registry``,
    ``checkout got 503s from payments``: what is received is an answer, so the name after ``from`` is
    the target. What a server receives from its clients (``api gets requests from frontend``) keeps
    ``from`` backward, unless an error word says it is an answer. Only plain words may stand between.
    """
    if not isinstance(words[index], str) or words[index] not in RECEIVING_WORDS:
        return None
    found = _plain_words_until(words, index, "from")
    if found is None:
        return None
    position, between = found
    errors = any(w in RECEIVED_ERRORS or _STATUS.match(w) for w in between)
    traffic = any(w in RECEIVED_TRAFFIC for w in between)
    return position if errors or not traffic else None


def _plain_words_until(words: list[Word], index: int, stop: str) -> tuple[int, list[str]] | None:
    """The index of the first `stop` within `_ANSWERED_SPAN` words after `index`, and the words before
    it; None when a connective, a kind, a marked reference or an option comes first."""
    between: list[str] = []
    for position in range(index + 1, min(len(words), index + 2 + _ANSWERED_SPAN)):
        word = words[position]
        if not isinstance(word, str):
            return None
        if word == stop:
            return position, between
        if word in FORWARD_WORDS or word in BACKWARD_WORDS or word in KIND_WORDS or any(c in word for c in "/:."):
            return None
        between.append(word)
    return None


_WAITING = frozenset({"timing", "times", "timeout", "timeouts", "hang", "hangs", "hanging", "stuck", "blocked"})
"""Words after which ``on`` names what is waited for: ``frontend times out on redis``."""


def _waits_on(words: list[Word], index: int) -> bool:
    """Whether the ``on`` at `index` follows a word of waiting (``out`` between): ``timing out on redis``."""
    before = index - 1
    if before >= 0 and words[before] == "out":
        before -= 1
    return before >= 0 and isinstance(words[before], str) and words[before] in _WAITING


def _answered_to(words: list[Word], index: int) -> int | None:
    """The index of the ``to`` that names the client after an answering word at `index`, or None
    (``api returns 502 to frontend``, ``redis replies with resets to the worker``); only plain words
    may stand between."""
    if not isinstance(words[index], str) or words[index] not in ANSWERING_WORDS:
        return None
    found = _plain_words_until(words, index, "to")
    return None if found is None else found[0]


def _direction(word: str) -> Direction | None:
    """The direction a connective word points, or None for any other word."""
    if word in FORWARD_WORDS:
        return Direction.FORWARD
    if word in BACKWARD_WORDS:
        return Direction.BACKWARD
    return None


def _after_time_word(words: list[Word], index: int) -> bool:
    """Whether the word at `index` follows "since", "after" ... (articles between): ``since the deploy``."""
    before = index - 1
    while before >= 0 and words[before] in ARTICLES:
        before -= 1
    return before >= 0 and isinstance(words[before], str) and words[before] in TIME_PREPOSITIONS


def read_phrase(phrase: Phrase, findings: Findings) -> ReferenceText | str:
    """Read a phrase into a reference, or return the placeholder to show in its place."""
    placeholder = f"{phrase.kind.prefix}/{PLACEHOLDER}" if phrase.kind is not None else PLACEHOLDER
    if phrase.kind is RefKind.OUTSIDE:
        for namespace in phrase.namespaces:
            findings.set_namespace(namespace)
        return OUTSIDE_READING
    if phrase.kind is RefKind.NODEPORT and phrase.entry is not None:
        return _with_namespaces(nodeport_reading(phrase, phrase.entry), phrase, findings)
    if phrase.word is None and phrase.kind is RefKind.POD and len(set(phrase.namespaces)) == 1:
        # "pods in shop can't reach api": every pod of the namespace (the resolver samples them)
        namespace = phrase.namespaces[0]
        return ReferenceText(written=phrase.text, shape=Shape.NAME, name=namespace, kind=RefKind.NAMESPACE)
    if phrase.word is None:
        prefix = phrase.kind.prefix if phrase.kind is not None else "KIND"
        findings.problems.append(Unreadable(f"'{shown(phrase.kind_word)}' needs a name: write {prefix}/NAME.", phrase.text))
        return placeholder
    try:
        reading = read_reference(phrase.word, kind=phrase.kind)
    except Unreadable as problem:
        outside = _name_outside(phrase)
        if outside is None:
            findings.problems.append(problem)
            return placeholder
        reading = outside
    if phrase.entry is not None:
        with_its_entry = with_entry(reading, phrase.entry, findings)
        if with_its_entry is None:
            return placeholder
        reading = with_its_entry
    return _with_namespaces(reading, phrase, findings)


def _with_namespaces(reading: ReferenceText, phrase: Phrase, findings: Findings) -> ReferenceText:
    """The reading with the ``in NS`` written after its phrase."""
    bound: str | None = None
    for namespace in phrase.namespaces:
        if bound is not None and bound != namespace:
            findings.problems.append(
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
            findings.set_namespace(namespace)
    return reading


def _name_outside(phrase: Phrase) -> ReferenceText | None:
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
