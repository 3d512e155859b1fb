"""The fault catalog's vocabulary, without a lab: verdicts the bot knows, targets, undo records as stored."""

from __future__ import annotations

import dataclasses
import json

import pytest

from bot.playbook.models import VerdictCode
from lab.faults import CATALOG, Needs, Undo, Verdict
from lab.faults.conntrack import StaleEntryUndo
from lab.faults.kubeproxy import KubeProxyUndo
from lab.faults.node import AgentUndo, NodeUndo, RoutesUndo
from lab.faults.pod import PodStatusUndo
from lab.faults.service import NotReadyUndo

ROUTE = {"dst": "10.244.1.0/24", "gateway": "10.0.0.12", "dev": "eth0", "flags": ["onlink"]}

# Undo records exactly as `lab fault` wrote them into the lab state before they were typed.
OLD_RECORDS = [
    ("node-route-missing", {"node": "node-1", "routes": [ROUTE]}),
    ("node-route-wrong", {"node": "node-1", "routes": [ROUTE], "replaced": "10.244.1.0/24"}),
    ("ip-forward-off", {"node": "node-2"}),
    ("rp-filter-strict", {"node": "node-2", "route": "10.244.0.5/32", "device": "flannel.1"}),
    ("agent-down", {"node": "node-1", "address": None}),
    ("agent-down", {"node": "node-1", "address": "127.0.0.1:41234"}),
    ("veth-down", {"pod": "shop/frontend-abc"}),
    ("pod-route-missing", {"pod": "shop/frontend-abc", "routes": [ROUTE]}),
    ("mtu-mismatch", {"pod": "shop/frontend-abc", "mtu": 1450}),
    ("pod-crashloop", {"pod": "shop/frontend-abc", "status": {"phase": "Running"}}),
    (
        "pod-no-ip",
        {"pod": "shop/frontend-abc", "status": {"phase": "Running"}, "address": "10.244.0.5", "routes": [ROUTE]},
    ),
    ("selector-mismatch", {"service": "shop/api", "selector": {"app": "api"}}),
    ("endpoints-not-ready", {"service": "shop/api", "pods": {"shop/api-1": {"phase": "Running"}}}),
    ("target-port-mismatch", {"service": "shop/api", "ports": [{"port": 80, "targetPort": 8080}]}),
    ("policy-deny-ingress", {"namespace": "shop", "name": "deny-all-to-api"}),
    ("dns-down", {"pods": ["kube-system/coredns-1", "kube-system/coredns-2"]}),
    ("kube-proxy-rules-missing", {"node": "node-1"}),
    ("kube-proxy-stale", {"node": "node-1", "moved": ["shop/api-r12345"]}),
    ("conntrack-stale", {"node": "node-1", "src": "10.244.0.5", "sport": 5353}),
    ("conntrack-full", {"node": "node-1"}),
]


def test_every_fault_verdict_is_a_bot_verdict_code() -> None:
    assert {f.verdict.value for f in CATALOG.values()} <= {c.value for c in VerdictCode}
    assert all(isinstance(f.verdict, Verdict) for f in CATALOG.values())


def test_every_verdict_is_some_faults_verdict() -> None:
    assert {f.verdict for f in CATALOG.values()} == set(Verdict)


def test_catalog_order_and_names_are_the_listing() -> None:
    assert list(CATALOG)[:3] == ["node-route-missing", "node-route-wrong", "ip-forward-off"]
    assert list(CATALOG)[9:13] == ["underlay-drop", "underlay-loss", "node-firewall-overlay", "underlay-mtu"]
    assert list(CATALOG)[-8:] == [
        "conntrack-stale",
        "nodeport-no-local-endpoints",
        "egress-masquerade-missing",
        "node-no-route-out",
        "upstream-dns-unreachable",
        "policy-egress-ipblock",
        "hairpin-off",
        "host-port-collision",
    ]
    assert len(CATALOG) == 41
    assert all(name == fault.name for name, fault in CATALOG.items())


@pytest.mark.parametrize(
    ("needs", "node", "pod", "service"),
    [
        (Needs.NONE, False, False, False),
        (Needs.NODE, True, False, False),
        (Needs.POD, False, True, False),
        (Needs.SERVICE, False, False, True),
        (Needs.NODE_POD, True, True, False),
        (Needs.NODE_SERVICE, True, False, True),
        (Needs.POD_SERVICE, False, True, True),
    ],
)
def test_needs_names_the_parts_a_fault_is_pointed_at(needs: Needs, node: bool, pod: bool, service: bool) -> None:
    assert (needs.wants("node"), needs.wants("pod"), needs.wants("service")) == (node, pod, service)


@pytest.mark.parametrize(("name", "record"), OLD_RECORDS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(OLD_RECORDS)])
def test_old_state_records_load_into_their_fault_s_undo_type_and_serialise_back_unchanged(
    name: str, record: dict[str, object]
) -> None:
    undo = CATALOG[name].undo.from_json(json.loads(json.dumps(record)))
    assert isinstance(undo, Undo)
    assert undo.to_json() == record


def test_optional_fields_are_left_out_as_before_and_unknown_keys_are_ignored() -> None:
    assert RoutesUndo("node-1", [ROUTE]).to_json() == {"node": "node-1", "routes": [ROUTE]}
    assert KubeProxyUndo("node-1").to_json() == {"node": "node-1"}
    assert PodStatusUndo("shop/a", {}).to_json() == {"pod": "shop/a", "status": {}}
    assert AgentUndo("node-1").to_json() == {"node": "node-1", "address": None}
    assert NodeUndo.from_json({"node": "node-1", "written_by": "a newer kubereach"}) == NodeUndo("node-1")


def test_a_record_missing_what_heal_needs_is_refused() -> None:
    with pytest.raises(TypeError):
        StaleEntryUndo.from_json({"node": "node-1"})


def test_undo_records_are_plain_json() -> None:
    undo = NotReadyUndo("shop/api", {"shop/api-1": {"conditions": [{"type": "Ready", "status": "True"}]}})
    assert json.loads(json.dumps(undo.to_json())) == dataclasses.asdict(undo)


def test_the_host_port_collision_schedules_a_host_network_pod_declaring_the_strays_port() -> None:
    from lab.faults.hostport import PORT, HostPortUndo, host_network_pod

    pod = host_network_pod("node-exporter-node-2", "node-2", "10.240.0.12")
    assert pod["spec"]["hostNetwork"] is True and pod["spec"]["nodeName"] == "node-2"
    assert pod["status"]["podIP"] == pod["status"]["hostIP"] == "10.240.0.12"
    assert pod["spec"]["containers"][0]["ports"][0]["containerPort"] == PORT
    assert CATALOG["host-port-collision"].verdict is Verdict.HOST_PORT_CONFLICT
    undo = HostPortUndo("node-2", "monitoring/node-exporter-node-2", 4242)
    assert HostPortUndo.from_json(json.loads(json.dumps(undo.to_json()))) == undo
