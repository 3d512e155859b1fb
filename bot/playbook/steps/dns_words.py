"""How a DNS answer reads, and what one lookup costs: pure helpers for the DNS steps.

A failed lookup is one of four different things, and each sends the reader somewhere else: NXDOMAIN
(the name does not exist: nothing on the network is wrong), SERVFAIL (the server asked could not get
an answer, typically from the upstream it forwards to), a timeout (no server answered at all) and a
refusal (nothing listens on port 53 there). The summaries and evidence say which one it was.

A name outside the cluster domain also costs more than one query: with the `ndots:5` a kubelet writes
for `dnsPolicy: ClusterFirst`, a name with fewer than five dots is tried under every search domain
before it is tried as it is, and glibc asks for A and AAAA for each (`search_expansion`).
"""

from __future__ import annotations

import ipaddress

from bot.playbook.models import Evidence
from bot.playbook.observations import ProbeView
from bot.playbook.steps.evidence import ev

CLUSTER_DOMAIN = "cluster.local"
KUBELET_NDOTS = 5
"""The `options ndots:5` a kubelet writes into a ClusterFirst pod's resolv.conf."""
QUERY_TYPES = ("A", "AAAA")
"""What getaddrinfo asks for each name it tries (in parallel, on one socket)."""


def failure_kind(probe: ProbeView) -> str:
    """ "nxdomain", "servfail", "refused-rcode", "nodata", "timeout", "refused", "unreachable" or "error";
    "" for an answer with records."""
    if probe.outcome != "connected":
        return {"timed_out": "timeout", "refused": "refused", "unreachable": "unreachable"}.get(probe.outcome, "error")
    match probe.rcode:
        case "NXDOMAIN":
            return "nxdomain"
        case "SERVFAIL":
            return "servfail"
        case "REFUSED":
            return "refused-rcode"
        case "NOERROR" | "":
            return "" if probe.answers else "nodata"
    return "error"


def answer_words(probe: ProbeView) -> str:
    """One answer as a person reads it: the addresses, or which kind of failure and what it means."""
    match failure_kind(probe):
        case "":
            return ", ".join(probe.answers)
        case "nxdomain":
            return "NXDOMAIN: the name does not exist"
        case "servfail":
            return "SERVFAIL: the server could not get an answer (a forwarder whose upstream did not answer)"
        case "refused-rcode":
            return "REFUSED: the server will not answer for this name"
        case "nodata":
            return "no A record (NOERROR without an answer)"
        case "timeout":
            return f"timeout: no answer in {probe.latency_ms:.0f} ms"
        case "refused":
            return "refused: nothing listens on port 53 there (ICMP port unreachable)"
        case "unreachable":
            return f"unreachable: {probe.error or 'no route'}"
    return f"{probe.outcome}{f' ({probe.rcode})' if probe.rcode else ''}{f': {probe.error}' if probe.error else ''}"


def addresses(answers: tuple[str, ...]) -> tuple[str, ...]:
    """The IP addresses among a lookup's answers (a CNAME's target is a name, not an address)."""
    found = []
    for answer in answers:
        try:
            ipaddress.ip_address(answer)
        except ValueError:
            continue
        found.append(answer)
    return tuple(found)


def aliases(answers: tuple[str, ...]) -> tuple[str, ...]:
    """The names among a lookup's answers: the CNAME chain it followed."""
    return tuple(a for a in answers if a not in addresses(answers))


def in_cluster(name: str, domain: str = CLUSTER_DOMAIN) -> bool:
    """True for a name under the cluster domain (the cluster DNS answers it without forwarding)."""
    return name.rstrip(".").endswith(f".{domain}") or name.rstrip(".") == domain


def cluster_first_search(namespace: str, domain: str = CLUSTER_DOMAIN) -> tuple[str, ...]:
    """The search list a kubelet writes for a `dnsPolicy: ClusterFirst` pod in `namespace`."""
    return (f"{namespace}.svc.{domain}", f"svc.{domain}", domain)


def search_expansion(name: str, search: tuple[str, ...], ndots: int) -> tuple[str, ...]:
    """The fully qualified names glibc's resolver tries for `name`, in order: as it is first when it has
    at least `ndots` dots, else after every search domain; only itself when it ends with a dot."""
    if name.endswith("."):
        return (name,)
    searched = tuple(f"{name}.{d.strip('.')}." for d in search if d.strip("."))
    return (f"{name}.", *searched) if name.count(".") >= ndots else (*searched, f"{name}.")


def expansion_evidence(name: str, namespace: str, probe: ProbeView | None, node: str | None) -> Evidence:
    """What one lookup of `name` costs from the source: the names tried (from the resolv.conf the agent
    read, else what a kubelet writes for ClusterFirst), the queries that makes and how to avoid them."""
    if probe is not None and probe.ndots is not None:
        search, ndots, where = probe.search, probe.ndots, "the pod's resolv.conf"
    else:
        search, ndots, where = cluster_first_search(namespace), KUBELET_NDOTS, "ClusterFirst, as a kubelet writes it"
    tried = search_expansion(name, search, ndots)
    queries = len(tried) * len(QUERY_TYPES)
    dots = name.rstrip(".").count(".")
    both = " and ".join(QUERY_TYPES)
    if len(tried) == 1 or dots >= ndots:
        queries = len(QUERY_TYPES)
        text = f"{name} is asked as it is first ({dots} dot(s), ndots:{ndots} from {where}): {queries} queries ({both}) when it resolves"
    else:
        text = (
            f"{name} has {dots} dot(s), fewer than ndots:{ndots} (from {where}), so it is tried under every search "
            f"domain before itself: {', '.join(tried)} — {len(tried)} names, {queries} queries ({both} each) for one "
            f"lookup; to go straight out, write {name.rstrip('.')}. (a trailing dot) or set the pod's dnsConfig "
            f"options ndots:{max(dots, 1)}"
        )
    return ev("dns-search", text, node, name=name, tried=list(tried), queries=queries, ndots=ndots, search=list(search))
