"""The resolver at cluster scale: time to resolve a question and API requests per question, with the
watch caches (`serve`) next to listing per question (`ask`), in the same run.

The cluster is objects only, loaded into the lab's API server (in this process, over HTTPS with the
lab's CA): 500 nodes, 5,000 pods (ReplicaSet-owned, Running and Ready), 1,000 Deployments and their
ReplicaSets, 1,000 Services with the EndpointSlices the lab's controller writes, and 300
NetworkPolicies, over 50 namespaces. Questions alternate two shapes: names with their namespaces
(``ns-3/app-17 -> ns-9/app-412:8080``) and bare names, which the resolver looks for in every namespace
(``app-17 -> app-412:8080``). Requests are counted by the server's ``apiserver_request_total``.

- listing (reference): `ClusterClient.resolve`, which lists what it needs for every question (`kubereach
  ask`); cold = a new client (new connection) per question, warm = one client for all.
- watch caches: `CachedCluster.resolve` (`kubereach serve`); cold = a new cache per question (its
  lists and watches included), warm = one cache for all questions.

    .venv/bin/python bench/bench_resolver.py [--questions 40] [--cold 5]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.cluster import ClusterClient
from bot.cluster.watchcache import CachedCluster
from bot.parse import parse_question
from lab.apiserver import ApiServer, ServingCertificate, Store, write_kubeconfig
from lab.apiserver.endpointslices import EndpointSliceController
from lab.certs import generate_pki

TOKEN = "bench-resolver-token"
NAMESPACES = 50
NODES = 500
SERVICES = 1000
PODS_PER_SERVICE = 5
POLICIES = 300


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def load(store: Store) -> None:
    """The cluster's objects, as a real cluster of that size would serve them."""
    for n in range(NODES):
        store.create(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": f"node-{n}", "labels": {"kubernetes.io/hostname": f"node-{n}"}},
                "status": {
                    "addresses": [{"type": "InternalIP", "address": f"172.16.{n // 250}.{n % 250 + 1}"}],
                    "conditions": [{"type": "Ready", "status": "True"}],
                },
            }
        )
    for ns in range(NAMESPACES):
        store.create(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"ns-{ns}", "labels": {"team": f"t{ns % 7}"}}}
        )
    for s in range(SERVICES):
        ns, app = f"ns-{s % NAMESPACES}", f"app-{s}"
        labels = {"app": app}
        store.create(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": app, "namespace": ns, "uid": f"d-{s}", "labels": labels},
                "spec": {
                    "replicas": PODS_PER_SERVICE,
                    "selector": {"matchLabels": labels},
                    "template": {"metadata": {"labels": labels}},
                },
            }
        )
        rs = f"{app}-5d8f7c6b9"
        store.create(
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "metadata": {
                    "name": rs,
                    "namespace": ns,
                    "uid": f"rs-{s}",
                    "labels": labels,
                    "ownerReferences": [
                        {"apiVersion": "apps/v1", "kind": "Deployment", "name": app, "uid": f"d-{s}", "controller": True}
                    ],
                },
                "spec": {
                    "replicas": PODS_PER_SERVICE,
                    "selector": {"matchLabels": labels},
                    "template": {"metadata": {"labels": labels}},
                },
            }
        )
        for p in range(PODS_PER_SERVICE):
            index = s * PODS_PER_SERVICE + p
            store.create(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": f"{rs}-{p:05x}",
                        "namespace": ns,
                        "labels": labels,
                        "ownerReferences": [
                            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs, "uid": f"rs-{s}", "controller": True}
                        ],
                    },
                    "spec": {
                        "nodeName": f"node-{index % NODES}",
                        "containers": [{"name": "app", "image": "app:1.0", "ports": [{"name": "http", "containerPort": 8080}]}],
                    },
                    "status": {
                        "phase": "Running",
                        "podIP": f"10.{index // 65536 + 64}.{index // 256 % 256}.{index % 256}",
                        "hostIP": f"172.16.{index % NODES // 250}.{index % NODES % 250 + 1}",
                        "conditions": [{"type": "Ready", "status": "True"}],
                    },
                }
            )
        store.create(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": app, "namespace": ns},
                "spec": {"selector": labels, "ports": [{"name": "http", "port": 8080, "targetPort": "http"}]},
            }
        )
    for q in range(POLICIES):
        store.create(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": f"allow-{q}", "namespace": f"ns-{q % NAMESPACES}"},
                "spec": {
                    "podSelector": {"matchLabels": {"app": f"app-{q}"}},
                    "policyTypes": ["Ingress"],
                    "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": f"t{q % 7}"}}}]}],
                },
            }
        )


def questions(count: int, seed: int = 16) -> list[str]:
    rng = random.Random(seed)
    asked = []
    for i in range(count):
        a, b = rng.randrange(SERVICES), rng.randrange(SERVICES)
        if i % 2:
            asked.append(f"app-{a} -> app-{b}:8080")
        else:
            asked.append(f"ns-{a % NAMESPACES}/app-{a} -> ns-{b % NAMESPACES}/app-{b}:8080")
    return asked


def measure(server: ApiServer, texts: list[str], resolver: Callable[[int], Any]) -> tuple[list[float], list[int]]:
    """Per question: milliseconds to resolve, and the requests the server counted for it."""
    times, requests = [], []
    for i, text in enumerate(texts):
        question = parse_question(text)
        before = server.requests.total()
        t0 = time.perf_counter()
        resolved = resolver(i).resolve(question, default_namespace=None, allowed_namespaces=None)
        times.append((time.perf_counter() - t0) * 1000)
        assert resolved.source_pods and resolved.target_service is not None, text
        time.sleep(0.05)  # the server counts a request once its answer is out
        requests.append(server.requests.total() - before)
    return times, requests


def line(label: str, times: list[float], requests: list[int]) -> str:
    return (
        f"  {label:34} p50 {statistics.median(times):8.1f} ms  p99 {pct(times, 99):8.1f} ms  "
        f"API requests per question {statistics.mean(requests):6.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, default=40)
    parser.add_argument("--cold", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-resolver-") as tmp:
        pki = generate_pki(Path(tmp) / "pki", [])
        store = Store()
        t0 = time.monotonic()
        load(store)
        slices = EndpointSliceController(store)
        slices.start()  # one reconcile of every Service: the slices kube-controller-manager would write
        slices.stop()
        print(
            f"loaded {NODES} nodes, {SERVICES * PODS_PER_SERVICE} pods, {SERVICES} services (and their EndpointSlices), {POLICIES} policies in {time.monotonic() - t0:.0f} s"
        )
        server = ApiServer(store, TOKEN, tls=ServingCertificate.from_files(pki.apiserver.cert, pki.apiserver.key))
        server.start(port=0)
        kubeconfig = write_kubeconfig(
            Path(tmp) / "kubeconfig", server.url, TOKEN, namespace="default", ca_pem=pki.ca.read_bytes()
        )
        warm_texts, cold_texts = questions(args.questions), questions(args.cold, seed=61)
        rows = []
        try:
            clients: list[ClusterClient] = []

            def new_client(_i: int) -> ClusterClient:
                clients.append(ClusterClient.from_kubeconfig(kubeconfig))
                return clients[-1]

            rows.append(("listing per question, cold", *measure(server, cold_texts, new_client)))
            shared = ClusterClient.from_kubeconfig(kubeconfig)
            clients.append(shared)
            rows.append(("listing per question, warm", *measure(server, warm_texts, lambda _i: shared)))
            caches: list[CachedCluster] = []

            def new_cache(_i: int) -> CachedCluster:
                for old in caches:
                    old.close()
                caches.append(CachedCluster(new_client(0), max_staleness_s=30.0, max_objects=200_000))
                return caches[-1]

            rows.append(("watch caches, cold", *measure(server, cold_texts, new_cache)))
            warm = new_cache(0)
            measure(server, cold_texts[:1], lambda _i: warm)  # fill the caches
            rows.append(("watch caches, warm", *measure(server, warm_texts, lambda _i: warm)))
            for cache in caches:
                cache.close()
            for client in clients:
                client.close()
        finally:
            server.stop()
    print(
        f"resolving a question on a cluster of {SERVICES * PODS_PER_SERVICE} pods, {SERVICES} services, {NODES} nodes, {POLICIES} policies"
    )
    print(f"  ({args.questions} warm questions, {args.cold} cold; half with namespaces, half bare names searched cluster-wide)")
    for label, times, requests in rows:
        print(line(label, times, requests))


if __name__ == "__main__":
    main()
