"""Entry lookups (NodePort / external IP from outside) on a node with thousands of NodePort services.

    sudo .venv/bin/python bench/bench_entry_nat.py --services 2000 --runs 3 --warm 200

The lab's kube-proxy renderers write `--services` NodePort services (one external IP each, one ready
endpoint on another node, every other one `externalTrafficPolicy: Local`, so half of them drop on this
node) into a throwaway namespace `kb-…` holding the node's address, in iptables and in nftables mode.
`entry_nat` is timed cold (empty cache: detection, the reads the walk needs, the walk) and warm (the
cached snapshot), next to the reference tool a person would read the same rules with, in the same run.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import time
from typing import Any

from benchkit import bench_netns, median_time, report, run_tool, timed

from lab.kubeproxy.iptables import render_iptables
from lab.kubeproxy.model import NodeContext
from lab.kubeproxy.nftables import render_nftables
from nodeagent.checks.nat import KubeProxyTables
from nodeagent.netns import netns_path

NODE_IP = "10.240.0.12"
NODE = NodeContext(node_name="node-2", node_ip=NODE_IP, cluster_cidr="10.244.0.0/16", ipv6=False)
TABLES = KubeProxyTables()


def _objects(count: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    services, slices = [], []
    for i in range(count):
        name = f"svc-{i}"
        spec: dict[str, Any] = {
            "type": "NodePort",
            "clusterIP": f"10.{96 + i // 62500}.{(i // 250) % 250}.{i % 250 + 1}",
            "externalIPs": [f"198.51.{100 + i // 250}.{i % 250 + 1}"],
            "externalTrafficPolicy": "Local" if i % 2 else "Cluster",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30000 + i}],
        }
        services.append({"metadata": {"namespace": "bench", "name": name}, "spec": spec})
        endpoint = {"addresses": [f"10.244.{1 + i // 250}.{i % 250 + 2}"], "conditions": {"ready": True}, "nodeName": "node-1"}
        slices.append(
            {
                "metadata": {"namespace": "bench", "name": f"{name}-x", "labels": {"kubernetes.io/service-name": name}},
                "addressType": "IPv4",
                "endpoints": [endpoint],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            }
        )
    return services, slices


def _lookup(path: str, index: int) -> None:
    external = f"198.51.{100 + index // 250}.{index % 250 + 1}"
    kind, address, port = ("nodeport", NODE_IP, 30000 + index) if index % 3 else ("external-ip", external, 80)
    found = TABLES.entry_nat(path, None, kind, address, port, "TCP")
    local = index % 2 == 1
    assert found.programmed and (found.no_endpoints_action == "DROP" if local else bool(found.endpoints)), found


def bench_mode(mode: str, count: int, runs: int, warm: int) -> None:
    services, slices = _objects(count)
    with bench_netns(f"entry-{mode[:3]}") as name:
        path = netns_path(name)
        for argv in (
            ["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1"],
            ["ip", "addr", "add", f"{NODE_IP}/24", "dev", "eth0"],
        ):
            subprocess.run(["ip", "netns", "exec", name, *argv], check=True)
        if mode == "iptables":
            text = render_iptables(services, slices, NODE).restore_input
            tool = ["iptables-restore"]  # a fresh namespace: nothing to keep, and --noflush is far slower at scale
            reference, ref_name = ["nsenter", f"--net={path}", "iptables-save"], "iptables-save"
        else:
            text = render_nftables(services, slices, NODE).script
            tool = ["nft", "-f", "-"]
            reference, ref_name = (
                ["nsenter", f"--net={path}", "nft", "-j", "list", "table", "ip", "kube-proxy"],
                "nft -j list table",
            )
        applied, _ = timed(
            lambda: subprocess.run(["ip", "netns", "exec", name, *tool], input=text, text=True, check=True, timeout=900)
        )
        print(f"{mode}: wrote {count:,} NodePort services into {name} in {applied:.1f} s", flush=True)
        ref = median_time(lambda: run_tool(reference), runs)
        rng = random.Random(7)

        def cold() -> None:
            TABLES.clear_cache()
            _lookup(path, rng.randrange(count))

        report(f"{mode}: entry_nat cold", median_time(cold, runs), ref, ref_name)
        TABLES.clear_cache()
        # what the background dump after a cold lookup leaves cached
        if mode == "iptables":
            TABLES.iptables_snapshot(path)
        else:
            TABLES.list_service_nat(path, None)
        _lookup(path, 0)
        before = TABLES.tool_invocations()
        start = time.perf_counter()
        for _ in range(warm):
            _lookup(path, rng.randrange(count))
        assert TABLES.tool_invocations() == before, "warm lookups re-ran a tool"
        report(f"{mode}: entry_nat warm (cached, mean of {warm})", (time.perf_counter() - start) / warm, ref, ref_name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--services", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warm", type=int, default=200)
    parser.add_argument("--modes", default="iptables,nftables")
    args = parser.parse_args()
    for mode in args.modes.split(","):
        bench_mode(mode, args.services, args.runs, args.warm)


if __name__ == "__main__":
    main()
