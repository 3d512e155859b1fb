"""kube-proxy's rules in a real node namespace: connects to a VIP reach pods, REJECT, stale chains go.

Topology per test (all names carry the `kp` prefix, all addresses live only in these namespaces):
node netns with bridge br0 10.244.1.1/24, a veth pair kept inside it routing the service CIDR
10.96.0.0/12 (the node's stand-in for its default route; no dummy driver here), ip_forward=1; pod netns A (10.244.1.2) and
B (10.244.1.3) on the bridge ports in hairpin mode (as kubelet sets them, so a pod can reach itself
through its service), each with a TCP server on 8080 that answers with its pod's name.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from lab.kubeproxy import names
from lab.kubeproxy.apply import RuleApplyError, apply_nftables, sync_iptables, sync_nftables
from lab.kubeproxy.model import NFT_LAYOUTS, NodeContext
from lab.kubeproxy.nftables import NftablesRuleset
from nodeagent.netns import netns_path, socket_in_netns
from tests.unit.lab.kubeproxy_objects import endpoint, endpoint_slice, service

pytestmark = pytest.mark.lab

VIP = "10.96.0.50"
EMPTY_VIP = "10.96.0.51"
POD_IPS = {"a": "10.244.1.2", "b": "10.244.1.3"}
SERVER_PORT = 8080
NODE_NAME = "kp-node"
"""The node's name in the EndpointSlices: pods A and B run on it (kube-proxy's hairpin set holds local endpoints)."""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


def netns_run(ns: str, *args: str) -> str:
    done = subprocess.run(["ip", "netns", "exec", ns, *args], check=True, capture_output=True, text=True, timeout=30)
    return done.stdout


class PodServer:
    """A TCP server inside a pod namespace that sends the pod's name to every client."""

    def __init__(self, ns: str, pod: str) -> None:
        self.pod = pod
        self.sock = socket_in_netns(netns_path(ns), socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("0.0.0.0", SERVER_PORT))
        self.sock.listen(16)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.sendall(self.pod.encode())

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(timeout=5)


@dataclass
class Node:
    """The namespaces of one simulated node and its two pods."""

    node: str
    pods: dict[str, str]
    context: NodeContext

    def connect(self, from_pod: str, address: str, port: int) -> str:
        """TCP connect from a pod to address:port; return what the server sent."""
        client = socket_in_netns(netns_path(self.pods[from_pod]), socket.AF_INET, socket.SOCK_STREAM)
        with client:
            client.settimeout(5)
            client.connect((address, port))
            return client.recv(64).decode()


@contextmanager
def lab_node() -> Iterator[Node]:
    """Build the node and pod namespaces and the pod servers; tear everything down on exit."""
    tag = secrets.token_hex(3)
    node_ns = f"kp-{tag}-node"
    pods = {"a": f"kp-{tag}-pa", "b": f"kp-{tag}-pb"}
    created: list[str] = []
    servers: list[PodServer] = []
    try:
        for ns in (node_ns, *pods.values()):
            ip("netns", "add", ns)
            created.append(ns)
        ip("-n", node_ns, "link", "set", "lo", "up")
        ip("-n", node_ns, "link", "add", "br0", "type", "bridge")
        ip("-n", node_ns, "addr", "add", "10.244.1.1/24", "dev", "br0")
        ip("-n", node_ns, "link", "set", "br0", "up")
        ip("-n", node_ns, "link", "add", "kpsvc0", "type", "veth", "peer", "name", "kpsvc1")
        ip("-n", node_ns, "link", "set", "kpsvc1", "up")
        ip("-n", node_ns, "link", "set", "kpsvc0", "up")
        ip("-n", node_ns, "route", "add", "10.96.0.0/12", "dev", "kpsvc0")
        netns_run(node_ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for key, pod_ns in pods.items():
            host_if = f"kpveth{key}"
            ip("-n", node_ns, "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", pod_ns)
            ip("-n", node_ns, "link", "set", host_if, "master", "br0", "up")
            # As kubelet / the CNI bridge plugin do: a pod reaching itself through a VIP is hairpinned.
            ip("-n", node_ns, "link", "set", host_if, "type", "bridge_slave", "hairpin", "on")
            ip("-n", pod_ns, "link", "set", "lo", "up")
            ip("-n", pod_ns, "addr", "add", f"{POD_IPS[key]}/24", "dev", "eth0")
            ip("-n", pod_ns, "link", "set", "eth0", "up")
            ip("-n", pod_ns, "route", "add", "10.96.0.0/12", "via", "10.244.1.1")
            servers.append(PodServer(pod_ns, f"pod-{key}"))
        context = NodeContext(
            node_name=NODE_NAME, node_ip="10.244.1.1", cluster_cidr="10.244.0.0/16", service_cidrs=("10.96.0.0/12",)
        )
        yield Node(node_ns, pods, context)
    finally:
        for server in servers:
            server.close()
        for ns in reversed(created):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30, check=False)


@pytest.fixture
def node() -> Iterator[Node]:
    with lab_node() as built:
        yield built


def web_service(cluster_ip: str = VIP, name: str = "web") -> dict[str, Any]:
    return service("kp", name, cluster_ip, port=80, port_name="http")


def web_slice(*pods: str, name: str = "web") -> dict[str, Any]:
    return endpoint_slice("kp", name, [endpoint(POD_IPS[p], node=NODE_NAME) for p in pods], port=SERVER_PORT, port_name="http")


def sep(pod: str) -> str:
    return names.iptables_endpoint_chain("kp/web:http", "tcp", f"{POD_IPS[pod]}:{SERVER_PORT}")


def nft_endpoint_chain(pod: str) -> str:
    return names.NFT_ENDPOINT_PREFIX + names.nft_endpoint_chain_base("kp", "web", "tcp", "http", f"{POD_IPS[pod]}:{SERVER_PORT}")


def iptables_save(ns: str) -> str:
    return "\n".join(ln for ln in netns_run(ns, "iptables-save").splitlines() if not ln.startswith("#"))


def nft_service_chain(ns: str) -> str:
    """The text of the web service's nftables service chain."""
    chain = names.NFT_SERVICE_PREFIX + names.nft_service_chain_base("kp", "web", "tcp", "http")
    return netns_run(ns, "nft", "list", "chain", "ip", "kube-proxy", chain)


def nft_chain_names(ns: str) -> set[str]:
    doc = json.loads(netns_run(ns, "nft", "-j", "list", "table", "ip", "kube-proxy"))
    return {item["chain"]["name"] for item in doc["nftables"] if "chain" in item}


# --- iptables mode -----------------------------------------------------------------------------


def test_iptables_vip_connect_reaches_an_endpoint_and_chains_are_named_as_kube_proxy(node: Node) -> None:
    sync_iptables(node.node, [web_service()], [web_slice("a", "b")], node.context)
    answers = {node.connect("a", VIP, 80) for _ in range(8)}
    assert answers and answers <= {"pod-a", "pod-b"}
    saved = iptables_save(node.node)
    assert names.iptables_service_chain("kp/web:http", "tcp") in saved
    assert sep("a") in saved and sep("b") in saved
    assert f"--to-destination {POD_IPS['b']}:{SERVER_PORT}" in saved


def test_iptables_sync_is_idempotent_and_never_duplicates_jumps(node: Node) -> None:
    sync_iptables(node.node, [web_service()], [web_slice("a", "b")], node.context)
    first = iptables_save(node.node)
    sync_iptables(node.node, [web_service()], [web_slice("a", "b")], node.context)
    assert iptables_save(node.node) == first
    assert first.count('-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES') == 1


def test_iptables_service_without_endpoints_refuses_connections(node: Node) -> None:
    sync_iptables(node.node, [web_service(), web_service(EMPTY_VIP, "empty")], [web_slice("b")], node.context)
    with pytest.raises(ConnectionRefusedError):
        node.connect("a", EMPTY_VIP, 80)
    assert "kp/empty:http has no endpoints" in iptables_save(node.node)
    assert node.connect("a", VIP, 80) == "pod-b"


def test_iptables_endpoint_change_replaces_the_old_sep_chain(node: Node) -> None:
    sync_iptables(node.node, [web_service()], [web_slice("a")], node.context)
    assert sep("a") in iptables_save(node.node)
    ruleset = sync_iptables(node.node, [web_service()], [web_slice("b")], node.context)
    saved = iptables_save(node.node)
    assert sep("a") in ruleset.deleted_chains
    assert sep("a") not in saved
    assert sep("b") in saved
    assert node.connect("a", VIP, 80) == "pod-b"


def test_iptables_node_port_reaches_an_endpoint(node: Node) -> None:
    svc = service("kp", "web", VIP, port=80, port_name="http", node_port=30080)
    sync_iptables(node.node, [svc], [web_slice("b")], node.context)
    assert node.connect("a", "10.244.1.1", 30080) == "pod-b"


def test_iptables_node_port_answers_on_localhost_as_kube_proxys_default(node: Node) -> None:
    # --iptables-localhost-nodeports (default true): route_localnet=1 lets 127.0.0.1:NODEPORT be DNATed out.
    svc = service("kp", "web", VIP, port=80, port_name="http", node_port=30080)
    sync_iptables(node.node, [svc], [web_slice("b")], node.context)
    client = socket_in_netns(netns_path(node.node), socket.AF_INET, socket.SOCK_STREAM)
    with client:
        client.settimeout(5)
        client.connect(("127.0.0.1", 30080))
        assert client.recv(64).decode() == "pod-b"


# --- nftables mode -----------------------------------------------------------------------------


@pytest.mark.parametrize("layout", NFT_LAYOUTS)
def test_nftables_vip_connect_reaches_an_endpoint_and_chains_are_named_as_kube_proxy(node: Node, layout: str) -> None:
    ctx = dataclasses.replace(node.context, nft_layout=layout)
    sync_nftables(node.node, [web_service()], [web_slice("a", "b")], ctx)
    answers = {node.connect("a", VIP, 80) for _ in range(8)}
    assert answers and answers <= {"pod-a", "pod-b"}
    chains = nft_chain_names(node.node)
    assert names.NFT_SERVICE_PREFIX + names.nft_service_chain_base("kp", "web", "tcp", "http") in chains
    assert {"nat-prerouting", "nat-output", "filter-forward", "services"} <= chains
    per_endpoint = {nft_endpoint_chain("a"), nft_endpoint_chain("b"), "mark-for-masquerade"}
    if layout == "endpoint-chains":
        assert per_endpoint <= chains
    else:
        assert not per_endpoint & chains


@pytest.mark.parametrize("layout", NFT_LAYOUTS)
def test_nftables_pod_reaches_itself_through_its_service(node: Node, layout: str) -> None:
    # Hairpin: the only endpoint is the client itself, on this node; without the masquerade (the
    # hairpin-connections set in 1.36, the endpoint chain's mark before) the reply never un-DNATs.
    ctx = dataclasses.replace(node.context, nft_layout=layout)
    sync_nftables(node.node, [web_service()], [web_slice("a")], ctx)
    assert node.connect("a", VIP, 80) == "pod-a"


def test_iptables_pod_reaches_itself_through_its_service(node: Node) -> None:
    sync_iptables(node.node, [web_service()], [web_slice("a")], node.context)
    assert node.connect("a", VIP, 80) == "pod-a"


def test_nftables_service_without_endpoints_refuses_connections(node: Node) -> None:
    sync_nftables(node.node, [web_service(), web_service(EMPTY_VIP, "empty")], [web_slice("b")], node.context)
    with pytest.raises(ConnectionRefusedError):
        node.connect("a", EMPTY_VIP, 80)
    assert node.connect("a", VIP, 80) == "pod-b"


def test_nftables_endpoint_change_replaces_the_old_endpoint_chain(node: Node) -> None:
    ctx = dataclasses.replace(node.context, nft_layout="endpoint-chains")
    sync_nftables(node.node, [web_service()], [web_slice("a")], ctx)
    assert nft_endpoint_chain("a") in nft_chain_names(node.node)
    sync_nftables(node.node, [web_service()], [web_slice("b")], ctx)
    chains = nft_chain_names(node.node)
    assert nft_endpoint_chain("a") not in chains
    assert nft_endpoint_chain("b") in chains
    assert node.connect("a", VIP, 80) == "pod-b"


def test_nftables_endpoint_change_rewrites_the_dnat_map(node: Node) -> None:
    sync_nftables(node.node, [web_service()], [web_slice("a")], node.context)
    assert f"{POD_IPS['a']} . {SERVER_PORT}" in nft_service_chain(node.node)
    sync_nftables(node.node, [web_service()], [web_slice("b")], node.context)
    rules = nft_service_chain(node.node)
    assert f"{POD_IPS['a']} . {SERVER_PORT}" not in rules
    assert f"numgen random mod 1 map {{ 0 : {POD_IPS['b']} . {SERVER_PORT} }}" in rules
    assert node.connect("a", VIP, 80) == "pod-b"


def test_invalid_rules_raise_with_the_tools_message(node: Node) -> None:
    with pytest.raises(RuleApplyError) as caught:
        apply_nftables(node.node, NftablesRuleset(script="add rule ip kube-proxy nosuchchain drop\n", service_chains=()))
    assert caught.value.tool == "nft"
    assert caught.value.stderr.strip()
    assert os.path.exists(netns_path(node.node))


def rich_cluster() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every feature the renderers handle, for the kernel to accept or refuse."""
    local_lb = service(
        "kp",
        "lb",
        "10.96.0.60",
        port=443,
        port_name="https",
        node_port=30443,
        externalTrafficPolicy="Local",
        type="LoadBalancer",
        externalIPs=["192.0.2.10"],
    )
    local_lb["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.20"}]}}
    services = [
        web_service(),
        service("kp", "sticky", "10.96.0.61", port=80, port_name="http", affinity_seconds=600),
        service("kp", "udp", "10.96.0.62", port=53, port_name="dns", protocol="UDP"),
        service("kp", "nothing", "10.96.0.63", port=80, port_name="http", node_port=30081),
        service("kp", "internal", "10.96.0.64", port=80, port_name="http", internalTrafficPolicy="Local"),
        local_lb,
        service("kp", "headless", "None"),
    ]
    slices = [
        web_slice("a", "b"),
        endpoint_slice("kp", "sticky", [endpoint(POD_IPS["a"])], port=SERVER_PORT, port_name="http"),
        endpoint_slice("kp", "udp", [endpoint(POD_IPS["b"])], port=5353, port_name="dns", protocol="UDP"),
        endpoint_slice("kp", "internal", [endpoint(POD_IPS["b"], node="elsewhere")], port=SERVER_PORT, port_name="http"),
        endpoint_slice(
            "kp", "lb", [endpoint(POD_IPS["a"], node="kp-node"), endpoint(POD_IPS["b"])], port=SERVER_PORT, port_name="https"
        ),
    ]
    return services, slices


def test_every_rendered_feature_is_accepted_by_the_kernel_in_both_modes(node: Node) -> None:
    services, slices = rich_cluster()
    ctx = NodeContext(node_name="kp-node", node_ip="10.244.1.1", cluster_cidr="10.244.0.0/16", service_cidrs=("10.96.0.0/12",))
    sync_iptables(node.node, services, slices, ctx)
    saved = iptables_save(node.node)
    assert names.iptables_local_chain("kp/lb:https", "tcp") in saved
    assert "kp/internal:http has no local endpoints" in saved
    # The sticky service answers through the real kernel.
    assert node.connect("b", "10.96.0.61", 80) == "pod-a"
    for layout in NFT_LAYOUTS:
        sync_nftables(node.node, services, slices, dataclasses.replace(ctx, nft_layout=layout))
        chains = nft_chain_names(node.node)
        assert names.NFT_LOCAL_PREFIX + names.nft_service_chain_base("kp", "lb", "tcp", "https") in chains, layout
        assert node.connect("b", "10.96.0.61", 80) == "pod-a", layout
