"""kube-proxy's NAT for one service, read from the node's real rules (iptables, nftables or IPVS).

`service_nat(netns, name, vip, port, protocol)` answers: is VIP:port/proto in kube-proxy's service
dispatch, which chain handles it, which endpoints it DNATs to and with what probability, and whether
kube-proxy rejects or drops it for lack of endpoints. The raw rules that decided are returned as
evidence.

- iptables mode: `iptables-save -t nat` (and `-t filter`, where the REJECTs for services without
  endpoints live), walked KUBE-SERVICES → KUBE-SVC/KUBE-SVL/KUBE-EXT → KUBE-SEP.
- nftables mode: `nft -j list table ip kube-proxy`, walked service-ips → service-* → the endpoints in
  whichever layout kube-proxy wrote them (see `nodeagent.checks.nft`); a layout it does not read is
  answered as such (`layout` "unknown", `unreadable`), never as "not programmed".
- IPVS mode is detected from the kube-ipvs0 dummy link plus the generic netlink family "IPVS"
  (missing family: not IPVS), and the virtual server and its real servers are read with
  IPVS_CMD_GET_SERVICE / IPVS_CMD_GET_DEST. Untested on the development machine, whose kernel has
  no IPVS; every step fails soft into "not ipvs" / programmed=False.

Tools run in the node's namespace with fixed argument vectors (`nsenter --net=PATH iptables-save -c`).
Their parsed output is cached per namespace and reused while the nf_tables ruleset generation
id (NFT_MSG_GETGEN, one netlink round trip; iptables-nft changes it too) stays the same. The first
lookup under a new generation does not wait for a whole-table dump: it reads only the chains its walk
visits (`iptables -t T -S CHAIN`, or the map element and chains over nf_tables netlink), answers,
and starts the full dump on a background thread for the lookups that follow. Rules
written by iptables-legacy do not change that id, so snapshots taken from a legacy backend expire
after `LEGACY_SNAPSHOT_TTL` seconds instead. `tool_invocations()` counts the tool runs.
"""

from __future__ import annotations

import errno
import itertools
import json
import logging
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from nodeagent.checks import ctnetlink
from nodeagent.checks.iptables_save import (
    IptablesChain,
    IptablesRule,
    IptablesSave,
    IptablesSaveError,
    IptablesTable,
    parse_iptables_save,
    parse_rule,
)
from nodeagent.netns import run_in_netns, socket_in_netns

if TYPE_CHECKING:
    from nodeagent.checks.nft import NftMapElement, NftRuleset

T = TypeVar("T")
log = logging.getLogger("kubereach.agent.nat")

LEGACY_SNAPSHOT_TTL = 2.0
"""Seconds a snapshot is trusted when the generation id cannot see changes (iptables-legacy)."""
NO_GENERATION_TTL = 2.0
"""Seconds a snapshot is trusted when the generation id cannot be read at all."""
TOOL_TIMEOUT = 60.0
MAX_EVIDENCE_RULES = 40
PROTOCOLS = ("TCP", "UDP", "SCTP")
SERVICE_CHAIN_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-")
_SELF_NETNS = "/proc/self/ns/net"
_COMMENT_SUFFIXES = (" cluster IP", " external IP", " loadbalancer IP", " has no endpoints", " has no local endpoints")


class NatStateError(RuntimeError):
    """kube-proxy's rules could not be read (tool missing, failed or printed something unreadable)."""


@dataclass(frozen=True)
class NatEndpoint:
    """One DNAT destination of a service.

    `probability` is what the rule says: in iptables mode the chance of this endpoint *given that the
    earlier ones were not taken* (None for the last one, which takes the rest); in nftables mode the
    share of `numgen random mod N` (1/N each).
    """

    ip: str
    port: int
    chain: str | None
    probability: float | None


@dataclass(frozen=True)
class ServiceNat:
    """How kube-proxy handles VIP:port/protocol on this node."""

    mode: str
    vip: str
    port: int
    protocol: str
    programmed: bool
    service_name: str | None
    service_chain: str | None
    endpoints: tuple[NatEndpoint, ...]
    no_endpoints_action: str | None
    session_affinity: bool
    rules: tuple[str, ...]
    layout: str = ""
    """How the rules that decided are laid out (nftables: `NFT_LAYOUTS`); empty when nothing was walked."""
    unreadable: str = ""
    """Why the rules could not be read (a layout kubereach does not read yet); empty when they were.
    When set, `programmed`, `endpoints` and `no_endpoints_action` say nothing about the service."""


# --------------------------------------------------------------------------------------------------
# iptables mode: the walk over parsed iptables-save output (pure)
# --------------------------------------------------------------------------------------------------


def _service_name(comment: str | None) -> str | None:
    if comment is None:
        return None
    for suffix in _COMMENT_SUFFIXES:
        if comment.endswith(suffix):
            return comment[: -len(suffix)]
    return comment.split(" -> ")[0] if " -> " in comment else comment


def _dst_matches(rule: IptablesRule, vip: str) -> bool:
    option = rule.match("-d")
    return option is not None and not option.negated and option.value in (vip, f"{vip}/32", f"{vip}/128")


def _l4_matches(rule: IptablesRule, port: int, proto: str) -> bool:
    p = rule.match("-p")
    d = rule.match("--dport")
    return p is not None and not p.negated and p.value == proto and d is not None and not d.negated and d.value == str(port)


def _candidate_lines(lines: Iterable[str], vip: str) -> Iterator[IptablesRule]:
    needle = f" {vip}/"
    for line in lines:
        if needle in line:
            yield parse_rule(line)


def _endpoint_from_sep(save: IptablesSave, sep: str) -> tuple[str, int, IptablesRule] | None:
    nat = save.table("nat")
    chain = nat.chains.get(sep) if nat else None
    if chain is None:
        return None
    for rule in chain.rules():
        if rule.target == "DNAT":
            dest = rule.target_option("--to-destination")
            if dest is None:
                continue
            host, _, port = dest.value.rpartition(":")
            return (host.strip("[]"), int(port) if port.isdigit() else 0, rule)
    return None


@dataclass
class _Walk:
    evidence: list[str]
    endpoints: list[NatEndpoint]
    affinity: bool = False
    no_endpoints_action: str | None = None
    service_chain: str | None = None
    service_name: str | None = None

    def note(self, text: str) -> None:
        if len(self.evidence) < MAX_EVIDENCE_RULES:
            self.evidence.append(text)


def _walk_service_chain(save: IptablesSave, chain_name: str, walk: _Walk, depth: int = 0) -> None:
    nat = save.table("nat")
    chain = nat.chains.get(chain_name) if nat else None
    if chain is None or depth > 4:
        walk.note(f"# chain {chain_name} is referenced but missing from the nat table")
        return
    if walk.service_chain is None or chain_name.startswith(("KUBE-SVC-", "KUBE-SVL-")):
        walk.service_chain = chain_name
    for rule in chain.rules():
        target = rule.target or ""
        if walk.service_name is None:
            walk.service_name = _service_name(rule.comment)
        if target == "KUBE-MARK-MASQ":
            walk.note(rule.text)
            continue
        if target.startswith(("KUBE-SVC-", "KUBE-SVL-")) and chain_name.startswith(("KUBE-EXT-", "KUBE-FW-")):
            walk.note(rule.text)
            _walk_service_chain(save, target, walk, depth + 1)
            return
        if target.startswith("KUBE-EXT-") and chain_name.startswith("KUBE-FW-"):
            walk.note(rule.text)
            _walk_service_chain(save, target, walk, depth + 1)
            return
        if target in ("DROP", "REJECT"):
            walk.note(rule.text)
            walk.no_endpoints_action = target
            return
        if target.startswith("KUBE-SEP-"):
            walk.note(rule.text)
            recent = rule.match("--rcheck")
            if recent is not None and "recent" in rule.modules:
                walk.affinity = True
                continue
            found = _endpoint_from_sep(save, target)
            if found is None:
                walk.note(f"# endpoint chain {target} has no DNAT rule")
                continue
            ip, port, dnat = found
            walk.note(dnat.text)
            probability = rule.match("--probability")
            walk.endpoints.append(
                NatEndpoint(ip=ip, port=port, chain=target, probability=float(probability.value) if probability else None)
            )


def _reject_rule(save: IptablesSave, chain_name: str, vip: str | None, port: int, proto: str) -> IptablesRule | None:
    filt = save.table("filter")
    chain = filt.chains.get(chain_name) if filt else None
    if chain is None:
        return None
    rules = (parse_rule(line) for line in chain.lines_by_destination.get(vip, ())) if vip else chain.rules()
    for rule in rules:
        if rule.target not in ("REJECT", "DROP") or not _l4_matches(rule, port, proto):
            continue
        if vip is None or _dst_matches(rule, vip):
            return rule
    return None


def _from_dispatch(save: IptablesSave, dispatch: IptablesRule, vip: str, port: int, protocol: str) -> ServiceNat:
    walk = _Walk(evidence=[dispatch.text], endpoints=[], service_name=_service_name(dispatch.comment))
    _walk_service_chain(save, dispatch.target or "", walk)
    return _result("iptables", vip, port, protocol, True, walk)


def _from_reject(rejected: IptablesRule, vip: str, port: int, protocol: str) -> ServiceNat:
    walk = _Walk(
        evidence=[rejected.text], endpoints=[], service_name=_service_name(rejected.comment), no_endpoints_action=rejected.target
    )
    return _result("iptables", vip, port, protocol, True, walk)


def iptables_service_nat(save: IptablesSave, vip: str, port: int, protocol: str, vip_is_local: bool | None = None) -> ServiceNat:
    """Walk parsed iptables-save output (nat and filter tables) for VIP:port/protocol.

    `vip_is_local` says whether VIP is an address of the node (then KUBE-NODEPORTS applies, as
    kube-proxy's `-m addrtype --dst-type LOCAL` rule does); None means unknown, and NodePorts are
    looked at only when VIP is not a ClusterIP.
    """
    proto = protocol.lower()
    walk = _Walk(evidence=[], endpoints=[])
    nat = save.table("nat")
    services = nat.chains.get("KUBE-SERVICES") if nat else None
    dispatch: IptablesRule | None = None
    if services is not None:
        for rule in (parse_rule(line) for line in services.lines_by_destination.get(vip, ())):
            if (
                _dst_matches(rule, vip)
                and _l4_matches(rule, port, proto)
                and (rule.target or "").startswith(SERVICE_CHAIN_PREFIXES)
            ):
                dispatch = rule
                break
    if dispatch is not None:
        return _from_dispatch(save, dispatch, vip, port, protocol)

    rejected = _reject_rule(save, "KUBE-SERVICES", vip, port, proto)
    if rejected is not None:
        return _from_reject(rejected, vip, port, protocol)

    if vip_is_local is not False:
        nodeports = nat.chains.get("KUBE-NODEPORTS") if nat else None
        for rule in nodeports.rules() if nodeports else ():
            if _l4_matches(rule, port, proto) and (rule.target or "").startswith(SERVICE_CHAIN_PREFIXES):
                walk.note(rule.text)
                walk.service_name = _service_name(rule.comment)
                _walk_service_chain(save, rule.target or "", walk)
                return _result("iptables", vip, port, protocol, True, walk)
        rejected = _reject_rule(save, "KUBE-EXTERNAL-SERVICES", None, port, proto)
        if rejected is not None and rejected.match("--dst-type") is not None:
            walk.note(rejected.text)
            walk.service_name = _service_name(rejected.comment)
            walk.no_endpoints_action = rejected.target
            return _result("iptables", vip, port, protocol, True, walk)

    # Not in the dispatch: is there a service chain for this VIP that nothing jumps to any more?
    for chain in nat.chains.values() if nat else ():
        if not chain.name.startswith(("KUBE-SVC-", "KUBE-SVL-")):
            continue
        for rule in _candidate_lines(chain.rule_lines, vip):
            if _dst_matches(rule, vip) and _l4_matches(rule, port, proto):
                walk.service_chain = chain.name
                walk.service_name = _service_name(rule.comment)
                walk.note(f"# no KUBE-SERVICES rule for {vip}:{port}/{proto}; {chain.name} is not jumped to")
                walk.note(rule.text)
                return _result("iptables", vip, port, protocol, False, walk)
    walk.note(f"# no KUBE-SERVICES rule for {vip}:{port}/{proto}")
    return _result("iptables", vip, port, protocol, False, walk)


def _result(mode: str, vip: str, port: int, protocol: str, programmed: bool, walk: _Walk) -> ServiceNat:
    return ServiceNat(
        mode=mode,
        vip=vip,
        port=port,
        protocol=protocol.upper(),
        programmed=programmed,
        service_name=walk.service_name,
        service_chain=walk.service_chain,
        endpoints=tuple(walk.endpoints),
        no_endpoints_action=walk.no_endpoints_action,
        session_affinity=walk.affinity,
        rules=tuple(walk.evidence),
    )


def iptables_list_service_nat(save: IptablesSave) -> tuple[ServiceNat, ...]:
    """Every VIP:port/proto in nat KUBE-SERVICES, plus the filter-table REJECT/DROP ones."""
    found: dict[tuple[str, int, str], ServiceNat] = {}
    for table_name in ("nat", "filter"):
        table = save.table(table_name)
        chain = table.chains.get("KUBE-SERVICES") if table else None
        for rule in chain.rules() if chain else ():
            dst, proto, dport = rule.match("-d"), rule.match("-p"), rule.match("--dport")
            if dst is None or proto is None or dport is None or not dport.value.isdigit():
                continue
            key = (dst.value.split("/")[0], int(dport.value), proto.value.upper())
            if key in found:
                continue
            target = rule.target or ""
            if table_name == "nat" and target.startswith(SERVICE_CHAIN_PREFIXES):
                found[key] = _from_dispatch(save, rule, *key)
            elif table_name == "filter" and target in ("REJECT", "DROP"):
                found[key] = _from_reject(rule, *key)
    return tuple(found.values())


# --------------------------------------------------------------------------------------------------
# Running the tools, with a cache keyed by the nf_tables generation id
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Snapshot:
    generation: int | None
    taken_at: float
    legacy: bool
    value: Any


_cache: dict[tuple[tuple[int, ...], str], _Snapshot] = {}
_cache_lock = threading.Lock()
_counter_lock = threading.Lock()
_tool_runs = 0
_seq = itertools.count(1)


def tool_invocations() -> int:
    """How many times this process has run iptables-save / nft (for tests and metrics)."""
    return _tool_runs


def clear_cache() -> None:
    """Forget every cached snapshot and cancel the full loads still running in the background."""
    global _epoch  # noqa: PLW0603 - loads started before a clear must not fill the cleared cache
    with _cache_lock:
        _cache.clear()
        _epoch += 1
        running = list(_loading.values())
        _loading.clear()
    for loading in running:
        loading.cancel()


SO_NETNS_COOKIE = 71
MAX_CACHED_SNAPSHOTS = 256


@dataclass(frozen=True)
class RulesetVersion:
    """Which namespace and which nf_tables generation a snapshot belongs to.

    The namespace is named by its netns cookie (SO_NETNS_COOKIE, never reused while the machine is
    up); where the kernel has none, by the device and inode of its nsfs file, which can be reused
    after a namespace is gone, so such snapshots also expire by age.
    """

    namespace: tuple[int, ...]
    generation: int | None


def ruleset_version(netns: str) -> RulesetVersion:
    """The namespace identity and nf_tables generation id (None when it cannot be read)."""
    st = os.stat(netns)
    fallback = RulesetVersion((st.st_dev, st.st_ino), None)
    try:
        sock = ctnetlink.open_netfilter_socket(netns)
    except ctnetlink.NetfilterNetlinkError:
        return fallback
    try:
        try:
            cookie = int.from_bytes(sock.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8), "little")
            namespace: tuple[int, ...] = (cookie,)
        except OSError:
            namespace = fallback.namespace
        return RulesetVersion(namespace, ctnetlink.nftables_generation(sock, next(_seq)))
    except ctnetlink.NetfilterNetlinkError:
        return fallback
    finally:
        sock.close()


def ruleset_generation(netns: str) -> int | None:
    """The nf_tables generation id of the namespace, or None when it cannot be read."""
    return ruleset_version(netns).generation


def _run_tool(
    netns: str, argv: list[str], loading: _Loading | None = None, count: bool = True
) -> subprocess.CompletedProcess[str]:
    global _tool_runs  # noqa: PLW0603 - a process-wide counter is the point
    full = argv if netns == _SELF_NETNS else ["nsenter", f"--net={netns}", *argv]
    if count:
        with _counter_lock:
            _tool_runs += 1
    try:
        if loading is None:
            return subprocess.run(full, capture_output=True, text=True, timeout=TOOL_TIMEOUT, check=False)
        return loading.run(full)
    except FileNotFoundError as exc:
        raise NatStateError(
            f"`{full[0]}` is not installed on the node; install it (util-linux, iptables, nftables) in the agent image"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise NatStateError(
            f"`{' '.join(argv)}` took longer than {TOOL_TIMEOUT:.0f}s; the rule set is unusually large or the node is overloaded"
        ) from exc


class _LoadCancelled(Exception):
    """A background load was cancelled by `clear_cache`."""


@dataclass
class _Loading:
    """A full snapshot being loaded on a background thread; waiters block on `done`."""

    version: RulesetVersion
    epoch: int
    done: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    process: subprocess.Popen[str] | None = None
    cancelled: bool = False

    def run(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        """Run a tool that `cancel` can kill."""
        with self.lock:
            if self.cancelled:
                raise _LoadCancelled
            self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = self.process.communicate(timeout=TOOL_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            raise
        if self.cancelled:
            raise _LoadCancelled
        return subprocess.CompletedProcess(argv, self.process.returncode, out, err)

    def cancel(self) -> None:
        """Stop the load: kill its tool; its result is dropped."""
        with self.lock:
            self.cancelled = True
            if self.process is not None and self.process.poll() is None:
                self.process.kill()


_loading: dict[tuple[tuple[int, ...], str], _Loading] = {}
_epoch = 0


def _fresh(snap: _Snapshot, version: RulesetVersion, now: float) -> bool:
    if snap.legacy:
        return now - snap.taken_at < LEGACY_SNAPSHOT_TTL
    if version.generation is None or snap.generation is None or len(version.namespace) != 1:
        return now - snap.taken_at < NO_GENERATION_TTL and snap.generation == version.generation
    return snap.generation == version.generation


def _peek(version: RulesetVersion, kind: str) -> Any:
    """The cached value for `kind` when it is fresh for `version`, else None (never loads)."""
    with _cache_lock:
        snap = _cache.get((version.namespace, kind))
    return snap.value if snap is not None and _fresh(snap, version, time.monotonic()) else None


def _store(version: RulesetVersion, kind: str, value: Any, legacy: bool, taken_at: float) -> None:
    with _cache_lock:
        if len(_cache) >= MAX_CACHED_SNAPSHOTS:
            oldest = min(_cache, key=lambda k: _cache[k].taken_at)
            del _cache[oldest]
        _cache[(version.namespace, kind)] = _Snapshot(version.generation, taken_at, legacy, value)


def _loading_now(version: RulesetVersion, kind: str) -> bool:
    with _cache_lock:
        loading = _loading.get((version.namespace, kind))
    return loading is not None and loading.version == version and not loading.cancelled


def _wait_for_background(version: RulesetVersion, kind: str) -> None:
    """Block until a background load of `kind` for this very version finishes (no-op when none runs)."""
    with _cache_lock:
        loading = _loading.get((version.namespace, kind))
    if loading is not None and loading.version == version:
        loading.done.wait(TOOL_TIMEOUT)


def _load_in_background(
    version: RulesetVersion, kind: str, load: Callable[[_Loading], tuple[Any, bool]], tool_runs: int = 1
) -> None:
    """Start loading the full snapshot `kind` on a thread, unless it is cached or already loading.

    The tool runs are counted now, when the load is decided, so that `tool_invocations()` does not
    move later under a caller that is served from the cache this load fills.
    """
    global _tool_runs  # noqa: PLW0603 - see _run_tool
    key = (version.namespace, kind)
    with _cache_lock:
        current = _loading.get(key)
        if current is not None and current.version == version and not current.cancelled:
            return
        loading = _Loading(version, _epoch)
        _loading[key] = loading
    if _peek(version, kind) is not None:
        with _cache_lock:
            _loading.pop(key, None)
        loading.done.set()
        return
    with _counter_lock:
        _tool_runs += tool_runs

    def work() -> None:
        taken_at = time.monotonic()
        try:
            value, legacy = load(loading)
            with _cache_lock:
                keep = not loading.cancelled and loading.epoch == _epoch
            if keep:
                _store(version, kind, value, legacy, taken_at)
        except (_LoadCancelled, NatStateError, OSError, subprocess.SubprocessError) as exc:
            log.debug("background load of %s stopped: %s", kind, exc)  # the next lookup loads in the foreground
        finally:
            with _cache_lock:
                if _loading.get(key) is loading:
                    del _loading[key]
            loading.done.set()

    threading.Thread(target=work, name=f"nat-snapshot-{kind}", daemon=True).start()


def _cached(version: RulesetVersion, kind: str, load: Callable[[], tuple[T, bool]]) -> T:
    value = _peek(version, kind)
    if value is not None:
        return value  # type: ignore[no-any-return]
    _wait_for_background(version, kind)
    value = _peek(version, kind)
    if value is not None:
        return value  # type: ignore[no-any-return]
    taken_at = time.monotonic()
    loaded, legacy = load()
    _store(version, kind, loaded, legacy, taken_at)
    return loaded


def _load_iptables(netns: str, loading: _Loading | None = None) -> tuple[IptablesSave, bool]:
    # One `iptables-save -c` for every table: iptables-nft reads the whole ruleset whatever `-t` says,
    # so a second run for the filter table would cost as much as the first. Counters show whether a
    # DROP rule is being hit.
    done = _run_tool(netns, ["iptables-save", "-c"], loading, count=loading is None)
    if done.returncode != 0:
        raise NatStateError(f"iptables-save failed: {done.stderr.strip()[:200]}")
    try:
        parsed = parse_iptables_save(done.stdout)
    except IptablesSaveError as exc:
        raise NatStateError(f"cannot read iptables-save output: {exc}") from exc
    return (parsed, parsed.backend == "legacy")


def iptables_snapshot(netns: str, version: RulesetVersion | None = None) -> IptablesSave:
    """All iptables tables of the namespace (`iptables-save -c`), cached while the rules are unchanged."""
    if version is None:
        version = ruleset_version(netns)
    return _cached(version, "iptables", lambda: _load_iptables(netns))


def _probe_nftables(netns: str) -> tuple[str | None, bool]:
    """ "nftables" when table ip kube-proxy exists, "iptables" when iptables-nft's nat table has
    KUBE-SERVICES, else None; asked over netlink, without running a tool."""
    try:
        sock = ctnetlink.open_netfilter_socket(netns)
    except ctnetlink.NetfilterNetlinkError:
        return (None, False)
    try:
        tables = ctnetlink.nftables_tables(sock, next(_seq))
        if (ctnetlink.NFPROTO_IPV4, "kube-proxy") in tables:
            return ("nftables", False)
        if (ctnetlink.NFPROTO_IPV4, "nat") in tables and ctnetlink.nftables_chain_exists(
            sock, next(_seq), ctnetlink.NFPROTO_IPV4, "nat", "KUBE-SERVICES"
        ):
            return ("iptables", False)
        return (None, False)
    except ctnetlink.NetfilterNetlinkError:
        return (None, False)
    finally:
        sock.close()


def _load_nft_kube_proxy(netns: str, loading: _Loading | None = None) -> tuple[Any, bool]:
    from nodeagent.checks import nft  # nft builds ServiceNat from this module

    done = _run_tool(netns, ["nft", "-j", "list", "table", "ip", "kube-proxy"], loading, count=loading is None)
    if done.returncode != 0:
        raise NatStateError(f"nft list table ip kube-proxy failed: {done.stderr.strip()[:200]}")
    try:
        return (nft.parse_nft_ruleset(json.loads(done.stdout)), False)
    except (json.JSONDecodeError, nft.NftRulesetError) as exc:
        raise NatStateError(f"cannot read nft's kube-proxy table: {exc}") from exc


def nft_kube_proxy_ruleset(netns: str, version: RulesetVersion) -> NftRuleset | None:
    """The parsed `ip kube-proxy` nftables table of the namespace, None when there is none (cached)."""
    if _cached(version, "nft-probe", lambda: _probe_nftables(netns)) != "nftables":
        return None
    ruleset: NftRuleset = _cached(version, "nft:kube-proxy", lambda: _load_nft_kube_proxy(netns))
    return ruleset


# --------------------------------------------------------------------------------------------------
# Cold lookups: read only what one service needs, and load the full snapshot in the background
#
# A whole-table dump of 10,000 services costs seconds (`iptables-save`, `nft -j list table`). The first
# lookup under a new ruleset generation reads only the chains its walk visits (`iptables -t T -S
# CHAIN` per chain; the service-ips element, the service chain, its vmap and its endpoint chains over
# nf_tables netlink), answers, and then starts the full dump on a thread; the lookups that follow are
# served from that dump (iptables mode waits for it while it runs; nftables mode keeps using the
# netlink reads, which run no tool, until it has landed). Chains read one by one are used only when
# the ruleset generation did not change while they were read.
# --------------------------------------------------------------------------------------------------

_CHAIN_NAME = re.compile(r"^[A-Za-z0-9_.:/-]{1,256}$")
MAX_TARGETED_CHAINS = 64
"""Most chains a cold nftables lookup reads before it falls back to the full dump."""


class _OnDemandUnavailable(Exception):
    """A chain could not be read on its own (`iptables -S` refused); the full snapshot decides."""


class _ChainsOnDemand(Mapping[str, IptablesChain]):
    """One iptables table's chains, each read with `iptables -t TABLE -S CHAIN` when first asked for.

    Iterating needs every chain: that reads the whole snapshot (the walk does so only for rare cases,
    such as a VIP that is not in KUBE-SERVICES at all).
    """

    def __init__(self, netns: str, table: str, version: RulesetVersion) -> None:
        self._netns, self._table, self._version = netns, table, version
        self._read: dict[str, IptablesChain | None] = {}

    def __getitem__(self, name: str) -> IptablesChain:
        if name not in self._read:
            self._read[name] = _iptables_chain(self._netns, self._table, name)
        chain = self._read[name]
        if chain is None:
            raise KeyError(name)
        return chain

    def _all(self) -> Mapping[str, IptablesChain]:
        table = iptables_snapshot(self._netns, self._version).table(self._table)
        return table.chains if table is not None else {}

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


def _iptables_chain(netns: str, table: str, chain: str) -> IptablesChain | None:
    """One chain as `iptables -t TABLE -S CHAIN` prints it; None when the chain does not exist."""
    if not _CHAIN_NAME.match(chain) or chain.startswith("-"):
        return None
    done = _run_tool(netns, ["iptables", "-w", "5", "-t", table, "-S", chain])
    if done.returncode != 0:
        if "No chain" in done.stderr or "does not exist" in done.stderr:
            return None
        raise _OnDemandUnavailable(f"iptables -S {chain} failed: {done.stderr.strip()[:200]}")
    policy = None
    rules = []
    for line in done.stdout.splitlines():
        if line.startswith("-A "):
            rules.append(line)
        elif line.startswith("-P "):
            parts = line.split()
            policy = parts[2] if len(parts) > 2 else None
    return IptablesChain(chain, policy, None, None, tuple(rules))


def _unchanged_since(netns: str, version: RulesetVersion) -> bool:
    """Whether the ruleset generation is still `version`'s: chains read one by one are consistent
    only when nothing changed meanwhile (else the caller answers from a full snapshot)."""
    return version.generation is not None and ruleset_version(netns) == version


def _iptables_on_demand(netns: str, version: RulesetVersion) -> IptablesSave:
    tables = {name: IptablesTable(name, _ChainsOnDemand(netns, name, version)) for name in ("nat", "filter")}
    return IptablesSave(tables=tables, backend="nf_tables")


NFT_MSG_GETRULE = 7
NFT_MSG_GETSETELEM = 13
NFTA_RULE_TABLE, NFTA_RULE_CHAIN, NFTA_RULE_EXPRESSIONS = 1, 2, 4
NFTA_SET_ELEM_LIST_TABLE, NFTA_SET_ELEM_LIST_SET, NFTA_SET_ELEM_LIST_ELEMENTS = 1, 2, 3
KUBE_PROXY_TABLE = "kube-proxy"


class _NftReader:
    """Reads parts of `table ip kube-proxy` over one NETLINK_NETFILTER socket."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def _dump(self, msg: int, payload: bytes, wanted: int) -> list[bytes]:
        """Send one dump request; return a copy of attribute `wanted` of every answer."""
        seq = next(_seq)
        request = ctnetlink.netlink_message(
            (ctnetlink.NFNL_SUBSYS_NFTABLES << 8) | msg,
            ctnetlink.NLM_F_REQUEST | ctnetlink.NLM_F_DUMP,
            seq,
            ctnetlink.NFPROTO_IPV4,
            payload,
        )
        try:
            self._sock.send(request)
        except OSError as exc:
            raise ctnetlink.NetfilterNetlinkError(f"netlink send failed: {exc.strerror}", exc.errno or 0) from exc
        from nodeagent.checks import nft

        found: list[bytes] = []
        for buf, off, end, _kind in ctnetlink.receive_messages(self._sock, seq):
            for kind, value in nft.netlink_attrs(buf, off + 20, end):
                if kind == wanted:
                    found.append(bytes(value))
        return found

    def elements(self, set_name: str) -> list[bytes]:
        payload = _nl_string(NFTA_SET_ELEM_LIST_TABLE, KUBE_PROXY_TABLE) + _nl_string(NFTA_SET_ELEM_LIST_SET, set_name)
        return self._dump(NFT_MSG_GETSETELEM, payload, NFTA_SET_ELEM_LIST_ELEMENTS)

    def service_element(self, map_name: str, key: tuple[str, ...]) -> NftMapElement | None:
        from nodeagent.checks import nft

        for chunk in self.elements(map_name):
            for found, data, comment in nft.decode_set_elements(memoryview(chunk), nft.service_key):
                if found == key:
                    return nft.map_element(key, data, comment)
        return None

    def anonymous_map(self, name: str) -> list[list[Any]]:
        from nodeagent.checks import nft

        entries: list[list[Any]] = []
        for chunk in self.elements(name):
            for key, data, _comment in nft.decode_set_elements(memoryview(chunk), lambda raw: int.from_bytes(raw, sys.byteorder)):
                if isinstance(data, tuple):
                    entries.append([key, nft.verdict_json(*data)])
                elif isinstance(data, bytes):
                    entries.append([key, nft.data_json(data)])
        return sorted(entries, key=lambda kv: int(kv[0]))

    def chain(self, name: str) -> tuple[tuple[Any, ...], ...] | None:
        """The chain's rules as nft -j statements; None when the chain does not exist."""
        from nodeagent.checks import nft

        payload = _nl_string(NFTA_RULE_TABLE, KUBE_PROXY_TABLE) + _nl_string(NFTA_RULE_CHAIN, name)
        try:
            raw_rules = self._dump(NFT_MSG_GETRULE, payload, NFTA_RULE_EXPRESSIONS)
        except ctnetlink.NetfilterNetlinkError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise
        if not raw_rules and not ctnetlink.nftables_chain_exists(
            self._sock, next(_seq), ctnetlink.NFPROTO_IPV4, KUBE_PROXY_TABLE, name
        ):
            return None
        return tuple(nft.decode_rule(memoryview(raw), self.anonymous_map) for raw in raw_rules)


def _nl_string(kind: int, text: str) -> bytes:
    payload = text.encode() + b"\0"
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * ((4 - length % 4) % 4)


def _nft_service_nat_on_demand(netns: str, vip: str, port: int, protocol: str) -> ServiceNat | None:
    """The walk over only the parts of the table it needs, read over netlink; None when the service is
    not in service-ips / no-endpoint-services or the table is shaped otherwise (then the full dump decides)."""
    from nodeagent.checks import nft

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
        chains: dict[str, tuple[tuple[Any, ...], ...]] = {}
        queue = [element.target] if element.target else []
        while queue:
            name = queue.pop(0)
            if name in chains:
                continue
            if len(chains) >= MAX_TARGETED_CHAINS:
                return None
            rules = reader.chain(name)
            if rules is not None:
                chains[name] = rules
                queue += nft.chain_targets(rules)
        partial = nft.NftRuleset(chains=chains, maps={map_name: (element,)}, sets={})
        found = nft.nft_service_nat(partial, vip, port, protocol, vip_is_local=False)
        # Named data maps (a shared @endpoints map) are not read here, and a layout this reader does
        # not know may be one the full dump knows: let the full dump decide.
        return None if found.unreadable else found
    except ctnetlink.NetfilterNetlinkError as exc:
        log.debug("netlink read of the kube-proxy table failed, using nft: %s", exc)
        return None
    finally:
        sock.close()


# --------------------------------------------------------------------------------------------------
# IPVS detection (genetlink family "IPVS" + the kube-ipvs0 dummy link). Untested here: this kernel
# has no IPVS; a missing family answers "not ipvs".
# --------------------------------------------------------------------------------------------------

NETLINK_GENERIC = 16
GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2
IPVS_GENL_VERSION = 1
IPVS_CMD_GET_SERVICE = 4
IPVS_CMD_GET_DEST = 8
IPVS_CMD_ATTR_SERVICE = 1
IPVS_CMD_ATTR_DEST = 2
IPVS_SVC_ATTR_AF, IPVS_SVC_ATTR_PROTOCOL, IPVS_SVC_ATTR_ADDR, IPVS_SVC_ATTR_PORT = 1, 2, 3, 4
IPVS_SVC_ATTR_SCHED_NAME, IPVS_SVC_ATTR_FLAGS = 6, 7
IPVS_DEST_ATTR_ADDR, IPVS_DEST_ATTR_PORT, IPVS_DEST_ATTR_WEIGHT, IPVS_DEST_ATTR_ADDR_FAMILY = 1, 2, 4, 11
IP_VS_SVC_F_PERSISTENT = 0x1
_IP_PROTOCOLS = {"TCP": 6, "UDP": 17, "SCTP": 132}


def _genl_attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * ((4 - length % 4) % 4)


def _genl_request(sock: socket.socket, family_id: int, cmd: int, version: int, flags: int, payload: bytes) -> int:
    seq = next(_seq)
    body = struct.pack("=BBH", cmd, version, 0) + payload
    sock.send(struct.pack("=IHHII", 16 + len(body), family_id, flags, seq, 0) + body)
    return seq


def _genl_attrs(buf: memoryview, pos: int, end: int) -> dict[int, memoryview]:
    found: dict[int, memoryview] = {}
    while pos + 4 <= end:
        length, kind = struct.unpack_from("=HH", buf, pos)
        if length < 4:
            break
        found[kind & ctnetlink.NLA_TYPE_MASK] = buf[pos + 4 : pos + length]
        pos += (length + 3) & ~3
    return found


def _genetlink_family_id(sock: socket.socket, name: str) -> int | None:
    """The id of a generic netlink family, None when the kernel does not have it."""
    seq = _genl_request(
        sock,
        GENL_ID_CTRL,
        CTRL_CMD_GETFAMILY,
        1,
        ctnetlink.NLM_F_REQUEST,
        _genl_attr(CTRL_ATTR_FAMILY_NAME, name.encode() + b"\0"),
    )
    try:
        for buf, off, end, _kind in ctnetlink.receive_messages(sock, seq):
            family = _genl_attrs(buf, off + 20, end).get(CTRL_ATTR_FAMILY_ID)
            return int(struct.unpack_from("=H", family)[0]) if family is not None else None
    except ctnetlink.NetfilterNetlinkError:
        return None
    return None


def _open_genetlink(netns: str) -> socket.socket | None:
    try:
        sock = socket_in_netns(netns, socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_GENERIC)
    except OSError:
        return None
    sock.settimeout(5.0)
    sock.bind((0, 0))
    return sock


def _genetlink_family_exists(netns: str, name: str) -> bool:
    sock = _open_genetlink(netns)
    if sock is None:
        return False
    try:
        return _genetlink_family_id(sock, name) is not None
    except OSError:
        return False
    finally:
        sock.close()


def _inet_addr(buf: memoryview, family: int) -> str:
    if family == socket.AF_INET6:
        return socket.inet_ntop(socket.AF_INET6, bytes(buf[:16]))
    return socket.inet_ntop(socket.AF_INET, bytes(buf[:4]))


def ipvs_service_nat(netns: str, vip: str, port: int, protocol: str) -> ServiceNat:
    """The IPVS virtual server VIP:port/protocol and its real servers (IPVS_CMD_GET_SERVICE/GET_DEST).

    Untested here: the development kernel has no IPVS. Probabilities are weight / total weight.
    """
    family = socket.AF_INET6 if ":" in vip else socket.AF_INET
    packed = socket.inet_pton(family, vip)
    service = _genl_attr(
        IPVS_CMD_ATTR_SERVICE | ctnetlink.NLA_F_NESTED,
        b"".join(
            (
                _genl_attr(IPVS_SVC_ATTR_AF, struct.pack("=H", family)),
                _genl_attr(IPVS_SVC_ATTR_PROTOCOL, struct.pack("=H", _IP_PROTOCOLS[protocol.upper()])),
                _genl_attr(IPVS_SVC_ATTR_ADDR, packed.ljust(16, b"\0")),
                _genl_attr(IPVS_SVC_ATTR_PORT, struct.pack(">H", port)),
            )
        ),
    )
    walk = _Walk(evidence=[], endpoints=[])
    sock = _open_genetlink(netns)
    if sock is None:
        raise NatStateError("cannot open a generic netlink socket in the node's namespace")
    try:
        family_id = _genetlink_family_id(sock, "IPVS")
        if family_id is None:
            walk.note("# the kernel has no IPVS netlink family")
            return _result("ipvs", vip, port, protocol, False, walk)
        seq = _genl_request(sock, family_id, IPVS_CMD_GET_SERVICE, IPVS_GENL_VERSION, ctnetlink.NLM_F_REQUEST, service)
        scheduler = "?"
        try:
            for buf, off, end, _kind in ctnetlink.receive_messages(sock, seq):
                nested = _genl_attrs(buf, off + 20, end).get(IPVS_CMD_ATTR_SERVICE)
                if nested is not None:
                    attrs = _genl_attrs(nested, 0, len(nested))
                    if IPVS_SVC_ATTR_SCHED_NAME in attrs:
                        scheduler = bytes(attrs[IPVS_SVC_ATTR_SCHED_NAME]).rstrip(b"\0").decode(errors="replace")
                    if IPVS_SVC_ATTR_FLAGS in attrs:
                        walk.affinity = bool(struct.unpack_from("=I", attrs[IPVS_SVC_ATTR_FLAGS])[0] & IP_VS_SVC_F_PERSISTENT)
                break
        except ctnetlink.NetfilterNetlinkError as exc:
            if exc.errno in (errno.ESRCH, errno.ENOENT):
                walk.note(f"# no IPVS virtual server {vip}:{port}/{protocol.lower()}")
                return _result("ipvs", vip, port, protocol, False, walk)
            raise NatStateError(f"IPVS service query failed: {exc}") from exc
        walk.service_chain = f"ipvs {protocol.upper()} {vip}:{port} {scheduler}"
        walk.note(f"-A -t {vip}:{port} -s {scheduler}" + (" -p" if walk.affinity else ""))
        seq = _genl_request(
            sock, family_id, IPVS_CMD_GET_DEST, IPVS_GENL_VERSION, ctnetlink.NLM_F_REQUEST | ctnetlink.NLM_F_DUMP, service
        )
        dests: list[tuple[str, int, int]] = []
        for buf, off, end, _kind in ctnetlink.receive_messages(sock, seq):
            nested = _genl_attrs(buf, off + 20, end).get(IPVS_CMD_ATTR_DEST)
            if nested is None:
                continue
            attrs = _genl_attrs(nested, 0, len(nested))
            dest_family = int(family)
            if IPVS_DEST_ATTR_ADDR_FAMILY in attrs:
                dest_family = int(struct.unpack_from("=H", attrs[IPVS_DEST_ATTR_ADDR_FAMILY])[0])
            if IPVS_DEST_ATTR_ADDR not in attrs or IPVS_DEST_ATTR_PORT not in attrs:
                continue
            dests.append(
                (
                    _inet_addr(attrs[IPVS_DEST_ATTR_ADDR], dest_family),
                    int(struct.unpack_from(">H", attrs[IPVS_DEST_ATTR_PORT])[0]),
                    int(struct.unpack_from("=I", attrs[IPVS_DEST_ATTR_WEIGHT])[0]) if IPVS_DEST_ATTR_WEIGHT in attrs else 1,
                )
            )
    except (OSError, ctnetlink.NetfilterNetlinkError) as exc:
        raise NatStateError(f"IPVS query failed: {exc}") from exc
    finally:
        sock.close()
    total = sum(weight for _, _, weight in dests)
    for ip, dport, weight in dests:
        walk.note(f"-a -t {vip}:{port} -r {ip}:{dport} -w {weight}")
        walk.endpoints.append(NatEndpoint(ip=ip, port=dport, chain=None, probability=weight / total if total else None))
    return _result("ipvs", vip, port, protocol, True, walk)


def _has_link(netns: str, name: str) -> bool:
    def lookup() -> bool:
        try:
            socket.if_nametoindex(name)
        except OSError:
            return False
        return True

    return run_in_netns(netns, lookup)


def ipvs_active(netns: str) -> bool:
    """Whether kube-proxy's IPVS mode is set up: kube-ipvs0 exists and the kernel has IPVS."""
    return _has_link(netns, "kube-ipvs0") and _genetlink_family_exists(netns, "IPVS")


# --------------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------------


def _validate(vip: str, port: int, protocol: str) -> None:
    family = socket.AF_INET6 if ":" in vip else socket.AF_INET
    try:
        socket.inet_pton(family, vip)
    except OSError as exc:
        raise ValueError(f"not an IP address: {vip[:64]!r}") from exc
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range 1-65535")
    if protocol.upper() not in PROTOCOLS:
        raise ValueError(f"protocol {protocol[:16]!r} is not one of TCP, UDP, SCTP")


def _detect(netns: str, version: RulesetVersion) -> str:
    found = _cached(version, "nft-probe", lambda: _probe_nftables(netns))
    if found is not None:
        return found
    # iptables-legacy rules are invisible to nf_tables: ask iptables-save (cached, with a short TTL).
    nat = iptables_snapshot(netns, version).table("nat")
    if nat is not None and "KUBE-SERVICES" in nat.chains:
        return "iptables"
    if ipvs_active(netns):
        return "ipvs"
    return "none"


def detect_proxy_mode(netns: str, netns_name: str | None) -> str:
    """kube-proxy's mode on the node: "nftables", "iptables", "ipvs" or "none".

    `netns_name` is accepted for symmetry with the other checks; the tools are run with
    `nsenter --net=PATH`, which needs only the path.
    """
    del netns_name
    return _detect(netns, ruleset_version(netns))


def _vip_is_local(netns: str, vip: str) -> bool:
    family = socket.AF_INET6 if ":" in vip else socket.AF_INET

    def try_bind() -> bool:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((vip, 0))
            except OSError as exc:
                if exc.errno == errno.EADDRNOTAVAIL:
                    return False
                raise
        return True

    try:
        return run_in_netns(netns, try_bind)
    except OSError:
        return False


def service_nat(netns: str, netns_name: str | None, vip: str, port: int, protocol: str) -> ServiceNat:
    """How kube-proxy on the node in `netns` handles VIP:port/protocol (cached while rules are unchanged)."""
    del netns_name
    _validate(vip, port, protocol)
    version = ruleset_version(netns)
    mode = _detect(netns, version)
    if mode == "nftables":
        from nodeagent.checks import nft

        # Netlink reads run no tool and cost milliseconds: use them until the full dump has landed,
        # also while it is still loading, rather than wait seconds for it.
        if _peek(version, "nft:kube-proxy") is None:
            found = _nft_service_nat_on_demand(netns, vip, port, protocol)
            if found is not None and _unchanged_since(netns, version):
                _load_in_background(version, "nft:kube-proxy", lambda loading: _load_nft_kube_proxy(netns, loading))
                return found
        ruleset = _cached(version, "nft:kube-proxy", lambda: _load_nft_kube_proxy(netns))
        return nft.nft_service_nat(ruleset, vip, port, protocol, vip_is_local=_vip_is_local(netns, vip))
    if mode == "iptables":
        if _peek(version, "iptables") is None and not _loading_now(version, "iptables"):
            on_demand = _iptables_on_demand(netns, version)
            try:
                found = iptables_service_nat(on_demand, vip, port, protocol, vip_is_local=_vip_is_local(netns, vip))
            except (_OnDemandUnavailable, NatStateError) as exc:
                log.debug("reading chains one by one failed, using iptables-save: %s", exc)
            else:
                if _unchanged_since(netns, version):
                    _load_in_background(version, "iptables", lambda loading: _load_iptables(netns, loading))
                    return found
        save = iptables_snapshot(netns, version)
        return iptables_service_nat(save, vip, port, protocol, vip_is_local=_vip_is_local(netns, vip))
    if mode == "ipvs":
        return ipvs_service_nat(netns, vip, port, protocol)
    note = "# no kube-proxy rules found (no nftables table, KUBE-SERVICES or IPVS)"
    return ServiceNat(
        mode=mode,
        vip=vip,
        port=port,
        protocol=protocol.upper(),
        programmed=False,
        service_name=None,
        service_chain=None,
        endpoints=(),
        no_endpoints_action=None,
        session_affinity=False,
        rules=(note,),
    )


def list_service_nat(netns: str, netns_name: str | None) -> tuple[ServiceNat, ...]:
    """Every service port kube-proxy has programmed on the node (for digests)."""
    del netns_name
    version = ruleset_version(netns)
    mode = _detect(netns, version)
    if mode == "nftables":
        from nodeagent.checks import nft

        ruleset = _cached(version, "nft:kube-proxy", lambda: _load_nft_kube_proxy(netns))
        problem = nft.table_unreadable(ruleset)
        if problem:
            raise NatStateError(problem)  # not "nothing programmed": the table is laid out otherwise
        return nft.nft_list_service_nat(ruleset)
    if mode == "iptables":
        return iptables_list_service_nat(iptables_snapshot(netns, version))
    return ()
