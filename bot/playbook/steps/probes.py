"""The probes: can the source pod reach the VIP (or, from outside the cluster, the entry) and every
endpoint; for each it cannot, walk the path (a follow-up step: `bot.playbook.steps.path`). The engine sends them as soon as the policy step has
decided (`PREFETCH`), so they run beside the node steps."""

from __future__ import annotations

from bot.playbook.case import EndpointRef, PodRef
from bot.playbook.models import Hop, StepStatus
from bot.playbook.observations import ProbeView
from bot.playbook.steps.base import Ask, At, Candidate, Need, Outcome, Seen, Step, Unchecked, result, unchecked
from bot.playbook.steps.egress_path import AFTER_PROBE
from bot.playbook.steps.evidence import ev
from bot.playbook.steps.node_state import facts_evidence, node_checks
from bot.playbook.steps.observe import LocatePodAsk, NodeFactsAsk
from bot.playbook.steps.outside import outside_target, who
from bot.playbook.steps.path import path_step
from bot.playbook.steps.pod_network import mtu_checks, net_evidence, overlay_mtu
from bot.playbook.steps.probe_asks import endpoints_probed, probe_asks

LABEL = "source: probes"


def _front(outcome: dict[str, ProbeView | None]) -> ProbeView | None:
    """What the probes to the service's front saw: the VIP's, or the first failing (else first) entry's."""
    fronts = [view for label, view in outcome.items() if label == "vip" or label.startswith("entry")]
    seen = [view for view in fronts if view is not None]
    return next((v for v in seen if not v.ok), seen[0] if seen else None)


def _asks(at: At) -> tuple[Ask[object], ...]:
    return tuple(ask for _, ask in probe_asks(at))


def _decide(at: At, seen: Seen) -> Outcome:
    src, case, endpoints = at.source, at.case, endpoints_probed(at)
    probes = probe_asks(at)
    if not probes:
        if case.port is None and src.node is not None:
            # No port to connect to (a name or address asked about without one): nothing was probed,
            # and the reply must not say that anything answered.
            why = f"nothing to probe: no port is known for {case.target_display}; ask again with :PORT (for example :443)"
            return Outcome((result(LABEL, f"source {src.name}: probes", StepStatus.SKIP, why, (), src.node),))
        return Outcome()
    outcome: dict[str, ProbeView | None] = {}
    evidence = []
    unprobed = []
    missed: list[Unchecked] = []
    for label, ask in probes:
        observed = seen[ask]
        target = f"{ask.target}:{ask.port}"
        if observed.value is None:
            unprobed.append(target)
        missed += unchecked(observed, f"the probe {src.key} → {target}")
        outcome[label] = observed.value
        text = observed.value.outcome if observed.value else f"not probed ({observed.error})"
        evidence.append(
            ev(
                "probe",
                f"{src.key} → {target}/{case.protocol}: {text}",
                src.node,
                target=target,
                outcome=observed.value.outcome if observed.value else None,
                latency_ms=observed.value.latency_ms if observed.value else None,
            )
        )
    failed = [e for e in endpoints if (seen_e := outcome.get(e.ip)) is not None and not seen_e.ok]
    outside = outside_target(at)
    outside_seen = outcome.get(outside) if outside is not None else None
    if outside is not None and outside_seen is not None and not outside_seen.ok:
        # The outside cannot host an agent: follow the packet as far as the source node can see it.
        summary = f"{who(src)} cannot reach {outside}:{case.port}/{case.protocol} ({outside_seen.outcome})"
        step = result(LABEL, f"source {src.name}: probes", StepStatus.FAIL, summary, evidence, src.node)
        follow = None if outside in at.trail.denied else AFTER_PROBE
        return Outcome((step,), unchecked=tuple(missed), probes=outcome, then=follow)
    vip = _front(outcome)
    front = "the VIP" if "vip" in outcome else "the entry"
    ok_count = len([e for e in endpoints if (seen_e := outcome.get(e.ip)) is not None and seen_e.ok])
    name = f"source {src.name}: probes"
    if not failed and (vip is None or vip.ok) and unprobed:
        summary = f"{src.key} could not be probed to {', '.join(unprobed)}: not checked"
        step = result(LABEL, name, StepStatus.WARN, summary, evidence, src.node)
        return Outcome((step,), unchecked=tuple(missed), unprobed=True, probes=outcome)
    if not failed and (vip is None or vip.ok):
        summary = f"{src.key} reaches " + (f"{front} and all {len(endpoints)} endpoints" if vip else "the target")
        return Outcome(
            (result(LABEL, name, StepStatus.PASS, summary, evidence, src.node),),
            unchecked=tuple(missed),
            probes=outcome,
            then=_endpoint_nodes_step(endpoints) if any(e.node for e in endpoints) else None,
        )
    summary = (f"{src.key} cannot reach {len(failed)} of {len(endpoints)} endpoints" if endpoints else f"{src.key}") + (
        f"; {front} {vip.outcome}" if vip and not vip.ok else ""
    )
    step = result(LABEL, name, StepStatus.FAIL, summary, evidence, src.node)

    def vip_vs_endpoints(causes: tuple[Candidate, ...]) -> Outcome:
        if vip is not None and not vip.ok and ok_count == len(endpoints) and endpoints:
            said = f"every endpoint answers directly but {front} does not: the service translation fails"
            return Outcome(
                (result("source: VIP vs endpoints", f"source {src.name}: VIP vs endpoints", StepStatus.FAIL, said, (), src.node),)
            )
        return Outcome()

    walk = tuple(e for e in failed if e.ip not in at.trail.denied)
    if not walk:
        return Outcome((step,), unchecked=tuple(missed), probes=outcome) + vip_vs_endpoints(())
    return Outcome(
        (step,), unchecked=tuple(missed), probes=outcome, then=path_step(walk, case.protocol, "target", vip_vs_endpoints)
    )


def _endpoint_nodes_step(endpoints: tuple[EndpointRef, ...]) -> Step:
    """After probes that all succeeded: what a connect does not exercise on the endpoints' side.

    - Is a node the endpoints live on at its conntrack limit. A full table drops a new flow whenever
      no entry has expired to make room, so a probe that got a slot proves little; the count is the
      evidence (the path walk reads the same for endpoints that did not answer). Only the endpoints'
      nodes other than the source's, which its own step read.
    - Is an endpoint pod's eth0 MTU above what its veth or its node's overlay carries. The handshake
      gets through because the client's MSS bounds the segments the pod sends, but anything larger
      the pod sends (UDP, ICMP, a client on a bigger MTU) is dropped. Not for host-network pods.
    """

    def nodes(at: At) -> list[str]:
        return sorted({e.node for e in endpoints if e.node and e.node != at.source.node})

    def pods(at: At) -> list[EndpointRef]:
        return [e for e in endpoints if e.node and not (e.pod is not None and e.pod.host_network)]

    def asks(at: At) -> tuple[Ask[object], ...]:
        facts = {NodeFactsAsk(e.node or "") for e in pods(at)} | {NodeFactsAsk(node) for node in nodes(at)}
        return (*sorted(facts, key=lambda a: a.node), *(LocatePodAsk(e.node or "", e.ip) for e in pods(at)))

    def decide(at: At, seen: Seen) -> Outcome:
        found: list[Candidate] = []
        read: list[str] = []
        evidence = []
        for node in nodes(at):
            facts = seen[NodeFactsAsk(node)].value
            if facts is None:
                continue  # the probes through it succeeded: its agent's silence decides nothing here
            read.append(node)
            evidence.append(facts_evidence(facts))
            found += node_checks(facts, Hop.DESTINATION_NODE, forwards=False)
        looked = 0
        for e in pods(at):
            net = seen[LocatePodAsk(e.node or "", e.ip)].value
            if net is None:
                continue  # as above: not evidence either way
            looked += 1
            pod = e.pod or PodRef(namespace="", name=e.ip, ip=e.ip, node=e.node)
            path_mtu = overlay_mtu(seen[NodeFactsAsk(e.node or "")].value) if e.node != at.source.node else None
            mtu = mtu_checks(pod, net, Hop.DESTINATION_POD, path_mtu, CONNECTED_ANYWAY)
            if mtu:
                evidence.insert(0, net_evidence(pod, net))
            found = mtu + found
        if not read and not looked:
            return Outcome()
        status = StepStatus.FAIL if found else StepStatus.PASS
        said = [f"conntrack has room on {', '.join(read)}"] if read else []
        said += [f"the MTU of {looked} endpoint pod{'s' if looked != 1 else ''} fits the path"] if looked else []
        summary = found[0].summary if found else "; ".join(said)
        name = f"source {at.source.name}: the endpoints' pods and nodes"
        return Outcome((result("destination nodes", name, status, summary, evidence, None),), tuple(found))

    return Step("endpoint_nodes", Hop.DESTINATION_NODE, frozenset({Need.NODE_FACTS, Need.LOCATE_POD}), asks, decide)


CONNECTED_ANYWAY = (
    " (the probes connected: the client's MSS keeps the pod's TCP segments small, but larger packets it sends,"
    " such as UDP replies, are lost)"
)


STEP = Step(
    "probes",
    Hop.DESTINATION_POD,
    frozenset({Need.PROBE, Need.NODE_FACTS, Need.ROUTE, Need.FILTER_STATE, Need.LOCATE_POD, Need.SOCKETS}),
    _asks,
    _decide,
)
