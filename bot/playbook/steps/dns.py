"""The DNS hop: does the target's name resolve from inside the source pod; if not, why not.

A failed lookup is followed to each DNS server (a follow-up step asking each server directly, then
the path to the servers that did not answer): a broken path to one of them is that path's cause, a
server that does not listen is the cluster DNS failing.
"""

from __future__ import annotations

from bot.playbook.case import routed_endpoints
from bot.playbook.models import Evidence, Hop, StepStatus
from bot.playbook.models import VerdictCode as C
from bot.playbook.remedies import remediation
from bot.playbook.steps.base import Ask, At, Candidate, Need, Outcome, Seen, Step, result, unchecked
from bot.playbook.steps.evidence import ev
from bot.playbook.steps.observe import ProbeDnsAsk
from bot.playbook.steps.path import path_step

LABEL = "source: DNS"


def _ask(at: At) -> ProbeDnsAsk | None:
    src, case = at.source, at.case
    if not case.dns_name or src.node is None:
        return None
    return ProbeDnsAsk(src.node, src.ip or "", case.dns_name)


def _asks(at: At) -> tuple[Ask[object], ...]:
    ask = _ask(at)
    return (ask,) if ask is not None else ()


def _decide(at: At, seen: Seen) -> Outcome:
    """Resolve the target's name from inside the source pod; follow a failure to each DNS server."""
    ask, src, case = _ask(at), at.source, at.case
    if ask is None:
        return Outcome()
    observed = seen[ask]
    name = f"source {src.name}: DNS"
    if observed.value is None:
        # No answer is not "does not resolve": the lookup was never made.
        summary = f"{case.dns_name} could not be looked up from {src.key}: {observed.error}"
        return Outcome(
            (result(LABEL, name, StepStatus.WARN, summary, (), src.node),),
            unchecked=unchecked(observed, f"the DNS lookup of {case.dns_name} from {src.key}"),
        )
    probe = observed.value
    if probe.ok:
        text = f"{case.dns_name} → {', '.join(probe.answers)} via {probe.server} in {probe.latency_ms:.1f} ms"
        evidence = [ev("dns-probe", text, src.node, answers=list(probe.answers))]
        return Outcome((result(LABEL, name, StepStatus.PASS, f"{case.dns_name} resolves from {src.key}", evidence, src.node),))
    rcode = f", {probe.rcode}" if probe.rcode and probe.rcode != "NOERROR" else ""
    summary = f"{case.dns_name} does not resolve from {src.key} ({probe.outcome}{rcode})"
    failed = ev("dns-probe", summary, src.node, outcome=probe.outcome, rcode=probe.rcode)
    return Outcome(then=_servers_step(summary, failed, timed_out=probe.outcome == "timed_out"))


def _server_asks(at: At) -> tuple[ProbeDnsAsk, ...]:
    src, case = at.source, at.case
    fqdn = case.dns_fqdn or case.dns_name or ""
    return tuple(ProbeDnsAsk(src.node or "", src.ip or "", fqdn, e.ip) for e in routed_endpoints(case.dns_endpoints))


def _servers_step(summary: str, first: Evidence, *, timed_out: bool) -> Step:
    """Ask each DNS server directly; walk the path to those that do not answer."""

    def decide(at: At, seen: Seen) -> Outcome:
        servers = routed_endpoints(at.case.dns_endpoints)
        evidence = [first]
        outcome = Outcome()
        failing = []
        for e, ask in zip(servers, _server_asks(at), strict=True):
            answer = seen[ask]
            outcome += Outcome(unchecked=unchecked(answer, f"the DNS query to {e.ip}"))
            said = answer.value.outcome if answer.value else answer.error
            evidence.append(
                ev("dns-probe", f"{e.pod.key if e.pod else e.ip} ({e.ip}) on {e.node}: {said}", e.node, server=e.ip, outcome=said)
            )
            if answer.value is not None and answer.value.outcome != "connected":
                failing.append(e)

        def conclude(causes: tuple[Candidate, ...]) -> Outcome:
            src, name = at.source, f"source {at.source.name}: DNS"
            if any(c.code != C.DNS_RESOLUTION_FAILED for c in causes):
                why = f"{summary}: the path to {len(failing)} of {len(servers)} DNS servers is broken"
                return Outcome((result(LABEL, name, StepStatus.FAIL, why, evidence, src.node),))
            if causes:
                return Outcome((result(LABEL, name, StepStatus.FAIL, summary, evidence, src.node),))
            guess = Candidate(C.DNS_RESOLUTION_FAILED, Hop.DNS, summary, None, remediation(C.DNS_RESOLUTION_FAILED), src.key)
            # The paths to the silent servers showed nothing wrong: the trace follows them, and a cause
            # it names on the wire withdraws this one.
            return Outcome(
                (result(LABEL, name, StepStatus.FAIL, summary, evidence, src.node),),
                (guess,),
                dns_guess=guess,
                lookup_timed_out=timed_out,
            )

        if not failing:
            return outcome + conclude(())
        return outcome + Outcome(then=path_step(tuple(failing), "UDP", "dns", conclude))

    return Step("dns_servers", Hop.DNS, frozenset({Need.PROBE_DNS}), _server_asks, decide)


STEP = Step("dns", Hop.DNS, frozenset({Need.PROBE_DNS}), _asks, _decide)
