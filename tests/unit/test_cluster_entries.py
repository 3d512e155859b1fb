"""bot.cluster.entries: which Service owns a NodePort or an address, and where an address lies."""

from __future__ import annotations

from ipaddress import ip_address

from bot.cluster.entries import address_owner, missing_entry, node_port_owners, outside_cluster
from bot.cluster.models import NodeInfo, service_info
from bot.parse.models import EntryKind

NODES = [NodeInfo("node-1", "10.240.0.11", "10.244.1.0/24", True), NodeInfo("node-2", "10.240.0.12", "10.244.2.0/24", True)]


def _service(name: str, kind: str, cluster_ip: str, **spec: object) -> dict[str, object]:
    ports = [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP", "nodePort": 30080}]
    status = spec.pop("status", {})
    return {
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"type": kind, "clusterIP": cluster_ip, "ports": ports, **spec},
        "status": status,
    }


WEB = service_info(
    _service(
        "web",
        "LoadBalancer",
        "10.96.4.2",
        externalTrafficPolicy="Local",
        healthCheckNodePort=31234,
        status={"loadBalancer": {"ingress": [{"ip": "198.51.100.10"}, {"hostname": "lb.example.com"}]}},
    )
)
FRONT = service_info(_service("front", "NodePort", "10.100.0.9", externalIPs=["198.51.100.100"]))
API = service_info(
    {"metadata": {"name": "api", "namespace": "shop"}, "spec": {"clusterIP": "10.96.0.20", "ports": [{"port": 80}]}}
)


def test_the_api_fields_of_the_ways_in_are_read() -> None:
    assert (WEB.external_traffic_policy, WEB.health_check_node_port) == ("Local", 31234)
    assert (WEB.load_balancer_ips, WEB.load_balancer_hostnames) == (("198.51.100.10",), ("lb.example.com",))
    assert FRONT.external_ips == ("198.51.100.100",) and FRONT.internal_traffic_policy == "Cluster"
    assert API.type == "ClusterIP" and API.ports[0].node_port is None


def test_owners_of_node_ports_and_addresses() -> None:
    assert [(s.name, p.port) for s, p in node_port_owners([WEB, FRONT, API], 30080, "TCP")] == [("web", 80), ("front", 80)]
    assert node_port_owners([WEB], 30080, "UDP") == []
    owner = address_owner([API, FRONT, WEB], ip_address("198.51.100.10"))
    assert owner is not None and (owner[0].name, owner[1]) == ("web", EntryKind.LOAD_BALANCER)
    external = address_owner([API, FRONT, WEB], ip_address("198.51.100.100"))
    assert external is not None and (external[0].name, external[1]) == ("front", EntryKind.EXTERNAL_IP)
    assert address_owner([API, FRONT, WEB], ip_address("198.51.100.7")) is None


def test_a_missing_way_in_says_why() -> None:
    assert (
        missing_entry(API, EntryKind.NODEPORT)
        == "svc/api in shop is a ClusterIP service: it has no NodePort (only NodePort and LoadBalancer services have one)"
    )
    assert "not a LoadBalancer" in (missing_entry(FRONT, EntryKind.LOAD_BALANCER) or "")
    assert missing_entry(WEB, EntryKind.LOAD_BALANCER) is None and missing_entry(FRONT, EntryKind.EXTERNAL_IP) is None


def test_addresses_outside_the_cluster_ranges() -> None:
    services = [WEB, FRONT, API]
    for inside in ("10.244.2.77", "10.97.1.1", "10.240.0.99"):  # pod CIDR, service range, node network
        assert not outside_cluster(ip_address(inside), NODES, services), inside
    for outside in ("203.0.113.7", "192.168.1.20", "2001:db8::1", "10.1.2.3"):
        assert outside_cluster(ip_address(outside), NODES, services), outside
