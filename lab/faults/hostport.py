"""A host-network pod whose port another process on its node already holds.

A host-network pod shares its node's network namespace, so its port is the node's: a daemon someone
started on the node by hand, or another host-network pod, can hold it first. The fault sets that up
the way it happens: a stray listener is started in the node's namespace on port 9100 (a metrics
daemon left running on the node, outside Kubernetes), and a host-network pod
`monitoring/node-exporter-<node>` is scheduled there declaring the same port. Its server cannot bind,
yet the pod looks Running and Ready (a TCP readiness check on 9100 is answered by the stray), and
connections to the node's IP and 9100 reach the stray.

When the spec already runs a host-network pod on 9100 there (a node-exporter DaemonSet), that pod is
reused: its server goes away, as in a container restart, and the stray takes the port first; heal
stops the stray and starts the pod's server again under its cgroup.

The stray runs as the lab's own processes do: not under a cgroup that names the pod's UID, which is
how kubelet places a pod's processes. The bot tells the conflict from that (the agent reads the
owner's cgroup from /proc), never from the stray's name or banner. `heal` stops the stray and deletes
the pod; `lab down` stops the stray with every process in the lab's namespaces.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from lab import cgroups, processes
from lab.errors import LabError
from lab.faults.common import restart_pod_process
from lab.faults.model import Fault, FaultContext, FaultTarget, Needs, Obj, Undo, Verdict
from lab.lifecycle import PYTHON
from lab.plan import NodePlan, PodPlan

PORT = 9100
NAMESPACE = "monitoring"


@dataclass(frozen=True)
class HostPortUndo(Undo):
    """The stray listener's pid and the host-network pod the fault made, or (`reused`) the spec's
    host-network pod whose server it stopped."""

    node: str
    pod: str
    pid: int
    reused: bool = False


def pod_name(node: str) -> str:
    """The host-network pod the fault schedules on `node`."""
    return f"node-exporter-{node}"


def host_network_pod(name: str, node: str, node_ip: str) -> Obj:
    """A v1 Pod with hostNetwork, Running and Ready on `node` with the node's IP, declaring PORT."""
    ready = [{"type": t, "status": "True"} for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {"app": "node-exporter"},
        },
        "spec": {
            "nodeName": node,
            "hostNetwork": True,
            "dnsPolicy": "ClusterFirstWithHostNet",
            "containers": [
                {
                    "name": "node-exporter",
                    "image": "registry.local/node-exporter:lab",
                    "ports": [{"name": "metrics", "containerPort": PORT, "hostPort": PORT, "protocol": "TCP"}],
                }
            ],
        },
        "status": {
            "phase": "Running",
            "podIP": node_ip,
            "podIPs": [{"ip": node_ip}],
            "hostIP": node_ip,
            "conditions": ready,
            "containerStatuses": [
                {
                    "name": "node-exporter",
                    "ready": True,
                    "restartCount": 0,
                    "started": True,
                    "image": "registry.local/node-exporter:lab",
                    "imageID": "",
                    "state": {"running": {}},
                }
            ],
        },
    }


def spec_pod_on(ctx: FaultContext, node: str) -> PodPlan | None:
    """The spec's host-network pod on `node` declaring PORT (a node-exporter DaemonSet), if any."""
    return next((p for p in ctx.plan.host_pods if p.node == node and any(c.port == PORT for c in p.ports)), None)


def _start_stray(ctx: FaultContext, node: NodePlan) -> processes.Started:
    argv = ["ip", "netns", "exec", node.netns, PYTHON, "-m", "lab.podserver", "--pod", f"{node.name}/metricsd"]
    argv += ["--ready-fd", "{ready_fd}", "--listen", f"{PORT}/TCP"]
    started = processes.spawn(
        f"stray/{node.name}", argv, ctx.state.path / "logs" / f"stray-{node.name}.log", with_ready_pipe=True
    )
    processes.wait_ready([started], 15)
    ctx.state.processes[started.name] = started.pid
    return started


def _inject(ctx: FaultContext, t: FaultTarget) -> tuple[str, HostPortUndo]:
    assert t.node is not None
    node = t.node
    existing = spec_pod_on(ctx, node.name)
    if existing is not None:
        # The node already runs a host-network pod on PORT: its server goes away (a container restart)
        # and the stray takes the port before it comes back, so the pod stays Running without it.
        pid = ctx.state.processes.pop(f"pod/{existing.key}", None)
        if pid:
            processes.stop([pid])
        started = _start_stray(ctx, node)
        return (
            f"a stray listener (pid {started.pid}) holds {node.ip}:{PORT} in {node.name}'s namespace; "
            f"host-network pod {existing.key} declares {PORT} there and its server is gone",
            HostPortUndo(node.name, existing.key, started.pid, reused=True),
        )
    name = pod_name(node.name)
    path = f"/api/v1/namespaces/{NAMESPACE}/pods"
    if any(p["metadata"]["name"] == name for p in ctx.api.get(path)["items"]):
        raise LabError(f"{NAMESPACE}/{name} exists already: run `kubereach lab heal` first", exit_code=2)
    started = _start_stray(ctx, node)
    pod = host_network_pod(name, node.name, node.ip)
    ctx.api.request("POST", path, pod)
    created = ctx.api.get(f"{path}/{name}")
    if created.get("status", {}).get("podIP") != node.ip:
        ctx.api.merge_patch(f"{path}/{name}/status", {"status": pod["status"]})
    return (
        f"a stray listener (pid {started.pid}) holds {node.ip}:{PORT} in {node.name}'s namespace; "
        f"host-network pod {NAMESPACE}/{name} declares {PORT} there and cannot bind",
        HostPortUndo(node.name, f"{NAMESPACE}/{name}", started.pid),
    )


def _heal(ctx: FaultContext, undo: HostPortUndo) -> None:
    ctx.state.processes.pop(f"stray/{undo.node}", None)
    if processes.alive(undo.pid):
        processes.stop([undo.pid])
    ns, name = undo.pod.split("/", 1)
    if undo.reused:
        pod = next(p for p in ctx.plan.host_pods if p.key == undo.pod)
        restart_pod_process(ctx, pod)
        uid = ctx.api.get(f"/api/v1/namespaces/{ns}/pods/{name}")["metadata"]["uid"]
        cgroups.place(ctx.state.prefix, uid, ctx.state.processes[f"pod/{pod.key}"])
        return
    with contextlib.suppress(LabError):  # deleted already
        ctx.api.request("DELETE", f"/api/v1/namespaces/{ns}/pods/{name}", {"gracePeriodSeconds": 0})


HOST_PORT_COLLISION = Fault(
    "host-port-collision",
    Verdict.HOST_PORT_CONFLICT,
    f"start a stray listener on port {PORT} in a node's namespace and schedule a host-network pod declaring it there",
    Needs.NODE,
    _inject,
    _heal,
    HostPortUndo,
)
