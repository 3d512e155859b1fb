"""The service-NAT hop: has kube-proxy on the source node programmed the VIP to the API's endpoints.

A reading that the rules are missing or stale is held (`SourceWalk.nat_pending`) until the probes
have run: the settle step turns it into a cause unless this walk's own probes contradict it.
"""

from __future__ import annotations

import time

from bot.playbook.case import routed_endpoints
from bot.playbook.models import Finding, Hop, StepStatus
from bot.playbook.models import VerdictCode as C
from bot.playbook.remedies import remediation
from bot.playbook.steps.base import Candidate, NatReading, Need, SourceStep, SourceWalk
from bot.playbook.steps.evidence import ev


async def check_service_nat(sw: SourceWalk) -> None:
    w, src, case, svc = sw.w, sw.src, sw.case, sw.case.service
    if svc is None or src.node is None or case.port is None:
        return
    started = time.monotonic()
    observed = await w.obs.service_nat(src.node, svc.cluster_ip, case.port, case.protocol)
    if observed.unreachable or observed.value is None:
        if observed.unreachable:
            w.unreachable(observed, "kube-proxy's rules")
        return
    nat = observed.value
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
        w.notes.append(Finding(C.UNDETERMINED, f"{what} ({nat.unreadable})", src.node, Hop.SERVICE_NAT))
        w.record(f"source {src.name}: service NAT", StepStatus.WARN, what, evidence, started, src.node)
        return
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
        w.record(f"source {src.name}: service NAT", StepStatus.PASS, "no ready endpoints to program", evidence, started, src.node)
        return
    if not nat.programmed or (not programmed and nat.no_endpoints_action):
        summary = f"kube-proxy on {src.node} has not programmed {svc.key} ({svc.cluster_ip}:{case.port}/{case.protocol}): traffic to the VIP is not translated"
        candidate = Candidate(
            C.KUBE_PROXY_RULES_MISSING,
            Hop.SERVICE_NAT,
            summary,
            src.node,
            remediation(C.KUBE_PROXY_RULES_MISSING, node=src.node),
            src.key,
        )
        sw.nat_pending = NatReading(candidate, tuple(evidence), started, frozenset(programmed), frozenset(expected))
    elif programmed != expected:
        gone, missing = sorted(programmed - expected), sorted(expected - programmed)
        summary = (
            f"kube-proxy's rules for {svc.key} on {src.node} are stale: they send traffic to {', '.join(gone) or 'nothing new'}"
            f"{' but miss ' + ', '.join(missing) if missing else ''}; the API's {which} endpoints are {', '.join(sorted(expected))}"
        )
        candidate = Candidate(
            C.KUBE_PROXY_RULES_STALE,
            Hop.SERVICE_NAT,
            summary,
            src.node,
            remediation(C.KUBE_PROXY_RULES_STALE, node=src.node),
            src.key,
        )
        sw.nat_pending = NatReading(candidate, tuple(evidence), started, frozenset(programmed), frozenset(expected))
    else:
        w.record(
            f"source {src.name}: service NAT",
            StepStatus.PASS,
            f"kube-proxy ({nat.mode}) on {src.node} sends {svc.cluster_ip}:{case.port} to the {len(expected)} {which} endpoints",
            evidence,
            started,
            src.node,
        )


def settle_service_nat(sw: SourceWalk) -> None:
    """Turn a held service-NAT reading into a cause, unless this walk's own probes contradict it.

    A reading that the rules are missing, or that they send the VIP to none of the ready endpoints,
    cannot be right when the VIP answered and every ready endpoint answered: the rules were not read
    as they are (a layout read wrongly, rules changing under the read). That is said as a note and
    the probes' result stands. A reading that only misses some endpoints or keeps a vanished one
    among live ones is not contradicted by one VIP probe (it picks one endpoint at random) and stays.
    """
    held, sw.nat_pending = sw.nat_pending, None
    if held is None:
        return
    w, src = sw.w, sw.src
    name = f"source {src.name}: service NAT"
    vip = sw.probe_outcome.get("vip")
    ready = [e for e in sw.case.endpoints if e.ready]
    answered = (
        vip is not None
        and vip.ok
        and bool(ready)
        and all((seen := sw.probe_outcome.get(e.ip)) is not None and seen.ok for e in ready)
    )
    nowhere = held.candidate.code == C.KUBE_PROXY_RULES_MISSING or not (held.programmed & held.expected)
    if answered and nowhere:
        what = (
            f'the rules on {src.node} could not be read as expected: they read as "{held.candidate.summary}", '
            f"yet the VIP and all {len(ready)} ready endpoints answered {src.key}"
        )
        w.notes.append(Finding(C.UNDETERMINED, what, src.node, Hop.SERVICE_NAT))
        w.record(name, StepStatus.WARN, what, held.evidence, held.started, src.node)
        return
    w.add(held.candidate)
    w.record(name, StepStatus.FAIL, held.candidate.summary, held.evidence, held.started, src.node)


async def _service_nat(sw: SourceWalk) -> bool:
    await check_service_nat(sw)
    return True


async def _settle(sw: SourceWalk) -> bool:
    settle_service_nat(sw)
    return True


STEP = SourceStep("service NAT", Hop.SERVICE_NAT, frozenset({Need.SERVICE_NAT}), _service_nat)
SETTLE = SourceStep("service NAT, settled by the probes", Hop.SERVICE_NAT, frozenset(), _settle)
