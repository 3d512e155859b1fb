"""The lab as a cluster: lifecycle, the status contract, the whole reachability matrix in every CNI
and kube-proxy mode, kube-proxy's chain names, and `lab down` leaving nothing behind."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.lab.labkit import Lab, kubereach, running_lab, unique_prefix

pytestmark = pytest.mark.lab


def _root_network_snapshot() -> dict[str, Any]:
    def ip(*args: str) -> Any:
        return json.loads(subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True).stdout or "[]")

    def strip(items: list[dict[str, Any]], drop: tuple[str, ...]) -> list[dict[str, Any]]:
        return sorted(json.dumps({k: v for k, v in i.items() if k not in drop}, sort_keys=True) for i in items)  # type: ignore[misc]

    netns = sorted(p.name for p in Path("/var/run/netns").iterdir()) if Path("/var/run/netns").exists() else []
    return {
        "links": strip(ip("link"), ("stats", "stats64", "operstate", "linkmode", "flags")),
        "addrs": strip(ip("addr"), ("stats", "stats64", "operstate", "flags")),
        "routes": strip(ip("route", "show", "table", "all"), ()),
        "rules": strip(ip("rule"), ()),
        "netns": netns,
        "etc_netns": sorted(p.name for p in Path("/etc/netns").iterdir()) if Path("/etc/netns").exists() else [],
        "iptables": subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout.count("\n-A "),
    }


def _processes() -> set[str]:
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                out.add((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
    return out


def _expected_allowed(src: dict[str, Any], svc: dict[str, Any]) -> bool:
    """The default spec's one NetworkPolicy: payments/ledger admits only app=api pods from team=shop."""
    if (svc["namespace"], svc["name"]) == ("payments", "ledger"):
        return src["namespace"] == "shop" and src["labels"].get("app") == "api"
    return True


def _has_vip(svc: dict[str, Any]) -> bool:
    """Headless and ExternalName services have no ClusterIP for kube-proxy to program."""
    return svc["cluster_ip"] not in (None, "None")


def _backs(pod: dict[str, Any], svc: dict[str, Any]) -> bool:
    return pod["namespace"] == svc["namespace"] and bool(svc["selector"]) and svc["selector"].items() <= pod["labels"].items()


def _walk_matrix(lab: Lab) -> list[str]:
    """Connect from every pod to every TCP service port; return the mismatches with the expectation.

    A pod that backs the service itself is left out of that service's row: kube-proxy masquerades
    hairpin traffic to the node's address, which a NetworkPolicy always admits, so whether such a
    connection passes depends on which endpoint the random DNAT picks. The direct pod-to-pod rows
    below cover those pairs deterministically.
    """
    wrong = []
    for src in lab.status["pods"]:
        targets = [
            (svc, port)
            for svc in lab.status["services"]
            for port in svc["ports"]
            if port["protocol"] == "TCP" and not _backs(src, svc) and _has_vip(svc)
        ]
        results = lab.probe(
            src["netns"],
            [{"kind": "tcp", "host": svc["cluster_ip"], "port": port["port"], "timeout": 1.0} for svc, port in targets],
        )
        for (svc, port), result in zip(targets, results, strict=True):
            expected = _expected_allowed(src, svc)
            if result["ok"] != expected:
                wrong.append(
                    f"{src['namespace']}/{src['name']} -> {svc['namespace']}/{svc['name']}:{port['port']}: {result['outcome']}"
                )
            if expected and result["ok"] and result["banner"] and f"{svc['namespace']}/" not in result["banner"]:
                wrong.append(f"{svc['name']}:{port['port']} answered from the wrong namespace: {result['banner']}")
        ledgers = [p for p in lab.status["pods"] if p["labels"].get("app") == "ledger" and p["name"] != src["name"]]
        direct = lab.probe(src["netns"], [{"kind": "tcp", "host": p["ip"], "port": 8443, "timeout": 1.0} for p in ledgers])
        allowed = src["namespace"] == "shop" and src["labels"].get("app") == "api"
        wrong += [
            f"{src['name']} -> pod {p['name']}:8443: {r['outcome']}"
            for p, r in zip(ledgers, direct, strict=True)
            if r["ok"] != allowed
        ]
        dns = lab.probe(src["netns"], [{"kind": "dns", "server": "10.96.0.10", "name": "api.shop.svc.cluster.local"}])[0]
        if not dns["ok"]:
            wrong.append(f"{src['name']}: DNS {dns['outcome']}")
    return wrong


def test_lab_up_status_contract_and_down_leaves_nothing() -> None:
    before_net, before_procs = _root_network_snapshot(), _processes()
    prefix = unique_prefix("a")
    with running_lab(prefix, "--nodes", "3") as lab:
        status = lab.status
        assert set(status) >= {"config", "api", "kubeconfig", "kubernetes", "nodes", "pods", "services"}
        assert Path(status["config"]).exists() and status["api"].startswith("https://127.0.0.1:")
        assert status["kubernetes"] == "lab"
        # Real clients accept the kubeconfig: TLS verified against the lab's CA, the token sent
        # (kubectl too where it is installed; the informer test in test_lab_informers.py covers client-go's ways).
        if shutil.which("kubectl"):
            kubectl = subprocess.run(
                ["kubectl", "--kubeconfig", status["kubeconfig"], "get", "pods", "-A", "-o", "name"],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert kubectl.returncode == 0, kubectl.stderr
            assert len(kubectl.stdout.split()) == len(status["pods"]) + 3  # and the three agent pods (hostNetwork)
        assert [n["name"] for n in status["nodes"]] == ["node-1", "node-2", "node-3"]
        for n in status["nodes"]:
            assert set(n) >= {"name", "netns", "ip", "pod_cidr", "agent"}
            assert n["netns"] == f"{prefix}-node-{n['name'][-1]}" and n["agent"] and n["agent"].startswith("127.0.0.1:")
        assert len(status["pods"]) == 11
        for p in status["pods"]:
            assert set(p) >= {"namespace", "name", "ip", "node", "netns", "labels"}
            assert Path("/var/run/netns", p["netns"]).exists()
        dns = next(s for s in status["services"] if s["name"] == "kube-dns")
        assert dns["cluster_ip"] == "10.96.0.10"
        assert {(p["name"], p["port"], p["protocol"]) for p in dns["ports"]} == {
            ("dns", 53, "UDP"),
            ("dns-tcp", 53, "TCP"),
            ("metrics", 9153, "TCP"),
        }
        api = lab.service("shop", "api")
        assert {(p["name"], p["port"], p["target_port"]) for p in api["ports"]} >= {("http", 8080, "http")}
        # Every lab object is in a lab namespace; the root namespace gained nothing.
        during = _root_network_snapshot()
        assert {k: during[k] for k in ("links", "addrs", "routes", "rules", "iptables")} == {
            k: before_net[k] for k in ("links", "addrs", "routes", "rules", "iptables")
        }
        assert all(ns.startswith(f"{prefix}-") for ns in set(during["netns"]) - set(before_net["netns"]))
    after_net, after_procs = _root_network_snapshot(), _processes()
    assert after_net == before_net
    assert not {p for p in after_procs - before_procs if prefix in p or "lab.podserver" in p or "lab.daemon" in p}
    assert not Path("/run/kubereach", prefix).exists()
    # Down is safe to run twice.
    assert kubereach("lab", "--prefix", prefix, "down").returncode == 0


@pytest.mark.parametrize(
    ("cni", "proxy"),
    [
        ("flannel-vxlan", "iptables"),
        ("flannel-vxlan", "nftables"),
        ("host-gw", "iptables"),
        ("host-gw", "nftables"),
        ("calico", "iptables"),
        ("calico", "nftables"),
    ],
)
def test_every_pod_reaches_every_allowed_service_and_denied_pairs_fail(cni: str, proxy: str) -> None:
    with running_lab(unique_prefix("m"), "--cni", cni, "--proxy", proxy) as lab:
        assert _walk_matrix(lab) == []


def _kube_proxy_hash(text: str) -> str:
    """kube-proxy's portProtoHash: base32(sha256(text))[:16] (pkg/proxy/iptables/proxier.go)."""
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]


def test_node_rules_carry_the_chain_names_kube_proxy_would_write() -> None:
    with running_lab(unique_prefix("c"), "--nodes", "2") as lab:
        pods = {p["ip"]: p for p in lab.status["pods"]}
        save = subprocess.run(["ip", "netns", "exec", lab.node("node-2")["netns"], "iptables-save", "-t", "nat"],
                              capture_output=True, text=True, check=True).stdout  # fmt: skip
        chains = {line[1:].split()[0] for line in save.splitlines() if line.startswith(":KUBE-")}
        for svc in filter(_has_vip, lab.status["services"]):
            for port in svc["ports"]:
                name = f"{svc['namespace']}/{svc['name']}:{port['name']}"
                proto = port["protocol"].lower()
                assert f"KUBE-SVC-{_kube_proxy_hash(name + proto)}" in chains, name
                for ip, pod in pods.items():
                    if pod["namespace"] != svc["namespace"]:
                        continue
                    target = port["target_port"]
                    if isinstance(target, str):
                        continue  # named: resolved per pod; covered by the numeric ports below
                    selector_app = {"kube-dns": ("k8s-app", "kube-dns")}.get(svc["name"], ("app", svc["name"]))
                    if pod["labels"].get(selector_app[0]) == selector_app[1]:
                        assert f"KUBE-SEP-{_kube_proxy_hash(name + proto + f'{ip}:{target}')}" in chains, (name, ip)


def test_bad_input_names_the_choices_and_changes_nothing() -> None:
    with running_lab(unique_prefix("b"), "--nodes", "2") as lab:
        before = lab.cli("status", "--json").stdout
        for args, needle in [
            (("fault", "no-such-fault"), "node-route-missing"),
            (("fault", "ip-forward-off", "--node", "node-9"), "node-1, node-2"),
            (("fault", "veth-down", "--pod", "nope"), "shop/redis-0"),
            (("fault", "selector-mismatch", "--service", "nope"), "shop/api"),
        ]:
            proc = lab.cli(*args, check=False)
            assert proc.returncode == 2, proc
            lines = proc.stderr.strip().splitlines()
            assert len(lines) == 1 and needle in lines[0], proc.stderr
        assert lab.cli("status", "--json").stdout == before
        state = json.loads(Path("/run/kubereach", lab.prefix, "state.json").read_text())
        assert state["faults"] == []


def test_not_root_is_told_how_to_run_it() -> None:
    # A fresh user namespace: the same files, but the process is uid 65534 and holds no capability
    # in the namespaces the lab would change.
    from tests.lab.labkit import KUBEREACH

    proc = subprocess.run(
        ["unshare", "--user", "--", *KUBEREACH, "lab", "--prefix", "tnr", "up"],
        capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2], check=False, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "needs root" in proc.stderr and "sudo" in proc.stderr
    assert not Path("/var/run/netns/tnr-fabric").exists()


def test_missing_tool_names_its_debian_package(tmp_path: Path) -> None:
    import shutil

    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("ip", "bridge", "iptables", "iptables-save", "iptables-restore", "nft", "nsenter"):
        (bindir / tool).symlink_to(shutil.which(tool) or tool)
    env = {**os.environ, "PATH": str(bindir)}
    proc = kubereach("lab", "--prefix", "tmt", "up", check=False, env=env)
    assert proc.returncode == 1
    assert "conntrack" in proc.stderr and "apt-get install -y conntrack" in proc.stderr
    assert not Path("/var/run/netns/tmt-fabric").exists()
