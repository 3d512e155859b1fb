"""kube-proxy's nftables mode: parse `nft -j list table ip kube-proxy` and walk one service (pure).

The same walk runs over the parts of the table `nft_netlink` reads straight from the kernel.

The table as pkg/proxy/nftables/proxier.go writes it: the `service-ips` verdict map
(`VIP . proto . port : goto service-…`), `no-endpoint-services` (`… : goto reject-chain` or drop),
`service-nodeports` / `no-endpoint-nodeports` for NodePorts (`nodeport-ips` says which addresses take
them), the `cluster-ips` and `hairpin-connections` sets, and per service port a
`service-HASH-ns/name/proto/port` chain. What that chain does has changed between releases; the walk
tells the layouts apart by the rules themselves, never by a version:

- `endpoint-chains` (up to the mid 1.3x releases, and still for session affinity): the chain ends in
  `numgen random mod N vmap { 0 : goto endpoint-…, … }` and each `endpoint-HASH-…__IP/PORT` chain ends
  in `dnat to IP:PORT`;
- `numgen-dnat-map` (1.36): one `dnat ip to numgen random mod N map { 0 : IP . PORT, … }` rule;
- `single-dnat` (1.37, kubernetes PR #140723): a single-endpoint service's chain is a plain
  `dnat to IP:PORT`;
- `shared-endpoints-map` (kubernetes PR #140362, in review): shared `dispatch-N` chains
  `ct mark set numgen random mod N dnat ip to ip daddr . meta l4proto . th dport . ct mark map
  @endpoints`, one `@endpoints` map keyed by VIP . proto . port . slot for every service. The key is
  evaluated part by part, so the per-protocol variant seen in the PR's tests reads the same way.

Anything else that translates (or may translate) the service is reported as layout `unknown` with
the rule that was not understood: an unread layout is never "not programmed" or "no endpoints".
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from nodeagent.checks.nat.model import MAX_EVIDENCE_RULES, NatEndpoint, ServiceNat
from nodeagent.checks.nat.nft_json import render_rule, verdict_of


class NftRulesetError(ValueError):
    """The JSON is not what `nft -j list table` prints."""


LAYOUT_ENDPOINT_CHAINS = "endpoint-chains"
LAYOUT_NUMGEN_MAP = "numgen-dnat-map"
LAYOUT_SINGLE_DNAT = "single-dnat"
LAYOUT_SHARED_MAP = "shared-endpoints-map"
LAYOUT_UNKNOWN = "unknown"
NFT_LAYOUTS = (LAYOUT_ENDPOINT_CHAINS, LAYOUT_NUMGEN_MAP, LAYOUT_SINGLE_DNAT, LAYOUT_SHARED_MAP, LAYOUT_UNKNOWN)
UNREADABLE = "service NAT uses a layout kubereach does not read yet"


@dataclass(frozen=True)
class NftMapElement:
    """One element of a verdict map: its key parts, comment and verdict."""

    key: tuple[str, ...]
    comment: str | None
    verdict: str
    target: str | None

    def render(self, map_name: str) -> str:
        """The element as nft would show it, prefixed by its map's name."""
        verdict = f"{self.verdict} {self.target}" if self.target else self.verdict
        comment = f' comment "{self.comment}"' if self.comment else ""
        return f"{map_name}: {' . '.join(self.key)}{comment} : {verdict}"


@dataclass(frozen=True)
class NftRuleset:
    """The parts of the kube-proxy table a service walk needs."""

    chains: Mapping[str, tuple[tuple[Any, ...], ...]]
    """chain name -> its rules, each a tuple of nft JSON expressions."""
    maps: Mapping[str, tuple[NftMapElement, ...]]
    """verdict maps (`service-ips`, …)."""
    sets: Mapping[str, tuple[str, ...]]
    data_maps: Mapping[str, Mapping[tuple[str, ...], Any]] = field(default_factory=dict)
    """maps whose values are data (`endpoints`: VIP . proto . port . slot → IP . PORT), by key parts."""

    @cached_property
    def _by_key(self) -> dict[str, dict[tuple[str, ...], NftMapElement]]:
        index: dict[str, dict[tuple[str, ...], NftMapElement]] = {}
        for name, elements in self.maps.items():
            keyed = index.setdefault(name, {})
            for element in elements:
                keyed.setdefault(element.key, element)
        return index

    def element(self, map_name: str, key: tuple[str, ...]) -> NftMapElement | None:
        """The element of verdict map `map_name` with this key (indexed once per ruleset)."""
        return self._by_key.get(map_name, {}).get(key)


def _key_part(value: Any) -> str:
    if isinstance(value, dict):
        if "prefix" in value:
            return f"{value['prefix']['addr']}/{value['prefix']['len']}"
        if "range" in value:
            return "-".join(str(v) for v in value["range"])
    if isinstance(value, str) and value.startswith("0x"):
        try:
            return str(int(value, 16))  # a mark or integer printed in hex
        except ValueError:
            return value
    return str(value)


def _key_parts(key_raw: Any) -> tuple[str, ...]:
    if isinstance(key_raw, dict) and "elem" in key_raw:
        key_raw = key_raw["elem"].get("val")
    parts = key_raw["concat"] if isinstance(key_raw, dict) and "concat" in key_raw else [key_raw]
    return tuple(_key_part(p) for p in parts)


def _element(raw: Any) -> NftMapElement:
    key_raw, data = raw if isinstance(raw, list) and len(raw) == 2 else (raw, None)
    comment = None
    if isinstance(key_raw, dict) and "elem" in key_raw:
        comment = key_raw["elem"].get("comment")
        key_raw = key_raw["elem"].get("val")
    parts = key_raw["concat"] if isinstance(key_raw, dict) and "concat" in key_raw else [key_raw]
    verdict, target = verdict_of(data) if data is not None else ("", None)
    return NftMapElement(tuple(_key_part(p) for p in parts), comment, verdict, target)


def parse_nft_ruleset(data: Mapping[str, Any]) -> NftRuleset:
    """Parse nft's JSON output (`{"nftables": [...]}`) of the kube-proxy table."""
    items = data.get("nftables")
    if not isinstance(items, list):
        raise NftRulesetError('no "nftables" list in the JSON')
    chains: dict[str, list[tuple[Any, ...]]] = {}
    maps: dict[str, tuple[NftMapElement, ...]] = {}
    data_maps: dict[str, dict[tuple[str, ...], Any]] = {}
    sets: dict[str, tuple[str, ...]] = {}
    for item in items:
        if not isinstance(item, dict):
            continue
        if "rule" in item:
            rule = item["rule"]
            chains.setdefault(rule["chain"], []).append(tuple(rule.get("expr", ())))
        elif "chain" in item:
            chains.setdefault(item["chain"]["name"], [])
        elif "map" in item:
            entry = item["map"]
            if entry.get("map", "verdict") == "verdict":
                maps[entry["name"]] = tuple(_element(e) for e in entry.get("elem", ()))
            else:
                data_maps[entry["name"]] = {
                    _key_parts(e[0]): e[1] for e in entry.get("elem", ()) if isinstance(e, list) and len(e) == 2
                }
        elif "set" in item:
            entry = item["set"]
            sets[entry["name"]] = tuple(" . ".join(_key_parts(e)) for e in entry.get("elem", ()))
    return NftRuleset(chains={k: tuple(v) for k, v in chains.items()}, maps=maps, sets=sets, data_maps=data_maps)


# ----------------------------------------------------------------------------------------------
# the walk
# ----------------------------------------------------------------------------------------------


def _name_from_chain(chain: str) -> str | None:
    # service-HASH-ns/name/proto/port -> ns/name:port
    parts = chain.split("-", 2)
    if len(parts) < 3:
        return None
    pieces = parts[2].split("/")
    if len(pieces) != 4:
        return None
    namespace, name, _proto, port = pieces
    return f"{namespace}/{name}:{port}" if port else f"{namespace}/{name}"


def rule_targets(rule: tuple[Any, ...]) -> list[tuple[str, str]]:
    """(jump or goto, chain) of every jump and goto statement of a rule, in order."""
    found: list[tuple[str, str]] = []
    for expr in rule:
        if isinstance(expr, dict):
            for kind in ("goto", "jump"):
                if kind in expr:
                    found.append((kind, expr[kind]["target"]))
    return found


@dataclass
class _Walk:
    evidence: list[str]
    endpoints: list[NatEndpoint]
    vip: str = ""
    proto: str = ""
    port: int = 0
    affinity: bool = False
    no_endpoints_action: str | None = None
    service_chain: str | None = None
    layout: str = ""
    unreadable: str = ""
    odd: list[str] = field(default_factory=list)
    """Rules on the way with statements the walk does not know (they may translate the service)."""

    def note(self, text: str) -> None:
        if len(self.evidence) < MAX_EVIDENCE_RULES:
            self.evidence.append(text)

    def seen(self, layout: str) -> None:
        if self.layout != LAYOUT_UNKNOWN:
            self.layout = layout

    def unknown(self, what: str) -> None:
        """The rules translate the service in a way the walk does not read: say so, never guess."""
        self.layout = LAYOUT_UNKNOWN
        if not self.unreadable:
            self.unreadable = f"{UNREADABLE}: {what}"
        self.note(f"# not read: {what}")


# Statements that never decide where a service's packets go (kube-proxy's marks, counters, affinity
# updates, masquerade); any other statement the walk does not handle makes an unexplained service
# chain "unknown" rather than "no endpoints".
_INERT = frozenset({"match", "counter", "mangle", "set", "masquerade", "log", "limit", "notrack", "accept", "continue"})
_HANDLED = frozenset({"dnat", "vmap", "goto", "jump", "reject", "drop", "return"})


def _applies(rule: tuple[Any, ...], proto: str) -> bool:
    """False when the rule matches another L4 protocol (`meta l4proto udp` on a TCP walk)."""
    for expr in rule:
        match = expr.get("match") if isinstance(expr, dict) else None
        if not isinstance(match, dict) or match.get("op", "==") != "==" or not isinstance(match.get("right"), str):
            continue
        left = match.get("left")
        l4 = left in ({"meta": {"key": "l4proto"}}, {"payload": {"protocol": "ip", "field": "protocol"}})
        if l4 and proto and match["right"] != proto:
            return False
    return True


def _target_of(data: Any, default_port: int) -> tuple[str, int] | None:
    """A DNAT target as nft prints it: `IP . PORT` ({"concat": [ip, port]}) or a bare address."""
    if isinstance(data, dict) and "concat" in data and len(data["concat"]) == 2:
        ip, port = data["concat"]
        return (str(ip), int(port)) if str(port).isdigit() else None
    if isinstance(data, str) and data and not data.startswith("@"):
        return (data, default_port)
    return None


def _endpoint(ruleset: NftRuleset, chain: str, walk: _Walk) -> tuple[str, int] | None:
    for rule in ruleset.chains.get(chain, ()):
        for expr in rule:
            if isinstance(expr, dict) and "dnat" in expr:
                walk.note(render_rule(chain, rule))
                dnat = expr["dnat"]
                addr = dnat.get("addr")
                if not isinstance(addr, str):
                    walk.unknown(f"{render_rule(chain, rule)} (an endpoint chain whose dnat is not an address)")
                    return None
                return (addr, int(dnat.get("port", walk.port)))
    walk.note(f"# {chain} has no dnat rule" if chain in ruleset.chains else f"# {chain} is missing")
    return None


def _action_of(ruleset: NftRuleset, element: NftMapElement) -> str:
    if element.verdict == "drop":
        return "DROP"
    for rule in ruleset.chains.get(element.target or "", ()):
        for expr in rule:
            if isinstance(expr, dict) and "drop" in expr:
                return "DROP"
            if isinstance(expr, dict) and "reject" in expr:
                return "REJECT"
    return "REJECT"


def _numgen_mod(value: Any) -> int | None:
    if isinstance(value, dict) and "numgen" in value and value["numgen"].get("mode") in ("random", "inc"):
        return max(int(value["numgen"].get("mod", 1)), 1)
    return None


def _read_dnat(ruleset: NftRuleset, rule: tuple[Any, ...], text: str, dnat: Mapping[str, Any], chain: str, walk: _Walk) -> None:
    """The endpoints one service-chain `dnat` (rendered as `text`) sends to, in whichever form kube-proxy wrote it."""
    addr = dnat.get("addr")
    if isinstance(addr, str):  # single-dnat: one endpoint, no map
        walk.seen(LAYOUT_SINGLE_DNAT)
        walk.endpoints.append(NatEndpoint(ip=addr, port=int(dnat.get("port", walk.port)), chain=None, probability=1.0))
        return
    lookup = addr.get("map") if isinstance(addr, dict) else None
    if not isinstance(lookup, dict):
        walk.unknown(f"{text} (a dnat whose address is neither an address nor a map)")
        return
    key, data = lookup.get("key"), lookup.get("data")
    mod = _numgen_mod(key)
    if mod is not None and isinstance(data, dict) and isinstance(data.get("set"), list):
        walk.seen(LAYOUT_NUMGEN_MAP)
        slots: dict[int, tuple[str, int]] = {}
        for entry in data["set"]:
            target = _target_of(entry[1], walk.port) if isinstance(entry, list) and len(entry) == 2 else None
            if target is None or not str(entry[0]).isdigit():
                walk.unknown(f"{text} (map entry {json.dumps(entry)[:80]} is not `slot : IP . PORT`)")
                return
            slots[int(entry[0])] = target
        _add_slots(slots, mod, "the map", walk)
        return
    if isinstance(data, str) and data.startswith("@"):
        _read_shared_map(ruleset, rule, text, key, data[1:], chain, walk)
        return
    walk.unknown(f"{text} (a dnat map keyed by something other than numgen)")


def _add_slots(slots: Mapping[int, tuple[str, int]], mod: int, where: str, walk: _Walk) -> None:
    for slot in range(mod):
        if slot not in slots:
            walk.note(f"# numgen slot {slot} of {mod} has no element in {where}: packets given it are not translated")
            continue
        ip, port = slots[slot]
        walk.endpoints.append(NatEndpoint(ip=ip, port=port, chain=None, probability=1.0 / mod))  # no endpoint chain


def _read_shared_map(ruleset: NftRuleset, rule: tuple[Any, ...], text: str, key: Any, name: str, chain: str, walk: _Walk) -> None:
    """`dnat ip to ip daddr . meta l4proto . th dport . ct mark map @endpoints` (ct mark set from numgen
    in the same rule) or any other key built from the packet's destination and a numgen slot."""
    ct_mark_mod = None
    for expr in rule:
        mangle = expr.get("mangle") if isinstance(expr, dict) else None
        if isinstance(mangle, dict) and mangle.get("key") == {"ct": {"key": "mark"}}:
            ct_mark_mod = _numgen_mod(mangle.get("value"))
    parts = key["concat"] if isinstance(key, dict) and "concat" in key else [key]
    fixed: list[str | None] = []
    mod = 1
    for part in parts:
        payload = part.get("payload", {}) if isinstance(part, dict) else {}
        if payload.get("field") == "daddr" and payload.get("protocol") in ("ip", "ip6"):
            fixed.append(walk.vip)
        elif part == {"meta": {"key": "l4proto"}} or payload == {"protocol": "ip", "field": "protocol"}:
            fixed.append(walk.proto)
        elif payload.get("field") == "dport" and payload.get("protocol") in ("th", walk.proto):
            fixed.append(str(walk.port))
        elif _numgen_mod(part) is not None:
            mod = _numgen_mod(part) or 1
            fixed.append(None)
        elif part == {"ct": {"key": "mark"}} and ct_mark_mod is not None:
            mod = ct_mark_mod
            fixed.append(None)
        else:
            walk.unknown(f"{text} (the key part {json.dumps(part)[:80]} of @{name} cannot be worked out from the service)")
            return
    entries = ruleset.data_maps.get(name)
    if entries is None:
        walk.unknown(f"{text} (map @{name} was not read)")
        return
    walk.seen(LAYOUT_SHARED_MAP)
    slots: dict[int, tuple[str, int]] = {}
    for slot in range(mod):
        wanted = tuple(str(slot) if p is None else p for p in fixed)
        if wanted in entries:
            target = _target_of(entries[wanted], walk.port)
            if target is None:
                walk.unknown(f"{text} (element {' . '.join(wanted)} of @{name} is not `IP . PORT`)")
                return
            slots[slot] = target
            walk.note(f"{name}: {' . '.join(wanted)} : {target[0]} . {target[1]}")
    _add_slots(slots, mod, f"@{name}", walk)


def _walk_chain(ruleset: NftRuleset, chain: str, walk: _Walk, depth: int = 0) -> None:
    if chain not in ruleset.chains or depth > 4:
        walk.note(f"# chain {chain} is referenced but missing")
        return
    if walk.service_chain is None or chain.startswith(("service-", "local-")):
        walk.service_chain = chain
    for rule in ruleset.chains[chain]:
        if not _applies(rule, walk.proto):
            continue
        text = render_rule(chain, rule)
        targets = rule_targets(rule)
        if any(t == "mark-for-masquerade" for _, t in targets):
            walk.note(text)
            continue
        if any(isinstance(e, dict) and "match" in e and str(e["match"].get("right", "")).startswith("@affinity-") for e in rule):
            walk.affinity = True
            walk.note(text)
            continue
        dnat = next((e["dnat"] for e in rule if isinstance(e, dict) and isinstance(e.get("dnat"), dict)), None)
        if dnat is not None:
            walk.note(text)
            _read_dnat(ruleset, rule, text, dnat, chain, walk)
            return
        vmap = next((e["vmap"] for e in rule if isinstance(e, dict) and "vmap" in e), None)
        if vmap is not None:
            walk.note(text)
            mod = _numgen_mod(vmap.get("key"))
            if mod is None or not isinstance(vmap.get("data"), dict):
                walk.unknown(f"{text} (a verdict map kubereach does not read)")
                return
            walk.seen(LAYOUT_ENDPOINT_CHAINS)
            for _index, verdict in sorted(vmap["data"].get("set", ()), key=lambda kv: int(kv[0])):
                _kind, target = verdict_of(verdict)
                if target is None:
                    continue
                found = _endpoint(ruleset, target, walk)
                if found is not None:
                    walk.endpoints.append(NatEndpoint(ip=found[0], port=found[1], chain=target, probability=1.0 / mod))
            return
        for _kind, target in targets:
            walk.note(text)
            if target.startswith("endpoint-"):
                walk.seen(LAYOUT_ENDPOINT_CHAINS)
                found = _endpoint(ruleset, target, walk)
                if found is not None:
                    walk.endpoints.append(NatEndpoint(ip=found[0], port=found[1], chain=target, probability=None))
            elif target == "reject-chain":
                walk.no_endpoints_action = "REJECT"
            else:
                _walk_chain(ruleset, target, walk, depth + 1)
            return
        if any(isinstance(e, dict) and ("reject" in e or "drop" in e) for e in rule):
            walk.note(text)
            walk.no_endpoints_action = "DROP" if any(isinstance(e, dict) and "drop" in e for e in rule) else "REJECT"
            return
        if any(not isinstance(e, dict) or not (e.keys() & (_INERT | _HANDLED)) for e in rule):
            walk.odd.append(text)


def _walk_service(ruleset: NftRuleset, start: str, walk: _Walk) -> None:
    _walk_chain(ruleset, start, walk)
    if not walk.unreadable and not walk.endpoints and walk.no_endpoints_action is None and walk.odd:
        walk.unknown(f"{walk.odd[0]} (a statement kubereach does not know, and no endpoint was found)")


def _result(vip: str, port: int, protocol: str, programmed: bool, name: str | None, walk: _Walk) -> ServiceNat:
    return ServiceNat(
        mode="nftables",
        vip=vip,
        port=port,
        protocol=protocol.upper(),
        programmed=programmed,
        service_name=name or (_name_from_chain(walk.service_chain) if walk.service_chain else None),
        service_chain=walk.service_chain,
        endpoints=tuple(walk.endpoints),
        no_endpoints_action=walk.no_endpoints_action,
        session_affinity=walk.affinity,
        rules=tuple(walk.evidence),
        layout=walk.layout,
        unreadable=walk.unreadable,
    )


def _orphan_matches(rule: tuple[Any, ...], vip: str, port: int, proto: str) -> bool:
    has_vip = has_port = False
    for expr in rule:
        if not isinstance(expr, dict) or "match" not in expr:
            continue
        match = expr["match"]
        left, right, op = match.get("left"), match.get("right"), match.get("op", "==")
        if op != "==" or not isinstance(left, dict) or "payload" not in left:
            continue
        field_name = (left["payload"].get("protocol"), left["payload"].get("field"))
        if field_name in (("ip", "daddr"), ("ip6", "daddr")) and str(right) == vip:
            has_vip = True
        elif field_name == (proto, "dport") and str(right) == str(port):
            has_port = True
    return has_vip and has_port


DISPATCH_MAPS = ("service-ips", "no-endpoint-services")


def table_unreadable(ruleset: NftRuleset) -> str:
    """Why the table as a whole cannot be read ("" when it can): a kube-proxy table with chains but
    without the service dispatch maps is laid out in a way kubereach does not know."""
    if ruleset.chains and not any(name in ruleset.maps for name in DISPATCH_MAPS):
        return f"{UNREADABLE}: table ip kube-proxy has no service-ips or no-endpoint-services map"
    return ""


def nft_service_nat(ruleset: NftRuleset, vip: str, port: int, protocol: str, vip_is_local: bool | None = None) -> ServiceNat:
    """Walk the kube-proxy nftables table for VIP:port/protocol."""
    proto = protocol.lower()
    walk = _Walk(evidence=[], endpoints=[], vip=vip, proto=proto, port=port)
    key = (vip, proto, str(port))
    node_key = (proto, str(port))
    if "nodeport-ips" in ruleset.sets and vip_is_local is not False:
        # kube-proxy dispatches NodePorts only on the addresses of @nodeport-ips (`--nodeport-addresses`,
        # by default the node's primary IP), not on every local address
        vip_is_local = vip in ruleset.sets["nodeport-ips"]
    firewall = ruleset.element("firewall-ips", key)
    if firewall is not None:
        walk.note(firewall.render("firewall-ips") + "  # source ranges are checked before DNAT")
    for map_name, wanted, dispatches in (
        ("service-ips", key, True),
        ("no-endpoint-services", key, False),
        ("service-nodeports", node_key, True),
        ("no-endpoint-nodeports", node_key, False),
    ):
        if wanted is node_key and vip_is_local is False:
            break
        element = ruleset.element(map_name, wanted)
        if element is None:
            continue
        walk.note(element.render(map_name))
        if not dispatches:
            walk.no_endpoints_action = _action_of(ruleset, element)
        elif element.target:
            _walk_service(ruleset, element.target, walk)
        return _result(vip, port, protocol, True, element.comment, walk)
    problem = table_unreadable(ruleset)
    if problem:
        walk.layout, walk.unreadable = LAYOUT_UNKNOWN, problem
        walk.note(f"# not read: {problem}")
        return _result(vip, port, protocol, False, None, walk)
    if vip in ruleset.sets.get("cluster-ips", ()):
        walk.note(f"# {vip} is a ClusterIP without {proto}/{port}: cluster-ips-check rejects it")
    for chain, rules in ruleset.chains.items():
        if chain.startswith(("service-", "local-")) and f"/{proto}/" in chain:
            for rule in rules[:1]:
                if _orphan_matches(rule, vip, port, proto):
                    walk.service_chain = chain
                    walk.note(f"# no service-ips element for {vip} . {proto} . {port}; {chain} is not used")
                    walk.note(render_rule(chain, rule))
                    return _result(vip, port, protocol, False, None, walk)
    walk.note(f"# no service-ips element for {vip} . {proto} . {port}")
    return _result(vip, port, protocol, False, None, walk)


def nft_list_service_nat(ruleset: NftRuleset) -> tuple[ServiceNat, ...]:
    """Every VIP . proto . port in service-ips and no-endpoint-services."""
    found: dict[tuple[str, ...], ServiceNat] = {}
    for map_name in DISPATCH_MAPS:
        for element in ruleset.maps.get(map_name, ()):
            if len(element.key) != 3 or element.key in found or not element.key[2].isdigit():
                continue
            vip, proto, port = element.key
            found[element.key] = nft_service_nat(ruleset, vip, int(port), proto.upper(), vip_is_local=False)
    return tuple(found.values())
