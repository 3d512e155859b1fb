"""Host-network workloads on the lab, asked about through `kubereach ask --json` (and `--trace`).

The lab runs the default spec plus a node-exporter-like DaemonSet with `hostNetwork: true` listening
on 9100 on every node, a ClusterIP service for it and a NodePort onto it (a spec option: the default
spec has none, see docs/lab.md). Each pod shares its node's namespace and IP, and its server runs under
a cgroup naming the pod's UID, as kubelet places a pod's processes. Healthy questions about it — a pod
to the host-network pod's port and service, the host-network pod and a node as sources, a client
outside through the NodePort it serves, traces to and from it — are NO_FAULT_FOUND with the checks
that tell why; the host-port-collision fault, which reuses the DaemonSet's pod on its node, turns the
same question into HOST_PORT_CONFLICT, and heal turns it back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab import cgroups
from lab.apiclient import LabApi
from lab.state import load_state
from tests.lab.labkit import Lab, kubereach, running_lab, unique_prefix

pytestmark = pytest.mark.lab

SPEC = Path(__file__).resolve().parents[2] / "lab" / "specs" / "default.yaml"
NODE_PORT = 30910


def hostnet_spec(path: Path) -> Path:
    """The default spec plus a host-network DaemonSet on 9100, its service and a NodePort onto it."""
    spec = yaml.safe_load(SPEC.read_text())
    spec["workloads"].append(
        {
            "kind": "DaemonSet",
            "namespace": "monitoring",
            "name": "node-exporter",
            "labels": {"app": "node-exporter"},
            "hostNetwork": True,
            "ports": [{"name": "metrics", "port": 9100}],
        }
    )
    port = {"name": "metrics", "port": 9100, "targetPort": "metrics"}
    spec["services"] += [
        {"namespace": "monitoring", "name": "node-exporter", "selector": {"app": "node-exporter"}, "ports": [port]},
        {
            "namespace": "monitoring",
            "name": "node-exporter-nodeport",
            "type": "NodePort",
            "selector": {"app": "node-exporter"},
            "ports": [{**port, "nodePort": NODE_PORT}],
        },
    ]
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    spec = hostnet_spec(tmp_path_factory.mktemp("spec") / "hostnet.yaml")
    with running_lab(unique_prefix("hn"), "--nodes", "3", "--spec", str(spec)) as running:
        yield running


def api(lab: Lab) -> LabApi:
    state = load_state(lab.prefix)
    assert state is not None
    return LabApi.from_files(state.api_url, state.token_file, state.ca_file)


def exporters(lab: Lab) -> dict[str, dict[str, Any]]:
    """The DaemonSet's pods from the API, by node."""
    items = api(lab).get("/api/v1/namespaces/monitoring/pods")["items"]
    return {p["spec"]["nodeName"]: p for p in items if p["metadata"]["labels"].get("app") == "node-exporter"}


def ask(lab: Lab, question: str, *extra: str) -> dict[str, Any]:
    proc = kubereach("--config", lab.status["config"], "ask", question, "--json", "--no-history", *extra, timeout=180)
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def explain(result: dict[str, Any]) -> str:
    return json.dumps([result["verdict"], [(s["status"], s["name"], s["summary"]) for s in result["steps"]]], indent=1)


def step(result: dict[str, Any], prefix: str) -> dict[str, Any]:
    return next(s for s in result["steps"] if s["name"].startswith(prefix))


def test_the_daemonset_runs_one_host_network_pod_per_node_under_a_cgroup_naming_its_uid(lab: Lab) -> None:
    pods = exporters(lab)
    assert sorted(pods) == sorted(n["name"] for n in lab.status["nodes"])
    for node, pod in pods.items():
        assert pod["spec"]["hostNetwork"] is True and pod["status"]["podIP"] == lab.node(node)["ip"]
        uid = pod["metadata"]["uid"]
        procs = cgroups.pod_cgroup(lab.prefix, uid) / "cgroup.procs"
        assert procs.read_text().split(), f"no process in {node}'s pod cgroup"
    # Served from the node's namespace on the node's IP, from a pod on another node.
    src = lab.pod(app="frontend")
    answered = lab.tcp(src, lab.node("node-2")["ip"], 9100)
    assert answered["ok"] and pods["node-2"]["metadata"]["name"] in answered["banner"], answered


def test_a_pod_reaches_the_host_network_pods_service_and_each_pod_holds_its_own_port(lab: Lab) -> None:
    result = ask(lab, "why can't prometheus reach node-exporter")
    assert result["verdict"]["code"] == "NO_FAULT_FOUND", explain(result)
    held = [s for s in result["steps"] if ": port 9100/TCP on " in s["name"]]
    assert len(held) == len(lab.status["nodes"]) and all(s["status"] == "pass" and "itself" in s["summary"] for s in held)


def test_a_pod_reaches_the_host_network_pods_port_and_a_stray_on_it_is_host_port_conflict(lab: Lab) -> None:
    """The same question healthy, with the host-port-collision fault (reusing the DaemonSet's pod on
    node-2: its server gone, a stray on 9100), and healed again."""
    name = exporters(lab)["node-2"]["metadata"]["name"]
    question = f"why can't frontend reach pod {name} in monitoring on port 9100"
    healthy = ask(lab, question)
    assert healthy["verdict"]["code"] == "NO_FAULT_FOUND", explain(healthy)
    lab.cli("fault", "host-port-collision", "--node", "node-2")
    try:
        broken = ask(lab, question)
    finally:
        lab.cli("heal")
    verdict = broken["verdict"]
    assert (verdict["code"], verdict["node"], verdict["hop"]) == ("HOST_PORT_CONFLICT", "node-2", "destination-node"), explain(
        broken
    )
    healed = ask(lab, question)
    assert healed["verdict"]["code"] == "NO_FAULT_FOUND", explain(healed)


def test_the_host_network_pod_as_source_resolves_with_its_nodes_resolver_and_reaches_a_service(lab: Lab) -> None:
    """dnsPolicy ClusterFirst on a host-network pod: the node's resolv.conf, which cannot resolve the
    service's name. Expected, said so, and the path is checked by address."""
    name = exporters(lab)["node-1"]["metadata"]["name"]
    result = ask(lab, f"why can't {name} in monitoring reach api")
    assert result["verdict"]["code"] == "NO_FAULT_FOUND", explain(result)
    dns = step(result, f"source {name}: DNS")
    assert dns["status"] == "pass" and "would not resolve" in dns["summary"] and "by address" in dns["summary"], explain(result)
    assert not any(f["code"] == "DNS_RESOLUTION_FAILED" for f in result["findings"])


def test_a_node_reaches_a_pod_service(lab: Lab) -> None:
    result = ask(lab, "why can't node-1 reach prometheus")
    assert result["verdict"]["code"] == "NO_FAULT_FOUND", explain(result)
    assert step(result, "source node-1: probes")["status"] == "pass"


def test_outside_reaches_the_nodeport_the_host_network_pods_serve(lab: Lab) -> None:
    result = ask(lab, f"why can't external traffic reach nodeport {NODE_PORT} on node-2")
    assert result["verdict"]["code"] == "NO_FAULT_FOUND", explain(result)
    assert step(result, "ingress node-2")["status"] == "pass", explain(result)


def test_a_node_traced_to_a_host_network_pod_goes_nic_to_nic(lab: Lab) -> None:
    """Both ends in their nodes' own namespaces: the request is seen on node-1's eth0, then node-2's eth0
    (in node-2's namespace, where the host-network pod listens), and the result says neither side has
    a pod interface."""
    name = exporters(lab)["node-2"]["metadata"]["name"]
    result = ask(lab, f"why can't node-1 reach pod {name} in monitoring on port 9100", "--trace")
    assert result["verdict"]["code"] == "NO_FAULT_FOUND", explain(result)
    assert result["trace"] and all(r["seen"] is True for r in result["trace"]), result["trace"]
    request = [(r["node"], r["interface"], r["netns"]) for r in result["trace"] if r["direction"] == "request"]
    assert request[0] == ("node-1", "eth0", lab.node("node-1")["netns"])
    assert request[-1] == ("node-2", "eth0", lab.node("node-2")["netns"])
    summary = step(result, "trace ")["summary"]
    assert "source is node-1's own network namespace" in summary and "destination is node-2's own network namespace" in summary


def test_a_pod_traced_to_a_host_network_pod_on_another_node_stops_watching_at_the_masquerade(lab: Lab) -> None:
    """A pod's packets to another node's address leave its node masqueraded, their marked source port
    rewritten: the trace watches the pod side, sees the probe there and back, and says where and why it
    stops watching, instead of reading the rewritten packets as lost."""
    name = exporters(lab)["node-2"]["metadata"]["name"]
    src = next(p for p in lab.pods(app="frontend") if p["node"] != "node-2")
    result = ask(lab, f"why can't pod {src['name']} in shop reach pod {name} in monitoring on port 9100", "--trace")
    assert result["verdict"]["code"] == "NO_FAULT_FOUND", explain(result)
    assert result["trace"] and all(r["seen"] is True for r in result["trace"]), result["trace"]
    assert {r["node"] for r in result["trace"]} == {src["node"]}
    summary = step(result, "trace ")["summary"]
    assert "masquerades the probe" in summary and "MASQUERADE" in summary, summary


def test_lab_down_removes_the_pod_cgroups(tmp_path: Path) -> None:
    spec = hostnet_spec(tmp_path / "hostnet.yaml")
    prefix = unique_prefix("hd")
    with running_lab(prefix, "--nodes", "2", "--spec", str(spec)):
        assert cgroups.lab_root(prefix).is_dir()
    assert not cgroups.lab_root(prefix).exists()
