"""Every verdict code the playbook produces, each from recorded observations (no lab, no agents).

The recorded healthy two-node cluster of `test_playbook_engine` is changed in exactly the way a
person would see the fault on the nodes; the test states the verdict they would reach. The codes a
question's resolution produces (SOURCE_NOT_FOUND, TARGET_NOT_FOUND, AMBIGUOUS_NAME) are decided by
`bot.cluster.resolve` and tested in `test_cluster_resolve`; the playbook's own SOURCE_NOT_FOUND (a
resolved workload with no pods) is tested here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from bot.playbook.case import EndpointRef, PodRef
from bot.playbook.models import Hop, VerdictCode
from bot.playbook.observations import CallFailure, FilterHit, Observed, OverlayDevice, RouteInfo, RouteLookup
from bot.policy import cluster_from_objects
from tests.unit.test_playbook_engine import API, SVC, WEB, RecordedCluster, case, link, verdict_of


def _pod_object(pod: PodRef, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"namespace": pod.namespace, "name": pod.name, "labels": labels},
        "spec": {"nodeName": pod.node, "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
        "status": {"phase": "Running", "podIP": pod.ip, "podIPs": [{"ip": pod.ip}]},
    }


def _policies(policy: dict[str, Any]) -> Any:
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": {}}}
    return cluster_from_objects([namespace, _pod_object(WEB, {"app": "web"}), _pod_object(API, {"app": "api"}), policy])


def _deny_all(name: str, selector: dict[str, str], kind: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"namespace": "shop", "name": name},
        "spec": {"podSelector": {"matchLabels": selector}, "policyTypes": [kind]},
    }


def test_a_source_workload_without_pods_is_source_not_found() -> None:
    diagnosis = verdict_of(RecordedCluster(), case(sources=(), source_total=0))
    assert diagnosis.verdict.code == VerdictCode.SOURCE_NOT_FOUND
    assert diagnosis.steps == ()


def test_a_crashing_source_pod_is_not_running_and_nothing_further_is_asked_of_it() -> None:
    crashing = dataclasses.replace(WEB, phase="Running", reason="CrashLoopBackOff")
    diagnosis = verdict_of(RecordedCluster(), case(sources=(crashing,)))
    assert (diagnosis.verdict.code, diagnosis.verdict.hop, diagnosis.verdict.node) == (
        VerdictCode.SOURCE_POD_NOT_RUNNING,
        Hop.SOURCE_POD,
        "node-1",
    )
    assert "CrashLoopBackOff" in diagnosis.verdict.summary
    assert not [s for s in diagnosis.steps if s.name.startswith("source web-1: probes")]


def test_a_running_source_pod_without_an_ip_has_no_ip_on_the_source_hop() -> None:
    diagnosis = verdict_of(RecordedCluster(), case(sources=(dataclasses.replace(WEB, ip=None),)))
    assert (diagnosis.verdict.code, diagnosis.verdict.hop) == (VerdictCode.POD_HAS_NO_IP, Hop.SOURCE_POD)


def test_a_target_pod_without_an_ip_has_no_ip_on_the_destination_hop() -> None:
    no_ip = dataclasses.replace(API, ip=None)
    target = case(target_kind="pod", target_display="pod/api-1 in shop", service=None, target_pods=(no_ip,), endpoints=())
    diagnosis = verdict_of(RecordedCluster(), target)
    assert (diagnosis.verdict.code, diagnosis.verdict.hop, diagnosis.verdict.node) == (
        VerdictCode.POD_HAS_NO_IP,
        Hop.DESTINATION_POD,
        "node-2",
    )


def test_a_target_port_the_pods_neither_declare_nor_listen_on_is_a_port_mismatch() -> None:
    cluster = RecordedCluster()
    cluster.listening = False
    wrong = dataclasses.replace(SVC, target_port=9090)
    c = case(service=wrong, endpoints=(EndpointRef(API.ip or "", 9090, "node-2", True, API),))
    diagnosis = verdict_of(cluster, c)
    assert (diagnosis.verdict.code, diagnosis.verdict.hop) == (VerdictCode.SERVICE_PORT_MISMATCH, Hop.API)
    assert "9090" in diagnosis.verdict.summary
    cluster.listening = True  # undeclared but listening: a warning, not the cause
    assert verdict_of(cluster, c).verdict.code == VerdictCode.NO_FAULT_FOUND


def test_a_policy_selecting_the_source_for_egress_with_no_rule_denies_egress() -> None:
    c = case(policy_cluster=_policies(_deny_all("web-no-egress", {"app": "web"}, "Egress")))
    cluster = RecordedCluster()
    cluster.failing_probes = {"10.96.5.5": "timed_out", "10.244.2.7": "timed_out"}
    diagnosis = verdict_of(cluster, c)
    assert (diagnosis.verdict.code, diagnosis.verdict.hop, diagnosis.verdict.node) == (
        VerdictCode.NETWORK_POLICY_DENIES_EGRESS,
        Hop.POLICY,
        "node-1",
    )
    assert "web-no-egress" in " ".join(diagnosis.verdict.remediation)


def test_a_policy_selecting_the_destination_for_ingress_with_no_rule_denies_ingress() -> None:
    c = case(policy_cluster=_policies(_deny_all("api-no-ingress", {"app": "api"}, "Ingress")))
    cluster = RecordedCluster()
    cluster.failing_probes = {"10.96.5.5": "timed_out", "10.244.2.7": "timed_out"}
    diagnosis = verdict_of(cluster, c)
    assert (diagnosis.verdict.code, diagnosis.verdict.hop, diagnosis.verdict.node) == (
        VerdictCode.NETWORK_POLICY_DENIES_INGRESS,
        Hop.POLICY,
        "node-2",
    )


def test_a_full_conntrack_table_on_the_source_node() -> None:
    cluster = RecordedCluster()
    cluster.facts["node-1"] = dataclasses.replace(cluster.facts["node-1"], conntrack_count=262144)
    diagnosis = verdict_of(cluster)
    assert (diagnosis.verdict.code, diagnosis.verdict.hop, diagnosis.verdict.node) == (
        VerdictCode.CONNTRACK_TABLE_FULL,
        Hop.SOURCE_NODE,
        "node-1",
    )


def test_a_down_host_side_veth_of_the_destination_pod_is_its_interface_down() -> None:
    cluster = RecordedCluster()
    net = cluster.pods["10.244.2.7"]
    cluster.pods["10.244.2.7"] = dataclasses.replace(
        net, host_peer=link("veth7", master="cni0", oper_state="DOWN", admin_up=False)
    )
    cluster.failing_probes = {"10.96.5.5": "timed_out", "10.244.2.7": "timed_out"}
    diagnosis = verdict_of(cluster)
    assert (diagnosis.verdict.code, diagnosis.verdict.hop, diagnosis.verdict.node) == (
        VerdictCode.POD_INTERFACE_DOWN,
        Hop.DESTINATION_POD,
        "node-2",
    )


def test_a_source_veth_without_a_bridge_is_not_on_the_bridge() -> None:
    cluster = RecordedCluster()
    net = cluster.pods["10.244.1.5"]
    cluster.pods["10.244.1.5"] = dataclasses.replace(net, host_peer=link("veth5"))
    diagnosis = verdict_of(cluster)
    assert (diagnosis.verdict.code, diagnosis.verdict.hop, diagnosis.verdict.node) == (
        VerdictCode.VETH_NOT_ON_BRIDGE,
        Hop.SOURCE_POD,
        "node-1",
    )
    assert "cni0" in diagnosis.verdict.summary


def test_a_pod_mtu_above_the_overlays_is_an_mtu_mismatch() -> None:
    cluster = RecordedCluster()
    net = cluster.pods["10.244.1.5"]
    cluster.pods["10.244.1.5"] = dataclasses.replace(
        net, eth0=link("eth0", mtu=1500, addresses=("10.244.1.5/24",)), host_peer=link("veth5", mtu=1500, master="cni0")
    )
    diagnosis = verdict_of(cluster)
    assert (diagnosis.verdict.code, diagnosis.verdict.hop) == (VerdictCode.MTU_MISMATCH, Hop.SOURCE_POD)
    assert "1450" in diagnosis.verdict.summary


def test_a_down_overlay_device_on_the_source_node_is_the_underlay_cause() -> None:
    cluster = RecordedCluster()
    cluster.facts["node-1"] = dataclasses.replace(
        cluster.facts["node-1"], overlays=(OverlayDevice(link("flannel.1", oper_state="DOWN", admin_up=False), 1, 8472),)
    )
    cluster.routes[("node-1", "10.244.2.7")] = RouteLookup(RouteInfo(type="none"), error="Network is unreachable")
    cluster.failing_probes = {"10.96.5.5": "timed_out", "10.244.2.7": "timed_out"}
    diagnosis = verdict_of(cluster)
    assert (diagnosis.verdict.code, diagnosis.verdict.hop, diagnosis.verdict.node) == (
        VerdictCode.OVERLAY_DEVICE_DOWN,
        Hop.UNDERLAY,
        "node-1",
    )


def test_strict_rp_filter_on_the_arriving_device_drops_asymmetric_traffic() -> None:
    cluster = RecordedCluster()
    cluster.routes[("node-2", "10.244.1.5")] = RouteLookup(RouteInfo("10.244.1.0/24", "10.240.0.11", "eth0"))
    original = cluster.filter_state

    async def strict(node: str, **kw: Any) -> Any:
        observed = await original(node, **kw)
        if node == "node-2" and observed.value is not None:
            return dataclasses.replace(observed, value=dataclasses.replace(observed.value, rp_filter={"flannel.1": 1}))
        return observed

    cluster.filter_state = strict  # type: ignore[method-assign]
    cluster.failing_probes = {"10.96.5.5": "timed_out", "10.244.2.7": "timed_out"}
    diagnosis = verdict_of(cluster)
    assert (diagnosis.verdict.code, diagnosis.verdict.hop, diagnosis.verdict.node) == (
        VerdictCode.RP_FILTER_DROPS,
        Hop.DESTINATION_NODE,
        "node-2",
    )


def test_a_drop_rule_in_the_destination_nodes_forward_chain_is_the_verdict() -> None:
    cluster = RecordedCluster()
    cluster.forward_drops = {
        "node-2": (FilterHit("filter", "FORWARD", "-A FORWARD -d 10.244.2.7/32 -p tcp --dport 8080 -j DROP"),)
    }
    cluster.failing_probes = {"10.96.5.5": "timed_out", "10.244.2.7": "timed_out"}
    diagnosis = verdict_of(cluster)
    assert (diagnosis.verdict.code, diagnosis.verdict.hop, diagnosis.verdict.node) == (
        VerdictCode.FORWARD_CHAIN_DROPS,
        Hop.DESTINATION_NODE,
        "node-2",
    )
    assert "-j DROP" in diagnosis.verdict.summary


def test_a_source_node_route_to_the_wrong_gateway_is_a_missing_node_route_on_the_underlay() -> None:
    cluster = RecordedCluster()
    cluster.routes[("node-1", "10.244.2.7")] = RouteLookup(RouteInfo("10.244.2.0/24", "10.240.0.99", "eth0"))
    cluster.failing_probes = {"10.96.5.5": "timed_out", "10.244.2.7": "timed_out"}
    diagnosis = verdict_of(cluster)
    assert (diagnosis.verdict.code, diagnosis.verdict.hop, diagnosis.verdict.node) == (
        VerdictCode.NODE_ROUTE_MISSING,
        Hop.UNDERLAY,
        "node-1",
    )
    assert "10.240.0.99" in diagnosis.verdict.summary


def test_a_destination_node_without_a_route_back_is_a_missing_node_route_there() -> None:
    cluster = RecordedCluster()
    cluster.routes[("node-2", "10.244.1.5")] = RouteLookup(RouteInfo(type="unreachable"), error="No route to host")
    cluster.failing_probes = {"10.96.5.5": "timed_out", "10.244.2.7": "timed_out"}
    diagnosis = verdict_of(cluster)
    assert (diagnosis.verdict.code, diagnosis.verdict.hop, diagnosis.verdict.node) == (
        VerdictCode.NODE_ROUTE_MISSING,
        Hop.DESTINATION_NODE,
        "node-2",
    )
    assert "route back" in diagnosis.verdict.summary


def test_an_endpoint_ip_no_pod_on_its_node_holds_is_a_destination_pod_without_ip() -> None:
    cluster = RecordedCluster()
    original = cluster.locate_pod

    async def locate(node: str, pod_ip: str) -> Any:
        if pod_ip == "10.244.2.7":
            return Observed(node, error=f"no pod holds {pod_ip}", error_kind=CallFailure.NOT_FOUND)
        return await original(node, pod_ip)

    cluster.locate_pod = locate  # type: ignore[method-assign]
    cluster.failing_probes = {"10.96.5.5": "refused", "10.244.2.7": "refused"}
    diagnosis = verdict_of(cluster)
    assert (diagnosis.verdict.code, diagnosis.verdict.hop, diagnosis.verdict.node) == (
        VerdictCode.POD_HAS_NO_IP,
        Hop.DESTINATION_POD,
        "node-2",
    )


def test_an_agent_that_answers_nothing_on_the_source_node_ends_the_walk_from_that_pod() -> None:
    cluster = RecordedCluster()
    cluster.down = {"node-1"}
    diagnosis = verdict_of(cluster)
    assert (diagnosis.verdict.code, diagnosis.verdict.hop, diagnosis.verdict.node) == (
        VerdictCode.AGENT_UNREACHABLE,
        Hop.SOURCE_NODE,
        "node-1",
    )
    assert not any(step.kind == "source: probes" for step in diagnosis.steps)


def test_failing_probes_with_every_check_clean_are_undetermined() -> None:
    cluster = RecordedCluster()
    cluster.failing_probes = {"10.96.5.5": "timed_out", "10.244.2.7": "timed_out"}
    diagnosis = verdict_of(cluster)
    assert (diagnosis.verdict.code, diagnosis.verdict.node, diagnosis.verdict.hop) == (VerdictCode.UNDETERMINED, None, None)
    assert "found no cause" in diagnosis.verdict.summary


def test_every_verdict_code_is_asserted_by_a_unit_test() -> None:
    """A new code needs a test from recorded observations (or from resolution) before it ships."""
    here = Path(__file__).parent
    files = [*here.glob("test_playbook_*.py"), here / "test_cluster_resolve.py"]
    text = "\n".join(f.read_text() for f in files)
    untested = [c.value for c in VerdictCode if f"VerdictCode.{c.name}" not in text]
    assert untested == []
