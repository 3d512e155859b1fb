"""The lab's control plane in one process: the API server and the controllers around it.

    python -m lab.daemon --state-dir /run/kubereach/PREFIX --ready-fd N

It seeds the API store with the lab's objects, then runs, as a real cluster would:
- the EndpointSlice controller (pods × services → slices),
- the kubelets' end of graceful pod deletion (a deleted pod stays Terminating for its grace period),
- the DNS controller (services, slices, pods → the zone file the CoreDNS pods answer from),
- the NetworkPolicy agent (pods, namespaces, policies → filter rules in every node's namespace).
kube-proxy runs as one process per node (`lab.kubeproxy`) and watches this API like the real one.
Once everything has synced once it writes `ready URL` to the ready fd.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from lab.apiserver.kubeconfig import write_kubeconfig
from lab.apiserver.server import ApiServer
from lab.apiserver.store import Store, WatchEvent
from lab.apiserver.tls import ServingCertificate
from lab.certs import lab_pki
from lab.dnszone import build_zone, write_zone
from lab.errors import LabError
from lab.lifecycle import plan_of
from lab.netpol import apply_policy_rules, render_policy_rules
from lab.objects import seed_objects
from lab.plan import LabPlan
from lab.state import LabState

log = logging.getLogger("kubereach.lab.daemon")


class Reconciler:
    """Runs `sync` on its own thread whenever triggered; coalesces triggers that arrive meanwhile."""

    def __init__(self, name: str, sync: Callable[[], None]) -> None:
        self.name = name
        self._sync = sync
        self._cond = threading.Condition()
        self._dirty = False
        self._stopping = False
        self._generation = 0
        self._done = 0
        self._thread = threading.Thread(target=self._run, name=f"reconcile-{name}", daemon=True)

    def start(self) -> None:
        """Start the loop and trigger the first sync."""
        self._thread.start()
        self.trigger()

    def trigger(self) -> None:
        """Ask for a sync (several triggers before it runs make one sync)."""
        with self._cond:
            self._dirty = True
            self._generation += 1
            self._cond.notify_all()

    def wait_synced(self, timeout: float) -> bool:
        """Wait until every trigger so far has been followed by a finished sync."""
        with self._cond:
            target = self._generation
            return self._cond.wait_for(lambda: self._done >= target or self._stopping, timeout)

    def stop(self) -> None:
        """End the loop."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._dirty or self._stopping)
                if self._stopping:
                    return
                self._dirty = False
                generation = self._generation
            try:
                self._sync()
            except (LabError, OSError) as exc:
                log.error("%s sync failed: %s", self.name, exc)
            with self._cond:
                self._done = max(self._done, generation)
                self._cond.notify_all()


class LabControlPlane:
    """The store, the API server and the lab's controllers, wired together."""

    def __init__(self, state: LabState, plan: LabPlan) -> None:
        self.state = state
        self.plan = plan
        spec_namespaces = {ns.name for ns in plan.spec.namespaces}
        self.store = Store(
            namespaces=[n for n in ("default", "kube-system", "kube-public", "kube-node-lease") if n not in spec_namespaces]
        )
        self.pki = lab_pki(state.path / "pki")
        self.server = ApiServer(
            self.store,
            Path(state.token_file).read_text().strip(),
            tls=ServingCertificate.from_files(self.pki.apiserver.cert, self.pki.apiserver.key),
        )
        self.zone_path = state.path / "dns-zone.json"
        self.dns = Reconciler("dns", self.sync_dns)
        self.netpol = Reconciler("netpol", self.sync_netpol)
        self._applied_policy: dict[str, str] = {}

    def seed(self) -> None:
        """Create the lab's objects, as if the cluster had been running."""
        for obj in seed_objects(self.plan, self.state.agents):
            self.store.create(obj)

    def sync_dns(self) -> None:
        """Rewrite the zone from services, EndpointSlices and pods."""
        zone = build_zone(
            self.store.list("services").items, self.store.list("endpointslices").items, self.store.list("pods").items
        )
        write_zone(self.zone_path, zone)

    def sync_netpol(self) -> None:
        """Re-render every node's policy chains and apply those that changed."""
        namespaces = self.store.list("namespaces").items
        pods = self.store.list("pods").items
        policies = self.store.list("networkpolicies").items
        for node in self.plan.nodes:
            script = render_policy_rules(namespaces, pods, policies, node.name)
            if self._applied_policy.get(node.name) != script:
                apply_policy_rules(node.netns, script)
                self._applied_policy[node.name] = script

    def on_event(self, event: WatchEvent) -> None:
        """Route store changes to the controllers that care."""
        kind = event.object.get("kind")
        if kind in ("Service", "EndpointSlice", "Pod"):
            self.dns.trigger()
        if kind in ("Pod", "Namespace", "NetworkPolicy"):
            self.netpol.trigger()

    def start(self) -> str:
        """Start controllers, seed, serve; return the API URL once everything synced once."""
        from lab.apiserver.endpointslices import EndpointSliceController
        from lab.apiserver.graceful import GracefulDeleter

        self.endpoints = EndpointSliceController(self.store)
        self.endpoints.start()
        self.graceful = GracefulDeleter(self.store)
        self.graceful.start()
        self.store.subscribe(self.on_event)
        self.seed()
        self.dns.start()
        self.netpol.start()
        url = self.server.start("127.0.0.1", 0)  # https: the certificate comes from the lab's CA
        write_kubeconfig(
            self.state.kubeconfig, url, Path(self.state.token_file).read_text().strip(), ca_pem=self.pki.ca.read_bytes()
        )
        for reconciler in (self.dns, self.netpol):
            if not reconciler.wait_synced(timeout=20):
                raise LabError(f"the {reconciler.name} controller did not sync")
        return url

    def stop(self) -> None:
        """Stop serving and the controllers."""
        self.server.stop()
        self.graceful.stop()
        self.dns.stop()
        self.netpol.stop()


def main(argv: list[str] | None = None) -> None:
    """Run the control plane until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m lab.daemon")
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--ready-fd", type=int)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    import json

    state = LabState(**json.loads((args.state_dir / "state.json").read_text()))
    plane = LabControlPlane(state, plan_of(state))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        url = plane.start()
    except LabError as exc:
        log.error("control plane failed to start: %s", exc)
        sys.exit(1)
    log.info("API server at %s", url)
    if args.ready_fd is not None:
        os.write(args.ready_fd, f"ready {url}\n".encode())
        os.close(args.ready_fd)
    stop.wait()
    plane.stop()


if __name__ == "__main__":
    main()
