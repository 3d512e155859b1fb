"""The per-node watcher: list, watch, relist on 410, debounce, status file — against a local HTTP API."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from lab.kubeproxy.watch import ENDPOINT_SLICES_PATH, SERVICES_PATH, KubeApi, NodeProxy, Object, ProxySettings

from .test_kubeproxy_fakeapi import FakeApi, serve_fake_api
from .test_kubeproxy_objects import endpoint, endpoint_slice, service

TOKEN = "kp-test-token"


def wait_for(condition: Callable[[], bool], what: str, deadline_s: float = 10.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class RecordingSync:
    """Our seam in place of iptables/nft: remembers what each sync was given."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[list[Object], list[Object]]] = []

    def __call__(self, services: Sequence[Object], slices: Sequence[Object]) -> None:
        with self.lock:
            self.calls.append((list(services), list(slices)))

    def last_names(self) -> tuple[set[str], set[str]]:
        with self.lock:
            if not self.calls:
                return set(), set()
            services, slices = self.calls[-1]
        return {s["metadata"]["name"] for s in services}, {s["metadata"]["name"] for s in slices}

    def count(self) -> int:
        with self.lock:
            return len(self.calls)


def settings(tmp_path: Path, api_url: str, min_sync: float = 0.1, sync_period: float = 0.0) -> ProxySettings:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    return ProxySettings(
        node_name="kp-node", node_ip="10.240.0.11", netns="kp-unused", api_url=api_url,
        token_file=token_file, mode="iptables", cluster_cidr="10.244.0.0/16",
        status_file=tmp_path / "status" / "kp.json", min_sync_period=min_sync, sync_period=sync_period,
    )


def run_proxy(cfg: ProxySettings, sync: RecordingSync) -> Iterator[tuple[NodeProxy, threading.Event]]:
    proxy = NodeProxy(cfg, KubeApi(cfg.api_url, cfg.token_file), sync)
    stop = threading.Event()
    thread = threading.Thread(target=proxy.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield proxy, stop
    finally:
        stop.set()
        thread.join(timeout=5)
        assert not thread.is_alive()


@pytest.fixture
def fake_api() -> Iterator[tuple[FakeApi, str]]:
    with serve_fake_api(TOKEN) as served:
        yield served


def status(cfg: ProxySettings) -> dict[str, Any]:
    try:
        return dict(json.loads(cfg.status_file.read_text()))
    except (OSError, ValueError):
        return {}


def test_first_sync_waits_for_both_lists_then_writes_status(tmp_path: Path, fake_api: tuple[FakeApi, str]) -> None:
    api, url = fake_api
    api.put(SERVICES_PATH, service("default", "web", "10.96.0.20"))
    api.put(ENDPOINT_SLICES_PATH, endpoint_slice("default", "web", [endpoint("10.244.1.2")]))
    cfg = settings(tmp_path, url)
    sync = RecordingSync()
    for _ in run_proxy(cfg, sync):
        wait_for(lambda: status(cfg).get("generation") == 1, "first status")
        assert sync.last_names() == ({"web"}, {"web-abcde"})
        doc = status(cfg)
        assert doc["services"] == 1 and doc["mode"] == "iptables" and "synced_at" in doc
    assert all("Bearer" not in r for r in api.requests)  # the token travels in a header, not the URL
    assert any("watch=1" in r and "allowWatchBookmarks=true" in r for r in api.requests)


def test_watch_events_trigger_resync_with_current_objects(tmp_path: Path, fake_api: tuple[FakeApi, str]) -> None:
    api, url = fake_api
    cfg = settings(tmp_path, url)
    sync = RecordingSync()
    for _ in run_proxy(cfg, sync):
        wait_for(lambda: status(cfg).get("generation", 0) >= 1, "initial sync of an empty cluster")
        api.put(SERVICES_PATH, service("default", "api", "10.96.0.30"))
        api.put(ENDPOINT_SLICES_PATH, endpoint_slice("default", "api", [endpoint("10.244.1.5")]))
        wait_for(lambda: sync.last_names() == ({"api"}, {"api-abcde"}), "added objects")
        api.delete(SERVICES_PATH, "default", "api")
        wait_for(lambda: sync.last_names() == (set(), {"api-abcde"}), "deleted service")
        wait_for(lambda: status(cfg).get("services") == 0, "status after delete")


def test_gone_resource_version_relists_and_sees_silent_changes(tmp_path: Path,
                                                               fake_api: tuple[FakeApi, str]) -> None:
    api, url = fake_api
    api.put(SERVICES_PATH, service("default", "old", "10.96.0.40"))
    cfg = settings(tmp_path, url)
    sync = RecordingSync()
    for _ in run_proxy(cfg, sync):
        wait_for(lambda: sync.last_names()[0] == {"old"}, "initial list")
        # Changes that produce no watch event, then a compaction: only a relist can see them.
        api.delete(SERVICES_PATH, "default", "old", event=False)
        api.put(SERVICES_PATH, service("default", "new", "10.96.0.41"), event=False)
        api.compact()
        wait_for(lambda: sync.last_names()[0] == {"new"}, "relist after 410 Gone")


def test_bursts_of_changes_are_coalesced_into_one_sync(tmp_path: Path, fake_api: tuple[FakeApi, str]) -> None:
    api, url = fake_api
    cfg = settings(tmp_path, url, min_sync=3.0)
    sync = RecordingSync()
    for _ in run_proxy(cfg, sync):
        wait_for(lambda: sync.count() == 1, "initial sync")
        for i in range(20):
            api.put(SERVICES_PATH, service("default", f"s{i}", f"10.96.1.{i}"))
        wait_for(lambda: status(cfg).get("services") == 20, "all 20 services synced")
        # The whole burst arrived inside one min-sync period: one more sync carried all of it.
        assert sync.count() == 2
        assert status(cfg)["generation"] == 2


def test_retries_until_the_api_server_comes_up(tmp_path: Path) -> None:
    # Something that accepts and hangs up stands in for an API server that is still starting.
    with socket.socket() as starting:
        starting.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        starting.bind(("127.0.0.1", 0))
        starting.listen(16)
        starting.settimeout(10)
        port = int(starting.getsockname()[1])
        cfg = settings(tmp_path, f"http://127.0.0.1:{port}")
        sync = RecordingSync()
        proxy_run = run_proxy(cfg, sync)
        next(proxy_run)
        for _attempt in range(3):
            conn, _ = starting.accept()
            conn.close()
    try:
        assert sync.count() == 0
        with serve_fake_api(TOKEN, port=port) as (api, _url):
            api.put(SERVICES_PATH, service("default", "late", "10.96.0.50"))
            wait_for(lambda: sync.last_names()[0] == {"late"}, "sync once the API is up")
    finally:
        next(proxy_run, None)


def test_a_wrong_token_never_syncs(tmp_path: Path, fake_api: tuple[FakeApi, str]) -> None:
    api, url = fake_api
    cfg = settings(tmp_path, url)
    cfg.token_file.write_text("wrong\n")
    sync = RecordingSync()
    for _ in run_proxy(cfg, sync):
        wait_for(lambda: len(api.requests) >= 4, "repeated attempts")
        assert sync.count() == 0


def test_sync_period_resyncs_without_changes(tmp_path: Path, fake_api: tuple[FakeApi, str]) -> None:
    _api, url = fake_api
    cfg = settings(tmp_path, url, sync_period=0.2)
    sync = RecordingSync()
    for _ in run_proxy(cfg, sync):
        wait_for(lambda: status(cfg).get("generation", 0) >= 3, "periodic re-syncs of an unchanged cluster")
