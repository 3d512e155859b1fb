"""The DNS hop: does the target's name resolve from inside the source pod; if not, why not.

The lookup is the pod's own: the agent resolves the name in the pod's namespace through its
resolv.conf (search list and ndots), as the application would. What it answers decides what follows:

- an answer: the addresses go on the trail (`Outcome.resolved`) for a name outside the cluster, so the
  steps after this one probe what the source really connects to. A headless service answers its pods'
  IPs (there is no VIP and nothing is NATed); an ExternalName service answers its CNAME, followed to
  the addresses outside. A lookup answered only after its query was sent again is followed to the
  source node's conntrack counters (`bot.playbook.steps.dns_upstream.race_step`);
- NXDOMAIN for a name outside the cluster: the name does not exist. That is the answer, not a network
  fault, and nothing is followed;
- SERVFAIL or a timeout for a name outside the cluster: the cluster DNS is asked a name of its own and
  the upstream resolver is asked directly from each DNS pod (`bot.playbook.steps.dns_upstream`);
- any other failure, or a cluster name: each DNS server is asked directly, then the path to the servers
  that did not answer is walked: a broken path to one of them is that path's cause, a server that does
  not listen is the cluster DNS failing.
"""

from __future__ import annotations

from bot.playbook.case import Case, PodRef, routed_endpoints
from bot.playbook.models import Evidence, Finding, Hop, StepStatus
from bot.playbook.models import VerdictCode as C
from bot.playbook.observations import ProbeView
from bot.playbook.remedies import remediation
from bot.playbook.steps import dns_conntrack, dns_upstream
from bot.playbook.steps.base import Ask, At, Candidate, Need, Outcome, Seen, Step, result, unchecked
from bot.playbook.steps.dns_words import addresses, aliases, answer_words, expansion_evidence, failure_kind, in_cluster
from bot.playbook.steps.evidence import ev
from bot.playbook.steps.observe import ProbeDnsAsk
from bot.playbook.steps.path import path_step

LABEL = "source: DNS"


def lookup_name(case: Case) -> str | None:
    """The name the source resolves: the service's (an ExternalName service's too: its CNAME is the
    answer), else the external name it connects to."""
    return case.dns_name or case.external_name


def outside_name(case: Case) -> str | None:
    """The name outside the cluster the lookup ends at: the external name, or an ExternalName's CNAME."""
    if case.external_name and not in_cluster(case.external_name):
        return case.external_name
    svc = case.service
    if svc is not None and svc.type == "ExternalName" and svc.external_name:
        return svc.external_name
    return None


def _ask(at: At) -> ProbeDnsAsk | None:
    """The lookup as the source's resolver makes it: through the resolv.conf of the namespace its
    traffic starts in (the pod's; for a node or a host-network pod the node's own, which the agent
    reads there). A host-network pod with ClusterFirstWithHostNet is the exception: kubelet gives it
    the cluster DNS's resolv.conf, which the node's namespace does not show, so the name's fully
    qualified form is asked of a cluster DNS server from the node's namespace, as that pod asks it."""
    src, case, name = at.source, at.case, lookup_name(at.case)
    if not name or src.node is None:
        return None
    if case.source_kind == "external" and not case.external_name:
        # A client outside the cluster connects to a NodePort, an external or a load balancer IP; a
        # cluster name means nothing to its resolver, and the node standing in for it is not its resolver.
        return None
    servers = routed_endpoints(case.dns_endpoints)
    if src.cluster_dns_with_host_network and servers:
        fqdn = case.dns_fqdn or (name if name.endswith(".") else f"{name}.")
        return ProbeDnsAsk(src.node, src.netns_ip, fqdn, servers[0].ip)
    return ProbeDnsAsk(src.node, src.netns_ip, name)


def _how(src: PodRef, ask: ProbeDnsAsk) -> str:
    """How the lookup was made, when it is not through the namespace's own resolv.conf."""
    if src.cluster_dns_with_host_network and ask.server:
        return " (dnsPolicy ClusterFirstWithHostNet: asked of the cluster DNS, as its kubelet-written resolv.conf does)"
    return ""


def who(src: PodRef) -> str:
    """The source as the reply names it: namespace/name for a pod, the bare name for a node."""
    return src.key if src.namespace else src.name


def _asks(at: At) -> tuple[Ask[object], ...]:
    ask = _ask(at)
    return (ask,) if ask is not None else ()


def _answered(at: At, ask: ProbeDnsAsk, probe: ProbeView) -> Outcome:
    """A lookup with records: what they are, and for a name outside the cluster where they lead."""
    src, case, name = at.source, at.case, ask.name
    svc, outside = case.service, outside_name(case)
    found = addresses(probe.answers)
    text = f"{name} → {', '.join(probe.answers)} via {probe.server} in {probe.latency_ms:.1f} ms"
    evidence: list[Evidence] = [ev("dns-probe", text, src.node, answers=list(probe.answers), rcode=probe.rcode)]
    summary = f"{name} resolves from {who(src)}{_how(src, ask)}"
    if svc is not None and svc.type == "ExternalName":
        chain = " → ".join(aliases(probe.answers)) or svc.external_name or "?"
        summary += f": ExternalName, a CNAME to {chain} → {', '.join(found) or 'no address'} (no VIP, nothing NATed)"
    elif svc is not None and svc.headless:
        summary += f": headless, the pods' IPs {', '.join(found)} (no VIP, nothing NATed: the source connects to a pod)"
    elif outside is not None:
        summary += f" to {', '.join(found)}"
    if outside is not None:
        evidence.append(expansion_evidence(name, src.namespace, probe, src.node))
    outcome = Outcome(
        (result(LABEL, f"source {src.name}: DNS", StepStatus.PASS, summary, evidence, src.node),),
        resolved=found if outside is not None else None,
    )
    race = dns_upstream.race_step(name, probe) if probe.retransmits and src.node is not None else None
    dns_is_the_target = svc is not None and svc.cluster_ip == probe.server  # the conntrack step reads that flow
    if (
        probe.server
        and not dns_is_the_target
        and uses_cluster_dns(case, probe)
        and probe.server not in {e.ip for e in case.dns_endpoints}
    ):
        # Answered from a new socket; the application's own socket may still be NATed to a gone server.
        return outcome + Outcome(then=dns_conntrack.stale_dns_step(probe.server, race))
    return outcome + Outcome(then=race)


def _decide(at: At, seen: Seen) -> Outcome:
    """Resolve the target's name from inside the source pod; follow a failure to where it comes from."""
    ask, src, case = _ask(at), at.source, at.case
    if ask is None:
        return Outcome()
    observed = seen[ask]
    name = f"source {src.name}: DNS"
    if observed.value is None:
        # No answer is not "does not resolve": the lookup was never made.
        summary = f"{ask.name} could not be looked up from {who(src)}: {observed.error}"
        return Outcome(
            (result(LABEL, name, StepStatus.WARN, summary, (), src.node),),
            unchecked=unchecked(observed, f"the DNS lookup of {ask.name} from {who(src)}"),
        )
    probe = observed.value
    if probe.ok:
        return _answered(at, ask, probe)
    kind, outside = failure_kind(probe), outside_name(case)
    summary = f"{ask.name} does not resolve from {who(src)}{_how(src, ask)}: {answer_words(probe)}"
    tried = f" (tried {', '.join(probe.queried_names)})" if probe.queried_names else ""
    failed = ev(
        "dns-probe",
        f"{summary}{tried} via {probe.server or 'its resolv.conf'}",
        src.node,
        outcome=probe.outcome,
        rcode=probe.rcode,
        failure=kind,
        tried=list(probe.queried_names),
    )
    evidence = [failed] + ([expansion_evidence(ask.name, src.namespace, probe, src.node)] if outside else [])
    if outside is None and not uses_cluster_dns(case, probe):
        return _resolver_outside_the_cluster(at, ask.name, probe, failed)
    if outside is not None and kind == "nxdomain":
        return _does_not_exist(at, ask.name, outside, summary, evidence)
    if outside is not None and kind in ("servfail", "timeout"):
        return Outcome(
            then=dns_upstream.upstream_step(summary, tuple(evidence), _servers_step(summary, failed, timed_out=kind == "timeout"))
        )
    return Outcome(then=_servers_step(summary, failed, timed_out=kind == "timeout"))


def uses_cluster_dns(case: Case, probe: ProbeView) -> bool:
    """Whether the source's lookup went to the cluster DNS: its resolv.conf searches the cluster's
    service domains (``svc.cluster.local``, as kubelet writes for ClusterFirst) or names a DNS pod.
    A pod with ``dnsPolicy: Default`` (the DNS pods themselves), or a host-network pod without
    ClusterFirstWithHostNet, uses its node's resolver instead. Unknown (the lookup did not go through
    the pod's resolv.conf, so none was reported): yes."""
    if probe.ndots is None:
        return True
    return any(d.startswith("svc.") for d in probe.search) or probe.server in {e.ip for e in case.dns_endpoints}


def _resolver_outside_the_cluster(at: At, name: str, probe: ProbeView, failed: Evidence) -> Outcome:
    """A cluster name looked up through a resolver that is not the cluster DNS does not resolve by
    design: that is no fault of the cluster DNS or of the path, and the target was found through the
    API, so the walk checks the path by address. For a node or a host-network pod that is simply how
    it resolves (the node's resolv.conf): the step passes and says so. A pod network pod that does
    not use the cluster DNS (dnsPolicy Default) gets the fix as a note, in case its application relies
    on the name."""
    src = at.source
    resolver = f"{probe.server or 'its nameserver'}, search {' '.join(probe.search) or 'none'}"
    if src.host_network:
        why = (
            f"{name} would not resolve from {who(src)}: it resolves with the node's resolv.conf ({resolver}), "
            f"not the cluster DNS, and got {answer_words(probe)} — expected for a node or a host-network pod "
            f"(dnsPolicy ClusterFirst or Default), not a fault; the target was resolved through the API and "
            f"its ClusterIP path is checked directly by address"
        )
        return Outcome((result(LABEL, f"source {src.name}: DNS", StepStatus.PASS, why, (failed,), src.node),))
    why = (
        f"{who(src)} does not use the cluster DNS (its resolver is {probe.server or 'its node’s'}, search "
        f"{' '.join(probe.search) or 'none'}: dnsPolicy Default, or a host-network pod without "
        f"ClusterFirstWithHostNet), so cluster names such as {name} do not resolve there; the path is checked by address"
    )
    fix = "if the application uses the name: set dnsPolicy: ClusterFirst (ClusterFirstWithHostNet for a host-network pod)"
    note = Finding(C.DNS_RESOLUTION_FAILED, f"{why}; {fix}", src.node, Hop.DNS)
    return Outcome((result(LABEL, f"source {src.name}: DNS", StepStatus.WARN, why, (failed,), src.node),), notes=(note,))


def _does_not_exist(at: At, name: str, outside: str, summary: str, evidence: list[Evidence]) -> Outcome:
    """NXDOMAIN for a name outside the cluster: every name the lookup tried does not exist. The cluster
    DNS answered, so nothing on the way is broken; the name is wrong (or not published yet)."""
    src = at.source
    why = f"{outside} does not exist: the cluster DNS answered NXDOMAIN for every name {src.key}'s lookup of {name} tried — not a network fault"
    guess = Candidate(
        C.DNS_RESOLUTION_FAILED,
        Hop.DNS,
        why,
        None,
        (
            f"dig {outside.rstrip('.')}. # check the name's spelling and that it is published",
            *remediation(C.DNS_RESOLUTION_FAILED),
        ),
        src.key,
    )
    return Outcome((result(LABEL, f"source {src.name}: DNS", StepStatus.FAIL, why, evidence, src.node),), (guess,), go_on=False)


def _server_asks(at: At) -> tuple[ProbeDnsAsk, ...]:
    src, case = at.source, at.case
    fqdn = case.dns_fqdn or lookup_name(case) or ""
    return tuple(ProbeDnsAsk(src.node or "", src.netns_ip, fqdn, e.ip) for e in routed_endpoints(case.dns_endpoints))


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
            said = answer_words(answer.value) if answer.value else answer.error
            evidence.append(
                ev(
                    "dns-probe",
                    f"{e.pod.key if e.pod else e.ip} ({e.ip}) on {e.node}: {said}",
                    e.node,
                    server=e.ip,
                    outcome=answer.value.outcome if answer.value else answer.error,
                    rcode=answer.value.rcode if answer.value else "",
                )
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
