"""Native nftables base chains (families ip and inet) evaluated for one flow (pure: nft JSON in, hits out).

iptables-nft's `iptables-save` shows only the tables iptables-nft made; a firewall written with `nft`
itself (firewalld's `table inet firewalld`, a distro's `/etc/nftables.conf`, a user's own table) is
invisible to it. This module reads what `nft -j list table FAMILY NAME` prints and walks the table's
base chains the way the kernel would for the first packet of a connection:

- a base chain runs its rules in order; `accept` ends that base chain only (the other base chains on
  the hook still run, in priority order), `drop` and `reject` end the packet's life;
- `jump` enters a regular chain and comes back after it on `return` or at its end; `goto` does not
  come back; a verdict map (`vmap`) applies the verdict of the element the packet matches;
- a base chain that ends without a verdict applies its policy (`policy drop` is a drop).

Matches are evaluated from the flow alone: `ip saddr`/`ip daddr` (addresses, prefixes, ranges,
anonymous and named sets), `ip protocol` / `meta l4proto`, `tcp`/`udp`/`sctp`/`th dport` (ports,
ranges, sets), `meta nfproto` and `ct state` (the first packet is `new`). Anything else (interface
names, marks, `fib`, `ct status`, source ports …) cannot be settled from the flow: a rule with such a
match is "possible", as in the iptables walk: a possible drop is listed, a possible accept or jump does
not end the walk with certainty.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nodeagent.checks.nat.nft_json import render_expr, verdict_of

YES, NO, MAYBE = "yes", "no", "maybe"
_MAX_DEPTH = 16
_PROTOCOLS = {"tcp": 6, "udp": 17, "icmp": 1, "sctp": 132}
_PORT_PROTOCOLS = frozenset({"tcp", "udp", "sctp", "th", "dccp", "udplite"})
_DROPPING = frozenset({"drop", "reject"})
FILTER_HOOKS = ("prerouting", "input", "forward", "output", "postrouting")
_FILTERING_TYPES = frozenset({"filter", "route"})
_UNSURE_STATEMENTS = frozenset({"limit", "quota", "xt", "meter", "numgen"})
"""Statements that let only some packets through to the verdict (or iptables-nft's compat matches)."""


class NftFilterError(ValueError):
    """The JSON is not what `nft -j list table` prints."""


@dataclass(frozen=True)
class NftFlow:
    """The first packet of a connection, as the nftables walk sees it."""

    src: str
    dst: str
    protocol: str
    dport: int | None


@dataclass(frozen=True)
class NftRule:
    """One rule: its statements as nft -j printed them, its handle and counter."""

    chain: str
    handle: int | None
    exprs: tuple[Any, ...]

    @property
    def text(self) -> str:
        """The rule in nft's own syntax (counters left out)."""
        return " ".join(render_expr(e) for e in self.exprs if not (isinstance(e, dict) and "counter" in e))

    @property
    def counters(self) -> tuple[int | None, int | None]:
        """(packets, bytes) of the rule's `counter`, (None, None) without one."""
        for e in self.exprs:
            if isinstance(e, dict) and isinstance(e.get("counter"), dict):
                return (e["counter"].get("packets"), e["counter"].get("bytes"))
        return (None, None)


@dataclass(frozen=True)
class NftChain:
    """A chain; a base chain has a hook, a priority and a policy."""

    name: str
    hook: str | None = None
    priority: int = 0
    policy: str = "accept"
    type: str | None = None
    rules: tuple[NftRule, ...] = ()


@dataclass(frozen=True)
class NftTable:
    """One table of family ip or inet: its chains and its named sets' elements."""

    family: str
    name: str
    chains: Mapping[str, NftChain]
    sets: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """`inet filter`: how nft names the table."""
        return f"{self.family} {self.name}"

    def base_chains(self, hook: str) -> list[NftChain]:
        """The filtering base chains on `hook` (type filter or route), lowest priority first."""
        found = [c for c in self.chains.values() if c.hook == hook and (c.type or "filter") in _FILTERING_TYPES]
        return sorted(found, key=lambda c: c.priority)


@dataclass(frozen=True)
class NftHit:
    """A rule or policy of a base chain's walk that drops (or may drop) the flow."""

    table: NftTable
    chain: str
    rule: str
    target: str
    handle: int | None
    packets: int | None
    bytes: int | None


@dataclass(frozen=True)
class NftChainVerdict:
    """What one base chain does to the flow: "drop", "accept" or None (undecided), and the hits."""

    decided: str | None
    drops: tuple[NftHit, ...]
    possible: tuple[NftHit, ...]


def parse_nft_table(data: Any) -> list[NftTable]:
    """Every table in one `nft -j list table …` / `nft -j list ruleset` output."""
    items = data.get("nftables") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise NftFilterError("no 'nftables' list in nft's JSON")
    tables: dict[tuple[str, str], dict[str, Any]] = {}
    order: list[tuple[str, str]] = []

    def slot(obj: Mapping[str, Any]) -> dict[str, Any]:
        key = (str(obj.get("family", "")), str(obj.get("table", obj.get("name", ""))))
        if key not in tables:
            tables[key] = {"chains": {}, "rules": {}, "sets": {}}
            order.append(key)
        return tables[key]

    for item in items:
        if not isinstance(item, dict):
            continue
        if "table" in item:
            slot(item["table"])
        elif "chain" in item:
            c = item["chain"]
            slot(c)["chains"][c["name"]] = c
        elif "rule" in item:
            r = item["rule"]
            slot(r)["rules"].setdefault(r["chain"], []).append(r)
        elif "set" in item or "map" in item:
            s = item.get("set") or item["map"]
            slot(s)["sets"][s["name"]] = tuple(s.get("elem", ()))
    return [_table(family, name, tables[(family, name)]) for family, name in order]


def _table(family: str, name: str, raw: Mapping[str, Any]) -> NftTable:
    chains: dict[str, NftChain] = {}
    for chain_name, c in raw["chains"].items():
        rules = tuple(NftRule(chain_name, r.get("handle"), tuple(r.get("expr", ()))) for r in raw["rules"].get(chain_name, ()))
        prio = c.get("prio", 0)
        chains[chain_name] = NftChain(
            chain_name,
            c.get("hook"),
            prio if isinstance(prio, int) else 0,
            str(c.get("policy", "accept")),
            c.get("type"),
            rules,
        )
    for chain_name, rules_raw in raw["rules"].items():  # rules of a chain the listing did not declare
        if chain_name not in chains:
            rules = tuple(NftRule(chain_name, r.get("handle"), tuple(r.get("expr", ()))) for r in rules_raw)
            chains[chain_name] = NftChain(chain_name, rules=rules)
    return NftTable(family, name, chains, dict(raw["sets"]))


# ---- matching -------------------------------------------------------------------------------------


def _address_in(address: str, value: Any, table: NftTable) -> str:
    """Does `address` equal/lie in `value` (an address, prefix, range, set or @set)?"""
    if isinstance(value, str) and value.startswith("@"):
        elements = table.sets.get(value[1:])
        if elements is None:
            return MAYBE
        return _address_in(address, {"set": list(elements)}, table)
    if isinstance(value, dict) and "set" in value:
        results = [_address_in(address, v, table) for v in value["set"]]
        return YES if YES in results else MAYBE if MAYBE in results else NO
    if isinstance(value, dict) and "elem" in value:
        return _address_in(address, value["elem"].get("val"), table)
    try:
        ip = ipaddress.ip_address(address)
        if isinstance(value, dict) and "prefix" in value:
            net = ipaddress.ip_network(f"{value['prefix']['addr']}/{value['prefix']['len']}", strict=False)
            return YES if ip in net else NO
        if isinstance(value, dict) and "range" in value:
            low, high = (ipaddress.ip_address(v) for v in value["range"])
            return YES if low <= ip <= high else NO  # type: ignore[operator]
        if isinstance(value, str):
            return YES if ip in ipaddress.ip_network(value, strict=False) else NO
    except (ValueError, TypeError, KeyError):
        return MAYBE
    return MAYBE


def _scalar_in(wanted: Any, value: Any, table: NftTable, *, as_int: bool = False) -> str:
    """Does the flow's `wanted` (a port, a protocol name) equal/lie in `value`?"""
    if isinstance(value, str) and value.startswith("@"):
        elements = table.sets.get(value[1:])
        return MAYBE if elements is None else _scalar_in(wanted, {"set": list(elements)}, table, as_int=as_int)
    if isinstance(value, dict) and "set" in value:
        results = [_scalar_in(wanted, v, table, as_int=as_int) for v in value["set"]]
        return YES if YES in results else MAYBE if MAYBE in results else NO
    if isinstance(value, list):  # a flag list (`ct state established,related`)
        results = [_scalar_in(wanted, v, table, as_int=as_int) for v in value]
        return YES if YES in results else MAYBE if MAYBE in results else NO
    if isinstance(value, dict) and "elem" in value:
        return _scalar_in(wanted, value["elem"].get("val"), table, as_int=as_int)
    if isinstance(value, dict) and "range" in value:
        try:
            low, high = (int(v) for v in value["range"])
            return YES if low <= int(wanted) <= high else NO
        except (TypeError, ValueError):
            return MAYBE
    if isinstance(value, dict):
        return MAYBE
    if as_int:
        try:
            return YES if int(value) == int(wanted) else NO
        except (TypeError, ValueError):
            return MAYBE
    return YES if str(value).lower() == str(wanted).lower() else NO


def _protocol_number(value: Any, table: NftTable) -> Any:
    """`value` with protocol names ("tcp") turned into their numbers, sets and @sets resolved."""
    if isinstance(value, str) and value.startswith("@"):
        elements = table.sets.get(value[1:])
        return value if elements is None else {"set": [_protocol_number(v, table) for v in elements]}
    if isinstance(value, dict) and "set" in value:
        return {"set": [_protocol_number(v, table) for v in value["set"]]}
    if isinstance(value, str):
        return _PROTOCOLS.get(value.lower(), value)
    return value


def _protocol_in(protocol: str, value: Any, table: NftTable) -> str:
    """Does the flow's protocol ("tcp") equal/lie in `value` (names or numbers)?"""
    number = _PROTOCOLS.get(protocol.lower())
    if number is None:
        return _scalar_in(protocol.lower(), value, table)
    return _scalar_in(number, _protocol_number(value, table), table, as_int=True)


def _left_result(left: Any, right: Any, flow: NftFlow, table: NftTable) -> str:
    """Whether the flow's field `left` is `right` (YES/NO), or MAYBE when the flow cannot say."""
    if isinstance(left, dict) and "payload" in left:
        proto, fld = left["payload"].get("protocol"), left["payload"].get("field")
        if proto in ("ip", "ip6") and fld in ("saddr", "daddr"):
            is_v6 = ":" in flow.src
            if (proto == "ip6") != is_v6:
                return NO  # an ip6 match never matches an IPv4 packet (nft adds the nfproto dependency)
            return _address_in(flow.src if fld == "saddr" else flow.dst, right, table)
        if (proto, fld) in (("ip", "protocol"), ("ip6", "nexthdr")):
            return _protocol_in(flow.protocol, right, table)
        if proto in _PORT_PROTOCOLS and fld == "dport":
            if proto != "th" and proto != flow.protocol.lower():
                return NO  # `tcp dport` carries an implicit `meta l4proto tcp`
            if flow.dport is None:
                return MAYBE
            return _scalar_in(flow.dport, right, table, as_int=True)
        if proto in _PORT_PROTOCOLS and proto != "th" and proto != flow.protocol.lower():
            return NO  # any tcp/udp header field implies that protocol
        return MAYBE
    if isinstance(left, dict) and "meta" in left:
        key = left["meta"].get("key")
        if key == "l4proto":
            return _protocol_in(flow.protocol, right, table)
        if key == "nfproto":
            return _scalar_in("ipv6" if ":" in flow.src else "ipv4", right, table)
        return MAYBE
    if isinstance(left, dict) and "ct" in left and left["ct"].get("key") == "state" and "dir" not in left["ct"]:
        return _scalar_in("new", right, table)
    return MAYBE


def _match(body: Mapping[str, Any], flow: NftFlow, table: NftTable) -> str:
    op = body.get("op", "==")
    found = _left_result(body.get("left"), body.get("right"), flow, table)
    if found == MAYBE or op in ("==", "in"):
        return found
    if op == "!=":
        return NO if found == YES else YES
    return MAYBE  # <, >, & … : not evaluated


# ---- the walk -------------------------------------------------------------------------------------


@dataclass
class _Walk:
    table: NftTable
    flow: NftFlow
    drops: list[NftHit] = field(default_factory=list)
    possible: list[NftHit] = field(default_factory=list)


def _hit(walk: _Walk, rule: NftRule, target: str) -> NftHit:
    packets, byte_count = rule.counters
    return NftHit(walk.table, rule.chain, rule.text, target.upper(), rule.handle, packets, byte_count)


def _vmap(walk: _Walk, rule: NftRule, body: Mapping[str, Any], certain: bool, depth: int) -> tuple[str | None, bool]:
    """Apply a verdict map: (decided verdict or None, whether the rule's walk ended for sure)."""
    data = body.get("data")
    if not isinstance(data, dict) or "set" not in data:
        return (None, False)
    for entry in data["set"]:
        if not isinstance(entry, list) or len(entry) != 2:
            continue
        key, verdict = entry
        matched = _match({"op": "==", "left": body.get("key"), "right": key}, walk.flow, walk.table)
        if matched == NO:
            continue
        sure = certain and matched == YES
        decided = _apply(walk, rule, verdict_of(verdict), sure, depth)
        if sure:
            return (decided, True)
    return (None, False)


def _apply(walk: _Walk, rule: NftRule, verdict: tuple[str, str | None], sure: bool, depth: int) -> str | None:
    """Apply one verdict of `rule`; returns "drop"/"accept"/"return"/"goto-end" when decided for sure."""
    kind, target = verdict
    if kind in _DROPPING:
        if sure:
            walk.drops.append(_hit(walk, rule, kind))
            return "drop"
        walk.possible.append(_hit(walk, rule, kind))
        return None
    if kind == "accept":
        return "accept" if sure else None
    if kind == "return":
        return "return" if sure else None
    if kind in ("jump", "goto") and target is not None:
        decided = _walk_chain(walk, target, sure, depth + 1)
        if not sure:
            return None
        if decided in ("drop", "accept"):
            return decided
        return "goto-end" if kind == "goto" else None
    return None


def _walk_chain(walk: _Walk, name: str, certain: bool, depth: int) -> str | None:
    """Walk a chain; "drop"/"accept" when the flow's fate is decided for sure, "return"/"goto-end" when
    the chain returns for sure, else None (fell off the end, or nothing certain)."""
    chain = walk.table.chains.get(name)
    if chain is None or depth > _MAX_DEPTH:
        return None
    for rule in chain.rules:
        matched = YES
        decided: str | None = None
        ended = False
        for expr in rule.exprs:
            if not isinstance(expr, dict) or len(expr) != 1:
                continue
            kind, body = next(iter(expr.items()))
            if kind == "match":
                result = _match(body, walk.flow, walk.table)
                if result == NO:
                    matched = NO
                    break
                if result == MAYBE:
                    matched = MAYBE
            elif kind == "vmap":
                decided, ended = _vmap(walk, rule, body, certain and matched == YES, depth)
                if ended or decided is not None:
                    break
            elif kind in _UNSURE_STATEMENTS:
                matched = MAYBE if matched == YES else matched
            elif kind in ("drop", "reject", "accept", "return", "jump", "goto"):
                decided = _apply(
                    walk, rule, verdict_of(expr) if kind != "reject" else ("reject", None), certain and matched == YES, depth
                )
                ended = decided is not None
                break
        if matched == NO:
            continue
        if decided == "goto-end":
            return "return"
        if decided is not None:
            return decided
    return None


def base_chain_verdict(table: NftTable, chain: NftChain, flow: NftFlow) -> NftChainVerdict:
    """What the base chain `chain` of `table` does to `flow`, its policy included."""
    walk = _Walk(table, flow)
    decided = _walk_chain(walk, chain.name, True, 0)
    if decided in (None, "return") and chain.policy == "drop":
        walk.drops.append(NftHit(table, chain.name, "policy drop", "DROP", None, None, None))
        decided = "drop"
    return NftChainVerdict(decided if decided in ("drop", "accept") else None, tuple(walk.drops), tuple(walk.possible))


def filtering_tables(tables: Sequence[NftTable]) -> list[NftTable]:
    """The tables of families ip and inet (the ones an IPv4 packet crosses at the IP hooks)."""
    return [t for t in tables if t.family in ("ip", "inet")]
