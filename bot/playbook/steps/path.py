"""The path to one endpoint the source cannot reach: source node → underlay → destination node → pod.

Used by the probes (an endpoint that did not answer) and by DNS (a DNS server that did not answer).
"""

from __future__ import annotations

import time

from bot.playbook.case import EndpointRef
from bot.playbook.models import Evidence, Hop, StepStatus
from bot.playbook.models import VerdictCode as C
from bot.playbook.remedies import remediation
from bot.playbook.steps.base import Candidate, SourceWalk, Unexplained
from bot.playbook.steps.destination_node import arrival_checks, filter_checks, route_back
from bot.playbook.steps.destination_pod import destination_pod
from bot.playbook.steps.evidence import ev
from bot.playbook.steps.underlay import forward_route


async def endpoint_path(
    sw: SourceWalk, e: EndpointRef, *, protocol: str | None = None, purpose: str = "target"
) -> list[Candidate]:
    """Walk source node → underlay → destination node → destination pod for one endpoint.

    With purpose "dns" the endpoint is a DNS server: a server that does not listen is the cluster
    DNS failing (DNS_RESOLUTION_FAILED), while a broken path to it keeps its own cause.
    """
    w, src = sw.w, sw.src
    proto = protocol or sw.case.protocol
    assert src.node is not None and src.ip is not None
    started = time.monotonic()
    name = f"path {src.name} → {e.pod.name if e.pod else e.ip}" + (" (DNS)" if purpose == "dns" else "")
    evidence: list[Evidence] = []
    found = await _walk_path(sw, e, evidence, proto)
    if purpose == "dns":
        found = [_as_dns_failure(e, c) if c.code == C.DESTINATION_NOT_LISTENING else c for c in found]
    sw.add(found)
    if not found:
        await _probe_from_node(sw, e, evidence, proto)
        sw.unexplained.append(Unexplained(e, proto, purpose))
    w.record(
        name,
        StepStatus.FAIL if found else StepStatus.WARN,
        found[0].summary if found else f"no cause found on the path to {e.ip}:{e.port}",
        evidence,
        started,
        e.node,
    )
    return found


async def _walk_path(sw: SourceWalk, e: EndpointRef, evidence: list[Evidence], protocol: str) -> list[Candidate]:
    """Every cause on the path, in the order the hops are met."""
    src = sw.src
    assert src.node is not None
    src_facts = await sw.node_facts(src.node)
    dst_facts = await sw.node_facts(e.node)
    remote = e.node is not None and e.node != src.node
    found: list[Candidate] = []
    incoming = ""
    if remote:
        found, incoming = await forward_route(sw, e, src_facts, evidence)
    if dst_facts is not None and remote:
        found += arrival_checks(sw, e, dst_facts, incoming, evidence)
    if e.node is None:
        return found
    found += await filter_checks(sw, src.node, Hop.SOURCE_NODE, e, (), evidence, protocol)
    if remote:
        found += await filter_checks(sw, e.node, Hop.DESTINATION_NODE, e, (incoming or "eth0",), evidence, protocol)
        found += await route_back(sw, e, dst_facts, incoming, evidence, protocol)
    found += await destination_pod(sw, e, dst_facts, evidence, protocol)
    return found


def _as_dns_failure(e: EndpointRef, c: Candidate) -> Candidate:
    return Candidate(
        C.DNS_RESOLUTION_FAILED,
        Hop.DNS,
        f"the cluster DNS server {e.pod.key if e.pod else e.ip} does not answer: {c.summary}",
        None,
        remediation(C.DNS_RESOLUTION_FAILED),
    )


async def _probe_from_node(sw: SourceWalk, e: EndpointRef, evidence: list[Evidence], protocol: str) -> None:
    """No cause found: does the endpoint answer the destination node itself (evidence for a person)."""
    if not e.node:
        return
    node_probe = await sw.w.obs.probe(e.node, pod_ip="", target=e.ip, port=e.port, protocol=protocol)
    if node_probe.value is not None:
        evidence.append(
            ev(
                "probe",
                f"{e.node} (node namespace) → {e.ip}:{e.port}: {node_probe.value.outcome}",
                e.node,
                outcome=node_probe.value.outcome,
            )
        )
