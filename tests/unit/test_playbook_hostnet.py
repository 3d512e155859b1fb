"""Hairpin and host-network pods, decided from hand-written observations (no lab, no agents).

A pod reaching itself through its own service fails when its bridge port is not in hairpin mode
(HAIRPIN_BROKEN); a host-network pod's port held on its node by a process that is not the pod's is
HOST_PORT_CONFLICT, told by the owning process's cgroup, whatever the probes say.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from bot.fleet.client import AgentOutcome
from bot.fleet.observer import FleetObserver
from bot.playbook.case import EndpointRef, PodRef, ServiceRef
from bot.playbook.models import Hop, StepStatus, VerdictCode
from bot.playbook.observations import ListeningSocket, NatEndpoint, NatView, Observed, PodNetwork
from bot.playbook.steps.hostport import pod_uid_of
from bot.settings import AgentSettings
from kubereach.agent.v1 import agent_pb2 as pb
from tests.unit.test_playbook_engine import API, NODES, SVC, WEB, RecordedCluster, case, verdict_of

# ---------------------------------------------------------------------------------------- hairpin


def _self_case(*endpoints: PodRef) -> Any:
    """api-1 asks for svc/api, of which it is an endpoint."""
    eps = tuple(EndpointRef(p.ip or "", 8080, p.node, True, p) for p in endpoints)
    return case(source_display="pod/api-1 in shop", sources=(API,), endpoints=eps, target_pods=endpoints)


def _hairpin(cluster: RecordedCluster, flag: bool | None) -> None:
    cluster.pods[API.ip or ""] = dataclasses.replace(cluster.pods[API.ip or ""], hairpin=flag)


def test_a_pod_that_cannot_reach_itself_through_its_service_on_a_port_without_hairpin_is_hairpin_broken() -> None:
    cluster = RecordedCluster()
    _hairpin(cluster, False)
    cluster.failing_probes = {SVC.cluster_ip: "timed_out"}  # the VIP sends api-1 to itself
    diagnosis = verdict_of(cluster, _self_case(API))
    verdict = diagnosis.verdict
    assert (verdict.code, verdict.node, verdict.hop) == (VerdictCode.HAIRPIN_BROKEN, "node-2", Hop.DESTINATION_NODE)
    assert "veth7" in verdict.summary and any("veth7 type bridge_slave hairpin on" in r for r in verdict.remediation)
    step = next(s for s in diagnosis.steps if s.name == "source api-1: hairpin")
    assert step.status == StepStatus.FAIL
    (evidence,) = step.evidence
    assert evidence.data["hairpin"] is False and evidence.data["endpoint"] == "10.244.2.7:8080"


def test_a_pod_reaching_itself_through_its_service_with_hairpin_on_finds_no_fault() -> None:
    cluster = RecordedCluster()
    _hairpin(cluster, True)
    diagnosis = verdict_of(cluster, _self_case(API))
    assert diagnosis.verdict.code == VerdictCode.NO_FAULT_FOUND
    assert next(s for s in diagnosis.steps if s.name == "source api-1: hairpin").status == StepStatus.PASS


def test_without_a_bridge_port_a_failing_vip_is_not_blamed_on_hairpin() -> None:
    """A routed CNI (Calico) has no bridge port: the agent reports no hairpin flag, so none is judged."""
    cluster = RecordedCluster()
    _hairpin(cluster, None)
    cluster.failing_probes = {SVC.cluster_ip: "timed_out"}
    diagnosis = verdict_of(cluster, _self_case(API))
    assert diagnosis.verdict.code != VerdictCode.HAIRPIN_BROKEN
    assert not [s for s in diagnosis.steps if s.name.endswith(": hairpin")]


def test_hairpin_off_is_not_judged_for_a_pod_that_is_not_an_endpoint_of_the_service() -> None:
    cluster = RecordedCluster()
    cluster.pods[WEB.ip or ""] = dataclasses.replace(cluster.pods[WEB.ip or ""], hairpin=False)
    cluster.failing_probes = {SVC.cluster_ip: "timed_out"}
    diagnosis = verdict_of(cluster)  # web-1 → svc/api: web-1 is no endpoint of api
    assert diagnosis.verdict.code != VerdictCode.HAIRPIN_BROKEN


def test_hairpin_off_while_the_vip_answered_from_another_endpoint_is_still_hairpin_broken() -> None:
    """The probe went to the other endpoint this time; the connections that pick api-1 itself still fail."""
    other = PodRef("shop", "api-2", "10.244.1.5", "node-1", container_ports=(("http", 8080, "TCP"),))
    cluster = RecordedCluster()
    _hairpin(cluster, False)
    cluster.nat = NatView("iptables", True, (NatEndpoint(API.ip or "", 8080), NatEndpoint(other.ip or "", 8080)))
    diagnosis = verdict_of(cluster, _self_case(API, other))
    verdict = diagnosis.verdict
    assert (verdict.code, verdict.node, verdict.hop) == (VerdictCode.HAIRPIN_BROKEN, "node-2", Hop.DESTINATION_NODE)
    assert "1 in 2" in verdict.summary and "went to another endpoint" in verdict.summary


# ------------------------------------------------------------------------------- host-network pods

EXPORTER_UID = "6f1c2a9e-3b7d-4e2a-9c1f-0a1b2c3d4e5f"
EXPORTER = PodRef(
    "monitoring",
    "node-exporter-x2k",
    NODES["node-2"].ip,
    "node-2",
    container_ports=(("metrics", 9100, "TCP"),),
    host_network=True,
    uid=EXPORTER_UID,
)
CGROUPFS = f"/kubepods/besteffort/pod{EXPORTER_UID}/0c1d2e3f"
SYSTEMD = (
    "/kubepods.slice/kubepods-besteffort.slice/"
    f"kubepods-besteffort-pod{EXPORTER_UID.replace('-', '_')}.slice/cri-containerd-0c1d2e3f.scope"
)


class HostNode(RecordedCluster):
    """The recorded cluster, with what listens on port 9100 in node-2's own namespace."""

    def __init__(self, *held: ListeningSocket) -> None:
        super().__init__()
        self.held = held
        self.asked_sockets: list[tuple[str, str]] = []

    async def sockets(self, node: str, pod_ip: str, port: int, protocol: str) -> Observed[tuple[ListeningSocket, ...]]:
        self.asked_sockets.append((node, pod_ip))
        if pod_ip == "" and node == "node-2":
            return Observed(node, tuple(s for s in self.held if s.port == port))
        return await super().sockets(node, pod_ip, port, protocol)

    async def locate_pod(self, node: str, pod_ip: str) -> Observed[PodNetwork]:
        assert pod_ip != EXPORTER.ip, "a host-network pod has no namespace of its own to locate"
        return await super().locate_pod(node, pod_ip)


def _to_exporter(**changes: Any) -> Any:
    pod = changes.pop("pod", EXPORTER)
    fields: dict[str, Any] = {
        "target_display": "pod/node-exporter-x2k in monitoring",
        "target_kind": "pod",
        "port": 9100,
        "service": None,
        "target_pods": (pod,),
        "endpoints": (EndpointRef(pod.ip or "", 9100, "node-2", True, pod),),
        "dns_name": None,
        "dns_fqdn": None,
    }
    return case(**{**fields, **changes})


def _socket(cgroup: str, pid: int = 4242, address: str = "0.0.0.0") -> ListeningSocket:
    return ListeningSocket("TCP", address, 9100, "python3", pid, cgroup)


@pytest.mark.parametrize("cgroup", [CGROUPFS, SYSTEMD], ids=["cgroupfs", "systemd"])
def test_kubelets_cgroup_layouts_name_the_pod_uid(cgroup: str) -> None:
    assert pod_uid_of(cgroup) == EXPORTER_UID
    assert pod_uid_of("/system.slice/prometheus-node-exporter.service") is None


@pytest.mark.parametrize("cgroup", [CGROUPFS, SYSTEMD], ids=["cgroupfs", "systemd"])
def test_a_host_network_pod_holding_its_own_port_finds_no_fault(cgroup: str) -> None:
    cluster = HostNode(_socket(cgroup))
    diagnosis = verdict_of(cluster, _to_exporter())
    assert diagnosis.verdict.code == VerdictCode.NO_FAULT_FOUND, diagnosis.verdict
    assert ("node-2", "") in cluster.asked_sockets, "a host-network pod's sockets are read in its node's namespace"


def test_a_host_network_pods_port_held_by_a_process_outside_any_pod_is_a_host_port_conflict() -> None:
    """The stray answers, so every probe connects: only the owner's cgroup tells."""
    cluster = HostNode(_socket("/system.slice/stray-exporter.service", pid=777))
    diagnosis = verdict_of(cluster, _to_exporter())
    verdict = diagnosis.verdict
    assert (verdict.code, verdict.node, verdict.hop) == (VerdictCode.HOST_PORT_CONFLICT, "node-2", Hop.DESTINATION_NODE)
    assert "pid 777" in verdict.summary and "no pod" in verdict.summary
    assert any("sport = :9100" in r for r in verdict.remediation)
    step = next(s for s in diagnosis.steps if s.status == StepStatus.FAIL)
    assert step.evidence[0].data["sockets"][0]["cgroup"] == "/system.slice/stray-exporter.service"


def test_a_host_network_pods_port_held_by_another_pod_is_a_host_port_conflict_naming_its_uid() -> None:
    other = "0a0b0c0d-1111-4222-a333-444455556666"
    cluster = HostNode(_socket(f"/kubepods/burstable/pod{other}/abc"))
    verdict = verdict_of(cluster, _to_exporter()).verdict
    assert verdict.code == VerdictCode.HOST_PORT_CONFLICT and other in verdict.summary


def test_a_conflict_is_judged_through_a_service_whose_endpoint_is_host_network() -> None:
    svc = ServiceRef("monitoring", "node-exporter", "10.96.9.100", {"app": "node-exporter"}, 9100, 9100)
    cluster = HostNode(_socket("/"))
    cluster.nat = NatView("iptables", True, (NatEndpoint(EXPORTER.ip or "", 9100),))
    target = _to_exporter(target_kind="service", target_display="svc/node-exporter in monitoring", service=svc)
    assert verdict_of(cluster, target).verdict.code == VerdictCode.HOST_PORT_CONFLICT


def test_a_socket_on_another_address_of_the_node_is_no_conflict() -> None:
    cluster = HostNode(_socket(CGROUPFS), _socket("/", pid=9, address="127.0.0.1"))
    assert verdict_of(cluster, _to_exporter()).verdict.code == VerdictCode.NO_FAULT_FOUND


def test_without_the_pods_uid_the_owner_is_not_compared() -> None:
    cluster = HostNode(_socket("/"))
    diagnosis = verdict_of(cluster, _to_exporter(pod=dataclasses.replace(EXPORTER, uid="")))
    assert diagnosis.verdict.code == VerdictCode.NO_FAULT_FOUND
    assert any(s.status == StepStatus.WARN and "no UID" in s.summary for s in diagnosis.steps)


def test_a_host_network_pod_that_never_bound_is_not_listening_in_the_nodes_namespace() -> None:
    cluster = HostNode()
    cluster.failing_probes = {EXPORTER.ip or "": "refused"}
    verdict = verdict_of(cluster, _to_exporter()).verdict
    assert (verdict.code, verdict.node, verdict.hop) == (VerdictCode.DESTINATION_NOT_LISTENING, "node-2", Hop.DESTINATION_POD)
    assert "node-2's namespace" in verdict.summary


# ------------------------------------------------------------------ the agents' answers, as parsed


@dataclasses.dataclass
class AnsweringFleet:
    """A fleet that answers each method with one protobuf message, as an agent would."""

    answers: dict[str, Any]
    settings: AgentSettings = dataclasses.field(default_factory=lambda: AgentSettings(insecure=True, overall_timeout_s=5.0))

    async def call(self, node: str, method: str, request: Any, timeout_s: float | None = None) -> AgentOutcome:
        return AgentOutcome(node, method, True, payload=self.answers[method])


def test_the_observer_reads_the_hairpin_flag_only_where_the_agent_set_it() -> None:
    def located(hairpin: bool | None) -> PodNetwork | None:
        peer = pb.HostPeer(link=pb.Interface(name="veth7", master="cni0"))
        if hairpin is not None:
            peer.hairpin = hairpin
        answer = pb.LocatePodResponse(pod=pb.PodNetwork(pod_ip="10.244.2.7", host_peer=peer))
        observer = FleetObserver(AnsweringFleet({"LocatePod": answer}))  # type: ignore[arg-type]
        return asyncio.run(observer.locate_pod("node-2", "10.244.2.7")).value

    assert [getattr(located(flag), "hairpin", "?") for flag in (True, False, None)] == [True, False, None]


def test_the_observer_reads_each_sockets_owner_pid_and_cgroup() -> None:
    held = pb.ListeningSocket(
        protocol=pb.PROTOCOL_TCP, local_address="0.0.0.0", local_port=9100, pid=777, process_name="metricsd", cgroup="/"
    )
    observer = FleetObserver(AnsweringFleet({"ListSockets": pb.ListSocketsResponse(sockets=[held])}))  # type: ignore[arg-type]
    observed = asyncio.run(observer.sockets("node-2", "", 9100, "TCP"))
    assert observed.value == (ListeningSocket("TCP", "0.0.0.0", 9100, "metricsd", 777, "/"),)
