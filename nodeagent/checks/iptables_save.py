"""A parser for what `iptables-save` prints (pure: text in, tables out).

It reads tables (`*nat` … `COMMIT`), chain declarations with policy and counters
(`:KUBE-SERVICES - [0:0]`), and rules (`-A CHAIN …`, with `[packets:bytes]` in front under `-c`).
A rule is kept as its text and tokenised only when asked (`parse_rule`): a node with 10,000
services has well over 100,000 rules and a lookup touches a handful of them.

Tokenising follows iptables-save's quoting: arguments with spaces are double-quoted, `"` and `\\`
inside them are backslash-escaped. A rule becomes a list of options, each with its values, whether
it was negated with `!` and which `-m` module introduced it; the target (`-j`, or `-g` for goto)
and the target's own options are kept apart.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from itertools import pairwise
from typing import NamedTuple

_QUOTED_TOKEN = re.compile(r'"((?:[^"\\]|\\.)*)"|(\S+)')
_UNESCAPE = re.compile(r"\\(.)")
_COUNTERS = re.compile(r"^\[(\d+):(\d+)\]$")
_TARGET_WORDS = frozenset({"-j", "-g", "--jump", "--goto"})
_new = tuple.__new__
"""Builds a named tuple from its fields in order without the Python-level `__new__` (the parser's hot path)."""


class IptablesSaveError(ValueError):
    """The text is not iptables-save output (the message gives the line)."""


class RuleOption(NamedTuple):
    """One option of a rule: `--dport 53`, `! -s 10.244.0.0/16`, `--rsource` (no values).

    (A named tuple rather than a frozen dataclass: a listing of 10,000 services builds over a million
    of these, and a frozen dataclass costs several times more to construct.)
    """

    name: str
    values: tuple[str, ...]
    negated: bool
    module: str | None

    @property
    def value(self) -> str:
        """The first value, or "" for a flag."""
        return self.values[0] if self.values else ""


class IptablesRule(NamedTuple):
    """One parsed rule of a chain (immutable; a named tuple for the same reason as `RuleOption`)."""

    chain: str
    text: str
    """The rule as iptables-save printed it, counters removed."""
    matches: tuple[RuleOption, ...]
    modules: tuple[str, ...]
    target: str | None
    goto: bool
    target_options: tuple[RuleOption, ...]
    packets: int | None
    bytes: int | None

    def match(self, name: str) -> RuleOption | None:
        """The first match option called `name` ("-d", "--dport", "--comment"), or None."""
        for option in self.matches:
            if option.name == name:
                return option
        return None

    def target_option(self, name: str) -> RuleOption | None:
        """The first target option called `name` ("--to-destination"), or None."""
        for option in self.target_options:
            if option.name == name:
                return option
        return None

    @property
    def comment(self) -> str | None:
        """The `-m comment --comment` text, when present."""
        option = self.match("--comment")
        return option.value if option else None


@dataclass(frozen=True)
class IptablesChain:
    """A chain: built-in ones have a policy; rule lines are kept as text until parsed."""

    name: str
    policy: str | None
    packets: int | None
    bytes: int | None
    rule_lines: tuple[str, ...]

    def rules(self) -> Iterator[IptablesRule]:
        """The chain's rules, parsed one by one."""
        for line in self.rule_lines:
            yield parse_rule(line)

    @cached_property
    def lines_by_destination(self) -> Mapping[str, tuple[str, ...]]:
        """Rule lines by the address of their `-d` match (prefix length dropped), built once.

        KUBE-SERVICES holds a rule per service port; this turns "which rules are for VIP?" from a scan
        of every rule into a lookup.
        """
        index: dict[str, list[str]] = {}
        for line in self.rule_lines:
            at = line.find(" -d ")
            if at < 0:
                continue
            end = line.find(" ", at + 4)
            address = line[at + 4 : end if end > 0 else len(line)].split("/", 1)[0]
            index.setdefault(address, []).append(line)
        return {address: tuple(lines) for address, lines in index.items()}


@dataclass(frozen=True)
class IptablesTable:
    """One table (`filter`, `nat`, …) and its chains, in the order iptables-save printed them."""

    name: str
    chains: Mapping[str, IptablesChain]


@dataclass(frozen=True)
class IptablesSave:
    """A whole iptables-save output: its tables and the backend from the header ("nf_tables",
    "legacy" or None when there is no header)."""

    tables: Mapping[str, IptablesTable]
    backend: str | None = None
    chain_count: int = field(default=0)

    def table(self, name: str) -> IptablesTable | None:
        """The table called `name`, if it was in the output."""
        return self.tables.get(name)


def tokenize(text: str) -> list[str]:
    """Split a rule into words, honouring iptables-save's double quotes and backslash escapes."""
    if '"' not in text:
        return text.split()
    if "\\" not in text:
        # The common case (a `--comment "…"` without escapes): split at the quotes. Each quoted
        # part must stand alone between spaces, as iptables-save prints it; otherwise the regex decides.
        parts = text.split('"')
        if len(parts) % 2 == 1:
            words: list[str] = []
            for index, part in enumerate(parts):
                if index % 2:
                    words.append(part)
                elif (index > 0 and part and part[0] != " ") or (index < len(parts) - 1 and part and part[-1] != " "):
                    break
                else:
                    words += part.split()
            else:
                return words
    return [_UNESCAPE.sub(r"\1", quoted) if plain == "" else plain for quoted, plain in _QUOTED_TOKEN.findall(text)]


def _is_option(word: str) -> bool:
    return len(word) > 1 and word[0] == "-" and not word[1].isdigit()


def parse_rule(line: str) -> IptablesRule:
    """Parse one `[-c P B | [P:B]] -A CHAIN …` line."""
    words = tokenize(line)
    packets = byte_count = None
    if words and words[0].startswith("["):
        found = _COUNTERS.match(words[0])
        if not found:
            raise IptablesSaveError(f"bad counters in rule: {line[:120]}")
        packets, byte_count = int(found.group(1)), int(found.group(2))
        words = words[1:]
    if len(words) < 2 or words[0] not in ("-A", "-I"):
        raise IptablesSaveError(f"not a rule line: {line[:120]}")
    chain = words[1]
    matches: list[RuleOption] = []
    modules: list[str] = []
    target_options: list[RuleOption] = []
    target: str | None = None
    goto = False
    module: str | None = None
    negate = False
    # where each option starts (`-d`, `--dport`; not a value such as `-1`), and `!` (a negation of
    # the next option): the values of an option are the words up to the next of either
    stops = [k for k in range(2, len(words)) if (w := words[k]) == "!" or (len(w) > 1 and w[0] == "-" and not w[1].isdigit())]
    stops.append(len(words))
    for at, until in pairwise(stops):  # (words before the first stop are stray values: ignored)
        word = words[at]
        if word == "!":
            negate = True
            continue
        if word == "-c" and until - at >= 3:  # `iptables-save -c` style counters after the chain
            packets, byte_count = int(words[at + 1]), int(words[at + 2])
            continue
        values = tuple(words[at + 1 : until])
        if word in _TARGET_WORDS:
            target = values[0] if values else None
            goto = word in ("-g", "--goto")
            module = None
            continue
        if target is not None:
            target_options.append(_new(RuleOption, (word, values, negate, target)))
        elif word in ("-m", "--match"):
            module = values[0] if values else None
            if module:
                modules.append(module)
        else:
            matches.append(_new(RuleOption, (word, values, negate, module)))
        negate = False
    text = line if packets is None or not line.startswith("[") else line.split(" ", 1)[1]
    fields = (chain, text, tuple(matches), tuple(modules), target, goto, tuple(target_options), packets, byte_count)
    return _new(IptablesRule, fields)


def parse_iptables_save(text: str) -> IptablesSave:
    """Parse a full iptables-save output (one or more tables)."""
    tables: dict[str, IptablesTable] = {}
    backend: str | None = None
    table_name: str | None = None
    declared: dict[str, tuple[str | None, int | None, int | None]] = {}
    lines_by_chain: dict[str, list[str]] = {}
    chain_count = 0
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line:
            continue
        first = line[0]
        if first in {"-", "["}:
            if table_name is None:
                raise IptablesSaveError(f"line {number}: rule outside a table")
            if first == "[":
                chain = line.split(" ", 3)[2] if line.count(" ") >= 2 else ""
            else:
                chain = line.split(" ", 2)[1] if " " in line else ""
            bucket = lines_by_chain.get(chain)
            if bucket is None:
                bucket = lines_by_chain[chain] = []
            bucket.append(line)
        elif first == ":":
            if table_name is None:
                raise IptablesSaveError(f"line {number}: chain outside a table")
            parts = line[1:].split()
            policy = parts[1] if len(parts) > 1 and parts[1] != "-" else None
            packets = byte_count = None
            if len(parts) > 2:
                found = _COUNTERS.match(parts[2])
                if found:
                    packets, byte_count = int(found.group(1)), int(found.group(2))
            declared[parts[0]] = (policy, packets, byte_count)
        elif first == "*":
            table_name = line[1:]
            declared = {}
            lines_by_chain = {}
        elif line == "COMMIT":
            if table_name is None:
                raise IptablesSaveError(f"line {number}: COMMIT outside a table")
            chains = {}
            for name, (policy, packets, byte_count) in declared.items():
                chains[name] = IptablesChain(name, policy, packets, byte_count, tuple(lines_by_chain.pop(name, ())))
            for name, rule_lines in lines_by_chain.items():  # rules in an undeclared chain
                chains[name] = IptablesChain(name, None, None, None, tuple(rule_lines))
            chain_count += len(chains)
            tables[table_name] = IptablesTable(table_name, chains)
            table_name = None
        elif first == "#":
            if backend is None and line.startswith("# Generated by"):
                backend = "nf_tables" if "(nf_tables)" in line else "legacy" if "(legacy)" in line else None
        else:
            raise IptablesSaveError(f"line {number}: not iptables-save output: {line[:120]}")
    if table_name is not None:
        raise IptablesSaveError(f"table {table_name} has no COMMIT; the output was cut short")
    return IptablesSave(tables=tables, backend=backend, chain_count=chain_count)
