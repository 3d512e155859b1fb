"""bot.cluster against the lab's in-process Kubernetes API server, through the official client.

The lab's default cluster (shop, payments, monitoring, kube-system; three nodes) is seeded into a
`Store`; cases that need a different cluster change objects through the store and put them back in
`finally`, so every test sees the default cluster.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from bot.cluster import (
    RESOURCES,
    ClusterClient,
    NamespaceNotAllowed,
    ResolutionError,
    Resolved,
)
from bot.cluster.entries import EntryInfo
from bot.investigation import build_case, name_choices, workload_refs
from bot.parse import Protocol, Ref, RefKind, parse_question
from bot.parse.models import EntryKind
from bot.playbook.case import Entry, PodRef
from bot.playbook.models import VerdictCode
from bot.policy import cluster_from_objects, evaluate
from lab.apiserver import ApiServer, EndpointSliceController, Store, write_kubeconfig
from lab.objects import seed_objects
from lab.plan import LabOptions, make_plan
from lab.spec import load_spec
from tests.polling import eventually

TOKEN = "krc-test-token"
AGENT_ON_NODE_1 = "127.0.0.1:17443"


class Lab:
    """The seeded store and a kubeconfig pointing at its API server."""

    def __init__(self, store: Store, kubeconfig: Path) -> None:
        self.store = store
        self.kubeconfig = kubeconfig

    def client(self) -> ClusterClient:
        return ClusterClient.from_kubeconfig(self.kubeconfig, timeout=5.0)

    @contextmanager
    def changed(self, kind: str, name: str, namespace: str, patch: dict[str, Any]) -> Iterator[None]:
        """Merge-patch one object for the duration of the block, then put the original back."""
        original = self.store.get(kind, name, namespace)
        self.store.patch(kind, name, patch, namespace)
        try:
            yield
        finally:
            restored = copy.deepcopy(original)
            restored["metadata"].pop("resourceVersion", None)
            self.store.replace(restored)

    @contextmanager
    def added(self, *objects: dict[str, Any]) -> Iterator[None]:
        """Create objects for the duration of the block (namespaces first), then delete them."""
        created: list[dict[str, Any]] = []
        try:
            for obj in objects:
                created.append(self.store.create(obj))
            yield
        finally:
            for obj in reversed(created):
                meta = obj["metadata"]
                self.store.delete(obj["kind"], meta["name"], meta.get("namespace"))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    plan = make_plan(load_spec(), LabOptions(prefix="krc"))
    store = Store(namespaces=["default", "kube-public", "kube-node-lease"])
    for obj in seed_objects(plan, {"node-1": AGENT_ON_NODE_1}):
        store.create(obj)
    controller = EndpointSliceController(store)
    server = ApiServer(store, TOKEN)
    try:
        controller.start()
        url = server.start(port=0)
        kubeconfig = write_kubeconfig(tmp_path_factory.mktemp("krc-cluster") / "kubeconfig", url, TOKEN)
        yield Lab(store, kubeconfig)
    finally:
        server.stop()
        controller.stop()


@pytest.fixture
def client(lab: Lab) -> Iterator[ClusterClient]:
    cluster = lab.client()
    try:
        yield cluster
    finally:
        cluster.close()


def ask(
    client: ClusterClient,
    text: str,
    *,
    default_namespace: str | None = None,
    allowed: frozenset[str] | None = None,
) -> Resolved:
    return client.resolve(parse_question(text), default_namespace=default_namespace, allowed_namespaces=allowed)


def refused(client: ClusterClient, text: str, **kwargs: Any) -> ResolutionError:
    with pytest.raises(ResolutionError) as caught:
        ask(client, text, **kwargs)
    return caught.value


def names(pods: Any) -> list[str]:
    return sorted(p.name for p in pods)


# ------------------------------------------------------------------------------ workloads and services


def test_bare_names_resolve_source_to_workload_pods_and_target_to_service(client: ClusterClient) -> None:
    resolved = ask(client, "can frontend talk to api?")
    assert resolved.source == "deploy/frontend in shop"
    assert resolved.source_total == 2
    assert all(p.workload_kind == "Deployment" and p.workload_name == "frontend" for p in resolved.source_pods)
    assert resolved.target_kind == "service"
    assert resolved.target_service is not None and resolved.target_service.name == "api"
    assert resolved.target_address == resolved.target_service.cluster_ip
    assert len(resolved.target_pods) == 3
    assert {e.pod_name for e in resolved.endpoints} == {p.name for p in resolved.target_pods}
    assert all(e.ready and e.serving and not e.terminating for e in resolved.endpoints)


def test_pod_named_like_its_workload_means_the_workloads_pods(client: ClusterClient) -> None:
    resolved = ask(client, "why can't pod frontend reach svc api:8080")
    assert resolved.source == "deploy/frontend in shop" and resolved.source_total == 2
    assert all(p.workload_name == "frontend" for p in resolved.source_pods)
    assert any("no pod is named frontend: read as the pods of deploy/frontend in shop" in n for n in resolved.notes)
    target = ask(client, "frontend -> pod/redis:6379")  # statefulset redis: its pod redis-0
    assert target.target_kind == "pod" and names(target.target_pods) == ["redis-0"]
    # Not a workload's name either, or outside the namespaces the channel may see: still not found.
    assert refused(client, "pod/frontend-7d9 -> api:8080").code is VerdictCode.SOURCE_NOT_FOUND
    hidden = refused(client, "pod ledger -> api:8080", allowed=frozenset({"shop"}))
    assert hidden.code is VerdictCode.SOURCE_NOT_FOUND and "no pod named 'ledger'" in hidden.message


def test_service_with_several_ports_and_no_port_given_checks_first_tcp_port_with_a_note(client: ClusterClient) -> None:
    resolved = ask(client, "frontend -> api")
    assert resolved.port.service_port == 8080
    assert resolved.port.target_port == "http"
    assert resolved.port.name == "http"
    assert resolved.port.protocol is Protocol.TCP
    assert any("2 ports" in note and "checking 8080" in note for note in resolved.notes)


def test_service_port_by_name_and_by_number(client: ClusterClient) -> None:
    by_name = ask(client, "frontend -> api:metrics")
    assert (by_name.port.service_port, by_name.port.target_port, by_name.port.name) == (9090, "metrics", "metrics")
    by_number = ask(client, "frontend -> ledger:443")
    assert (by_number.port.service_port, by_number.port.target_port, by_number.port.name) == (443, 8443, "https")


def test_port_that_is_only_a_target_port_is_refused_naming_the_service_port(client: ClusterClient) -> None:
    error = refused(client, "frontend -> svc/ledger:8443")
    assert error.code is VerdictCode.TARGET_NOT_FOUND
    assert "8443 is the targetPort" in error.message and "clients connect to 443" in error.message
    assert error.suggestions == ("svc/ledger:443 in payments",)


def test_number_of_a_named_target_port_is_recognised_through_the_pods(client: ClusterClient) -> None:
    # svc/frontend port 80 targets the container port named "http", which is 8080 on the pods.
    error = refused(client, "api -> svc/frontend:8080")
    assert "8080 is the targetPort" in error.message and "clients connect to 80" in error.message
    unrelated = refused(client, "frontend -> svc/api:9091")
    assert "no port 9091" in unrelated.message and "targetPort" not in unrelated.message
    assert unrelated.suggestions == ("svc/api:8080 in shop", "svc/api:9090 in shop")


def test_unknown_port_name_lists_the_service_ports(client: ClusterClient) -> None:
    error = refused(client, "frontend -> api:grpc")
    assert error.code is VerdictCode.TARGET_NOT_FOUND
    assert "8080/TCP (http)" in error.message and "9090/TCP (metrics)" in error.message


def test_protocol_defaults_from_the_service_port_and_explicit_protocol_picks_that_port(client: ClusterClient) -> None:
    udp = ask(client, "frontend -> kube-dns:53")
    assert (udp.port.protocol, udp.port.name) == (Protocol.UDP, "dns")
    tcp = ask(client, "frontend -> kube-dns:53/tcp")
    assert (tcp.port.protocol, tcp.port.name) == (Protocol.TCP, "dns-tcp")


def test_statefulset_and_daemonset_sources_resolve_to_their_pods(client: ClusterClient) -> None:
    redis = ask(client, "sts/redis -> api:8080")
    assert redis.source == "sts/redis in shop" and names(redis.source_pods) == ["redis-0"]
    agents = ask(client, "ds/kubereach-agent -> kube-dns:53")
    assert agents.source_total == 3
    assert {p.node for p in agents.source_pods} == {"node-1", "node-2", "node-3"}
    assert all(p.host_network for p in agents.source_pods)


def test_deployment_pods_are_found_through_their_replicaset(client: ClusterClient) -> None:
    resolved = ask(client, "deploy/api -> redis:6379")
    assert resolved.source_total == 3
    assert all(p.owner_kind == "ReplicaSet" and p.workload_kind == "Deployment" for p in resolved.source_pods)
    assert all(p.owner_name is not None and p.owner_name.startswith("api-") for p in resolved.source_pods)


def test_pod_by_name_as_source_and_target(client: ClusterClient) -> None:
    resolved = ask(client, "pod/redis-0 -> pod/redis-0:6379")
    assert names(resolved.source_pods) == ["redis-0"] and resolved.source == "pod/redis-0 in shop"
    assert resolved.target_kind == "pod" and names(resolved.target_pods) == ["redis-0"]
    assert resolved.target_address == resolved.target_pods[0].ip
    assert resolved.port == resolved.port.__class__(None, 6379, Protocol.TCP, "redis")


def test_pod_target_port_by_name_unlisted_number_and_missing(client: ClusterClient) -> None:
    api_pod = next(p for p in ask(client, "deploy/api -> redis:6379").source_pods)
    named = ask(client, f"frontend -> pod/{api_pod.name}:metrics")
    assert (named.port.target_port, named.port.service_port) == (9090, None)
    unlisted = ask(client, f"frontend -> pod/{api_pod.name}:7000")
    assert unlisted.port.target_port == 7000 and unlisted.port.name is None
    assert any("not a declared container port" in note for note in unlisted.notes)
    only = ask(client, "frontend -> pod/redis-0")
    assert only.port.target_port == 6379 and only.notes == ()
    missing = refused(client, f"frontend -> pod/{api_pod.name}:grpc")
    assert "no container port named 'grpc'" in missing.message


def test_explicit_workload_target_checks_its_pods_and_mentions_the_service(client: ClusterClient) -> None:
    resolved = ask(client, "frontend -> deploy/api:8080")
    assert resolved.target_kind == "pod" and len(resolved.target_pods) == 3 and resolved.target_address is None
    assert any("svc/api" in note for note in resolved.notes)


def test_bare_service_name_as_source_uses_the_pods_it_selects(client: ClusterClient) -> None:
    resolved = ask(client, "kube-dns -> api:8080")
    assert resolved.source == "svc/kube-dns in kube-system"
    assert all(p.workload_name == "coredns" for p in resolved.source_pods) and resolved.source_total == 2


# ------------------------------------------------------------------------------ namespaces


def test_namespace_from_ref_then_question_hint_then_default(lab: Lab, client: ClusterClient) -> None:
    staging = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "krc-staging"}}
    api = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "api", "namespace": "krc-staging"},
        "spec": {"selector": {"app": "api"}, "ports": [{"name": "http", "port": 8080, "targetPort": 8080}]},
    }
    with lab.added(staging, api):
        assert ask(client, "frontend -> shop/api:8080").target == "svc/api in shop"
        hint = ask(client, "shop/frontend -> api:8080 in krc-staging", default_namespace="shop")
        assert (hint.source, hint.target) == ("deploy/frontend in shop", "svc/api in krc-staging")
        # The default namespace applies only to names without one.
        assert ask(client, "frontend -> api:8080", default_namespace="krc-staging").target == "svc/api in krc-staging"
        # "-n shop" is said for both names: the source must be in shop too.
        hinted = refused(client, "ledger -> api:8080 -n shop")
        assert hinted.code is VerdictCode.SOURCE_NOT_FOUND and "in namespace shop" in hinted.message
        assert "deploy/ledger in payments" in hinted.suggestions


def test_a_trailing_namespace_binds_to_the_nearest_name_and_the_other_is_searched(client: ClusterClient) -> None:
    # "in shop" is api's; ledger is looked for in shop first, then found where it is.
    resolved = ask(client, "ledger -> api:8080 in shop")
    assert (resolved.source, resolved.target) == ("deploy/ledger in payments", "svc/api in shop")
    assert any("ledger is not in shop; found it in payments" in note for note in resolved.notes)
    # A pod name unique across the namespaces is used without asking back, whatever the target's namespace.
    pod = next(
        p for p in client.resolve(parse_question("frontend -> api"), default_namespace=None, allowed_namespaces=None).source_pods
    )
    resolved = ask(client, f"why can't {pod.name} reach svc ledger in payments", allowed=frozenset({"shop", "payments"}))
    assert (resolved.source, resolved.target) == (f"pod/{pod.name} in shop", "svc/ledger in payments")
    both = ask(client, "frontend in shop can't reach ledger in payments")
    assert (both.source, both.target) == ("deploy/frontend in shop", "svc/ledger in payments")


def test_default_namespace_falls_back_to_all_namespaces_with_a_note(client: ClusterClient) -> None:
    resolved = ask(client, "frontend -> ledger:443", default_namespace="shop")
    assert resolved.target == "svc/ledger in payments"
    assert any("ledger is not in shop; found it in payments" in note for note in resolved.notes)


def test_same_name_in_two_namespaces_is_ambiguous_with_candidates(lab: Lab, client: ClusterClient) -> None:
    staging = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "krc-staging"}}
    api = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "api", "namespace": "krc-staging"},
        "spec": {"selector": {"matchLabels": {"app": "api"}}, "template": {"metadata": {"labels": {"app": "api"}}}},
    }
    with lab.added(staging, api):
        error = refused(client, "frontend -> api:8080")
        assert error.code is VerdictCode.AMBIGUOUS_NAME
        assert error.candidates == ("deploy/api in krc-staging", "svc/api in shop")
        assert "deploy/api in krc-staging, svc/api in shop" in error.message
        assert error.role == "target"
        assert error.candidate_refs == (
            Ref(RefKind.DEPLOYMENT, "api", "krc-staging"),
            Ref(RefKind.SERVICE, "api", "shop"),
        )
        # Each candidate, written back into the question, names exactly that object.
        choices = name_choices(parse_question("frontend -> api:8080"), error)
        assert [c.label for c in choices] == list(error.candidates)
        assert [c.question for c in choices] == ["frontend → krc-staging/deploy/api:8080", "frontend → shop/svc/api:8080"]
        assert ask(client, choices[1].question).target == "svc/api in shop"
        assert refused(client, choices[0].question).message.startswith("deploy/api in krc-staging has no pods")
        assert ask(client, "frontend -> api:8080 in shop").target == "svc/api in shop"
        # The other name's namespace is looked in first: no need to ask back.
        assert ask(client, "frontend in shop -> api:8080").target == "svc/api in shop"
        # The ambiguity disappears when only one namespace is allowed.
        only_shop = ask(client, "frontend -> api:8080", allowed=frozenset({"shop"}))
        assert only_shop.target == "svc/api in shop"


def test_of_several_bare_words_on_one_side_the_one_that_names_something_is_the_end(client: ClusterClient) -> None:
    resolved = ask(client, "frontend can't talk to redis, giant payloads hang")
    assert resolved.target == "svc/redis in shop"
    assert resolved.question.target == Ref(RefKind.WORKLOAD, "redis") and not resolved.question.target_alternatives
    assert resolved.question.ignored == ("giant", "payloads")
    assert "read redis as the target: giant, payloads name nothing here" in resolved.notes
    # the word nearest the connective need not be the name: "checkout" is no object, "frontend" is
    source = ask(client, "api is unreachable from checkout frontend")
    assert source.source == "deploy/frontend in shop" and source.question.ignored == ("checkout",)
    # what `ask --json` echoes as read_as is the question as settled, not the parser's first guess
    assert parse_question("api is unreachable from checkout frontend").normalized == "checkout → api"
    assert source.question.normalized == "frontend → api"


def test_several_bare_words_that_each_name_something_are_offered_as_choices(client: ClusterClient) -> None:
    error = refused(client, "frontend can't reach redis or node-2")
    assert error.code is VerdictCode.AMBIGUOUS_NAME and error.role == "target"
    assert "'redis' and 'node-2' each name something in the cluster: which is the target?" in error.message
    assert error.candidate_refs == (Ref(RefKind.SERVICE, "redis", "shop"), Ref(RefKind.NODE, "node-2"))
    choices = name_choices(parse_question("frontend can't reach redis or node-2"), error)
    assert ask(client, choices[0].question).target == "svc/redis in shop"
    assert ask(client, choices[1].question).target_node is not None


def test_a_workload_and_a_node_named_as_the_source_are_its_pods_on_that_node(client: ClusterClient) -> None:
    resolved = ask(client, "frontend on node-3 cannot reach api")
    assert resolved.source == "deploy/frontend in shop on node-3"
    assert [p.node for p in resolved.source_pods] == ["node-3"] and resolved.source_total == 1
    assert "read as the pods of deploy/frontend in shop on node-3" in resolved.notes
    assert not any("name nothing" in n for n in resolved.notes)
    error = refused(client, "frontend on node-2 cannot reach api")
    assert error.code is VerdictCode.SOURCE_NOT_FOUND
    assert "deploy/frontend in shop has no pods on node-2 (its pods are on node-1, node-3)" in error.message


def test_every_pod_of_a_namespace_as_the_source_is_its_own_pods(lab: Lab, client: ClusterClient) -> None:
    resolved = ask(client, "pods in namespace shop can't reach ledger in payments")
    shop = [p for p in lab.store.list("Pod", "shop").items if not p["spec"].get("hostNetwork")]
    assert resolved.source == "pods in shop" and resolved.source_total == len(shop)
    assert {p.namespace for p in resolved.source_pods} == {"shop"}
    # the target is looked for in the source's namespace first
    assert ask(client, "ns/shop -> api").target == "svc/api in shop"
    with pytest.raises(NamespaceNotAllowed):
        ask(client, "ns/shop -> ledger.payments", allowed=frozenset({"payments"}))
    missing = refused(client, "pods in nosuch cannot reach api")
    assert missing.code is VerdictCode.SOURCE_NOT_FOUND and "no namespace is named 'nosuch'" in missing.message


def test_several_bare_words_naming_nothing_end_with_the_nearest_words_suggestions(client: ClusterClient) -> None:
    error = refused(client, "frontend can't reach redys, big replies hang")
    assert error.code is VerdictCode.TARGET_NOT_FOUND and "redys" in error.message
    assert any("redis" in s for s in error.suggestions)


def test_a_service_as_the_source_is_asked_from_the_pods_it_selects(client: ClusterClient) -> None:
    resolved = ask(client, "the api service can't reach redis")
    assert resolved.source == "svc/api in shop" and resolved.source_total == 3
    assert all(p.labels.get("app") == "api" for p in resolved.source_pods)
    assert any("svc/api in shop is a service; checking from the pods it selects" in n for n in resolved.notes)


def test_namespace_outside_the_allowed_ones_is_refused(client: ClusterClient) -> None:
    with pytest.raises(NamespaceNotAllowed) as explicit:
        ask(client, "frontend -> payments/ledger:443", allowed=frozenset({"shop"}))
    assert explicit.value.namespace == "payments" and "allowed: shop" in explicit.value.message
    with pytest.raises(NamespaceNotAllowed) as searched:
        ask(client, "frontend -> ledger:443", allowed=frozenset({"shop"}))
    assert "svc/ledger in payments" in searched.value.message
    with pytest.raises(NamespaceNotAllowed):
        ask(client, "frontend -> 10.96.0.10:53", allowed=frozenset({"shop"}))
    assert ask(client, "frontend -> redis:6379", allowed=frozenset({"shop"})).target == "svc/redis in shop"


# ------------------------------------------------------------------------------ suggestions


def test_misspelt_names_get_suggestions_across_kinds_and_namespaces(client: ClusterClient) -> None:
    frontnd = refused(client, "frontnd -> api:8080")
    assert frontnd.code is VerdictCode.SOURCE_NOT_FOUND
    assert frontnd.suggestions[:2] == ("deploy/frontend in shop", "svc/frontend in shop")
    assert "did you mean deploy/frontend in shop or svc/frontend in shop?" in frontnd.message
    ledgr = refused(client, "frontend -> ledgr")
    assert ledgr.code is VerdictCode.TARGET_NOT_FOUND
    assert ledgr.suggestions[0] == "svc/ledger in payments"


def test_pod_name_prefixes_suggest_their_workload(client: ClusterClient) -> None:
    pod_prefix = refused(client, "pod/api-gk -> redis:6379")
    assert pod_prefix.suggestions[0] == "deploy/api in shop"
    hashed = refused(client, "pod/frontend-7d9 -> api:8080")
    assert hashed.suggestions[0] == "deploy/frontend in shop"


def test_wrong_kind_suggests_the_same_name_under_its_real_kind(client: ClusterClient) -> None:
    error = refused(client, "frontend -> svc/redis-0:6379")
    assert error.suggestions[0] == "pod/redis-0 in shop"
    node = refused(client, "node/node-7 -> api:8080")
    assert node.code is VerdictCode.SOURCE_NOT_FOUND and node.suggestions[0].startswith("node/node-")


# ------------------------------------------------------------------------------ DNS, IPs, nodes


def test_dns_names_resolve_to_services_and_pods(client: ClusterClient) -> None:
    service = ask(client, "frontend -> api.shop.svc.cluster.local:8080")
    assert service.target == "svc/api in shop" and service.port.service_port == 8080
    pod = ask(client, "frontend -> redis-0.redis.shop.svc.cluster.local:6379")
    assert pod.target_kind == "pod" and names(pod.target_pods) == ["redis-0"]
    external = ask(client, "frontend -> api.stripe.com:443")
    assert (external.target_kind, external.target_address, external.port.target_port) == ("external", "api.stripe.com", 443)


def test_ips_resolve_to_pod_service_node_or_outside(lab: Lab, client: ClusterClient) -> None:
    redis = lab.store.get("pods", "redis-0", "shop")
    kube_dns = lab.store.get("services", "kube-dns", "kube-system")
    by_pod_ip = ask(client, f"{redis['status']['podIP']} -> {kube_dns['spec']['clusterIP']}:53")
    assert names(by_pod_ip.source_pods) == ["redis-0"]
    assert by_pod_ip.target_kind == "service" and by_pod_ip.target_service is not None
    assert by_pod_ip.target_service.name == "kube-dns" and len(by_pod_ip.endpoints) == 2
    to_node = ask(client, "pod/redis-0 -> 10.240.0.12:10250")
    assert to_node.target_kind == "node" and to_node.target_node is not None and to_node.target_node.name == "node-2"
    outside = ask(client, "pod/redis-0 -> 192.0.2.7:443")
    assert (outside.target_kind, outside.target_address) == ("external", "192.0.2.7")
    gone = ask(client, "pod/redis-0 -> 10.244.1.250:443")
    assert (gone.target_kind, gone.target_address) == ("ip", "10.244.1.250")
    pod_address = redis["status"]["podIP"].replace(".", "-")
    by_pod_dns = ask(client, f"frontend -> {pod_address}.shop.pod.cluster.local:6379")
    assert by_pod_dns.target_kind == "pod" and names(by_pod_dns.target_pods) == ["redis-0"]
    nobody = refused(client, "10.244.1.250 -> api:8080")
    assert nobody.code is VerdictCode.SOURCE_NOT_FOUND and "10.244.1.250" in nobody.message


def test_node_refs_resolve_to_node_info(client: ClusterClient) -> None:
    resolved = ask(client, "node/node-1 -> node/node-3:10250")
    assert resolved.source_node is not None and resolved.source_node.internal_ip == "10.240.0.11"
    assert resolved.source_pods == () and resolved.source_total == 0
    assert resolved.target_kind == "node" and resolved.target_address == "10.240.0.13"
    assert set(resolved.nodes) == {"node-1", "node-2", "node-3"}
    node = resolved.nodes["node-2"]
    assert node.ready and node.pod_cidr == "10.244.2.0/24"


# ------------------------------------------------------------------------------ broken states


def test_service_whose_selector_matches_nothing_has_no_pods_and_no_endpoints(lab: Lab, client: ClusterClient) -> None:
    with lab.changed("services", "api", "shop", {"spec": {"selector": {"app": "apii"}}}):
        resolved = ask(client, "frontend -> svc/api:8080")
        assert resolved.target_service is not None and resolved.target_service.selector == {"app": "apii"}
        assert resolved.target_pods == () and resolved.endpoints == ()


def test_pods_not_ready_show_in_pods_and_endpoints(lab: Lab, client: ClusterClient) -> None:
    not_ready = {"status": {"conditions": [{"type": "Ready", "status": "False"}]}}
    with lab.changed("pods", "redis-0", "shop", not_ready):
        resolved = ask(client, "frontend -> redis:6379")
        assert [p.ready for p in resolved.target_pods] == [False]
        eventually(lambda: not ask(client, "frontend -> redis:6379").endpoints[0].ready, what="the endpoint to turn not ready")
    assert ask(client, "frontend -> redis:6379").endpoints[0].ready


def test_crash_looping_pod_reports_its_reason(lab: Lab, client: ClusterClient) -> None:
    crash = {
        "status": {
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [
                {
                    "name": "redis",
                    "ready": False,
                    "restartCount": 7,
                    "image": "registry.local/redis:lab",
                    "imageID": "",
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}},
                }
            ],
        }
    }
    with lab.changed("pods", "redis-0", "shop", crash):
        pod = ask(client, "pod/redis-0 -> api:8080").source_pods[0]
        assert (pod.reason, pod.ready, pod.restarts) == ("CrashLoopBackOff", False, 7)


def test_pod_without_ip(lab: Lab, client: ClusterClient) -> None:
    with lab.changed("pods", "redis-0", "shop", {"status": {"podIP": None, "podIPs": None}}):
        pod = ask(client, "pod/redis-0 -> api:8080").source_pods[0]
        assert pod.ip is None and pod.phase == "Running"


def test_large_workload_is_sampled_one_pod_per_node(lab: Lab, client: ClusterClient) -> None:
    template = lab.store.get("pods", "redis-0", "shop")
    extra = []
    for index in range(1, 8):
        pod = copy.deepcopy(template)
        pod["metadata"] = {
            "name": f"redis-{index}",
            "namespace": "shop",
            "labels": template["metadata"]["labels"],
            "ownerReferences": template["metadata"]["ownerReferences"],
        }
        pod["spec"]["nodeName"] = f"node-{index % 3 + 1}"
        pod["status"]["podIP"] = f"10.244.{index % 3 + 1}.{100 + index}"
        pod["status"]["podIPs"] = [{"ip": pod["status"]["podIP"]}]
        extra.append(pod)
    with lab.added(*extra):
        resolved = ask(client, "sts/redis -> api:8080")
        assert resolved.source_total == 8
        assert len(resolved.source_pods) == 3
        assert sorted(p.node or "" for p in resolved.source_pods) == ["node-1", "node-2", "node-3"]


# ------------------------------------------------------------------------------ policy, agents, calls


def test_policy_objects_feed_the_network_policy_evaluator(client: ClusterClient) -> None:
    resolved = ask(client, "frontend -> ledger:443")
    cluster = cluster_from_objects(resolved.policy_objects)
    source = next(p for p in cluster.pods if p.name == resolved.source_pods[0].name)
    destination = next(p for p in cluster.pods if p.name == resolved.target_pods[0].name)
    target_port = resolved.port.target_port
    assert isinstance(target_port, int)
    assert not evaluate(cluster, source, destination, target_port, "TCP").allowed
    allowed = ask(client, "deploy/api -> ledger:443")
    cluster = cluster_from_objects(allowed.policy_objects)
    source = next(p for p in cluster.pods if p.name == allowed.source_pods[0].name)
    assert evaluate(cluster, source, destination, target_port, "TCP").allowed


def test_agent_addresses_from_annotation_or_pod_ip(client: ClusterClient) -> None:
    assert client.agent_addresses() == {
        "node-1": AGENT_ON_NODE_1,
        "node-2": "10.240.0.12:7443",
        "node-3": "10.240.0.13:7443",
    }


def test_api_calls_are_recorded_and_stay_within_the_declared_resources(client: ClusterClient) -> None:
    ask(client, "frontend -> api:8080")
    calls = client.api_calls
    assert calls
    declared = {(r.group, r.plural) for r in RESOURCES}
    assert {(c.group, c.resource) for c in calls} <= declared
    assert {c.verb for c in calls} == {"list"}
    assert any(c.resource == "endpointslices" and c.namespace == "shop" for c in calls)


# ------------------------------------------------------------------------------ from outside, nodes, external names


def test_outside_sources_are_external_whatever_the_wording(client: ClusterClient) -> None:
    for text in (
        "why can't external traffic reach nodeport 30080 on node-2",
        "nodeport 30080 on node-2 is unreachable from the internet",
        "can clients reach node-2's nodeport 30080?",
        "outside → nodeport 30080 on node-2",
    ):
        resolved = ask(client, text)
        assert resolved.source_kind == "external" and resolved.source_pods == (), text
        assert resolved.source_address is None
        assert resolved.target_kind == "service" and resolved.target_service is not None, text
        assert resolved.target_service.key == "shop/frontend-nodeport"
        assert resolved.entry == EntryInfo(EntryKind.NODEPORT, 30080, None, ("node-2",)), text
        assert resolved.port.service_port == 80


def test_an_address_outside_the_cluster_ranges_is_an_outside_source(client: ClusterClient) -> None:
    resolved = ask(client, "why can't 203.0.113.7 reach nodeport 30080")
    assert (resolved.source_kind, resolved.source_address) == ("external", "203.0.113.7")
    assert resolved.entry is not None and resolved.entry.nodes == ()
    source, _ = workload_refs(resolved)
    assert (source.kind, source.name) == ("outside", "203.0.113.7")


def test_a_nodeport_no_service_owns_is_refused_with_the_ones_that_exist(client: ClusterClient) -> None:
    error = refused(client, "why can't external traffic reach nodeport 31999 on node-2")
    assert error.code is VerdictCode.TARGET_NOT_FOUND
    assert "no service has NodePort 31999" in error.message and "nodeport 30080" in error.message
    assert error.suggestions[0].startswith("nodeport 30080")


def test_a_node_that_does_not_exist_is_refused_with_near_names(client: ClusterClient) -> None:
    error = refused(client, "outside → nodeport 30080 on node-9")
    assert error.code is VerdictCode.TARGET_NOT_FOUND and "node-9" in error.message
    assert error.suggestions and error.suggestions[0].startswith("node/node-")


def test_a_services_ways_in_by_name(lab: Lab, client: ClusterClient) -> None:
    lb_ip = lab.store.get("services", "web", "shop")["status"]["loadBalancer"]["ingress"][0]["ip"]
    balancer = ask(client, "why can't clients reach svc web's load balancer")
    assert balancer.source_kind == "external" and balancer.target_service is not None
    assert balancer.target_service.key == "shop/web" and balancer.target_service.load_balancer_ips == (lb_ip,)
    assert balancer.entry == EntryInfo(EntryKind.LOAD_BALANCER, 80, lb_ip, ())
    node_port = ask(client, "the nodeport of web from outside")
    assert node_port.entry == EntryInfo(EntryKind.NODEPORT, 30081, None, ())
    external_ip = ask(client, "frontend-nodeport's external IP is unreachable from outside")
    assert external_ip.entry == EntryInfo(EntryKind.EXTERNAL_IP, 80, "198.51.100.100", ())
    asked_port = ask(client, "outside → svc/web nodeport 30081 on node-3")
    assert asked_port.entry == EntryInfo(EntryKind.NODEPORT, 30081, None, ("node-3",))


def test_a_way_in_a_service_does_not_have_is_refused(client: ClusterClient) -> None:
    cluster_ip = refused(client, "why can't clients reach svc api's nodeport")
    assert cluster_ip.code is VerdictCode.TARGET_NOT_FOUND and "ClusterIP service: it has no NodePort" in cluster_ip.message
    no_balancer = refused(client, "outside → frontend-nodeport's load balancer")
    assert "not a LoadBalancer" in no_balancer.message
    wrong_number = refused(client, "outside → svc/web nodeport 30080")
    assert "has no NodePort 30080" in wrong_number.message and "30081" in wrong_number.message


def test_an_address_of_a_way_in_resolves_to_its_service(lab: Lab, client: ClusterClient) -> None:
    lb_ip = lab.store.get("services", "web", "shop")["status"]["loadBalancer"]["ingress"][0]["ip"]
    external = ask(client, "why can't I reach 198.51.100.100:80 from the internet")
    assert external.target_service is not None and external.target_service.key == "shop/frontend-nodeport"
    assert external.entry == EntryInfo(EntryKind.EXTERNAL_IP, 80, "198.51.100.100", ())
    balancer = ask(client, f"outside → {lb_ip}:80")
    assert balancer.target_service is not None and balancer.target_service.key == "shop/web"
    assert balancer.entry == EntryInfo(EntryKind.LOAD_BALANCER, 80, lb_ip, ())
    on_node = ask(client, "from outside to node-2:30080")
    assert on_node.target_service is not None and on_node.target_service.key == "shop/frontend-nodeport"
    assert on_node.entry == EntryInfo(EntryKind.NODEPORT, 30080, None, ("node-2",))
    by_node_ip = ask(client, "outside → 10.240.0.12:30081")
    assert by_node_ip.entry == EntryInfo(EntryKind.NODEPORT, 30081, None, ("node-2",))
    kubelet = ask(client, "outside → node-2:10250")
    assert kubelet.target_kind == "node" and kubelet.entry is None and kubelet.target_node is not None


def test_namespace_scoping_holds_for_ways_in(lab: Lab, client: ClusterClient) -> None:
    lb_ip = lab.store.get("services", "web", "shop")["status"]["loadBalancer"]["ingress"][0]["ip"]
    payments = frozenset({"payments"})
    for text in ("outside → nodeport 30080", "outside → 198.51.100.100:80", f"outside → {lb_ip}:80", "outside → node-1:30080"):
        with pytest.raises(NamespaceNotAllowed):
            ask(client, text, allowed=payments)
        assert ask(client, text, allowed=frozenset({"shop"})).target_service is not None


def test_nodes_as_sources_by_bare_name_or_kind(client: ClusterClient) -> None:
    for text in (
        "why can't node-1 reach api",
        "from node node-1 to api:8080",
        "is api reachable from node/node-1",
        "node-1 → api -n shop",
        "10.240.0.11 → api",
    ):
        resolved = ask(client, text)
        assert resolved.source_kind == "node" and resolved.source_node is not None, text
        assert resolved.source_node.name == "node-1" and resolved.source_pods == ()
        assert resolved.target_service is not None and resolved.target_service.key == "shop/api"
    unknown = refused(client, "why can't node-9 reach api")
    assert unknown.code is VerdictCode.SOURCE_NOT_FOUND


def test_external_names_are_not_read_as_services(client: ClusterClient) -> None:
    short = ask(client, "why can't frontend reach example.com:443")
    assert (short.target_kind, short.external_name, short.target_service) == ("external", "example.com", None)
    url = ask(client, "frontend → https://www.example.com/path")
    assert (url.target_kind, url.external_name, url.port.target_port) == ("external", "www.example.com", 443)
    plain = ask(client, "frontend to http://downloads.example.com:8080/")
    assert (plain.external_name, plain.port.target_port) == ("downloads.example.com", 8080)
    no_port = ask(client, "why can't frontend reach example.com")
    assert no_port.port.target_port is None and any("no port given" in n for n in no_port.notes)


def test_a_name_that_could_be_the_clusters_is_looked_up_in_the_cluster(client: ClusterClient) -> None:
    service = ask(client, "frontend → api.shop:8080")
    assert service.target_kind == "service" and service.external_name is None
    missing = refused(client, "frontend → nothing.payments:443")
    assert missing.code is VerdictCode.TARGET_NOT_FOUND
    with pytest.raises(NamespaceNotAllowed):
        ask(client, "frontend → ledger.payments:443", allowed=frozenset({"shop"}))


def test_external_name_services_are_external_targets_with_their_alias(client: ClusterClient) -> None:
    resolved = ask(client, "frontend → payments-gateway:443")
    assert resolved.target_kind == "external" and resolved.target_service is not None
    assert resolved.target_service.type == "ExternalName" and resolved.external_name == "api.example.com"
    assert any("alias (CNAME) for api.example.com" in note for note in resolved.notes)
    _, target = workload_refs(resolved)
    assert (target.kind, target.namespace, target.name) == ("service", "shop", "payments-gateway")


def redis_pods(lab: Lab) -> list[str]:
    return sorted(
        p["metadata"]["name"] for p in lab.store.list("pods", "shop").items if p["metadata"]["labels"].get("app") == "redis"
    )


def test_headless_services_have_their_pods_as_endpoints_and_no_vip(lab: Lab, client: ClusterClient) -> None:
    resolved = ask(client, "frontend → redis-headless")
    assert resolved.target_kind == "service" and resolved.target_service is not None
    assert resolved.target_service.headless and resolved.target_address is None
    assert names(resolved.target_pods) == redis_pods(lab)
    assert sorted(e.pod_name or "" for e in resolved.endpoints) == redis_pods(lab)


def _host_network_pod(node: str, ip: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"exporter-{node}", "namespace": "monitoring", "labels": {"app": "exporter"}},
        "spec": {
            "nodeName": node,
            "hostNetwork": True,
            "containers": [{"name": "exporter", "image": "exporter", "ports": [{"containerPort": 9100, "name": "metrics"}]}],
        },
        "status": {
            "phase": "Running",
            "podIP": ip,
            "hostIP": ip,
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def test_host_network_pods_are_sources_and_targets_by_name_not_by_their_nodes_ip(lab: Lab, client: ClusterClient) -> None:
    with lab.added(_host_network_pod("node-2", "10.240.0.12")):
        target = ask(client, "frontend → pod/exporter-node-2:9100")
        assert target.target_kind == "pod" and target.target_pods[0].host_network
        assert target.target_address == "10.240.0.12"
        source = ask(client, "exporter-node-2 → api:8080")
        assert source.source_kind == "pod" and source.source_pods[0].host_network
        by_ip = ask(client, "frontend → 10.240.0.12:10250")
        assert by_ip.target_kind == "node" and by_ip.target_pods == ()


# ------------------------------------------------------------------------------ the Case


AGENTS = frozenset({"node-1", "node-2", "node-3"})


def test_the_case_plays_an_outside_client_from_a_node_that_does_not_receive(client: ClusterClient) -> None:
    case = build_case(ask(client, "why can't external traffic reach nodeport 30080 on node-1"), AGENTS)
    assert case.source_kind == "external" and case.target_kind == "service"
    (outside,) = case.sources
    assert (outside.namespace, outside.name, outside.node, outside.host_network) == ("", "outside", "node-2", True)
    assert outside.ip == case.nodes["node-2"].ip
    assert case.entry == Entry("nodeport", 30080, None, ("node-1",))
    assert case.service is not None and case.service.node_port == 30080 and case.service.type == "NodePort"
    assert case.service.external_ips == ("198.51.100.100",) and case.port == 80
    only_agent = build_case(ask(client, "outside → nodeport 30080 on node-1"), frozenset({"node-1"}))
    assert only_agent.sources[0].node == "node-1"


def test_the_case_of_a_node_source_is_one_host_network_pod(client: ClusterClient) -> None:
    case = build_case(ask(client, "why can't node-3 reach api"), AGENTS)
    assert case.source_kind == "node" and case.source_total == 1
    assert case.sources == (PodRef("", "node-3", "10.240.0.13", "node-3", host_network=True, dns_policy=""),)
    source, _ = workload_refs(ask(client, "why can't node-3 reach api"))
    assert (source.kind, source.namespace, source.name) == ("node", None, "node-3")


def test_the_case_fills_every_service_field_from_the_api(lab: Lab, client: ClusterClient) -> None:
    patch = {"spec": {"externalTrafficPolicy": "Local", "sessionAffinity": "ClientIP", "internalTrafficPolicy": "Local"}}
    with lab.changed("services", "web", "shop", patch):
        case = build_case(ask(client, "outside → web's lb"), AGENTS)
    service = case.service
    assert service is not None and service.type == "LoadBalancer"
    assert (service.external_traffic_policy, service.internal_traffic_policy) == ("Local", "Local")
    assert service.health_check_node_port is not None and service.session_affinity == "ClientIP"
    assert case.entry is not None and case.entry.kind == "load-balancer" and case.entry.address == service.load_balancer_ips[0]
    assert service.node_port == 30081 and case.port == 80


def test_the_case_of_an_external_name(client: ClusterClient) -> None:
    case = build_case(ask(client, "frontend → www.example.com:443"), AGENTS)
    assert (case.target_kind, case.external_name, case.target_ip, case.port) == ("external", "www.example.com", None, 443)
    assert case.dns_name == "www.example.com" and case.dns_fqdn == "www.example.com."
    by_ip = build_case(ask(client, "frontend → 203.0.113.10:80"), AGENTS)
    assert (by_ip.target_kind, by_ip.external_name, by_ip.target_ip) == ("external", None, "203.0.113.10")
    alias = build_case(ask(client, "frontend → payments-gateway:443"), AGENTS)
    assert alias.external_name == "api.example.com" and alias.service is not None
    assert alias.service.external_name == "api.example.com" and alias.service.type == "ExternalName"
    assert alias.dns_name == "payments-gateway.shop" and alias.target_ip is None
    _, target = workload_refs(ask(client, "frontend → www.example.com:443"))
    assert (target.kind, target.name) == ("external", "www.example.com")


def test_the_case_of_a_headless_service(lab: Lab, client: ClusterClient) -> None:
    case = build_case(ask(client, "frontend → redis-headless:6379"), AGENTS)
    assert case.service is not None and case.service.cluster_ip == "None" and case.service.headless
    assert sorted(e.pod.name for e in case.endpoints if e.pod) == redis_pods(lab) and case.target_ip is None


def test_a_bare_name_like_a_node_suggests_the_nodes(client: ClusterClient) -> None:
    error = refused(client, "why can't node-9 reach api")
    assert error.code is VerdictCode.SOURCE_NOT_FOUND and "node/node-" in error.message
    assert any(s.startswith("node/node-") for s in error.suggestions)


def test_a_way_in_is_written_back_with_its_port_address_and_service(lab: Lab, client: ClusterClient) -> None:
    lb_ip = lab.store.get("services", "web", "shop")["status"]["loadBalancer"]["ingress"][0]["ip"]
    assert (
        ask(client, "outside → nodeport 30080 on node-2").target
        == "NodePort 30080 of svc/frontend-nodeport in shop on node/node-2"
    )
    assert ask(client, "outside → node-3:30081").target == "NodePort 30081 of svc/web in shop on node/node-3"
    assert ask(client, "clients → web's lb").target == f"load balancer {lb_ip}:80 of svc/web in shop"
    assert ask(client, "outside → 198.51.100.100:80").target == "external IP 198.51.100.100:80 of svc/frontend-nodeport in shop"
