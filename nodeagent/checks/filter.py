"""Would the node's netfilter let a flow through? Every base chain the flow crosses, every backend.

`filter_state` decides which hooks the flow's first packet crosses on the node from the namespace's
own addresses (to one of them: prerouting, input; from one of them: output, postrouting; otherwise
prerouting, forward, postrouting) and walks every base chain registered on them, lowest priority
first: iptables' raw, mangle and filter built-in chains (iptables-nft from `iptables-save`, and
iptables-legacy's tables when the namespace has any, which iptables-nft does not show), kube-proxy's
nftables checks, and every native nftables table of family ip or inet (`nft_filter`). An accept ends
only its own base chain; the first certain drop ends the walk.

Within an iptables chain the walk follows jumps into user chains (KUBE-FORWARD, KUBE-SERVICES, policy
chains …) the way the kernel would, and reports the DROP/REJECT rules that decide it. Matches that
cannot be evaluated from the flow alone (`-i`/`-o`, marks, ipsets, addrtype, source ports, …) make a
rule "possible": such DROP/REJECT rules are listed in `possible`, and such ACCEPT/jump rules do not
end the walk. A flow is taken to be the first packet of a new connection, so `--ctstate NEW` matches
and `--ctstate INVALID` / `RELATED,ESTABLISHED` do not.

When kube-proxy runs in nftables mode, its own filter checks are applied too (forward and output
hooks): a destination in `no-endpoint-services` is rejected, and a ClusterIP on a port that is not a
service port is rejected by `cluster-ips-check`.

A rule set that exists but cannot be read is named in `not_checked`, never taken as "no drop".
Sysctls are read on a thread inside the namespace: `net.ipv4.ip_forward` and, per interface, the
effective `rp_filter`, which is the maximum of conf/all and conf/IFACE.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

from pyroute2 import IPRoute

from nodeagent.checks.iptables_save import IptablesRule, IptablesSave
from nodeagent.checks.nat import KubeProxyTables, NatStateError, RulesetVersion, ruleset_version
from nodeagent.checks.nft_filter import (
    FILTER_HOOKS,
    NftChain,
    NftFlow,
    NftHit,
    NftTable,
    base_chain_verdict,
    filtering_tables,
)
from nodeagent.netns import run_in_netns

_IFACE = re.compile(r"^[A-Za-z0-9_.@:-]{1,15}$")
_PROTOCOLS = {"tcp": "6", "udp": "17", "icmp": "1", "sctp": "132"}
_MAX_DEPTH = 16
YES, NO, MAYBE = "yes", "no", "maybe"
FORWARDED = ("prerouting", "forward", "postrouting")
DELIVERED = ("prerouting", "input")
ORIGINATED = ("output", "postrouting")
_IPTABLES_BASE_CHAINS = (
    ("raw", "PREROUTING", "prerouting", -300),
    ("raw", "OUTPUT", "output", -300),
    ("mangle", "PREROUTING", "prerouting", -150),
    ("mangle", "INPUT", "input", -150),
    ("mangle", "FORWARD", "forward", -150),
    ("mangle", "OUTPUT", "output", -150),
    ("mangle", "POSTROUTING", "postrouting", -150),
    ("filter", "INPUT", "input", 0),
    ("filter", "FORWARD", "forward", 0),
    ("filter", "OUTPUT", "output", 0),
)
"""iptables' built-in chains that can drop, with their hook and the priority their table registers at."""
_KUBE_PROXY_PRIORITY = -110
"""kube-proxy's nftables filter chains (filter-forward, filter-output) sit just before the filter table."""
_IGNORED_OPTIONS = frozenset({"--comment"})


@dataclass(frozen=True)
class FilterRuleHit:
    """A rule (or a chain policy, written `-P CHAIN DROP` / `chain NAME (policy drop)`) that drops or
    rejects the flow, and where it sits: the backend, the table, the chain and the netfilter hook."""

    table: str
    chain: str
    rule: str
    target: str
    packets: int | None
    bytes: int | None
    backend: str = "iptables"
    """"iptables-nft", "iptables-legacy", "iptables" (the backend could not be told) or "nftables"."""
    hook: str = "forward"
    """The netfilter hook of the base chain the walk started from: prerouting, input, forward, output, postrouting."""
    handle: int | None = None
    """The nftables rule handle (`nft delete rule … handle N`); None for iptables rules and policies."""


@dataclass(frozen=True)
class FilterState:
    """The filtering verdict material for one flow on one node."""

    forward_policy: str
    drops: tuple[FilterRuleHit, ...]
    ip_forward: bool
    rp_filter: Mapping[str, int]
    possible: tuple[FilterRuleHit, ...] = field(default=())
    """DROP/REJECT rules on the path with matches that cannot be evaluated from the flow alone."""
    hooks: tuple[str, ...] = FORWARDED
    """The hooks the flow crosses on this node, in order (what was walked)."""
    local_source: bool = False
    local_destination: bool = False
    not_checked: tuple[str, ...] = ()
    """Rule sets that exist but could not be read (never read as "nothing drops")."""


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
    table: str
    flow: Flow
    backend: str
    hook: str
    drops: list[FilterRuleHit] = field(default_factory=list)
    possible: list[FilterRuleHit] = field(default_factory=list)


def _hit(walk: _Walk, rule: IptablesRule) -> FilterRuleHit:
    return FilterRuleHit(walk.table, rule.chain, rule.text, rule.target or "", rule.packets, rule.bytes, walk.backend, walk.hook)


def _walk(walk: _Walk, chain_name: str, certain: bool, depth: int) -> str | None:
    """Walk a chain; returns ACCEPT / DROP when the flow's fate is decided for sure, else None."""
    table = walk.save.table(walk.table)
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
                walk.drops.append(_hit(walk, rule))
                return "DROP"
            walk.possible.append(_hit(walk, rule))
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
            if sure and rule.goto:
                return None  # a goto does not come back: the calling chain ends with its callee
    return None


ChainRun = tuple[str | None, tuple[FilterRuleHit, ...], tuple[FilterRuleHit, ...]]
"""What one base chain does to a flow: "DROP" / "ACCEPT" / None (undecided), definite drops, possible drops."""


def iptables_chain_verdict(save: IptablesSave, table: str, chain: str, hook: str, backend: str, flow: Flow) -> ChainRun:
    """Walk one built-in chain of an iptables table (its policy applies when nothing decides)."""
    found = save.table(table)
    base = found.chains.get(chain) if found else None
    walk = _Walk(save, table, flow, backend, hook)
    decided = _walk(walk, chain, True, 0)
    if decided is None and base is not None and base.policy == "DROP":
        walk.drops.append(FilterRuleHit(table, chain, f"-P {chain} DROP", "DROP", base.packets, base.bytes, backend, hook))
        decided = "DROP"
    return (decided, tuple(walk.drops), tuple(walk.possible))


def forward_verdict(save: IptablesSave, flow: Flow) -> tuple[str, tuple[FilterRuleHit, ...], tuple[FilterRuleHit, ...]]:
    """(FORWARD policy, definite drops, possible drops) for `flow` in the filter table of parsed iptables-save output."""
    table = save.table("filter")
    forward = table.chains.get("FORWARD") if table else None
    policy = (forward.policy if forward else None) or "ACCEPT"
    _decided, drops, possible = iptables_chain_verdict(save, "filter", "FORWARD", "forward", _backend_of(save), flow)
    return (policy, drops, possible)


def _backend_of(save: IptablesSave) -> str:
    return {"nf_tables": "iptables-nft", "legacy": "iptables-legacy"}.get(save.backend or "", "iptables")


@dataclass(frozen=True)
class BaseChain:
    """A base chain registered on a hook: where it runs (hook, priority) and how it treats a flow."""

    hook: str
    priority: int
    run: Callable[[Flow], ChainRun]


def iptables_base_chains(save: IptablesSave, backend: str | None = None) -> list[BaseChain]:
    """Every built-in chain of the raw, mangle and filter tables present in `save`."""
    label = backend or _backend_of(save)
    found: list[BaseChain] = []
    for table, chain, hook, priority in _IPTABLES_BASE_CHAINS:
        parsed = save.table(table)
        if parsed is None or chain not in parsed.chains:
            continue
        found.append(BaseChain(hook, priority, partial(iptables_chain_verdict, save, table, chain, hook, label)))
    return found


def _nft_hit(hit: NftHit, hook: str) -> FilterRuleHit:
    return FilterRuleHit(hit.table.label, hit.chain, hit.rule, hit.target, hit.packets, hit.bytes, "nftables", hook, hit.handle)


def nft_base_chains(tables: Sequence[NftTable]) -> list[BaseChain]:
    """The filtering base chains of native nftables tables (families ip and inet) on every hook."""
    found: list[BaseChain] = []
    for table in filtering_tables(tables):
        for hook in FILTER_HOOKS:
            for chain in table.base_chains(hook):

                def run(flow: Flow, table: NftTable = table, chain: NftChain = chain, hook: str = hook) -> ChainRun:
                    verdict = base_chain_verdict(table, chain, NftFlow(flow.src, flow.dst, flow.protocol, flow.dport))
                    return (
                        verdict.decided.upper() if verdict.decided else None,
                        tuple(_nft_hit(h, hook) for h in verdict.drops),
                        tuple(_nft_hit(h, hook) for h in verdict.possible),
                    )

                found.append(BaseChain(hook, chain.priority, run))
    return found


def hooks_for(local_source: bool, local_destination: bool) -> tuple[str, ...]:
    """The hooks a flow's first packet crosses on a node, in order.

    Forwarded: prerouting, forward, postrouting. To an address of the node: prerouting, input. From
    the node: output, postrouting. From the node to itself: output, postrouting, input (over lo).
    """
    if local_source and local_destination:
        return (*ORIGINATED, "input")
    if local_source:
        return ORIGINATED
    if local_destination:
        return DELIVERED
    return FORWARDED


def walk_hooks(
    chains: Sequence[BaseChain], hooks: Sequence[str], flow: Flow
) -> tuple[tuple[FilterRuleHit, ...], tuple[FilterRuleHit, ...]]:
    """(definite drops, possible drops) of every base chain on `hooks`, hook by hook, lowest priority first.

    An accept ends only its own base chain: the next base chain on the hook still runs. A drop anywhere
    is final: nothing after it sees the packet.
    """
    possible: list[FilterRuleHit] = []
    for hook in hooks:
        for chain in sorted((c for c in chains if c.hook == hook), key=lambda c: c.priority):
            decided, drops, maybe = chain.run(flow)
            possible += maybe
            if decided == "DROP" and drops:
                return (drops, tuple(possible))
    return ((), tuple(possible))


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


def _local_addresses() -> frozenset[str]:
    """Every address configured on an interface of the current namespace (rtnetlink's address list).

    (Not a bind() test: a namespace whose loopback is down lets a socket bind to any address.)
    """
    found: set[str] = set()
    with IPRoute() as ipr:
        for msg in ipr.get_addr():
            address = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
            if address:
                found.add(str(ipaddress.ip_address(address)))
    return frozenset(found)


def _is_local(address: str, addresses: frozenset[str]) -> bool:
    parsed = ipaddress.ip_address(address)
    return parsed.is_loopback or str(parsed) in addresses


def _legacy_tables() -> tuple[str, ...]:
    """The iptables-legacy (x_tables) tables of the current namespace; () when none was ever loaded."""
    try:
        # thread-self: /proc/net follows the process's first thread, not the one that entered the namespace
        return tuple(Path("/proc/thread-self/net/ip_tables_names").read_text().split())
    except FileNotFoundError:
        return ()


@dataclass(frozen=True)
class _Namespace:
    ip_forward: str
    rp_filter: dict[str, int]
    local_source: bool
    local_destination: bool
    legacy_tables: tuple[str, ...]


def _read_namespace(src: str, dst: str, interfaces: Sequence[str]) -> _Namespace:
    ip_forward, rp_filter = _read_sysctls(interfaces)
    addresses = _local_addresses()
    return _Namespace(ip_forward, rp_filter, _is_local(src, addresses), _is_local(dst, addresses), _legacy_tables())


def _kube_proxy_chain(tables: KubeProxyTables, netns: str, version: RulesetVersion, hook: str) -> BaseChain:
    def run(flow: Flow) -> ChainRun:
        hits = tuple(replace(h, hook=hook) for h in _kube_proxy_nft_hits(tables, netns, version, flow))
        return ("DROP" if hits else None, hits, ())

    return BaseChain(hook, _KUBE_PROXY_PRIORITY, run)


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
                    "ip kube-proxy",
                    "service-endpoints-check",
                    element.render("no-endpoint-services"),
                    "REJECT",
                    None,
                    None,
                    "nftables",
                )
            ]
    if flow.dst in ruleset.sets.get("cluster-ips", ()) and not any(
        element.key == key for element in ruleset.maps.get("service-ips", ())
    ):
        return [
            FilterRuleHit("ip kube-proxy", "cluster-ips-check", "ip daddr @cluster-ips reject", "REJECT", None, None, "nftables")
        ]
    return []


def _legacy_chains(
    tables: KubeProxyTables, netns: str, version: RulesetVersion, present: Sequence[str]
) -> tuple[list[BaseChain], list[str]]:
    """iptables-legacy's chains when the namespace has legacy tables (they are invisible to iptables-nft)."""
    if not present:
        return ([], [])
    try:
        save = tables.iptables_legacy_snapshot(netns, version)
    except NatStateError as exc:
        return ([], [f"iptables-legacy tables ({', '.join(present)}) exist but could not be read: {exc}"])
    return (iptables_base_chains(save, "iptables-legacy"), [])


def _native_nft_chains(
    tables: KubeProxyTables, netns: str, version: RulesetVersion, iptables_nft: Sequence[str]
) -> tuple[list[BaseChain], list[str]]:
    """The base chains of every native nftables table of family ip or inet.

    Skipped: kube-proxy's own table (its checks are applied by `_kube_proxy_chain`) and the tables
    iptables-nft made (walked from iptables-save, which prints their xt matches readably).
    """
    try:
        listed = tables.nft_table_names(netns)
    except NatStateError as exc:
        return ([], [f"the nftables ruleset could not be listed: {exc}"])
    chains: list[BaseChain] = []
    missed: list[str] = []
    for family, name in listed:
        if family not in ("ip", "inet") or (family, name) == ("ip", "kube-proxy"):
            continue
        if family == "ip" and name in iptables_nft:
            continue
        try:
            parsed = tables.nft_filter_table(netns, version, family, name)
        except NatStateError as exc:
            missed.append(f"nftables table {family} {name} could not be read: {exc}")
            continue
        chains += nft_base_chains(parsed)
    return (chains, missed)


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
    """Filtering on the node in `netns` for the flow src -> dst:dport/protocol, on every hook it crosses.

    Whether the node forwards the flow, receives it or sends it is read from the namespace itself:
    an address that a socket can bind to there is the node's own. Every base chain on those hooks is
    walked: iptables' raw, mangle and filter tables (iptables-nft, and iptables-legacy when the
    namespace has legacy tables), kube-proxy's nftables checks, and every native nftables table of
    family ip or inet. `interfaces` names the interfaces whose effective rp_filter to report.
    """
    del netns_name
    for address in (src, dst):
        ipaddress.ip_address(address)  # ValueError for a non-address
    bad = [name for name in interfaces if not _IFACE.fullmatch(name) or name in (".", "..")]
    if bad:
        raise ValueError(f"not an interface name: {bad[0][:32]!r}")
    flow = Flow(src, dst, protocol, dport)
    version = ruleset_version(netns)
    ns = run_in_netns(netns, lambda: _read_namespace(src, dst, list(interfaces)))
    hooks = hooks_for(ns.local_source, ns.local_destination)
    save = tables.iptables_snapshot(netns, version)
    chains = iptables_base_chains(save)
    chains += [_kube_proxy_chain(tables, netns, version, hook) for hook in ("forward", "output")]
    missed: list[str] = []
    iptables_nft: tuple[str, ...] = tuple(save.tables) if save.backend == "nf_tables" else ()
    if save.backend != "legacy":
        legacy, why = _legacy_chains(tables, netns, version, ns.legacy_tables)
        chains += legacy
        missed += why
    native, why = _native_nft_chains(tables, netns, version, iptables_nft)
    chains += native
    missed += why
    drops, possible = walk_hooks(chains, hooks, flow)
    forward = save.table("filter")
    forward_chain = forward.chains.get("FORWARD") if forward else None
    policy = (forward_chain.policy if forward_chain else None) or "ACCEPT"
    return FilterState(
        forward_policy=policy,
        drops=drops,
        ip_forward=ns.ip_forward == "1",
        rp_filter=ns.rp_filter,
        possible=possible,
        hooks=hooks,
        local_source=ns.local_source,
        local_destination=ns.local_destination,
        not_checked=tuple(missed),
    )
