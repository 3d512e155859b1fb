"""The relay puts the API server on a node namespace's own loopback without adding any address or route:
a connection to 127.0.0.1:PORT inside the namespace reaches 127.0.0.1:PORT of the root namespace, and
nothing else does."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab import processes
from nodeagent.netns import netns_path, socket_in_netns
from tests.lab.labkit import unique_prefix

pytestmark = pytest.mark.lab


def _ip_json(*args: str) -> object:
    return json.loads(subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True).stdout or "[]")


@pytest.fixture(scope="module")
def node_netns() -> Iterator[str]:
    name = f"{unique_prefix('rl')}-node-1"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture(scope="module")
def echo_port() -> Iterator[int]:
    """A server on the root namespace's 127.0.0.1 that answers each connection with 'api:' + what it got."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"api:" + conn.recv(64))

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        listener.close()


@pytest.fixture(scope="module")
def relay(node_netns: str, echo_port: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    before = {"addr": _ip_json("addr"), "route": _ip_json("route", "show", "table", "all")}
    state_dir = tmp_path_factory.mktemp("relay")
    argv = [sys.executable, "-m", "lab.upstream.relay", "--state-dir", str(state_dir), "--port", str(echo_port),
            "--netns", node_netns, "--ready-fd", "{ready_fd}"]  # fmt: skip
    started = processes.spawn("relay", argv, Path(state_dir) / "relay.log", with_ready_pipe=True)
    try:
        processes.wait_ready([started], 20)
        yield {"pid": started.pid, "before": before, "state_dir": str(state_dir)}
    finally:
        processes.stop([started.pid])


def _ask(netns: str, port: int) -> bytes:
    sock = socket_in_netns(netns_path(netns), socket.AF_INET, socket.SOCK_STREAM)
    with sock:
        sock.settimeout(5)
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"hello")
        return sock.recv(64)


def test_loopback_inside_the_node_namespace_reaches_the_root_namespaces_server(
    relay: dict[str, object], node_netns: str, echo_port: int
) -> None:
    assert _ask(node_netns, echo_port) == b"api:hello"
    assert _ask(node_netns, echo_port) == b"api:hello", "a second connection is relayed too"


def test_only_the_relayed_port_is_reachable(relay: dict[str, object], node_netns: str, echo_port: int) -> None:
    other = echo_port + 1 if echo_port < 65535 else echo_port - 1
    with pytest.raises(ConnectionRefusedError):
        _ask(node_netns, other)


def test_no_address_or_route_was_added_anywhere(relay: dict[str, object], node_netns: str) -> None:
    assert {"addr": _ip_json("addr"), "route": _ip_json("route", "show", "table", "all")} == relay["before"]
    inside: list[dict[str, Any]] = _ip_json("-n", node_netns, "addr")  # type: ignore[assignment]
    assert [a["ifname"] for a in inside] == ["lo"]
    assert {i["local"] for i in inside[0]["addr_info"]} <= {"127.0.0.1", "::1"}
    assert _ip_json("-n", node_netns, "route") == []


def test_lab_down_finds_the_relay_by_its_instance_directory(relay: dict[str, object]) -> None:
    assert relay["pid"] in processes.find_lab_processes([], [str(relay["state_dir"])])
