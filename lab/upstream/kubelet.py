"""The lab's kubelet and CNI for the upstream control plane: one process for all the lab's nodes.

    python -m lab.upstream.kubelet --state-dir /run/kubereach/PREFIX --ready-fd N

What a kubelet and a CNI plugin do, and nothing a controller does:
- registers each Node (pod CIDR, addresses, capacity, Ready) and keeps its Lease renewed;
- binds the pods that name the lab as their scheduler to the node the spec puts them on;
- builds every pod bound to a lab node: a namespace wired as the lab's CNI wires it, an address from
  the node's pod CIDR (host-local style: the next free one), the pod's servers on its container
  ports; then reports podIP and readiness through pods/status with the node's own credentials
  (so the Node authorizer and NodeRestriction judge it as they judge a kubelet);
- tears a pod down when it is deleted (gracefully: then it removes it with grace period 0);
- keeps the lab's DNS zone and NetworkPolicy rules in line with the API (what CoreDNS and the
  CNI's policy agent would read).
Controllers (ReplicaSets, pods, EndpointSlices) are kube-controller-manager's.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab import build, processes
from lab.daemon import Reconciler
from lab.dnszone import build_zone, write_zone
from lab.errors import LabError
from lab.lifecycle import plan_of, podserver_argv
from lab.netpol import apply_policy_rules, render_policy_rules
from lab.plan import LabPlan, NodePlan, PodPlan
from lab.state import LabState
from lab.upstream import objects
from lab.upstream.client import ApiStatusError, UpstreamApi
from lab.upstream.control import admin_api, node_api
from lab.upstream.placement import choose_node, pod_plan

log = logging.getLogger("kubereach.lab.kubelet")
Obj = dict[str, Any]
LEASE_DURATION_S = 40
HEARTBEAT_S = 10.0
STATUS_EVERY_S = 60.0
POD_READY_DEADLINE_S = 30.0
FIRST_HOST, LAST_HOST = 2, 250


def pod_key(pod: Obj) -> str:
    """`namespace/name`."""
    return f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"


class PodAddresses:
    """host-local IPAM for one node: the next free address after the last one handed out, wrapping."""

    def __init__(self, node: NodePlan) -> None:
        self.base = node.pod_cidr.rsplit(".", 1)[0]
        self.used: set[int] = set()
        self.last = FIRST_HOST - 1

    def allocate(self) -> str:
        """A free address of the node's pod CIDR."""
        span = LAST_HOST - FIRST_HOST + 1
        for step in range(1, span + 1):
            host = FIRST_HOST + (self.last - FIRST_HOST + step) % span
            if host not in self.used:
                self.used.add(host)
                self.last = host
                return f"{self.base}.{host}"
        raise LabError(f"no free pod address left in {self.base}.0/24")

    def release(self, ip: str) -> None:
        """Give `ip` back."""
        self.used.discard(int(ip.rsplit(".", 1)[1]))


class Informer:
    """List, then watch, one resource; keep a cache by namespace/name; call `on_change` after each change."""

    def __init__(self, api: UpstreamApi, path: str, on_change: Callable[[], None], stop: threading.Event) -> None:
        self.api = api
        self.path = path
        self.on_change = on_change
        self.stop = stop
        self.synced = threading.Event()
        self._lock = threading.Lock()
        self._cache: dict[str, Obj] = {}
        self._thread = threading.Thread(target=self._run, name=f"informer{path}", daemon=True)

    def start(self) -> None:
        """Start listing and watching."""
        self._thread.start()

    def items(self) -> list[Obj]:
        """A copy of what the cache holds."""
        with self._lock:
            return list(self._cache.values())

    @staticmethod
    def _key(obj: Obj) -> str:
        meta = obj.get("metadata") or {}
        return f"{meta.get('namespace', '')}/{meta.get('name', '')}"

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                listing = self.api.list(self.path)
                with self._lock:
                    self._cache = {self._key(o): o for o in listing["items"]}
                version = str((listing.get("metadata") or {}).get("resourceVersion", ""))
                self.synced.set()
                self.on_change()
                while not self.stop.is_set():
                    for event in self.api.watch(self.path, version, timeout_s=240):
                        kind, obj = event.get("type"), event.get("object") or {}
                        if kind == "ERROR":
                            raise LabError(f"watch {self.path}: {obj.get('message', 'expired')}")
                        version = str((obj.get("metadata") or {}).get("resourceVersion", version))
                        if kind == "BOOKMARK":
                            continue
                        with self._lock:
                            if kind == "DELETED":
                                self._cache.pop(self._key(obj), None)
                            else:
                                self._cache[self._key(obj)] = obj
                        self.on_change()
                        if self.stop.is_set():
                            return
            except LabError as exc:
                log.warning("%s: %s; listing again", self.path, exc)
                self.stop.wait(1.0)


@dataclass
class BuiltPod:
    """A pod the lab built on one of its nodes."""

    uid: str
    node: str
    ip: str
    plan: PodPlan | None
    """None for a hostNetwork pod (nothing to build)."""
    pid: int = 0
    reported: bool = False


class LabKubelet:
    """The kubelet and CNI of every lab node, against the upstream API."""

    def __init__(self, state: LabState, plan: LabPlan, admin: UpstreamApi, node_apis: dict[str, UpstreamApi]) -> None:
        self.state = state
        self.plan = plan
        self.admin = admin
        self.node_apis = node_apis
        self.nodes = {n.name: n for n in plan.nodes}
        self.addresses = {n.name: PodAddresses(n) for n in plan.nodes}
        self.built: dict[str, BuiltPod] = {}
        self.stop = threading.Event()
        self.pods_reconciler = Reconciler("pods", self.sync_pods)
        self.dns = Reconciler("dns", self.sync_dns)
        self.netpol = Reconciler("netpol", self.sync_netpol)
        self._applied_policy: dict[str, str] = {}
        self._looping = False

        def pods_changed() -> None:
            self.pods_reconciler.trigger()
            self.dns.trigger()
            self.netpol.trigger()

        self.pods = Informer(admin, "/api/v1/pods", pods_changed, self.stop)
        self.services = Informer(admin, "/api/v1/services", self.dns.trigger, self.stop)
        self.slices = Informer(admin, "/apis/discovery.k8s.io/v1/endpointslices", self.dns.trigger, self.stop)
        self.namespaces = Informer(admin, "/api/v1/namespaces", self.netpol.trigger, self.stop)
        self.policies = Informer(admin, "/apis/networking.k8s.io/v1/networkpolicies", self.netpol.trigger, self.stop)
        self.informers = [self.pods, self.services, self.slices, self.namespaces, self.policies]

    # Nodes -------------------------------------------------------------------------------------

    def register_nodes(self) -> None:
        """Create each Node (admin: labels and pod CIDR), then post its status and Lease as the node."""
        for node in self.plan.nodes:
            self.admin.create("/api/v1/nodes", objects.node(self.plan, node), exist_ok=True)
            self.post_node_status(node)
            self.renew_lease(node)

    def post_node_status(self, node: NodePlan) -> None:
        """Ready, addresses, capacity (as the node)."""
        status = objects.node_status(node, self.state.kubernetes)
        self.node_apis[node.name].merge_patch(f"/api/v1/nodes/{node.name}/status", status)

    def renew_lease(self, node: NodePlan) -> None:
        """Renew (or create) the node's Lease in kube-node-lease (as the node)."""
        api = self.node_apis[node.name]
        lease = objects.node_lease(node.name, LEASE_DURATION_S)
        leases = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
        try:
            api.merge_patch(f"{leases}/{node.name}", {"spec": lease["spec"]})
        except ApiStatusError as exc:
            if exc.code != 404:
                raise
            api.create(leases, lease, exist_ok=True)

    def heartbeat(self) -> None:
        """Renew Leases every HEARTBEAT_S and post node status every STATUS_EVERY_S, until stopped."""
        last_status = time.monotonic()
        while not self.stop.wait(HEARTBEAT_S):
            self.pods_reconciler.trigger()  # retries what an earlier pass could not finish
            post_status = time.monotonic() - last_status >= STATUS_EVERY_S
            for node in self.plan.nodes:
                try:
                    self.renew_lease(node)
                    if post_status:
                        self.post_node_status(node)
                except LabError as exc:
                    log.warning("heartbeat of %s failed: %s", node.name, exc)
            if post_status:
                last_status = time.monotonic()

    # Pods --------------------------------------------------------------------------------------

    def bind_pending(self, pods: list[Obj]) -> list[Obj]:
        """Bind the lab-scheduled pods that have no node yet; return the pods with those bindings applied."""
        for pod in pods:
            spec, meta = pod.get("spec") or {}, pod["metadata"]
            if spec.get("nodeName") or meta.get("deletionTimestamp") or spec.get("schedulerName") != objects.LAB_SCHEDULER:
                continue
            node = choose_node(self.plan, pod, pods)
            try:
                self.admin.create(
                    f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/binding",
                    objects.binding(meta["namespace"], meta["name"], node),
                )
            except ApiStatusError as exc:
                log.warning("binding %s to %s failed: %s", pod_key(pod), node, exc)
                continue
            spec["nodeName"] = node
            log.info("bound %s to %s", pod_key(pod), node)
        return pods

    def sync_pods(self) -> None:
        """Bind, build, report and tear down pods until the API and the lab's nodes agree.

        One pod's failure (logged) never holds up the others; the next pass retries it.
        """
        pods = self.bind_pending(self.pods.items())
        mine = {p["metadata"]["uid"]: p for p in pods if (p.get("spec") or {}).get("nodeName") in self.nodes}
        for uid in [u for u in self.built if u not in mine]:
            self.teardown(self.built.pop(uid))
        starting: list[tuple[Obj, BuiltPod, processes.Started]] = []
        for uid, pod in mine.items():
            try:
                started = self.sync_pod(uid, pod)
            except (LabError, OSError) as exc:
                log.error("pod %s: %s", pod_key(pod), exc)
                continue
            if started is not None:
                starting.append((pod, self.built[uid], started))
        if not starting:
            return
        try:
            processes.wait_ready([s for _, _, s in starting], POD_READY_DEADLINE_S)
        except LabError as exc:
            log.error("a pod did not start: %s", exc)
        for pod, built, _ in starting:
            if processes.alive(built.pid):
                self.report(pod, built)
            else:  # its servers died while starting: take it down, the next pass builds it again
                self.teardown(self.built.pop(built.uid))

    def sync_pod(self, uid: str, pod: Obj) -> processes.Started | None:
        """One pod bound to a lab node: finish its deletion, or build and report it. Returns a starting server."""
        meta, spec = pod["metadata"], pod.get("spec") or {}
        if meta.get("deletionTimestamp"):
            if uid in self.built:
                self.teardown(self.built.pop(uid))
            self.node_apis[spec["nodeName"]].delete(
                f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0, "preconditions": {"uid": uid}},
            )
            return None
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return None
        built = self.built.get(uid)
        if built is None:
            built, started = self.build(pod)
            self.built[uid] = built
            if started is not None:
                return started
        if not built.reported:
            self.report(pod, built)
        return None

    def build(self, pod: Obj) -> tuple[BuiltPod, processes.Started | None]:
        """Wire a pod into its node and start its servers (hostNetwork pods: nothing to build)."""
        meta, spec = pod["metadata"], pod.get("spec") or {}
        node = self.nodes[spec["nodeName"]]
        if spec.get("hostNetwork"):
            return BuiltPod(meta["uid"], node.name, node.ip, None), None
        ip = self.addresses[node.name].allocate()
        plan = pod_plan(self.plan, pod, node, ip)
        try:
            build.build_pod(self.plan, plan)
            started = processes.spawn(
                f"pod/{plan.key}",
                podserver_argv(self.plan, plan, self.state),
                self.state.path / "logs" / f"pod-{plan.namespace}-{plan.name}.log",
                with_ready_pipe=True,
            )
        except (LabError, OSError):
            build.remove_pod(self.plan, plan)
            self.addresses[node.name].release(ip)
            raise
        log.info("built %s on %s at %s", plan.key, node.name, ip)
        return BuiltPod(meta["uid"], node.name, ip, plan, started.pid), started

    def report(self, pod: Obj, built: BuiltPod) -> None:
        """Running and Ready, with the pod's address, through pods/status as the node."""
        meta, spec = pod["metadata"], pod.get("spec") or {}
        containers = [(c["name"], c.get("image", "")) for c in spec.get("containers") or []]
        status = objects.pod_status(built.ip, self.nodes[built.node].ip, containers, ready=True, started_at=objects.now_rfc3339())
        try:
            self.node_apis[built.node].merge_patch(f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/status", status)
            built.reported = True
        except ApiStatusError as exc:
            log.warning("reporting %s failed: %s", pod_key(pod), exc)

    def teardown(self, built: BuiltPod) -> None:
        """Stop the pod's servers and remove its namespace; free its address."""
        pids = {built.pid} if built.pid else set()
        if built.plan is not None:
            pids |= processes.find_lab_processes([built.plan.netns], [])  # also servers a fault restarted
        processes.stop(pids)
        if built.plan is not None:
            build.remove_pod(self.plan, built.plan)
            self.addresses[built.node].release(built.ip)
            log.info("removed %s from %s", built.plan.key, built.node)

    # DNS and NetworkPolicy ---------------------------------------------------------------------

    def sync_dns(self) -> None:
        """Rewrite the zone the DNS pods answer from."""
        write_zone(self.state.path / "dns-zone.json", build_zone(self.services.items(), self.slices.items(), self.pods.items()))

    def sync_netpol(self) -> None:
        """Re-render every node's policy chains and apply those that changed."""
        namespaces, pods, policies = self.namespaces.items(), self.pods.items(), self.policies.items()
        for node in self.plan.nodes:
            script = render_policy_rules(namespaces, pods, policies, node.name)
            if self._applied_policy.get(node.name) != script:
                apply_policy_rules(node.netns, script)
                self._applied_policy[node.name] = script

    # Life ----------------------------------------------------------------------------------------

    def start(self, deadline_s: float = 60.0) -> None:
        """Register the nodes, sync the informers once, start the loops."""
        self.register_nodes()
        threading.Thread(target=self.heartbeat, name="heartbeat", daemon=True).start()
        for informer in self.informers:
            informer.start()
        end = time.monotonic() + deadline_s
        for informer in self.informers:
            if not informer.synced.wait(max(0.0, end - time.monotonic())):
                raise LabError(f"listing {informer.path} did not succeed within {deadline_s:.0f} s")
        for reconciler in (self.pods_reconciler, self.dns, self.netpol):
            reconciler.start()
        self._looping = True

    def shutdown(self) -> None:
        """Stop the loops and every pod process (namespaces are `lab down`'s)."""
        self.stop.set()
        if self._looping:
            for reconciler in (self.pods_reconciler, self.dns, self.netpol):
                reconciler.stop()
        processes.stop([b.pid for b in self.built.values() if b.pid])


def main(argv: list[str] | None = None) -> None:
    """Run the lab's kubelet until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m lab.upstream.kubelet")
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--ready-fd", type=int)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    state = LabState(**json.loads((args.state_dir / "state.json").read_text()))
    plan = plan_of(state)
    kubelet = LabKubelet(state, plan, admin_api(state), {n.name: node_api(state, n.name) for n in plan.nodes})
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        kubelet.start()
    except LabError as exc:
        log.error("the lab's kubelet failed to start: %s", exc)
        sys.exit(1)
    if args.ready_fd is not None:
        os.write(args.ready_fd, b"ready\n")
        os.close(args.ready_fd)
    stop.wait()
    kubelet.shutdown()


if __name__ == "__main__":
    main()
