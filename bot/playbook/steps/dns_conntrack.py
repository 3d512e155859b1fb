"""The DNS flow's conntrack: does an entry on the source node still send the pod's queries to a gone server.

The classic UDP/DNS incident: an application keeps one socket, so one source port, for its queries;
the DNS pod its flow was NATed to is replaced; the conntrack entry outlives it (every query refreshes
its timeout) and that socket's queries keep going to an address nobody has, while a fresh lookup
from a new port — the agent's own probe — is answered. The probe cannot see it; the source node's
conntrack table can: an entry from the source pod to the DNS service address whose reply comes from
no current DNS endpoint is the cause, even though the probe succeeded.
"""

from __future__ import annotations

from bot.playbook.models import Hop, StepStatus
from bot.playbook.models import VerdictCode as C
from bot.playbook.remedies import remediation
from bot.playbook.steps.base import Ask, At, Candidate, Need, Outcome, Seen, Step, result, unchecked
from bot.playbook.steps.node_state import stale_entries
from bot.playbook.steps.observe import ConntrackAsk

LABEL = "source: DNS conntrack"
DNS_PORT = 53


def stale_dns_step(server: str, after: Step | None = None) -> Step:
    """Check the source node's conntrack for the pod's queries to `server` (the DNS service address
    its resolv.conf names); then `after`, if given."""

    def ask(at: At) -> ConntrackAsk | None:
        src = at.source
        if src.node is None or not src.ip or not at.case.dns_endpoints:
            return None  # no node to read, or no current DNS endpoints to judge the entries against
        return ConntrackAsk(src.node, "UDP", src.ip, server, DNS_PORT)

    def asks(at: At) -> tuple[Ask[object], ...]:
        found = ask(at)
        return (found,) if found is not None else ()

    def decide(at: At, seen: Seen) -> Outcome:
        asked = ask(at)
        if asked is None:
            return Outcome(then=after)
        return _decided(at, seen, asked, server) + Outcome(then=after)

    return Step("dns_conntrack", Hop.DNS, frozenset({Need.CONNTRACK}), asks, decide)


def _decided(at: At, seen: Seen, asked: ConntrackAsk, server: str) -> Outcome:
    src = at.source
    observed = seen[asked]
    if observed.value is None:
        return Outcome(unchecked=unchecked(observed, "conntrack for the DNS queries"))
    current = {e.ip for e in at.case.dns_endpoints} | {server}
    stale, evidence = stale_entries(observed.value, current, f"{src.ip} → {server}:{DNS_PORT}/UDP", src.node)
    name = f"source {src.name}: DNS conntrack"
    if not stale:
        summary = f"no conntrack entry sends {src.key}'s DNS queries to a server that is gone"
        return Outcome((result(LABEL, name, StepStatus.PASS, summary, evidence, src.node),))
    e = stale[0]
    summary = (
        f"a conntrack entry on {src.node} still sends {e.orig_src}:{e.orig_sport} → {server}:{DNS_PORT}/UDP to {e.reply_src}, "
        f"which is no cluster DNS endpoint any more ({e.timeout}s left, refreshed by every query): that socket's lookups "
        "go nowhere while a new one's are answered"
    )
    found = Candidate(
        C.CONNTRACK_STALE_ENTRY,
        Hop.DNS,
        summary,
        src.node,
        remediation(C.CONNTRACK_STALE_ENTRY, node=asked.node, protocol="UDP", vip=server, stale=e.reply_src),
        src.key,
    )
    return Outcome((result(LABEL, name, StepStatus.FAIL, summary, evidence, src.node),), (found,))
