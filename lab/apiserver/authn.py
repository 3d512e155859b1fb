"""Who a request is, what they may do, and what kube-apiserver answers a user it does not let through.

The lab's own bearer token is the cluster admin. More tokens can be given, each with a `User` whose
RBAC rules (as a ClusterRole lists them) say what it may do; like kube-apiserver's RBAC authorizer,
every authenticated user may also read discovery and /version. As in kube-apiserver with anonymous
auth enabled (the default), a request without an Authorization header is `system:anonymous`: it may
read /healthz, /livez, /readyz and /version (the `system:public-info-viewer` role) and gets 403
Forbidden for everything else, with the message the RBAC authorizer writes. A request with a wrong
credential is 401 Unauthorized.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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


@dataclass(frozen=True)
class PolicyRule:
    """One RBAC rule: API groups, resources ("pods", "pods/status") and verbs; "*" matches all."""

    api_groups: tuple[str, ...]
    resources: tuple[str, ...]
    verbs: tuple[str, ...]

    def allows(self, info: RequestInfo) -> bool:
        """Whether this rule grants a resource request."""
        resource = info.resource + (f"/{info.subresource}" if info.subresource else "")
        return (
            ("*" in self.api_groups or info.group in self.api_groups)
            and ("*" in self.resources or resource in self.resources)
            and ("*" in self.verbs or info.verb in self.verbs)
        )


@dataclass(frozen=True)
class User:
    """An authenticated identity; `rules` None means cluster-admin."""

    name: str
    rules: tuple[PolicyRule, ...] | None = None

    def allows(self, info: RequestInfo) -> bool:
        """What kube-apiserver's RBAC authorizer would decide for this user."""
        if self.rules is None:
            return True
        if not info.resource_request:
            return info.verb == "get"  # system:discovery and system:public-info-viewer: every authenticated user
        return any(rule.allows(info) for rule in self.rules)


def rules_of(cluster_role: Mapping[str, Any]) -> tuple[PolicyRule, ...]:
    """The rules of a ClusterRole object (resourceNames and nonResourceURLs are not modelled)."""
    rules: Iterable[Mapping[str, Any]] = cluster_role.get("rules") or ()
    return tuple(
        PolicyRule(tuple(r.get("apiGroups") or ()), tuple(r.get("resources") or ()), tuple(r.get("verbs") or ())) for r in rules
    )
