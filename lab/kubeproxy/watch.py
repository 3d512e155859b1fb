"""The per-node kube-proxy process: list and watch Services and EndpointSlices, re-sync the rules.

It speaks the plain Kubernetes REST list/watch protocol with the standard library only:
`GET /api/v1/services` (a List with `metadata.resourceVersion`), then
`GET ...?watch=1&resourceVersion=RV&allowWatchBookmarks=true` streaming newline-delimited
`{"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, "object": ...}` events. A 410 Gone answer or an
ERROR event means the resourceVersion is too old: list again. A watch that simply ends is resumed
from the last resourceVersion seen. While the API is unreachable it retries with backoff.

Like kube-proxy it does not write rules before both Services and EndpointSlices have been listed
once, and it rate-limits syncs like kube-proxy's --min-sync-period (100 ms here, 1 s in kube-proxy);
every sync is a full sync. After each successful sync it atomically rewrites the status
file with {"generation", "synced_at", "services", "mode", "nft_layout", ...}. A SIGSTOPped process simply stops
changing the rules; SIGTERM ends it cleanly.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from lab.errors import LabError
from lab.kubeproxy.model import DEFAULT_NFT_LAYOUT, NftLayout

log = logging.getLogger("lab.kubeproxy")

SERVICES_PATH = "/api/v1/services"
ENDPOINT_SLICES_PATH = "/apis/discovery.k8s.io/v1/endpointslices"
ProxyMode = Literal["iptables", "nftables"]
Object = Mapping[str, Any]
SyncRules = Callable[[Sequence[Object], Sequence[Object]], None]


class ApiUnavailable(LabError):
    """The API server could not be reached or answered with an error we cannot use."""


class ResourceVersionGone(LabError):
    """The watch's resourceVersion is too old (410 Gone / ERROR event): list again."""


@dataclass(frozen=True)
class ProxySettings:
    """How one node's kube-proxy runs."""

    node_name: str
    """The node this process proxies for (endpoints on it count as local)."""
    node_ip: str
    """The node's own address."""
    netns: str
    """The node's network namespace, where the rules go."""
    api_url: str
    """Base URL of the API server (e.g. https://127.0.0.1:6443)."""
    token_file: Path
    """File holding the bearer token; re-read on every connection."""
    mode: ProxyMode
    """iptables or nftables."""
    cluster_cidr: str
    """Pod CIDR of the cluster; traffic from outside it to a VIP is masqueraded."""
    status_file: Path
    """Written atomically after every successful sync."""
    service_cidrs: tuple[str, ...] = ()
    """Service CIDRs (nftables mode drops traffic to unallocated ClusterIPs in them)."""
    nft_layout: NftLayout = DEFAULT_NFT_LAYOUT
    """nftables mode: which kube-proxy release's layout to write."""
    min_sync_period: float = 0.1
    """At most one sync per this many seconds."""
    retry_period: float = 1.0
    """Wait after a failed sync before trying again."""
    sync_period: float = 0.0
    """Full re-sync at least this often even without changes (0: only on changes, so rules that
    someone removes by hand stay removed until the next Service/EndpointSlice change)."""
    watch_timeout: float = 300.0
    """Socket read timeout of a watch; on expiry the watch is resumed from the last version."""
    ca_file: Path | None = None
    """The CA that issued the API server's certificate (needed for an https URL)."""


class KubeApi:
    """A minimal list/watch client over http.client (one connection per request).

    An https URL is verified against `ca_file` (the lab's CA), as client-go verifies the kubeconfig's CA.
    """

    def __init__(self, api_url: str, token_file: Path, timeout: float = 10.0, ca_file: Path | None = None) -> None:
        parts = urlsplit(api_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise LabError(f"--api must be an https (or plain http) URL, got {api_url!r}", exit_code=2)
        self._tls: ssl.SSLContext | None = None
        if parts.scheme == "https":
            if ca_file is None:
                raise LabError(f"--api {api_url} is https: give the CA that issued its certificate (--ca-file)", exit_code=2)
            try:
                self._tls = ssl.create_default_context(cafile=str(ca_file))
            except (OSError, ssl.SSLError) as exc:
                raise LabError(f"--ca-file {ca_file}: {exc}", exit_code=2) from exc
        self._host = parts.hostname
        self._port = parts.port or (443 if self._tls else 80)
        self._prefix = parts.path.rstrip("/")
        self._token_file = token_file
        self._timeout = timeout

    def _open(self, path: str, timeout: float) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        try:
            token = self._token_file.read_text().strip()
        except OSError as exc:
            raise ApiUnavailable(f"cannot read token file {self._token_file}: {exc.strerror}") from exc
        conn = (
            http.client.HTTPSConnection(self._host, self._port, timeout=timeout, context=self._tls)
            if self._tls is not None
            else http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        )
        try:
            conn.request(
                "GET",
                self._prefix + path,
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            )
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise ApiUnavailable(f"API server {self._host}:{self._port} not reachable: {exc}") from exc
        if resp.status == 410:
            conn.close()
            raise ResourceVersionGone(f"{path}: 410 Gone")
        if resp.status != 200:
            body = resp.read(512).decode(errors="replace")
            conn.close()
            raise ApiUnavailable(f"GET {path} answered {resp.status}: {body}")
        return conn, resp

    def list(self, path: str) -> tuple[list[dict[str, Any]], str]:
        """List a collection: (items, resourceVersion)."""
        conn, resp = self._open(path, self._timeout)
        try:
            doc = json.loads(resp.read())
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise ApiUnavailable(f"GET {path}: unreadable list: {exc}") from exc
        finally:
            conn.close()
        items = [item for item in doc.get("items") or () if isinstance(item, dict)]
        return items, str((doc.get("metadata") or {}).get("resourceVersion") or "")

    def watch(self, path: str, resource_version: str, timeout: float) -> Iterator[dict[str, Any]]:
        """Stream watch events from `resource_version` until the server ends the stream."""
        query = f"?watch=1&resourceVersion={resource_version}&allowWatchBookmarks=true"
        conn, resp = self._open(path + query, timeout)
        try:
            while True:
                try:
                    line = resp.readline()
                except (OSError, http.client.HTTPException) as exc:
                    raise ApiUnavailable(f"watch {path} broke: {exc}") from exc
                if not line:
                    return
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except ValueError as exc:
                    raise ApiUnavailable(f"watch {path}: unreadable event: {exc}") from exc
                if isinstance(event, dict):
                    yield event
        finally:
            conn.close()


def _key(obj: Object) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


class ObjectCache:
    """The latest Services and EndpointSlices, and whether anything changed since the last sync."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[str, dict[tuple[str, str], Object]] = {SERVICES_PATH: {}, ENDPOINT_SLICES_PATH: {}}
        self._listed: set[str] = set()
        self.changed = threading.Event()

    def replace(self, path: str, items: Sequence[Object]) -> None:
        """Replace one collection with a fresh list."""
        with self._lock:
            self._objects[path] = {_key(item): item for item in items}
            self._listed.add(path)
        self.changed.set()

    def apply_event(self, path: str, kind: str, obj: Object) -> None:
        """Apply one ADDED / MODIFIED / DELETED event."""
        with self._lock:
            if kind == "DELETED":
                self._objects[path].pop(_key(obj), None)
            else:
                self._objects[path][_key(obj)] = obj
        self.changed.set()

    def ready(self) -> bool:
        """True once both collections have been listed."""
        with self._lock:
            return len(self._listed) == len(self._objects)

    def snapshot(self) -> tuple[list[Object], list[Object]]:
        """(services, endpoint slices) as they are now."""
        with self._lock:
            return list(self._objects[SERVICES_PATH].values()), list(self._objects[ENDPOINT_SLICES_PATH].values())


class Reflector(threading.Thread):
    """Keeps one collection of an ObjectCache current: list, then watch, relist when needed."""

    def __init__(self, api: KubeApi, path: str, cache: ObjectCache, stop: threading.Event, watch_timeout: float) -> None:
        super().__init__(name=f"reflector{path.replace('/', '-')}", daemon=True)
        self._api, self._path, self._cache, self._stop = api, path, cache, stop
        self._watch_timeout = watch_timeout

    def run(self) -> None:
        backoff = 0.2
        version: str | None = None
        while not self._stop.is_set():
            try:
                if version is None:
                    items, version = self._api.list(self._path)
                    self._cache.replace(self._path, items)
                    log.info("listed %s: %d objects at resourceVersion %s", self._path, len(items), version)
                version, events = self._watch(version)
                if events:
                    backoff = 0.2
                else:
                    # A watch that ends without a single event: do not spin on a server that closes at once.
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 5.0)
            except ResourceVersionGone as exc:
                log.info("%s; listing again", exc)
                version = None
            except ApiUnavailable as exc:
                log.warning("%s; retrying in %.1fs", exc, backoff)
                version = None
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def _watch(self, version: str) -> tuple[str, int]:
        """Follow one watch stream; return the last resourceVersion seen and how many events came."""
        events = 0
        for event in self._api.watch(self._path, version, self._watch_timeout):
            kind = str(event.get("type") or "")
            obj = event.get("object")
            if not isinstance(obj, dict) or not isinstance(obj.get("metadata") or {}, dict):
                log.warning("%s: ignoring a %s event without an object", self._path, kind or "typeless")
                continue
            events += 1
            if kind == "ERROR":
                raise ResourceVersionGone(f"watch {self._path}: ERROR event {obj.get('message', '')}")
            new_version = str((obj.get("metadata") or {}).get("resourceVersion") or "")
            if kind in {"ADDED", "MODIFIED", "DELETED"}:
                self._cache.apply_event(self._path, kind, obj)
                log.debug("%s %s %s/%s", self._path, kind, *_key(obj))
            if new_version:
                version = new_version
            if self._stop.is_set():
                break
        return version, events


def write_status(path: Path, status: Mapping[str, Any]) -> None:
    """Write `status` as JSON to `path` atomically (temp file in the same directory, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(status, handle)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class NodeProxy:
    """Runs the reflectors and the rate-limited sync loop until `stop` is set."""

    def __init__(self, settings: ProxySettings, api: KubeApi, sync_rules: SyncRules) -> None:
        self.settings = settings
        self.cache = ObjectCache()
        self.generation = 0
        self._api = api
        self._sync_rules = sync_rules

    def run(self, stop: threading.Event) -> None:
        """Block until `stop` is set, syncing whenever Services or EndpointSlices change."""
        for path in (SERVICES_PATH, ENDPOINT_SLICES_PATH):
            Reflector(self._api, path, self.cache, stop, self.settings.watch_timeout).start()
        last_sync = 0.0
        while not stop.is_set():
            period = self.settings.sync_period
            if period > 0 and last_sync and time.monotonic() - last_sync >= period:
                self.cache.changed.set()
            if not self.cache.changed.wait(timeout=0.5) or not self.cache.ready():
                if not self.cache.ready():
                    stop.wait(0.05)
                continue
            wait = last_sync + self.settings.min_sync_period - time.monotonic()
            if wait > 0 and stop.wait(wait):
                break
            self.cache.changed.clear()
            services, slices = self.cache.snapshot()
            last_sync = time.monotonic()
            if not self._sync_once(services, slices):
                self.cache.changed.set()
                stop.wait(self.settings.retry_period)

    def _sync_once(self, services: Sequence[Object], slices: Sequence[Object]) -> bool:
        started = time.monotonic()
        try:
            self._sync_rules(services, slices)
        except LabError as exc:
            log.error("sync failed: %s", exc)
            return False
        self.generation += 1
        status = {
            "generation": self.generation,
            "synced_at": datetime.now(UTC).isoformat(),
            "services": len(services),
            "endpoint_slices": len(slices),
            "mode": self.settings.mode,
            "nft_layout": self.settings.nft_layout,
            "node": self.settings.node_name,
        }
        try:
            write_status(self.settings.status_file, status)
        except OSError as exc:
            log.error("rules synced but status file %s not written: %s", self.settings.status_file, exc)
        log.info(
            "sync %d done: %d services, %d endpoint slices in %.0f ms",
            self.generation,
            len(services),
            len(slices),
            (time.monotonic() - started) * 1000,
        )
        return True
