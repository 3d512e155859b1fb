"""Who a request is, and what kube-apiserver answers a user it does not let through.

The lab knows one credential, its bearer token (the cluster admin). As in kube-apiserver with
anonymous auth enabled (the default), a request without an Authorization header is
`system:anonymous`: it may read /healthz, /livez, /readyz and /version (the `system:public-info-viewer`
role) and gets 403 Forbidden for everything else, with the message the RBAC authorizer writes. A
request with a wrong credential is 401 Unauthorized.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lab.apiserver.errors import Forbidden

ANONYMOUS = "system:anonymous"
PUBLIC_PATHS = frozenset({"healthz", "livez", "readyz", "version"})
_TRUE = ("1", "true", "True")


@dataclass(frozen=True)
class RequestInfo:
    """What the authorizer sees of a request (k8s.io/apiserver RequestInfo, the parts the lab needs)."""

    path: str
    verb: str
    resource_request: bool
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""


def request_info(method: str, segments: list[str], query: dict[str, str]) -> RequestInfo:
    """Classify a request path as kube-apiserver does before it authorizes it."""
    path = "/" + "/".join(segments)
    lower = method.lower()
    if len(segments) < 3 or segments[0] not in ("api", "apis") or (segments[0] == "apis" and len(segments) < 4):
        return RequestInfo(path, lower if lower != "head" else "get", False)
    rest = segments[2:] if segments[0] == "api" else segments[3:]
    group = "" if segments[0] == "api" else segments[1]
    watch = query.get("watch") in _TRUE
    if rest and rest[0] == "watch":
        watch, rest = True, rest[1:]
    namespace = ""
    if len(rest) >= 2 and rest[0] == "namespaces":
        namespace = rest[1]
        # /namespaces/NS and /namespaces/NS/status are the namespace itself; deeper paths are in it.
        rest = rest[2:] if len(rest) >= 3 and not (len(rest) == 3 and rest[2] in ("status", "finalize")) else rest
    resource = rest[0] if rest else ""
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    verb = {"get": "get", "post": "create", "put": "update", "patch": "patch", "delete": "delete"}.get(lower, lower)
    if not name and verb == "get":
        verb = "list"
    if not name and verb == "delete":
        verb = "deletecollection"
    if watch and verb in ("get", "list"):
        verb = "watch"
    return RequestInfo(path, verb, True, group, resource, subresource, namespace, name)


def forbidden(user: str, info: RequestInfo) -> Forbidden:
    """The 403 kube-apiserver's RBAC authorizer answers when `user` may not do `info`."""
    if not info.resource_request:
        return Forbidden(f'forbidden: User "{user}" cannot {info.verb} path "{info.path}"', details={})
    resource = info.resource + (f"/{info.subresource}" if info.subresource else "")
    qualified = info.resource + (f".{info.group}" if info.group else "")
    subject = f'{qualified} "{info.name}"' if info.name else qualified
    scope = f'in the namespace "{info.namespace}"' if info.namespace else "at the cluster scope"
    details: dict[str, Any] = {}
    if info.name:
        details["name"] = info.name
    if info.group:
        details["group"] = info.group
    details["kind"] = info.resource
    return Forbidden(
        f'{subject} is forbidden: User "{user}" cannot {info.verb} resource "{resource}" in API group "{info.group}" {scope}',
        details=details,
    )


def anonymous_allowed(segments: list[str]) -> bool:
    """Whether system:anonymous may read this path (system:public-info-viewer)."""
    return len(segments) == 1 and segments[0] in PUBLIC_PATHS
