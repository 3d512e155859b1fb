"""etcd as the upstream lab runs it, for real: the lab's command line and PKI, TLS with client
certificates from the lab's CA, on 127.0.0.1 only, and nothing left once it is stopped.

Needs an `etcd` binary in the directory named by KUBEREACH_LAB_KUBERNETES (marker `kubernetes`:
skipped without it, never a CI failure). Debian's etcd-server package works too.
"""

from __future__ import annotations

import base64
import os
import socket
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab import processes
from lab.certs import generate_pki
from lab.upstream.binaries import UpstreamBinaries
from lab.upstream.client import UpstreamApi
from lab.upstream.control import reserve_ports
from lab.upstream.flags import Layout, Ports, etcd_argv, process_markers
from lab.upstream.pki import UpstreamPki, generate_upstream_pki
from tests.lab.labkit import eventually

pytestmark = pytest.mark.kubernetes


@dataclass
class RunningEtcd:
    pid: int
    ports: Ports
    pki: UpstreamPki
    layout: Layout
    client: UpstreamApi


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEtcd]:
    binary = Path(os.environ["KUBEREACH_LAB_KUBERNETES"]) / "etcd"
    if not binary.is_file():
        pytest.skip(f"no etcd in {binary.parent}")
    directory = tmp_path_factory.mktemp("ketcd") / "ketcd"
    generate_pki(directory / "pki", [])
    pki = generate_upstream_pki(directory / "pki", [])
    layout = Layout(directory, "ketcd")
    layout.root.mkdir(parents=True)
    ports = Ports(*reserve_ports(2), 0, 0, 0)
    bins = UpstreamBinaries(binary.parent, *(binary.parent / n for n in ("a", "b", "c", "d", "e")), binary)
    started = processes.spawn("etcd", etcd_argv(bins, pki, layout, ports), directory / "etcd.log", with_ready_pipe=False)
    client = UpstreamApi("127.0.0.1", ports.etcd_client, pki.ca, cert=pki.apiserver_etcd_client, timeout_s=2.0)
    try:

        def health() -> str:
            try:
                return str(client.get("/health").get("health"))
            except Exception as exc:  # noqa: BLE001 - not up yet
                assert processes.alive(started.pid), processes.last_log_line(directory / "etcd.log")
                return repr(exc)

        eventually(health, lambda h: h == "true", deadline_s=30, what="etcd healthy")
        yield RunningEtcd(started.pid, ports, pki, layout, client)
    finally:
        processes.stop([started.pid])


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_a_client_with_the_apiservers_certificate_writes_and_reads(etcd: RunningEtcd) -> None:
    etcd.client.request("POST", "/v3/kv/put", {"key": _b64("/registry/kubereach"), "value": _b64("lab")})
    answer = etcd.client.request("POST", "/v3/kv/range", {"key": _b64("/registry/kubereach")})
    assert base64.b64decode(answer["kvs"][0]["value"]) == b"lab"


def test_a_client_without_a_certificate_is_refused(etcd: RunningEtcd) -> None:
    context = ssl.create_default_context(cafile=str(etcd.pki.ca))
    with (
        pytest.raises((ssl.SSLError, ConnectionError)),
        socket.create_connection(("127.0.0.1", etcd.ports.etcd_client), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(b"GET /health HTTP/1.0\r\n\r\n")
        assert tls.recv(64) == b"", "etcd answered a client without a certificate"
        raise ConnectionError("closed without an answer")


def test_it_listens_on_loopback_only(etcd: RunningEtcd) -> None:
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    mine = [line.split()[3] for line in out.splitlines() if f"pid={etcd.pid}," in line]
    assert sorted(mine) == sorted(f"127.0.0.1:{p}" for p in (etcd.ports.etcd_client, etcd.ports.etcd_peer))


def test_its_data_stays_in_the_lab_directory_and_lab_down_can_find_it(etcd: RunningEtcd) -> None:
    assert any(etcd.layout.etcd_data.iterdir())
    assert etcd.pid in processes.find_lab_processes([], process_markers(etcd.layout))
