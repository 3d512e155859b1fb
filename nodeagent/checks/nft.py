"""kube-proxy's nftables mode: parse `nft -j list table ip kube-proxy` and walk one service (pure).

The table as pkg/proxy/nftables/proxier.go writes it: the `service-ips` verdict map
(`VIP . proto . port : goto service-…`), `no-endpoint-services` (`… : goto reject-chain` or drop),
`service-nodeports` / `no-endpoint-nodeports` for NodePorts, the `cluster-ips` set, per service port a
`service-HASH-ns/name/proto/port` chain that masquerades off-cluster sources, checks the session
affinity sets and ends in `numgen random mod N vmap { 0 : goto endpoint-…, … }`, and per endpoint an
`endpoint-HASH-…__IP/PORT` chain that ends in `dnat to IP:PORT`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nodeagent.checks.nat import MAX_EVIDENCE_RULES, NatEndpoint, ServiceNat


class NftRulesetError(ValueError):
    """The JSON is not what `nft -j list table` prints."""


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
    sets: Mapping[str, tuple[str, ...]]


def _key_part(value: Any) -> str:
    if isinstance(value, dict):
        if "prefix" in value:
            return f"{value['prefix']['addr']}/{value['prefix']['len']}"
        if "range" in value:
            return "-".join(str(v) for v in value["range"])
    return str(value)


def _verdict(data: Any) -> tuple[str, str | None]:
    if isinstance(data, dict):
        for kind in ("goto", "jump"):
            if kind in data:
                return (kind, data[kind].get("target"))
        for kind in ("drop", "accept", "return", "continue"):
            if kind in data:
                return (kind, None)
    return (str(data), None)


def _element(raw: Any) -> NftMapElement:
    key_raw, data = raw if isinstance(raw, list) and len(raw) == 2 else (raw, None)
    comment = None
    if isinstance(key_raw, dict) and "elem" in key_raw:
        comment = key_raw["elem"].get("comment")
        key_raw = key_raw["elem"].get("val")
    parts = key_raw["concat"] if isinstance(key_raw, dict) and "concat" in key_raw else [key_raw]
    verdict, target = _verdict(data) if data is not None else ("", None)
    return NftMapElement(tuple(_key_part(p) for p in parts), comment, verdict, target)


def parse_nft_ruleset(data: Mapping[str, Any]) -> NftRuleset:
    """Parse nft's JSON output (`{"nftables": [...]}`) of the kube-proxy table."""
    items = data.get("nftables")
    if not isinstance(items, list):
        raise NftRulesetError('no "nftables" list in the JSON')
    chains: dict[str, list[tuple[Any, ...]]] = {}
    maps: dict[str, tuple[NftMapElement, ...]] = {}
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
            maps[entry["name"]] = tuple(_element(e) for e in entry.get("elem", ()))
        elif "set" in item:
            entry = item["set"]
            sets[entry["name"]] = tuple(
                _key_part(e["elem"]["val"] if isinstance(e, dict) and "elem" in e else e) for e in entry.get("elem", ())
            )
    return NftRuleset(chains={k: tuple(v) for k, v in chains.items()}, maps=maps, sets=sets)


# ----------------------------------------------------------------------------------------------
# rendering expressions back to nft's language, for evidence
# ----------------------------------------------------------------------------------------------


def _render_value(value: Any) -> str:
    if isinstance(value, dict):
        if "payload" in value:
            return f"{value['payload'].get('protocol', '')} {value['payload'].get('field', '')}".strip()
        if "meta" in value:
            return f"meta {value['meta']['key']}"
        if "concat" in value:
            return " . ".join(_render_value(v) for v in value["concat"])
        if "prefix" in value:
            return f"{value['prefix']['addr']}/{value['prefix']['len']}"
        if "set" in value:
            return "{ " + ", ".join(_render_value(v) for v in value["set"]) + " }"
        if "numgen" in value:
            return f"numgen {value['numgen']['mode']} mod {value['numgen']['mod']}"
        if "ct" in value:
            return f"ct {value['ct']['key']}"
        if "&" in value:
            return " & ".join(_render_value(v) for v in value["&"])
    if isinstance(value, list):
        return " : ".join(_render_value(v) for v in value) if len(value) == 2 else str(value)
    return str(value)


def render_expr(expr: Any) -> str:
    """One nft JSON statement in nft's own syntax (close enough to read as evidence)."""
    if not isinstance(expr, dict) or len(expr) != 1:
        return json.dumps(expr, separators=(",", ":"))
    kind, body = next(iter(expr.items()))
    if kind == "match":
        op = body.get("op", "==")
        return f"{_render_value(body['left'])} {'' if op in ('==', 'in') else op + ' '}{_render_value(body['right'])}"
    if kind in ("jump", "goto"):
        return f"{kind} {body['target']}"
    if kind == "vmap":
        entries = (
            ", ".join(
                f"{_render_value(k)} : {' '.join(str(x) for x in _verdict(v) if x)}" for k, v in body["data"].get("set", ())
            )
            if isinstance(body["data"], dict)
            else str(body["data"])
        )
        return f"{_render_value(body['key'])} vmap {{ {entries} }}"
    if kind == "dnat":
        port = f":{body['port']}" if "port" in body else ""
        return f"dnat to {body.get('addr', '')}{port}"
    if kind in ("reject", "drop", "accept", "return", "masquerade", "counter"):
        return str(kind)
    if kind == "set":
        return f"{body.get('op', '')} {body.get('set', '')} {{ {_render_value(body.get('elem'))} }}"
    return json.dumps(expr, separators=(",", ":"))


def render_rule(chain: str, rule: tuple[Any, ...]) -> str:
    """A rule as `chain: stmt; stmt`."""
    return f"{chain}: " + " ".join(render_expr(e) for e in rule)


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


def _targets(rule: tuple[Any, ...]) -> list[tuple[str, str]]:
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
    affinity: bool = False
    no_endpoints_action: str | None = None
    service_chain: str | None = None

    def note(self, text: str) -> None:
        if len(self.evidence) < MAX_EVIDENCE_RULES:
            self.evidence.append(text)


def _endpoint(ruleset: NftRuleset, chain: str, walk: _Walk) -> tuple[str, int] | None:
    for rule in ruleset.chains.get(chain, ()):
        for expr in rule:
            if isinstance(expr, dict) and "dnat" in expr:
                walk.note(render_rule(chain, rule))
                dnat = expr["dnat"]
                return (str(dnat.get("addr", "")), int(dnat.get("port", 0)))
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


def _walk_chain(ruleset: NftRuleset, chain: str, walk: _Walk, depth: int = 0) -> None:
    if chain not in ruleset.chains or depth > 4:
        walk.note(f"# chain {chain} is referenced but missing")
        return
    if walk.service_chain is None or chain.startswith(("service-", "local-")):
        walk.service_chain = chain
    for rule in ruleset.chains[chain]:
        text = render_rule(chain, rule)
        targets = _targets(rule)
        if any(t == "mark-for-masquerade" for _, t in targets):
            walk.note(text)
            continue
        if any(isinstance(e, dict) and "match" in e and str(e["match"].get("right", "")).startswith("@affinity-") for e in rule):
            walk.affinity = True
            walk.note(text)
            continue
        vmap = next((e["vmap"] for e in rule if isinstance(e, dict) and "vmap" in e), None)
        if vmap is not None and isinstance(vmap.get("key"), dict) and "numgen" in vmap["key"]:
            walk.note(text)
            mod = int(vmap["key"]["numgen"].get("mod", 1)) or 1
            for _index, verdict in sorted(vmap["data"].get("set", ()), key=lambda kv: int(kv[0])):
                _kind, target = _verdict(verdict)
                if target is None:
                    continue
                found = _endpoint(ruleset, target, walk)
                if found is not None:
                    walk.endpoints.append(NatEndpoint(ip=found[0], port=found[1], chain=target, probability=1.0 / mod))
            return
        for _kind, target in targets:
            if target.startswith(("service-", "local-")):
                walk.note(text)
                _walk_chain(ruleset, target, walk, depth + 1)
                return
            if target.startswith("endpoint-"):
                walk.note(text)
                found = _endpoint(ruleset, target, walk)
                if found is not None:
                    walk.endpoints.append(NatEndpoint(ip=found[0], port=found[1], chain=target, probability=None))
                return
        if any(isinstance(e, dict) and ("reject" in e or "drop" in e) for e in rule):
            walk.note(text)
            walk.no_endpoints_action = "DROP" if any(isinstance(e, dict) and "drop" in e for e in rule) else "REJECT"
            return


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
        field = (left["payload"].get("protocol"), left["payload"].get("field"))
        if field in (("ip", "daddr"), ("ip6", "daddr")) and str(right) == vip:
            has_vip = True
        elif field == (proto, "dport") and str(right) == str(port):
            has_port = True
    return has_vip and has_port


def nft_service_nat(ruleset: NftRuleset, vip: str, port: int, protocol: str, vip_is_local: bool | None = None) -> ServiceNat:
    """Walk the kube-proxy nftables table for VIP:port/protocol."""
    proto = protocol.lower()
    walk = _Walk(evidence=[], endpoints=[])
    key = (vip, proto, str(port))
    for element in ruleset.maps.get("service-ips", ()):
        if element.key == key:
            walk.note(element.render("service-ips"))
            if element.target:
                _walk_chain(ruleset, element.target, walk)
            return _result(vip, port, protocol, True, element.comment, walk)
    for element in ruleset.maps.get("no-endpoint-services", ()):
        if element.key == key:
            walk.note(element.render("no-endpoint-services"))
            walk.no_endpoints_action = _action_of(ruleset, element)
            return _result(vip, port, protocol, True, element.comment, walk)
    if vip_is_local is not False:
        node_key = (proto, str(port))
        for element in ruleset.maps.get("service-nodeports", ()):
            if element.key == node_key:
                walk.note(element.render("service-nodeports"))
                if element.target:
                    _walk_chain(ruleset, element.target, walk)
                return _result(vip, port, protocol, True, element.comment, walk)
        for element in ruleset.maps.get("no-endpoint-nodeports", ()):
            if element.key == node_key:
                walk.note(element.render("no-endpoint-nodeports"))
                walk.no_endpoints_action = _action_of(ruleset, element)
                return _result(vip, port, protocol, True, element.comment, walk)
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
    for map_name in ("service-ips", "no-endpoint-services"):
        for element in ruleset.maps.get(map_name, ()):
            if len(element.key) != 3 or element.key in found or not element.key[2].isdigit():
                continue
            vip, proto, port = element.key
            found[element.key] = nft_service_nat(ruleset, vip, int(port), proto.upper(), vip_is_local=False)
    return tuple(found.values())
