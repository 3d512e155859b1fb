"""The services the ingress-dispatch tests render with the lab's kube-proxy (no tests here).

Three node-facing services of the shop, as the lab's default spec has them, with the traffic policies
that matter for traffic from outside:

- shop/frontend-nodeport: NodePort 30080 and external IP 198.51.100.100, `externalTrafficPolicy:
  Local`; its two frontend pods run on node-1 (10.244.1.3) and node-3 (10.244.3.3), none on node-2;
- shop/web: LoadBalancer 198.51.100.10, NodePort 30081, `Local`, health check node port 31234;
- shop/api: NodePort 30090, `Cluster`, one pod on node-2 (10.244.2.4).
"""

from __future__ import annotations

from typing import Any

from lab.kubeproxy.model import NodeContext
from tests.unit.lab.kubeproxy_objects import endpoint, endpoint_slice, service

NODE_IPS = {"node-1": "10.240.0.11", "node-2": "10.240.0.12", "node-3": "10.240.0.13"}
CLUSTER_CIDR = "10.244.0.0/16"
EXTERNAL_IP = "198.51.100.100"
LB_IP = "198.51.100.10"
HEALTH_PORT = 31234
FRONTENDS = (("10.244.1.3", "node-1"), ("10.244.3.3", "node-3"))


def node(name: str) -> NodeContext:
    """The kube-proxy context of a lab node (IPv4 only, as the fixtures are dumped)."""
    return NodeContext(node_name=name, node_ip=NODE_IPS[name], cluster_cidr=CLUSTER_CIDR, ipv6=False)


def services() -> list[dict[str, Any]]:
    """The three services, as the API serves them."""
    frontend = service("shop", "frontend-nodeport", "10.106.200.1", 80, "http", node_port=30080, externalIPs=[EXTERNAL_IP])
    frontend["spec"]["externalTrafficPolicy"] = "Local"
    web = service("shop", "web", "10.106.200.2", 80, "http", node_port=30081)
    web["spec"].update(type="LoadBalancer", externalTrafficPolicy="Local", healthCheckNodePort=HEALTH_PORT)
    web["status"] = {"loadBalancer": {"ingress": [{"ip": LB_IP}]}}
    api = service("shop", "api", "10.106.200.3", 8080, "http", node_port=30090)
    api["spec"]["externalTrafficPolicy"] = "Cluster"
    return [frontend, web, api]


def slices() -> list[dict[str, Any]]:
    """Their EndpointSlices: every endpoint ready."""
    frontends = [endpoint(ip, node=n) for ip, n in FRONTENDS]
    return [
        endpoint_slice("shop", "frontend-nodeport", frontends, 8080, "http"),
        endpoint_slice("shop", "web", frontends, 8080, "http"),
        endpoint_slice("shop", "api", [endpoint("10.244.2.4", node="node-2")], 8080, "http"),
    ]
