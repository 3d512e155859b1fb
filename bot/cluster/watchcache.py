"""Watch-backed caches of the objects the resolver reads, shared by the investigations of one process.

`CachedCluster` is an `ObjectReader` over a `ClusterClient`: the first read of a kind lists it once
(cluster-wide) and starts a `ResourceCache` that keeps it current with a watch from the list's
resourceVersion, the way client-go's informers do. Later reads of that kind are answered from memory
(a namespace or an equality label selector is a filter over the cache), so a question costs no list.

Semantics, after the Kubernetes API:

- The first list asks for resourceVersion "0" (the server's watch cache, unpaged, as client-go's
  reflector does); relists after 410 ask for the current state, paged.
- The watch resumes from the newest resourceVersion seen (an event's object's, or a BOOKMARK's);
  it asks for bookmarks and a server-side `timeoutSeconds` of half the staleness bound, so a quiet
  kind is re-confirmed at least that often. A watch whose resourceVersion the server no longer has
  (HTTP 200 and then an ERROR event with Status 410 Expired, or a 410 answer) relists.
- Transport errors, silent connections and error answers reconnect with a growing backoff; the
  failure is kept for `describe()`.
- A 403 (RBAC does not grant the bot `list` or `watch` on the kind, or the request carried no
  credentials) is not retried: retrying cannot change the answer until someone changes the RBAC rules.
  The cache logs one line naming the resource, the verb and the rule to add, and stops; reads go to
  the API (and get the same refusal, which the investigation reports as not checked). When a read
  through lists the kind cluster-wide again, the rule was granted: the cache starts over.
- The cache is evidence only while fresh: the server confirmed it (a list, an event, a bookmark, a
  watch it ended cleanly) within `max_staleness_s`. A read of a stale cache reads through
  with one list, so a broken watch never answers; when that list fails too, the caller gets
  `ClusterUnavailable` (the API could not be checked), never an answer from old objects.
- Memory is bounded: `metadata.managedFields` and kubectl's last-applied annotation are dropped, and
  a kind with more than `max_objects` objects is not cached at all (its reads go through).

`ask` is one-shot and reads through (`ClusterClient`); `serve` keeps one `CachedCluster`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from bot.cluster.agents import agent_addresses
from bot.cluster.errors import ClusterAccessDenied, ClusterNoCredentials, ClusterUnavailable
from bot.cluster.models import RawObject, name_of, namespace_of
from bot.cluster.resolve import Resolved, resolve
from bot.cluster.resources import KubeResource

if TYPE_CHECKING:
    from bot.parse.models import Question

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.2
MAX_BACKOFF_S = 10.0
FIRST_LIST_WAIT_S = 120.0
"""A read waits this long at most for its kind's first list (which ends sooner: each of its requests
has the client's timeout), so that the first question does not list twice."""
MAX_WATCH_TIMEOUT_S = 300
"""A watch never asks the server to hold it open longer than this (kube-apiserver's default range)."""
DROPPED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"


class WatchingClient(Protocol):
    """What a cache needs of `bot.cluster.client.ClusterClient`."""

    timeout: float

    def list_objects(
        self, resource: KubeResource, namespace: str | None = None, *, label_selector: str | None = None
    ) -> list[RawObject]:
        """Every object of a kind (read through)."""
        ...

    def list_snapshot(
        self,
        resource: KubeResource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        any_version: bool = False,
    ) -> tuple[list[RawObject], str]:
        """Every object of a kind, with the list's resourceVersion."""
        ...

    def get_object(self, resource: KubeResource, name: str, namespace: str | None = None) -> RawObject | None:
        """One object, or None."""
        ...

    def watch_events(
        self, resource: KubeResource, resource_version: str, *, timeout_seconds: int, read_timeout: float
    ) -> Iterator[RawObject]:
        """The events of a cluster-wide watch from `resource_version`."""
        ...


@dataclass
class CacheStats:
    """What one kind's cache did: requests it sent and reads it answered."""

    lists: int = 0
    watches: int = 0
    expired: int = 0
    """Watches that ended in 410 Expired (each followed by a relist)."""
    events: int = 0
    hits: int = 0
    """Reads answered from the cache."""
    read_through: int = 0
    """Reads that went to the API because the cache was stale, too large or not yet listed."""


class _Expired(Exception):
    """The watch's resourceVersion is gone from the server's history (410): relist."""


class ResourceCache:
    """Every object of one kind (all namespaces), kept current by list + watch on a background thread."""

    def __init__(self, client: WatchingClient, resource: KubeResource, *, max_staleness_s: float, max_objects: int) -> None:
        self.client = client
        self.resource = resource
        self.max_staleness_s = max_staleness_s
        self.max_objects = max_objects
        self.stats = CacheStats()
        self._objects: dict[tuple[str, str], RawObject] = {}
        self._version = ""
        self._confirmed_at: float | None = None
        self._failure: str | None = None
        self._too_large = False
        self._refused: str | None = None
        """The verb the API server refused (403) on this kind; the cache stopped without retrying."""
        self._lock = threading.Lock()
        self._attempted = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------ public

    def start(self) -> None:
        """Start listing and watching (once); `wait_listed` waits for the first list."""
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name=f"watch-{self.resource.plural}", daemon=True)
            self._thread.start()

    @property
    def refused(self) -> str | None:
        """The verb ("list" or "watch") the API server refused with 403; None unless the cache stopped so."""
        with self._lock:
            return self._refused

    def listed_elsewhere(self) -> None:
        """A read through listed this kind cluster-wide: a refused `list` is granted now, so start over."""
        with self._lock:
            if self._refused != "list" or self._stop.is_set():
                return
            thread = self._thread
        if thread is not None:
            thread.join()  # it ends right after the refusal: let it finish before the next one starts
        with self._lock:
            if self._refused != "list" or self._thread is not thread:
                return  # another read started it over already
            self._thread = None
            self._refused = None
            self._attempted.clear()
        self.start()

    def wait_listed(self, timeout: float) -> None:
        """Wait until the first list succeeded or failed (at most `timeout` seconds)."""
        self._attempted.wait(timeout)

    def stop(self, join_s: float = 0.0) -> None:
        """Stop watching (the thread ends when its watch returns); the cache is never fresh again."""
        self._stop.set()
        with self._lock:
            self._confirmed_at = None
            thread = self._thread
        if thread is not None and join_s > 0:
            thread.join(join_s)

    def fresh(self) -> bool:
        """Whether the server confirmed the cache within the staleness bound."""
        with self._lock:
            return self._fresh_locked()

    def objects(self, namespace: str | None, labels: dict[str, str] | None) -> list[RawObject] | None:
        """The cached objects in `namespace` (None: all) with every label in `labels`; None when stale."""
        with self._lock:
            if not self._fresh_locked():
                self.stats.read_through += 1
                return None
            self.stats.hits += 1
            found = [
                (key, obj)
                for key, obj in self._objects.items()
                if (namespace is None or key[0] == namespace) and (not labels or _has_labels(obj, labels))
            ]
        found.sort(key=lambda pair: pair[0])  # the API's order: namespace, then name
        return [obj for _key, obj in found]

    def describe(self) -> str:
        """One line for logs and errors: size, resourceVersion, freshness, last failure."""
        with self._lock:
            confirmed = self._confirmed_at
            age = "never confirmed" if confirmed is None else f"confirmed {time.monotonic() - confirmed:.1f} s ago"
            state = "too large to cache" if self._too_large else age
            failure = f"; last failure: {self._failure}" if self._failure else ""
            size = f"{len(self._objects)} objects at resourceVersion {self._version or '-'}"
            return f"{self.resource.qualified}: {size}, {state}{failure}"

    # ------------------------------------------------------------------------------ the loop

    def _fresh_locked(self) -> bool:
        if self._too_large or self._confirmed_at is None or self._stop.is_set():
            return False
        return time.monotonic() - self._confirmed_at <= self.max_staleness_s

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self._attempted.set()  # never leave a reader waiting for a list that will not come

    def _loop(self) -> None:
        backoff = FIRST_BACKOFF_S
        listed = False
        while not self._stop.is_set():
            try:
                if not listed:
                    self._list()
                    listed = True
                    if self._too_large:
                        return
                self._watch()
                backoff = FIRST_BACKOFF_S
            except _Expired:
                with self._lock:
                    self.stats.expired += 1
                listed = False
                log.info("watch of %s expired (410): relisting", self.resource.qualified)
            except (ClusterAccessDenied, ClusterNoCredentials) as exc:
                self._refuse(exc)
                return
            except ClusterUnavailable as exc:
                with self._lock:
                    self._failure = exc.message
                self._attempted.set()
                log.warning("watch of %s failed, retrying in %.1f s: %s", self.resource.qualified, backoff, exc.message)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            except _TooLarge:
                return

    def _refuse(self, exc: ClusterAccessDenied | ClusterNoCredentials) -> None:
        """A 403: keep it for `describe()`, say once what to grant, and stop (no retry can change it)."""
        with self._lock:
            self._failure = exc.message
            self._refused = exc.verb if isinstance(exc, ClusterAccessDenied) else "list"
        self._attempted.set()
        if isinstance(exc, ClusterAccessDenied):
            group = exc.group or '""'
            why = (
                f'403 Forbidden: the bot may not "{exc.verb}" {exc.resource} (apiGroup {group}) cluster-wide; '
                f'add verb "{exc.verb}" on resource "{exc.resource}" in apiGroup {group} to the bot\'s ClusterRole'
            )
        else:
            why = f"{exc.message} ({exc.hint})"
        log.warning("%s is not cached and not retried: %s; questions read it from the API", self.resource.qualified, why)

    def _list(self) -> None:
        # The first list may come from the server's watch cache (resourceVersion "0", unpaged), as an
        # informer's does; a relist after 410 Expired asks for the current state, page by page.
        items, version = self.client.list_snapshot(self.resource, any_version=self.stats.lists == 0 and not self.stats.expired)
        with self._lock:
            self.stats.lists += 1
            if len(items) > self.max_objects:
                self._drop_too_large_locked(len(items))
                self._attempted.set()
                return
            self._objects = {(namespace_of(o), name_of(o)): _trimmed(o) for o in items}
            self._version = version
            self._confirmed_at = time.monotonic()
            self._failure = None
        self._attempted.set()

    def _watch(self) -> None:
        timeout_s = max(1, min(MAX_WATCH_TIMEOUT_S, int(self.max_staleness_s / 2)))
        with self._lock:
            self.stats.watches += 1
            version = self._version
        events = self.client.watch_events(
            self.resource, version, timeout_seconds=timeout_s, read_timeout=max(self.max_staleness_s, timeout_s + 5.0)
        )
        for event in events:
            self._apply(event)
            if self._stop.is_set():
                return
        with self._lock:
            self._confirmed_at = time.monotonic()  # the server ended the watch cleanly: nothing missed

    def _apply(self, event: RawObject) -> None:
        kind = event.get("type")
        obj = event["object"]
        if kind == "ERROR":
            code = obj.get("code")
            if code == 410:
                raise _Expired
            why = f"{obj.get('code')} {obj.get('reason')}: {obj.get('message')}"
            raise ClusterUnavailable(f"the watch of {self.resource.qualified} ended with an error: {why}")
        version = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        with self._lock:
            self.stats.events += 1
            if kind in ("ADDED", "MODIFIED"):
                obj.setdefault("kind", self.resource.kind)
                obj.setdefault("apiVersion", self.resource.api_version)
                self._objects[(namespace_of(obj), name_of(obj))] = _trimmed(obj)
                if len(self._objects) > self.max_objects:
                    self._drop_too_large_locked(len(self._objects))
                    raise _TooLarge
            elif kind == "DELETED":
                self._objects.pop((namespace_of(obj), name_of(obj)), None)
            if version:
                self._version = version
            self._confirmed_at = time.monotonic()

    def _drop_too_large_locked(self, count: int) -> None:
        self._too_large = True
        self._objects = {}
        self._confirmed_at = None
        log.warning(
            "%s has %d objects, more than the cache holds (%d): its reads go to the API",
            self.resource.qualified,
            count,
            self.max_objects,
        )


class _TooLarge(Exception):
    """Internal: the kind outgrew `max_objects`; the cache stops."""


class CachedCluster:
    """An `ObjectReader` whose lists come from watch caches while they are fresh, else from the API."""

    def __init__(self, client: WatchingClient, *, max_staleness_s: float, max_objects: int) -> None:
        self.client = client
        self.max_staleness_s = max_staleness_s
        self.max_objects = max_objects
        self._caches: dict[str, ResourceCache] = {}
        self._lock = threading.Lock()

    def cache(self, resource: KubeResource) -> ResourceCache:
        """The cache of a kind, started on first use."""
        with self._lock:
            cache = self._caches.get(resource.plural)
            if cache is None:
                cache = ResourceCache(self.client, resource, max_staleness_s=self.max_staleness_s, max_objects=self.max_objects)
                self._caches[resource.plural] = cache
        cache.start()
        return cache

    def list_objects(
        self, resource: KubeResource, namespace: str | None = None, *, label_selector: str | None = None
    ) -> list[RawObject]:
        """From the kind's cache when fresh (the first read waits for its list), else read through."""
        labels = parse_equality_selector(label_selector)
        if labels is None:
            return self.client.list_objects(resource, namespace, label_selector=label_selector)
        cache = self.cache(resource)
        cache.wait_listed(FIRST_LIST_WAIT_S)
        found = cache.objects(namespace if resource.namespaced else None, labels)
        if found is not None:
            return found
        log.info("cache of %s is not fresh (%s): reading through", resource.qualified, cache.describe())
        found = self.client.list_objects(resource, namespace, label_selector=label_selector)
        if namespace is None or not resource.namespaced:
            cache.listed_elsewhere()
        return found

    def get_object(self, resource: KubeResource, name: str, namespace: str | None = None) -> RawObject | None:
        """One object: always read through (the resolver lists; gets are rare)."""
        return self.client.get_object(resource, name, namespace)

    def resolve(
        self,
        question: Question,
        *,
        default_namespace: str | None = None,
        allowed_namespaces: frozenset[str] | None = None,
    ) -> Resolved:
        """Resolve a parsed question through the caches (see `bot.cluster.resolve.resolve`)."""
        return resolve(self, question, default_namespace=default_namespace, allowed_namespaces=allowed_namespaces)

    def agent_addresses(
        self,
        namespace: str = "kube-system",
        label_selector: str = "app.kubernetes.io/name=kubereach-agent",
        port: int = 7443,
    ) -> dict[str, str]:
        """Node name -> "ip:port" of the kubereach agent on it (see `bot.cluster.agents`)."""
        return agent_addresses(self, namespace=namespace, label_selector=label_selector, port=port)

    def stats(self) -> dict[str, CacheStats]:
        """Per kind (plural): what its cache did."""
        with self._lock:
            return {plural: cache.stats for plural, cache in self._caches.items()}

    def close(self) -> None:
        """Stop every watch."""
        with self._lock:
            caches = list(self._caches.values())
            self._caches = {}
        for cache in caches:
            cache.stop()


def parse_equality_selector(selector: str | None) -> dict[str, str] | None:
    """``a=b,c==d`` as a dict ({} for none); None for anything else (set-based, `!=`): read through."""
    if not selector:
        return {}
    labels: dict[str, str] = {}
    for term in selector.split(","):
        if "!=" in term or "(" in term or " in " in term or " notin " in term:
            return None
        key, sep, value = term.replace("==", "=").partition("=")
        if not sep or not key.strip():
            return None
        labels[key.strip()] = value.strip()
    return labels


def _has_labels(obj: RawObject, labels: dict[str, str]) -> bool:
    have = (obj.get("metadata") or {}).get("labels") or {}
    return all(have.get(k) == v for k, v in labels.items())


def _trimmed(obj: RawObject) -> RawObject:
    """The object without what the bot never reads and costs most memory."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or ("managedFields" not in meta and DROPPED_ANNOTATION not in (meta.get("annotations") or {})):
        return obj
    meta = {k: v for k, v in meta.items() if k != "managedFields"}
    annotations = meta.get("annotations")
    if isinstance(annotations, dict) and DROPPED_ANNOTATION in annotations:
        meta["annotations"] = {k: v for k, v in annotations.items() if k != DROPPED_ANNOTATION}
    return {**obj, "metadata": meta}
