"""Discovery documents: what /api, /apis, /apis/<group>[/<version>] and /version answer.

These are the shapes the official client and kubectl read to learn which resources exist, in
which group and version, whether they are namespaced and which verbs they support.
"""

from __future__ import annotations

from typing import Any

from lab.apiserver.resources import RESOURCE_TYPES, groups

SERVED_KUBERNETES_VERSION = (1, 36, 2)
"""The kube-apiserver release whose answers the lab's server imitates."""


def version_info() -> dict[str, Any]:
    """The /version document (version.Info) in kube-apiserver v1.36's shape (emulation and
    compatibility versions included). The build metadata says it is the lab, not a real build."""
    major, minor, patch = SERVED_KUBERNETES_VERSION
    return {
        "major": str(major),
        "minor": str(minor),
        "emulationMajor": str(major),
        "emulationMinor": str(minor),
        "minCompatibilityMajor": str(major),
        "minCompatibilityMinor": str(minor - 1),
        "gitVersion": f"v{major}.{minor}.{patch}",
        "gitCommit": "0" * 40,
        "gitTreeState": "clean",
        "buildDate": "2026-12-06T00:00:00Z",
        "goVersion": "kubereach-lab",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def api_versions(server_address: str) -> dict[str, Any]:
    """The /api document (APIVersions) for the core group."""
    return {
        "kind": "APIVersions",
        "versions": groups().get("", []),
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def _group_document(name: str, versions: list[str]) -> dict[str, Any]:
    listed = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": listed, "preferredVersion": listed[0]}


def api_group_list() -> dict[str, Any]:
    """The /apis document (APIGroupList) of every named group."""
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group_document(name, versions) for name, versions in groups().items() if name],
    }


def api_group(name: str) -> dict[str, Any] | None:
    """The /apis/<group> document (APIGroup), or None if the group is not served."""
    versions = groups().get(name)
    if not name or not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_document(name, versions)}


def api_resource_list(group: str, version: str) -> dict[str, Any] | None:
    """The /api/v1 or /apis/<group>/<version> document (APIResourceList), or None if not served."""
    served = [r for r in RESOURCE_TYPES if r.group == group and r.version == version]
    if not served:
        return None
    resources: list[dict[str, Any]] = []
    for resource in served:
        entry: dict[str, Any] = {
            "name": resource.plural,
            "singularName": resource.singular,
            "namespaced": resource.namespaced,
            "kind": resource.kind,
            "verbs": resource.verbs,
        }
        if resource.short_names:
            entry["shortNames"] = list(resource.short_names)
        if resource.categories:
            entry["categories"] = list(resource.categories)
        resources.append(entry)
        if resource.has_status:
            resources.append(
                {
                    "name": f"{resource.plural}/status",
                    "singularName": "",
                    "namespaced": resource.namespaced,
                    "kind": resource.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": resources,
    }


def root_paths() -> dict[str, Any]:
    """The / document: the paths this server answers."""
    paths = ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/readyz", "/version"]
    for name, versions in groups().items():
        if name:
            paths.append(f"/apis/{name}")
            paths.extend(f"/apis/{name}/{v}" for v in versions)
    return {"paths": sorted(paths)}


AGGREGATED_MEDIA_TYPE = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
"""What kubectl and client-go ask for first (aggregated discovery), and the Content-Type of the answer."""


def wants_aggregated(accept: str | None) -> bool:
    """Whether an Accept header asks for aggregated discovery (apidiscovery.k8s.io/v2) first."""
    if not accept:
        return False
    params = {p.split("=", 1)[0].strip(): p.split("=", 1)[-1].strip() for p in accept.split(",")[0].split(";")[1:] if "=" in p}
    return params.get("g") == "apidiscovery.k8s.io" and params.get("v") == "v2" and params.get("as") == "APIGroupDiscoveryList"


def aggregated_discovery(core: bool) -> dict[str, Any]:
    """The APIGroupDiscoveryList of /api (core) or /apis (named groups), as kube-apiserver v1.36 serves it."""
    items: list[dict[str, Any]] = []
    for name, versions in groups().items():
        if bool(name) == core:
            continue
        listed: list[dict[str, Any]] = []
        for version in versions:
            resources: list[dict[str, Any]] = []
            for r in (r for r in RESOURCE_TYPES if r.group == name and r.version == version):
                entry: dict[str, Any] = {
                    "resource": r.plural,
                    "responseKind": {"group": "", "version": "", "kind": r.kind},
                    "scope": "Namespaced" if r.namespaced else "Cluster",
                    "singularResource": r.singular,
                    "verbs": r.verbs,
                }
                if r.short_names:
                    entry["shortNames"] = list(r.short_names)
                if r.categories:
                    entry["categories"] = list(r.categories)
                if r.has_status:
                    entry["subresources"] = [
                        {
                            "subresource": "status",
                            "responseKind": {"group": "", "version": "", "kind": r.kind},
                            "verbs": ["get", "patch", "update"],
                        }
                    ]
                resources.append(entry)
            listed.append(
                {"version": version, "resources": sorted(resources, key=lambda e: str(e["resource"])), "freshness": "Current"}
            )
        items.append({"metadata": {"name": name} if name else {"creationTimestamp": None}, "versions": listed})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items}


def _openapi_path_base(group: str, version: str) -> str:
    return f"/api/{version}" if not group else f"/apis/{group}/{version}"


def openapi_v3_root() -> dict[str, Any]:
    """/openapi/v3: one document per group/version this server serves."""
    paths = {}
    for name, versions in groups().items():
        for version in versions:
            relative = _openapi_path_base(name, version).lstrip("/")
            paths[relative] = {"serverRelativeURL": f"/openapi/v3/{relative}?hash=lab-{SERVED_KUBERNETES_VERSION[1]}"}
    return {"paths": paths}


def openapi_v3_document(group: str, version: str) -> dict[str, Any] | None:
    """The OpenAPI v3 document of one group/version: the operations with their GVK and query parameters.

    Schemas are not modelled (the lab stores what it is given); the operations say, as kube-apiserver's
    do, that writes take `fieldValidation`, which is what kubectl checks before it leaves validation to
    the server.
    """
    served = [r for r in RESOURCE_TYPES if r.group == group and r.version == version]
    if not served:
        return None
    base = _openapi_path_base(group, version)
    parameters = [{"name": n, "in": "query", "schema": {"type": "string"}} for n in ("dryRun", "fieldManager", "fieldValidation")]
    paths: dict[str, Any] = {}
    for r in served:
        gvk = {"group": r.group, "version": r.version, "kind": r.kind}
        collection = f"{base}/namespaces/{{namespace}}/{r.plural}" if r.namespaced else f"{base}/{r.plural}"

        def operation(action: str, *, gvk: dict[str, str] = gvk, kind: str = r.kind) -> dict[str, Any]:
            return {
                "operationId": f"{action}{kind}",
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
                "parameters": parameters,
                "responses": {"200": {"description": "OK"}},
            }

        paths[collection] = {"get": operation("list"), "post": operation("post")}
        paths[f"{collection}/{{name}}"] = {
            "get": operation("get"),
            "put": operation("put"),
            "patch": operation("patch"),
            "delete": operation("delete"),
        }
        if r.has_status:
            paths[f"{collection}/{{name}}/status"] = {
                "get": operation("get"),
                "put": operation("put"),
                "patch": operation("patch"),
            }
    major, minor, patch = SERVED_KUBERNETES_VERSION
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": f"v{major}.{minor}.{patch}"},
        "paths": paths,
        "components": {"schemas": {}},
    }
