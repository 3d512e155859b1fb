"""What the probes step sends from a source: the VIP (or, from outside, the entry), each endpoint, or the
target address, each as a memoised `ProbeAsk`. Apart from the step so that another step may ask the
very same probe and wait for its answer (the conntrack step does, for TCP) without importing it.
"""

from __future__ import annotations

from bot.playbook.case import EndpointRef
from bot.playbook.steps import entry as ingress
from bot.playbook.steps.base import At
from bot.playbook.steps.observe import ProbeAsk
from bot.playbook.steps.outside import is_outside, outside_target

DENIED_PROBE_TIMEOUT_MS = 300
"""How long a probe waits when the NetworkPolicies read from the API already deny the flow.

The probe then confirms the deny rather than discovers it: an enforced deny is silence (Calico,
Cilium and the lab drop; a REJECT answers even sooner), so waiting for the full `PROBE_TIMEOUT_MS`
adds nothing but time, while a flow the CNI does not enforce still connects within a round trip
(its probe's outcome, "connected", is in the evidence)."""


def endpoints_probed(at: At) -> tuple[EndpointRef, ...]:
    """The endpoints probed directly: those traffic from this source may go to (through an entry from
    outside, with externalTrafficPolicy Local, only the receiving nodes' own)."""
    if not ingress.applies(at):
        return at.trail.reachable
    reached = ingress.reached_endpoints(at.case)
    return tuple(e for e in at.trail.reachable if e in reached)


def probe_asks(at: At) -> list[tuple[str, ProbeAsk]]:
    """(label, ask): the VIP ("vip") or the entry from outside ("entry …"), each endpoint (its IP), or
    the target address (for one outside the cluster: the literal one, or the first its resolver gave).
    A host-network source (a node, or the vantage node standing in for a client outside the cluster)
    probes from the node's own namespace."""
    src, case = at.source, at.case
    if src.node is None or not src.ip:
        return []
    from_pod = "" if src.host_network else src.ip

    def probe(target: str, port: int, denied: bool = False) -> ProbeAsk:
        wait = DENIED_PROBE_TIMEOUT_MS if denied else None
        return ProbeAsk(src.node or "", from_pod, target, port, case.protocol, wait)

    # A probe to an endpoint the policies deny (or to the VIP when they deny every endpoint) only
    # confirms the deny, so it waits DENIED_PROBE_TIMEOUT_MS.
    endpoints, denied = endpoints_probed(at), at.trail.denied
    every_denied = bool(endpoints) and all(e.ip in denied for e in endpoints)
    probes: list[tuple[str, ProbeAsk]] = []
    if ingress.applies(at):
        probes += ingress.entry_probes(at)
    elif case.service is not None and case.port is not None and not case.service.headless:
        probes.append(("vip", probe(case.service.cluster_ip, case.port, every_denied)))
    for e in endpoints:
        probes.append((e.ip, probe(e.ip, e.port, e.ip in denied)))
    outside = outside_target(at)
    if outside is not None and case.port:
        probes.append((outside, probe(outside, case.port, outside in denied)))
    elif case.target_kind == "ip" and not is_outside(case) and case.target_ip and case.port:
        probes.append((case.target_ip, probe(case.target_ip, case.port)))
    return probes


def vip_probe(at: At) -> ProbeAsk | None:
    """The probe of the service's VIP from this source, as the probes step asks it (memoised: asking it
    elsewhere waits for the same answer), or None when there is none."""
    return next((ask for label, ask in probe_asks(at) if label == "vip"), None)
