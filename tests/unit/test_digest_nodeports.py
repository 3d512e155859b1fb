"""The digest's NodePort section (externalTrafficPolicy Local, nodes without a ready local endpoint)
and its service-NAT comparison on nodes whose dataplane kubereach does not inspect: from API objects
as the API serves them, through `build_digest` and the text people read."""

from __future__ import annotations

from bot.digest.content import build_digest
from bot.digest.models import Change, SectionName, Sweep
from bot.digest.nodeports import local_traffic_services, spec_of
from bot.digest.sweep import node_sweep
from bot.fleet.client import AgentOutcome
from bot.render.digest import digest_text
from kubereach.agent.v1 import agent_pb2 as pb
from tests.unit.test_digest_content import T0, node, problems, stored, sweep


def service(name: str, kind: str, policy: str | None, node_port: int | None) -> dict[str, object]:
    """A v1 Service dict shaped as kube-apiserver serves it."""
    port: dict[str, object] = {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    if node_port is not None:
        port["nodePort"] = node_port
    spec: dict[str, object] = {"type": kind, "clusterIP": "10.96.0.30", "ports": [port], "selector": {"app": name}}
    if policy is not None:
        spec["externalTrafficPolicy"] = policy
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": "shop", "name": name}, "spec": spec}


SPECS = [
    spec_of(service("frontend-nodeport", "NodePort", "Local", 30080)),
    spec_of(service("web", "LoadBalancer", "Local", 30081)),
    spec_of(service("api-nodeport", "NodePort", "Cluster", 30082)),
    spec_of(service("api", "ClusterIP", None, None)),
]
ENDPOINTS = {
    "shop/frontend-nodeport": [("node-1", True), ("node-2", False)],
    "shop/web": [("node-1", True), ("node-2", True), ("node-3", True)],
    "shop/api-nodeport": [("node-1", True)],
}


def _sweep() -> Sweep:
    base = sweep(node("node-1"), node("node-2"), node("node-3"))
    return Sweep(base.cluster, T0, base.nodes, base.services, local_traffic=local_traffic_services(SPECS, ENDPOINTS))


def test_only_local_nodeport_and_load_balancer_services_are_kept_with_their_ready_nodes() -> None:
    kept = {s.key: s for s in local_traffic_services(SPECS, ENDPOINTS)}
    assert set(kept) == {"shop/frontend-nodeport", "shop/web"}
    assert kept["shop/frontend-nodeport"].ready_nodes == ("node-1",)  # node-2's endpoint is not ready
    assert kept["shop/frontend-nodeport"].node_ports == (30080,)


def test_each_node_without_a_ready_local_endpoint_is_a_problem_naming_the_nodeport() -> None:
    digest = build_digest(_sweep(), None, None)
    section = digest.section(SectionName.NODEPORTS)
    assert problems(digest, SectionName.NODEPORTS) == {
        "nodeport_local:shop/frontend-nodeport:node-2": Change.NEW,
        "nodeport_local:shop/frontend-nodeport:node-3": Change.NEW,
    }
    texts = [i.text for i in section.problems]
    assert texts[0] == (
        "shop/frontend-nodeport (NodePort 30080, externalTrafficPolicy Local): no ready endpoint on node-2; "
        "clients sent to node-2:30080 are dropped"
    )
    assert section.summary == "2 node(s) drop NodePort traffic of 1 Local service(s)"
    assert "NodePorts without a local endpoint" in digest_text(digest)


def test_a_node_that_gains_a_local_endpoint_is_reported_gone_and_one_whose_agent_is_silent_is_not() -> None:
    first = build_digest(_sweep(), None, None)
    healed = {**ENDPOINTS, "shop/frontend-nodeport": [("node-1", True), ("node-2", True), ("node-3", True)]}
    later = Sweep("lab", T0, _sweep().nodes, local_traffic=local_traffic_services(SPECS, healed))
    second = build_digest(later, None, stored(first))
    assert {g.key for g in second.section(SectionName.NODEPORTS).gone} == {
        "nodeport_local:shop/frontend-nodeport:node-2",
        "nodeport_local:shop/frontend-nodeport:node-3",
    }
    assert second.section(SectionName.NODEPORTS).summary == "2 Local service(s) have a ready endpoint on every node"


def test_the_namespace_scope_applies() -> None:
    digest = build_digest(_sweep(), None, None, namespaces=("payments",))
    assert digest.section(SectionName.NODEPORTS).problems == ()


def test_kube_proxy_rules_are_not_compared_on_a_node_whose_service_nat_is_done_by_cilium() -> None:
    """With no kube-proxy rules there, every port would read as missing: it is said, not counted."""
    digest = build_digest(sweep(node("node-1"), node("node-2", nat=(), proxy_mode="none", dataplane="cilium-ebpf")), None, None)
    section = digest.section(SectionName.KUBE_PROXY)
    assert section.problems == ()
    assert "not compared: service NAT on node-2 is done by Cilium's eBPF service load balancer; not inspected" in section.summary


def test_ipvs_mode_with_its_kube_services_chain_is_not_read_as_missing_rules() -> None:
    """IPVS mode keeps KUBE-SERVICES (so kube-proxy's mode reads "iptables") with no DNAT in it."""
    digest = build_digest(sweep(node("node-1", nat=(), proxy_mode="iptables", dataplane="ipvs")), None, None)
    assert digest.section(SectionName.KUBE_PROXY).problems == ()
    negative = build_digest(sweep(node("node-1", nat=(), proxy_mode="iptables", dataplane="kube-proxy-iptables")), None, None)
    assert set(problems(negative, SectionName.KUBE_PROXY)) == {"kube_proxy:node-1:shop/api:80/TCP"}


def test_the_agents_dataplane_reaches_the_node_sweep() -> None:
    info = pb.GetNodeInfoResponse(node_name="node-2", proxy_mode="none", dataplane="cilium-ebpf")
    swept = node_sweep("node-2", AgentOutcome("node-2", "GetNodeInfo", True, payload=info), None, None)
    assert (swept.proxy_mode, swept.dataplane) == ("none", "cilium-ebpf")
