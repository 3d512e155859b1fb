"""Would the node translate the source of a pod's packet to an address outside the cluster?

Pods reach the outside world because their node rewrites the source address to its own on the way
out (the CNI's masquerade: flannel's FLANNEL-POSTRTG chain, Calico's cali-nat-outgoing with its
IPAM-pool ipsets, kube-proxy's KUBE-POSTROUTING for marked service traffic, or native nftables
chains such as flannel's `ip flannel-ipv4` table). `egress_nat` walks the nat table's POSTROUTING for the
first packet of such a flow, the way the kernel does:

- iptables (legacy or nft-backed, read with `iptables-save`): POSTROUTING and the chains it jumps to;
- nftables: every `type nat hook postrouting` base chain of the ip and inet families, by priority,
  and the chains they jump to (tables that iptables-nft owns are read through iptables-save instead).

The flow is what the packet carries: its source (the pod), destination, protocol and port, the
interface the node's route sends it out of (what `-o` / `oifname` match), no packet mark (kube-proxy
marks only service traffic it must masquerade; a pod's packet to an outside address is not service
traffic) and not destination-NATed. The members of the hash:net / hash:ip ipsets the rules match on
(Calico's `cali40masq-ipam-pools`) are read over netlink. Matches the flow cannot settle (a set of
another type, connmarks, …) make a rule "possible": such a MASQUERADE/SNAT is listed in `possible`,
and such a RETURN makes the rest of its chain uncertain. Nothing here changes a rule or a set; the
tools run with fixed argument vectors.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pyroute2.ipset import IPSet
from pyroute2.netlink.exceptions import NetlinkError

from nodeagent.checks.filter import in_net, port_in
from nodeagent.checks.iptables_save import IptablesRule, IptablesSave, RuleOption, parse_rule
from nodeagent.checks.nat import KubeProxyTables, ruleset_version
from nodeagent.checks.nat.model import NatStateError
from nodeagent.netns import run_in_netns

YES, NO, MAYBE = "yes", "no", "maybe"
TRANSLATED, UNTRANSLATED, UNKNOWN = "translated", "untranslated", "unknown"
_TRANSLATING = frozenset({"MASQUERADE", "SNAT"})
_PROTOCOLS = {"tcp": "6", "udp": "17", "icmp": "1", "sctp": "132"}
_MAX_DEPTH = 16
_SET_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,31}$")
_MAX_SETS = 16
_IPTABLES_NFT_TABLES = frozenset({"nat", "filter", "mangle", "raw", "security"})


@dataclass(frozen=True)
class EgressFlow:
    """The first packet of a pod's connection to an outside address, as it reaches nat POSTROUTING."""

    src: str
    dst: str
    protocol: str
    dport: int | None
    out_interface: str | None
    """The interface the node's route chose; None when the node has no route (then `-o` is unknown)."""
    sets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Members (CIDRs) of the hash:net / hash:ip ipsets the nat rules match on, read from the kernel;
    a set not here makes its `-m set` match unsettled."""


@dataclass(frozen=True)
class EgressNatRule:
    """One rule on the packet's way through nat POSTROUTING."""

    table: str
    chain: str
    rule: str
    target: str
    certain: bool = True
    packets: int | None = None


@dataclass(frozen=True)
class EgressNat:
    """The walk's answer: translated, untranslated or unknown, and the rules that say so."""

    verdict: str
    rules: tuple[EgressNatRule, ...] = ()
    possible: tuple[EgressNatRule, ...] = ()
    out_interface: str = ""
    chains: tuple[str, ...] = ()
    unreadable: str = ""


@dataclass
class _Walk:
    """What a walk found so far (mutable while walking; frozen into `EgressNat` at the end)."""

    flow: EgressFlow
    rules: list[EgressNatRule] = field(default_factory=list)
    possible: list[EgressNatRule] = field(default_factory=list)
    chains: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ iptables


def _iface_matches(pattern: str, name: str) -> bool:
    """iptables' interface match: a trailing "+" matches any suffix."""
    return name.startswith(pattern[:-1]) if pattern.endswith("+") else name == pattern


def _mark_matches(spec: str) -> bool:
    """`--mark VALUE[/MASK]` against the flow's mark, which is 0."""
    value, _, mask = spec.partition("/")
    try:
        return (0 & int(mask or "0xffffffff", 0)) == int(value, 0)
    except ValueError:
        return False


def _addrtype(kind: str, local: bool) -> bool | None:
    """`--src-type` / `--dst-type` for an address that is (not) local to the node; None: cannot tell."""
    types = set(kind.upper().split(","))
    if types <= {"LOCAL"}:
        return local
    if types <= {"UNICAST"}:
        return True
    if types & {"BROADCAST", "MULTICAST", "BLACKHOLE", "UNREACHABLE", "PROHIBIT"} and not types & {"UNICAST", "LOCAL"}:
        return False
    return None


def _option_matches(option: RuleOption, flow: EgressFlow) -> bool | None:
    """One option against the flow: True, False, or None when the flow alone cannot settle it."""
    name, value = option.name, option.value
    if name in ("-s", "--source", "-d", "--destination"):
        address = flow.src if name in ("-s", "--source") else flow.dst
        return any(in_net(address, spec) for spec in value.split(","))
    if name in ("-p", "--protocol"):
        wanted, proto = value.lower(), flow.protocol.lower()
        return wanted in ("all", "0") or wanted == proto or wanted == _PROTOCOLS.get(proto)
    if name in ("--dport", "--destination-port", "--dports", "--destination-ports"):
        return None if flow.dport is None else port_in(flow.dport, value)
    if name in ("-o", "--out-interface"):
        return None if flow.out_interface is None else _iface_matches(value, flow.out_interface)
    if name == "--mark" and option.module in ("mark", None):
        return _mark_matches(value)
    if name == "--src-type":
        return _addrtype(value, local=False)
    if name == "--dst-type":
        return _addrtype(value, local=False)
    if name == "--match-set" and len(option.values) >= 2 and option.values[0] in flow.sets:
        direction = option.values[1].split(",")
        if len(direction) != 1 or direction[0] not in ("src", "dst"):
            return None
        address = flow.src if direction[0] == "src" else flow.dst
        return any(in_net(address, member) for member in flow.sets[option.values[0]])
    if name in ("--ctstate", "--state"):
        return "NEW" in value.upper().split(",")
    return None


def rule_matches(rule: IptablesRule, flow: EgressFlow) -> str:
    """ "yes", "no" or "maybe": does `rule` match the first packet of the pod's outside flow?"""
    verdict = YES
    for option in rule.matches:
        if option.name in ("--comment", "--limit-iface-out", "--limit-iface-in"):
            continue
        matched = _option_matches(option, flow)
        if matched is None:
            verdict = MAYBE
            continue
        if matched == option.negated:
            return NO
    return verdict


def _iptables_hit(rule: IptablesRule, certain: bool) -> EgressNatRule:
    return EgressNatRule("iptables nat", rule.chain, rule.text, rule.target or "", certain, rule.packets)


def _walk_iptables(walk: _Walk, save: IptablesSave, chain_name: str, certain: bool, depth: int) -> str | None:
    """Walk one nat chain; TRANSLATED or UNTRANSLATED when the packet's fate is decided, else None."""
    table = save.table("nat")
    chain = table.chains.get(chain_name) if table else None
    if table is None or chain is None or depth > _MAX_DEPTH:
        return None
    walk.chains.append(f"nat/{chain_name}")
    for rule in chain.rules():
        matched = rule_matches(rule, walk.flow)
        if matched == NO:
            continue
        sure = certain and matched == YES
        target = rule.target or ""
        if target in _TRANSLATING:
            if sure:
                walk.rules.append(_iptables_hit(rule, True))
                return TRANSLATED
            walk.possible.append(_iptables_hit(rule, False))
        elif target in ("ACCEPT", "RETURN"):
            if sure:
                walk.rules.append(_iptables_hit(rule, True))
                return UNTRANSLATED if target == "ACCEPT" else None
            certain = False  # the rest of this chain is reached only when this rule does not match
        elif target in table.chains:
            decided = _walk_iptables(walk, save, target, sure, depth + 1)
            if decided is not None and sure:
                return decided
            if rule.goto and sure:
                return None
    return None


# ------------------------------------------------------------------ nftables


@dataclass(frozen=True)
class NftChain:
    """One chain of `nft -j list ruleset`: its table, hook and priority (base chains) and rules."""

    family: str
    table: str
    name: str
    type: str = ""
    hook: str = ""
    prio: int = 0
    rules: tuple[Sequence[Mapping[str, Any]], ...] = ()


@dataclass(frozen=True)
class NftRuleset:
    """The chains and named sets of a whole ruleset (only what the egress walk reads)."""

    chains: Mapping[tuple[str, str, str], NftChain]
    sets: Mapping[tuple[str, str, str], tuple[Any, ...]]


def parse_nft_ruleset(document: Mapping[str, Any]) -> NftRuleset:
    """Parse `nft -j list ruleset` output into chains (with their rules' expressions) and sets."""
    chains: dict[tuple[str, str, str], NftChain] = {}
    rules: dict[tuple[str, str, str], list[Sequence[Mapping[str, Any]]]] = {}
    sets: dict[tuple[str, str, str], tuple[Any, ...]] = {}
    for item in document.get("nftables", ()):
        if not isinstance(item, Mapping):
            continue
        if "chain" in item:
            c = item["chain"]
            key = (str(c.get("family")), str(c.get("table")), str(c.get("name")))
            prio = c.get("prio", 0)
            chains[key] = NftChain(*key, str(c.get("type", "")), str(c.get("hook", "")), prio if isinstance(prio, int) else 0)
        elif "rule" in item:
            r = item["rule"]
            key = (str(r.get("family")), str(r.get("table")), str(r.get("chain")))
            rules.setdefault(key, []).append(tuple(r.get("expr", ())))
        elif "set" in item or "map" in item:
            s = item.get("set") or item.get("map") or {}
            key = (str(s.get("family")), str(s.get("table")), str(s.get("name")))
            elements = s.get("elem", ())
            sets[key] = tuple(elements) if isinstance(elements, list) else ()
    full = {
        key: NftChain(c.family, c.table, c.name, c.type, c.hook, c.prio, tuple(rules.get(key, ()))) for key, c in chains.items()
    }
    return NftRuleset(full, sets)


def _nft_value(left: Any, flow: EgressFlow) -> Any:
    """What the left side of a match reads from the flow; None when the flow cannot tell."""
    if not isinstance(left, Mapping):
        return None
    if "payload" in left:
        p = left["payload"]
        field_name, proto = p.get("field"), p.get("protocol")
        if proto in ("ip", "ip6") and field_name in ("saddr", "daddr"):
            return flow.src if field_name == "saddr" else flow.dst
        if field_name == "dport" and proto in ("tcp", "udp", "sctp", "th"):
            if proto != "th" and proto != flow.protocol.lower():
                return -1  # another protocol's header: no port of this flow matches
            return flow.dport
        return None
    if "meta" in left:
        key = left["meta"].get("key")
        if key in ("oifname", "oif"):
            return flow.out_interface
        if key == "l4proto":
            return flow.protocol.lower()
        if key == "mark":
            return 0
        if key == "nfproto":
            return "ipv4"
        return None
    if "&" in left:
        operands = left["&"]
        if isinstance(operands, list) and len(operands) == 2:
            value, mask = _nft_value(operands[0], flow), operands[1]
            if isinstance(value, int) and isinstance(mask, int):
                return value & mask
        return None
    if "ct" in left:
        key = left["ct"].get("key")
        if key == "state":
            return ("new",)
        if key == "status":
            return ()  # not destination-NATed, not yet confirmed
        return None
    return None


def _nft_elements(right: Any, ruleset: NftRuleset, family: str, table: str) -> list[Any] | None:
    if isinstance(right, str) and right.startswith("@"):
        found = ruleset.sets.get((family, table, right[1:]))
        return list(found) if found is not None else None
    if isinstance(right, Mapping) and "set" in right:
        return list(right["set"])
    return [right]


def _element_matches(value: Any, element: Any) -> bool | None:
    if isinstance(element, Mapping) and "elem" in element:
        element = element["elem"].get("val")
    if isinstance(element, Mapping) and "prefix" in element:
        p = element["prefix"]
        return isinstance(value, str) and in_net(value, f"{p.get('addr')}/{p.get('len')}")
    if isinstance(element, Mapping) and "range" in element:
        low, high = element["range"]
        if isinstance(value, int) and isinstance(low, int) and isinstance(high, int):
            return low <= value <= high
        try:
            first, address, last = (ipaddress.IPv4Address(str(x)) for x in (low, value, high))
        except ValueError:
            return None
        return first <= address <= last
    if isinstance(value, tuple):
        return str(element) in value
    if isinstance(element, str) and isinstance(value, str) and element.endswith("*"):
        return value.startswith(element[:-1])
    if isinstance(element, str) and isinstance(value, str) and ("/" in element) and in_net(value, element):
        return True
    return bool(element == value) or str(element) == str(value)


def _nft_match(match: Mapping[str, Any], flow: EgressFlow, ruleset: NftRuleset, family: str, table: str) -> bool | None:
    value = _nft_value(match.get("left"), flow)
    if value is None:
        return None
    elements = _nft_elements(match.get("right"), ruleset, family, table)
    if elements is None:
        return None
    op = match.get("op", "==")
    if isinstance(value, tuple) and op in ("==", "in"):  # ct state new: a flag set
        hit = any(_element_matches(value, e) for e in elements)
        return hit
    results = [_element_matches(value, e) for e in elements]
    if any(r is None for r in results) and not any(results):
        return None
    hit = any(bool(r) for r in results)
    if op in ("==", "in", "eq"):
        return hit
    if op in ("!=", "ne"):
        return not hit
    return None


def render_nft_rule(expressions: Sequence[Mapping[str, Any]]) -> str:
    """A readable form of a rule's expressions (nft's JSON has no text form of a rule)."""
    parts = []
    for expr in expressions:
        for key, value in expr.items():
            if key == "match" and isinstance(value, Mapping):
                parts.append(
                    f"{_render_operand(value.get('left'))} {value.get('op', '==')} {_render_operand(value.get('right'))}"
                )
            elif key in ("counter",):
                continue
            elif value is None or value == {}:
                parts.append(key)
            elif key in ("jump", "goto") and isinstance(value, Mapping):
                parts.append(f"{key} {value.get('target')}")
            else:
                parts.append(f"{key} {json.dumps(value, sort_keys=True)}")
    return " ".join(parts)


def _render_operand(operand: Any) -> str:
    if isinstance(operand, Mapping):
        if "payload" in operand:
            return f"{operand['payload'].get('protocol')} {operand['payload'].get('field')}"
        if "meta" in operand:
            return f"meta {operand['meta'].get('key')}"
        if "prefix" in operand:
            return f"{operand['prefix'].get('addr')}/{operand['prefix'].get('len')}"
        if "set" in operand:
            return "{ " + ", ".join(_render_operand(e) for e in operand["set"]) + " }"
        if "&" in operand:
            return " & ".join(_render_operand(e) for e in operand["&"])
        if "ct" in operand:
            return f"ct {operand['ct'].get('key')}"
    return str(operand)


def _nft_target(expressions: Sequence[Mapping[str, Any]]) -> tuple[str, str | None]:
    """(what the rule does, the chain it jumps to): MASQUERADE, SNAT, ACCEPT, RETURN, JUMP, GOTO or ""."""
    for expr in expressions:
        if "masquerade" in expr:
            return ("MASQUERADE", None)
        if "snat" in expr:
            return ("SNAT", None)
        if "accept" in expr:
            return ("ACCEPT", None)
        if "return" in expr:
            return ("RETURN", None)
        for word in ("jump", "goto"):
            if word in expr and isinstance(expr[word], Mapping):
                return (word.upper(), str(expr[word].get("target")))
    return ("", None)


def _nft_rule_matches(expressions: Sequence[Mapping[str, Any]], flow: EgressFlow, ruleset: NftRuleset, chain: NftChain) -> str:
    verdict = YES
    for expr in expressions:
        if "match" in expr:
            matched = _nft_match(expr["match"], flow, ruleset, chain.family, chain.table)
            if matched is None:
                verdict = MAYBE
            elif not matched:
                return NO
        elif not {"counter", "masquerade", "snat", "accept", "return", "jump", "goto", "log", "comment", "mangle"} & set(expr):
            verdict = MAYBE  # a statement or match this walk does not read (xt, lookup maps, …)
    return verdict


def _walk_nft(walk: _Walk, ruleset: NftRuleset, chain: NftChain, certain: bool, depth: int) -> str | None:
    if depth > _MAX_DEPTH:
        return None
    table_name = f"{chain.family} {chain.table}"
    walk.chains.append(f"{table_name}/{chain.name}")
    for expressions in chain.rules:
        matched = _nft_rule_matches(expressions, walk.flow, ruleset, chain)
        if matched == NO:
            continue
        sure = certain and matched == YES
        target, jump = _nft_target(expressions)
        hit = EgressNatRule(table_name, chain.name, render_nft_rule(expressions), target, sure)
        if target in _TRANSLATING:
            if sure:
                walk.rules.append(hit)
                return TRANSLATED
            walk.possible.append(hit)
        elif target in ("ACCEPT", "RETURN"):
            if sure:
                walk.rules.append(hit)
                return UNTRANSLATED if target == "ACCEPT" else None
            certain = False
        elif jump is not None and (sub := ruleset.chains.get((chain.family, chain.table, jump))) is not None:
            decided = _walk_nft(walk, ruleset, sub, sure, depth + 1)
            if decided is not None and sure:
                return decided
            if target == "GOTO" and sure:
                return None
    return None


def _postrouting_chains(ruleset: NftRuleset, skip_tables: frozenset[str]) -> Iterator[NftChain]:
    chains = [
        c
        for c in ruleset.chains.values()
        if c.type == "nat"
        and c.hook == "postrouting"
        and c.family in ("ip", "inet")
        and not (c.family == "ip" and c.table in skip_tables)
    ]
    yield from sorted(chains, key=lambda c: (c.prio, c.family, c.table, c.name))


def nft_egress(ruleset: NftRuleset, flow: EgressFlow, skip_tables: frozenset[str] = frozenset()) -> tuple[_Walk, str | None]:
    """Walk every nat postrouting base chain by priority (pure): the first that translates decides."""
    walk = _Walk(flow)
    for chain in _postrouting_chains(ruleset, skip_tables):
        decided = _walk_nft(walk, ruleset, chain, True, 0)
        if decided == TRANSLATED:
            return walk, TRANSLATED
    return walk, None


# ------------------------------------------------------------------ both, on a node


def combine(
    iptables: _Walk | None, iptables_decided: str | None, nft: _Walk | None, nft_decided: str | None, out: str
) -> EgressNat:
    """One answer from the iptables and nftables walks: translated if either surely translates."""
    walks = [w for w in (iptables, nft) if w is not None]
    rules = tuple(r for w in walks for r in w.rules)
    possible = tuple(r for w in walks for r in w.possible)
    chains = tuple(c for w in walks for c in w.chains)
    if TRANSLATED in (iptables_decided, nft_decided):
        verdict = TRANSLATED
        rules = tuple(r for r in rules if r.target in _TRANSLATING) or rules
    else:
        verdict = UNKNOWN if possible else UNTRANSLATED
    return EgressNat(verdict, rules, possible, out, chains)


def walk_iptables(save: IptablesSave, flow: EgressFlow) -> tuple[_Walk, str | None]:
    """iptables' walk and its decision (TRANSLATED, UNTRANSLATED or None: fell off the end)."""
    walk = _Walk(flow)
    return walk, _walk_iptables(walk, save, "POSTROUTING", True, 0)


def sets_matched(save: IptablesSave) -> tuple[str, ...]:
    """The ipsets the nat table's rules match on (`-m set --match-set NAME …`), at most `_MAX_SETS`."""
    table = save.table("nat")
    names: dict[str, None] = {}
    for chain in table.chains.values() if table is not None else ():
        for line in chain.rule_lines:
            if "--match-set" not in line:
                continue
            for option in parse_rule(line).matches:
                if option.name == "--match-set" and option.values and _SET_NAME.fullmatch(option.values[0]):
                    names[option.values[0]] = None
    return tuple(names)[:_MAX_SETS]


def read_ipsets(netns: str, names: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The members of the named hash:net / hash:ip sets in `netns`, over netlink (read-only: `list`).
    A set that does not exist, or of another type, is left out (its matches stay unsettled)."""
    if not names:
        return {}

    def read() -> dict[str, tuple[str, ...]]:
        found: dict[str, tuple[str, ...]] = {}
        ipset = IPSet()
        try:
            for name in names:
                try:
                    messages = tuple(ipset.list(name))
                except NetlinkError:
                    continue
                kind, members = "", []
                for message in messages:
                    kind = message.get_attr("IPSET_ATTR_TYPENAME") or kind
                    adt = message.get_attr("IPSET_ATTR_ADT")
                    for entry in adt.get_attrs("IPSET_ATTR_DATA") if adt is not None else ():
                        ip = entry.get_attr("IPSET_ATTR_IP_FROM")
                        address = ip.get_attr("IPSET_ATTR_IPADDR_IPV4") if ip is not None else None
                        if address:
                            members.append(f"{address}/{entry.get_attr('IPSET_ATTR_CIDR') or 32}")
                if kind in ("hash:net", "hash:ip"):
                    found[name] = tuple(members)
        finally:
            ipset.close()
        return found

    return run_in_netns(netns, read)


def egress_nat(tables: KubeProxyTables, netns: str, flow: EgressFlow) -> EgressNat:
    """Read the node's iptables and nftables rules in `netns` and walk nat POSTROUTING for `flow`."""
    for address in (flow.src, flow.dst):
        ipaddress.ip_address(address)  # ValueError for a non-address
    version = ruleset_version(netns)
    out = flow.out_interface or ""
    try:
        save = tables.iptables_snapshot(netns, version)
    except NatStateError as exc:
        return EgressNat(UNKNOWN, out_interface=out, unreadable=str(exc))
    with contextlib.suppress(OSError, NetlinkError):  # no ipset support: the set matches stay unsettled
        flow = replace(flow, sets=read_ipsets(netns, sets_matched(save)))
    ipt_walk, ipt_decided = walk_iptables(save, flow)
    skip = frozenset(n for n in save.tables if n in _IPTABLES_NFT_TABLES) if save.backend == "nf_tables" else frozenset()

    def load() -> tuple[NftRuleset | None, bool]:
        done = tables.cache.run_tool(netns, ["nft", "-j", "list", "ruleset"])
        if done.returncode != 0:
            return (None, False)
        try:
            return (parse_nft_ruleset(json.loads(done.stdout)), False)
        except (json.JSONDecodeError, AttributeError, TypeError):
            return (None, False)

    try:
        ruleset = tables.cache.cached(version, "nft:ruleset", load)
    except (OSError, NatStateError):
        ruleset = None
    nft_walk, nft_decided = nft_egress(ruleset, flow, skip) if ruleset is not None else (None, None)
    return combine(ipt_walk, ipt_decided, nft_walk, nft_decided, out)
