"""The sweep's pure parts: which pods are sampled for MTU, and agent replies parsed into node facts."""

from __future__ import annotations

from bot.cluster.models import PodInfo
from bot.digest.sweep import node_sweep, pod_sample, sample_pods_for_mtu
from bot.fleet.client import AgentOutcome
from kubereach.agent.v1 import agent_pb2 as pb


def pod(namespace: str, name: str, node: str, workload: str, *, running: bool = True, host_network: bool = False) -> PodInfo:
    return PodInfo(
        namespace=namespace, name=name, ip=f"10.244.0.{abs(hash(name)) % 250 + 2}", node=node,
        phase="Running" if running else "Pending", ready=running, reason=None, labels={}, container_ports=(),
        owner_kind="ReplicaSet", owner_name=workload, workload_kind="Deployment", workload_name=workload,
        host_network=host_network,
    )  # fmt: skip


PODS = [
    pod("shop", "api-1", "node-1", "api"),
    pod("shop", "api-2", "node-1", "api"),
    pod("shop", "api-3", "node-1", "api"),
    pod("shop", "web-1", "node-1", "web"),
    pod("kube-system", "dns-1", "node-1", "dns"),
    pod("ops", "agent-1", "node-1", "agent", host_network=True),
    pod("ops", "pending-1", "node-1", "pending", running=False),
    pod("shop", "api-4", "node-2", "api"),
]


def test_sample_spreads_over_namespaces_and_workloads_before_taking_seconds() -> None:
    chosen = [p.name for p in sample_pods_for_mtu(PODS, (), per_node=3)]
    assert chosen == ["dns-1", "api-1", "web-1", "api-4"]


def test_sample_skips_host_network_and_pods_that_are_not_running_and_honours_scope() -> None:
    everyone = {p.name for p in sample_pods_for_mtu(PODS, (), per_node=10)}
    assert "agent-1" not in everyone and "pending-1" not in everyone
    assert {p.namespace for p in sample_pods_for_mtu(PODS, ("kube-system",), per_node=10)} == {"kube-system"}


def test_rotating_the_sample_day_by_day_covers_every_pod() -> None:
    seen = {p.name for day in range(5) for p in sample_pods_for_mtu(PODS, (), per_node=1, rotation=day)}
    assert seen == {"api-1", "api-2", "api-3", "web-1", "dns-1", "api-4"}


def _ok(node: str, method: str, payload: object) -> AgentOutcome:
    return AgentOutcome(node, method, True, payload=payload)


def test_agent_replies_become_node_facts() -> None:
    veth = pb.Interface(name="veth1", kind="veth", mtu=1450, master="cni0", admin_up=True, oper_state="UP")
    info = pb.GetNodeInfoResponse(
        node_name="node-1",
        proxy_mode="iptables",
        ip_forward=True,
        conntrack=pb.ConntrackStats(count=262144, max=262144, insert_failed=3, drop=9),
        cni=pb.CniShape(
            bridges=[pb.Bridge(link=pb.Interface(name="cni0", kind="bridge", mtu=1450, admin_up=True), ports=[veth])],
            overlays=[pb.OverlayDevice(link=pb.Interface(name="flannel.1", kind="vxlan", mtu=1450, admin_up=True), vni=1)],
        ),
    )
    nat = pb.ListServiceNatResponse(
        services=[
            pb.ServiceNat(
                vip="10.96.0.20", port=80, protocol="TCP", programmed=True, endpoints=[pb.NatEndpoint(ip="10.244.1.5", port=8080)]
            ),
            pb.ServiceNat(vip="10.96.0.21", port=80, protocol="TCP", no_endpoints_action="REJECT"),
            pb.ServiceNat(vip="10.96.0.22", port=80, protocol="TCP", programmed=True, layout="unknown", unreadable="not read"),
        ]
    )
    filters = pb.GetFilterStateResponse(
        forward_policy="DROP",
        drops=[
            pb.FilterRuleHit(table="filter", chain="FORWARD", rule="-P FORWARD DROP", target="DROP"),
            pb.FilterRuleHit(table="filter", chain="FORWARD", rule="-A FORWARD -d 10.244.1.0/24 -j DROP", target="DROP"),
        ],
    )
    facts = node_sweep(
        "node-1",
        _ok("node-1", "GetNodeInfo", info),
        _ok("node-1", "ListServiceNat", nat),
        _ok("node-1", "GetFilterState", filters),
    )
    assert facts.agent_ok and facts.conntrack is not None
    assert (facts.conntrack.count, facts.conntrack.max, facts.conntrack.drop) == (262144, 262144, 9)
    assert [(b.name, b.mtu) for b in facts.bridges] == [("cni0", 1450)]
    assert [(p.name, p.mtu, p.master) for p in facts.bridge_ports] == [("veth1", 1450, "cni0")]
    assert [(o.name, o.mtu) for o in facts.overlays] == [("flannel.1", 1450)]
    assert facts.nat is not None and facts.nat[0].endpoints == ("10.244.1.5:8080",)
    assert facts.nat[1].no_endpoints_action == "REJECT"
    assert (facts.nat[1].unreadable, facts.nat[2].unreadable) == ("", "not read")
    assert facts.forward_policy == "DROP"
    assert facts.forward_drops == ("filter/FORWARD: -A FORWARD -d 10.244.1.0/24 -j DROP",)


def test_a_silent_agent_is_a_node_without_facts() -> None:
    silent = AgentOutcome("node-3", "GetNodeInfo", False, error="no answer from node-3 within 20.0 s", error_kind="unreachable")
    facts = node_sweep("node-3", silent, None, None)
    assert not facts.agent_ok and facts.agent_error == "no answer from node-3 within 20.0 s" and facts.conntrack is None


def test_locate_pod_reply_gives_the_pod_and_host_veth_mtus() -> None:
    located = pb.LocatePodResponse(
        pod=pb.PodNetwork(
            pod_ip="10.244.1.3",
            interface=pb.Interface(name="eth0", mtu=1500),
            host_peer=pb.HostPeer(link=pb.Interface(name="veth3", mtu=1450)),
        )
    )
    sample = pod_sample(PODS[3], _ok("node-1", "LocatePod", located))
    assert sample is not None and (sample.eth0_mtu, sample.host_veth, sample.host_veth_mtu) == (1500, "veth3", 1450)
    assert pod_sample(PODS[3], AgentOutcome("node-1", "LocatePod", False, error="not found", error_kind="not_found")) is None
