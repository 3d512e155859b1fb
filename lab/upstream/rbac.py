"""The bot's identity on the upstream lab: the Helm chart's own ServiceAccount, ClusterRole and binding.

The chart (`deploy/helm/kubereach`) is rendered with Helm's engine (helm-python-sdk, installed with
the project's dev extra, which `scripts/setup.sh` installs) and its RBAC objects are created as they
are, so the chart's ClusterRole meets the real RBAC authorizer. The bot then talks to the API with a
token of that ServiceAccount (TokenRequest), never with the lab's admin credentials.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from lab.errors import LabError

CHART_DIR = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "kubereach"
RELEASE = "kubereach"
NAMESPACE = "kubereach"
RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")


def render_chart(chart_dir: Path = CHART_DIR) -> list[dict[str, Any]]:
    """Every object the chart renders with its default values (release `kubereach` in namespace `kubereach`)."""
    if not (chart_dir / "Chart.yaml").is_file():
        raise LabError(f"the Helm chart is not at {chart_dir}: run the lab from a kubereach checkout")
    try:
        import helm_python as helm
    except ImportError as exc:
        raise LabError(
            "rendering the Helm chart's RBAC needs helm-python-sdk",
            hint="install the project's dev extra: .venv/bin/pip install -e '.[dev]' (scripts/setup.sh does)",
        ) from exc
    with helm.Chart.load(chart_dir) as chart:
        files: dict[str, str] = chart.render(None, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects: list[dict[str, Any]] = []
    for path, text in sorted(files.items()):
        if path.endswith("NOTES.txt"):
            continue
        objects += [doc for doc in yaml.safe_load_all(text) if doc]
    return objects


def bot_rbac(objects: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], tuple[str, str]]:
    """The bot's ServiceAccount, the ClusterRole(s) and their binding(s) from the rendered chart,
    and the (namespace, name) of the ServiceAccount the binding names."""
    bindings = [o for o in objects if o["kind"] == "ClusterRoleBinding"]
    if len(bindings) != 1:
        raise LabError(f"the chart renders {len(bindings)} ClusterRoleBindings; the lab expects exactly one for the bot")
    subjects = [s for s in bindings[0]["subjects"] if s["kind"] == "ServiceAccount"]
    if len(subjects) != 1:
        raise LabError("the chart's ClusterRoleBinding does not name exactly one ServiceAccount")
    account = (subjects[0]["namespace"], subjects[0]["name"])
    role = bindings[0]["roleRef"]["name"]
    chosen = [
        o
        for o in objects
        if (o["kind"] == "ServiceAccount" and (o["metadata"].get("namespace", NAMESPACE), o["metadata"]["name"]) == account)
        or (o["kind"] == "ClusterRole" and o["metadata"]["name"] == role)
        or o["kind"] == "ClusterRoleBinding"
    ]
    if {o["kind"] for o in chosen} != set(RBAC_KINDS):
        raise LabError(f"the chart does not render the bot's {', '.join(RBAC_KINDS)} (found {sorted(o['kind'] for o in chosen)})")
    for o in chosen:
        if o["kind"] == "ServiceAccount":
            o["metadata"].setdefault("namespace", NAMESPACE)
    return chosen, account


def token_request(seconds: int) -> dict[str, Any]:
    """A TokenRequest body (POST serviceaccounts/NAME/token) for a token valid `seconds`."""
    return {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": seconds},
    }
