"""NetworkPolicy faults: a policy denying all ingress to a service's pods, one letting a pod reach only DNS."""

from __future__ import annotations

from dataclasses import dataclass

from lab.errors import LabError
from lab.faults.common import svc_key
from lab.faults.model import Fault, FaultContext, FaultTarget, Needs, Undo, Verdict


@dataclass(frozen=True)
class PolicyUndo(Undo):
    """The NetworkPolicy a fault created, to delete."""

    namespace: str
    name: str


def policy_path(ns: str, name: str = "") -> str:
    return f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies" + (f"/{name}" if name else "")


def _inject_policy_ingress(ctx: FaultContext, t: FaultTarget) -> tuple[str, PolicyUndo]:
    assert t.service is not None
    ns = t.service["metadata"]["namespace"]
    selector = t.service["spec"].get("selector") or {}
    name = f"deny-all-to-{t.service['metadata']['name']}"
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"podSelector": {"matchLabels": selector}, "policyTypes": ["Ingress"], "ingress": []},
    }
    ctx.api.request("POST", policy_path(ns), policy)
    return f"NetworkPolicy {ns}/{name} denies all ingress to the pods of {svc_key(t.service)}", PolicyUndo(ns, name)


def _inject_policy_egress(ctx: FaultContext, t: FaultTarget) -> tuple[str, PolicyUndo]:
    pod = t.pod or next(p for p in ctx.pods() if p["metadata"]["labels"].get("app") == "frontend")
    ns = pod["metadata"]["namespace"]
    labels = {k: v for k, v in pod["metadata"]["labels"].items() if k not in ("pod-template-hash", "controller-revision-hash")}
    labels.pop("statefulset.kubernetes.io/pod-name", None)
    name = f"egress-dns-only-{pod['metadata']['name'].split('-')[0]}"
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "podSelector": {"matchLabels": labels},
            "policyTypes": ["Egress"],
            "egress": [
                {
                    "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
                    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
                }
            ],
        },
    }
    ctx.api.request("POST", policy_path(ns), policy)
    return f"NetworkPolicy {ns}/{name} lets pods with {labels} reach only cluster DNS", PolicyUndo(ns, name)


def heal_policy(ctx: FaultContext, undo: PolicyUndo) -> None:
    try:
        ctx.api.request("DELETE", policy_path(undo.namespace, undo.name))
    except LabError as exc:
        if " 404 " not in str(exc):
            raise


DENY_INGRESS = Fault(
    "policy-deny-ingress",
    Verdict.NETWORK_POLICY_DENIES_INGRESS,
    "add a NetworkPolicy denying all ingress to a service's pods",
    Needs.SERVICE,
    _inject_policy_ingress,
    heal_policy,
    PolicyUndo,
)
DENY_EGRESS = Fault(
    "policy-deny-egress",
    Verdict.NETWORK_POLICY_DENIES_EGRESS,
    "add a NetworkPolicy letting a pod's workload reach only DNS",
    Needs.POD,
    _inject_policy_egress,
    heal_policy,
    PolicyUndo,
)
