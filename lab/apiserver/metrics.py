"""The lab API server's request counter, served at ``/metrics`` as kube-apiserver serves it.

kube-apiserver counts every resource request in ``apiserver_request_total`` with the labels verb
(GET, LIST, WATCH, CREATE, UPDATE, PATCH, DELETE, DELETECOLLECTION), group, version, resource,
subresource, scope (resource, namespace, cluster), component and code; a watch is counted when it
ends. The lab keeps the same counter so that tests and benchmarks can count what a client asked
(``kubectl get --raw /metrics`` works against both).
"""

from __future__ import annotations

import threading
from collections import Counter

HELP = (
    "# HELP apiserver_request_total [STABLE] Counter of apiserver requests broken out for each verb, dry run value, "
    "group, version, resource, scope, component, and HTTP response code.\n"
    "# TYPE apiserver_request_total counter\n"
)

_Key = tuple[str, str, str, str, str, str, int]
"""verb, group, version, resource, subresource, scope, code."""


def request_verb(method: str, name: str | None, watch: bool) -> str:
    """kube-apiserver's verb label for an HTTP method on a collection or an object."""
    if method == "GET":
        return "GET" if name is not None else ("WATCH" if watch else "LIST")
    if method == "DELETE":
        return "DELETE" if name is not None else "DELETECOLLECTION"
    return {"POST": "CREATE", "PUT": "UPDATE", "PATCH": "PATCH"}.get(method, method)


def request_scope(namespace: str | None, name: str | None) -> str:
    """kube-apiserver's scope label: one object, a namespace's collection, or the cluster's."""
    if name is not None:
        return "resource"
    return "namespace" if namespace is not None else "cluster"


class RequestCounter:
    """Thread-safe ``apiserver_request_total``."""

    def __init__(self) -> None:
        self._counts: Counter[_Key] = Counter()
        self._lock = threading.Lock()

    def count(self, verb: str, group: str, version: str, resource: str, subresource: str, scope: str, code: int) -> None:
        """Count one finished request."""
        with self._lock:
            self._counts[(verb, group, version, resource, subresource, scope, code)] += 1

    def total(self, verb: str | None = None, resource: str | None = None) -> int:
        """Requests so far, of one verb and/or resource (None: any)."""
        with self._lock:
            return sum(n for key, n in self._counts.items() if verb in (None, key[0]) and resource in (None, key[3]))

    def exposition(self) -> str:
        """The counter in Prometheus' text format."""
        with self._lock:
            items = sorted(self._counts.items())
        lines = [HELP]
        for (verb, group, version, resource, subresource, scope, code), n in items:
            lines.append(
                f'apiserver_request_total{{code="{code}",component="apiserver",dry_run="",group="{group}",'
                f'resource="{resource}",scope="{scope}",subresource="{subresource}",verb="{verb}",version="{version}"}} {n}\n'
            )
        return "".join(lines)
