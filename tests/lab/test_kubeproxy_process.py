"""`python -m lab.kubeproxy` as a real process: watches a (stand-in) API server and rewrites the rules.

The API server here is the list/watch stand-in from tests/unit/lab/kubeproxy_fakeapi.py on
127.0.0.1; the rules go into a throwaway `kp-…` node namespace built by the `node` fixture.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from lab.kubeproxy.watch import ENDPOINT_SLICES_PATH, SERVICES_PATH
from tests.lab.test_kubeproxy_rules import (
    POD_IPS,
    VIP,
    Node,
    iptables_save,
    lab_node,
    nft_chain_names,
    nft_endpoint_chain,
    nft_service_chain,
    sep,
    web_service,
    web_slice,
)
from tests.polling import eventually
from tests.unit.lab.kubeproxy_fakeapi import FakeApi, serve_fake_api

pytestmark = pytest.mark.lab

TOKEN = "kp-process-token"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def node() -> Iterator[Node]:
    with lab_node() as built:
        yield built


def status(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


@contextmanager
def kube_proxy(
    node: Node, api_url: str, mode: str, tmp_path: Path, *extra: str
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    token = tmp_path / "kp-token"
    token.write_text(TOKEN)
    status_file = tmp_path / "kp-status.json"
    log = (tmp_path / "kp-proxy.log").open("wb")
    argv = [
        sys.executable,
        "-m",
        "lab.kubeproxy",
        "--node",
        node.context.node_name,
        "--node-ip",
        node.context.node_ip,
        "--netns",
        node.node,
        "--api",
        api_url,
        "--token-file",
        str(token),
        "--mode",
        mode,
        "--cluster-cidr",
        node.context.cluster_cidr,
        "--status-file",
        str(status_file),
        "--service-cidr",
        "10.96.0.0/12",
        *extra,
    ]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=log)
    try:
        yield proc, status_file
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def seed(api: FakeApi, *pods: str) -> None:
    api.put(SERVICES_PATH, web_service())
    api.put(ENDPOINT_SLICES_PATH, web_slice(*pods))


def test_iptables_process_follows_endpoint_changes_resumes_after_sigstop_and_exits_on_sigterm(node: Node, tmp_path: Path) -> None:
    with serve_fake_api(TOKEN) as (api, url), kube_proxy(node, url, "iptables", tmp_path) as (proc, status_file):
        seed(api, "a")
        eventually(lambda: sep("a") in iptables_save(node.node), what="first sync")
        assert node.connect("a", VIP, 80) == "pod-a"
        # The rules are in place a moment before the status file says so.
        eventually(lambda: status(status_file).get("generation", 0) >= 1, what="status after the first sync")
        doc = status(status_file)
        assert doc["mode"] == "iptables" and doc["services"] == 1 and doc["generation"] >= 1

        api.put(ENDPOINT_SLICES_PATH, web_slice("b"))
        eventually(
            lambda: sep("a") not in iptables_save(node.node) and sep("b") in iptables_save(node.node),
            what="resync after the endpoint moved",
        )
        assert node.connect("a", VIP, 80) == "pod-b"

        proc.send_signal(signal.SIGSTOP)
        generation = status(status_file)["generation"]
        api.put(ENDPOINT_SLICES_PATH, web_slice("a"))
        proc.send_signal(signal.SIGCONT)
        eventually(lambda: status(status_file).get("generation", 0) > generation, what="sync after SIGCONT")
        eventually(lambda: sep("a") in iptables_save(node.node), what="rules catch up after SIGCONT")

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    log = (tmp_path / "kp-proxy.log").read_text()
    assert "sync 1 done" in log and "stopped" in log


def test_nftables_process_syncs_and_replaces_endpoint_chains(node: Node, tmp_path: Path) -> None:
    layout = ("--nft-layout", "endpoint-chains")
    with serve_fake_api(TOKEN) as (api, url), kube_proxy(node, url, "nftables", tmp_path, *layout) as (proc, status_file):
        seed(api, "a")
        eventually(lambda: status(status_file).get("generation", 0) >= 1, what="first sync")
        eventually(lambda: nft_endpoint_chain("a") in nft_chain_names(node.node), what="endpoint chain for pod a")
        assert node.connect("a", VIP, 80) == "pod-a"
        api.put(ENDPOINT_SLICES_PATH, web_slice("b"))
        eventually(lambda: nft_endpoint_chain("a") not in nft_chain_names(node.node), what="old endpoint chain removed")
        assert nft_endpoint_chain("b") in nft_chain_names(node.node)
        assert node.connect("a", VIP, 80) == "pod-b"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_nftables_process_writes_the_136_layout_by_default(node: Node, tmp_path: Path) -> None:
    with serve_fake_api(TOKEN) as (api, url), kube_proxy(node, url, "nftables", tmp_path) as (proc, status_file):
        seed(api, "a")
        eventually(lambda: status(status_file).get("generation", 0) >= 1, what="first sync")
        assert f"map {{ 0 : {POD_IPS['a']} . 8080 }}" in nft_service_chain(node.node)
        assert status(status_file)["nft_layout"] == "1.36"
        assert nft_endpoint_chain("a") not in nft_chain_names(node.node)
        api.put(ENDPOINT_SLICES_PATH, web_slice("b"))
        eventually(lambda: f"map {{ 0 : {POD_IPS['b']} . 8080 }}" in nft_service_chain(node.node), what="map rewritten for pod b")
        assert node.connect("a", VIP, 80) == "pod-b"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    assert "nftables layout 1.36" in (tmp_path / "kp-proxy.log").read_text()


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "lab.kubeproxy",
            "--node",
            "n",
            "--node-ip",
            "not-an-ip",
            "--netns",
            "kp-x",
            "--api",
            "http://127.0.0.1:1",
            "--token-file",
            str(tmp_path / "t"),
            "--mode",
            "iptables",
            "--cluster-cidr",
            "10.244.0.0/16",
            "--status-file",
            str(tmp_path / "kp-s.json"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "bad address argument" in done.stderr
