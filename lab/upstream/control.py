"""Bring the upstream control plane up in order, each step waiting on a readiness signal.

etcd (its /health over TLS) → kube-apiserver (/readyz) → kube-controller-manager and kube-scheduler
(/healthz) → the spec's objects and the chart's RBAC, created through the API → the relay and the
lab's kubelet (Nodes registered, pods bound and built) → every spec workload Ready → one real
kube-proxy per node namespace (synced once its metrics show a sync) → a token for the bot's
ServiceAccount. Every process is recorded in the lab's state as soon as it starts, so `lab down`
stops it whatever happens next.
"""

from __future__ import annotations

import functools
import socket
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from lab import processes
from lab.errors import LabError
from lab.plan import AGENT_DAEMONSET, AGENT_NAMESPACE, LabPlan
from lab.state import LabState
from lab.upstream import flags, objects, rbac
from lab.upstream.binaries import UpstreamBinaries
from lab.upstream.client import ApiStatusError, UpstreamApi
from lab.upstream.kubeconfigs import cert_kubeconfig, token_kubeconfig, write_private_json
from lab.upstream.pki import ADMIN_USER, MASTERS_GROUP, UpstreamPki, generate_upstream_pki, node_user, upstream_pki
from lab.upstream.placement import workload_of
from nodeagent.netns import netns_path, socket_in_netns

PYTHON = sys.executable
DEADLINE_S = 120.0
BOT_TOKEN_SECONDS = 7 * 24 * 3600
SYNC_METRIC = "kubeproxy_sync_proxy_rules_last_timestamp_seconds"


def layout_of(state: LabState) -> flags.Layout:
    """Where the instance's upstream files are."""
    return flags.Layout(state.path, state.prefix)


def admin_api(state: LabState) -> UpstreamApi:
    """The lab's own admin client (the static token in the instance's token file)."""
    return UpstreamApi.at(state.api_url, Path(state.ca_file), token=Path(state.token_file).read_text().strip())


def node_api(state: LabState, node: str) -> UpstreamApi:
    """A client that is `node`'s kubelet to the API server (client certificate system:node:NAME)."""
    pki = upstream_pki(state.path / "pki", [node])
    return UpstreamApi.at(state.api_url, Path(state.ca_file), cert=pki.nodes[node])


def reserve_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports, chosen by the kernel."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def token_file_line(token: str) -> str:
    """kube-apiserver's static token file: token, user, uid, "groups"."""
    return f'{token},{ADMIN_USER},{ADMIN_USER},"{MASTERS_GROUP}"\n'


def write_kubeconfigs(layout: flags.Layout, url: str, pki: UpstreamPki, admin_token: str) -> dict[str, Path]:
    """One kubeconfig per client identity; returns who → path."""
    ca_pem = pki.ca.read_bytes()
    docs: dict[str, dict[str, Any]] = {
        "admin": token_kubeconfig(url, ca_pem, admin_token, ADMIN_USER),
        "kube-controller-manager": cert_kubeconfig(url, ca_pem, pki.controller_manager, "system:kube-controller-manager"),
        "kube-scheduler": cert_kubeconfig(url, ca_pem, pki.scheduler, "system:kube-scheduler"),
        "kube-proxy": cert_kubeconfig(url, ca_pem, pki.kube_proxy, "system:kube-proxy"),
    }
    for node, pair in pki.nodes.items():
        docs[f"node-{node}"] = cert_kubeconfig(url, ca_pem, pair, node_user(node))
    return {who: write_private_json(layout.kubeconfig(who), doc) for who, doc in docs.items()}


def pending_workloads(plan: LabPlan, pods: Iterable[dict[str, Any]]) -> list[str]:
    """The spec workloads (and the agent DaemonSet) that have fewer Ready pods than they should."""

    def ready(pod: dict[str, Any]) -> bool:
        conditions = (pod.get("status") or {}).get("conditions") or []
        live = not pod["metadata"].get("deletionTimestamp")
        return live and any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)

    ready_pods = [p for p in pods if ready(p)]
    waiting = []
    for w in plan.spec.workloads:
        want = len(plan.nodes) if w.kind == "DaemonSet" else w.replicas
        have = sum(1 for p in ready_pods if workload_of(plan, p) == w)
        if have < want:
            waiting.append(f"{w.kind} {w.namespace}/{w.name} ({have}/{want} ready)")
    agents = sum(
        1
        for p in ready_pods
        if p["metadata"].get("namespace") == AGENT_NAMESPACE
        and all((p["metadata"].get("labels") or {}).get(k) == v for k, v in objects.AGENT_LABELS.items())
    )
    if agents < len(plan.nodes):
        waiting.append(f"DaemonSet {AGENT_NAMESPACE}/{AGENT_DAEMONSET} ({agents}/{len(plan.nodes)} ready)")
    return waiting


def synced_from_metrics(text: str) -> bool:
    """True once kube-proxy's metrics show a finished sync of its rules."""
    for line in text.splitlines():
        if line.startswith(SYNC_METRIC + " ") or line.startswith(SYNC_METRIC + "{"):
            try:
                return float(line.rsplit(" ", 1)[1]) > 0
            except ValueError:
                return False
    return False


def kube_proxy_metrics(netns: str, timeout_s: float = 2.0) -> str:
    """kube-proxy's /metrics, read over the node namespace's own loopback."""
    sock = socket_in_netns(netns_path(netns), socket.AF_INET, socket.SOCK_STREAM)
    host, port = flags.KUBE_PROXY_METRICS.rsplit(":", 1)
    try:
        sock.settimeout(timeout_s)
        sock.connect((host, int(port)))
        sock.sendall(f"GET /metrics HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    finally:
        sock.close()
    return b"".join(chunks).decode(errors="replace")


def kube_proxy_synced(netns: str) -> bool:
    """True once the kube-proxy in `netns` has synced its rules."""
    return synced_from_metrics(kube_proxy_metrics(netns))


def _answers(api: UpstreamApi, path: str) -> bool:
    api.get(path)
    return True


def wait_until(what: str, check: Callable[[], bool], state: LabState, watched: Iterable[str], deadline_s: float) -> None:
    """Poll `check` until it holds; fail with the log of a watched process that exited, or at the deadline."""
    end = time.monotonic() + deadline_s
    names = list(watched)
    while True:
        try:
            if check():
                return
        except (LabError, OSError):
            pass
        for name in names:
            if not processes.alive(state.processes.get(name, -1)):
                log = state.path / "logs" / f"{name.replace('/', '-')}.log"
                raise LabError(f"{name} exited while the lab waited for {what}: {processes.last_log_line(log)}")
        if time.monotonic() > end:
            raise LabError(f"{what} did not happen within {deadline_s:.0f} s", hint=f"see the logs in {state.path / 'logs'}")
        time.sleep(0.2)


def _spawn(state: LabState, name: str, argv: list[str], *, ready_pipe: bool = False) -> processes.Started:
    started = processes.spawn(name, argv, state.path / "logs" / f"{name.replace('/', '-')}.log", with_ready_pipe=ready_pipe)
    state.processes[name] = started.pid
    state.save()
    return started


def _create_all(api: UpstreamApi, objs: Iterable[dict[str, Any]], deadline_s: float) -> None:
    """Create each object (an existing one is fine), retrying while the server is still settling."""
    for obj in objs:
        end = time.monotonic() + deadline_s
        while True:
            try:
                api.create(objects.collection_path(obj), obj, exist_ok=True)
                break
            except ApiStatusError as exc:
                if time.monotonic() > end or exc.code in (400, 401, 422):
                    where = f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"
                    raise LabError(f"creating {obj['kind']} {where}: {exc}") from exc
                time.sleep(0.5)


def start(state: LabState, plan: LabPlan, binaries: UpstreamBinaries, deadline_s: float = DEADLINE_S) -> Path:
    """Run the upstream control plane, the relay, the lab's kubelet and the kube-proxies; return the bot's kubeconfig."""
    layout = layout_of(state)
    layout.root.mkdir(mode=0o700, exist_ok=True)
    ports = flags.Ports(*reserve_ports(5))
    pki = generate_upstream_pki(state.path / "pki", [n.name for n in plan.nodes])
    admin_token = Path(state.token_file).read_text().strip()
    layout.token_file.write_text(token_file_line(admin_token))
    layout.token_file.chmod(0o600)
    state.api_url = flags.api_url(ports)
    state.ca_file = str(pki.ca)
    write_kubeconfigs(layout, state.api_url, pki, admin_token)
    write_private_json(Path(state.kubeconfig), token_kubeconfig(state.api_url, pki.ca.read_bytes(), admin_token, ADMIN_USER))
    state.save()

    _spawn(state, "etcd", flags.etcd_argv(binaries, pki, layout, ports))
    etcd = UpstreamApi("127.0.0.1", ports.etcd_client, pki.ca, cert=pki.apiserver_etcd_client, timeout_s=2.0)
    wait_until("etcd to be healthy", lambda: "true" in str(etcd.get("/health").get("health")), state, ["etcd"], deadline_s)

    _spawn(state, "kube-apiserver", flags.apiserver_argv(binaries, pki, layout, ports))
    admin = admin_api(state)
    wait_until("kube-apiserver to be ready", lambda: admin.get("/readyz") is not None, state, ["kube-apiserver"], deadline_s)

    _spawn(state, "kube-controller-manager", flags.controller_manager_argv(binaries, pki, layout, ports))
    _spawn(state, "kube-scheduler", flags.scheduler_argv(binaries, pki, layout, ports))
    for name, port in (("kube-controller-manager", ports.controller_manager), ("kube-scheduler", ports.scheduler)):
        probe = UpstreamApi("127.0.0.1", port, pki.ca, timeout_s=2.0)
        wait_until(f"{name} to be healthy", functools.partial(_answers, probe, "/healthz"), state, [name], deadline_s)

    rbac_objects, bot_account = rbac.bot_rbac(rbac.render_chart())
    _create_all(admin, [objects.namespace(rbac.NAMESPACE), *rbac_objects, *objects.cluster_objects(plan)], deadline_s=30.0)
    for path, patch in objects.load_balancer_statuses(plan):
        admin.merge_patch(path, patch)

    relay = _spawn(
        state,
        "relay",
        [PYTHON, "-m", "lab.upstream.relay", "--state-dir", str(state.path), "--port", str(ports.apiserver),
         *[arg for n in plan.nodes for arg in ("--netns", n.netns)], "--ready-fd", "{ready_fd}"],
        ready_pipe=True,
    )  # fmt: skip
    kubelet = _spawn(
        state, "kubelet", [PYTHON, "-m", "lab.upstream.kubelet", "--state-dir", str(state.path), "--ready-fd", "{ready_fd}"],
        ready_pipe=True,
    )  # fmt: skip
    processes.wait_ready([relay, kubelet], deadline_s)
    control_plane = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet"]
    last: list[str] = []

    def workloads_ready() -> bool:
        last[:] = pending_workloads(plan, admin.list("/api/v1/pods")["items"])
        return not last

    try:
        wait_until("the spec's pods to be Ready", workloads_ready, state, control_plane, deadline_s)
    except LabError as exc:
        raise LabError(f"{exc.message}; still waiting for: {', '.join(last)}", hint=exc.hint) from exc

    for node in plan.nodes:
        argv = flags.kube_proxy_argv(binaries, layout, node.name, node.netns, plan.options.proxy)
        _spawn(state, f"kube-proxy/{node.name}", argv)
    for node in plan.nodes:
        wait_until(
            f"kube-proxy on {node.name} to sync",
            functools.partial(kube_proxy_synced, node.netns),
            state,
            [f"kube-proxy/{node.name}", "relay"],
            deadline_s,
        )

    namespace, name = bot_account
    answer = admin.create(f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token", rbac.token_request(BOT_TOKEN_SECONDS))
    token = ((answer or {}).get("status") or {}).get("token")
    if not token:
        raise LabError(f"the API server issued no token for the bot's ServiceAccount {namespace}/{name}")
    user = f"system:serviceaccount:{namespace}:{name}"
    return write_private_json(layout.kubeconfig("bot"), token_kubeconfig(state.api_url, pki.ca.read_bytes(), token, user))
