"""Discovery documents: what /api, /apis, /apis/<group>[/<version>] and /version answer.

These are the shapes the official client and kubectl read to learn which resources exist, in
which group and version, whether they are namespaced and which verbs they support.
"""

from __future__ import annotations

from typing import Any

from lab.apiserver.resources import READ_VERBS, RESOURCE_TYPES, WRITE_VERBS, groups

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
            "verbs": sorted((*READ_VERBS, *WRITE_VERBS)),
        }
        if resource.short_names:
            entry["shortNames"] = list(resource.short_names)
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
