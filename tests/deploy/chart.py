"""Render the kubereach chart with Helm's own engine (helm-python-sdk binds Helm's Go library).

`render(values)` returns the manifests as parsed objects, in template order; YAML keys that appear
twice in one mapping are an error here (PyYAML would silently keep the last one, the API server's
strict decoding would not). `validate(obj)` checks one object against the Kubernetes OpenAPI schemas
that `kubernetes-validate` ships.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "deploy" / "helm" / "kubereach"
RELEASE = "kr"
NAMESPACE = "kubereach"
FULLNAME = "kr-kubereach"

KUBE_VERSIONS = ("1.27.0", kubernetes_validate.utils.latest_version())
"""The oldest Kubernetes the chart supports (native gRPC probes are GA there) and the newest schemas."""

CRD_KINDS = frozenset(
    {("cert-manager.io/v1", "Issuer"), ("cert-manager.io/v1", "Certificate"), ("monitoring.coreos.com/v1", "ServiceMonitor")}
)
"""Custom resources: kubernetes-validate has no schema for them."""

VARIATIONS: dict[str, dict[str, Any]] = {
    "default": {},
    "socket-mode": {"bot": {"mode": "socket"}, "slack": {"botToken": "xoxb-1", "appToken": "xapp-1"}},
    "http-ingress": {
        "bot": {
            "mode": "http",
            "ingress": {
                "enabled": True,
                "className": "nginx",
                "host": "kubereach.example.com",
                "tls": [{"secretName": "kubereach-tls", "hosts": ["kubereach.example.com"]}],
            },
        },
        "slack": {"botToken": "xoxb-1", "signingSecret": "s3cret"},
    },
    "existing-secrets": {
        "bot": {"replicaCount": 3},
        "slack": {"existingSecret": "team-slack"},
        "database": {"existingSecret": "team-postgres", "existingSecretKey": "dsn"},
    },
    "cert-manager": {"tls": {"certManager": {"enabled": True}}},
    "servicemonitor": {
        "bot": {"ops": {"enabled": True}},
        "metrics": {"enabled": True, "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
    },
}
"""The default values and the variations issue 7 asks to render and validate."""


class _StrictLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key repeated in one mapping."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _value in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def render_files(values: dict[str, Any] | None = None) -> dict[str, str]:
    """Template path -> rendered text, as `helm template` would print it."""
    with helm.Chart.load(CHART_DIR) as chart:
        return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every rendered object (NOTES.txt left out)."""
    objects: list[dict[str, Any]] = []
    for path, text in sorted(render_files(values).items()):
        if path.endswith("NOTES.txt"):
            continue
        for document in yaml.load_all(text, Loader=_StrictLoader):
            if document:
                objects.append(document)
    return objects


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The one object of `kind` (and `name`); fails when there is none or several."""
    matches = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {[o['metadata']['name'] for o in matches]}"
    return matches[0]


def kinds(objects: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(kind, name) of every object."""
    return [(o["kind"], o["metadata"]["name"]) for o in objects]


def validate(obj: dict[str, Any], version: str) -> None:
    """Validate one built-in object against the Kubernetes `version` schema, unknown fields refused."""
    kubernetes_validate.validate(obj, version, strict=True)


def containers(pod_owner: dict[str, Any], *, init: bool = False) -> Iterator[dict[str, Any]]:
    """The containers (or init containers) of a workload's pod template."""
    spec = pod_owner["spec"]["template"]["spec"]
    yield from spec.get("initContainers" if init else "containers", [])


def container_env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Environment variable name -> its entry."""
    return {item["name"]: item for item in container.get("env", [])}
