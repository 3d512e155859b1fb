"""The agent's readings for hairpin and host ports, on the real kernel in throwaway namespaces.

- A listening socket's owner: pid, name and cgroup, as /proc says (a listener started in a namespace
  of its own, as a daemon in a node's namespace would be).
- A pod's host-side veth's hairpin flag as a bridge port, as `ip -d link` shows it, on and off.
Names carry this test process's pid, so parallel runs do not meet.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodeagent.checks.locate import locate_pod
from nodeagent.checks.sockets import list_listening_sockets, owner_cgroup
from nodeagent.netns import socket_in_netns
from nodeagent.wire import pod_network
from tests.lab.test_agent_node import start_server

pytestmark = pytest.mark.lab

TAG = f"kh{os.getpid() % 100000}"
NODE, POD = f"{TAG}-node", f"{TAG}-pod"
PORT_TCP, PORT_UDP = 9100, 9101


def sh(*argv: str) -> None:
    subprocess.run(list(argv), check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def node() -> Iterator[str]:
    try:
        sh("ip", "netns", "add", NODE)
        sh("ip", "netns", "add", POD)
        sh("ip", "-n", NODE, "link", "add", "cni0", "type", "bridge")
        sh("ip", "-n", NODE, "link", "add", "vethkh", "type", "veth", "peer", "name", "eth0", "netns", POD)
        sh("ip", "-n", NODE, "link", "set", "vethkh", "master", "cni0")
        for ns, dev in ((NODE, "cni0"), (NODE, "vethkh"), (POD, "eth0"), (NODE, "lo"), (POD, "lo")):
            sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", POD, "addr", "add", "10.95.1.5/24", "dev", "eth0")
        yield NODE
    finally:
        for ns in (POD, NODE):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False, timeout=30)


def test_a_listeners_owner_is_read_with_its_cgroup_from_proc(node: str) -> None:
    server = start_server(node, "echo", str(PORT_TCP), str(PORT_UDP))
    try:
        found = list(list_listening_sockets(f"/var/run/netns/{node}", PORT_TCP, "tcp"))
        assert [(s.local_address, s.local_port) for s in found] == [("0.0.0.0", PORT_TCP)]
        (sock,) = found
        # `ip netns exec` execs the server: the listener's pid is the one we started.
        assert sock.pid == server.pid
        assert sock.process_name == Path(f"/proc/{server.pid}/comm").read_text().strip()
        assert sock.cgroup == owner_cgroup(Path(f"/proc/{server.pid}/cgroup").read_text())
        assert sock.cgroup and sock.cgroup.startswith("/")
    finally:
        server.kill()
        server.wait(timeout=10)


def test_a_socket_nobody_in_the_namespace_holds_has_no_owner(node: str) -> None:
    """An fd held by a process outside the namespace is not searched for: no owner, no cgroup."""
    held = socket_in_netns(f"/var/run/netns/{node}", socket.AF_INET, socket.SOCK_STREAM)
    try:
        held.bind(("0.0.0.0", PORT_TCP + 10))
        held.listen(1)
        (sock,) = list_listening_sockets(f"/var/run/netns/{node}", PORT_TCP + 10, "tcp")
        assert (sock.pid, sock.process_name, sock.cgroup) == (None, None, None)
    finally:
        held.close()


@pytest.mark.parametrize("mode", ["on", "off"])
def test_the_pods_bridge_port_reports_its_hairpin_mode(node: str, mode: str) -> None:
    sh("ip", "-n", node, "link", "set", "vethkh", "type", "bridge_slave", "hairpin", mode)
    shown = subprocess.run(["ip", "-n", node, "-d", "link", "show", "vethkh"], capture_output=True, text=True, check=True).stdout
    assert f"hairpin {mode}" in shown
    located = locate_pod(f"/var/run/netns/{node}", "10.95.1.5")
    assert located.host_peer.hairpin is (mode == "on")
    message = pod_network(located)
    assert message.host_peer.HasField("hairpin") and message.host_peer.hairpin is (mode == "on")


def test_a_port_off_the_bridge_has_no_hairpin_flag(node: str) -> None:
    sh("ip", "-n", node, "link", "set", "vethkh", "nomaster")
    try:
        located = locate_pod(f"/var/run/netns/{node}", "10.95.1.5")
        assert located.host_peer.hairpin is None
        assert not pod_network(located).host_peer.HasField("hairpin")
    finally:
        sh("ip", "-n", node, "link", "set", "vethkh", "master", "cni0")
