"""The roles step: which phrase is the source and which the target.

Exactly two phrases must remain. The connective between them decides which is which: a forward one
(``to``, ``->``, ``reach``, ``talk to``) puts the source first, a backward one (``from``, ``reachable
from``, ``<-``) puts the target first. Connectives before the first or after the last phrase only
matter when there is one phrase (to say which side is missing; a lone service or DNS name, a lone name
said to be down, is a target; a lone way in is asked about from outside). After a leading ``/reach``
two phrases with nothing between them read as ``SOURCE TARGET``; otherwise only a client outside
settles such a pair, since it is never the target.

Where several phrases stand on one side, one marked reference (with a kind, a namespace, a port, a dot
or an address) wins and the bare unknown words beside it are skipped; several bare words on one side
are ambiguous and an error. ``external`` beside a marked name is an adjective, not a client outside.
Once the roles are known, a port written on a reference becomes the question's (`settle`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from bot.parse.errors import PORT_EXAMPLE, Unreadable, shown
from bot.parse.findings import Findings
from bot.parse.forms import Connective, Item, Phrase
from bot.parse.models import Ref, RefKind
from bot.parse.references import ReferenceText
from bot.parse.vocabulary import Direction

_SHOWN_TEXT = 80
_LISTED_NAMES = 5

Readings = dict[int, ReferenceText | str]
"""Each phrase's reading (or the placeholder shown in its place), by the phrase's `id`."""


@dataclass(frozen=True)
class Roles:
    """The source and target phrases found, and the problem that kept one of them from being found.

    `from_outside` when the one phrase is a way in named alone: the question is asked from outside.
    """

    source: Phrase | None
    target: Phrase | None
    problem: Unreadable | None = None
    from_outside: bool = False
    source_others: tuple[Phrase, ...] = ()
    """The other bare words on the source's side, nearest the connective first (see `_bare_side`)."""
    target_others: tuple[Phrase, ...] = ()


def find_roles(items: list[Item], readings: Readings, findings: Findings) -> Roles:
    """Pick the source and the target among the phrases, by the connectives between them."""
    positions = [index for index, item in enumerate(items) if isinstance(item, Phrase)]
    phrases = [item for item in items if isinstance(item, Phrase)]
    if not phrases:
        written = shown(" ".join(findings.raw.split()), _SHOWN_TEXT)
        message = (
            "The question is empty: name a source and a target."
            if not findings.raw.strip()
            else f"Could not find a source or a target in '{written}'."
        )
        return Roles(None, None, Unreadable(message, written or None))
    if len(phrases) == 1:
        return _one_sided(items, positions[0], readings, findings)
    groups = _groups_between(items, positions)
    if len(groups) == 2:
        (before, _), (after, connective) = groups
        source_group, target_group = before, after
        if connective is not None and connective.direction is Direction.BACKWARD:
            source_group, target_group = after, before
        source_group, target_group = (
            _narrow(_drop_outside(source_group, findings), findings),
            _narrow(_drop_outside(target_group, findings), findings),
        )
        backward = connective is not None and connective.direction is Direction.BACKWARD
        # each side nearest the connective first: the side written before it, read backwards
        source_side = _bare_side(source_group if backward else source_group[::-1])
        target_side = _bare_side(target_group[::-1] if backward else target_group)
        if source_side is not None and target_side is not None:
            return Roles(source_side[0], target_side[0], source_others=source_side[1:], target_others=target_side[1:])
        side, group = ("source", source_group) if len(source_group) > 1 else ("target", target_group)
        text = " ".join(phrase.text for phrase in group)
        return Roles(
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
        leading = items[0] if isinstance(items[0], Connective) else None
        if findings.command_form or (leading is not None and leading.direction is Direction.BACKWARD):
            # "/reach frontend api", "check frontend api", "from frontend, api:8080 times out".
            return Roles(first, second)
        trailing = items[-1] if isinstance(items[-1], Connective) and items[-2] is second else None
        if trailing is not None and trailing.direction is Direction.FORWARD:
            # "ECONNREFUSED from api when frontend calls it": the name a client verb follows is the client.
            return Roles(second, first)
        if RefKind.OUTSIDE in (first.kind, second.kind) and first.kind is not second.kind:
            # "external traffic times out on web's nodeport": a client outside is never the target.
            return Roles(first, second) if first.kind is RefKind.OUTSIDE else Roles(second, first)
        return Roles(
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
    return Roles(
        None,
        None,
        Unreadable(
            f"Found {len(phrases)} names ({names}); a question has one source and one target.",
            names,
        ),
    )


MAX_BARE_WORDS = 4
"""At most this many bare words on one side are handed to the resolver to choose from."""


def _bare_side(group: list[Phrase]) -> tuple[Phrase, ...] | None:
    """A side the resolver can settle: one phrase, or a few bare words (no kind, no mark) of which the
    cluster says which one is a name (``redis, big replies hang``: only ``redis`` names something).

    `group` is ordered nearest the connective first; None when the side stays ambiguous."""
    if len(group) == 1:
        return (group[0],)
    if 1 < len(group) <= MAX_BARE_WORDS and all(phrase.kind is None and not _is_marked(phrase) for phrase in group):
        return tuple(group)
    return None


def _drop_outside(group: list[Phrase], findings: Findings) -> list[Phrase]:
    """``external`` beside a name is an adjective (``the external service api.stripe.com``,
    ``external client 203.0.113.7``): the name is the reference, the word is skipped."""
    named = [phrase for phrase in group if phrase.kind is not RefKind.OUTSIDE]
    if len(named) == len(group) or not any(_is_marked(phrase) for phrase in named):
        return group  # "external users": the bare word beside it is what is skipped
    findings.ignored.extend(phrase.text for phrase in group if phrase.kind is RefKind.OUTSIDE)
    return named


def _narrow(group: list[Phrase], findings: Findings) -> list[Phrase]:
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
    findings.ignored.extend(phrase.text for phrase in group if phrase is not marked[0])
    return marked


def _one_sided(items: list[Item], position: int, readings: Readings, findings: Findings) -> Roles:
    """One name: the connective next to it (or its being a service or DNS name, or "down") says which side it is."""
    phrase = items[position]
    if not isinstance(phrase, Phrase):  # pragma: no cover - positions index phrases
        raise AssertionError("position is not a phrase")
    before = items[position - 1] if position > 0 else None
    after = items[position + 1] if position + 1 < len(items) else None
    reading = readings[id(phrase)]
    if phrase.entry is not None:
        return Roles(None, phrase, from_outside=True)  # "why can't I reach web's load balancer": from outside
    is_target = (
        (isinstance(before, Connective) and before.direction is Direction.FORWARD)
        or (isinstance(after, Connective) and after.direction is Direction.BACKWARD)
        or (isinstance(reading, ReferenceText) and _reads_as_target(reading))
        or findings.target_state
    )
    if is_target:
        return Roles(None, phrase, Unreadable(f"Found only the target '{shown(phrase.text)}': name the source too.", None))
    return Roles(phrase, None, Unreadable(f"Found only the source '{shown(phrase.text)}': name the target too.", None))


def _groups_between(items: list[Item], positions: list[int]) -> list[tuple[list[Phrase], Connective | None]]:
    """Split the phrases at the connectives between them; each group keeps the connective before it."""
    groups: list[tuple[list[Phrase], Connective | None]] = []
    current: list[Phrase] = []
    leading: Connective | None = None
    for before, after in itertools.pairwise(positions):
        phrase = items[before]
        if isinstance(phrase, Phrase):
            current.append(phrase)
        between = [item for item in items[before + 1 : after] if isinstance(item, Connective)]
        if between:
            groups.append((current, leading))
            current, leading = [], between[-1]
    last = items[positions[-1]]
    if isinstance(last, Phrase):
        current.append(last)
    groups.append((current, leading))
    return groups


def _is_marked(phrase: Phrase) -> bool:
    """Whether a phrase is unmistakably a reference: a kind, or a word with ``/ : . [`` in it."""
    return phrase.kind is not None or (phrase.word is not None and any(mark in phrase.word for mark in "/:.["))


def _reads_as_target(reading: ReferenceText) -> bool:
    """A lone name written as a DNS name, or naming a service, is the target of its question."""
    return reading.dns_name is not None or not reading.to_ref(as_source=True).kind.can_be_source


def settle(phrase: Phrase | None, readings: Readings, findings: Findings, *, as_source: bool) -> Ref | str | None:
    """The phrase's reference for its role; moves a port written on the source to the question."""
    if phrase is None:
        return None
    reading = readings[id(phrase)]
    if isinstance(reading, str):
        return reading
    if reading.port_problem is not None:
        findings.port_unreadable = True
        findings.problems.append(reading.port_problem.with_example(PORT_EXAMPLE))
    if reading.port is not None:
        if as_source and (reading.port.number is not None or reading.port.name is not None):
            findings.problems.append(
                Unreadable(
                    f"The port belongs to the target, not to the source '{shown(reading.written)}'.",
                    reading.written,
                    example=PORT_EXAMPLE,
                )
            )
        findings.set_port(reading.port)  # on the source too: the closest form shows it on the target
    return reading.to_ref(as_source=as_source)
