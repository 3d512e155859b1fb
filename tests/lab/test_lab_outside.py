"""The world outside the cluster, driven through `kubereach lab up` and checked with plain probes:
pods reach the outside host (masqueraded by their node as the CNI does), cluster DNS forwards
external names to the outside resolver, and the outside host reaches services through NodePorts,
external IPs and the load-balancer IP the lab assigns — in both kube-proxy modes and two CNI modes.
Each fault on these paths (`kubereach lab fault …`) breaks its path, leaves a neighbouring one
working, and `lab heal` restores it."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from kubereach.agent.v1 import agent_pb2 as pb
from lab.apiclient import LabApi
from lab.errors import LabError
from lab.state import load_state
from tests.lab.labkit import Lab, eventually, kubereach, running_lab, unique_prefix
from tests.lab.test_agent_lab_modes import agents_of

pytestmark = pytest.mark.lab

MODES = {
    "flannel-iptables": ("--cni", "flannel-vxlan", "--proxy", "iptables"),
    "calico-nftables": ("--cni", "calico", "--proxy", "nftables"),
}


@pytest.fixture(scope="module", params=list(MODES))
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    with running_lab(unique_prefix("o"), "--nodes", "3", *MODES[request.param]) as running:
        yield running


def outside(lab: Lab) -> dict[str, Any]:
    return dict(lab.status["outside"])


def from_outside(lab: Lab, host: str, port: int) -> dict[str, Any]:
    return lab.probe(outside(lab)["netns"], [{"kind": "tcp", "host": host, "port": port, "timeout": 1.5}])[0]


def test_status_describes_the_outside_world(lab: Lab) -> None:
    world = outside(lab)
    assert world["running"] is True
    assert world["host"] == "203.0.113.10" and world["resolver"] == "203.0.113.53" and world["domain"] == "example.com"
    web = lab.service("shop", "web")
    assert web["type"] == "LoadBalancer" and web["load_balancer_ips"] == ["198.51.100.10"]
    assert lab.service("shop", "frontend-nodeport")["ports"][0]["node_port"] == 30080
    text = lab.cli("status").stdout
    assert "shop/payments-gateway" in text and "-> api.example.com" in text
    assert any("shop/redis-headless" in line and " None " in line for line in text.splitlines())


def test_pods_on_every_node_reach_the_outside_host(lab: Lab) -> None:
    for node in ("node-1", "node-2"):
        src = next(p for p in lab.status["pods"] if p["node"] == node and p["labels"].get("app") in {"frontend", "api"})
        result = lab.tcp(src, outside(lab)["host"], 80)
        assert result["ok"], (node, result)
        assert result["banner"].startswith("kubereach-lab outside/www 80/TCP")


def test_outside_host_only_knows_the_node_network(lab: Lab) -> None:
    """The outside host has no route to pod addresses: pod egress works only because nodes masquerade it."""
    routes = subprocess.run(
        ["ip", "-n", outside(lab)["netns"], "route", "get", "10.244.1.2"], capture_output=True, text=True, check=False
    )
    assert routes.returncode != 0
    for node in lab.status["nodes"]:
        rules = subprocess.run(
            ["ip", "netns", "exec", node["netns"], "iptables", "-t", "nat", "-S"], capture_output=True, text=True, check=True
        ).stdout
        assert "MASQUERADE" in rules and "10.244.0.0/16" in rules


def test_cluster_dns_forwards_external_names_upstream(lab: Lab) -> None:
    src = lab.pod(app="frontend")
    external = lab.dns(src, "www.example.com.")
    assert external["ok"] and external["answers"] == ["203.0.113.10"]
    missing = lab.dns(src, "nothing-here.example.com.")
    assert missing["outcome"] == "NXDOMAIN"
    internal = lab.dns(src, "api.shop.svc.cluster.local.")
    assert internal["ok"] and internal["answers"] == [lab.service("shop", "api")["cluster_ip"]]


def test_headless_and_external_name_services_resolve(lab: Lab) -> None:
    src = lab.pod(app="frontend")
    headless = lab.dns(src, "redis-headless.shop.svc.cluster.local.")
    assert headless["ok"] and headless["answers"] == [lab.pod(app="redis")["ip"]]
    assert lab.service("shop", "redis-headless")["cluster_ip"] == "None"
    alias = lab.dns(src, "payments-gateway.shop.svc.cluster.local.", timeout=3.0)
    assert alias["ok"] and alias["answers"] == ["api.example.com.", "203.0.113.10"]
    assert lab.service("shop", "payments-gateway")["external_name"] == "api.example.com"


@pytest.mark.parametrize("node", ["node-1", "node-2"])
def test_outside_reaches_the_nodeport_on_each_node(lab: Lab, node: str) -> None:
    result = from_outside(lab, lab.node(node)["ip"], 30080)
    assert result["ok"], result
    assert result["banner"].startswith("kubereach-lab shop/frontend-")


def test_outside_reaches_the_external_ip_and_the_load_balancer(lab: Lab) -> None:
    external_ip = lab.service("shop", "frontend-nodeport")["external_ips"][0]
    lb_ip = lab.service("shop", "web")["load_balancer_ips"][0]
    for host in (external_ip, lb_ip):
        result = from_outside(lab, host, 80)
        assert result["ok"], (host, result)
        assert result["banner"].startswith("kubereach-lab shop/frontend-")
    closed = from_outside(lab, lb_ip, 81)
    assert not closed["ok"]


def app_on(lab: Lab, app: str, node: str) -> dict[str, Any]:
    return next(p for p in lab.status["pods"] if p["labels"].get("app") == app and p["node"] == node)


def node_without(lab: Lab, app: str) -> str:
    busy = {p["node"] for p in lab.pods(app=app)}
    return next(n["name"] for n in lab.status["nodes"] if n["name"] not in busy)


def node_with(lab: Lab, app: str) -> str:
    return str(lab.pods(app=app)[0]["node"])


Probe = Callable[[Lab], bool]


def nodeport_from_outside(pick: Callable[[Lab], str]) -> Probe:
    return lambda lab: bool(from_outside(lab, lab.node(pick(lab))["ip"], 30080)["ok"])


def pod_to_outside(node: str) -> Probe:
    return lambda lab: bool(lab.tcp(app_on(lab, "api", node), outside(lab)["host"], 80, timeout=1.0)["ok"])


def resolves(name: str) -> Probe:
    return lambda lab: bool(lab.dns(lab.pod(app="api"), name, timeout=3.0)["ok"])


def to_service(app: str, namespace: str, service: str, port: int) -> Probe:
    return lambda lab: bool(lab.tcp(lab.pod(app=app), lab.service(namespace, service)["cluster_ip"], port, timeout=1.0)["ok"])


def frontend_to_outside(lab: Lab) -> bool:
    return bool(lab.tcp(lab.pod(app="frontend"), outside(lab)["host"], 80, timeout=1.0)["ok"])


@dataclass(frozen=True)
class Case:
    fault: str
    args: tuple[str, ...]
    works: Probe
    """The path the fault breaks."""
    unaffected: Probe
    """A neighbouring path the fault must leave working."""


CASES = [
    Case(
        "nodeport-no-local-endpoints",
        ("--service", "shop/frontend-nodeport"),
        nodeport_from_outside(lambda lab: node_without(lab, "frontend")),
        nodeport_from_outside(lambda lab: node_with(lab, "frontend")),
    ),
    Case("egress-masquerade-missing", ("--node", "node-1"), pod_to_outside("node-1"), pod_to_outside("node-2")),
    Case("node-no-route-out", ("--node", "node-2"), pod_to_outside("node-2"), pod_to_outside("node-3")),
    Case("upstream-dns-unreachable", (), resolves("www.example.com."), resolves("api.shop.svc.cluster.local.")),
    Case("policy-egress-ipblock", (), frontend_to_outside, to_service("frontend", "shop", "api", 8080)),
    Case(
        "hairpin-off",
        ("--pod", "shop/redis-0"),
        to_service("redis", "shop", "redis", 6379),
        to_service("redis", "shop", "api", 8080),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.fault for c in CASES])
def test_fault_breaks_its_path_only_and_heal_restores_it(lab: Lab, case: Case) -> None:
    if case.fault == "hairpin-off" and lab.status["cni"] == "calico":
        refused = lab.cli("fault", case.fault, *case.args, check=False)
        assert refused.returncode == 2 and "no bridge" in refused.stderr
        return
    lab.refresh()
    assert eventually(lambda: case.works(lab), bool, what=f"healthy path before {case.fault}")
    lab.cli("fault", case.fault, *case.args)
    try:
        eventually(lambda: case.works(lab), lambda ok: not ok, what=f"{case.fault} breaking the path")
        assert case.unaffected(lab), f"{case.fault} broke more than it should"
    finally:
        lab.cli("heal")
    eventually(lambda: case.works(lab), bool, what=f"the path after healing {case.fault}")


def test_host_port_collision_puts_a_stray_on_a_host_network_pods_port_and_heal_removes_both(lab: Lab) -> None:
    """The pod is scheduled with the node's IP and its port; what answers node-2:9100 is the stray."""
    node = lab.node("node-2")
    src = lab.pod(app="frontend")
    assert not lab.tcp(src, node["ip"], 9100)["ok"], "nothing listens on 9100 before the fault"
    lab.cli("fault", "host-port-collision", "--node", "node-2")
    try:
        pod = json.loads(kubectl_get(lab, "monitoring", "pods/node-exporter-node-2"))
        assert pod["spec"]["hostNetwork"] is True and pod["status"]["podIP"] == node["ip"]
        answered = lab.tcp(src, node["ip"], 9100)
        assert answered["ok"] and "node-exporter" not in answered["banner"], answered
        assert not lab.tcp(src, lab.node("node-1")["ip"], 9100)["ok"], "only node-2's port is taken"
    finally:
        lab.cli("heal")
    eventually(lambda: lab.tcp(src, node["ip"], 9100)["ok"], lambda ok: not ok, what="the stray gone after heal")
    gone = kubectl_get(lab, "monitoring", "pods/node-exporter-node-2", check=False)
    assert "NotFound" in gone or "not found" in gone


def kubectl_get(lab: Lab, namespace: str, what: str, check: bool = True) -> str:
    """One object from the lab's API as JSON text (or the API's error), as the bot reads it."""
    state = load_state(lab.prefix)
    assert state is not None
    api = LabApi.from_files(state.api_url, state.token_file, state.ca_file)
    try:
        return json.dumps(api.get(f"/api/v1/namespaces/{namespace}/{what}"))
    except LabError as exc:
        if check:
            raise
        return str(exc)


def test_a_local_load_balancer_is_health_checked_per_node(lab: Lab) -> None:
    """externalTrafficPolicy Local on the LoadBalancer: each node's kube-proxy answers its health check
    node port with 200 where a frontend pod runs and 503 where none does, as a cloud LB probes it."""
    busy, idle = node_with(lab, "frontend"), node_without(lab, "frontend")
    local = sum(1 for p in lab.pods(app="frontend") if p["node"] == busy)
    ports: list[int] = []

    def health(node: str) -> dict[str, Any]:
        probe = {"kind": "http", "host": lab.node(node)["ip"], "port": ports[0], "timeout": 1.5}
        return lab.probe(outside(lab)["netns"], [probe])[0]

    lab.cli("fault", "nodeport-no-local-endpoints", "--service", "shop/web")
    try:
        ports.append(eventually(lambda: lab.refresh() and lab.service("shop", "web")["health_check_node_port"], what="a port"))
        answered = eventually(lambda: health(busy), lambda r: r.get("status") == 200, what=f"200 from {busy}")
        assert json.loads(answered["body"]) == {
            "service": {"namespace": "shop", "name": "web"},
            "localEndpoints": local,
            "serviceProxyHealthy": True,
        }
        refused = eventually(lambda: health(idle), lambda r: r.get("status") == 503, what=f"503 from {idle}")
        assert json.loads(refused["body"])["localEndpoints"] == 0
    finally:
        lab.cli("heal")
    eventually(lambda: health(busy), lambda r: not r["ok"], what="the health check listener closed after heal")


def lb_from_outside(lab: Lab) -> dict[str, Any]:
    return from_outside(lab, lab.service("shop", "web")["load_balancer_ips"][0], 80)


def test_a_local_load_balancer_sent_to_a_node_without_an_endpoint_is_nodeport_no_local_endpoints(lab: Lab) -> None:
    """externalTrafficPolicy Local on shop/web, and the cloud's route for its ingress IP moved to a
    node running no frontend (the fault): the outside host's connections to the load balancer die
    there, and asked about the load balancer on that node the bot names it NODEPORT_NO_LOCAL_ENDPOINTS;
    heal sends the IP back to the edge node and clients get through again."""
    idle = node_without(lab, "frontend")
    assert lb_from_outside(lab)["ok"]
    lab.cli("fault", "nodeport-no-local-endpoints", "--service", "shop/web", "--node", idle)
    try:
        eventually(lambda: lb_from_outside(lab), lambda r: not r["ok"], what=f"the load balancer dropped on {idle}")
        result = ask(lab, f"why can't clients reach svc web's load balancer on {idle}")
    finally:
        lab.cli("heal")
    verdict = result["verdict"]
    assert (verdict["code"], verdict["node"], verdict["hop"]) == ("NODEPORT_NO_LOCAL_ENDPOINTS", idle, "destination-node"), (
        explain(result)
    )
    assert "externalTrafficPolicy: Local" in verdict["summary"] and verdict["remediation"]
    eventually(lambda: lb_from_outside(lab), lambda r: bool(r["ok"]), what="the load balancer back after heal")


def test_a_local_load_balancer_sent_to_a_node_with_an_endpoint_is_no_fault_found(lab: Lab) -> None:
    """The same policy with the ingress IP on the edge node (node-1, the lab's default), which runs a
    frontend: clients get through, and the bot, asked about the load balancer on that node, finds no fault."""
    edge = lab.status["nodes"][0]["name"]
    assert edge in {p["node"] for p in lab.pods(app="frontend")}, "the default spec places a frontend on the edge node"
    state = load_state(lab.prefix)
    assert state is not None
    api = LabApi.from_files(state.api_url, state.token_file, state.ca_file)
    path = "/api/v1/namespaces/shop/services/web"
    api.merge_patch(path, {"spec": {"externalTrafficPolicy": "Local"}})
    try:
        port = eventually(lambda: lab.refresh() and lab.service("shop", "web")["health_check_node_port"], what="a port")
        # kube-proxy on the edge node has taken the policy in once it answers the health check.
        health = {"kind": "http", "host": lab.node(edge)["ip"], "port": port, "timeout": 1.5}
        eventually(lambda: lab.probe(outside(lab)["netns"], [health])[0], lambda r: r.get("status") == 200, what="Local")
        assert lb_from_outside(lab)["ok"]
        result = ask(lab, f"why can't clients reach svc web's load balancer on {edge}")
    finally:
        api.merge_patch(path, {"spec": {"externalTrafficPolicy": "Cluster"}})
    assert result["verdict"]["code"] == "NO_FAULT_FOUND", explain(result)
    dispatch = next(s for s in result["steps"] if s["name"] == f"ingress {edge}: load-balancer dispatch")
    assert dispatch["status"] == "pass" and "local endpoint" in dispatch["summary"], explain(result)


# ------------------------------------------------------------------ the agent's egress observations


def test_the_agent_reads_the_egress_masquerade_and_the_route_out_from_the_kernel(lab: Lab) -> None:
    """GetEgressNat names the CNI's masquerade rule, and says none matches once the chain is flushed;
    LookupRoute says "no route" once the node's route out is gone. Both heal back."""
    pod = app_on(lab, "api", "node-2")
    host = outside(lab)["host"]
    with agents_of(lab) as agents:
        agent = agents("node-2")

        def egress() -> Any:
            request = pb.GetEgressNatRequest(pod_ip=pod["ip"], destination=host, protocol=pb.PROTOCOL_TCP, port=80)
            return agent.GetEgressNat(request, timeout=10)

        found = egress()
        assert found.verdict == "translated" and found.out_interface == "eth0", found
        assert found.rules[-1].target == "MASQUERADE" and found.rules[-1].chain in ("FLANNEL-POSTRTG", "cali-nat-outgoing")
        with pytest.raises(grpc.RpcError) as elsewhere:
            elsewhere_ip = app_on(lab, "api", "node-1")["ip"]
            agent.GetEgressNat(
                pb.GetEgressNatRequest(pod_ip=elsewhere_ip, destination=host, protocol=pb.PROTOCOL_TCP), timeout=10
            )
        assert elsewhere.value.code() == grpc.StatusCode.NOT_FOUND, "only a pod's own node masquerades it"
        with pytest.raises(grpc.RpcError) as bad:
            agent.GetEgressNat(
                pb.GetEgressNatRequest(pod_ip=pod["ip"], destination="example.com", protocol=pb.PROTOCOL_TCP), timeout=10
            )
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        lab.cli("fault", "egress-masquerade-missing", "--node", "node-2")
        try:
            flushed = eventually(egress, lambda r: r.verdict != "translated", what="the masquerade gone from the walk")
            assert flushed.verdict == "untranslated" and not flushed.possible, flushed
        finally:
            lab.cli("heal")
        assert eventually(egress, lambda r: r.verdict == "translated", what="the masquerade back")
        route = pb.LookupRouteRequest(destination=host)
        assert agent.LookupRoute(route, timeout=10).route.type == pb.ROUTE_TYPE_UNICAST
        lab.cli("fault", "node-no-route-out", "--node", "node-2")
        try:
            gone = agent.LookupRoute(route, timeout=10)
            assert gone.route.type == pb.ROUTE_TYPE_NO_ROUTE and gone.error, gone
        finally:
            lab.cli("heal")


# ------------------------------------------------------------------ `kubereach ask` on these paths
# Each new path asked about as an on-call engineer would phrase it: healthy → NO_FAULT_FOUND; with a
# fault injected through `kubereach lab fault` → its verdict, node and hop, in both lab modes. The bot
# is never told which fault is in place.


def ask(lab: Lab, question: str) -> dict[str, Any]:
    """One investigation through the CLI, as JSON."""
    proc = kubereach("--config", lab.status["config"], "ask", question, "--json", "--no-history", timeout=120)
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def explain(result: dict[str, Any]) -> str:
    return json.dumps(
        {
            "verdict": result["verdict"],
            "findings": result.get("findings"),
            "steps": [(s["status"], s["name"], s["summary"]) for s in result.get("steps", [])],
        },
        indent=1,
    )


@dataclass(frozen=True)
class AskCase:
    """A fault (None: the healthy lab), the question asked while it is in place, and the verdict."""

    name: str
    fault: Callable[[Lab], tuple[str, ...]] | None
    question: Callable[[Lab], str]
    code: str
    node: Callable[[Lab], str | None]
    hop: str | None
    modes: tuple[str, ...] = tuple(MODES)
    """The lab modes the case applies to (a bridge-only fault does not apply to calico). In the other
    modes the fault is expected to be refused (`lab fault` exits 2 saying why)."""


def said(text: str) -> Callable[[Lab], str]:
    return lambda lab: text


def at(node: str | None) -> Callable[[Lab], str | None]:
    return lambda lab: node


def dns_pods_node(lab: Lab) -> str | None:
    """The node of the cluster DNS's pods when they all run on one (the node UPSTREAM_DNS_FAILED names)."""
    nodes = {p["node"] for p in lab.pods(**{"k8s-app": "kube-dns"})}
    return nodes.pop() if len(nodes) == 1 else None


def upstream_dns_unreachable(lab: Lab) -> tuple[str, ...]:
    return ("upstream-dns-unreachable",)


def pod_asks(app: str, node: str, target: str) -> Callable[[Lab], str]:
    """A question from the one pod of `app` on `node` (so that the verdict's node is that pod's)."""
    return lambda lab: f"why can't pod {app_on(lab, app, node)['name']} reach {target}"


def on(fault: str, *args: str) -> Callable[[Lab], tuple[str, ...]]:
    return lambda lab: (fault, *args)


def pod_fault(fault: str, app: str, node: str) -> Callable[[Lab], tuple[str, ...]]:
    def args(lab: Lab) -> tuple[str, ...]:
        pod = app_on(lab, app, node)
        return (fault, "--pod", f"{pod['namespace']}/{pod['name']}")

    return args


def etp_local(service: str) -> Callable[[Lab], tuple[str, ...]]:
    return lambda lab: ("nodeport-no-local-endpoints", "--service", service)


def node_of(app: str) -> Callable[[Lab], str | None]:
    return lambda lab: str(lab.pod(app=app)["node"])


# Healthy paths: every new kind of question answered NO_FAULT_FOUND on the healthy lab.
HEALTHY: list[AskCase] = [
    AskCase("external-name", None, said("why can't frontend reach www.example.com"), "NO_FAULT_FOUND", at(None), None),
    AskCase("external-name-service", None, said("why can't api reach svc payments-gateway"), "NO_FAULT_FOUND", at(None), None),
    AskCase("headless-service", None, said("frontend -> redis-headless:6379"), "NO_FAULT_FOUND", at(None), None),
    AskCase("pod-to-outside-ip", None, said("why can't frontend reach 203.0.113.10:80"), "NO_FAULT_FOUND", at(None), None),
    AskCase("pod-to-url", None, said("why can't api reach https://www.example.com"), "NO_FAULT_FOUND", at(None), None),
    AskCase("node-to-service", None, said("why can't node-1 reach api"), "NO_FAULT_FOUND", at(None), None),
    AskCase("node-to-service-port", None, said("node-3 -> svc/redis:6379"), "NO_FAULT_FOUND", at(None), None),
    AskCase(
        "nodeport-on-a-node",
        None,
        said("why can't external traffic reach nodeport 30080 on node-2"),
        "NO_FAULT_FOUND",
        at(None),
        None,
    ),
    AskCase(
        "load-balancer-by-service", None, said("can clients reach svc web's load balancer?"), "NO_FAULT_FOUND", at(None), None
    ),
    AskCase("outside-to-external-ip", None, said("outside → 198.51.100.100:80"), "NO_FAULT_FOUND", at(None), None),
    # A pod reaching itself through its own service: the VIP may pick the pod itself (hairpin).
    AskCase(
        "pod-to-its-own-service", None, said("why can't redis-0 reach its own service redis"), "NO_FAULT_FOUND", at(None), None
    ),
    AskCase("pod-to-its-own-service-arrow", None, said("redis → svc/redis:6379"), "NO_FAULT_FOUND", at(None), None),
]
# Faults on the new paths: each gives its verdict, node and hop.
FAULTS: list[AskCase] = [
    AskCase(
        "upstream-dns-unreachable",
        upstream_dns_unreachable,
        said("why can't frontend reach example.com"),
        "UPSTREAM_DNS_FAILED",
        dns_pods_node,
        "dns",
    ),
    AskCase(
        "upstream-dns-unreachable-external-name-service",
        upstream_dns_unreachable,
        said("why can't api reach svc payments-gateway"),
        "UPSTREAM_DNS_FAILED",
        dns_pods_node,
        "dns",
    ),
    AskCase(
        "upstream-dns-unreachable-with-port",
        upstream_dns_unreachable,
        said("why can't api reach www.example.com:80"),
        "UPSTREAM_DNS_FAILED",
        dns_pods_node,
        "dns",
    ),
    AskCase(
        "egress-masquerade-missing",
        on("egress-masquerade-missing", "--node", "node-2"),
        pod_asks("api", "node-2", "203.0.113.10:443"),
        "EGRESS_NOT_MASQUERADED",
        at("node-2"),
        "source-node",
    ),
    AskCase(
        "egress-masquerade-missing-url",
        on("egress-masquerade-missing", "--node", "node-3"),
        pod_asks("api", "node-3", "https://www.example.com"),
        "EGRESS_NOT_MASQUERADED",
        at("node-3"),
        "source-node",
    ),
    AskCase(
        "node-no-route-out-from-the-node",
        on("node-no-route-out", "--node", "node-2"),
        said("why can't node-2 reach 203.0.113.10:80"),
        "NODE_HAS_NO_ROUTE_OUT",
        at("node-2"),
        "source-node",
    ),
    AskCase(
        "node-no-route-out",
        on("node-no-route-out", "--node", "node-3"),
        pod_asks("frontend", "node-3", "203.0.113.10:80"),
        "NODE_HAS_NO_ROUTE_OUT",
        at("node-3"),
        "source-node",
    ),
    AskCase(
        "policy-egress-ipblock",
        pod_fault("policy-egress-ipblock", "frontend", "node-1"),
        pod_asks("frontend", "node-1", "203.0.113.10:80"),
        "NETWORK_POLICY_DENIES_EGRESS",
        at("node-1"),
        "policy",
    ),
    AskCase(
        "policy-egress-ipblock-url",
        pod_fault("policy-egress-ipblock", "api", "node-2"),
        pod_asks("api", "node-2", "https://www.example.com"),
        "NETWORK_POLICY_DENIES_EGRESS",
        at("node-2"),
        "policy",
    ),
    AskCase(
        "nodeport-no-local-endpoints",
        etp_local("shop/frontend-nodeport"),
        lambda lab: f"why can't external traffic reach nodeport 30080 on {node_without(lab, 'frontend')}",
        "NODEPORT_NO_LOCAL_ENDPOINTS",
        lambda lab: node_without(lab, "frontend"),
        "destination-node",
    ),
    AskCase(
        "nodeport-local-endpoint-on-the-node-asked-about",
        etp_local("shop/frontend-nodeport"),
        lambda lab: f"why can't external traffic reach nodeport 30080 on {node_with(lab, 'frontend')}",
        "NO_FAULT_FOUND",
        at(None),
        None,
    ),
    AskCase(
        "hairpin-off",
        lambda lab: ("hairpin-off", "--pod", "shop/redis-0"),
        said("why can't redis-0 reach its own service redis"),
        "HAIRPIN_BROKEN",
        node_of("redis"),
        "destination-node",
        modes=("flannel-iptables",),
    ),
    AskCase(
        "hairpin-off-arrow",
        lambda lab: ("hairpin-off", "--pod", "shop/redis-0"),
        said("redis → svc/redis:6379"),
        "HAIRPIN_BROKEN",
        node_of("redis"),
        "destination-node",
        modes=("flannel-iptables",),
    ),
    AskCase(
        "host-port-collision",
        lambda lab: ("host-port-collision", "--node", "node-2"),
        said("why can't frontend reach pod node-exporter-node-2 in monitoring on port 9100"),
        "HOST_PORT_CONFLICT",
        at("node-2"),
        "destination-node",
    ),
]


def _ask_case(lab: Lab, case: AskCase) -> None:
    mode = next(k for k, v in MODES.items() if (v[1], v[3]) == (lab.status["cni"], lab.status["proxy"]))
    if mode not in case.modes and case.fault is not None:
        # Under CI=true a skipped lab test is a failure: a fault that does not apply to this mode must
        # say so itself, refusing with one clear message (as hairpin-off does on a CNI without a bridge).
        refused = lab.cli("fault", *case.fault(lab), check=False)
        if refused.returncode == 0:
            lab.cli("heal")
        assert refused.returncode == 2 and refused.stderr.strip(), f"{case.name} is not for {mode}, yet the lab took it"
        return
    if mode not in case.modes:
        pytest.skip(f"{case.name} does not apply to {mode}")
    if case.fault is not None:
        lab.cli("fault", *case.fault(lab))
    try:
        result = ask(lab, case.question(lab))
    finally:
        if case.fault is not None:
            lab.cli("heal")
    verdict = result["verdict"]
    assert (verdict["code"], verdict["node"], verdict["hop"]) == (case.code, case.node(lab), case.hop), explain(result)
    if case.fault is not None and case.code != "NO_FAULT_FOUND":  # (a fault that leaves the asked path working)
        assert verdict["summary"] and verdict["remediation"], explain(result)
        assert any(s["status"] == "fail" for s in result["steps"]), "the verdict comes from a failing step with evidence"


@pytest.mark.parametrize("case", HEALTHY, ids=[c.name for c in HEALTHY])
def test_ask_on_a_healthy_path_finds_no_fault(lab: Lab, case: AskCase) -> None:
    _ask_case(lab, case)


@pytest.mark.parametrize("case", FAULTS, ids=[c.name for c in FAULTS])
def test_ask_names_the_fault_on_the_path_its_node_and_hop(lab: Lab, case: AskCase) -> None:
    _ask_case(lab, case)


# ------------------------------------------------- a node whose service NAT kube-proxy does not do


def test_a_node_whose_service_nat_is_done_outside_kube_proxy_is_said_not_inspected(lab: Lab) -> None:
    """`lab scenario foreign-service-proxy` on the node of a frontend pod: its kube-proxy stops, its
    rules move to tables of another name beside Cilium-shaped links, and service traffic still works.
    Asked about a service from that pod, the bot finds no fault and says, from the links the agent
    saw, that service NAT there is done by Cilium's eBPF load balancer and was not inspected; never
    that kube-proxy's rules are missing. `lab heal` gives the node back to kube-proxy."""
    pod = lab.pod(app="frontend")
    node = str(pod["node"])
    api = to_service("frontend", "shop", "api", 8080)
    try:
        lab.cli("scenario", "foreign-service-proxy", "--node", node)
        assert eventually(lambda: api(lab), bool, what="service traffic through the renamed rules")
        result = ask(lab, f"why can't pod {pod['name']} in shop reach svc api:8080")
    finally:
        lab.cli("heal")
    verdict = result["verdict"]
    assert verdict["code"] == "NO_FAULT_FOUND", explain(result)
    notes = [f["summary"] for f in result.get("findings") or [] if f.get("hop") == "service-nat"]
    assert any(
        n.startswith(f"service NAT on {node} is done by Cilium's eBPF service load balancer; not inspected") for n in notes
    ), explain(result)
    assert "link cilium_host" in " ".join(notes), explain(result)
    assert not {"KUBE_PROXY_RULES_MISSING", "KUBE_PROXY_RULES_STALE"} & {f["code"] for f in result.get("findings") or []}
    assert eventually(lambda: api(lab), bool, what="service traffic after heal")


# ------------------------------------------------------------------ the digest on the outside paths


def test_the_digest_lists_the_nodes_where_a_local_nodeport_drops(lab: Lab) -> None:
    """`kubereach digest --json` while shop/frontend-nodeport has externalTrafficPolicy Local: the
    nodes without a frontend pod are listed (their NodePort drops), the nodes with one are not."""
    idle, busy = node_without(lab, "frontend"), node_with(lab, "frontend")
    lab.cli("fault", "nodeport-no-local-endpoints", "--service", "shop/frontend-nodeport")
    try:
        proc = kubereach("--config", lab.status["config"], "digest", "--json", "--no-history", timeout=120)
    finally:
        lab.cli("heal")
    printed = json.loads(proc.stdout)
    (section,) = [s for s in printed["sections"] if s["name"] == "nodeports"]
    listed = {i["data"]["node"] for i in section["items"] if i["data"]["service"] == "shop/frontend-nodeport"}
    assert idle in listed and busy not in listed, section
    item = next(i for i in section["items"] if i["data"]["node"] == idle)
    assert f"no ready endpoint on {idle}; clients sent to {idle}:30080 are dropped" in item["text"]


# ------------------------------------------------------------------ how `kubereach ask` reads these questions


@dataclass(frozen=True)
class Reading:
    """A question on a new path, how `ask --json` must echo it (`read_as`), and its two ends as resolved."""

    question: str
    read_as: str
    source: str
    target: str


READINGS = [
    Reading(
        "why can't frontend reach example.com:80",
        "frontend → example.com:80",
        "deploy/frontend in shop",
        "example.com (outside the cluster)",
    ),
    Reading(
        "why can't external traffic reach nodeport 30080 on node-2",
        "outside → nodeport 30080 on node-2",
        "outside the cluster",
        "NodePort 30080 of svc/frontend-nodeport in shop on node/node-2",
    ),
    Reading(
        "why can't clients reach svc web's load balancer",
        "outside → svc/web load-balancer",
        "outside the cluster",
        "load balancer 198.51.100.10:80 of svc/web in shop",
    ),
    Reading("why can't node-1 reach api", "node-1 → api", "node/node-1", "svc/api in shop"),
]


@pytest.mark.parametrize("reading", READINGS, ids=[r.read_as for r in READINGS])
def test_ask_reads_questions_on_the_new_paths_as_meant(lab: Lab, reading: Reading) -> None:
    """Through the entry point: the question is read in its canonical form and both ends resolve (an
    external name is not taken for a service in a namespace, a node is not a missing workload)."""
    result = ask(lab, reading.question)
    assert (result["read_as"], result["source"], result["target"]) == (reading.read_as, reading.source, reading.target), explain(
        result
    )
    assert result["verdict"]["code"] not in ("SOURCE_NOT_FOUND", "TARGET_NOT_FOUND", "AMBIGUOUS_NAME"), explain(result)
