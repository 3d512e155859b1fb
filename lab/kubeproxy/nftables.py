"""kube-proxy's nftables mode as a pure function: services in, an `nft -f -` script out.

The objects and rules follow pkg/proxy/nftables/proxier.go (setupNFTables and syncProxyRules) and
the expectations in its proxier_test.go: table `ip kube-proxy`; base chains filter-prerouting-pre-dnat,
filter-output-pre-dnat (priority -110), filter-forward, filter-input, filter-output (priority 0),
nat-prerouting, nat-output (-100) and nat-postrouting (100); the service-ips and service-nodeports
dispatch maps, the cluster-ips set, the no-endpoint-services / no-endpoint-nodeports verdict maps
(services without endpoints `goto reject-chain`), the firewall-ips map; per service port a
`service-HASH-ns/svc/proto/port` chain balancing with `numgen random mod N vmap`, per endpoint an
`endpoint-HASH-ns/svc/proto/port__ip/port` chain with the hairpin masquerade mark and `dnat to`.

The script is one transaction that deletes and re-creates the whole table (the "add table; delete
table; add table" idiom, so it also works when the table is absent). kube-proxy itself updates its
table incrementally and deletes stale chains a second later; the resulting ruleset is the same,
and here a stale chain can never survive a sync.

Not rendered: loadBalancerSourceRanges (firewall chains), a restricted --nodeport-addresses set,
health-check node ports, topology hints.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lab.kubeproxy import names
from lab.kubeproxy.model import NodeContext, ServicePlan, plan_services

TABLE = "kube-proxy"
FAMILY = "ip"

_BASE_CHAINS: tuple[tuple[str, str, str, int], ...] = (
    ("filter-prerouting-pre-dnat", "filter", "prerouting", -110),
    ("filter-output-pre-dnat", "filter", "output", -110),
    ("filter-forward", "filter", "forward", 0),
    ("filter-input", "filter", "input", 0),
    ("filter-output", "filter", "output", 0),
    ("nat-output", "nat", "output", -100),
    ("nat-postrouting", "nat", "postrouting", 100),
    ("nat-prerouting", "nat", "prerouting", -100),
)
_JUMPS: tuple[tuple[str, str, str], ...] = (
    ("filter-input", "ct state new", "nodeport-endpoints-check"),
    ("filter-input", "ct state new", "service-endpoints-check"),
    ("filter-forward", "ct state new", "service-endpoints-check"),
    ("filter-output", "ct state new", "service-endpoints-check"),
    ("filter-prerouting-pre-dnat", "ct state new", "firewall-check"),
    ("filter-output-pre-dnat", "ct state new", "firewall-check"),
    ("nat-output", "", "services"),
    ("nat-prerouting", "", "services"),
    ("nat-postrouting", "", "masquerading"),
    ("filter-forward", "ct state new", "cluster-ips-check"),
    ("filter-output", "ct state new", "cluster-ips-check"),
)
_REGULAR_CHAINS = (
    "nodeport-endpoints-check",
    "service-endpoints-check",
    "firewall-check",
    "services",
    "masquerading",
    "cluster-ips-check",
    "mark-for-masquerade",
)
_NO_LOCALHOST = "ip daddr != 127.0.0.0/8"


@dataclass(frozen=True)
class NftablesRuleset:
    """One full sync: the `nft -f -` script and the per-service chains it creates."""

    script: str
    service_chains: tuple[str, ...]


class _Script:
    def __init__(self) -> None:
        self.sets: list[str] = []
        self.chains: list[str] = []
        self.rules: list[str] = []
        self.elements: list[str] = []
        self.service_chains: list[str] = []

    def chain(self, name: str, spec: str = "") -> None:
        self.chains.append(f"add chain {FAMILY} {TABLE} {name}" + (f" {{ {spec} }}" if spec else ""))

    def rule(self, chain: str, rule: str, comment: str | None = None) -> None:
        tail = f' comment "{comment}"' if comment else ""
        self.rules.append(f"add rule {FAMILY} {TABLE} {chain} {rule}{tail}")

    def element(self, container: str, body: str) -> None:
        self.elements.append(f"add element {FAMILY} {TABLE} {container} {{ {body} }}")


def _setup(out: _Script, node: NodeContext) -> None:
    mark = node.masquerade_mark
    for name, kind, hook, priority in _BASE_CHAINS:
        out.chain(name, f"type {kind} hook {hook} priority {priority} ;")
    for name in _REGULAR_CHAINS:
        out.chain(name)
    out.chain("reject-chain", 'comment "helper for @no-endpoint-services / @no-endpoint-nodeports" ;')
    for src, extra, dst in _JUMPS:
        out.rule(src, f"{extra} jump {dst}".strip())
    out.rule("mark-for-masquerade", f"mark set mark or {mark}")
    out.rule("masquerading", f"mark and {mark} == 0 return")
    out.rule("masquerading", f"mark set mark xor {mark}")
    out.rule("masquerading", "masquerade fully-random")
    out.sets.append(f'add set {FAMILY} {TABLE} cluster-ips {{ type ipv4_addr ; comment "Active ClusterIPs" ; }}')
    out.rule("cluster-ips-check", "ip daddr @cluster-ips reject", "Reject traffic to invalid ports of ClusterIPs")
    if node.service_cidrs:
        cidrs = ", ".join(node.service_cidrs)
        out.rule("cluster-ips-check", f"ip daddr {{ {cidrs} }} drop", "Drop traffic to unallocated ClusterIPs")
    verdict_map = "ipv4_addr . inet_proto . inet_service : verdict"
    port_map = "inet_proto . inet_service : verdict"
    for name, kind, comment in (
        ("no-endpoint-services", verdict_map, "vmap to drop or reject packets to services with no endpoints"),
        ("no-endpoint-nodeports", port_map, "vmap to drop or reject packets to service nodeports with no endpoints"),
        ("firewall-ips", verdict_map, "destinations that are subject to LoadBalancerSourceRanges"),
        ("service-ips", verdict_map, "ClusterIP, ExternalIP and LoadBalancer IP traffic"),
        ("service-nodeports", port_map, "NodePort traffic"),
    ):
        out.sets.append(f'add map {FAMILY} {TABLE} {name} {{ type {kind} ; comment "{comment}" ; }}')
    out.rule("reject-chain", "reject")
    out.rule("service-endpoints-check", "ip daddr . meta l4proto . th dport vmap @no-endpoint-services")
    out.rule("nodeport-endpoints-check", f"{_NO_LOCALHOST} meta l4proto . th dport vmap @no-endpoint-nodeports")
    out.rule("firewall-check", "ip daddr . meta l4proto . th dport vmap @firewall-ips")
    out.rule("services", "ip daddr . meta l4proto . th dport vmap @service-ips")
    out.rule("services", f"fib daddr type local {_NO_LOCALHOST} meta l4proto . th dport vmap @service-nodeports")


def _write_service(out: _Script, plan: ServicePlan, node: NodeContext) -> None:
    svc = plan.service
    proto = svc.protocol
    pname = svc.port_name_string
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
    for ep in plan.reachable_endpoints:
        chain = names.NFT_ENDPOINT_PREFIX + ep_base(ep.address)
        out.chain(chain)
        out.service_chains.append(chain)
        if svc.sticky_seconds is not None:
            out.sets.append(
                f"add set {FAMILY} {TABLE} {names.NFT_AFFINITY_PREFIX}{ep_base(ep.address)} "
                f"{{ type ipv4_addr ; flags dynamic,timeout ; timeout {svc.sticky_seconds}s ; }}"
            )

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

    if has_internal:
        out.rule(internal_chain, f"ip daddr {svc.cluster_ip} ip saddr != {node.cluster_cidr} jump mark-for-masquerade")
    if uses_external_chain:
        if not svc.external_policy_local:
            out.rule(external_chain, "jump mark-for-masquerade")
        else:
            out.rule(external_chain, f"ip saddr {node.cluster_cidr} goto {cluster_chain}", "short-circuit pod traffic")
            out.rule(external_chain, "fib saddr type local jump mark-for-masquerade", "masquerade local traffic")
            out.rule(external_chain, f"fib saddr type local goto {cluster_chain}", "short-circuit local traffic")
        if has_external:
            out.rule(external_chain, f"goto {external_policy_chain}")

    for chain, used, endpoints in (
        (cluster_chain, uses_cluster_chain, plan.cluster_endpoints),
        (local_chain, uses_local_chain, plan.local_endpoints),
    ):
        if not used:
            continue
        if svc.sticky_seconds is not None:
            for ep in endpoints:
                b = ep_base(ep.address)
                out.rule(chain, f"ip saddr @{names.NFT_AFFINITY_PREFIX}{b} goto {names.NFT_ENDPOINT_PREFIX}{b}")
        vmap = " , ".join(f"{i} : goto {names.NFT_ENDPOINT_PREFIX}{ep_base(ep.address)}" for i, ep in enumerate(endpoints))
        out.rule(chain, f"numgen random mod {len(endpoints)} vmap {{ {vmap} }}")

    for ep in plan.reachable_endpoints:
        b = ep_base(ep.address)
        chain = names.NFT_ENDPOINT_PREFIX + b
        out.rule(chain, f"ip saddr {ep.ip} jump mark-for-masquerade")
        if svc.sticky_seconds is not None:
            out.rule(chain, f"update @{names.NFT_AFFINITY_PREFIX}{b} {{ ip saddr }}")
        out.rule(chain, f"meta l4proto {proto} dnat to {ep.address}")


def render_nftables(
    services: Iterable[Mapping[str, Any]],
    endpoint_slices: Iterable[Mapping[str, Any]],
    node: NodeContext,
) -> NftablesRuleset:
    """Render one full kube-proxy sync as an `nft -f -` script that re-creates `table ip kube-proxy`."""
    out = _Script()
    _setup(out, node)
    for plan in plan_services(services, endpoint_slices, node):
        _write_service(out, plan, node)
    table = f'add table {FAMILY} {TABLE} {{ comment "rules for kube-proxy" ; }}'
    lines = [
        table,
        f"delete table {FAMILY} {TABLE}",
        table,
        *out.sets,
        *out.chains,
        *out.rules,
        *out.elements,
    ]
    return NftablesRuleset(script="\n".join(lines) + "\n", service_chains=tuple(out.service_chains))
