"""The API hop: is the source running with an IP; does the target have endpoints on a port its pods use."""

from __future__ import annotations

import time

from bot.playbook.case import EndpointRef, PodRef, routed_endpoints
from bot.playbook.models import Hop, StepStatus
from bot.playbook.models import VerdictCode as C
from bot.playbook.remedies import remediation
from bot.playbook.steps.base import Candidate, Need, SourceStep, SourceWalk, TargetStep, Walk
from bot.playbook.steps.evidence import ev, socket_data

NOT_RUNNING_REASONS = frozenset(
    {"CrashLoopBackOff", "Error", "ImagePullBackOff", "ErrImagePull", "ContainerCreating", "CreateContainerError"}
)


def check_source_api(w: Walk, src: PodRef) -> bool:
    """Is the source pod running with an IP? False ends the walk for this source."""
    started = time.monotonic()
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
        w.record(f"source {src.name}: API", StepStatus.PASS, f"{src.key} uses the host network of {src.node}", evidence, started)
        return True
    if src.phase != "Running" or src.reason in NOT_RUNNING_REASONS:
        state = src.reason or src.phase
        w.add(
            Candidate(
                C.SOURCE_POD_NOT_RUNNING,
                Hop.SOURCE_POD,
                f"{src.key} is not running ({state}): it cannot send anything",
                src.node,
                remediation(C.SOURCE_POD_NOT_RUNNING, namespace=src.namespace, pod=src.name),
                src.key,
            )
        )
        w.record(f"source {src.name}: API", StepStatus.FAIL, f"{src.key} is {state}", evidence, started, src.node)
        return False
    if not src.ip:
        w.add(
            Candidate(
                C.POD_HAS_NO_IP,
                Hop.SOURCE_POD,
                f"{src.key} is Running without an IP address: the CNI did not set up its network",
                src.node,
                remediation(C.POD_HAS_NO_IP, namespace=src.namespace, pod=src.name, node=src.node or "NODE"),
                src.key,
            )
        )
        w.record(f"source {src.name}: API", StepStatus.FAIL, f"{src.key} has no IP", evidence, started, src.node)
        return False
    w.record(
        f"source {src.name}: API", StepStatus.PASS, f"{src.key} is Running at {src.ip} on {src.node}", evidence, started, src.node
    )
    return True


def check_target_api(w: Walk) -> bool:
    """Service endpoints and ports, or the target pod's state. False: no endpoint to reach at all."""
    case = w.case
    started = time.monotonic()
    svc = case.service
    if case.target_kind == "pod":
        pod = case.target_pods[0] if case.target_pods else None
        if pod is not None and not pod.ip:
            w.add(
                Candidate(
                    C.POD_HAS_NO_IP,
                    Hop.DESTINATION_POD,
                    f"{pod.key} has no IP address: the CNI did not set up its network",
                    pod.node,
                    remediation(C.POD_HAS_NO_IP, namespace=pod.namespace, pod=pod.name, node=pod.node or "NODE"),
                )
            )
            w.record("target: API", StepStatus.FAIL, f"{pod.key} has no IP", (), started, pod.node)
            return False
        w.record("target: API", StepStatus.PASS, f"target {case.target_display}", (), started)
        return True
    if svc is None:
        w.record(
            "target: API",
            StepStatus.PASS,
            f"target {case.target_display} is an address outside the cluster's objects",
            (),
            started,
        )
        return True
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
    if not case.endpoints:
        why = (
            f"its selector {selector} matches no pod"
            if selector and not case.target_pods
            else "it has no selector and no manual endpoints"
            if not selector
            else "no endpoint was published for its pods"
        )
        w.add(
            Candidate(
                C.SERVICE_NO_ENDPOINTS,
                Hop.API,
                f"service {svc.key} has no endpoints: {why}",
                None,
                remediation(C.SERVICE_NO_ENDPOINTS, **facts),
            )
        )
        w.record("target: service endpoints", StepStatus.FAIL, f"{svc.key} has no endpoints", evidence, started)
        return False
    if not ready and routed:
        w.record(
            "target: service endpoints",
            StepStatus.WARN,
            f"{svc.key} has no ready endpoint, but kube-proxy still sends its traffic to the {len(routed)} serving "
            "endpoints of pods that are shutting down (terminating)",
            evidence,
            started,
        )
        return True
    if not ready:
        not_ready = case.endpoints[0].pod
        w.add(
            Candidate(
                C.SERVICE_ENDPOINTS_NOT_READY,
                Hop.API,
                f"all {len(case.endpoints)} endpoints of {svc.key} are not ready: kube-proxy sends its traffic nowhere",
                None,
                remediation(C.SERVICE_ENDPOINTS_NOT_READY, **facts, pod=not_ready.name if not_ready else "POD"),
            )
        )
        w.record("target: service endpoints", StepStatus.FAIL, f"no ready endpoint for {svc.key}", evidence, started)
        return False
    w.record("target: service endpoints", StepStatus.PASS, f"{svc.key} has {len(ready)} ready endpoints", evidence, started)
    return True


def _endpoint_state(e: EndpointRef) -> str:
    if e.ready:
        return ""
    return " (terminating, still serving)" if e.serving_terminating else " (not ready)"


async def check_target_port(w: Walk) -> None:
    """Does the targetPort name a port the backing pods expose or at least listen on?"""
    case, svc = w.case, w.case.service
    if svc is None:
        return
    started = time.monotonic()
    ready = [e for e in routed_endpoints(case.endpoints) if e.pod is not None]
    undeclared = [e for e in ready if e.pod is not None and not e.pod.declares(e.port, case.protocol)]
    if not undeclared:
        w.record(
            "target: port mapping",
            StepStatus.PASS,
            f"targetPort {svc.target_port} is a declared container port of every ready endpoint",
            (),
            started,
        )
        return
    listening: list[bool] = []
    evidence = []
    for e in undeclared:
        if e.node is None:
            continue
        sockets = await w.obs.sockets(e.node, e.ip, e.port, case.protocol)
        if sockets.unreachable:
            w.unreachable(sockets, f"the listening sockets of {e.pod.key if e.pod else e.ip}")
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
        w.add(
            Candidate(
                C.SERVICE_PORT_MISMATCH,
                Hop.API,
                f"service {svc.key} sends port {svc.port} to targetPort {svc.target_port}, which its pods neither declare ({', '.join(declared) or 'no ports'}) nor listen on",
                None,
                remediation(C.SERVICE_PORT_MISMATCH, namespace=svc.namespace, service=svc.name, suggest=suggest),
            )
        )
        w.record(
            "target: port mapping",
            StepStatus.FAIL,
            f"targetPort {svc.target_port} is not a port of the backing pods",
            evidence,
            started,
        )
    else:
        w.record(
            "target: port mapping",
            StepStatus.WARN if undeclared else StepStatus.PASS,
            f"targetPort {svc.target_port} is not declared by {len(undeclared)} pod(s), but they listen on it",
            evidence,
            started,
        )


async def _source(sw: SourceWalk) -> bool:
    return check_source_api(sw.w, sw.src) and sw.src.node is not None


async def _target(w: Walk) -> bool:
    return check_target_api(w)


async def _port(w: Walk) -> bool:
    await check_target_port(w)
    return True


SOURCE = SourceStep("source API", Hop.SOURCE_POD, frozenset(), _source)
TARGET = TargetStep("target API", Hop.API, frozenset(), _target)
TARGET_PORT = TargetStep("target port mapping", Hop.API, frozenset({Need.SOCKETS}), _port)
