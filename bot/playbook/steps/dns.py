"""The DNS hop: does the target's name resolve from inside the source pod; if not, why not.

A failed lookup is followed to each DNS server: a broken path to one of them is that path's cause,
a server that does not listen is the cluster DNS failing.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from bot.playbook.case import routed_endpoints
from bot.playbook.models import Hop, StepStatus
from bot.playbook.models import VerdictCode as C
from bot.playbook.remedies import remediation
from bot.playbook.steps.base import Candidate, Need, SourceStep, SourceWalk
from bot.playbook.steps.evidence import ev
from bot.playbook.steps.path import endpoint_path


async def check_dns(sw: SourceWalk) -> None:
    """Resolve the target's name from inside the source pod; follow a failure to each DNS server."""
    w, src, case = sw.w, sw.src, sw.case
    if not case.dns_name or src.node is None:
        return
    started = time.monotonic()
    observed = await w.obs.probe_dns(src.node, pod_ip=src.ip or "", name=case.dns_name)
    if observed.value is None:
        # No answer is not "does not resolve": the lookup was never made.
        if observed.unreachable:
            w.unreachable(observed, f"the DNS lookup of {case.dns_name} from {src.key}")
        w.record(
            f"source {src.name}: DNS",
            StepStatus.WARN,
            f"{case.dns_name} could not be looked up from {src.key}: {observed.error}",
            (),
            started,
            src.node,
        )
        return
    probe = observed.value
    if probe.ok:
        text = f"{case.dns_name} → {', '.join(probe.answers)} via {probe.server} in {probe.latency_ms:.1f} ms"
        evidence = [ev("dns-probe", text, src.node, answers=list(probe.answers))]
        w.record(
            f"source {src.name}: DNS",
            StepStatus.PASS,
            f"{case.dns_name} resolves from {src.key}",
            evidence,
            started,
            src.node,
        )
        return
    rcode = f", {probe.rcode}" if probe.rcode and probe.rcode != "NOERROR" else ""
    detail = f"{probe.outcome}{rcode}"
    summary = f"{case.dns_name} does not resolve from {src.key} ({detail})"
    evidence = [ev("dns-probe", summary, src.node, outcome=probe.outcome, rcode=probe.rcode)]
    # Follow the lookup to each DNS server: a broken path to one of them is that cause, not "DNS".
    fqdn = case.dns_fqdn or case.dns_name
    servers = routed_endpoints(case.dns_endpoints)
    answers = await asyncio.gather(*(w.obs.probe_dns(src.node, pod_ip=src.ip or "", name=fqdn, server=e.ip) for e in servers))
    failing = []
    for e, answer in zip(servers, answers, strict=True):
        if answer.unreachable:
            w.unreachable(answer, f"the DNS query to {e.ip}")
        seen = answer.value.outcome if answer.value else answer.error
        evidence.append(
            ev("dns-probe", f"{e.pod.key if e.pod else e.ip} ({e.ip}) on {e.node}: {seen}", e.node, server=e.ip, outcome=seen)
        )
        if answer.value is not None and answer.value.outcome != "connected":
            failing.append(e)
    causes: list[Candidate] = []
    for found in await asyncio.gather(*(endpoint_path(sw, e, protocol="UDP", purpose="dns") for e in failing)):
        causes += found
    if any(c.code != C.DNS_RESOLUTION_FAILED for c in causes):
        why = f"{summary}: the path to {len(failing)} of {len(servers)} DNS servers is broken"
        w.record(f"source {src.name}: DNS", StepStatus.FAIL, why, evidence, started, src.node)
        return
    if not causes:
        guess = w.add(Candidate(C.DNS_RESOLUTION_FAILED, Hop.DNS, summary, None, remediation(C.DNS_RESOLUTION_FAILED), src.key))
        # The paths to the silent servers showed nothing wrong: the trace follows them, and a cause it
        # names on the wire replaces this one.
        sw.unexplained[:] = [replace(u, guess=guess) if u.purpose == "dns" else u for u in sw.unexplained]
        if probe.outcome == "timed_out":
            sw.lookup_timed_out = guess
    w.record(f"source {src.name}: DNS", StepStatus.FAIL, summary, evidence, started, src.node)


async def _dns(sw: SourceWalk) -> bool:
    await check_dns(sw)
    return True


STEP = SourceStep("DNS", Hop.DNS, frozenset({Need.PROBE_DNS}), _dns)
