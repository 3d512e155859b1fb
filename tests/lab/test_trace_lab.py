"""`kubereach ask --trace --json` on the lab: faults only packets reveal, named from the captures.

One three-node lab per CNI mode (module-scoped). Each case injects a fault through `kubereach lab
fault` (a fabric firewall between two nodes, a host firewall on a node, a lossy fabric), asks as an
on-call engineer would, and checks the verdict, its node and hop, and that the trace's `seen` flips
exactly where the packets stop: at the far node's underlay NIC for a fabric drop, right after the
node's NIC for a host firewall. The healthy path stays NO_FAULT_FOUND with every point seen.

Pods of the default spec: frontend on node-3 and node-1, redis-0 on node-2.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.lab.labkit import Lab, kubereach, running_lab, unique_prefix

pytestmark = pytest.mark.lab

MODES = ["flannel-vxlan", "host-gw", "calico"]


@pytest.fixture(scope="module", params=MODES)
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    cni = str(request.param)
    with running_lab(unique_prefix("tr" + cni[0]), "--nodes", "3", "--cni", cni) as running:
        yield running


def ask(lab: Lab, question: str, *extra: str) -> dict[str, Any]:
    proc = kubereach("--config", lab.status["config"], "ask", question, "--json", "--no-history", *extra, timeout=180)
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def frontend_on(lab: Lab, node: str) -> str:
    return next(p["name"] for p in lab.pods(app="frontend") if p["node"] == node)


def where(data: dict[str, Any]) -> tuple[str, str | None, str | None]:
    v = data["verdict"]
    return v["code"], v["node"], v["hop"]


def seen(data: dict[str, Any], direction: str) -> list[tuple[str, str, bool | None]]:
    return [(r["node"], r["interface"], r["seen"]) for r in data["trace"] if r["direction"] == direction]


def flips_at(rows: list[tuple[str, str, bool | None]]) -> int:
    """The index of the first row not seen, after which no row is seen; every row before it was seen."""
    first = next(i for i, (_, _, s) in enumerate(rows) if s is False)
    assert all(s is True for _, _, s in rows[:first]), rows
    assert all(s is False for _, _, s in rows[first:]), rows
    return first


def underlay_index(rows: list[tuple[str, str, bool | None]], node: str) -> int:
    """The row of `node`'s underlay NIC (its eth0 in the node namespace: the pods' eth0 come first/last)."""
    hits = [i for i, (n, iface, _) in enumerate(rows) if n == node and iface == "eth0"]
    node_side = [i for i in hits if 0 < i < len(rows) - 1]
    return node_side[0]


def test_the_healthy_path_traced_on_demand_is_no_fault_found_and_seen_at_every_point(lab: Lab) -> None:
    data = ask(lab, f"why can't pod {frontend_on(lab, 'node-3')} reach redis", "--trace")
    assert where(data)[0] == "NO_FAULT_FOUND"
    unseen = [
        (r["node"], r["interface"], r["direction"], r["seen"], r.get("note")) for r in data["trace"] if r["seen"] is not True
    ]
    assert data["trace"] and not unseen
    request = seen(data, "request")
    assert request[0][0] == "node-3" and request[-1][0] == "node-2"
    assert {"eth0"} <= {iface for node, iface, _ in request if node == "node-2"}


def test_a_fabric_firewall_from_node_3_to_node_2_is_underlay_drops_and_the_trace_stops_at_node_2s_nic(lab: Lab) -> None:
    lab.cli("fault", "underlay-drop", "--from", "node-3", "--to", "node-2")
    try:
        data = ask(lab, f"why can't pod {frontend_on(lab, 'node-3')} reach redis")
    finally:
        lab.cli("heal")
    assert where(data) == ("UNDERLAY_DROPS", "node-3", "underlay")
    assert "node-2" in data["verdict"]["summary"]
    request = seen(data, "request")
    assert flips_at(request) == underlay_index(request, "node-2")


def test_a_fabric_firewall_on_the_way_back_names_the_reply_and_the_other_pair(lab: Lab) -> None:
    lab.cli("fault", "underlay-drop", "--from", "node-2", "--to", "node-1")
    try:
        data = ask(lab, f"why can't pod {frontend_on(lab, 'node-1')} reach redis")
    finally:
        lab.cli("heal")
    assert where(data) == ("UNDERLAY_DROPS", "node-2", "underlay")
    assert all(s is True for _, _, s in seen(data, "request"))
    reply = seen(data, "reply")
    assert flips_at(reply) == underlay_index(reply, "node-1")


def test_a_host_firewall_on_node_2_is_node_firewall_drops_right_after_its_nic(lab: Lab) -> None:
    lab.cli("fault", "node-firewall-overlay", "--node", "node-2")
    try:
        data = ask(lab, f"why can't pod {frontend_on(lab, 'node-3')} reach redis")
    finally:
        lab.cli("heal")
    assert where(data) == ("NODE_FIREWALL_DROPS", "node-2", "destination-node")
    request = seen(data, "request")
    assert flips_at(request) == underlay_index(request, "node-2") + 1


def test_intermittent_loss_on_the_fabric_is_packet_loss_with_its_rate_and_place(lab: Lab) -> None:
    lab.cli("fault", "underlay-loss", "--percent", "40", "--from", "node-1", "--to", "node-2")
    try:
        data = ask(lab, f"pod {frontend_on(lab, 'node-1')} to redis intermittent failures")
    finally:
        lab.cli("heal")
    assert where(data) == ("PACKET_LOSS", "node-1", "underlay")
    assert "probes lost" in data["verdict"]["summary"] and "node-2" in data["verdict"]["summary"]
    request = [r for r in data["trace"] if r["direction"] == "request"]
    at = underlay_index([(r["node"], r["interface"], r["seen"]) for r in request], "node-2")
    assert request[at]["packets"] < request[at - 1]["packets"]
    assert all(r["packets"] == request[0]["packets"] for r in request[:at])


def test_a_node_network_that_carries_less_than_the_nodes_send_is_mtu_mismatch_found_by_the_large_probe(lab: Lab) -> None:
    lab.cli("fault", "underlay-mtu")
    try:
        data = ask(lab, f"why can't pod {frontend_on(lab, 'node-3')} reach redis", "--trace")
    finally:
        lab.cli("heal")
    assert where(data) == ("MTU_MISMATCH", "node-3", "underlay")
    request = seen(data, "request")
    assert flips_at(request) == underlay_index(request, "node-2")


def node_netns(lab: Lab, name: str) -> str:
    return str(lab.node(name)["netns"])


def trace_step(data: dict[str, Any]) -> dict[str, Any]:
    return next(s for s in data["steps"] if s["name"].startswith("trace "))


def test_a_node_traced_on_demand_starts_at_its_own_interfaces_and_says_it_has_no_pod_side(lab: Lab) -> None:
    """A node is traced from its own namespace: the first points are node-3's (its overlay device or
    NIC, in node-3's namespace, never a pod's), the path ends in redis-0's eth0, every point sees the
    probe, and the result says the source side has no pod interface to watch."""
    data = ask(lab, "why can't node-3 reach redis", "--trace")
    assert where(data)[0] == "NO_FAULT_FOUND"
    unseen = [
        (r["node"], r["interface"], r["direction"], r["seen"], r.get("note")) for r in data["trace"] if r["seen"] is not True
    ]
    assert data["trace"] and not unseen
    request = [r for r in data["trace"] if r["direction"] == "request"]
    assert request[0]["node"] == "node-3" and request[0]["netns"] == node_netns(lab, "node-3")
    assert all(r["netns"] == node_netns(lab, "node-3") for r in request if r["node"] == "node-3")
    assert request[-1]["node"] == "node-2" and request[-1]["netns"] not in (node_netns(lab, "node-2"), "")
    assert "node-3's own network namespace" in trace_step(data)["summary"]


def test_a_fabric_firewall_stops_a_node_source_at_the_far_nodes_nic(lab: Lab) -> None:
    lab.cli("fault", "underlay-drop", "--from", "node-3", "--to", "node-2")
    try:
        data = ask(lab, "why can't node-3 reach redis")
    finally:
        lab.cli("heal")
    assert where(data) == ("UNDERLAY_DROPS", "node-3", "underlay")
    request = seen(data, "request")
    assert flips_at(request) == underlay_index(request, "node-2")
