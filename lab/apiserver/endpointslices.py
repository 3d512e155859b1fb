"""The EndpointSlice controller: keeps each selector Service's EndpointSlices equal to its selected pods.

It does what kube-controller-manager's endpointslice controller does for the lab's needs: for every
Service with a selector (not ExternalName), pods in the Service's namespace that match the selector,
have an IPv4 podIP and are not finished become endpoints. `serving` follows the pod's Ready condition
(and phase Running); `terminating` is set once the pod has a deletionTimestamp; `ready` is serving and
not terminating, or always true under publishNotReadyAddresses, as the upstream controller sets them
(a pod in its grace period stays `ready:false, serving:true, terminating:true`). Ports come from
the Service's ports with targetPorts resolved per pod (named targetPorts from the pod's container
ports; a pod that lacks the name is left out of that port). Pods whose ports resolve differently go
into separate slices. A slice without endpoints or ports has them null, as upstream writes it.
Slices are written only when their content changes, so resourceVersions do not churn.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Mapping
from typing import Any

from lab.apiserver.errors import AlreadyExists, ApiError, Conflict, NotFound
from lab.apiserver.resources import ENDPOINT_SLICES, PODS, SERVICES
from lab.apiserver.selectors import matches_label_map
from lab.apiserver.store import Store, Subscription, WatchEvent

log = logging.getLogger(__name__)

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
CONTROLLER_NAME = "endpointslice-controller.k8s.io"
HEADLESS_LABEL = "service.kubernetes.io/headless"
_MAX_ATTEMPTS = 8

PortKey = tuple[tuple[str, str, int, str], ...]
"""The resolved ports of one slice: (name, protocol, port, appProtocol) per Service port."""


def slice_name(namespace: str, service: str, port_key: PortKey | None = None) -> str:
    """The EndpointSlice name for a Service: `<service>-<5 lowercase letters>`, stable per Service.

    Extra slices (pods whose named ports resolve to other numbers) hash their ports in as well.
    """
    seed = f"{namespace}/{service}" if port_key is None else f"{namespace}/{service}/{port_key!r}"
    digest = hashlib.sha256(seed.encode()).digest()
    return f"{service}-" + "".join(chr(ord("a") + b % 26) for b in digest[:5])


def pod_is_ready(pod: Mapping[str, Any]) -> bool:
    """Whether a pod is Running and its Ready condition is True."""
    status = pod.get("status") or {}
    if status.get("phase") != "Running":
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def resolve_target_port(pod: Mapping[str, Any], service_port: Mapping[str, Any]) -> int | None:
    """The pod port a Service port sends to, or None when a named targetPort is not on the pod."""
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int):
        return target
    if not isinstance(target, str) or not target:
        return None
    if target.isdigit():
        return int(target)
    protocol = service_port.get("protocol", "TCP")
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == target and port.get("protocol", "TCP") == protocol:
                container_port = port.get("containerPort")
                return int(container_port) if container_port is not None else None
    return None


def _eligible(pod: Mapping[str, Any]) -> bool:
    ip = (pod.get("status") or {}).get("podIP")
    if not ip or ":" in ip:
        return False
    return (pod.get("status") or {}).get("phase") not in ("Failed", "Succeeded")


def _port_key_of_slice(endpoint_slice: Mapping[str, Any]) -> PortKey:
    return tuple(
        (p.get("name") or "", p.get("protocol") or "TCP", int(p.get("port") or 0), p.get("appProtocol") or "")
        for p in endpoint_slice.get("ports") or []
    )


def _ports_of_key(key: PortKey) -> list[dict[str, Any]]:
    ports: list[dict[str, Any]] = []
    for name, protocol, number, app_protocol in key:
        port: dict[str, Any] = {"name": name, "protocol": protocol, "port": number}
        if app_protocol:
            port["appProtocol"] = app_protocol
        ports.append(port)
    return ports


_CONTENT_FIELDS = ("addressType", "endpoints", "ports")


def _same_content(current: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    if any(current.get(f) != desired.get(f) for f in _CONTENT_FIELDS):
        return False
    cur_meta, want_meta = current.get("metadata") or {}, desired["metadata"]
    return bool(
        (cur_meta.get("labels") or {}) == want_meta["labels"]
        and (cur_meta.get("ownerReferences") or []) == want_meta["ownerReferences"]
    )


class EndpointSliceController:
    """Keeps EndpointSlices in a `Store` in step with its Services and Pods.

    `start()` subscribes to the store and reconciles every Service; afterwards pod and Service
    creates, updates and deletes (and edits to its own slices) trigger a reconcile of the Services
    concerned, on the thread that delivers the store's events.
    """

    def __init__(self, store: Store) -> None:
        """Control the EndpointSlices of `store` (nothing happens until `start()`)."""
        self.store = store
        self._lock = threading.RLock()
        self._subscription: Subscription | None = None

    def start(self) -> None:
        """Subscribe to the store and reconcile every Service once."""
        with self._lock:
            if self._subscription is not None:
                return
            self._subscription = self.store.subscribe(self._on_event)
        self.sync_all()

    def stop(self) -> None:
        """Stop reacting to changes (slices already written stay)."""
        with self._lock:
            if self._subscription is not None:
                self._subscription.cancel()
                self._subscription = None

    def sync_all(self) -> None:
        """Reconcile every Service in every namespace."""
        for service in self.store.list(SERVICES).items:
            meta = service["metadata"]
            self.sync_service(meta["namespace"], meta["name"])

    def sync_service(self, namespace: str, name: str) -> None:
        """Bring the slices of one Service to the desired state (deleting them if the Service is gone)."""
        with self._lock:
            for _ in range(_MAX_ATTEMPTS):
                try:
                    self._sync_once(namespace, name)
                    return
                except (Conflict, AlreadyExists, NotFound) as exc:
                    log.debug("endpointslice sync of %s/%s raced (%s); retrying", namespace, name, exc.reason)
            log.warning("endpointslice sync of %s/%s kept conflicting; it will retry on the next change", namespace, name)

    # ---------------------------------------------------------------------------- events

    def _on_event(self, event: WatchEvent) -> None:
        try:
            self._react(event)
        except ApiError as exc:
            # The write that triggered us already succeeded; a failed reconcile must not undo or
            # break it. The next change to the Service or its pods reconciles again.
            log.warning("endpointslice controller could not reconcile after %s: %s", event.type, exc.message)

    def _react(self, event: WatchEvent) -> None:
        if event.resource is SERVICES:
            meta = event.object["metadata"]
            self.sync_service(meta["namespace"], meta["name"])
        elif event.resource is PODS:
            namespace = event.object["metadata"]["namespace"]
            label_sets = [(event.object["metadata"].get("labels") or {})]
            if event.old_object is not None:
                label_sets.append(event.old_object["metadata"].get("labels") or {})
            for service in self.store.list(SERVICES, namespace).items:
                selector = (service.get("spec") or {}).get("selector")
                if any(matches_label_map(selector, labels) for labels in label_sets):
                    self.sync_service(namespace, service["metadata"]["name"])
        elif event.resource is ENDPOINT_SLICES:
            labels = event.object["metadata"].get("labels") or {}
            if event.old_object is not None:
                labels = {**(event.old_object["metadata"].get("labels") or {}), **labels}
            service_name = labels.get(SERVICE_NAME_LABEL)
            if labels.get(MANAGED_BY_LABEL) == CONTROLLER_NAME and service_name:
                self.sync_service(event.object["metadata"]["namespace"], service_name)

    # ------------------------------------------------------------------------- reconcile

    def _managed_slices(self, namespace: str, name: str) -> list[dict[str, Any]]:
        selector = f"{SERVICE_NAME_LABEL}={name},{MANAGED_BY_LABEL}={CONTROLLER_NAME}"
        return self.store.list(ENDPOINT_SLICES, namespace, label_selector=selector).items

    def _sync_once(self, namespace: str, name: str) -> None:
        try:
            service = self.store.get(SERVICES, name, namespace)
        except NotFound:
            for stale in self._managed_slices(namespace, name):
                self._delete_slice(stale)
            return
        spec = service.get("spec") or {}
        if not spec.get("selector") or spec.get("type") == "ExternalName":
            return
        groups = self._desired_groups(service)
        existing = self._managed_slices(namespace, name)
        names = self._assign_names(namespace, name, groups, existing)
        by_name = {s["metadata"]["name"]: s for s in existing}
        for key, slice_name_ in names.items():
            desired = self._desired_slice(service, slice_name_, key, groups[key])
            current = by_name.get(slice_name_)
            if current is None:
                self.store.create(desired)
            elif not _same_content(current, desired):
                updated = dict(current)
                updated.update({f: desired[f] for f in _CONTENT_FIELDS})
                updated["metadata"] = {
                    **current["metadata"],
                    "labels": desired["metadata"]["labels"],
                    "ownerReferences": desired["metadata"]["ownerReferences"],
                }
                self.store.replace(updated)
        wanted = set(names.values())
        for stale in existing:
            if stale["metadata"]["name"] not in wanted:
                self._delete_slice(stale)

    def _delete_slice(self, endpoint_slice: Mapping[str, Any]) -> None:
        meta = endpoint_slice["metadata"]
        try:
            self.store.delete(ENDPOINT_SLICES, meta["name"], meta["namespace"])
        except NotFound:
            log.debug("endpointslice %s/%s already gone", meta["namespace"], meta["name"])

    def _desired_groups(self, service: Mapping[str, Any]) -> dict[PortKey, list[dict[str, Any]]]:
        spec = service.get("spec") or {}
        namespace = service["metadata"]["namespace"]
        publish_not_ready = bool(spec.get("publishNotReadyAddresses"))
        groups: dict[PortKey, list[dict[str, Any]]] = {}
        for pod in self.store.list(PODS, namespace).items:
            meta = pod["metadata"]
            if not matches_label_map(spec.get("selector"), meta.get("labels")) or not _eligible(pod):
                continue
            key: list[tuple[str, str, int, str]] = []
            for service_port in spec.get("ports") or []:
                number = resolve_target_port(pod, service_port)
                if number is not None:
                    key.append(
                        (
                            service_port.get("name") or "",
                            service_port.get("protocol") or "TCP",
                            number,
                            service_port.get("appProtocol") or "",
                        )
                    )
            serving = pod_is_ready(pod)
            terminating = bool(meta.get("deletionTimestamp"))
            ready = publish_not_ready or (serving and not terminating)
            endpoint: dict[str, Any] = {
                "addresses": [pod["status"]["podIP"]],
                "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
                "targetRef": {"kind": "Pod", "name": meta["name"], "namespace": namespace, "uid": meta["uid"]},
            }
            pod_spec = pod.get("spec") or {}
            if pod_spec.get("nodeName"):
                endpoint["nodeName"] = pod_spec["nodeName"]
            if pod_spec.get("hostname") and pod_spec.get("subdomain") == service["metadata"]["name"]:
                endpoint["hostname"] = pod_spec["hostname"]
            groups.setdefault(tuple(key), []).append(endpoint)
        if not groups:
            groups[()] = []
        for endpoints in groups.values():
            endpoints.sort(key=lambda e: (e["targetRef"]["name"], e["addresses"][0]))
        return groups

    @staticmethod
    def _assign_names(
        namespace: str, name: str, groups: Mapping[PortKey, Any], existing: list[dict[str, Any]]
    ) -> dict[PortKey, str]:
        """Slice name per port group: keep the names of slices that already hold those ports."""
        assigned: dict[PortKey, str] = {}
        used: set[str] = set()
        for endpoint_slice in sorted(existing, key=lambda s: str(s["metadata"]["name"])):
            key = _port_key_of_slice(endpoint_slice)
            if key in groups and key not in assigned:
                assigned[key] = endpoint_slice["metadata"]["name"]
                used.add(assigned[key])
        base = slice_name(namespace, name)
        for key in sorted(groups):
            if key in assigned:
                continue
            candidate = base if base not in used else slice_name(namespace, name, key)
            salt = 0
            while candidate in used:
                salt += 1
                candidate = slice_name(namespace, name, (*key, ("", "", salt, "")))
            assigned[key] = candidate
            used.add(candidate)
        return assigned

    @staticmethod
    def _desired_slice(service: Mapping[str, Any], name: str, key: PortKey, endpoints: list[dict[str, Any]]) -> dict[str, Any]:
        meta = service["metadata"]
        labels = {k: v for k, v in (meta.get("labels") or {}).items() if k not in (SERVICE_NAME_LABEL, MANAGED_BY_LABEL)}
        labels[SERVICE_NAME_LABEL] = meta["name"]
        labels[MANAGED_BY_LABEL] = CONTROLLER_NAME
        if (service.get("spec") or {}).get("clusterIP") == "None":
            labels[HEADLESS_LABEL] = ""
        return {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": name,
                "namespace": meta["namespace"],
                "generateName": f"{meta['name']}-",
                "labels": labels,
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "Service",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "addressType": "IPv4",
            # The upstream controller writes null, not [], for a slice without endpoints or ports.
            "endpoints": endpoints or None,
            "ports": _ports_of_key(key) or None,
        }
