"""kube-proxy's iptables mode: the walk over parsed `iptables-save` output (pure).

KUBE-SERVICES → KUBE-SVC/KUBE-SVL/KUBE-EXT/KUBE-FW → KUBE-SEP (DNAT), plus the filter table's
REJECT/DROP rules for services without endpoints and KUBE-NODEPORTS for a VIP that is a node address.
A service chain that sends packets somewhere the walk does not know is reported as layout `unknown`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

from nodeagent.checks.iptables_save import IptablesRule, IptablesSave, parse_rule
from nodeagent.checks.nat.model import MAX_EVIDENCE_RULES, NatEndpoint, ServiceNat

SERVICE_CHAIN_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-")
_COMMENT_SUFFIXES = (" cluster IP", " external IP", " loadbalancer IP", " has no endpoints", " has no local endpoints")


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


def dispatches(rule: IptablesRule, vip: str, port: int, proto: str) -> bool:
    """Whether a KUBE-SERVICES rule sends VIP:port/proto (protocol in lower case) to a service chain:
    the first such rule is the one the walk follows."""
    return _dst_matches(rule, vip) and _l4_matches(rule, port, proto) and (rule.target or "").startswith(SERVICE_CHAIN_PREFIXES)


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
    for rule in (parse_rule(line) for line in chain.rule_lines if "DNAT" in line):  # (skips the masquerade rule unparsed)
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
    odd: list[str] = field(default_factory=list)
    """Service-chain rules jumping to targets the walk does not know (they may translate the service)."""

    def note(self, text: str) -> None:
        if len(self.evidence) < MAX_EVIDENCE_RULES:
            self.evidence.append(text)


_KNOWN_SERVICE_TARGETS = ("KUBE-MARK-MASQ", "KUBE-MARK-DROP", "RETURN", "ACCEPT", "MARK", "")


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
        elif target not in _KNOWN_SERVICE_TARGETS:
            walk.odd.append(rule.text)


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
    result = _result("iptables", vip, port, protocol, True, walk)
    if not walk.endpoints and walk.no_endpoints_action is None and walk.odd:
        # a service chain that sends its packets somewhere the walk does not know: say so, never guess
        why = f"service NAT uses a layout kubereach does not read yet: {walk.odd[0]}"
        return replace(result, layout="unknown", unreadable=why, rules=(*result.rules, f"# not read: {walk.odd[0]}"))
    return result


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
            if dispatches(rule, vip, port, proto):
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
