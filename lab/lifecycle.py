"""`kubereach lab up | down | status`: bring the whole lab up, take every trace of it away, report it.

Order of `up`: kernel data plane (fabric, nodes, pods) → agents and pod servers (in parallel) → the
API daemon (seeded with the lab's objects, running the EndpointSlice, DNS and NetworkPolicy
controllers) → one kube-proxy per node, ready once it has programmed its rules. Each step waits on
readiness signals, not on time. With `--kubernetes DIR` the nodes and agents come first and then the
upstream control plane on release binaries (`lab.upstream.control`), whose kubelet builds the pods.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab import build, cgroups, kernel, outside, processes
from lab.apiclient import LabApi
from lab.certs import generate_pki
from lab.errors import LabError
from lab.plan import CLUSTER_CIDR, SERVICE_CIDR, LabOptions, LabPlan, PodPlan, make_plan, pod_netns_name
from lab.spec import load_spec
from lab.state import STATE_ROOT, LabState, load_state, require_state, state_dir, write_config
from lab.upstream.binaries import UpstreamBinaries, find_binaries, kubernetes_version
from lab.upstream.flags import Layout
from lab.upstream.flags import process_markers as upstream_markers

READY_DEADLINE_S = 30.0
PYTHON = sys.executable


@dataclass(frozen=True)
class UpResult:
    """What `lab up` built and how long it took."""

    state: LabState
    seconds: float


def plan_of(state: LabState) -> LabPlan:
    """The plan the instance was built from (the spec copy in its directory)."""
    return make_plan(load_spec(Path(state.spec_file)), state.options)


def podserver_argv(plan: LabPlan, pod: PodPlan, state: LabState) -> list[str]:
    """The pod's process: its servers inside its namespace, as `ip netns exec` runs a container."""
    argv = ["ip", "netns", "exec", pod.netns, PYTHON, "-m", "lab.podserver", "--pod", pod.key, "--ready-fd", "{ready_fd}"]
    for port in pod.ports:
        argv += ["--listen", f"{port.port}/{port.protocol}"]
    if pod.role == "dns":
        argv += ["--dns-zone", str(state.path / "dns-zone.json"), "--upstream", outside.UPSTREAM_DNS_IP]
    return argv


def start_pods(plan: LabPlan, state: LabState, pods: list[PodPlan]) -> list[processes.Started]:
    """Start the pods' server processes (not waiting)."""
    started = []
    for pod in pods:
        s = processes.spawn(
            f"pod/{pod.key}",
            podserver_argv(plan, pod, state),
            state.path / "logs" / f"pod-{pod.namespace}-{pod.name}.log",
            with_ready_pipe=True,
        )
        started.append(s)
    return started


def start_agent(plan: LabPlan, state: LabState, node_name: str, listen: str = "127.0.0.1:0") -> processes.Started:
    """Start one node's agent in the root namespace on 127.0.0.1, working inside its node's namespace."""
    node = plan.node(node_name)
    pki = state.path / "pki"
    port_file = state.path / "agents" / f"{node.name}.port"
    port_file.parent.mkdir(exist_ok=True)
    port_file.unlink(missing_ok=True)
    argv = [
        PYTHON, "-m", "nodeagent",
        "--node", node.name,
        "--listen", listen,
        "--host-netns", node.netns,
        "--tls-cert", str(pki / f"agent-{node.name}.pem"),
        "--tls-key", str(pki / f"agent-{node.name}-key.pem"),
        "--tls-client-ca", str(pki / "ca.pem"),
        "--port-file", str(port_file),
        "--metrics-port", "0",
        "--ops-host", "127.0.0.1",
        "--metrics-port-file", str(port_file.with_suffix(".metrics")),
    ]  # fmt: skip
    return processes.spawn(f"agent/{node.name}", argv, state.path / "logs" / f"agent-{node.name}.log", with_ready_pipe=False)


SLACK_CHANNEL = ("CINCIDENTS", "incidents")
"""The lab's incident channel: may ask about every namespace."""
SLACK_SHOP_CHANNEL = ("CSHOPTEAM", "shop-team")
"""A team channel limited to the `shop` namespace."""
SLACK_USER = ("UONCALL", "oncall")
SLACK_DEV = ("UDEVELOPER", "dev")
"""A developer outside the network team's user group."""
SLACK_NETOPS = ("SNETOPS", "netops")
"""A user group (the on-call person is in it)."""


def start_slack(state: LabState) -> processes.Started:
    """Start the Slack stand-in with a fresh workspace (tokens and signing secret written 0600 for the config)."""
    workspace = {
        "bot_token": f"xoxb-lab-{secrets.token_hex(12)}",
        "app_token": f"xapp-lab-{secrets.token_hex(12)}",
        "signing_secret": secrets.token_hex(16),
        "channels": [{"id": cid, "name": name} for cid, name in (SLACK_CHANNEL, SLACK_SHOP_CHANNEL)],
        "users": [{"id": uid, "name": name} for uid, name in (SLACK_USER, SLACK_DEV)],
        "usergroups": [{"id": SLACK_NETOPS[0], "handle": SLACK_NETOPS[1], "users": [SLACK_USER[0]]}],
    }
    path = state.path / "slack-workspace.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(workspace, out)
    state.slack = {
        "workspace": str(path),
        "channel": SLACK_CHANNEL[0],
        "shop_channel": SLACK_SHOP_CHANNEL[0],
        "user": SLACK_USER[0],
        "developer": SLACK_DEV[0],
        "usergroup": SLACK_NETOPS[0],
    }
    argv = [PYTHON, "-m", "lab.slackstub", "--workspace", str(path), "--ready-fd", "{ready_fd}", f"--instance={state.prefix}"]
    return processes.spawn("slack", argv, state.path / "logs" / "slack.log", with_ready_pipe=True)


def wait_agents(state: LabState, nodes: list[str], deadline_s: float = READY_DEADLINE_S) -> dict[str, str]:
    """Wait for each agent's port file (written once it listens); return node -> 127.0.0.1:PORT."""
    end = time.monotonic() + deadline_s
    found: dict[str, str] = {}
    while len(found) < len(nodes):
        for node in nodes:
            if node in found:
                continue
            try:
                port = int((state.path / "agents" / f"{node}.port").read_text().strip())
            except (OSError, ValueError):
                if not processes.alive(state.processes.get(f"agent/{node}", -1)):
                    log = state.path / "logs" / f"agent-{node}.log"
                    raise LabError(f"the agent of {node} exited: {processes.last_log_line(log)}") from None
                continue
            found[node] = f"127.0.0.1:{port}"
        if len(found) < len(nodes):
            if time.monotonic() > end:
                raise LabError(f"agents did not start within {deadline_s:.0f} s")
            time.sleep(0.05)
    return found


def start_kube_proxy(plan: LabPlan, state: LabState, node_name: str) -> processes.Started:
    """Start one node's kube-proxy (it watches the API and programs the node's namespace)."""
    node = plan.node(node_name)
    status = state.path / "kube-proxy" / f"{node.name}.json"
    status.parent.mkdir(exist_ok=True)
    status.unlink(missing_ok=True)
    argv = [
        PYTHON, "-m", "lab.kubeproxy",
        "--node", node.name,
        "--node-ip", node.ip,
        "--netns", node.netns,
        "--api", state.api_url,
        "--token-file", state.token_file,
        "--ca-file", state.ca_file,
        "--mode", plan.options.proxy,
        "--nft-layout", plan.options.kube_proxy_layout,
        "--cluster-cidr", str(CLUSTER_CIDR),
        "--service-cidr", str(SERVICE_CIDR),
        "--status-file", str(status),
    ]  # fmt: skip
    return processes.spawn(
        f"kube-proxy/{node.name}", argv, state.path / "logs" / f"kube-proxy-{node.name}.log", with_ready_pipe=False
    )


def wait_kube_proxies_synced(
    state: LabState, nodes: list[str], deadline_s: float = READY_DEADLINE_S, after_generation: int = 0
) -> None:
    """Wait until each node's kube-proxy reports a sync newer than `after_generation`."""
    end = time.monotonic() + deadline_s
    pending = set(nodes)
    while pending:
        for node in list(pending):
            gen = kube_proxy_generation(state, node)
            if gen is not None and gen > after_generation:
                pending.discard(node)
            elif not processes.alive(state.processes.get(f"kube-proxy/{node}", -1)):
                log = state.path / "logs" / f"kube-proxy-{node}.log"
                raise LabError(f"kube-proxy on {node} exited: {processes.last_log_line(log)}")
        if pending and time.monotonic() > end:
            raise LabError(f"kube-proxy on {', '.join(sorted(pending))} did not sync within {deadline_s:.0f} s")
        if pending:
            time.sleep(0.05)


def kube_proxy_generation(state: LabState, node: str) -> int | None:
    """The last sync generation a node's kube-proxy reported, or None before its first sync."""
    try:
        return int(json.loads((state.path / "kube-proxy" / f"{node}.json").read_text())["generation"])
    except (OSError, ValueError, KeyError):
        return None


def up(options: LabOptions, spec_file: Path | None = None, root: Path = STATE_ROOT, kubernetes: Path | None = None) -> UpResult:
    """Build the lab; on any failure, take down what was built and re-raise.

    `kubernetes`: a directory of official release binaries; the control plane is then upstream's
    (`lab.upstream`) and the lab plays only kubelet and CNI.
    """
    binaries = find_binaries(kubernetes) if kubernetes is not None else None
    version = kubernetes_version(binaries) if binaries is not None else ""
    kernel.require_root()
    kernel.require_tools()
    t0 = time.monotonic()
    directory = state_dir(options.prefix, root)
    existing = load_state(options.prefix, root)
    if existing is not None:
        raise LabError(
            f"a lab with prefix {options.prefix!r} is already up", hint="run `kubereach lab down` first, or pick another --prefix"
        )
    spec = load_spec(spec_file)
    plan = make_plan(spec, options)
    down(options.prefix, root)  # leftovers of a crashed run
    directory.mkdir(parents=True, mode=0o700)
    spec_copy = directory / "spec.yaml"
    spec_copy.write_text(spec_file.read_text() if spec_file else (Path(__file__).parent / "specs" / "default.yaml").read_text())
    token_file = directory / "token"
    token_file.write_text(secrets.token_urlsafe(32))
    token_file.chmod(0o600)
    state = LabState(
        prefix=options.prefix,
        nodes=options.nodes,
        cni=options.cni,
        proxy=options.proxy,
        kube_proxy_layout=options.kube_proxy_layout,
        directory=str(directory),
        spec_file=str(spec_copy),
        token_file=str(token_file),
        kubeconfig=str(directory / "kubeconfig"),
        ca_file=str(directory / "pki" / "ca.pem"),
        kubernetes=version,
        kubernetes_dir=str(binaries.directory) if binaries is not None else "",
    )
    state.save()
    try:
        pki = generate_pki(directory / "pki", [n.name for n in plan.nodes])
        build.build_fabric(plan)
        outside.build_outside(plan)
        slack = start_slack(state)
        world = processes.spawn(
            "outside",
            outside.server_argv(options.prefix, PYTHON, outside.write_outside_zone(directory)),
            directory / "logs" / "outside.log",
            with_ready_pipe=True,
        )
        state.processes[slack.name] = slack.pid
        state.processes[world.name] = world.pid
        state.save()
        processes.wait_ready([world], READY_DEADLINE_S)
        if binaries is not None and plan.host_pods:
            raise LabError("hostNetwork workloads are not run on real Kubernetes binaries yet; drop them from the spec")
        if binaries is None:
            start_lab_control_plane(plan, state)
            bot_kubeconfig = None
        else:
            bot_kubeconfig = start_upstream_control_plane(plan, state, binaries)
        state.slack["origin"] = processes.wait_ready([slack], READY_DEADLINE_S)[slack.name].split()[-1]
        state.save()
        state.config_file = str(write_config(state, pki.ca, pki.bot.cert, pki.bot.key, kubeconfig=bot_kubeconfig))
        state.up_seconds = round(time.monotonic() - t0, 2)
        state.save()
    except BaseException:
        down(options.prefix, root)
        raise
    return UpResult(state, state.up_seconds)


def start_lab_control_plane(plan: LabPlan, state: LabState) -> None:
    """The lab's own control plane: pods and agents, the API daemon, one lab kube-proxy per node."""
    directory = state.path
    for pod in plan.pods:
        build.build_pod(plan, pod)
    starting = start_pods(plan, state, list(plan.pods))
    host = start_pods(plan, state, list(plan.host_pods))
    starting += host
    agents = [start_agent(plan, state, n.name) for n in plan.nodes]
    for s in [*starting, *agents]:
        state.processes[s.name] = s.pid
    state.save()
    processes.wait_ready(starting, READY_DEADLINE_S)
    state.agents = wait_agents(state, [n.name for n in plan.nodes])
    state.save()
    daemon = processes.spawn(
        "api-daemon",
        [PYTHON, "-m", "lab.daemon", "--state-dir", str(directory), "--ready-fd", "{ready_fd}"],
        directory / "logs" / "api-daemon.log",
        with_ready_pipe=True,
    )
    state.processes[daemon.name] = daemon.pid
    state.save()
    state.api_url = processes.wait_ready([daemon], READY_DEADLINE_S)[daemon.name].split()[-1]
    place_host_pods(state, plan, {p.key: s.pid for p, s in zip(plan.host_pods, host, strict=True)})
    proxies = [start_kube_proxy(plan, state, n.name) for n in plan.nodes]
    for s in proxies:
        state.processes[s.name] = s.pid
    state.save()
    wait_kube_proxies_synced(state, [n.name for n in plan.nodes])


def place_host_pods(state: LabState, plan: LabPlan, pids: dict[str, int]) -> None:
    """Put each host-network pod's server under the cgroup naming the pod's UID, as kubelet does once it
    has the pod from the API (which stamps the UID: only known once the API serves the pod)."""
    if not pids:
        return
    api = LabApi.from_files(state.api_url, state.token_file, state.ca_file)
    for pod in plan.host_pods:
        uid = api.get(f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}")["metadata"]["uid"]
        cgroups.place(state.prefix, uid, pids[pod.key])


def start_upstream_control_plane(plan: LabPlan, state: LabState, binaries: UpstreamBinaries) -> Path:
    """Agents, then the upstream control plane on release binaries (`lab.upstream.control`); the bot's kubeconfig."""
    from lab.upstream import control

    agents = [start_agent(plan, state, n.name) for n in plan.nodes]
    for s in agents:
        state.processes[s.name] = s.pid
    state.save()
    state.agents = wait_agents(state, [n.name for n in plan.nodes])
    state.save()
    return control.start(state, plan, binaries)


def down(prefix: str, root: Path = STATE_ROOT) -> list[str]:
    """Stop every lab process, delete every lab namespace and file. Safe to run twice, and after a crash."""
    kernel.require_root()
    directory = state_dir(prefix, root)
    removed: list[str] = []
    netns = kernel.list_netns(prefix)
    pids: set[int] = set()
    state = None
    try:
        state = load_state(prefix, root)
    except LabError:
        state = None
    if state is not None:
        pids |= {p for p in state.processes.values() if processes.alive(p)}
    markers = [str(directory), f"--instance={prefix}", *upstream_markers(Layout(directory, prefix))]
    pids |= processes.find_lab_processes(netns, markers)
    pids.discard(0)
    if pids:
        processes.stop(pids)
        removed.append(f"{len(pids)} processes")
    removed += build.teardown_network(prefix)
    removed += cgroups.remove(prefix)
    if directory.exists():
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(str(directory))
    return removed


def _metrics_address(state: LabState, node: str) -> str | None:
    try:
        return f"127.0.0.1:{int((state.path / 'agents' / f'{node}.metrics').read_text())}"
    except (OSError, ValueError):
        return None


def _pod_netns(state: LabState, pod: dict[str, Any]) -> str | None:
    """The pod's namespace: its annotation on the lab's API; derived from its name upstream (a kubelet cannot annotate)."""
    meta = pod["metadata"]
    annotated: str | None = meta.get("annotations", {}).get("kubereach.io/lab-netns")
    if annotated or not state.kubernetes:
        return annotated
    return pod_netns_name(state.prefix, meta["namespace"], meta["name"])


def status(prefix: str, root: Path = STATE_ROOT) -> dict[str, Any]:
    """The lab as `lab status --json` prints it (contract in ARCHITECTURE.md)."""
    state = require_state(prefix, root)
    plan = plan_of(state)
    api = LabApi.from_files(state.api_url, state.token_file, state.ca_file)
    pods = api.get("/api/v1/pods")["items"]
    services = api.get("/api/v1/services")["items"]
    slack = None
    if state.slack.get("origin"):
        slack = {
            "api": f"{state.slack['origin']}/api/",
            "control": state.slack["origin"],
            "channel": state.slack["channel"],
            "shop_channel": state.slack["shop_channel"],
            "user": state.slack["user"],
            "developer": state.slack["developer"],
            "usergroup": state.slack["usergroup"],
            "running": processes.alive(state.processes.get("slack", -1)),
        }
    return {
        "config": state.config_file,
        "api": state.api_url,
        "slack": slack,
        "kubeconfig": state.kubeconfig,
        "kubernetes": state.kubernetes or "lab",
        "prefix": state.prefix,
        "cni": state.cni,
        "proxy": state.proxy,
        "kube_proxy_layout": state.kube_proxy_layout,
        "outside": {
            "netns": outside.outside_netns(state.prefix),
            "router_netns": outside.router_netns(state.prefix),
            "router": outside.ROUTER_FABRIC_IP,
            "host": outside.OUTSIDE_HOST_IP,
            "resolver": outside.UPSTREAM_DNS_IP,
            "domain": outside.OUTSIDE_DOMAIN.rstrip("."),
            "ports": list(outside.OUTSIDE_PORTS),
            "running": processes.alive(state.processes.get("outside", -1)),
        },
        "nodes": [
            {
                "name": n.name,
                "netns": n.netns,
                "ip": n.ip,
                "pod_cidr": n.pod_cidr,
                "agent": state.agents.get(n.name) if processes.alive(state.processes.get(f"agent/{n.name}", -1)) else None,
                "metrics": _metrics_address(state, n.name),
            }
            for n in plan.nodes
        ],
        "pods": [
            {
                "namespace": p["metadata"]["namespace"],
                "name": p["metadata"]["name"],
                "ip": p.get("status", {}).get("podIP", ""),
                "node": p.get("spec", {}).get("nodeName", ""),
                "netns": _pod_netns(state, p),
                "labels": p["metadata"].get("labels", {}),
            }
            for p in pods
            if not p.get("spec", {}).get("hostNetwork")
        ],
        "services": [
            {
                "namespace": s["metadata"]["namespace"],
                "name": s["metadata"]["name"],
                "cluster_ip": s["spec"].get("clusterIP"),
                "type": s["spec"].get("type", "ClusterIP"),
                "selector": s["spec"].get("selector") or {},
                "external_name": s["spec"].get("externalName"),
                "external_ips": s["spec"].get("externalIPs", []),
                "health_check_node_port": s["spec"].get("healthCheckNodePort"),
                "load_balancer_ips": [
                    i["ip"] for i in (s.get("status") or {}).get("loadBalancer", {}).get("ingress", []) if i.get("ip")
                ],
                "ports": [
                    {
                        "name": p.get("name", ""),
                        "port": p["port"],
                        "target_port": p.get("targetPort", p["port"]),
                        "protocol": p.get("protocol", "TCP"),
                        **({"node_port": p["nodePort"]} if p.get("nodePort") else {}),
                    }
                    for p in s["spec"].get("ports", [])
                ],
            }
            for s in services
            # kube-apiserver's own Service: its endpoint is an address the lab's API server does not serve.
            if (s["metadata"]["namespace"], s["metadata"]["name"]) != ("default", "kubernetes")
        ],
    }
