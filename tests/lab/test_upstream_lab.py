"""The lab on official release binaries (`kubereach lab up --kubernetes DIR`), end to end.

Runs only with KUBEREACH_LAB_KUBERNETES=DIR (marker `kubernetes`: skipped without it, never a CI
failure) and as root. What it holds the lab to: the real controllers made the pods and EndpointSlices,
the lab built and reported the pods, a real kube-proxy routes service traffic in each node namespace,
kubectl accepts the status' kubeconfig, the bot answers with a token bound to exactly the chart's
ClusterRole (and is refused anything else), and `lab down` leaves nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.plan import LabOptions, make_plan
from lab.spec import load_spec
from tests.lab.labkit import Lab, eventually, kubereach, running_lab, unique_prefix

pytestmark = [pytest.mark.kubernetes, pytest.mark.lab]
NODES = 2


@pytest.fixture(scope="module")
def binaries() -> Path:
    return Path(os.environ["KUBEREACH_LAB_KUBERNETES"])


@pytest.fixture(scope="module")
def lab(binaries: Path) -> Iterator[Lab]:
    with running_lab(unique_prefix("up"), "--nodes", str(NODES), "--kubernetes", str(binaries)) as running:
        yield running


def kubectl(binaries: Path, kubeconfig: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binaries / "kubectl"), "--kubeconfig", kubeconfig, *args], capture_output=True, text=True, timeout=60, check=check
    )


def kubectl_json(binaries: Path, kubeconfig: str, *args: str) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(kubectl(binaries, kubeconfig, *args, "-o", "json").stdout)
    return answer


def bot_kubeconfig(lab: Lab) -> str:
    config = yaml.safe_load(Path(lab.status["config"]).read_text())
    return str(config["kubeconfig"])


def test_status_names_the_upstream_version_and_a_kubeconfig_kubectl_accepts(lab: Lab, binaries: Path) -> None:
    version = subprocess.run([str(binaries / "kube-apiserver"), "--version"], capture_output=True, text=True, check=True).stdout
    assert lab.status["kubernetes"] == version.split()[-1]
    nodes = kubectl_json(binaries, lab.status["kubeconfig"], "get", "nodes")["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == [f"node-{i}" for i in range(1, NODES + 1)]
    for node in nodes:
        assert {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"] == "True"
        assert node["status"]["nodeInfo"]["kubeletVersion"] == lab.status["kubernetes"]


def test_the_real_controllers_made_the_pods_and_the_lab_built_them_where_the_spec_says(lab: Lab, binaries: Path) -> None:
    plan = make_plan(load_spec(), LabOptions(prefix=lab.prefix, nodes=NODES))
    pods = kubectl_json(binaries, lab.status["kubeconfig"], "get", "pods", "-A")["items"]
    for w in plan.spec.workloads:
        mine = [
            p
            for p in pods
            if p["metadata"]["namespace"] == w.namespace and all(p["metadata"]["labels"].get(k) == v for k, v in w.labels.items())
        ]
        assert len(mine) == w.replicas, w.name
        assert sorted(p["spec"]["nodeName"] for p in mine) == sorted(
            q.node for q in plan.pods if q.workload_name == w.name and q.namespace == w.namespace
        )
        for pod in mine:
            assert pod["metadata"]["ownerReferences"][0]["kind"] in ("ReplicaSet", "StatefulSet", "DaemonSet")
            node = plan.node(pod["spec"]["nodeName"])
            assert pod["status"]["podIP"].startswith(node.pod_cidr.rsplit(".", 1)[0] + ".")
    agents = [p for p in pods if p["metadata"]["labels"].get("app.kubernetes.io/name") == "kubereach-agent"]
    assert sorted(p["spec"]["nodeName"] for p in agents) == [n.name for n in plan.nodes]


def test_endpointslices_come_from_the_real_controller_with_the_pods_addresses(lab: Lab, binaries: Path) -> None:
    slices = kubectl_json(
        binaries, lab.status["kubeconfig"], "get", "endpointslices", "-n", "shop", "-l", "kubernetes.io/service-name=api"
    )
    assert {s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] for s in slices["items"]} == {
        "endpointslice-controller.k8s.io"
    }
    addresses = sorted(a for s in slices["items"] for e in s["endpoints"] for a in e["addresses"])
    assert addresses == sorted(p["ip"] for p in lab.pods(app="api"))


def test_a_real_kube_proxy_routes_service_traffic_in_each_node(lab: Lab) -> None:
    api = lab.service("shop", "api")
    for src in lab.pods(app="frontend"):
        result = eventually(
            lambda s=src: lab.tcp(s, api["cluster_ip"], 8080), lambda r: r.get("ok") is True, what="frontend → api VIP"
        )
        assert result["ok"]


def test_the_bot_answers_with_the_charts_role_and_is_refused_the_rest(lab: Lab, binaries: Path) -> None:
    config = bot_kubeconfig(lab)
    assert config != lab.status["kubeconfig"], "the bot must not use the lab's admin credentials"
    assert kubectl(binaries, config, "auth", "can-i", "list", "pods", "--all-namespaces").stdout.strip() == "yes"
    assert kubectl(binaries, config, "auth", "can-i", "list", "secrets", "--all-namespaces", check=False).stdout.strip() == "no"
    denied = kubectl(binaries, config, "get", "secrets", "-A", check=False)
    assert denied.returncode != 0 and "Forbidden" in denied.stderr
    result = json.loads(kubereach("--config", lab.status["config"], "ask", "frontend -> api:8080", "--json").stdout)
    assert result["verdict"]["code"] == "NO_FAULT_FOUND", json.dumps(result["verdict"])
    denied_policy = json.loads(kubereach("--config", lab.status["config"], "ask", "frontend -> ledger:443", "--json").stdout)
    assert denied_policy["verdict"]["code"] == "NETWORK_POLICY_DENIES_INGRESS"


def test_a_hung_kube_proxy_while_endpoints_change_is_stale_rules(lab: Lab, binaries: Path) -> None:
    """SIGSTOP the real kube-proxy of a frontend's node, replace the api pods, ask; SIGCONT heals."""
    state = json.loads(Path(f"/run/kubereach/{lab.prefix}/state.json").read_text())
    frontend = lab.pods(app="frontend")[0]
    pid = state["processes"][f"kube-proxy/{frontend['node']}"]
    question = f"-n shop pod/{frontend['name']} -> svc/api:8080"
    old_ips = {p["ip"] for p in lab.pods(app="api")}
    os.kill(pid, signal.SIGSTOP)
    try:
        kubectl(binaries, lab.status["kubeconfig"], "delete", "pods", "-n", "shop", "-l", "app=api", "--wait=true")
        eventually(
            lambda: {p["ip"] for p in lab.refresh() and lab.pods(app="api")},
            lambda ips: len(ips) == 3 and not ips & old_ips and "" not in ips,
            deadline_s=60,
            what="the api pods replaced by the ReplicaSet controller",
        )
        result = json.loads(kubereach("--config", lab.status["config"], "ask", question, "--json").stdout)
        assert (result["verdict"]["code"], result["verdict"]["node"]) == ("KUBE_PROXY_RULES_STALE", frontend["node"]), result[
            "verdict"
        ]
    finally:
        os.kill(pid, signal.SIGCONT)
    eventually(
        lambda: json.loads(kubereach("--config", lab.status["config"], "ask", question, "--json").stdout)["verdict"]["code"],
        lambda code: code == "NO_FAULT_FOUND",
        deadline_s=60,
        what="kube-proxy resyncing once it runs again",
    )


def test_lab_down_leaves_nothing(lab: Lab) -> None:
    lab.cli("down")
    assert not [n for n in os.listdir("/var/run/netns") if n.startswith(f"{lab.prefix}-")]
    assert not Path(f"/run/kubereach/{lab.prefix}").exists()
    leftovers = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if f"/run/kubereach/{lab.prefix}/" in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    leftovers.append(entry.name)
            except OSError:
                continue
    assert leftovers == []
