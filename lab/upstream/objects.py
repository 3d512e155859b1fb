"""What the lab creates through the real API from the spec, and what its kubelet reports.

Only what a user or an installer would create: Namespaces, Deployments, StatefulSets, DaemonSets
(the spec's and the kubereach agent's), Services, NetworkPolicies, and the Nodes the lab's kubelet
registers. ReplicaSets, Pods and EndpointSlices are left to kube-controller-manager. Pod templates
name the lab as their scheduler (`LAB_SCHEDULER`), so kube-scheduler leaves the spec's pods to the
lab, which binds them where the spec's round-robin puts them (`lab.upstream.placement`). Server-set
fields (uid, creationTimestamp, resourceVersion, status) are never sent.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from lab.plan import AGENT_DAEMONSET, AGENT_NAMESPACE, LabPlan, NodePlan, ServicePlan
from lab.spec import ContainerPortSpec, WorkloadSpec

Obj = dict[str, Any]
LAB_SCHEDULER = "kubereach-lab"
"""The schedulerName of the spec's pods: the lab binds them, kube-scheduler ignores them."""
AGENT_LABELS = {"app.kubernetes.io/name": "kubereach-agent", "app.kubernetes.io/component": "agent"}
AGENT_PORT = 7443
NETNS_ANNOTATION = "kubereach.io/lab-netns"
BUILTIN_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})
NODE_CAPACITY = {"cpu": "4", "memory": "8Gi", "pods": "110", "ephemeral-storage": "20Gi"}


def now_rfc3339() -> str:
    """The API's timestamp format, to the second."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    """The API's MicroTime format (Lease renewTime)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def namespace(name: str, labels: dict[str, str] | None = None) -> Obj:
    """A v1 Namespace (the server adds kubernetes.io/metadata.name)."""
    meta: Obj = {"name": name}
    if labels:
        meta["labels"] = dict(labels)
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def namespaces(plan: LabPlan) -> list[Obj]:
    """The spec's namespaces that the server does not make itself."""
    return [namespace(ns.name, ns.labels) for ns in plan.spec.namespaces if ns.name not in BUILTIN_NAMESPACES]


def node(plan: LabPlan, n: NodePlan) -> Obj:
    """A v1 Node as the lab's kubelet registers it: its pod CIDR, its namespace, flannel's annotations."""
    annotations = {NETNS_ANNOTATION: n.netns}
    if plan.options.cni == "flannel-vxlan":
        annotations |= {
            "flannel.alpha.coreos.com/backend-type": "vxlan",
            "flannel.alpha.coreos.com/backend-data": f'{{"VNI":1,"VtepMAC":"{n.vtep_mac}"}}',
            "flannel.alpha.coreos.com/public-ip": n.ip,
        }
    labels = {
        "kubernetes.io/hostname": n.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node-role.kubernetes.io/worker": "",
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": n.name, "labels": labels, "annotations": annotations},
        "spec": {"podCIDR": n.pod_cidr, "podCIDRs": [n.pod_cidr]},
    }


def node_status(n: NodePlan, kubelet_version: str) -> Obj:
    """The status the lab's kubelet posts: Ready, its fabric address, capacity, versions."""
    stamp = now_rfc3339()
    conditions = [
        {"type": t, "status": "False", "reason": f"KubeletHasSufficient{r}", "message": f"kubelet has sufficient {m}"}
        for t, r, m in (
            ("MemoryPressure", "Memory", "memory available"),
            ("DiskPressure", "Disk", "disk space available"),
            ("PIDPressure", "PID", "PID available"),
        )
    ]
    conditions.append({"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status"})
    for c in conditions:
        c |= {"lastHeartbeatTime": stamp, "lastTransitionTime": stamp}
    return {
        "status": {
            "addresses": [{"type": "InternalIP", "address": n.ip}, {"type": "Hostname", "address": n.name}],
            "conditions": conditions,
            "capacity": dict(NODE_CAPACITY),
            "allocatable": dict(NODE_CAPACITY),
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": {
                "kernelVersion": "lab",
                "kubeletVersion": kubelet_version,
                "kubeProxyVersion": kubelet_version,
                "containerRuntimeVersion": "kubereach-lab://1",
                "osImage": "kubereach lab",
                "operatingSystem": "linux",
                "architecture": "amd64",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        }
    }


def node_lease(node_name: str, duration_s: int) -> Obj:
    """The node's heartbeat Lease in kube-node-lease, renewed now."""
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": node_name, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": node_name, "leaseDurationSeconds": duration_s, "renewTime": now_micro()},
    }


def _container_ports(ports: tuple[ContainerPortSpec, ...]) -> list[Obj]:
    out = []
    for p in ports:
        port: Obj = {"containerPort": p.port, "protocol": p.protocol}
        if p.name:
            port["name"] = p.name
        out.append(port)
    return out


def pod_template(w: WorkloadSpec) -> Obj:
    """The pod template of a spec workload: its labels, one container with its ports, the lab as scheduler."""
    container: Obj = {"name": w.name, "image": f"registry.local/{w.name}:lab"}
    if w.ports:
        container["ports"] = _container_ports(w.ports)
    return {"metadata": {"labels": dict(w.labels)}, "spec": {"schedulerName": LAB_SCHEDULER, "containers": [container]}}


def workload(w: WorkloadSpec) -> Obj:
    """A Deployment, StatefulSet or DaemonSet from the spec."""
    spec: Obj = {"selector": {"matchLabels": dict(w.labels)}, "template": pod_template(w)}
    if w.kind != "DaemonSet":
        spec["replicas"] = w.replicas
    if w.kind == "StatefulSet":
        spec["serviceName"] = w.name
    return {
        "apiVersion": "apps/v1",
        "kind": w.kind,
        "metadata": {"name": w.name, "namespace": w.namespace, "labels": dict(w.labels)},
        "spec": spec,
    }


def agent_daemonset() -> Obj:
    """The kubereach agent DaemonSet: hostNetwork, one pod per node (the lab runs the agents themselves)."""
    container = {
        "name": "agent",
        "image": "ghcr.io/kubereach/agent:0.1.0",
        "ports": [{"name": "grpc", "containerPort": AGENT_PORT, "protocol": "TCP"}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": AGENT_DAEMONSET, "namespace": AGENT_NAMESPACE, "labels": dict(AGENT_LABELS)},
        "spec": {
            "selector": {"matchLabels": dict(AGENT_LABELS)},
            "template": {
                "metadata": {"labels": dict(AGENT_LABELS)},
                "spec": {
                    "hostNetwork": True,
                    "dnsPolicy": "ClusterFirstWithHostNet",
                    "schedulerName": LAB_SCHEDULER,
                    "containers": [container],
                },
            },
        },
    }


def service(svc: ServicePlan) -> Obj:
    """A v1 Service with the plan's ClusterIP (kube-dns keeps 10.96.0.10); the server defaults the rest."""
    ports = []
    for p in svc.ports:
        port: Obj = {"port": p.port, "protocol": p.protocol, "targetPort": p.target_port if p.target_port is not None else p.port}
        if p.name:
            port["name"] = p.name
        if svc.type in ("NodePort", "LoadBalancer") and p.node_port:
            port["nodePort"] = p.node_port
        ports.append(port)
    spec: Obj = {"type": svc.type, "clusterIP": svc.cluster_ip, "ports": ports, "sessionAffinity": svc.session_affinity}
    spec["internalTrafficPolicy"] = svc.internal_traffic_policy
    if svc.type in ("NodePort", "LoadBalancer"):
        spec["externalTrafficPolicy"] = svc.external_traffic_policy
    if svc.external_ips:
        spec["externalIPs"] = list(svc.external_ips)
    if svc.selector is not None:
        spec["selector"] = dict(svc.selector)
    if svc.external_name is not None:
        spec = {"type": "ExternalName", "externalName": svc.external_name, "ports": ports}
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": svc.name, "namespace": svc.namespace}, "spec": spec}


def load_balancer_statuses(plan: LabPlan) -> list[tuple[str, Obj]]:
    """(services/status path, merge patch) giving each LoadBalancer service its ingress IP: the lab
    plays the cloud's service controller, which a control plane without a cloud provider lacks."""
    return [
        (
            f"/api/v1/namespaces/{s.namespace}/services/{s.name}/status",
            {"status": {"loadBalancer": {"ingress": [{"ip": s.load_balancer_ip, "ipMode": "VIP"}]}}},
        )
        for s in plan.services
        if s.load_balancer_ip
    ]


def network_policies(plan: LabPlan) -> list[Obj]:
    """The spec's NetworkPolicies, with only name and namespace as metadata."""
    out = []
    for policy in plan.spec.network_policies:
        meta = policy["metadata"]
        out.append({**policy, "metadata": {"name": meta["name"], "namespace": meta["namespace"]}})
    return out


def cluster_objects(plan: LabPlan) -> list[Obj]:
    """Everything the lab creates from the spec, in an order the server accepts (namespaces first)."""
    return [
        *namespaces(plan),
        *[service(s) for s in plan.services],
        *network_policies(plan),
        *[workload(w) for w in plan.spec.workloads],
        agent_daemonset(),
    ]


def pod_status(pod_ip: str, host_ip: str, containers: list[tuple[str, str]], *, ready: bool, started_at: str) -> Obj:
    """The status the lab's kubelet reports for a pod it built (a merge patch of pods/status).

    `containers`: (name, image) of each container of the pod's spec.
    """
    flag = "True" if ready else "False"
    stamp = now_rfc3339()
    conditions = [
        {"type": "PodReadyToStartContainers", "status": "True", "lastProbeTime": None, "lastTransitionTime": stamp},
        {"type": "Initialized", "status": "True", "lastProbeTime": None, "lastTransitionTime": stamp},
        {"type": "Ready", "status": flag, "lastProbeTime": None, "lastTransitionTime": stamp},
        {"type": "ContainersReady", "status": flag, "lastProbeTime": None, "lastTransitionTime": stamp},
        {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": stamp},
    ]
    statuses = [
        {
            "name": name,
            "ready": ready,
            "started": True,
            "restartCount": 0,
            "image": image,
            "imageID": "",
            "state": {"running": {"startedAt": started_at}},
        }
        for name, image in containers
    ]
    return {
        "status": {
            "phase": "Running",
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "podIP": pod_ip,
            "podIPs": [{"ip": pod_ip}],
            "startTime": started_at,
            "conditions": conditions,
            "containerStatuses": statuses,
        }
    }


def binding(pod_namespace: str, pod_name: str, node_name: str) -> Obj:
    """A v1 Binding of a pod to a node (POST pods/NAME/binding), as a scheduler sends it."""
    return {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": pod_name, "namespace": pod_namespace},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node_name},
    }


_PLURALS = {
    "Namespace": "namespaces",
    "Node": "nodes",
    "Service": "services",
    "ServiceAccount": "serviceaccounts",
    "Deployment": "deployments",
    "StatefulSet": "statefulsets",
    "DaemonSet": "daemonsets",
    "NetworkPolicy": "networkpolicies",
    "ClusterRole": "clusterroles",
    "ClusterRoleBinding": "clusterrolebindings",
}
_CLUSTER_SCOPED = frozenset({"Namespace", "Node", "ClusterRole", "ClusterRoleBinding"})


def collection_path(obj: Obj) -> str:
    """The REST path an object is created at (POST)."""
    api_version, kind = obj["apiVersion"], obj["kind"]
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    if kind not in _PLURALS:
        raise ValueError(f"the lab does not create {kind} objects")
    if kind in _CLUSTER_SCOPED:
        return f"{base}/{_PLURALS[kind]}"
    return f"{base}/namespaces/{obj['metadata']['namespace']}/{_PLURALS[kind]}"
