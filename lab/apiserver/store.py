"""The lab's object store: Kubernetes objects with one global resourceVersion and a watch history.

`Store` keeps every served object as plain JSON-shaped dicts, stamps server-owned metadata (uid,
creationTimestamp, resourceVersion, generation), enforces optimistic concurrency, records each change
as a `WatchEvent` in a bounded history (for HTTP watches that resume from a resourceVersion) and
hands events to in-process subscribers (controllers) after the write's lock is released, one at a
time and in resourceVersion order.
"""

from __future__ import annotations

import base64
import binascii
import builtins
import copy
import ipaddress
import json
import marshal
import re
import secrets
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from lab.apiserver.errors import (
    AlreadyExists,
    BadRequest,
    Conflict,
    Expired,
    Invalid,
    NotFound,
    field_invalid,
    invalid,
    object_details,
)
from lab.apiserver.patches import PATCH_TYPES, apply_patch
from lab.apiserver.resources import NAMESPACES, PODS, SERVICES, ResourceType, resolve, resource_of
from lab.apiserver.selectors import FieldSelector, LabelSelector, parse_field_selector, parse_label_selector

_T = TypeVar("_T")

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
DEFAULT_HISTORY_SIZE = 4096
DEFAULT_SERVICE_CIDR = "10.96.0.0/12"
NODE_PORT_RANGE = (30000, 32767)
"""kube-apiserver's default --service-node-port-range."""
_NO_GENERATION_KINDS = frozenset({"Service", "Node", "Namespace"})
"""Kinds whose metadata.generation kube-apiserver leaves unset."""
DEFAULT_TERMINATION_GRACE_SECONDS = 30
"""A pod's spec.terminationGracePeriodSeconds when it sets none (as kube-apiserver defaults it)."""

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_NAME_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_DNS_LABEL_KINDS = frozenset({"Namespace", "Service"})
_RFC1123_LABEL = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end "
    "with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
_RFC1123_SUBDOMAIN = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start "
    "and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)


@dataclass(frozen=True)
class WatchEvent:
    """One change to one object, as a watch reports it.

    `object` is the object after the change (for DELETED: its last state, carrying the deletion's
    resourceVersion); `old_object` the state before (None for ADDED).
    """

    type: str
    object: dict[str, Any]
    resource: ResourceType
    resource_version: int
    old_object: dict[str, Any] | None = None

    def to_wire(self) -> dict[str, Any]:
        """The JSON WatchEvent a watch stream carries: {"type", "object"}."""
        return {"type": self.type, "object": self.object}


@dataclass(frozen=True)
class ObjectList:
    """The result of a list: items, the list's resourceVersion, and the continuation if limited."""

    items: list[dict[str, Any]]
    resource_version: str
    continue_token: str | None = None
    remaining_item_count: int | None = None


@dataclass(frozen=True)
class Preconditions:
    """Conditions a delete must meet (metav1.Preconditions)."""

    uid: str | None = None
    resource_version: str | None = None


WatchCallback = Callable[[WatchEvent], None]


@dataclass
class Subscription:
    """A registered in-process subscriber; `cancel()` stops deliveries."""

    callback: WatchCallback
    _store: Store = field(repr=False)

    def cancel(self) -> None:
        """Stop delivering events to this subscriber (idempotent)."""
        self._store._unsubscribe(self)


def now_timestamp(after_seconds: int = 0) -> str:
    """The current time (plus `after_seconds`) in the RFC 3339 form Kubernetes uses in metadata."""
    return (datetime.now(UTC) + timedelta(seconds=after_seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: str) -> datetime:
    """A metadata timestamp ("2026-01-02T03:04:05Z") as an aware datetime."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _copied(value: _T) -> _T:
    """A deep copy of JSON-shaped data, as every read and write of the store makes one.

    marshal's round trip copies dicts, lists, strings and numbers in C: a list page of 500 pods in
    75 ms against copy.deepcopy's 344 ms, which was most of the time the lab's API server spent
    serving a 5,000-pod list. Anything marshal cannot carry (a dict subclass, an object) is copied
    with copy.deepcopy, as before.
    """
    try:
        copied: _T = marshal.loads(marshal.dumps(value))  # type: ignore[arg-type]  # noqa: S302 - our own bytes
    except ValueError:
        return copy.deepcopy(value)
    return copied


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj["metadata"]
    return (meta.get("namespace") or "", meta["name"])


def _without_volatile(obj: Mapping[str, Any]) -> dict[str, Any]:
    result = dict(obj)
    meta = dict(result.get("metadata") or {})
    meta.pop("resourceVersion", None)
    meta.pop("managedFields", None)
    result["metadata"] = meta
    return result


def _spec_part(obj: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


class Store:
    """Thread-safe store of the served objects, with watch history and in-process subscribers.

    Resources are named by `ResourceType`, plural ("pods"), kind ("Pod") or short name ("svc").
    Returned objects are deep copies; mutate them freely. All methods raise `ApiError` subclasses
    (NotFound, AlreadyExists, Conflict, BadRequest, Invalid, Expired) on refusal.
    """

    def __init__(
        self,
        *,
        history_size: int = DEFAULT_HISTORY_SIZE,
        namespaces: Iterable[str] = DEFAULT_NAMESPACES,
        service_cidr: str = DEFAULT_SERVICE_CIDR,
    ) -> None:
        """Create an empty store holding the given namespaces (Active, as a fresh cluster has)."""
        self._cond = threading.Condition(threading.Lock())
        self._objects: dict[ResourceType, dict[tuple[str, str], dict[str, Any]]] = {}
        self._rv = 0
        self._history: deque[WatchEvent] = deque()
        self._history_size = max(1, history_size)
        self._compacted_rv = 0
        self._subscribers: list[Subscription] = []
        self._pending: deque[WatchEvent] = deque()
        self._draining = False
        self._service_network = ipaddress.ip_network(service_cidr)
        for name in namespaces:
            self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    # ----------------------------------------------------------------------------------- reads

    @property
    def resource_version(self) -> str:
        """The current global resourceVersion."""
        with self._cond:
            return str(self._rv)

    @property
    def oldest_resource_version(self) -> int:
        """The oldest resourceVersion a watch can still resume from."""
        with self._cond:
            return self._compacted_rv

    def get(self, resource: ResourceType | str, name: str, namespace: str | None = None) -> dict[str, Any]:
        """One object; NotFound if it does not exist."""
        rtype = resolve(resource)
        with self._cond:
            return _copied(self._lookup(rtype, name, namespace))

    def list(
        self,
        resource: ResourceType | str,
        namespace: str | None = None,
        *,
        label_selector: str | LabelSelector | None = None,
        field_selector: str | FieldSelector | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
        resource_version: str | None = None,
        resource_version_match: str | None = None,
    ) -> ObjectList:
        """Objects of a type (in one namespace, or all when `namespace` is None), filtered and paged.

        Items are ordered as etcd orders their keys ("namespace/name", or "name"). With `limit`, the
        result carries a continue token that encodes the list's resourceVersion: the next pages show
        the objects as they were then (a consistent snapshot), until that version leaves the watch
        history; then the continue is Expired (410) and carries a fresh, inconsistent token that
        pages on over current data, as kube-apiserver does after an etcd compaction.

        `resource_version` "0" serves the current state without paging (as the watch cache does);
        with `resource_version_match="Exact"` the list is the state at that version (410 once
        compacted).
        """
        rtype = resolve(resource)
        labels = label_selector if isinstance(label_selector, LabelSelector) else parse_label_selector(label_selector)
        fields = field_selector if isinstance(field_selector, FieldSelector) else parse_field_selector(field_selector, rtype.kind)
        start = ""
        snapshot_rv: int | None = None
        if continue_token:
            if resource_version:
                raise BadRequest("specifying resource version is not allowed when using continue")
            snapshot_rv, start = _decode_continue(continue_token)
        exact: int | None = None
        if resource_version_match not in (None, "", "NotOlderThan", "Exact"):
            raise BadRequest(f'resourceVersionMatch "{resource_version_match}" is not one of Exact, NotOlderThan')
        if resource_version_match and not resource_version:
            raise BadRequest("resourceVersionMatch is forbidden unless resourceVersion is provided")
        if resource_version:
            try:
                asked = int(resource_version)
            except ValueError as exc:
                raise BadRequest(f'resourceVersion "{resource_version}" is not a valid resourceVersion') from exc
            if resource_version_match == "Exact":
                exact = asked
            elif asked == 0:
                limit = None  # served from the watch cache: the whole list, no pages
        with self._cond:
            if snapshot_rv is not None and snapshot_rv > 0:
                if snapshot_rv < self._compacted_rv:
                    raise Expired(
                        "The provided continue parameter is too old to display a consistent list result. You can start "
                        "a new list without the continue parameter, or use the continue token in this response to "
                        "retrieve the remainder of the results. Continuing with the provided token results in an "
                        "inconsistent list - objects that were created, modified, or deleted between the time the first "
                        "chunk was returned and now may show up in the list.",
                        metadata={"continue": _encode_continue(-1, start)},
                    )
                table, rv = self._state_at(rtype, snapshot_rv), snapshot_rv
            elif exact is not None:
                if exact < self._compacted_rv:
                    raise Expired(f"too old resource version: {exact} ({self._compacted_rv})")
                if exact > self._rv:
                    raise Expired(f"Too large resource version: {exact}, current: {self._rv}")
                table, rv = self._state_at(rtype, exact), exact
            else:
                table, rv = self._objects.get(rtype, {}), self._rv
            selected = [
                obj
                for key_text, obj in sorted((_etcd_key(rtype, key), obj) for key, obj in table.items())
                if (not start or key_text >= start)
                and (namespace is None or not rtype.namespaced or obj["metadata"].get("namespace") == namespace)
                and labels.matches(obj["metadata"].get("labels"))
                and fields.matches(obj)
            ]
            if limit is not None and limit > 0 and len(selected) > limit:
                page = selected[:limit]
                token = _encode_continue(rv, _etcd_key(rtype, _key(page[-1])) + "\x00")
                remaining = None if (labels.requirements or fields.requirements) else len(selected) - limit
                return ObjectList(_copied(page), str(rv), token, remaining)
            return ObjectList(_copied(selected), str(rv))

    def _state_at(self, rtype: ResourceType, resource_version: int) -> dict[tuple[str, str], dict[str, Any]]:
        """The objects of a type as they were at `resource_version` (undoing newer history events)."""
        table = dict(self._objects.get(rtype, {}))
        for event in reversed(self._history):
            if event.resource_version <= resource_version:
                break
            if event.resource is not rtype:
                continue
            key = _key(event.object)
            if event.type == "ADDED" or event.old_object is None:
                table.pop(key, None)
            else:
                table[key] = event.old_object
        return table

    # ---------------------------------------------------------------------------------- writes

    def create(self, obj: Mapping[str, Any], *, namespace: str | None = None) -> dict[str, Any]:
        """Store a new object (type from apiVersion/kind); returns it with server metadata.

        Namespaced objects take `namespace` or metadata.namespace, and the namespace must exist.
        metadata.generateName is honoured when metadata.name is empty.
        """
        rtype = resource_of(obj)
        new = _copied(dict(obj))
        meta = new.get("metadata")
        if meta is None:
            meta = new["metadata"] = {}
        if not isinstance(meta, dict):
            raise BadRequest("metadata must be an object")
        ns = self._namespace_for(rtype, meta, namespace)
        if not meta.get("name"):
            prefix = meta.get("generateName")
            if not prefix:
                raise Invalid(f"{rtype.kind}: metadata.name or metadata.generateName is required")
            meta["name"] = prefix + "".join(secrets.choice(_NAME_SUFFIX_ALPHABET) for _ in range(5))
        self._validate(rtype, new)
        for server_field in ("resourceVersion", "uid", "creationTimestamp", "deletionTimestamp", "selfLink"):
            meta.pop(server_field, None)
        with self._cond:
            if rtype.namespaced and ("", ns or "") not in self._objects.get(NAMESPACES, {}):
                raise NotFound(f'namespaces "{ns}" not found', details=object_details("namespaces", "", ns or ""))
            table = self._objects.setdefault(rtype, {})
            key = (ns or "", meta["name"])
            if key in table:
                raise AlreadyExists(
                    f'{rtype.qualified_plural} "{meta["name"]}" already exists',
                    details=object_details(rtype.plural, rtype.group, meta["name"]),
                )
            self._apply_defaults(rtype, new, None)
            rv = self._next_rv()
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_timestamp()
            meta["resourceVersion"] = str(rv)
            if rtype.kind in _NO_GENERATION_KINDS:
                meta.pop("generation", None)
            else:
                meta["generation"] = 1
            table[key] = new
            self._record(WatchEvent("ADDED", new, rtype, rv))
            result = _copied(new)
        self._drain()
        return result

    def replace(
        self,
        obj: Mapping[str, Any],
        *,
        namespace: str | None = None,
        subresource: str | None = None,
        keep_status: bool = False,
    ) -> dict[str, Any]:
        """Replace an object (PUT). A set metadata.resourceVersion must equal the stored one (else Conflict).

        `subresource="status"` changes only the status. `keep_status=True` ignores the given status
        (what a PUT on the main resource does for kinds with a status subresource). An update that
        changes nothing is a no-op: no new resourceVersion, no event.
        """
        rtype = resource_of(obj)
        given = _copied(dict(obj))
        meta = given.get("metadata")
        if not isinstance(meta, dict) or not meta.get("name"):
            raise BadRequest("metadata.name is required to replace an object")
        ns = self._namespace_for(rtype, meta, namespace)
        with self._cond:
            current = self._lookup(rtype, meta["name"], ns)
            result, deleted = self._update_locked(rtype, current, given, subresource, keep_status)
        self._drain()
        return _copied(result) if not deleted else result

    def put(self, obj: Mapping[str, Any], *, namespace: str | None = None) -> dict[str, Any]:
        """Create the object, or replace it unconditionally (spec and status) if it exists."""
        try:
            return self.create(obj, namespace=namespace)
        except AlreadyExists:
            unconditional = _copied(dict(obj))
            (unconditional.get("metadata") or {}).pop("resourceVersion", None)
            return self.replace(unconditional, namespace=namespace)

    def patch(
        self,
        resource: ResourceType | str,
        name: str,
        patch: Any,
        namespace: str | None = None,
        *,
        patch_type: str = "merge",
        subresource: str | None = None,
        keep_status: bool = False,
    ) -> dict[str, Any]:
        """Patch an object. `patch_type`: "merge", "strategic" (applied as merge), "json" (RFC 6902),
        or a patch media type such as "application/merge-patch+json"."""
        rtype = resolve(resource)
        content_type = PATCH_TYPES.get(patch_type, patch_type)
        with self._cond:
            current = self._lookup(rtype, name, namespace)
            patched = apply_patch(current, patch, content_type)
            meta = patched.get("metadata")
            if not isinstance(meta, dict):
                raise BadRequest("metadata must be an object")
            meta["name"] = name
            if rtype.namespaced:
                meta["namespace"] = current["metadata"]["namespace"]
            patched["apiVersion"] = rtype.api_version
            patched["kind"] = rtype.kind
            result, deleted = self._update_locked(rtype, current, patched, subresource, keep_status)
        self._drain()
        return _copied(result) if not deleted else result

    def delete(
        self,
        resource: ResourceType | str,
        name: str,
        namespace: str | None = None,
        *,
        preconditions: Preconditions | None = None,
        grace_period_seconds: int | None = None,
    ) -> dict[str, Any]:
        """Delete an object and return its last state.

        Objects with metadata.finalizers are only marked (deletionTimestamp) until an update clears
        the finalizers. Deleting a namespace deletes every object in it.

        Pods are deleted gracefully, as kube-apiserver deletes them: a pod bound to a node and not
        finished gets `deletionTimestamp` = now + its grace period (`grace_period_seconds`, else
        spec.terminationGracePeriodSeconds, default 30) and `deletionGracePeriodSeconds`, and stays
        (Terminating) until its kubelet deletes it with grace 0 (`finish_graceful_deletions` in the
        lab). Grace 0, an unscheduled pod and a Failed/Succeeded pod go at once. A second delete can
        shorten the grace period, never lengthen it.
        """
        rtype = resolve(resource)
        if grace_period_seconds is not None and grace_period_seconds < 0:
            raise Invalid(f"gracePeriodSeconds must be 0 or more, not {grace_period_seconds}")
        with self._cond:
            current = self._lookup(rtype, name, namespace)
            if preconditions is not None:
                self._check_preconditions(rtype, current, preconditions)
            grace = self._pod_grace(current, grace_period_seconds) if rtype is PODS else 0
            if grace < 0:
                result = current
            elif grace > 0:
                result = self._begin_graceful_delete_locked(rtype, current, grace)
            else:
                result = self._delete_locked(rtype, current, grace_ended=rtype is PODS)
        self._drain()
        return _copied(result)

    def finish_graceful_deletions(self, now: datetime | None = None) -> builtins.list[tuple[str, str]]:
        """What a kubelet does when a terminating pod's grace period is over: delete it with grace 0.

        Returns the (namespace, name) of the pods removed. Pods held by finalizers stay, marked
        with deletionGracePeriodSeconds 0, until the finalizers are cleared.
        """
        moment = now or datetime.now(UTC)
        finished: builtins.list[tuple[str, str]] = []
        with self._cond:
            for key, pod in sorted(self._objects.get(PODS, {}).items()):
                meta = pod["metadata"]
                if not meta.get("deletionTimestamp") or not meta.get("deletionGracePeriodSeconds"):
                    continue
                if parse_timestamp(meta["deletionTimestamp"]) > moment:
                    continue
                self._delete_locked(PODS, pod, grace_ended=True)
                if key not in self._objects[PODS]:
                    finished.append(key)
        self._drain()
        return finished

    def next_graceful_deadline(self) -> datetime | None:
        """When the earliest terminating pod's grace period ends (None: no pod is terminating)."""
        with self._cond:
            deadlines = [
                parse_timestamp(pod["metadata"]["deletionTimestamp"])
                for pod in self._objects.get(PODS, {}).values()
                if pod["metadata"].get("deletionTimestamp") and pod["metadata"].get("deletionGracePeriodSeconds")
            ]
        return min(deadlines, default=None)

    # --------------------------------------------------------------------------- subscriptions

    def subscribe(self, callback: WatchCallback) -> Subscription:
        """Deliver every future change to `callback` (never under the store lock).

        Deliveries are serialised and in resourceVersion order; they run on the thread of the write
        that finds no delivery in progress, after its lock is released. A callback may write to the
        store; the events of those writes are delivered after the callback returns. Each call gets
        its own copy of the objects.
        """
        subscription = Subscription(callback, self)
        with self._cond:
            self._subscribers.append(subscription)
        return subscription

    def _unsubscribe(self, subscription: Subscription) -> None:
        with self._cond:
            if subscription in self._subscribers:
                self._subscribers.remove(subscription)

    # ------------------------------------------------------------------- watch support (server)

    def snapshot(
        self,
        resource: ResourceType,
        namespace: str | None,
        labels: LabelSelector,
        fields: FieldSelector,
    ) -> tuple[builtins.list[dict[str, Any]], int]:
        """Matching objects (shared, do not mutate) and the resourceVersion they are current at."""
        with self._cond:
            items = [
                obj
                for key, obj in sorted(self._objects.get(resource, {}).items())
                if (namespace is None or key[0] == namespace)
                and labels.matches(obj["metadata"].get("labels"))
                and fields.matches(obj)
            ]
            return items, self._rv

    def events_after(
        self, resource_version: int, timeout: float, stopping: threading.Event | None = None
    ) -> tuple[builtins.list[WatchEvent], int]:
        """Events newer than `resource_version` (shared, do not mutate), waiting up to `timeout` s for one.

        Returns the events and the newest resourceVersion they cover. Raises Expired when events
        after `resource_version` have already left the bounded history.
        """
        with self._cond:
            self._check_not_expired(resource_version)
            if self._rv <= resource_version and not (stopping is not None and stopping.is_set()):
                self._cond.wait(timeout)
            self._check_not_expired(resource_version)
            newer: builtins.list[WatchEvent] = []
            for event in reversed(self._history):
                if event.resource_version <= resource_version:
                    break
                newer.append(event)
            newer.reverse()
            return newer, max(self._rv, resource_version)

    def wake_watchers(self) -> None:
        """Wake every thread waiting in `events_after` (used when a server stops)."""
        with self._cond:
            self._cond.notify_all()

    def _check_not_expired(self, resource_version: int) -> None:
        if resource_version < self._compacted_rv:
            raise Expired(f"too old resource version: {resource_version} ({self._compacted_rv})")

    # -------------------------------------------------------------------------------- internals

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _record(self, event: WatchEvent) -> None:
        if len(self._history) >= self._history_size:
            self._compacted_rv = self._history.popleft().resource_version
        self._history.append(event)
        if self._subscribers:
            self._pending.append(event)
        self._cond.notify_all()

    def _drain(self) -> None:
        with self._cond:
            if self._draining:
                return
            self._draining = True
        try:
            while True:
                with self._cond:
                    if not self._pending:
                        self._draining = False
                        return
                    event = self._pending.popleft()
                    subscribers = list(self._subscribers)
                for subscription in subscribers:
                    subscription.callback(
                        WatchEvent(
                            event.type,
                            _copied(event.object),
                            event.resource,
                            event.resource_version,
                            _copied(event.old_object),
                        )
                    )
        except BaseException:
            with self._cond:
                self._draining = False
            raise

    def _lookup(self, rtype: ResourceType, name: str, namespace: str | None) -> dict[str, Any]:
        if rtype.namespaced and not namespace:
            raise BadRequest(f"{rtype.kind} is namespaced: give a namespace to find {name!r}")
        key = (namespace or "" if rtype.namespaced else "", name)
        found = self._objects.get(rtype, {}).get(key)
        if found is None:
            raise NotFound(
                f'{rtype.qualified_plural} "{name}" not found', details=object_details(rtype.plural, rtype.group, name)
            )
        return found

    @staticmethod
    def _namespace_for(rtype: ResourceType, meta: dict[str, Any], namespace: str | None) -> str | None:
        if not rtype.namespaced:
            meta.pop("namespace", None)
            return None
        given = meta.get("namespace")
        if namespace and given and given != namespace:
            raise BadRequest("the namespace of the provided object does not match the namespace sent on the request")
        ns = namespace or given
        if not ns:
            raise BadRequest(f"{rtype.kind} {meta.get('name')!r} needs a namespace (metadata.namespace)")
        meta["namespace"] = ns
        return str(ns)

    @staticmethod
    def _validate(rtype: ResourceType, obj: Mapping[str, Any]) -> None:
        """Invalid (422) with every problem found, as kube-apiserver reports them (details.causes)."""
        name = str((obj.get("metadata") or {}).get("name") or "")
        causes: builtins.list[dict[str, str]] = []
        if rtype.kind in _DNS_LABEL_KINDS:
            if len(name) > 63:
                causes.append(field_invalid("metadata.name", name, "must be no more than 63 characters"))
            if not _LABEL.match(name):
                causes.append(field_invalid("metadata.name", name, _RFC1123_LABEL))
        elif len(name) > 253 or not _SUBDOMAIN.match(name):
            causes.append(field_invalid("metadata.name", name, _RFC1123_SUBDOMAIN))
        if rtype is SERVICES:
            for index, port in enumerate((obj.get("spec") or {}).get("ports") or []):
                for key in ("port", "targetPort", "nodePort"):
                    value = port.get(key) if isinstance(port, Mapping) else None
                    if isinstance(value, int) and not isinstance(value, bool) and not 1 <= value <= 65535:
                        if key == "nodePort" and value == 0:
                            continue
                        causes.append(
                            field_invalid(f"spec.ports[{index}].{key}", value, "must be between 1 and 65535, inclusive")
                        )
        if causes:
            raise invalid(rtype.kind, name, causes)

    def _check_preconditions(self, rtype: ResourceType, current: dict[str, Any], pre: Preconditions) -> None:
        meta = current["metadata"]
        if pre.uid is not None and pre.uid != meta["uid"]:
            raise Conflict(
                f"Precondition failed: UID in precondition: {pre.uid}, UID in object meta: {meta['uid']}",
                details=object_details(rtype.plural, rtype.group, meta["name"]),
            )
        if pre.resource_version is not None and pre.resource_version != meta["resourceVersion"]:
            raise Conflict(
                f"Precondition failed: ResourceVersion in precondition: {pre.resource_version}, "
                f"ResourceVersion in object meta: {meta['resourceVersion']}",
                details=object_details(rtype.plural, rtype.group, meta["name"]),
            )

    def _update_locked(
        self,
        rtype: ResourceType,
        current: dict[str, Any],
        given: dict[str, Any],
        subresource: str | None,
        keep_status: bool,
    ) -> tuple[dict[str, Any], bool]:
        """Apply an update under the lock; returns (stored or deleted object, whether it was deleted)."""
        cur_meta = current["metadata"]
        given_meta = given.get("metadata") or {}
        name = cur_meta["name"]
        given_rv = given_meta.get("resourceVersion")
        if given_rv and str(given_rv) != cur_meta["resourceVersion"]:
            raise Conflict(
                f'Operation cannot be fulfilled on {rtype.qualified_plural} "{name}": the object has been '
                "modified; please apply your changes to the latest version and try again",
                details=object_details(rtype.plural, rtype.group, name),
            )
        if given_meta.get("uid") and given_meta["uid"] != cur_meta["uid"]:
            raise Conflict(
                f'Operation cannot be fulfilled on {rtype.qualified_plural} "{name}": the UID in the precondition '
                f"({given_meta['uid']}) does not match the UID in record ({cur_meta['uid']}); the object might "
                "have been deleted and then recreated",
                details=object_details(rtype.plural, rtype.group, name),
            )
        if subresource not in (None, "status"):
            raise NotFound(f"the server could not find the requested resource ({rtype.plural}/{subresource})")
        if subresource == "status":
            if not rtype.has_status:
                raise NotFound(f"{rtype.plural} have no status subresource")
            new = _copied(current)
            if "status" in given:
                new["status"] = _copied(given["status"])
            else:
                new.pop("status", None)
        else:
            new = _copied(given)
            new["apiVersion"] = rtype.api_version
            new["kind"] = rtype.kind
            if keep_status and rtype.has_status:
                if "status" in current:
                    new["status"] = _copied(current["status"])
                else:
                    new.pop("status", None)
        meta = new.get("metadata")
        if not isinstance(meta, dict):
            meta = new["metadata"] = {}
        for kept in ("uid", "creationTimestamp", "name", "namespace", "generation", "deletionTimestamp"):
            if kept in cur_meta:
                meta[kept] = cur_meta[kept]
            else:
                meta.pop(kept, None)
        if "deletionGracePeriodSeconds" in cur_meta:
            meta["deletionGracePeriodSeconds"] = cur_meta["deletionGracePeriodSeconds"]
        meta["resourceVersion"] = cur_meta["resourceVersion"]
        if rtype is SERVICES:
            self._validate(rtype, new)
        self._apply_defaults(rtype, new, current)
        if _spec_part(new) != _spec_part(current) and rtype.kind not in _NO_GENERATION_KINDS:
            meta["generation"] = int(cur_meta.get("generation", 1)) + 1
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and not meta.get("deletionGracePeriodSeconds"):
            return self._remove_locked(rtype, current), True
        if _without_volatile(new) == _without_volatile(current):
            return current, False
        rv = self._next_rv()
        meta["resourceVersion"] = str(rv)
        self._objects[rtype][_key(current)] = new
        self._record(WatchEvent("MODIFIED", new, rtype, rv, current))
        return new, False

    @staticmethod
    def _pod_grace(pod: dict[str, Any], requested: int | None) -> int:
        """The grace period a pod delete gets (0: delete at once), as the pod strategy decides it."""
        spec, meta = pod.get("spec") or {}, pod["metadata"]
        if not spec.get("nodeName") or (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded"):
            return 0
        grace = requested
        if grace is None:
            grace = spec.get("terminationGracePeriodSeconds")
        if not isinstance(grace, int) or isinstance(grace, bool):
            grace = DEFAULT_TERMINATION_GRACE_SECONDS
        if meta.get("deletionTimestamp"):
            already = meta.get("deletionGracePeriodSeconds")
            if isinstance(already, int) and (already == 0 or grace >= already):
                return -1  # already terminating at least as fast: nothing changes
        return max(grace, 0)

    def _begin_graceful_delete_locked(self, rtype: ResourceType, current: dict[str, Any], grace: int) -> dict[str, Any]:
        new = _copied(current)
        meta = new["metadata"]
        meta["deletionTimestamp"] = now_timestamp(grace)
        meta["deletionGracePeriodSeconds"] = grace
        meta["generation"] = int(meta.get("generation", 1)) + 1
        rv = self._next_rv()
        meta["resourceVersion"] = str(rv)
        self._objects[rtype][_key(current)] = new
        self._record(WatchEvent("MODIFIED", new, rtype, rv, current))
        return new

    def _delete_locked(self, rtype: ResourceType, current: dict[str, Any], *, grace_ended: bool = False) -> dict[str, Any]:
        if rtype is NAMESPACES:
            ns = current["metadata"]["name"]
            if not current["metadata"].get("deletionTimestamp"):
                # As in kube-apiserver: the namespace turns Terminating first (MODIFIED), then goes.
                terminating = _copied(current)
                terminating["metadata"]["deletionTimestamp"] = now_timestamp()
                terminating.setdefault("status", {})["phase"] = "Terminating"
                rv = self._next_rv()
                terminating["metadata"]["resourceVersion"] = str(rv)
                self._objects[rtype][_key(current)] = terminating
                self._record(WatchEvent("MODIFIED", terminating, rtype, rv, current))
                current = terminating
            for other, table in self._objects.items():
                if other.namespaced:
                    for key in sorted(k for k in table if k[0] == ns):
                        self._delete_locked(other, table[key])
        meta = current["metadata"]
        if meta.get("finalizers"):
            if meta.get("deletionTimestamp") and not (grace_ended and meta.get("deletionGracePeriodSeconds")):
                return current
            new = _copied(current)
            if not meta.get("deletionTimestamp"):
                new["metadata"]["deletionTimestamp"] = now_timestamp()
                if "generation" in meta:
                    new["metadata"]["generation"] = int(meta["generation"]) + 1
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            rv = self._next_rv()
            new["metadata"]["resourceVersion"] = str(rv)
            self._objects[rtype][_key(current)] = new
            self._record(WatchEvent("MODIFIED", new, rtype, rv, current))
            return new
        return self._remove_locked(rtype, current)

    def _remove_locked(self, rtype: ResourceType, current: dict[str, Any]) -> dict[str, Any]:
        rv = self._next_rv()
        gone = _copied(current)
        gone["metadata"]["resourceVersion"] = str(rv)
        del self._objects[rtype][_key(current)]
        self._record(WatchEvent("DELETED", gone, rtype, rv, current))
        return _copied(gone)

    def _apply_defaults(self, rtype: ResourceType, obj: dict[str, Any], current: dict[str, Any] | None) -> None:
        """Fill the defaults kube-apiserver fills, so clients see the shapes they expect."""
        if rtype is NAMESPACES:
            meta = obj["metadata"]
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
            obj.setdefault("status", {}).setdefault("phase", "Active")
        elif rtype is PODS:
            _default_pod(obj)
        elif rtype is SERVICES:
            self._default_service(obj, current)

    def _default_service(self, obj: dict[str, Any], current: dict[str, Any] | None) -> None:
        """Service defaults and allocations as kube-apiserver v1.36 makes them (see scenario-services)."""
        spec = obj.setdefault("spec", {})
        old_spec = (current or {}).get("spec") or {}
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        if spec["sessionAffinity"] == "ClientIP":
            client_ip = spec.setdefault("sessionAffinityConfig", {}).setdefault("clientIP", {})
            client_ip.setdefault("timeoutSeconds", 10800)
        for port in spec.get("ports", []) or []:
            port.setdefault("protocol", "TCP")
            if spec["type"] != "ExternalName":
                port.setdefault("targetPort", port.get("port"))
        obj.setdefault("status", {}).setdefault("loadBalancer", {})
        if spec["type"] == "ExternalName":
            return
        spec.setdefault("internalTrafficPolicy", "Cluster")
        if current is not None and not spec.get("clusterIP"):
            spec["clusterIP"] = old_spec.get("clusterIP")
        if not spec.get("clusterIP"):
            spec["clusterIP"] = self._allocate_cluster_ip(_key(obj))
        elif spec["clusterIP"] != "None":
            try:
                address = ipaddress.ip_address(spec["clusterIP"])
            except ValueError as exc:
                raise Invalid(f"spec.clusterIP {spec['clusterIP']!r} is not an IP address") from exc
            owner = self._cluster_ip_owner(str(address))
            if owner is not None and (current is None or _key(owner) != _key(current)):
                raise Invalid(
                    f"spec.clusterIP {address} is already allocated to service "
                    f"{owner['metadata']['namespace']}/{owner['metadata']['name']}"
                )
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        external = spec["type"] in ("NodePort", "LoadBalancer")
        if not external:
            return
        spec.setdefault("externalTrafficPolicy", "Cluster")
        if spec["type"] == "LoadBalancer":
            spec.setdefault("allocateLoadBalancerNodePorts", True)
        if spec["type"] == "NodePort" or spec.get("allocateLoadBalancerNodePorts"):
            kept = {(p.get("port"), p.get("protocol")): p.get("nodePort") for p in old_spec.get("ports") or []}
            for port in spec.get("ports", []) or []:
                if not port.get("nodePort"):
                    port["nodePort"] = kept.get((port.get("port"), port.get("protocol"))) or self._allocate_node_port()
        if spec["type"] == "LoadBalancer" and spec["externalTrafficPolicy"] == "Local" and not spec.get("healthCheckNodePort"):
            spec["healthCheckNodePort"] = old_spec.get("healthCheckNodePort") or self._allocate_node_port()

    def _node_ports_in_use(self) -> set[int]:
        used: set[int] = set()
        for svc in self._objects.get(SERVICES, {}).values():
            spec = svc.get("spec") or {}
            used |= {int(p["nodePort"]) for p in spec.get("ports") or [] if p.get("nodePort")}
            if spec.get("healthCheckNodePort"):
                used.add(int(spec["healthCheckNodePort"]))
        return used

    def _allocate_node_port(self) -> int:
        """A free port of the default NodePort range (30000-32767), picked at random as upstream does."""
        used = self._node_ports_in_use()
        free = [p for p in range(NODE_PORT_RANGE[0], NODE_PORT_RANGE[1] + 1) if p not in used]
        if not free:
            raise Invalid(f"no free node port left in {NODE_PORT_RANGE[0]}-{NODE_PORT_RANGE[1]}")
        return secrets.choice(free)

    def _cluster_ip_owner(self, address: str) -> dict[str, Any] | None:
        for svc in self._objects.get(SERVICES, {}).values():
            if svc.get("spec", {}).get("clusterIP") == address:
                return svc
        return None

    def _allocate_cluster_ip(self, key: tuple[str, str]) -> str:
        """A random free address above the service CIDR's static band (upstream's dynamic range);
        the first address belongs to default/kubernetes."""
        used = {svc.get("spec", {}).get("clusterIP") for svc in self._objects.get(SERVICES, {}).values()}
        network = self._service_network
        first = network.network_address + 1
        if key == ("default", "kubernetes") and str(first) not in used:
            return str(first)
        size = network.num_addresses
        band = min(max(16, size // 16), 256)
        dynamic = range(band, size - 1)
        for _ in range(64):
            candidate = str(network.network_address + dynamic[secrets.randbelow(len(dynamic))])
            if candidate not in used:
                return candidate
        for offset in (*dynamic, *range(2, band)):
            candidate = str(network.network_address + offset)
            if candidate not in used:
                return candidate
        raise Invalid(f"no free cluster IP left in {network}")


_DEFAULT_TOLERATIONS = (
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
)


def _default_pod(obj: dict[str, Any]) -> None:
    """The pod defaults kube-apiserver v1.36 fills (its defaulting and the default admission plugins:
    ServiceAccount, DefaultTolerationSeconds, Priority); the service-account token volume is left out."""
    spec = obj.setdefault("spec", {})
    for key, value in (
        ("restartPolicy", "Always"),
        ("terminationGracePeriodSeconds", DEFAULT_TERMINATION_GRACE_SECONDS),
        ("dnsPolicy", "ClusterFirst"),
        ("serviceAccountName", "default"),
        ("securityContext", {}),
        ("schedulerName", "default-scheduler"),
        ("priority", 0),
        ("enableServiceLinks", True),
        ("preemptionPolicy", "PreemptLowerPriority"),
    ):
        spec.setdefault(key, _copied(value))
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    tolerations = spec.setdefault("tolerations", [])
    for default in _DEFAULT_TOLERATIONS:
        if not any(t.get("key") == default["key"] and t.get("effect") in (None, "", "NoExecute") for t in tolerations):
            tolerations.append(dict(default))
    requests_or_limits, guaranteed = False, True
    for container in [*spec.get("containers", []), *spec.get("initContainers", [])]:
        for port in container.get("ports", []) or []:
            port.setdefault("protocol", "TCP")
            if spec.get("hostNetwork"):
                port.setdefault("hostPort", port.get("containerPort"))
        image = str(container.get("image") or "")
        latest = ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")
        container.setdefault("imagePullPolicy", "Always" if latest and "@" not in image else "IfNotPresent")
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        resources = container.setdefault("resources", {})
        requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
        requests_or_limits = requests_or_limits or bool(requests or limits)
        guaranteed = guaranteed and all(limits.get(r) and requests.get(r, limits[r]) == limits[r] for r in ("cpu", "memory"))
    status = obj.setdefault("status", {})
    status.setdefault("phase", "Pending")
    qos = "BestEffort" if not requests_or_limits else "Guaranteed" if guaranteed else "Burstable"
    status.setdefault("qosClass", qos)


_BAD_CONTINUE_VERSION = (
    "invalid continue token: continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"
)


def _etcd_key(rtype: ResourceType, key: tuple[str, str]) -> str:
    """The object's key below its resource's etcd prefix ("namespace/name", or "name")."""
    return f"{key[0]}/{key[1]}" if rtype.namespaced else key[1]


def _encode_continue(rv: int, start: str) -> str:
    """A continue token as kube-apiserver writes it: base64url JSON of {v, rv, start} (rv -1: inconsistent)."""
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_continue(token: str) -> tuple[int, str]:
    """(resourceVersion, start key) of a continue token; BadRequest if it is not one."""
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error) as exc:
        raise BadRequest(f"invalid continue token: continue key is not valid: {exc}") from exc
    if not isinstance(data, dict) or data.get("v") != "meta.k8s.io/v1":
        raise BadRequest(
            "invalid continue token: continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"
        )
    rv, start = data.get("rv"), data.get("start")
    if not isinstance(rv, int) or isinstance(rv, bool) or not isinstance(start, str) or not start or rv == 0 or rv < -1:
        raise BadRequest(
            "invalid continue token: continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"
        )
    return rv, start
