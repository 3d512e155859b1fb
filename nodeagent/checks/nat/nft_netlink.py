"""nf_tables over netlink: parts of `table ip kube-proxy` read straight from the kernel, as `nft -j` JSON.

A cold lookup reads only what one service needs (the service-ips element, the service chain, its
anonymous vmap or dnat map, its endpoint chains, a shared @endpoints map) instead of having `nft`
dump the whole table: NFT_MSG_GETSETELEM and NFT_MSG_GETRULE filtered by chain, framed by the
agent's netlink codec. The decoders here turn the kernel's rule expressions back into the JSON
statements `nft -j` prints for the expressions kube-proxy writes, so that the walk of `nftables`
runs unchanged; anything else becomes a statement the walk does not know, rendered as JSON in the
evidence (and, if the service is not read otherwise, an unknown layout that the full dump decides).
"""

from __future__ import annotations

import errno
import logging
import re
import socket
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nodeagent.checks import ctnetlink, netlink
from nodeagent.checks.nat.ingress import NODEPORT, NODEPORT_IPS, nft_entry_nat
from nodeagent.checks.nat.model import ServiceNat
from nodeagent.checks.nat.nft_json import verdict_of
from nodeagent.checks.nat.nftables import NftMapElement, NftRuleset, nft_service_nat, rule_targets

log = logging.getLogger("kubereach.agent.nat")

_CHAIN_NAME = re.compile(r"^[A-Za-z0-9_.:/-]{1,256}$")
MAX_TARGETED_CHAINS = 64
"""Most chains a cold nftables lookup reads before it falls back to the full dump."""

NFTA_LIST_ELEM = 1
NFTA_RULE_EXPRESSIONS = 4
NFTA_EXPR_NAME, NFTA_EXPR_DATA = 1, 2
NFTA_DATA_VALUE, NFTA_DATA_VERDICT = 1, 2
NFTA_VERDICT_CODE, NFTA_VERDICT_CHAIN = 1, 2
NFTA_SET_ELEM_LIST_ELEMENTS = 3
NFTA_SET_ELEM_KEY, NFTA_SET_ELEM_DATA, NFTA_SET_ELEM_USERDATA = 1, 2, 6
NFTNL_UDATA_SET_ELEM_COMMENT = 0
_VERDICTS = {0: "drop", 1: "accept", -1: "continue", -2: "break", -3: "jump", -4: "goto", -5: "return"}
_CMP_OPS = {0: "==", 1: "!=", 2: "<", 3: "<=", 4: ">", 5: ">="}
_L4_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "ipv6-icmp", 132: "sctp"}
NFT_REG_VERDICT = 0
_FIB_RESULTS = {1: "oif", 2: "oifname", 3: "type"}
_FIB_FLAGS = ((1, "saddr"), (2, "daddr"), (4, "mark"), (8, "iif"), (16, "oif"), (32, "present"))
_ROUTE_TYPES = {1: "unicast", 2: "local", 3: "broadcast", 4: "anycast", 5: "multicast", 6: "blackhole", 7: "unreachable"}
"""rtnetlink route types as nft prints a `fib … type` result."""
_CT_KEYS = {0: "state", 1: "direction", 2: "status", 3: "mark"}
_META_KEYS = {3: "mark", 15: "nfproto", 16: "l4proto", 2: "protocol", 4: "iif", 5: "oif"}
# (base, offset, length) → nft's name for the header field; base 1 is the network header, 2 transport.
_PAYLOAD_FIELDS = {
    (1, 12, 4): ("ip", "saddr"),
    (1, 16, 4): ("ip", "daddr"),
    (1, 9, 1): ("ip", "protocol"),
    (2, 0, 2): ("th", "sport"),
    (2, 2, 2): ("th", "dport"),
}


netlink_attrs = netlink.attrs
_attr_map = netlink.attr_map
_string = netlink.string


def _be32(payload: memoryview) -> int:
    return int(struct.unpack(">I", payload[:4])[0])


def decode_data(payload: memoryview) -> bytes | tuple[str, str | None]:
    """NFTA_DATA_*: raw bytes for a value, (verdict, chain) for a verdict."""
    attrs = _attr_map(payload)
    if NFTA_DATA_VERDICT in attrs:
        verdict = _attr_map(attrs[NFTA_DATA_VERDICT])
        code = struct.unpack(">i", verdict[NFTA_VERDICT_CODE][:4])[0] if NFTA_VERDICT_CODE in verdict else 0
        chain = _string(verdict[NFTA_VERDICT_CHAIN]) if NFTA_VERDICT_CHAIN in verdict else None
        return (_VERDICTS.get(code, str(code)), chain)
    return bytes(attrs.get(NFTA_DATA_VALUE, b""))


def verdict_json(verdict: str, chain: str | None) -> dict[str, Any]:
    """A verdict as nft -j prints it: {"goto": {"target": C}}, {"drop": null}, …"""
    return {verdict: {"target": chain}} if chain else {verdict: None}


def _value_for(left: Any, raw: bytes) -> Any:
    """A register value shown the way nft shows the field it was compared with."""
    if isinstance(left, dict) and "payload" in left:
        field = left["payload"].get("field")
        if field in ("saddr", "daddr") and len(raw) == 4:
            return socket.inet_ntop(socket.AF_INET, raw)
        if field in ("sport", "dport") and len(raw) >= 2:
            return int.from_bytes(raw[:2], "big")
        if field == "protocol" and raw:
            return _L4_NAMES.get(raw[0], raw[0])
    if isinstance(left, dict) and left.get("meta", {}).get("key") == "l4proto" and raw:
        return _L4_NAMES.get(raw[0], raw[0])
    if isinstance(left, dict) and left.get("fib", {}).get("result") == "type" and len(raw) == 4:
        kind = int.from_bytes(raw, sys.byteorder)
        return _ROUTE_TYPES.get(kind, kind)
    return int.from_bytes(raw, sys.byteorder) if len(raw) <= 8 else raw.hex()


def left_prefix(load: Any) -> int:
    """The prefix length a register load compares (32 for a whole IPv4 address)."""
    return int(load["_prefix"]) if isinstance(load, dict) and "_prefix" in load else 32


def _prefix_len(mask: bytes) -> int | None:
    bits = int.from_bytes(mask, "big")
    width = len(mask) * 8
    length = bin(bits).count("1")
    return length if bits == ((1 << length) - 1) << (width - length) else None


@dataclass
class _Registers:
    """What each register holds while one rule's expressions are replayed."""

    loads: dict[int, Any]
    values: dict[int, bytes]


def decode_rule(expressions: memoryview, anonymous_map: Callable[[str], list[list[Any]]]) -> tuple[Any, ...]:
    """One rule's NFTA_RULE_EXPRESSIONS as nft -j statements.

    `anonymous_map(name)` returns the elements of an anonymous verdict map (`__map%d`) as
    [[key, verdict], …]; it is called for `… vmap { … }` statements.
    """
    regs = _Registers({}, {})
    statements: list[Any] = []
    for kind, elem in netlink_attrs(expressions, 0, len(expressions)):
        if kind != NFTA_LIST_ELEM:
            continue
        attrs = _attr_map(elem)
        name = _string(attrs.get(NFTA_EXPR_NAME, memoryview(b"")))
        data = _attr_map(attrs[NFTA_EXPR_DATA]) if NFTA_EXPR_DATA in attrs else {}
        statement = _decode_expression(name, data, regs, anonymous_map)
        if statement is not None:
            statements.append(statement)
    return tuple(_fold_l4_dependencies(statements))


def _fold_l4_dependencies(statements: list[Any]) -> list[Any]:
    """`meta l4proto tcp` followed by a `th dport` match is how the kernel holds `tcp dport`: fold it
    the way nft prints it."""
    folded: list[Any] = []
    for statement in statements:
        match = statement.get("match") if isinstance(statement, dict) else None
        left = match.get("left") if isinstance(match, dict) else None
        previous = folded[-1].get("match") if folded and isinstance(folded[-1], dict) else None
        if (
            isinstance(match, dict)
            and isinstance(left, dict)
            and left.get("payload", {}).get("protocol") == "th"
            and isinstance(previous, dict)
            and previous.get("op") == "=="
            and previous.get("left") == {"meta": {"key": "l4proto"}}
            and previous.get("right") in ("tcp", "udp", "sctp")
        ):
            folded[-1] = {"match": {**match, "left": {"payload": {**left["payload"], "protocol": previous["right"]}}}}
            continue
        folded.append(statement)
    return folded


def _decode_expression(
    name: str, data: dict[int, memoryview], regs: _Registers, anonymous_map: Callable[[str], list[list[Any]]]
) -> Any:
    def u32(kind: int, default: int = 0) -> int:
        return _be32(data[kind]) if kind in data else default

    if name == "payload" and 1 in data:
        key = (u32(2), u32(3), u32(4))
        field = _PAYLOAD_FIELDS.get(key)
        if field is None and key[0] == 1 and key[1] in (12, 16) and 0 < key[2] < 4:
            # nft loads only the bytes a byte-aligned prefix needs (`ip saddr 10.244.0.0/16` → 2 bytes)
            address = {"payload": {"protocol": "ip", "field": "saddr" if key[1] == 12 else "daddr"}}
            regs.loads[u32(1)] = {"_prefix": key[2] * 8, "left": address}
            return None
        regs.loads[u32(1)] = (
            {"payload": {"protocol": field[0], "field": field[1]}}
            if field
            else {"payload": {"base": ("ll", "nh", "th")[key[0]] if key[0] < 3 else key[0], "offset": key[1], "len": key[2]}}
        )
        return None
    if name == "meta":
        key_name = _META_KEYS.get(u32(2), str(u32(2)))
        if 1 in data:
            regs.loads[u32(1)] = {"meta": {"key": key_name}}
            return None
        return {"mangle": {"key": {"meta": {"key": key_name}}, "value": regs.loads.get(u32(3))}}
    if name == "fib" and 1 in data:
        # `fib saddr type local` (kube-proxy's short-circuit of the node's own traffic)
        flags = [flag for bit, flag in _FIB_FLAGS if u32(3) & bit]
        regs.loads[u32(1)] = {"fib": {"result": _FIB_RESULTS.get(u32(2), str(u32(2))), "flags": flags}}
        return None
    if name == "numgen":
        regs.loads[u32(1)] = {"numgen": {"mode": "random" if u32(3) == 1 else "inc", "mod": u32(2), "offset": u32(4)}}
        return None
    if name == "bitwise":
        left = regs.loads.get(u32(1))
        mask = decode_data(data[4]) if 4 in data else b""
        xor = decode_data(data[5]) if 5 in data else b""
        plen = _prefix_len(mask) if isinstance(mask, bytes) and mask else None
        if plen is not None and isinstance(xor, bytes) and not any(xor):
            loaded = left["left"] if isinstance(left, dict) and "_prefix" in left else left
            regs.loads[u32(2)] = {"_prefix": plen, "left": loaded}
        else:
            regs.loads[u32(2)] = {"&": [left, mask.hex() if isinstance(mask, bytes) else mask]}
        return None
    if name == "cmp":
        left = regs.loads.get(u32(1))
        raw = decode_data(data[3]) if 3 in data else b""
        op = _CMP_OPS.get(u32(2), "==")
        if not isinstance(raw, bytes):
            return None
        if isinstance(left, dict) and "_prefix" in left:
            address = _value_for(left["left"], raw.ljust(4, b"\0")[:4])
            left, right = left["left"], address
            if left_prefix(regs.loads.get(u32(1))) < 32:
                right = {"prefix": {"addr": address, "len": left_prefix(regs.loads.get(u32(1)))}}
        else:
            right = _value_for(left, raw)
        return {"match": {"op": op, "left": left, "right": right}}
    if name == "immediate":
        value = decode_data(data[2]) if 2 in data else b""
        if isinstance(value, tuple):
            return verdict_json(*value)
        regs.values[u32(1)] = value
        return None
    if name == "lookup":
        set_name = _string(data[1]) if 1 in data else ""
        looked_up = regs.loads.get(u32(2))
        if 3 in data and u32(3) != NFT_REG_VERDICT:
            # a data map (`dnat ip to numgen random mod N map { 0 : IP . PORT }`): the value lands in
            # the destination register (the address) and the 32-bit register after it (the port)
            entries: Any = {"set": anonymous_map(set_name)} if set_name.startswith("__") else f"@{set_name}"
            if not set_name.startswith("__"):
                looked_up = _concatenation(regs, u32(2))
            regs.loads[u32(3)] = {"map": {"key": looked_up, "data": entries}}
            return None
        if 3 in data and set_name.startswith("__"):
            return {"vmap": {"key": looked_up, "data": {"set": anonymous_map(set_name)}}}
        if 3 in data:
            return {"vmap": {"key": looked_up, "data": f"@{set_name}"}}
        inverted = bool(u32(5) & 1)
        return {"match": {"op": "!=" if inverted else "==", "left": looked_up, "right": f"@{set_name}"}}
    if name == "dynset":
        return {"set": {"op": "update", "elem": regs.loads.get(u32(2)), "set": "@" + (_string(data[1]) if 1 in data else "")}}
    if name == "nat":
        addr = regs.values.get(u32(3), b"")
        port = regs.values.get(u32(5), b"")
        body: dict[str, Any] = {}
        mapped = regs.loads.get(u32(3))
        if isinstance(mapped, dict) and "map" in mapped:
            body["family"] = "ip"
            body["addr"] = mapped
        elif len(addr) == 4:
            body["addr"] = socket.inet_ntop(socket.AF_INET, addr)
        if len(port) >= 2:
            body["port"] = int.from_bytes(port[:2], "big")
        return {"dnat" if u32(1) == 1 else "snat": body}
    if name == "counter":
        return {
            "counter": {
                "packets": int.from_bytes(bytes(data.get(2, b"")), "big"),
                "bytes": int.from_bytes(bytes(data.get(1, b"")), "big"),
            }
        }
    if name == "ct":
        key_name = _CT_KEYS.get(u32(2), str(u32(2)))
        if 1 in data:
            regs.loads[u32(1)] = {"ct": {"key": key_name}}
            return None
        return {"mangle": {"key": {"ct": {"key": key_name}}, "value": regs.loads.get(u32(4))}}
    if name in ("reject", "masq"):
        return {"reject" if name == "reject" else "masquerade": None}
    return {name: None}


def _register32(reg: int) -> int:
    """A register number as a 32-bit register (NFT_REG_1..4 are 128 bits wide: NFT_REG32_00 is 8)."""
    return 8 + (reg - 1) * 4 if 1 <= reg <= 4 else reg


def _concatenation(regs: _Registers, first: int) -> Any:
    """The key a lookup reads from `first` on: the loads in consecutive 32-bit registers (`ip daddr .
    meta l4proto . th dport . ct mark` is four of them), as {"concat": […]} when there is more than one."""
    parts = [regs.loads.get(first)]
    reg = _register32(first) + 1
    while reg in regs.loads:
        parts.append(regs.loads[reg])
        reg += 1
    return parts[0] if len(parts) == 1 else {"concat": parts}


def key_decoder(key: Any) -> Callable[[bytes], tuple[str, ...] | None]:
    """Decode a named map's element keys laid out as `key` (the lookup's concatenation), one 32-bit
    register per part, into the strings nft -j prints (address, protocol name, port, integer)."""
    parts = key["concat"] if isinstance(key, dict) and "concat" in key else [key]

    def part(spec: Any, raw: bytes) -> str | None:
        payload = spec.get("payload", {}) if isinstance(spec, dict) else {}
        if payload.get("field") in ("daddr", "saddr"):
            return socket.inet_ntop(socket.AF_INET, raw)
        if payload.get("field") in ("dport", "sport"):
            return str(int.from_bytes(raw[:2], "big"))
        if spec == {"meta": {"key": "l4proto"}} or payload == {"protocol": "ip", "field": "protocol"}:
            return str(_L4_NAMES.get(raw[0], raw[0]))
        if isinstance(spec, dict) and ("numgen" in spec or spec.get("ct") == {"key": "mark"}):
            return str(int.from_bytes(raw, sys.byteorder))
        return None

    def decode(raw: bytes) -> tuple[str, ...] | None:
        if len(raw) != 4 * len(parts):
            return None
        decoded = tuple(part(spec, raw[4 * i : 4 * i + 4]) for i, spec in enumerate(parts))
        return None if any(d is None for d in decoded) else tuple(d for d in decoded if d is not None)

    return decode


def named_data_maps(rules: tuple[tuple[Any, ...], ...]) -> dict[str, Any]:
    """Named maps a chain's dnat statements look up (`… map @endpoints`), with the key each uses."""
    found: dict[str, Any] = {}
    for rule in rules:
        for expr in rule:
            addr = expr["dnat"].get("addr") if isinstance(expr, dict) and isinstance(expr.get("dnat"), dict) else None
            lookup = addr.get("map") if isinstance(addr, dict) else None
            if isinstance(lookup, dict) and isinstance(lookup.get("data"), str) and lookup["data"].startswith("@"):
                found[lookup["data"][1:]] = lookup.get("key")
    return found


def decode_set_elements(
    elements: memoryview, key_of: Callable[[bytes], Any]
) -> list[tuple[Any, bytes | tuple[str, str | None] | None, str | None]]:
    """NFTA_SET_ELEM_LIST_ELEMENTS as (key, data, comment) with keys decoded by `key_of`."""
    found: list[tuple[Any, bytes | tuple[str, str | None] | None, str | None]] = []
    for kind, elem in netlink_attrs(elements, 0, len(elements)):
        if kind != NFTA_LIST_ELEM:
            continue
        attrs = _attr_map(elem)
        if NFTA_SET_ELEM_KEY not in attrs:
            continue
        key = decode_data(attrs[NFTA_SET_ELEM_KEY])
        if not isinstance(key, bytes):
            continue
        value = decode_data(attrs[NFTA_SET_ELEM_DATA]) if NFTA_SET_ELEM_DATA in attrs else None
        found.append((key_of(key), value, _element_comment(attrs.get(NFTA_SET_ELEM_USERDATA))))
    return found


def _element_comment(userdata: memoryview | None) -> str | None:
    pos = 0
    raw = bytes(userdata or b"")
    while pos + 2 <= len(raw):
        kind, length = raw[pos], raw[pos + 1]
        if kind == NFTNL_UDATA_SET_ELEM_COMMENT:
            return raw[pos + 2 : pos + 2 + length].split(b"\0", 1)[0].decode(errors="replace")
        pos += 2 + length
    return None


def service_key(raw: bytes) -> tuple[str, ...] | None:
    """A `ipv4_addr . inet_proto . inet_service` key (each part padded to 4 bytes) as nft prints it."""
    if len(raw) != 12:
        return None
    return (socket.inet_ntop(socket.AF_INET, raw[0:4]), _L4_NAMES.get(raw[4], str(raw[4])), str(int.from_bytes(raw[8:10], "big")))


def port_key(raw: bytes) -> tuple[str, ...] | None:
    """An `inet_proto . inet_service` key (a NodePort map's; each part padded to 4 bytes) as nft prints it."""
    if len(raw) != 8:
        return None
    return (_L4_NAMES.get(raw[0], str(raw[0])), str(int.from_bytes(raw[4:6], "big")))


def address_key(raw: bytes) -> str | None:
    """An `ipv4_addr` set member (`nodeport-ips`)."""
    return socket.inet_ntop(socket.AF_INET, raw) if len(raw) == 4 else None


def data_json(raw: bytes) -> Any:
    """A data-map value as nft -j prints it: `IP . PORT` ({"concat": [ip, port]}) or an address."""
    if len(raw) == 8:  # ipv4_addr . inet_service, each padded to 4 bytes
        return {"concat": [socket.inet_ntop(socket.AF_INET, raw[:4]), int.from_bytes(raw[4:6], "big")]}
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw)
    return raw.hex()


def map_element(key: tuple[str, ...], data: bytes | tuple[str, str | None] | None, comment: str | None) -> NftMapElement:
    """A decoded verdict-map element as the walk's `NftMapElement`."""
    verdict, target = data if isinstance(data, tuple) else ("", None)
    return NftMapElement(key, comment, verdict, target)


def chain_targets(rules: tuple[tuple[Any, ...], ...]) -> list[str]:
    """Chains a chain's rules jump or go to, directly or through a verdict map, in order."""
    found: list[str] = []
    for rule in rules:
        found += [target for _kind, target in rule_targets(rule)]
        for expr in rule:
            if isinstance(expr, dict) and "vmap" in expr and isinstance(expr["vmap"].get("data"), dict):
                for _key, verdict in expr["vmap"]["data"].get("set", ()):
                    target = verdict_of(verdict)[1]
                    if target:
                        found.append(target)
    return found


NFT_MSG_GETRULE = 7
NFT_MSG_GETSETELEM = 13
NFTA_RULE_TABLE, NFTA_RULE_CHAIN = 1, 2
NFTA_SET_ELEM_LIST_TABLE, NFTA_SET_ELEM_LIST_SET = 1, 2
KUBE_PROXY_TABLE = "kube-proxy"


class _NftReader:
    """Reads parts of `table ip kube-proxy` over one NETLINK_NETFILTER socket."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def _dump(self, msg: int, payload: bytes, wanted: int) -> list[bytes]:
        """Send one dump request; return a copy of attribute `wanted` of every answer."""
        seq = netlink.next_seq()
        request = ctnetlink.netlink_message(
            (ctnetlink.NFNL_SUBSYS_NFTABLES << 8) | msg,
            netlink.NLM_F_REQUEST | netlink.NLM_F_DUMP,
            seq,
            ctnetlink.NFPROTO_IPV4,
            payload,
        )
        found: list[bytes] = []
        for buf, off, end, _kind in netlink.dump(self._sock, request, seq):
            for kind, value in netlink_attrs(buf, off + 20, end):
                if kind == wanted:
                    found.append(bytes(value))
        return found

    def elements(self, set_name: str) -> list[bytes]:
        payload = netlink.string_attr(NFTA_SET_ELEM_LIST_TABLE, KUBE_PROXY_TABLE) + netlink.string_attr(
            NFTA_SET_ELEM_LIST_SET, set_name
        )
        return self._dump(NFT_MSG_GETSETELEM, payload, NFTA_SET_ELEM_LIST_ELEMENTS)

    def service_element(
        self, map_name: str, key: tuple[str, ...], key_of: Callable[[bytes], tuple[str, ...] | None] = service_key
    ) -> NftMapElement | None:
        for chunk in self.elements(map_name):
            for found, data, comment in decode_set_elements(memoryview(chunk), key_of):
                if found == key:
                    return map_element(key, data, comment)
        return None

    def members(self, set_name: str) -> tuple[str, ...] | None:
        """The addresses of an address set; None when the table has no such set."""
        try:
            chunks = self.elements(set_name)
        except ctnetlink.NetfilterNetlinkError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise
        found = (address_key(key) for chunk in chunks for key, _data, _comment in decode_set_elements(memoryview(chunk), bytes))
        return tuple(a for a in found if a is not None)

    def chains_from(self, starts: list[str]) -> dict[str, tuple[tuple[Any, ...], ...]] | None:
        """The chains reached from `starts` (jumps, gotos, verdict maps), read one by one; None past
        MAX_TARGETED_CHAINS (the full dump is cheaper then)."""
        chains: dict[str, tuple[tuple[Any, ...], ...]] = {}
        queue = list(starts)
        while queue:
            name = queue.pop(0)
            if name in chains:
                continue
            if len(chains) >= MAX_TARGETED_CHAINS:
                return None
            rules = self.chain(name)
            if rules is not None:
                chains[name] = rules
                queue += chain_targets(rules)
        return chains

    def anonymous_map(self, name: str) -> list[list[Any]]:
        entries: list[list[Any]] = []
        for chunk in self.elements(name):
            for key, data, _comment in decode_set_elements(memoryview(chunk), lambda raw: int.from_bytes(raw, sys.byteorder)):
                if isinstance(data, tuple):
                    entries.append([key, verdict_json(*data)])
                elif isinstance(data, bytes):
                    entries.append([key, data_json(data)])
        return sorted(entries, key=lambda kv: int(kv[0]))

    def data_map(self, name: str, key_of: Callable[[bytes], tuple[str, ...] | None]) -> dict[tuple[str, ...], Any]:
        """A named data map (a shared `@endpoints` map) as key parts → the value as nft -j prints it."""
        found: dict[tuple[str, ...], Any] = {}
        for chunk in self.elements(name):
            for key, data, _comment in decode_set_elements(memoryview(chunk), key_of):
                if key is not None and isinstance(data, bytes):
                    found[key] = data_json(data)
        return found

    def chain(self, name: str) -> tuple[tuple[Any, ...], ...] | None:
        """The chain's rules as nft -j statements; None when the chain does not exist."""
        payload = netlink.string_attr(NFTA_RULE_TABLE, KUBE_PROXY_TABLE) + netlink.string_attr(NFTA_RULE_CHAIN, name)
        try:
            raw_rules = self._dump(NFT_MSG_GETRULE, payload, NFTA_RULE_EXPRESSIONS)
        except ctnetlink.NetfilterNetlinkError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise
        if not raw_rules and not ctnetlink.nftables_chain_exists(
            self._sock, netlink.next_seq(), ctnetlink.NFPROTO_IPV4, KUBE_PROXY_TABLE, name
        ):
            return None
        return tuple(decode_rule(memoryview(raw), self.anonymous_map) for raw in raw_rules)


def service_nat_on_demand(netns: str, vip: str, port: int, protocol: str) -> ServiceNat | None:
    """The walk over only the parts of the table it needs, read over netlink; None when the service is
    not in service-ips / no-endpoint-services or the table is shaped otherwise (then the full dump decides)."""
    if ":" in vip:
        return None
    key = (vip, protocol.lower(), str(port))
    try:
        sock = ctnetlink.open_netfilter_socket(netns)
    except ctnetlink.NetfilterNetlinkError:
        return None
    try:
        reader = _NftReader(sock)
        for map_name in ("service-ips", "no-endpoint-services"):
            element = reader.service_element(map_name, key)
            if element is not None:
                break
        else:
            return None
        chains = reader.chains_from([element.target] if element.target else [])
        if chains is None:
            return None
        data_maps: dict[str, dict[tuple[str, ...], Any]] = {}
        for rules in chains.values():
            for name, key in named_data_maps(rules).items():
                if name not in data_maps and _CHAIN_NAME.match(name):
                    data_maps[name] = reader.data_map(name, key_decoder(key))
        partial = NftRuleset(chains=chains, maps={map_name: (element,)}, sets={}, data_maps=data_maps)
        found = nft_service_nat(partial, vip, port, protocol, vip_is_local=False)
        # A layout this reader does not know (or could not decode) may be one the full dump knows:
        # let the full dump decide.
        return None if found.unreadable else found
    except ctnetlink.NetfilterNetlinkError as exc:
        log.debug("netlink read of the kube-proxy table failed, using nft: %s", exc)
        return None
    finally:
        sock.close()


def entry_nat_on_demand(
    netns: str, entry: str, address: str, port: int, protocol: str, address_is_local: bool | None
) -> ServiceNat | None:
    """`nft_entry_nat` over only the parts of the table it needs, read over netlink: the dispatch and
    no-endpoint elements of the entry, `nodeport-ips`, and the chains from the dispatch on. None when
    neither element is there or the table is shaped otherwise (then the full dump decides)."""
    if ":" in address:
        return None
    proto = protocol.lower()
    key: tuple[str, ...]
    if entry == NODEPORT:
        maps, key, key_of = ("service-nodeports", "no-endpoint-nodeports"), (proto, str(port)), port_key
    else:
        maps, key, key_of = ("service-ips", "no-endpoint-services"), (address, proto, str(port)), service_key
    try:
        sock = ctnetlink.open_netfilter_socket(netns)
    except ctnetlink.NetfilterNetlinkError:
        return None
    try:
        reader = _NftReader(sock)
        elements = {name: reader.service_element(name, key, key_of) for name in maps}
        found = {name: element for name, element in elements.items() if element is not None}
        if not found:
            return None
        chains = reader.chains_from([e.target for e in found.values() if e.target])
        if chains is None:
            return None
        members = reader.members(NODEPORT_IPS) if entry == NODEPORT else None
        sets = {NODEPORT_IPS: members} if members is not None else {}
        partial = NftRuleset(chains=chains, maps={name: (element,) for name, element in found.items()}, sets=sets)
        answer = nft_entry_nat(partial, entry, address, port, protocol, address_is_local=address_is_local)
        return None if answer.unreadable else answer
    except ctnetlink.NetfilterNetlinkError as exc:
        log.debug("netlink read of the kube-proxy table failed, using nft: %s", exc)
        return None
    finally:
        sock.close()
