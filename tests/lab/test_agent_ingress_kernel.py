"""GetServiceNat with an `entry` against real rules in throwaway namespaces (prefix kx), over mTLS.

The lab kube-proxy's rules for node-2 (no frontend pod there; tests/unit/fixtures/kube-proxy-ingress)
are loaded with `iptables-restore` or `nft -f` into a namespace that holds node-2's address on a veth
link; the real agent, pointed at that namespace, reads the kernel's rules and answers how a client
outside the cluster is dispatched through a NodePort, an external IP and a load balancer IP.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator

import grpc
import pytest

from kubereach.agent.v1 import agent_pb2 as pb
from kubereach.agent.v1 import agent_pb2_grpc as pb_grpc
from lab.kubeproxy.iptables import render_iptables
from lab.kubeproxy.nftables import render_nftables
from nodeagent.checks.nat import KubeProxyTables
from nodeagent.checks.nat.nft_netlink import entry_nat_on_demand
from nodeagent.netns import netns_path
from tests.unit.agent_support import Pki, client_channel, make_pki, running_agent, tls_settings
from tests.unit.ingress_objects import EXTERNAL_IP, HEALTH_PORT, LB_IP, NODE_IPS, node, services, slices

pytestmark = pytest.mark.lab


def in_ns(netns: str, *argv: str, stdin: str | None = None) -> str:
    return subprocess.run(["ip", "netns", "exec", netns, *argv], input=stdin, capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("kx-pki"))


@pytest.fixture(params=["iptables", "nftables"])
def stub(request: pytest.FixtureRequest, pki: Pki) -> Iterator[tuple[str, pb_grpc.NodeAgentServiceStub]]:
    netns = f"kx-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        in_ns(netns, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
        in_ns(netns, "ip", "addr", "add", f"{NODE_IPS['node-2']}/24", "dev", "eth0")
        in_ns(netns, "ip", "link", "set", "eth0", "up")
        if request.param == "iptables":
            in_ns(
                netns, "iptables-restore", "--noflush", stdin=render_iptables(services(), slices(), node("node-2")).restore_input
            )
        else:
            in_ns(netns, "nft", "-f", "-", stdin=render_nftables(services(), slices(), node("node-2")).script)
        with (
            running_agent(tls_settings(pki, node="kx-node-2", host_netns=netns)) as agent,
            client_channel(pki, agent.port) as channel,
        ):
            yield request.param, pb_grpc.NodeAgentServiceStub(channel)
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)


def ask(stub: pb_grpc.NodeAgentServiceStub, entry: pb.Entry.ValueType, address: str, port: int) -> pb.ServiceNat:
    request = pb.GetServiceNatRequest(vip=address, port=port, protocol=pb.PROTOCOL_TCP, entry=entry)
    response: pb.GetServiceNatResponse = stub.GetServiceNat(request, timeout=20)
    return response.service


def test_a_local_policy_nodeport_on_a_node_without_endpoints_reads_as_dropped(
    stub: tuple[str, pb_grpc.NodeAgentServiceStub],
) -> None:
    mode, agent = stub
    nat = ask(agent, pb.ENTRY_NODE_PORT, NODE_IPS["node-2"], 30080)
    assert (nat.mode, nat.programmed, nat.entry, nat.external_policy) == (mode, True, "nodeport", "Local")
    assert list(nat.endpoints) == [] and nat.no_endpoints_action == "DROP"
    assert nat.service_name == "shop/frontend-nodeport:http"


def test_external_and_load_balancer_ips_read_the_same_way(stub: tuple[str, pb_grpc.NodeAgentServiceStub]) -> None:
    _, agent = stub
    for entry, address in ((pb.ENTRY_EXTERNAL_IP, EXTERNAL_IP), (pb.ENTRY_LOAD_BALANCER, LB_IP)):
        nat = ask(agent, entry, address, 80)
        assert nat.programmed and nat.external_policy == "Local" and nat.no_endpoints_action == "DROP", address


def test_a_cluster_policy_nodeport_reaches_the_endpoint_on_another_node(stub: tuple[str, pb_grpc.NodeAgentServiceStub]) -> None:
    _, agent = stub
    nat = ask(agent, pb.ENTRY_NODE_PORT, NODE_IPS["node-2"], 30090)
    assert nat.external_policy == "Cluster" and [(e.ip, e.port) for e in nat.endpoints] == [("10.244.2.4", 8080)]


def test_the_health_check_node_port_accept_is_read_in_iptables_mode(stub: tuple[str, pb_grpc.NodeAgentServiceStub]) -> None:
    mode, agent = stub
    nat = ask(agent, pb.ENTRY_NODE_PORT, NODE_IPS["node-2"], 30081)
    assert nat.health_check_node_port == (HEALTH_PORT if mode == "iptables" else 0)


def test_a_nodeport_on_an_address_the_node_does_not_have_is_not_programmed(
    stub: tuple[str, pb_grpc.NodeAgentServiceStub],
) -> None:
    _, agent = stub
    assert not ask(agent, pb.ENTRY_NODE_PORT, NODE_IPS["node-1"], 30080).programmed


def test_an_unknown_entry_kind_is_refused_before_any_rule_is_read(stub: tuple[str, pb_grpc.NodeAgentServiceStub]) -> None:
    _, agent = stub
    with pytest.raises(grpc.RpcError) as refused:
        ask(agent, 9, NODE_IPS["node-2"], 30080)  # type: ignore[arg-type]
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "entry must be one of" in (refused.value.details() or "")


@pytest.mark.parametrize("mode", ["iptables", "nftables"])
def test_a_cold_lookup_read_chain_by_chain_answers_as_the_full_dump(mode: str) -> None:
    """The first lookup reads only what its walk visits (iptables chains with `iptables -S`, nftables
    elements and chains over netlink); once the dump is cached the same question is answered from it,
    the same way."""
    netns = f"kx-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        in_ns(netns, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
        in_ns(netns, "ip", "addr", "add", f"{NODE_IPS['node-2']}/24", "dev", "eth0")
        if mode == "iptables":
            in_ns(
                netns, "iptables-restore", "--noflush", stdin=render_iptables(services(), slices(), node("node-2")).restore_input
            )
        else:
            in_ns(netns, "nft", "-f", "-", stdin=render_nftables(services(), slices(), node("node-2")).script)
        tables, path = KubeProxyTables(), netns_path(netns)
        asked = [
            ("nodeport", NODE_IPS["node-2"], 30080),
            ("external-ip", EXTERNAL_IP, 80),
            ("nodeport", NODE_IPS["node-2"], 30090),
        ]
        cold = []
        for entry, address, port in asked:
            tables.clear_cache()
            if mode == "iptables":
                cold.append(tables.entry_nat(path, netns, entry, address, port, "TCP"))
            else:  # what a cold lookup answers with, read over netlink without running nft
                read = entry_nat_on_demand(path, entry, address, port, "TCP", address == NODE_IPS["node-2"])
                assert read is not None, (entry, address)
                cold.append(read)
        if mode == "iptables":
            tables.iptables_snapshot(path)
        else:
            tables.clear_cache()
            tables.list_service_nat(path, netns)  # loads the whole table into the cache
        warm = [tables.entry_nat(path, netns, entry, address, port, "TCP") for entry, address, port in asked]
        assert [(n.mode, n.endpoints, n.no_endpoints_action, n.external_policy) for n in cold] == [
            (mode, n.endpoints, n.no_endpoints_action, n.external_policy) for n in warm
        ]
        assert cold[0].no_endpoints_action == "DROP" and cold[2].endpoints
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)
