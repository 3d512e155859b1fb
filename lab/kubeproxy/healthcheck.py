"""kube-proxy's service health check server: one HTTP listener per `healthCheckNodePort` in the node.

A LoadBalancer service with `externalTrafficPolicy: Local` gets a health check node port; a cloud load
balancer probes it on every node and sends traffic only to nodes that answer 200. As kube-proxy's
`pkg/proxy/healthcheck` server does, each listener answers any GET with
`{"service": {"namespace", "name"}, "localEndpoints": N, "serviceProxyHealthy": true}`, status 200
when the node has ready local endpoints and 503 when it has none, and the header
`X-Load-Balancing-Endpoint-Weight: N`.

The lab's kube-proxy runs in the root namespace; each listening socket is opened by a short-lived
thread that first enters the node's network namespace (setns), so it listens inside the node only.
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import threading
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from lab.errors import LabError

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/var/run/netns"
Object = Mapping[str, Any]


def health_ports(services: Sequence[Object], slices: Sequence[Object], node_name: str) -> dict[int, tuple[str, str, int]]:
    """{healthCheckNodePort: (namespace, name, ready local endpoints)} for this node."""
    local: dict[tuple[str, str], set[str]] = {}
    for sl in slices:
        meta = sl.get("metadata") or {}
        svc = (meta.get("labels") or {}).get("kubernetes.io/service-name")
        if not svc:
            continue
        for ep in sl.get("endpoints") or []:
            if ep.get("nodeName") == node_name and (ep.get("conditions") or {}).get("ready", True):
                local.setdefault((meta.get("namespace", ""), svc), set()).update(ep.get("addresses") or [])
    ports: dict[int, tuple[str, str, int]] = {}
    for svc in services:
        spec, meta = svc.get("spec") or {}, svc.get("metadata") or {}
        port = int(spec.get("healthCheckNodePort") or 0)
        if spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local" and port:
            key = (meta.get("namespace", ""), meta.get("name", ""))
            ports[port] = (*key, len(local.get(key, ())))
    return ports


def listen_in_netns(netns: str, port: int) -> socket.socket:
    """A TCP socket listening on 0.0.0.0:port inside `netns` (opened from a thread that entered it)."""
    result: list[socket.socket | BaseException] = []

    def enter_and_listen() -> None:
        try:
            fd = os.open(os.path.join(NETNS_DIR, netns), os.O_RDONLY)
            try:
                if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns into {netns} failed")
            finally:
                os.close(fd)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("0.0.0.0", port))
            sock.listen(16)
            result.append(sock)
        except OSError as exc:
            result.append(exc)

    thread = threading.Thread(target=enter_and_listen, name=f"netns-{netns}")
    thread.start()
    thread.join()
    if isinstance(result[0], BaseException):
        raise LabError(f"health check node port {port} in {netns}: {result[0]}")
    return result[0]


class _Handler(BaseHTTPRequestHandler):
    server: _HealthServer

    def do_GET(self) -> None:
        namespace, name, count = self.server.state
        body = json.dumps(
            {"service": {"namespace": namespace, "name": name}, "localEndpoints": count, "serviceProxyHealthy": True}
        )
        self.send_response(200 if count > 0 else 503)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Load-Balancing-Endpoint-Weight", str(count))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, format: str, *args: Any) -> None:
        return


class _HealthServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, sock: socket.socket, state: tuple[str, str, int]) -> None:
        super().__init__(sock.getsockname(), _Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.state = state


class HealthChecks:
    """The node's health check listeners, opened and closed to match the services after each sync."""

    def __init__(self, netns: str, node_name: str) -> None:
        self.netns, self.node_name = netns, node_name
        self._servers: dict[int, _HealthServer] = {}

    def sync(self, services: Sequence[Object], slices: Sequence[Object]) -> None:
        """Open listeners for new health check node ports, update counts, close the ones gone."""
        wanted = health_ports(services, slices, self.node_name)
        for port in set(self._servers) - set(wanted):
            self._close(port)
        for port, state in wanted.items():
            if port in self._servers:
                self._servers[port].state = state
                continue
            server = _HealthServer(listen_in_netns(self.netns, port), state)
            threading.Thread(target=server.serve_forever, name=f"healthcheck-{port}", daemon=True).start()
            self._servers[port] = server

    def close(self) -> None:
        """Stop every listener."""
        for port in list(self._servers):
            self._close(port)

    def _close(self, port: int) -> None:
        server = self._servers.pop(port)
        server.shutdown()
        server.server_close()
