"""The conntrack hop: does an entry on the source node still steer this flow to a vanished endpoint."""

from __future__ import annotations

from bot.playbook.models import Evidence, Hop, StepStatus
from bot.playbook.models import VerdictCode as C
from bot.playbook.observations import ConntrackEntry, ConntrackView
from bot.playbook.remedies import remediation
from bot.playbook.steps.base import Ask, At, Candidate, Need, Outcome, Seen, Step, result, unchecked
from bot.playbook.steps.evidence import ev
from bot.playbook.steps.node_state import carries_traffic
from bot.playbook.steps.observe import ConntrackAsk

LABEL = "source: conntrack"


def _ask(at: At) -> ConntrackAsk | None:
    src, case, svc = at.source, at.case, at.case.service
    if case.entry is not None and case.source_kind != "pod":
        return None  # traffic from outside meets the receiving nodes' rules (the ingress step), not the source's
    if svc is None or src.node is None or case.port is None or not src.ip or svc.headless:
        return None  # no VIP, no NAT entries to go stale
    return ConntrackAsk(src.node, case.protocol, src.ip, svc.cluster_ip, case.port)


def _asks(at: At) -> tuple[Ask[object], ...]:
    ask = _ask(at)
    return (ask,) if ask is not None else ()


def _decide(at: At, seen: Seen) -> Outcome:
    ask, src, case, svc = _ask(at), at.source, at.case, at.case.service
    if ask is None or svc is None:
        return Outcome()
    observed = seen[ask]
    if observed.value is None:
        return Outcome(unchecked=unchecked(observed, "conntrack"))
    current = {e.ip for e in case.endpoints} | {svc.cluster_ip}
    flow = f"{src.ip} → {svc.cluster_ip}:{case.port}/{case.protocol}"
    stale, evidence = stale_entries(observed.value, current, flow, src.node)
    name = f"source {src.name}: conntrack"
    if not stale:
        summary = "no conntrack entry maps this flow to a vanished endpoint"
        return Outcome((result(LABEL, name, StepStatus.PASS, summary, evidence, src.node),))
    e = stale[0]
    summary = (
        f"a conntrack entry on {src.node} still maps {e.orig_src}:{e.orig_sport} → {e.orig_dst}:{e.orig_dport}/{case.protocol} to {e.reply_src}, "
        f"which is no endpoint of {svc.key} any more ({e.timeout}s left)"
    )
    found = Candidate(
        C.CONNTRACK_STALE_ENTRY,
        Hop.SERVICE_NAT,
        summary,
        src.node,
        remediation(C.CONNTRACK_STALE_ENTRY, node=ask.node, protocol=case.protocol, vip=svc.cluster_ip, stale=e.reply_src),
        src.key,
    )
    return Outcome((result(LABEL, name, StepStatus.FAIL, summary, evidence, src.node),), (found,))


def stale_entries(
    view: ConntrackView, current: set[str], flow: str, node: str | None
) -> tuple[list[ConntrackEntry], list[Evidence]]:
    """The entries that still steer traffic to an address in none of `current`, and the evidence of the read."""
    stale = [e for e in view.entries if carries_traffic(e) and e.reply_src not in current]
    listed = [
        {
            "orig": f"{e.orig_src}:{e.orig_sport} → {e.orig_dst}:{e.orig_dport}",
            "reply_src": f"{e.reply_src}:{e.reply_sport}",
            "state": e.state,
            "timeout": e.timeout,
            "status": list(e.status),
        }
        for e in view.entries[:20]
    ]
    return stale, [ev("conntrack", f"{view.total} entries for {flow} on {node}", node, entries=listed)]


STEP = Step("conntrack", Hop.SERVICE_NAT, frozenset({Need.CONNTRACK}), _asks, _decide)
