"""Behind the cluster DNS: its upstream resolver, and the UDP conntrack race on the source's node.

`upstream_step`: a name outside the cluster answered SERVFAIL or timed out from the source. Three
answers tell the cases apart: the cluster DNS asked for a name of its own (the DNS service's,
`kube-dns.kube-system.svc.<domain>`: it exists wherever there is a cluster DNS to ask), the external
name as the source asked it, and the upstream resolver asked directly from each DNS pod's namespace —
where CoreDNS's `forward` sends from. The upstream is the one the Corefile names (`Case.dns_upstreams`),
else the DNS pod's own resolv.conf (what `forward . /etc/resolv.conf` uses: kubelet's --resolv-conf for
a `dnsPolicy: Default` pod).

- the cluster name does not resolve either: the cluster DNS itself fails; the servers step follows it
  (DNS_RESOLUTION_FAILED, or the broken path to the servers), as for any name;
- the cluster name resolves and the upstream does not answer the DNS pods: UPSTREAM_DNS_FAILED, on the
  DNS pods' node when they all run on one;
- the upstream answers NXDOMAIN: the name does not exist (DNS_RESOLUTION_FAILED, worded so);
- the upstream answers the DNS pods but the cluster DNS does not pass it on: DNS_RESOLUTION_FAILED at
  the cluster DNS's forwarding.
An upstream query the agent could not make is not evidence: it is said as not checked.

`race_step`: a lookup answered only after its query was sent again (the agent's resolver tries twice,
as glibc does; with glibc's `timeout:5` that is the 5-second lookup users see). When the source node's
conntrack `insert_failed` grew between the reading before the lookup (the node facts the source-node
step read) and one after it, that is the known race of two UDP packets of one socket (A and AAAA on
one source port) inserting the same conntrack entry at once; the loser is dropped. It is a finding,
not a verdict: the lookup is answered and the target reached, only 5 s late, and the counter is the
node's (any pod's race raises it), so it names the cause of a delay, not of a failure.
"""

from __future__ import annotations

from bot.playbook.case import EndpointRef, routed_endpoints
from bot.playbook.models import Evidence, Finding, Hop, StepStatus
from bot.playbook.models import VerdictCode as C
from bot.playbook.observations import ProbeView
from bot.playbook.remedies import remediation
from bot.playbook.steps.base import Ask, At, Candidate, Need, Outcome, Seen, Step, result, unchecked
from bot.playbook.steps.dns_words import CLUSTER_DOMAIN, answer_words, failure_kind
from bot.playbook.steps.evidence import ev
from bot.playbook.steps.observe import ConntrackStatsAsk, NodeFactsAsk, ProbeDnsAsk

LABEL = "source: DNS"
CLUSTER_NAME = f"kube-dns.kube-system.svc.{CLUSTER_DOMAIN}."
"""The cluster name asked of the cluster DNS: its own service's, which exists wherever it does."""

RACE_MITIGATIONS = (
    "dnsConfig options single-request-reopen (glibc: A and AAAA from different sockets)",
    "dnsConfig options use-vc (lookups over TCP)",
    "NodeLocal DNSCache (pods ask a cache on their node; it talks TCP upstream)",
    "a kernel with the conntrack clash fixes (5.0+ and their backports)",
)


def _dns_pods(at: At) -> tuple[EndpointRef, ...]:
    return tuple(e for e in routed_endpoints(at.case.dns_endpoints) if e.node)


def _upstream_asks(at: At, fqdn: str) -> tuple[tuple[EndpointRef, str, ProbeDnsAsk], ...]:
    """(DNS pod, upstream, ask) for each DNS pod and upstream ("" : the pod's own resolv.conf)."""
    upstreams = at.case.dns_upstreams or ("",)
    return tuple((e, u, ProbeDnsAsk(e.node or "", e.ip, fqdn, u)) for e in _dns_pods(at) for u in upstreams)


def upstream_step(summary: str, first: tuple[Evidence, ...], servers: Step) -> Step:
    """The cluster DNS asked a name of its own, and the upstream asked directly from each DNS pod."""

    def fqdn(at: At) -> str:
        name = next((a for a in (at.case.external_name, _alias(at)) if a), "")
        return name if name.endswith(".") else f"{name}."

    def asks(at: At) -> tuple[Ask[object], ...]:
        src = at.source
        own = ProbeDnsAsk(src.node or "", src.netns_ip, CLUSTER_NAME)
        return (own, *(ask for _, _, ask in _upstream_asks(at, fqdn(at))))

    def decide(at: At, seen: Seen) -> Outcome:
        src = at.source
        own = seen[ProbeDnsAsk(src.node or "", src.netns_ip, CLUSTER_NAME)]
        name = f"source {src.name}: DNS"
        if own.value is None:
            # The lookup failed (a fact); why could not be checked: said as not checked, never guessed.
            return Outcome(
                (result(LABEL, name, StepStatus.FAIL, summary, first, src.node),),
                unchecked=unchecked(own, f"the DNS lookup of {CLUSTER_NAME} from {src.key}"),
            )
        if not own.value.ok:
            # The cluster DNS does not answer its own names either: not the upstream.
            return Outcome(then=servers)
        evidence = [
            *first,
            ev(
                "dns-probe",
                f"{CLUSTER_NAME} from {src.key}: {answer_words(own.value)} (the cluster DNS answers its own names)",
                src.node,
            ),
        ]
        outcome = Outcome()
        silent: list[EndpointRef] = []
        said: list[str] = []
        answered_by: list[str] = []
        for e, upstream, ask in _upstream_asks(at, fqdn(at)):
            answer = seen[ask]
            outcome += Outcome(unchecked=unchecked(answer, f"the query to the upstream resolver from {e.ip}"))
            where = upstream or "its resolv.conf's nameserver"
            if answer.value is None:
                evidence.append(
                    ev(
                        "dns-upstream",
                        f"{ask.name} asked of {where} from {_pod(e)} on {e.node}: not asked ({answer.error})",
                        e.node,
                    )
                )
                continue
            server = upstream or answer.value.server
            answered_by.append(server)
            words = answer_words(answer.value)
            evidence.append(
                ev(
                    "dns-upstream",
                    f"{ask.name} asked of the upstream {server} from {_pod(e)} on {e.node}: {words}",
                    e.node,
                    upstream=server,
                    outcome=answer.value.outcome,
                    rcode=answer.value.rcode,
                    failure=failure_kind(answer.value),
                )
            )
            said.append(failure_kind(answer.value))
            if failure_kind(answer.value) not in ("", "nxdomain", "nodata"):
                silent.append(e)
        upstreams = tuple(dict.fromkeys(answered_by))
        return outcome + _conclude(at, summary, evidence, silent, said, fqdn(at).rstrip("."), upstreams)

    return Step("dns_upstream", Hop.DNS, frozenset({Need.PROBE_DNS}), asks, decide)


def _alias(at: At) -> str:
    svc = at.case.service
    return svc.external_name if svc is not None and svc.external_name else ""


def _pod(e: EndpointRef) -> str:
    return e.pod.key if e.pod else e.ip


def _conclude(
    at: At,
    summary: str,
    evidence: list[Evidence],
    silent: list[EndpointRef],
    said: list[str],
    name: str,
    upstreams: tuple[str, ...],
) -> Outcome:
    """The verdict from the upstream's answers to the DNS pods (`said`: each answer's failure kind)."""
    src, step_name = at.source, f"source {at.source.name}: DNS"
    upstream = ", ".join(upstreams) or "the DNS pods' resolv.conf nameserver"
    if not said:
        # No DNS pod's agent could ask the upstream: the lookup failed, the cause is not checked.
        return Outcome((result(LABEL, step_name, StepStatus.FAIL, summary, evidence, src.node),), go_on=False)
    if silent:
        nodes = sorted({e.node or "?" for e in silent})
        node = nodes[0] if len(nodes) == 1 else None
        why = (
            f"the cluster DNS answers its own names but not {name}: its upstream {upstream} does not answer "
            f"the DNS pods ({len(silent)} of {len(said)}, on {', '.join(nodes)}); {summary}"
        )
        cause = Candidate(
            C.UPSTREAM_DNS_FAILED,
            Hop.DNS,
            why,
            node,
            remediation(
                C.UPSTREAM_DNS_FAILED,
                node=node or "NODE",
                upstream=upstreams[0] if upstreams else "UPSTREAM",
                name=name,
            ),
            src.key,
        )
        return Outcome((result(LABEL, step_name, StepStatus.FAIL, why, evidence, src.node),), (cause,), go_on=False)
    if all(k == "nxdomain" for k in said):
        why = f"{name} does not exist: the upstream {upstream} answers NXDOMAIN — not a network fault"
    else:
        why = f"the upstream {upstream} answers {name} to the DNS pods, but the cluster DNS does not pass it on: check its forward configuration ({summary})"
    cause = Candidate(C.DNS_RESOLUTION_FAILED, Hop.DNS, why, None, remediation(C.DNS_RESOLUTION_FAILED), src.key)
    return Outcome((result(LABEL, step_name, StepStatus.FAIL, why, evidence, src.node),), (cause,), go_on=False)


def race_step(name: str, probe: ProbeView) -> Step:
    """The source node's conntrack counters before and after a lookup whose query was sent again."""

    def asks(at: At) -> tuple[Ask[object], ...]:
        node = at.source.node or ""
        return (NodeFactsAsk(node), ConntrackStatsAsk(node, f"dns {at.source.key} {name}"))

    def decide(at: At, seen: Seen) -> Outcome:
        src, node = at.source, at.source.node or ""
        before, after = seen[NodeFactsAsk(node)], seen[ConntrackStatsAsk(node, f"dns {src.key} {name}")]
        if before.value is None or after.value is None:
            what = f"conntrack insert_failed on {node}"
            return Outcome(unchecked=unchecked(before, what) or unchecked(after, what))
        grew = after.value.insert_failed - before.value.insert_failed
        if grew <= 0:
            return Outcome()
        what = (
            f"{name} from {src.key} was answered only after its query was sent again ({probe.retransmits} resend(s), "
            f"{probe.latency_ms:.0f} ms; with glibc's timeout:5 that is a 5 s lookup), and conntrack insert_failed on {node} "
            f"grew by {grew} ({before.value.insert_failed} → {after.value.insert_failed}) meanwhile: the UDP conntrack race "
            f"(A and AAAA from one socket clash in conntrack and one is dropped); mitigations: {'; '.join(RACE_MITIGATIONS)}"
        )
        evidence = [
            ev(
                "conntrack-stats",
                f"{node}: insert_failed {before.value.insert_failed} → {after.value.insert_failed}",
                node,
                grew=grew,
            ),
        ]
        return Outcome(
            (result("source: DNS race", f"source {src.name}: DNS race", StepStatus.WARN, what, evidence, node),),
            notes=(Finding(C.PACKET_LOSS, what, node, Hop.SOURCE_NODE),),
        )

    return Step("dns_race", Hop.DNS, frozenset({Need.NODE_FACTS, Need.CONNTRACK_STATS}), asks, decide)
