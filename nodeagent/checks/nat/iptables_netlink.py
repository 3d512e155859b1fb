"""iptables-nft rules for one destination, read over nf_tables netlink and printed as `iptables -S` prints them.

`iptables -t nat -S KUBE-SERVICES` has iptables-nft fetch and translate every rule of the chain (10,000
services: as long as a quarter of `iptables-save`), and `iptables -S CHAIN N` costs the same. A cold
lookup needs only the rules for one VIP, so this module dumps the chain's rules straight from the
kernel (NFT_MSG_GETRULE filtered by table and chain, family ip), skips in C every rule whose bytes do
not contain the VIP, and decodes the few that do. The decoder knows exactly the expressions iptables-nft
emits for kube-proxy's dispatch rules, `-d VIP/32 -p tcp -m comment --comment "…" -m tcp --dport N
-j CHAIN` (meta l4proto, ip daddr, the `comment` match, th dport, counter, a jump or goto), and prints
them as iptables 1.8 does. A rule with the VIP's bytes in any other shape (a negation, a prefix, an xt
target such as REJECT, another match) makes the answer None: the caller reads the chain with `iptables
-S` as before, so nothing is ever guessed.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Callable

from nodeagent.checks import ctnetlink, netlink
from nodeagent.checks.nat.nft_netlink import (
    NFT_MSG_GETRULE,
    NFTA_DATA_VALUE,
    NFTA_DATA_VERDICT,
    NFTA_EXPR_DATA,
    NFTA_EXPR_NAME,
    NFTA_RULE_CHAIN,
    NFTA_RULE_EXPRESSIONS,
    NFTA_RULE_TABLE,
    NFTA_VERDICT_CHAIN,
    NFTA_VERDICT_CODE,
)

_BE32 = struct.Struct(">I")
_BE32_SIGNED = struct.Struct(">i")
NFT_META_L4PROTO = 16
NFT_CMP_EQ = 0
NFT_PAYLOAD_NETWORK_HEADER, NFT_PAYLOAD_TRANSPORT_HEADER = 1, 2
_PROTOCOLS = {6: "tcp", 17: "udp", 132: "sctp"}
_VERDICT_TARGETS = {1: "ACCEPT", 0: "DROP", -5: "RETURN"}
_NFT_JUMP, _NFT_GOTO = -3, -4
_NO_QUOTE = frozenset("_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_ESCAPED = frozenset("\"\\'")
MAX_DESTINATION_RULES = 64
"""Most rules for one destination decoded before the chain is left to `iptables -S` instead."""


class _NotRendered(Exception):
    """The rule has an expression this decoder does not print exactly as iptables does."""


def save_string(value: str) -> str:
    """A value as iptables' `xtables_save_string` prints it: bare when it is only [-_0-9A-Za-z], else quoted."""
    if value and all(c in _NO_QUOTE for c in value):
        return value
    return '"' + "".join(f"\\{c}" if c in _ESCAPED else c for c in value) + '"'


def _u32(payload: memoryview) -> int:
    return int(_BE32.unpack_from(payload)[0])


def _expressions(payload: memoryview) -> list[tuple[str, dict[int, memoryview]]]:
    found = []
    for _kind, element in netlink.attrs(payload, 0, len(payload)):
        parts = netlink.attr_map(element)
        name = netlink.string(parts.get(NFTA_EXPR_NAME, memoryview(b"")))
        found.append((name, netlink.attr_map(parts.get(NFTA_EXPR_DATA, memoryview(b"")))))
    return found


def render_rule(chain: str, expressions: memoryview) -> str:
    """One iptables-nft rule as `iptables -S` prints it; `_NotRendered` for anything but the known shape."""
    loaded: tuple[int, ...] | None = None
    register = -1
    source = destination = protocol = None
    matches: list[str] = []
    target: str | None = None
    for name, data in _expressions(expressions):
        if target is not None:
            raise _NotRendered("an expression after the verdict")
        if name == "meta":
            if _u32(data[2]) != NFT_META_L4PROTO:
                raise _NotRendered("meta other than l4proto")
            loaded, register = (NFT_META_L4PROTO,), _u32(data[1])
        elif name == "payload":
            loaded, register = (_u32(data[2]), _u32(data[3]), _u32(data[4])), _u32(data[1])
        elif name == "cmp":
            if _u32(data[2]) != NFT_CMP_EQ or loaded is None or _u32(data[1]) != register:
                raise _NotRendered("a negated or ordered comparison, or one of another register")
            value = bytes(netlink.attr_map(data[3])[NFTA_DATA_VALUE])
            if loaded == (NFT_META_L4PROTO,) and protocol is None and value[0] in _PROTOCOLS:
                protocol = _PROTOCOLS[value[0]]
            elif loaded == (NFT_PAYLOAD_NETWORK_HEADER, 16, 4) and destination is None:
                destination = socket.inet_ntop(socket.AF_INET, value[:4])
            elif loaded == (NFT_PAYLOAD_NETWORK_HEADER, 12, 4) and source is None:
                source = socket.inet_ntop(socket.AF_INET, value[:4])
            elif loaded == (NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2) and protocol is not None:
                matches.append(f"-m {protocol} --dport {int.from_bytes(value[:2], 'big')}")
            else:
                raise _NotRendered("a comparison the decoder does not print")
            loaded = None
        elif name == "match":
            if netlink.string(data[1]) != "comment" or _u32(data[2]) != 0:
                raise _NotRendered("an xt match other than comment")
            matches.append(f"-m comment --comment {save_string(netlink.string(data[3]))}")
        elif name == "counter":
            continue
        elif name == "immediate":
            verdict = netlink.attr_map(netlink.attr_map(data[2])[NFTA_DATA_VERDICT])
            code = int(_BE32_SIGNED.unpack_from(verdict[NFTA_VERDICT_CODE])[0])
            if code in (_NFT_JUMP, _NFT_GOTO):
                target = f"{'-j' if code == _NFT_JUMP else '-g'} {netlink.string(verdict[NFTA_VERDICT_CHAIN])}"
            elif code in _VERDICT_TARGETS:
                target = f"-j {_VERDICT_TARGETS[code]}"
            else:
                raise _NotRendered("a verdict iptables does not print")
        else:
            raise _NotRendered(f"expression {name}")
    if loaded is not None:
        raise _NotRendered("a load without a comparison")
    parts = [f"-A {chain}"]
    if source is not None:
        parts.append(f"-s {source}/32")
    if destination is not None:
        parts.append(f"-d {destination}/32")
    if protocol is not None:
        parts.append(f"-p {protocol}")
    parts += matches
    if target is not None:
        parts.append(target)
    return " ".join(parts)


def rules_for_destination(
    netns: str, table: str, chain: str, vip: str, enough: Callable[[str], bool] | None = None
) -> tuple[str, ...] | None:
    """The rules of iptables-nft chain `table`/`chain` whose `-d` is VIP/32, as `iptables -S` lines, in order.

    With `enough`, the dump stops at the first of those rules for which it is true (the kernel's rule
    dump restarts its walk of the chain at every receive, so the rules after it cost the most): the
    caller must need only the rules up to that one, as a walk that takes the first matching rule does.
    None when the chain does not exist over nf_tables, when a rule carrying the VIP's bytes has a
    shape this module does not print, or the VIP is not IPv4: the caller asks `iptables` then.
    """
    try:
        needle = socket.inet_pton(socket.AF_INET, vip)
    except OSError:
        return None
    payload = netlink.string_attr(NFTA_RULE_TABLE, table) + netlink.string_attr(NFTA_RULE_CHAIN, chain)
    seq = netlink.next_seq()
    request = ctnetlink.netlink_message(
        (ctnetlink.NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETRULE,
        netlink.NLM_F_REQUEST | netlink.NLM_F_DUMP,
        seq,
        ctnetlink.NFPROTO_IPV4,
        payload,
    )
    try:
        sock = ctnetlink.open_netfilter_socket(netns)
    except ctnetlink.NetfilterNetlinkError:
        return None
    found: list[str] = []
    candidates = 0
    try:
        for buf, off, end, _kind in netlink.dump(sock, request, seq):
            raw = buf.obj
            if not isinstance(raw, bytearray) or raw.find(needle, off, end) < 0:
                continue  # (the codec receives into a bytearray; searched in C, not decoded)
            candidates += 1
            if candidates > MAX_DESTINATION_RULES:
                return None
            for kind, value in netlink.attrs(buf, off + 20, end):
                if kind == NFTA_RULE_EXPRESSIONS:
                    line = render_rule(chain, value)
                    if f" -d {vip}/32 " in line:
                        found.append(line)
            if found and enough is not None and enough(found[-1]):
                return tuple(found)  # the rest of the dump is dropped with the socket
        if not found and not ctnetlink.nftables_chain_exists(sock, netlink.next_seq(), ctnetlink.NFPROTO_IPV4, table, chain):
            return None
    except _NotRendered:
        return None
    except ctnetlink.NetfilterNetlinkError as exc:
        if exc.errno != errno.ENOENT:
            raise
        return None
    except (KeyError, IndexError, struct.error, ValueError):
        return None  # a malformed or unexpected attribute layout: let iptables read it
    finally:
        sock.close()
    return tuple(found)
