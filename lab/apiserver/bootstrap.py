"""What kube-apiserver writes into a fresh cluster by itself: the ServiceCIDR and `default/kubernetes`.

kube-apiserver creates the default ServiceCIDR object (named `kubernetes`, its --service-cluster-ip-range),
the `default/kubernetes` Service (the first address of that range, port 443 `https`) and, through its
endpoint reconciler, that Service's EndpointSlice (named `kubernetes`, labelled with the service
name and no managed-by label, the API server's advertised address and secure port). kube-proxy
1.36 needs the ServiceCIDRs to drop traffic to unallocated ClusterIPs; clients expect the Service.

The lab's API server listens on 127.0.0.1 only, which a real API server may not advertise and lab
pods cannot reach; the endpoint therefore names the control-plane address the caller gives (the
lab: its first node, as in a kubeadm cluster whose API server runs there) and nothing in the lab
answers on it.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from lab.apiserver.errors import AlreadyExists
from lab.apiserver.store import Store, now_timestamp

KUBERNETES_SERVICE = "kubernetes"
SECURE_PORT = 6443


def bootstrap_cluster_objects(store: Store, *, service_cidr: str, advertise_address: str, secure_port: int = SECURE_PORT) -> None:
    """Create the ServiceCIDR, the `default/kubernetes` Service and its EndpointSlice (idempotent)."""
    network = ipaddress.ip_network(service_cidr)
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "ServiceCIDR",
            "metadata": {"name": KUBERNETES_SERVICE},
            "spec": {"cidrs": [str(network)]},
            "status": {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "",
                        "message": "Kubernetes Service CIDR is ready",
                        "lastTransitionTime": now_timestamp(),
                    }
                ]
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": KUBERNETES_SERVICE,
                "namespace": "default",
                "labels": {"component": "apiserver", "provider": "kubernetes"},
            },
            "spec": {
                "type": "ClusterIP",
                "clusterIP": str(network.network_address + 1),
                "ports": [{"name": "https", "protocol": "TCP", "port": 443, "targetPort": secure_port}],
                "sessionAffinity": "None",
            },
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": KUBERNETES_SERVICE,
                "namespace": "default",
                "labels": {"kubernetes.io/service-name": KUBERNETES_SERVICE},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [advertise_address], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "protocol": "TCP", "port": secure_port}],
        },
    ]
    for obj in objects:
        try:
            store.create(obj)
        except AlreadyExists:
            continue
