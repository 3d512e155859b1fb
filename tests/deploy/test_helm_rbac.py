"""The chart's ClusterRole grants exactly what the bot reads: checked against the API calls it really makes.

The resolver runs against the lab's in-process API server (the official Kubernetes client over real
HTTP) for questions that reach every kind of object; `ClusterClient.api_calls` records each request
(verb, API group, resource), once as `ask` reads (lists per question) and once as `serve` reads (watch
caches: list + watch). Every call must be allowed by the rendered ClusterRole, and the role must allow
nothing beyond RESOURCES x {get, list, watch}.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.cluster import RESOURCES, ClusterClient, ResolutionError
from bot.cluster.client import ApiCall
from bot.cluster.watchcache import CachedCluster
from bot.parse import parse_question
from lab.apiserver import ApiServer, EndpointSliceController, Store, User, rules_of, write_kubeconfig
from lab.objects import seed_objects, seed_store
from lab.plan import LabOptions, make_plan
from lab.spec import load_spec
from tests.deploy.chart import FULLNAME, NAMESPACE, find, render
from tests.polling import eventually

TOKEN = "krd-rbac-token"
ADMIN_TOKEN = "krd-rbac-admin-token"
READ_VERBS = frozenset({"get", "list", "watch"})

QUESTIONS = (
    "can frontend talk to api?",
    "frontend -> ledger:443",
    "sts/redis -> api:8080",
    "ds/kubereach-agent -> kube-dns:53",
    "deploy/api -> redis:6379",
    "pod/redis-0 -> pod/redis-0:6379",
    "frontend -> api.shop.svc.cluster.local:8080",
    "pod/redis-0 -> 10.240.0.12:10250",
    "node/node-1 -> node/node-3:10250",
    "fronted -> api",  # a misspelling: suggestions look across kinds
)
"""Questions that between them touch every kind the resolver reads (workloads, pods, services, slices, nodes, policies)."""

Grant = tuple[str, str, str]
"""(API group, resource, verb)."""


@pytest.fixture(scope="module")
def api_calls(tmp_path_factory: pytest.TempPathFactory, cluster_role: dict[str, Any]) -> Iterator[tuple[ApiCall, ...]]:
    plan = make_plan(load_spec(), LabOptions(prefix="krd"))
    store = Store(namespaces=["default", "kube-public", "kube-node-lease"])
    seed_store(store, seed_objects(plan, {"node-1": "127.0.0.1:17443"}))
    controller = EndpointSliceController(store)
    # The server authorizes the bot's token by the rendered ClusterRole, as a real RBAC authorizer
    # would: a call the role does not grant is a 403 and fails the fixture.
    bot = User(f"system:serviceaccount:{NAMESPACE}:{FULLNAME}-bot", rules_of(cluster_role))
    server = ApiServer(store, ADMIN_TOKEN, users={TOKEN: bot})
    try:
        controller.start()
        url = server.start(port=0)
        kubeconfig = write_kubeconfig(Path(tmp_path_factory.mktemp("krd-rbac")) / "kubeconfig", url, TOKEN)
        client = ClusterClient.from_kubeconfig(kubeconfig, timeout=5.0)
        cached = CachedCluster(client, max_staleness_s=30.0, max_objects=100_000)
        try:
            for reader in (client, cached):
                for text in QUESTIONS:
                    with contextlib.suppress(ResolutionError):  # a refusal with suggestions still made its API calls
                        reader.resolve(parse_question(text), default_namespace="shop")
                reader.agent_addresses(namespace="kube-system")
            # Every cache watches (and a watch the role refused would be a recorded failure).
            eventually(lambda: len({c.resource for c in client.api_calls if c.verb == "watch"}), lambda n: n == len(RESOURCES))
            assert all("last failure" not in cached.cache(r).describe() for r in RESOURCES)
            yield client.api_calls
        finally:
            cached.close()
            client.close()
    finally:
        server.stop()
        controller.stop()


def _granted(role: dict[str, Any]) -> set[Grant]:
    granted: set[Grant] = set()
    for rule in role["rules"]:
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    granted.add((group, resource, verb))
    return granted


@pytest.fixture(scope="module")
def cluster_role() -> dict[str, Any]:
    return find(render(), "ClusterRole", f"{FULLNAME}-reader")


def test_every_api_call_the_bot_makes_is_granted(api_calls: tuple[ApiCall, ...], cluster_role: dict[str, Any]) -> None:
    granted = _granted(cluster_role)
    used = {(c.group, c.resource, c.verb) for c in api_calls}
    assert used, "the resolver made no API calls"
    assert used <= granted, f"calls the ClusterRole does not allow: {sorted(used - granted)}"


def test_the_questions_reach_every_resource_the_role_grants(api_calls: tuple[ApiCall, ...], cluster_role: dict[str, Any]) -> None:
    listed = {(c.group, c.resource) for c in api_calls if c.verb == "list"}
    assert listed == {(r.group, r.plural) for r in RESOURCES}, "a granted resource no question needed: is the grant still used?"


def test_the_role_grants_nothing_beyond_reading_the_declared_resources(cluster_role: dict[str, Any]) -> None:
    granted = _granted(cluster_role)
    assert granted == {(r.group, r.plural, verb) for r in RESOURCES for verb in READ_VERBS}
    assert not any("*" in part for grant in granted for part in grant)


def test_the_role_is_bound_to_the_bots_service_account_only() -> None:
    objects = render()
    binding = find(objects, "ClusterRoleBinding", f"{FULLNAME}-reader")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": f"{FULLNAME}-reader"}
    bot = find(objects, "Deployment", f"{FULLNAME}-bot")
    account = bot["spec"]["template"]["spec"]["serviceAccountName"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}]
    agent = find(objects, "DaemonSet", f"{FULLNAME}-agent")
    assert agent["spec"]["template"]["spec"]["serviceAccountName"] != account
    roles = [o for o in objects if o["kind"] in {"Role", "RoleBinding"}]
    assert all(o["metadata"]["namespace"] == "kube-system" for o in roles), "the agent gets no API access"
    assert all(s["name"] == account for o in roles if o["kind"] == "RoleBinding" for s in o["subjects"])


def test_the_only_configmap_the_bot_may_read_is_the_cluster_dns_corefile() -> None:
    objects = render()
    role = find(objects, "Role", f"{FULLNAME}-corefile")
    assert role["metadata"]["namespace"] == "kube-system"
    assert role["rules"] == [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["coredns"], "verbs": ["get"]}]
    binding = find(objects, "RoleBinding", f"{FULLNAME}-corefile")
    assert binding["roleRef"]["name"] == f"{FULLNAME}-corefile"
