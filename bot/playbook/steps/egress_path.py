"""After a probe to an address outside the cluster failed: was the pod's packet translated on its way
out of the source node, and what can be said about the rest of the path.

`AFTER_PROBE` reads the conntrack entry of the probe's flow on the source node: its reply tuple says
where the answers go — to the pod's own address when nothing translated the source, to the node's
when something masqueraded it. That is the kernel's own answer whatever wrote the rules (iptables,
nftables, an eBPF dataplane), so it decides over the rules; the nat POSTROUTING walk (the agent's
GetEgressNat) decides alone only when there is no entry. A packet that left the node translated, on a
usable route, and got no answer went somewhere no agent can look: the step says what was checked and
that the rest of the path is outside the cluster, and blames nothing in it (UNDETERMINED).

The asks and evidence of the route out and the masquerade live here too: the route-out step
(`bot.playbook.steps.egress`) asks the same questions before the probe, so the walk asks them once.
"""

from __future__ import annotations

from bot.playbook.models import Evidence, Hop, StepStatus
from bot.playbook.models import VerdictCode as C
from bot.playbook.observations import ConntrackEntry, ConntrackView, EgressNatView, RouteLookup
from bot.playbook.remedies import remediation
from bot.playbook.steps.base import Ask, At, Candidate, Need, Outcome, Seen, Step, Unchecked, result, unchecked
from bot.playbook.steps.evidence import ev, route_data
from bot.playbook.steps.observe import ConntrackAsk, EgressNatAsk, RouteAsk
from bot.playbook.steps.outside import outside_target, who

NAT_LABEL = "source: egress masquerade"
OUTSIDE_LABEL = "source: beyond the node"

__all__ = [
    "AFTER_PROBE",
    "masquerade_ask",
    "masquerade_of",
    "nat_evidence",
    "route_evidence",
    "route_out",
    "route_out_ask",
    "route_words",
]


def route_out_ask(at: At) -> RouteAsk | None:
    src, dst = at.source, outside_target(at)
    return RouteAsk(src.node, dst) if src.node is not None and dst is not None else None


def masquerade_ask(at: At) -> EgressNatAsk | None:
    """The pod's masquerade question; none for a host-network source, whose packets carry the node's address."""
    src, case, dst = at.source, at.case, outside_target(at)
    if src.node is None or dst is None or src.host_network or not src.ip or case.port is None:
        return None
    return EgressNatAsk(src.node, src.ip, dst, case.protocol, case.port)


def _conntrack_ask(at: At) -> ConntrackAsk | None:
    src, case, dst = at.source, at.case, outside_target(at)
    if src.node is None or dst is None or src.host_network or not src.ip or case.port is None:
        return None
    return ConntrackAsk(src.node, case.protocol, src.ip, dst, case.port)


def route_out(lookup: RouteLookup) -> bool:
    """The node can send to the destination: the kernel chose a unicast route."""
    return lookup.route is not None and lookup.route.usable


def route_words(dst: str, lookup: RouteLookup) -> str:
    route = lookup.route
    if route is None or route.type == "none":
        return f"no route to {dst}" + (f" ({lookup.error})" if lookup.error else "")
    if not route.usable:
        return f"a {route.type} route {route.destination or dst} covers {dst}" + (f" ({lookup.error})" if lookup.error else "")
    via = f" via {route.gateway}" if route.gateway else ""
    return f"{dst} by {route.destination or 'its route'}{via} dev {route.device or '?'}"


def route_evidence(node: str, dst: str, lookup: RouteLookup) -> Evidence:
    data = route_data(lookup.route) if lookup.route is not None else {}
    return ev("route", f"ip route get {dst} on {node}: {route_words(dst, lookup)}", node, error=lookup.error, **data)


def masquerade_of(view: EgressNatView) -> str:
    """One line: which rule translates the packet, or that none does."""
    if view.unreadable:
        return f"the nat rules could not be read: {view.unreadable}"
    if view.verdict == "translated" and view.rules:
        r = view.rules[-1]
        return f"{r.table} {r.chain}: {r.rule}"
    if view.verdict == "untranslated":
        walked = ", ".join(view.chains) or "POSTROUTING"
        exempt = [r for r in view.rules if r.target == "ACCEPT"]
        why = f" ({exempt[-1].chain}: {exempt[-1].rule} accepts it first)" if exempt else ""
        return f"no SNAT/MASQUERADE rule matches in {walked}{why}"
    maybe = "; ".join(f"{r.chain}: {r.rule}" for r in view.possible[:3])
    return f"only rules whose matches the flow cannot settle would translate it ({maybe})"


def nat_evidence(node: str, src_ip: str, dst: str, view: EgressNatView) -> Evidence:
    return ev(
        "egress-nat",
        f"nat POSTROUTING on {node} for {src_ip} → {dst}: {masquerade_of(view)}",
        node,
        verdict=view.verdict,
        out_interface=view.out_interface,
        chains=list(view.chains),
        rules=[f"{r.table} {r.chain}: {r.rule}" for r in view.rules],
        possible=[f"{r.table} {r.chain}: {r.rule}" for r in view.possible],
    )


# ------------------------------------------------------------------ after a failed probe outside


def _after_asks(at: At) -> tuple[Ask[object], ...]:
    return tuple(a for a in (route_out_ask(at), masquerade_ask(at), _conntrack_ask(at)) if a is not None)


def _entry_words(e: ConntrackEntry) -> str:
    state = f" {e.state}" if e.state else ""
    return f"{e.orig_src}:{e.orig_sport} → {e.orig_dst}:{e.orig_dport}{state}, replies to {e.reply_dst or '?'}"


def _entries(view: ConntrackView | None, src_ip: str, dst: str) -> tuple[ConntrackEntry, ...]:
    """The entries of the probe's flow shape (the agent filters already; checked again here)."""
    if view is None:
        return ()
    return tuple(e for e in view.entries if e.orig_src == src_ip and e.orig_dst == dst)


def _after_decide(at: At, seen: Seen) -> Outcome:
    src, case, dst = at.source, at.case, outside_target(at)
    route_ask = route_out_ask(at)
    if route_ask is None or dst is None or src.node is None:
        return Outcome()
    node = src.node
    routed = seen[route_ask].value
    if routed is None or not route_out(routed):
        return Outcome()  # the route step said it (a cause, or not checked)
    target = f"{dst}:{case.port}/{case.protocol}"
    route = routed.route
    exit_words = f"via {route.gateway or dst} dev {route.device or '?'}" if route is not None else ""
    nat_ask, ct_ask = masquerade_ask(at), _conntrack_ask(at)
    evidence: list[Evidence] = [route_evidence(node, dst, routed)]
    nat = seen[nat_ask] if nat_ask is not None else None
    if nat is not None and nat.value is not None:
        evidence.append(nat_evidence(node, src.ip or "", dst, nat.value))
    ct = seen[ct_ask] if ct_ask is not None else None
    entries = _entries(ct.value if ct is not None else None, src.ip or "", dst)
    missed = unchecked(ct, f"conntrack for {src.ip} → {target}") if ct is not None else ()
    if entries:
        evidence.append(
            ev(
                "conntrack",
                f"{len(entries)} entries on {node}: {_entry_words(entries[0])}",
                node,
                entries=[_entry_words(e) for e in entries[:10]],
            )
        )
    # An unanswered entry whose replies would go to the pod's own address is a packet that left
    # untranslated; translated entries may be older flows that were answered (TIME_WAIT lasts minutes).
    untranslated = [e for e in entries if e.reply_dst == src.ip and not e.replied]
    translated = [e for e in entries if e.reply_dst and e.reply_dst != src.ip]
    nat_view = nat.value if nat is not None else None
    name = f"source {src.name}: masquerade on {node}"
    if src.host_network:
        masq = f"{who(src)} sends from {node}'s own address"
    elif untranslated:
        why = f"the conntrack entry of the probe, {_entry_words(untranslated[0])}, shows the source was not translated"
        if nat_view is not None and not nat_view.unreadable:
            why += f" ({masquerade_of(nat_view)})"
        return _not_masqueraded(at, node, dst, why, evidence, missed)
    elif translated:
        masq = f"conntrack shows it masqueraded to {translated[0].reply_dst}"
    elif nat_view is not None and not nat_view.unreadable and nat_view.verdict == "untranslated":
        why = f"{masquerade_of(nat_view)}, so packets from {src.ip} leave {node} with the pod's own address"
        return _not_masqueraded(at, node, dst, why, evidence, missed)
    elif nat_view is not None and nat_view.verdict == "translated":
        masq = f"the rules masquerade it ({masquerade_of(nat_view)})"
    else:
        masq = "whether it is masqueraded could not be told"
    probe = at.trail.probes.get(dst)
    answer = (
        f"{dst} answered that nothing accepts {case.protocol} port {case.port} there ({probe.outcome})"
        if probe is not None and probe.outcome in ("refused", "reset")
        else "no answer came back"
    )
    summary = (
        f"{who(src)}'s packets to {target} leave {node} {exit_words}; {masq}; {answer}. "
        f"Beyond {node} the path is outside the cluster, where no kubereach agent can look: "
        f"check the destination, and the firewalls and routers between {node} and {dst}"
    )
    found = Candidate(
        C.UNDETERMINED,
        Hop.SOURCE_NODE,
        summary,
        None,
        (
            f"# from {node}: curl -v --max-time 5 {dst}:{case.port}   # does the node itself get an answer?",
            f"# on the way out: tcpdump -ni {route.device if route is not None and route.device else 'any'} host {dst}",
        ),
        src.key,
    )
    return Outcome((result(OUTSIDE_LABEL, name, StepStatus.WARN, summary, evidence, node),), (found,), unchecked=missed)


def _not_masqueraded(at: At, node: str, dst: str, why: str, evidence: list[Evidence], missed: tuple[Unchecked, ...]) -> Outcome:
    src = at.source
    summary = (
        f"pod traffic from {src.key} to {dst} leaves {node} without source NAT: {why}; "
        f"the outside cannot route answers to the pod address {src.ip}"
    )
    found = Candidate(
        C.EGRESS_NOT_MASQUERADED, Hop.SOURCE_NODE, summary, node, remediation(C.EGRESS_NOT_MASQUERADED, node=node), src.key
    )
    name = f"source {src.name}: masquerade on {node}"
    return Outcome(
        (result(NAT_LABEL, name, StepStatus.FAIL, summary, evidence, node),),
        (found,),
        unchecked=missed,
    )


AFTER_PROBE = Step(
    "egress_after_probe", Hop.SOURCE_NODE, frozenset({Need.ROUTE, Need.EGRESS_NAT, Need.CONNTRACK}), _after_asks, _after_decide
)
