"""Would the node's firewall forward a flow? FORWARD policy, dropping rules, ip_forward, rp_filter.

`filter_state` walks the iptables filter table's FORWARD chain for one flow (src, dst, protocol,
dport), following jumps into user chains (KUBE-FORWARD, KUBE-SERVICES, policy chains …) the way the
kernel would, and reports the DROP/REJECT rules that decide it. Matches that cannot be evaluated
from the flow alone (`-i`/`-o`, marks, ipsets, addrtype, source ports, …) make a rule "possible":
such DROP/REJECT rules are listed in `possible`, and such ACCEPT/jump rules do not end the walk.
A flow is taken to be the first packet of a new connection, so `--ctstate NEW` matches and
`--ctstate INVALID` / `RELATED,ESTABLISHED` do not.

When kube-proxy runs in nftables mode, its own forward-hook checks are applied too: a destination in
`no-endpoint-services` is rejected, and a ClusterIP on a port that is not a service port is rejected
by `cluster-ips-check`.

Sysctls are read on a thread inside the namespace: `net.ipv4.ip_forward` and, per interface, the
effective `rp_filter`, which is the maximum of conf/all and conf/IFACE.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nodeagent.checks.iptables_save import IptablesRule, IptablesSave
from nodeagent.checks.nat import KubeProxyTables, RulesetVersion, ruleset_version
from nodeagent.netns import run_in_netns

_IFACE = re.compile(r"^[A-Za-z0-9_.@:-]{1,15}$")
_PROTOCOLS = {"tcp": "6", "udp": "17", "icmp": "1", "sctp": "132"}
_MAX_DEPTH = 16
YES, NO, MAYBE = "yes", "no", "maybe"
_IGNORED_OPTIONS = frozenset({"--comment"})


@dataclass(frozen=True)
class FilterRuleHit:
    """A rule (or a chain policy, written `-P CHAIN DROP`) that drops or rejects the flow."""

    table: str
    chain: str
    rule: str
    target: str
    packets: int | None
    bytes: int | None


@dataclass(frozen=True)
class FilterState:
    """The forwarding verdict material for one flow on one node."""

    forward_policy: str
    drops: tuple[FilterRuleHit, ...]
    ip_forward: bool
    rp_filter: Mapping[str, int]
    possible: tuple[FilterRuleHit, ...] = field(default=())
    """DROP/REJECT rules on the path with matches that cannot be evaluated from the flow alone."""


@dataclass(frozen=True)
class Flow:
    """The first packet of a connection."""

    src: str
    dst: str
    protocol: str
    dport: int | None


def in_net(address: str, spec: str) -> bool:
    """Whether `address` lies in the network `spec` (iptables' -s/-d text); False for either unreadable."""
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network(spec, strict=False)
    except ValueError:
        return False


def port_in(port: int, spec: str) -> bool:
    """Whether `port` is in iptables' port list `spec` ("80", "1000:2000", "80,443"); False when unreadable."""
    for part in spec.split(","):
        low, _, high = part.partition(":")
        if not low.isdigit() or (high and not high.isdigit()):
            return False
        if int(low) <= port <= int(high or low):
            return True
    return False


def rule_matches(rule: IptablesRule, flow: Flow) -> str:
    """ "yes", "no" or "maybe": does `rule` match the first packet of `flow`?"""
    verdict = YES
    for option in rule.matches:
        name = option.name
        if name in _IGNORED_OPTIONS:
            continue
        if name in ("-s", "--source", "-d", "--destination"):
            address = flow.src if name in ("-s", "--source") else flow.dst
            result = any(in_net(address, spec) for spec in option.value.split(","))
        elif name in ("-p", "--protocol"):
            wanted = option.value.lower()
            proto = flow.protocol.lower()
            result = wanted in ("all", "0") or wanted == proto or wanted == _PROTOCOLS.get(proto)
        elif name in ("--dport", "--destination-port", "--dports", "--destination-ports"):
            if flow.dport is None:
                verdict = MAYBE
                continue
            result = port_in(flow.dport, option.value)
        elif name in ("--ctstate", "--state"):
            result = "NEW" in option.value.split(",")
        else:
            verdict = MAYBE
            continue
        if result == option.negated:
            return NO
    return verdict


@dataclass
class _Walk:
    save: IptablesSave
    flow: Flow
    drops: list[FilterRuleHit] = field(default_factory=list)
    possible: list[FilterRuleHit] = field(default_factory=list)


def _hit(rule: IptablesRule) -> FilterRuleHit:
    return FilterRuleHit("filter", rule.chain, rule.text, rule.target or "", rule.packets, rule.bytes)


def _walk(walk: _Walk, chain_name: str, certain: bool, depth: int) -> str | None:
    """Walk a chain; returns ACCEPT / DROP when the flow's fate is decided for sure, else None."""
    table = walk.save.table("filter")
    chain = table.chains.get(chain_name) if table else None
    if chain is None or depth > _MAX_DEPTH:
        return None
    for rule in chain.rules():
        matched = rule_matches(rule, walk.flow)
        if matched == NO:
            continue
        sure = certain and matched == YES
        target = rule.target or ""
        if target in ("DROP", "REJECT"):
            if sure:
                walk.drops.append(_hit(rule))
                return "DROP"
            walk.possible.append(_hit(rule))
        elif target == "ACCEPT":
            if sure:
                return "ACCEPT"
        elif target == "RETURN":
            if sure:
                return None
        elif table is not None and target in table.chains:
            decided = _walk(walk, target, sure, depth + 1)
            if decided is not None and sure:
                return decided
    return None


def forward_verdict(save: IptablesSave, flow: Flow) -> tuple[str, tuple[FilterRuleHit, ...], tuple[FilterRuleHit, ...]]:
    """(FORWARD policy, definite drops, possible drops) for `flow` in parsed iptables-save output."""
    table = save.table("filter")
    forward = table.chains.get("FORWARD") if table else None
    policy = (forward.policy if forward else None) or "ACCEPT"
    walk = _Walk(save, flow)
    decided = _walk(walk, "FORWARD", True, 0)
    if decided is None and policy == "DROP" and forward is not None:
        walk.drops.append(FilterRuleHit("filter", "FORWARD", "-P FORWARD DROP", "DROP", forward.packets, forward.bytes))
    return (policy, tuple(walk.drops), tuple(walk.possible))


def _read_sysctls(interfaces: Sequence[str]) -> tuple[str, dict[str, int]]:
    base = Path("/proc/sys/net/ipv4")
    ip_forward = (base / "ip_forward").read_text().strip()
    every = int((base / "conf/all/rp_filter").read_text())
    found: dict[str, int] = {}
    for name in interfaces:
        path = base / "conf" / name / "rp_filter"
        try:
            found[name] = max(every, int(path.read_text()))
        except FileNotFoundError:
            continue
    return (ip_forward, found)


def _kube_proxy_nft_hits(tables: KubeProxyTables, netns: str, version: RulesetVersion, flow: Flow) -> list[FilterRuleHit]:
    if flow.dport is None or flow.protocol.lower() not in ("tcp", "udp", "sctp"):
        return []
    ruleset = tables.nft_kube_proxy_ruleset(netns, version)
    if ruleset is None:
        return []
    key = (flow.dst, flow.protocol.lower(), str(flow.dport))
    for element in ruleset.maps.get("no-endpoint-services", ()):
        if element.key == key:
            return [
                FilterRuleHit(
                    "ip kube-proxy", "service-endpoints-check", element.render("no-endpoint-services"), "REJECT", None, None
                )
            ]
    if flow.dst in ruleset.sets.get("cluster-ips", ()) and not any(
        element.key == key for element in ruleset.maps.get("service-ips", ())
    ):
        return [FilterRuleHit("ip kube-proxy", "cluster-ips-check", "ip daddr @cluster-ips reject", "REJECT", None, None)]
    return []


def filter_state(
    tables: KubeProxyTables,
    netns: str,
    netns_name: str | None,
    src: str,
    dst: str,
    protocol: str,
    dport: int | None,
    interfaces: Sequence[str],
) -> FilterState:
    """Forwarding state on the node in `netns` for the flow src -> dst:dport/protocol.

    `interfaces` names the interfaces whose effective rp_filter to report (unknown ones are left out).
    """
    del netns_name
    for address in (src, dst):
        ipaddress.ip_address(address)  # ValueError for a non-address
    bad = [name for name in interfaces if not _IFACE.fullmatch(name) or name in (".", "..")]
    if bad:
        raise ValueError(f"not an interface name: {bad[0][:32]!r}")
    flow = Flow(src, dst, protocol, dport)
    version = ruleset_version(netns)
    save = tables.iptables_snapshot(netns, version)
    policy, drops, possible = forward_verdict(save, flow)
    drops = (*drops, *_kube_proxy_nft_hits(tables, netns, version, flow))
    ip_forward, rp_filter = run_in_netns(netns, lambda: _read_sysctls(list(interfaces)))
    return FilterState(forward_policy=policy, drops=drops, ip_forward=ip_forward == "1", rp_filter=rp_filter, possible=possible)
