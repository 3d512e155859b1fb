"""The API hop: is the source running with an IP; does the target have endpoints on a port its pods use."""

from __future__ import annotations

from bot.playbook.case import EndpointRef, routed_endpoints
from bot.playbook.models import Hop, StepResult, StepStatus
from bot.playbook.models import VerdictCode as C
from bot.playbook.observations import ListeningSocket, Observed
from bot.playbook.remedies import remediation
from bot.playbook.steps.base import (
    Ask,
    At,
    Candidate,
    Need,
    Outcome,
    Seen,
    Step,
    Unchecked,
    no_asks,
    result,
    unchecked,
)
from bot.playbook.steps.evidence import ev, socket_data
from bot.playbook.steps.observe import SocketsAsk

NOT_RUNNING_REASONS = frozenset(
    {"CrashLoopBackOff", "Error", "ImagePullBackOff", "ErrImagePull", "ContainerCreating", "CreateContainerError"}
)
SOURCE_LABEL = "source: API"


def _decide_source(at: At, seen: Seen) -> Outcome:
    """Is the source pod running with an IP (and on a node)? If not, the walk from it ends."""
    src = at.source
    name = f"source {src.name}: API"
    evidence = [
        ev(
            "pod-status",
            f"{src.key}: {src.phase}{' (' + src.reason + ')' if src.reason else ''}, IP {src.ip or 'none'}, node {src.node or 'none'}",
            src.node,
            phase=src.phase,
            reason=src.reason,
            ip=src.ip,
        )
    ]
    if src.host_network:
        return Outcome(
            (result(SOURCE_LABEL, name, StepStatus.PASS, f"{src.key} uses the host network of {src.node}", evidence),),
            go_on=src.node is not None,
        )
    if src.phase != "Running" or src.reason in NOT_RUNNING_REASONS:
        state = src.reason or src.phase
        found = Candidate(
            C.SOURCE_POD_NOT_RUNNING,
            Hop.SOURCE_POD,
            f"{src.key} is not running ({state}): it cannot send anything",
            src.node,
            remediation(C.SOURCE_POD_NOT_RUNNING, namespace=src.namespace, pod=src.name),
            src.key,
        )
        return Outcome(
            (result(SOURCE_LABEL, name, StepStatus.FAIL, f"{src.key} is {state}", evidence, src.node),),
            (found,),
            go_on=False,
        )
    if not src.ip:
        found = Candidate(
            C.POD_HAS_NO_IP,
            Hop.SOURCE_POD,
            f"{src.key} is Running without an IP address: the CNI did not set up its network",
            src.node,
            remediation(C.POD_HAS_NO_IP, namespace=src.namespace, pod=src.name, node=src.node or "NODE"),
            src.key,
        )
        return Outcome(
            (result(SOURCE_LABEL, name, StepStatus.FAIL, f"{src.key} has no IP", evidence, src.node),),
            (found,),
            go_on=False,
        )
    passed = result(SOURCE_LABEL, name, StepStatus.PASS, f"{src.key} is Running at {src.ip} on {src.node}", evidence, src.node)
    return Outcome((passed,), go_on=src.node is not None)


def _decide_target(at: At, seen: Seen) -> Outcome:
    """Service endpoints and ports, or the target pod's state. The target's walk ends when there is
    no endpoint to reach at all."""
    case = at.case
    svc = case.service
    if case.target_kind == "pod":
        pod = case.target_pods[0] if case.target_pods else None
        if pod is not None and not pod.ip:
            found = Candidate(
                C.POD_HAS_NO_IP,
                Hop.DESTINATION_POD,
                f"{pod.key} has no IP address: the CNI did not set up its network",
                pod.node,
                remediation(C.POD_HAS_NO_IP, namespace=pod.namespace, pod=pod.name, node=pod.node or "NODE"),
            )
            failed = result("target: API", "target: API", StepStatus.FAIL, f"{pod.key} has no IP", (), pod.node)
            return Outcome((failed,), (found,), go_on=False)
        return Outcome((result("target: API", "target: API", StepStatus.PASS, f"target {case.target_display}"),))
    if svc is None:
        summary = f"target {case.target_display} is an address outside the cluster's objects"
        return Outcome((result("target: API", "target: API", StepStatus.PASS, summary),))
    if svc.type == "ExternalName":
        # No VIP, no endpoints: the cluster DNS answers a CNAME, and the DNS step follows it.
        summary = f"{svc.key} is an ExternalName service: DNS answers a CNAME to {svc.external_name} (no VIP, no endpoints)"
        evidence = [ev("service", summary, external_name=svc.external_name)]
        return Outcome((result("target: API", "target: API", StepStatus.PASS, summary, evidence),))
    selector = ",".join(f"{k}={v}" for k, v in (svc.selector or {}).items())
    ready = [e for e in case.endpoints if e.ready]
    routed = routed_endpoints(case.endpoints)
    evidence = [
        ev(
            "service",
            f"{svc.key} {svc.cluster_ip}:{svc.port}/{case.protocol} → targetPort {svc.target_port}; selector {selector or '(none)'}",
            cluster_ip=svc.cluster_ip,
            port=svc.port,
            target_port=svc.target_port,
            selector=dict(svc.selector or {}),
        ),
        ev(
            "endpoints",
            f"{len(case.endpoints)} endpoints, {len(ready)} ready: "
            + ", ".join(f"{e.ip}:{e.port}{_endpoint_state(e)} on {e.node}" for e in case.endpoints),
            endpoints=[
                {
                    "ip": e.ip,
                    "port": e.port,
                    "node": e.node,
                    "ready": e.ready,
                    "serving": e.is_serving,
                    "terminating": e.terminating,
                    "pod": e.pod.key if e.pod else None,
                }
                for e in case.endpoints
            ],
        ),
    ]
    facts = {"namespace": svc.namespace, "service": svc.name, "selector": selector or "SELECTOR"}

    def step(status: StepStatus, summary: str) -> StepResult:
        return result(ENDPOINTS_LABEL, ENDPOINTS_LABEL, status, summary, evidence)

    no_ip = [p for p in case.target_pods if p.phase == "Running" and not p.ip]
    if not case.endpoints and no_ip:
        # The EndpointSlice controller publishes no endpoint for a pod without an IP: the service is
        # empty because the CNI never set the pods' networks up, which is what to fix.
        pod = no_ip[0]
        others = f" (and {len(no_ip) - 1} more of its pods)" if len(no_ip) > 1 else ""
        found = Candidate(
            C.POD_HAS_NO_IP,
            Hop.DESTINATION_POD,
            f"{pod.key}{others} is Running without an IP address: the CNI did not set up its network, so "
            f"service {svc.key} has no endpoints",
            pod.node,
            remediation(C.POD_HAS_NO_IP, namespace=pod.namespace, pod=pod.name, node=pod.node or "NODE"),
        )
        return Outcome((step(StepStatus.FAIL, f"{svc.key} has no endpoints: {pod.key} has no IP"),), (found,), go_on=False)
    if not case.endpoints:
        why = (
            f"its selector {selector} matches no pod"
            if selector and not case.target_pods
            else "it has no selector and no manual endpoints"
            if not selector
            else "no endpoint was published for its pods"
        )
        found = Candidate(
            C.SERVICE_NO_ENDPOINTS,
            Hop.API,
            f"service {svc.key} has no endpoints: {why}",
            None,
            remediation(C.SERVICE_NO_ENDPOINTS, **facts),
        )
        return Outcome((step(StepStatus.FAIL, f"{svc.key} has no endpoints"),), (found,), go_on=False)
    if not ready and routed:
        summary = (
            f"{svc.key} has no ready endpoint, but kube-proxy still sends its traffic to the {len(routed)} serving "
            "endpoints of pods that are shutting down (terminating)"
        )
        return Outcome((step(StepStatus.WARN, summary),))
    if not ready:
        not_ready = case.endpoints[0].pod
        found = Candidate(
            C.SERVICE_ENDPOINTS_NOT_READY,
            Hop.API,
            f"all {len(case.endpoints)} endpoints of {svc.key} are not ready: kube-proxy sends its traffic nowhere",
            None,
            remediation(C.SERVICE_ENDPOINTS_NOT_READY, **facts, pod=not_ready.name if not_ready else "POD"),
        )
        return Outcome((step(StepStatus.FAIL, f"no ready endpoint for {svc.key}"),), (found,), go_on=False)
    return Outcome((step(StepStatus.PASS, f"{svc.key} has {len(ready)} ready endpoints"),))


def _endpoint_state(e: EndpointRef) -> str:
    if e.ready:
        return ""
    return " (terminating, still serving)" if e.serving_terminating else " (not ready)"


def _undeclared(at: At) -> list[EndpointRef]:
    """The endpoints traffic goes to whose pod does not declare the endpoint's port."""
    ready = [e for e in routed_endpoints(at.case.endpoints) if e.pod is not None]
    return [e for e in ready if e.pod is not None and not e.pod.declares(e.port, at.case.protocol)]


def _sockets_ask(at: At, e: EndpointRef) -> SocketsAsk | None:
    return SocketsAsk(e.node, e.ip, e.port, at.case.protocol) if e.node is not None else None


def _asks_port(at: At) -> tuple[Ask[object], ...]:
    if at.case.service is None:
        return ()
    return tuple(ask for e in _undeclared(at) if (ask := _sockets_ask(at, e)) is not None)


def _decide_port(at: At, seen: Seen) -> Outcome:
    """Does the targetPort name a port the backing pods expose or at least listen on?"""
    case, svc = at.case, at.case.service
    if svc is None:
        return Outcome()
    undeclared = _undeclared(at)
    if not undeclared:
        summary = f"targetPort {svc.target_port} is a declared container port of every ready endpoint"
        return Outcome((result(PORT_LABEL, PORT_LABEL, StepStatus.PASS, summary),))
    listening: list[bool] = []
    evidence = []
    missed: list[Unchecked] = []
    for e in undeclared:
        ask = _sockets_ask(at, e)
        if ask is None:
            continue
        sockets: Observed[tuple[ListeningSocket, ...]] = seen[ask]
        missed += unchecked(sockets, f"the listening sockets of {e.pod.key if e.pod else e.ip}")
        if sockets.ok and sockets.value is not None:
            listening.append(bool(sockets.value))
            evidence.append(
                ev(
                    "sockets",
                    f"{e.pod.key if e.pod else e.ip}: {'listening' if sockets.value else 'nothing listening'} on {e.port}/{case.protocol}",
                    e.node,
                    sockets=[socket_data(s) for s in sockets.value],
                )
            )
    if listening and not any(listening):
        pod = undeclared[0].pod
        declared = sorted({f"{n or '-'}:{p}/{pr}" for n, p, pr in (pod.container_ports if pod else ())})
        suggest = next((str(p) for _, p, pr in (pod.container_ports if pod else ()) if pr == case.protocol), "PORT")
        found = Candidate(
            C.SERVICE_PORT_MISMATCH,
            Hop.API,
            f"service {svc.key} sends port {svc.port} to targetPort {svc.target_port}, which its pods neither declare ({', '.join(declared) or 'no ports'}) nor listen on",
            None,
            remediation(C.SERVICE_PORT_MISMATCH, namespace=svc.namespace, service=svc.name, suggest=suggest),
        )
        summary = f"targetPort {svc.target_port} is not a port of the backing pods"
        return Outcome((result(PORT_LABEL, PORT_LABEL, StepStatus.FAIL, summary, evidence),), (found,), unchecked=tuple(missed))
    summary = f"targetPort {svc.target_port} is not declared by {len(undeclared)} pod(s), but they listen on it"
    status = StepStatus.WARN if undeclared else StepStatus.PASS
    return Outcome((result(PORT_LABEL, PORT_LABEL, status, summary, evidence),), unchecked=tuple(missed))


ENDPOINTS_LABEL = "target: service endpoints"
PORT_LABEL = "target: port mapping"

SOURCE = Step("source_api", Hop.SOURCE_POD, frozenset(), no_asks, _decide_source)
TARGET = Step("target_api", Hop.API, frozenset(), no_asks, _decide_target)
TARGET_PORT = Step("target_port", Hop.API, frozenset({Need.SOCKETS}), _asks_port, _decide_port)
