"""The lab API store: server metadata, optimistic concurrency, patches, paging, history, subscribers."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from lab.apiserver.errors import AlreadyExists, BadRequest, Conflict, Expired, Invalid, NotFound
from lab.apiserver.store import Preconditions, Store, WatchEvent


def pod(name: str, namespace: str = "default", **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": {"containers": [{"name": "main", "image": "lab", "ports": [{"containerPort": 80}]}]},
    }


def deployment(name: str, replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
        },
    }


def test_create_stamps_server_metadata_and_defaults() -> None:
    store = Store()
    created = store.create(pod("web-1"))
    meta = created["metadata"]
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z")
    assert meta["generation"] == 1
    assert meta["resourceVersion"] == store.resource_version
    assert created["status"]["phase"] == "Pending"
    assert created["spec"]["containers"][0]["ports"][0]["protocol"] == "TCP"


def test_resource_versions_increase_globally_across_kinds() -> None:
    store = Store()
    versions = [
        int(store.create(pod("a"))["metadata"]["resourceVersion"]),
        int(store.create(deployment("d"))["metadata"]["resourceVersion"]),
        int(store.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})["metadata"]["resourceVersion"]),
    ]
    assert versions == sorted(versions) and len(set(versions)) == 3


def test_namespaced_create_needs_an_existing_namespace() -> None:
    store = Store()
    with pytest.raises(NotFound, match='namespaces "shop" not found'):
        store.create(pod("web-1", "shop"))
    store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
    assert store.create(pod("web-1", "shop"))["metadata"]["namespace"] == "shop"


def test_duplicate_create_is_already_exists_and_bad_names_are_invalid() -> None:
    store = Store()
    store.create(pod("web-1"))
    with pytest.raises(AlreadyExists):
        store.create(pod("web-1"))
    with pytest.raises(Invalid):
        store.create(pod("Web_1"))


def test_generate_name_gives_a_fresh_suffix() -> None:
    store = Store()
    obj = pod("")
    obj["metadata"] = {"generateName": "web-", "namespace": "default"}
    name = store.create(obj)["metadata"]["name"]
    assert name.startswith("web-") and len(name) == len("web-") + 5


def test_stale_replace_conflicts_and_fresh_replace_succeeds() -> None:
    store = Store()
    first = store.create(deployment("api"))
    first["spec"]["replicas"] = 2
    second = store.replace(first)
    assert int(second["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
    first["spec"]["replicas"] = 3
    with pytest.raises(Conflict):
        store.replace(first)


def test_generation_bumps_on_spec_change_only() -> None:
    store = Store()
    store.create(deployment("api"))
    patched = store.patch("deployments", "api", {"spec": {"replicas": 3}}, "default")
    assert patched["metadata"]["generation"] == 2
    status = store.patch("deployments", "api", {"status": {"replicas": 3}}, "default", subresource="status")
    assert status["metadata"]["generation"] == 2
    labelled = store.patch("deployments", "api", {"metadata": {"labels": {"team": "a"}}}, "default")
    assert labelled["metadata"]["generation"] == 2


def test_update_that_changes_nothing_keeps_the_resource_version() -> None:
    store = Store()
    created = store.create(pod("web-1"))
    again = store.replace(created)
    assert again["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert store.resource_version == created["metadata"]["resourceVersion"]


def test_status_subresource_changes_only_status_and_keep_status_ignores_it() -> None:
    store = Store()
    created = store.create(pod("web-1", app="web"))
    sneaky = dict(created, status={"phase": "Running"})
    sneaky["metadata"] = dict(created["metadata"], labels={"app": "other"})
    after = store.replace(sneaky, subresource="status")
    assert after["status"] == {"phase": "Running", "qosClass": "BestEffort"}  # the server keeps the pod's QoS class
    assert after["metadata"]["labels"] == {"app": "web"}
    main = dict(after, status={"phase": "Failed"})
    kept = store.replace(main, keep_status=True)
    assert kept["status"] == {"phase": "Running", "qosClass": "BestEffort"}


def test_merge_strategic_and_json_patches() -> None:
    store = Store()
    store.create(pod("web-1", app="web", tier="front"))
    merged = store.patch("pods", "web-1", {"metadata": {"labels": {"tier": None, "v": "2"}}}, "default")
    assert merged["metadata"]["labels"] == {"app": "web", "v": "2"}
    strategic = store.patch(
        "Pod", "web-1", {"spec": {"nodeName": "node-1"}}, "default", patch_type="application/strategic-merge-patch+json"
    )
    assert strategic["spec"]["nodeName"] == "node-1"
    ops = [
        {"op": "add", "path": "/metadata/labels/x", "value": "1"},
        {"op": "replace", "path": "/spec/containers/0/image", "value": "lab:2"},
        {"op": "remove", "path": "/metadata/labels/v"},
        {"op": "test", "path": "/metadata/labels/app", "value": "web"},
    ]
    patched = store.patch("pods", "web-1", ops, "default", patch_type="json")
    assert patched["metadata"]["labels"] == {"app": "web", "x": "1"}
    assert patched["spec"]["containers"][0]["image"] == "lab:2"
    with pytest.raises(Invalid):
        store.patch(
            "pods", "web-1", [{"op": "test", "path": "/metadata/labels/app", "value": "no"}], "default", patch_type="json"
        )


def test_list_filters_by_namespace_and_selectors_and_pages_with_continue() -> None:
    store = Store()
    store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
    for i in range(5):
        store.create(pod(f"web-{i}", "shop", app="web"))
    store.create(pod("db-0", "shop", app="db"))
    store.create(pod("web-x", "default", app="web"))
    assert len(store.list("pods").items) == 7
    assert len(store.list("pods", "shop").items) == 6
    assert [p["metadata"]["name"] for p in store.list("pods", "shop", label_selector="app!=web").items] == ["db-0"]
    assert [p["metadata"]["name"] for p in store.list("pods", field_selector="metadata.namespace=default").items] == ["web-x"]
    names: list[str] = []
    token = None
    while True:
        page = store.list("pods", "shop", label_selector="app=web", limit=2, continue_token=token)
        names += [p["metadata"]["name"] for p in page.items]
        token = page.continue_token
        if token is None:
            break
        assert page.remaining_item_count is None  # kube-apiserver does not count what a selector filters
    assert names == [f"web-{i}" for i in range(5)]
    with pytest.raises(BadRequest):
        store.list("pods", continue_token="not-a-token")


def test_delete_returns_last_state_and_honours_preconditions() -> None:
    store = Store()
    created = store.create(pod("web-1"))
    with pytest.raises(Conflict):
        store.delete("pods", "web-1", "default", preconditions=Preconditions(uid="other"))
    gone = store.delete("pods", "web-1", "default", preconditions=Preconditions(uid=created["metadata"]["uid"]))
    assert int(gone["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    with pytest.raises(NotFound):
        store.get("pods", "web-1", "default")


def test_finalizers_hold_deletion_until_cleared() -> None:
    store = Store()
    obj = pod("web-1")
    obj["metadata"]["finalizers"] = ["lab/hold"]
    store.create(obj)
    marked = store.delete("pods", "web-1", "default")
    assert marked["metadata"]["deletionTimestamp"]
    assert store.get("pods", "web-1", "default")["metadata"]["deletionTimestamp"]
    store.patch("pods", "web-1", {"metadata": {"finalizers": None}}, "default")
    with pytest.raises(NotFound):
        store.get("pods", "web-1", "default")


def test_deleting_a_namespace_deletes_its_objects() -> None:
    store = Store()
    store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
    store.create(pod("web-1", "shop"))
    store.create(pod("web-1", "default"))
    store.delete("namespaces", "shop")
    assert [p["metadata"]["namespace"] for p in store.list("pods").items] == ["default"]


def test_services_get_a_cluster_ip_and_explicit_duplicates_are_invalid() -> None:
    store = Store()
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "dns", "namespace": "kube-system"},
        "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]},
    }
    created = store.create(svc)
    assert created["spec"]["ports"][0]["targetPort"] == 53
    auto = store.create(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "api", "namespace": "default"},
            "spec": {"ports": [{"port": 80}]},
        }
    )
    assert auto["spec"]["clusterIP"] not in ("", "10.96.0.10")
    svc["metadata"]["name"] = "dns2"
    with pytest.raises(Invalid):
        store.create(svc)


def test_events_after_replays_history_and_expires_when_compacted() -> None:
    store = Store(history_size=3, namespaces=("default",))
    start = int(store.resource_version)
    store.create(pod("a"))
    store.patch("pods", "a", {"metadata": {"labels": {"x": "1"}}}, "default")
    store.delete("pods", "a", "default")
    events, latest = store.events_after(start, timeout=0)
    assert [e.type for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    assert latest == int(store.resource_version)
    store.create(pod("b"))
    with pytest.raises(Expired, match="too old resource version"):
        store.events_after(start, timeout=0)


def test_subscribers_get_events_in_order_outside_the_store_lock() -> None:
    store = Store()
    seen: list[WatchEvent] = []
    writer_done = threading.Event()

    def controller(event: WatchEvent) -> None:
        seen.append(event)
        if event.type == "ADDED" and event.object["metadata"]["name"] == "web-1":
            # Writing from a callback would deadlock if callbacks ran under the (non-reentrant) store lock.
            store.create(pod("follow-up"))

    store.subscribe(controller)
    thread = threading.Thread(target=lambda: (store.create(pod("web-1")), writer_done.set()))
    thread.start()
    thread.join(timeout=30)
    assert writer_done.is_set(), "a write from inside a subscriber callback blocked"
    names = [(e.type, e.object["metadata"]["name"]) for e in seen]
    assert names == [("ADDED", "web-1"), ("ADDED", "follow-up")]
    versions = [e.resource_version for e in seen]
    assert versions == sorted(versions)


def test_cancelled_subscription_gets_nothing_more() -> None:
    store = Store()
    seen: list[str] = []
    subscription = store.subscribe(lambda e: seen.append(e.object["metadata"]["name"]))
    store.create(pod("a"))
    subscription.cancel()
    store.create(pod("b"))
    assert seen == ["a"]


def test_returned_objects_are_copies() -> None:
    store = Store()
    created = store.create(pod("web-1", app="web"))
    created["metadata"]["labels"]["app"] = "changed"
    store.get("pods", "web-1", "default")["metadata"]["labels"]["app"] = "changed"
    assert store.get("pods", "web-1", "default")["metadata"]["labels"] == {"app": "web"}


def test_put_creates_then_replaces_unconditionally() -> None:
    store = Store()
    first = store.put(pod("web-1", app="web"))
    stale = dict(pod("web-1", app="api"))
    stale["metadata"]["resourceVersion"] = "1"
    second = store.put(stale)
    assert second["metadata"]["uid"] == first["metadata"]["uid"]
    assert second["metadata"]["labels"] == {"app": "api"}


def test_reads_hand_out_copies_that_cannot_change_the_store() -> None:
    """Lists and gets copy the stored objects (marshal's round trip, or deepcopy for what marshal
    cannot carry): changing what a read returned, at any depth, changes nothing stored."""
    store = Store()
    store.create(pod("web", app="web"))
    listed = store.list("pods", "default").items[0]
    listed["spec"]["containers"][0]["image"] = "changed"
    listed["metadata"]["labels"]["app"] = "changed"
    got = store.get("pods", "web", "default")
    assert got["spec"]["containers"][0]["image"] == "lab" and got["metadata"]["labels"] == {"app": "web"}
    got["spec"]["containers"][0]["ports"].append({"containerPort": 81})
    assert len(store.list("pods", "default").items[0]["spec"]["containers"][0]["ports"]) == 1


def test_copies_of_what_marshal_cannot_carry_fall_back_to_deepcopy() -> None:
    class Tagged(dict[str, Any]):
        pass

    store = Store()
    given = pod("web")
    given["metadata"]["labels"] = Tagged(app="web")
    created = store.create(given)
    assert isinstance(created["metadata"]["labels"], Tagged) and created["metadata"]["labels"] == {"app": "web"}
    store.get("pods", "web", "default")["metadata"]["labels"]["app"] = "changed"
    assert store.get("pods", "web", "default")["metadata"]["labels"] == {"app": "web"}
