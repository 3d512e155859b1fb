"""The lab's Kubernetes objects, in the real API shapes, built from the plan.

These seed the lab's API server. From then on the API server is the source of truth: controllers
derive EndpointSlices from pods and services, and faults change objects through the API.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from lab.plan import (
    AGENT_DAEMONSET,
    AGENT_NAMESPACE,
    LabPlan,
    NodePlan,
    PodPlan,
    ServicePlan,
    uid_for,
)

if TYPE_CHECKING:
    from lab.apiserver.store import Store

Obj = dict[str, Any]
AGENT_PORT = 7443
AGENT_IMAGE = "ghcr.io/kubereach/agent:0.1.0"
KERNEL_VERSION = "lab"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _meta(name: str, namespace: str | None, uid: str, **extra: Any) -> Obj:
    meta: Obj = {"name": name, "uid": uid, "creationTimestamp": _now()}
    if namespace is not None:
        meta["namespace"] = namespace
    meta.update({k: v for k, v in extra.items() if v is not None})
    return meta


def _owner(kind: str, api_version: str, name: str, uid: str) -> list[Obj]:
    return [{"apiVersion": api_version, "kind": kind, "name": name, "uid": uid, "controller": True, "blockOwnerDeletion": True}]


def namespace_objects(plan: LabPlan) -> list[Obj]:
    """v1 Namespaces with their labels and the implicit kubernetes.io/metadata.name label."""
    out = []
    for ns in plan.spec.namespaces:
        labels = {**ns.labels, "kubernetes.io/metadata.name": ns.name}
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": _meta(ns.name, None, uid_for("ns", ns.name), labels=labels),
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            }
        )
    return out


def node_object(plan: LabPlan, node: NodePlan) -> Obj:
    """A v1 Node: Ready, its fabric address, its pod CIDR, flannel's annotations in VXLAN mode."""
    annotations: dict[str, str] = {"kubereach.io/lab-netns": node.netns}
    if plan.options.cni == "flannel-vxlan":
        annotations |= {
            "flannel.alpha.coreos.com/backend-type": "vxlan",
            "flannel.alpha.coreos.com/backend-data": f'{{"VNI":1,"VtepMAC":"{node.vtep_mac}"}}',
            "flannel.alpha.coreos.com/public-ip": node.ip,
        }
    labels = {
        "kubernetes.io/hostname": node.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node-role.kubernetes.io/worker": "",
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": _meta(node.name, None, uid_for("node", node.name), labels=labels, annotations=annotations),
        "spec": {"podCIDR": node.pod_cidr, "podCIDRs": [node.pod_cidr]},
        "status": {
            "addresses": [{"type": "InternalIP", "address": node.ip}, {"type": "Hostname", "address": node.name}],
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "kubelet is posting ready status",
                    "lastHeartbeatTime": _now(),
                    "lastTransitionTime": _now(),
                }
            ],
            "nodeInfo": {
                "kernelVersion": KERNEL_VERSION,
                "kubeletVersion": "v1.31.0",
                "kubeProxyVersion": "v1.31.0",
                "containerRuntimeVersion": "containerd://1.7.0",
                "osImage": "kubereach lab",
                "operatingSystem": "linux",
                "architecture": "amd64",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        },
    }


def _container_ports(pod: PodPlan) -> list[Obj]:
    ports = []
    for p in pod.ports:
        port: Obj = {"containerPort": p.port, "protocol": p.protocol}
        if pod.host_network:
            port["hostPort"] = p.port  # the API's default for a host-network pod
        if p.name:
            port["name"] = p.name
        ports.append(port)
    return ports


def pod_object(pod: PodPlan, owner_uid: str, api_version: str) -> Obj:
    """A v1 Pod, Running and Ready, with its IP and its node."""
    ready = [
        {"type": t, "status": "True", "lastTransitionTime": _now()}
        for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")
    ]
    container_name = pod.workload_name
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _meta(
            pod.name,
            pod.namespace,
            pod.uid,
            labels=dict(pod.labels),
            annotations={"kubereach.io/lab-netns": pod.netns},
            ownerReferences=_owner(pod.owner_kind, api_version, pod.owner_name, owner_uid),
        ),
        "spec": {
            "nodeName": pod.node,
            "containers": [
                {"name": container_name, "image": f"registry.local/{container_name}:lab", "ports": _container_ports(pod)}
            ],
            "restartPolicy": "Always",
            # The cluster DNS's own pods resolve through the node's resolver, as CoreDNS's Deployment sets.
            "dnsPolicy": pod.dns_policy,
            **({"hostNetwork": True} if pod.host_network else {}),
        },
        "status": {
            "phase": "Running",
            "podIP": pod.ip,
            "podIPs": [{"ip": pod.ip}],
            "hostIP": "",
            "conditions": ready,
            "containerStatuses": [
                {
                    "name": container_name,
                    "ready": True,
                    "restartCount": 0,
                    "started": True,
                    "image": f"registry.local/{container_name}:lab",
                    "imageID": "",
                    "state": {"running": {"startedAt": _now()}},
                }
            ],
            "startTime": _now(),
        },
    }


def _template(labels: dict[str, str], pods: list[PodPlan]) -> Obj:
    first = pods[0] if pods else None
    containers = (
        [{"name": first.workload_name, "image": f"registry.local/{first.workload_name}:lab", "ports": _container_ports(first)}]
        if first
        else []
    )
    spec: Obj = {"containers": containers}
    if first is not None and first.host_network:
        spec |= {"hostNetwork": True, "dnsPolicy": first.dns_policy}
    return {"metadata": {"labels": labels}, "spec": spec}


def workload_objects(plan: LabPlan) -> list[Obj]:
    """Deployments (with their ReplicaSets), StatefulSets, DaemonSets and their pods."""
    out: list[Obj] = []
    node_ip = {n.name: n.ip for n in plan.nodes}
    for w in plan.spec.workloads:
        pods = [
            p
            for p in (*plan.pods, *plan.host_pods)
            if p.namespace == w.namespace and p.workload_name == w.name and p.workload_kind == w.kind
        ]
        selector = {"matchLabels": dict(w.labels)}
        status = {"replicas": len(pods), "readyReplicas": len(pods), "availableReplicas": len(pods), "observedGeneration": 1}
        w_uid = uid_for(w.kind, w.namespace, w.name)
        if w.kind == "Deployment":
            out.append(
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": _meta(w.name, w.namespace, w_uid, labels=dict(w.labels)),
                    "spec": {"replicas": w.replicas, "selector": selector, "template": _template(dict(w.labels), pods)},
                    "status": {**status, "updatedReplicas": len(pods)},
                }
            )
            if pods:
                rs_name = pods[0].owner_name
                rs_labels = {**w.labels, "pod-template-hash": rs_name.rsplit("-", 1)[1]}
                rs_uid = uid_for("ReplicaSet", w.namespace, rs_name)
                out.append(
                    {
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "metadata": _meta(
                            rs_name,
                            w.namespace,
                            rs_uid,
                            labels=rs_labels,
                            ownerReferences=_owner("Deployment", "apps/v1", w.name, w_uid),
                        ),
                        "spec": {
                            "replicas": w.replicas,
                            "selector": {"matchLabels": rs_labels},
                            "template": _template(rs_labels, pods),
                        },
                        "status": {**status, "fullyLabeledReplicas": len(pods)},
                    }
                )
                owner_uid = rs_uid
        else:
            out.append(
                {
                    "apiVersion": "apps/v1",
                    "kind": w.kind,
                    "metadata": _meta(w.name, w.namespace, w_uid, labels=dict(w.labels)),
                    "spec": (
                        {
                            "replicas": w.replicas,
                            "selector": selector,
                            "serviceName": w.name,
                            "template": _template(dict(w.labels), pods),
                        }
                        if w.kind == "StatefulSet"
                        else {"selector": selector, "template": _template(dict(w.labels), pods)}
                    ),
                    "status": status
                    if w.kind == "StatefulSet"
                    else {
                        "currentNumberScheduled": len(pods),
                        "desiredNumberScheduled": len(pods),
                        "numberMisscheduled": 0,
                        "numberReady": len(pods),
                    },
                }
            )
            owner_uid = w_uid
        for pod in pods:
            obj = pod_object(pod, owner_uid, "apps/v1")
            if w.kind == "StatefulSet":
                # The StatefulSet controller names each pod's host after it, in the governing Service's domain.
                obj["spec"]["hostname"] = pod.name
                obj["spec"]["subdomain"] = w.name
            obj["status"]["hostIP"] = node_ip[pod.node]
            obj["status"]["hostIPs"] = [{"ip": node_ip[pod.node]}]
            out.append(obj)
    return out


def agent_objects(plan: LabPlan, agent_addresses: dict[str, str]) -> list[Obj]:
    """The kubereach agent DaemonSet and its pods: hostNetwork, one per node.

    In the lab each agent listens on 127.0.0.1 in the root namespace; the pod carries that address in
    the `kubereach.io/agent-address` annotation (in production the bot dials podIP:port).
    """
    labels = {"app.kubernetes.io/name": "kubereach-agent", "app.kubernetes.io/component": "agent"}
    ds_uid = uid_for("DaemonSet", AGENT_NAMESPACE, AGENT_DAEMONSET)
    container = {
        "name": "agent",
        "image": AGENT_IMAGE,
        "ports": [{"name": "grpc", "containerPort": AGENT_PORT, "protocol": "TCP"}],
    }
    out: list[Obj] = [
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": _meta(AGENT_DAEMONSET, AGENT_NAMESPACE, ds_uid, labels=labels),
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    # as the chart's template: real pods made from it get this dnsPolicy
                    "spec": {"hostNetwork": True, "dnsPolicy": "ClusterFirstWithHostNet", "containers": [container]},
                },
            },
            "status": {
                "currentNumberScheduled": len(plan.nodes),
                "desiredNumberScheduled": len(plan.nodes),
                "numberMisscheduled": 0,
                "numberReady": len(plan.nodes),
            },
        }
    ]
    for node in plan.nodes:
        name = f"{AGENT_DAEMONSET}-{hashlib.sha256(node.name.encode()).hexdigest()[:5]}"
        pod_labels = {**labels, "controller-revision-hash": "lab"}
        annotations = {"kubereach.io/agent-address": agent_addresses.get(node.name, "")}
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": _meta(
                    name,
                    AGENT_NAMESPACE,
                    uid_for("pod", AGENT_NAMESPACE, name),
                    labels=pod_labels,
                    annotations=annotations,
                    ownerReferences=_owner("DaemonSet", "apps/v1", AGENT_DAEMONSET, ds_uid),
                ),
                "spec": {
                    "nodeName": node.name,
                    "hostNetwork": True,
                    "containers": [container],
                    "dnsPolicy": "ClusterFirstWithHostNet",
                },
                "status": {
                    "phase": "Running",
                    "podIP": node.ip,
                    "podIPs": [{"ip": node.ip}],
                    "hostIP": node.ip,
                    "hostIPs": [{"ip": node.ip}],
                    "conditions": [{"type": "Ready", "status": "True"}],
                },
            }
        )
    return out


def service_object(svc: ServicePlan) -> Obj:
    """A v1 Service with its ClusterIP and ports."""
    ports = []
    for i, p in enumerate(svc.ports):
        port: Obj = {"port": p.port, "protocol": p.protocol, "targetPort": p.target_port if p.target_port is not None else p.port}
        if p.name:
            port["name"] = p.name
        if svc.type in ("NodePort", "LoadBalancer"):
            port["nodePort"] = p.node_port or 30000 + (int(hashlib.sha256(f"{svc.key}{i}".encode()).hexdigest(), 16) % 2768)
        ports.append(port)
    spec: Obj = {
        "type": svc.type,
        "clusterIP": svc.cluster_ip,
        "clusterIPs": [svc.cluster_ip],
        "ports": ports,
        "sessionAffinity": svc.session_affinity,
        "ipFamilies": ["IPv4"],
        "ipFamilyPolicy": "SingleStack",
        "internalTrafficPolicy": svc.internal_traffic_policy,
    }
    if svc.type in ("NodePort", "LoadBalancer"):
        spec["externalTrafficPolicy"] = svc.external_traffic_policy
    if svc.type == "LoadBalancer":
        spec["allocateLoadBalancerNodePorts"] = True
        if svc.external_traffic_policy == "Local":
            digest = hashlib.sha256(f"{svc.key}/healthcheck".encode()).hexdigest()
            spec["healthCheckNodePort"] = 30000 + int(digest, 16) % 2768
    if svc.external_ips:
        spec["externalIPs"] = list(svc.external_ips)
    if svc.selector is not None:
        spec["selector"] = dict(svc.selector)
    if svc.external_name is not None:
        spec = {"type": "ExternalName", "externalName": svc.external_name, "ports": ports, "sessionAffinity": "None"}
    elif svc.cluster_ip == "None":
        spec["clusterIPs"] = ["None"]
    # The lab plays the cloud's load-balancer controller: the ingress IP is assigned up front and
    # routed to the nodes by the lab's router (lab.outside).
    lb = {"ingress": [{"ip": svc.load_balancer_ip, "ipMode": "VIP"}]} if svc.load_balancer_ip else {}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(svc.name, svc.namespace, svc.uid),
        "spec": spec,
        "status": {"loadBalancer": lb},
    }


def policy_objects(plan: LabPlan) -> list[Obj]:
    """The spec's NetworkPolicies as they are, with uids."""
    out = []
    for policy in plan.spec.network_policies:
        meta = dict(policy["metadata"])
        obj = {
            **policy,
            "metadata": {**meta, "uid": uid_for("netpol", meta["namespace"], meta["name"]), "creationTimestamp": _now()},
        }
        out.append(obj)
    return out


def seed_store(store: Store, objects: Iterable[Obj]) -> list[Obj]:
    """Create `objects` in order; every ownerReference gets the uid the store gave its owner.

    The API server assigns uids itself, so the uids the plan computes are only placeholders: an
    owner must come before its dependents.
    """
    uids: dict[tuple[str, str, str], str] = {}
    created: list[Obj] = []
    for obj in objects:
        meta = obj.get("metadata") or {}
        for ref in meta.get("ownerReferences") or []:
            actual = uids.get((ref.get("kind", ""), meta.get("namespace") or "", ref.get("name", "")))
            if actual is not None:
                ref["uid"] = actual
        stored = store.create(obj)
        stored_meta = stored["metadata"]
        uids[(stored["kind"], stored_meta.get("namespace") or "", stored_meta["name"])] = stored_meta["uid"]
        created.append(stored)
    return created


COREFILE = """.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30
    loop
    reload
    loadbalance
}
"""
"""The Corefile kubeadm writes: names outside the cluster go to the resolver in the CoreDNS pods'
resolv.conf (`dnsPolicy: Default`: the node's, which in the lab names the outside world's resolver)."""


def coredns_config_map() -> Obj:
    """kube-system/coredns, the ConfigMap CoreDNS reads its Corefile from."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta("coredns", "kube-system", uid_for("ConfigMap", "kube-system", "coredns")),
        "data": {"Corefile": COREFILE},
    }


def seed_objects(plan: LabPlan, agent_addresses: dict[str, str]) -> list[Obj]:
    """Every object the lab's API server starts with, namespaces first."""
    nodes = [node_object(plan, n) for n in plan.nodes]
    return [
        *namespace_objects(plan),
        *nodes,
        *[service_object(s) for s in plan.services],
        *workload_objects(plan),
        *agent_objects(plan, agent_addresses),
        *policy_objects(plan),
        *([coredns_config_map()] if any(p.role == "dns" for p in plan.pods) else []),
    ]
