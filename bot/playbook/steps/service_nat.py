"""The service-NAT hop: has kube-proxy on the source node programmed the VIP to the API's endpoints.

Only kube-proxy's iptables and nftables rules are read. A node whose agent says its service NAT is
done by something else (IPVS, Cilium's eBPF load balancer, other eBPF programs, or nothing kubereach
recognises: `NodeFacts.dataplane`) is said so, with the agent's evidence, as a note ("service NAT on
node-2 is done by …; not inspected"), never as missing or stale rules: the probes decide.

A reading that the rules are missing or stale is held on the trail (`Trail.nat_held`) until the
probes have run: the settle step turns it into a cause unless this walk's own probes contradict it.
"""

from __future__ import annotations

from bot.playbook.case import routed_endpoints
from bot.playbook.models import Finding, Hop, StepStatus
from bot.playbook.models import VerdictCode as C
from bot.playbook.observations import NodeFacts, not_inspected
from bot.playbook.remedies import remediation
from bot.playbook.steps.base import Ask, At, Candidate, NatReading, Need, Outcome, Seen, Step, no_asks, result, unchecked
from bot.playbook.steps.evidence import ev
from bot.playbook.steps.observe import NodeFactsAsk, ServiceNatAsk

LABEL = "source: service NAT"


def _ask(at: At) -> ServiceNatAsk | None:
    src, case, svc = at.source, at.case, at.case.service
    if case.entry is not None and case.source_kind != "pod":
        return None  # traffic from outside meets the receiving nodes' rules (the ingress step), not the source's
    if svc is None or src.node is None or case.port is None or svc.headless:
        return None  # a headless or ExternalName service has no VIP: nothing is NATed for it
    return ServiceNatAsk(src.node, svc.cluster_ip, case.port, case.protocol)


def _asks(at: At) -> tuple[Ask[object], ...]:
    ask = _ask(at)
    return (ask, NodeFactsAsk(ask.node)) if ask is not None else ()


def _foreign_dataplane(at: At, node: str, facts: NodeFacts) -> Outcome:
    """The source node's service NAT is done by a dataplane this step does not read: say so, decide nothing."""
    src, case, svc = at.source, at.case, at.case.service
    assert svc is not None
    what = not_inspected(node, facts.dataplane) or ""
    evidence = [
        ev(
            "dataplane",
            f"{node} ({facts.dataplane}): {'; '.join(facts.dataplane_evidence) or 'no evidence given'}",
            node,
            dataplane=facts.dataplane,
            evidence=list(facts.dataplane_evidence[:20]),
            vip=f"{svc.cluster_ip}:{case.port}/{case.protocol}",
        )
    ]
    note = Finding(C.UNDETERMINED, f"{what} ({'; '.join(facts.dataplane_evidence[:4])})", node, Hop.SERVICE_NAT)
    name = f"source {src.name}: service NAT"
    return Outcome((result(LABEL, name, StepStatus.WARN, what, evidence, node),), notes=(note,))


def _decide(at: At, seen: Seen) -> Outcome:
    ask, src, case, svc = _ask(at), at.source, at.case, at.case.service
    if ask is None or svc is None:
        return Outcome()
    facts = seen[NodeFactsAsk(ask.node)].value
    if facts is not None and not_inspected(ask.node, facts.dataplane):
        return _foreign_dataplane(at, ask.node, facts)
    observed = seen[ask]
    if observed.unreachable or observed.value is None:
        return Outcome(unchecked=unchecked(observed, "kube-proxy's rules"))
    nat = observed.value
    name = f"source {src.name}: service NAT"
    if nat.unreadable:
        what = f"the rules on {src.node} could not be read: service NAT on {src.node} uses a layout kubereach does not read yet"
        evidence = [
            ev(
                "service-nat",
                f"{src.node} ({nat.mode}): {nat.unreadable}",
                src.node,
                mode=nat.mode,
                layout=nat.layout,
                rules=list(nat.rules[:20]),
            )
        ]
        note = Finding(C.UNDETERMINED, f"{what} ({nat.unreadable})", src.node, Hop.SERVICE_NAT)
        return Outcome((result(LABEL, name, StepStatus.WARN, what, evidence, src.node),), notes=(note,))
    evidence = [
        ev(
            "service-nat",
            f"{src.node} ({nat.mode}): {svc.cluster_ip}:{case.port}/{case.protocol} "
            + (
                f"→ {', '.join(f'{e.ip}:{e.port}' for e in nat.endpoints) or nat.no_endpoints_action or 'nothing'}"
                if nat.programmed
                else "is not programmed"
            ),
            src.node,
            mode=nat.mode,
            layout=nat.layout,
            programmed=nat.programmed,
            endpoints=[f"{e.ip}:{e.port}" for e in nat.endpoints],
            chain=nat.service_chain,
            rules=list(nat.rules[:20]),
        )
    ]
    routed = routed_endpoints(case.endpoints)
    expected = {f"{e.ip}:{e.port}" for e in routed}
    programmed = {f"{e.ip}:{e.port}" for e in nat.endpoints}
    which = "ready" if any(e.ready for e in routed) else "serving terminating"
    if not expected:
        return Outcome((result(LABEL, name, StepStatus.PASS, "no ready endpoints to program", evidence, src.node),))
    if not nat.programmed or (not programmed and nat.no_endpoints_action):
        summary = f"kube-proxy on {src.node} has not programmed {svc.key} ({svc.cluster_ip}:{case.port}/{case.protocol}): traffic to the VIP is not translated"
        code = C.KUBE_PROXY_RULES_MISSING
    elif programmed != expected:
        gone, missing = sorted(programmed - expected), sorted(expected - programmed)
        summary = (
            f"kube-proxy's rules for {svc.key} on {src.node} are stale: they send traffic to {', '.join(gone) or 'nothing new'}"
            f"{' but miss ' + ', '.join(missing) if missing else ''}; the API's {which} endpoints are {', '.join(sorted(expected))}"
        )
        code = C.KUBE_PROXY_RULES_STALE
    else:
        summary = (
            f"kube-proxy ({nat.mode}) on {src.node} sends {svc.cluster_ip}:{case.port} to the {len(expected)} {which} endpoints"
        )
        return Outcome((result(LABEL, name, StepStatus.PASS, summary, evidence, src.node),))
    candidate = Candidate(code, Hop.SERVICE_NAT, summary, src.node, remediation(code, node=ask.node), src.key)
    return Outcome(nat_held=NatReading(candidate, tuple(evidence), frozenset(programmed), frozenset(expected)))


def _settle(at: At, seen: Seen) -> Outcome:
    """Turn a held service-NAT reading into a cause, unless this walk's own probes contradict it.

    A reading that the rules are missing, or that they send the VIP to none of the ready endpoints,
    cannot be right when the VIP answered and every ready endpoint answered: the rules were not read
    as they are (a layout read wrongly, rules changing under the read). That is said as a note and
    the probes' result stands. A reading that only misses some endpoints or keeps a vanished one
    among live ones is not contradicted by one VIP probe (it picks one endpoint at random) and stays.
    """
    held, src, probes = at.trail.nat_held, at.source, at.trail.probes
    if held is None:
        return Outcome()
    name = f"source {src.name}: service NAT"
    vip = probes.get("vip")
    ready = [e for e in at.case.endpoints if e.ready]
    answered = (
        vip is not None and vip.ok and bool(ready) and all((answer := probes.get(e.ip)) is not None and answer.ok for e in ready)
    )
    nowhere = held.candidate.code == C.KUBE_PROXY_RULES_MISSING or not (held.programmed & held.expected)
    if answered and nowhere:
        what = (
            f'the rules on {src.node} could not be read as expected: they read as "{held.candidate.summary}", '
            f"yet the VIP and all {len(ready)} ready endpoints answered {src.key}"
        )
        note = Finding(C.UNDETERMINED, what, src.node, Hop.SERVICE_NAT)
        return Outcome((result(LABEL, name, StepStatus.WARN, what, held.evidence, src.node),), notes=(note,), settled=True)
    failed = result(LABEL, name, StepStatus.FAIL, held.candidate.summary, held.evidence, src.node)
    return Outcome((failed,), (held.candidate,), settled=True)


STEP = Step("service_nat", Hop.SERVICE_NAT, frozenset({Need.SERVICE_NAT, Need.NODE_FACTS}), _asks, _decide)
SETTLE = Step("service_nat_settled", Hop.SERVICE_NAT, frozenset(), no_asks, _settle)
