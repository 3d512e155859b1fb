"""Where the lab binds a pod: the node the spec's round-robin gives it (`lab.plan.make_plan`).

Real controllers name pods themselves, so a pod is matched to its spec workload by namespace, owner
kind and labels, not by name. A DaemonSet pod goes to the node its controller pinned it to; a
StatefulSet pod to the node the plan gave that ordinal; a Deployment's pod to the node furthest below
its planned share of that workload's pods (ties in plan order), so a deleted pod's replacement lands
where it was and a surge during a rolling update spreads. A pod that belongs to no spec workload goes
to the node with the fewest pods. `pod_plan` says what the lab builds for an API pod.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from lab.plan import OVERLAY_MTU, UNDERLAY_MTU, LabPlan, NodePlan, PodPlan, host_veth_name, pod_netns_name, uid_for
from lab.spec import ContainerPortSpec, WorkloadSpec

Obj = Mapping[str, Any]
_OWNER_KIND = {"ReplicaSet": "Deployment", "StatefulSet": "StatefulSet", "DaemonSet": "DaemonSet"}


def owner_kind(pod: Obj) -> str | None:
    """The kind of the pod's controller (ReplicaSet, StatefulSet, DaemonSet), if any."""
    for ref in pod.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("controller"):
            kind: str = ref.get("kind", "")
            return kind
    return None


def workload_of(plan: LabPlan, pod: Obj) -> WorkloadSpec | None:
    """The spec workload whose pods `pod` is one of."""
    meta = pod.get("metadata", {})
    labels = meta.get("labels") or {}
    kind = _OWNER_KIND.get(owner_kind(pod) or "")
    for w in plan.spec.workloads:
        if w.namespace == meta.get("namespace") and w.kind == kind and all(labels.get(k) == v for k, v in w.labels.items()):
            return w
    return None


def pinned_node(pod: Obj) -> str | None:
    """The node a DaemonSet pod is pinned to (its required node affinity on metadata.name)."""
    affinity = (pod.get("spec") or {}).get("affinity") or {}
    required = (affinity.get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    for term in required.get("nodeSelectorTerms") or []:
        for field in term.get("matchFields") or []:
            if field.get("key") == "metadata.name" and field.get("operator") == "In" and field.get("values"):
                value: str = field["values"][0]
                return value
    return None


def _live(pods: Iterable[Obj]) -> list[Obj]:
    return [p for p in pods if not p.get("metadata", {}).get("deletionTimestamp")]


def choose_node(plan: LabPlan, pod: Obj, pods: Iterable[Obj]) -> str:
    """The node to bind `pod` to, given every pod the API holds now (`pods`)."""
    node_names = [n.name for n in plan.nodes]
    pinned = pinned_node(pod)
    if pinned is not None:
        return pinned
    others = [p for p in _live(pods) if p.get("metadata", {}).get("uid") != pod.get("metadata", {}).get("uid")]
    w = workload_of(plan, pod)
    name = pod.get("metadata", {}).get("name")
    if w is not None and w.kind == "StatefulSet":
        for planned in plan.pods:
            if planned.namespace == w.namespace and planned.name == name:
                return planned.node
    if w is None:
        load = Counter((p.get("spec") or {}).get("nodeName") for p in others)
        return min(node_names, key=lambda n: (load[n], node_names.index(n)))
    planned_share = Counter(p.node for p in plan.pods if p.namespace == w.namespace and p.workload_name == w.name)
    bound = Counter((p.get("spec") or {}).get("nodeName") for p in others if workload_of(plan, p) == w)
    order = list(dict.fromkeys([p.node for p in plan.pods if p.namespace == w.namespace and p.workload_name == w.name]))
    order += [n for n in node_names if n not in order]
    return max(order, key=lambda n: (planned_share[n] - bound[n], -order.index(n)))


def container_ports(pod: Obj) -> tuple[ContainerPortSpec, ...]:
    """Every container port of the pod, as the lab's pod server takes them."""
    out = []
    for container in (pod.get("spec") or {}).get("containers") or []:
        for p in container.get("ports") or []:
            out.append(ContainerPortSpec(name=p.get("name"), port=p["containerPort"], protocol=p.get("protocol", "TCP")))
    return tuple(out)


def pod_plan(plan: LabPlan, pod: Obj, node: NodePlan, ip: str) -> PodPlan:
    """What the lab's CNI builds for an API pod: namespace and veth names, address, ports, role
    (the kubelet builds from it, and faults find the pod's namespace and veth through it)."""
    meta = pod["metadata"]
    ns, name = meta["namespace"], meta["name"]
    w = workload_of(plan, pod)
    owner: Obj = next((r for r in meta.get("ownerReferences") or [] if r.get("controller")), {})
    mtu = UNDERLAY_MTU if plan.options.cni == "host-gw" else OVERLAY_MTU
    return PodPlan(
        namespace=ns,
        name=name,
        uid=meta.get("uid") or uid_for("pod", ns, name),
        node=node.name,
        ip=ip,
        netns=pod_netns_name(plan.options.prefix, ns, name),
        host_veth=host_veth_name(plan.options.cni, plan.options.prefix, ns, name),
        labels=tuple(sorted((meta.get("labels") or {}).items())),
        ports=container_ports(pod),
        workload_kind=w.kind if w else (owner_kind(pod) or "Pod"),
        workload_name=w.name if w else owner.get("name", name),
        owner_kind=owner.get("kind", ""),
        owner_name=owner.get("name", ""),
        role=w.role if w else "app",
        mtu=mtu,
    )
