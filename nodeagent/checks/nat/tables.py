"""`KubeProxyTables`: kube-proxy's rules of a namespace, read on demand and cached in its own snapshot cache.

It detects the mode (nf_tables netlink first, then `iptables-save` for iptables-legacy, then IPVS),
reads the rules with fixed argument vectors (`nsenter --net=PATH iptables-save -c`, `nft -j list
table ip kube-proxy`) and walks them (`iptables`, `nftables`, `ipvs`).

Cold lookups read only what one service needs. A whole-table dump of 10,000 services costs seconds;
the first lookup under a new ruleset generation reads only the chains its walk visits (`iptables -t
T -S CHAIN` per chain; the service-ips element, the service chain, its vmap and its endpoint chains
over nf_tables netlink, see `nft_netlink`), answers, and then starts the full dump on a thread; the
lookups that follow are served from that dump (iptables mode waits for it while it runs; nftables
mode keeps using the netlink reads, which run no tool, until it has landed). Chains read one by one
are used only when the ruleset generation did not change while they were read.
"""

from __future__ import annotations

import errno
import json
import logging
import re
import socket
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from nodeagent.checks import ctnetlink, netlink
from nodeagent.checks.iptables_save import (
    IptablesChain,
    IptablesSave,
    IptablesSaveError,
    IptablesTable,
    parse_iptables_save,
    parse_rule,
)
from nodeagent.checks.nat.cache import Loading, RulesetVersion, SnapshotCache, ruleset_version, unchanged_since
from nodeagent.checks.nat.ingress import ENTRY_KINDS, iptables_entry_nat, nft_entry_nat
from nodeagent.checks.nat.iptables import SERVICE_CHAIN_PREFIXES, dispatches, iptables_list_service_nat, iptables_service_nat
from nodeagent.checks.nat.iptables_netlink import rules_for_destination
from nodeagent.checks.nat.ipvs import ipvs_active, ipvs_service_nat
from nodeagent.checks.nat.model import NatStateError, ServiceNat, not_programmed, validate
from nodeagent.checks.nat.nft_netlink import entry_nat_on_demand, service_nat_on_demand
from nodeagent.checks.nat.nftables import (
    NftRuleset,
    NftRulesetError,
    nft_list_service_nat,
    nft_service_nat,
    parse_nft_ruleset,
    table_unreadable,
)
from nodeagent.checks.nft_filter import NftFilterError, NftTable, parse_nft_table
from nodeagent.netns import run_in_netns

log = logging.getLogger("kubereach.agent.nat")

_CHAIN_NAME = re.compile(r"^[A-Za-z0-9_.:/-]{1,256}$")
MAX_PARALLEL_CHAIN_READS = 16
"""Most endpoint chains of one service read side by side (more are read one by one as the walk goes)."""


class _OnDemandUnavailable(Exception):
    """A chain could not be read on its own (`iptables -S` refused); the full snapshot decides."""


class _ChainsOnDemand(Mapping[str, IptablesChain]):
    """One iptables table's chains, each read with `iptables -t TABLE -S CHAIN` when first asked for.

    With a `destination` (VIP, port, protocol), nat KUBE-SERVICES is read over nf_tables netlink
    instead and holds only the rules for that VIP up to the first that dispatches it (all the walk
    looks at: it indexes KUBE-SERVICES by destination and follows the first dispatching rule); a rule
    the netlink reader does not print exactly sends it back to `iptables -S`. When a service chain is
    read, the endpoint chains it jumps to are read at once, side by side.
    Iterating needs every chain: that reads the whole snapshot (the walk does so only for rare cases,
    such as a VIP that is not in KUBE-SERVICES at all).
    """

    def __init__(
        self,
        tables: KubeProxyTables,
        netns: str,
        table: str,
        version: RulesetVersion,
        destination: tuple[str, int, str] | None = None,
    ) -> None:
        self._tables, self._netns, self._table, self._version = tables, netns, table, version
        self._destination = destination
        self._read: dict[str, IptablesChain | None] = {}

    def _read_chain(self, name: str) -> IptablesChain | None:
        if self._table == "nat" and name == "KUBE-SERVICES" and self._destination is not None:
            vip, port, proto = self._destination
            lines = rules_for_destination(
                self._netns, "nat", name, vip, enough=lambda line: dispatches(parse_rule(line), vip, port, proto)
            )
            if lines is not None:
                return IptablesChain(name, None, None, None, lines)
        return self._tables.iptables_chain(self._netns, self._table, name)

    def __getitem__(self, name: str) -> IptablesChain:
        if name not in self._read:
            self._read[name] = self._read_chain(name)
            self._read_endpoint_chains(self._read[name])
        chain = self._read[name]
        if chain is None:
            raise KeyError(name)
        return chain

    def _read_endpoint_chains(self, chain: IptablesChain | None) -> None:
        if chain is None or not chain.name.startswith(SERVICE_CHAIN_PREFIXES):
            return
        targets = {line.rsplit(" -j ", 1)[-1].split(" ", 1)[0] for line in chain.rule_lines if " -j KUBE-SEP-" in line}
        wanted = sorted(t for t in targets if t.startswith("KUBE-SEP-") and t not in self._read)[:MAX_PARALLEL_CHAIN_READS]
        if len(wanted) < 2:
            return
        with ThreadPoolExecutor(max_workers=len(wanted), thread_name_prefix="iptables-chain") as pool:
            for name, read in zip(wanted, pool.map(self._read_chain, wanted), strict=True):
                self._read[name] = read

    def _all(self) -> Mapping[str, IptablesChain]:
        table = self._tables.iptables_snapshot(self._netns, self._version).table(self._table)
        return table.chains if table is not None else {}

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


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


def _probe_nftables(netns: str) -> tuple[str | None, bool]:
    """ "nftables" when table ip kube-proxy exists, "iptables" when iptables-nft's nat table has
    KUBE-SERVICES, else None; asked over netlink, without running a tool."""
    try:
        sock = ctnetlink.open_netfilter_socket(netns)
    except ctnetlink.NetfilterNetlinkError:
        return (None, False)
    try:
        tables = ctnetlink.nftables_tables(sock, netlink.next_seq())
        if (ctnetlink.NFPROTO_IPV4, "kube-proxy") in tables:
            return ("nftables", False)
        if (ctnetlink.NFPROTO_IPV4, "nat") in tables and ctnetlink.nftables_chain_exists(
            sock, netlink.next_seq(), ctnetlink.NFPROTO_IPV4, "nat", "KUBE-SERVICES"
        ):
            return ("iptables", False)
        return (None, False)
    except ctnetlink.NetfilterNetlinkError:
        return (None, False)
    finally:
        sock.close()


class KubeProxyTables:
    """kube-proxy's NAT of any namespace, with the snapshots it read kept in `cache`."""

    def __init__(self, cache: SnapshotCache | None = None) -> None:
        self.cache = cache if cache is not None else SnapshotCache()

    def tool_invocations(self) -> int:
        """How many times these tables ran iptables-save / nft / iptables (for tests and metrics)."""
        return self.cache.tool_invocations()

    def clear_cache(self) -> None:
        """Forget every cached snapshot and cancel the full loads still running in the background."""
        self.cache.clear()

    # ---- loading ------------------------------------------------------------------------------

    def _load_iptables(self, netns: str, loading: Loading | None = None) -> tuple[IptablesSave, bool]:
        # One `iptables-save -c` for every table: iptables-nft reads the whole ruleset whatever `-t`
        # says, so a second run for the filter table would cost as much as the first. Counters show
        # whether a DROP rule is being hit.
        done = self.cache.run_tool(netns, ["iptables-save", "-c"], loading, count=loading is None)
        if done.returncode != 0:
            raise NatStateError(f"iptables-save failed: {done.stderr.strip()[:200]}")
        try:
            parsed = parse_iptables_save(done.stdout)
        except IptablesSaveError as exc:
            raise NatStateError(f"cannot read iptables-save output: {exc}") from exc
        return (parsed, parsed.backend == "legacy")

    def iptables_snapshot(self, netns: str, version: RulesetVersion | None = None) -> IptablesSave:
        """All iptables tables of the namespace (`iptables-save -c`), cached while the rules are unchanged."""
        if version is None:
            version = ruleset_version(netns)
        return self.cache.cached(version, "iptables", lambda: self._load_iptables(netns))

    def _load_nft_kube_proxy(self, netns: str, loading: Loading | None = None) -> tuple[Any, bool]:
        done = self.cache.run_tool(netns, ["nft", "-j", "list", "table", "ip", "kube-proxy"], loading, count=loading is None)
        if done.returncode != 0:
            raise NatStateError(f"nft list table ip kube-proxy failed: {done.stderr.strip()[:200]}")
        try:
            return (parse_nft_ruleset(json.loads(done.stdout)), False)
        except (json.JSONDecodeError, NftRulesetError) as exc:
            raise NatStateError(f"cannot read nft's kube-proxy table: {exc}") from exc

    def nft_kube_proxy_ruleset(self, netns: str, version: RulesetVersion) -> NftRuleset | None:
        """The parsed `ip kube-proxy` nftables table of the namespace, None when there is none (cached)."""
        if self.cache.cached(version, "nft-probe", lambda: _probe_nftables(netns)) != "nftables":
            return None
        ruleset: NftRuleset = self.cache.cached(version, "nft:kube-proxy", lambda: self._load_nft_kube_proxy(netns))
        return ruleset

    def _load_iptables_legacy(self, netns: str) -> tuple[IptablesSave, bool]:
        done = self.cache.run_tool(netns, ["iptables-legacy-save", "-c"])
        if done.returncode != 0:
            raise NatStateError(f"iptables-legacy-save failed: {done.stderr.strip()[:200]}")
        try:
            return (parse_iptables_save(done.stdout), True)
        except IptablesSaveError as exc:
            raise NatStateError(f"cannot read iptables-legacy-save output: {exc}") from exc

    def iptables_legacy_snapshot(self, netns: str, version: RulesetVersion) -> IptablesSave:
        """The namespace's iptables-legacy tables (`iptables-legacy-save -c`), kept for the legacy TTL
        (legacy rule changes do not move the nf_tables generation)."""
        return self.cache.cached(version, "iptables-legacy", lambda: self._load_iptables_legacy(netns))

    def nft_table_names(self, netns: str) -> list[tuple[str, str]]:
        """(family, name) of every nf_tables table of the namespace, asked over netlink (no tool run)."""
        families = {ctnetlink.NFPROTO_IPV4: "ip", 1: "inet", 10: "ip6", 7: "bridge", 0: "unspec", 3: "arp", 5: "netdev"}
        try:
            sock = ctnetlink.open_netfilter_socket(netns)
        except ctnetlink.NetfilterNetlinkError as exc:
            raise NatStateError(f"cannot open a netfilter socket: {exc}") from exc
        try:
            listed = ctnetlink.nftables_tables(sock, netlink.next_seq())
        except ctnetlink.NetfilterNetlinkError as exc:
            raise NatStateError(f"listing nftables tables failed: {exc}") from exc
        finally:
            sock.close()
        return [(families.get(family, str(family)), name) for family, name in listed]

    def _load_nft_filter_table(self, netns: str, family: str, name: str) -> tuple[list[NftTable], bool]:
        done = self.cache.run_tool(netns, ["nft", "-j", "list", "table", family, name])
        if done.returncode != 0:
            raise NatStateError(f"nft list table {family} {name} failed: {done.stderr.strip()[:200]}")
        try:
            return (parse_nft_table(json.loads(done.stdout)), False)
        except (json.JSONDecodeError, NftFilterError, KeyError, TypeError) as exc:
            raise NatStateError(f"cannot read nft's table {family} {name}: {exc}") from exc

    def nft_filter_table(self, netns: str, version: RulesetVersion, family: str, name: str) -> list[NftTable]:
        """One native nftables table as the filter walk reads it (cached while the ruleset is unchanged).

        `family` and `name` come from the kernel's own table list, never from a request."""
        if family not in ("ip", "inet", "ip6", "bridge") or not _CHAIN_NAME.match(name) or name.startswith("-"):
            raise NatStateError(f"table {family} {name[:40]!r} is not one the filter walk reads")
        tables: list[NftTable] = self.cache.cached(
            version, f"nft-filter:{family}:{name}", lambda: self._load_nft_filter_table(netns, family, name)
        )
        return tables

    def iptables_chain(self, netns: str, table: str, chain: str) -> IptablesChain | None:
        """One chain as `iptables -t TABLE -S CHAIN` prints it; None when the chain does not exist."""
        if not _CHAIN_NAME.match(chain) or chain.startswith("-"):
            return None
        done = self.cache.run_tool(netns, ["iptables", "-w", "5", "-t", table, "-S", chain])
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

    def _iptables_on_demand(self, netns: str, version: RulesetVersion, destination: tuple[str, int, str] | None) -> IptablesSave:
        tables = {
            name: IptablesTable(name, _ChainsOnDemand(self, netns, name, version, destination)) for name in ("nat", "filter")
        }
        return IptablesSave(tables=tables, backend="nf_tables")

    # ---- the questions ------------------------------------------------------------------------

    def _detect(self, netns: str, version: RulesetVersion) -> str:
        found = self.cache.cached(version, "nft-probe", lambda: _probe_nftables(netns))
        if found is not None:
            return found
        # iptables-legacy rules are invisible to nf_tables: ask iptables-save (cached, with a short TTL).
        nat = self.iptables_snapshot(netns, version).table("nat")
        if nat is not None and "KUBE-SERVICES" in nat.chains:
            return "iptables"
        if ipvs_active(netns):
            return "ipvs"
        return "none"

    def detect_proxy_mode(self, netns: str, netns_name: str | None) -> str:
        """kube-proxy's mode on the node: "nftables", "iptables", "ipvs" or "none".

        `netns_name` is accepted for symmetry with the other checks; the tools are run with
        `nsenter --net=PATH`, which needs only the path.
        """
        del netns_name
        return self._detect(netns, ruleset_version(netns))

    def service_nat(self, netns: str, netns_name: str | None, vip: str, port: int, protocol: str) -> ServiceNat:
        """How kube-proxy on the node in `netns` handles VIP:port/protocol (cached while rules are unchanged)."""
        del netns_name
        validate(vip, port, protocol)
        version = ruleset_version(netns)
        mode = self._detect(netns, version)
        if mode == "nftables":
            # Netlink reads run no tool and cost milliseconds: use them until the full dump has
            # landed, also while it is still loading, rather than wait seconds for it.
            if self.cache.peek(version, "nft:kube-proxy") is None:
                found = service_nat_on_demand(netns, vip, port, protocol)
                if found is not None and unchanged_since(netns, version):
                    self.cache.load_in_background(
                        version, "nft:kube-proxy", lambda loading: self._load_nft_kube_proxy(netns, loading)
                    )
                    return found
            ruleset = self.cache.cached(version, "nft:kube-proxy", lambda: self._load_nft_kube_proxy(netns))
            return nft_service_nat(ruleset, vip, port, protocol, vip_is_local=_vip_is_local(netns, vip))
        if mode == "iptables":
            if self.cache.peek(version, "iptables") is None and not self.cache.loading_now(version, "iptables"):
                on_demand = self._iptables_on_demand(netns, version, (vip, port, protocol.lower()))
                try:
                    found = iptables_service_nat(on_demand, vip, port, protocol, vip_is_local=_vip_is_local(netns, vip))
                except (_OnDemandUnavailable, NatStateError) as exc:
                    log.debug("reading chains one by one failed, using iptables-save: %s", exc)
                else:
                    if unchanged_since(netns, version):
                        self.cache.load_in_background(version, "iptables", lambda loading: self._load_iptables(netns, loading))
                        return found
            save = self.iptables_snapshot(netns, version)
            return iptables_service_nat(save, vip, port, protocol, vip_is_local=_vip_is_local(netns, vip))
        if mode == "ipvs":
            return ipvs_service_nat(netns, vip, port, protocol)
        return not_programmed(mode, vip, port, protocol, "# no kube-proxy rules found (no nftables table, KUBE-SERVICES or IPVS)")

    def entry_nat(self, netns: str, netns_name: str | None, entry: str, address: str, port: int, protocol: str) -> ServiceNat:
        """How kube-proxy on the node in `netns` dispatches a client outside the cluster connecting to
        `address`:`port` through `entry` (`ingress.ENTRY_KINDS`). A cold lookup reads only what its walk
        needs (iptables chain by chain, nftables over netlink), as `service_nat` does."""
        del netns_name
        validate(address, port, protocol)
        if entry not in ENTRY_KINDS:
            raise ValueError(f"entry {entry[:32]!r} is not one of {', '.join(ENTRY_KINDS)}")
        version = ruleset_version(netns)
        mode = self._detect(netns, version)
        local = _vip_is_local(netns, address)
        if mode == "nftables":
            if self.cache.peek(version, "nft:kube-proxy") is None:
                found = entry_nat_on_demand(netns, entry, address, port, protocol, local)
                if found is not None and unchanged_since(netns, version):
                    self.cache.load_in_background(
                        version, "nft:kube-proxy", lambda loading: self._load_nft_kube_proxy(netns, loading)
                    )
                    return found
            ruleset = self.cache.cached(version, "nft:kube-proxy", lambda: self._load_nft_kube_proxy(netns))
            return nft_entry_nat(ruleset, entry, address, port, protocol, address_is_local=local)
        if mode == "iptables":
            if self.cache.peek(version, "iptables") is None and not self.cache.loading_now(version, "iptables"):
                # Cold: read only the chains the walk visits (KUBE-SERVICES for an address over netlink).
                destination = None if entry == "nodeport" else (address, port, protocol.lower())
                on_demand = self._iptables_on_demand(netns, version, destination)
                try:
                    found = iptables_entry_nat(on_demand, entry, address, port, protocol, address_is_local=local)
                except (_OnDemandUnavailable, NatStateError) as exc:
                    log.debug("reading chains one by one failed, using iptables-save: %s", exc)
                else:
                    if unchanged_since(netns, version):
                        self.cache.load_in_background(version, "iptables", lambda loading: self._load_iptables(netns, loading))
                        return found
            save = self.iptables_snapshot(netns, version)
            return iptables_entry_nat(save, entry, address, port, protocol, address_is_local=local)
        note = f"# {address}:{port} is not read in kube-proxy mode {mode!r} (only iptables and nftables rules are walked)"
        return replace(not_programmed(mode, address, port, protocol, note), entry=entry)

    def list_service_nat(self, netns: str, netns_name: str | None) -> tuple[ServiceNat, ...]:
        """Every service port kube-proxy has programmed on the node (for digests)."""
        del netns_name
        version = ruleset_version(netns)
        mode = self._detect(netns, version)
        if mode == "nftables":
            ruleset = self.cache.cached(version, "nft:kube-proxy", lambda: self._load_nft_kube_proxy(netns))
            problem = table_unreadable(ruleset)
            if problem:
                raise NatStateError(problem)  # not "nothing programmed": the table is laid out otherwise
            return nft_list_service_nat(ruleset)
        if mode == "iptables":
            return iptables_list_service_nat(self.iptables_snapshot(netns, version))
        return ()
