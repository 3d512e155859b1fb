"""The bot's door to the Kubernetes API: the official client, a timeout on every call, our own errors.

`ClusterClient` is built from a kubeconfig (`from_kubeconfig`) or from the pod's service account
(`in_cluster`). It reads objects as plain camelCase dicts, the server's JSON as sent, through the
official client's `ApiClient` (configuration, authentication, TLS, connection pool) but not its
generated API classes and models (`bot.cluster.rest`: they cost seconds to import on a process's
first request and ~0.1 ms per object to build; `serve`'s caches mix list items with watch events,
which were raw JSON already), pages through long lists, and converts every foreign error
at this boundary: `ApiException` and urllib3 errors become `ClusterUnavailable` (a 403 becomes
`ClusterAccessDenied`, naming the RBAC rule to grant, unless the server answered it to
`system:anonymous`: then the kubeconfig has no credentials at all, `ClusterNoCredentials`). Every
request is recorded in `api_calls` (verb, API group, resource, namespace) so that the deployment's
RBAC can be checked against what the bot really does.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import urllib3.exceptions
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from bot.cluster.agents import agent_addresses
from bot.cluster.errors import ClusterAccessDenied, ClusterNoCredentials, ClusterUnavailable
from bot.cluster.models import RawObject
from bot.cluster.resolve import Resolved, resolve
from bot.cluster.resources import (
    DAEMON_SETS,
    DEPLOYMENTS,
    ENDPOINT_SLICES,
    NAMESPACES,
    NETWORK_POLICIES,
    NODES,
    PODS,
    REPLICA_SETS,
    RESOURCES,
    SERVICES,
    STATEFUL_SETS,
    KubeResource,
)
from bot.cluster.rest import KindApi

if TYPE_CHECKING:
    from bot.parse.models import Question

__all__ = [
    "DAEMON_SETS",
    "DEPLOYMENTS",
    "ENDPOINT_SLICES",
    "NAMESPACES",
    "NETWORK_POLICIES",
    "NODES",
    "PODS",
    "REPLICA_SETS",
    "RESOURCES",
    "SERVICES",
    "STATEFUL_SETS",
    "ApiCall",
    "ClusterClient",
    "KubeResource",
]

DEFAULT_TIMEOUT_SECONDS = 10.0
LIST_PAGE_SIZE = 500
MAX_LIST_RESTARTS = 2
"""Paged lists whose continue token expires (410) start again this often, then list in one piece."""


@dataclass(frozen=True)
class ApiCall:
    """One request the bot sent to the API: the RBAC verb, API group, resource and namespace (None: cluster-wide)."""

    verb: str
    group: str
    resource: str
    namespace: str | None


class ClusterClient:
    """Reads the cluster through the official client; every call has a timeout and is recorded."""

    def __init__(
        self,
        configuration: Any,
        *,
        source: str,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        default_namespace: str | None = None,
        page_size: int = LIST_PAGE_SIZE,
    ) -> None:
        """Use a filled `kubernetes.client.Configuration`; prefer `from_kubeconfig` / `in_cluster`.

        `timeout` bounds every request (seconds); `page_size` is the `limit` of each list request.

        `source` says where the configuration came from (a kubeconfig path, "in-cluster"), for messages.
        `default_namespace` is the namespace of the kubeconfig's context, if any (informational: the
        resolver only uses the default namespace it is given).
        """
        self.server: str = str(configuration.host)
        self.source = source
        self.timeout = timeout
        self.default_namespace = default_namespace
        self.page_size = page_size
        self._api_client: Any = k8s.ApiClient(configuration)
        self._apis: dict[str, Any] = {}
        self._calls: list[ApiCall] = []
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------ building

    @classmethod
    def from_kubeconfig(
        cls,
        path: str | Path | None = None,
        *,
        context: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        page_size: int = LIST_PAGE_SIZE,
    ) -> ClusterClient:
        """A client for the cluster of a kubeconfig file (None: $KUBECONFIG or ~/.kube/config)."""
        where = str(path) if path is not None else "the default kubeconfig ($KUBECONFIG or ~/.kube/config)"
        if path is not None and not Path(path).is_file():
            raise ClusterUnavailable(
                f"kubeconfig {path} does not exist or is not a file",
                hint="pass the path of a kubeconfig that can reach the cluster (for the lab: see `kubereach lab status`)",
            )
        configuration = k8s.Configuration()
        try:
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=str(path) if path is not None else None,
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
            _contexts, active = k8s_config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
                config_file=str(path) if path is not None else None
            )
        except (ConfigException, OSError, ValueError) as exc:
            raise ClusterUnavailable(
                f"cannot use kubeconfig {where}: {exc}",
                hint="check that the file is a valid kubeconfig and that its current context (or --context) exists",
            ) from exc
        namespace = None
        if isinstance(active, dict) and context is None:
            namespace = (active.get("context") or {}).get("namespace")
        configuration.retries = 1
        return cls(configuration, source=where, timeout=timeout, default_namespace=namespace, page_size=page_size)

    @classmethod
    def in_cluster(cls, *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> ClusterClient:
        """A client that uses the pod's service account (KUBERNETES_SERVICE_HOST and the mounted token)."""
        configuration = k8s.Configuration()
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except (ConfigException, OSError) as exc:
            raise ClusterUnavailable(
                f"cannot use the in-cluster configuration: {exc}",
                hint="run inside a pod with a service account token mounted, or pass a kubeconfig instead",
            ) from exc
        configuration.retries = 1
        namespace = None
        namespace_file = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        if namespace_file.is_file():
            namespace = namespace_file.read_text().strip() or None
        return cls(configuration, source="in-cluster service account", timeout=timeout, default_namespace=namespace)

    def close(self) -> None:
        """Release the client's connection pool."""
        self._api_client.close()

    def __enter__(self) -> ClusterClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------- reading

    @property
    def api_calls(self) -> tuple[ApiCall, ...]:
        """Every request sent so far, in order."""
        with self._lock:
            return tuple(self._calls)

    def list_objects(
        self, resource: KubeResource, namespace: str | None = None, *, label_selector: str | None = None
    ) -> list[RawObject]:
        """Every object of a kind in a namespace (None: all namespaces, or the cluster for cluster-scoped kinds).

        Pages through the list; each item is a dict with `kind` and `apiVersion` set. When a continue
        token expires between pages (410 Expired, after the server compacted its history) the list
        starts again, at most `MAX_LIST_RESTARTS` times, the last time unpaged.
        """
        return self.list_snapshot(resource, namespace, label_selector=label_selector)[0]

    def list_snapshot(
        self,
        resource: KubeResource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        any_version: bool = False,
    ) -> tuple[list[RawObject], str]:
        """`list_objects`, with the list's resourceVersion (where a watch of the same scope starts).

        `any_version` asks for resourceVersion "0", as client-go's informers do for their first list:
        kube-apiserver may answer from its watch cache, in one piece, instead of paging through etcd
        (the lab's server does the same). The state may be a little older than a quorum read; a watch
        from the list's resourceVersion brings it up to date.
        """
        method, namespace = self._list_method(resource, namespace)
        items: list[RawObject] = []
        version = ""
        token: str | None = None
        restarts = 0
        while True:
            kwargs: dict[str, Any] = {"_request_timeout": self.timeout}
            if restarts < MAX_LIST_RESTARTS:
                kwargs["limit"] = self.page_size
            if label_selector:
                kwargs["label_selector"] = label_selector
            if token:
                kwargs["_continue"] = token
            elif any_version:
                kwargs["resource_version"] = "0"
            args = (namespace,) if namespace is not None else ()
            kwargs["_preload_content"] = False
            try:
                page = self._call("list", resource, namespace, functools.partial(method, *args, **kwargs), continuing=bool(token))
            except _ContinueExpired:
                # The server compacted the snapshot our pages came from (410 Expired): start the list
                # again; after MAX_LIST_RESTARTS such restarts, ask for it in one piece.
                restarts += 1
                items, token = [], None
                continue
            for item in page.get("items") or []:
                if isinstance(item, dict):
                    item.setdefault("kind", resource.kind)
                    item.setdefault("apiVersion", resource.api_version)
                    items.append(item)
            meta = page.get("metadata") or {}
            token = meta.get("continue") or None
            version = str(meta.get("resourceVersion") or version)
            if not token:
                return items, version

    def watch_events(
        self, resource: KubeResource, resource_version: str, *, timeout_seconds: int, read_timeout: float
    ) -> Iterator[RawObject]:
        """Watch every object of a kind (all namespaces) from `resource_version`: yields each event as
        sent (``{"type": ..., "object": {...}}``, BOOKMARKs included), until the server ends the watch.

        The server ends it after `timeout_seconds`; a connection silent for `read_timeout` seconds, a
        transport error or an error answer raise `ClusterUnavailable`; a resourceVersion the server no
        longer has comes as an ERROR event whose Status code is 410 (kube-apiserver answers such a
        watch 200 and then that event), which the caller relists on.
        """
        method, _ = self._list_method(resource, None)
        with self._lock:
            self._calls.append(ApiCall("watch", resource.group, resource.plural, None))
        what = f"watch {resource.qualified}"
        try:
            response = method(
                watch=True,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=timeout_seconds,
                _preload_content=False,
                _request_timeout=(self.timeout, read_timeout),
            )
        except ApiException as exc:
            if exc.status == 410:
                # Some servers refuse a too old resourceVersion up front: the same as its ERROR event.
                status = {"kind": "Status", "code": 410, "reason": "Expired", "message": _status_message(exc) or ""}
                yield {"type": "ERROR", "object": status}
                return
            raise self._api_error(exc, "watch", resource, None, what) from exc
        except urllib3.exceptions.HTTPError as exc:
            raise self._unreachable(exc, what) from exc
        try:
            pending = b""
            for chunk in response.stream(64 * 1024, decode_content=True):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield _event(line, self.server, what)
            if pending.strip():
                yield _event(pending, self.server, what)
        except urllib3.exceptions.HTTPError as exc:
            raise self._unreachable(exc, what) from exc
        finally:
            response.release_conn()

    def get_object(self, resource: KubeResource, name: str, namespace: str | None = None) -> RawObject | None:
        """One object by name, or None when it does not exist."""
        api = self._api(resource)
        if resource.namespaced:
            if namespace is None:
                raise ValueError(f"{resource.plural} live in a namespace; pass one")
            method = getattr(api, f"read_namespaced_{resource.snake}")
            args: tuple[str, ...] = (name, namespace)
        else:
            method = getattr(api, f"read_{resource.snake}")
            args = (name,)
        try:
            obj = self._call(
                "get", resource, namespace, lambda: method(*args, _request_timeout=self.timeout, _preload_content=False)
            )
        except _NotFound:
            return None
        obj.setdefault("kind", resource.kind)
        obj.setdefault("apiVersion", resource.api_version)
        return obj

    def resolve(
        self,
        question: Question,
        *,
        default_namespace: str | None = None,
        allowed_namespaces: frozenset[str] | None = None,
    ) -> Resolved:
        """Resolve a parsed question into cluster objects (see `bot.cluster.resolve.resolve`)."""
        return resolve(self, question, default_namespace=default_namespace, allowed_namespaces=allowed_namespaces)

    def agent_addresses(
        self,
        namespace: str = "kube-system",
        label_selector: str = "app.kubernetes.io/name=kubereach-agent",
        port: int = 7443,
    ) -> dict[str, str]:
        """Node name -> "ip:port" of the kubereach agent on it (see `bot.cluster.agents`)."""
        return agent_addresses(self, namespace=namespace, label_selector=label_selector, port=port)

    # ------------------------------------------------------------------------------ plumbing

    def _list_method(self, resource: KubeResource, namespace: str | None) -> tuple[Any, str | None]:
        api = self._api(resource)
        if not resource.namespaced:
            return getattr(api, f"list_{resource.snake}"), None
        if namespace is None:
            return getattr(api, f"list_{resource.snake}_for_all_namespaces"), None
        return getattr(api, f"list_namespaced_{resource.snake}"), namespace

    def _unreachable(self, exc: urllib3.exceptions.HTTPError, what: str) -> ClusterUnavailable:
        return ClusterUnavailable(
            f"cannot reach the Kubernetes API server at {self.server} ({_transport_reason(exc)}) while trying to {what}",
            hint=f"check that the cluster is up and that {self.source} points at it (server address, network, proxy)",
            server=self.server,
        )

    def _api(self, resource: KubeResource) -> Any:
        api = self._apis.get(resource.plural)
        if api is None:
            api = KindApi(self._api_client, resource)
            self._apis[resource.plural] = api
        return api

    def _call(
        self,
        verb: str,
        resource: KubeResource,
        namespace: str | None,
        request: Callable[[], Any],
        *,
        continuing: bool = False,
    ) -> RawObject:
        with self._lock:
            self._calls.append(ApiCall(verb, resource.group, resource.plural, namespace))
        what = f"{verb} {resource.qualified}" + (f" in namespace {namespace}" if namespace else "")
        try:
            plain = _json_body(request())
        except ApiException as exc:
            if exc.status == 404 and verb == "get":
                raise _NotFound from exc
            if exc.status == 410 and continuing:
                raise _ContinueExpired from exc
            raise self._api_error(exc, verb, resource, namespace, what) from exc
        except urllib3.exceptions.HTTPError as exc:
            raise self._unreachable(exc, what) from exc
        except (ValueError, TypeError) as exc:
            raise ClusterUnavailable(
                f"the Kubernetes API server at {self.server} sent an answer to {what} that the client cannot read: {exc}",
                hint="check that the server is a Kubernetes API server of a supported version",
                server=self.server,
            ) from exc
        if not isinstance(plain, dict):
            raise ClusterUnavailable(
                f"the Kubernetes API server at {self.server} answered {what} with something that is not an object",
                server=self.server,
            )
        return plain

    def _api_error(
        self, exc: ApiException, verb: str, resource: KubeResource, namespace: str | None, what: str
    ) -> ClusterUnavailable:
        status = exc.status
        detail = _status_message(exc)
        if status == 401:
            return ClusterUnavailable(
                f"the Kubernetes API server at {self.server} rejected our credentials (401 Unauthorized) when trying to {what}",
                hint=f"the token or certificate in {self.source} is wrong or expired; refresh the credentials",
                server=self.server,
            )
        if status == 403 and _ANONYMOUS in (detail or ""):
            return ClusterNoCredentials(
                f"the Kubernetes API server at {self.server} refused to {what} (403 Forbidden) because the request "
                f"carried no credentials: the server treated it as {_ANONYMOUS}",
                hint=f"no credentials: the kubeconfig {self.source} has no token or client certificate for this "
                "cluster (or in-cluster: no service account token is mounted); add the bot's token or certificate "
                "to its user entry",
                server=self.server,
            )
        if status == 403:
            scope = f"in namespace {namespace}" if namespace else "cluster-wide"
            group = resource.group or '""'
            return ClusterAccessDenied(
                f"the Kubernetes API server at {self.server} refused to {what} (403 Forbidden): "
                f'the bot may not "{verb}" {resource.plural} (apiGroup {group}) {scope}',
                hint=f'grant verb "{verb}" on resource "{resource.plural}" in apiGroup {group} to the bot\'s '
                "service account (the chart's ClusterRole); " + (detail or ""),
                server=self.server,
                verb=verb,
                resource=resource.plural,
                group=resource.group,
                namespace=namespace,
            )
        if status == 404:
            return ClusterUnavailable(
                f"the Kubernetes API server at {self.server} does not serve {resource.qualified}/{resource.version} "
                f"(404 when trying to {what})",
                hint="the cluster may be too old for this API version; kubereach needs Kubernetes 1.21 or later",
                server=self.server,
            )
        reason = f"{status} {exc.reason}" if status else str(exc.reason)
        return ClusterUnavailable(
            f"the Kubernetes API server at {self.server} failed to {what} ({reason}{': ' + detail if detail else ''})",
            hint="the API server may be overloaded or restarting; try again, and check its health if it persists",
            server=self.server,
        )


_ANONYMOUS = '"system:anonymous"'
"""How kube-apiserver names a request without credentials in its 403 message."""


class _ContinueExpired(Exception):
    """Internal: the continue token of a paged list expired (410); the list starts again."""


class _NotFound(Exception):
    """Internal: a get found nothing (turned into None by `get_object`)."""


def _json_body(response: Any) -> Any:
    """The decoded JSON of a response read without the client's models (`_preload_content=False`)."""
    try:
        body = response.data
    finally:
        response.release_conn()
    return json.loads(body)


def _status_message(exc: ApiException) -> str | None:
    body = exc.body
    if not body:
        return None
    try:
        status = json.loads(body)
    except (TypeError, ValueError):
        return None
    message = status.get("message") if isinstance(status, dict) else None
    return message if isinstance(message, str) and message else None


def _event(line: bytes, server: str, what: str) -> RawObject:
    try:
        event = json.loads(line)
    except ValueError as exc:
        raise ClusterUnavailable(f"the Kubernetes API server at {server} sent a watch event that is not JSON to {what}") from exc
    if not isinstance(event, dict) or not isinstance(event.get("object"), dict):
        raise ClusterUnavailable(f"the Kubernetes API server at {server} sent a watch event without an object to {what}")
    return event


def _transport_reason(exc: urllib3.exceptions.HTTPError) -> str:
    cause: BaseException = exc
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        cause = exc.reason
    if isinstance(cause, urllib3.exceptions.NewConnectionError):
        text = str(cause)
        if "refused" in text.lower():
            return "connection refused"
        return "cannot connect: " + text.split(": ", 1)[-1]
    if isinstance(cause, urllib3.exceptions.TimeoutError):
        return "timed out"
    if isinstance(cause, urllib3.exceptions.SSLError):
        return f"TLS failed: {cause}"
    return type(cause).__name__ + (f": {cause}" if str(cause) else "")
