"""Hairpin: a pod reaching itself through its own service.

When the source pod is one of the service's routed endpoints, kube-proxy may send its connection to
the VIP back to the pod itself. On a bridge CNI the reply path then leaves the bridge through the very
port the packet came in on, which the bridge only does for a port in hairpin mode (kubelet's
`--hairpin-mode=hairpin-veth`, the bridge plugin's `"hairpinMode": true`). So: the source is an
endpoint, the probe through the VIP failed, and the agent reads the source's bridge port with hairpin
mode off → HAIRPIN_BROKEN on the pod's node. A routed CNI (Calico) has no bridge port, the agent
reports no hairpin flag, and nothing is decided here. With the flag off and the VIP probe answered
(another endpoint was picked this time) it is HAIRPIN_BROKEN all the same: the connections that pick
the pod itself, 1 in the number of endpoints, fail, which is the intermittent "can't" people ask about.

The step reads the same LocatePod answer as the source-pod step (asked once per walk).
"""

from __future__ import annotations

from bot.playbook.case import EndpointRef
from bot.playbook.models import Hop, StepStatus
from bot.playbook.models import VerdictCode as C
from bot.playbook.remedies import remediation
from bot.playbook.steps.base import Ask, At, Candidate, Need, Outcome, Seen, Step, result
from bot.playbook.steps.evidence import ev
from bot.playbook.steps.observe import LocatePodAsk

LABEL = "source: hairpin"


def self_endpoint(at: At) -> EndpointRef | None:
    """The service endpoint that is the source pod itself, when the VIP may send it back to itself."""
    src, service = at.source, at.case.service
    if service is None or service.headless or src.host_network or not src.ip or at.case.target_kind != "service":
        return None
    return next((e for e in at.trail.reachable if e.ip == src.ip), None)


def _asks(at: At) -> tuple[Ask[object], ...]:
    src = at.source
    if self_endpoint(at) is None or src.node is None:
        return ()
    return (LocatePodAsk(src.node, src.ip or ""),)


def _decide(at: At, seen: Seen) -> Outcome:
    src, case = at.source, at.case
    me = self_endpoint(at)
    if me is None or src.node is None or case.service is None:
        return Outcome()
    located = seen[LocatePodAsk(src.node, src.ip or "")]
    net = located.value
    if net is None or net.host_peer is None or net.hairpin is None:
        return Outcome()  # not located (the source-pod step says why), or not a bridge port: no hairpin to check
    port, svc = net.host_peer, case.service
    share = len(at.trail.reachable)
    vip = at.trail.probes.get("vip")
    evidence = [
        ev(
            "hairpin",
            f"{port.name} ({src.key}'s host-side veth) on {port.master or 'the bridge'}: hairpin {'on' if net.hairpin else 'off'}; "
            f"{src.key} ({me.ip}:{me.port}) is one of the {share} endpoint(s) of svc/{svc.name}",
            src.node,
            device=port.name,
            bridge=port.master,
            hairpin=net.hairpin,
            endpoint=f"{me.ip}:{me.port}",
            endpoints=share,
            vip_probe=vip.outcome if vip else None,
        )
    ]
    name = f"source {src.name}: hairpin"
    if net.hairpin:
        summary = f"{src.key} is an endpoint of svc/{svc.name}; its bridge port {port.name} has hairpin mode on"
        return Outcome((result(LABEL, name, StepStatus.PASS, summary, evidence, src.node),))
    fix = remediation(C.HAIRPIN_BROKEN, node=src.node, device=port.name, namespace=src.namespace, pod=src.name)
    if vip is not None and not vip.ok:
        summary = (
            f"{src.key} cannot reach itself through svc/{svc.name}: the VIP sends it to {me.ip}:{me.port}, the pod itself, "
            f"and its bridge port {port.name} on {src.node} has hairpin mode off, so the bridge never sends the packet back out of it"
        )
    else:
        # The probe was sent to another endpoint this time; the kernel's state says the rest: every
        # connection the VIP sends back to the pod itself is lost, so the question's "can't" is this.
        summary = (
            f"{port.name} ({src.key}) on {src.node} has hairpin mode off: the connections from {src.key} to svc/{svc.name} "
            f"that pick the pod itself (1 in {share}) fail; the probe through the VIP went to another endpoint and was answered"
        )
    found = Candidate(C.HAIRPIN_BROKEN, Hop.DESTINATION_NODE, summary, src.node, fix)
    return Outcome((result(LABEL, name, StepStatus.FAIL, summary, evidence, src.node),), (found,))


STEP = Step("hairpin", Hop.DESTINATION_NODE, frozenset({Need.LOCATE_POD}), _asks, _decide)
