"""The GET requests the bot sends, by the official client's method names, without its API classes.

The bot reads nine kinds with three verbs (list, get, watch). The official client's generated API
classes (`CoreV1Api` is 63,000 lines of pydantic-validated methods) cost 1-5 s to import and build on
a process's first request, more than the whole rest of an investigation; `kubereach ask` is a fresh
process per question, so it paid that every time. `KindApi` offers, for one kind, the five methods
`ClusterClient` calls (`list_pod_for_all_namespaces`, `list_namespaced_pod`, `list_node`,
`read_namespaced_pod`, `read_node`, ...), with the keyword arguments of the generated ones, and sends
them through the same `ApiClient` (its configuration, authentication and token refresh, TLS, retries
and connection pool): `param_serialize` builds the request as the generated methods do (path
parameters quoted), `call_api` sends it. The answer is the unread urllib3 response, as the generated
methods return it with `_preload_content=False`; a non-2xx answer raises the client's `ApiException`
with the server's body, as they do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubernetes.client.exceptions import ApiException

from bot.cluster.resources import KubeResource

QUERY_NAMES = {
    "limit": "limit",
    "_continue": "continue",
    "label_selector": "labelSelector",
    "watch": "watch",
    "resource_version": "resourceVersion",
    "allow_watch_bookmarks": "allowWatchBookmarks",
    "timeout_seconds": "timeoutSeconds",
}
"""The generated methods' keyword arguments the bot uses, and their query parameter names."""


def collection_path(resource: KubeResource, namespaced: bool) -> str:
    """The URL path template of a kind's collection (``/apis/apps/v1/namespaces/{namespace}/deployments``)."""
    root = f"/apis/{resource.group}/{resource.version}" if resource.group else f"/api/{resource.version}"
    return f"{root}/namespaces/{{namespace}}/{resource.plural}" if namespaced else f"{root}/{resource.plural}"


def query_params(kwargs: dict[str, Any]) -> list[tuple[str, Any]]:
    """The query of a request from the generated method's keyword arguments (None: left out)."""
    unknown = set(kwargs) - set(QUERY_NAMES)
    if unknown:
        raise TypeError(f"unexpected keyword arguments: {', '.join(sorted(unknown))}")
    return [(QUERY_NAMES[key], value) for key, value in kwargs.items() if value is not None]


class KindApi:
    """The list / read methods of one kind, named as in the generated client, sent as plain GETs."""

    def __init__(self, api_client: Any, resource: KubeResource) -> None:
        self._api_client = api_client
        snake = resource.snake
        if resource.namespaced:
            every = collection_path(resource, namespaced=False)
            scoped = collection_path(resource, namespaced=True)
            setattr(self, f"list_{snake}_for_all_namespaces", self._getter(every, ()))
            setattr(self, f"list_namespaced_{snake}", self._getter(scoped, ("namespace",)))
            setattr(self, f"read_namespaced_{snake}", self._getter(scoped + "/{name}", ("name", "namespace")))
        else:
            every = collection_path(resource, namespaced=False)
            setattr(self, f"list_{snake}", self._getter(every, ()))
            setattr(self, f"read_{snake}", self._getter(every + "/{name}", ("name",)))

    def _getter(self, path: str, positional: tuple[str, ...]) -> Callable[..., Any]:
        def get(*args: str, _request_timeout: Any = None, _preload_content: bool = False, **kwargs: Any) -> Any:
            if _preload_content:
                raise TypeError("the bot reads raw answers: pass _preload_content=False")
            if len(args) != len(positional):
                raise TypeError(f"expected {len(positional)} positional arguments ({', '.join(positional)})")
            return self.get(path, dict(zip(positional, args, strict=True)), query_params(kwargs), _request_timeout)

        return get

    def get(self, path: str, path_params: dict[str, str], query: list[tuple[str, Any]], timeout: Any) -> Any:
        """Send one GET; the unread urllib3 response of a 2xx answer, else the client's ApiException."""
        request = self._api_client.param_serialize(
            method="GET",
            resource_path=path,
            path_params=path_params,
            query_params=query,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        response = self._api_client.call_api(*request, _request_timeout=timeout)
        if not 200 <= response.status <= 299:
            response.read()
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        return response.response
