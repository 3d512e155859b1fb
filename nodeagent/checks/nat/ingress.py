"""kube-proxy's dispatch of traffic from outside the cluster: a NodePort, an external IP or a load
balancer's IP, walked as a client outside the cluster meets it (pure; both proxy modes).

Upstream's pkg/proxy/iptables and pkg/proxy/nftables write the same shape in two syntaxes:

- the entry: nat `KUBE-NODEPORTS` (`--dport NODEPORT -j KUBE-EXT-…`, reached from the tail of
  KUBE-SERVICES for local destinations) or a KUBE-SERVICES rule `-d EXTERNAL_OR_LB_IP --dport PORT -j
  KUBE-EXT-…` (nftables: a `service-nodeports` element `proto . nodeport : goto external-…`, or a
  `service-ips` element `IP . proto . port : goto external-…`);
- the external chain: with `externalTrafficPolicy: Cluster` it marks for masquerade and jumps to the
  cluster chain (KUBE-SVC / service-…). With `Local` it first short-circuits pod traffic
  (`-s CLUSTER_CIDR`, `ip saddr CIDR`) and the node's own traffic (`--src-type LOCAL`, `fib saddr type
  local`) to the cluster chain; those rules never match a client outside the cluster, so the walk
  passes them by. What such a client meets next is the jump to the local chain (KUBE-SVL / local-…),
  which holds only this node's endpoints — or nothing, when the node has none;
- the filter side: with no endpoints for external traffic kube-proxy REJECTs (no endpoints at all) or
  DROPs ("has no local endpoints": endpoints exist, none on this node) in filter
  `KUBE-EXTERNAL-SERVICES` (nftables: the `no-endpoint-nodeports` / `no-endpoint-services` element's
  `drop`), which the undiverted packet meets on its way to the node's INPUT;
- iptables mode also ACCEPTs a LoadBalancer's health check node port in filter `KUBE-NODEPORTS`
  (`"ns/svc:port health check node port"`); nftables mode writes no rule for it.

The answer is a `ServiceNat` with `entry` set, the endpoints external traffic reaches from this node,
`external_policy` as the rules show it, the drop when there is one, and every rule on the way.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any

from nodeagent.checks.iptables_save import IptablesRule, IptablesSave, parse_rule
from nodeagent.checks.nat import iptables as ipt
from nodeagent.checks.nat import nftables as nft
from nodeagent.checks.nat.model import ServiceNat, not_programmed
from nodeagent.checks.nat.nft_json import render_rule

NODEPORT = "nodeport"
EXTERNAL_IP = "external-ip"
LOAD_BALANCER = "load-balancer"
ENTRY_KINDS = (NODEPORT, EXTERNAL_IP, LOAD_BALANCER)
"""Where traffic from outside enters a service: a node's IP and a NodePort, an external IP, a load
balancer ingress IP (the last two with the service port)."""

LOCAL = "Local"
CLUSTER = "Cluster"
_OUTSIDE_SKIPS = "  # not taken by a client outside the cluster"
NODEPORT_IPS = "nodeport-ips"
"""The set of addresses kube-proxy's nftables mode takes NodePorts on (`--nodeport-addresses`)."""


def _entry_result(found: ServiceNat, entry: str, policy: str, health_port: int | None = None) -> ServiceNat:
    return replace(found, entry=entry, external_policy=policy, health_check_node_port=health_port)


# ---------------------------------------------------------------------------------------- iptables


def _source_bound(rule: IptablesRule) -> bool:
    """A rule only for traffic from pods (`-s CIDR`) or from the node itself (`--src-type LOCAL`)."""
    source = rule.match("-s")
    src_type = rule.match("--src-type")
    return (source is not None and not source.negated) or (src_type is not None and not src_type.negated)


def _iptables_external(save: IptablesSave, chain_name: str, walk: ipt._Walk) -> str:
    """Follow an external-traffic chain as a client outside the cluster; the policy it shows."""
    nat = save.table("nat")
    chain = nat.chains.get(chain_name) if nat else None
    if chain is None:
        walk.note(f"# chain {chain_name} is referenced but missing from the nat table")
        return ""
    if not chain_name.startswith("KUBE-EXT-"):  # older releases jumped straight to the service chain
        ipt._walk_service_chain(save, chain_name, walk)
        return LOCAL if chain_name.startswith(("KUBE-SVL-", "KUBE-XLB-")) else CLUSTER
    local = False
    for rule in chain.rules():
        target = rule.target or ""
        if walk.service_name is None:
            walk.service_name = ipt._service_name(rule.comment)
        if _source_bound(rule):
            walk.note(rule.text + _OUTSIDE_SKIPS)
            local = True
            continue
        if target == "KUBE-MARK-MASQ":
            walk.note(rule.text)
            continue
        if target.startswith(("KUBE-SVC-", "KUBE-SVL-", "KUBE-XLB-")):
            walk.note(rule.text)
            ipt._walk_service_chain(save, target, walk)
            return LOCAL if local or not target.startswith("KUBE-SVC-") else CLUSTER
        if target in ("DROP", "REJECT"):
            walk.note(rule.text)
            walk.no_endpoints_action = target
            return LOCAL if local else CLUSTER
        walk.odd.append(rule.text)
    walk.note(f"# {chain_name} ends here for a client outside the cluster: no endpoint on this node takes it")
    return LOCAL if local else ""


def _iptables_dispatch(save: IptablesSave, entry: str, address: str, port: int, proto: str) -> IptablesRule | None:
    nat = save.table("nat")
    if nat is None:
        return None
    if entry == NODEPORT:
        chain = nat.chains.get("KUBE-NODEPORTS")
        for rule in _rules_for_port(chain.rule_lines if chain else (), port):
            if ipt._l4_matches(rule, port, proto) and (rule.target or "").startswith(ipt.SERVICE_CHAIN_PREFIXES):
                return rule
        return None
    services = nat.chains.get("KUBE-SERVICES")
    for line in services.lines_by_destination.get(address, ()) if services else ():
        rule = parse_rule(line)
        if ipt.dispatches(rule, address, port, proto):
            return rule
    return None


def _rules_for_port(lines: Iterable[str], port: int) -> Iterator[IptablesRule]:
    """The rules among `lines` that name `port` (`--dport PORT`), parsed; the others are not (a chain of
    a node with thousands of NodePorts is scanned as text)."""
    needle = f"--dport {port}"
    for line in lines:
        at = line.find(needle)
        if at >= 0 and line[at + len(needle) : at + len(needle) + 1] in ("", " "):
            yield parse_rule(line)


def _nodeport_drop(save: IptablesSave, port: int, proto: str) -> IptablesRule | None:
    """filter KUBE-EXTERNAL-SERVICES's REJECT/DROP of a NodePort (`--dst-type LOCAL --dport PORT`)."""
    filt = save.table("filter")
    chain = filt.chains.get("KUBE-EXTERNAL-SERVICES") if filt else None
    for rule in _rules_for_port(chain.rule_lines if chain else (), port):
        if rule.target in ("REJECT", "DROP") and ipt._l4_matches(rule, port, proto) and rule.match("--dst-type") is not None:
            return rule
    return None


def _nodeports_tail(save: IptablesSave) -> str | None:
    """The KUBE-SERVICES rule that hands local destinations to KUBE-NODEPORTS (kube-proxy writes it last)."""
    nat = save.table("nat")
    services = nat.chains.get("KUBE-SERVICES") if nat else None
    for line in reversed(services.rule_lines if services else ()):
        if line.endswith("-j KUBE-NODEPORTS"):
            return parse_rule(line).text
    return None


def _iptables_health_port(save: IptablesSave, service_name: str | None) -> int | None:
    """The health check node port filter KUBE-NODEPORTS accepts for this service port, if any."""
    filt = save.table("filter")
    chain = filt.chains.get("KUBE-NODEPORTS") if filt else None
    if chain is None or not service_name:
        return None
    wanted = f"{service_name} health check node port"
    for rule in (parse_rule(line) for line in chain.rule_lines if wanted in line):
        dport = rule.match("--dport")
        if rule.target == "ACCEPT" and rule.comment == wanted and dport is not None and dport.value.isdigit():
            return int(dport.value)
    return None


def iptables_entry_nat(
    save: IptablesSave, entry: str, address: str, port: int, protocol: str, address_is_local: bool | None = None
) -> ServiceNat:
    """How this node dispatches a client outside the cluster connecting to `address`:`port` through
    `entry` (a NodePort on the node's `address`, an external IP or a load balancer IP).

    `address_is_local` says whether `address` is one of the node's (KUBE-NODEPORTS is reached only for
    local destinations); None means unknown.
    """
    proto = protocol.lower()
    walk = ipt._Walk(evidence=[], endpoints=[])
    if entry == NODEPORT:
        if address_is_local is False:
            note = f"# {address} is not an address of this node: the NodePort rules (-m addrtype --dst-type LOCAL) do not take it"
            return _entry_result(not_programmed("iptables", address, port, protocol, note), entry, "")
        walk.note(_nodeports_tail(save) or "# KUBE-SERVICES has no jump to KUBE-NODEPORTS")
    dispatch = _iptables_dispatch(save, entry, address, port, proto)
    if entry == NODEPORT:
        drop = _nodeport_drop(save, port, proto)
    else:
        drop = ipt._reject_rule(save, "KUBE-EXTERNAL-SERVICES", address, port, proto)
    if dispatch is None and drop is None:
        walk.note(f"# no {'KUBE-NODEPORTS' if entry == NODEPORT else 'KUBE-SERVICES'} rule for {address}:{port}/{proto}")
        return _entry_result(ipt._result("iptables", address, port, protocol, False, walk), entry, "")
    policy = ""
    if dispatch is not None:
        walk.note(dispatch.text)
        walk.service_name = ipt._service_name(dispatch.comment)
        policy = _iptables_external(save, dispatch.target or "", walk)
    if drop is not None and not walk.endpoints:
        walk.note(drop.text)
        walk.service_name = walk.service_name or ipt._service_name(drop.comment)
        walk.no_endpoints_action = drop.target
        if (drop.comment or "").endswith(" has no local endpoints"):
            policy = LOCAL
    result = ipt._result("iptables", address, port, protocol, True, walk)
    if not walk.endpoints and walk.no_endpoints_action is None and walk.odd:
        why = f"service NAT uses a layout kubereach does not read yet: {walk.odd[0]}"
        result = replace(result, layout="unknown", unreadable=why, rules=(*result.rules, f"# not read: {walk.odd[0]}"))
    return _entry_result(result, entry, policy, _iptables_health_port(save, walk.service_name))


# ---------------------------------------------------------------------------------------- nftables


def _nft_source_bound(rule: tuple[Any, ...]) -> bool:
    """A rule matching the packet's source address (`ip saddr CIDR`, `fib saddr type local`)."""
    for expr in rule:
        match = expr.get("match") if isinstance(expr, dict) else None
        if isinstance(match, dict) and match.get("op", "==") in ("==", "in") and '"saddr"' in json.dumps(match.get("left")):
            return True
    return False


def _nft_marks_only(rule: tuple[Any, ...]) -> bool:
    """A rule that only marks the packet for masquerade (`meta mark set …`, `jump mark-for-masquerade`)."""
    targets = nft.rule_targets(rule)
    if targets:
        return all(t == "mark-for-masquerade" for _, t in targets)
    return any(isinstance(e, dict) and "mangle" in e for e in rule)


def _nft_external(ruleset: nft.NftRuleset, chain: str, walk: nft._Walk) -> str:
    """Follow an `external-…` chain as a client outside the cluster; the policy it shows."""
    if chain not in ruleset.chains:
        walk.note(f"# chain {chain} is referenced but missing")
        return ""
    if not chain.startswith("external-"):
        nft._walk_service(ruleset, chain, walk)
        return LOCAL if chain.startswith("local-") else CLUSTER
    local = False
    for rule in ruleset.chains[chain]:
        text = render_rule(chain, rule)
        if _nft_source_bound(rule):
            walk.note(text + _OUTSIDE_SKIPS)
            local = True
            continue
        if _nft_marks_only(rule):
            walk.note(text)
            continue
        targets = nft.rule_targets(rule)
        if targets:
            walk.note(text)
            target = targets[0][1]
            nft._walk_service(ruleset, target, walk)
            return LOCAL if local or target.startswith("local-") else CLUSTER
        if any(isinstance(e, dict) and ("drop" in e or "reject" in e) for e in rule):
            walk.note(text)
            walk.no_endpoints_action = "DROP" if any(isinstance(e, dict) and "drop" in e for e in rule) else "REJECT"
            return LOCAL if local else CLUSTER
        walk.odd.append(text)
    walk.note(f"# {chain} ends here for a client outside the cluster: no endpoint on this node takes it")
    return LOCAL if local else ""


def nft_entry_nat(
    ruleset: nft.NftRuleset, entry: str, address: str, port: int, protocol: str, address_is_local: bool | None = None
) -> ServiceNat:
    """The nftables form of `iptables_entry_nat`: `service-nodeports` / `service-ips` → `external-…` →
    the service or local chain, and `no-endpoint-nodeports` / `no-endpoint-services` for the drop."""
    proto = protocol.lower()
    walk = nft._Walk(evidence=[], endpoints=[], vip=address, proto=proto, port=port)
    key: tuple[str, ...]
    if entry == NODEPORT:
        takes = address in ruleset.sets[NODEPORT_IPS] if NODEPORT_IPS in ruleset.sets else address_is_local
        if takes is False:
            note = f"# {address} does not take NodePorts on this node (not in @nodeport-ips, or not a local address)"
            return _entry_result(not_programmed("nftables", address, port, protocol, note), entry, "")
        dispatch_map, drop_map, key = "service-nodeports", "no-endpoint-nodeports", (proto, str(port))
    else:
        dispatch_map, drop_map, key = "service-ips", "no-endpoint-services", (address, proto, str(port))
    dispatch, drop = ruleset.element(dispatch_map, key), ruleset.element(drop_map, key)
    if dispatch is None and drop is None:
        problem = nft.table_unreadable(ruleset)
        if problem:
            walk.layout, walk.unreadable = nft.LAYOUT_UNKNOWN, problem
        walk.note(f"# not read: {problem}" if problem else f"# no {dispatch_map} element for {' . '.join(key)}")
        return _entry_result(nft._result(address, port, protocol, False, None, walk), entry, "")
    policy = ""
    if dispatch is not None:
        walk.note(dispatch.render(dispatch_map))
        if dispatch.target:
            policy = _nft_external(ruleset, dispatch.target, walk)
    if drop is not None and not walk.endpoints:
        walk.note(drop.render(drop_map))
        walk.no_endpoints_action = nft._action_of(ruleset, drop)
        if walk.no_endpoints_action == "DROP":
            policy = LOCAL
    if not walk.unreadable and not walk.endpoints and walk.no_endpoints_action is None and walk.odd:
        walk.unknown(f"{walk.odd[0]} (a statement kubereach does not know, and no endpoint was found)")
    name = (dispatch.comment if dispatch else None) or (drop.comment if drop else None)
    return _entry_result(nft._result(address, port, protocol, True, name, walk), entry, policy)
