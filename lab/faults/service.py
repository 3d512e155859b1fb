"""Service faults: a selector that matches nothing, a targetPort nobody listens on, endpoints not ready."""

from __future__ import annotations

import json
from dataclasses import dataclass

from lab.errors import LabError
from lab.faults.common import find, find_service, patch_pod_status, pod_key, ready_pods_of, svc_key
from lab.faults.model import Fault, FaultContext, FaultTarget, Needs, Obj, Undo, Verdict


@dataclass(frozen=True)
class SelectorUndo(Undo):
    """A service's selector as it was."""

    service: str
    selector: dict[str, str]


@dataclass(frozen=True)
class PortsUndo(Undo):
    """A service's ports as they were."""

    service: str
    ports: list[Obj]


@dataclass(frozen=True)
class NotReadyUndo(Undo):
    """The statuses of a service's pods as they were, by `namespace/name`."""

    service: str
    pods: dict[str, Obj]


def svc_path(svc: Obj) -> str:
    """The API path of a service object."""
    return f"/api/v1/namespaces/{svc['metadata']['namespace']}/services/{svc['metadata']['name']}"


def _inject_selector(ctx: FaultContext, t: FaultTarget) -> tuple[str, SelectorUndo]:
    assert t.service is not None
    selector = t.service["spec"].get("selector") or {}
    if not selector:
        raise LabError(f"service {svc_key(t.service)} has no selector to break", exit_code=2)
    key = sorted(selector)[0]
    broken = {**selector, key: selector[key] + "-v2"}
    ctx.api.merge_patch(svc_path(t.service), {"spec": {"selector": broken}})
    return (
        f"service {svc_key(t.service)} selects {key}={broken[key]}, which no pod has",
        SelectorUndo(svc_key(t.service), selector),
    )


def _heal_selector(ctx: FaultContext, undo: SelectorUndo) -> None:
    svc = find_service(ctx, undo.service)
    current = svc["spec"].get("selector") or {}
    patch = {k: None for k in current if k not in undo.selector} | undo.selector
    ctx.api.merge_patch(svc_path(svc), {"spec": {"selector": patch}})


def _inject_target_port(ctx: FaultContext, t: FaultTarget) -> tuple[str, PortsUndo]:
    assert t.service is not None
    ports = t.service["spec"]["ports"]
    broken = json.loads(json.dumps(ports))
    broken[0]["targetPort"] = 18081
    ctx.api.merge_patch(svc_path(t.service), {"spec": {"ports": broken}})
    return (
        f"service {svc_key(t.service)} port {ports[0]['port']} now targets 18081, which its pods neither expose nor listen on",
        PortsUndo(svc_key(t.service), ports),
    )


def _heal_ports(ctx: FaultContext, undo: PortsUndo) -> None:
    svc = find_service(ctx, undo.service)
    ctx.api.merge_patch(svc_path(svc), {"spec": {"ports": undo.ports}})


def _inject_not_ready(ctx: FaultContext, t: FaultTarget) -> tuple[str, NotReadyUndo]:
    assert t.service is not None
    pods = ready_pods_of(ctx, t.service)
    if not pods:
        raise LabError(f"service {svc_key(t.service)} has no pods to make unready", exit_code=2)
    saved = {}
    for pod in pods:
        saved[pod_key(pod)] = pod["status"]
        status = json.loads(json.dumps(pod["status"]))
        for c in status.get("conditions", []):
            if c["type"] in ("Ready", "ContainersReady"):
                c["status"], c["reason"] = "False", "ReadinessProbeFailed"
        for cs in status.get("containerStatuses", []):
            cs["ready"] = False
        patch_pod_status(ctx, pod, status)
    return f"all {len(pods)} pods of {svc_key(t.service)} fail their readiness probe", NotReadyUndo(svc_key(t.service), saved)


def _heal_not_ready(ctx: FaultContext, undo: NotReadyUndo) -> None:
    pods = ctx.pods()
    for key, status in undo.pods.items():
        patch_pod_status(ctx, find(pods, key, "pod", pod_key), status)


SELECTOR_MISMATCH = Fault(
    "selector-mismatch",
    Verdict.SERVICE_NO_ENDPOINTS,
    "change a service's selector so it matches no pod",
    Needs.SERVICE,
    _inject_selector,
    _heal_selector,
    SelectorUndo,
)
ENDPOINTS_NOT_READY = Fault(
    "endpoints-not-ready",
    Verdict.SERVICE_ENDPOINTS_NOT_READY,
    "make every pod of a service fail readiness",
    Needs.SERVICE,
    _inject_not_ready,
    _heal_not_ready,
    NotReadyUndo,
)
TARGET_PORT_MISMATCH = Fault(
    "target-port-mismatch",
    Verdict.SERVICE_PORT_MISMATCH,
    "point a service's targetPort at a port nobody listens on",
    Needs.SERVICE,
    _inject_target_port,
    _heal_ports,
    PortsUndo,
)
