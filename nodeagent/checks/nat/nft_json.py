"""nft's JSON vocabulary shared by the nftables walk and the netlink reader: verdicts, and statements
rendered back into nft's own syntax for evidence (pure)."""

from __future__ import annotations

import json
from typing import Any


def verdict_of(data: Any) -> tuple[str, str | None]:
    """A verdict as nft -j prints it ({"goto": {"target": C}}, {"drop": null}, …) as (verdict, chain)."""
    if isinstance(data, dict):
        for kind in ("goto", "jump"):
            if kind in data:
                return (kind, data[kind].get("target"))
        for kind in ("drop", "accept", "return", "continue"):
            if kind in data:
                return (kind, None)
    return (str(data), None)


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
        if "range" in value and isinstance(value["range"], list):
            return "-".join(_render_value(v) for v in value["range"])
        if "set" in value:
            return "{ " + ", ".join(_render_value(v) for v in value["set"]) + " }"
        if "numgen" in value:
            return f"numgen {value['numgen']['mode']} mod {value['numgen']['mod']}"
        if "ct" in value:
            return f"ct {value['ct']['key']}"
        if "fib" in value and isinstance(value["fib"], dict):
            return f"fib {' . '.join(value['fib'].get('flags', ()))} {value['fib'].get('result', '')}".strip()
        for op in ("&", "|", "^"):
            if op in value:
                return f" {op} ".join(_render_value(v) for v in value[op])
        if "map" in value:
            return f"{_render_value(value['map'].get('key'))} map {_render_value(value['map'].get('data'))}"
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
                f"{_render_value(k)} : {' '.join(str(x) for x in verdict_of(v) if x)}" for k, v in body["data"].get("set", ())
            )
            if isinstance(body["data"], dict)
            else str(body["data"])
        )
        return f"{_render_value(body['key'])} vmap {{ {entries} }}"
    if kind in ("dnat", "snat") and isinstance(body, dict):
        port = f":{body['port']}" if "port" in body else ""
        family = f" {body['family']}" if "family" in body else ""
        return f"{kind}{family} to {_render_value(body.get('addr', ''))}{port}"
    if kind == "mangle" and isinstance(body, dict):
        return f"{_render_value(body.get('key'))} set {_render_value(body.get('value'))}"
    if kind in ("reject", "drop", "accept", "return", "masquerade", "counter"):
        return str(kind)
    if kind == "set":
        return f"{body.get('op', '')} {body.get('set', '')} {{ {_render_value(body.get('elem'))} }}"
    return json.dumps(expr, separators=(",", ":"))


def render_rule(chain: str, rule: tuple[Any, ...]) -> str:
    """A rule as `chain: stmt; stmt`."""
    return f"{chain}: " + " ".join(render_expr(e) for e in rule)
