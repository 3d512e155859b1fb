"""kube-proxy's iptables mode as a pure function: services in, `iptables-restore` input out.

The text follows pkg/proxy/iptables/proxier.go `syncProxyRules` and what upstream kube-proxy
v1.36.2 really left in a lab node (recorded; see tests/unit/fixtures/kube-proxy-v1.36.2/): the
filter table (KUBE-SERVICES / KUBE-EXTERNAL-SERVICES REJECTs for services without endpoints,
KUBE-FORWARD, KUBE-PROXY-FIREWALL, KUBE-NODEPORTS, KUBE-FIREWALL) then the nat table
(KUBE-SERVICES, KUBE-NODEPORTS, KUBE-POSTROUTING, KUBE-MARK-MASQ and the per-service
KUBE-SVC/SVL/EXT/SEP chains), meant for `iptables-restore --noflush`. Every chain it declares is
flushed and refilled, so a full sync is idempotent; per-service nat chains that exist but are no
longer used get `-X` lines.

kube-proxy does not put the jumps from the built-in chains (PREROUTING → KUBE-SERVICES, INPUT →
KUBE-FIREWALL, ...) in the restore input, since it must not own those chains: it checks for each
with `iptables -C` and inserts it at the top with `-I` when missing. `IptablesRuleset.jumps` lists
them for `apply` to do the same; `canary_tables` are the tables that get an empty
KUBE-PROXY-CANARY chain (kube-proxy watches it to notice a flush).

Like kube-proxy with its defaults: localhost NodePorts (`--iptables-localhost-nodeports`, so the
NodePort jump has no `! -d 127.0.0.0/8`, `sysctls` asks for route_localnet=1, and KUBE-FIREWALL
drops martian packets to 127.0.0.0/8 that did not come from loopback); the invalid-state drop counted
by the `ct_state_invalid_dropped_pkts` nfacct object when `NodeContext.nfacct` says the kernel has
it; and the IPv6 side (`restore_input6` for ip6tables: the same skeleton with no services and
NodePorts never on ::1). The order of the service rules in KUBE-SERVICES is sorted here; kube-proxy
follows Go map iteration, which changes between syncs.

A LoadBalancer with `externalTrafficPolicy: Local` gets kube-proxy's filter-table ACCEPT for its health
check node port in KUBE-NODEPORTS (jumped to from INPUT), whether or not the node has a local endpoint;
the listener behind it is `lab.kubeproxy.healthcheck`.

Not rendered: loadBalancerSourceRanges (KUBE-FW chains), topology hints, IPv6 services.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lab.kubeproxy import names
from lab.kubeproxy.model import Endpoint, NodeContext, ServicePlan, plan_services

SERVICES = "KUBE-SERVICES"
EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
NODEPORTS = "KUBE-NODEPORTS"
POSTROUTING = "KUBE-POSTROUTING"
MARK_MASQ = "KUBE-MARK-MASQ"
FORWARD = "KUBE-FORWARD"
PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"
FIREWALL = "KUBE-FIREWALL"
CANARY = "KUBE-PROXY-CANARY"
CANARY_TABLES = ("mangle", "nat", "filter")
NFACCT_INVALID = "ct_state_invalid_dropped_pkts"
ROUTE_LOCALNET = "net.ipv4.conf.all.route_localnet"


@dataclass(frozen=True)
class IptablesJump:
    """A rule in a built-in chain that jumps to one of kube-proxy's chains."""

    table: str
    chain: str
    rule: tuple[str, ...]
    """The rule specification after the chain name, as separate argv words."""


@dataclass(frozen=True)
class IptablesRuleset:
    """One full sync: the restore input plus the jumps that must exist in the built-in chains."""

    restore_input: str
    jumps: tuple[IptablesJump, ...]
    nat_service_chains: tuple[str, ...]
    """The per-service nat chains (KUBE-SVC/SVL/EXT/SEP) this sync keeps."""
    restore_input6: str | None = None
    """ip6tables-restore input (the IPv6 skeleton), or None without IPv6."""
    deleted_chains: tuple[str, ...] = ()
    """Stale per-service nat chains this sync deletes."""
    canary_tables: tuple[str, ...] = CANARY_TABLES
    """Tables that get an empty KUBE-PROXY-CANARY chain (in both families)."""
    sysctls: tuple[tuple[str, str], ...] = ()
    """Sysctls kube-proxy sets in the node (route_localnet=1 for localhost NodePorts)."""


_NEW = ("-m", "conntrack", "--ctstate", "NEW")


def _jump(table: str, chain: str, extra: tuple[str, ...], comment: str, target: str) -> IptablesJump:
    return IptablesJump(table, chain, (*extra, "-m", "comment", "--comment", comment, "-j", target))


JUMPS: tuple[IptablesJump, ...] = (
    _jump("filter", "INPUT", _NEW, "kubernetes externally-visible service portals", EXTERNAL_SERVICES),
    _jump("filter", "FORWARD", _NEW, "kubernetes externally-visible service portals", EXTERNAL_SERVICES),
    _jump("filter", "INPUT", (), "kubernetes health check service ports", NODEPORTS),
    _jump("filter", "FORWARD", _NEW, "kubernetes service portals", SERVICES),
    _jump("filter", "OUTPUT", _NEW, "kubernetes service portals", SERVICES),
    _jump("filter", "FORWARD", (), "kubernetes forwarding rules", FORWARD),
    _jump("filter", "INPUT", _NEW, "kubernetes load balancer firewall", PROXY_FIREWALL),
    _jump("filter", "OUTPUT", _NEW, "kubernetes load balancer firewall", PROXY_FIREWALL),
    _jump("filter", "FORWARD", _NEW, "kubernetes load balancer firewall", PROXY_FIREWALL),
    _jump("nat", "OUTPUT", (), "kubernetes service portals", SERVICES),
    _jump("nat", "PREROUTING", (), "kubernetes service portals", SERVICES),
    _jump("nat", "POSTROUTING", (), "kubernetes postrouting rules", POSTROUTING),
    IptablesJump("filter", "INPUT", ("-j", FIREWALL)),
    IptablesJump("filter", "OUTPUT", ("-j", FIREWALL)),
)
"""kube-proxy's iptablesJumpChains then the KUBE-FIREWALL jumps, in its order (each is inserted at
position 1 when missing, so the last ones end up first)."""


def probability(n: int) -> str:
    """kube-proxy's statistic probability for the first of n remaining endpoints: "%0.10f" of 1/n."""
    return f"{1.0 / n:0.10f}"


def _chain_line(chain: str) -> str:
    return f":{chain} - [0:0]"


class _Tables:
    def __init__(self) -> None:
        self.filter_chains: list[str] = []
        self.filter_rules: list[str] = []
        self.nat_chains: list[str] = []
        self.nat_rules: list[str] = []

    @staticmethod
    def line(*words: str) -> str:
        return " ".join(words)


def _service_chains(svc: ServicePlan) -> tuple[str, str, str]:
    pn, proto = svc.service.port_name_string, svc.service.protocol
    return (
        names.iptables_service_chain(pn, proto),
        names.iptables_local_chain(pn, proto),
        names.iptables_external_chain(pn, proto),
    )


def _endpoint_chain(svc: ServicePlan, ep: Endpoint) -> str:
    return names.iptables_endpoint_chain(svc.service.port_name_string, svc.service.protocol, ep.address)


def _write_service(out: _Tables, plan: ServicePlan, node: NodeContext, active: list[str]) -> None:
    svc = plan.service
    proto = svc.protocol
    pname = svc.port_name_string
    cluster_chain, local_chain, external_chain = _service_chains(plan)
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

    if not plan.has_endpoints:
        internal_target = external_target = "REJECT"
        internal_comment = external_comment = f'"{pname} has no endpoints"'
    else:
        internal_target = external_target = "DROP"
        internal_comment = external_comment = f'"{pname} has no local endpoints"'

    port = str(svc.port)
    line = out.line
    if has_internal:
        out.nat_rules.append(
            line(
                "-A",
                SERVICES,
                "-m",
                "comment",
                "--comment",
                f'"{pname} cluster IP"',
                "-m",
                proto,
                "-p",
                proto,
                "-d",
                svc.cluster_ip,
                "--dport",
                port,
                "-j",
                internal_chain,
            )
        )
    else:
        out.filter_rules.append(
            line(
                "-A",
                SERVICES,
                "-m",
                "comment",
                "--comment",
                internal_comment,
                "-m",
                proto,
                "-p",
                proto,
                "-d",
                svc.cluster_ip,
                "--dport",
                port,
                "-j",
                internal_target,
            )
        )

    for external_ip in svc.external_ips:
        if plan.has_endpoints:
            out.nat_rules.append(
                line(
                    "-A",
                    SERVICES,
                    "-m",
                    "comment",
                    "--comment",
                    f'"{pname} external IP"',
                    "-m",
                    proto,
                    "-p",
                    proto,
                    "-d",
                    external_ip,
                    "--dport",
                    port,
                    "-j",
                    external_chain,
                )
            )
        if not has_external:
            out.filter_rules.append(
                line(
                    "-A",
                    EXTERNAL_SERVICES,
                    "-m",
                    "comment",
                    "--comment",
                    external_comment,
                    "-m",
                    proto,
                    "-p",
                    proto,
                    "-d",
                    external_ip,
                    "--dport",
                    port,
                    "-j",
                    external_target,
                )
            )
    for lb_ip in svc.load_balancer_ips:
        if plan.has_endpoints:
            out.nat_rules.append(
                line(
                    "-A",
                    SERVICES,
                    "-m",
                    "comment",
                    "--comment",
                    f'"{pname} loadbalancer IP"',
                    "-m",
                    proto,
                    "-p",
                    proto,
                    "-d",
                    lb_ip,
                    "--dport",
                    port,
                    "-j",
                    external_chain,
                )
            )
    if not has_external:
        for lb_ip in svc.load_balancer_ips:
            out.filter_rules.append(
                line(
                    "-A",
                    EXTERNAL_SERVICES,
                    "-m",
                    "comment",
                    "--comment",
                    external_comment,
                    "-m",
                    proto,
                    "-p",
                    proto,
                    "-d",
                    lb_ip,
                    "--dport",
                    port,
                    "-j",
                    external_target,
                )
            )

    if svc.node_port:
        if plan.has_endpoints:
            out.nat_rules.append(
                line(
                    "-A",
                    NODEPORTS,
                    "-m",
                    "comment",
                    "--comment",
                    pname,
                    "-m",
                    proto,
                    "-p",
                    proto,
                    "--dport",
                    str(svc.node_port),
                    "-j",
                    external_chain,
                )
            )
        if not has_external:
            out.filter_rules.append(
                line(
                    "-A",
                    EXTERNAL_SERVICES,
                    "-m",
                    "comment",
                    "--comment",
                    external_comment,
                    "-m",
                    "addrtype",
                    "--dst-type",
                    "LOCAL",
                    "-m",
                    proto,
                    "-p",
                    proto,
                    "--dport",
                    str(svc.node_port),
                    "-j",
                    external_target,
                )
            )

    if svc.health_check_node_port:
        # Whether or not this node has a local endpoint: the load balancer's health checks must reach
        # kube-proxy's listener, which answers 503 where there is none.
        out.filter_rules.append(
            line(
                "-A",
                NODEPORTS,
                "-m",
                "comment",
                "--comment",
                f'"{pname} health check node port"',
                "-m",
                "tcp",
                "-p",
                "tcp",
                "--dport",
                str(svc.health_check_node_port),
                "-j",
                "ACCEPT",
            )
        )

    if has_internal:
        # Masquerade off-cluster traffic to the service VIP (the LocalTrafficDetector by cluster CIDR).
        out.nat_rules.append(
            line(
                "-A",
                internal_chain,
                "-m",
                "comment",
                "--comment",
                f'"{pname} cluster IP"',
                "-m",
                proto,
                "-p",
                proto,
                "-d",
                svc.cluster_ip,
                "--dport",
                port,
                "!",
                "-s",
                node.cluster_cidr,
                "-j",
                MARK_MASQ,
            )
        )

    if uses_external_chain:
        out.nat_chains.append(_chain_line(external_chain))
        active.append(external_chain)
        if not svc.external_policy_local:
            out.nat_rules.append(
                line(
                    "-A",
                    external_chain,
                    "-m",
                    "comment",
                    "--comment",
                    f'"masquerade traffic for {pname} external destinations"',
                    "-j",
                    MARK_MASQ,
                )
            )
        else:
            out.nat_rules.append(
                line(
                    "-A",
                    external_chain,
                    "-m",
                    "comment",
                    "--comment",
                    f'"pod traffic for {pname} external destinations"',
                    "-s",
                    node.cluster_cidr,
                    "-j",
                    cluster_chain,
                )
            )
            out.nat_rules.append(
                line(
                    "-A",
                    external_chain,
                    "-m",
                    "comment",
                    "--comment",
                    f'"masquerade LOCAL traffic for {pname} external destinations"',
                    "-m",
                    "addrtype",
                    "--src-type",
                    "LOCAL",
                    "-j",
                    MARK_MASQ,
                )
            )
            out.nat_rules.append(
                line(
                    "-A",
                    external_chain,
                    "-m",
                    "comment",
                    "--comment",
                    f'"route LOCAL traffic for {pname} external destinations"',
                    "-m",
                    "addrtype",
                    "--src-type",
                    "LOCAL",
                    "-j",
                    cluster_chain,
                )
            )
        if has_external:
            out.nat_rules.append(line("-A", external_chain, "-j", external_policy_chain))

    if uses_cluster_chain:
        out.nat_chains.append(_chain_line(cluster_chain))
        active.append(cluster_chain)
        _write_service_to_endpoints(out, plan, cluster_chain, plan.cluster_endpoints)
    if uses_local_chain:
        out.nat_chains.append(_chain_line(local_chain))
        active.append(local_chain)
        _write_service_to_endpoints(out, plan, local_chain, plan.local_endpoints)

    for ep in plan.reachable_endpoints:
        ep_chain = _endpoint_chain(plan, ep)
        out.nat_chains.append(_chain_line(ep_chain))
        active.append(ep_chain)
        base = ("-A", ep_chain, "-m", "comment", "--comment", pname)
        out.nat_rules.append(line(*base, "-s", ep.ip, "-j", MARK_MASQ))
        affinity: tuple[str, ...] = ()
        if svc.sticky_seconds is not None:
            affinity = ("-m", "recent", "--name", ep_chain, "--set")
        out.nat_rules.append(
            line(
                *base,
                *affinity,
                "-m",
                proto,
                "-p",
                proto,
                "-j",
                "DNAT",
                "--to-destination",
                ep.address,
            )
        )


def _write_service_to_endpoints(out: _Tables, plan: ServicePlan, chain: str, endpoints: tuple[Endpoint, ...]) -> None:
    pname = plan.service.port_name_string
    line = out.line
    if plan.service.sticky_seconds is not None:
        for ep in endpoints:
            ep_chain = _endpoint_chain(plan, ep)
            out.nat_rules.append(
                line(
                    "-A",
                    chain,
                    "-m",
                    "comment",
                    "--comment",
                    f'"{pname} -> {ep.address}"',
                    "-m",
                    "recent",
                    "--name",
                    ep_chain,
                    "--rcheck",
                    "--seconds",
                    str(plan.service.sticky_seconds),
                    "--reap",
                    "-j",
                    ep_chain,
                )
            )
    count = len(endpoints)
    for i, ep in enumerate(endpoints):
        statistic: tuple[str, ...] = ()
        if i < count - 1:
            statistic = ("-m", "statistic", "--mode", "random", "--probability", probability(count - i))
        out.nat_rules.append(
            line(
                "-A",
                chain,
                "-m",
                "comment",
                "--comment",
                f'"{pname} -> {ep.address}"',
                *statistic,
                "-j",
                _endpoint_chain(plan, ep),
            )
        )


def _skeleton(out: _Tables, node: NodeContext) -> None:
    """The chains every sync declares and the rules that do not depend on services."""
    mark = node.masquerade_mark
    for chain in (SERVICES, EXTERNAL_SERVICES, FORWARD, NODEPORTS, PROXY_FIREWALL, FIREWALL):
        out.filter_chains.append(_chain_line(chain))
    for chain in (SERVICES, NODEPORTS, POSTROUTING, MARK_MASQ):
        out.nat_chains.append(_chain_line(chain))
    line = out.line
    out.nat_rules.append(line("-A", POSTROUTING, "-m", "mark", "!", "--mark", f"{mark}/{mark}", "-j", "RETURN"))
    out.nat_rules.append(line("-A", POSTROUTING, "-j", "MARK", "--xor-mark", mark))
    out.nat_rules.append(
        line(
            "-A",
            POSTROUTING,
            "-m",
            "comment",
            "--comment",
            '"kubernetes service traffic requiring SNAT"',
            "-j",
            "MASQUERADE",
            "--random-fully",
        )
    )
    out.nat_rules.append(line("-A", MARK_MASQ, "-j", "MARK", "--or-mark", mark))


def _forward_rules(out: _Tables, node: NodeContext) -> None:
    mark = node.masquerade_mark
    line = out.line
    counter = ("-m", "nfacct", "--nfacct-name", NFACCT_INVALID) if node.nfacct else ()
    out.filter_rules.append(line("-A", FORWARD, "-m", "conntrack", "--ctstate", "INVALID", *counter, "-j", "DROP"))
    out.filter_rules.append(
        line(
            "-A",
            FORWARD,
            "-m",
            "comment",
            "--comment",
            '"kubernetes forwarding rules"',
            "-m",
            "mark",
            "--mark",
            f"{mark}/{mark}",
            "-j",
            "ACCEPT",
        )
    )
    out.filter_rules.append(
        line(
            "-A",
            FORWARD,
            "-m",
            "comment",
            "--comment",
            '"kubernetes forwarding conntrack rule"',
            "-m",
            "conntrack",
            "--ctstate",
            "RELATED,ESTABLISHED",
            "-j",
            "ACCEPT",
        )
    )


def _nodeports_jump(out: _Tables, exclude: str | None) -> None:
    """The tail call to KUBE-NODEPORTS; `exclude` is the loopback range NodePorts must not take."""
    out.nat_rules.append(
        out.line(
            "-A",
            SERVICES,
            "-m",
            "comment",
            "--comment",
            '"kubernetes service nodeports; NOTE: this must be the last rule in this chain"',
            "-m",
            "addrtype",
            "--dst-type",
            "LOCAL",
            *(("!", "-d", exclude) if exclude else ()),
            "-j",
            NODEPORTS,
        )
    )


def _restore_text(out: _Tables) -> str:
    return (
        "\n".join(["*filter", *out.filter_chains, *out.filter_rules, "COMMIT", "*nat", *out.nat_chains, *out.nat_rules, "COMMIT"])
        + "\n"
    )


def render_iptables6(node: NodeContext) -> str:
    """The ip6tables-restore input of a node with no IPv6 services (localhost NodePorts are IPv4 only)."""
    out = _Tables()
    _skeleton(out, node)
    _nodeports_jump(out, "::1/128")
    _forward_rules(out, node)
    return _restore_text(out)


def render_iptables(
    services: Iterable[Mapping[str, Any]],
    endpoint_slices: Iterable[Mapping[str, Any]],
    node: NodeContext,
    existing_nat_chains: Iterable[str] = (),
) -> IptablesRuleset:
    """Render one full kube-proxy sync for `iptables-restore --noflush` (and ip6tables when `node.ipv6`).

    `existing_nat_chains` are the chain names currently in the nat table (from `iptables-save -t
    nat`); those that are kube-proxy service chains and no longer used are flushed and deleted.
    """
    out = _Tables()
    _skeleton(out, node)
    line = out.line
    if node.localhost_nodeports:
        out.filter_rules.append(
            line(
                "-A",
                FIREWALL,
                "-m",
                "comment",
                "--comment",
                '"block incoming localnet connections"',
                "-d",
                "127.0.0.0/8",
                "!",
                "-s",
                "127.0.0.0/8",
                "-m",
                "conntrack",
                "!",
                "--ctstate",
                "RELATED,ESTABLISHED,DNAT",
                "-j",
                "DROP",
            )
        )

    active: list[str] = []
    for plan in plan_services(services, endpoint_slices, node):
        _write_service(out, plan, node, active)

    active_set = set(active)
    deleted = sorted(
        chain for chain in set(existing_nat_chains) if names.is_iptables_service_chain(chain) and chain not in active_set
    )
    for chain in deleted:
        out.nat_chains.append(_chain_line(chain))
        out.nat_rules.append(line("-X", chain))

    _nodeports_jump(out, None if node.localhost_nodeports else "127.0.0.0/8")
    _forward_rules(out, node)
    return IptablesRuleset(
        restore_input=_restore_text(out),
        jumps=JUMPS,
        restore_input6=render_iptables6(node) if node.ipv6 else None,
        nat_service_chains=tuple(active),
        deleted_chains=tuple(deleted),
        sysctls=((ROUTE_LOCALNET, "1"),) if node.localhost_nodeports else (),
    )


def nat_chains_from_save(save_output: str) -> frozenset[str]:
    """Chain names declared in `iptables-save` output (the ":CHAIN POLICY [p:b]" lines)."""
    return frozenset(ln[1:].split(" ", 1)[0] for ln in save_output.splitlines() if ln.startswith(":"))
