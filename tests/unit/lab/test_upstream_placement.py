"""The lab binds the controllers' pods where the spec's round-robin puts them, whatever their names."""

from __future__ import annotations

import itertools
import uuid
from collections import Counter
from typing import Any

import pytest

from lab.plan import LabOptions, LabPlan, make_plan
from lab.spec import WorkloadSpec, load_spec
from lab.upstream.placement import choose_node, pinned_node, workload_of

OWNER = {"Deployment": "ReplicaSet", "StatefulSet": "StatefulSet", "DaemonSet": "DaemonSet"}
_names = itertools.count()


@pytest.fixture(scope="module")
def plan() -> LabPlan:
    return make_plan(load_spec(), LabOptions(prefix="kpl", nodes=3))


def controller_pod(w: WorkloadSpec, *, ordinal: int | None = None, node_affinity: str | None = None) -> dict[str, Any]:
    """A pod as kube-controller-manager creates it: a generated name, an owner, the template's labels, no node."""
    name = f"{w.name}-{ordinal}" if ordinal is not None else f"{w.name}-7c9d{next(_names):05d}-x"
    labels = {**w.labels, "pod-template-hash": "7c9d"} if w.kind == "Deployment" else dict(w.labels)
    spec: dict[str, Any] = {"schedulerName": "kubereach-lab", "containers": [{"name": w.name}]}
    if node_affinity:
        term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node_affinity]}]}
        spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}
    owner = {"apiVersion": "apps/v1", "kind": OWNER[w.kind], "name": w.name, "uid": str(uuid.uuid4()), "controller": True}
    return {
        "metadata": {
            "name": name,
            "namespace": w.namespace,
            "uid": str(uuid.uuid4()),
            "labels": labels,
            "ownerReferences": [owner],
        },
        "spec": spec,
    }


def bind_all(plan: LabPlan, pods: list[dict[str, Any]], pending: list[dict[str, Any]]) -> None:
    for pod in pending:
        pod["spec"]["nodeName"] = choose_node(plan, pod, pods)


def test_every_workload_lands_as_the_plan_spreads_it(plan: LabPlan) -> None:
    pods: list[dict[str, Any]] = []
    for w in plan.spec.workloads:
        made = [controller_pod(w, ordinal=i if w.kind == "StatefulSet" else None) for i in range(w.replicas)]
        pods += made
        bind_all(plan, pods, made)
    for w in plan.spec.workloads:
        planned = Counter(p.node for p in plan.pods if p.namespace == w.namespace and p.workload_name == w.name)
        bound = Counter(p["spec"]["nodeName"] for p in pods if workload_of(plan, p) == w)
        assert bound == planned, w.name


def test_a_statefulset_ordinal_goes_to_its_planned_node(plan: LabPlan) -> None:
    redis = next(w for w in plan.spec.workloads if w.name == "redis")
    pod = controller_pod(redis, ordinal=0)
    assert choose_node(plan, pod, [pod]) == next(p.node for p in plan.pods if p.name == "redis-0")


def test_a_daemonset_pod_goes_where_its_controller_pinned_it(plan: LabPlan) -> None:
    w = WorkloadSpec(kind="DaemonSet", namespace="kube-system", name="kubereach-agent", labels={"a": "b"})
    pod = controller_pod(w, node_affinity="node-3")
    assert pinned_node(pod) == "node-3"
    assert choose_node(plan, pod, [pod]) == "node-3"


def test_a_deleted_pods_replacement_lands_where_it_was(plan: LabPlan) -> None:
    api = next(w for w in plan.spec.workloads if w.name == "api")
    pods = [controller_pod(api) for _ in range(api.replicas)]
    bind_all(plan, pods, pods)
    victim = pods[1]
    victim["metadata"]["deletionTimestamp"] = "2026-12-06T07:00:00Z"  # terminating: no longer counts
    replacement = controller_pod(api)
    pods.append(replacement)
    assert choose_node(plan, replacement, pods) == victim["spec"]["nodeName"]


def test_a_surge_spreads_instead_of_piling_up(plan: LabPlan) -> None:
    api = next(w for w in plan.spec.workloads if w.name == "api")
    pods = [controller_pod(api) for _ in range(api.replicas)]
    bind_all(plan, pods, pods)
    surge = [controller_pod(api) for _ in range(3)]
    pods += surge
    bind_all(plan, pods, surge)
    assert Counter(p["spec"]["nodeName"] for p in surge) == Counter({"node-1": 1, "node-2": 1, "node-3": 1})


def test_a_pod_of_no_spec_workload_goes_to_the_least_loaded_node(plan: LabPlan) -> None:
    api = next(w for w in plan.spec.workloads if w.name == "api")
    pods = [controller_pod(api) for _ in range(2)]
    for pod, node in zip(pods, ("node-1", "node-2"), strict=True):
        pod["spec"]["nodeName"] = node
    stray = {"metadata": {"name": "debug", "namespace": "default", "uid": "u", "labels": {"run": "debug"}}, "spec": {}}
    assert workload_of(plan, stray) is None
    assert choose_node(plan, stray, [*pods, stray]) == "node-3"
