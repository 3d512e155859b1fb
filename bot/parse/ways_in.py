"""Ways into the cluster (NodePorts, load balancers, external IPs) and the clients outside that use them.

The grammar of a way in::

    phrase := phrase ["'s"] [BRIDGE*] ENTRY | ENTRY ("of"|"for") phrase | "nodeport" NUMBER | NUMBER "nodeport"
    ENTRY  := ("nodeport" | "node port" | "load balancer" | "lb" | "external ip" | …) [NUMBER] [("on"|"at") ["node"] NODE]

A way in belongs to the service written before it (``web's lb``, ``svc/web nodeport``, ``web via its
load balancer``) or after it (``the nodeport of web``); a NodePort with its number stands alone
(``nodeport 30080 on node-2``, ``30080 nodeport``); with no name after it, it belongs to the last name
before it. A way in is where traffic comes in, so it is a target; a NodePort is the port asked about,
so no second port goes with it; a client outside the cluster is only ever a source.

These rules apply in several steps of the grammar (the options read ``ENTRY``, the phrases step ties
it to its name, the grammar checks the two ends), so they are kept here, in one place, and each step
calls them. The words themselves are in `bot.parse.vocabulary`.
"""

from __future__ import annotations

import dataclasses

from bot.parse.errors import ENTRY_EXAMPLE, NODEPORT_EXAMPLE, OUTSIDE_TARGET_EXAMPLE, Unreadable, shown
from bot.parse.findings import Findings
from bot.parse.forms import Entry, Item, Phrase, Word
from bot.parse.lexer import word_at
from bot.parse.models import OUTSIDE_NAME, EntryKind, Ref, RefKind
from bot.parse.references import ReferenceText, Shape, is_node_name, is_port_number, read_port
from bot.parse.vocabulary import ENTRY_BRIDGE, ENTRY_NODE_PREPOSITIONS, ENTRY_OF, ENTRY_PAIRS, ENTRY_WORDS, TIME_UNITS


def starts_entry(words: list[str], index: int) -> bool:
    """Whether a way in is written at `index` (``nodeport``, ``load balancer``)."""
    return words[index] in ENTRY_WORDS or (words[index], word_at(words, index + 1)) in ENTRY_PAIRS


def take_entry(words: list[str], index: int, rest: list[Word], findings: Findings, *, possessive: bool) -> int:
    """Read ``ENTRY [NODEPORT] [on NODE] [of]`` at `index` into `rest`; return the index after it."""
    pair = ENTRY_PAIRS.get((words[index], word_at(words, index + 1) or ""))
    kind = pair if pair is not None else ENTRY_WORDS[words[index]]
    text = " ".join(words[index : index + 2]) if pair is not None else words[index]
    index += 2 if pair is not None else 1
    node_port: int | None = None
    number = word_at(words, index)
    if (
        kind is EntryKind.NODEPORT
        and number is not None
        and is_port_number(number)
        and word_at(words, index + 1) not in TIME_UNITS
    ):
        try:
            spec = read_port(number)
        except Unreadable as problem:
            findings.problems.append(problem.with_example(NODEPORT_EXAMPLE))
        else:
            node_port = spec.number
            if spec.protocol is not None:
                findings.set_protocol(spec.protocol)
        index += 1
    rest.append(Entry(kind, text, len(rest), node_port, possessive=possessive))
    if word_at(words, index) in ENTRY_NODE_PREPOSITIONS:
        index = take_entry_node(words, index, rest)
    if word_at(words, index) in ENTRY_OF:
        entry = last_entry(rest)
        if entry is not None:
            rest[rest.index(entry)] = dataclasses.replace(entry, of=True)
        index += 1
    return index


def take_entry_node(words: list[str], index: int, rest: list[Word]) -> int:
    """``on [node] NODE`` after a way in: the node it is asked about. Returns `index` when it is not one."""
    entry = last_entry(rest)
    after = index + 1
    if word_at(words, after) in ("node", "nodes"):
        after += 1
    name = word_at(words, after)
    if entry is None or entry.node is not None or name is None or not is_node_name(name):
        return index
    rest[rest.index(entry)] = dataclasses.replace(entry, node=name)
    return after + 1


def last_entry(rest: list[Word]) -> Entry | None:
    """The last way in read so far."""
    return next((item for item in reversed(rest) if isinstance(item, Entry)), None)


class EntryPlacement:
    """Ties each way in to its name while the phrases step groups the words.

    A way in written before its name (``the load balancer of web``) waits in `pending` until the name
    comes; `finish` settles one still waiting when the words run out.
    """

    def __init__(self, findings: Findings) -> None:
        self.findings = findings
        self.pending: Entry | None = None
        self.pending_at = 0
        """Where in the phrases the pending way in was written."""

    def place(self, items: list[Item], entry: Entry, words: list[Word], index: int) -> None:
        """Tie a way in to the name before it (``web's lb``, ``svc/web nodeport``, ``web via its load
        balancer``), to the name after it (``the nodeport of web``), or make it a reference of its own
        (``nodeport 30080``)."""
        entry = dataclasses.replace(entry, at=index)
        previous = items[-1] if items else None
        if (
            not entry.of
            and isinstance(previous, Phrase)
            and previous.kind is not RefKind.OUTSIDE
            and previous.entry is None
            and (entry.possessive or all(word in ENTRY_BRIDGE for word in words[previous.end + 1 : index]))
        ):
            items[-1] = dataclasses.replace(previous, text=f"{previous.text} {entry.text}", entry=entry, end=index)
        elif entry.node_port is not None and not entry.of:
            items.append(Phrase(f"{entry.text} {entry.node_port}", RefKind.NODEPORT, None, None, index, entry=entry))
        elif self.pending is None:
            self.pending, self.pending_at = entry, len(items)
        else:
            self.findings.problems.append(
                Unreadable(
                    f"Two ways in ({self.pending.text} and {entry.text}): ask about one.", entry.text, example=ENTRY_EXAMPLE
                )
            )

    def give_pending(self, phrase: Phrase) -> Phrase:
        """The phrase with the way in written before it (``the load balancer of web``), if one waits."""
        if self.pending is not None and phrase.kind is not RefKind.OUTSIDE:
            phrase = dataclasses.replace(phrase, entry=self.pending)
            self.pending = None
        return phrase

    def finish(self, items: list[Item]) -> None:
        """Settle a way in still waiting when the words run out: a NodePort takes the number written
        before it, another way in the last name before it; with neither it is a problem."""
        pending = self.pending
        findings = self.findings
        if pending is not None and pending.kind is EntryKind.NODEPORT and not pending.of and findings.port is not None:
            # "30080 nodeport on node-2": the number written before the word is the NodePort.
            pending = dataclasses.replace(pending, node_port=findings.port)
            phrase = Phrase(f"{pending.text} {findings.port}", RefKind.NODEPORT, None, None, pending.at, entry=pending)
            items.insert(self.pending_at, phrase)
            findings.port, self.pending = None, None
        if self.pending is not None and not self.pending.of:
            self._to_earlier_name(items, self.pending)
        if self.pending is not None:
            entry = self.pending
            findings.problems.append(
                Unreadable(
                    f"'{shown(entry.text)}' needs the service it belongs to: write svc/NAME's {entry.text}.",
                    entry.text,
                    example=ENTRY_EXAMPLE,
                )
            )

    def _to_earlier_name(self, items: list[Item], entry: Entry) -> None:
        """A way in with no name after it belongs to the last name before it (``is web reachable through
        its external ip from outside``), past a client outside (``is api reachable from the internet via
        its load balancer``): a client has no way in."""
        for position in range(len(items) - 1, -1, -1):
            phrase = items[position]
            if isinstance(phrase, Phrase) and phrase.end < entry.at:
                if phrase.kind is RefKind.OUTSIDE:
                    continue
                if phrase.kind is not RefKind.NODEPORT and phrase.entry is None:
                    items[position] = dataclasses.replace(phrase, text=f"{phrase.text} {entry.text}", entry=entry)
                    self.pending = None
                return


def nodeport_reading(phrase: Phrase, entry: Entry) -> ReferenceText:
    """The reading of a NodePort written by its number (``nodeport 30080 on node-2``)."""
    return ReferenceText(
        written=phrase.text, shape=Shape.NODEPORT, name=str(entry.node_port),
        entry=entry.kind, node_port=entry.node_port, entry_node=entry.node,
    )  # fmt: skip


def with_entry(reading: ReferenceText, entry: Entry, findings: Findings) -> ReferenceText | None:
    """The reading with its way in; a node before a NodePort is the node it is asked on (``node-2 nodeport 30080``).

    None, with the problem in `findings`, when what is written cannot have a way in (only services can).
    """
    if reading.shape is Shape.NODEPORT:
        return dataclasses.replace(reading, entry=entry.kind, node_port=entry.node_port, entry_node=entry.node)
    if reading.kind is RefKind.NODE and entry.node is None and entry.node_port is not None:
        return ReferenceText(
            written=reading.written, shape=Shape.NODEPORT, name=str(entry.node_port), entry=entry.kind,
            node_port=entry.node_port, entry_node=reading.name, port=reading.port, port_problem=reading.port_problem,
        )  # fmt: skip
    service_like = reading.shape in (Shape.NAME, Shape.SHORTHAND, Shape.SERVICE_DNS, Shape.ADDRESS)
    if not service_like or reading.kind not in (None, RefKind.SERVICE, RefKind.WORKLOAD):
        findings.problems.append(
            Unreadable(
                f"'{shown(reading.written)}' cannot have a {entry.kind.value}: only services have NodePorts, "
                "external IPs and load balancers.",
                reading.written,
                example=ENTRY_EXAMPLE,
            )
        )
        return None
    return dataclasses.replace(reading, entry=entry.kind, node_port=entry.node_port, entry_node=entry.node)


def entry_as_source(source: Ref, entry: EntryKind) -> Unreadable:
    """The problem with a way in (`entry`, the source's) named as the source: it is where traffic comes in."""
    return Unreadable(
        f"The {entry.value} of {shown(source.name)} is where traffic comes in, so it is a target: "
        "ask which source cannot reach it.",
        source.display(),
        example=ENTRY_EXAMPLE,
    )


def port_beside_nodeport(target: Ref, other: int | str) -> Unreadable:
    """The problem with a port written beside a NodePort target: the NodePort is the port asked about."""
    return Unreadable(
        f"Two ports (NodePort {target.node_port} and {shown(other)}): the NodePort is the port asked about, "
        "so drop the other one.",
        str(other),
        example=NODEPORT_EXAMPLE,
    )


def outside_as_target() -> Unreadable:
    """The problem with a client outside named as the target: it has no address to reach."""
    return Unreadable(
        "'outside' is where traffic comes from, not where it goes: name the address or DNS name "
        "outside the cluster that cannot be reached.",
        OUTSIDE_NAME,
        example=OUTSIDE_TARGET_EXAMPLE,
    )
