"""kube-proxy's nftables mode as a pure function: services in, an `nft -f -` script out.

The reference is what upstream kube-proxy v1.36.2 really wrote into a lab node for the lab's default
spec (recorded; see tests/unit/fixtures/kube-proxy-v1.36.2/), read together with
pkg/proxy/nftables/proxier.go. Every rule is written in the form `nft list` prints it back, so the
script and a listing of the kernel's table can be compared rule for rule.

Common to every layout: tables `ip kube-proxy` and `ip6 kube-proxy` (kube-proxy runs dual-stack on
any host with IPv6; the lab's services are IPv4, so the ip6 table holds only the skeleton); base
chains filter-prerouting-pre-dnat and filter-output-pre-dnat (priority dstnat - 10), filter-input,
filter-forward, filter-output (priority filter), nat-prerouting, nat-output (dstnat) and
nat-postrouting (srcnat); the service-ips / service-nodeports dispatch maps, the cluster-ips set,
the no-endpoint-services / no-endpoint-nodeports verdict maps (services without endpoints
`goto reject-chain`), the firewall-ips map, and with kube-proxy's default `--nodeport-addresses
primary` a `nodeport-ips` set holding the node's address (a family without a node address, like
IPv6 here, falls back to `fib daddr type local` minus localhost).

What differs between layouts (`NodeContext.nft_layout`) is how a service port reaches its endpoints
and how hairpin / off-cluster traffic is masqueraded:

- `1.36` (default; what v1.36 writes): one `service-…` chain per service port with a single
  `meta l4proto P dnat ip to numgen random mod N map { 0 : ip . port, … }`; no per-endpoint chains
  and no `mark-for-masquerade` chain. Off-cluster traffic to any ClusterIP is marked once in
  `services` (`ip daddr @cluster-ips ip saddr != CLUSTER-CIDR meta mark set …`), and hairpin traffic
  is masqueraded in `masquerading` through the `hairpin-connections` set (local endpoint . itself .
  protocol . port).
- `single-endpoint` (kubernetes PR #140723, v1.37): as 1.36, but a service port with exactly one
  endpoint gets a plain `meta l4proto P dnat to ip:port`, no map.
- `endpoint-chains` (the layout up to the mid 1.3x releases): the service chain marks off-cluster
  traffic to its own VIP (`jump mark-for-masquerade`) and balances with `numgen random mod N vmap
  { 0 : goto endpoint-…, … }`; each endpoint has a chain that marks its own hairpin traffic and
  DNATs; `masquerading` is return / clear mark / masquerade.

Session affinity keeps per-endpoint chains in every layout (the affinity sets are per endpoint and
must be updated on the way), as kube-proxy still tracks per-endpoint affinity sets in 1.36; in the
newer layouts those chains do not mark hairpin traffic (the hairpin set does).

The script is one transaction that deletes and re-creates both tables (the "add table; delete
table; add table" idiom, so it also works when a table is absent). kube-proxy itself updates its
tables incrementally and deletes stale chains a second later; the resulting ruleset is the same,
and here a stale chain can never survive a sync.

Health check node ports get no rule here, as in upstream's nftables mode: its syncProxyRules writes
nothing for `healthCheckNodePort` (only iptables mode adds an ACCEPT in the filter table, whose INPUT
hook it shares with host firewalls); the listener is `lab.kubeproxy.healthcheck` in both modes.

Not rendered: loadBalancerSourceRanges (firewall chains), topology hints, IPv6 services.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lab.kubeproxy import names
from lab.kubeproxy.model import Endpoint, NodeContext, ServicePlan, plan_services

TABLE = "kube-proxy"
FAMILY = "ip"
FAMILY6 = "ip6"

# (name, type, hook, priority) in kube-proxy's creation order.
_BASE_CHAINS: tuple[tuple[str, str, str, int], ...] = (
    ("filter-prerouting-pre-dnat", "filter", "prerouting", -110),
    ("filter-output-pre-dnat", "filter", "output", -110),
    ("filter-input", "filter", "input", 0),
    ("filter-forward", "filter", "forward", 0),
    ("filter-output", "filter", "output", 0),
    ("nat-prerouting", "nat", "prerouting", -100),
    ("nat-output", "nat", "output", -100),
    ("nat-postrouting", "nat", "postrouting", 100),
)
# (from chain, match, to chain), in the order the rules stand in each base chain.
_JUMPS: tuple[tuple[str, str, str], ...] = (
    ("filter-prerouting-pre-dnat", "ct state new", "firewall-check"),
    ("filter-output-pre-dnat", "ct state new", "firewall-check"),
    ("filter-input", "ct state new", "nodeport-endpoints-check"),
    ("filter-input", "ct state new", "service-endpoints-check"),
    ("filter-forward", "ct state new", "service-endpoints-check"),
    ("filter-forward", "ct state new", "cluster-ips-check"),
    ("filter-output", "ct state new", "service-endpoints-check"),
    ("filter-output", "ct state new", "cluster-ips-check"),
    ("nat-prerouting", "", "services"),
    ("nat-output", "", "services"),
    ("nat-postrouting", "", "masquerading"),
)
_REGULAR_CHAINS = (
    "nodeport-endpoints-check",
    "service-endpoints-check",
    "firewall-check",
    "services",
    "masquerading",
    "cluster-ips-check",
)
MARK_MASQ_CHAIN = "mark-for-masquerade"
HAIRPIN_SET = "hairpin-connections"
NODEPORT_IPS_SET = "nodeport-ips"


@dataclass(frozen=True)
class NftablesRuleset:
    """One full sync: the `nft -f -` script and the per-service chains it creates."""

    script: str
    service_chains: tuple[str, ...]


@dataclass(frozen=True)
class _Family:
    nft: str
    """nftables family: "ip" or "ip6"."""
    ip: str
    """The address selector in rules: "ip" or "ip6"."""
    addr_type: str
    no_localhost: str


_IPV4 = _Family("ip", "ip", "ipv4_addr", "ip daddr != 127.0.0.0/8")
_IPV6 = _Family("ip6", "ip6", "ipv6_addr", "ip6 daddr != ::1")


class _Script:
    def __init__(self, family: _Family) -> None:
        self.family = family
        self.sets: list[str] = []
        self.chains: list[str] = []
        self.rules: list[str] = []
        self.elements: list[str] = []
        self.service_chains: list[str] = []
        self._element_seen: set[tuple[str, str]] = set()

    def _prefix(self, kind: str) -> str:
        return f"add {kind} {self.family.nft} {TABLE}"

    def table(self) -> list[str]:
        add = f'{self._prefix("table")} {{ comment "rules for kube-proxy" ; }}'
        return [add, f"delete table {self.family.nft} {TABLE}", add]

    def container(self, kind: str, name: str, body: str) -> None:
        self.sets.append(f"{self._prefix(kind)} {name} {{ {body} ; }}")

    def chain(self, name: str, spec: str = "") -> None:
        self.chains.append(f"{self._prefix('chain')} {name}" + (f" {{ {spec} }}" if spec else ""))

    def rule(self, chain: str, rule: str, comment: str | None = None) -> None:
        tail = f' comment "{comment}"' if comment else ""
        self.rules.append(f"{self._prefix('rule')} {chain} {rule}{tail}")

    def element(self, container: str, body: str) -> None:
        if (container, body) in self._element_seen:
            return
        self._element_seen.add((container, body))
        self.elements.append(f"{self._prefix('element')} {container} {{ {body} }}")

    def lines(self) -> list[str]:
        return [*self.table(), *self.sets, *self.chains, *self.rules, *self.elements]


def nft_mark(value: int) -> str:
    """A mark as `nft list` prints it: 0x00004000."""
    return f"0x{value:08x}"


def _setup(out: _Script, node: NodeContext, nodeport_ips: tuple[str, ...], cluster_cidr: str | None) -> None:
    fam = out.family
    mark = nft_mark(node.mark_value)
    old = node.nft_layout == "endpoint-chains"
    if not old:
        out.container(
            "set",
            HAIRPIN_SET,
            f'type {fam.addr_type} . {fam.addr_type} . inet_proto . inet_service ; comment "service hairpin connections"',
        )
    out.container("set", "cluster-ips", f'type {fam.addr_type} ; comment "Active ClusterIPs"')
    if nodeport_ips:
        out.container("set", NODEPORT_IPS_SET, f'type {fam.addr_type} ; comment "IPs that accept NodePort traffic"')
        for ip in nodeport_ips:
            out.element(NODEPORT_IPS_SET, ip)
    verdict_map = f"{fam.addr_type} . inet_proto . inet_service : verdict"
    port_map = "inet_proto . inet_service : verdict"
    for name, kind, comment in (
        ("no-endpoint-services", verdict_map, "vmap to drop or reject packets to services with no endpoints"),
        ("no-endpoint-nodeports", port_map, "vmap to drop or reject packets to service nodeports with no endpoints"),
        ("firewall-ips", verdict_map, "destinations that are subject to LoadBalancerSourceRanges"),
        ("service-ips", verdict_map, "ClusterIP, ExternalIP and LoadBalancer IP traffic"),
        ("service-nodeports", port_map, "NodePort traffic"),
    ):
        out.container("map", name, f'type {kind} ; comment "{comment}"')

    for name, kind, hook, priority in _BASE_CHAINS:
        out.chain(name, f"type {kind} hook {hook} priority {priority} ;")
    for name in _REGULAR_CHAINS:
        out.chain(name)
    if old:
        out.chain(MARK_MASQ_CHAIN)
    out.chain("reject-chain", 'comment "helper for @no-endpoint-services / @no-endpoint-nodeports" ;')
    for src, extra, dst in _JUMPS:
        out.rule(src, f"{extra} jump {dst}".strip())

    if nodeport_ips:
        out.rule(
            "nodeport-endpoints-check", f"{fam.ip} daddr @{NODEPORT_IPS_SET} meta l4proto . th dport vmap @no-endpoint-nodeports"
        )
    else:
        out.rule("nodeport-endpoints-check", f"{fam.no_localhost} meta l4proto . th dport vmap @no-endpoint-nodeports")
    out.rule("service-endpoints-check", f"{fam.ip} daddr . meta l4proto . th dport vmap @no-endpoint-services")
    out.rule("firewall-check", f"{fam.ip} daddr . meta l4proto . th dport vmap @firewall-ips")
    if not old and cluster_cidr:
        out.rule(
            "services",
            f"{fam.ip} daddr @cluster-ips {fam.ip} saddr != {cluster_cidr} meta mark set meta mark | {mark}",
            "masquerade clusterIP traffic from outside cluster",
        )
    out.rule("services", f"{fam.ip} daddr . meta l4proto . th dport vmap @service-ips")
    if nodeport_ips:
        out.rule("services", f"{fam.ip} daddr @{NODEPORT_IPS_SET} meta l4proto . th dport vmap @service-nodeports")
    else:
        out.rule("services", f"fib daddr type local {fam.no_localhost} meta l4proto . th dport vmap @service-nodeports")
    if old:
        out.rule(MARK_MASQ_CHAIN, f"meta mark set meta mark | {mark}")
        out.rule("masquerading", f"meta mark & {mark} == 0x00000000 return")
        out.rule("masquerading", f"meta mark set meta mark ^ {mark}")
        out.rule("masquerading", "masquerade fully-random")
    else:
        out.rule("masquerading", f"meta mark & {mark} != 0x00000000 meta mark set meta mark ^ {mark} masquerade fully-random")
        out.rule(
            "masquerading",
            f"ct status dnat {fam.ip} saddr . {fam.ip} daddr . meta l4proto . th dport @{HAIRPIN_SET} masquerade fully-random",
        )
    out.rule("cluster-ips-check", f"{fam.ip} daddr @cluster-ips reject", "Reject traffic to invalid ports of ClusterIPs")
    if node.service_cidrs and fam is _IPV4:
        cidrs = ", ".join(node.service_cidrs)
        out.rule("cluster-ips-check", f"{fam.ip} daddr {{ {cidrs} }} drop", "Drop traffic to unallocated ClusterIPs")
    out.rule("reject-chain", "reject")


def _dnat_rule(proto: str, endpoints: tuple[Endpoint, ...], layout: str) -> str:
    """The 1.36 / single-endpoint balancing rule of a policy chain."""
    if layout == "single-endpoint" and len(endpoints) == 1:
        return f"meta l4proto {proto} dnat to {endpoints[0].address}"
    entries = ", ".join(f"{i} : {ep.ip} . {ep.port}" for i, ep in enumerate(endpoints))
    return f"meta l4proto {proto} dnat ip to numgen random mod {len(endpoints)} map {{ {entries} }}"


def _write_service(out: _Script, plan: ServicePlan, node: NodeContext) -> None:
    svc = plan.service
    proto = svc.protocol
    pname = svc.port_name_string
    layout = node.nft_layout
    old = layout == "endpoint-chains"
    sticky = svc.sticky_seconds is not None
    endpoint_chains = old or sticky
    mark = nft_mark(node.mark_value)
    mark_masq = f"jump {MARK_MASQ_CHAIN}" if old else f"meta mark set meta mark | {mark}"
    base = names.nft_service_chain_base(svc.namespace, svc.name, proto, svc.port_name)
    cluster_chain = names.NFT_SERVICE_PREFIX + base
    local_chain = names.NFT_LOCAL_PREFIX + base
    external_chain = names.NFT_EXTERNAL_PREFIX + base

    def ep_base(address: str) -> str:
        return names.nft_endpoint_chain_base(svc.namespace, svc.name, proto, svc.port_name, address)

    uses_cluster_chain = bool(plan.cluster_endpoints) and svc.uses_cluster_endpoints
    uses_local_chain = bool(plan.local_endpoints) and svc.uses_local_endpoints
    internal_chain = cluster_chain
    has_internal = plan.has_endpoints
    if svc.internal_policy_local:
        internal_chain = local_chain
        has_internal = has_internal and bool(plan.local_endpoints)
    external_policy_chain = cluster_chain
    has_external = plan.has_endpoints
    if svc.external_policy_local:
        external_policy_chain = local_chain
        has_external = has_external and bool(plan.local_endpoints)
    uses_external_chain = plan.has_endpoints and svc.externally_accessible
    internal_verdict = external_verdict = "goto reject-chain" if not plan.has_endpoints else "drop"

    for chain, used in (
        (cluster_chain, uses_cluster_chain),
        (local_chain, uses_local_chain),
        (external_chain, uses_external_chain),
    ):
        if used:
            out.chain(chain)
            out.service_chains.append(chain)
    if endpoint_chains:
        for ep in plan.reachable_endpoints:
            chain = names.NFT_ENDPOINT_PREFIX + ep_base(ep.address)
            out.chain(chain)
            out.service_chains.append(chain)
            if sticky:
                out.container(
                    "set",
                    names.NFT_AFFINITY_PREFIX + ep_base(ep.address),
                    f"type ipv4_addr ; flags dynamic,timeout ; timeout {svc.sticky_seconds}s",
                )
    if not old:
        for ep in plan.reachable_endpoints:
            if ep.is_local:
                out.element(HAIRPIN_SET, f"{ep.ip} . {ep.ip} . {proto} . {ep.port}")

    key = f"{svc.cluster_ip} . {proto} . {svc.port}"
    out.element("cluster-ips", svc.cluster_ip)
    if has_internal:
        out.element("service-ips", f"{key} : goto {internal_chain}")
    else:
        out.element("no-endpoint-services", f'{key} comment "{pname}" : {internal_verdict}')
    for ip in (*svc.external_ips, *svc.load_balancer_ips):
        ext_key = f"{ip} . {proto} . {svc.port}"
        if plan.has_endpoints:
            out.element("service-ips", f"{ext_key} : goto {external_chain}")
        if not has_external:
            out.element("no-endpoint-services", f'{ext_key} comment "{pname}" : {external_verdict}')
    if svc.node_port:
        np_key = f"{proto} . {svc.node_port}"
        if plan.has_endpoints:
            out.element("service-nodeports", f"{np_key} : goto {external_chain}")
        if not has_external:
            out.element("no-endpoint-nodeports", f'{np_key} comment "{pname}" : {external_verdict}')

    if has_internal and old:
        out.rule(internal_chain, f"ip daddr {svc.cluster_ip} ip saddr != {node.cluster_cidr} {mark_masq}")
    if uses_external_chain:
        if not svc.external_policy_local:
            out.rule(external_chain, mark_masq)
        else:
            out.rule(external_chain, f"ip saddr {node.cluster_cidr} goto {cluster_chain}", "short-circuit pod traffic")
            out.rule(external_chain, f"fib saddr type local {mark_masq}", "masquerade local traffic")
            out.rule(external_chain, f"fib saddr type local goto {cluster_chain}", "short-circuit local traffic")
        if has_external:
            out.rule(external_chain, f"goto {external_policy_chain}")

    for chain, used, endpoints in (
        (cluster_chain, uses_cluster_chain, plan.cluster_endpoints),
        (local_chain, uses_local_chain, plan.local_endpoints),
    ):
        if not used:
            continue
        if not endpoint_chains:
            out.rule(chain, _dnat_rule(proto, endpoints, layout))
            continue
        if sticky:
            for ep in endpoints:
                b = ep_base(ep.address)
                out.rule(chain, f"ip saddr @{names.NFT_AFFINITY_PREFIX}{b} goto {names.NFT_ENDPOINT_PREFIX}{b}")
        vmap = ", ".join(f"{i} : goto {names.NFT_ENDPOINT_PREFIX}{ep_base(ep.address)}" for i, ep in enumerate(endpoints))
        out.rule(chain, f"numgen random mod {len(endpoints)} vmap {{ {vmap} }}")

    if not endpoint_chains:
        return
    for ep in plan.reachable_endpoints:
        b = ep_base(ep.address)
        chain = names.NFT_ENDPOINT_PREFIX + b
        if old:
            out.rule(chain, f"ip saddr {ep.ip} {mark_masq}")
        if sticky:
            out.rule(chain, f"update @{names.NFT_AFFINITY_PREFIX}{b} {{ ip saddr }}")
        out.rule(chain, f"meta l4proto {proto} dnat to {ep.address}")


def render_nftables(
    services: Iterable[Mapping[str, Any]],
    endpoint_slices: Iterable[Mapping[str, Any]],
    node: NodeContext,
) -> NftablesRuleset:
    """Render one full kube-proxy sync as an `nft -f -` script re-creating `table ip kube-proxy`
    (and `table ip6 kube-proxy` when `node.ipv6`)."""
    out = _Script(_IPV4)
    _setup(out, node, (node.node_ip,) if node.primary_nodeports else (), node.cluster_cidr)
    for plan in plan_services(services, endpoint_slices, node):
        _write_service(out, plan, node)
    lines = out.lines()
    if node.ipv6:
        # No IPv6 node address, cluster CIDR or service here: only the skeleton, as kube-proxy writes it.
        out6 = _Script(_IPV6)
        _setup(out6, node, (), None)
        lines += out6.lines()
    return NftablesRuleset(script="\n".join(lines) + "\n", service_chains=tuple(out.service_chains))
