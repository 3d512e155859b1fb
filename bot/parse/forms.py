"""The forms a question takes between the grammar's steps, as plain frozen data.

The options step (`bot.parse.options`) turns the lexer's words into `Word`s: plain words, and what an
option became (an ``in NS``, a way in, a client outside); the phrases step (`bot.parse.phrases`)
groups them into `Phrase`s and `Connective`s; the roles step (`bot.parse.roles`) picks the source and
the target among the phrases. The forms live apart from the steps so that every step, and the ways-in
rules that several of them apply (`bot.parse.ways_in`), can share them without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.parse.models import EntryKind, RefKind
from bot.parse.vocabulary import Direction


@dataclass(frozen=True)
class Entry:
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
class Outside:
    """A word naming a client outside the cluster (``outside``, ``internet``, ``clients``)."""

    word: str


@dataclass(frozen=True)
class InNamespace:
    """``in NS`` where it was written: it binds to the name before it (or, before any name, to both)."""

    name: str


Word = str | InNamespace | Entry | Outside
"""A word left after the options, or what an option became."""


@dataclass(frozen=True)
class Phrase:
    """One reference as written: a reference word with an optional kind word, or a kind word alone.

    `namespaces` are the ``in NS`` written right after it, in order; `entry` the way in written with it.
    """

    text: str
    kind: RefKind | None
    kind_word: str | None
    word: str | None
    end: int
    namespaces: tuple[str, ...] = ()
    entry: Entry | None = None


@dataclass(frozen=True)
class Connective:
    """Connective words between phrases (``can't reach``, ``reachable from``) and the way they point."""

    direction: Direction
    words: tuple[str, ...]


Item = Phrase | Connective
"""What the phrases step leaves for the roles step."""
