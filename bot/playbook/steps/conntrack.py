"""The conntrack hop: does an entry on the source node still steer this flow to a vanished endpoint."""

from __future__ import annotations

from bot.playbook.models import Finding, Hop, StepStatus
from bot.playbook.models import VerdictCode as C
from bot.playbook.remedies import remediation
from bot.playbook.steps.base import Ask, At, Candidate, Need, Outcome, Seen, Step, result, unchecked
from bot.playbook.steps.node_state import stale_entries
from bot.playbook.steps.observe import ConntrackAsk, ProbeAsk
from bot.playbook.steps.probe_asks import vip_probe

LABEL = "source: conntrack"


def _ask(at: At) -> ConntrackAsk | None:
    src, case, svc = at.source, at.case, at.case.service
    if case.entry is not None and case.source_kind != "pod":
        return None  # traffic from outside meets the receiving nodes' rules (the ingress step), not the source's
    if svc is None or src.node is None or case.port is None or not src.ip or svc.headless:
        return None  # no VIP, no NAT entries to go stale
    return ConntrackAsk(src.node, case.protocol, src.ip, svc.cluster_ip, case.port)


def _connects(at: At) -> ProbeAsk | None:
    """For TCP, the probe through the VIP: a stale TCP entry holds only its own connection (a new
    one takes a new port and a new entry), so it explains the failure only when new connections work."""
    return vip_probe(at) if at.case.protocol.upper() == "TCP" else None


def _asks(at: At) -> tuple[Ask[object], ...]:
    ask = _ask(at)
    if ask is None:
        return ()
    probe = _connects(at)
    return (ask,) if probe is None else (ask, probe)


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
    probe = _connects(at)
    if probe is not None:
        connected = seen[probe].value
        if connected is None or not connected.ok:
            # New connections fail too, and this entry cannot be why: said, and the walk goes on to the cause.
            said = f"{summary}; it holds only that connection, and new connections fail for another reason"
            note = Finding(C.CONNTRACK_STALE_ENTRY, said, src.node, Hop.SERVICE_NAT)
            return Outcome((result(LABEL, name, StepStatus.WARN, said, evidence, src.node),), notes=(note,))
        summary += ": new connections work (the probe through the VIP connected), the established ones it holds hang"
    found = Candidate(
        C.CONNTRACK_STALE_ENTRY,
        Hop.SERVICE_NAT,
        summary,
        src.node,
        remediation(C.CONNTRACK_STALE_ENTRY, node=ask.node, protocol=case.protocol, vip=svc.cluster_ip, stale=e.reply_src),
        src.key,
    )
    return Outcome((result(LABEL, name, StepStatus.FAIL, summary, evidence, src.node),), (found,))


STEP = Step("conntrack", Hop.SERVICE_NAT, frozenset({Need.CONNTRACK, Need.PROBE}), _asks, _decide)
